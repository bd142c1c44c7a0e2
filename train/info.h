/* info.h — read-only looks at a model: `lorac info` (architecture,
 * parameter counts, dtypes, memory plans) and `lorac eval` (loss and
 * perplexity of a model, optionally with an adapter, on tokenized JSONL).
 *
 * Memory estimates (lorac info): the LoRA rows are lc_memory_plan_cpu; the
 * QLoRA rows replace the linears' weight bytes by NF4 (0.5 byte/param plus
 * ~0.127 bit/param of absmax with double quantization) and keep embeddings
 * and lm_head at the model's dtype. "With gradient checkpointing" keeps one
 * layer's activations plus every layer's residual input (derived from
 * lc_memory_plan_cpu at 1 and 2 layers, so it follows the same formula):
 * an estimate for the GPU path — the CPU backend does not checkpoint yet.
 * A pre-quantized (bitsandbytes 4-bit) checkpoint is loaded (its NF4 data
 * is viewed in place, nothing is dequantized) and its rows use the real
 * sizes, lc_model_weight_bytes; its linears are NF4 whatever the adapter
 * type, so it gets one pair of rows ("LoRA/QLoRA (NF4 as stored)"). */
#ifndef LC_INFO_H
#define LC_INFO_H

#include <stdint.h>
#include <stdio.h>

#include "autograd/error.h"
#include "train/config.h"
#include "train/model_config.h"

#define LC_NF4_ABSMAX_BITS 0.127 /* per parameter, double-quantized absmax */

typedef struct lc_info_opts {
    const char *dir;
    int64_t seq_len;      /* 0: min(2048, max_position_embeddings) */
    int64_t micro_batch;  /* rows per micro-batch */
    int rank;             /* LoRA r for the plan (all seven linears targeted) */
} lc_info_opts;

/* Parameter counts by part, from config.json shapes. */
typedef struct lc_param_counts {
    double embeddings, lm_head, attention, mlp, norms, total;
    double linears;       /* the seven projections of every layer (what LoRA/NF4 touch) */
} lc_param_counts;

void lc_param_counts_from_config(const lc_model_config *c, lc_param_counts *p);

/* Prints the report for o->dir to out. */
int lc_info_print(const lc_info_opts *o, FILE *out, lc_error *err);

typedef struct lc_eval_opts {
    const char *model_dir;
    const char *adapter_dir;  /* NULL: the base model alone */
    char *const *data;        /* tokenized JSONL files */
    int n_data;
    int64_t seq_len;          /* 0: min(2048, max_position_embeddings) */
    int64_t micro_batch;      /* rows per forward pass */
    bool nf4;                 /* quantize the linears to NF4 at load (QLoRA); a
                               * pre-quantized (bitsandbytes) model is NF4 regardless */
    int64_t nf4_blocksize;    /* 0: 64 */
    bool nf4_double_quant;
} lc_eval_opts;

typedef struct lc_eval_report {
    double loss, perplexity;
    int64_t supervised;       /* tokens with a label (the loss's denominator) */
    int64_t tokens;           /* tokens run through the model (after truncation) */
    int64_t rows, truncated;
    int64_t seq_len;          /* as used */
    double seconds, tokens_per_s;
    lc_model_config cfg;
    lc_dtype weight_dtype;
    bool nf4;                 /* the linears were NF4 */
    bool nf4_prequantized;    /* ... as stored in a bitsandbytes checkpoint */
    int64_t nf4_blocksize;
    bool nf4_double_quant;
    double weight_bytes;      /* the frozen matrices as held (lc_model_weight_bytes) */
    int lora_r;               /* 0 without an adapter */
    double lora_alpha;
} lc_eval_report;

int lc_eval_run(const lc_eval_opts *o, lc_eval_report *r, lc_error *err);

/* The eval settings a training config implies: base_model; the adapter
 * trained into output_dir when output_dir/adapter_model.safetensors exists,
 * else lora_model_dir, else none; test_datasets, or datasets when there are
 * none; sequence_len and micro_batch_size; adapter: qlora / load_in_4bit
 * with bnb_4bit_blocksize and bnb_4bit_use_double_quant as for training (the
 * base quantized to NF4 at load). *adapter_from names the choice
 * ("output_dir", "lora_model_dir" or "none"). Pointers borrow from c. */
int lc_eval_opts_from_config(const lc_train_config *c, lc_eval_opts *o, char *adapter_buf,
                             size_t adapter_len, const char **adapter_from,
                             const char **data_from, lc_error *err);

#endif

/* eval.h — evaluation: the mean loss of a model (optionally with a LoRA
 * adapter) over the supervised tokens of tokenized JSONL files. One pass
 * serves both `lorac eval` and the trainer's evaluation on test_datasets,
 * so the two report the same number for the same rows.
 *
 * Rows are evaluated unpacked, in file order, truncated to the sequence
 * length, with gradients off; the loss is Σ token cross-entropy / number of
 * supervised tokens over all files, and the micro-batch size changes only
 * the speed. */
#ifndef LC_EVAL_H
#define LC_EVAL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "autograd/error.h"
#include "data/dataset.h"
#include "train/config.h"
#include "train/model.h"

/* Where a long evaluation reports its progress ("eval: 120/300 rows"):
 * nothing for its first first_s seconds (0: 2 s); then on a terminal one
 * line rewritten in place every quarter second and cleared at the end,
 * otherwise one line every every_s seconds (0: 10 s). The numbers do not
 * depend on it. */
typedef struct lc_eval_progress {
    FILE *out;                /* NULL: no progress */
    bool tty;
    int64_t rows;             /* rows the data holds (0: unknown, "eval: 120 rows") */
    double first_s, every_s;
} lc_eval_progress;

/* Mean loss of `lora` (NULL: the base model alone) on the rows of data (its
 * files, encoders and row rules; read unpacked, in file order, in micro-batches
 * of data->micro_batch rows up to data->seq_len); *tokens gets the number of
 * supervised tokens. The tape must be sized for micro_batch × seq_len.
 * progress may be NULL. */
int lc_eval_files(const lc_model *m, lc_tape *t, const lc_lora *lora, const lc_dataset_opts *data,
                  const lc_eval_progress *progress, double *loss, int64_t *tokens, lc_error *err);

typedef struct lc_eval_opts {
    const char *model_dir;
    const char *adapter_dir;  /* NULL: the base model alone */
    char *const *data;        /* tokenized JSONL files (direct form) */
    const lc_train_config *config; /* from a config: its text data (test_datasets, else
                               * datasets), read as lorac train reads them */
    int n_data;
    int64_t seq_len;          /* 0: lc_model_config_seq_len's default */
    int64_t micro_batch;      /* rows per forward pass */
    bool nf4;                 /* quantize the linears to NF4 at load (QLoRA); a
                               * pre-quantized (bitsandbytes) model is NF4 regardless */
    int64_t nf4_blocksize;    /* 0: 64 */
    bool nf4_double_quant;
    lc_eval_progress progress; /* out NULL: none (lorac eval: stderr); rows is filled in */
    lc_device device;         /* where the forward passes run (0: auto) */
    lc_compute_dtype compute_dtype;
} lc_eval_opts;

typedef struct lc_eval_report {
    double loss, perplexity;
    int64_t supervised;       /* tokens with a label (the loss's denominator) */
    int64_t tokens;           /* tokens run through the model (after truncation) */
    int64_t rows, truncated;
    lc_data_counts counts;    /* where every line went */
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
    bool lora_dora;           /* a DoRA adapter */
    const char *backend;      /* where it ran: "cpu", "cuda" */
} lc_eval_report;

/* Loads the model (and adapter) of o, evaluates it on o->data and fills r. */
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

/* `lorac eval` as the command line asked for it: either a training config
 * (with --set overrides) or the model/adapter/data given directly. */
typedef struct lc_eval_request {
    const char *config;       /* CONFIG.yaml, or NULL for the direct form */
    char *const *sets;        /* --set key=value overrides of config */
    int n_sets;
    lc_eval_opts direct;      /* the direct form (--model, --adapter, --data, ...) */
} lc_eval_request;

/* Runs `lorac eval` and prints its report (model, adapter, data, loss,
 * perplexity, supervised tokens, throughput) to out. */
int lc_eval_command(const lc_eval_request *req, FILE *out, lc_error *err);

#endif

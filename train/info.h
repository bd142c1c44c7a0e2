/* info.h — `lorac info`: a read-only look at a model (architecture,
 * parameter counts, dtypes, memory plans).
 *
 * Memory plans: lc_memory_plan_cpu's dry run of one training step over a
 * shapes-only model of config.json (lc_model_init_shapes: nothing is loaded
 * or materialised, so any size of model is planned) with the adapter
 * allocated as the trainer would; the LoRA rows count the weights at the
 * model's dtype, the QLoRA rows run over NF4 linears and count their bytes
 * as NF4 (0.5 byte/param plus ~0.127 bit/param of absmax with double
 * quantization), embeddings and lm_head at the model's dtype. "With
 * gradient checkpointing" is the dry run with the layers checkpointed, as
 * the trainer runs with gradient_checkpointing: true. A pre-quantized (bitsandbytes 4-bit) checkpoint is
 * loaded (its NF4 data is viewed in place, nothing is dequantized) and its
 * rows use the real sizes, lc_model_weight_bytes; its linears are NF4
 * whatever the adapter type, so it gets one pair of rows ("LoRA/QLoRA (NF4
 * as stored)"). */
#ifndef LC_INFO_H
#define LC_INFO_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "autograd/error.h"
#include "train/model_config.h"

#define LC_NF4_ABSMAX_BITS 0.127 /* per parameter, double-quantized absmax */

typedef struct lc_info_opts {
    const char *dir;
    int64_t seq_len;      /* 0: lc_model_config_seq_len's default */
    int64_t micro_batch;  /* rows per micro-batch */
    int rank;             /* LoRA r for the plan */
    const char *target_modules; /* "q_proj,v_proj": the linears the plan adapts (NULL: all) */
    bool dora;            /* plan DoRA (a magnitude per output row) instead of LoRA */
} lc_info_opts;

/* Parameter counts by part, from config.json shapes. */
typedef struct lc_param_counts {
    double embeddings, lm_head, attention, mlp, norms, total;
    double linears;       /* the family's linears of every layer (what LoRA/NF4 touch) */
} lc_param_counts;

void lc_param_counts_from_config(const lc_model_config *c, lc_param_counts *p);

/* Prints the report for o->dir to out. */
int lc_info_print(const lc_info_opts *o, FILE *out, lc_error *err);

#endif

/* memory_plan.h — how much memory a training configuration needs, computed
 * from the shapes before anything is allocated, so a config that cannot fit
 * is refused with the numbers instead of dying mid-run. The activation
 * formula mirrors what the ops keep in the step arena (see autograd/ops.h:
 * per layer and token the residual stream twice, q/k/v, the attention output
 * and its log-sum-exp, gate and up, two rstd values and the LoRA x·Aᵀ). */
#ifndef LC_MEMORY_PLAN_H
#define LC_MEMORY_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "autograd/error.h"
#include "train/lora.h"
#include "train/model_config.h"

typedef struct lc_memory_plan {
    double weights;       /* frozen base, bytes as stored */
    double adapters;      /* LoRA values + gradients (DoRA magnitudes included) */
    double optimizer;     /* Adam m, v */
    double activations;   /* step arena: kept for backward */
    double workspace;     /* step arena scratch + gradient pool */
    double total;
    size_t arena_bytes;   /* capacity to reserve for the step arena */
    size_t grad_bytes;    /* capacity to reserve for the gradient pool */
} lc_memory_plan;

/* checkpointing: gradient checkpointing per layer (each layer keeps only its
 * input; one layer's activations exist again while it is recomputed). */
void lc_memory_plan_cpu(const lc_model_config *c, double weight_bytes, size_t lora_params,
                        const lc_lora_config *lora, int64_t B, int64_t T, bool checkpointing,
                        lc_memory_plan *p);
/* Bytes of all frozen weights of c stored as dtype. */
double lc_memory_weight_bytes(const lc_model_config *c, lc_dtype dtype);
void lc_memory_plan_print(const lc_memory_plan *p, FILE *f);
/* MemAvailable from /proc/meminfo in bytes (0 when unknown). */
double lc_memory_available(void);

#endif

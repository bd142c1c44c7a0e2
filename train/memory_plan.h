/* memory_plan.h — how much memory a training configuration needs, taken
 * from the allocations themselves, so a config that cannot fit is refused
 * with the numbers instead of dying mid-run, and the step's arenas are
 * reserved at exactly the size a step uses.
 *
 * Weights, adapters and optimizer state are the sizes of what is (or will
 * be) allocated: the frozen matrices as held (lc_model_weight_bytes), the
 * LoRA values and gradients (lc_lora), AdamW's m and v (lc_adamw). The
 * activations and workspace come from a dry run (as llm.c's act_sizes, the
 * size table IS the allocation): one forward + backward step of the real
 * model code at the largest shape (micro-batch × sequence_len, the model's
 * gradient checkpointing, the adapter as configured, LoRA dropout on) over a
 * counting step arena and gradient pool (autograd/tape.h lc_tape_init_dry).
 * Every op allocates exactly as in a real step — same sizes, same order, same
 * 64-byte alignment, the same pool reuse — while the kernels are no-ops and
 * no element memory is touched, so the peaks it records are the peaks a
 * real step of that shape reaches, in milliseconds and without committing
 * the activation pages. MoE routing depends on the data: the dry run routes
 * every token to every expert (each expert's rows at their maximum, N), a
 * bound over all routings (a real step keeps N·k expert rows, not N·E). */
#ifndef LC_MEMORY_PLAN_H
#define LC_MEMORY_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "autograd/error.h"
#include "train/model.h"

typedef struct lc_memory_plan {
    double weights;       /* frozen base, bytes as held */
    double adapters;      /* LoRA values + gradients (DoRA magnitudes included) */
    double optimizer;     /* AdamW m, v */
    double activations;   /* step arena in use when forward ends: what backward needs */
    double workspace;     /* the rest of the step arena's peak (scratch, recomputed
                           * layers) + the gradient pool's peak */
    double total;
    const char *backend;  /* what it plans for: "cpu", "cuda" */
    bool device;          /* the step's elements live in device memory: the sizes
                           * above are device bytes; host_* is the host arena of
                           * tensor headers and op contexts */
    size_t arena_peak;    /* the dry run's step arena peak, bytes (element memory) */
    size_t host_peak;     /* device only: the host arena's peak */
    size_t host_bytes;    /* device only: to reserve for the host arena */
    size_t grad_peak;     /* the dry run's gradient pool peak, bytes */
    size_t arena_bytes;   /* to reserve for the step arena: arena_peak + margin */
    size_t grad_bytes;    /* to reserve for the gradient pool: grad_peak + margin */
} lc_memory_plan;

/* Reserve margin over a measured peak. Reserved pages are committed only when
 * touched, so the margin costs address space, not memory; it absorbs a
 * different order of gradient-pool reuse when micro-batches of other lengths
 * come first (the pool sizes buffers for max_rows rows, so the sizes agree,
 * only the best-fit choices can differ). */
static inline size_t lc_memory_plan_reserve(size_t peak)
{
    return peak + peak / 8 + ((size_t)1 << 20);
}

/* The plan of one training step of m with lora (may be NULL) at micro-batch
 * B × sequence T: m's gradient checkpointing as set (m->checkpoint_layers),
 * m's RoPE tables prepared for T positions (or m->rope_len ≥ T for a
 * shapes-only model, lc_model_init_shapes). Fails only when the dry run's
 * arenas cannot be reserved. */
int lc_memory_plan_cpu(const lc_model *m, const lc_lora *lora, int64_t B, int64_t T,
                       lc_memory_plan *p, lc_error *err);
/* The same for a step on backend target (a device: the dry run splits host
 * structs from element memory as a device tape does, and the weights are
 * counted as uploaded, lc_device_model_weight_bytes). */
int lc_memory_plan_on(const lc_model *m, const lc_lora *lora, int64_t B, int64_t T,
                      const struct lc_backend *target, lc_memory_plan *p, lc_error *err);
void lc_memory_plan_print(const lc_memory_plan *p, FILE *f);
/* MemAvailable from /proc/meminfo in bytes (0 when unknown). */
double lc_memory_available(void);

#endif

/* adamw.h — AdamW with torch.optim.AdamW's exact semantics, gradient
 * clipping by global norm, and learning-rate schedules.
 *
 * All trainable values sit in one flat buffer (see train/lora.h), so the
 * update, the norm and the clipping are single passes over contiguous
 * memory; m and v are parallel buffers of the same length.
 * Update (step t ≥ 1): p ← p − lr·wd·p; m ← β1·m + (1−β1)·g;
 * v ← β2·v + (1−β2)·g²; p ← p − (lr / (1−β1ᵗ)) · m / (√v / √(1−β2ᵗ) + ε).
 *
 * Parameter groups as torch's: spans of the buffer may learn at a multiple
 * of the scheduled rate (each span's lr = lr_scale × lr, its weight decay
 * applied at that lr), as LoRA+ does for lora_B. Without spans every value
 * learns at lr. */
#ifndef LC_ADAMW_H
#define LC_ADAMW_H

#include <stddef.h>
#include <stdint.h>

#include "autograd/backend.h"
#include "autograd/error.h"
#include "autograd/real.h"

/* lc_adamw_hparams: autograd/kernels.h (the update is a kernel of every backend). */

/* Values [begin, end) of the buffer learn at lr_scale × the scheduled rate. */
typedef struct lc_adamw_span {
    size_t begin, end;
    double lr_scale;
} lc_adamw_span;

typedef struct lc_adamw {
    lc_backend *be;        /* where m, v (and the parameters) live */
    lc_real *m, *v;        /* [n] on be */
    size_t n;
    int64_t step;          /* updates done so far */
    lc_adamw_span *spans;  /* [n_spans] in order, covering [0, n); NULL: all at lr */
    size_t n_spans;
} lc_adamw;

/* Zeroed state for n values on the CPU, or on backend be. */
int lc_adamw_init(lc_adamw *o, size_t n, lc_error *err);
int lc_adamw_init_on(lc_adamw *o, size_t n, lc_backend *be, lc_error *err);
/* Bytes lc_adamw_init allocates for n values (m and v). */
static inline size_t lc_adamw_state_bytes(size_t n) { return 2 * (n ? n : 1) * sizeof(lc_real); }
/* Sets the groups (copied): spans in order, adjacent, covering [0, n), scales
 * finite and > 0. */
int lc_adamw_set_spans(lc_adamw *o, const lc_adamw_span *spans, size_t n_spans, lc_error *err);
void lc_adamw_free(lc_adamw *o);
/* One update of params[n] with grads[n] (both on o's backend) at learning
 * rate lr. */
void lc_adamw_update(lc_adamw *o, lc_real *params, const lc_real *grads,
                     const lc_adamw_hparams *hp, double lr);

/* sqrt(Σ g²), accumulated in double (g on the CPU, or on be). */
double lc_grad_norm(const lc_real *g, size_t n);
double lc_grad_norm_on(lc_backend *be, const lc_real *g, size_t n);
/* torch.nn.utils.clip_grad_norm_: scales g by max_norm / (norm + 1e-6)
 * when that is < 1. Returns the norm before clipping. max_norm ≤ 0: off. */
double lc_grad_clip(lc_real *g, size_t n, double max_norm);
double lc_grad_clip_on(lc_backend *be, lc_real *g, size_t n, double max_norm);
/* The same scaling of g with its norm already known (lc_grad_norm_on): no
 * second pass over g, no second read-back from a device. */
void lc_grad_clip_to(lc_backend *be, lc_real *g, size_t n, double norm, double max_norm);

typedef enum lc_lr_schedule { LC_LR_CONSTANT, LC_LR_LINEAR, LC_LR_COSINE } lc_lr_schedule;

/* transformers' get_{constant,linear,cosine}_schedule_with_warmup multiplier
 * at `step` (0-based count of updates done before this one), times base_lr.
 * Cosine decays to min_ratio · base_lr (transformers' cosine_with_min_lr). */
double lc_lr_at(lc_lr_schedule s, double base_lr, int64_t step, int64_t warmup,
                int64_t total, double min_ratio);

#endif

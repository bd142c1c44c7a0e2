/* adamw.c — see adamw.h. */
#include "optim/adamw.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int lc_adamw_init(lc_adamw *o, size_t n, lc_error *err)
{
    memset(o, 0, sizeof *o);
    o->m = calloc(n ? n : 1, sizeof(lc_real));
    o->v = calloc(n ? n : 1, sizeof(lc_real));
    if (!o->m || !o->v) {
        lc_adamw_free(o);
        return lc_error_set(err, "out of memory for AdamW state (%zu values)", n);
    }
    o->n = n;
    return 0;
}

void lc_adamw_free(lc_adamw *o)
{
    free(o->m);
    free(o->v);
    free(o->spans);
    memset(o, 0, sizeof *o);
}

int lc_adamw_set_spans(lc_adamw *o, const lc_adamw_span *spans, size_t n_spans, lc_error *err)
{
    size_t at = 0;
    for (size_t i = 0; i < n_spans; i++) {
        if (spans[i].begin != at || spans[i].end < spans[i].begin || spans[i].end > o->n ||
            !(spans[i].lr_scale > 0 && isfinite(spans[i].lr_scale)))
            return lc_error_set(err, "AdamW parameter group %zu ([%zu, %zu) x %g) is not the "
                                "next run of the %zu values", i, spans[i].begin, spans[i].end,
                                spans[i].lr_scale, o->n);
        at = spans[i].end;
    }
    if (at != o->n)
        return lc_error_set(err, "AdamW parameter groups cover %zu of %zu values", at, o->n);
    lc_adamw_span *copy = malloc(n_spans * sizeof *copy + 1);
    if (!copy)
        return lc_error_set(err, "out of memory for AdamW parameter groups");
    memcpy(copy, spans, n_spans * sizeof *copy);
    free(o->spans);
    o->spans = copy;
    o->n_spans = n_spans;
    return 0;
}

/* One update of values [b, e) at learning rate lr (step o->step already
 * counted); `parallel`: split the range over the threads. */
static void update_range(lc_adamw *o, lc_real *params, const lc_real *grads,
                         const lc_adamw_hparams *hp, double lr, size_t b, size_t e, bool parallel)
{
    const double bc1 = 1.0 - pow(hp->beta1, (double)o->step);
    const double bc2 = 1.0 - pow(hp->beta2, (double)o->step);
    const lc_real decay = (lc_real)(1.0 - lr * hp->weight_decay);
    /* torch's kernel: exp_avg.lerp_(g, 1−β1); exp_avg_sq·β2 + (1−β2)·g²; the
     * (1−β) weights are formed in double before rounding, as torch does */
    const lc_real w1 = (lc_real)(1.0 - hp->beta1), b2 = (lc_real)hp->beta2;
    const lc_real w2 = (lc_real)(1.0 - hp->beta2);
    const lc_real step_size = (lc_real)(lr / bc1);
    const lc_real bc2_sqrt = (lc_real)sqrt(bc2);
    const lc_real eps = (lc_real)hp->eps;
    lc_real *m = o->m, *v = o->v;
#pragma omp parallel for simd schedule(static) if (parallel && e - b >= 65536)
    for (size_t i = b; i < e; i++) {
        lc_real g = grads[i];
        lc_real p = params[i] * decay;
        m[i] = m[i] + w1 * (g - m[i]);
        v[i] = v[i] * b2 + w2 * g * g;
        lc_real denom = (lc_real)sqrt(v[i]) / bc2_sqrt + eps;
        params[i] = p - step_size * (m[i] / denom);
    }
}

void lc_adamw_update(lc_adamw *o, lc_real *params, const lc_real *grads,
                     const lc_adamw_hparams *hp, double lr)
{
    o->step++;
    if (!o->spans) {
        update_range(o, params, grads, hp, lr, 0, o->n, true);
        return;
    }
    /* groups are many small runs (one per A or B matrix): the threads take
     * whole runs */
#pragma omp parallel for schedule(dynamic, 1) if (o->n >= 65536)
    for (size_t s = 0; s < o->n_spans; s++)
        update_range(o, params, grads, hp, lr * o->spans[s].lr_scale, o->spans[s].begin,
                     o->spans[s].end, false);
}

double lc_grad_norm(const lc_real *g, size_t n)
{
    double s = 0;
#pragma omp parallel for simd reduction(+ : s) schedule(static) if (n >= 65536)
    for (size_t i = 0; i < n; i++)
        s += (double)g[i] * (double)g[i];
    return sqrt(s);
}

double lc_grad_clip(lc_real *g, size_t n, double max_norm)
{
    double norm = lc_grad_norm(g, n);
    if (max_norm > 0) {
        double coef = max_norm / (norm + 1e-6);
        if (coef < 1) {
            lc_real c = (lc_real)coef;
#pragma omp parallel for simd schedule(static) if (n >= 65536)
            for (size_t i = 0; i < n; i++)
                g[i] *= c;
        }
    }
    return norm;
}

double lc_lr_at(lc_lr_schedule s, double base_lr, int64_t step, int64_t warmup,
                int64_t total, double min_ratio)
{
    if (step < warmup)
        return base_lr * (double)step / (double)(warmup > 1 ? warmup : 1);
    switch (s) {
    case LC_LR_CONSTANT:
        return base_lr;
    case LC_LR_LINEAR: {
        double rem = (double)(total - step) / (double)(total - warmup > 1 ? total - warmup : 1);
        return base_lr * (rem > 0 ? rem : 0);
    }
    default: {
        /* exactly transformers' formula (no clamp: past `total` it rises
         * again there too; training never gets there) */
        double progress = (double)(step - warmup) / (double)(total - warmup > 1 ? total - warmup : 1);
        double f = 0.5 * (1.0 + cos(M_PI * progress));
        f = f * (1 - min_ratio) + min_ratio;
        return base_lr * (f > 0 ? f : 0);
    }
    }
}

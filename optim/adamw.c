/* adamw.c — see adamw.h. */
#include "optim/adamw.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int lc_adamw_init_on(lc_adamw *o, size_t n, lc_backend *be, lc_error *err)
{
    memset(o, 0, sizeof *o);
    o->be = be;
    size_t bytes = lc_adamw_state_bytes(n) / 2;
    lc_error e = {{0}};
    o->m = be->alloc(be, bytes, &e);
    o->v = o->m ? be->alloc(be, bytes, &e) : NULL;
    if (!o->m || !o->v) {
        lc_adamw_free(o);
        return lc_error_set(err, "AdamW state (%zu values) on %s: %s", n, be->name, e.msg);
    }
    be->memset0(be, o->m, bytes);
    be->memset0(be, o->v, bytes);
    o->n = n;
    return 0;
}

int lc_adamw_init(lc_adamw *o, size_t n, lc_error *err)
{
    return lc_adamw_init_on(o, n, lc_backend_cpu(), err);
}

void lc_adamw_free(lc_adamw *o)
{
    if (o->be) {
        if (o->m)
            o->be->free(o->be, o->m);
        if (o->v)
            o->be->free(o->be, o->v);
    }
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

void lc_adamw_update(lc_adamw *o, lc_real *params, const lc_real *grads,
                     const lc_adamw_hparams *hp, double lr)
{
    o->step++;
    const lc_kernels *k = o->be->f32;
    if (!o->spans) {
        k->adamw((int64_t)o->n, params, grads, o->m, o->v, hp, o->step, lr);
        return;
    }
    /* groups are many small runs (one per A or B matrix): on the CPU the
     * threads take whole runs (the kernel's own loop then runs serially) */
#pragma omp parallel for schedule(dynamic, 1) if (!o->be->device && o->n >= 65536)
    for (size_t s = 0; s < o->n_spans; s++) {
        size_t b = o->spans[s].begin;
        k->adamw((int64_t)(o->spans[s].end - b), params + b, grads + b, o->m + b, o->v + b, hp,
                 o->step, lr * o->spans[s].lr_scale);
    }
}

double lc_grad_norm_on(lc_backend *be, const lc_real *g, size_t n)
{
    return sqrt(be->f32->sum_squares((int64_t)n, g));
}

double lc_grad_norm(const lc_real *g, size_t n) { return lc_grad_norm_on(lc_backend_cpu(), g, n); }

void lc_grad_clip_to(lc_backend *be, lc_real *g, size_t n, double norm, double max_norm)
{
    if (max_norm > 0) {
        double coef = max_norm / (norm + 1e-6);
        if (coef < 1)
            be->f32->scale((int64_t)n, (lc_real)coef, g, g);
    }
}

double lc_grad_clip_on(lc_backend *be, lc_real *g, size_t n, double max_norm)
{
    double norm = lc_grad_norm_on(be, g, n);
    lc_grad_clip_to(be, g, n, norm, max_norm);
    return norm;
}

double lc_grad_clip(lc_real *g, size_t n, double max_norm)
{
    return lc_grad_clip_on(lc_backend_cpu(), g, n, max_norm);
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

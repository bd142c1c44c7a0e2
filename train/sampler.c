/* sampler.c — next-token choice: greedy, temperature, top-k, top-p (see sampler.h). */
#include "train/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/hash.h"

int lc_sampler_init(lc_sampler *s, int64_t V, const lc_sampler_opts *o, lc_error *err)
{
    memset(s, 0, sizeof *s);
    if (!(o->temperature >= 0) || !isfinite(o->temperature))
        return lc_error_set(err, "temperature must be a finite number >= 0, got %g",
                            o->temperature);
    if (o->top_k < 0)
        return lc_error_set(err, "top_k must be >= 0 (0: off), got %lld", (long long)o->top_k);
    if (!(o->top_p > 0 && o->top_p <= 1))
        return lc_error_set(err, "top_p must be in (0, 1] (1: off), got %g", o->top_p);
    if (V < 1)
        return lc_error_set(err, "sampler: empty vocabulary");
    s->o = *o;
    s->V = V;
    s->order = malloc((size_t)V * sizeof *s->order);
    s->p = malloc((size_t)V * sizeof *s->p);
    s->sorted = malloc((size_t)V * sizeof *s->sorted);
    if (!s->order || !s->p || !s->sorted) {
        lc_sampler_free(s);
        return lc_error_set(err, "out of memory for the sampler (vocabulary %lld)",
                            (long long)V);
    }
    return 0;
}

void lc_sampler_free(lc_sampler *s)
{
    free(s->order);
    free(s->p);
    free(s->sorted);
    memset(s, 0, sizeof *s);
}

int32_t lc_sampler_argmax(const lc_real *x, int64_t V)
{
    int64_t best = 0;
    for (int64_t i = 1; i < V; i++)
        if (x[i] > x[best] || (isnan(x[best]) && !isnan(x[i])))
            best = i;
    return (int32_t)best;
}

/* Descending value, then ascending id. */
static int by_value_desc(const void *a, const void *b)
{
    const lc_sampler_entry *x = a, *y = b;
    if (x->v != y->v)
        return x->v > y->v ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

void lc_sampler_probs(lc_sampler *s, const lc_real *logits)
{
    const int64_t V = s->V;
    double *p = s->p;
    if (s->o.temperature == 0) {
        int32_t a = lc_sampler_argmax(logits, V);
        memset(p, 0, (size_t)V * sizeof *p);
        p[a] = 1;
        s->order[0] = a;
        s->n_kept = 1;
        return;
    }
    /* scaled logits in p, filtered ones −inf; every id sorted by value */
    for (int64_t i = 0; i < V; i++) {
        double x = (double)logits[i] / s->o.temperature;
        p[i] = isnan(x) ? -INFINITY : x;
        s->sorted[i] = (lc_sampler_entry){p[i], (int32_t)i};
    }
    qsort(s->sorted, (size_t)V, sizeof *s->sorted, by_value_desc);
    for (int64_t i = 0; i < V; i++)
        s->order[i] = s->sorted[i].id;
    int64_t n = V;
    if (s->o.top_k > 0 && s->o.top_k < V) {
        double kth = p[s->order[s->o.top_k - 1]];
        n = s->o.top_k;
        while (n < V && p[s->order[n]] >= kth) /* ties with the k-th stay, as HF */
            n++;
    }
    while (n > 1 && p[s->order[n - 1]] == -INFINITY)
        n--;
    /* softmax over the n kept (descending, so order[0] holds the max) */
    double mx = p[s->order[0]], sum = 0;
    for (int64_t r = 0; r < n; r++)
        sum += exp(p[s->order[r]] - mx);
    for (int64_t r = 0; r < n; r++)
        p[s->order[r]] = exp(p[s->order[r]] - mx) / sum;
    for (int64_t r = n; r < V; r++)
        p[s->order[r]] = 0;
    if (s->o.top_p < 1) {
        /* keep rank r while the mass of ranks r..n−1 (HF's ascending cumsum) > 1 − p */
        double tail = 0;
        int64_t keep = n;
        for (int64_t r = n - 1; r >= 1; r--) {
            tail += p[s->order[r]];
            if (tail > 1 - s->o.top_p)
                break;
            keep = r;
        }
        if (keep < n) {
            double kept = 0;
            for (int64_t r = 0; r < keep; r++)
                kept += p[s->order[r]];
            for (int64_t r = 0; r < keep; r++)
                p[s->order[r]] /= kept;
            for (int64_t r = keep; r < n; r++)
                p[s->order[r]] = 0;
            n = keep;
        }
    }
    s->n_kept = n;
}

int32_t lc_sampler_pick(const lc_sampler *s, double u)
{
    double acc = 0;
    for (int64_t r = 0; r < s->n_kept; r++) {
        acc += s->p[s->order[r]];
        if (u < acc)
            return s->order[r];
    }
    return s->order[s->n_kept - 1]; /* u at the rounding edge of the total */
}

double lc_sampler_uniform(uint64_t seed, uint64_t step)
{
    uint64_t r = lc_splitmix64(lc_splitmix64(seed) ^ lc_splitmix64(step ^ 0x5eed5a3b1e5ull));
    return (double)(r >> 11) * 0x1.0p-53;
}

int32_t lc_sampler_next(lc_sampler *s, const lc_real *logits, uint64_t step)
{
    if (s->o.temperature == 0)
        return lc_sampler_argmax(logits, s->V);
    lc_sampler_probs(s, logits);
    return lc_sampler_pick(s, lc_sampler_uniform(s->o.seed, step));
}

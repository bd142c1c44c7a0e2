/* sampler.h — picks the next token from a row of logits, as Hugging Face
 * generate does: greedy argmax at temperature 0, else temperature, top-k,
 * top-p (TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, in
 * that order), softmax and one draw.
 *
 *   greedy   the largest logit; ties go to the lowest id (torch.argmax);
 *   top-k    k > 0: keeps every token whose logit is ≥ the k-th largest (as
 *            HF, tokens tied with the k-th are all kept); k ≥ V keeps all;
 *   top-p    p < 1: with the kept tokens' probabilities sorted descending
 *            (ties: lower id first), keeps a token while the probability
 *            mass from it to the least likely is > 1 − p — HF's ascending
 *            cumsum rule, i.e. the smallest most-probable set whose mass
 *            reaches p — and always the most likely one; p ≥ 1 keeps all.
 *
 * Draws are counter-based (autograd/hash.h's splitmix64): draw number `step`
 * of seed S depends on (S, step) only, so the same seed and prompt give the
 * same tokens, whatever was generated before with other seeds. */
#ifndef LC_SAMPLER_H
#define LC_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

#include "autograd/error.h"
#include "autograd/real.h"

typedef struct lc_sampler_opts {
    double temperature;   /* 0: greedy */
    int64_t top_k;        /* 0: off */
    double top_p;         /* 1: off; in (0, 1] */
    uint64_t seed;
} lc_sampler_opts;

typedef struct lc_sampler_entry {
    double v;
    int32_t id;
} lc_sampler_entry;

typedef struct lc_sampler {
    lc_sampler_opts o;
    int64_t V;
    int32_t *order;       /* [V] token ids by descending probability (after a filter) */
    double *p;            /* [V] probability of each token id (0: filtered out) */
    int64_t n_kept;       /* tokens with p > 0 after lc_sampler_probs */
    lc_sampler_entry *sorted; /* [V] sort work */
} lc_sampler;

/* Checks o (temperature ≥ 0 and finite, top_k ≥ 0, 0 < top_p ≤ 1) and
 * allocates the work for a vocabulary of V. */
int lc_sampler_init(lc_sampler *s, int64_t V, const lc_sampler_opts *o, lc_error *err);
void lc_sampler_free(lc_sampler *s);

/* The id of the largest of x[0..V) (lowest id on ties; NaN never wins). */
int32_t lc_sampler_argmax(const lc_real *x, int64_t V);

/* Fills s->p [V] with the distribution the next draw is made from at these
 * logits [V] (greedy: 1 at the argmax) and s->order with the kept ids by
 * descending probability, s->n_kept of them. */
void lc_sampler_probs(lc_sampler *s, const lc_real *logits);

/* The token for a uniform u in [0, 1) over the kept tokens of the last
 * lc_sampler_probs (inverse CDF in s->order). */
int32_t lc_sampler_pick(const lc_sampler *s, double u);

/* The uniform of draw number `step` of seed. */
double lc_sampler_uniform(uint64_t seed, uint64_t step);

/* The next token: argmax at temperature 0, else lc_sampler_probs then
 * lc_sampler_pick(lc_sampler_uniform(seed, step)). */
int32_t lc_sampler_next(lc_sampler *s, const lc_real *logits, uint64_t step);

#endif

/* kv_cache.h — the keys and values of the positions a decoder has already
 * run, per layer, so that generating a token costs one token's forward pass
 * plus attention over the cached positions (O(context)), not a forward over
 * the whole sequence.
 *
 * Filled by lc_model_decode (model.h): keys are stored after RoPE (and after
 * Qwen3's k norm), exactly the k and v tensors the trainer's attention reads,
 * so decoding with the cache is the training forward pass split in time. The
 * capacity is fixed at init (prompt + new tokens): memory is bounded, and
 * 2 · L · cap · KV·D lc_real values. */
#ifndef LC_KV_CACHE_H
#define LC_KV_CACHE_H

#include <stdint.h>

#include "autograd/error.h"
#include "autograd/real.h"
#include "train/model_config.h"

typedef struct lc_kv_cache {
    int n_layers;
    int64_t cap;         /* positions it can hold */
    int64_t len;         /* positions filled = the position of the next token */
    int64_t kv_dim;      /* KV · D */
    lc_real *k, *v;      /* [n_layers, cap, KV·D] each */
} lc_kv_cache;

/* Allocates a cache of cap positions for a model of config cfg (len 0). */
int lc_kv_cache_init(lc_kv_cache *c, const lc_model_config *cfg, int64_t cap, lc_error *err);
void lc_kv_cache_free(lc_kv_cache *c);
/* Bytes a cache of cap positions takes. */
double lc_kv_cache_bytes(const lc_model_config *cfg, int64_t cap);

/* Layer l's keys / values [cap, KV·D]. */
static inline lc_real *lc_kv_cache_k(const lc_kv_cache *c, int l)
{
    return c->k + (size_t)l * (size_t)(c->cap * c->kv_dim);
}
static inline lc_real *lc_kv_cache_v(const lc_kv_cache *c, int l)
{
    return c->v + (size_t)l * (size_t)(c->cap * c->kv_dim);
}

#endif

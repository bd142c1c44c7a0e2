/* kv_cache.c — per-layer key/value storage for decoding (see kv_cache.h). */
#include "train/kv_cache.h"

#include <stdlib.h>
#include <string.h>

double lc_kv_cache_bytes(const lc_model_config *cfg, int64_t cap)
{
    return 2.0 * cfg->n_layers * (double)cap * cfg->n_kv_heads * cfg->head_dim * sizeof(lc_real);
}

int lc_kv_cache_init(lc_kv_cache *c, const lc_model_config *cfg, int64_t cap, lc_error *err)
{
    memset(c, 0, sizeof *c);
    if (cap < 1)
        return lc_error_set(err, "KV cache: capacity must be at least 1 position");
    c->n_layers = cfg->n_layers;
    c->cap = cap;
    c->kv_dim = (int64_t)cfg->n_kv_heads * cfg->head_dim;
    size_t n = (size_t)cfg->n_layers * (size_t)cap * (size_t)c->kv_dim;
    c->k = malloc(n * sizeof(lc_real));
    c->v = malloc(n * sizeof(lc_real));
    if (!c->k || !c->v) {
        lc_kv_cache_free(c);
        return lc_error_set(err, "out of memory for a KV cache of %lld positions (%.1f MiB)",
                            (long long)cap, lc_kv_cache_bytes(cfg, cap) / 1048576.0);
    }
    return 0;
}

void lc_kv_cache_free(lc_kv_cache *c)
{
    free(c->k);
    free(c->v);
    memset(c, 0, sizeof *c);
}

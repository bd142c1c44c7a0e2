/* generate.c — the generator: KV cache, prefill, decode loop (see generate.h). */
#include "train/generate.h"

#include <stdlib.h>
#include <string.h>

#include "train/memory_plan.h"
#include "train/sysinfo.h"

struct lc_generator {
    const lc_model *m;
    const lc_lora *lora;      /* NULL: the base alone */
    lc_kv_cache cache;        /* [L, cap, KV·D] keys and values */
    lc_arena arena;           /* one layer's activations for up to cap tokens */
    lc_tape tape;             /* never records: gradients off */
    bool tape_ok;
    lc_real *logits;          /* [V] next-token logits */
};

/* Arena bytes for a decode call of up to T tokens: one layer's activations
 * and the largest op scratch (the training plan of a 1-layer model of the
 * same shape, which also covers attention over T keys), plus the two [T, C]
 * residual buffers. */
static int arena_bytes(const lc_model *m, const lc_lora *lora, int64_t T, size_t *bytes,
                       lc_error *err)
{
    lc_model one = *m; /* a view of layer 0 only, for the dry run (nothing is freed) */
    one.cfg.n_layers = 1;
    one.checkpoint_layers = false;
    lc_memory_plan plan;
    if (lc_memory_plan_cpu(&one, lora, 1, T, &plan, err))
        return -1;
    *bytes = plan.arena_bytes + (size_t)(2 * T * m->cfg.hidden_size) * sizeof(lc_real);
    return 0;
}

lc_generator *lc_generator_new(lc_model *m, const lc_lora *lora, int64_t max_len,
                               lc_error *err)
{
    const lc_model_config *c = &m->cfg;
    if (max_len < 1 || max_len > c->max_position_embeddings) {
        lc_error_set(err, "generation length %lld is outside 1..%d (max_position_embeddings)",
                     (long long)max_len, c->max_position_embeddings);
        return NULL;
    }
    lc_generator *g = calloc(1, sizeof *g);
    if (!g) {
        lc_error_set(err, "out of memory");
        return NULL;
    }
    g->m = m;
    g->lora = lora;
    size_t bytes;
    g->logits = malloc((size_t)c->vocab_size * sizeof(lc_real));
    if (!g->logits) {
        lc_error_set(err, "out of memory for the logits");
        goto fail;
    }
    if (lc_model_prepare_rope(m, max_len, err) || lc_kv_cache_init(&g->cache, c, max_len, err) ||
        arena_bytes(m, lora, max_len, &bytes, err) ||
        lc_arena_init(&g->arena, "generate", bytes, err) ||
        lc_tape_init(&g->tape, &g->arena, 1 << 16, err))
        goto fail;
    g->tape_ok = true;
    g->tape.grad_enabled = false;
    return g;
fail:
    lc_generator_free(g);
    return NULL;
}

void lc_generator_free(lc_generator *g)
{
    if (!g)
        return;
    if (g->tape_ok)
        lc_tape_free(&g->tape);
    if (g->arena.base)
        lc_arena_free(&g->arena);
    lc_kv_cache_free(&g->cache);
    free(g->logits);
    free(g);
}

void lc_generator_reset(lc_generator *g)
{
    g->cache.len = 0;
}

int lc_generator_feed(lc_generator *g, const int32_t *ids, int64_t n, lc_error *err)
{
    const int64_t V = g->m->cfg.vocab_size;
    if (n < 1)
        return lc_error_set(err, "nothing to feed: 0 tokens");
    if (g->cache.len + n > g->cache.cap)
        return lc_error_set(err, "the sequence would be %lld tokens, longer than the %lld the "
                            "generator was made for", (long long)(g->cache.len + n),
                            (long long)g->cache.cap);
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return lc_error_set(err, "token id %ld is outside the vocabulary (0..%lld)",
                                (long)ids[i], (long long)(V - 1));
    lc_model_decode(g->m, &g->tape, ids, n, g->lora, &g->cache, g->logits);
    return 0;
}

const lc_real *lc_generator_logits(const lc_generator *g) { return g->logits; }
int64_t lc_generator_len(const lc_generator *g) { return g->cache.len; }
int64_t lc_generator_cap(const lc_generator *g) { return g->cache.cap; }

static bool is_stop(const lc_gen_opts *o, int32_t id)
{
    for (int i = 0; i < o->n_stop; i++)
        if (o->stop_ids[i] == id)
            return true;
    return false;
}

int lc_generate(lc_generator *g, const int32_t *prompt, int64_t n_prompt, const lc_gen_opts *o,
                lc_gen_result *r, lc_error *err)
{
    memset(r, 0, sizeof *r);
    if (n_prompt < 1)
        return lc_error_set(err, "the prompt is empty (no tokens)");
    if (o->max_new_tokens < 1)
        return lc_error_set(err, "max_new_tokens must be at least 1");
    if (n_prompt + o->max_new_tokens - 1 > g->cache.cap)
        return lc_error_set(err, "prompt (%lld tokens) + max_new_tokens (%lld) exceed the "
                            "%lld positions the generator was made for", (long long)n_prompt,
                            (long long)o->max_new_tokens, (long long)g->cache.cap);
    lc_sampler s;
    if (lc_sampler_init(&s, g->m->cfg.vocab_size, &o->sampling, err))
        return -1;
    r->ids = malloc((size_t)o->max_new_tokens * sizeof *r->ids);
    if (!r->ids) {
        lc_sampler_free(&s);
        return lc_error_set(err, "out of memory");
    }
    lc_generator_reset(g);
    int rc = -1;
    double t0 = lc_now_s();
    if (lc_generator_feed(g, prompt, n_prompt, err))
        goto out;
    double t1 = lc_now_s();
    r->prefill_s = t1 - t0;
    for (int64_t i = 0; i < o->max_new_tokens; i++) {
        int32_t id = lc_sampler_next(&s, g->logits, (uint64_t)i);
        r->ids[r->n++] = id;
        bool stop = is_stop(o, id);
        if (o->on_token && o->on_token(o->user, id, i))
            stop = true;
        if (stop) {
            r->stopped = true;
            break;
        }
        if (i + 1 < o->max_new_tokens && lc_generator_feed(g, &id, 1, err))
            goto out;
    }
    r->decode_s = lc_now_s() - t1;
    rc = 0;
out:
    lc_sampler_free(&s);
    if (rc)
        lc_gen_result_free(r);
    return rc;
}

void lc_gen_result_free(lc_gen_result *r)
{
    free(r->ids);
    memset(r, 0, sizeof *r);
}

/* model.c — loading a decoder of any supported family and its forward pass (see model.h). */
#include "train/model.h"

#include "data/bnb4.h"
#include "autograd/moe_block.h"
#include "train/gguf_model.h"
#include "autograd/hash.h"
#include "autograd/cpu/gemm_bf16.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

lc_dtype lc_model_stored_dtype(const lc_model *m)
{
    return (m->host ? m->host : m)->embed.dtype;
}

/* Number of lc_real values needed for norms and biases. */
size_t lc_model_small_count(const lc_model_config *c)
{
    const lc_family *f = lc_family_of(c->arch);
    size_t per = 0;
    for (int k = 0; k < LC_NORM_COUNT; k++)
        per += f->norm_names[k] ? (size_t)c->hidden_size : 0;
    for (int i = 0; i < f->n_modules; i++) {
        int64_t out, in;
        lc_module_shape(c, f->modules[i], &out, &in);
        if (lc_module_has_bias(c, f->modules[i]))
            per += (size_t)out;
    }
    if (c->qk_norm)
        per += 2 * (size_t)c->head_dim;
    return per * (size_t)c->n_layers + (size_t)c->hidden_size;
}

/* Expert weights of an MoE model: gate, up and down of every expert of every
 * layer (0 for dense families). */
static size_t n_expert_weights(const lc_model_config *c)
{
    return (size_t)c->n_layers * (size_t)c->n_experts * 3;
}

int lc_model_alloc_structure(lc_model *m, lc_error *err)
{
    size_t n_exp = (size_t)m->cfg.n_experts * 3; /* per layer */
    m->layers = calloc((size_t)m->cfg.n_layers, sizeof *m->layers);
    m->small = calloc(lc_model_small_count(&m->cfg), sizeof(lc_real));
    m->expert_weights = calloc(n_expert_weights(&m->cfg) + 1, sizeof *m->expert_weights);
    if (!m->layers || !m->small || !m->expert_weights)
        return lc_error_set(err, "out of memory for the model structure");
    for (int l = 0; n_exp && l < m->cfg.n_layers; l++)
        m->layers[l].experts = m->expert_weights + (size_t)l * n_exp;
    return 0;
}

/* Finds a tensor, checks it is a float matrix/vector of the expected shape. */
static int get_tensor(lc_model *m, const char *name, int ndim, int64_t d0, int64_t d1,
                      lc_weight *w, lc_error *err)
{
    const lc_st_tensor *t = lc_model_files_find(&m->files, name);
    if (!t)
        return lc_error_set(err, "%s: missing tensor '%s'", m->files.dir, name);
    if (t->dtype != LC_DTYPE_F32 && t->dtype != LC_DTYPE_F16 && t->dtype != LC_DTYPE_BF16)
        return lc_error_set(err, "%s: tensor '%s' has dtype %s (expected F32, F16 or BF16)",
                            m->files.dir, name, lc_dtype_name(t->dtype));
    bool ok = t->ndim == ndim && t->shape[0] == d0 && (ndim == 1 || t->shape[1] == d1);
    if (!ok) {
        char got[128] = "[";
        for (int i = 0; i < t->ndim; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? "," : "",
                     (long long)t->shape[i]);
        strcat(got, "]");
        if (ndim == 1)
            return lc_error_set(err, "%s: tensor '%s' has shape %s, expected [%lld]",
                                m->files.dir, name, got, (long long)d0);
        return lc_error_set(err, "%s: tensor '%s' has shape %s, expected [%lld,%lld]",
                            m->files.dir, name, got, (long long)d0, (long long)d1);
    }
    /* Kernels read weights in place (and hand F32 ones to BLAS): the data
     * must be aligned to its element size. Every writer pads the header to
     * 8 bytes; a file that does not is refused rather than read unaligned. */
    if ((uintptr_t)t->data % lc_dtype_size(t->dtype) != 0)
        return lc_error_set(err, "%s: tensor '%s' is not aligned to its %zu-byte elements "
                            "(the safetensors header length is not padded); re-save the file",
                            m->files.dir, name, lc_dtype_size(t->dtype));
    *w = (lc_weight){t->data, t->dtype, d0, ndim == 1 ? 1 : d1, NULL, NULL};
    return 0;
}

/* Reads vector `name` [n] into *slot; a norm weight of a (1 + w) family
 * is stored as applied, w + 1 (in f32, as transformers computes 1 + w). */
static int get_vector(lc_model *m, const char *name, int64_t n, bool norm, lc_real **slot,
                      lc_real **dst, lc_error *err)
{
    lc_weight w;
    if (get_tensor(m, name, 1, n, 1, &w, err))
        return -1;
    w.rows = 1;
    w.cols = n;
    lc_weight_rows_to_real(&w, 0, 1, *slot);
    if (norm && lc_family_of(m->cfg.arch)->norm_plus_one)
        for (int64_t i = 0; i < n; i++)
            (*slot)[i] += 1;
    *dst = *slot;
    *slot += n;
    return 0;
}

/* Drops the whole pages of a read-only file mapping inside [p, p + bytes):
 * read once and converted, they need not stay resident. */
static void release_pages(const void *p, size_t bytes)
{
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + (uintptr_t)page - 1) & ~(uintptr_t)(page - 1);
    uintptr_t b = ((uintptr_t)p + bytes) & ~(uintptr_t)(page - 1);
    if (b > a)
        madvise((void *)a, b - a, MADV_DONTNEED);
}

/* Quantizes one freshly read linear into *store and releases the file
 * pages it came from. */
static int quantize_linear(lc_nf4_store *store, lc_weight *w, const lc_model_load_opts *o,
                           lc_error *err)
{
    size_t n = (size_t)(w->rows * w->cols);
    float *tmp = malloc(n * sizeof(float));
    if (!tmp)
        return lc_error_set(err, "out of memory quantizing a [%lld,%lld] weight",
                            (long long)w->rows, (long long)w->cols);
    lc_weight_rows_to_real(w, 0, w->rows, tmp);
    int rc = lc_nf4_quantize(store, tmp, w->rows, w->cols, o->nf4_blocksize,
                             o->nf4_double_quant, err);
    free(tmp);
    if (rc)
        return -1;
    release_pages(w->data, n * lc_dtype_size(w->dtype));
    w->nf4 = &store->q;
    w->data = NULL;
    return 0;
}

/* QLoRA over an MoE model: every expert's gate, up and down to NF4 too (the
 * router stays as loaded). No-op for dense families. */
static int quantize_experts(lc_model *m, const lc_model_load_opts *o, lc_error *err)
{
    const size_t n = n_expert_weights(&m->cfg);
    if (!n)
        return 0;
    if (!(m->nf4_experts = calloc(n, sizeof *m->nf4_experts)))
        return lc_error_set(err, "out of memory");
    for (size_t i = 0; i < n; i++)
        if (quantize_linear(&m->nf4_experts[i], &m->expert_weights[i], o, err))
            return -1;
    return 0;
}

/* An MoE layer's router [E, C] and experts (gate, up [FF, C], down [C, FF]
 * each), by the family's file names. */
static int load_experts(lc_model *m, int l, lc_error *err)
{
    const lc_model_config *c = &m->cfg;
    const lc_family *f = lc_family_of(c->arch);
    lc_layer_weights *L = &m->layers[l];
    const int64_t C = c->hidden_size, FF = c->moe_intermediate_size;
    char name[256];
    snprintf(name, sizeof name, "model.layers.%d.%s.gate.weight", l, f->moe_parent);
    if (get_tensor(m, name, 2, c->n_experts, C, &L->router, err))
        return -1;
    for (int e = 0; e < c->n_experts; e++)
        for (int i = 0; i < 3; i++) {
            lc_family_expert_weight_name(f, name, sizeof name, l, e, i);
            if (get_tensor(m, name, 2, i < 2 ? FF : C, i < 2 ? C : FF, &L->experts[3 * e + i],
                           err))
                return -1;
        }
    return 0;
}

int lc_model_load(lc_model *m, const char *dir, lc_error *err)
{
    return lc_model_load_with(m, dir, NULL, err);
}

int lc_model_load_with(lc_model *m, const char *dir, const lc_model_load_opts *o,
                       lc_error *err)
{
    if (lc_gguf_model_is_gguf(dir))
        return lc_gguf_model_load(m, dir, o, err);
    memset(m, 0, sizeof *m);
    if (lc_model_config_load(&m->cfg, dir, err))
        return -1;
    if (lc_model_files_open(&m->files, dir, err))
        return -1;
    m->has_files = true;
    const lc_model_config *c = &m->cfg;
    int64_t C = c->hidden_size, V = c->vocab_size, D = c->head_dim;
    if (lc_model_alloc_structure(m, err))
        goto fail;
    bool prequantized = c->prequantized_bnb4;
    if (prequantized && c->n_experts) {
        lc_error_set(err, "%s: a bitsandbytes 4-bit %s checkpoint: lorac reads pre-quantized "
                     "dense families only; load the float model with load_in_4bit instead",
                     dir, c->model_type);
        goto fail;
    }
    if ((o && o->nf4) || prequantized) {
        m->nf4 = calloc((size_t)c->n_layers * LC_MOD_COUNT, sizeof *m->nf4);
        if (!m->nf4) {
            lc_error_set(err, "out of memory");
            goto fail;
        }
    }
    lc_real *slot = m->small;
    char name[256];
    if (get_tensor(m, "model.embed_tokens.weight", 2, V, C, &m->embed, err))
        goto fail;
    if (c->tie_word_embeddings)
        m->lm_head = m->embed;
    else if (get_tensor(m, "lm_head.weight", 2, V, C, &m->lm_head, err))
        goto fail;
    if (get_vector(m, "model.norm.weight", C, true, &slot, &m->final_norm, err))
        goto fail;
    const lc_family *f = lc_family_of(c->arch);
    for (int l = 0; l < c->n_layers; l++) {
        lc_layer_weights *L = &m->layers[l];
        if (f->moe && load_experts(m, l, err))
            goto fail;
        for (int i = 0; i < f->n_modules; i++) {
            lc_module mod = f->modules[i];
            if (lc_module_is_expert(mod))
                continue;
            int64_t out, in;
            lc_module_shape(c, mod, &out, &in);
            snprintf(name, sizeof name, "model.layers.%d.%s.%s.weight", l,
                     lc_module_parent(mod), lc_module_name(mod));
            if (prequantized) {
                /* a bitsandbytes "-bnb-4bit" checkpoint: view its NF4 data in place */
                size_t k = (size_t)l * LC_MOD_COUNT + (size_t)mod;
                snprintf(name, sizeof name, "model.layers.%d.%s.%s", l, lc_module_parent(mod),
                         lc_module_name(mod));
                if (lc_bnb4_view(&m->files, name, out, in, &m->nf4[k].q, err))
                    goto fail;
                L->proj[mod] = (lc_weight){NULL, m->embed.dtype, out, in, &m->nf4[k].q, NULL};
            } else if (get_tensor(m, name, 2, out, in, &L->proj[mod], err)) {
                goto fail;
            } else if (m->nf4 &&
                quantize_linear(&m->nf4[(size_t)l * LC_MOD_COUNT + (size_t)mod], &L->proj[mod], o,
                                err)) {
                lc_error_prefix(err, "%s", name);
                goto fail;
            }
            if (lc_module_has_bias(c, mod)) {
                snprintf(name, sizeof name, "model.layers.%d.%s.%s.bias", l,
                         lc_module_parent(mod), lc_module_name(mod));
                if (get_vector(m, name, out, false, &slot, &L->bias[mod], err))
                    goto fail;
            }
        }
        for (int k = 0; k < LC_NORM_COUNT; k++) {
            if (!f->norm_names[k])
                continue;
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, f->norm_names[k]);
            if (get_vector(m, name, C, true, &slot, &L->norm[k], err))
                goto fail;
        }
        if (c->qk_norm) {
            snprintf(name, sizeof name, "model.layers.%d.self_attn.q_norm.weight", l);
            if (get_vector(m, name, D, true, &slot, &L->q_norm, err))
                goto fail;
            snprintf(name, sizeof name, "model.layers.%d.self_attn.k_norm.weight", l);
            if (get_vector(m, name, D, true, &slot, &L->k_norm, err))
                goto fail;
        }
    }
    if (m->nf4 && !prequantized && quantize_experts(m, o, err))
        goto fail;
    return 0;
fail:
    lc_model_free(m);
    return -1;
}

/* n draws, uniform with std 0.02, of the stream *rng into dst, written in
 * dtype, in parallel: draw i comes from the state lc_rng_at(*rng, i), so
 * the values are those of a sequential fill whatever the thread count (an
 * 8B model is 8e9 draws). */
static void fill_random(void *dst, lc_dtype dtype, int64_t n, uint64_t *rng)
{
    const double a = 0.02 * sqrt(3.0);
    const uint64_t s0 = *rng;
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (int64_t i = 0; i < n; i++) {
        uint64_t s = lc_rng_at(s0, (uint64_t)i);
        float v = (float)((lc_rng_uniform(&s) * 2 - 1) * a);
        if (dtype == LC_DTYPE_F32)
            ((float *)dst)[i] = v;
        else
            ((uint16_t *)dst)[i] = lc_f32_to_bf16(v);
    }
    *rng = lc_rng_at(s0, (uint64_t)n);
}

/* What a shapes-only NF4 linear points to: it marks the weight as NF4 for the
 * kernels' scratch sizes; its data are never read (dry runs only). */
static const lc_nf4 shapes_only_nf4;

/* The next matrix [out, in] of a random model at *p (filled, *p advanced) or,
 * when *p is NULL, of a shapes-only one (no data; NF4 when nf4). */
static lc_weight next_weight(unsigned char **p, lc_dtype dtype, int64_t out, int64_t in,
                             bool nf4, uint64_t *rng)
{
    lc_weight w = {*p, dtype, out, in, NULL, NULL};
    if (!*p) {
        w.nf4 = nf4 ? &shapes_only_nf4 : NULL;
        return w;
    }
    fill_random(*p, dtype, out * in, rng);
    *p += (size_t)(out * in) * lc_dtype_size(dtype);
    return w;
}

/* A random model, or with shapes a shapes-only one (see model.h). */
static int init_model(lc_model *m, const lc_model_config *cfg, lc_dtype dtype, uint64_t seed,
                      bool shapes, bool nf4, lc_error *err)
{
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    if (!shapes && dtype != LC_DTYPE_F32 && dtype != LC_DTYPE_BF16)
        return lc_error_set(err, "random model: dtype must be F32 or BF16");
    if (lc_model_alloc_structure(m, err))
        goto fail;
    const lc_model_config *c = &m->cfg;
    int64_t C = c->hidden_size, V = c->vocab_size;
    size_t es = lc_dtype_size(dtype);
    const lc_family *f = lc_family_of(c->arch);
    size_t total = (size_t)(V * C) * (c->tie_word_embeddings ? 1 : 2);
    /* an MoE layer: router [E, C] and E experts of 3·FF·C */
    total += (size_t)c->n_layers * (size_t)c->n_experts *
             (size_t)(C + 3 * (int64_t)c->moe_intermediate_size * C);
    for (int i = 0; i < f->n_modules; i++) {
        int64_t out, in;
        if (lc_module_is_expert(f->modules[i]))
            continue;
        lc_module_shape(c, f->modules[i], &out, &in);
        total += (size_t)(out * in) * (size_t)c->n_layers;
    }
    m->owned_weights = shapes ? NULL : malloc(total * es);
    if (!shapes && !m->owned_weights) {
        lc_error_set(err, "out of memory for %.1f GiB of random weights",
                     total * es / 1073741824.0);
        goto fail;
    }
    uint64_t rng = seed;
    unsigned char *p = m->owned_weights;
    m->embed = next_weight(&p, dtype, V, C, false, &rng);
    m->lm_head = c->tie_word_embeddings ? m->embed : next_weight(&p, dtype, V, C, false, &rng);
    lc_real *slot = m->small;
    m->final_norm = slot;
    slot += C;
    for (int l = 0; l < c->n_layers; l++) {
        lc_layer_weights *L = &m->layers[l];
        for (int i = 0; f->moe && i < 1 + 3 * c->n_experts; i++) {
            /* the router, then each expert's gate, up, down */
            int64_t FF = c->moe_intermediate_size, k = (i - 1) % 3;
            int64_t out = i == 0 ? c->n_experts : k < 2 ? FF : C, in = i > 0 && k == 2 ? FF : C;
            lc_weight *w = i == 0 ? &L->router : &L->experts[i - 1];
            *w = next_weight(&p, dtype, out, in, nf4 && i > 0, &rng);
        }
        for (int i = 0; i < f->n_modules; i++) {
            lc_module mod = f->modules[i];
            int64_t out, in;
            if (lc_module_is_expert(mod))
                continue;
            lc_module_shape(c, mod, &out, &in);
            L->proj[mod] = next_weight(&p, dtype, out, in, nf4, &rng);
            if (lc_module_has_bias(c, mod)) {
                L->bias[mod] = slot;
                slot += out; /* zero bias */
            }
        }
        for (int k = 0; k < LC_NORM_COUNT; k++)
            if (f->norm_names[k]) {
                L->norm[k] = slot;
                slot += C;
            }
        if (c->qk_norm) {
            L->q_norm = slot;
            slot += c->head_dim;
            L->k_norm = slot;
            slot += c->head_dim;
        }
    }
    /* every norm weight is 1 (as applied) */
    for (int l = 0; l < c->n_layers; l++) {
        lc_layer_weights *L = &m->layers[l];
        for (int k = 0; k < LC_NORM_COUNT; k++)
            for (int64_t i = 0; L->norm[k] && i < C; i++)
                L->norm[k][i] = 1;
        for (int64_t i = 0; c->qk_norm && i < c->head_dim; i++)
            L->q_norm[i] = L->k_norm[i] = 1;
    }
    for (int64_t i = 0; i < C; i++)
        m->final_norm[i] = 1;
    if (shapes)
        m->rope_len = c->max_position_embeddings;
    return 0;
fail:
    lc_model_free(m);
    return -1;
}

int lc_model_init_random(lc_model *m, const lc_model_config *cfg, lc_dtype dtype,
                         uint64_t seed, lc_error *err)
{
    return init_model(m, cfg, dtype, seed, false, false, err);
}

int lc_model_init_shapes(lc_model *m, const lc_model_config *cfg, lc_dtype dtype, bool nf4,
                         lc_error *err)
{
    return init_model(m, cfg, dtype, 0, true, nf4, err);
}

int lc_model_quantize_nf4(lc_model *m, const lc_model_load_opts *o, lc_error *err)
{
    LC_ASSERT(!m->nf4);
    m->nf4 = calloc((size_t)m->cfg.n_layers * LC_MOD_COUNT, sizeof *m->nf4);
    if (!m->nf4)
        return lc_error_set(err, "out of memory");
    const lc_family *f = lc_family_of(m->cfg.arch);
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int i = 0; i < f->n_modules; i++)
            if (!lc_module_is_expert(f->modules[i]) &&
                quantize_linear(&m->nf4[(size_t)l * LC_MOD_COUNT + (size_t)f->modules[i]],
                                &m->layers[l].proj[f->modules[i]], o, err))
                return -1;
    return quantize_experts(m, o, err);
}

double lc_model_weight_bytes(const lc_model *m)
{
    const lc_model_config *c = &m->cfg;
    double b = lc_weight_bytes(&m->embed);
    if (!c->tie_word_embeddings)
        b += lc_weight_bytes(&m->lm_head);
    const lc_family *f = lc_family_of(c->arch);
    for (int l = 0; l < c->n_layers; l++) {
        for (int i = 0; i < f->n_modules; i++)
            if (!lc_module_is_expert(f->modules[i]))
                b += lc_weight_bytes(&m->layers[l].proj[f->modules[i]]);
        for (int e = 0; f->moe && e < 3 * c->n_experts; e++)
            b += lc_weight_bytes(&m->layers[l].experts[e]);
        if (f->moe)
            b += lc_weight_bytes(&m->layers[l].router);
    }
    return b;
}

bool lc_model_tied(const lc_model *m)
{
    return m->lm_head.data == m->embed.data && m->lm_head.nf4 == m->embed.nf4 &&
           m->lm_head.ggml == m->embed.ggml;
}

int lc_model_each_weight(lc_model *m, bool is_tied, int (*fn)(lc_weight *w, void *ctx),
                         void *ctx)
{
    int rc = fn(&m->embed, ctx);
    if (rc == 0 && !is_tied)
        rc = fn(&m->lm_head, ctx);
    size_t n_exp = (size_t)m->cfg.n_experts * 3;
    for (int l = 0; rc == 0 && l < m->cfg.n_layers; l++) {
        lc_layer_weights *L = &m->layers[l];
        for (int k = 0; rc == 0 && k < LC_MOD_COUNT; k++)
            rc = fn(&L->proj[k], ctx);
        if (rc == 0)
            rc = fn(&L->router, ctx);
        for (size_t i = 0; rc == 0 && i < n_exp; i++)
            rc = fn(&L->experts[i], ctx);
    }
    if (is_tied)
        m->lm_head = m->embed;
    return rc;
}

/* What lc_model_weights_to_bf16 does per matrix: count (out NULL), or
 * convert into out and advance it. */
typedef struct to_bf16_ctx {
    int64_t elems;
    uint16_t *out;
} to_bf16_ctx;

static int weight_to_bf16(lc_weight *w, void *ctx)
{
    to_bf16_ctx *c = ctx;
    if (!w->data || w->nf4 || w->ggml || (w->dtype != LC_DTYPE_F32 && w->dtype != LC_DTYPE_F16))
        return 0;
    int64_t n = w->rows * w->cols;
    c->elems += n;
    if (!c->out)
        return 0;
    uint16_t *dst = c->out;
    if (w->dtype == LC_DTYPE_F32) {
        lc_cpu_round_bf16(w->data, n, dst);
    } else {
        const uint16_t *h = w->data;
#pragma omp parallel for schedule(static) if (n >= (1 << 16))
        for (int64_t i = 0; i < n; i++)
            dst[i] = lc_f32_to_bf16(lc_f16_to_f32(h[i]));
    }
    release_pages(w->data, (size_t)n * lc_dtype_size(w->dtype));
    *w = (lc_weight){dst, LC_DTYPE_BF16, w->rows, w->cols, NULL, NULL};
    c->out += n;
    return 0;
}

int lc_model_weights_to_bf16(lc_model *m, lc_error *err)
{
    const bool is_tied = lc_model_tied(m);
    to_bf16_ctx c = {0, NULL};
    lc_model_each_weight(m, is_tied, weight_to_bf16, &c);
    if (c.elems == 0)
        return 0;
    uint16_t *buf = malloc((size_t)c.elems * sizeof *buf);
    if (!buf)
        return lc_error_set(err, "out of memory for the bf16 copy of the frozen weights "
                            "(%.1f MiB)", (double)c.elems * 2 / 1048576.0);
    free(m->bf16_weights);
    m->bf16_weights = buf;
    c = (to_bf16_ctx){0, buf};
    lc_model_each_weight(m, is_tied, weight_to_bf16, &c);
    /* a random model's matrices all lived in owned_weights: every one was
     * F32 (or F16) and is now a bf16 copy */
    free(m->owned_weights);
    m->owned_weights = NULL;
    return 0;
}

void lc_model_free(lc_model *m)
{
    if (m->has_files)
        lc_model_files_close(&m->files);
    free(m->layers);
    free(m->small);
    free(m->owned_weights);
    free(m->bf16_weights);
    for (size_t i = 0; m->nf4 && i < (size_t)m->cfg.n_layers * LC_MOD_COUNT; i++)
        lc_nf4_store_free(&m->nf4[i]);
    free(m->nf4);
    for (size_t i = 0; m->nf4_experts && i < n_expert_weights(&m->cfg); i++)
        lc_nf4_store_free(&m->nf4_experts[i]);
    free(m->nf4_experts);
    free(m->expert_weights);
    for (int k = 0; k < LC_ROPE_TABLE_COUNT; k++)
        free(m->cos_sin[k]);
    lc_gguf_base_free(m->gguf);
    memset(m, 0, sizeof *m);
}

int lc_model_prepare_rope(lc_model *m, int64_t n, lc_error *err)
{
    if (n <= m->rope_len)
        return 0;
    const int D = m->cfg.head_dim;
    /* longrope scales cos and sin alike (transformers' attention_scaling) */
    const double mult = m->cfg.rope_type == LC_ROPE_LONGROPE ? m->cfg.rope_attention_factor : 1.0;
    double *inv = malloc((size_t)D / 2 * sizeof(double));
    if (!inv)
        return lc_error_set(err, "out of memory for the RoPE table (%lld positions)",
                            (long long)n);
    for (int k = 0; k < LC_ROPE_TABLE_COUNT; k++) {
        if (!lc_model_config_has_rope_table(&m->cfg, k))
            continue;
        lc_real *cs = malloc((size_t)n * (size_t)D * sizeof(lc_real)); /* [n, D] */
        if (!cs) {
            free(inv);
            return lc_error_set(err, "out of memory for the RoPE table (%lld positions)",
                                (long long)n);
        }
        lc_model_config_rope_inv_freq(&m->cfg, k, inv);
        for (int64_t p = 0; p < n; p++)
            for (int i = 0; i < D / 2; i++) {
                double ang = (double)p * inv[i];
                cs[p * D + i] = (lc_real)(cos(ang) * mult);
                cs[p * D + D / 2 + i] = (lc_real)(sin(ang) * mult);
            }
        free(m->cos_sin[k]);
        m->cos_sin[k] = cs;
    }
    free(inv);
    m->rope_len = n;
    return 0;
}

/* c = ‖W + s·B·A‖ per row of every adapted linear: into each adapter's m
 * (dst NULL) or into dst, adapter after adapter (each pointed at by
 * adapter.norm). */
static int dora_norms(const lc_model *m, lc_lora *lora, lc_real *dst, lc_error *err)
{
    for (int l = 0; l < lora->n_layers; l++)
        for (int mod = 0; mod < LC_MOD_COUNT; mod++) {
            lc_lora_adapter *ad = &lora->adapters[(size_t)l * LC_MOD_COUNT + mod];
            if (!ad->A || lc_module_is_expert(mod)) /* DoRA is refused for experts */
                continue;
            const lc_weight *W = &m->layers[l].proj[mod];
            lc_real *scr = malloc(lc_k_dora_norm_scratch(W) * sizeof(lc_real) + 1);
            if (!scr)
                return lc_error_set(err, "out of memory for DoRA's weight norms");
            lc_real *c = dst ? dst : ad->m->data;
            lc_k_dora_norm(W, ad->A->data, ad->B->data, ad->A->shape[0], ad->scale, c, scr);
            free(scr);
            if (dst) {
                ad->norm = dst;
                dst += W->rows;
            }
        }
    return 0;
}

int lc_model_dora_init(const lc_model *m, lc_lora *lora, lc_error *err)
{
    return lora->cfg.use_dora ? dora_norms(m, lora, NULL, err) : 0;
}

int lc_model_dora_freeze(const lc_model *m, lc_lora *lora, lc_error *err)
{
    if (!lora || !lora->cfg.use_dora || lora->frozen_norms)
        return 0;
    size_t n = 0;
    for (size_t a = 0; a < (size_t)lora->n_layers * LC_MOD_COUNT; a++)
        if (lora->adapters[a].m)
            n += (size_t)lora->adapters[a].m->numel;
    if (!(lora->frozen_norms = malloc(n * sizeof(lc_real) + 1)))
        return lc_error_set(err, "out of memory for DoRA's weight norms");
    return dora_norms(m, lora, lora->frozen_norms, err);
}

static lc_linear make_linear(const lc_model *m, const lc_lora *lora, int l, lc_module mod)
{
    const lc_layer_weights *L = &m->layers[l];
    return (lc_linear){&L->proj[mod], L->bias[mod], lora ? lc_lora_get(lora, l, mod) : NULL};
}

/* Everything one decoder layer needs, for lc_op_checkpoint's block call. */
typedef struct layer_ctx {
    const lc_model *m;
    const lc_lora *lora;
    const lc_batch *b;
    const lc_attn_shape *attn; /* this layer's: sliding or not */
    const lc_real *cos_sin;    /* this layer's RoPE table [rope_len, D] */
    lc_kv_cache *cache;        /* decoding: K/V of earlier positions (attn->past of them) */
    int l;
} layer_ctx;

/* Decoding: appends this call's x [T, KV·D] (keys after RoPE, or values) to
 * a layer's cache rows base [cap, KV·D] at position cache->len and returns a
 * tensor over the filled rows [len+T, KV·D], what the attention reads. */
static lc_tensor *cache_append(lc_tape *t, const lc_kv_cache *cache, lc_real *base,
                               const lc_tensor *x)
{
    int64_t T = lc_tensor_rows(x), kvd = cache->kv_dim;
    LC_ASSERT(lc_tensor_cols(x) == kvd && cache->len + T <= cache->cap);
    memcpy(base + cache->len * kvd, x->data, (size_t)(T * kvd) * sizeof(lc_real));
    lc_tensor *all = lc_arena_calloc(t->arena, sizeof *all);
    int64_t shape[2] = {cache->len + T, kvd};
    lc_tensor_set_shape(all, 2, shape);
    all->data = base;
    return all;
}

/* f(x)·Wᵀ (+ LoRA) of one module of layer l, its output split into n
 * column parts of the given widths (a fused qkv_proj or gate_up_proj: out
 * [N, Σw] → parts [N, w_i]; n == 1: the output itself). */
static void fused_linear(lc_tape *t, const layer_ctx *lc, const lc_linear_input *in,
                         lc_module mod, int n, const int64_t *widths, lc_tensor **parts)
{
    lc_linear lin = make_linear(lc->m, lc->lora, lc->l, mod);
    lc_tensor *y;
    lc_op_linears(t, in, &lin, 1, NULL, &y);
    if (n == 1)
        parts[0] = y;
    else
        lc_op_split_cols(t, y, n, widths, parts);
}

/* x + norm(y) where the family norms a sub-block's output before the
 * residual add (Gemma's post-attention / post-feed-forward norms), for the
 * last linear `mod` of that sub-block on input `in`; else the fused
 * x + f(in)·Wᵀ. */
static lc_tensor *residual_linear(lc_tape *t, const layer_ctx *lc, const lc_linear_input *in,
                                  lc_module mod, const lc_real *out_norm, lc_tensor *x)
{
    const lc_model_config *c = &lc->m->cfg;
    lc_linear lin = make_linear(lc->m, lc->lora, lc->l, mod);
    lc_tensor *y;
    if (!out_norm) {
        lc_op_linears(t, in, &lin, 1, x, &y);
        return y;
    }
    lc_op_linears(t, in, &lin, 1, NULL, &y);
    y = lc_op_rmsnorm(t, y, c->hidden_size, out_norm, c->rms_norm_eps);
    return lc_op_add(t, x, y);
}

/* h + the sparse MoE block of layer lc->l over rmsnorm(h) [N, C], with the
 * experts' LoRA (lc_lora_expert) where targeted. */
static lc_tensor *moe_forward(lc_tape *t, const layer_ctx *lc, lc_tensor *h)
{
    const lc_model_config *c = &lc->m->cfg;
    const lc_layer_weights *L = &lc->m->layers[lc->l];
    const int E = c->n_experts;
    lc_moe_expert *ex = lc_arena_alloc(t->arena, (size_t)E * sizeof *ex); /* [E] */
    for (int e = 0; e < E; e++) {
        const lc_lora *lo = lc->lora;
        ex[e] = (lc_moe_expert){
            &L->experts[3 * e], &L->experts[3 * e + 1], &L->experts[3 * e + 2],
            lo ? lc_lora_expert(lo, lc->l, LC_MOD_EXPERTS_GATE_UP, e) : NULL,
            lo ? lc_lora_expert(lo, lc->l, LC_MOD_EXPERTS_DOWN, e) : NULL};
    }
    lc_moe_block blk = {.router = &L->router, .experts = ex, .E = E,
                        .route = {.mode = LC_ROUTER_SOFTMAX_THEN_TOPK,
                                  .k = c->n_experts_per_tok, .renorm = c->moe_renorm}};
    lc_tensor *xn = lc_op_rmsnorm(t, h, c->hidden_size, L->norm[LC_NORM_MLP_IN], c->rms_norm_eps);
    return lc_op_add(t, h, lc_moe_block_forward(t, &blk, xn, NULL));
}

/* x [N, C] → the layer's output [N, C]. */
static lc_tensor *layer_forward(lc_tape *t, void *ctxp, lc_tensor *x)
{
    const layer_ctx *lc = ctxp;
    const lc_model *m = lc->m;
    const lc_model_config *c = &m->cfg;
    const lc_family *f = lc_family_of(c->arch);
    const lc_layer_weights *L = &m->layers[lc->l];
    const int H = c->n_heads, KV = c->n_kv_heads, D = c->head_dim, l = lc->l;
    const lc_lora *lora = lc->lora;

    /* attention: q, k, v from the normed input (three linears or one fused) */
    lc_linear_input in1 = {.kind = LC_INPUT_RMSNORM, .x = x, .norm_w = L->norm[LC_NORM_ATTN_IN],
                           .eps = c->rms_norm_eps};
    lc_tensor *qkv_out[3];
    if (lc_family_has_module(f, LC_MOD_QKV)) {
        const int64_t widths[3] = {(int64_t)H * D, (int64_t)KV * D, (int64_t)KV * D};
        fused_linear(t, lc, &in1, LC_MOD_QKV, 3, widths, qkv_out);
    } else {
        lc_linear qkv[3] = {make_linear(m, lora, l, LC_MOD_Q), make_linear(m, lora, l, LC_MOD_K),
                            make_linear(m, lora, l, LC_MOD_V)};
        lc_op_linears(t, &in1, qkv, 3, NULL, qkv_out);
    }
    lc_tensor *q = qkv_out[0], *k = qkv_out[1], *v = qkv_out[2];
    if (c->qk_norm) {
        q = lc_op_rmsnorm(t, q, D, L->q_norm, c->rms_norm_eps);
        k = lc_op_rmsnorm(t, k, D, L->k_norm, c->rms_norm_eps);
    }
    q = lc_op_rope(t, q, H, D, lc->b->positions, lc->cos_sin);
    k = lc_op_rope(t, k, KV, D, lc->b->positions, lc->cos_sin);
    if (lc->cache) {
        k = cache_append(t, lc->cache, lc_kv_cache_k(lc->cache, l), k);
        v = cache_append(t, lc->cache, lc_kv_cache_v(lc->cache, l), v);
    }
    lc_tensor *a = lc_op_attention(t, q, k, v, lc->attn);
    lc_linear_input in2 = {.kind = LC_INPUT_PLAIN, .x = a};
    lc_tensor *h = residual_linear(t, lc, &in2, LC_MOD_O, L->norm[LC_NORM_ATTN_OUT], x);

    if (f->moe)
        return moe_forward(t, lc, h);

    /* MLP: act(gate) · up from the normed h (two linears or one fused), then down */
    lc_linear_input in3 = {.kind = LC_INPUT_RMSNORM, .x = h, .norm_w = L->norm[LC_NORM_MLP_IN],
                           .eps = c->rms_norm_eps};
    lc_tensor *gu_out[2];
    if (lc_family_has_module(f, LC_MOD_GATE_UP)) {
        const int64_t widths[2] = {c->intermediate_size, c->intermediate_size};
        fused_linear(t, lc, &in3, LC_MOD_GATE_UP, 2, widths, gu_out);
    } else {
        lc_linear gu[2] = {make_linear(m, lora, l, LC_MOD_GATE),
                           make_linear(m, lora, l, LC_MOD_UP)};
        lc_op_linears(t, &in3, gu, 2, NULL, gu_out);
    }
    lc_linear_input in4 = {.kind = f->act == LC_ACT_GELU_TANH ? LC_INPUT_GEGLU_TANH
                                                              : LC_INPUT_SWIGLU,
                           .x = gu_out[0], .up = gu_out[1]};
    return residual_linear(t, lc, &in4, LC_MOD_DOWN, L->norm[LC_NORM_MLP_OUT], h);
}

/* The batch where the tape's kernels read it, for as long as the step: b
 * itself on the CPU; on a device, a copy in the step arena whose arrays are
 * uploaded into the step's data arena (the one upload of a micro-batch). */
static const lc_batch *batch_on_backend(lc_tape *t, const lc_batch *b)
{
    if (!t->be->device)
        return b;
    const size_t bytes = (size_t)(b->B * b->T) * sizeof(int32_t);
    lc_batch *d = lc_arena_alloc(t->arena, sizeof *d);
    *d = (lc_batch){.B = b->B, .T = b->T};
    const int32_t *const host[4] = {b->input_ids, b->targets, b->positions, b->segments};
    const int32_t **dev[4] = {&d->input_ids, &d->targets, &d->positions, &d->segments};
    for (int k = 0; k < 4; k++) {
        /* room for every array, present or not: a step allocates the same
         * whatever the batch holds (the memory plan's dry run has no segments) */
        int32_t *p = lc_arena_alloc(t->data, bytes);
        if (!host[k])
            continue;
        t->be->upload(t->be, p, host[k], bytes);
        *dev[k] = p;
    }
    return d;
}

/* The decoder up to the final norm: xn [B·T, C], the host batch read on the
 * tape's backend as *on. With a cache (decoding: one row, gradients off) the
 * tokens sit after cache->len cached positions, and each layer's activations
 * are dropped once its output is copied out, so the arena holds one layer's
 * worth whatever the depth. */
static lc_tensor *hidden(const lc_model *m, lc_tape *t, const lc_batch *host_b, const lc_lora *lora,
                         lc_hidden_hook hook, void *user, lc_kv_cache *cache,
                         const lc_batch **on)
{
    const lc_model_config *c = &m->cfg;
    const int64_t N = host_b->B * host_b->T;
    int64_t max_pos = 0;
    for (int64_t i = 0; i < N; i++) {
        LC_ASSERT(host_b->positions[i] >= 0 && host_b->positions[i] < m->rope_len);
        max_pos = host_b->positions[i] > max_pos ? host_b->positions[i] : max_pos;
    }
    LC_ASSERT(!cache || (host_b->B == 1 && !host_b->segments && !t->grad_enabled));
    const lc_batch *b = *on = batch_on_backend(t, host_b);

    /* [0] full attention, [1] sliding */
    lc_attn_shape *attn = lc_arena_alloc(t->arena, 2 * sizeof *attn);
    for (int k = 0; k < 2; k++)
        attn[k] = (lc_attn_shape){.B = b->B, .T = b->T, .H = c->n_heads, .KV = c->n_kv_heads,
                                  .D = c->head_dim, .scale = lc_model_config_attn_scale(c),
                                  .softcap = c->attn_softcap, .segment = b->segments,
                                  .window = k ? c->sliding_window : 0,
                                  .past = cache ? cache->len : 0};
    /* longrope: the long factors once the batch reaches past the original
     * context (transformers decides per forward call from max position + 1) */
    const lc_real *main_rope = m->cos_sin[LC_ROPE_TABLE_MAIN];
    if (c->rope_type == LC_ROPE_LONGROPE && max_pos + 1 > c->rope_original_max_position)
        main_rope = m->cos_sin[LC_ROPE_TABLE_LONG];

    lc_tensor *x = lc_op_embedding(t, &m->embed, b->input_ids, N);
    if (lc_family_of(c->arch)->embed_scale) /* x · √C, √C rounded to the embeddings' dtype
                                               * as transformers builds its normalizer */
        x = lc_op_scale(t, x, lc_dtype_round((lc_real)sqrt((double)c->hidden_size),
                                             lc_model_stored_dtype(m)));
    lc_tensor *next = cache ? lc_tape_tensor2(t, N, c->hidden_size) : NULL; /* [N, C] */
    for (int l = 0; l < c->n_layers; l++) {
        if (hook)
            hook(user, l, x);
        lc_tape_mark mark = lc_tape_mark_now(t);
        layer_ctx *lc = lc_arena_alloc(t->arena, sizeof *lc);
        bool sliding = c->layer_sliding[l] && c->sliding_window > 0;
        const lc_real *rope = c->layer_sliding[l] && m->cos_sin[LC_ROPE_TABLE_LOCAL]
                                  ? m->cos_sin[LC_ROPE_TABLE_LOCAL] : main_rope;
        *lc = (layer_ctx){m, lora, b, &attn[sliding], rope, cache, l};
        lc_tensor *y = m->checkpoint_layers && !cache ? lc_op_checkpoint(t, layer_forward, lc, x)
                                                      : layer_forward(t, lc, x);
        if (cache) { /* keep y, drop the layer's activations; x's buffer takes the next output */
            lc_tape_copy(t, next->data, y->data, y->numel);
            lc_tape_release(t, mark);
            lc_tensor *free_buf = x;
            x = next;
            next = free_buf;
        } else {
            x = y;
        }
    }
    lc_tensor *xn = lc_op_rmsnorm(t, x, c->hidden_size, m->final_norm, c->rms_norm_eps);
    if (hook)
        hook(user, c->n_layers, xn);
    return xn;
}

lc_tensor *lc_model_hidden(const lc_model *m, lc_tape *t, const lc_batch *b,
                           const lc_lora *lora, lc_hidden_hook hook, void *user)
{
    const lc_batch *on;
    return hidden(m, t, b, lora, hook, user, NULL, &on);
}

lc_tensor *lc_model_loss(const lc_model *m, lc_tape *t, const lc_batch *b,
                         const lc_lora *lora, lc_real grad_scale, double *loss_sum,
                         int64_t *n_supervised)
{
    const lc_batch *on;
    lc_tensor *xn = hidden(m, t, b, lora, NULL, NULL, NULL, &on);
    return lc_op_lm_head_ce(t, xn, &m->lm_head, on->targets, grad_scale, loss_sum,
                            n_supervised, m->cfg.final_softcap);
}

void lc_model_logits(const lc_model *m, lc_tape *t, const lc_batch *b, const lc_lora *lora,
                     lc_real *logits, lc_hidden_hook hook, void *user)
{
    bool was = t->grad_enabled;
    t->grad_enabled = false;
    lc_tensor *xn = lc_model_hidden(m, t, b, lora, hook, user);
    lc_tape_mark mark = lc_tape_mark_now(t);
    const int64_t N = b->B * b->T, V = m->cfg.vocab_size;
    const lc_kernels *k = &t->be->k;
    lc_real *scr = lc_tape_scratch_f32(t, k->weight_scratch(&m->lm_head));
    /* [N, V] straight into logits on the CPU, through the data arena on a device */
    lc_real *z = t->be->device ? lc_tape_scratch(t, (size_t)(N * V)) : logits;
    k->weight_matmul(xn->data, N, &m->lm_head, 0, z, scr);
    k->softcap(z, N * V, m->cfg.final_softcap);
    if (z != logits)
        lc_tape_to_host(t, logits, z, N * V);
    lc_tape_release(t, mark);
    t->grad_enabled = was;
}

void lc_model_decode(const lc_model *m, lc_tape *t, const int32_t *ids, int64_t n,
                     const lc_lora *lora, lc_kv_cache *cache, lc_real *logits)
{
    LC_ASSERT(n >= 1 && cache->len + n <= cache->cap && cache->n_layers == m->cfg.n_layers &&
              cache->len + n <= m->rope_len);
    bool was = t->grad_enabled, was_training = t->training;
    t->grad_enabled = false;
    t->training = false; /* no LoRA dropout */
    size_t mark = lc_arena_mark(t->arena);
    int32_t *pos = lc_arena_alloc(t->arena, (size_t)n * sizeof(int32_t)); /* [n] */
    for (int64_t i = 0; i < n; i++)
        pos[i] = (int32_t)(cache->len + i);
    lc_batch b = {.B = 1, .T = n, .input_ids = ids, .positions = pos};
    const lc_batch *on;
    LC_ASSERT(!t->be->device); /* the KV cache and the logits below are host memory */
    lc_tensor *xn = hidden(m, t, &b, lora, NULL, NULL, cache, &on); /* [n, C] */
    cache->len += n;
    size_t ws = lc_k_weight_scratch(&m->lm_head);
    lc_real *scr = ws ? lc_arena_alloc(t->arena, ws * sizeof(lc_real)) : NULL;
    /* only the last token's logits [1, V] */
    lc_k_weight_matmul(xn->data + (n - 1) * m->cfg.hidden_size, 1, &m->lm_head, 0, logits, scr);
    lc_k_softcap(logits, m->cfg.vocab_size, m->cfg.final_softcap);
    lc_arena_release(t->arena, mark);
    t->grad_enabled = was;
    t->training = was_training;
}

/* gguf_model.c — a GGUF file as the base model (see gguf_model.h). */
#include "train/gguf_model.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "autograd/ggml_weight.h"
#include "data/ggml_quants.h"

/* What a model loaded from GGUF owns besides lc_model's usual buffers. */
struct lc_gguf_base {
    lc_gguf_file file;
    lc_ggml_weight *w;   /* [n_w]: descriptors the model's lc_weights point at */
    size_t n_w, used;
};

bool lc_gguf_model_is_gguf(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return false;
    size_t n = strlen(path);
    if (n >= 5 && strcmp(path + n - 5, ".gguf") == 0)
        return true;
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    char magic[4];
    bool yes = fread(magic, 1, 4, f) == 4 && memcmp(magic, "GGUF", 4) == 0;
    fclose(f);
    return yes;
}

/* ---- config ---------------------------------------------------------------- */

typedef struct cfg_ctx {
    const lc_gguf_file *f;
    const char *arch;
    lc_error *err;
} cfg_ctx;

static const char *akey(const cfg_ctx *x, char *buf, size_t n, const char *suffix)
{
    snprintf(buf, n, "%s.%s", x->arch, suffix);
    return buf;
}

/* `<arch>.suffix` as an integer in [lo, hi]; absent → *out = def (required: error). */
static int get_int(const cfg_ctx *x, const char *suffix, bool required, int64_t def,
                   int64_t lo, int64_t hi, int *out)
{
    char key[128];
    akey(x, key, sizeof key, suffix);
    int64_t v = def;
    if (lc_gguf_find_kv(x->f, key) || required) {
        if (lc_gguf_get_int(x->f, key, &v, x->err))
            return -1;
    }
    if (v < lo || v > hi)
        return lc_error_set(x->err, "%s: key '%s' is %lld, expected %lld..%lld", x->f->path, key,
                            (long long)v, (long long)lo, (long long)hi);
    *out = (int)v;
    return 0;
}

/* `<arch>.suffix` as a float (f32, or f64 as some writers store it). */
static int get_float(const cfg_ctx *x, const char *suffix, bool required, double def,
                     double *out)
{
    char key[128];
    akey(x, key, sizeof key, suffix);
    const lc_gguf_kv *kv = lc_gguf_find_kv(x->f, key);
    *out = def;
    if (!kv && !required)
        return 0;
    if (!kv || (kv->type != LC_GGUF_F32 && kv->type != LC_GGUF_F64)) {
        float f;
        return lc_gguf_get_f32(x->f, key, &f, x->err); /* names what is wrong */
    }
    *out = lc_gguf_kv_float(kv, 0);
    if (!(*out == *out))
        return lc_error_set(x->err, "%s: key '%s' is NaN", x->f->path, key);
    return 0;
}

static bool has_tensor(const lc_gguf_file *f, const char *name)
{
    return lc_gguf_find_tensor(f, name) != NULL;
}

static int parse_rope(const cfg_ctx *x, lc_model_config *cfg)
{
    char key[128];
    double theta;
    if (get_float(x, "rope.freq_base", false, 10000.0, &theta))
        return -1;
    if (!(theta > 0))
        return lc_error_set(x->err, "%s: key '%s' is %g, expected > 0", x->f->path,
                            akey(x, key, sizeof key, "rope.freq_base"), theta);
    cfg->rope_theta = theta;
    cfg->rope_type = LC_ROPE_DEFAULT;
    cfg->rope_factor = 1;
    int dims;
    if (get_int(x, "rope.dimension_count", false, cfg->head_dim, 1, LC_CFG_MAX_HEAD_DIM, &dims))
        return -1;
    if (dims != cfg->head_dim)
        return lc_error_set(x->err, "%s: key '%s' is %d but head_dim is %d (partial rotary "
                            "embeddings are not supported)", x->f->path,
                            akey(x, key, sizeof key, "rope.dimension_count"), dims, cfg->head_dim);
    const lc_gguf_kv *kv = lc_gguf_find_kv(x->f, akey(x, key, sizeof key, "rope.scaling.type"));
    double factor = 1;
    if (kv) {
        lc_gguf_str s;
        if (lc_gguf_get_str(x->f, key, &s, x->err))
            return -1;
        if (s.len == 4 && memcmp(s.ptr, "none", 4) == 0) {
        } else if (s.len == 6 && memcmp(s.ptr, "linear", 6) == 0) {
            if (get_float(x, "rope.scaling.factor", true, 1, &factor))
                return -1;
            cfg->rope_type = LC_ROPE_LINEAR;
        } else {
            return lc_error_set(x->err, "%s: key '%s' is '%.*s': only none and linear RoPE "
                                "scaling are supported", x->f->path, key,
                                (int)(s.len > 32 ? 32 : s.len), s.ptr);
        }
    } else if (lc_gguf_find_kv(x->f, akey(x, key, sizeof key, "rope.scale_linear"))) {
        if (get_float(x, "rope.scale_linear", true, 1, &factor))
            return -1;
        cfg->rope_type = factor != 1 ? LC_ROPE_LINEAR : LC_ROPE_DEFAULT;
    }
    if (cfg->rope_type == LC_ROPE_LINEAR && !(factor > 0))
        return lc_error_set(x->err, "%s: RoPE scaling factor %g, expected > 0", x->f->path, factor);
    cfg->rope_factor = factor;
    /* llama3 scaling: llama.cpp's converter writes the per-frequency factors */
    const lc_gguf_tensor *rf = lc_gguf_find_tensor(x->f, "rope_freqs.weight");
    if (rf) {
        if (cfg->rope_type != LC_ROPE_DEFAULT)
            return lc_error_set(x->err, "%s: both rope_freqs.weight and a RoPE scaling key",
                                x->f->path);
        if (rf->numel != (uint64_t)cfg->head_dim / 2 || rf->n_dims != 1)
            return lc_error_set(x->err, "%s: tensor 'rope_freqs.weight' has %llu elements, "
                                "expected head_dim / 2 = %d", x->f->path,
                                (unsigned long long)rf->numel, cfg->head_dim / 2);
        if (lc_gguf_dequant_row(x->f, rf, 0, 0, cfg->head_dim / 2, cfg->rope_freq_factors, x->err))
            return -1;
        for (int i = 0; i < cfg->head_dim / 2; i++)
            if (!(cfg->rope_freq_factors[i] > 0))
                return lc_error_set(x->err, "%s: tensor 'rope_freqs.weight' holds %g at %d, "
                                    "expected > 0", x->f->path, cfg->rope_freq_factors[i], i);
        cfg->rope_type = LC_ROPE_FACTORS;
    }
    return 0;
}

int lc_gguf_model_config(lc_model_config *cfg, const lc_gguf_file *f, lc_error *err)
{
    memset(cfg, 0, sizeof *cfg);
    lc_gguf_str a;
    if (lc_gguf_get_str(f, "general.architecture", &a, err))
        return -1;
    static const struct { const char *name; lc_arch arch; } archs[] = {
        {"llama", LC_ARCH_LLAMA}, {"qwen2", LC_ARCH_QWEN2}, {"qwen3", LC_ARCH_QWEN3}};
    int found = -1;
    for (int i = 0; i < 3; i++)
        if (a.len == strlen(archs[i].name) && memcmp(a.ptr, archs[i].name, a.len) == 0)
            found = i;
    if (found < 0)
        return lc_error_set(err, "%s: key 'general.architecture' is '%.*s': unsupported "
                            "architecture (expected llama — Mistral files say llama too —, "
                            "qwen2 or qwen3)", f->path, (int)(a.len > 64 ? 64 : a.len), a.ptr);
    cfg->arch = archs[found].arch;
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s", archs[found].name);
    cfg_ctx x = {f, archs[found].name, err};
    char key[128];
    if (get_int(&x, "embedding_length", true, 0, 1, LC_CFG_MAX_HIDDEN, &cfg->hidden_size) ||
        get_int(&x, "block_count", true, 0, 1, LC_CFG_MAX_LAYERS, &cfg->n_layers) ||
        get_int(&x, "feed_forward_length", true, 0, 1, LC_CFG_MAX_INTERMEDIATE,
                &cfg->intermediate_size) ||
        get_int(&x, "attention.head_count", true, 0, 1, LC_CFG_MAX_HEADS, &cfg->n_heads) ||
        get_int(&x, "attention.head_count_kv", false, cfg->n_heads, 1, LC_CFG_MAX_HEADS,
                &cfg->n_kv_heads) ||
        get_int(&x, "context_length", true, 0, 1, LC_CFG_MAX_POSITIONS,
                &cfg->max_position_embeddings))
        return -1;
    if (cfg->n_heads % cfg->n_kv_heads != 0)
        return lc_error_set(err, "%s: key '%s' (%d) does not divide the head count %d", f->path,
                            akey(&x, key, sizeof key, "attention.head_count_kv"),
                            cfg->n_kv_heads, cfg->n_heads);
    int def_hd = cfg->hidden_size % cfg->n_heads == 0 ? cfg->hidden_size / cfg->n_heads : 0;
    if (get_int(&x, "attention.key_length", def_hd == 0, def_hd, 2, LC_CFG_MAX_HEAD_DIM,
                &cfg->head_dim))
        return -1;
    int vlen;
    if (get_int(&x, "attention.value_length", false, cfg->head_dim, 1, LC_CFG_MAX_HEAD_DIM, &vlen))
        return -1;
    if (vlen != cfg->head_dim || cfg->head_dim % 2)
        return lc_error_set(err, "%s: key '%s' is %d: the value head size must equal an even "
                            "key head size (%d)", f->path,
                            akey(&x, key, sizeof key, "attention.value_length"), vlen, cfg->head_dim);
    double eps;
    if (get_float(&x, "attention.layer_norm_rms_epsilon", true, 0, &eps))
        return -1;
    if (!(eps > 0))
        return lc_error_set(err, "%s: key '%s' is %g, expected > 0", f->path,
                            akey(&x, key, sizeof key, "attention.layer_norm_rms_epsilon"), eps);
    cfg->rms_norm_eps = eps;
    /* vocabulary: <arch>.vocab_size, else the token list, else token_embd's rows */
    char tn[128];
    const lc_gguf_tensor *emb = lc_gguf_find_tensor(
        f, lc_gguf_blk_name(tn, sizeof tn, -1, "model.embed_tokens", "weight"));
    if (!emb)
        return lc_error_set(err, "%s: missing tensor '%s'", f->path, tn);
    int64_t vocab = emb->n_dims == 2 ? emb->ne[1] : 0;
    if (lc_gguf_find_kv(f, akey(&x, key, sizeof key, "vocab_size"))) {
        int v;
        if (get_int(&x, "vocab_size", true, 0, 1, LC_CFG_MAX_VOCAB, &v))
            return -1;
        vocab = v;
    } else if (lc_gguf_find_kv(f, "tokenizer.ggml.tokens")) {
        const lc_gguf_kv *kv;
        if (lc_gguf_get_arr(f, "tokenizer.ggml.tokens", LC_GGUF_STRING, &kv, err))
            return -1;
        vocab = (int64_t)kv->n;
    }
    if (vocab < 1 || vocab > LC_CFG_MAX_VOCAB)
        return lc_error_set(err, "%s: vocabulary of %lld tokens, expected 1..%d", f->path,
                            (long long)vocab, LC_CFG_MAX_VOCAB);
    cfg->vocab_size = (int)vocab;
    cfg->tie_word_embeddings =
        !has_tensor(f, lc_gguf_blk_name(tn, sizeof tn, -1, "lm_head", "weight"));
    cfg->qkv_bias = has_tensor(f, lc_gguf_blk_name(tn, sizeof tn, 0, "self_attn.q_proj", "bias"));
    cfg->o_bias = has_tensor(f, lc_gguf_blk_name(tn, sizeof tn, 0, "self_attn.o_proj", "bias"));
    cfg->mlp_bias = has_tensor(f, lc_gguf_blk_name(tn, sizeof tn, 0, "mlp.gate_proj", "bias"));
    cfg->qk_norm = cfg->arch == LC_ARCH_QWEN3;
    cfg->sliding_window = 0;
    cfg->dtype = LC_DTYPE_F32;
    return parse_rope(&x, cfg);
}

/* ---- weights --------------------------------------------------------------- */

/* Tensor `name` with ggml shape [in, out] (out = 1: a vector of `in`). */
static const lc_gguf_tensor *get(const lc_gguf_file *f, const char *name, int64_t in,
                                 int64_t out, lc_error *err)
{
    const lc_gguf_tensor *t = lc_gguf_find_tensor(f, name);
    if (!t) {
        lc_error_set(err, "%s: missing tensor '%s'", f->path, name);
        return NULL;
    }
    if (t->ne[0] != in || t->ne[1] != out || t->ne[2] != 1 || t->ne[3] != 1) {
        lc_error_set(err, "%s: tensor '%s' has shape [%lld, %lld, %lld, %lld] (ggml order), "
                     "expected [%lld, %lld]", f->path, name, (long long)t->ne[0],
                     (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
                     (long long)in, (long long)out);
        return NULL;
    }
    const lc_ggml_type_info *ti = lc_ggml_type_get(t->type);
    if (!ti || !ti->can_dequant) {
        lc_error_set(err, "%s: tensor '%s' has type %s, which lorac cannot read yet "
                     "(supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K)",
                     f->path, name, ti ? ti->name : "unknown");
        return NULL;
    }
    return t;
}

/* A matrix [out, in] as an lc_weight; rope_heads > 0: llama.cpp-permuted q/k rows. */
static int get_matrix(lc_model *m, const char *name, int64_t out, int64_t in, int rope_heads,
                      lc_weight *w, lc_error *err)
{
    struct lc_gguf_base *g = m->gguf;
    const lc_gguf_tensor *t = get(&g->file, name, in, out, err);
    if (!t)
        return -1;
    lc_dtype plain = t->type == LC_GGML_F32 ? LC_DTYPE_F32
                   : t->type == LC_GGML_F16 ? LC_DTYPE_F16
                   : t->type == LC_GGML_BF16 ? LC_DTYPE_BF16 : LC_DTYPE_COUNT;
    if (plain != LC_DTYPE_COUNT && rope_heads == 0 &&
        (uintptr_t)t->data % lc_dtype_size(plain) == 0) {
        /* read in place like a safetensors tensor (BLAS takes F32 as it is) */
        *w = (lc_weight){.data = t->data, .dtype = plain, .rows = out, .cols = in};
        return 0;
    }
    LC_ASSERT(g->used < g->n_w);
    lc_ggml_weight *gw = &g->w[g->used++];
    *gw = (lc_ggml_weight){t->type, t->data, t->row_bytes, rope_heads};
    *w = (lc_weight){.data = NULL, .dtype = LC_DTYPE_F32, .rows = out, .cols = in, .ggml = gw};
    return 0;
}

/* A vector of n values converted into *slot (advanced); rope_heads as get_matrix
 * (a q/k bias is permuted like its weight's rows). */
static int get_vector(lc_model *m, const char *name, int64_t n, int rope_heads, lc_real **slot,
                      lc_real **dst, lc_error *err)
{
    const lc_gguf_tensor *t = get(&m->gguf->file, name, n, 1, err);
    if (!t)
        return -1;
    lc_ggml_weight gw = {t->type, t->data, t->row_bytes, 0};
    lc_weight w = {.rows = 1, .cols = n, .ggml = &gw};
    lc_weight_rows_to_real(&w, 0, 1, *slot);
    if (rope_heads) {
        lc_real *tmp = malloc((size_t)n * sizeof *tmp);
        if (!tmp)
            return lc_error_set(err, "%s: out of memory", name);
        memcpy(tmp, *slot, (size_t)n * sizeof *tmp);
        gw.rope_heads = rope_heads;
        for (int64_t r = 0; r < n; r++)
            (*slot)[r] = tmp[lc_ggml_weight_src_row(&gw, n, r)];
        free(tmp);
    }
    *dst = *slot;
    *slot += n;
    return 0;
}

int lc_gguf_model_load(lc_model *m, const char *path, const lc_model_load_opts *o,
                       lc_error *err)
{
    memset(m, 0, sizeof *m);
    if (o && o->nf4)
        return lc_error_set(err, "%s: adapter: qlora quantizes a safetensors base to NF4; a "
                            "GGUF base is already quantized: use adapter: lora (its weights "
                            "stay in their GGUF types)", path);
    struct lc_gguf_base *g = calloc(1, sizeof *g);
    if (!g)
        return lc_error_set(err, "%s: out of memory", path);
    m->gguf = g;
    if (lc_gguf_open(&g->file, path, err) || lc_gguf_model_config(&m->cfg, &g->file, err) ||
        lc_model_alloc_structure(m, err))
        goto fail;
    const lc_model_config *c = &m->cfg;
    int64_t C = c->hidden_size, V = c->vocab_size, D = c->head_dim;
    g->n_w = 2 + (size_t)c->n_layers * LC_MOD_COUNT;
    if (!(g->w = calloc(g->n_w, sizeof *g->w))) {
        lc_error_set(err, "%s: out of memory", path);
        goto fail;
    }
    lc_real *slot = m->small;
    char name[128];
    if (get_matrix(m, lc_gguf_blk_name(name, sizeof name, -1, "model.embed_tokens", "weight"), V,
                   C, 0, &m->embed, err))
        goto fail;
    if (c->tie_word_embeddings)
        m->lm_head = m->embed;
    else if (get_matrix(m, lc_gguf_blk_name(name, sizeof name, -1, "lm_head", "weight"), V, C, 0,
                        &m->lm_head, err))
        goto fail;
    if (get_vector(m, lc_gguf_blk_name(name, sizeof name, -1, "model.norm", "weight"), C, 0, &slot,
                   &m->final_norm, err))
        goto fail;
    bool permuted = c->arch == LC_ARCH_LLAMA; /* LlamaModel.permute in convert_hf_to_gguf.py */
    const lc_family *f = lc_family_of(c->arch);
    for (int l = 0; l < c->n_layers; l++) {
        lc_layer_weights *L = &m->layers[l];
        for (int i = 0; i < f->n_modules; i++) {
            lc_module mod = f->modules[i];
            int64_t out, in;
            lc_module_shape(c, mod, &out, &in);
            int heads = !permuted ? 0 : mod == LC_MOD_Q ? c->n_heads
                      : mod == LC_MOD_K ? c->n_kv_heads : 0;
            char stem[64];
            snprintf(stem, sizeof stem, "%s.%s", lc_module_parent(mod), lc_module_name(mod));
            lc_gguf_blk_name(name, sizeof name, l, stem, "weight");
            if (get_matrix(m, name, out, in, heads, &L->proj[mod], err))
                goto fail;
            if (lc_module_has_bias(c, mod)) {
                lc_gguf_blk_name(name, sizeof name, l, stem, "bias");
                if (get_vector(m, name, out, heads, &slot, &L->bias[mod], err))
                    goto fail;
            }
        }
        for (int k = 0; k < LC_NORM_COUNT; k++) {
            if (!f->norm_names[k])
                continue;
            lc_gguf_blk_name(name, sizeof name, l, f->norm_names[k], "weight");
            if (get_vector(m, name, C, 0, &slot, &L->norm[k], err))
                goto fail;
        }
        if (c->qk_norm) {
            lc_gguf_blk_name(name, sizeof name, l, "self_attn.q_norm", "weight");
            if (get_vector(m, name, D, 0, &slot, &L->q_norm, err))
                goto fail;
            lc_gguf_blk_name(name, sizeof name, l, "self_attn.k_norm", "weight");
            if (get_vector(m, name, D, 0, &slot, &L->k_norm, err))
                goto fail;
        }
    }
    return 0;
fail:
    lc_model_free(m);
    return -1;
}

void lc_gguf_base_free(struct lc_gguf_base *g)
{
    if (!g)
        return;
    lc_gguf_close(&g->file);
    free(g->w);
    free(g);
}

const lc_gguf_file *lc_gguf_base_file(const struct lc_gguf_base *g)
{
    return &g->file;
}

int lc_gguf_model_config_load(lc_model_config *cfg, const char *path, lc_error *err)
{
    lc_gguf_file f;
    if (lc_gguf_open(&f, path, err))
        return -1;
    int rc = lc_gguf_model_config(cfg, &f, err);
    lc_gguf_close(&f);
    return rc;
}

const char *lc_model_tokenizer_dir(const char *base_model, char *buf, size_t n)
{
    if (!lc_gguf_model_is_gguf(base_model))
        return base_model;
    const char *slash = strrchr(base_model, '/');
    if (!slash)
        snprintf(buf, n, ".");
    else
        snprintf(buf, n, "%.*s", (int)(slash - base_model + (slash == base_model)), base_model);
    return buf;
}

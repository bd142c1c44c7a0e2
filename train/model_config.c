/* model_config.c — reads a Hugging Face config.json into lc_model_config.
 *
 * Parsed with cJSON. Every key is type-checked and range-checked here, once,
 * so the rest of lorac can trust the numbers (sizes positive and capped, heads
 * dividing evenly, head_dim even). Both RoPE spellings are accepted: legacy
 * top-level rope_theta + rope_scaling and transformers-5 rope_parameters (which
 * wins when both exist). JSON null counts as "absent" for optional keys, as
 * transformers treats it. Errors read "<label>: <key>: <what, and what was
 * expected>". */
#include "train/model_config.h"

#include "train/family.h"
#include "train/gguf_model.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CFG_MAX_FILE_BYTES (16L * 1024 * 1024)
#define CFG_MAX_HIDDEN LC_CFG_MAX_HIDDEN
#define CFG_MAX_INTERMEDIATE LC_CFG_MAX_INTERMEDIATE
#define CFG_MAX_LAYERS LC_CFG_MAX_LAYERS
#define CFG_MAX_HEADS LC_CFG_MAX_HEADS
#define CFG_MAX_HEAD_DIM LC_CFG_MAX_HEAD_DIM
#define CFG_MAX_VOCAB LC_CFG_MAX_VOCAB
#define CFG_MAX_POSITIONS LC_CFG_MAX_POSITIONS

typedef struct parse_ctx {
    const char *label;
    lc_error *err;
} parse_ctx;

/* "<label>: <prefix><key>: <message>". prefix is "" or e.g. "rope_scaling.". */
__attribute__((format(printf, 4, 5)))
static int fail(const parse_ctx *c, const char *prefix, const char *key, const char *fmt, ...)
{
    char msg[LC_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* msg may quote a string from the file (model_type, dtype, ...) whose JSON
     * escapes hold newlines or terminal escapes (fuzz_model_config):
     * lc_error_set makes the message one printable line */
    return lc_error_set(c->err, "%s: %s%s: %s", c->label, prefix, key, msg);
}

static const char *json_type_name(const cJSON *v)
{
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "an invalid value";
}

/* *out = the value of key in obj, or NULL when missing or null. A key given
 * twice is an error: cJSON would take the first, Python's json the last. */
static int item(const parse_ctx *c, const cJSON *obj, const char *prefix, const char *key,
                const cJSON **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (!v)
        return 0;
    for (const cJSON *w = v->next; w; w = w->next)
        if (w->string && !strcmp(w->string, key))
            return fail(c, prefix, key, "given more than once (expected one value)");
    if (!cJSON_IsNull(v))
        *out = v;
    return 0;
}

/* An integer in [lo, hi]; *present (may be NULL) says whether it was given.
 * When absent and not required, *out is left untouched (the caller's default). */
static int get_int(const parse_ctx *c, const cJSON *obj, const char *prefix, const char *key,
                   bool required, long lo, long hi, int *out, bool *present)
{
    const cJSON *v;
    if (item(c, obj, prefix, key, &v))
        return -1;
    if (present)
        *present = v != NULL;
    if (!v) {
        if (required)
            return fail(c, prefix, key, "missing (expected an integer in [%ld, %ld])", lo, hi);
        return 0;
    }
    if (!cJSON_IsNumber(v))
        return fail(c, prefix, key, "expected an integer, got %s", json_type_name(v));
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d))
        return fail(c, prefix, key, "expected an integer, got %g", d);
    if (d < (double)lo || d > (double)hi)
        return fail(c, prefix, key, "%.15g is out of range (expected an integer in [%ld, %ld])",
                    d, lo, hi);
    *out = (int)d;
    return 0;
}

/* A finite number; left untouched when absent and not required. */
static int get_double(const parse_ctx *c, const cJSON *obj, const char *prefix, const char *key,
                      bool required, double *out, bool *present)
{
    const cJSON *v;
    if (item(c, obj, prefix, key, &v))
        return -1;
    if (present)
        *present = v != NULL;
    if (!v) {
        if (required)
            return fail(c, prefix, key, "missing (expected a number)");
        return 0;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return fail(c, prefix, key, "expected a finite number, got %s", json_type_name(v));
    *out = v->valuedouble;
    return 0;
}

/* A boolean; left untouched when absent. */
static int get_bool(const parse_ctx *c, const cJSON *obj, const char *prefix, const char *key,
                    bool *out)
{
    const cJSON *v;
    if (item(c, obj, prefix, key, &v))
        return -1;
    if (!v)
        return 0;
    if (!cJSON_IsBool(v))
        return fail(c, prefix, key, "expected true or false, got %s", json_type_name(v));
    *out = cJSON_IsTrue(v);
    return 0;
}

/* A string or NULL when absent. */
static int get_string(const parse_ctx *c, const cJSON *obj, const char *prefix, const char *key,
                      const char **out)
{
    const cJSON *v;
    if (item(c, obj, prefix, key, &v))
        return -1;
    *out = NULL;
    if (!v)
        return 0;
    if (!cJSON_IsString(v) || !v->valuestring)
        return fail(c, prefix, key, "expected a string, got %s", json_type_name(v));
    *out = v->valuestring;
    return 0;
}

/* An object or NULL when absent. */
static int get_object(const parse_ctx *c, const cJSON *obj, const char *key, const cJSON **out)
{
    const cJSON *v;
    if (item(c, obj, "", key, &v))
        return -1;
    *out = NULL;
    if (!v)
        return 0;
    if (!cJSON_IsObject(v))
        return fail(c, "", key, "expected an object or null, got %s", json_type_name(v));
    *out = v;
    return 0;
}

static int parse_arch(const parse_ctx *c, const cJSON *root, lc_model_config *cfg)
{
    const char *mt;
    if (get_string(c, root, "", "model_type", &mt))
        return -1;
    if (!mt)
        return fail(c, "", "model_type", "missing (expected one of %s)", lc_family_model_types());
    const lc_family *f = lc_family_by_model_type(mt);
    if (!f)
        return fail(c, "", "model_type", "unsupported architecture '%.64s' (supported: %s)", mt,
                    lc_family_model_types());
    cfg->arch = f->arch;
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s", mt);
    return 0;
}

static int parse_shape(const parse_ctx *c, const cJSON *root, lc_model_config *cfg)
{
    if (get_int(c, root, "", "hidden_size", true, 1, CFG_MAX_HIDDEN, &cfg->hidden_size, NULL) ||
        get_int(c, root, "", "intermediate_size", true, 1, CFG_MAX_INTERMEDIATE,
                &cfg->intermediate_size, NULL) ||
        get_int(c, root, "", "num_hidden_layers", true, 1, CFG_MAX_LAYERS, &cfg->n_layers, NULL) ||
        get_int(c, root, "", "num_attention_heads", true, 1, CFG_MAX_HEADS, &cfg->n_heads, NULL) ||
        get_int(c, root, "", "vocab_size", true, 1, CFG_MAX_VOCAB, &cfg->vocab_size, NULL))
        return -1;

    cfg->n_kv_heads = cfg->n_heads;
    if (get_int(c, root, "", "num_key_value_heads", false, 1, CFG_MAX_HEADS, &cfg->n_kv_heads, NULL))
        return -1;
    if (cfg->n_heads % cfg->n_kv_heads != 0)
        return fail(c, "", "num_key_value_heads",
                    "%d does not divide num_attention_heads (%d); expected a divisor of it",
                    cfg->n_kv_heads, cfg->n_heads);

    bool has_head_dim;
    if (get_int(c, root, "", "head_dim", false, 1, CFG_MAX_HEAD_DIM, &cfg->head_dim, &has_head_dim))
        return -1;
    if (!has_head_dim) {
        if (cfg->hidden_size % cfg->n_heads != 0)
            return fail(c, "", "num_attention_heads",
                        "%d does not divide hidden_size (%d) and no head_dim is given",
                        cfg->n_heads, cfg->hidden_size);
        cfg->head_dim = cfg->hidden_size / cfg->n_heads;
        if (cfg->head_dim > CFG_MAX_HEAD_DIM)
            return fail(c, "", "head_dim", "hidden_size / num_attention_heads = %d is above %d",
                        cfg->head_dim, CFG_MAX_HEAD_DIM);
    }
    if (cfg->head_dim % 2 != 0)
        return fail(c, "", "head_dim", "%d is odd (RoPE needs an even head_dim)", cfg->head_dim);

    cfg->max_position_embeddings = 2048;
    if (get_int(c, root, "", "max_position_embeddings", false, 1, CFG_MAX_POSITIONS,
                &cfg->max_position_embeddings, NULL))
        return -1;

    cfg->rms_norm_eps = 1e-6;
    if (get_double(c, root, "", "rms_norm_eps", false, &cfg->rms_norm_eps, NULL))
        return -1;
    if (!(cfg->rms_norm_eps > 0.0 && cfg->rms_norm_eps < 1.0))
        return fail(c, "", "rms_norm_eps", "%g is out of range (expected 0 < eps < 1)",
                    cfg->rms_norm_eps);

    /* the config classes' default: Gemma ties its head, the others do not */
    cfg->tie_word_embeddings = cfg->arch == LC_ARCH_GEMMA2 || cfg->arch == LC_ARCH_GEMMA3;
    if (get_bool(c, root, "", "tie_word_embeddings", &cfg->tie_word_embeddings))
        return -1;

    /* Gemma's MLP reads hidden_activation; the others hidden_act. */
    bool gelu = lc_family_of(cfg->arch)->act == LC_ACT_GELU_TANH;
    const char *act_key = gelu ? "hidden_activation" : "hidden_act";
    const char *want = gelu ? "gelu_pytorch_tanh" : "silu";
    const char *act;
    if (get_string(c, root, "", act_key, &act))
        return -1;
    if (act && strcmp(act, want) != 0)
        return fail(c, "", act_key, "unsupported %s '%.64s' (expected \"%s\")", act_key, act, want);
    return 0;
}

/* A soft-capping value: the class default when the key is absent, none
 * (0) when null, else a positive number. */
static int get_softcap(const parse_ctx *c, const cJSON *root, const char *key, double dflt,
                       double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    *out = v ? 0.0 : dflt;
    bool present;
    if (get_double(c, root, "", key, false, out, &present))
        return -1;
    if (present && !(*out > 0))
        return fail(c, "", key, "%g is not positive (expected a positive cap or null)", *out);
    return 0;
}

/* Gemma: which layers attend within sliding_window. layer_types when given
 * (transformers 5 writes it), else every pattern-th layer is global:
 * Gemma 2 alternates (sliding first), Gemma 3 uses sliding_window_pattern
 * (default 6; transformers 5 spells it _sliding_window_pattern). */
static int parse_layer_types(const parse_ctx *c, const cJSON *root, lc_model_config *cfg)
{
    const cJSON *lt;
    if (item(c, root, "", "layer_types", &lt))
        return -1;
    if (lt) {
        if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != cfg->n_layers)
            return fail(c, "", "layer_types", "expected a list of %d layer types", cfg->n_layers);
        int i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, lt)
        {
            const char *s = cJSON_IsString(e) ? e->valuestring : NULL;
            if (!s || (strcmp(s, "sliding_attention") && strcmp(s, "full_attention")))
                return fail(c, "", "layer_types", "entry %d is not \"sliding_attention\" or "
                            "\"full_attention\"", i);
            cfg->layer_sliding[i++] = !strcmp(s, "sliding_attention");
        }
        return 0;
    }
    int pattern = 2;
    if (cfg->arch == LC_ARCH_GEMMA3) {
        pattern = 6;
        bool given = false;
        if (get_int(c, root, "", "sliding_window_pattern", false, 1, CFG_MAX_LAYERS, &pattern,
                    &given) ||
            (!given && get_int(c, root, "", "_sliding_window_pattern", false, 1, CFG_MAX_LAYERS,
                               &pattern, NULL)))
            return -1;
    }
    for (int l = 0; l < cfg->n_layers; l++)
        cfg->layer_sliding[l] = (l + 1) % pattern != 0;
    return 0;
}

static int parse_gemma(const parse_ctx *c, const cJSON *root, lc_model_config *cfg)
{
    bool gemma2 = cfg->arch == LC_ARCH_GEMMA2, bidir = false, attention_bias = false;
    if (get_bool(c, root, "", "attention_bias", &attention_bias) ||
        get_bool(c, root, "", "use_bidirectional_attention", &bidir))
        return -1;
    if (bidir)
        return fail(c, "", "use_bidirectional_attention",
                    "true is not supported (expected causal attention)");
    cfg->qkv_bias = cfg->o_bias = attention_bias;
    cfg->qk_norm = cfg->arch == LC_ARCH_GEMMA3;
    cfg->query_pre_attn_scalar = 256; /* the config classes' default */
    if (get_double(c, root, "", "query_pre_attn_scalar", false, &cfg->query_pre_attn_scalar, NULL))
        return -1;
    if (!(cfg->query_pre_attn_scalar > 0))
        return fail(c, "", "query_pre_attn_scalar", "%g is not positive",
                    cfg->query_pre_attn_scalar);
    if (get_softcap(c, root, "attn_logit_softcapping", gemma2 ? 50.0 : 0.0, &cfg->attn_softcap) ||
        get_softcap(c, root, "final_logit_softcapping", gemma2 ? 30.0 : 0.0,
                    &cfg->final_softcap))
        return -1;
    /* transformers' Gemma 3 attention never passes the cap to its kernel:
     * a value in config.json is read and ignored there, so here too */
    if (!gemma2)
        cfg->attn_softcap = 0;
    cfg->sliding_window = 4096;
    if (get_int(c, root, "", "sliding_window", false, 1, CFG_MAX_POSITIONS, &cfg->sliding_window,
                NULL))
        return -1;
    return parse_layer_types(c, root, cfg);
}

/* Mixtral and Qwen3-MoE (transformers 5.17): E experts of FF each, top-k
 * routing; what lorac does not implement is refused rather than ignored. */
static int parse_moe(const parse_ctx *c, const cJSON *root, lc_model_config *cfg)
{
    bool mixtral = cfg->arch == LC_ARCH_MIXTRAL, given = false, attention_bias = false;
    /* transformers 5 saves num_local_experts for both; Qwen3MoeConfig's own
     * key is num_experts */
    if (get_int(c, root, "", "num_local_experts", false, 1, 4096, &cfg->n_experts, &given) ||
        (!given && get_int(c, root, "", mixtral ? "num_local_experts" : "num_experts", true, 1,
                           4096, &cfg->n_experts, NULL)) ||
        get_int(c, root, "", "num_experts_per_tok", true, 1, cfg->n_experts,
                &cfg->n_experts_per_tok, NULL) ||
        get_bool(c, root, "", "attention_bias", &attention_bias))
        return -1;
    cfg->qkv_bias = cfg->o_bias = attention_bias;
    cfg->moe_intermediate_size = cfg->intermediate_size;
    cfg->moe_renorm = true;
    bool aux = false;
    double jitter = 0;
    if (get_bool(c, root, "", "output_router_logits", &aux) ||
        get_double(c, root, "", "router_jitter_noise", false, &jitter, NULL))
        return -1;
    if (aux)
        return fail(c, "", "output_router_logits", "true adds the router's load-balancing loss, "
                    "which lorac does not implement (expected false, transformers' default)");
    if (jitter != 0)
        return fail(c, "", "router_jitter_noise", "%g is not supported (expected 0)", jitter);
    if (mixtral) {
        if (get_int(c, root, "", "sliding_window", false, 0, CFG_MAX_POSITIONS,
                    &cfg->sliding_window, NULL))
            return -1;
        return 0;
    }
    cfg->qk_norm = true;
    cfg->moe_renorm = false; /* Qwen3MoeConfig's default */
    int step = 1;
    const cJSON *dense;
    if (get_int(c, root, "", "moe_intermediate_size", true, 1, CFG_MAX_INTERMEDIATE,
                &cfg->moe_intermediate_size, NULL) ||
        get_bool(c, root, "", "norm_topk_prob", &cfg->moe_renorm) ||
        get_int(c, root, "", "decoder_sparse_step", false, 1, CFG_MAX_LAYERS, &step, NULL) ||
        item(c, root, "", "mlp_only_layers", &dense))
        return -1;
    if (step != 1)
        return fail(c, "", "decoder_sparse_step", "%d is not supported (expected 1: every layer "
                    "sparse)", step);
    if (dense && (!cJSON_IsArray(dense) || cJSON_GetArraySize(dense) != 0))
        return fail(c, "", "mlp_only_layers", "dense layers among the sparse ones are not "
                    "supported (expected [])");
    bool use_sw = false;
    if (get_bool(c, root, "", "use_sliding_window", &use_sw))
        return -1;
    if (use_sw && get_int(c, root, "", "sliding_window", true, 1, CFG_MAX_POSITIONS,
                          &cfg->sliding_window, NULL))
        return -1;
    return 0;
}

static int parse_arch_details(const parse_ctx *c, const cJSON *root, lc_model_config *cfg)
{
    bool attention_bias = false;
    switch (cfg->arch) {
    case LC_ARCH_LLAMA:
    case LC_ARCH_MISTRAL:
        if (get_bool(c, root, "", "attention_bias", &attention_bias))
            return -1;
        cfg->qkv_bias = cfg->o_bias = attention_bias;
        if (cfg->arch == LC_ARCH_LLAMA && get_bool(c, root, "", "mlp_bias", &cfg->mlp_bias))
            return -1;
        if (cfg->arch == LC_ARCH_MISTRAL &&
            get_int(c, root, "", "sliding_window", false, 0, CFG_MAX_POSITIONS,
                    &cfg->sliding_window, NULL))
            return -1;
        break;
    case LC_ARCH_QWEN2:
    case LC_ARCH_QWEN3: {
        if (cfg->arch == LC_ARCH_QWEN2) {
            cfg->qkv_bias = true;
        } else {
            /* Qwen3Attention gives q/k/v and o the same bias=attention_bias. */
            if (get_bool(c, root, "", "attention_bias", &attention_bias))
                return -1;
            cfg->qkv_bias = cfg->o_bias = attention_bias;
            cfg->qk_norm = true;
        }
        bool use_sw = false;
        if (get_bool(c, root, "", "use_sliding_window", &use_sw))
            return -1;
        if (use_sw && get_int(c, root, "", "sliding_window", true, 1, CFG_MAX_POSITIONS,
                              &cfg->sliding_window, NULL))
            return -1;
        break;
    }
    case LC_ARCH_GEMMA2:
    case LC_ARCH_GEMMA3:
        return parse_gemma(c, root, cfg);
    case LC_ARCH_MIXTRAL:
    case LC_ARCH_QWEN3_MOE:
        if (parse_moe(c, root, cfg))
            return -1;
        break;
    case LC_ARCH_PHI3:
        /* Phi3Attention and Phi3MLP have no biases; the window (if any) is
         * every layer's, as Mistral's. */
        if (get_int(c, root, "", "sliding_window", false, 0, CFG_MAX_POSITIONS,
                    &cfg->sliding_window, NULL))
            return -1;
        break;
    }
    for (int l = 0; l < cfg->n_layers; l++)
        cfg->layer_sliding[l] = cfg->sliding_window > 0;
    return 0;
}

static int parse_dtype(const parse_ctx *c, const cJSON *root, lc_model_config *cfg)
{
    const char *key = "dtype";
    const char *s;
    if (get_string(c, root, "", key, &s))
        return -1;
    if (!s) {
        key = "torch_dtype";
        if (get_string(c, root, "", key, &s))
            return -1;
    }
    cfg->dtype = LC_DTYPE_F32;
    if (!s || !strcmp(s, "float32"))
        return 0;
    if (!strcmp(s, "bfloat16"))
        cfg->dtype = LC_DTYPE_BF16;
    else if (!strcmp(s, "float16"))
        cfg->dtype = LC_DTYPE_F16;
    else
        return fail(c, "", key, "unsupported dtype '%.64s' (expected float32, bfloat16 or float16)", s);
    return 0;
}

static int check_partial_rotary(const parse_ctx *c, const cJSON *obj, const char *prefix)
{
    double prf = 1.0;
    if (get_double(c, obj, prefix, "partial_rotary_factor", false, &prf, NULL))
        return -1;
    if (prf != 1.0)
        return fail(c, prefix, "partial_rotary_factor", "%g is not supported (expected 1.0)", prf);
    return 0;
}

/* A list of head_dim/2 positive factors (longrope's short/long_factor). */
static int get_factors(const parse_ctx *c, const cJSON *obj, const char *prefix, const char *key,
                       int n, float *out)
{
    const cJSON *v;
    if (item(c, obj, prefix, key, &v))
        return -1;
    if (!v || !cJSON_IsArray(v) || cJSON_GetArraySize(v) != n)
        return fail(c, prefix, key, "expected a list of %d numbers (head_dim / 2)", n);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, v)
    {
        if (!cJSON_IsNumber(e) || !(e->valuedouble > 0) || !isfinite(e->valuedouble))
            return fail(c, prefix, key, "entry %d is not a positive number", i);
        out[i++] = (float)e->valuedouble;
    }
    return 0;
}

/* Phi-3's longrope (transformers' _compute_longrope_parameters): factor
 * defaults to max_position_embeddings / original_max_position_embeddings and
 * attention_factor to √(1 + ln factor / ln original) (1 when factor ≤ 1). */
static int parse_longrope(const parse_ctx *c, const cJSON *root, const cJSON *obj,
                          const char *prefix, lc_model_config *cfg)
{
    int half = cfg->head_dim / 2;
    bool in_obj = false;
    if (get_factors(c, obj, prefix, "short_factor", half, cfg->rope_freq_factors) ||
        get_factors(c, obj, prefix, "long_factor", half, cfg->rope_long_factor) ||
        get_int(c, obj, prefix, "original_max_position_embeddings", false, 1, CFG_MAX_POSITIONS,
                &cfg->rope_original_max_position, &in_obj) ||
        (!in_obj && get_int(c, root, "", "original_max_position_embeddings", true, 1,
                            CFG_MAX_POSITIONS, &cfg->rope_original_max_position, NULL)))
        return -1;
    double factor = (double)cfg->max_position_embeddings / cfg->rope_original_max_position;
    bool has_af = false;
    cfg->rope_attention_factor = 1.0;
    if (get_double(c, obj, prefix, "factor", false, &factor, NULL) ||
        get_double(c, obj, prefix, "attention_factor", false, &cfg->rope_attention_factor, &has_af))
        return -1;
    if (!(factor > 0))
        return fail(c, prefix, "factor", "%g is not positive", factor);
    if (!(cfg->rope_attention_factor > 0))
        return fail(c, prefix, "attention_factor", "%g is not positive", cfg->rope_attention_factor);
    if (!has_af && factor > 1.0)
        cfg->rope_attention_factor =
            sqrt(1.0 + log(factor) / log((double)cfg->rope_original_max_position));
    cfg->rope_factor = factor;
    return 0;
}

/* Gemma 3's local RoPE base: transformers 5 nests one rope_parameters per
 * layer type ({"sliding_attention": {...}, "full_attention": {...}}, *params
 * becomes the full one); older configs give rope_local_base_freq. Local
 * layers are never scaled. */
static int parse_local_rope(const parse_ctx *c, const cJSON *root, const cJSON **params,
                            const char **prefix, lc_model_config *cfg)
{
    cfg->rope_local_theta = 10000.0;
    const cJSON *full = NULL, *local = NULL;
    if (*params && (get_object(c, *params, "full_attention", &full) ||
                    get_object(c, *params, "sliding_attention", &local)))
        return -1;
    if (!full && !local)
        return get_double(c, root, "", "rope_local_base_freq", false, &cfg->rope_local_theta,
                          NULL);
    static const char lp[] = "rope_parameters.sliding_attention.";
    const char *type = NULL;
    if (!full || !local)
        return fail(c, "rope_parameters.", full ? "sliding_attention" : "full_attention",
                    "missing (expected one object per layer type)");
    if (get_double(c, local, lp, "rope_theta", true, &cfg->rope_local_theta, NULL) ||
        get_string(c, local, lp, "rope_type", &type))
        return -1;
    if (type && strcmp(type, "default") != 0)
        return fail(c, lp, "rope_type", "'%.64s' is not supported for sliding layers "
                    "(expected default)", type);
    if (!(cfg->rope_local_theta > 0))
        return fail(c, lp, "rope_theta", "%g is not positive", cfg->rope_local_theta);
    *params = full;
    *prefix = "rope_parameters.full_attention.";
    return 0;
}

static int parse_rope(const parse_ctx *c, const cJSON *root, lc_model_config *cfg)
{
    const cJSON *params, *scaling = NULL;
    if (get_object(c, root, "rope_parameters", &params))
        return -1;
    const char *prefix = params ? "rope_parameters." : "rope_scaling.";
    if (cfg->arch == LC_ARCH_GEMMA3 && parse_local_rope(c, root, &params, &prefix, cfg))
        return -1;
    if (!params && get_object(c, root, "rope_scaling", &scaling))
        return -1;
    const cJSON *obj = params ? params : scaling;

    /* theta: rope_parameters.rope_theta, else top-level rope_theta, else 10000. */
    cfg->rope_theta = 10000.0;
    bool theta_in_params = false;
    const char *theta_prefix = "";
    if (params && get_double(c, params, prefix, "rope_theta", false, &cfg->rope_theta,
                             &theta_in_params))
        return -1;
    if (theta_in_params)
        theta_prefix = prefix;
    else if (get_double(c, root, "", "rope_theta", false, &cfg->rope_theta, NULL))
        return -1;
    if (!(cfg->rope_theta > 0.0))
        return fail(c, theta_prefix, "rope_theta", "%g is not positive (expected theta > 0)",
                    cfg->rope_theta);

    if (check_partial_rotary(c, root, "") || (obj && check_partial_rotary(c, obj, prefix)))
        return -1;

    cfg->rope_type = LC_ROPE_DEFAULT;
    cfg->rope_factor = 1.0;
    cfg->rope_low_freq_factor = 0.0;
    cfg->rope_high_freq_factor = 0.0;
    cfg->rope_original_max_position = 0;
    cfg->rope_attention_factor = 1.0;
    if (!obj)
        return 0;

    const char *type_key = "rope_type";
    const char *type;
    if (get_string(c, obj, prefix, type_key, &type))
        return -1;
    if (!type) {
        type_key = "type";
        if (get_string(c, obj, prefix, type_key, &type))
            return -1;
    }
    if (!type) {
        if (scaling)
            return fail(c, prefix, "rope_type",
                        "missing (expected \"rope_type\" or \"type\": default, linear or llama3)");
        type = "default";
    }

    if (!strcmp(type, "default"))
        return 0;
    if (!strcmp(type, "linear")) {
        cfg->rope_type = LC_ROPE_LINEAR;
    } else if (!strcmp(type, "llama3")) {
        cfg->rope_type = LC_ROPE_LLAMA3;
    } else if (!strcmp(type, "longrope") && cfg->arch == LC_ARCH_PHI3) {
        cfg->rope_type = LC_ROPE_LONGROPE;
        return parse_longrope(c, root, obj, prefix, cfg);
    } else {
        return fail(c, prefix, type_key, "unsupported rope_type '%.64s' (supported: default, "
                    "linear, llama3%s)", type, cfg->arch == LC_ARCH_PHI3 ? ", longrope" : "");
    }

    if (get_double(c, obj, prefix, "factor", true, &cfg->rope_factor, NULL))
        return -1;
    if (!(cfg->rope_factor >= 1.0))
        return fail(c, prefix, "factor", "%g is below 1 (expected factor >= 1)", cfg->rope_factor);
    if (cfg->rope_type != LC_ROPE_LLAMA3)
        return 0;

    if (get_double(c, obj, prefix, "low_freq_factor", true, &cfg->rope_low_freq_factor, NULL) ||
        get_double(c, obj, prefix, "high_freq_factor", true, &cfg->rope_high_freq_factor, NULL) ||
        get_int(c, obj, prefix, "original_max_position_embeddings", true, 1, CFG_MAX_POSITIONS,
                &cfg->rope_original_max_position, NULL))
        return -1;
    if (!(cfg->rope_low_freq_factor > 0.0))
        return fail(c, prefix, "low_freq_factor", "%g is not positive (expected > 0)",
                    cfg->rope_low_freq_factor);
    if (!(cfg->rope_high_freq_factor > cfg->rope_low_freq_factor))
        return fail(c, prefix, "high_freq_factor",
                    "%g is not above low_freq_factor %g (expected low < high)",
                    cfg->rope_high_freq_factor, cfg->rope_low_freq_factor);
    return 0;
}

static int parse_quant(const parse_ctx *c, const cJSON *root, lc_model_config *cfg)
{
    const cJSON *q;
    if (get_object(c, root, "quantization_config", &q))
        return -1;
    cfg->prequantized_bnb4 = false;
    if (!q)
        return 0;
    const char *prefix = "quantization_config.";
    const char *method;
    if (get_string(c, q, prefix, "quant_method", &method))
        return -1;
    if (!method)
        return fail(c, prefix, "quant_method", "missing (expected \"bitsandbytes\")");
    if (strcmp(method, "bitsandbytes") != 0)
        return fail(c, prefix, "quant_method",
                    "unsupported quantization_config.quant_method '%.64s' (supported: bitsandbytes)",
                    method);
    bool in4 = false, in8 = false;
    if (get_bool(c, q, prefix, "load_in_4bit", &in4) || get_bool(c, q, prefix, "load_in_8bit", &in8))
        return -1;
    if (in8 && !in4)
        return fail(c, prefix, "load_in_8bit",
                    "8-bit bitsandbytes weights are not supported (expected load_in_4bit)");
    cfg->prequantized_bnb4 = in4;
    return 0;
}

int lc_model_config_parse(lc_model_config *cfg, const char *json, size_t len,
                          const char *label, lc_error *err)
{
    parse_ctx c = { label ? label : "config.json", err };
    memset(cfg, 0, sizeof *cfg);

    const char *end = NULL;
    cJSON *root = json ? cJSON_ParseWithLengthOpts(json, len, &end, false) : NULL;
    if (!root) {
        size_t off = (json && end && end >= json) ? (size_t)(end - json) : 0;
        return lc_error_set(err, "%s: (json): not valid JSON near byte %zu (expected a JSON object)",
                            c.label, off);
    }
    /* Only whitespace (or a NUL) may follow the top-level value. */
    size_t off = (size_t)(end - json);
    while (off < len && (json[off] == ' ' || json[off] == '\t' || json[off] == '\n' ||
                         json[off] == '\r'))
        off++;
    int rc = 0;
    if (off < len && json[off] != '\0')
        rc = lc_error_set(err, "%s: (json): unexpected text after the JSON value at byte %zu",
                          c.label, off);
    else if (!cJSON_IsObject(root))
        rc = lc_error_set(err, "%s: (json): top level is %s (expected a JSON object)", c.label,
                          json_type_name(root));
    else if (parse_arch(&c, root, cfg) || parse_shape(&c, root, cfg) ||
             parse_arch_details(&c, root, cfg) || parse_dtype(&c, root, cfg) ||
             parse_rope(&c, root, cfg) || parse_quant(&c, root, cfg))
        rc = -1;
    cJSON_Delete(root);
    return rc;
}

int lc_model_config_load(lc_model_config *cfg, const char *path, lc_error *err)
{
    if (lc_gguf_model_is_gguf(path))
        return lc_gguf_model_config_load(cfg, path, err);
    struct stat st;
    if (stat(path, &st) != 0)
        return lc_error_set(err, "%s: (file): cannot open: %s", path, strerror(errno));
    char *file = NULL;
    if (S_ISDIR(st.st_mode)) {
        size_t n = strlen(path) + sizeof "/config.json";
        file = malloc(n);
        if (!file)
            return lc_error_set(err, "%s: (file): out of memory", path);
        snprintf(file, n, "%s/config.json", path);
        path = file;
    }

    int rc = -1;
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        lc_error_set(err, "%s: (file): cannot open: %s", path, strerror(errno));
        goto out;
    }
    if (fstat(fileno(f), &st) != 0) {
        lc_error_set(err, "%s: (file): cannot stat: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        lc_error_set(err, "%s: (file): not a regular file", path);
        goto out;
    }
    if (st.st_size > CFG_MAX_FILE_BYTES) {
        lc_error_set(err, "%s: (file): %lld bytes is too large (expected at most %ld)", path,
                     (long long)st.st_size, CFG_MAX_FILE_BYTES);
        goto out;
    }
    size_t size = (size_t)st.st_size;
    buf = malloc(size + 1);
    if (!buf) {
        lc_error_set(err, "%s: (file): out of memory", path);
        goto out;
    }
    size_t got = fread(buf, 1, size, f);
    if (got != size || ferror(f)) {
        lc_error_set(err, "%s: (file): read failed after %zu of %zu bytes", path, got, size);
        goto out;
    }
    buf[size] = '\0';
    rc = lc_model_config_parse(cfg, buf, size, path, err);
out:
    if (f)
        fclose(f);
    free(buf);
    free(file);
    return rc;
}

bool lc_model_config_has_rope_table(const lc_model_config *cfg, lc_rope_table table)
{
    switch (table) {
    case LC_ROPE_TABLE_MAIN: return true;
    case LC_ROPE_TABLE_LOCAL: return cfg->rope_local_theta > 0;
    case LC_ROPE_TABLE_LONG: return cfg->rope_type == LC_ROPE_LONGROPE;
    case LC_ROPE_TABLE_COUNT: break;
    }
    return false;
}

double lc_model_config_attn_scale(const lc_model_config *cfg)
{
    double s = cfg->query_pre_attn_scalar > 0 ? cfg->query_pre_attn_scalar : cfg->head_dim;
    return 1.0 / sqrt(s);
}

void lc_model_config_inv_freq(const lc_model_config *cfg, double *inv_freq)
{
    lc_model_config_rope_inv_freq(cfg, LC_ROPE_TABLE_MAIN, inv_freq);
}

void lc_model_config_rope_inv_freq(const lc_model_config *cfg, lc_rope_table table,
                                   double *inv_freq)
{
    const int half = cfg->head_dim / 2;
    const double two_pi = 2.0 * 3.14159265358979323846;
    const bool local = table == LC_ROPE_TABLE_LOCAL;
    const double theta = local ? cfg->rope_local_theta : cfg->rope_theta;
    for (int i = 0; i < half; i++) {
        double inv = pow(theta, -2.0 * i / (double)cfg->head_dim);
        switch (local ? LC_ROPE_DEFAULT : cfg->rope_type) {
        case LC_ROPE_LONGROPE:
            inv /= table == LC_ROPE_TABLE_LONG ? cfg->rope_long_factor[i]
                                               : cfg->rope_freq_factors[i];
            break;
        case LC_ROPE_DEFAULT:
            break;
        case LC_ROPE_LINEAR:
            inv /= cfg->rope_factor;
            break;
        case LC_ROPE_FACTORS:
            inv /= cfg->rope_freq_factors[i];
            break;
        case LC_ROPE_LLAMA3: {
            double old_ctx = (double)cfg->rope_original_max_position;
            double low_f = cfg->rope_low_freq_factor, high_f = cfg->rope_high_freq_factor;
            double wavelen = two_pi / inv;
            double low_wl = old_ctx / low_f, high_wl = old_ctx / high_f;
            if (wavelen > low_wl) {
                inv /= cfg->rope_factor;
            } else if (wavelen >= high_wl) {
                double s = (old_ctx / wavelen - low_f) / (high_f - low_f);
                inv = (1.0 - s) * inv / cfg->rope_factor + s * inv;
            }
            break;
        }
        }
        inv_freq[i] = inv;
    }
}

int64_t lc_model_config_seq_len(const lc_model_config *cfg, int64_t asked)
{
    if (asked > 0)
        return asked;
    return cfg->max_position_embeddings < LC_DEFAULT_SEQ_LEN ? cfg->max_position_embeddings
                                                             : LC_DEFAULT_SEQ_LEN;
}

const char *lc_arch_name(lc_arch a) { return lc_family_of(a)->model_type; }

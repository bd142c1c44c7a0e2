/* lora.c — LoRA parameter store, PEFT init, and adapter directory I/O
 * (see lora.h). */
#include "train/lora.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "autograd/moe_block.h"
#include "data/safetensors.h"
#include "train/family.h"
#include "train/fsutil.h"
#include "autograd/hash.h"

static const char *const module_names[LC_MOD_COUNT] = {
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
    "qkv_proj", "gate_up_proj", "experts.gate_up_proj", "experts.down_proj"};

static bool is_attention(lc_module m) { return m <= LC_MOD_O || m == LC_MOD_QKV; }

bool lc_module_is_expert(lc_module m)
{
    return m == LC_MOD_EXPERTS_GATE_UP || m == LC_MOD_EXPERTS_DOWN;
}

const char *lc_module_name(lc_module m) { return module_names[m]; }

const char *lc_module_parent(lc_module m) { return is_attention(m) ? "self_attn" : "mlp"; }

int64_t lc_module_copies(const lc_model_config *c, lc_module m)
{
    return lc_module_is_expert(m) ? c->n_experts : 1;
}

bool lc_module_has_bias(const lc_model_config *c, lc_module m)
{
    if (lc_module_is_expert(m))
        return false;
    if (m == LC_MOD_O)
        return c->o_bias;
    return is_attention(m) ? c->qkv_bias : c->mlp_bias;
}

bool lc_model_has_module(const lc_model_config *c, lc_module m)
{
    return lc_family_has_module(lc_family_of(c->arch), m);
}

void lc_lora_target_all(lc_lora_config *cfg, const lc_model_config *mc)
{
    /* PEFT's all-linear names modules; experts are parameters, left as they are */
    for (int m = 0; m < LC_MOD_COUNT; m++)
        if (!lc_module_is_expert(m))
            cfg->targets[m] = lc_model_has_module(mc, m);
}

const char *lc_module_names(void)
{
    static char list[160];
    if (!list[0])
        for (int m = 0; m < LC_MOD_COUNT; m++)
            if (!lc_module_is_expert(m))
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", m ? ", " : "",
                         module_names[m]);
    return list;
}

int lc_module_from_name(const char *name)
{
    for (int i = 0; i < LC_MOD_COUNT; i++)
        if (strcmp(name, module_names[i]) == 0)
            return i;
    return -1;
}

void lc_module_shape(const lc_model_config *cfg, lc_module m, int64_t *out, int64_t *in)
{
    int64_t C = cfg->hidden_size, FF = cfg->intermediate_size;
    int64_t qd = (int64_t)cfg->n_heads * cfg->head_dim;
    int64_t kvd = (int64_t)cfg->n_kv_heads * cfg->head_dim;
    switch (m) {
    case LC_MOD_Q: *out = qd, *in = C; break;
    case LC_MOD_K:
    case LC_MOD_V: *out = kvd, *in = C; break;
    case LC_MOD_O: *out = C, *in = qd; break;
    case LC_MOD_GATE:
    case LC_MOD_UP: *out = FF, *in = C; break;
    case LC_MOD_QKV: *out = qd + 2 * kvd, *in = C; break;
    case LC_MOD_GATE_UP: *out = 2 * FF, *in = C; break;
    case LC_MOD_EXPERTS_GATE_UP: *out = 2 * (int64_t)cfg->moe_intermediate_size, *in = C; break;
    case LC_MOD_EXPERTS_DOWN: *out = C, *in = cfg->moe_intermediate_size; break;
    case LC_MOD_DOWN:
    case LC_MOD_COUNT: *out = C, *in = FF; break;
    }
}

void lc_lora_tensor_name(char *buf, size_t n, int layer, lc_module m, bool is_b)
{
    snprintf(buf, n, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight", layer,
             lc_module_parent(m), lc_module_name(m), is_b ? 'B' : 'A');
}

void lc_lora_param_name(const lc_lora_config *cfg, char *buf, size_t n, int layer, lc_module m,
                        int k)
{
    if (!lc_module_is_expert(m)) {
        lc_lora_part_name(buf, n, layer, m, k);
        return;
    }
    /* PEFT wraps the experts' parameters one ParamWrapper in another, in
     * registration order: gate_up_proj innermost (base_layer.) when down_proj
     * is targeted too */
    bool inner = m == LC_MOD_EXPERTS_GATE_UP && cfg->targets[LC_MOD_EXPERTS_DOWN];
    snprintf(buf, n, "base_model.model.model.layers.%d.mlp.experts.%slora_%c.weight", layer,
             inner ? "base_layer." : "", k == 1 ? 'B' : 'A');
}

void lc_lora_part_name(char *buf, size_t n, int layer, lc_module m, int k)
{
    LC_ASSERT(!lc_module_is_expert(m));
    if (k < 2)
        lc_lora_tensor_name(buf, n, layer, m, k == 1);
    else
        snprintf(buf, n, "base_model.model.model.layers.%d.%s.%s.lora_magnitude_vector", layer,
                 lc_module_parent(m), lc_module_name(m));
}

int lc_lora_parts(const lc_lora *lora) { return lora->cfg.use_dora ? 3 : 2; }

lc_tensor *lc_lora_part(const lc_lora_adapter *ad, int k)
{
    return k == 0 ? ad->A : k == 1 ? ad->B : ad->m;
}

/* The slot of (layer, expert module m, expert e) in lora->expert_views. */
static size_t expert_view(const lc_lora *lora, int layer, lc_module m, int e)
{
    return ((size_t)layer * 2 + (m == LC_MOD_EXPERTS_DOWN)) * (size_t)lora->n_experts + (size_t)e;
}

size_t lc_lora_expert_view_count(const lc_lora *lora)
{
    bool experts = lora->cfg.targets[LC_MOD_EXPERTS_GATE_UP] ||
                   lora->cfg.targets[LC_MOD_EXPERTS_DOWN];
    return experts ? (size_t)lora->n_layers * 2 * (size_t)lora->n_experts : 0;
}

int lc_lora_init(lc_lora *lora, const lc_model_config *mc, const lc_lora_config *cfg,
                 uint64_t seed, lc_error *err)
{
    memset(lora, 0, sizeof *lora);
    if (cfg->r <= 0 || cfg->r > 4096)
        return lc_error_set(err, "lora_r: %d is out of range (expected 1..4096)", cfg->r);
    if (!(cfg->alpha > 0))
        return lc_error_set(err, "lora_alpha: must be > 0");
    if (!(cfg->dropout >= 0 && cfg->dropout < 1))
        return lc_error_set(err, "lora_dropout: %g is out of range (expected 0 <= p < 1)",
                            cfg->dropout);
    lora->cfg = *cfg;
    if (cfg->all_linear) {
        lc_lora_target_all(&lora->cfg, mc);
        lora->cfg.all_linear = false;
    }
    cfg = &lora->cfg;
    bool any = false;
    for (int m = 0; m < LC_MOD_COUNT; m++) {
        if (cfg->targets[m] && !lc_model_has_module(mc, m)) {
            const lc_family *f = lc_family_of(mc->arch);
            char have[160];
            lc_family_module_list(f, have, sizeof have);
            return lc_error_set(err, "lora_target_modules: '%s' is not a module of %s models "
                                "(they have %s)", lc_module_name(m), f->model_type, have);
        }
        any |= cfg->targets[m];
    }
    if (!any)
        return lc_error_set(err, "lora_target_modules: no module targeted");
    bool experts = cfg->targets[LC_MOD_EXPERTS_GATE_UP] || cfg->targets[LC_MOD_EXPERTS_DOWN];
    /* PEFT's ParamWrapper refuses both for target_parameters */
    if (experts && cfg->dropout != 0)
        return lc_error_set(err, "lora_dropout: %g with lora_target_parameters: PEFT's expert "
                            "adapters take no dropout (set lora_dropout: 0)", cfg->dropout);
    if (experts && cfg->use_dora)
        return lc_error_set(err, "peft_use_dora: DoRA is not available for "
                            "lora_target_parameters (PEFT has none for expert parameters)");
    lora->n_layers = mc->n_layers;
    lora->n_experts = mc->n_experts;
    lora->scale = (lc_real)(cfg->use_rslora ? cfg->alpha / sqrt((double)cfg->r)
                                            : cfg->alpha / cfg->r);
    size_t n_ad = (size_t)mc->n_layers * LC_MOD_COUNT;
    size_t n_views = lc_lora_expert_view_count(lora);
    lora->adapters = calloc(n_ad, sizeof *lora->adapters);
    lora->tensors = calloc(3 * n_ad, sizeof *lora->tensors);
    lora->expert_views = calloc(n_views + 1, sizeof *lora->expert_views);
    lora->expert_tensors = calloc(2 * n_views + 1, sizeof *lora->expert_tensors);
    size_t total = 0;
    for (int l = 0; l < mc->n_layers; l++)
        for (int m = 0; m < LC_MOD_COUNT; m++)
            if (cfg->targets[m]) {
                int64_t out, in;
                lc_module_shape(mc, m, &out, &in);
                size_t reps = (size_t)lc_module_copies(mc, m);
                total += reps * (size_t)cfg->r * (size_t)(in + out) +
                         (cfg->use_dora ? (size_t)out : 0);
            }
    lora->n_params = total;
    lora->params = calloc(total, sizeof(lc_real));
    lora->grads = calloc(total, sizeof(lc_real));
    if (!lora->adapters || !lora->tensors || !lora->expert_views || !lora->expert_tensors ||
        !lora->params || !lora->grads) {
        lc_lora_free(lora);
        return lc_error_set(err, "out of memory for %zu LoRA parameters", total);
    }
    uint64_t rng = seed ^ 0x5eed10a4ull;
    size_t off = 0, nx = 0;
    for (int l = 0; l < mc->n_layers; l++) {
        for (int m = 0; m < LC_MOD_COUNT; m++) {
            if (!cfg->targets[m])
                continue;
            int64_t out, in, reps = lc_module_copies(mc, m);
            lc_module_shape(mc, m, &out, &in);
            lc_tensor *A = &lora->tensors[lora->n_tensors++];
            lc_tensor *B = &lora->tensors[lora->n_tensors++];
            /* an expert module: A [R·E, in] as PEFT's, B [E·out, R] (E blocks) */
            int64_t sa[2] = {reps * cfg->r, in}, sb[2] = {reps * out, cfg->r};
            lc_tensor_set_shape(A, 2, sa);
            lc_tensor_set_shape(B, 2, sb);
            A->data = lora->params + off;
            A->grad = lora->grads + off;
            off += (size_t)A->numel;
            B->data = lora->params + off;
            B->grad = lora->grads + off;
            off += (size_t)B->numel;
            A->requires_grad = B->requires_grad = true;
            A->is_param = B->is_param = true;
            A->dtype = B->dtype = LC_DTYPE_REAL;
            lc_tensor *M = NULL;
            if (cfg->use_dora) {
                M = &lora->tensors[lora->n_tensors++];
                lc_tensor_set_shape(M, 1, &out);
                M->data = lora->params + off;
                M->grad = lora->grads + off;
                off += (size_t)out;
                M->requires_grad = M->is_param = true;
                M->dtype = LC_DTYPE_REAL;
            }
            double bound = 1.0 / sqrt((double)in);
            for (int64_t i = 0; i < A->numel; i++) {
                double u = lc_rng_uniform(&rng);
                A->data[i] = (lc_real)((2 * u - 1) * bound);
            }
            lc_lora_adapter *ad = &lora->adapters[(size_t)l * LC_MOD_COUNT + m];
            *ad = (lc_lora_adapter){A, B, lora->scale, cfg->dropout, M, NULL};
            if (!lc_module_is_expert(m))
                continue;
            for (int e = 0; e < mc->n_experts; e++, nx++) { /* expert e's views */
                lc_tensor *Ae = &lora->expert_tensors[2 * nx], *Be = Ae + 1;
                int64_t se[2] = {cfg->r, in}, sbe[2] = {out, cfg->r};
                lc_tensor_set_shape(Ae, 2, se);
                lc_tensor_set_shape(Be, 2, sbe);
                Ae->data = A->data + e * Ae->numel;
                Ae->grad = A->grad + e * Ae->numel;
                Be->data = B->data + e * Be->numel;
                Be->grad = B->grad + e * Be->numel;
                Ae->requires_grad = Be->requires_grad = Ae->is_param = Be->is_param = true;
                Ae->dtype = Be->dtype = LC_DTYPE_REAL;
                lora->expert_views[expert_view(lora, l, m, e)] =
                    (lc_lora_adapter){Ae, Be, lora->scale, 0, NULL, NULL};
            }
        }
    }
    return 0;
}

void lc_lora_free(lc_lora *lora)
{
    free(lora->expert_views);
    free(lora->expert_tensors);
    free(lora->adapters);
    free(lora->tensors);
    free(lora->params);
    free(lora->grads);
    free(lora->frozen_norms);
    memset(lora, 0, sizeof *lora);
}

const lc_lora_adapter *lc_lora_get(const lc_lora *lora, int layer, lc_module m)
{
    const lc_lora_adapter *a = &lora->adapters[(size_t)layer * LC_MOD_COUNT + m];
    return a->A ? a : NULL;
}

const lc_lora_adapter *lc_lora_expert(const lc_lora *lora, int layer, lc_module m, int e)
{
    LC_ASSERT(lc_module_is_expert(m) && e >= 0 && e < lora->n_experts);
    if (!lora->cfg.targets[m])
        return NULL;
    return &lora->expert_views[expert_view(lora, layer, m, e)];
}

/* ---- adapter_config.json ---- */

/* The names of adapter_config.json's list `key` into cfg->targets: module
 * names (target_modules) or, with experts, the experts' parameters
 * (target_parameters). */
static int read_targets(const char *path, const char *key, const cJSON *list, bool experts,
                        lc_lora_config *cfg, lc_error *err)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, list)
    {
        int m = cJSON_IsString(it) ? lc_module_from_name(it->valuestring) : -1;
        if (m < 0 || lc_module_is_expert(m) != experts) {
            /* the name is from the file (fuzz_adapter): cut here; its
             * control bytes become '?' in lc_error_set */
            char nb[68] = "(not a string)";
            if (cJSON_IsString(it))
                snprintf(nb, sizeof nb, "'%.64s'", it->valuestring);
            return lc_error_set(err, "%s: %s: unknown %s %s (expected %s)", path, key,
                                experts ? "parameter" : "module", nb,
                                experts ? "experts.gate_up_proj or experts.down_proj"
                                        : lc_module_names());
        }
        cfg->targets[m] = true;
    }
    return 0;
}

int lc_lora_read_config(lc_lora_config *cfg, const char *dir, lc_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    cJSON *root = lc_read_json_object(path, 16u << 20, err);
    if (!root)
        return -1;
    int rc = -1;
    memset(cfg, 0, sizeof *cfg);
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(root, "peft_type");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(root, "r");
    const cJSON *alpha = cJSON_GetObjectItemCaseSensitive(root, "lora_alpha");
    const cJSON *drop = cJSON_GetObjectItemCaseSensitive(root, "lora_dropout");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "use_rslora");
    const cJSON *dora = cJSON_GetObjectItemCaseSensitive(root, "use_dora");
    const cJSON *fifo = cJSON_GetObjectItemCaseSensitive(root, "fan_in_fan_out");
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(root, "target_modules");
    const cJSON *tp = cJSON_GetObjectItemCaseSensitive(root, "target_parameters");
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "rank_pattern");
    const cJSON *ap = cJSON_GetObjectItemCaseSensitive(root, "alpha_pattern");
    if (pt && !(cJSON_IsString(pt) && strcmp(pt->valuestring, "LORA") == 0)) {
        lc_error_set(err, "%s: peft_type: only \"LORA\" adapters are supported", path);
        goto out;
    }
    if (!cJSON_IsNumber(r) || !(r->valuedouble >= 1 && r->valuedouble <= 4096) ||
        r->valuedouble != (int)r->valuedouble) {
        lc_error_set(err, "%s: r: expected an integer in 1..4096", path);
        goto out;
    }
    if (drop && !cJSON_IsNull(drop) && !cJSON_IsNumber(drop)) {
        lc_error_set(err, "%s: lora_dropout: expected a number", path);
        goto out;
    }
    /* Options that change which weights an adapter touches or what it
     * means: refused, never silently ignored. */
    static const char *const must_be_null[] = {
        "layers_to_transform", "layers_pattern", "exclude_modules", "layer_replication",
        "trainable_token_indices", "modules_to_save"};
    for (size_t i = 0; i < sizeof must_be_null / sizeof must_be_null[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, must_be_null[i]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsArray(v) && !v->child) &&
            !(cJSON_IsString(v) && !v->valuestring[0])) {
            lc_error_set(err, "%s: %s: not supported (lorac adapts every layer's "
                         "linears only)", path, must_be_null[i]);
            goto out;
        }
    }
    const cJSON *bias = cJSON_GetObjectItemCaseSensitive(root, "bias");
    const cJSON *lbias = cJSON_GetObjectItemCaseSensitive(root, "lora_bias");
    if ((bias && !(cJSON_IsString(bias) && strcmp(bias->valuestring, "none") == 0)) ||
        cJSON_IsTrue(lbias)) {
        lc_error_set(err, "%s: bias/lora_bias: only bias \"none\" adapters are supported", path);
        goto out;
    }
    /* Hardening (tests/test_hostile.c): 1e999 parses as infinity, which made
     * the scale infinite and every step NaN; alpha must be finite. */
    if (!cJSON_IsNumber(alpha) || !(alpha->valuedouble > 0) || !isfinite(alpha->valuedouble)) {
        lc_error_set(err, "%s: lora_alpha: expected a positive number", path);
        goto out;
    }
    if (dora && !cJSON_IsNull(dora) && !cJSON_IsBool(dora)) {
        lc_error_set(err, "%s: use_dora: expected true or false", path);
        goto out;
    }
    if (cJSON_IsTrue(fifo)) {
        lc_error_set(err, "%s: fan_in_fan_out: true is not supported (no supported family stores Conv1D weights)", path);
        goto out;
    }
    if ((cJSON_IsObject(rp) && rp->child) || (cJSON_IsObject(ap) && ap->child)) {
        lc_error_set(err, "%s: rank_pattern/alpha_pattern: per-module ranks are not supported", path);
        goto out;
    }
    cfg->r = r->valueint;
    cfg->alpha = alpha->valuedouble;
    cfg->dropout = cJSON_IsNumber(drop) ? drop->valuedouble : 0.0;
    cfg->use_rslora = cJSON_IsTrue(rs);
    cfg->use_dora = cJSON_IsTrue(dora);
    if (cJSON_IsString(tm) && strcmp(tm->valuestring, "all-linear") == 0) {
        cfg->all_linear = true;
    } else if (cJSON_IsArray(tm)) {
        if (read_targets(path, "target_modules", tm, false, cfg, err))
            goto out;
    } else {
        lc_error_set(err, "%s: target_modules: expected a list of module names", path);
        goto out;
    }
    if (tp && !cJSON_IsNull(tp) &&
        (!cJSON_IsArray(tp) || read_targets(path, "target_parameters", tp, true, cfg, err))) {
        if (!cJSON_IsArray(tp))
            lc_error_set(err, "%s: target_parameters: expected a list of parameter names", path);
        goto out;
    }
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

int lc_lora_load_tensors(lc_lora *lora, const lc_st_file *f, lc_error *err)
{
    char name[256];
    for (int l = 0; l < lora->n_layers; l++) {
        for (int m = 0; m < LC_MOD_COUNT; m++) {
            const lc_lora_adapter *ad = lc_lora_get(lora, l, m);
            if (!ad)
                continue;
            for (int b = 0; b < lc_lora_parts(lora); b++) {
                lc_tensor *t = lc_lora_part(ad, b);
                lc_lora_param_name(&lora->cfg, name, sizeof name, l, m, b);
                const lc_st_tensor *st = lc_st_find(f, name);
                if (!st)
                    return lc_error_set(err, "%s: missing tensor '%s'", f->path, name);
                /* an expert module's B: [out, R·E] in the file, E blocks [out, R] here */
                bool experts_b = lc_module_is_expert(m) && b == 1;
                int64_t E = lora->n_experts, want0 = experts_b ? t->shape[0] / E : t->shape[0];
                int64_t want1 = experts_b ? t->shape[1] * E : t->shape[1];
                if (b == 2 && (st->ndim != 1 || st->shape[0] != t->shape[0]))
                    return lc_error_set(err, "%s: tensor '%s' has %d dimension%s, expected "
                                        "[%lld] (the DoRA magnitude of a base model row)",
                                        f->path, name, st->ndim, lc_plural(st->ndim),
                                        (long long)t->shape[0]);
                if (b < 2 && (st->ndim != 2 || st->shape[0] != want0 || st->shape[1] != want1))
                    return lc_error_set(err,
                                        "%s: tensor '%s' has shape [%lld,%lld], expected "
                                        "[%lld,%lld] (rank or base model mismatch)",
                                        f->path, name, st->ndim > 0 ? (long long)st->shape[0] : 0,
                                        st->ndim > 1 ? (long long)st->shape[1] : 0,
                                        (long long)want0, (long long)want1);
                lc_dtype dt = st->dtype;
                if (dt != LC_DTYPE_F32 && dt != LC_DTYPE_F16 && dt != LC_DTYPE_BF16 &&
                    dt != LC_DTYPE_F64)
                    return lc_error_set(err, "%s: tensor '%s' has dtype %s, expected a float type",
                                        f->path, name, lc_dtype_name(dt));
                /* Hardening (fuzz_adapter): safetensors does not align tensor data
                 * (a header whose length is not a multiple of 8 leaves it at any
                 * byte), and loading a float through a misaligned pointer is
                 * undefined (UBSan flags it; vectorised loads may assume it).
                 * Misaligned data is copied to an aligned buffer first. */
                const void *src = st->data;
                void *copy = NULL;
                if ((uintptr_t)src % lc_dtype_size(dt) != 0) {
                    size_t nbytes = (size_t)(st->end - st->begin);
                    if (!(copy = malloc(nbytes ? nbytes : 1)))
                        return lc_error_set(err, "%s: tensor '%s': out of memory", f->path,
                                            name);
                    memcpy(copy, src, nbytes);
                    src = copy;
                }
                lc_weight w = {.data = src, .dtype = dt, .rows = st->shape[0],
                               .cols = st->ndim > 1 ? st->shape[1] : 1};
                lc_real *peft = experts_b ? malloc((size_t)t->numel * sizeof(lc_real)) : NULL;
                if (experts_b && !peft) {
                    free(copy);
                    return lc_error_set(err, "%s: tensor '%s': out of memory", f->path, name);
                }
                lc_weight_rows_to_real(&w, 0, w.rows, peft ? peft : t->data);
                for (int e = 0; peft && e < E; e++)
                    lc_moe_lora_b_from_peft(peft, want0, t->shape[1], (int)E, e,
                                            t->data + e * want0 * t->shape[1]);
                free(peft);
                free(copy);
                for (int64_t i = 0; i < t->numel; i++)
                    if (!isfinite(t->data[i]))
                        return lc_error_set(err, "%s: tensor '%s' holds NaN or infinity at "
                                            "element %lld", f->path, name, (long long)i);
            }
        }
    }
    return 0;
}

int lc_lora_load_peft(lc_lora *lora, const lc_model_config *mc, const char *dir,
                      lc_error *err)
{
    lc_lora_config cfg;
    if (lc_lora_read_config(&cfg, dir, err))
        return -1;
    if (lc_lora_init(lora, mc, &cfg, 0, err))
        return lc_error_prefix(err, "%s/adapter_config.json", dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    lc_st_file f;
    if (lc_st_open(&f, path, err)) {
        lc_lora_free(lora);
        return -1;
    }
    int rc = lc_lora_load_tensors(lora, &f, err);
    /* Tensors for modules the config does not target mean a mismatched pair. */
    for (size_t i = 0; rc == 0 && i < f.n_tensors; i++) {
        const char *n = f.tensors[i].name;
        bool known = false;
        char name[256];
        for (int l = 0; l < lora->n_layers && !known; l++)
            for (int m = 0; m < LC_MOD_COUNT && !known; m++)
                for (int b = 0; b < lc_lora_parts(lora) && !known; b++) {
                    if (!lc_lora_get(lora, l, m))
                        continue;
                    lc_lora_param_name(&lora->cfg, name, sizeof name, l, m, b);
                    known = strcmp(name, n) == 0;
                }
        if (!known)
            rc = lc_error_set(err, "%s: tensor '%s' does not belong to this model and "
                              "adapter_config.json (wrong layer count or target modules?)",
                              path, n);
    }
    lc_st_close(&f);
    if (rc)
        lc_lora_free(lora);
    return rc;
}

/* adapter_config.json's text: PEFT's keys, so PeftModel.from_pretrained
 * loads it (malloc'd; NULL when out of memory). */
static char *adapter_config_json(const lc_lora *lora, const char *base_model)
{
    cJSON *root = cJSON_CreateObject(), *tm = NULL;
    char *canonical = base_model ? realpath(base_model, NULL) : NULL;
    bool ok = root && cJSON_AddStringToObject(root, "peft_type", "LORA") &&
              cJSON_AddStringToObject(root, "task_type", "CAUSAL_LM") &&
              cJSON_AddStringToObject(root, "base_model_name_or_path",
                                      canonical ? canonical : base_model ? base_model : "") &&
              cJSON_AddNumberToObject(root, "r", lora->cfg.r) &&
              cJSON_AddNumberToObject(root, "lora_alpha", lora->cfg.alpha) &&
              cJSON_AddNumberToObject(root, "lora_dropout", lora->cfg.dropout) &&
              (tm = cJSON_AddArrayToObject(root, "target_modules"));
    free(canonical);
    cJSON *tp = NULL;
    for (int m = 0; ok && m < LC_MOD_COUNT; m++) {
        if (!lora->cfg.targets[m])
            continue;
        if (lc_module_is_expert(m) && !tp)
            ok = (tp = cJSON_AddArrayToObject(root, "target_parameters")) != NULL;
        if (ok)
            ok = cJSON_AddItemToArray(lc_module_is_expert(m) ? tp : tm,
                                      cJSON_CreateString(lc_module_name(m)));
    }
    ok = ok && cJSON_AddStringToObject(root, "bias", "none") &&
         cJSON_AddBoolToObject(root, "fan_in_fan_out", false) &&
         cJSON_AddBoolToObject(root, "use_rslora", lora->cfg.use_rslora) &&
         cJSON_AddBoolToObject(root, "use_dora", lora->cfg.use_dora) &&
         cJSON_AddBoolToObject(root, "inference_mode", true) &&
         cJSON_AddNullToObject(root, "modules_to_save") &&
         cJSON_AddNullToObject(root, "layers_to_transform") &&
         cJSON_AddNullToObject(root, "layers_pattern") &&
         cJSON_AddObjectToObject(root, "rank_pattern") &&
         cJSON_AddObjectToObject(root, "alpha_pattern") &&
         cJSON_AddBoolToObject(root, "init_lora_weights", true) &&
         cJSON_AddNullToObject(root, "revision");
    char *json = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    return json;
}

/* adapter_model.safetensors, F32, in (layer, module, A, B[, m]) order. */
static int write_adapter_tensors(const lc_lora *lora, const char *path, lc_error *err)
{
    lc_st_entry *entries = calloc(lora->n_tensors ? lora->n_tensors : 1, sizeof *entries);
    char (*names)[256] = calloc(lora->n_tensors ? lora->n_tensors : 1, sizeof *names);
    int64_t (*shapes)[2] = calloc(lora->n_tensors ? lora->n_tensors : 1, sizeof *shapes);
    float *conv = LC_REAL_IS_F64 ? malloc(lora->n_params * sizeof(float) + 1) : NULL;
    /* the experts' B blocks in PEFT's layout, at their offsets in the buffer */
    lc_real *peft = lora->n_experts ? malloc(lora->n_params * sizeof(lc_real) + 1) : NULL;
    int rc = -1;
    if (!entries || !names || !shapes || (LC_REAL_IS_F64 && !conv) || (lora->n_experts && !peft)) {
        lc_error_set(err, "%s: out of memory", path);
        goto out;
    }
    size_t k = 0;
    for (int l = 0; l < lora->n_layers; l++)
        for (int m = 0; m < LC_MOD_COUNT; m++) {
            const lc_lora_adapter *ad = lc_lora_get(lora, l, m);
            if (!ad)
                continue;
            for (int b = 0; b < lc_lora_parts(lora); b++) {
                const lc_tensor *t = lc_lora_part(ad, b);
                lc_lora_param_name(&lora->cfg, names[k], sizeof names[k], l, m, b);
                const lc_real *src = t->data;
                size_t off = (size_t)(t->data - lora->params);
                memcpy(shapes[k], t->shape, sizeof shapes[k]);
                if (lc_module_is_expert(m) && b == 1) { /* [E·out, R] → [out, R·E] */
                    int64_t E = lora->n_experts, out = t->shape[0] / E, R = t->shape[1];
                    for (int e = 0; e < E; e++)
                        lc_moe_lora_b_to_peft(t->data + e * out * R, out, R, (int)E, e,
                                              peft + off);
                    src = peft + off;
                    shapes[k][0] = out;
                    shapes[k][1] = R * E;
                }
                const void *data = src;
                if (conv) {
                    for (int64_t i = 0; i < t->numel; i++)
                        conv[off + i] = (float)src[i];
                    data = conv + off;
                }
                entries[k] = (lc_st_entry){names[k], LC_DTYPE_F32, t->ndim, shapes[k], data};
                k++;
            }
        }
    const char *mk[1] = {"format"}, *mv[1] = {"pt"};
    rc = lc_st_write(path, entries, k, mk, mv, 1, err);
out:
    free(entries);
    free(names);
    free(shapes);
    free(conv);
    free(peft);
    return rc;
}

/* The two files cannot be renamed into place as one directory: the final
 * adapter shares output_dir with the checkpoints, metrics.jsonl and the
 * lock. So each file is written atomically (temp, fsync, rename) and the
 * pair is ordered: any existing adapter_config.json is removed first, the
 * weights written, the config last. At every moment the directory holds
 * either a complete pair or weights without a config, which PEFT, lorac
 * merge and lorac eval refuse — never a config beside weights it does not
 * describe (the old order, config first, could leave a new config with
 * another run's weights, used at the wrong scale). */
int lc_lora_save_peft(const lc_lora *lora, const char *dir, const char *base_model,
                      lc_error *err)
{
    if (lc_mkdir_p(dir, err))
        return -1;
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    char *json = adapter_config_json(lora, base_model);
    if (!json)
        return lc_error_set(err, "%s: out of memory", path);
    int rc = 0;
    if (unlink(path) != 0 && errno != ENOENT)
        rc = lc_error_set(err, "cannot replace %s: %s", path, strerror(errno));
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if (rc == 0)
        rc = write_adapter_tensors(lora, path, err);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    if (rc == 0)
        rc = lc_write_file_atomic(path, json, strlen(json), err);
    free(json);
    if (rc == 0)
        lc_fsync_dir(dir);
    return rc;
}

int lc_lora_loraplus_groups(const lc_lora *lora, double b_lr_scale, lc_adamw *opt,
                            lc_error *err)
{
    /* the buffer holds A then B of each adapter, adapters in layer-module order */
    lc_adamw_span *spans = malloc((lora->n_tensors + 1) * sizeof *spans);
    if (!spans)
        return lc_error_set(err, "out of memory for the LoRA+ parameter groups");
    size_t n = 0;
    for (size_t a = 0; a < (size_t)lora->n_layers * LC_MOD_COUNT; a++) {
        const lc_lora_adapter *ad = &lora->adapters[a];
        if (!ad->A)
            continue;
        for (int k = 0; k < lc_lora_parts(lora); k++) {
            const lc_tensor *p = lc_lora_part(ad, k);
            double scale = k >= 1 ? b_lr_scale : 1.0; /* m is 1-D: PEFT's B group */
            size_t b = (size_t)(p->data - lora->params), e = b + (size_t)p->numel;
            if (n > 0 && spans[n - 1].end == b && spans[n - 1].lr_scale == scale)
                spans[n - 1].end = e;
            else
                spans[n++] = (lc_adamw_span){b, e, scale};
        }
    }
    int rc = lc_adamw_set_spans(opt, spans, n, err);
    free(spans);
    return rc;
}

/* merge.c — `lorac merge`: adapter folded into the base, shard by shard,
 * into a staging directory that is verified and then renamed into place
 * (see merge.h for the arithmetic, the memory bound and the tolerances).
 * With --dequantize, the NF4 linears of a bitsandbytes base are dequantized
 * on the way (see merge.h) and their companion tensors left out.
 *
 * Test hook (test-only, not a user feature): with the environment variable
 * LORAC_TEST_CORRUPT_MERGE=X (a non-zero number such as 1 or 1e-4), X is
 * added to element [0,0] of one merged weight (layer 0, down_proj when
 * targeted; a GGUF merge: the first merged tensor of the file) before it is
 * written, so a test can prove that the verification catches a wrong merge,
 * small errors included. */
#include "train/sysinfo.h"
#include "train/merge.h"

#include "train/family.h"
#include "data/batch.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "data/bnb4.h"
#include "data/model_files.h"
#include "train/fsutil.h"
#include "train/gguf_model.h"
#include "train/side_files.h"
#include "train/staging.h"
#include "train/lora.h"
#include "train/memory_plan.h"
#include "train/model.h"
#include "autograd/hash.h"
#include "autograd/ggml_weight.h"
#include "data/ggml_quants.h"
#include "train/gguf_merge.h"

#define INDEX_NAME "model.safetensors.index.json"
#define MAX_SMALL_FILE (256u << 20)

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

static bool is_float(lc_dtype t)
{
    return t == LC_DTYPE_F32 || t == LC_DTYPE_BF16 || t == LC_DTYPE_F16;
}

int lc_merge_parse_dtype(const char *s, int *dtype)
{
    if (!strcmp(s, "auto"))
        *dtype = LC_MERGE_DTYPE_AUTO;
    else if (!strcmp(s, "bf16") || !strcmp(s, "bfloat16"))
        *dtype = LC_DTYPE_BF16;
    else if (!strcmp(s, "f16") || !strcmp(s, "fp16") || !strcmp(s, "float16"))
        *dtype = LC_DTYPE_F16;
    else if (!strcmp(s, "f32") || !strcmp(s, "fp32") || !strcmp(s, "float32"))
        *dtype = LC_DTYPE_F32;
    else
        return -1;
    return 0;
}

static int join(char *buf, size_t n, const char *dir, const char *name, lc_error *err)
{
    if ((size_t)snprintf(buf, n, "%s/%s", dir, name) >= n)
        return lc_error_set(err, "path too long: %s/%s", dir, name);
    return 0;
}

static void append_name(char *list, size_t n, const char *name)
{
    size_t len = strlen(list);
    if (len + strlen(name) + 8 >= n) {
        if (len + 4 < n && !strstr(list, "..."))
            strcat(list, ", ...");
        return;
    }
    snprintf(list + len, n - len, "%s%s", len ? ", " : "", name);
}

/* ------------------------------------------------------------------ */
/* adapter checks                                                      */

/* An experts' LoRA tensor (PEFT target_parameters: ...layers.N.mlp.experts
 * [.base_layer].lora_{A,B}.weight): 1 when t is one, with *rc set by its
 * check (targeted, and A [R·E, in], B [out, R·E] of this base), else 0. */
static int check_expert_tensor(const char *path, const lc_st_tensor *t, const lc_lora_config *lc,
                               const lc_model_config *mc, int *rc, lc_error *err)
{
    int layer = -1, n = 0;
    if (sscanf(t->name, "base_model.model.model.layers.%d.mlp.experts.%n", &layer, &n) != 1 ||
        n == 0)
        return 0;
    char want[256];
    for (int m = LC_MOD_EXPERTS_GATE_UP; m <= LC_MOD_EXPERTS_DOWN; m++)
        for (int k = 0; k < 2; k++) {
            lc_lora_param_name(lc, want, sizeof want, layer, m, k);
            if (strcmp(want, t->name) != 0 || !lc->targets[m])
                continue;
            int64_t out, in, E = mc->n_experts;
            lc_module_shape(mc, m, &out, &in);
            int64_t w0 = k ? out : lc->r * E, w1 = k ? lc->r * E : in;
            if (layer >= mc->n_layers || E == 0)
                *rc = lc_error_set(err, "%s: tensor '%.200s' adapts the experts of layer %d, "
                                   "which this base (%s, %d layers) does not have", path,
                                   t->name, layer, mc->model_type, mc->n_layers);
            else if (t->ndim != 2 || t->shape[0] != w0 || t->shape[1] != w1)
                *rc = lc_error_set(err, "%s: tensor '%.200s' is not [%lld,%lld] (r %d, %lld "
                                   "experts of this base)", path, t->name, (long long)w0,
                                   (long long)w1, lc->r, (long long)E);
            return 1;
        }
    *rc = lc_error_set(err, "%s: tensor '%.200s' is not an experts' LoRA weight that "
                       "adapter_config.json's target_parameters describes", path, t->name);
    return 1;
}

/* Checks every tensor of the adapter file against adapter_config.json and
 * the base's config, so a mismatched pair is refused with a message that
 * says which and why, before lc_lora_load_peft loads the values. */
static int check_adapter(const char *adir, const lc_model_config *mc, lc_error *err)
{
    lc_lora_config lc;
    if (lc_lora_read_config(&lc, adir, err))
        return -1;
    char path[4200];
    if (join(path, sizeof path, adir, "adapter_model.safetensors", err))
        return -1;
    lc_st_file f;
    if (lc_st_open(&f, path, err))
        return -1;
    int rc = 0;
    for (size_t i = 0; i < f.n_tensors && rc == 0; i++) {
        const lc_st_tensor *t = &f.tensors[i];
        int layer = -1, n = 0;
        char parent[32], mod[32], ab = 0;
        int ex = check_expert_tensor(path, t, &lc, mc, &rc, err);
        if (ex != 0)
            continue; /* an experts' tensor: checked (rc says how) */
        /* DoRA: base_model.model.model.layers.N.{self_attn,mlp}.*_proj.lora_magnitude_vector */
        int got = sscanf(t->name, "base_model.model.model.layers.%d.%31[^.].%31[^.]."
                         "lora_magnitude_vector%n", &layer, parent, mod, &n);
        bool mag = lc.use_dora && got == 3 && n > 0 && t->name[n] == '\0';
        if (!mag) {
            n = 0;
            got = sscanf(t->name, "base_model.model.model.layers.%d.%31[^.].%31[^.].lora_%c.weight%n",
                         &layer, parent, mod, &ab, &n);
        }
        if (!mag && (got != 4 || n == 0 || t->name[n] != '\0' || (ab != 'A' && ab != 'B'))) {
            rc = lc_error_set(err, "%s: tensor '%.200s' is not a LoRA A/B weight of a decoder "
                              "linear (lorac merges only base_model.model.model.layers.N."
                              "{self_attn,mlp}.*_proj.lora_{A,B}.weight)", path, t->name);
            break;
        }
        int m = lc_module_from_name(mod);
        if (m < 0 || strcmp(parent, lc_module_parent(m)) != 0 || !lc_model_has_module(mc, m)) {
            rc = lc_error_set(err, "%s: tensor '%.200s' adapts %s.%s, which is not one of the "
                              "linears of a %s block", path, t->name, parent, mod,
                              mc->model_type);
            break;
        }
        if (layer < 0 || layer >= mc->n_layers) {
            rc = lc_error_set(err, "%s: tensor '%.200s' adapts layer %d, but the base model has "
                              "%d layers (0..%d): the adapter was made for another model",
                              path, t->name, layer, mc->n_layers, mc->n_layers - 1);
            break;
        }
        if (!lc.all_linear && !lc.targets[m]) {
            rc = lc_error_set(err, "%s: tensor '%.200s' adapts %s, which target_modules in "
                              "adapter_config.json does not list", path, t->name, mod);
            break;
        }
        if (mag) {
            int64_t out, in;
            lc_module_shape(mc, m, &out, &in);
            if (t->ndim != 1 || t->shape[0] != out)
                rc = lc_error_set(err, "%s: tensor '%.200s' is not a vector of the base model's "
                                  "%lld output rows of %s (a DoRA magnitude)", path, t->name,
                                  (long long)out, mod);
            continue;
        }
        if (t->ndim != 2) {
            rc = lc_error_set(err, "%s: tensor '%.200s' has %d dimensions, expected 2", path,
                              t->name, t->ndim);
            break;
        }
        int64_t rank = ab == 'A' ? t->shape[0] : t->shape[1];
        if (rank != lc.r) {
            rc = lc_error_set(err, "%s: rank mismatch: adapter_config.json says r = %d but "
                              "tensor '%.200s' has rank %lld (shape [%lld,%lld]); fix r in "
                              "adapter_config.json or use the matching adapter files",
                              path, lc.r, t->name, (long long)rank, (long long)t->shape[0],
                              (long long)t->shape[1]);
            break;
        }
        int64_t out, in;
        lc_module_shape(mc, m, &out, &in);
        int64_t want = ab == 'A' ? in : out, have = ab == 'A' ? t->shape[1] : t->shape[0];
        if (have != want) {
            rc = lc_error_set(err, "%s: tensor '%.200s' has shape [%lld,%lld], but the base "
                              "model's %s is [%lld,%lld] (expected [%lld,%lld]): the adapter "
                              "was trained on a model of another shape (this base has "
                              "hidden_size %d, intermediate_size %d)",
                              path, t->name, (long long)t->shape[0], (long long)t->shape[1], mod,
                              (long long)out, (long long)in,
                              (long long)(ab == 'A' ? lc.r : out), (long long)(ab == 'A' ? in : lc.r),
                              mc->hidden_size, mc->intermediate_size);
            break;
        }
    }
    lc_st_close(&f);
    return rc;
}

/* ------------------------------------------------------------------ */
/* the arithmetic                                                      */

/* Stores v (f32) as dtype at element i of dst; false when the value is not
 * representable (overflow to infinity, NaN). */
static bool store(void *dst, lc_dtype dt, int64_t i, float v)
{
    if (dt == LC_DTYPE_F32) {
        ((float *)dst)[i] = v;
        return isfinite(v);
    }
    uint16_t h = dt == LC_DTYPE_BF16 ? lc_f32_to_bf16(v) : lc_f32_to_f16(v);
    ((uint16_t *)dst)[i] = h;
    return isfinite(dt == LC_DTYPE_BF16 ? lc_bf16_to_f32(h) : lc_f16_to_f32(h));
}

/* W' = W + scale · (B @ A) into a new buffer of out_dt; bump (test hook) is
 * added to element [0,0]. w is a dense tensor of the file or an NF4 view
 * (dequantized a row at a time); ad may be NULL (an NF4 linear the adapter
 * does not touch: written dequantized, unchanged). */
static int merge_tensor(const char *name, const lc_weight *w, const lc_lora_adapter *ad,
                        double scale, lc_dtype out_dt, float bump, void **out, lc_error *err)
{
    const int64_t nr = w->rows, nc = w->cols, rk = ad ? ad->A->shape[0] : 0;
    const lc_real *A = ad ? ad->A->data : NULL, *B = ad ? ad->B->data : NULL;
    unsigned char *dst = malloc((size_t)(nr * nc) * lc_dtype_size(out_dt));
    if (!dst)
        return lc_error_set(err, "out of memory merging '%s' ([%lld,%lld])", name,
                            (long long)nr, (long long)nc);
    int64_t bad = -1;
    bool oom = false;
#pragma omp parallel
    {
        lc_real *row = malloc((size_t)nc * sizeof *row);
        double *acc = malloc((size_t)nc * sizeof *acc);
        if (!row || !acc) {
#pragma omp atomic write
            oom = true;
        }
#pragma omp for schedule(static)
        for (int64_t i = 0; i < nr; i++) {
            if (!row || !acc)
                continue;
            lc_weight_rows_to_real(w, i, i + 1, row); /* NF4: lc_nf4_dequant_rows */
            for (int64_t j = 0; j < nc; j++)
                acc[j] = 0;
            /* products of two floats are exact in double: the sum does not
             * depend on FMA contraction, and k runs in a fixed order */
            for (int64_t k = 0; k < rk; k++) {
                const double b = (double)B[i * rk + k];
                const lc_real *a = A + k * nc;
                for (int64_t j = 0; j < nc; j++)
                    acc[j] += b * (double)a[j];
            }
            /* DoRA (PEFT's merge): (m / c) · (W + s·B·A), c the row norm of
             * the float sum W + s·B·A */
            double g = 1;
            if (ad && ad->m) {
                double ss = 0;
                for (int64_t j = 0; j < nc; j++) {
                    double v = (double)((float)row[j] + (float)(acc[j] * scale));
                    ss += v * v;
                }
                g = (double)ad->m->data[i] / sqrt(ss);
            }
            for (int64_t j = 0; j < nc; j++) {
                float v = ad ? (float)row[j] + (float)(acc[j] * scale) : (float)row[j];
                if (ad && ad->m)
                    v = (float)((double)v * g);
                if (i == 0 && j == 0)
                    v += bump;
                if (!store(dst, out_dt, i * nc + j, v)) {
#pragma omp critical(merge_bad)
                    if (bad < 0 || i * nc + j < bad)
                        bad = i * nc + j;
                }
            }
        }
        free(row);
        free(acc);
    }
    if (oom || bad >= 0) {
        free(dst);
        if (oom)
            return lc_error_set(err, "out of memory merging '%s'", name);
        return lc_error_set(err, "merged weight '%s' is not finite in %s at element [%lld,%lld] "
                            "(the adapter's update is too large for that dtype; try --dtype f32)",
                            name, lc_dtype_name(out_dt), (long long)(bad / nc),
                            (long long)(bad % nc));
    }
    *out = dst;
    return 0;
}

/* A copy of t converted to out_dt. */
static int convert_tensor(const lc_st_tensor *t, lc_dtype out_dt, void **out, lc_error *err)
{
    unsigned char *dst = malloc((size_t)t->numel * lc_dtype_size(out_dt) + 1);
    if (!dst)
        return lc_error_set(err, "out of memory converting '%s'", t->name);
    const lc_weight w = {t->data, t->dtype, 1, (int64_t)t->numel, NULL, NULL};
    enum { CHUNK = 4096 };
    lc_real buf[CHUNK];
    for (uint64_t i0 = 0; i0 < t->numel; i0 += CHUNK) {
        uint64_t n = t->numel - i0 < CHUNK ? t->numel - i0 : CHUNK;
        lc_weight part = w;
        part.data = (const unsigned char *)t->data + i0 * lc_dtype_size(t->dtype);
        part.cols = (int64_t)n;
        lc_weight_rows_to_real(&part, 0, 1, buf);
        for (uint64_t k = 0; k < n; k++) {
            float v = (float)buf[k];
            if (!store(dst, out_dt, (int64_t)(i0 + k), v) && isfinite(v)) {
                free(dst);
                return lc_error_set(err, "tensor '%s' element %llu (%g) overflows %s; choose "
                                    "another --dtype", t->name, (unsigned long long)(i0 + k),
                                    (double)v, lc_dtype_name(out_dt));
            }
        }
    }
    *out = dst;
    return 0;
}

/* ------------------------------------------------------------------ */
/* the merge                                                           */

typedef struct merge_job {
    const lc_merge_opts *o;
    lc_merge_report *r;
    FILE *log;
    lc_model_config cfg;
    lc_lora lora;
    bool lora_loaded;
    lc_model_files mf;
    bool mf_open;
    double scale;
    const lc_st_tensor **targets;  /* [L · LC_MOD_COUNT], NULL where not adapted */
    size_t n_expert;               /* L · E · 3 with expert adapters, else 0 */
    const lc_st_tensor **expert_targets; /* [n_expert]: layer l, expert e's gate, up, down */
    lc_lora_adapter *expert_ads;   /* [n_expert]: their adapters (gate and up: B_e's halves) */
    lc_tensor *expert_b;           /* [n_expert]: the B views */
    const lc_st_tensor *corrupt;   /* test hook target or NULL */
    float corrupt_bump;            /* what the test hook adds to it */
    int out_dtype;                 /* forced output dtype or LC_MERGE_DTYPE_AUTO */
    bool dequant;                  /* the base is bitsandbytes NF4 and --dequantize was given */
    lc_nf4 *q;                     /* [L · LC_MOD_COUNT] NF4 views (dequant only) */
    const lc_st_tensor **lin;      /* [L · LC_MOD_COUNT] their packed P.weight (dequant only) */
    char stage[4200];
    bool stage_made;
    bool dtype_changed;            /* some tensor's dtype differs from the input */
    double out_total_bytes;
} merge_job;

static int cmp_by_offset(const void *a, const void *b)
{
    const lc_st_tensor *x = *(const lc_st_tensor *const *)a;
    const lc_st_tensor *y = *(const lc_st_tensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

/* With dequant: the slot (layer · LC_MOD_COUNT + module) of a name
 * "model.layers.L.{self_attn,mlp}.M.weight[SUFFIX]" of a decoder linear,
 * *suffix pointing at SUFFIX ("" for the packed weight itself, ".absmax",
 * ".quant_state.bitsandbytes__nf4", ... for its companions); -1 otherwise. */
static int linear_slot(const merge_job *j, const char *name, const char **suffix)
{
    int layer = -1, n = 0;
    char parent[32], mod[32];
    if (sscanf(name, "model.layers.%d.%31[^.].%31[^.].weight%n", &layer, parent, mod, &n) != 3 ||
        n == 0 || (name[n] != '\0' && name[n] != '.'))
        return -1;
    int m = lc_module_from_name(mod);
    if (m < 0 || strcmp(parent, lc_module_parent(m)) != 0 || !lc_model_has_module(&j->cfg, m) ||
        layer < 0 || layer >= j->cfg.n_layers)
        return -1;
    *suffix = name + n;
    return layer * LC_MOD_COUNT + m;
}

/* A bitsandbytes companion tensor (absmax, quant_map, nested_*, quant_state)
 * of an NF4 linear that is being dequantized: left out of the output. */
static bool is_companion(const merge_job *j, const char *name)
{
    const char *suffix;
    return j->dequant && linear_slot(j, name, &suffix) >= 0 && suffix[0] == '.';
}

/* With dequant: an NF4 view of every decoder linear (all of them must be
 * quantized, as the loader expects of a bitsandbytes checkpoint), and no
 * other bitsandbytes-quantized tensor, which lorac could not dequantize. */
static int find_quantized(merge_job *j, lc_error *err)
{
    const lc_model_config *c = &j->cfg;
    if (c->n_experts)
        return lc_error_set(err, "--dequantize: %s is a bitsandbytes %s checkpoint; lorac "
                            "dequantizes dense families only", j->o->base_dir, c->model_type);
    const size_t n = (size_t)c->n_layers * LC_MOD_COUNT;
    j->q = calloc(n, sizeof *j->q);
    j->lin = calloc(n, sizeof *j->lin);
    if (!j->q || !j->lin)
        return lc_error_set(err, "out of memory");
    char name[256];
    const lc_family *f = lc_family_of(c->arch);
    for (int l = 0; l < c->n_layers; l++)
        for (int i = 0; i < f->n_modules; i++) {
            const lc_module m = f->modules[i];
            const size_t k = (size_t)l * LC_MOD_COUNT + (size_t)m;
            int64_t out, in;
            lc_module_shape(c, m, &out, &in);
            snprintf(name, sizeof name, "model.layers.%d.%s.%s", l, lc_module_parent(m),
                     lc_module_name(m));
            if (lc_bnb4_view(&j->mf, name, out, in, &j->q[k], err))
                return lc_error_prefix(err, "--dequantize: reading the NF4 linear %s", name);
            snprintf(name, sizeof name, "model.layers.%d.%s.%s.weight", l, lc_module_parent(m),
                     lc_module_name(m));
            j->lin[k] = lc_model_files_find(&j->mf, name);
        }
    for (size_t s = 0; s < j->mf.n_shards; s++)
        for (size_t i = 0; i < j->mf.shards[s].n_tensors; i++) {
            const char *tn = j->mf.shards[s].tensors[i].name;
            if (strstr(tn, ".quant_state.bitsandbytes__") && !is_companion(j, tn))
                return lc_error_set(err, "%s: tensor '%s' is bitsandbytes-quantized but does not "
                                    "belong to one of the linears of a decoder block; lorac "
                                    "--dequantize handles only those (%s)",
                                    j->o->base_dir, tn, lc_module_names());
        }
    return 0;
}

/* The adapter of expert linear i (0 gate, 1 up, 2 down) from the expert's
 * adapter ad (A_e [R, C], B_e [2FF, R] or [C, R]): gate and up take B_e's
 * first and last FF rows, a view set up in *b. */
static lc_lora_adapter expert_part(const lc_lora_adapter *ad, int i, int64_t FF, lc_tensor *b)
{
    int64_t shape[2] = {i < 2 ? FF : ad->B->shape[0], ad->B->shape[1]};
    lc_tensor_set_shape(b, 2, shape);
    b->data = ad->B->data + (i == 1 ? FF * shape[1] : 0);
    return (lc_lora_adapter){ad->A, b, ad->scale, 0, NULL, NULL};
}

/* The experts' weights of the base that the adapter's target_parameters
 * update, each with its adapter: gate and up take A_e with the first and
 * last FF rows of B_e [2FF, R], down takes A_e, B_e. */
static int find_expert_targets(merge_job *j, lc_error *err)
{
    const lc_model_config *c = &j->cfg;
    const lc_family *f = lc_family_of(c->arch);
    const lc_lora *lo = &j->lora;
    if (!f->moe || !(lo->cfg.targets[LC_MOD_EXPERTS_GATE_UP] || lo->cfg.targets[LC_MOD_EXPERTS_DOWN]))
        return 0;
    j->n_expert = (size_t)c->n_layers * (size_t)c->n_experts * 3;
    j->expert_targets = calloc(j->n_expert, sizeof *j->expert_targets);
    j->expert_ads = calloc(j->n_expert, sizeof *j->expert_ads);
    j->expert_b = calloc(j->n_expert, sizeof *j->expert_b);
    if (!j->expert_targets || !j->expert_ads || !j->expert_b)
        return lc_error_set(err, "out of memory");
    const int64_t FF = c->moe_intermediate_size, C = c->hidden_size;
    char name[256];
    for (int l = 0; l < c->n_layers; l++)
        for (int e = 0; e < c->n_experts; e++)
            for (int i = 0; i < 3; i++) {
                lc_module m = i < 2 ? LC_MOD_EXPERTS_GATE_UP : LC_MOD_EXPERTS_DOWN;
                const lc_lora_adapter *ad = lc_lora_expert(lo, l, m, e);
                if (!ad)
                    continue;
                size_t k = ((size_t)l * (size_t)c->n_experts + (size_t)e) * 3 + (size_t)i;
                lc_family_expert_weight_name(f, name, sizeof name, l, e, i);
                const lc_st_tensor *t = lc_model_files_find(&j->mf, name);
                int64_t out = i < 2 ? FF : C, in = i < 2 ? C : FF;
                if (!t || t->ndim != 2 || t->shape[0] != out || t->shape[1] != in ||
                    !is_float(t->dtype))
                    return lc_error_set(err, "%s: the base has no float [%lld,%lld] tensor '%s', "
                                        "which the adapter adapts", j->o->base_dir,
                                        (long long)out, (long long)in, name);
                j->expert_targets[k] = t;
                j->expert_ads[k] = expert_part(ad, i, FF, &j->expert_b[k]);
            }
    return 0;
}

static int find_targets(merge_job *j, lc_error *err)
{
    const lc_model_config *c = &j->cfg;
    j->targets = calloc((size_t)c->n_layers * LC_MOD_COUNT, sizeof *j->targets);
    if (!j->targets)
        return lc_error_set(err, "out of memory");
    if (j->dequant && find_quantized(j, err))
        return -1;
    char name[256];
    static const lc_module pref[LC_MOD_COUNT] = {LC_MOD_DOWN, LC_MOD_O, LC_MOD_V, LC_MOD_UP,
                                                 LC_MOD_GATE, LC_MOD_Q, LC_MOD_K,
                                                 LC_MOD_GATE_UP, LC_MOD_QKV};
    for (int l = 0; l < c->n_layers; l++)
        for (int m = 0; m < LC_MOD_COUNT; m++) {
            if (!lc_lora_get(&j->lora, l, m) || lc_module_is_expert(m))
                continue;
            if (j->dequant) { /* checked by lc_bnb4_view */
                j->targets[(size_t)l * LC_MOD_COUNT + (size_t)m] =
                    j->lin[(size_t)l * LC_MOD_COUNT + (size_t)m];
                continue;
            }
            snprintf(name, sizeof name, "model.layers.%d.%s.%s.weight", l, lc_module_parent(m),
                     lc_module_name(m));
            const lc_st_tensor *t = lc_model_files_find(&j->mf, name);
            int64_t out, in;
            lc_module_shape(c, m, &out, &in);
            if (!t)
                return lc_error_set(err, "%s: the base model has no tensor '%s', which the "
                                    "adapter adapts", j->o->base_dir, name);
            if (t->ndim != 2 || t->shape[0] != out || t->shape[1] != in)
                return lc_error_set(err, "%s: tensor '%s' does not have the shape [%lld,%lld] "
                                    "that config.json implies", j->o->base_dir, name,
                                    (long long)out, (long long)in);
            if (!is_float(t->dtype))
                return lc_error_set(err, "%s: tensor '%s' has dtype %s; merging needs F32, "
                                    "BF16 or F16 weights", j->o->base_dir, name,
                                    lc_dtype_name(t->dtype));
            j->targets[(size_t)l * LC_MOD_COUNT + m] = t;
        }
    if (find_expert_targets(j, err))
        return -1;
    j->corrupt_bump = lc_merge_test_bump();
    if (j->corrupt_bump != 0.0f)
        for (int k = 0; k < LC_MOD_COUNT && !j->corrupt; k++)
            j->corrupt = j->targets[pref[k]];
    return 0;
}

float lc_merge_test_bump(void)
{
    const char *hook = getenv("LORAC_TEST_CORRUPT_MERGE");
    char *end = NULL;
    float bump = hook ? strtof(hook, &end) : 0.0f;
    return hook && end != hook && *end == '\0' && isfinite(bump) ? bump : 0.0f;
}

static const lc_lora_adapter *adapter_of(const merge_job *j, const lc_st_tensor *t)
{
    size_t n = (size_t)j->cfg.n_layers * LC_MOD_COUNT;
    for (size_t k = 0; k < n; k++)
        if (j->targets[k] == t)
            return lc_lora_get(&j->lora, (int)(k / LC_MOD_COUNT), (lc_module)(k % LC_MOD_COUNT));
    for (size_t k = 0; k < j->n_expert; k++)
        if (j->expert_targets[k] == t)
            return &j->expert_ads[k];
    return NULL;
}

/* Drops the whole pages of [p, p + n) of a read-only file mapping from RSS
 * (they are re-read from the file if touched again). */
void lc_drop_pages(const void *p, size_t n)
{
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + page - 1) & ~(page - 1), b = ((uintptr_t)p + n) & ~(page - 1);
    if (b > a)
        madvise((void *)a, b - a, MADV_DONTNEED);
}

static int write_shard(merge_job *j, size_t s, lc_error *err)
{
    lc_st_file *f = &j->mf.shards[s];
    const char *fname = j->mf.shard_names[s];
    size_t n = f->n_tensors;
    const lc_st_tensor **order = malloc((n ? n : 1) * sizeof *order);
    lc_st_entry *entries = calloc(n ? n : 1, sizeof *entries);
    void **bufs = calloc(n ? n : 1, sizeof *bufs);
    int64_t(*shapes)[2] = calloc(n ? n : 1, sizeof *shapes); /* of dequantized linears */
    int rc = -1, merged = 0, dequantized = 0, dropped = 0;
    size_t n_out = 0;
    double bytes = 0;
    if (!order || !entries || !bufs || !shapes) {
        lc_error_set(err, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        order[i] = &f->tensors[i];
    qsort(order, n, sizeof *order, cmp_by_offset); /* keep the input's layout */
    for (size_t i = 0; i < n; i++) {
        const lc_st_tensor *t = order[i];
        lc_dtype dt = t->dtype;
        if (j->out_dtype != LC_MERGE_DTYPE_AUTO && is_float(dt))
            dt = (lc_dtype)j->out_dtype;
        const void *data = t->data;
        const lc_lora_adapter *ad = adapter_of(j, t);
        const char *suffix = NULL;
        const int slot = j->dequant ? linear_slot(j, t->name, &suffix) : -1;
        if (slot >= 0 && suffix[0] == '.') { /* absmax, quant_map, nested_*, quant_state */
            dropped++;
            continue;
        }
        if (slot >= 0 && t == j->lin[slot]) {
            /* NF4 linear: dequantized (+ the adapter's update), written dense */
            const lc_nf4 *q = &j->q[slot];
            const lc_weight w = {NULL, LC_DTYPE_F32, q->rows, q->cols, q, NULL};
            dt = (lc_dtype)j->out_dtype;
            float bump = ad && t == j->corrupt ? j->corrupt_bump : 0.0f;
            if (merge_tensor(t->name, &w, ad, j->scale, dt, bump, &bufs[i], err))
                goto out;
            lc_drop_pages(t->data, t->end - t->begin);
            shapes[i][0] = q->rows;
            shapes[i][1] = q->cols;
            entries[n_out++] = (lc_st_entry){t->name, dt, 2, shapes[i], bufs[i]};
            bytes += (double)(q->rows * q->cols) * (double)lc_dtype_size(dt);
            dequantized++;
            merged += ad != NULL;
            j->r->corrupted |= bump != 0;
            j->r->low_precision |= dt != LC_DTYPE_F32;
            j->dtype_changed = true;
            continue;
        }
        if (ad) {
            float bump = t == j->corrupt ? j->corrupt_bump : 0.0f;
            const lc_weight w = {t->data, t->dtype, t->shape[0], t->shape[1], NULL, NULL};
            if (merge_tensor(t->name, &w, ad, j->scale, dt, bump, &bufs[i], err))
                goto out;
            data = bufs[i];
            lc_drop_pages(t->data, t->end - t->begin); /* the input is not read again */
            merged++;
            j->r->corrupted |= bump != 0;
            j->r->low_precision |= dt != LC_DTYPE_F32;
        } else if (dt != t->dtype) {
            if (convert_tensor(t, dt, &bufs[i], err))
                goto out;
            data = bufs[i];
            lc_drop_pages(t->data, t->end - t->begin);
            j->r->n_converted++;
            j->r->low_precision |= dt != LC_DTYPE_F32;
        }
        j->dtype_changed |= dt != t->dtype;
        entries[n_out++] = (lc_st_entry){t->name, dt, t->ndim, t->shape, data};
        bytes += (double)t->numel * (double)lc_dtype_size(dt);
    }
    const char *fmt_k[1] = {"format"}, *fmt_v[1] = {"pt"};
    const char *const *mk = f->n_meta ? (const char *const *)f->meta_keys : fmt_k;
    const char *const *mv = f->n_meta ? (const char *const *)f->meta_values : fmt_v;
    char path[4400];
    if (join(path, sizeof path, j->stage, fname, err))
        goto out;
    if (lc_st_write(path, entries, n_out, mk, mv, f->n_meta ? f->n_meta : 1, err))
        goto out;
    j->r->n_shards++;
    j->r->n_tensors += (int)n_out;
    j->r->n_merged += merged;
    j->r->n_dequantized += dequantized;
    j->r->n_dropped += dropped;
    j->r->bytes_written += bytes;
    j->out_total_bytes += bytes;
    if ((double)f->map_size > j->r->largest_shard_bytes)
        j->r->largest_shard_bytes = (double)f->map_size;
    if (j->log && j->dequant)
        fprintf(j->log, "wrote %s: %zu tensor%s (%d merged, %d NF4 linear%s dequantized, %d "
                "bitsandbytes tensor%s dropped), %.1f MiB\n", fname, n_out,
                lc_plural((long long)n_out), merged, dequantized, lc_plural(dequantized),
                dropped, lc_plural(dropped), bytes / 1048576.0);
    else if (j->log)
        fprintf(j->log, "wrote %s: %zu tensor%s (%d merged), %.1f MiB\n", fname, n_out,
                lc_plural((long long)n_out), merged, bytes / 1048576.0);
    rc = 0;
out:
    for (size_t i = 0; bufs && i < n; i++)
        free(bufs[i]);
    /* the shard's input pages are not needed again: drop them from RSS */
    if (f->map && f->map_size)
        madvise(f->map, f->map_size, MADV_DONTNEED);
    free(bufs);
    free(shapes);
    free(entries);
    free(order);
    return rc;
}

/* config.json, edited: dtype / torch_dtype set to the forced dtype; when
 * dequantizing, without quantization_config. */
static void edit_config(merge_job *j, cJSON *root)
{
    if (j->dequant) { /* the output is a plain dense model */
        cJSON_DeleteItemFromObjectCaseSensitive(root, "quantization_config");
        cJSON_DeleteItemFromObjectCaseSensitive(root, "_pre_quantization_dtype");
    }
    if (j->out_dtype != LC_MERGE_DTYPE_AUTO) {
        const char *name = lc_dtype_torch_name((lc_dtype)j->out_dtype);
        bool set = false;
        const char *keys[2] = {"dtype", "torch_dtype"};
        for (int k = 0; k < 2; k++)
            if (cJSON_GetObjectItemCaseSensitive(root, keys[k])) {
                cJSON_ReplaceItemInObjectCaseSensitive(root, keys[k], cJSON_CreateString(name));
                set = true;
            }
        if (!set)
            cJSON_AddStringToObject(root, "torch_dtype", name);
    }
}

/* The index, edited: metadata.total_size updated for the new dtype, and the
 * dropped bitsandbytes companions taken out of weight_map. */
static void edit_index(merge_job *j, cJSON *root)
{
    cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    for (cJSON *it = cJSON_IsObject(wm) ? wm->child : NULL, *next; it; it = next) {
        next = it->next;
        if (it->string && is_companion(j, it->string))
            cJSON_Delete(cJSON_DetachItemViaPointer(wm, it));
    }
    cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    if (!cJSON_IsObject(meta)) {
        cJSON_DeleteItemFromObjectCaseSensitive(root, "metadata");
        meta = cJSON_AddObjectToObject(root, "metadata");
    }
    char num[32];
    snprintf(num, sizeof num, "%.0f", j->out_total_bytes);
    cJSON_DeleteItemFromObjectCaseSensitive(meta, "total_size");
    cJSON_AddRawToObject(meta, "total_size", num); /* exact integer, never 1e+10 */
}

/* Copies the JSON file `name` of the base model into the output, through
 * edit when `change` (a missing file is fine when `optional`). */
static int copy_json(merge_job *j, const char *name, bool optional, bool change,
                     void (*edit)(merge_job *, cJSON *), lc_error *err)
{
    char src[4200], dst[4400];
    if (join(src, sizeof src, j->o->base_dir, name, err) ||
        join(dst, sizeof dst, j->stage, name, err))
        return -1;
    if (optional && !lc_path_exists(src))
        return 0;
    size_t len;
    char *text = lc_read_file(src, MAX_SMALL_FILE, &len, err);
    if (!text)
        return -1;
    int rc;
    if (!change) {
        rc = lc_write_file_atomic(dst, text, len, err);
    } else {
        cJSON *root = cJSON_ParseWithLength(text, len);
        if (!cJSON_IsObject(root)) {
            cJSON_Delete(root);
            free(text);
            return lc_error_set(err, "%s: not a JSON object", src);
        }
        edit(j, root);
        char *out = cJSON_Print(root);
        cJSON_Delete(root);
        rc = out ? lc_write_file_atomic(dst, out, strlen(out), err)
                 : lc_error_set(err, "out of memory writing %s", dst);
        free(out);
    }
    free(text);
    if (rc == 0) {
        j->r->n_files_copied++;
        append_name(j->r->copied, sizeof j->r->copied, name);
    }
    return rc;
}

static int write_config(merge_job *j, lc_error *err)
{
    bool change = j->dequant || (j->out_dtype != LC_MERGE_DTYPE_AUTO &&
                                 (lc_dtype)j->out_dtype != j->cfg.dtype);
    return copy_json(j, "config.json", false, change, edit_config, err);
}

static int write_index(merge_job *j, lc_error *err)
{
    return copy_json(j, INDEX_NAME, true, j->dtype_changed || j->dequant, edit_index, err);
}

/* Tokenizer, generation and other small files of the base directory
 * (lc_is_side_file), byte for byte. */
static int copy_small_files(merge_job *j, lc_error *err)
{
    DIR *d = opendir(j->o->base_dir);
    if (!d)
        return lc_error_set(err, "%s: cannot list: %s", j->o->base_dir, strerror(errno));
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        const char *name = e->d_name;
        bool want = lc_is_side_file(name);
        for (size_t s = 0; s < j->mf.n_shards; s++)
            want &= strcmp(name, j->mf.shard_names[s]) != 0;
        if (!want)
            continue;
        char src[4200], dst[4400];
        struct stat st;
        if (join(src, sizeof src, j->o->base_dir, name, err) ||
            join(dst, sizeof dst, j->stage, name, err)) {
            rc = -1;
            break;
        }
        if (stat(src, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > MAX_SMALL_FILE)
            continue;
        size_t len;
        char *text = lc_read_file(src, MAX_SMALL_FILE, &len, err);
        if (!text || lc_write_file_atomic(dst, text, len, err))
            rc = -1;
        free(text);
        if (rc == 0) {
            j->r->n_files_copied++;
            append_name(j->r->copied, sizeof j->r->copied, name);
        }
    }
    closedir(d);
    return rc;
}

/* ------------------------------------------------------------------ */
/* verification                                                        */

/* The type a matrix is stored in, as a ggml type id: F32, F16, BF16 (a
 * safetensors tensor or a GGUF one) or a GGUF tensor's quantized type;
 * NF4 (no ggml id) as UINT32_MAX, unlike any type a merge writes. */
static uint32_t weight_type(const lc_weight *w)
{
    if (w->nf4)
        return UINT32_MAX;
    if (w->ggml)
        return w->ggml->type;
    return w->dtype == LC_DTYPE_BF16 ? LC_GGML_BF16
         : w->dtype == LC_DTYPE_F16  ? LC_GGML_F16 : LC_GGML_F32;
}

/* Unit roundoff of the type a matrix of the merged model is stored in: the
 * largest relative error of rounding to it (0 for F32, whose rounding is
 * the merge's own f32 arithmetic, bounded separately). Q8_0 (gguf-py's
 * quantizer, the only quantized type a merge writes): relative to the
 * largest |x| of the 32-element block, d/2 with d = max|x| / 127, plus the
 * f16 rounding of d for |q| ≤ 127 (127 · d · 2^-11). Quantized types a
 * merge never writes (an untouched Q4_K tensor, equal in base and output)
 * count as 0. */
static double type_roundoff(uint32_t t)
{
    return t == LC_GGML_BF16 ? 0x1p-8 : t == LC_GGML_F16 ? 0x1p-11
         : t == LC_GGML_Q8_0 ? 1.0 / 254 + 0x1p-11 : 0.0;
}

/* The smallest positive value of the type, which bounds the absolute
 * rounding error among subnormals (Q8_0: 127 times f16's, via its scale). */
static double type_tiny(uint32_t t)
{
    return t == LC_GGML_BF16 ? 0x1p-133 : t == LC_GGML_F16 ? 0x1p-24
         : t == LC_GGML_Q8_0 ? 127 * 0x1p-24 : 0x1p-149;
}

/* The element of the merged model farthest outside its rounding bound. */
typedef struct weight_worst {
    double ratio;              /* |got − want| / bound (> 1: wrong; NaN counts as infinite) */
    double got, want, bound;
    int64_t row, col;
    char name[96];
    uint32_t type;             /* ggml type id of the merged matrix */
} weight_worst;

/* Compares one matrix of the merged model with base + scale · B@A (B, A
 * NULL: with the base alone), element by element, in double. The merge
 * rounds three times: s·(B@A) to f32, W + that to f32 (u32 = 2^-24 each)
 * and the result to the output dtype (its unit roundoff u); lc_lora's f32
 * scale may differ from the merge's double one by another u32. So
 *   |got − want| ≤ (3·u32 + u) · (|W| + s·Σ_k |B_ik·A_kj|) · (1 + 2^-10) + tiny
 * holds for a correct merge whatever the values (tiny: the subnormal step),
 * while one element off by more than its own rounding fails. In Q8_0 the
 * rounding is relative to the block's largest element, so u · max over the
 * 32-element block of (|W| + s·Σ_k |B_ik·A_kj|) bounds it instead. */
static void compare_matrix(const char *name, const lc_weight *base, const lc_weight *merged,
                           const lc_lora_adapter *ad, double scale, weight_worst *worst,
                           bool *oom)
{
    const int64_t nr = base->rows, nc = base->cols, rk = ad ? ad->A->shape[0] : 0;
    const lc_real *A = ad ? ad->A->data : NULL, *B = ad ? ad->B->data : NULL;
    const uint32_t mt = weight_type(merged);
    const bool blockwise = mt == LC_GGML_Q8_0;
    const double u = type_roundoff(mt);
    const double rel = (3 * 0x1p-24 + (blockwise ? 0 : u)) * (1 + 0x1p-10);
    const double tiny = type_tiny(mt) + 0x1p-148;
#pragma omp parallel
    {
        lc_real *w = malloc((size_t)nc * sizeof *w), *m = malloc((size_t)nc * sizeof *m);
        double *acc = malloc((size_t)nc * sizeof *acc), *mag = malloc((size_t)nc * sizeof *mag);
        weight_worst local = {.ratio = 0};
        if (!w || !m || !acc || !mag) {
#pragma omp atomic write
            *oom = true;
        }
#pragma omp for schedule(static)
        for (int64_t i = 0; i < nr; i++) {
            if (!w || !m || !acc || !mag)
                continue;
            lc_weight_rows_to_real(base, i, i + 1, w);
            lc_weight_rows_to_real(merged, i, i + 1, m);
            for (int64_t c = 0; c < nc; c++)
                acc[c] = mag[c] = 0;
            for (int64_t k = 0; k < rk; k++) {
                const double b = (double)B[i * rk + k];
                const lc_real *a = A + k * nc;
                for (int64_t c = 0; c < nc; c++) {
                    acc[c] += b * (double)a[c];
                    mag[c] += fabs(b * (double)a[c]);
                }
            }
            /* DoRA: the row scaled by m / ‖W + s·B·A‖ (a few more roundings:
             * the norm of the float sum, the factor) */
            double g = 1, grel = 0;
            if (ad && ad->m) {
                double ss = 0;
                for (int64_t c = 0; c < nc; c++)
                    ss += ((double)w[c] + scale * acc[c]) * ((double)w[c] + scale * acc[c]);
                g = (double)ad->m->data[i] / sqrt(ss);
                grel = 8 * 0x1p-24;
            }
            for (int64_t c = 0; c < nc; c++)
                mag[c] = fabs((double)w[c]) + fabs(scale) * mag[c];
            double block_max = 0;
            for (int64_t c = 0; c < nc; c++) {
                if (blockwise && c % 32 == 0) {
                    block_max = 0;
                    for (int64_t k = c; k < c + 32 && k < nc; k++)
                        block_max = fmax(block_max, mag[k]);
                    block_max *= u * (1 + 0x1p-10);
                }
                const double want = g * ((double)w[c] + scale * acc[c]);
                const double bound = ((rel + grel) * mag[c] + block_max) * fabs(g) + tiny;
                const double d = fabs((double)m[c] - want);
                const double ratio = isnan(d) ? INFINITY : d / bound;
                if (ratio > local.ratio)
                    local = (weight_worst){ratio, (double)m[c], want, bound, i, c, "", 0};
            }
        }
#pragma omp critical(verify_worst)
        if (local.ratio > worst->ratio) {
            *worst = local;
            snprintf(worst->name, sizeof worst->name, "%s", name);
            worst->type = mt;
        }
        free(w);
        free(m);
        free(acc);
        free(mag);
    }
}

/* Every linear of every block (with the adapter's update where there is one)
 * and the embeddings (and an untied lm_head) of the merged model against the
 * base; the worst element in *worst; -1 only when out of memory or a shape
 * differs. */
static int check_weights(const lc_lora *lora, const lc_model *base, const lc_model *merged,
                         lc_merge_report *r, weight_worst *worst, lc_error *err)
{
    bool oom = false;
    int n = 0;
    char name[96];
    memset(worst, 0, sizeof *worst);
    const lc_family *f = lc_family_of(base->cfg.arch);
    for (int l = 0; l < base->cfg.n_layers; l++)
        for (int e = 0; f->moe && e < base->cfg.n_experts; e++)
            for (int i = 0; i < 3; i++) {
                lc_module m = i < 2 ? LC_MOD_EXPERTS_GATE_UP : LC_MOD_EXPERTS_DOWN;
                const lc_lora_adapter *ad = lc_lora_expert(lora, l, m, e);
                lc_tensor bv;
                lc_lora_adapter part;
                if (ad)
                    part = expert_part(ad, i, base->cfg.moe_intermediate_size, &bv);
                lc_family_expert_weight_name(f, name, sizeof name, l, e, i);
                compare_matrix(name, &base->layers[l].experts[3 * e + i],
                               &merged->layers[l].experts[3 * e + i], ad ? &part : NULL,
                               (double)lora->scale, worst, &oom);
                n++;
            }
    for (int l = 0; l < base->cfg.n_layers; l++)
        for (int i = 0; i < f->n_modules; i++) {
            const lc_module m = f->modules[i];
            if (lc_module_is_expert(m))
                continue;
            const lc_weight *b = &base->layers[l].proj[m], *w = &merged->layers[l].proj[m];
            snprintf(name, sizeof name, "model.layers.%d.%s.%s.weight", l, lc_module_parent(m),
                     lc_module_name(m));
            if (b->rows != w->rows || b->cols != w->cols)
                return lc_error_set(err, "verification: %s is [%lld,%lld] in the merged model, "
                                    "[%lld,%lld] in the base", name, (long long)w->rows,
                                    (long long)w->cols, (long long)b->rows, (long long)b->cols);
            compare_matrix(name, b, w, lc_lora_get(lora, l, m), (double)lora->scale,
                           worst, &oom);
            n++;
        }
    const lc_weight *bw[2] = {&base->embed, &base->lm_head};
    const lc_weight *mw[2] = {&merged->embed, &merged->lm_head};
    const char *names[2] = {"model.embed_tokens.weight", "lm_head.weight"};
    for (int k = 0; k < (base->cfg.tie_word_embeddings ? 1 : 2); k++) {
        if (bw[k]->rows != mw[k]->rows || bw[k]->cols != mw[k]->cols)
            return lc_error_set(err, "verification: %s differs in shape from the base's",
                                names[k]);
        compare_matrix(names[k], bw[k], mw[k], NULL, 0, worst, &oom);
        n++;
    }
    if (oom)
        return lc_error_set(err, "verification: out of memory comparing the weights");
    r->verify_weights_checked = n;
    r->verify_weight_worst = worst->ratio;
    return 0;
}

/* A fixed probe batch through base + adapter and through the merged model
 * as written; then every matrix element by element (check_weights).
 *
 * The logits differ even for a correct merge: the merged model computes
 * x·W'ᵀ where base + adapter computes x·Wᵀ + s·(x·Aᵀ)·Bᵀ (another rounding
 * order in f32), and W' (with every other tensor, when --dtype converts
 * them) is rounded to the output dtype, whose unit roundoff u is 2^-8 for
 * BF16 and 2^-11 for F16. Both scale with the logits, so the tolerance is
 *   (LC_MERGE_TOL_ARITH · 2^-24 + LC_MERGE_TOL_ROUND · u) · max|logit|.
 * Measured on correct merges of the four test fixtures (llama, mistral,
 * qwen2, qwen3; adapter_init and adapter_step3, base in f32 and in the
 * output dtype) and the quickstart model with a trained adapter, the
 * largest difference is 24.5 · 2^-24 · max|logit| for f32 output (qwen3),
 * 8.7 · 2^-8 (qwen3: 3.4% of max|logit|) for BF16 and 6.2 · 2^-11 for F16.
 * LC_MERGE_TOL_ARITH 256 is 10x the f32 figure; LC_MERGE_TOL_ROUND 16 is
 * ~2x the rounded ones, no more: deeper real models round more, and a
 * correct merge must not fail. That leaves BF16 logits blind to a wrong
 * adapter whose effect is below ~6% of max|logit|; the element-wise check
 * bounds each merged weight by its own rounding and catches it. */
int lc_merge_verify(const char *base_path, const char *merged_path, const lc_lora *lora,
                    lc_merge_report *r, lc_error *err)
{
    lc_model base = {0}, merged = {0};
    lc_arena arena = {0};
    lc_tape tape = {0};
    bool tape_ok = false;
    lc_real *l1 = NULL, *l2 = NULL;
    int32_t *ids = NULL, *tg = NULL, *pos = NULL;
    int rc = -1;
    if (lc_model_load(&base, base_path, err)) {
        lc_error_prefix(err, "verification: loading the base model");
        goto out;
    }
    if (lc_model_load(&merged, merged_path, err)) {
        lc_error_prefix(err, "verification: loading the merged model");
        goto out;
    }
    const int64_t B = LC_MERGE_PROBE_ROWS;
    int64_t T = LC_MERGE_PROBE_TOKENS;
    if (T > base.cfg.max_position_embeddings)
        T = base.cfg.max_position_embeddings;
    const int64_t N = B * T, V = base.cfg.vocab_size;
    lc_memory_plan plan; /* a training step's over the base: a bound on the logits' */
    if (lc_model_prepare_rope(&base, T, err) || lc_model_prepare_rope(&merged, T, err) ||
        lc_memory_plan_cpu(&base, lora, B, T, &plan, err) ||
        lc_arena_init(&arena, "verify", plan.arena_bytes, err))
        goto out;
    if (lc_tape_init(&tape, &arena, plan.grad_bytes, err))
        goto out;
    tape_ok = true;
    tape.max_rows = N;
    l1 = malloc((size_t)(N * V) * sizeof *l1);
    l2 = malloc((size_t)(N * V) * sizeof *l2);
    ids = malloc((size_t)N * sizeof *ids);
    tg = malloc((size_t)N * sizeof *tg);
    pos = malloc((size_t)N * sizeof *pos);
    if (!l1 || !l2 || !ids || !tg || !pos) {
        lc_error_set(err, "verification: out of memory for %lld x %lld logits", (long long)N,
                     (long long)V);
        goto out;
    }
    uint64_t rng = 0x6d65726765ull; /* fixed: "merge" */
    for (int64_t i = 0; i < N; i++) {
        ids[i] = (int32_t)(lc_rng_next(&rng) % (uint64_t)V);
        tg[i] = LC_LABEL_IGNORE;
        pos[i] = (int32_t)(i % T);
    }
    lc_batch b = {B, T, ids, tg, pos, NULL};
    lc_model_logits(&base, &tape, &b, lora, l1, NULL, NULL);
    lc_tape_reset(&tape);
    lc_model_logits(&merged, &tape, &b, NULL, l2, NULL, NULL);
    lc_tape_reset(&tape);
    double maxd = 0, maxl = 0;
    for (int64_t i = 0; i < N * V; i++) {
        double d = fabs((double)l1[i] - (double)l2[i]);
        if (!(d <= maxd)) /* NaN counts as infinitely different */
            maxd = isnan(d) ? INFINITY : d;
        double a = fabs((double)l1[i]);
        if (a > maxl)
            maxl = a;
    }
    /* the coarsest type among the merged model's matrices that differ from
     * the base's: adapted, or stored in another type */
    uint32_t dt = LC_GGML_F32;
    const lc_weight *bm[2] = {&base.embed, &base.lm_head}, *mm[2] = {&merged.embed,
                                                                      &merged.lm_head};
    for (int l = -1; l < merged.cfg.n_layers; l++)
        for (int m = 0; m < (l < 0 ? 2 : LC_MOD_COUNT); m++) {
            if (l >= 0 && !lc_model_has_module(&merged.cfg, m))
                continue;
            const lc_weight *bw = l < 0 ? bm[m] : &base.layers[l].proj[m];
            const lc_weight *mw = l < 0 ? mm[m] : &merged.layers[l].proj[m];
            const uint32_t t = weight_type(mw);
            bool differs = t != weight_type(bw) || (l >= 0 && lc_lora_get(lora, l, (lc_module)m));
            if (differs && type_roundoff(t) > type_roundoff(dt))
                dt = t;
        }
    const double u = type_roundoff(dt);
    r->verify_max_diff = maxd;
    r->verify_max_logit = maxl;
    r->verify_tolerance = (LC_MERGE_TOL_ARITH * 0x1p-24 + LC_MERGE_TOL_ROUND * u) * maxl;
    if (u > 0)
        snprintf(r->verify_rule, sizeof r->verify_rule, "(%g x 2^-24 + %g x %s) x max|logit|, "
                 "%s output", LC_MERGE_TOL_ARITH, LC_MERGE_TOL_ROUND,
                 dt == LC_GGML_BF16 ? "2^-8" : dt == LC_GGML_F16 ? "2^-11" : "(1/254 + 2^-11)",
                 dt == LC_GGML_BF16 ? "bf16" : dt == LC_GGML_F16 ? "f16" : "q8_0");
    else
        snprintf(r->verify_rule, sizeof r->verify_rule, "%g x 2^-24 x max|logit|, f32 output",
                 LC_MERGE_TOL_ARITH);
    if (!(maxd <= r->verify_tolerance)) {
        lc_error_set(err, "verification failed: the largest logit difference between base + "
                     "adapter and the merged model is %.6g, above the tolerance %.3g (%s) on a "
                     "%lldx%lld-token probe batch; the merged model is wrong",
                     maxd, r->verify_tolerance, r->verify_rule, (long long)B, (long long)T);
        goto out;
    }
    weight_worst ww;
    if (check_weights(lora, &base, &merged, r, &ww, err))
        goto out;
    if (!(ww.ratio <= 1.0)) {
        lc_error_set(err, "verification failed: %s[%lld,%lld] of the merged model is %.9g, but "
                     "base + scaling x B@A is %.9g: %.3g apart, %.3g times what rounding to %s "
                     "can explain (the largest logit difference, %.3g, is within its tolerance "
                     "%.3g); the merged model is wrong", ww.name, (long long)ww.row,
                     (long long)ww.col, ww.got, ww.want, fabs(ww.got - ww.want), ww.ratio,
                     lc_ggml_type_get(ww.type)->name, maxd, r->verify_tolerance);
        goto out;
    }
    r->verified = true;
    rc = 0;
out:
    free(l1);
    free(l2);
    free(ids);
    free(tg);
    free(pos);
    if (tape_ok)
        lc_tape_free(&tape);
    if (arena.base)
        lc_arena_free(&arena);
    lc_model_free(&merged);
    lc_model_free(&base);
    return rc;
}

/* ------------------------------------------------------------------ */
/* output directory                                                    */

static int make_stage(merge_job *j, const char *out, lc_error *err)
{
    if (lc_stage_make(out, j->stage, sizeof j->stage, err))
        return lc_error_prefix(err, "--out");
    j->stage_made = true;
    return 0;
}

/* Renames the finished staging directory to out (replacing an old out). */
static int finish_output(merge_job *j, const char *out, bool replace, lc_error *err)
{
    if (lc_stage_finish(j->stage, out, replace, err))
        return -1;
    j->stage_made = false;
    return 0;
}

/* ------------------------------------------------------------------ */
/* lc_merge, step by step                                              */

/* o->out_dir without trailing slashes into out[n]. */
static int output_path(const lc_merge_opts *o, char *out, size_t n, lc_error *err)
{
    size_t ol = strlen(o->out_dir);
    if (ol == 0 || ol >= n)
        return lc_error_set(err, "--out: bad path '%s'", o->out_dir);
    memcpy(out, o->out_dir, ol + 1);
    while (ol > 1 && out[ol - 1] == '/')
        out[--ol] = '\0';
    return 0;
}

/* The output is refused when it exists, unless --force (and never when it
 * holds the inputs); *exists says whether it is there to be replaced. */
static int check_output(const lc_merge_opts *o, const char *out, bool *exists, lc_error *err)
{
    struct stat st;
    *exists = lstat(out, &st) == 0;
    if (*exists && !o->force)
        return lc_error_set(err, "%s already exists: choose another --out, or pass --force to "
                            "replace it", out);
    if (*exists && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode))
        return lc_error_set(err, "%s exists and is not a directory: remove it or choose "
                            "another --out", out);
    const char *inputs[2] = {o->base_dir, o->adapter_dir};
    if (*exists)
        return lc_stage_check_replace(out, "--out", inputs, 2, err);
    return 0;
}

/* The base's config.json, and what a quantized base means for the output
 * dtype (refused without --dequantize). */
static int read_base_config(merge_job *j, lc_error *err)
{
    const lc_merge_opts *o = j->o;
    if (lc_model_config_load(&j->cfg, o->base_dir, err))
        return lc_error_prefix(err, "base model");
    if (j->cfg.prequantized_bnb4 && !o->dequantize)
        return lc_error_set(err, "%s is a quantized model (config.json has a bitsandbytes 4-bit "
                            "quantization_config): pass --dequantize to dequantize its NF4 "
                            "linears and write a dense model (BF16 unless --dtype says "
                            "otherwise), or merge into the original unquantized model",
                            o->base_dir);
    j->dequant = o->dequantize && j->cfg.prequantized_bnb4;
    j->out_dtype = o->dtype;
    if (j->dequant && j->out_dtype == LC_MERGE_DTYPE_AUTO)
        j->out_dtype = LC_DTYPE_BF16; /* packed codes have no float dtype to keep */
    j->r->out_dtype = j->out_dtype;
    if (j->log && o->dequantize && !j->dequant)
        fprintf(j->log, "--dequantize: %s is not quantized (no quantization_config in "
                "config.json): nothing to dequantize, merging as usual\n", o->base_dir);
    if (j->log && j->dequant)
        fprintf(j->log, "dequantizing NF4 linears to %s\n",
                lc_dtype_name((lc_dtype)j->out_dtype));
    return 0;
}

int lc_merge_load_adapter(const lc_model_config *cfg, const char *base_dir,
                          const char *adapter_dir, lc_lora *lora, double *scale, lc_error *err)
{
    if (check_adapter(adapter_dir, cfg, err) || lc_lora_load_peft(lora, cfg, adapter_dir, err))
        return lc_error_prefix(err, "adapter %s does not fit base model %s", adapter_dir,
                               base_dir);
    *scale = lora->cfg.use_rslora ? lora->cfg.alpha / sqrt((double)lora->cfg.r)
                                  : lora->cfg.alpha / (double)lora->cfg.r;
    return 0;
}

int lc_merge_linear(const char *name, const lc_weight *w, const lc_lora_adapter *ad,
                    double scale, lc_dtype out_dt, void **out, lc_error *err)
{
    return merge_tensor(name, w, ad, scale, out_dt, 0.0f, out, err);
}

/* The adapter, checked against the base and loaded, and its scaling. */
static int load_adapter(merge_job *j, lc_error *err)
{
    if (lc_merge_load_adapter(&j->cfg, j->o->base_dir, j->o->adapter_dir, &j->lora, &j->scale,
                              err))
        return -1;
    j->lora_loaded = true;
    j->r->dora = j->lora.cfg.use_dora;
    return 0;
}

/* Every shard, the index, config.json and the small files, into the
 * staging directory (made first). */
static int write_stage(merge_job *j, const char *out, lc_error *err)
{
    if (make_stage(j, out, err))
        return -1;
    for (size_t s = 0; s < j->mf.n_shards; s++)
        if (write_shard(j, s, err))
            return -1;
    return write_index(j, err) || write_config(j, err) || copy_small_files(j, err) ? -1 : 0;
}

/* After a failed write: removes the staging directory and says so in err. */
static void discard_partial(merge_job *j, const char *out, bool existed, lc_error *err)
{
    size_t n = strlen(err->msg);
    if (lc_remove_tree(j->stage) == 0)
        snprintf(err->msg + n, sizeof err->msg - n, "; the partial output was removed (%s%s)",
                 out, existed ? " is unchanged" : " was not created");
    else
        snprintf(err->msg + n, sizeof err->msg - n,
                 "; removing the partial output %s failed too: %s", j->stage, strerror(errno));
    j->stage_made = false;
}

/* The probe batch through base + adapter and the staged model; on failure
 * the staging directory is removed and err says nothing was written. */
static int verify_stage(merge_job *j, const char *out, bool existed, lc_error *err)
{
    double t1 = lc_now_s();
    int rc = lc_merge_verify(j->o->base_dir, j->stage, &j->lora, j->r, err);
    j->r->seconds_verify = lc_now_s() - t1;
    if (rc && lc_remove_tree(j->stage) == 0) {
        j->stage_made = false;
        size_t n = strlen(err->msg);
        snprintf(err->msg + n, sizeof err->msg - n,
                 " (nothing was written to %s%s; --no-verify skips this check)", out,
                 existed ? ", which is unchanged" : "");
    }
    return rc;
}

static void job_free(merge_job *j)
{
    if (j->stage_made)
        lc_remove_tree(j->stage);
    j->r->peak_rss_total = lc_peak_rss_bytes();
    if (j->mf_open)
        lc_model_files_close(&j->mf);
    if (j->lora_loaded)
        lc_lora_free(&j->lora);
    free(j->targets);
    free(j->expert_targets);
    free(j->expert_ads);
    free(j->expert_b);
    free(j->q);
    free(j->lin);
}

int lc_merge(const lc_merge_opts *o, lc_merge_report *r, FILE *log, lc_error *err)
{
    memset(r, 0, sizeof *r);
    merge_job j;
    memset(&j, 0, sizeof j);
    j.o = o;
    j.r = r;
    j.log = log;
    const double t0 = lc_now_s();
    if (lc_gguf_model_is_gguf(o->base_dir))
        return lc_gguf_merge(o, r, log, err); /* a GGUF file in, a GGUF file out */
    if (o->gguf_type)
        return lc_error_set(err, "--type is for a GGUF base (--base model.gguf); %s is a "
                            "Hugging Face model directory: use --dtype", o->base_dir);
    if (o->dtype != LC_MERGE_DTYPE_AUTO && !is_float((lc_dtype)o->dtype))
        return lc_error_set(err, "--dtype: expected auto, bf16, f16 or f32");
    char out[4096];
    bool exists;
    if (output_path(o, out, sizeof out, err) || check_output(o, out, &exists, err) ||
        read_base_config(&j, err))
        return -1;
    int rc = -1;
    if (load_adapter(&j, err))
        goto out;
    if (lc_model_files_open(&j.mf, o->base_dir, err)) {
        lc_error_prefix(err, "base model");
        goto out;
    }
    j.mf_open = true;
    if (find_targets(&j, err))
        goto out;
    if (write_stage(&j, out, err)) {
        if (j.stage_made)
            discard_partial(&j, out, exists, err);
        goto out;
    }
    r->peak_rss_merge = lc_peak_rss_bytes();
    r->seconds_merge = lc_now_s() - t0;
    lc_model_files_close(&j.mf);
    j.mf_open = false;
    if ((o->verify && verify_stage(&j, out, exists, err)) ||
        finish_output(&j, out, exists, err))
        goto out;
    rc = 0;
out:
    job_free(&j);
    return rc;
}

/* quantize.c — bitsandbytes 4-bit checkpoint reading and writing (see
 * quantize.h). */
#include "train/quantize.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/fsutil.h"
#include "train/lora.h"
#include "train/model.h"

static const lc_st_tensor *need(const lc_model_files *mf, const char *name, lc_dtype dt,
                                uint64_t numel, lc_error *err)
{
    const lc_st_tensor *t = lc_model_files_find(mf, name);
    if (!t) {
        lc_error_set(err, "%s: missing tensor '%s' of a bitsandbytes 4-bit checkpoint", mf->dir,
                     name);
        return NULL;
    }
    if (t->dtype != dt || (numel && t->numel != numel)) {
        lc_error_set(err, "%s: tensor '%s' is %s with %llu values, expected %s with %llu",
                     mf->dir, name, lc_dtype_name(t->dtype), (unsigned long long)t->numel,
                     lc_dtype_name(dt), (unsigned long long)numel);
        return NULL;
    }
    return t;
}

int lc_bnb4_view(const lc_model_files *mf, const char *name, int64_t rows, int64_t cols,
                 lc_nf4 *q, lc_error *err)
{
    char key[512];
    memset(q, 0, sizeof *q);
    snprintf(key, sizeof key, "%s.weight.quant_state.bitsandbytes__nf4", name);
    const lc_st_tensor *st = lc_model_files_find(mf, key);
    if (!st) {
        snprintf(key, sizeof key, "%s.weight.quant_state.bitsandbytes__fp4", name);
        if (lc_model_files_find(mf, key))
            return lc_error_set(err, "%s: '%s' is FP4-quantized; only NF4 is supported", mf->dir,
                                name);
        return lc_error_set(err, "%s: missing '%s.weight.quant_state.bitsandbytes__nf4' (not a "
                            "bitsandbytes NF4 checkpoint?)", mf->dir, name);
    }
    if (st->dtype != LC_DTYPE_U8 || st->numel > 65536)
        return lc_error_set(err, "%s: '%s' must be U8 JSON bytes (at most 64 KiB)", mf->dir, key);
    cJSON *js = cJSON_ParseWithLength(st->data, st->numel);
    int rc = -1;
    const cJSON *qt = cJSON_GetObjectItemCaseSensitive(js, "quant_type");
    const cJSON *bs = cJSON_GetObjectItemCaseSensitive(js, "blocksize");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(js, "shape");
    const cJSON *nbs = cJSON_GetObjectItemCaseSensitive(js, "nested_blocksize");
    const cJSON *noff = cJSON_GetObjectItemCaseSensitive(js, "nested_offset");
    if (!cJSON_IsObject(js) || !cJSON_IsString(qt) || strcmp(qt->valuestring, "nf4") != 0) {
        lc_error_set(err, "%s: '%s': expected a JSON object with quant_type \"nf4\"", mf->dir, key);
        goto out;
    }
    if (!cJSON_IsNumber(bs) || bs->valuedouble < 16 || bs->valuedouble > 4096 ||
        bs->valuedouble != floor(bs->valuedouble)) {
        lc_error_set(err, "%s: '%s': blocksize must be an integer in 16..4096", mf->dir, key);
        goto out;
    }
    if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) != 2 ||
        cJSON_GetArrayItem(shape, 0)->valuedouble != (double)rows ||
        cJSON_GetArrayItem(shape, 1)->valuedouble != (double)cols) {
        lc_error_set(err, "%s: '%s': shape must be [%lld, %lld]", mf->dir, key, (long long)rows,
                     (long long)cols);
        goto out;
    }
    if ((rows * cols) % 2) {
        lc_error_set(err, "%s: '%s' has an odd number of values", mf->dir, name);
        goto out;
    }
    q->rows = rows;
    q->cols = cols;
    q->blocksize = (int64_t)bs->valuedouble;
    int64_t nb = lc_nf4_blocks(rows, cols, q->blocksize);
    snprintf(key, sizeof key, "%s.weight", name);
    const lc_st_tensor *w = need(mf, key, LC_DTYPE_U8, (uint64_t)(rows * cols / 2), err);
    if (!w)
        goto out;
    q->codes = w->data;
    snprintf(key, sizeof key, "%s.weight.quant_map", name);
    const lc_st_tensor *qm = need(mf, key, LC_DTYPE_F32, 16, err);
    if (!qm)
        goto out;
    for (int i = 0; i < 16; i++)
        if (fabsf(((const float *)qm->data)[i] - lc_nf4_code[i]) > 1e-6f) {
            lc_error_set(err, "%s: '%s' is not the NF4 code book", mf->dir, key);
            goto out;
        }
    snprintf(key, sizeof key, "%s.weight.absmax", name);
    const lc_st_tensor *am = lc_model_files_find(mf, key);
    if (am && am->dtype == LC_DTYPE_U8) {
        if (!am || am->numel != (uint64_t)nb) {
            lc_error_set(err, "%s: '%s' must hold %lld values", mf->dir, key, (long long)nb);
            goto out;
        }
        if (!cJSON_IsNumber(nbs) || nbs->valuedouble < 1 || nbs->valuedouble > 65536 ||
            !cJSON_IsNumber(noff) || !isfinite(noff->valuedouble)) {
            lc_error_set(err, "%s: '%s.weight.quant_state...': nested_blocksize and "
                         "nested_offset are required with double quantization", mf->dir, name);
            goto out;
        }
        q->absmax_q = am->data;
        q->nested_blocksize = (int64_t)nbs->valuedouble;
        q->offset = (float)noff->valuedouble;
        int64_t nn = (nb + q->nested_blocksize - 1) / q->nested_blocksize;
        snprintf(key, sizeof key, "%s.weight.nested_absmax", name);
        const lc_st_tensor *na = need(mf, key, LC_DTYPE_F32, (uint64_t)nn, err);
        snprintf(key, sizeof key, "%s.weight.nested_quant_map", name);
        const lc_st_tensor *nm = na ? need(mf, key, LC_DTYPE_F32, 256, err) : NULL;
        if (!nm)
            goto out;
        q->nested_absmax = na->data;
        q->nested_map = nm->data;
    } else {
        if (!(am = need(mf, key, LC_DTYPE_F32, (uint64_t)nb, err)))
            goto out;
        q->absmax = am->data;
    }
    rc = 0;
out:
    cJSON_Delete(js);
    return rc;
}

/* ---- lorac quantize ---- */

typedef struct out_list {
    lc_st_entry *e;
    char **names;
    void **owned;        /* buffers to free (shapes, JSON) */
    size_t n, cap, n_owned, cap_owned;
} out_list;

static void *own(out_list *o, void *p)
{
    if (o->n_owned == o->cap_owned) {
        o->cap_owned = o->cap_owned ? 2 * o->cap_owned : 64;
        o->owned = realloc(o->owned, o->cap_owned * sizeof *o->owned);
    }
    o->owned[o->n_owned++] = p;
    return p;
}

static void add(out_list *o, const char *name, lc_dtype dt, int ndim, const int64_t *shape,
                const void *data)
{
    if (o->n == o->cap) {
        o->cap = o->cap ? 2 * o->cap : 256;
        o->e = realloc(o->e, o->cap * sizeof *o->e);
        o->names = realloc(o->names, o->cap * sizeof *o->names);
    }
    int64_t *sh = own(o, malloc((size_t)(ndim ? ndim : 1) * sizeof(int64_t)));
    memcpy(sh, shape, (size_t)ndim * sizeof(int64_t));
    o->names[o->n] = own(o, strdup(name));
    o->e[o->n] = (lc_st_entry){o->names[o->n], dt, ndim, sh, data};
    o->n++;
}

static const char *dtype_torch_name(lc_dtype d)
{
    return d == LC_DTYPE_BF16 ? "bfloat16" : d == LC_DTYPE_F16 ? "float16" : "float32";
}

/* Python's repr(float): the fewest significant digits that read back to the
 * same double, positional for decimal exponents in [-4, 16), else
 * scientific ("1e-05"), and ".0" on integral values. */
static void python_float_repr(double v, char *buf, size_t n)
{
    int p = 1;
    for (; p < 17; p++) {
        snprintf(buf, n, "%.*e", p - 1, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    int x = atoi(strchr(buf, 'e') + 1);
    if (x < -4 || x >= 16) {
        snprintf(buf, n, "%.*e", p - 1, v);
        return;
    }
    snprintf(buf, n, "%.*f", p - 1 - x > 0 ? p - 1 - x : 0, v);
    if (!strchr(buf, '.'))
        strncat(buf, ".0", n - strlen(buf) - 1);
}

static void add_nf4(out_list *o, const char *prefix, const lc_nf4_store *s, lc_dtype orig)
{
    const lc_nf4 *q = &s->q;
    char name[512];
    int64_t nb = lc_nf4_blocks(q->rows, q->cols, q->blocksize);
    int64_t sh2[2] = {q->rows * q->cols / 2, 1}, sh1[1];
    snprintf(name, sizeof name, "%s.weight", prefix);
    add(o, name, LC_DTYPE_U8, 2, sh2, q->codes);
    sh1[0] = nb;
    snprintf(name, sizeof name, "%s.weight.absmax", prefix);
    add(o, name, q->absmax_q ? LC_DTYPE_U8 : LC_DTYPE_F32, 1, sh1,
        q->absmax_q ? (const void *)q->absmax_q : (const void *)q->absmax);
    sh1[0] = 16;
    snprintf(name, sizeof name, "%s.weight.quant_map", prefix);
    add(o, name, LC_DTYPE_F32, 1, sh1, lc_nf4_code);
    /* The quant state JSON exactly as bitsandbytes writes it (Python's
     * json.dumps: ", " / ": " separators, shortest round-trip floats), so
     * a checkpoint from lorac is byte-identical to one from bitsandbytes. */
    char *text = own(o, malloc(512));
    int n = snprintf(text, 512, "{\"quant_type\": \"nf4\", \"blocksize\": %lld, \"dtype\": \"%s\", "
                     "\"shape\": [%lld, %lld]", (long long)q->blocksize, dtype_torch_name(orig),
                     (long long)q->rows, (long long)q->cols);
    if (q->absmax_q) {
        sh1[0] = (nb + q->nested_blocksize - 1) / q->nested_blocksize;
        snprintf(name, sizeof name, "%s.weight.nested_absmax", prefix);
        add(o, name, LC_DTYPE_F32, 1, sh1, q->nested_absmax);
        sh1[0] = 256;
        snprintf(name, sizeof name, "%s.weight.nested_quant_map", prefix);
        add(o, name, LC_DTYPE_F32, 1, sh1, q->nested_map);
        char off[40];
        python_float_repr((double)q->offset, off, sizeof off);
        n += snprintf(text + n, 512 - (size_t)n, ", \"nested_blocksize\": %lld, \"nested_dtype\": "
                      "\"float32\", \"nested_offset\": %s", (long long)q->nested_blocksize, off);
    }
    snprintf(text + n, 512 - (size_t)n, "}");
    sh1[0] = (int64_t)strlen(text);
    snprintf(name, sizeof name, "%s.weight.quant_state.bitsandbytes__nf4", prefix);
    add(o, name, LC_DTYPE_U8, 1, sh1, text);
}

static void out_free(out_list *o)
{
    for (size_t i = 0; i < o->n_owned; i++)
        free(o->owned[i]);
    free(o->owned);
    free(o->e);
    free(o->names);
}

/* config.json + quantization_config. */
static int write_config(const char *in_dir, const char *out_dir, bool dq, lc_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", in_dir);
    cJSON *root = lc_read_json_object(path, 16u << 20, err);
    if (!root)
        return -1;
    cJSON_DeleteItemFromObjectCaseSensitive(root, "quantization_config");
    cJSON *qc = cJSON_AddObjectToObject(root, "quantization_config");
    cJSON_AddStringToObject(qc, "quant_method", "bitsandbytes");
    cJSON_AddBoolToObject(qc, "load_in_4bit", true);
    cJSON_AddBoolToObject(qc, "load_in_8bit", false);
    cJSON_AddStringToObject(qc, "bnb_4bit_quant_type", "nf4");
    cJSON_AddBoolToObject(qc, "bnb_4bit_use_double_quant", dq);
    cJSON_AddStringToObject(qc, "bnb_4bit_compute_dtype", "bfloat16");
    cJSON_AddStringToObject(qc, "bnb_4bit_quant_storage", "uint8");
    cJSON *skip = cJSON_AddArrayToObject(qc, "llm_int8_skip_modules");
    cJSON_AddItemToArray(skip, cJSON_CreateString("lm_head"));
    char *out = cJSON_Print(root);
    cJSON_Delete(root);
    snprintf(path, sizeof path, "%s/config.json", out_dir);
    int rc = lc_write_file_atomic(path, out, strlen(out), err);
    free(out);
    return rc;
}

/* Tokenizer and generation files travel with the model. */
static int copy_side_files(const char *in_dir, const char *out_dir, lc_error *err)
{
    DIR *d = opendir(in_dir);
    if (!d)
        return lc_error_set(err, "%s: cannot list directory", in_dir);
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        const char *n = e->d_name;
        size_t l = strlen(n);
        bool json = l > 5 && strcmp(n + l - 5, ".json") == 0;
        if (!(json || strcmp(n, "tokenizer.model") == 0) || strcmp(n, "config.json") == 0 ||
            strcmp(n, "model.safetensors.index.json") == 0)
            continue;
        char src[4200], dst[4200];
        snprintf(src, sizeof src, "%s/%s", in_dir, n);
        snprintf(dst, sizeof dst, "%s/%s", out_dir, n);
        size_t len;
        char *data = lc_read_file(src, 256u << 20, &len, err);
        rc = data ? lc_write_file_atomic(dst, data, len, err) : -1;
        free(data);
    }
    closedir(d);
    return rc;
}

static bool is_block_linear(const char *name, int *layer, int *mod)
{
    int l, used = 0;
    if (sscanf(name, "model.layers.%d.%n", &l, &used) != 1 || used == 0)
        return false;
    for (int m = 0; m < LC_MOD_COUNT; m++) {
        char want[128];
        snprintf(want, sizeof want, "%s.%s.weight", lc_module_parent(m), lc_module_name(m));
        if (strcmp(name + used, want) == 0) {
            *layer = l;
            *mod = m;
            return true;
        }
    }
    return false;
}

int lc_quantize_model(const char *in, const char *out, int64_t bs, bool dq, bool force,
                      lc_error *err)
{
    if (lc_path_exists(out) && !force)
        return lc_error_set(err, "%s already exists (use --force to overwrite)", out);
    lc_model m;
    lc_model_load_opts o = {.nf4 = true, .nf4_blocksize = bs, .nf4_double_quant = dq};
    if (lc_model_load_with(&m, in, &o, err))
        return -1;
    if (!m.has_files || m.cfg.prequantized_bnb4) {
        lc_model_free(&m);
        return lc_error_set(err, "%s is already quantized", in);
    }
    int rc = -1;
    out_list ol = {0};
    if (lc_mkdir_p(out, err))
        goto done;
    /* every tensor of every shard, linears replaced by their NF4 form */
    for (size_t s = 0; s < m.files.n_shards; s++) {
        const lc_st_file *f = &m.files.shards[s];
        for (size_t i = 0; i < f->n_tensors; i++) {
            const lc_st_tensor *t = &f->tensors[i];
            int l, mod;
            if (is_block_linear(t->name, &l, &mod) && l < m.cfg.n_layers) {
                char prefix[256];
                snprintf(prefix, sizeof prefix, "model.layers.%d.%s.%s", l, lc_module_parent(mod),
                         lc_module_name(mod));
                add_nf4(&ol, prefix, &m.nf4[(size_t)l * LC_MOD_COUNT + (size_t)mod],
                        m.layers[l].proj[mod].dtype);
            } else {
                add(&ol, t->name, t->dtype, t->ndim, t->shape, t->data);
            }
        }
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    const char *mk[1] = {"format"}, *mv[1] = {"pt"};
    if (lc_st_write(path, ol.e, ol.n, mk, mv, 1, err) || write_config(in, out, dq, err) ||
        copy_side_files(in, out, err))
        goto done;
    rc = 0;
done:
    out_free(&ol);
    lc_model_free(&m);
    return rc;
}

/* quantize.c — `lorac quantize`: a model's block linears quantized to NF4
 * and written in bitsandbytes' checkpoint layout (see quantize.h; the
 * reader is data/bnb4.c). */
#include "train/quantize.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/fsutil.h"
#include "train/side_files.h"
#include "train/staging.h"
#include "train/lora.h"
#include "train/model.h"

/* The tensors of the output file, in order. Every buffer it allocates
 * (shapes, names, quant state JSON) is owned and freed by out_free. After a
 * failed allocation `oom` is set and further adds do nothing, so the caller
 * checks once, after the list is built. */
typedef struct out_list {
    lc_st_entry *e;
    void **owned;
    size_t n, cap, n_owned, cap_owned;
    bool oom;
} out_list;

/* Takes ownership of p (NULL: a failed allocation); returns p, or NULL with
 * oom set (p freed) when p is NULL or there is no room to record it. */
static void *own(out_list *o, void *p)
{
    if (p && o->n_owned == o->cap_owned) {
        size_t cap = o->cap_owned ? 2 * o->cap_owned : 64;
        void **grown = realloc(o->owned, cap * sizeof *grown);
        if (grown) {
            o->owned = grown;
            o->cap_owned = cap;
        } else {
            free(p);
            p = NULL;
        }
    }
    if (!p) {
        o->oom = true;
        return NULL;
    }
    o->owned[o->n_owned++] = p;
    return p;
}

static void add(out_list *o, const char *name, lc_dtype dt, int ndim, const int64_t *shape,
                const void *data)
{
    if (o->oom)
        return;
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 256;
        lc_st_entry *grown = realloc(o->e, cap * sizeof *grown);
        if (!grown) {
            o->oom = true;
            return;
        }
        o->e = grown;
        o->cap = cap;
    }
    int64_t *sh = own(o, malloc((size_t)(ndim ? ndim : 1) * sizeof(int64_t)));
    char *nm = own(o, strdup(name));
    if (!sh || !nm)
        return;
    memcpy(sh, shape, (size_t)ndim * sizeof(int64_t));
    o->e[o->n++] = (lc_st_entry){nm, dt, ndim, sh, data};
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
    if (!text)
        return;
    int n = snprintf(text, 512, "{\"quant_type\": \"nf4\", \"blocksize\": %lld, \"dtype\": \"%s\", "
                     "\"shape\": [%lld, %lld]", (long long)q->blocksize, lc_dtype_torch_name(orig),
                     (long long)q->rows, (long long)q->cols);
    if (q->absmax_q) {
        sh1[0] = lc_nf4_nested_blocks(nb, q->nested_blocksize);
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
}

/* bitsandbytes' quantization_config for NF4, keys in its order; NULL when
 * out of memory. */
static cJSON *quantization_config(bool dq)
{
    cJSON *qc = cJSON_CreateObject(), *skip = NULL;
    bool ok = qc && cJSON_AddStringToObject(qc, "quant_method", "bitsandbytes") &&
              cJSON_AddBoolToObject(qc, "load_in_4bit", true) &&
              cJSON_AddBoolToObject(qc, "load_in_8bit", false) &&
              cJSON_AddStringToObject(qc, "bnb_4bit_quant_type", "nf4") &&
              cJSON_AddBoolToObject(qc, "bnb_4bit_use_double_quant", dq) &&
              cJSON_AddStringToObject(qc, "bnb_4bit_compute_dtype", "bfloat16") &&
              cJSON_AddStringToObject(qc, "bnb_4bit_quant_storage", "uint8") &&
              (skip = cJSON_AddArrayToObject(qc, "llm_int8_skip_modules")) &&
              cJSON_AddItemToArray(skip, cJSON_CreateString("lm_head"));
    if (!ok) {
        cJSON_Delete(qc);
        return NULL;
    }
    return qc;
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
    cJSON *qc = quantization_config(dq);
    bool added = qc && cJSON_AddItemToObject(root, "quantization_config", qc);
    if (qc && !added)
        cJSON_Delete(qc);
    char *text = added ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    snprintf(path, sizeof path, "%s/config.json", out_dir);
    int rc = text ? lc_write_file_atomic(path, text, strlen(text), err)
                  : lc_error_set(err, "%s: out of memory", path);
    free(text);
    return rc;
}

/* Tokenizer and generation files (lc_is_side_file) travel with the model. */
static int copy_side_files(const char *in_dir, const char *out_dir, lc_error *err)
{
    DIR *d = opendir(in_dir);
    if (!d)
        return lc_error_set(err, "%s: cannot list directory", in_dir);
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        const char *n = e->d_name;
        if (!lc_is_side_file(n))
            continue;
        char src[4200], dst[4200];
        if ((size_t)snprintf(src, sizeof src, "%s/%s", in_dir, n) >= sizeof src ||
            (size_t)snprintf(dst, sizeof dst, "%s/%s", out_dir, n) >= sizeof dst) {
            rc = lc_error_set(err, "%s/%s: path too long", out_dir, n);
            break;
        }
        size_t len;
        char *data = lc_read_file(src, 256u << 20, &len, err);
        rc = data ? lc_write_file_atomic(dst, data, len, err) : -1;
        free(data);
    }
    closedir(d);
    return rc;
}

static bool is_block_linear(const lc_model_config *c, const char *name, int *layer, int *mod)
{
    int l, used = 0;
    if (sscanf(name, "model.layers.%d.%n", &l, &used) != 1 || used == 0)
        return false;
    for (int m = 0; m < LC_MOD_COUNT; m++) {
        if (!lc_model_has_module(c, m))
            continue;
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

/* Writes the quantized model m (of in) into dir. */
static int write_quantized(const lc_model *m, const char *in, const char *dir, bool dq,
                           lc_error *err)
{
    int rc = -1;
    out_list ol = {0};
    /* every tensor of every shard, linears replaced by their NF4 form */
    for (size_t s = 0; s < m->files.n_shards; s++) {
        const lc_st_file *f = &m->files.shards[s];
        for (size_t i = 0; i < f->n_tensors; i++) {
            const lc_st_tensor *t = &f->tensors[i];
            int l, mod;
            if (is_block_linear(&m->cfg, t->name, &l, &mod) && l < m->cfg.n_layers) {
                char prefix[256];
                snprintf(prefix, sizeof prefix, "model.layers.%d.%s.%s", l, lc_module_parent(mod),
                         lc_module_name(mod));
                add_nf4(&ol, prefix, &m->nf4[(size_t)l * LC_MOD_COUNT + (size_t)mod],
                        m->layers[l].proj[mod].dtype);
            } else {
                add(&ol, t->name, t->dtype, t->ndim, t->shape, t->data);
            }
        }
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (ol.oom) {
        lc_error_set(err, "%s: out of memory listing its tensors", path);
        goto done;
    }
    const char *mk[1] = {"format"}, *mv[1] = {"pt"};
    if (lc_st_write(path, ol.e, ol.n, mk, mv, 1, err) || write_config(in, dir, dq, err) ||
        copy_side_files(in, dir, err))
        goto done;
    rc = 0;
done:
    out_free(&ol);
    return rc;
}

int lc_quantize_model(const char *in, const char *out, int64_t bs, bool dq, bool force,
                      lc_error *err)
{
    bool exists = lc_path_exists(out);
    const char *inputs[1] = {in};
    if (exists && !force)
        return lc_error_set(err, "%s already exists (use --force to overwrite)", out);
    if (exists && lc_stage_check_replace(out, "OUT_DIR", inputs, 1, err))
        return -1;
    lc_model_config mc;
    if (lc_model_config_load(&mc, in, err))
        return -1;
    if (mc.n_experts) /* bitsandbytes quantizes nn.Linear only: no checkpoint to match */
        return lc_error_set(err, "%s: a %s model: `lorac quantize` writes bitsandbytes "
                            "checkpoints of dense families only; train it with load_in_4bit "
                            "(NF4 experts at load) instead", in, mc.model_type);
    lc_model m;
    lc_model_load_opts o = {.nf4 = true, .nf4_blocksize = bs, .nf4_double_quant = dq};
    if (lc_model_load_with(&m, in, &o, err))
        return -1;
    if (!m.has_files || m.cfg.prequantized_bnb4) {
        lc_model_free(&m);
        return lc_error_set(err, "%s is already quantized", in);
    }
    /* Written as a unit (staging.h): a failure leaves no partial OUT_DIR and
     * an existing one as it was. */
    char stage[4000]; /* (room left for the file names in the paths built from it) */
    int rc = lc_stage_make(out, stage, sizeof stage, err);
    if (rc == 0) {
        rc = write_quantized(&m, in, stage, dq, err);
        if (rc == 0)
            rc = lc_stage_finish(stage, out, exists, err);
        if (rc)
            lc_remove_tree(stage);
    }
    lc_model_free(&m);
    return rc;
}

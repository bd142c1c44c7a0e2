/* gguf_merge.c — a PEFT adapter folded into a GGUF base, written as a GGUF
 * file (see gguf_merge.h): plan (which tensors the adapter touches, their
 * output types), header (the base's metadata copied), tensors one by one,
 * verification, rename. */
#include "train/gguf_merge.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "autograd/ggml_weight.h"
#include "data/ggml_quants.h"
#include "data/gguf.h"
#include "data/gguf_write.h"
#include "train/gguf_export.h"
#include "train/gguf_model.h"
#include "train/gguf_names.h"
#include "train/lora.h"
#include "train/staging.h"
#include "train/sysinfo.h"

#define Q8_BLOCK 32

typedef struct gjob {
    const lc_merge_opts *o;
    lc_merge_report *r;
    FILE *log;
    lc_gguf_file f;
    bool f_open;
    lc_model_config cfg;
    lc_lora lora;
    bool lora_loaded;
    double scale;
    bool type_given;                 /* --type */
    uint32_t type;                   /* its ggml type */
    const lc_lora_adapter **ad;      /* [n_tensors]: the adapter of a merged linear, or NULL */
    int *heads;                      /* [n_tensors]: > 0: q/k rows stored permuted (llama) */
    uint32_t *out_type;              /* [n_tensors]: the type written */
    lc_gguf_writer *w;
    float bump;                      /* test hook (merge.c): added to the first merged tensor */
    char *tmp;                       /* the partial output, while it exists */
} gjob;

/* ------------------------------------------------------------------ */
/* options and the output path                                         */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* --out must name a new (or, with --force, an earlier) .gguf file that is
 * neither the base nor inside the adapter directory. */
static int check_out(const lc_merge_opts *o, lc_error *err)
{
    const char *out = o->out_dir;
    if (!ends_with(out, ".gguf") || ends_with(out, "/.gguf"))
        return lc_error_set(err, "--out %s: a GGUF base is merged into a GGUF file: --out must "
                            "name a file ending in .gguf", out);
    struct stat so, sb;
    if (stat(out, &so) == 0 && stat(o->base_dir, &sb) == 0 && so.st_dev == sb.st_dev &&
        so.st_ino == sb.st_ino)
        return lc_error_set(err, "--out %s is the --base file: merge never overwrites an input; "
                            "choose another --out", out);
    if (lstat(out, &so) != 0)
        return 0;
    if (S_ISDIR(so.st_mode))
        return lc_error_set(err, "--out %s is a directory: --out names the .gguf file to write",
                            out);
    if (!o->force)
        return lc_error_set(err, "%s already exists: choose another --out, or pass --force to "
                            "replace it", out);
    if (lc_path_contains(o->adapter_dir, out))
        return lc_error_set(err, "--out %s is inside the adapter directory %s: merge never "
                            "replaces an input; choose another --out", out, o->adapter_dir);
    return 0;
}

static int check_opts(gjob *j, lc_error *err)
{
    const lc_merge_opts *o = j->o;
    if (o->dtype != LC_MERGE_DTYPE_AUTO || o->dequantize)
        return lc_error_set(err, "%s is a GGUF file: %s is for a Hugging Face base; the type of "
                            "the merged GGUF tensors is chosen with --type f32|f16|bf16|q8_0",
                            o->base_dir, o->dequantize ? "--dequantize" : "--dtype");
    j->type_given = o->gguf_type != NULL;
    if (j->type_given && lc_gguf_export_parse_type(o->gguf_type, &j->type))
        return lc_error_set(err, "--type: expected f32, f16, bf16 or q8_0, got '%s'",
                            o->gguf_type);
    return check_out(o, err);
}

/* ------------------------------------------------------------------ */
/* the plan                                                            */

/* The tensor index of every linear the adapter adapts, checked against the
 * file, and the type each tensor is written in. */
static int plan(gjob *j, lc_error *err)
{
    const lc_gguf_file *f = &j->f;
    const size_t n = f->n_tensors;
    j->ad = calloc(n ? n : 1, sizeof *j->ad);
    j->heads = calloc(n ? n : 1, sizeof *j->heads);
    j->out_type = calloc(n ? n : 1, sizeof *j->out_type);
    if (!j->ad || !j->heads || !j->out_type)
        return lc_error_set(err, "out of memory");
    for (size_t i = 0; i < n; i++)
        j->out_type[i] = f->tensors[i].type;
    const bool llama = j->cfg.arch == LC_ARCH_LLAMA; /* q/k rows permuted by the converter */
    char stem[64], name[128];
    for (int l = 0; l < j->cfg.n_layers; l++)
        for (int m = 0; m < LC_MOD_COUNT; m++) {
            const lc_lora_adapter *ad = lc_lora_get(&j->lora, l, (lc_module)m);
            if (!ad)
                continue;
            snprintf(stem, sizeof stem, "%s.%s", lc_module_parent(m), lc_module_name(m));
            lc_gguf_blk_name(name, sizeof name, l, stem, "weight");
            const lc_gguf_tensor *t = lc_gguf_find_tensor(f, name);
            int64_t out, in;
            lc_module_shape(&j->cfg, m, &out, &in);
            if (!t)
                return lc_error_set(err, "%s: the base has no tensor '%s' (model.layers.%d.%s), "
                                    "which the adapter adapts", f->path, name, l, stem);
            if (t->n_dims != 2 || t->ne[0] != in || t->ne[1] != out)
                return lc_error_set(err, "%s: tensor '%s' has shape [%lld, %lld, %lld, %lld] "
                                    "(ggml order), expected [%lld, %lld]", f->path, name,
                                    (long long)t->ne[0], (long long)t->ne[1],
                                    (long long)t->ne[2], (long long)t->ne[3], (long long)in,
                                    (long long)out);
            const lc_ggml_type_info *ti = lc_ggml_type_get(t->type);
            if (!ti->can_dequant)
                return lc_error_set(err, "%s: tensor '%s' has type %s, which lorac cannot "
                                    "dequantize", f->path, name, ti->name);
            const size_t i = (size_t)(t - f->tensors);
            j->ad[i] = ad;
            j->heads[i] = !llama ? 0 : m == LC_MOD_Q ? j->cfg.n_heads
                        : m == LC_MOD_K ? j->cfg.n_kv_heads : 0;
            uint32_t ot = j->type_given ? j->type
                        : t->type == LC_GGML_F32 ? LC_GGML_F32 : LC_GGML_F16; /* export-lora */
            if (ot == LC_GGML_Q8_0 && in % Q8_BLOCK != 0) {
                ot = LC_GGML_F16; /* as gguf-py's converter: "falling back to F16" */
                if (j->log)
                    fprintf(j->log, "%s: rows of %lld elements are not a multiple of %d: "
                            "written as F16\n", name, (long long)in, Q8_BLOCK);
            }
            j->out_type[i] = ot;
        }
    return 0;
}

/* Header: the base's metadata in order, then every tensor's info. */
static int declare(gjob *j, lc_error *err)
{
    const lc_gguf_file *f = &j->f;
    if (!(j->w = lc_gguf_writer_new(f->alignment)))
        return lc_error_set(err, "out of memory");
    for (size_t i = 0; i < f->n_kv; i++)
        lc_gguf_add_kv(j->w, &f->kvs[i]);
    for (size_t i = 0; i < f->n_tensors; i++) {
        const lc_gguf_tensor *t = &f->tensors[i];
        if (lc_gguf_add_tensor(j->w, t->name, t->n_dims, t->ne, j->out_type[i], err) < 0)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* the tensors                                                         */

/* Merged linear i: W + scaling · B@A (HF row order, f32) stored row by row
 * where llama.cpp keeps it, in its output type; into *out (malloc'd). */
static int merge_one(gjob *j, size_t i, unsigned char **out, lc_error *err)
{
    const lc_gguf_tensor *t = &j->f.tensors[i];
    const int64_t rows = t->ne[1], cols = t->ne[0];
    const lc_ggml_weight gw = {t->type, t->data, t->row_bytes, j->heads[i]};
    const lc_weight w = {.dtype = LC_DTYPE_F32, .rows = rows, .cols = cols, .ggml = &gw};
    void *merged;
    if (lc_merge_linear(t->name, &w, j->ad[i], j->scale, LC_DTYPE_F32, &merged, err))
        return -1;
    if (j->bump != 0.0f && !j->r->corrupted) { /* test hook: element [0,0] */
        ((float *)merged)[0] += j->bump;
        j->r->corrupted = true;
    }
    const lc_ggml_type_info *ti = lc_ggml_type_get(j->out_type[i]);
    const uint64_t row_bytes = (uint64_t)cols / ti->block_size * ti->type_size;
    unsigned char *buf = malloc((size_t)(row_bytes * (uint64_t)rows));
    if (!buf) {
        free(merged);
        return lc_error_set(err, "out of memory for tensor '%s'", t->name);
    }
    for (int64_t r = 0; r < rows; r++) {
        const int64_t g = j->heads[i] ? lc_llama_gguf_row(rows, j->heads[i], r) : r;
        lc_gguf_export_convert((const float *)merged + r * cols, (uint64_t)cols,
                               j->out_type[i], buf + (uint64_t)g * row_bytes);
    }
    free(merged);
    *out = buf;
    return 0;
}

static int write_tensors(gjob *j, FILE *fp, lc_error *err)
{
    for (size_t i = 0; i < j->f.n_tensors; i++) {
        const lc_gguf_tensor *t = &j->f.tensors[i];
        const uint64_t nbytes = lc_gguf_tensor_nbytes(j->w, (int)i);
        int rc;
        if (j->ad[i]) {
            unsigned char *buf = NULL;
            if (merge_one(j, i, &buf, err))
                return -1;
            rc = lc_gguf_write_tensor(j->w, fp, buf, nbytes, err);
            free(buf);
            j->r->n_merged++;
            j->r->n_converted += j->out_type[i] != t->type;
            j->r->low_precision |= j->out_type[i] != LC_GGML_F32;
        } else {
            rc = lc_gguf_write_tensor(j->w, fp, t->data, nbytes, err); /* byte for byte */
        }
        lc_drop_pages(t->data, (size_t)t->nbytes); /* not read again */
        if (rc)
            return lc_error_prefix(err, "writing tensor '%s'", t->name);
        j->r->n_tensors++;
        j->r->bytes_written += (double)nbytes;
    }
    return 0;
}

/* Header and tensors into a new partial file next to out (j->tmp). */
static int write_partial(gjob *j, lc_error *err)
{
    const char *out = j->o->out_dir;
    const size_t n = strlen(out) + 40;
    if (!(j->tmp = malloc(n)))
        return lc_error_set(err, "out of memory");
    snprintf(j->tmp, n, "%s.lorac-partial-XXXXXX.gguf", out);
    int fd = mkstemps(j->tmp, 5);
    if (fd < 0) {
        lc_error_set(err, "--out: cannot create %s: %s", j->tmp, strerror(errno));
        free(j->tmp);
        j->tmp = NULL;
        return -1;
    }
    fchmod(fd, 0644);
    FILE *fp = fdopen(fd, "wb");
    if (!fp) {
        close(fd);
        return lc_error_set(err, "--out: %s: %s", j->tmp, strerror(errno));
    }
    int rc = -1;
    if (lc_gguf_write_header(j->w, fp, err) == 0 && write_tensors(j, fp, err) == 0) {
        if (fflush(fp) != 0 || fsync(fileno(fp)) != 0)
            lc_error_set(err, "writing %s failed: %s (disk full?)", j->tmp, strerror(errno));
        else
            rc = 0;
    }
    if (fclose(fp) != 0 && rc == 0)
        rc = lc_error_set(err, "writing %s failed: %s", j->tmp, strerror(errno));
    return rc;
}

/* "Q8_0 -> F16 x 14, ..." into r->copied: what the merged linears became. */
static void describe_types(gjob *j)
{
    char *s = j->r->copied;
    const size_t cap = sizeof j->r->copied;
    s[0] = '\0';
    for (size_t i = 0; i < j->f.n_tensors; i++) {
        if (!j->ad[i])
            continue;
        bool seen = false;
        int count = 0;
        for (size_t k = 0; k < j->f.n_tensors; k++)
            if (j->ad[k] && j->f.tensors[k].type == j->f.tensors[i].type &&
                j->out_type[k] == j->out_type[i]) {
                seen |= k < i;
                count++;
            }
        if (seen)
            continue;
        size_t len = strlen(s);
        snprintf(s + len, cap - len, "%s%s -> %s x %d", len ? ", " : "",
                 lc_ggml_type_get(j->f.tensors[i].type)->name,
                 lc_ggml_type_get(j->out_type[i])->name, count);
    }
}

static void job_free(gjob *j)
{
    if (j->tmp) {
        unlink(j->tmp);
        free(j->tmp);
    }
    lc_gguf_writer_free(j->w);
    free(j->ad);
    free(j->heads);
    free(j->out_type);
    if (j->lora_loaded)
        lc_lora_free(&j->lora);
    if (j->f_open)
        lc_gguf_close(&j->f);
    j->r->peak_rss_total = lc_peak_rss_bytes();
}

/* The base file and its config, the adapter checked against it. */
static int open_inputs(gjob *j, lc_error *err)
{
    const lc_merge_opts *o = j->o;
    if (lc_gguf_open(&j->f, o->base_dir, err))
        return lc_error_prefix(err, "--base");
    j->f_open = true;
    if (lc_gguf_find_kv(&j->f, "split.count"))
        return lc_error_set(err, "%s is one part of a split GGUF model (key 'split.count'): "
                            "merge it into one file first (llama-gguf-split --merge)",
                            o->base_dir);
    if (lc_gguf_model_config(&j->cfg, &j->f, err) ||
        lc_merge_load_adapter(&j->cfg, o->base_dir, o->adapter_dir, &j->lora, &j->scale, err))
        return -1;
    j->lora_loaded = true;
    j->r->dora = j->lora.cfg.use_dora; /* lc_merge_linear scales each row by m / c */
    return 0;
}

int lc_gguf_merge(const lc_merge_opts *o, lc_merge_report *r, FILE *log, lc_error *err)
{
    memset(r, 0, sizeof *r);
    r->out_dtype = LC_MERGE_DTYPE_AUTO;
    gjob j;
    memset(&j, 0, sizeof j);
    j.o = o;
    j.r = r;
    j.log = log;
    j.bump = lc_merge_test_bump();
    const double t0 = lc_now_s();
    int rc = -1;
    if (check_opts(&j, err) || open_inputs(&j, err) || plan(&j, err) || declare(&j, err))
        goto out;
    if (write_partial(&j, err))
        goto out;
    r->n_shards = 1;
    r->largest_shard_bytes = (double)j.f.map_size;
    r->peak_rss_merge = lc_peak_rss_bytes();
    r->seconds_merge = lc_now_s() - t0;
    describe_types(&j);
    if (log)
        fprintf(log, "wrote %s: %d tensors (%d merged: %s), %.1f MiB\n", o->out_dir,
                r->n_tensors, r->n_merged, r->copied, r->bytes_written / 1048576.0);
    if (o->verify) {
        const double t1 = lc_now_s();
        int vrc = lc_merge_verify(o->base_dir, j.tmp, &j.lora, r, err);
        r->seconds_verify = lc_now_s() - t1;
        if (vrc)
            goto out;
    }
    if (rename(j.tmp, o->out_dir) != 0) {
        lc_error_set(err, "renaming %s to %s failed: %s", j.tmp, o->out_dir, strerror(errno));
        goto out;
    }
    free(j.tmp);
    j.tmp = NULL;
    rc = 0;
out:
    if (rc && j.tmp) {
        size_t m = strlen(err->msg);
        snprintf(err->msg + m, sizeof err->msg - m, "; nothing was written to %s", o->out_dir);
    }
    job_free(&j);
    return rc;
}

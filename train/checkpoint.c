/* checkpoint.c — see checkpoint.h. */
#include "train/checkpoint.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/safetensors.h"
#include "train/fsutil.h"
#include "train/run_record.h"

/* Removes a directory holding only files (what checkpoints are). */
static int remove_flat_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : -1;
    struct dirent *e;
    char path[4352];
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    return rmdir(dir);
}

/* Deletes a checkpoint directory without ever leaving a partial checkpoint-N
 * behind. (Fix: unlinking the files in place let a SIGKILL during pruning
 * leave e.g. a checkpoint-N with trainer_state.json but no adapter, which
 * the listing took for complete.) The directory is first renamed to
 * checkpoint-N.old.tmp — a name the listing ignores and the next save sweeps
 * — and emptied there. */
static int discard_dir(const char *dir)
{
    char aside[4400];
    snprintf(aside, sizeof aside, "%s.old.tmp", dir);
    remove_flat_dir(aside);
    if (rename(dir, aside) != 0)
        return errno == ENOENT ? 0 : -1;
    remove_flat_dir(aside);
    return 0;
}

/* Removes every checkpoint-*.tmp directory a crash left in output_dir
 * (only lc_checkpoint_save creates them, and it is not running). */
static void sweep_leftovers(const char *output_dir)
{
    DIR *d = opendir(output_dir);
    if (!d)
        return;
    struct dirent *e;
    char path[4352];
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (strncmp(e->d_name, "checkpoint-", 11) == 0 && n > 15 &&
            strcmp(e->d_name + n - 4, ".tmp") == 0) {
            snprintf(path, sizeof path, "%s/%s", output_dir, e->d_name);
            remove_flat_dir(path);
        }
    }
    closedir(d);
}

/* Parses "checkpoint-N" (exactly); -1 otherwise. */
static int64_t checkpoint_number(const char *name)
{
    if (strncmp(name, "checkpoint-", 11) != 0)
        return -1;
    const char *p = name + 11;
    if (!*p)
        return -1;
    int64_t n = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9' || n > INT64_MAX / 10)
            return -1;
        n = n * 10 + (*p - '0');
    }
    return n;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The identity recorded in checkpoint dir's trainer_state.json into buf
 * ("" when it has none or cannot be read). */
static void identity_of(const char *dir, char *buf, size_t n)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    buf[0] = '\0';
    cJSON *root = lc_read_json_object(path, 1 << 20, NULL);
    const char *id = lc_run_record_identity(cJSON_GetObjectItemCaseSensitive(root, "run"));
    if (id)
        snprintf(buf, n, "%s", id);
    cJSON_Delete(root);
}

typedef enum which { ALL, SAME, OTHER } which;

/* Sorted step numbers of complete checkpoints (caller frees): all of them,
 * those whose run identity is `identity` (SAME) or the others (OTHER). */
static int64_t *list_checkpoints(const char *output_dir, which w, const char *identity,
                                 size_t *n)
{
    *n = 0;
    DIR *d = opendir(output_dir);
    if (!d)
        return NULL;
    int64_t *v = NULL;
    size_t cap = 0;
    struct dirent *e;
    char path[4352], id[LC_RUN_IDENTITY_CHARS];
    while ((e = readdir(d))) {
        int64_t k = checkpoint_number(e->d_name);
        if (k < 0)
            continue;
        snprintf(path, sizeof path, "%s/%s/trainer_state.json", output_dir, e->d_name);
        if (!lc_path_exists(path))
            continue;
        if (w != ALL) {
            snprintf(path, sizeof path, "%s/%s", output_dir, e->d_name);
            identity_of(path, id, sizeof id);
            if ((strcmp(id, identity) == 0) != (w == SAME))
                continue;
        }
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            int64_t *p = realloc(v, cap * sizeof *v);
            if (!p)
                break;
            v = p;
        }
        v[(*n)++] = k;
    }
    closedir(d);
    if (v)
        qsort(v, *n, sizeof *v, cmp_i64);
    return v;
}

static int newest(const char *output_dir, which w, const char *identity, char *out, size_t n)
{
    size_t k;
    int64_t *v = list_checkpoints(output_dir, w, identity, &k);
    int found = k > 0;
    if (found)
        snprintf(out, n, "%s/checkpoint-%" PRId64, output_dir, v[k - 1]);
    free(v);
    return found;
}

int lc_checkpoint_latest(const char *output_dir, const char *identity, char *out, size_t n)
{
    return newest(output_dir, identity ? SAME : ALL, identity, out, n);
}

int lc_checkpoint_other(const char *output_dir, const char *identity, char *out, size_t n)
{
    return newest(output_dir, identity ? OTHER : ALL, identity, out, n);
}

int lc_checkpoint_remove_others(const char *output_dir, const char *identity, lc_error *err)
{
    size_t k;
    int64_t *v = list_checkpoints(output_dir, identity ? OTHER : ALL, identity, &k);
    char path[4352];
    for (size_t i = 0; i < k; i++) {
        snprintf(path, sizeof path, "%s/checkpoint-%" PRId64, output_dir, v[i]);
        if (discard_dir(path) != 0) {
            int e = errno;
            free(v);
            return lc_error_set(err, "overwrite_output_dir: cannot remove %s: %s", path,
                                strerror(e));
        }
    }
    free(v);
    sweep_leftovers(output_dir);
    lc_fsync_dir(output_dir);
    return 0;
}

static int write_state(const char *dir, const lc_train_state *st, const cJSON *run,
                       lc_error *err)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *rec = run ? cJSON_Duplicate(run, 1) : NULL;
    if (!root || (run && !rec) || (rec && !cJSON_AddItemToObject(root, "run", rec))) {
        cJSON_Delete(rec);
        cJSON_Delete(root);
        return lc_error_set(err, "%s: out of memory for trainer_state.json", dir);
    }
    char buf[32];
    cJSON_AddNumberToObject(root, "global_step", (double)st->step);
    cJSON_AddNumberToObject(root, "total_steps", (double)st->total_steps);
    cJSON_AddNumberToObject(root, "epoch", (double)st->epoch);
    cJSON_AddNumberToObject(root, "rows_in_epoch", (double)st->rows_in_epoch);
    cJSON_AddNumberToObject(root, "bad_steps", (double)st->bad_steps);
    snprintf(buf, sizeof buf, "%" PRIu64, st->seed); /* exact, not a double */
    cJSON_AddStringToObject(root, "seed", buf);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text)
        return lc_error_set(err, "%s: out of memory for trainer_state.json", dir);
    char path[4352];
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    int rc = lc_write_file_atomic(path, text, strlen(text), err);
    free(text);
    return rc;
}

static int read_i64(const cJSON *root, const char *key, int64_t *out, const char *path,
                    lc_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9e15 ||
        v->valuedouble != (double)(int64_t)v->valuedouble)
        return lc_error_set(err, "%s: %s: expected a non-negative integer", path, key);
    *out = (int64_t)v->valuedouble;
    return 0;
}

static int read_state(const char *dir, lc_train_state *st, cJSON **run, lc_error *err)
{
    char path[4352];
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    cJSON *root = lc_read_json_object(path, 1 << 20, err);
    if (!root)
        return -1;
    int rc = -1;
    memset(st, 0, sizeof *st);
    if (read_i64(root, "global_step", &st->step, path, err) ||
        read_i64(root, "total_steps", &st->total_steps, path, err) ||
        read_i64(root, "epoch", &st->epoch, path, err) ||
        read_i64(root, "rows_in_epoch", &st->rows_in_epoch, path, err) ||
        read_i64(root, "bad_steps", &st->bad_steps, path, err))
        goto out;
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(root, "seed");
    char *end = NULL;
    if (!cJSON_IsString(seed) ||
        (errno = 0, st->seed = strtoull(seed->valuestring, &end, 10), errno || *end)) {
        lc_error_set(err, "%s: seed: expected a decimal string", path);
        goto out;
    }
    if (run)
        *run = cJSON_DetachItemFromObjectCaseSensitive(root, "run");
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

int lc_checkpoint_save(const char *output_dir, const lc_lora *lora, const lc_adamw *opt,
                       const lc_train_state *st, const char *base_model, int64_t keep,
                       const cJSON *run, char *path_out, size_t path_n, lc_error *err)
{
    char final[4096], tmp[4200];
    snprintf(final, sizeof final, "%s/checkpoint-%" PRId64, output_dir, st->step);
    snprintf(tmp, sizeof tmp, "%s.tmp", final);
    if (lc_mkdir_p(output_dir, err))
        return -1;
    sweep_leftovers(output_dir); /* checkpoint-*.tmp left over by a crash */
    if (lc_lora_save_peft(lora, tmp, base_model, err))
        goto fail;
    LC_ASSERT(sizeof(lc_real) == sizeof(float));
    int64_t shape[1] = {(int64_t)opt->n};
    lc_st_entry e[2] = {{"exp_avg", LC_DTYPE_F32, 1, shape, opt->m},
                        {"exp_avg_sq", LC_DTYPE_F32, 1, shape, opt->v}};
    char step[32], path[4352];
    snprintf(step, sizeof step, "%" PRId64, opt->step);
    const char *mk[1] = {"adam_step"}, *mv[1] = {step};
    snprintf(path, sizeof path, "%s/optimizer.safetensors", tmp);
    if (lc_st_write(path, e, 2, mk, mv, 1, err) || write_state(tmp, st, run, err))
        goto fail;
    lc_fsync_dir(tmp);
    /* Replacing checkpoint-N (a run stopped right after saving it, or one
     * resumed from its final checkpoint). Fix: the old directory used to be
     * deleted before the rename, so a crash in between lost checkpoint-N (or
     * left it half deleted). Now the two are swapped atomically, so
     * checkpoint-N exists at every moment, and the old one, now under the
     * .tmp name, is deleted. Where the file system cannot swap, the old one
     * is moved aside first (a crash in between leaves the older ones). */
    bool swapped = false;
    if (lc_is_dir(final)) {
        swapped = renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_EXCHANGE) == 0;
        if (!swapped && discard_dir(final) != 0) {
            lc_error_set(err, "cannot replace %s: %s", final, strerror(errno));
            goto fail;
        }
    }
    if (!swapped && rename(tmp, final) != 0) {
        lc_error_set(err, "cannot rename %s to %s: %s", tmp, final, strerror(errno));
        goto fail;
    }
    if (swapped)
        remove_flat_dir(tmp);
    lc_fsync_dir(output_dir);
    if (path_out)
        snprintf(path_out, path_n, "%s", final);
    if (keep > 0) {
        size_t n;
        const char *id = lc_run_record_identity(run);
        int64_t *v = list_checkpoints(output_dir, id ? SAME : ALL, id, &n);
        for (size_t i = 0; i + (size_t)keep < n; i++) {
            if (v[i] == st->step)
                continue;
            snprintf(path, sizeof path, "%s/checkpoint-%" PRId64, output_dir, v[i]);
            discard_dir(path);
        }
        free(v);
    }
    return 0;
fail:
    remove_flat_dir(tmp);
    return lc_error_prefix(err, "saving checkpoint %s (previous checkpoints are intact)", final);
}

int lc_checkpoint_read_run(const char *dir, cJSON **run, lc_error *err)
{
    char path[4352];
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    cJSON *root = lc_read_json_object(path, 1 << 20, err);
    if (!root)
        return -1;
    *run = cJSON_DetachItemFromObjectCaseSensitive(root, "run");
    cJSON_Delete(root);
    return 0;
}

int lc_checkpoint_load(const char *dir, lc_lora *lora, lc_adamw *opt, lc_train_state *st,
                       cJSON **run, lc_error *err)
{
    char path[4352];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    lc_st_file f;
    if (lc_st_open(&f, path, err))
        return -1;
    int rc = lc_lora_load_tensors(lora, &f, err);
    lc_st_close(&f);
    if (rc)
        return -1;
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    if (lc_st_open(&f, path, err))
        return -1;
    rc = -1;
    const lc_st_tensor *m = lc_st_find(&f, "exp_avg"), *v = lc_st_find(&f, "exp_avg_sq");
    const char *step = lc_st_meta(&f, "adam_step");
    char *end = NULL;
    if (!m || !v || m->dtype != LC_DTYPE_F32 || v->dtype != LC_DTYPE_F32 ||
        m->numel != opt->n || v->numel != opt->n) {
        lc_error_set(err, "%s: expected F32 exp_avg and exp_avg_sq of %zu values (does the "
                     "checkpoint belong to this model and LoRA config?)", path, opt->n);
        goto out;
    }
    if (!step || (opt->step = strtoll(step, &end, 10), *end) || opt->step < 0) {
        lc_error_set(err, "%s: missing or bad adam_step metadata", path);
        goto out;
    }
    memcpy(opt->m, m->data, opt->n * sizeof(float));
    memcpy(opt->v, v->data, opt->n * sizeof(float));
    /* Hand-edited or corrupted state would turn every later update into NaN
     * (sqrt of a negative second moment) without a word: refused here. */
    for (size_t i = 0; i < opt->n; i++) {
        if (!isfinite(opt->m[i])) {
            lc_error_set(err, "%s: exp_avg[%zu] is %g: Adam's first moments must be finite",
                         path, i, (double)opt->m[i]);
            goto out;
        }
        if (!isfinite(opt->v[i]) || opt->v[i] < 0) {
            lc_error_set(err, "%s: exp_avg_sq[%zu] is %g: Adam's second moments must be "
                         "finite and >= 0", path, i, (double)opt->v[i]);
            goto out;
        }
    }
    rc = read_state(dir, st, run, err);
out:
    lc_st_close(&f);
    return rc;
}

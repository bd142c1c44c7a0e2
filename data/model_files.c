/* model_files.c — open the safetensors weight files of a model directory.
 *
 * DIR/model.safetensors.index.json, when present, is authoritative: only its
 * "weight_map" (tensor -> shard file) is read. Shard names come from the
 * internet, so each must be a plain file name, and its realpath must lie
 * inside realpath(DIR) (a symlink leading out of DIR is refused). Each
 * distinct shard is opened and validated once, every mapped tensor must be
 * present in its shard, and a tensor may be mapped only once. Tensors a
 * shard holds but the map does not name are dropped from that shard's table,
 * so each tensor name lives in exactly one shard and a lookup is a binary
 * search per shard (no extra state in lc_model_files). Without an index,
 * DIR/model.safetensors is the single shard. */
#include "data/model_files.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define INDEX_NAME "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"
#define MAX_INDEX_BYTES (256ull << 20)

static char *join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

/* Reads a whole (small) file. Returns 0, or -1 with errno set; ENOENT means
 * absent. EFBIG when larger than max. */
static int read_small_file(const char *path, uint64_t max, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -1;
    struct stat st;
    int e = 0;
    if (fstat(fd, &st) != 0)
        e = errno;
    else if (S_ISDIR(st.st_mode))
        e = EISDIR;
    else if (!S_ISREG(st.st_mode))
        e = EINVAL;
    else if ((uint64_t)st.st_size > max)
        e = EFBIG;
    if (e) {
        close(fd);
        errno = e;
        return -1;
    }
    size_t n = (size_t)st.st_size, got = 0;
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        errno = ENOMEM;
        return -1;
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            e = r < 0 ? errno : EIO;
            free(buf);
            close(fd);
            errno = e;
            return -1;
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

typedef struct map_item {
    const char *tensor, *shard; /* borrowed from the cJSON tree */
    size_t shard_idx;
} map_item;

static int cmp_item_shard(const void *a, const void *b)
{
    return strcmp(((const map_item *)a)->shard, ((const map_item *)b)->shard);
}

static int cmp_item_tensor(const void *a, const void *b)
{
    return strcmp(((const map_item *)a)->tensor, ((const map_item *)b)->tensor);
}

static bool plain_file_name(const char *s)
{
    return s[0] != '\0' && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* Opens DIR/name after checking that its realpath stays inside real_dir. */
static int open_shard(lc_st_file *f, const char *dir, const char *real_dir, const char *name,
                      lc_error *err)
{
    char *p = join(dir, name);
    if (!p)
        return lc_error_set(err, "%s: out of memory", dir);
    /* Hardening (fuzz_st_index): the shard name comes from the index and may
     * hold newlines or terminal escapes, so it is shown through lc_printable()
     * (after the directory, not inside a raw DIR/name path), keeping the
     * error one printable line. */
    char nb[256], rb[512];
    char *real = realpath(p, NULL);
    if (!real) {
        int rc = lc_error_set(err, "%s: shard '%s' listed in %s: %s", dir,
                              lc_printable(name, nb, sizeof nb), INDEX_NAME, strerror(errno));
        free(p);
        return rc;
    }
    size_t rl = strlen(real_dir);
    bool inside = strcmp(real_dir, "/") == 0
                      ? real[0] == '/'
                      : strncmp(real, real_dir, rl) == 0 && real[rl] == '/';
    int rc = 0;
    if (!inside)
        rc = lc_error_set(err, "%s: shard '%s' resolves to %s, outside the model directory",
                          dir, lc_printable(name, nb, sizeof nb), lc_printable(real, rb, sizeof rb));
    else if (lc_st_open(f, real, err) != 0)
        rc = -1;
    free(real);
    free(p);
    return rc;
}

/* Keeps only the tensors of f whose names are in want[0..n) (sorted by name,
 * all known to be present). */
static void keep_only(lc_st_file *f, const map_item *want, size_t n)
{
    size_t w = 0, j = 0;
    for (size_t i = 0; i < f->n_tensors; i++) {
        while (j < n && strcmp(want[j].tensor, f->tensors[i].name) < 0)
            j++;
        if (j < n && strcmp(want[j].tensor, f->tensors[i].name) == 0)
            f->tensors[w++] = f->tensors[i];
        else
            free(f->tensors[i].name);
    }
    f->n_tensors = w;
}

static int open_sharded(lc_model_files *mf, const char *dir, const char *index_path,
                        const char *text, size_t len, lc_error *err)
{
    char nb[256], sb[256];
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root)
        return lc_error_set(err, "%s: not valid JSON (near byte %zu)", index_path,
                            end ? (size_t)(end - text) : 0);
    int rc = 0;
    map_item *items = NULL;
    char *real_dir = NULL;
    const cJSON *wm = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "weight_map")
                                           : NULL;
    if (!cJSON_IsObject(root)) {
        rc = lc_error_set(err, "%s: not a JSON object", index_path);
        goto out;
    }
    if (!cJSON_IsObject(wm)) {
        rc = lc_error_set(err, "%s: missing \"weight_map\" object", index_path);
        goto out;
    }
    size_t n = 0;
    for (const cJSON *c = wm->child; c; c = c->next) {
        if (!cJSON_IsString(c) || !c->valuestring) {
            rc = lc_error_set(err, "%s: weight_map entry for tensor '%s' is not a string",
                              index_path, lc_printable(c->string, nb, sizeof nb));
            goto out;
        }
        if (!plain_file_name(c->valuestring)) {
            rc = lc_error_set(err,
                              "%s: tensor '%s' is mapped to shard '%s', which is not a plain "
                              "file name inside the model directory",
                              index_path, lc_printable(c->string, nb, sizeof nb),
                              lc_printable(c->valuestring, sb, sizeof sb));
            goto out;
        }
        n++;
    }
    if (n == 0) {
        rc = lc_error_set(err, "%s: weight_map is empty", index_path);
        goto out;
    }
    items = malloc(n * sizeof *items);
    if (!items) {
        rc = lc_error_set(err, "%s: out of memory", index_path);
        goto out;
    }
    size_t i = 0;
    for (const cJSON *c = wm->child; c; c = c->next, i++) {
        items[i].tensor = c->string;
        items[i].shard = c->valuestring;
    }

    /* a tensor may be mapped once */
    qsort(items, n, sizeof *items, cmp_item_tensor);
    for (i = 1; i < n; i++) {
        if (strcmp(items[i - 1].tensor, items[i].tensor) == 0) {
            rc = lc_error_set(err, "%s: tensor '%s' appears twice in weight_map", index_path,
                              lc_printable(items[i].tensor, nb, sizeof nb));
            goto out;
        }
    }

    /* distinct shards, in name order; each shard's items are re-sorted by tensor below */
    qsort(items, n, sizeof *items, cmp_item_shard);
    size_t n_shards = 0;
    for (i = 0; i < n; i++) {
        if (i == 0 || strcmp(items[i - 1].shard, items[i].shard) != 0)
            n_shards++;
        items[i].shard_idx = n_shards - 1;
    }
    mf->shards = calloc(n_shards, sizeof *mf->shards);
    mf->shard_names = calloc(n_shards, sizeof *mf->shard_names);
    if (!mf->shards || !mf->shard_names) {
        rc = lc_error_set(err, "%s: out of memory", index_path);
        goto out;
    }
    if (!(real_dir = realpath(dir, NULL))) {
        rc = lc_error_set(err, "%s: cannot resolve directory: %s", dir, strerror(errno));
        goto out;
    }
    for (i = 0; i < n;) {
        size_t s = items[i].shard_idx, j = i;
        while (j < n && items[j].shard_idx == s)
            j++;
        mf->n_shards = s + 1; /* a zeroed or failed lc_st_file closes safely */
        if (!(mf->shard_names[s] = strdup(items[i].shard))) {
            rc = lc_error_set(err, "%s: out of memory", index_path);
            goto out;
        }
        if (open_shard(&mf->shards[s], dir, real_dir, items[i].shard, err) != 0) {
            rc = -1;
            goto out;
        }
        qsort(items + i, j - i, sizeof *items, cmp_item_tensor);
        for (size_t k = i; k < j; k++) {
            if (!lc_st_find(&mf->shards[s], items[k].tensor)) {
                rc = lc_error_set(err,
                                  "%s: tensor '%s' is mapped to shard '%s', which has no such "
                                  "tensor",
                                  index_path, lc_printable(items[k].tensor, nb, sizeof nb),
                                  lc_printable(items[k].shard, sb, sizeof sb));
                goto out;
            }
        }
        keep_only(&mf->shards[s], items + i, j - i);
        i = j;
    }
out:
    free(real_dir);
    free(items);
    cJSON_Delete(root);
    return rc;
}

int lc_model_files_open(lc_model_files *mf, const char *dir, lc_error *err)
{
    memset(mf, 0, sizeof *mf);
    if (!(mf->dir = strdup(dir)))
        return lc_error_set(err, "%s: out of memory", dir);
    char *index_path = join(dir, INDEX_NAME);
    if (!index_path) {
        lc_model_files_close(mf);
        return lc_error_set(err, "%s: out of memory", dir);
    }
    char *text = NULL;
    size_t len = 0;
    int rc;
    if (read_small_file(index_path, MAX_INDEX_BYTES, &text, &len) == 0) {
        rc = open_sharded(mf, dir, index_path, text, len, err);
        free(text);
    } else if (errno != ENOENT) {
        rc = lc_error_set(err, "%s: cannot read: %s", index_path, strerror(errno));
    } else {
        char *single = join(dir, SINGLE_NAME);
        rc = -1;
        if (!single) {
            lc_error_set(err, "%s: out of memory", dir);
        } else if (access(single, F_OK) != 0 && errno == ENOENT) {
            lc_error_set(err, "%s: no " SINGLE_NAME " or " INDEX_NAME, dir);
        } else {
            mf->shards = calloc(1, sizeof *mf->shards);
            mf->shard_names = calloc(1, sizeof *mf->shard_names);
            if (mf->shards && mf->shard_names)
                mf->n_shards = 1;
            if (!mf->n_shards || !(mf->shard_names[0] = strdup(SINGLE_NAME)))
                lc_error_set(err, "%s: out of memory", dir);
            else if (lc_st_open(&mf->shards[0], single, err) == 0)
                rc = 0;
        }
        free(single);
    }
    free(index_path);
    if (rc != 0) {
        lc_model_files_close(mf);
        return -1;
    }
    return 0;
}

void lc_model_files_close(lc_model_files *mf)
{
    if (!mf)
        return;
    for (size_t i = 0; i < mf->n_shards; i++) {
        if (mf->shards)
            lc_st_close(&mf->shards[i]);
        if (mf->shard_names)
            free(mf->shard_names[i]);
    }
    free(mf->shards);
    free(mf->shard_names);
    free(mf->dir);
    memset(mf, 0, sizeof *mf);
}

static int shard_of(const lc_model_files *mf, const char *name, const lc_st_tensor **t)
{
    /* keep_only left each tensor name in exactly one shard */
    for (size_t i = 0; i < mf->n_shards; i++) {
        const lc_st_tensor *x = lc_st_find(&mf->shards[i], name);
        if (x) {
            if (t)
                *t = x;
            return (int)i;
        }
    }
    return -1;
}

const lc_st_tensor *lc_model_files_find(const lc_model_files *mf, const char *name)
{
    const lc_st_tensor *t = NULL;
    shard_of(mf, name, &t);
    return t;
}

int lc_model_files_shard_of(const lc_model_files *mf, const char *name)
{
    return shard_of(mf, name, NULL);
}

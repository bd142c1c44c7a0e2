/* fingerprint.c — see fingerprint.h. */
#include "train/fingerprint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "autograd/hash.h"

#define CHUNK (1u << 20)        /* read size; a multiple of 8 */
#define SAMPLE_HEAD (1u << 20)  /* model files: bytes hashed from the start */
#define SAMPLE_BLOCK 4096u
#define SAMPLE_BLOCKS 64

/* Folds n bytes into h, 8 at a time; a tail shorter than 8 is folded with
 * its length so "ab" and "ab\0" differ. Chunks must be multiples of 8
 * except the last. */
static uint64_t fold(uint64_t h, const unsigned char *p, size_t n)
{
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = lc_splitmix64(h ^ w);
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, p, n);
        h = lc_splitmix64(h ^ w ^ ((uint64_t)n << 56));
    }
    return h;
}

/* Reads exactly n bytes at off (fewer only at end of file); -1 on error. */
static ssize_t read_at(int fd, unsigned char *buf, size_t n, off_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, buf + got, n - got, off + (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

static void stat_part(const struct stat *st, lc_fileprint *fp)
{
    fp->size = (int64_t)st->st_size;
    fp->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    fp->dev = (uint64_t)st->st_dev;
    fp->ino = (uint64_t)st->st_ino;
}

/* Hashes [off, off + n) of the file into *h. */
static int hash_range(int fd, off_t off, uint64_t n, unsigned char *buf, uint64_t *h)
{
    while (n > 0) {
        size_t want = n < CHUNK ? (size_t)n : CHUNK;
        ssize_t got = read_at(fd, buf, want, off);
        if (got < 0)
            return -1;
        if (got == 0)
            break; /* shrank while read: the size in the print then differs */
        *h = fold(*h, buf, (size_t)got);
        off += got;
        n -= (uint64_t)got;
    }
    return 0;
}

int lc_fileprint_take(const char *path, bool sampled, lc_fileprint *fp, lc_error *err)
{
    memset(fp, 0, sizeof *fp);
    /* O_NONBLOCK: a FIFO (which a run could not read again each epoch) is
     * refused at once instead of waiting for a writer. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return lc_error_set(err, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return lc_error_set(err, "%s: not a regular file", path);
    }
    stat_part(&st, fp);
    unsigned char *buf = malloc(CHUNK);
    if (!buf) {
        close(fd);
        return lc_error_set(err, "%s: out of memory to fingerprint it", path);
    }
    uint64_t h = lc_splitmix64((uint64_t)fp->size), size = (uint64_t)fp->size;
    int rc = 0;
    if (!sampled || size <= SAMPLE_HEAD + SAMPLE_BLOCKS * SAMPLE_BLOCK) {
        rc = hash_range(fd, 0, size, buf, &h);
    } else {
        rc = hash_range(fd, 0, SAMPLE_HEAD, buf, &h);
        uint64_t span = size - SAMPLE_HEAD - SAMPLE_BLOCK;
        for (int i = 0; i < SAMPLE_BLOCKS && rc == 0; i++)
            rc = hash_range(fd, (off_t)(SAMPLE_HEAD + span / SAMPLE_BLOCKS * (uint64_t)i),
                            SAMPLE_BLOCK, buf, &h);
        if (rc == 0)
            rc = hash_range(fd, (off_t)(size - SAMPLE_BLOCK), SAMPLE_BLOCK, buf, &h);
    }
    int e = errno;
    free(buf);
    close(fd);
    if (rc)
        return lc_error_set(err, "%s: read failed: %s", path, strerror(e));
    fp->hash = h;
    return 0;
}

int lc_fileprint_unchanged(const char *path, const lc_fileprint *fp, lc_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return lc_error_set(err, "%s changed while the run was using it (%s)", path,
                            strerror(errno));
    lc_fileprint now;
    stat_part(&st, &now);
    if (now.dev != fp->dev || now.ino != fp->ino)
        return lc_error_set(err, "%s changed while the run was using it (replaced by another "
                            "file)", path);
    if (now.size != fp->size)
        return lc_error_set(err, "%s changed while the run was using it (size %lld -> %lld "
                            "bytes)", path, (long long)fp->size, (long long)now.size);
    if (now.mtime_ns != fp->mtime_ns)
        return lc_error_set(err, "%s changed while the run was using it (modified again, same "
                            "size)", path);
    return 0;
}

static bool model_file(const char *name)
{
    size_t n = strlen(name);
    return strcmp(name, "config.json") == 0 ||
           (n > 12 && strcmp(name + n - 12, ".safetensors") == 0) ||
           (n > 23 && strcmp(name + n - 23, ".safetensors.index.json") == 0);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sorted paths of dir's model files into mp->paths / mp->n. */
static int list_model_files(lc_modelprint *mp, const char *dir, lc_error *err)
{
    struct stat st;
    if (stat(dir, &st) == 0 && S_ISREG(st.st_mode)) { /* a GGUF base: the one file */
        if (!(mp->paths = malloc(sizeof *mp->paths)) || !(mp->paths[0] = strdup(dir)))
            return lc_error_set(err, "%s: out of memory", dir);
        mp->n = 1;
        return 0;
    }
    DIR *d = opendir(dir);
    if (!d)
        return lc_error_set(err, "%s: %s", dir, strerror(errno));
    int cap = 0, rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) && rc == 0) {
        if (!model_file(e->d_name))
            continue;
        if (mp->n == cap) {
            cap = cap ? 2 * cap : 16;
            char **p = realloc(mp->paths, (size_t)cap * sizeof *p);
            if (!p) {
                rc = lc_error_set(err, "%s: out of memory", dir);
                break;
            }
            mp->paths = p;
        }
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        if (!(mp->paths[mp->n] = malloc(len))) {
            rc = lc_error_set(err, "%s: out of memory", dir);
            break;
        }
        snprintf(mp->paths[mp->n++], len, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (rc == 0 && mp->n)
        qsort(mp->paths, (size_t)mp->n, sizeof *mp->paths, cmp_str);
    return rc;
}

int lc_modelprint_take(lc_modelprint *mp, const char *dir, lc_error *err)
{
    memset(mp, 0, sizeof *mp);
    if (list_model_files(mp, dir, err))
        goto fail;
    if (!(mp->files = calloc((size_t)mp->n + 1, sizeof *mp->files))) {
        lc_error_set(err, "%s: out of memory", dir);
        goto fail;
    }
    uint64_t h = lc_splitmix64((uint64_t)mp->n);
    for (int i = 0; i < mp->n; i++) {
        if (lc_fileprint_take(mp->paths[i], true, &mp->files[i], err))
            goto fail;
        const char *name = strrchr(mp->paths[i], '/') ? strrchr(mp->paths[i], '/') + 1
                                                       : mp->paths[i];
        h = fold(h, (const unsigned char *)name, strlen(name));
        h = lc_splitmix64(h ^ mp->files[i].hash);
    }
    mp->hash = h;
    return 0;
fail:
    lc_modelprint_free(mp);
    return lc_error_prefix(err, "fingerprinting base_model");
}

int lc_modelprint_unchanged(const lc_modelprint *mp, lc_error *err)
{
    for (int i = 0; i < mp->n; i++)
        if (lc_fileprint_unchanged(mp->paths[i], &mp->files[i], err))
            return lc_error_prefix(err, "base_model");
    return 0;
}

void lc_modelprint_free(lc_modelprint *mp)
{
    for (int i = 0; i < mp->n; i++)
        free(mp->paths[i]);
    free(mp->paths);
    free(mp->files);
    memset(mp, 0, sizeof *mp);
}

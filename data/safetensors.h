/* safetensors.h — read (mmap, fully validated) and write safetensors files.
 *
 * Files come from the internet, so the reader trusts nothing: every rule of
 * the format (listed at the top of safetensors.c) is checked with overflow-safe
 * arithmetic before a byte of tensor data is touched, and every failure is a
 * one-line lc_error naming the file and the tensor. Parsing works on any
 * memory buffer (lc_st_parse) so fuzzers and tests need no files; lc_st_open
 * mmaps a file read-only and parses the mapping, so tensor data is never
 * copied. The writer writes to "PATH.tmp", fsyncs, then renames, so a crash
 * never leaves a half-written file under the final name. */
#ifndef LC_SAFETENSORS_H
#define LC_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "autograd/dtype.h"
#include "autograd/error.h"

#define LC_ST_MAX_DIMS 8
#define LC_ST_MAX_HEADER 100000000ull /* bytes, the format's own limit */

typedef struct lc_st_tensor {
    char *name;                    /* owned */
    lc_dtype dtype;
    int ndim;                      /* 0..LC_ST_MAX_DIMS (0 = scalar) */
    int64_t shape[LC_ST_MAX_DIMS];
    uint64_t numel;                /* product of shape (1 for a scalar) */
    uint64_t begin, end;           /* data_offsets, relative to the data buffer */
    const void *data;              /* points into the mapping / buffer */
} lc_st_tensor;

typedef struct lc_st_file {
    char *path;                    /* owned; "<memory>" for lc_st_parse */
    void *map;                     /* mmap base (NULL for lc_st_parse) */
    size_t map_size;
    lc_st_tensor *tensors;         /* owned, sorted by name */
    size_t n_tensors;
    char **meta_keys, **meta_values; /* __metadata__ string map, owned */
    size_t n_meta;
} lc_st_file;

/* Parses a complete safetensors image held in buf[0..size). buf must stay
 * alive while f is used. `label` names the source in error messages. */
int lc_st_parse(lc_st_file *f, const void *buf, size_t size, const char *label,
                lc_error *err);
/* mmaps and parses path. */
int lc_st_open(lc_st_file *f, const char *path, lc_error *err);
void lc_st_close(lc_st_file *f);

/* Lookup by exact name (binary search); NULL when absent. */
const lc_st_tensor *lc_st_find(const lc_st_file *f, const char *name);
/* __metadata__ value for key, or NULL. */
const char *lc_st_meta(const lc_st_file *f, const char *key);

/* One tensor to write. data holds numel * dtype size bytes, little-endian. */
typedef struct lc_st_entry {
    const char *name;
    lc_dtype dtype;
    int ndim;
    const int64_t *shape;
    const void *data;
} lc_st_entry;

/* Writes entries (data laid out as the reference writer does: larger
 * element sizes first, then by name, so every tensor is aligned) plus an
 * optional __metadata__ map given as parallel key/value arrays (n_meta may
 * be 0). Header JSON padded with spaces to a multiple of 8.
 * Atomic: writes PATH.tmp, fsyncs, renames over PATH. On any failure the
 * temporary is removed and PATH is untouched. */
int lc_st_write(const char *path, const lc_st_entry *entries, size_t n,
                const char *const *meta_keys, const char *const *meta_values,
                size_t n_meta, lc_error *err);

#endif

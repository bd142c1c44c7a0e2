/* fuzz_safetensors.c — lc_st_parse on arbitrary bytes.
 *
 * On success every tensor's data range is read byte by byte (ASan flags any
 * byte outside the input), the ranges must lie inside the buffer and agree
 * with numel · dtype size, and lc_st_find must find each tensor by its name
 * (and lc_st_meta each metadata key). On failure the message must be a
 * single non-empty line.
 *
 * A file that parses is also written back with lc_st_write (same names,
 * dtypes, shapes, bytes and metadata) to the per-process temporary
 * directory, reopened with lc_st_open, and must read back identical: this
 * checks the writer's JSON escaping of names from any valid header. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/safetensors.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Writes f back out, reopens it and compares. */
static void round_trip(const lc_st_file *f)
{
    static char path[600];
    if (!path[0])
        fuzz_path(path, sizeof path, fuzz_tmpdir(), "rt.safetensors");
    lc_st_entry *e = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *e);
    FUZZ_CHECK(e != NULL);
    for (size_t i = 0; i < f->n_tensors; i++) {
        const lc_st_tensor *t = &f->tensors[i];
        e[i] = (lc_st_entry){t->name, t->dtype, t->ndim, t->shape, t->data};
    }
    lc_error err;
    err.msg[0] = '\0';
    if (lc_st_write(path, e, f->n_tensors, (const char *const *)f->meta_keys,
                    (const char *const *)f->meta_values, f->n_meta, &err) != 0) {
        fprintf(stderr, "round trip: write failed: %s\n", err.msg);
        abort();
    }
    free(e);
    lc_st_file g;
    if (lc_st_open(&g, path, &err) != 0) {
        fprintf(stderr, "round trip: reopen failed: %s\n", err.msg);
        abort();
    }
    FUZZ_CHECK(g.n_tensors == f->n_tensors && g.n_meta == f->n_meta);
    for (size_t i = 0; i < f->n_tensors; i++) {
        const lc_st_tensor *a = &f->tensors[i], *b = &g.tensors[i];
        FUZZ_CHECK(strcmp(a->name, b->name) == 0 && a->dtype == b->dtype && a->ndim == b->ndim);
        FUZZ_CHECK(memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof a->shape[0]) == 0);
        FUZZ_CHECK(a->end - a->begin == b->end - b->begin);
        FUZZ_CHECK(memcmp(a->data, b->data, (size_t)(a->end - a->begin)) == 0);
    }
    for (size_t i = 0; i < f->n_meta; i++)
        FUZZ_CHECK(!strcmp(f->meta_keys[i], g.meta_keys[i]) &&
                   !strcmp(f->meta_values[i], g.meta_values[i]));
    lc_st_close(&g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lc_st_file f;
    lc_error err;
    err.msg[0] = '\0';
    if (lc_st_parse(&f, data, size, "fuzz.safetensors", &err) != 0) {
        fuzz_check_error(&err);
        FUZZ_CHECK(f.tensors == NULL && f.n_tensors == 0 && f.path == NULL);
        return 0;
    }
    volatile unsigned acc = 0;
    for (size_t i = 0; i < f.n_tensors; i++) {
        const lc_st_tensor *t = &f.tensors[i];
        FUZZ_CHECK(t->name != NULL);
        FUZZ_CHECK(t->ndim >= 0 && t->ndim <= LC_ST_MAX_DIMS);
        FUZZ_CHECK(t->end >= t->begin);
        uint64_t bytes = t->end - t->begin;
        FUZZ_CHECK(bytes == t->numel * lc_dtype_size(t->dtype));
        const uint8_t *p = t->data;
        FUZZ_CHECK(p >= data && p <= data + size && bytes <= (uint64_t)(data + size - p));
        for (uint64_t k = 0; k < bytes; k++)
            acc += p[k];
        const lc_st_tensor *found = lc_st_find(&f, t->name);
        FUZZ_CHECK(found == t);
        if (i > 0)
            FUZZ_CHECK(strcmp(f.tensors[i - 1].name, t->name) < 0);
    }
    for (size_t i = 0; i < f.n_meta; i++)
        FUZZ_CHECK(lc_st_meta(&f, f.meta_keys[i]) == f.meta_values[i]);
    FUZZ_CHECK(lc_st_find(&f, "") == NULL || f.n_tensors > 0);
    (void)acc;
    round_trip(&f);
    lc_st_close(&f);
    return 0;
}

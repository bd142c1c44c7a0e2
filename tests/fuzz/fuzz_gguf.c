/* fuzz_gguf.c — lc_gguf_parse on arbitrary bytes, then everything a loader
 * would touch.
 *
 * On success: every metadata value is walked (each numeric element read as
 * int and float, each string's bytes read: ASan flags any byte outside the
 * input), each key is found by lc_gguf_find_kv and every typed getter either
 * succeeds or fails with a one-line message; every tensor's data lies inside
 * the input and agrees with its shape and type, lc_gguf_find_tensor finds it,
 * and its first row is dequantized whole and as a tile (the tile must equal
 * that part of the row, bit for bit). On failure the message must be a single
 * non-empty line and f left empty. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/gguf.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk_kv(const lc_gguf_file *f, const lc_gguf_kv *kv, const uint8_t *data,
                    size_t size)
{
    FUZZ_CHECK(lc_gguf_find_kv(f, kv->key) == kv);
    FUZZ_CHECK(kv->type <= LC_GGUF_F64 && (kv->type != LC_GGUF_ARRAY || kv->elem != LC_GGUF_ARRAY));
    lc_gguf_vtype t = kv->type == LC_GGUF_ARRAY ? kv->elem : kv->type;
    volatile double acc = 0;
    if (t == LC_GGUF_STRING) {
        FUZZ_CHECK(kv->strs != NULL);
        for (uint64_t i = 0; i < kv->n; i++) {
            const uint8_t *p = (const uint8_t *)kv->strs[i].ptr;
            FUZZ_CHECK(p >= data && kv->strs[i].len <= (uint64_t)(data + size - p));
            for (uint64_t k = 0; k < kv->strs[i].len; k++)
                acc += p[k];
        }
    } else {
        for (uint64_t i = 0; i < kv->n; i++)
            acc += (double)lc_gguf_kv_int(kv, i) + lc_gguf_kv_float(kv, i);
    }
    (void)acc;
    lc_error err;
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    int64_t i64;
    float f32;
    int b;
    lc_gguf_str s;
    const lc_gguf_kv *arr;
#define GET(call)                                                                   \
    do {                                                                            \
        err.msg[0] = '\0';                                                          \
        if ((call) != 0)                                                            \
            fuzz_check_error(&err);                                                 \
    } while (0)
    GET(lc_gguf_get_u32(f, kv->key, &u32, &err));
    GET(lc_gguf_get_i32(f, kv->key, &i32, &err));
    GET(lc_gguf_get_u64(f, kv->key, &u64, &err));
    GET(lc_gguf_get_f32(f, kv->key, &f32, &err));
    GET(lc_gguf_get_bool(f, kv->key, &b, &err));
    GET(lc_gguf_get_str(f, kv->key, &s, &err));
    GET(lc_gguf_get_int(f, kv->key, &i64, &err));
    GET(lc_gguf_get_arr(f, kv->key, LC_GGUF_STRING, &arr, &err));
    GET(lc_gguf_get_arr(f, kv->key, LC_GGUF_U32, &arr, &err));
#undef GET
}

static void walk_tensor(const lc_gguf_file *f, const lc_gguf_tensor *t, const uint8_t *data,
                        size_t size)
{
    FUZZ_CHECK(lc_gguf_find_tensor(f, t->name) == t);
    const lc_ggml_type_info *ti = lc_ggml_type_get(t->type);
    FUZZ_CHECK(ti != NULL);
    FUZZ_CHECK(t->n_dims >= 1 && t->n_dims <= LC_GGUF_MAX_DIMS);
    uint64_t numel = 1;
    for (int d = 0; d < LC_GGUF_MAX_DIMS; d++) {
        FUZZ_CHECK(t->ne[d] >= 1 && (d < t->n_dims || t->ne[d] == 1));
        numel *= (uint64_t)t->ne[d];
    }
    FUZZ_CHECK(numel == t->numel && t->nrows * (uint64_t)t->ne[0] == numel);
    FUZZ_CHECK(t->ne[0] % ti->block_size == 0);
    FUZZ_CHECK(t->row_bytes == (uint64_t)t->ne[0] / ti->block_size * ti->type_size);
    FUZZ_CHECK(t->nbytes == t->row_bytes * t->nrows);
    FUZZ_CHECK(t->offset % f->alignment == 0);
    FUZZ_CHECK(t->data >= data && t->nbytes <= (uint64_t)(data + size - t->data));
    FUZZ_CHECK(t->data == data + f->data_start + t->offset);
    if (!ti->can_dequant)
        return;
    int64_t n0 = t->ne[0];
    float *row = malloc((size_t)n0 * sizeof *row), *tile = malloc((size_t)n0 * sizeof *tile);
    FUZZ_CHECK(row && tile);
    lc_error err;
    FUZZ_CHECK(lc_gguf_dequant_row(f, t, 0, 0, n0, row, &err) == 0);
    int64_t k0 = (int64_t)(t->offset % (uint64_t)n0), n = (n0 - k0) / 2 + 1;
    if (k0 + n > n0)
        n = n0 - k0;
    FUZZ_CHECK(lc_gguf_dequant_row(f, t, 0, k0, n, tile, &err) == 0);
    FUZZ_CHECK(memcmp(tile, row + k0, (size_t)n * sizeof *tile) == 0);
    err.msg[0] = '\0';
    FUZZ_CHECK(lc_gguf_dequant_row(f, t, t->nrows, 0, 1, tile, &err) == -1);
    fuzz_check_error(&err);
    free(row);
    free(tile);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lc_gguf_file f;
    lc_error err;
    err.msg[0] = '\0';
    if (lc_gguf_parse(&f, data, size, "fuzz.gguf", &err) != 0) {
        fuzz_check_error(&err);
        FUZZ_CHECK(f.kvs == NULL && f.tensors == NULL && f.path == NULL);
        return 0;
    }
    FUZZ_CHECK(f.version == 2 || f.version == 3);
    FUZZ_CHECK(f.alignment && !(f.alignment & (f.alignment - 1)));
    FUZZ_CHECK(f.data_start % f.alignment == 0);
    for (size_t i = 0; i < f.n_kv; i++)
        walk_kv(&f, &f.kvs[i], data, size);
    for (size_t i = 0; i < f.n_tensors; i++)
        walk_tensor(&f, &f.tensors[i], data, size);
    FUZZ_CHECK(lc_gguf_find_kv(&f, "") == NULL && lc_gguf_find_tensor(&f, "") == NULL);
    lc_gguf_close(&f);
    return 0;
}

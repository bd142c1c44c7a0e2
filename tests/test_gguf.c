/* test_gguf.c — GGUF reader (data/gguf.c) and ggml dequantizers
 * (data/ggml_quants.c).
 *
 * - tests/fixtures/gguf/types.gguf (scripts/make_gguf_fixtures.py, gguf-py):
 *   every tensor of every type dequantizes bit-identically (memcmp of the
 *   float32 rows) to gguf-py's gguf.quants.dequantize, stored as F32 tensors
 *   in types_expected.gguf; any [k0, k0+n) of a row gives the same bits as the
 *   whole row (tile by tile use); metadata of every value type reads back.
 * - lc_f16_to_f32 (the branch-free half conversion every F16 weight and
 *   ggml block scale goes through) on all 65536 halves against the
 *   compiler's own _Float16 -> float conversion.
 * - Hostile images built in memory (a small GGUF writer below), one rule broken
 *   each; every one refused with a one-line message naming the file, the place
 *   and the rule, and every prefix of a valid file refused as truncated. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/dtype.h"
#include "data/gguf.h"
#include "helpers.h"

#if defined(__FLT16_MAX__) /* the compiler has _Float16 (GCC >= 12 on x86-64) */
Test(f16, every_half_converts_exactly)
{
    int nan_count = 0;
    for (uint32_t b = 0; b <= 0xffffu; b++) {
        uint16_t bits = (uint16_t)b;
        _Float16 h;
        memcpy(&h, &bits, sizeof h);
        float want = (float)h, got = lc_f16_to_f32(bits);
        uint32_t wb, gb;
        memcpy(&wb, &want, 4);
        memcpy(&gb, &got, 4);
        if (isnan(want)) { /* the hardware may quiet a signalling NaN; lorac keeps it */
            cr_assert(isnan(got) && (gb >> 31) == (wb >> 31), "half 0x%04x", b);
            cr_assert_eq(gb & 0x1fffu, 0, "half 0x%04x: payload moved", b);
            cr_assert_eq((gb >> 13) & 0x1ffu, (uint32_t)(b & 0x1ffu), "half 0x%04x", b);
            nan_count++;
            continue;
        }
        cr_assert_eq(gb, wb, "half 0x%04x: 0x%08x, want 0x%08x", b, gb, wb);
    }
    cr_assert_eq(nan_count, 2 * 1023);
}
#endif

/* ------------------------------------------------------------ fixtures */

Test(gguf_fixture, every_type_bit_identical_to_gguf_py)
{
    lc_gguf_file f, e;
    lc_error err = {{0}};
    cr_assert_eq(lc_gguf_open(&f, lc_test_fixture("gguf/types.gguf"), &err), 0, "%s", err.msg);
    cr_assert_eq(lc_gguf_open(&e, lc_test_fixture("gguf/types_expected.gguf"), &err), 0, "%s",
                 err.msg);
    cr_assert_eq(f.version, 3);
    cr_assert_eq(f.alignment, 64);
    cr_assert_eq(e.alignment, 32);
    cr_assert_eq(f.n_tensors, e.n_tensors);
    int seen[64] = {0};
    size_t n_ok = 0, n_types = 0;
    uint64_t n_values = 0;
    for (size_t i = 0; i < f.n_tensors; i++) {
        const lc_gguf_tensor *t = &f.tensors[i];
        const lc_gguf_tensor *x = lc_gguf_find_tensor(&e, t->name);
        cr_assert_not_null(x, "no expected values for %s", t->name);
        cr_assert_eq(x->type, LC_GGML_F32);
        cr_assert_eq(t->n_dims, x->n_dims, "%s", t->name);
        for (int d = 0; d < LC_GGUF_MAX_DIMS; d++)
            cr_assert_eq(t->ne[d], x->ne[d], "%s ne[%d]", t->name, d);
        cr_assert_eq(lc_gguf_find_tensor(&f, t->name), t);
        float *row = malloc((size_t)t->ne[0] * sizeof *row);
        for (uint64_t r = 0; r < t->nrows; r++) {
            cr_assert_eq(lc_gguf_dequant_row(&f, t, r, 0, t->ne[0], row, &err), 0, "%s", err.msg);
            cr_assert(memcmp(row, x->data + r * x->row_bytes, x->row_bytes) == 0,
                      "%s row %llu differs from gguf-py", t->name, (unsigned long long)r);
            n_values += (uint64_t)t->ne[0];
        }
        free(row);
        if (t->type < 64 && !seen[t->type]++)
            n_types++;
        n_ok++;
    }
    cr_assert_eq(n_types, 13, "types covered: %zu", n_types);
    fprintf(stderr, "gguf: %zu tensors of %zu types (%llu values) bit-identical to gguf-py\n",
            n_ok, n_types, (unsigned long long)n_values);
    lc_gguf_close(&f);
    lc_gguf_close(&e);
}

/* Any range of a row, decoded alone, equals that range of the whole row. */
Test(gguf_fixture, tiles_equal_whole_rows)
{
    lc_gguf_file f;
    lc_error err = {{0}};
    cr_assert_eq(lc_gguf_open(&f, lc_test_fixture("gguf/types.gguf"), &err), 0, "%s", err.msg);
    uint64_t seed = 14;
    for (size_t i = 0; i < f.n_tensors; i++) {
        const lc_gguf_tensor *t = &f.tensors[i];
        int64_t n0 = t->ne[0];
        float *whole = malloc((size_t)n0 * sizeof *whole), *part = malloc((size_t)n0 * 4);
        for (uint64_t r = 0; r < t->nrows; r++) {
            cr_assert_eq(lc_gguf_dequant_row(&f, t, r, 0, n0, whole, &err), 0);
            for (int k = 0; k < 20; k++) {
                int64_t k0 = (int64_t)(lc_test_splitmix64(&seed) % (uint64_t)n0);
                int64_t n = (int64_t)(lc_test_splitmix64(&seed) % (uint64_t)(n0 - k0 + 1));
                cr_assert_eq(lc_gguf_dequant_row(&f, t, r, k0, n, part, &err), 0);
                cr_assert(memcmp(part, whole + k0, (size_t)n * 4) == 0, "%s row %llu [%lld,+%lld)",
                          t->name, (unsigned long long)r, (long long)k0, (long long)n);
            }
        }
        free(whole);
        free(part);
    }
    lc_gguf_close(&f);
}

Test(gguf_fixture, metadata_of_every_type)
{
    lc_gguf_file f;
    lc_error err = {{0}};
    cr_assert_eq(lc_gguf_open(&f, lc_test_fixture("gguf/types.gguf"), &err), 0, "%s", err.msg);
    lc_gguf_str s;
    cr_assert_eq(lc_gguf_get_str(&f, "general.architecture", &s, &err), 0, "%s", err.msg);
    cr_assert(s.len == 10 && memcmp(s.ptr, "lorac-test", 10) == 0);
    uint32_t u32;
    cr_assert_eq(lc_gguf_get_u32(&f, "general.alignment", &u32, &err), 0);
    cr_assert_eq(u32, 64);
    const lc_gguf_kv *kv;
    cr_assert_eq(lc_gguf_find_kv(&f, "test.u8")->type, LC_GGUF_U8);
    cr_assert_eq(lc_gguf_kv_int(lc_gguf_find_kv(&f, "test.u8"), 0), 200);
    cr_assert_eq(lc_gguf_kv_int(lc_gguf_find_kv(&f, "test.i8"), 0), -100);
    cr_assert_eq(lc_gguf_kv_int(lc_gguf_find_kv(&f, "test.u16"), 0), 60000);
    cr_assert_eq(lc_gguf_kv_int(lc_gguf_find_kv(&f, "test.i16"), 0), -30000);
    cr_assert_eq(lc_gguf_get_u32(&f, "test.u32", &u32, &err), 0);
    cr_assert_eq(u32, 4000000000u);
    int32_t i32;
    cr_assert_eq(lc_gguf_get_i32(&f, "test.i32", &i32, &err), 0);
    cr_assert_eq(i32, -2000000000);
    float f32;
    cr_assert_eq(lc_gguf_get_f32(&f, "test.f32", &f32, &err), 0);
    cr_assert_eq(f32, 0.15625f);
    int b;
    cr_assert_eq(lc_gguf_get_bool(&f, "test.bool", &b, &err), 0);
    cr_assert_eq(b, 1);
    cr_assert_eq(lc_gguf_get_str(&f, "test.str", &s, &err), 0);
    cr_assert(s.len == strlen("héllo, GGUF ✓") && memcmp(s.ptr, "héllo, GGUF ✓", s.len) == 0);
    uint64_t u64;
    cr_assert_eq(lc_gguf_get_u64(&f, "test.u64", &u64, &err), 0);
    cr_assert_eq(u64, 18000000000000000000ull);
    int64_t i64;
    cr_assert_eq(lc_gguf_get_int(&f, "test.i64", &i64, &err), 0);
    cr_assert_eq(i64, -9000000000000000000ll);
    cr_assert_eq(lc_gguf_get_int(&f, "test.u16", &i64, &err), 0);
    cr_assert_eq(i64, 60000);
    cr_assert_eq(lc_gguf_kv_float(lc_gguf_find_kv(&f, "test.f64"), 0), -2.5e300);

    cr_assert_eq(lc_gguf_get_arr(&f, "test.arr.u8", LC_GGUF_U8, &kv, &err), 0);
    cr_assert(kv->n == 3 && lc_gguf_kv_int(kv, 2) == 255);
    cr_assert_eq(lc_gguf_get_arr(&f, "test.arr.i8", LC_GGUF_I8, &kv, &err), 0);
    cr_assert(kv->n == 3 && lc_gguf_kv_int(kv, 0) == -128 && lc_gguf_kv_int(kv, 2) == 127);
    cr_assert_eq(lc_gguf_get_arr(&f, "test.arr.u16", LC_GGUF_U16, &kv, &err), 0);
    cr_assert(lc_gguf_kv_int(kv, 1) == 65535);
    cr_assert_eq(lc_gguf_get_arr(&f, "test.arr.i16", LC_GGUF_I16, &kv, &err), 0);
    cr_assert(lc_gguf_kv_int(kv, 0) == -32768 && lc_gguf_kv_int(kv, 1) == 32767);
    cr_assert_eq(lc_gguf_get_arr(&f, "test.arr.u32", LC_GGUF_U32, &kv, &err), 0);
    cr_assert(kv->n == 3 && lc_gguf_kv_int(kv, 2) == 4294967295ll);
    cr_assert_eq(lc_gguf_get_arr(&f, "test.arr.i32", LC_GGUF_I32, &kv, &err), 0);
    cr_assert(lc_gguf_kv_int(kv, 0) == -1 && lc_gguf_kv_int(kv, 2) == 7);
    cr_assert_eq(lc_gguf_get_arr(&f, "test.arr.f32", LC_GGUF_F32, &kv, &err), 0);
    cr_assert(lc_gguf_kv_float(kv, 1) == -1.25);
    cr_assert_eq(lc_gguf_get_arr(&f, "test.arr.bool", LC_GGUF_BOOL, &kv, &err), 0);
    cr_assert(kv->n == 3 && lc_gguf_kv_int(kv, 0) == 1 && lc_gguf_kv_int(kv, 1) == 0);
    cr_assert_eq(lc_gguf_get_arr(&f, "test.arr.u64", LC_GGUF_U64, &kv, &err), 0);
    cr_assert(kv->n == 2 && (uint64_t)lc_gguf_kv_int(kv, 1) == UINT64_MAX);
    cr_assert_eq(lc_gguf_get_arr(&f, "test.arr.i64", LC_GGUF_I64, &kv, &err), 0);
    cr_assert(lc_gguf_kv_int(kv, 0) == INT64_MIN && lc_gguf_kv_int(kv, 1) == INT64_MAX);
    cr_assert_eq(lc_gguf_get_arr(&f, "test.arr.f64", LC_GGUF_F64, &kv, &err), 0);
    cr_assert(lc_gguf_kv_float(kv, 0) == 1e-300 && signbit(lc_gguf_kv_float(kv, 1)));
    cr_assert_eq(lc_gguf_get_arr(&f, "test.arr.str", LC_GGUF_STRING, &kv, &err), 0);
    const char *want[] = {"a", "", "ünï", "<0x0A>"};
    cr_assert_eq(kv->n, 4);
    for (int i = 0; i < 4; i++)
        cr_assert(kv->strs[i].len == strlen(want[i]) &&
                      memcmp(kv->strs[i].ptr, want[i], kv->strs[i].len) == 0,
                  "string %d", i);

    /* typed lookups refuse another type, naming the key and both types */
    cr_assert_eq(lc_gguf_get_u32(&f, "test.str", &u32, &err), -1);
    lc_test_assert_msg_has(&err, "key 'test.str' is string, expected uint32");
    cr_assert_eq(lc_gguf_get_u64(&f, "test.u32", &u64, &err), -1);
    lc_test_assert_msg_has(&err, "key 'test.u32' is uint32, expected uint64");
    cr_assert_eq(lc_gguf_get_str(&f, "test.arr.str", &s, &err), -1);
    lc_test_assert_msg_has(&err, "is an array of string, expected string");
    cr_assert_eq(lc_gguf_get_arr(&f, "test.arr.u32", LC_GGUF_I32, &kv, &err), -1);
    lc_test_assert_msg_has(&err, "is an array of uint32, expected an array of int32");
    cr_assert_eq(lc_gguf_get_f32(&f, "no.such.key", &f32, &err), -1);
    lc_test_assert_msg_has(&err, "key 'no.such.key' is missing");
    cr_assert_eq(lc_gguf_get_int(&f, "test.u64", &i64, &err), -1);
    lc_test_assert_msg_has(&err, "is too large");
    cr_assert_eq(lc_gguf_get_int(&f, "test.f32", &i64, &err), -1);
    lc_test_assert_msg_has(&err, "is float32, expected an integer");
    cr_assert(strstr(err.msg, "types.gguf"), "%s", err.msg);
    lc_gguf_close(&f);
}

/* ------------------------------------------------- an in-memory GGUF writer */

typedef struct gb {
    uint8_t *p;
    size_t n, cap;
} gb;

static void gb_raw(gb *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        cr_assert_not_null(b->p);
    }
    if (n)
        memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void gb_le(gb *b, uint64_t v, int n)
{
    uint8_t t[8];
    for (int i = 0; i < n; i++)
        t[i] = (uint8_t)(v >> (8 * i));
    gb_raw(b, t, (size_t)n);
}

static void gb_u32(gb *b, uint32_t v) { gb_le(b, v, 4); }
static void gb_u64(gb *b, uint64_t v) { gb_le(b, v, 8); }

static void gb_str(gb *b, const char *s)
{
    gb_u64(b, strlen(s));
    gb_raw(b, s, strlen(s));
}

static void kv_u32(gb *b, const char *key, uint32_t v)
{
    gb_str(b, key);
    gb_u32(b, LC_GGUF_U32);
    gb_u32(b, v);
}

static void kv_str(gb *b, const char *key, const char *v)
{
    gb_str(b, key);
    gb_u32(b, LC_GGUF_STRING);
    gb_str(b, v);
}

typedef struct tinfo {
    const char *name;
    uint32_t nd;
    uint64_t ne[5];
    uint32_t type;
    uint64_t off;
} tinfo;

/* A GGUF v3 image: header, n_kv entries already encoded in kvs, the tensor
 * infos, padding to `align`, then data_bytes bytes of data. */
static uint8_t *make(uint32_t version, const gb *kvs, uint64_t n_kv, const tinfo *ts,
                     size_t nt, uint32_t align, size_t data_bytes, size_t *size)
{
    gb b = {0};
    gb_raw(&b, "GGUF", 4);
    gb_u32(&b, version);
    gb_u64(&b, nt);
    gb_u64(&b, n_kv);
    if (kvs)
        gb_raw(&b, kvs->p, kvs->n);
    for (size_t i = 0; i < nt; i++) {
        gb_str(&b, ts[i].name);
        gb_u32(&b, ts[i].nd);
        for (uint32_t d = 0; d < ts[i].nd && d < 5; d++)
            gb_u64(&b, ts[i].ne[d]);
        gb_u32(&b, ts[i].type);
        gb_u64(&b, ts[i].off);
    }
    while (b.n % align)
        gb_raw(&b, "\0", 1);
    for (size_t i = 0; i < data_bytes; i++)
        gb_raw(&b, &(uint8_t){(uint8_t)(i * 13 + 5)}, 1);
    *size = b.n;
    return b.p;
}

/* The valid baseline: two kvs, t0 F32 [8, 2] at 0 (64 B), t1 Q8_0 [64] at 64 (68 B). */
static const tinfo BASE_T[2] = {{"t0", 2, {8, 2}, LC_GGML_F32, 0},
                                {"t1", 1, {64}, LC_GGML_Q8_0, 64}};

static uint8_t *base(size_t *size)
{
    gb kvs = {0};
    kv_u32(&kvs, "general.alignment", 32);
    kv_str(&kvs, "general.architecture", "llama");
    uint8_t *p = make(3, &kvs, 2, BASE_T, 2, 32, 64 + 68, size);
    free(kvs.p);
    return p;
}

static void expect_fail(const uint8_t *buf, size_t size, const char *want)
{
    lc_gguf_file f;
    lc_error err = {{0}};
    int rc = lc_gguf_parse(&f, buf, size, "bad.gguf", &err);
    cr_assert_eq(rc, -1, "parse should fail (want '%s')", want);
    lc_test_assert_msg_has(&err, want);
    cr_assert(strncmp(err.msg, "bad.gguf: ", 10) == 0, "message '%s' should name the file",
              err.msg);
    cr_assert_null(strchr(err.msg, '\n'), "one line: '%s'", err.msg);
    cr_assert(f.kvs == NULL && f.tensors == NULL && f.path == NULL);
}

/* Parses a kv section of one entry (kvs) with no tensors; expects want. */
static void expect_kv_fail(gb *kvs, uint64_t n_kv, const char *want)
{
    size_t size;
    uint8_t *p = make(3, kvs, n_kv, NULL, 0, 1, 0, &size);
    expect_fail(p, size, want);
    free(p);
    free(kvs->p);
    *kvs = (gb){0};
}

/* One tensor (plus the baseline kvs) with the given info; expects want. */
static void expect_tensor_fail(const tinfo *ts, size_t nt, size_t data, const char *want)
{
    gb kvs = {0};
    kv_str(&kvs, "general.architecture", "llama");
    size_t size;
    uint8_t *p = make(3, &kvs, 1, ts, nt, 32, data, &size);
    expect_fail(p, size, want);
    free(p);
    free(kvs.p);
}

Test(gguf_hostile, baseline_parses)
{
    size_t size;
    uint8_t *p = base(&size);
    lc_gguf_file f;
    lc_error err = {{0}};
    cr_assert_eq(lc_gguf_parse(&f, p, size, "ok.gguf", &err), 0, "%s", err.msg);
    cr_assert_eq(f.n_tensors, 2);
    const lc_gguf_tensor *t1 = lc_gguf_find_tensor(&f, "t1");
    cr_assert(t1 && t1->nbytes == 68 && t1->row_bytes == 68 && t1->nrows == 1);
    cr_assert_eq(t1->data, p + f.data_start + 64);
    cr_assert_eq(f.data_start % 32, 0);
    const lc_gguf_tensor *t0 = lc_gguf_find_tensor(&f, "t0");
    cr_assert(t0 && t0->ne[0] == 8 && t0->ne[1] == 2 && t0->ne[2] == 1 && t0->nrows == 2);
    cr_assert_null(lc_gguf_find_tensor(&f, "t2"));
    float row[64];
    cr_assert_eq(lc_gguf_dequant_row(&f, t1, 1, 0, 64, row, &err), -1);
    lc_test_assert_msg_has(&err, "tensor 't1': row 1 elements [0, +64) outside its 1 rows");
    cr_assert_eq(lc_gguf_dequant_row(&f, t1, 0, 60, 5, row, &err), -1);
    lc_gguf_close(&f);

    /* every strict prefix is refused as truncated, whatever section it cuts */
    for (size_t n = 0; n < size; n++) {
        lc_gguf_file g;
        cr_assert_eq(lc_gguf_parse(&g, p, n, "cut.gguf", &err), -1, "prefix of %zu bytes", n);
        cr_assert(strncmp(err.msg, "cut.gguf: ", 10) == 0 && !strchr(err.msg, '\n'));
        /* cut in the header or infos: "truncated"; cut in the data: the
         * tensor whose data runs past the end of the file */
        cr_assert(strstr(err.msg, "truncated") || strstr(err.msg, "runs past the end of the data"),
                  "prefix of %zu bytes: %s", n, err.msg);
    }
    free(p);
    fprintf(stderr, "gguf: %zu truncations refused\n", size);
}

Test(gguf_hostile, header)
{
    size_t size;
    uint8_t *p = base(&size);
    p[0] = 'G', p[1] = 'G', p[2] = 'M', p[3] = 'L';
    expect_fail(p, size, "header: bad magic 0x4c4d4747");
    free(p);
    p = make(1, NULL, 0, NULL, 0, 1, 0, &size);
    expect_fail(p, size, "GGUF version 1 is not supported (only 2 and 3)");
    free(p);
    p = make(4, NULL, 0, NULL, 0, 1, 0, &size);
    expect_fail(p, size, "GGUF version 4 is not supported");
    free(p);
    p = make(0x03000000u, NULL, 0, NULL, 0, 1, 0, &size);
    expect_fail(p, size, "big-endian GGUF");
    free(p);
    p = make(2, NULL, 0, NULL, 0, 1, 0, &size); /* v2: same layout, accepted */
    lc_gguf_file f;
    lc_error err;
    cr_assert_eq(lc_gguf_parse(&f, p, size, "v2.gguf", &err), 0, "%s", err.msg);
    cr_assert_eq(f.version, 2);
    lc_gguf_close(&f);
    /* counts: over the limits, and within them but more than the bytes left */
    memset(p + 8, 0, 16);
    p[8 + 5] = 1; /* tensor count 2^40 */
    expect_fail(p, size, "tensor count 1099511627776 exceeds the limit");
    memset(p + 8, 0, 16);
    memset(p + 16, 0xff, 8); /* kv count 2^64-1 */
    expect_fail(p, size, "kv count 18446744073709551615 exceeds the limit");
    memset(p + 16, 0, 8);
    p[16] = 0xe8, p[17] = 0x03; /* 1000 kvs in 0 bytes */
    expect_fail(p, size, "truncated: 1000 metadata entries and 0 tensor infos need at least");
    free(p);
}

Test(gguf_hostile, metadata)
{
    gb k = {0};
    gb_u64(&k, 1000); /* key length past the end */
    gb_raw(&k, "abcdefghijklmn", 14);
    expect_kv_fail(&k, 1, "metadata entry 0: truncated: key of 1000 bytes");
    gb_u64(&k, UINT64_MAX); /* key length 2^64-1 */
    gb_raw(&k, "abcdefghijklmn", 14);
    expect_kv_fail(&k, 1, "truncated: key of 18446744073709551615 bytes");
    gb_str(&k, ""); /* empty key */
    gb_u32(&k, LC_GGUF_U8);
    gb_raw(&k, "\1\1\1\1\1", 5);
    expect_kv_fail(&k, 1, "metadata entry 0: key is empty");
    gb_u64(&k, 3);
    gb_raw(&k, "a\0b", 3);
    gb_u32(&k, LC_GGUF_U32);
    gb_u32(&k, 1);
    expect_kv_fail(&k, 1, "key contains a NUL byte");
    {
        char *big = malloc(70000);
        memset(big, 'k', 69999);
        big[69999] = 0;
        kv_u32(&k, big, 1);
        free(big);
        expect_kv_fail(&k, 1, "key is 69999 bytes long, at most 65535 allowed");
    }
    gb_str(&k, "x.type"); /* unknown value type */
    gb_u32(&k, 13);
    gb_u64(&k, 0);
    expect_kv_fail(&k, 1, "key 'x.type': unknown value type 13");
    gb_str(&k, "x.s"); /* string value past the end */
    gb_u32(&k, LC_GGUF_STRING);
    gb_u64(&k, 50);
    gb_raw(&k, "short", 5);
    expect_kv_fail(&k, 1, "key 'x.s': truncated: string value of 50 bytes");
    gb_str(&k, "x.nested"); /* array of arrays */
    gb_u32(&k, LC_GGUF_ARRAY);
    gb_u32(&k, LC_GGUF_ARRAY);
    gb_u64(&k, 1);
    expect_kv_fail(&k, 1, "key 'x.nested': arrays of arrays are not supported");
    gb_str(&k, "x.elem"); /* unknown element type */
    gb_u32(&k, LC_GGUF_ARRAY);
    gb_u32(&k, 99);
    gb_u64(&k, 1);
    expect_kv_fail(&k, 1, "key 'x.elem': unknown array element type 99");
    gb_str(&k, "x.ovf"); /* u32 array whose byte size overflows 64 bits */
    gb_u32(&k, LC_GGUF_ARRAY);
    gb_u32(&k, LC_GGUF_U32);
    gb_u64(&k, 1ull << 62);
    gb_u64(&k, 0);
    expect_kv_fail(&k, 1, "key 'x.ovf': truncated: 4611686018427387904 uint32 values do not fit");
    gb_str(&k, "x.strs"); /* string array count past the end */
    gb_u32(&k, LC_GGUF_ARRAY);
    gb_u32(&k, LC_GGUF_STRING);
    gb_u64(&k, UINT64_MAX);
    gb_u64(&k, 0);
    expect_kv_fail(&k, 1, "key 'x.strs': truncated: 18446744073709551615 strings cannot fit");
    gb_str(&k, "x.strs2"); /* second string of an array runs past the end */
    gb_u32(&k, LC_GGUF_ARRAY);
    gb_u32(&k, LC_GGUF_STRING);
    gb_u64(&k, 2);
    gb_str(&k, "ok");
    gb_u64(&k, 9);
    gb_raw(&k, "abc", 3);
    expect_kv_fail(&k, 1, "key 'x.strs2': truncated: array string of 9 bytes");
    gb_str(&k, "x.bool"); /* bool 2 */
    gb_u32(&k, LC_GGUF_BOOL);
    gb_raw(&k, "\2\0\0\0\0", 5);
    expect_kv_fail(&k, 1, "key 'x.bool': bool value 2 is not 0 or 1");
    gb_str(&k, "x.bools");
    gb_u32(&k, LC_GGUF_ARRAY);
    gb_u32(&k, LC_GGUF_BOOL);
    gb_u64(&k, 3);
    gb_raw(&k, "\1\0\377", 3);
    expect_kv_fail(&k, 1, "key 'x.bools': bool value 255 in the array is not 0 or 1");
    kv_u32(&k, "dup", 1); /* duplicate key */
    kv_str(&k, "dup", "two");
    expect_kv_fail(&k, 2, "key 'dup': duplicate key name (entries 0 and 1)");
    kv_u32(&k, "general.alignment", 0);
    expect_kv_fail(&k, 1, "key 'general.alignment': alignment 0 is not a power of two");
    kv_u32(&k, "general.alignment", 48);
    expect_kv_fail(&k, 1, "alignment 48 is not a power of two");
    gb_str(&k, "general.alignment");
    gb_u32(&k, LC_GGUF_U64);
    gb_u64(&k, 32);
    expect_kv_fail(&k, 1, "key 'general.alignment': is uint64, expected uint32");

    /* an empty array (gguf-py cannot write one) is fine */
    gb_str(&k, "x.empty");
    gb_u32(&k, LC_GGUF_ARRAY);
    gb_u32(&k, LC_GGUF_I32);
    gb_u64(&k, 0);
    gb_str(&k, "x.nostr");
    gb_u32(&k, LC_GGUF_ARRAY);
    gb_u32(&k, LC_GGUF_STRING);
    gb_u64(&k, 0);
    size_t size;
    uint8_t *p = make(3, &k, 2, NULL, 0, 1, 0, &size);
    lc_gguf_file f;
    lc_error err;
    cr_assert_eq(lc_gguf_parse(&f, p, size, "empty.gguf", &err), 0, "%s", err.msg);
    const lc_gguf_kv *kv;
    cr_assert_eq(lc_gguf_get_arr(&f, "x.empty", LC_GGUF_I32, &kv, &err), 0);
    cr_assert_eq(kv->n, 0);
    cr_assert_eq(lc_gguf_get_arr(&f, "x.nostr", LC_GGUF_STRING, &kv, &err), 0);
    cr_assert_eq(kv->n, 0);
    lc_gguf_close(&f);
    free(p);
    free(k.p);
}

Test(gguf_hostile, tensor_infos)
{
    tinfo t[2] = {BASE_T[0], BASE_T[1]};
    t[0].name = "";
    expect_tensor_fail(t, 1, 64, "tensor info 0: tensor name is empty");
    t[0] = BASE_T[0];
    t[1].name = "t0";
    expect_tensor_fail(t, 2, 64 + 68, "tensor 't0': duplicate tensor name (entries 0 and 1)");
    t[1] = BASE_T[1];
    t[0].nd = 0;
    expect_tensor_fail(t, 1, 64, "tensor 't0': n_dims 0 is not in 1..4");
    t[0].nd = 5;
    expect_tensor_fail(t, 1, 64, "tensor 't0': n_dims 5 is not in 1..4");
    t[0] = BASE_T[0];
    t[0].ne[1] = 0;
    expect_tensor_fail(t, 1, 64, "tensor 't0': dimension ne[1] is 0");
    t[0].ne[0] = 1ull << 32, t[0].ne[1] = 1ull << 32;
    expect_tensor_fail(t, 1, 64, "shape ne=[4294967296, 4294967296] overflows");
    t[0].ne[0] = UINT64_MAX, t[0].ne[1] = 1;
    expect_tensor_fail(t, 1, 64, "overflows a 63-bit element count");
    t[0].ne[0] = 1ull << 62;
    expect_tensor_fail(t, 1, 64, "tensor 't0': F32 [4611686018427387904, 1] overflows a 64-bit byte size");
    t[0] = BASE_T[0];
    t[0].type = 4;
    expect_tensor_fail(t, 1, 64, "tensor 't0': unknown ggml type 4");
    t[0].type = 1000;
    expect_tensor_fail(t, 1, 64, "unknown ggml type 1000");
    t[1].ne[0] = 33;
    expect_tensor_fail(t + 1, 1, 68,
                       "tensor 't1': row length ne[0] = 33 is not a multiple of Q8_0's block size 32");
    t[1] = BASE_T[1];
    t[1].off = 4;
    expect_tensor_fail(t + 1, 1, 72, "tensor 't1': data offset 4 is not a multiple of the alignment 32");
    t[1].off = 64;
    expect_tensor_fail(t + 1, 1, 64 + 67, "tensor 't1': data at offset 64 (+68 bytes) runs past the end");
    t[1].off = UINT64_MAX - 31;
    expect_tensor_fail(t + 1, 1, 200, "runs past the end of the data section (200 bytes)");
    t[0] = BASE_T[0];
    t[1] = BASE_T[1];
    t[1].off = 32; /* t0 is [0, 64) */
    expect_tensor_fail(t, 2, 64 + 68, "tensor 't1': data [32, 100) overlaps tensor 't0' [0, 64)");
    t[1].off = 0; /* same start */
    expect_tensor_fail(t, 2, 64 + 68, "overlaps tensor");
    t[1] = BASE_T[1];
    t[0].name = "bad\nname\x01";
    t[0].ne[1] = 0;
    expect_tensor_fail(t, 1, 64, "tensor 'bad?name?': dimension ne[1] is 0");

    /* a type known but without a dequantizer opens; dequantizing it is refused */
    tinfo iq = {"iq", 1, {256}, 16 /* IQ2_XXS */, 0};
    gb kvs = {0};
    size_t size;
    uint8_t *p = make(3, &kvs, 0, &iq, 1, 32, 66, &size);
    lc_gguf_file f;
    lc_error err;
    cr_assert_eq(lc_gguf_parse(&f, p, size, "iq.gguf", &err), 0, "%s", err.msg);
    float row[256];
    cr_assert_eq(lc_gguf_dequant_row(&f, &f.tensors[0], 0, 0, 256, row, &err), -1);
    lc_test_assert_msg_has(&err, "iq.gguf: tensor 'iq': ggml type IQ2_XXS cannot be dequantized");
    lc_gguf_close(&f);
    free(p);
    /* data section start past the end of the file */
    p = make(3, &kvs, 0, BASE_T, 1, 1, 0, &size);
    expect_fail(p, size, "truncated: the data section would start at offset");
    free(p);
}

Test(gguf_hostile, files)
{
    lc_gguf_file f;
    lc_error err;
    cr_assert_eq(lc_gguf_open(&f, "/nonexistent/x.gguf", &err), -1);
    lc_test_assert_msg_has(&err, "/nonexistent/x.gguf: cannot open");
    char *dir = lc_test_tmpdir();
    cr_assert_eq(lc_gguf_open(&f, dir, &err), -1);
    lc_test_assert_msg_has(&err, "not a regular file");
    char *empty = lc_test_write_file(dir, "empty.gguf", "", 0);
    cr_assert_eq(lc_gguf_open(&f, empty, &err), -1);
    lc_test_assert_msg_has(&err, "empty.gguf: header: truncated: magic needs 4 bytes");
    free(empty);
    lc_test_rm_rf(dir);
    free(dir);
}

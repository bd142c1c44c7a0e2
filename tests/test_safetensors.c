/* test_safetensors.c — safetensors reader/writer: round trip, the real
 * fixture, and broken inputs that must each fail with a specific message.
 * Broken images are built in memory (lc_st_parse), so each case states
 * exactly which rule it breaks. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/safetensors.h"
#include "helpers.h"

/* ---------------------------------------------------------------- helpers */

static bool exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

/* A safetensors image: u64 header length (hlen, or strlen(json) when
 * hlen == UINT64_MAX), the JSON, then data_len bytes of pattern. */
static unsigned char *image_hlen(const char *json, uint64_t hlen, size_t data_len,
                                 size_t *size)
{
    size_t jl = strlen(json);
    if (hlen == UINT64_MAX)
        hlen = jl;
    *size = 8 + jl + data_len;
    unsigned char *b = malloc(*size ? *size : 1);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(b + 8, json, jl);
    for (size_t i = 0; i < data_len; i++)
        b[8 + jl + i] = (unsigned char)(i * 7 + 1);
    return b;
}

static unsigned char *image(const char *json, size_t data_len, size_t *size)
{
    return image_hlen(json, UINT64_MAX, data_len, size);
}

/* Parses buf and asserts failure with a message containing want. */
static void expect_fail_buf(const unsigned char *buf, size_t size, const char *want)
{
    lc_st_file f;
    lc_error err = {{0}};
    int rc = lc_st_parse(&f, buf, size, "bad.safetensors", &err);
    cr_assert_eq(rc, -1, "parse should fail (want '%s')", want);
    lc_test_assert_msg_has(&err, want);
    cr_assert(strstr(err.msg, "bad.safetensors"), "message '%s' should name the file",
              err.msg);
    cr_assert_null(strchr(err.msg, '\n'), "message must be one line: '%s'", err.msg);
    cr_assert_null(f.tensors);
    cr_assert_null(f.path);
    lc_st_close(&f); /* safe on a failed parse */
}

static void expect_fail(const char *json, size_t data_len, const char *want)
{
    size_t size;
    unsigned char *b = image(json, data_len, &size);
    expect_fail_buf(b, size, want);
    free(b);
}

static void expect_ok(const char *json, size_t data_len, lc_st_file *f)
{
    size_t size;
    unsigned char *b = image(json, data_len, &size);
    lc_error err = {{0}};
    int rc = lc_st_parse(f, b, size, "ok.safetensors", &err);
    cr_assert_eq(rc, 0, "parse failed: %s", err.msg);
    lc_st_close(f);
    free(b);
}

/* --------------------------------------------------------------- round trip */

Test(safetensors, round_trip)
{
    char *dir = lc_test_tmpdir();
    char *path = lc_test_path_in(dir, "rt.safetensors");

    float a[6] = {1.5f, -2.0f, 3.25f, 0.0f, -0.0f, 1e-30f};
    uint16_t b[4] = {0x3f80, 0xbf80, 0x7fc0, 0x0001};
    int64_t c = -1234567890123LL;
    uint8_t e[3] = {1, 0, 255};
    int64_t sa[2] = {2, 3}, sb[1] = {4}, sd[2] = {0, 5}, se[1] = {3};
    const char *weird = "we\"ird\\name\n\xc3\xa9";
    lc_st_entry ents[5] = {
        {"z.weight", LC_DTYPE_F32, 2, sa, a},
        {"a.bias", LC_DTYPE_BF16, 1, sb, b},
        {"scalar", LC_DTYPE_I64, 0, NULL, &c},
        {"empty", LC_DTYPE_F16, 2, sd, NULL},
        {weird, LC_DTYPE_U8, 1, se, e},
    };
    const char *mk[2] = {"format", "note"};
    const char *mv[2] = {"pt", "quote\" back\\slash"};
    lc_error err = {{0}};
    cr_assert_eq(lc_st_write(path, ents, 5, mk, mv, 2, &err), 0, "%s", err.msg);

    char *tmp = lc_test_path_in(dir, "rt.safetensors.tmp");
    cr_assert_not(exists(tmp), "temporary left behind");

    lc_st_file f;
    cr_assert_eq(lc_st_open(&f, path, &err), 0, "%s", err.msg);
    cr_assert_eq(f.n_tensors, 5);
    cr_assert_str_eq(f.path, path);
    cr_assert_str_eq(lc_st_meta(&f, "format"), "pt");
    cr_assert_str_eq(lc_st_meta(&f, "note"), "quote\" back\\slash");
    cr_assert_null(lc_st_meta(&f, "nope"));

    /* header length is a multiple of 8 and data starts right after it */
    const unsigned char *m = f.map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | m[i];
    cr_assert_eq(hlen % 8, 0);
    cr_assert_eq(f.map_size, 8 + hlen + 24 + 8 + 8 + 0 + 3);

    const lc_st_tensor *t = lc_st_find(&f, "z.weight");
    cr_assert_not_null(t);
    cr_assert_eq(t->dtype, LC_DTYPE_F32);
    cr_assert_eq(t->ndim, 2);
    cr_assert_eq(t->shape[0], 2);
    cr_assert_eq(t->shape[1], 3);
    cr_assert_eq(t->numel, 6);
    /* layout: larger elements first, then by name (scalar I64 at 0), so
     * every tensor is aligned to its element size */
    cr_assert_eq(t->begin, 8);
    cr_assert_eq(t->data, m + 8 + hlen + 8);
    cr_assert_eq(memcmp(t->data, a, sizeof a), 0);

    t = lc_st_find(&f, "a.bias");
    cr_assert_not_null(t);
    cr_assert_eq(t->dtype, LC_DTYPE_BF16);
    cr_assert_eq(t->begin, 32);
    for (size_t i = 0; i < f.n_tensors; i++)
        cr_assert_eq(f.tensors[i].begin % lc_dtype_size(f.tensors[i].dtype), 0, "%s unaligned",
                     f.tensors[i].name);
    cr_assert_eq(memcmp(t->data, b, sizeof b), 0);

    t = lc_st_find(&f, "scalar");
    cr_assert_not_null(t);
    cr_assert_eq(t->dtype, LC_DTYPE_I64);
    cr_assert_eq(t->ndim, 0);
    cr_assert_eq(t->numel, 1);
    cr_assert_eq(memcmp(t->data, &c, 8), 0);

    t = lc_st_find(&f, "empty");
    cr_assert_not_null(t);
    cr_assert_eq(t->dtype, LC_DTYPE_F16);
    cr_assert_eq(t->numel, 0);
    cr_assert_eq(t->begin, t->end);
    cr_assert_eq(t->shape[1], 5);

    t = lc_st_find(&f, weird);
    cr_assert_not_null(t);
    cr_assert_eq(t->dtype, LC_DTYPE_U8);
    cr_assert_eq(memcmp(t->data, e, 3), 0);
    cr_assert_eq(t->end, f.map_size - 8 - hlen);

    cr_assert_null(lc_st_find(&f, "missing"));
    cr_assert_null(lc_st_find(&f, ""));
    /* sorted by name */
    for (size_t i = 1; i < f.n_tensors; i++)
        cr_assert_lt(strcmp(f.tensors[i - 1].name, f.tensors[i].name), 0);
    lc_st_close(&f);
    cr_assert_null(f.tensors);

    /* overwrite in place: the new file replaces the old one */
    cr_assert_eq(lc_st_write(path, ents, 1, NULL, NULL, 0, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_st_open(&f, path, &err), 0, "%s", err.msg);
    cr_assert_eq(f.n_tensors, 1);
    cr_assert_eq(f.n_meta, 0);
    lc_st_close(&f);

    lc_test_rm_rf(dir);
    free(tmp);
    free(path);
    free(dir);
}

Test(safetensors, write_zero_tensors)
{
    char *dir = lc_test_tmpdir();
    char *path = lc_test_path_in(dir, "empty.safetensors");
    lc_error err = {{0}};
    cr_assert_eq(lc_st_write(path, NULL, 0, NULL, NULL, 0, &err), 0, "%s", err.msg);
    lc_st_file f;
    cr_assert_eq(lc_st_open(&f, path, &err), 0, "%s", err.msg);
    cr_assert_eq(f.n_tensors, 0);
    cr_assert_eq(f.map_size, 16); /* "{}" padded to 8 */
    cr_assert_null(lc_st_find(&f, "x"));
    lc_st_close(&f);
    lc_test_rm_rf(dir);
    free(path);
    free(dir);
}

/* ------------------------------------------------------------------ fixture */

Test(safetensors, tiny_llama_fixture)
{
    lc_st_file f;
    lc_error err = {{0}};
    const char *path = lc_test_fixture("tiny-llama/model/model.safetensors");
    cr_assert_eq(lc_st_open(&f, path, &err), 0, "%s", err.msg);
    const lc_st_tensor *t = lc_st_find(&f, "model.embed_tokens.weight");
    cr_assert_not_null(t);
    cr_assert_eq(t->dtype, LC_DTYPE_F32);
    cr_assert_eq(t->ndim, 2);
    cr_assert_eq(t->shape[0], 512);
    cr_assert_eq(t->shape[1], 64);
    cr_assert_eq(t->numel, 512 * 64);
    cr_assert_eq(t->end - t->begin, 512 * 64 * 4);
    cr_assert_eq((const unsigned char *)t->data,
                 (const unsigned char *)f.map + 8 + 2144 + t->begin);
    t = lc_st_find(&f, "model.layers.0.input_layernorm.weight");
    cr_assert_not_null(t);
    cr_assert_eq(t->ndim, 1);
    cr_assert_eq(t->shape[0], 64);
    cr_assert_str_eq(lc_st_meta(&f, "format"), "pt");
    cr_assert_null(lc_st_find(&f, "model.embed_tokens"));
    lc_st_close(&f);
}

Test(safetensors, all_fixture_files_open)
{
    const char *rel[] = {
        "tiny-llama/model/model.safetensors",   "tiny-llama/lora_init.safetensors",
        "tiny-llama/lora_step3.safetensors",    "tiny-llama/merged_step3.safetensors",
        "tiny-llama/ref_nf4.safetensors",       "tiny-llama/ref_step0.safetensors",
        "tiny-llama/adapter_init/adapter_model.safetensors",
        "tiny-llama/adapter_step3/adapter_model.safetensors",
    };
    for (size_t i = 0; i < sizeof rel / sizeof *rel; i++) {
        lc_st_file f;
        lc_error err = {{0}};
        cr_assert_eq(lc_st_open(&f, lc_test_fixture(rel[i]), &err), 0, "%s", err.msg);
        cr_assert_gt(f.n_tensors, 0, "%s", rel[i]);
        lc_st_close(&f);
    }
}

/* ------------------------------------------------------------- valid edges */

Test(safetensors, valid_edge_cases)
{
    lc_st_file f;
    expect_ok("{}", 0, &f);                /* zero tensors */
    expect_ok("{}      \n\r\t", 0, &f);    /* whitespace padding */
    expect_ok("{\"__metadata__\":{}}", 0, &f);
    /* zero-size tensors (begin == end) may sit anywhere in the layout */
    expect_ok("{\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[0,0]},"
              "\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
              "\"z\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[2,2]}}",
              2, &f);
    /* unknown keys in an entry are ignored, as the reference reader does */
    expect_ok("{\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8],\"x\":1}}", 8,
              &f);
}

Test(safetensors, open_missing_and_directory)
{
    lc_st_file f;
    lc_error err = {{0}};
    cr_assert_eq(lc_st_open(&f, "/nonexistent/x.safetensors", &err), -1);
    cr_assert(strstr(err.msg, "/nonexistent/x.safetensors: cannot open: No such file"),
              "%s", err.msg);
    char *dir = lc_test_tmpdir();
    cr_assert_eq(lc_st_open(&f, dir, &err), -1);
    cr_assert(strstr(err.msg, "not a regular file"), "%s", err.msg);
    /* an empty file through lc_st_open (mmap cannot map 0 bytes) */
    char *p = lc_test_write_file(dir, "empty.safetensors", "", 0);
    cr_assert_eq(lc_st_open(&f, p, &err), -1);
    cr_assert(strstr(err.msg, "file too short (0 bytes)"), "%s", err.msg);
    cr_assert(strstr(err.msg, p), "%s", err.msg);
    /* a broken file through lc_st_open names the path */
    size_t size;
    unsigned char *b = image("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                             5, &size);
    char *q = lc_test_write_file(dir, "trail.safetensors", b, size);
    cr_assert_eq(lc_st_open(&f, q, &err), -1);
    cr_assert(strstr(err.msg, "1 trailing bytes"), "%s", err.msg);
    cr_assert(strstr(err.msg, q), "%s", err.msg);
    cr_assert_null(f.map);
    lc_st_close(&f);
    free(b);
    free(q);
    free(p);
    lc_test_rm_rf(dir);
    free(dir);
}

/* ------------------------------------------------------------ broken inputs */

#define T1(dt, shape, off) "{\"t\":{\"dtype\":" dt ",\"shape\":" shape ",\"data_offsets\":" off "}}"

Test(safetensors_bad, truncated_under_8_bytes)
{
    const unsigned char b[5] = {2, 0, 0, 0, 0};
    expect_fail_buf(b, 5, "file too short (5 bytes)");
    expect_fail_buf(b, 0, "file too short (0 bytes)");
}

Test(safetensors_bad, header_length_past_end)
{
    size_t size;
    unsigned char *b = image_hlen("{}", 3, 0, &size);
    expect_fail_buf(b, size, "header length 3 runs past the end of the file");
    free(b);
}

Test(safetensors_bad, header_length_over_limit)
{
    size_t size;
    unsigned char *b = image_hlen("{}", 100000001ull, 0, &size);
    expect_fail_buf(b, size, "header length 100000001 exceeds the limit");
    free(b);
    b = image_hlen("{}", UINT64_MAX - 3, 0, &size); /* 8 + N would wrap */
    expect_fail_buf(b, size, "exceeds the limit");
    free(b);
}

Test(safetensors_bad, not_json)
{
    expect_fail("{\"t\": {dtype: F32}}", 0, "header is not valid JSON");
    expect_fail("", 0, "header is not valid JSON");
    expect_fail("{} x", 0, "unexpected data after the top-level value");
}

Test(safetensors_bad, nul_and_utf8_in_header)
{
    size_t size;
    unsigned char *b = image("{}      ", 0, &size);
    b[8 + 3] = '\0';
    expect_fail_buf(b, size, "header contains a NUL byte");
    free(b);
    expect_fail("{\"\xff\":{}}", 0, "not valid UTF-8");
    expect_fail("{\"\xed\xa0\x80\":{}}", 0, "not valid UTF-8"); /* surrogate */
}

Test(safetensors_bad, header_not_object)
{
    expect_fail("[1, 2]", 0, "header JSON is not an object");
    expect_fail("\"str\"", 0, "header JSON is not an object");
}

Test(safetensors_bad, entry_not_object)
{
    expect_fail("{\"t\": [1]}", 0, "tensor 't': entry is not a JSON object");
}

Test(safetensors_bad, unknown_dtype)
{
    expect_fail(T1("\"F33\"", "[1]", "[0,4]"), 4, "tensor 't': unknown dtype 'F33'");
    expect_fail(T1("\"f32\"", "[1]", "[0,4]"), 4, "unknown dtype 'f32'");
}

Test(safetensors_bad, wrong_types)
{
    expect_fail(T1("32", "[1]", "[0,4]"), 4, "tensor 't': dtype is not a string");
    expect_fail(T1("\"F32\"", "4", "[0,4]"), 4, "tensor 't': shape is not an array");
    expect_fail(T1("\"F32\"", "[\"4\"]", "[0,4]"), 4, "shape dim 0 is not a number");
    expect_fail(T1("\"F32\"", "[1]", "\"0,4\""), 4, "data_offsets is not an array of 2");
    expect_fail(T1("\"F32\"", "[1]", "[0,4,8]"), 4, "data_offsets is not an array of 2");
    expect_fail(T1("\"F32\"", "[1]", "[0.5,4]"), 4, "data_offsets begin is not an integer");
    expect_fail(T1("\"F32\"", "[1]", "[0,-4]"), 4, "data_offsets end is negative");
    expect_fail(T1("\"F32\"", "[1]", "[0,1e300]"), 4, "data_offsets end is too large");
}

Test(safetensors_bad, missing_fields)
{
    expect_fail("{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4,
                "tensor 't': missing data_offsets");
    expect_fail("{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4,
                "tensor 't': missing shape");
    expect_fail("{\"t\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                "tensor 't': missing dtype");
}

Test(safetensors_bad, duplicate_key_in_entry)
{
    expect_fail("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"shape\":[2],\"data_offsets\":[0,4]}}",
                4, "tensor 't': duplicate key 'shape'");
}

Test(safetensors_bad, shape_offset_mismatch)
{
    /* F32 [3] needs 12 bytes, offsets give 6 (as if it were F16) */
    expect_fail(T1("\"F32\"", "[3]", "[0,6]"), 6, "tensor 't': shape/offset mismatch");
}

Test(safetensors_bad, end_before_begin)
{
    expect_fail(T1("\"F32\"", "[0]", "[4,0]"), 4, "data_offsets end 0 < begin 4");
}

Test(safetensors_bad, overlapping_offsets)
{
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                12, "tensor 'b': data_offsets [4, 12] overlap tensor 'a'");
    /* two tensors sharing the same bytes */
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                8, "overlap");
}

Test(safetensors_bad, gap_between_tensors)
{
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
                20, "tensor 'b': gap in the data: begins at 12, previous data ends at 8");
    /* data not starting at 0 */
    expect_fail(T1("\"F32\"", "[1]", "[4,8]"), 8, "tensor 't': gap in the data");
}

Test(safetensors_bad, data_past_end_of_file)
{
    expect_fail(T1("\"F32\"", "[4]", "[0,16]"), 8,
                "tensor 't': data_offsets end 16 runs past the end of the data (8 bytes");
}

Test(safetensors_bad, trailing_bytes)
{
    expect_fail(T1("\"F32\"", "[2]", "[0,8]"), 11, "3 trailing bytes after the last tensor");
    expect_fail("{}", 1, "1 trailing bytes");
}

Test(safetensors_bad, negative_dim)
{
    expect_fail(T1("\"F32\"", "[2,-1]", "[0,8]"), 8, "tensor 't': shape dim 1 is negative");
}

Test(safetensors_bad, non_integer_dim)
{
    expect_fail(T1("\"F32\"", "[2.5]", "[0,8]"), 8, "tensor 't': shape dim 0 is not an integer");
}

Test(safetensors_bad, too_many_dims)
{
    expect_fail(T1("\"U8\"", "[1,1,1,1,1,1,1,1,1]", "[0,1]"), 1,
                "tensor 't': shape has 9 dims, at most 8 allowed");
}

Test(safetensors_bad, numel_overflow)
{
    /* 2^40 * 2^40 = 2^80 elements */
    expect_fail(T1("\"F32\"", "[1099511627776,1099511627776]", "[0,0]"), 0,
                "tensor 't': shape [1099511627776, 1099511627776] of F32 overflows");
    /* numel fits, numel * 8 bytes does not: 2^31 * 2^31 * 8 = 2^65 */
    expect_fail(T1("\"F64\"", "[2147483648,2147483648]", "[0,0]"), 0, "overflows");
}

Test(safetensors_bad, duplicate_names)
{
    expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
                2, "duplicate tensor name 'a'");
}

Test(safetensors_bad, bad_metadata)
{
    expect_fail("{\"__metadata__\":{\"format\":1}}", 0,
                "__metadata__ value for 'format' is not a string");
    expect_fail("{\"__metadata__\":[\"pt\"]}", 0, "__metadata__ is not a JSON object");
    expect_fail("{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0,
                "duplicate __metadata__ key 'k'");
    expect_fail("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate __metadata__");
}

Test(safetensors_bad, name_with_control_chars_stays_one_line)
{
    expect_fail("{\"a\\nb\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 5,
                "trailing");
    expect_fail("{\"a\\nb\":{\"dtype\":\"F99\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                "tensor 'a?b': unknown dtype");
}

/* ------------------------------------------------------------ writer errors */

Test(safetensors_write, nonexistent_directory)
{
    char *dir = lc_test_tmpdir();
    char *sub = lc_test_path_in(dir, "no/such/dir");
    char *path = lc_test_path_in(sub, "x.safetensors");
    float v = 1;
    int64_t s = 1;
    lc_st_entry e = {"x", LC_DTYPE_F32, 1, &s, &v};
    lc_error err = {{0}};
    cr_assert_eq(lc_st_write(path, &e, 1, NULL, NULL, 0, &err), -1);
    cr_assert(strstr(err.msg, path), "%s", err.msg);
    cr_assert(strstr(err.msg, "No such file or directory"), "%s", err.msg);
    cr_assert_not(exists(path));
    char *tmp = lc_test_path_in(sub, "x.safetensors.tmp");
    cr_assert_not(exists(tmp));
    free(tmp);
    free(path);
    free(sub);
    lc_test_rm_rf(dir);
    free(dir);
}

Test(safetensors_write, rename_failure_removes_temp)
{
    /* the target is a non-empty directory: rename fails after the data is written */
    char *dir = lc_test_tmpdir();
    char *target = lc_test_path_in(dir, "out.safetensors");
    cr_assert_eq(mkdir(target, 0755), 0);
    char *inner = lc_test_write_file(target, "keep", "x", 1);
    float v = 1;
    int64_t s = 1;
    lc_st_entry e = {"x", LC_DTYPE_F32, 1, &s, &v};
    lc_error err = {{0}};
    cr_assert_eq(lc_st_write(target, &e, 1, NULL, NULL, 0, &err), -1);
    cr_assert(strstr(err.msg, "cannot rename"), "%s", err.msg);
    char *tmp = lc_test_path_in(dir, "out.safetensors.tmp");
    cr_assert_not(exists(tmp), "temporary left behind");
    cr_assert(exists(inner));
    free(tmp);
    free(inner);
    free(target);
    lc_test_rm_rf(dir);
    free(dir);
}

static void expect_write_fail(const lc_st_entry *e, size_t n, const char *want)
{
    char *dir = lc_test_tmpdir();
    char *path = lc_test_path_in(dir, "w.safetensors");
    lc_error err = {{0}};
    cr_assert_eq(lc_st_write(path, e, n, NULL, NULL, 0, &err), -1, "want '%s'", want);
    lc_test_assert_msg_has(&err, want);
    cr_assert_not(exists(path));
    char *tmp = lc_test_path_in(dir, "w.safetensors.tmp");
    cr_assert_not(exists(tmp));
    free(tmp);
    free(path);
    lc_test_rm_rf(dir);
    free(dir);
}

Test(safetensors_write, rejects_bad_entries)
{
    uint8_t d[16] = {0};
    int64_t s1[1] = {1}, big[2] = {1LL << 40, 1LL << 40}, neg[1] = {-2};
    int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    lc_st_entry dup[2] = {{"a", LC_DTYPE_U8, 1, s1, d}, {"a", LC_DTYPE_U8, 1, s1, d}};
    expect_write_fail(dup, 2, "duplicate tensor name 'a'");
    lc_st_entry ovf = {"o", LC_DTYPE_F32, 2, big, d};
    expect_write_fail(&ovf, 1, "overflows");
    lc_st_entry nd = {"n", LC_DTYPE_U8, 9, nine, d};
    expect_write_fail(&nd, 1, "ndim must be 0..8");
    lc_st_entry ng = {"g", LC_DTYPE_U8, 1, neg, d};
    expect_write_fail(&ng, 1, "negative shape dim");
    lc_st_entry md = {"__metadata__", LC_DTYPE_U8, 1, s1, d};
    expect_write_fail(&md, 1, "reserved");
    lc_st_entry nodata = {"x", LC_DTYPE_U8, 1, s1, NULL};
    expect_write_fail(&nodata, 1, "no data");
}

Test(safetensors_write, rejects_duplicate_metadata)
{
    char *dir = lc_test_tmpdir();
    char *path = lc_test_path_in(dir, "m.safetensors");
    const char *k[2] = {"format", "format"}, *v[2] = {"pt", "np"};
    lc_error err = {{0}};
    cr_assert_eq(lc_st_write(path, NULL, 0, k, v, 2, &err), -1);
    cr_assert(strstr(err.msg, "duplicate __metadata__ key 'format'"), "%s", err.msg);
    cr_assert_not(exists(path));
    free(path);
    lc_test_rm_rf(dir);
    free(dir);
}

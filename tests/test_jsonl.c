/* test_jsonl.c — the tokenized JSONL reader (data/jsonl.c) and micro-batch
 * buffers (data/batch.c): the tiny-llama fixture rows, labels defaulting to
 * input_ids, blank lines and line numbers, resuming at a saved row offset,
 * every malformed row failing with "FILE:LINE: what", and the causal shift,
 * per-row positions and packing segments of lc_batch_buf_put. */
#include <criterion/criterion.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/batch.h"
#include "data/jsonl.h"
#include "helpers.h"

#define VOCAB 512

/* ---------------------------------------------------------------- helpers */

/* A temporary file holding text (n bytes; strlen when n == SIZE_MAX). */
typedef struct tmp_jsonl {
    char *dir;
    char *path;
} tmp_jsonl;

static tmp_jsonl write_jsonl_n(const char *text, size_t n)
{
    tmp_jsonl t;
    t.dir = lc_test_tmpdir();
    t.path = lc_test_write_file(t.dir, "data.jsonl", text, n == SIZE_MAX ? strlen(text) : n);
    return t;
}

static tmp_jsonl write_jsonl(const char *text) { return write_jsonl_n(text, SIZE_MAX); }

static void tmp_free(tmp_jsonl *t)
{
    lc_test_rm_rf(t->dir);
    free(t->dir);
    free(t->path);
}

static const char *fixture_jsonl(void) { return lc_test_fixture("tiny-llama/train.jsonl"); }

static void assert_ids(const int32_t *got, const int32_t *want, int64_t n, const char *what)
{
    for (int64_t i = 0; i < n; i++)
        cr_assert_eq(got[i], want[i], "%s[%lld] = %d, expected %d", what, (long long)i, got[i],
                     want[i]);
}

/* Reads every row of text; the read of the row on line `line` must fail
 * with "PATH:LINE: " + msg (all earlier rows read fine). */
static void expect_row_error(const char *text, int line, const char *msg)
{
    tmp_jsonl t = write_jsonl(text);
    lc_jsonl_reader r;
    lc_error err = {{0}};
    cr_assert_eq(lc_jsonl_open(&r, t.path, VOCAB, &err), 0, "%s", err.msg);
    lc_row row;
    int rc;
    int rows = 0;
    while ((rc = lc_jsonl_next(&r, &row, &err)) == 1)
        rows++;
    cr_assert_eq(rc, -1, "no error for %s (read %d rows)", text, rows);
    char want[8192];
    snprintf(want, sizeof want, "%s:%d: %s", t.path, line, msg);
    lc_test_assert_msg_has(&err, want);
    cr_assert_null(strchr(err.msg, '\n'), "message is not one line: '%s'", err.msg);
    lc_jsonl_close(&r);
    tmp_free(&t);
}

/* A valid row before the bad one, so the line number is 2. */
#define GOOD "{\"input_ids\": [1, 2, 3]}\n"

/* ------------------------------------------------------------ fixture rows */

Test(jsonl, fixture_rows)
{
    static const int32_t row0_ids[16] = {313, 329, 75,  357, 7,   110, 62, 508,
                                         298, 20,  471, 372, 304, 226, 3,  28};
    static const int32_t row1_ids[16] = {412, 461, 443, 432, 256, 5,   323, 242,
                                         448, 128, 329, 3,   188, 322, 384, 7};
    static const int32_t row1_labels[16] = {-100, -100, -100, -100, -100, -100, 323, 242,
                                            448,  128,  329,  3,    188,  322,  384, 7};
    lc_jsonl_reader r;
    lc_error err = {{0}};
    cr_assert_eq(lc_jsonl_open(&r, fixture_jsonl(), VOCAB, &err), 0, "%s", err.msg);

    /* Row offsets = byte position of each line start in the file. */
    FILE *f = fopen(fixture_jsonl(), "rb");
    cr_assert_not_null(f);
    int64_t starts[16];
    int n_lines = 0;
    int64_t pos = 0;
    int c, prev = '\n';
    while ((c = fgetc(f)) != EOF) {
        if (prev == '\n' && n_lines < 16)
            starts[n_lines++] = pos;
        prev = c;
        pos++;
    }
    fclose(f);
    cr_assert_eq(n_lines, 6);

    lc_row row;
    int n = 0;
    int rc;
    while ((rc = lc_jsonl_next(&r, &row, &err)) == 1) {
        cr_assert_eq(row.len, 16, "row %d has %lld tokens", n, (long long)row.len);
        cr_assert_eq(row.line, n + 1);
        cr_assert_eq(row.offset, starts[n], "row %d offset %lld, expected %lld", n,
                     (long long)row.offset, (long long)starts[n]);
        for (int64_t i = 0; i < row.len; i++) {
            cr_assert(row.input_ids[i] >= 0 && row.input_ids[i] < VOCAB);
            cr_assert(row.labels[i] == -100 || row.labels[i] == row.input_ids[i]);
        }
        if (n == 0) {
            assert_ids(row.input_ids, row0_ids, 16, "row 0 input_ids");
            assert_ids(row.labels, row0_ids, 16, "row 0 labels");
        } else if (n == 1) {
            assert_ids(row.input_ids, row1_ids, 16, "row 1 input_ids");
            assert_ids(row.labels, row1_labels, 16, "row 1 labels");
        }
        n++;
    }
    cr_assert_eq(rc, 0, "%s", err.msg);
    cr_assert_eq(n, 6);
    /* End of file stays end of file. */
    cr_assert_eq(lc_jsonl_next(&r, &row, &err), 0);
    lc_jsonl_close(&r);
}

Test(jsonl, labels_default_to_input_ids)
{
    tmp_jsonl t = write_jsonl("{\"input_ids\": [5, 6, 7]}\n"
                              "{\"input_ids\": [8, 9], \"labels\": null}\n"
                              "{\"input_ids\": [10, 11], \"labels\": [-100, 11],"
                              " \"attention_mask\": [1, 1]}\n"
                              "{\"input_ids\": [0, 511]}"); /* no final newline */
    lc_jsonl_reader r;
    lc_error err = {{0}};
    cr_assert_eq(lc_jsonl_open(&r, t.path, VOCAB, &err), 0, "%s", err.msg);
    lc_row row;
    cr_assert_eq(lc_jsonl_next(&r, &row, &err), 1, "%s", err.msg);
    cr_assert_eq(row.len, 3);
    assert_ids(row.labels, (const int32_t[]){5, 6, 7}, 3, "labels");
    cr_assert_eq(lc_jsonl_next(&r, &row, &err), 1, "%s", err.msg);
    cr_assert_eq(row.len, 2);
    assert_ids(row.input_ids, (const int32_t[]){8, 9}, 2, "input_ids");
    assert_ids(row.labels, (const int32_t[]){8, 9}, 2, "labels");
    cr_assert_eq(lc_jsonl_next(&r, &row, &err), 1, "%s", err.msg);
    assert_ids(row.labels, (const int32_t[]){-100, 11}, 2, "labels");
    cr_assert_eq(lc_jsonl_next(&r, &row, &err), 1, "%s", err.msg);
    cr_assert_eq(row.line, 4);
    assert_ids(row.input_ids, (const int32_t[]){0, 511}, 2, "input_ids");
    assert_ids(row.labels, (const int32_t[]){0, 511}, 2, "labels");
    cr_assert_eq(lc_jsonl_next(&r, &row, &err), 0);
    lc_jsonl_close(&r);
    tmp_free(&t);
}

Test(jsonl, long_row_grows_buffers)
{
    /* A short row, then a long one, then a short one again. */
    size_t cap = 64 + 5000 * 6;
    char *text = malloc(cap);
    size_t n = (size_t)snprintf(text, cap, "{\"input_ids\": [1]}\n{\"input_ids\": [");
    for (int i = 0; i < 5000; i++)
        n += (size_t)snprintf(text + n, cap - n, "%s%d", i ? "," : "", i % VOCAB);
    n += (size_t)snprintf(text + n, cap - n, "]}\n{\"input_ids\": [2]}\n");
    tmp_jsonl t = write_jsonl(text);
    free(text);
    lc_jsonl_reader r;
    lc_error err = {{0}};
    cr_assert_eq(lc_jsonl_open(&r, t.path, VOCAB, &err), 0, "%s", err.msg);
    lc_row row;
    cr_assert_eq(lc_jsonl_next(&r, &row, &err), 1, "%s", err.msg);
    cr_assert_eq(row.len, 1);
    cr_assert_eq(lc_jsonl_next(&r, &row, &err), 1, "%s", err.msg);
    cr_assert_eq(row.len, 5000);
    for (int i = 0; i < 5000; i++) {
        cr_assert_eq(row.input_ids[i], i % VOCAB);
        cr_assert_eq(row.labels[i], i % VOCAB);
    }
    cr_assert_eq(lc_jsonl_next(&r, &row, &err), 1, "%s", err.msg);
    cr_assert_eq(row.len, 1);
    cr_assert_eq(row.input_ids[0], 2);
    lc_jsonl_close(&r);
    tmp_free(&t);
}

Test(jsonl, blank_lines_skipped_with_line_numbers)
{
    const char *text = "\n"                            /* line 1 */
                       "{\"input_ids\": [1, 2]}\n"     /* line 2 */
                       "   \n"                         /* line 3 */
                       "\t\r\n"                        /* line 4 */
                       "{\"input_ids\": [3]}\r\n"      /* line 5, CRLF */
                       "\n"                            /* line 6 */
                       "  {\"input_ids\": [4, 5]}  \n" /* line 7 */
                       "\n";                           /* line 8 */
    tmp_jsonl t = write_jsonl(text);
    lc_jsonl_reader r;
    lc_error err = {{0}};
    cr_assert_eq(lc_jsonl_open(&r, t.path, VOCAB, &err), 0, "%s", err.msg);
    lc_row row;
    const int lines[3] = {2, 5, 7};
    const int64_t lens[3] = {2, 1, 2};
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(lc_jsonl_next(&r, &row, &err), 1, "%s", err.msg);
        cr_assert_eq(row.line, lines[k], "row %d on line %lld, expected %d", k,
                     (long long)row.line, lines[k]);
        cr_assert_eq(row.len, lens[k]);
        /* The offset points at the start of that line. */
        const char *p = text;
        for (int l = 1; l < lines[k]; l++)
            p = strchr(p, '\n') + 1;
        cr_assert_eq(row.offset, (int64_t)(p - text), "row %d offset %lld, expected %lld", k,
                     (long long)row.offset, (long long)(p - text));
    }
    cr_assert_eq(row.input_ids[1], 5);
    cr_assert_eq(lc_jsonl_next(&r, &row, &err), 0);
    lc_jsonl_close(&r);
    tmp_free(&t);

    /* An error after blank lines names the right line. */
    expect_row_error("\n\n" GOOD "\n  \n{oops}\n", 6, "not valid JSON");
}

Test(jsonl, empty_file)
{
    tmp_jsonl t = write_jsonl("");
    lc_jsonl_reader r;
    lc_error err = {{0}};
    cr_assert_eq(lc_jsonl_open(&r, t.path, VOCAB, &err), 0, "%s", err.msg);
    lc_row row;
    cr_assert_eq(lc_jsonl_next(&r, &row, &err), 0);
    lc_jsonl_close(&r);
    tmp_free(&t);
}

/* Reads the fixture to the end, remembering row 4 (line 4) as an lc_row. */
static void read_fixture_saving_row4(lc_jsonl_reader *r, int64_t *off, int64_t *line,
                                     int32_t ids[16], int32_t labels[16])
{
    lc_error err = {{0}};
    cr_assert_eq(lc_jsonl_open(r, fixture_jsonl(), VOCAB, &err), 0, "%s", err.msg);
    lc_row row;
    for (int k = 0; k < 6; k++) {
        cr_assert_eq(lc_jsonl_next(r, &row, &err), 1, "%s", err.msg);
        if (k == 3) {
            /* A trainer resuming after row 3 saves the next row's position. */
            *off = row.offset;
            *line = row.line;
            memcpy(ids, row.input_ids, 16 * sizeof(int32_t));
            memcpy(labels, row.labels, 16 * sizeof(int32_t));
        }
    }
    cr_assert_eq(lc_jsonl_next(r, &row, &err), 0);
    cr_assert_eq(*line, 4);
}

Test(jsonl, seek_back_to_saved_row)
{
    lc_jsonl_reader r;
    lc_error err = {{0}};
    int32_t saved_ids[16], saved_labels[16];
    int64_t saved_off = -1, saved_line = -1;
    read_fixture_saving_row4(&r, &saved_off, &saved_line, saved_ids, saved_labels);

    /* jsonl.h: "Continue reading at a byte offset / line number saved from
     * an lc_row". */
    lc_row row;
    cr_assert_eq(lc_jsonl_seek(&r, saved_off, saved_line, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_jsonl_next(&r, &row, &err), 1, "%s", err.msg);
    cr_assert_eq(row.offset, saved_off);
    cr_assert_eq(row.len, 16);
    assert_ids(row.input_ids, saved_ids, 16, "input_ids after seek");
    assert_ids(row.labels, saved_labels, 16, "labels after seek");
    /* ... and reading continues with rows 5 and 6, then end of file. */
    cr_assert_eq(lc_jsonl_next(&r, &row, &err), 1, "%s", err.msg);
    cr_assert_eq(lc_jsonl_next(&r, &row, &err), 1, "%s", err.msg);
    cr_assert_eq(row.input_ids[0], 400);
    cr_assert_eq(lc_jsonl_next(&r, &row, &err), 0);

    /* Back to the start (a new epoch). */
    cr_assert_eq(lc_jsonl_seek(&r, 0, 1, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_jsonl_next(&r, &row, &err), 1, "%s", err.msg);
    cr_assert_eq(row.offset, 0);
    cr_assert_eq(row.input_ids[0], 313);
    lc_jsonl_close(&r);
}

Test(jsonl, seek_keeps_line_numbers)
{
    /* After seeking to a row saved from an lc_row, that row (and every
     * later one, so error messages after a resume) reports its own line. */
    lc_jsonl_reader r;
    lc_error err = {{0}};
    int32_t ids[16], labels[16];
    int64_t off = -1, line = -1;
    read_fixture_saving_row4(&r, &off, &line, ids, labels);
    lc_row row;
    cr_assert_eq(lc_jsonl_seek(&r, off, line, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_jsonl_next(&r, &row, &err), 1, "%s", err.msg);
    cr_assert_eq(row.line, 4, "row saved with line 4 re-read as line %lld after "
                 "lc_jsonl_seek(offset, 4)", (long long)row.line);
    cr_assert_eq(lc_jsonl_next(&r, &row, &err), 1, "%s", err.msg);
    cr_assert_eq(row.line, 5);
    /* Row 1 saved as {offset 0, line 1}. */
    cr_assert_eq(lc_jsonl_seek(&r, 0, 1, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_jsonl_next(&r, &row, &err), 1, "%s", err.msg);
    cr_assert_eq(row.line, 1, "row 1 re-read as line %lld after lc_jsonl_seek(0, 1)",
                 (long long)row.line);
    lc_jsonl_close(&r);
}

/* ------------------------------------------------------------ bad rows */

Test(jsonl_errors, invalid_json)
{
    expect_row_error(GOOD "{\"input_ids\": [1, 2\n", 2, "not valid JSON");
    expect_row_error(GOOD "input_ids: [1]\n", 2, "not valid JSON");
}

Test(jsonl_errors, not_an_object)
{
    expect_row_error(GOOD "[1, 2, 3]\n", 2, "expected a JSON object with \"input_ids\"");
    expect_row_error(GOOD "42\n", 2, "expected a JSON object with \"input_ids\"");
}

Test(jsonl_errors, missing_input_ids)
{
    expect_row_error(GOOD "{\"labels\": [1, 2]}\n", 2, "missing \"input_ids\"");
    expect_row_error(GOOD "{\"Input_ids\": [1, 2]}\n", 2, "missing \"input_ids\"");
}

Test(jsonl_errors, input_ids_not_array)
{
    expect_row_error(GOOD "{\"input_ids\": 5}\n", 2, "input_ids: expected an array of token ids");
    expect_row_error(GOOD "{\"input_ids\": \"1 2 3\"}\n", 2,
                     "input_ids: expected an array of token ids");
}

Test(jsonl_errors, empty_input_ids)
{
    expect_row_error(GOOD "{\"input_ids\": []}\n", 2, "input_ids: empty row");
}

Test(jsonl_errors, non_integer_id)
{
    expect_row_error(GOOD "{\"input_ids\": [1, 1.5, 3]}\n", 2, "input_ids[1]: expected an integer");
    expect_row_error(GOOD "{\"input_ids\": [1, \"2\"]}\n", 2, "input_ids[1]: expected an integer");
    expect_row_error(GOOD "{\"input_ids\": [null]}\n", 2, "input_ids[0]: expected an integer");
}

Test(jsonl_errors, id_out_of_range)
{
    expect_row_error(GOOD "{\"input_ids\": [1, 2, 512]}\n", 2,
                     "input_ids[2]: token id 512 is out of range [0, 512)");
    expect_row_error(GOOD "{\"input_ids\": [-1, 2]}\n", 2,
                     "input_ids[0]: token id -1 is out of range [0, 512)");
    /* −100 means "ignore" only in labels. */
    expect_row_error(GOOD "{\"input_ids\": [-100, 2]}\n", 2,
                     "input_ids[0]: token id -100 is out of range [0, 512)");
    expect_row_error(GOOD "{\"input_ids\": [1e12]}\n", 2,
                     "input_ids[0]: token id 1000000000000 is out of range [0, 512)");
}

Test(jsonl_errors, label_out_of_range)
{
    expect_row_error(GOOD "{\"input_ids\": [1, 2], \"labels\": [1, 512]}\n", 2,
                     "labels[1]: token id 512 is out of range [0, 512) (or -100)");
    expect_row_error(GOOD "{\"input_ids\": [1, 2], \"labels\": [-5, 2]}\n", 2,
                     "labels[0]: token id -5 is out of range [0, 512) (or -100)");
    expect_row_error(GOOD "{\"input_ids\": [1, 2], \"labels\": [1, 2.5]}\n", 2,
                     "labels[1]: expected an integer");
}

Test(jsonl_errors, labels_length_mismatch)
{
    expect_row_error(GOOD "{\"input_ids\": [1, 2, 3], \"labels\": [1, 2]}\n", 2,
                     "labels: expected an array as long as input_ids (3)");
    expect_row_error(GOOD "{\"input_ids\": [1, 2, 3], \"labels\": [1, 2, 3, 4]}\n", 2,
                     "labels: expected an array as long as input_ids (3)");
    expect_row_error(GOOD "{\"input_ids\": [1, 2, 3], \"labels\": 7}\n", 2,
                     "labels: expected an array as long as input_ids (3)");
}

Test(jsonl_errors, attention_mask_zero)
{
    expect_row_error(GOOD "{\"input_ids\": [1, 2, 0], \"attention_mask\": [1, 1, 0]}\n", 2,
                     "attention_mask: padded rows are not supported");
    expect_row_error(GOOD "{\"input_ids\": [1, 2, 0], \"attention_mask\": [1, 1]}\n", 2,
                     "attention_mask: expected an array as long as input_ids");
}

Test(jsonl_errors, trailing_garbage)
{
    expect_row_error(GOOD "{\"input_ids\": [1]} x\n", 2, "unexpected text after the JSON object");
    expect_row_error(GOOD "{\"input_ids\": [1]}{\"input_ids\": [2]}\n", 2,
                     "unexpected text after the JSON object");
    expect_row_error(GOOD "{\"input_ids\": [1]},\n", 2, "unexpected text after the JSON object");
}

Test(jsonl_errors, nul_byte)
{
    const char text[] = "{\"input_ids\": [1]}\n{\"input_ids\": [1]}\0\n";
    tmp_jsonl t = write_jsonl_n(text, sizeof text - 1);
    lc_jsonl_reader r;
    lc_error err = {{0}};
    cr_assert_eq(lc_jsonl_open(&r, t.path, VOCAB, &err), 0, "%s", err.msg);
    lc_row row;
    cr_assert_eq(lc_jsonl_next(&r, &row, &err), 1, "%s", err.msg);
    cr_assert_eq(lc_jsonl_next(&r, &row, &err), -1);
    char want[4200];
    snprintf(want, sizeof want, "%s:2: NUL byte in line", t.path);
    lc_test_assert_msg_has(&err, want);
    lc_jsonl_close(&r);
    tmp_free(&t);
}

Test(jsonl_errors, missing_file)
{
    lc_jsonl_reader r;
    lc_error err = {{0}};
    cr_assert_eq(lc_jsonl_open(&r, "/nonexistent/lorac/train.jsonl", VOCAB, &err), -1);
    cr_assert_not_null(strstr(err.msg, "/nonexistent/lorac/train.jsonl: No such file"), "%s",
                       err.msg);
    lc_jsonl_close(&r); /* safe after a failed open */
}

Test(jsonl_errors, parse_row_where_label)
{
    int32_t *ids = NULL, *labels = NULL;
    size_t cap = 0;
    int64_t n = 0;
    lc_error err = {{0}};
    const char *ok = "{\"input_ids\": [7, 8], \"labels\": [-100, 8]}";
    cr_assert_eq(lc_jsonl_parse_row(ok, strlen(ok), VOCAB, "x", &ids, &labels, &cap, &n, &err),
                 0, "%s", err.msg);
    cr_assert_eq(n, 2);
    cr_assert_geq(cap, 2u);
    cr_assert_eq(labels[0], -100);
    const char *bad = "{\"input_ids\": [7, 9999]}";
    cr_assert_eq(lc_jsonl_parse_row(bad, strlen(bad), VOCAB, "mem:3", &ids, &labels, &cap, &n,
                                    &err),
                 -1);
    cr_assert_not_null(strstr(err.msg, "mem:3: input_ids[1]: token id 9999 is out of range"),
                       "%s", err.msg);
    free(ids);
    free(labels);
}

/* ---------------------------------------------------------------- batch */

Test(batch, cleared_buffer_is_padding)
{
    lc_batch_buf b;
    lc_error err = {{0}};
    cr_assert_eq(lc_batch_buf_init(&b, 2, 8, &err), 0, "%s", err.msg);
    for (int64_t i = 0; i < 16; i++) {
        cr_assert_eq(b.ids[i], 0);
        cr_assert_eq(b.targets[i], -100);
        cr_assert_eq(b.segments[i], -1);
    }
    cr_assert_eq(b.fill[0], 0);
    cr_assert_eq(b.n_segments[1], 0);
    cr_assert_eq(lc_batch_buf_supervised(&b), 0);
    lc_batch_buf_free(&b);
}

Test(batch, put_shifts_labels_and_packs_rows)
{
    enum { T = 12 };
    lc_batch_buf b;
    lc_error err = {{0}};
    cr_assert_eq(lc_batch_buf_init(&b, 2, T, &err), 0, "%s", err.msg);

    const int32_t ids_a[5] = {10, 11, 12, 13, 14};
    const int32_t lab_a[5] = {-100, -100, 12, 13, 14};
    const int32_t ids_b[4] = {20, 21, 22, 23};
    const int32_t lab_b[4] = {20, 21, -100, 23};
    int32_t ids_c[T], lab_c[T];
    for (int i = 0; i < T; i++)
        ids_c[i] = lab_c[i] = 100 + i;

    lc_batch_buf_put(&b, 0, ids_a, lab_a, 5);
    lc_batch_buf_put(&b, 0, ids_b, lab_b, 4);
    lc_batch_buf_put(&b, 1, ids_c, lab_c, T);

    cr_assert_eq(b.fill[0], 9);
    cr_assert_eq(b.fill[1], T);
    cr_assert_eq(b.n_segments[0], 2);
    cr_assert_eq(b.n_segments[1], 1);

    const int32_t *I = b.ids, *Tg = b.targets, *P = b.positions, *S = b.segments;
    /* Window 0, row a at [0, 5). */
    const int32_t want_tg_a[5] = {-100, 12, 13, 14, -100};
    for (int t = 0; t < 5; t++) {
        cr_assert_eq(I[t], ids_a[t]);
        cr_assert_eq(Tg[t], want_tg_a[t], "targets[%d] = %d, expected %d", t, Tg[t],
                     want_tg_a[t]);
        cr_assert_eq(P[t], t);
    }
    /* Row b at [5, 9): positions restart, new segment, no label from row a. */
    const int32_t want_tg_b[4] = {21, -100, 23, -100};
    for (int t = 0; t < 4; t++) {
        cr_assert_eq(I[5 + t], ids_b[t]);
        cr_assert_eq(Tg[5 + t], want_tg_b[t], "targets[%d] = %d, expected %d", 5 + t, Tg[5 + t],
                     want_tg_b[t]);
        cr_assert_eq(P[5 + t], t, "positions[%d] = %d, expected %d", 5 + t, P[5 + t], t);
    }
    for (int t = 1; t < 5; t++)
        cr_assert_eq(S[t], S[0]);
    for (int t = 6; t < 9; t++)
        cr_assert_eq(S[t], S[5]);
    cr_assert_neq(S[0], S[5], "packed rows share segment %d", S[0]);
    /* The last token of row a must not predict row b's first token. */
    cr_assert_eq(Tg[4], -100);
    /* Padding [9, 12): id 0, no target, a segment of its own. */
    for (int t = 9; t < T; t++) {
        cr_assert_eq(I[t], 0);
        cr_assert_eq(Tg[t], -100);
        cr_assert(S[t] != S[0] && S[t] != S[5], "padding shares a row's segment");
        cr_assert(P[t] >= 0 && P[t] < T);
    }
    /* Window 1: one full row. */
    for (int t = 0; t < T; t++) {
        cr_assert_eq(I[T + t], ids_c[t]);
        cr_assert_eq(Tg[T + t], t + 1 < T ? lab_c[t + 1] : -100);
        cr_assert_eq(P[T + t], t);
        cr_assert_eq(S[T + t], S[T]);
    }

    /* Supervised: row a 3, row b 2, row c T−1. */
    cr_assert_eq(lc_batch_buf_supervised(&b), 3 + 2 + (T - 1));

    lc_batch_buf_clear(&b);
    cr_assert_eq(lc_batch_buf_supervised(&b), 0);
    cr_assert_eq(b.fill[0], 0);
    cr_assert_eq(b.n_segments[0], 0);
    for (int64_t i = 0; i < 2 * T; i++) {
        cr_assert_eq(b.ids[i], 0);
        cr_assert_eq(b.targets[i], -100);
    }
    /* After clearing, a put starts at position 0 of the window again. */
    lc_batch_buf_put(&b, 1, ids_b, lab_b, 4);
    cr_assert_eq(b.ids[T], 20);
    cr_assert_eq(b.positions[T], 0);
    cr_assert_eq(lc_batch_buf_supervised(&b), 2);
    lc_batch_buf_free(&b);
}

Test(batch, fixture_step0_batch)
{
    /* Rows 0 and 1 of the fixture (its step-0 batch): 15 + 10 supervised. */
    lc_jsonl_reader r;
    lc_error err = {{0}};
    cr_assert_eq(lc_jsonl_open(&r, fixture_jsonl(), VOCAB, &err), 0, "%s", err.msg);
    lc_batch_buf b;
    cr_assert_eq(lc_batch_buf_init(&b, 2, 16, &err), 0, "%s", err.msg);
    lc_row row;
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(lc_jsonl_next(&r, &row, &err), 1, "%s", err.msg);
        lc_batch_buf_put(&b, k, row.input_ids, row.labels, row.len);
    }
    cr_assert_eq(lc_batch_buf_supervised(&b), 25);
    /* Row 1: targets[t] = labels[t+1]; labels 0..5 are −100, so targets 0..4. */
    for (int t = 0; t < 5; t++)
        cr_assert_eq(b.targets[16 + t], -100);
    cr_assert_eq(b.targets[16 + 5], 323);
    cr_assert_eq(b.targets[16 + 14], 7);
    cr_assert_eq(b.targets[16 + 15], -100);
    cr_assert_eq(b.targets[0], 329);
    lc_batch_buf_free(&b);
    lc_jsonl_close(&r);
}

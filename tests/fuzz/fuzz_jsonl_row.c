/* fuzz_jsonl_row.c — lc_jsonl_parse_row on arbitrary bytes, vocab 512.
 *
 * The input is not NUL-terminated, so ASan catches any read past len. A row
 * that parses must hold ids in [0, 512) and labels in [0, 512) or -100. The
 * same text is parsed a second time into the buffers the first call grew
 * (the reader reuses them row after row) and must give the same row.
 *
 * Then the input is written to a file in the per-process temporary
 * directory and read with the line reader (lc_jsonl_open / lc_jsonl_next):
 * rows must come with increasing lines and offsets, and seeking back to a
 * row's saved offset (lc_jsonl_seek) must give the same row again. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/jsonl.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct seen_row {
    int64_t offset, line, len;
    uint64_t hash;
} seen_row;

static uint64_t row_hash(const lc_row *row)
{
    uint64_t h = 1469598103934665603ull;
    for (int64_t i = 0; i < row->len; i++)
        h = (h ^ (uint32_t)row->input_ids[i] ^ ((uint64_t)(uint32_t)row->labels[i] << 32)) *
            1099511628211ull;
    return h;
}

static void read_as_file(const uint8_t *data, size_t size, int64_t vocab)
{
    static char path[600];
    if (!path[0])
        fuzz_path(path, sizeof path, fuzz_tmpdir(), "rows.jsonl");
    fuzz_write(path, data, size);
    lc_jsonl_reader r;
    lc_error err;
    err.msg[0] = '\0';
    FUZZ_CHECK(lc_jsonl_open(&r, path, vocab, &err) == 0);
    seen_row seen[4];
    int n_seen = 0, rc;
    int64_t last_offset = -1, last_line = 0;
    lc_row row;
    while ((rc = lc_jsonl_next(&r, &row, &err)) == 1) {
        FUZZ_CHECK(row.len >= 1 && row.offset > last_offset && row.line > last_line);
        FUZZ_CHECK(row.offset < (int64_t)size);
        for (int64_t i = 0; i < row.len; i++)
            FUZZ_CHECK(row.input_ids[i] >= 0 && row.input_ids[i] < vocab);
        last_offset = row.offset;
        last_line = row.line;
        if (n_seen < 4)
            seen[n_seen++] = (seen_row){row.offset, row.line, row.len, row_hash(&row)};
    }
    if (rc < 0)
        fuzz_check_error(&err);
    for (int k = n_seen - 1; k >= 0; k--) {
        FUZZ_CHECK(lc_jsonl_seek(&r, seen[k].offset, seen[k].line, &err) == 0);
        FUZZ_CHECK(lc_jsonl_next(&r, &row, &err) == 1);
        FUZZ_CHECK(row.offset == seen[k].offset && row.line == seen[k].line);
        FUZZ_CHECK(row.len == seen[k].len && row_hash(&row) == seen[k].hash);
    }
    lc_jsonl_close(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const int64_t vocab = 512;
    int32_t *ids = NULL, *labels = NULL;
    size_t cap = 0;
    int64_t len = -1;
    lc_error err;
    err.msg[0] = '\0';
    int rc = lc_jsonl_parse_row((const char *)data, size, vocab, "fuzz.jsonl:1", &ids, &labels,
                                &cap, &len, &err);
    if (rc != 0) {
        FUZZ_CHECK(rc == -1);
        fuzz_check_error(&err);
    } else {
        FUZZ_CHECK(len >= 1 && (size_t)len <= cap && ids && labels);
        for (int64_t i = 0; i < len; i++) {
            FUZZ_CHECK(ids[i] >= 0 && ids[i] < vocab);
            FUZZ_CHECK(labels[i] == -100 || (labels[i] >= 0 && labels[i] < vocab));
        }
        int32_t *ids0 = malloc((size_t)len * sizeof *ids0);
        int32_t *lab0 = malloc((size_t)len * sizeof *lab0);
        FUZZ_CHECK(ids0 && lab0);
        memcpy(ids0, ids, (size_t)len * sizeof *ids0);
        memcpy(lab0, labels, (size_t)len * sizeof *lab0);
        int64_t len2 = -1;
        FUZZ_CHECK(lc_jsonl_parse_row((const char *)data, size, vocab, "fuzz.jsonl:2", &ids,
                                      &labels, &cap, &len2, &err) == 0);
        FUZZ_CHECK(len2 == len);
        FUZZ_CHECK(!memcmp(ids0, ids, (size_t)len * sizeof *ids0));
        FUZZ_CHECK(!memcmp(lab0, labels, (size_t)len * sizeof *lab0));
        free(ids0);
        free(lab0);
    }
    free(ids);
    free(labels);
    read_as_file(data, size, vocab);
    return 0;
}

/* jsonl.c — see jsonl.h. */
#include "data/jsonl.h"
#include "data/batch.h"
#include "data/completion.h"
#include "data/row_encoder.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static int parse_int_array(const cJSON *arr, const char *key, const char *where,
                           int64_t vocab, bool allow_ignore, int32_t *dst, lc_error *err)
{
    int64_t i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        double v = cJSON_IsNumber(it) ? it->valuedouble : NAN;
        if (!cJSON_IsNumber(it) || v != floor(v))
            return lc_error_set(err, "%s: %s[%lld]: expected an integer", where, key,
                                (long long)i);
        if (allow_ignore && v == LC_LABEL_IGNORE) {
            dst[i++] = LC_LABEL_IGNORE;
            continue;
        }
        if (v < 0 || v >= (double)vocab)
            return lc_error_set(err, "%s: %s[%lld]: token id %.0f is out of range [0, %lld)%s",
                                where, key, (long long)i, v, (long long)vocab,
                                allow_ignore ? " (or -100)" : "");
        dst[i++] = (int32_t)v;
    }
    return 0;
}

int lc_jsonl_parse_row(const char *text, size_t len, int64_t vocab, const char *where,
                       int32_t **ids, int32_t **labels, size_t *cap, int64_t *out_len,
                       lc_error *err)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (!root)
        return lc_error_set(err, "%s: not valid JSON", where);
    int rc = -1;
    while (end && end < text + len && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
        end++;
    if (end && end < text + len && *end) {
        lc_error_set(err, "%s: unexpected text after the JSON object", where);
        goto out;
    }
    if (!cJSON_IsObject(root)) {
        lc_error_set(err, "%s: expected a JSON object with \"input_ids\"", where);
        goto out;
    }
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(root, "input_ids");
    const cJSON *lab = cJSON_GetObjectItemCaseSensitive(root, "labels");
    const cJSON *mask = cJSON_GetObjectItemCaseSensitive(root, "attention_mask");
    if (!in) {
        lc_error_set(err, "%s: missing \"input_ids\"", where);
        goto out;
    }
    if (!cJSON_IsArray(in)) {
        lc_error_set(err, "%s: input_ids: expected an array of token ids", where);
        goto out;
    }
    int64_t n = cJSON_GetArraySize(in);
    if (n == 0) {
        lc_error_set(err, "%s: input_ids: empty row", where);
        goto out;
    }
    if (lab && !cJSON_IsNull(lab) &&
        (!cJSON_IsArray(lab) || cJSON_GetArraySize(lab) != n)) {
        lc_error_set(err, "%s: labels: expected an array as long as input_ids (%lld)", where,
                     (long long)n);
        goto out;
    }
    if (mask && !cJSON_IsNull(mask)) {
        if (!cJSON_IsArray(mask) || cJSON_GetArraySize(mask) != n) {
            lc_error_set(err, "%s: attention_mask: expected an array as long as input_ids", where);
            goto out;
        }
        const cJSON *it;
        cJSON_ArrayForEach(it, mask) if (!cJSON_IsNumber(it) || it->valuedouble != 1)
        {
            lc_error_set(err, "%s: attention_mask: padded rows are not supported (every value "
                         "must be 1; remove padding from the dataset)", where);
            goto out;
        }
    }
    if ((size_t)n > *cap) {
        size_t nc = (size_t)n;
        int32_t *a = realloc(*ids, nc * sizeof(int32_t));
        if (a)
            *ids = a;
        int32_t *b = realloc(*labels, nc * sizeof(int32_t));
        if (b)
            *labels = b;
        if (!a || !b) {
            lc_error_set(err, "%s: out of memory for a row of %lld tokens", where, (long long)n);
            goto out;
        }
        *cap = nc;
    }
    if (parse_int_array(in, "input_ids", where, vocab, false, *ids, err))
        goto out;
    if (lab && !cJSON_IsNull(lab)) {
        if (parse_int_array(lab, "labels", where, vocab, true, *labels, err))
            goto out;
    } else {
        memcpy(*labels, *ids, (size_t)n * sizeof(int32_t));
    }
    *out_len = n;
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

int lc_jsonl_open(lc_jsonl_reader *r, const char *path, int64_t vocab, lc_error *err)
{
    memset(r, 0, sizeof *r);
    r->f = fopen(path, "rb");
    if (!r->f)
        return lc_error_set(err, "%s: %s", path, strerror(errno));
    r->path = strdup(path);
    r->vocab = vocab;
    return 0;
}

/* Hardening (tests/test_hostile.c): getline() reads a whole line, however
 * long, into memory before the LC_JSONL_MAX_LINE check could refuse it (a
 * multi-GB file without a newline meant a multi-GB allocation). */
ssize_t lc_read_line_bounded(FILE *f, char **line, size_t *line_cap)
{
    const size_t max_cap = (size_t)LC_JSONL_MAX_LINE + 2;
    size_t n = 0;
    int c = EOF;
    ssize_t rc = 0;
    flockfile(f);
    while (n <= LC_JSONL_MAX_LINE) {
        if (n + 2 > *line_cap) {
            size_t cap = *line_cap ? *line_cap * 2 : 4096;
            char *p = realloc(*line, cap < max_cap ? cap : max_cap);
            if (!p) {
                rc = -2;
                break;
            }
            *line = p;
            *line_cap = cap < max_cap ? cap : max_cap;
        }
        if ((c = getc_unlocked(f)) == EOF)
            break;
        (*line)[n++] = (char)c;
        if (c == '\n')
            break;
    }
    funlockfile(f);
    if (rc)
        return rc;
    if (n == 0)
        return -1;
    (*line)[n] = '\0';
    return (ssize_t)n;
}

int lc_jsonl_open_encoded(lc_jsonl_reader *r, const char *path, int64_t vocab,
                          lc_row_encoder *enc, int64_t chunk, lc_error *err)
{
    if (chunk < 0 || chunk > INT64_MAX / LC_COMPLETION_MAX_LEN_FACTOR)
        return lc_error_set(err, "%s: chunk length %lld out of range", path, (long long)chunk);
    if (lc_jsonl_open(r, path, vocab, err))
        return -1;
    r->enc = enc;
    r->chunk = chunk ? chunk : INT64_MAX;
    return 0;
}

/* The next chunk of the current encoded row into *row. */
static void next_chunk(lc_jsonl_reader *r, lc_row *row)
{
    size_t k = r->text.n - r->text_pos;
    if ((int64_t)k > r->chunk)
        k = (size_t)r->chunk;
    *row = (lc_row){r->text.v + r->text_pos, r->text_labels.v + r->text_pos, (int64_t)k,
                    r->text_line, r->text_offset, r->text_pos == 0 && r->text_truncated};
    r->text_pos += k;
}

int lc_jsonl_next(lc_jsonl_reader *r, lc_row *row, lc_error *err)
{
    if (r->enc && r->text_pos < r->text.n) {
        next_chunk(r, row);
        return 1;
    }
    for (;;) {
        errno = 0;
        ssize_t n = lc_read_line_bounded(r->f, &r->line, &r->line_cap);
        if (n == -2)
            return lc_error_set(err, "%s:%lld: out of memory reading a line", r->path,
                                (long long)r->line_no + 1);
        if (n < 0) {
            if (ferror(r->f))
                return lc_error_set(err, "%s: read error: %s", r->path, strerror(errno));
            return 0;
        }
        int64_t start = r->offset;
        r->offset += n;
        r->line_no++;
        if ((size_t)n > LC_JSONL_MAX_LINE)
            return lc_error_set(err, "%s:%lld: line longer than %u bytes", r->path,
                                (long long)r->line_no, LC_JSONL_MAX_LINE);
        size_t i = 0;
        while (i < (size_t)n && (r->line[i] == ' ' || r->line[i] == '\t' || r->line[i] == '\r' ||
                                 r->line[i] == '\n'))
            i++;
        if (i == (size_t)n)
            continue;
        if (memchr(r->line, '\0', (size_t)n))
            return lc_error_set(err, "%s:%lld: NUL byte in line", r->path, (long long)r->line_no);
        char where[4200];
        snprintf(where, sizeof where, "%s:%lld", r->path, (long long)r->line_no);
        if (r->enc) {
            if (lc_row_encode(r->enc, r->line, (size_t)n, where, &r->text, &r->text_labels,
                              &r->text_truncated, err)) {
                r->text.n = r->text_pos = 0;
                return -1;
            }
            r->text_pos = 0;
            r->text_line = r->line_no;
            r->text_offset = start;
            if (r->text.n == 0) { /* nothing to train on: an empty row, counted by the caller */
                *row = (lc_row){r->text.v, r->text_labels.v, 0, r->line_no, start, false};
                return 1;
            }
            next_chunk(r, row);
            return 1;
        }
        int64_t len;
        if (lc_jsonl_parse_row(r->line, (size_t)n, r->vocab, where, &r->ids, &r->labels, &r->cap,
                               &len, err))
            return -1;
        *row = (lc_row){r->ids, r->labels, len, r->line_no, start, false};
        return 1;
    }
}

int lc_jsonl_seek(lc_jsonl_reader *r, int64_t offset, int64_t line_no, lc_error *err)
{
    if (fseeko(r->f, (off_t)offset, SEEK_SET) != 0)
        return lc_error_set(err, "%s: cannot seek to byte %lld: %s", r->path, (long long)offset,
                            strerror(errno));
    r->offset = offset;
    r->text.n = r->text_pos = 0; /* a completion text restarts at its first chunk */
    r->line_no = line_no - 1; /* line_no is the next row's own line */
    return 0;
}

void lc_jsonl_close(lc_jsonl_reader *r)
{
    if (r->f)
        fclose(r->f);
    free(r->path);
    free(r->line);
    free(r->ids);
    free(r->labels);
    lc_ids_free(&r->text);
    lc_ids_free(&r->text_labels);
    memset(r, 0, sizeof *r);
}

/* text_jsonl.c — reads {"text": ...} rows and writes their token ids (see
 * text_jsonl.h). */
#include "data/text_jsonl.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "data/jsonl.h"

/* Whether JSON text s[0..n) holds the escape \u0000 (an odd run of
 * backslashes before "u0000"; "\\u0000" is a backslash and text). */
static int has_nul_escape(const char *s, size_t n)
{
    for (const char *p = s; (p = memmem(p, n - (size_t)(p - s), "\\u0000", 6)); p++) {
        size_t at = (size_t)(p - s), run = 1;
        while (run <= at && s[at - run] == '\\')
            run++;
        if (run % 2)
            return 1;
    }
    return 0;
}

int lc_json_row_object(const char *line, size_t n, const char *where, cJSON **row, lc_error *err)
{
    *row = cJSON_ParseWithLength(line, n);
    if (!*row)
        return lc_error_set(err, "%s: not valid JSON", where);
    if (!cJSON_IsObject(*row)) {
        cJSON_Delete(*row);
        *row = NULL;
        return lc_error_set(err, "%s: a row must be a JSON object", where);
    }
    /* cJSON strings end at the first NUL: a \u0000 would be cut off silently */
    if (has_nul_escape(line, n)) {
        cJSON_Delete(*row);
        *row = NULL;
        return lc_error_set(err, "%s: \\u0000 (NUL) in a row is not supported", where);
    }
    return 0;
}

int lc_text_row_parse(const char *line, size_t n, const char *field, const char *where,
                      const char **text, size_t *len, cJSON **owner, lc_error *err)
{
    cJSON *row;
    *owner = NULL;
    if (lc_json_row_object(line, n, where, &row, err))
        return -1;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, field);
    if (!v) {
        cJSON_Delete(row);
        return lc_error_set(err, "%s: no \"%s\" field", where, field);
    }
    if (!cJSON_IsString(v)) {
        cJSON_Delete(row);
        return lc_error_set(err, "%s: \"%s\" must be a string", where, field);
    }
    *text = v->valuestring;
    *len = strlen(v->valuestring);
    *owner = row;
    return 0;
}

/* Appends {"input_ids": [...]}\n for ids to *buf (grown as needed). */
static int format_row(const lc_ids *ids, char **buf, size_t *cap, size_t *used, lc_error *err)
{
    size_t need = 32 + ids->n * 12;
    if (need > *cap) {
        char *b = realloc(*buf, need);
        if (!b)
            return lc_error_set(err, "out of memory for a row of %zu ids", ids->n);
        *buf = b;
        *cap = need;
    }
    size_t m = 0;
    memcpy(*buf, "{\"input_ids\": [", 15);
    m = 15;
    for (size_t i = 0; i < ids->n; i++)
        m += (size_t)snprintf(*buf + m, *cap - m, i ? ", %d" : "%d", (int)ids->v[i]);
    memcpy(*buf + m, "]}\n", 3);
    *used = m + 3;
    return 0;
}

int lc_text_jsonl_tokenize(lc_tokenizer *t, const char *path, bool add_special, FILE *out,
                           long long *rows, lc_error *err)
{
    *rows = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return lc_error_set(err, "%s: %s", path, strerror(errno));
    char *line = NULL, *obuf = NULL;
    size_t cap = 0, ocap = 0, on = 0;
    long long line_no = 0;
    lc_ids ids = {0};
    int rc = -1;
    ssize_t n;
    errno = 0;
    while ((n = lc_read_line_bounded(f, &line, &cap)) != -1) {
        char where[4200];
        line_no++;
        snprintf(where, sizeof where, "%s:%lld", path, line_no);
        if (n == -2) {
            lc_error_set(err, "%s: out of memory reading a line", where);
            goto done;
        }
        if ((size_t)n > LC_JSONL_MAX_LINE) {
            lc_error_set(err, "%s: line longer than %u bytes", where, LC_JSONL_MAX_LINE);
            goto done;
        }
        size_t k = 0;
        while (k < (size_t)n && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r' || line[k] == '\n'))
            k++;
        if (k == (size_t)n)
            continue; /* blank line */
        const char *text;
        size_t len;
        cJSON *owner;
        if (lc_text_row_parse(line, (size_t)n, "text", where, &text, &len, &owner, err))
            goto done;
        ids.n = 0;
        int bad = lc_tokenizer_encode(t, text, len, add_special, &ids, err);
        cJSON_Delete(owner);
        if (bad) {
            lc_error_prefix(err, "%s: \"text\"", where);
            goto done;
        }
        if (format_row(&ids, &obuf, &ocap, &on, err))
            goto done;
        if (fwrite(obuf, 1, on, out) != on) {
            lc_error_set(err, "writing the output: %s", strerror(errno));
            goto done;
        }
        (*rows)++;
    }
    if (ferror(f)) {
        lc_error_set(err, "%s: read error: %s", path, strerror(errno));
        goto done;
    }
    rc = 0;
done:
    free(line);
    free(obuf);
    lc_ids_free(&ids);
    fclose(f);
    return rc;
}

/* rows_out.c — tokenized JSONL written atomically (see rows_out.h). */
#include "train/rows_out.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int lc_rows_out_open(lc_rows_out *o, const char *path, lc_error *err)
{
    memset(o, 0, sizeof *o);
    size_t n = strlen(path) + 16;
    o->tmp = malloc(n);
    o->path = strdup(path);
    if (!o->tmp || !o->path) {
        free(o->tmp);
        free(o->path);
        memset(o, 0, sizeof *o);
        return lc_error_set(err, "out of memory");
    }
    snprintf(o->tmp, n, "%s.tmp-XXXXXX", path);
    int fd = mkstemp(o->tmp);
    if (fd < 0 || !(o->f = fdopen(fd, "w"))) {
        int e = errno;
        if (fd >= 0) {
            close(fd);
            unlink(o->tmp);
        }
        free(o->tmp);
        free(o->path);
        memset(o, 0, sizeof *o);
        return lc_error_set(err, "%s: cannot create a file next to it: %s", path, strerror(e));
    }
    return 0;
}

static void put_ids(FILE *f, const int32_t *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        fprintf(f, i ? ",%d" : "%d", (int)v[i]);
}

void lc_rows_out_put(lc_rows_out *o, const lc_row *row, int64_t len)
{
    fputs("{\"input_ids\":[", o->f);
    put_ids(o->f, row->input_ids, len);
    fputs("],\"labels\":[", o->f);
    put_ids(o->f, row->labels, len);
    fputs("]}\n", o->f);
}

int lc_rows_out_finish(lc_rows_out *o, bool ok, lc_error *err)
{
    if (!o->f)
        return ok ? 0 : -1;
    int bad = ferror(o->f) | fflush(o->f) | fsync(fileno(o->f));
    int e = errno;
    bad |= fclose(o->f);
    if (ok && bad)
        lc_error_set(err, "%s: write failed: %s", o->path, strerror(e));
    if (ok && !bad && rename(o->tmp, o->path) != 0)
        bad = lc_error_set(err, "%s: cannot rename the finished file into place: %s", o->path,
                           strerror(errno));
    if (!ok || bad)
        unlink(o->tmp);
    free(o->tmp);
    free(o->path);
    memset(o, 0, sizeof *o);
    return ok && !bad ? 0 : -1;
}

int lc_rows_prepare(const lc_dataset_opts *d, int f, const char *path, lc_data_counts *k,
                    lc_error *err)
{
    lc_jsonl_reader r;
    lc_rows_out out;
    memset(k, 0, sizeof *k);
    if (lc_dataset_open_file(&r, d, f, err))
        return -1;
    if (lc_rows_out_open(&out, path, err)) {
        lc_jsonl_close(&r);
        return -1;
    }
    lc_row row;
    int rc;
    int64_t last_line = -1;
    while ((rc = lc_jsonl_next(&r, &row, err)) == 1) {
        lc_data_count_line(k, &row, &last_line);
        int64_t len;
        int fate = lc_dataset_row_fate(d, &row, &len, k, err);
        if (fate < 0) {
            rc = lc_error_prefix(err, "%s:%lld", d->paths[f], (long long)row.line);
            break;
        }
        if (fate == 0)
            lc_rows_out_put(&out, &row, len);
    }
    lc_jsonl_close(&r);
    return lc_rows_out_finish(&out, rc == 0, err);
}

/* rows_out.h — writing rows as tokenized JSONL ({"input_ids": [...],
 * "labels": [...]} a line), into a temporary file next to the destination
 * that is renamed into place only when everything was written: a reader
 * never sees half a file, and a failed run leaves the old file (or none).
 * `lorac preprocess --out` and the dataset_prepared_path cache both write
 * through this. */
#ifndef LC_ROWS_OUT_H
#define LC_ROWS_OUT_H

#include <stdbool.h>
#include <stdio.h>

#include "autograd/error.h"
#include "data/dataset.h"

typedef struct lc_rows_out {
    FILE *f;
    char *tmp;                /* the temporary file's path */
    char *path;               /* the destination */
} lc_rows_out;

int lc_rows_out_open(lc_rows_out *o, const char *path, lc_error *err);
/* Appends row's first len tokens. */
void lc_rows_out_put(lc_rows_out *o, const lc_row *row, int64_t len);
/* ok: flush, sync and rename into place; else (or on a write error) the
 * temporary file is removed. Returns 0 only when the file is in place. */
int lc_rows_out_finish(lc_rows_out *o, bool ok, lc_error *err);

/* The kept rows of file f of d (lc_dataset_row_fate) written to path; where
 * the file's lines went in *k. */
int lc_rows_prepare(const lc_dataset_opts *d, int f, const char *path, lc_data_counts *k,
                    lc_error *err);

#endif

/* metrics.h — output_dir/metrics.jsonl, the trainer's record of its steps:
 * one JSON object a line ({"step":N,"loss":...} for training steps,
 * {"step":N,"eval_loss":...} for evaluations).
 *
 * Every write is checked and flushed: a line that cannot be written (a full
 * disk, an I/O error) fails the run with the file's name and the reason,
 * rather than leaving a record that silently stops. */
#ifndef LC_METRICS_H
#define LC_METRICS_H

#include <stdint.h>
#include <stdio.h>

#include "autograd/error.h"

typedef struct lc_metrics {
    FILE *f;                  /* NULL when closed */
    char path[4200];
} lc_metrics;

/* Opens output_dir/metrics.jsonl for appending. keep_step > 0 (a resumed
 * run) keeps the complete lines of steps ≤ keep_step, rewritten atomically
 * first, so a crash while resuming loses none of them; otherwise the file
 * starts empty. */
int lc_metrics_open(lc_metrics *m, const char *output_dir, int64_t keep_step, lc_error *err);

/* Writes one line (fmt without its "\n") and flushes it. */
int lc_metrics_line(lc_metrics *m, lc_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Closes the file, reporting a failure of the last writes; a no-op when
 * closed. err may be NULL (clean-up after another error). */
int lc_metrics_close(lc_metrics *m, lc_error *err);

#endif

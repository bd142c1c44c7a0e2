/* metrics.h — the trainer's record of its steps, written in one place:
 *   output_dir/metrics.jsonl   one JSON object a line ({"step":N,"loss":...}
 *                              for training steps, {"step":N,"eval_loss":...}
 *                              for evaluations);
 *   output_dir/loss.svg        the curves of those values (train/loss_svg.h),
 *                              rewritten atomically at each line;
 *   output_dir/runs/events.out.tfevents.*  with use_tensorboard, the same
 *                              values as TensorBoard scalars (train/tfevents.h):
 *                              train/loss, train/lr, train/grad_norm,
 *                              train/tokens_per_s, eval/loss, eval/ppl.
 *
 * Every write is checked and flushed (the event file fsynced): a line that
 * cannot be written (a full disk, an I/O error) fails the run with the
 * file's name and the reason, rather than leaving a record that silently
 * stops. */
#ifndef LC_METRICS_H
#define LC_METRICS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "autograd/error.h"
#include "train/loss_svg.h"
#include "train/tfevents.h"

typedef struct lc_metrics {
    FILE *f;                  /* NULL when closed */
    char path[4200];
    char svg_path[4200];
    lc_loss_svg svg;          /* every point logged (kept lines included) */
    lc_tfevents tb;           /* open when tb_on (use_tensorboard) */
    bool tb_on;
} lc_metrics;

/* One training step's line. */
typedef struct lc_metrics_step {
    int64_t step;
    double loss, grad_norm, lr;
    int64_t tokens;           /* supervised tokens of the step */
    int64_t epoch;
    double tok_s;             /* tokens (padding excluded) per second */
} lc_metrics_step;

/* Opens output_dir/metrics.jsonl for appending. keep_step > 0 (a resumed
 * run) keeps the complete lines of steps ≤ keep_step, rewritten atomically
 * first, so a crash while resuming loses none of them, and draws them in
 * loss.svg; otherwise the file starts empty. tensorboard: also open a new
 * event file, its SessionLog START at step keep_step + 1. */
int lc_metrics_open(lc_metrics *m, const char *output_dir, int64_t keep_step, bool tensorboard,
                    lc_error *err);

/* Writes a training step's line / an evaluation's line to every record. */
int lc_metrics_train(lc_metrics *m, const lc_metrics_step *s, lc_error *err);
int lc_metrics_eval(lc_metrics *m, int64_t step, double loss, int64_t tokens, lc_error *err);

/* A text at step (e.g. a sample generation): a metrics.jsonl line
 * {"step", "tag", "text"}, and with use_tensorboard a text in the event file
 * (TensorBoard's Text tab). */
int lc_metrics_text(lc_metrics *m, const char *tag, int64_t step, const char *text,
                    lc_error *err);

/* Closes the files, reporting a failure of the last writes; a no-op when
 * closed. err may be NULL (clean-up after another error). */
int lc_metrics_close(lc_metrics *m, lc_error *err);

#endif

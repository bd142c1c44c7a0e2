/* loss_svg.h — output_dir/loss.svg: the run's curves as a standalone SVG
 * picture (no script, no external reference; any browser shows it).
 *
 * Train loss (blue line) and eval loss (orange line with dots) against the
 * step on the left axis, the learning rate (grey dashes) on the right axis,
 * ticks at round values on all three, axis labels and a legend. The points
 * are the values of metrics.jsonl's lines (train/metrics.c adds them as it
 * writes the lines, and on resume from the lines it keeps), so the curve
 * of a resumed run is the whole run's.
 *
 * The plot rectangle is <rect id="plot" x y width height> with the axis
 * ranges as attributes data-step-min/-max, data-loss-min/-max and
 * data-lr-min/-max: a point (px, py) of a polyline (ids train-loss,
 * eval-loss, lr) maps back to step = step-min + (px − x) / width ·
 * (step-max − step-min) and value = min + (y + height − py) / height ·
 * (max − min). Coordinates are written with 3 decimals. A series of more
 * than LC_LOSS_SVG_MAX_POINTS points is drawn through every k-th one (and
 * the last), so the file stays small on long runs. */
#ifndef LC_LOSS_SVG_H
#define LC_LOSS_SVG_H

#include <stddef.h>
#include <stdint.h>

#include "autograd/error.h"

#define LC_LOSS_SVG_MAX_POINTS 2000

typedef struct lc_loss_point {
    int64_t step;
    double loss, lr;          /* lr: train points only */
} lc_loss_point;

typedef struct lc_loss_svg {
    lc_loss_point *train, *eval;
    size_t n_train, cap_train, n_eval, cap_eval;
} lc_loss_svg;

/* Empty curves (also what a zeroed struct is). */
void lc_loss_svg_init(lc_loss_svg *s);
void lc_loss_svg_free(lc_loss_svg *s);

/* Adds a point; non-finite values are not drawn. */
int lc_loss_svg_add_train(lc_loss_svg *s, int64_t step, double loss, double lr, lc_error *err);
int lc_loss_svg_add_eval(lc_loss_svg *s, int64_t step, double loss, lc_error *err);

/* The picture (malloc'd, NUL-terminated; its length in *len), or NULL when
 * out of memory. */
char *lc_loss_svg_render(const lc_loss_svg *s, size_t *len);

/* Renders and writes path atomically (temporary file + rename). */
int lc_loss_svg_write(const lc_loss_svg *s, const char *path, lc_error *err);

#endif

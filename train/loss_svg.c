/* loss_svg.c — see loss_svg.h. */
#include "train/loss_svg.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/fsutil.h"

/* Layout (pixels). */
#define W 860.0
#define H 520.0
#define PX 80.0               /* plot rectangle */
#define PY 70.0
#define PW 660.0
#define PH 370.0
#define N_TICKS 6             /* about this many ticks per axis */

#define C_TRAIN "#1f77b4"
#define C_EVAL "#ff7f0e"
#define C_LR "#7f7f7f"

void lc_loss_svg_init(lc_loss_svg *s)
{
    memset(s, 0, sizeof *s);
}

void lc_loss_svg_free(lc_loss_svg *s)
{
    free(s->train);
    free(s->eval);
    lc_loss_svg_init(s);
}

static int add(lc_loss_point **v, size_t *n, size_t *cap, lc_loss_point p, lc_error *err)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        lc_loss_point *q = realloc(*v, c * sizeof *q);
        if (!q)
            return lc_error_set(err, "loss.svg: out of memory for %zu points", c);
        *v = q;
        *cap = c;
    }
    (*v)[(*n)++] = p;
    return 0;
}

int lc_loss_svg_add_train(lc_loss_svg *s, int64_t step, double loss, double lr, lc_error *err)
{
    lc_loss_point p = {step, loss, lr};
    return add(&s->train, &s->n_train, &s->cap_train, p, err);
}

int lc_loss_svg_add_eval(lc_loss_svg *s, int64_t step, double loss, lc_error *err)
{
    lc_loss_point p = {step, loss, NAN};
    return add(&s->eval, &s->n_eval, &s->cap_eval, p, err);
}

/* An axis: [lo, hi] widened to multiples of a round tick spacing
 * (1, 2 or 5 × 10^k) giving about N_TICKS ticks. */
typedef struct axis {
    double lo, hi, tick;
} axis;

static axis nice_axis(double lo, double hi, bool from_zero)
{
    axis a;
    if (!isfinite(lo) || !isfinite(hi)) {
        lo = 0;
        hi = 1;
    }
    if (from_zero && lo > 0)
        lo = 0;
    if (hi - lo <= 0) {
        double pad = fabs(hi) > 0 ? fabs(hi) * 0.05 : 0.5;
        lo = from_zero && lo >= 0 ? lo : lo - pad;
        hi += pad;
    }
    double raw = (hi - lo) / N_TICKS, mag = pow(10, floor(log10(raw))), f = raw / mag;
    a.tick = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
    a.lo = floor(lo / a.tick) * a.tick;
    a.hi = ceil(hi / a.tick) * a.tick;
    if (a.hi <= a.lo)
        a.hi = a.lo + a.tick;
    return a;
}

static double map_x(const axis *a, double v)
{
    return PX + (v - a->lo) / (a->hi - a->lo) * PW;
}

static double map_y(const axis *a, double v)
{
    return PY + PH - (v - a->lo) / (a->hi - a->lo) * PH;
}

/* Stride that keeps a series of n points at most LC_LOSS_SVG_MAX_POINTS. */
static size_t stride_of(size_t n)
{
    return n <= LC_LOSS_SVG_MAX_POINTS ? 1 : (n + LC_LOSS_SVG_MAX_POINTS - 1) / LC_LOSS_SVG_MAX_POINTS;
}

/* The points of one series (value: loss, or lr when use_lr) as a polyline. */
static void polyline(FILE *f, const char *id, const lc_loss_point *p, size_t n, bool use_lr,
                     const axis *ax, const axis *ay, const char *style)
{
    fprintf(f, "<polyline id=\"%s\" fill=\"none\" %s points=\"", id, style);
    size_t k = stride_of(n);
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        if (i % k != 0 && i != n - 1)
            continue;
        double v = use_lr ? p[i].lr : p[i].loss;
        if (!isfinite(v))
            continue;
        fprintf(f, "%s%.3f,%.3f", first ? "" : " ", map_x(ax, (double)p[i].step), map_y(ay, v));
        first = false;
    }
    fprintf(f, "\"/>\n");
}

/* Tick label text: %g with up to 4 significant digits ("-0" shown as "0"). */
static void tick_label(double v, double tick, char *buf, size_t n)
{
    if (fabs(v) < tick * 1e-6)
        v = 0;
    snprintf(buf, n, "%.4g", v);
}

static void x_ticks(FILE *f, const axis *a)
{
    for (double v = a->lo; v <= a->hi + a->tick * 1e-6; v += a->tick) {
        double x = map_x(a, v);
        char t[32];
        tick_label(v, a->tick, t, sizeof t);
        fprintf(f, "<line x1=\"%.3f\" y1=\"%.3f\" x2=\"%.3f\" y2=\"%.3f\" stroke=\"#ddd\"/>\n",
                x, PY, x, PY + PH);
        fprintf(f, "<line x1=\"%.3f\" y1=\"%.3f\" x2=\"%.3f\" y2=\"%.3f\" stroke=\"#000\"/>\n",
                x, PY + PH, x, PY + PH + 5);
        fprintf(f, "<text x=\"%.3f\" y=\"%.3f\" text-anchor=\"middle\">%s</text>\n", x,
                PY + PH + 20, t);
    }
}

/* Ticks of a vertical axis at x0 (right: labels to its right). */
static void y_ticks(FILE *f, const axis *a, double x0, bool right, bool grid)
{
    for (double v = a->lo; v <= a->hi + a->tick * 1e-6; v += a->tick) {
        double y = map_y(a, v);
        char t[32];
        tick_label(v, a->tick, t, sizeof t);
        if (grid)
            fprintf(f, "<line x1=\"%.3f\" y1=\"%.3f\" x2=\"%.3f\" y2=\"%.3f\" stroke=\"#ddd\"/>\n",
                    PX, y, PX + PW, y);
        fprintf(f, "<line x1=\"%.3f\" y1=\"%.3f\" x2=\"%.3f\" y2=\"%.3f\" stroke=\"#000\"/>\n",
                x0, y, right ? x0 + 5 : x0 - 5, y);
        fprintf(f, "<text x=\"%.3f\" y=\"%.3f\" text-anchor=\"%s\">%s</text>\n",
                right ? x0 + 8 : x0 - 8, y + 4, right ? "start" : "end", t);
    }
}

/* One row above the plot: a line sample and a name per series. */
static void legend(FILE *f, bool has_eval)
{
    double x = PX, y = PY - 16;
    const char *names[] = {"train loss", "eval loss", "learning rate (right axis)"};
    const char *styles[] = {"stroke=\"" C_TRAIN "\" stroke-width=\"2\"",
                            "stroke=\"" C_EVAL "\" stroke-width=\"2\"",
                            "stroke=\"" C_LR "\" stroke-width=\"1.5\" stroke-dasharray=\"5,3\""};
    const double widths[] = {110, 105, 200};
    for (int i = 0; i < 3; i++) {
        if (i == 1 && !has_eval)
            continue;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" %s/>\n", x, y, x + 26,
                y, styles[i]);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", x + 32, y + 4, names[i]);
        x += widths[i];
    }
}

char *lc_loss_svg_render(const lc_loss_svg *s, size_t *len)
{
    double smin = INFINITY, smax = -INFINITY, lmin = INFINITY, lmax = -INFINITY, rmax = 0;
    for (int series = 0; series < 2; series++) {
        const lc_loss_point *p = series ? s->eval : s->train;
        size_t n = series ? s->n_eval : s->n_train;
        for (size_t i = 0; i < n; i++) {
            smin = fmin(smin, (double)p[i].step);
            smax = fmax(smax, (double)p[i].step);
            if (isfinite(p[i].loss)) {
                lmin = fmin(lmin, p[i].loss);
                lmax = fmax(lmax, p[i].loss);
            }
            if (!series && isfinite(p[i].lr))
                rmax = fmax(rmax, p[i].lr);
        }
    }
    if (!isfinite(smin)) {
        smin = 0;
        smax = 1;
    }
    axis ax = nice_axis(smin, smax, true), ay = nice_axis(lmin, lmax, false),
         ar = nice_axis(0, rmax, true);

    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    if (!f)
        return NULL;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" "
            "viewBox=\"0 0 %g %g\" font-family=\"sans-serif\" font-size=\"12\">\n"
            "<title>lorac training curves</title>\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"#fff\"/>\n", W, H, W, H);
    fprintf(f, "<text x=\"%g\" y=\"26\" text-anchor=\"middle\" font-size=\"15\">"
            "Loss and learning rate</text>\n", PX + PW / 2);
    fprintf(f, "<rect id=\"plot\" x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" fill=\"none\" "
            "stroke=\"#000\" data-step-min=\"%.17g\" data-step-max=\"%.17g\" "
            "data-loss-min=\"%.17g\" data-loss-max=\"%.17g\" data-lr-min=\"%.17g\" "
            "data-lr-max=\"%.17g\"/>\n", PX, PY, PW, PH, ax.lo, ax.hi, ay.lo, ay.hi, ar.lo,
            ar.hi);
    x_ticks(f, &ax);
    y_ticks(f, &ay, PX, false, true);
    y_ticks(f, &ar, PX + PW, true, false);
    fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">step</text>\n", PX + PW / 2,
            PY + PH + 40);
    fprintf(f, "<text transform=\"translate(%g,%g) rotate(-90)\" text-anchor=\"middle\">loss"
            "</text>\n", PX - 58, PY + PH / 2);
    fprintf(f, "<text transform=\"translate(%g,%g) rotate(90)\" text-anchor=\"middle\">"
            "learning rate</text>\n", PX + PW + 72, PY + PH / 2);
    polyline(f, "lr", s->train, s->n_train, true, &ax, &ar,
             "stroke=\"" C_LR "\" stroke-width=\"1.5\" stroke-dasharray=\"5,3\"");
    polyline(f, "train-loss", s->train, s->n_train, false, &ax, &ay,
             "stroke=\"" C_TRAIN "\" stroke-width=\"2\"");
    if (s->n_eval) {
        polyline(f, "eval-loss", s->eval, s->n_eval, false, &ax, &ay,
                 "stroke=\"" C_EVAL "\" stroke-width=\"2\"");
        size_t k = stride_of(s->n_eval);
        for (size_t i = 0; i < s->n_eval; i++)
            if ((i % k == 0 || i == s->n_eval - 1) && isfinite(s->eval[i].loss))
                fprintf(f, "<circle cx=\"%.3f\" cy=\"%.3f\" r=\"3\" fill=\"" C_EVAL "\"/>\n",
                        map_x(&ax, (double)s->eval[i].step), map_y(&ay, s->eval[i].loss));
    }
    legend(f, s->n_eval > 0);
    fprintf(f, "</svg>\n");
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

int lc_loss_svg_write(const lc_loss_svg *s, const char *path, lc_error *err)
{
    size_t len;
    char *text = lc_loss_svg_render(s, &len);
    if (!text)
        return lc_error_set(err, "%s: out of memory", path);
    int rc = lc_write_file_atomic(path, text, len, err);
    free(text);
    return rc;
}

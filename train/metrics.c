/* metrics.c — see metrics.h. */
#include "train/metrics.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "train/fsutil.h"

/* The complete lines of text whose step is ≤ keep_step (malloc'd). A line
 * cut short by a crash ("{"step":1" of step 12) has no newline: dropped. */
static char *lines_upto(const char *text, size_t len, int64_t keep_step, size_t *kept_len)
{
    char *kept = malloc(len + 1);
    if (!kept)
        return NULL;
    *kept_len = 0;
    for (const char *line = text; line && *line;) {
        const char *nl = strchr(line, '\n');
        long long step = -1;
        if (nl && sscanf(line, "{\"step\":%lld", &step) == 1 && step <= keep_step) {
            memcpy(kept + *kept_len, line, (size_t)(nl - line + 1));
            *kept_len += (size_t)(nl - line + 1);
        }
        line = nl ? nl + 1 : NULL;
    }
    kept[*kept_len] = '\0';
    return kept;
}

static double number_of(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* Adds the points of the kept lines (text, one JSON object a line) to the
 * curves; a line that does not parse is not drawn. */
static int draw_kept(lc_metrics *m, char *text, lc_error *err)
{
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        cJSON *o = cJSON_Parse(line);
        double step = number_of(o, "step"), loss = number_of(o, "loss"),
               eval = number_of(o, "eval_loss");
        int rc = 0;
        if (isfinite(step) && isfinite(loss))
            rc = lc_loss_svg_add_train(&m->svg, (int64_t)step, loss, number_of(o, "lr"), err);
        else if (isfinite(step) && isfinite(eval))
            rc = lc_loss_svg_add_eval(&m->svg, (int64_t)step, eval, err);
        cJSON_Delete(o);
        if (nl)
            *nl = '\n';
        if (rc)
            return -1;
        line = nl ? nl + 1 : NULL;
    }
    return 0;
}

/* Rewrites m->path with only the lines of steps ≤ keep_step: written whole
 * to a temporary file and renamed, never truncated in place; their points
 * go to the curves. */
static int keep_lines(lc_metrics *m, int64_t keep_step, lc_error *err)
{
    size_t len, kept_len;
    char *text = lc_read_file(m->path, (size_t)1 << 30, &len, err);
    if (!text)
        return -1;
    char *kept = lines_upto(text, len, keep_step, &kept_len);
    free(text);
    if (!kept)
        return lc_error_set(err, "%s: out of memory for %zu bytes of metrics", m->path, len);
    int rc = lc_write_file_atomic(m->path, kept, kept_len, err);
    if (!rc)
        rc = draw_kept(m, kept, err);
    free(kept);
    return rc;
}

int lc_metrics_open(lc_metrics *m, const char *output_dir, int64_t keep_step, bool tensorboard,
                    lc_error *err)
{
    m->f = NULL;
    m->tb_on = false;
    lc_loss_svg_init(&m->svg);
    if ((size_t)snprintf(m->path, sizeof m->path, "%s/metrics.jsonl", output_dir) >=
            sizeof m->path ||
        (size_t)snprintf(m->svg_path, sizeof m->svg_path, "%s/loss.svg", output_dir) >=
            sizeof m->svg_path)
        return lc_error_set(err, "output_dir: path too long");
    bool keep = keep_step > 0 && lc_path_exists(m->path);
    if (keep && keep_lines(m, keep_step, err))
        return -1;
    m->f = fopen(m->path, keep ? "a" : "w");
    if (!m->f)
        return lc_error_set(err, "cannot write %s: %s", m->path, strerror(errno));
    if (tensorboard) {
        if (lc_tfevents_open(&m->tb, output_dir, keep_step + 1, err))
            return -1;
        m->tb_on = true;
    }
    /* a resumed run's picture drops the later points now; a fresh run's
     * appears with its first line */
    if (m->svg.n_train + m->svg.n_eval == 0)
        return 0;
    return lc_loss_svg_write(&m->svg, m->svg_path, err);
}

/* err set to "PATH: write failed: <errno text>" (e = errno of the failure). */
static int write_failed(const lc_metrics *m, int e, lc_error *err)
{
    return lc_error_set(err, "%s: write failed: %s", m->path, e ? strerror(e) : "I/O error");
}

/* Writes one line of metrics.jsonl (fmt without its "\n") and flushes it. */
static int line(lc_metrics *m, lc_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int line(lc_metrics *m, lc_error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    errno = 0;
    int n = vfprintf(m->f, fmt, ap);
    va_end(ap);
    if (n < 0 || fputc('\n', m->f) == EOF || fflush(m->f) == EOF)
        return write_failed(m, errno, err);
    return 0;
}

typedef struct scalar {
    const char *tag;
    double value;
} scalar;

/* The line's values in the event file (when open), synced. */
static int tb_scalars(lc_metrics *m, int64_t step, const scalar *s, int n, lc_error *err)
{
    if (!m->tb_on)
        return 0;
    for (int i = 0; i < n; i++)
        if (lc_tfevents_scalar(&m->tb, s[i].tag, step, s[i].value, err))
            return -1;
    return lc_tfevents_sync(&m->tb, err);
}

int lc_metrics_train(lc_metrics *m, const lc_metrics_step *s, lc_error *err)
{
    /* tokens/s to 0.1, as the line shows it, so every record holds the same value */
    double tok_s = nearbyint(s->tok_s * 10.0) / 10.0;
    if (line(m, err, "{\"step\":%lld,\"loss\":%.9g,\"grad_norm\":%.9g,\"lr\":%.9g,"
             "\"tokens\":%lld,\"epoch\":%lld,\"tok_s\":%.1f}", (long long)s->step, s->loss,
             s->grad_norm, s->lr, (long long)s->tokens, (long long)s->epoch, tok_s))
        return -1;
    const scalar v[] = {{"train/loss", s->loss}, {"train/lr", s->lr},
                        {"train/grad_norm", s->grad_norm}, {"train/tokens_per_s", tok_s}};
    if (tb_scalars(m, s->step, v, 4, err) ||
        lc_loss_svg_add_train(&m->svg, s->step, s->loss, s->lr, err))
        return -1;
    return lc_loss_svg_write(&m->svg, m->svg_path, err);
}

int lc_metrics_eval(lc_metrics *m, int64_t step, double loss, int64_t tokens, lc_error *err)
{
    double ppl = exp(loss);
    if (line(m, err, "{\"step\":%lld,\"eval_loss\":%.9g,\"eval_ppl\":%.9g,\"eval_tokens\":%lld}",
             (long long)step, loss, ppl, (long long)tokens))
        return -1;
    const scalar v[] = {{"eval/loss", loss}, {"eval/ppl", ppl}};
    if (tb_scalars(m, step, v, 2, err) || lc_loss_svg_add_eval(&m->svg, step, loss, err))
        return -1;
    return lc_loss_svg_write(&m->svg, m->svg_path, err);
}

int lc_metrics_text(lc_metrics *m, const char *tag, int64_t step, const char *text,
                    lc_error *err)
{
    cJSON *o = cJSON_CreateObject();
    char *json = o && cJSON_AddNumberToObject(o, "step", (double)step) &&
                         cJSON_AddStringToObject(o, "tag", tag) &&
                         cJSON_AddStringToObject(o, "text", text)
                     ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!json)
        return lc_error_set(err, "out of memory");
    int rc = line(m, err, "%s", json);
    free(json);
    if (rc || !m->tb_on)
        return rc;
    return lc_tfevents_text(&m->tb, tag, step, text, err) || lc_tfevents_sync(&m->tb, err) ? -1 : 0;
}

int lc_metrics_close(lc_metrics *m, lc_error *err)
{
    int rc = m->tb_on ? lc_tfevents_close(&m->tb, err) : 0;
    m->tb_on = false;
    lc_loss_svg_free(&m->svg);
    if (!m->f)
        return rc;
    bool failed_before = ferror(m->f) != 0;
    errno = 0;
    int fc = fclose(m->f);
    int e = errno;
    m->f = NULL;
    if ((fc == EOF || failed_before) && rc == 0)
        return write_failed(m, e, err);
    return rc;
}

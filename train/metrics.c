/* metrics.c — see metrics.h. */
#include "train/metrics.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    return kept;
}

/* Rewrites m->path with only the lines of steps ≤ keep_step: written whole
 * to a temporary file and renamed, never truncated in place. */
static int keep_lines(const lc_metrics *m, int64_t keep_step, lc_error *err)
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
    free(kept);
    return rc;
}

int lc_metrics_open(lc_metrics *m, const char *output_dir, int64_t keep_step, lc_error *err)
{
    m->f = NULL;
    if ((size_t)snprintf(m->path, sizeof m->path, "%s/metrics.jsonl", output_dir) >=
        sizeof m->path)
        return lc_error_set(err, "output_dir: path too long");
    bool keep = keep_step > 0 && lc_path_exists(m->path);
    if (keep && keep_lines(m, keep_step, err))
        return -1;
    m->f = fopen(m->path, keep ? "a" : "w");
    if (!m->f)
        return lc_error_set(err, "cannot write %s: %s", m->path, strerror(errno));
    return 0;
}

/* err set to "PATH: write failed: <errno text>" (e = errno of the failure). */
static int write_failed(const lc_metrics *m, int e, lc_error *err)
{
    return lc_error_set(err, "%s: write failed: %s", m->path, e ? strerror(e) : "I/O error");
}

int lc_metrics_line(lc_metrics *m, lc_error *err, const char *fmt, ...)
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

int lc_metrics_close(lc_metrics *m, lc_error *err)
{
    if (!m->f)
        return 0;
    bool failed_before = ferror(m->f) != 0;
    errno = 0;
    int rc = fclose(m->f);
    int e = errno;
    m->f = NULL;
    return rc == EOF || failed_before ? write_failed(m, e, err) : 0;
}

/* error.c — lc_error formatting, message helpers and the always-on assert
 * (see error.h). */
#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An lc_error is one line: a control byte that a message quotes from an
 * untrusted file (a JSON string's \n, a terminal escape) becomes '?'. The
 * callers quote through lc_printable where they can; this holds for all. */
static void one_line(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
}

int lc_error_set(lc_error *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        one_line(err->msg);
    }
    return -1;
}

int lc_error_prefix(lc_error *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    char prefix[LC_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    /* prefix + ": " + old message, cut to the buffer (never overflows). */
    size_t plen = strlen(prefix), olen = strnlen(err->msg, sizeof err->msg - 1);
    if (plen > sizeof err->msg - 3)
        plen = sizeof err->msg - 3;
    size_t keep = sizeof err->msg - 3 - plen;
    if (olen > keep)
        olen = keep;
    memmove(err->msg + plen + 2, err->msg, olen);
    memcpy(err->msg, prefix, plen);
    err->msg[plen] = ':';
    err->msg[plen + 1] = ' ';
    err->msg[plen + 2 + olen] = '\0';
    one_line(err->msg);
    return -1;
}

const char *lc_printable(const char *s, char *buf, size_t n)
{
    size_t i = 0, len = strlen(s);
    size_t keep = len < n - 1 ? len : n - 4;
    for (; i < keep; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (keep < len) {
        memcpy(buf + i, "...", 3);
        i += 3;
    }
    buf[i] = '\0';
    return buf;
}

const char *lc_plural(long long n)
{
    return n == 1 ? "" : "s";
}

void lc_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "lorac: internal error: assertion `%s` failed at %s:%d\n",
            expr, file, line);
    abort();
}

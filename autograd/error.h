/* error.h — how every lorac library function reports failure.
 *
 * Library code never prints and never exits: a function that can fail returns
 * int (0 = ok, -1 = failed) and fills an lc_error with one line that says where
 * (file, line, tensor or key) and what was expected. Only train/main.c prints.
 * LC_ASSERT is for internal invariants (bugs, not bad input) and is always on. */
#ifndef LC_ERROR_H
#define LC_ERROR_H

#include <stdarg.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LC_ERROR_MAX 1024

typedef struct lc_error {
    char msg[LC_ERROR_MAX];
} lc_error;

/* Formats the message into err (err may be NULL) and returns -1, so call
 * sites read `return lc_error_set(err, "...", ...);`. */
int lc_error_set(lc_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prepends "prefix: " to an existing message (adds context on the way up). */
int lc_error_prefix(lc_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Copy of s (from an untrusted file) fit for a one-line message: control
 * bytes become '?', a long string is cut with "...". Returns buf (n ≥ 8). */
const char *lc_printable(const char *s, char *buf, size_t n);

/* "" when n is 1, else "s": "%lld step%s", (long long)n, lc_plural(n) reads
 * "1 step" and "2 steps" in messages and reports. */
const char *lc_plural(long long n);

void lc_assert_fail(const char *expr, const char *file, int line)
    __attribute__((noreturn));

#define LC_ASSERT(expr) \
    ((expr) ? (void)0 : lc_assert_fail(#expr, __FILE__, __LINE__))

#ifdef __cplusplus
}
#endif

#endif

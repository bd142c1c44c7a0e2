/* tok_util.c — small pieces the tokenizer modules share: buffer growth,
 * UTF-8 (through utf8proc) and string copies (see tok_util.h). */
#include "data/tok_util.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

int lc_tok_grow(void **p, size_t *cap, size_t need, size_t elem, lc_error *err)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q)
        return lc_error_set(err, "tokenizer: out of memory (%zu bytes)", c * elem);
    *p = q;
    *cap = c;
    return 0;
}

/* Length of the UTF-8 character at s (s valid UTF-8). */
size_t lc_utf8_len(const char *s)
{
    unsigned c = (uint8_t)s[0];
    return c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
}

uint32_t lc_utf8_decode(const char *s, size_t n, size_t *cl)
{
    utf8proc_int32_t cp = 0;
    utf8proc_ssize_t r = utf8proc_iterate((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &cp);
    *cl = r > 0 ? (size_t)r : 1;
    return r > 0 ? (uint32_t)cp : 0xfffd;
}

/* The code point that ends s[0..n) (n > 0, valid UTF-8). */
uint32_t lc_utf8_last(const char *s, size_t n)
{
    size_t i = n - 1;
    while (i > 0 && ((uint8_t)s[i] & 0xc0) == 0x80)
        i--;
    size_t cl;
    return lc_utf8_decode(s + i, n - i, &cl);
}

/* Byte offset of the first invalid UTF-8 sequence in s[0..n), or n. */
size_t lc_utf8_valid_prefix(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if ((uint8_t)s[i] < 0x80) {
            i++;
            continue;
        }
        utf8proc_int32_t cp;
        utf8proc_ssize_t r = utf8proc_iterate((const utf8proc_uint8_t *)s + i,
                                              (utf8proc_ssize_t)(n - i), &cp);
        if (r <= 0)
            return i;
        i += (size_t)r;
    }
    return n;
}

char *lc_tok_dup(const char *s, size_t n, lc_error *err)
{
    char *d = malloc(n + 1);
    if (!d) {
        lc_error_set(err, "tokenizer: out of memory");
        return NULL;
    }
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

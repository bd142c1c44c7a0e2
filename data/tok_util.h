/* tok_util.h — small pieces the tokenizer modules (tokenizer.c,
 * tok_json.c, tok_decoder.c) share: growing a malloc'd array, UTF-8
 * characters (through utf8proc) and NUL-terminated copies. Texts handed to
 * these are valid UTF-8 unless a function says otherwise. */
#ifndef LC_TOK_UTIL_H
#define LC_TOK_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "autograd/error.h"

/* Grows *p (elements of elem bytes, room for *cap) to room for need, by doubling. */
int lc_tok_grow(void **p, size_t *cap, size_t need, size_t elem, lc_error *err);
/* Byte length of the UTF-8 character that starts at s. */
size_t lc_utf8_len(const char *s);
/* The code point at s[0..n) and its byte length in *cl (U+FFFD and 1 when invalid). */
uint32_t lc_utf8_decode(const char *s, size_t n, size_t *cl);
/* The code point that ends s[0..n) (n > 0). */
uint32_t lc_utf8_last(const char *s, size_t n);
/* Byte offset of the first invalid UTF-8 sequence in s[0..n) (any bytes), or n. */
size_t lc_utf8_valid_prefix(const char *s, size_t n);
/* s[0..n) as a malloc'd NUL-terminated string. */
char *lc_tok_dup(const char *s, size_t n, lc_error *err);

#endif

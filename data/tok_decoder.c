/* tok_decoder.c — the decoder chain of a tokenizer.json (see tok_decoder.h):
 * each step maps a list of token strings to a new list, as HF's decoders. */
#include "data/tok_decoder.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/bpe.h"
#include "data/tok_util.h"

static int sl_push(lc_strlist *l, const char *s, size_t n, lc_error *err)
{
    if (lc_tok_grow((void **)&l->buf, &l->cap, l->used + n + 1, 1, err))
        return -1;
    if (l->n == l->ncap) {
        size_t c = l->ncap ? 2 * l->ncap : 64;
        size_t *off = realloc(l->off, c * sizeof *off);
        if (off)
            l->off = off;
        size_t *len = off ? realloc(l->len, c * sizeof *len) : NULL;
        if (!len)
            return lc_error_set(err, "tokenizer: out of memory");
        l->len = len;
        l->ncap = c;
    }
    memcpy(l->buf + l->used, s, n);
    l->off[l->n] = l->used;
    l->len[l->n] = n;
    l->used += n;
    l->n++;
    return 0;
}

/* Appends to the last string of l (one must exist). */
static int sl_append(lc_strlist *l, const char *s, size_t n, lc_error *err)
{
    if (lc_tok_grow((void **)&l->buf, &l->cap, l->used + n + 1, 1, err))
        return -1;
    memcpy(l->buf + l->used, s, n);
    l->used += n;
    l->len[l->n - 1] += n;
    return 0;
}

/* Rust's String::from_utf8_lossy of s[0..n) appended to the last string of l:
 * each maximal invalid prefix of a sequence becomes one U+FFFD. */
static int append_lossy(lc_strlist *l, const char *s, size_t n, lc_error *err)
{
    static const char fffd[] = "\xef\xbf\xbd";
    size_t i = 0;
    while (i < n) {
        size_t v = lc_utf8_valid_prefix(s + i, n - i);
        if (v && sl_append(l, s + i, v, err))
            return -1;
        i += v;
        if (i == n)
            break;
        /* how many bytes of a well-formed sequence start here */
        const uint8_t *u = (const uint8_t *)s + i;
        size_t need = u[0] >= 0xf0 && u[0] <= 0xf4 ? 4 : u[0] >= 0xe0 ? 3 : u[0] >= 0xc2 && u[0] < 0xe0 ? 2 : 1;
        size_t k = 1;
        if (need > 1) {
            uint8_t lo = 0x80, hi = 0xbf;
            if (u[0] == 0xe0) lo = 0xa0;
            if (u[0] == 0xed) hi = 0x9f;
            if (u[0] == 0xf0) lo = 0x90;
            if (u[0] == 0xf4) hi = 0x8f;
            if (i + 1 < n && u[1] >= lo && u[1] <= hi) {
                k = 2;
                while (k < need && i + k < n && (u[k] & 0xc0) == 0x80)
                    k++;
            }
        }
        if (sl_append(l, fffd, 3, err))
            return -1;
        i += k;
    }
    return 0;
}

static int replace_into(lc_strlist *dst, const char *s, size_t n, const char *a, const char *b,
                        lc_error *err)
{
    size_t al = strlen(a), bl = strlen(b);
    if (sl_push(dst, "", 0, err))
        return -1;
    for (size_t i = 0; i < n;) {
        if (i + al <= n && memcmp(s + i, a, al) == 0) {
            if (sl_append(dst, b, bl, err))
                return -1;
            i += al;
        } else {
            if (sl_append(dst, s + i, 1, err))
                return -1;
            i++;
        }
    }
    return 0;
}

/* One decoder step from src into dst (emptied first). */
static int decode_step(const lc_dec_step *st, lc_strlist *src, lc_strlist *dst, lc_error *err)
{
    dst->n = dst->used = 0;
    switch (st->kind) {
    case LC_DEC_BYTELEVEL: {
        if (sl_push(dst, "", 0, err))
            return -1;
        char *bytes = NULL;
        size_t nb = 0, cap = 0;
        for (size_t k = 0; k < src->n; k++) {
            const char *s = src->buf + src->off[k];
            size_t n = src->len[k], start = nb, i = 0;
            if (lc_tok_grow((void **)&bytes, &cap, nb + n + 1, 1, err)) {
                free(bytes);
                return -1;
            }
            while (i < n) {
                size_t cl;
                int b = lc_bytelevel_byte(lc_utf8_decode(s + i, n - i, &cl));
                if (b < 0)
                    break;
                bytes[nb++] = (char)b;
                i += cl;
            }
            if (i < n) { /* a character outside the map: the token's own bytes */
                memcpy(bytes + start, s, n);
                nb = start + n;
            }
        }
        int rc = append_lossy(dst, bytes ? bytes : "", nb, err);
        free(bytes);
        return rc;
    }
    case LC_DEC_REPLACE:
        for (size_t k = 0; k < src->n; k++)
            if (replace_into(dst, src->buf + src->off[k], src->len[k], st->a, st->b, err))
                return -1;
        return 0;
    case LC_DEC_BYTEFALLBACK: {
        char *run = NULL;
        size_t nr = 0, cap = 0;
        for (size_t k = 0; k <= src->n; k++) {
            const char *s = k < src->n ? src->buf + src->off[k] : NULL;
            int v = -1;
            if (s && src->len[k] == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>' &&
                isxdigit((unsigned char)s[3]) && isxdigit((unsigned char)s[4])) {
                char hx[3] = {s[3], s[4], 0};
                v = (int)strtol(hx, NULL, 16);
            }
            if (v >= 0) { /* one more byte of a run of <0xXX> tokens */
                if (lc_tok_grow((void **)&run, &cap, nr + 1, 1, err)) {
                    free(run);
                    return -1;
                }
                run[nr++] = (char)v;
                continue;
            }
            int bad = 0;
            if (nr && lc_utf8_valid_prefix(run, nr) == nr)
                bad = sl_push(dst, run, nr, err);
            for (size_t r = 0; nr && lc_utf8_valid_prefix(run, nr) < nr && r < nr && !bad; r++)
                bad = sl_push(dst, "\xef\xbf\xbd", 3, err); /* HF: one U+FFFD per byte */
            nr = 0;
            if (!bad && s)
                bad = sl_push(dst, s, src->len[k], err);
            if (bad) {
                free(run);
                return -1;
            }
        }
        free(run);
        return 0;
    }
    case LC_DEC_FUSE:
        if (sl_push(dst, "", 0, err))
            return -1;
        for (size_t k = 0; k < src->n; k++)
            if (sl_append(dst, src->buf + src->off[k], src->len[k], err))
                return -1;
        return 0;
    case LC_DEC_STRIP: {
        size_t cl = strlen(st->a);
        for (size_t k = 0; k < src->n; k++) {
            const char *s = src->buf + src->off[k];
            size_t n = src->len[k], a = 0, b = n;
            for (int i = 0; i < st->start && a + cl <= b && memcmp(s + a, st->a, cl) == 0; i++)
                a += cl;
            for (int i = 0; i < st->stop && b >= a + cl && memcmp(s + b - cl, st->a, cl) == 0; i++)
                b -= cl;
            if (sl_push(dst, s + a, b - a, err))
                return -1;
        }
        return 0;
    }
    case LC_DEC_METASPACE:
        /* HF: every replacement character of the first token is dropped
         * (unless the scheme is "never"), the others become spaces */
        for (size_t k = 0; k < src->n; k++)
            if (replace_into(dst, src->buf + src->off[k], src->len[k], st->a,
                             k == 0 && st->scheme != LC_PREPEND_NEVER ? "" : " ", err))
                return -1;
        return 0;
    }
    return 0;
}

static int decoder_step(void *ctx, const cJSON *o, const char *type, const char *where,
                        const char *path, lc_error *err)
{
    lc_decoder *d = ctx;
    char sub[256];
    if (d->n == LC_DECODER_MAX_STEPS)
        return lc_error_set(err, "%s: %s: more than %d decoder steps", where, path,
                            LC_DECODER_MAX_STEPS);
    lc_dec_step *st = &d->steps[d->n];
    memset(st, 0, sizeof *st);
    d->n++;
    if (strcmp(type, "ByteLevel") == 0) {
        st->kind = LC_DEC_BYTELEVEL;
    } else if (strcmp(type, "ByteFallback") == 0) {
        st->kind = LC_DEC_BYTEFALLBACK;
    } else if (strcmp(type, "Fuse") == 0) {
        st->kind = LC_DEC_FUSE;
    } else if (strcmp(type, "Replace") == 0) {
        st->kind = LC_DEC_REPLACE;
        if (lc_tj_replace(o, &st->a, &st->b, where, path, err))
            return -1;
    } else if (strcmp(type, "Strip") == 0) {
        const char *c;
        long long start = 0, stop = 0;
        st->kind = LC_DEC_STRIP;
        if (lc_tj_char(o, "content", &c, where, path, err) ||
            lc_tj_get_int(o, "start", 0, 1 << 20, &start, where, path, err) ||
            lc_tj_get_int(o, "stop", 0, 1 << 20, &stop, where, path, err) ||
            !(st->a = lc_tok_dup(c, strlen(c), err)))
            return -1;
        st->start = (int)start;
        st->stop = (int)stop;
    } else if (strcmp(type, "Metaspace") == 0) {
        const char *repl;
        st->kind = LC_DEC_METASPACE;
        if (lc_tj_char(o, "replacement", &repl, where, path, err) ||
            lc_tj_scheme(o, &st->scheme, where, path, err) || !(st->a = lc_tok_dup(repl, strlen(repl), err)))
            return -1;
    } else {
        snprintf(sub, sizeof sub, "%s.type", path);
        return lc_tj_unsupported(err, where, sub, type);
    }
    return 0;
}

void lc_decoder_init(lc_decoder *d)
{
    memset(d, 0, sizeof *d);
}

int lc_decoder_load(lc_decoder *d, const cJSON *o, const char *where, lc_error *err)
{
    d->present = o && !cJSON_IsNull(o);
    return lc_tj_chain(d, o, "decoders", decoder_step, where, "decoder", err);
}

void lc_decoder_begin(lc_decoder *d)
{
    d->work[0].n = d->work[0].used = 0;
}

int lc_decoder_push(lc_decoder *d, const char *s, size_t n, lc_error *err)
{
    return sl_push(&d->work[0], s, n, err);
}

int lc_decoder_finish(lc_decoder *d, char **text, size_t *len, lc_error *err)
{
    lc_strlist *a = &d->work[0], *b = &d->work[1];
    *text = NULL;
    *len = 0;
    for (size_t k = 0; k < d->n; k++) {
        if (decode_step(&d->steps[k], a, b, err))
            return -1;
        lc_strlist *tmp = a;
        a = b;
        b = tmp;
    }
    size_t total = 0;
    for (size_t k = 0; k < a->n; k++)
        total += a->len[k] + (!d->present && k > 0);
    char *r = malloc(total + 1);
    if (!r)
        return lc_error_set(err, "tokenizer: out of memory");
    size_t m = 0;
    for (size_t k = 0; k < a->n; k++) {
        if (!d->present && k > 0)
            r[m++] = ' '; /* HF joins with spaces when the file has no decoder */
        memcpy(r + m, a->buf + a->off[k], a->len[k]);
        m += a->len[k];
    }
    r[m] = 0;
    *text = r;
    *len = m;
    return 0;
}

void lc_decoder_free(lc_decoder *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->steps[i].a);
        free(d->steps[i].b);
    }
    for (int k = 0; k < 2; k++) {
        free(d->work[k].buf);
        free(d->work[k].off);
        free(d->work[k].len);
    }
    lc_decoder_init(d);
}

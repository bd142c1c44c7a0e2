/* tok_decoder.h — the "decoder" of a tokenizer.json: how token strings
 * become text again, as HF's decoders do it. Steps (nested Sequences
 * flattened): ByteLevel (GPT-2 characters back to bytes, then lossy UTF-8
 * as Rust's from_utf8_lossy), Replace (String pattern), ByteFallback (runs
 * of <0xXX> tokens to bytes, one U+FFFD per byte when not UTF-8), Fuse
 * (join), Strip (a character, up to start/stop times), Metaspace (the
 * replacement character to spaces; all of them dropped from the first
 * token unless prepend_scheme is "never"). No decoder: tokens joined with
 * spaces. Anything else is refused with its JSON path.
 *
 * Use: lc_decoder_begin, lc_decoder_push each token's string, then
 * lc_decoder_finish. The work lists are reused from call to call. */
#ifndef LC_TOK_DECODER_H
#define LC_TOK_DECODER_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "autograd/error.h"
#include "data/tok_json.h"

#define LC_DECODER_MAX_STEPS 16

enum lc_dec_kind { LC_DEC_BYTELEVEL, LC_DEC_REPLACE, LC_DEC_BYTEFALLBACK, LC_DEC_FUSE, LC_DEC_STRIP, LC_DEC_METASPACE };
typedef struct lc_dec_step {
    enum lc_dec_kind kind;
    char *a, *b;             /* REPLACE: a → b; STRIP: a = the character (owned) */
    int start, stop;         /* STRIP */
    enum lc_prepend_scheme scheme; /* METASPACE */
} lc_dec_step;

/* A list of strings (decoder work): string k is buf[off[k] .. off[k]+len[k]). */
typedef struct lc_strlist {
    char *buf;
    size_t used, cap;
    size_t *off, *len;
    size_t n, ncap;
} lc_strlist;

typedef struct lc_decoder {
    lc_dec_step steps[LC_DECODER_MAX_STEPS]; /* [n], strings owned */
    size_t n;
    int present;             /* the file has a decoder (else: join with spaces) */
    lc_strlist work[2];      /* ping-pong lists of token strings */
} lc_decoder;

void lc_decoder_init(lc_decoder *d);
/* Loads the "decoder" member o (may be NULL or null) of the file where. */
int lc_decoder_load(lc_decoder *d, const cJSON *o, const char *where, lc_error *err);
void lc_decoder_begin(lc_decoder *d);
int lc_decoder_push(lc_decoder *d, const char *s, size_t n, lc_error *err);
/* The decoded text: malloc'd, NUL-terminated, *len bytes. */
int lc_decoder_finish(lc_decoder *d, char **text, size_t *len, lc_error *err);
void lc_decoder_free(lc_decoder *d);

#endif

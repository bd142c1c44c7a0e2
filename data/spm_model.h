/* spm_model.h — SentencePiece's tokenizer.model (a ModelProto, protocol
 * buffers) read from untrusted bytes: what llama.cpp's converter takes from
 * it through SentencePieceProcessor (each piece's text, score and type) and
 * the trainer / normalizer settings that say how it tokenizes.
 *
 * ModelProto fields read (others skipped by wire type):
 *   1 pieces (repeated SentencePiece: 1 piece string, 2 score float,
 *     3 type enum, default NORMAL)
 *   2 trainer_spec (3 model_type enum, default UNIGRAM; 35 byte_fallback)
 *   3 normalizer_spec (1 name; 3 add_dummy_prefix, 4 remove_extra_whitespaces,
 *     5 escape_whitespaces: bools, default true)
 * Every key, varint and length is checked against the buffer (train/protobuf.c
 * lc_pb_read_field); pieces must be non-empty UTF-8 without NUL, of a known
 * type, each text once, BYTE pieces "<0xXX>", with exactly one UNKNOWN piece
 * (SentencePiece refuses a model otherwise), and the model type BPE or unigram (what llama.cpp's "llama" tokenizer,
 * which merges by score, reproduces; WORD and CHAR models are refused).
 * Errors: one line naming the file and what is wrong. */
#ifndef LC_SPM_MODEL_H
#define LC_SPM_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/error.h"

/* SentencePiece's piece types (= llama.cpp's token types, except that the
 * converter writes USER_DEFINED pieces as NORMAL). */
enum {
    LC_SPM_NORMAL = 1,
    LC_SPM_UNKNOWN = 2,
    LC_SPM_CONTROL = 3,
    LC_SPM_USER_DEFINED = 4,
    LC_SPM_UNUSED = 5,
    LC_SPM_BYTE = 6
};
/* trainer_spec.model_type */
enum { LC_SPM_UNIGRAM = 1, LC_SPM_BPE = 2, LC_SPM_WORD = 3, LC_SPM_CHAR = 4 };

typedef struct lc_spm_piece {
    char *text; /* owned, NUL-terminated (no NUL inside) */
    float score;
    int type;   /* LC_SPM_NORMAL .. LC_SPM_BYTE */
} lc_spm_piece;

typedef struct lc_spm_model {
    lc_spm_piece *pieces; /* n, in id order */
    size_t n;
    int model_type;       /* LC_SPM_UNIGRAM / LC_SPM_BPE */
    bool byte_fallback;
    bool add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces;
} lc_spm_model;

/* Parses size bytes at buf (label names them in messages). 0, or -1 with err
 * and m empty. */
int lc_spm_parse(lc_spm_model *m, const void *buf, size_t size, const char *label,
                 lc_error *err);
/* Reads and parses the file at path. */
int lc_spm_load(lc_spm_model *m, const char *path, lc_error *err);
void lc_spm_free(lc_spm_model *m);

#endif

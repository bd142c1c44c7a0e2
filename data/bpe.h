/* bpe.h — the BPE model of a Hugging Face tokenizer.json: vocabulary, ranked
 * merges, and the merge of one pre-tokenized word into ids.
 *
 * The merge is HF's: symbols in a linked list, candidate pairs in a
 * priority queue ordered by (merge rank, position) (bpe_queue.h); a popped
 * pair whose symbols have changed since it was pushed is skipped. Each merge
 * pushes at most two new pairs, so a word of n symbols costs O(n log n). A
 * word first splits where no merge can ever join the symbols on either side
 * (by the joins table: the characters that meet there never meet across a
 * merge), and each piece merges alone with its own queue: the result is the
 * same, and a whole text of a SentencePiece model (no pre-tokenizer, one
 * word) stays linear and in cache. Nothing is cached; the work arrays grow
 * to the longest word seen.
 *
 * Initial symbols: with byte_level, one per byte (the vocab token of the
 * GPT-2 character of that byte); otherwise one per UTF-8 character, else
 * its <0xXX> byte tokens (byte_fallback), else unk (consecutive unknowns
 * fused when fuse_unk), else dropped — all as HF does. */
#ifndef LC_BPE_H
#define LC_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "autograd/error.h"
#include "data/bpe_queue.h"

/* A growable id list: v[0..n) valid, room for cap. */
typedef struct lc_ids {
    int32_t *v;
    size_t n, cap;
} lc_ids;

int lc_ids_push(lc_ids *ids, int32_t id, lc_error *err);
void lc_ids_free(lc_ids *ids);

/* Limits on what a tokenizer file may declare (untrusted input). */
#define LC_BPE_MAX_ID       (1 << 24)   /* ids in [0, LC_BPE_MAX_ID) */
#define LC_BPE_MAX_TOKEN    4096        /* bytes of one token string */
#define LC_BPE_MAX_MERGES   (1 << 23)

typedef struct lc_bpe_sym { int32_t id, prev, next; } lc_bpe_sym; /* id −1: merged away */

/* A slot of the string hash: id (−1: empty) and its hash's high half, so
 * that a probe rarely reads the string itself. */
typedef struct lc_bpe_slot { int32_t id; uint32_t check; } lc_bpe_slot;

typedef struct lc_bpe {
    /* vocabulary: token strings (as written in the file: GPT-2 characters
     * for byte-level models) in one pool; off/len by id, len UINT32_MAX = no token */
    char *pool;
    size_t pool_len, pool_cap;
    uint32_t *off, *len;       /* [n_ids] */
    int32_t n_ids;             /* 1 + largest id */
    lc_bpe_slot *slots;        /* string hash, [slot_mask + 1] */
    size_t slot_mask, n_tokens;
    /* merges: key (left id << 32 | right id) → rank, merged id */
    uint64_t *mkeys;           /* UINT64_MAX = empty, [mmask + 1] */
    int32_t *mrank, *mnew;
    size_t mmask, n_merges;
    /* options */
    int32_t unk_id;            /* −1: none */
    int fuse_unk, byte_fallback, ignore_merges, byte_level;
    int32_t byte_id[256];      /* byte_level: id of the byte's GPT-2 character;
                                  byte_fallback: id of <0xXX>; −1 if absent */
    /* joins: a bit set, by hash of (last character of l, first character of
     * r) over every merge (l, r); a bit clear means no merge can ever join a
     * symbol ending in that character to one starting with that one. Built
     * at the first encode after the merges change; collisions only set
     * extra bits. */
    uint64_t *joins;
    size_t joins_mask;         /* bits − 1 */
    int joins_stale;
    /* work arrays of encode_word */
    lc_bpe_sym *syms;
    size_t syms_cap;
    lc_bpe_queue queue;
    char *scratch;
    size_t scratch_cap;
} lc_bpe;

void lc_bpe_init(lc_bpe *b);
void lc_bpe_free(lc_bpe *b);
/* Adds token s[0..n) with id; a repeated string or id is an error. */
int lc_bpe_add_token(lc_bpe *b, const char *s, size_t n, int32_t id, lc_error *err);
/* The id of s[0..n), or −1. */
int32_t lc_bpe_id(const lc_bpe *b, const char *s, size_t n);
/* The string of id (NULL when the vocabulary has none), its length in *n. */
const char *lc_bpe_token(const lc_bpe *b, int32_t id, size_t *n);
/* Adds the merge left+right with the next rank; both and their
 * concatenation must be tokens. Call after all add_token. */
int lc_bpe_add_merge(lc_bpe *b, const char *l, size_t ln, const char *r, size_t rn, lc_error *err);
/* Merges from token scores, as SentencePiece BPE (llama.cpp's SPM tokenizer)
 * merges: every split of a token, at a character boundary, into two tokens is
 * a merge into it, ranked by the token's score — higher first, equal scores
 * equal rank, so that the heap takes the leftmost of them, as llama.cpp does.
 * score[id] for every id (n ≥ n_ids). Call after all add_token, instead of
 * add_merge. */
int lc_bpe_merges_from_scores(lc_bpe *b, const float *score, size_t n, lc_error *err);
/* Fills byte_id[] from the options; call after the vocabulary is complete. */
void lc_bpe_finish(lc_bpe *b);
/* Appends the ids of word s[0..n) (raw bytes when byte_level, else UTF-8). */
int lc_bpe_encode_word(lc_bpe *b, const char *s, size_t n, lc_ids *out, lc_error *err);

/* lc_printable of s[0..n), which need not end in NUL (buf of cap ≥ 8 bytes). */
const char *lc_printable_n(const char *s, size_t n, char *buf, size_t cap);

/* The GPT-2 byte ↔ character map of byte-level BPE: the code point that
 * stands for byte b, and the byte of code point cp (−1 if none). */
uint32_t lc_bytelevel_char(uint8_t b);
int lc_bytelevel_byte(uint32_t cp);

#endif

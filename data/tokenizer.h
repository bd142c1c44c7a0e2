/* tokenizer.h — a model directory's Hugging Face tokenizer (tokenizer.json,
 * plus tokenizer_config.json for bos/eos), encode and decode, giving the ids
 * of HF `tokenizers` for the supported files:
 *
 *   byte-level BPE (Llama 3.x, Qwen2/2.5/3): normalizer none or NFC;
 *     pre-tokenizer Sequence[Split(regex), ByteLevel(use_regex false)] or
 *     ByteLevel with its GPT-2 regex; ignore_merges as the file says;
 *   SentencePiece-style BPE (Llama 2, Mistral, Phi-3): normalizer
 *     Sequence[Prepend("▁"), Replace(" ", "▁")] or a Metaspace
 *     pre-tokenizer; byte_fallback to <0xXX> tokens; unk.
 *
 * Pipeline of encode, as HF: added tokens (special or not) are found first in
 * the raw text, leftmost-longest, with their lstrip/rstrip/single_word flags;
 * each piece between them is normalized, then searched for the added tokens
 * marked "normalized", then pre-tokenized (PCRE2 with JIT for the regexes)
 * and merged by the BPE model (data/bpe.h). add_special puts the
 * post-processor's template tokens around the ids (BOS for Llama). Anything
 * else in the file — another model type, normalizer, pre-tokenizer, decoder
 * or post-processor — is refused at load with the JSON path of the construct.
 *
 * A tokenizer holds work buffers: use one per thread. */
#ifndef LC_TOKENIZER_H
#define LC_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/error.h"
#include "data/bpe.h"

#define LC_TOKENIZER_MAX_JSON   (256u << 20)   /* bytes of tokenizer.json */
#define LC_TOKENIZER_MAX_CONFIG (16u << 20)    /* bytes of tokenizer_config.json */
#define LC_TOKENIZER_MAX_ADDED  (1 << 20)      /* added tokens */

typedef struct lc_tokenizer lc_tokenizer;

/* Loads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json. */
int lc_tokenizer_load(lc_tokenizer **out, const char *dir, lc_error *err);
/* From tokenizer.json text json[0..len) (where names it in messages) and
 * optional tokenizer_config.json text (config NULL: none). */
int lc_tokenizer_from_json(lc_tokenizer **out, const char *json, size_t len,
                           const char *config, size_t config_len, const char *where,
                           lc_error *err);
/* One token of a vocabulary list: s[0..n) (any bytes) with its id. */
typedef struct lc_vocab_entry {
    const char *s;
    size_t n;
    int32_t id;
} lc_vocab_entry;
/* lc_tokenizer_from_json with the BPE model's vocabulary given as vocab[0..n_vocab)
 * instead of model.vocab (which must be absent): for GGUF token lists, which
 * would be slow to print and parse as JSON. */
int lc_tokenizer_from_json_vocab(lc_tokenizer **out, const char *json, size_t len,
                                 const char *config, size_t config_len, const char *where,
                                 const lc_vocab_entry *vocab, size_t n_vocab, lc_error *err);
void lc_tokenizer_free(lc_tokenizer *t);
/* Gives a tokenizer loaded with no merges the merges of a SentencePiece model
 * from its token scores (score[id], n ≥ the vocabulary's ids): see
 * lc_bpe_merges_from_scores. For GGUF "llama" vocabularies. */
int lc_tokenizer_merges_from_scores(lc_tokenizer *t, const float *score, size_t n,
                                    lc_error *err);
/* Added tokens' lstrip/rstrip take ASCII whitespace only, as llama.cpp's
 * isspace, instead of HF's Unicode White_Space. For GGUF vocabularies. */
void lc_tokenizer_strip_ascii(lc_tokenizer *t);

/* Appends the ids of text[0..len) (UTF-8; invalid UTF-8 is an error) to out,
 * with the post-processor's special tokens when add_special. */
int lc_tokenizer_encode(lc_tokenizer *t, const char *text, size_t len, bool add_special,
                        lc_ids *out, lc_error *err);
/* HF tokenizer(text, truncation=True, max_length=max_len) with specials: the
 * text's ids are cut so that they and the post-processor's tokens fit in
 * max_len (*cut tells); appended to out. */
int lc_tokenizer_encode_truncated(lc_tokenizer *t, const char *text, size_t len, size_t max_len,
                                  lc_ids *out, bool *cut, lc_error *err);
/* encode, also giving where each id's text lies: start/end (in step with out:
 * same n on entry) get the byte range [start, end) of text each new id was made
 * from — an added token with the whitespace its lstrip/rstrip took, a BPE
 * token its bytes (a space the normalizer or pre-tokenizer added belongs to no
 * text); the post-processor's tokens get empty ranges at the ends. As HF's
 * offset mapping (in bytes): where normalization changed the text (NFC), the
 * ids from the changed part get the rest of that text between added tokens. */
int lc_tokenizer_encode_spans(lc_tokenizer *t, const char *text, size_t len, bool add_special,
                              lc_ids *out, lc_ids *start, lc_ids *end, lc_error *err);
/* The text of ids[0..n) (special tokens included) as HF's decode, in a
 * malloc'd NUL-terminated *text of *len bytes. */
int lc_tokenizer_decode(lc_tokenizer *t, const int32_t *ids, size_t n, char **text,
                        size_t *len, lc_error *err);

/* The id of token s (an added token or a vocabulary entry), or −1. */
int32_t lc_tokenizer_token_id(const lc_tokenizer *t, const char *s);
/* The special tokens of tokenizer_config.json (and transformers' special_tokens_map). */
typedef enum lc_special { LC_SPECIAL_BOS, LC_SPECIAL_EOS, LC_SPECIAL_UNK, LC_SPECIAL_PAD,
                          LC_SPECIAL_COUNT } lc_special;
/* "bos_token", "eos_token", "unk_token", "pad_token". */
const char *lc_special_key(lc_special k);
/* Its id, −1 when absent or null. */
int32_t lc_tokenizer_special(const lc_tokenizer *t, lc_special k);
/* Makes token content (already a token of the file) special token k, as
 * Axolotl's special_tokens: does; a string that is no token is an error. */
int lc_tokenizer_set_special(lc_tokenizer *t, lc_special k, const char *content, lc_error *err);
/* The text of token id (NULL when none), its byte length in *n. */
const char *lc_tokenizer_token_text(const lc_tokenizer *t, int32_t id, size_t *n);
/* bos_token / eos_token of tokenizer_config.json, −1 when absent or null. */
int32_t lc_tokenizer_bos(const lc_tokenizer *t);
int32_t lc_tokenizer_eos(const lc_tokenizer *t);
/* add_bos_token / add_eos_token of tokenizer_config.json: 1, 0, or −1 when
 * absent. encode() does not apply them: its special tokens are tokenizer.json's
 * post-processor's, which is what transformers 5.x does too (checked with
 * transformers 5.24 on the fixtures: add_bos_token false in Phi-3's config, and
 * true/false flags added to Llama 3's and Qwen2's, leave the ids unchanged). */
int lc_tokenizer_add_bos(const lc_tokenizer *t);
int lc_tokenizer_add_eos(const lc_tokenizer *t);
/* 1 + the largest id of the vocabulary and the added tokens. */
int32_t lc_tokenizer_vocab_size(const lc_tokenizer *t);

#endif

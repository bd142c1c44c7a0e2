/* gguf_vocab.h — a model directory's Hugging Face tokenizer as the
 * tokenizer.ggml.* / tokenizer.chat_template keys of a GGUF file, as
 * llama.cpp's convert_hf_to_gguf.py writes them:
 *
 *   byte-level BPE (Llama 3, Qwen2/2.5/3): model "gpt2"; pre named from the
 *     pre-tokenizer's regex ("llama-bpe", "qwen2", "gpt-2" for the plain
 *     ByteLevel regex; any other regex is refused, since llama.cpp would
 *     split the text differently); tokens 0..vocab_size-1 (ids the
 *     tokenizer lacks become "[PADn]", type unused); token_type normal,
 *     control (added and special, or looking special: <|...|>), user-defined
 *     (other added tokens); merges "a b" (a space inside a part as U+0120);
 *   a SentencePiece tokenizer.model in the directory (Llama 2, Mistral, any
 *     architecture: the converter tries it first): model "llama", pre
 *     "default", vocab_size tokens: the pieces (text, score; type unknown,
 *     control, unused, byte or normal — user-defined pieces are normal),
 *     "[PADn]" (score -10000, unused) where the model has no piece, then
 *     added_tokens.json (user-defined) and tokenizer_config.json's
 *     added_tokens_decoder (control when special or looking special, else
 *     user-defined with U+2581 as a space), both scored -1000; ids past
 *     vocab_size skipped (data/spm_model.c reads the .model);
 *   else SentencePiece-style BPE with byte_fallback (Llama 2, Mistral): model
 *     "llama", pre "default", the vocabulary and then the added tokens past
 *     it, scores -1000 (the converter's value for a tokenizer.json without
 *     tokenizer.model), types byte (<0xXX>), control (special tokens),
 *     user-defined (other added tokens), normal;
 *
 * and for both, as gguf-py's SpecialVocab: bos/eos/unknown/padding ids from
 * tokenizer_config.json's *_token (matched to added_tokens) or else
 * config.json's *_token_id; add_bos_token / add_eos_token from the
 * post-processor (ByteLevel: false; TemplateProcessing: whether its single
 * template starts / ends with the bos / eos token) or else
 * tokenizer_config.json; chat_template from tokenizer_config.json (or
 * chat_template.jinja / chat_template.json). */
#ifndef LC_GGUF_VOCAB_H
#define LC_GGUF_VOCAB_H

#include "autograd/error.h"
#include "data/tokenizer.h"
#include "data/gguf_write.h"
#include "train/model_config.h"

/* Adds the keys for the tokenizer of model directory dir (tokenizer.model
 * or tokenizer.json required) to w. -1 with a message naming the file and what is not
 * supported. */
int lc_gguf_vocab_add(lc_gguf_writer *w, const char *dir, const lc_model_config *cfg,
                      lc_error *err);

/* The Split regex of llama.cpp's pre-tokenizer `name` (tokenizer.ggml.pre:
 * llama-bpe, qwen2), NULL for another name ("gpt-2" is ByteLevel's own). */
const char *lc_gguf_pre_regex(const char *name);

/* The tokenizer of a GGUF file from its tokenizer.ggml.* keys, tokenizing as
 * llama.cpp does (parse_special on; bos/eos/unk/pad ids read too):
 *
 *   "gpt2" (byte-level BPE): tokens, token_type (control tokens special,
 *     user-defined ones added), merges, the pre-tokenizer regex by its
 *     llama.cpp name (pre); add_bos_token / add_eos_token (absent: false);
 *   "llama" (SentencePiece): tokens, scores (F32, finite), token_type
 *     (control, user-defined and unknown tokens split out of the raw text
 *     first), add_space_prefix (absent: true; "▁" before each text piece),
 *     add_bos_token (absent: true) / add_eos_token (absent: false). Merging is
 *     the BPE model's, with merges made from the scores (data/bpe.h,
 *     lc_bpe_merges_from_scores): llama.cpp's highest-score-first, leftmost
 *     on ties; characters without a token become <0xXX> byte tokens (else
 *     unk). Decoding: "▁" → " ", byte tokens reassembled, one leading space
 *     dropped with add_space_prefix, as llama_detokenize (special tokens
 *     shown).
 *
 * With general.name holding "phi-3"/"phi3", the special tokens but <unk>, <s>
 * and <|endoftext|> take the ASCII whitespace after them, as llama.cpp's
 * per-model attributes say. Other tokenizer models are refused by name; so
 * are score / flag keys of the wrong type or length. Not modelled: the other
 * per-model attributes (Jina's lstrip <mask>), overlapping special tokens
 * (llama.cpp splits the longest first, here leftmost-longest), and a merge
 * through a character that is no token itself. */
int lc_gguf_tokenizer_load(lc_tokenizer **out, const char *path, lc_error *err);

/* tokenizer.chat_template of a GGUF file (malloc'd), *text NULL when absent. */
int lc_gguf_chat_template(const char *path, char **text, lc_error *err);

#endif

/* completion.h — Axolotl's `completion` dataset type: JSONL rows whose
 * string field (default "text") is raw text, tokenized in the data stream
 * with the model's own tokenizer (data/tokenizer.h), so no Python step is
 * needed before training.
 *
 * As Axolotl (prompt_strategies/completion.py and _tokenize of
 * prompt_tokenizers.py): ids are HF tokenizer(text, truncation=True,
 * max_length=64 × sequence_len) with the post-processor's special tokens
 * (BOS for Llama); EOS is appended unless the ids already end in EOS or were
 * cut at max_length; every token is supervised (labels = input_ids). The
 * reader (data/jsonl.h) then splits the ids into sequence_len chunks, each
 * its own row. Differences from Axolotl, on purpose: an empty text (Axolotl
 * warns and drops the row) is an error here, never a silently skipped row;
 * a tokenizer without eos_token is an error. */
#ifndef LC_COMPLETION_H
#define LC_COMPLETION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/error.h"
#include "data/tokenizer.h"

#define LC_COMPLETION_MAX_LEN_FACTOR 64   /* Axolotl: max_length = sequence_len * 64 */
#define LC_COMPLETION_DEFAULT_FIELD "text"

/* Tokenizes one row line[0..n) (where = "FILE:LINE" for messages): the
 * string `field` → ids in *out (cleared first), every id checked < vocab.
 * *truncated: the text was cut at max_len tokens. */
int lc_completion_encode(lc_tokenizer *t, const char *line, size_t n, const char *field,
                         const char *where, int64_t vocab, int64_t max_len, lc_ids *out,
                         bool *truncated, lc_error *err);

#endif

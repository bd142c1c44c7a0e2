/* row_encoder.h — one JSONL row of a text dataset → input_ids and labels,
 * exactly as Axolotl 0.19 tokenizes it (see data/dataset_spec.h for the types).
 *
 * The data stream (data/jsonl.h), `lorac preprocess` and `lorac eval` all
 * encode rows through this one function, so what preprocess writes is what the
 * trainer trains. Per type (labels −100 = not trained):
 *
 *   completion     HF tokenizer(text) (post-processor specials) + EOS, all
 *                  trained (data/completion.h; the reader splits long texts)
 *   alpaca         prompt = Axolotl's Alpaca instruct prompt (with or without
 *                  input) tokenized with specials, truncated at sequence_len;
 *                  response = output tokenized with specials, BOS stripped, EOS
 *                  appended (unless already last or cut at sequence_len);
 *                  prompt labels −100 unless train_on_inputs
 *   chat_template  the conversation rendered with the chat template
 *                  (add_generation_prompt false) and tokenized without
 *                  specials, as apply_chat_template(tokenize=True); each
 *                  trained turn's content located as Axolotl does — the render
 *                  diffed against renders with the turn's content replaced by
 *                  two sentinels, the byte span mapped to the tokens that
 *                  overlap it — then the first end-of-turn token (eot_tokens,
 *                  default eos_token) within 3 tokens after it trained by
 *                  train_on_eot, and the first eos_token by train_on_eos
 *   input_output   each segment tokenized without specials; label true trains it
 *
 * Every problem with a row is "WHERE: what" (WHERE = FILE:LINE) — a missing
 * field, a wrong type, an unknown role, an empty conversation, a template that
 * raises (its message), ids outside the model's vocab. */
#ifndef LC_ROW_ENCODER_H
#define LC_ROW_ENCODER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/error.h"
#include "data/dataset_spec.h"
#include "data/tokenizer.h"

typedef struct lc_row_encoder lc_row_encoder;

typedef struct lc_row_encoder_opts {
    const lc_dataset_spec *spec;     /* copied */
    lc_tokenizer *tok;               /* borrowed; one encoder per thread */
    const char *chat_template;       /* chat_template rows: the template text (copied) */
    char *const *eot_tokens;         /* chat_template: end-of-turn tokens; NULL: eos_token */
    int n_eot_tokens;
    bool train_on_inputs;
    int64_t sequence_len;
    int64_t vocab;                   /* ids must lie in [0, vocab) */
    long long now;                   /* strftime_now's instant (0: now) */
} lc_row_encoder_opts;

int lc_row_encoder_new(lc_row_encoder **out, const lc_row_encoder_opts *o, lc_error *err);
void lc_row_encoder_free(lc_row_encoder *e);
const lc_dataset_spec *lc_row_encoder_spec(const lc_row_encoder *e);

/* Encodes row line[0..n) into ids and labels (cleared first, same length).
 * *truncated: completion text cut at its maximum length (the reader then
 * splits it into sequence_len chunks), or an alpaca part cut at sequence_len. */
int lc_row_encode(lc_row_encoder *e, const char *line, size_t n, const char *where,
                  lc_ids *ids, lc_ids *labels, bool *truncated, lc_error *err);

#endif

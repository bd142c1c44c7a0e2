/* chat_rows.h — Axolotl's chat_template dataset type: a conversation row →
 * input_ids and labels (the algorithm is described in data/row_encoder.h,
 * which is the way in; this is its chat part). */
#ifndef LC_CHAT_ROWS_H
#define LC_CHAT_ROWS_H

#include <stdbool.h>

#include "autograd/error.h"
#include "data/dataset_spec.h"
#include "data/tokenizer.h"

struct cJSON;
typedef struct lc_chat_rows lc_chat_rows;

typedef struct lc_chat_rows_opts {
    const lc_dataset_spec *spec;     /* borrowed for the object's life */
    lc_tokenizer *tok;               /* borrowed */
    const char *template_text;       /* parsed here */
    char *const *eot_tokens;         /* NULL: eos_token */
    int n_eot_tokens;
    bool train_on_inputs;
    long long now;
} lc_chat_rows_opts;

/* The variables a chat template is rendered with, as transformers'
 * apply_chat_template passes them: messages (borrowed: a reference), tools
 * (borrowed, when a list), add_generation_prompt, and the tokenizer's special
 * tokens (bos_token, eos_token, unk_token, pad_token) as strings. NULL when
 * out of memory; cJSON_Delete it (the borrowed lists are not freed). */
struct cJSON *lc_chat_context_new(lc_tokenizer *tok, const struct cJSON *messages,
                                  bool add_generation_prompt, const struct cJSON *tools);

int lc_chat_rows_new(lc_chat_rows **out, const lc_chat_rows_opts *o, lc_error *err);
void lc_chat_rows_free(lc_chat_rows *c);
/* Encodes one row object into ids and labels (appended; both empty on entry). */
int lc_chat_rows_encode(lc_chat_rows *c, const struct cJSON *row, const char *where,
                        lc_ids *ids, lc_ids *labels, lc_error *err);

#endif

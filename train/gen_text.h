/* gen_text.h — text around generation (train/generate.h works on ids): the
 * prompt of a conversation, the ids that end a reply, and decoded text
 * streamed as it comes. `lorac generate`, `lorac chat` and the trainer's
 * sample generations share these, so they prompt and stop alike:
 *
 *   prompt   a list of {role, content} rendered with a chat template
 *            (add_generation_prompt, the tokenizer's special tokens as
 *            variables) and tokenized without added special tokens — as
 *            transformers' apply_chat_template(tokenize=True)
 *   stops    the tokenizer's eos_token, and the eos_token_id(s) of
 *            generation_config.json (else config.json), as transformers
 *            derives its generation config
 *   stream   the new ids decoded as a whole and the bytes that are final
 *            handed on: all but a trailing U+FFFD, which is what an
 *            incomplete UTF-8 sequence decodes to until its last byte comes */
#ifndef LC_GEN_TEXT_H
#define LC_GEN_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/error.h"
#include "data/chat_template.h"
#include "data/tokenizer.h"

struct cJSON;

#define LC_GEN_MAX_STOP 64

typedef struct lc_gen_stops {
    int32_t ids[LC_GEN_MAX_STOP];
    int n;
} lc_gen_stops;

/* Base model `model` is a Hugging Face directory or a GGUF file; a GGUF
 * file's tokenizer.json, tokenizer_config.json, generation_config.json and
 * config.json are looked for next to it (lc_model_tokenizer_dir), and
 * without tokenizer.json its own tokenizer.ggml.* vocabulary and
 * tokenizer.chat_template are used. */

/* The tokenizer of model into *tok. optional: 0 with *tok NULL when the
 * model has none (no tokenizer.json, a GGUF file without tokenizer keys). */
int lc_gen_tokenizer_load(const char *model, bool optional, lc_tokenizer **tok, lc_error *err);

/* The stop ids of model (tok may be NULL: then only the JSON files). */
int lc_gen_stops_load(lc_gen_stops *s, const char *model, lc_tokenizer *tok, lc_error *err);
bool lc_gen_stops_has(const lc_gen_stops *s, int32_t id);

/* The chat template for generation with model: the model's own, or the
 * built-in chat_template names (NULL: the model's); *tpl parsed. */
int lc_gen_template_open(const char *model, const char *chat_template, lc_chat_template **tpl,
                         lc_error *err);
/* The prompt ids of messages (a JSON list of {role, content}) appended to ids. */
int lc_gen_prompt(const lc_chat_template *tpl, lc_tokenizer *tok, const struct cJSON *messages,
                  lc_ids *ids, lc_error *err);

/* Streaming decoded text: push each new id; sink gets the final bytes. */
typedef void (*lc_text_sink)(void *user, const char *piece, size_t n);
typedef struct lc_gen_stream {
    lc_tokenizer *tok;
    lc_text_sink sink;
    void *user;
    lc_ids ids;               /* the ids so far */
    size_t done;              /* bytes of their text handed on */
} lc_gen_stream;

void lc_gen_stream_init(lc_gen_stream *s, lc_tokenizer *tok, lc_text_sink sink, void *user);
/* Adds id; hands on the text that is final. final: the last push (all of it). */
int lc_gen_stream_push(lc_gen_stream *s, int32_t id, lc_error *err);
int lc_gen_stream_finish(lc_gen_stream *s, lc_error *err);
void lc_gen_stream_free(lc_gen_stream *s);

#endif

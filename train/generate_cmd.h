/* generate_cmd.h — `lorac generate`: text (or ids) in, generated text out.
 *
 * The prompt is --prompt TEXT tokenized as HF tokenizer(text) (the
 * post-processor's special tokens: BOS for Llama), --messages F.json (a
 * list of {role, content}) rendered with the model's chat template (or a
 * built-in by name) with add_generation_prompt and tokenized without added
 * special tokens (apply_chat_template(tokenize=True)), or token ids as they
 * are. Generation stops at the tokenizer's eos_token, at the eos_token_id(s)
 * of generation_config.json (else config.json, as transformers derives its
 * generation config), and at max_new_tokens. Text is streamed as complete
 * UTF-8 as tokens come; or one JSON object at the end. */
#ifndef LC_GENERATE_CMD_H
#define LC_GENERATE_CMD_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "autograd/error.h"
#include "train/sampler.h"

#define LC_GENERATE_DEFAULT_MAX_NEW 256

typedef struct lc_generate_request {
    const char *model_dir;
    const char *adapter_dir;      /* NULL: the base alone */
    const char *prompt;           /* exactly one of prompt, messages_path, prompt_ids */
    const char *messages_path;
    const char *chat_template;    /* built-in name (chatml, llama3, ...); NULL: the model's */
    const int32_t *prompt_ids;    /* [n_prompt_ids] */
    int64_t n_prompt_ids;
    int64_t max_new_tokens;       /* 0: LC_GENERATE_DEFAULT_MAX_NEW */
    lc_sampler_opts sampling;
    bool ignore_eos;              /* generate max_new_tokens whatever comes */
    bool json;                    /* one JSON object at the end instead of streamed text */
    bool nf4;                     /* quantize the linears to NF4 at load (blocksize 64, double quant) */
} lc_generate_request;

/* Runs it: text (or the JSON object) to out, the settings and tokens/s to log. */
int lc_generate_command(const lc_generate_request *q, FILE *out, FILE *log, lc_error *err);

#endif

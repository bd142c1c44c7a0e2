/* samples.h — sample generations during training (`sample_prompts`), so a
 * run's progress can be read, not only measured.
 *
 * At each evaluation point (every eval_steps, and at the end) every prompt is
 * answered greedily by the model being trained (its current adapter, no
 * dropout) through the KV-cache generator of `lorac generate`, at most
 * sample_max_new_tokens tokens, stopped as generate stops. A run with chat
 * data (a chat_template dataset) asks each prompt as a user message rendered
 * with the run's chat template and the generation prompt; otherwise the prompt
 * is raw text tokenized as HF tokenizer(text). Each answer goes to the log
 * ("sample 1 at step 25: PROMPT -> ANSWER"), to metrics.jsonl as
 * {"step", "tag": "samples/1", "text"} and, with use_tensorboard, to the
 * event file's text (train/metrics.h). Greedy and without dropout, the
 * samples are the same in a resumed run as in an uninterrupted one. */
#ifndef LC_SAMPLES_H
#define LC_SAMPLES_H

#include <stdbool.h>
#include <stdio.h>

#include "autograd/error.h"
#include "train/config.h"
#include "train/gen_text.h"
#include "train/generate.h"
#include "train/metrics.h"

typedef struct lc_samples {
    int n;                    /* prompts (0: nothing to do) */
    char **prompts;           /* borrowed from the config */
    lc_ids *ids;              /* [n] each prompt's ids */
    int64_t max_new;
    lc_tokenizer *tok;        /* borrowed, or owned (own_tok) */
    bool own_tok;
    lc_gen_stops stops;
    lc_generator *gen;
} lc_samples;

/* Prepares c's sample_prompts for model m with lora (both borrowed, m's RoPE
 * table is extended): tok and chat_template are the run's text data's (NULL:
 * base_model's tokenizer is loaded; no chat template: raw prompts). */
int lc_samples_open(lc_samples *s, const lc_train_config *c, lc_model *m, const lc_lora *lora,
                    lc_tokenizer *tok, const char *chat_template, lc_error *err);
/* Generates every sample at step; log lines (tty: after clearing the progress line). */
int lc_samples_run(lc_samples *s, int64_t step, lc_metrics *metrics, FILE *log, bool tty,
                   lc_error *err);
void lc_samples_close(lc_samples *s);

#endif

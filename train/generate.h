/* generate.h — autoregressive decoding over the trainer's own model code:
 * a KV cache (train/kv_cache.h) filled by lc_model_decode, the prompt run in
 * one pass (prefill), then one token per step, each picked by the sampler
 * (train/sampler.h). Base models (F32/BF16/F16, NF4 quantized at load or a
 * bitsandbytes checkpoint) and a PEFT adapter applied unmerged: whatever
 * lc_model_load_with and lc_lora_load_peft produce.
 *
 * Two levels: lc_generator (feed tokens, read the next-token logits: for a
 * chat loop or a custom decoder) and lc_generate (prompt in, new ids out,
 * with stop ids, max_new_tokens and a per-token callback: for `lorac
 * generate` and sample generations during training). Token ids only: text
 * in and out is the caller's (train/generate_cmd.h does it for the CLI). */
#ifndef LC_GENERATE_H
#define LC_GENERATE_H

#include <stdbool.h>
#include <stdint.h>

#include "train/model.h"
#include "train/sampler.h"

typedef struct lc_generator lc_generator;

/* A generator for sequences of up to max_len positions (prompt + new
 * tokens; at most max_position_embeddings) of model m with lora (NULL: the
 * base alone). Extends m's RoPE table to max_len (so m is not const); m and
 * lora are borrowed and must outlive it. Memory: the KV cache
 * (lc_kv_cache_bytes) plus an arena of about one layer's activations for
 * max_len tokens. NULL with err set on failure. */
lc_generator *lc_generator_new(lc_model *m, const lc_lora *lora, int64_t max_len,
                               lc_error *err);
void lc_generator_free(lc_generator *g);
/* Forgets the sequence (the cache is emptied, not freed). */
void lc_generator_reset(lc_generator *g);
/* Appends ids[0..n) to the sequence (prefill: the prompt at once; then one
 * token per call) and computes the logits of the next token. -1 when an id
 * is outside the vocabulary or the sequence would exceed max_len. */
int lc_generator_feed(lc_generator *g, const int32_t *ids, int64_t n, lc_error *err);
/* The next-token logits [V] after the last feed (valid until the next feed). */
const lc_real *lc_generator_logits(const lc_generator *g);
/* Positions in the sequence so far, and the capacity. */
int64_t lc_generator_len(const lc_generator *g);
int64_t lc_generator_cap(const lc_generator *g);

/* Called with each new id as it is chosen (a stop id included) and its
 * index among the new ids; nonzero stops generation (that id is kept). */
typedef int (*lc_gen_token_fn)(void *user, int32_t id, int64_t index);

typedef struct lc_gen_opts {
    int64_t max_new_tokens;       /* ≥ 1 */
    lc_sampler_opts sampling;     /* temperature 0: greedy */
    const int32_t *stop_ids;      /* [n_stop]: eos ids; the one produced is kept, as HF */
    int n_stop;
    lc_gen_token_fn on_token;     /* may be NULL */
    void *user;
} lc_gen_opts;

typedef struct lc_gen_result {
    int32_t *ids;                 /* [n] the new ids (malloc'd) */
    int64_t n;
    bool stopped;                 /* ended at a stop id (or on_token), else max_new_tokens */
    double prefill_s, decode_s;   /* wall time of the prompt pass and of the new tokens */
} lc_gen_result;

/* Resets g, runs the prompt [n_prompt ≥ 1] and generates up to
 * max_new_tokens ids (n_prompt + max_new_tokens − 1 ≤ capacity: the last
 * id is never fed). The draws of sampling are numbered 0, 1, ... per call,
 * so the same seed and prompt give the same ids. */
int lc_generate(lc_generator *g, const int32_t *prompt, int64_t n_prompt, const lc_gen_opts *o,
                lc_gen_result *r, lc_error *err);
void lc_gen_result_free(lc_gen_result *r);

#endif

/* generate_chat.h — the generator behind `lorac chat` (train/chat_cmd.h):
 * the model (and adapter), its tokenizer and chat template loaded once; each
 * reply is the conversation rendered with the generation prompt
 * (train/gen_text.h), decoded with the KV cache (train/generate.h), its text
 * streamed as it comes and stopped between tokens on Ctrl-C.
 *
 * Sampling not given on the command line comes from the model's
 * generation_config.json as transformers reads it (do_sample false or no file:
 * greedy; temperature, top_p, top_k); max_new_tokens defaults to 512, cut to
 * what the context leaves after the prompt (the KV cache holds
 * min(max_position_embeddings, 8192) positions). */
#ifndef LC_GENERATE_CHAT_H
#define LC_GENERATE_CHAT_H

#include "train/chat_cmd.h"

extern const lc_chat_backend_ops lc_generate_chat_ops;

#endif

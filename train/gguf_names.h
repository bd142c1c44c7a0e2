/* gguf_names.h — the one table of Hugging Face ↔ GGUF tensor names, as
 * llama.cpp's convert_hf_to_gguf.py (gguf-py tensor_mapping) names the
 * tensors of the llama / qwen2 / qwen3 architectures. The GGUF loader
 * (gguf_model.c), export-gguf (gguf_export.c) and the GGUF merge
 * (gguf_merge.c) all name tensors through it.
 *
 *   model.embed_tokens ↔ token_embd      lm_head ↔ output      model.norm ↔ output_norm
 *   model.layers.N.<stem> ↔ blk.N.<gguf stem>, stems:
 *     input_layernorm ↔ attn_norm, post_attention_layernorm ↔ ffn_norm,
 *     self_attn.{q,k,v,o}_proj ↔ attn_{q,k,v,output},
 *     self_attn.{q,k}_norm ↔ attn_{q,k}_norm (Qwen3),
 *     mlp.{gate,up,down}_proj ↔ ffn_{gate,up,down}
 * followed by the same suffix (.weight, .bias). */
#ifndef LC_GGUF_NAMES_H
#define LC_GGUF_NAMES_H

#include <stddef.h>

#include "train/lora.h"

/* The GGUF stem of an HF stem: a model-level one ("model.norm" →
 * "output_norm") or a per-layer one ("self_attn.q_proj" → "attn_q");
 * NULL when llama.cpp's converter has no name for it. */
const char *lc_gguf_stem(const char *hf_stem);

/* The GGUF stem of linear module m ("attn_q", ..., "ffn_down"). */
const char *lc_gguf_linear_name(lc_module m);

/* "blk.<layer>.<gguf stem of hf_stem>.<suffix>" into buf (n bytes); with
 * layer < 0 a model-level name "<gguf stem>.<suffix>" ("model.norm" →
 * "output_norm.weight"). Returns buf. */
const char *lc_gguf_blk_name(char *buf, size_t n, int layer, const char *hf_stem,
                             const char *suffix);

/* The GGUF name of a full HF tensor name ("model.layers.3.mlp.up_proj.weight"
 * → "blk.3.ffn_up.weight") into out (n bytes): 0, or -1 when the name has no
 * GGUF counterpart (or its layer is not in [0, n_layers)). *layer is the
 * block (-1 for model-level tensors); *mod the linear module of a
 * "<linear>.weight" (-1 for anything else). */
int lc_gguf_name_from_hf(const char *hf, int n_layers, char *out, size_t n, int *layer,
                         int *mod);

#endif

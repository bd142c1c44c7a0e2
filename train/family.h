/* family.h — the per-architecture tables: what each supported model family
 * is made of, in one place.
 *
 * One row per family says which linears a decoder block has (and so which
 * modules LoRA may target, how their tensors are named, loaded, merged,
 * quantized and planned: every one of those loops over the row's module
 * list), which norms it has and where they sit, and how the block is wired
 * (activation, (1 + w) norms, embedding scale, q/k norms). A module's name,
 * parent and shape formula are facts of the module itself (lora.h:
 * q_proj is [H·D, C] in every family), so a new dense family is one row here
 * plus the ops it needs; its config.json keys are read in model_config.c. */
#ifndef LC_FAMILY_H
#define LC_FAMILY_H

#include <stdbool.h>

#include "train/lora.h"
#include "train/model_config.h"

/* The gated MLP's activation: act(gate) · up. */
typedef enum lc_act {
    LC_ACT_SILU,       /* SwiGLU (hidden_act "silu") */
    LC_ACT_GELU_TANH,  /* GeGLU with tanh-GELU (hidden_activation "gelu_pytorch_tanh") */
} lc_act;

/* Where a block's RMSNorms sit. Llama-style blocks have ATTN_IN and MLP_IN;
 * Gemma 2/3 add ATTN_OUT (on the attention output, before the residual add)
 * and MLP_OUT (on the MLP output, before the residual add). */
typedef enum lc_norm_slot {
    LC_NORM_ATTN_IN,
    LC_NORM_ATTN_OUT,
    LC_NORM_MLP_IN,
    LC_NORM_MLP_OUT,
    LC_NORM_COUNT
} lc_norm_slot;

typedef struct lc_family {
    lc_arch arch;
    const char *model_type;                  /* config.json "model_type" */
    int n_modules;
    lc_module modules[LC_MOD_COUNT];         /* the block's linears, in forward order */
    const char *norm_names[LC_NORM_COUNT];   /* model.layers.N.<name>.weight; NULL: absent */
    lc_act act;
    bool norm_plus_one;   /* RMSNorm multiplies by (1 + w): Gemma stores w − 1 */
    bool embed_scale;     /* embeddings × √hidden, rounded to the weights' dtype (Gemma) */
    bool qk_norm;         /* per-head RMSNorm of q and k before RoPE (Qwen3, Gemma 3) */
    bool gguf;            /* GGUF bases, export and merge (train/gguf_names.c) */
    /* sparse MoE families: the MLP is a router and n_experts SwiGLU experts */
    bool moe;
    const char *moe_parent;          /* model.layers.N.<moe_parent>.gate.weight (router),
                                      * ...experts.E.<expert_linears[i]>.weight */
    const char *expert_linears[3];   /* gate, up, down */
} lc_family;

/* The row of an architecture. */
const lc_family *lc_family_of(lc_arch a);
/* The row whose model_type is s, or NULL. */
const lc_family *lc_family_by_model_type(const char *s);
/* "llama, mistral, ...": every model_type, for error messages. */
const char *lc_family_model_types(void);
/* Whether the family's blocks have linear m. */
bool lc_family_has_module(const lc_family *f, lc_module m);
/* The file name of layer `layer`'s expert e's linear i (0 gate, 1 up, 2
 * down): model.layers.<layer>.<moe_parent>.experts.<e>.<expert_linears[i]>.weight. */
void lc_family_expert_weight_name(const lc_family *f, char *buf, size_t n, int layer, int e,
                                  int i);
/* "q_proj, k_proj, ...": the family's linears, into buf (for errors and info). */
void lc_family_module_list(const lc_family *f, char *buf, size_t n);

#endif

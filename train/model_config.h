/* model_config.h — a Hugging Face config.json, parsed and checked.
 *
 * Supports the model_types of train/family.h (llama, mistral, qwen2, qwen3,
 * gemma2, gemma3_text, phi3); anything else is "unsupported architecture X".
 * Gemma's layer_types (or sliding_window_pattern), soft-capping and
 * query_pre_attn_scalar, Gemma 3's per-layer-type RoPE (transformers 5's
 * rope_parameters.{sliding,full}_attention, or rope_local_base_freq) and
 * Phi-3's longrope, and Mixtral's and Qwen3-MoE's experts are read here. Both RoPE spellings are accepted: legacy
 * top-level rope_theta + rope_scaling {type|rope_type, factor, ...} and
 * transformers-5 rope_parameters {rope_type, rope_theta, factor, ...}.
 * Every integer is range-checked (positive, heads divide evenly, head_dim
 * even, sizes below sane limits) so later code can multiply without fear. */
#ifndef LC_MODEL_CONFIG_H
#define LC_MODEL_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "autograd/dtype.h"
#include "autograd/error.h"

/* Limits every model config is checked against (config.json and GGUF alike). */
#define LC_CFG_MAX_HIDDEN 65536
#define LC_CFG_MAX_INTERMEDIATE (1 << 20)
#define LC_CFG_MAX_LAYERS 1024
#define LC_CFG_MAX_HEADS 1024
#define LC_CFG_MAX_HEAD_DIM 1024
#define LC_CFG_MAX_VOCAB (1 << 24)
#define LC_CFG_MAX_POSITIONS (1 << 24)

typedef enum lc_arch {
    LC_ARCH_LLAMA,
    LC_ARCH_MISTRAL,
    LC_ARCH_QWEN2,
    LC_ARCH_QWEN3,
    LC_ARCH_GEMMA2,
    LC_ARCH_GEMMA3,   /* Gemma 3 text (model_type gemma3_text) */
    LC_ARCH_PHI3,
    LC_ARCH_MIXTRAL,
    LC_ARCH_QWEN3_MOE,
} lc_arch;

typedef enum lc_rope_type {
    LC_ROPE_DEFAULT,
    LC_ROPE_LINEAR,   /* positions divided by factor */
    LC_ROPE_LLAMA3,   /* frequency-dependent scaling (Llama 3.1 / 3.2) */
    LC_ROPE_FACTORS,  /* inv_freq[i] / rope_freq_factors[i]: a GGUF file's rope_freqs tensor
                         (how llama.cpp's converter stores llama3 scaling) */
    LC_ROPE_LONGROPE, /* Phi-3: inv_freq[i] / short_factor[i] (rope_freq_factors), or
                         / long_factor[i] when a batch reaches past original_max_position;
                         cos/sin × rope_attention_factor */
} lc_rope_type;

/* The RoPE tables a model may need (lc_model_config_rope_inv_freq). */
typedef enum lc_rope_table {
    LC_ROPE_TABLE_MAIN,   /* every layer, or Gemma 3's full-attention layers */
    LC_ROPE_TABLE_LOCAL,  /* Gemma 3's sliding layers: rope_local_theta, unscaled */
    LC_ROPE_TABLE_LONG,   /* longrope's long factors */
    LC_ROPE_TABLE_COUNT
} lc_rope_table;

typedef struct lc_model_config {
    lc_arch arch;
    char model_type[32];
    int hidden_size;          /* C */
    int intermediate_size;    /* FF */
    int n_layers;             /* L */
    int n_heads;              /* H */
    int n_kv_heads;           /* KV (default H) */
    int head_dim;             /* D (default C / H) */
    int vocab_size;           /* V */
    int max_position_embeddings;
    double rms_norm_eps;
    bool tie_word_embeddings;
    bool qkv_bias;            /* qwen2 always; llama/mistral: attention_bias */
    bool o_bias;              /* llama/mistral: attention_bias */
    bool mlp_bias;            /* llama: mlp_bias */
    bool qk_norm;             /* qwen3 */
    int sliding_window;       /* 0 = none (mistral / qwen use_sliding_window) */
    bool layer_sliding[LC_CFG_MAX_LAYERS]; /* layer l attends within sliding_window
                                            * (every layer, or Gemma's layer_types) */
    /* Gemma 2/3 */
    double query_pre_attn_scalar;  /* attention scale scalar^-1/2 (0: head_dim, the usual) */
    double attn_softcap;           /* scores c·tanh(s/c) before the mask (0: none) */
    double final_softcap;          /* logits d·tanh(z/d) (0: none) */
    double rope_local_theta;       /* Gemma 3 sliding layers' RoPE base (0: one table) */
    /* sparse MoE (Mixtral, Qwen3-MoE): every layer's MLP is E experts */
    int n_experts;                 /* E (0: dense MLPs) */
    int n_experts_per_tok;         /* k, the experts each token is routed to */
    int moe_intermediate_size;     /* an expert's FF */
    bool moe_renorm;               /* the k routing weights renormalised to sum 1 (Mixtral;
                                    * Qwen3-MoE's norm_topk_prob) */
    lc_dtype dtype;           /* torch_dtype / dtype; F32 when absent */
    /* RoPE */
    lc_rope_type rope_type;
    double rope_theta;
    double rope_factor;                /* linear, llama3 */
    double rope_low_freq_factor;       /* llama3 */
    double rope_high_freq_factor;      /* llama3 */
    int rope_original_max_position;    /* llama3 original_max_position_embeddings */
    float rope_freq_factors[LC_CFG_MAX_HEAD_DIM / 2]; /* [head_dim / 2], LC_ROPE_FACTORS; longrope's
                                                       * short_factor */
    float rope_long_factor[LC_CFG_MAX_HEAD_DIM / 2];  /* [head_dim / 2], longrope */
    double rope_attention_factor;      /* longrope: cos/sin multiplier (1 otherwise) */
    /* quantization_config (bitsandbytes) present */
    bool prequantized_bnb4;
} lc_model_config;

/* Parses config.json text; `label` (usually the path) names it in errors. */
int lc_model_config_parse(lc_model_config *cfg, const char *json, size_t len,
                          const char *label, lc_error *err);
/* Reads DIR/config.json or a config.json path (a directory is detected). */
int lc_model_config_load(lc_model_config *cfg, const char *path, lc_error *err);

/* inv_freq[i] for i in [0, D/2): theta^(-2i/D) with the configured scaling
 * applied (linear scaling is folded into inv_freq as 1/factor). */
void lc_model_config_inv_freq(const lc_model_config *cfg, double *inv_freq /* [D/2] */);
/* The same for one of the model's tables (LOCAL and LONG only where the
 * config has them: rope_local_theta > 0, LC_ROPE_LONGROPE). */
void lc_model_config_rope_inv_freq(const lc_model_config *cfg, lc_rope_table table,
                                   double *inv_freq /* [D/2] */);
/* Whether the config has RoPE table `table`. */
bool lc_model_config_has_rope_table(const lc_model_config *cfg, lc_rope_table table);
/* The attention scale: query_pre_attn_scalar^-1/2, else head_dim^-1/2. */
double lc_model_config_attn_scale(const lc_model_config *cfg);

const char *lc_arch_name(lc_arch a);

/* The sequence length `lorac info` plans for and `lorac eval` truncates to:
 * `asked` when positive, else min(LC_DEFAULT_SEQ_LEN, max_position_embeddings). */
#define LC_DEFAULT_SEQ_LEN 2048
int64_t lc_model_config_seq_len(const lc_model_config *cfg, int64_t asked);

#endif

/* model_config.h — a Hugging Face config.json, parsed and checked.
 *
 * Supports model_type llama, mistral, qwen2, qwen3; anything else is
 * "unsupported architecture X". Both RoPE spellings are accepted: legacy
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
} lc_arch;

typedef enum lc_rope_type {
    LC_ROPE_DEFAULT,
    LC_ROPE_LINEAR,   /* positions divided by factor */
    LC_ROPE_LLAMA3,   /* frequency-dependent scaling (Llama 3.1 / 3.2) */
    LC_ROPE_FACTORS,  /* inv_freq[i] / rope_freq_factors[i]: a GGUF file's rope_freqs tensor
                         (how llama.cpp's converter stores llama3 scaling) */
} lc_rope_type;

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
    lc_dtype dtype;           /* torch_dtype / dtype; F32 when absent */
    /* RoPE */
    lc_rope_type rope_type;
    double rope_theta;
    double rope_factor;                /* linear, llama3 */
    double rope_low_freq_factor;       /* llama3 */
    double rope_high_freq_factor;      /* llama3 */
    int rope_original_max_position;    /* llama3 original_max_position_embeddings */
    float rope_freq_factors[LC_CFG_MAX_HEAD_DIM / 2]; /* [head_dim / 2], LC_ROPE_FACTORS */
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

const char *lc_arch_name(lc_arch a);

/* The sequence length `lorac info` plans for and `lorac eval` truncates to:
 * `asked` when positive, else min(LC_DEFAULT_SEQ_LEN, max_position_embeddings). */
#define LC_DEFAULT_SEQ_LEN 2048
int64_t lc_model_config_seq_len(const lc_model_config *cfg, int64_t asked);

#endif

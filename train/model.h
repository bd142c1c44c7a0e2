/* model.h — a decoder of any supported family (train/family.h: Llama 2/3,
 * Mistral, Qwen2, Qwen3, Gemma 2, Gemma 3 text, Phi-3) over frozen weights,
 * and its forward pass on the autograd tape. One block function serves every
 * family: the family's row says which linears (fused or not) and norms it
 * has, and the config which layers slide, which RoPE table each uses and
 * where soft-capping applies.
 *
 * Weights stay in the dtype of the files, memory-mapped (or, for random
 * benchmark models, in one owned buffer); only the small vectors (norm
 * weights, biases) are converted to lc_real at load. The forward pass is
 * built from autograd ops, so backward comes from the tape; with a LoRA set
 * attached, only its A/B tensors receive gradients. */
#ifndef LC_MODEL_H
#define LC_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "autograd/nf4.h"
#include "autograd/ops.h"
#include "data/batch.h"
#include "data/model_files.h"
#include "train/family.h"
#include "train/kv_cache.h"
#include "train/lora.h"
#include "train/model_config.h"

typedef struct lc_layer_weights {
    lc_weight proj[LC_MOD_COUNT];      /* the family's linears: [out, in] (lc_module_shape) */
    lc_real *bias[LC_MOD_COUNT];       /* [out] or NULL */
    lc_real *norm[LC_NORM_COUNT];      /* [C] each, NULL where the family has none; as applied
                                        * (Gemma's stored w + 1) */
    lc_real *q_norm, *k_norm;          /* [D], Qwen3 and Gemma 3 (as applied) */
    lc_weight router;                  /* [E, C], MoE families */
    lc_weight *experts;                /* [E · 3]: expert e's gate [FF, C], up [FF, C] and
                                        * down [C, FF] at 3e, 3e+1, 3e+2 (MoE families) */
} lc_layer_weights;

typedef struct lc_model {
    lc_model_config cfg;
    lc_model_files files;
    bool has_files;
    lc_weight embed;                   /* [V, C] */
    lc_weight lm_head;                 /* [V, C] (= embed when tied) */
    lc_real *final_norm;               /* [C] (as applied) */
    lc_layer_weights *layers;          /* [L] */
    lc_real *small;                    /* owns norm weights and biases */
    void *owned_weights;               /* random models: owns every matrix */
    uint16_t *bf16_weights;            /* owns the copies lc_model_weights_to_bf16 made */
    lc_nf4_store *nf4;                 /* [L · LC_MOD_COUNT] when quantized at load (the
                                        * family's modules' slots) */
    lc_weight *expert_weights;         /* [L · E · 3], what the layers' experts point into */
    lc_nf4_store *nf4_experts;         /* [L · E · 3] when quantized */
    struct lc_gguf_base *gguf;         /* a GGUF base: its mapping and ggml weights (gguf_model.h) */
    lc_real *cos_sin[LC_ROPE_TABLE_COUNT]; /* [rope_len, D] each; NULL where the config has
                                            * no such table (model_config.h) */
    bool checkpoint_layers;            /* gradient checkpointing: recompute each layer in backward */
    const struct lc_model *host;       /* a device mirror (device_model.h): the host model it
                                        * was made from; NULL for a host model */
    int64_t rope_len;
} lc_model;

/* Loads config.json + safetensors from a Hugging Face directory; every
 * tensor is checked for presence, dtype (F32/F16/BF16) and shape. A GGUF
 * file (path ending in .gguf, or GGUF magic) is loaded by gguf_model.h. */
int lc_model_load(lc_model *m, const char *dir, lc_error *err);

typedef struct lc_model_load_opts {
    bool nf4;                 /* quantize every linear of the blocks to NF4 */
    int64_t nf4_blocksize;    /* 64 */
    bool nf4_double_quant;
} lc_model_load_opts;
/* lc_model_load with options. With nf4, each linear is quantized as soon as
 * it is read and its pages of the file are dropped, so the resident size
 * during load stays near the quantized size. */
int lc_model_load_with(lc_model *m, const char *dir, const lc_model_load_opts *o,
                       lc_error *err);
/* The dtype the checkpoint stores the embeddings in (a device mirror's
 * matrices are converted: its host model's), to which constants are
 * rounded as transformers rounds them (Gemma's embedding scale). */
lc_dtype lc_model_stored_dtype(const lc_model *m);
/* lc_real values in m->small for a model of config c (norm weights, biases). */
size_t lc_model_small_count(const lc_model_config *c);
/* For loaders of other formats (train/gguf_model.c): allocates layers and
 * the norm/bias buffer `small` for m->cfg. */
int lc_model_alloc_structure(lc_model *m, lc_error *err);
/* A random model of the given config (weights N(0, 0.02), norms 1), with its
 * matrices in `dtype` (F32 or BF16). For benchmarks and tests. */
int lc_model_init_random(lc_model *m, const lc_model_config *cfg, lc_dtype dtype,
                         uint64_t seed, lc_error *err);
/* A model of the given config whose matrices are not materialised: shapes and
 * dtype only (NF4 linears when nf4), no data, RoPE positions up to
 * max_position_embeddings without tables. For the memory plan's dry run
 * (memory_plan.h) of models too big to load (lorac info); nothing may run
 * its kernels. lc_model_weight_bytes counts its dense matrices at dtype and
 * its NF4 ones as 0 bytes (it has no quantization state to measure). */
int lc_model_init_shapes(lc_model *m, const lc_model_config *cfg, lc_dtype dtype, bool nf4,
                         lc_error *err);
/* Quantizes every linear of an already loaded (or random) model to NF4,
 * releasing the pages of the originals. */
int lc_model_quantize_nf4(lc_model *m, const lc_model_load_opts *o, lc_error *err);
void lc_model_free(lc_model *m);
/* Bytes the frozen matrices occupy as held (NF4 sizes when quantized). */
double lc_model_weight_bytes(const lc_model *m);

/* Whether the lm_head is the embedding (tied, same storage). */
bool lc_model_tied(const lc_model *m);
/* fn on every frozen matrix slot of m (absent ones too: data, nf4 and ggml
 * NULL) in a fixed order: the embedding, the lm_head unless is_tied, then
 * per layer its LC_MOD_COUNT projections, its router and its experts; with
 * is_tied, the lm_head is set to the embedding afterwards. Stops at (and
 * returns) the first nonzero fn result. */
int lc_model_each_weight(lc_model *m, bool is_tied, int (*fn)(lc_weight *w, void *ctx),
                         void *ctx);
/* Every dense F32 or F16 frozen matrix of m (embedding, lm_head, linears,
 * routers, experts) replaced by a bf16 copy (round-to-nearest-even) held by
 * m, and the memory it came from released (file pages dropped; a random
 * model's f32 storage freed): the frozen weights of a compute_dtype
 * bfloat16 run on the CPU, held as PyTorch's model.to(torch.bfloat16) holds
 * them. BF16, NF4 and GGUF matrices stay as they are. */
int lc_model_weights_to_bf16(lc_model *m, lc_error *err);

/* Makes the RoPE table cover positions [0, n). Call before training (it
 * allocates); forward asserts it is large enough. */
int lc_model_prepare_rope(lc_model *m, int64_t n, lc_error *err);


/* DoRA's initial magnitudes, as PEFT creates them: m = ‖W + s·B·A‖₂ per
 * output row of every adapted linear (B is zero at init, so ‖W‖), W read as every frozen weight is
 * (dense, NF4 or a GGUF type: the norm of the dequantized rows, as PEFT's
 * DoRA over a bitsandbytes layer); no-op without DoRA. */
int lc_model_dora_init(const lc_model *m, lc_lora *lora, lc_error *err);

/* For a frozen DoRA adapter (eval, generate): computes c = ‖W + s·B·A‖ of
 * every adapted linear once and holds it (lc_lora_adapter.norm), instead of
 * once per forward — per decoded token that would cost R times the token's
 * own product. The adapter must not change afterwards. No-op without DoRA. */
int lc_model_dora_freeze(const lc_model *m, lc_lora *lora, lc_error *err);

/* Called with each layer's input (layer = 0..L−1) and, with layer = L, the
 * final-normed hidden state; for tests and debugging. */
typedef void (*lc_hidden_hook)(void *user, int layer, const lc_tensor *h);

/* Runs the decoder up to the final norm and returns xn [B·T, C]. lora may
 * be NULL; hook may be NULL. */
lc_tensor *lc_model_hidden(const lc_model *m, lc_tape *t, const lc_batch *b,
                           const lc_lora *lora, lc_hidden_hook hook, void *user);

/* Forward to the loss: a scalar tensor = grad_scale · Σ token CE (see
 * lc_op_lm_head_ce); *loss_sum and *n_supervised get the raw sum and count. */
lc_tensor *lc_model_loss(const lc_model *m, lc_tape *t, const lc_batch *b,
                         const lc_lora *lora, lc_real grad_scale, double *loss_sum,
                         int64_t *n_supervised);

/* Full logits [B·T, V] (no gradient), for evaluation and tests. */
void lc_model_logits(const lc_model *m, lc_tape *t, const lc_batch *b, const lc_lora *lora,
                     lc_real *logits, lc_hidden_hook hook, void *user);

/* Decoding with a KV cache (the generator, train/generate.h): runs the
 * tokens ids[0..n) of one sequence at positions cache->len .. cache->len+n−1
 * through the same layer code as training — attending causally to each
 * other and to the cache->len positions cached before them — appends their
 * keys/values to the cache (len += n) and writes the logits of the last
 * token to logits [V]. Prefill is one call with the prompt, then one call
 * per new token. Gradients and LoRA dropout off; lora (may be NULL) applied
 * unmerged by the trainer's linear op. Needs room in the cache and a RoPE
 * table covering cache->len + n (asserted). The arena holds about one
 * layer's activations for n tokens; released on return. */
void lc_model_decode(const lc_model *m, lc_tape *t, const int32_t *ids, int64_t n,
                     const lc_lora *lora, lc_kv_cache *cache, lc_real *logits);

#endif

/* lora.h — the trainable LoRA tensors of a model, and PEFT adapter files.
 *
 * All A and B matrices live in one contiguous parameter buffer with a
 * parallel gradient buffer (and, in optim/, Adam m and v), so zeroing,
 * clipping and the AdamW update are single flat passes. Names and shapes are
 * PEFT's: base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight is
 * A [R, in], ...lora_B.weight is B [out, R]; an adapter directory is
 * adapter_config.json + adapter_model.safetensors, loadable by
 * PeftModel.from_pretrained.
 *
 * DoRA (use_dora): each adapter also has a magnitude m [out]
 * (...q_proj.lora_magnitude_vector), after its B in the buffer, trained by
 * the same AdamW (weight decay included) and clipped norm. */
#ifndef LC_LORA_H
#define LC_LORA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/ops.h"
#include "data/safetensors.h"
#include "optim/adamw.h"
#include "train/model_config.h"

/* Every linear a supported decoder block may have, by its HF name. Which
 * ones a model has is its family's row (train/family.h); a module's name,
 * parent and shape formula are the same in every family. */
typedef enum lc_module {
    LC_MOD_Q, LC_MOD_K, LC_MOD_V, LC_MOD_O, LC_MOD_GATE, LC_MOD_UP, LC_MOD_DOWN,
    LC_MOD_QKV,      /* Phi-3's fused [q | k | v] */
    LC_MOD_GATE_UP,  /* Phi-3's fused [gate | up] */
    /* A sparse-MoE block's experts (Mixtral, Qwen3-MoE), one LoRA each as
     * PEFT's target_parameters makes it (lora_target_parameters): per expert
     * e, [gate | up] [2·FF, C] and down [C, FF]. Their adapter's A is PEFT's
     * [R·E, in] (expert e = rows e·R .. e·R+R−1); B is held as E contiguous
     * [out, R] blocks, [E·out, R], and converted to and from PEFT's
     * rank-major [out, R·E] (B_e[o, j] = B[o, j·E + e]) in the files. */
    LC_MOD_EXPERTS_GATE_UP,
    LC_MOD_EXPERTS_DOWN,
    LC_MOD_COUNT
} lc_module;

/* Whether m is an experts' parameter (a target_parameters entry, not a
 * target_modules one). */
bool lc_module_is_expert(lc_module m);

/* "q_proj", ...; and the parent ("self_attn" / "mlp"). */
const char *lc_module_name(lc_module m);
const char *lc_module_parent(lc_module m);
/* "q_proj, k_proj, ...": every module name, for error messages. */
const char *lc_module_names(void);
/* Parses "q_proj" etc.; -1 when unknown. */
int lc_module_from_name(const char *name);
/* [out, in] of module m in a model with config cfg (an expert module: of
 * one expert). */
void lc_module_shape(const lc_model_config *cfg, lc_module m, int64_t *out, int64_t *in);
/* Copies of module m per layer: E for an expert module, else 1. */
int64_t lc_module_copies(const lc_model_config *cfg, lc_module m);
/* Whether module m carries a bias in a model with config cfg. */
bool lc_module_has_bias(const lc_model_config *cfg, lc_module m);
/* Whether the model's family has module m (train/family.h). */
bool lc_model_has_module(const lc_model_config *cfg, lc_module m);

typedef struct lc_lora_config {
    int r;
    double alpha;
    double dropout;
    bool use_rslora;
    bool use_dora;                 /* adapters carry a magnitude vector (DoRA) */
    bool all_linear;               /* every linear of the model's family (PEFT's "all-linear");
                                    * lc_lora_init resolves it into targets */
    bool targets[LC_MOD_COUNT];    /* lc_lora_init refuses one the model does not have */
} lc_lora_config;

/* Targets every linear of the model's family (PEFT's "all-linear" without
 * the head). */
void lc_lora_target_all(lc_lora_config *cfg, const lc_model_config *mc);

typedef struct lc_lora {
    lc_lora_config cfg;
    int n_layers;
    lc_real scale;                 /* alpha / r or alpha / sqrt(r) */
    lc_lora_adapter *adapters;     /* [n_layers · LC_MOD_COUNT]; A == NULL: not targeted */
    lc_tensor *tensors;            /* A, B (and m with DoRA) structs per targeted module */
    size_t n_tensors;
    lc_real *params;               /* [n_params] all A, B (and m) values */
    lc_real *grads;                /* [n_params] */
    size_t n_params;
    lc_real *frozen_norms;         /* DoRA's c of every adapter when frozen
                                    * (lc_model_dora_freeze), else NULL */
    int n_experts;                 /* E of an MoE model, else 0 */
    lc_lora_adapter *expert_views; /* [n_layers · 2 · E]: expert e's A_e, B_e (views into
                                    * the module's A and B) per layer and expert module */
    lc_tensor *expert_tensors;     /* their tensor structs */
} lc_lora;

/* Allocates the adapters for every targeted module of every layer, A with
 * PEFT's default init (kaiming-uniform a=√5: U(−1/√in, 1/√in)) from seed,
 * B zero. With cfg->use_dora the magnitudes are zero until
 * lc_model_dora_init (train/model.h) sets them from the weights. */
int lc_lora_init(lc_lora *lora, const lc_model_config *mc, const lc_lora_config *cfg,
                 uint64_t seed, lc_error *err);
void lc_lora_free(lc_lora *lora);

/* The adapter of (layer, module), or NULL when that module is not targeted
 * (an expert module: all experts' A [R·E, in] and B [E·out, R] together). */
const lc_lora_adapter *lc_lora_get(const lc_lora *lora, int layer, lc_module m);
/* Slots of lora->expert_views: n_layers · 2 · E when an expert module is
 * targeted, else 0 (lora->expert_tensors holds twice as many). */
size_t lc_lora_expert_view_count(const lc_lora *lora);
/* Expert e's adapter of expert module m in layer `layer` (A_e [R, in], B_e
 * [out, R]), or NULL when m is not targeted. */
const lc_lora_adapter *lc_lora_expert(const lc_lora *lora, int layer, lc_module m, int e);
/* PEFT tensor name of adapter tensor k (0 A, 1 B, 2 m) of (layer, m) in this
 * adapter: as lc_lora_part_name, and for expert modules PEFT's nesting of
 * its parameter wrappers (mlp.experts[.base_layer].lora_A.weight). */
void lc_lora_param_name(const lc_lora_config *cfg, char *buf, size_t n, int layer, lc_module m,
                        int k);

/* PEFT tensor name of A (is_b false) or B, into buf. */
void lc_lora_tensor_name(char *buf, size_t n, int layer, lc_module m, bool is_b);
/* PEFT tensor name of adapter tensor k of (layer, m): 0 A, 1 B, 2 the DoRA
 * magnitude (...lora_magnitude_vector); m not an expert module. */
void lc_lora_part_name(char *buf, size_t n, int layer, lc_module m, int k);
/* Tensors per adapter: 2, or 3 with DoRA. */
int lc_lora_parts(const lc_lora *lora);
/* Adapter tensor k (0 A, 1 B, 2 m) of ad. */
lc_tensor *lc_lora_part(const lc_lora_adapter *ad, int k);

/* Reads an adapter directory's adapter_config.json into cfg (r, lora_alpha,
 * lora_dropout, use_rslora, use_dora, target_modules; options lorac does
 * not implement refused). */
int lc_lora_read_config(lc_lora_config *cfg, const char *dir, lc_error *err);
/* Init from DIR/adapter_config.json and load DIR/adapter_model.safetensors:
 * every expected tensor must be present with PEFT's shape; F32/F16/BF16. */
int lc_lora_load_peft(lc_lora *lora, const lc_model_config *mc, const char *dir,
                      lc_error *err);
/* Copies A/B values from an open safetensors file (PEFT names). */
int lc_lora_load_tensors(lc_lora *lora, const lc_st_file *f, lc_error *err);
/* Writes DIR/adapter_config.json + DIR/adapter_model.safetensors (F32),
 * creating DIR when missing. base_model is recorded as
 * base_model_name_or_path: by its absolute canonical path (realpath) when
 * it names an existing path, so PEFT finds the base from any working
 * directory, else as given (a Hub id such as "org/name"; NULL: ""). */
int lc_lora_save_peft(const lc_lora *lora, const char *dir, const char *base_model,
                      lc_error *err);

/* LoRA+ (PEFT's create_loraplus_optimizer, Axolotl's loraplus_lr_ratio): the
 * optimizer's parameter groups over lora->params, every lora_B learning at
 * b_lr_scale × the learning rate and every lora_A at 1× (PEFT also puts 1-D
 * adapter parameters with B: DoRA's magnitudes learn at b_lr_scale too).
 * Sets them on opt. */
int lc_lora_loraplus_groups(const lc_lora *lora, double b_lr_scale, lc_adamw *opt,
                            lc_error *err);

#endif

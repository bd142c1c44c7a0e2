/* device_model.h — a model and its LoRA set on a device backend.
 *
 * The model code (model.c) and the ops run unchanged on any backend: they
 * read weights, norm vectors, RoPE tables and LoRA tensors through the
 * pointers of an lc_model and an lc_lora. A device model is therefore the
 * host structs copied with every element pointer replaced by one into the
 * device's memory (a mirror), uploaded once:
 *   - frozen matrices converted to the backend's activation dtype (f32 or
 *     bf16: the run's compute_dtype) tile by tile as they are read — F32,
 *     F16, BF16 and GGUF's ggml types alike —
 *     or, for NF4, kept 4-bit: codes and (double-quantized) scales uploaded
 *     as they are, the lc_nf4 struct on the host pointing at them;
 *     An MoE layer's router and every expert's gate, up and down are
 *     uploaded the same way (the mirror's expert_weights, [L · E · 3]);
 *   - norm weights and biases (the model's `small` buffer) in the
 *     activation dtype, and the RoPE tables (f32);
 *   - the LoRA values in one flat buffer and a zeroed gradient buffer of the
 *     same layout, so offsets into lc_lora.params mean the same on both;
 *     the per-expert adapters (lc_lora.expert_views) are views into them.
 * The host model and LoRA set stay the reference for everything that is
 * not a step: checkpoints, adapter files and sample generation read the
 * host values after lc_device_lora_download.
 *
 * Every model lorac trains runs on a device (MoE included: its routing
 * crosses to the host inside the step, autograd/ops_moe.h). */
#ifndef LC_DEVICE_MODEL_H
#define LC_DEVICE_MODEL_H

#include <stddef.h>

#include "autograd/backend.h"
#include "train/model.h"

typedef struct lc_device_model {
    lc_backend *be;
    lc_model model;             /* mirror of the host model: device element pointers */
    lc_lora lora;               /* mirror of the host LoRA set: params, grads (and a frozen
                                 * DoRA adapter's held norms) on the device */
    void **bufs;                /* every device allocation, freed together */
    size_t n_bufs, cap_bufs;
    lc_nf4 *nf4;                /* [n_nf4] host structs of the NF4 weights' device arrays */
    size_t n_nf4, cap_nf4;
    double weight_bytes;        /* device bytes of the frozen matrices */
} lc_device_model;

/* Device bytes lc_device_model_upload would allocate for m's frozen weights
 * (dense ones in the activation dtype act; NF4 as held; MoE routers and
 * experts included) plus its norm vectors and RoPE tables. */
double lc_device_model_weight_bytes(const lc_model *m, lc_dtype act);

/* The host structs of m as lc_device_model_upload lays them out on a
 * backend of activation dtype act, without uploading anything: dense and
 * GGUF matrices become act matrices (their data pointers still host ones,
 * for size queries only), NF4 ones stay NF4. The memory plan's dry run
 * steps on it, so its scratch sizes are the device's (a bf16 weight needs
 * no conversion tile, an f32 one on a bf16 device would). Free with
 * lc_device_model_view_free. */
int lc_device_model_view(const lc_model *m, lc_dtype act, lc_model *view, lc_error *err);
void lc_device_model_view_free(lc_model *view);

/* Uploads m and lora (may be NULL) to be. On failure everything allocated
 * is freed. */
int lc_device_model_upload(lc_device_model *d, lc_backend *be, const lc_model *m,
                           const lc_lora *lora, lc_error *err);
void lc_device_model_free(lc_device_model *d);

/* LoRA values: device → host (before a checkpoint, the adapter files or a
 * sample) and host → device (after a resume loaded them). */
void lc_device_lora_download(const lc_device_model *d, lc_lora *host);
void lc_device_lora_upload(const lc_device_model *d, const lc_lora *host);

#endif

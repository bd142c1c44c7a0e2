/* backend.h — one engine, several backends: where element memory lives and
 * which kernels run on it.
 *
 * A backend is a table of functions in the spirit of ggml's ggml_backend_i:
 * memory (allocate, free, copies in each direction, zero fill, wait) and one
 * entry per kernel of autograd/kernels.h, with the one signature every
 * backend implements (the table's fields take their types from the
 * kernels.h declarations, so a signature is written once and every
 * implementation is checked against it). The autograd ops (ops.c) build the
 * tape and call these entries; they never read or write element memory
 * themselves, so the same model code runs on any backend.
 *
 *   cpu   host memory; the kernels are the CPU variant chosen at start-up
 *         (cpu/dispatch.h); a second CPU backend runs the frozen-weight
 *         products as bf16 GEMMs (cpu/gemm_bf16.h).
 *   dry   the memory plan's dry run (train/memory_plan.h): sizes answered as
 *         the backend it plans for does, compute kernels and copies no-ops.
 *   cuda  device memory; the kernels of autograd/cuda (cuda/backend_cuda.h),
 *         on a GPU or on the CPU simulator of tests/cuda_sim.
 *
 * Element types: a backend computes in one activation dtype, `act` (the
 * compute_dtype of a run: f32 on the CPU, f32 or bf16 on CUDA). The
 * pointers kernels.h marks [f32] — LoRA parameters, their gradients,
 * AdamW's state, statistics — are f32 on every backend; every other
 * element pointer holds `act` elements. The table `f32` is the same
 * backend's kernels with f32 activations (the optimizer's: it scales and
 * reduces f32 gradients); on an f32 backend it is `&k` itself.
 * Kernels are asynchronous on a device: a
 * failure inside one is kept and reported by sync(), the first one wins.
 * upload and download are synchronous with respect to the host. */
#ifndef LC_BACKEND_H
#define LC_BACKEND_H

#include <stdbool.h>
#include <stddef.h>

#include "autograd/error.h"
#include "autograd/kernels.h"

/* One entry per kernel of kernels.h. */
typedef struct lc_kernels {
    __typeof__(lc_k_gemm) *gemm;
    __typeof__(lc_k_gemm_grad) *gemm_grad;
    __typeof__(lc_k_to_act) *to_act;
    __typeof__(lc_k_weight_scratch) *weight_scratch;
    __typeof__(lc_k_weight_matmul) *weight_matmul;
    __typeof__(lc_k_weight_matmul_grad) *weight_matmul_grad;
    __typeof__(lc_k_rmsnorm_fwd) *rmsnorm_fwd;
    __typeof__(lc_k_rmsnorm_bwd) *rmsnorm_bwd;
    __typeof__(lc_k_swiglu_fwd) *swiglu_fwd;
    __typeof__(lc_k_swiglu_bwd) *swiglu_bwd;
    __typeof__(lc_k_geglu_tanh_fwd) *geglu_tanh_fwd;
    __typeof__(lc_k_geglu_tanh_bwd) *geglu_tanh_bwd;
    __typeof__(lc_k_softcap) *softcap;
    __typeof__(lc_k_rope) *rope;
    __typeof__(lc_k_attention_scratch) *attention_scratch;
    __typeof__(lc_k_attention_fwd) *attention_fwd;
    __typeof__(lc_k_attention_bwd) *attention_bwd;
    __typeof__(lc_k_ce_chunk_rows) *ce_chunk_rows;
    __typeof__(lc_k_ce_scratch) *ce_scratch;
    __typeof__(lc_k_lm_head_ce) *lm_head_ce;
    __typeof__(lc_k_embedding) *embedding;
    __typeof__(lc_k_dropout) *dropout;
    __typeof__(lc_k_axpy) *axpy;
    __typeof__(lc_k_add) *add;
    __typeof__(lc_k_scale) *scale;
    __typeof__(lc_k_div) *div;
    __typeof__(lc_k_add_bias) *add_bias;
    __typeof__(lc_k_cols) *cols;
    __typeof__(lc_k_gather_rows) *gather_rows;
    __typeof__(lc_k_scatter_add_rows) *scatter_add_rows;
    __typeof__(lc_k_gather_add_rows) *gather_add_rows;
    __typeof__(lc_k_row_dots) *row_dots;
    __typeof__(lc_k_dora_norm_scratch) *dora_norm_scratch;
    __typeof__(lc_k_dora_norm) *dora_norm;
    __typeof__(lc_k_dora_combine) *dora_combine;
    __typeof__(lc_k_col_scale) *col_scale;
    __typeof__(lc_k_dora_mag_grad) *dora_mag_grad;
    __typeof__(lc_k_adamw) *adamw;
    __typeof__(lc_k_sum_squares) *sum_squares;
} lc_kernels;

typedef struct lc_backend lc_backend;

struct lc_backend {
    const char *name;      /* "cpu", "dry", "cuda" */
    bool device;           /* element memory is not addressable from the host */
    lc_dtype act;          /* the activation dtype of k (LC_DTYPE_F32 or LC_DTYPE_BF16) */
    lc_dtype gemm;         /* the dtype frozen-weight GEMMs round their inputs to: act, except
                            * on the CPU's bfloat16 backend (BF16 with f32 activations) */
    lc_kernels k;
    const lc_kernels *f32; /* the same kernels with f32 activations (== &k when act is F32) */
    /* Frozen-weight products with LoRA terms (kernels.h lc_lora_term) of n
     * linears on one input (q/k/v, gate/up; n 1: one linear):
     * y_i = beta·y_i + x·W_iᵀ + s_i·xa_i·B_iᵀ, and dx = beta·dx +
     * Σ_i dy_i·W_i + s_i·dxa_i·A_i, with weight_matmul's scratch for the
     * largest W_i; where the backend can fold the terms into the products
     * and share GEMMs across the group (cpu/gemm_bf16.h
     * lc_cpu_linear_lora_bf16). NULL: the op runs weight_matmul and a gemm
     * for each term. */
    void (*linear_lora)(const lc_real *x, int64_t N, int n, const lc_weight *const *W,
                        const lc_lora_term *lt, lc_real beta, lc_real *const *y,
                        lc_real *scratch);
    void (*linear_lora_grad)(const lc_real *const *dy, int64_t N, int n,
                             const lc_weight *const *W, const lc_lora_term *lt, lc_real beta,
                             lc_real *dx, lc_real *scratch);
    /* bytes of element memory, NULL (with err set) when there is none left */
    void *(*alloc)(lc_backend *be, size_t bytes, lc_error *err);
    void (*free)(lc_backend *be, void *p);
    void (*upload)(lc_backend *be, void *dst, const void *src, size_t bytes);   /* host → be */
    void (*download)(lc_backend *be, void *dst, const void *src, size_t bytes); /* be → host */
    void (*copy)(lc_backend *be, void *dst, const void *src, size_t bytes);     /* be → be */
    void (*memset0)(lc_backend *be, void *dst, size_t bytes);
    /* waits for queued work; the first failure since the last sync, if any */
    int (*sync)(lc_backend *be, lc_error *err);
    /* element memory free and in total (bytes) */
    void (*mem_info)(lc_backend *be, size_t *free_bytes, size_t *total_bytes);
    void (*destroy)(lc_backend *be);
    void *impl;
};

/* The process's CPU backend (static; never destroyed). */
lc_backend *lc_backend_cpu(void);
/* The CPU backend of compute_dtype bfloat16: the same, but the frozen-weight
 * products (linears, lm_head) are bf16 GEMMs on the engine
 * cpu/gemm_bf16.h selected (select one before use); activations, LoRA and
 * everything else stay f32. Static. */
lc_backend *lc_backend_cpu_bf16(void);
/* The dry backend planning for `target` (NULL: the CPU): its size queries
 * are target's, everything else does nothing. Static per target kind. */
lc_backend *lc_backend_dry(const lc_backend *target);

/* Bytes of n activation elements of be. */
static inline size_t lc_backend_act_bytes(const lc_backend *be, int64_t n)
{
    return (size_t)n * lc_dtype_size(be->act);
}

/* Element-count helpers over a backend, for [f32] (lc_real) buffers. */
static inline void lc_backend_zero(lc_backend *be, lc_real *p, int64_t n)
{
    if (n > 0)
        be->memset0(be, p, (size_t)n * sizeof(lc_real));
}
static inline void lc_backend_copy(lc_backend *be, lc_real *dst, const lc_real *src, int64_t n)
{
    if (n > 0)
        be->copy(be, dst, src, (size_t)n * sizeof(lc_real));
}

#endif

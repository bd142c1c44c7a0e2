/* cuda_kernels.h — the CUDA backend's kernels, callable from C.
 *
 * Same math as autograd/kernels.h (the CPU reference), on DEVICE pointers.
 * Precision follows the design: activations and frozen weights in bf16
 * (uint16_t storage seen from C, passed as void *), f32 accumulation inside
 * every kernel, f32 for LoRA parameters / gradients / Adam state, f32 for
 * the saved statistics (rstd, log-sum-exp) and double for the loss. Every
 * activation kernel also runs in f32 (dt = LC_DTYPE_F32), which is what the
 * `compute_dtype: float32` check mode uses to compare with the CPU at 1e-5.
 *
 * This header never includes a CUDA header: C code (the CUDA backend
 * cuda/backend_cuda.c, the tests) sees only plain types, and those are
 * lorac's own, defined once: element types are lc_dtype (LC_DTYPE_F32,
 * LC_DTYPE_BF16, LC_DTYPE_F16), a frozen weight is an lc_weight
 * (autograd/tensor.h; NF4 when its nf4 is set), the attention shape
 * lc_attn_shape and AdamW's hyper-parameters lc_adamw_hparams
 * (autograd/kernels.h). The .cu files implement it as extern "C".
 *
 * Errors: functions that take an lc_cuda_ctx return 0 / -1 and leave the
 * message (file, line, the failing CUDA / cuBLAS call or the bad argument)
 * in the context, read with lc_cuda_ctx_error(). Kernel launches are
 * asynchronous on the context's stream: a fault inside a kernel surfaces at
 * the next lc_cuda_sync() (or at once, naming the kernel, when the
 * environment variable LORAC_CUDA_SYNC=1 was set when the context was made).
 *
 * Shape letters as in autograd/tensor.h: N tokens, B batch rows, T sequence,
 * C hidden, H query heads, KV key/value heads, D head dim, V vocab. */
#ifndef LC_CUDA_KERNELS_H
#define LC_CUDA_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/error.h"
#include "autograd/kernels.h"
#include "autograd/nf4.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Element types on the device (lc_dtype). Activations: LC_DTYPE_F32 or
 * LC_DTYPE_BF16. Frozen weights: F32, BF16, F16 or NF4 (lc_weight.nf4; F16
 * and NF4 are converted tile by tile before a GEMM). */

/* ---------------------------------------------------------------- device */

/* Number of usable CUDA devices; 0 when there is no device or no driver
 * (never an error: callers fall back to the CPU). */
int lc_cuda_device_count(void);

typedef struct lc_cuda_device_info {
    char name[256];
    int cc_major, cc_minor;    /* compute capability */
    int sm_count;
    size_t total_bytes, free_bytes;
} lc_cuda_device_info;

int lc_cuda_device_query(int device, lc_cuda_device_info *info, lc_error *err);

/* One context per device and thread: a stream, a cuBLASLt handle with its
 * workspace and GEMM plan cache, and small reduction buffers. workspace_bytes
 * 0 picks 32 MiB (what cuBLASLt wants on Hopper). */
typedef struct lc_cuda_ctx lc_cuda_ctx;

int lc_cuda_ctx_init(lc_cuda_ctx **out, int device, size_t workspace_bytes, lc_error *err);
void lc_cuda_ctx_free(lc_cuda_ctx *c);
/* The message of the last failure in c. */
const char *lc_cuda_ctx_error(const lc_cuda_ctx *c);
/* Waits for everything queued on c's stream; reports asynchronous faults. */
int lc_cuda_sync(lc_cuda_ctx *c);
/* cudaMemGetInfo of c's device (bytes). */
int lc_cuda_mem_info(lc_cuda_ctx *c, size_t *free_bytes, size_t *total_bytes);

/* ---------------------------------------------------------------- memory */

int lc_cuda_malloc(lc_cuda_ctx *c, void **p, size_t bytes);
void lc_cuda_free(void *p);
/* Synchronous copies host → device and device → host. */
int lc_cuda_upload(lc_cuda_ctx *c, void *dst, const void *src, size_t bytes);
int lc_cuda_download(lc_cuda_ctx *c, void *dst, const void *src, size_t bytes);
/* Asynchronous (on c's stream) device → device copy and zero fill. */
int lc_cuda_copy(lc_cuda_ctx *c, void *dst, const void *src, size_t bytes);
int lc_cuda_memset0(lc_cuda_ctx *c, void *dst, size_t bytes);
/* dst[n] (dst_dt: F32 or BF16) = src[n] (F32, BF16 or F16), round to
 * nearest even. */
int lc_cuda_convert(lc_cuda_ctx *c, lc_dtype dst_dt, void *dst, lc_dtype src_dt,
                    const void *src, int64_t n);

/* ---------------------------------------------------------------- GEMM */

/* C[M,N] = alpha · op(A) · op(B) + beta · C, row-major like lc_k_gemm, through
 * cuBLASLt with f32 accumulation. (in_dt, out_dt) ∈ {(BF16, BF16), (BF16, F32),
 * (F32, F32)}; the F32 path is strict f32 (no TF32). Plans (matmul desc,
 * layouts, heuristic algo) are cached per shape, ld's, dtypes and pointer
 * alignment. */
int lc_cuda_gemm(lc_cuda_ctx *c, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                 float alpha, const void *A, int64_t lda, const void *B, int64_t ldb, float beta,
                 void *C, int64_t ldc, lc_dtype in_dt, lc_dtype out_dt);

/* GEMM plan cache counters since the context was made (for tests / logs). */
void lc_cuda_gemm_cache_stats(const lc_cuda_ctx *c, int64_t *hits, int64_t *misses);
/* Times a plan's algorithm was refused by cublasLtMatmul and the next ran. */
int64_t lc_cuda_gemm_fallbacks(const lc_cuda_ctx *c);

/* ---------------------------------------------------------------- weights */

/* A frozen base-model matrix [rows = out, cols = in] on the device is an
 * lc_weight whose data is a device pointer in F32, BF16 or F16, or whose nf4
 * points to a HOST lc_nf4 (autograd/nf4.h: bitsandbytes' layout) whose
 * arrays (codes, absmax or absmax_q / nested_absmax / nested_map) are
 * device pointers. ggml must be NULL (GGUF weights are dequantized before
 * upload). The NF4 nested absmax is map·scale + offset rounded step by step
 * (no FMA), as the CPU computes it. */

/* Rows [r0, r1) of W converted / dequantized into dst (dt: F32 or BF16,
 * row-major, cols wide). This is the NF4 dequantization kernel. */
int lc_cuda_weight_rows(lc_cuda_ctx *c, const lc_weight *W, int64_t r0, int64_t r1,
                        lc_dtype dt, void *dst);
/* Bytes of scratch the two weight matmuls need (0 when W is already dt). */
size_t lc_cuda_weight_scratch_bytes(const lc_weight *W, lc_dtype dt);
/* y[N,out] = beta · y + x[N,in] · Wᵀ (x, y in dt). */
int lc_cuda_weight_matmul(lc_cuda_ctx *c, lc_dtype dt, const void *x, int64_t N,
                          const lc_weight *W, float beta, void *y, void *scratch);
/* dx[N,in] = beta · dx + dy[N,out] · W (beta 0 or 1). */
int lc_cuda_weight_matmul_grad(lc_cuda_ctx *c, lc_dtype dt, const void *dy, int64_t N,
                               const lc_weight *W, float beta, void *dx, void *scratch);

/* ---------------------------------------------------------------- pointwise / rows
 * Every pointer of the activation dtype dt is `void *`; statistics are f32. */

/* y[N,C] = x · rstd · w, rstd[N] = 1/sqrt(mean(x²) + eps) (rstd may be NULL). */
int lc_cuda_rmsnorm_fwd(lc_cuda_ctx *c, lc_dtype dt, const void *x, const void *w,
                        int64_t N, int64_t C, double eps, void *y, float *rstd);
/* dx[N,C] += ∂/∂x of rmsnorm given dy (w frozen). */
int lc_cuda_rmsnorm_bwd(lc_cuda_ctx *c, lc_dtype dt, const void *x, const void *w,
                        const float *rstd, const void *dy, int64_t N, int64_t C, void *dx);

/* y[n] = silu(g) · u. */
int lc_cuda_swiglu_fwd(lc_cuda_ctx *c, lc_dtype dt, const void *g, const void *u,
                       int64_t n, void *y);
/* dg[n] += dy · u · silu'(g); du[n] += dy · silu(g); y[n] = silu(g) · u (the
 * forward recomputed in the same pass; any of dg, du, y may be NULL). */
int lc_cuda_swiglu_bwd(lc_cuda_ctx *c, lc_dtype dt, const void *g, const void *u,
                       const void *dy, int64_t n, void *dg, void *du, void *y);

/* y[n] = gelu_tanh(g) · u (lc_k_geglu_tanh_fwd: torch's tanh GELU). */
int lc_cuda_geglu_tanh_fwd(lc_cuda_ctx *c, lc_dtype dt, const void *g, const void *u,
                           int64_t n, void *y);
/* dg[n] += dy · u · gelu_tanh'(g); du[n] += dy · gelu_tanh(g); y[n] =
 * gelu_tanh(g) · u (any may be NULL). */
int lc_cuda_geglu_tanh_bwd(lc_cuda_ctx *c, lc_dtype dt, const void *g, const void *u,
                           const void *dy, int64_t n, void *dg, void *du, void *y);

/* HF rotate-half RoPE on x[N, heads, D], pos[N] (device int32), table
 * cos_sin[P, D] (device f32: first D/2 cos, last D/2 sin). dst = R·src or
 * Rᵀ·src when inverse; accumulate adds into dst; src may equal dst when
 * !accumulate. */
int lc_cuda_rope(lc_cuda_ctx *c, lc_dtype dt, const void *src, void *dst, int64_t N,
                 int heads, int D, const int32_t *pos, const float *cos_sin, bool inverse,
                 bool accumulate);

/* y[n] += a · x[n]. */
int lc_cuda_axpy(lc_cuda_ctx *c, lc_dtype dt, int64_t n, float a, const void *x, void *y);
/* out[n] = a[n] + b[n] (the residual add; out may alias a or b). */
int lc_cuda_add(lc_cuda_ctx *c, lc_dtype dt, int64_t n, const void *a, const void *b,
                void *out);
/* y[N,O] += bias[O] on every row. */
int lc_cuda_add_bias(lc_cuda_ctx *c, lc_dtype dt, int64_t N, int64_t O, const void *bias,
                     void *y);

/* y[n] = s · x[n] (y may alias x). */
int lc_cuda_scale(lc_cuda_ctx *c, lc_dtype dt, int64_t n, float s, const void *x, void *y);
/* y[n] = a[n] / b[n] (IEEE division). */
int lc_cuda_div(lc_cuda_ctx *c, lc_dtype dt, int64_t n, const void *a, const void *b, void *y);
/* Columns [c0, c0 + w) of wide[N, ld]: part[N, w] = those columns, or, when
 * add, those columns += part. */
int lc_cuda_cols(lc_cuda_ctx *c, lc_dtype dt, void *wide, int64_t N, int64_t ld, int64_t c0,
                 int64_t w, void *part, bool add);
/* x[n] = cap · tanh(x / cap) in place (logit soft-capping); cap 0: no-op. */
int lc_cuda_softcap(lc_cuda_ctx *c, lc_dtype dt, void *x, int64_t n, double cap);

/* ---------------------------------------------------------------- DoRA
 * lc_k_dora_* on the device; the magnitude-side vectors (g, c, dm) are f32. */

/* Bytes of scratch lc_cuda_dora_norm needs for W: one tile of rows in f32. */
size_t lc_cuda_dora_norm_scratch_bytes(const lc_weight *W);
/* cn[out] = ‖W[o,:] + s·(B·A)[o,:]‖₂ (f32 A[R,in], B[out,R]): W converted a
 * tile of rows at a time into scratch, s·B·A added by a GEMM, squares summed
 * in double. */
int lc_cuda_dora_norm(lc_cuda_ctx *c, const lc_weight *W, const float *A, const float *B,
                      int64_t R, float s, float *cn, void *scratch);
/* y[N,O] += (g[o] − 1) · u[n,o] + g[o] · v[n,o]. */
int lc_cuda_dora_combine(lc_cuda_ctx *c, lc_dtype dt, int64_t N, int64_t O, const float *g,
                         const void *u, const void *v, void *y);
/* out[N,O] = dy[n,o] · (g[o] + shift). */
int lc_cuda_col_scale(lc_cuda_ctx *c, lc_dtype dt, int64_t N, int64_t O, const void *dy,
                      const float *g, float shift, void *out);
/* dm[O] += Σ_n dy[n,o] · u[n,o] / cn[o], the sum in double over n in order
 * (one thread per column: deterministic, no atomics). */
int lc_cuda_dora_mag_grad(lc_cuda_ctx *c, lc_dtype dt, int64_t N, int64_t O, const void *dy,
                          const void *u, const float *cn, float *dm);

/* x[N,C] = rows ids[N] (device int32) of E[V,C] (F32, BF16, F16 or NF4). */
int lc_cuda_embedding(lc_cuda_ctx *c, lc_dtype dt, const lc_weight *E,
                      const int32_t *ids, int64_t N, void *x);

/* dst[n] (+)= src[n] · keep/(1−p), keep from the same counter hash of
 * (seed, i) as lc_k_dropout: CPU and GPU draw the same mask for a seed
 * (test_cuda_ops checks it bit for bit, so a change on one side shows). */
int lc_cuda_dropout(lc_cuda_ctx *c, lc_dtype dt, const void *src, void *dst, int64_t n,
                    double p, uint64_t seed, bool accumulate);

/* ---------------------------------------------------------------- attention */

/* The attention shape is lc_attn_shape (autograd/kernels.h) with segment a
 * DEVICE pointer (or NULL) and past 0 (no KV cache on the device: an error
 * otherwise). */

/* Largest head dim the attention kernels take. */
#define LC_CUDA_ATTN_MAX_D 128

/* Scratch bytes lc_cuda_attention_bwd needs (f32 rowwise dout·out). */
size_t lc_cuda_attention_scratch_bytes(const lc_attn_shape *s);
/* Causal GQA flash attention. q[B,T,H,D], k,v[B,T,KV,D] → out[B,T,H,D],
 * lse[B,H,T] (f32). */
int lc_cuda_attention_fwd(lc_cuda_ctx *c, lc_dtype dt, const lc_attn_shape *s,
                          const void *q, const void *k, const void *v, void *out, float *lse);
/* dq, dk, dv += gradients (any may be NULL), recomputing P from lse.
 * Deterministic: no atomics (dq per query tile, dk/dv per key tile). */
int lc_cuda_attention_bwd(lc_cuda_ctx *c, lc_dtype dt, const lc_attn_shape *s,
                          const void *q, const void *k, const void *v, const void *out,
                          const float *lse, const void *dout, void *dq, void *dk, void *dv,
                          void *scratch);

/* ---------------------------------------------------------------- loss */

/* Supervised rows per lm_head chunk for vocabulary V. */
int64_t lc_cuda_ce_chunk_rows(int64_t V);
size_t lc_cuda_ce_scratch_bytes(lc_dtype dt, int64_t N, int64_t C, const lc_weight *W);
/* Fused lm_head + cross-entropy over x[N,C] (dt), W[V,C], targets[N]
 * (device int32, −100 = ignored), logits soft-capped to softcap·tanh(z/softcap)
 * first when softcap > 0 (0 = none), as lc_k_lm_head_ce. *loss_sum = Σ token losses, *n_supervised
 * their count (either may be NULL). When dx is not NULL, dx[N,C] +=
 * grad_scale · ∂(Σ loss)/∂x. Per chunk of supervised rows: logits (f32) by
 * one cuBLASLt GEMM, a row kernel for lse / loss / softmax gradient in place,
 * dx by a second GEMM; [N,V] logits never exist. Synchronizes twice (the
 * supervised count, the loss); fails on a target outside [0, V). */
int lc_cuda_lm_head_ce(lc_cuda_ctx *c, lc_dtype dt, const void *x, int64_t N, int64_t C,
                       const lc_weight *W, const int32_t *targets, float grad_scale,
                       void *dx, void *scratch, double *loss_sum, int64_t *n_supervised,
                       double softcap);

/* ---------------------------------------------------------------- optimizer
 * Multi-tensor: each call takes n tensors (host arrays of device pointers and
 * sizes), any number of them (launched 32 at a time); with the flat params
 * buffer of the design that is a single tensor. f32 throughout. */

/* torch.optim.AdamW, exactly as lc_adamw_update for update number `step`
 * (≥ 1, already incremented): p ← p·(1 − lr·wd); m, v moments;
 * p ← p − (lr/(1−β1ᵗ)) · m / (√v/√(1−β2ᵗ) + ε). Bitwise equal to the CPU
 * (no FMA contraction). */
int lc_cuda_adamw_update(lc_cuda_ctx *c, int n, float *const *params,
                         const float *const *grads, float *const *m, float *const *v,
                         const int64_t *numel, const lc_adamw_hparams *hp, int64_t step,
                         double lr);
/* sqrt(Σ g²) over all n tensors, in double, deterministic (fixed reduction
 * order). *norm (host) gets it; NULL leaves it on the device only (no sync). */
int lc_cuda_grad_norm(lc_cuda_ctx *c, int n, const float *const *grads, const int64_t *numel,
                      double *norm);
/* Σ g² over all n tensors in double, the grad norm's reduction (same order,
 * deterministic); *sumsq (host) gets it (one sync). */
int lc_cuda_sum_squares(lc_cuda_ctx *c, int n, const float *const *grads, const int64_t *numel,
                        double *sumsq);
/* torch clip_grad_norm_: g *= max_norm / (norm + 1e-6) when that is < 1
 * (max_norm ≤ 0: no clipping). The coefficient is computed on the device.
 * *norm (may be NULL) gets the norm before clipping (one sync). */
int lc_cuda_grad_clip(lc_cuda_ctx *c, int n, float *const *grads, const int64_t *numel,
                      double max_norm, double *norm);

/* ---------------------------------------------------------------- MoE rows */

/* The row moves of kernels.h (lc_k_gather_rows, lc_k_scatter_add_rows,
 * lc_k_gather_add_rows, lc_k_row_dots; cuda_moe.cu): idx and slot are
 * device int32, rows and weights of activation dtype dt; where rows are
 * added into, idx must be distinct (one expert's tokens). w NULL: weight 1. */
int lc_cuda_gather_rows(lc_cuda_ctx *c, lc_dtype dt, const void *x, const int32_t *idx,
                        int64_t n, int64_t C, void *out);
int lc_cuda_scatter_add_rows(lc_cuda_ctx *c, lc_dtype dt, const void *src, const int32_t *idx,
                             const void *w, const int32_t *slot, int64_t n, int64_t C,
                             void *dst);
int lc_cuda_gather_add_rows(lc_cuda_ctx *c, lc_dtype dt, const void *src, const int32_t *idx,
                            const void *w, const int32_t *slot, int64_t n, int64_t C,
                            void *dst);
/* dw[slot[i]] += Σ_c a[idx[i], c] · b[i, c] (double sums, one warp per row) */
int lc_cuda_row_dots(lc_cuda_ctx *c, lc_dtype dt, const void *a, const int32_t *idx,
                     const void *b, const int32_t *slot, int64_t n, int64_t C, void *dw);

/* ---------------------------------------------------------------- tests */

/* Test hook: shrinks the frozen-weight tile (elements) and the lm_head chunk
 * (rows) so small test shapes take the multi-tile / multi-chunk paths.
 * 0 restores the default. Process-wide; not for production use. */
void lc_cuda_debug_limits(int64_t weight_tile_elems, int64_t ce_chunk_rows);

#ifdef __cplusplus
}
#endif

#endif

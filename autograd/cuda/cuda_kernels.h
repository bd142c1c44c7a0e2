/* cuda_kernels.h — the CUDA backend's kernels, callable from C.
 *
 * Same math as autograd/kernels.h (the CPU reference), on DEVICE pointers.
 * Precision follows the design: activations and frozen weights in bf16
 * (uint16_t storage seen from C, passed as void *), f32 accumulation inside
 * every kernel, f32 for LoRA parameters / gradients / Adam state, f32 for
 * the saved statistics (rstd, log-sum-exp) and double for the loss. Every
 * activation kernel also runs in f32 (dt = LC_CUDA_F32), which is what the
 * `compute_dtype: float32` check mode uses to compare with the CPU at 1e-5.
 *
 * This header never includes a CUDA header: C code (ops.c, the trainer, the
 * tests) sees only plain types. The .cu files implement it as extern "C".
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

#ifdef __cplusplus
extern "C" {
#endif

/* Element types on the device. Activations: F32 or BF16. Frozen weights:
 * any (F16 and NF4 are converted tile by tile before a GEMM). */
typedef enum lc_cuda_dtype {
    LC_CUDA_F32 = 0,
    LC_CUDA_BF16 = 1,
    LC_CUDA_F16 = 2,
    LC_CUDA_NF4 = 3,
} lc_cuda_dtype;

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
int lc_cuda_convert(lc_cuda_ctx *c, lc_cuda_dtype dst_dt, void *dst, lc_cuda_dtype src_dt,
                    const void *src, int64_t n);
/* Bytes of one element (NF4: 0, it is not addressable per element). */
size_t lc_cuda_dtype_size(lc_cuda_dtype dt);

/* ---------------------------------------------------------------- GEMM */

/* C[M,N] = alpha · op(A) · op(B) + beta · C, row-major like lc_k_gemm, through
 * cuBLASLt with f32 accumulation. (in_dt, out_dt) ∈ {(BF16, BF16), (BF16, F32),
 * (F32, F32)}; the F32 path is strict f32 (no TF32). Plans (matmul desc,
 * layouts, heuristic algo) are cached per shape, ld's, dtypes and pointer
 * alignment. */
int lc_cuda_gemm(lc_cuda_ctx *c, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                 float alpha, const void *A, int64_t lda, const void *B, int64_t ldb, float beta,
                 void *C, int64_t ldc, lc_cuda_dtype in_dt, lc_cuda_dtype out_dt);

/* GEMM plan cache counters since the context was made (for tests / logs). */
void lc_cuda_gemm_cache_stats(const lc_cuda_ctx *c, int64_t *hits, int64_t *misses);

/* ---------------------------------------------------------------- weights */

/* bitsandbytes NF4 (see autograd/nf4.h for the layout), device pointers:
 * blocks of `blocksize` values over the row-major flattened [rows, cols]
 * weight, two 4-bit codes a byte, FIRST element in the HIGH nibble; absmax
 * plain f32, or double-quantized: absmax[b] = nested_map[absmax_q[b]] ·
 * nested_absmax[b / nested_blocksize] + offset. */
typedef struct lc_cuda_nf4 {
    const uint8_t *codes;        /* [rows·cols / 2] */
    const float *absmax;         /* [n_blocks] or NULL when double-quantized */
    const uint8_t *absmax_q;     /* [n_blocks] */
    const float *nested_absmax;  /* [ceil(n_blocks / nested_blocksize)] */
    const float *nested_map;     /* [256] */
    int64_t blocksize;           /* 64 */
    int64_t nested_blocksize;    /* 256 */
    float offset;
} lc_cuda_nf4;

/* A frozen base-model matrix [rows = out, cols = in] on the device. */
typedef struct lc_cuda_weight {
    const void *data;            /* [rows, cols] in dtype; unused for NF4 */
    lc_cuda_dtype dtype;         /* F32, BF16, F16 or NF4 */
    int64_t rows, cols;
    lc_cuda_nf4 nf4;             /* NF4 only */
} lc_cuda_weight;

/* Rows [r0, r1) of W converted / dequantized into dst (dt: F32 or BF16,
 * row-major, cols wide). This is the NF4 dequantization kernel. */
int lc_cuda_weight_rows(lc_cuda_ctx *c, const lc_cuda_weight *W, int64_t r0, int64_t r1,
                        lc_cuda_dtype dt, void *dst);
/* Bytes of scratch the two weight matmuls need (0 when W is already dt). */
size_t lc_cuda_weight_scratch_bytes(const lc_cuda_weight *W, lc_cuda_dtype dt);
/* y[N,out] = beta · y + x[N,in] · Wᵀ (x, y in dt). */
int lc_cuda_weight_matmul(lc_cuda_ctx *c, lc_cuda_dtype dt, const void *x, int64_t N,
                          const lc_cuda_weight *W, float beta, void *y, void *scratch);
/* dx[N,in] += dy[N,out] · W. */
int lc_cuda_weight_matmul_grad(lc_cuda_ctx *c, lc_cuda_dtype dt, const void *dy, int64_t N,
                               const lc_cuda_weight *W, void *dx, void *scratch);

/* ---------------------------------------------------------------- pointwise / rows
 * Every pointer of the activation dtype dt is `void *`; statistics are f32. */

/* y[N,C] = x · rstd · w, rstd[N] = 1/sqrt(mean(x²) + eps) (rstd may be NULL). */
int lc_cuda_rmsnorm_fwd(lc_cuda_ctx *c, lc_cuda_dtype dt, const void *x, const void *w,
                        int64_t N, int64_t C, double eps, void *y, float *rstd);
/* dx[N,C] += ∂/∂x of rmsnorm given dy (w frozen). */
int lc_cuda_rmsnorm_bwd(lc_cuda_ctx *c, lc_cuda_dtype dt, const void *x, const void *w,
                        const float *rstd, const void *dy, int64_t N, int64_t C, void *dx);

/* y[n] = silu(g) · u. */
int lc_cuda_swiglu_fwd(lc_cuda_ctx *c, lc_cuda_dtype dt, const void *g, const void *u,
                       int64_t n, void *y);
/* dg[n] += dy · u · silu'(g); du[n] += dy · silu(g) (either may be NULL). */
int lc_cuda_swiglu_bwd(lc_cuda_ctx *c, lc_cuda_dtype dt, const void *g, const void *u,
                       const void *dy, int64_t n, void *dg, void *du);

/* y[n] = gelu_tanh(g) · u (lc_k_geglu_tanh_fwd: torch's tanh GELU). */
int lc_cuda_geglu_tanh_fwd(lc_cuda_ctx *c, lc_cuda_dtype dt, const void *g, const void *u,
                           int64_t n, void *y);
/* dg[n] += dy · u · gelu_tanh'(g); du[n] += dy · gelu_tanh(g) (either may be NULL). */
int lc_cuda_geglu_tanh_bwd(lc_cuda_ctx *c, lc_cuda_dtype dt, const void *g, const void *u,
                           const void *dy, int64_t n, void *dg, void *du);

/* HF rotate-half RoPE on x[N, heads, D], pos[N] (device int32), table
 * cos_sin[P, D] (device f32: first D/2 cos, last D/2 sin). dst = R·src or
 * Rᵀ·src when inverse; accumulate adds into dst; src may equal dst when
 * !accumulate. */
int lc_cuda_rope(lc_cuda_ctx *c, lc_cuda_dtype dt, const void *src, void *dst, int64_t N,
                 int heads, int D, const int32_t *pos, const float *cos_sin, bool inverse,
                 bool accumulate);

/* y[n] += a · x[n]. */
int lc_cuda_axpy(lc_cuda_ctx *c, lc_cuda_dtype dt, int64_t n, float a, const void *x, void *y);
/* out[n] = a[n] + b[n] (the residual add; out may alias a or b). */
int lc_cuda_add(lc_cuda_ctx *c, lc_cuda_dtype dt, int64_t n, const void *a, const void *b,
                void *out);
/* y[N,O] += bias[O] on every row. */
int lc_cuda_add_bias(lc_cuda_ctx *c, lc_cuda_dtype dt, int64_t N, int64_t O, const void *bias,
                     void *y);

/* x[N,C] = rows ids[N] (device int32) of E[V,C] (F32, BF16, F16 or NF4). */
int lc_cuda_embedding(lc_cuda_ctx *c, lc_cuda_dtype dt, const lc_cuda_weight *E,
                      const int32_t *ids, int64_t N, void *x);

/* dst[n] (+)= src[n] · keep/(1−p), keep from the same counter hash of
 * (seed, i) as lc_k_dropout: CPU and GPU draw the same mask for a seed
 * (test_cuda_ops checks it bit for bit, so a change on one side shows). */
int lc_cuda_dropout(lc_cuda_ctx *c, lc_cuda_dtype dt, const void *src, void *dst, int64_t n,
                    double p, uint64_t seed, bool accumulate);

/* ---------------------------------------------------------------- attention */

/* The fields of lc_attn_shape, with segment on the device. */
typedef struct lc_cuda_attn_shape {
    int64_t B, T;
    int H, KV, D;              /* D ≤ 128 */
    double scale;
    const int32_t *segment;    /* [B·T] device, or NULL */
    int64_t window;            /* 0 = none; key j seen by query i iff i − j < window */
    double softcap;            /* 0 = none; scores s ← softcap·tanh(s/softcap) before the mask */
} lc_cuda_attn_shape;

/* Largest head dim the attention kernels take. */
#define LC_CUDA_ATTN_MAX_D 128

/* Scratch bytes lc_cuda_attention_bwd needs (f32 rowwise dout·out). */
size_t lc_cuda_attention_scratch_bytes(const lc_cuda_attn_shape *s);
/* Causal GQA flash attention. q[B,T,H,D], k,v[B,T,KV,D] → out[B,T,H,D],
 * lse[B,H,T] (f32). */
int lc_cuda_attention_fwd(lc_cuda_ctx *c, lc_cuda_dtype dt, const lc_cuda_attn_shape *s,
                          const void *q, const void *k, const void *v, void *out, float *lse);
/* dq, dk, dv += gradients (any may be NULL), recomputing P from lse.
 * Deterministic: no atomics (dq per query tile, dk/dv per key tile). */
int lc_cuda_attention_bwd(lc_cuda_ctx *c, lc_cuda_dtype dt, const lc_cuda_attn_shape *s,
                          const void *q, const void *k, const void *v, const void *out,
                          const float *lse, const void *dout, void *dq, void *dk, void *dv,
                          void *scratch);

/* ---------------------------------------------------------------- loss */

/* Supervised rows per lm_head chunk for vocabulary V. */
int64_t lc_cuda_ce_chunk_rows(int64_t V);
size_t lc_cuda_ce_scratch_bytes(lc_cuda_dtype dt, int64_t N, int64_t C, const lc_cuda_weight *W);
/* Fused lm_head + cross-entropy over x[N,C] (dt), W[V,C], targets[N]
 * (device int32, −100 = ignored), logits soft-capped to softcap·tanh(z/softcap)
 * first when softcap > 0 (0 = none), as lc_k_lm_head_ce. *loss_sum = Σ token losses, *n_supervised
 * their count (either may be NULL). When dx is not NULL, dx[N,C] +=
 * grad_scale · ∂(Σ loss)/∂x. Per chunk of supervised rows: logits (f32) by
 * one cuBLASLt GEMM, a row kernel for lse / loss / softmax gradient in place,
 * dx by a second GEMM; [N,V] logits never exist. Synchronizes twice (the
 * supervised count, the loss); fails on a target outside [0, V). */
int lc_cuda_lm_head_ce(lc_cuda_ctx *c, lc_cuda_dtype dt, const void *x, int64_t N, int64_t C,
                       const lc_cuda_weight *W, const int32_t *targets, float grad_scale,
                       void *dx, void *scratch, double *loss_sum, int64_t *n_supervised,
                       double softcap);

/* ---------------------------------------------------------------- optimizer
 * Multi-tensor: each call takes n tensors (host arrays of device pointers and
 * sizes), any number of them (launched 32 at a time); with the flat params
 * buffer of the design that is a single tensor. f32 throughout. */

typedef struct lc_cuda_adamw_hparams {
    double beta1, beta2, eps, weight_decay;
} lc_cuda_adamw_hparams;

/* torch.optim.AdamW, exactly as lc_adamw_update for update number `step`
 * (≥ 1, already incremented): p ← p·(1 − lr·wd); m, v moments;
 * p ← p − (lr/(1−β1ᵗ)) · m / (√v/√(1−β2ᵗ) + ε). Bitwise equal to the CPU
 * (no FMA contraction). */
int lc_cuda_adamw_update(lc_cuda_ctx *c, int n, float *const *params,
                         const float *const *grads, float *const *m, float *const *v,
                         const int64_t *numel, const lc_cuda_adamw_hparams *hp, int64_t step,
                         double lr);
/* sqrt(Σ g²) over all n tensors, in double, deterministic (fixed reduction
 * order). *norm (host) gets it; NULL leaves it on the device only (no sync). */
int lc_cuda_grad_norm(lc_cuda_ctx *c, int n, const float *const *grads, const int64_t *numel,
                      double *norm);
/* torch clip_grad_norm_: g *= max_norm / (norm + 1e-6) when that is < 1
 * (max_norm ≤ 0: no clipping). The coefficient is computed on the device.
 * *norm (may be NULL) gets the norm before clipping (one sync). */
int lc_cuda_grad_clip(lc_cuda_ctx *c, int n, float *const *grads, const int64_t *numel,
                      double max_norm, double *norm);

/* ---------------------------------------------------------------- tests */

/* Test hook: shrinks the frozen-weight tile (elements) and the lm_head chunk
 * (rows) so small test shapes take the multi-tile / multi-chunk paths.
 * 0 restores the default. Process-wide; not for production use. */
void lc_cuda_debug_limits(int64_t weight_tile_elems, int64_t ce_chunk_rows);

#ifdef __cplusplus
}
#endif

#endif

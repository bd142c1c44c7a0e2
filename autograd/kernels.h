/* kernels.h — the numeric kernels behind autograd's ops, one signature each.
 *
 * These declarations ARE the signatures of every backend's kernel table
 * (backend.h lc_kernels): ops.c calls a kernel through the tape's backend;
 * nothing here knows about tapes. The CPU implementations live in
 * cpu/kernels_cpu.c (OpenBLAS GEMM, OpenMP over rows, f32 — or f64 in the
 * gradient-check build), compiled once per instruction-set level;
 * cpu/dispatch.c defines these functions as calls into the level chosen at
 * start-up (host code outside the tape — merge, generation — calls them
 * directly). The CUDA backend (cuda/backend_cuda.c) implements the same
 * signatures on device pointers; test_cuda_ops compares the two.
 *
 * Conventions: row-major; "+=" in a comment means the kernel accumulates;
 * shapes use the letters of tensor.h.
 *
 * Element types. A backend computes in one activation dtype (lc_backend.act:
 * f32 on the CPU, f32 or bf16 on CUDA). Every lc_real pointer below holds
 * elements of that dtype — activations, their gradients, tape scratch,
 * frozen norm weights and biases — EXCEPT the ones marked [f32], which are
 * f32 on every backend: LoRA parameters and their gradients, AdamW's state,
 * saved statistics (rstd, lse), RoPE's cos_sin table, DoRA's per-row
 * vectors, and the scratch the size queries count (lc_real elements, f32
 * sized). On the CPU the two are the same type (lc_real); on a bf16 backend
 * an activation pointer points at bf16 storage. A LoRA parameter enters an
 * activation GEMM as an activation-dtype copy (lc_k_to_act, what autocast
 * does to an f32 weight). */
#ifndef LC_KERNELS_H
#define LC_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* C[M,N] = alpha · op(A) · op(B) + beta · C, op = transpose when trans*. */
void lc_k_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
               lc_real alpha, const lc_real *A, int64_t lda, const lc_real *B,
               int64_t ldb, lc_real beta, lc_real *C, int64_t ldc);
/* C[M,N] += alpha · op(A) · op(B) into C [f32] (a LoRA parameter's
 * gradient), A and B activations, accumulated in f32. */
void lc_k_gemm_grad(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                    lc_real alpha, const lc_real *A, int64_t lda, const lc_real *B,
                    int64_t ldb, lc_real *C, int64_t ldc);
/* dst[n] (activation dtype) = src[n] [f32], rounded to nearest even. */
void lc_k_to_act(int64_t n, const lc_real *src, lc_real *dst);

/* A LoRA term that rides on a frozen-weight product (backend.h
 * linear_lora): forward y[N,out] += scale · a·wᵀ with a = x·Aᵀ [N, R] and
 * w = B [out, R]; backward dx[N,in] += scale · a·w with a = dy·B [N, R] and
 * w = A [R, in]. */
typedef struct lc_lora_term {
    const lc_real *a;  /* [N, R], row stride lda */
    int64_t lda;
    const lc_real *w;  /* [f32] B [out, R] or A [R, in] */
    int64_t R;
    lc_real scale;
} lc_lora_term;

/* [f32] elements of scratch the two weight kernels need for W (0 when W
 * is already in the activation dtype: it is used in place). */
size_t lc_k_weight_scratch(const lc_weight *W);
/* y[N,out] = beta · y + x[N,in] · Wᵀ, converting W tile by tile. */
void lc_k_weight_matmul(const lc_real *x, int64_t N, const lc_weight *W,
                        lc_real beta, lc_real *y, lc_real *scratch);
/* dx[N,in] = beta · dx + dy[N,out] · W (beta 0 or 1: 0 writes dx without
 * reading it, so a fresh dx needs no zeroing and the GEMM no second pass). */
void lc_k_weight_matmul_grad(const lc_real *dy, int64_t N, const lc_weight *W, lc_real beta,
                             lc_real *dx, lc_real *scratch);

/* y[N,C] = x · rstd · w, rstd[N] [f32] = 1/sqrt(mean(x²) + eps) (rstd may be NULL). */
void lc_k_rmsnorm_fwd(const lc_real *x, const lc_real *w, int64_t N, int64_t C,
                      double eps, lc_real *y, lc_real *rstd);
/* dx[N,C] += ∂/∂x of rmsnorm given dy (w is frozen). */
void lc_k_rmsnorm_bwd(const lc_real *x, const lc_real *w, const lc_real *rstd,
                      const lc_real *dy, int64_t N, int64_t C, lc_real *dx);

/* y[n] = silu(g) · u. */
void lc_k_swiglu_fwd(const lc_real *g, const lc_real *u, int64_t n, lc_real *y);
/* dg[n] += dy · u · silu'(g); du[n] += dy · silu(g); y[n] = silu(g) · u, the
 * forward recomputed in the same pass over g and u (for a LoRA A gradient:
 * ops.c keeps no MLP activation). Any of dg, du, y may be NULL. */
void lc_k_swiglu_bwd(const lc_real *g, const lc_real *u, const lc_real *dy,
                     int64_t n, lc_real *dg, lc_real *du, lc_real *y);

/* y[n] = gelu_tanh(g) · u, gelu_tanh(x) = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
 * (torch's gelu(approximate="tanh"), HF "gelu_pytorch_tanh": Gemma's GeGLU). */
void lc_k_geglu_tanh_fwd(const lc_real *g, const lc_real *u, int64_t n, lc_real *y);
/* dg[n] += dy · u · gelu_tanh'(g); du[n] += dy · gelu_tanh(g); y[n] =
 * gelu_tanh(g) · u recomputed in the same pass (as lc_k_swiglu_bwd; any may be NULL). */
void lc_k_geglu_tanh_bwd(const lc_real *g, const lc_real *u, const lc_real *dy,
                         int64_t n, lc_real *dg, lc_real *du, lc_real *y);

/* x[n] = cap · tanh(x / cap) in place (logit soft-capping); cap 0: no-op. */
void lc_k_softcap(lc_real *x, int64_t n, double cap);

/* HF rotate-half RoPE on x[N, heads, D] with per-token positions pos[N] and
 * a table cos_sin[P, D] [f32] (first D/2: cos, last D/2: sin of pos·inv_freq).
 * dst = R(pos) · src, or Rᵀ when inverse; accumulate adds into dst.
 * src may equal dst when !accumulate. */
void lc_k_rope(const lc_real *src, lc_real *dst, int64_t N, int heads, int D,
               const int32_t *pos, const lc_real *cos_sin, bool inverse,
               bool accumulate);

typedef struct lc_attn_shape {
    int64_t B, T;             /* batch rows, sequence */
    int H, KV, D;             /* query heads, kv heads, head dim */
    double scale;             /* usually 1/sqrt(D) */
    const int32_t *segment;   /* [B·T] packed-row ids or NULL: attend within a segment only;
                               * a segment is a contiguous run of one id (how packing lays rows) */
    int64_t window;           /* sliding window (0 = none): key j seen by query i iff i-j < window */
    int64_t past;             /* keys before the queries (decoding with a KV cache): k, v are
                               * [B, past+T, KV, D] and query t sits at key position past+t;
                               * needs segment NULL; forward only (backward asserts 0) */
    double softcap;           /* logit soft-capping (0 = none): s ← softcap·tanh(s/softcap) on
                               * the scaled scores, before the mask and softmax (Gemma 2: 50) */
} lc_attn_shape;

/* Scratch ([f32] elements) the attention kernels need. lse is [f32]. */
size_t lc_k_attention_scratch(const lc_attn_shape *s);
/* Causal GQA attention. q[B,T,H,D], k,v[B,past+T,KV,D] → out[B,T,H,D], lse[B,H,T]. */
void lc_k_attention_fwd(const lc_attn_shape *s, const lc_real *q, const lc_real *k,
                        const lc_real *v, lc_real *out, lc_real *lse, lc_real *scratch);
/* dq, dk, dv += gradients (recomputes probabilities from lse). */
void lc_k_attention_bwd(const lc_attn_shape *s, const lc_real *q, const lc_real *k,
                        const lc_real *v, const lc_real *out, const lc_real *lse,
                        const lc_real *dout, lc_real *dq, lc_real *dk, lc_real *dv,
                        lc_real *scratch);

/* Rows of x processed together by the fused lm_head + cross-entropy (at
 * most: its scratch holds that many rows of logits). */
int64_t lc_k_ce_chunk_rows(int64_t V);
/* The CPU head runs its GEMMs on a chunk's rows padded to a multiple of this. */
#define LC_CE_ROW_PAD 64
/* n rows padded as the CPU head pads them: up to a multiple of
 * LC_CE_ROW_PAD, but no more than the cap rows its scratch holds. */
static inline int64_t lc_ce_padded_rows(int64_t n, int64_t cap)
{
    int64_t padded = (n + LC_CE_ROW_PAD - 1) / LC_CE_ROW_PAD * LC_CE_ROW_PAD;
    return padded < cap ? padded : cap;
}
/* Rows per chunk when the CPU head splits n supervised rows into chunks of
 * at most cap: ceil(n / cap) chunks of equal size, padded (so 1020 rows at
 * cap 682 run as 2 x 512, not 682 + 338). */
static inline int64_t lc_ce_balanced_rows(int64_t n, int64_t cap)
{
    if (n <= 0 || cap <= 0)
        return cap > 0 ? cap : 1;
    int64_t chunks = (n + cap - 1) / cap;
    return lc_ce_padded_rows((n + chunks - 1) / chunks, cap);
}
/* Scratch ([f32] elements) of lc_k_lm_head_ce over N rows. */
size_t lc_k_ce_scratch(int64_t N, int64_t C, int64_t V, const lc_weight *W);
/* Fused lm_head + cross-entropy over x[N,C], W[V,C], targets[N] (−100 =
 * ignored), the logits z soft-capped first when softcap > 0: z ← softcap ·
 * tanh(z / softcap) (Gemma 2's final_logit_softcapping, 30). Returns Σ token losses (double). When dx is not NULL, also
 * dx[N,C] += grad_scale · ∂(Σ loss)/∂x — computed while each chunk of
 * logits is hot, so the [N,V] logits never exist. Only supervised rows are
 * computed at all. *n_supervised gets their count. */
double lc_k_lm_head_ce(const lc_real *x, int64_t N, int64_t C, const lc_weight *W,
                       const int32_t *targets, lc_real grad_scale, lc_real *dx,
                       int64_t *n_supervised, lc_real *scratch, double softcap);

/* x[N,C] = rows ids[N] of the embedding table E[V,C]. */
void lc_k_embedding(const lc_weight *E, const int32_t *ids, int64_t N, lc_real *x);

/* dst[n] (+)= src[n] · keep/(1−p), keep drawn from a counter-based hash of
 * (seed, i): the same seed gives the same mask, so backward regenerates it.
 * keep ⇔ (hash32(key ^ i) >> 8) ≥ ceil(p·2^24), key = the two halves of
 * splitmix64(seed) xor-ed, hash32 = the lowbias32 finaliser: every backend
 * must draw exactly this mask. */
void lc_k_dropout(const lc_real *src, lc_real *dst, int64_t n, double p,
                  uint64_t seed, bool accumulate);

/* y[n] += a · x[n]. */
void lc_k_axpy(int64_t n, lc_real a, const lc_real *x, lc_real *y);
/* y[n] = a[n] + b[n] (y may alias a or b). */
void lc_k_add(int64_t n, const lc_real *a, const lc_real *b, lc_real *y);
/* y[n] = s · x[n] (y may alias x). */
void lc_k_scale(int64_t n, lc_real s, const lc_real *x, lc_real *y);
/* y[n] = a[n] / b[n], all three [f32] (DoRA's per-row scale m / c). */
void lc_k_div(int64_t n, const lc_real *a, const lc_real *b, lc_real *y);
/* y[N,O] += bias[O] on every row. */
void lc_k_add_bias(int64_t N, int64_t O, const lc_real *bias, lc_real *y);
/* Columns [c0, c0 + w) of wide[N, ld]: part[N, w] = those columns, or, when
 * add, those columns += part. */
void lc_k_cols(lc_real *wide, int64_t N, int64_t ld, int64_t c0, int64_t w, lc_real *part,
               bool add);

/* Row moves of a mixture-of-experts block (autograd/ops_moe.c): expert e's
 * rows are gathered from the token rows, and its outputs weighted back
 * into them. idx[n] (row numbers) and slot[n] (indices into w) are int32
 * in the backend's memory; a kernel that adds into rows chosen by idx needs
 * distinct idx (the rows of one expert are distinct tokens), so no two of
 * its rows write the same place and no atomics are needed. w NULL means a
 * weight of 1 (slot unused). */
/* out[n, C]: row i = x[idx[i], :]. */
void lc_k_gather_rows(const lc_real *x, const int32_t *idx, int64_t n, int64_t C,
                      lc_real *out);
/* dst[idx[i], :] += w[slot[i]] · src[i, :] for src [n, C]. */
void lc_k_scatter_add_rows(const lc_real *src, const int32_t *idx, const lc_real *w,
                           const int32_t *slot, int64_t n, int64_t C, lc_real *dst);
/* dst[i, :] += w[slot[i]] · src[idx[i], :] for dst [n, C]. */
void lc_k_gather_add_rows(const lc_real *src, const int32_t *idx, const lc_real *w,
                          const int32_t *slot, int64_t n, int64_t C, lc_real *dst);
/* dw[slot[i]] += Σ_c a[idx[i], c] · b[i, c] for b [n, C], each sum in double
 * (slot distinct): the routing weights' gradient (activation dtype, as the
 * routing weights). */
void lc_k_row_dots(const lc_real *a, const int32_t *idx, const lc_real *b, const int32_t *slot,
                   int64_t n, int64_t C, lc_real *dw);

/* AdamW's hyper-parameters (torch.optim.AdamW's names). */
typedef struct lc_adamw_hparams {
    double beta1, beta2, eps, weight_decay;
} lc_adamw_hparams;
/* One AdamW update of p[n] with gradients g[n] and moments m[n], v[n] at
 * rate lr, update number step (≥ 1, already counted): torch's kernel, as
 * optim/adamw.h describes; every backend rounds exactly the same. All [f32]. */
void lc_k_adamw(int64_t n, lc_real *p, const lc_real *g, lc_real *m, lc_real *v,
                const lc_adamw_hparams *hp, int64_t step, double lr);
/* Σ g[n]² [f32] accumulated in double (the gradient norm's square). */
double lc_k_sum_squares(int64_t n, const lc_real *g);

/* DoRA (PEFT's DoraLinearLayer). Its per-row vectors (c, g, m, dm) and
 * dora_norm's A, B are [f32]. Scratch ([f32] elements) lc_k_dora_norm
 * needs for W: one tile of rows. */
size_t lc_k_dora_norm_scratch(const lc_weight *W);
/* c[out] = ‖W[o,:] + s·(B·A)[o,:]‖₂ per output row, W[out,in] converted
 * tile by tile, B[out,R]·A[R,in] formed for the tile's rows by a GEMM;
 * squares summed in double. */
void lc_k_dora_norm(const lc_weight *W, const lc_real *A, const lc_real *B, int64_t R,
                    lc_real s, lc_real *c, lc_real *scratch);
/* y[N,O] += (g[o] − 1) · u[n,o] + g[o] · v[n,o]  (g = m/c, u the base
 * product, v the scaled LoRA product). */
void lc_k_dora_combine(int64_t N, int64_t O, const lc_real *g, const lc_real *u,
                       const lc_real *v, lc_real *y);
/* out[N,O] = dy[n,o] · (g[o] + shift). */
void lc_k_col_scale(int64_t N, int64_t O, const lc_real *dy, const lc_real *g,
                    lc_real shift, lc_real *out);
/* dm[O] += Σ_n dy[n,o] · u[n,o] / c[o] (the magnitude's gradient). */
void lc_k_dora_mag_grad(int64_t N, int64_t O, const lc_real *dy, const lc_real *u,
                        const lc_real *c, lc_real *dm);

#ifdef __cplusplus
}
#endif

#endif

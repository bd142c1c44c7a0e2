/* gemm_bf16.h — the CPU's bfloat16 GEMMs: the frozen-weight products of a
 * run with compute_dtype: bfloat16 on the CPU.
 *
 * What is rounded: both inputs of every frozen-weight GEMM (the activation
 * and the weight, to bf16, round-to-nearest-even, as PyTorch's CPU autocast
 * does for a linear) and of attention's products (q, k, v, the
 * probabilities, dO and the scores' gradient: autocast runs
 * scaled_dot_product_attention in bf16 too); products are exact in f32 and
 * accumulate in f32, and the outputs stay f32; and the two LoRA terms that
 * add into a frozen product's output, s·xa·Bᵀ into y and s·dxa·A into dx
 * (s·xa or s·dxa, and B or A: autocast runs the LoRA linears in bf16 too),
 * which lc_cpu_linear_lora_bf16 folds into that GEMM. Everything else — the
 * LoRA parameters' gradients and the products that make xa and dxa, norms,
 * the softmax, the loss, the optimizer — stays f32 (activations are f32 on
 * the CPU either way: lc_backend.act is F32, only these GEMMs change).
 *
 * Who computes them (the "engine"):
 *   onednn   oneDNN's matmul primitive (Debian's libdnnl, the library
 *            PyTorch itself uses on the CPU): AMX or AVX512-BF16 tiles,
 *            chosen when the CPU has bf16 units.
 *   emulate  the same rounding, products through the f32 GEMM (OpenBLAS)
 *            on the rounded values — the same numbers up to summation
 *            order, on any CPU: how tests and CI check the bf16 path on
 *            machines without bf16 units.
 *   off      no bf16 GEMMs: a bfloat16 run falls back to float32 (and says
 *            so) — what a CPU without bf16 units gets.
 * LORAC_CPU_BF16 (auto | onednn | emulate | off) forces one; auto is onednn
 * when oneDNN reports AMX or AVX512-BF16 for this CPU (what oneDNN reports
 * is capped by its own ONEDNN_MAX_CPU_ISA: that variable, or
 * LORAC_CPU_BF16=off, is how a machine with bf16 units is made to take
 * the fallback), else off.
 *
 * Threads: the GEMMs use the process's OpenMP threads; call them from
 * outside a parallel region, from one thread at a time (they keep one
 * process-wide buffer for the rounded activations). */
#ifndef LC_CPU_GEMM_BF16_H
#define LC_CPU_GEMM_BF16_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/error.h"
#include "autograd/kernels.h"
#include "autograd/tensor.h"

#define LC_CPU_BF16_ENV "LORAC_CPU_BF16"
/* auto | on | off: whether a group's linears share GEMMs (gemm_bf16.c,
 * "a group's linears in shared GEMMs"); read with the engine. */
#define LC_CPU_BF16_GROUPS_ENV "LORAC_CPU_BF16_GROUPS"
/* auto | on | off: whether a LoRA term rides in its frozen GEMM as R more
 * K columns (auto: where that moves fewer bytes, gemm_bf16.c's fold_term;
 * on: every bf16 weight taken whole; off: never, the term is its own
 * GEMM); read with the engine. Groups share folded GEMMs only. */
#define LC_CPU_BF16_FOLD_ENV "LORAC_CPU_BF16_FOLD"

typedef enum lc_cpu_bf16_engine {
    LC_CPU_BF16_OFF,
    LC_CPU_BF16_ONEDNN,
    LC_CPU_BF16_EMULATE,
} lc_cpu_bf16_engine;

/* The engine for this process (from LC_CPU_BF16_ENV and the CPU), chosen
 * once; fails when the variable names no engine, or onednn where oneDNN
 * cannot run bf16 matmuls on this CPU. `why` (may be NULL) gets one line
 * on how it was chosen, e.g. "oneDNN 2.6.3, avx512_core_amx". */
int lc_cpu_bf16_engine_select(lc_cpu_bf16_engine *engine, char *why, size_t n, lc_error *err);
/* The engine and the line `why` got at the last selection (OFF and "not
 * selected" before any). Whether the CPU has bf16 units and which oneDNN
 * implementation ran: lc_onednn_bf16_units, lc_onednn_last_impl. */
lc_cpu_bf16_engine lc_cpu_bf16_engine_current(void);
const char *lc_cpu_bf16_engine_why(void);
/* "onednn", "emulate", "off". */
const char *lc_cpu_bf16_engine_name(lc_cpu_bf16_engine e);

/* dst[n] = src[n] rounded to bf16 (round-to-nearest-even; NaN stays NaN). */
void lc_cpu_round_bf16(const float *src, int64_t n, uint16_t *dst);

/* C[M,N] (f32) = op(A)·op(B) + beta·C (beta 0 or 1) with A, B bf16 (op =
 * transpose when trans_*), row-major, f32 accumulation, on oneDNN; a
 * problem oneDNN refuses is widened and run on the f32 GEMM (warned once).
 * The emulate engine never comes here: it rounds in lc_real. */
void lc_cpu_gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                      const uint16_t *A, int64_t lda, const uint16_t *B, int64_t ldb, float beta,
                      float *C, int64_t ldc);

/* C[M,N] = alpha·op(A)·op(B) + beta·C (beta 0 or 1) on bf16-rounded A and B,
 * f32 accumulation, on one thread (attention's blocks call it inside their
 * parallel regions): small_gemm_bf16.h's kernel (on AMX where the CPU has
 * it, else AVX512-BF16) where the engine is onednn and the CPU has
 * AVX512-BF16 (and no lower kernel level is forced), else the emulate engine's rounding with the products on the
 * f32 GEMM — the same values up to summation order. */
void lc_cpu_attn_gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                           lc_real alpha, const lc_real *A, int64_t lda, const lc_real *B,
                           int64_t ldb, lc_real beta, lc_real *C, int64_t ldc);
/* Where lc_cpu_attn_gemm_bf16 runs now: "lorac's AMX kernel", "lorac's
 * AVX512-BF16 kernel" or "emulated on the f32 GEMM". */
const char *lc_cpu_attn_gemm_bf16_kernel(void);

/* Whether the weight products' input gradient dy·W (W not transposed,
 * k of its rows at once) runs on oneDNN's BLAS-like GEMM (onednn.h
 * lc_onednn_gemm) instead of its matmul primitive: where oneDNN's bf16
 * units are AVX512-BF16, and on AMX for k of at least 16384 (the lm_head). */
bool lc_cpu_bf16_grad_on_gemm_api(int64_t k);
/* Which dy·W products run there, for reports ("dy·W", "dy·W through
 * weights of >= 16384 rows"), or NULL for none. */
const char *lc_cpu_bf16_grad_gemm_api_use(void);

/* The kernels.h weight entries of the bf16 CPU backend (same contracts as
 * lc_k_weight_scratch / lc_k_weight_matmul / lc_k_weight_matmul_grad,
 * with the rounding above), on the process's engine. */
size_t lc_cpu_weight_scratch_bf16(const lc_weight *W);
void lc_cpu_weight_matmul_bf16(const lc_real *x, int64_t N, const lc_weight *W, lc_real beta,
                               lc_real *y, lc_real *scratch);
void lc_cpu_weight_matmul_grad_bf16(const lc_real *dy, int64_t N, const lc_weight *W,
                                    lc_real beta, lc_real *dx, lc_real *scratch);

/* The bf16 backend's linear_lora entries (backend.h), for n linears on one
 * input: each frozen product with its LoRA term, y_i = beta·y_i + x·W_iᵀ +
 * s_i·xa_i·B_iᵀ and dx = beta·dx + Σ_i dy_i·W_i + s_i·dxa_i·A_i, the terms'
 * operands (s·xa or s·dxa, and B or A) rounded to bf16 as autocast rounds a
 * LoRA linear's. On oneDNN with a bf16 weight taken whole, a term rides in
 * its frozen GEMM as R more K columns (a copy of W with B's columns or A's
 * rows appended) where that copy moves fewer bytes than the pass over y or
 * dx it saves, and the group's folded GEMMs are shared where this CPU gains
 * by it (forward: linears of one shape batched, their y adjacent; backward:
 * one product over the group; lc_cpu_bf16_groups_rule); otherwise a term is
 * its own small GEMM on the rounded operands (written first on AMX, the
 * frozen product accumulating onto it). The emulate engine: the same
 * rounding, products on the f32 GEMM. */
void lc_cpu_linear_lora_bf16(const lc_real *x, int64_t N, int n, const lc_weight *const *W,
                             const lc_lora_term *lt, lc_real beta, lc_real *const *y,
                             lc_real *scratch);
void lc_cpu_linear_lora_grad_bf16(const lc_real *const *dy, int64_t N, int n,
                                  const lc_weight *const *W, const lc_lora_term *lt, lc_real beta,
                                  lc_real *dx, lc_real *scratch);
/* Where a group's folded GEMMs are shared on this process's engine and
 * CPU, for reports ("forward batched by shape, backward one product up to
 * K 2048"), or NULL where they never are. */
const char *lc_cpu_bf16_groups_rule(void);
/* Where a LoRA term rides in its frozen GEMM on this process's engine, for
 * reports ("where 2·rows > k + R"), or NULL where it never does. */
const char *lc_cpu_bf16_fold_rule(void);

/* For a caller that produces dy itself and can write it rounded as it goes
 * (the fused lm_head's softmax: no f32 gradient written and read back): the
 * backward product dx[N,in] = beta·dx + dy·W on dy [N, W->rows] already in
 * bf16, row stride ld ≥ W->rows. The onednn engine only (emulate rounds into
 * lc_real). */
void lc_cpu_weight_matmul_grad_bf16_rounded(const uint16_t *dy, int64_t ld, int64_t N,
                                            const lc_weight *W, lc_real beta, lc_real *dx,
                                            lc_real *scratch);

#endif

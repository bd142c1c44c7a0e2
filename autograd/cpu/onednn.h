/* onednn.h — oneDNN's matmul primitive for the CPU's GEMMs.
 *
 * oneDNN (Debian's libdnnl, the library PyTorch itself runs its CPU GEMMs
 * on) runs the products of the steps outside attention's parallel blocks:
 * the frozen-weight GEMMs (linears, lm_head) and the LoRA products, in
 * float32, and the frozen-weight ones in bfloat16 (AMX or AVX512-BF16
 * tiles: gemm_bf16.h). The matmul primitive runs them, except the input
 * gradient through a frozen weight (dy·W) and the other products of an
 * untransposed B, which its brgemm runs slowly and oneDNN's BLAS-like GEMM
 * does not (lc_onednn_gemm), which also runs attention's f32 blocks, one
 * per thread. OpenBLAS keeps the rest (products of < 16 rows, MoE shapes
 * past the primitive cache's bound) and everything when oneDNN is
 * missing.
 *
 * Why for f32 too: its brgemm kernels run the skinny LoRA products about
 * 2x faster than OpenBLAS 0.3.21 (x·Aᵀ at [1024,576]x[576,16]: 125 vs 66
 * GFLOP/s) and the weight products' forward 20-30% faster with the weights
 * in cache. Whole SmolLM-135M steps on 2 AVX-512 cores, alternating
 * (2026-11-30): medians 240 vs 230 tokens/s over 5 rounds, oneDNN ahead in
 * 4, fastest step 3.56 vs 3.85 s; with both capped to AVX2
 * (ONEDNN_MAX_CPU_ISA=AVX2, OPENBLAS_CORETYPE=Haswell): 165 vs 159, fastest
 * 5.23 vs 5.83 s.
 *
 * libdnnl.so.2 is opened with dlopen on first use, so a machine without it
 * still runs (lc_onednn_status says why), and a matmul primitive is created
 * once per GEMM shape and kept in a small cache.
 *
 * LORAC_CPU_GEMM = auto (default: oneDNN when it loads) | onednn |
 * openblas chooses the f32 library. Either oneDNN choice is OpenBLAS while
 * LORAC_CPU_ISA forces a kernel level below the CPU's: oneDNN picks its own
 * instructions, and a forced level is how lorac runs under valgrind. */
#ifndef LC_CPU_ONEDNN_H
#define LC_CPU_ONEDNN_H

#include <stdbool.h>
#include <stdint.h>

#include "autograd/dtype.h"
#include "autograd/error.h"

#define LC_CPU_GEMM_ENV "LORAC_CPU_GEMM"

/* Whether libdnnl loaded (never in the gradient-check build). */
bool lc_onednn_available(void);
/* "oneDNN 2.6.3", or why it is not available. */
const char *lc_onednn_status(void);
/* The bf16 units oneDNN uses on this CPU ("AMX", "AVX512-BF16"; what it
 * reports is capped by ONEDNN_MAX_CPU_ISA), or NULL. */
const char *lc_onednn_bf16_units(void);
/* The implementation the last matmul on inputs of dtype (F32 or BF16) ran
 * ("brg:avx512_core_amx", …), "" before any. */
const char *lc_onednn_last_impl(lc_dtype dtype);

/* C[M,N] (f32) = alpha·op(A)·op(B), + C when accumulate; A and B of dtype (F32 or
 * BF16), row-major with leading dimensions lda, ldb, ldc; op = transpose
 * when trans_*. False when oneDNN is not available or has no primitive for
 * this problem (the caller computes it another way). A primitive costs
 * ~0.5 ms to create, so a problem whose shape differs only in M from
 * LC_ONEDNN_MAX_M_VARIANTS cached ones (an MoE expert's token count,
 * changing every step) gets no primitive of its own: with optional it is
 * refused, else it runs on one primitive of runtime M for all of them
 * (oneDNN's gemm-based kernel instead of brgemm). One thread at a time,
 * outside parallel regions (oneDNN runs the process's OpenMP threads). */
#define LC_ONEDNN_MAX_M_VARIANTS 16
bool lc_onednn_matmul(lc_dtype dtype, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                      float alpha, const void *A, int64_t lda, const void *B, int64_t ldb,
                      bool accumulate, float *C, int64_t ldc, bool optional);

/* The same product for count problems at once, A, B and C of problem b at
 * b·sa, b·sb and b·sc elements from A, B and C (one primitive, one pass of
 * the threads over all of them: a group's linears of one shape, q/k/v's
 * k and v or gate and up, gemm_bf16.c). */
typedef struct lc_onednn_batch {
    int64_t count, sa, sb, sc;
} lc_onednn_batch;
bool lc_onednn_matmul_batch(lc_dtype dtype, const lc_onednn_batch *batch, bool trans_a,
                            bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                            const void *A, int64_t lda, const void *B, int64_t ldb,
                            bool accumulate, float *C, int64_t ldc, bool optional);

/* C[M,N] (f32) = alpha·op(A)·op(B) + beta·C (beta 0 or 1) on oneDNN's
 * BLAS-like GEMM (dnnl_sgemm; dnnl_gemm_bf16bf16f32 for A and B of dtype
 * BF16), whose jit kernels, unlike the matmul primitive's brgemm, read a B
 * that is not transposed at full speed: the input gradient dy·W through a
 * frozen weight runs here (bf16: where the units are AVX512-BF16,
 * gemm_bf16.c), and the f32 products of such a B (kernels_cpu.c). Inside
 * the SmolLM-135M step on 2 Zen 5 cores (2026-12-02): bf16, the lm_head's
 * [341,49152]·[49152,576] 0.090-0.094 → 0.075 s a step (brgemm 660, this
 * 805 GFLOP/s isolated), k/v's 0.024 → 0.016 s, the others equal; f32, all
 * dy·W together 1.45-1.53 s → 0.64-0.67 s a step against OpenBLAS with its
 * Haswell kernels, equal against its SkylakeX ones (0.68-0.73 vs
 * 0.62-0.68), and 1.31-1.36 vs 1.40-1.42 s with both capped to AVX2.
 * Row-major; any leading dimensions. False when oneDNN is not available
 * (or, for bf16, does not export that function). Callable from inside a
 * parallel region, where it runs on the calling thread. */
bool lc_onednn_gemm(lc_dtype dtype, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                    float alpha, const void *A, int64_t lda, const void *B, int64_t ldb, float beta,
                    float *C, int64_t ldc);

/* Chooses the library of the f32 weight GEMMs now (from LC_CPU_GEMM_ENV);
 * fails on an unknown value or `onednn` without oneDNN. Calling it again
 * re-reads the environment; without a call the first GEMM chooses (a bad
 * value then falls back to auto, said on stderr). */
int lc_cpu_gemm_select(lc_error *err);
/* Whether the f32 GEMMs run on oneDNN. */
bool lc_cpu_gemm_onednn(void);

#endif

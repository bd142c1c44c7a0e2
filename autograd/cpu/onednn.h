/* onednn.h — oneDNN's matmul primitive for the CPU's frozen-weight GEMMs.
 *
 * oneDNN (Debian's libdnnl, the library PyTorch itself runs its CPU GEMMs
 * on) runs the products of activations with frozen weights — the linears
 * and the lm_head — in bfloat16 (AMX or AVX512-BF16 tiles: gemm_bf16.h),
 * and in float32 when asked (LORAC_CPU_GEMM=onednn). Everything else stays
 * on OpenBLAS.
 *
 * float32 stays on OpenBLAS by default: oneDNN's brgemm ran the SmolLM
 * step's shapes 20-30% faster than OpenBLAS 0.3.21 with the weights in
 * cache (275-305 vs 220-238 GFLOP/s on 2 AVX-512 cores), but with the
 * weights streamed from memory as a step reads them, and in whole steps,
 * no difference stood out of this machine's noise (2026-11-30).
 * scripts/bench_cpu.sh can time both.
 *
 * libdnnl.so.2 is opened with dlopen on first use, so a float32 run never
 * maps it and a machine without it still runs (lc_onednn_status says why),
 * and a matmul primitive is created once per GEMM shape and kept in a
 * small cache.
 *
 * LORAC_CPU_GEMM = auto (default: OpenBLAS) | openblas | onednn chooses the
 * library of the f32 weight GEMMs; onednn is refused where libdnnl does
 * not load, and ignored (OpenBLAS) while LORAC_CPU_ISA forces a kernel
 * level below the CPU's (oneDNN picks its own instructions, and a forced
 * level is how lorac runs under valgrind). */
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
/* The implementation the last matmul ran ("brg:avx512_core_amx", …), "" before any. */
const char *lc_onednn_last_impl(void);

/* C[M,N] (f32) = op(A)·op(B), + C when accumulate; A and B of dtype (F32 or
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
                      const void *A, int64_t lda, const void *B, int64_t ldb, bool accumulate,
                      float *C, int64_t ldc, bool optional);

/* Chooses the library of the f32 weight GEMMs now (from LC_CPU_GEMM_ENV);
 * fails on an unknown value or `onednn` without oneDNN. Calling it again
 * re-reads the environment; without a call the first GEMM chooses (a bad
 * value then falls back to auto, said on stderr). */
int lc_cpu_gemm_select(lc_error *err);
/* Whether the f32 weight GEMMs run on oneDNN. */
bool lc_cpu_gemm_onednn(void);
/* One line on that choice: "oneDNN 2.6.3" or "OpenBLAS" and why. */
const char *lc_cpu_gemm_describe(void);

#endif

/* small_gemm_bf16.h — a one-thread bf16 GEMM for attention's blocks, on
 * AVX512-BF16 (VDPBF16PS) or, where the CPU has it, AMX (TDPBF16PS).
 *
 * Why our own: attention's products are small (a block of G·32 query rows
 * against at most T keys, head dim 64: [96, 256]·[256, 64] and the like),
 * run many at once, one per OpenMP thread, inside the attention kernels'
 * parallel regions. oneDNN's matmul primitive costs 15-95 µs a call at
 * those shapes (its small-shape paths, measured 2026-12-01 on 2 Zen 5
 * cores: 67-283 GFLOP/s bf16), and OpenBLAS has no bf16 GEMM. Packing both
 * operands (which is where they are rounded to bf16) and one register-
 * blocked kernel of 8 rows × 32 columns cover every transpose the forward
 * and backward need. On AMX the same packed operands feed tiles, blocks of
 * 32 × 32 outputs: attention's products are the part of the step that
 * VDPBF16PS left slowest there (2 Xeon cores with AMX, SmolLM-135M step,
 * 2026-12-02: attention 0.29 s of a 1.34 s step, 70% of it in the
 * VDPBF16PS kernel).
 *
 * Numbers: both inputs rounded to bf16 (round-to-nearest-even, as
 * lc_f32_to_bf16: the same values the emulate engine of gemm_bf16.h
 * multiplies), products exact in f32, sums in f32 — equal to an f32 GEMM
 * on the rounded inputs up to summation order. */
#ifndef LC_CPU_SMALL_GEMM_BF16_H
#define LC_CPU_SMALL_GEMM_BF16_H

#include <stdbool.h>
#include <stdint.h>

/* Whether this CPU (and OS) runs lc_cpu_small_gemm_bf16: AVX512-BF16. */
bool lc_cpu_small_gemm_bf16_supported(void);

/* `off` keeps lc_cpu_small_gemm_bf16 on VDPBF16PS where the CPU has AMX. */
#define LC_CPU_AMX_ENV "LORAC_CPU_AMX"

/* Chooses the units lc_cpu_small_gemm_bf16 runs on now: AMX where the CPU
 * has AMX-BF16, the OS lets this process use its tiles (asked for here),
 * LC_CPU_AMX_ENV is not `off` and no lower kernel level is forced
 * (lc_cpu_isa_forced); else AVX512-BF16. Returns the name, as
 * lc_cpu_small_gemm_bf16_units. Call it outside parallel regions (the bf16
 * engine's selection does); until then the kernel runs on AVX512-BF16. */
const char *lc_cpu_small_gemm_bf16_select(void);
/* "AMX" or "AVX512-BF16": the units chosen at the last selection. */
const char *lc_cpu_small_gemm_bf16_units(void);
/* Whether this CPU and OS could run it on AMX (whatever was chosen). */
bool lc_cpu_small_gemm_bf16_amx_present(void);

/* dst[n] = src[n] rounded to bf16, the same bits as lc_f32_to_bf16
 * (round-to-nearest-even, a NaN kept quiet, subnormals kept), 16 lanes at
 * a time: 3x the baseline loop (1024 x 1536 floats on 2 Zen 5 cores: 64-75
 * against 200-230 us). On the process's OpenMP threads from n ≥ par_min.
 * Only where lc_cpu_small_gemm_bf16_supported(). */
void lc_cpu_round_bf16_avx512(const float *src, int64_t n, uint16_t *dst, int64_t par_min);
/* The same on a block: dst[r·ldd + c] = scale·src[r·lds + c] rounded, for
 * rows × cols (scale 1 leaves the values as they are); from rows·cols ≥
 * par_min on the process's threads, a row each. */
void lc_cpu_round_bf16_rows_avx512(const float *src, int64_t rows, int64_t cols, int64_t lds,
                                   float scale, uint16_t *dst, int64_t ldd, int64_t par_min);

/* C[M,N] = alpha·op(A)·op(B) + beta·C (beta 0 or 1), f32 in and out, the
 * products on bf16-rounded inputs; row-major, op = transpose when trans_*.
 * One thread; callable from inside a parallel region (each thread packs
 * into its own buffers). Only where lc_cpu_small_gemm_bf16_supported(). */
void lc_cpu_small_gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                            float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                            float beta, float *C, int64_t ldc);

#endif

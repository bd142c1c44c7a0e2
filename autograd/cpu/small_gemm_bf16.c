/* small_gemm_bf16.c — one-thread bf16 GEMM on AVX512-BF16 (see
 * small_gemm_bf16.h).
 *
 * Layout: op(A) is packed as rows of K2 = ceil(K/2) bf16 pairs (uint32:
 * element 2p in the low half, 2p+1 in the high half, as VDPBF16PS pairs
 * them), padded with zero rows to a multiple of MR; op(B) as panels of NR
 * columns, each [K2][NR] pairs (the "VNNI" layout), zero columns past N. A
 * tile of MR × NR outputs lives in 16 zmm accumulators; each step of the
 * kernel loads one pair-row of the B panel (two zmm), broadcasts one pair
 * of each A row and issues 16 VDPBF16PS. This file is compiled for the
 * baseline; only its target-attributed functions use AVX-512. */
#include "autograd/cpu/small_gemm_bf16.h"

#include <string.h>

#include "autograd/cpu/dispatch.h"
#include "autograd/dtype.h"
#include "autograd/error.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define MR 8  /* rows of a tile */
#define NR 32 /* columns of a tile: two zmm of f32 */
#define TARGET_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

bool lc_cpu_small_gemm_bf16_supported(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512bf16");
}

/* The first n of 16 lanes (none for n ≤ 0, all for n ≥ 16). */
static inline __mmask16 lanes_mask(int64_t n)
{
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* 16 floats rounded to bf16 as lc_f32_to_bf16 does (round-to-nearest-even,
 * a NaN kept quiet), one per 32-bit lane, in its low half. */
TARGET_BF16 static inline __m512i round16(__m512 x)
{
    const __m512i u = _mm512_castps_si512(x);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i bias = _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff));
    const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, bias), 16);
    const __m512i mag = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(mag, _mm512_set1_epi32(0x7f800000));
    return _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
}

TARGET_BF16 void lc_cpu_round_bf16_avx512(const float *src, int64_t n, uint16_t *dst,
                                          int64_t par_min)
{
    const int64_t blocks = (n + 15) / 16;
#pragma omp parallel for schedule(static) if (n >= par_min)
    for (int64_t b = 0; b < blocks; b++) {
        int64_t i = 16 * b;
        __mmask16 m = lanes_mask(n - i);
        __m256i h = _mm512_cvtepi32_epi16(round16(_mm512_maskz_loadu_ps(m, src + i)));
        _mm256_mask_storeu_epi16(dst + i, m, h);
    }
}

/* n ≤ 16 floats (the rest zero) as rounded bf16, one per lane. */
TARGET_BF16 static inline __m512i load_round(const float *p, int64_t n)
{
    return round16(_mm512_maskz_loadu_ps(lanes_mask(n), p));
}

/* Pairs (lo[l], hi[l]) of two rounded vectors: lo in the low half. */
TARGET_BF16 static inline __m512i pairs(__m512i lo, __m512i hi)
{
    return _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
}

/* 2·n ≤ 32 consecutive floats (the rest zero) as n pairs, one per lane. */
TARGET_BF16 static inline __m512i load_pairs(const float *p, int64_t n2)
{
    __m256i lo = _mm512_cvtepi32_epi16(load_round(p, n2));
    __m256i hi = _mm512_cvtepi32_epi16(load_round(p + 16, n2 - 16));
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

/* Transposes the 16 × 16 block of 32-bit lanes in r[16] in place. */
TARGET_BF16 static void transpose16(__m512i r[16])
{
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    /* each 128-bit lane now holds a 4x4 block; move the blocks */
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
        r[i + 4] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0x88);
        r[i + 12] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0xdd);
    }
}

/* ap[Mp][K2] = op(A) as rounded pairs, rows M..Mp zero. */
TARGET_BF16 static void pack_a(bool trans, int64_t M, int64_t K, const float *A, int64_t lda,
                               int64_t Mp, int64_t K2, uint32_t *restrict ap)
{
    if (!trans) { /* a row of A is a row of pairs */
        for (int64_t i = 0; i < M; i++)
            for (int64_t p = 0; p < K2; p += 16)
                _mm512_mask_storeu_epi32(ap + i * K2 + p, lanes_mask(K2 - p),
                                         load_pairs(A + i * lda + 2 * p, K - 2 * p));
    } else { /* op(A)[i][k] = A[k·lda + i]: 16 rows × 16 pairs at a time, transposed */
        __m512i r[16];
        for (int64_t i0 = 0; i0 < M; i0 += 16) {
            int64_t ni = M - i0 < 16 ? M - i0 : 16;
            for (int64_t p0 = 0; p0 < K2; p0 += 16) {
                int64_t np = K2 - p0 < 16 ? K2 - p0 : 16;
                for (int64_t q = 0; q < 16; q++) {
                    int64_t k = 2 * (p0 + q);
                    r[q] = q >= np ? _mm512_setzero_si512()
                                   : pairs(load_round(A + k * lda + i0, ni),
                                           k + 1 < K ? load_round(A + (k + 1) * lda + i0, ni)
                                                     : _mm512_setzero_si512());
                }
                transpose16(r);
                for (int64_t ii = 0; ii < ni; ii++)
                    _mm512_mask_storeu_epi32(ap + (i0 + ii) * K2 + p0, lanes_mask(np), r[ii]);
            }
        }
    }
    memset(ap + M * K2, 0, (size_t)((Mp - M) * K2) * sizeof *ap);
}

/* bp[panels][K2][NR] = op(B) as rounded pairs, columns past N zero. */
TARGET_BF16 static void pack_b(bool trans, int64_t N, int64_t K, const float *B, int64_t ldb,
                               int64_t panels, int64_t K2, uint32_t *restrict bp)
{
    const int64_t Np = panels * NR;
    if (!trans) { /* op(B)[k][j] = B[k·ldb + j]: rows 2p and 2p+1 of B make pair-row p */
        for (int64_t p = 0; p < K2; p++) {
            const float *b0 = B + 2 * p * ldb;
            bool odd = 2 * p + 1 >= K;
            for (int64_t j = 0; j < Np; j += 16) {
                int64_t n = N - j;
                __m512i lo = load_round(b0 + j, n);
                __m512i hi = odd ? _mm512_setzero_si512() : load_round(b0 + ldb + j, n);
                _mm512_storeu_si512(bp + ((j / NR) * K2 + p) * NR + j % NR, pairs(lo, hi));
            }
        }
    } else { /* op(B)[k][j] = B[j·ldb + k]: 16 columns × 16 pairs at a time, transposed */
        __m512i r[16];
        for (int64_t j0 = 0; j0 < Np; j0 += 16) {
            int64_t nj = N - j0;
            for (int64_t p0 = 0; p0 < K2; p0 += 16) {
                for (int64_t q = 0; q < 16; q++)
                    r[q] = q < nj ? load_pairs(B + (j0 + q) * ldb + 2 * p0, K - 2 * p0)
                                  : _mm512_setzero_si512();
                transpose16(r);
                int64_t np = K2 - p0 < 16 ? K2 - p0 : 16;
                for (int64_t q = 0; q < np; q++)
                    _mm512_storeu_si512(bp + ((j0 / NR) * K2 + p0 + q) * NR + j0 % NR, r[q]);
            }
        }
    }
}

/* C[rows, cols] (of an MR × NR tile) = alpha·(ap · bp) + beta·C. */
TARGET_BF16 static void tile(int64_t K2, const uint32_t *restrict ap, const uint32_t *restrict bp,
                             float alpha, float beta, float *C, int64_t ldc, int64_t rows,
                             int64_t cols)
{
    __m512 acc[MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++)
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int64_t p = 0; p < K2; p++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(bp + p * NR);
        __m512bh b1 = (__m512bh)_mm512_loadu_si512(bp + p * NR + 16);
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            __m512bh a = (__m512bh)_mm512_set1_epi32((int)ap[r * K2 + p]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], a, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], a, b1);
        }
    }
    const __mmask16 m0 = lanes_mask(cols), m1 = lanes_mask(cols - 16);
    const __m512 va = _mm512_set1_ps(alpha);
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
        if (r >= rows)
            break;
        float *c = C + r * ldc;
        __m512 y0 = _mm512_mul_ps(acc[r][0], va), y1 = _mm512_mul_ps(acc[r][1], va);
        if (beta != 0) {
            y0 = _mm512_add_ps(y0, _mm512_maskz_loadu_ps(m0, c));
            y1 = _mm512_add_ps(y1, _mm512_maskz_loadu_ps(m1, c + 16));
        }
        _mm512_mask_storeu_ps(c, m0, y0);
        _mm512_mask_storeu_ps(c + 16, m1, y1);
    }
}

void lc_cpu_small_gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                            float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                            float beta, float *C, int64_t ldc)
{
    LC_ASSERT(beta == 0 || beta == 1);
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0) {
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++)
                C[i * ldc + j] = beta == 0 ? 0 : C[i * ldc + j];
        return;
    }
    /* per thread: every thread of a parallel region packs its own */
    static _Thread_local lc_grow_buf abuf, bbuf;
    const int64_t K2 = (K + 1) / 2, Mp = (M + MR - 1) / MR * MR, panels = (N + NR - 1) / NR;
    uint32_t *ap = lc_grow(&abuf, (size_t)(Mp * K2) * sizeof *ap);
    uint32_t *bp = lc_grow(&bbuf, (size_t)(panels * K2 * NR) * sizeof *bp);
    LC_ASSERT(ap && bp);
    pack_a(trans_a, M, K, A, lda, Mp, K2, ap);
    pack_b(trans_b, N, K, B, ldb, panels, K2, bp);
    for (int64_t jp = 0; jp < panels; jp++)
        for (int64_t i0 = 0; i0 < M; i0 += MR)
            tile(K2, ap + i0 * K2, bp + jp * K2 * NR, alpha, beta, C + i0 * ldc + jp * NR, ldc,
                 M - i0 < MR ? M - i0 : MR, N - jp * NR);
}

#else /* no AVX-512 on this target */

bool lc_cpu_small_gemm_bf16_supported(void) { return false; }

void lc_cpu_round_bf16_avx512(const float *src, int64_t n, uint16_t *dst, int64_t par_min)
{
    (void)src, (void)n, (void)dst, (void)par_min;
    LC_ASSERT(!"no AVX-512 on this build's target");
}

void lc_cpu_small_gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                            float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                            float beta, float *C, int64_t ldc)
{
    (void)trans_a, (void)trans_b, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda;
    (void)B, (void)ldb, (void)beta, (void)C, (void)ldc;
    LC_ASSERT(!"no AVX512-BF16 on this build's target");
}

#endif

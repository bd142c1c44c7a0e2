/* small_gemm_bf16.c — one-thread bf16 GEMM on AVX512-BF16 or AMX (see
 * small_gemm_bf16.h).
 *
 * Layout: op(A) is packed as rows of K2 = ceil(K/2) bf16 pairs (uint32:
 * element 2p in the low half, 2p+1 in the high half, as VDPBF16PS pairs
 * them), padded with zero rows to a multiple of MR; op(B) as panels of NR
 * columns, each [K2][NR] pairs (the "VNNI" layout), zero columns past N. A
 * tile of MR × NR outputs lives in 16 zmm accumulators; each step of the
 * kernel loads one pair-row of the B panel (two zmm), broadcasts one pair
 * of each A row and issues 16 VDPBF16PS. The same packing is what AMX's
 * tiles load: a row of pairs is a row of an A tile, a panel's [K2][NR]
 * pairs two B tiles side by side (stride NR pairs); on AMX the pair count
 * K2 is padded with zeros to whole tiles (16 pairs) and the rows to blocks
 * of 32 (AMX_MR), and a block of 32 × 32 outputs is four accumulator tiles.
 * This file is compiled for the baseline; only its target-attributed
 * functions use AVX-512 or AMX. */
#include "autograd/cpu/small_gemm_bf16.h"

#include <stdlib.h>
#include <string.h>

#include "autograd/cpu/dispatch.h"
#include "autograd/dtype.h"
#include "autograd/error.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MR 8  /* rows of a tile */
#define NR 32 /* columns of a tile: two zmm of f32 */
#define TARGET_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#define TARGET_AMX                                                                           \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,amx-tile,amx-bf16")))
#define AMX_MR 32    /* rows of an AMX block: two A tiles */
#define AMX_PAIRS 16 /* pairs of K in a tile row (64 bytes) */

bool lc_cpu_small_gemm_bf16_supported(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512bf16");
}

/* Linux's arch_prctl requests for the AMX tile data state (asm/prctl.h,
 * Linux 5.16), which a process must ask for before its first tile load. */
#define ARCH_GET_XCOMP_PERM 0x1022
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

/* AMX-BF16 and AMX-TILE in CPUID (leaf 7: EDX bits 22 and 24), the tile
 * state enabled by the OS (XCR0 bits 17 and 18), and this process allowed
 * to use it. */
static bool amx_usable(void)
{
    unsigned a, b, c, d;
    if (!lc_cpu_small_gemm_bf16_supported() || !__get_cpuid_count(7, 0, &a, &b, &c, &d) ||
        !(d & (1u << 22)) || !(d & (1u << 24)))
        return false;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & (3u << 17)) != (3u << 17))
        return false;
    unsigned long perm = 0;
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0 ||
        syscall(SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &perm) != 0)
        return false;
    return (perm >> XFEATURE_XTILEDATA) & 1;
}

static int amx_present = -1; /* -1 not yet probed; else amx_usable() */
static int amx_state = -1;   /* -1 not yet selected; else whether AMX runs */

bool lc_cpu_small_gemm_bf16_amx_present(void)
{
    if (amx_present < 0)
        amx_present = amx_usable();
    return amx_present;
}

const char *lc_cpu_small_gemm_bf16_select(void)
{
    const char *want = getenv(LC_CPU_AMX_ENV);
    bool off = want && strcmp(want, "off") == 0;
    amx_state = lc_cpu_small_gemm_bf16_amx_present() && !off && !lc_cpu_isa_forced();
    return lc_cpu_small_gemm_bf16_units();
}

const char *lc_cpu_small_gemm_bf16_units(void)
{
    if (amx_state < 0)
        lc_cpu_small_gemm_bf16_select();
    return amx_state ? "AMX" : "AVX512-BF16";
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

/* scale·src[0..n) rounded to bf16 in dst. The OpenMP loops below call
 * this rather than hold the vector code: clang outlines a parallel loop's
 * body into a function of its own, without the target attribute. */
TARGET_BF16 static void round_run(const float *src, int64_t n, float scale, uint16_t *dst)
{
    const __m512 s = _mm512_set1_ps(scale);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = lanes_mask(n - i);
        __m512 v = _mm512_maskz_loadu_ps(m, src + i);
        if (scale != 1.0f) /* else the floats as they are, denormals too */
            v = _mm512_mul_ps(s, v);
        _mm256_mask_storeu_epi16(dst + i, m, _mm512_cvtepi32_epi16(round16(v)));
    }
}

#define ROUND_CHUNK 4096 /* floats a thread rounds at a time */

void lc_cpu_round_bf16_avx512(const float *src, int64_t n, uint16_t *dst, int64_t par_min)
{
    const int64_t chunks = (n + ROUND_CHUNK - 1) / ROUND_CHUNK;
#pragma omp parallel for schedule(static) if (n >= par_min)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t i = c * ROUND_CHUNK;
        round_run(src + i, n - i < ROUND_CHUNK ? n - i : ROUND_CHUNK, 1.0f, dst + i);
    }
}

void lc_cpu_round_bf16_rows_avx512(const float *src, int64_t rows, int64_t cols, int64_t lds,
                                   float scale, uint16_t *dst, int64_t ldd, int64_t par_min)
{
#pragma omp parallel for schedule(static) if (rows * cols >= par_min)
    for (int64_t r = 0; r < rows; r++)
        round_run(src + r * lds, cols, scale, dst + r * ldd);
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

/* ap[Mp][K2p] = op(A) as rounded pairs (K2p ≥ K2 = ceil(K/2); pairs past
 * K2 zero), rows M..Mp zero. */
TARGET_BF16 static void pack_a(bool trans, int64_t M, int64_t K, const float *A, int64_t lda,
                               int64_t Mp, int64_t K2p, uint32_t *restrict ap)
{
    const int64_t K2 = (K + 1) / 2;
    if (!trans) { /* a row of A is a row of pairs */
        for (int64_t i = 0; i < M; i++)
            for (int64_t p = 0; p < K2p; p += 16)
                _mm512_mask_storeu_epi32(ap + i * K2p + p, lanes_mask(K2p - p),
                                         load_pairs(A + i * lda + 2 * p, K - 2 * p));
    } else { /* op(A)[i][k] = A[k·lda + i]: 16 rows × 16 pairs at a time, transposed */
        __m512i r[16];
        for (int64_t i0 = 0; i0 < M; i0 += 16) {
            int64_t ni = M - i0 < 16 ? M - i0 : 16;
            for (int64_t p0 = 0; p0 < K2p; p0 += 16) {
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
                    _mm512_mask_storeu_epi32(ap + (i0 + ii) * K2p + p0, lanes_mask(K2p - p0),
                                             r[ii]);
            }
        }
    }
    memset(ap + M * K2p, 0, (size_t)((Mp - M) * K2p) * sizeof *ap);
}

/* bp[panels][K2p][NR] = op(B) as rounded pairs (pair-rows past K2 =
 * ceil(K/2) zero), columns past N zero. */
TARGET_BF16 static void pack_b(bool trans, int64_t N, int64_t K, const float *B, int64_t ldb,
                               int64_t panels, int64_t K2p, uint32_t *restrict bp)
{
    const int64_t Np = panels * NR, K2 = (K + 1) / 2;
    if (!trans) { /* op(B)[k][j] = B[k·ldb + j]: rows 2p and 2p+1 of B make pair-row p */
        for (int64_t p = 0; p < K2; p++) {
            const float *b0 = B + 2 * p * ldb;
            bool odd = 2 * p + 1 >= K;
            for (int64_t j = 0; j < Np; j += 16) {
                int64_t n = N - j;
                __m512i lo = load_round(b0 + j, n);
                __m512i hi = odd ? _mm512_setzero_si512() : load_round(b0 + ldb + j, n);
                _mm512_storeu_si512(bp + ((j / NR) * K2p + p) * NR + j % NR, pairs(lo, hi));
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
                    _mm512_storeu_si512(bp + ((j0 / NR) * K2p + p0 + q) * NR + j0 % NR, r[q]);
            }
        }
    }
    for (int64_t jp = 0; jp < panels && K2p > K2; jp++)
        memset(bp + (jp * K2p + K2) * NR, 0, (size_t)((K2p - K2) * NR) * sizeof *bp);
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

/* The tile configuration: palette 1, every tile 16 rows × 64 bytes (C:
 * 16 × 16 f32; A: 16 rows × 16 pairs; B: 16 pair-rows × 16 columns). */
typedef struct amx_config {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_config;

/* C[rows, cols] (of an AMX_MR × NR block) = alpha·(ap · bp) + beta·C:
 * tiles 0-3 accumulate the four 16 × 16 quarters, 4-5 hold the two A
 * tiles, 6-7 the two B tiles of each step of 16 pairs. */
TARGET_AMX static void amx_block(int64_t K2p, const uint32_t *ap, const uint32_t *bp,
                                 float alpha, float beta, float *C, int64_t ldc, int64_t rows,
                                 int64_t cols)
{
    const int64_t sa = K2p * (int64_t)sizeof *ap, sb = NR * (int64_t)sizeof *bp;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t p = 0; p < K2p; p += AMX_PAIRS) {
        _tile_loadd(4, ap + p, sa);
        _tile_loadd(5, ap + 16 * K2p + p, sa);
        _tile_loadd(6, bp + p * NR, sb);
        _tile_loadd(7, bp + p * NR + 16, sb);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    float acc[AMX_MR][NR];
    _tile_stored(0, &acc[0][0], NR * sizeof(float));
    _tile_stored(1, &acc[0][16], NR * sizeof(float));
    _tile_stored(2, &acc[16][0], NR * sizeof(float));
    _tile_stored(3, &acc[16][16], NR * sizeof(float));
    const __mmask16 m0 = lanes_mask(cols), m1 = lanes_mask(cols - 16);
    const __m512 va = _mm512_set1_ps(alpha);
    for (int64_t r = 0; r < rows && r < AMX_MR; r++) {
        float *c = C + r * ldc;
        __m512 y0 = _mm512_mul_ps(_mm512_loadu_ps(acc[r]), va);
        __m512 y1 = _mm512_mul_ps(_mm512_loadu_ps(acc[r] + 16), va);
        if (beta != 0) {
            y0 = _mm512_add_ps(y0, _mm512_maskz_loadu_ps(m0, c));
            y1 = _mm512_add_ps(y1, _mm512_maskz_loadu_ps(m1, c + 16));
        }
        _mm512_mask_storeu_ps(c, m0, y0);
        _mm512_mask_storeu_ps(c + 16, m1, y1);
    }
}

/* Every block of C on AMX. The tiles are configured here (oneDNN's kernels
 * on the same threads configure their own before each use) and released
 * after, back to their initial state, which context switches need not
 * save. */
TARGET_AMX static void amx_blocks(int64_t M, int64_t N, int64_t K2p, int64_t panels,
                                  const uint32_t *ap, const uint32_t *bp, float alpha,
                                  float beta, float *C, int64_t ldc)
{
    amx_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++)
        cfg.colsb[t] = 64, cfg.rows[t] = 16;
    _tile_loadconfig(&cfg);
    for (int64_t jp = 0; jp < panels; jp++)
        for (int64_t i0 = 0; i0 < M; i0 += AMX_MR)
            amx_block(K2p, ap + i0 * K2p, bp + jp * K2p * NR, alpha, beta, C + i0 * ldc + jp * NR,
                      ldc, M - i0, N - jp * NR);
    _tile_release();
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
    const bool amx = amx_state > 0;
    const int64_t K2 = (K + 1) / 2, panels = (N + NR - 1) / NR;
    const int64_t K2p = amx ? (K2 + AMX_PAIRS - 1) / AMX_PAIRS * AMX_PAIRS : K2;
    const int64_t rb = amx ? AMX_MR : MR, Mp = (M + rb - 1) / rb * rb;
    uint32_t *ap = lc_grow(&abuf, (size_t)(Mp * K2p) * sizeof *ap);
    uint32_t *bp = lc_grow(&bbuf, (size_t)(panels * K2p * NR) * sizeof *bp);
    LC_ASSERT(ap && bp);
    pack_a(trans_a, M, K, A, lda, Mp, K2p, ap);
    pack_b(trans_b, N, K, B, ldb, panels, K2p, bp);
    if (amx) {
        amx_blocks(M, N, K2p, panels, ap, bp, alpha, beta, C, ldc);
        return;
    }
    for (int64_t jp = 0; jp < panels; jp++)
        for (int64_t i0 = 0; i0 < M; i0 += MR)
            tile(K2, ap + i0 * K2, bp + jp * K2 * NR, alpha, beta, C + i0 * ldc + jp * NR, ldc,
                 M - i0 < MR ? M - i0 : MR, N - jp * NR);
}

#else /* no AVX-512 on this target */

bool lc_cpu_small_gemm_bf16_supported(void) { return false; }

const char *lc_cpu_small_gemm_bf16_select(void) { return lc_cpu_small_gemm_bf16_units(); }

const char *lc_cpu_small_gemm_bf16_units(void) { return "AVX512-BF16"; }

bool lc_cpu_small_gemm_bf16_amx_present(void) { return false; }

void lc_cpu_round_bf16_avx512(const float *src, int64_t n, uint16_t *dst, int64_t par_min)
{
    (void)src, (void)n, (void)dst, (void)par_min;
    LC_ASSERT(!"no AVX-512 on this build's target");
}

void lc_cpu_round_bf16_rows_avx512(const float *src, int64_t rows, int64_t cols, int64_t lds,
                                   float scale, uint16_t *dst, int64_t ldd, int64_t par_min)
{
    (void)src, (void)rows, (void)cols, (void)lds, (void)scale, (void)dst, (void)ldd, (void)par_min;
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

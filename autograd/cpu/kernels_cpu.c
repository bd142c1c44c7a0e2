/* kernels_cpu.c — CPU implementations of kernels.h, compiled once per
 * instruction-set variant.
 *
 * Every matrix product goes to cpu_gemm (oneDNN's matmul for most, OpenBLAS
 * for the rest: onednn.h) — in the bf16 tables the frozen-weight products
 * and attention's go to gemm_bf16.h instead; everything else is an OpenMP loop
 * over rows. Frozen weights in another dtype than lc_real are converted a
 * tile of rows at a time into scratch (never the whole matrix), the same
 * tiling the quantized formats use. Attention is blocked flash-style: per
 * (row, head, block of 64 queries) the scores of that block only are formed,
 * softmaxed and consumed, so no B×H×T×T tensor is ever held; backward
 * recomputes them from the saved log-sum-exp.
 *
 * The build compiles this file once per variant in LORAC_CPU_VARIANTS
 * (CMakeLists.txt: x86-64-v2, -v3, -v4, with the matching -march), each with
 * LC_CPU_VARIANT naming it. Everything here is static; the only symbols are
 * the variant's tables lc_cpu_kernels_<variant>[_bf16] and its multiply-add
 * probe lc_cpu_fma_peak_gflops_<variant>, and dispatch.c picks one
 * table at start-up for the CPU it runs on. */
#include "autograd/cpu/dispatch.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/cpu/gemm_bf16.h"
#include "autograd/cpu/onednn.h"
#include "autograd/error.h"
#include "autograd/hash.h"

#ifndef ATTN_BLOCK
#define ATTN_BLOCK 32
#endif
/* The fused lm_head's chunks of rows: as many rows as CE_CHUNK_ELEMS logits
 * (64 MiB of f32), but at least CE_MIN_CHUNK_ROWS while they fit in
 * CE_MAX_CHUNK_ELEMS (256 MiB): both GEMMs of a chunk stream the whole
 * weight, so with fewer rows they slow down (V 151936, C 896, 2 Zen 3
 * cores: 110 rows 163 / 133 GFLOP/s forward / backward, 256 rows 166 / 170;
 * a 2-layer Qwen2.5-0.5B shape 4.57 -> 4.10 s a step). On 2 Xeon cores with
 * AMX (2026-12-02) the SmolLM-135M head (V 49152, C 576) in two chunks of
 * 512 rows instead of three of 341 took the step 1.07-1.12 -> 1.00-1.07 s in
 * bf16 and 2.38-2.56 -> 2.31-2.39 s in f32, at 48 MB more peak RSS. */
#define CE_CHUNK_ELEMS (1 << 24)
#define CE_MIN_CHUNK_ROWS 512
#define CE_MAX_CHUNK_ELEMS (1 << 26)
#define CE_MAX_CHUNK_ROWS 1024
/* Products of fewer rows stay on OpenBLAS: each new shape costs oneDNN a
 * primitive, and a few rows gain nothing. */
#define ONEDNN_MIN_ROWS 16
/* Below this many elements a loop runs on one thread: waking the team
 * costs more than the work. */
#define PAR_MIN 32768
/* Products of at least this many multiply-adds are split over threads. */
#define GEMM_SPLIT_FLOPS (1 << 22)

static lc_real dot(const lc_real *a, const lc_real *b, int64_t n)
{
    lc_real s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static void cpu_axpy(int64_t n, lc_real a, const lc_real *x, lc_real *y)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

static void cpu_add(int64_t n, const lc_real *a, const lc_real *b, lc_real *y)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        y[i] = a[i] + b[i];
}

static void cpu_scale(int64_t n, lc_real s, const lc_real *x, lc_real *y)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        y[i] = s * x[i];
}

static void cpu_div(int64_t n, const lc_real *a, const lc_real *b, lc_real *y)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = a[i] / b[i];
}

static void cpu_add_bias(int64_t N, int64_t O, const lc_real *bias, lc_real *y)
{
#pragma omp parallel for schedule(static) if (N * O >= 32768)
    for (int64_t r = 0; r < N; r++)
        cpu_axpy(O, 1, bias, y + r * O);
}

static void cpu_cols(lc_real *wide, int64_t N, int64_t ld, int64_t c0, int64_t w, lc_real *part,
                     bool add)
{
    for (int64_t r = 0; r < N; r++) {
        if (add)
            cpu_axpy(w, 1, part + r * w, wide + r * ld + c0);
        else
            memcpy(part + r * w, wide + r * ld + c0, (size_t)w * sizeof(lc_real));
    }
}

/* ---- MoE row moves (idx distinct where rows are added into) ---- */

static void cpu_gather_rows(const lc_real *x, const int32_t *idx, int64_t n, int64_t C,
                            lc_real *out)
{
#pragma omp parallel for schedule(static) if (n * C >= PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        memcpy(out + i * C, x + (int64_t)idx[i] * C, (size_t)C * sizeof(lc_real));
}

/* scatter: dst[idx[i], :] += w[slot[i]] · src[i, :]; else (gather):
 * dst[i, :] += w[slot[i]] · src[idx[i], :] (w NULL: 1) */
static void add_rows(const lc_real *src, const int32_t *idx, const lc_real *w,
                     const int32_t *slot, int64_t n, int64_t C, lc_real *dst, bool scatter)
{
#pragma omp parallel for schedule(static) if (n * C >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        int64_t far = (int64_t)idx[i] * C;
        cpu_axpy(C, w ? w[slot[i]] : 1, src + (scatter ? i * C : far),
                 dst + (scatter ? far : i * C));
    }
}

static void cpu_scatter_add_rows(const lc_real *src, const int32_t *idx, const lc_real *w,
                                 const int32_t *slot, int64_t n, int64_t C, lc_real *dst)
{
    add_rows(src, idx, w, slot, n, C, dst, true);
}

static void cpu_gather_add_rows(const lc_real *src, const int32_t *idx, const lc_real *w,
                                const int32_t *slot, int64_t n, int64_t C, lc_real *dst)
{
    add_rows(src, idx, w, slot, n, C, dst, false);
}

static void cpu_row_dots(const lc_real *a, const int32_t *idx, const lc_real *b,
                         const int32_t *slot, int64_t n, int64_t C, lc_real *dw)
{
#pragma omp parallel for schedule(static) if (n * C >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        const lc_real *ai = a + (int64_t)idx[i] * C, *bi = b + i * C;
        double s = 0;
        for (int64_t c = 0; c < C; c++)
            s += (double)ai[c] * (double)bi[c];
        dw[slot[i]] += (lc_real)s;
    }
}

/* C[M,N] = alpha · op(A) · op(B) + beta · C on OpenBLAS, in one call. */
static void blas_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                      lc_real alpha, const lc_real *A, int64_t lda, const lc_real *B,
                      int64_t ldb, lc_real beta, lc_real *C, int64_t ldc)
{
    LC_GEMM(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
            trans_b ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K, alpha, A, (int)lda, B,
            (int)ldb, beta, C, (int)ldc);
}

static void cpu_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
               lc_real alpha, const lc_real *A, int64_t lda, const lc_real *B,
               int64_t ldb, lc_real beta, lc_real *C, int64_t ldc)
{
    if (M == 0 || N == 0)
        return;
    if (K == 0) {
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++)
                C[i * ldc + j] = beta == 0 ? 0 : beta * C[i * ldc + j];
        return;
    }
    if (M == 1) {
        /* one row (decoding a token): a matrix-vector product. GEMM would
         * first pack all of B — as much memory traffic as the product itself
         * (2.2-2.7x slower per decoded token on SmolLM-135M, 1 thread: 4.6-5.5 vs
         * 12.0-12.3 tokens/s). */
        int64_t inc_a = trans_a ? lda : 1;
        if (trans_b) /* C[1,N] = A[1,K] · B[N,K]ᵀ = B · a */
            LC_GEMV(CblasRowMajor, CblasNoTrans, (int)N, (int)K, alpha, B, (int)ldb, A,
                    (int)inc_a, beta, C, 1);
        else         /* C[1,N] = A[1,K] · B[K,N] = Bᵀ · a */
            LC_GEMV(CblasRowMajor, CblasTrans, (int)K, (int)N, alpha, B, (int)ldb, A,
                    (int)inc_a, beta, C, 1);
        return;
    }
#if !LC_REAL_IS_F64
    /* oneDNN (onednn.h, unless LORAC_CPU_GEMM=openblas), not for a handful
     * of rows (M 1 is the GEMV above):
     * - outside our parallel regions, its matmul where it has one for the
     *   problem, and its BLAS-like GEMM for a B that is not transposed
     *   (lc_onednn_gemm; the LoRA products dx += dxa·A, K = r, inside the
     *   bench step on 2 Zen 5 cores: down's 0.0137 -> 0.0070 s a step,
     *   q/k/v's and gate/up's 0.015 -> 0.010 s, the other untransposed ones
     *   equal);
     * - inside them (attention's blocks, one product per thread), the
     *   BLAS-like GEMM, which runs one-threaded there: the SmolLM-135M
     *   shape's attention, forward and backward, 0.205 -> 0.125 s a step
     *   against OpenBLAS with the environment's Haswell kernels, 0.159 ->
     *   0.157 and 0.136 -> 0.132 against its SkylakeX ones, and 7.4-8.2 ->
     *   6.8-6.9 ms a layer with both capped to AVX2 (2 Zen 5 cores). */
    if (M >= ONEDNN_MIN_ROWS && (beta == 0 || beta == 1) && lc_cpu_gemm_onednn() &&
        (omp_in_parallel() || !trans_b
             ? lc_onednn_gemm(LC_DTYPE_F32, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb,
                              beta, C, ldc)
             : lc_onednn_matmul(LC_DTYPE_F32, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb,
                                beta != 0, C, ldc, true)))
        return;
#endif
    /* OpenBLAS runs mid-sized products (q/k/v/o of a small model) on one
     * thread; splitting the rows of C over our own threads keeps every core
     * busy. Inside a parallel region (attention blocks) OpenBLAS's OpenMP
     * build is single-threaded, so each slice is one plain call. */
    int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (threads > 1 && M >= 64 * threads && (double)M * N * K >= GEMM_SPLIT_FLOPS) {
#pragma omp parallel num_threads(threads)
        {
            int t = omp_get_thread_num(), nt = omp_get_num_threads();
            int64_t r0 = M * t / nt, r1 = M * (t + 1) / nt;
            const lc_real *As = trans_a ? A + r0 : A + r0 * lda;
            blas_gemm(trans_a, trans_b, r1 - r0, N, K, alpha, As, lda, B, ldb, beta,
                      C + r0 * ldc, ldc);
        }
        return;
    }
    blas_gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static bool weight_is_native(const lc_weight *W)
{
    return !W->nf4 && !W->ggml && W->dtype == (LC_REAL_IS_F64 ? LC_DTYPE_F64 : LC_DTYPE_F32);
}

static size_t cpu_weight_scratch(const lc_weight *W)
{
    return weight_is_native(W) ? 0 : (size_t)(lc_cpu_weight_tile_rows(W) * W->cols);
}

static void cpu_weight_matmul(const lc_real *x, int64_t N, const lc_weight *W,
                        lc_real beta, lc_real *y, lc_real *scratch)
{
    int64_t in = W->cols, out = W->rows;
    if (weight_is_native(W)) {
        cpu_gemm(false, true, N, out, in, 1, x, in, W->data, in, beta, y, out);
        return;
    }
    int64_t tr = lc_cpu_weight_tile_rows(W);
    for (int64_t r0 = 0; r0 < out; r0 += tr) {
        int64_t r1 = r0 + tr < out ? r0 + tr : out;
        lc_weight_rows_to_real(W, r0, r1, scratch);
        cpu_gemm(false, true, N, r1 - r0, in, 1, x, in, scratch, in, beta, y + r0, out);
    }
}

/* dx[N, in] = beta·dx + dy[N, k] (row stride ldy) · Wr[k, in]: the input
 * gradient through k rows of a frozen weight, W's B not transposed. On
 * oneDNN's BLAS-like GEMM when the f32 GEMMs run on oneDNN (lc_onednn_gemm:
 * its matmul primitive's brgemm reads such a B slowly), else on OpenBLAS in
 * one call, threaded by OpenBLAS itself (splitting the rows over our
 * threads, as cpu_gemm does, packs W once per thread). Timed per shape
 * inside the bench step, 2 AVX-512 cores: [1024,576]·[576,1536] 172 and
 * 141 GFLOP/s on the primitive against 220 and 187 on OpenBLAS; the gemm
 * API against OpenBLAS, see onednn.h. */
static void weight_grad_gemm(int64_t N, int64_t in, int64_t k, const lc_real *dy, int64_t ldy,
                             const lc_real *Wr, lc_real beta, lc_real *dx)
{
#if !LC_REAL_IS_F64
    if (lc_cpu_gemm_onednn() &&
        lc_onednn_gemm(LC_DTYPE_F32, false, false, N, in, k, 1, dy, ldy, Wr, in, beta, dx, in))
        return;
#endif
    blas_gemm(false, false, N, in, k, 1, dy, ldy, Wr, in, beta, dx, in);
}

/* dx[N, in] = beta·dx + dy[N, out] · W[out, in]. */
static void cpu_weight_matmul_grad(const lc_real *dy, int64_t N, const lc_weight *W,
                                   lc_real beta, lc_real *dx, lc_real *scratch)
{
    int64_t in = W->cols, out = W->rows;
    if (weight_is_native(W)) {
        weight_grad_gemm(N, in, out, dy, out, W->data, beta, dx);
        return;
    }
    /* tiles of W's rows add into the same dx: beta for the first only */
    int64_t tr = lc_cpu_weight_tile_rows(W);
    for (int64_t r0 = 0; r0 < out; r0 += tr) {
        int64_t r1 = r0 + tr < out ? r0 + tr : out;
        lc_weight_rows_to_real(W, r0, r1, scratch);
        weight_grad_gemm(N, in, r1 - r0, dy + r0, out, scratch, r0 ? 1 : beta, dx);
    }
}

static void cpu_rmsnorm_fwd(const lc_real *x, const lc_real *w, int64_t N, int64_t C,
                      double eps, lc_real *y, lc_real *rstd)
{
#pragma omp parallel for schedule(static) if (N * C >= PAR_MIN)
    for (int64_t i = 0; i < N; i++) {
        const lc_real *xi = x + i * C;
        double ss = 0;
#pragma omp simd reduction(+ : ss)
        for (int64_t c = 0; c < C; c++)
            ss += (double)xi[c] * xi[c];
        lc_real r = (lc_real)(1.0 / sqrt(ss / (double)C + eps));
        if (rstd)
            rstd[i] = r;
        lc_real *yi = y + i * C;
#pragma omp simd
        for (int64_t c = 0; c < C; c++)
            yi[c] = w[c] * (xi[c] * r);
    }
}

static void cpu_rmsnorm_bwd(const lc_real *x, const lc_real *w, const lc_real *rstd,
                      const lc_real *dy, int64_t N, int64_t C, lc_real *dx)
{
#pragma omp parallel for schedule(static) if (N * C >= PAR_MIN)
    for (int64_t i = 0; i < N; i++) {
        const lc_real *xi = x + i * C, *dyi = dy + i * C;
        lc_real r = rstd[i];
        double s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t c = 0; c < C; c++)
            s += (double)w[c] * dyi[c] * xi[c];
        lc_real k = (lc_real)(s * (double)r * r * r / (double)C);
        lc_real *dxi = dx + i * C;
#pragma omp simd
        for (int64_t c = 0; c < C; c++)
            dxi[c] += r * w[c] * dyi[c] - k * xi[c];
    }
}

static inline lc_real sigmoid(lc_real g) { return 1 / (1 + LC_EXP(-g)); }

/* Elementwise loops run in chunks: each thread calls a plain function on
 * restrict pointers, which the compiler vectorises (inside an OpenMP
 * outlined body it would not: the pointers are reloaded every iteration). */
#define CHUNK 4096

static void swiglu_fwd_range(const lc_real *restrict g, const lc_real *restrict u, int64_t n,
                             lc_real *restrict y)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = g[i] * sigmoid(g[i]) * u[i];
}

static void swiglu_dg_range(const lc_real *restrict g, const lc_real *restrict u,
                            const lc_real *restrict dy, int64_t n, lc_real *restrict dg)
{
    for (int64_t i = 0; i < n; i++) {
        lc_real s = sigmoid(g[i]);
        dg[i] += dy[i] * u[i] * s * (1 + g[i] * (1 - s));
    }
}

static void swiglu_du_range(const lc_real *restrict g, const lc_real *restrict dy, int64_t n,
                            lc_real *restrict du)
{
    for (int64_t i = 0; i < n; i++)
        du[i] += dy[i] * g[i] * sigmoid(g[i]);
}

/* Both gradients and the recomputed forward with one sigmoid an element
 * (the same expressions as the ranges above, so the same values). */
static void swiglu_all_range(const lc_real *restrict g, const lc_real *restrict u,
                             const lc_real *restrict dy, int64_t n, lc_real *restrict dg,
                             lc_real *restrict du, lc_real *restrict y)
{
    for (int64_t i = 0; i < n; i++) {
        lc_real s = sigmoid(g[i]);
        dg[i] += dy[i] * u[i] * s * (1 + g[i] * (1 - s));
        du[i] += dy[i] * g[i] * s;
        y[i] = g[i] * s * u[i];
    }
}

/* gelu_tanh(x) = 0.5·x·(1 + t), t = tanh(GELU_K·(x + GELU_C·x³)), as torch's
 * gelu(approximate="tanh"); gelu_tanh'(x) = 0.5·(1 + t) +
 * 0.5·x·(1 − t²)·GELU_K·(1 + 3·GELU_C·x²). */
#define GELU_K ((lc_real)0.79788456080286535588) /* √(2/π) */
#define GELU_C ((lc_real)0.044715)

static inline lc_real gelu_t(lc_real x) { return LC_TANH(GELU_K * (x + GELU_C * x * x * x)); }

static inline lc_real gelu_tanh(lc_real x) { return (lc_real)0.5 * x * (1 + gelu_t(x)); }

static inline lc_real gelu_tanh_grad(lc_real x)
{
    lc_real t = gelu_t(x);
    return (lc_real)0.5 * (1 + t) +
           (lc_real)0.5 * x * (1 - t * t) * GELU_K * (1 + 3 * GELU_C * x * x);
}

static void geglu_fwd_range(const lc_real *restrict g, const lc_real *restrict u, int64_t n,
                            lc_real *restrict y)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = gelu_tanh(g[i]) * u[i];
}

static void geglu_dg_range(const lc_real *restrict g, const lc_real *restrict u,
                           const lc_real *restrict dy, int64_t n, lc_real *restrict dg)
{
    for (int64_t i = 0; i < n; i++)
        dg[i] += dy[i] * u[i] * gelu_tanh_grad(g[i]);
}

static void geglu_du_range(const lc_real *restrict g, const lc_real *restrict dy, int64_t n,
                           lc_real *restrict du)
{
    for (int64_t i = 0; i < n; i++)
        du[i] += dy[i] * gelu_tanh(g[i]);
}

/* Both gradients and the recomputed forward with one tanh an element
 * (gelu_tanh and its derivative written out from the same t, as the helpers
 * above compute them). */
static void geglu_all_range(const lc_real *restrict g, const lc_real *restrict u,
                            const lc_real *restrict dy, int64_t n, lc_real *restrict dg,
                            lc_real *restrict du, lc_real *restrict y)
{
    for (int64_t i = 0; i < n; i++) {
        lc_real x = g[i], t = gelu_t(x);
        lc_real grad = (lc_real)0.5 * (1 + t) +
                       (lc_real)0.5 * x * (1 - t * t) * GELU_K * (1 + 3 * GELU_C * x * x);
        lc_real act = (lc_real)0.5 * x * (1 + t);
        dg[i] += dy[i] * u[i] * grad;
        du[i] += dy[i] * act;
        y[i] = act * u[i];
    }
}

/* The chunked OpenMP drivers shared by the gated activations (SwiGLU,
 * GeGLU): one call of a range function per CHUNK elements. */
typedef void (*gate_fwd_fn)(const lc_real *restrict, const lc_real *restrict, int64_t,
                            lc_real *restrict);
typedef void (*gate_dg_fn)(const lc_real *restrict, const lc_real *restrict,
                           const lc_real *restrict, int64_t, lc_real *restrict);
typedef void (*gate_du_fn)(const lc_real *restrict, const lc_real *restrict, int64_t,
                           lc_real *restrict);
typedef void (*gate_all_fn)(const lc_real *restrict, const lc_real *restrict,
                            const lc_real *restrict, int64_t, lc_real *restrict,
                            lc_real *restrict, lc_real *restrict);
typedef struct gate_bwd_fns {
    gate_fwd_fn fwd;
    gate_dg_fn dg;
    gate_du_fn du;
    gate_all_fn all; /* both gradients and the forward */
} gate_bwd_fns;

static void gated_fwd(const lc_real *g, const lc_real *u, int64_t n, lc_real *y, gate_fwd_fn f)
{
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (int64_t c = 0; c < n; c += CHUNK)
        f(g + c, u + c, n - c < CHUNK ? n - c : CHUNK, y + c);
}

/* One pass over g, u and dy per chunk: with both gradients the fused range
 * (the forward into a chunk of stack when y is not wanted), else one range
 * per output. */
static void gated_bwd(const lc_real *g, const lc_real *u, const lc_real *dy, int64_t n,
                      lc_real *dg, lc_real *du, lc_real *y, const gate_bwd_fns *f)
{
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (int64_t c = 0; c < n; c += CHUNK) {
        int64_t len = n - c < CHUNK ? n - c : CHUNK;
        if (dg && du) {
            lc_real unused[CHUNK];
            f->all(g + c, u + c, dy + c, len, dg + c, du + c, y ? y + c : unused);
            continue;
        }
        if (dg)
            f->dg(g + c, u + c, dy + c, len, dg + c);
        else if (du)
            f->du(g + c, dy + c, len, du + c);
        if (y)
            f->fwd(g + c, u + c, len, y + c);
    }
}

static void cpu_swiglu_fwd(const lc_real *g, const lc_real *u, int64_t n, lc_real *y)
{
    gated_fwd(g, u, n, y, swiglu_fwd_range);
}

static void cpu_swiglu_bwd(const lc_real *g, const lc_real *u, const lc_real *dy,
                     int64_t n, lc_real *dg, lc_real *du, lc_real *y)
{
    static const gate_bwd_fns f = {swiglu_fwd_range, swiglu_dg_range, swiglu_du_range,
                                   swiglu_all_range};
    gated_bwd(g, u, dy, n, dg, du, y, &f);
}

static void cpu_geglu_tanh_fwd(const lc_real *g, const lc_real *u, int64_t n, lc_real *y)
{
    gated_fwd(g, u, n, y, geglu_fwd_range);
}

static void cpu_geglu_tanh_bwd(const lc_real *g, const lc_real *u, const lc_real *dy,
                               int64_t n, lc_real *dg, lc_real *du, lc_real *y)
{
    static const gate_bwd_fns f = {geglu_fwd_range, geglu_dg_range, geglu_du_range,
                                   geglu_all_range};
    gated_bwd(g, u, dy, n, dg, du, y, &f);
}

/* x[n] = cap · tanh(x / cap) (soft-capping; callers skip it when cap is 0). */
static void softcap_range(lc_real *restrict x, int64_t n, lc_real cap)
{
    lc_real inv = 1 / cap;
    for (int64_t i = 0; i < n; i++)
        x[i] = cap * LC_TANH(x[i] * inv);
}

static void cpu_softcap(lc_real *x, int64_t n, double cap)
{
    if (cap == 0)
        return;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (int64_t c = 0; c < n; c += CHUNK)
        softcap_range(x + c, n - c < CHUNK ? n - c : CHUNK, (lc_real)cap);
}

static void cpu_rope(const lc_real *src, lc_real *dst, int64_t N, int heads, int D,
               const int32_t *pos, const lc_real *cos_sin, bool inverse,
               bool accumulate)
{
    int half = D / 2;
    lc_real sgn = inverse ? -1 : 1;
#pragma omp parallel for schedule(static) if (N * heads * D >= PAR_MIN)
    for (int64_t i = 0; i < N; i++) {
        const lc_real *cs = cos_sin + (int64_t)pos[i] * D;
        for (int h = 0; h < heads; h++) {
            const lc_real *s = src + (i * heads + h) * D;
            lc_real *d = dst + (i * heads + h) * D;
#pragma omp simd
            for (int j = 0; j < half; j++) {
                lc_real c = cs[j], sn = sgn * cs[half + j];
                lc_real x1 = s[j], x2 = s[j + half];
                lc_real y1 = x1 * c - x2 * sn, y2 = x2 * c + x1 * sn;
                if (accumulate) {
                    d[j] += y1;
                    d[j + half] += y2;
                } else {
                    d[j] = y1;
                    d[j + half] = y2;
                }
            }
        }
    }
}

/* ---- attention ---- */

/* The keys query i may see form one contiguous run [lo, past+i]: causal,
 * inside its segment (packed rows are contiguous runs of one id) and inside
 * the window. lo[r] gets that start (a key position) for every query t0 + r
 * of [t0, t1), so the softmax loops run over plain ranges and vectorise. */
static void attn_row_starts(const lc_attn_shape *s, int64_t b, int64_t t0, int64_t t1,
                            int64_t *lo)
{
    const int32_t *seg = s->segment ? s->segment + b * s->T : NULL;
    int64_t start = 0;
    if (seg) {
        start = t0;
        while (start > 0 && seg[start - 1] == seg[t0])
            start--;
    }
    for (int64_t i = t0; i < t1; i++) {
        if (seg && i > t0 && seg[i] != seg[i - 1])
            start = i;
        int64_t l = start, key = s->past + i;
        if (s->window > 0 && key - s->window + 1 > l)
            l = key - s->window + 1;
        lo[i - t0] = l;
    }
}

/* First key any query of [t0, t1) may see. */
static int64_t attn_key_lo(const lc_attn_shape *s, int64_t t0)
{
    int64_t key = s->past + t0;
    if (s->window > 0 && key - s->window + 1 > 0)
        return key - s->window + 1;
    return 0;
}

/* Per-thread scratch of the attention kernels, in lc_real elements: the
 * G = H/KV query heads that share a kv head are processed together (one
 * GEMM with G·block rows instead of G small ones), so a thread holds their
 * gathered Q, dO and O rows [G·block, D] and the scores P, dP [G·block, past+T]. */
static size_t attn_thread_scratch(const lc_attn_shape *s)
{
    size_t rows = (size_t)(s->H / s->KV) * ATTN_BLOCK;
    return rows * (2 * (size_t)(s->past + s->T) + 3 * (size_t)s->D);
}

static size_t cpu_attention_scratch(const lc_attn_shape *s)
{
    return (size_t)omp_get_max_threads() * attn_thread_scratch(s);
}

/* Copies rows t0..t0+bt of the G heads of kv head kvh out of x[B,T,H,D]
 * (batch row b) into dst[G·bt, D], row g·bt + r; or back, adding. */
static void attn_gather(const lc_attn_shape *s, const lc_real *x, int64_t b, int64_t kvh,
                        int64_t t0, int64_t bt, lc_real *dst)
{
    const int64_t H = s->H, D = s->D, G = s->H / s->KV;
    for (int64_t g = 0; g < G; g++)
        for (int64_t r = 0; r < bt; r++)
            memcpy(dst + (g * bt + r) * D, x + ((b * s->T + t0 + r) * H + kvh * G + g) * D,
                   (size_t)D * sizeof(lc_real));
}

static void attn_scatter_add(const lc_attn_shape *s, const lc_real *src, int64_t b, int64_t kvh,
                             int64_t t0, int64_t bt, lc_real scale, lc_real *x)
{
    const int64_t H = s->H, D = s->D, G = s->H / s->KV;
    for (int64_t g = 0; g < G; g++)
        for (int64_t r = 0; r < bt; r++)
            cpu_axpy(D, scale, src + (g * bt + r) * D,
                      x + ((b * s->T + t0 + r) * H + kvh * G + g) * D);
}

/* The products inside attention's blocks, one thread each: cpu_gemm (f32),
 * or lc_cpu_attn_gemm_bf16 (compute_dtype bfloat16: bf16-rounded inputs, as
 * PyTorch's autocast runs scaled_dot_product_attention in bf16). */
typedef void attn_gemm_fn(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                          lc_real alpha, const lc_real *A, int64_t lda, const lc_real *B,
                          int64_t ldb, lc_real beta, lc_real *C, int64_t ldc);

static void attention_fwd(const lc_attn_shape *s, const lc_real *q, const lc_real *k,
                          const lc_real *v, lc_real *out, lc_real *lse, lc_real *scratch,
                          attn_gemm_fn *gemm)
{
    const int64_t T = s->T, H = s->H, KV = s->KV, D = s->D, G = H / KV;
    const int64_t P = s->past, Tk = P + T; /* key rows: cached ones, then the queries' own */
    const int64_t nblk = (T + ATTN_BLOCK - 1) / ATTN_BLOCK;
    const int64_t items = s->B * KV * nblk;
    const lc_real cap = (lc_real)s->softcap;
    LC_ASSERT(P == 0 || !s->segment);
#pragma omp parallel if (items > 1 && T * Tk * D >= PAR_MIN)
    {
        lc_real *S = scratch + (size_t)omp_get_thread_num() * attn_thread_scratch(s);
        lc_real *Qg = S + (size_t)G * ATTN_BLOCK * Tk;
        lc_real *Og = Qg + (size_t)G * ATTN_BLOCK * D;
#pragma omp for schedule(dynamic)
        for (int64_t it = 0; it < items; it++) {
            int64_t b = it / (KV * nblk), kvh = (it / nblk) % KV, blk = it % nblk;
            int64_t t0 = blk * ATTN_BLOCK, t1 = t0 + ATTN_BLOCK < T ? t0 + ATTN_BLOCK : T;
            int64_t bt = t1 - t0, klo = attn_key_lo(s, t0), nk = P + t1 - klo;
            const lc_real *K = k + ((b * Tk + klo) * KV + kvh) * D;
            const lc_real *V = v + ((b * Tk + klo) * KV + kvh) * D;
            attn_gather(s, q, b, kvh, t0, bt, Qg);
            gemm(false, true, G * bt, nk, D, (lc_real)s->scale, Qg, D, K, KV * D, 0, S, nk);
            int64_t lo[ATTN_BLOCK];
            attn_row_starts(s, b, t0, t1, lo);
            for (int64_t gr = 0; gr < G * bt; gr++) {
                int64_t g = gr / bt, r = gr % bt;
                lc_real *row = S + gr * nk;
                int64_t ti = t0 + r, a = lo[r] - klo, e = P + ti - klo; /* visible: [a, e] */
                if (cap != 0)
                    softcap_range(row + a, e - a + 1, cap);
                lc_real m = -INFINITY;
#pragma omp simd reduction(max : m)
                for (int64_t j = a; j <= e; j++)
                    m = row[j] > m ? row[j] : m;
                lc_real sum = 0;
#pragma omp simd reduction(+ : sum)
                for (int64_t j = a; j <= e; j++) {
                    lc_real x = LC_EXP(row[j] - m);
                    row[j] = x;
                    sum += x;
                }
                lc_real inv = 1 / sum;
                for (int64_t j = 0; j < a; j++)
                    row[j] = 0;
#pragma omp simd
                for (int64_t j = a; j <= e; j++)
                    row[j] *= inv;
                for (int64_t j = e + 1; j < nk; j++)
                    row[j] = 0;
                lse[(b * H + kvh * G + g) * T + ti] = m + LC_LOG(sum);
            }
            gemm(false, false, G * bt, D, nk, 1, S, nk, V, KV * D, 0, Og, D);
            for (int64_t g = 0; g < G; g++)
                for (int64_t r = 0; r < bt; r++)
                    memcpy(out + ((b * T + t0 + r) * H + kvh * G + g) * D, Og + (g * bt + r) * D,
                           (size_t)D * sizeof(lc_real));
        }
    }
}

static void cpu_attention_fwd(const lc_attn_shape *s, const lc_real *q, const lc_real *k,
                              const lc_real *v, lc_real *out, lc_real *lse, lc_real *scratch)
{
    attention_fwd(s, q, k, v, out, lse, scratch, cpu_gemm);
}
static void cpu_attention_fwd_bf16(const lc_attn_shape *s, const lc_real *q, const lc_real *k,
                                   const lc_real *v, lc_real *out, lc_real *lse,
                                   lc_real *scratch)
{
    attention_fwd(s, q, k, v, out, lse, scratch, lc_cpu_attn_gemm_bf16);
}

/* Backward of one row of soft-capped scores: pr holds the raw scaled
 * scores s, dpr the products dO·v. With t = tanh(s/cap) the probability is
 * p = exp(cap·t − lse) and the raw score's gradient p·(dp − Δ)·(1 − t²). */
static void softcap_bwd_row(lc_real *restrict pr, lc_real *restrict dpr, int64_t n, lc_real cap,
                            lc_real lse, lc_real Di)
{
    lc_real inv = 1 / cap;
    for (int64_t j = 0; j < n; j++) {
        lc_real t = LC_TANH(pr[j] * inv);
        lc_real p = LC_EXP(cap * t - lse);
        pr[j] = p;
        dpr[j] = p * (dpr[j] - Di) * (1 - t * t);
    }
}

static void attention_bwd(const lc_attn_shape *s, const lc_real *q, const lc_real *k,
                          const lc_real *v, const lc_real *out, const lc_real *lse,
                          const lc_real *dout, lc_real *dq, lc_real *dk, lc_real *dv,
                          lc_real *scratch, attn_gemm_fn *gemm)
{
    const int64_t T = s->T, H = s->H, KV = s->KV, D = s->D, G = H / KV;
    const int64_t nblk = (T + ATTN_BLOCK - 1) / ATTN_BLOCK;
    const lc_real scale = (lc_real)s->scale, cap = (lc_real)s->softcap;
    LC_ASSERT(s->past == 0);
    /* One work item per (row, kv head): it owns dk/dv of that head, so no
     * two threads ever add into the same rows. */
#pragma omp parallel if (s->B * KV > 1 && T * T * D >= PAR_MIN)
    {
        lc_real *P = scratch + (size_t)omp_get_thread_num() * attn_thread_scratch(s);
        lc_real *dP = P + (size_t)G * ATTN_BLOCK * T;
        lc_real *Qg = dP + (size_t)G * ATTN_BLOCK * T;
        lc_real *dOg = Qg + (size_t)G * ATTN_BLOCK * D;
        lc_real *Og = dOg + (size_t)G * ATTN_BLOCK * D;
#pragma omp for schedule(dynamic)
        for (int64_t it = 0; it < s->B * KV; it++) {
            int64_t b = it / KV, kvh = it % KV;
            for (int64_t blk = 0; blk < nblk; blk++) {
                int64_t t0 = blk * ATTN_BLOCK, t1 = t0 + ATTN_BLOCK < T ? t0 + ATTN_BLOCK : T;
                int64_t bt = t1 - t0, klo = attn_key_lo(s, t0), nk = t1 - klo;
                int64_t koff = ((b * T + klo) * KV + kvh) * D;
                attn_gather(s, q, b, kvh, t0, bt, Qg);
                attn_gather(s, dout, b, kvh, t0, bt, dOg);
                attn_gather(s, out, b, kvh, t0, bt, Og);
                gemm(false, true, G * bt, nk, D, scale, Qg, D, k + koff, KV * D, 0, P, nk);
                gemm(false, true, G * bt, nk, D, 1, dOg, D, v + koff, KV * D, 0, dP, nk);
                int64_t lo[ATTN_BLOCK];
                attn_row_starts(s, b, t0, t1, lo);
                for (int64_t gr = 0; gr < G * bt; gr++) {
                    int64_t g = gr / bt, r = gr % bt;
                    int64_t ti = t0 + r, a = lo[r] - klo, e = ti - klo;
                    lc_real l = lse[(b * H + kvh * G + g) * T + ti];
                    lc_real Di = dot(dOg + gr * D, Og + gr * D, D);
                    lc_real *pr = P + gr * nk, *dpr = dP + gr * nk;
                    for (int64_t j = 0; j < a; j++)
                        pr[j] = dpr[j] = 0;
                    if (cap != 0) {
                        softcap_bwd_row(pr + a, dpr + a, e - a + 1, cap, l, Di);
                    } else {
#pragma omp simd
                        for (int64_t j = a; j <= e; j++) {
                            lc_real p = LC_EXP(pr[j] - l);
                            pr[j] = p;
                            dpr[j] = p * (dpr[j] - Di);
                        }
                    }
                    for (int64_t j = e + 1; j < nk; j++)
                        pr[j] = dpr[j] = 0;
                }
                if (dv)
                    gemm(true, false, nk, D, G * bt, 1, P, nk, dOg, D, 1, dv + koff, KV * D);
                if (dk)
                    gemm(true, false, nk, D, G * bt, scale, dP, nk, Qg, D, 1, dk + koff, KV * D);
                if (dq) {
                    /* dQ rows of the group into Og (free now), then added in place */
                    gemm(false, false, G * bt, D, nk, 1, dP, nk, k + koff, KV * D, 0, Og, D);
                    attn_scatter_add(s, Og, b, kvh, t0, bt, scale, dq);
                }
            }
        }
    }
}

static void cpu_attention_bwd(const lc_attn_shape *s, const lc_real *q, const lc_real *k,
                              const lc_real *v, const lc_real *out, const lc_real *lse,
                              const lc_real *dout, lc_real *dq, lc_real *dk, lc_real *dv,
                              lc_real *scratch)
{
    attention_bwd(s, q, k, v, out, lse, dout, dq, dk, dv, scratch, cpu_gemm);
}
static void cpu_attention_bwd_bf16(const lc_attn_shape *s, const lc_real *q, const lc_real *k,
                                   const lc_real *v, const lc_real *out, const lc_real *lse,
                                   const lc_real *dout, lc_real *dq, lc_real *dk, lc_real *dv,
                                   lc_real *scratch)
{
    attention_bwd(s, q, k, v, out, lse, dout, dq, dk, dv, scratch, lc_cpu_attn_gemm_bf16);
}

/* ---- fused lm_head + cross-entropy ---- */

static int64_t cpu_ce_chunk_rows(int64_t V)
{
    int64_t r = CE_CHUNK_ELEMS / (V ? V : 1);
    if (r < CE_MIN_CHUNK_ROWS) {
        int64_t most = CE_MAX_CHUNK_ELEMS / (V ? V : 1);
        r = most < CE_MIN_CHUNK_ROWS ? most : CE_MIN_CHUNK_ROWS;
    }
    if (r < 1)
        r = 1;
    return r > CE_MAX_CHUNK_ROWS ? CE_MAX_CHUNK_ROWS : r;
}

/* The frozen-weight products the fused head uses: f32 or bf16 GEMMs. */
typedef struct weight_gemms {
    __typeof__(lc_k_weight_scratch) *scratch;
    __typeof__(lc_k_weight_matmul) *matmul;
    __typeof__(lc_k_weight_matmul_grad) *matmul_grad;
} weight_gemms;
static const weight_gemms gemms_f32 = {cpu_weight_scratch, cpu_weight_matmul,
                                       cpu_weight_matmul_grad};
static const weight_gemms gemms_bf16 = {lc_cpu_weight_scratch_bf16, lc_cpu_weight_matmul_bf16,
                                        lc_cpu_weight_matmul_grad_bf16};

static size_t ce_scratch(int64_t N, int64_t C, int64_t V, const lc_weight *W,
                         const weight_gemms *g)
{
    (void)N; /* chunks of rows: the same for any N */
    int64_t r = cpu_ce_chunk_rows(V);
    return (size_t)(r * V + 2 * r * C) + g->scratch(W);
}
static size_t cpu_ce_scratch(int64_t N, int64_t C, int64_t V, const lc_weight *W)
{
    return ce_scratch(N, C, V, W, &gemms_f32);
}
static size_t cpu_ce_scratch_bf16(int64_t N, int64_t C, int64_t V, const lc_weight *W)
{
    return ce_scratch(N, C, V, W, &gemms_bf16);
}

/* One row of soft-capped logits lr[V] (raw x·Wᵀ in, gradient out when
 * grad): z = cap·tanh(l/cap), loss = lse(z) − z[t]; lr becomes
 * grad_scale·(softmax(z) − onehot(t))·(1 − (z/cap)²). Two exps per logit
 * (the capped z must survive for the tanh derivative), only on this path.
 * Returns the row's loss. */
static double ce_row_capped(lc_real *restrict lr, int64_t V, int32_t t, lc_real cap,
                            lc_real grad_scale, bool grad)
{
    softcap_range(lr, V, cap);
    lc_real m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (int64_t j = 0; j < V; j++)
        m = lr[j] > m ? lr[j] : m;
    lc_real sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < V; j++)
        sum += LC_EXP(lr[j] - m);
    lc_real zt = lr[t];
    if (grad) {
        lc_real k = grad_scale / sum, inv = 1 / cap;
#pragma omp simd
        for (int64_t j = 0; j < V; j++) {
            lc_real tj = lr[j] * inv;
            lr[j] = LC_EXP(lr[j] - m) * k * (1 - tj * tj);
        }
        lc_real tt = zt * inv;
        lr[t] -= grad_scale * (1 - tt * tt);
    }
    return (double)m + log((double)sum) - (double)zt;
}

/* The gradient of a softmax row, rounded to bf16 in place: e[0..V) holds
 * exp(l − max), and becomes V bf16 values k·e[j] (− grad_scale at the
 * target t) in its first 2V bytes. A piece of the row is rounded into a
 * buffer on the stack and copied down over floats already read: bf16 j lands
 * in the bytes of float j/2. */
#define CE_ROUND_PIECE 256
static void ce_row_rounded(lc_real *e, int64_t V, int64_t t, lc_real k, lc_real grad_scale)
{
    uint16_t piece[CE_ROUND_PIECE];
    for (int64_t j0 = 0; j0 < V; j0 += CE_ROUND_PIECE) {
        int64_t n = V - j0 < CE_ROUND_PIECE ? V - j0 : CE_ROUND_PIECE;
        const lc_real *ej = e + j0;
#pragma omp simd
        for (int64_t j = 0; j < n; j++)
            piece[j] = lc_f32_to_bf16((float)(ej[j] * k));
        if (t >= j0 && t < j0 + n)
            piece[t - j0] = lc_f32_to_bf16((float)(e[t] * k - grad_scale));
        memcpy((char *)e + 2 * j0, piece, (size_t)n * sizeof *piece);
    }
}

static double lm_head_ce(const lc_real *x, int64_t N, int64_t C, const lc_weight *W,
                         const int32_t *targets, lc_real grad_scale, lc_real *dx,
                         int64_t *n_supervised, lc_real *scratch, double softcap,
                         const weight_gemms *g)
{
    const lc_real cap = (lc_real)softcap;
    const int64_t V = W->rows, chunk = cpu_ce_chunk_rows(V);
    lc_real *logits = scratch, *xc = logits + chunk * V, *dxc = xc + chunk * C;
    lc_real *wscratch = dxc + chunk * C;
    int64_t rows[CE_MAX_CHUNK_ROWS];
    double total = 0;
    int64_t nsup = 0, i = 0, want = 0;
    for (int64_t r = 0; r < N; r++)
        want += targets[r] >= 0;
    const int64_t per = lc_ce_balanced_rows(want, chunk);
    /* bf16 on oneDNN: the softmax writes the gradient rounded, straight into
     * the buffer the backward product reads (the same bits as rounding the
     * f32 gradient afterwards, without writing and reading it back): row r's
     * V bf16 in the first half of its own f32 logits row, which it has read
     * by then (ce_row_rounded), so no second [chunk, V] buffer is needed */
#if !LC_REAL_IS_F64
    const bool fused = dx && g == &gemms_bf16 && cap == 0 &&
                       lc_cpu_bf16_engine_current() == LC_CPU_BF16_ONEDNN;
#endif
    while (i < N) {
        int64_t nr = 0;
        for (; i < N && nr < per; i++) {
            if (targets[i] >= 0)
                rows[nr++] = i;
        }
        if (nr == 0)
            continue;
        for (int64_t r = 0; r < nr; r++)
            memcpy(xc + r * C, x + rows[r] * C, (size_t)C * sizeof(lc_real));
        /* the products run on nm ≥ nr rows, padded (zero rows after nr:
         * their logits are exact zeros, untouched by the softmax below, and
         * their gradient rows unused): a handful of GEMM shapes over a run
         * instead of one per count of supervised rows */
        int64_t nm = lc_ce_padded_rows(nr, chunk);
        memset(xc + nr * C, 0, (size_t)((nm - nr) * C) * sizeof(lc_real));
        g->matmul(xc, nm, W, 0, logits, wscratch);
        bool rounded = false; /* the gradient rounded in place: [nm, V], row stride 2V bf16 */
#if !LC_REAL_IS_F64
        rounded = fused; /* padding rows: their zero logits, read as bf16, are zeros */
#endif
        double chunk_loss = 0;
#pragma omp parallel for schedule(static) reduction(+ : chunk_loss) if (nr * V >= PAR_MIN)
        for (int64_t r = 0; r < nr; r++) {
            lc_real *lr = logits + r * V;
            int32_t t = targets[rows[r]];
            LC_ASSERT(t < V);
            if (cap != 0) {
                chunk_loss += ce_row_capped(lr, V, t, cap, grad_scale, dx != NULL);
                continue;
            }
            lc_real m = -INFINITY;
#pragma omp simd reduction(max : m)
            for (int64_t j = 0; j < V; j++)
                m = lr[j] > m ? lr[j] : m;
            lc_real target_logit = lr[t];
            /* One exp per logit: keep e = exp(l − max) for the gradient. */
            lc_real sum = 0;
#pragma omp simd reduction(+ : sum)
            for (int64_t j = 0; j < V; j++) {
                lc_real e = LC_EXP(lr[j] - m);
                lr[j] = e;
                sum += e;
            }
            double lse = (double)m + log((double)sum);
            chunk_loss += lse - (double)target_logit;
            if (!dx)
                continue;
            lc_real k = grad_scale / sum;
            if (rounded) {
                ce_row_rounded(lr, V, t, k, grad_scale);
            } else {
#pragma omp simd
                for (int64_t j = 0; j < V; j++)
                    lr[j] *= k;
                lr[t] -= grad_scale;
            }
        }
        total += chunk_loss;
        nsup += nr;
        if (dx) {
#if !LC_REAL_IS_F64
            if (rounded)
                lc_cpu_weight_matmul_grad_bf16_rounded((const uint16_t *)logits, 2 * V, nm, W, 0,
                                                        dxc, wscratch);
            else
#endif
                g->matmul_grad(logits, nm, W, 0, dxc, wscratch);
            for (int64_t r = 0; r < nr; r++)
                cpu_axpy(C, 1, dxc + r * C, dx + rows[r] * C);
        }
    }
    if (n_supervised)
        *n_supervised = nsup;
    return total;
}

static double cpu_lm_head_ce(const lc_real *x, int64_t N, int64_t C, const lc_weight *W,
                             const int32_t *targets, lc_real grad_scale, lc_real *dx,
                             int64_t *n_supervised, lc_real *scratch, double softcap)
{
    return lm_head_ce(x, N, C, W, targets, grad_scale, dx, n_supervised, scratch, softcap,
                      &gemms_f32);
}
static double cpu_lm_head_ce_bf16(const lc_real *x, int64_t N, int64_t C, const lc_weight *W,
                                  const int32_t *targets, lc_real grad_scale, lc_real *dx,
                                  int64_t *n_supervised, lc_real *scratch, double softcap)
{
    return lm_head_ce(x, N, C, W, targets, grad_scale, dx, n_supervised, scratch, softcap,
                      &gemms_bf16);
}

static void cpu_embedding(const lc_weight *E, const int32_t *ids, int64_t N, lc_real *x)
{
#pragma omp parallel for schedule(static) if (N * E->cols >= PAR_MIN)
    for (int64_t i = 0; i < N; i++)
        lc_weight_rows_to_real(E, ids[i], ids[i] + 1, x + i * E->cols);
}

static void dropout_range(const lc_real *restrict src, lc_real *restrict dst, int64_t i0,
                          int64_t n, uint32_t key, uint32_t threshold, lc_real keep_scale,
                          bool accumulate)
{
    /* keep when the top 24 bits of the hash are ≥ p·2^24 */
    if (accumulate) {
        for (int64_t i = 0; i < n; i++)
            dst[i] += (lc_hash32(key ^ (uint32_t)(i0 + i)) >> 8) >= threshold ? src[i] * keep_scale : 0;
    } else {
        for (int64_t i = 0; i < n; i++)
            dst[i] = (lc_hash32(key ^ (uint32_t)(i0 + i)) >> 8) >= threshold ? src[i] * keep_scale : 0;
    }
}

static void cpu_dropout(const lc_real *src, lc_real *dst, int64_t n, double p,
                  uint64_t seed, bool accumulate)
{
    lc_real keep_scale = (lc_real)(1.0 / (1.0 - p));
    uint64_t mixed = lc_splitmix64(seed);
    uint32_t key = (uint32_t)(mixed ^ (mixed >> 32));
    uint32_t threshold = (uint32_t)ceil(p * 16777216.0);
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (int64_t c = 0; c < n; c += CHUNK)
        dropout_range(src + c, dst + c, c, n - c < CHUNK ? n - c : CHUNK, key, threshold,
                      keep_scale, accumulate);
}

/* ---- DoRA ---- */

static size_t cpu_dora_norm_scratch(const lc_weight *W)
{
    return (size_t)(lc_cpu_weight_tile_rows(W) * W->cols);
}

static void cpu_dora_norm(const lc_weight *W, const lc_real *A, const lc_real *B, int64_t R,
                          lc_real s, lc_real *c, lc_real *scratch)
{
    int64_t in = W->cols, out = W->rows, tr = lc_cpu_weight_tile_rows(W);
    for (int64_t r0 = 0; r0 < out; r0 += tr) {
        int64_t r1 = r0 + tr < out ? r0 + tr : out;
        lc_weight_rows_to_real(W, r0, r1, scratch);                    /* [r1-r0, in] */
        cpu_gemm(false, false, r1 - r0, in, R, s, B + r0 * R, R, A, in, 1, scratch, in);
#pragma omp parallel for schedule(static) if ((r1 - r0) * in >= PAR_MIN)
        for (int64_t r = r0; r < r1; r++) {
            const lc_real *w = scratch + (r - r0) * in;
            double ss = 0;
#pragma omp simd reduction(+ : ss)
            for (int64_t i = 0; i < in; i++)
                ss += (double)w[i] * w[i];
            c[r] = (lc_real)sqrt(ss);
        }
    }
}

static void cpu_dora_combine(int64_t N, int64_t O, const lc_real *g, const lc_real *u,
                             const lc_real *v, lc_real *y)
{
#pragma omp parallel for schedule(static) if (N * O >= PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const lc_real *un = u + n * O, *vn = v + n * O;
        lc_real *yn = y + n * O;
#pragma omp simd
        for (int64_t o = 0; o < O; o++)
            yn[o] += (g[o] - 1) * un[o] + g[o] * vn[o];
    }
}

static void cpu_col_scale(int64_t N, int64_t O, const lc_real *dy, const lc_real *g,
                          lc_real shift, lc_real *out)
{
#pragma omp parallel for schedule(static) if (N * O >= PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
#pragma omp simd
        for (int64_t o = 0; o < O; o++)
            out[n * O + o] = dy[n * O + o] * (g[o] + shift);
    }
}

static void cpu_dora_mag_grad(int64_t N, int64_t O, const lc_real *dy, const lc_real *u,
                              const lc_real *c, lc_real *dm)
{
    /* columns split over threads, rows summed in order: deterministic */
#pragma omp parallel for schedule(static) if (N * O >= PAR_MIN)
    for (int64_t o0 = 0; o0 < O; o0 += 64) {
        int64_t o1 = o0 + 64 < O ? o0 + 64 : O;
        double acc[64] = {0};
        for (int64_t n = 0; n < N; n++)
            for (int64_t o = o0; o < o1; o++)
                acc[o - o0] += (double)dy[n * O + o] * u[n * O + o];
        for (int64_t o = o0; o < o1; o++)
            dm[o] += (lc_real)(acc[o - o0] / c[o]);
    }
}

static void cpu_adamw(int64_t n, lc_real *params, const lc_real *grads, lc_real *m, lc_real *v,
                      const lc_adamw_hparams *hp, int64_t step, double lr)
{
    const double bc1 = 1.0 - pow(hp->beta1, (double)step);
    const double bc2 = 1.0 - pow(hp->beta2, (double)step);
    const lc_real decay = (lc_real)(1.0 - lr * hp->weight_decay);
    /* torch's kernel: exp_avg.lerp_(g, 1−β1); exp_avg_sq·β2 + (1−β2)·g²; the
     * (1−β) weights are formed in double before rounding, as torch does */
    const lc_real w1 = (lc_real)(1.0 - hp->beta1), b2 = (lc_real)hp->beta2;
    const lc_real w2 = (lc_real)(1.0 - hp->beta2);
    const lc_real step_size = (lc_real)(lr / bc1);
    const lc_real bc2_sqrt = (lc_real)sqrt(bc2);
    const lc_real eps = (lc_real)hp->eps;
#pragma omp parallel for simd schedule(static) if (n >= 65536)
    for (int64_t i = 0; i < n; i++) {
        lc_real g = grads[i];
        lc_real p = params[i] * decay;
        m[i] = m[i] + w1 * (g - m[i]);
        v[i] = v[i] * b2 + w2 * g * g;
        lc_real denom = (lc_real)sqrt(v[i]) / bc2_sqrt + eps;
        params[i] = p - step_size * (m[i] / denom);
    }
}

static double cpu_sum_squares(int64_t n, const lc_real *g)
{
    double s = 0;
#pragma omp parallel for simd reduction(+ : s) schedule(static) if (n >= 65536)
    for (int64_t i = 0; i < n; i++)
        s += (double)g[i] * (double)g[i];
    return s;
}

#ifndef LC_CPU_VARIANT
#error "kernels_cpu.c is compiled per variant: LC_CPU_VARIANT must name it (see CMakeLists.txt)"
#endif
#define LC_CPU_CAT2(a, b) a##b
#define LC_CPU_CAT(a, b) LC_CPU_CAT2(a, b)

/* ---- the cores' multiply-add peak (dispatch.h lc_cpu_fma_peak_gflops) ---- */

#if defined(__AVX512F__)
#include <immintrin.h>
typedef __m512 peak_vec;
#define PEAK_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define PEAK_SET1(x) _mm512_set1_ps(x)
#elif defined(__FMA__) && defined(__AVX__)
#include <immintrin.h>
typedef __m256 peak_vec;
#define PEAK_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define PEAK_SET1(x) _mm256_set1_ps(x)
#else /* no fused multiply-add in this variant: a multiply and an add, the same two FLOPs */
typedef float peak_vec __attribute__((vector_size(16)));
#define PEAK_FMA(a, b, c) ((a) * (b) + (c))
#define PEAK_SET1(x) ((peak_vec){(x), (x), (x), (x)})
#endif
/* Independent accumulator chains: more than FMA units × latency on any core. */
#define PEAK_CHAINS 12

/* iters rounds of PEAK_CHAINS independent multiply-adds on every thread;
 * the seconds the slowest took. a·b + c with b = 1 − 2^-20, c = 2^-20 stays
 * near 1 (no overflow, no subnormals). The factor is read from io[64] after
 * the start barrier and the sums stored to io before the end one: the
 * compiler may not move the chains out of the timed span. */
static double peak_run(int64_t iters, volatile float *io)
{
    double t0 = 0, t1 = 0;
#pragma omp parallel
    {
        peak_vec acc[PEAK_CHAINS];
        for (int i = 0; i < PEAK_CHAINS; i++)
            acc[i] = PEAK_SET1(1.0f + (float)i * 0x1p-10f);
#pragma omp barrier
#pragma omp master
        t0 = omp_get_wtime();
        const peak_vec b = PEAK_SET1(io[64]), c = PEAK_SET1(0x1p-20f);
        for (int64_t k = 0; k < iters; k++)
#pragma GCC unroll 16
            for (int i = 0; i < PEAK_CHAINS; i++)
                acc[i] = PEAK_FMA(acc[i], b, c);
        float s = 0;
        for (int i = 0; i < PEAK_CHAINS; i++)
            s += acc[i][0];
        io[omp_get_thread_num() % 64] = s;
#pragma omp barrier
#pragma omp master
        t1 = omp_get_wtime();
    }
    return t1 - t0;
}

double LC_CPU_CAT(lc_cpu_fma_peak_gflops_, LC_CPU_VARIANT)(void)
{
    static volatile float io[65];
    io[64] = 1.0f - 0x1p-20f;
    int64_t iters = 1 << 16;
    while (peak_run(iters, io) < 0.05 && iters < ((int64_t)1 << 40))
        iters *= 2;
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        double t = peak_run(iters, io);
        best = t < best ? t : best;
    }
    double lanes = (double)(sizeof(peak_vec) / sizeof(float));
    return 2.0 * lanes * PEAK_CHAINS * (double)iters * omp_get_max_threads() / best / 1e9;
}

/* Every entry but the frozen-weight products, shared by the two tables. */
#define CPU_COMMON_ENTRIES \
    .gemm = cpu_gemm, \
    .rmsnorm_fwd = cpu_rmsnorm_fwd, \
    .rmsnorm_bwd = cpu_rmsnorm_bwd, \
    .swiglu_fwd = cpu_swiglu_fwd, \
    .swiglu_bwd = cpu_swiglu_bwd, \
    .geglu_tanh_fwd = cpu_geglu_tanh_fwd, \
    .geglu_tanh_bwd = cpu_geglu_tanh_bwd, \
    .softcap = cpu_softcap, \
    .rope = cpu_rope, \
    .attention_scratch = cpu_attention_scratch, \
    .ce_chunk_rows = cpu_ce_chunk_rows, \
    .embedding = cpu_embedding, \
    .dropout = cpu_dropout, \
    .axpy = cpu_axpy, \
    .add = cpu_add, \
    .scale = cpu_scale, \
    .div = cpu_div, \
    .add_bias = cpu_add_bias, \
    .cols = cpu_cols, \
    .gather_rows = cpu_gather_rows, \
    .scatter_add_rows = cpu_scatter_add_rows, \
    .gather_add_rows = cpu_gather_add_rows, \
    .row_dots = cpu_row_dots, \
    .dora_norm_scratch = cpu_dora_norm_scratch, \
    .dora_norm = cpu_dora_norm, \
    .dora_combine = cpu_dora_combine, \
    .col_scale = cpu_col_scale, \
    .dora_mag_grad = cpu_dora_mag_grad, \
    .adamw = cpu_adamw, \
    .sum_squares = cpu_sum_squares

/* A variant's table: the common entries, the frozen-weight products and
 * attention (whose blocks' products follow the compute dtype too). */
#define CPU_TABLE(name, wscratch, wmatmul, wmatmul_grad, cescratch, lmhead, attn_fwd, attn_bwd) \
    const lc_kernels name = {CPU_COMMON_ENTRIES,       .weight_scratch = (wscratch),        \
                             .weight_matmul = (wmatmul), .weight_matmul_grad = (wmatmul_grad), \
                             .ce_scratch = (cescratch), .lm_head_ce = (lmhead),             \
                             .attention_fwd = (attn_fwd), .attention_bwd = (attn_bwd)}

/* float32: oneDNN's matmul and OpenBLAS (cpu_gemm chooses). */
CPU_TABLE(LC_CPU_CAT(lc_cpu_kernels_, LC_CPU_VARIANT), cpu_weight_scratch, cpu_weight_matmul,
          cpu_weight_matmul_grad, cpu_ce_scratch, cpu_lm_head_ce, cpu_attention_fwd,
          cpu_attention_bwd);

/* compute_dtype bfloat16: the frozen-weight products (linears and the
 * lm_head) and attention's as bf16 GEMMs (gemm_bf16.h); activations stay
 * f32. */
CPU_TABLE(LC_CPU_CAT(LC_CPU_CAT(lc_cpu_kernels_, LC_CPU_VARIANT), _bf16),
          lc_cpu_weight_scratch_bf16, lc_cpu_weight_matmul_bf16, lc_cpu_weight_matmul_grad_bf16,
          cpu_ce_scratch_bf16, cpu_lm_head_ce_bf16, cpu_attention_fwd_bf16,
          cpu_attention_bwd_bf16);

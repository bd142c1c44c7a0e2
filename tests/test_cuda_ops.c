/* test_cuda_ops.c — every CUDA kernel (autograd/cuda/cuda_kernels.h) against
 * its CPU counterpart (autograd/kernels.h, optim/adamw.h) on random data.
 *
 * Inputs are drawn in f32 and, for the bf16 runs, rounded to bf16 first, so
 * the CPU reference sees exactly the values the GPU sees and the comparison
 * measures only the kernel's own rounding: normalized error ‖gpu − cpu‖/‖cpu‖
 * below 1e-2 for bf16 outputs and 1e-5 for the f32 variants (the
 * `compute_dtype: float32` check mode). Small shapes, odd sizes on purpose
 * (not multiples of 32, partial tiles, several tiles via the debug limits).
 *
 * Criterion forks per test, so each test makes its own CUDA context; with no
 * device (or a build without CUDA) every test skips. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

#if !defined(LORAC_HAVE_CUDA) || !LORAC_HAVE_CUDA

Test(cuda, skipped) { cr_skip("built without CUDA"); }

#else

#include "autograd/cuda/cuda_kernels.h"
#include "autograd/dtype.h"
#include "autograd/kernels.h"
#include "optim/adamw.h"

/* ---------------------------------------------------------------- harness */

#define MAX_BUFS 1024
static void *g_bufs[MAX_BUFS];
static int g_nbufs;

static lc_cuda_ctx *ctx_or_skip(void)
{
    if (lc_cuda_device_count() == 0)
        cr_skip("no CUDA device");
    lc_error err = {{0}};
    lc_cuda_ctx *c = NULL;
    cr_assert_eq(lc_cuda_ctx_init(&c, 0, 0, &err), 0, "ctx init: %s", err.msg);
    g_nbufs = 0;
    return c;
}

static void done(lc_cuda_ctx *c)
{
    for (int i = 0; i < g_nbufs; i++)
        lc_cuda_free(g_bufs[i]);
    g_nbufs = 0;
    lc_cuda_debug_limits(0, 0);
    lc_cuda_ctx_free(c);
}

#define CK(c, call) cr_assert_eq((call), 0, "%s failed: %s", #call, lc_cuda_ctx_error(c))

static void *dalloc(lc_cuda_ctx *c, size_t bytes)
{
    void *p = NULL;
    CK(c, lc_cuda_malloc(c, &p, bytes));
    cr_assert_lt(g_nbufs, MAX_BUFS);
    g_bufs[g_nbufs++] = p;
    CK(c, lc_cuda_memset0(c, p, bytes));
    return p;
}

static uint64_t g_rng = 0x1234567887654321ull;
static float frand(void) /* uniform in [-1, 1) */
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

static float *hrand(size_t n, float scale)
{
    float *h = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++)
        h[i] = frand() * scale;
    return h;
}

static float *hcopy(const float *x, size_t n)
{
    float *h = malloc((n ? n : 1) * sizeof(float));
    memcpy(h, x, n * sizeof(float));
    return h;
}

static const char *dt_name(lc_cuda_dtype dt) { return dt == LC_CUDA_BF16 ? "bf16" : "f32"; }
static double tol(lc_cuda_dtype dt) { return dt == LC_CUDA_BF16 ? 1e-2 : 1e-5; }

/* Rounds host values to what dt can hold (the CPU then sees GPU inputs). */
static void round_to(lc_cuda_dtype dt, float *h, size_t n)
{
    if (dt == LC_CUDA_BF16)
        for (size_t i = 0; i < n; i++)
            h[i] = lc_bf16_to_f32(lc_f32_to_bf16(h[i]));
}

/* A device buffer of dt holding h (h must already be representable). */
static void *dup_dt(lc_cuda_ctx *c, const float *h, size_t n, lc_cuda_dtype dt)
{
    void *d = dalloc(c, n * lc_cuda_dtype_size(dt));
    if (dt == LC_CUDA_F32) {
        CK(c, lc_cuda_upload(c, d, h, n * sizeof(float)));
    } else {
        uint16_t *b = malloc((n ? n : 1) * 2);
        for (size_t i = 0; i < n; i++)
            b[i] = lc_f32_to_bf16(h[i]);
        CK(c, lc_cuda_upload(c, d, b, n * 2));
        free(b);
    }
    return d;
}

static void *dup_bytes(lc_cuda_ctx *c, const void *h, size_t bytes)
{
    void *d = dalloc(c, bytes);
    CK(c, lc_cuda_upload(c, d, h, bytes));
    return d;
}

/* Device buffer of dt → new host f32 array. */
static float *fetch(lc_cuda_ctx *c, const void *d, size_t n, lc_cuda_dtype dt)
{
    CK(c, lc_cuda_sync(c));
    float *h = malloc((n ? n : 1) * sizeof(float));
    if (dt == LC_CUDA_F32) {
        CK(c, lc_cuda_download(c, h, d, n * sizeof(float)));
    } else {
        uint16_t *b = malloc((n ? n : 1) * 2);
        CK(c, lc_cuda_download(c, b, d, n * 2));
        for (size_t i = 0; i < n; i++)
            h[i] = lc_bf16_to_f32(b[i]);
        free(b);
    }
    return h;
}

static void expect_close(const char *what, lc_cuda_dtype dt, const float *gpu, const float *cpu,
                         size_t n, double limit)
{
    for (size_t i = 0; i < n; i++)
        cr_assert(isfinite(gpu[i]), "%s (%s): element %zu is %g", what, dt_name(dt), i, gpu[i]);
    double e = lc_test_rel_err_f32(gpu, cpu, n);
    cr_expect_lt(e, limit, "%s (%s): normalized error %.3g ≥ %.3g", what, dt_name(dt), e, limit);
}

static const lc_cuda_dtype DTS[2] = {LC_CUDA_F32, LC_CUDA_BF16};

/* ---------------------------------------------------------------- device */

Test(cuda, device_query)
{
    lc_cuda_ctx *c = ctx_or_skip();
    lc_cuda_device_info info;
    lc_error err = {{0}};
    cr_assert_eq(lc_cuda_device_query(0, &info, &err), 0, "%s", err.msg);
    cr_expect_gt(strlen(info.name), 0);
    cr_expect_gt(info.total_bytes, 0);
    cr_expect_gt(info.free_bytes, 0);
    cr_expect_leq(info.free_bytes, info.total_bytes);
    cr_expect_geq(info.cc_major, 8, "kernels are built for sm_80 and newer");
    done(c);
}

Test(cuda, errors_name_the_call)
{
    lc_cuda_ctx *c = ctx_or_skip();
    void *p = NULL;
    cr_assert_neq(lc_cuda_malloc(c, &p, (size_t)1 << 62), 0);
    cr_expect(strstr(lc_cuda_ctx_error(c), "cudaMalloc") != NULL, "%s", lc_cuda_ctx_error(c));
    cr_expect(strstr(lc_cuda_ctx_error(c), "cudaErrorMemoryAllocation") != NULL, "%s",
              lc_cuda_ctx_error(c));
    lc_cuda_attn_shape s = {.B = 1, .T = 4, .H = 1, .KV = 1, .D = 256, .scale = 1};
    cr_assert_neq(lc_cuda_attention_fwd(c, LC_CUDA_F32, &s, NULL, NULL, NULL, NULL, NULL), 0);
    cr_expect(strstr(lc_cuda_ctx_error(c), "head dim") != NULL, "%s", lc_cuda_ctx_error(c));
    cr_assert_neq(lc_cuda_gemm(c, false, false, 2, 2, 2, 1, NULL, 2, NULL, 2, 0, NULL, 2,
                               LC_CUDA_F32, LC_CUDA_BF16),
                  0);
    cr_expect(strstr(lc_cuda_ctx_error(c), "unsupported dtypes") != NULL, "%s",
              lc_cuda_ctx_error(c));
    done(c);
}

Test(cuda, convert_matches_cpu_rounding)
{
    lc_cuda_ctx *c = ctx_or_skip();
    const size_t n = 5000;
    float *h = hrand(n, 100.0f);
    h[0] = 0.0f;
    h[1] = -0.0f;
    h[2] = 3.0e38f;
    h[3] = 1.0e-30f;
    float *d = dup_dt(c, h, n, LC_CUDA_F32);
    uint16_t *db = dalloc(c, n * 2);
    CK(c, lc_cuda_convert(c, LC_CUDA_BF16, db, LC_CUDA_F32, d, (int64_t)n));
    uint16_t *got = malloc(n * 2);
    CK(c, lc_cuda_sync(c));
    CK(c, lc_cuda_download(c, got, db, n * 2));
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(got[i], lc_f32_to_bf16(h[i]), "f32→bf16 of %g: %04x vs %04x", h[i], got[i],
                     lc_f32_to_bf16(h[i]));
    /* f16 → f32 and back through bf16 */
    uint16_t *hh = malloc(n * 2);
    for (size_t i = 0; i < n; i++)
        hh[i] = lc_f32_to_f16(h[i] / 100.0f);
    void *dh = dup_bytes(c, hh, n * 2);
    float *df = dalloc(c, n * 4);
    CK(c, lc_cuda_convert(c, LC_CUDA_F32, df, LC_CUDA_F16, dh, (int64_t)n));
    float *back = fetch(c, df, n, LC_CUDA_F32);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(back[i], lc_f16_to_f32(hh[i]));
    free(h), free(got), free(hh), free(back);
    done(c);
}

/* ---------------------------------------------------------------- GEMM */

static void gemm_case(lc_cuda_ctx *c, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                      lc_cuda_dtype in_dt, lc_cuda_dtype out_dt, double limit)
{
    int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
    size_t na = (size_t)((ta ? K : M) * lda), nb = (size_t)((tb ? N : K) * ldb),
           nc = (size_t)(M * ldc);
    float *A = hrand(na, 1), *B = hrand(nb, 1), *C = hrand(nc, 1);
    round_to(in_dt, A, na);
    round_to(in_dt, B, nb);
    round_to(out_dt, C, nc);
    void *dA = dup_dt(c, A, na, in_dt), *dB = dup_dt(c, B, nb, in_dt), *dC = dup_dt(c, C, nc, out_dt);
    CK(c, lc_cuda_gemm(c, ta, tb, M, N, K, 0.7f, dA, lda, dB, ldb, 0.3f, dC, ldc, in_dt, out_dt));
    float *got = fetch(c, dC, nc, out_dt);
    lc_k_gemm(ta, tb, M, N, K, 0.7f, A, lda, B, ldb, 0.3f, C, ldc);
    char what[96];
    snprintf(what, sizeof what, "gemm ta=%d tb=%d %lldx%lldx%lld in=%s", ta, tb, (long long)M,
             (long long)N, (long long)K, dt_name(in_dt));
    expect_close(what, out_dt, got, C, nc, limit);
    free(A), free(B), free(C), free(got);
}

Test(cuda, gemm_all_transposes_and_dtypes)
{
    lc_cuda_ctx *c = ctx_or_skip();
    for (int t = 0; t < 4; t++) {
        bool ta = t & 1, tb = t & 2;
        gemm_case(c, ta, tb, 37, 53, 71, LC_CUDA_F32, LC_CUDA_F32, 1e-5);
        /* bf16 inputs, f32 output: products are exact in f32, so only the
         * summation order differs from the CPU */
        gemm_case(c, ta, tb, 37, 53, 71, LC_CUDA_BF16, LC_CUDA_F32, 1e-5);
        gemm_case(c, ta, tb, 37, 53, 71, LC_CUDA_BF16, LC_CUDA_BF16, 1e-2);
    }
    gemm_case(c, false, true, 1, 300, 64, LC_CUDA_BF16, LC_CUDA_BF16, 1e-2);
    gemm_case(c, false, false, 64, 64, 0, LC_CUDA_F32, LC_CUDA_F32, 1e-6); /* K = 0: C = βC */
    done(c);
}

Test(cuda, gemm_plan_cache)
{
    lc_cuda_ctx *c = ctx_or_skip();
    int64_t h0, m0, h1, m1;
    lc_cuda_gemm_cache_stats(c, &h0, &m0);
    for (int i = 0; i < 3; i++)
        gemm_case(c, false, true, 40, 48, 56, LC_CUDA_F32, LC_CUDA_F32, 1e-5);
    lc_cuda_gemm_cache_stats(c, &h1, &m1);
    /* the ld's and the pointers' alignment are part of the key; allocations
     * are 256-aligned, so the same call hits from the second time on */
    cr_expect_eq(m1 - m0, 1, "misses %lld", (long long)(m1 - m0));
    cr_expect_eq(h1 - h0, 2, "hits %lld", (long long)(h1 - h0));
    /* more shapes than the cache holds: eviction keeps results right */
    for (int i = 0; i < 40; i++)
        gemm_case(c, i & 1, false, 8 + i, 16, 24, LC_CUDA_BF16, LC_CUDA_F32, 1e-5);
    gemm_case(c, false, true, 40, 48, 56, LC_CUDA_F32, LC_CUDA_F32, 1e-5);
    done(c);
}

/* ---------------------------------------------------------------- NF4 */

static const float NF4_CODE[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

typedef struct nf4_host {
    int64_t rows, cols, bs, nbs, nblocks, nnested;
    uint8_t *codes, *absmax_q;
    float *absmax, *nested, map[256], offset;
} nf4_host;

static void nf4_make(nf4_host *q, int64_t rows, int64_t cols, int64_t bs, bool dq)
{
    memset(q, 0, sizeof *q);
    q->rows = rows, q->cols = cols, q->bs = bs, q->nbs = 4;
    int64_t n = rows * cols;
    q->nblocks = (n + bs - 1) / bs;
    q->codes = malloc((size_t)(n + 1) / 2);
    for (int64_t i = 0; i < (n + 1) / 2; i++)
        q->codes[i] = (uint8_t)((frand() + 1.0f) * 127.99f);
    if (!dq) {
        q->absmax = hrand((size_t)q->nblocks, 1);
        for (int64_t b = 0; b < q->nblocks; b++)
            q->absmax[b] = fabsf(q->absmax[b]) + 0.01f;
    } else {
        q->nnested = (q->nblocks + q->nbs - 1) / q->nbs;
        q->absmax_q = malloc((size_t)q->nblocks);
        for (int64_t b = 0; b < q->nblocks; b++)
            q->absmax_q[b] = (uint8_t)(frand() * 127.0f + 128.0f);
        q->nested = hrand((size_t)q->nnested, 0.05f);
        for (int i = 0; i < 256; i++)
            q->map[i] = (float)(i - 128) / 128.0f;
        q->offset = 0.3f;
    }
}

static float nf4_ref(const nf4_host *q, int64_t e)
{
    uint8_t byte = q->codes[e / 2];
    int code = (e & 1) ? (byte & 15) : (byte >> 4);
    int64_t b = e / q->bs;
    float am = q->absmax ? q->absmax[b] : q->map[q->absmax_q[b]] * q->nested[b / q->nbs] + q->offset;
    return NF4_CODE[code] * am;
}

static lc_cuda_weight nf4_upload(lc_cuda_ctx *c, const nf4_host *q)
{
    lc_cuda_weight W = {.dtype = LC_CUDA_NF4, .rows = q->rows, .cols = q->cols};
    int64_t n = q->rows * q->cols;
    W.nf4.codes = dup_bytes(c, q->codes, (size_t)(n + 1) / 2);
    W.nf4.blocksize = q->bs;
    if (q->absmax) {
        W.nf4.absmax = dup_bytes(c, q->absmax, (size_t)q->nblocks * 4);
    } else {
        W.nf4.absmax_q = dup_bytes(c, q->absmax_q, (size_t)q->nblocks);
        W.nf4.nested_absmax = dup_bytes(c, q->nested, (size_t)q->nnested * 4);
        W.nf4.nested_map = dup_bytes(c, q->map, sizeof q->map);
        W.nf4.nested_blocksize = q->nbs;
        W.nf4.offset = q->offset;
    }
    return W;
}

static void nf4_free(nf4_host *q)
{
    free(q->codes), free(q->absmax_q), free(q->absmax), free(q->nested);
}

Test(cuda, nf4_dequant_rows_exact)
{
    lc_cuda_ctx *c = ctx_or_skip();
    for (int dq = 0; dq < 2; dq++) {
        nf4_host q;
        nf4_make(&q, 9, 51, 64, dq); /* odd cols: rows start mid-byte and mid-block */
        lc_cuda_weight W = nf4_upload(c, &q);
        int64_t r0 = 2, r1 = 8, n = (r1 - r0) * q.cols;
        for (int k = 0; k < 2; k++) {
            lc_cuda_dtype dt = DTS[k];
            void *d = dalloc(c, (size_t)n * lc_cuda_dtype_size(dt));
            CK(c, lc_cuda_weight_rows(c, &W, r0, r1, dt, d));
            float *got = fetch(c, d, (size_t)n, dt);
            for (int64_t i = 0; i < n; i++) {
                float ref = nf4_ref(&q, r0 * q.cols + i);
                if (dt == LC_CUDA_BF16)
                    ref = lc_bf16_to_f32(lc_f32_to_bf16(ref));
                cr_assert_eq(got[i], ref, "nf4 (double quant %d, %s) element %lld: %g vs %g", dq,
                             dt_name(dt), (long long)i, got[i], ref);
            }
            free(got);
        }
        nf4_free(&q);
    }
    done(c);
}

/* ---------------------------------------------------------------- weight matmul */

/* A weight of dtype wdt on the device from f32 values w (rounded in place to
 * what wdt holds, so w is the exact reference). */
static lc_cuda_weight weight_upload(lc_cuda_ctx *c, float *w, int64_t rows, int64_t cols,
                                    lc_cuda_dtype wdt)
{
    lc_cuda_weight W = {.dtype = wdt, .rows = rows, .cols = cols};
    size_t n = (size_t)(rows * cols);
    if (wdt == LC_CUDA_F16) {
        uint16_t *h = malloc(n * 2);
        for (size_t i = 0; i < n; i++) {
            h[i] = lc_f32_to_f16(w[i]);
            w[i] = lc_f16_to_f32(h[i]);
        }
        W.data = dup_bytes(c, h, n * 2);
        free(h);
    } else {
        round_to(wdt, w, n);
        W.data = dup_dt(c, w, n, wdt);
    }
    return W;
}

Test(cuda, weight_matmul_every_weight_dtype)
{
    lc_cuda_ctx *c = ctx_or_skip();
    const int64_t N = 19, in = 80, out = 96;
    lc_cuda_debug_limits(in * 25, 0); /* 25-row tiles: four tiles, the last partial */
    for (int wk = 0; wk < 4; wk++) {
        for (int k = 0; k < 2; k++) {
            lc_cuda_dtype dt = DTS[k];
            float *w;
            lc_cuda_weight W;
            nf4_host q;
            if (wk < 3) {
                const lc_cuda_dtype wdts[3] = {LC_CUDA_F32, LC_CUDA_BF16, LC_CUDA_F16};
                w = hrand((size_t)(out * in), 0.2f);
                W = weight_upload(c, w, out, in, wdts[wk]);
            } else {
                nf4_make(&q, out, in, 64, true);
                W = nf4_upload(c, &q);
                w = malloc((size_t)(out * in) * sizeof(float));
                for (int64_t e = 0; e < out * in; e++)
                    w[e] = nf4_ref(&q, e);
                nf4_free(&q);
            }
            /* the GPU converts W to dt before the GEMM: so must the reference */
            round_to(dt, w, (size_t)(out * in));
            float *x = hrand((size_t)(N * in), 1), *y = hrand((size_t)(N * out), 1);
            float *dy = hrand((size_t)(N * out), 1), *dx = hrand((size_t)(N * in), 1);
            round_to(dt, x, (size_t)(N * in));
            round_to(dt, y, (size_t)(N * out));
            round_to(dt, dy, (size_t)(N * out));
            round_to(dt, dx, (size_t)(N * in));
            void *dX = dup_dt(c, x, (size_t)(N * in), dt), *dY = dup_dt(c, y, (size_t)(N * out), dt);
            void *dDY = dup_dt(c, dy, (size_t)(N * out), dt), *dDX = dup_dt(c, dx, (size_t)(N * in), dt);
            size_t sb = lc_cuda_weight_scratch_bytes(&W, dt);
            void *scr = sb ? dalloc(c, sb) : NULL;
            CK(c, lc_cuda_weight_matmul(c, dt, dX, N, &W, 1.0f, dY, scr));
            CK(c, lc_cuda_weight_matmul_grad(c, dt, dDY, N, &W, dDX, scr));
            float *gy = fetch(c, dY, (size_t)(N * out), dt), *gdx = fetch(c, dDX, (size_t)(N * in), dt);
            lc_k_gemm(false, true, N, out, in, 1, x, in, w, in, 1, y, out);
            lc_k_gemm(false, false, N, in, out, 1, dy, out, w, in, 1, dx, in);
            char what[64];
            snprintf(what, sizeof what, "weight_matmul W kind %d", wk);
            expect_close(what, dt, gy, y, (size_t)(N * out), tol(dt));
            snprintf(what, sizeof what, "weight_matmul_grad W kind %d", wk);
            expect_close(what, dt, gdx, dx, (size_t)(N * in), tol(dt));
            free(w), free(x), free(y), free(dy), free(dx), free(gy), free(gdx);
        }
    }
    done(c);
}

/* ---------------------------------------------------------------- RMSNorm, SwiGLU */

Test(cuda, rmsnorm_fwd_bwd)
{
    lc_cuda_ctx *c = ctx_or_skip();
    const int64_t N = 33, C = 200;
    for (int k = 0; k < 2; k++) {
        lc_cuda_dtype dt = DTS[k];
        float *x = hrand((size_t)(N * C), 2), *w = hrand((size_t)C, 0.5f);
        for (int64_t i = 0; i < C; i++)
            w[i] += 1.0f;
        float *dy = hrand((size_t)(N * C), 1), *dx = hrand((size_t)(N * C), 1);
        round_to(dt, x, (size_t)(N * C));
        round_to(dt, w, (size_t)C);
        round_to(dt, dy, (size_t)(N * C));
        round_to(dt, dx, (size_t)(N * C));
        void *dX = dup_dt(c, x, (size_t)(N * C), dt), *dW = dup_dt(c, w, (size_t)C, dt);
        void *dY = dalloc(c, (size_t)(N * C) * lc_cuda_dtype_size(dt));
        float *dR = dalloc(c, (size_t)N * 4);
        void *dDY = dup_dt(c, dy, (size_t)(N * C), dt), *dDX = dup_dt(c, dx, (size_t)(N * C), dt);
        CK(c, lc_cuda_rmsnorm_fwd(c, dt, dX, dW, N, C, 1e-5, dY, dR));
        CK(c, lc_cuda_rmsnorm_bwd(c, dt, dX, dW, dR, dDY, N, C, dDX));
        float *gy = fetch(c, dY, (size_t)(N * C), dt), *gr = fetch(c, dR, (size_t)N, LC_CUDA_F32);
        float *gdx = fetch(c, dDX, (size_t)(N * C), dt);
        float *y = malloc((size_t)(N * C) * 4), *r = malloc((size_t)N * 4);
        lc_k_rmsnorm_fwd(x, w, N, C, 1e-5, y, r);
        lc_k_rmsnorm_bwd(x, w, r, dy, N, C, dx);
        expect_close("rmsnorm y", dt, gy, y, (size_t)(N * C), tol(dt));
        expect_close("rmsnorm rstd", LC_CUDA_F32, gr, r, (size_t)N, 1e-5);
        expect_close("rmsnorm dx", dt, gdx, dx, (size_t)(N * C), tol(dt));
        free(x), free(w), free(dy), free(dx), free(gy), free(gr), free(gdx), free(y), free(r);
    }
    done(c);
}

/* A gated activation (act(g)·u) on the GPU against its CPU kernels. */
typedef struct gated_impl {
    const char *name;
    __typeof__(lc_cuda_swiglu_fwd) *gpu_fwd;
    __typeof__(lc_cuda_swiglu_bwd) *gpu_bwd;
    __typeof__(lc_k_swiglu_fwd) *cpu_fwd;
    __typeof__(lc_k_swiglu_bwd) *cpu_bwd;
} gated_impl;

static void gated_case(lc_cuda_ctx *c, const gated_impl *im)
{
    const int64_t n = 1000;
    char what[64];
    for (int k = 0; k < 2; k++) {
        lc_cuda_dtype dt = DTS[k];
        float *g = hrand(n, 4), *u = hrand(n, 2), *dy = hrand(n, 1), *dg = hrand(n, 1),
              *du = hrand(n, 1);
        round_to(dt, g, n), round_to(dt, u, n), round_to(dt, dy, n), round_to(dt, dg, n),
            round_to(dt, du, n);
        void *dG = dup_dt(c, g, n, dt), *dU = dup_dt(c, u, n, dt), *dDY = dup_dt(c, dy, n, dt);
        void *dDG = dup_dt(c, dg, n, dt), *dDU = dup_dt(c, du, n, dt);
        void *dDG2 = dup_dt(c, dg, n, dt);
        void *dY = dalloc(c, n * lc_cuda_dtype_size(dt));
        CK(c, im->gpu_fwd(c, dt, dG, dU, n, dY));
        CK(c, im->gpu_bwd(c, dt, dG, dU, dDY, n, dDG, dDU));
        CK(c, im->gpu_bwd(c, dt, dG, dU, dDY, n, dDG2, NULL));
        float *gy = fetch(c, dY, n, dt), *gdg = fetch(c, dDG, n, dt), *gdu = fetch(c, dDU, n, dt);
        float *gdg2 = fetch(c, dDG2, n, dt);
        float *y = malloc(n * 4);
        im->cpu_fwd(g, u, n, y);
        im->cpu_bwd(g, u, dy, n, dg, du);
        snprintf(what, sizeof what, "%s y", im->name);
        expect_close(what, dt, gy, y, n, tol(dt));
        snprintf(what, sizeof what, "%s dg", im->name);
        expect_close(what, dt, gdg, dg, n, tol(dt));
        snprintf(what, sizeof what, "%s du", im->name);
        expect_close(what, dt, gdu, du, n, tol(dt));
        snprintf(what, sizeof what, "%s dg (du NULL)", im->name);
        expect_close(what, dt, gdg2, dg, n, tol(dt));
        free(g), free(u), free(dy), free(dg), free(du), free(gy), free(gdg), free(gdu), free(gdg2),
            free(y);
    }
}

Test(cuda, swiglu_fwd_bwd)
{
    lc_cuda_ctx *c = ctx_or_skip();
    const gated_impl im = {"swiglu", lc_cuda_swiglu_fwd, lc_cuda_swiglu_bwd, lc_k_swiglu_fwd,
                           lc_k_swiglu_bwd};
    gated_case(c, &im);
    done(c);
}

Test(cuda, geglu_tanh_fwd_bwd)
{
    lc_cuda_ctx *c = ctx_or_skip();
    const gated_impl im = {"geglu_tanh", lc_cuda_geglu_tanh_fwd, lc_cuda_geglu_tanh_bwd,
                           lc_k_geglu_tanh_fwd, lc_k_geglu_tanh_bwd};
    gated_case(c, &im);
    done(c);
}

/* ---------------------------------------------------------------- RoPE, add, embedding, dropout */

Test(cuda, rope_forward_inverse_inplace)
{
    lc_cuda_ctx *c = ctx_or_skip();
    const int64_t N = 20, P = 64;
    const int heads = 3, D = 16;
    float *cs = malloc((size_t)(P * D) * 4);
    for (int64_t p = 0; p < P; p++)
        for (int j = 0; j < D / 2; j++) {
            double f = (double)p * pow(10000.0, -2.0 * j / D);
            cs[p * D + j] = (float)cos(f);
            cs[p * D + D / 2 + j] = (float)sin(f);
        }
    int32_t pos[20];
    for (int i = 0; i < 20; i++)
        pos[i] = (int32_t)((frand() + 1.0f) * 31.9f);
    float *dCS = dup_dt(c, cs, (size_t)(P * D), LC_CUDA_F32);
    int32_t *dPos = dup_bytes(c, pos, sizeof pos);
    size_t n = (size_t)(N * heads * D);
    for (int k = 0; k < 2; k++) {
        lc_cuda_dtype dt = DTS[k];
        float *x = hrand(n, 1), *acc = hrand(n, 1);
        round_to(dt, x, n), round_to(dt, acc, n);
        void *dX = dup_dt(c, x, n, dt), *dA = dup_dt(c, acc, n, dt), *dIn = dup_dt(c, x, n, dt);
        void *dY = dalloc(c, n * lc_cuda_dtype_size(dt));
        CK(c, lc_cuda_rope(c, dt, dX, dY, N, heads, D, dPos, dCS, false, false));
        CK(c, lc_cuda_rope(c, dt, dX, dA, N, heads, D, dPos, dCS, true, true));
        CK(c, lc_cuda_rope(c, dt, dIn, dIn, N, heads, D, dPos, dCS, false, false));
        float *gy = fetch(c, dY, n, dt), *ga = fetch(c, dA, n, dt), *gin = fetch(c, dIn, n, dt);
        float *y = malloc(n * 4);
        lc_k_rope(x, y, N, heads, D, pos, cs, false, false);
        lc_k_rope(x, acc, N, heads, D, pos, cs, true, true);
        expect_close("rope", dt, gy, y, n, tol(dt));
        expect_close("rope inverse accumulate", dt, ga, acc, n, tol(dt));
        expect_close("rope in place", dt, gin, y, n, tol(dt));
        free(x), free(acc), free(gy), free(ga), free(gin), free(y);
    }
    free(cs);
    done(c);
}

Test(cuda, axpy_add_bias)
{
    lc_cuda_ctx *c = ctx_or_skip();
    const int64_t N = 7, O = 45, n = N * O;
    for (int k = 0; k < 2; k++) {
        lc_cuda_dtype dt = DTS[k];
        float *a = hrand(n, 1), *b = hrand(n, 1), *bias = hrand(O, 1);
        round_to(dt, a, n), round_to(dt, b, n), round_to(dt, bias, O);
        void *dA = dup_dt(c, a, n, dt), *dB = dup_dt(c, b, n, dt), *dBias = dup_dt(c, bias, O, dt);
        void *dS = dalloc(c, n * lc_cuda_dtype_size(dt));
        CK(c, lc_cuda_add(c, dt, n, dA, dB, dS));
        CK(c, lc_cuda_axpy(c, dt, n, -0.5f, dA, dB));
        CK(c, lc_cuda_add_bias(c, dt, N, O, dBias, dA));
        float *gs = fetch(c, dS, n, dt), *gb = fetch(c, dB, n, dt), *ga = fetch(c, dA, n, dt);
        float *s = malloc(n * 4);
        for (int64_t i = 0; i < n; i++)
            s[i] = a[i] + b[i];
        lc_k_axpy(n, -0.5f, a, b);
        for (int64_t r = 0; r < N; r++)
            lc_k_axpy(O, 1, bias, a + r * O);
        expect_close("add", dt, gs, s, n, tol(dt));
        expect_close("axpy", dt, gb, b, n, tol(dt));
        expect_close("add_bias", dt, ga, a, n, tol(dt));
        free(a), free(b), free(bias), free(gs), free(gb), free(ga), free(s);
    }
    done(c);
}

Test(cuda, embedding_gather)
{
    lc_cuda_ctx *c = ctx_or_skip();
    const int64_t V = 50, C = 24, N = 31;
    int32_t ids[31];
    for (int i = 0; i < N; i++)
        ids[i] = (int32_t)((frand() + 1.0f) * 24.99f);
    int32_t *dIds = dup_bytes(c, ids, sizeof ids);
    for (int wk = 0; wk < 2; wk++) {
        float *e = hrand((size_t)(V * C), 1);
        lc_cuda_weight E = weight_upload(c, e, V, C, wk ? LC_CUDA_BF16 : LC_CUDA_F32);
        lc_weight Ec = {.data = e, .dtype = LC_DTYPE_F32, .rows = V, .cols = C};
        float *x = malloc((size_t)(N * C) * 4);
        lc_k_embedding(&Ec, ids, N, x);
        for (int k = 0; k < 2; k++) {
            lc_cuda_dtype dt = DTS[k];
            void *dX = dalloc(c, (size_t)(N * C) * lc_cuda_dtype_size(dt));
            CK(c, lc_cuda_embedding(c, dt, &E, dIds, N, dX));
            float *gx = fetch(c, dX, (size_t)(N * C), dt);
            float *ref = hcopy(x, (size_t)(N * C));
            round_to(dt, ref, (size_t)(N * C));
            for (int64_t i = 0; i < N * C; i++)
                cr_assert_eq(gx[i], ref[i], "embedding (%s) element %lld", dt_name(dt), (long long)i);
            free(gx), free(ref);
        }
        free(e), free(x);
    }
    done(c);
}

Test(cuda, dropout_same_mask_as_cpu)
{
    lc_cuda_ctx *c = ctx_or_skip();
    const int64_t n = 10007;
    const double ps[3] = {0.0, 0.1, 0.5};
    for (int pi = 0; pi < 3; pi++) {
        float *x = hrand(n, 1), *acc = hrand(n, 1);
        float *dX = dup_dt(c, x, n, LC_CUDA_F32), *dY = dalloc(c, n * 4);
        float *dA = dup_dt(c, acc, n, LC_CUDA_F32);
        CK(c, lc_cuda_dropout(c, LC_CUDA_F32, dX, dY, n, ps[pi], 1234 + pi, false));
        CK(c, lc_cuda_dropout(c, LC_CUDA_F32, dX, dA, n, ps[pi], 99, true));
        float *gy = fetch(c, dY, n, LC_CUDA_F32), *ga = fetch(c, dA, n, LC_CUDA_F32);
        float *y = malloc(n * 4);
        lc_k_dropout(x, y, n, ps[pi], 1234 + pi, false);
        lc_k_dropout(x, acc, n, ps[pi], 99, true);
        for (int64_t i = 0; i < n; i++) {
            cr_assert_eq(gy[i], y[i], "dropout p=%g element %lld: %g vs %g", ps[pi], (long long)i,
                         gy[i], y[i]);
            cr_assert_eq(ga[i], acc[i], "dropout accumulate p=%g element %lld", ps[pi],
                         (long long)i);
        }
        /* bf16: the same mask, values rounded */
        float *xb = hcopy(x, n);
        round_to(LC_CUDA_BF16, xb, n);
        void *dXb = dup_dt(c, xb, n, LC_CUDA_BF16), *dYb = dalloc(c, n * 2);
        CK(c, lc_cuda_dropout(c, LC_CUDA_BF16, dXb, dYb, n, ps[pi], 1234 + pi, false));
        float *gyb = fetch(c, dYb, n, LC_CUDA_BF16);
        lc_k_dropout(xb, y, n, ps[pi], 1234 + pi, false);
        for (int64_t i = 0; i < n; i++)
            cr_assert_eq(gyb[i] == 0.0f, y[i] == 0.0f, "bf16 dropout mask differs at %lld",
                         (long long)i);
        expect_close("dropout bf16", LC_CUDA_BF16, gyb, y, n, 1e-2);
        free(x), free(acc), free(gy), free(ga), free(y), free(xb), free(gyb);
    }
    done(c);
}

/* ---------------------------------------------------------------- attention */

typedef struct attn_case {
    int64_t B, T;
    int H, KV, D;
    bool segments;
    int64_t window;
    double softcap;
} attn_case;

static void attention_case(lc_cuda_ctx *c, const attn_case *ac, lc_cuda_dtype dt)
{
    const int64_t B = ac->B, T = ac->T;
    const int H = ac->H, KV = ac->KV, D = ac->D;
    size_t nq = (size_t)(B * T * H * D), nk = (size_t)(B * T * KV * D), nl = (size_t)(B * H * T);
    int32_t *seg = NULL;
    if (ac->segments) {
        seg = malloc((size_t)(B * T) * 4);
        for (int64_t b = 0; b < B; b++) {
            int32_t id = 0;
            for (int64_t t = 0; t < T; t++) {
                if (t > 0 && frand() > 0.9f)
                    id++;
                seg[b * T + t] = id;
            }
        }
    }
    lc_attn_shape s = {.B = B, .T = T, .H = H, .KV = KV, .D = D, .scale = 1.0 / sqrt((double)D),
                       .segment = seg, .window = ac->window, .softcap = ac->softcap};
    lc_cuda_attn_shape gs = {.B = B, .T = T, .H = H, .KV = KV, .D = D, .scale = s.scale,
                             .segment = seg ? dup_bytes(c, seg, (size_t)(B * T) * 4) : NULL,
                             .window = ac->window, .softcap = ac->softcap};
    float *q = hrand(nq, 1.5f), *k = hrand(nk, 1.5f), *v = hrand(nk, 1), *dout = hrand(nq, 1);
    float *dq = hrand(nq, 0.1f), *dk = hrand(nk, 0.1f), *dv = hrand(nk, 0.1f);
    round_to(dt, q, nq), round_to(dt, k, nk), round_to(dt, v, nk), round_to(dt, dout, nq);
    round_to(dt, dq, nq), round_to(dt, dk, nk), round_to(dt, dv, nk);
    void *dQ = dup_dt(c, q, nq, dt), *dK = dup_dt(c, k, nk, dt), *dV = dup_dt(c, v, nk, dt);
    void *dO = dalloc(c, nq * lc_cuda_dtype_size(dt));
    float *dL = dalloc(c, nl * 4);
    CK(c, lc_cuda_attention_fwd(c, dt, &gs, dQ, dK, dV, dO, dL));
    float *go = fetch(c, dO, nq, dt), *gl = fetch(c, dL, nl, LC_CUDA_F32);

    float *o = malloc(nq * 4), *l = malloc(nl * 4);
    lc_real *scr = malloc(lc_k_attention_scratch(&s) * sizeof(lc_real));
    lc_k_attention_fwd(&s, q, k, v, o, l, scr);
    char what[128];
    snprintf(what, sizeof what, "attention out B=%lld T=%lld H=%d KV=%d D=%d seg=%d win=%lld cap=%g",
             (long long)B, (long long)T, H, KV, D, ac->segments, (long long)ac->window,
             ac->softcap);
    expect_close(what, dt, go, o, nq, tol(dt));
    expect_close("attention lse", dt, gl, l, nl, dt == LC_CUDA_BF16 ? 1e-3 : 1e-5);

    /* backward from the same out (rounded as the GPU stores it) */
    round_to(dt, o, nq);
    void *dOut = dup_dt(c, o, nq, dt), *dDout = dup_dt(c, dout, nq, dt);
    void *dDQ = dup_dt(c, dq, nq, dt), *dDK = dup_dt(c, dk, nk, dt), *dDV = dup_dt(c, dv, nk, dt);
    void *gscr = dalloc(c, lc_cuda_attention_scratch_bytes(&gs));
    CK(c, lc_cuda_attention_bwd(c, dt, &gs, dQ, dK, dV, dOut, dL, dDout, dDQ, dDK, dDV, gscr));
    float *gdq = fetch(c, dDQ, nq, dt), *gdk = fetch(c, dDK, nk, dt), *gdv = fetch(c, dDV, nk, dt);
    lc_k_attention_bwd(&s, q, k, v, o, l, dout, dq, dk, dv, scr);
    double bt = dt == LC_CUDA_BF16 ? 1e-2 : 2e-5;
    snprintf(what, sizeof what, "attention dq D=%d seg=%d win=%lld cap=%g", D, ac->segments,
             (long long)ac->window, ac->softcap);
    expect_close(what, dt, gdq, dq, nq, bt);
    expect_close("attention dk", dt, gdk, dk, nk, bt);
    expect_close("attention dv", dt, gdv, dv, nk, bt);
    free(seg), free(q), free(k), free(v), free(dout), free(dq), free(dk), free(dv), free(go),
        free(gl), free(o), free(l), free(scr), free(gdq), free(gdk), free(gdv);
}

Test(cuda, attention_fwd_bwd)
{
    lc_cuda_ctx *c = ctx_or_skip();
    const attn_case cases[] = {
        {2, 70, 4, 2, 64, false, 0, 0},   /* GQA 2, partial last tile */
        {1, 100, 6, 2, 40, true, 0, 0},   /* D not a multiple of 32, packed segments */
        {2, 90, 4, 4, 128, false, 17, 0}, /* largest D, sliding window inside a tile */
        {1, 130, 4, 1, 32, true, 45, 0},  /* MQA, segments and a window across tiles */
        {1, 5, 2, 1, 8, false, 0, 0},     /* tiny */
        {1, 70, 2, 1, 16, false, 2, 0},   /* window 2: the last query tile a key tile sees */
        /* Gemma 2 soft-capping; scores here are O(1), so cap 0.5 is far from linear */
        {2, 70, 4, 2, 64, false, 0, 0.5},  /* causal, GQA */
        {1, 130, 4, 1, 32, true, 45, 0.5}, /* segments + window across tiles */
        {1, 90, 4, 4, 128, false, 17, 50}, /* Gemma 2's cap: nearly linear */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int k = 0; k < 2; k++)
            attention_case(c, &cases[i], DTS[k]);
    done(c);
}

/* ---------------------------------------------------------------- lm_head + CE */

Test(cuda, lm_head_ce_chunks_and_weights)
{
    lc_cuda_ctx *c = ctx_or_skip();
    const int64_t N = 40, C = 48, V = 300;
    int32_t tg[40];
    for (int i = 0; i < N; i++)
        tg[i] = (i % 5 == 1 || i < 3) ? -100 : (int32_t)((frand() + 1.0f) * 149.9f);
    int32_t *dT = dup_bytes(c, tg, sizeof tg);
    for (int chunked = 0; chunked < 2; chunked++) {
        lc_cuda_debug_limits(chunked ? C * 70 : 0, chunked ? 7 : 0);
        for (int wk = 0; wk < 3; wk++) {
            for (int k = 0; k < 2; k++) {
                lc_cuda_dtype dt = DTS[k];
                float *w;
                lc_cuda_weight W;
                if (wk < 2) {
                    w = hrand((size_t)(V * C), 0.3f);
                    W = weight_upload(c, w, V, C, wk ? LC_CUDA_BF16 : LC_CUDA_F32);
                } else {
                    nf4_host q;
                    nf4_make(&q, V, C, 64, true);
                    W = nf4_upload(c, &q);
                    w = malloc((size_t)(V * C) * 4);
                    for (int64_t e = 0; e < V * C; e++)
                        w[e] = nf4_ref(&q, e);
                    nf4_free(&q);
                }
                round_to(dt, w, (size_t)(V * C));
                float *x = hrand((size_t)(N * C), 1), *dx = hrand((size_t)(N * C), 0.01f);
                round_to(dt, x, (size_t)(N * C)), round_to(dt, dx, (size_t)(N * C));
                void *dX = dup_dt(c, x, (size_t)(N * C), dt), *dDX = dup_dt(c, dx, (size_t)(N * C), dt);
                void *scr = dalloc(c, lc_cuda_ce_scratch_bytes(dt, N, C, &W));
                double gl = 0, gl2 = 0;
                int64_t gn = 0, gn2 = 0;
                const float gsc = 1.0f / 29.0f;
                /* logits are O(1) here: cap 1 bends them hard (Gemma 2 soft-capping),
                 * on for half of the (weight kind, chunking) pairs */
                const double cap = (wk + chunked) % 2 ? 1.0 : 0.0;
                CK(c, lc_cuda_lm_head_ce(c, dt, dX, N, C, &W, dT, gsc, dDX, scr, &gl, &gn, cap));
                CK(c, lc_cuda_lm_head_ce(c, dt, dX, N, C, &W, dT, gsc, NULL, scr, &gl2, &gn2, cap));
                float *gdx = fetch(c, dDX, (size_t)(N * C), dt);
                lc_weight Wc = {.data = w, .dtype = LC_DTYPE_F32, .rows = V, .cols = C};
                lc_real *cs = malloc(lc_k_ce_scratch(C, V, &Wc) * sizeof(lc_real));
                int64_t cn = 0;
                double cl = lc_k_lm_head_ce(x, N, C, &Wc, tg, gsc, dx, &cn, cs, cap);
                cr_expect_eq(gn, cn, "supervised %lld vs %lld", (long long)gn, (long long)cn);
                cr_expect_eq(gn2, cn);
                cr_expect_leq(fabs(gl - gl2), 1e-12 * fabs(gl),
                              "loss with and without dx: %.17g vs %.17g", gl, gl2);
                double le = fabs(gl - cl) / fabs(cl);
                cr_expect_lt(le, dt == LC_CUDA_BF16 ? 1e-3 : 1e-5,
                             "lm_head_ce loss (%s, W kind %d, chunked %d, cap %g): %.9g vs %.9g",
                             dt_name(dt), wk, chunked, cap, gl, cl);
                expect_close("lm_head_ce dx", dt, gdx, dx, (size_t)(N * C), tol(dt));
                free(w), free(x), free(dx), free(gdx), free(cs);
            }
        }
    }
    /* a target outside the vocabulary is an error, not a wrong loss */
    lc_cuda_debug_limits(0, 0);
    int32_t bad[40];
    memcpy(bad, tg, sizeof bad);
    bad[7] = (int32_t)V;
    int32_t *dBad = dup_bytes(c, bad, sizeof bad);
    float *w = hrand((size_t)(V * C), 0.3f), *x = hrand((size_t)(N * C), 1);
    lc_cuda_weight W = weight_upload(c, w, V, C, LC_CUDA_F32);
    void *dX = dup_dt(c, x, (size_t)(N * C), LC_CUDA_F32);
    void *scr = dalloc(c, lc_cuda_ce_scratch_bytes(LC_CUDA_F32, N, C, &W));
    double l;
    cr_assert_neq(lc_cuda_lm_head_ce(c, LC_CUDA_F32, dX, N, C, &W, dBad, 1, NULL, scr, &l, NULL, 0), 0);
    cr_expect(strstr(lc_cuda_ctx_error(c), "target") != NULL, "%s", lc_cuda_ctx_error(c));
    free(w), free(x);
    done(c);
}

/* ---------------------------------------------------------------- optimizer */

Test(cuda, adamw_multi_tensor_matches_cpu)
{
    lc_cuda_ctx *c = ctx_or_skip();
    const int nt = 3;
    const int64_t sizes[3] = {5, 20000, 40000}; /* spans several 16 Ki chunks */
    int64_t total = 0;
    for (int i = 0; i < nt; i++)
        total += sizes[i];
    float *p = hrand((size_t)total, 0.1f);
    lc_adamw cpu;
    lc_error err;
    cr_assert_eq(lc_adamw_init(&cpu, (size_t)total, &err), 0);
    float *dp[3], *dg[3], *dm[3], *dv[3];
    int64_t off = 0;
    for (int i = 0; i < nt; i++) {
        dp[i] = dup_dt(c, p + off, (size_t)sizes[i], LC_CUDA_F32);
        dg[i] = dalloc(c, (size_t)sizes[i] * 4);
        dm[i] = dalloc(c, (size_t)sizes[i] * 4);
        dv[i] = dalloc(c, (size_t)sizes[i] * 4);
        off += sizes[i];
    }
    lc_adamw_hparams hp = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01};
    lc_cuda_adamw_hparams ghp = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01};
    for (int step = 1; step <= 3; step++) {
        float *g = hrand((size_t)total, 0.01f);
        off = 0;
        for (int i = 0; i < nt; i++) {
            CK(c, lc_cuda_upload(c, dg[i], g + off, (size_t)sizes[i] * 4));
            off += sizes[i];
        }
        double lr = 1e-3 * step;
        CK(c, lc_cuda_adamw_update(c, nt, dp, (const float *const *)dg, dm, dv, sizes, &ghp, step,
                                   lr));
        lc_adamw_update(&cpu, p, g, &hp, lr);
        free(g);
    }
    off = 0;
    for (int i = 0; i < nt; i++) {
        float *gp = fetch(c, dp[i], (size_t)sizes[i], LC_CUDA_F32);
        float *gm = fetch(c, dm[i], (size_t)sizes[i], LC_CUDA_F32);
        float *gv = fetch(c, dv[i], (size_t)sizes[i], LC_CUDA_F32);
        /* the kernel rounds every operation like the CPU build (no FMA
         * contraction, IEEE sqrt and division): bitwise equal */
        for (int64_t j = 0; j < sizes[i]; j++) {
            cr_assert_eq(gm[j], cpu.m[off + j], "adamw m tensor %d [%lld]: %.9g vs %.9g", i,
                         (long long)j, gm[j], cpu.m[off + j]);
            cr_assert_eq(gv[j], cpu.v[off + j], "adamw v tensor %d [%lld]: %.9g vs %.9g", i,
                         (long long)j, gv[j], cpu.v[off + j]);
            cr_assert_eq(gp[j], p[off + j], "adamw param tensor %d [%lld]: %.9g vs %.9g", i,
                         (long long)j, gp[j], p[off + j]);
        }
        free(gp), free(gm), free(gv);
        off += sizes[i];
    }
    lc_adamw_free(&cpu);
    free(p);
    done(c);
}

Test(cuda, grad_norm_and_clip_over_many_tensors)
{
    lc_cuda_ctx *c = ctx_or_skip();
    enum { NT = 40 }; /* more than one launch of 32 tensors */
    int64_t sizes[NT], total = 0;
    for (int i = 0; i < NT; i++) {
        sizes[i] = i == 7 ? 0 : 1 + (i * 977) % 3000 + (i == 3 ? 40000 : 0);
        total += sizes[i];
    }
    float *g = hrand((size_t)total, 1);
    float *dg[NT];
    int64_t off = 0;
    for (int i = 0; i < NT; i++) {
        dg[i] = dup_dt(c, g + off, (size_t)sizes[i], LC_CUDA_F32);
        off += sizes[i];
    }
    double gn = 0;
    CK(c, lc_cuda_grad_norm(c, NT, (const float *const *)dg, sizes, &gn));
    double cn = lc_grad_norm(g, (size_t)total);
    cr_expect_lt(fabs(gn - cn) / cn, 1e-12, "grad norm %.17g vs %.17g", gn, cn);
    double before = 0;
    CK(c, lc_cuda_grad_clip(c, NT, dg, sizes, 1.0, &before));
    double cb = lc_grad_clip(g, (size_t)total, 1.0);
    cr_expect_lt(fabs(before - cb) / cb, 1e-12);
    off = 0;
    for (int i = 0; i < NT; i++) {
        float *got = fetch(c, dg[i], (size_t)sizes[i], LC_CUDA_F32);
        for (int64_t j = 0; j < sizes[i]; j++)
            cr_assert_eq(got[j], g[off + j], "clipped grad tensor %d element %lld", i, (long long)j);
        free(got);
        off += sizes[i];
    }
    double after = 0;
    CK(c, lc_cuda_grad_norm(c, NT, (const float *const *)dg, sizes, &after));
    cr_expect_lt(fabs(after - 1.0), 1e-5, "norm after clipping %.9g", after);
    free(g);
    done(c);
}

#endif

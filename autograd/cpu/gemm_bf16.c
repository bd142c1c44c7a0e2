/* gemm_bf16.c — the CPU's bfloat16 GEMMs (see gemm_bf16.h).
 *
 * The onednn engine rounds to bf16 and multiplies on oneDNN's matmul
 * (onednn.h: the library, opened on first use, and its primitive cache).
 * The emulate engine rounds exactly the same way in lc_real and multiplies
 * through the f32 GEMM (lc_k_gemm): bf16×bf16 products are exact in f32, so
 * only the summation order differs from bf16 hardware. */
#include "autograd/cpu/gemm_bf16.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/cpu/dispatch.h"
#include "autograd/cpu/onednn.h"
#include "autograd/cpu/small_gemm_bf16.h"
#include "autograd/dtype.h"
#include "autograd/kernels.h"

#define LC_HAVE_DNNL (!LC_REAL_IS_F64)

/* Below this many elements a rounding loop runs on one thread. */
#define ROUND_PAR_MIN 65536

const char *lc_cpu_bf16_engine_name(lc_cpu_bf16_engine e)
{
    return e == LC_CPU_BF16_ONEDNN ? "onednn" : e == LC_CPU_BF16_EMULATE ? "emulate" : "off";
}

/* Whether the AVX-512 kernels of small_gemm_bf16.h run here (the CPU has
 * AVX512-BF16 and no lower kernel level is forced). */
static bool avx512_bf16_kernels(void)
{
    static int supported = -1;
    if (supported < 0)
        supported = lc_cpu_small_gemm_bf16_supported();
    return supported && !lc_cpu_isa_forced();
}

void lc_cpu_round_bf16(const float *src, int64_t n, uint16_t *dst)
{
    if (avx512_bf16_kernels()) {
        lc_cpu_round_bf16_avx512(src, n, dst, ROUND_PAR_MIN);
        return;
    }
#pragma omp parallel for schedule(static) if (n >= ROUND_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        dst[i] = lc_f32_to_bf16(src[i]);
}

/* dst[n] = src[n] rounded to bf16 and back (the emulate engine's inputs). */
static void round_real(const lc_real *src, int64_t n, lc_real *dst)
{
#pragma omp parallel for schedule(static) if (n >= ROUND_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        dst[i] = (lc_real)lc_bf16_to_f32(lc_f32_to_bf16((float)src[i]));
}

/* lc_grow that must succeed (these products have no other way to run). */
static void *grow(lc_grow_buf *b, size_t bytes)
{
    void *p = lc_grow(b, bytes);
    LC_ASSERT(p != NULL);
    return p;
}

/* The rounded activations of the GEMM in flight: one process-wide buffer
 * (weight GEMMs run one at a time, outside parallel regions). */
static lc_grow_buf act_buf;

/* ---- choosing the engine ----------------------------------------------- */

/* A switch read with the engine: auto (the CPU's rule) | on | off. */
typedef enum { SWITCH_AUTO, SWITCH_ON, SWITCH_OFF } lc_switch;
static lc_switch groups_mode, fold_mode;

static int switch_select(const char *env, lc_switch *mode, lc_error *err)
{
    const char *want = getenv(env);
    if (!want || !*want || strcmp(want, "auto") == 0)
        *mode = SWITCH_AUTO;
    else if (strcmp(want, "on") == 0)
        *mode = SWITCH_ON;
    else if (strcmp(want, "off") == 0)
        *mode = SWITCH_OFF;
    else {
        char shown[64];
        return lc_error_set(err, "%s=%s: unknown; use auto, on or off", env,
                            lc_printable(want, shown, sizeof shown));
    }
    return 0;
}

static lc_cpu_bf16_engine chosen = LC_CPU_BF16_OFF;
static char chosen_why[320] = "not selected";

lc_cpu_bf16_engine lc_cpu_bf16_engine_current(void) { return chosen; }
const char *lc_cpu_bf16_engine_why(void) { return chosen_why; }

int lc_cpu_bf16_engine_select(lc_cpu_bf16_engine *engine, char *why, size_t n, lc_error *err)
{
    char scratch[8];
    if (!why)
        why = scratch, n = sizeof scratch;
    const char *want = getenv(LC_CPU_BF16_ENV);
    if (!want || !*want)
        want = "auto";
    lc_cpu_bf16_engine e;
    if (strcmp(want, "off") == 0) {
        e = LC_CPU_BF16_OFF;
        snprintf(why, n, "%s=off", LC_CPU_BF16_ENV);
    } else if (strcmp(want, "emulate") == 0) {
        e = LC_CPU_BF16_EMULATE;
        snprintf(why, n, "%s=emulate: bf16 rounding, products on the f32 GEMM", LC_CPU_BF16_ENV);
    } else if (strcmp(want, "auto") == 0 || strcmp(want, "onednn") == 0) {
        const char *units = lc_onednn_bf16_units();
        if (!lc_onednn_available()) {
            if (want[0] == 'o')
                return lc_error_set(err, "%s=onednn: %s", LC_CPU_BF16_ENV, lc_onednn_status());
            e = LC_CPU_BF16_OFF;
            snprintf(why, n, "%s", lc_onednn_status());
        } else if (units || want[0] == 'o') {
            e = LC_CPU_BF16_ONEDNN;
            snprintf(why, n, "%s on %s", lc_onednn_status(),
                     units ? units : "no bf16 units (forced: oneDNN emulates them)");
        } else {
            e = LC_CPU_BF16_OFF;
            snprintf(why, n, "this CPU has no bf16 units (AMX or AVX512-BF16) that %s uses",
                     lc_onednn_status());
        }
    } else {
        char shown[64];
        return lc_error_set(err, "%s=%s: unknown; use auto, onednn, emulate or off",
                            LC_CPU_BF16_ENV, lc_printable(want, shown, sizeof shown));
    }
    if (switch_select(LC_CPU_BF16_GROUPS_ENV, &groups_mode, err) ||
        switch_select(LC_CPU_BF16_FOLD_ENV, &fold_mode, err))
        return -1;
    chosen = e;
    snprintf(chosen_why, sizeof chosen_why, "%s", why);
    if (avx512_bf16_kernels())
        lc_cpu_small_gemm_bf16_select();
    *engine = e;
    return 0;
}

void lc_cpu_gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                      const uint16_t *A, int64_t lda, const uint16_t *B, int64_t ldb, float beta,
                      float *C, int64_t ldc)
{
    LC_ASSERT(beta == 0 || beta == 1);
#if LC_REAL_IS_F64
    (void)trans_a, (void)trans_b, (void)M, (void)N, (void)K, (void)A, (void)lda, (void)B;
    (void)ldb, (void)C, (void)ldc;
    LC_ASSERT(!"the gradient-check build has no bf16 GEMM on bf16 inputs");
#else
    if (lc_onednn_matmul(LC_DTYPE_BF16, trans_a, trans_b, M, N, K, 1, A, lda, B, ldb, beta != 0,
                         C, ldc, false))
        return;
    static bool told;
    if (!told)
        fprintf(stderr, "lorac: warning: oneDNN has no bf16 matmul for %lldx%lldx%lld; "
                "computing such products on the f32 GEMM (same values, slower)\n",
                (long long)M, (long long)N, (long long)K);
    told = true;
    /* a shape oneDNN refused: widen and multiply in f32 */
    int64_t ar = trans_a ? K : M, br = trans_b ? N : K;
    static lc_grow_buf wide;
    float *a = grow(&wide, (size_t)(ar * lda + br * ldb) * sizeof(float)), *b = a + ar * lda;
    for (int64_t i = 0; i < ar * lda; i++)
        a[i] = lc_bf16_to_f32(A[i]);
    for (int64_t i = 0; i < br * ldb; i++)
        b[i] = lc_bf16_to_f32(B[i]);
    lc_k_gemm(trans_a, trans_b, M, N, K, 1, a, lda, b, ldb, beta, C, ldc);
#endif
}

/* ---- attention's products ------------------------------------------------ */

/* Whether attention's products run on small_gemm_bf16.h's kernel. */
static bool attn_on_units(void)
{
    return !LC_REAL_IS_F64 && chosen == LC_CPU_BF16_ONEDNN && avx512_bf16_kernels();
}

const char *lc_cpu_attn_gemm_bf16_kernel(void)
{
    if (!attn_on_units())
        return "emulated on the f32 GEMM";
    return strcmp(lc_cpu_small_gemm_bf16_units(), "AMX") == 0 ? "lorac's AMX kernel"
                                                               : "lorac's AVX512-BF16 kernel";
}

void lc_cpu_attn_gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                           lc_real alpha, const lc_real *A, int64_t lda, const lc_real *B,
                           int64_t ldb, lc_real beta, lc_real *C, int64_t ldc)
{
#if !LC_REAL_IS_F64
    if (attn_on_units()) {
        lc_cpu_small_gemm_bf16(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#endif
    /* emulate: the rounded operands, packed (ld = their columns), per thread */
    static _Thread_local lc_grow_buf buf;
    int64_t ar = trans_a ? K : M, ac = trans_a ? M : K, br = trans_b ? N : K, bc = trans_b ? K : N;
    lc_real *a = grow(&buf, (size_t)(ar * ac + br * bc) * sizeof(lc_real)), *b = a + ar * ac;
    for (int64_t r = 0; r < ar; r++)
        round_real(A + r * lda, ac, a + r * ac);
    for (int64_t r = 0; r < br; r++)
        round_real(B + r * ldb, bc, b + r * bc);
    lc_k_gemm(trans_a, trans_b, M, N, K, alpha, a, ac, b, bc, beta, C, ldc);
}

/* ---- the weight kernels -------------------------------------------------- */

static bool weight_is_bf16(const lc_weight *W)
{
    return !W->nf4 && !W->ggml && W->dtype == LC_DTYPE_BF16;
}

size_t lc_cpu_weight_scratch_bf16(const lc_weight *W)
{
    if (chosen == LC_CPU_BF16_ONEDNN && weight_is_bf16(W))
        return 0;
    /* a tile of rows as lc_real, and (onednn) the same tile as bf16 */
    size_t tile = (size_t)(lc_cpu_weight_tile_rows(W) * W->cols);
    return tile + (tile + 1) / 2;
}

/* Rows [r0, r1) of W with every element rounded to bf16: as lc_real into
 * real (emulate), or as bf16 into half (onednn; a pointer into W when it is
 * bf16 already). */
static const void *weight_tile(const lc_weight *W, int64_t r0, int64_t r1, lc_real *real,
                               uint16_t *half)
{
    int64_t n = (r1 - r0) * W->cols;
    if (chosen == LC_CPU_BF16_ONEDNN && weight_is_bf16(W))
        return (const uint16_t *)W->data + r0 * W->cols;
    lc_weight_rows_to_real(W, r0, r1, real);
    if (chosen == LC_CPU_BF16_ONEDNN) {
#if LC_HAVE_DNNL
        lc_cpu_round_bf16(real, n, half);
#endif
        return half;
    }
    round_real(real, n, real);
    return real;
}

/* The rows a weight GEMM takes at once: all of a bf16 weight on oneDNN. */
static int64_t gemm_rows(const lc_weight *W)
{
    return chosen == LC_CPU_BF16_ONEDNN && weight_is_bf16(W) ? W->rows
                                                              : lc_cpu_weight_tile_rows(W);
}

/* With AMX the primitive's brgemm runs AMX tiles and is the faster of the
 * two at the linears' shapes, the BLAS-like GEMM only where W has many rows
 * (2 Xeon cores with AMX, 2026-12-02, best of 12, dy [M,K]·W [K,N]: the
 * lm_head's 341×49152×576 30.8 → 17.3 ms, 512×16384×576 7.2 → 6.3,
 * 256×14336×4096 30.6 → 26.4; 1024×8192×576 6.5 vs 6.8, 128×32000×4096
 * equal; 1024×576×576 0.60 vs 0.85, 1024×576×1536 1.23 vs 1.59). On
 * AVX512-BF16 it is the faster or equal at every shape. */
#define AMX_GRAD_API_MIN_K 16384

/* lc_onednn_bf16_units, asked once: the dy·W rule and lora_first run per
 * product. */
static const char *onednn_units(void)
{
#if LC_HAVE_DNNL
    static const char *units;
    static bool asked;
    if (!asked)
        units = lc_onednn_bf16_units(), asked = true;
    return units;
#else
    return NULL;
#endif
}

static bool units_are(const char *name)
{
    const char *units = onednn_units();
    return units && strcmp(units, name) == 0;
}

bool lc_cpu_bf16_grad_on_gemm_api(int64_t k)
{
    return units_are("AVX512-BF16") || (units_are("AMX") && k >= AMX_GRAD_API_MIN_K);
}

const char *lc_cpu_bf16_grad_gemm_api_use(void)
{
    if (units_are("AVX512-BF16"))
        return "dy·W";
    static char amx[64];
    if (units_are("AMX")) {
        snprintf(amx, sizeof amx, "dy·W through weights of >= %d rows", AMX_GRAD_API_MIN_K);
        return amx;
    }
    return NULL;
}

/* Where a LoRA term is not folded (below): whether it is written first and
 * the frozen product accumulates onto it. Measured on 2 Xeon cores with AMX
 * (SmolLM-135M step, 2026-12-02, three alternating pairs of runs, before
 * the folding): the step 1.09-1.18 -> 1.02-1.10 s; timed
 * inside it, the frozen forward products 0.229 -> 0.208 s and the LoRA
 * terms 0.085 -> 0.063 s (written instead of read and added to). The f32
 * path on the same machine gains nothing (2.35-2.44 s either way), and on
 * AVX512-BF16 (Zen 5, 2026-12-02) the frozen product first was the faster. */
static bool lora_first(void)
{
    return chosen == LC_CPU_BF16_ONEDNN && units_are("AMX");
}

/* The two weight products on bf16-rounded inputs, a tile of W's rows at a
 * time: forward c[N,out] = beta·c + a[N,in]·Wᵀ; backward (grad)
 * c[N,in] = beta·c + a[N,out]·W (the tiles after the first add). */
static void weight_product_on(bool grad, const lc_real *a, const uint16_t *rounded,
                              int64_t rounded_ld, int64_t N, const lc_weight *W, lc_real beta,
                              lc_real *c, lc_real *scratch)
{
    LC_ASSERT(chosen != LC_CPU_BF16_OFF && !omp_in_parallel());
    int64_t in = W->cols, out = W->rows, tr = gemm_rows(W), lda = grad ? out : in;
    int64_t ldc = grad ? in : out;
    lc_real *real = scratch;
    uint16_t *half = scratch ? (uint16_t *)(scratch + tr * in) : NULL;
    bool emulate = chosen == LC_CPU_BF16_EMULATE;
    const void *ar; /* a rounded: lc_real values (emulate) or bf16 */
    if (emulate) {
        lc_real *r = grow(&act_buf, (size_t)(N * lda) * sizeof(lc_real));
        round_real(a, N * lda, r);
        ar = r;
    } else if (a) {
        uint16_t *h = grow(&act_buf, (size_t)(N * lda) * sizeof(uint16_t));
#if LC_HAVE_DNNL
        lc_cpu_round_bf16(a, N * lda, h);
#endif
        ar = h;
    } else { /* rounded by the caller */
        ar = rounded;
        lda = rounded_ld;
    }
    for (int64_t r0 = 0; r0 < out; r0 += tr) {
        int64_t r1 = r0 + tr < out ? r0 + tr : out;
        const void *wt = weight_tile(W, r0, r1, real, half);
        /* forward: rows r0..r1 of W are columns of c; backward: columns of a */
        int64_t n = grad ? in : r1 - r0, k = grad ? r1 - r0 : in;
        int64_t a_off = grad ? r0 : 0, c_off = grad ? 0 : r0;
        lc_real b = grad && r0 > 0 ? 1 : beta;
        if (emulate) {
            lc_k_gemm(false, !grad, N, n, k, 1, (const lc_real *)ar + a_off, lda, wt, in, b,
                      c + c_off, ldc);
            continue;
        }
#if LC_HAVE_DNNL
        /* dy·W (W not transposed) on oneDNN's BLAS-like GEMM: see lc_onednn_gemm */
        if (grad && lc_cpu_bf16_grad_on_gemm_api(k) &&
            lc_onednn_gemm(LC_DTYPE_BF16, false, false, N, n, k, 1, (const uint16_t *)ar + a_off,
                           lda, wt, in, b, c + c_off, ldc))
            continue;
        lc_cpu_gemm_bf16(false, !grad, N, n, k, (const uint16_t *)ar + a_off, lda, wt, in, b,
                         c + c_off, ldc);
#endif
    }
}

static void weight_product(bool grad, const lc_real *a, int64_t N, const lc_weight *W,
                           lc_real beta, lc_real *c, lc_real *scratch)
{
    weight_product_on(grad, a, NULL, 0, N, W, beta, c, scratch);
}

void lc_cpu_weight_matmul_bf16(const lc_real *x, int64_t N, const lc_weight *W, lc_real beta,
                               lc_real *y, lc_real *scratch)
{
    weight_product(false, x, N, W, beta, y, scratch);
}

void lc_cpu_weight_matmul_grad_bf16(const lc_real *dy, int64_t N, const lc_weight *W,
                                    lc_real beta, lc_real *dx, lc_real *scratch)
{
    weight_product(true, dy, N, W, beta, dx, scratch);
}

void lc_cpu_weight_matmul_grad_bf16_rounded(const uint16_t *dy, int64_t ld, int64_t N,
                                            const lc_weight *W, lc_real beta, lc_real *dx,
                                            lc_real *scratch)
{
    LC_ASSERT(chosen == LC_CPU_BF16_ONEDNN && ld >= W->rows);
    weight_product_on(true, NULL, dy, ld, N, W, beta, dx, scratch);
}

/* ---- LoRA terms riding on the frozen products --------------------------- */

#if LC_HAVE_DNNL
/* Rows [rows, cols] of src (row stride lds) times scale, rounded to bf16
 * into dst (row stride ldd). */
static void round_rows_bf16(const lc_real *src, int64_t rows, int64_t cols, int64_t lds,
                            lc_real scale, uint16_t *dst, int64_t ldd)
{
    if (avx512_bf16_kernels()) {
        lc_cpu_round_bf16_rows_avx512(src, rows, cols, lds, scale, dst, ldd, ROUND_PAR_MIN);
        return;
    }
#pragma omp parallel for schedule(static) if (rows * cols >= ROUND_PAR_MIN)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            dst[r * ldd + c] = lc_f32_to_bf16((float)(scale * src[r * lds + c]));
}
#endif

/* The same in lc_real (the emulate engine): scale·src rounded to bf16 and back. */
static void round_rows_real(const lc_real *src, int64_t rows, int64_t cols, int64_t lds,
                            lc_real scale, lc_real *dst, int64_t ldd)
{
#pragma omp parallel for schedule(static) if (rows * cols >= ROUND_PAR_MIN)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            dst[r * ldd + c] =
                (lc_real)lc_bf16_to_f32(lc_f32_to_bf16((float)(scale * src[r * lds + c])));
}

/* The rounded LoRA operands of an unfolded term. */
static lc_grow_buf lora_buf;
#if LC_HAVE_DNNL
/* The folded weight copy, W with the term's rows or columns appended. */
static lc_grow_buf fold_buf;
#endif

/* The unfolded LoRA term on bf16-rounded operands: forward
 * c[N,out] = beta·c + (s·xa)·Bᵀ, backward c[N,in] = beta·c + (s·dxa)·A. */
static void lora_term(bool grad, const lc_lora_term *lt, int64_t N, int64_t n, lc_real beta,
                      lc_real *c)
{
    int64_t R = lt->R, wn = n * R; /* B [n, R] or A [R, n] */
    if (chosen == LC_CPU_BF16_EMULATE) {
        lc_real *a = grow(&lora_buf, (size_t)(N * R + wn) * sizeof(lc_real)), *w = a + N * R;
        round_rows_real(lt->a, N, R, lt->lda, lt->scale, a, R);
        round_real(lt->w, wn, w);
        lc_k_gemm(false, !grad, N, n, R, 1, a, R, w, grad ? n : R, beta, c, n);
        return;
    }
#if LC_HAVE_DNNL
    uint16_t *a = grow(&lora_buf, (size_t)(N * R + wn) * sizeof(uint16_t)), *w = a + N * R;
    round_rows_bf16(lt->a, N, R, lt->lda, lt->scale, a, R);
    lc_cpu_round_bf16(lt->w, wn, w);
    lc_cpu_gemm_bf16(false, !grad, N, n, R, a, R, w, grad ? n : R, beta, c, n);
#endif
}

/* Whether the term rides inside the frozen GEMM as R more K columns: a
 * bf16 weight taken whole (on oneDNN), copied with the term's R rows or
 * columns appended, when that copy (n·(k+R) bf16 read and written, 4·n·(k+R)
 * bytes) moves fewer bytes than the pass over the output it saves (N·n f32
 * read and written, 8·N·n bytes): 2N > k + R. At the SmolLM-135M step's
 * 1024 rows that is every linear, both ways. Where it does not hold, each
 * linear's term is a pass of its own, also in a group whose unrounded
 * terms the op would add in one product (q/k/v, gate/up): small passes,
 * since N is then small. LC_CPU_BF16_FOLD_ENV: auto (this rule) | on |
 * off, so that one build times the folding against the unfolded terms. */
#if LC_HAVE_DNNL
static bool fold_term(const lc_weight *W, int64_t N, int64_t k, int64_t R)
{
    return chosen == LC_CPU_BF16_ONEDNN && weight_is_bf16(W) &&
           (fold_mode == SWITCH_ON || (fold_mode == SWITCH_AUTO && 2 * N > k + R));
}
#endif

const char *lc_cpu_bf16_fold_rule(void)
{
    if (chosen != LC_CPU_BF16_ONEDNN || fold_mode == SWITCH_OFF)
        return NULL;
    return fold_mode == SWITCH_ON ? "every bf16 weight" : "where 2·rows > k + R";
}

/* An unfolded linear: the frozen product and its term as two GEMMs. */
static void unfolded(bool grad, const lc_real *a, int64_t N, const lc_weight *W,
                     const lc_lora_term *lt, lc_real beta, lc_real *c, lc_real *scratch)
{
    int64_t n = grad ? W->cols : W->rows; /* c's columns */
    if (!grad && lora_first()) {
        lora_term(grad, lt, N, n, beta, c);
        weight_product(grad, a, N, W, 1, c, scratch);
        return;
    }
    weight_product(grad, a, N, W, beta, c, scratch);
    lora_term(grad, lt, N, n, 1, c);
}

/* ---- a group's linears in shared GEMMs -----------------------------------
 *
 * The folded products of linears on one input (q/k/v, gate/up) can share
 * GEMMs: forward, the linears of one shape (gate and up; k and v) as one
 * batched product whose outputs are the adjacent y buffers; backward, the
 * whole group as one product, dx = [dy_1 | s·dxa_1 | dy_2 | ...]·[W_1; A_1;
 * W_2; ...], K the sum of theirs, instead of one product per linear each
 * reading and adding into dx. Both are the same sums as per linear up to
 * f32 summation order, and take the same weight copies the folding makes
 * anyway. Where each pays is the CPU's (GEMM times per layer at the
 * SmolLM-135M step's 1024 rows, 2 Xeon cores with AMX, 2026-12-02, before
 * the folding, one GEMM of the group's weights side by side against one per
 * linear): q/k/v backward 0.92-1.00 → 0.73-0.76 ms, q/k/v forward 0.79-0.84
 * → 0.71-0.74 ms, gate/up forward 3.2 → 2.4-2.6 ms, but gate/up backward
 * (K 3072) 2.7-2.9 → 3.3-3.7 ms; the batched forward, which needs no split
 * of a side-by-side output, is the form of that gate/up gain not yet timed
 * there (scripts/bench_cpu.sh --env-ab LORAC_CPU_BF16_GROUPS=on,off). On
 * AVX512-BF16 (Zen 4 and Zen 5) the groups' GEMMs alone took what their
 * linears' took, within ±2%, and the whole step the same.
 * LC_CPU_BF16_GROUPS_ENV: auto (the rule below) | on | off. */

/* A backward stacked on AMX while its K is at most this (q/k/v's 1008 at
 * the SmolLM-135M shape with rank 16, not gate/up's 3104). */
#define AMX_GRAD_STACK_MAX_K 2048

/* Whether the forward batches linears of one shape. */
static bool groups_forward(void)
{
    return groups_mode == SWITCH_ON || (groups_mode == SWITCH_AUTO && units_are("AMX"));
}

const char *lc_cpu_bf16_groups_rule(void)
{
    if (chosen != LC_CPU_BF16_ONEDNN || !groups_forward() || fold_mode == SWITCH_OFF)
        return NULL; /* the backward shares only where the forward does */
    if (groups_mode == SWITCH_ON)
        return "forward batched by shape, backward one product";
    static char amx[96];
    snprintf(amx, sizeof amx, "forward batched by shape, backward one product up to K %d",
             AMX_GRAD_STACK_MAX_K);
    return amx;
}

#if LC_HAVE_DNNL
/* Whether a backward of K summed over its linears is one product: where
 * the forward shares, up to AMX_GRAD_STACK_MAX_K unless forced on. */
static bool groups_backward(int64_t K)
{
    return groups_forward() && (groups_mode == SWITCH_ON || K <= AMX_GRAD_STACK_MAX_K);
}

/* How many of the m linears from W[0] run as one batch forward: W[0] and
 * the folded ones after it of the same shape and rank whose outputs follow
 * y[0] at one stride (at least 1). */
static int forward_run(int64_t N, int m, const lc_weight *const *W, const lc_lora_term *lt,
                       lc_real *const *y)
{
    int cnt = 1;
    if (!groups_forward())
        return cnt;
    int64_t out = W[0]->rows, stride = N * out;
    while (cnt < m && fold_term(W[cnt], N, W[cnt]->cols, lt[cnt].R) && W[cnt]->rows == out &&
           lt[cnt].R == lt[0].R && y[cnt] == y[0] + cnt * stride)
        cnt++;
    return cnt;
}

/* Rows of src (row stride lds) copied to dst (row stride ldd), cols each. */
static void copy_rows_bf16(const uint16_t *src, int64_t lds, int64_t rows, int64_t cols,
                           uint16_t *dst, int64_t ldd)
{
#pragma omp parallel for schedule(static) if (rows * cols >= ROUND_PAR_MIN)
    for (int64_t r = 0; r < rows; r++)
        memcpy(dst + r * ldd, src + r * lds, (size_t)cols * sizeof(uint16_t));
}

/* The folded forward of cnt linears of one shape [out, in], rank R, on one
 * x: per linear b, act_b [N, in+R] = [x | s_b·xa_b] and f_b [out, in+R] =
 * [W_b | B_b], y_b = beta·y_b + act_b·f_bᵀ; one batched product when
 * cnt > 1. x_kept: act_0's x columns already hold x rounded (the previous
 * run's, same in + R). */
static void folded_forward(const lc_real *x, int64_t N, int cnt, const lc_weight *const *W,
                           const lc_lora_term *lt, lc_real beta, lc_real *const *y, bool x_kept)
{
    int64_t in = W[0]->cols, out = W[0]->rows, R = lt[0].R, ka = in + R;
    size_t bytes = (size_t)(cnt * N * ka) * sizeof(uint16_t);
    x_kept = x_kept && act_buf.bytes >= bytes; /* a buffer that grows keeps nothing */
    uint16_t *act = grow(&act_buf, bytes);
    if (!x_kept)
        round_rows_bf16(x, N, in, in, 1, act, ka);
    uint16_t *f = grow(&fold_buf, (size_t)(cnt * out * ka) * sizeof(uint16_t));
    for (int b = 0; b < cnt; b++) {
        uint16_t *ab = act + b * N * ka, *fb = f + b * out * ka;
        if (b > 0)
            copy_rows_bf16(act, ka, N, in, ab, ka);
        round_rows_bf16(lt[b].a, N, R, lt[b].lda, lt[b].scale, ab + in, ka);
        round_rows_bf16(lt[b].w, out, R, R, 1, fb + in, ka);
        copy_rows_bf16(W[b]->data, in, out, in, fb, ka);
    }
    lc_onednn_batch batch = {cnt, N * ka, out * ka, N * out};
    if (cnt > 1 && lc_onednn_matmul_batch(LC_DTYPE_BF16, &batch, false, true, N, out, ka, 1, act,
                                          ka, f, ka, beta != 0, y[0], out, false))
        return;
    for (int b = 0; b < cnt; b++)
        lc_cpu_gemm_bf16(false, true, N, out, ka, act + b * N * ka, ka, f + b * out * ka, ka,
                         beta, y[b], out);
}

/* The folded backward of cnt linears as one product: act [N, K] =
 * [dy_1 | s_1·dxa_1 | dy_2 | ...] and f [K, in] = [W_1; A_1; W_2; ...],
 * K = Σ(out_b + R_b); dx[N, in] = beta·dx + act·f. */
static void folded_backward(const lc_real *const *dy, int64_t N, int cnt,
                            const lc_weight *const *W, const lc_lora_term *lt, lc_real beta,
                            lc_real *dx)
{
    int64_t in = W[0]->cols, K = 0;
    for (int b = 0; b < cnt; b++)
        K += W[b]->rows + lt[b].R;
    uint16_t *act = grow(&act_buf, (size_t)(N * K) * sizeof(uint16_t));
    uint16_t *f = grow(&fold_buf, (size_t)(K * in) * sizeof(uint16_t));
    for (int64_t b = 0, col = 0; b < cnt; col += W[b]->rows + lt[b].R, b++) {
        int64_t out = W[b]->rows, R = lt[b].R;
        round_rows_bf16(dy[b], N, out, out, 1, act + col, K);
        round_rows_bf16(lt[b].a, N, R, lt[b].lda, lt[b].scale, act + col + out, K);
        memcpy(f + col * in, W[b]->data, (size_t)(out * in) * sizeof(uint16_t));
        lc_cpu_round_bf16(lt[b].w, R * in, f + (col + out) * in);
    }
    if (lc_cpu_bf16_grad_on_gemm_api(K) &&
        lc_onednn_gemm(LC_DTYPE_BF16, false, false, N, in, K, 1, act, K, f, in, beta, dx, in))
        return;
    lc_cpu_gemm_bf16(false, false, N, in, K, act, K, f, in, beta, dx, in);
}
#endif

void lc_cpu_linear_lora_bf16(const lc_real *x, int64_t N, int n, const lc_weight *const *W,
                             const lc_lora_term *lt, lc_real beta, lc_real *const *y,
                             lc_real *scratch)
{
    LC_ASSERT(chosen != LC_CPU_BF16_OFF && !omp_in_parallel());
#if LC_HAVE_DNNL
    int64_t kept_ka = 0; /* act_buf's first columns hold x rounded, row stride kept_ka */
    for (int i = 0; i < n;) {
        int64_t in = W[i]->cols, R = lt[i].R;
        if (!fold_term(W[i], N, in, R)) {
            unfolded(false, x, N, W[i], &lt[i], beta, y[i], scratch);
            kept_ka = 0;
            i++;
            continue;
        }
        int cnt = forward_run(N, n - i, W + i, lt + i, y + i);
        folded_forward(x, N, cnt, W + i, lt + i, beta, y + i, kept_ka == in + R);
        kept_ka = in + R;
        i += cnt;
    }
#else
    for (int i = 0; i < n; i++)
        unfolded(false, x, N, W[i], &lt[i], beta, y[i], scratch);
#endif
}

void lc_cpu_linear_lora_grad_bf16(const lc_real *const *dy, int64_t N, int n,
                                  const lc_weight *const *W, const lc_lora_term *lt, lc_real beta,
                                  lc_real *dx, lc_real *scratch)
{
    LC_ASSERT(chosen != LC_CPU_BF16_OFF && !omp_in_parallel());
#if LC_HAVE_DNNL
    bool all_fold = true;
    int64_t K = 0;
    for (int i = 0; i < n; i++) {
        all_fold &= fold_term(W[i], N, W[i]->rows, lt[i].R);
        K += W[i]->rows + lt[i].R;
    }
    if (n > 1 && all_fold && groups_backward(K)) {
        folded_backward(dy, N, n, W, lt, beta, dx);
        return;
    }
#endif
    for (int i = 0; i < n; i++) {
        lc_real b = i == 0 ? beta : 1;
#if LC_HAVE_DNNL
        if (fold_term(W[i], N, W[i]->rows, lt[i].R)) {
            folded_backward(dy + i, N, 1, W + i, lt + i, b, dx);
            continue;
        }
#endif
        unfolded(true, dy[i], N, W[i], &lt[i], b, dx, scratch);
    }
}

/* test_cpu_bf16.c — the CPU's bfloat16 GEMMs (autograd/cpu/gemm_bf16.h) and
 * how a run chooses them.
 *
 * The weight kernels are checked against a float64 product of the rounded
 * inputs (round x and W to bf16 in double, multiply in double): what bf16
 * hardware computes up to f32 summation, so the bound is f32's, and the
 * same products against the unrounded inputs are shown to differ by what a
 * bf16 rounding costs (the rounding happens at all). Both engines where
 * they run: emulate everywhere, onednn wherever libdnnl is installed (on a
 * CPU without bf16 units oneDNN emulates them itself). The engine choice
 * and the fallback are checked through the lorac binary: forcing oneDNN
 * below its bf16 ISA (ONEDNN_MAX_CPU_ISA) or LORAC_CPU_BF16=off makes a
 * bfloat16 run say so and compute in float32. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/cpu/dispatch.h"
#include "autograd/cpu/gemm_bf16.h"
#include "autograd/cpu/onednn.h"
#include "autograd/cpu/small_gemm_bf16.h"
#include "autograd/kernels.h"
#include "autograd/dtype.h"
#include "autograd/nf4.h"
#include "tests/helpers.h"

/* Worst relative error measured of the weight kernels against the float64
 * product of the rounded inputs (2026-11-30, both engines, every weight
 * dtype, N 37, in 96, out 80): 6.15e-8 (f32 summation); the tolerance is
 * 8x that. A bf16 rounding of the inputs moves the product by 1.37e-3 (x
 * alone, a bf16 weight) to 2.25e-3 relative: far outside it. */
#define TOL_ROUNDED 5e-7
#define MIN_ROUNDING_EFFECT 3e-4

enum { N = 37, IN = 96, OUT = 80 };

static double r_bf16(double v) { return lc_bf16_to_f32(lc_f32_to_bf16((float)v)); }

static void fill(float *v, int64_t n, uint64_t seed, double scale)
{
    for (int64_t i = 0; i < n; i++)
        v[i] = (float)(scale * ((double)(lc_test_splitmix64(&seed) >> 11) / 9007199254740992.0 -
                                0.5));
}

/* A weight of the given kind holding (about) w: F32, BF16, F16 stored, or NF4. */
typedef struct test_weight {
    lc_weight W;
    void *data;
    lc_nf4_store nf4;
} test_weight;

static void make_weight(test_weight *t, const float *w, const char *kind)
{
    memset(t, 0, sizeof *t);
    t->W.rows = OUT;
    t->W.cols = IN;
    size_t n = (size_t)OUT * IN;
    if (strcmp(kind, "nf4") == 0) {
        lc_error err;
        cr_assert_eq(lc_nf4_quantize(&t->nf4, w, OUT, IN, 64, false, &err), 0, "%s", err.msg);
        t->W.nf4 = &t->nf4.q;
        t->W.dtype = LC_DTYPE_F32;
        return;
    }
    lc_dtype dt = strcmp(kind, "f32") == 0 ? LC_DTYPE_F32 : strcmp(kind, "bf16") == 0 ? LC_DTYPE_BF16
                                                                                     : LC_DTYPE_F16;
    t->data = malloc(n * lc_dtype_size(dt));
    for (size_t i = 0; i < n; i++) {
        if (dt == LC_DTYPE_F32)
            ((float *)t->data)[i] = w[i];
        else if (dt == LC_DTYPE_BF16)
            ((uint16_t *)t->data)[i] = lc_f32_to_bf16(w[i]);
        else
            ((uint16_t *)t->data)[i] = lc_f32_to_f16(w[i]);
    }
    t->W.data = t->data;
    t->W.dtype = dt;
}

static void free_weight(test_weight *t)
{
    free(t->data);
    if (t->W.nf4)
        lc_nf4_store_free(&t->nf4);
}

/* Selects engine e through the environment (false: not available here). */
static bool use_engine(const char *name)
{
    setenv(LC_CPU_BF16_ENV, name, 1);
    lc_cpu_bf16_engine e;
    lc_error err;
    if (lc_cpu_bf16_engine_select(&e, NULL, 0, &err)) {
        cr_log_info("engine %s not available here: %s", name, err.msg);
        return false;
    }
    cr_assert_str_eq(lc_cpu_bf16_engine_name(e), name);
    return true;
}

/* A random weight of a kind (fill seed, scale 0.2), its values as the
 * kernels see them before rounding, and the scratch its kernels need. */
typedef struct weight_case {
    test_weight t;
    float *w, *wd;
    lc_real *scratch;
} weight_case;

/* Selects the engine (false: not available here) and makes the weight. */
static bool weight_case_init(weight_case *c, const char *engine, const char *kind, uint64_t seed)
{
    if (!use_engine(engine))
        return false;
    c->w = malloc(sizeof(float) * OUT * IN);
    fill(c->w, OUT * IN, seed, 0.2);
    make_weight(&c->t, c->w, kind);
    c->wd = malloc(sizeof(float) * OUT * IN);
    lc_weight_rows_to_real(&c->t.W, 0, OUT, c->wd);
    c->scratch = malloc(sizeof(lc_real) * (lc_cpu_weight_scratch_bf16(&c->t.W) + 1));
    return true;
}

static void weight_case_free(weight_case *c)
{
    free(c->w), free(c->wd), free(c->scratch);
    free_weight(&c->t);
}

/* y = beta·y0 + x·Wᵀ and dx = dx0 + dy·W through the bf16 kernels, against
 * float64 on the rounded and on the unrounded inputs. */
static void check_kernels(const char *engine, const char *kind)
{
    weight_case wc;
    if (!weight_case_init(&wc, engine, kind, 2))
        return;
    float *x = malloc(sizeof(float) * N * IN), *dy = malloc(sizeof(float) * N * OUT);
    fill(x, N * IN, 1, 4.0);
    fill(dy, N * OUT, 3, 1.0);
    test_weight t = wc.t;
    const float *wd = wc.wd;
    lc_real *scratch = wc.scratch;

    for (int beta = 0; beta <= 1; beta++) {
        float *y = malloc(sizeof(float) * N * OUT), *y0 = malloc(sizeof(float) * N * OUT);
        fill(y0, N * OUT, 4, 1.0);
        memcpy(y, y0, sizeof(float) * N * OUT);
        lc_cpu_weight_matmul_bf16(x, N, &t.W, (lc_real)beta, y, scratch);
        float *reff = malloc(sizeof(float) * N * OUT), *rawf = malloc(sizeof(float) * N * OUT);
        for (int i = 0; i < N; i++)
            for (int o = 0; o < OUT; o++) {
                double s = beta ? y0[i * OUT + o] : 0, u = s;
                for (int k = 0; k < IN; k++) {
                    s += r_bf16(x[i * IN + k]) * r_bf16(wd[o * IN + k]);
                    u += (double)x[i * IN + k] * wd[o * IN + k];
                }
                reff[i * OUT + o] = (float)s;
                rawf[i * OUT + o] = (float)u;
            }
        double e = lc_test_rel_err_f32(y, reff, N * OUT), e_raw = lc_test_rel_err_f32(y, rawf, N * OUT);
        cr_log_info("%s %s forward beta %d: rel err %.3g vs the rounded product, %.3g vs the "
                    "unrounded", engine, kind, beta, e, e_raw);
        cr_expect_lt(e, TOL_ROUNDED, "%s %s forward beta %d: %g", engine, kind, beta, e);
        cr_expect_gt(e_raw, MIN_ROUNDING_EFFECT, "%s %s: the inputs were not rounded (%g)",
                     engine, kind, e_raw);
        free(y), free(y0), free(reff), free(rawf);
    }

    float *dx = malloc(sizeof(float) * N * IN), *dx0 = malloc(sizeof(float) * N * IN);
    float *reff = malloc(sizeof(float) * N * IN);
    fill(dx0, N * IN, 5, 1.0);
    for (int beta = 0; beta <= 1; beta++) { /* beta 0 must not read dx: NaN there */
        for (int i = 0; i < N * IN; i++)
            dx[i] = beta ? dx0[i] : NAN;
        lc_cpu_weight_matmul_grad_bf16(dy, N, &t.W, (lc_real)beta, dx, scratch);
        for (int i = 0; i < N; i++)
            for (int k = 0; k < IN; k++) {
                double s = beta ? dx0[i * IN + k] : 0;
                for (int o = 0; o < OUT; o++)
                    s += r_bf16(dy[i * OUT + o]) * r_bf16(wd[o * IN + k]);
                reff[i * IN + k] = (float)s;
            }
        double e = lc_test_rel_err_f32(dx, reff, N * IN);
        cr_log_info("%s %s backward (dx = beta·dx + dy·W) beta %d: rel err %.3g", engine, kind,
                    beta, e);
        cr_expect_lt(e, TOL_ROUNDED, "%s %s backward beta %d: %g", engine, kind, beta, e);
    }
    free(dx), free(dx0), free(reff);
    free(x), free(dy);
    weight_case_free(&wc);
}

#define KERNEL_TESTS(engine)                                                               \
    Test(cpu_bf16, engine##_f32_weight) { check_kernels(#engine, "f32"); }                 \
    Test(cpu_bf16, engine##_bf16_weight) { check_kernels(#engine, "bf16"); }               \
    Test(cpu_bf16, engine##_f16_weight) { check_kernels(#engine, "f16"); }                 \
    Test(cpu_bf16, engine##_nf4_weight) { check_kernels(#engine, "nf4"); }
KERNEL_TESTS(emulate)
KERNEL_TESTS(onednn)

/* A linear's frozen product with its LoRA term (lc_cpu_linear_lora_bf16
 * and _grad): y = beta·y0 + x·Wᵀ + s·xa·Bᵀ and dx = beta·dx0 + dy·W +
 * s·dxa·A against float64 on rounded x, W, s·xa, B (dy, s·dxa, A), for a
 * bf16 weight (taken whole: on oneDNN the term rides in the GEMM when
 * 2·rows > k + R, here at 200 rows, not at 37) and an f32 one (tiles: the term is its own
 * product), rows 37 and 200, xa a column block of a wider matrix. */
enum { TERM_R = 8, TERM_LD = 13, TERM_COL = 3 };

/* One direction: forward (act = x [M, IN], lw = B [OUT, R]) or backward
 * (act = dy [M, OUT], lw = A [R, IN]); beta 0 must not read the output. */
static void check_term_direction(const char *engine, const char *kind, bool grad, int M,
                                 int beta, const weight_case *wc, const float *act,
                                 const float *xa, const float *lw)
{
    const float *wd = wc->wd;
    const lc_real s = 0.75f;
    const int n = grad ? IN : OUT, k = grad ? OUT : IN;
    float *c = malloc(sizeof(float) * M * n), *c0 = malloc(sizeof(float) * M * n);
    float *ref = malloc(sizeof(float) * M * n);
    fill(c0, M * n, 17 + (uint64_t)grad, 1.0);
    for (int i = 0; i < M * n; i++)
        c[i] = beta ? c0[i] : NAN;
    const lc_real *xa_r = xa + TERM_COL; /* the term's [M, R] at column TERM_COL of [M, LD] */
    lc_lora_term term = {.a = xa_r, .lda = TERM_LD, .w = lw, .R = TERM_R, .scale = s};
    const lc_weight *W = &wc->t.W;
    if (grad)
        lc_cpu_linear_lora_grad_bf16(&act, M, 1, &W, &term, (lc_real)beta, c, wc->scratch);
    else
        lc_cpu_linear_lora_bf16(act, M, 1, &W, &term, (lc_real)beta, &c, wc->scratch);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < n; j++) {
            double v = beta ? c0[i * n + j] : 0;
            for (int q = 0; q < k; q++)
                v += r_bf16(act[i * k + q]) * r_bf16(grad ? wd[q * IN + j] : wd[j * IN + q]);
            for (int r = 0; r < TERM_R; r++)
                v += r_bf16(s * xa_r[i * TERM_LD + r]) *
                     r_bf16(grad ? lw[r * IN + j] : lw[j * TERM_R + r]);
            ref[i * n + j] = (float)v;
        }
    double e = lc_test_rel_err_f32(c, ref, M * n);
    const char *dir = grad ? "backward" : "forward";
    cr_log_info("%s %s LoRA term %s, rows %d beta %d: rel err %.3g", engine, kind, dir, M, beta,
                e);
    cr_expect_lt(e, TOL_ROUNDED, "%s %s %s rows %d beta %d: %g", engine, kind, dir, M, beta, e);
    free(c), free(c0), free(ref);
}

static void check_lora_term(const char *engine, const char *kind, const char *fold)
{
    weight_case wc;
    setenv(LC_CPU_BF16_FOLD_ENV, fold, 1);
    bool ok = weight_case_init(&wc, engine, kind, 11);
    unsetenv(LC_CPU_BF16_FOLD_ENV);
    if (!ok)
        return;
    cr_log_info("%s %s, %s=%s: folded %s", engine, kind, LC_CPU_BF16_FOLD_ENV, fold,
                lc_cpu_bf16_fold_rule() ? lc_cpu_bf16_fold_rule() : "never");
    float *ba = malloc(sizeof(float) * TERM_R * (OUT + IN)); /* B [OUT, R] then A [R, IN] */
    fill(ba, TERM_R * (OUT + IN), 12, 0.5);
    const float *b = ba, *a = ba + OUT * TERM_R;
    const int rows[2] = {37, 200};
    for (int ri = 0; ri < 2; ri++) {
        const int M = rows[ri];
        float *x = malloc(sizeof(float) * M * IN), *xa = malloc(sizeof(float) * M * TERM_LD);
        float *dy = malloc(sizeof(float) * M * OUT);
        fill(x, M * IN, 14, 4.0);
        fill(xa, M * TERM_LD, 15, 2.0);
        fill(dy, M * OUT, 16, 1.0);
        for (int beta = 0; beta <= 1; beta++) {
            check_term_direction(engine, kind, false, M, beta, &wc, x, xa, b);
            check_term_direction(engine, kind, true, M, beta, &wc, dy, xa, a);
        }
        free(x), free(xa), free(dy);
    }
    free(ba);
    weight_case_free(&wc);
}

/* A group of linears on one x (lc_cpu_linear_lora_bf16 with n 3, as
 * q/k/v): the first of GROUP_ROWS0 rows, the other two of OUT rows with
 * adjacent outputs (batched forward where the groups rule shares GEMMs),
 * each with its own B and A, scale and a column block of one xa; forward
 * y_i = beta·y0_i + x·W_iᵀ + s_i·xa_i·B_iᵀ and backward dx = beta·dx0 +
 * Σ_i dy_i·W_i + s_i·dxa_i·A_i against float64 on the rounded operands,
 * folded (200 rows) and not (37), with the groups rule forced on and off
 * and as it is on this CPU. */
enum { GROUP_N = 3, GROUP_ROWS0 = 40, GROUP_LD = 3 * TERM_R + 2 };

static void check_group(const char *engine, const char *groups, const char *fold)
{
    setenv(LC_CPU_BF16_GROUPS_ENV, groups, 1);
    setenv(LC_CPU_BF16_FOLD_ENV, fold, 1);
    weight_case wc[GROUP_N];
    bool ok = true;
    for (int i = 0; i < GROUP_N; i++)
        ok = ok && weight_case_init(&wc[i], engine, "bf16", 31 + (uint64_t)i);
    unsetenv(LC_CPU_BF16_GROUPS_ENV);
    unsetenv(LC_CPU_BF16_FOLD_ENV);
    if (!ok)
        return;
    const lc_weight *W[GROUP_N];
    int64_t outs[GROUP_N];
    for (int i = 0; i < GROUP_N; i++) {
        wc[i].t.W.rows = i == 0 ? GROUP_ROWS0 : OUT; /* the first rows of W only */
        W[i] = &wc[i].t.W;
        outs[i] = W[i]->rows;
    }
    float *ba = malloc(sizeof(float) * GROUP_N * TERM_R * (OUT + IN)); /* B_i then A_i */
    fill(ba, GROUP_N * TERM_R * (OUT + IN), 32, 0.5);
    const lc_real s[GROUP_N] = {0.75f, 0.5f, 1.25f};
    const int rows[2] = {200, 37};
    for (int ri = 0; ri < 2; ri++) {
        const int M = rows[ri];
        float *x = malloc(sizeof(float) * M * IN), *xa = malloc(sizeof(float) * M * GROUP_LD);
        float *dy = malloc(sizeof(float) * GROUP_N * M * OUT);
        float *y = malloc(sizeof(float) * GROUP_N * M * OUT);
        float *y0 = malloc(sizeof(float) * GROUP_N * M * OUT);
        float *dx = malloc(sizeof(float) * M * IN), *dx0 = malloc(sizeof(float) * M * IN);
        float *ref = malloc(sizeof(float) * GROUP_N * M * OUT + sizeof(float) * M * IN);
        fill(x, M * IN, 33, 4.0), fill(xa, M * GROUP_LD, 34, 2.0);
        fill(dy, GROUP_N * M * OUT, 35, 1.0), fill(y0, GROUP_N * M * OUT, 36, 1.0);
        fill(dx0, M * IN, 37, 1.0);
        /* y_0 at the front, y_1 and y_2 adjacent after a gap; dy alike */
        lc_real *yp[GROUP_N] = {y, y + M * OUT, y + M * OUT + M * OUT};
        const lc_real *dyp[GROUP_N] = {dy, dy + M * OUT, dy + 2 * M * OUT};
        lc_lora_term fwd[GROUP_N], bwd[GROUP_N];
        for (int i = 0; i < GROUP_N; i++) {
            const float *B = ba + i * TERM_R * (OUT + IN), *A = B + OUT * TERM_R;
            fwd[i] = (lc_lora_term){.a = xa + 1 + i * TERM_R, .lda = GROUP_LD, .w = B,
                                    .R = TERM_R, .scale = s[i]};
            bwd[i] = (lc_lora_term){.a = xa + 1 + i * TERM_R, .lda = GROUP_LD, .w = A,
                                    .R = TERM_R, .scale = s[i]};
        }
        for (int beta = 0; beta <= 1; beta++) {
            for (int i = 0; i < GROUP_N * M * OUT; i++)
                y[i] = beta ? y0[i] : NAN;
            for (int i = 0; i < M * IN; i++)
                dx[i] = beta ? dx0[i] : NAN;
            lc_cpu_linear_lora_bf16(x, M, GROUP_N, W, fwd, (lc_real)beta, yp, wc[0].scratch);
            lc_cpu_linear_lora_grad_bf16(dyp, M, GROUP_N, W, bwd, (lc_real)beta, dx,
                                         wc[0].scratch);
            for (int g = 0; g < GROUP_N; g++) {
                const float *wd = wc[g].wd, *B = fwd[g].w, *xg = fwd[g].a;
                float *rg = ref + (yp[g] - y);
                for (int i = 0; i < M; i++)
                    for (int o = 0; o < outs[g]; o++) {
                        double v = beta ? y0[(yp[g] - y) + i * outs[g] + o] : 0;
                        for (int k = 0; k < IN; k++)
                            v += r_bf16(x[i * IN + k]) * r_bf16(wd[o * IN + k]);
                        for (int r = 0; r < TERM_R; r++)
                            v += r_bf16(s[g] * xg[i * GROUP_LD + r]) * r_bf16(B[o * TERM_R + r]);
                        rg[i * outs[g] + o] = (float)v;
                    }
            }
            float *rdx = ref + GROUP_N * M * OUT;
            for (int i = 0; i < M; i++)
                for (int k = 0; k < IN; k++) {
                    double v = beta ? dx0[i * IN + k] : 0;
                    for (int g = 0; g < GROUP_N; g++) {
                        for (int o = 0; o < outs[g]; o++)
                            v += r_bf16(dyp[g][i * outs[g] + o]) * r_bf16(wc[g].wd[o * IN + k]);
                        for (int r = 0; r < TERM_R; r++)
                            v += r_bf16(s[g] * bwd[g].a[i * GROUP_LD + r]) *
                                 r_bf16(bwd[g].w[r * IN + k]);
                    }
                    rdx[i * IN + k] = (float)v;
                }
            for (int g = 0; g < GROUP_N; g++) {
                int64_t n = M * outs[g];
                double e = lc_test_rel_err_f32(yp[g], ref + (yp[g] - y), n);
                cr_expect_lt(e, TOL_ROUNDED,
                             "%s groups %s fold %s forward %d rows %d beta %d: %g", engine,
                             groups, fold, g, M, beta, e);
            }
            double e = lc_test_rel_err_f32(dx, rdx, M * IN);
            cr_log_info("%s groups %s (%s) fold %s rows %d beta %d: backward rel err %.3g",
                        engine, groups,
                        lc_cpu_bf16_groups_rule() ? lc_cpu_bf16_groups_rule() : "none", fold, M,
                        beta, e);
            cr_expect_lt(e, TOL_ROUNDED, "%s groups %s fold %s backward rows %d beta %d: %g",
                         engine, groups, fold, M, beta, e);
        }
        free(x), free(xa), free(dy), free(y), free(y0), free(dx), free(dx0), free(ref);
    }
    free(ba);
    for (int i = 0; i < GROUP_N; i++)
        weight_case_free(&wc[i]);
}

Test(cpu_bf16, lora_term_group)
{
    const char *modes[3] = {"on", "off", "auto"};
    for (int m = 0; m < 3; m++)
        check_group("emulate", modes[m], "auto"), check_group("onednn", modes[m], "auto");
    /* sharing forced with every term folded (37 rows too) and with none */
    check_group("onednn", "on", "on"), check_group("onednn", "on", "off");
}

Test(cpu_bf16, fold_and_groups_rules_are_chosen_with_the_engine)
{
    setenv(LC_CPU_BF16_GROUPS_ENV, "both", 1);
    setenv(LC_CPU_BF16_ENV, "emulate", 1);
    lc_cpu_bf16_engine e;
    lc_error err;
    cr_expect_neq(lc_cpu_bf16_engine_select(&e, NULL, 0, &err), 0);
    cr_expect(strstr(err.msg, "LORAC_CPU_BF16_GROUPS=both: unknown; use auto, on or off"), "%s",
              err.msg);
    setenv(LC_CPU_BF16_GROUPS_ENV, "off", 1);
    cr_expect_eq(lc_cpu_bf16_engine_select(&e, NULL, 0, &err), 0, "%s", err.msg);
    cr_expect_null(lc_cpu_bf16_groups_rule());
    unsetenv(LC_CPU_BF16_GROUPS_ENV);
    setenv(LC_CPU_BF16_FOLD_ENV, "yes", 1);
    cr_expect_neq(lc_cpu_bf16_engine_select(&e, NULL, 0, &err), 0);
    cr_expect(strstr(err.msg, "LORAC_CPU_BF16_FOLD=yes: unknown; use auto, on or off"), "%s",
              err.msg);
    unsetenv(LC_CPU_BF16_FOLD_ENV);
    if (!lc_onednn_available())
        return;
    /* on oneDNN: the fold's rule as the mode says; groups share folded GEMMs only */
    const char *fold[3] = {"auto", "on", "off"};
    const char *rule[3] = {"where 2·rows > k + R", "every bf16 weight", NULL};
    setenv(LC_CPU_BF16_ENV, "onednn", 1);
    setenv(LC_CPU_BF16_GROUPS_ENV, "on", 1);
    for (int f = 0; f < 3; f++) {
        setenv(LC_CPU_BF16_FOLD_ENV, fold[f], 1);
        cr_assert_eq(lc_cpu_bf16_engine_select(&e, NULL, 0, &err), 0, "%s", err.msg);
        const char *got = lc_cpu_bf16_fold_rule();
        cr_expect(rule[f] ? got && strcmp(got, rule[f]) == 0 : got == NULL, "fold %s: %s",
                  fold[f], got ? got : "NULL");
        cr_expect_eq(lc_cpu_bf16_groups_rule() != NULL, rule[f] != NULL, "fold %s", fold[f]);
    }
    unsetenv(LC_CPU_BF16_FOLD_ENV);
    unsetenv(LC_CPU_BF16_GROUPS_ENV);
    unsetenv(LC_CPU_BF16_ENV);
}

/* Every fold mode (LC_CPU_BF16_FOLD_ENV): auto folds at 200 rows and not
 * at 37, on at both, off at neither. */
static void check_lora_terms(const char *engine)
{
    const char *folds[3] = {"auto", "on", "off"};
    for (int f = 0; f < 3; f++)
        check_lora_term(engine, "bf16", folds[f]), check_lora_term(engine, "f32", folds[f]);
}
Test(cpu_bf16, lora_term_emulate) { check_lora_terms("emulate"); }
Test(cpu_bf16, lora_term_onednn) { check_lora_terms("onednn"); }

/* An MoE expert's GEMMs change M every step: past LC_ONEDNN_MAX_M_VARIANTS
 * shapes of one family, oneDNN runs them on one primitive of runtime M —
 * the same products, checked for 24 row counts. */
Test(cpu_bf16, onednn_many_row_counts)
{
    if (!use_engine("onednn"))
        return;
    const int n_max = 64 + 24;
    float *x = malloc(sizeof(float) * n_max * IN), *w = malloc(sizeof(float) * OUT * IN);
    float *y = malloc(sizeof(float) * n_max * OUT), *ref = malloc(sizeof(float) * n_max * OUT);
    fill(x, n_max * IN, 7, 4.0);
    fill(w, OUT * IN, 8, 0.2);
    test_weight t;
    make_weight(&t, w, "bf16");
    lc_real *scratch = malloc(sizeof(lc_real) * (lc_cpu_weight_scratch_bf16(&t.W) + 1));
    double worst = 0;
    for (int n = 64; n < n_max; n++) {
        lc_cpu_weight_matmul_bf16(x, n, &t.W, 0, y, scratch);
        for (int i = 0; i < n; i++)
            for (int o = 0; o < OUT; o++) {
                double acc = 0;
                for (int k = 0; k < IN; k++)
                    acc += r_bf16(x[i * IN + k]) * lc_bf16_to_f32(((uint16_t *)t.data)[o * IN + k]);
                ref[i * OUT + o] = (float)acc;
            }
        double e = lc_test_rel_err_f32(y, ref, (size_t)n * OUT);
        worst = e > worst ? e : worst;
        cr_expect_lt(e, TOL_ROUNDED, "%d rows: %g", n, e);
    }
    cr_log_info("onednn, 24 row counts: worst rel err %.3g, last implementation %s", worst,
                lc_onednn_last_impl(LC_DTYPE_BF16));
    free(x), free(w), free(y), free(ref), free(scratch);
    free_weight(&t);
}

/* lc_onednn_gemm, the BLAS-like GEMM the input gradients dy·W run on: every
 * transpose, leading dimensions wider than the rows, beta 0 on a NaN-filled
 * C (it must not be read) and 1, in f32 and on bf16 inputs, against
 * float64 on the same (rounded) values. Where libdnnl is installed f32
 * must run, and bf16 wherever the CPU has bf16 units (oneDNN has no bf16
 * GEMM below AVX-512; the callers fall back): a silent fallback would hide
 * a missing symbol. */
/* Measured 2026-12-02 (Zen 5; also with ONEDNN_MAX_CPU_ISA=AVX2): f32 up to
 * 3.2e-7, bf16 1.1e-7 of the largest entry. */
#define TOL_F32_GEMM 2e-6
Test(cpu_bf16, onednn_gemm_api)
{
    if (!lc_onednn_available()) {
        cr_log_info("oneDNN not available here: %s", lc_onednn_status());
        return;
    }
    enum { M = 37, GN = 45, GK = 70, PAD = 3 };
    float *a = malloc(sizeof(float) * GK * (M + PAD)), *b = malloc(sizeof(float) * GK * (GN + PAD));
    uint16_t *ah = malloc(sizeof(uint16_t) * GK * (M + PAD));
    uint16_t *bh = malloc(sizeof(uint16_t) * GK * (GN + PAD));
    float *c = malloc(sizeof(float) * M * (GN + PAD)), *c0 = malloc(sizeof(float) * M * (GN + PAD));
    float *ref = malloc(sizeof(float) * M * (GN + PAD));
    fill(a, GK * (M + PAD), 11, 2.0);
    fill(b, GK * (GN + PAD), 12, 2.0);
    fill(c0, M * (GN + PAD), 13, 1.0);
    for (int i = 0; i < GK * (M + PAD); i++)
        ah[i] = lc_f32_to_bf16(a[i]);
    for (int i = 0; i < GK * (GN + PAD); i++)
        bh[i] = lc_f32_to_bf16(b[i]);
    double worst[2] = {0, 0};
    for (int bf = 0; bf <= 1; bf++)
        for (int t = 0; t < 8; t++) {
            bool ta = t & 1, tb = t & 2, beta = t & 4;
            /* op(A)[i][k] = ta ? A[k·lda + i] : A[i·lda + k]; likewise B */
            int64_t lda = (ta ? M : GK) + PAD, ldb = (tb ? GK : GN) + PAD, ldc = GN + PAD;
            for (int i = 0; i < M * ldc; i++)
                c[i] = beta ? c0[i] : NAN;
            for (int i = 0; i < M; i++)
                for (int j = 0; j < GN; j++) {
                    double s = beta ? c0[i * ldc + j] : 0;
                    for (int k = 0; k < GK; k++) {
                        int64_t ai = ta ? k * lda + i : i * lda + k;
                        int64_t bi = tb ? j * ldb + k : k * ldb + j;
                        s += bf ? (double)lc_bf16_to_f32(ah[ai]) * lc_bf16_to_f32(bh[bi])
                                : (double)a[ai] * b[bi];
                    }
                    ref[i * ldc + j] = (float)s;
                }
            bool ran = lc_onednn_gemm(bf ? LC_DTYPE_BF16 : LC_DTYPE_F32, ta, tb, M, GN, GK, 1,
                                      bf ? (const void *)ah : a, lda, bf ? (const void *)bh : b,
                                      ldb, beta, c, ldc);
            if (!ran && bf && !lc_onednn_bf16_units()) { /* below AVX-512: none for bf16 */
                cr_log_info("bf16 gemm: not run by oneDNN on this ISA (the caller falls back)");
                break;
            }
            cr_assert(ran, "%s gemm (ta %d tb %d) did not run on oneDNN", bf ? "bf16" : "f32",
                      ta, tb);
            double e = 0, scale = 0;
            for (int i = 0; i < M; i++)
                for (int j = 0; j < GN; j++) {
                    double d = fabs((double)c[i * ldc + j] - ref[i * ldc + j]);
                    e = d > e || d != d ? d : e;
                    scale = fmax(scale, fabs(ref[i * ldc + j]));
                }
            e /= scale;
            worst[bf] = e > worst[bf] ? e : worst[bf];
            cr_expect_lt(e, bf ? TOL_ROUNDED : TOL_F32_GEMM, "%s ta %d tb %d beta %d: rel err %g",
                         bf ? "bf16" : "f32", ta, tb, beta, e);
        }
    cr_log_info("lc_onednn_gemm: worst rel err f32 %.3g, bf16 %.3g", worst[0], worst[1]);
    free(a), free(b), free(ah), free(bh), free(c), free(c0), free(ref);
}

Test(cpu_bf16, round_bf16_is_nearest_even)
{
    /* 1 + 2^-8 is halfway between bf16 1 and 1 + 2^-7: ties go to even (1);
     * 1 + 3·2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: to 1 + 2^-6 */
    float in[5] = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, -2.5f, NAN, 1.0f + 0x1p-8f + 0x1p-20f};
    uint16_t out[5];
    lc_cpu_round_bf16(in, 5, out);
    cr_expect_eq(out[0], 0x3f80);
    cr_expect_eq(out[1], 0x3f82);
    cr_expect_eq(out[2], 0xc020);
    cr_expect(isnan(lc_bf16_to_f32(out[3])));
    cr_expect_eq(out[4], 0x3f81);
}

/* lc_cpu_round_bf16 (16 lanes on AVX-512 where the CPU has AVX512-BF16, the
 * baseline loop elsewhere) gives lc_f32_to_bf16's bits for every value:
 * ties both ways, NaN and infinities, subnormals, zeros, random bits; at
 * lengths with a partial last vector, on one thread and on the team. */
Test(cpu_bf16, round_bf16_matches_the_scalar_rounding)
{
    const int64_t n = 100003; /* past ROUND_PAR_MIN: threaded; not a multiple of 16 */
    float *src = malloc(sizeof(float) * n);
    uint16_t *dst = malloc(sizeof(uint16_t) * n);
    uint64_t seed = 41;
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)lc_test_splitmix64(&seed);
        if (i % 7 == 0) /* a tie: the low 16 bits exactly half an ulp */
            u = (u & 0xffff0000u) | 0x8000u;
        if (i % 11 == 0) /* subnormal */
            u &= 0x807fffffu;
        memcpy(&src[i], &u, 4);
    }
    const float special[] = {NAN, -NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 0x1p-149f, FLT_MAX};
    for (int i = 0; i < 8; i++)
        src[3 + i] = special[i];
    const int64_t lengths[] = {1, 15, 16, 17, 100, n};
    int64_t bad = 0;
    for (int l = 0; l < 6; l++) {
        memset(dst, 0xa5, sizeof(uint16_t) * n);
        lc_cpu_round_bf16(src, lengths[l], dst);
        for (int64_t i = 0; i < lengths[l]; i++)
            bad += dst[i] != lc_f32_to_bf16(src[i]);
        if (lengths[l] < n)
            cr_expect_eq(dst[lengths[l]], 0xa5a5, "wrote past %lld elements", (long long)lengths[l]);
    }
    cr_log_info("round_bf16 (%s): %lld mismatches",
                lc_cpu_small_gemm_bf16_supported() && !lc_cpu_isa_forced() ? "AVX-512" : "baseline",
                (long long)bad);
    cr_expect_eq(bad, 0);
    if (lc_cpu_small_gemm_bf16_supported()) {
        /* the block form (the folded LoRA terms' operands): 1001 rows of 23 from a
         * row stride of 97 into one of 29, scaled, threaded and on one thread */
        enum { ROWS = 1001, COLS = 23, LDS = 97, LDD = 29 };
        const float scales[2] = {1.0f, 0.75f};
        for (int k = 0; k < 4; k++) {
            memset(dst, 0xa5, sizeof(uint16_t) * ROWS * LDD);
            lc_cpu_round_bf16_rows_avx512(src, ROWS, COLS, LDS, scales[k & 1], dst, LDD,
                                          k & 2 ? INT64_MAX : 1);
            int64_t wrong = 0, past = 0;
            for (int64_t r = 0; r < ROWS; r++)
                for (int64_t c = 0; c < LDD; c++) {
                    uint16_t got = dst[r * LDD + c];
                    if (c >= COLS) {
                        past += got != 0xa5a5;
                        continue;
                    }
                    uint16_t want = lc_f32_to_bf16(scales[k & 1] * src[r * LDS + c]);
                    float wf = lc_bf16_to_f32(want), gf = lc_bf16_to_f32(got);
                    wrong += got != want && !(isnan(wf) && isnan(gf));
                }
            cr_expect_eq(wrong, 0, "rows form, scale %g: %lld mismatches", scales[k & 1],
                         (long long)wrong);
            cr_expect_eq(past, 0, "rows form wrote %lld elements past its columns", (long long)past);
        }
    }
    free(src), free(dst);
}

Test(cpu_bf16, engine_names_and_auto)
{
    lc_cpu_bf16_engine e;
    lc_error err;
    setenv(LC_CPU_BF16_ENV, "off", 1);
    cr_assert_eq(lc_cpu_bf16_engine_select(&e, NULL, 0, &err), 0);
    cr_expect_eq(e, LC_CPU_BF16_OFF);
    setenv(LC_CPU_BF16_ENV, "amx", 1);
    cr_expect_eq(lc_cpu_bf16_engine_select(&e, NULL, 0, &err), -1);
    cr_expect(strstr(err.msg, "LORAC_CPU_BF16=amx: unknown"), "%s", err.msg);
    /* auto: oneDNN exactly where it reports bf16 units */
    setenv(LC_CPU_BF16_ENV, "auto", 1);
    char why[320];
    cr_assert_eq(lc_cpu_bf16_engine_select(&e, why, sizeof why, &err), 0);
    const char *units = lc_onednn_bf16_units();
    cr_log_info("auto: %s (%s); bf16 units: %s", lc_cpu_bf16_engine_name(e), why,
                units ? units : "none");
    cr_expect_eq(e, units ? LC_CPU_BF16_ONEDNN : LC_CPU_BF16_OFF, "%s", why);
    cr_expect_str_eq(lc_cpu_bf16_engine_why(), why);
    cr_expect_eq(lc_cpu_bf16_engine_current(), e);
}

/* A one-layer bench run of the lorac binary with compute_dtype bfloat16
 * under the environment pairs given (NULL-terminated); its result. */
static lc_test_run_result bench_bf16(const char *const *env)
{
    for (int i = 0; env[i]; i += 2)
        setenv(env[i], env[i + 1], 1);
    const char *args[] = {"bench", "--layers", "1", "--hidden", "64", "--heads", "2",
                          "--kv-heads", "1", "--intermediate", "128", "--vocab", "256",
                          "--seq", "16", "--batch", "2", "--steps", "1", "--warmup", "0",
                          "--compute-dtype", "bfloat16", NULL};
    lc_test_run_result r = lc_test_run_lorac(NULL, args);
    for (int i = 0; env[i]; i += 2)
        unsetenv(env[i]);
    cr_assert_eq(r.code, 0, "%s", r.err);
    return r;
}

Test(cpu_bf16, fallback_without_bf16_units_says_so)
{
    /* oneDNN capped below its bf16 ISA: what a CPU without bf16 units is */
    const char *capped[] = {LC_CPU_BF16_ENV, "auto", "ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI",
                            NULL};
    lc_test_run_result r = bench_bf16(capped);
    cr_expect(strstr(r.err, "compute_dtype bfloat16: this CPU has no bf16 units"), "%s", r.err);
    cr_expect(strstr(r.err, "computing in float32"), "%s", r.err);
    cr_expect(strstr(r.out, "\"compute_dtype\":\"float32\""), "%s", r.out);
    const char *loss_f32 = strstr(r.out, "\"loss\":");
    cr_assert(loss_f32);
    char f32[32];
    snprintf(f32, sizeof f32, "%.16s", loss_f32);
    lc_test_run_free(&r);
    /* LORAC_CPU_BF16=off: the same fallback, the same float32 numbers */
    const char *off[] = {LC_CPU_BF16_ENV, "off", NULL};
    r = bench_bf16(off);
    cr_expect(strstr(r.err, "LORAC_CPU_BF16=off; computing in float32"), "%s", r.err);
    cr_expect(strstr(r.out, f32), "%s vs %s", r.out, f32);
    lc_test_run_free(&r);
    /* emulate: bf16 GEMMs, a different loss */
    const char *emulate[] = {LC_CPU_BF16_ENV, "emulate", NULL};
    r = bench_bf16(emulate);
    cr_expect(strstr(r.out, "\"compute_dtype\":\"bfloat16\""), "%s", r.out);
    cr_expect(!strstr(r.err, "computing in float32"), "%s", r.err);
    lc_test_run_free(&r);
}

/* ---- attention's products (lc_cpu_attn_gemm_bf16) and attention ---------- */

/* One product C = alpha·op(A)·op(B) + beta·C0 through lc_cpu_attn_gemm_bf16,
 * against float64 on the rounded inputs; the worst relative error over
 * every transpose, beta, and shapes with partial tiles and odd K, each
 * thread of a parallel region computing its own (the kernel packs per
 * thread). Returns the worst error against the unrounded inputs (the
 * rounding's effect). */
static double check_attn_products(const char *engine)
{
    static const int shapes[][3] = {{96, 256, 64}, {96, 64, 256}, {256, 64, 96}, {7, 33, 5},
                                    {17, 100, 63}, {40, 31, 130}, {1, 1, 1}, {8, 32, 2}};
    const int ns = (int)(sizeof shapes / sizeof shapes[0]);
    double worst = 0, least_raw = 1e30;
#pragma omp parallel for schedule(dynamic) num_threads(2) reduction(max : worst) \
    reduction(min : least_raw)
    for (int c = 0; c < ns * 8; c++) {
        int M = shapes[c / 8][0], Nn = shapes[c / 8][1], K = shapes[c / 8][2];
        bool ta = c & 1, tb = c & 2, beta = c & 4;
        int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : Nn) + 5, ldc = Nn + 2;
        int64_t na = (ta ? K : M) * lda, nb = (tb ? Nn : K) * ldb;
        float *A = malloc(sizeof(float) * na), *B = malloc(sizeof(float) * nb);
        float *C = malloc(sizeof(float) * M * ldc), *ref = malloc(sizeof(float) * M * Nn);
        float *raw = malloc(sizeof(float) * M * Nn), *got = malloc(sizeof(float) * M * Nn);
        fill(A, na, 11 + c, 2.0);
        fill(B, nb, 12 + c, 2.0);
        fill(C, M * ldc, 13 + c, 1.0);
        const float alpha = 0.75f;
        for (int i = 0; i < M; i++)
            for (int j = 0; j < Nn; j++) {
                double s = 0, u = 0;
                for (int k = 0; k < K; k++) {
                    float a = ta ? A[k * lda + i] : A[i * lda + k];
                    float b = tb ? B[j * ldb + k] : B[k * ldb + j];
                    s += r_bf16(a) * r_bf16(b);
                    u += (double)a * b;
                }
                double c0 = beta ? C[i * ldc + j] : 0;
                ref[i * Nn + j] = (float)(alpha * s + c0);
                raw[i * Nn + j] = (float)(alpha * u + c0);
            }
        float pad = C[Nn]; /* a column past N in row 0: never written */
        lc_cpu_attn_gemm_bf16(ta, tb, M, Nn, K, alpha, A, lda, B, ldb, beta ? 1 : 0, C, ldc);
        for (int i = 0; i < M; i++)
            memcpy(got + i * Nn, C + i * ldc, sizeof(float) * Nn);
        double e = lc_test_rel_err_f32(got, ref, (size_t)M * Nn);
        double e_raw = lc_test_rel_err_f32(got, raw, (size_t)M * Nn);
        if (K >= 5)
            least_raw = e_raw < least_raw ? e_raw : least_raw;
        worst = e > worst ? e : worst;
        if (C[Nn] != pad)
            worst = 1; /* wrote past its columns */
        free(A), free(B), free(C), free(ref), free(raw), free(got);
    }
    cr_log_info("%s (%s): attention products, worst rel err %.3g vs the rounded product, "
                "least %.3g vs the unrounded", engine, lc_cpu_attn_gemm_bf16_kernel(), worst, least_raw);
    cr_expect_lt(worst, TOL_ROUNDED, "%s: %g", engine, worst);
    return least_raw;
}

/* The onednn engine's attention products run on lorac's own kernel: on AMX
 * where the CPU has it, else on VDPBF16PS. `amx_off` selects the engine
 * with LC_CPU_AMX_ENV=off (VDPBF16PS on an AMX CPU); false when the engine
 * or, with amx_off, AMX is not here (said in the log). */
static bool use_onednn_units(bool amx_off)
{
    if (amx_off && !lc_cpu_small_gemm_bf16_amx_present()) {
        cr_log_info("no AMX here: attention's products checked on one kernel only");
        return false;
    }
    setenv(LC_CPU_AMX_ENV, amx_off ? "off" : "auto", 1);
    bool ok = use_engine("onednn");
    unsetenv(LC_CPU_AMX_ENV);
    if (ok && amx_off)
        cr_assert_str_eq(lc_cpu_attn_gemm_bf16_kernel(), "lorac's AVX512-BF16 kernel");
    return ok;
}

Test(cpu_bf16, attention_products_every_transpose)
{
    const char *engines[] = {"emulate", "onednn", "onednn"};
    for (int i = 0; i < 3; i++) {
        if (i == 0 ? !use_engine(engines[i]) : !use_onednn_units(i == 2))
            continue;
        double raw = check_attn_products(engines[i]);
        cr_expect_gt(raw, MIN_ROUNDING_EFFECT, "%s: the inputs were not rounded (%g)",
                     engines[i], raw);
    }
}

/* Causal GQA attention (B 2, T 70: blocks of 32 and a partial one; H 6, KV 2,
 * D 40) through the bf16 table against the f32 table: forward outputs and
 * all three input gradients. The bf16 path rounds q, k, v, the
 * probabilities and dO to bf16, so it differs from f32 by about a bf16
 * rounding; on bf16 units its kernel and the emulate engine agree up to
 * summation order. */
typedef struct attn_out {
    float *out, *lse, *dq, *dk, *dv;
} attn_out;

static attn_out run_attention(const lc_kernels *k, const lc_attn_shape *s, const float *q,
                              const float *kk, const float *v, const float *dout)
{
    size_t nq = (size_t)(s->B * s->T * s->H * s->D), nk = (size_t)(s->B * s->T * s->KV * s->D);
    attn_out o = {calloc(nq, sizeof(float)), calloc((size_t)(s->B * s->H * s->T), sizeof(float)),
                  calloc(nq, sizeof(float)), calloc(nk, sizeof(float)), calloc(nk, sizeof(float))};
    float *scratch = malloc(sizeof(float) * k->attention_scratch(s));
    k->attention_fwd(s, q, kk, v, o.out, o.lse, scratch);
    k->attention_bwd(s, q, kk, v, o.out, o.lse, dout, o.dq, o.dk, o.dv, scratch);
    free(scratch);
    return o;
}

static void free_attn(attn_out *o) { free(o->out), free(o->lse), free(o->dq), free(o->dk), free(o->dv); }

/* Worst relative error of a against b over the five outputs. */
static double attn_err(const attn_out *a, const attn_out *b, const lc_attn_shape *s)
{
    size_t nq = (size_t)(s->B * s->T * s->H * s->D), nk = (size_t)(s->B * s->T * s->KV * s->D);
    double e[5] = {lc_test_rel_err_f32(a->out, b->out, nq),
                   lc_test_rel_err_f32(a->lse, b->lse, (size_t)(s->B * s->H * s->T)),
                   lc_test_rel_err_f32(a->dq, b->dq, nq), lc_test_rel_err_f32(a->dk, b->dk, nk),
                   lc_test_rel_err_f32(a->dv, b->dv, nk)};
    double w = 0;
    for (int i = 0; i < 5; i++)
        w = e[i] > w ? e[i] : w;
    return w;
}

Test(cpu_bf16, attention_in_bf16)
{
    lc_attn_shape s = {.B = 2, .T = 70, .H = 6, .KV = 2, .D = 40, .scale = 1 / sqrt(40.0)};
    size_t nq = (size_t)(s.B * s.T * s.H * s.D), nk = (size_t)(s.B * s.T * s.KV * s.D);
    float *q = malloc(sizeof(float) * nq), *kk = malloc(sizeof(float) * nk);
    float *v = malloc(sizeof(float) * nk), *dout = malloc(sizeof(float) * nq);
    fill(q, nq, 21, 4.0);
    fill(kk, nk, 22, 4.0);
    fill(v, nk, 23, 2.0);
    fill(dout, nq, 24, 1.0);
    attn_out f32 = run_attention(lc_cpu_kernels_active(), &s, q, kk, v, dout);
    cr_assert(use_engine("emulate"));
    attn_out emu = run_attention(lc_cpu_kernels_active_bf16(), &s, q, kk, v, dout);
    double e_emu = attn_err(&emu, &f32, &s);
    cr_log_info("attention, emulate vs float32: worst rel err %.3g", e_emu);
    /* measured 2026-12-01: 4.1e-3, about a bf16 rounding (2^-9 = 2e-3) */
    cr_expect_lt(e_emu, 2e-2, "bf16 attention far from f32: %g", e_emu);
    cr_expect_gt(e_emu, MIN_ROUNDING_EFFECT, "bf16 attention did not round (%g)", e_emu);
    for (int amx_off = 0; amx_off < 2; amx_off++) {
        if (!use_onednn_units(amx_off))
            continue;
        attn_out hw = run_attention(lc_cpu_kernels_active_bf16(), &s, q, kk, v, dout);
        double e_hw = attn_err(&hw, &emu, &s);
        cr_log_info("attention, onednn engine (%s) vs emulate: worst rel err %.3g",
                    lc_cpu_attn_gemm_bf16_kernel(), e_hw);
        /* measured: 1.1e-7 (2026-12-01, Zen 5, AVX512-BF16); 1.15e-7 on AMX and
         * 8.3e-8 on VDPBF16PS (2026-12-02, Xeon with AMX) */
        cr_expect_lt(e_hw, 1e-6, "onednn (%s) vs emulate: %g", lc_cpu_attn_gemm_bf16_kernel(),
                     e_hw);
        free_attn(&hw);
    }
    free_attn(&f32), free_attn(&emu);
    free(q), free(kk), free(v), free(dout);
}

/* The fused lm_head + cross-entropy on the onednn engine writes the
 * softmax gradient rounded to bf16 straight into the buffer its backward
 * product reads; on the emulate engine the f32 gradient is rounded
 * afterwards. The two must agree up to summation order: loss, supervised
 * count and dx, over rows that pad the GEMMs (70 rows, 9 of them
 * unsupervised: 61 run as 64). */
Test(cpu_bf16, lm_head_gradient_rounded_in_the_softmax)
{
    enum { NR = 70, C = 48, V = 300 };
    float *x = malloc(sizeof(float) * NR * C), *w = malloc(sizeof(float) * V * C);
    fill(x, NR * C, 31, 4.0);
    fill(w, V * C, 32, 0.5);
    uint16_t *wb = malloc(sizeof(uint16_t) * V * C);
    for (int i = 0; i < V * C; i++)
        wb[i] = lc_f32_to_bf16(w[i]);
    lc_weight W = {.data = wb, .dtype = LC_DTYPE_BF16, .rows = V, .cols = C};
    int32_t targets[NR];
    uint64_t seed = 33;
    for (int r = 0; r < NR; r++)
        targets[r] = r % 8 == 3 ? -100 : (int32_t)(lc_test_splitmix64(&seed) % V);
    double loss[2];
    int64_t nsup[2];
    float *dx[2];
    const char *engines[2] = {"emulate", "onednn"};
    for (int e = 0; e < 2; e++) {
        if (!use_engine(engines[e]))
            return;
        const lc_kernels *k = lc_cpu_kernels_active_bf16();
        float *scratch = malloc(sizeof(float) * k->ce_scratch(NR, C, V, &W));
        dx[e] = calloc((size_t)NR * C, sizeof(float));
        loss[e] = k->lm_head_ce(x, NR, C, &W, targets, 0.5f, dx[e], &nsup[e], scratch, 0);
        free(scratch);
    }
    double e_dx = lc_test_rel_err_f32(dx[1], dx[0], (size_t)NR * C);
    cr_log_info("lm_head, onednn (gradient rounded in the softmax) vs emulate: loss %.9g vs "
                "%.9g, dx rel err %.3g", loss[1], loss[0], e_dx);
    cr_expect_eq(nsup[0], 61);
    cr_expect_eq(nsup[1], 61);
    /* measured 2026-12-01 (Zen 5): loss equal to 9 digits, dx 2.5e-7 */
    cr_expect_lt(fabs(loss[1] - loss[0]) / fabs(loss[0]), 1e-6, "%.9g vs %.9g", loss[1], loss[0]);
    cr_expect_lt(e_dx, 2e-6, "dx: %g", e_dx);
    for (int r = 0; r < NR; r++)
        if (targets[r] < 0)
            for (int c = 0; c < C; c++)
                cr_expect_eq(dx[1][r * C + c], 0.0f, "unsupervised row %d has a gradient", r);
    free(dx[0]), free(dx[1]), free(x), free(w), free(wb);
}

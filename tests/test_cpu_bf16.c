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
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/cpu/gemm_bf16.h"
#include "autograd/cpu/onednn.h"
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

/* y = beta·y0 + x·Wᵀ and dx = dx0 + dy·W through the bf16 kernels, against
 * float64 on the rounded and on the unrounded inputs. */
static void check_kernels(const char *engine, const char *kind)
{
    if (!use_engine(engine))
        return;
    float *x = malloc(sizeof(float) * N * IN), *w = malloc(sizeof(float) * OUT * IN);
    float *dy = malloc(sizeof(float) * N * OUT);
    fill(x, N * IN, 1, 4.0);
    fill(w, OUT * IN, 2, 0.2);
    fill(dy, N * OUT, 3, 1.0);
    test_weight t;
    make_weight(&t, w, kind);
    float *wd = malloc(sizeof(float) * OUT * IN); /* W as the kernel sees it before rounding */
    lc_weight_rows_to_real(&t.W, 0, OUT, wd);
    lc_real *scratch = malloc(sizeof(lc_real) * (lc_cpu_weight_scratch_bf16(&t.W) + 1));

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
    memcpy(dx, dx0, sizeof(float) * N * IN);
    lc_cpu_weight_matmul_grad_bf16(dy, N, &t.W, dx, scratch);
    for (int i = 0; i < N; i++)
        for (int k = 0; k < IN; k++) {
            double s = dx0[i * IN + k];
            for (int o = 0; o < OUT; o++)
                s += r_bf16(dy[i * OUT + o]) * r_bf16(wd[o * IN + k]);
            reff[i * IN + k] = (float)s;
        }
    double e = lc_test_rel_err_f32(dx, reff, N * IN);
    cr_log_info("%s %s backward (dx += dy·W): rel err %.3g", engine, kind, e);
    cr_expect_lt(e, TOL_ROUNDED, "%s %s backward: %g", engine, kind, e);
    free(dx), free(dx0), free(reff);
    free(scratch), free(wd), free(x), free(w), free(dy);
    free_weight(&t);
}

#define KERNEL_TESTS(engine)                                                               \
    Test(cpu_bf16, engine##_f32_weight) { check_kernels(#engine, "f32"); }                 \
    Test(cpu_bf16, engine##_bf16_weight) { check_kernels(#engine, "bf16"); }               \
    Test(cpu_bf16, engine##_f16_weight) { check_kernels(#engine, "f16"); }                 \
    Test(cpu_bf16, engine##_nf4_weight) { check_kernels(#engine, "nf4"); }
KERNEL_TESTS(emulate)
KERNEL_TESTS(onednn)

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

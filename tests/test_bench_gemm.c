/* test_bench_gemm.c — the GEMM FLOPs `lorac bench` reports per step
 * (train/bench_gemm.h), against the GEMMs a real step calls: this test is
 * linked with -Wl,--wrap=cblas_sgemm,--wrap=cblas_sgemv (CMakeLists.txt),
 * so every CBLAS product lorac runs passes through a counter here (2·M·N·K,
 * 2·M·N for a matrix-vector product). Also `lorac bench --gemm-peak`'s JSON.
 *
 *   step_flops_match_the_gemm_calls   one in-process `bench` step of a tiny
 *       Llama on the CPU — f32 without and with gradient checkpointing, and
 *       compute_dtype bfloat16 on the emulate engine (bf16-rounded operands,
 *       products on the f32 GEMM) — the counted FLOPs equal
 *       lc_gemm_flops_count's, up to the attention kernel's and the fused
 *       head's known excess (below); the JSON's gemm_gflop is that count, and bf16_gemm names the
 *       engine ("off" in f32)
 *   gemm_peak_json                    --gemm-peak on a tiny shape: every
 *       block linear forward and backward-data, the lm_head, positive rates,
 *       an overall rate between the slowest and the fastest shape, the
 *       cores' multiply-add peak (positive, below what any core can do), and
 *       the bf16 rates ("no bf16 units" on a CPU without them) */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "autograd/cpu/gemm_bf16.h"
#include "autograd/cpu/onednn.h"
#include "autograd/kernels.h"
#include "train/bench.h"
#include "train/bench_gemm.h"

static _Atomic unsigned long long counted; /* FLOPs of the CBLAS calls since reset */

void __real_cblas_sgemm(CBLAS_ORDER o, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint M,
                        blasint N, blasint K, float alpha, const float *A, blasint lda,
                        const float *B, blasint ldb, float beta, float *C, blasint ldc);
void __wrap_cblas_sgemm(CBLAS_ORDER o, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint M,
                        blasint N, blasint K, float alpha, const float *A, blasint lda,
                        const float *B, blasint ldb, float beta, float *C, blasint ldc);
void __real_cblas_sgemv(CBLAS_ORDER o, CBLAS_TRANSPOSE t, blasint M, blasint N, float alpha,
                        const float *A, blasint lda, const float *x, blasint incx, float beta,
                        float *y, blasint incy);
void __wrap_cblas_sgemv(CBLAS_ORDER o, CBLAS_TRANSPOSE t, blasint M, blasint N, float alpha,
                        const float *A, blasint lda, const float *x, blasint incx, float beta,
                        float *y, blasint incy);

void __wrap_cblas_sgemm(CBLAS_ORDER o, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint M,
                        blasint N, blasint K, float alpha, const float *A, blasint lda,
                        const float *B, blasint ldb, float beta, float *C, blasint ldc)
{
    atomic_fetch_add(&counted, 2ull * (unsigned long long)M * (unsigned long long)N *
                                   (unsigned long long)K);
    __real_cblas_sgemm(o, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void __wrap_cblas_sgemv(CBLAS_ORDER o, CBLAS_TRANSPOSE t, blasint M, blasint N, float alpha,
                        const float *A, blasint lda, const float *x, blasint incx, float beta,
                        float *y, blasint incy)
{
    atomic_fetch_add(&counted, 2ull * (unsigned long long)M * (unsigned long long)N);
    __real_cblas_sgemv(o, t, M, N, alpha, A, lda, x, incx, beta, y, incy);
}

/* `lorac bench ARGS` in this process (so its GEMMs are counted); its JSON. */
static cJSON *bench_in_process(const char **args, int n)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    cr_assert(out);
    lc_error err = {{0}};
    int rc = lc_bench_main(n, (char **)args, out, &err);
    fclose(out);
    cr_assert_eq(rc, 0, "bench: %s", err.msg);
    cr_log_info("bench: %s", text);
    cJSON *j = cJSON_Parse(text);
    cr_assert(j, "bench did not print JSON:\n%s", text);
    free(text);
    return j;
}

/* The tiny shape: hidden 64, 4 heads of 16 (2 kv), FF 96, vocab 256, 3
 * layers, LoRA r 4, 2 rows of 16 tokens, one step. */
#define TINY_ARGS "--hidden", "64", "--heads", "4", "--kv-heads", "2", "--intermediate", "96", \
        "--vocab", "256", "--layers", "3", "--rank", "4", "--batch", "2", "--seq", "16"

Test(bench_gemm, step_flops_match_the_gemm_calls, .timeout = 120)
{
    const int64_t B = 2, T = 16;
    setenv("LORAC_CPU_GEMM", "openblas", 1); /* f32 weight GEMMs through CBLAS, counted here */
    lc_model_config cfg = {.arch = LC_ARCH_LLAMA, .hidden_size = 64, .intermediate_size = 96,
                           .n_layers = 3, .n_heads = 4, .n_kv_heads = 2, .head_dim = 16,
                           .vocab_size = 256};
    for (int run = 0; run < 3; run++) {
        bool ck = run == 1, bf16 = run == 2;
        const char *args[] = {TINY_ARGS, "--steps", "1", "--warmup", "0", "--compute-dtype",
                              bf16 ? "bfloat16" : "float32", "--checkpointing"};
        int n = (int)(sizeof args / sizeof args[0]) - (ck ? 0 : 1);
        setenv("LORAC_CPU_BF16", "emulate", 1);
        atomic_store(&counted, 0);
        cJSON *j = bench_in_process(args, n);
        unsetenv("LORAC_CPU_BF16");
        const cJSON *eng = cJSON_GetObjectItemCaseSensitive(j, "bf16_gemm");
        cr_expect(cJSON_IsString(eng) && strcmp(eng->valuestring, bf16 ? "emulate" : "off") == 0,
                  "bf16_gemm %s in the %s run", cJSON_Print(eng), bf16 ? "bfloat16" : "float32");
        double ran = (double)atomic_load(&counted);
        lc_gemm_flops f;
        lc_error err;
        /* every token a label, shifted: the last of each row predicts nothing */
        cr_assert_eq(lc_gemm_flops_count(&cfg, 4, B, T, B * (T - 1), ck, &f, &err), 0, "%s",
                     err.msg);
        /* The attention kernel multiplies whole 32-row blocks of scores: with T = 16 <= 32
         * every row against all T keys (the masked ones zeroed), T² pairs where the count
         * has the visible T(T+1)/2 — in each of its products, the recomputed forward too. */
        double attn = f.attention * (ck ? 9.0 / 7 : 1); /* recompute: the 2 forward products */
        /* The fused head runs its products on its supervised rows padded to a multiple of
         * 64 (zero rows): 64 rows where the count has the B·(T−1) = 30 supervised ones. */
        double expect = f.total + attn * ((double)(T * T) / (T * (T + 1) / 2.0) - 1) +
                        f.lm_head * (64.0 / (double)(B * (T - 1)) - 1);
        cr_expect(fabs(ran - expect) <= 1e-9 * expect,
                  "run %d (checkpointing %d): the step's CBLAS calls did %.0f FLOPs, the count says %.0f "
                  "(frozen %.0f lora %.0f attention %.0f lm_head %.0f recompute %.0f)", run, ck, ran,
                  expect, f.frozen, f.lora, f.attention, f.lm_head, f.recompute);
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(j, "gemm_gflop");
        cr_expect(cJSON_IsNumber(g) && fabs(g->valuedouble - f.total / 1e9) <= 1e-6 * f.total / 1e9,
                  "gemm_gflop %s, the count %.9g", cJSON_Print(g), f.total / 1e9);
        cJSON_Delete(j);
    }
}

Test(bench_gemm, moe_is_refused_with_a_reason)
{
    lc_model_config cfg = {.arch = LC_ARCH_MIXTRAL, .hidden_size = 64, .intermediate_size = 96,
                           .n_layers = 1, .n_heads = 4, .n_kv_heads = 2, .head_dim = 16,
                           .vocab_size = 256, .n_experts = 4, .n_experts_per_tok = 2,
                           .moe_intermediate_size = 96};
    lc_gemm_flops f;
    lc_error err = {{0}};
    cr_expect_eq(lc_gemm_flops_count(&cfg, 4, 1, 8, 8, false, &f, &err), -1);
    cr_expect(strstr(err.msg, "Mixture-of-Experts"), "message: %s", err.msg);
}

/* Every shape's rate in lib ("f32", "f32_onednn", "bf16") is measured and
 * physically possible on threads cores: below max_per_thread GFLOP/s each
 * (an uninitialised batch count in the timing loop once printed 3e12). */
static void expect_rates_possible(const cJSON *j, const char *lib, double max_per_thread)
{
    const cJSON *shapes =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, lib), "shapes");
    int threads = cJSON_GetObjectItemCaseSensitive(j, "threads")->valueint;
    const cJSON *s;
    cJSON_ArrayForEach(s, shapes)
    {
        double r = cJSON_GetObjectItemCaseSensitive(s, "gflops")->valuedouble;
        cr_expect(r > 0 && r < max_per_thread * threads, "%s %s: %g GFLOP/s on %d threads", lib,
                  cJSON_GetObjectItemCaseSensitive(s, "what")->valuestring, r, threads);
    }
}

Test(bench_gemm, gemm_peak_json, .timeout = 120)
{
    const char *args[] = {TINY_ARGS, "--gemm-peak"};
    cJSON *j = bench_in_process(args, (int)(sizeof args / sizeof args[0]));
    const cJSON *f32 = cJSON_GetObjectItemCaseSensitive(j, "f32");
    const cJSON *shapes = cJSON_GetObjectItemCaseSensitive(f32, "shapes");
    cr_assert(cJSON_IsArray(shapes));
    /* 7 linears x (fwd, bwd-data) + the lm_head's 32 rows in one chunk x 2, which the
     * fused head pads to LC_CE_ROW_PAD rows */
    cr_expect_eq(cJSON_GetArraySize(shapes), 16);
    double lo = INFINITY, hi = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, shapes)
    {
        double r = cJSON_GetObjectItemCaseSensitive(s, "gflops")->valuedouble;
        cr_expect(r > 0 && isfinite(r), "%s: %g GFLOP/s",
                  cJSON_GetObjectItemCaseSensitive(s, "what")->valuestring, r);
        lo = r < lo ? r : lo, hi = r > hi ? r : hi;
        const char *what = cJSON_GetObjectItemCaseSensitive(s, "what")->valuestring;
        cr_expect_eq(cJSON_GetObjectItemCaseSensitive(s, "M")->valueint,
                     strncmp(what, "lm_head", 7) ? 32 : LC_CE_ROW_PAD,
                     "%s: every linear has M = batch x seq = 32 rows here, the head %d", what,
                     LC_CE_ROW_PAD);
    }
    double all = cJSON_GetObjectItemCaseSensitive(f32, "overall_gflops")->valuedouble;
    /* printed to 0.1 GFLOP/s */
    cr_expect(all >= lo - 0.05 && all <= hi + 0.05, "overall %g outside [%g, %g]", all, lo, hi);
    /* the cores' multiply-add peak: measured, and physically possible (a loop the
     * compiler moved out of the timed span once read 6.6e11 GFLOP/s; no core does
     * 1000 GFLOP/s per thread: 2 AVX-512 FMA units at 5 GHz are 320) */
    const cJSON *fma = cJSON_GetObjectItemCaseSensitive(j, "fma_peak_gflops");
    const cJSON *threads = cJSON_GetObjectItemCaseSensitive(j, "threads");
    cr_assert(cJSON_IsNumber(fma) && cJSON_IsNumber(threads));
    cr_expect(fma->valuedouble > 0 && fma->valuedouble < 1000.0 * threads->valueint,
              "fma_peak_gflops %g on %d threads", fma->valuedouble, threads->valueint);
    /* f32: 2 AVX-512 FMA units at 5 GHz are 320 GFLOP/s a core; bf16: AMX's
     * 1024 multiply-adds a cycle at 5 GHz are 10240 */
    expect_rates_possible(j, "f32", 1000);
    expect_rates_possible(j, "f32_onednn", 1000);
    const cJSON *bf16 = cJSON_GetObjectItemCaseSensitive(j, "bf16");
    if (lc_onednn_bf16_units()) {
        expect_rates_possible(j, "bf16", 10240);
        cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(bf16, "shapes")), 16,
                     "bf16 on %s: %s", lc_onednn_bf16_units(), cJSON_Print(bf16));
        /* q/k/v (64 + 32 + 32 out) and gate/up (96 + 96) in their shared forms, both ways;
         * the backward's dx skips layer 0's attention input (2 of 3 layers) */
        const struct { const char *group, *dir; int N, K, calls; } want[] = {
            {"q_proj+k_proj+v_proj", "fwd", 128, 64, 3},
            {"q_proj+k_proj+v_proj", "bwd-data", 64, 128, 2},
            {"gate_proj+up_proj", "fwd", 192, 64, 3},
            {"gate_proj+up_proj", "bwd-data", 64, 192, 3}};
        const cJSON *groups = cJSON_GetObjectItemCaseSensitive(j, "bf16_groups");
        cr_assert_eq(cJSON_GetArraySize(groups), 4, "%s", cJSON_Print(groups));
        for (int i = 0; i < 4; i++) {
            const cJSON *g = cJSON_GetArrayItem(groups, i);
#define FIELD(k) cJSON_GetObjectItemCaseSensitive(g, k)
            cr_expect_str_eq(FIELD("group")->valuestring, want[i].group);
            cr_expect_str_eq(FIELD("dir")->valuestring, want[i].dir);
            cr_expect(FIELD("M")->valueint == 32 && FIELD("N")->valueint == want[i].N &&
                          FIELD("K")->valueint == want[i].K &&
                          FIELD("calls")->valueint == want[i].calls,
                      "%s", cJSON_Print(g));
            cr_expect(FIELD("separate_ms")->valuedouble > 0 && FIELD("shared_ms")->valuedouble > 0,
                      "%s", cJSON_Print(g));
            cr_expect_str_eq(FIELD("form")->valuestring,
                             i % 2 ? "one product, K stacked" : "batched by shape");
#undef FIELD
        }
        cr_expect(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(j, "bf16_groups_step_ms_saved")));
    } else
        cr_expect(cJSON_IsString(bf16) && strcmp(bf16->valuestring, "no bf16 units") == 0,
                  "bf16: %s", cJSON_Print(bf16));
    cJSON_Delete(j);
}

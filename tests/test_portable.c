/* test_portable.c — one lorac binary for every x86-64 CPU, and the tools
 * that check it.
 *
 *   - the kernel variants (autograd/cpu/dispatch.c): LORAC_CPU_ISA picks
 *     one, a bad or unsupported one is refused, and every variant this CPU
 *     runs computes what the baseline computes (the dropout mask bit for bit,
 *     the rest to float rounding: wider vectors sum in another order);
 *   - the OpenBLAS core check (autograd/cpu/blas.c): the decision table,
 *     and the re-execution on a CPU OpenBLAS 0.3.21 misidentifies (qemu's
 *     "max" CPU: AVX2, called "Opteron" by OpenBLAS);
 *   - the binary on other CPUs: under qemu-x86_64 as a Nehalem (x86-64-v2),
 *     a Haswell and an AMD EPYC (x86-64-v3), `lorac train` reproduces every fixture's
 *     3-step HF/PEFT trace (Criterion's workers re-execute themselves
 *     natively, so whole lorac runs are what qemu can check);
 *   - the trainer under valgrind memcheck, with the kernels forced to the
 *     baseline valgrind decodes: no errors, no leaks, and valgrind's own
 *     failures (an instruction it cannot decode, a tool that does not
 *     start) reported as such, never as a pass or as a lorac bug.
 *
 * The qemu and valgrind tests skip when the tool is not installed
 * (scripts/test.sh installs both). */
#include <criterion/criterion.h>

#include <cjson/cJSON.h>
#include <fenv.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autograd/cpu/blas.h"
#include "autograd/cpu/dispatch.h"
#include "autograd/kernels.h"
#include "tests/helpers.h"

static bool on_path(const char *prog)
{
    const char *path = getenv("PATH");
    if (!path)
        return false;
    char *copy = strdup(path), *save = NULL;
    bool found = false;
    for (char *d = strtok_r(copy, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        char *p = lc_test_path_in(*d ? d : ".", prog);
        found = access(p, X_OK) == 0;
        free(p);
    }
    free(copy);
    return found;
}

/* qemu-user cannot give AddressSanitizer its shadow memory: the sanitizer
 * build runs everything here but the emulated runs. */
static void need_qemu(void)
{
#if defined(__SANITIZE_ADDRESS__)
    cr_skip("an AddressSanitizer build cannot run under qemu-user");
#endif
    if (!on_path("qemu-x86_64"))
        cr_skip("qemu-x86_64 is not installed (apt-get install qemu-user)");
}

/* Chooses a variant as a command would; returns false when this CPU lacks it. */
static bool use_variant(const char *name)
{
    lc_error err = {{0}};
    setenv(LC_CPU_ISA_ENV, name, 1);
    int rc = lc_cpu_isa_select(&err);
    unsetenv(LC_CPU_ISA_ENV);
    if (rc) {
        lc_test_assert_msg_has(&err, "does not support");
        return false;
    }
    return true;
}

/* ======================================================= kernel variants */

Test(dispatch, env_selects_and_refuses)
{
#if defined(LC_CPU_NATIVE)
    cr_skip("a -DLORAC_NATIVE=ON build has one variant");
#endif
    lc_error err = {{0}};
    cr_assert(use_variant("x86-64-v2"), "every x86-64-v2 CPU runs the baseline");
    cr_expect_str_eq(lc_cpu_isa(), "x86-64-v2");
    cr_expect(strcmp(lc_cpu_isa_best(), "x86-64-v2") == 0 || lc_cpu_isa_forced());
    cr_assert(use_variant("baseline"));
    cr_expect_str_eq(lc_cpu_isa(), "x86-64-v2");
    if (use_variant("avx2"))
        cr_expect_str_eq(lc_cpu_isa(), "x86-64-v3");
    else
        cr_expect_str_eq(lc_cpu_isa_best(), "x86-64-v2");

    setenv(LC_CPU_ISA_ENV, "x86-64-v9", 1);
    cr_expect_eq(lc_cpu_isa_select(&err), -1);
    lc_test_assert_msg_has(&err, "LORAC_CPU_ISA=x86-64-v9: unknown; use auto or one of: "
                                 "x86-64-v2 x86-64-v3 x86-64-v4");
    setenv(LC_CPU_ISA_ENV, "auto", 1);
    cr_expect_eq(lc_cpu_isa_select(&err), 0);
    cr_expect_str_eq(lc_cpu_isa(), lc_cpu_isa_best());
    cr_expect_not(lc_cpu_isa_forced());
    unsetenv(LC_CPU_ISA_ENV);
}

/* The variants the per-variant tests run through: every one this build holds
 * (a native build's one, already chosen). */
#if defined(LC_CPU_NATIVE)
static const char *const TEST_VARIANTS[] = {"native"};
#else
static const char *const TEST_VARIANTS[] = {"x86-64-v2", "x86-64-v3", "x86-64-v4"};
#endif
#define N_TEST_VARIANTS ((int)(sizeof TEST_VARIANTS / sizeof TEST_VARIANTS[0]))

/* Runs the kernels of variant i from now on; false when this CPU cannot. */
static bool enter_variant(int i)
{
#if defined(LC_CPU_NATIVE)
    (void)i;
    return true;
#else
    return use_variant(TEST_VARIANTS[i]);
#endif
}

/* Back to the variant auto picks, after a test walked them. */
static void leave_variants(void)
{
    lc_error err;
    setenv(LC_CPU_ISA_ENV, "auto", 1);
    cr_assert_eq(lc_cpu_isa_select(&err), 0);
    unsetenv(LC_CPU_ISA_ENV);
}

/* Outputs of the kernels whose vector code differs most between variants
 * (simd reductions, the branch-free exp, the dropout hash) on one input. */
typedef struct kernel_outputs {
    float rms[64 * 96], rms_dx[64 * 96], swi[4096], swi_dg[4096], rope[64 * 4 * 32];
    float drop[5000], att[2 * 24 * 4 * 16], att_dq[2 * 24 * 4 * 16], ce_dx[40 * 32];
    double ce_loss;
} kernel_outputs;

static void fill(float *x, size_t n, uint64_t seed, float scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = scale * (float)((double)(lc_test_splitmix64(&seed) >> 11) / 9007199254740992.0 - 0.5);
}

static void run_kernels(kernel_outputs *o)
{
    static float x[64 * 128], w[96], dy[64 * 96], rstd[64], g[4096], u[4096];
    fill(x, 64 * 128, 1, 4), fill(w, 96, 2, 2), fill(dy, 64 * 96, 3, 1);
    fill(g, 4096, 4, 12), fill(u, 4096, 5, 2);
    memset(o, 0, sizeof *o);
    lc_k_rmsnorm_fwd(x, w, 64, 96, 1e-6, o->rms, rstd);
    lc_k_rmsnorm_bwd(x, w, rstd, dy, 64, 96, o->rms_dx);
    lc_k_swiglu_fwd(g, u, 4096, o->swi);
    lc_k_swiglu_bwd(g, u, dy, 4096, o->swi_dg, NULL, NULL);
    static float cs[16 * 32];
    int32_t pos[64];
    for (int p = 0; p < 16; p++)
        for (int j = 0; j < 16; j++) {
            double f = p * pow(10000.0, -j / 16.0);
            cs[p * 32 + j] = (float)cos(f), cs[p * 32 + 16 + j] = (float)sin(f);
        }
    for (int i = 0; i < 64; i++)
        pos[i] = i % 16;
    lc_k_rope(x, o->rope, 64, 4, 32, pos, cs, false, false); /* x as [64, 4, 32] */
    lc_k_dropout(g, o->drop, 4096, 0.3, 77, false);

    /* attention: B 2, T 24, H 4, KV 2, D 16, two packed segments per row */
    enum { B = 2, T = 24, H = 4, KV = 2, D = 16 };
    static float q[B * T * H * D], k[B * T * KV * D], v[B * T * KV * D], lse[B * H * T];
    static float dk[B * T * KV * D], dv[B * T * KV * D];
    int32_t seg[B * T];
    fill(q, sizeof q / 4, 6, 3), fill(k, sizeof k / 4, 7, 3), fill(v, sizeof v / 4, 8, 1);
    for (int i = 0; i < B * T; i++)
        seg[i] = i % T < 10 ? 0 : 1;
    lc_attn_shape s = {B, T, H, KV, D, 0.25, seg, 0, 0, 0};
    float *scratch = calloc(lc_k_attention_scratch(&s) + 1, sizeof(float));
    lc_k_attention_fwd(&s, q, k, v, o->att, lse, scratch);
    memset(dk, 0, sizeof dk), memset(dv, 0, sizeof dv);
    lc_k_attention_bwd(&s, q, k, v, o->att, lse, o->att /* as dout */, o->att_dq, dk, dv, scratch);
    free(scratch);

    /* lm_head + CE: N 40, C 32, V 300 */
    static float hx[40 * 32], hw[300 * 32];
    int32_t tg[40];
    fill(hx, sizeof hx / 4, 9, 2), fill(hw, sizeof hw / 4, 10, 2);
    for (int i = 0; i < 40; i++)
        tg[i] = i % 7 == 3 ? -100 : (i * 37) % 300;
    lc_weight W = {.dtype = LC_DTYPE_F32, .rows = 300, .cols = 32, .data = hw};
    float *ce_scratch = calloc(lc_k_ce_scratch(40, 32, 300, &W), sizeof(float));
    int64_t nsup = 0;
    o->ce_loss = lc_k_lm_head_ce(hx, 40, 32, &W, tg, 0.01f, o->ce_dx, &nsup, ce_scratch, 0);
    free(ce_scratch);
}

Test(dispatch, every_variant_computes_what_the_baseline_does, .timeout = 60)
{
#if defined(LC_CPU_NATIVE)
    cr_skip("a -DLORAC_NATIVE=ON build has one variant");
#endif
    static kernel_outputs base, other;
    cr_assert(use_variant("x86-64-v2"));
    run_kernels(&base);
    const char *names[] = {"x86-64-v3", "x86-64-v4"};
    int compared = 0;
    for (int i = 0; i < 2; i++) {
        if (!use_variant(names[i]))
            continue;
        run_kernels(&other);
        compared++;
        /* measured: ≤ 2.4e-7 (one or two float roundings of another
         * summation order); the exp is the same polynomial everywhere */
        const double tol = 2e-6;
        struct { const char *name; const float *a, *b; size_t n; } cmp[] = {
            {"rmsnorm", other.rms, base.rms, 64 * 96},
            {"rmsnorm dx", other.rms_dx, base.rms_dx, 64 * 96},
            {"swiglu", other.swi, base.swi, 4096},
            {"swiglu dg", other.swi_dg, base.swi_dg, 4096},
            {"rope", other.rope, base.rope, 64 * 4 * 32},
            {"attention", other.att, base.att, sizeof base.att / 4},
            {"attention dq", other.att_dq, base.att_dq, sizeof base.att_dq / 4},
            {"lm_head+ce dx", other.ce_dx, base.ce_dx, 40 * 32},
        };
        for (size_t c = 0; c < sizeof cmp / sizeof cmp[0]; c++) {
            double e = lc_test_rel_err_f32(cmp[c].a, cmp[c].b, cmp[c].n);
            cr_log_info("%s vs x86-64-v2: %s rel err %.2e", names[i], cmp[c].name, e);
            cr_expect_leq(e, tol, "%s: %s differs from the baseline by %.2e", names[i],
                          cmp[c].name, e);
        }
        cr_expect_eq(memcmp(other.drop, base.drop, sizeof base.drop), 0,
                     "%s: the dropout mask differs from the baseline's", names[i]);
        cr_expect_leq(fabs(other.ce_loss - base.ce_loss) / base.ce_loss, tol);
    }
    if (!compared)
        cr_log_warn("this CPU runs only the baseline variant: nothing to compare");
    leave_variants();
}

/* The gated backward's recomputed forward (ops.c takes f(x) for the LoRA A
 * gradients from it) is the forward to the bit, and asking for it changes
 * no gradient, in every variant and through each of its paths (all three
 * outputs fused; one gradient then the forward). */
Test(dispatch, gated_backward_recomputes_the_forward_exactly)
{
    enum { n = 5000 }; /* more than one chunk, not a multiple of one */
    static float g[n], u[n], dy[n], y[n], yb[n], dg[n], du[n], dg2[n], du2[n];
    fill(g, n, 11, 12), fill(u, n, 12, 2), fill(dy, n, 13, 1);
    typedef void (*fwd_fn)(const float *, const float *, int64_t, float *);
    typedef void (*bwd_fn)(const float *, const float *, const float *, int64_t, float *,
                           float *, float *);
    struct { const char *name; fwd_fn fwd; bwd_fn bwd; } acts[] = {
        {"swiglu", lc_k_swiglu_fwd, lc_k_swiglu_bwd},
        {"geglu_tanh", lc_k_geglu_tanh_fwd, lc_k_geglu_tanh_bwd},
    };
    for (int v = 0; v < N_TEST_VARIANTS; v++) {
        if (!enter_variant(v))
            continue;
        for (int a = 0; a < 2; a++) {
            acts[a].fwd(g, u, n, y);
            memset(dg, 0, sizeof dg), memset(du, 0, sizeof du);
            acts[a].bwd(g, u, dy, n, dg, du, NULL);
            memset(dg2, 0, sizeof dg2), memset(du2, 0, sizeof du2), memset(yb, 0, sizeof yb);
            acts[a].bwd(g, u, dy, n, dg2, du2, yb);
            cr_expect_eq(memcmp(yb, y, sizeof y), 0, "%s %s: y from the backward differs",
                         TEST_VARIANTS[v], acts[a].name);
            cr_expect_eq(memcmp(dg2, dg, sizeof dg), 0, "%s %s: dg changed with y asked for",
                         TEST_VARIANTS[v], acts[a].name);
            cr_expect_eq(memcmp(du2, du, sizeof du), 0, "%s %s: du changed with y asked for",
                         TEST_VARIANTS[v], acts[a].name);
            memset(dg2, 0, sizeof dg2), memset(yb, 0, sizeof yb);
            acts[a].bwd(g, u, dy, n, dg2, NULL, yb);
            cr_expect_eq(memcmp(yb, y, sizeof y), 0, "%s %s: y (du NULL) differs", TEST_VARIANTS[v],
                         acts[a].name);
            cr_expect_eq(memcmp(dg2, dg, sizeof dg), 0, "%s %s: dg (du NULL) differs",
                         TEST_VARIANTS[v], acts[a].name);
        }
    }
    leave_variants();
}

/* The branch-free exp and tanh clamp their argument to constants. GCC's jump
 * threading once duplicated every loop body after the clamp for the clamped
 * value; vectorised, both copies ran on every lane, and the constant copy
 * made subnormal products (g / (1 + e^88.5) in SwiGLU), each a microcode
 * assist: 6x slower, same results. Normal inputs with normal results must
 * raise no underflow in any variant (CMakeLists.txt builds the kernels with
 * -fno-thread-jumps). One thread, so the flags are this thread's. */
Test(dispatch, no_variant_makes_subnormals_from_normal_inputs)
{
    omp_set_num_threads(1);
    static kernel_outputs o;
    static float g[4096], u[4096], dy[4096], y[4096], dg[4096], du[4096];
    fill(g, 4096, 11, 12), fill(u, 4096, 12, 2), fill(dy, 4096, 13, 1);
    for (int i = 0; i < N_TEST_VARIANTS; i++) {
        if (!enter_variant(i))
            continue;
        struct { const char *name; int raised; } runs[4];
        int n = 0;
#define UNDERFLOWS(label, call)                                                        \
    do {                                                                               \
        feclearexcept(FE_ALL_EXCEPT);                                                  \
        call;                                                                          \
        runs[n].name = label, runs[n++].raised = fetestexcept(FE_UNDERFLOW) != 0;     \
    } while (0)
        UNDERFLOWS("rmsnorm, swiglu, rope, dropout, attention, lm_head+ce", run_kernels(&o));
        UNDERFLOWS("swiglu", (lc_k_swiglu_fwd(g, u, 4096, y),
                              lc_k_swiglu_bwd(g, u, dy, 4096, dg, du, y)));
        UNDERFLOWS("geglu_tanh", (lc_k_geglu_tanh_fwd(g, u, 4096, y),
                                  lc_k_geglu_tanh_bwd(g, u, dy, 4096, dg, du, y)));
        UNDERFLOWS("softcap", (memcpy(y, g, sizeof y), lc_k_softcap(y, 4096, 5.0)));
#undef UNDERFLOWS
        for (int r = 0; r < n; r++)
            cr_expect_not(runs[r].raised, "%s: %s raised an underflow on normal inputs",
                          TEST_VARIANTS[i], runs[r].name);
    }
#if !defined(LC_CPU_NATIVE)
    leave_variants();
#endif
}

Test(dispatch, version_names_the_kernels_and_blas)
{
    const char *args[] = {"--version", NULL};
    lc_test_run_result r = lc_test_run_lorac(NULL, args);
    cr_assert_eq(r.code, 0, "lorac --version: %s", r.err);
    char want[160];
    snprintf(want, sizeof want, "cpu: %s (", lc_cpu_isa_best());
    cr_expect(strstr(r.out, want), "no '%s' in:\n%s", want, r.out);
    cr_expect(strstr(r.out, "OpenBLAS 0."), "no BLAS version in:\n%s", r.out);
    cr_expect(strstr(r.out, " kernels, "), "no BLAS core in:\n%s", r.out);
    lc_test_run_free(&r);
#if !defined(LC_CPU_NATIVE)
    r = lc_test_run_lorac("LORAC_CPU_ISA=baseline", args);
    cr_assert_eq(r.code, 0);
    cr_expect(strstr(r.out, "cpu: x86-64-v2 (SSE4.2) kernels"), "%s", r.out);
    if (strcmp(lc_cpu_isa_best(), "x86-64-v2") != 0)
        cr_expect(strstr(r.out, "forced by LORAC_CPU_ISA"), "%s", r.out);
    lc_test_run_free(&r);
#endif
    r = lc_test_run_lorac("LORAC_CPU_ISA=sse9", args);
    cr_expect_eq(r.code, 2);
    cr_expect(strstr(r.err, "LORAC_CPU_ISA=sse9: unknown"), "%s", r.err);
    lc_test_run_free(&r);
}

/* ================================================== the OpenBLAS core */

Test(blas, core_levels_and_decision)
{
    cr_expect_eq(lc_blas_core_level("SkylakeX"), 4);
    cr_expect_eq(lc_blas_core_level("sapphirerapids"), 4);
    cr_expect_eq(lc_blas_core_level("Haswell"), 3);
    cr_expect_eq(lc_blas_core_level("ZEN"), 3);
    cr_expect_eq(lc_blas_core_level("Prescott"), 2);
    cr_expect_eq(lc_blas_core_level("Opteron"), 2);
    cr_expect_eq(lc_blas_core_level("GraniteRapids"), -1, "unknown names are left alone");
    cr_expect_eq(lc_blas_core_level(NULL), -1);
    /* the case: 0.3.21 on a Xeon with AVX-512 and AMX */
    cr_expect_str_eq(lc_blas_better_core("Prescott", 4), "SkylakeX");
    cr_expect_str_eq(lc_blas_better_core("Haswell", 4), "SkylakeX");
    cr_expect_str_eq(lc_blas_better_core("Opteron", 3), "Haswell");
    cr_expect_null(lc_blas_better_core("SkylakeX", 4));
    cr_expect_null(lc_blas_better_core("Cooperlake", 4));
    cr_expect_null(lc_blas_better_core("Zen", 3));
    cr_expect_null(lc_blas_better_core("Nehalem", 2), "nothing better for an SSE4 CPU");
    cr_expect_null(lc_blas_better_core("GraniteRapids", 4));
    cr_expect_null(lc_blas_better_core("Prescott", 0), "not x86");
}

Test(blas, reexec_fixes_a_misidentified_cpu, .timeout = 120)
{
    need_qemu();
    /* What this OpenBLAS picks on qemu's "max" CPU (AVX2 + FMA, no
     * AVX-512) when lorac leaves it alone (LORAC_BLAS_DETECTED set). */
    const char *probe[] = {"env", "-u", "OPENBLAS_CORETYPE", "qemu-x86_64", "-cpu", "max",
                           LORAC_BINARY, "--version", NULL};
    lc_test_run_result r = lc_test_run("LORAC_BLAS_DETECTED=probe", probe);
    cr_assert_eq(r.code, 0, "%s", r.err);
    char chosen[64] = "";
    const char *k = strstr(r.out, "OpenBLAS 0.");
    cr_assert_not_null(k, "%s", r.out);
    cr_assert_eq(sscanf(k, "OpenBLAS %*s %63[^ ] kernels", chosen), 1, "%s", r.out);
    lc_test_run_free(&r);
    if (lc_blas_core_level(chosen) < 0 || lc_blas_core_level(chosen) >= 3)
        cr_skip("this OpenBLAS identifies qemu's max CPU correctly (%s): nothing to fix", chosen);

    const char *run[] = {"env", "-u", "OPENBLAS_CORETYPE", "-u", "LORAC_BLAS_DETECTED",
                         "qemu-x86_64", "-cpu", "max", LORAC_BINARY, "--version", NULL};
    r = lc_test_run(NULL, run);
    cr_assert_eq(r.code, 0, "%s", r.err);
    char want[200];
    cr_expect(strstr(r.out, "Haswell kernels, "), "not re-executed with Haswell:\n%s", r.out);
    snprintf(want, sizeof want, "(OpenBLAS chose %s for this CPU; lorac set "
             "OPENBLAS_CORETYPE=Haswell)", chosen);
    cr_expect(strstr(r.out, want), "no '%s' in:\n%s", want, r.out);
    lc_test_run_free(&r);
}

/* ================================== older CPUs: the fixtures under qemu */

/* Runs the 3-step reference training of tests/fixtures/<name> as
 * configs/fixture_3step.yaml does, under qemu-x86_64 -cpu <cpu>, and
 * compares every step's loss and gradient norm with meta.json's trace. */
static void fixture_under_qemu(const char *name, const char *cpu, const char *want_isa,
                               const char *want_core)
{
    char *tmp = lc_test_tmpdir();
    char fx[4096];
    snprintf(fx, sizeof fx, "%s", lc_test_fixture(name));
    char *yaml = lc_test_asprintf(
        "base_model: %s/model\nlora_model_dir: %s/adapter_init\n"
        "datasets:\n  - path: %s/train.jsonl\n    type: tokenized\n"
        "sequence_len: 16\nsample_packing: false\nshuffle: false\nmicro_batch_size: 2\n"
        "max_steps: 3\nlearning_rate: 1.0e-3\nlr_scheduler: constant\nwarmup_steps: 0\n"
        "weight_decay: 0.01\nmax_grad_norm: 1.0\nlogging_steps: 1\nsave_steps: 0\n"
        "device: cpu\noutput_dir: %s/out\n",
        fx, fx, fx, tmp);
    char *config = lc_test_write_text(tmp, "run.yaml", yaml);
    const char *argv[] = {"env", "-u", "OPENBLAS_CORETYPE", "-u", "LORAC_CPU_ISA",
                          "qemu-x86_64", "-cpu", cpu, LORAC_BINARY, "train", config, NULL};
    lc_test_run_result r = lc_test_run(NULL, argv);
    cr_assert_eq(r.code, 0, "%s on %s: lorac exited %d:\n%s", name, cpu, r.code, r.err);
    char line[160];
    snprintf(line, sizeof line, "cpu: %s (", want_isa);
    cr_expect(strstr(r.err, line), "%s: no '%s' in:\n%s", cpu, line, r.err);
    snprintf(line, sizeof line, "%s kernels", want_core);
    cr_expect(strstr(r.err, line), "%s: no '%s' in:\n%s", cpu, line, r.err);
    lc_test_run_free(&r);

    char *meta_rel = lc_test_asprintf("%s/meta.json", name);
    char *meta_text = lc_test_read_file(lc_test_fixture(meta_rel), NULL);
    cJSON *meta = cJSON_Parse(meta_text);
    const cJSON *trace = cJSON_GetObjectItemCaseSensitive(meta, "trace");
    cr_assert_eq(cJSON_GetArraySize(trace), 3);
    char *mpath = lc_test_asprintf("%s/out/metrics.jsonl", tmp);
    char *metrics = lc_test_read_file(mpath, NULL);
    int step = 0;
    for (char *l = strtok(metrics, "\n"); l; l = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(l);
        const cJSON *loss = cJSON_GetObjectItemCaseSensitive(j, "loss");
        if (loss && step < 3) {
            const cJSON *t = cJSON_GetArrayItem(trace, step);
            const cJSON *norm = cJSON_GetObjectItemCaseSensitive(j, "grad_norm");
            double el = lc_test_rel(loss->valuedouble,
                                    cJSON_GetObjectItemCaseSensitive(t, "loss")->valuedouble);
            double en = lc_test_rel(norm->valuedouble,
                                    cJSON_GetObjectItemCaseSensitive(t, "grad_norm")->valuedouble);
            cr_log_info("%s on %s, step %d: loss rel err %.2e, grad_norm rel err %.2e", name,
                        cpu, step + 1, el, en);
            /* measured under qemu: loss ≤ 1.5e-7, grad_norm ≤ 1.1e-6 (qwen3,
             * step 2); OpenBLAS's kernels are fixed by the emulated CPU */
            cr_expect_leq(el, 1e-6, "%s on %s step %d: loss rel err %.2e", name, cpu, step + 1, el);
            cr_expect_leq(en, 5e-6, "%s on %s step %d: grad_norm rel err %.2e", name, cpu,
                          step + 1, en);
            step++;
        }
        cJSON_Delete(j);
    }
    cr_expect_eq(step, 3, "%s on %s: %d metrics lines", name, cpu, step);
    cJSON_Delete(meta);
    free(metrics), free(mpath), free(meta_text), free(meta_rel), free(config), free(yaml);
    lc_test_rm_rf(tmp);
    free(tmp);
}

static const char *const FIXTURES[] = {"tiny-llama", "tiny-mistral", "tiny-qwen2", "tiny-qwen3"};

static void all_fixtures_under_qemu(const char *cpu, const char *want_isa, const char *want_core)
{
#if !defined(__x86_64__) || defined(LC_CPU_NATIVE)
    cr_skip("x86-64 portable builds only");
#endif
    need_qemu();
    for (size_t i = 0; i < sizeof FIXTURES / sizeof FIXTURES[0]; i++)
        fixture_under_qemu(FIXTURES[i], cpu, want_isa, want_core);
}

Test(qemu, fixtures_on_an_x86_64_v2_cpu, .timeout = 300)
{
    all_fixtures_under_qemu("Nehalem", "x86-64-v2", "Nehalem");
}

Test(qemu, fixtures_on_an_x86_64_v3_cpu, .timeout = 300)
{
    all_fixtures_under_qemu("Haswell", "x86-64-v3", "Haswell");
}

Test(qemu, fixtures_on_an_amd_epyc, .timeout = 300)
{
    all_fixtures_under_qemu("EPYC", "x86-64-v3", "Zen");
}

/* ============================================== the trainer under valgrind */

/* What a valgrind log says went wrong, as one line for the failure
 * message: valgrind unable to run the program is not a lorac bug, and a
 * lorac failure is not a memcheck finding. Returns NULL when the run was
 * clean: exit 0 and memcheck's "ERROR SUMMARY: 0 errors". */
static const char *valgrind_verdict(int rc, const char *log, char *buf, size_t n)
{
    const char *p;
    if ((p = strstr(log, "unhandled instruction bytes")) ||
        (p = strstr(log, "Unrecognised instruction"))) {
        snprintf(buf, n, "valgrind could not run lorac: it met an instruction it cannot "
                 "decode (%.120s) — the binary is not the portable build, or the kernels "
                 "were not forced to the baseline", p);
        return buf;
    }
    if ((p = strstr(log, "valgrind: ")) && !strstr(log, "ERROR SUMMARY:")) {
        snprintf(buf, n, "valgrind itself failed before running lorac: %.200s", p);
        return buf;
    }
    if (rc == 99) {
        p = strstr(log, "ERROR SUMMARY:");
        snprintf(buf, n, "memcheck found errors or leaks in lorac: %.80s", p ? p : "(no summary)");
        return buf;
    }
    if (rc != 0) {
        snprintf(buf, n, "lorac itself failed under valgrind (exit %d, not a memcheck finding)", rc);
        return buf;
    }
    if (!strstr(log, "ERROR SUMMARY: 0 errors")) {
        snprintf(buf, n, "valgrind exited 0 without memcheck's \"ERROR SUMMARY: 0 errors\"");
        return buf;
    }
    return NULL;
}

Test(valgrind, verdicts_tell_valgrind_from_lorac)
{
    char b[512];
    cr_expect(strstr(valgrind_verdict(132, "vex amd64->IR: unhandled instruction bytes: 0x62 "
                                      "0xF1\n==1== ERROR SUMMARY: 0 errors", b, sizeof b),
                     "valgrind could not run lorac"));
    cr_expect(strstr(valgrind_verdict(1, "valgrind: failed to start tool 'memcheck'", b,
                                      sizeof b), "valgrind itself failed"));
    cr_expect(strstr(valgrind_verdict(99, "==1== ERROR SUMMARY: 3 errors from 1 contexts", b,
                                      sizeof b), "memcheck found errors"));
    cr_expect(strstr(valgrind_verdict(1, "==1== ERROR SUMMARY: 0 errors from 0 contexts", b,
                                      sizeof b), "lorac itself failed"));
    cr_expect(strstr(valgrind_verdict(0, "", b, sizeof b), "without memcheck's"));
    cr_expect_null(valgrind_verdict(0, "==1== ERROR SUMMARY: 0 errors from 0 contexts", b,
                                    sizeof b));
}

Test(valgrind, cpu_trainer_memcheck_clean, .timeout = 1200)
{
#if defined(__SANITIZE_ADDRESS__)
    cr_skip("an AddressSanitizer build cannot run under valgrind");
#endif
#if defined(LC_CPU_NATIVE)
    cr_skip("a -DLORAC_NATIVE=ON build may hold instructions valgrind cannot decode");
#endif
    if (!on_path("valgrind"))
        cr_skip("valgrind is not installed (apt-get install valgrind); memcheck run skipped");
    char *tmp = lc_test_tmpdir();
    char *set_out = lc_test_asprintf("output_dir=%s/out", tmp);
    char *log = lc_test_path_in(tmp, "valgrind.log");
    char *log_arg = lc_test_asprintf("--log-file=%s", log);
    /* The baseline kernels, and OpenBLAS left to pick from valgrind's CPUID
     * (a core set in the environment could be one valgrind cannot run);
     * one OpenMP thread, or libgomp's pool shows up as "possibly lost". */
    const char *argv[] = {"env", "-u", "OPENBLAS_CORETYPE", "-u", "LORAC_BLAS_DETECTED",
                          "OMP_NUM_THREADS=1", "LORAC_CPU_ISA=baseline", "valgrind",
                          "--error-exitcode=99", "--leak-check=full",
                          "--errors-for-leak-kinds=definite,indirect", log_arg, LORAC_BINARY,
                          "train", LORAC_SOURCE_DIR "/configs/fixture_3step.yaml", "--set",
                          set_out, NULL};
    lc_test_run_result r = lc_test_run(NULL, argv);
    char *text = lc_test_read_file(log, NULL);
    char why[640];
    const char *verdict = valgrind_verdict(r.code, text, why, sizeof why);
    if (verdict) {
        size_t n = strlen(text);
        cr_log_error("valgrind log (tail):\n%s\nlorac's stderr:\n%s", text + (n > 6000 ? n - 6000 : 0),
                     r.err);
    }
    cr_assert_null(verdict, "%s; log in %s", verdict, log);
    cr_expect(strstr(r.err, "cpu: x86-64-v2 (") || strstr(r.err, "cpu: aarch64 ("),
              "the kernels were not forced to the baseline:\n%s", r.err);
    char *adapter = lc_test_asprintf("%s/out/adapter_model.safetensors", tmp);
    cr_expect_eq(access(adapter, R_OK), 0, "no adapter written to %s/out", tmp);
    lc_test_run_free(&r);
    lc_test_rm_rf(tmp);
    free(adapter), free(text), free(log_arg), free(log), free(set_out), free(tmp);
}

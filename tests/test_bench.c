/* test_bench.c — what `lorac bench` adds for the GPU benchmark of issue #11
 * (scripts/bench_gpu.sh): --checkpointing, and on a device the peak device
 * memory it reports next to PEFT's. Runs on the CPU, and as test_bench_cuda
 * (LORAC_TEST_BACKEND=cuda) on the CUDA backend: the simulator, or a GPU with
 * LORAC_DEVICE_TESTS.
 *
 *   checkpointing_same_loss_less_memory  --checkpointing: the same loss (the
 *       recomputed layers are bitwise the forward's), a smaller step arena,
 *       and on a device a smaller device peak; the JSON says which it ran
 *   device_peak_counts_the_plan          on a device: device_peak_mib holds
 *       everything the memory plan counts (weights, adapters, AdamW, the
 *       step arenas) and no more than their reserve margins on top */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

#include "helpers.h"

/* One `lorac bench` on a tiny 4-layer Llama (on the test backend), parsed. */
static cJSON *bench(bool checkpointing)
{
    const bool dev = *lc_test_backend_yaml() != '\0';
    const char *args[] = {"bench", "--layers", "4", "--hidden", "128", "--heads", "4",
                          "--kv-heads", "2", "--intermediate", "256", "--vocab", "1024",
                          "--tied", "0", "--rank", "4", "--batch", "2", "--seq", "64",
                          "--steps", "1", "--warmup", "0", "--device", dev ? "cuda" : "cpu",
                          "--compute-dtype", lc_test_bf16() ? "bfloat16" : dev ? "float32" : "auto",
                          checkpointing ? "--checkpointing" : NULL, NULL};
    lc_test_run_result r = lc_test_run_lorac(NULL, args);
    cr_assert_eq(r.code, 0, "lorac bench: exit %d:\n%s%s", r.code, r.out, r.err);
    cr_log_info("bench%s: %s", checkpointing ? " --checkpointing" : "", r.out);
    cJSON *j = cJSON_Parse(r.out);
    cr_assert(j, "bench did not print JSON:\n%s", r.out);
    lc_test_run_free(&r);
    return j;
}

/* A number of the JSON; NAN when absent. */
static double num(const cJSON *j, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

Test(bench, checkpointing_same_loss_less_memory, .timeout = 300)
{
    cJSON *off = bench(false), *on = bench(true);
    cr_expect(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(off, "checkpointing")));
    cr_expect(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(on, "checkpointing")));
    /* the same first step (printed to 4 decimals; the trainer's tests check bitwise) */
    cr_expect(num(off, "loss") == num(on, "loss") && isfinite(num(on, "loss")),
              "loss %g without, %g with checkpointing", num(off, "loss"), num(on, "loss"));
    /* 4 layers' activations kept against one layer's recomputed at a time */
    cr_expect_lt(num(on, "step_arena_mib"), 0.75 * num(off, "step_arena_mib"),
                 "step arena %g MiB with checkpointing, %g without", num(on, "step_arena_mib"),
                 num(off, "step_arena_mib"));
    if (*lc_test_backend_yaml())
        cr_expect_lt(num(on, "device_peak_mib"), num(off, "device_peak_mib"),
                     "device peak %g MiB with checkpointing, %g without",
                     num(on, "device_peak_mib"), num(off, "device_peak_mib"));
    else
        cr_expect(isnan(num(off, "device_peak_mib")), "device_peak_mib on the CPU");
    cJSON_Delete(off);
    cJSON_Delete(on);
}

Test(bench, device_peak_counts_the_plan, .timeout = 300)
{
    if (!*lc_test_backend_yaml())
        cr_skip("the CPU has no device memory (test_bench_cuda checks it)");
    for (int ck = 0; ck < 2; ck++) {
        cJSON *j = bench(ck);
        double peak = num(j, "device_peak_mib"), plan = num(j, "plan_mib");
        /* the arenas are reserved as lc_memory_plan_reserve: peak/8 + 1 MiB each */
        double margin = (num(j, "plan_arena_mib") + num(j, "plan_grad_mib")) / 8 + 2;
#ifdef LORAC_CUDA_SIM
        /* the simulator counts cudaMalloc bytes exactly: only the context's
         * growing reduction buffers and the JSON's 0.1 MiB rounding on top */
        const double slack = 1.0;
#else
        /* a GPU hands out memory in pages of up to 2 MiB */
        const double slack = 64.0;
#endif
        cr_expect(peak >= plan - 0.2 && peak <= plan + margin + slack,
                  "device peak %g MiB, the plan %g MiB (+ %g margins + %g)", peak, plan, margin,
                  slack);
        cJSON_Delete(j);
    }
}

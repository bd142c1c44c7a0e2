/* test_alloc_faults.c — running out of memory is an error, not a crash.
 *
 * This executable replaces malloc, calloc, realloc and free (glibc allows a
 * program to, and its own functions such as strdup then call them too) with
 * wrappers around glibc's allocator that can be told to fail the N-th
 * allocation from now on. A sweep runs one operation again and again in a
 * forked child, failing allocation 0, 1, 2, ... in turn, until a run makes
 * fewer than N allocations: every run must end normally (no signal) and,
 * when it fails, with a message in its lc_error.
 *
 *   quantize_out_of_memory  lc_quantize_model on tiny-llama (load, NF4,
 *                           the tensor list, config.json, side files).
 *   save_adapter_out_of_memory  lc_lora_save_peft of the tiny-llama adapter
 *                           (adapter_config.json, adapter_model.safetensors).
 *
 * OpenMP is pinned to one thread so the children can fork safely and the
 * allocations come in the same order every run. Under AddressSanitizer the
 * replacement would bypass ASan's allocator, so the tests skip there. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/helpers.h"
#include "train/lora.h"
#include "train/quantize.h"

#if defined(__SANITIZE_ADDRESS__)
#define LC_ALLOC_FAULTS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LC_ALLOC_FAULTS 0
#endif
#endif
#ifndef LC_ALLOC_FAULTS
#define LC_ALLOC_FAULTS 1
#endif

#if LC_ALLOC_FAULTS
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);

static long g_fail_at = -1; /* index of the allocation to fail; -1: none */
static long g_count;        /* allocations since arming */

static bool fail_now(void)
{
    return g_fail_at >= 0 && g_count++ == g_fail_at;
}

void *malloc(size_t n) { return fail_now() ? NULL : __libc_malloc(n); }
void *calloc(size_t n, size_t size) { return fail_now() ? NULL : __libc_calloc(n, size); }
void *realloc(void *p, size_t n) { return fail_now() ? NULL : __libc_realloc(p, n); }
void free(void *p) { __libc_free(p); }
#endif

typedef int (*alloc_op)(const char *scratch, lc_error *err);

/* Runs op in a child with allocation n failing. Returns 1 when the run made
 * fewer than n + 1 allocations (nothing left to fail), else 0; fails the
 * test on a signal or on a failure without a message. */
static int run_failing(alloc_op op, const char *scratch, long n, const char *what)
{
#if LC_ALLOC_FAULTS
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_neq(pid, -1, "fork");
    if (pid == 0) {
        lc_error err = {{0}};
        g_count = 0;
        g_fail_at = n;
        int rc = op(scratch, &err);
        long made = g_count;
        g_fail_at = -1;
        if (rc == 0)
            _exit(made <= n ? 3 : 0);
        _exit(err.msg[0] ? 1 : 2);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(!WIFSIGNALED(st), "%s: allocation %ld failing: killed by signal %d", what, n,
              WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) != 2,
              "%s: allocation %ld failing: an error without a message", what, n);
    return WEXITSTATUS(st) == 3;
#else
    (void)op, (void)scratch, (void)n, (void)what;
    return 1;
#endif
}

static void sweep(alloc_op op, const char *what)
{
#if !LC_ALLOC_FAULTS
    cr_skip_test("built with AddressSanitizer: the malloc replacement would bypass it");
#endif
    omp_set_num_threads(1);
    char *scratch = lc_test_tmpdir();
    lc_error err = {{0}};
    cr_assert_eq(op(scratch, &err), 0, "%s without a failing allocation: %s", what, err.msg);
    long n = 0;
    while (!run_failing(op, scratch, n, what)) {
        n++;
        cr_assert_lt(n, 200000, "%s: more allocations than expected", what);
    }
    cr_log_info("%s: each of %ld allocations failed in turn, every time cleanly", what, n);
    lc_test_rm_rf(scratch);
    free(scratch);
}

static int quantize_tiny(const char *scratch, lc_error *err)
{
    char out[4096];
    snprintf(out, sizeof out, "%s/nf4", scratch);
    return lc_quantize_model(lc_test_fixture("tiny-llama/model"), out, 64, true, true, err);
}

Test(alloc_faults, quantize_out_of_memory, .timeout = 120)
{
    sweep(quantize_tiny, "lorac quantize");
}

static lc_lora g_adapter; /* loaded before the sweep, saved by each run */

static int save_adapter(const char *scratch, lc_error *err)
{
    char out[4096];
    snprintf(out, sizeof out, "%s/adapter", scratch);
    return lc_lora_save_peft(&g_adapter, out, lc_test_fixture("tiny-llama/model"), err);
}

Test(alloc_faults, save_adapter_out_of_memory, .timeout = 120)
{
    lc_model_config mc;
    lc_error err = {{0}};
    cr_assert_eq(lc_model_config_load(&mc, lc_test_fixture("tiny-llama/model"), &err), 0, "%s",
                 err.msg);
    cr_assert_eq(lc_lora_load_peft(&g_adapter, &mc, lc_test_fixture("tiny-llama/adapter_init"),
                                   &err), 0, "%s", err.msg);
    sweep(save_adapter, "saving an adapter");
    lc_lora_free(&g_adapter);
}

/* helpers.h — small helpers shared by the Criterion tests: fixture paths,
 * temporary directories and files, reading files back, running the lorac
 * binary, checking error messages, and norm-wise relative error.
 *
 * helpers.c is linked into every test, the gradcheck ones included (those
 * link lorac_f64, which holds autograd/ only), so it uses nothing but libc,
 * Criterion and autograd/. Helpers that need data/ or train/ live as static
 * inline functions in headers of their own (fixture_rows.h). */
#ifndef LC_TEST_HELPERS_H
#define LC_TEST_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/error.h"

/* The seven linears of a Llama-family block (q, k, v, o, gate, up, down:
 * lc_module 0..LC_MOD_DOWN, train/lora.h) that tests over the Llama-family
 * fixtures loop over; expands where lora.h is included. */
#define LC_TEST_LLAMA_MODULES (LC_MOD_DOWN + 1)

/* Absolute path of a file under tests/fixtures/ (static buffer per call slot). */
const char *lc_test_fixture(const char *rel);
/* LORAC_TEST_BACKEND=cuda (the `<test>_cuda` ctests): config lines that put
 * a run on the CUDA backend in float32 (cuda-bf16, the `<test>_cuda_bf16`
 * ctests: in bfloat16; cpu-bf16: on the CPU in bfloat16); "" otherwise. */
const char *lc_test_backend_yaml(void);
/* Whether LORAC_TEST_BACKEND=cuda-bf16: steps in bfloat16, bf16 tolerances. */
bool lc_test_bf16(void);
/* Whether LORAC_TEST_BACKEND=cpu-bf16 (the `<test>_cpu_bf16` ctests): steps
 * on the CPU's bfloat16 backend (bf16 frozen-weight GEMMs on the engine
 * LORAC_CPU_BF16 names), the suites' cpu-bf16 tolerances; runs of the
 * lorac binary get "compute_dtype: bfloat16" (lc_test_backend_yaml). */
bool lc_test_cpu_bf16(void);
/* Makes a fresh empty temporary directory and returns its path (malloc'd).
 * It is removed with all it holds when the process that made it exits
 * (LORAC_TEST_KEEP_TMP=1 keeps it for a look after a failure). */
char *lc_test_tmpdir(void);
/* rm -rf dir (does not follow symlinks); errors are ignored. */
void lc_test_rm_rf(const char *dir);
/* "dir/name" (malloc'd). */
char *lc_test_path_in(const char *dir, const char *name);
/* printf into a malloc'd string (the test fails if it cannot). */
char *lc_test_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Writes bytes to dir/name and returns the full path (malloc'd). */
char *lc_test_write_file(const char *dir, const char *name, const void *data, size_t n);
/* Writes the string text (without its NUL) to dir/name; returns the path (malloc'd). */
char *lc_test_write_text(const char *dir, const char *name, const char *text);
/* The whole file, NUL-terminated (malloc'd); its size in *len when len is not
 * NULL. The test fails when the file cannot be read. */
char *lc_test_read_file(const char *path, size_t *len);

/* Whether the two files hold the same bytes (the test fails when one
 * cannot be read). */
bool lc_test_same_file(const char *a, const char *b);

/* What a run of the lorac binary did: exit code (128 + signal when killed)
 * and everything it wrote to stdout and stderr (malloc'd, NUL-terminated). */
typedef struct lc_test_run_result {
    int code;
    char *out, *err;
} lc_test_run_result;
/* Runs LORAC_BINARY with args (NULL-terminated, at most 46), capturing stdout
 * and stderr; env_kv ("K=V", may be NULL) is set in the child only. */
lc_test_run_result lc_test_run_lorac(const char *env_kv, const char *const *args);
/* The same for any program: argv[0] is looked up on PATH (exit code 127
 * when it cannot be run). */
lc_test_run_result lc_test_run(const char *env_kv, const char *const *argv);
void lc_test_run_free(lc_test_run_result *r);
/* Asserts exit 1 and exactly one "lorac: " line on r's stderr, the last one;
 * returns it (malloc'd, without the newline). what names the case. */
char *lc_test_error_line(const lc_test_run_result *r, const char *what);
/* Starts LORAC_BINARY with args (NULL-terminated, at most 46) in the
 * background, stdout and stderr to the files out_path and err_path (NULL:
 * /dev/null); returns its pid. */
int lc_test_spawn_lorac(const char *const *args, const char *out_path, const char *err_path);
/* Waits for a child: its exit code, or 128 + signal when killed. */
int lc_test_wait(int pid);
/* Polls until the file at path contains sub (1), or pid exits first (0,
 * exit code in *code); the test fails after timeout_s. */
int lc_test_wait_for_text(const char *path, const char *sub, int pid, double timeout_s,
                          int *code);

/* Asserts that err's message contains sub. */
void lc_test_assert_msg_has(const lc_error *err, const char *sub);

/* FNV-1a 64 of p[0..n) continued from h (start: LC_TEST_FNV0), as the
 * fixture scripts hash bytes. */
#define LC_TEST_FNV0 0xcbf29ce484222325ull
uint64_t lc_test_fnv1a64(uint64_t h, const void *p, size_t n);

/* SplitMix64: advances *s and returns the next 64 random bits. */
uint64_t lc_test_splitmix64(uint64_t *s);

/* |a - b| / max(|b|, tiny): the relative error of one value. */
double lc_test_rel(double a, double b);
/* ||a - b|| / max(||b||, tiny), accumulated in double. */
double lc_test_rel_err_f32(const float *a, const float *b, size_t n);
double lc_test_rel_err_f64(const double *a, const double *b, size_t n);

#endif

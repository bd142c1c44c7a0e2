/* helpers.c — see helpers.h. Only libc, Criterion and autograd/ here. */
#include "helpers.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdbool.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *lc_test_fixture(const char *rel)
{
    static char bufs[8][4096];
    static int slot;
    char *b = bufs[slot++ & 7];
    snprintf(b, sizeof bufs[0], "%s/tests/fixtures/%s", LORAC_SOURCE_DIR, rel);
    return b;
}

/* The directories lc_test_tmpdir made, each with the process that made it:
 * removed when that process exits (a forked child that exits removes
 * nothing of its parent's), unless LORAC_TEST_KEEP_TMP is set, so that a
 * test run leaves /tmp as it found it whatever path a test ends by. */
static struct made_dir {
    char *path;
    pid_t owner;
} *made;
static size_t n_made;

static void rm_made_dirs(void)
{
    const char *keep = getenv("LORAC_TEST_KEEP_TMP");
    if (keep && *keep)
        return;
    for (size_t i = 0; i < n_made; i++)
        if (made[i].owner == getpid())
            lc_test_rm_rf(made[i].path);
}

char *lc_test_tmpdir(void)
{
    char tmpl[] = "/tmp/lorac-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    struct made_dir *grown = realloc(made, (n_made + 1) * sizeof *made);
    char *path = d ? strdup(d) : NULL;
    if (!d || !grown || !path) {
        perror("lc_test_tmpdir");
        abort();
    }
    if (!n_made && atexit(rm_made_dirs) != 0)
        abort();
    made = grown;
    made[n_made++] = (struct made_dir){path, getpid()};
    return strdup(path);
}

char *lc_test_write_file(const char *dir, const char *name, const void *data, size_t n)
{
    size_t len = strlen(dir) + strlen(name) + 2;
    char *path = malloc(len);
    snprintf(path, len, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n)) {
        perror(path);
        abort();
    }
    fclose(f);
    return path;
}

char *lc_test_write_text(const char *dir, const char *name, const char *text)
{
    return lc_test_write_file(dir, name, text, strlen(text));
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

void lc_test_rm_rf(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

char *lc_test_path_in(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

char *lc_test_asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    cr_assert_geq(vasprintf(&s, fmt, ap), 0);
    va_end(ap);
    return s;
}

char *lc_test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s: %s", path, strerror(errno));
    cr_assert_eq(fseek(f, 0, SEEK_END), 0, "cannot seek %s", path);
    long n = ftell(f);
    cr_assert_geq(n, 0, "cannot size %s", path);
    cr_assert_eq(fseek(f, 0, SEEK_SET), 0, "cannot seek %s", path);
    char *b = malloc((size_t)n + 1);
    cr_assert_not_null(b);
    cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n, "short read of %s", path);
    b[n] = '\0';
    fclose(f);
    if (len)
        *len = (size_t)n;
    return b;
}

bool lc_test_same_file(const char *a, const char *b)
{
    size_t na, nb;
    char *x = lc_test_read_file(a, &na), *y = lc_test_read_file(b, &nb);
    bool same = na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

const char *lc_test_backend_yaml(void)
{
    const char *want = getenv("LORAC_TEST_BACKEND");
    if (lc_test_bf16())
        return "device: cuda\ncompute_dtype: bfloat16\n";
    if (lc_test_cpu_bf16())
        return "device: cpu\ncompute_dtype: bfloat16\n";
    return want && strcmp(want, "cuda") == 0 ? "device: cuda\ncompute_dtype: float32\n" : "";
}

bool lc_test_cpu_bf16(void)
{
    const char *want = getenv("LORAC_TEST_BACKEND");
    return want && strcmp(want, "cpu-bf16") == 0;
}

bool lc_test_bf16(void)
{
    const char *want = getenv("LORAC_TEST_BACKEND");
    return want && strcmp(want, "cuda-bf16") == 0;
}

/* LORAC_BINARY followed by args (at most 46) into argv[48]. */
static void lorac_argv(const char **argv, const char *const *args)
{
    int a = 0;
    argv[a++] = LORAC_BINARY;
    for (int i = 0; args[i] && a < 47; i++)
        argv[a++] = args[i];
    argv[a] = NULL;
}

lc_test_run_result lc_test_run_lorac(const char *env_kv, const char *const *args)
{
    const char *argv[48];
    lorac_argv(argv, args);
    return lc_test_run(env_kv, argv);
}

lc_test_run_result lc_test_run(const char *env_kv, const char *const *argv)
{
    char *dir = lc_test_tmpdir();
    char *op = lc_test_path_in(dir, "stdout"), *ep = lc_test_path_in(dir, "stderr");
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_neq(pid, -1, "fork: %s", strerror(errno));
    if (pid == 0) {
        int o = open(op, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(ep, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (o < 0 || e < 0)
            _exit(126);
        dup2(o, 1);
        dup2(e, 2);
        if (env_kv)
            putenv((char *)env_kv);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        cr_assert_eq(errno, EINTR);
    lc_test_run_result r = {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
                            NULL, NULL};
    r.out = lc_test_read_file(op, NULL);
    r.err = lc_test_read_file(ep, NULL);
    unlink(op);
    unlink(ep);
    rmdir(dir);
    free(op);
    free(ep);
    free(dir);
    return r;
}

int lc_test_spawn_lorac(const char *const *args, const char *out_path, const char *err_path)
{
    const char *argv[48];
    lorac_argv(argv, args);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_neq(pid, -1, "fork: %s", strerror(errno));
    if (pid == 0) {
        int o = open(out_path ? out_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(err_path ? err_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (o < 0 || e < 0)
            _exit(126);
        dup2(o, 1);
        dup2(e, 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return (int)pid;
}

static int exit_code(int status)
{
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int lc_test_wait(int pid)
{
    int status;
    while (waitpid((pid_t)pid, &status, 0) < 0)
        cr_assert_eq(errno, EINTR, "waitpid: %s", strerror(errno));
    return exit_code(status);
}

int lc_test_wait_for_text(const char *path, const char *sub, int pid, double timeout_s,
                          int *code)
{
    struct timespec t0, now, pause = {0, 2000000};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        FILE *f = fopen(path, "rb");
        if (f) {
            size_t cap = (size_t)1 << 22;
            char *buf = malloc(cap);
            cr_assert_not_null(buf);
            size_t n = fread(buf, 1, cap - 1, f);
            fclose(f);
            buf[n] = '\0';
            bool found = strstr(buf, sub) != NULL;
            free(buf);
            if (found)
                return 1;
        }
        int status;
        if (waitpid((pid_t)pid, &status, WNOHANG) == (pid_t)pid) {
            *code = exit_code(status);
            return 0;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((double)(now.tv_sec - t0.tv_sec) + (now.tv_nsec - t0.tv_nsec) * 1e-9 > timeout_s) {
            kill((pid_t)pid, SIGKILL);
            lc_test_wait(pid);
            cr_assert_fail("no '%s' in %s after %.0f s", sub, path, timeout_s);
        }
        nanosleep(&pause, NULL);
    }
}

void lc_test_run_free(lc_test_run_result *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

void lc_test_assert_msg_has(const lc_error *err, const char *sub)
{
    cr_assert_not_null(strstr(err->msg, sub), "message '%s' lacks '%s'", err->msg, sub);
}

uint64_t lc_test_fnv1a64(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

uint64_t lc_test_splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double lc_test_rel(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-30); }

double lc_test_rel_err_f32(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return sqrt(num) / fmax(sqrt(den), 1e-30);
}

double lc_test_rel_err_f64(const double *a, const double *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = a[i] - b[i];
        num += d * d;
        den += b[i] * b[i];
    }
    return sqrt(num) / fmax(sqrt(den), 1e-30);
}

char *lc_test_error_line(const lc_test_run_result *r, const char *what)
{
    cr_assert_eq(r->code, 1, "%s: exit %d, expected 1:\n%s", what, r->code, r->err);
    int n = 0;
    const char *line = NULL;
    for (const char *l = r->err; *l;) {
        if (strncmp(l, "lorac: ", 7) == 0) {
            n++;
            line = l;
        }
        const char *nl = strchr(l, '\n');
        if (!nl)
            break;
        l = nl + 1;
    }
    cr_assert_eq(n, 1, "%s: expected one 'lorac: ' line:\n%s", what, r->err);
    const char *nl = strchr(line, '\n');
    cr_assert(nl && nl[1] == '\0', "%s: the error is not the last line:\n%s", what, r->err);
    cr_log_info("%s: %.*s", what, (int)(nl - line), line);
    return strndup(line, (size_t)(nl - line));
}

/* test_cuda_ops.c — the op-parity harness: every kernel of the one backend
 * interface (autograd/backend.h: lc_kernels, the kernels.h signatures) on
 * the CUDA backend (autograd/cuda/backend_cuda.h) against the CPU backend,
 * in the spirit of ggml's tests/test-backend-ops.cpp; plus the bf16 entry
 * points of autograd/cuda/cuda_kernels.h and its multi-tensor optimizer
 * calls, which have no table entry.
 *
 * Rows call the device side through the CUDA backend's table of their
 * activation dtype (lc_backend_cuda_table(dt)->X: f32 or bf16, failures
 * reported by the backend's sync) and the CPU side through
 * lc_backend_cpu()->k.X: one signature for both. What no table entry does
 * (a bf16 div: the tables' div is [f32]; bf16 in, f32 out with any beta;
 * conversions, NF4 rows, the multi-tensor optimizer) calls the lc_cuda_*
 * entry points with the backend's context. Every lc_kernels entry has at
 * least one f32 row.
 *
 * Every op is declared ONCE in the table OPS[] at the end: its cases (shapes,
 * flags), its tensors (name, storage kind, role, size, per-dtype tolerance),
 * a CPU function and a device function. The harness does the rest for every
 * case and activation dtype (f32, bf16): draws the inputs (rounded to what
 * the device stores, so the CPU sees exactly the device's inputs), uploads
 * them, runs both sides, downloads and compares every output in double
 * precision, and prints one row per output:
 *   op  case  backend  dtype  output  max-rel-err  tolerance  PASS/FAIL
 * max-rel-err = max_i |dev_i − cpu_i| / max_i |cpu_i| (a tolerance of 0 means
 * bitwise equal). Ops run in up to two phases (forward, backward); the
 * forward outputs a backward kernel consumes (out, lse, rstd) are copied from
 * the device into the CPU's copy before the backward phase, so each phase
 * measures one kernel's own rounding.
 *
 * Gradient mode (f32, cases marked fd): for ops with backward kernels, the
 * backward kernel's gradient of L = Σ dy·y (or the loss) into a zeroed
 * buffer against central differences of the forward kernel on the same
 * device, at a few coordinates of every differentiable input.
 *
 * The device is whatever the build links: a real GPU (CMake LORAC_CUDA) or
 * the CPU simulator of tests/cuda_sim (-DLORAC_CUDA_SIM=ON). With no device
 * every test skips. Environment:
 *   LC_PARITY_OPS=op[:case],...   run only these ops (case = index)
 *   LC_INJECT_BUG=host_arg        pass a host pointer to the first kernel
 *   LC_INJECT_BUG=unzeroed_grad   gradient mode skips zeroing the gradients
 *   (no_sync and no_syncthreads are injected into the simulated backend by
 *   tests/cuda_sim/gen.py; the ctests cuda_sim_bug_* expect each to fail) */
#include <criterion/criterion.h>

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "helpers.h"

#if !defined(LORAC_HAVE_CUDA) || !LORAC_HAVE_CUDA

Test(cuda, skipped) { cr_skip("built without CUDA"); }

#else

#include "autograd/backend.h"
#include "autograd/cuda/backend_cuda.h"
#include "autograd/cuda/cuda_kernels.h"
#include "autograd/dtype.h"
#include "autograd/kernels.h"
#include "autograd/nf4.h"
#include "optim/adamw.h"

/* ---------------------------------------------------------------- tensors */

/* Storage of a tensor: ACT is the run's activation dtype (f32 or bf16); the
 * others are fixed. F64H / I64H are host-only scalars a device call returns. */
enum { K_ACT, K_F32, K_BF16, K_F16, K_I32, K_U8, K_F64H, K_I64H };
/* Role: IN is drawn and uploaded; OUT is written by the op (its device buffer
 * is not cleared: an element a kernel forgets stays NaN in the simulator);
 * ACC is drawn, uploaded and accumulated into (+=); SAVED marks a forward
 * output the backward phase consumes. */
enum { R_IN = 1, R_OUT = 2, R_ACC = 4, R_SAVED = 8 };

#define MAX_T 16
/* Tolerances that hold on a GPU too (FMA contraction, its expf / rsqrtf): a
 * pointwise f32 result within a few ulps of the largest value, a bf16 one
 * within two bf16 ulps. The simulator (no contraction, the host's libm) is
 * often bitwise equal to the CPU on these. */
#define TOL_PW_F32 5e-7
#define TOL_PW_BF16 8e-3
/* GeGLU: the CPU's lc_tanhf (≤ 2.1 ulp, autograd/real.h) against the device
 * tanhf, through tanh² in the derivative: measured 5.2e-7 (dg, n = 7). */
#define TOL_TANH_F32 2e-6
#define NO_PAIR (-1)
#define LOSS_PAIR (-2) /* a scalar loss: L = loss · fd_w */

typedef struct tspec {
    const char *name;
    int kind, role, phase; /* phase: 0 forward, 1 backward (outputs only) */
    int64_t n;
    float scale;           /* inputs: uniform in [-scale, scale) */
    double tol[2];         /* outputs: f32 run, bf16 run (0: bitwise) */
    int pair;              /* fd: input → its gradient tensor; output → its dy tensor */
} tspec;

typedef struct tbuf {
    tspec s;
    void *h;  /* host values: float (float kinds), int32, uint8, double, int64 */
    void *h0; /* the drawn values, restored for each gradient-mode forward */
    void *d;  /* device buffer (host buffer for F64H / I64H) */
} tbuf;

typedef struct opcase {
    const char *label;
    int64_t a[8];   /* op-specific shape and flags */
    double x;       /* op-specific real (soft-cap, dropout p) */
    int fd;         /* also run the gradient mode (f32) */
    int dts;        /* dtypes (bit 0 f32, bit 1 bf16); 0: both */
} opcase;

struct op_def;
typedef struct op_run {
    const struct op_def *op;
    const opcase *c;
    lc_dtype dt;
    lc_nf4 nf4; /* the host struct of an NF4 weight (weight_dev), its arrays on the device */
    tbuf T[MAX_T];
    int nT;
    int phase;
} op_run;

typedef struct op_def {
    const char *name;
    const opcase *cases;
    int n_cases;
    int phases;
    double fd_w;   /* weight of a LOSS_PAIR output in the objective */
    double fd_tol; /* gradient mode: max |fd − analytic| / max |analytic| */
    /* appends the tensors of case c to r->T (tadd) */
    void (*decl)(op_run *r);
    /* optional: non-uniform input values (ids, codes, special floats) */
    void (*init)(op_run *r);
    void (*cpu)(op_run *r);
    /* the CUDA table of the row's dtype (failures come at the sync), or an
     * lc_cuda_* entry point: 0 or -1 (lc_cuda_ctx_error says why) */
    int (*dev)(op_run *r);
} op_def;

static void tadd(op_run *r, const char *name, int kind, int role, int phase, int64_t n,
                 float scale, double tol_f32, double tol_bf16, int pair)
{
    cr_assert_lt(r->nT, MAX_T, "%s: too many tensors", r->op->name);
    tbuf *t = &r->T[r->nT++];
    memset(t, 0, sizeof *t);
    t->s = (tspec){name, kind, role, phase, n, scale, {tol_f32, tol_bf16}, pair};
}
#define IN(r, name, kind, n, scale) tadd(r, name, kind, R_IN, 0, n, scale, 0, 0, NO_PAIR)
#define DIFF(r, name, kind, n, scale, grad) tadd(r, name, kind, R_IN, 0, n, scale, 0, 0, grad)

static tbuf *tb(op_run *r, const char *name)
{
    for (int i = 0; i < r->nT; i++)
        if (!strcmp(r->T[i].s.name, name))
            return &r->T[i];
    return NULL;
}
static int tix(op_run *r, const char *name)
{
    tbuf *t = tb(r, name);
    cr_assert(t, "%s: no tensor %s", r->op->name, name);
    return (int)(t - r->T);
}
static float *H(op_run *r, const char *name) { return tb(r, name) ? tb(r, name)->h : NULL; }
static void *D(op_run *r, const char *name) { return tb(r, name) ? tb(r, name)->d : NULL; }

static int kind_of(const op_run *r, int kind)
{
    return kind == K_ACT ? (r->dt == LC_DTYPE_BF16 ? K_BF16 : K_F32) : kind;
}
static size_t host_size(int kind)
{
    switch (kind) {
    case K_U8: return 1;
    case K_F64H: case K_I64H: return 8;
    default: return 4;
    }
}
static size_t dev_size(int kind)
{
    switch (kind) {
    case K_BF16: case K_F16: return 2;
    case K_U8: return 1;
    case K_F64H: case K_I64H: return 0;
    default: return 4;
    }
}

/* ---------------------------------------------------------------- random */

static uint64_t g_rng = 0x1234567887654321ull;
static float frand(void) /* uniform in [-1, 1) */
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}
static int64_t irand(int64_t n) { return (int64_t)((frand() + 1.0f) * 0.5f * (float)n) % n; }

/* v rounded to what storage kind holds */
static float round_kind(int kind, float v)
{
    if (kind == K_BF16)
        return lc_bf16_to_f32(lc_f32_to_bf16(v));
    if (kind == K_F16)
        return lc_f16_to_f32(lc_f32_to_f16(v));
    return v;
}
static void round_all(int kind, float *h, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        h[i] = round_kind(kind, h[i]);
}

/* ---------------------------------------------------------------- device */

/* The two sides of every row: the CPU backend's table and the CUDA
 * backend's table of the row's dtype (one signature, kernels.h). */
#define CPU (&lc_backend_cpu()->k)
#define DEV (&g_be->k)
/* the CUDA backend's table for the row's activation dtype */
#define TABLE(r) lc_backend_cuda_table((r)->dt)
#define F32(r) ((r)->dt == LC_DTYPE_F32)

static const char *g_bug = "";
static char g_backend[32];
static lc_backend *g_be;
static lc_cuda_ctx *g_ctx;

#define MAX_BUFS 256
static void *g_bufs[MAX_BUFS];
static int g_nbufs;

static void *dalloc(size_t bytes)
{
    lc_error err = {{0}};
    void *p = g_be->alloc(g_be, bytes, &err);
    if (!p)
        return NULL;
    cr_assert_lt(g_nbufs, MAX_BUFS);
    g_bufs[g_nbufs++] = p;
    return p;
}
static void dfree_all(void)
{
    for (int i = 0; i < g_nbufs; i++)
        g_be->free(g_be, g_bufs[i]);
    g_nbufs = 0;
}

/* Waits for the device; NULL, or why a call since the last check failed:
 * rc ≠ 0 is an lc_cuda_* entry point's failure (the context's message),
 * else the backend's first failure since its last sync. */
static const char *dev_check(int rc)
{
    static lc_error msg;
    lc_error e = {{0}};
    int s = g_be->sync(g_be, &e);
    if (rc)
        snprintf(msg.msg, sizeof msg.msg, "%s", lc_cuda_ctx_error(g_ctx));
    else if (s)
        snprintf(msg.msg, sizeof msg.msg, "%s", e.msg);
    else
        return NULL;
    return msg.msg;
}

static void be_or_skip(void)
{
    if (lc_cuda_device_count() == 0)
        cr_skip("no CUDA device");
    lc_error err = {{0}};
    cr_assert_eq(lc_backend_cuda_create(&g_be, 0, LC_DTYPE_F32, &err), 0, "CUDA backend: %s", err.msg);
    cr_assert_str_eq(g_be->name, "cuda");
    cr_assert(g_be->device);
    g_ctx = lc_backend_cuda_ctx(g_be);
    lc_cuda_device_info info;
    cr_assert_eq(lc_cuda_device_query(0, &info, &err), 0, "%s", err.msg);
    snprintf(g_backend, sizeof g_backend, "%s", strstr(info.name, "lc_sim") ? "sim" : "cuda");
    const char *b = getenv("LC_INJECT_BUG");
    g_bug = b ? b : "";
    g_nbufs = 0;
}

static void done(void)
{
    dfree_all();
    lc_cuda_debug_limits(0, 0);
    g_be->destroy(g_be);
    g_be = NULL;
    g_ctx = NULL;
}

/* host values of t (float kinds as float) → its device buffer */
static void upload(op_run *r, tbuf *t)
{
    int kind = kind_of(r, t->s.kind);
    size_t n = (size_t)t->s.n;
    if (!dev_size(kind))
        return;
    if (kind == K_BF16 || kind == K_F16) {
        uint16_t *b = malloc((n ? n : 1) * 2);
        for (size_t i = 0; i < n; i++)
            b[i] = kind == K_BF16 ? lc_f32_to_bf16(((float *)t->h)[i])
                                  : lc_f32_to_f16(((float *)t->h)[i]);
        g_be->upload(g_be, t->d, b, n * 2);
        free(b);
        return;
    }
    g_be->upload(g_be, t->d, t->h, n * dev_size(kind));
}

/* t's device values → out (host layout of t's kind); NULL or why it failed */
static const char *download(op_run *r, const tbuf *t, void *out)
{
    int kind = kind_of(r, t->s.kind);
    size_t n = (size_t)t->s.n;
    if (!dev_size(kind)) {
        memcpy(out, t->d, n * 8);
        return NULL;
    }
    if (kind == K_BF16 || kind == K_F16) {
        uint16_t *b = malloc((n ? n : 1) * 2);
        g_be->download(g_be, b, t->d, n * 2);
        for (size_t i = 0; i < n; i++)
            ((float *)out)[i] = kind == K_BF16 ? lc_bf16_to_f32(b[i]) : lc_f16_to_f32(b[i]);
        free(b);
    } else {
        g_be->download(g_be, out, t->d, n * dev_size(kind));
    }
    return dev_check(0);
}

static double value(int kind, const void *p, int64_t i)
{
    switch (kind) {
    case K_I32: return ((const int32_t *)p)[i];
    case K_U8: return ((const uint8_t *)p)[i];
    case K_F64H: return ((const double *)p)[i];
    case K_I64H: return (double)((const int64_t *)p)[i];
    default: return ((const float *)p)[i];
    }
}

/* ---------------------------------------------------------------- report */

static int g_pass, g_fail;

static void report(op_run *r, const char *output, double err, double tol, const char *note)
{
    bool ok = tol == 0 ? err == 0 : err <= tol;
    char cs[48];
    snprintf(cs, sizeof cs, "%d:%s", (int)(r->c - r->op->cases), r->c->label);
    printf("%-14s %-30s %-5s %-5s %-14s %10.3g %9.2g %s%s%s\n", r->op->name, cs, g_backend,
           r->dt == LC_DTYPE_BF16 ? "bf16" : "f32", output, err, tol, ok ? "PASS" : "FAIL",
           note ? "  " : "", note ? note : "");
    fflush(stdout);
    if (ok)
        g_pass++;
    else
        g_fail++;
}

/* max |dev − ref| / max |ref| in double; a non-finite device value where the
 * reference is finite (or a NaN anywhere) is an infinite error. */
static double max_rel_err(int kind, const void *dev, const void *ref, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double g = value(kind, dev, i), c = value(kind, ref, i);
        if (isnan(g) || isnan(c) || (isinf(g) && g != c))
            return INFINITY;
        if (isinf(c))
            continue;
        num = fmax(num, fabs(g - c));
        den = fmax(den, fabs(c));
    }
    return num == 0 ? 0 : num / fmax(den, 1e-30);
}

/* compares the outputs of phase p; copies the SAVED ones into the CPU's copy */
static void compare_phase(op_run *r, int p)
{
    for (int i = 0; i < r->nT; i++) {
        tbuf *t = &r->T[i];
        if (!(t->s.role & (R_OUT | R_ACC)) || t->s.phase != p)
            continue;
        int kind = kind_of(r, t->s.kind);
        void *got = malloc((size_t)(t->s.n ? t->s.n : 1) * host_size(kind));
        const char *why = download(r, t, got);
        if (why) {
            report(r, t->s.name, INFINITY, t->s.tol[r->dt == LC_DTYPE_BF16], why);
        } else {
            report(r, t->s.name, max_rel_err(kind, got, t->h, t->s.n),
                   t->s.tol[r->dt == LC_DTYPE_BF16], NULL);
            if (t->s.role & R_SAVED)
                memcpy(t->h, got, (size_t)t->s.n * host_size(kind));
        }
        free(got);
    }
}

/* ---------------------------------------------------------------- one case */

/* A case labelled "... unaligned" places every device tensor one element past a
 * 16-byte boundary, "... NAME unaligned" only tensor NAME: the elementwise kernels'
 * unaligned path (lc_map, cuda_common.cuh) against the CPU. */
static bool misaligned(const op_run *r, const char *name)
{
    const char *label = r->c->label, *u = strstr(label, " unaligned"), *w = u;
    if (!u)
        return false;
    while (w > label && w[-1] != ' ')
        w--;
    size_t len = (size_t)(u - w);
    bool named = false;
    for (int i = 0; i < r->nT; i++)
        named |= strlen(r->T[i].s.name) == len && !strncmp(w, r->T[i].s.name, len);
    return !named || (strlen(name) == len && !strncmp(w, name, len));
}

static bool alloc_case(op_run *r)
{
    for (int i = 0; i < r->nT; i++) {
        tbuf *t = &r->T[i];
        int kind = kind_of(r, t->s.kind);
        size_t n = (size_t)(t->s.n ? t->s.n : 1);
        t->h = calloc(n, host_size(kind));
        t->h0 = calloc(n, host_size(kind));
        size_t pad = misaligned(r, t->s.name) ? dev_size(kind) : 0;
        t->d = dev_size(kind) ? dalloc(n * dev_size(kind) + pad) : calloc(n, 8);
        if (!t->d)
            return false;
        t->d = (char *)t->d + pad;
        if ((t->s.role & (R_IN | R_ACC)) && host_size(kind) == 4 && kind != K_I32)
            for (int64_t e = 0; e < t->s.n; e++)
                ((float *)t->h)[e] = round_kind(kind, frand() * t->s.scale);
    }
    if (r->op->init)
        r->op->init(r);
    for (int i = 0; i < r->nT; i++)
        memcpy(r->T[i].h0, r->T[i].h,
               (size_t)(r->T[i].s.n ? r->T[i].s.n : 1) * host_size(kind_of(r, r->T[i].s.kind)));
    return true;
}

static void free_case(op_run *r)
{
    for (int i = 0; i < r->nT; i++) {
        free(r->T[i].h), free(r->T[i].h0);
        if (!dev_size(kind_of(r, r->T[i].s.kind)))
            free(r->T[i].d);
    }
    dfree_all();
    lc_cuda_debug_limits(0, 0);
}

/* uploads the drawn inputs and accumulators; the gradient mode leaves the
 * backward phase's accumulators (the gradients) as cudaMalloc gave them */
static const char *upload_inputs(op_run *r, bool grads)
{
    for (int i = 0; i < r->nT; i++) {
        const tspec *s = &r->T[i].s;
        if (!(s->role & (R_IN | R_ACC)) || (!grads && (s->role & R_ACC) && s->phase == 1))
            continue;
        upload(r, &r->T[i]);
    }
    const char *why = dev_check(0);
    if (why)
        return why;
    if (!strcmp(g_bug, "host_arg")) /* the wiring bug: the host copy goes to a kernel */
        for (int i = 0; i < r->nT; i++)
            if ((r->T[i].s.role & R_IN) && dev_size(kind_of(r, r->T[i].s.kind))) {
                r->T[i].d = r->T[i].h;
                break;
            }
    return NULL;
}

static int run_dev(op_run *r, int phase)
{
    r->phase = phase;
    const char *why = dev_check(r->op->dev(r));
    if (why) {
        report(r, phase ? "(backward)" : "(forward)", INFINITY, 0, why);
        return -1;
    }
    return 0;
}

static void parity_case(op_run *r)
{
    const char *why = upload_inputs(r, true);
    if (why) {
        report(r, "(upload)", INFINITY, 0, why);
        return;
    }
    for (int p = 0; p < r->op->phases; p++) {
        if (run_dev(r, p))
            return;
        r->phase = p;
        r->op->cpu(r);
        compare_phase(r, p);
    }
}

/* L = Σ dy·y over the objective outputs of the forward phase (device values) */
static int objective(op_run *r, double *L)
{
    *L = 0;
    for (int i = 0; i < r->nT; i++) {
        tbuf *t = &r->T[i];
        if (t->s.phase != 0 || !(t->s.role & (R_OUT | R_ACC)) || t->s.pair == NO_PAIR)
            continue;
        int kind = kind_of(r, t->s.kind);
        void *got = malloc((size_t)(t->s.n ? t->s.n : 1) * host_size(kind));
        if (download(r, t, got)) {
            free(got);
            return -1;
        }
        if (t->s.pair == LOSS_PAIR)
            *L += value(kind, got, 0) * r->op->fd_w;
        else
            for (int64_t e = 0; e < t->s.n; e++)
                *L += value(kind, got, e) * ((const float *)r->T[t->s.pair].h0)[e];
        free(got);
    }
    return 0;
}

#define FD_POINTS 5
#define FD_H 1e-2f

/* The backward kernel's gradient (into zeroed buffers) against central
 * differences of the forward kernel, at FD_POINTS coordinates per input. */
/* central differences of L at FD_POINTS coordinates of input x against the
 * analytic gradient an (x's gradient tensor, downloaded); max |fd − an| /
 * max |an| over them, or -1 when a device call failed */
static double fd_input(op_run *r, tbuf *x, const float *an)
{
    double num = 0, den = 0;
    float *xh = x->h;
    for (int k = 0; k < FD_POINTS; k++) {
        int64_t j = x->s.n >= FD_POINTS ? x->s.n * (2 * k + 1) / (2 * FD_POINTS) : k % x->s.n;
        double L[2];
        for (int s = 0; s < 2; s++) {
            xh[j] = ((const float *)x->h0)[j] + (s ? -FD_H : FD_H);
            int rc = upload_inputs(r, false) != NULL || run_dev(r, 0) || objective(r, &L[s]);
            xh[j] = ((const float *)x->h0)[j];
            if (rc)
                return -1;
        }
        double fd = (L[0] - L[1]) / (2.0 * FD_H);
        if (!isfinite(an[j]))
            return INFINITY;
        num = fmax(num, fabs(fd - an[j]));
        den = fmax(den, fabs(an[j]));
    }
    return num == 0 ? 0 : num / fmax(den, 1e-30);
}

/* The backward kernel's gradient (into fresh buffers zeroed here — the bug
 * unzeroed_grad skips that, and the simulator's cudaMalloc fills memory with
 * NaN) against central differences of the forward kernel, for every
 * differentiable input. */
static void fd_case(op_run *r, double tol)
{
    if (upload_inputs(r, false) || run_dev(r, 0))
        return;
    for (int i = 0; i < r->nT; i++) {
        tbuf *t = &r->T[i];
        if ((t->s.role & R_ACC) && t->s.phase == 1 && strcmp(g_bug, "unzeroed_grad"))
            g_be->memset0(g_be, t->d, (size_t)t->s.n * dev_size(kind_of(r, t->s.kind)));
    }
    if (run_dev(r, 1))
        return;
    float *grads[MAX_T] = {0}; /* all analytic gradients, before any forward re-run */
    for (int i = 0; i < r->nT; i++)
        if ((r->T[i].s.role & R_IN) && r->T[i].s.pair >= 0) {
            grads[i] = malloc((size_t)r->T[r->T[i].s.pair].s.n * 4);
            const char *why = download(r, &r->T[r->T[i].s.pair], grads[i]);
            if (why) {
                free(grads[i]);
                grads[i] = NULL;
                report(r, "(download)", INFINITY, tol, why);
            }
        }
    for (int i = 0; i < r->nT; i++) {
        if (!grads[i])
            continue;
        char what[40];
        snprintf(what, sizeof what, "d%s (fd)", r->T[i].s.name);
        double e = fd_input(r, &r->T[i], grads[i]);
        report(r, what, e < 0 ? INFINITY : e, tol, e < 0 ? "a device call failed" : NULL);
        free(grads[i]);
    }
}


static bool selected(const op_def *op, int ci)
{
    const char *f = getenv("LC_PARITY_OPS");
    if (!f || !*f)
        return true;
    size_t n = strlen(op->name);
    for (const char *p = f; (p = strstr(p, op->name)); p += n) {
        bool start = p == f || p[-1] == ',';
        if (start && (p[n] == ',' || p[n] == 0))
            return true;
        if (start && p[n] == ':' && atoi(p + n + 1) == ci)
            return true;
    }
    return false;
}

static void run_op(const op_def *op, int ci)
{
    const opcase *c = &op->cases[ci];
    int dts = c->dts ? c->dts : 3;
    for (int k = 0; k < 2; k++) {
        if (!(dts & (1 << k)))
            continue;
        for (int mode = 0; mode < 2; mode++) {
            if (mode == 1 && (!c->fd || k != 0))
                continue;
            op_run r = {.op = op, .c = c, .dt = k ? LC_DTYPE_BF16 : LC_DTYPE_F32};
            op->decl(&r);
            if (!alloc_case(&r))
                report(&r, "(malloc)", INFINITY, 0, "device allocation failed");
            else if (mode == 0)
                parity_case(&r);
            else
                fd_case(&r, op->fd_tol);
            free_case(&r);
        }
    }
}

/* ---------------------------------------------------------------- weights */

/* A frozen weight [rows, cols] of kind wk — 0 F32, 1 BF16, 2 F16, 3 NF4 with
 * double-quantized absmax, 4 NF4 with plain absmax — as tensors named
 * prefix + (W | codes, absmax | absmax_q, nested, map). */
enum { WK_F32, WK_BF16, WK_F16, WK_NF4DQ, WK_NF4 };
#define NF4_BS 64
#define NF4_NBS 4

static void weight_decl(op_run *r, int wk, int64_t rows, int64_t cols)
{
    int64_t n = rows * cols, nb = (n + NF4_BS - 1) / NF4_BS;
    if (wk < WK_NF4DQ) {
        const int kinds[3] = {K_F32, K_BF16, K_F16};
        IN(r, "W", kinds[wk], n, 0.3f);
        return;
    }
    IN(r, "codes", K_U8, (n + 1) / 2, 0);
    if (wk == WK_NF4) {
        IN(r, "absmax", K_F32, nb, 1);
    } else {
        IN(r, "absmax_q", K_U8, nb, 0);
        IN(r, "nested", K_F32, (nb + NF4_NBS - 1) / NF4_NBS, 0.05f);
        IN(r, "map", K_F32, 256, 0);
    }
}

static void weight_init(op_run *r)
{
    tbuf *codes = tb(r, "codes");
    if (!codes)
        return;
    for (int64_t i = 0; i < codes->s.n; i++)
        ((uint8_t *)codes->h)[i] = (uint8_t)((frand() + 1.0f) * 127.99f);
    if (tb(r, "absmax")) {
        float *am = H(r, "absmax");
        for (int64_t b = 0; b < tb(r, "absmax")->s.n; b++)
            am[b] = fabsf(am[b]) + 0.01f;
    } else {
        tbuf *q = tb(r, "absmax_q");
        for (int64_t b = 0; b < q->s.n; b++)
            ((uint8_t *)q->h)[b] = (uint8_t)(frand() * 127.0f + 128.0f);
        for (int i = 0; i < 256; i++)
            H(r, "map")[i] = (float)(i - 128) / 128.0f;
    }
}

#define NF4_OFFSET 0.3f

/* the device weight: data on the device, or r->nf4 (host) with device arrays */
static lc_weight weight_dev(op_run *r, int wk, int64_t rows, int64_t cols)
{
    const lc_dtype wdt[3] = {LC_DTYPE_F32, LC_DTYPE_BF16, LC_DTYPE_F16};
    lc_weight W = {.dtype = wk < WK_NF4DQ ? wdt[wk] : LC_DTYPE_F32, .rows = rows, .cols = cols};
    if (wk < WK_NF4DQ) {
        W.data = D(r, "W");
        return W;
    }
    r->nf4 = (lc_nf4){.rows = rows, .cols = cols, .blocksize = NF4_BS, .codes = D(r, "codes")};
    if (wk == WK_NF4) {
        r->nf4.absmax = D(r, "absmax");
    } else {
        r->nf4.absmax_q = D(r, "absmax_q");
        r->nf4.nested_absmax = D(r, "nested");
        r->nf4.nested_map = D(r, "map");
        r->nf4.nested_blocksize = NF4_NBS;
        r->nf4.offset = NF4_OFFSET;
    }
    W.nf4 = &r->nf4;
    return W;
}

/* element e of the weight as the device dequantizes it (NF4: step by step in
 * f32 with autograd/nf4.h's code book) */
static float weight_elem(op_run *r, int wk, int64_t e)
{
    if (wk < WK_NF4DQ)
        return H(r, "W")[e];
    uint8_t byte = ((const uint8_t *)tb(r, "codes")->h)[e / 2];
    int code = (e & 1) ? (byte & 15) : (byte >> 4);
    int64_t b = e / NF4_BS;
    float am = wk == WK_NF4 ? H(r, "absmax")[b]
                            : H(r, "map")[((const uint8_t *)tb(r, "absmax_q")->h)[b]] *
                                      H(r, "nested")[b / NF4_NBS] +
                                  NF4_OFFSET;
    return lc_nf4_code[code] * am;
}

/* the weight in f32, rounded to the activation dtype as the device converts
 * it before a GEMM (a new array) */
static float *weight_host(op_run *r, int wk, int64_t rows, int64_t cols)
{
    float *w = malloc((size_t)(rows * cols) * 4);
    for (int64_t e = 0; e < rows * cols; e++)
        w[e] = round_kind(kind_of(r, K_ACT), weight_elem(r, wk, e));
    return w;
}

/* ---------------------------------------------------------------- convert */

/* a: source kind, destination kind (K_F32 / K_BF16), n (0: 5000) */
#define CONVERT_N(r) ((r)->c->a[2] ? (r)->c->a[2] : 5000)
static void convert_decl(op_run *r)
{
    IN(r, "x", (int)r->c->a[0], CONVERT_N(r), 100);
    tadd(r, "y", (int)r->c->a[1], R_OUT, 0, CONVERT_N(r), 0, 0, 0, NO_PAIR);
}
static void convert_init(op_run *r)
{
    float *x = H(r, "x");
    const float special[4] = {0.0f, -0.0f, 3.0e38f, 1.0e-30f};
    for (int i = 0; i < 4; i++)
        x[i] = round_kind(kind_of(r, (int)r->c->a[0]), special[i]);
    if (r->c->a[0] == K_F16)
        for (int64_t i = 0; i < CONVERT_N(r); i++)
            x[i] = round_kind(K_F16, x[i] / 100.0f);
}
static void convert_cpu(op_run *r)
{
    for (int64_t i = 0; i < CONVERT_N(r); i++)
        H(r, "y")[i] = round_kind((int)r->c->a[1], H(r, "x")[i]);
}
static lc_dtype cuda_dt(int kind)
{
    return kind == K_BF16 ? LC_DTYPE_BF16 : kind == K_F16 ? LC_DTYPE_F16 : LC_DTYPE_F32;
}
static int convert_dev(op_run *r)
{
    return lc_cuda_convert(g_ctx, cuda_dt((int)r->c->a[1]), D(r, "y"), cuda_dt((int)r->c->a[0]),
                           D(r, "x"), CONVERT_N(r));
}
static const opcase CONVERT_CASES[] = {
    {"f32>bf16", {K_F32, K_BF16}, 0, 0, 1},
    {"f16>f32", {K_F16, K_F32}, 0, 0, 1},
    {"f16>bf16", {K_F16, K_BF16}, 0, 0, 1},
    {"bf16>f32", {K_BF16, K_F32}, 0, 0, 1},
    {"f32>bf16 n=5003", {K_F32, K_BF16, 5003}, 0, 0, 1},
    {"f16>bf16 n=5003 x unaligned", {K_F16, K_BF16, 5003}, 0, 0, 1},
    {"bf16>f32 n=5003 y unaligned", {K_BF16, K_F32, 5003}, 0, 0, 1},
};

/* ---------------------------------------------------------------- gemm */

/* a: ta, tb, M, N, K, out f32 (else the activation dtype); dt is the input dtype */
#define GEMM_LD(c) int64_t M = c->a[2], N = c->a[3], K = c->a[4], \
    lda = (c->a[0] ? M : K) + 3, ldb = (c->a[1] ? K : N) + 5, ldc = N + 2
/* A and B of the row's activation dtype, C (accumulated into) of c_kind. */
static void gemm_decl_c(op_run *r, int c_kind, double tol_bf16)
{
    const opcase *c = r->c;
    GEMM_LD(c);
    (void)ldc;
    IN(r, "A", K_ACT, (c->a[0] ? K : M) * lda, 1);
    IN(r, "B", K_ACT, (c->a[1] ? N : K) * ldb, 1);
    tadd(r, "C", c_kind, R_ACC, 0, M * (N + 2), 1, 2e-6, tol_bf16, NO_PAIR);
}
static void gemm_decl(op_run *r)
{
    /* bf16 in, f32 out: products are exact in f32, only the order of the sum differs */
    bool f32_out = r->c->a[5];
    gemm_decl_c(r, f32_out ? K_F32 : K_ACT, f32_out ? 2e-6 : TOL_PW_BF16);
}
static void gemm_cpu(op_run *r)
{
    const opcase *c = r->c;
    GEMM_LD(c);
    CPU->gemm(c->a[0], c->a[1], M, N, K, 0.7f, H(r, "A"), lda, H(r, "B"), ldb, 0.3f, H(r, "C"), ldc);
    round_all(kind_of(r, tb(r, "C")->s.kind), H(r, "C"), tb(r, "C")->s.n);
}
static int gemm_dev(op_run *r)
{
    const opcase *c = r->c;
    GEMM_LD(c);
    if (!c->a[5]) {
        TABLE(r)->gemm(c->a[0], c->a[1], M, N, K, 0.7f, D(r, "A"), lda, D(r, "B"), ldb, 0.3f,
                       D(r, "C"), ldc);
        return 0;
    }
    /* activation in, f32 out with any beta: no table entry (gemm_grad is beta 1) */
    return lc_cuda_gemm(g_ctx, c->a[0], c->a[1], M, N, K, 0.7f, D(r, "A"), lda, D(r, "B"), ldb,
                        0.3f, D(r, "C"), ldc, r->dt, LC_DTYPE_F32);
}
static const opcase GEMM_CASES[] = {
    {"nn 37x53x71", {0, 0, 37, 53, 71, 0}, 0, 0, 0},
    {"tn 37x53x71", {1, 0, 37, 53, 71, 0}, 0, 0, 0},
    {"nt 37x53x71", {0, 1, 37, 53, 71, 0}, 0, 0, 0},
    {"tt 37x53x71", {1, 1, 37, 53, 71, 0}, 0, 0, 0},
    {"nn 37x53x71 out f32", {0, 0, 37, 53, 71, 1}, 0, 0, 2},
    {"tn 37x53x71 out f32", {1, 0, 37, 53, 71, 1}, 0, 0, 2},
    {"nt 37x53x71 out f32", {0, 1, 37, 53, 71, 1}, 0, 0, 2},
    {"tt 37x53x71 out f32", {1, 1, 37, 53, 71, 1}, 0, 0, 2},
    {"nt 1x300x64", {0, 1, 1, 300, 64, 0}, 0, 0, 0},
    {"K=0: C=beta*C", {0, 0, 64, 64, 0, 0}, 0, 0, 0},
};

/* gemm_grad: C [f32] += 0.7 · op(A)·op(B), A and B activations, through the
 * table of the row's dtype (a[5] unused: C is always f32). */
static void gemm_grad_decl(op_run *r) { gemm_decl_c(r, K_F32, 2e-6); }
static void gemm_grad_cpu(op_run *r)
{
    const opcase *c = r->c;
    GEMM_LD(c);
    CPU->gemm_grad(c->a[0], c->a[1], M, N, K, 0.7f, H(r, "A"), lda, H(r, "B"), ldb, H(r, "C"), ldc);
}
static int gemm_grad_dev(op_run *r)
{
    const opcase *c = r->c;
    GEMM_LD(c);
    TABLE(r)->gemm_grad(c->a[0], c->a[1], M, N, K, 0.7f, D(r, "A"), lda, D(r, "B"), ldb,
                        D(r, "C"), ldc);
    return 0;
}
/* the two shapes the LoRA backward takes: gB += dyᵀ·xa, gA += dxaᵀ·x */
static const opcase GEMM_GRAD_CASES[] = {
    {"tn 37x53x71", {1, 0, 37, 53, 71, 1}, 0, 0, 0},
    {"nn 37x53x71", {0, 0, 37, 53, 71, 1}, 0, 0, 0},
};

/* to_act: an f32 parameter rounded into the activation dtype (bitwise). */
static void to_act_decl(op_run *r)
{
    IN(r, "p", K_F32, r->c->a[0], 3);
    tadd(r, "y", K_ACT, R_OUT, 0, r->c->a[0], 0, 0, 0, NO_PAIR);
}
static void to_act_cpu(op_run *r)
{
    CPU->to_act(r->c->a[0], H(r, "p"), H(r, "y"));
    round_all(kind_of(r, K_ACT), H(r, "y"), r->c->a[0]);
}
static int to_act_dev(op_run *r)
{
    TABLE(r)->to_act(r->c->a[0], D(r, "p"), D(r, "y"));
    return 0;
}
static const opcase TO_ACT_CASES[] = {
    {"n=4099", {4099}, 0, 0, 0},
};

/* ---------------------------------------------------------------- weight rows (NF4 dequant) */

/* a: weight kind, rows, cols, r0, r1 */
static void wrows_decl(op_run *r)
{
    weight_decl(r, (int)r->c->a[0], r->c->a[1], r->c->a[2]);
    tadd(r, "rows", K_ACT, R_OUT, 0, (r->c->a[4] - r->c->a[3]) * r->c->a[2], 0, 0, 0, NO_PAIR);
}
static void wrows_cpu(op_run *r)
{
    int64_t cols = r->c->a[2], r0 = r->c->a[3];
    for (int64_t i = 0; i < tb(r, "rows")->s.n; i++)
        H(r, "rows")[i] = round_kind(kind_of(r, K_ACT), weight_elem(r, (int)r->c->a[0], r0 * cols + i));
}
static int wrows_dev(op_run *r)
{
    lc_weight W = weight_dev(r, (int)r->c->a[0], r->c->a[1], r->c->a[2]);
    return lc_cuda_weight_rows(g_ctx, &W, r->c->a[3], r->c->a[4], r->dt, D(r, "rows"));
}
/* odd cols: rows start mid-byte and mid-block; nf4_dequant_k's paths: runs
 * of 32 from a 32-aligned start in the middle of a 64-block (40x96), after a
 * lead of 8 single elements (20x24), none (33x75: the runs' stores would be
 * unaligned) */
static const opcase WROWS_CASES[] = {
    {"nf4 9x51 rows 2..8", {WK_NF4, 9, 51, 2, 8}, 0, 0, 0},
    {"nf4dq 9x51 rows 2..8", {WK_NF4DQ, 9, 51, 2, 8}, 0, 0, 0},
    {"nf4dq 40x96 rows 3..37", {WK_NF4DQ, 40, 96, 3, 37}, 0, 0, 0},
    {"nf4 33x75 rows 1..33", {WK_NF4, 33, 75, 1, 33}, 0, 0, 0},
    {"nf4dq 20x24 rows 1..20", {WK_NF4DQ, 20, 24, 1, 20}, 0, 0, 0},
    {"f16 9x51 rows 1..9", {WK_F16, 9, 51, 1, 9}, 0, 0, 0},
};

/* ---------------------------------------------------------------- weight matmul + grad */

/* a: weight kind, N, in, out, tile rows (0: default tile) */
static void wmm_decl(op_run *r)
{
    const int64_t *a = r->c->a;
    weight_decl(r, (int)a[0], a[3], a[2]); /* a variable number of tensors: pairs by name */
    DIFF(r, "x", K_ACT, a[1] * a[2], 1, NO_PAIR);
    tadd(r, "y", K_ACT, R_ACC, 0, a[1] * a[3], 1, 1e-6, 1e-2, NO_PAIR); /* y = y + x·Wᵀ */
    IN(r, "dy", K_ACT, a[1] * a[3], 1);
    tadd(r, "dx", K_ACT, R_ACC, 1, a[1] * a[2], 1, 2e-6, 2e-2, NO_PAIR);
    tb(r, "x")->s.pair = tix(r, "dx");
    tb(r, "y")->s.pair = tix(r, "dy");
}
static void wmm_cpu(op_run *r)
{
    const int64_t *a = r->c->a;
    float *w = weight_host(r, (int)a[0], a[3], a[2]);
    if (r->phase == 0)
        CPU->gemm(false, true, a[1], a[3], a[2], 1, H(r, "x"), a[2], w, a[2], 1, H(r, "y"), a[3]);
    else
        CPU->gemm(false, false, a[1], a[2], a[3], 1, H(r, "dy"), a[3], w, a[2], 1, H(r, "dx"), a[2]);
    round_all(kind_of(r, K_ACT), r->phase ? H(r, "dx") : H(r, "y"), a[1] * (r->phase ? a[2] : a[3]));
    free(w);
}
static int wmm_dev(op_run *r)
{
    const int64_t *a = r->c->a;
    lc_weight W = weight_dev(r, (int)a[0], a[3], a[2]);
    lc_cuda_debug_limits(a[4] * a[2], 0);
    size_t sb = TABLE(r)->weight_scratch(&W) * sizeof(lc_real);
    void *scr = sb ? dalloc(sb) : NULL;
    if (sb && !scr)
        return -1;
    if (r->phase == 0)
        TABLE(r)->weight_matmul(D(r, "x"), a[1], &W, 1.0f, D(r, "y"), scr);
    else
        TABLE(r)->weight_matmul_grad(D(r, "dy"), a[1], &W, 1.0f, D(r, "dx"), scr);
    return 0;
}
/* tiles of 40x80 elements: forward 40-row tiles (40, 40, 16), backward
 * 32-column tiles (32, 32, 16), the last partial */
static const opcase WMM_CASES[] = {
    {"W f32 19x80->96", {WK_F32, 19, 80, 96, 40}, 0, 1, 0},
    {"W bf16 19x80->96", {WK_BF16, 19, 80, 96, 40}, 0, 0, 0},
    {"W f16 19x80->96 tiles", {WK_F16, 19, 80, 96, 40}, 0, 1, 0},
    {"W nf4dq 19x80->96 tiles", {WK_NF4DQ, 19, 80, 96, 40}, 0, 1, 0},
    {"W nf4 19x80->96", {WK_NF4, 19, 80, 96, 0}, 0, 0, 0},
    /* 8 tiles (64x64 elements) over K = 512 in dx's backward */
    {"W nf4dq 16x64->512 8 tiles", {WK_NF4DQ, 16, 64, 512, 64}, 0, 0, 0},
    /* backward column blocks of 32: each row's block one run of nf4_dequant_k */
    {"W nf4 16x128->96 col runs", {WK_NF4, 16, 128, 96, 40}, 0, 0, 0},
};

/* ---------------------------------------------------------------- RMSNorm */

/* a: N, C */
static void rms_decl(op_run *r)
{
    int64_t N = r->c->a[0], C = r->c->a[1];
    DIFF(r, "x", K_ACT, N * C, 2, 4);
    IN(r, "w", K_ACT, C, 0.5f);
    tadd(r, "y", K_ACT, R_OUT, 0, N * C, 0, TOL_PW_F32, TOL_PW_BF16, 5);
    tadd(r, "rstd", K_F32, R_OUT | R_SAVED, 0, N, 0, TOL_PW_F32, TOL_PW_F32, NO_PAIR);
    tadd(r, "dx", K_ACT, R_ACC, 1, N * C, 1, TOL_PW_F32, TOL_PW_BF16, NO_PAIR);
    IN(r, "dy", K_ACT, N * C, 1);
}
static void rms_init(op_run *r)
{
    for (int64_t i = 0; i < r->c->a[1]; i++) /* weights around 1 */
        H(r, "w")[i] = round_kind(kind_of(r, K_ACT), H(r, "w")[i] + 1.0f);
}
static void rms_cpu(op_run *r)
{
    int64_t N = r->c->a[0], C = r->c->a[1];
    if (r->phase == 0) {
        CPU->rmsnorm_fwd(H(r, "x"), H(r, "w"), N, C, 1e-5, H(r, "y"), H(r, "rstd"));
        round_all(kind_of(r, K_ACT), H(r, "y"), N * C);
    } else {
        CPU->rmsnorm_bwd(H(r, "x"), H(r, "w"), H(r, "rstd"), H(r, "dy"), N, C, H(r, "dx"));
        round_all(kind_of(r, K_ACT), H(r, "dx"), N * C);
    }
}
static int rms_dev(op_run *r)
{
    int64_t N = r->c->a[0], C = r->c->a[1];
    if (r->phase == 0)
        TABLE(r)->rmsnorm_fwd(D(r, "x"), D(r, "w"), N, C, 1e-5, D(r, "y"), D(r, "rstd"));
    else
        TABLE(r)->rmsnorm_bwd(D(r, "x"), D(r, "w"), D(r, "rstd"), D(r, "dy"), N, C, D(r, "dx"));
    return 0;
}
static const opcase RMS_CASES[] = {
    {"33x200", {33, 200}, 0, 1, 0},
    {"5x17", {5, 17}, 0, 1, 0},
    {"3x1000", {3, 1000}, 0, 0, 0},
    {"33x200 unaligned", {33, 200}, 0, 0, 0},
    {"33x200 dy unaligned", {33, 200}, 0, 0, 0},
};

/* ---------------------------------------------------------------- gated activations */

/* a: n, du NULL, backward also recomputes y (as yb) */
static void gated_decl(op_run *r)
{
    int64_t n = r->c->a[0];
    double tol = strcmp(r->op->name, "geglu_tanh") == 0 ? TOL_TANH_F32 : TOL_PW_F32;
    DIFF(r, "g", K_ACT, n, 4, 4);
    DIFF(r, "u", K_ACT, n, 2, 5);
    tadd(r, "y", K_ACT, R_OUT, 0, n, 0, tol, TOL_PW_BF16, 3);
    IN(r, "dy", K_ACT, n, 1);
    tadd(r, "dg", K_ACT, R_ACC, 1, n, 1, tol, TOL_PW_BF16, NO_PAIR);
    tadd(r, "du", K_ACT, R_ACC, 1, n, 1, tol, TOL_PW_BF16, NO_PAIR);
    if (r->c->a[2])
        tadd(r, "yb", K_ACT, R_OUT, 1, n, 0, tol, TOL_PW_BF16, NO_PAIR);
    if (r->c->a[1])
        r->T[1].s.pair = NO_PAIR;
}
#define GATED_CPU(name, fwd, bwd)                                                                  \
    static void name(op_run *r)                                                                    \
    {                                                                                              \
        int64_t n = r->c->a[0];                                                                    \
        if (r->phase == 0)                                                                         \
            fwd(H(r, "g"), H(r, "u"), n, H(r, "y"));                                               \
        else                                                                                       \
            bwd(H(r, "g"), H(r, "u"), H(r, "dy"), n, H(r, "dg"), r->c->a[1] ? NULL : H(r, "du"),  \
                H(r, "yb"));                                                                       \
        round_all(kind_of(r, K_ACT), H(r, "y"), n);                                                \
        round_all(kind_of(r, K_ACT), H(r, "dg"), n);                                               \
        round_all(kind_of(r, K_ACT), H(r, "du"), n);                                               \
        if (H(r, "yb"))                                                                            \
            round_all(kind_of(r, K_ACT), H(r, "yb"), n);                                           \
    }
#define GATED_DEV(name, fwd, bwd)                                                                  \
    static int name(op_run *r)                                                                     \
    {                                                                                              \
        int64_t n = r->c->a[0];                                                                    \
        void *du = r->c->a[1] ? NULL : D(r, "du");                                                 \
        if (r->phase == 0)                                                                         \
            TABLE(r)->fwd(D(r, "g"), D(r, "u"), n, D(r, "y"));                                     \
        else                                                                                       \
            TABLE(r)->bwd(D(r, "g"), D(r, "u"), D(r, "dy"), n, D(r, "dg"), du, D(r, "yb"));        \
        return 0;                                                                                  \
    }
GATED_CPU(swiglu_cpu, CPU->swiglu_fwd, CPU->swiglu_bwd)
GATED_DEV(swiglu_dev, swiglu_fwd, swiglu_bwd)
GATED_CPU(geglu_cpu, CPU->geglu_tanh_fwd, CPU->geglu_tanh_bwd)
GATED_DEV(geglu_dev, geglu_tanh_fwd, geglu_tanh_bwd)
static const opcase GATED_CASES[] = {
    {"n=1000", {1000, 0}, 0, 1, 0},
    {"n=1000 du NULL", {1000, 1}, 0, 0, 0},
    {"n=7", {7, 0}, 0, 1, 0},
    {"n=1003", {1003, 0}, 0, 0, 0},
    {"n=1003 unaligned", {1003, 0}, 0, 0, 0},
    {"n=1003 du unaligned", {1003, 0}, 0, 0, 0},
    {"n=1003 with y", {1003, 0, 1}, 0, 0, 0},
    {"n=1000 du NULL with y", {1000, 1, 1}, 0, 0, 0},
    {"n=1003 with y, yb unaligned", {1003, 0, 1}, 0, 0, 0},
};

/* ---------------------------------------------------------------- RoPE */

/* a: N, heads, D, P, in place; forward dst = R·x, backward dx += Rᵀ·dy */
static void rope_decl(op_run *r)
{
    int64_t n = r->c->a[0] * r->c->a[1] * r->c->a[2];
    DIFF(r, "x", K_ACT, n, 1, 4);
    IN(r, "pos", K_I32, r->c->a[0], 0);
    IN(r, "cos_sin", K_F32, r->c->a[3] * r->c->a[2], 0);
    tadd(r, "y", K_ACT, R_OUT, 0, n, 0, TOL_PW_F32, TOL_PW_BF16, 5);
    tadd(r, "dx", K_ACT, R_ACC, 1, n, 1, TOL_PW_F32, TOL_PW_BF16, NO_PAIR);
    IN(r, "dy", K_ACT, n, 1);
}
static void rope_init(op_run *r)
{
    int64_t P = r->c->a[3];
    int D = (int)r->c->a[2];
    float *cs = H(r, "cos_sin");
    for (int64_t p = 0; p < P; p++)
        for (int j = 0; j < D / 2; j++) {
            double f = (double)p * pow(10000.0, -2.0 * j / D);
            cs[p * D + j] = (float)cos(f);
            cs[p * D + D / 2 + j] = (float)sin(f);
        }
    for (int64_t i = 0; i < r->c->a[0]; i++)
        ((int32_t *)tb(r, "pos")->h)[i] = (int32_t)irand(P);
}
static void rope_cpu(op_run *r)
{
    const int64_t *a = r->c->a;
    const int32_t *pos = tb(r, "pos")->h;
    if (r->phase == 0)
        CPU->rope(H(r, "x"), H(r, "y"), a[0], (int)a[1], (int)a[2], pos, H(r, "cos_sin"), false, false);
    else
        CPU->rope(H(r, "dy"), H(r, "dx"), a[0], (int)a[1], (int)a[2], pos, H(r, "cos_sin"), true, true);
    round_all(kind_of(r, K_ACT), r->phase ? H(r, "dx") : H(r, "y"), tb(r, "y")->s.n);
}
static int rope_dev(op_run *r)
{
    const int64_t *a = r->c->a;
    if (r->phase == 1) {
        TABLE(r)->rope(D(r, "dy"), D(r, "dx"), a[0], (int)a[1], (int)a[2], D(r, "pos"),
                       D(r, "cos_sin"), true, true);
        return 0;
    }
    void *src = D(r, "x");
    if (a[4]) { /* in place: y holds x first */
        g_be->copy(g_be, D(r, "y"), D(r, "x"), (size_t)tb(r, "y")->s.n * lc_dtype_size(r->dt));
        src = D(r, "y");
    }
    TABLE(r)->rope(src, D(r, "y"), a[0], (int)a[1], (int)a[2], D(r, "pos"), D(r, "cos_sin"), false,
                   false);
    return 0;
}
static const opcase ROPE_CASES[] = {
    {"20x3x16", {20, 3, 16, 64, 0}, 0, 1, 0},
    {"20x3x16 in place", {20, 3, 16, 64, 1}, 0, 0, 0},
    {"7x2x128", {7, 2, 128, 300, 0}, 0, 1, 0},
};

/* ---------------------------------------------------------------- axpy, add, bias, scale, div */

/* a: N, O, alias (add's out is a, scale's y is x) */
static void lin_decl(op_run *r)
{
    int64_t n = r->c->a[0] * r->c->a[1];
    IN(r, "a", K_ACT, n, 1);
    IN(r, "b", K_ACT, n, 1);
    IN(r, "bias", K_ACT, r->c->a[1], 1);
    tadd(r, "sum", K_ACT, r->c->a[2] ? R_ACC : R_OUT, 0, n, 1, TOL_PW_F32, TOL_PW_BF16, NO_PAIR);
    tadd(r, "axpy", K_ACT, R_ACC, 0, n, 1, TOL_PW_F32, TOL_PW_BF16, NO_PAIR);
    tadd(r, "biased", K_ACT, R_ACC, 0, n, 1, TOL_PW_F32, TOL_PW_BF16, NO_PAIR);
    tadd(r, "scaled", K_ACT, r->c->a[2] ? R_ACC : R_OUT, 0, n, 1, TOL_PW_F32, TOL_PW_BF16, NO_PAIR);
    tadd(r, "quot", K_ACT, R_OUT, 0, n, 1, TOL_PW_F32, TOL_PW_BF16, NO_PAIR);
}
static void lin_init(op_run *r)
{
    int64_t n = tb(r, "a")->s.n;
    memcpy(H(r, "axpy"), H(r, "b"), (size_t)n * 4);
    memcpy(H(r, "biased"), H(r, "a"), (size_t)n * 4);
    if (r->c->a[2]) {
        memcpy(H(r, "sum"), H(r, "a"), (size_t)n * 4);
        memcpy(H(r, "scaled"), H(r, "a"), (size_t)n * 4);
    }
    for (int64_t i = 0; i < n; i++) /* divisors away from 0: |b| ≥ 0.25 */
        if (fabsf(H(r, "b")[i]) < 0.25f)
            H(r, "b")[i] = round_kind(kind_of(r, K_ACT), H(r, "b")[i] < 0 ? -0.25f - H(r, "b")[i]
                                                                          : 0.25f + H(r, "b")[i]);
}
static void lin_cpu(op_run *r)
{
    int64_t N = r->c->a[0], O = r->c->a[1], n = N * O;
    CPU->add(n, H(r, "a"), H(r, "b"), H(r, "sum"));
    CPU->axpy(n, -0.5f, H(r, "a"), H(r, "axpy"));
    CPU->add_bias(N, O, H(r, "bias"), H(r, "biased"));
    CPU->scale(n, 0.3f, H(r, "a"), H(r, "scaled"));
    CPU->div(n, H(r, "a"), H(r, "b"), H(r, "quot"));
    const char *outs[] = {"sum", "axpy", "biased", "scaled", "quot"};
    for (int k = 0; k < 5; k++)
        round_all(kind_of(r, K_ACT), H(r, outs[k]), n);
}
static int lin_dev(op_run *r)
{
    int64_t N = r->c->a[0], O = r->c->a[1], n = N * O;
    const void *a = r->c->a[2] ? D(r, "sum") : D(r, "a"); /* alias: out = a */
    const void *x = r->c->a[2] ? D(r, "scaled") : D(r, "a");
    TABLE(r)->add(n, a, D(r, "b"), D(r, "sum"));
    TABLE(r)->axpy(n, -0.5f, D(r, "a"), D(r, "axpy"));
    TABLE(r)->add_bias(N, O, D(r, "bias"), D(r, "biased"));
    TABLE(r)->scale(n, 0.3f, x, D(r, "scaled"));
    if (F32(r)) {
        DEV->div(n, D(r, "a"), D(r, "b"), D(r, "quot"));
        return 0;
    }
    /* the tables' div is [f32] (DoRA's m / c): the bf16 kernel directly */
    return lc_cuda_div(g_ctx, r->dt, n, D(r, "a"), D(r, "b"), D(r, "quot"));
}
static const opcase LIN_CASES[] = {
    {"7x45", {7, 45, 0}, 0, 0, 0},
    {"7x45 out aliases a", {7, 45, 1}, 0, 0, 0},
    {"1x3", {1, 3, 0}, 0, 0, 0},
    {"7x45 unaligned", {7, 45, 0}, 0, 0, 0},
    {"7x45 b unaligned", {7, 45, 0}, 0, 0, 0},
};

/* ---------------------------------------------------------------- column slices */

/* a: N, ld, c0, w, add: part = wide[:, c0:c0+w] or wide[:, c0:c0+w] += part */
static void cols_decl(op_run *r)
{
    const int64_t *a = r->c->a;
    tadd(r, "wide", K_ACT, a[4] ? R_ACC : R_IN, 0, a[0] * a[1], 1, TOL_PW_F32, TOL_PW_BF16,
         NO_PAIR);
    tadd(r, "part", K_ACT, a[4] ? R_IN : R_OUT, 0, a[0] * a[3], 1, 0, 0, NO_PAIR);
}
static void cols_cpu(op_run *r)
{
    const int64_t *a = r->c->a;
    CPU->cols(H(r, "wide"), a[0], a[1], a[2], a[3], H(r, "part"), a[4]);
    round_all(kind_of(r, K_ACT), H(r, "wide"), a[0] * a[1]);
}
static int cols_dev(op_run *r)
{
    const int64_t *a = r->c->a;
    TABLE(r)->cols(D(r, "wide"), a[0], a[1], a[2], a[3], D(r, "part"), a[4]);
    return 0;
}
static const opcase COLS_CASES[] = {
    {"copy 9x[37] cols 5..21", {9, 37, 5, 16, 0}, 0, 0, 0},
    {"add 9x[37] cols 5..21", {9, 37, 5, 16, 1}, 0, 0, 0},
    {"copy 4x[24] last 8", {4, 24, 16, 8, 0}, 0, 0, 0},
};

/* ---------------------------------------------------------------- soft-capping */

/* a: n; x: cap (0: no-op) */
static void softcap_decl(op_run *r)
{
    tadd(r, "x", K_ACT, R_ACC, 0, r->c->a[0], 4, TOL_TANH_F32, TOL_PW_BF16, NO_PAIR);
}
static void softcap_cpu(op_run *r)
{
    CPU->softcap(H(r, "x"), r->c->a[0], r->c->x);
    round_all(kind_of(r, K_ACT), H(r, "x"), r->c->a[0]);
}
static int softcap_dev(op_run *r)
{
    TABLE(r)->softcap(D(r, "x"), r->c->a[0], r->c->x);
    return 0;
}
static const opcase SOFTCAP_CASES[] = {
    {"n=1000 cap 1.5", {1000}, 1.5, 0, 0},
    {"n=1000 cap 30", {1000}, 30, 0, 0},
    {"n=7 cap 0", {7}, 0, 0, 0},
    {"n=1003 cap 1.5", {1003}, 1.5, 0, 0},
    {"n=1003 cap 1.5 unaligned", {1003}, 1.5, 0, 0},
};

/* ---------------------------------------------------------------- embedding */

/* a: weight kind, V, C, N */
static void emb_decl(op_run *r)
{
    weight_decl(r, (int)r->c->a[0], r->c->a[1], r->c->a[2]);
    IN(r, "ids", K_I32, r->c->a[3], 0);
    tadd(r, "x", K_ACT, R_OUT, 0, r->c->a[3] * r->c->a[2], 0, 0, 0, NO_PAIR);
}
static void emb_init(op_run *r)
{
    weight_init(r);
    for (int64_t i = 0; i < r->c->a[3]; i++)
        ((int32_t *)tb(r, "ids")->h)[i] = (int32_t)irand(r->c->a[1]);
}
static void emb_cpu(op_run *r)
{
    int64_t V = r->c->a[1], C = r->c->a[2];
    float *w = weight_host(r, (int)r->c->a[0], V, C);
    lc_weight E = {.data = w, .dtype = LC_DTYPE_F32, .rows = V, .cols = C};
    CPU->embedding(&E, tb(r, "ids")->h, r->c->a[3], H(r, "x"));
    free(w);
}
static int emb_dev(op_run *r)
{
    lc_weight E = weight_dev(r, (int)r->c->a[0], r->c->a[1], r->c->a[2]);
    TABLE(r)->embedding(&E, D(r, "ids"), r->c->a[3], D(r, "x"));
    return 0;
}
static const opcase EMB_CASES[] = {
    {"E f32 50x24 N=31", {WK_F32, 50, 24, 31}, 0, 0, 0},
    {"E bf16 50x24 N=31", {WK_BF16, 50, 24, 31}, 0, 0, 0},
    {"E f16 50x24 N=31", {WK_F16, 50, 24, 31}, 0, 0, 0},
    {"E nf4dq 50x24 N=31", {WK_NF4DQ, 50, 24, 31}, 0, 0, 0},
};

/* ---------------------------------------------------------------- dropout */

/* a: n; x: p. Same counter hash on both sides: f32 bitwise, bf16 the same mask */
static void drop_decl(op_run *r)
{
    int64_t n = r->c->a[0];
    IN(r, "x", K_ACT, n, 1);
    tadd(r, "y", K_ACT, R_OUT, 0, n, 0, 0, TOL_PW_BF16, NO_PAIR);
    tadd(r, "acc", K_ACT, R_ACC, 0, n, 1, 0, TOL_PW_BF16, NO_PAIR);
}
static void drop_cpu(op_run *r)
{
    int64_t n = r->c->a[0];
    CPU->dropout(H(r, "x"), H(r, "y"), n, r->c->x, 1234, false);
    CPU->dropout(H(r, "x"), H(r, "acc"), n, r->c->x, 99, true);
    round_all(kind_of(r, K_ACT), H(r, "y"), n);
    round_all(kind_of(r, K_ACT), H(r, "acc"), n);
}
static int drop_dev(op_run *r)
{
    int64_t n = r->c->a[0];
    TABLE(r)->dropout(D(r, "x"), D(r, "y"), n, r->c->x, 1234, false);
    TABLE(r)->dropout(D(r, "x"), D(r, "acc"), n, r->c->x, 99, true);
    return 0;
}
static const opcase DROP_CASES[] = {
    {"n=10007 p=0", {10007}, 0.0, 0, 0},
    {"n=10007 p=0.1", {10007}, 0.1, 0, 0},
    {"n=10007 p=0.5", {10007}, 0.5, 0, 0},
    {"n=10007 p=0.1 unaligned", {10007}, 0.1, 0, 0},
    {"n=10007 p=0.1 y unaligned", {10007}, 0.1, 0, 0},
};

/* ---------------------------------------------------------------- attention */

/* a: B, T, H, KV, D, segments, window; x: soft-cap */
/* the shape with segment on the host (dev false) or the device */
static lc_attn_shape attn_shape(op_run *r, bool dev)
{
    const int64_t *a = r->c->a;
    return (lc_attn_shape){.B = a[0], .T = a[1], .H = (int)a[2], .KV = (int)a[3], .D = (int)a[4],
                           .scale = 1.0 / sqrt((double)a[4]),
                           .segment = !tb(r, "seg") ? NULL : dev ? D(r, "seg") : tb(r, "seg")->h,
                           .window = a[6], .softcap = r->c->x};
}
static void attn_decl(op_run *r)
{
    const int64_t *a = r->c->a;
    int64_t nq = a[0] * a[1] * a[2] * a[4], nk = a[0] * a[1] * a[3] * a[4];
    DIFF(r, "q", K_ACT, nq, 1.5f, 3);
    DIFF(r, "k", K_ACT, nk, 1.5f, 4);
    DIFF(r, "v", K_ACT, nk, 1, 5);
    tadd(r, "dq", K_ACT, R_ACC, 1, nq, 0.1f, 4e-6, 1e-2, NO_PAIR);
    tadd(r, "dk", K_ACT, R_ACC, 1, nk, 0.1f, 4e-6, 1e-2, NO_PAIR);
    tadd(r, "dv", K_ACT, R_ACC, 1, nk, 0.1f, 4e-6, 4e-3, NO_PAIR);
    tadd(r, "out", K_ACT, R_OUT | R_SAVED, 0, nq, 0, 2e-6, 1e-2, 7);
    IN(r, "dout", K_ACT, nq, 1);
    tadd(r, "lse", K_F32, R_OUT | R_SAVED, 0, a[0] * a[2] * a[1], 0, 1e-6, 2e-6, NO_PAIR);
    if (a[5])
        IN(r, "seg", K_I32, a[0] * a[1], 0);
}
static void attn_init(op_run *r)
{
    tbuf *seg = tb(r, "seg");
    if (!seg)
        return;
    int64_t B = r->c->a[0], T = r->c->a[1];
    for (int64_t b = 0; b < B; b++) {
        int32_t id = 0;
        for (int64_t t = 0; t < T; t++) {
            if (t > 0 && frand() > 0.9f)
                id++;
            ((int32_t *)seg->h)[b * T + t] = id;
        }
    }
}
static void attn_cpu(op_run *r)
{
    lc_attn_shape s = attn_shape(r, false);
    lc_real *scr = malloc(CPU->attention_scratch(&s) * sizeof(lc_real));
    if (r->phase == 0) {
        CPU->attention_fwd(&s, H(r, "q"), H(r, "k"), H(r, "v"), H(r, "out"), H(r, "lse"), scr);
        round_all(kind_of(r, K_ACT), H(r, "out"), tb(r, "out")->s.n);
    } else {
        CPU->attention_bwd(&s, H(r, "q"), H(r, "k"), H(r, "v"), H(r, "out"), H(r, "lse"),
                           H(r, "dout"), H(r, "dq"), H(r, "dk"), H(r, "dv"), scr);
        round_all(kind_of(r, K_ACT), H(r, "dq"), tb(r, "dq")->s.n);
        round_all(kind_of(r, K_ACT), H(r, "dk"), tb(r, "dk")->s.n);
        round_all(kind_of(r, K_ACT), H(r, "dv"), tb(r, "dv")->s.n);
    }
    free(scr);
}
static int attn_dev(op_run *r)
{
    lc_attn_shape s = attn_shape(r, true);
    if (r->phase == 0) {
        TABLE(r)->attention_fwd(&s, D(r, "q"), D(r, "k"), D(r, "v"), D(r, "out"), D(r, "lse"),
                                NULL);
        return 0;
    }
    void *scr = dalloc(TABLE(r)->attention_scratch(&s) * sizeof(lc_real));
    if (!scr)
        return -1;
    TABLE(r)->attention_bwd(&s, D(r, "q"), D(r, "k"), D(r, "v"), D(r, "out"), D(r, "lse"),
                            D(r, "dout"), D(r, "dq"), D(r, "dk"), D(r, "dv"), scr);
    return 0;
}
static const opcase ATTN_CASES[] = {
    {"tiny B1 T5 H2/1 D8", {1, 5, 2, 1, 8, 0, 0}, 0, 1, 0},
    {"GQA2 B2 T70 D64", {2, 70, 2, 1, 64, 0, 0}, 0, 0, 0},
    {"segments GQA3 T70 D40", {1, 70, 6, 2, 40, 1, 0}, 0, 0, 0},
    {"window17 B2 T90 D128", {2, 90, 2, 2, 128, 0, 17}, 0, 0, 0},
    {"MQA seg win45 T130 D32", {1, 130, 4, 1, 32, 1, 45}, 0, 0, 0},
    {"window2 T70 D16", {1, 70, 2, 1, 16, 0, 2}, 0, 0, 0},
    /* Gemma 2 soft-capping; scores are O(1) here, so cap 0.5 is far from linear */
    {"softcap0.5 GQA2 T70 D64", {2, 70, 4, 2, 64, 0, 0}, 0.5, 0, 0},
    {"softcap0.5 seg win45 T130", {1, 130, 4, 1, 32, 1, 45}, 0.5, 0, 0},
    {"softcap50 win17 T90 D128", {1, 90, 2, 1, 128, 0, 17}, 50, 0, 0},
    {"softcap0.5 seg win3 T37 D16", {1, 37, 2, 1, 16, 1, 3}, 0.5, 1, 0},
};

/* ---------------------------------------------------------------- lm_head + CE */

/* a: weight kind, N, C, V, chunked; x: soft-cap. Forward: the loss without
 * dx; backward: loss and dx += grad_scale·∂loss/∂x. */
#define CE_SCALE (1.0f / 29.0f)
static void ce_decl(op_run *r)
{
    const int64_t *a = r->c->a;
    weight_decl(r, (int)a[0], a[3], a[2]);
    IN(r, "targets", K_I32, a[1], 0);
    DIFF(r, "x", K_ACT, a[1] * a[2], 1, NO_PAIR);
    tadd(r, "loss", K_F64H, R_OUT, 0, 1, 0, 1e-7, 1e-6, LOSS_PAIR);
    tadd(r, "n_sup", K_I64H, R_OUT, 0, 1, 0, 0, 0, NO_PAIR);
    tadd(r, "dx", K_ACT, R_ACC, 1, a[1] * a[2], 0.01f, 2e-6, 2e-2, NO_PAIR);
    tadd(r, "loss+dx", K_F64H, R_OUT, 1, 1, 0, 1e-7, 1e-6, NO_PAIR);
    tb(r, "x")->s.pair = tix(r, "dx");
}
static void ce_init(op_run *r)
{
    weight_init(r);
    int32_t *tg = tb(r, "targets")->h;
    for (int64_t i = 0; i < r->c->a[1]; i++)
        tg[i] = (i % 5 == 1 || i < 3) ? -100 : (int32_t)irand(r->c->a[3]);
}
static void ce_cpu(op_run *r)
{
    const int64_t *a = r->c->a;
    float *w = weight_host(r, (int)a[0], a[3], a[2]);
    lc_weight W = {.data = w, .dtype = LC_DTYPE_F32, .rows = a[3], .cols = a[2]};
    lc_real *cs = malloc(CPU->ce_scratch(a[1], a[2], a[3], &W) * sizeof(lc_real));
    int64_t n = 0;
    double *loss = tb(r, r->phase ? "loss+dx" : "loss")->h;
    *loss = CPU->lm_head_ce(H(r, "x"), a[1], a[2], &W, tb(r, "targets")->h, CE_SCALE,
                            r->phase ? H(r, "dx") : NULL, &n, cs, r->c->x);
    *(int64_t *)tb(r, "n_sup")->h = n;
    if (r->phase)
        round_all(kind_of(r, K_ACT), H(r, "dx"), tb(r, "dx")->s.n);
    free(w), free(cs);
}
static int ce_dev(op_run *r)
{
    const int64_t *a = r->c->a;
    lc_weight W = weight_dev(r, (int)a[0], a[3], a[2]);
    lc_cuda_debug_limits(a[4] ? a[2] * 70 : 0, a[4] ? 7 : 0);
    void *scr = dalloc(TABLE(r)->ce_scratch(a[1], a[2], a[3], &W) * sizeof(lc_real));
    if (!scr)
        return -1;
    double *loss = D(r, r->phase ? "loss+dx" : "loss");
    void *dx = r->phase ? D(r, "dx") : NULL;
    if (a[4]) /* the table answers the chunk the kernel takes (7 rows here) */
        cr_expect_eq(TABLE(r)->ce_chunk_rows(a[3]), 7, "ce_chunk_rows %lld",
                     (long long)TABLE(r)->ce_chunk_rows(a[3]));
    *loss = TABLE(r)->lm_head_ce(D(r, "x"), a[1], a[2], &W, D(r, "targets"), CE_SCALE, dx,
                                 D(r, "n_sup"), scr, r->c->x);
    return 0;
}
/* logits are O(1) here: cap 1 bends them hard (Gemma 2's final soft-capping) */
static const opcase CE_CASES[] = {
    {"W f32 40x48 V300", {WK_F32, 40, 48, 300, 0}, 0, 1, 0},
    {"W f32 chunked softcap1", {WK_F32, 40, 48, 300, 1}, 1.0, 1, 0},
    {"W bf16 softcap1", {WK_BF16, 40, 48, 300, 0}, 1.0, 0, 0},
    {"W bf16 chunked", {WK_BF16, 40, 48, 300, 1}, 0, 0, 0},
    {"W nf4dq", {WK_NF4DQ, 40, 48, 300, 0}, 0, 0, 0},
    {"W nf4dq chunked softcap1", {WK_NF4DQ, 40, 48, 300, 1}, 1.0, 0, 0},
};

/* ---------------------------------------------------------------- AdamW */

/* a: three tensor sizes, multi-tensor; three steps of torch AdamW, bitwise
 * equal to the CPU: each range through the tables' adamw (multi 0), or all
 * three in one multi-tensor lc_cuda_adamw_update (multi 1) */
#define ADAM_STEPS 3
static void adam_decl(op_run *r)
{
    int64_t n = r->c->a[0] + r->c->a[1] + r->c->a[2];
    tadd(r, "p", K_F32, R_ACC, 0, n, 0.1f, 0, 0, NO_PAIR);
    IN(r, "g", K_F32, n * ADAM_STEPS, 0.01f);
    tadd(r, "m", K_F32, R_OUT, 0, n, 0, 0, 0, NO_PAIR);
    tadd(r, "v", K_F32, R_OUT, 0, n, 0, 0, 0, NO_PAIR);
}
static const lc_adamw_hparams ADAM_HP = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01};
/* the three ranges of p, g (step s), m, v in the buffers of one side */
static void adam_ranges(op_run *r, bool dev, int s, float **p, const float **g, float **m, float **v)
{
    int64_t n = tb(r, "p")->s.n, off = 0;
    for (int i = 0; i < 3; i++) {
        p[i] = (float *)(dev ? D(r, "p") : H(r, "p")) + off;
        g[i] = (const float *)(dev ? D(r, "g") : H(r, "g")) + s * n + off;
        m[i] = (float *)(dev ? D(r, "m") : H(r, "m")) + off;
        v[i] = (float *)(dev ? D(r, "v") : H(r, "v")) + off;
        off += r->c->a[i];
    }
}
static void adam_cpu(op_run *r)
{
    float *p[3], *m[3], *v[3];
    const float *g[3];
    for (int s = 0; s < ADAM_STEPS; s++) { /* m, v start at 0 (calloc) */
        adam_ranges(r, false, s, p, g, m, v);
        for (int i = 0; i < 3; i++)
            CPU->adamw(r->c->a[i], p[i], g[i], m[i], v[i], &ADAM_HP, s + 1, 1e-3 * (s + 1));
    }
}
static int adam_dev(op_run *r)
{
    int64_t n = tb(r, "p")->s.n;
    float *p[3], *m[3], *v[3];
    const float *g[3];
    g_be->memset0(g_be, D(r, "m"), (size_t)n * 4); /* the optimizer state starts at 0 */
    g_be->memset0(g_be, D(r, "v"), (size_t)n * 4);
    for (int s = 0; s < ADAM_STEPS; s++) {
        adam_ranges(r, true, s, p, g, m, v);
        if (r->c->a[3]) {
            if (lc_cuda_adamw_update(g_ctx, 3, p, g, m, v, r->c->a, &ADAM_HP, s + 1, 1e-3 * (s + 1)))
                return -1;
            continue;
        }
        for (int i = 0; i < 3; i++)
            DEV->adamw(r->c->a[i], p[i], g[i], m[i], v[i], &ADAM_HP, s + 1, 1e-3 * (s + 1));
    }
    return 0;
}
static const opcase ADAM_CASES[] = {
    {"sizes 5,20000,40000", {5, 20000, 40000, 0}, 0, 0, 1}, /* spans several 16 Ki chunks */
    {"multi-tensor 5,20000,40000", {5, 20000, 40000, 1}, 0, 0, 1},
};

/* ---------------------------------------------------------------- Σ g² */

/* a: n */
static void sumsq_decl(op_run *r)
{
    IN(r, "g", K_F32, r->c->a[0], 1);
    tadd(r, "sum", K_F64H, R_OUT, 0, 1, 0, 1e-13, 0, NO_PAIR);
}
static void sumsq_cpu(op_run *r)
{
    *(double *)tb(r, "sum")->h = CPU->sum_squares(r->c->a[0], H(r, "g"));
}
static int sumsq_dev(op_run *r)
{
    *(double *)D(r, "sum") = DEV->sum_squares(r->c->a[0], D(r, "g"));
    return 0;
}
static const opcase SUMSQ_CASES[] = {
    {"n=1", {1}, 0, 0, 1},
    {"n=70001", {70001}, 0, 0, 1}, /* five chunks of 16 Ki */
};

/* ---------------------------------------------------------------- grad norm, clip */

/* a: tensors (≤ 40; one empty, one large), max_norm, on the backend (one
 * range: optim's lc_grad_norm_on / lc_grad_clip_on over the table's
 * sum_squares and scale) or multi-tensor (lc_cuda_grad_norm / _clip) */
#define GN_MAX 40
static int64_t gn_sizes(const opcase *c, int64_t *sz)
{
    int64_t total = 0;
    for (int i = 0; i < c->a[0]; i++) {
        sz[i] = i == 7 ? 0 : 1 + (i * 977) % 3000 + (i == 3 ? 40000 : 0);
        total += sz[i];
    }
    return total;
}
static void gn_decl(op_run *r)
{
    int64_t sz[GN_MAX];
    tadd(r, "g", K_F32, R_ACC, 0, gn_sizes(r->c, sz), 1, 0, 0, NO_PAIR);
    tadd(r, "norm", K_F64H, R_OUT, 0, 1, 0, 1e-13, 0, NO_PAIR);
    tadd(r, "norm(clip)", K_F64H, R_OUT, 0, 1, 0, 1e-13, 0, NO_PAIR);
    tadd(r, "norm after", K_F64H, R_OUT, 0, 1, 0, 1e-13, 0, NO_PAIR);
}
static void gn_cpu(op_run *r)
{
    size_t n = (size_t)tb(r, "g")->s.n;
    *(double *)tb(r, "norm")->h = lc_grad_norm(H(r, "g"), n);
    *(double *)tb(r, "norm(clip)")->h = lc_grad_clip(H(r, "g"), n, (double)r->c->a[1]);
    *(double *)tb(r, "norm after")->h = lc_grad_norm(H(r, "g"), n);
}
static int gn_dev(op_run *r)
{
    if (!r->c->a[2]) {
        size_t n = (size_t)tb(r, "g")->s.n;
        *(double *)D(r, "norm") = lc_grad_norm_on(g_be, D(r, "g"), n);
        *(double *)D(r, "norm(clip)") = lc_grad_clip_on(g_be, D(r, "g"), n, (double)r->c->a[1]);
        *(double *)D(r, "norm after") = lc_grad_norm_on(g_be, D(r, "g"), n);
        return 0;
    }
    int64_t sz[GN_MAX], off = 0;
    float *g[GN_MAX];
    gn_sizes(r->c, sz);
    int nt = (int)r->c->a[0];
    for (int i = 0; i < nt; i++) {
        g[i] = (float *)D(r, "g") + off;
        off += sz[i];
    }
    return lc_cuda_grad_norm(g_ctx, nt, (const float *const *)g, sz, D(r, "norm")) ||
           lc_cuda_grad_clip(g_ctx, nt, g, sz, (double)r->c->a[1], D(r, "norm(clip)")) ||
           lc_cuda_grad_norm(g_ctx, nt, (const float *const *)g, sz, D(r, "norm after"));
}
static const opcase GN_CASES[] = {
    {"40 tensors clip 1 multi", {40, 1, 1}, 0, 0, 1},
    {"3 tensors no clip", {3, 0, 0}, 0, 0, 1},
    {"40 tensors clip 1", {40, 1, 0}, 0, 0, 1},
};

/* ---------------------------------------------------------------- DoRA */

/* a: weight kind, out, in, R, tile rows (0: default); c[out] = ‖W + s·B·A‖ per row */
#define DORA_S 0.75f
static void dnorm_decl(op_run *r)
{
    const int64_t *a = r->c->a;
    weight_decl(r, (int)a[0], a[1], a[2]);
    IN(r, "A", K_F32, a[3] * a[2], 0.3f);
    IN(r, "B", K_F32, a[1] * a[3], 0.3f);
    tadd(r, "c", K_F32, R_OUT, 0, a[1], 0, 1e-6, 0, NO_PAIR);
}
static void dnorm_cpu(op_run *r)
{
    const int64_t *a = r->c->a;
    float *w = weight_host(r, (int)a[0], a[1], a[2]);
    lc_weight W = {.data = w, .dtype = LC_DTYPE_F32, .rows = a[1], .cols = a[2]};
    lc_real *scr = malloc(CPU->dora_norm_scratch(&W) * sizeof(lc_real));
    CPU->dora_norm(&W, H(r, "A"), H(r, "B"), a[3], DORA_S, H(r, "c"), scr);
    free(w), free(scr);
}
static int dnorm_dev(op_run *r)
{
    const int64_t *a = r->c->a;
    lc_weight W = weight_dev(r, (int)a[0], a[1], a[2]);
    lc_cuda_debug_limits(a[4] * a[2], 0);
    void *scr = dalloc(DEV->dora_norm_scratch(&W) * sizeof(lc_real));
    if (!scr)
        return -1;
    DEV->dora_norm(&W, D(r, "A"), D(r, "B"), a[3], DORA_S, D(r, "c"), scr);
    return 0;
}
/* 7-row tiles: three tiles, the last partial */
static const opcase DNORM_CASES[] = {
    {"W f32 19x40 R4", {WK_F32, 19, 40, 4, 0}, 0, 0, 1},
    {"W bf16 19x40 R4 tiles", {WK_BF16, 19, 40, 4, 7}, 0, 0, 1},
    {"W nf4dq 19x40 R8 tiles", {WK_NF4DQ, 19, 40, 8, 7}, 0, 0, 1},
    {"W f16 5x300 R0", {WK_F16, 5, 300, 0, 0}, 0, 0, 1},
};

/* a: N, O. PEFT's DoRA output and its gradients: forward g = m / c (div),
 * y += (g − 1)·u + g·v (dora_combine); backward du = dy·(g − 1), dv = dy·g
 * (col_scale), uv = u + v (add), dm += Σ_n dy·uv / c (dora_mag_grad) — the
 * gradient of L = Σ dy·y in m, u and v, checked by finite differences. */
static void dora_decl(op_run *r)
{
    int64_t N = r->c->a[0], O = r->c->a[1], n = N * O;
    DIFF(r, "m", K_F32, O, 1, NO_PAIR);
    IN(r, "c", K_F32, O, 1);
    DIFF(r, "u", K_ACT, n, 1, NO_PAIR);
    DIFF(r, "v", K_ACT, n, 1, NO_PAIR);
    tadd(r, "g", K_F32, R_OUT | R_SAVED, 0, O, 0, TOL_PW_F32, TOL_PW_F32, NO_PAIR);
    tadd(r, "y", K_ACT, R_ACC, 0, n, 1, TOL_PW_F32, TOL_PW_BF16, NO_PAIR);
    IN(r, "dy", K_ACT, n, 1);
    tadd(r, "du", K_ACT, R_OUT, 1, n, 0, TOL_PW_F32, TOL_PW_BF16, NO_PAIR);
    tadd(r, "dv", K_ACT, R_OUT, 1, n, 0, TOL_PW_F32, TOL_PW_BF16, NO_PAIR);
    tadd(r, "uv", K_ACT, R_OUT, 1, n, 0, TOL_PW_F32, TOL_PW_BF16, NO_PAIR);
    tadd(r, "dm", K_F32, R_ACC, 1, O, 1, 1e-6, 1e-6, NO_PAIR);
    tb(r, "m")->s.pair = tix(r, "dm");
    tb(r, "u")->s.pair = tix(r, "du");
    tb(r, "v")->s.pair = tix(r, "dv");
    tb(r, "y")->s.pair = tix(r, "dy");
}
static void dora_init(op_run *r)
{
    for (int64_t o = 0; o < r->c->a[1]; o++) { /* magnitudes and norms in [0.5, 1.5) */
        H(r, "m")[o] = 1.0f + 0.5f * H(r, "m")[o];
        H(r, "c")[o] = 1.0f + 0.5f * H(r, "c")[o];
    }
}
static void dora_cpu(op_run *r)
{
    int64_t N = r->c->a[0], O = r->c->a[1], n = N * O;
    int act = kind_of(r, K_ACT);
    if (r->phase == 0) {
        CPU->div(O, H(r, "m"), H(r, "c"), H(r, "g"));
        CPU->dora_combine(N, O, H(r, "g"), H(r, "u"), H(r, "v"), H(r, "y"));
        round_all(act, H(r, "y"), n);
        return;
    }
    CPU->col_scale(N, O, H(r, "dy"), H(r, "g"), -1, H(r, "du"));
    CPU->col_scale(N, O, H(r, "dy"), H(r, "g"), 0, H(r, "dv"));
    CPU->add(n, H(r, "u"), H(r, "v"), H(r, "uv"));
    round_all(act, H(r, "du"), n);
    round_all(act, H(r, "dv"), n);
    round_all(act, H(r, "uv"), n);
    CPU->dora_mag_grad(N, O, H(r, "dy"), H(r, "uv"), H(r, "c"), H(r, "dm"));
}
static int dora_dev(op_run *r)
{
    int64_t N = r->c->a[0], O = r->c->a[1], n = N * O;
    const lc_kernels *k = TABLE(r);
    if (r->phase == 0) {
        k->div(O, D(r, "m"), D(r, "c"), D(r, "g")); /* [f32] in both tables */
        k->dora_combine(N, O, D(r, "g"), D(r, "u"), D(r, "v"), D(r, "y"));
    } else {
        k->col_scale(N, O, D(r, "dy"), D(r, "g"), -1, D(r, "du"));
        k->col_scale(N, O, D(r, "dy"), D(r, "g"), 0, D(r, "dv"));
        k->add(n, D(r, "u"), D(r, "v"), D(r, "uv"));
        k->dora_mag_grad(N, O, D(r, "dy"), D(r, "uv"), D(r, "c"), D(r, "dm"));
    }
    return 0;
}
static const opcase DORA_CASES[] = {
    {"13x70", {13, 70}, 0, 1, 0},
    {"300x3", {300, 3}, 0, 1, 0},
    {"1x1", {1, 1}, 0, 0, 0},
    {"13x70 unaligned", {13, 70}, 0, 0, 0},
    {"13x70 dy unaligned", {13, 70}, 0, 0, 0},
};

/* ---------------------------------------------------------------- MoE row moves */

/* a: N token rows, C, n expert rows, NK routing weights, weighted (0: w NULL).
 * idx: n distinct tokens, slot: n distinct weights, as one expert's rows
 * (autograd/ops_moe.c); rows no index names must come back untouched. */
static void moe_decl(op_run *r)
{
    const int64_t *a = r->c->a;
    IN(r, "x", K_ACT, a[0] * a[1], 1);
    IN(r, "src", K_ACT, a[2] * a[1], 1);
    IN(r, "w", K_ACT, a[3], 1);
    IN(r, "idx", K_I32, a[2], 0);
    IN(r, "slot", K_I32, a[2], 0);
    tadd(r, "gathered", K_ACT, R_OUT, 0, a[2] * a[1], 0, 0, 0, NO_PAIR);
    tadd(r, "scattered", K_ACT, R_ACC, 0, a[0] * a[1], 1, TOL_PW_F32, TOL_PW_BF16, NO_PAIR);
    tadd(r, "gather_add", K_ACT, R_ACC, 0, a[2] * a[1], 1, TOL_PW_F32, TOL_PW_BF16, NO_PAIR);
    tadd(r, "dw", K_ACT, R_ACC, 0, a[3], 1, TOL_PW_F32, TOL_PW_BF16, NO_PAIR);
}
/* the first n of a random permutation of 0..m-1 into v */
static void distinct(int32_t *v, int64_t n, int64_t m)
{
    int32_t *perm = malloc((size_t)m * sizeof *perm);
    cr_assert(perm && n <= m);
    for (int64_t i = 0; i < m; i++)
        perm[i] = (int32_t)i;
    for (int64_t i = m - 1; i > 0; i--) {
        int64_t j = irand(i + 1);
        int32_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    memcpy(v, perm, (size_t)n * sizeof *v);
    free(perm);
}
static void moe_init(op_run *r)
{
    distinct(tb(r, "idx")->h, r->c->a[2], r->c->a[0]);
    distinct(tb(r, "slot")->h, r->c->a[2], r->c->a[3]);
}
static void moe_cpu(op_run *r)
{
    const int64_t *a = r->c->a;
    int64_t C = a[1], n = a[2];
    const int32_t *idx = tb(r, "idx")->h, *slot = tb(r, "slot")->h;
    const float *w = a[4] ? H(r, "w") : NULL;
    CPU->gather_rows(H(r, "x"), idx, n, C, H(r, "gathered"));
    CPU->scatter_add_rows(H(r, "src"), idx, w, slot, n, C, H(r, "scattered"));
    CPU->gather_add_rows(H(r, "x"), idx, w, slot, n, C, H(r, "gather_add"));
    CPU->row_dots(H(r, "x"), idx, H(r, "src"), slot, n, C, H(r, "dw"));
    const char *outs[] = {"scattered", "gather_add", "dw"};
    for (int k = 0; k < 3; k++)
        round_all(kind_of(r, K_ACT), H(r, outs[k]), tb(r, outs[k])->s.n);
}
static int moe_dev(op_run *r)
{
    const int64_t *a = r->c->a;
    int64_t C = a[1], n = a[2];
    const int32_t *idx = D(r, "idx"), *slot = D(r, "slot");
    const void *w = a[4] ? D(r, "w") : NULL;
    TABLE(r)->gather_rows(D(r, "x"), idx, n, C, D(r, "gathered"));
    TABLE(r)->scatter_add_rows(D(r, "src"), idx, w, slot, n, C, D(r, "scattered"));
    TABLE(r)->gather_add_rows(D(r, "x"), idx, w, slot, n, C, D(r, "gather_add"));
    TABLE(r)->row_dots(D(r, "x"), idx, D(r, "src"), slot, n, C, D(r, "dw"));
    return 0;
}
static const opcase MOE_CASES[] = {
    {"13 tokens x37, 9 rows, w", {13, 37, 9, 26, 1}, 0, 0, 0},
    {"13 tokens x37, 9 rows, w NULL", {13, 37, 9, 26, 0}, 0, 0, 0},
    {"300 tokens x5, all rows, w", {300, 5, 300, 600, 1}, 0, 0, 0},
    {"4 tokens x300, 1 row, w", {4, 300, 1, 8, 1}, 0, 0, 0},
};

/* ---------------------------------------------------------------- the table */

#define CASES(a) a, (int)(sizeof a / sizeof a[0])
static const op_def OPS[] = {
    {"convert", CASES(CONVERT_CASES), 1, 0, 0, convert_decl, convert_init, convert_cpu, convert_dev},
    {"gemm", CASES(GEMM_CASES), 1, 0, 0, gemm_decl, NULL, gemm_cpu, gemm_dev},
    {"gemm_grad", CASES(GEMM_GRAD_CASES), 1, 0, 0, gemm_grad_decl, NULL, gemm_grad_cpu,
     gemm_grad_dev},
    {"to_act", CASES(TO_ACT_CASES), 1, 0, 0, to_act_decl, NULL, to_act_cpu, to_act_dev},
    {"weight_rows", CASES(WROWS_CASES), 1, 0, 0, wrows_decl, weight_init, wrows_cpu, wrows_dev},
    {"weight_matmul", CASES(WMM_CASES), 2, 0, 2e-4, wmm_decl, weight_init, wmm_cpu, wmm_dev},
    {"rmsnorm", CASES(RMS_CASES), 2, 0, 5e-4, rms_decl, rms_init, rms_cpu, rms_dev},
    {"swiglu", CASES(GATED_CASES), 2, 0, 1e-4, gated_decl, NULL, swiglu_cpu, swiglu_dev},
    {"geglu_tanh", CASES(GATED_CASES), 2, 0, 1e-4, gated_decl, NULL, geglu_cpu, geglu_dev},
    {"rope", CASES(ROPE_CASES), 2, 0, 2e-5, rope_decl, rope_init, rope_cpu, rope_dev},
    {"add_axpy_bias", CASES(LIN_CASES), 1, 0, 0, lin_decl, lin_init, lin_cpu, lin_dev},
    {"cols", CASES(COLS_CASES), 1, 0, 0, cols_decl, NULL, cols_cpu, cols_dev},
    {"softcap", CASES(SOFTCAP_CASES), 1, 0, 0, softcap_decl, NULL, softcap_cpu, softcap_dev},
    {"embedding", CASES(EMB_CASES), 1, 0, 0, emb_decl, emb_init, emb_cpu, emb_dev},
    {"dropout", CASES(DROP_CASES), 1, 0, 0, drop_decl, NULL, drop_cpu, drop_dev},
    {"attention", CASES(ATTN_CASES), 2, 0, 3e-4, attn_decl, attn_init, attn_cpu, attn_dev},
    {"lm_head_ce", CASES(CE_CASES), 2, CE_SCALE, 3e-4, ce_decl, ce_init, ce_cpu, ce_dev},
    {"adamw", CASES(ADAM_CASES), 1, 0, 0, adam_decl, NULL, adam_cpu, adam_dev},
    {"sum_squares", CASES(SUMSQ_CASES), 1, 0, 0, sumsq_decl, NULL, sumsq_cpu, sumsq_dev},
    {"grad_norm_clip", CASES(GN_CASES), 1, 0, 0, gn_decl, NULL, gn_cpu, gn_dev},
    {"dora_norm", CASES(DNORM_CASES), 1, 0, 0, dnorm_decl, weight_init, dnorm_cpu, dnorm_dev},
    {"dora", CASES(DORA_CASES), 2, 0, 1e-4, dora_decl, dora_init, dora_cpu, dora_dev},
    {"moe_rows", CASES(MOE_CASES), 1, 0, 0, moe_decl, moe_init, moe_cpu, moe_dev},
};

Test(cuda, op_parity, .timeout = 1200)
{
    be_or_skip();
    printf("%-14s %-30s %-5s %-5s %-14s %10s %9s %s\n", "op", "case", "dev", "dtype", "output",
           "max-rel-err", "tolerance", "result");
    g_pass = g_fail = 0;
    double total = 0;
    for (size_t o = 0; o < sizeof OPS / sizeof OPS[0]; o++)
        for (int i = 0; i < OPS[o].n_cases; i++) {
            if (!selected(&OPS[o], i))
                continue;
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            run_op(&OPS[o], i);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
            total += sec;
            printf("# %s %d:%s: %.2f s\n", OPS[o].name, i, OPS[o].cases[i].label, sec);
        }
    printf("# total %.1f s\n", total);
    printf("op parity on %s: %d PASS, %d FAIL%s%s\n", g_backend, g_pass, g_fail,
           *g_bug ? ", injected bug " : "", g_bug);
    cr_expect_eq(g_fail, 0, "%d op-parity rows failed (table above)", g_fail);
    cr_expect_gt(g_pass, 0, "no op ran (LC_PARITY_OPS matches nothing?)");
    done();
}

static const op_def *find_op(const char *name)
{
    for (size_t o = 0; o < sizeof OPS / sizeof OPS[0]; o++)
        if (!strcmp(OPS[o].name, name))
            return &OPS[o];
    cr_assert_fail("no op %s", name);
    return NULL;
}

/* Every lc_kernels entry and the op of OPS[] whose f32 rows run it through
 * the two tables: an entry added to backend.h without a row here fails the
 * build (the count), one named here without an op fails kernels_covered. */
static const char *const KERNEL_ROWS[][2] = {
    {"gemm", "gemm"}, {"gemm_grad", "gemm_grad"}, {"to_act", "to_act"}, {"weight_scratch", "weight_matmul"}, {"weight_matmul", "weight_matmul"},
    {"weight_matmul_grad", "weight_matmul"}, {"rmsnorm_fwd", "rmsnorm"}, {"rmsnorm_bwd", "rmsnorm"},
    {"swiglu_fwd", "swiglu"}, {"swiglu_bwd", "swiglu"}, {"geglu_tanh_fwd", "geglu_tanh"},
    {"geglu_tanh_bwd", "geglu_tanh"}, {"softcap", "softcap"}, {"rope", "rope"},
    {"attention_scratch", "attention"}, {"attention_fwd", "attention"},
    {"attention_bwd", "attention"}, {"ce_chunk_rows", "lm_head_ce"}, {"ce_scratch", "lm_head_ce"},
    {"lm_head_ce", "lm_head_ce"}, {"embedding", "embedding"}, {"dropout", "dropout"},
    {"axpy", "add_axpy_bias"}, {"add", "add_axpy_bias"}, {"scale", "add_axpy_bias"},
    {"div", "add_axpy_bias"}, {"add_bias", "add_axpy_bias"}, {"cols", "cols"},
    {"dora_norm_scratch", "dora_norm"}, {"dora_norm", "dora_norm"}, {"dora_combine", "dora"},
    {"col_scale", "dora"}, {"dora_mag_grad", "dora"}, {"adamw", "adamw"},
    {"sum_squares", "sum_squares"}, {"gather_rows", "moe_rows"}, {"scatter_add_rows", "moe_rows"},
    {"gather_add_rows", "moe_rows"}, {"row_dots", "moe_rows"},
};
_Static_assert(sizeof KERNEL_ROWS / sizeof KERNEL_ROWS[0] == sizeof(lc_kernels) / sizeof(void (*)(void)),
               "an lc_kernels entry has no op-parity row: add one to OPS[] and KERNEL_ROWS");

Test(cuda, kernels_covered)
{
    for (size_t i = 0; i < sizeof KERNEL_ROWS / sizeof KERNEL_ROWS[0]; i++) {
        bool found = false;
        for (size_t o = 0; o < sizeof OPS / sizeof OPS[0]; o++)
            found = found || !strcmp(OPS[o].name, KERNEL_ROWS[i][1]);
        cr_expect(found, "kernel %s: no op %s in OPS[]", KERNEL_ROWS[i][0], KERNEL_ROWS[i][1]);
    }
}

/* ---------------------------------------------------------------- not parity */

Test(cuda, device_query)
{
    be_or_skip();
    lc_cuda_device_info info;
    lc_error err = {{0}};
    cr_assert_eq(lc_cuda_device_query(0, &info, &err), 0, "%s", err.msg);
    cr_expect_gt(strlen(info.name), 0);
    cr_expect_gt(info.total_bytes, 0);
    cr_expect_gt(info.free_bytes, 0);
    cr_expect_leq(info.free_bytes, info.total_bytes);
    cr_expect_geq(info.cc_major, 8, "kernels are built for sm_80 and newer");
    size_t f = 0, t = 0;
    g_be->mem_info(g_be, &f, &t);
    cr_expect_gt(t, 0);
    cr_expect_leq(f, t);
    done();
}

Test(cuda, errors_name_the_call)
{
    be_or_skip();
    lc_cuda_ctx *c = g_ctx;
    void *p = NULL;
    cr_assert_neq(lc_cuda_malloc(c, &p, (size_t)1 << 62), 0);
    cr_expect(strstr(lc_cuda_ctx_error(c), "cudaMalloc") != NULL, "%s", lc_cuda_ctx_error(c));
    cr_expect(strstr(lc_cuda_ctx_error(c), "cudaErrorMemoryAllocation") != NULL, "%s",
              lc_cuda_ctx_error(c));
    lc_attn_shape s = {.B = 1, .T = 4, .H = 1, .KV = 1, .D = 256, .scale = 1};
    cr_assert_neq(lc_cuda_attention_fwd(c, LC_DTYPE_F32, &s, NULL, NULL, NULL, NULL, NULL), 0);
    cr_expect(strstr(lc_cuda_ctx_error(c), "head dim") != NULL, "%s", lc_cuda_ctx_error(c));
    s.D = 8, s.past = 3; /* no KV cache on the device */
    cr_assert_neq(lc_cuda_attention_fwd(c, LC_DTYPE_F32, &s, NULL, NULL, NULL, NULL, NULL), 0);
    cr_expect(strstr(lc_cuda_ctx_error(c), "past 3") != NULL, "%s", lc_cuda_ctx_error(c));
    cr_assert_neq(lc_cuda_gemm(c, false, false, 2, 2, 2, 1, NULL, 2, NULL, 2, 0, NULL, 2,
                               LC_DTYPE_F32, LC_DTYPE_BF16),
                  0);
    cr_expect(strstr(lc_cuda_ctx_error(c), "unsupported dtypes") != NULL, "%s",
              lc_cuda_ctx_error(c));
    /* NF4 blocks are found by shifts: other block sizes are refused by name */
    static const uint8_t codes[8];
    static const float am[1];
    lc_nf4 q = {.rows = 2, .cols = 8, .blocksize = 48, .codes = codes, .absmax = am};
    lc_weight W = {.dtype = LC_DTYPE_F32, .rows = 2, .cols = 8, .nf4 = &q};
    cr_assert_neq(lc_cuda_weight_rows(c, &W, 0, 2, LC_DTYPE_F32, NULL), 0);
    cr_expect(strstr(lc_cuda_ctx_error(c), "blocksize 48 is not a power of two") != NULL, "%s",
              lc_cuda_ctx_error(c));
    q = (lc_nf4){.rows = 2, .cols = 8, .blocksize = 64, .codes = codes, .absmax_q = codes,
                 .nested_absmax = am, .nested_map = am, .nested_blocksize = 200};
    cr_assert_neq(lc_cuda_weight_rows(c, &W, 0, 2, LC_DTYPE_F32, NULL), 0);
    cr_expect(strstr(lc_cuda_ctx_error(c), "nested blocksize 200 is not a power of two") != NULL,
              "%s", lc_cuda_ctx_error(c));
    done();
}

/* The scratch policies at real shapes (host arithmetic, no device): a
 * Llama-3.1-8B NF4 linear converts whole; larger weights go by tiles of at
 * most 2^26 elements, rows a multiple of 8 (16-byte aligned operands); lm_head
 * + CE chunks are multiples of 128 rows, 1024 at V=128256. */
Test(cuda, scratch_policies)
{
    lc_cuda_debug_limits(0, 0);
    lc_nf4 q = {.blocksize = 64};
    lc_weight mlp = {.dtype = LC_DTYPE_BF16, .rows = 14336, .cols = 4096, .nf4 = &q};
    cr_expect_eq(lc_cuda_weight_scratch_bytes(&mlp, LC_DTYPE_BF16), (size_t)14336 * 4096 * 2);
    /* forward tiles of 16384 rows, backward of 512 columns (128256·512 < 2^26) */
    lc_weight head = {.dtype = LC_DTYPE_BF16, .rows = 128256, .cols = 4096, .nf4 = &q};
    cr_expect_eq(lc_cuda_weight_scratch_bytes(&head, LC_DTYPE_BF16), (size_t)16384 * 4096 * 2);
    /* 2^26 / 1000 = 67108 rows, rounded down to 67104 */
    lc_weight odd = {.dtype = LC_DTYPE_F16, .rows = 100000, .cols = 1000};
    cr_expect_eq(lc_cuda_weight_scratch_bytes(&odd, LC_DTYPE_F32), (size_t)67104 * 1000 * 4,
                 "%zu", lc_cuda_weight_scratch_bytes(&odd, LC_DTYPE_F32));
    cr_expect_eq(lc_cuda_ce_chunk_rows(128256), 1024);
    cr_expect_eq(lc_cuda_ce_chunk_rows(32000), 4096);
    cr_expect_eq(lc_cuda_ce_chunk_rows(151936), 768);
    cr_expect_eq(lc_cuda_ce_chunk_rows(256000), 512);
    cr_expect_eq(lc_cuda_ce_chunk_rows(1 << 22), 32, "fewer than 128 fit: not rounded");
}

/* a target outside the vocabulary is an error, not a wrong loss: through the
 * backend's table it is kept and reported by sync (naming the kernel), and
 * the backend works afterwards */
Test(cuda, lm_head_ce_bad_target)
{
    be_or_skip();
    for (int k = 0; k < 2; k++) { /* f32: the backend; bf16: lc_cuda_lm_head_ce */
        op_run r = {.op = find_op("lm_head_ce"), .c = &CE_CASES[0],
                    .dt = k ? LC_DTYPE_BF16 : LC_DTYPE_F32};
        r.op->decl(&r);
        cr_assert(alloc_case(&r));
        ((int32_t *)tb(&r, "targets")->h)[7] = (int32_t)CE_CASES[0].a[3];
        const char *why = upload_inputs(&r, true);
        cr_assert_null(why, "%s", why);
        r.phase = 1;
        int rc = ce_dev(&r);
        why = dev_check(rc);
        cr_assert_not_null(why, "the bad target was not reported (%s)", k ? "bf16" : "f32");
        cr_expect(strstr(why, "target") != NULL, "%s", why);
        if (!k) {
            cr_expect(strstr(why, "lm_head_ce") != NULL, "%s", why);
            cr_expect(isnan(*(double *)D(&r, "loss+dx")), "a failed loss is NaN");
        }
        free_case(&r);
    }
    g_pass = g_fail = 0; /* usable after the failure */
    run_op(find_op("lm_head_ce"), 0);
    cr_expect_eq(g_fail, 0, "lm_head_ce after a reported failure: %d rows failed", g_fail);
    cr_expect_gt(g_pass, 0);
    done();
}

/* the backend's memory functions: round trips, device-to-device copy, zero
 * fill, an allocation that cannot succeed, a second backend refused */
Test(cuda, backend_memory)
{
    be_or_skip();
    lc_error err = {{0}};
    lc_backend *again = NULL;
    cr_expect_neq(lc_backend_cuda_create(&again, 0, LC_DTYPE_F32, &err), 0);
    cr_expect(strstr(err.msg, "already exists") != NULL, "%s", err.msg);
    enum { N = 1000 };
    float h[N], back[N];
    for (int i = 0; i < N; i++)
        h[i] = frand();
    float *a = dalloc(N * sizeof(float)), *b = dalloc(N * sizeof(float));
    cr_assert(a && b);
    g_be->upload(g_be, a, h, sizeof h);
    g_be->copy(g_be, b, a, sizeof h);
    g_be->memset0(g_be, a + 100, 50 * sizeof(float));
    g_be->download(g_be, back, b, sizeof back); /* waits for the copy */
    cr_expect_eq(memcmp(back, h, sizeof h), 0, "upload → copy → download is not the identity");
    g_be->download(g_be, back, a, sizeof back);
    for (int i = 0; i < N; i++)
        cr_expect_eq(back[i], i >= 100 && i < 150 ? 0.0f : h[i], "[%d] after memset0", i);
    cr_expect_eq(g_be->sync(g_be, &err), 0, "%s", err.msg);
    size_t f = 0, t = 0;
    g_be->mem_info(g_be, &f, &t);
    cr_expect_null(g_be->alloc(g_be, (size_t)1 << 60, &err));
    cr_expect(strstr(err.msg, "out of device memory: wanted 1099511627776.0 MiB, free") != NULL,
              "%s", err.msg);
    char want[96];
    snprintf(want, sizeof want, "of %.1f MiB", (double)t / (1024.0 * 1024.0));
    cr_expect(strstr(err.msg, want) != NULL, "%s (want \"%s\")", err.msg, want);
    cr_expect_eq(g_be->sync(g_be, &err), 0, "a refused allocation is not a pending failure: %s",
                 err.msg);
    /* a failing kernel entry: reported by the next sync, once */
    lc_attn_shape s = {.B = 1, .T = 4, .H = 3, .KV = 2, .D = 8, .scale = 1};
    DEV->attention_fwd(&s, a, a, a, b, b, NULL);
    DEV->scale(N, 2, a, b); /* later work still runs; the first failure is the one kept */
    cr_expect_neq(g_be->sync(g_be, &err), 0);
    cr_expect(strstr(err.msg, "kernel attention_fwd") != NULL && strstr(err.msg, "3 query heads"),
              "%s", err.msg);
    cr_expect_eq(g_be->sync(g_be, &err), 0, "reported twice: %s", err.msg);
    g_be->download(g_be, back, b, sizeof back);
    cr_expect_eq(g_be->sync(g_be, &err), 0, "%s", err.msg);
    for (int i = 0; i < N; i++)
        cr_expect_eq(back[i], 2 * (i >= 100 && i < 150 ? 0.0f : h[i]), "[%d] after scale", i);
    done();
}

/* gemm "nt 40x48x56" (dtypes dts) three times: *misses and *hits are the
 * plan cache's counts over them. */
static void gemm_same_shape_3x(int dts, int64_t *misses, int64_t *hits)
{
    const opcase same = {"nt 40x48x56", {0, 1, 40, 48, 56, 0}, 0, 0, dts};
    const op_def op = {"gemm", &same, 1, 1, 0, 0, gemm_decl, NULL, gemm_cpu, gemm_dev};
    int64_t h0, m0, h1, m1;
    lc_cuda_gemm_cache_stats(g_ctx, &h0, &m0);
    for (int i = 0; i < 3; i++)
        run_op(&op, 0);
    lc_cuda_gemm_cache_stats(g_ctx, &h1, &m1);
    *misses = m1 - m0;
    *hits = h1 - h0;
}

Test(cuda, gemm_plan_cache)
{
    be_or_skip();
    int64_t m, h;
    gemm_same_shape_3x(1, &m, &h);
    /* the ld's and the pointers' alignment are part of the key; allocations
     * are 256-aligned, so the same call hits from the second time on */
    cr_expect_eq(m, 1, "misses %lld", (long long)m);
    cr_expect_eq(h, 2, "hits %lld", (long long)h);
    /* more shapes than the cache holds (128): eviction keeps results right,
     * and the first shape, least recently used, was evicted (misses again) */
    for (int i = 0; i < 140; i++) {
        const opcase ci = {"evict", {i & 1, 0, 8 + i, 16, 24, 1}, 0, 0, 2};
        const op_def opi = {"gemm", &ci, 1, 1, 0, 0, gemm_decl, NULL, gemm_cpu, gemm_dev};
        run_op(&opi, 0);
    }
    gemm_same_shape_3x(1, &m, &h);
    cr_expect_eq(m, 1, "misses %lld: the first shape was not evicted", (long long)m);
    cr_expect_eq(h, 2, "hits %lld", (long long)h);
    cr_expect_eq(g_fail, 0, "%d gemm rows failed", g_fail);
    done();
}

/* Run by the ctest cuda_sim_gemm_algo_fallback with LC_SIM_ALGO_FAIL=1 (the
 * simulator's cuBLASLt refuses the heuristic's first algorithm): each plan
 * falls back to the next once and keeps it, and the results stay right.
 * With LC_SIM_ALGO_FAIL=all (cuda_sim_gemm_algo_fail_all) every row fails. */
Test(cuda, gemm_algo_fallback)
{
    be_or_skip();
    if (strcmp(g_backend, "sim") || !getenv("LC_SIM_ALGO_FAIL"))
        cr_skip_test("needs the simulator with LC_SIM_ALGO_FAIL set");
    lc_cuda_ctx *c = g_ctx;
    int64_t f0 = lc_cuda_gemm_fallbacks(c), m, h;
    gemm_same_shape_3x(2, &m, &h);
    cr_expect_eq(m, 1, "misses %lld", (long long)m);
    cr_expect_eq(lc_cuda_gemm_fallbacks(c) - f0, 1, "fallbacks %lld (one per plan)",
                 (long long)(lc_cuda_gemm_fallbacks(c) - f0));
    run_op(find_op("weight_matmul"), 3); /* tiles: several plans, forward and backward */
    cr_expect_eq(g_fail, 0, "%d rows failed", g_fail);
    done();
}

#endif

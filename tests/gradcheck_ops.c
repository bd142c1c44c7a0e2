/* gradcheck_ops.c — every autograd op's backward against central finite
 * differences, in double precision (linked against lorac_f64, where lc_real
 * is double), plus forward checks of attention and RMSNorm against
 * references written here.
 *
 * Harness: a test registers the op's inputs as "leaves" (a master copy that
 * the finite differences perturb, copied into the op's input tensor before
 * every forward, so the in-place RoPE always starts from fresh values) and a
 * forward callback that runs the op on a freshly reset tape. The op's outputs
 * are reduced to a scalar L = Σ_k Σ_j w_k[j]·out_k[j] with fixed random
 * weights by a small test-local tape op (weighted_sum, recorded with the
 * public lc_tape_record), so lc_tape_backward runs the op's real backward.
 * The analytic gradient of every leaf is then compared norm-wise with
 * (L(x+h) − L(x−h)) / 2h, each L recomputed with recording off after
 * lc_tape_reset — which also restarts op_counter, so LoRA dropout draws the
 * same masks in every evaluation.
 *
 * Activation leaves are plain requires_grad tensors whose gradient comes
 * from the tape's pool, as in the model; LoRA A/B are parameters with their
 * own grad buffer, prefilled with random values so the check also proves
 * that backward accumulates (+=) instead of overwriting. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ops.h"
#include "tests/helpers.h"

_Static_assert(sizeof(lc_real) == sizeof(double), "gradcheck needs the LC_REAL_DOUBLE build");

#define GC_H 1e-6        /* central-difference step */
#define GC_TOL 1e-6      /* norm-wise relative error allowed */
#define GC_MAX_LEAVES 10
#define GC_MAX_OUT 4
#define GC_MAX_ALLOCS 64

/* ---- harness ---- */

typedef struct gc_leaf {
    lc_tensor t;       /* what the op sees */
    lc_real *base;     /* master values (perturbed by finite differences) */
    lc_real *pgrad;    /* parameter: its grad buffer */
    lc_real *grad0;    /* parameter: values pgrad holds before backward */
    const char *name;
    bool param;
    bool frozen;       /* requires_grad off: an input that is not differentiated */
    int64_t max_fd;    /* 0: difference every element; else a random subset */
} gc_leaf;

typedef struct gc gc;
/* Runs the op under test on g->tape, fills out[], returns how many. */
typedef int (*gc_forward_fn)(gc *g, lc_tensor **out);

struct gc {
    const char *name;
    lc_arena arena;
    lc_tape tape;
    gc_leaf leaf[GC_MAX_LEAVES];
    int n_leaf;
    gc_forward_fn forward;
    void *user;
    bool scalar_out;        /* out[0] is the loss itself (lm_head_ce) */
    bool training;
    uint64_t dropout_seed;
    double tol;
    lc_real *w[GC_MAX_OUT]; /* weights of the scalar reduction */
    int64_t w_n[GC_MAX_OUT];
    int n_w;
    uint64_t rng;
    void *allocs[GC_MAX_ALLOCS];
    int n_allocs;
};

/* Uniform in [-1, 1). */
static double gc_uniform(gc *g)
{
    return (double)(lc_test_splitmix64(&g->rng) >> 11) * 0x1.0p-53 * 2.0 - 1.0;
}

static void *gc_alloc(gc *g, size_t bytes)
{
    cr_assert_lt(g->n_allocs, GC_MAX_ALLOCS);
    void *p = calloc(1, bytes ? bytes : 1);
    cr_assert_not_null(p);
    g->allocs[g->n_allocs++] = p;
    return p;
}

/* n values uniform in [offset − scale, offset + scale). */
static lc_real *gc_rand(gc *g, int64_t n, double offset, double scale)
{
    lc_real *p = gc_alloc(g, (size_t)n * sizeof(lc_real));
    for (int64_t i = 0; i < n; i++)
        p[i] = offset + scale * gc_uniform(g);
    return p;
}

static void gc_init(gc *g, const char *name, gc_forward_fn forward, void *user, uint64_t seed)
{
    memset(g, 0, sizeof *g);
    g->name = name;
    g->forward = forward;
    g->user = user;
    g->tol = GC_TOL;
    g->rng = seed;
    lc_error err;
    cr_assert_eq(lc_arena_init(&g->arena, "gradcheck step", (size_t)256 << 20, &err), 0,
                 "%s", err.msg);
    cr_assert_eq(lc_tape_init(&g->tape, &g->arena, (size_t)64 << 20, &err), 0, "%s", err.msg);
}

/* Frozen products with their LoRA terms in one backend call (backend.h
 * linear_lora), here as the two products per linear the op would run
 * itself. */
static void ref_linear_lora(const lc_real *x, int64_t N, int n, const lc_weight *const *W,
                            const lc_lora_term *lt, lc_real beta, lc_real *const *y,
                            lc_real *scratch)
{
    for (int i = 0; i < n; i++) {
        lc_k_weight_matmul(x, N, W[i], beta, y[i], scratch);
        lc_k_gemm(false, true, N, W[i]->rows, lt[i].R, lt[i].scale, lt[i].a, lt[i].lda, lt[i].w,
                  lt[i].R, 1, y[i], W[i]->rows);
    }
}

static void ref_linear_lora_grad(const lc_real *const *dy, int64_t N, int n,
                                 const lc_weight *const *W, const lc_lora_term *lt, lc_real beta,
                                 lc_real *dx, lc_real *scratch)
{
    for (int i = 0; i < n; i++) {
        lc_k_weight_matmul_grad(dy[i], N, W[i], i == 0 ? beta : 1, dx, scratch);
        lc_k_gemm(false, false, N, W[i]->cols, lt[i].R, lt[i].scale, lt[i].a, lt[i].lda,
                  lt[i].w, W[i]->cols, 1, dx, W[i]->cols);
    }
}

/* Moves g onto a copy of the CPU backend whose linears hand their LoRA
 * terms to the backend with the frozen product (on: backend.h linear_lora,
 * as the bf16 backend does), or back onto the CPU backend. */
static void gc_lora_term(gc *g, bool on)
{
    static lc_backend be;
    be = *lc_backend_cpu();
    be.linear_lora = ref_linear_lora;
    be.linear_lora_grad = ref_linear_lora_grad;
    lc_tape_free(&g->tape);
    lc_error err;
    cr_assert_eq(lc_tape_init_on(&g->tape, on ? &be : lc_backend_cpu(), &g->arena, &g->arena,
                                 (size_t)64 << 20, &err),
                 0, "%s", err.msg);
}

static void gc_free(gc *g)
{
    lc_tape_free(&g->tape);
    lc_arena_free(&g->arena);
    for (int i = 0; i < g->n_allocs; i++)
        free(g->allocs[i]);
    g->n_allocs = 0;
}

/* A [rows, cols] input with values uniform in ±scale. param: a trainable
 * tensor with its own grad buffer (LoRA A/B); else an activation. */
static lc_tensor *gc_leaf_add(gc *g, const char *name, int64_t rows, int64_t cols, bool param,
                              double scale)
{
    cr_assert_lt(g->n_leaf, GC_MAX_LEAVES);
    gc_leaf *l = &g->leaf[g->n_leaf++];
    memset(l, 0, sizeof *l);
    int64_t shape[2] = {rows, cols};
    lc_tensor_set_shape(&l->t, 2, shape);
    int64_t n = l->t.numel;
    l->t.data = gc_alloc(g, (size_t)n * sizeof(lc_real));
    l->base = gc_rand(g, n, 0, scale);
    l->name = name;
    l->param = param;
    if (param) {
        l->pgrad = gc_alloc(g, (size_t)n * sizeof(lc_real));
        l->grad0 = gc_rand(g, n, 0, 1);
    }
    return &l->t;
}

static gc_leaf *gc_leaf_of(gc *g, const lc_tensor *t)
{
    for (int i = 0; i < g->n_leaf; i++)
        if (&g->leaf[i].t == t)
            return &g->leaf[i];
    cr_assert_fail("tensor is not a leaf");
    return NULL;
}

/* Fresh tape, fresh input values, recording on or off. */
static void gc_prepare(gc *g, bool record)
{
    lc_tape_reset(&g->tape);
    g->tape.grad_enabled = record;
    g->tape.training = g->training;
    g->tape.dropout_seed = g->dropout_seed;
    for (int i = 0; i < g->n_leaf; i++) {
        gc_leaf *l = &g->leaf[i];
        memcpy(l->t.data, l->base, (size_t)l->t.numel * sizeof(lc_real));
        l->t.requires_grad = !l->frozen;
        l->t.is_param = l->param;
        l->t.grad = l->param ? l->pgrad : NULL;
    }
}

static void gc_ensure_weights(gc *g, lc_tensor **out, int n)
{
    cr_assert(n >= 1 && n <= GC_MAX_OUT);
    if (g->n_w == 0) {
        g->n_w = n;
        for (int k = 0; k < n; k++) {
            g->w_n[k] = out[k]->numel;
            g->w[k] = gc_rand(g, out[k]->numel, 0, 1);
        }
    }
    cr_assert_eq(g->n_w, n);
    for (int k = 0; k < n; k++)
        cr_assert_eq(g->w_n[k], out[k]->numel);
}

static double gc_wsum_value(const gc *g, lc_tensor **out, int n)
{
    double s = 0;
    for (int k = 0; k < n; k++)
        for (int64_t j = 0; j < out[k]->numel; j++)
            s += (double)g->w[k][j] * (double)out[k]->data[j];
    return s;
}

/* d L / d out_k = dL · w_k. */
static void wsum_backward(lc_tape *t, lc_node *node)
{
    const gc *g = node->ctx;
    lc_real dy = node->out[0]->grad[0];
    for (int k = 0; k < node->n_in; k++) {
        lc_real *gk = lc_tape_grad(t, node->in[k]);
        if (gk)
            lc_k_axpy(node->in[k]->numel, dy, g->w[k], gk);
    }
}

static lc_tensor *gc_wsum_op(gc *g, lc_tensor **out, int n)
{
    int64_t one = 1;
    lc_tensor *loss = lc_tape_tensor(&g->tape, 1, &one);
    loss->requires_grad = false;
    loss->grad = NULL;
    loss->is_param = false;
    loss->data[0] = (lc_real)gc_wsum_value(g, out, n);
    if (lc_tape_needs_grad(&g->tape, out, n))
        lc_tape_record(&g->tape, "gradcheck_wsum", wsum_backward, out, n, &loss, 1)->ctx = g;
    return loss;
}

/* L at the current master values, recording off. Runs on one thread: the
 * thousands of tiny forwards of a check spend their time in OpenMP barriers
 * otherwise, which on a loaded two-core machine turns seconds into minutes.
 * The analytic pass (gc_check) keeps every thread, so the threaded paths of
 * forward and backward are still the ones checked. */
static double gc_eval(gc *g)
{
    lc_tensor *out[GC_MAX_OUT];
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    gc_prepare(g, false);
    int n = g->forward(g, out);
    gc_ensure_weights(g, out, n);
    double L = g->scalar_out ? (double)out[0]->data[0] : gc_wsum_value(g, out, n);
    omp_set_num_threads(threads);
    return L;
}

/* Runs forward + backward once, then finite differences for every leaf.
 * Returns the worst norm-wise relative error over the leaves. */
static double gc_check(gc *g)
{
    /* analytic */
    for (int i = 0; i < g->n_leaf; i++)
        if (g->leaf[i].param)
            memcpy(g->leaf[i].pgrad, g->leaf[i].grad0,
                   (size_t)g->leaf[i].t.numel * sizeof(lc_real));
    gc_prepare(g, true);
    lc_tensor *out[GC_MAX_OUT];
    int n = g->forward(g, out);
    gc_ensure_weights(g, out, n);
    lc_tensor *loss = g->scalar_out ? out[0] : gc_wsum_op(g, out, n);
    cr_assert_eq(loss->numel, 1);
    cr_assert(loss->requires_grad, "%s: nothing was recorded", g->name);
    double L0 = (double)loss->data[0];
    lc_tape_backward(&g->tape, loss);

    double *ana[GC_MAX_LEAVES] = {0};
    for (int i = 0; i < g->n_leaf; i++) {
        gc_leaf *l = &g->leaf[i];
        int64_t n_el = l->t.numel;
        if (l->frozen) {
            cr_expect_null(l->t.grad, "%s: frozen %s got a gradient", g->name, l->name);
            continue;
        }
        ana[i] = malloc((size_t)n_el * sizeof(double));
        cr_assert_not_null(ana[i]);
        for (int64_t j = 0; j < n_el; j++) {
            if (l->param)
                ana[i][j] = (double)l->pgrad[j] - (double)l->grad0[j];
            else
                ana[i][j] = l->t.grad ? (double)l->t.grad[j] : 0.0;
        }
    }

    /* Recording must not change the forward (dropout masks included). */
    double L1 = gc_eval(g);
    cr_expect_leq(fabs(L1 - L0), 1e-13 * fmax(1.0, fabs(L0)),
                  "%s: loss with recording %.17g, without %.17g", g->name, L0, L1);

    double worst = 0;
    for (int i = 0; i < g->n_leaf; i++) {
        gc_leaf *l = &g->leaf[i];
        int64_t n_el = l->t.numel;
        if (l->frozen)
            continue;
        int64_t m = (l->max_fd > 0 && l->max_fd < n_el) ? l->max_fd : n_el;
        int64_t *idx = malloc((size_t)n_el * sizeof(int64_t));
        double *a = malloc((size_t)m * sizeof(double));
        double *fd = malloc((size_t)m * sizeof(double));
        cr_assert(idx && a && fd);
        for (int64_t j = 0; j < n_el; j++)
            idx[j] = j;
        for (int64_t j = 0; j < m && m < n_el; j++) { /* partial Fisher–Yates */
            int64_t r = j + (int64_t)(lc_test_splitmix64(&g->rng) % (uint64_t)(n_el - j));
            int64_t tmp = idx[j];
            idx[j] = idx[r];
            idx[r] = tmp;
        }
        for (int64_t s = 0; s < m; s++) {
            int64_t j = idx[s];
            lc_real orig = l->base[j];
            l->base[j] = orig + GC_H;
            double lp = gc_eval(g);
            l->base[j] = orig - GC_H;
            double lm = gc_eval(g);
            l->base[j] = orig;
            fd[s] = (lp - lm) / (2 * GC_H);
            a[s] = ana[i][j];
        }
        double err = lc_test_rel_err_f64(a, fd, (size_t)m);
        double norm = 0;
        for (int64_t s = 0; s < m; s++)
            norm += fd[s] * fd[s];
        cr_log_info("%-34s d%-9s rel err %.3e  (|g| %.3e, %lld of %lld elements)", g->name,
                    l->name, err, sqrt(norm), (long long)m, (long long)n_el);
        cr_expect_gt(sqrt(norm), 1e-6, "%s: d%s is (nearly) zero, the check is vacuous",
                     g->name, l->name);
        cr_expect_lt(err, g->tol, "%s: d%s rel err %.3e >= %.1e", g->name, l->name, err,
                     g->tol);
        if (err > worst)
            worst = err;
        free(idx);
        free(a);
        free(fd);
        free(ana[i]);
    }
    return worst;
}

/* ---- fused LoRA linears ---- */

typedef struct lin_case {
    lc_linear_input in;
    lc_weight W[GC_MAX_OUT];
    lc_lora_adapter lora[GC_MAX_OUT];
    lc_linear lin[GC_MAX_OUT];
    lc_tensor *residual;
    int n;
} lin_case;

static int fwd_linears(gc *g, lc_tensor **out)
{
    lin_case *c = g->user;
    lc_op_linears(&g->tape, &c->in, c->lin, c->n, c->residual, out);
    return c->n;
}

/* Frozen weight [rows, cols] in F64 (native: direct GEMM) or F32 (converted
 * tile by tile; exact, since every float is a double). */
static void make_weight(gc *g, lc_weight *W, int64_t rows, int64_t cols, lc_dtype dt,
                        double scale)
{
    int64_t n = rows * cols;
    *W = (lc_weight){.rows = rows, .cols = cols, .dtype = dt}; /* nf4 etc. NULL */
    if (dt == LC_DTYPE_F64) {
        double *p = gc_alloc(g, (size_t)n * sizeof(double));
        for (int64_t i = 0; i < n; i++)
            p[i] = scale * gc_uniform(g);
        W->data = p;
    } else {
        cr_assert_eq(dt, LC_DTYPE_F32);
        float *p = gc_alloc(g, (size_t)n * sizeof(float));
        for (int64_t i = 0; i < n; i++)
            p[i] = (float)(scale * gc_uniform(g));
        W->data = p;
    }
}

static const char *const A_NAMES[GC_MAX_OUT] = {"A0", "A1", "A2", "A3"};
static const char *const B_NAMES[GC_MAX_OUT] = {"B0", "B1", "B2", "B3"};

/* Linear i: W [out, in] of dtype dt, optional bias, LoRA of rank R (0: none). */
static void add_linear(gc *g, lin_case *c, int i, int64_t out, int64_t in, lc_dtype dt,
                       bool bias, int64_t R, double scale, double dropout)
{
    make_weight(g, &c->W[i], out, in, dt, 1.0 / sqrt((double)in));
    c->lin[i].W = &c->W[i];
    c->lin[i].bias = bias ? gc_rand(g, out, 0, 1) : NULL;
    c->lin[i].lora = NULL;
    if (R > 0) {
        /* B is random, not zero as at LoRA init: every path must carry signal. */
        c->lora[i].A = gc_leaf_add(g, A_NAMES[i], R, in, true, 1.0);
        c->lora[i].B = gc_leaf_add(g, B_NAMES[i], out, R, true, 1.0);
        c->lora[i].scale = (lc_real)scale;
        c->lora[i].dropout = dropout;
        c->lin[i].lora = &c->lora[i];
    }
    if (c->n < i + 1)
        c->n = i + 1;
}

/* The input is rmsnorm(x) for an N x C leaf x, weights drawn around 1. */
static void rmsnorm_input(gc *g, lin_case *c, int64_t N, int64_t C)
{
    c->in.kind = LC_INPUT_RMSNORM;
    c->in.x = gc_leaf_add(g, "x", N, C, false, 1.0);
    c->in.norm_w = gc_rand(g, C, 1.0, 0.4);
    c->in.eps = 1e-6;
}

static void check_plain(const char *name, lc_dtype dt)
{
    gc g;
    lin_case c;
    memset(&c, 0, sizeof c);
    gc_init(&g, name, fwd_linears, &c, 11);
    const int64_t N = 6, in = 7, out = 5;
    c.in.kind = LC_INPUT_PLAIN;
    c.in.x = gc_leaf_add(&g, "x", N, in, false, 1.0);
    c.residual = gc_leaf_add(&g, "residual", N, out, false, 1.0);
    add_linear(&g, &c, 0, out, in, dt, true, 3, 2.0, 0.0);
    gc_check(&g);
    gc_free(&g);
}

Test(gradcheck_linears, plain_f64_weight_bias_lora_residual)
{
    check_plain("linears PLAIN W=F64", LC_DTYPE_F64);
}

Test(gradcheck_linears, plain_f32_weight_bias_lora_residual)
{
    check_plain("linears PLAIN W=F32", LC_DTYPE_F32);
}

/* in = 4096 makes the F32 weight span three conversion tiles (2^18 / 4096 =
 * 64 rows per tile, 130 rows). x and A are differenced on random subsets. */
Test(gradcheck_linears, plain_f32_weight_several_tiles)
{
    gc g;
    lin_case c;
    memset(&c, 0, sizeof c);
    gc_init(&g, "linears PLAIN W=F32 3 tiles", fwd_linears, &c, 12);
    const int64_t N = 2, in = 4096, out = 130;
    c.in.kind = LC_INPUT_PLAIN;
    c.in.x = gc_leaf_add(&g, "x", N, in, false, 1.0);
    c.residual = gc_leaf_add(&g, "residual", N, out, false, 1.0);
    add_linear(&g, &c, 0, out, in, LC_DTYPE_F32, true, 2, 2.0, 0.0);
    gc_leaf_of(&g, c.in.x)->max_fd = 150;
    gc_leaf_of(&g, c.lora[0].A)->max_fd = 150;
    gc_leaf_of(&g, c.lora[0].B)->max_fd = 150;
    gc_check(&g);
    gc_free(&g);
}

/* q/k/v-like: three linears share rmsnorm(x); the middle one has no LoRA and
 * an F32 weight (mixed dtypes share the weight scratch). */
Test(gradcheck_linears, rmsnorm_three_linears)
{
    gc g;
    lin_case c;
    memset(&c, 0, sizeof c);
    gc_init(&g, "linears RMSNORM x3", fwd_linears, &c, 13);
    const int64_t N = 5, C = 8;
    rmsnorm_input(&g, &c, N, C);
    add_linear(&g, &c, 0, 8, C, LC_DTYPE_F64, true, 2, 2.0, 0.0);
    add_linear(&g, &c, 1, 4, C, LC_DTYPE_F32, false, 0, 0.0, 0.0);
    add_linear(&g, &c, 2, 4, C, LC_DTYPE_F64, false, 3, 0.5, 0.0);
    gc_check(&g);
    gc_free(&g);
}

static void expect_dropout_active(gc *g)
{
    double on = gc_eval(g);
    g->training = false;
    double off = gc_eval(g);
    g->training = true;
    cr_expect_gt(fabs(on - off), 1e-3, "%s: dropout changed nothing (%.17g vs %.17g)",
                 g->name, on, off);
}

/* A gated input's variants: the A gradients wait for f(x) from the gate's
 * backward (ops.c defer_a), through each of its paths. */
typedef struct gated_variant {
    int linears;      /* 1: down_proj with the residual; 2: two LoRA linears (stacked A) */
    double dropout;   /* on every adapter */
    bool frozen_up;   /* up needs no gradient (the kernel's du NULL path) */
    bool lora_term;   /* see gc_lora_term */
} gated_variant;

/* down_proj-like: act(gate)·up through W [C, FF], plus the residual. */
static void check_gated_linear(const char *name, lc_input_kind kind, uint64_t seed,
                               gated_variant v)
{
    gc g;
    lin_case c;
    memset(&c, 0, sizeof c);
    gc_init(&g, name, fwd_linears, &c, seed);
    if (v.lora_term)
        gc_lora_term(&g, true);
    const int64_t N = 4, FF = 10, C = 6;
    c.in.kind = kind;
    c.in.x = gc_leaf_add(&g, "gate", N, FF, false, 2.0);
    c.in.up = gc_leaf_add(&g, "up", N, FF, false, 1.0);
    if (v.frozen_up)
        gc_leaf_of(&g, c.in.up)->frozen = true;
    if (v.linears == 1)
        c.residual = gc_leaf_add(&g, "residual", N, C, false, 1.0);
    add_linear(&g, &c, 0, C, FF, LC_DTYPE_F64, true, 3, 2.0, v.dropout);
    if (v.linears == 2)
        add_linear(&g, &c, 1, 4, FF, LC_DTYPE_F64, false, 2, 0.5, v.dropout);
    if (v.dropout > 0) {
        g.training = true;
        g.dropout_seed = seed * 31;
    }
    gc_check(&g);
    if (v.dropout > 0)
        expect_dropout_active(&g);
    if (v.lora_term) { /* the same outputs (bias included) as the op's own products */
        double term = gc_eval(&g);
        gc_lora_term(&g, false);
        double usual = gc_eval(&g);
        cr_expect_leq(fabs(term - usual), 1e-13 * fabs(usual), "%s: %.17g vs %.17g", name,
                      term, usual);
    }
    gc_free(&g);
}

Test(gradcheck_linears, swiglu_lora_residual)
{
    check_gated_linear("linears SWIGLU", LC_INPUT_SWIGLU, 14, (gated_variant){1, 0, false, false});
}

Test(gradcheck_linears, swiglu_lora_dropout)
{
    check_gated_linear("linears SWIGLU dropout .3", LC_INPUT_SWIGLU, 18,
                       (gated_variant){1, 0.3, false, false});
}

Test(gradcheck_linears, swiglu_two_linears_stacked)
{
    check_gated_linear("linears SWIGLU x2", LC_INPUT_SWIGLU, 19, (gated_variant){2, 0, false, false});
}

/* The LoRA terms handed to the backend with the frozen products (backend.h
 * linear_lora, as on the bf16 backend): stacked, each linear its own with
 * dropout (the backward's terms then stay the op's), and with a residual. */
Test(gradcheck_linears, swiglu_linears_lora_term)
{
    const gated_variant v[3] = {{2, 0, false, true}, {2, 0.2, false, true}, {1, 0, false, true}};
    const char *names[3] = {"linears SWIGLU x2 LoRA term", "linears SWIGLU x2 dropout .2 LoRA term",
                            "linears SWIGLU residual LoRA term"};
    for (int i = 0; i < 3; i++)
        check_gated_linear(names[i], LC_INPUT_SWIGLU, 22 + (uint64_t)i, v[i]);
}

Test(gradcheck_linears, swiglu_frozen_up)
{
    check_gated_linear("linears SWIGLU up frozen", LC_INPUT_SWIGLU, 20,
                       (gated_variant){1, 0, true, false});
}

/* Gemma's down_proj */
Test(gradcheck_linears, geglu_tanh_lora_residual)
{
    check_gated_linear("linears GEGLU_TANH", LC_INPUT_GEGLU_TANH, 15,
                       (gated_variant){1, 0, false, false});
}

Test(gradcheck_linears, geglu_tanh_two_linears_dropout)
{
    check_gated_linear("linears GEGLU_TANH x2 dropout .2", LC_INPUT_GEGLU_TANH, 21,
                       (gated_variant){2, 0.2, false, false});
}

Test(gradcheck_linears, plain_lora_dropout)
{
    gc g;
    lin_case c;
    memset(&c, 0, sizeof c);
    gc_init(&g, "linears PLAIN dropout 0.3", fwd_linears, &c, 15);
    const int64_t N = 6, in = 16, out = 5;
    c.in.kind = LC_INPUT_PLAIN;
    c.in.x = gc_leaf_add(&g, "x", N, in, false, 1.0);
    add_linear(&g, &c, 0, out, in, LC_DTYPE_F64, true, 3, 2.0, 0.3);
    g.training = true;
    g.dropout_seed = 0x5eed1234u;
    gc_check(&g);
    expect_dropout_active(&g);
    gc_free(&g);
}

/* Two LoRA linears on one normed input, each with its own dropout rate and
 * stream (seed per linear), sharing the op's dropout buffer. */
Test(gradcheck_linears, rmsnorm_two_linears_lora_dropout)
{
    gc g;
    lin_case c;
    memset(&c, 0, sizeof c);
    gc_init(&g, "linears RMSNORM x2 dropout .3/.5", fwd_linears, &c, 16);
    const int64_t N = 5, C = 12;
    rmsnorm_input(&g, &c, N, C);
    add_linear(&g, &c, 0, 6, C, LC_DTYPE_F64, false, 2, 2.0, 0.3);
    add_linear(&g, &c, 1, 4, C, LC_DTYPE_F64, true, 3, 1.0, 0.5);
    g.training = true;
    g.dropout_seed = 77;
    gc_check(&g);
    expect_dropout_active(&g);
    gc_free(&g);
}

/* First layer: x comes from the embedding (no gradient), so only the LoRA
 * tensors are differentiated and backward must skip dx entirely (with
 * dropout, whose buffer then serves gA only). */
Test(gradcheck_linears, rmsnorm_input_frozen_lora_dropout)
{
    gc g;
    lin_case c;
    memset(&c, 0, sizeof c);
    gc_init(&g, "linears RMSNORM x frozen dropout", fwd_linears, &c, 17);
    const int64_t N = 5, C = 12;
    rmsnorm_input(&g, &c, N, C);
    gc_leaf_of(&g, c.in.x)->frozen = true;
    add_linear(&g, &c, 0, 6, C, LC_DTYPE_F64, true, 2, 2.0, 0.3);
    add_linear(&g, &c, 1, 4, C, LC_DTYPE_F64, false, 0, 0.0, 0.0);
    add_linear(&g, &c, 2, 4, C, LC_DTYPE_F64, false, 3, 1.0, 0.3);
    g.training = true;
    g.dropout_seed = 99;
    gc_check(&g);
    expect_dropout_active(&g);
    gc_free(&g);
}

/* ---- DoRA linears ---- */

static const char *const M_NAMES[GC_MAX_OUT] = {"m0", "m1", "m2", "m3"};

/* Turns linear i's LoRA into DoRA: a magnitude leaf m [out] around the row
 * norms (so m/c is near 1 but not 1). */
static void add_dora(gc *g, lin_case *c, int i)
{
    int64_t out = c->W[i].rows;
    c->lora[i].m = gc_leaf_add(g, M_NAMES[i], out, 1, true, 0.3);
    lc_real *base = gc_leaf_of(g, c->lora[i].m)->base;
    for (int64_t o = 0; o < out; o++)
        base[o] += 2.0;
}

/* c = ‖W + s·B·A‖ per row, by hand (no kernel), from the leaves' master values. */
static lc_real *naive_norm(gc *g, const lin_case *c, int i)
{
    const lc_weight *W = &c->W[i];
    const lc_lora_adapter *lo = &c->lora[i];
    const lc_real *A = gc_leaf_of(g, lo->A)->base, *B = gc_leaf_of(g, lo->B)->base;
    int64_t out = W->rows, in = W->cols, R = lo->A->shape[0];
    lc_real *n = gc_alloc(g, (size_t)out * sizeof(lc_real));
    lc_real *row = malloc((size_t)in * sizeof(lc_real));
    for (int64_t o = 0; o < out; o++) {
        lc_weight_rows_to_real(W, o, o + 1, row);
        double ss = 0;
        for (int64_t k = 0; k < in; k++) {
            double v = row[k];
            for (int64_t r = 0; r < R; r++)
                v += lo->scale * B[o * R + r] * A[r * in + k];
            ss += v * v;
        }
        n[o] = sqrt(ss);
    }
    free(row);
    return n;
}

/* PEFT detaches c, so its gradient is not the finite difference of the op as
 * a function of A and B. The check therefore holds c fixed at its value for
 * the unperturbed A, B (adapter.norm, computed here by hand); dora_detached
 * then proves the op's own c gives the same forward and gradients bitwise. */
static void check_dora(const char *name, lc_input_kind kind, double dropout, bool residual,
                       uint64_t seed)
{
    gc g;
    lin_case c;
    memset(&c, 0, sizeof c);
    gc_init(&g, name, fwd_linears, &c, seed);
    const int64_t N = 5, C = 12;
    if (kind == LC_INPUT_RMSNORM) {
        rmsnorm_input(&g, &c, N, C);
        add_linear(&g, &c, 0, 6, C, LC_DTYPE_F32, true, 3, 2.0, dropout);
        add_linear(&g, &c, 1, 4, C, LC_DTYPE_F64, false, 0, 0.0, 0.0);
        add_linear(&g, &c, 2, 4, C, LC_DTYPE_F64, false, 2, 0.5, dropout);
        add_dora(&g, &c, 0);
        add_dora(&g, &c, 2);
    } else {
        c.in.kind = LC_INPUT_PLAIN;
        c.in.x = gc_leaf_add(&g, "x", N, C, false, 1.0);
        if (residual)
            c.residual = gc_leaf_add(&g, "residual", N, 7, false, 1.0);
        add_linear(&g, &c, 0, 7, C, LC_DTYPE_F64, true, 3, 2.0, dropout);
        add_dora(&g, &c, 0);
    }
    for (int i = 0; i < c.n; i++)
        if (c.lora[i].m)
            c.lora[i].norm = naive_norm(&g, &c, i);
    if (dropout > 0) {
        g.training = true;
        g.dropout_seed = seed * 7919;
    }
    gc_check(&g);
    if (dropout > 0)
        expect_dropout_active(&g);
    gc_free(&g);
}

Test(gradcheck_dora, plain_bias_residual) { check_dora("DoRA PLAIN residual", LC_INPUT_PLAIN, 0, true, 31); }
Test(gradcheck_dora, plain_dropout) { check_dora("DoRA PLAIN dropout .3", LC_INPUT_PLAIN, 0.3, false, 32); }
Test(gradcheck_dora, rmsnorm_three_linears_f32_weight) { check_dora("DoRA RMSNORM x3", LC_INPUT_RMSNORM, 0, false, 33); }
Test(gradcheck_dora, rmsnorm_three_linears_dropout) { check_dora("DoRA RMSNORM x3 dropout .3", LC_INPUT_RMSNORM, 0.3, false, 34); }

/* The op's own c (the tiled kernel, every forward) against the hand-computed
 * one: the same outputs and the same gradients — so no gradient flows
 * through c — on an F32 weight spanning three conversion tiles. */
Test(gradcheck_dora, detached_norm_matches_fixed)
{
    gc g;
    lin_case c;
    memset(&c, 0, sizeof c);
    gc_init(&g, "DoRA detached c", fwd_linears, &c, 35);
    const int64_t N = 3, in = 4096, out = 130;
    c.in.kind = LC_INPUT_PLAIN;
    c.in.x = gc_leaf_add(&g, "x", N, in, false, 1.0);
    add_linear(&g, &c, 0, out, in, LC_DTYPE_F32, true, 2, 2.0, 0.0);
    add_dora(&g, &c, 0);
    lc_real *fixed = naive_norm(&g, &c, 0);
    size_t nbytes[4];
    lc_real *res[2][4];
    for (int pass = 0; pass < 2; pass++) {
        c.lora[0].norm = pass ? fixed : NULL;
        for (int i = 0; i < g.n_leaf; i++)
            if (g.leaf[i].param)
                memset(g.leaf[i].pgrad, 0, (size_t)g.leaf[i].t.numel * sizeof(lc_real));
        gc_prepare(&g, true);
        lc_tensor *o[GC_MAX_OUT];
        int n = g.forward(&g, o);
        gc_ensure_weights(&g, o, n);
        lc_tensor *loss = gc_wsum_op(&g, o, n);
        lc_tape_backward(&g.tape, loss);
        const lc_tensor *parts[4] = {o[0], c.lora[0].A, c.lora[0].B, c.lora[0].m};
        for (int k = 0; k < 4; k++) {
            const lc_real *src = k == 0 ? parts[k]->data : parts[k]->grad;
            nbytes[k] = (size_t)parts[k]->numel * sizeof(lc_real);
            res[pass][k] = gc_alloc(&g, nbytes[k]);
            memcpy(res[pass][k], src, nbytes[k]);
        }
    }
    double worst = 0;
    for (int k = 0; k < 4; k++) {
        double e = lc_test_rel_err_f64(res[0][k], res[1][k], nbytes[k] / sizeof(lc_real));
        worst = fmax(worst, e);
    }
    cr_log_info("DoRA: op's c vs hand-computed c: worst rel diff of y, dA, dB, dm %.3e", worst);
    cr_expect_lt(worst, 1e-13, "the op's c differs from ||W + s·B·A|| (or a gradient flows "
                 "through it): %.3e", worst);
    gc_free(&g);
}

/* ---- rmsnorm ---- */

typedef struct norm_case {
    lc_tensor *x;
    int64_t C;
    const lc_real *w;
    double eps;
} norm_case;

static int fwd_rmsnorm(gc *g, lc_tensor **out)
{
    norm_case *c = g->user;
    out[0] = lc_op_rmsnorm(&g->tape, c->x, c->C, c->w, c->eps);
    return 1;
}

Test(gradcheck_rmsnorm, full_row)
{
    gc g;
    norm_case c;
    gc_init(&g, "rmsnorm C=row", fwd_rmsnorm, &c, 21);
    c.x = gc_leaf_add(&g, "x", 4, 10, false, 1.0);
    c.C = 10;
    c.w = gc_rand(&g, c.C, 1.0, 0.5);
    c.eps = 1e-6;
    gc_check(&g);
    gc_free(&g);
}

/* Qwen3-style q/k norm: x [N, H·D] normalised per head (C = D). */
Test(gradcheck_rmsnorm, per_head)
{
    gc g;
    norm_case c;
    gc_init(&g, "rmsnorm C=D per head", fwd_rmsnorm, &c, 22);
    c.x = gc_leaf_add(&g, "x", 3, 4 * 6, false, 1.0);
    c.C = 6;
    c.w = gc_rand(&g, c.C, 1.0, 0.5);
    c.eps = 1e-6;
    gc_check(&g);
    gc_free(&g);
}

/* x = {1, 2, 3, 4}, eps = 0.5: mean(x²) + eps = 7.5 + 0.5 = 8, rstd = 1/(2√2),
 * so y = w·x/(2√2) = {√2/4, √2/4, 3√2/2, −√2} for w = {1, 1/2, 2, −1}. */
Test(forward, rmsnorm_hand_computed)
{
    lc_arena arena;
    lc_tape tape;
    lc_error err;
    cr_assert_eq(lc_arena_init(&arena, "step", (size_t)1 << 20, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_tape_init(&tape, &arena, (size_t)1 << 20, &err), 0, "%s", err.msg);
    lc_real xd[4] = {1, 2, 3, 4}, w[4] = {1, 0.5, 2, -1};
    lc_tensor x;
    memset(&x, 0, sizeof x);
    int64_t shape[2] = {1, 4};
    lc_tensor_set_shape(&x, 2, shape);
    x.data = xd;
    lc_tensor *y = lc_op_rmsnorm(&tape, &x, 4, w, 0.5);
    const double s2 = sqrt(2.0);
    const double want[4] = {s2 / 4, s2 / 4, 3 * s2 / 2, -s2};
    for (int i = 0; i < 4; i++)
        cr_expect_leq(fabs(y->data[i] - want[i]), 1e-15, "y[%d] = %.17g, want %.17g", i,
                      y->data[i], want[i]);
    cr_expect_eq(tape.n_nodes, 0, "no input requires grad: nothing may be recorded");
    lc_tape_free(&tape);
    lc_arena_free(&arena);
}

/* ---- rope ---- */

typedef struct rope_case {
    lc_tensor *x;
    int heads, D;
    const int32_t *pos;
    const lc_real *cos_sin;
} rope_case;

static int fwd_rope(gc *g, lc_tensor **out)
{
    rope_case *c = g->user;
    out[0] = lc_op_rope(&g->tape, c->x, c->heads, c->D, c->pos, c->cos_sin);
    return 1;
}

Test(gradcheck_rope, positions_and_heads)
{
    gc g;
    rope_case c;
    gc_init(&g, "rope (in place)", fwd_rope, &c, 31);
    enum { N = 6, HEADS = 3, D = 8, P = 8 };
    static const int32_t pos[N] = {0, 1, 2, 5, 7, 3};
    lc_real *cs = gc_alloc(&g, (size_t)P * D * sizeof(lc_real));
    for (int p = 0; p < P; p++)
        for (int i = 0; i < D / 2; i++) {
            double theta = pow(10000.0, -2.0 * i / D);
            cs[p * D + i] = cos(p * theta);
            cs[p * D + D / 2 + i] = sin(p * theta);
        }
    c.x = gc_leaf_add(&g, "x", N, HEADS * D, false, 1.0);
    c.heads = HEADS;
    c.D = D;
    c.pos = pos;
    c.cos_sin = cs;
    gc_check(&g);

    /* Forward: rotate-half with the table, against the formula. */
    gc_prepare(&g, false);
    lc_tensor *out[1];
    fwd_rope(&g, out);
    const lc_real *x0 = gc_leaf_of(&g, c.x)->base;
    double maxd = 0;
    for (int n = 0; n < N; n++)
        for (int h = 0; h < HEADS; h++)
            for (int i = 0; i < D / 2; i++) {
                double a = pos[n] * pow(10000.0, -2.0 * i / D);
                const lc_real *s = x0 + (n * HEADS + h) * D;
                const lc_real *y = out[0]->data + (n * HEADS + h) * D;
                double y1 = s[i] * cos(a) - s[i + D / 2] * sin(a);
                double y2 = s[i + D / 2] * cos(a) + s[i] * sin(a);
                maxd = fmax(maxd, fmax(fabs(y[i] - y1), fabs(y[i + D / 2] - y2)));
            }
    cr_expect_leq(maxd, 1e-14, "rope forward max abs diff %.3e", maxd);
    gc_free(&g);
}

/* ---- attention ---- */

typedef struct attn_case {
    lc_tensor *q, *k, *v;
    lc_attn_shape s;
} attn_case;

static int fwd_attention(gc *g, lc_tensor **out)
{
    attn_case *c = g->user;
    out[0] = lc_op_attention(&g->tape, c->q, c->k, c->v, &c->s);
    return 1;
}

/* Shape B=2, H=4, KV=2 (GQA), D=8; segment/window as given. max_fd: subset
 * size per leaf (0 = all). */
static void check_attention(const char *name, int64_t T, const int32_t *segment,
                            int64_t window, double softcap, int64_t max_fd, uint64_t seed)
{
    gc g;
    attn_case c;
    gc_init(&g, name, fwd_attention, &c, seed);
    c.s = (lc_attn_shape){.B = 2, .T = T, .H = 4, .KV = 2, .D = 8};
    c.s.scale = 1.0 / sqrt((double)c.s.D);
    c.s.segment = segment;
    c.s.window = window;
    c.s.softcap = softcap;
    int64_t N = c.s.B * T;
    c.q = gc_leaf_add(&g, "q", N, (int64_t)c.s.H * c.s.D, false, 1.5);
    c.k = gc_leaf_add(&g, "k", N, (int64_t)c.s.KV * c.s.D, false, 1.5);
    c.v = gc_leaf_add(&g, "v", N, (int64_t)c.s.KV * c.s.D, false, 1.0);
    for (int i = 0; i < g.n_leaf; i++)
        g.leaf[i].max_fd = max_fd;
    gc_check(&g);
    gc_free(&g);
}

static const int32_t SEG5[10] = {0, 0, 0, 1, 1, /* row 1 */ 0, 1, 1, 1, 2};

Test(gradcheck_attention, causal_T5)
{
    check_attention("attention causal T=5", 5, NULL, 0, 0, 0, 41);
}

Test(gradcheck_attention, segments_T5)
{
    check_attention("attention segments T=5", 5, SEG5, 0, 0, 0, 42);
}

Test(gradcheck_attention, window2_T5)
{
    check_attention("attention window=2 T=5", 5, NULL, 2, 0, 0, 43);
}

Test(gradcheck_attention, segments_window2_T5)
{
    check_attention("attention segments+window=2 T=5", 5, SEG5, 2, 0, 0, 44);
}

/* T = 70 crosses the 64-query block. Each leaf is differenced on a random
 * subset of 400 elements (the full check would take minutes at -O0). */
Test(gradcheck_attention, causal_T70)
{
    check_attention("attention causal T=70", 70, NULL, 0, 0, 400, 45);
}

static int32_t SEG70[140];

static void fill_seg70(void)
{
    for (int t = 0; t < 70; t++) {
        SEG70[t] = t < 30 ? 0 : (t < 66 ? 1 : 2);  /* a segment spans the block edge */
        SEG70[70 + t] = t / 20;
    }
}

/* Window 10 makes the second block start its keys at 64 − 10 + 1 = 55. */
Test(gradcheck_attention, segments_window10_T70)
{
    fill_seg70();
    check_attention("attention segments+window=10 T=70", 70, SEG70, 10, 0, 400, 46);
}

/* Soft-capping at 0.5 on scores of O(1) (q, k ~ 1.5·U(−1, 1), D = 8): s/cap
 * reaches ±4, where tanh is far from linear, so a missing (1 − tanh²)
 * factor or a cap applied after the mask shows. */
#define ATTN_CAP 0.5

Test(gradcheck_attention, softcap_causal_T5)
{
    check_attention("attention softcap causal T=5", 5, NULL, 0, ATTN_CAP, 0, 47);
}

Test(gradcheck_attention, softcap_segments_window2_T5)
{
    check_attention("attention softcap seg+window=2 T=5", 5, SEG5, 2, ATTN_CAP, 0, 48);
}

Test(gradcheck_attention, softcap_segments_window10_T70)
{
    fill_seg70();
    check_attention("attention softcap seg+window=10 T=70", 70, SEG70, 10, ATTN_CAP, 400, 49);
}

/* Naive O(T²) attention: softmax over the allowed keys of scaled q·k,
 * soft-capped first when s->softcap is set. */
static void attention_reference(const lc_attn_shape *s, const lc_real *q, const lc_real *k,
                                const lc_real *v, double *out)
{
    const int64_t T = s->T, H = s->H, KV = s->KV, D = s->D, group = H / KV;
    double *p = malloc((size_t)T * sizeof(double));
    cr_assert_not_null(p);
    for (int64_t b = 0; b < s->B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < T; i++) {
                const lc_real *qi = q + ((b * T + i) * H + h) * D;
                double m = -INFINITY;
                for (int64_t j = 0; j < T; j++) {
                    bool ok = j <= i && (s->window <= 0 || i - j < s->window) &&
                              (!s->segment || s->segment[b * T + i] == s->segment[b * T + j]);
                    p[j] = -INFINITY;
                    if (!ok)
                        continue;
                    const lc_real *kj = k + ((b * T + j) * KV + h / group) * D;
                    double dot = 0;
                    for (int64_t d = 0; d < D; d++)
                        dot += (double)qi[d] * (double)kj[d];
                    p[j] = dot * s->scale;
                    if (s->softcap != 0)
                        p[j] = s->softcap * tanh(p[j] / s->softcap);
                    m = fmax(m, p[j]);
                }
                double sum = 0;
                for (int64_t j = 0; j < T; j++) {
                    p[j] = p[j] == -INFINITY ? 0 : exp(p[j] - m);
                    sum += p[j];
                }
                double *o = out + ((b * T + i) * H + h) * D;
                for (int64_t d = 0; d < D; d++)
                    o[d] = 0;
                for (int64_t j = 0; j < T; j++) {
                    if (p[j] == 0)
                        continue;
                    const lc_real *vj = v + ((b * T + j) * KV + h / group) * D;
                    for (int64_t d = 0; d < D; d++)
                        o[d] += p[j] / sum * (double)vj[d];
                }
            }
    free(p);
}

static void check_attention_forward(const char *name, int64_t T, const int32_t *segment,
                                    int64_t window, double softcap)
{
    gc g;
    attn_case c;
    gc_init(&g, name, fwd_attention, &c, 51);
    c.s = (lc_attn_shape){.B = 2, .T = T, .H = 4, .KV = 2, .D = 8};
    c.s.scale = 1.0 / sqrt((double)c.s.D);
    c.s.segment = segment;
    c.s.window = window;
    c.s.softcap = softcap;
    int64_t N = c.s.B * T;
    c.q = gc_leaf_add(&g, "q", N, (int64_t)c.s.H * c.s.D, false, 2.0);
    c.k = gc_leaf_add(&g, "k", N, (int64_t)c.s.KV * c.s.D, false, 2.0);
    c.v = gc_leaf_add(&g, "v", N, (int64_t)c.s.KV * c.s.D, false, 1.0);
    gc_prepare(&g, false);
    lc_tensor *out[1];
    fwd_attention(&g, out);
    double *ref = gc_alloc(&g, (size_t)out[0]->numel * sizeof(double));
    attention_reference(&c.s, c.q->data, c.k->data, c.v->data, ref);
    double err = lc_test_rel_err_f64(out[0]->data, ref, (size_t)out[0]->numel);
    cr_log_info("%-34s forward vs naive rel err %.3e", name, err);
    cr_expect_lt(err, 1e-13, "%s: forward rel err %.3e", name, err);
    gc_free(&g);
}

Test(forward, attention_vs_naive)
{
    check_attention_forward("attention fwd causal T=5", 5, NULL, 0, 0);
    check_attention_forward("attention fwd segments T=5", 5, SEG5, 0, 0);
    check_attention_forward("attention fwd causal T=70", 70, NULL, 0, 0);
    fill_seg70();
    check_attention_forward("attention fwd seg+window=10 T=70", 70, SEG70, 10, 0);
    check_attention_forward("attention fwd window=3 T=70", 70, NULL, 3, 0);
}

Test(forward, attention_softcap_vs_naive)
{
    check_attention_forward("attention fwd softcap causal T=5", 5, NULL, 0, ATTN_CAP);
    check_attention_forward("attention fwd softcap causal T=70", 70, NULL, 0, ATTN_CAP);
    fill_seg70();
    check_attention_forward("attention fwd softcap seg+win=10 T=70", 70, SEG70, 10, ATTN_CAP);
    /* Gemma 2's cap at its usual scale: nearly linear, still applied */
    check_attention_forward("attention fwd softcap=50 window=3 T=70", 70, NULL, 3, 50.0);
}

/* ---- elementwise ---- */

typedef struct pair_case {
    lc_tensor *a, *b;
} pair_case;

static int fwd_geglu(gc *g, lc_tensor **out)
{
    pair_case *c = g->user;
    out[0] = lc_op_geglu_tanh(&g->tape, c->a, c->b);
    return 1;
}

static int fwd_add(gc *g, lc_tensor **out)
{
    pair_case *c = g->user;
    out[0] = lc_op_add(&g->tape, c->a, c->b);
    return 1;
}

static int fwd_swiglu(gc *g, lc_tensor **out)
{
    pair_case *c = g->user;
    out[0] = lc_op_swiglu(&g->tape, c->a, c->b);
    return 1;
}

/* A two-input elementwise op on [3, 5] leaves a, b drawn at ±scale_a, ±1. */
static void check_pair(const char *name, gc_forward_fn fwd, double scale_a, uint64_t seed)
{
    gc g;
    pair_case c;
    gc_init(&g, name, fwd, &c, seed);
    c.a = gc_leaf_add(&g, "a", 3, 5, false, scale_a);
    c.b = gc_leaf_add(&g, "b", 3, 5, false, 1.0);
    gc_check(&g);
    gc_free(&g);
}

Test(gradcheck_elementwise, add) { check_pair("add", fwd_add, 1.0, 61); }

/* gate over ±3: both tails and the curved middle of the activation */
Test(gradcheck_elementwise, swiglu) { check_pair("swiglu", fwd_swiglu, 3.0, 62); }

Test(gradcheck_elementwise, geglu_tanh) { check_pair("geglu_tanh", fwd_geglu, 3.0, 64); }

/* gelu_tanh against torch 2.5.1, float64:
 *   /work/venv-t5/bin/python -c "import torch; x = torch.tensor([-6.0, -3.0, -1.5, -0.5,
 *     -1e-3, 0.0, 2e-4, 0.3, 1.0, 2.5, 5.0], dtype=torch.float64);
 *     print(['%.17g' % v for v in torch.nn.functional.gelu(x, approximate='tanh').tolist()])"
 * The op computes gelu_tanh(gate) · up; up = 1 leaves gelu_tanh itself. */
Test(forward, geglu_tanh_vs_torch)
{
    static const double ref[][2] = {
        {-6.0, -8.43964897967453e-11},   {-3.0, -0.0036373920817729943},
        {-1.5, -0.10042842301976707},    {-0.5, -0.15428599017485606},
        {-0.001, -0.00049960105778641803}, {0.0, 0},
        {0.0002, 0.00010001595769110914}, {0.3, 0.18537092354275922},
        {1.0, 0.84119199060827676},      {2.5, 2.4849157339100012},
        {5.0, 4.9999997708203807},
    };
    enum { n = sizeof ref / sizeof ref[0] };
    lc_real g[n], u[n], y[n];
    for (int i = 0; i < n; i++) {
        g[i] = ref[i][0];
        u[i] = 1;
    }
    lc_k_geglu_tanh_fwd(g, u, n, y);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        /* at −6 the value is 0.5·x·(1 + tanh) with 1 + tanh ≈ 3e−11: the
         * cancellation leaves an absolute, not a relative, bound */
        double err = fabs(y[i] - ref[i][1]);
        worst = fmax(worst, err / fmax(fabs(ref[i][1]), 1e-2));
        cr_expect_leq(err, 1e-15 * fmax(fabs(ref[i][1]), 1e-2),
                      "gelu_tanh(%g) = %.17g, torch %.17g (diff %.3e)", ref[i][0], y[i],
                      ref[i][1], err);
    }
    cr_log_info("gelu_tanh vs torch: worst error %.3e (relative, absolute below 1e-2)", worst);
}

/* Several ops on one tape with fan-out: x feeds rmsnorm and swiglu, h feeds
 * swiglu and add, so pooled activation gradients must accumulate from two
 * consumers and be handed back only after their producer ran. */
typedef struct chain_case {
    lc_tensor *x;
    const lc_real *w;
} chain_case;

static int fwd_chain(gc *g, lc_tensor **out)
{
    chain_case *c = g->user;
    lc_tensor *h = lc_op_rmsnorm(&g->tape, c->x, lc_tensor_cols(c->x), c->w, 1e-6);
    lc_tensor *s = lc_op_swiglu(&g->tape, h, c->x);
    out[0] = lc_op_add(&g->tape, s, h);
    return 1;
}

Test(gradcheck_elementwise, chain_with_fanout)
{
    gc g;
    chain_case c;
    gc_init(&g, "rmsnorm→swiglu→add fan-out", fwd_chain, &c, 63);
    c.x = gc_leaf_add(&g, "x", 4, 6, false, 1.5);
    c.w = gc_rand(&g, 6, 1.0, 0.5);
    gc_check(&g);
    gc_free(&g);
}

/* ---- scale, split_cols ---- */

typedef struct shape_case {
    lc_tensor *x;
    lc_real s;
    int n;
    int64_t widths[GC_MAX_OUT];
} shape_case;

static int fwd_scale(gc *g, lc_tensor **out)
{
    shape_case *c = g->user;
    out[0] = lc_op_scale(&g->tape, c->x, c->s);
    return 1;
}

Test(gradcheck_elementwise, scale)
{
    gc g;
    shape_case c;
    gc_init(&g, "scale by sqrt(24)", fwd_scale, &c, 65);
    c.x = gc_leaf_add(&g, "x", 3, 24, false, 1.0);
    c.s = sqrt(24.0);
    gc_check(&g);
    lc_tensor *out[1];
    gc_prepare(&g, false);
    fwd_scale(&g, out);
    for (int64_t i = 0; i < c.x->numel; i++)
        cr_expect_eq(out[0]->data[i], c.s * c.x->data[i], "scale element %lld", (long long)i);
    gc_free(&g);
}

static int fwd_split(gc *g, lc_tensor **out)
{
    shape_case *c = g->user;
    lc_op_split_cols(&g->tape, c->x, c->n, c->widths, out);
    return c->n;
}

/* Phi-3's qkv_proj output [N, (H + 2·KV)·D] → q, k, v; and gate_up → gate,
 * up. Each part must hold exactly its columns; the gradient goes back into
 * the same columns (every part carries a different random weight). */
static void check_split(const char *name, int n, const int64_t *widths, uint64_t seed)
{
    gc g;
    shape_case c;
    gc_init(&g, name, fwd_split, &c, seed);
    c.n = n;
    int64_t W = 0;
    for (int i = 0; i < n; i++)
        W += c.widths[i] = widths[i];
    const int64_t N = 5;
    c.x = gc_leaf_add(&g, "x", N, W, false, 1.0);
    gc_check(&g);
    lc_tensor *out[GC_MAX_OUT];
    gc_prepare(&g, false);
    fwd_split(&g, out);
    int64_t c0 = 0;
    for (int i = 0; i < n; i++) {
        cr_expect_eq(out[i]->shape[0], N);
        cr_expect_eq(out[i]->shape[1], widths[i]);
        for (int64_t r = 0; r < N; r++)
            for (int64_t j = 0; j < widths[i]; j++)
                cr_expect_eq(out[i]->data[r * widths[i] + j], c.x->data[r * W + c0 + j],
                             "%s part %d [%lld, %lld]", name, i, (long long)r, (long long)j);
        c0 += widths[i];
    }
    /* Only the first part used (a part without a gradient is skipped):
     * x's gradient is that part's weights in its columns, 0 elsewhere. */
    gc_prepare(&g, true);
    fwd_split(&g, out);
    lc_tape_backward(&g.tape, gc_wsum_op(&g, out, 1));
    cr_assert_not_null(c.x->grad);
    for (int64_t r = 0; r < N; r++)
        for (int64_t j = 0; j < W; j++)
            cr_expect_eq(c.x->grad[r * W + j], j < widths[0] ? g.w[0][r * widths[0] + j] : 0.0,
                         "%s: gradient [%lld, %lld] with only part 0 used", name, (long long)r,
                         (long long)j);
    gc_free(&g);
}

Test(gradcheck_elementwise, split_cols_qkv)
{
    static const int64_t w[3] = {12, 4, 4}; /* H = 3, KV = 1, D = 4 */
    check_split("split_cols q,k,v", 3, w, 66);
}

Test(gradcheck_elementwise, split_cols_gate_up)
{
    static const int64_t w[2] = {7, 7};
    check_split("split_cols gate,up", 2, w, 67);
}

/* ---- fused lm_head + cross-entropy ---- */

typedef struct ce_case {
    lc_tensor *x;
    lc_weight W;
    const int32_t *targets;
    lc_real grad_scale;
    double loss_sum;
    int64_t n_sup;
    double softcap;
} ce_case;

static int fwd_ce(gc *g, lc_tensor **out)
{
    ce_case *c = g->user;
    out[0] = lc_op_lm_head_ce(&g->tape, c->x, &c->W, c->targets, c->grad_scale, &c->loss_sum,
                              &c->n_sup, c->softcap);
    return 1;
}

/* Gradient of the fused op (ignored targets included), its forward against
 * a naive softmax cross-entropy over (optionally soft-capped) logits, and
 * exactly zero gradient on ignored rows. */
static void check_ce(const char *name, double softcap, uint64_t seed)
{
    gc g;
    ce_case c;
    gc_init(&g, name, fwd_ce, &c, seed);
    enum { N = 6, C = 8, V = 11 };
    static const int32_t targets[N] = {3, -100, 0, 10, -100, 7};
    c.x = gc_leaf_add(&g, "x", N, C, false, 1.0);
    make_weight(&g, &c.W, V, C, LC_DTYPE_F64, 1.0);
    c.targets = targets;
    c.grad_scale = 1.0 / 4;
    c.softcap = softcap;
    g.scalar_out = true;
    gc_check(&g);

    /* Forward against a naive softmax cross-entropy. */
    double L = gc_eval(&g);
    const lc_real *x = gc_leaf_of(&g, c.x)->base;
    const double *W = c.W.data;
    double sum = 0;
    for (int i = 0; i < N; i++) {
        if (targets[i] < 0)
            continue;
        double logit[V], m = -INFINITY, z = 0;
        for (int v = 0; v < V; v++) {
            logit[v] = 0;
            for (int j = 0; j < C; j++)
                logit[v] += x[i * C + j] * W[v * C + j];
            if (softcap != 0)
                logit[v] = softcap * tanh(logit[v] / softcap);
            m = fmax(m, logit[v]);
        }
        for (int v = 0; v < V; v++)
            z += exp(logit[v] - m);
        sum += m + log(z) - logit[targets[i]];
    }
    cr_expect_eq(c.n_sup, 4);
    cr_expect_leq(fabs(c.loss_sum - sum), 1e-13 * sum, "%s: loss_sum %.17g, want %.17g", name,
                  c.loss_sum, sum);
    cr_expect_leq(fabs(L - sum / 4), 1e-13 * sum, "%s: loss %.17g, want %.17g", name, L,
                  sum / 4);

    /* Ignored rows get exactly zero gradient. */
    gc_prepare(&g, true);
    lc_tensor *out[1];
    fwd_ce(&g, out);
    lc_tape_backward(&g.tape, out[0]);
    cr_assert_not_null(c.x->grad);
    for (int j = 0; j < C; j++) {
        cr_expect_eq(c.x->grad[1 * C + j], 0.0);
        cr_expect_eq(c.x->grad[4 * C + j], 0.0);
    }
    gc_free(&g);
}

Test(gradcheck_ce, lm_head_ce_ignored_targets)
{
    check_ce("lm_head_ce", 0, 71);
}

/* Logits x·Wᵀ here are O(1) (C = 8, x, W ~ U(−1, 1)): a cap of 1 bends them
 * hard, so the (1 − tanh²) factor and the capped target logit both matter. */
Test(gradcheck_ce, lm_head_ce_softcap_ignored_targets)
{
    check_ce("lm_head_ce softcap=1", 1.0, 72);
}

/* The fused head's chunks: lc_k_ce_chunk_rows holds at least 512 rows of a
 * large vocabulary while they fit in 256 Mi logits (the GEMMs slow down with
 * fewer), and lc_ce_balanced_rows splits the supervised rows evenly. Over
 * several chunks (V 65536: 512 rows at most; 600 of 700 rows supervised: 2
 * chunks of 300, padded to 320) the loss and dx equal a naive softmax
 * cross-entropy. */
Test(gradcheck_ce, lm_head_ce_over_balanced_chunks, .timeout = 120)
{
    cr_expect_eq(lc_k_ce_chunk_rows(256), 1024, "a small vocabulary: the row cap");
    cr_expect_eq(lc_k_ce_chunk_rows(32768), 512, "64 Mi logits");
    cr_expect_eq(lc_k_ce_chunk_rows(49152), 512, "at least 512 rows");
    cr_expect_eq(lc_k_ce_chunk_rows(151936), 441, "at least 512 rows, but 256 Mi logits");
    cr_expect_eq(lc_k_ce_chunk_rows(1 << 22), 16, "at most 256 Mi logits");
    cr_expect_eq(lc_ce_balanced_rows(1020, 682), 512);
    cr_expect_eq(lc_ce_balanced_rows(1020, 341), 341);
    cr_expect_eq(lc_ce_balanced_rows(30, 1024), LC_CE_ROW_PAD);
    cr_expect_eq(lc_ce_balanced_rows(601, 256), 256);
    cr_expect_eq(lc_ce_balanced_rows(0, 256), 256);

    enum { N = 700, C = 6, V = 65536 };
    cr_assert_eq(lc_k_ce_chunk_rows(V), 512);
    cr_assert_eq(lc_ce_balanced_rows(600, 512), 320);
    lc_real *x = malloc(sizeof(lc_real) * N * C), *w = malloc(sizeof(lc_real) * V * C);
    lc_real *dx = calloc(N * C, sizeof(lc_real));
    double *want_dx = calloc(N * C, sizeof(double)), *p = malloc(sizeof(double) * V);
    int32_t *tg = malloc(sizeof(int32_t) * N);
    uint64_t st = 99;
    for (int64_t i = 0; i < N * C; i++)
        x[i] = (lc_real)((double)(lc_test_splitmix64(&st) >> 11) * 0x1p-52 - 1);
    for (int64_t i = 0; i < (int64_t)V * C; i++)
        w[i] = (lc_real)((double)(lc_test_splitmix64(&st) >> 11) * 0x1p-52 - 1);
    int64_t want_sup = 0;
    for (int i = 0; i < N; i++) {
        tg[i] = i % 7 == 2 ? -100 : (int32_t)((i * 7919) % V);
        want_sup += tg[i] >= 0;
    }
    cr_assert_eq(want_sup, 600);
    const double scale = 1.0 / 600;
    lc_weight W = {.dtype = LC_DTYPE_F64, .rows = V, .cols = C, .data = w};
    lc_real *scr = malloc(sizeof(lc_real) * lc_k_ce_scratch(N, C, V, &W));
    int64_t nsup = 0;
    double loss = lc_k_lm_head_ce(x, N, C, &W, tg, (lc_real)scale, dx, &nsup, scr, 0);
    double want = 0;
    for (int i = 0; i < N; i++) {
        if (tg[i] < 0)
            continue;
        double m = -INFINITY, z = 0;
        for (int v = 0; v < V; v++) {
            p[v] = 0;
            for (int j = 0; j < C; j++)
                p[v] += (double)x[i * C + j] * (double)w[(int64_t)v * C + j];
            m = fmax(m, p[v]);
        }
        for (int v = 0; v < V; v++)
            z += exp(p[v] - m);
        want += m + log(z) - p[tg[i]];
        for (int v = 0; v < V; v++) { /* dx_i = scale · Σ_v (softmax_v − [v = t]) w_v */
            double g = scale * (exp(p[v] - m) / z - (v == tg[i]));
            for (int j = 0; j < C; j++)
                want_dx[i * C + j] += g * (double)w[(int64_t)v * C + j];
        }
    }
    cr_expect_eq(nsup, want_sup);
    cr_expect_leq(fabs(loss - want), 1e-12 * want, "loss %.17g, want %.17g", loss, want);
    double err = 0, ref = 0;
    for (int64_t i = 0; i < N * C; i++) {
        err = fmax(err, fabs((double)dx[i] - want_dx[i]));
        ref = fmax(ref, fabs(want_dx[i]));
    }
    cr_expect_leq(err, 1e-12 * ref, "dx max error %.3g of %.3g", err, ref);
    for (int j = 0; j < C; j++)
        cr_expect_eq(dx[2 * C + j], 0.0, "an ignored row gets no gradient");
    free(x), free(w), free(dx), free(want_dx), free(p), free(tg), free(scr);
}

/* lc_k_softcap (eval logits): cap·tanh(x/cap) in place, over the chunked
 * parallel path (n > 32768); cap 0 leaves x untouched. */
Test(forward, softcap_kernel)
{
    const int64_t n = 40000;
    lc_real *x = malloc((size_t)n * sizeof(lc_real)), *x0 = malloc((size_t)n * sizeof(lc_real));
    cr_assert(x && x0);
    for (int64_t i = 0; i < n; i++)
        x0[i] = x[i] = 100.0 * sin(0.37 * (double)i);
    lc_k_softcap(x, n, 0);
    cr_expect_eq(memcmp(x, x0, (size_t)n * sizeof(lc_real)), 0, "cap 0 changed the values");
    lc_k_softcap(x, n, 30.0);
    double maxd = 0;
    for (int64_t i = 0; i < n; i++)
        maxd = fmax(maxd, fabs(x[i] - 30.0 * tanh(x0[i] / 30.0)));
    cr_expect_leq(maxd, 1e-13, "softcap max abs diff %.3e", maxd);
    free(x);
    free(x0);
}

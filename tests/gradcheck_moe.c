/* gradcheck_moe.c — the MoE ops (autograd/ops_moe.h) and the MoE block
 * (autograd/moe_block.h) against central finite differences in double
 * precision (linked against lorac_f64).
 *
 * A case is a set of flat leaves (activations, or LoRA stacks that are
 * parameters with their own gradient buffer) and a forward that returns one
 * output tensor; the scalar is L = Σ r·out with fixed random r. The analytic
 * pass seeds out's gradient with r and walks the tape back; parameter
 * buffers start from random values, so the check also proves that backward
 * accumulates. Routing is piecewise constant in the inputs: every
 * finite-difference evaluation asserts it chose the same experts as the
 * analytic pass, so a flipped top-k can never pass as a gradient error. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/moe_block.h"
#include "tests/helpers.h"

_Static_assert(sizeof(lc_real) == sizeof(double), "gradcheck needs the LC_REAL_DOUBLE build");

#define STEP 1e-6
#define TOL 1e-6     /* norm-wise relative error allowed (as gradcheck_ops.c) */
#define MAX_LEAF 6

typedef struct mleaf {
    lc_tensor t;
    lc_real *grad0;  /* parameter: gradient buffer contents before backward */
    const char *name;
} mleaf;

typedef struct mcase mcase;
typedef lc_tensor *(*mforward)(mcase *m);

struct mcase {
    const char *name;
    lc_arena arena;
    lc_tape tape;
    mleaf leaf[MAX_LEAF];
    int n_leaf;
    mforward forward;
    lc_real *r;          /* [out numel] weights of L */
    int64_t r_n;
    int32_t *ids;        /* experts chosen by the analytic pass */
    lc_moe_route *route; /* the forward's routing (set by forward) */
    uint64_t rng;
    /* inputs of the cases */
    lc_router_spec spec;
    lc_real *logits0;    /* fixed logits for gather / combine cases */
    int64_t N, C, E;
    int e;               /* gather: which expert */
    lc_weight router, *gate, *up, *down;
    lc_moe_expert *experts;
    lc_lora_adapter *lora; /* [2E]: gate_up, down per expert */
};

static double uni(mcase *m)
{
    return (double)(lc_test_splitmix64(&m->rng) >> 11) * 0x1.0p-53 * 2.0 - 1.0;
}

static lc_real *rand_buf(mcase *m, int64_t n, double scale)
{
    lc_real *p = malloc((size_t)n * sizeof(lc_real));
    cr_assert_not_null(p);
    for (int64_t i = 0; i < n; i++)
        p[i] = scale * uni(m);
    return p;
}

static void mcase_init(mcase *m, const char *name, mforward fwd, uint64_t seed)
{
    memset(m, 0, sizeof *m);
    m->name = name;
    m->forward = fwd;
    m->rng = seed;
    lc_error err;
    cr_assert_eq(lc_arena_init(&m->arena, "gradcheck_moe", (size_t)64 << 20, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(lc_tape_init(&m->tape, &m->arena, (size_t)16 << 20, &err), 0, "%s", err.msg);
}

/* A [rows, cols] leaf uniform in ±scale; param: owns a gradient buffer. */
static lc_tensor *add_leaf(mcase *m, const char *name, int64_t rows, int64_t cols, bool param,
                           double scale)
{
    cr_assert_lt(m->n_leaf, MAX_LEAF);
    mleaf *l = &m->leaf[m->n_leaf++];
    int64_t shape[2] = {rows, cols};
    lc_tensor_set_shape(&l->t, 2, shape);
    l->t.data = rand_buf(m, rows * cols, scale);
    l->t.is_param = param;
    l->grad0 = param ? rand_buf(m, rows * cols, 1.0) : NULL;
    l->t.grad = param ? malloc((size_t)(rows * cols) * sizeof(lc_real)) : NULL;
    l->name = name;
    return &l->t;
}

/* Runs forward on a fresh tape; L = Σ r·out. */
static double eval(mcase *m, bool record, lc_tensor **out_p)
{
    lc_tape_reset(&m->tape);
    m->tape.grad_enabled = record;
    for (int i = 0; i < m->n_leaf; i++) {
        mleaf *l = &m->leaf[i];
        l->t.requires_grad = true;
        if (!l->t.is_param)
            l->t.grad = NULL;
    }
    lc_tensor *out = m->forward(m);
    if (!m->r) {
        m->r_n = out->numel;
        m->r = rand_buf(m, out->numel, 1.0);
    }
    cr_assert_eq(out->numel, m->r_n);
    int64_t nk = m->route->N * m->route->k;
    if (!m->ids) {
        m->ids = malloc((size_t)nk * sizeof(int32_t));
        memcpy(m->ids, m->route->expert, (size_t)nk * sizeof(int32_t));
    }
    cr_assert_eq(memcmp(m->ids, m->route->expert, (size_t)nk * sizeof(int32_t)), 0,
                 "%s: a finite-difference step changed the routing", m->name);
    double L = 0;
    for (int64_t j = 0; j < out->numel; j++)
        L += (double)m->r[j] * (double)out->data[j];
    if (out_p)
        *out_p = out;
    return L;
}

/* Analytic gradients vs finite differences for every leaf. */
static void check(mcase *m)
{
    for (int i = 0; i < m->n_leaf; i++)
        if (m->leaf[i].t.is_param)
            memcpy(m->leaf[i].t.grad, m->leaf[i].grad0, (size_t)m->leaf[i].t.numel * sizeof(lc_real));
    lc_tensor *out;
    double L0 = eval(m, true, &out);
    cr_assert(out->requires_grad, "%s: nothing recorded", m->name);
    memcpy(lc_tape_grad(&m->tape, out), m->r, (size_t)out->numel * sizeof(lc_real));
    lc_tape_walk_back(&m->tape, 0);
    double *ana[MAX_LEAF];
    for (int i = 0; i < m->n_leaf; i++) {
        mleaf *l = &m->leaf[i];
        ana[i] = calloc((size_t)l->t.numel, sizeof(double));
        cr_assert_not_null(ana[i]);
        for (int64_t j = 0; j < l->t.numel && l->t.grad; j++)
            ana[i][j] = (double)l->t.grad[j] - (l->grad0 ? (double)l->grad0[j] : 0.0);
    }
    cr_expect_leq(fabs(eval(m, false, NULL) - L0), 1e-13 * fmax(1, fabs(L0)),
                  "%s: recording changed the forward", m->name);
    for (int i = 0; i < m->n_leaf; i++) {
        mleaf *l = &m->leaf[i];
        double *fd = malloc((size_t)l->t.numel * sizeof(double));
        cr_assert_not_null(fd);
        for (int64_t j = 0; j < l->t.numel; j++) {
            lc_real v = l->t.data[j];
            l->t.data[j] = v + STEP;
            double lp = eval(m, false, NULL);
            l->t.data[j] = v - STEP;
            double lm = eval(m, false, NULL);
            l->t.data[j] = v;
            fd[j] = (lp - lm) / (2 * STEP);
        }
        double err = lc_test_rel_err_f64(ana[i], fd, (size_t)l->t.numel), nrm = 0;
        for (int64_t j = 0; j < l->t.numel; j++)
            nrm += fd[j] * fd[j];
        cr_log_info("%-28s d%-6s rel err %.3e (|g| %.3e)", m->name, l->name, err, sqrt(nrm));
        cr_expect_gt(sqrt(nrm), 1e-6, "%s: d%s is zero, the check is vacuous", m->name, l->name);
        cr_expect_lt(err, TOL, "%s: d%s rel err %.3e", m->name, l->name, err);
        free(fd);
        free(ana[i]);
    }
}

static void mcase_free(mcase *m)
{
    lc_tape_free(&m->tape);
    lc_arena_free(&m->arena);
    for (int i = 0; i < m->n_leaf; i++) {
        free(m->leaf[i].t.data);
        free(m->leaf[i].grad0);
        free(m->leaf[i].t.grad);
    }
    free(m->r);
    free(m->ids);
    free(m->logits0);
    free(m->experts);
    free(m->lora);
    free(m->gate); /* gate, up and down weights: one allocation */
}

/* ---- router top-k ---- */

static lc_tensor *fwd_router(mcase *m)
{
    return lc_op_router_topk(&m->tape, &m->leaf[0].t, &m->spec, &m->route);
}

static void check_router(const char *name, int64_t N, int E, int k, bool renorm)
{
    mcase m;
    mcase_init(&m, name, fwd_router, 101 + (uint64_t)E * 7 + (uint64_t)renorm);
    m.spec = (lc_router_spec){LC_ROUTER_SOFTMAX_THEN_TOPK, k, renorm};
    add_leaf(&m, "logits", N, E, false, 2.0);
    check(&m);
    mcase_free(&m);
}

Test(gradcheck_moe, router_topk_renorm) { check_router("router top-2 of 5 renorm", 7, 5, 2, true); }
Test(gradcheck_moe, router_topk_plain) { check_router("router top-2 of 5 plain", 7, 5, 2, false); }
Test(gradcheck_moe, router_top3_of_8_plain) { check_router("router top-3 of 8 plain", 5, 8, 3, false); }

/* The k largest logits, weights summing to 1 (renorm) or the full softmax's
 * values, lower id first on equal logits. */
Test(gradcheck_moe, router_values_and_ties)
{
    lc_arena a;
    lc_tape t;
    lc_error err;
    cr_assert_eq(lc_arena_init(&a, "router", 1 << 20, &err), 0);
    cr_assert_eq(lc_tape_init(&t, &a, 1 << 20, &err), 0);
    t.grad_enabled = false;
    lc_real z[2][4] = {{0.5, 2.0, -1.0, 1.0}, {1.0, 3.0, 1.0, 3.0}};
    lc_tensor lg = {.data = &z[0][0]};
    int64_t shape[2] = {2, 4};
    lc_tensor_set_shape(&lg, 2, shape);
    for (int renorm = 0; renorm < 2; renorm++) {
        lc_router_spec s = {LC_ROUTER_SOFTMAX_THEN_TOPK, 2, renorm};
        lc_moe_route *r;
        lc_tensor *w = lc_op_router_topk(&t, &lg, &s, &r);
        cr_expect_eq(r->expert[0], 1);
        cr_expect_eq(r->expert[1], 3);
        cr_expect_eq(r->expert[2], 1); /* 3.0 at ids 1 and 3: lower id first */
        cr_expect_eq(r->expert[3], 3);
        double Z = exp(0.5) + exp(2.0) + exp(-1.0) + exp(1.0);
        double p1 = exp(2.0) / Z, p3 = exp(1.0) / Z;
        double e1 = renorm ? p1 / (p1 + p3) : p1, e3 = renorm ? p3 / (p1 + p3) : p3;
        cr_expect_leq(fabs(w->data[0] - e1), 1e-14);
        cr_expect_leq(fabs(w->data[1] - e3), 1e-14);
        /* grouping: expert 1 holds tokens 0, 1 (token order), expert 3 the same */
        cr_expect_eq(r->offset[1], 0);
        cr_expect_eq(r->offset[2], 2);
        cr_expect_eq(r->offset[3], 2);
        cr_expect_eq(r->offset[4], 4);
        cr_expect_eq(r->token[0], 0);
        cr_expect_eq(r->token[1], 1);
        cr_expect_eq(r->pair[1], 2); /* grouped row 1: token 1, slot 0 (expert 1) */
        cr_expect_eq(r->pair[2], 1); /* token 0, slot 1 (expert 3) */
        cr_expect_eq(r->pair[3], 3); /* token 1, slot 1 (expert 3) */
        cr_expect_eq(r->token_be, r->token, "on the CPU the kernels index the host arrays");
    }
    lc_tape_free(&t);
    lc_arena_free(&a);
}

/* ---- gather and combine (routing from fixed logits, no gradient) ---- */

static lc_moe_route *fixed_route(mcase *m)
{
    lc_tensor *lg = lc_tape_tensor2(&m->tape, m->N, m->E);
    memcpy(lg->data, m->logits0, (size_t)(m->N * m->E) * sizeof(lc_real));
    lc_op_router_topk(&m->tape, lg, &m->spec, &m->route);
    return m->route;
}

static lc_tensor *fwd_gather(mcase *m)
{
    return lc_op_moe_gather(&m->tape, &m->leaf[0].t, fixed_route(m), m->e);
}

static lc_tensor *fwd_combine(mcase *m)
{
    lc_moe_route *r = fixed_route(m);
    lc_tensor *y[8] = {0};
    for (int e = 0, l = 1; e < m->E; e++)
        if (lc_moe_rows(r, e) > 0)
            y[e] = &m->leaf[l++].t;
    return lc_op_moe_combine(&m->tape, &m->leaf[0].t, y, r);
}

static void fixed_case(mcase *m, const char *name, mforward fwd)
{
    mcase_init(m, name, fwd, 77);
    m->N = 9, m->C = 5, m->E = 4;
    m->spec = (lc_router_spec){LC_ROUTER_SOFTMAX_THEN_TOPK, 2, true};
    m->logits0 = rand_buf(m, m->N * m->E, 2.0);
}

Test(gradcheck_moe, gather)
{
    mcase m;
    fixed_case(&m, "moe gather", fwd_gather);
    add_leaf(&m, "x", m.N, m.C, false, 1.0);
    for (m.e = 0; m.e < m.E; m.e++) {
        free(m.ids);
        free(m.r);
        m.ids = NULL, m.r = NULL;
        lc_tape_reset(&m.tape);
        m.tape.grad_enabled = false;
        if (lc_moe_rows(fixed_route(&m), m.e) > 0)
            check(&m);
    }
    mcase_free(&m);
}

Test(gradcheck_moe, combine)
{
    mcase m;
    fixed_case(&m, "moe combine", fwd_combine);
    add_leaf(&m, "w", m.N, 2, false, 1.0);
    lc_tape_reset(&m.tape);
    m.tape.grad_enabled = false;
    lc_moe_route *r = fixed_route(&m);
    static const char *const names[] = {"y0", "y1", "y2", "y3"};
    for (int e = 0; e < m.E; e++)
        if (lc_moe_rows(r, e) > 0)
            add_leaf(&m, names[e], lc_moe_rows(r, e), m.C, false, 1.0);
    check(&m);
    mcase_free(&m);
}

/* ---- the block ---- */

static lc_tensor *fwd_block(mcase *m)
{
    lc_moe_block b = {.router = &m->router, .experts = m->experts, .E = (int)m->E,
                      .route = m->spec};
    return lc_moe_block_forward(&m->tape, &b, &m->leaf[0].t, &m->route);
}

/* v = rows [e·rows, (e+1)·rows) of the stacked parameter leaf s, sharing
 * its values and gradient buffer. */
static lc_tensor *stack_slice(lc_tensor *v, const lc_tensor *s, int e, int64_t rows)
{
    *v = *s;
    int64_t shape[2] = {rows, s->shape[1]};
    lc_tensor_set_shape(v, 2, shape);
    v->data = s->data + e * rows * s->shape[1];
    v->grad = s->grad + e * rows * s->shape[1];
    v->requires_grad = true;
    return v;
}

static void frozen(mcase *m, lc_weight *W, lc_real *data, int64_t rows, int64_t cols, double scale)
{
    for (int64_t i = 0; i < rows * cols; i++)
        data[i] = scale * uni(m);
    *W = (lc_weight){.data = data, .dtype = LC_DTYPE_F64, .rows = rows, .cols = cols};
}

/* N tokens, C hidden, E experts of width FF, top-k, LoRA rank R on gate_up
 * (lora & 1) and down (lora & 2) of every expert (stacked leaves, one slice
 * per expert; no adapter at all for the bits not set). */
static void check_block(const char *name, int64_t N, int64_t C, int E, int64_t FF, int k,
                        bool renorm, int64_t R, int lora)
{
    mcase m;
    mcase_init(&m, name, fwd_block, 991 + (uint64_t)N);
    m.N = N, m.C = C, m.E = E;
    m.spec = (lc_router_spec){LC_ROUTER_SOFTMAX_THEN_TOPK, k, renorm};
    add_leaf(&m, "x", N, C, false, 1.0);
    static const char *const st_name[4] = {"A_gu", "B_gu", "A_dn", "B_dn"};
    int64_t st_rows[4] = {R, 2 * FF, R, C}, st_cols[4] = {C, R, FF, R};
    lc_tensor *st[4] = {0};
    for (int s = 0; s < 4; s++)
        if (lora & (1 << (s / 2)))
            st[s] = add_leaf(&m, st_name[s], E * st_rows[s], st_cols[s], true, 0.5);
    m.gate = calloc(3 * (size_t)E, sizeof(lc_weight));
    m.experts = calloc((size_t)E, sizeof *m.experts);
    m.lora = calloc(2 * (size_t)E, sizeof *m.lora);
    lc_tensor *views = calloc(4 * (size_t)E, sizeof *views);
    lc_real *wd = malloc((size_t)(E * C + E * 3 * FF * C) * sizeof(lc_real));
    cr_assert(m.gate && m.experts && m.lora && views && wd);
    m.up = m.gate + E, m.down = m.gate + 2 * E;
    frozen(&m, &m.router, wd, E, C, 1.0);
    lc_real *p = wd + E * C;
    for (int e = 0; e < E; e++, p += 3 * FF * C) {
        frozen(&m, &m.gate[e], p, FF, C, 1 / sqrt((double)C));
        frozen(&m, &m.up[e], p + FF * C, FF, C, 1 / sqrt((double)C));
        frozen(&m, &m.down[e], p + 2 * FF * C, C, FF, 1 / sqrt((double)FF));
        lc_tensor *v[4] = {0};
        for (int s = 0; s < 4; s++)
            if (st[s])
                v[s] = stack_slice(&views[4 * e + s], st[s], e, st_rows[s]);
        m.lora[2 * e] = (lc_lora_adapter){.A = v[0], .B = v[1], .scale = 1.5};
        m.lora[2 * e + 1] = (lc_lora_adapter){.A = v[2], .B = v[3], .scale = 1.5};
        m.experts[e] = (lc_moe_expert){&m.gate[e], &m.up[e], &m.down[e],
                                       v[0] ? &m.lora[2 * e] : NULL,
                                       v[2] ? &m.lora[2 * e + 1] : NULL};
    }
    check(&m);
    int used = 0;
    for (int e = 0; e < E; e++)
        used += lc_moe_rows(m.route, e) > 0;
    cr_log_info("%-28s %d of %d experts routed to", name, used, E);
    free(views);
    free(wd);
    mcase_free(&m);
}

/* Mixtral: renormalised top-2 of 4 experts */
Test(gradcheck_moe, block_mixtral_like)
{
    check_block("block top-2 of 4 renorm", 10, 6, 4, 5, 2, true, 2, 3);
}

/* Qwen3-MoE with norm_topk_prob false */
Test(gradcheck_moe, block_qwen3moe_plain)
{
    check_block("block top-2 of 4 plain", 10, 6, 4, 5, 2, false, 2, 3);
}

/* 3 tokens over 8 experts: some experts get no rows (their LoRA gradient
 * is exactly zero, and the finite differences agree) */
Test(gradcheck_moe, block_unrouted_experts)
{
    check_block("block top-2 of 8, 3 tokens", 3, 6, 8, 4, 2, true, 3, 3);
}

/* LoRA on gate_up only, on down only, and none (x alone: router, gather,
 * plain expert linears and combine) */
Test(gradcheck_moe, block_partial_lora)
{
    check_block("block LoRA on gate_up only", 8, 6, 4, 5, 2, true, 2, 1);
    check_block("block LoRA on down only", 8, 6, 4, 5, 2, false, 2, 2);
    check_block("block without LoRA", 8, 6, 4, 5, 2, true, 0, 0);
}

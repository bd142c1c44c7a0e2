/* ops.c — forward computation + backward recording for every op (see ops.h).
 *
 * Pattern of each op: allocate outputs (and what backward must keep) in the
 * step arena, take scratch above an arena mark and release it before
 * returning, record a node only when some input requires grad. Backward
 * functions ask lc_tape_grad() for the input gradients they add into; a NULL
 * answer means that input needs no gradient and the work is skipped. */
#include "autograd/ops.h"

#include <string.h>

#include "autograd/error.h"

#define MAX_LINEARS 4

#define scratch lc_tape_scratch
#define scratch_zero lc_tape_scratch_zero
#define scratch_f32 lc_tape_scratch_f32

/* ---- fused LoRA linears ---- */

typedef struct linears_ctx {
    lc_linear_input in;
    lc_linear lin[MAX_LINEARS];
    int n;
    lc_tensor *residual;
    lc_real *rstd;              /* [N], RMSNORM */
    lc_real *xa[MAX_LINEARS];   /* [N, R] (row stride xa_ld) = drop(f(x))·Aᵀ */
    int64_t xa_ld;              /* lora_stacked(): ΣR, every xa[i] is columns
                                 * xa_col[i].. of one [N, ΣR]; 0: own [N, R] each */
    int64_t xa_col[MAX_LINEARS];
    const lc_real *norm[MAX_LINEARS]; /* [out] DoRA's c = ‖W + s·B·A‖ per row (NULL: no DoRA) */
    uint64_t seed[MAX_LINEARS]; /* dropout streams */
    bool dropout_on;
} linears_ctx;

static int64_t input_cols(const lc_linear_input *in) { return lc_tensor_cols(in->x); }

/* A gated input (f(x) = act(x) · up): SWIGLU or GEGLU_TANH. */
static bool input_gated(lc_input_kind kind)
{
    return kind == LC_INPUT_SWIGLU || kind == LC_INPUT_GEGLU_TANH;
}

/* f(x) into dst[N, in] (RMSNORM also writes rstd when given). */
static void input_transform(const lc_kernels *k, const lc_linear_input *in, lc_real *dst,
                            lc_real *rstd)
{
    int64_t N = lc_tensor_rows(in->x), C = input_cols(in);
    if (in->kind == LC_INPUT_RMSNORM)
        k->rmsnorm_fwd(in->x->data, in->norm_w, N, C, in->eps, dst, rstd);
    else if (in->kind == LC_INPUT_GEGLU_TANH)
        k->geglu_tanh_fwd(in->x->data, in->up->data, N * C, dst);
    else
        k->swiglu_fwd(in->x->data, in->up->data, N * C, dst);
}

/* The A products of linears sharing one input (q/k/v, gate/up) as one GEMM:
 * xa_all[N, ΣR] = f(x)·[A_1; ...; A_n]ᵀ forward, and in backward
 * df(x) += [s_1·dy_1·B_1 | ...]·[A_1; ...; A_n] with K = ΣR instead of n passes
 * of K = R over the [N, in] gradient. Only when every linear has a plain LoRA
 * adapter (no DoRA) and no dropout mask applies (each linear draws its own
 * mask, as PEFT's separate Dropout modules do). */
static bool lora_stacked(const lc_linear *lin, int n, bool dropout_on)
{
    if (n < 2 || dropout_on)
        return false;
    for (int i = 0; i < n; i++)
        if (!lin[i].lora || lin[i].lora->m)
            return false;
    return true;
}

/* p + n activation elements (activations may be narrower than lc_real: bf16
 * on CUDA). */
static lc_real *act_at(const lc_tape *t, lc_real *p, int64_t n)
{
    return (lc_real *)((char *)p + lc_backend_act_bytes(t->be, n));
}

/* The stacked layout: col[i] = R_1 + ... + R_{i-1}; returns ΣR. */
static int64_t lora_stack_cols(const lc_linear *lin, int n, int64_t *col)
{
    int64_t sum = 0;
    for (int i = 0; i < n; i++) {
        col[i] = sum;
        sum += lin[i].lora->A->shape[0];
    }
    return sum;
}

/* A_stack[ΣR, C] = [A_1; ...; A_n] (their activation copies; A_i from row
 * col[i]) in the step's scratch. */
static lc_real *stack_lora_a(lc_tape *t, const lc_linear *lin, int n, const int64_t *col,
                             int64_t rows, int64_t C)
{
    lc_real *As = scratch(t, (size_t)(rows * C));
    for (int i = 0; i < n; i++)
        lc_tape_copy(t, act_at(t, As, col[i] * C), lc_tape_act(t, lin[i].lora->A),
                     lin[i].lora->A->shape[0] * C);
    return As;
}

static size_t linears_weight_scratch(const lc_kernels *k, const lc_linear *lin, int n)
{
    size_t m = 0;
    for (int i = 0; i < n; i++) {
        size_t s = k->weight_scratch(lin[i].W);
        m = s > m ? s : m;
    }
    return m;
}

/* g[O] = m / c: DoRA's per-output scale. */
static lc_real *dora_scale(lc_tape *t, const lc_tensor *m, const lc_real *c)
{
    lc_real *g = scratch_f32(t, (size_t)m->numel);
    lc_tape_k(t)->div(m->numel, m->data, c, g);
    return g;
}

/* u[N, out] = xd·Wᵀ + s·xa·Bᵀ: the product DoRA's magnitude multiplies
 * (without bias), recomputed for m's gradient (B in the activation dtype). */
static void dora_product(const lc_kernels *k, const lc_linear *L, const lc_real *xd, int64_t N,
                         const lc_real *xa, const lc_real *B, lc_real *u, lc_real *wscr)
{
    const lc_lora_adapter *lo = L->lora;
    int64_t O = L->W->rows, R = lo->A->shape[0];
    k->weight_matmul(xd, N, L->W, 0, u, wscr);
    k->gemm(false, true, N, O, R, lo->scale, xa, R, B, R, 1, u, O);
}

/* gA += alpha·dxaᵀ·drop_i(f(x)), linear i's A gradient: dxa = dy·B [N, R]
 * with row stride ld (stacked: s already in it, alpha 1; else alpha s), fx =
 * f(x) [N, in], drop: [N, in] scratch for linear i's mask (NULL without
 * dropout, always when stacked). */
static void lora_a_grad(lc_tape *t, const linears_ctx *c, int i, lc_real *gA, const lc_real *dxa,
                        int64_t ld, lc_real alpha, const lc_real *fx, lc_real *drop)
{
    const lc_lora_adapter *lo = c->lin[i].lora;
    int64_t N = lc_tensor_rows(c->in.x), in = input_cols(&c->in);
    const lc_real *xd = fx;
    if (drop) {
        lc_tape_k(t)->dropout(fx, drop, N * in, lo->dropout, c->seed[i], false);
        xd = drop;
    }
    lc_tape_k(t)->gemm_grad(true, false, lo->A->shape[0], in, N, alpha, dxa, ld, xd, in, gA, in);
}

/* The A gradients linears_backward deferred until f(x) was recomputed, dxa
 * from dxa_all's columns (stacked) or dxa_kept[i]. */
static void deferred_a_grads(lc_tape *t, lc_node *node, const lc_real *fx, lc_real *dxa_all,
                             lc_real *const *dxa_kept, lc_real *drop)
{
    const linears_ctx *c = node->ctx;
    for (int i = 0; i < c->n; i++) {
        const lc_lora_adapter *lo = c->lin[i].lora;
        lc_real *gA = lo && node->out[i]->grad ? lc_tape_grad(t, lo->A) : NULL;
        if (!gA)
            continue;
        if (dxa_all)
            lora_a_grad(t, c, i, gA, act_at(t, dxa_all, c->xa_col[i]), c->xa_ld, 1, fx, drop);
        else
            lora_a_grad(t, c, i, gA, dxa_kept[i], lo->A->shape[0], lo->scale, fx, drop);
    }
}

/* The linears whose frozen product and LoRA term the backend runs together
 * (backend.h linear_lora): gathered through the loop over the group, run in
 * one call once every term's operand is known. */
typedef struct term_group {
    int n;
    int which[MAX_LINEARS];          /* the group's linear of each */
    const lc_weight *W[MAX_LINEARS];
    lc_lora_term term[MAX_LINEARS];
    const lc_real *dy[MAX_LINEARS];  /* backward */
    lc_real *y[MAX_LINEARS];         /* forward */
} term_group;

static void term_add(term_group *g, int i, const lc_weight *W, const lc_real *a, int64_t lda,
                     const lc_real *w, int64_t R, lc_real scale)
{
    g->which[g->n] = i;
    g->W[g->n] = W;
    g->term[g->n++] = (lc_lora_term){.a = a, .lda = lda, .w = w, .R = R, .scale = scale};
}

static void linears_backward(lc_tape *t, lc_node *node)
{
    linears_ctx *c = node->ctx;
    lc_tensor *x = c->in.x;
    int64_t N = lc_tensor_rows(x), in = input_cols(&c->in);
    bool plain = c->in.kind == LC_INPUT_PLAIN;
    bool need_dx = x->requires_grad || (c->in.up && c->in.up->requires_grad);
    lc_tape_mark mark = lc_tape_mark_now(t);

    /* d f(x): straight into x's gradient when f is the identity; else into
     * scratch that the first product writes (beta 0: no zeroing, and the
     * GEMM does not read it back) and the rest add to. */
    lc_real *dxin = NULL;
    bool dx_fresh = false;
    if (need_dx) {
        dx_fresh = !plain;
        dxin = plain ? lc_tape_grad(t, x) : scratch(t, (size_t)(N * in));
    }

    bool any_lora = false, any_dora = false;
    for (int i = 0; i < c->n; i++) {
        any_lora |= c->lin[i].lora && node->out[i]->grad;
        any_dora |= c->lin[i].lora && c->lin[i].lora->m;
    }
    /* A gated input's f(x), which the A gradients need, comes out of the
     * gate's backward (swiglu_bwd's y) once df(x) is complete: one pass over
     * x and up instead of a recompute and then the backward. The A gradients
     * wait for it (DoRA needs f(x) earlier, for its magnitude). */
    bool defer_a = any_lora && dxin && input_gated(c->in.kind) && !any_dora;
    const lc_real *xin = x->data;
    lc_real *fx = NULL; /* [N, in] f(x) when recomputed */
    if (any_lora && !plain) {
        fx = scratch(t, (size_t)(N * in));
        if (!defer_a)
            input_transform(lc_tape_k(t), &c->in, fx, NULL);
        xin = fx;
    }
    lc_real *wscr = scratch_f32(t, linears_weight_scratch(lc_tape_k(t), c->lin, c->n));
    lc_real *drop = c->dropout_on ? scratch(t, (size_t)(N * in)) : NULL;
    /* stacked: [s_i·dy_i·B_i] side by side [N, ΣR] (zero where an output has
     * no gradient), one product into df(x) after the loop */
    lc_real *dxa_all = c->xa_ld ? scratch_zero(t, (size_t)(N * c->xa_ld)) : NULL;
    /* dx's frozen products and LoRA terms by the backend, once every dxa
     * is known (not where DoRA's scale or a dropout mask applies) */
    bool with_term[MAX_LINEARS] = {0};
    for (int i = 0; i < c->n; i++)
        with_term[i] = dxin && c->lin[i].lora && !c->lin[i].lora->m && !drop &&
                       node->out[i]->grad && t->be->linear_lora_grad;
    term_group tg = {0};
    /* not stacked: each linear's dy·B [N, R], kept for its A gradient
     * (defer_a) or its term */
    lc_real *dxa_kept[MAX_LINEARS] = {0};
    for (int i = 0; i < c->n && !dxa_all; i++)
        if (c->lin[i].lora && node->out[i]->grad && (defer_a || with_term[i]))
            dxa_kept[i] = scratch(t, (size_t)(N * c->lin[i].lora->A->shape[0]));

    for (int i = 0; i < c->n; i++) {
        const lc_real *dy = node->out[i]->grad;
        if (!dy)
            continue;
        const lc_linear *L = &c->lin[i];
        int64_t out = L->W->rows;
        const lc_lora_adapter *lo = L->lora;
        lc_tape_mark m2 = lc_tape_mark_now(t);
        /* DoRA: the LoRA branch (and without dropout the base too) sees
         * dy·g; u [N, out] holds m's product, then (dy·(g − 1)). */
        const lc_real *dyl = dy;
        lc_real *g = NULL, *u = NULL;
        const lc_real *Bact = lo ? lc_tape_act(t, lo->B) : NULL;
        if (lo && lo->m) {
            g = dora_scale(t, lo->m, c->norm[i]);
            lc_real *dyg = scratch(t, (size_t)(N * out));
            lc_tape_k(t)->col_scale(N, out, dy, g, 0, dyg);
            dyl = dyg;
            u = scratch(t, (size_t)(N * out));
            lc_real *gm = lc_tape_grad(t, lo->m);
            if (gm) {
                const lc_real *xd = xin;
                if (drop) {
                    lc_tape_k(t)->dropout(xin, drop, N * in, lo->dropout, c->seed[i], false);
                    xd = drop;
                }
                dora_product(lc_tape_k(t), L, xd, N, c->xa[i], Bact, u, wscr);
                lc_tape_k(t)->dora_mag_grad(N, out, dy, u, c->norm[i], gm);
            }
        }
        if (dxin && !with_term[i]) {
            lc_tape_k(t)->weight_matmul_grad(g && !drop ? dyl : dy, N, L->W, dx_fresh ? 0 : 1,
                                             dxin, wscr);
            dx_fresh = false;
        }
        if (!lo) {
            lc_tape_release(t, m2);
            continue;
        }
        int64_t R = lo->A->shape[0];
        lc_real *gB = lc_tape_grad(t, lo->B);
        if (gB)
            lc_tape_k(t)->gemm_grad(true, false, out, R, N, lo->scale, dyl, out, c->xa[i],
                                    c->xa_ld ? c->xa_ld : R, gB, R);
        lc_real *gA = lc_tape_grad(t, lo->A);
        if (dxa_all) { /* dxa = s·dy·B [N, R] in its columns of dxa_all */
            lc_real *dxa = act_at(t, dxa_all, c->xa_col[i]);
            lc_tape_k(t)->gemm(false, false, N, R, out, lo->scale, dy, out, Bact, R, 0, dxa,
                               c->xa_ld);
            if (with_term[i])
                term_add(&tg, i, L->W, dxa, c->xa_ld, lo->A->data, R, 1);
            if (gA && !defer_a)
                lora_a_grad(t, c, i, gA, dxa, c->xa_ld, 1, xin, drop);
            lc_tape_release(t, m2);
            continue;
        }
        lc_real *dxa = dxa_kept[i] ? dxa_kept[i] : scratch(t, (size_t)(N * R)); /* dyl·B [N, R] */
        lc_tape_k(t)->gemm(false, false, N, R, out, 1, dyl, out, Bact, R, 0, dxa, R);
        if (with_term[i])
            term_add(&tg, i, L->W, dxa, R, lo->A->data, R, lo->scale);
        if (gA && !defer_a)
            lora_a_grad(t, c, i, gA, dxa, R, lo->scale, xin, drop);
        if (dxin && !with_term[i]) {
            const lc_real *Aact = lc_tape_act(t, lo->A);
            if (drop) {
                lc_real beta = 0;
                if (g) { /* DoRA's (g − 1)·(drop(x)·Wᵀ) term */
                    lc_tape_k(t)->col_scale(N, out, dy, g, -1, u);
                    lc_tape_k(t)->weight_matmul_grad(u, N, L->W, 0, drop, wscr);
                    beta = 1;
                }
                lc_tape_k(t)->gemm(false, false, N, in, R, lo->scale, dxa, R, Aact, in, beta, drop,
                                   in);
                lc_tape_k(t)->dropout(drop, dxin, N * in, lo->dropout, c->seed[i], true);
            } else {
                lc_tape_k(t)->gemm(false, false, N, in, R, lo->scale, dxa, R, Aact, in, 1, dxin, in);
            }
        }
        lc_tape_release(t, m2);
    }
    if (tg.n) {
        for (int k = 0; k < tg.n; k++)
            tg.dy[k] = node->out[tg.which[k]]->grad;
        t->be->linear_lora_grad(tg.dy, N, tg.n, tg.W, tg.term, dx_fresh ? 0 : 1, dxin, wscr);
        dx_fresh = false;
    }
    if (dxa_all && dxin && !t->be->linear_lora_grad) { /* else in the backend's call */
        const lc_real *As = stack_lora_a(t, c->lin, c->n, c->xa_col, c->xa_ld, in);
        lc_tape_k(t)->gemm(false, false, N, in, c->xa_ld, 1, dxa_all, c->xa_ld, As, in,
                           dx_fresh ? 0 : 1, dxin, in);
        dx_fresh = false;
    }
    if (dx_fresh) /* no output had a gradient */
        lc_tape_zero(t, dxin, N * in);

    lc_real *fx_out = defer_a ? fx : NULL;
    if (dxin && c->in.kind == LC_INPUT_RMSNORM) {
        lc_tape_k(t)->rmsnorm_bwd(x->data, c->in.norm_w, c->rstd, dxin, N, in, lc_tape_grad(t, x));
    } else if (dxin && c->in.kind == LC_INPUT_SWIGLU) {
        lc_tape_k(t)->swiglu_bwd(x->data, c->in.up->data, dxin, N * in, lc_tape_grad(t, x),
                                 lc_tape_grad(t, c->in.up), fx_out);
    } else if (dxin && c->in.kind == LC_INPUT_GEGLU_TANH) {
        lc_tape_k(t)->geglu_tanh_bwd(x->data, c->in.up->data, dxin, N * in, lc_tape_grad(t, x),
                                     lc_tape_grad(t, c->in.up), fx_out);
    }
    if (defer_a)
        deferred_a_grads(t, node, fx, dxa_all, dxa_kept, drop);
    if (c->residual) /* last: the residual may take dy's buffer */
        lc_tape_grad_pass(t, c->residual, node->out[0], true);
    lc_tape_release(t, mark);
}

void lc_op_linears(lc_tape *t, const lc_linear_input *in, const lc_linear *lin,
                   int n, lc_tensor *residual, lc_tensor **out)
{
    LC_ASSERT(n >= 1 && n <= MAX_LINEARS);
    LC_ASSERT(!residual || n == 1);
    lc_tensor *x = in->x;
    int64_t N = lc_tensor_rows(x), C = input_cols(in);
    if (input_gated(in->kind))
        LC_ASSERT(in->up && in->up->numel == x->numel);

    lc_tensor *deps[2 + 3 * MAX_LINEARS + 1];
    int nd = 0;
    deps[nd++] = x;
    if (input_gated(in->kind))
        deps[nd++] = in->up;
    if (residual)
        deps[nd++] = residual;
    for (int i = 0; i < n; i++) {
        LC_ASSERT(lin[i].W->cols == C);
        if (lin[i].lora) {
            deps[nd++] = lin[i].lora->A;
            deps[nd++] = lin[i].lora->B;
            if (lin[i].lora->m)
                deps[nd++] = lin[i].lora->m;
        }
    }
    bool record = lc_tape_needs_grad(t, deps, nd);

    linears_ctx *c = record ? lc_arena_alloc(t->arena, sizeof *c) : NULL;
    lc_real *rstd = in->kind == LC_INPUT_RMSNORM ? scratch_f32(t, (size_t)N) : NULL;
    lc_real *xa[MAX_LINEARS] = {0}, *norm[MAX_LINEARS] = {0};
    const lc_real *cnorm[MAX_LINEARS] = {0};
    bool dropout_on = false;
    for (int i = 0; i < n; i++)
        dropout_on |= t->training && lin[i].lora && lin[i].lora->dropout > 0;
    bool stacked = lora_stacked(lin, n, dropout_on);
    int64_t xa_col[MAX_LINEARS] = {0};
    int64_t xa_ld = stacked ? lora_stack_cols(lin, n, xa_col) : 0; /* see linears_ctx */
    if (stacked) {
        lc_real *xa_all = scratch(t, (size_t)(N * xa_ld));
        for (int i = 0; i < n; i++)
            xa[i] = act_at(t, xa_all, xa_col[i]);
    }
    int64_t out_cols[MAX_LINEARS];
    for (int i = 0; i < n; i++)
        out_cols[i] = lin[i].W->rows;
    lc_tape_tensors2(t, N, n, out_cols, out);
    for (int i = 0; i < n; i++) {
        if (residual)
            LC_ASSERT(residual->numel == out[i]->numel);
        if (lin[i].lora && !stacked)
            xa[i] = scratch(t, (size_t)(N * lin[i].lora->A->shape[0]));
        if (lin[i].lora && lin[i].lora->m && !lin[i].lora->norm)
            norm[i] = scratch_f32(t, (size_t)lin[i].W->rows);
        cnorm[i] = lin[i].lora && lin[i].lora->m ? (lin[i].lora->norm ? lin[i].lora->norm : norm[i])
                                                 : NULL;
    }

    lc_tape_mark mark = lc_tape_mark_now(t);
    const lc_real *xin = x->data;
    if (in->kind != LC_INPUT_PLAIN) {
        lc_real *buf = scratch(t, (size_t)(N * C));
        input_transform(lc_tape_k(t), in, buf, rstd);
        xin = buf;
    }
    lc_real *wscr = scratch_f32(t, linears_weight_scratch(lc_tape_k(t), lin, n));
    if (stacked) {
        lc_tape_mark ms = lc_tape_mark_now(t);
        const lc_real *As = stack_lora_a(t, lin, n, xa_col, xa_ld, C);
        lc_tape_k(t)->gemm(false, true, N, xa_ld, C, 1, xin, C, As, C, 0, xa[0], xa_ld);
        lc_tape_release(t, ms);
    }
    lc_real *drop = dropout_on ? scratch(t, (size_t)(N * C)) : NULL;
    uint64_t seeds[MAX_LINEARS];
    term_group tg = {0};

    for (int i = 0; i < n; i++) {
        const lc_linear *L = &lin[i];
        int64_t O = L->W->rows;
        lc_real *y = out[i]->data;
        lc_tape_mark m2 = lc_tape_mark_now(t);
        lc_real *u = NULL; /* DoRA: the base product x·Wᵀ [N, O], then xd·Wᵀ */
        /* the frozen product and the LoRA term together, by the backend */
        bool with_term = L->lora && !cnorm[i] && t->be->linear_lora;
        if (cnorm[i]) {
            u = scratch(t, (size_t)(N * O));
            lc_tape_k(t)->weight_matmul(xin, N, L->W, 0, u, wscr);
            if (residual) {
                lc_tape_copy(t, y, residual->data, out[i]->numel);
                lc_tape_k(t)->axpy(N * O, 1, u, y);
            } else {
                lc_tape_copy(t, y, u, out[i]->numel);
            }
        } else if (residual) {
            lc_tape_copy(t, y, residual->data, out[i]->numel);
        }
        if (!cnorm[i] && !with_term)
            lc_tape_k(t)->weight_matmul(xin, N, L->W, residual ? 1 : 0, y, wscr);
        if (L->bias && !with_term)
            lc_tape_k(t)->add_bias(N, O, L->bias, y);
        seeds[i] = t->dropout_seed * 0x9e3779b97f4a7c15ull + (++t->op_counter);
        if (!L->lora)
            continue;
        const lc_lora_adapter *lo = L->lora;
        int64_t R = lo->A->shape[0];
        LC_ASSERT(lo->A->shape[1] == C && lo->B->shape[0] == O && lo->B->shape[1] == R);
        const lc_real *xd = xin;
        if (drop && lo->dropout > 0) {
            lc_tape_k(t)->dropout(xin, drop, N * C, lo->dropout, seeds[i], false);
            xd = drop;
        }
        int64_t ld = stacked ? xa_ld : R;
        if (!stacked)
            lc_tape_k(t)->gemm(false, true, N, R, C, 1, xd, C, lc_tape_act(t, lo->A), C, 0, xa[i],
                               R);
        if (with_term) {
            tg.y[tg.n] = y;
            term_add(&tg, i, L->W, xa[i], ld, lo->B->data, R, lo->scale);
            continue;
        }
        const lc_real *Bact = lc_tape_act(t, lo->B);
        if (!cnorm[i]) {
            lc_tape_k(t)->gemm(false, true, N, O, R, lo->scale, xa[i], ld, Bact, R, 1, y, O);
            continue;
        }
        LC_ASSERT(lo->m->numel == O);
        if (norm[i]) {
            lc_real *nscr = scratch_f32(t, lc_tape_k(t)->dora_norm_scratch(L->W));
            lc_tape_k(t)->dora_norm(L->W, lo->A->data, lo->B->data, R, lo->scale, norm[i], nscr);
        }
        lc_real *g = dora_scale(t, lo->m, cnorm[i]);
        if (xd != xin)
            lc_tape_k(t)->weight_matmul(xd, N, L->W, 0, u, wscr);
        lc_real *v = scratch(t, (size_t)(N * O)); /* s·xa·Bᵀ */
        lc_tape_k(t)->gemm(false, true, N, O, R, lo->scale, xa[i], R, Bact, R, 0, v, O);
        lc_tape_k(t)->dora_combine(N, O, g, u, v, y);
        lc_tape_release(t, m2);
    }
    if (tg.n)
        t->be->linear_lora(xin, N, tg.n, tg.W, tg.term, residual ? 1 : 0, tg.y, wscr);
    for (int k = 0; k < tg.n; k++)
        if (lin[tg.which[k]].bias)
            lc_tape_k(t)->add_bias(N, lin[tg.which[k]].W->rows, lin[tg.which[k]].bias, tg.y[k]);
    lc_tape_release(t, mark);

    if (!record)
        return;
    c->in = *in;
    c->n = n;
    c->residual = residual;
    c->rstd = rstd;
    c->dropout_on = dropout_on;
    c->xa_ld = xa_ld;
    for (int i = 0; i < n; i++) {
        c->xa_col[i] = xa_col[i];
        c->lin[i] = lin[i];
        c->xa[i] = xa[i];
        c->norm[i] = cnorm[i];
        c->seed[i] = seeds[i];
    }
    lc_node *node = lc_tape_record(t, "linears", linears_backward, deps, nd < LC_NODE_MAX_IO ? nd : LC_NODE_MAX_IO, out, n);
    node->ctx = c;
}

lc_tensor *lc_op_linear(lc_tape *t, lc_tensor *x, const lc_linear *lin)
{
    lc_linear_input in = {.kind = LC_INPUT_PLAIN, .x = x};
    lc_tensor *out;
    lc_op_linears(t, &in, lin, 1, NULL, &out);
    return out;
}

/* ---- embedding ---- */

lc_tensor *lc_op_embedding(lc_tape *t, const lc_weight *E, const int32_t *ids, int64_t N)
{
    lc_tensor *x = lc_tape_tensor2(t, N, E->cols);
    lc_tape_k(t)->embedding(E, ids, N, x->data);
    return x;
}

/* ---- rmsnorm ---- */

typedef struct rmsnorm_ctx {
    const lc_real *w;
    lc_real *rstd;
    int64_t C;
} rmsnorm_ctx;

static void rmsnorm_backward(lc_tape *t, lc_node *node)
{
    rmsnorm_ctx *c = node->ctx;
    lc_tensor *x = node->in[0];
    lc_tape_k(t)->rmsnorm_bwd(x->data, c->w, c->rstd, node->out[0]->grad, x->numel / c->C, c->C,
                     lc_tape_grad(t, x));
}

lc_tensor *lc_op_rmsnorm(lc_tape *t, lc_tensor *x, int64_t C, const lc_real *w, double eps)
{
    LC_ASSERT(C > 0 && x->numel % C == 0);
    int64_t rows = x->numel / C;
    lc_tensor *y = lc_tape_tensor(t, x->ndim, x->shape);
    lc_real *rstd = scratch_f32(t, (size_t)rows);
    lc_tape_k(t)->rmsnorm_fwd(x->data, w, rows, C, eps, y->data, rstd);
    if (lc_tape_needs_grad(t, &x, 1)) {
        rmsnorm_ctx *c = lc_arena_alloc(t->arena, sizeof *c);
        *c = (rmsnorm_ctx){w, rstd, C};
        lc_tape_record(t, "rmsnorm", rmsnorm_backward, &x, 1, &y, 1)->ctx = c;
    }
    return y;
}

/* ---- rope (in place) ---- */

typedef struct rope_ctx {
    int heads, D;
    const int32_t *pos;
    const lc_real *cos_sin;
} rope_ctx;

static void rope_backward(lc_tape *t, lc_node *node)
{
    rope_ctx *c = node->ctx;
    lc_tensor *x = node->in[0];
    int64_t N = lc_tensor_rows(x);
    lc_tape_k(t)->rope(node->out[0]->grad, lc_tape_grad(t, x), N, c->heads, c->D, c->pos,
              c->cos_sin, true, true);
}

lc_tensor *lc_op_rope(lc_tape *t, lc_tensor *x, int heads, int D, const int32_t *pos,
                      const lc_real *cos_sin)
{
    LC_ASSERT(lc_tensor_cols(x) == (int64_t)heads * D && D % 2 == 0);
    int64_t N = lc_tensor_rows(x);
    lc_tensor *y = lc_arena_alloc(t->arena, sizeof *y);
    *y = *x; /* same data (in place), its own gradient */
    y->grad = NULL;
    y->requires_grad = false;
    y->is_param = false;
    lc_tape_k(t)->rope(x->data, y->data, N, heads, D, pos, cos_sin, false, false);
    if (lc_tape_needs_grad(t, &x, 1)) {
        rope_ctx *c = lc_arena_alloc(t->arena, sizeof *c);
        *c = (rope_ctx){heads, D, pos, cos_sin};
        lc_tape_record(t, "rope", rope_backward, &x, 1, &y, 1)->ctx = c;
    }
    return y;
}

/* ---- attention ---- */

typedef struct attn_ctx {
    const lc_attn_shape *s;
    lc_real *lse;
} attn_ctx;

static void attention_backward(lc_tape *t, lc_node *node)
{
    attn_ctx *c = node->ctx;
    lc_tensor *q = node->in[0], *k = node->in[1], *v = node->in[2], *o = node->out[0];
    lc_tape_mark mark = lc_tape_mark_now(t);
    lc_real *scr = scratch_f32(t, lc_tape_k(t)->attention_scratch(c->s));
    lc_tape_k(t)->attention_bwd(c->s, q->data, k->data, v->data, o->data, c->lse, o->grad,
                       lc_tape_grad(t, q), lc_tape_grad(t, k), lc_tape_grad(t, v), scr);
    lc_tape_release(t, mark);
}

lc_tensor *lc_op_attention(lc_tape *t, lc_tensor *q, lc_tensor *k, lc_tensor *v,
                           const lc_attn_shape *s)
{
    int64_t N = s->B * s->T;
    LC_ASSERT(q->numel == N * s->H * s->D && k->numel == s->B * (s->past + s->T) * s->KV * s->D &&
              v->numel == k->numel && s->H % s->KV == 0);
    lc_tensor *o = lc_tape_tensor2(t, N, (int64_t)s->H * s->D);
    lc_real *lse = scratch_f32(t, (size_t)(N * s->H));
    lc_tape_mark mark = lc_tape_mark_now(t);
    lc_real *scr = scratch_f32(t, lc_tape_k(t)->attention_scratch(s));
    lc_tape_k(t)->attention_fwd(s, q->data, k->data, v->data, o->data, lse, scr);
    lc_tape_release(t, mark);
    lc_tensor *in[3] = {q, k, v};
    if (lc_tape_needs_grad(t, in, 3)) {
        LC_ASSERT(s->past == 0); /* cached keys: decoding only, no backward */
        attn_ctx *c = lc_arena_alloc(t->arena, sizeof *c);
        *c = (attn_ctx){s, lse};
        lc_tape_record(t, "attention", attention_backward, in, 3, &o, 1)->ctx = c;
    }
    return o;
}

/* ---- elementwise ---- */

static void add_backward(lc_tape *t, lc_node *node)
{
    lc_tape_grad_pass(t, node->in[0], node->out[0], false);
    lc_tape_grad_pass(t, node->in[1], node->out[0], true);
}

lc_tensor *lc_op_add(lc_tape *t, lc_tensor *a, lc_tensor *b)
{
    LC_ASSERT(a->numel == b->numel);
    lc_tensor *y = lc_tape_tensor(t, a->ndim, a->shape);
    lc_tape_k(t)->add(a->numel, a->data, b->data, y->data);
    lc_tensor *in[2] = {a, b};
    if (lc_tape_needs_grad(t, in, 2))
        lc_tape_record(t, "add", add_backward, in, 2, &y, 1);
    return y;
}

/* The gated activations y = act(g) · u share one op; ctx names the kernels. */
typedef struct gated_kernels {
    const char *name;
    bool geglu_tanh; /* else swiglu */
} gated_kernels;

static const gated_kernels SWIGLU = {"swiglu", false};
static const gated_kernels GEGLU_TANH = {"geglu_tanh", true};

static void gated_backward(lc_tape *t, lc_node *node)
{
    const gated_kernels *k = node->ctx;
    lc_tensor *g = node->in[0], *u = node->in[1];
    const lc_kernels *kt = lc_tape_k(t);
    (k->geglu_tanh ? kt->geglu_tanh_bwd : kt->swiglu_bwd)(g->data, u->data, node->out[0]->grad,
                                                          g->numel, lc_tape_grad(t, g),
                                                          lc_tape_grad(t, u), NULL);
}

static lc_tensor *gated_op(lc_tape *t, lc_tensor *g, lc_tensor *u, const gated_kernels *k)
{
    LC_ASSERT(g->numel == u->numel);
    lc_tensor *y = lc_tape_tensor(t, g->ndim, g->shape);
    const lc_kernels *kt = lc_tape_k(t);
    (k->geglu_tanh ? kt->geglu_tanh_fwd : kt->swiglu_fwd)(g->data, u->data, g->numel, y->data);
    lc_tensor *in[2] = {g, u};
    if (lc_tape_needs_grad(t, in, 2))
        lc_tape_record(t, k->name, gated_backward, in, 2, &y, 1)->ctx = (void *)k;
    return y;
}

lc_tensor *lc_op_swiglu(lc_tape *t, lc_tensor *g, lc_tensor *u)
{
    return gated_op(t, g, u, &SWIGLU);
}

lc_tensor *lc_op_geglu_tanh(lc_tape *t, lc_tensor *g, lc_tensor *u)
{
    return gated_op(t, g, u, &GEGLU_TANH);
}

/* ---- scale ---- */

static void scale_backward(lc_tape *t, lc_node *node)
{
    lc_tensor *x = node->in[0], *y = node->out[0];
    lc_tape_k(t)->axpy(x->numel, *(const lc_real *)node->ctx, y->grad, lc_tape_grad(t, x));
}

lc_tensor *lc_op_scale(lc_tape *t, lc_tensor *x, lc_real s)
{
    lc_tensor *y = lc_tape_tensor(t, x->ndim, x->shape); /* same shape as x */
    lc_tape_k(t)->scale(x->numel, s, x->data, y->data);
    if (lc_tape_needs_grad(t, &x, 1)) {
        lc_real *c = lc_arena_alloc(t->arena, sizeof *c);
        *c = s;
        lc_tape_record(t, "scale", scale_backward, &x, 1, &y, 1)->ctx = c;
    }
    return y;
}

/* ---- split by columns ---- */

/* Copies the columns [c0, c0 + w) of wide [N, ld] into part [N, w] — or,
 * when add, adds part back into those columns of wide. */
static void split_backward(lc_tape *t, lc_node *node)
{
    lc_tensor *x = node->in[0];
    lc_real *gx = lc_tape_grad(t, x);
    if (!gx)
        return;
    int64_t N = lc_tensor_rows(x), W = lc_tensor_cols(x), c0 = 0;
    for (int i = 0; i < node->n_out; i++) {
        lc_tensor *o = node->out[i];
        int64_t w = lc_tensor_cols(o);
        if (o->grad)
            lc_tape_k(t)->cols(gx, N, W, c0, w, o->grad, true);
        c0 += w;
    }
}

void lc_op_split_cols(lc_tape *t, lc_tensor *x, int n, const int64_t *widths, lc_tensor **out)
{
    LC_ASSERT(n >= 1 && n <= LC_NODE_MAX_IO);
    int64_t N = lc_tensor_rows(x), W = lc_tensor_cols(x), c0 = 0; /* x [N, W] */
    for (int i = 0; i < n; i++) {
        LC_ASSERT(widths[i] > 0 && c0 + widths[i] <= W);
        out[i] = lc_tape_tensor2(t, N, widths[i]);                 /* [N, widths[i]] */
        lc_tape_k(t)->cols(x->data, N, W, c0, widths[i], out[i]->data, false);
        c0 += widths[i];
    }
    LC_ASSERT(c0 == W);
    if (lc_tape_needs_grad(t, &x, 1))
        lc_tape_record(t, "split_cols", split_backward, &x, 1, out, n);
}

/* ---- fused lm_head + cross-entropy ---- */

static void ce_backward(lc_tape *t, lc_node *node)
{
    lc_real *dx_saved = node->ctx;
    lc_tensor *x = node->in[0];
    lc_real seed[1] = {1}; /* d(root)/d(loss): 1 at the root, else read from the backend */
    if (node->out[0] != t->root)
        lc_tape_to_host(t, seed, node->out[0]->grad, 1);
    lc_tape_k(t)->axpy(x->numel, seed[0], dx_saved, lc_tape_grad(t, x));
}

lc_tensor *lc_op_lm_head_ce(lc_tape *t, lc_tensor *x, const lc_weight *W,
                            const int32_t *targets, lc_real grad_scale,
                            double *loss_sum, int64_t *n_supervised, double softcap)
{
    int64_t N = lc_tensor_rows(x), C = lc_tensor_cols(x);
    LC_ASSERT(W->cols == C);
    bool record = lc_tape_needs_grad(t, &x, 1);
    lc_real *dx = record ? scratch_zero(t, (size_t)x->numel) : NULL;
    int64_t one = 1;
    lc_tensor *loss = lc_tape_tensor(t, 1, &one);
    lc_tape_mark mark = lc_tape_mark_now(t);
    lc_real *scr = scratch_f32(t, lc_tape_k(t)->ce_scratch(N, C, W->rows, W));
    int64_t nsup = 0;
    double sum = lc_tape_k(t)->lm_head_ce(x->data, N, C, W, targets, grad_scale, dx, &nsup, scr,
                                          softcap);
    lc_tape_release(t, mark);
    const lc_real scaled = (lc_real)(sum * grad_scale);
    lc_tape_from_host(t, loss->data, &scaled, 1);
    if (loss_sum)
        *loss_sum = sum;
    if (n_supervised)
        *n_supervised = nsup;
    if (record)
        lc_tape_record(t, "lm_head_ce", ce_backward, &x, 1, &loss, 1)->ctx = dx;
    return loss;
}

/* ---- gradient checkpointing ---- */

typedef struct ckpt_ctx {
    lc_block_fn fn;
    void *ctx;
    uint64_t op_counter; /* dropout streams of the block's ops */
} ckpt_ctx;

static void checkpoint_backward(lc_tape *t, lc_node *node)
{
    ckpt_ctx c = *(ckpt_ctx *)node->ctx;
    lc_tensor *x = node->in[0], *y = node->out[0];
    lc_tape_mark mark = lc_tape_mark_now(t);
    size_t first = t->n_nodes;
    /* x's values are intact (in place ops never touch a block's input);
     * recompute from a leaf that shares them */
    lc_tensor *xr = lc_arena_alloc(t->arena, sizeof *xr);
    *xr = *x;
    xr->grad = NULL;
    xr->is_param = false;
    uint64_t counter = t->op_counter;
    t->op_counter = c.op_counter;
    lc_tensor *yr = c.fn(t, c.ctx, xr);
    t->op_counter = counter;
    LC_ASSERT(yr->numel == y->numel);
    if (yr->requires_grad) {
        yr->grad = y->grad; /* y's gradient, still owned by y */
        yr->is_param = true;
        lc_tape_walk_back(t, first);
    }
    t->n_nodes = first;
    lc_real *gx = lc_tape_grad(t, x);
    if (gx && xr->grad)
        lc_tape_k(t)->axpy(x->numel, 1, xr->grad, gx);
    lc_tape_release_grad(t, xr);
    lc_tape_release(t, mark);
}

lc_tensor *lc_op_checkpoint(lc_tape *t, lc_block_fn fn, void *ctx, lc_tensor *x)
{
    if (!t->grad_enabled)
        return fn(t, ctx, x);
    lc_tensor *y = lc_tape_tensor(t, x->ndim, x->shape);
    ckpt_ctx *c = lc_arena_alloc(t->arena, sizeof *c);
    *c = (ckpt_ctx){fn, ctx, t->op_counter};
    lc_tape_mark mark = lc_tape_mark_now(t);
    t->grad_enabled = false;
    lc_tensor *y0 = fn(t, ctx, x);
    t->grad_enabled = true;
    LC_ASSERT(y0->numel == y->numel);
    lc_tape_copy(t, y->data, y0->data, y->numel);
    lc_tape_release(t, mark);
    /* LoRA parameters inside the block need gradients even when x does not
     * (the first layer's input is a frozen embedding): always record. */
    lc_tape_record(t, "checkpoint", checkpoint_backward, &x, 1, &y, 1)->ctx = c;
    return y;
}

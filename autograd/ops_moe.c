/* ops_moe.c — router top-k, expert gather and combine (see ops_moe.h).
 *
 * Same pattern as ops.c: outputs and what backward keeps in the step arena,
 * a node only when some input requires grad. The work here is O(N·k·C) row
 * moves next to the experts' GEMMs, parallel over tokens or rows (rows of
 * one expert belong to distinct tokens, so scatters never collide). */
#include "autograd/ops_moe.h"

#include <math.h>
#include <string.h>

#include "autograd/error.h"
#include "autograd/kernels.h"

/* ---- router top-k ---- */

/* The k largest of z[E] into ids (descending; equal values: lower id first). */
static void topk_ids(const lc_real *z, int E, int k, int32_t *ids)
{
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int i = 0; i < E; i++) {
            bool taken = false;
            for (int q = 0; q < j; q++)
                taken |= ids[q] == i;
            if (!taken && (best < 0 || z[i] > z[best]))
                best = i;
        }
        ids[j] = best;
    }
}

/* p[E] = softmax(z) in double. */
static void softmax_d(const lc_real *z, int E, double *p)
{
    double m = z[0];
    for (int i = 1; i < E; i++)
        m = z[i] > m ? z[i] : m;
    double sum = 0;
    for (int i = 0; i < E; i++)
        sum += p[i] = exp((double)z[i] - m);
    for (int i = 0; i < E; i++)
        p[i] /= sum;
}

typedef struct router_ctx {
    lc_router_spec spec;
    const lc_moe_route *route;
} router_ctx;

/* With renorm, w = softmax over the chosen logits: dz_s = w_s·(dw_s − Σ w·dw).
 * Without, w_j = p[id_j] of the full softmax: dz_i = [i chosen]·dw·p_i − p_i·Σ w·dw. */
static void router_backward(lc_tape *t, lc_node *node)
{
    const router_ctx *c = node->ctx;
    lc_tensor *z = node->in[0], *w = node->out[0];
    lc_real *dz = lc_tape_grad(t, z);
    if (!dz)
        return;
    const lc_moe_route *r = c->route;
    int E = r->E, k = r->k;
    size_t mark = lc_arena_mark(t->arena);
    double *pbuf = c->spec.renorm ? NULL
                                  : lc_arena_alloc(t->arena, (size_t)(r->N * E) * sizeof(double));
    int64_t rows = t->dry ? 0 : r->N;
#pragma omp parallel for schedule(static) if (r->N * E >= 8192)
    for (int64_t n = 0; n < rows; n++) {
        const lc_real *wn = w->data + n * k, *dwn = w->grad + n * k;
        const int32_t *ids = r->expert + n * k;
        lc_real *dzn = dz + n * E;
        double s = 0;
        for (int j = 0; j < k; j++)
            s += (double)wn[j] * (double)dwn[j];
        if (c->spec.renorm) {
            for (int j = 0; j < k; j++)
                dzn[ids[j]] += (lc_real)((double)wn[j] * ((double)dwn[j] - s));
            continue;
        }
        double *p = pbuf + n * E;
        softmax_d(z->data + n * E, E, p);
        for (int i = 0; i < E; i++)
            dzn[i] -= (lc_real)(p[i] * s);
        for (int j = 0; j < k; j++)
            dzn[ids[j]] += (lc_real)(p[ids[j]] * (double)dwn[j]);
    }
    lc_arena_release(t->arena, mark);
}

/* Counting sort of the (token, slot) pairs by expert, stable in token
 * order; cursor [E] is scratch. */
static void group_rows(lc_moe_route *r, int64_t *cursor)
{
    int64_t NK = r->N * r->k;
    memset(r->offset, 0, (size_t)(r->E + 1) * sizeof(int64_t));
    for (int64_t i = 0; i < NK; i++)
        r->offset[r->expert[i] + 1]++;
    for (int e = 0; e < r->E; e++)
        r->offset[e + 1] += r->offset[e];
    memcpy(cursor, r->offset, (size_t)r->E * sizeof(int64_t));
    for (int64_t i = 0; i < NK; i++) {
        int64_t row = cursor[r->expert[i]]++;
        r->token[row] = (int32_t)(i / r->k);
        r->row[i] = row;
    }
}

lc_tensor *lc_op_router_topk(lc_tape *t, lc_tensor *logits, const lc_router_spec *spec,
                             lc_moe_route **route)
{
    LC_ASSERT(!t->be->device); /* routing reads host memory (see ops_moe.h) */
    int64_t N = lc_tensor_rows(logits);
    int E = (int)lc_tensor_cols(logits), k = spec->k;
    LC_ASSERT(spec->mode == LC_ROUTER_SOFTMAX_THEN_TOPK && k >= 1 && k <= E);
    LC_ASSERT(N * k <= INT32_MAX);
    lc_moe_route *r = lc_arena_alloc(t->arena, sizeof *r);
    *r = (lc_moe_route){.N = N, .E = E, .k = k};
    r->expert = lc_arena_alloc(t->arena, (size_t)(N * k) * sizeof(int32_t));
    r->offset = lc_arena_alloc(t->arena, (size_t)(E + 1) * sizeof(int64_t));
    r->token = lc_arena_alloc(t->arena, (size_t)(N * k) * sizeof(int32_t));
    r->row = lc_arena_alloc(t->arena, (size_t)(N * k) * sizeof(int64_t));
    lc_tensor *w = lc_tape_tensor2(t, N, k);

    size_t mark = lc_arena_mark(t->arena);
    double *pbuf = lc_arena_alloc(t->arena, (size_t)(N * E) * sizeof(double));
    int64_t rows = t->dry ? 0 : N;
#pragma omp parallel for schedule(static) if (N * E >= 8192)
    for (int64_t n = 0; n < rows; n++) {
        int32_t *ids = r->expert + n * k;
        double *p = pbuf + n * E;
        topk_ids(logits->data + n * E, E, k, ids);
        softmax_d(logits->data + n * E, E, p);
        double sel = 0;
        for (int j = 0; j < k; j++)
            sel += p[ids[j]];
        for (int j = 0; j < k; j++)
            w->data[n * k + j] = (lc_real)(spec->renorm ? p[ids[j]] / sel : p[ids[j]]);
    }
    int64_t *cursor = lc_arena_alloc(t->arena, (size_t)E * sizeof(int64_t));
    if (t->dry) /* the bound over every routing: each expert gets all N tokens */
        for (int e = 0; e <= E; e++)
            r->offset[e] = (int64_t)e * N;
    else
        group_rows(r, cursor);
    lc_arena_release(t->arena, mark);

    *route = r;
    if (lc_tape_needs_grad(t, &logits, 1)) {
        router_ctx *c = lc_arena_alloc(t->arena, sizeof *c);
        *c = (router_ctx){*spec, r};
        lc_tape_record(t, "router_topk", router_backward, &logits, 1, &w, 1)->ctx = c;
    }
    return w;
}

/* ---- gather ---- */

typedef struct gather_ctx {
    const lc_moe_route *route;
    int e;
} gather_ctx;

static void gather_backward(lc_tape *t, lc_node *node)
{
    const gather_ctx *c = node->ctx;
    lc_tensor *x = node->in[0], *xg = node->out[0];
    lc_real *dx = lc_tape_grad(t, x);
    if (!dx)
        return;
    int64_t C = lc_tensor_cols(x), n_e = t->dry ? 0 : lc_tensor_rows(xg);
    const int32_t *tok = c->route->token + c->route->offset[c->e];
#pragma omp parallel for schedule(static) if (n_e * C >= 32768)
    for (int64_t i = 0; i < n_e; i++)
        lc_k_axpy(C, 1, xg->grad + i * C, dx + (int64_t)tok[i] * C);
}

lc_tensor *lc_op_moe_gather(lc_tape *t, lc_tensor *x, const lc_moe_route *route, int e)
{
    LC_ASSERT(!t->be->device); /* routing reads host memory (see ops_moe.h) */
    LC_ASSERT(e >= 0 && e < route->E && lc_tensor_rows(x) == route->N);
    int64_t C = lc_tensor_cols(x), n_e = lc_moe_rows(route, e);
    LC_ASSERT(n_e > 0);
    lc_tensor *xg = lc_tape_tensor2(t, n_e, C);
    const int32_t *tok = route->token + route->offset[e];
    int64_t rows = t->dry ? 0 : n_e;
#pragma omp parallel for schedule(static) if (n_e * C >= 32768)
    for (int64_t i = 0; i < rows; i++)
        memcpy(xg->data + i * C, x->data + (int64_t)tok[i] * C, (size_t)C * sizeof(lc_real));
    if (lc_tape_needs_grad(t, &x, 1)) {
        gather_ctx *c = lc_arena_alloc(t->arena, sizeof *c);
        *c = (gather_ctx){route, e};
        lc_tape_record(t, "moe_gather", gather_backward, &x, 1, &xg, 1)->ctx = c;
    }
    return xg;
}

/* ---- combine ---- */

typedef struct combine_ctx {
    const lc_moe_route *route;
    lc_tensor **y; /* [E] */
} combine_ctx;

/* Expert e's output row for (token n, slot j). */
static const lc_real *combine_row(const lc_moe_route *r, lc_tensor *const *y, int64_t n, int j,
                                  int64_t C)
{
    int e = r->expert[n * r->k + j];
    return y[e]->data + (r->row[n * r->k + j] - r->offset[e]) * C;
}

static void combine_backward(lc_tape *t, lc_node *node)
{
    const combine_ctx *c = node->ctx;
    const lc_moe_route *r = c->route;
    lc_tensor *w = node->in[0], *out = node->out[0];
    int64_t C = lc_tensor_cols(out);
    int k = r->k;
    size_t mark = lc_arena_mark(t->arena);
    lc_real **dy = lc_arena_alloc(t->arena, (size_t)r->E * sizeof *dy);
    for (int e = 0; e < r->E; e++)
        dy[e] = c->y[e] ? lc_tape_grad(t, c->y[e]) : NULL;
    lc_real *dw = lc_tape_grad(t, w);
    int64_t rows = t->dry ? 0 : r->N;
#pragma omp parallel for schedule(static) if (r->N * k * C >= 32768)
    for (int64_t n = 0; n < rows; n++) {
        const lc_real *dout = out->grad + n * C;
        for (int j = 0; j < k; j++) {
            int e = r->expert[n * k + j];
            int64_t i = r->row[n * k + j] - r->offset[e];
            if (dy[e])
                lc_k_axpy(C, w->data[n * k + j], dout, dy[e] + i * C);
            if (dw) {
                const lc_real *ye = combine_row(r, c->y, n, j, C);
                double s = 0;
                for (int64_t q = 0; q < C; q++)
                    s += (double)dout[q] * (double)ye[q];
                dw[n * k + j] += (lc_real)s;
            }
        }
    }
    lc_arena_release(t->arena, mark);
}

lc_tensor *lc_op_moe_combine(lc_tape *t, lc_tensor *w, lc_tensor *const *y,
                             const lc_moe_route *route)
{
    LC_ASSERT(!t->be->device); /* routing reads host memory (see ops_moe.h) */
    int E = route->E, k = route->k;
    LC_ASSERT(lc_tensor_rows(w) == route->N && lc_tensor_cols(w) == k);
    int64_t C = -1;
    for (int e = 0; e < E; e++) {
        LC_ASSERT(!y[e] == (lc_moe_rows(route, e) == 0));
        if (!y[e])
            continue;
        LC_ASSERT(lc_tensor_rows(y[e]) == lc_moe_rows(route, e));
        LC_ASSERT(C < 0 || lc_tensor_cols(y[e]) == C);
        C = lc_tensor_cols(y[e]);
    }
    LC_ASSERT(C > 0);
    lc_tensor *out = lc_tape_tensor2(t, route->N, C);
    int64_t rows = t->dry ? 0 : route->N;
#pragma omp parallel for schedule(static) if (route->N * k * C >= 32768)
    for (int64_t n = 0; n < rows; n++) {
        lc_real *o = out->data + n * C;
        memset(o, 0, (size_t)C * sizeof(lc_real));
        for (int j = 0; j < k; j++)
            lc_k_axpy(C, w->data[n * k + j], combine_row(route, y, n, j, C), o);
    }

    bool record = lc_tape_needs_grad(t, &w, 1);
    for (int e = 0; e < E && !record; e++)
        record = y[e] && lc_tape_needs_grad(t, (lc_tensor *const *)&y[e], 1);
    if (record) {
        combine_ctx *c = lc_arena_alloc(t->arena, sizeof *c);
        c->route = route;
        c->y = lc_arena_alloc(t->arena, (size_t)E * sizeof *c->y);
        memcpy(c->y, y, (size_t)E * sizeof *c->y);
        /* the y[e] travel in the context: a node holds at most LC_NODE_MAX_IO inputs */
        lc_tape_record(t, "moe_combine", combine_backward, &w, 1, &out, 1)->ctx = c;
    }
    return out;
}

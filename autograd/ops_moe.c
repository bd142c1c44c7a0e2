/* ops_moe.c — router top-k, expert gather and combine (see ops_moe.h).
 *
 * Same pattern as ops.c: outputs and what backward keeps in the step arena,
 * a node only when some input requires grad, element memory touched only
 * through the tape's backend. The row moves, O(N·k·C) next to the experts'
 * GEMMs, are one backend kernel per expert (rows of one expert belong to
 * distinct tokens, so its scatters never collide). The routing runs on the
 * host over host views of the tensors (host_buffer): the tensors themselves
 * on the CPU, copies in the host step arena on a device. A dry run makes the
 * same allocations and skips the host loops (its buffers are not memory). */
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

/* n lc_real of host memory standing for the activation elements p of the
 * tape's backend: p itself on the CPU, else scratch in the host step arena
 * (above the caller's mark), filled from p (widened to lc_real) when fetch. */
static lc_real *host_buffer(lc_tape *t, lc_real *p, int64_t n, bool fetch)
{
    if (!t->be->device)
        return p;
    lc_real *h = lc_arena_alloc(t->arena, (size_t)n * sizeof(lc_real));
    if (fetch)
        lc_tape_to_host(t, h, p, n);
    return h;
}

/* Writes a host_buffer h of n elements back into p (nothing to do on the CPU). */
static void host_store(lc_tape *t, lc_real *p, const lc_real *h, int64_t n)
{
    if (t->be->device)
        lc_tape_from_host(t, p, h, n);
}

/* Uploads the int32 row indices idx[n] into p (nothing to do on the CPU). */
static void host_store_idx(lc_tape *t, int32_t *p, const int32_t *idx, int64_t n)
{
    if (t->be->device)
        t->be->upload(t->be, p, idx, (size_t)n * sizeof *idx);
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
    lc_real *dz_be = lc_tape_grad(t, z);
    if (!dz_be)
        return;
    const lc_moe_route *r = c->route;
    int E = r->E, k = r->k;
    int64_t N = r->N;
    lc_tape_mark mark = lc_tape_mark_now(t);
    lc_real *dz = host_buffer(t, dz_be, N * E, true);
    const lc_real *wv = host_buffer(t, w->data, N * k, true);
    const lc_real *dw = host_buffer(t, w->grad, N * k, true);
    const lc_real *zv = c->spec.renorm ? NULL : host_buffer(t, z->data, N * E, true);
    double *pbuf = c->spec.renorm ? NULL
                                  : lc_arena_alloc(t->arena, (size_t)(N * E) * sizeof(double));
    int64_t rows = t->dry ? 0 : N;
#pragma omp parallel for schedule(static) if (N * E >= 8192)
    for (int64_t n = 0; n < rows; n++) {
        const lc_real *wn = wv + n * k, *dwn = dw + n * k;
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
        softmax_d(zv + n * E, E, p);
        for (int i = 0; i < E; i++)
            dzn[i] -= (lc_real)(p[i] * s);
        for (int j = 0; j < k; j++)
            dzn[ids[j]] += (lc_real)(p[ids[j]] * (double)dwn[j]);
    }
    host_store(t, dz_be, dz, N * E);
    lc_tape_release(t, mark);
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
        r->pair[row] = (int32_t)i;
    }
}

lc_tensor *lc_op_router_topk(lc_tape *t, lc_tensor *logits, const lc_router_spec *spec,
                             lc_moe_route **route)
{
    int64_t N = lc_tensor_rows(logits);
    int E = (int)lc_tensor_cols(logits), k = spec->k;
    LC_ASSERT(spec->mode == LC_ROUTER_SOFTMAX_THEN_TOPK && k >= 1 && k <= E);
    LC_ASSERT(N * k <= INT32_MAX);
    size_t nk_bytes = (size_t)(N * k) * sizeof(int32_t);
    lc_moe_route *r = lc_arena_alloc(t->arena, sizeof *r);
    *r = (lc_moe_route){.N = N, .E = E, .k = k};
    r->expert = lc_arena_alloc(t->arena, nk_bytes);
    r->offset = lc_arena_alloc(t->arena, (size_t)(E + 1) * sizeof(int64_t));
    r->token = lc_arena_alloc(t->arena, nk_bytes);
    r->pair = lc_arena_alloc(t->arena, nk_bytes);
    int32_t *token_be = t->be->device ? lc_arena_alloc(t->data, nk_bytes) : r->token;
    int32_t *pair_be = t->be->device ? lc_arena_alloc(t->data, nk_bytes) : r->pair;
    r->token_be = token_be;
    r->pair_be = pair_be;
    lc_tensor *w = lc_tape_tensor2(t, N, k);

    lc_tape_mark mark = lc_tape_mark_now(t);
    const lc_real *z = host_buffer(t, logits->data, N * E, true);
    lc_real *wv = host_buffer(t, w->data, N * k, false);
    double *pbuf = lc_arena_alloc(t->arena, (size_t)(N * E) * sizeof(double));
    int64_t rows = t->dry ? 0 : N;
#pragma omp parallel for schedule(static) if (N * E >= 8192)
    for (int64_t n = 0; n < rows; n++) {
        int32_t *ids = r->expert + n * k;
        double *p = pbuf + n * E;
        topk_ids(z + n * E, E, k, ids);
        softmax_d(z + n * E, E, p);
        double sel = 0;
        for (int j = 0; j < k; j++)
            sel += p[ids[j]];
        for (int j = 0; j < k; j++)
            wv[n * k + j] = (lc_real)(spec->renorm ? p[ids[j]] / sel : p[ids[j]]);
    }
    int64_t *cursor = lc_arena_alloc(t->arena, (size_t)E * sizeof(int64_t));
    if (t->dry) /* the bound over every routing: each expert gets all N tokens */
        for (int e = 0; e <= E; e++)
            r->offset[e] = (int64_t)e * N;
    else
        group_rows(r, cursor);
    host_store(t, w->data, wv, N * k);
    host_store_idx(t, token_be, r->token, N * k);
    host_store_idx(t, pair_be, r->pair, N * k);
    lc_tape_release(t, mark);

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
    const int32_t *tok = c->route->token_be + c->route->offset[c->e];
    lc_tape_k(t)->scatter_add_rows(xg->grad, tok, NULL, NULL, lc_tensor_rows(xg), lc_tensor_cols(x),
                                   dx);
}

lc_tensor *lc_op_moe_gather(lc_tape *t, lc_tensor *x, const lc_moe_route *route, int e)
{
    LC_ASSERT(e >= 0 && e < route->E && lc_tensor_rows(x) == route->N);
    int64_t C = lc_tensor_cols(x), n_e = lc_moe_rows(route, e);
    LC_ASSERT(n_e > 0);
    lc_tensor *xg = lc_tape_tensor2(t, n_e, C); /* [n_e, C] */
    lc_tape_k(t)->gather_rows(x->data, route->token_be + route->offset[e], n_e, C, xg->data);
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

/* Per expert e with rows: dy[e] += w · dout[token] (its rows' gradient) and
 * dw[pair] += dout[token] · y[e] (the weights'). */
static void combine_backward(lc_tape *t, lc_node *node)
{
    const combine_ctx *c = node->ctx;
    const lc_moe_route *r = c->route;
    lc_tensor *w = node->in[0], *out = node->out[0];
    int64_t C = lc_tensor_cols(out);
    size_t mark = lc_arena_mark(t->arena);
    lc_real **dy = lc_arena_alloc(t->arena, (size_t)r->E * sizeof *dy);
    for (int e = 0; e < r->E; e++)
        dy[e] = c->y[e] ? lc_tape_grad(t, c->y[e]) : NULL;
    lc_real *dw = lc_tape_grad(t, w);
    for (int e = 0; e < r->E; e++) {
        if (!c->y[e])
            continue;
        int64_t n_e = lc_moe_rows(r, e);
        const int32_t *tok = r->token_be + r->offset[e], *pair = r->pair_be + r->offset[e];
        if (dy[e])
            lc_tape_k(t)->gather_add_rows(out->grad, tok, w->data, pair, n_e, C, dy[e]);
        if (dw)
            lc_tape_k(t)->row_dots(out->grad, tok, c->y[e]->data, pair, n_e, C, dw);
    }
    lc_arena_release(t->arena, mark);
}

lc_tensor *lc_op_moe_combine(lc_tape *t, lc_tensor *w, lc_tensor *const *y,
                             const lc_moe_route *route)
{
    int E = route->E;
    LC_ASSERT(lc_tensor_rows(w) == route->N && lc_tensor_cols(w) == route->k);
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
    lc_tensor *out = lc_tape_tensor2(t, route->N, C); /* [N, C] */
    lc_tape_zero(t, out->data, out->numel);
    for (int e = 0; e < E; e++)
        if (y[e]) /* out[token] += w[pair] · y[e] over expert e's rows */
            lc_tape_k(t)->scatter_add_rows(y[e]->data, route->token_be + route->offset[e], w->data,
                                    route->pair_be + route->offset[e], lc_moe_rows(route, e), C,
                                    out->data);

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

/* tape.c — node recording, gradient pool and the reverse walk (see tape.h). */
#include "tape.h"

#include <stdlib.h>
#include <string.h>

/* What both kinds of tape share: no nodes yet, recording on. */
static void tape_setup(lc_tape *t, lc_backend *be, lc_arena *host_arena, lc_arena *data_arena)
{
    memset(t, 0, sizeof *t);
    t->be = be;
    t->arena = host_arena;
    t->data = data_arena;
    t->grad_enabled = true;
    t->cap_nodes = 1024;
    t->nodes = malloc(t->cap_nodes * sizeof *t->nodes);
    t->cap_free = 256;
    t->free_bufs = malloc(t->cap_free * sizeof *t->free_bufs);
    LC_ASSERT(t->nodes && t->free_bufs);
}

int lc_tape_init_on(lc_tape *t, lc_backend *be, lc_arena *host_arena, lc_arena *data_arena,
                    size_t grad_capacity, lc_error *err)
{
    tape_setup(t, be, host_arena, data_arena);
    int rc = be->device ? lc_arena_init_device(&t->grad_arena, "gradient", grad_capacity, be, err)
                        : lc_arena_init(&t->grad_arena, "gradient", grad_capacity, err);
    if (rc) {
        lc_tape_free(t);
        return -1;
    }
    return 0;
}

int lc_tape_init(lc_tape *t, lc_arena *step_arena, size_t grad_capacity, lc_error *err)
{
    return lc_tape_init_on(t, lc_backend_cpu(), step_arena, step_arena, grad_capacity, err);
}

int lc_tape_init_dry_for(lc_tape *t, const lc_backend *target, lc_arena *host_arena,
                         lc_arena *data_arena, lc_error *err)
{
    tape_setup(t, lc_backend_dry(target), host_arena, data_arena);
    if (lc_arena_init_dry(host_arena, "dry step", err))
        goto fail;
    if (data_arena != host_arena && lc_arena_init_dry(data_arena, "dry step data", err)) {
        lc_arena_free(host_arena);
        goto fail;
    }
    if (lc_arena_init_dry(&t->grad_arena, "dry gradient", err)) {
        lc_arena_free(host_arena);
        if (data_arena != host_arena)
            lc_arena_free(data_arena);
        goto fail;
    }
    t->dry = true;
    return 0;
fail:
    lc_tape_free(t);
    return -1;
}

int lc_tape_init_dry(lc_tape *t, lc_arena *step_arena, lc_error *err)
{
    return lc_tape_init_dry_for(t, NULL, step_arena, step_arena, err);
}

void lc_tape_free(lc_tape *t)
{
    lc_arena_free(&t->grad_arena);
    free(t->nodes);
    free(t->free_bufs);
    memset(t, 0, sizeof *t);
}

void lc_tape_reset(lc_tape *t)
{
    t->n_nodes = 0;
    t->op_counter = 0;
    lc_arena_reset(t->arena);
    lc_arena_reset(t->data);
}

/* A tensor's header in the step arena, of the backend's activation dtype,
 * without data. */
static lc_tensor *tensor_header(lc_tape *t, int ndim, const int64_t *shape)
{
    lc_tensor *x = lc_arena_alloc(t->arena, sizeof *x);
    memset(x, 0, sizeof *x);
    lc_tensor_set_shape(x, ndim, shape);
    x->dtype = t->be->act;
    return x;
}

lc_tensor *lc_tape_tensor(lc_tape *t, int ndim, const int64_t *shape)
{
    lc_tensor *x = tensor_header(t, ndim, shape);
    x->data = lc_arena_alloc(t->data, lc_backend_act_bytes(t->be, x->numel));
    return x;
}

lc_real *lc_tape_scratch(lc_tape *t, size_t elems)
{
    return elems ? lc_arena_alloc(t->data, lc_backend_act_bytes(t->be, (int64_t)elems)) : NULL;
}

lc_real *lc_tape_scratch_f32(lc_tape *t, size_t elems)
{
    return elems ? lc_arena_alloc(t->data, elems * sizeof(lc_real)) : NULL;
}

lc_real *lc_tape_scratch_zero(lc_tape *t, size_t elems)
{
    lc_real *p = lc_tape_scratch(t, elems);
    lc_tape_zero(t, p, (int64_t)elems);
    return p;
}

void lc_tape_zero(const lc_tape *t, lc_real *p, int64_t n)
{
    if (n > 0)
        t->be->memset0(t->be, p, lc_backend_act_bytes(t->be, n));
}

const lc_real *lc_tape_act(lc_tape *t, const lc_tensor *x)
{
    if (t->be->act == LC_DTYPE_REAL || x->dtype == t->be->act)
        return x->data; /* (on an lc_real backend every tensor is lc_real) */
    LC_ASSERT(x->dtype == LC_DTYPE_REAL);
    lc_real *p = lc_tape_scratch(t, (size_t)x->numel);
    t->be->k.to_act(x->numel, x->data, p);
    return p;
}

/* bf16 transfers: down, the n halves land at the start of host's n lc_real
 * and are widened in place, back to front (no element is overwritten before
 * it is read); up, they are narrowed into staging in the host step arena. */
void lc_tape_to_host(lc_tape *t, lc_real *host, const lc_real *src, int64_t n)
{
    if (t->dry || n <= 0)
        return;
    t->be->download(t->be, host, src, lc_backend_act_bytes(t->be, n));
    if (t->be->act != LC_DTYPE_BF16)
        return;
    const uint16_t *h = (const uint16_t *)host;
    for (int64_t i = n; i-- > 0;)
        host[i] = lc_bf16_to_f32(h[i]);
}

void lc_tape_from_host(lc_tape *t, lc_real *dst, const lc_real *host, int64_t n)
{
    if (t->dry || n <= 0)
        return;
    if (t->be->act != LC_DTYPE_BF16) {
        t->be->upload(t->be, dst, host, lc_backend_act_bytes(t->be, n));
        return;
    }
    size_t mark = lc_arena_mark(t->arena);
    uint16_t *h = lc_arena_alloc(t->arena, (size_t)n * sizeof *h);
    for (int64_t i = 0; i < n; i++)
        h[i] = lc_f32_to_bf16((float)host[i]);
    t->be->upload(t->be, dst, h, (size_t)n * sizeof *h);
    lc_arena_release(t->arena, mark);
}

lc_tensor *lc_tape_tensor2(lc_tape *t, int64_t rows, int64_t cols)
{
    int64_t shape[2] = {rows, cols};
    return lc_tape_tensor(t, 2, shape);
}

void lc_tape_tensors2(lc_tape *t, int64_t rows, int n, const int64_t *cols, lc_tensor **out)
{
    size_t part[LC_NODE_MAX_IO], total = 0;
    LC_ASSERT(n >= 1 && n <= LC_NODE_MAX_IO);
    for (int i = 0; i < n; i++) {
        part[i] = lc_arena_align_up(lc_backend_act_bytes(t->be, rows * cols[i]));
        total += part[i];
    }
    char *data = lc_arena_alloc(t->data, total);
    for (int i = 0; i < n; i++) {
        int64_t shape[2] = {rows, cols[i]};
        out[i] = tensor_header(t, 2, shape);
        out[i]->data = (lc_real *)data;
        data += part[i];
    }
}

bool lc_tape_needs_grad(const lc_tape *t, lc_tensor *const *in, int n)
{
    if (!t->grad_enabled)
        return false;
    for (int i = 0; i < n; i++)
        if (in[i] && in[i]->requires_grad)
            return true;
    return false;
}

lc_node *lc_tape_record(lc_tape *t, const char *name, lc_backward_fn fn,
                        lc_tensor *const *in, int n_in, lc_tensor *const *out, int n_out)
{
    LC_ASSERT(n_in <= LC_NODE_MAX_IO && n_out <= LC_NODE_MAX_IO);
    if (t->n_nodes == t->cap_nodes) {
        t->cap_nodes *= 2;
        t->nodes = realloc(t->nodes, t->cap_nodes * sizeof *t->nodes);
        LC_ASSERT(t->nodes);
    }
    lc_node *node = &t->nodes[t->n_nodes++];
    memset(node, 0, sizeof *node);
    node->backward = fn;
    node->name = name;
    node->n_in = n_in;
    node->n_out = n_out;
    for (int i = 0; i < n_in; i++)
        node->in[i] = in[i];
    for (int i = 0; i < n_out; i++) {
        node->out[i] = out[i];
        if (out[i]) {
            out[i]->requires_grad = true;
            out[i]->grad = NULL;
        }
    }
    return node;
}

/* Best fit among released buffers; a new buffer is sized for max_rows rows
 * so later, longer micro-batches fit in it too. */
static lc_real *pool_take(lc_tape *t, lc_tensor *x)
{
    int64_t numel = x->numel;
    size_t best = t->n_free;
    for (size_t i = 0; i < t->n_free; i++) {
        int64_t cap = t->free_bufs[i].capacity;
        if (cap >= numel && (best == t->n_free || cap < t->free_bufs[best].capacity))
            best = i;
    }
    if (best < t->n_free) {
        lc_real *p = t->free_bufs[best].ptr;
        x->grad_capacity = t->free_bufs[best].capacity;
        t->free_bufs[best] = t->free_bufs[--t->n_free];
        return p;
    }
    int64_t rows = lc_tensor_rows(x), cap = numel;
    if (t->max_rows > rows)
        cap = t->max_rows * lc_tensor_cols(x);
    x->grad_capacity = cap;
    return lc_arena_alloc(&t->grad_arena, lc_backend_act_bytes(t->be, cap));
}

static void pool_give(lc_tape *t, lc_real *p, int64_t capacity)
{
    if (t->n_free == t->cap_free) {
        t->cap_free *= 2;
        t->free_bufs = realloc(t->free_bufs, t->cap_free * sizeof *t->free_bufs);
        LC_ASSERT(t->free_bufs);
    }
    t->free_bufs[t->n_free++] = (lc_grad_buf){p, capacity};
}

lc_real *lc_tape_grad(lc_tape *tape, lc_tensor *t)
{
    if (!t || !t->requires_grad)
        return NULL;
    if (!t->grad) {
        LC_ASSERT(!t->is_param);
        t->grad = pool_take(tape, t);
        lc_tape_zero(tape, t->grad, t->numel);
    }
    return t->grad;
}

void lc_tape_grad_pass(lc_tape *t, lc_tensor *x, lc_tensor *y, bool take)
{
    LC_ASSERT(x->numel == y->numel);
    if (!y->grad || !x->requires_grad)
        return;
    if (take && !x->grad && !x->is_param && !y->is_param && y != t->root) {
        x->grad = y->grad;
        x->grad_capacity = y->grad_capacity;
        y->grad = NULL;
        return;
    }
    lc_real *g = lc_tape_grad(t, x);
    lc_tape_k(t)->axpy(x->numel, 1, y->grad, g);
}

void lc_tape_walk_back(lc_tape *t, size_t from)
{
    for (size_t i = t->n_nodes; i-- > from;) {
        bool any = false;
        for (int k = 0; k < t->nodes[i].n_out; k++)
            any |= t->nodes[i].out[k] && t->nodes[i].out[k]->grad;
        if (any)
            t->nodes[i].backward(t, &t->nodes[i]);
        /* (a backward may append nodes — gradient checkpointing — and
         * move t->nodes: index again rather than keep a pointer) */
        lc_node *node = &t->nodes[i];
        for (int k = 0; k < node->n_out; k++) {
            lc_tensor *o = node->out[k];
            if (o && o->grad && !o->is_param) {
                pool_give(t, o->grad, o->grad_capacity);
                o->grad = NULL;
            }
        }
    }
    t->n_nodes = from;
}

void lc_tape_copy(const lc_tape *t, lc_real *dst, const lc_real *src, int64_t n)
{
    if (n > 0)
        t->be->copy(t->be, dst, src, lc_backend_act_bytes(t->be, n));
}

void lc_tape_release_grad(lc_tape *t, lc_tensor *x)
{
    if (x->grad && !x->is_param) {
        pool_give(t, x->grad, x->grad_capacity);
        x->grad = NULL;
    }
}

void lc_tape_backward(lc_tape *t, lc_tensor *loss)
{
    LC_ASSERT(loss->numel == 1);
    if (!loss->requires_grad)
        return;
    lc_real *g = lc_tape_grad(t, loss);
    const lc_real one = 1;
    lc_tape_from_host(t, g, &one, 1);
    t->root = loss;
    lc_tape_walk_back(t, 0);
    t->root = NULL;
}

/* moe_block.c — the MoE feed-forward block from the ops of ops.h and
 * ops_moe.h (see moe_block.h for the computation and the LoRA layout). */
#include "autograd/moe_block.h"

#include <string.h>

#include "autograd/error.h"

/* Rows [r0, r0 + rows) of the parameter B [.., R], as a tensor that shares
 * B's values and gradient buffer (gradients land in B's). */
static lc_tensor *param_rows(lc_tape *t, const lc_tensor *B, int64_t r0, int64_t rows)
{
    int64_t R = lc_tensor_cols(B);
    LC_ASSERT(B->ndim == 2 && r0 + rows <= B->shape[0]);
    LC_ASSERT(B->is_param || !B->requires_grad); /* a view needs B's grad buffer now */
    lc_tensor *v = lc_arena_alloc(t->arena, sizeof *v);
    *v = *B;
    int64_t shape[2] = {rows, R};
    lc_tensor_set_shape(v, 2, shape);
    v->data = B->data + r0 * R;
    v->grad = B->grad ? B->grad + r0 * R : NULL;
    return v;
}

/* The adapter of one half (gate: half 0, up: half 1) of a gate_up adapter. */
static const lc_lora_adapter *half_adapter(lc_tape *t, const lc_lora_adapter *lo, int64_t FF,
                                           int half)
{
    if (!lo)
        return NULL;
    LC_ASSERT(lo->B->shape[0] == 2 * FF && !lo->m && lo->dropout == 0);
    lc_lora_adapter *h = lc_arena_alloc(t->arena, sizeof *h);
    *h = *lo;
    h->B = param_rows(t, lo->B, half * FF, FF);
    return h;
}

/* ye [n_e, C] = SwiGLU expert e over its gathered rows xe [n_e, C]. */
static lc_tensor *expert_forward(lc_tape *t, const lc_moe_expert *ex, lc_tensor *xe)
{
    int64_t FF = ex->gate->rows;
    LC_ASSERT(ex->up->rows == FF && ex->down->cols == FF);
    LC_ASSERT(!ex->down_lora || (!ex->down_lora->m && ex->down_lora->dropout == 0));
    lc_linear gu[2] = {
        {.W = ex->gate, .lora = half_adapter(t, ex->gate_up_lora, FF, 0)},
        {.W = ex->up, .lora = half_adapter(t, ex->gate_up_lora, FF, 1)},
    };
    lc_tensor *h[2];
    lc_linear_input in = {.kind = LC_INPUT_PLAIN, .x = xe};
    lc_op_linears(t, &in, gu, 2, NULL, h);
    lc_linear down = {.W = ex->down, .lora = ex->down_lora};
    lc_linear_input sw = {.kind = LC_INPUT_SWIGLU, .x = h[0], .up = h[1]};
    lc_tensor *ye;
    lc_op_linears(t, &sw, &down, 1, NULL, &ye);
    return ye;
}

lc_tensor *lc_moe_block_forward(lc_tape *t, const lc_moe_block *b, lc_tensor *x,
                                lc_moe_route **route_out)
{
    LC_ASSERT(b->router->rows == b->E && b->router->cols == lc_tensor_cols(x));
    lc_linear router = {.W = b->router};
    lc_tensor *logits = lc_op_linear(t, x, &router); /* [N, E] */
    lc_moe_route *r;
    lc_tensor *w = lc_op_router_topk(t, logits, &b->route, &r); /* [N, k] */
    lc_tensor **y = lc_arena_alloc(t->arena, (size_t)b->E * sizeof *y);
    for (int e = 0; e < b->E; e++) {
        y[e] = NULL;
        if (lc_moe_rows(r, e) == 0)
            continue; /* no token chose e: no work, zero gradient for its LoRA */
        lc_tensor *xe = lc_op_moe_gather(t, x, r, e);
        y[e] = expert_forward(t, &b->experts[e], xe);
    }
    if (route_out)
        *route_out = r;
    return lc_op_moe_combine(t, w, y, r);
}

void lc_moe_lora_b_from_peft(const lc_real *peft_b, int64_t out, int64_t R, int E, int e,
                             lc_real *dst)
{
    LC_ASSERT(e >= 0 && e < E);
    for (int64_t o = 0; o < out; o++)
        for (int64_t j = 0; j < R; j++)
            dst[o * R + j] = peft_b[o * R * E + j * E + e];
}

void lc_moe_lora_b_to_peft(const lc_real *src, int64_t out, int64_t R, int E, int e,
                           lc_real *peft_b)
{
    LC_ASSERT(e >= 0 && e < E);
    for (int64_t o = 0; o < out; o++)
        for (int64_t j = 0; j < R; j++)
            peft_b[o * R * E + j * E + e] = src[o * R + j];
}

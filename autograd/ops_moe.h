/* ops_moe.h — the differentiable pieces of a mixture-of-experts feed-forward
 * (Mixtral, Qwen3-MoE): router top-k, per-expert gather of token rows, and
 * the weighted combine of expert outputs back into token order.
 *
 * Why separate ops rather than one fused block: each expert's SwiGLU is the
 * existing fused LoRA linear op (ops.h) over a contiguous [n_e, C] block of
 * the tokens routed to it, so one GEMM per expert and projection does all
 * the work and LoRA, dtype and quantised weights come for free. These ops
 * only move rows and routing weights around; moe_block.h strings them
 * together.
 *
 * Any backend: the rows move by the backend's kernels (kernels.h
 * lc_k_gather_rows, lc_k_scatter_add_rows, lc_k_gather_add_rows,
 * lc_k_row_dots), one call per expert. Only the routing runs on the host —
 * [N, E] logits, a top-k and a softmax per token, small next to the
 * experts' GEMMs: on a device backend the logits are downloaded, and the
 * routing weights and the row index arrays uploaded into the step's data
 * arena (the router's backward downloads w, dw and dz and uploads dz); on
 * the CPU the same code reads and writes the tensors in place.
 *
 * Routing (transformers 5.17 MixtralTopKRouter / Qwen3MoeTopKRouter): p =
 * softmax over all E logits of a token, the k largest kept (descending),
 * then renormalised to sum 1 when `renorm` (Mixtral always, Qwen3-MoE iff
 * norm_topk_prob) — the same as a softmax over the k chosen logits. The
 * softmax runs in double here (HF: float32). Ties: torch.topk leaves the
 * order of equal values to its partial sort (it differs with E), so no rule
 * can copy it; here the larger logit wins and equal logits go to the lower
 * expert id. The chosen ids carry no gradient; the weights do.
 *
 * Grouping: the N·k (token, slot) pairs are counting-sorted by expert,
 * stable in token order, so expert e owns rows [offset[e], offset[e+1]) of
 * the grouped order. (HF's torch.where orders an expert's rows by slot,
 * then token: a permutation of the same rows, which changes no result —
 * a token picks an expert at most once.) */
#ifndef LC_OPS_MOE_H
#define LC_OPS_MOE_H

#include <stdbool.h>
#include <stdint.h>

#include "autograd/tape.h"

typedef enum lc_router_mode {
    LC_ROUTER_SOFTMAX_THEN_TOPK, /* softmax over all E, top-k, optional renorm */
} lc_router_mode;

typedef struct lc_router_spec {
    lc_router_mode mode;
    int k;       /* experts per token, 1 ≤ k ≤ E */
    bool renorm; /* divide the k weights by their sum */
} lc_router_spec;

typedef struct lc_moe_route {
    int64_t N;         /* tokens */
    int E, k;
    /* host memory */
    int32_t *expert;   /* [N, k] chosen experts, by descending logit */
    int64_t *offset;   /* [E + 1] expert e's rows: [offset[e], offset[e+1]) */
    int32_t *token;    /* [N·k] grouped row → token */
    int32_t *pair;     /* [N·k] grouped row → token·k + slot (its weight in w [N, k]) */
    /* token and pair in the tape's element memory (the host arrays on the CPU):
     * what the kernels index with */
    const int32_t *token_be, *pair_be;
} lc_moe_route;

/* Rows routed to expert e. */
static inline int64_t lc_moe_rows(const lc_moe_route *r, int e)
{
    return r->offset[e + 1] - r->offset[e];
}

/* logits [N, E] → routing weights [N, k] (gradient to logits); *route (in
 * the step arena) receives the chosen experts and the grouping. */
lc_tensor *lc_op_router_topk(lc_tape *t, lc_tensor *logits, const lc_router_spec *spec,
                             lc_moe_route **route);

/* x [N, C] → the rows routed to expert e, [n_e, C] in grouped order
 * (n_e = lc_moe_rows(route, e) > 0); backward scatter-adds into dx. */
lc_tensor *lc_op_moe_gather(lc_tape *t, lc_tensor *x, const lc_moe_route *route, int e);

/* out [N, C]: out[n] = Σ_slot w[n, slot] · y[e][row − offset[e]] where
 * e = expert[n, slot]; y has E entries, y[e] [n_e, C] (NULL when n_e = 0).
 * Gradients to w and to every y[e]. */
lc_tensor *lc_op_moe_combine(lc_tape *t, lc_tensor *w, lc_tensor *const *y,
                             const lc_moe_route *route);

#endif

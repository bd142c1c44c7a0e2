/* moe_block.h — a sparse mixture-of-experts SwiGLU feed-forward block with
 * optional per-expert LoRA (Mixtral's MixtralSparseMoeBlock, Qwen3-MoE's
 * Qwen3MoeSparseMoeBlock; transformers 5.17, PEFT 0.21 target_parameters).
 *
 *   logits = x·Wrᵀ [N, E] (frozen router, gradient flows to x)
 *   w, ids = router top-k (ops_moe.h)                      w [N, k]
 *   for every expert e with n_e > 0 routed rows:
 *     xe = gather(x, e)                                    [n_e, C]
 *     g, u = xe·(G_e + LoRA)ᵀ, xe·(U_e + LoRA)ᵀ            [n_e, FF] each
 *     ye = (silu(g)·u)·(D_e + LoRA)ᵀ                        [n_e, C]
 *   y[n] = Σ_slot w[n, slot] · ye[row of (n, slot)]         [N, C]
 *
 * HF keeps gate|up stacked as gate_up_proj[e] [2FF, C] (rows 0..FF−1 gate)
 * and PEFT's LoRA is one adapter on that stack: A_e [R, C], B_e [2FF, R].
 * Here gate and up are two linears of one fused lc_op_linears call over
 * row slices (G_e = rows 0..FF−1, U_e = rows FF..2FF−1; the checkpoints
 * store them apart anyway: w1/w3, gate_proj/up_proj), sharing A_e, with
 * B_e's first and last FF rows (contiguous) as their B. That costs one
 * extra [n_e, R] product x·A_eᵀ, instead of an [n_e, 2FF] output plus two
 * column copies into gate and up and their gradients back (the
 * alternative), and the SwiGLU then feeds the down linear fused.
 *
 * LoRA layout: PEFT stores a 3D target's lora_A [R·E, in] expert-major (A_e
 * = rows e·R..e·R+R−1, contiguous) but lora_B [out, R·E] rank-major (B_e[o,
 * j] = B[o, j·E + e], stride E): lc_moe_lora_b_from_peft gathers B_e into
 * the contiguous [out, R] block lc_lora_adapter needs (and a saver scatters
 * back). PEFT refuses lora_dropout and DoRA on target_parameters, so the
 * expert adapters must have neither. */
#ifndef LC_MOE_BLOCK_H
#define LC_MOE_BLOCK_H

#include "autograd/ops.h"
#include "autograd/ops_moe.h"

typedef struct lc_moe_expert {
    const lc_weight *gate, *up;          /* [FF, C] each */
    const lc_weight *down;               /* [C, FF] */
    const lc_lora_adapter *gate_up_lora; /* A [R, C], B [2FF, R] param; NULL: none */
    const lc_lora_adapter *down_lora;    /* A [R, FF], B [C, R]; NULL: none */
} lc_moe_expert;

typedef struct lc_moe_block {
    const lc_weight *router;             /* [E, C], frozen */
    const lc_moe_expert *experts;        /* [E] */
    int E;
    lc_router_spec route;                /* k, renorm (Mixtral: true; Qwen3-MoE: norm_topk_prob) */
} lc_moe_block;

/* y [N, C] for x [N, C] (already normed; the residual add is the caller's).
 * *route_out (may be NULL) receives the routing, for statistics. */
lc_tensor *lc_moe_block_forward(lc_tape *t, const lc_moe_block *b, lc_tensor *x,
                                lc_moe_route **route_out);

/* dst [out, R] = expert e's B from PEFT's lora_B [out, R·E] (B[o, j·E + e]). */
void lc_moe_lora_b_from_peft(const lc_real *peft_b, int64_t out, int64_t R, int E, int e,
                             lc_real *dst);
/* The inverse: expert e's src [out, R] into PEFT's lora_B [out, R·E]. */
void lc_moe_lora_b_to_peft(const lc_real *src, int64_t out, int64_t R, int E, int e,
                           lc_real *peft_b);

#endif

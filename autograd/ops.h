/* ops.h — differentiable operations: compute forward now, record backward.
 *
 * Each op computes its output with the kernels of kernels.h and, when an
 * input requires grad and the tape is recording, appends a node whose
 * backward adds into its inputs' gradients. Outputs live in the step arena.
 *
 * Why a fused linear op: a LoRA linear is y = [residual +] f(x)·Wᵀ + b +
 * s·(drop(f(x))·Aᵀ)·Bᵀ where f is identity, RMSNorm or SwiGLU. Composing it
 * from separate ops would keep f(x), x·Wᵀ and the LoRA branch as separate
 * activations; the fused op keeps only its outputs, the small x·Aᵀ [N,R] and
 * RMSNorm's rstd [N], and recomputes f(x) in backward (cheap next to the
 * GEMMs). That is what holds a 135M model's step under 1.5 GiB on the CPU.
 * The frozen W never gets a gradient; backward computes dx = dy·W only.
 *
 * DoRA (an adapter with a magnitude m, PEFT 0.17's DoraLinearLayer):
 * y = [residual +] x·Wᵀ + b + (g − 1)·(xd·Wᵀ) + g·s·(xd·Aᵀ)·Bᵀ with
 * g = m / c, c[o] = ‖W[o,:] + s·(B·A)[o,:]‖₂ recomputed every forward and
 * detached (no gradient through c), xd = drop(x) (x when dropout is off, so
 * then y = [residual +] b + g·(x·Wᵀ + s·x·Aᵀ·Bᵀ)). The op keeps c [out]
 * besides the LoRA activations; backward recomputes xd·Wᵀ for m's gradient
 * (one more weight product) instead of keeping an [N, out] activation. */
#ifndef LC_OPS_H
#define LC_OPS_H

#include "autograd/kernels.h"
#include "autograd/tape.h"

typedef struct lc_lora_adapter {
    lc_tensor *A;       /* [R, in], trainable */
    lc_tensor *B;       /* [out, R], trainable */
    lc_real scale;      /* alpha / R, or alpha / sqrt(R) with rsLoRA */
    double dropout;     /* on A's input, only while tape->training */
    lc_tensor *m;       /* [out] DoRA magnitude, trainable; NULL: plain LoRA */
    const lc_real *norm; /* [out] DoRA: c held fixed (a frozen adapter: eval,
                          * generate; gradient checks); NULL: recomputed each forward */
} lc_lora_adapter;

typedef struct lc_linear {
    const lc_weight *W;           /* [out, in], frozen */
    const lc_real *bias;          /* [out] or NULL, frozen */
    const lc_lora_adapter *lora;  /* NULL: plain frozen linear */
} lc_linear;

typedef enum lc_input_kind {
    LC_INPUT_PLAIN,     /* f(x) = x */
    LC_INPUT_RMSNORM,   /* f(x) = rmsnorm(x) · norm_w */
    LC_INPUT_SWIGLU,    /* f(x) = silu(x) · up */
    LC_INPUT_GEGLU_TANH, /* f(x) = gelu_tanh(x) · up (Gemma: HF "gelu_pytorch_tanh") */
} lc_input_kind;

typedef struct lc_linear_input {
    lc_input_kind kind;
    lc_tensor *x;            /* [N, in] */
    const lc_real *norm_w;   /* [in], RMSNORM */
    double eps;              /* RMSNORM */
    lc_tensor *up;           /* [N, in], SWIGLU and GEGLU_TANH */
} lc_linear_input;

/* out[i][N, out_i] = [residual +] f(x)·W_iᵀ + b_i + LoRA_i(f(x)), for n
 * linears sharing one input (q/k/v, gate/up). residual only when n == 1. */
void lc_op_linears(lc_tape *t, const lc_linear_input *in, const lc_linear *lin,
                   int n, lc_tensor *residual, lc_tensor **out);
/* Convenience for one linear on a plain input. */
lc_tensor *lc_op_linear(lc_tape *t, lc_tensor *x, const lc_linear *lin);

/* x[N, C] = E[ids]; the table is frozen, so no node is recorded. */
lc_tensor *lc_op_embedding(lc_tape *t, const lc_weight *E, const int32_t *ids, int64_t N);

/* RMSNorm over the last C elements of every row-group of x (x.numel % C == 0;
 * C = D normalises each head: Qwen3's q/k norm). Same shape as x. */
lc_tensor *lc_op_rmsnorm(lc_tape *t, lc_tensor *x, int64_t C, const lc_real *w, double eps);

/* RoPE applied in place to x[N, heads·D] (the pre-RoPE values are never
 * needed again); returns a tensor sharing x's data. pos[N], cos_sin[P, D]
 * must outlive backward. */
lc_tensor *lc_op_rope(lc_tape *t, lc_tensor *x, int heads, int D, const int32_t *pos,
                      const lc_real *cos_sin);

/* Causal (GQA, optionally segmented / windowed) attention:
 * q[N, H·D], k, v[B·(past+T), KV·D] → [N, H·D]. s must outlive backward.
 * With s->past > 0 (decoding over a KV cache) no gradient is recorded. */
lc_tensor *lc_op_attention(lc_tape *t, lc_tensor *q, lc_tensor *k, lc_tensor *v,
                           const lc_attn_shape *s);

lc_tensor *lc_op_add(lc_tape *t, lc_tensor *a, lc_tensor *b);
lc_tensor *lc_op_swiglu(lc_tape *t, lc_tensor *g, lc_tensor *u);
/* gelu_tanh(g) · u (see lc_k_geglu_tanh_fwd), same shape as g. */
lc_tensor *lc_op_geglu_tanh(lc_tape *t, lc_tensor *g, lc_tensor *u);
/* y = s · x, same shape (Gemma's embedding × √hidden). */
lc_tensor *lc_op_scale(lc_tape *t, lc_tensor *x, lc_real s);

/* Splits x [N, W] by columns into n ≤ LC_NODE_MAX_IO contiguous parts
 * out[i] [N, widths[i]] (Σ widths = W): Phi-3's fused qkv_proj → q, k, v and
 * gate_up_proj → gate, up. Backward adds each part's gradient back into its
 * columns of x. */
void lc_op_split_cols(lc_tape *t, lc_tensor *x, int n, const int64_t *widths, lc_tensor **out);

/* Fused lm_head + cross-entropy: returns a scalar tensor equal to
 * grad_scale · Σ_supervised CE(z, target), z = x·Wᵀ soft-capped to
 * softcap·tanh(z/softcap) when softcap > 0 (0 = none; Gemma 2: 30). grad_scale is 1 / (supervised
 * tokens of the whole optimizer step), so micro-batch gradients add up to
 * the gradient of the step's mean loss. *loss_sum (double) and
 * *n_supervised receive the raw sum and count (either may be NULL). */
lc_tensor *lc_op_lm_head_ce(lc_tape *t, lc_tensor *x, const lc_weight *W,
                            const int32_t *targets, lc_real grad_scale,
                            double *loss_sum, int64_t *n_supervised, double softcap);

/* A block y = fn(ctx, x) whose output has x's shape (a transformer layer).
 * Gradient checkpointing: forward runs fn without recording and keeps only
 * x and y; backward runs fn again with recording (same dropout streams) and
 * backpropagates through that local piece of tape. Memory for activations
 * drops from every layer's to one layer's, for one extra forward. */
typedef lc_tensor *(*lc_block_fn)(lc_tape *t, void *ctx, lc_tensor *x);
lc_tensor *lc_op_checkpoint(lc_tape *t, lc_block_fn fn, void *ctx, lc_tensor *x);

#endif

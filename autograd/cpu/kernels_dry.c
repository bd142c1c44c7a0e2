/* kernels_dry.c — the "dry" kernel table: every compute kernel is a no-op.
 *
 * The memory plan (train/memory_plan.h) runs one real forward + backward
 * step of the model code over a counting arena whose element memory is
 * never touched: the ops allocate exactly as in a real step (same sizes,
 * same order, same alignment) while these kernels skip the arithmetic, so
 * the dry run costs milliseconds and commits no activation pages. The size
 * queries (weight, attention, CE and DoRA scratch) are not in this table:
 * lc_kernels_make_dry keeps those of the backend being planned for, so a
 * dry step asks for exactly the scratch a real one does. */
#include "autograd/cpu/dispatch.h"

static void dry_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, lc_real alpha,
                     const lc_real *A, int64_t lda, const lc_real *B, int64_t ldb, lc_real beta,
                     lc_real *C, int64_t ldc)
{
    (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda, (void)B,
        (void)ldb, (void)beta, (void)C, (void)ldc;
}

static void dry_weight_matmul(const lc_real *x, int64_t N, const lc_weight *W, lc_real beta,
                              lc_real *y, lc_real *scratch)
{
    (void)x, (void)N, (void)W, (void)beta, (void)y, (void)scratch;
}

static void dry_weight_matmul_grad(const lc_real *dy, int64_t N, const lc_weight *W,
                                   lc_real beta, lc_real *dx, lc_real *scratch)
{
    (void)dy, (void)N, (void)W, (void)beta, (void)dx, (void)scratch;
}

static void dry_rmsnorm_fwd(const lc_real *x, const lc_real *w, int64_t N, int64_t C,
                            double eps, lc_real *y, lc_real *rstd)
{
    (void)x, (void)w, (void)N, (void)C, (void)eps, (void)y, (void)rstd;
}

static void dry_rmsnorm_bwd(const lc_real *x, const lc_real *w, const lc_real *rstd,
                            const lc_real *dy, int64_t N, int64_t C, lc_real *dx)
{
    (void)x, (void)w, (void)rstd, (void)dy, (void)N, (void)C, (void)dx;
}

/* swiglu and geglu_tanh share these two signatures */
static void dry_gated_fwd(const lc_real *g, const lc_real *u, int64_t n, lc_real *y)
{
    (void)g, (void)u, (void)n, (void)y;
}

static void dry_gated_bwd(const lc_real *g, const lc_real *u, const lc_real *dy, int64_t n,
                          lc_real *dg, lc_real *du, lc_real *y)
{
    (void)g, (void)u, (void)dy, (void)n, (void)dg, (void)du, (void)y;
}

static void dry_softcap(lc_real *x, int64_t n, double cap) { (void)x, (void)n, (void)cap; }

static void dry_rope(const lc_real *src, lc_real *dst, int64_t N, int heads, int D,
                     const int32_t *pos, const lc_real *cos_sin, bool inverse, bool accumulate)
{
    (void)src, (void)dst, (void)N, (void)heads, (void)D, (void)pos, (void)cos_sin,
        (void)inverse, (void)accumulate;
}

static void dry_attention_fwd(const lc_attn_shape *s, const lc_real *q, const lc_real *k,
                              const lc_real *v, lc_real *out, lc_real *lse, lc_real *scratch)
{
    (void)s, (void)q, (void)k, (void)v, (void)out, (void)lse, (void)scratch;
}

static void dry_attention_bwd(const lc_attn_shape *s, const lc_real *q, const lc_real *k,
                              const lc_real *v, const lc_real *out, const lc_real *lse,
                              const lc_real *dout, lc_real *dq, lc_real *dk, lc_real *dv,
                              lc_real *scratch)
{
    (void)s, (void)q, (void)k, (void)v, (void)out, (void)lse, (void)dout, (void)dq, (void)dk,
        (void)dv, (void)scratch;
}

/* No loss: 0, and no supervised token counted. */
static double dry_lm_head_ce(const lc_real *x, int64_t N, int64_t C, const lc_weight *W,
                             const int32_t *targets, lc_real grad_scale, lc_real *dx,
                             int64_t *n_supervised, lc_real *scratch, double softcap)
{
    (void)x, (void)N, (void)C, (void)W, (void)targets, (void)grad_scale, (void)dx,
        (void)scratch, (void)softcap;
    *n_supervised = 0;
    return 0;
}

static void dry_embedding(const lc_weight *E, const int32_t *ids, int64_t N, lc_real *x)
{
    (void)E, (void)ids, (void)N, (void)x;
}

static void dry_dropout(const lc_real *src, lc_real *dst, int64_t n, double p, uint64_t seed,
                        bool accumulate)
{
    (void)src, (void)dst, (void)n, (void)p, (void)seed, (void)accumulate;
}

static void dry_gemm_grad(bool ta, bool tb, int64_t M, int64_t N, int64_t K, lc_real alpha,
                          const lc_real *A, int64_t lda, const lc_real *B, int64_t ldb,
                          lc_real *C, int64_t ldc)
{
    dry_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, 1, C, ldc);
}

static void dry_to_act(int64_t n, const lc_real *src, lc_real *dst)
{
    (void)n, (void)src, (void)dst;
}

static void dry_axpy(int64_t n, lc_real a, const lc_real *x, lc_real *y)
{
    (void)n, (void)a, (void)x, (void)y;
}

/* add and div: (n, a, b, y) */
static void dry_add(int64_t n, const lc_real *a, const lc_real *b, lc_real *y)
{
    (void)n, (void)a, (void)b, (void)y;
}

static void dry_scale(int64_t n, lc_real s, const lc_real *x, lc_real *y)
{
    (void)n, (void)s, (void)x, (void)y;
}

static void dry_add_bias(int64_t N, int64_t O, const lc_real *bias, lc_real *y)
{
    (void)N, (void)O, (void)bias, (void)y;
}

static void dry_cols(lc_real *wide, int64_t N, int64_t ld, int64_t c0, int64_t w, lc_real *part,
                     bool add)
{
    (void)wide, (void)N, (void)ld, (void)c0, (void)w, (void)part, (void)add;
}

static void dry_gather_rows(const lc_real *x, const int32_t *idx, int64_t n, int64_t C,
                            lc_real *out)
{
    (void)x, (void)idx, (void)n, (void)C, (void)out;
}

/* scatter_add_rows, gather_add_rows and row_dots: (src, idx, w, slot, n, C, dst) */
static void dry_rows_w(const lc_real *src, const int32_t *idx, const lc_real *w,
                       const int32_t *slot, int64_t n, int64_t C, lc_real *dst)
{
    (void)src, (void)idx, (void)w, (void)slot, (void)n, (void)C, (void)dst;
}

static void dry_dora_norm(const lc_weight *W, const lc_real *A, const lc_real *B, int64_t R,
                          lc_real s, lc_real *c, lc_real *scratch)
{
    (void)W, (void)A, (void)B, (void)R, (void)s, (void)c, (void)scratch;
}

/* dora_combine, col_scale's and dora_mag_grad's shapes differ only in names */
static void dry_dora_combine(int64_t N, int64_t O, const lc_real *g, const lc_real *u,
                             const lc_real *v, lc_real *y)
{
    (void)N, (void)O, (void)g, (void)u, (void)v, (void)y;
}

static void dry_col_scale(int64_t N, int64_t O, const lc_real *dy, const lc_real *g,
                          lc_real shift, lc_real *out)
{
    (void)N, (void)O, (void)dy, (void)g, (void)shift, (void)out;
}

static void dry_adamw(int64_t n, lc_real *p, const lc_real *g, lc_real *m, lc_real *v,
                      const lc_adamw_hparams *hp, int64_t step, double lr)
{
    (void)n, (void)p, (void)g, (void)m, (void)v, (void)hp, (void)step, (void)lr;
}

static double dry_sum_squares(int64_t n, const lc_real *g)
{
    (void)n, (void)g;
    return 0;
}

static const lc_kernels dry_kernels = {
    .gemm = dry_gemm,
    .gemm_grad = dry_gemm_grad,
    .to_act = dry_to_act,
    .weight_matmul = dry_weight_matmul,
    .weight_matmul_grad = dry_weight_matmul_grad,
    .rmsnorm_fwd = dry_rmsnorm_fwd,
    .rmsnorm_bwd = dry_rmsnorm_bwd,
    .swiglu_fwd = dry_gated_fwd,
    .swiglu_bwd = dry_gated_bwd,
    .geglu_tanh_fwd = dry_gated_fwd,
    .geglu_tanh_bwd = dry_gated_bwd,
    .softcap = dry_softcap,
    .rope = dry_rope,
    .attention_fwd = dry_attention_fwd,
    .attention_bwd = dry_attention_bwd,
    .lm_head_ce = dry_lm_head_ce,
    .embedding = dry_embedding,
    .dropout = dry_dropout,
    .axpy = dry_axpy,
    .add = dry_add,
    .scale = dry_scale,
    .div = dry_add,
    .add_bias = dry_add_bias,
    .cols = dry_cols,
    .gather_rows = dry_gather_rows,
    .scatter_add_rows = dry_rows_w,
    .gather_add_rows = dry_rows_w,
    .row_dots = dry_rows_w,
    .dora_norm = dry_dora_norm,
    .dora_combine = dry_dora_combine,
    .col_scale = dry_col_scale,
    .dora_mag_grad = dry_dora_combine, /* (N, O, dy, u, c, dm): the same types */
    .adamw = dry_adamw,
    .sum_squares = dry_sum_squares,
};

void lc_kernels_make_dry(lc_kernels *k)
{
    lc_kernels d = dry_kernels;
    /* the size queries stay the planned backend's */
    d.weight_scratch = k->weight_scratch;
    d.attention_scratch = k->attention_scratch;
    d.ce_chunk_rows = k->ce_chunk_rows;
    d.ce_scratch = k->ce_scratch;
    d.dora_norm_scratch = k->dora_norm_scratch;
    *k = d;
}

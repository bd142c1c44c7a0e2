/* backend_cuda.c — the CUDA backend (see backend_cuda.h): backend.h's table
 * whose kernel entries run the kernels of cuda_kernels.h in f32 on the one
 * process-wide context, and whose memory is device memory on its stream.
 *
 * Why one global context: the kernels.h signatures (shared by every
 * backend, so that ops.c is written once) carry no backend argument, so an
 * entry finds its stream and cuBLASLt handle here. A kernel entry returns
 * nothing; the first failure since the last sync is kept (with the name of
 * the entry) and sync() reports it. */
#include "autograd/cuda/backend_cuda.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

_Static_assert(sizeof(lc_real) == sizeof(float), "the CUDA backend computes in f32 (lc_real)");

#define F32 LC_DTYPE_F32

static struct {
    lc_backend be;
    lc_cuda_ctx *ctx; /* NULL: no CUDA backend exists */
    int device;
    bool failed;      /* a failure since the last sync, kept in first */
    lc_error first;
} g;

/* Keeps the first failure: "kernel NAME: the context's message". */
static void keep_failure(const char *what)
{
    if (g.failed)
        return;
    g.failed = true;
    snprintf(g.first.msg, sizeof g.first.msg, "CUDA %s: %s", what, lc_cuda_ctx_error(g.ctx));
}

#define RUN(what, call)                                                                       \
    do {                                                                                      \
        if ((call) != 0)                                                                      \
            keep_failure(what);                                                                     \
    } while (0)

/* device bytes → lc_real elements, rounded up */
static size_t elems(size_t bytes) { return (bytes + sizeof(lc_real) - 1) / sizeof(lc_real); }

/* ---------------------------------------------------------------- kernels */

static void k_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, lc_real alpha,
                   const lc_real *A, int64_t lda, const lc_real *B, int64_t ldb, lc_real beta,
                   lc_real *C, int64_t ldc)
{
    RUN("kernel gemm", lc_cuda_gemm(g.ctx, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta,
                                    C, ldc, F32, F32));
}

static size_t k_weight_scratch(const lc_weight *W)
{
    return elems(lc_cuda_weight_scratch_bytes(W, F32));
}

static void k_weight_matmul(const lc_real *x, int64_t N, const lc_weight *W, lc_real beta,
                            lc_real *y, lc_real *scratch)
{
    RUN("kernel weight_matmul", lc_cuda_weight_matmul(g.ctx, F32, x, N, W, beta, y, scratch));
}

static void k_weight_matmul_grad(const lc_real *dy, int64_t N, const lc_weight *W, lc_real *dx,
                                 lc_real *scratch)
{
    RUN("kernel weight_matmul_grad",
        lc_cuda_weight_matmul_grad(g.ctx, F32, dy, N, W, dx, scratch));
}

static void k_rmsnorm_fwd(const lc_real *x, const lc_real *w, int64_t N, int64_t C, double eps,
                          lc_real *y, lc_real *rstd)
{
    RUN("kernel rmsnorm_fwd", lc_cuda_rmsnorm_fwd(g.ctx, F32, x, w, N, C, eps, y, rstd));
}

static void k_rmsnorm_bwd(const lc_real *x, const lc_real *w, const lc_real *rstd,
                          const lc_real *dy, int64_t N, int64_t C, lc_real *dx)
{
    RUN("kernel rmsnorm_bwd", lc_cuda_rmsnorm_bwd(g.ctx, F32, x, w, rstd, dy, N, C, dx));
}

static void k_swiglu_fwd(const lc_real *gt, const lc_real *u, int64_t n, lc_real *y)
{
    RUN("kernel swiglu_fwd", lc_cuda_swiglu_fwd(g.ctx, F32, gt, u, n, y));
}

static void k_swiglu_bwd(const lc_real *gt, const lc_real *u, const lc_real *dy, int64_t n,
                         lc_real *dg, lc_real *du)
{
    RUN("kernel swiglu_bwd", lc_cuda_swiglu_bwd(g.ctx, F32, gt, u, dy, n, dg, du));
}

static void k_geglu_tanh_fwd(const lc_real *gt, const lc_real *u, int64_t n, lc_real *y)
{
    RUN("kernel geglu_tanh_fwd", lc_cuda_geglu_tanh_fwd(g.ctx, F32, gt, u, n, y));
}

static void k_geglu_tanh_bwd(const lc_real *gt, const lc_real *u, const lc_real *dy, int64_t n,
                             lc_real *dg, lc_real *du)
{
    RUN("kernel geglu_tanh_bwd", lc_cuda_geglu_tanh_bwd(g.ctx, F32, gt, u, dy, n, dg, du));
}

static void k_softcap(lc_real *x, int64_t n, double cap)
{
    RUN("kernel softcap", lc_cuda_softcap(g.ctx, F32, x, n, cap));
}

static void k_rope(const lc_real *src, lc_real *dst, int64_t N, int heads, int D,
                   const int32_t *pos, const lc_real *cos_sin, bool inverse, bool accumulate)
{
    RUN("kernel rope",
        lc_cuda_rope(g.ctx, F32, src, dst, N, heads, D, pos, cos_sin, inverse, accumulate));
}

static size_t k_attention_scratch(const lc_attn_shape *s)
{
    return elems(lc_cuda_attention_scratch_bytes(s));
}

static void k_attention_fwd(const lc_attn_shape *s, const lc_real *q, const lc_real *k,
                            const lc_real *v, lc_real *out, lc_real *lse, lc_real *scratch)
{
    (void)scratch; /* the device forward keeps its state in shared memory */
    RUN("kernel attention_fwd", lc_cuda_attention_fwd(g.ctx, F32, s, q, k, v, out, lse));
}

static void k_attention_bwd(const lc_attn_shape *s, const lc_real *q, const lc_real *k,
                            const lc_real *v, const lc_real *out, const lc_real *lse,
                            const lc_real *dout, lc_real *dq, lc_real *dk, lc_real *dv,
                            lc_real *scratch)
{
    RUN("kernel attention_bwd",
        lc_cuda_attention_bwd(g.ctx, F32, s, q, k, v, out, lse, dout, dq, dk, dv, scratch));
}

static int64_t k_ce_chunk_rows(int64_t V) { return lc_cuda_ce_chunk_rows(V); }

static size_t k_ce_scratch(int64_t N, int64_t C, int64_t V, const lc_weight *W)
{
    (void)V; /* W's rows */
    /* the largest N: the chunk is then as many rows as the vocabulary allows */
    return elems(lc_cuda_ce_scratch_bytes(F32, N, C, W));
}

static double k_lm_head_ce(const lc_real *x, int64_t N, int64_t C, const lc_weight *W,
                           const int32_t *targets, lc_real grad_scale, lc_real *dx,
                           int64_t *n_supervised, lc_real *scratch, double softcap)
{
    double loss = 0;
    int64_t n = 0;
    if (lc_cuda_lm_head_ce(g.ctx, F32, x, N, C, W, targets, grad_scale, dx, scratch, &loss, &n,
                           softcap)) {
        keep_failure("kernel lm_head_ce");
        loss = NAN; /* never a plausible loss: sync says why */
        n = 0;
    }
    if (n_supervised)
        *n_supervised = n;
    return loss;
}

static void k_embedding(const lc_weight *E, const int32_t *ids, int64_t N, lc_real *x)
{
    RUN("kernel embedding", lc_cuda_embedding(g.ctx, F32, E, ids, N, x));
}

static void k_dropout(const lc_real *src, lc_real *dst, int64_t n, double p, uint64_t seed,
                      bool accumulate)
{
    RUN("kernel dropout", lc_cuda_dropout(g.ctx, F32, src, dst, n, p, seed, accumulate));
}

static void k_axpy(int64_t n, lc_real a, const lc_real *x, lc_real *y)
{
    RUN("kernel axpy", lc_cuda_axpy(g.ctx, F32, n, a, x, y));
}

static void k_add(int64_t n, const lc_real *a, const lc_real *b, lc_real *y)
{
    RUN("kernel add", lc_cuda_add(g.ctx, F32, n, a, b, y));
}

static void k_scale(int64_t n, lc_real s, const lc_real *x, lc_real *y)
{
    RUN("kernel scale", lc_cuda_scale(g.ctx, F32, n, s, x, y));
}

static void k_div(int64_t n, const lc_real *a, const lc_real *b, lc_real *y)
{
    RUN("kernel div", lc_cuda_div(g.ctx, F32, n, a, b, y));
}

static void k_add_bias(int64_t N, int64_t O, const lc_real *bias, lc_real *y)
{
    RUN("kernel add_bias", lc_cuda_add_bias(g.ctx, F32, N, O, bias, y));
}

static void k_cols(lc_real *wide, int64_t N, int64_t ld, int64_t c0, int64_t w, lc_real *part,
                   bool add)
{
    RUN("kernel cols", lc_cuda_cols(g.ctx, F32, wide, N, ld, c0, w, part, add));
}

/* MoE row moves (cuda_moe.cu) */
static void k_gather_rows(const lc_real *x, const int32_t *idx, int64_t n, int64_t C,
                          lc_real *out)
{
    RUN("kernel gather_rows", lc_cuda_gather_rows(g.ctx, F32, x, idx, n, C, out));
}

static void k_scatter_add_rows(const lc_real *src, const int32_t *idx, const lc_real *w,
                               const int32_t *slot, int64_t n, int64_t C, lc_real *dst)
{
    RUN("kernel scatter_add_rows",
        lc_cuda_scatter_add_rows(g.ctx, F32, src, idx, w, slot, n, C, dst));
}

static void k_gather_add_rows(const lc_real *src, const int32_t *idx, const lc_real *w,
                              const int32_t *slot, int64_t n, int64_t C, lc_real *dst)
{
    RUN("kernel gather_add_rows",
        lc_cuda_gather_add_rows(g.ctx, F32, src, idx, w, slot, n, C, dst));
}

static void k_row_dots(const lc_real *a, const int32_t *idx, const lc_real *b,
                       const int32_t *slot, int64_t n, int64_t C, lc_real *dw)
{
    RUN("kernel row_dots", lc_cuda_row_dots(g.ctx, F32, a, idx, b, slot, n, C, dw));
}

static size_t k_dora_norm_scratch(const lc_weight *W)
{
    return elems(lc_cuda_dora_norm_scratch_bytes(W));
}

static void k_dora_norm(const lc_weight *W, const lc_real *A, const lc_real *B, int64_t R,
                        lc_real s, lc_real *c, lc_real *scratch)
{
    RUN("kernel dora_norm", lc_cuda_dora_norm(g.ctx, W, A, B, R, s, c, scratch));
}

static void k_dora_combine(int64_t N, int64_t O, const lc_real *gv, const lc_real *u,
                           const lc_real *v, lc_real *y)
{
    RUN("kernel dora_combine", lc_cuda_dora_combine(g.ctx, F32, N, O, gv, u, v, y));
}

static void k_col_scale(int64_t N, int64_t O, const lc_real *dy, const lc_real *gv,
                        lc_real shift, lc_real *out)
{
    RUN("kernel col_scale", lc_cuda_col_scale(g.ctx, F32, N, O, dy, gv, shift, out));
}

static void k_dora_mag_grad(int64_t N, int64_t O, const lc_real *dy, const lc_real *u,
                            const lc_real *c, lc_real *dm)
{
    RUN("kernel dora_mag_grad", lc_cuda_dora_mag_grad(g.ctx, F32, N, O, dy, u, c, dm));
}

static void k_adamw(int64_t n, lc_real *p, const lc_real *gr, lc_real *m, lc_real *v,
                    const lc_adamw_hparams *hp, int64_t step, double lr)
{
    RUN("kernel adamw", lc_cuda_adamw_update(g.ctx, 1, &p, &gr, &m, &v, &n, hp, step, lr));
}

static double k_sum_squares(int64_t n, const lc_real *gr)
{
    double s = 0;
    if (lc_cuda_sum_squares(g.ctx, 1, &gr, &n, &s)) {
        keep_failure("kernel sum_squares");
        return NAN;
    }
    return s;
}

/* ---------------------------------------------------------------- memory */

static void *m_alloc(lc_backend *be, size_t bytes, lc_error *err)
{
    (void)be;
    void *p = NULL;
    if (lc_cuda_malloc(g.ctx, &p, bytes) == 0)
        return p;
    size_t free_b = 0, total_b = 0;
    lc_cuda_mem_info(g.ctx, &free_b, &total_b);
    const double mib = 1024.0 * 1024.0;
    lc_error_set(err, "out of device memory: wanted %.1f MiB, free %.1f MiB of %.1f MiB",
                 (double)bytes / mib, (double)free_b / mib, (double)total_b / mib);
    return NULL;
}

static void m_free(lc_backend *be, void *p)
{
    (void)be;
    lc_cuda_free(p);
}

static void m_upload(lc_backend *be, void *dst, const void *src, size_t bytes)
{
    (void)be;
    RUN("upload", lc_cuda_upload(g.ctx, dst, src, bytes));
}

static void m_download(lc_backend *be, void *dst, const void *src, size_t bytes)
{
    (void)be;
    RUN("download", lc_cuda_download(g.ctx, dst, src, bytes));
}

static void m_copy(lc_backend *be, void *dst, const void *src, size_t bytes)
{
    (void)be;
    if (dst != src)
        RUN("copy", lc_cuda_copy(g.ctx, dst, src, bytes));
}

static void m_memset0(lc_backend *be, void *dst, size_t bytes)
{
    (void)be;
    RUN("memset0", lc_cuda_memset0(g.ctx, dst, bytes));
}

static int m_sync(lc_backend *be, lc_error *err)
{
    (void)be;
    RUN("sync", lc_cuda_sync(g.ctx));
    if (!g.failed)
        return 0;
    g.failed = false;
    return lc_error_set(err, "%s", g.first.msg);
}

static void m_mem_info(lc_backend *be, size_t *free_bytes, size_t *total_bytes)
{
    (void)be;
    size_t f = 0, t = 0;
    if (lc_cuda_mem_info(g.ctx, &f, &t))
        f = t = 0;
    if (free_bytes)
        *free_bytes = f;
    if (total_bytes)
        *total_bytes = t;
}

static void m_destroy(lc_backend *be)
{
    (void)be;
    lc_cuda_ctx_free(g.ctx);
    g.ctx = NULL;
    g.failed = false;
}

static const lc_kernels cuda_kernels = {
    .gemm = k_gemm,
    .weight_scratch = k_weight_scratch,
    .weight_matmul = k_weight_matmul,
    .weight_matmul_grad = k_weight_matmul_grad,
    .rmsnorm_fwd = k_rmsnorm_fwd,
    .rmsnorm_bwd = k_rmsnorm_bwd,
    .swiglu_fwd = k_swiglu_fwd,
    .swiglu_bwd = k_swiglu_bwd,
    .geglu_tanh_fwd = k_geglu_tanh_fwd,
    .geglu_tanh_bwd = k_geglu_tanh_bwd,
    .softcap = k_softcap,
    .rope = k_rope,
    .attention_scratch = k_attention_scratch,
    .attention_fwd = k_attention_fwd,
    .attention_bwd = k_attention_bwd,
    .ce_chunk_rows = k_ce_chunk_rows,
    .ce_scratch = k_ce_scratch,
    .lm_head_ce = k_lm_head_ce,
    .embedding = k_embedding,
    .dropout = k_dropout,
    .axpy = k_axpy,
    .add = k_add,
    .scale = k_scale,
    .div = k_div,
    .add_bias = k_add_bias,
    .cols = k_cols,
    .gather_rows = k_gather_rows,
    .scatter_add_rows = k_scatter_add_rows,
    .gather_add_rows = k_gather_add_rows,
    .row_dots = k_row_dots,
    .dora_norm_scratch = k_dora_norm_scratch,
    .dora_norm = k_dora_norm,
    .dora_combine = k_dora_combine,
    .col_scale = k_col_scale,
    .dora_mag_grad = k_dora_mag_grad,
    .adamw = k_adamw,
    .sum_squares = k_sum_squares,
};

int lc_backend_cuda_create(lc_backend **out, int device, lc_error *err)
{
    *out = NULL;
    if (g.ctx)
        return lc_error_set(err, "a CUDA backend already exists in this process (device %d): "
                                 "destroy it first",
                            g.device);
    int n = lc_cuda_device_count();
    if (device < 0 || device >= n)
        return lc_error_set(err, "CUDA device %d does not exist (%d usable device%s)", device, n,
                            lc_plural(n));
    lc_cuda_ctx *ctx = NULL;
    if (lc_cuda_ctx_init(&ctx, device, 0, err))
        return lc_error_prefix(err, "CUDA device %d", device);
    g.ctx = ctx;
    g.device = device;
    g.failed = false;
    g.be = (lc_backend){
        .name = "cuda",
        .device = true,
        .k = cuda_kernels,
        .alloc = m_alloc,
        .free = m_free,
        .upload = m_upload,
        .download = m_download,
        .copy = m_copy,
        .memset0 = m_memset0,
        .sync = m_sync,
        .mem_info = m_mem_info,
        .destroy = m_destroy,
        .impl = ctx,
    };
    *out = &g.be;
    return 0;
}

lc_cuda_ctx *lc_backend_cuda_ctx(const lc_backend *be) { return be->impl; }

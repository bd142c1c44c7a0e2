/* backend_cuda.c — the CUDA backend (see backend_cuda.h): backend.h's table
 * whose kernel entries run the kernels of cuda_kernels.h in the backend's
 * activation dtype (f32 or bf16) on the one process-wide context, and whose
 * memory is device memory on its stream.
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

/* ---------------------------------------------------------------- kernels
 * The entries that are the same for every activation dtype; the others come
 * from backend_cuda_table.inc, once per dtype. */

static size_t k_attention_scratch(const lc_attn_shape *s)
{
    return elems(lc_cuda_attention_scratch_bytes(s));
}

static int64_t k_ce_chunk_rows(int64_t V) { return lc_cuda_ce_chunk_rows(V); }

static void k_div(int64_t n, const lc_real *a, const lc_real *b, lc_real *y)
{
    RUN("kernel div", lc_cuda_div(g.ctx, F32, n, a, b, y)); /* [f32]: DoRA's m / c */
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



#define ACT LC_DTYPE_F32
#define NAME(x) f32_##x
#include "autograd/cuda/backend_cuda_table.inc"
#undef ACT
#undef NAME
#define ACT LC_DTYPE_BF16
#define NAME(x) bf16_##x
#include "autograd/cuda/backend_cuda_table.inc"
#undef ACT
#undef NAME

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


int lc_backend_cuda_create(lc_backend **out, int device, lc_dtype act, lc_error *err)
{
    *out = NULL;
    if (act != LC_DTYPE_F32 && act != LC_DTYPE_BF16)
        return lc_error_set(err, "the CUDA backend computes in float32 or bfloat16, not %s",
                            lc_dtype_torch_name(act));
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
        .act = act,
        .gemm = act,
        .k = act == LC_DTYPE_BF16 ? bf16_kernels : f32_kernels,
        .f32 = &f32_kernels,
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

const lc_kernels *lc_backend_cuda_table(lc_dtype act)
{
    return act == LC_DTYPE_BF16 ? &bf16_kernels : &f32_kernels;
}

lc_cuda_ctx *lc_backend_cuda_ctx(const lc_backend *be) { return be->impl; }

/* cuda_moe.cu — the row moves of a mixture-of-experts block on the device:
 * gather an expert's token rows, add weighted rows back into token order,
 * the combine's backward into an expert's rows, and the routing weights'
 * gradient (kernels.h lc_k_gather_rows, lc_k_scatter_add_rows,
 * lc_k_gather_add_rows, lc_k_row_dots; same operand order as
 * cpu/kernels_cpu.c).
 *
 * Why no atomics: each call moves the rows of ONE expert, whose rows are
 * distinct tokens, so the row a thread writes is written by no other row
 * of the call (each element by one thread); results are deterministic. The
 * element kernels give one thread per element of the [n, C] block (adjacent
 * threads, adjacent columns: coalesced); the dot product gives one warp per
 * row and sums in double in a fixed order, as lc_k_row_dots does. */
#include "autograd/cuda/cuda_common.cuh"

#define DOT_ROWS_PER_BLOCK 8 /* warps per block in row_dots_k */

/* out[i, c] = x[idx[i], c] */
template <typename T>
__global__ void gather_rows_k(const T *x, const int32_t *idx, int64_t n, int64_t C, T *out)
{
    GRID_STRIDE(e, n * C) out[e] = x[(int64_t)idx[e / C] * C + e % C];
}

/* scatter: dst[idx[i], c] += w[slot[i]] · src[i, c]; else (gather):
 * dst[i, c] += w[slot[i]] · src[idx[i], c]. w NULL: a weight of 1. */
template <typename T>
__global__ void add_rows_k(const T *src, const int32_t *idx, const T *w, const int32_t *slot,
                           int64_t n, int64_t C, T *dst, bool scatter)
{
    GRID_STRIDE(e, n * C)
    {
        int64_t i = e / C, c = e % C, far = (int64_t)idx[i] * C + c;
        float a = w ? lc_ld(w[slot[i]]) : 1.0f;
        T *d = dst + (scatter ? far : e);
        *d = lc_st<T>(lc_ld(*d) + a * lc_ld(src[scatter ? e : far]));
    }
}

/* dw[slot[i]] += Σ_c a[idx[i], c] · b[i, c], one warp per row, in double */
template <typename T>
__global__ void __launch_bounds__(32 * DOT_ROWS_PER_BLOCK)
    row_dots_k(const T *a, const int32_t *idx, const T *b, const int32_t *slot, int64_t n,
               int64_t C, T *dw)
{
    int64_t i = blockIdx.x * (int64_t)DOT_ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (i >= n)
        return;
    const T *ai = a + (int64_t)idx[i] * C, *bi = b + i * C;
    double s = 0;
    for (int64_t c = lane; c < C; c += 32)
        s += (double)lc_ld(ai[c]) * (double)lc_ld(bi[c]);
    s = lc_warp_sum_d(s);
    if (lane == 0)
        dw[slot[i]] = lc_st<T>(lc_ld(dw[slot[i]]) + (float)s);
}

extern "C" int lc_cuda_gather_rows(lc_cuda_ctx *c, lc_dtype dt, const void *x, const int32_t *idx,
                                   int64_t n, int64_t C, void *out)
{
    if (n <= 0 || C <= 0)
        return 0;
    LC_DISPATCH_ACT(c, dt, T, {
        gather_rows_k<T><<<lc_grid(n * C, 256), 256, 0, c->stream>>>((const T *)x, idx, n, C,
                                                                     (T *)out);
        LC_LAUNCHED(c, "gather_rows_k");
    });
    return 0;
}

static int add_rows(lc_cuda_ctx *c, lc_dtype dt, const void *src, const int32_t *idx,
                    const void *w, const int32_t *slot, int64_t n, int64_t C, void *dst,
                    bool scatter)
{
    if (n <= 0 || C <= 0)
        return 0;
    LC_DISPATCH_ACT(c, dt, T, {
        add_rows_k<T><<<lc_grid(n * C, 256), 256, 0, c->stream>>>(
            (const T *)src, idx, (const T *)w, slot, n, C, (T *)dst, scatter);
        LC_LAUNCHED(c, scatter ? "add_rows_k (scatter)" : "add_rows_k (gather)");
    });
    return 0;
}

extern "C" int lc_cuda_scatter_add_rows(lc_cuda_ctx *c, lc_dtype dt, const void *src,
                                        const int32_t *idx, const void *w, const int32_t *slot,
                                        int64_t n, int64_t C, void *dst)
{
    return add_rows(c, dt, src, idx, w, slot, n, C, dst, true);
}

extern "C" int lc_cuda_gather_add_rows(lc_cuda_ctx *c, lc_dtype dt, const void *src,
                                       const int32_t *idx, const void *w, const int32_t *slot,
                                       int64_t n, int64_t C, void *dst)
{
    return add_rows(c, dt, src, idx, w, slot, n, C, dst, false);
}

extern "C" int lc_cuda_row_dots(lc_cuda_ctx *c, lc_dtype dt, const void *a, const int32_t *idx,
                                const void *b, const int32_t *slot, int64_t n, int64_t C,
                                void *dw)
{
    if (n <= 0)
        return 0;
    unsigned grid = (unsigned)((n + DOT_ROWS_PER_BLOCK - 1) / DOT_ROWS_PER_BLOCK);
    LC_DISPATCH_ACT(c, dt, T, {
        row_dots_k<T><<<grid, 32 * DOT_ROWS_PER_BLOCK, 0, c->stream>>>(
            (const T *)a, idx, (const T *)b, slot, n, C, (T *)dw);
        LC_LAUNCHED(c, "row_dots_k");
    });
    return 0;
}

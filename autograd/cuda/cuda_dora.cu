/* cuda_dora.cu — DoRA's kernels on the device (PEFT's DoraLinearLayer):
 * the weight-norm ‖W + s·B·A‖ per output row, the output combination, the
 * column scaling of the backward and the magnitude's gradient — the
 * lc_k_dora_* of autograd/kernels.h, same operand order as
 * cpu/kernels_cpu.c.
 *
 * The norm converts W a tile of rows at a time into f32 scratch (the
 * weight products' tile, lc_cuda_weight_tile_rows), adds s·B·A there by one
 * GEMM and sums each row's squares in double, one warp per row (a fixed
 * order: deterministic). The magnitude's gradient gives each column to one
 * thread, which sums its rows in order in double: deterministic without
 * atomics, and adjacent threads read adjacent columns (coalesced). */
#include <math.h>

#include "autograd/cuda/cuda_common.cuh"

#define ROWS_PER_BLOCK 8 /* warps per block in the row-norm kernel */

/* cn[r] = sqrt(Σ_i w[r, i]²) for the tile's rows, in double */
__global__ void __launch_bounds__(32 * ROWS_PER_BLOCK)
    row_norm_k(const float *w, int64_t rows, int64_t cols, float *cn)
{
    int64_t r = blockIdx.x * (int64_t)ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (r >= rows)
        return;
    const float *wr = w + r * cols;
    double ss = 0;
    for (int64_t i = lane; i < cols; i += 32)
        ss += (double)wr[i] * wr[i];
    ss = lc_warp_sum_d(ss);
    if (lane == 0)
        cn[r] = (float)sqrt(ss);
}

/* u, v, y: [N, O]; g: [O] gathered per element. Vectorised by lc_map. */
template <typename T>
__global__ void dora_combine_k(int64_t N, int64_t O, const float *g, const T *u, const T *v, T *y,
                               bool vec)
{
    T *out[1] = {y};
    lc_map<LC_VW(T)>(
        N * O, vec,
        [=](int64_t e, const float *x, float *o) {
            float go = g[e % O];
            o[0] = x[0] + ((go - 1.0f) * x[1] + go * x[2]);
        },
        out, (const T *)y, u, v);
}

/* dy, out: [N, O]; g: [O] gathered per element. Vectorised by lc_map. */
template <typename T>
__global__ void col_scale_k(int64_t N, int64_t O, const T *dy, const float *g, float shift, T *out,
                            bool vec)
{
    T *o_[1] = {out};
    lc_map<LC_VW(T)>(
        N * O, vec,
        [=](int64_t e, const float *x, float *o) { o[0] = x[0] * (g[e % O] + shift); }, o_, dy);
}

template <typename T>
__global__ void dora_mag_grad_k(int64_t N, int64_t O, const T *dy, const T *u, const float *cn,
                                float *dm)
{
    GRID_STRIDE(o, O)
    {
        double acc = 0;
        for (int64_t n = 0; n < N; n++)
            acc += (double)lc_ld(dy[n * O + o]) * lc_ld(u[n * O + o]);
        dm[o] += (float)(acc / cn[o]);
    }
}

extern "C" size_t lc_cuda_dora_norm_scratch_bytes(const lc_weight *W)
{
    return (size_t)(lc_cuda_weight_tile_rows(W) * W->cols) * sizeof(float);
}

extern "C" int lc_cuda_dora_norm(lc_cuda_ctx *c, const lc_weight *W, const float *A,
                                 const float *B, int64_t R, float s, float *cn, void *scratch)
{
    LC_TRY(lc_cuda_check_weight(c, W));
    int64_t in = W->cols, out = W->rows;
    if (out == 0)
        return 0;
    if (!scratch)
        return LC_BAD(c, "dora_norm: W [%lld, %lld] needs scratch (%zu bytes)", (long long)out,
                      (long long)in, lc_cuda_dora_norm_scratch_bytes(W));
    float *tile = (float *)scratch;
    int64_t tr = lc_cuda_weight_tile_rows(W);
    for (int64_t r0 = 0; r0 < out; r0 += tr) {
        int64_t r1 = r0 + tr < out ? r0 + tr : out;
        LC_TRY(lc_cuda_weight_rows(c, W, r0, r1, LC_DTYPE_F32, tile)); /* [r1-r0, in] */
        if (R > 0)
            LC_TRY(lc_cuda_gemm(c, false, false, r1 - r0, in, R, s, B + r0 * R, R, A, in, 1.0f,
                                tile, in, LC_DTYPE_F32, LC_DTYPE_F32));
        unsigned grid = (unsigned)((r1 - r0 + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
        row_norm_k<<<grid, 32 * ROWS_PER_BLOCK, 0, c->stream>>>(tile, r1 - r0, in, cn + r0);
        LC_LAUNCHED(c, "row_norm_k");
    }
    return 0;
}

extern "C" int lc_cuda_dora_combine(lc_cuda_ctx *c, lc_dtype dt, int64_t N, int64_t O,
                                    const float *g, const void *u, const void *v, void *y)
{
    if (N <= 0 || O <= 0)
        return 0;
    LC_DISPATCH_ACT(c, dt, T, {
        bool vec = lc_aligned16(u, v, y);
        dora_combine_k<T><<<lc_vgrid(N * O, LC_VW(T), vec), 256, 0, c->stream>>>(
            N, O, g, (const T *)u, (const T *)v, (T *)y, vec);
        LC_LAUNCHED(c, "dora_combine_k");
    });
    return 0;
}

extern "C" int lc_cuda_col_scale(lc_cuda_ctx *c, lc_dtype dt, int64_t N, int64_t O,
                                 const void *dy, const float *g, float shift, void *out)
{
    if (N <= 0 || O <= 0)
        return 0;
    LC_DISPATCH_ACT(c, dt, T, {
        bool vec = lc_aligned16(dy, out);
        col_scale_k<T><<<lc_vgrid(N * O, LC_VW(T), vec), 256, 0, c->stream>>>(
            N, O, (const T *)dy, g, shift, (T *)out, vec);
        LC_LAUNCHED(c, "col_scale_k");
    });
    return 0;
}

extern "C" int lc_cuda_dora_mag_grad(lc_cuda_ctx *c, lc_dtype dt, int64_t N, int64_t O,
                                     const void *dy, const void *u, const float *cn, float *dm)
{
    if (O <= 0)
        return 0;
    LC_DISPATCH_ACT(c, dt, T, {
        dora_mag_grad_k<T><<<lc_grid(O, 128), 128, 0, c->stream>>>(N, O, (const T *)dy,
                                                                   (const T *)u, cn, dm);
        LC_LAUNCHED(c, "dora_mag_grad_k");
    });
    return 0;
}

/* cuda_pointwise.cu — the row and element kernels: RMSNorm forward/backward,
 * SwiGLU and GeGLU (tanh GELU) forward/backward, RoPE (forward, inverse, accumulate), axpy /
 * residual add / bias add / scale / divide, column slices, soft-capping,
 * embedding gather and dropout.
 *
 * Each mirrors its lc_k_* in cpu/kernels_cpu.c line for line (same operand
 * order), loads bf16 or f32, computes in f32 and rounds once on the store.
 * The elementwise ones (gated activations, axpy / add / bias / scale / div,
 * soft-capping, dropout) run through lc_map (cuda_common.cuh): 16-byte loads
 * and stores when every operand is 16-byte aligned, one element at a time
 * otherwise and for the tail, the same per-element math on both paths.
 * RMSNorm uses one warp per row: rows are 64…8192 wide, a warp keeps every
 * load coalesced, and there is no shared memory or __syncthreads at all; its
 * row loops move 16 bytes per load / store too.
 * Dropout reproduces lc_k_dropout's mask bit for bit: key = the two halves
 * of lc_splitmix64(seed) xor-ed, keep element i iff (lowbias32(key ^ i) >> 8) ≥
 * ⌈p·2²⁴⌉ (i truncated to 32 bits, as on the CPU). */
#include <math.h>

#include "autograd/cuda/cuda_common.cuh"
#include "autograd/hash.h"

#define ROWS_PER_BLOCK 8 /* warps per block in the row kernels */

/* ---- RMSNorm ----
 * Lane l of a row's warp takes the W-element chunks l, l + 32, … of the row
 * (W = 16 bytes of T): with vec (x, w, dy, y / dx 16-byte aligned and C a
 * multiple of W, so every row is) by 16-byte loads / stores, else element by
 * element in the same order, elements past C reading 0 and not written; the
 * two paths sum in the same order, so they agree bit for bit. */

/* f[0..W) = p[c0, c0 + W) in f32 (0 past C) */
template <int W, typename T>
__device__ __forceinline__ void row_ld(const T *p, int64_t c0, int64_t C, bool vec, float *f)
{
    if (vec) {
        lc_ld_vec<W>(p + c0, f);
        return;
    }
#pragma unroll
    for (int e = 0; e < W; e++)
        f[e] = c0 + e < C ? lc_ld(p[c0 + e]) : 0.0f;
}

/* p[c0, min(c0 + W, C)) = f rounded once */
template <int W, typename T>
__device__ __forceinline__ void row_st(T *p, int64_t c0, int64_t C, bool vec, const float *f)
{
    if (vec) {
        lc_st_vec<W>(p + c0, f);
        return;
    }
#pragma unroll
    for (int e = 0; e < W; e++)
        if (c0 + e < C)
            p[c0 + e] = lc_st<T>(f[e]);
}

/* x, y: [N, C]; w: [C]; rstd: [N] (may be NULL) */
template <typename T>
__global__ void __launch_bounds__(32 * ROWS_PER_BLOCK)
    rmsnorm_fwd_k(const T *x, const T *w, int64_t N, int64_t C, float eps, T *y, float *rstd,
                  bool vec)
{
    constexpr int W = LC_VW(T);
    int64_t row = blockIdx.x * (int64_t)ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= N)
        return;
    const T *xi = x + row * C;
    float ss = 0, xv[W], wv[W];
    for (int64_t c0 = lane * W; c0 < C; c0 += 32 * W) {
        row_ld<W>(xi, c0, C, vec, xv);
#pragma unroll
        for (int e = 0; e < W; e++)
            ss += xv[e] * xv[e];
    }
    ss = lc_warp_sum(ss);
    float r = 1.0f / sqrtf(ss / (float)C + eps);
    if (rstd && lane == 0)
        rstd[row] = r;
    T *yi = y + row * C;
    for (int64_t c0 = lane * W; c0 < C; c0 += 32 * W) {
        row_ld<W>(xi, c0, C, vec, xv);
        row_ld<W>(w, c0, C, vec, wv);
#pragma unroll
        for (int e = 0; e < W; e++)
            xv[e] = wv[e] * (xv[e] * r);
        row_st<W>(yi, c0, C, vec, xv);
    }
}

/* x, dy, dx (+=): [N, C]; w: [C]; rstd: [N] */
template <typename T>
__global__ void __launch_bounds__(32 * ROWS_PER_BLOCK)
    rmsnorm_bwd_k(const T *x, const T *w, const float *rstd, const T *dy, int64_t N, int64_t C,
                  T *dx, bool vec)
{
    constexpr int W = LC_VW(T);
    int64_t row = blockIdx.x * (int64_t)ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= N)
        return;
    const T *xi = x + row * C, *dyi = dy + row * C;
    float r = rstd[row];
    float s = 0, xv[W], wv[W], dv[W], gv[W];
    for (int64_t c0 = lane * W; c0 < C; c0 += 32 * W) {
        row_ld<W>(xi, c0, C, vec, xv);
        row_ld<W>(w, c0, C, vec, wv);
        row_ld<W>(dyi, c0, C, vec, dv);
#pragma unroll
        for (int e = 0; e < W; e++)
            s += wv[e] * dv[e] * xv[e];
    }
    s = lc_warp_sum(s);
    float k = s * r * r * r / (float)C;
    T *dxi = dx + row * C;
    for (int64_t c0 = lane * W; c0 < C; c0 += 32 * W) {
        row_ld<W>(xi, c0, C, vec, xv);
        row_ld<W>(w, c0, C, vec, wv);
        row_ld<W>(dyi, c0, C, vec, dv);
        row_ld<W>(dxi, c0, C, vec, gv);
#pragma unroll
        for (int e = 0; e < W; e++)
            gv[e] = gv[e] + (r * wv[e] * dv[e] - k * xv[e]);
        row_st<W>(dxi, c0, C, vec, gv);
    }
}

extern "C" int lc_cuda_rmsnorm_fwd(lc_cuda_ctx *c, lc_dtype dt, const void *x,
                                   const void *w, int64_t N, int64_t C, double eps, void *y,
                                   float *rstd)
{
    if (N <= 0 || C <= 0)
        return 0;
    unsigned grid = (unsigned)((N + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
    LC_DISPATCH_ACT(c, dt, T, {
        bool vec = C % LC_VW(T) == 0 && lc_aligned16(x, w, y);
        rmsnorm_fwd_k<T><<<grid, 32 * ROWS_PER_BLOCK, 0, c->stream>>>(
            (const T *)x, (const T *)w, N, C, (float)eps, (T *)y, rstd, vec);
        LC_LAUNCHED(c, "rmsnorm_fwd_k");
    });
    return 0;
}

extern "C" int lc_cuda_rmsnorm_bwd(lc_cuda_ctx *c, lc_dtype dt, const void *x,
                                   const void *w, const float *rstd, const void *dy, int64_t N,
                                   int64_t C, void *dx)
{
    if (N <= 0 || C <= 0)
        return 0;
    unsigned grid = (unsigned)((N + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
    LC_DISPATCH_ACT(c, dt, T, {
        bool vec = C % LC_VW(T) == 0 && lc_aligned16(x, w, dy, dx);
        rmsnorm_bwd_k<T><<<grid, 32 * ROWS_PER_BLOCK, 0, c->stream>>>(
            (const T *)x, (const T *)w, rstd, (const T *)dy, N, C, (T *)dx, vec);
        LC_LAUNCHED(c, "rmsnorm_bwd_k");
    });
    return 0;
}

/* ---- gated activations: SwiGLU, GeGLU (tanh GELU) ----
 * y = act(g)·u; dg += dy·u·act'(g); du += dy·act(g). One kernel pair for
 * both, instantiated with P = gate<T, Act> (element type, activation). */

__device__ __forceinline__ float sigmoidf_(float g) { return 1.0f / (1.0f + expf(-g)); }

struct act_silu {
    static __device__ __forceinline__ float f(float g) { return g * sigmoidf_(g); }
    static __device__ __forceinline__ float df(float g)
    {
        float s = sigmoidf_(g);
        return s * (1.0f + g * (1.0f - s));
    }
};

/* gelu_tanh(x) = 0.5·x·(1 + t), t = tanh(√(2/π)·(x + 0.044715·x³)), as
 * lc_k_geglu_tanh_fwd (torch's gelu(approximate="tanh")). */
struct act_gelu_tanh {
    static __device__ __forceinline__ float t(float x)
    {
        return tanhf(0.79788456080286535588f * (x + 0.044715f * x * x * x));
    }
    static __device__ __forceinline__ float f(float x) { return 0.5f * x * (1.0f + t(x)); }
    static __device__ __forceinline__ float df(float x)
    {
        float th = t(x);
        return 0.5f * (1.0f + th) +
               0.5f * x * (1.0f - th * th) * 0.79788456080286535588f * (1.0f + 3.0f * 0.044715f * x * x);
    }
};

template <typename T_, typename Act> struct gate {
    typedef T_ T;
    typedef Act A;
};

/* g, u, y: [n] */
template <typename P>
__global__ void gated_fwd_k(const typename P::T *g, const typename P::T *u, int64_t n,
                            typename P::T *y, bool vec)
{
    typedef typename P::T T;
    T *out[1] = {y};
    lc_map<LC_VW(T)>(
        n, vec, [](int64_t, const float *x, float *o) { o[0] = P::A::f(x[0]) * x[1]; }, out, g, u);
}

/* g, u, dy, dg, du, y: [n]; u is read only for dg and y */
template <typename P>
__global__ void gated_bwd_k(const typename P::T *g, const typename P::T *u,
                            const typename P::T *dy, int64_t n, typename P::T *dg,
                            typename P::T *du, typename P::T *y, bool vec)
{
    typedef typename P::T T;
    bool want_dg = dg != nullptr, want_du = du != nullptr, want_y = y != nullptr;
    T *out[3] = {dg, du, y};
    lc_map<LC_VW(T)>(
        n, vec,
        [=](int64_t, const float *x, float *o) {
            float gv = x[0], d = x[2];
            if (want_dg)
                o[0] = x[3] + d * x[1] * P::A::df(gv);
            if (want_du)
                o[1] = x[4] + d * P::A::f(gv);
            if (want_y)
                o[2] = P::A::f(gv) * x[1];
        },
        out, g, dg || y ? u : nullptr, dy, (const T *)dg, (const T *)du);
}

template <typename Act>
static int gated_fwd(lc_cuda_ctx *c, lc_dtype dt, const void *g, const void *u, int64_t n,
                     void *y)
{
    if (n <= 0)
        return 0;
    LC_DISPATCH_ACT(c, dt, T, {
        typedef gate<T, Act> P;
        bool vec = lc_aligned16(g, u, y);
        gated_fwd_k<P><<<lc_vgrid(n, LC_VW(T), vec), 256, 0, c->stream>>>(
            (const T *)g, (const T *)u, n, (T *)y, vec);
        LC_LAUNCHED(c, "gated_fwd_k");
    });
    return 0;
}

template <typename Act>
static int gated_bwd(lc_cuda_ctx *c, lc_dtype dt, const void *g, const void *u,
                     const void *dy, int64_t n, void *dg, void *du, void *y)
{
    if (n <= 0 || (!dg && !du && !y))
        return 0;
    LC_DISPATCH_ACT(c, dt, T, {
        typedef gate<T, Act> P;
        bool vec = lc_aligned16(g, u, dy, dg, du, y);
        gated_bwd_k<P><<<lc_vgrid(n, LC_VW(T), vec), 256, 0, c->stream>>>(
            (const T *)g, (const T *)u, (const T *)dy, n, (T *)dg, (T *)du, (T *)y, vec);
        LC_LAUNCHED(c, "gated_bwd_k");
    });
    return 0;
}

extern "C" int lc_cuda_swiglu_fwd(lc_cuda_ctx *c, lc_dtype dt, const void *g,
                                  const void *u, int64_t n, void *y)
{
    return gated_fwd<act_silu>(c, dt, g, u, n, y);
}

extern "C" int lc_cuda_swiglu_bwd(lc_cuda_ctx *c, lc_dtype dt, const void *g,
                                  const void *u, const void *dy, int64_t n, void *dg, void *du,
                                  void *y)
{
    return gated_bwd<act_silu>(c, dt, g, u, dy, n, dg, du, y);
}

extern "C" int lc_cuda_geglu_tanh_fwd(lc_cuda_ctx *c, lc_dtype dt, const void *g,
                                      const void *u, int64_t n, void *y)
{
    return gated_fwd<act_gelu_tanh>(c, dt, g, u, n, y);
}

extern "C" int lc_cuda_geglu_tanh_bwd(lc_cuda_ctx *c, lc_dtype dt, const void *g,
                                      const void *u, const void *dy, int64_t n, void *dg,
                                      void *du, void *y)
{
    return gated_bwd<act_gelu_tanh>(c, dt, g, u, dy, n, dg, du, y);
}

/* ---- RoPE ---- */

/* One thread per rotated pair (token i, head h, j < D/2): it reads both
 * halves before writing, so src == dst is safe without accumulate. */
template <typename T>
__global__ void rope_k(const T *src, T *dst, int64_t N, int heads, int D, const int32_t *pos,
                       const float *cos_sin, float sgn, bool accumulate)
{
    int half = D / 2;
    int64_t total = N * heads * half;
    GRID_STRIDE(e, total)
    {
        int j = (int)(e % half);
        int64_t ih = e / half; /* i·heads + h */
        int64_t i = ih / heads;
        const float *cs = cos_sin + (int64_t)pos[i] * D;
        float cv = cs[j], sn = sgn * cs[half + j];
        const T *s = src + ih * D;
        T *d = dst + ih * D;
        float x1 = lc_ld(s[j]), x2 = lc_ld(s[j + half]);
        float y1 = x1 * cv - x2 * sn, y2 = x2 * cv + x1 * sn;
        if (accumulate) {
            y1 += lc_ld(d[j]);
            y2 += lc_ld(d[j + half]);
        }
        d[j] = lc_st<T>(y1);
        d[j + half] = lc_st<T>(y2);
    }
}

extern "C" int lc_cuda_rope(lc_cuda_ctx *c, lc_dtype dt, const void *src, void *dst,
                            int64_t N, int heads, int D, const int32_t *pos,
                            const float *cos_sin, bool inverse, bool accumulate)
{
    if (D % 2)
        return LC_BAD(c, "rope: head dim %d is odd", D);
    if (N <= 0 || heads <= 0 || D <= 0)
        return 0;
    int64_t total = N * heads * (D / 2);
    LC_DISPATCH_ACT(c, dt, T, {
        rope_k<T><<<lc_grid(total, 256), 256, 0, c->stream>>>(
            (const T *)src, (T *)dst, N, heads, D, pos, cos_sin, inverse ? -1.0f : 1.0f,
            accumulate);
        LC_LAUNCHED(c, "rope_k");
    });
    return 0;
}

/* ---- axpy / add / bias ---- */

/* x, y: [n] */
template <typename T> __global__ void axpy_k(int64_t n, float a, const T *x, T *y, bool vec)
{
    T *out[1] = {y};
    lc_map<LC_VW(T)>(
        n, vec, [=](int64_t, const float *v, float *o) { o[0] = v[0] + a * v[1]; }, out,
        (const T *)y, x);
}

/* a, b, out: [n] (out may be a) */
template <typename T> __global__ void add_k(int64_t n, const T *a, const T *b, T *out, bool vec)
{
    T *o_[1] = {out};
    lc_map<LC_VW(T)>(
        n, vec, [](int64_t, const float *v, float *o) { o[0] = v[0] + v[1]; }, o_, a, b);
}

/* y: [N, O] += bias: [O] per row (bias gathered element by element) */
template <typename T>
__global__ void add_bias_k(int64_t N, int64_t O, const T *bias, T *y, bool vec)
{
    T *out[1] = {y};
    lc_map<LC_VW(T)>(
        N * O, vec,
        [=](int64_t e, const float *v, float *o) { o[0] = v[0] + lc_ld(bias[e % O]); }, out,
        (const T *)y);
}

extern "C" int lc_cuda_axpy(lc_cuda_ctx *c, lc_dtype dt, int64_t n, float a, const void *x,
                            void *y)
{
    if (n <= 0)
        return 0;
    LC_DISPATCH_ACT(c, dt, T, {
        bool vec = lc_aligned16(x, y);
        axpy_k<T><<<lc_vgrid(n, LC_VW(T), vec), 256, 0, c->stream>>>(n, a, (const T *)x, (T *)y,
                                                                      vec);
        LC_LAUNCHED(c, "axpy_k");
    });
    return 0;
}

extern "C" int lc_cuda_add(lc_cuda_ctx *c, lc_dtype dt, int64_t n, const void *a,
                           const void *b, void *out)
{
    if (n <= 0)
        return 0;
    LC_DISPATCH_ACT(c, dt, T, {
        bool vec = lc_aligned16(a, b, out);
        add_k<T><<<lc_vgrid(n, LC_VW(T), vec), 256, 0, c->stream>>>(n, (const T *)a, (const T *)b,
                                                                     (T *)out, vec);
        LC_LAUNCHED(c, "add_k");
    });
    return 0;
}

extern "C" int lc_cuda_add_bias(lc_cuda_ctx *c, lc_dtype dt, int64_t N, int64_t O,
                                const void *bias, void *y)
{
    if (N <= 0 || O <= 0)
        return 0;
    LC_DISPATCH_ACT(c, dt, T, {
        bool vec = lc_aligned16(y);
        add_bias_k<T><<<lc_vgrid(N * O, LC_VW(T), vec), 256, 0, c->stream>>>(
            N, O, (const T *)bias, (T *)y, vec);
        LC_LAUNCHED(c, "add_bias_k");
    });
    return 0;
}

/* x, y: [n] (y may be x) */
template <typename T> __global__ void scale_k(int64_t n, float s, const T *x, T *y, bool vec)
{
    T *out[1] = {y};
    lc_map<LC_VW(T)>(
        n, vec, [=](int64_t, const float *v, float *o) { o[0] = s * v[0]; }, out, x);
}

/* a, b, y: [n] */
template <typename T> __global__ void div_k(int64_t n, const T *a, const T *b, T *y, bool vec)
{
    T *out[1] = {y};
    lc_map<LC_VW(T)>(
        n, vec, [](int64_t, const float *v, float *o) { o[0] = __fdiv_rn(v[0], v[1]); }, out, a,
        b);
}

/* part[N,w] = wide[:, c0:c0+w], or wide[:, c0:c0+w] += part */
template <typename T>
__global__ void cols_k(T *wide, int64_t N, int64_t ld, int64_t c0, int64_t w, T *part, bool add)
{
    GRID_STRIDE(e, N * w)
    {
        T *x = wide + (e / w) * ld + c0 + e % w;
        if (add)
            *x = lc_st<T>(lc_ld(*x) + lc_ld(part[e]));
        else
            part[e] = *x;
    }
}

/* x: [n], in place */
template <typename T> __global__ void softcap_k(T *x, int64_t n, float cap, float inv, bool vec)
{
    T *out[1] = {x};
    lc_map<LC_VW(T)>(
        n, vec, [=](int64_t, const float *v, float *o) { o[0] = cap * tanhf(v[0] * inv); }, out,
        (const T *)x);
}

extern "C" int lc_cuda_scale(lc_cuda_ctx *c, lc_dtype dt, int64_t n, float s, const void *x,
                             void *y)
{
    if (n <= 0)
        return 0;
    LC_DISPATCH_ACT(c, dt, T, {
        bool vec = lc_aligned16(x, y);
        scale_k<T><<<lc_vgrid(n, LC_VW(T), vec), 256, 0, c->stream>>>(n, s, (const T *)x, (T *)y,
                                                                       vec);
        LC_LAUNCHED(c, "scale_k");
    });
    return 0;
}

extern "C" int lc_cuda_div(lc_cuda_ctx *c, lc_dtype dt, int64_t n, const void *a, const void *b,
                           void *y)
{
    if (n <= 0)
        return 0;
    LC_DISPATCH_ACT(c, dt, T, {
        bool vec = lc_aligned16(a, b, y);
        div_k<T><<<lc_vgrid(n, LC_VW(T), vec), 256, 0, c->stream>>>(n, (const T *)a, (const T *)b,
                                                                     (T *)y, vec);
        LC_LAUNCHED(c, "div_k");
    });
    return 0;
}

extern "C" int lc_cuda_cols(lc_cuda_ctx *c, lc_dtype dt, void *wide, int64_t N, int64_t ld,
                            int64_t c0, int64_t w, void *part, bool add)
{
    if (c0 < 0 || w < 0 || c0 + w > ld)
        return LC_BAD(c, "cols: columns [%lld, %lld) outside a row of %lld", (long long)c0,
                      (long long)(c0 + w), (long long)ld);
    if (N <= 0 || w == 0)
        return 0;
    LC_DISPATCH_ACT(c, dt, T, {
        cols_k<T><<<lc_grid(N * w, 256), 256, 0, c->stream>>>((T *)wide, N, ld, c0, w, (T *)part,
                                                                add);
        LC_LAUNCHED(c, "cols_k");
    });
    return 0;
}

extern "C" int lc_cuda_softcap(lc_cuda_ctx *c, lc_dtype dt, void *x, int64_t n, double cap)
{
    if (n <= 0 || cap == 0)
        return 0;
    float cf = (float)cap; /* as the CPU: cap and 1/cap rounded to f32 first */
    LC_DISPATCH_ACT(c, dt, T, {
        bool vec = lc_aligned16(x);
        softcap_k<T><<<lc_vgrid(n, LC_VW(T), vec), 256, 0, c->stream>>>((T *)x, n, cf, 1.0f / cf,
                                                                         vec);
        LC_LAUNCHED(c, "softcap_k");
    });
    return 0;
}

/* ---- embedding ---- */

template <typename T>
__global__ void embedding_k(lc_dweight E, const int32_t *ids, int64_t N, T *x)
{
    int64_t C = E.cols;
    GRID_STRIDE(e, N * C)
    {
        int64_t i = e / C, col = e % C;
        x[e] = lc_st<T>(lc_weight_elem(E, (int64_t)ids[i] * C + col));
    }
}

extern "C" int lc_cuda_embedding(lc_cuda_ctx *c, lc_dtype dt, const lc_weight *E,
                                 const int32_t *ids, int64_t N, void *x)
{
    LC_TRY(lc_cuda_check_weight(c, E));
    if (N <= 0 || E->cols <= 0)
        return 0;
    LC_DISPATCH_ACT(c, dt, T, {
        embedding_k<T><<<lc_grid(N * E->cols, 256), 256, 0, c->stream>>>(lc_dweight_of(E), ids, N,
                                                                          (T *)x);
        LC_LAUNCHED(c, "embedding_k");
    });
    return 0;
}

/* src, dst: [n]; dst is read only to accumulate */
template <typename T>
__global__ void dropout_k(const T *src, T *dst, int64_t n, uint32_t key, uint32_t threshold,
                          float keep_scale, bool accumulate, bool vec)
{
    T *out[1] = {dst};
    lc_map<LC_VW(T)>(
        n, vec,
        [=](int64_t i, const float *x, float *o) {
            bool keep = (lc_hash32(key ^ (uint32_t)i) >> 8) >= threshold;
            /* __fmul_rn / __fadd_rn: no FMA contraction, as on the CPU */
            float v = keep ? __fmul_rn(x[0], keep_scale) : 0.0f;
            o[0] = accumulate ? __fadd_rn(x[1], v) : v;
        },
        out, src, accumulate ? (const T *)dst : nullptr);
}

extern "C" int lc_cuda_dropout(lc_cuda_ctx *c, lc_dtype dt, const void *src, void *dst,
                               int64_t n, double p, uint64_t seed, bool accumulate)
{
    if (!(p >= 0.0 && p < 1.0))
        return LC_BAD(c, "dropout: p = %g outside [0, 1)", p);
    if (n <= 0)
        return 0;
    float keep_scale = (float)(1.0 / (1.0 - p));
    uint64_t mixed = lc_splitmix64(seed);
    uint32_t key = (uint32_t)(mixed ^ (mixed >> 32));
    uint32_t threshold = (uint32_t)ceil(p * 16777216.0);
    LC_DISPATCH_ACT(c, dt, T, {
        bool vec = lc_aligned16(src, dst);
        dropout_k<T><<<lc_vgrid(n, LC_VW(T), vec), 256, 0, c->stream>>>(
            (const T *)src, (T *)dst, n, key, threshold, keep_scale, accumulate, vec);
        LC_LAUNCHED(c, "dropout_k");
    });
    return 0;
}

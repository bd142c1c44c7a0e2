/* cuda_pointwise.cu — the row and element kernels: RMSNorm forward/backward,
 * SwiGLU and GeGLU (tanh GELU) forward/backward, RoPE (forward, inverse, accumulate), axpy /
 * residual add / bias add / scale / divide, column slices, soft-capping,
 * embedding gather and dropout.
 *
 * Each mirrors its lc_k_* in cpu/kernels_cpu.c line for line (same operand
 * order), loads bf16 or f32, computes in f32 and rounds once on the store.
 * RMSNorm uses one warp per row: rows are 64…8192 wide, a warp keeps every
 * load coalesced, and there is no shared memory or __syncthreads at all.
 * Dropout reproduces lc_k_dropout's mask bit for bit: key = the two halves
 * of lc_splitmix64(seed) xor-ed, keep element i iff (lowbias32(key ^ i) >> 8) ≥
 * ⌈p·2²⁴⌉ (i truncated to 32 bits, as on the CPU). */
#include <math.h>

#include "autograd/cuda/cuda_common.cuh"
#include "autograd/hash.h"

#define ROWS_PER_BLOCK 8 /* warps per block in the row kernels */

/* ---- RMSNorm ---- */

template <typename T>
__global__ void __launch_bounds__(32 * ROWS_PER_BLOCK)
    rmsnorm_fwd_k(const T *x, const T *w, int64_t N, int64_t C, float eps, T *y, float *rstd)
{
    int64_t row = blockIdx.x * (int64_t)ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= N)
        return;
    const T *xi = x + row * C;
    float ss = 0;
    for (int64_t c = lane; c < C; c += 32) {
        float v = lc_ld(xi[c]);
        ss += v * v;
    }
    ss = lc_warp_sum(ss);
    float r = 1.0f / sqrtf(ss / (float)C + eps);
    if (rstd && lane == 0)
        rstd[row] = r;
    T *yi = y + row * C;
    for (int64_t c = lane; c < C; c += 32)
        yi[c] = lc_st<T>(lc_ld(w[c]) * (lc_ld(xi[c]) * r));
}

template <typename T>
__global__ void __launch_bounds__(32 * ROWS_PER_BLOCK)
    rmsnorm_bwd_k(const T *x, const T *w, const float *rstd, const T *dy, int64_t N, int64_t C,
                  T *dx)
{
    int64_t row = blockIdx.x * (int64_t)ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= N)
        return;
    const T *xi = x + row * C, *dyi = dy + row * C;
    float r = rstd[row];
    float s = 0;
    for (int64_t c = lane; c < C; c += 32)
        s += lc_ld(w[c]) * lc_ld(dyi[c]) * lc_ld(xi[c]);
    s = lc_warp_sum(s);
    float k = s * r * r * r / (float)C;
    T *dxi = dx + row * C;
    for (int64_t c = lane; c < C; c += 32)
        dxi[c] = lc_st<T>(lc_ld(dxi[c]) + (r * lc_ld(w[c]) * lc_ld(dyi[c]) - k * lc_ld(xi[c])));
}

extern "C" int lc_cuda_rmsnorm_fwd(lc_cuda_ctx *c, lc_dtype dt, const void *x,
                                   const void *w, int64_t N, int64_t C, double eps, void *y,
                                   float *rstd)
{
    if (N <= 0 || C <= 0)
        return 0;
    unsigned grid = (unsigned)((N + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
    LC_DISPATCH_ACT(c, dt, T, {
        rmsnorm_fwd_k<T><<<grid, 32 * ROWS_PER_BLOCK, 0, c->stream>>>(
            (const T *)x, (const T *)w, N, C, (float)eps, (T *)y, rstd);
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
        rmsnorm_bwd_k<T><<<grid, 32 * ROWS_PER_BLOCK, 0, c->stream>>>(
            (const T *)x, (const T *)w, rstd, (const T *)dy, N, C, (T *)dx);
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

template <typename P>
__global__ void gated_fwd_k(const typename P::T *g, const typename P::T *u, int64_t n,
                            typename P::T *y)
{
    typedef typename P::T T;
    GRID_STRIDE(i, n)
    {
        y[i] = lc_st<T>(P::A::f(lc_ld(g[i])) * lc_ld(u[i]));
    }
}

template <typename P>
__global__ void gated_bwd_k(const typename P::T *g, const typename P::T *u,
                            const typename P::T *dy, int64_t n, typename P::T *dg,
                            typename P::T *du)
{
    typedef typename P::T T;
    GRID_STRIDE(i, n)
    {
        float gv = lc_ld(g[i]), d = lc_ld(dy[i]);
        if (dg)
            dg[i] = lc_st<T>(lc_ld(dg[i]) + d * lc_ld(u[i]) * P::A::df(gv));
        if (du)
            du[i] = lc_st<T>(lc_ld(du[i]) + d * P::A::f(gv));
    }
}

template <typename Act>
static int gated_fwd(lc_cuda_ctx *c, lc_dtype dt, const void *g, const void *u, int64_t n,
                     void *y)
{
    if (n <= 0)
        return 0;
    LC_DISPATCH_ACT(c, dt, T, {
        typedef gate<T, Act> P;
        gated_fwd_k<P><<<lc_grid(n, 256), 256, 0, c->stream>>>((const T *)g, (const T *)u, n,
                                                               (T *)y);
        LC_LAUNCHED(c, "gated_fwd_k");
    });
    return 0;
}

template <typename Act>
static int gated_bwd(lc_cuda_ctx *c, lc_dtype dt, const void *g, const void *u,
                     const void *dy, int64_t n, void *dg, void *du)
{
    if (n <= 0 || (!dg && !du))
        return 0;
    LC_DISPATCH_ACT(c, dt, T, {
        typedef gate<T, Act> P;
        gated_bwd_k<P><<<lc_grid(n, 256), 256, 0, c->stream>>>(
            (const T *)g, (const T *)u, (const T *)dy, n, (T *)dg, (T *)du);
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
                                  const void *u, const void *dy, int64_t n, void *dg, void *du)
{
    return gated_bwd<act_silu>(c, dt, g, u, dy, n, dg, du);
}

extern "C" int lc_cuda_geglu_tanh_fwd(lc_cuda_ctx *c, lc_dtype dt, const void *g,
                                      const void *u, int64_t n, void *y)
{
    return gated_fwd<act_gelu_tanh>(c, dt, g, u, n, y);
}

extern "C" int lc_cuda_geglu_tanh_bwd(lc_cuda_ctx *c, lc_dtype dt, const void *g,
                                      const void *u, const void *dy, int64_t n, void *dg,
                                      void *du)
{
    return gated_bwd<act_gelu_tanh>(c, dt, g, u, dy, n, dg, du);
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

template <typename T> __global__ void axpy_k(int64_t n, float a, const T *x, T *y)
{
    GRID_STRIDE(i, n) y[i] = lc_st<T>(lc_ld(y[i]) + a * lc_ld(x[i]));
}

template <typename T> __global__ void add_k(int64_t n, const T *a, const T *b, T *out)
{
    GRID_STRIDE(i, n) out[i] = lc_st<T>(lc_ld(a[i]) + lc_ld(b[i]));
}

template <typename T> __global__ void add_bias_k(int64_t N, int64_t O, const T *bias, T *y)
{
    GRID_STRIDE(e, N * O) y[e] = lc_st<T>(lc_ld(y[e]) + lc_ld(bias[e % O]));
}

extern "C" int lc_cuda_axpy(lc_cuda_ctx *c, lc_dtype dt, int64_t n, float a, const void *x,
                            void *y)
{
    if (n <= 0)
        return 0;
    LC_DISPATCH_ACT(c, dt, T, {
        axpy_k<T><<<lc_grid(n, 256), 256, 0, c->stream>>>(n, a, (const T *)x, (T *)y);
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
        add_k<T><<<lc_grid(n, 256), 256, 0, c->stream>>>(n, (const T *)a, (const T *)b, (T *)out);
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
        add_bias_k<T><<<lc_grid(N * O, 256), 256, 0, c->stream>>>(N, O, (const T *)bias, (T *)y);
        LC_LAUNCHED(c, "add_bias_k");
    });
    return 0;
}

template <typename T> __global__ void scale_k(int64_t n, float s, const T *x, T *y)
{
    GRID_STRIDE(i, n) y[i] = lc_st<T>(s * lc_ld(x[i]));
}

template <typename T> __global__ void div_k(int64_t n, const T *a, const T *b, T *y)
{
    GRID_STRIDE(i, n) y[i] = lc_st<T>(__fdiv_rn(lc_ld(a[i]), lc_ld(b[i])));
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

template <typename T> __global__ void softcap_k(T *x, int64_t n, float cap, float inv)
{
    GRID_STRIDE(i, n) x[i] = lc_st<T>(cap * tanhf(lc_ld(x[i]) * inv));
}

extern "C" int lc_cuda_scale(lc_cuda_ctx *c, lc_dtype dt, int64_t n, float s, const void *x,
                             void *y)
{
    if (n <= 0)
        return 0;
    LC_DISPATCH_ACT(c, dt, T, {
        scale_k<T><<<lc_grid(n, 256), 256, 0, c->stream>>>(n, s, (const T *)x, (T *)y);
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
        div_k<T><<<lc_grid(n, 256), 256, 0, c->stream>>>(n, (const T *)a, (const T *)b, (T *)y);
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
        softcap_k<T><<<lc_grid(n, 256), 256, 0, c->stream>>>((T *)x, n, cf, 1.0f / cf);
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

template <typename T>
__global__ void dropout_k(const T *src, T *dst, int64_t n, uint32_t key, uint32_t threshold,
                          float keep_scale, bool accumulate)
{
    GRID_STRIDE(i, n)
    {
        bool keep = (lc_hash32(key ^ (uint32_t)i) >> 8) >= threshold;
        /* __fmul_rn / __fadd_rn: no FMA contraction, as on the CPU */
        float v = keep ? __fmul_rn(lc_ld(src[i]), keep_scale) : 0.0f;
        dst[i] = lc_st<T>(accumulate ? __fadd_rn(lc_ld(dst[i]), v) : v);
    }
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
        dropout_k<T><<<lc_grid(n, 256), 256, 0, c->stream>>>((const T *)src, (T *)dst, n, key,
                                                             threshold, keep_scale, accumulate);
        LC_LAUNCHED(c, "dropout_k");
    });
    return 0;
}

/* cuda_attention.cu — flash-style causal GQA attention with packed-row
 * segments and a sliding window; forward saves the log-sum-exp, backward
 * recomputes the probabilities from it.
 *
 * Plain CUDA cores, f32 math, one layout for every head dim ≤ 128: a block
 * is 4 warps; K/V tiles of 32 keys are staged in shared memory as f32 (the
 * row of a lane-indexed tile padded to D+1 floats so the 32 lanes of a warp
 * hit 32 different banks). Not peak-tuned (no tensor cores, no cp.async):
 * correctness and an obvious correspondence with the CPU's blocked
 * attention come first; a tensor-core version can replace it behind the
 * same signature.
 *
 * Forward — one block per (query tile of 32, head, batch row); each warp
 *   owns 8 queries and keeps, per query, the running max m, sum l and the
 *   output accumulator (lane owns dims lane, lane+32, …) in registers.
 *   Per key tile: lane j computes score(q, k_j); online softmax update;
 *   o += Σ_j p_j v_j with p_j broadcast by shuffle. lse = m + log l.
 * Backward — deterministic, no atomics, in three kernels:
 *   delta:  Δ_i = dout_i · out_i (one warp per row), into scratch;
 *   dq:     per (query tile, head, batch): like forward, with
 *           p = exp(s − lse), dp = dout·v, ds = p(dp − Δ), dq += scale·ds·k;
 *   dk, dv: per (key tile of 32, kv head, batch), looping over the query
 *           heads of its group and the query tiles that can see it; each
 *           warp owns 8 keys, lane = query for the scores, and the block
 *           owns its rows of dk/dv, so the += needs no atomics.
 * Masking, as attn_allowed() on the CPU: j ≤ i, i − j < window (when set),
 * same segment (when set). Soft-capping (Gemma 2, softcap > 0) bends each
 * scaled score s to cap·tanh(s/cap) before the mask; backward multiplies
 * ds by 1 − tanh². */
#include <math.h>

#include "autograd/cuda/cuda_common.cuh"

#define NW 4                 /* warps per block */
#define QPW 8                /* queries per warp (forward, dq) */
#define BQ (NW * QPW)        /* 32 queries per tile */
#define BK 32                /* keys per tile (= lanes) */
#define KPW (BK / NW)        /* keys per warp in dk/dv */
#define DMAX LC_CUDA_ATTN_MAX_D
#define DPL (DMAX / 32)      /* head dims per lane */

struct attn_args {
    int64_t B, T;
    int H, KV, D, group;
    float scale;
    const int32_t *seg;
    int64_t window;
    float softcap;       /* 0 = none */
};

__device__ __forceinline__ bool attn_ok(const attn_args &a, int64_t i, int64_t j, int si, int sj)
{
    return j <= i && (a.window <= 0 || i - j < a.window) && (!a.seg || si == sj);
}

/* Rows [r0, r0 + rows) of a [B, T, heads, D] tensor for (b, head) into
 * shared f32 [rows][ld], times mul; rows past T read as 0. */
template <typename T>
__device__ __forceinline__ void load_tile(float *dst, int ld, const T *src, const attn_args &a,
                                          int64_t b, int heads, int head, int64_t r0, int rows,
                                          float mul)
{
    const int D = a.D;
    for (int e = threadIdx.x; e < rows * D; e += blockDim.x) {
        int r = e / D, d = e - r * D;
        int64_t t = r0 + r;
        float v = 0.0f;
        if (t < a.T)
            v = lc_ld(src[((b * a.T + t) * heads + head) * (int64_t)D + d]) * mul;
        dst[r * ld + d] = v;
    }
}

/* Soft-capping of a scaled score s (Gemma 2): cap·tanh(s/cap), and in *ds
 * its derivative 1 − tanh²; cap 0 returns s (derivative 1). The branch is on
 * a kernel argument: uniform over the grid. */
__device__ __forceinline__ float softcap_score(float s, float cap, float *ds)
{
    if (cap == 0.0f) {
        *ds = 1.0f;
        return s;
    }
    float t = tanhf(s / cap);
    *ds = 1.0f - t * t;
    return cap * t;
}

__device__ __forceinline__ float dot_sh(const float *x, const float *y, int D)
{
    float acc = 0.0f;
#pragma unroll 8
    for (int d = 0; d < D; d++)
        acc += x[d] * y[d];
    return acc;
}

__host__ __device__ static inline int64_t key_lo(int64_t t0, int64_t window)
{
    return (window > 0 && t0 - window + 1 > 0) ? t0 - window + 1 : 0;
}

/* ---- forward ---- */

template <typename T>
__global__ void __launch_bounds__(NW * 32)
    attn_fwd_k(attn_args a, const T *q, const T *k, const T *v, T *out, float *lse)
{
    extern __shared__ float sm[];
    const int D = a.D, ldk = D + 1;
    float *Qs = sm;                    /* [BQ][D], pre-scaled */
    float *Os = Qs + BQ * D;           /* [BQ][D] output accumulators */
    float *Ks = Os + BQ * D;           /* [BK][D+1] */
    float *Vs = Ks + BK * ldk;         /* [BK][D] */
    float *ms = Vs + BK * D;           /* [BQ] running max */
    float *ls = ms + BQ;               /* [BQ] running sum */
    int *segq = (int *)(ls + BQ);      /* [BQ] */
    int *segk = segq + BQ;             /* [BK] */

    const int64_t b = blockIdx.z, T_ = a.T;
    const int h = blockIdx.y, kvh = h / a.group;
    const int64_t t0 = (int64_t)blockIdx.x * BQ;
    const int64_t t1 = t0 + BQ < T_ ? t0 + BQ : T_;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

    load_tile(Qs, D, q, a, b, a.H, h, t0, BQ, a.scale);
    for (int e = threadIdx.x; e < BQ * D; e += blockDim.x)
        Os[e] = 0.0f;
    if (threadIdx.x < BQ) {
        int64_t i = t0 + threadIdx.x;
        ms[threadIdx.x] = -INFINITY;
        ls[threadIdx.x] = 0.0f;
        segq[threadIdx.x] = (a.seg && i < T_) ? a.seg[b * T_ + i] : 0;
    }

    const int64_t klo = key_lo(t0, a.window);
    for (int64_t k0 = klo; k0 < t1; k0 += BK) {
        __syncthreads(); /* previous tile consumed; Qs, Os, ms… visible on the first pass */
        load_tile(Ks, ldk, k, a, b, a.KV, kvh, k0, BK, 1.0f);
        load_tile(Vs, D, v, a, b, a.KV, kvh, k0, BK, 1.0f);
        if (threadIdx.x < BK) {
            int64_t kj = k0 + threadIdx.x;
            segk[threadIdx.x] = (a.seg && kj < T_) ? a.seg[b * T_ + kj] : 0;
        }
        __syncthreads();
        const int64_t kj = k0 + lane;
#pragma unroll 1
        for (int qq = 0; qq < QPW; qq++) {
            const int r = warp * QPW + qq;
            const int64_t i = t0 + r;
            if (i >= T_ || k0 > i) /* warp-uniform */
                continue;
            bool ok = kj < T_ && attn_ok(a, i, kj, segq[r], segk[lane]);
            float dcap;
            float s = ok ? softcap_score(dot_sh(Qs + r * D, Ks + lane * ldk, D), a.softcap, &dcap)
                         : -INFINITY;
            float mt = lc_warp_max(s);
            if (mt == -INFINITY)
                continue;
            const float m_old = ms[r], l_old = ls[r];
            float mn = fmaxf(m_old, mt);
            float alpha = expf(m_old - mn); /* 0 on the first visible tile */
            float p = ok ? expf(s - mn) : 0.0f;
            float lsum = lc_warp_sum(p); /* also orders every lane's read of ms/ls before the write */
            if (lane == 0) {
                ms[r] = mn;
                ls[r] = l_old * alpha + lsum;
            }
            float o[DPL];
#pragma unroll
            for (int t = 0; t < DPL; t++) {
                int d = lane + 32 * t;
                o[t] = d < D ? Os[r * D + d] * alpha : 0.0f;
            }
            for (int j = 0; j < BK; j++) {
                float pj = __shfl_sync(0xffffffffu, p, j);
                const float *vr = Vs + j * D;
#pragma unroll
                for (int t = 0; t < DPL; t++) {
                    int d = lane + 32 * t;
                    if (d < D)
                        o[t] += pj * vr[d];
                }
            }
#pragma unroll
            for (int t = 0; t < DPL; t++) {
                int d = lane + 32 * t;
                if (d < D)
                    Os[r * D + d] = o[t];
            }
            __syncwarp();
        }
    }
    __syncthreads();

#pragma unroll 1
    for (int qq = 0; qq < QPW; qq++) {
        const int r = warp * QPW + qq;
        int64_t i = t0 + r;
        if (i >= T_)
            continue;
        float l = ls[r];
        float inv = l > 0.0f ? 1.0f / l : 0.0f;
        T *orow = out + ((b * T_ + i) * a.H + h) * (int64_t)D;
        for (int d = lane; d < D; d += 32)
            orow[d] = lc_st<T>(Os[r * D + d] * inv);
        if (lane == 0)
            lse[(b * a.H + h) * T_ + i] = l > 0.0f ? ms[r] + logf(l) : -INFINITY;
    }
}

/* ---- backward: Δ = rowwise dout · out ---- */

template <typename T>
__global__ void attn_delta_k(attn_args a, const T *out, const T *dout, float *delta)
{
    /* row index = (b·T + t)·H + h, the memory order of out */
    int64_t rows = a.B * a.T * a.H;
    int64_t row = blockIdx.x * (int64_t)NW + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= rows)
        return;
    const T *o = out + row * a.D, *g = dout + row * a.D;
    float s = 0.0f;
    for (int d = lane; d < a.D; d += 32)
        s += lc_ld(g[d]) * lc_ld(o[d]);
    s = lc_warp_sum(s);
    if (lane == 0) {
        int64_t h = row % a.H, bt = row / a.H, t = bt % a.T, b = bt / a.T;
        delta[(b * a.H + h) * a.T + t] = s;
    }
}

/* ---- backward: dq ---- */

template <typename T>
__global__ void __launch_bounds__(NW * 32)
    attn_dq_k(attn_args a, const T *q, const T *k, const T *v, const float *lse, const T *dout,
              const float *delta, T *dq)
{
    extern __shared__ float sm[];
    const int D = a.D, ldk = D + 1;
    float *Qs = sm;                    /* [BQ][D] pre-scaled */
    float *dOs = Qs + BQ * D;          /* [BQ][D] */
    float *As = dOs + BQ * D;          /* [BQ][D] dq accumulators */
    float *Ks = As + BQ * D;           /* [BK][D+1] */
    float *Vs = Ks + BK * ldk;         /* [BK][D+1] */
    float *lq = Vs + BK * ldk;         /* [BQ] */
    float *dl = lq + BQ;               /* [BQ] */
    int *segq = (int *)(dl + BQ);      /* [BQ] */
    int *segk = segq + BQ;             /* [BK] */

    const int64_t b = blockIdx.z, T_ = a.T;
    const int h = blockIdx.y, kvh = h / a.group;
    const int64_t t0 = (int64_t)blockIdx.x * BQ;
    const int64_t t1 = t0 + BQ < T_ ? t0 + BQ : T_;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

    load_tile(Qs, D, q, a, b, a.H, h, t0, BQ, a.scale);
    load_tile(dOs, D, dout, a, b, a.H, h, t0, BQ, 1.0f);
    for (int e = threadIdx.x; e < BQ * D; e += blockDim.x)
        As[e] = 0.0f;
    if (threadIdx.x < BQ) {
        int64_t i = t0 + threadIdx.x;
        bool in = i < T_;
        lq[threadIdx.x] = in ? lse[(b * a.H + h) * T_ + i] : 0.0f;
        dl[threadIdx.x] = in ? delta[(b * a.H + h) * T_ + i] : 0.0f;
        segq[threadIdx.x] = (a.seg && in) ? a.seg[b * T_ + i] : 0;
    }

    const int64_t klo = key_lo(t0, a.window);
    for (int64_t k0 = klo; k0 < t1; k0 += BK) {
        __syncthreads();
        load_tile(Ks, ldk, k, a, b, a.KV, kvh, k0, BK, 1.0f);
        load_tile(Vs, ldk, v, a, b, a.KV, kvh, k0, BK, 1.0f);
        if (threadIdx.x < BK) {
            int64_t kj = k0 + threadIdx.x;
            segk[threadIdx.x] = (a.seg && kj < T_) ? a.seg[b * T_ + kj] : 0;
        }
        __syncthreads();
        const int64_t kj = k0 + lane;
#pragma unroll 1
        for (int qq = 0; qq < QPW; qq++) {
            const int r = warp * QPW + qq;
            const int64_t i = t0 + r;
            if (i >= T_ || k0 > i)
                continue;
            bool ok = kj < T_ && attn_ok(a, i, kj, segq[r], segk[lane]);
            if (!__any_sync(0xffffffffu, ok))
                continue;
            float ds = 0.0f;
            if (ok) {
                float dcap;
                float s = softcap_score(dot_sh(Qs + r * D, Ks + lane * ldk, D), a.softcap, &dcap);
                float p = expf(s - lq[r]);
                float dp = dot_sh(dOs + r * D, Vs + lane * ldk, D);
                ds = p * (dp - dl[r]) * dcap;
            }
            float acc[DPL];
#pragma unroll
            for (int t = 0; t < DPL; t++)
                acc[t] = 0.0f;
            for (int j = 0; j < BK; j++) {
                float dsj = __shfl_sync(0xffffffffu, ds, j);
                const float *kr = Ks + j * ldk;
#pragma unroll
                for (int t = 0; t < DPL; t++) {
                    int d = lane + 32 * t;
                    if (d < D)
                        acc[t] += dsj * kr[d];
                }
            }
#pragma unroll
            for (int t = 0; t < DPL; t++) {
                int d = lane + 32 * t;
                if (d < D)
                    As[r * D + d] += acc[t];
            }
        }
    }
    __syncthreads();

#pragma unroll 1
    for (int qq = 0; qq < QPW; qq++) {
        const int r = warp * QPW + qq;
        int64_t i = t0 + r;
        if (i >= T_)
            continue;
        T *row = dq + ((b * T_ + i) * a.H + h) * (int64_t)D;
        for (int d = lane; d < D; d += 32)
            row[d] = lc_st<T>(lc_ld(row[d]) + a.scale * As[r * D + d]);
    }
}

/* ---- backward: dk, dv ---- */

template <typename T>
__global__ void __launch_bounds__(NW * 32)
    attn_dkv_k(attn_args a, const T *q, const T *k, const T *v, const float *lse, const T *dout,
               const float *delta, T *dk, T *dv)
{
    extern __shared__ float sm[];
    const int D = a.D, ldq = D + 1;
    float *Ks = sm;                    /* [BK][D] */
    float *Vs = Ks + BK * D;           /* [BK][D] */
    float *Gk = Vs + BK * D;           /* [BK][D] dk accumulators */
    float *Gv = Gk + BK * D;           /* [BK][D] dv accumulators */
    float *Qs = Gv + BK * D;           /* [32][D+1] pre-scaled, lane = query */
    float *dOs = Qs + 32 * ldq;        /* [32][D+1] */
    float *lse_s = dOs + 32 * ldq;     /* [32] */
    float *del_s = lse_s + 32;         /* [32] */
    int *segq_s = (int *)(del_s + 32); /* [32] */
    int *segk_s = segq_s + 32;         /* [BK] */

    const int64_t b = blockIdx.z, T_ = a.T;
    const int kvh = blockIdx.y;
    const int64_t k0 = (int64_t)blockIdx.x * BK;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

    load_tile(Ks, D, k, a, b, a.KV, kvh, k0, BK, 1.0f);
    load_tile(Vs, D, v, a, b, a.KV, kvh, k0, BK, 1.0f);
    for (int e = threadIdx.x; e < BK * D; e += blockDim.x) {
        Gk[e] = 0.0f;
        Gv[e] = 0.0f;
    }
    if (threadIdx.x < BK) {
        int64_t kj = k0 + threadIdx.x;
        segk_s[threadIdx.x] = (a.seg && kj < T_) ? a.seg[b * T_ + kj] : 0;
    }

    /* queries that can see a key of [k0, k0 + BK): i ≥ k0, and i − j < window */
    int64_t qend = T_;
    if (a.window > 0 && k0 + BK - 1 + a.window < qend)
        qend = k0 + BK - 1 + a.window;
    for (int h = kvh * a.group; h < (kvh + 1) * a.group; h++) {
        for (int64_t q0 = k0; q0 < qend; q0 += 32) {
            __syncthreads();
            load_tile(Qs, ldq, q, a, b, a.H, h, q0, 32, a.scale);
            load_tile(dOs, ldq, dout, a, b, a.H, h, q0, 32, 1.0f);
            if (threadIdx.x < 32) {
                int64_t i = q0 + threadIdx.x;
                bool in = i < T_;
                lse_s[threadIdx.x] = in ? lse[(b * a.H + h) * T_ + i] : 0.0f;
                del_s[threadIdx.x] = in ? delta[(b * a.H + h) * T_ + i] : 0.0f;
                segq_s[threadIdx.x] = (a.seg && in) ? a.seg[b * T_ + i] : 0;
            }
            __syncthreads();
            const int64_t i = q0 + lane;
#pragma unroll 1
            for (int kk = 0; kk < KPW; kk++) {
                const int jr = warp * KPW + kk;
                const int64_t kj = k0 + jr;
                if (kj >= T_) /* warp-uniform */
                    continue;
                bool ok = i < T_ && attn_ok(a, i, kj, segq_s[lane], segk_s[jr]);
                if (!__any_sync(0xffffffffu, ok))
                    continue;
                float p = 0.0f, ds = 0.0f;
                if (ok) {
                    float dcap;
                    float s = softcap_score(dot_sh(Qs + lane * ldq, Ks + jr * D, D), a.softcap,
                                            &dcap);
                    p = expf(s - lse_s[lane]);
                    float dp = dot_sh(dOs + lane * ldq, Vs + jr * D, D);
                    ds = p * (dp - del_s[lane]) * dcap;
                }
                float gk[DPL], gv[DPL];
#pragma unroll
                for (int t = 0; t < DPL; t++) {
                    gk[t] = 0.0f;
                    gv[t] = 0.0f;
                }
                for (int r = 0; r < 32; r++) {
                    float pr = __shfl_sync(0xffffffffu, p, r);
                    float dsr = __shfl_sync(0xffffffffu, ds, r);
                    const float *qr = Qs + r * ldq, *gr = dOs + r * ldq;
#pragma unroll
                    for (int t = 0; t < DPL; t++) {
                        int d = lane + 32 * t;
                        if (d < D) {
                            gv[t] += pr * gr[d];
                            gk[t] += dsr * qr[d]; /* Qs carries the scale */
                        }
                    }
                }
#pragma unroll
                for (int t = 0; t < DPL; t++) {
                    int d = lane + 32 * t;
                    if (d < D) {
                        Gk[jr * D + d] += gk[t];
                        Gv[jr * D + d] += gv[t];
                    }
                }
            }
        }
    }
    __syncthreads();

#pragma unroll 1
    for (int kk = 0; kk < KPW; kk++) {
        const int jr = warp * KPW + kk;
        int64_t kj = k0 + jr;
        if (kj >= T_)
            continue;
        int64_t off = ((b * T_ + kj) * a.KV + kvh) * (int64_t)D;
        for (int d = lane; d < D; d += 32) {
            if (dk)
                dk[off + d] = lc_st<T>(lc_ld(dk[off + d]) + Gk[jr * D + d]);
            if (dv)
                dv[off + d] = lc_st<T>(lc_ld(dv[off + d]) + Gv[jr * D + d]);
        }
    }
}

/* ---- host side ---- */

static size_t fwd_smem(int D)
{
    return sizeof(float) * (size_t)(2 * BQ * D + BK * (D + 1) + BK * D + 3 * BQ + BK);
}
static size_t dq_smem(int D)
{
    return sizeof(float) * (size_t)(3 * BQ * D + 2 * BK * (D + 1) + 3 * BQ + BK);
}
static size_t dkv_smem(int D)
{
    return sizeof(float) * (size_t)(4 * BK * D + 2 * 32 * (D + 1) + 3 * 32 + BK);
}

static int check_shape(lc_cuda_ctx *c, const lc_attn_shape *s, attn_args *a)
{
    if (s->D <= 0 || s->D > DMAX)
        return LC_BAD(c, "attention: head dim %d outside [1, %d]", s->D, DMAX);
    if (s->H <= 0 || s->KV <= 0 || s->H % s->KV)
        return LC_BAD(c, "attention: %d query heads not a multiple of %d kv heads", s->H, s->KV);
    if (s->past != 0)
        return LC_BAD(c, "attention: past %lld keys (a KV cache) is not supported on the device",
                      (long long)s->past);
    if (s->T > (int64_t)BQ * 2147483647LL || s->B > 65535 || s->H > 65535)
        return LC_BAD(c, "attention: shape B=%lld T=%lld H=%d beyond the grid limits",
                      (long long)s->B, (long long)s->T, s->H);
    a->B = s->B;
    a->T = s->T;
    a->H = s->H;
    a->KV = s->KV;
    a->D = s->D;
    a->group = s->H / s->KV;
    a->scale = (float)s->scale;
    a->seg = s->segment;
    a->window = s->window;
    a->softcap = (float)s->softcap;
    return 0;
}

/* Opts a kernel into more than 48 KiB of dynamic shared memory. */
template <typename K> static int smem_attr(lc_cuda_ctx *c, K kernel, size_t bytes)
{
    int optin = 0;
    LC_CU(&c->err, cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                          c->device));
    if (bytes > (size_t)optin)
        return LC_BAD(c, "attention: needs %zu bytes of shared memory per block, the device "
                         "allows %d",
                      bytes, optin);
    if (bytes > 48 * 1024)
        LC_CU(&c->err, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            (int)bytes));
    return 0;
}

extern "C" size_t lc_cuda_attention_scratch_bytes(const lc_attn_shape *s)
{
    return sizeof(float) * (size_t)(s->B * s->H * s->T);
}

extern "C" int lc_cuda_attention_fwd(lc_cuda_ctx *c, lc_dtype dt,
                                     const lc_attn_shape *s, const void *q, const void *k,
                                     const void *v, void *out, float *lse)
{
    attn_args a;
    LC_TRY(check_shape(c, s, &a));
    if (a.B == 0 || a.T == 0)
        return 0;
    dim3 grid((unsigned)((a.T + BQ - 1) / BQ), (unsigned)a.H, (unsigned)a.B);
    size_t smem = fwd_smem(a.D);
    LC_DISPATCH_ACT(c, dt, T, {
        LC_TRY(smem_attr(c, attn_fwd_k<T>, smem));
        attn_fwd_k<T><<<grid, NW * 32, smem, c->stream>>>(a, (const T *)q, (const T *)k,
                                                          (const T *)v, (T *)out, lse);
        LC_LAUNCHED(c, "attn_fwd_k");
    });
    return 0;
}

extern "C" int lc_cuda_attention_bwd(lc_cuda_ctx *c, lc_dtype dt,
                                     const lc_attn_shape *s, const void *q, const void *k,
                                     const void *v, const void *out, const float *lse,
                                     const void *dout, void *dq, void *dk, void *dv,
                                     void *scratch)
{
    attn_args a;
    LC_TRY(check_shape(c, s, &a));
    if (a.B == 0 || a.T == 0 || (!dq && !dk && !dv))
        return 0;
    if (!scratch)
        return LC_BAD(c, "attention backward: no scratch (%zu bytes needed)",
                      lc_cuda_attention_scratch_bytes(s));
    float *delta = (float *)scratch;
    int64_t rows = a.B * a.T * a.H;
    dim3 gq((unsigned)((a.T + BQ - 1) / BQ), (unsigned)a.H, (unsigned)a.B);
    dim3 gkv((unsigned)((a.T + BK - 1) / BK), (unsigned)a.KV, (unsigned)a.B);
    size_t sq = dq_smem(a.D), skv = dkv_smem(a.D);
    LC_DISPATCH_ACT(c, dt, T, {
        attn_delta_k<T><<<(unsigned)((rows + NW - 1) / NW), NW * 32, 0, c->stream>>>(
            a, (const T *)out, (const T *)dout, delta);
        LC_LAUNCHED(c, "attn_delta_k");
        if (dq) {
            LC_TRY(smem_attr(c, attn_dq_k<T>, sq));
            attn_dq_k<T><<<gq, NW * 32, sq, c->stream>>>(a, (const T *)q, (const T *)k,
                                                         (const T *)v, lse, (const T *)dout,
                                                         delta, (T *)dq);
            LC_LAUNCHED(c, "attn_dq_k");
        }
        if (dk || dv) {
            LC_TRY(smem_attr(c, attn_dkv_k<T>, skv));
            attn_dkv_k<T><<<gkv, NW * 32, skv, c->stream>>>(a, (const T *)q, (const T *)k,
                                                            (const T *)v, lse, (const T *)dout,
                                                            delta, (T *)dk, (T *)dv);
            LC_LAUNCHED(c, "attn_dkv_k");
        }
    });
    return 0;
}

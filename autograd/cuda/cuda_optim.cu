/* cuda_optim.cu — multi-tensor AdamW, global gradient norm and clipping.
 *
 * Multi-tensor apply as in apex / torch's _foreach kernels: one launch
 * covers up to 32 tensors; the tensors are cut into chunks of 16 Ki values,
 * block b finds its (tensor, chunk) from the prefix sums passed by value in
 * the kernel arguments (~1.6 KB, under the 4 KB parameter limit). With the
 * design's single flat params buffer this is one tensor and one launch.
 *
 * AdamW is element for element the arithmetic of optim/adamw.c with each
 * product and sum rounded separately (__fmul_rn / __fadd_rn: the CPU build
 * does not contract to FMA), and sqrtf / division are IEEE-rounded, so the
 * update is bitwise the CPU's. The norm sums squares in double per chunk,
 * then sums the chunk partials in a fixed order: deterministic. Clipping
 * reads the norm on the device, so clip + update need no host round trip. */
#include <math.h>
#include <string.h>

#include "autograd/cuda/cuda_common.cuh"

#define MT_MAX 32
#define MT_CHUNK 16384
#define MT_THREADS 512

struct mt_args {
    float *p[MT_MAX];
    const float *g[MT_MAX];
    float *m[MT_MAX];
    float *v[MT_MAX];
    int64_t n[MT_MAX];
    int64_t chunk_start[MT_MAX + 1]; /* prefix sums of chunk counts */
    int count;
};

/* The tensor that block b works on and the range of its chunk. */
__device__ __forceinline__ int mt_locate(const mt_args &a, int64_t b, int64_t *lo, int64_t *hi)
{
    int t = 0;
    while (t + 1 < a.count && a.chunk_start[t + 1] <= b)
        t++;
    *lo = (b - a.chunk_start[t]) * MT_CHUNK;
    int64_t e = *lo + MT_CHUNK;
    *hi = e < a.n[t] ? e : a.n[t];
    return t;
}

struct adam_consts {
    float decay, b1, b2, one_m_b1, one_m_b2, step_size, bc2_sqrt, eps;
};

__global__ void __launch_bounds__(MT_THREADS) adamw_k(mt_args a, adam_consts k)
{
    int64_t lo, hi;
    int t = mt_locate(a, blockIdx.x, &lo, &hi);
    float *p = a.p[t], *m = a.m[t], *v = a.v[t];
    const float *g = a.g[t];
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
        float gi = g[i];
        float pi = __fmul_rn(p[i], k.decay);
        /* torch / optim/adamw.c: exp_avg.lerp_(g, 1-b1) = m + (1-b1)(g - m) */
        float mi = __fadd_rn(m[i], __fmul_rn(k.one_m_b1, __fsub_rn(gi, m[i])));
        float vi = __fadd_rn(__fmul_rn(v[i], k.b2), __fmul_rn(__fmul_rn(k.one_m_b2, gi), gi));
        m[i] = mi;
        v[i] = vi;
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), k.bc2_sqrt), k.eps);
        p[i] = __fsub_rn(pi, __fmul_rn(k.step_size, __fdiv_rn(mi, denom)));
    }
}

__global__ void __launch_bounds__(MT_THREADS) sumsq_k(mt_args a, double *partial)
{
    __shared__ double sh[32];
    int64_t lo, hi;
    int t = mt_locate(a, blockIdx.x, &lo, &hi);
    const float *g = a.g[t];
    double s = 0.0;
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x)
        s += (double)g[i] * (double)g[i];
    s = lc_block_sum_d(s, sh);
    if (threadIdx.x == 0)
        partial[blockIdx.x] = s;
}

/* *sum = Σ partial[0..n), *norm = its sqrt: one block, fixed order. */
__global__ void __launch_bounds__(1024)
    norm_finish_k(const double *partial, int64_t n, double *norm, double *sum)
{
    __shared__ double sh[32];
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        s += partial[i];
    s = lc_block_sum_d(s, sh);
    if (threadIdx.x == 0) {
        norm[0] = sqrt(s);
        sum[0] = s;
    }
}

__global__ void __launch_bounds__(MT_THREADS) clip_k(mt_args a, const double *norm, double max_norm)
{
    double coef = max_norm / (norm[0] + 1e-6);
    if (!(coef < 1.0))
        return;
    float cf = (float)coef;
    int64_t lo, hi;
    int t = mt_locate(a, blockIdx.x, &lo, &hi);
    float *g = a.p[t]; /* clip passes the gradients in p (written) */
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x)
        g[i] = __fmul_rn(g[i], cf);
}

/* Fills a with tensors [t0, t0 + count) and returns the number of chunks. */
static int64_t mt_fill(mt_args *a, int t0, int count, float *const *p, const float *const *g,
                       float *const *m, float *const *v, const int64_t *numel)
{
    memset(a, 0, sizeof *a);
    a->count = count;
    int64_t chunks = 0;
    for (int i = 0; i < count; i++) {
        a->p[i] = p ? p[t0 + i] : NULL;
        a->g[i] = g ? g[t0 + i] : NULL;
        a->m[i] = m ? m[t0 + i] : NULL;
        a->v[i] = v ? v[t0 + i] : NULL;
        a->n[i] = numel[t0 + i];
        a->chunk_start[i] = chunks;
        chunks += (numel[t0 + i] + MT_CHUNK - 1) / MT_CHUNK;
    }
    a->chunk_start[count] = chunks;
    return chunks;
}

static int check_numel(lc_cuda_ctx *c, int n, const int64_t *numel)
{
    if (n < 0)
        return LC_BAD(c, "multi-tensor: %d tensors", n);
    for (int i = 0; i < n; i++)
        if (numel[i] < 0)
            return LC_BAD(c, "multi-tensor: tensor %d has %lld values", i, (long long)numel[i]);
    return 0;
}

extern "C" int lc_cuda_adamw_update(lc_cuda_ctx *c, int n, float *const *params,
                                    const float *const *grads, float *const *m,
                                    float *const *v, const int64_t *numel,
                                    const lc_adamw_hparams *hp, int64_t step, double lr)
{
    LC_TRY(check_numel(c, n, numel));
    if (step < 1)
        return LC_BAD(c, "adamw: step %lld < 1 (pass the update number, counting from 1)",
                      (long long)step);
    /* the constants exactly as optim/adamw.c rounds them */
    const double bc1 = 1.0 - pow(hp->beta1, (double)step);
    const double bc2 = 1.0 - pow(hp->beta2, (double)step);
    adam_consts k;
    k.decay = (float)(1.0 - lr * hp->weight_decay);
    k.b1 = (float)hp->beta1;
    k.b2 = (float)hp->beta2;
    k.one_m_b1 = (float)(1.0 - hp->beta1); /* formed in double, as torch does */
    k.one_m_b2 = (float)(1.0 - hp->beta2);
    k.step_size = (float)(lr / bc1);
    k.bc2_sqrt = (float)sqrt(bc2);
    k.eps = (float)hp->eps;
    for (int t0 = 0; t0 < n; t0 += MT_MAX) {
        int cnt = n - t0 < MT_MAX ? n - t0 : MT_MAX;
        mt_args a;
        int64_t chunks = mt_fill(&a, t0, cnt, params, grads, m, v, numel);
        if (chunks == 0)
            continue;
        adamw_k<<<(unsigned)chunks, MT_THREADS, 0, c->stream>>>(a, k);
        LC_LAUNCHED(c, "adamw_k");
    }
    return 0;
}

/* Σ g² of all tensors: c->dscalar[0] the norm, c->dscalar[3] the sum (device). */
static int norm_device(lc_cuda_ctx *c, int n, const float *const *grads, const int64_t *numel)
{
    LC_TRY(check_numel(c, n, numel));
    int64_t total = 0;
    for (int i = 0; i < n; i++)
        total += (numel[i] + MT_CHUNK - 1) / MT_CHUNK;
    LC_TRY(lc_cuda_reserve(c, &c->red, &c->red_cap, sizeof(double) * (size_t)total));
    double *red = (double *)c->red;
    int64_t off = 0;
    for (int t0 = 0; t0 < n; t0 += MT_MAX) {
        int cnt = n - t0 < MT_MAX ? n - t0 : MT_MAX;
        mt_args a;
        int64_t chunks = mt_fill(&a, t0, cnt, NULL, grads, NULL, NULL, numel);
        if (chunks == 0)
            continue;
        sumsq_k<<<(unsigned)chunks, MT_THREADS, 0, c->stream>>>(a, red + off);
        LC_LAUNCHED(c, "sumsq_k");
        off += chunks;
    }
    norm_finish_k<<<1, 1024, 0, c->stream>>>(red, off, c->dscalar, c->dscalar + 3);
    LC_LAUNCHED(c, "norm_finish_k");
    return 0;
}

/* *norm = c->dscalar[which] (0 the norm, 3 the sum of squares), once the stream is done */
static int norm_to_host(lc_cuda_ctx *c, double *norm, int which)
{
    if (!norm)
        return 0;
    double *h = (double *)c->hpinned;
    LC_CU(&c->err, cudaMemcpyAsync(h, c->dscalar + which, sizeof(double),
                                   cudaMemcpyDeviceToHost, c->stream));
    LC_CU(&c->err, cudaStreamSynchronize(c->stream));
    *norm = h[0];
    return 0;
}

extern "C" int lc_cuda_grad_norm(lc_cuda_ctx *c, int n, const float *const *grads,
                                 const int64_t *numel, double *norm)
{
    LC_TRY(norm_device(c, n, grads, numel));
    return norm_to_host(c, norm, 0);
}

extern "C" int lc_cuda_sum_squares(lc_cuda_ctx *c, int n, const float *const *grads,
                                   const int64_t *numel, double *sumsq)
{
    LC_TRY(norm_device(c, n, grads, numel));
    return norm_to_host(c, sumsq, 3);
}

extern "C" int lc_cuda_grad_clip(lc_cuda_ctx *c, int n, float *const *grads,
                                 const int64_t *numel, double max_norm, double *norm)
{
    LC_TRY(norm_device(c, n, (const float *const *)grads, numel));
    if (max_norm > 0) {
        for (int t0 = 0; t0 < n; t0 += MT_MAX) {
            int cnt = n - t0 < MT_MAX ? n - t0 : MT_MAX;
            mt_args a;
            int64_t chunks = mt_fill(&a, t0, cnt, grads, NULL, NULL, NULL, numel);
            if (chunks == 0)
                continue;
            clip_k<<<(unsigned)chunks, MT_THREADS, 0, c->stream>>>(a, c->dscalar, max_norm);
            LC_LAUNCHED(c, "clip_k");
        }
    }
    return norm_to_host(c, norm, 0);
}

/* cuda_loss.cu — fused lm_head + cross-entropy that never materializes the
 * [N, V] logits, like lc_k_lm_head_ce on the CPU.
 *
 * Only supervised rows (target ≥ 0) are computed: one block compacts their
 * indices on the device, and the host reads the count once to plan chunks.
 * Per chunk of up to lc_cuda_ce_chunk_rows(V) rows: gather the rows of x;
 * logits[nr, V] (f32) = x·Wᵀ by cuBLASLt (bf16 in, f32 out); one block per
 * row computes max, Σexp, the row loss (lse − logit[target], in double) and,
 * when dx is wanted, the softmax gradient grad_scale·(softmax − onehot)
 * written as the GEMM input dtype; dxc[nr, C] (f32) = grad·W by a second
 * GEMM, then scattered (+=) into dx. The row losses are summed at the end
 * in a fixed order, so the loss is deterministic. */
#include <math.h>
#include <string.h>

#include "autograd/cuda/cuda_common.cuh"

/* Chunk policy: a chunk's logits (f32) take at most CE_CHUNK_ELEMS elements
 * (512 MiB; with bf16 activations their softmax gradient another 256 MiB),
 * and a chunk is a multiple of 128 rows when at least 128 fit, at most
 * CE_MAX_CHUNK_ROWS: 1024 rows up to V = 131072 (Llama 3's 128256: the head
 * is read 8 times per 8k supervised tokens, not 31), 768 at Qwen's 151936,
 * 512 at Gemma's 256000. The scratch is sized for min(N, chunk) rows. */
#define CE_CHUNK_ELEMS ((int64_t)1 << 27)
#define CE_MAX_CHUNK_ROWS 4096
#define CE_CHUNK_ALIGN 128
#define CE_THREADS 512

static size_t align256(size_t n) { return (n + 255) & ~(size_t)255; }

extern "C" int64_t lc_cuda_ce_chunk_rows(int64_t V)
{
    if (lc_cuda_dbg_ce_rows)
        return lc_cuda_dbg_ce_rows;
    int64_t r = CE_CHUNK_ELEMS / (V ? V : 1);
    if (r >= CE_CHUNK_ALIGN)
        r -= r % CE_CHUNK_ALIGN;
    if (r < 1)
        r = 1;
    return r > CE_MAX_CHUNK_ROWS ? CE_MAX_CHUNK_ROWS : r;
}

/* The scratch of one call over N rows: per chunk of rows (logits, their
 * gradient, the gathered rows and their dx, the weight's tiles) and per row
 * (the compacted indices of the supervised rows, their losses). */
struct ce_layout {
    size_t logits, grad, xc, dxc, wscr, idx, row_loss, total;
};

static ce_layout ce_plan(lc_dtype dt, int64_t N, int64_t C, const lc_weight *W)
{
    int64_t V = W->rows, ch = lc_cuda_ce_chunk_rows(V);
    if (ch > N)
        ch = N > 0 ? N : 1;
    size_t es = lc_dtype_size(dt);
    ce_layout L;
    size_t o = 0;
    L.logits = o;
    o += align256(sizeof(float) * (size_t)(ch * V));
    L.grad = o; /* the softmax gradient in dt; f32 reuses the logits in place */
    if (dt != LC_DTYPE_F32)
        o += align256(es * (size_t)(ch * V));
    L.xc = o;
    o += align256(es * (size_t)(ch * C));
    L.dxc = o;
    o += align256(sizeof(float) * (size_t)(ch * C));
    L.wscr = o;
    o += align256(lc_cuda_weight_scratch_bytes(W, dt));
    int64_t rows = N > 0 ? N : 1;
    L.idx = o;
    o += align256(sizeof(int32_t) * (size_t)rows);
    L.row_loss = o;
    o += align256(sizeof(double) * (size_t)rows);
    L.total = o;
    return L;
}

extern "C" size_t lc_cuda_ce_scratch_bytes(lc_dtype dt, int64_t N, int64_t C,
                                           const lc_weight *W)
{
    return ce_plan(dt, N, C, W).total;
}

/* Stable compaction of the supervised rows, one block of 1024 threads:
 * idx[0..count) = rows with target ≥ 0 in increasing order. */
__global__ void __launch_bounds__(1024)
    ce_compact_k(const int32_t *targets, int64_t N, int32_t *idx, int32_t *count)
{
    __shared__ int warp_tot[32];
    __shared__ int base_sh;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (threadIdx.x == 0)
        base_sh = 0;
    __syncthreads();
    for (int64_t start = 0; start < N; start += blockDim.x) {
        int64_t i = start + threadIdx.x;
        int flag = (i < N && targets[i] >= 0) ? 1 : 0;
        unsigned mask = __ballot_sync(0xffffffffu, flag);
        int before = __popc(mask & ((1u << lane) - 1u));
        if (lane == 0)
            warp_tot[warp] = __popc(mask);
        __syncthreads();
        int woff = 0, total = 0;
        for (int w = 0; w < (int)(blockDim.x >> 5); w++) {
            if (w < warp)
                woff += warp_tot[w];
            total += warp_tot[w];
        }
        int base = base_sh;
        if (flag)
            idx[base + woff + before] = (int32_t)i;
        __syncthreads(); /* everyone read base_sh and warp_tot */
        if (threadIdx.x == 0)
            base_sh = base + total;
        __syncthreads();
    }
    if (threadIdx.x == 0)
        *count = base_sh;
}

template <typename T>
__global__ void ce_gather_k(const T *x, int64_t C, const int32_t *idx, int64_t nr, T *xc)
{
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < nr * C;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = e / C, col = e % C;
        xc[e] = x[(int64_t)idx[r] * C + col];
    }
}

template <typename T>
__global__ void ce_scatter_add_k(const float *dxc, int64_t C, const int32_t *idx, int64_t nr,
                                 T *dx)
{
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < nr * C;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = e / C, col = e % C;
        T *p = dx + (int64_t)idx[r] * C + col;
        *p = lc_st<T>(lc_ld(*p) + dxc[e]);
    }
}

/* One block per supervised row r of the chunk: loss and (optionally) the
 * gradient grad_scale·(softmax − onehot(t)) into grad[r, V] (may alias
 * logits when Tg = float). flag[0] is set when a target is out of range.
 * softcap > 0 (Gemma 2) first bends the row in place to z = cap·tanh(l/cap)
 * and multiplies the gradient by dz/dl = 1 − (z/cap)². */
template <typename Tg>
__global__ void __launch_bounds__(CE_THREADS)
    ce_rows_k(float *logits, int64_t V, const int32_t *idx, const int32_t *targets,
              float grad_scale, Tg *grad, double *row_loss, int *flag, float softcap)
{
    __shared__ float sh[32];
    const int64_t r = blockIdx.x;
    float *lr = logits + r * V;
    const int32_t t = targets[idx[r]];
    if (t < 0 || t >= V) {
        if (threadIdx.x == 0) {
            atomicExch(flag, 1);
            row_loss[r] = 0.0;
        }
        return; /* whole block: t is uniform */
    }
    if (softcap != 0.0f) /* each thread bends the entries it reads below */
        for (int64_t j = threadIdx.x; j < V; j += blockDim.x)
            lr[j] = softcap * tanhf(lr[j] / softcap);
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x)
        m = fmaxf(m, lr[j]);
    m = lc_block_max(m, sh);
    float s = 0.0f;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x)
        s += expf(lr[j] - m);
    s = lc_block_sum(s, sh);
    const float target_logit = lr[t];
    if (threadIdx.x == 0)
        row_loss[r] = (double)m + log((double)s) - (double)target_logit;
    if (grad) {
        __syncthreads(); /* target_logit read by all before an in-place overwrite */
        Tg *gr = grad + r * V;
        const float k = grad_scale / s;
        for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
            float g = expf(lr[j] - m) * k;
            if (j == t)
                g -= grad_scale;
            if (softcap != 0.0f) {
                float z = lr[j] / softcap;
                g *= 1.0f - z * z;
            }
            gr[j] = lc_st<Tg>(g);
        }
    }
}

/* Σ row_loss[0..n) in a fixed order, one block; result into out[0]. */
__global__ void __launch_bounds__(1024) ce_sum_k(const double *row_loss, int64_t n, double *out)
{
    __shared__ double sh[32];
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        s += row_loss[i];
    s = lc_block_sum_d(s, sh);
    if (threadIdx.x == 0)
        out[0] = s;
}

extern "C" int lc_cuda_lm_head_ce(lc_cuda_ctx *c, lc_dtype dt, const void *x, int64_t N,
                                  int64_t C, const lc_weight *W, const int32_t *targets,
                                  float grad_scale, void *dx, void *scratch, double *loss_sum,
                                  int64_t *n_supervised, double softcap)
{
    LC_TRY(lc_cuda_check_weight(c, W));
    if (dt != LC_DTYPE_F32 && dt != LC_DTYPE_BF16)
        return LC_BAD(c, "lm_head_ce: activation dtype %d is not F32 or BF16", (int)dt);
    if (W->cols != C)
        return LC_BAD(c, "lm_head_ce: W is [%lld, %lld], x has %lld columns", (long long)W->rows,
                      (long long)W->cols, (long long)C);
    if (N > 2147483647LL)
        return LC_BAD(c, "lm_head_ce: %lld rows exceed int32 row indices", (long long)N);
    if (loss_sum)
        *loss_sum = 0;
    if (n_supervised)
        *n_supervised = 0;
    if (N <= 0)
        return 0;
    if (!scratch)
        return LC_BAD(c, "lm_head_ce: no scratch (%zu bytes needed)",
                      lc_cuda_ce_scratch_bytes(dt, N, C, W));
    const int64_t V = W->rows;
    ce_layout L = ce_plan(dt, N, C, W);
    char *base = (char *)scratch;
    int32_t *idx = (int32_t *)(base + L.idx);
    double *row_loss = (double *)(base + L.row_loss);
    float *logits = (float *)(base + L.logits);
    void *grad = dt == LC_DTYPE_F32 ? (void *)logits : (void *)(base + L.grad);
    void *xc = base + L.xc;
    float *dxc = (float *)(base + L.dxc);
    void *wscr = base + L.wscr;
    int *flag = (int *)(c->dscalar + 2);
    int32_t *hp = (int32_t *)c->hpinned;

    LC_CU(&c->err, cudaMemsetAsync(flag, 0, sizeof(int), c->stream));
    ce_compact_k<<<1, 1024, 0, c->stream>>>(targets, N, idx, c->dcount);
    LC_LAUNCHED(c, "ce_compact_k");
    LC_CU(&c->err, cudaMemcpyAsync(hp, c->dcount, sizeof(int32_t), cudaMemcpyDeviceToHost,
                                   c->stream));
    LC_CU(&c->err, cudaStreamSynchronize(c->stream));
    const int64_t nsup = hp[0];
    const int64_t chunk = lc_cuda_ce_chunk_rows(V);

    for (int64_t r0 = 0; r0 < nsup; r0 += chunk) {
        int64_t nr = nsup - r0 < chunk ? nsup - r0 : chunk;
        const int32_t *cidx = idx + r0;
        LC_DISPATCH_ACT(c, dt, T, {
            ce_gather_k<T><<<lc_grid(nr * C, 256), 256, 0, c->stream>>>((const T *)x, C, cidx, nr,
                                                                        (T *)xc);
            LC_LAUNCHED(c, "ce_gather_k");
        });
        LC_TRY(lc_cuda_weight_matmul_to(c, dt, xc, nr, W, 0.0f, logits, LC_DTYPE_F32, wscr));
        LC_DISPATCH_ACT(c, dt, T, {
            ce_rows_k<T><<<(unsigned)nr, CE_THREADS, 0, c->stream>>>(
                logits, V, cidx, targets, grad_scale, dx ? (T *)grad : (T *)NULL, row_loss + r0,
                flag, (float)softcap);
            LC_LAUNCHED(c, "ce_rows_k");
        });
        if (dx) {
            LC_TRY(lc_cuda_weight_matmul_grad_to(c, dt, grad, nr, W, 0.0f, dxc, LC_DTYPE_F32,
                                                 wscr));
            LC_DISPATCH_ACT(c, dt, T, {
                ce_scatter_add_k<T><<<lc_grid(nr * C, 256), 256, 0, c->stream>>>(dxc, C, cidx, nr,
                                                                                  (T *)dx);
                LC_LAUNCHED(c, "ce_scatter_add_k");
            });
        }
    }
    ce_sum_k<<<1, 1024, 0, c->stream>>>(row_loss, nsup, c->dscalar + 1);
    LC_LAUNCHED(c, "ce_sum_k");
    double *hd = (double *)c->hpinned;
    LC_CU(&c->err, cudaMemcpyAsync(hd, c->dscalar + 1, 2 * sizeof(double),
                                   cudaMemcpyDeviceToHost, c->stream));
    LC_CU(&c->err, cudaStreamSynchronize(c->stream));
    int bad;
    memcpy(&bad, &hd[1], sizeof bad);
    if (bad)
        return LC_BAD(c, "lm_head_ce: a target is outside [0, %lld)", (long long)V);
    if (loss_sum)
        *loss_sum = hd[0];
    if (n_supervised)
        *n_supervised = nsup;
    return 0;
}

/* cuda_common.cuh — what the backend's .cu files share: the context struct,
 * the check macros that name the failing call, bf16/f32 load-store helpers,
 * warp reductions and the frozen-weight element fetch (NF4 included).
 * Internal to autograd/cuda/: C code sees only cuda_kernels.h. */
#ifndef LC_CUDA_COMMON_CUH
#define LC_CUDA_COMMON_CUH

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <string.h>

#include "autograd/cuda/cuda_kernels.h"
#include "autograd/nf4_code.h"

/* Plans cached (a QLoRA step uses ~35–40 GEMM shapes) and heuristic results
 * kept per plan: when cublasLtMatmul refuses one algorithm the next is tried. */
#define LC_GEMM_CACHE 128
#define LC_GEMM_ALGOS 8

struct lc_gemm_key {
    int64_t M, N, K, lda, ldb, ldc;
    int ta, tb, in_dt, out_dt, align_a, align_b, align_c, beta_nz;
};

struct lc_gemm_plan {
    lc_gemm_key key;
    bool valid;
    uint64_t last_use;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, lc;  /* cuBLAS (column-major) A = our B, B = our A */
    cublasLtMatmulAlgo_t algo[LC_GEMM_ALGOS]; /* the heuristic's results, best first */
    int n_algo;                               /* how many of algo[] are filled */
    int cur;                                  /* the one that ran last (the winner) */
};

struct lc_cuda_ctx {
    int device;
    cudaStream_t stream;
    cublasLtHandle_t lt;
    void *workspace;
    size_t workspace_bytes;
    lc_gemm_plan plans[LC_GEMM_CACHE];
    uint64_t clock;
    uint64_t gemm_hits, gemm_misses, gemm_fallbacks;
    void *red;            /* [red_cap bytes] per-block partial sums (grad norm, f64) */
    size_t red_cap;
    double *dscalar;      /* [8] device scalars: 0 grad norm, 1 loss, 2 flags, 3 Σ g² */
    int32_t *dcount;      /* [1] supervised-row count */
    void *hpinned;        /* [64 B] pinned host mirror of the scalars */
    bool sync_each;       /* LORAC_CUDA_SYNC=1: synchronize after each launch */
    lc_error err;
};

/* Fills err with "file:line: what: name (detail)" and returns -1. */
int lc_cuda_fail(lc_error *err, const char *file, int line, const char *what, const char *name,
                 const char *detail);
/* printf-style failure for bad arguments. */
int lc_cuda_failf(lc_error *err, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
const char *lc_cublas_status_name(cublasStatus_t s);
/* Makes *buf (device, *cap bytes) hold at least `bytes`: when it must grow,
 * waits for the stream, frees and allocates anew (the first step of a larger
 * shape, not the steady loop). */
int lc_cuda_reserve(lc_cuda_ctx *c, void **buf, size_t *cap, size_t bytes);
/* After a launch: cudaGetLastError, plus a stream sync in LORAC_CUDA_SYNC mode. */
int lc_cuda_after_launch(lc_cuda_ctx *c, const char *file, int line, const char *kernel);

#define LC_CU(errp, call)                                                                   \
    do {                                                                                    \
        cudaError_t e_ = (call);                                                            \
        if (e_ != cudaSuccess) {                                                            \
            (void)cudaGetLastError(); /* a later launch check must not see it again */      \
            return lc_cuda_fail((errp), __FILE__, __LINE__, #call, cudaGetErrorName(e_),    \
                                cudaGetErrorString(e_));                                    \
        }                                                                                   \
    } while (0)

#define LC_CUBLAS(errp, call)                                                               \
    do {                                                                                    \
        cublasStatus_t s_ = (call);                                                         \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                    \
            return lc_cuda_fail((errp), __FILE__, __LINE__, #call, lc_cublas_status_name(s_), \
                                "cuBLAS");                                                  \
    } while (0)

#define LC_LAUNCHED(c, kernel)                                                              \
    do {                                                                                    \
        if (lc_cuda_after_launch((c), __FILE__, __LINE__, (kernel)))                        \
            return -1;                                                                      \
    } while (0)

#define LC_BAD(c, ...) lc_cuda_failf(&(c)->err, __FILE__, __LINE__, __VA_ARGS__)
#define LC_TRY(x)                                                                           \
    do {                                                                                    \
        if ((x) != 0)                                                                       \
            return -1;                                                                      \
    } while (0)

/* Runs the body (last arguments) with the type alias T bound to the activation dtype dt. */
#define LC_DISPATCH_ACT(c, dt, T, ...)                                                     \
    switch (dt) {                                                                           \
    case LC_DTYPE_F32: {                                                                     \
        typedef float T;                                                                    \
        __VA_ARGS__;                                                                             \
    } break;                                                                                \
    case LC_DTYPE_BF16: {                                                                    \
        typedef __nv_bfloat16 T;                                                            \
        __VA_ARGS__;                                                                             \
    } break;                                                                                \
    default:                                                                                \
        return LC_BAD(c, "activation dtype %d is not F32 or BF16", (int)(dt));             \
    }

static inline unsigned lc_grid(int64_t n, int threads, int64_t cap = 65535LL * 16)
{
    int64_t b = (n + threads - 1) / threads;
    if (b < 1)
        b = 1;
    return (unsigned)(b < cap ? b : cap);
}

/* ---- device helpers ---- */

/* for (i = this thread's first index; i < n; i += the grid's thread count) */
#define GRID_STRIDE(i, n)                                                                   \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n);               \
         i += (int64_t)gridDim.x * blockDim.x)

__device__ __forceinline__ float lc_ld(float x) { return x; }
__device__ __forceinline__ float lc_ld(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T lc_st(float x);
template <> __device__ __forceinline__ float lc_st<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 lc_st<__nv_bfloat16>(float x)
{
    return __float2bfloat16_rn(x);
}

__device__ __forceinline__ float lc_ld(__half x) { return __half2float(x); }

/* ---- 16-byte vector access: the fast path of the elementwise kernels ----
 * A thread moves 16 bytes of an operand per load / store (ld.global.v4,
 * st.global.v4: 4 f32 or 8 bf16) instead of one element. Only at 16-byte
 * aligned addresses: a GPU faults on others, so the host checks every
 * operand (lc_aligned16) and the kernel falls back to one element at a time.
 * The math stays per element in f32 (lc_map calls the same function on both
 * paths), so the vector path rounds exactly as the scalar one. */

/* The simulator's check of each 16-byte access (aligned, inside a device
 * allocation: tests/cuda_sim/include/lc_sim.h); nothing on a GPU. */
#ifndef LC_VEC_ACCESS
#define LC_VEC_ACCESS(p) ((void)0)
#endif

/* True when every pointer (NULL included) is 16-byte aligned. */
template <typename... P> static inline bool lc_aligned16(const P *...p)
{
    return (((((uintptr_t)p) & 15) == 0) && ...);
}

/* Elements of a 16-byte chunk of the vectorised kernels whose narrowest operand is T. */
#define LC_VW(T) ((int)(16 / sizeof(T)))

/* Threads of a 256-thread grid for n elements: one per W-element chunk with vec. */
static inline unsigned lc_vgrid(int64_t n, int W, bool vec)
{
    return lc_grid(vec ? (n + W - 1) / W : n, 256);
}

/* f[0..W) = the W elements of S at p (16-byte aligned) in f32, by 16-byte loads. */
template <int W, typename S> __device__ __forceinline__ void lc_ld_vec(const S *p, float *f)
{
    constexpr int E = 16 / sizeof(S); /* elements of S in one 16-byte word */
    static_assert(W % E == 0, "a chunk is not whole 16-byte words");
#pragma unroll
    for (int k = 0; k < W / E; k++) {
        LC_VEC_ACCESS(p + k * E);
        union {
            uint4 u;
            S e[E];
        } b;
        b.u = *reinterpret_cast<const uint4 *>(p + k * E);
#pragma unroll
        for (int j = 0; j < E; j++)
            f[k * E + j] = lc_ld(b.e[j]);
    }
}

/* The W elements of S at p (16-byte aligned) = f[0..W) rounded once, by 16-byte stores. */
template <int W, typename S> __device__ __forceinline__ void lc_st_vec(S *p, const float *f)
{
    constexpr int E = 16 / sizeof(S);
    static_assert(W % E == 0, "a chunk is not whole 16-byte words");
#pragma unroll
    for (int k = 0; k < W / E; k++) {
        union {
            uint4 u;
            S e[E];
        } b;
#pragma unroll
        for (int j = 0; j < E; j++)
            b.e[j] = lc_st<S>(f[k * E + j]);
        LC_VEC_ACCESS(p + k * E);
        *reinterpret_cast<uint4 *>(p + k * E) = b.u;
    }
}

template <int W> __device__ __forceinline__ void lc_zero(float *f)
{
#pragma unroll
    for (int e = 0; e < W; e++)
        f[e] = 0.0f;
}

/* The element loop of the vectorised kernels, over n elements: f(i, x, y)
 * computes element i's NO outputs y[] (f32, zeroed first) from its inputs
 * x[k] = in_k[i] in f32; out[o][i] = y[o] rounded once. With vec (every
 * pointer lc_aligned16 on the host) the grid's threads take chunks of W
 * consecutive elements, each operand moved by 16-byte loads / stores; the
 * tail (n mod W) and the whole of an unaligned call go element by element.
 * A NULL input is not read (x = 0), a NULL output not written. Every input
 * of a chunk is read before its outputs are written: an output may alias an
 * input (in place). */
template <int W, typename To, int NO, typename F, typename... Ti>
__device__ __forceinline__ void lc_map(int64_t n, bool vec, F f, To *const (&out)[NO],
                                       const Ti *...in)
{
    constexpr int NI = sizeof...(Ti);
    static_assert(NI > 0, "lc_map without inputs");
    int64_t nv = vec ? n / W : 0;         /* chunks */
    GRID_STRIDE(j, nv)
    {
        int64_t i0 = j * W;
        float xs[NI][W], ys[NO][W];
        int k = 0;
        ((in ? lc_ld_vec<W>(in + i0, xs[k]) : lc_zero<W>(xs[k]), k++), ...);
#pragma unroll
        for (int e = 0; e < W; e++) {
            float x[NI], y[NO] = {};
#pragma unroll
            for (int q = 0; q < NI; q++)
                x[q] = xs[q][e];
            f(i0 + e, x, y);
#pragma unroll
            for (int o = 0; o < NO; o++)
                ys[o][e] = y[o];
        }
#pragma unroll
        for (int o = 0; o < NO; o++)
            if (out[o])
                lc_st_vec<W>(out[o] + i0, ys[o]);
    }
    GRID_STRIDE(t, n - nv * W)
    {
        int64_t i = nv * W + t;
        float x[NI], y[NO] = {};
        int k = 0;
        ((x[k++] = in ? lc_ld(in[i]) : 0.0f), ...);
        f(i, x, y);
#pragma unroll
        for (int o = 0; o < NO; o++)
            if (out[o])
                out[o][i] = lc_st<To>(y[o]);
    }
}

__device__ __forceinline__ float lc_warp_sum(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ double lc_warp_sum_d(double v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float lc_warp_max(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Block-wide sum of a double for blockDim.x a multiple of 32 (≤ 1024); the
 * order is fixed, so the result is deterministic. Every thread gets it. */
__device__ __forceinline__ double lc_block_sum_d(double v, double *sh /* [32] */)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = lc_warp_sum_d(v);
    __syncthreads();
    if (lane == 0)
        sh[warp] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0;
    v = lc_warp_sum_d(v);
    return v;
}

__device__ __forceinline__ float lc_block_sum(float v, float *sh /* [32] */)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = lc_warp_sum(v);
    __syncthreads();
    if (lane == 0)
        sh[warp] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0f;
    return lc_warp_sum(v);
}

__device__ __forceinline__ float lc_block_max(float v, float *sh /* [32] */)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = lc_warp_max(v);
    __syncthreads();
    if (lane == 0)
        sh[warp] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : -INFINITY;
    return lc_warp_max(v);
}

/* bitsandbytes' NF4 code values, index = 4-bit code: the one definition of
 * autograd/nf4_code.h in constant memory. */
__device__ __constant__ static const float lc_nf4_code_dev[16] = LC_NF4_CODE_INIT;

/* A frozen weight as a kernel takes it, by value: lc_weight's fields with
 * the host lc_nf4 copied in (a kernel cannot read host memory; the copied
 * struct's arrays are device pointers). Internal to autograd/cuda/. */
struct lc_dweight {
    const void *data; /* [rows, cols] in dtype (not NF4) */
    int dtype;        /* lc_dtype: F32, BF16 or F16 */
    bool is_nf4;
    int64_t rows, cols;
    lc_nf4 nf4;       /* is_nf4 only */
    int bshift;       /* is_nf4: log2 blocksize (lc_cuda_check_weight: a power of two) */
    int nshift;       /* is_nf4 with double quant: log2 nested_blocksize */
};

static inline lc_dweight lc_dweight_of(const lc_weight *W)
{
    lc_dweight d;
    memset(&d, 0, sizeof d);
    d.data = W->data;
    d.dtype = (int)W->dtype;
    d.is_nf4 = W->nf4 != NULL;
    d.rows = W->rows;
    d.cols = W->cols;
    if (W->nf4) {
        d.nf4 = *W->nf4;
        d.bshift = __builtin_ctzll((unsigned long long)W->nf4->blocksize);
        if (!W->nf4->absmax)
            d.nshift = __builtin_ctzll((unsigned long long)W->nf4->nested_blocksize);
    }
    return d;
}

/* The absmax of NF4 block b. The nested absmax is map·scale + offset
 * rounded step by step (no FMA), as the CPU computes it. Shifts, not
 * divisions: the block sizes are powers of two. */
__device__ __forceinline__ float lc_nf4_absmax(const lc_dweight &W, int64_t b)
{
    const lc_nf4 &q = W.nf4;
    return q.absmax ? q.absmax[b]
                    : __fadd_rn(__fmul_rn(q.nested_map[q.absmax_q[b]], q.nested_absmax[b >> W.nshift]),
                                q.offset);
}

/* The value of 4-bit code `code` in a block of absmax am (code book cb). */
__device__ __forceinline__ float lc_nf4_value(const float *cb, int code, float am)
{
    return __fmul_rn(cb[code], am);
}

/* Element e of the row-major flattened NF4 weight (code book cb: the
 * constant one, or a kernel's shared-memory copy). */
__device__ __forceinline__ float lc_nf4_elem(const lc_dweight &W, int64_t e,
                                             const float *cb = lc_nf4_code_dev)
{
    uint8_t byte = W.nf4.codes[e >> 1];
    int code = (e & 1) ? (byte & 15) : (byte >> 4);
    return lc_nf4_value(cb, code, lc_nf4_absmax(W, e >> W.bshift));
}

__device__ __forceinline__ float lc_weight_elem(const lc_dweight &W, int64_t e)
{
    if (W.is_nf4)
        return lc_nf4_elem(W, e);
    switch (W.dtype) {
    case LC_DTYPE_BF16:
        return __bfloat162float(((const __nv_bfloat16 *)W.data)[e]);
    case LC_DTYPE_F16:
        return __half2float(((const __half *)W.data)[e]);
    default:
        return ((const float *)W.data)[e];
    }
}

/* Internal entry points shared between files (C++ linkage). */
int lc_cuda_weight_matmul_to(lc_cuda_ctx *c, lc_dtype dt, const void *x, int64_t N,
                             const lc_weight *W, float beta, void *y, lc_dtype y_dt,
                             void *scratch);
int lc_cuda_weight_matmul_grad_to(lc_cuda_ctx *c, lc_dtype dt, const void *dy, int64_t N,
                                  const lc_weight *W, float beta, void *dx, lc_dtype dx_dt,
                                  void *scratch);
int lc_cuda_check_weight(lc_cuda_ctx *c, const lc_weight *W);
/* Rows of W converted per tile by the weight products (and DoRA's norm):
 * the whole matrix when it fits the tile (cuda_gemm.cu: scratch policy),
 * else a multiple of 8 rows (16-byte aligned GEMM operands). */
int64_t lc_cuda_weight_tile_rows(const lc_weight *W);
void lc_cuda_gemm_cache_clear(lc_cuda_ctx *c);
/* lc_cuda_debug_limits overrides (0 = default) */
extern int64_t lc_cuda_dbg_weight_tile, lc_cuda_dbg_ce_rows;

#endif

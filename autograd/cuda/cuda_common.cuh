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

#include "autograd/cuda/cuda_kernels.h"

#define LC_GEMM_CACHE 32

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
    cublasLtMatmulAlgo_t algo;
};

struct lc_cuda_ctx {
    int device;
    cudaStream_t stream;
    cublasLtHandle_t lt;
    void *workspace;
    size_t workspace_bytes;
    lc_gemm_plan plans[LC_GEMM_CACHE];
    uint64_t clock;
    uint64_t gemm_hits, gemm_misses;
    double *red;          /* [red_cap] per-block partial sums (grad norm) */
    size_t red_cap;
    double *dscalar;      /* [8] device scalars: 0 norm², 1 loss, 2 flags */
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
    case LC_CUDA_F32: {                                                                     \
        typedef float T;                                                                    \
        __VA_ARGS__;                                                                             \
    } break;                                                                                \
    case LC_CUDA_BF16: {                                                                    \
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

__device__ __forceinline__ float lc_ld(float x) { return x; }
__device__ __forceinline__ float lc_ld(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T lc_st(float x);
template <> __device__ __forceinline__ float lc_st<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 lc_st<__nv_bfloat16>(float x)
{
    return __float2bfloat16_rn(x);
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

/* bitsandbytes' NF4 code values, index = 4-bit code: a device copy of
 * lc_nf4_code (autograd/nf4.c). */
__device__ __constant__ static const float lc_nf4_code_dev[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

/* Element e of the row-major flattened NF4 weight. The nested absmax is
 * map·scale + offset rounded step by step (no FMA), as the CPU computes it. */
__device__ __forceinline__ float lc_nf4_elem(const lc_cuda_nf4 &q, int64_t e)
{
    uint8_t byte = q.codes[e >> 1];
    int code = (e & 1) ? (byte & 15) : (byte >> 4);
    int64_t b = e / q.blocksize;
    float am = q.absmax ? q.absmax[b]
                        : __fadd_rn(__fmul_rn(q.nested_map[q.absmax_q[b]],
                                              q.nested_absmax[b / q.nested_blocksize]),
                                    q.offset);
    return __fmul_rn(lc_nf4_code_dev[code], am);
}

__device__ __forceinline__ float lc_weight_elem(const lc_cuda_weight &W, int64_t e)
{
    switch (W.dtype) {
    case LC_CUDA_F32:
        return ((const float *)W.data)[e];
    case LC_CUDA_BF16:
        return __bfloat162float(((const __nv_bfloat16 *)W.data)[e]);
    case LC_CUDA_F16:
        return __half2float(((const __half *)W.data)[e]);
    default:
        return lc_nf4_elem(W.nf4, e);
    }
}

/* Internal entry points shared between files (C++ linkage). */
int lc_cuda_weight_matmul_to(lc_cuda_ctx *c, lc_cuda_dtype dt, const void *x, int64_t N,
                             const lc_cuda_weight *W, float beta, void *y, lc_cuda_dtype y_dt,
                             void *scratch);
int lc_cuda_weight_matmul_grad_to(lc_cuda_ctx *c, lc_cuda_dtype dt, const void *dy, int64_t N,
                                  const lc_cuda_weight *W, void *dx, lc_cuda_dtype dx_dt,
                                  void *scratch);
int lc_cuda_check_weight(lc_cuda_ctx *c, const lc_cuda_weight *W);
void lc_cuda_gemm_cache_clear(lc_cuda_ctx *c);
/* lc_cuda_debug_limits overrides (0 = default) */
extern int64_t lc_cuda_dbg_weight_tile, lc_cuda_dbg_ce_rows;

#endif

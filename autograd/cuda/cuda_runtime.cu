/* cuda_runtime.cu — device query, the context (stream, cuBLASLt handle and
 * workspace, reduction buffers), memory wrappers, dtype conversion, and the
 * error formatting behind the check macros of cuda_common.cuh.
 *
 * Why a context instead of globals: Criterion forks per test and the trainer
 * may one day drive two devices; everything a kernel needs besides its
 * arguments hangs off one object that is created after fork and freed at
 * the end, so no CUDA state is ever shared across a fork. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/cuda/cuda_common.cuh"

/* bytes of partial sums at first: 64 Ki doubles, one a block of 16 Ki values = 1 G values */
#define LC_RED_INIT ((size_t)8 << 16)

int lc_cuda_fail(lc_error *err, const char *file, int line, const char *what, const char *name,
                 const char *detail)
{
    if (err)
        snprintf(err->msg, sizeof err->msg, "%s:%d: %s failed: %s (%s)", file, line, what, name,
                 detail);
    return -1;
}

int lc_cuda_failf(lc_error *err, const char *file, int line, const char *fmt, ...)
{
    if (err) {
        int n = snprintf(err->msg, sizeof err->msg, "%s:%d: ", file, line);
        if (n < 0 || (size_t)n >= sizeof err->msg)
            n = 0;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg + n, sizeof err->msg - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

const char *lc_cublas_status_name(cublasStatus_t s)
{
    /* libcublasLt alone has no cublasGetStatusName (that lives in libcublas). */
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "CUBLAS_STATUS_(unknown)";
    }
}

int lc_cuda_after_launch(lc_cuda_ctx *c, const char *file, int line, const char *kernel)
{
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess && c->sync_each)
        e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess) {
        char what[160];
        snprintf(what, sizeof what, "kernel %s", kernel);
        return lc_cuda_fail(&c->err, file, line, what, cudaGetErrorName(e), cudaGetErrorString(e));
    }
    return 0;
}

extern "C" int lc_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError(); /* no driver / no device: clear the sticky error */
        return 0;
    }
    return n;
}

extern "C" int lc_cuda_device_query(int device, lc_cuda_device_info *info, lc_error *err)
{
    memset(info, 0, sizeof *info);
    cudaDeviceProp p;
    LC_CU(err, cudaGetDeviceProperties(&p, device));
    snprintf(info->name, sizeof info->name, "%s", p.name);
    info->cc_major = p.major;
    info->cc_minor = p.minor;
    info->sm_count = p.multiProcessorCount;
    LC_CU(err, cudaSetDevice(device));
    LC_CU(err, cudaMemGetInfo(&info->free_bytes, &info->total_bytes));
    return 0;
}

extern "C" int lc_cuda_ctx_init(lc_cuda_ctx **out, int device, size_t workspace_bytes,
                                lc_error *err)
{
    *out = NULL;
    lc_cuda_ctx *c = (lc_cuda_ctx *)calloc(1, sizeof *c);
    if (!c)
        return lc_cuda_failf(err, __FILE__, __LINE__, "out of host memory for the CUDA context");
    c->device = device;
    c->workspace_bytes = workspace_bytes ? workspace_bytes : (size_t)32 << 20;
    const char *env = getenv("LORAC_CUDA_SYNC");
    c->sync_each = env && env[0] == '1';
    int rc = -1;
    do {
        cudaError_t e;
#define INIT_CU(call)                                                                       \
    if ((e = (call)) != cudaSuccess) {                                                      \
        lc_cuda_fail(err, __FILE__, __LINE__, #call, cudaGetErrorName(e), cudaGetErrorString(e)); \
        break;                                                                              \
    }
        INIT_CU(cudaSetDevice(device));
        INIT_CU(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
        INIT_CU(cudaMalloc(&c->workspace, c->workspace_bytes));
        INIT_CU(cudaMalloc(&c->red, LC_RED_INIT));
        c->red_cap = LC_RED_INIT;
        INIT_CU(cudaMalloc((void **)&c->dscalar, 8 * sizeof(double)));
        INIT_CU(cudaMalloc((void **)&c->dcount, sizeof(int32_t) * 2));
        INIT_CU(cudaMallocHost(&c->hpinned, 64));
#undef INIT_CU
        cublasStatus_t s = cublasLtCreate(&c->lt);
        if (s != CUBLAS_STATUS_SUCCESS) {
            lc_cuda_fail(err, __FILE__, __LINE__, "cublasLtCreate(&c->lt)",
                         lc_cublas_status_name(s), "cuBLAS");
            break;
        }
        rc = 0;
    } while (0);
    if (rc) {
        lc_cuda_ctx_free(c);
        return -1;
    }
    *out = c;
    return 0;
}

extern "C" void lc_cuda_ctx_free(lc_cuda_ctx *c)
{
    if (!c)
        return;
    cudaSetDevice(c->device);
    if (c->stream)
        cudaStreamSynchronize(c->stream);
    lc_cuda_gemm_cache_clear(c);
    if (c->lt)
        cublasLtDestroy(c->lt);
    cudaFree(c->workspace);
    cudaFree(c->red);
    cudaFree(c->dscalar);
    cudaFree(c->dcount);
    if (c->hpinned)
        cudaFreeHost(c->hpinned);
    if (c->stream)
        cudaStreamDestroy(c->stream);
    free(c);
}

extern "C" const char *lc_cuda_ctx_error(const lc_cuda_ctx *c) { return c->err.msg; }

extern "C" int lc_cuda_sync(lc_cuda_ctx *c)
{
    LC_CU(&c->err, cudaStreamSynchronize(c->stream));
    return 0;
}

int lc_cuda_reserve(lc_cuda_ctx *c, void **buf, size_t *cap, size_t bytes)
{
    if (bytes <= *cap)
        return 0;
    LC_CU(&c->err, cudaStreamSynchronize(c->stream));
    if (*buf)
        LC_CU(&c->err, cudaFree(*buf));
    *buf = NULL;
    *cap = 0;
    LC_CU(&c->err, cudaMalloc(buf, bytes));
    *cap = bytes;
    return 0;
}

extern "C" int lc_cuda_mem_info(lc_cuda_ctx *c, size_t *free_bytes, size_t *total_bytes)
{
    size_t f = 0, t = 0;
    LC_CU(&c->err, cudaMemGetInfo(&f, &t));
    if (free_bytes)
        *free_bytes = f;
    if (total_bytes)
        *total_bytes = t;
    return 0;
}

extern "C" int lc_cuda_malloc(lc_cuda_ctx *c, void **p, size_t bytes)
{
    *p = NULL;
    LC_CU(&c->err, cudaMalloc(p, bytes ? bytes : 1));
    return 0;
}

extern "C" void lc_cuda_free(void *p)
{
    if (p)
        cudaFree(p);
}

extern "C" int lc_cuda_upload(lc_cuda_ctx *c, void *dst, const void *src, size_t bytes)
{
    if (!bytes)
        return 0;
    LC_CU(&c->err, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream));
    LC_CU(&c->err, cudaStreamSynchronize(c->stream));
    return 0;
}

extern "C" int lc_cuda_download(lc_cuda_ctx *c, void *dst, const void *src, size_t bytes)
{
    if (!bytes)
        return 0;
    LC_CU(&c->err, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
    LC_CU(&c->err, cudaStreamSynchronize(c->stream));
    return 0;
}

extern "C" int lc_cuda_copy(lc_cuda_ctx *c, void *dst, const void *src, size_t bytes)
{
    if (!bytes)
        return 0;
    LC_CU(&c->err, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream));
    return 0;
}

extern "C" int lc_cuda_memset0(lc_cuda_ctx *c, void *dst, size_t bytes)
{
    if (!bytes)
        return 0;
    LC_CU(&c->err, cudaMemsetAsync(dst, 0, bytes, c->stream));
    return 0;
}

/* elements of a conversion's chunk: 16 bytes of the narrower type */
#define CONVERT_W(Td, Ts) (LC_VW(Td) > LC_VW(Ts) ? LC_VW(Td) : LC_VW(Ts))

/* dst: [n] Td = src: [n] Ts, through f32 (lc_map) */
template <typename Td, typename Ts>
__global__ void convert_k(Td *dst, const Ts *src, int64_t n, bool vec)
{
    Td *out[1] = {dst};
    lc_map<CONVERT_W(Td, Ts)>(
        n, vec, [](int64_t, const float *x, float *o) { o[0] = x[0]; }, out, src);
}

template <typename Td, typename Ts>
static int convert_launch(lc_cuda_ctx *c, Td *dst, const void *src, int64_t n)
{
    bool vec = lc_aligned16(dst, src);
    convert_k<Td, Ts><<<lc_vgrid(n, CONVERT_W(Td, Ts), vec), 256, 0, c->stream>>>(
        dst, (const Ts *)src, n, vec);
    LC_LAUNCHED(c, "convert_k");
    return 0;
}

template <typename Td>
static int convert_to(lc_cuda_ctx *c, Td *dst, lc_dtype src_dt, const void *src, int64_t n)
{
    if (src_dt == LC_DTYPE_F32)
        return convert_launch<Td, float>(c, dst, src, n);
    if (src_dt == LC_DTYPE_BF16)
        return convert_launch<Td, __nv_bfloat16>(c, dst, src, n);
    return convert_launch<Td, __half>(c, dst, src, n);
}

extern "C" int lc_cuda_convert(lc_cuda_ctx *c, lc_dtype dst_dt, void *dst,
                               lc_dtype src_dt, const void *src, int64_t n)
{
    if (n <= 0)
        return 0;
    if (src_dt != LC_DTYPE_F32 && src_dt != LC_DTYPE_BF16 && src_dt != LC_DTYPE_F16)
        return LC_BAD(c, "convert: source dtype %d is not F32, BF16 or F16", (int)src_dt);
    LC_DISPATCH_ACT(c, dst_dt, T, {
        LC_TRY(convert_to<T>(c, (T *)dst, src_dt, src, n));
    });
    return 0;
}

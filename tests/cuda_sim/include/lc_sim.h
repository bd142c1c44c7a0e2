/* lc_sim.h (tests/cuda_sim/) — a CPU stand-in for the parts of CUDA / cuBLASLt that lorac's
 * backend uses, so the real kernel source runs (slowly) without a GPU:
 * every CUDA thread is a fiber, blocks run one after another, barriers and
 * warp shuffles have their real collective semantics. */
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <functional>
#include <tuple>
#include <type_traits>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __constant__
/* static shared memory lives in one linker section, which the simulator fills
 * with 0xff (NaN) before every block: reads of unwritten shared memory and
 * values carried over from another block show up. */
#define __shared__ static __attribute__((section("lc_sim_shared")))
#define __launch_bounds__(...)
#ifndef INFINITY
#define INFINITY (__builtin_inff())
#endif

struct uint3s { unsigned x, y, z; };
struct alignas(16) uint4 { unsigned x, y, z, w; }; /* CUDA's 16-byte vector type */
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
inline unsigned __float_as_uint(float f)
{
    unsigned u;
    __builtin_memcpy(&u, &f, sizeof u);
    return u;
}
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

struct lc_sim_fiber;
extern lc_sim_fiber *lc_sim_cur;
extern uint3s lc_sim_block_idx, lc_sim_block_dim, lc_sim_grid_dim;
uint3s &lc_sim_tid();
#define threadIdx (lc_sim_tid())
#define blockIdx (lc_sim_block_idx)
#define blockDim (lc_sim_block_dim)
#define gridDim (lc_sim_grid_dim)

void __syncthreads();
void __syncwarp(unsigned mask = 0xffffffffu);
uint64_t lc_sim_exchange(uint64_t mine, int src_lane);  /* every lane: publish, read src */
unsigned __ballot_sync(unsigned mask, int pred);
int __any_sync(unsigned mask, int pred);
void lc_sim_check_mask(unsigned mask);
void *lc_sim_dyn_smem();

template <class V> V lc_sim_shfl(unsigned mask, V v, int src)
{
    lc_sim_check_mask(mask);
    static_assert(sizeof(V) <= 8, "shuffle of a large type");
    uint64_t b = 0;
    memcpy(&b, &v, sizeof v);
    uint64_t r = lc_sim_exchange(b, src & 31);
    V out;
    memcpy(&out, &r, sizeof out);
    return out;
}
int lc_sim_lane();
template <class V> V __shfl_sync(unsigned mask, V v, int src) { return lc_sim_shfl(mask, v, src); }
template <class V> V __shfl_xor_sync(unsigned mask, V v, int m)
{
    return lc_sim_shfl(mask, v, lc_sim_lane() ^ m);
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int atomicExch(int *p, int v) { int o = *p; *p = v; return o; }

/* Every 16-byte access of cuda_common.cuh's lc_ld_vec / lc_st_vec: aborts
 * ("lc_sim: 16-byte access at P ...") unless P is 16-byte aligned (a GPU
 * faults: cudaErrorMisalignedAddress) and its 16 bytes lie in one live
 * cudaMalloc allocation. */
void lc_sim_check_vec(const void *p);
#define LC_VEC_ACCESS(p) lc_sim_check_vec(p)

/* round-to-nearest intrinsics: the host's IEEE operations, kept unfused */
inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
inline float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
inline float __fsub_rn(float a, float b) { volatile float r = a - b; return r; }
inline float __fdiv_rn(float a, float b) { volatile float r = a / b; return r; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }

/* ---- runtime ---- */
typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorLaunchFailure = 719,
} cudaError_t;
typedef struct lc_sim_stream *cudaStream_t;
#define cudaStreamNonBlocking 1
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
struct cudaDeviceProp { char name[256]; size_t totalGlobalMem; int major, minor, multiProcessorCount; };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaDeviceAttr { cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 };

cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int dev);
cudaError_t cudaSetDevice(int dev);
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaMalloc(void **p, size_t n);
template <class T> cudaError_t cudaMalloc(T **p, size_t n) { return cudaMalloc((void **)p, n); }
cudaError_t cudaMallocHost(void **p, size_t n);
cudaError_t cudaFree(void *p);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind k);
cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind k, cudaStream_t st);
cudaError_t cudaMemsetAsync(void *d, int v, size_t n, cudaStream_t st);
cudaError_t cudaGetLastError();
const char *cudaGetErrorName(cudaError_t e);
const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int dev);
cudaError_t lc_sim_func_set_attr(const void *k, cudaFuncAttribute a, int v);
template <class K> cudaError_t cudaFuncSetAttribute(K *k, cudaFuncAttribute a, int v)
{
    return lc_sim_func_set_attr((const void *)k, a, v);
}

/* ---- launches: K<<<g, b, smem, s>>>(args) is rewritten lc_sim_launch(g, b, smem, s, K)(args) */
/* Aborts with "lc_sim: kernel K argument i is a host pointer" unless p is NULL
 * or points into a live cudaMalloc allocation. */
void lc_sim_check_arg(const char *kernel, int i, const void *p);
/* structs passed by value: no pointers unless lc_sim_structs.h says otherwise */
template <class T> void lc_sim_check_inner(const char *, int, const T &) {}
template <class P, class A> void lc_sim_check_one(const char *k, int i, const A &a)
{
    if constexpr (std::is_pointer_v<P>)
        lc_sim_check_arg(k, i, (const void *)static_cast<P>(a));
    else if constexpr (std::is_class_v<P>)
        lc_sim_check_inner(k, i, static_cast<const P &>(a));
}

/* Checks the launch configuration and runs the grid — at once, or, in the
 * deferred mode (the default; LC_SIM_DEFERRED=0 turns it off), at the next
 * synchronisation point, like the stream's other work. */
void lc_sim_submit(dim3 g, dim3 b, size_t smem, const void *kernel, const char *name,
                   std::function<void()> body);
template <class... P> struct lc_sim_launcher {
    dim3 g, b;
    size_t smem;
    void (*k)(P...);
    const char *name;
    template <class... A> void operator()(A &&...a)
    {
        /* the kernel's parameter types: pointers are checked, and the pointers
         * inside structs passed by value that lc_sim_structs.h knows */
        int i = 0;
        (lc_sim_check_one<P>(name, i++, a), ...);
        auto fn = k;
        std::tuple<std::decay_t<A>...> args(std::forward<A>(a)...); /* by value, as CUDA */
        lc_sim_submit(g, b, smem, (const void *)k, name, [fn, args]() { std::apply(fn, args); });
    }
};
template <class... P>
lc_sim_launcher<P...> lc_sim_launch_(dim3 g, dim3 b, size_t smem, cudaStream_t, void (*k)(P...),
                                     const char *name)
{
    return lc_sim_launcher<P...>{g, b, smem, k, name};
}
template <class... P>
lc_sim_launcher<P...> lc_sim_launch_(dim3 g, dim3 b, cudaStream_t s, void (*k)(P...), const char *name)
{
    return lc_sim_launch_(g, b, 0, s, k, name);
}
#define lc_sim_launch(...) lc_sim_launch_(__VA_ARGS__)

/* True when the environment variable LC_INJECT_BUG names this bug: gen.py
 * guards the sites of the injected wiring bugs with it (ctests cuda_sim_bug_*). */
bool lc_sim_bug(const char *name);

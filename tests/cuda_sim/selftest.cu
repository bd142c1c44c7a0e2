/* selftest.cu (tests/cuda_sim/) — wiring bugs the simulator must catch.
 * CMake (LORAC_CUDA_SIM) compiles this through gen.py like the backend's .cu files and
 * ctest runs `cuda_sim_selftest CASE` for every case: "ok" must pass (correct versions of the
 * kernels below give the right answer under random fiber order); every other
 * case injects one bug and must fail, either by an lc_sim abort naming it or
 * by a wrong result reported here ("selftest: wrong result ...").
 * `selftest device_memory TOTAL` checks the simulated device memory instead
 * (CMakeLists.txt sets LC_SIM_DEVICE_MEMORY and gives the TOTAL it means). */
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "autograd/cuda/cuda_common.cuh"

#define NT 64 /* threads of the one block every kernel here runs */

/* out[0] = sum of x[0..NT), block tree reduction in shared memory.
 * sync = 0 drops the barrier between the stores and the reads. */
__global__ void reduce_k(const float *x, float *out, int sync)
{
    __shared__ float sh[NT];
    sh[threadIdx.x] = x[threadIdx.x];
    if (sync)
        __syncthreads();
    if (threadIdx.x == NT - 1) { /* the last thread adds up: right in thread order */
        float s = 0;
        for (int i = 0; i < NT; i++)
            s += sh[i];
        out[0] = s;
    }
}

/* out[t] = x[t] accumulated into shared memory; init = 0 forgets to zero it. */
__global__ void accum_k(const float *x, float *out, int init)
{
    __shared__ float acc[NT];
    if (init)
        acc[threadIdx.x] = 0;
    acc[threadIdx.x] += x[threadIdx.x];
    out[threadIdx.x] = acc[threadIdx.x];
}

/* y[i] = 2 x[i] */
__global__ void twice_k(const float *x, float *y)
{
    y[threadIdx.x] = 2 * x[threadIdx.x];
}

/* y[i] = W.data[i] (f32): a device pointer inside a by-value struct */
__global__ void weight_k(lc_dweight W, float *y)
{
    y[threadIdx.x] = ((const float *)W.data)[threadIdx.x];
}

/* y[4t..4t+4) = 2 x[4t + off ..]: 16-byte loads and stores (cuda_common.cuh), for
 * t < NT/4; off = 1 reads at a misaligned address, off = 4 past the end of x */
__global__ void vec_k(const float *x, float *y, int off)
{
    if (threadIdx.x >= NT / 4)
        return;
    float v[4];
    lc_ld_vec<4>(x + 4 * threadIdx.x + off, v);
    for (int e = 0; e < 4; e++)
        v[e] *= 2;
    lc_st_vec<4>(y + 4 * threadIdx.x, v);
}

static int check(const char *what, const float *got, const float *want, int n)
{
    for (int i = 0; i < n; i++)
        if (!(got[i] == want[i])) {
            fprintf(stderr, "selftest: wrong result (%s): [%d] = %g, want %g\n", what, i, got[i], want[i]);
            return 1;
        }
    return 0;
}

static int mem_fail(const char *what, size_t got, size_t want)
{
    fprintf(stderr, "selftest: device_memory: %s is %zu, want %zu\n", what, got, want);
    return 1;
}

/* The device has want_total bytes: cudaMemGetInfo and cudaGetDeviceProperties
 * say so, a cudaMalloc takes its size off the free bytes and cudaFree gives
 * it back, and a cudaMalloc past the free bytes fails with "out of memory",
 * allocating nothing; on a small device, allocating exactly what is free
 * succeeds and leaves 0. */
static int device_memory(size_t want_total)
{
    size_t f0, t0, f, t;
    cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    cudaMemGetInfo(&f0, &t0);
    if (t0 != want_total) return mem_fail("total", t0, want_total);
    if (prop.totalGlobalMem != want_total) return mem_fail("totalGlobalMem", prop.totalGlobalMem, want_total);
    if (f0 != t0) return mem_fail("free at the start", f0, t0);
    size_t a_n = t0 / 2 < ((size_t)1 << 20) ? t0 / 2 : ((size_t)1 << 20);
    void *a = NULL, *b = (void *)&f, *c = NULL;
    if (cudaMalloc(&a, a_n) != cudaSuccess || !a) return mem_fail("cudaMalloc within the free bytes", 1, 0);
    cudaMemGetInfo(&f, &t);
    if (f != f0 - a_n) return mem_fail("free after a cudaMalloc", f, f0 - a_n);
    cudaError_t e = cudaMalloc(&b, f + 1);
    if (e != cudaErrorMemoryAllocation || b) return mem_fail("cudaMalloc past the free bytes: error", (size_t)e, cudaErrorMemoryAllocation);
    if (strcmp(cudaGetErrorString(e), "out of memory")) return mem_fail("its message is not \"out of memory\": error", (size_t)e, cudaErrorMemoryAllocation);
    if (cudaGetLastError() != cudaErrorMemoryAllocation || cudaGetLastError() != cudaSuccess)
        return mem_fail("cudaGetLastError after it", 1, 0);
    cudaMemGetInfo(&f, &t);
    if (f != f0 - a_n) return mem_fail("free after a failed cudaMalloc", f, f0 - a_n);
    if (f <= ((size_t)64 << 20)) { /* small enough to allocate on the host */
        if (cudaMalloc(&b, f) != cudaSuccess) return mem_fail("cudaMalloc of all the free bytes", 1, 0);
        cudaMemGetInfo(&f, &t);
        if (f != 0) return mem_fail("free when full", f, 0);
        if (cudaMalloc(&c, 1) != cudaErrorMemoryAllocation || c) return mem_fail("cudaMalloc of 1 byte when full", 0, 1);
        cudaGetLastError();
        cudaFree(b);
    }
    cudaFree(a);
    cudaMemGetInfo(&f, &t);
    if (f != t0) return mem_fail("free after cudaFree", f, t0);
    printf("selftest device_memory: passed (%zu bytes)\n", t0);
    return 0;
}

int main(int argc, char **argv)
{
    const char *c = argc > 1 ? argv[1] : "ok";
    if (!strcmp(c, "device_memory"))
        return device_memory(argc > 2 ? (size_t)strtoull(argv[2], NULL, 10) : 0);
    float hx[NT], hy[NT], want[NT], sum = 0;
    for (int i = 0; i < NT; i++)
        hx[i] = (float)(i + 1), want[i] = 2 * hx[i], sum += hx[i];
    float *x, *y;
    cudaStream_t s;
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    cudaMalloc(&x, sizeof hx);
    cudaMalloc(&y, sizeof hy);
    if (!strcmp(c, "memcpy_kind")) /* HtoD with the arguments swapped */
        cudaMemcpy(hx, x, sizeof hx, cudaMemcpyHostToDevice);
    cudaMemcpy(x, hx, sizeof hx, cudaMemcpyHostToDevice);
    lc_dweight W;
    memset(&W, 0, sizeof W);
    W.dtype = LC_DTYPE_F32, W.rows = 1, W.cols = NT;
    W.data = strcmp(c, "host_in_struct") ? (const void *)x : (const void *)hx;
    weight_k<<<1, NT, 0, s>>>(W, y);
    cudaMemcpy(hy, y, sizeof hy, cudaMemcpyDeviceToHost);
    int bad = check("weight_k", hy, hx, NT);
    if (!strcmp(c, "memcpy_d2d")) /* a host buffer where DtoD needs device */
        cudaMemcpy(y, hx, sizeof hx, cudaMemcpyDeviceToDevice);
    if (!strcmp(c, "host_arg")) /* the host copy passed to a kernel */
        twice_k<<<1, NT, 0, s>>>(hx, y);
    else
        twice_k<<<1, NT, 0, s>>>(x, y);
    if (!strcmp(c, "memcpy_d2h")) /* DtoH into device memory */
        cudaMemcpy(x, y, sizeof hy, cudaMemcpyDeviceToHost);
    cudaMemcpy(hy, y, sizeof hy, cudaMemcpyDeviceToHost);
    bad |= check("twice_k", hy, want, NT);

    vec_k<<<1, NT, 0, s>>>(x, y, !strcmp(c, "vec_misaligned") ? 1 : !strcmp(c, "vec_outside") ? 4 : 0);
    cudaMemcpy(hy, y, sizeof hy, cudaMemcpyDeviceToHost);
    bad |= check("vec_k", hy, want, NT);

    reduce_k<<<1, NT, 0, s>>>(x, y, strcmp(c, "no_syncthreads") != 0);
    cudaMemcpy(hy, y, sizeof(float), cudaMemcpyDeviceToHost);
    bad |= check("reduce_k", hy, &sum, 1);

    accum_k<<<1, NT, 0, s>>>(x, y, strcmp(c, "smem_uninit") != 0);
    cudaMemcpy(hy, y, sizeof hy, cudaMemcpyDeviceToHost);
    bad |= check("accum_k", hy, hx, NT);

    if (!strcmp(c, "free_host"))
        cudaFree(hx + 1);
    cudaFree(x);
    cudaFree(y);
    cudaStreamDestroy(s);
    if (!bad)
        printf("selftest %s: passed\n", c);
    return bad;
}

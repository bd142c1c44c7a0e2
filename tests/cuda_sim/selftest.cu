/* selftest.cu (tests/cuda_sim/) — wiring bugs the simulator must catch.
 * run_tests.sh compiles this through gen.py like the backend's .cu files and
 * runs `selftest CASE` for every case: "ok" must pass (correct versions of the
 * kernels below give the right answer under random fiber order); every other
 * case injects one bug and must fail, either by an lc_sim abort naming it or
 * by a wrong result reported here ("selftest: wrong result ..."). */
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

static int check(const char *what, const float *got, const float *want, int n)
{
    for (int i = 0; i < n; i++)
        if (!(got[i] == want[i])) {
            fprintf(stderr, "selftest: wrong result (%s): [%d] = %g, want %g\n", what, i, got[i], want[i]);
            return 1;
        }
    return 0;
}

int main(int argc, char **argv)
{
    const char *c = argc > 1 ? argv[1] : "ok";
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

/* sim.cpp — the simulator's runtime: fibers, barriers, warp collectives,
 * device memory and a reference (column-major, f32-accumulating) cuBLASLt.
 *
 * Every CUDA thread of a block is a ucontext fiber on one OS thread (entered
 * with swapcontext, resumed with _setjmp / _longjmp); blocks
 * run one after another; between barriers the runnable fibers run in a seeded
 * random order (LC_SIM_SEED, default 1, printed at the first launch), so code
 * that relies on thread order without a barrier gives wrong results. A fiber
 * runs until it reaches a barrier
 * (__syncthreads, __syncwarp, a shuffle / ballot) and then yields, so the
 * collectives have their real semantics, and a barrier that can never
 * complete (divergent __syncthreads, a shuffle after some lanes exited) is
 * reported as a deadlock instead of hanging. Device and shared memory are
 * plain exactly-sized mallocs filled with 0xff (NaN as f32), so reads of
 * uninitialized memory show up as NaN and AddressSanitizer sees overflows;
 * static __shared__ arrays (section lc_sim_shared) are refilled with 0xff
 * before every block. The live device allocations are kept as [begin, end)
 * ranges, which catches wiring bugs: a host pointer passed as a kernel's
 * pointer argument, a cudaMemcpy kind that does not match where its pointers
 * live, cudaMemset / cublasLtMatmul on host memory and cudaFree of anything
 * but a live allocation all abort with a message. The device has
 * LC_SIM_DEVICE_MEMORY bytes (default 16 GiB): a cudaMalloc past what is free
 * fails with cudaErrorMemoryAllocation, as on a full GPU.
 * Dynamic shared memory above 48 KiB must be opted into, and is capped at the
 * sm_86 / sm_89 limit (the tightest of the four target architectures).
 * Stream work (kernels, async copies, memsets, GEMMs) is deferred by default:
 * it runs, in order, only at a synchronisation point, so a host read without
 * one sees stale memory (pinned host memory starts as NaN too). */
/* fortified longjmp refuses to jump to another stack, which is the point here */
#undef _FORTIFY_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <ucontext.h>
#include <sys/mman.h>
#include <map>
#include <set>
#include <string>
#include <vector>
#include "lc_sim.h"
#include "cublasLt.h"
#include "cuda_bf16.h"

#define SIM_OPTIN 101376 /* sm_86 / sm_89: the tightest opt-in shared memory */
#define STACK (256 * 1024)

struct barrier_t { int expected = 0, arrived = 0; uint64_t gen = 0; };
struct warp_t { barrier_t bar; uint64_t slot[32]; };
struct lc_sim_fiber {
    ucontext_t ctx;  /* the first entry */
    jmp_buf jb;      /* later resumptions */
    bool started;
    uint3s tid;
    int index;
    bool done;
};
lc_sim_fiber *lc_sim_cur;
uint3s lc_sim_block_idx, lc_sim_block_dim, lc_sim_grid_dim;
static ucontext_t sched_ctx;
/* Switches after a fiber's first entry use _setjmp / _longjmp, which skip
 * swapcontext's signal-mask system calls (most of the simulator's system
 * time); AddressSanitizer builds keep swapcontext, which ASan follows. */
#if defined(__SANITIZE_ADDRESS__)
#define LC_SIM_SWAPCONTEXT 1
#else
#define LC_SIM_SWAPCONTEXT 0
static jmp_buf sched_jb;
#endif
static std::vector<lc_sim_fiber> fibers;
static std::vector<warp_t> warps;
static barrier_t block_bar;
static uint64_t progress;
static const std::function<void()> *cur_body;
static char *dyn_smem;
static char *stacks;
static size_t stacks_n;
static cudaError_t last_error = cudaSuccess;
static std::map<const void *, int> smem_attr;
static const char *cur_kernel = "";

uint3s &lc_sim_tid() { return lc_sim_cur->tid; }
int lc_sim_lane() { return lc_sim_cur->index & 31; }
void *lc_sim_dyn_smem() { return dyn_smem; }

static void fail(const char *what)
{
    fprintf(stderr, "lc_sim: %s (kernel %s, block %u,%u,%u thread %d)\n", what, cur_kernel,
            lc_sim_block_idx.x, lc_sim_block_idx.y, lc_sim_block_idx.z,
            lc_sim_cur ? lc_sim_cur->index : -1);
    abort();
}

/* Device memory: every cudaMalloc block, begin -> size. A pointer is a device
 * pointer when it lies in [begin, begin + size) of a live block. */
static std::map<uintptr_t, size_t> live;
static bool is_device(const void *p, size_t n = 1)
{
    uintptr_t a = (uintptr_t)p;
    auto it = live.upper_bound(a);
    if (it == live.begin())
        return false;
    --it;
    size_t size = it->second ? it->second : 1;
    return a - it->first < size && (n ? n : 1) <= size - (a - it->first);
}
void lc_sim_check_arg(const char *kernel, int i, const void *p)
{
    if (p && !is_device(p)) {
        fprintf(stderr, "lc_sim: kernel %s argument %d is a host pointer (%p)\n", kernel, i, p);
        abort();
    }
}

void lc_sim_check_vec(const void *p)
{
    char what[128];
    if ((uintptr_t)p & 15)
        snprintf(what, sizeof what, "16-byte access at %p is not 16-byte aligned", p);
    else if (!is_device(p, 16))
        snprintf(what, sizeof what, "16-byte access at %p is outside device memory", p);
    else
        return;
    fail(what);
}

/* Fiber order: runnable fibers run in a random order (xorshift64*, seeded by
 * LC_SIM_SEED, default 1), so code that relies on thread order between
 * barriers gives different results than in thread-index order. */
static uint64_t rng;
static uint64_t rnd()
{
    if (!rng) {
        const char *e = getenv("LC_SIM_SEED");
        rng = e && *e ? strtoull(e, NULL, 0) : 1;
        fprintf(stderr, "lc_sim: fiber order seed LC_SIM_SEED=%llu\n", (unsigned long long)rng);
        rng = rng * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
        if (!rng)
            rng = 1;
    }
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1Dull;
}

/* Static shared memory (__shared__ is static in section lc_sim_shared). */
extern "C" char __start_lc_sim_shared[] __attribute__((weak));
extern "C" char __stop_lc_sim_shared[] __attribute__((weak));

static void yield()
{
#if LC_SIM_SWAPCONTEXT
    swapcontext(&lc_sim_cur->ctx, &sched_ctx);
#else
    if (!_setjmp(lc_sim_cur->jb))
        _longjmp(sched_jb, 1);
#endif
}

/* runs fiber f until it yields or ends */
static void resume(lc_sim_fiber &f)
{
    lc_sim_cur = &f;
#if LC_SIM_SWAPCONTEXT
    swapcontext(&sched_ctx, &f.ctx);
#else
    if (!_setjmp(sched_jb)) {
        if (f.started)
            _longjmp(f.jb, 1);
        f.started = true;
        swapcontext(&sched_ctx, &f.ctx); /* the fiber comes back by _longjmp(sched_jb) */
    }
#endif
}

static void bar_wait(barrier_t &b)
{
    uint64_t g = b.gen;
    progress++;
    if (++b.arrived == b.expected) {
        b.arrived = 0;
        b.gen++;
        progress++;
        return;
    }
    while (b.gen == g)
        yield();
}

static void bar_drop(barrier_t &b)
{
    b.expected--;
    if (b.arrived > 0 && b.arrived == b.expected) {
        b.arrived = 0;
        b.gen++;
    }
    progress++;
}

void __syncthreads() { bar_wait(block_bar); }
void __syncwarp(unsigned mask) { lc_sim_check_mask(mask); bar_wait(warps[lc_sim_cur->index / 32].bar); }
void lc_sim_check_mask(unsigned mask)
{
    if (mask != 0xffffffffu)
        fail("partial warp mask");
    if (warps[lc_sim_cur->index / 32].bar.expected != 32)
        fail("warp collective with exited lanes");
}

uint64_t lc_sim_exchange(uint64_t mine, int src)
{
    warp_t &w = warps[lc_sim_cur->index / 32];
    w.slot[lc_sim_cur->index & 31] = mine;
    bar_wait(w.bar);
    uint64_t r = w.slot[src];
    bar_wait(w.bar);
    return r;
}

unsigned __ballot_sync(unsigned mask, int pred)
{
    lc_sim_check_mask(mask);
    warp_t &w = warps[lc_sim_cur->index / 32];
    w.slot[lc_sim_cur->index & 31] = pred != 0;
    bar_wait(w.bar);
    unsigned r = 0;
    for (int i = 0; i < 32; i++)
        r |= (unsigned)w.slot[i] << i;
    bar_wait(w.bar);
    return r;
}
int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }

static void entry()
{
    (*cur_body)();
    lc_sim_cur->done = true;
    bar_drop(block_bar);
    bar_drop(warps[lc_sim_cur->index / 32].bar);
#if LC_SIM_SWAPCONTEXT
    swapcontext(&lc_sim_cur->ctx, &sched_ctx);
#else
    _longjmp(sched_jb, 1);
#endif
}

/* Deferred execution (LC_SIM_DEFERRED, default 1): kernels, async copies,
 * memsets and GEMMs queue up in stream order and run only at a
 * synchronisation point (cudaStreamSynchronize, cudaDeviceSynchronize, a
 * synchronous cudaMemcpy, cudaFree), so host code that reads results without
 * synchronising sees stale (poisoned) memory, as it may on a GPU. */
static std::vector<std::function<void()>> queue_;
static int deferred_ = -1;
static bool deferred()
{
    if (deferred_ < 0) {
        const char *e = getenv("LC_SIM_DEFERRED");
        deferred_ = !(e && !strcmp(e, "0"));
        fprintf(stderr, "lc_sim: %s execution (LC_SIM_DEFERRED=%d)\n",
                deferred_ ? "deferred" : "immediate", deferred_);
    }
    return deferred_;
}
static void submit(std::function<void()> work)
{
    if (deferred())
        queue_.push_back(std::move(work));
    else
        work();
}
static void flush()
{
    std::vector<std::function<void()>> q;
    q.swap(queue_);
    for (auto &w : q)
        w();
}

bool lc_sim_bug(const char *name)
{
    static const char *bug = getenv("LC_INJECT_BUG");
    return bug && !strcmp(bug, name);
}

static void run_grid(dim3 g, dim3 b, size_t smem, const char *name,
                     const std::function<void()> &body);

void lc_sim_submit(dim3 g, dim3 b, size_t smem, const void *kernel, const char *name,
                   std::function<void()> body)
{
    unsigned nt = b.x * b.y * b.z;
    if (nt == 0 || nt > 1024 || b.y != 1 || b.z != 1 || (nt % 32) || g.x == 0 || g.y == 0 ||
        g.z == 0 || g.y > 65535 || g.z > 65535) {
        fprintf(stderr, "lc_sim: bad launch config for %s\n", name);
        last_error = cudaErrorInvalidConfiguration;
        return;
    }
    if (smem > 48 * 1024) {
        auto it = smem_attr.find(kernel);
        if (it == smem_attr.end() || (size_t)it->second < smem) {
            fprintf(stderr, "lc_sim: %s launched with %zu B dynamic smem without opt-in\n", name, smem);
            last_error = cudaErrorInvalidValue;
            return;
        }
    }
    if (smem > SIM_OPTIN) {
        last_error = cudaErrorInvalidValue;
        return;
    }
    submit([=]() { run_grid(g, b, smem, name, body); });
}

/* getcontext returns twice: kept out of run_grid so its locals stay safe */
static __attribute__((noinline)) void make_fiber(lc_sim_fiber &f, char *stack)
{
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = stack;
    f.ctx.uc_stack.ss_size = STACK;
    f.ctx.uc_link = &sched_ctx;
    f.started = false;
    makecontext(&f.ctx, entry, 0);
}

static void run_grid(dim3 g, dim3 b, size_t smem, const char *name,
                     const std::function<void()> &body)
{
    cur_kernel = name;
    unsigned nt = b.x * b.y * b.z;
    if (stacks_n < nt) {
        if (stacks)
            munmap(stacks, stacks_n * STACK);
        stacks = (char *)mmap(NULL, (size_t)nt * STACK, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        stacks_n = nt;
    }
    lc_sim_grid_dim = {g.x, g.y, g.z};
    lc_sim_block_dim = {b.x, b.y, b.z};
    cur_body = &body;
    fibers.assign(nt, lc_sim_fiber());
    warps.assign(nt / 32, warp_t());
    std::vector<unsigned> order(nt);
    for (unsigned z = 0; z < g.z; z++)
        for (unsigned y = 0; y < g.y; y++)
            for (unsigned x = 0; x < g.x; x++) {
                lc_sim_block_idx = {x, y, z};
                dyn_smem = (char *)malloc(smem ? smem : 1); /* exact size: ASan sees overflows */
                memset(dyn_smem, 0xff, smem);               /* NaN: catches uninitialized reads */
                if (+__start_lc_sim_shared != +__stop_lc_sim_shared)
                    memset(+__start_lc_sim_shared, 0xff, +__stop_lc_sim_shared - +__start_lc_sim_shared);
                block_bar = barrier_t();
                block_bar.expected = (int)nt;
                for (auto &w : warps) {
                    w.bar = barrier_t();
                    w.bar.expected = 32;
                }
                for (unsigned t = 0; t < nt; t++) {
                    lc_sim_fiber &f = fibers[t];
                    f.tid = {t, 0, 0};
                    f.index = (int)t;
                    f.done = false;
                    make_fiber(f, stacks + (size_t)t * STACK);
                }
                unsigned left = nt;
                for (unsigned t = 0; t < nt; t++)
                    order[t] = t;
                while (left) {
                    uint64_t p0 = progress;
                    for (unsigned i = nt - 1; i > 0; i--)
                        std::swap(order[i], order[rnd() % (i + 1)]);
                    for (unsigned t : order) {
                        if (fibers[t].done)
                            continue;
                        resume(fibers[t]);
                        if (fibers[t].done)
                            left--;
                    }
                    lc_sim_cur = NULL;
                    if (left && progress == p0)
                        fail("deadlock: threads wait on a barrier that cannot complete");
                }
                free(dyn_smem);
                dyn_smem = NULL;
            }
    cur_kernel = "";
}

/* ---- runtime ---- */
/* The device's memory: LC_SIM_DEVICE_MEMORY bytes, a whole number alone or with
 * K, M, G, KiB, MiB or GiB (all powers of 1024), default 16 GiB; a bad value is
 * an error naming the variable. cudaMemGetInfo and cudaGetDeviceProperties
 * report it, and free = total - the bytes of the live cudaMalloc blocks. */
static size_t device_used;
static size_t device_total()
{
    static size_t total;
    if (total)
        return total;
    total = (size_t)16 << 30;
    const char *e = getenv("LC_SIM_DEVICE_MEMORY");
    if (e) {
        static const struct { const char *suffix; int shift; } units[] = {
            {"", 0}, {"K", 10}, {"KiB", 10}, {"M", 20}, {"MiB", 20}, {"G", 30}, {"GiB", 30}};
        char *end;
        errno = 0;
        unsigned long long v = strtoull(e, &end, 10);
        int shift = -1;
        for (const auto &u : units)
            if (!strcmp(end, u.suffix))
                shift = u.shift;
        if (!(*e >= '0' && *e <= '9') || errno || shift < 0 || v == 0 || v > (SIZE_MAX >> shift)) {
            fprintf(stderr, "lc_sim: LC_SIM_DEVICE_MEMORY=%s is not a device memory size "
                            "(bytes > 0, alone or with K, M, G, KiB, MiB, GiB)\n", e);
            abort();
        }
        total = (size_t)v << shift;
        fprintf(stderr, "lc_sim: device memory %zu bytes (LC_SIM_DEVICE_MEMORY=%s)\n", total, e);
    }
    return total;
}
struct lc_sim_stream { int dummy; };
cudaError_t cudaGetDeviceCount(int *n) { *n = 1; return cudaSuccess; }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int)
{
    memset(p, 0, sizeof *p);
    strcpy(p->name, "lc_sim CPU fibers");
    p->totalGlobalMem = device_total();
    p->major = 8, p->minor = 6, p->multiProcessorCount = 1;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int) { return cudaSuccess; }
cudaError_t cudaMemGetInfo(size_t *f, size_t *t)
{
    *t = device_total();
    *f = *t - device_used;
    return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned) { *s = new lc_sim_stream; return cudaSuccess; }
cudaError_t cudaStreamDestroy(cudaStream_t s) { flush(); delete s; return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { flush(); return cudaSuccess; }
cudaError_t cudaDeviceSynchronize() { flush(); return cudaSuccess; }
cudaError_t cudaMalloc(void **p, size_t n)
{
    if (n > device_total() - device_used) { /* allocates nothing */
        *p = NULL;
        return last_error = cudaErrorMemoryAllocation;
    }
    *p = malloc(n ? n : 1); /* exact size: ASan sees overflows */
    if (!*p) { fprintf(stderr, "lc_sim: cudaMalloc of %zu bytes: host out of memory\n", n); abort(); }
    memset(*p, 0xff, n);
    live[(uintptr_t)*p] = n;
    device_used += n;
    return cudaSuccess;
}
/* pinned memory is poisoned too (0xff: NaN): a host read of an async copy's
 * destination before the copy ran shows */
cudaError_t cudaMallocHost(void **p, size_t n) { *p = malloc(n); memset(*p, 0xff, n); return cudaSuccess; }
cudaError_t cudaFree(void *p)
{
    flush(); /* cudaFree synchronises the device */
    if (!p) return cudaSuccess;
    auto it = live.find((uintptr_t)p);
    if (it == live.end()) {
        fprintf(stderr, "lc_sim: cudaFree of %p, which is not the start of a live device allocation\n", p);
        abort();
    }
    device_used -= it->second;
    live.erase(it);
    free(p);
    return cudaSuccess;
}
cudaError_t cudaFreeHost(void *p) { flush(); free(p); return cudaSuccess; }
/* A range [p, p + n) that must be entirely device memory or entirely host. */
static void need(const void *p, size_t n, bool dev, const char *what, const char *call)
{
    bool ok = dev ? is_device(p, n) : !is_device(p);
    if (!ok) {
        fprintf(stderr, "lc_sim: %s: %s %p (%zu bytes) is not %s memory\n", call, what, p, n,
                dev ? "device" : "host");
        abort();
    }
}
cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind k, cudaStream_t)
{
    static const char *names[] = {"cudaMemcpyHostToDevice", "cudaMemcpyDeviceToHost", "cudaMemcpyDeviceToDevice"};
    if ((unsigned)k > 2) { fprintf(stderr, "lc_sim: cudaMemcpy with unknown kind %d\n", (int)k); abort(); }
    need(d, n, k != cudaMemcpyDeviceToHost, "destination", names[k]);
    need(s, n, k != cudaMemcpyHostToDevice, "source", names[k]);
    if (k == cudaMemcpyHostToDevice) { /* pageable host source: staged at the call */
        std::vector<char> staged((const char *)s, (const char *)s + n);
        submit([d, staged]() { memcpy(d, staged.data(), staged.size()); });
    } else {
        submit([d, s, n]() { memmove(d, s, n); });
    }
    return cudaSuccess;
}
cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind k)
{
    cudaError_t e = cudaMemcpyAsync(d, s, n, k, NULL);
    flush(); /* synchronous: everything before it, then the copy */
    return e;
}
cudaError_t cudaMemsetAsync(void *d, int v, size_t n, cudaStream_t)
{
    need(d, n, true, "destination", "cudaMemsetAsync");
    submit([d, v, n]() { memset(d, v, n); });
    return cudaSuccess;
}
cudaError_t cudaGetLastError() { cudaError_t e = last_error; last_error = cudaSuccess; return e; }
const char *cudaGetErrorName(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    default: return "cudaErrorUnknown";
    }
}
const char *cudaGetErrorString(cudaError_t e) { return e == cudaErrorMemoryAllocation ? "out of memory" : "sim error"; }
cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int)
{
    *v = a == cudaDevAttrMaxSharedMemoryPerBlockOptin ? SIM_OPTIN : 0;
    return cudaSuccess;
}
cudaError_t lc_sim_func_set_attr(const void *k, cudaFuncAttribute a, int v)
{
    if (a == cudaFuncAttributeMaxDynamicSharedMemorySize) {
        if (v > SIM_OPTIN) return last_error = cudaErrorInvalidValue;
        smem_attr[k] = v;
    }
    return cudaSuccess;
}

/* ---- cuBLASLt: column-major reference ---- */
struct lc_sim_lt { int d; };
struct lc_sim_desc { cublasOperation_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N; };
struct lc_sim_layout { cudaDataType_t t; uint64_t rows, cols; int64_t ld; };
struct lc_sim_pref { size_t ws; };
cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) { *h = new lc_sim_lt; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) { delete h; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t c, cudaDataType_t s)
{
    if (c != CUBLAS_COMPUTE_32F || s != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    *d = new lc_sim_desc;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) { delete d; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a, const void *v, size_t n)
{
    if (n != sizeof(cublasOperation_t)) return CUBLAS_STATUS_INVALID_VALUE;
    if (a == CUBLASLT_MATMUL_DESC_TRANSA) memcpy(&d->ta, v, n);
    else if (a == CUBLASLT_MATMUL_DESC_TRANSB) memcpy(&d->tb, v, n);
    else return CUBLAS_STATUS_INVALID_VALUE;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType_t t, uint64_t rows, uint64_t cols, int64_t ld)
{
    if (ld < (int64_t)rows || rows == 0 || cols == 0) return CUBLAS_STATUS_INVALID_VALUE;
    *l = new lc_sim_layout{t, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) { delete l; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) { *p = new lc_sim_pref{0}; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) { delete p; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t, cublasLtMatmulPreferenceAttributes_t a, const void *, size_t n)
{
    if (a == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES ? n != 8 : n != 4) return CUBLAS_STATUS_INVALID_VALUE;
    return CUBLAS_STATUS_SUCCESS;
}
static bool shapes(cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c, uint64_t *m, uint64_t *n, uint64_t *k)
{
    *m = c->rows, *n = c->cols;
    uint64_t am = d->ta == CUBLAS_OP_N ? a->rows : a->cols, ak = d->ta == CUBLAS_OP_N ? a->cols : a->rows;
    uint64_t bk = d->tb == CUBLAS_OP_N ? b->rows : b->cols, bn = d->tb == CUBLAS_OP_N ? b->cols : b->rows;
    *k = ak;
    bool types = a->t == b->t && (c->t == CUDA_R_32F || (c->t == CUDA_R_16BF && a->t == CUDA_R_16BF));
    return am == *m && bn == *n && ak == bk && types;
}
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t dd, cublasLtMatmulPreference_t, int req, cublasLtMatmulHeuristicResult_t *res, int *found)
{
    uint64_t m, n, k;
    if (req < 1 || c != dd || !shapes(d, a, b, c, &m, &n, &k)) return CUBLAS_STATUS_INVALID_VALUE;
    /* three "algorithms" (data[1] = rank), all the same product, so the
     * backend's fallback to the next one can be exercised (LC_SIM_ALGO_FAIL) */
    int nr = req < 3 ? req : 3;
    memset(res, 0, sizeof *res * (size_t)nr);
    for (int i = 0; i < nr; i++) {
        res[i].algo.data[0] = 0x5151;
        res[i].algo.data[1] = (uint64_t)i;
    }
    *found = nr;
    return CUBLAS_STATUS_SUCCESS;
}
/* LC_SIM_ALGO_FAIL=1: cublasLtMatmul refuses the heuristic's first algorithm
 * (CUBLAS_STATUS_NOT_SUPPORTED, nothing runs); =all: every algorithm. */
static bool algo_refused(const cublasLtMatmulAlgo_t *algo)
{
    static const char *e = getenv("LC_SIM_ALGO_FAIL");
    if (!e || !*e)
        return false;
    if (!strcmp(e, "all"))
        return true;
    if (!strcmp(e, "1"))
        return algo->data[1] == 0;
    fprintf(stderr, "lc_sim: LC_SIM_ALGO_FAIL=%s is not 1 or all\n", e);
    abort();
}
static float ld_(const void *p, cudaDataType_t t, uint64_t i)
{
    if (t == CUDA_R_32F) return ((const float *)p)[i];
    return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
}
cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t d, const void *alpha, const void *A, cublasLtMatrixLayout_t la, const void *B, cublasLtMatrixLayout_t lb, const void *beta, const void *C, cublasLtMatrixLayout_t lc, void *D, cublasLtMatrixLayout_t ldd, const cublasLtMatmulAlgo_t *algo, void *, size_t, cudaStream_t)
{
    uint64_t m, n, k;
    if (!shapes(d, la, lb, lc, &m, &n, &k) || lc != ldd || C != D || algo->data[0] != 0x5151) return CUBLAS_STATUS_INVALID_VALUE;
    if (algo_refused(algo)) return CUBLAS_STATUS_NOT_SUPPORTED;
    const void *ptrs[] = {A, B, C, D};
    for (int i = 0; i < 4; i++)
        if (!is_device(ptrs[i])) {
            fprintf(stderr, "lc_sim: cublasLtMatmul: %c %p is not device memory\n", "ABCD"[i], ptrs[i]);
            abort();
        }
    /* alpha, beta (host scalars), the descriptor and the layouts are read at
     * the call; the product runs in stream order */
    float al = *(const float *)alpha, be = *(const float *)beta;
    lc_sim_desc dd = *d;
    lc_sim_layout a_ = *la, b_ = *lb, c_ = *lc;
    submit([=]() {
        for (uint64_t j = 0; j < n; j++)
            for (uint64_t i = 0; i < m; i++) {
                float s = 0;
                for (uint64_t p = 0; p < k; p++) {
                    float a = dd.ta == CUBLAS_OP_N ? ld_(A, a_.t, i + p * a_.ld) : ld_(A, a_.t, p + i * a_.ld);
                    float b = dd.tb == CUBLAS_OP_N ? ld_(B, b_.t, p + j * b_.ld) : ld_(B, b_.t, j + p * b_.ld);
                    s += a * b;
                }
                uint64_t ci = i + j * c_.ld;
                float v = al * s + (be != 0 ? be * ld_(C, c_.t, ci) : 0.0f);
                if (c_.t == CUDA_R_32F) ((float *)D)[ci] = v;
                else ((__nv_bfloat16 *)D)[ci] = __float2bfloat16_rn(v);
            }
    });
    return CUBLAS_STATUS_SUCCESS;
}

/* backend.c — the CPU and dry backends (see backend.h).
 *
 * The CPU backend's kernel entries are the kernels.h functions themselves,
 * which call into the variant chosen at start-up (cpu/dispatch.h), so a
 * variant switch (tests, LORAC_CPU_ISA) reaches every tape. Its memory is
 * plain host memory. The dry backend answers size queries as the backend
 * it plans for and does nothing else. */
#include "autograd/backend.h"

#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autograd/cpu/dispatch.h"
#include "autograd/cpu/gemm_bf16.h"

static void *cpu_alloc(lc_backend *be, size_t bytes, lc_error *err)
{
    (void)be;
    void *p = malloc(bytes ? bytes : 1);
    if (!p)
        lc_error_set(err, "out of host memory (%zu bytes)", bytes);
    return p;
}

static void cpu_free(lc_backend *be, void *p)
{
    (void)be;
    free(p);
}

static void cpu_copy(lc_backend *be, void *dst, const void *src, size_t bytes)
{
    (void)be;
    if (dst != src)
        memmove(dst, src, bytes);
}

/* Zero fills of at least this many bytes are split over the threads: the
 * tape zeroes each activation gradient before ops add into it (MiBs per
 * op), and one thread's memset left the others waiting. */
#define PAR_MEMSET_BYTES (1 << 20)

static void cpu_memset0(lc_backend *be, void *dst, size_t bytes)
{
    (void)be;
    if (bytes < PAR_MEMSET_BYTES || omp_in_parallel() || omp_get_max_threads() < 2) {
        memset(dst, 0, bytes);
        return;
    }
#pragma omp parallel
    {
        /* thread t's share, cut at 4 KiB multiples (pages, cache lines) */
        size_t nt = (size_t)omp_get_num_threads(), t = (size_t)omp_get_thread_num();
        size_t b0 = bytes * t / nt / 4096 * 4096;
        size_t b1 = t + 1 == nt ? bytes : bytes * (t + 1) / nt / 4096 * 4096;
        memset((char *)dst + b0, 0, b1 - b0);
    }
}

static int cpu_sync(lc_backend *be, lc_error *err)
{
    (void)be, (void)err;
    return 0;
}

static void cpu_mem_info(lc_backend *be, size_t *free_bytes, size_t *total_bytes)
{
    (void)be;
    long pages = sysconf(_SC_PHYS_PAGES), avail = sysconf(_SC_AVPHYS_PAGES);
    long page = sysconf(_SC_PAGESIZE);
    if (free_bytes)
        *free_bytes = avail > 0 && page > 0 ? (size_t)avail * (size_t)page : 0;
    if (total_bytes)
        *total_bytes = pages > 0 && page > 0 ? (size_t)pages * (size_t)page : 0;
}

static void no_destroy(lc_backend *be) { (void)be; }

static lc_backend cpu_backend = {
    .name = "cpu",
    .device = false,
    .act = LC_DTYPE_REAL,
    .gemm = LC_DTYPE_REAL,
    .f32 = &cpu_backend.k,
    .k = {
        .gemm = lc_k_gemm,
        .gemm_grad = lc_k_gemm_grad,
        .to_act = lc_k_to_act,
        .weight_scratch = lc_k_weight_scratch,
        .weight_matmul = lc_k_weight_matmul,
        .weight_matmul_grad = lc_k_weight_matmul_grad,
        .rmsnorm_fwd = lc_k_rmsnorm_fwd,
        .rmsnorm_bwd = lc_k_rmsnorm_bwd,
        .swiglu_fwd = lc_k_swiglu_fwd,
        .swiglu_bwd = lc_k_swiglu_bwd,
        .geglu_tanh_fwd = lc_k_geglu_tanh_fwd,
        .geglu_tanh_bwd = lc_k_geglu_tanh_bwd,
        .softcap = lc_k_softcap,
        .rope = lc_k_rope,
        .attention_scratch = lc_k_attention_scratch,
        .attention_fwd = lc_k_attention_fwd,
        .attention_bwd = lc_k_attention_bwd,
        .ce_chunk_rows = lc_k_ce_chunk_rows,
        .ce_scratch = lc_k_ce_scratch,
        .lm_head_ce = lc_k_lm_head_ce,
        .embedding = lc_k_embedding,
        .dropout = lc_k_dropout,
        .axpy = lc_k_axpy,
        .add = lc_k_add,
        .scale = lc_k_scale,
        .div = lc_k_div,
        .add_bias = lc_k_add_bias,
        .cols = lc_k_cols,
        .gather_rows = lc_k_gather_rows,
        .scatter_add_rows = lc_k_scatter_add_rows,
        .gather_add_rows = lc_k_gather_add_rows,
        .row_dots = lc_k_row_dots,
        .dora_norm_scratch = lc_k_dora_norm_scratch,
        .dora_norm = lc_k_dora_norm,
        .dora_combine = lc_k_dora_combine,
        .col_scale = lc_k_col_scale,
        .dora_mag_grad = lc_k_dora_mag_grad,
        .adamw = lc_k_adamw,
        .sum_squares = lc_k_sum_squares,
    },
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .copy = cpu_copy,
    .memset0 = cpu_memset0,
    .sync = cpu_sync,
    .mem_info = cpu_mem_info,
    .destroy = no_destroy,
};

lc_backend *lc_backend_cpu(void) { return &cpu_backend; }

/* The bf16 backend's entries that differ: the weight products are the same
 * on every variant; the fused head and attention go through the variant's
 * bf16 table. */
static size_t cpu_bf16_ce_scratch(int64_t N, int64_t C, int64_t V, const lc_weight *W)
{
    return lc_cpu_kernels_active_bf16()->ce_scratch(N, C, V, W);
}

static double cpu_bf16_lm_head_ce(const lc_real *x, int64_t N, int64_t C, const lc_weight *W,
                                  const int32_t *targets, lc_real grad_scale, lc_real *dx,
                                  int64_t *n_supervised, lc_real *scratch, double softcap)
{
    return lc_cpu_kernels_active_bf16()->lm_head_ce(x, N, C, W, targets, grad_scale, dx,
                                                    n_supervised, scratch, softcap);
}

static void cpu_bf16_attention_fwd(const lc_attn_shape *s, const lc_real *q, const lc_real *k,
                                   const lc_real *v, lc_real *out, lc_real *lse,
                                   lc_real *scratch)
{
    lc_cpu_kernels_active_bf16()->attention_fwd(s, q, k, v, out, lse, scratch);
}

static void cpu_bf16_attention_bwd(const lc_attn_shape *s, const lc_real *q, const lc_real *k,
                                   const lc_real *v, const lc_real *out, const lc_real *lse,
                                   const lc_real *dout, lc_real *dq, lc_real *dk, lc_real *dv,
                                   lc_real *scratch)
{
    lc_cpu_kernels_active_bf16()->attention_bwd(s, q, k, v, out, lse, dout, dq, dk, dv, scratch);
}

static lc_backend cpu_bf16_backend;

static void init_cpu_bf16(void)
{
    cpu_bf16_backend = cpu_backend;
    cpu_bf16_backend.gemm = LC_DTYPE_BF16;
    cpu_bf16_backend.f32 = &cpu_backend.k;
    lc_kernels *k = &cpu_bf16_backend.k;
    k->weight_scratch = lc_cpu_weight_scratch_bf16;
    k->weight_matmul = lc_cpu_weight_matmul_bf16;
    k->weight_matmul_grad = lc_cpu_weight_matmul_grad_bf16;
    k->ce_scratch = cpu_bf16_ce_scratch;
    k->lm_head_ce = cpu_bf16_lm_head_ce;
    k->attention_fwd = cpu_bf16_attention_fwd;
    k->attention_bwd = cpu_bf16_attention_bwd;
    cpu_bf16_backend.linear_lora = lc_cpu_linear_lora_bf16;
    cpu_bf16_backend.linear_lora_grad = lc_cpu_linear_lora_grad_bf16;
}

lc_backend *lc_backend_cpu_bf16(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, init_cpu_bf16);
    return &cpu_bf16_backend;
}

/* ---- dry ---- */

static void *dry_alloc(lc_backend *be, size_t bytes, lc_error *err)
{
    (void)be, (void)bytes, (void)err;
    LC_ASSERT(!"the dry backend allocates nothing: its arenas count");
    return NULL;
}

static void dry_free(lc_backend *be, void *p) { (void)be, (void)p; }

static void dry_copy(lc_backend *be, void *dst, const void *src, size_t bytes)
{
    (void)be, (void)dst, (void)src, (void)bytes;
}

static void dry_memset0(lc_backend *be, void *dst, size_t bytes) { (void)be, (void)dst, (void)bytes; }

/* One dry backend per planned backend name (at most a few exist). */
#define MAX_DRY 4
static lc_backend dry_backends[MAX_DRY];
static lc_kernels dry_f32[MAX_DRY];
static const lc_backend *dry_targets[MAX_DRY];
static pthread_mutex_t dry_lock = PTHREAD_MUTEX_INITIALIZER;

lc_backend *lc_backend_dry(const lc_backend *target)
{
    if (!target)
        target = lc_backend_cpu();
    pthread_mutex_lock(&dry_lock);
    int i = 0;
    while (i < MAX_DRY && dry_targets[i] && dry_targets[i] != target)
        i++;
    LC_ASSERT(i < MAX_DRY);
    if (!dry_targets[i]) {
        lc_backend *d = &dry_backends[i];
        *d = (lc_backend){
            .name = "dry",
            .device = target->device,
            .act = target->act,
            .gemm = target->gemm,
            .k = target->k,
            .alloc = dry_alloc,
            .free = dry_free,
            .upload = dry_copy,
            .download = dry_copy,
            .copy = dry_copy,
            .memset0 = dry_memset0,
            .sync = cpu_sync,
            .mem_info = target->mem_info,
            .destroy = no_destroy,
            .impl = target->impl,
        };
        lc_kernels_make_dry(&d->k);
        dry_f32[i] = *target->f32;
        lc_kernels_make_dry(&dry_f32[i]);
        d->f32 = &dry_f32[i];
        dry_targets[i] = target;
    }
    pthread_mutex_unlock(&dry_lock);
    return &dry_backends[i];
}

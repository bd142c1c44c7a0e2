/* dispatch.c — picks one compiled variant of the CPU kernels at start-up
 * and defines the kernels.h functions as calls into it (see dispatch.h).
 *
 * Which variants exist is decided by the build (CMakeLists.txt,
 * LORAC_CPU_VARIANTS); the list below names the same ones with what each
 * needs from the CPU. A variant is chosen once: by lc_cpu_isa_select(),
 * which the commands call first, or else by the first kernel call. */
#include "autograd/cpu/dispatch.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cpu_variant {
    const char *name;     /* what LORAC_CPU_ISA and the start-up lines say */
    const char *alias;    /* a second accepted spelling, or NULL */
    const char *desc;     /* the instructions it uses */
    const lc_kernels *kernels;
    const lc_kernels *kernels_bf16; /* the same with bf16 frozen-weight GEMMs */
    double (*fma_peak)(void);        /* lc_cpu_fma_peak_gflops in this variant's instructions */
    bool (*supported)(void);
} cpu_variant;

#if defined(__x86_64__)
/* x86-64 micro-architecture levels (the psABI's), tested feature by feature
 * (clang 14 knows no "x86-64-vN" in __builtin_cpu_supports). The OS support
 * of the AVX / AVX-512 register state is part of libgcc's answer. */
static bool has_v2(void)
{
    return __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("ssse3") &&
           __builtin_cpu_supports("popcnt");
}
static bool has_v3(void)
{
    return has_v2() && __builtin_cpu_supports("avx") && __builtin_cpu_supports("avx2") &&
           __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi") &&
           __builtin_cpu_supports("bmi2");
}
static bool has_v4(void)
{
    return has_v3() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512cd");
}
#endif

#if defined(LC_CPU_NATIVE) || !defined(__x86_64__)
static bool always(void) { return true; }
#endif

#if defined(LC_CPU_NATIVE)
extern const lc_kernels lc_cpu_kernels_native, lc_cpu_kernels_native_bf16;
double lc_cpu_fma_peak_gflops_native(void);
static const cpu_variant variants[] = {
    {"native", NULL, "built with -march=native for the build machine", &lc_cpu_kernels_native,
     &lc_cpu_kernels_native_bf16, lc_cpu_fma_peak_gflops_native, always},
};
#elif defined(__x86_64__)
extern const lc_kernels lc_cpu_kernels_v2, lc_cpu_kernels_v3, lc_cpu_kernels_v4;
extern const lc_kernels lc_cpu_kernels_v2_bf16, lc_cpu_kernels_v3_bf16, lc_cpu_kernels_v4_bf16;
double lc_cpu_fma_peak_gflops_v2(void), lc_cpu_fma_peak_gflops_v3(void),
    lc_cpu_fma_peak_gflops_v4(void);
static const cpu_variant variants[] = {
    {"x86-64-v2", "baseline", "SSE4.2", &lc_cpu_kernels_v2, &lc_cpu_kernels_v2_bf16,
     lc_cpu_fma_peak_gflops_v2, has_v2},
    {"x86-64-v3", "avx2", "AVX2 + FMA", &lc_cpu_kernels_v3, &lc_cpu_kernels_v3_bf16,
     lc_cpu_fma_peak_gflops_v3, has_v3},
    {"x86-64-v4", "avx512", "AVX-512", &lc_cpu_kernels_v4, &lc_cpu_kernels_v4_bf16,
     lc_cpu_fma_peak_gflops_v4, has_v4},
};
#else
extern const lc_kernels lc_cpu_kernels_generic, lc_cpu_kernels_generic_bf16;
double lc_cpu_fma_peak_gflops_generic(void);
static const cpu_variant variants[] = {
#if defined(__aarch64__)
    {"aarch64", "baseline", "ARMv8-A NEON", &lc_cpu_kernels_generic,
     &lc_cpu_kernels_generic_bf16, lc_cpu_fma_peak_gflops_generic, always},
#else
    {"generic", "baseline", "the compiler's default target", &lc_cpu_kernels_generic,
     &lc_cpu_kernels_generic_bf16, lc_cpu_fma_peak_gflops_generic, always},
#endif
};
#endif

#define N_VARIANTS ((int)(sizeof variants / sizeof variants[0]))

static const cpu_variant *active;
static bool forced;

/* The best variant the CPU supports: variants are listed from the lowest. */
static int best_index(void)
{
    __builtin_cpu_init();
    int best = 0;
    for (int i = 0; i < N_VARIANTS; i++)
        if (variants[i].supported())
            best = i;
    return best;
}

int lc_cpu_isa_select(lc_error *err)
{
    int best = best_index();
    const char *want = getenv(LC_CPU_ISA_ENV);
    active = &variants[best];
    forced = false;
    if (!want || !*want || strcmp(want, "auto") == 0)
        return 0;
    for (int i = 0; i < N_VARIANTS; i++) {
        const cpu_variant *v = &variants[i];
        if (strcmp(want, v->name) != 0 && !(v->alias && strcmp(want, v->alias) == 0))
            continue;
        if (!v->supported())
            return lc_error_set(err, "%s=%s: this CPU does not support %s (%s); it supports "
                                "up to %s", LC_CPU_ISA_ENV, want, v->name, v->desc,
                                variants[best].name);
        active = v;
        forced = i != best;
        return 0;
    }
    char shown[64];
    return lc_error_set(err, "%s=%s: unknown; use auto or one of: %s", LC_CPU_ISA_ENV,
                        lc_printable(want, shown, sizeof shown), lc_cpu_isa_names());
}

static void select_lazily(void)
{
    if (active)
        return; /* a command already chose */
    lc_error err = {{0}};
    if (lc_cpu_isa_select(&err))
        fprintf(stderr, "lorac: warning: %s (using %s)\n", err.msg, active->name);
}

const lc_kernels *lc_cpu_kernels_active(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, select_lazily);
    return active->kernels;
}

const lc_kernels *lc_cpu_kernels_active_bf16(void)
{
    lc_cpu_kernels_active();
    return active->kernels_bf16;
}

#define K() lc_cpu_kernels_active()

const char *lc_cpu_isa(void)
{
    K();
    return active->name;
}

const char *lc_cpu_isa_desc(void)
{
    K();
    return active->desc;
}

const char *lc_cpu_isa_best(void) { return variants[best_index()].name; }

double lc_cpu_fma_peak_gflops(void)
{
    K();
    return active->fma_peak();
}

bool lc_cpu_isa_forced(void)
{
    K();
    return forced;
}

const char *lc_cpu_isa_names(void)
{
    static char names[128];
    if (!names[0]) {
        size_t len = 0;
        for (int i = 0; i < N_VARIANTS; i++)
            len += (size_t)snprintf(names + len, sizeof names - len, "%s%s", i ? " " : "",
                                    variants[i].name);
    }
    return names;
}

int lc_cpu_x86_level(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    return has_v4() ? 4 : has_v3() ? 3 : has_v2() ? 2 : 1;
#else
    return 0;
#endif
}

int lc_cpu_check_baseline(lc_error *err)
{
    __builtin_cpu_init();
    if (!variants[0].supported())
        return lc_error_set(err, "this CPU lacks what this lorac build needs (%s: %s); build "
                            "with -DLORAC_NATIVE=ON on this machine", variants[0].name,
                            variants[0].desc);
    return 0;
}

/* ---- kernels.h: one call through the chosen table each ---- */

void lc_k_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K_,
               lc_real alpha, const lc_real *A, int64_t lda, const lc_real *B,
               int64_t ldb, lc_real beta, lc_real *C, int64_t ldc)
{
    K()->gemm(trans_a, trans_b, M, N, K_, alpha, A, lda, B, ldb, beta, C, ldc);
}

void *lc_grow(lc_grow_buf *b, size_t bytes)
{
    if (bytes > b->bytes) {
        free(b->p);
        b->p = malloc(bytes);
        b->bytes = b->p ? bytes : 0;
    }
    return b->p;
}

/* A LoRA B's gradient, C[out, R] += alpha · dyᵀ · xa, is a product of few
 * columns and many rows; its transpose Cᵀ[R, out] = xaᵀ · dy, of few rows,
 * ran 25-40% faster (oneDNN 2.6 inside the SmolLM-135M step, 2 AVX-512
 * cores: out 1536 57 -> 69, out 576 55 -> 79 GFLOP/s). Products with N at most
 * this and M at least 8·N are computed transposed into scratch and added
 * (as asked when no scratch can be had). */
#define GRAD_TRANSPOSE_MAX_N 64

/* On the CPU activations and parameters are both lc_real: a GEMM with beta 1. */
void lc_k_gemm_grad(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K_,
                    lc_real alpha, const lc_real *A, int64_t lda, const lc_real *B,
                    int64_t ldb, lc_real *C, int64_t ldc)
{
    static _Thread_local lc_grow_buf scratch; /* per thread: any thread may call this */
    lc_real *T = trans_a && !trans_b && N <= GRAD_TRANSPOSE_MAX_N && M >= 8 * N
                     ? lc_grow(&scratch, (size_t)(M * N) * sizeof(lc_real))
                     : NULL;
    if (!T) {
        K()->gemm(trans_a, trans_b, M, N, K_, alpha, A, lda, B, ldb, 1, C, ldc);
        return;
    }
    /* C = Aᵀ·B (A [K, M], B [K, N]), so Cᵀ[N, M] = Bᵀ·A */
    K()->gemm(true, false, N, M, K_, alpha, B, ldb, A, lda, 0, T, M);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++)
            C[i * ldc + j] += T[j * M + i];
}

void lc_k_to_act(int64_t n, const lc_real *src, lc_real *dst)
{
    if (n > 0 && dst != src)
        memmove(dst, src, (size_t)n * sizeof *dst);
}

size_t lc_k_weight_scratch(const lc_weight *W) { return K()->weight_scratch(W); }

void lc_k_weight_matmul(const lc_real *x, int64_t N, const lc_weight *W,
                        lc_real beta, lc_real *y, lc_real *scratch)
{
    K()->weight_matmul(x, N, W, beta, y, scratch);
}

void lc_k_weight_matmul_grad(const lc_real *dy, int64_t N, const lc_weight *W, lc_real beta,
                             lc_real *dx, lc_real *scratch)
{
    K()->weight_matmul_grad(dy, N, W, beta, dx, scratch);
}

void lc_k_rmsnorm_fwd(const lc_real *x, const lc_real *w, int64_t N, int64_t C,
                      double eps, lc_real *y, lc_real *rstd)
{
    K()->rmsnorm_fwd(x, w, N, C, eps, y, rstd);
}

void lc_k_rmsnorm_bwd(const lc_real *x, const lc_real *w, const lc_real *rstd,
                      const lc_real *dy, int64_t N, int64_t C, lc_real *dx)
{
    K()->rmsnorm_bwd(x, w, rstd, dy, N, C, dx);
}

void lc_k_swiglu_fwd(const lc_real *g, const lc_real *u, int64_t n, lc_real *y)
{
    K()->swiglu_fwd(g, u, n, y);
}

void lc_k_swiglu_bwd(const lc_real *g, const lc_real *u, const lc_real *dy,
                     int64_t n, lc_real *dg, lc_real *du, lc_real *y)
{
    K()->swiglu_bwd(g, u, dy, n, dg, du, y);
}

void lc_k_geglu_tanh_fwd(const lc_real *g, const lc_real *u, int64_t n, lc_real *y)
{
    K()->geglu_tanh_fwd(g, u, n, y);
}

void lc_k_geglu_tanh_bwd(const lc_real *g, const lc_real *u, const lc_real *dy,
                         int64_t n, lc_real *dg, lc_real *du, lc_real *y)
{
    K()->geglu_tanh_bwd(g, u, dy, n, dg, du, y);
}

void lc_k_softcap(lc_real *x, int64_t n, double cap) { K()->softcap(x, n, cap); }

void lc_k_rope(const lc_real *src, lc_real *dst, int64_t N, int heads, int D,
               const int32_t *pos, const lc_real *cos_sin, bool inverse,
               bool accumulate)
{
    K()->rope(src, dst, N, heads, D, pos, cos_sin, inverse, accumulate);
}

size_t lc_k_attention_scratch(const lc_attn_shape *s) { return K()->attention_scratch(s); }

void lc_k_attention_fwd(const lc_attn_shape *s, const lc_real *q, const lc_real *k,
                        const lc_real *v, lc_real *out, lc_real *lse, lc_real *scratch)
{
    K()->attention_fwd(s, q, k, v, out, lse, scratch);
}

void lc_k_attention_bwd(const lc_attn_shape *s, const lc_real *q, const lc_real *k,
                        const lc_real *v, const lc_real *out, const lc_real *lse,
                        const lc_real *dout, lc_real *dq, lc_real *dk, lc_real *dv,
                        lc_real *scratch)
{
    K()->attention_bwd(s, q, k, v, out, lse, dout, dq, dk, dv, scratch);
}

int64_t lc_k_ce_chunk_rows(int64_t V) { return K()->ce_chunk_rows(V); }

size_t lc_k_ce_scratch(int64_t N, int64_t C, int64_t V, const lc_weight *W)
{
    return K()->ce_scratch(N, C, V, W);
}

double lc_k_lm_head_ce(const lc_real *x, int64_t N, int64_t C, const lc_weight *W,
                       const int32_t *targets, lc_real grad_scale, lc_real *dx,
                       int64_t *n_supervised, lc_real *scratch, double softcap)
{
    return K()->lm_head_ce(x, N, C, W, targets, grad_scale, dx, n_supervised, scratch, softcap);
}

void lc_k_embedding(const lc_weight *E, const int32_t *ids, int64_t N, lc_real *x)
{
    K()->embedding(E, ids, N, x);
}

void lc_k_dropout(const lc_real *src, lc_real *dst, int64_t n, double p,
                  uint64_t seed, bool accumulate)
{
    K()->dropout(src, dst, n, p, seed, accumulate);
}

void lc_k_axpy(int64_t n, lc_real a, const lc_real *x, lc_real *y)
{
    K()->axpy(n, a, x, y);
}

void lc_k_add(int64_t n, const lc_real *a, const lc_real *b, lc_real *y) { K()->add(n, a, b, y); }

void lc_k_scale(int64_t n, lc_real s, const lc_real *x, lc_real *y) { K()->scale(n, s, x, y); }

void lc_k_div(int64_t n, const lc_real *a, const lc_real *b, lc_real *y) { K()->div(n, a, b, y); }

void lc_k_add_bias(int64_t N, int64_t O, const lc_real *bias, lc_real *y)
{
    K()->add_bias(N, O, bias, y);
}

void lc_k_cols(lc_real *wide, int64_t N, int64_t ld, int64_t c0, int64_t w, lc_real *part,
               bool add)
{
    K()->cols(wide, N, ld, c0, w, part, add);
}

void lc_k_gather_rows(const lc_real *x, const int32_t *idx, int64_t n, int64_t C, lc_real *out)
{
    K()->gather_rows(x, idx, n, C, out);
}

void lc_k_scatter_add_rows(const lc_real *src, const int32_t *idx, const lc_real *w,
                           const int32_t *slot, int64_t n, int64_t C, lc_real *dst)
{
    K()->scatter_add_rows(src, idx, w, slot, n, C, dst);
}

void lc_k_gather_add_rows(const lc_real *src, const int32_t *idx, const lc_real *w,
                          const int32_t *slot, int64_t n, int64_t C, lc_real *dst)
{
    K()->gather_add_rows(src, idx, w, slot, n, C, dst);
}

void lc_k_row_dots(const lc_real *a, const int32_t *idx, const lc_real *b, const int32_t *slot,
                   int64_t n, int64_t C, lc_real *dw)
{
    K()->row_dots(a, idx, b, slot, n, C, dw);
}

size_t lc_k_dora_norm_scratch(const lc_weight *W) { return K()->dora_norm_scratch(W); }

void lc_k_dora_norm(const lc_weight *W, const lc_real *A, const lc_real *B, int64_t R,
                    lc_real s, lc_real *c, lc_real *scratch)
{
    K()->dora_norm(W, A, B, R, s, c, scratch);
}

void lc_k_dora_combine(int64_t N, int64_t O, const lc_real *g, const lc_real *u,
                       const lc_real *v, lc_real *y)
{
    K()->dora_combine(N, O, g, u, v, y);
}

void lc_k_col_scale(int64_t N, int64_t O, const lc_real *dy, const lc_real *g,
                    lc_real shift, lc_real *out)
{
    K()->col_scale(N, O, dy, g, shift, out);
}

void lc_k_dora_mag_grad(int64_t N, int64_t O, const lc_real *dy, const lc_real *u,
                        const lc_real *c, lc_real *dm)
{
    K()->dora_mag_grad(N, O, dy, u, c, dm);
}

void lc_k_adamw(int64_t n, lc_real *p, const lc_real *g, lc_real *m, lc_real *v,
                const lc_adamw_hparams *hp, int64_t step, double lr)
{
    K()->adamw(n, p, g, m, v, hp, step, lr);
}

double lc_k_sum_squares(int64_t n, const lc_real *g) { return K()->sum_squares(n, g); }

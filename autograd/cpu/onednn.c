/* onednn.c — oneDNN's matmul, opened on first use (see onednn.h).
 *
 * The library's C API is reached through a table of function pointers
 * filled by dlsym (the declarations come from its headers, so every
 * signature is the library's own). Primitives are cached by problem
 * (shape, leading dimensions, transposes, dtype, accumulate); memory
 * objects are created once per primitive and pointed at the caller's
 * buffers at each call. */
#include "autograd/cpu/onednn.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/cpu/dispatch.h"
#include "autograd/real.h"

#if !LC_REAL_IS_F64
#include <oneapi/dnnl/dnnl.h>

#define DNNL_FNS(X)                                                                        \
    X(dnnl_version) X(dnnl_get_effective_cpu_isa) X(dnnl_engine_create)                     \
    X(dnnl_stream_create) X(dnnl_stream_wait) X(dnnl_memory_desc_init_by_strides)          \
    X(dnnl_matmul_desc_init) X(dnnl_primitive_attr_create) X(dnnl_primitive_attr_destroy) \
    X(dnnl_post_ops_create) X(dnnl_post_ops_append_sum) X(dnnl_post_ops_destroy)            \
    X(dnnl_primitive_attr_set_post_ops) X(dnnl_primitive_attr_set_output_scales)           \
    X(dnnl_primitive_desc_create)                                                           \
    X(dnnl_primitive_desc_query) X(dnnl_primitive_desc_destroy) X(dnnl_primitive_create)  \
    X(dnnl_primitive_destroy) X(dnnl_memory_create) X(dnnl_memory_destroy)                   \
    X(dnnl_memory_set_data_handle) X(dnnl_primitive_execute) X(dnnl_sgemm)

/* The BLAS-like GEMM on bf16 inputs: exported by libdnnl 2.x, declared only
 * in its own tests (the signature is theirs). Looked up on its own: a
 * library without it still runs everything else. */
dnnl_status_t dnnl_gemm_bf16bf16f32(char transa, char transb, dnnl_dim_t M, dnnl_dim_t N,
                                    dnnl_dim_t K, float alpha, const uint16_t *A, dnnl_dim_t lda,
                                    const uint16_t *B, dnnl_dim_t ldb, float beta, float *C,
                                    dnnl_dim_t ldc);

static struct {
#define DNNL_FIELD(f) __typeof__(f) *f;
    DNNL_FNS(DNNL_FIELD)
#undef DNNL_FIELD
    __typeof__(dnnl_gemm_bf16bf16f32) *gemm_bf16; /* NULL: not exported */
    void *handle;
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    char status[256]; /* its version, or why it is not usable */
} dn;

static void dnnl_open(void)
{
    dn.handle = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!dn.handle) {
        snprintf(dn.status, sizeof dn.status, "oneDNN is not installed (libdnnl.so.2: %s; "
                 "Debian: apt-get install libdnnl2)", dlerror());
        return;
    }
#define DNNL_SYM(f)                                                                       \
    if (!(dn.f = (__typeof__(f) *)dlsym(dn.handle, #f))) {                                \
        snprintf(dn.status, sizeof dn.status, "libdnnl.so.2 lacks %s (need oneDNN 2.x)", #f); \
        dlclose(dn.handle);                                                               \
        dn.handle = NULL;                                                                 \
        return;                                                                           \
    }
    DNNL_FNS(DNNL_SYM)
#undef DNNL_SYM
    dn.gemm_bf16 = (__typeof__(dnnl_gemm_bf16bf16f32) *)dlsym(dn.handle, "dnnl_gemm_bf16bf16f32");
    if (dn.dnnl_engine_create(&dn.engine, dnnl_cpu, 0) != dnnl_success ||
        dn.dnnl_stream_create(&dn.stream, dn.engine, dnnl_stream_default_flags) !=
            dnnl_success) {
        snprintf(dn.status, sizeof dn.status, "oneDNN could not create its CPU engine");
        dn.handle = NULL;
        return;
    }
    const dnnl_version_t *v = dn.dnnl_version();
    snprintf(dn.status, sizeof dn.status, "oneDNN %d.%d.%d", v->major, v->minor, v->patch);
}

bool lc_onednn_available(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, dnnl_open);
    return dn.handle != NULL;
}

const char *lc_onednn_status(void)
{
    lc_onednn_available();
    return dn.status;
}

const char *lc_onednn_bf16_units(void)
{
    if (!lc_onednn_available())
        return NULL;
    unsigned isa = (unsigned)dn.dnnl_get_effective_cpu_isa();
    if ((isa & dnnl_cpu_isa_avx512_core_amx) == dnnl_cpu_isa_avx512_core_amx)
        return "AMX";
    if ((isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16)
        return "AVX512-BF16";
    return NULL;
}

/* ---- the primitive cache ---- */

typedef struct mm_key {
    int64_t M, N, K, lda, ldb, ldc;
    int64_t batch, sa, sb, sc; /* batch 1: a plain product; else its element strides */
    float alpha;
    lc_dtype dtype;
    bool trans_a, trans_b, accumulate;
} mm_key;

typedef struct mm_entry {
    mm_key key;
    dnnl_primitive_t prim;
    dnnl_memory_t src, wei, dst;
    char impl[64];
} mm_entry;

#define MM_CACHE 128
static mm_entry mm_cache[MM_CACHE];
static int mm_count, mm_next;
static char last_impl[2][64]; /* [bf16?]: the last f32 and bf16 implementations */
static pthread_mutex_t mm_lock = PTHREAD_MUTEX_INITIALIZER;

static bool key_eq(const mm_key *a, const mm_key *b)
{
    return a->M == b->M && a->N == b->N && a->K == b->K && a->lda == b->lda &&
           a->ldb == b->ldb && a->ldc == b->ldc && a->batch == b->batch && a->sa == b->sa &&
           a->sb == b->sb && a->sc == b->sc && a->alpha == b->alpha && a->dtype == b->dtype &&
           a->trans_a == b->trans_a && a->trans_b == b->trans_b &&
           a->accumulate == b->accumulate;
}

static void mm_release(mm_entry *e)
{
    if (e->prim)
        dn.dnnl_primitive_destroy(e->prim);
    dnnl_memory_t mems[3] = {e->src, e->wei, e->dst};
    for (int i = 0; i < 3; i++)
        if (mems[i])
            dn.dnnl_memory_destroy(mems[i]);
    memset(e, 0, sizeof *e);
}

/* The memory descriptors of problem k with M rows: op(A)[M,K], op(B)[K,N],
 * C[M,N] (a transposed operand is the same memory read with swapped
 * strides), each with a leading batch dimension when k->batch > 1. M may be
 * DNNL_RUNTIME_DIM_VAL: one primitive for every M of a family, whose src
 * and dst memories are made per call with the real M. */
static bool problem_mds(const mm_key *k, int64_t M, dnnl_memory_desc_t *src_md,
                        dnnl_memory_desc_t *wei_md, dnnl_memory_desc_t *dst_md)
{
    dnnl_data_type_t in = k->dtype == LC_DTYPE_BF16 ? dnnl_bf16 : dnnl_f32;
    int b = k->batch > 1, nd = 2 + b;
    dnnl_dims_t a_dims = {k->batch, M, k->K}, a_str = {k->sa, k->trans_a ? 1 : k->lda,
                                                       k->trans_a ? k->lda : 1};
    dnnl_dims_t b_dims = {k->batch, k->K, k->N}, b_str = {k->sb, k->trans_b ? 1 : k->ldb,
                                                          k->trans_b ? k->ldb : 1};
    dnnl_dims_t c_dims = {k->batch, M, k->N}, c_str = {k->sc, k->ldc, 1};
    return dn.dnnl_memory_desc_init_by_strides(src_md, nd, a_dims + 1 - b, in, a_str + 1 - b) ==
               dnnl_success &&
           dn.dnnl_memory_desc_init_by_strides(wei_md, nd, b_dims + 1 - b, in, b_str + 1 - b) ==
               dnnl_success &&
           dn.dnnl_memory_desc_init_by_strides(dst_md, nd, c_dims + 1 - b, dnnl_f32,
                                               c_str + 1 - b) == dnnl_success;
}

/* A fresh primitive for k in e; false when oneDNN has none. */
static bool mm_create(mm_entry *e, const mm_key *k)
{
    dnnl_memory_desc_t src_md, wei_md, dst_md;
    dnnl_matmul_desc_t desc;
    if (!problem_mds(k, k->M, &src_md, &wei_md, &dst_md) ||
        dn.dnnl_matmul_desc_init(&desc, &src_md, &wei_md, NULL, &dst_md))
        return false;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    dnnl_primitive_desc_t pd = NULL;
    bool ok = dn.dnnl_primitive_attr_create(&attr) == dnnl_success;
    if (ok && k->alpha != 1) /* C = alpha·op(A)·op(B) (+ C): the scale comes before the sum */
        ok = dn.dnnl_primitive_attr_set_output_scales(attr, 1, 0, &k->alpha) == dnnl_success;
    if (ok && k->accumulate)
        ok = dn.dnnl_post_ops_create(&ops) == dnnl_success &&
             dn.dnnl_post_ops_append_sum(ops, 1.0f) == dnnl_success &&
             dn.dnnl_primitive_attr_set_post_ops(attr, ops) == dnnl_success;
    ok = ok && dn.dnnl_primitive_desc_create(&pd, &desc, attr, dn.engine, NULL) == dnnl_success;
    if (ops)
        dn.dnnl_post_ops_destroy(ops);
    if (attr)
        dn.dnnl_primitive_attr_destroy(attr);
    if (!ok)
        return false;
    const char *impl = NULL;
    dn.dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    snprintf(e->impl, sizeof e->impl, "%s", impl ? impl : "?");
    bool runtime_m = k->M == DNNL_RUNTIME_DIM_VAL;
    ok = dn.dnnl_primitive_create(&e->prim, pd) == dnnl_success &&
         dn.dnnl_memory_create(&e->wei, &wei_md, dn.engine, DNNL_MEMORY_NONE) == dnnl_success &&
         (runtime_m ||
          (dn.dnnl_memory_create(&e->src, &src_md, dn.engine, DNNL_MEMORY_NONE) == dnnl_success &&
           dn.dnnl_memory_create(&e->dst, &dst_md, dn.engine, DNNL_MEMORY_NONE) == dnnl_success));
    dn.dnnl_primitive_desc_destroy(pd);
    e->key = *k;
    return ok;
}

/* The cached primitive for k, created on a miss — unless
 * LC_ONEDNN_MAX_M_VARIANTS entries differ from k only in M: then NULL with
 * optional, else the family's one primitive of runtime M. Under mm_lock. */
static mm_entry *mm_get(const mm_key *k, bool optional)
{
    int m_variants = 0;
    for (int i = 0; i < mm_count; i++) {
        if (key_eq(&mm_cache[i].key, k))
            return &mm_cache[i];
        mm_key same_m = mm_cache[i].key;
        same_m.M = k->M;
        m_variants += key_eq(&same_m, k);
    }
    if (m_variants >= LC_ONEDNN_MAX_M_VARIANTS && k->M != DNNL_RUNTIME_DIM_VAL) {
        if (optional)
            return NULL;
        mm_key any_m = *k;
        any_m.M = DNNL_RUNTIME_DIM_VAL;
        return mm_get(&any_m, false);
    }
    mm_entry *e = &mm_cache[mm_next];
    mm_release(e);
    if (!mm_create(e, k)) {
        mm_release(e);
        return NULL;
    }
    mm_next = (mm_next + 1) % MM_CACHE;
    if (mm_count < MM_CACHE)
        mm_count++;
    return e;
}

bool lc_onednn_matmul(lc_dtype dtype, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                      float alpha, const void *A, int64_t lda, const void *B, int64_t ldb,
                      bool accumulate, float *C, int64_t ldc, bool optional)
{
    lc_onednn_batch one = {1, 0, 0, 0};
    return lc_onednn_matmul_batch(dtype, &one, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb,
                                  accumulate, C, ldc, optional);
}

bool lc_onednn_matmul_batch(lc_dtype dtype, const lc_onednn_batch *bt, bool trans_a,
                            bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                            const void *A, int64_t lda, const void *B, int64_t ldb,
                            bool accumulate, float *C, int64_t ldc, bool optional)
{
    if (!lc_onednn_available())
        return false;
    mm_key key = {M, N, K, lda, ldb, ldc, bt->count, bt->sa, bt->sb, bt->sc,
                  alpha, dtype, trans_a, trans_b, accumulate};
    pthread_mutex_lock(&mm_lock);
    mm_entry *e = mm_get(&key, optional);
    bool ok = e != NULL;
    dnnl_memory_t src = e ? e->src : NULL, dst = e ? e->dst : NULL;
    if (ok && !src) { /* runtime M: this call's memories */
        dnnl_memory_desc_t src_md, wei_md, dst_md;
        ok = problem_mds(&key, M, &src_md, &wei_md, &dst_md) &&
             dn.dnnl_memory_create(&src, &src_md, dn.engine, DNNL_MEMORY_NONE) == dnnl_success &&
             dn.dnnl_memory_create(&dst, &dst_md, dn.engine, DNNL_MEMORY_NONE) == dnnl_success;
    }
    if (ok) {
        dn.dnnl_memory_set_data_handle(src, (void *)A);
        dn.dnnl_memory_set_data_handle(e->wei, (void *)B);
        dn.dnnl_memory_set_data_handle(dst, C);
        dnnl_exec_arg_t args[3] = {
            {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, e->wei}, {DNNL_ARG_DST, dst}};
        ok = dn.dnnl_primitive_execute(e->prim, dn.stream, 3, args) == dnnl_success &&
             dn.dnnl_stream_wait(dn.stream) == dnnl_success;
        if (ok)
            memcpy(last_impl[dtype == LC_DTYPE_BF16], e->impl, sizeof last_impl[0]);
    }
    if (e && !e->src) {
        if (src)
            dn.dnnl_memory_destroy(src);
        if (dst)
            dn.dnnl_memory_destroy(dst);
    }
    pthread_mutex_unlock(&mm_lock);
    return ok;
}

bool lc_onednn_gemm(lc_dtype dtype, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                    float alpha, const void *A, int64_t lda, const void *B, int64_t ldb, float beta,
                    float *C, int64_t ldc)
{
    if (!lc_onednn_available() || (dtype == LC_DTYPE_BF16 && !dn.gemm_bf16))
        return false;
    char ta = trans_a ? 'T' : 'N', tb = trans_b ? 'T' : 'N';
    dnnl_status_t st = dtype == LC_DTYPE_BF16
                           ? dn.gemm_bf16(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
                           : dn.dnnl_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return st == dnnl_success;
}

#else /* the gradient-check build: no oneDNN */

static char last_impl[2][64]; /* [bf16?]: the last f32 and bf16 implementations */

bool lc_onednn_available(void) { return false; }
const char *lc_onednn_status(void) { return "the gradient-check build has no oneDNN"; }
const char *lc_onednn_bf16_units(void) { return NULL; }
bool lc_onednn_matmul(lc_dtype dtype, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                      float alpha, const void *A, int64_t lda, const void *B, int64_t ldb,
                      bool accumulate, float *C, int64_t ldc, bool optional)
{
    (void)dtype, (void)trans_a, (void)trans_b, (void)M, (void)N, (void)K, (void)alpha, (void)A;
    (void)lda, (void)B, (void)ldb, (void)accumulate, (void)C, (void)ldc, (void)optional;
    return false;
}

bool lc_onednn_matmul_batch(lc_dtype dtype, const lc_onednn_batch *bt, bool trans_a,
                            bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                            const void *A, int64_t lda, const void *B, int64_t ldb,
                            bool accumulate, float *C, int64_t ldc, bool optional)
{
    (void)bt;
    return lc_onednn_matmul(dtype, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, accumulate,
                            C, ldc, optional);
}

bool lc_onednn_gemm(lc_dtype dtype, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                    float alpha, const void *A, int64_t lda, const void *B, int64_t ldb, float beta,
                    float *C, int64_t ldc)
{
    (void)dtype, (void)trans_a, (void)trans_b, (void)M, (void)N, (void)K, (void)alpha, (void)A;
    (void)lda, (void)B, (void)ldb, (void)beta, (void)C, (void)ldc;
    return false;
}
#endif

const char *lc_onednn_last_impl(lc_dtype dtype) { return last_impl[dtype == LC_DTYPE_BF16]; }

/* ---- the library of the f32 GEMMs ---- */

static int gemm_choice = -1; /* -1: not chosen; 0 OpenBLAS; 1 oneDNN */

static int select_from(const char *want, lc_error *err)
{
    bool onednn = strcmp(want, "onednn") == 0;
    if (!onednn && strcmp(want, "auto") != 0 && strcmp(want, "openblas") != 0) {
        char shown[64];
        return lc_error_set(err, "%s=%s: unknown; use auto, onednn or openblas", LC_CPU_GEMM_ENV,
                            lc_printable(want, shown, sizeof shown));
    }
    if (onednn && !lc_onednn_available())
        return lc_error_set(err, "%s=onednn: %s", LC_CPU_GEMM_ENV, lc_onednn_status());
    /* auto and onednn alike: OpenBLAS while LORAC_CPU_ISA forces a level */
    gemm_choice = strcmp(want, "openblas") != 0 && !lc_cpu_isa_forced() && lc_onednn_available();
    return 0;
}

int lc_cpu_gemm_select(lc_error *err)
{
    const char *want = getenv(LC_CPU_GEMM_ENV);
    return select_from(want && *want ? want : "auto", err);
}

bool lc_cpu_gemm_onednn(void)
{
    if (gemm_choice < 0) {
        lc_error err = {{0}};
        if (lc_cpu_gemm_select(&err)) {
            fprintf(stderr, "lorac: warning: %s (using auto)\n", err.msg);
            select_from("auto", &err);
        }
    }
    return gemm_choice == 1;
}

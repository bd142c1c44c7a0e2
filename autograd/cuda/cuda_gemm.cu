/* cuda_gemm.cu — every matrix product of the backend, through cuBLASLt, and
 * the frozen-weight products that convert / dequantize (NF4) W a tile of
 * rows at a time into scratch, like the CPU's lc_k_weight_matmul.
 *
 * Row-major C = op(A)·op(B) is computed as the column-major product
 * Cᵀ = op(B)ᵀ·op(A)ᵀ, so cuBLAS's A is our B and its B is our A; no data
 * moves. A plan (matmul desc + three layouts + the heuristic's algo) costs
 * a heuristic query to build, so it is cached per (shape, ld's, transposes,
 * dtypes, pointer alignment, beta ≠ 0), least-recently-used out of
 * LC_GEMM_CACHE (128: a QLoRA step uses ~35–40 shapes, repeated every layer).
 * The plan keeps up to LC_GEMM_ALGOS of the heuristic's results: when
 * cublasLtMatmul refuses the current one, the next are tried in order and
 * the one that runs becomes the plan's (lc_cuda_gemm_fallbacks counts them). */
#include <string.h>

#include "autograd/cuda/cuda_common.cuh"

#define WEIGHT_TILE_ELEMS ((int64_t)1 << 24) /* 32 MiB of bf16 per tile */

static int ptr_align(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    int al = 16;
    while (al > 1 && (a % (uintptr_t)al))
        al >>= 1;
    return al;
}

static cudaDataType_t cuda_type(lc_dtype dt)
{
    return dt == LC_DTYPE_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

static void plan_destroy(lc_gemm_plan *p)
{
    if (!p->valid)
        return;
    if (p->la)
        cublasLtMatrixLayoutDestroy(p->la);
    if (p->lb)
        cublasLtMatrixLayoutDestroy(p->lb);
    if (p->lc)
        cublasLtMatrixLayoutDestroy(p->lc);
    if (p->desc)
        cublasLtMatmulDescDestroy(p->desc);
    memset(p, 0, sizeof *p);
}

static int plan_build(lc_cuda_ctx *c, lc_gemm_plan *p, const lc_gemm_key *k)
{
    lc_error *err = &c->err;
    memset(p, 0, sizeof *p);
    p->key = *k;
    cublasOperation_t opa = k->tb ? CUBLAS_OP_T : CUBLAS_OP_N; /* cuBLAS A = our B */
    cublasOperation_t opb = k->ta ? CUBLAS_OP_T : CUBLAS_OP_N; /* cuBLAS B = our A */
    cudaDataType_t tin = cuda_type((lc_dtype)k->in_dt);
    cudaDataType_t tout = cuda_type((lc_dtype)k->out_dt);
    LC_CUBLAS(err, cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    /* From here on a failure must free what was made: mark valid early. */
    p->valid = true;
    int rc = -1;
    cublasLtMatmulPreference_t pref = NULL;
    do {
#define PB(call)                                                                            \
    {                                                                                       \
        cublasStatus_t s_ = (call);                                                         \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                  \
            lc_cuda_fail(err, __FILE__, __LINE__, #call, lc_cublas_status_name(s_), "cuBLAS"); \
            break;                                                                          \
        }                                                                                   \
    }
        PB(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
        PB(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
        /* cuBLAS A: m×k = N×K after op; stored K×N when transposed. */
        uint64_t ar = opa == CUBLAS_OP_N ? (uint64_t)k->N : (uint64_t)k->K;
        uint64_t ac = opa == CUBLAS_OP_N ? (uint64_t)k->K : (uint64_t)k->N;
        uint64_t br = opb == CUBLAS_OP_N ? (uint64_t)k->K : (uint64_t)k->M;
        uint64_t bc = opb == CUBLAS_OP_N ? (uint64_t)k->M : (uint64_t)k->K;
        PB(cublasLtMatrixLayoutCreate(&p->la, tin, ar, ac, k->ldb));
        PB(cublasLtMatrixLayoutCreate(&p->lb, tin, br, bc, k->lda));
        PB(cublasLtMatrixLayoutCreate(&p->lc, tout, (uint64_t)k->N, (uint64_t)k->M, k->ldc));
        PB(cublasLtMatmulPreferenceCreate(&pref));
        size_t ws = c->workspace_bytes;
        uint32_t aa = (uint32_t)k->align_b, ab = (uint32_t)k->align_a, acc = (uint32_t)k->align_c;
        PB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                &ws, sizeof ws));
        PB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                &aa, sizeof aa));
        PB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                &ab, sizeof ab));
        PB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                &acc, sizeof acc));
        PB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                &acc, sizeof acc));
        cublasLtMatmulHeuristicResult_t res[LC_GEMM_ALGOS];
        int found = 0;
        PB(cublasLtMatmulAlgoGetHeuristic(c->lt, p->desc, p->la, p->lb, p->lc, p->lc, pref,
                                          LC_GEMM_ALGOS, res, &found));
#undef PB
        if (found < 1) {
            lc_cuda_failf(err, __FILE__, __LINE__,
                          "cuBLASLt has no algorithm for gemm M=%lld N=%lld K=%lld "
                          "lda=%lld ldb=%lld ldc=%lld trans=%d%d dtypes %d→%d",
                          (long long)k->M, (long long)k->N, (long long)k->K, (long long)k->lda,
                          (long long)k->ldb, (long long)k->ldc, k->ta, k->tb, k->in_dt,
                          k->out_dt);
            break;
        }
        p->n_algo = found < LC_GEMM_ALGOS ? found : LC_GEMM_ALGOS;
        for (int i = 0; i < p->n_algo; i++)
            p->algo[i] = res[i].algo;
        rc = 0;
    } while (0);
    if (pref)
        cublasLtMatmulPreferenceDestroy(pref);
    if (rc) {
        plan_destroy(p); /* frees what was made (the rest is NULL) */
        return -1;
    }
    return 0;
}

template <typename T>
__global__ void scale_matrix_k(T *C, int64_t M, int64_t N, int64_t ldc, float beta)
{
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < M * N;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = e / N, j = e % N;
        T *p = C + i * ldc + j;
        *p = lc_st<T>(beta == 0.0f ? 0.0f : beta * lc_ld(*p));
    }
}

extern "C" int lc_cuda_gemm(lc_cuda_ctx *c, bool trans_a, bool trans_b, int64_t M, int64_t N,
                            int64_t K, float alpha, const void *A, int64_t lda, const void *B,
                            int64_t ldb, float beta, void *C, int64_t ldc, lc_dtype in_dt,
                            lc_dtype out_dt)
{
    if (M <= 0 || N <= 0)
        return 0;
    bool ok = (in_dt == LC_DTYPE_BF16 && (out_dt == LC_DTYPE_BF16 || out_dt == LC_DTYPE_F32)) ||
              (in_dt == LC_DTYPE_F32 && out_dt == LC_DTYPE_F32);
    if (!ok)
        return LC_BAD(c, "gemm: unsupported dtypes %d → %d (BF16→BF16, BF16→F32, F32→F32)",
                      (int)in_dt, (int)out_dt);
    if (K <= 0) {
        LC_DISPATCH_ACT(c, out_dt, T, {
            scale_matrix_k<T><<<lc_grid(M * N, 256), 256, 0, c->stream>>>((T *)C, M, N, ldc, beta);
            LC_LAUNCHED(c, "scale_matrix_k");
        });
        return 0;
    }
    if (ldc < N || lda < (trans_a ? M : K) || ldb < (trans_b ? K : N))
        return LC_BAD(c, "gemm: leading dimension too small (M=%lld N=%lld K=%lld lda=%lld "
                         "ldb=%lld ldc=%lld)",
                      (long long)M, (long long)N, (long long)K, (long long)lda, (long long)ldb,
                      (long long)ldc);
    lc_gemm_key key;
    memset(&key, 0, sizeof key); /* padding too: keys are compared with memcmp */
    key.M = M;
    key.N = N;
    key.K = K;
    key.lda = lda;
    key.ldb = ldb;
    key.ldc = ldc;
    key.ta = trans_a;
    key.tb = trans_b;
    key.in_dt = in_dt;
    key.out_dt = out_dt;
    key.align_a = ptr_align(A);
    key.align_b = ptr_align(B);
    key.align_c = ptr_align(C);
    key.beta_nz = beta != 0.0f;
    lc_gemm_plan *plan = NULL, *victim = &c->plans[0];
    for (int i = 0; i < LC_GEMM_CACHE; i++) {
        lc_gemm_plan *p = &c->plans[i];
        if (p->valid && memcmp(&p->key, &key, sizeof key) == 0) {
            plan = p;
            break;
        }
        /* empty slots have last_use 0, so the least recently used wins */
        if (p->last_use < victim->last_use)
            victim = p;
    }
    if (plan) {
        c->gemm_hits++;
    } else {
        c->gemm_misses++;
        plan_destroy(victim);
        LC_TRY(plan_build(c, victim, &key));
        plan = victim;
    }
    plan->last_use = ++c->clock;
    /* the winner first; when cuBLASLt refuses it (a status, nothing launched),
     * the heuristic's next results in order, and the one that runs is kept */
    cublasStatus_t st = CUBLAS_STATUS_NOT_SUPPORTED;
    for (int t = 0; t < plan->n_algo; t++) {
        int a = (plan->cur + t) % plan->n_algo;
        st = cublasLtMatmul(c->lt, plan->desc, &alpha, B, plan->la, A, plan->lb, &beta, C,
                            plan->lc, C, plan->lc, &plan->algo[a], c->workspace,
                            c->workspace_bytes, c->stream);
        if (st == CUBLAS_STATUS_SUCCESS) {
            if (a != plan->cur)
                c->gemm_fallbacks++;
            plan->cur = a;
            break;
        }
    }
    if (st != CUBLAS_STATUS_SUCCESS)
        return lc_cuda_failf(&c->err, __FILE__, __LINE__,
                             "cublasLtMatmul: %s with each of the heuristic's %d algorithms "
                             "(gemm M=%lld N=%lld K=%lld)",
                             lc_cublas_status_name(st), plan->n_algo, (long long)M, (long long)N,
                             (long long)K);
    if (c->sync_each)
        LC_CU(&c->err, cudaStreamSynchronize(c->stream));
    return 0;
}

/* ---- frozen weights ---- */

int lc_cuda_check_weight(lc_cuda_ctx *c, const lc_weight *W)
{
    if (W->rows < 0 || W->cols < 0)
        return LC_BAD(c, "weight: negative shape [%lld, %lld]", (long long)W->rows,
                      (long long)W->cols);
    if (W->ggml)
        return LC_BAD(c, "weight [%lld, %lld] is a GGUF (ggml) tensor: dequantize it before "
                         "upload (the CUDA kernels take F32, BF16, F16 or NF4)",
                      (long long)W->rows, (long long)W->cols);
    if (W->nf4) {
        const lc_nf4 *q = W->nf4;
        if (!q->codes || q->blocksize <= 0)
            return LC_BAD(c, "NF4 weight [%lld, %lld]: missing codes or blocksize",
                          (long long)W->rows, (long long)W->cols);
        if (!q->absmax && (!q->absmax_q || !q->nested_absmax || !q->nested_map ||
                           q->nested_blocksize <= 0))
            return LC_BAD(c, "NF4 weight [%lld, %lld]: no absmax and incomplete double "
                             "quantization state",
                          (long long)W->rows, (long long)W->cols);
    } else if (W->dtype != LC_DTYPE_F32 && W->dtype != LC_DTYPE_BF16 && W->dtype != LC_DTYPE_F16) {
        return LC_BAD(c, "weight dtype %d unknown", (int)W->dtype);
    } else if (!W->data && W->rows * W->cols > 0) {
        return LC_BAD(c, "weight [%lld, %lld] has no data", (long long)W->rows,
                      (long long)W->cols);
    }
    return 0;
}

template <typename T>
__global__ void weight_rows_k(lc_dweight W, int64_t e0, int64_t n, T *dst)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = lc_st<T>(lc_weight_elem(W, e0 + i));
}

extern "C" int lc_cuda_weight_rows(lc_cuda_ctx *c, const lc_weight *W, int64_t r0,
                                   int64_t r1, lc_dtype dt, void *dst)
{
    LC_TRY(lc_cuda_check_weight(c, W));
    if (r0 < 0 || r1 > W->rows || r0 > r1)
        return LC_BAD(c, "weight rows [%lld, %lld) outside [0, %lld)", (long long)r0,
                      (long long)r1, (long long)W->rows);
    int64_t n = (r1 - r0) * W->cols;
    if (n == 0)
        return 0;
    LC_DISPATCH_ACT(c, dt, T, {
        weight_rows_k<T><<<lc_grid(n, 256), 256, 0, c->stream>>>(lc_dweight_of(W), r0 * W->cols, n,
                                                                 (T *)dst);
        LC_LAUNCHED(c, "weight_rows_k");
    });
    return 0;
}

static bool weight_native(const lc_weight *W, lc_dtype dt)
{
    return !W->nf4 && W->dtype == dt && (dt == LC_DTYPE_F32 || dt == LC_DTYPE_BF16);
}

int64_t lc_cuda_dbg_weight_tile = 0, lc_cuda_dbg_ce_rows = 0;

extern "C" void lc_cuda_debug_limits(int64_t weight_tile_elems, int64_t ce_chunk_rows)
{
    lc_cuda_dbg_weight_tile = weight_tile_elems > 0 ? weight_tile_elems : 0;
    lc_cuda_dbg_ce_rows = ce_chunk_rows > 0 ? ce_chunk_rows : 0;
}

int64_t lc_cuda_weight_tile_rows(const lc_weight *W)
{
    int64_t elems = lc_cuda_dbg_weight_tile ? lc_cuda_dbg_weight_tile : WEIGHT_TILE_ELEMS;
    int64_t r = elems / (W->cols ? W->cols : 1);
    if (r < 1)
        r = 1;
    return r < W->rows ? r : W->rows;
}

extern "C" size_t lc_cuda_weight_scratch_bytes(const lc_weight *W, lc_dtype dt)
{
    if (weight_native(W, dt))
        return 0;
    return (size_t)(lc_cuda_weight_tile_rows(W) * W->cols) * lc_dtype_size(dt);
}

int lc_cuda_weight_matmul_to(lc_cuda_ctx *c, lc_dtype dt, const void *x, int64_t N,
                             const lc_weight *W, float beta, void *y, lc_dtype y_dt,
                             void *scratch)
{
    LC_TRY(lc_cuda_check_weight(c, W));
    int64_t in = W->cols, out = W->rows;
    if (weight_native(W, dt))
        return lc_cuda_gemm(c, false, true, N, out, in, 1.0f, x, in, W->data, in, beta, y, out,
                            dt, y_dt);
    if (!scratch)
        return LC_BAD(c, "weight matmul: W [%lld, %lld] dtype %d needs scratch", (long long)out,
                      (long long)in, (int)W->dtype);
    size_t ys = lc_dtype_size(y_dt);
    int64_t tr = lc_cuda_weight_tile_rows(W);
    for (int64_t r0 = 0; r0 < out; r0 += tr) {
        int64_t r1 = r0 + tr < out ? r0 + tr : out;
        LC_TRY(lc_cuda_weight_rows(c, W, r0, r1, dt, scratch));
        LC_TRY(lc_cuda_gemm(c, false, true, N, r1 - r0, in, 1.0f, x, in, scratch, in, beta,
                            (char *)y + (size_t)r0 * ys, out, dt, y_dt));
    }
    return 0;
}

int lc_cuda_weight_matmul_grad_to(lc_cuda_ctx *c, lc_dtype dt, const void *dy, int64_t N,
                                  const lc_weight *W, void *dx, lc_dtype dx_dt,
                                  void *scratch)
{
    LC_TRY(lc_cuda_check_weight(c, W));
    int64_t in = W->cols, out = W->rows;
    if (weight_native(W, dt))
        return lc_cuda_gemm(c, false, false, N, in, out, 1.0f, dy, out, W->data, in, 1.0f, dx,
                            in, dt, dx_dt);
    if (!scratch)
        return LC_BAD(c, "weight matmul grad: W [%lld, %lld] dtype %d needs scratch",
                      (long long)out, (long long)in, (int)W->dtype);
    size_t es = lc_dtype_size(dt);
    int64_t tr = lc_cuda_weight_tile_rows(W);
    for (int64_t r0 = 0; r0 < out; r0 += tr) {
        int64_t r1 = r0 + tr < out ? r0 + tr : out;
        LC_TRY(lc_cuda_weight_rows(c, W, r0, r1, dt, scratch));
        LC_TRY(lc_cuda_gemm(c, false, false, N, in, r1 - r0, 1.0f, (const char *)dy + (size_t)r0 * es,
                            out, scratch, in, 1.0f, dx, in, dt, dx_dt));
    }
    return 0;
}

extern "C" int lc_cuda_weight_matmul(lc_cuda_ctx *c, lc_dtype dt, const void *x, int64_t N,
                                     const lc_weight *W, float beta, void *y, void *scratch)
{
    return lc_cuda_weight_matmul_to(c, dt, x, N, W, beta, y, dt, scratch);
}

extern "C" int lc_cuda_weight_matmul_grad(lc_cuda_ctx *c, lc_dtype dt, const void *dy,
                                          int64_t N, const lc_weight *W, void *dx,
                                          void *scratch)
{
    return lc_cuda_weight_matmul_grad_to(c, dt, dy, N, W, dx, dt, scratch);
}

void lc_cuda_gemm_cache_clear(lc_cuda_ctx *c)
{
    for (int i = 0; i < LC_GEMM_CACHE; i++)
        plan_destroy(&c->plans[i]);
}

extern "C" void lc_cuda_gemm_cache_stats(const lc_cuda_ctx *c, int64_t *hits, int64_t *misses)
{
    *hits = (int64_t)c->gemm_hits;
    *misses = (int64_t)c->gemm_misses;
}

extern "C" int64_t lc_cuda_gemm_fallbacks(const lc_cuda_ctx *c)
{
    return (int64_t)c->gemm_fallbacks;
}

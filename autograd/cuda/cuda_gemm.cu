/* cuda_gemm.cu — every matrix product of the backend, through cuBLASLt, and
 * the frozen-weight products that convert / dequantize (NF4: nf4_dequant_k)
 * W into scratch, whole or by tiles (the policy below), like the CPU's
 * lc_k_weight_matmul.
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

/* Scratch policy of the converted weights (NF4, F16, another dtype than the
 * activations'): at most WEIGHT_TILE_ELEMS elements of scratch (128 MiB in
 * bf16, 256 MiB in f32). A matrix up to that size is converted whole and
 * enters one GEMM: every linear of Llama-3.1-8B (the largest, 14336×4096, is
 * 58.7M). Larger ones (a 128k-vocabulary lm_head, 70B's MLP) go by tiles:
 * forward by rows (a multiple of 8), backward by columns (a multiple of 32),
 * so GEMM operand offsets stay 16-byte aligned and each dx element comes
 * from one GEMM. lc_cuda_weight_scratch_bytes answers the larger tile. */
#define WEIGHT_TILE_ELEMS ((int64_t)1 << 26)

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
        /* the kernels find blocks by shifts (lc_dweight_of), as bitsandbytes' sizes allow */
        if (q->blocksize & (q->blocksize - 1))
            return LC_BAD(c, "NF4 weight [%lld, %lld]: blocksize %lld is not a power of two",
                          (long long)W->rows, (long long)W->cols, (long long)q->blocksize);
        if (!q->absmax && (q->nested_blocksize & (q->nested_blocksize - 1)))
            return LC_BAD(c, "NF4 weight [%lld, %lld]: nested blocksize %lld is not a power of two",
                          (long long)W->rows, (long long)W->cols,
                          (long long)q->nested_blocksize);
    } else if (W->dtype != LC_DTYPE_F32 && W->dtype != LC_DTYPE_BF16 && W->dtype != LC_DTYPE_F16) {
        return LC_BAD(c, "weight dtype %d unknown", (int)W->dtype);
    } else if (!W->data && W->rows * W->cols > 0) {
        return LC_BAD(c, "weight [%lld, %lld] has no data", (long long)W->rows,
                      (long long)W->cols);
    }
    return 0;
}

/* ---- conversion into scratch ----
 * A window of W — rows [r0, r1) × columns [c0, c1) — is written row-major
 * into dst [r1-r0, c1-c0] in the activation dtype. It is taken as `nseg`
 * segments of `len` elements, segment s starting at flattened element
 * e0 + s·stride: one segment when the window is whole rows (the forward's
 * tiles), one per row when it is a column block (the backward's). */
struct wwin {
    int64_t e0, stride; /* first element, element distance of segments */
    int64_t nseg;       /* segments (gridDim.y strides over them) */
    uint32_t len;       /* elements per segment (< 2^31: the host splits) */
};

#define NF4_VEC 32 /* elements per vector item: 16 bytes of codes */

/* 32-bit word k of values f as T stores them (bf16: two, the first in the low half). */
template <typename T> __device__ __forceinline__ uint32_t vec_word(const float *f, int k);
template <> __device__ __forceinline__ uint32_t vec_word<float>(const float *f, int k)
{
    return __float_as_uint(f[k]);
}
template <> __device__ __forceinline__ uint32_t vec_word<__nv_bfloat16>(const float *f, int k)
{
    return (uint32_t)__bfloat16_as_ushort(lc_st<__nv_bfloat16>(f[2 * k])) |
           (uint32_t)__bfloat16_as_ushort(lc_st<__nv_bfloat16>(f[2 * k + 1])) << 16;
}

/* NF4 dequantization of a window. In each segment the elements before the
 * first 32-aligned flattened index (lead) and after the last whole run
 * (tail) go one per thread; every run of 32 in between is one item: one
 * 16-byte load of codes, one absmax (blocksize ≥ 32: a run lies in one
 * block), 32 products and 16-byte stores. vec_ok (nf4_vec_ok) says the
 * loads and stores are aligned; without it every element goes alone. Arithmetic
 * inside a segment is 32-bit; block indexes are shifts (no 64-bit
 * division). Each value is lc_nf4_value(code, lc_nf4_absmax(b)), as
 * lc_nf4_elem computes it: results are bitwise those of the scalar path. */
template <typename T>
__global__ void __launch_bounds__(256) nf4_dequant_k(lc_dweight W, wwin w, bool vec_ok, T *dst)
{
    __shared__ float cb[16]; /* the code book: divergent lookups, no constant-cache replay */
    if (threadIdx.x < 16)
        cb[threadIdx.x] = lc_nf4_code_dev[threadIdx.x];
    __syncthreads();
    for (int64_t s = blockIdx.y; s < w.nseg; s += gridDim.y) {
        const int64_t es = w.e0 + s * w.stride; /* the segment's first element */
        T *ds = dst + s * (int64_t)w.len;
        uint32_t lead = vec_ok ? (uint32_t)(-es) & (NF4_VEC - 1) : w.len;
        if (lead > w.len)
            lead = w.len;
        const uint32_t nvec = (w.len - lead) / NF4_VEC; /* 32-bit, by a power of two */
        const uint32_t body = lead + nvec * NF4_VEC;
        const int64_t ev = es + lead; /* 32-aligned when nvec > 0 */
        const uint4 *cv = (const uint4 *)(W.nf4.codes + (ev >> 1));
        uint4 *dv = (uint4 *)(ds + lead); /* 16-byte aligned (vec_ok) */
        const uint32_t t0 = blockIdx.x * blockDim.x + threadIdx.x, nt = gridDim.x * blockDim.x;
        for (uint32_t i = t0; i < nvec; i += nt) {
            const uint4 q = cv[i];
            const float am = lc_nf4_absmax(W, (ev + (int64_t)i * NF4_VEC) >> W.bshift);
            const uint32_t word[4] = {q.x, q.y, q.z, q.w};
            float v[NF4_VEC];
#pragma unroll
            for (int k = 0; k < NF4_VEC / 2; k++) { /* byte k: first value in the high nibble */
                uint32_t byte = (word[k >> 2] >> (8 * (k & 3))) & 255u;
                v[2 * k] = lc_nf4_value(cb, (int)(byte >> 4), am);
                v[2 * k + 1] = lc_nf4_value(cb, (int)(byte & 15), am);
            }
            const int per = (int)(NF4_VEC * sizeof(T) / 16); /* uint4 per run */
#pragma unroll
            for (int k = 0; k < per; k++)
                dv[i * per + k] = make_uint4(vec_word<T>(v, 4 * k), vec_word<T>(v, 4 * k + 1),
                                             vec_word<T>(v, 4 * k + 2), vec_word<T>(v, 4 * k + 3));
        }
        /* the lead and the tail, one element each */
        for (uint32_t j = t0; j < w.len - body + lead; j += nt) {
            uint32_t o = j < lead ? j : body + (j - lead);
            ds[o] = lc_st<T>(lc_nf4_elem(W, es + o, cb));
        }
    }
}

/* The other conversions (F16, or a dtype other than the activation's), one
 * element per thread. */
template <typename T> __global__ void weight_convert_k(lc_dweight W, wwin w, T *dst)
{
    for (int64_t s = blockIdx.y; s < w.nseg; s += gridDim.y) {
        const int64_t es = w.e0 + s * w.stride;
        T *ds = dst + s * (int64_t)w.len;
        for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < w.len;
             i += gridDim.x * blockDim.x)
            ds[i] = lc_st<T>(lc_weight_elem(W, es + i));
    }
}

/* Segments longer than this go in several launches (32-bit indexes). */
#define WIN_MAX_LEN ((int64_t)1 << 30)

/* Whether nf4_dequant_k may take runs of 32 in window w: 16-byte aligned
 * code loads (allocations are 256-aligned), one absmax per run, and every
 * segment's runs stored 16-byte aligned (the same lead in each segment:
 * stride a multiple of 32). Odd shapes go element by element. */
static bool nf4_vec_ok(const lc_weight *W, wwin w, size_t es, const void *dst)
{
    if (!W->nf4 || ((uintptr_t)W->nf4->codes & 15) || W->nf4->blocksize < NF4_VEC ||
        ((uintptr_t)dst & 15))
        return false;
    uint32_t lead = (uint32_t)(-w.e0) & (NF4_VEC - 1);
    if (lead < w.len && (lead * es) % 16)
        return false;
    return w.nseg == 1 || (w.stride % NF4_VEC == 0 && ((size_t)w.len * es) % 16 == 0);
}

static int weight_window(lc_cuda_ctx *c, const lc_weight *W, wwin w, lc_dtype dt, void *dst)
{
    const lc_dweight d = lc_dweight_of(W);
    const bool vec_ok = nf4_vec_ok(W, w, lc_dtype_size(dt), dst);
    /* items per segment (NF4: runs of 32 and at most 62 single elements); a
     * short segment (a column block's row) gets a block of fewer threads */
    const int64_t items = W->nf4 ? w.len / NF4_VEC + 2 * NF4_VEC : w.len;
    const int threads = items >= 256 ? 256 : (int)((items + 31) & ~31);
    dim3 grid(lc_grid(items, threads), (unsigned)(w.nseg < 65535 ? w.nseg : 65535));
    LC_DISPATCH_ACT(c, dt, T, {
        if (W->nf4) {
            nf4_dequant_k<T><<<grid, threads, 0, c->stream>>>(d, w, vec_ok, (T *)dst);
            LC_LAUNCHED(c, "nf4_dequant_k");
        } else {
            weight_convert_k<T><<<grid, threads, 0, c->stream>>>(d, w, (T *)dst);
            LC_LAUNCHED(c, "weight_convert_k");
        }
    });
    return 0;
}

/* W[r0:r1, c0:c1] → dst [r1-r0, c1-c0] (dt), the window already checked. */
static int weight_block(lc_cuda_ctx *c, const lc_weight *W, int64_t r0, int64_t r1, int64_t c0,
                        int64_t c1, lc_dtype dt, void *dst)
{
    const int64_t cols = W->cols, n = (r1 - r0) * (c1 - c0);
    if (n == 0)
        return 0;
    const size_t es = lc_dtype_size(dt);
    if (c1 - c0 == cols) { /* whole rows: one flat range, split for 32-bit indexes */
        for (int64_t o = 0; o < n; o += WIN_MAX_LEN) {
            wwin w = {r0 * cols + o, 0, 1, (uint32_t)(n - o < WIN_MAX_LEN ? n - o : WIN_MAX_LEN)};
            LC_TRY(weight_window(c, W, w, dt, (char *)dst + (size_t)o * es));
        }
        return 0;
    }
    if (c1 - c0 > WIN_MAX_LEN)
        return LC_BAD(c, "weight column block of %lld exceeds %lld", (long long)(c1 - c0),
                      (long long)WIN_MAX_LEN);
    wwin w = {r0 * cols + c0, cols, r1 - r0, (uint32_t)(c1 - c0)};
    return weight_window(c, W, w, dt, dst);
}

extern "C" int lc_cuda_weight_rows(lc_cuda_ctx *c, const lc_weight *W, int64_t r0,
                                   int64_t r1, lc_dtype dt, void *dst)
{
    LC_TRY(lc_cuda_check_weight(c, W));
    if (r0 < 0 || r1 > W->rows || r0 > r1)
        return LC_BAD(c, "weight rows [%lld, %lld) outside [0, %lld)", (long long)r0,
                      (long long)r1, (long long)W->rows);
    return weight_block(c, W, r0, r1, 0, W->cols, dt, dst);
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

static int64_t weight_tile_elems(void)
{
    return lc_cuda_dbg_weight_tile ? lc_cuda_dbg_weight_tile : WEIGHT_TILE_ELEMS;
}

/* n of the tile's extent rounded down to a multiple of `to` when that
 * leaves at least one, at least 1 and at most `whole`. */
static int64_t tile_extent(int64_t n, int64_t to, int64_t whole)
{
    if (n >= to)
        n -= n % to;
    if (n < 1)
        n = 1;
    return n < whole ? n : whole;
}

int64_t lc_cuda_weight_tile_rows(const lc_weight *W)
{
    if (W->rows * W->cols <= weight_tile_elems())
        return W->rows;
    /* 8 rows: r0·elem_size (y, dy column offsets) is a multiple of 16 bytes */
    return tile_extent(weight_tile_elems() / (W->cols ? W->cols : 1), 8, W->rows);
}

/* Columns of W per tile in the backward (dx column blocks): whole when W
 * fits the tile, else a multiple of 32 (16-byte aligned dx offsets and
 * NF4 code runs) or of 8 when fewer fit. */
static int64_t weight_tile_cols(const lc_weight *W)
{
    if (W->rows * W->cols <= weight_tile_elems())
        return W->cols;
    int64_t n = weight_tile_elems() / (W->rows ? W->rows : 1);
    return tile_extent(n, n >= 32 ? 32 : 8, W->cols);
}

extern "C" size_t lc_cuda_weight_scratch_bytes(const lc_weight *W, lc_dtype dt)
{
    if (weight_native(W, dt))
        return 0;
    int64_t fwd = lc_cuda_weight_tile_rows(W) * W->cols, bwd = W->rows * weight_tile_cols(W);
    return (size_t)(fwd > bwd ? fwd : bwd) * lc_dtype_size(dt);
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
        LC_TRY(weight_block(c, W, r0, r1, 0, in, dt, scratch)); /* [r1-r0, in] */
        LC_TRY(lc_cuda_gemm(c, false, true, N, r1 - r0, in, 1.0f, x, in, scratch, in, beta,
                            (char *)y + (size_t)r0 * ys, out, dt, y_dt));
    }
    return 0;
}

/* dx [N, in] = beta·dx + dy [N, out]·W. A converted W goes by column
 * blocks, so each element of dx comes from one GEMM: one rounding in dx's
 * dtype. */
int lc_cuda_weight_matmul_grad_to(lc_cuda_ctx *c, lc_dtype dt, const void *dy, int64_t N,
                                  const lc_weight *W, float beta, void *dx, lc_dtype dx_dt,
                                  void *scratch)
{
    LC_TRY(lc_cuda_check_weight(c, W));
    int64_t in = W->cols, out = W->rows;
    if (weight_native(W, dt))
        return lc_cuda_gemm(c, false, false, N, in, out, 1.0f, dy, out, W->data, in, beta, dx,
                            in, dt, dx_dt);
    if (!scratch)
        return LC_BAD(c, "weight matmul grad: W [%lld, %lld] dtype %d needs scratch",
                      (long long)out, (long long)in, (int)W->dtype);
    size_t xs = lc_dtype_size(dx_dt);
    int64_t tc = weight_tile_cols(W);
    for (int64_t c0 = 0; c0 < in; c0 += tc) {
        int64_t c1 = c0 + tc < in ? c0 + tc : in;
        LC_TRY(weight_block(c, W, 0, out, c0, c1, dt, scratch)); /* [out, c1-c0] */
        LC_TRY(lc_cuda_gemm(c, false, false, N, c1 - c0, out, 1.0f, dy, out, scratch, c1 - c0,
                            beta, (char *)dx + (size_t)c0 * xs, in, dt, dx_dt));
    }
    return 0;
}

extern "C" int lc_cuda_weight_matmul(lc_cuda_ctx *c, lc_dtype dt, const void *x, int64_t N,
                                     const lc_weight *W, float beta, void *y, void *scratch)
{
    return lc_cuda_weight_matmul_to(c, dt, x, N, W, beta, y, dt, scratch);
}

extern "C" int lc_cuda_weight_matmul_grad(lc_cuda_ctx *c, lc_dtype dt, const void *dy,
                                          int64_t N, const lc_weight *W, float beta, void *dx,
                                          void *scratch)
{
    return lc_cuda_weight_matmul_grad_to(c, dt, dy, N, W, beta, dx, dt, scratch);
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

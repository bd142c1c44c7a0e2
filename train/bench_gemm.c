/* bench_gemm.c — see bench_gemm.h. The FLOP count follows what the tape
 * runs (autograd/ops.c: linears_backward skips dx where the input needs no
 * gradient; the attention kernels recompute the scores in backward from the
 * saved log-sum-exp); tests/test_bench_gemm.c checks it against the GEMM
 * calls a real step makes. */
#include "train/bench_gemm.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/cpu/blas.h"
#include "autograd/cpu/gemm_bf16.h"
#include "autograd/cpu/onednn.h"
#include "autograd/cpu/dispatch.h"
#include "autograd/kernels.h"
#include "train/lora.h"
#include "train/sysinfo.h"

/* The modules that read a layer's attention input (in layer 0: the
 * embedding's rows, which need no gradient). */
static bool reads_attention_input(lc_module m)
{
    return m == LC_MOD_Q || m == LC_MOD_K || m == LC_MOD_V || m == LC_MOD_QKV;
}

/* The modules of a dense block, in lc_module order; returns their count. */
static int block_modules(const lc_model_config *cfg, lc_module *mods)
{
    int n = 0;
    for (int m = 0; m < LC_MOD_COUNT; m++)
        if (!lc_module_is_expert(m) && lc_model_has_module(cfg, m))
            mods[n++] = m;
    return n;
}

int lc_gemm_flops_count(const lc_model_config *cfg, int rank, int64_t batch, int64_t seq,
                        int64_t n_supervised, bool checkpointing, lc_gemm_flops *f,
                        lc_error *err)
{
    if (cfg->n_experts > 0)
        return lc_error_set(err, "GEMM FLOPs: Mixture-of-Experts models are not counted");
    memset(f, 0, sizeof *f);
    const double N = (double)batch * seq, L = cfg->n_layers, r = rank;
    lc_module mods[LC_MOD_COUNT];
    int nm = block_modules(cfg, mods);
    double layer_fwd = 0; /* one layer's forward linears: frozen + LoRA */
    for (int i = 0; i < nm; i++) {
        int64_t out, in;
        lc_module_shape(cfg, mods[i], &out, &in);
        double dx_layers = reads_attention_input(mods[i]) ? L - 1 : L;
        double w = 2 * N * (double)in * (double)out;
        f->frozen += w * (L + dx_layers);
        /* forward x·Aᵀ [N,r] and ·Bᵀ [N,out]; backward dy·B, dB, dA every layer, dx where
         * needed */
        double lora_fwd = 2 * N * r * (double)(in + out);
        f->lora += L * (lora_fwd + 2 * N * r * (double)(2 * out + in)) +
                   dx_layers * 2 * N * r * (double)in;
        layer_fwd += w + lora_fwd;
    }
    /* per row and query head: T(T+1)/2 visible pairs, 2·D FLOPs each per product */
    double pairs = (double)seq * (double)(seq + 1) / 2;
    double attn_product = (double)batch * cfg->n_heads * pairs * 2 * cfg->head_dim;
    f->attention = L * attn_product * (2 + 5);
    f->lm_head = 2 * 2 * (double)n_supervised * (double)cfg->hidden_size * cfg->vocab_size;
    if (checkpointing)
        f->recompute = L * (layer_fwd + 2 * attn_product);
    f->total = f->frozen + f->lora + f->attention + f->lm_head + f->recompute;
    return 0;
}

/* ---- --gemm-peak ---- */

/* One GEMM shape of the step: C[M,N] = A[M,K] · (B[N,K]ᵀ when trans_b, else
 * B[K,N]), and how many times a step runs it. */
typedef struct peak_shape {
    char what[48];
    int64_t M, N, K;
    int64_t batch; /* > 1: that many products of this shape as one batched call (bf16) */
    bool trans_b;
    double calls;
    double gflops; /* measured */
} peak_shape;

#define PEAK_MAX_SHAPES (2 * LC_MOD_COUNT + 4)
#define PEAK_MIN_S 0.15 /* each shape: repetitions for at least this long ... */
#define PEAK_MIN_REPS 3 /* ... and at least this many; the best one counts */

static void add_shape(peak_shape *s, int *n, const char *what, const char *dir, int64_t M,
                      int64_t N, int64_t K, bool trans_b, double calls)
{
    peak_shape *p = &s[(*n)++];
    *p = (peak_shape){.M = M, .N = N, .K = K, .batch = 1, .trans_b = trans_b, .calls = calls};
    snprintf(p->what, sizeof p->what, "%s %s", what, dir);
}

/* The step's frozen-weight GEMM shapes at M = tokens rows. */
static int step_shapes(const lc_model_config *cfg, int64_t tokens, peak_shape *s)
{
    int n = 0;
    lc_module mods[LC_MOD_COUNT];
    int nm = block_modules(cfg, mods);
    double L = cfg->n_layers;
    for (int i = 0; i < nm; i++) {
        int64_t out, in;
        lc_module_shape(cfg, mods[i], &out, &in);
        const char *name = lc_module_name(mods[i]);
        add_shape(s, &n, name, "fwd", tokens, out, in, true, L);
        add_shape(s, &n, name, "bwd-data", tokens, in, out, false,
                  reads_attention_input(mods[i]) ? L - 1 : L);
    }
    /* the lm_head in the fused head's balanced chunks of at most lc_k_ce_chunk_rows rows,
     * weighted by the rows there are */
    int64_t V = cfg->vocab_size, C = cfg->hidden_size;
    int64_t rows = lc_ce_balanced_rows(tokens, lc_k_ce_chunk_rows(V));
    double chunks = (double)tokens / (double)rows;
    add_shape(s, &n, "lm_head", "fwd", rows, V, C, true, chunks);
    add_shape(s, &n, "lm_head", "bwd-data", rows, C, V, false, chunks);
    return n;
}

static void fill(float *x, int64_t n, uint64_t seed)
{
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(seed >> 40) / (double)(1ull << 24) - 0.5);
    }
}

/* Prints "name":{"overall_gflops":…,"shapes":[…]} for the measured shapes:
 * overall = the step's FLOPs of these shapes over the time they take at the
 * measured rates. */
static void print_rates(FILE *out, const char *name, const char *engine, const peak_shape *s,
                        int n)
{
    double flops = 0, secs = 0;
    for (int i = 0; i < n; i++) {
        double f = 2.0 * (double)s[i].M * (double)s[i].N * (double)s[i].K * s[i].calls;
        flops += f;
        secs += f / (s[i].gflops * 1e9);
    }
    fprintf(out, "\"%s\":{\"engine\":\"%s\",\"overall_gflops\":%.1f,\"step_gflop\":%.3f,"
            "\"shapes\":[", name, engine, flops / secs / 1e9, flops / 1e9);
    for (int i = 0; i < n; i++)
        fprintf(out, "%s{\"what\":\"%s\",\"M\":%lld,\"N\":%lld,\"K\":%lld,\"calls\":%g,"
                "\"gflops\":%.1f}", i ? "," : "", s[i].what, (long long)s[i].M,
                (long long)s[i].N, (long long)s[i].K, s[i].calls, s[i].gflops);
    fprintf(out, "]}");
}

/* C = A·op(B) of shape p: f32 (lc_k_gemm) or bf16 (oneDNN) operands. */
typedef void gemm_call(const peak_shape *p, const void *A, const void *B, float *C);

static void call_f32(const peak_shape *p, const void *A, const void *B, float *C)
{
    lc_k_gemm(false, p->trans_b, p->M, p->N, p->K, 1, A, p->K, B, p->trans_b ? p->K : p->N, 0,
              C, p->N);
}

/* The library a step runs the shape on: a B that is not transposed (dy·W)
 * on oneDNN's BLAS-like GEMM (kernels_cpu.c, and gemm_bf16.c where
 * lc_cpu_bf16_grad_on_gemm_api), the rest on its matmul primitive. */
static void call_f32_onednn(const peak_shape *p, const void *A, const void *B, float *C)
{
    if (!p->trans_b && lc_onednn_gemm(LC_DTYPE_F32, false, false, p->M, p->N, p->K, 1, A, p->K,
                                      B, p->N, 0, C, p->N))
        return;
    lc_onednn_matmul(LC_DTYPE_F32, false, p->trans_b, p->M, p->N, p->K, 1, A, p->K, B,
                     p->trans_b ? p->K : p->N, false, C, p->N, false);
}

static void call_bf16(const peak_shape *p, const void *A, const void *B, float *C)
{
    lc_onednn_batch bt = {p->batch, p->M * p->K, p->K * p->N, p->M * p->N};
    if (p->batch > 1) { /* as gemm_bf16.c batches a group's forwards: separate A, B and C */
        if (lc_onednn_matmul_batch(LC_DTYPE_BF16, &bt, false, p->trans_b, p->M, p->N, p->K, 1, A,
                                   p->K, B, p->trans_b ? p->K : p->N, false, C, p->N, false))
            return;
        for (int64_t i = 0; i < p->batch; i++) /* refused: one by one, as gemm_bf16.c does */
            lc_cpu_gemm_bf16(false, p->trans_b, p->M, p->N, p->K,
                             (const uint16_t *)A + i * bt.sa, p->K,
                             (const uint16_t *)B + i * bt.sb, p->trans_b ? p->K : p->N, 0,
                             C + i * bt.sc, p->N);
        return;
    }
    if (!p->trans_b && lc_cpu_bf16_grad_on_gemm_api(p->K) &&
        lc_onednn_gemm(LC_DTYPE_BF16, false, false, p->M, p->N, p->K, 1, A, p->K, B, p->N, 0, C,
                       p->N))
        return;
    lc_cpu_gemm_bf16(false, p->trans_b, p->M, p->N, p->K, A, p->K, B, p->trans_b ? p->K : p->N,
                     0, C, p->N);
}

/* Best GFLOP/s of repeated GEMMs of shape p on A, B, C. */
static double best_gflops(const peak_shape *p, gemm_call *call, const void *A, const void *B,
                          float *C)
{
    double best = 1e30, t_all = lc_now_s();
    for (int rep = -1; rep < PEAK_MIN_REPS || lc_now_s() - t_all < PEAK_MIN_S; rep++) {
        double t0 = lc_now_s();
        call(p, A, B, C);
        double dt = lc_now_s() - t0;
        if (rep >= 0 && dt < best) /* rep -1: warm-up */
            best = dt;
    }
    return 2.0 * (double)(p->batch > 1 ? p->batch : 1) * (double)p->M * (double)p->N *
           (double)p->K / best / 1e9;
}

/* The groups of linears that read one input, whose folded GEMMs the bf16
 * path may share (gemm_bf16.c; LC_MOD_COUNT ends a shorter group). */
static const lc_module peak_groups[][3] = {{LC_MOD_Q, LC_MOD_K, LC_MOD_V},
                                           {LC_MOD_GATE, LC_MOD_UP, LC_MOD_COUNT}};
#define PEAK_GROUPS ((int)(sizeof peak_groups / sizeof *peak_groups))

/* Group g in direction dir (0 forward, 1 backward dx) at M rows as one
 * GEMM: the members' outputs side by side (forward N, backward K), its name
 * in name ("q_proj+k_proj+v_proj"); returns its member count, 0 when the
 * family lacks a member. */
static int group_shape(const lc_model_config *cfg, int g, int dir, int64_t M, peak_shape *one,
                       char *name, size_t cap)
{
    int64_t sum_out = 0, in = 0;
    int members = 0;
    name[0] = '\0';
    for (int i = 0; i < 3 && peak_groups[g][i] != LC_MOD_COUNT; i++) {
        if (!lc_model_has_module(cfg, peak_groups[g][i]))
            return 0;
        int64_t o, k;
        lc_module_shape(cfg, peak_groups[g][i], &o, &k);
        sum_out += o, in = k, members++;
        snprintf(name + strlen(name), cap - strlen(name), "%s%s", i ? "+" : "",
                 lc_module_name(peak_groups[g][i]));
    }
    *one = (peak_shape){.M = M, .batch = 1, .N = dir ? in : sum_out, .K = dir ? sum_out : in,
                        .trans_b = !dir};
    return members;
}

/* Seconds of one call of shape p at its measured rate. */
static double shape_s(const peak_shape *p)
{
    return 2.0 * (double)p->M * (double)p->N * (double)p->K / (p->gflops * 1e9);
}

/* The groups' GEMM time in the forms the bf16 path shares them in, GEMM
 * time only, against their members' GEMMs at their measured rates (s):
 * forward, runs of members of one shape as one batched product (q alone,
 * then k and v; gate and up), backward one product of the stacked K.
 * Printed as "bf16_groups":[…] with the step's saving at most; the LoRA
 * columns the folding appends and the copies around the products are left
 * out (the same on both sides). */
static void peak_bf16_groups(FILE *out, const lc_model_config *cfg, const peak_shape *s, int n,
                             const void *a, const void *b, float *C)
{
    double saved = 0;
    int printed = 0;
    fprintf(out, ",\"bf16_groups\":[");
    for (int g = 0; g < PEAK_GROUPS; g++)
        for (int dir = 0; dir < 2; dir++) {
            peak_shape one;
            char name[64];
            int members = group_shape(cfg, g, dir, s[0].M, &one, name, sizeof name);
            if (members < 2)
                continue;
            const peak_shape *member[3] = {0};
            for (int i = 0; i < members; i++) {
                char what[48];
                snprintf(what, sizeof what, "%s %s", lc_module_name(peak_groups[g][i]),
                         dir ? "bwd-data" : "fwd");
                for (int j = 0; j < n; j++)
                    if (!strcmp(s[j].what, what))
                        member[i] = &s[j];
            }
            bool measured = true;
            for (int i = 0; i < members; i++)
                measured &= member[i] != NULL;
            if (!measured)
                continue;
            double separate = 0, shared = 0, calls = member[0]->calls;
            for (int i = 0; i < members; i++)
                separate += shape_s(member[i]);
            if (dir) {
                one.gflops = best_gflops(&one, call_bf16, a, b, C);
                shared = shape_s(&one);
            }
            for (int i = 0; i < members && !dir;) {
                int run = 1;
                while (i + run < members && member[i + run]->N == member[i]->N)
                    run++;
                peak_shape batch = *member[i];
                batch.batch = run;
                if (run > 1)
                    batch.gflops = best_gflops(&batch, call_bf16, a, b, C);
                shared += run * shape_s(&batch); /* per product at the batch's rate */
                i += run;
            }
            saved += calls * (separate - shared);
            fprintf(out, "%s{\"group\":\"%s\",\"dir\":\"%s\",\"form\":\"%s\",\"M\":%lld,"
                    "\"N\":%lld,\"K\":%lld,\"calls\":%g,\"separate_ms\":%.4f,"
                    "\"shared_ms\":%.4f}",
                    printed++ ? "," : "", name, dir ? "bwd-data" : "fwd",
                    dir ? "one product, K stacked" : "batched by shape", (long long)one.M,
                    (long long)one.N, (long long)one.K, calls, 1e3 * separate, 1e3 * shared);
        }
    fprintf(out, "],\"bf16_groups_step_ms_saved\":%.2f", 1e3 * saved);
}

/* The bf16 rates of the shapes on oneDNN (A, B rounded to bf16), printed as
 * "bf16":{…}; "bf16":"no bf16 units" on a CPU without them. */
static int peak_bf16(FILE *out, const lc_model_config *cfg, peak_shape *s, int n,
                     const float *A, size_t na, const float *B, size_t nb, float *C,
                     lc_error *err)
{
    const char *units = lc_onednn_bf16_units();
    if (!units) {
        fprintf(out, ",\"bf16\":\"no bf16 units\"");
        return 0;
    }
    uint16_t *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b);
    if (!a || !b) {
        free(a), free(b);
        return lc_error_set(err, "bench --gemm-peak: out of memory for the bf16 matrices");
    }
    lc_cpu_round_bf16(A, (int64_t)na, a);
    lc_cpu_round_bf16(B, (int64_t)nb, b);
    for (int i = 0; i < n; i++)
        s[i].gflops = best_gflops(&s[i], call_bf16, a, b, C);
    char engine[128];
    const char *api = lc_cpu_bf16_grad_gemm_api_use();
    snprintf(engine, sizeof engine, "oneDNN %s on %s%s%s%s", lc_onednn_last_impl(LC_DTYPE_BF16),
             units, api ? ", " : "", api ? api : "", api ? " on its BLAS-like GEMM" : "");
    fprintf(out, ",");
    print_rates(out, "bf16", engine, s, n);
    peak_bf16_groups(out, cfg, s, n, a, b, C);
    free(a), free(b);
    return 0;
}

/* The f32 rates on oneDNN's matmul (what LORAC_CPU_GEMM=onednn runs the weight GEMMs on),
 * printed as "f32_onednn":{…}; "f32_onednn":"<why not>" where libdnnl does not load. */
static void peak_f32_onednn(FILE *out, peak_shape *s, int n, const float *A, const float *B,
                            float *C)
{
    if (!lc_onednn_available()) {
        fprintf(out, ",\"f32_onednn\":\"%s\"", lc_onednn_status());
        return;
    }
    for (int i = 0; i < n; i++)
        s[i].gflops = best_gflops(&s[i], call_f32_onednn, A, B, C);
    char engine[128];
    snprintf(engine, sizeof engine, "%s %s, dy·W on its BLAS-like GEMM", lc_onednn_status(),
             lc_onednn_last_impl(LC_DTYPE_F32));
    fprintf(out, ",");
    print_rates(out, "f32_onednn", engine, s, n);
}

int lc_bench_gemm_peak(const lc_model_config *cfg, int64_t tokens, FILE *out, lc_error *err)
{
    if (cfg->n_experts > 0)
        return lc_error_set(err, "bench --gemm-peak: Mixture-of-Experts shapes are not measured");
    peak_shape s[PEAK_MAX_SHAPES];
    int n = step_shapes(cfg, tokens, s);
    /* the matrices: room for every shape and for the groups' shared forms:
     * one GEMM of the stacked K, and forward batches of up to all members,
     * each with its own A (B and C of a batch fit in the one GEMM's) */
    peak_shape all[PEAK_MAX_SHAPES + 2 * PEAK_GROUPS];
    int n_all = n;
    memcpy(all, s, (size_t)n * sizeof *s);
    size_t na = 0, nb = 0, nc = 0;
    for (int g = 0; g < PEAK_GROUPS; g++)
        for (int dir = 0; dir < 2; dir++) {
            char name[64];
            int members = group_shape(cfg, g, dir, tokens, &all[n_all], name, sizeof name);
            if (members < 2)
                continue;
            if (!dir) {
                size_t a = (size_t)(members * all[n_all].M * all[n_all].K);
                na = a > na ? a : na;
            }
            n_all++;
        }
    for (int i = 0; i < n_all; i++) {
        size_t a = (size_t)(all[i].M * all[i].K), b = (size_t)(all[i].N * all[i].K),
               c = (size_t)(all[i].M * all[i].N);
        na = a > na ? a : na, nb = b > nb ? b : nb, nc = c > nc ? c : nc;
    }
    float *A = malloc(na * sizeof(float)), *B = malloc(nb * sizeof(float)),
          *C = malloc(nc * sizeof(float));
    if (!A || !B || !C) {
        free(A), free(B), free(C);
        return lc_error_set(err, "bench --gemm-peak: out of memory for %.1f MiB of matrices",
                            (double)(na + nb + nc) * sizeof(float) / 1048576.0);
    }
    fill(A, (int64_t)na, 1), fill(B, (int64_t)nb, 2);
    /* "f32" is OpenBLAS's rate: lc_k_gemm with oneDNN switched off meanwhile */
    const char *lib = getenv(LC_CPU_GEMM_ENV);
    char *saved = lib ? strdup(lib) : NULL;
    setenv(LC_CPU_GEMM_ENV, "openblas", 1);
    lc_cpu_gemm_select(err);
    for (int i = 0; i < n; i++)
        s[i].gflops = best_gflops(&s[i], call_f32, A, B, C);
    if (saved)
        setenv(LC_CPU_GEMM_ENV, saved, 1);
    else
        unsetenv(LC_CPU_GEMM_ENV);
    free(saved);
    if (lc_cpu_gemm_select(err)) {
        free(A), free(B), free(C);
        return -1;
    }
    fprintf(out, "{\"gemm_peak\":true,\"tokens\":%lld,\"threads\":%d,\"cpu_kernels\":\"%s\","
            "\"blas_core\":\"%s\",\"fma_peak_gflops\":%.1f,", (long long)tokens,
            omp_get_max_threads(), lc_cpu_isa(), lc_blas_core(), lc_cpu_fma_peak_gflops());
    char engine[64];
    snprintf(engine, sizeof engine, "lc_k_gemm: OpenBLAS %s", lc_blas_core());
    print_rates(out, "f32", engine, s, n);
    peak_f32_onednn(out, s, n, A, B, C);
    int rc = peak_bf16(out, cfg, s, n, A, na, B, nb, C, err);
    fprintf(out, "}\n");
    free(A), free(B), free(C);
    return rc;
}

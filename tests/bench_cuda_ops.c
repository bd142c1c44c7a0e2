/* bench_cuda_ops.c — the kernel benchmark of issue #11: each kernel of
 * autograd/cuda/cuda_kernels.h that a bf16 LoRA / QLoRA step of Llama-3.1-8B
 * spends its time in, at that model's shapes, timed on the device.
 *
 * Why a program of its own: the training benchmark (lorac bench) says how
 * fast a step is, not which kernel is slow; this times each op alone so it
 * can be set against torch's equivalent on the same card
 * (scripts/bench_torch_ops.py, the same op names and flags) and against the
 * issue's targets (attention, NF4 dequantization). scripts/bench_gpu.sh runs
 * both and scripts/bench_gpu_report.py turns the times into TFLOP/s and GB/s
 * (the FLOP and byte counts of every op are defined there, once).
 *
 * Ops (activations bf16, N = batch · seq rows):
 *   nf4_dequant   W[hidden, ff] NF4 (double quant, blocks of 64) → bf16
 *   matmul_bf16   y[N, ff] = x[N, hidden] · W[ff, hidden]ᵀ, W bf16
 *   matmul_nf4    the same with W NF4 (dequantized tile by tile inside)
 *   rmsnorm_fwd / rmsnorm_bwd   x[N, hidden]
 *   swiglu_fwd / swiglu_bwd     g, u[N · ff]
 *   rope_fwd      q[N, heads, head_dim]
 *   attn_fwd / attn_bwd         causal GQA, q[B, T, H, D], k, v[B, T, KV, D]
 *   lm_head_ce    loss and dx over x[N, hidden], W[vocab, hidden] bf16
 *   adamw         one update of adam_params f32 parameters
 * Timing: one untimed call, then `reps` times (sync, `iters` calls, sync) on
 * the host's monotonic clock; the median per call in ms. Prints one JSON
 * line per op: {"impl":"lorac","op":...,"ms":...,"device":...}.
 *
 * Usage: bench_cuda_ops [--hidden 4096 --ff 14336 --vocab 128256 --batch 2
 *        --seq 2048 --heads 32 --kv-heads 8 --head-dim 128 --adam-params
 *        40000000 --reps 10 --iters 5] [--ops a,b,...]
 * Built only in CUDA builds (a GPU or the simulator: there the times are
 * the simulator's, good for checking the pipeline, not for speed). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "autograd/cuda/cuda_kernels.h"
#include "autograd/hash.h"
#include "autograd/nf4.h"

typedef struct bench_shape {
    int64_t hidden, ff, vocab, batch, seq, heads, kv_heads, head_dim, adam_params;
    int reps, iters;
    const char *ops; /* comma-separated op names, NULL: all */
} bench_shape;

/* Every device buffer the ops use (N = batch · seq). */
typedef struct bench {
    bench_shape s;
    lc_cuda_ctx *ctx;
    int64_t N;
    lc_weight w_bf16;           /* [ff, hidden] bf16 */
    lc_nf4 nf4_down, nf4_gate;  /* [hidden, ff] and the same codes as [ff, hidden] */
    lc_weight w_nf4_down, w_nf4_gate;
    lc_weight w_head;           /* [vocab, hidden] bf16 */
    void *x, *y_ff, *y_c, *dx_c, *dq_out, *w_norm, *g, *u, *dg, *du, *rope_out, *scratch;
    float *rstd, *cos_sin, *lse;
    int32_t *pos, *targets;
    void *q, *k, *v, *out, *dout, *dq, *dk, *dv;
    float *p, *gr, *m, *vv;
    int64_t adam_step;
    void **bufs;                /* every allocation, freed at the end */
    int n_bufs;
} bench;

static void die(const bench *b, const char *what)
{
    fprintf(stderr, "bench_cuda_ops: %s: %s\n", what, b->ctx ? lc_cuda_ctx_error(b->ctx) : "");
    exit(1);
}

static void *dev_alloc(bench *b, size_t bytes)
{
    void *p;
    if (lc_cuda_malloc(b->ctx, &p, bytes))
        die(b, "cudaMalloc");
    void **nb = realloc(b->bufs, (size_t)(b->n_bufs + 1) * sizeof *nb);
    if (!nb)
        die(b, "out of host memory");
    b->bufs = nb;
    b->bufs[b->n_bufs++] = p;
    return p;
}

/* n uniform values in [-a, a) from the generator *rng, into host memory. */
static void fill_host(float *h, int64_t n, double a, uint64_t *rng)
{
    for (int64_t i = 0; i < n; i++)
        h[i] = (float)((lc_rng_uniform(rng) * 2 - 1) * a);
}

/* A device array of n random values in [-a, a), f32 or bf16 (converted on
 * the device through an f32 staging buffer, 16 Mi elements at a time). */
static void *dev_random(bench *b, lc_dtype dt, int64_t n, double a, uint64_t seed)
{
    const int64_t chunk = (int64_t)1 << 24;
    size_t es = dt == LC_DTYPE_F32 ? 4 : 2;
    char *d = dev_alloc(b, (size_t)n * es);
    float *h = malloc((size_t)(n < chunk ? n : chunk) * sizeof(float));
    void *stage = NULL;
    if (!h)
        die(b, "out of host memory");
    if (dt != LC_DTYPE_F32 && lc_cuda_malloc(b->ctx, &stage, (size_t)(n < chunk ? n : chunk) * 4))
        die(b, "cudaMalloc");
    uint64_t rng = seed;
    for (int64_t i = 0; i < n; i += chunk) {
        int64_t k = n - i < chunk ? n - i : chunk;
        fill_host(h, k, a, &rng);
        if (dt == LC_DTYPE_F32) {
            if (lc_cuda_upload(b->ctx, d + (size_t)i * es, h, (size_t)k * 4))
                die(b, "upload");
        } else if (lc_cuda_upload(b->ctx, stage, h, (size_t)k * 4) ||
                   lc_cuda_convert(b->ctx, dt, d + (size_t)i * es, LC_DTYPE_F32, stage, k) ||
                   lc_cuda_sync(b->ctx)) {
            die(b, "upload / convert");
        }
    }
    lc_cuda_free(stage);
    free(h);
    return d;
}

static void *dev_copy_of(bench *b, const void *h, size_t bytes)
{
    void *d = dev_alloc(b, bytes);
    if (lc_cuda_upload(b->ctx, d, h, bytes))
        die(b, "upload");
    return d;
}

/* A random [hidden, ff] matrix quantized on the host as bitsandbytes does
 * (autograd/nf4.h), its arrays uploaded; also seen as [ff, hidden]. */
static void make_nf4(bench *b)
{
    int64_t R = b->s.hidden, K = b->s.ff, n = R * K;
    float *h = malloc((size_t)n * sizeof(float));
    if (!h)
        die(b, "out of host memory");
    uint64_t rng = 7;
    fill_host(h, n, 0.02 * sqrt(3.0), &rng);
    lc_nf4_store st;
    lc_error err = {0};
    if (lc_nf4_quantize(&st, h, R, K, 64, true, &err)) {
        fprintf(stderr, "bench_cuda_ops: NF4: %s\n", err.msg);
        exit(1);
    }
    free(h);
    int64_t nb = lc_nf4_blocks(R, K, 64), nn = lc_nf4_nested_blocks(nb, st.q.nested_blocksize);
    lc_nf4 q = st.q;
    q.codes = dev_copy_of(b, st.q.codes, (size_t)n / 2);
    q.absmax_q = dev_copy_of(b, st.q.absmax_q, (size_t)nb);
    q.nested_absmax = dev_copy_of(b, st.q.nested_absmax, (size_t)nn * sizeof(float));
    q.nested_map = dev_copy_of(b, st.q.nested_map, 256 * sizeof(float));
    lc_nf4_store_free(&st);
    b->nf4_down = q;
    b->nf4_gate = q;
    b->nf4_gate.rows = K;
    b->nf4_gate.cols = R;
    b->w_nf4_down = (lc_weight){.dtype = LC_DTYPE_BF16, .rows = R, .cols = K, .nf4 = &b->nf4_down};
    b->w_nf4_gate = (lc_weight){.dtype = LC_DTYPE_BF16, .rows = K, .cols = R, .nf4 = &b->nf4_gate};
}

/* RoPE's table cos_sin[seq, head_dim] (θ 500000, Llama 3) and positions t mod seq. */
static void make_rope(bench *b)
{
    int64_t T = b->s.seq, D = b->s.head_dim;
    float *cs = malloc((size_t)(T * D) * sizeof(float));
    int32_t *pos = malloc((size_t)b->N * sizeof(int32_t));
    if (!cs || !pos)
        die(b, "out of host memory");
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < D / 2; i++) {
            double f = t * pow(500000.0, -2.0 * (double)i / (double)D);
            cs[t * D + i] = (float)cos(f);
            cs[t * D + D / 2 + i] = (float)sin(f);
        }
    for (int64_t i = 0; i < b->N; i++)
        pos[i] = (int32_t)(i % T);
    b->cos_sin = dev_copy_of(b, cs, (size_t)(T * D) * sizeof(float));
    b->pos = dev_copy_of(b, pos, (size_t)b->N * sizeof(int32_t));
    free(cs);
    free(pos);
}

static void make_targets(bench *b)
{
    int32_t *t = malloc((size_t)b->N * sizeof(int32_t));
    if (!t)
        die(b, "out of host memory");
    uint64_t rng = 11;
    for (int64_t i = 0; i < b->N; i++)
        t[i] = (int32_t)(lc_rng_next(&rng) % (uint64_t)b->s.vocab);
    b->targets = dev_copy_of(b, t, (size_t)b->N * sizeof(int32_t));
    free(t);
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

static void setup(bench *b)
{
    const bench_shape *s = &b->s;
    const lc_dtype BF = LC_DTYPE_BF16, F32 = LC_DTYPE_F32;
    int64_t N = b->N = s->batch * s->seq, C = s->hidden, F = s->ff;
    int64_t HD = s->heads * s->head_dim, KD = s->kv_heads * s->head_dim;
    b->w_bf16 = (lc_weight){.data = dev_random(b, BF, F * C, 0.035, 1), .dtype = BF,
                            .rows = F, .cols = C};
    b->w_head = (lc_weight){.data = dev_random(b, BF, s->vocab * C, 0.035, 2), .dtype = BF,
                            .rows = s->vocab, .cols = C};
    make_nf4(b);
    make_rope(b);
    make_targets(b);
    b->x = dev_random(b, BF, N * C, 1.0, 3);
    b->w_norm = dev_random(b, BF, C, 1.0, 4);
    b->y_c = dev_random(b, BF, N * C, 1.0, 5);
    b->dx_c = dev_random(b, BF, N * C, 0.0, 21);
    b->y_ff = dev_alloc(b, (size_t)(N * F) * 2);
    b->dq_out = dev_alloc(b, (size_t)(C * F) * 2);
    b->rstd = dev_alloc(b, (size_t)N * sizeof(float));
    b->g = dev_random(b, BF, N * F, 2.0, 6);
    b->u = dev_random(b, BF, N * F, 2.0, 7);
    b->dg = dev_random(b, BF, N * F, 1.0, 8);
    b->du = dev_random(b, BF, N * F, 1.0, 9);
    b->rope_out = dev_alloc(b, (size_t)(N * HD) * 2);
    b->q = dev_random(b, BF, N * HD, 1.0, 10);
    b->k = dev_random(b, BF, N * KD, 1.0, 11);
    b->v = dev_random(b, BF, N * KD, 1.0, 12);
    b->out = dev_alloc(b, (size_t)(N * HD) * 2);
    b->lse = dev_alloc(b, (size_t)(s->batch * s->heads * s->seq) * sizeof(float));
    b->dout = dev_random(b, BF, N * HD, 1.0, 13);
    b->dq = dev_random(b, BF, N * HD, 0.0, 14);
    b->dk = dev_random(b, BF, N * KD, 0.0, 15);
    b->dv = dev_random(b, BF, N * KD, 0.0, 16);
    lc_attn_shape as = {.B = s->batch, .T = s->seq, .H = (int)s->heads, .KV = (int)s->kv_heads,
                        .D = (int)s->head_dim, .scale = 1.0 / sqrt((double)s->head_dim)};
    size_t scratch = max_sz(lc_cuda_attention_scratch_bytes(&as),
                            lc_cuda_ce_scratch_bytes(BF, N, C, &b->w_head));
    scratch = max_sz(scratch, lc_cuda_weight_scratch_bytes(&b->w_nf4_gate, BF));
    b->scratch = dev_alloc(b, scratch);
    b->p = dev_random(b, F32, s->adam_params, 0.1, 17);
    b->gr = dev_random(b, F32, s->adam_params, 0.01, 18);
    b->m = dev_random(b, F32, s->adam_params, 0.0, 19);
    b->vv = dev_random(b, F32, s->adam_params, 0.0, 20);
    if (lc_cuda_sync(b->ctx))
        die(b, "set-up");
}

/* ---------------------------------------------------------------- the ops */

static lc_attn_shape attn_shape(const bench *b)
{
    const bench_shape *s = &b->s;
    return (lc_attn_shape){.B = s->batch, .T = s->seq, .H = (int)s->heads,
                           .KV = (int)s->kv_heads, .D = (int)s->head_dim,
                           .scale = 1.0 / sqrt((double)s->head_dim)};
}

static int op_nf4_dequant(bench *b)
{
    return lc_cuda_weight_rows(b->ctx, &b->w_nf4_down, 0, b->s.hidden, LC_DTYPE_BF16, b->dq_out);
}
static int op_matmul_bf16(bench *b)
{
    return lc_cuda_weight_matmul(b->ctx, LC_DTYPE_BF16, b->x, b->N, &b->w_bf16, 0.0f, b->y_ff,
                                 b->scratch);
}
static int op_matmul_nf4(bench *b)
{
    return lc_cuda_weight_matmul(b->ctx, LC_DTYPE_BF16, b->x, b->N, &b->w_nf4_gate, 0.0f,
                                 b->y_ff, b->scratch);
}
static int op_rmsnorm_fwd(bench *b)
{
    return lc_cuda_rmsnorm_fwd(b->ctx, LC_DTYPE_BF16, b->x, b->w_norm, b->N, b->s.hidden, 1e-5,
                               b->y_c, b->rstd);
}
static int op_rmsnorm_bwd(bench *b)
{
    return lc_cuda_rmsnorm_bwd(b->ctx, LC_DTYPE_BF16, b->x, b->w_norm, b->rstd, b->y_c, b->N,
                               b->s.hidden, b->dx_c);
}
static int op_swiglu_fwd(bench *b)
{
    return lc_cuda_swiglu_fwd(b->ctx, LC_DTYPE_BF16, b->g, b->u, b->N * b->s.ff, b->y_ff);
}
static int op_swiglu_bwd(bench *b)
{
    return lc_cuda_swiglu_bwd(b->ctx, LC_DTYPE_BF16, b->g, b->u, b->y_ff, b->N * b->s.ff, b->dg,
                              b->du, NULL);
}
static int op_rope_fwd(bench *b)
{
    return lc_cuda_rope(b->ctx, LC_DTYPE_BF16, b->q, b->rope_out, b->N, (int)b->s.heads,
                        (int)b->s.head_dim, b->pos, b->cos_sin, false, false);
}
static int op_attn_fwd(bench *b)
{
    lc_attn_shape s = attn_shape(b);
    return lc_cuda_attention_fwd(b->ctx, LC_DTYPE_BF16, &s, b->q, b->k, b->v, b->out, b->lse);
}
static int op_attn_bwd(bench *b)
{
    lc_attn_shape s = attn_shape(b);
    return lc_cuda_attention_bwd(b->ctx, LC_DTYPE_BF16, &s, b->q, b->k, b->v, b->out, b->lse,
                                 b->dout, b->dq, b->dk, b->dv, b->scratch);
}
static int op_lm_head_ce(bench *b)
{
    double loss;
    int64_t n;
    if (lc_cuda_lm_head_ce(b->ctx, LC_DTYPE_BF16, b->x, b->N, b->s.hidden, &b->w_head,
                           b->targets, (float)(1.0 / (double)b->N), b->dx_c, b->scratch, &loss,
                           &n, 0.0))
        return -1;
    /* it synchronises: a wrong set-up shows here rather than as a fast time */
    if (n != b->N || !(loss > 0) || !isfinite(loss)) {
        fprintf(stderr, "bench_cuda_ops: lm_head_ce gave loss %g over %lld rows (want > 0 over "
                "%lld)\n", loss, (long long)n, (long long)b->N);
        exit(1);
    }
    return 0;
}
static int op_adamw(bench *b)
{
    lc_adamw_hparams hp = {0.9, 0.999, 1e-8, 0.0};
    float *p = b->p, *m = b->m, *v = b->vv;
    const float *g = b->gr;
    int64_t n = b->s.adam_params;
    return lc_cuda_adamw_update(b->ctx, 1, &p, &g, &m, &v, &n, &hp, ++b->adam_step, 1e-4);
}

typedef struct bench_op {
    const char *name;
    int (*run)(bench *b);
} bench_op;

static const bench_op OPS[] = {
    {"nf4_dequant", op_nf4_dequant}, {"matmul_bf16", op_matmul_bf16},
    {"matmul_nf4", op_matmul_nf4},   {"rmsnorm_fwd", op_rmsnorm_fwd},
    {"rmsnorm_bwd", op_rmsnorm_bwd}, {"swiglu_fwd", op_swiglu_fwd},
    {"swiglu_bwd", op_swiglu_bwd},   {"rope_fwd", op_rope_fwd},
    {"attn_fwd", op_attn_fwd},       {"attn_bwd", op_attn_bwd},
    {"lm_head_ce", op_lm_head_ce},   {"adamw", op_adamw},
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median ms per call of op (see the top of the file). */
static double time_op(bench *b, const bench_op *op)
{
    double *t = malloc((size_t)b->s.reps * sizeof(double));
    if (!t)
        die(b, "out of host memory");
    if (op->run(b) || lc_cuda_sync(b->ctx))
        die(b, op->name);
    for (int r = 0; r < b->s.reps; r++) {
        double t0 = now_s();
        for (int i = 0; i < b->s.iters; i++)
            if (op->run(b))
                die(b, op->name);
        if (lc_cuda_sync(b->ctx))
            die(b, op->name);
        t[r] = (now_s() - t0) * 1e3 / b->s.iters;
    }
    qsort(t, (size_t)b->s.reps, sizeof(double), cmp_double);
    double med = b->s.reps % 2 ? t[b->s.reps / 2]
                               : 0.5 * (t[b->s.reps / 2 - 1] + t[b->s.reps / 2]);
    free(t);
    return med;
}

/* Whether name is in the comma-separated list (NULL: every op). */
static int wanted(const char *list, const char *name)
{
    if (!list)
        return 1;
    size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)); p += n)
        if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
            return 1;
    return 0;
}

static int usage(const char *why)
{
    fprintf(stderr, "bench_cuda_ops: %s\nusage: bench_cuda_ops [--hidden 4096] [--ff 14336] "
            "[--vocab 128256] [--batch 2] [--seq 2048] [--heads 32] [--kv-heads 8] "
            "[--head-dim 128] [--adam-params 40000000] [--reps 10] [--iters 5] "
            "[--ops a,b,...]\n", why);
    return 2;
}

static int parse(int argc, char **argv, bench_shape *s)
{
    *s = (bench_shape){.hidden = 4096, .ff = 14336, .vocab = 128256, .batch = 2, .seq = 2048,
                       .heads = 32, .kv_heads = 8, .head_dim = 128, .adam_params = 40000000,
                       .reps = 10, .iters = 5};
    struct { const char *flag; int64_t *dst; } flags[] = {
        {"--hidden", &s->hidden}, {"--ff", &s->ff}, {"--vocab", &s->vocab},
        {"--batch", &s->batch}, {"--seq", &s->seq}, {"--heads", &s->heads},
        {"--kv-heads", &s->kv_heads}, {"--head-dim", &s->head_dim},
        {"--adam-params", &s->adam_params}};
    int64_t reps = s->reps, iters = s->iters;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            return usage("every option takes a value");
        const char *v = argv[++i];
        if (strcmp(argv[i - 1], "--ops") == 0) {
            s->ops = v;
            continue;
        }
        int64_t *dst = strcmp(argv[i - 1], "--reps") == 0    ? &reps
                       : strcmp(argv[i - 1], "--iters") == 0 ? &iters
                                                             : NULL;
        for (size_t k = 0; !dst && k < sizeof flags / sizeof flags[0]; k++)
            if (strcmp(argv[i - 1], flags[k].flag) == 0)
                dst = flags[k].dst;
        char *end;
        long long x = strtoll(v, &end, 10);
        if (!dst || *end || x < 1 || x > ((int64_t)1 << 40)) {
            fprintf(stderr, "bench_cuda_ops: bad option or value: %s %s\n", argv[i - 1], v);
            return usage("expected --name positive-integer");
        }
        *dst = x;
    }
    s->reps = (int)(reps < 1000 ? reps : 1000);
    s->iters = (int)(iters < 1000 ? iters : 1000);
    if (s->heads % s->kv_heads || s->head_dim > LC_CUDA_ATTN_MAX_D || s->head_dim % 2 ||
        (s->hidden * s->ff) % 64)
        return usage("kv-heads must divide heads, head-dim even and at most 128, "
                     "hidden·ff a multiple of 64 (NF4 blocks)");
    return 0;
}

int main(int argc, char **argv)
{
    bench b = {0};
    int rc = parse(argc, argv, &b.s);
    if (rc)
        return rc;
    if (lc_cuda_device_count() < 1) {
        fprintf(stderr, "bench_cuda_ops: no CUDA device\n");
        return 1;
    }
    lc_error err = {0};
    lc_cuda_device_info info;
    if (lc_cuda_device_query(0, &info, &err) || lc_cuda_ctx_init(&b.ctx, 0, 0, &err)) {
        fprintf(stderr, "bench_cuda_ops: %s\n", err.msg);
        return 1;
    }
    setup(&b);
    for (size_t i = 0; i < sizeof OPS / sizeof OPS[0]; i++)
        if (wanted(b.s.ops, OPS[i].name))
            printf("{\"impl\":\"lorac\",\"op\":\"%s\",\"ms\":%.5f,\"device\":\"%s\"}\n",
                   OPS[i].name, time_op(&b, &OPS[i]), info.name);
    for (int i = 0; i < b.n_bufs; i++)
        lc_cuda_free(b.bufs[i]);
    free(b.bufs);
    lc_cuda_ctx_free(b.ctx);
    return 0;
}

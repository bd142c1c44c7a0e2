/* bench.c — see bench.h. Defaults are the SmolLM-135M shape, LoRA r 16 on
 * all seven linears, micro-batch 4 × 256, f32, the configuration the
 * foundation issue measures against plain PyTorch. */
#include "train/sysinfo.h"
#include "train/bench.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "autograd/cpu/blas.h"
#include "autograd/cpu/dispatch.h"
#include "autograd/cpu/gemm_bf16.h"
#include "autograd/cpu/onednn.h"
#include "data/batch.h"
#include "train/bench_gemm.h"
#include "train/backend_select.h"
#include "train/engine.h"
#include "train/step.h"

typedef struct bench_opts {
    int hidden, layers, heads, kv_heads, intermediate, vocab, rank, batch, seq, steps, warmup;
    int tied;
    int nf4;
    int checkpointing; /* gradient checkpointing: each layer recomputed in backward */
    int dora;   /* DoRA adapters (magnitudes from the random weights) */
    int experts, top_k; /* > 0: a Mixtral of that many experts of FF = --intermediate each */
    int gemm_peak;      /* --gemm-peak: time the step's GEMM shapes instead (bench_gemm.h) */
    lc_dtype dtype;
    lc_device device;   /* --device cpu (default) | cuda | auto */
    lc_compute_dtype compute_dtype; /* --compute-dtype auto (default) | bfloat16 | float32 */
} bench_opts;

static int parse_int(const char *flag, const char *v, int lo, int *out, lc_error *err)
{
    char *end;
    long x = strtol(v ? v : "", &end, 10);
    if (!v || *end || x < lo || x > (1 << 24))
        return lc_error_set(err, "%s: expected an integer >= %d, got '%s'", flag, lo, v ? v : "");
    *out = (int)x;
    return 0;
}

static int parse_bench_args(int argc, char **argv, bench_opts *o, lc_error *err)
{
    *o = (bench_opts){.hidden = 576, .layers = 30, .heads = 9, .kv_heads = 3,
                      .intermediate = 1536, .vocab = 49152, .rank = 16, .batch = 4,
                      .seq = 256, .steps = 3, .warmup = 1, .tied = 1, .dtype = LC_DTYPE_F32,
                      .top_k = 2, .device = LC_DEVICE_CPU};
    struct { const char *flag; int *dst; int lo; } flags[] = {
        {"--hidden", &o->hidden, 2}, {"--layers", &o->layers, 1}, {"--heads", &o->heads, 1},
        {"--kv-heads", &o->kv_heads, 1}, {"--intermediate", &o->intermediate, 1},
        {"--vocab", &o->vocab, 2}, {"--rank", &o->rank, 1}, {"--batch", &o->batch, 1},
        {"--seq", &o->seq, 2}, {"--steps", &o->steps, 1}, {"--warmup", &o->warmup, 0},
        {"--tied", &o->tied, 0}, {"--experts", &o->experts, 0}, {"--top-k", &o->top_k, 1}};
    struct { const char *flag; int *dst; } switches[] = {
        {"--nf4", &o->nf4}, {"--dora", &o->dora}, {"--checkpointing", &o->checkpointing},
        {"--gemm-peak", &o->gemm_peak}};
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--bf16") == 0) {
            o->dtype = LC_DTYPE_BF16;
            continue;
        }
        bool is_switch = false;
        for (size_t k = 0; k < sizeof switches / sizeof switches[0]; k++)
            if (strcmp(argv[i], switches[k].flag) == 0)
                *switches[k].dst = 1, is_switch = true;
        if (is_switch)
            continue;
        if (strcmp(argv[i], "--device") == 0) {
            const char *v = i + 1 < argc ? argv[++i] : "";
            if (lc_device_from_name(v, &o->device))
                return lc_error_set(err, "--device: expected cpu, cuda or auto, got '%s'", v);
            continue;
        }
        if (strcmp(argv[i], "--compute-dtype") == 0) {
            const char *v = i + 1 < argc ? argv[++i] : "";
            if (lc_compute_dtype_from_name(v, &o->compute_dtype))
                return lc_error_set(err, "--compute-dtype: expected auto, bfloat16 or float32, "
                                    "got '%s'", v);
            continue;
        }
        bool found = false;
        for (size_t k = 0; k < sizeof flags / sizeof flags[0]; k++)
            if (strcmp(argv[i], flags[k].flag) == 0) {
                if (parse_int(flags[k].flag, i + 1 < argc ? argv[i + 1] : NULL, flags[k].lo,
                              flags[k].dst, err))
                    return -1;
                i++;
                found = true;
            }
        if (!found)
            return lc_error_set(err, "bench: unknown option '%s'", argv[i]);
    }
    if (o->hidden % o->heads || o->heads % o->kv_heads)
        return lc_error_set(err, "bench: heads must divide hidden and kv-heads must divide heads");
    if (o->experts && (o->top_k > o->experts || o->dora))
        return lc_error_set(err, "bench: --experts needs --top-k <= experts and no --dora");
    return 0;
}

/* A Llama of the benchmark's shape, or with --experts a Mixtral: every
 * MLP E experts of FF = --intermediate, each token routed to --top-k. */
static lc_model_config bench_model_config(const bench_opts *o)
{
    lc_model_config cfg = {.arch = LC_ARCH_LLAMA, .hidden_size = o->hidden,
                           .intermediate_size = o->intermediate, .n_layers = o->layers,
                           .n_heads = o->heads, .n_kv_heads = o->kv_heads,
                           .head_dim = o->hidden / o->heads, .vocab_size = o->vocab,
                           .max_position_embeddings = o->seq, .rms_norm_eps = 1e-5,
                           .tie_word_embeddings = o->tied != 0, .dtype = o->dtype,
                           .rope_type = LC_ROPE_DEFAULT, .rope_theta = 10000};
    strcpy(cfg.model_type, "llama");
    if (o->experts) {
        cfg.arch = LC_ARCH_MIXTRAL;
        strcpy(cfg.model_type, "mixtral");
        cfg.n_experts = o->experts;
        cfg.n_experts_per_tok = o->top_k;
        cfg.moe_intermediate_size = o->intermediate;
        cfg.moe_renorm = true;
    }
    return cfg;
}

/* Everything one timed step uses. Zeroed, every part may be freed. */
typedef struct bench_state {
    lc_model model;
    lc_lora lora;
    lc_backend *be;
    lc_engine eng;       /* where the steps run (the trainer's set-up) */
    lc_adamw opt;        /* on be */
    lc_batch_buf buf;
    /* a device: its free bytes once the backend (its context) exists, and the
     * least seen since (after set-up and after every step) */
    size_t dev_free0, dev_free_min;
} bench_state;

static void bench_free(bench_state *b)
{
    lc_batch_buf_free(&b->buf);
    lc_adamw_free(&b->opt);
    lc_engine_close(&b->eng);
    lc_backend_close(b->be);
    lc_lora_free(&b->lora);
    lc_model_free(&b->model);
}

/* The random model (NF4 when asked) and a LoRA of rank r on every linear
 * (and every expert), B small and non-zero so every gradient path carries real
 * numbers. */
static int bench_model(const bench_opts *o, bench_state *b, lc_error *err)
{
    lc_model_config cfg = bench_model_config(o);
    if (lc_model_init_random(&b->model, &cfg, o->dtype, 1234, err))
        return -1;
    lc_model_load_opts qo = {.nf4 = true, .nf4_blocksize = 64, .nf4_double_quant = true};
    if (o->nf4 && lc_model_quantize_nf4(&b->model, &qo, err))
        return -1;
    lc_lora_config lc = {.r = o->rank, .alpha = 2.0 * o->rank, .use_dora = o->dora,
                         .all_linear = true};
    /* MoE: the experts adapted too (lora_target_parameters), as dense MLPs are */
    lc.targets[LC_MOD_EXPERTS_GATE_UP] = lc.targets[LC_MOD_EXPERTS_DOWN] = o->experts > 0;
    if (lc_model_prepare_rope(&b->model, o->seq, err) ||
        lc_lora_init(&b->lora, &cfg, &lc, 42, err))
        return -1;
    for (size_t i = 0; i < (size_t)b->lora.n_layers * LC_MOD_COUNT; i++) {
        const lc_tensor *B = b->lora.adapters[i].B;
        for (int64_t j = 0; B && j < B->numel; j++)
            B->data[j] = (lc_real)(1e-3 * ((j % 7) - 3));
    }
    b->model.checkpoint_layers = o->checkpointing != 0;
    return lc_model_dora_init(&b->model, &b->lora, err);
}

/* Samples the device's free memory (no-op on the CPU). */
static void bench_sample_device(bench_state *b)
{
    if (!b->be || !b->be->device)
        return;
    size_t free_b = 0;
    b->be->mem_info(b->be, &free_b, NULL);
    if (free_b < b->dev_free_min)
        b->dev_free_min = free_b;
}

/* The backend, first: a missing device is said before minutes of building
 * a large random model. On a device, its free memory from here on. */
static int bench_backend(const bench_opts *o, bench_state *b, lc_error *err)
{
    if (lc_backend_open(o->device, o->compute_dtype, &b->be, err))
        return -1;
    if (b->be->device) {
        b->be->mem_info(b->be, &b->dev_free0, NULL);
        b->dev_free_min = b->dev_free0;
    }
    return 0;
}

/* The step's memory as the trainer reserves it (the engine: plan, arenas and
 * tape on the backend, the model uploaded to a device; AdamW state there),
 * and one micro-batch of pseudo-random tokens, every one supervised. */
static int bench_batch(const bench_opts *o, bench_state *b, lc_error *err)
{
    if (lc_engine_open(&b->eng, b->be, &b->model, &b->lora, o->batch, o->seq, NULL, err) ||
        lc_adamw_init_on(&b->opt, b->lora.n_params, b->be, err) ||
        lc_batch_buf_init(&b->buf, o->batch, o->seq, err))
        return -1;
    int32_t *ids = malloc((size_t)o->seq * sizeof(int32_t));
    if (!ids)
        return lc_error_set(err, "bench: out of memory for a row of %d tokens", o->seq);
    uint64_t s = 99;
    for (int r = 0; r < o->batch; r++) {
        for (int t = 0; t < o->seq; t++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            ids[t] = (int32_t)((s >> 33) % (uint64_t)o->vocab);
        }
        lc_batch_buf_put(&b->buf, r, ids, ids, o->seq);
    }
    free(ids);
    bench_sample_device(b);
    return 0;
}

/* warmup + steps optimizer steps after setup_s seconds of set-up; prints
 * the JSON line. Fails when the device reports a failure. */
static int bench_run(const bench_opts *o, bench_state *b, double setup_s, FILE *out,
                     lc_error *err)
{
    lc_batch batch = {b->buf.B, b->buf.T, b->buf.ids, b->buf.targets, b->buf.positions, NULL};
    lc_adamw_hparams hp = {0.9, 0.999, 1e-8, 0.0};
    int64_t nsup = lc_batch_buf_supervised(&b->buf);
    double total_time = 0, loss = 0;
    const lc_memory_plan *plan = &b->eng.plan;
    fprintf(out, "{\"impl\":\"lorac\",\"device\":\"%s\",\"compute_dtype\":\"%s\","
            "\"checkpointing\":%s,\"threads\":%d,\"cpu_kernels\":\"%s\","
            "\"blas_core\":\"%s\",\"weights\":\"%s\",\"weight_mib\":%.1f,\"setup_s\":%.2f,"
            "\"step_s\":[",
            b->be->name, lc_dtype_torch_name(b->be->gemm), o->checkpointing ? "true" : "false",
            omp_get_max_threads(), lc_cpu_isa(), lc_blas_core(),
            o->nf4 ? "NF4-dq" : lc_dtype_name(o->dtype),
            lc_model_weight_bytes(&b->model) / 1048576.0, setup_s);
    for (int step = 0; step < o->warmup + o->steps; step++) {
        double t0 = lc_now_s();
        int64_t n;
        loss = lc_step_micro(b->eng.model, &b->eng.tape, &batch, b->eng.lora,
                             (lc_real)(1.0 / nsup), &n) / n;
        lc_step_optimizer(b->eng.lora, &b->opt, &hp, 1e-4, 1.0,
                          lc_grad_norm_on(b->be, b->eng.lora->grads, b->eng.lora->n_params));
        if (b->be->sync(b->be, err))
            return lc_error_prefix(err, "bench step %d on %s", step + 1, b->be->name);
        double dt = lc_now_s() - t0;
        bench_sample_device(b);
        if (step >= o->warmup) {
            total_time += dt;
            fprintf(out, "%s%.3f", step > o->warmup ? "," : "", dt);
        }
    }
    double tokens = (double)o->batch * o->seq * o->steps;
    fprintf(out, "],\"tokens_per_s\":%.1f,\"peak_rss_gib\":%.3f,\"loss\":%.4f,"
            "\"step_arena_mib\":%.1f,\"grad_pool_mib\":%.1f,\"plan_mib\":%.1f,"
            "\"plan_arena_mib\":%.1f,\"plan_grad_mib\":%.1f",
            tokens / total_time, lc_peak_rss_bytes() / 1073741824.0, loss,
            b->eng.tape.data->peak / 1048576.0, b->eng.tape.grad_arena.peak / 1048576.0,
            plan->total / 1048576.0, plan->arena_peak / 1048576.0, plan->grad_peak / 1048576.0);
    /* on the CPU: who ran the frozen-weight GEMMs in bf16 (engine and oneDNN's
     * implementation) and attention's, or "off" (float32); f32_gemm is the
     * library of the f32 products (oneDNN runs dy·W on its BLAS-like GEMM) */
    lc_cpu_bf16_engine eng =
        b->be->gemm == LC_DTYPE_BF16 ? lc_cpu_bf16_engine_current() : LC_CPU_BF16_OFF;
    if (!b->be->device) {
        char gemm[512];
        snprintf(gemm, sizeof gemm, "%s", lc_cpu_bf16_engine_name(eng));
        if (eng == LC_CPU_BF16_ONEDNN) {
            const char *api = lc_cpu_bf16_grad_gemm_api_use();
            const char *fold = lc_cpu_bf16_fold_rule(), *groups = lc_cpu_bf16_groups_rule();
            snprintf(gemm + strlen(gemm), sizeof gemm - strlen(gemm), " %s%s%s%s",
                     lc_onednn_last_impl(LC_DTYPE_BF16), api ? " (" : "", api ? api : "",
                     api ? ": its BLAS-like GEMM)" : "");
            snprintf(gemm + strlen(gemm), sizeof gemm - strlen(gemm),
                     "; LoRA terms in the GEMMs: %s%s%s", fold ? fold : "never",
                     groups ? "; q/k/v and gate/up GEMMs shared: " : "", groups ? groups : "");
        }
        fprintf(out, ",\"bf16_gemm\":\"%s\",\"bf16_attention\":\"%s\",\"f32_gemm\":\"%s\"",
                gemm, eng == LC_CPU_BF16_OFF ? "off" : lc_cpu_attn_gemm_bf16_kernel(),
                lc_cpu_gemm_onednn() ? "onednn" : "openblas");
    }
    /* the step's GEMM FLOPs, counted from the shape (DoRA's and MoE's are not) */
    lc_gemm_flops gf;
    lc_error ferr;
    if (!o->dora && !lc_gemm_flops_count(&b->model.cfg, o->rank, o->batch, o->seq, nsup,
                                         o->checkpointing, &gf, &ferr))
        fprintf(out, ",\"gemm_gflop\":%.9g", gf.total / 1e9);
    else
        fprintf(out, ",\"gemm_gflop\":null");
    if (b->be->device)
        fprintf(out, ",\"device_peak_mib\":%.1f,\"device_peak_what\":\"device bytes in use at "
                "peak beyond the CUDA context and its 32 MiB cuBLASLt workspace (cudaMemGetInfo "
                "after the context was made minus the least free after set-up and every step: "
                "weights, adapters, AdamW, the step arenas as reserved, kernel buffers)\"",
                (double)(b->dev_free0 - b->dev_free_min) / 1048576.0);
    fprintf(out, "}\n");
    return 0;
}

int lc_bench_main(int argc, char **argv, FILE *out, lc_error *err)
{
    bench_opts o;
    if (parse_bench_args(argc, argv, &o, err))
        return -1;
    if (o.gemm_peak) {
        lc_model_config cfg = bench_model_config(&o);
        return lc_bench_gemm_peak(&cfg, (int64_t)o.batch * o.seq, out, err);
    }
    bench_state b;
    memset(&b, 0, sizeof b);
    double t0 = lc_now_s();
    int rc = bench_backend(&o, &b, err) || bench_model(&o, &b, err) || bench_batch(&o, &b, err)
                 ? -1 : 0;
    if (rc == 0)
        rc = bench_run(&o, &b, lc_now_s() - t0, out, err);
    bench_free(&b);
    return rc;
}

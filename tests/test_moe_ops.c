/* test_moe_ops.c — lorac's MoE block (autograd/moe_block.h) in float32
 * against HF transformers + PEFT, and its speed next to a dense SwiGLU MLP.
 *
 * Reference: tests/fixtures/tiny-{mixtral,qwen3moe}/ref_moe_block.safetensors
 * (scripts/make_moe_fixtures.py): layer 0's MixtralSparseMoeBlock /
 * Qwen3MoeSparseMoeBlock with the PEFT target_parameters adapter of
 * lora_init attached, float64: the input x, an upstream gradient dy, and per
 * routing variant the chosen experts, the output y, dx and the gradients of
 * the four stacked expert LoRA tensors. Here the block is built from the
 * fixture's per-expert base weights (as save_pretrained writes them) and the
 * PEFT tensors converted to per-expert A_e / B_e (lc_moe_lora_b_from_peft),
 * run forward and backward, and the gradients of the per-expert tensors
 * scattered back into PEFT's layout for the comparison.
 *
 * Bench (LORAC_MOE_BENCH=1): forward + backward of the block on a
 * Mixtral-like shape (C 512, 8 experts of width 1792, top-2, 1024 tokens,
 * LoRA r 8 on every expert) vs a dense SwiGLU MLP of width 2·1792 = the same
 * active parameters per token (same LoRA rank), timed in the same run. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "autograd/moe_block.h"
#include "data/safetensors.h"
#include "tests/helpers.h"

/* the fixtures' shapes: experts, top-k, LoRA rank, hidden, expert width, tokens */
#define FX_E 4
#define FX_K 2
#define FX_R 4
#define FX_C 64
#define FX_FF 32
#define FX_N 16
#define LORA_SCALE 2.0f /* alpha 8 / r 4 */

/* what float32 reaches vs the float64 reference (norm-wise relative, both
 * fixtures and variants): y ≤ 1.7e-7, dx ≤ 2.1e-7, LoRA grads ≤ 2.1e-7,
 * routing weights ≤ 9.3e-8 (see the log); the bounds are ~10x that */
#define TOL_Y 2e-6
#define TOL_DX 2e-6
#define TOL_GRAD 3e-6
#define TOL_W 1e-6

typedef struct moe_fx {
    lc_st_file model, lora, ref;
    lc_weight router, gate[FX_E], up[FX_E], down[FX_E];
    lc_tensor p[4][FX_E];        /* A_gu, B_gu, A_dn, B_dn per expert (params) */
    lc_lora_adapter lo[2][FX_E]; /* gate_up, down */
    lc_moe_expert ex[FX_E];
    lc_arena arena;
    lc_tape tape;
} moe_fx;

/* PEFT names of the stacked tensors: gate_up is the inner ParamWrapper. */
static const char *const LORA_NAMES[4] = {
    "base_model.model.model.layers.0.mlp.experts.base_layer.lora_A.weight",
    "base_model.model.model.layers.0.mlp.experts.base_layer.lora_B.weight",
    "base_model.model.model.layers.0.mlp.experts.lora_A.weight",
    "base_model.model.model.layers.0.mlp.experts.lora_B.weight",
};
/* per expert: rows and cols of A_gu, B_gu, A_dn, B_dn */
static const int64_t P_ROWS[4] = {FX_R, 2 * FX_FF, FX_R, FX_C}, P_COLS[4] = {FX_C, FX_R, FX_FF, FX_R};

static const lc_st_tensor *need(const lc_st_file *f, const char *name, lc_dtype dt,
                                uint64_t numel)
{
    const lc_st_tensor *t = lc_st_find(f, name);
    cr_assert(t, "%s: tensor %s missing", f->path, name);
    cr_assert_eq(t->dtype, dt, "%s: %s has dtype %s", f->path, name, lc_dtype_name(t->dtype));
    cr_assert_eq(t->numel, numel, "%s: %s has %llu elements, want %llu", f->path, name,
                 (unsigned long long)t->numel, (unsigned long long)numel);
    return t;
}

static lc_weight f32_weight(const lc_st_file *f, const char *name, int64_t rows, int64_t cols)
{
    const lc_st_tensor *t = need(f, name, LC_DTYPE_F32, (uint64_t)(rows * cols));
    return (lc_weight){.data = t->data, .dtype = LC_DTYPE_F32, .rows = rows, .cols = cols};
}

/* A float copy of a float64 reference tensor (malloc'd). */
static float *ref_f32(const moe_fx *f, const char *name, uint64_t numel)
{
    const double *d = need(&f->ref, name, LC_DTYPE_F64, numel)->data;
    float *p = malloc(numel * sizeof(float));
    cr_assert_not_null(p);
    for (uint64_t i = 0; i < numel; i++)
        p[i] = (float)d[i];
    return p;
}

static void fx_open(moe_fx *f, const char *dir, bool mixtral)
{
    memset(f, 0, sizeof *f);
    lc_error err;
    char path[256];
    snprintf(path, sizeof path, "%s/model/model.safetensors", dir);
    cr_assert_eq(lc_st_open(&f->model, lc_test_fixture(path), &err), 0, "%s", err.msg);
    snprintf(path, sizeof path, "%s/lora_init.safetensors", dir);
    cr_assert_eq(lc_st_open(&f->lora, lc_test_fixture(path), &err), 0, "%s", err.msg);
    snprintf(path, sizeof path, "%s/ref_moe_block.safetensors", dir);
    cr_assert_eq(lc_st_open(&f->ref, lc_test_fixture(path), &err), 0, "%s", err.msg);

    const char *pre = mixtral ? "model.layers.0.block_sparse_moe" : "model.layers.0.mlp";
    static const char *const mix[3] = {"w1", "w3", "w2"}, *const qw[3] = {"gate_proj", "up_proj",
                                                                          "down_proj"};
    const char *const *nm = mixtral ? mix : qw;
    char name[160];
    snprintf(name, sizeof name, "%s.gate.weight", pre);
    f->router = f32_weight(&f->model, name, FX_E, FX_C);
    for (int e = 0; e < FX_E; e++) {
        snprintf(name, sizeof name, "%s.experts.%d.%s.weight", pre, e, nm[0]);
        f->gate[e] = f32_weight(&f->model, name, FX_FF, FX_C);
        snprintf(name, sizeof name, "%s.experts.%d.%s.weight", pre, e, nm[1]);
        f->up[e] = f32_weight(&f->model, name, FX_FF, FX_C);
        snprintf(name, sizeof name, "%s.experts.%d.%s.weight", pre, e, nm[2]);
        f->down[e] = f32_weight(&f->model, name, FX_C, FX_FF);
    }
    /* PEFT stacks → per-expert params: A_e = rows e·R.., B_e = columns e, e+E, … */
    for (int s = 0; s < 4; s++) {
        bool is_b = s % 2 == 1;
        int64_t rows = P_ROWS[s], cols = P_COLS[s];
        const float *src = need(&f->lora, LORA_NAMES[s], LC_DTYPE_F32,
                                (uint64_t)(FX_E * rows * cols))->data;
        for (int e = 0; e < FX_E; e++) {
            lc_tensor *t = &f->p[s][e];
            int64_t shape[2] = {rows, cols};
            lc_tensor_set_shape(t, 2, shape);
            t->data = malloc((size_t)(rows * cols) * sizeof(float));
            t->grad = calloc((size_t)(rows * cols), sizeof(float));
            cr_assert(t->data && t->grad);
            t->requires_grad = t->is_param = true;
            if (is_b)
                lc_moe_lora_b_from_peft(src, rows, FX_R, FX_E, e, t->data);
            else
                memcpy(t->data, src + e * rows * cols, (size_t)(rows * cols) * sizeof(float));
        }
    }
    for (int e = 0; e < FX_E; e++) {
        f->lo[0][e] = (lc_lora_adapter){.A = &f->p[0][e], .B = &f->p[1][e], .scale = LORA_SCALE};
        f->lo[1][e] = (lc_lora_adapter){.A = &f->p[2][e], .B = &f->p[3][e], .scale = LORA_SCALE};
        f->ex[e] = (lc_moe_expert){&f->gate[e], &f->up[e], &f->down[e], &f->lo[0][e], &f->lo[1][e]};
    }
    cr_assert_eq(lc_arena_init(&f->arena, "test_moe_ops", (size_t)64 << 20, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_tape_init(&f->tape, &f->arena, (size_t)16 << 20, &err), 0, "%s", err.msg);
}

static void fx_close(moe_fx *f)
{
    lc_tape_free(&f->tape);
    lc_arena_free(&f->arena);
    for (int s = 0; s < 4; s++)
        for (int e = 0; e < FX_E; e++) {
            free(f->p[s][e].data);
            free(f->p[s][e].grad);
        }
    lc_st_close(&f->model);
    lc_st_close(&f->lora);
    lc_st_close(&f->ref);
}

/* Gradient of stacked tensor s in PEFT's layout, from the per-expert grads. */
static float *peft_grad(const moe_fx *f, int s)
{
    int64_t rows = P_ROWS[s], cols = P_COLS[s];
    float *g = malloc((size_t)(FX_E * rows * cols) * sizeof(float));
    cr_assert_not_null(g);
    for (int e = 0; e < FX_E; e++) {
        const float *ge = f->p[s][e].grad;
        for (int64_t o = 0; o < rows; o++)
            for (int64_t j = 0; j < cols; j++) {
                if (s % 2 == 1) /* B [out, R·E]: column j·E + e */
                    g[o * FX_R * FX_E + j * FX_E + e] = ge[o * FX_R + j];
                else /* A [R·E, in]: row e·R + o */
                    g[(e * rows + o) * cols + j] = ge[o * cols + j];
            }
    }
    return g;
}

static void check_variant(const char *dir, bool mixtral, const char *variant, bool renorm)
{
    moe_fx f;
    fx_open(&f, dir, mixtral);
    char name[200];
    lc_tensor *x = lc_tape_tensor2(&f.tape, FX_N, FX_C);
    float *xr = ref_f32(&f, "x", FX_N * FX_C);
    memcpy(x->data, xr, sizeof(float) * FX_N * FX_C);
    x->requires_grad = true;
    x->grad = NULL;
    lc_moe_block b = {.router = &f.router, .experts = f.ex, .E = FX_E,
                      .route = {LC_ROUTER_SOFTMAX_THEN_TOPK, FX_K, renorm}};
    lc_moe_route *route;
    lc_tensor *y = lc_moe_block_forward(&f.tape, &b, x, &route);
    float *dy = ref_f32(&f, "dy", FX_N * FX_C);
    memcpy(lc_tape_grad(&f.tape, y), dy, sizeof(float) * FX_N * FX_C);
    lc_tensor *w_t = NULL; /* routing weights: the combine's first input */
    for (size_t i = 0; i < f.tape.n_nodes; i++)
        if (!strcmp(f.tape.nodes[i].name, "moe_combine"))
            w_t = f.tape.nodes[i].in[0];
    cr_assert_not_null(w_t);
    float w_got[FX_N * FX_K];
    memcpy(w_got, w_t->data, sizeof w_got);
    lc_tape_walk_back(&f.tape, 0);

    snprintf(name, sizeof name, "%s.ids", variant);
    const int32_t *ids = need(&f.ref, name, LC_DTYPE_I32, FX_N * FX_K)->data;
    for (int i = 0; i < FX_N * FX_K; i++)
        cr_expect_eq(route->expert[i], ids[i], "%s %s: token %d slot %d: expert %d, HF %d", dir,
                     variant, i / FX_K, i % FX_K, route->expert[i], ids[i]);
    int used = 0;
    for (int e = 0; e < FX_E; e++)
        used += lc_moe_rows(route, e) > 0;
    cr_expect_eq(used, FX_E, "%s: every expert should get tokens (the fixture is not degenerate)", dir);

    struct { const char *what; const float *got; uint64_t n; double tol; } cmp[6] = {
        {"w", w_got, FX_N * FX_K, TOL_W}, {"y", y->data, FX_N * FX_C, TOL_Y}, {"dx", x->grad, FX_N * FX_C, TOL_DX}};
    float *gp[4];
    for (int s = 0; s < 4; s++)
        gp[s] = peft_grad(&f, s);
    double worst_grad = 0;
    for (int i = 0; i < 3 + 4; i++) {
        const char *what = i < 3 ? cmp[i].what : LORA_NAMES[i - 3];
        uint64_t n = i < 3 ? cmp[i].n : (uint64_t)(FX_E * P_ROWS[i - 3] * P_COLS[i - 3]);
        snprintf(name, sizeof name, i < 3 ? "%s.%s" : "%s.%s.grad", variant, what);
        float *ref = ref_f32(&f, name, n);
        double err = lc_test_rel_err_f32(i < 3 ? cmp[i].got : gp[i - 3], ref, n);
        double tol = i < 3 ? cmp[i].tol : TOL_GRAD;
        if (i < 3)
            cr_log_info("%s %-6s %-3s rel err %.3e", dir, variant, what, err);
        else if (err > worst_grad)
            worst_grad = err;
        cr_expect_lt(err, tol, "%s %s: %s rel err %.3e >= %.1e", dir, variant, name, err, tol);
        free(ref);
    }
    cr_log_info("%s %-6s LoRA grads worst rel err %.3e", dir, variant, worst_grad);
    for (int s = 0; s < 4; s++)
        free(gp[s]);
    free(xr);
    free(dy);
    fx_close(&f);
}

Test(moe_block_fixture, mixtral) { check_variant("tiny-mixtral", true, "renorm", true); }
Test(moe_block_fixture, qwen3moe_norm_topk) { check_variant("tiny-qwen3moe", false, "renorm", true); }
Test(moe_block_fixture, qwen3moe_no_norm_topk) { check_variant("tiny-qwen3moe", false, "plain", false); }

/* A B stacked by PEFT ([out, R·E], column j·E + e) → expert e's [out, R]. */
Test(moe_block_fixture, peft_b_layout)
{
    float peft[2 * 3 * 4], dst[2 * 3];
    for (int i = 0; i < 24; i++)
        peft[i] = (float)i;
    lc_moe_lora_b_from_peft(peft, 2, 3, 4, 1, dst); /* out 2, R 3, E 4, expert 1 */
    const float want[6] = {1, 5, 9, 13, 17, 21};
    for (int i = 0; i < 6; i++)
        cr_expect_eq(dst[i], want[i], "element %d: %g, want %g", i, dst[i], want[i]);
}

/* ---- bench ---- */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* every bench allocation, freed at the end */
static void *bench_mem[256];
static int bench_n;

static void *bench_alloc(size_t bytes)
{
    cr_assert_lt(bench_n, 256);
    void *p = calloc(1, bytes);
    cr_assert_not_null(p);
    return bench_mem[bench_n++] = p;
}

static float *rnd(int64_t n, float scale, uint64_t *s)
{
    float *p = bench_alloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        p[i] = scale * (float)((double)(lc_test_splitmix64(s) >> 11) * 0x1.0p-53 * 2 - 1);
    return p;
}

static lc_tensor *param(int64_t rows, int64_t cols, uint64_t *s)
{
    lc_tensor *t = bench_alloc(sizeof *t);
    int64_t shape[2] = {rows, cols};
    lc_tensor_set_shape(t, 2, shape);
    t->data = rnd(rows * cols, 0.05f, s);
    t->grad = bench_alloc((size_t)(rows * cols) * sizeof(float));
    t->requires_grad = t->is_param = true;
    return t;
}

static lc_weight bw(int64_t rows, int64_t cols, uint64_t *s)
{
    return (lc_weight){.data = rnd(rows * cols, 1 / sqrtf((float)cols), s), .dtype = LC_DTYPE_F32,
                       .rows = rows, .cols = cols};
}

typedef struct bench_dense {
    lc_weight g, u, d;
    lc_lora_adapter lg, lu, ld;
} bench_dense;

static lc_tensor *dense_forward(lc_tape *t, bench_dense *m, lc_tensor *x)
{
    lc_linear gu[2] = {{.W = &m->g, .lora = &m->lg}, {.W = &m->u, .lora = &m->lu}};
    lc_linear_input in = {.kind = LC_INPUT_PLAIN, .x = x};
    lc_tensor *h[2], *y;
    lc_op_linears(t, &in, gu, 2, NULL, h);
    lc_linear dn = {.W = &m->d, .lora = &m->ld};
    lc_linear_input sw = {.kind = LC_INPUT_SWIGLU, .x = h[0], .up = h[1]};
    lc_op_linears(t, &sw, &dn, 1, NULL, &y);
    return y;
}

Test(moe_bench, block_vs_dense)
{
    if (!getenv("LORAC_MOE_BENCH"))
        cr_skip_test("set LORAC_MOE_BENCH=1 to time the MoE block against a dense MLP");
    enum { BC = 512, BE = 8, BK = 2, BFF = 1792, BN = 1024, BR = 8, REPS = 5 };
    uint64_t s = 42;
    lc_weight router = bw(BE, BC, &s);
    lc_moe_expert ex[BE];
    lc_lora_adapter lo[2 * BE];
    lc_weight w[3 * BE];
    for (int e = 0; e < BE; e++) {
        w[3 * e] = bw(BFF, BC, &s), w[3 * e + 1] = bw(BFF, BC, &s), w[3 * e + 2] = bw(BC, BFF, &s);
        lo[2 * e] = (lc_lora_adapter){.A = param(BR, BC, &s), .B = param(2 * BFF, BR, &s), .scale = 2};
        lo[2 * e + 1] = (lc_lora_adapter){.A = param(BR, BFF, &s), .B = param(BC, BR, &s), .scale = 2};
        ex[e] = (lc_moe_expert){&w[3 * e], &w[3 * e + 1], &w[3 * e + 2], &lo[2 * e], &lo[2 * e + 1]};
    }
    bench_dense d = {.g = bw(BK * BFF, BC, &s), .u = bw(BK * BFF, BC, &s), .d = bw(BC, BK * BFF, &s)};
    d.lg = (lc_lora_adapter){.A = param(BR, BC, &s), .B = param(BK * BFF, BR, &s), .scale = 2};
    d.lu = (lc_lora_adapter){.A = param(BR, BC, &s), .B = param(BK * BFF, BR, &s), .scale = 2};
    d.ld = (lc_lora_adapter){.A = param(BR, BK * BFF, &s), .B = param(BC, BR, &s), .scale = 2};
    lc_moe_block b = {.router = &router, .experts = ex, .E = BE,
                      .route = {LC_ROUTER_SOFTMAX_THEN_TOPK, BK, true}};
    lc_arena arena;
    lc_tape tape;
    lc_error err;
    cr_assert_eq(lc_arena_init(&arena, "moe bench", (size_t)2 << 30, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_tape_init(&tape, &arena, (size_t)1 << 30, &err), 0, "%s", err.msg);
    float *xv = rnd(BN * BC, 1, &s), *dyv = rnd(BN * BC, 1, &s);
    double best[2] = {1e30, 1e30};
    for (int rep = 0; rep < REPS + 1; rep++) {
        for (int which = 0; which < 2; which++) {
            lc_tape_reset(&tape);
            tape.grad_enabled = true;
            lc_tensor *x = lc_tape_tensor2(&tape, BN, BC);
            memcpy(x->data, xv, sizeof(float) * BN * BC);
            x->requires_grad = true;
            x->grad = NULL;
            double t0 = now_s();
            lc_tensor *y = which ? dense_forward(&tape, &d, x) : lc_moe_block_forward(&tape, &b, x, NULL);
            memcpy(lc_tape_grad(&tape, y), dyv, sizeof(float) * BN * BC);
            lc_tape_walk_back(&tape, 0);
            double dt = now_s() - t0;
            if (rep > 0 && dt < best[which]) /* rep 0 warms up */
                best[which] = dt;
        }
    }
    printf("moe bench: C %d, %d experts x FF %d, top-%d, N %d, LoRA r %d, forward+backward: "
           "MoE block %.1f ms, dense SwiGLU FF %d %.1f ms, ratio %.2f\n",
           BC, BE, BFF, BK, BN, BR, 1e3 * best[0], BK * BFF, 1e3 * best[1], best[0] / best[1]);
    cr_log_info("MoE / dense time ratio %.2f", best[0] / best[1]);
    cr_expect_lt(best[0] / best[1], 3.0, "the MoE block is far slower than its dense equivalent");
    lc_tape_free(&tape);
    lc_arena_free(&arena);
    while (bench_n > 0)
        free(bench_mem[--bench_n]);
}

/* test_model_fixture.c — the whole model against Hugging Face transformers +
 * PEFT (tests/fixtures/tiny-{llama,mistral,qwen2,qwen3,gemma2,gemma3,phi3},
 * computed in float64 by scripts/make_fixtures.py): hidden states, logits,
 * loss and every LoRA gradient for rows 0–1 of train.jsonl, starting from
 * adapter_init. Qwen2 exercises q/k/v biases, Qwen3 the per-head q/k
 * RMSNorm, llama GQA; Gemma 2 GeGLU, (1 + w) and post-norms, soft-capping,
 * query_pre_attn_scalar and alternating sliding windows shorter than the
 * rows; Gemma 3 its q/k norms and local/global RoPE; Phi-3 the fused
 * qkv_proj / gate_up_proj adapters and longrope past its original context. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/safetensors.h"
#include "fixture_rows.h"
#include "helpers.h"
#include "train/lora.h"
#include "train/model.h"
#include "autograd/moe_block.h"

/* Tolerances: about 10x the worst relative error measured over the four
 * fixtures (float32 here against float64 there), so that a 100x loss of
 * precision fails. Measured with every OpenBLAS kernel this x86 machine can
 * run (OPENBLAS_CORETYPE = SkylakeX, Haswell, Zen, Sandybridge, Nehalem,
 * Core2, Prescott, Atom; 1 and 2 OpenMP threads give the same), worst of them:
 *                      llama    mistral  qwen2    qwen3
 *   hidden states      6.06e-7  3.94e-7  4.47e-7  5.27e-7
 *   logits             6.08e-7  4.14e-7  4.68e-7  5.37e-7
 *   loss (double sum)  1.41e-7  2.79e-8  3.16e-8  4.29e-8
 *   loss (f32 tensor)  1.48e-7  0        7.57e-8  7.53e-8
 *   worst LoRA grad    1.40e-6  1.12e-6  1.11e-6  1.29e-6  (per tensor, norm-wise)
 * (the SkylakeX kernels, this machine's default, give 4.6e-7 for logits,
 * 1.37e-7 for the loss and 1.09e-6 for gradients) */
#define TOL_HIDDEN_F32 5e-6
#define TOL_LOGITS_F32 5e-6
#define TOL_LOSS_F32 1.5e-6
#define TOL_GRAD_F32 1.5e-5
/* compute_dtype: bfloat16 (LORAC_TEST_BACKEND=cuda-bf16: the simulator, or a
 * GPU) — bf16 activations and frozen weights, f32 LoRA masters and
 * gradients — against the float64 reference. Worst measured over the ten
 * fixtures (sim, 2026-11-30): hidden states 1.52e-2, logits 1.57e-2, loss
 * 3.68e-4 (the issue asks 2e-2), the loss tensor (a bf16 value) 2.09e-3,
 * a LoRA gradient tensor 3.14e-2, the gradient norm 3.65e-3. A bf16 rounding
 * is 2⁻⁹ = 2e-3 relative; ten layers of them give the hidden states' 1e-2. */
#define TOL_HIDDEN_BF16 5e-2
#define TOL_LOGITS_BF16 5e-2
#define TOL_LOSS_BF16 2e-3
#define TOL_LOSS_TENSOR_BF16 6e-3
#define TOL_GRAD_BF16 1e-1
#define TOL_GRAD_NORM_BF16 2e-2
/* compute_dtype: bfloat16 on the CPU (LORAC_TEST_BACKEND=cpu-bf16): only
 * the frozen-weight GEMMs (with the LoRA terms folded into them) round
 * their inputs to bf16, activations stay f32. Worst measured over the
 * fixtures (2026-12-02, with the LoRA terms in bf16; the emulate and onednn
 * engines agree to the third digit): hidden states 9.74e-3, logits
 * 9.82e-3, loss 2.42e-4 (the issue asks 1e-2), the loss tensor (f32 here)
 * 2.42e-4, a LoRA gradient tensor 2.55e-2, the gradient norm 4.2e-3
 * (before the terms were rounded: 5.77e-3, 6.28e-3, 1.76e-4, 1.62e-2,
 * 2.16e-3). */
#define TOL_HIDDEN_CPU_BF16 5e-2
#define TOL_LOGITS_CPU_BF16 5e-2
#define TOL_LOSS_CPU_BF16 1e-3
#define TOL_LOSS_TENSOR_CPU_BF16 1e-3
#define TOL_GRAD_CPU_BF16 1e-1
#define TOL_GRAD_NORM_CPU_BF16 2e-2
#define TOL_PICK(f32, bf16, cpu_bf16)                                                      \
    (lc_test_bf16() ? (bf16) : lc_test_cpu_bf16() ? (cpu_bf16) : (f32))
#define TOL_HIDDEN TOL_PICK(TOL_HIDDEN_F32, TOL_HIDDEN_BF16, TOL_HIDDEN_CPU_BF16)
#define TOL_LOGITS TOL_PICK(TOL_LOGITS_F32, TOL_LOGITS_BF16, TOL_LOGITS_CPU_BF16)
#define TOL_LOSS TOL_PICK(TOL_LOSS_F32, TOL_LOSS_BF16, TOL_LOSS_CPU_BF16)
#define TOL_LOSS_TENSOR TOL_PICK(TOL_LOSS_F32, TOL_LOSS_TENSOR_BF16, TOL_LOSS_TENSOR_CPU_BF16)
#define TOL_GRAD TOL_PICK(TOL_GRAD_F32, TOL_GRAD_BF16, TOL_GRAD_CPU_BF16)
#define TOL_GRAD_NORM TOL_PICK(TOL_GRAD_F32, TOL_GRAD_NORM_BF16, TOL_GRAD_NORM_CPU_BF16)

typedef struct fixture {
    lc_test_step s;
    lc_st_file ref;
} fixture;

static char fixture_dir[64];

static const char *fx(const char *rel)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s/%s", fixture_dir, rel);
    return lc_test_fixture(buf);
}

static void setup(fixture *f, const char *name)
{
    lc_error err;
    memset(f, 0, sizeof *f);
    snprintf(fixture_dir, sizeof fixture_dir, "%s", name);
    cr_assert_eq(lc_model_load(&f->s.model, fx("model"), &err), 0, "%s", err.msg);
    lc_test_step_init(&f->s, fx("adapter_init"), fx("train.jsonl"), 0, 2);
    cr_assert_eq(lc_st_open(&f->ref, fx("ref_step0.safetensors"), &err), 0, "%s", err.msg);
}

static void teardown(fixture *f)
{
    lc_st_close(&f->ref);
    lc_test_step_free(&f->s);
}

static const float *ref_tensor(fixture *f, const char *name, uint64_t numel)
{
    const lc_st_tensor *t = lc_st_find(&f->ref, name);
    cr_assert(t, "reference tensor %s missing", name);
    cr_assert_eq(t->dtype, LC_DTYPE_F32);
    cr_assert_eq(t->numel, numel, "%s: numel %llu vs %llu", name, (unsigned long long)t->numel,
                 (unsigned long long)numel);
    return t->data;
}

typedef struct hidden_check {
    fixture *f;
    double worst;
} hidden_check;

static void check_hidden(void *user, int layer, const lc_tensor *h)
{
    hidden_check *hc = user;
    char name[32];
    snprintf(name, sizeof name, "hidden.%d", layer);
    const float *ref = ref_tensor(hc->f, name, (uint64_t)h->numel);
    lc_real *x = lc_test_step_fetch(&hc->f->s, h->data, h->numel);
    double e = lc_test_rel_err_f32(x, ref, (size_t)h->numel);
    free(x);
    if (e > hc->worst)
        hc->worst = e;
}

static void check_logits(const char *name)
{
    fixture f;
    setup(&f, name);
    int64_t N = 2 * 16, V = f.s.model.cfg.vocab_size;
    float *logits = malloc((size_t)(N * V) * sizeof(float));
    hidden_check hc = {&f, 0};
    lc_model_logits(f.s.m, &f.s.tape, &f.s.batch, f.s.l, logits, check_hidden, &hc);
    double e = lc_test_rel_err_f32(logits, ref_tensor(&f, "logits", (uint64_t)(N * V)), (size_t)(N * V));
    cr_log_info("%s: logits rel err %.3g, worst hidden rel err %.3g", name, e, hc.worst);
    cr_expect_lt(hc.worst, TOL_HIDDEN, "hidden states rel err %g", hc.worst);
    cr_expect_lt(e, TOL_LOGITS, "logits rel err %g", e);
    free(logits);
    lc_tape_reset(&f.s.tape);
    teardown(&f);
}

static void check_loss_and_grads(const char *name)
{
    fixture f;
    setup(&f, name);
    int64_t nsup = lc_batch_buf_supervised(&f.s.buf);
    cr_assert_eq(nsup, 15 + 10); /* row 0: 15 targets; row 1: labels 6..15 */
    double sum;
    int64_t n;
    lc_test_step_zero_grads(&f.s);
    lc_tensor *loss = lc_model_loss(f.s.m, &f.s.tape, &f.s.batch, f.s.l, (lc_real)(1.0 / nsup), &sum, &n);
    cr_assert_eq(n, nsup);
    double ref_loss = ref_tensor(&f, "loss", 1)[0];
    double rel = fabs(sum / n - ref_loss) / fabs(ref_loss);
    lc_real *loss32 = lc_test_step_fetch(&f.s, loss->data, 1);
    double rel32 = fabs(loss32[0] - ref_loss) / ref_loss;
    free(loss32);
    cr_log_info("%s: loss %.9f vs %.9f (rel %.3g), loss tensor rel %.3g", name, sum / n, ref_loss, rel, rel32);
    cr_expect_lt(rel, TOL_LOSS, "loss %.9f vs reference %.9f", sum / n, ref_loss);
    cr_expect_lt(rel32, TOL_LOSS_TENSOR, "loss tensor (rel err %g) vs reference %.9f", rel32,
                 ref_loss);

    lc_tape_backward(&f.s.tape, loss);
    lc_test_step_fetch_grads(&f.s);
    double worst = 0, sq = 0, sq_ref = 0; /* Σ g² here and in the reference */
    char tname[256], gname[300];
    int checked = 0;
    const lc_family *fam = lc_family_of(f.s.model.cfg.arch);
    for (int l = 0; l < f.s.lora.n_layers; l++)
        for (int m = 0; m < LC_MOD_COUNT; m++) {
            const lc_lora_adapter *ad = lc_lora_get(&f.s.lora, l, m);
            cr_assert_eq(ad != NULL, lc_family_has_module(fam, m), "layer %d module %d", l, m);
            for (int b = 0; ad && b < 2; b++) {
                const lc_tensor *t = b ? ad->B : ad->A;
                lc_lora_param_name(&f.s.lora.cfg, tname, sizeof tname, l, m, b);
                snprintf(gname, sizeof gname, "%s.grad", tname);
                const lc_real *g = t->grad;
                lc_real *peft = NULL;
                if (b == 1 && lc_module_is_expert(m)) { /* B: E blocks here, PEFT's [out, R·E] */
                    int E = f.s.lora.n_experts;
                    int64_t out = t->shape[0] / E, R = t->shape[1];
                    g = peft = malloc((size_t)t->numel * sizeof(lc_real));
                    for (int x = 0; x < E; x++)
                        lc_moe_lora_b_to_peft(t->grad + x * out * R, out, R, E, x, peft);
                }
                const float *r = ref_tensor(&f, gname, (uint64_t)t->numel);
                double e = lc_test_rel_err_f32(g, r, (size_t)t->numel);
                for (int64_t i = 0; i < t->numel; i++) {
                    sq += (double)g[i] * g[i];
                    sq_ref += (double)r[i] * r[i];
                }
                free(peft);
                cr_expect_lt(e, TOL_GRAD, "%s rel err %g", gname, e);
                worst = e > worst ? e : worst;
                checked++;
            }
        }
    cr_assert_eq(checked, f.s.lora.n_layers * fam->n_modules * 2);
    double e_norm = fabs(sqrt(sq) - sqrt(sq_ref)) / sqrt(sq_ref);
    cr_expect_lt(e_norm, TOL_GRAD_NORM, "gradient norm %.9g vs reference %.9g", sqrt(sq), sqrt(sq_ref));
    cr_log_info("%s on %s: worst LoRA gradient rel err %.3g over %d tensors, grad norm %.3g",
                name, f.s.be->name, worst, checked, e_norm);
    lc_tape_reset(&f.s.tape);
    teardown(&f);
}

Test(model_fixture, llama_hidden_states_and_logits) { check_logits("tiny-llama"); }
Test(model_fixture, llama_loss_and_every_lora_gradient) { check_loss_and_grads("tiny-llama"); }
Test(model_fixture, mistral_hidden_states_and_logits) { check_logits("tiny-mistral"); }
Test(model_fixture, mistral_loss_and_every_lora_gradient) { check_loss_and_grads("tiny-mistral"); }
Test(model_fixture, qwen2_biases_hidden_states_and_logits) { check_logits("tiny-qwen2"); }
Test(model_fixture, qwen2_biases_loss_and_every_lora_gradient) { check_loss_and_grads("tiny-qwen2"); }
Test(model_fixture, qwen3_qk_norm_hidden_states_and_logits) { check_logits("tiny-qwen3"); }
Test(model_fixture, qwen3_qk_norm_loss_and_every_lora_gradient) { check_loss_and_grads("tiny-qwen3"); }
Test(model_fixture, mixtral_hidden_states_and_logits) { check_logits("tiny-mixtral"); }
Test(model_fixture, mixtral_loss_and_every_lora_gradient) { check_loss_and_grads("tiny-mixtral"); }
Test(model_fixture, qwen3moe_hidden_states_and_logits) { check_logits("tiny-qwen3moe"); }
Test(model_fixture, qwen3moe_loss_and_every_lora_gradient) { check_loss_and_grads("tiny-qwen3moe"); }
Test(model_fixture, gemma2_hidden_states_and_logits) { check_logits("tiny-gemma2"); }
Test(model_fixture, gemma2_loss_and_every_lora_gradient) { check_loss_and_grads("tiny-gemma2"); }
Test(model_fixture, gemma3_hidden_states_and_logits) { check_logits("tiny-gemma3"); }
Test(model_fixture, gemma3_loss_and_every_lora_gradient) { check_loss_and_grads("tiny-gemma3"); }
Test(model_fixture, phi3_fused_longrope_hidden_states_and_logits) { check_logits("tiny-phi3"); }
Test(model_fixture, phi3_fused_longrope_loss_and_every_lora_gradient)
{
    check_loss_and_grads("tiny-phi3");
}

/* Phi-3 below its original context: an 8-token forward (max position + 1 =
 * 8, not past original_max_position_embeddings 8) takes longrope's short
 * factors, as transformers decides per forward call; the fixture's
 * short.logits are row 0's first 8 tokens. */
Test(model_fixture, phi3_short_factors_below_original_context)
{
    fixture f;
    setup(&f, "tiny-phi3");
    const int64_t T = 8, V = f.s.model.cfg.vocab_size;
    cr_assert_eq(f.s.model.cfg.rope_original_max_position, T);
    lc_batch b = {.B = 1, .T = T, .input_ids = f.s.buf.ids, .targets = f.s.buf.targets,
                  .positions = f.s.buf.positions};
    float *logits = malloc((size_t)(T * V) * sizeof(float));
    lc_model_logits(f.s.m, &f.s.tape, &b, f.s.l, logits, NULL, NULL);
    double e = lc_test_rel_err_f32(logits, ref_tensor(&f, "short.logits", (uint64_t)(T * V)),
                                   (size_t)(T * V));
    cr_log_info("tiny-phi3 short factors: logits rel err %.3g", e);
    cr_expect_lt(e, TOL_LOGITS, "short-factor logits rel err %g", e);
    /* the same tokens inside the 16-token rows used the long factors: they differ */
    float *longer = malloc((size_t)(2 * 16 * V) * sizeof(float));
    lc_model_logits(f.s.m, &f.s.tape, &f.s.batch, f.s.l, longer, NULL, NULL);
    cr_expect_gt(lc_test_rel_err_f32(longer, logits, (size_t)(T * V)), 1e-2);
    free(longer);
    free(logits);
    lc_tape_reset(&f.s.tape);
    teardown(&f);
}

/* Qwen3-MoE with norm_topk_prob false (Qwen3MoeConfig's default; released
 * checkpoints set it true): the top-k softmax weights are not renormalised.
 * The fixture's meta.json holds HF's loss on the same weights with it off. */
Test(model_fixture, qwen3moe_without_norm_topk_prob)
{
    fixture f;
    setup(&f, "tiny-qwen3moe");
    cr_assert(f.s.model.cfg.moe_renorm);
    f.s.model.cfg.moe_renorm = false;
    f.s.dev.model.cfg.moe_renorm = false; /* the device mirror's copy (unused on the CPU) */
    char *meta_path = lc_test_asprintf("%s", fx("meta.json"));
    char *text = lc_test_read_file(meta_path, NULL);
    const char *k = strstr(text, "\"loss_norm_topk_prob_false\":");
    cr_assert(k, "meta.json has no loss_norm_topk_prob_false");
    double ref_loss = strtod(k + strlen("\"loss_norm_topk_prob_false\":"), NULL);
    double sum;
    int64_t n;
    int64_t nsup = lc_batch_buf_supervised(&f.s.buf);
    lc_model_loss(f.s.m, &f.s.tape, &f.s.batch, f.s.l, (lc_real)(1.0 / nsup), &sum, &n);
    double rel = fabs(sum / n - ref_loss) / ref_loss;
    cr_log_info("tiny-qwen3moe without norm_topk_prob: loss %.9f vs %.9f (rel %.3g)", sum / n,
                ref_loss, rel);
    cr_expect_lt(rel, TOL_LOSS, "loss %.9f vs reference %.9f", sum / n, ref_loss);
    free(text);
    free(meta_path);
    lc_tape_reset(&f.s.tape);
    teardown(&f);
}

/* test_dora.c — DoRA adapters (PEFT's use_dora) against PEFT 0.17 in float64
 * (tests/fixtures/tiny-llama/dora, scripts/make_dora_fixture.py): logits,
 * step-1 loss and every A, B and magnitude gradient from a DoRA adapter with
 * random non-zero B and perturbed magnitudes; gradient checkpointing bitwise
 * equal to plain backward; the magnitude's PEFT initialisation; adapter files
 * (use_dora, ...lora_magnitude_vector) written and read back; `lorac merge`
 * and `export-gguf` (merged) against PEFT's merge_and_unload; eval, generate
 * and info; over quantized bases (adapter: qlora NF4 with and without double
 * quant, a bitsandbytes checkpoint, a Q8_0 GGUF) against PEFT over the
 * dequantized weights, merge --dequantize, and training over a GGUF base
 * (no adapter_model.gguf); the export-gguf --lora refusal; and DoRA on
 * Gemma 2, Gemma 3 and Phi-3 (fused qkv_proj / gate_up_proj) against PEFT
 * 0.21 (tests/fixtures/tiny-<family>/dora): logits, loss, every gradient,
 * fresh magnitudes and merge. The 3-step AdamW traces and resume are
 * tests/test_trainer.c's *dora_* tests. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/gguf.h"
#include "data/safetensors.h"
#include "fixture_rows.h"
#include "helpers.h"
#include "train/family.h"
#include "train/fsutil.h"
#include "train/lora.h"
#include "train/model.h"

/* About 10x the worst relative error measured (lorac f32 against PEFT f64;
 * the numbers are logged; SkylakeX kernels): logits 4.7e-7, loss 2.6e-8
 * (the reference loss is stored as F32), worst A gradient 9.7e-7, B 1.05e-6,
 * magnitude 1.23e-6 (per tensor, norm-wise). */
#define TOL_LOGITS 5e-6
#define TOL_LOSS 1.5e-6
#define TOL_GRAD 1.5e-5
#define TOL_MAG_GRAD 1.5e-5

static const char *fx(const char *rel)
{
    char buf[256];
    snprintf(buf, sizeof buf, "tiny-llama/%s", rel);
    return lc_test_fixture(buf);
}

/* The frozen bases DoRA runs over: tiny-llama dense; its linears NF4 as
 * adapter: qlora quantizes them (block 64, without and with double quant);
 * tiny-llama-bnb4 (bitsandbytes NF4 + double quant, pre-quantized); and
 * tiny-llama as llama.cpp's converter writes it in Q8_0 (q/k rows permuted). */
typedef enum { BASE_DENSE, BASE_NF4, BASE_NF4_DQ, BASE_BNB4, BASE_GGUF_Q8_0 } base_kind;

static void load_base(lc_model *m, base_kind k)
{
    lc_error err;
    lc_model_load_opts o = {.nf4 = k == BASE_NF4 || k == BASE_NF4_DQ, .nf4_blocksize = 64,
                            .nf4_double_quant = k == BASE_NF4_DQ};
    const char *dir = k == BASE_BNB4         ? lc_test_fixture("tiny-llama-bnb4/model")
                      : k == BASE_GGUF_Q8_0 ? lc_test_fixture("gguf-base/tiny-llama-q8_0.gguf")
                                            : fx("model");
    cr_assert_eq(lc_model_load_with(m, dir, &o, &err), 0, "%s", err.msg);
    cr_assert_eq(m->nf4 != NULL, k == BASE_NF4 || k == BASE_NF4_DQ || k == BASE_BNB4);
    cr_assert_eq(m->gguf != NULL, k == BASE_GGUF_Q8_0);
}

static void setup_on(lc_test_step *s, lc_st_file *ref, base_kind k, const char *ref_file)
{
    lc_error err;
    memset(s, 0, sizeof *s);
    load_base(&s->model, k);
    lc_test_step_init(s, fx("dora/adapter_init"), fx("train.jsonl"), 0, 2);
    cr_assert(s->lora.cfg.use_dora);
    if (ref)
        cr_assert_eq(lc_st_open(ref, fx(ref_file), &err), 0, "%s", err.msg);
}

static void setup(lc_test_step *s, lc_st_file *ref)
{
    setup_on(s, ref, BASE_DENSE, "dora/ref_step0.safetensors");
}

static const float *ref_tensor(lc_st_file *ref, const char *name, uint64_t numel)
{
    const lc_st_tensor *t = lc_st_find(ref, name);
    cr_assert(t, "reference tensor %s missing", name);
    cr_assert_eq(t->dtype, LC_DTYPE_F32);
    cr_assert_eq(t->numel, numel, "%s: numel %llu vs %llu", name, (unsigned long long)t->numel,
                 (unsigned long long)numel);
    return t->data;
}

Test(dora, logits_match_peft)
{
    lc_test_step s;
    lc_st_file ref;
    setup(&s, &ref);
    int64_t N = 2 * 16, V = 512;
    float *logits = malloc((size_t)(N * V) * sizeof(float));
    lc_model_logits(&s.model, &s.tape, &s.batch, &s.lora, logits, NULL, NULL);
    double e = lc_test_rel_err_f32(logits, ref_tensor(&ref, "logits", (uint64_t)(N * V)),
                                   (size_t)(N * V));
    cr_log_info("DoRA logits rel err %.3g", e);
    cr_expect_lt(e, TOL_LOGITS, "logits rel err %g", e);
    /* without the magnitudes the logits are another model's: the check is not vacuous */
    lc_tape_reset(&s.tape);
    lc_lora_adapter *ad = (lc_lora_adapter *)lc_lora_get(&s.lora, 0, LC_MOD_Q);
    lc_tensor *m = ad->m;
    ad->m = NULL;
    lc_model_logits(&s.model, &s.tape, &s.batch, &s.lora, logits, NULL, NULL);
    ad->m = m;
    double e0 = lc_test_rel_err_f32(logits, ref_tensor(&ref, "logits", (uint64_t)(N * V)),
                                    (size_t)(N * V));
    cr_expect_gt(e0, 100 * TOL_LOGITS, "one linear without DoRA changed the logits by only %g",
                 e0);
    free(logits);
    lc_tape_reset(&s.tape);
    lc_st_close(&ref);
    lc_test_step_free(&s);
}

/* Loss and backward on rows 0-1; the gradients into *grads (malloc'd). */
static double loss_and_grads(lc_test_step *s, lc_real **grads)
{
    int64_t nsup = lc_batch_buf_supervised(&s->buf);
    double sum;
    int64_t n;
    memset(s->lora.grads, 0, s->lora.n_params * sizeof(lc_real));
    lc_tensor *loss = lc_model_loss(&s->model, &s->tape, &s->batch, &s->lora,
                                    (lc_real)(1.0 / nsup), &sum, &n);
    cr_assert_eq(n, nsup);
    lc_tape_backward(&s->tape, loss);
    lc_tape_reset(&s->tape);
    *grads = malloc(s->lora.n_params * sizeof(lc_real));
    memcpy(*grads, s->lora.grads, s->lora.n_params * sizeof(lc_real));
    return sum / (double)n;
}

/* Every A, B and magnitude gradient of *s's adapter (g, as loss_and_grads
 * returns them) against ref's "<name>.grad"; the worst per kind into worst. */
static void compare_grads(const lc_test_step *s, const lc_real *g, lc_st_file *ref,
                          double tol_grad, double tol_mag, double worst[3])
{
    char tname[256], gname[300];
    int checked = 0;
    const lc_family *fam = lc_family_of(s->model.cfg.arch);
    worst[0] = worst[1] = worst[2] = 0;
    for (int l = 0; l < s->lora.n_layers; l++)
        for (int i = 0; i < fam->n_modules; i++) {
            lc_module m = fam->modules[i];
            const lc_lora_adapter *ad = lc_lora_get(&s->lora, l, m);
            for (int k = 0; k < 3; k++) {
                const lc_tensor *t = lc_lora_part(ad, k);
                lc_lora_part_name(tname, sizeof tname, l, m, k);
                snprintf(gname, sizeof gname, "%s.grad", tname);
                const lc_real *gt = g + (t->grad - s->lora.grads);
                double e = lc_test_rel_err_f32(gt, ref_tensor(ref, gname, (uint64_t)t->numel),
                                               (size_t)t->numel);
                cr_expect_lt(e, k == 2 ? tol_mag : tol_grad, "%s rel err %g", gname, e);
                worst[k] = fmax(worst[k], e);
                checked++;
            }
        }
    cr_assert_eq(checked, s->lora.n_layers * fam->n_modules * 3);
}

Test(dora, loss_and_every_gradient_match_peft)
{
    lc_test_step s;
    lc_st_file ref;
    setup(&s, &ref);
    lc_real *g;
    double loss = loss_and_grads(&s, &g);
    double ref_loss = ref_tensor(&ref, "loss", 1)[0];
    double rel = fabs(loss - ref_loss) / fabs(ref_loss);
    cr_log_info("DoRA loss %.9f vs PEFT %.9f (rel %.3g)", loss, ref_loss, rel);
    cr_expect_lt(rel, TOL_LOSS, "loss %.9f vs reference %.9f", loss, ref_loss);
    double worst[3];
    compare_grads(&s, g, &ref, TOL_GRAD, TOL_MAG_GRAD, worst);
    cr_log_info("DoRA worst gradient rel err: A %.3g, B %.3g, magnitude %.3g", worst[0],
                worst[1], worst[2]);
    free(g);
    lc_st_close(&ref);
    lc_test_step_free(&s);
}

Test(dora, checkpointing_is_bitwise_equal)
{
    lc_test_step s;
    setup(&s, NULL);
    lc_real *g0, *g1;
    s.model.checkpoint_layers = false;
    double l0 = loss_and_grads(&s, &g0);
    s.model.checkpoint_layers = true;
    double l1 = loss_and_grads(&s, &g1);
    cr_expect_eq(l0, l1, "loss %.17g without checkpointing, %.17g with", l0, l1);
    cr_expect_eq(memcmp(g0, g1, s.lora.n_params * sizeof(lc_real)), 0,
                 "gradients differ with gradient checkpointing");
    free(g0);
    free(g1);
    lc_test_step_free(&s);
}

/* PEFT creates m = ‖W + s·B·A‖ per row; with lorac's fresh init (B = 0)
 * that is the row norm of W, computed here by hand from the F32 file. */
Test(dora, fresh_magnitudes_are_weight_row_norms)
{
    lc_error err;
    lc_model model;
    cr_assert_eq(lc_model_load(&model, fx("model"), &err), 0, "%s", err.msg);
    lc_lora_config c = {.r = 4, .alpha = 8, .use_dora = true};
    c.all_linear = true;
    lc_lora lora;
    cr_assert_eq(lc_lora_init(&lora, &model.cfg, &c, 7, &err), 0, "%s", err.msg);
    size_t plain = 0;
    for (int m = 0; m < LC_TEST_LLAMA_MODULES; m++) {
        int64_t out, in;
        lc_module_shape(&model.cfg, m, &out, &in);
        plain += (size_t)(4 * (in + out));
        cr_assert_eq(lc_lora_get(&lora, 0, m)->m->numel, out);
    }
    cr_assert_eq(lc_model_dora_init(&model, &lora, &err), 0, "%s", err.msg);
    double worst = 0;
    size_t mags = 0;
    for (int l = 0; l < lora.n_layers; l++)
        for (int m = 0; m < LC_TEST_LLAMA_MODULES; m++) {
            const lc_lora_adapter *ad = lc_lora_get(&lora, l, m);
            const lc_weight *W = &model.layers[l].proj[m];
            const float *w = W->data;
            cr_assert_eq(W->dtype, LC_DTYPE_F32);
            for (int64_t o = 0; o < W->rows; o++) {
                double ss = 0;
                for (int64_t i = 0; i < W->cols; i++)
                    ss += (double)w[o * W->cols + i] * w[o * W->cols + i];
                worst = fmax(worst, fabs(ad->m->data[o] - sqrt(ss)) / sqrt(ss));
            }
            mags += (size_t)W->rows;
        }
    cr_expect_eq(lora.n_params, plain * (size_t)lora.n_layers + mags);
    cr_log_info("fresh DoRA magnitudes vs row norms: worst rel err %.3g", worst);
    cr_expect_lt(worst, 1e-6);
    lc_lora_free(&lora);
    lc_model_free(&model);
}

/* Written with use_dora and the magnitude tensors, read back bitwise. */
Test(dora, adapter_round_trip)
{
    lc_test_step s;
    setup(&s, NULL);
    lc_error err;
    char *dir = lc_test_tmpdir();
    char *ad = lc_test_asprintf("%s/adapter", dir);
    cr_assert_eq(lc_lora_save_peft(&s.lora, ad, NULL, &err), 0, "%s", err.msg);
    char *cfgp = lc_test_asprintf("%s/adapter_config.json", ad);
    char *json = lc_test_read_file(cfgp, NULL);
    cr_expect(strstr(json, "\"use_dora\":\ttrue"), "adapter_config.json: %s", json);
    lc_lora back;
    cr_assert_eq(lc_lora_load_peft(&back, &s.model.cfg, ad, &err), 0, "%s", err.msg);
    cr_expect(back.cfg.use_dora);
    cr_assert_eq(back.n_params, s.lora.n_params);
    cr_expect_eq(memcmp(back.params, s.lora.params, back.n_params * sizeof(lc_real)), 0);
    lc_st_file f;
    char *st = lc_test_asprintf("%s/adapter_model.safetensors", ad);
    cr_assert_eq(lc_st_open(&f, st, &err), 0, "%s", err.msg);
    const lc_st_tensor *t =
        lc_st_find(&f, "base_model.model.model.layers.1.mlp.down_proj.lora_magnitude_vector");
    cr_assert_not_null(t);
    cr_expect(t->ndim == 1 && t->shape[0] == 64);
    cr_expect_eq(f.n_tensors, 42u);
    lc_st_close(&f);
    lc_lora_free(&back);
    free(st);
    free(json);
    free(cfgp);
    free(ad);
    lc_test_rm_rf(dir);
    free(dir);
    lc_test_step_free(&s);
}

/* A DoRA adapter whose magnitude is missing, or has the wrong shape. */
Test(dora, bad_magnitude_refused)
{
    lc_test_step s;
    setup(&s, NULL);
    lc_error err;
    char *dir = lc_test_tmpdir();
    char *ad = lc_test_asprintf("%s/adapter", dir);
    cr_assert_eq(lc_lora_save_peft(&s.lora, ad, NULL, &err), 0, "%s", err.msg);
    /* a LoRA adapter's file under a DoRA config: the magnitudes are missing */
    s.lora.cfg.use_dora = false;
    char *plain = lc_test_asprintf("%s/plain", dir);
    lc_lora pl;
    lc_lora_config pc = s.lora.cfg;
    cr_assert_eq(lc_lora_init(&pl, &s.model.cfg, &pc, 1, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_lora_save_peft(&pl, plain, NULL, &err), 0, "%s", err.msg);
    char *from = lc_test_asprintf("%s/adapter_model.safetensors", plain);
    char *to = lc_test_asprintf("%s/adapter_model.safetensors", ad);
    cr_assert_eq(rename(from, to), 0);
    lc_lora back;
    cr_assert_neq(lc_lora_load_peft(&back, &s.model.cfg, ad, &err), 0);
    lc_test_assert_msg_has(&err, "missing tensor 'base_model.model.model.layers.0.self_attn."
                                 "q_proj.lora_magnitude_vector'");
    lc_lora_free(&pl);
    free(from);
    free(to);
    free(plain);
    free(ad);
    lc_test_rm_rf(dir);
    free(dir);
    lc_test_step_free(&s);
}

/* DoRA over a quantized base (scripts/make_dora_fixture.py --quant): PEFT's
 * DoRA in float64 over the weights the base dequantizes to, as PEFT's DoRA
 * over a bitsandbytes layer takes its norm from the dequantized weight. Row
 * 0's logits, the step-1 loss over rows 0-1 and every gradient; and a fresh
 * adapter's magnitudes (lorac's init, B = 0) against the ones PEFT creates
 * over those weights, ‖W‖ per row of the dequantized W. About 10x the worst
 * measured over the four bases: logits 5.8e-7, loss 3.4e-8 (F32 reference),
 * gradient 1.4e-6 (A, B and magnitudes alike); the fresh magnitudes came out
 * equal (0), so their bound is one f32 rounding (SkylakeX kernels; the
 * figures are logged). */
#define TOL_Q_LOGITS 5e-6
#define TOL_Q_LOSS 4e-7
#define TOL_Q_GRAD 1.5e-5
#define TOL_Q_INIT 1.2e-7

/* What measure_step finds: relative errors against the reference. */
typedef struct dora_errs {
    double logits, loss, grad[3], init; /* grad: worst A, B, magnitude */
    double got_loss, ref_loss;
} dora_errs;

/* s (rows 0-1 of its fixture, with its DoRA adapter) against ref: the logits
 * of the first logit_rows rows, the loss over rows 0-1, every A, B and
 * magnitude gradient (each checked against tol_grad / tol_mag here), and the
 * magnitudes lorac gives a fresh DoRA adapter (r 8 on all the family's
 * linears, B = 0) against ref's "<magnitude name>.init". */
static void measure_step(lc_test_step *s, lc_st_file *ref, int logit_rows, double tol_grad,
                         double tol_mag, dora_errs *e)
{
    lc_error err;
    const size_t nl = (size_t)logit_rows * 16 * (size_t)s->model.cfg.vocab_size;
    float *logits = malloc((size_t)(2 * 16 * s->model.cfg.vocab_size) * sizeof(float)); /* 2 rows */
    lc_model_logits(&s->model, &s->tape, &s->batch, &s->lora, logits, NULL, NULL);
    lc_tape_reset(&s->tape);
    e->logits = lc_test_rel_err_f32(logits, ref_tensor(ref, "logits", (uint64_t)nl), nl);
    free(logits);
    lc_real *g;
    e->got_loss = loss_and_grads(s, &g);
    e->ref_loss = ref_tensor(ref, "loss", 1)[0];
    e->loss = fabs(e->got_loss - e->ref_loss) / fabs(e->ref_loss);
    compare_grads(s, g, ref, tol_grad, tol_mag, e->grad);
    free(g);

    lc_lora_config c = {.r = 8, .alpha = 16, .use_dora = true};
    c.all_linear = true;
    lc_lora fresh;
    cr_assert_eq(lc_lora_init(&fresh, &s->model.cfg, &c, 7, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_model_dora_init(&s->model, &fresh, &err), 0, "%s", err.msg);
    const lc_family *fam = lc_family_of(s->model.cfg.arch);
    char name[300];
    e->init = 0;
    for (int l = 0; l < fresh.n_layers; l++)
        for (int i = 0; i < fam->n_modules; i++) {
            const lc_tensor *mag = lc_lora_get(&fresh, l, fam->modules[i])->m;
            lc_lora_part_name(name, sizeof name, l, fam->modules[i], 2);
            strcat(name, ".init");
            e->init = fmax(e->init, lc_test_rel_err_f32(mag->data, ref_tensor(ref, name,
                                                        (uint64_t)mag->numel), (size_t)mag->numel));
        }
    lc_lora_free(&fresh);
}

static void check_quant_base(base_kind k, const char *ref_file, const char *what)
{
    lc_test_step s;
    lc_st_file ref;
    dora_errs e;
    setup_on(&s, &ref, k, ref_file);
    measure_step(&s, &ref, 1, TOL_Q_GRAD, TOL_Q_GRAD, &e); /* row 0's logits */
    cr_expect_lt(e.logits, TOL_Q_LOGITS, "%s: logits rel err %g", what, e.logits);
    cr_expect_lt(e.loss, TOL_Q_LOSS, "%s: loss %.9f vs PEFT %.9f", what, e.got_loss, e.ref_loss);
    cr_expect_lt(e.init, TOL_Q_INIT, "%s: fresh magnitudes rel err %g", what, e.init);
    cr_log_info("DoRA over %s vs PEFT: logits %.3g, loss %.9f vs %.9f (%.3g), gradients A %.3g "
                "B %.3g magnitude %.3g, fresh magnitudes %.3g", what, e.logits, e.got_loss,
                e.ref_loss, e.loss, e.grad[0], e.grad[1], e.grad[2], e.init);
    lc_st_close(&ref);
    lc_test_step_free(&s);
}

Test(dora, qlora_nf4_matches_peft)
{
    check_quant_base(BASE_NF4, "dora/ref_nf4.safetensors", "NF4 (adapter: qlora)");
}

Test(dora, qlora_nf4_double_quant_matches_peft)
{
    check_quant_base(BASE_NF4_DQ, "dora/ref_nf4dq.safetensors", "NF4 + double quant");
    check_quant_base(BASE_BNB4, "dora/ref_nf4dq.safetensors", "tiny-llama-bnb4");
}

Test(dora, gguf_base_matches_peft)
{
    check_quant_base(BASE_GGUF_Q8_0, "dora/ref_gguf_q8_0.safetensors", "Q8_0 GGUF");
}

/* `lorac merge --dequantize` of the DoRA adapter into tiny-llama-bnb4:
 * layer 0's q_proj against PEFT's merge_and_unload over the dequantized
 * weights (its own verification runs too). */
Test(dora, merge_dequantize_matches_peft)
{
    char *dir = lc_test_tmpdir();
    char *out = lc_test_asprintf("%s/merged", dir);
    char *base = lc_test_asprintf("%s", lc_test_fixture("tiny-llama-bnb4/model"));
    char *adapter = lc_test_asprintf("%s", fx("dora/adapter_init"));
    const char *args[] = {"merge", "--base", base, "--adapter", adapter, "--out", out,
                          "--dequantize", "--dtype", "f32", NULL};
    lc_test_run_result r = lc_test_run_lorac(NULL, args);
    cr_assert_eq(r.code, 0, "lorac merge failed: %s", r.err);
    cr_expect(strstr(r.out, "(m/c)*(W + scaling*B@A)"), "%s", r.out);
    lc_error err;
    lc_st_file got, want, dense;
    char *mp = lc_test_asprintf("%s/model.safetensors", out);
    cr_assert_eq(lc_st_open(&got, mp, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_st_open(&want, fx("dora/ref_nf4dq.safetensors"), &err), 0, "%s", err.msg);
    cr_assert_eq(lc_st_open(&dense, fx("dora/merged_layer0.safetensors"), &err), 0, "%s",
                 err.msg);
    const char *q = "model.layers.0.self_attn.q_proj.weight";
    const lc_st_tensor *g = lc_st_find(&got, q), *d = lc_st_find(&dense, q);
    cr_assert(g && d && g->dtype == LC_DTYPE_F32 && g->numel == d->numel, "%s", q);
    const float *w = ref_tensor(&want, "merged.model.layers.0.self_attn.q_proj.weight", g->numel);
    double e = lc_test_rel_err_f32(g->data, w, (size_t)g->numel);
    double e_dense = lc_test_rel_err_f32(d->data, w, (size_t)g->numel);
    cr_log_info("DoRA merge --dequantize vs PEFT over the dequantized weights: rel err %.3g (the "
                "merge over the unquantized base differs by %.3g)", e, e_dense);
    cr_expect_lt(e, 5e-7, "merged q_proj rel err %g", e); /* measured 4.9e-8 */
    cr_expect_gt(e_dense, 1e-3, "NF4 hardly changed the merge");
    lc_st_close(&dense);
    lc_st_close(&want);
    lc_st_close(&got);
    lc_test_run_free(&r);
    free(mp);
    free(adapter);
    free(base);
    free(out);
    lc_test_rm_rf(dir);
    free(dir);
}

/* `lorac train` with DoRA over a GGUF base: the PEFT adapter is written,
 * adapter_model.gguf is not (llama.cpp has no DoRA) and the done: line says
 * so; `lorac eval` with it runs. */
Test(dora, gguf_base_train_skips_the_gguf_adapter)
{
    char *tmp = lc_test_tmpdir();
    char *gg = lc_test_asprintf("%s", lc_test_fixture("gguf-base/tiny-llama-q8_0.gguf"));
    char *data = lc_test_asprintf("%s", fx("train.jsonl"));
    char *yaml = lc_test_asprintf(
        "base_model: %s\nadapter: lora\npeft_use_dora: true\nlora_r: 4\nlora_alpha: 8\n"
        "lora_target_linear: true\ndatasets:\n  - path: %s\n    type: tokenized\n"
        "sequence_len: 16\nmicro_batch_size: 2\nmax_steps: 2\nlearning_rate: 1e-3\n"
        "output_dir: %s/out\n", gg, data, tmp);
    char *cfg = lc_test_write_text(tmp, "train.yaml", yaml);
    const char *targs[] = {"train", cfg, NULL};
    lc_test_run_result r = lc_test_run_lorac(NULL, targs);
    cr_assert_eq(r.code, 0, "train failed (%d):\n%s%s", r.code, r.out, r.err);
    cr_expect(strstr(r.err, "adapter: DoRA r 4"), "%s", r.err); /* the log: stderr */
    cr_expect(strstr(r.err, "no adapter_model.gguf: llama.cpp has no DoRA"), "%s", r.err);
    char *st = lc_test_asprintf("%s/out/adapter_model.safetensors", tmp);
    char *gf = lc_test_asprintf("%s/out/adapter_model.gguf", tmp);
    cr_expect(lc_path_exists(st), "no adapter written");
    cr_expect_not(lc_path_exists(gf), "adapter_model.gguf written for DoRA");
    lc_test_run_free(&r);
    char *ad = lc_test_asprintf("%s/out", tmp);
    const char *eargs[] = {"eval", "--model", gg, "--adapter", ad, "--data", data,
                           "--seq-len", "16", NULL};
    r = lc_test_run_lorac(NULL, eargs);
    cr_expect_eq(r.code, 0, "eval failed (%d):\n%s%s", r.code, r.out, r.err);
    cr_expect(strstr(r.out, "(DoRA, r 4"), "%s", r.out);
    lc_test_run_free(&r);
    lc_test_rm_rf(tmp);
    free(ad);
    free(gf);
    free(st);
    free(cfg);
    free(yaml);
    free(data);
    free(gg);
    free(tmp);
}

/* `lorac merge` of the DoRA adapter against PEFT's merge_and_unload (float64,
 * layer 0's seven linears); the merge's own verification (merged model vs
 * base + unmerged adapter, logits) runs too; greedy `lorac generate` with the
 * adapter gives the merged model's tokens. */
Test(dora, merge_matches_peft_merge_and_unload)
{
    char *dir = lc_test_tmpdir();
    char *out = lc_test_asprintf("%s/merged", dir);
    char *base = lc_test_asprintf("%s", fx("model"));
    char *adapter = lc_test_asprintf("%s", fx("dora/adapter_init"));
    const char *args[] = {"merge", "--base", base, "--adapter", adapter, "--out", out, NULL};
    lc_test_run_result r = lc_test_run_lorac(NULL, args);
    cr_assert_eq(r.code, 0, "lorac merge failed: %s", r.err);
    cr_expect(strstr(r.out, "(m/c)*(W + scaling*B@A)"), "%s", r.out);
    lc_error err;
    lc_st_file got, want;
    char *mp = lc_test_asprintf("%s/model.safetensors", out);
    cr_assert_eq(lc_st_open(&got, mp, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_st_open(&want, fx("dora/merged_layer0.safetensors"), &err), 0, "%s",
                 err.msg);
    cr_assert_eq(want.n_tensors, 7u);
    double worst = 0, worst_delta = 0;
    lc_st_file b;
    cr_assert_eq(lc_st_open(&b, fx("model/model.safetensors"), &err), 0, "%s", err.msg);
    for (size_t i = 0; i < want.n_tensors; i++) {
        const lc_st_tensor *w = &want.tensors[i], *g = lc_st_find(&got, w->name);
        const lc_st_tensor *o = lc_st_find(&b, w->name);
        cr_assert(g && o && g->dtype == LC_DTYPE_F32 && g->numel == w->numel, "%s", w->name);
        double e = lc_test_rel_err_f32(g->data, w->data, (size_t)w->numel);
        double d = lc_test_rel_err_f32(o->data, w->data, (size_t)w->numel);
        worst = fmax(worst, e);
        worst_delta = fmax(worst_delta, d);
    }
    cr_log_info("DoRA merge vs PEFT merge_and_unload: worst rel err %.3g (the base differs from "
                "it by %.3g)", worst, worst_delta);
    cr_expect_lt(worst, 5e-7, "merged weights rel err %g", worst); /* measured 5.0e-8 */
    cr_expect_gt(worst_delta, 1e-2, "the merge reference hardly differs from the base");
    /* generate with the adapter unmerged (c held fixed) = generate on the merged model,
     * and not the base's continuation */
    char *ids[3];
    const char *models[3] = {base, out, base};
    for (int k = 0; k < 3; k++) {
        const char *g[] = {"generate", "--model", models[k], "--prompt-ids", "1,5,9,33,2",
                           "--max-new-tokens", "12", "--ignore-eos", "--json",
                           k == 0 ? "--adapter" : NULL, adapter, NULL};
        lc_test_run_result gr = lc_test_run_lorac(NULL, g);
        cr_assert_eq(gr.code, 0, "lorac generate failed: %s", gr.err);
        const char *p = strstr(gr.out, "\"ids\":");
        cr_assert_not_null(p, "%s", gr.out);
        ids[k] = lc_test_asprintf("%.*s", (int)(strchr(p, ']') - p), p);
        lc_test_run_free(&gr);
    }
    cr_log_info("DoRA generate: unmerged %s, merged %s, base %s", ids[0], ids[1], ids[2]);
    cr_expect_str_eq(ids[0], ids[1]);
    cr_expect_str_neq(ids[0], ids[2]);
    for (int k = 0; k < 3; k++)
        free(ids[k]);
    lc_st_close(&b);
    lc_st_close(&got);
    lc_st_close(&want);
    lc_test_run_free(&r);
    free(mp);
    free(adapter);
    free(base);
    free(out);
    lc_test_rm_rf(dir);
    free(dir);
}

/* `lorac eval` with the DoRA adapter on rows 0-1: PEFT's loss (the "loss:"
 * line has 8 significant digits). */
Test(dora, eval_loss_matches_peft)
{
    char *dir = lc_test_tmpdir();
    char *rows = lc_test_read_file(fx("train.jsonl"), NULL);
    char *nl = strchr(strchr(rows, '\n') + 1, '\n');
    nl[1] = '\0';
    char *data = lc_test_write_text(dir, "r01.jsonl", rows);
    char *base = lc_test_asprintf("%s", fx("model"));
    char *adapter = lc_test_asprintf("%s", fx("dora/adapter_init"));
    const char *args[] = {"eval", "--model", base, "--adapter", adapter, "--data", data, NULL};
    lc_test_run_result r = lc_test_run_lorac(NULL, args);
    cr_assert_eq(r.code, 0, "lorac eval failed: %s", r.err);
    cr_expect(strstr(r.out, "(DoRA, r 8, alpha 16;"), "%s", r.out);
    const char *l = strstr(r.out, "\nloss:");
    cr_assert_not_null(l, "%s", r.out);
    double loss = strtod(l + 6, NULL);
    lc_error err;
    lc_st_file ref;
    cr_assert_eq(lc_st_open(&ref, fx("dora/ref_step0.safetensors"), &err), 0, "%s", err.msg);
    double want = ref_tensor(&ref, "loss", 1)[0];
    cr_log_info("lorac eval DoRA loss %.8g vs PEFT %.9g", loss, want);
    cr_expect_lt(fabs(loss - want) / want, 2e-7, "eval loss %.9g vs PEFT %.9g", loss, want);
    lc_st_close(&ref);
    lc_test_run_free(&r);
    free(adapter);
    free(base);
    free(data);
    free(rows);
    lc_test_rm_rf(dir);
    free(dir);
}

/* llama.cpp has no DoRA: export-gguf --lora refuses in one line naming use_dora. */
Test(dora, export_gguf_lora_refused)
{
    char *dir = lc_test_tmpdir();
    char *out = lc_test_asprintf("%s/a.gguf", dir);
    char *base = lc_test_asprintf("%s", fx("model"));
    char *adapter = lc_test_asprintf("%s", fx("dora/adapter_init"));
    const char *args[] = {"export-gguf", "--base", base, "--adapter", adapter, "--lora",
                          "--out", out, NULL};
    lc_test_run_result r = lc_test_run_lorac(NULL, args);
    cr_expect_eq(r.code, 1);
    cr_expect(strstr(r.err, "use_dora: a DoRA adapter cannot be exported with --lora"), "%s",
              r.err);
    cr_expect_eq(strchr(r.err, '\n'), r.err + strlen(r.err) - 1, "not one line: %s", r.err);
    lc_test_run_free(&r);
    free(adapter);
    free(base);
    free(out);
    lc_test_rm_rf(dir);
    free(dir);
}

/* LoRA+ with DoRA: PEFT's create_loraplus_optimizer puts every 1-D adapter
 * parameter (the magnitudes) in lora_B's group. */
Test(dora, loraplus_groups_put_magnitudes_with_b)
{
    lc_error err;
    lc_model_config mc;
    cr_assert_eq(lc_model_config_load(&mc, fx("model"), &err), 0, "%s", err.msg);
    lc_lora_config c = {.r = 2, .alpha = 4, .use_dora = true};
    c.targets[LC_MOD_Q] = c.targets[LC_MOD_DOWN] = true;
    lc_lora lora;
    cr_assert_eq(lc_lora_init(&lora, &mc, &c, 3, &err), 0, "%s", err.msg);
    lc_adamw opt;
    cr_assert_eq(lc_adamw_init(&opt, lora.n_params, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_lora_loraplus_groups(&lora, 16, &opt, &err), 0, "%s", err.msg);
    int checked = 0;
    for (int l = 0; l < lora.n_layers; l++)
        for (int m = 0; m < LC_MOD_COUNT; m++) {
            const lc_lora_adapter *ad = lc_lora_get(&lora, l, m);
            if (!ad)
                continue;
            for (int k = 0; k < 3; k++) {
                const lc_tensor *t = lc_lora_part(ad, k);
                size_t b = (size_t)(t->data - lora.params), e = b + (size_t)t->numel;
                for (size_t s = 0; s < opt.n_spans; s++)
                    if (opt.spans[s].begin < e && b < opt.spans[s].end) {
                        cr_expect(opt.spans[s].begin <= b && e <= opt.spans[s].end);
                        cr_expect_eq(opt.spans[s].lr_scale, k == 0 ? 1.0 : 16.0,
                                     "layer %d module %d part %d", l, m, k);
                        checked++;
                    }
            }
        }
    cr_expect_eq(checked, 2 * 2 * 3);
    lc_adamw_free(&opt);
    lc_lora_free(&lora);
}

/* `lorac info --dora`: the plan's adapter is DoRA, with a magnitude per
 * output row of every linear on top of LoRA's parameters. */
Test(dora, info_plans_dora)
{
    char *model = lc_test_asprintf("%s", fx("model"));
    const char *a1[] = {"info", model, NULL}, *a2[] = {"info", model, "--dora", NULL};
    lc_test_run_result lr = lc_test_run_lorac(NULL, a1), dr = lc_test_run_lorac(NULL, a2);
    cr_assert_eq(lr.code, 0, "%s", lr.err);
    cr_assert_eq(dr.code, 0, "%s", dr.err);
    const char *pl = strstr(lr.out, "LoRA r 8 on 7 of 7 linears ("),
               *pd = strstr(dr.out, "DoRA r 8 on 7 of 7 linears (");
    cr_assert(pl && pd, "%s\n%s", lr.out, dr.out);
    long long nl = atoll(pl + strlen("LoRA r 8 on 7 of 7 linears (")),
              nd = atoll(pd + strlen("DoRA r 8 on 7 of 7 linears ("));
    lc_error err;
    lc_model_config mc;
    cr_assert_eq(lc_model_config_load(&mc, model, &err), 0, "%s", err.msg);
    long long rows = 0;
    for (int m = 0; m < LC_TEST_LLAMA_MODULES; m++) {
        int64_t out, in;
        lc_module_shape(&mc, m, &out, &in);
        rows += out * mc.n_layers;
    }
    cr_expect_eq(nd - nl, rows, "DoRA %lld vs LoRA %lld parameters", nd, nl);
    cr_expect(strstr(dr.out, "DoRA + grad checkpointing*") && !strstr(dr.out, "QLoRA (NF4)"),
              "%s", dr.out);
    lc_test_run_free(&lr);
    lc_test_run_free(&dr);
    free(model);
}

/* export-gguf with the DoRA adapter merged (f32): ffn_down / attn_output of
 * layer 0 (not row-permuted by the converter) equal PEFT's merge_and_unload. */
Test(dora, export_gguf_merged_matches_peft)
{
    char *dir = lc_test_tmpdir();
    char *out = lc_test_asprintf("%s/m.gguf", dir);
    char *base = lc_test_asprintf("%s", fx("model"));
    char *adapter = lc_test_asprintf("%s", fx("dora/adapter_init"));
    const char *args[] = {"export-gguf", "--base", base, "--adapter", adapter, "--out", out,
                          "--no-vocab", NULL};
    lc_test_run_result r = lc_test_run_lorac(NULL, args);
    cr_assert_eq(r.code, 0, "export-gguf failed: %s", r.err);
    lc_error err;
    lc_gguf_file g;
    lc_st_file want;
    cr_assert_eq(lc_gguf_open(&g, out, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_st_open(&want, fx("dora/merged_layer0.safetensors"), &err), 0, "%s",
                 err.msg);
    const char *pairs[2][2] = {{"blk.0.ffn_down.weight", "model.layers.0.mlp.down_proj.weight"},
                               {"blk.0.attn_output.weight",
                                "model.layers.0.self_attn.o_proj.weight"}};
    double worst = 0;
    for (int k = 0; k < 2; k++) {
        const lc_gguf_tensor *t = lc_gguf_find_tensor(&g, pairs[k][0]);
        const lc_st_tensor *w = lc_st_find(&want, pairs[k][1]);
        cr_assert(t && w && t->type == 0 /* F32 */ && t->numel == w->numel, "%s", pairs[k][0]);
        worst = fmax(worst, lc_test_rel_err_f32((const float *)t->data, w->data,
                                                (size_t)w->numel));
    }
    cr_log_info("export-gguf DoRA merged vs PEFT: worst rel err %.3g", worst);
    cr_expect_lt(worst, 5e-7, "rel err %g", worst);
    lc_st_close(&want);
    lc_gguf_close(&g);
    lc_test_run_free(&r);
    free(adapter);
    free(base);
    free(out);
    lc_test_rm_rf(dir);
    free(dir);
}

/* ---- the newer families ------------------------------------------------- */

/* DoRA on Gemma 2, Gemma 3 (text) and Phi-3 against PEFT 0.21.2 over
 * transformers 5.17.0 in float64 (scripts/make_dora_fixture.py --family;
 * tests/fixtures/tiny-<family>/dora): all of the family's linears, Phi-3's
 * fused qkv_proj and gate_up_proj with one magnitude per row of the fused
 * weight. About 10x the worst measured over the three (SkylakeX kernels; the
 * figures are logged): logits 4.8e-7 (Gemma 3), loss 1.6e-8 (Phi-3; the
 * reference is stored as F32), gradients A 1.3e-6, B 9.9e-7, magnitude
 * 1.0e-6; merged weights 5.1e-8. The fresh magnitudes came out equal (0), so
 * their bound is one f32 rounding. The 3-step traces are
 * tests/test_trainer.c's *_dora_trace. */
#define TOL_F_LOGITS 5e-6
#define TOL_F_LOSS 2e-7
#define TOL_F_GRAD 1.5e-5
#define TOL_F_INIT 1.2e-7
#define TOL_F_MERGE 5e-7

static char *fam_path(const char *fam, const char *rel)
{
    char *r = lc_test_asprintf("%s/%s", fam, rel);
    char *p = lc_test_asprintf("%s", lc_test_fixture(r));
    free(r);
    return p;
}

/* Logits, loss, every gradient and the fresh magnitudes of fam's DoRA
 * fixture; the logits without one linear's magnitude are another model's. */
static void family_matches_peft(const char *fam)
{
    lc_test_step s;
    lc_st_file ref;
    lc_error err;
    char *model = fam_path(fam, "model"), *ad = fam_path(fam, "dora/adapter_init");
    char *rows = fam_path(fam, "train.jsonl"), *rp = fam_path(fam, "dora/ref_step0.safetensors");
    memset(&s, 0, sizeof s);
    cr_assert_eq(lc_model_load(&s.model, model, &err), 0, "%s", err.msg);
    lc_test_step_init(&s, ad, rows, 0, 2);
    cr_assert(s.lora.cfg.use_dora, "%s: not a DoRA adapter", fam);
    cr_assert_eq(lc_st_open(&ref, rp, &err), 0, "%s", err.msg);
    dora_errs e;
    measure_step(&s, &ref, 2, TOL_F_GRAD, TOL_F_GRAD, &e);
    cr_log_info("%s DoRA vs PEFT: logits %.3g, loss %.9f vs %.9f (%.3g), gradients A %.3g B %.3g "
                "magnitude %.3g, fresh magnitudes %.3g", fam, e.logits, e.got_loss, e.ref_loss,
                e.loss, e.grad[0], e.grad[1], e.grad[2], e.init);
    cr_expect_lt(e.logits, TOL_F_LOGITS, "%s: logits rel err %g", fam, e.logits);
    cr_expect_lt(e.loss, TOL_F_LOSS, "%s: loss %.9f vs PEFT %.9f", fam, e.got_loss, e.ref_loss);
    cr_expect_lt(e.init, TOL_F_INIT, "%s: fresh magnitudes rel err %g", fam, e.init);

    const lc_family *fm = lc_family_of(s.model.cfg.arch);
    const size_t nl = (size_t)(2 * 16 * s.model.cfg.vocab_size);
    float *logits = malloc(nl * sizeof(float));
    for (int i = 0; i < fm->n_modules; i++) { /* each linear's magnitude matters */
        lc_lora_adapter *a = (lc_lora_adapter *)lc_lora_get(&s.lora, 0, fm->modules[i]);
        lc_tensor *m = a->m;
        a->m = NULL;
        lc_model_logits(&s.model, &s.tape, &s.batch, &s.lora, logits, NULL, NULL);
        lc_tape_reset(&s.tape);
        a->m = m;
        double e0 = lc_test_rel_err_f32(logits, ref_tensor(&ref, "logits", (uint64_t)nl), nl);
        cr_expect_gt(e0, 100 * TOL_F_LOGITS, "%s: %s without DoRA changed the logits by only %g",
                     fam, lc_module_name(fm->modules[i]), e0);
    }
    free(logits);
    lc_st_close(&ref);
    lc_test_step_free(&s);
    free(rp);
    free(rows);
    free(ad);
    free(model);
}

Test(dora, gemma2_matches_peft) { family_matches_peft("tiny-gemma2"); }
Test(dora, gemma3_matches_peft) { family_matches_peft("tiny-gemma3"); }
Test(dora, phi3_fused_matches_peft) { family_matches_peft("tiny-phi3"); }

/* `lorac merge` of fam's DoRA adapter against PEFT's merge_and_unload (layer
 * 0's linears; Phi-3's fused ones scaled row by row of the fused weight); the
 * merge's own verification runs too. */
static void family_merge_matches_peft(const char *fam)
{
    char *dir = lc_test_tmpdir();
    char *out = lc_test_asprintf("%s/merged", dir);
    char *base = fam_path(fam, "model"), *adapter = fam_path(fam, "dora/adapter_init");
    char *wp = fam_path(fam, "dora/merged_layer0.safetensors");
    const char *args[] = {"merge", "--base", base, "--adapter", adapter, "--out", out, NULL};
    lc_test_run_result r = lc_test_run_lorac(NULL, args);
    cr_assert_eq(r.code, 0, "%s: lorac merge failed: %s", fam, r.err);
    cr_expect(strstr(r.out, "(m/c)*(W + scaling*B@A)"), "%s", r.out);
    lc_error err;
    lc_model_config mc;
    cr_assert_eq(lc_model_config_load(&mc, base, &err), 0, "%s", err.msg);
    lc_st_file got, want;
    char *mp = lc_test_asprintf("%s/model.safetensors", out);
    cr_assert_eq(lc_st_open(&got, mp, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_st_open(&want, wp, &err), 0, "%s", err.msg);
    cr_assert_eq(want.n_tensors, (size_t)lc_family_of(mc.arch)->n_modules);
    double worst = 0;
    for (size_t i = 0; i < want.n_tensors; i++) {
        const lc_st_tensor *w = &want.tensors[i], *g = lc_st_find(&got, w->name);
        cr_assert(g && g->dtype == LC_DTYPE_F32 && g->numel == w->numel, "%s: %s", fam, w->name);
        worst = fmax(worst, lc_test_rel_err_f32(g->data, w->data, (size_t)w->numel));
    }
    cr_log_info("%s DoRA merge vs PEFT merge_and_unload: worst rel err %.3g", fam, worst);
    cr_expect_lt(worst, TOL_F_MERGE, "%s: merged weights rel err %g", fam, worst);
    lc_st_close(&got);
    lc_st_close(&want);
    lc_test_run_free(&r);
    free(mp);
    free(wp);
    free(adapter);
    free(base);
    free(out);
    lc_test_rm_rf(dir);
    free(dir);
}

Test(dora, gemma2_merge_matches_peft) { family_merge_matches_peft("tiny-gemma2"); }
Test(dora, gemma3_merge_matches_peft) { family_merge_matches_peft("tiny-gemma3"); }
Test(dora, phi3_fused_merge_matches_peft) { family_merge_matches_peft("tiny-phi3"); }

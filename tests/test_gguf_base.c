/* test_gguf_base.c — `base_model: model.gguf`: training and evaluation over a
 * llama.cpp GGUF file whose weights stay in their GGUF types.
 *
 * Fixtures (scripts/make_gguf_base_fixtures.py, tests/fixtures/gguf-base/):
 * tiny-llama as F32 and Q8_0 GGUF files laid out as convert_hf_to_gguf.py
 * writes them (attn_q / attn_k rows permuted), tiny-qwen2 (biases) and
 * tiny-qwen3 (q/k norms) in Q8_0, a Llama-3.1-style model (RoPE
 * scaling as a rope_freqs tensor) in Q4_K, and ref.safetensors: loss, LoRA
 * gradient norm and logits from HF transformers + PEFT in float64 over the
 * weights gguf-py dequantizes.
 *
 * - step-1 loss, gradient norm and logits against that reference;
 * - the F32 file against the HF directory it came from (same loss, and q/k
 *   rows read back in HF order bit for bit: the converter's permutation is
 *   undone at access); a trained PEFT adapter over it gives the HF
 *   directory's loss and every LoRA gradient;
 * - a Q4_K base holds its weights in Q4_K: model weight bytes within 5% of the file;
 * - no output.weight: tied embeddings;
 * - `lorac eval` / `lorac train` (and resume) with base_model: x.gguf,
 *   `lorac info`, `lorac merge` into a directory refused; a text dataset without tokenizer.json
 *   names the missing tokenizer, with one next to the file it is used;
 * - unsupported architectures and tensor types are named. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "autograd/ggml_weight.h"
#include "data/safetensors.h"
#include "fixture_rows.h"
#include "helpers.h"
#include "train/gguf_model.h"
#include "train/model.h"

/* About 10x the worst relative error measured here (float32 OpenBLAS vs the
 * float64 reference): loss 1.2e-8, gradient norm 1.9e-7, logits 6.3e-7 (Q4_K
 * file; F32 and Q8_0 are below); the F32 file against the HF directory: 0. */
#define TOL_LOSS 1e-6
#define TOL_GRAD_NORM 2e-6
#define TOL_LOGITS 6e-6
#define TOL_F32_VS_HF 1e-6
/* a trained adapter over it: measured 0 on an AVX-512 Xeon, 1.8e-7 to 2.7e-7
 * (max|diff|/max|g|) on an AVX2 EPYC, where the GEMM libraries take different
 * paths for the two files' weight buffers: f32 rounding either way */
#define TOL_ADAPTER_F32_VS_HF 1e-6

typedef struct case_ {
    const char *stem, *adapter;
} case_;

static const case_ cases[] = {
    {"tiny-llama-f32", "tiny-llama/adapter_init"},
    {"tiny-llama-q8_0", "tiny-llama/adapter_init"},
    {"tiny-qwen2-q8_0", "tiny-qwen2/adapter_init"},
    {"tiny-qwen3-q8_0", "tiny-qwen3/adapter_init"},
    {"tiny-llama3-q4_k", "gguf-base/tiny-llama3-adapter"},
};

static const char *gguf_path(const char *stem)
{
    static char buf[4][512];
    static int k;
    char rel[256];
    snprintf(rel, sizeof rel, "gguf-base/%s.gguf", stem);
    char *b = buf[k++ % 4];
    snprintf(b, sizeof buf[0], "%s", lc_test_fixture(rel));
    return b;
}

/* Mean loss of rows 0-1 and (grads) the global norm of the LoRA gradients. */
static double step_loss(lc_test_step *s, bool grads, double *grad_norm)
{
    int64_t nsup = lc_batch_buf_supervised(&s->buf), n;
    double sum;
    lc_tape_reset(&s->tape);
    s->tape.grad_enabled = grads;
    memset(s->lora.grads, 0, s->lora.n_params * sizeof(lc_real));
    lc_tensor *loss = lc_model_loss(&s->model, &s->tape, &s->batch, &s->lora,
                                    (lc_real)(1.0 / nsup), &sum, &n);
    if (grads) {
        lc_tape_backward(&s->tape, loss);
        double g = 0;
        for (size_t i = 0; i < s->lora.n_params; i++)
            g += (double)s->lora.grads[i] * (double)s->lora.grads[i];
        *grad_norm = sqrt(g);
    }
    lc_tape_reset(&s->tape);
    return sum / (double)n;
}

static void open_step(lc_test_step *s, const char *model, const char *adapter)
{
    lc_error err;
    memset(s, 0, sizeof *s);
    cr_assert_eq(lc_model_load(&s->model, model, &err), 0, "%s", err.msg);
    lc_test_step_init(s, lc_test_fixture(adapter), lc_test_fixture("tiny-llama/train.jsonl"), 0, 2);
}

static const void *ref(const lc_st_file *f, const char *stem, const char *what, uint64_t numel)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%s", stem, what);
    const lc_st_tensor *t = lc_st_find(f, name);
    cr_assert(t, "reference %s missing", name);
    cr_assert_eq(t->numel, numel, "%s", name);
    return t->data;
}

Test(gguf_base, step1_matches_peft_on_dequantized_weights)
{
    lc_error err;
    lc_st_file f;
    cr_assert_eq(lc_st_open(&f, lc_test_fixture("gguf-base/ref.safetensors"), &err), 0, "%s",
                 err.msg);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lc_test_step s;
        open_step(&s, gguf_path(cases[i].stem), cases[i].adapter);
        size_t nl = 2 * 16 * 512;
        float *logits = malloc(nl * sizeof(float));
        lc_model_logits(&s.model, &s.tape, &s.batch, &s.lora, logits, NULL, NULL);
        double e_logits = lc_test_rel_err_f32(logits, ref(&f, cases[i].stem, "logits", nl), nl);
        free(logits);
        double gn, loss = step_loss(&s, true, &gn);
        double ref_loss = *(const double *)ref(&f, cases[i].stem, "loss", 1);
        double ref_gn = *(const double *)ref(&f, cases[i].stem, "grad_norm", 1);
        double e_loss = lc_test_rel(loss, ref_loss), e_gn = lc_test_rel(gn, ref_gn);
        cr_log_info("%s: loss %.9f (ref %.9f, rel %.2g), grad norm rel %.2g, logits rel %.2g",
                    cases[i].stem, loss, ref_loss, e_loss, e_gn, e_logits);
        cr_expect_lt(e_loss, TOL_LOSS, "%s loss %.9f vs %.9f", cases[i].stem, loss, ref_loss);
        cr_expect_lt(e_gn, TOL_GRAD_NORM, "%s grad norm %.9f vs %.9f", cases[i].stem, gn, ref_gn);
        cr_expect_lt(e_logits, TOL_LOGITS, "%s logits rel err %g", cases[i].stem, e_logits);
        lc_test_step_free(&s);
    }
    lc_st_close(&f);
}

/* The F32 GGUF file is the HF directory: every matrix reads back bit for bit
 * in HF row order (attn_q / attn_k through the un-permutation), and the
 * step's loss and gradients are those of the HF-directory run. */
Test(gguf_base, f32_file_equals_hf_directory)
{
    lc_test_step g, h;
    open_step(&g, gguf_path("tiny-llama-f32"), "tiny-llama/adapter_init");
    open_step(&h, lc_test_fixture("tiny-llama/model"), "tiny-llama/adapter_init");
    const lc_model_config *gc = &g.model.cfg, *hc = &h.model.cfg;
    cr_assert_eq(gc->hidden_size, hc->hidden_size);
    cr_assert_eq(gc->n_layers, hc->n_layers);
    cr_assert_eq(gc->n_heads, hc->n_heads);
    cr_assert_eq(gc->n_kv_heads, hc->n_kv_heads);
    cr_assert_eq(gc->head_dim, hc->head_dim);
    cr_assert_eq(gc->intermediate_size, hc->intermediate_size);
    cr_assert_eq(gc->vocab_size, hc->vocab_size);
    cr_assert_eq(gc->tie_word_embeddings, hc->tie_word_embeddings);
    cr_assert_eq(gc->max_position_embeddings, hc->max_position_embeddings);
    cr_assert_eq(gc->rope_theta, hc->rope_theta);
    cr_assert_eq((float)gc->rms_norm_eps, (float)hc->rms_norm_eps);
    for (int l = 0; l < gc->n_layers; l++)
        for (int mod = 0; mod < LC_TEST_LLAMA_MODULES; mod++) {
            const lc_weight *a = &g.model.layers[l].proj[mod], *b = &h.model.layers[l].proj[mod];
            cr_assert_eq(a->rows, b->rows);
            cr_assert_eq(a->cols, b->cols);
            /* q/k carry the permutation; the others are plain F32 views */
            cr_assert_eq(a->ggml != NULL, mod == LC_MOD_Q || mod == LC_MOD_K, "layer %d mod %d", l, mod);
            size_t n = (size_t)(a->rows * a->cols);
            lc_real *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
            lc_weight_rows_to_real(a, 0, a->rows, x);
            lc_weight_rows_to_real(b, 0, b->rows, y);
            cr_expect_eq(memcmp(x, y, n * sizeof *x), 0, "layer %d module %d differs", l, mod);
            free(x);
            free(y);
        }
    double gng, gnh;
    double lg = step_loss(&g, true, &gng), lh = step_loss(&h, true, &gnh);
    cr_log_info("F32 GGUF vs HF dir: loss %.9f vs %.9f (rel %.2g), grad norm rel %.2g", lg, lh,
                lc_test_rel(lg, lh), lc_test_rel(gng, gnh));
    cr_expect_lt(lc_test_rel(lg, lh), TOL_F32_VS_HF);
    cr_expect_lt(lc_test_rel(gng, gnh), TOL_F32_VS_HF);
    lc_test_step_free(&g);
    lc_test_step_free(&h);
}

/* A trained PEFT adapter (adapter_step3: B != 0, so every LoRA gradient is
 * non-zero) read over the F32 file — what lora_model_dir does — gives the
 * HF directory's step-1 loss and every gradient (max |diff| / max |g|). */
Test(gguf_base, adapter_over_f32_file_equals_hf)
{
    lc_test_step g, h;
    open_step(&g, gguf_path("tiny-llama-f32"), "tiny-llama/adapter_step3");
    open_step(&h, lc_test_fixture("tiny-llama/model"), "tiny-llama/adapter_step3");
    double gng, gnh;
    double lg = step_loss(&g, true, &gng), lh = step_loss(&h, true, &gnh);
    cr_assert_eq(g.lora.n_params, h.lora.n_params);
    double dmax = 0, gmax = 0;
    for (size_t i = 0; i < g.lora.n_params; i++) {
        double d = fabs((double)g.lora.grads[i] - (double)h.lora.grads[i]);
        double a = fabs((double)h.lora.grads[i]);
        dmax = d > dmax ? d : dmax;
        gmax = a > gmax ? a : gmax;
    }
    cr_log_info("adapter_step3 over the F32 GGUF vs HF dir: loss %.9f vs %.9f (rel %.2g), "
                "gradients max|diff|/max|g| %.2g", lg, lh, lc_test_rel(lg, lh), dmax / gmax);
    cr_expect_lt(lc_test_rel(lg, lh), TOL_ADAPTER_F32_VS_HF);
    cr_expect(gmax > 0);
    cr_expect_lt(dmax / gmax, TOL_ADAPTER_F32_VS_HF);
    lc_test_step_free(&g);
    lc_test_step_free(&h);
}

/* The row map is convert_hf_to_gguf.py's permute, inverted: stored row
 * h·D + 2i + s holds HF row h·D + s·D/2 + i. */
Test(gguf_base, rope_row_map)
{
    lc_ggml_weight g = {.rope_heads = 2};
    const int64_t rows = 16, D = 8; /* 2 heads of 8 */
    bool seen[16] = {0};
    for (int64_t r = 0; r < rows; r++) {
        int64_t h = r / D, s = (r % D) / (D / 2), i = r % (D / 2);
        int64_t src = lc_ggml_weight_src_row(&g, rows, r);
        cr_assert_eq(src, h * D + 2 * i + s, "row %lld", (long long)r);
        seen[src] = true;
    }
    for (int i = 0; i < 16; i++)
        cr_assert(seen[i]);
    g.rope_heads = 0;
    cr_assert_eq(lc_ggml_weight_src_row(&g, rows, 5), 5);
}

/* A Q4_K base keeps its matrices in Q4_K: the bytes the model holds for its
 * weights are within 5% of the file's size, and none is a float copy. */
Test(gguf_base, q4_k_memory_within_5_percent_of_file)
{
    lc_error err;
    lc_model m;
    const char *p = gguf_path("tiny-llama3-q4_k");
    cr_assert_eq(lc_model_load(&m, p, &err), 0, "%s", err.msg);
    struct stat st;
    cr_assert_eq(stat(p, &st), 0);
    double wb = lc_model_weight_bytes(&m), fb = (double)st.st_size;
    cr_log_info("Q4_K base: weights held %.0f bytes, file %.0f bytes (%.2f%%)", wb, fb,
                100.0 * wb / fb);
    cr_expect(wb <= fb && wb >= 0.95 * fb, "weights %.0f vs file %.0f", wb, fb);
    cr_expect(m.embed.ggml && m.lm_head.ggml);
    for (int l = 0; l < m.cfg.n_layers; l++)
        for (int mod = 0; mod < LC_TEST_LLAMA_MODULES; mod++)
            cr_expect(m.layers[l].proj[mod].ggml && m.layers[l].proj[mod].ggml->type == 12);
    cr_expect_eq(m.cfg.rope_type, LC_ROPE_FACTORS);
    cr_expect_eq(m.cfg.head_dim, 64);
    lc_model_free(&m);
}

/* A copy of the F32 fixture with `find` (at its first occurrence after
 * `after`) overwritten by `repl` (same length), in dir. */
static char *patched(const char *dir, const char *after, const char *find, const void *repl,
                     size_t n)
{
    size_t len;
    char *b = lc_test_read_file(gguf_path("tiny-llama-f32"), &len);
    char *a = memmem(b, len, after, strlen(after));
    cr_assert(a, "%s", after);
    char *at = memmem(a, len - (size_t)(a - b), find, strlen(find));
    cr_assert(at, "%s", find);
    memcpy(at, repl, n);
    char *p = lc_test_write_file(dir, "bad.gguf", b, len);
    free(b);
    return p;
}

Test(gguf_base, bad_files_are_named)
{
    char *tmp = lc_test_tmpdir();
    lc_error err;
    lc_model m;
    /* general.architecture "llama" -> "gemma" */
    char *p = patched(tmp, "general.architecture", "llama", "gemma", 5);
    cr_assert_neq(lc_model_load(&m, p, &err), 0);
    lc_test_assert_msg_has(&err, "'gemma': unsupported architecture");
    lc_test_assert_msg_has(&err, "general.architecture");
    free(p);
    /* a required key renamed */
    p = patched(tmp, "", "llama.block_count", "llama.block_counX", 17);
    cr_assert_neq(lc_model_load(&m, p, &err), 0);
    lc_test_assert_msg_has(&err, "llama.block_count");
    free(p);
    /* output_norm.weight's type F32 (0) -> I32 (26): same size, no dequantizer */
    size_t len;
    char *b = lc_test_read_file(gguf_path("tiny-llama-f32"), &len);
    const char *nm = "output_norm.weight";
    char *at = memmem(b, len, nm, strlen(nm));
    cr_assert(at);
    at += strlen(nm);
    uint32_t nd;
    memcpy(&nd, at, 4);
    cr_assert_eq(nd, 1);
    uint32_t ty = 26;
    memcpy(at + 4 + 8 * nd, &ty, 4);
    p = lc_test_write_file(tmp, "bad.gguf", b, len);
    free(b);
    cr_assert_neq(lc_model_load(&m, p, &err), 0);
    lc_test_assert_msg_has(&err, "tensor 'output_norm.weight' has type I32");
    free(p);
    /* QLoRA over a GGUF base */
    lc_model_load_opts o = {.nf4 = true, .nf4_blocksize = 64};
    cr_assert_neq(lc_model_load_with(&m, gguf_path("tiny-llama-q8_0"), &o, &err), 0);
    lc_test_assert_msg_has(&err, "use adapter: lora");
    lc_test_rm_rf(tmp);
    free(tmp);
}

/* No output.weight (Llama 3.2 1B, Qwen2.5 0.5B, ...): the embeddings are tied. */
Test(gguf_base, no_output_weight_means_tied)
{
    char *tmp = lc_test_tmpdir();
    lc_error err;
    lc_model m;
    char *p = patched(tmp, "output_norm.weight", "output.weight", "outpux.weight", 13);
    cr_assert_eq(lc_model_load(&m, p, &err), 0, "%s", err.msg);
    cr_expect(m.cfg.tie_word_embeddings);
    cr_expect_eq(m.lm_head.data, m.embed.data);
    lc_model_free(&m);
    free(p);
    lc_test_rm_rf(tmp);
    free(tmp);
}

/* `lorac eval --model x.gguf` and `lorac train` with base_model: x.gguf. */
Test(gguf_base, cli_eval_and_train)
{
    char *tmp = lc_test_tmpdir();
    size_t len;
    char *text = lc_test_read_file(lc_test_fixture("tiny-llama/train.jsonl"), &len);
    char *nl = strchr(strchr(text, '\n') + 1, '\n') + 1; /* rows 0-1 */
    char *rows = lc_test_write_file(tmp, "rows.jsonl", text, (size_t)(nl - text));
    char *all = lc_test_write_file(tmp, "all.jsonl", text, len);
    free(text);
    const char *args[] = {"eval", "--model", gguf_path("tiny-llama-q8_0"), "--adapter",
                          lc_test_fixture("tiny-llama/adapter_init"), "--data", rows,
                          "--seq-len", "16", NULL};
    lc_test_run_result r = lc_test_run_lorac(NULL, args);
    cr_assert_eq(r.code, 0, "eval failed (%d):\n%s%s", r.code, r.out, r.err);
    lc_st_file f;
    lc_error err;
    cr_assert_eq(lc_st_open(&f, lc_test_fixture("gguf-base/ref.safetensors"), &err), 0);
    double ref_loss = *(const double *)ref(&f, "tiny-llama-q8_0", "loss", 1);
    lc_st_close(&f);
    const char *lp = strstr(r.out, "loss:");
    cr_assert(lp, "%s", r.out);
    double loss = strtod(lp + 5, NULL);
    cr_log_info("lorac eval on Q8_0 GGUF: loss %.9f vs reference %.9f", loss, ref_loss);
    cr_expect_lt(lc_test_rel(loss, ref_loss), TOL_LOSS);
    lc_test_run_free(&r);

    char *yaml = lc_test_asprintf(
        "base_model: %s\nadapter: lora\nlora_r: 8\nlora_alpha: 16\nlora_target_linear: true\n"
        "datasets:\n  - path: %s\n    type: tokenized\nsequence_len: 16\nmicro_batch_size: 2\n"
        "max_steps: 2\nsave_steps: 1\nlearning_rate: 1e-3\noutput_dir: %s/out\n",
        gguf_path("tiny-llama-q8_0"), all, tmp);
    char *cfg = lc_test_write_text(tmp, "train.yaml", yaml);
    const char *targs[] = {"train", cfg, NULL};
    r = lc_test_run_lorac(NULL, targs);
    cr_assert_eq(r.code, 0, "train failed (%d):\n%s%s", r.code, r.out, r.err);
    char *ad = lc_test_asprintf("%s/out/adapter_model.safetensors", tmp);
    struct stat st;
    cr_expect_eq(stat(ad, &st), 0, "no adapter written");
    lc_test_run_free(&r);
    /* resuming checks the base file's fingerprint like a directory's files */
    const char *rargs[] = {"train", cfg, "--set", "max_steps=3", "--set",
                           "resume_from_checkpoint=auto", NULL};
    r = lc_test_run_lorac(NULL, rargs);
    cr_assert_eq(r.code, 0, "resume failed (%d):\n%s%s", r.code, r.out, r.err);
    cr_expect(strstr(r.out, "resume: ") || strstr(r.err, "resume: "), "%s%s", r.out, r.err);

    /* the training log names the base's kind */
    cr_expect(strstr(r.out, "GGUF (weights in their GGUF types)") ||
              strstr(r.err, "GGUF (weights in their GGUF types)"), "%s%s", r.out, r.err);
    lc_test_run_free(&r);

    /* lorac info describes it; lorac merge writes a GGUF file (tests/test_gguf_merge.c),
     * so an --out that is not one is refused */
    const char *iargs[] = {"info", gguf_path("tiny-llama3-q4_k"), NULL};
    r = lc_test_run_lorac(NULL, iargs);
    cr_expect_eq(r.code, 0, "%s%s", r.out, r.err);
    cr_expect(strstr(r.out, "RoPE rope_freqs (GGUF), theta 500000"), "%s", r.out);
    cr_expect(strstr(r.out, "792.0 KiB as held"), "%s", r.out);
    lc_test_run_free(&r);
    char *mout = lc_test_path_in(tmp, "merged");
    const char *margs[] = {"merge", "--base", gguf_path("tiny-llama-q8_0"), "--adapter",
                           lc_test_fixture("tiny-llama/adapter_init"), "--out", mout, NULL};
    r = lc_test_run_lorac(NULL, margs);
    cr_expect_eq(r.code, 1, "%s%s", r.out, r.err);
    cr_expect(strstr(r.err, "--out must name a file ending in .gguf"), "%s", r.err);
    free(mout);
    lc_test_run_free(&r);

    /* a text dataset needs a tokenizer: none next to the GGUF file and none in it -> named */
    char *comp = lc_test_write_text(tmp, "text.jsonl", "{\"text\": \"hello\"}\n");
    char *yaml2 = lc_test_asprintf(
        "base_model: %s\nadapter: lora\nlora_target_linear: true\n"
        "datasets:\n  - path: %s\n    type: completion\nsequence_len: 16\nmax_steps: 1\n"
        "output_dir: %s/out2\n", gguf_path("tiny-llama-q8_0"), comp, tmp);
    char *cfg2 = lc_test_write_text(tmp, "text.yaml", yaml2);
    const char *targs2[] = {"train", cfg2, NULL};
    r = lc_test_run_lorac(NULL, targs2);
    cr_expect_eq(r.code, 1, "(%d):\n%s%s", r.code, r.out, r.err);
    cr_expect(strstr(r.err, "tokenizer.json next to it): ") &&
              strstr(r.err, "key 'tokenizer.ggml.model' is missing"), "%s", r.err);
    lc_test_run_free(&r);

    /* with tokenizer.json next to the .gguf file it is used: quickstart_chat's
     * 1024-token tokenizer gives ids beyond tiny-llama's 512, which is named */
    char *tokdir = lc_test_path_in(tmp, "withtok");
    cr_assert_eq(mkdir(tokdir, 0755), 0);
    const char *copy[][2] = {{"gguf-base/tiny-llama-q8_0.gguf", "m.gguf"},
                             {"../../configs/quickstart_chat/model/tokenizer.json", "tokenizer.json"},
                             {"../../configs/quickstart_chat/model/tokenizer_config.json",
                              "tokenizer_config.json"}};
    for (int i = 0; i < 3; i++) {
        size_t n;
        char *bytes = lc_test_read_file(lc_test_fixture(copy[i][0]), &n);
        free(lc_test_write_file(tokdir, copy[i][1], bytes, n));
        free(bytes);
    }
    char *yaml3 = lc_test_asprintf(
        "base_model: %s/m.gguf\nadapter: lora\nlora_target_linear: true\n"
        "datasets:\n  - path: %s\n    type: completion\nsequence_len: 16\nmax_steps: 1\n"
        "output_dir: %s/out3\n", tokdir, comp, tmp);
    char *cfg3 = lc_test_write_text(tmp, "tok.yaml", yaml3);
    const char *targs3[] = {"train", cfg3, NULL};
    r = lc_test_run_lorac(NULL, targs3);
    cr_expect_eq(r.code, 1, "(%d):\n%s%s", r.code, r.out, r.err);
    cr_expect(strstr(r.err, "outside the model's vocab_size 512"), "%s", r.err);
    lc_test_run_free(&r);
    free(yaml3);
    free(cfg3);
    free(tokdir);
    free(comp);
    free(yaml2);
    free(cfg2);
    free(ad);
    free(cfg);
    free(yaml);
    free(rows);
    free(all);
    lc_test_rm_rf(tmp);
    free(tmp);
}

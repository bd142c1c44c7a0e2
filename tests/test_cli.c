/* test_cli.c — `lorac eval`, `lorac info` and the command-line conventions
 * of every command, through LORAC_BINARY:
 *
 *   eval_matches_reference  eval of adapter_init on rows 0–1 of train.jsonl ==
 *                           ref_step0's loss (HF + PEFT) within TOL_LOSS,
 *                           via --model/--adapter/--data and via a config.
 *   eval_one_row_singular   counts of one are printed in the singular.
 *   eval_nf4                eval of adapter_init on rows 0–1 on the bitsandbytes
 *                           NF4 fixture == its meta.json loss (HF + PEFT +
 *                           bitsandbytes) within TOL_NF4_LOSS; --nf4 on the
 *                           unquantized model gives bitwise the same loss (the
 *                           same NF4 weights), and so does a qlora config;
 *                           bnb_4bit_* keys of the config are honoured.
 *   info_counts             architecture and a parameter count checked against
 *                           one computed here from config.json (and the file).
 *   info_prequantized       info on the NF4 fixture: its memory rows use the
 *                           real weight bytes (lc_model_weight_bytes).
 *   bench_tiny_run          lorac bench on a tiny shape exits 0 and prints its
 *                           JSON line: per-step seconds, tokens/s consistent
 *                           with them, weight MiB of the shape, peak RSS and
 *                           arena sizes finite and positive, a loss near
 *                           ln(vocab) (random model).
 *   tokenize_matches_hf     lorac tokenize on the Qwen2 tokenizer fixture prints
 *                           exactly HF's ids of every case, one line per row
 *                           (blank lines skipped), and only those on stdout;
 *                           --add-special-tokens gives the ids_special; a bad
 *                           row fails with file and line, exit 1.
 *   help / usage            --help exits 0 on every command (info's says its
 *                           checkpointing rows are what training does);
 *                           unknown options and missing required arguments
 *                           exit 2; failures exit 1. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/safetensors.h"
#include "helpers.h"
#include "tokenizer_fixture.h"
#include "train/fsutil.h"
#include "train/eval.h"
#include "train/model.h"

#define REF_LOSS_STEP0 6.445791721343994 /* meta.json trace[0].loss = ref_step0 loss */

/* Tolerances, about 10x the worst relative error measured over the OpenBLAS
 * kernels this x86 machine runs (SkylakeX, Haswell, Nehalem, Prescott,
 * Sandybridge), as printed by eval (9 significant digits; perplexity 6):
 * loss 1.43e-7 (SkylakeX 1.37e-7), perplexity 4.8e-7, NF4 loss vs PEFT +
 * bitsandbytes 1.04e-8 (SkylakeX 2e-9; test_qlora measures 1.15e-8 for the
 * same loss and allows the same 1.5e-7). */
#define TOL_LOSS 1.5e-6
#define TOL_PPL 5e-6
#define TOL_NF4_LOSS 1.5e-7

/* Value after "key" on its line, as a double (fails when absent). */
static double field(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    cr_assert(p, "'%s' not in:\n%s", key, text);
    char *end;
    double v = strtod(p + strlen(key), &end);
    cr_assert(end != p + strlen(key), "no number after '%s' in:\n%s", key, text);
    return v;
}

/* The first `rows` lines of train.jsonl in a temporary file. */
static char *first_rows(const char *dir, int rows)
{
    char *text = lc_test_read_file(lc_test_fixture("tiny-llama/train.jsonl"), NULL);
    char *p = text;
    for (int i = 0; i < rows; i++) {
        p = strchr(p, '\n');
        cr_assert(p);
        p++;
    }
    char *path = lc_test_write_file(dir, "rows.jsonl", text, (size_t)(p - text));
    free(text);
    return path;
}

static void check_eval_output(const lc_test_run_result *r)
{
    cr_assert_eq(r->code, 0, "eval failed (%d):\n%s%s", r->code, r->out, r->err);
    cr_log_info("%s", r->out);
    double loss = field(r->out, "loss:");
    double rel = fabs(loss - REF_LOSS_STEP0) / REF_LOSS_STEP0;
    cr_log_info("eval loss %.9f vs reference %.9f: rel %.3g", loss, REF_LOSS_STEP0, rel);
    cr_expect_lt(rel, TOL_LOSS, "loss %.9f vs %.9f", loss, REF_LOSS_STEP0);
    cr_expect_eq(field(r->out, "supervised tokens:"), 25.0); /* row 0: 15, row 1: 10 */
    double ppl = field(r->out, "perplexity:");
    double rel_ppl = fabs(ppl - exp(REF_LOSS_STEP0)) / exp(REF_LOSS_STEP0);
    cr_log_info("perplexity %.6g vs exp(reference loss) %.9g: rel %.3g", ppl, exp(REF_LOSS_STEP0),
                rel_ppl);
    cr_expect_lt(rel_ppl, TOL_PPL, "perplexity %.9g vs %.9g", ppl, exp(REF_LOSS_STEP0));
    cr_expect_gt(field(r->out, "tokens/s:"), 0.0);
}

Test(cli, eval_matches_reference)
{
    char *tmp = lc_test_tmpdir();
    char *rows = first_rows(tmp, 2);
    const char *args[] = {"eval", "--model", lc_test_fixture("tiny-llama/model"), "--adapter",
                          lc_test_fixture("tiny-llama/adapter_init"), "--data", rows,
                          "--seq-len", "16", "--device", *lc_test_backend_yaml() ? "cuda" : "cpu",
                          "--compute-dtype", "float32", NULL};
    lc_test_run_result r = lc_test_run_lorac(NULL, args);
    check_eval_output(&r);
    lc_test_run_free(&r);

    /* the same through a training config: lora_model_dir as the adapter (no
     * adapter in output_dir yet), datasets as data (no test_datasets) */
    char *yaml = lc_test_asprintf("base_model: %s\nlora_model_dir: %s\ndatasets:\n  - path: %s\n"
                           "sequence_len: 16\nmicro_batch_size: 2\noutput_dir: %s/out\n%s",
                           lc_test_fixture("tiny-llama/model"),
                           lc_test_fixture("tiny-llama/adapter_init"), rows, tmp,
                           lc_test_backend_yaml());
    char *cfg = lc_test_write_file(tmp, "eval.yaml", yaml, strlen(yaml));
    const char *cargs[] = {"eval", cfg, NULL};
    r = lc_test_run_lorac(NULL, cargs);
    check_eval_output(&r);
    cr_expect(strstr(r.out, "lora_model_dir"), "adapter source not shown:\n%s", r.out);
    cr_expect(strstr(r.out, *lc_test_backend_yaml() ? " on cuda " : " on cpu "),
              "not evaluated on the backend asked for:\n%s", r.out);
    lc_test_run_free(&r);

    /* an adapter trained into output_dir wins over lora_model_dir (here
     * adapter_step3, which would give another loss) */
    char *yaml2 = lc_test_asprintf("base_model: %s\nlora_model_dir: %s\ndatasets:\n  - path: %s\n"
                            "sequence_len: 16\nmicro_batch_size: 1\noutput_dir: %s/out\n%s",
                            lc_test_fixture("tiny-llama/model"),
                            lc_test_fixture("tiny-llama/adapter_step3"), rows, tmp,
                            lc_test_backend_yaml());
    char *cfg2 = lc_test_write_file(tmp, "eval2.yaml", yaml2, strlen(yaml2));
    char *outdir = lc_test_asprintf("%s/out", tmp);
    lc_error err;
    cr_assert_eq(lc_mkdir_p(outdir, &err), 0);
    const char *files[2] = {"adapter_config.json", "adapter_model.safetensors"};
    for (int i = 0; i < 2; i++) {
        char *src = lc_test_asprintf("%s/%s", lc_test_fixture("tiny-llama/adapter_init"), files[i]);
        char *dst = lc_test_asprintf("%s/%s", outdir, files[i]);
        size_t n;
        char *bytes = lc_read_file(src, 1 << 20, &n, &err);
        cr_assert(bytes, "%s", err.msg);
        cr_assert_eq(lc_write_file_atomic(dst, bytes, n, &err), 0, "%s", err.msg);
        free(bytes);
        free(src);
        free(dst);
    }
    const char *cargs2[] = {"eval", cfg2, NULL};
    r = lc_test_run_lorac(NULL, cargs2);
    check_eval_output(&r);
    cr_expect(strstr(r.out, "from output_dir"), "adapter source not shown:\n%s", r.out);
    lc_test_run_free(&r);
    free(outdir);
    free(cfg2);
    free(yaml2);

    /* the base alone gives another loss */
    const char *bargs[] = {"eval", "--model", lc_test_fixture("tiny-llama/model"), "--data", rows,
                           "--seq-len", "16", NULL};
    r = lc_test_run_lorac(NULL, bargs);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect_gt(fabs(field(r.out, "loss:") - REF_LOSS_STEP0), 1e-3);
    lc_test_run_free(&r);
    free(cfg);
    free(yaml);
    free(rows);
    free(tmp);
}

/* The "loss" of tiny-llama-bnb4/meta.json. */
static double bnb_meta_loss(void)
{
    char *text = lc_test_read_file(lc_test_fixture("tiny-llama-bnb4/meta.json"), NULL);
    cJSON *j = cJSON_Parse(text);
    cr_assert(j, "meta.json is not JSON");
    const cJSON *l = cJSON_GetObjectItem(j, "loss");
    cr_assert(cJSON_IsNumber(l), "meta.json: no loss");
    double v = l->valuedouble;
    cJSON_Delete(j);
    free(text);
    return v;
}

/* The "loss:" line of eval's output (malloc'd). */
static char *loss_line(const char *out)
{
    const char *p = strstr(out, "loss:");
    cr_assert(p, "no loss in:\n%s", out);
    const char *e = strchr(p, '\n');
    return lc_test_asprintf("%.*s", (int)(e ? e - p : (long)strlen(p)), p);
}

static double check_nf4_eval(const lc_test_run_result *r, double want)
{
    cr_assert_eq(r->code, 0, "eval failed (%d):\n%s%s", r->code, r->out, r->err);
    cr_log_info("%s", r->out);
    double loss = field(r->out, "loss:");
    double rel = fabs(loss - want) / want;
    cr_log_info("NF4 eval loss %.9f vs bitsandbytes reference %.9f: rel %.3g", loss, want, rel);
    cr_expect_lt(rel, TOL_NF4_LOSS, "loss %.9f vs %.9f", loss, want);
    cr_expect_eq(field(r->out, "supervised tokens:"), 25.0);
    cr_expect(strstr(r->out, "linears NF4"), "the model line should say NF4:\n%s", r->out);
    return loss;
}

/* Counts of one read in the singular: "1 file", "1 row". */
Test(cli, eval_one_row_singular)
{
    char *tmp = lc_test_tmpdir();
    char *rows = first_rows(tmp, 1);
    const char *args[] = {"eval", "--model", lc_test_fixture("tiny-llama/model"), "--data", rows,
                          "--seq-len", "16", NULL};
    lc_test_run_result r = lc_test_run_lorac(NULL, args);
    cr_assert_eq(r.code, 0, "eval failed (%d):\n%s%s", r.code, r.out, r.err);
    cr_expect(strstr(r.out, "data:              1 file from --data, 1 row (0 truncated to 16 "
                     "tokens)"), "%s", r.out);
    lc_test_run_free(&r);
    free(rows);
    lc_test_rm_rf(tmp);
    free(tmp);
}

Test(cli, eval_nf4)
{
    const double want = bnb_meta_loss();
    char *tmp = lc_test_tmpdir();
    char *rows = first_rows(tmp, 2);
    const char *bnb = lc_test_fixture("tiny-llama-bnb4/model");
    const char *dense = lc_test_fixture("tiny-llama/model");
    const char *ad = lc_test_fixture("tiny-llama/adapter_init");

    /* the pre-quantized checkpoint, as stored */
    const char *a1[] = {"eval", "--model", bnb, "--adapter", ad, "--data", rows, "--seq-len", "16",
                        NULL};
    lc_test_run_result r = lc_test_run_lorac(NULL, a1);
    check_nf4_eval(&r, want);
    cr_expect(strstr(r.out, "pre-quantized checkpoint, blocksize 64, double quant"), "%s", r.out);
    char *l1 = loss_line(r.out);
    lc_test_run_free(&r);

    /* the unquantized model quantized at load: the same NF4 weights */
    const char *a2[] = {"eval", "--model", dense, "--adapter", ad, "--data", rows, "--seq-len", "16",
                        "--nf4", NULL};
    r = lc_test_run_lorac(NULL, a2);
    check_nf4_eval(&r, want);
    cr_expect(strstr(r.out, "quantized at load, blocksize 64, double quant"), "%s", r.out);
    char *l2 = loss_line(r.out);
    cr_expect_str_eq(l2, l1, "--nf4 and the bitsandbytes checkpoint print different losses");
    lc_test_run_free(&r);

    /* bitwise, in process */
    char *data[1] = {rows};
    lc_eval_opts o = {.model_dir = bnb, .adapter_dir = ad, .data = data, .n_data = 1,
                      .seq_len = 16, .micro_batch = 1};
    lc_eval_report rb, rq;
    lc_error err = {{0}};
    cr_assert_eq(lc_eval_run(&o, &rb, &err), 0, "%s", err.msg);
    o.model_dir = dense;
    o.nf4 = true;
    o.nf4_blocksize = 64;
    o.nf4_double_quant = true;
    cr_assert_eq(lc_eval_run(&o, &rq, &err), 0, "%s", err.msg);
    cr_expect(rb.nf4 && rb.nf4_prequantized && rq.nf4 && !rq.nf4_prequantized);
    cr_expect(memcmp(&rb.loss, &rq.loss, sizeof rb.loss) == 0, "losses differ: %.17g vs %.17g",
              rb.loss, rq.loss);
    cr_expect_eq(rb.weight_bytes, rq.weight_bytes);
    cr_log_info("in process: pre-quantized %.17g, --nf4 %.17g (bnb reference %.17g)", rb.loss,
                rq.loss, want);

    /* a QLoRA training config: adapter: qlora quantizes at load, as training does */
    char *yaml = lc_test_asprintf("base_model: %s\nadapter: qlora\nlora_model_dir: %s\n"
                                  "datasets:\n  - path: %s\nsequence_len: 16\n"
                                  "micro_batch_size: 1\noutput_dir: %s/out\n",
                                  dense, ad, rows, tmp);
    char *cfg = lc_test_write_file(tmp, "qlora.yaml", yaml, strlen(yaml));
    const char *a3[] = {"eval", cfg, NULL};
    r = lc_test_run_lorac(NULL, a3);
    check_nf4_eval(&r, want);
    char *l3 = loss_line(r.out);
    cr_expect_str_eq(l3, l1, "the qlora config prints another loss");
    lc_test_run_free(&r);

    /* load_in_4bit with bnb_4bit_use_double_quant: false: honoured (plain absmax) */
    char *yaml2 = lc_test_asprintf("base_model: %s\nload_in_4bit: true\n"
                                   "bnb_4bit_use_double_quant: false\nlora_model_dir: %s\n"
                                   "datasets:\n  - path: %s\nsequence_len: 16\n"
                                   "micro_batch_size: 1\noutput_dir: %s/out\n",
                                   dense, ad, rows, tmp);
    char *cfg2 = lc_test_write_file(tmp, "qlora2.yaml", yaml2, strlen(yaml2));
    const char *a4[] = {"eval", cfg2, NULL};
    r = lc_test_run_lorac(NULL, a4);
    cr_assert_eq(r.code, 0, "%s%s", r.out, r.err);
    cr_expect(strstr(r.out, "quantized at load, blocksize 64;"), "%s", r.out);
    double l4 = field(r.out, "loss:");
    cr_expect(fabs(l4 - want) / want < 1e-3 && l4 != field(l1, "loss:"),
              "without double quant: loss %.9f (double quant %s)", l4, l1);
    lc_test_run_free(&r);

    free(cfg2);
    free(yaml2);
    free(l3);
    free(cfg);
    free(yaml);
    free(l2);
    free(l1);
    free(rows);
    free(tmp);
}

Test(cli, info_prequantized)
{
    const char *dir = lc_test_fixture("tiny-llama-bnb4/model");
    const char *args[] = {"info", dir, NULL};
    lc_test_run_result r = lc_test_run_lorac(NULL, args);
    cr_assert_eq(r.code, 0, "info failed (%d):\n%s%s", r.code, r.out, r.err);
    cr_log_info("%s", r.out);
    cr_expect(strstr(r.out, "pre-quantized bitsandbytes 4-bit checkpoint"), "%s", r.out);
    lc_model m;
    lc_error err = {{0}};
    cr_assert_eq(lc_model_load(&m, dir, &err), 0, "%s", err.msg);
    const double bytes = lc_model_weight_bytes(&m);
    lc_model_free(&m);
    cr_expect_eq(field(r.out, "as loaded, "), bytes, "weight bytes in:\n%s", r.out);
    /* the rows' weights column (MiB, 2 decimals) */
    double col = field(r.out, "LoRA/QLoRA (NF4 as stored)");
    cr_expect_leq(fabs(col - bytes / 1048576.0), 0.005, "row shows %.2f MiB, real %.4f MiB", col,
                  bytes / 1048576.0);
    cr_expect(!strstr(r.out, "0.5 byte/param"), "the estimate is shown for a real size:\n%s", r.out);
    lc_test_run_free(&r);
}

static double jnum(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItem(o, k);
    cr_assert(cJSON_IsNumber(v), "config.json: %s", k);
    return v->valuedouble;
}

/* The family's linears in `lorac info`, the plan's targets marked; a target
 * the family does not have is refused in one line. */
Test(cli, info_family_linears_and_targets)
{
    const char *dir = lc_test_fixture("tiny-phi3/model");
    const char *args[] = {"info", dir, "--target-modules", "qkv_proj,down_proj", NULL};
    lc_test_run_result r = lc_test_run_lorac(NULL, args);
    cr_assert_eq(r.code, 0, "info failed (%d):\n%s%s", r.code, r.out, r.err);
    cr_expect(strstr(r.out, "architecture:   phi3"), "%s", r.out);
    cr_expect(strstr(r.out, "linears:        qkv_proj* o_proj gate_up_proj down_proj* "), "%s",
              r.out);
    /* r 8 on qkv_proj [(4 + 2·2)·12, 48] and down_proj [48, 96] of 2 layers */
    cr_expect(strstr(r.out, "LoRA r 8 on 2 of 4 linears (4608 trainable parameters)"), "%s", r.out);
    cr_expect(strstr(r.out, "longrope"), "%s", r.out);
    lc_test_run_free(&r);

    const char *bad[] = {"info", dir, "--target-modules", "q_proj", NULL};
    r = lc_test_run_lorac(NULL, bad);
    cr_expect_eq(r.code, 1);
    cr_expect(strstr(r.err, "lorac info: --target-modules: 'q_proj' is not a linear of phi3 "
                            "models (they have qkv_proj, o_proj, gate_up_proj, down_proj)"),
              "%s", r.err);
    lc_test_run_free(&r);

    const char *moe[] = {"info", lc_test_fixture("tiny-mixtral/model"), "--target-modules",
                         "q_proj,experts.down_proj", NULL};
    r = lc_test_run_lorac(NULL, moe);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect(strstr(r.out, "linears:        q_proj* k_proj v_proj o_proj experts.gate_up_proj "
                            "experts.down_proj* "), "%s", r.out);
    cr_expect(strstr(r.out, "experts:        4 of 32 intermediate each, top-2 routing, weights "
                            "renormalised"), "%s", r.out);
    /* the parts add up to the file's 74560 values: mlp = 2 layers × (router 4·64 + 4 experts
     * × 3·32·64) */
    cr_expect(strstr(r.out, "parameters:     74560 ") && strstr(r.out, "mlp                    49664"),
              "%s", r.out);
    /* r 8: q_proj 8·(64 + 64), each expert's down 8·(32 + 64), 2 layers */
    cr_expect(strstr(r.out, "LoRA r 8 on 2 of 6 linears (8192 trainable parameters)"), "%s", r.out);
    lc_test_run_free(&r);

    const char *gemma[] = {"info", lc_test_fixture("tiny-gemma2/model"), NULL};
    r = lc_test_run_lorac(NULL, gemma);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect(strstr(r.out, "GeGLU (tanh) MLP, (1 + w) norms before and after attention and MLP, "
                            "attention scale 1/sqrt(24), soft-capping attention 1.5, logits 3"),
              "%s", r.out);
    cr_expect(strstr(r.out, "sliding window 6 on 1 of 2 layers"), "%s", r.out);
    lc_test_run_free(&r);
}

Test(cli, info_counts)
{
    const char *dir = lc_test_fixture("tiny-llama/model");
    const char *args[] = {"info", dir, NULL};
    lc_test_run_result r = lc_test_run_lorac(NULL, args);
    cr_assert_eq(r.code, 0, "info failed (%d):\n%s%s", r.code, r.out, r.err);
    cr_log_info("%s", r.out);
    /* expected count from config.json: embeddings, untied head, per layer
     * q,k,v,o + gate,up,down + two norms, final norm */
    char *cp = lc_test_asprintf("%s/config.json", dir);
    char *text = lc_test_read_file(cp, NULL);
    cJSON *c = cJSON_Parse(text);
    cr_assert(c);
    double C = jnum(c, "hidden_size"), FF = jnum(c, "intermediate_size"), L = jnum(c, "num_hidden_layers");
    double H = jnum(c, "num_attention_heads"), KV = jnum(c, "num_key_value_heads");
    double D = jnum(c, "head_dim"), V = jnum(c, "vocab_size");
    bool tied = cJSON_IsTrue(cJSON_GetObjectItem(c, "tie_word_embeddings"));
    double expect = V * C * (tied ? 1 : 2) +
                    L * (C * H * D + 2 * C * KV * D + H * D * C + 3 * C * FF + 2 * C) + C;
    /* and the same from the file itself */
    lc_st_file f;
    lc_error err;
    char *mp = lc_test_asprintf("%s/model.safetensors", dir);
    cr_assert_eq(lc_st_open(&f, mp, &err), 0, "%s", err.msg);
    double numel = 0;
    for (size_t i = 0; i < f.n_tensors; i++)
        numel += (double)f.tensors[i].numel;
    lc_st_close(&f);
    cr_expect_eq(numel, expect, "file holds %.0f values, config implies %.0f", numel, expect);
    cr_expect_eq(field(r.out, "parameters:"), expect);
    cr_expect(strstr(r.out, "architecture:   llama"), "%s", r.out);
    cr_expect_eq(field(r.out, "layers:"), L);
    cr_expect_eq(field(r.out, "hidden size:"), C);
    cr_expect_eq(field(r.out, "embeddings "), V * C);
    cr_expect(strstr(r.out, "F32"), "dtype missing");
    cr_expect(strstr(r.out, "QLoRA (NF4)"), "no QLoRA row");
    cr_expect(strstr(r.out, "grad checkpointing"), "no checkpointing row");
    lc_test_run_free(&r);

    const char *args2[] = {"info", dir, "--rank", "16", "--seq-len", "64", "--micro-batch", "2", NULL};
    r = lc_test_run_lorac(NULL, args2);
    cr_expect_eq(r.code, 0, "%s", r.err);
    /* r 16 on all seven linears of 2 layers: 16 · Σ(in + out) · L */
    double lora = 16 * L * ((C + H * D) * 2 + (C + KV * D) * 2 + (C + FF) * 3);
    char *want = lc_test_asprintf("(%.0f trainable parameters)", lora);
    cr_expect(strstr(r.out, want), "expected '%s' in:\n%s", want, r.out);
    cr_expect(strstr(r.out, "micro-batch 2 x sequence 64"), "%s", r.out);
    lc_test_run_free(&r);
    free(want);
    free(mp);
    cJSON_Delete(c);
    free(text);
    free(cp);
}

/* A number of the bench JSON (fails when absent or not finite and positive). */
static double bench_num(const cJSON *j, const char *key, const char *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    cr_assert(cJSON_IsNumber(v), "bench: no number \"%s\" in:\n%s", key, out);
    cr_expect(isfinite(v->valuedouble) && v->valuedouble > 0, "bench: %s = %g in:\n%s", key,
              v->valuedouble, out);
    return v->valuedouble;
}

Test(cli, bench_tiny_run, .timeout = 60)
{
    /* 2 layers, hidden 128 (4 heads of 32, 2 KV heads), intermediate 256,
     * vocab 1024 untied: ~10 ms a step here */
    const int L = 2, C = 128, KV = 64, FF = 256, V = 1024, batch = 2, seq = 128, steps = 3;
    const char *args[] = {"bench", "--layers", "2", "--hidden", "128", "--heads", "4",
                          "--kv-heads", "2", "--intermediate", "256", "--vocab", "1024",
                          "--tied", "0", "--rank", "4", "--batch", "2", "--seq", "128",
                          "--steps", "3", "--warmup", "1", NULL};
    lc_test_run_result r = lc_test_run_lorac(NULL, args);
    cr_assert_eq(r.code, 0, "lorac bench: exit %d:\n%s%s", r.code, r.out, r.err);
    cr_log_info("bench: %s", r.out);
    cJSON *j = cJSON_Parse(r.out);
    cr_assert(j, "bench did not print JSON:\n%s", r.out);
    const cJSON *impl = cJSON_GetObjectItemCaseSensitive(j, "impl");
    const cJSON *weights = cJSON_GetObjectItemCaseSensitive(j, "weights");
    cr_expect(cJSON_IsString(impl) && !strcmp(impl->valuestring, "lorac"), "%s", r.out);
    cr_expect(cJSON_IsString(weights) && !strcmp(weights->valuestring, "F32"), "%s", r.out);
    cr_expect_geq(bench_num(j, "threads", r.out), 1);
    /* one time per measured step (warmup excluded), printed to the ms */
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "step_s");
    cr_assert(cJSON_IsArray(st) && cJSON_GetArraySize(st) == steps, "step_s: %s", r.out);
    double total = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, st)
    {
        cr_assert(cJSON_IsNumber(e) && isfinite(e->valuedouble) && e->valuedouble >= 0,
                  "step_s: %s", r.out);
        total += e->valuedouble;
    }
    /* tokens/s = batch * seq * steps / the steps' time, up to the rounding of
     * the printed step times (0.5 ms each) and of tokens/s itself (0.05) */
    const double tps = bench_num(j, "tokens_per_s", r.out), tokens = (double)batch * seq * steps;
    const double slack = 0.0005 * steps;
    cr_expect(tps >= tokens / (total + slack) - 0.05, "tokens/s %g, %g tokens in %g s", tps,
              tokens, total);
    if (total > slack)
        cr_expect(tps <= tokens / (total - slack) + 0.05, "tokens/s %g, %g tokens in %g s", tps,
                  tokens, total);
    /* weight MiB of this shape: 7 linears per layer and untied embed + head, f32 */
    const double params = (double)L * (2.0 * C * C + 2.0 * KV * C + 3.0 * FF * C) + 2.0 * V * C;
    const double mib = bench_num(j, "weight_mib", r.out);
    cr_expect(fabs(mib - params * 4 / 1048576.0) <= 0.05 + 1e-9, "weight_mib %g, the shape has "
              "%.4f", mib, params * 4 / 1048576.0);
    const double rss = bench_num(j, "peak_rss_gib", r.out);
    cr_expect_lt(rss, 4.0, "peak RSS %g GiB for a tiny model", rss);
    bench_num(j, "step_arena_mib", r.out);
    bench_num(j, "grad_pool_mib", r.out);
    /* a random model predicts about uniformly: loss ~ ln(vocab) = 6.93 */
    const double loss = bench_num(j, "loss", r.out);
    cr_expect(fabs(loss - log((double)V)) < 0.5, "loss %g, ln(vocab) %g", loss, log((double)V));
    cJSON_Delete(j);
    lc_test_run_free(&r);
}

Test(cli, help_exits_0)
{
    const char *cmds[] = {"train", "bench", "merge", "eval", "info", "tokenize", "generate"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        const char *args[] = {cmds[i], "--help", NULL};
        lc_test_run_result r = lc_test_run_lorac(NULL, args);
        cr_expect_eq(r.code, 0, "lorac %s --help: exit %d", cmds[i], r.code);
        cr_expect(strstr(r.out, "usage: lorac"), "lorac %s --help printed:\n%s", cmds[i], r.out);
        lc_test_run_free(&r);
    }
    /* info's help describes the checkpointing rows as what training does
     * (the CPU trainer checkpoints; it once said it did not) */
    const char *info[] = {"info", "--help", NULL};
    lc_test_run_result ri = lc_test_run_lorac(NULL, info);
    cr_expect(strstr(ri.out, "gradient_checkpointing: true") &&
              !strstr(ri.out, "does not checkpoint"), "lorac info --help:\n%s", ri.out);
    lc_test_run_free(&ri);
    const char *top[] = {"--help", NULL};
    lc_test_run_result r = lc_test_run_lorac(NULL, top);
    cr_expect_eq(r.code, 0);
    cr_expect(strstr(r.out, "merge") && strstr(r.out, "eval") && strstr(r.out, "info") &&
              strstr(r.out, "generate"),
              "top-level help lists the commands:\n%s", r.out);
    lc_test_run_free(&r);
}

static void expect_exit(int code, const char *const *args, const char *needle)
{
    lc_test_run_result r = lc_test_run_lorac(NULL, args);
    char cmd[512] = "lorac";
    for (int i = 0; args[i]; i++)
        snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " %s", args[i]);
    cr_expect_eq(r.code, code, "%s: exit %d, expected %d:\n%s", cmd, r.code, code, r.err);
    cr_expect(r.err[0] != '\0', "%s: no message on stderr", cmd);
    if (needle)
        cr_expect(strstr(r.err, needle), "%s: expected '%s' in:\n%s", cmd, needle, r.err);
    lc_test_run_free(&r);
}

Test(cli, bad_usage_exits_2)
{
    const char *model = lc_test_fixture("tiny-llama/model");
    const char *ad = lc_test_fixture("tiny-llama/adapter_init");
    /* unknown options */
    expect_exit(2, (const char *[]){"merge", "--base", model, "--adapter", ad, "--out", "/tmp/x",
                                    "--bogus", NULL}, "--bogus");
    expect_exit(2, (const char *[]){"eval", "--model", model, "--data", "x.jsonl", "--bogus", NULL},
                "--bogus");
    expect_exit(2, (const char *[]){"info", model, "--bogus", NULL}, "--bogus");
    expect_exit(2, (const char *[]){"train", "cfg.yaml", "--bogus", NULL}, "--bogus");
    expect_exit(2, (const char *[]){"frobnicate", NULL}, "unknown command");
    /* missing required arguments */
    expect_exit(2, (const char *[]){"merge", NULL}, "--base");
    expect_exit(2, (const char *[]){"merge", "--base", model, "--adapter", ad, NULL}, "--out");
    expect_exit(2, (const char *[]){"merge", "--base", model, "--out", "/tmp/x", NULL}, "--adapter");
    expect_exit(2, (const char *[]){"merge", "--base", NULL}, "needs a value");
    expect_exit(2, (const char *[]){"eval", NULL}, "missing");
    expect_exit(2, (const char *[]){"eval", "--model", model, NULL}, "--data");
    expect_exit(2, (const char *[]){"eval", "--data", "x.jsonl", NULL}, "--model");
    expect_exit(2, (const char *[]){"info", NULL}, "missing");
    expect_exit(2, (const char *[]){"train", NULL}, NULL);
    /* bad values */
    expect_exit(2, (const char *[]){"merge", "--base", model, "--adapter", ad, "--out", "/tmp/x",
                                    "--dtype", "int8", NULL}, "--dtype");
    expect_exit(2, (const char *[]){"eval", "--model", model, "--data", "x", "--seq-len", "0", NULL},
                "--seq-len");
    expect_exit(2, (const char *[]){"info", model, "--rank", "eight", NULL}, "--rank");
    expect_exit(2, (const char *[]){"eval", "cfg.yaml", "--model", model, NULL}, "not both");
}

Test(cli, failures_exit_1)
{
    const char *model = lc_test_fixture("tiny-llama/model");
    char *tmp = lc_test_tmpdir();
    char *missing = lc_test_asprintf("%s/nope.jsonl", tmp);
    expect_exit(1, (const char *[]){"eval", "--model", model, "--data", missing, NULL}, "nope.jsonl");
    expect_exit(1, (const char *[]){"eval", "--model", tmp, "--data", missing, NULL}, "config.json");
    expect_exit(1, (const char *[]){"info", tmp, NULL}, "config.json");
    expect_exit(1, (const char *[]){"merge", "--base", model, "--adapter", tmp, "--out", missing,
                                    NULL}, "adapter_config.json");
    free(missing);
    free(tmp);
}

/* Each ids array of cases.jsonl (key) as its own {"input_ids": [...]} line. */
static char *expected_rows(const char *cases, const char *key)
{
    size_t cap = 1 << 20, m = 0;
    char *out = malloc(cap);
    out[0] = 0;
    const char *p = cases;
    while (*p) {
        const char *e = strchr(p, '\n');
        cJSON *row = cJSON_ParseWithLength(p, e ? (size_t)(e - p) : strlen(p));
        cr_assert_not_null(row);
        const cJSON *v;
        m += (size_t)snprintf(out + m, cap - m, "{\"input_ids\": [");
        int first = 1;
        cJSON_ArrayForEach(v, cJSON_GetObjectItem(row, key)) {
            m += (size_t)snprintf(out + m, cap - m, first ? "%d" : ", %d", (int)v->valuedouble);
            first = 0;
        }
        m += (size_t)snprintf(out + m, cap - m, "]}\n");
        cr_assert_lt(m, cap - 64);
        cJSON_Delete(row);
        p = e ? e + 1 : p + strlen(p);
    }
    return out;
}

Test(cli, tokenize_matches_hf, .timeout = 60)
{
    char *dir = lc_test_tokenizer_dir("qwen2");
    char *cases = lc_test_read_file(lc_test_fixture("tokenizers/qwen2/cases.jsonl"), NULL);
    /* the cases themselves are rows {"text": ...} (extra keys are ignored);
     * a blank line in the middle is skipped */
    size_t n = strlen(cases);
    char *in_text = malloc(n + 2);
    const char *mid = strchr(cases, '\n') + 1;
    size_t k = (size_t)(mid - cases);
    memcpy(in_text, cases, k);
    in_text[k] = '\n';
    memcpy(in_text + k + 1, mid, n - k + 1);
    char *in = lc_test_write_text(dir, "in.jsonl", in_text);
    char *model = lc_test_asprintf("%s", dir);

    lc_test_run_result r = lc_test_run_lorac(NULL, (const char *[]){"tokenize", "--model", model,
                                                                    "--jsonl", in, NULL});
    cr_assert_eq(r.code, 0, "%s", r.err);
    char *want = expected_rows(cases, "ids");
    cr_assert_str_eq(r.out, want);
    cr_assert_str_eq(r.err, "");
    free(want);
    lc_test_run_free(&r);

    r = lc_test_run_lorac(NULL, (const char *[]){"tokenize", "--model", model, "--jsonl", in,
                                                 "--add-special-tokens", NULL});
    cr_assert_eq(r.code, 0, "%s", r.err);
    want = expected_rows(cases, "ids_special");
    cr_assert_str_eq(r.out, want);
    free(want);
    lc_test_run_free(&r);

    char *bad = lc_test_write_text(dir, "bad.jsonl", "{\"text\": \"ok\"}\n{\"txt\": \"no\"}\n");
    expect_exit(1, (const char *[]){"tokenize", "--model", model, "--jsonl", bad, NULL},
                "bad.jsonl:2: no \"text\" field");
    expect_exit(2, (const char *[]){"tokenize", "--model", model, NULL}, "missing --jsonl");
    expect_exit(1, (const char *[]){"tokenize", "--model", in, "--jsonl", bad, NULL},
                "tokenizer.json");
    free(bad);
    free(in);
    free(in_text);
    free(model);
    free(cases);
    lc_test_rm_rf(dir);
    free(dir);
}

/* `lorac chat` through a pipe answers each line with the generator `lorac
 * generate` uses: its first reply to a question is generate's greedy answer
 * to the same one-message conversation, and /reset starts over (the answer to
 * the same question after it is the first answer again). */
Test(cli, chat_piped_matches_generate, .timeout = 120)
{
    char *tmp = lc_test_tmpdir();
    char *model = lc_test_asprintf("%s/configs/quickstart_chat/model", LORAC_SOURCE_DIR);
    char *msgs = lc_test_write_text(tmp, "m.json",
                                    "[{\"role\": \"user\", \"content\": \"What is 2 + 3?\"}]");
    const char *gen[] = {"generate", "--model", model, "--messages", msgs, "--max-new-tokens",
                         "12", NULL};
    lc_test_run_result g = lc_test_run_lorac(NULL, gen);
    cr_assert_eq(g.code, 0, "generate failed:\n%s", g.err);
    char *script = lc_test_write_text(tmp, "in.txt", "What is 2 + 3?\nAnd 4 + 4?\n/reset\n"
                                                     "What is 2 + 3?\n");
    char *cmd = lc_test_asprintf("'%s' chat --model '%s' --max-new-tokens 12 < '%s'",
                                 LORAC_BINARY, model, script);
    const char *sh[] = {"sh", "-c", cmd, NULL};
    lc_test_run_result c = lc_test_run(NULL, sh);
    cr_assert_eq(c.code, 0, "chat failed:\n%s", c.err);
    /* three replies, one a line; the first and the last equal generate's */
    char *l1 = strdup(c.out), *nl = strchr(l1, '\n');
    cr_assert(nl, "no reply line in:\n%s", c.out);
    *nl = '\0';
    const char *l3 = c.out + strlen(c.out);
    while (l3 > c.out && l3[-1] == '\n')
        l3--;
    while (l3 > c.out && l3[-1] != '\n')
        l3--;
    size_t glen = strcspn(g.out, "\n");
    cr_expect(strlen(l1) == glen && !strncmp(l1, g.out, glen), "chat '%s' vs generate '%.*s'",
              l1, (int)glen, g.out);
    cr_expect(!strncmp(l3, l1, strlen(l1)), "after /reset: '%s' vs the first '%s'", l3, l1);
    int lines = 0;
    for (const char *p = c.out; *p; p++)
        lines += *p == '\n';
    cr_expect_eq(lines, 3, "three replies expected:\n%s", c.out);
    free(l1);
    lc_test_run_free(&c);
    lc_test_run_free(&g);
    free(cmd), free(script), free(msgs), free(model);
    lc_test_rm_rf(tmp);
    free(tmp);
}

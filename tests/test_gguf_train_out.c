/* test_gguf_train_out.c — what a GGUF base (`base_model: model.gguf`) gives
 * back: the trained adapter for llama.cpp, PEFT adapters read over it,
 * resume, and generation.
 *
 * - export_lora_over_gguf_base: `export-gguf --lora --base model.gguf` is
 *   byte for byte the file the HF base gives (tiny-llama-f32.gguf is
 *   tiny-llama/model converted; tiny-qwen2-q8_0.gguf is tiny-qwen2/model),
 *   which test_gguf_export compares with convert_lora_to_gguf.py's;
 * - train_writes_gguf_adapter: `lorac train` 2 steps over the Q8_0 (llama,
 *   qwen2) and Q4_K (llama, Llama 3 RoPE) fixtures writes
 *   output_dir/adapter_model.gguf beside the PEFT files and says so: a GGUF
 *   LoRA adapter (general.type adapter, adapter.type lora,
 *   adapter.lora.alpha FLOAT32 = lora_alpha, the base's architecture) whose
 *   every lora_a / lora_b is adapter_model.safetensors' A / B bit for bit,
 *   B's q/k rows at lc_llama_gguf_row for llama (as the converter permutes
 *   them), in HF order for qwen2; a base named output_dir/adapter_model.gguf
 *   is refused;
 * - lora_model_dir_over_gguf_equals_hf: `lorac train` with lora_model_dir
 *   (tiny-llama's adapter_step3) over tiny-llama-f32.gguf gives the step-1
 *   loss and gradient norm of the HF directory (every gradient, through the
 *   step API: test_gguf_base's adapter_over_f32_file_equals_hf);
 * - resume_over_gguf_is_bitwise: a run over the Q8_0 base cut at a
 *   checkpoint and resumed ends bitwise where the uninterrupted run ends
 *   (adapter_model.safetensors, adapter_model.gguf, optimizer state);
 * - generate_over_gguf_equals_hf: `lorac generate --model x.gguf` greedy ids
 *   (with and without an adapter) equal those over the HF directory and
 *   transformers' (tests/fixtures/generate/llama.json). */
#include <criterion/criterion.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "autograd/ggml_weight.h"
#include "data/ggml_quants.h"
#include "data/gguf.h"
#include "data/safetensors.h"
#include "helpers.h"
#include "train/gguf_export.h"
#include "train/gguf_model.h"
#include "train/lora.h"

/* The F32 GGUF file holds tiny-llama's weights bit for bit (test_gguf_base):
 * measured 0 difference in loss and gradients; 1e-7 relative allowed. */
#define TOL_F32_VS_HF 1e-7

static char *gguf_fixture(const char *stem)
{
    char *rel = lc_test_asprintf("gguf-base/%s.gguf", stem);
    char *p = strdup(lc_test_fixture(rel));
    free(rel);
    return p;
}

static int export_lora(const char *base, const char *adapter, const char *type, const char *out,
                       lc_error *err)
{
    lc_gguf_export_opts o = {.base_dir = base, .adapter_dir = adapter, .out_path = out,
                             .lora = true};
    cr_assert_eq(lc_gguf_export_parse_type(type, &o.type), 0);
    lc_gguf_export_report r;
    return lc_gguf_export(&o, &r, NULL, err);
}

Test(gguf_train_out, export_lora_over_gguf_base)
{
    static const struct {
        const char *fam, *stem;
    } cases[] = {{"llama", "tiny-llama-f32"}, {"qwen2", "tiny-qwen2-q8_0"}};
    char *tmp = lc_test_tmpdir();
    for (size_t c = 0; c < 2; c++)
        for (int t = 0; t < 2; t++) {
            const char *type = t ? "q8_0" : "f32";
            char *hf = lc_test_asprintf("tiny-%s/model", cases[c].fam);
            char *ad_rel = lc_test_asprintf("tiny-%s/adapter_step3", cases[c].fam);
            char *ad = strdup(lc_test_fixture(ad_rel));
            char *base = gguf_fixture(cases[c].stem);
            char *a = lc_test_asprintf("%s/%s-%s-hf.gguf", tmp, cases[c].fam, type);
            char *b = lc_test_asprintf("%s/%s-%s-gguf.gguf", tmp, cases[c].fam, type);
            lc_error err;
            cr_assert_eq(export_lora(lc_test_fixture(hf), ad, type, a, &err), 0, "%s", err.msg);
            cr_assert_eq(export_lora(base, ad, type, b, &err), 0, "%s", err.msg);
            cr_expect(lc_test_same_file(a, b), "%s %s: the GGUF base's LoRA file differs from "
                      "the HF base's", cases[c].fam, type);
            free(hf);
            free(ad_rel);
            free(ad);
            free(base);
            free(a);
            free(b);
        }
    /* a model export over a GGUF base is refused by name */
    char *base = gguf_fixture("tiny-llama-q8_0");
    char *out = lc_test_path_in(tmp, "model.gguf");
    lc_gguf_export_opts o = {.base_dir = base, .out_path = out, .type = LC_GGML_F32};
    lc_gguf_export_report r;
    lc_error err;
    cr_assert_neq(lc_gguf_export(&o, &r, NULL, &err), 0);
    lc_test_assert_msg_has(&err, "is a GGUF file");
    cr_expect(access(out, F_OK) != 0);
    free(base);
    free(out);
    lc_test_rm_rf(tmp);
    free(tmp);
}

/* ---- training writes adapter_model.gguf ---------------------------------- */

/* `lorac train` over base for max_steps steps (extra: more YAML lines) into
 * out; the run's stdout + stderr (malloc'd). */
static char *train(const char *tmp, const char *base, const char *out, const char *extra,
                   const char *const *sets, int n_sets)
{
    char *yaml = lc_test_asprintf(
        "base_model: %s\nadapter: lora\nlora_r: 8\nlora_alpha: 16\nlora_target_linear: true\n"
        "datasets:\n  - path: %s\n    type: tokenized\nsequence_len: 16\nmicro_batch_size: 2\n"
        "learning_rate: 1e-3\nseed: 7\noutput_dir: %s\n%s",
        base, lc_test_fixture("tiny-llama/train.jsonl"), out, extra);
    char *cfg = lc_test_write_text(tmp, "train.yaml", yaml);
    const char *args[16] = {"train", cfg};
    int k = 2;
    for (int i = 0; i < n_sets; i++) {
        args[k++] = "--set";
        args[k++] = sets[i];
    }
    args[k] = NULL;
    lc_test_run_result r = lc_test_run_lorac(NULL, args);
    cr_assert_eq(r.code, 0, "train over %s failed (%d):\n%s%s", base, r.code, r.out, r.err);
    char *log = lc_test_asprintf("%s%s", r.out, r.err);
    lc_test_run_free(&r);
    free(cfg);
    free(yaml);
    return log;
}

/* adapter_model.gguf of dir against its adapter_model.safetensors. */
static void check_gguf_adapter(const char *dir, const char *base, const char *arch, float alpha)
{
    lc_error err;
    lc_model_config cfg;
    cr_assert_eq(lc_gguf_model_config_load(&cfg, base, &err), 0, "%s", err.msg);
    char *gp = lc_test_asprintf("%s/adapter_model.gguf", dir);
    char *sp = lc_test_asprintf("%s/adapter_model.safetensors", dir);
    lc_gguf_file g;
    lc_st_file s;
    cr_assert_eq(lc_gguf_open(&g, gp, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_st_open(&s, sp, &err), 0, "%s", err.msg);
    lc_gguf_str v;
    const char *want[][2] = {{"general.type", "adapter"}, {"adapter.type", "lora"},
                             {"general.architecture", arch}};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(lc_gguf_get_str(&g, want[i][0], &v, &err), 0, "%s", err.msg);
        cr_expect(v.len == strlen(want[i][1]) && !memcmp(v.ptr, want[i][1], v.len),
                  "%s: %s is '%.*s', expected %s", gp, want[i][0], (int)v.len, v.ptr, want[i][1]);
    }
    float a;
    cr_assert_eq(lc_gguf_get_f32(&g, "adapter.lora.alpha", &a, &err), 0, "%s", err.msg);
    cr_expect_eq(a, alpha);
    const bool llama = !strcmp(arch, "llama");
    size_t n_checked = 0;
    for (int l = 0; l < cfg.n_layers; l++)
        for (int m = 0; m < LC_TEST_LLAMA_MODULES; m++)
            for (int b = 0; b < 2; b++) {
                char hf[256], name[128];
                lc_lora_tensor_name(hf, sizeof hf, l, (lc_module)m, b);
                const lc_st_tensor *st = lc_st_find(&s, hf);
                cr_assert(st, "%s: %s missing", sp, hf);
                cr_assert_eq(st->dtype, LC_DTYPE_F32);
                snprintf(name, sizeof name, "blk.%d.%s.weight.lora_%c", l,
                         lc_gguf_linear_name((lc_module)m), b ? 'b' : 'a');
                const lc_gguf_tensor *t = lc_gguf_find_tensor(&g, name);
                cr_assert(t, "%s: %s missing", gp, name);
                cr_assert_eq(t->type, LC_GGML_F32, "%s type", name);
                const int64_t rows = st->shape[0], cols = st->shape[1];
                cr_assert(t->n_dims == 2 && t->ne[0] == cols && t->ne[1] == rows,
                          "%s: ggml shape [%lld, %lld], safetensors [%lld, %lld]", name,
                          (long long)t->ne[0], (long long)t->ne[1], (long long)rows,
                          (long long)cols);
                int heads = !(llama && b) ? 0 : m == LC_MOD_Q ? cfg.n_heads
                          : m == LC_MOD_K ? cfg.n_kv_heads : 0;
                const float *x = (const float *)st->data, *y = (const float *)t->data;
                for (int64_t r = 0; r < rows; r++) {
                    int64_t gr = heads ? lc_llama_gguf_row(rows, heads, r) : r;
                    cr_assert(!memcmp(x + r * cols, y + gr * cols, (size_t)cols * sizeof *x),
                              "%s: HF row %lld differs from gguf row %lld", name, (long long)r,
                              (long long)gr);
                }
                n_checked++;
            }
    cr_expect_eq(g.n_tensors, n_checked, "%s: %zu tensors, expected %zu", gp, g.n_tensors,
                 n_checked);
    cr_expect_eq(s.n_tensors, n_checked);
    lc_gguf_close(&g);
    lc_st_close(&s);
    free(gp);
    free(sp);
}

/* Nothing but the run's files: no partial export left behind. */
static void expect_no_partial(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert(d);
    struct dirent *e;
    while ((e = readdir(d)))
        cr_expect(!strstr(e->d_name, "lorac-partial"), "%s/%s left behind", dir, e->d_name);
    closedir(d);
}

Test(gguf_train_out, train_writes_gguf_adapter, .timeout = 120)
{
    static const struct {
        const char *stem, *arch;
    } cases[] = {{"tiny-llama-q8_0", "llama"}, {"tiny-llama3-q4_k", "llama"},
                 {"tiny-qwen2-q8_0", "qwen2"}};
    char *tmp = lc_test_tmpdir();
    for (size_t c = 0; c < 3; c++) {
        char *base = gguf_fixture(cases[c].stem);
        char *out = lc_test_asprintf("%s/%s", tmp, cases[c].stem);
        char *log = train(tmp, base, out, "max_steps: 2\n", NULL, 0);
        cr_expect(strstr(log, "adapter_model.gguf, the GGUF LoRA adapter for llama.cpp"),
                  "%s", log);
        check_gguf_adapter(out, base, cases[c].arch, 16.0f);
        expect_no_partial(out);
        free(log);
        free(out);
        free(base);
    }
    /* an HF base writes the PEFT files only (a GGUF adapter: export-gguf --lora) */
    char *out = lc_test_asprintf("%s/hf", tmp);
    char *log = train(tmp, lc_test_fixture("tiny-llama/model"), out, "max_steps: 1\n", NULL, 0);
    char *gp = lc_test_path_in(out, "adapter_model.gguf");
    cr_expect(access(gp, F_OK) != 0 && !strstr(log, "adapter_model.gguf"), "%s", log);
    free(gp);
    free(log);
    free(out);
    /* the base model is never replaced by the adapter written beside it */
    char *dir = lc_test_path_in(tmp, "clash");
    cr_assert_eq(mkdir(dir, 0755), 0);
    size_t n;
    char *base = gguf_fixture("tiny-llama-q8_0");
    char *bytes = lc_test_read_file(base, &n);
    char *inside = lc_test_write_file(dir, "adapter_model.gguf", bytes, n);
    char *yaml = lc_test_asprintf(
        "base_model: %s\nadapter: lora\nlora_target_linear: true\n"
        "datasets:\n  - path: %s\n    type: tokenized\nsequence_len: 16\nmax_steps: 1\n"
        "output_dir: %s\n", inside, lc_test_fixture("tiny-llama/train.jsonl"), dir);
    char *cfg = lc_test_write_text(tmp, "clash.yaml", yaml);
    const char *args[] = {"train", cfg, NULL};
    lc_test_run_result r = lc_test_run_lorac(NULL, args);
    cr_expect_eq(r.code, 1, "(%d):\n%s%s", r.code, r.out, r.err);
    cr_expect(strstr(r.err, "is output_dir's adapter_model.gguf"), "%s", r.err);
    lc_test_run_free(&r);
    size_t n2;
    char *after = lc_test_read_file(inside, &n2);
    cr_expect(n2 == n && !memcmp(after, bytes, n), "the base model was changed");
    free(after);
    free(cfg);
    free(yaml);
    free(inside);
    free(bytes);
    free(base);
    free(dir);
    lc_test_rm_rf(tmp);
    free(tmp);
}

/* ---- lora_model_dir and resume over a GGUF base ---------------------------- */

/* step, loss and grad_norm of the first line of dir/metrics.jsonl */
static void first_metrics(const char *dir, double *loss, double *grad_norm)
{
    char *p = lc_test_asprintf("%s/metrics.jsonl", dir);
    char *text = lc_test_read_file(p, NULL);
    char *nl = strchr(text, '\n');
    cr_assert(nl, "%s: empty", p);
    *nl = '\0';
    cJSON *j = cJSON_Parse(text);
    cr_assert(j, "%s: %s", p, text);
    cr_assert_eq(cJSON_GetObjectItem(j, "step")->valuedouble, 1);
    *loss = cJSON_GetObjectItem(j, "loss")->valuedouble;
    *grad_norm = cJSON_GetObjectItem(j, "grad_norm")->valuedouble;
    cJSON_Delete(j);
    free(text);
    free(p);
}

Test(gguf_train_out, lora_model_dir_over_gguf_equals_hf, .timeout = 60)
{
    const char *ad = "tiny-llama/adapter_step3"; /* B != 0: every gradient is non-zero */
    char *gguf = gguf_fixture("tiny-llama-f32");
    char *tmp = lc_test_tmpdir();
    char *extra = lc_test_asprintf("lora_model_dir: %s\nmax_steps: 1\n", lc_test_fixture(ad));
    double loss[2], gn[2];
    const char *bases[2] = {gguf, lc_test_fixture("tiny-llama/model")};
    for (int k = 0; k < 2; k++) {
        char *out = lc_test_asprintf("%s/out%d", tmp, k);
        char *log = train(tmp, bases[k], out, extra, NULL, 0);
        cr_expect(strstr(log, "adapter: starting from"), "%s", log);
        first_metrics(out, &loss[k], &gn[k]);
        free(log);
        free(out);
    }
    cr_log_info("lorac train, lora_model_dir over F32 GGUF vs HF dir: loss %.9g vs %.9g, grad "
                "norm %.9g vs %.9g", loss[0], loss[1], gn[0], gn[1]);
    cr_expect_lt(lc_test_rel(loss[0], loss[1]), TOL_F32_VS_HF);
    cr_expect_lt(lc_test_rel(gn[0], gn[1]), TOL_F32_VS_HF);
    free(extra);
    free(gguf);
    lc_test_rm_rf(tmp);
    free(tmp);
}

static void expect_same(const char *a, const char *b, const char *name)
{
    char *x = lc_test_path_in(a, name), *y = lc_test_path_in(b, name);
    cr_expect(lc_test_same_file(x, y), "%s and %s differ", x, y);
    free(x);
    free(y);
}

Test(gguf_train_out, resume_over_gguf_is_bitwise, .timeout = 120)
{
    char *tmp = lc_test_tmpdir();
    char *base = gguf_fixture("tiny-llama-q8_0");
    const char *extra = "max_steps: 4\nsave_steps: 2\nshuffle: true\nlora_dropout: 0.1\n"
                        "gradient_accumulation_steps: 2\nlr_scheduler: cosine\nwarmup_steps: 1\n";
    /* the same leaf name: it is the GGUF adapter's general.name */
    char *A = lc_test_asprintf("%s/A/out", tmp), *B = lc_test_asprintf("%s/B/out", tmp);
    free(train(tmp, base, A, extra, NULL, 0));
    free(train(tmp, base, B, extra, NULL, 0));
    /* B cut back to what a run stopped after step 2 leaves */
    const char *gone[] = {"adapter_model.safetensors", "adapter_config.json",
                          "adapter_model.gguf"};
    for (int i = 0; i < 3; i++) {
        char *p = lc_test_path_in(B, gone[i]);
        cr_assert_eq(unlink(p), 0, "unlink %s", p);
        free(p);
    }
    char *ck4 = lc_test_path_in(B, "checkpoint-4");
    lc_test_rm_rf(ck4);
    free(ck4);
    char *mp = lc_test_path_in(B, "metrics.jsonl");
    char *m = lc_test_read_file(mp, NULL);
    char *cut = strstr(m, "{\"step\":3,");
    cr_assert(cut, "%s", m);
    *cut = '\0';
    free(lc_test_write_text(B, "metrics.jsonl", m));
    free(m);
    free(mp);
    const char *sets[] = {"resume_from_checkpoint=auto"};
    char *log = train(tmp, base, B, extra, sets, 1);
    cr_expect(strstr(log, "resume: "), "%s", log);
    cr_expect(strstr(log, "checkpoint-2"), "%s", log);
    free(log);
    expect_same(A, B, "adapter_model.safetensors");
    expect_same(A, B, "adapter_model.gguf");
    expect_same(A, B, "checkpoint-4/adapter_model.safetensors");
    expect_same(A, B, "checkpoint-4/optimizer.safetensors");
    free(A);
    free(B);
    free(base);
    lc_test_rm_rf(tmp);
    free(tmp);
}

/* ---- generation --------------------------------------------------------- */

/* `lorac generate --json` new ids (printed compactly, malloc'd). */
static char *generate_ids(const char *model, const char *adapter, const char *ids)
{
    const char *args[16] = {"generate", "--model", model, "--prompt-ids", ids,
                            "--max-new-tokens", "32", "--ignore-eos", "--json"};
    int k = 9;
    if (adapter) {
        args[k++] = "--adapter";
        args[k++] = adapter;
    }
    args[k] = NULL;
    lc_test_run_result r = lc_test_run_lorac(NULL, args);
    cr_assert_eq(r.code, 0, "generate over %s failed (%d):\n%s%s", model, r.code, r.out, r.err);
    cJSON *j = cJSON_Parse(r.out);
    cr_assert(j, "not JSON: %s", r.out);
    char *s = cJSON_PrintUnformatted(cJSON_GetObjectItem(j, "ids"));
    cJSON_Delete(j);
    lc_test_run_free(&r);
    return s;
}

Test(gguf_train_out, generate_over_gguf_equals_hf, .timeout = 60)
{
    char *text = lc_test_read_file(lc_test_fixture("generate/llama.json"), NULL);
    cJSON *ref = cJSON_Parse(text);
    free(text);
    cr_assert(ref);
    char *gguf = gguf_fixture("tiny-llama-f32");
    char *ad = strdup(lc_test_fixture("tiny-llama/adapter_init"));
    char *hf = strdup(lc_test_fixture("tiny-llama/model"));
    const cJSON *prompts = cJSON_GetObjectItem(ref, "prompts");
    for (int p = 0; p < cJSON_GetArraySize(prompts); p++)
        for (int with = 0; with < 2; with++) {
            char ids[1024] = "";
            const cJSON *x;
            cJSON_ArrayForEach(x, cJSON_GetArrayItem(prompts, p))
                snprintf(ids + strlen(ids), sizeof ids - strlen(ids), "%s%d", ids[0] ? "," : "",
                         (int)x->valuedouble);
            char *a = generate_ids(gguf, with ? ad : NULL, ids);
            char *b = generate_ids(hf, with ? ad : NULL, ids);
            char *want = cJSON_PrintUnformatted(
                cJSON_GetArrayItem(cJSON_GetObjectItem(ref, with ? "greedy_adapter" : "greedy"), p));
            cr_expect_str_eq(a, b, "prompt %d%s: GGUF base %s, HF dir %s", p,
                             with ? " + adapter" : "", a, b);
            cr_expect_str_eq(a, want, "prompt %d%s: GGUF base vs transformers", p,
                             with ? " + adapter" : "");
            free(a);
            free(b);
            free(want);
        }
    free(gguf);
    free(ad);
    free(hf);
    cJSON_Delete(ref);
}

/* The chat quickstart's model exported to GGUF, alone in a directory: its
 * tokenizer and chat template come from the file's metadata. `lorac generate
 * --prompt` / `--messages` and `lorac chat` over it give the prompt ids, new
 * ids and text of the HF directory. */
Test(gguf_train_out, generate_and_chat_over_gguf_file_alone, .timeout = 120)
{
    char *tmp = lc_test_tmpdir();
    char *gguf = lc_test_path_in(tmp, "chat.gguf");
    char *model = lc_test_asprintf("%s/configs/quickstart_chat/model", LORAC_SOURCE_DIR);
    const char *ex[] = {"export-gguf", "--base", model, "--out", gguf, NULL};
    lc_test_run_result r = lc_test_run_lorac(NULL, ex);
    cr_assert_eq(r.code, 0, "%s%s", r.out, r.err);
    lc_test_run_free(&r);
    char *msgs = lc_test_write_text(tmp, "m.json", "[{\"role\": \"user\", \"content\": "
                                    "\"What is a LoRA adapter?\"}]");
    const char *models[2] = {model, gguf};
    char *out[2][2];
    for (int k = 0; k < 2; k++)
        for (int form = 0; form < 2; form++) {
            const char *args[] = {"generate", "--model", models[k],
                                  form ? "--messages" : "--prompt",
                                  form ? msgs : "The adapter is", "--max-new-tokens", "24",
                                  "--ignore-eos", "--json", NULL};
            r = lc_test_run_lorac(NULL, args);
            cr_assert_eq(r.code, 0, "generate over %s failed (%d):\n%s%s", models[k], r.code,
                         r.out, r.err);
            out[k][form] = strdup(r.out);
            lc_test_run_free(&r);
        }
    for (int form = 0; form < 2; form++) {
        cJSON *a = cJSON_Parse(out[0][form]), *b = cJSON_Parse(out[1][form]);
        cr_assert(a && b, "%s\n%s", out[0][form], out[1][form]);
        const char *keys[] = {"prompt_ids", "ids", "text"};
        for (int i = 0; i < 3; i++) {
            char *x = cJSON_PrintUnformatted(cJSON_GetObjectItem(a, keys[i]));
            char *y = cJSON_PrintUnformatted(cJSON_GetObjectItem(b, keys[i]));
            cr_expect_str_eq(y, x, "%s %s: GGUF file %s, HF directory %s",
                             form ? "--messages" : "--prompt", keys[i], y, x);
            free(x);
            free(y);
        }
        cJSON_Delete(a);
        cJSON_Delete(b);
        free(out[0][form]);
        free(out[1][form]);
    }
    /* lorac chat, two turns off a terminal */
    char *replies[2];
    for (int k = 0; k < 2; k++) {
        char *cmd = lc_test_asprintf("printf 'hello\\nWhat is a LoRA adapter?\\n' | %s chat "
                                     "--model %s --max-new-tokens 12 --temperature 0",
                                     LORAC_BINARY, models[k]);
        const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
        r = lc_test_run(NULL, argv);
        cr_assert_eq(r.code, 0, "chat over %s failed (%d):\n%s%s", models[k], r.code, r.out,
                     r.err);
        cr_assert(r.out[0], "chat over %s: no reply:\n%s", models[k], r.err);
        replies[k] = strdup(r.out);
        lc_test_run_free(&r);
        free(cmd);
    }
    cr_expect_str_eq(replies[1], replies[0], "chat replies: GGUF file\n%s\nHF directory\n%s",
                     replies[1], replies[0]);
    free(replies[0]);
    free(replies[1]);
    free(msgs);
    free(model);
    free(gguf);
    lc_test_rm_rf(tmp);
    free(tmp);
}

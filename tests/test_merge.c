/* test_merge.c — `lorac merge` (train/merge.c), run through LORAC_BINARY so
 * exit codes and messages are what a user sees.
 *
 *   fixture_matches_peft    adapter_step3 merged into the tiny-llama model ==
 *                           merged_step3.safetensors (PEFT merge_and_unload)
 *                           within TOL_WEIGHT for every tensor; the
 *                           verification reports a logit difference <=
 *                           TOL_VERIFY_F32.
 *   bf16_base_bit_exact     a BF16 copy of the model: every merged weight ==
 *                           bf16(f32(W) + f32(scaling * B@A)), round to nearest
 *                           even, computed here independently; all other
 *                           tensors and the side files byte-identical; --dtype
 *                           f32 converts every tensor and config.json.
 *   sharded_layout          a 2-shard copy keeps its file names, tensor split
 *                           and weight_map; --dtype bf16 updates total_size.
 *   corrupt_hook_fails      LORAC_TEST_CORRUPT_MERGE=1 (test-only hook) makes the
 *                           verification fail: exit 1, a message about the
 *                           difference, nothing written.
 *   verify_every_fixture    correct merges of the four fixtures (adapter_step3)
 *                           in f32, bf16 and f16 pass the verification, every
 *                           matrix within its rounding bound.
 *   small_wrong_merge       the hook with a small error: one merged weight
 *                           0.001 off (f32: logits move 2e-4, 1e-4 of the
 *                           old 1e-3 tolerance) or 1e-4 off (caught element-
 *                           wise), and 0.1 off in bf16 (logits move ~1% of
 *                           max|logit|, far inside bf16's own rounding noise,
 *                           caught element-wise): all fail.
 *   dequantize_bnb4         adapter_step3 merged into the bitsandbytes NF4
 *                           fixture with --dequantize --dtype f32: every linear
 *                           == dequant(W) + scaling · B@A computed here (dequant
 *                           via lc_model_load + lc_weight_rows_to_real) within
 *                           TOL_WEIGHT; other tensors bit-identical; no bitsandbytes
 *                           tensors or quantization_config left; verification
 *                           passes. The default (BF16) output is the f32 one
 *                           rounded; a 2-shard copy (a linear's companions in
 *                           the other shard) gives the same tensors and an index
 *                           without the dropped names; without --dequantize the
 *                           base is refused naming the flag.
 *   bad_*                   mismatched adapters (hidden size, rank, layer),
 *                           missing shard, existing output (and --force),
 *                           quantized base, no space left (tmpfs; skipped when
 *                           it cannot be mounted). */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/safetensors.h"
#include "helpers.h"
#include "train/fsutil.h"
#include "train/lora.h"
#include "train/model.h"
#include "train/model_config.h"
#include "train/side_files.h"

#define SCALING 2.0 /* fixture LoRA: alpha 16 / r 8 */

/* Tolerances: about 10x the worst measured (the same under every OpenBLAS
 * kernel this x86 machine runs: SkylakeX, Haswell, Zen, Sandybridge,
 * Nehalem, Core2, Prescott, Atom), so that a 100x loss of precision fails.
 *   merged weights vs PEFT merge_and_unload (float64 merge stored as f32),
 *     and vs dequant(W) + scaling * B@A computed here in double: largest
 *     absolute difference 2.98e-8 and 2.51e-8, one f32 ulp of the values in
 *     [0.25, 0.5)
 *   logit difference the f32 verification reports: 1.25e-6 (fixture, Prescott
 *     kernels; 9.8e-7 with SkylakeX), 1.15e-6 (dequantized NF4 fixture) */
#define TOL_WEIGHT 3e-7
#define TOL_VERIFY_F32 1.5e-5

/* ------------------------------------------------------------------ */
/* helpers                                                             */

static lc_test_run_result merge3(const char *env, const char *base, const char *adapter, const char *out,
                         const char *x1, const char *x2)
{
    const char *args[] = {"merge", "--base", base, "--adapter", adapter, "--out", out, x1, x2, NULL};
    return lc_test_run_lorac(env, args);
}

static void copy_file(const char *src, const char *dst)
{
    size_t n;
    char *t = lc_test_read_file(src, &n);
    lc_error err;
    cr_assert_eq(lc_write_file_atomic(dst, t, n, &err), 0, "%s", err.msg);
    free(t);
}

/* Text with the first occurrence of `from` replaced by `to` (must occur). */
static char *replace1(const char *text, const char *from, const char *to)
{
    const char *p = strstr(text, from);
    cr_assert(p, "'%s' not found", from);
    return lc_test_asprintf("%.*s%s%s", (int)(p - text), text, to, p + strlen(from));
}

static void write_text(const char *dir, const char *name, const char *text)
{
    free(lc_test_write_file(dir, name, text, strlen(text)));
}

static const char *fixture_model(void) { return lc_test_fixture("tiny-llama/model"); }
static const char *fixture_adapter(void) { return lc_test_fixture("tiny-llama/adapter_step3"); }

static double parse_verify_diff(const char *out)
{
    const char *p = strstr(out, "logit difference ");
    cr_assert(p, "no verification line in:\n%s", out);
    return strtod(p + strlen("logit difference "), NULL);
}

/* float value i of a F32 / BF16 tensor */
static float elem(const lc_st_tensor *t, uint64_t i)
{
    if (t->dtype == LC_DTYPE_F32)
        return ((const float *)t->data)[i];
    cr_assert_eq(t->dtype, LC_DTYPE_BF16);
    return lc_bf16_to_f32(((const uint16_t *)t->data)[i]);
}

/* Is name an adapted linear? Sets layer / module. */
static bool linear_of(const char *name, int *layer, char *mod)
{
    char parent[32];
    int n = 0;
    return sscanf(name, "model.layers.%d.%31[^.].%31[^.].weight%n", layer, parent, mod, &n) == 3 &&
           n > 0 && name[n] == '\0' && strstr(mod, "_proj");
}

/* Writes DIR/model.safetensors (all tensors of src converted to dtype F32 or
 * BF16) and DIR/config.json (the fixture's, with dtype set to cfg_dtype). */
static void write_converted_model(const char *dir, lc_dtype dtype, const char *cfg_dtype)
{
    lc_error err;
    lc_st_file src;
    char *mp = lc_test_asprintf("%s/model.safetensors", fixture_model());
    cr_assert_eq(lc_st_open(&src, mp, &err), 0, "%s", err.msg);
    lc_st_entry *e = calloc(src.n_tensors, sizeof *e);
    void **bufs = calloc(src.n_tensors, sizeof *bufs);
    for (size_t i = 0; i < src.n_tensors; i++) {
        const lc_st_tensor *t = &src.tensors[i];
        cr_assert_eq(t->dtype, LC_DTYPE_F32);
        const void *data = t->data;
        if (dtype == LC_DTYPE_BF16) {
            uint16_t *b = malloc(t->numel * 2);
            for (uint64_t k = 0; k < t->numel; k++)
                b[k] = lc_f32_to_bf16(((const float *)t->data)[k]);
            bufs[i] = b;
            data = b;
        }
        e[i] = (lc_st_entry){t->name, dtype, t->ndim, t->shape, data};
    }
    char *out = lc_test_asprintf("%s/model.safetensors", dir);
    const char *mk[1] = {"format"}, *mv[1] = {"pt"};
    cr_assert_eq(lc_st_write(out, e, src.n_tensors, mk, mv, 1, &err), 0, "%s", err.msg);
    for (size_t i = 0; i < src.n_tensors; i++)
        free(bufs[i]);
    free(bufs);
    free(e);
    free(out);
    free(mp);
    lc_st_close(&src);
    char *cp = lc_test_asprintf("%s/config.json", fixture_model());
    size_t n;
    char *text = lc_test_read_file(cp, &n);
    char *want = lc_test_asprintf("\"dtype\": \"%s\"", cfg_dtype);
    char *cfg = replace1(text, "\"dtype\": \"float32\"", want);
    write_text(dir, "config.json", cfg);
    free(cfg);
    free(want);
    free(text);
    free(cp);
}

static bool is_shard1(const char *name)
{
    return strncmp(name, "model.layers.1.", 15) != 0 && strcmp(name, "model.norm.weight") != 0;
}

/* Writes the model of src_dir as two shards + index into dir: tensors for
 * which in_second() holds go to the second shard. */
static void write_sharded(const char *src_dir, const char *dir, bool (*in_second)(const char *))
{
    lc_error err;
    lc_st_file src;
    char *mp = lc_test_asprintf("%s/model.safetensors", src_dir);
    cr_assert_eq(lc_st_open(&src, mp, &err), 0, "%s", err.msg);
    const char *names[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "metadata");
    cJSON *wm = cJSON_AddObjectToObject(root, "weight_map");
    double total = 0;
    for (int s = 0; s < 2; s++) {
        lc_st_entry *e = calloc(src.n_tensors, sizeof *e);
        size_t n = 0;
        for (size_t i = 0; i < src.n_tensors; i++) {
            const lc_st_tensor *t = &src.tensors[i];
            if (in_second(t->name) != (s == 1))
                continue;
            e[n++] = (lc_st_entry){t->name, t->dtype, t->ndim, t->shape, t->data};
            cJSON_AddStringToObject(wm, t->name, names[s]);
            total += (double)(t->end - t->begin);
        }
        char *path = lc_test_asprintf("%s/%s", dir, names[s]);
        const char *mk[1] = {"format"}, *mv[1] = {"pt"};
        cr_assert_eq(lc_st_write(path, e, n, mk, mv, 1, &err), 0, "%s", err.msg);
        free(path);
        free(e);
    }
    cJSON_AddNumberToObject(meta, "total_size", total);
    char *json = cJSON_Print(root);
    write_text(dir, "model.safetensors.index.json", json);
    free(json);
    cJSON_Delete(root);
    char *cp = lc_test_asprintf("%s/config.json", src_dir), *dst = lc_test_asprintf("%s/config.json", dir);
    copy_file(cp, dst);
    free(cp);
    free(dst);
    free(mp);
    lc_st_close(&src);
}

static bool model_in_second(const char *name) { return !is_shard1(name); }

/* Writes the fixture model as two shards + index into dir (F32). */
static void write_sharded_model(const char *dir)
{
    write_sharded(fixture_model(), dir, model_in_second);
}

/* Compares every tensor of the model in dir (one file or shards) against
 * the fixture's PEFT merge ref_rel; returns the largest absolute difference. */
static double max_err_vs(const char *ref_rel, const char *dir, const char *const *files,
                         int n_files)
{
    lc_error err;
    lc_st_file ref;
    cr_assert_eq(lc_st_open(&ref, lc_test_fixture(ref_rel), &err), 0, "%s", err.msg);
    double worst = 0;
    size_t seen = 0;
    for (int f = 0; f < n_files; f++) {
        lc_st_file out;
        char *p = lc_test_asprintf("%s/%s", dir, files[f]);
        cr_assert_eq(lc_st_open(&out, p, &err), 0, "%s", err.msg);
        for (size_t i = 0; i < out.n_tensors; i++) {
            const lc_st_tensor *t = &out.tensors[i];
            const lc_st_tensor *r = lc_st_find(&ref, t->name);
            cr_assert(r, "tensor %s not in merged_step3", t->name);
            cr_assert_eq(t->dtype, LC_DTYPE_F32, "%s", t->name);
            cr_assert_eq(t->numel, r->numel, "%s", t->name);
            double w = 0;
            for (uint64_t k = 0; k < t->numel; k++)
                w = fmax(w, fabs((double)elem(t, k) - (double)elem(r, k)));
            cr_expect_leq(w, TOL_WEIGHT, "%s: max abs error %g", t->name, w);
            worst = fmax(worst, w);
            seen++;
        }
        lc_st_close(&out);
        free(p);
    }
    cr_assert_eq(seen, ref.n_tensors, "merged model has %zu tensors, merged_step3 %zu", seen,
                 ref.n_tensors);
    lc_st_close(&ref);
    return worst;
}

/* The same against tiny-llama's merged_step3. */
static double max_err_vs_reference(const char *dir, const char *const *files, int n_files)
{
    return max_err_vs("tiny-llama/merged_step3.safetensors", dir, files, n_files);
}

/* ------------------------------------------------------------------ */
/* tests                                                               */

/* Each newer family's adapter_step3 merged as PEFT's merge_and_unload did:
 * Gemma's (1 + w) norms are copied as stored, Phi-3's fused qkv_proj and
 * gate_up_proj take their one B·A each, a tied head stays tied, and every
 * expert of Mixtral and Qwen3-MoE takes its B_e·A_e (gate and up from the
 * halves of the [gate | up] adapter) into its per-expert weights. */
Test(merge, families_match_peft, .timeout = 120)
{
    static const char *const fams[] = {"tiny-gemma2", "tiny-gemma3", "tiny-phi3", "tiny-mixtral",
                                       "tiny-qwen3moe"};
    for (size_t i = 0; i < sizeof fams / sizeof fams[0]; i++) {
        char *tmp = lc_test_tmpdir();
        char *out = lc_test_asprintf("%s/merged", tmp);
        char *model = lc_test_asprintf("%s/model", lc_test_fixture(fams[i]));
        char *adapter = lc_test_asprintf("%s/adapter_step3", lc_test_fixture(fams[i]));
        char *ref = lc_test_asprintf("%s/merged_step3.safetensors", fams[i]);
        lc_test_run_result r = merge3(NULL, model, adapter, out, NULL, NULL);
        cr_assert_eq(r.code, 0, "%s: merge failed (%d):\n%s%s", fams[i], r.code, r.out, r.err);
        const char *files[1] = {"model.safetensors"};
        double worst = max_err_vs(ref, out, files, 1);
        double diff = parse_verify_diff(r.out);
        cr_log_info("%s: max abs error vs PEFT's merge %.3g; verification logit difference %.3g",
                    fams[i], worst, diff);
        cr_expect_leq(diff, TOL_VERIFY_F32, "%s: verification difference %g", fams[i], diff);
        lc_test_run_free(&r);
        lc_test_rm_rf(tmp);
        free(ref);
        free(adapter);
        free(model);
        free(out);
        free(tmp);
    }
}

Test(merge, fixture_matches_peft)
{
    char *tmp = lc_test_tmpdir();
    char *out = lc_test_asprintf("%s/merged", tmp);
    lc_test_run_result r = merge3(NULL, fixture_model(), fixture_adapter(), out, NULL, NULL);
    cr_assert_eq(r.code, 0, "merge failed (%d):\n%s%s", r.code, r.out, r.err);
    cr_log_info("%s", r.out);
    const char *files[1] = {"model.safetensors"};
    double worst = max_err_vs_reference(out, files, 1);
    double diff = parse_verify_diff(r.out);
    cr_log_info("max abs error vs merged_step3: %.3g; verification logit difference %.3g", worst,
                diff);
    cr_expect_leq(diff, TOL_VERIFY_F32, "verification difference %g", diff);
    cr_expect(strstr(r.out, "peak memory"), "no peak memory line");
    char *a = lc_test_asprintf("%s/config.json", fixture_model()), *b = lc_test_asprintf("%s/config.json", out);
    cr_expect(lc_test_same_file(a, b), "config.json not copied byte for byte");
    /* tensors the adapter does not touch: bit for bit */
    lc_error err;
    lc_st_file in, mo;
    char *ip = lc_test_asprintf("%s/model.safetensors", fixture_model());
    char *op = lc_test_asprintf("%s/model.safetensors", out);
    cr_assert_eq(lc_st_open(&in, ip, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_st_open(&mo, op, &err), 0, "%s", err.msg);
    cr_assert_eq(in.n_tensors, mo.n_tensors);
    for (size_t i = 0; i < in.n_tensors; i++) {
        int l;
        char mod[32];
        if (linear_of(in.tensors[i].name, &l, mod))
            continue;
        const lc_st_tensor *t = lc_st_find(&mo, in.tensors[i].name);
        cr_assert(t);
        cr_expect(memcmp(t->data, in.tensors[i].data, in.tensors[i].end - in.tensors[i].begin) == 0,
                  "%s changed", t->name);
    }
    cr_expect_str_eq(lc_st_meta(&mo, "format"), "pt");
    lc_st_close(&in);
    lc_st_close(&mo);
    lc_test_run_free(&r);
    free(a);
    free(b);
    free(ip);
    free(op);
    free(out);
    free(tmp);
}

Test(merge, bf16_base_bit_exact)
{
    char *tmp = lc_test_tmpdir();
    char *base = lc_test_asprintf("%s/base", tmp), *out = lc_test_asprintf("%s/merged", tmp);
    lc_error err;
    cr_assert_eq(lc_mkdir_p(base, &err), 0);
    write_converted_model(base, LC_DTYPE_BF16, "bfloat16");
    /* Every tokenizer/generation file travels (train/side_files.c's list). */
    for (int k = 0; lc_side_file_names[k]; k++) {
        char *body = lc_test_asprintf("side file %d: %s\n", k, lc_side_file_names[k]);
        write_text(base, lc_side_file_names[k], body);
        free(body);
    }
    write_text(base, "README.md", "not copied\n");
    lc_test_run_result r = merge3(NULL, base, fixture_adapter(), out, NULL, NULL);
    cr_assert_eq(r.code, 0, "merge failed (%d):\n%s%s", r.code, r.out, r.err);
    cr_log_info("%s", r.out);
    cr_expect(strstr(r.out, "16 x 2^-8) x max|logit|, bf16 output"),
              "bf16 output should use bf16's rounding in the tolerance:\n%s", r.out);

    lc_st_file in, mo, ad;
    char *ip = lc_test_asprintf("%s/model.safetensors", base), *op = lc_test_asprintf("%s/model.safetensors", out);
    char *ap = lc_test_asprintf("%s/adapter_model.safetensors", fixture_adapter());
    cr_assert_eq(lc_st_open(&in, ip, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_st_open(&mo, op, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_st_open(&ad, ap, &err), 0, "%s", err.msg);
    cr_assert_eq(in.n_tensors, mo.n_tensors);
    int merged = 0;
    uint64_t mismatches = 0, changed = 0;
    for (size_t i = 0; i < in.n_tensors; i++) {
        const lc_st_tensor *w = &in.tensors[i];
        const lc_st_tensor *t = lc_st_find(&mo, w->name);
        cr_assert(t, "%s missing", w->name);
        cr_assert_eq(t->dtype, LC_DTYPE_BF16, "%s", w->name);
        int l;
        char mod[32];
        if (!linear_of(w->name, &l, mod)) {
            cr_expect(memcmp(t->data, w->data, w->end - w->begin) == 0, "%s changed", w->name);
            continue;
        }
        char an[256], bn[256];
        const char *parent = strstr(w->name, ".self_attn.") ? "self_attn" : "mlp";
        snprintf(an, sizeof an, "base_model.model.model.layers.%d.%s.%s.lora_A.weight", l, parent, mod);
        snprintf(bn, sizeof bn, "base_model.model.model.layers.%d.%s.%s.lora_B.weight", l, parent, mod);
        const lc_st_tensor *A = lc_st_find(&ad, an), *B = lc_st_find(&ad, bn);
        cr_assert(A && B, "%s: no adapter", w->name);
        int64_t rows = w->shape[0], cols = w->shape[1], rk = A->shape[0];
        const float *a = A->data, *b = B->data;
        const uint16_t *got = t->data;
        for (int64_t i0 = 0; i0 < rows; i0++)
            for (int64_t j = 0; j < cols; j++) {
                double acc = 0;
                for (int64_t k = 0; k < rk; k++)
                    acc += (double)b[i0 * rk + k] * (double)a[k * cols + j];
                float delta = (float)(acc * SCALING);
                float v = lc_bf16_to_f32(((const uint16_t *)w->data)[i0 * cols + j]) + delta;
                uint16_t want = lc_f32_to_bf16(v);
                mismatches += got[i0 * cols + j] != want;
                changed += got[i0 * cols + j] != ((const uint16_t *)w->data)[i0 * cols + j];
            }
        merged++;
    }
    cr_expect_eq(merged, 14);
    cr_expect_eq(mismatches, 0, "%llu merged bf16 values differ from the independent computation",
                 (unsigned long long)mismatches);
    cr_expect_gt(changed, 1000, "the merge changed only %llu values", (unsigned long long)changed);
    cr_log_info("bf16 merge: %d linears, %llu values changed, %llu mismatches", merged,
                (unsigned long long)changed, (unsigned long long)mismatches);
    for (int k = -1; k < 0 || lc_side_file_names[k]; k++) {
        const char *name = k < 0 ? "config.json" : lc_side_file_names[k];
        char *x = lc_test_asprintf("%s/%s", base, name), *y = lc_test_asprintf("%s/%s", out, name);
        cr_expect(lc_path_exists(y) && lc_test_same_file(x, y), "%s not copied", name);
        free(x);
        free(y);
    }
    char *readme = lc_test_asprintf("%s/README.md", out);
    cr_expect(!lc_path_exists(readme), "README.md should not be copied");
    lc_st_close(&mo);
    lc_test_run_free(&r);

    /* --dtype f32: everything F32, config.json says float32, merged exact in f32 */
    char *out32 = lc_test_asprintf("%s/merged32", tmp);
    r = merge3(NULL, base, fixture_adapter(), out32, "--dtype", "f32");
    cr_assert_eq(r.code, 0, "merge --dtype f32 failed:\n%s%s", r.out, r.err);
    cr_expect(strstr(r.out, "f32 output"), "%s", r.out);
    free(op);
    op = lc_test_asprintf("%s/model.safetensors", out32);
    cr_assert_eq(lc_st_open(&mo, op, &err), 0, "%s", err.msg);
    for (size_t i = 0; i < in.n_tensors; i++) {
        const lc_st_tensor *w = &in.tensors[i], *t = lc_st_find(&mo, w->name);
        cr_assert(t);
        cr_expect_eq(t->dtype, LC_DTYPE_F32, "%s", w->name);
        int l;
        char mod[32];
        if (!linear_of(w->name, &l, mod))
            for (uint64_t k = 0; k < w->numel; k++)
                cr_assert_eq(elem(t, k), elem(w, k), "%s[%llu]", w->name, (unsigned long long)k);
    }
    lc_model_config mc;
    cr_assert_eq(lc_model_config_load(&mc, out32, &err), 0, "%s", err.msg);
    cr_expect_eq(mc.dtype, LC_DTYPE_F32, "config.json dtype not updated");
    lc_st_close(&mo);
    lc_st_close(&in);
    lc_st_close(&ad);
    lc_test_run_free(&r);
    free(out32);
    free(readme);
    free(ip);
    free(op);
    free(ap);
    free(base);
    free(out);
    free(tmp);
}

Test(merge, sharded_layout)
{
    char *tmp = lc_test_tmpdir();
    char *base = lc_test_asprintf("%s/base", tmp), *out = lc_test_asprintf("%s/merged", tmp);
    lc_error err;
    cr_assert_eq(lc_mkdir_p(base, &err), 0);
    write_sharded_model(base);
    lc_test_run_result r = merge3(NULL, base, fixture_adapter(), out, NULL, NULL);
    cr_assert_eq(r.code, 0, "merge failed (%d):\n%s%s", r.code, r.out, r.err);
    cr_log_info("%s", r.out);
    const char *files[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
    double worst = max_err_vs_reference(out, files, 2);
    cr_log_info("sharded: max abs error vs merged_step3 %.3g", worst);
    /* the same files: two shards + index + config, no model.safetensors */
    DIR *d = opendir(out);
    cr_assert(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') {
            n++;
            char *x = lc_test_asprintf("%s/%s", base, e->d_name);
            cr_expect(lc_path_exists(x), "unexpected output file %s", e->d_name);
            free(x);
        }
    closedir(d);
    cr_expect_eq(n, 4, "expected 2 shards + index + config.json, found %d files", n);
    /* the same weight_map, and each shard holds exactly its tensors */
    char *bi = lc_test_asprintf("%s/model.safetensors.index.json", base);
    char *oi = lc_test_asprintf("%s/model.safetensors.index.json", out);
    size_t len;
    char *bt = lc_test_read_file(bi, &len), *ot = lc_test_read_file(oi, &len);
    cJSON *bj = cJSON_Parse(bt), *oj = cJSON_Parse(ot);
    cr_assert(bj && oj);
    const cJSON *bw = cJSON_GetObjectItem(bj, "weight_map"), *ow = cJSON_GetObjectItem(oj, "weight_map");
    cr_assert_eq(cJSON_GetArraySize(bw), cJSON_GetArraySize(ow));
    const cJSON *it;
    cJSON_ArrayForEach(it, bw)
    {
        const cJSON *o = cJSON_GetObjectItem(ow, it->string);
        cr_assert(o && cJSON_IsString(o), "%s missing from the output weight_map", it->string);
        cr_expect_str_eq(o->valuestring, it->valuestring, "%s", it->string);
        char *sp = lc_test_asprintf("%s/%s", out, o->valuestring);
        lc_st_file sf;
        cr_assert_eq(lc_st_open(&sf, sp, &err), 0, "%s", err.msg);
        cr_expect(lc_st_find(&sf, it->string), "%s not in %s", it->string, o->valuestring);
        lc_st_close(&sf);
        free(sp);
    }
    lc_test_run_free(&r);

    /* --dtype bf16: the index's total_size follows, config.json says bfloat16 */
    char *out16 = lc_test_asprintf("%s/merged-bf16", tmp);
    r = merge3(NULL, base, fixture_adapter(), out16, "--dtype", "bf16");
    cr_assert_eq(r.code, 0, "merge --dtype bf16 failed:\n%s%s", r.out, r.err);
    char *qi = lc_test_asprintf("%s/model.safetensors.index.json", out16);
    char *qt = lc_test_read_file(qi, &len);
    cJSON *qj = cJSON_Parse(qt);
    cr_assert(qj);
    const cJSON *ts = cJSON_GetObjectItem(cJSON_GetObjectItem(qj, "metadata"), "total_size");
    cr_assert(cJSON_IsNumber(ts));
    cr_expect_eq(ts->valuedouble, 151872.0 * 2, "total_size %g", ts->valuedouble);
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(qj, "weight_map")), cJSON_GetArraySize(bw));
    lc_model_config mc;
    cr_assert_eq(lc_model_config_load(&mc, out16, &err), 0, "%s", err.msg);
    cr_expect_eq(mc.dtype, LC_DTYPE_BF16, "config.json dtype not updated");
    cJSON_Delete(qj);
    cJSON_Delete(bj);
    cJSON_Delete(oj);
    free(qt);
    free(qi);
    free(bt);
    free(ot);
    free(bi);
    free(oi);
    lc_test_run_free(&r);
    free(out16);
    free(base);
    free(out);
    free(tmp);
}

Test(merge, corrupt_hook_fails_verification)
{
    char *tmp = lc_test_tmpdir();
    char *out = lc_test_asprintf("%s/merged", tmp);
    lc_test_run_result r = merge3("LORAC_TEST_CORRUPT_MERGE=1", fixture_model(), fixture_adapter(), out,
                          NULL, NULL);
    cr_log_info("corrupted merge: exit %d: %s", r.code, r.err);
    cr_expect_eq(r.code, 1, "exit %d:\n%s%s", r.code, r.out, r.err);
    cr_expect(strstr(r.err, "logit difference"), "message should name the difference: %s", r.err);
    cr_expect(!lc_path_exists(out), "a failed verification must not leave %s", out);
    lc_test_run_free(&r);
    /* --no-verify skips the check (the hook stays test-only: not a success path to rely on) */
    r = merge3("LORAC_TEST_CORRUPT_MERGE=1", fixture_model(), fixture_adapter(), out,
               "--no-verify", NULL);
    cr_expect_eq(r.code, 0, "%s", r.err);
    cr_expect(strstr(r.out, "skipped"), "%s", r.out);
    lc_test_run_free(&r);
    free(out);
    free(tmp);
}

static double after(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    cr_assert(p, "'%s' not in:\n%s", key, text);
    return strtod(p + strlen(key), NULL);
}

Test(merge, verify_every_fixture)
{
    const char *names[4] = {"llama", "mistral", "qwen2", "qwen3"};
    const char *dtypes[3] = {"f32", "bf16", "f16"};
    char *tmp = lc_test_tmpdir();
    for (int f = 0; f < 4; f++)
        for (int d = 0; d < 3; d++) {
            char *base = lc_test_asprintf("tiny-%s/model", names[f]);
            char *ad = lc_test_asprintf("tiny-%s/adapter_step3", names[f]);
            char *out = lc_test_asprintf("%s/%s-%s", tmp, names[f], dtypes[d]);
            const char *b = lc_test_fixture(base), *a = lc_test_fixture(ad);
            lc_test_run_result r = merge3(NULL, b, a, out, "--dtype", dtypes[d]);
            cr_expect_eq(r.code, 0, "%s --dtype %s: exit %d:\n%s%s", names[f], dtypes[d], r.code,
                         r.out, r.err);
            if (r.code == 0) {
                double diff = parse_verify_diff(r.out), tol = after(r.out, "(tolerance ");
                double worst = after(r.out, "(at most ");
                cr_log_info("%s %s: logit difference %.3g (tolerance %.3g), weights at %.2f of "
                            "their rounding bound", names[f], dtypes[d], diff, tol, worst);
                cr_expect(strstr(r.out, "16 matrices equal W + scaling*B@A"), "%s", r.out);
                if (d == 0)
                    cr_expect_leq(diff, TOL_VERIFY_F32, "%s f32: logit difference %g", names[f],
                                  diff);
            }
            lc_test_run_free(&r);
            free(out);
            free(ad);
            free(base);
        }
    lc_test_rm_rf(tmp);
    free(tmp);
}

/* Runs a merge of the llama fixture with the hook adding bump to one merged
 * weight; it must fail and leave nothing. Returns stderr (malloc'd). */
static char *corrupted_merge(const char *bump, const char *dtype)
{
    char *tmp = lc_test_tmpdir();
    char *out = lc_test_asprintf("%s/merged", tmp);
    char *env = lc_test_asprintf("LORAC_TEST_CORRUPT_MERGE=%s", bump);
    lc_test_run_result r = merge3(env, fixture_model(), fixture_adapter(), out, "--dtype", dtype);
    cr_log_info("bump %s, %s: exit %d: %s", bump, dtype, r.code, r.err);
    cr_expect_eq(r.code, 1, "bump %s, %s: exit %d:\n%s%s", bump, dtype, r.code, r.out, r.err);
    cr_expect(!lc_path_exists(out), "a failed verification must not leave %s", out);
    char *e = lc_test_asprintf("%s", r.err);
    lc_test_run_free(&r);
    free(env);
    free(out);
    lc_test_rm_rf(tmp);
    free(tmp);
    return e;
}

Test(merge, small_wrong_merge_is_caught)
{
    /* the correct merges first: max|logit| and bf16's own logit noise */
    char *tmp = lc_test_tmpdir();
    char *o32 = lc_test_asprintf("%s/f32", tmp), *o16 = lc_test_asprintf("%s/bf16", tmp);
    lc_test_run_result r = merge3(NULL, fixture_model(), fixture_adapter(), o32, "--dtype", "f32");
    cr_assert_eq(r.code, 0, "%s%s", r.out, r.err);
    const double max_logit = after(r.out, "max |logit| ");
    lc_test_run_free(&r);
    r = merge3(NULL, fixture_model(), fixture_adapter(), o16, "--dtype", "bf16");
    cr_assert_eq(r.code, 0, "%s%s", r.out, r.err);
    const double noise16 = parse_verify_diff(r.out);
    lc_test_run_free(&r);
    cr_log_info("correct merges: max|logit| %.3g, bf16 logit difference %.3g", max_logit,
                noise16);

    /* f32, one weight 0.001 off: the logits move by ~2e-4, which the old
     * tolerance (1e-3) let through */
    char *e = corrupted_merge("0.001", "f32");
    cr_expect(strstr(e, "largest logit difference between base + adapter and the merged model is"),
              "%s", e);
    double d = after(e, "merged model is ");
    cr_expect(d > 0 && d < 1e-3, "logit difference %g", d);
    free(e);
    /* f32, 1e-4 off: below the logit tolerance, caught element by element */
    e = corrupted_merge("0.0001", "f32");
    cr_expect(strstr(e, "model.layers.0.mlp.down_proj.weight[0,0] of the merged model"), "%s", e);
    free(e);
    /* bf16, 0.1 off (about the weight itself, 0.089): the logits move by ~1%
     * of max|logit|, inside what bf16 rounding alone does to some models
     * (3.4% for tiny-qwen3), so below any safe logit tolerance and below the
     * old 5e-2 x max|logit| too; the element-wise check catches it */
    e = corrupted_merge("0.1", "bf16");
    cr_expect(strstr(e, "model.layers.0.mlp.down_proj.weight[0,0] of the merged model"), "%s", e);
    d = after(e, "the largest logit difference, ");
    cr_log_info("bf16 with one weight 0.1 off: logit difference %.3g (%.2g%% of max|logit|, "
                "correct merge %.3g)", d, 100 * d / max_logit, noise16);
    cr_expect(d > noise16 && d < 5e-2 * max_logit, "logit difference %g", d);
    free(e);
    free(o32);
    free(o16);
    lc_test_rm_rf(tmp);
    free(tmp);
}

/* An adapter for the fixture config edited by (from -> to), random A and B. */
static char *make_adapter(const char *tmp, const char *name, const char *from, const char *to)
{
    char *cp = lc_test_asprintf("%s/config.json", fixture_model());
    size_t n;
    char *text = lc_test_read_file(cp, &n);
    char *edited = replace1(text, from, to);
    lc_model_config mc;
    lc_error err;
    cr_assert_eq(lc_model_config_parse(&mc, edited, strlen(edited), "edited", &err), 0, "%s", err.msg);
    lc_lora_config lc = {.r = 8, .alpha = 16};
    lc.all_linear = true;
    lc_lora lora;
    cr_assert_eq(lc_lora_init(&lora, &mc, &lc, 7, &err), 0, "%s", err.msg);
    for (size_t i = 0; i < lora.n_params; i++)
        if (lora.params[i] == 0)
            lora.params[i] = (lc_real)(0.001 * (double)(i % 13));
    char *dir = lc_test_asprintf("%s/%s", tmp, name);
    cr_assert_eq(lc_lora_save_peft(&lora, dir, "other", &err), 0, "%s", err.msg);
    lc_lora_free(&lora);
    free(edited);
    free(text);
    free(cp);
    return dir;
}

static void expect_refused(const char *base, const char *adapter, const char *out,
                           const char *needle1, const char *needle2)
{
    lc_test_run_result r = merge3(NULL, base, adapter, out, NULL, NULL);
    cr_log_info("exit %d: %s", r.code, r.err);
    cr_expect_eq(r.code, 1, "exit %d:\n%s%s", r.code, r.out, r.err);
    cr_expect(strstr(r.err, needle1), "expected '%s' in: %s", needle1, r.err);
    if (needle2)
        cr_expect(strstr(r.err, needle2), "expected '%s' in: %s", needle2, r.err);
    cr_expect(!lc_path_exists(out), "%s was created", out);
    lc_test_run_free(&r);
}

Test(merge, bad_adapters)
{
    char *tmp = lc_test_tmpdir();
    char *out = lc_test_asprintf("%s/merged", tmp);
    /* trained on a model with another hidden size */
    char *other = make_adapter(tmp, "hidden32", "\"hidden_size\": 64", "\"hidden_size\": 32");
    expect_refused(fixture_model(), other, out, "hidden_size 64", "shape");
    /* rank in adapter_config.json does not match the tensors */
    char *rk = lc_test_asprintf("%s/rank", tmp);
    lc_error err;
    cr_assert_eq(lc_mkdir_p(rk, &err), 0);
    char *src = lc_test_asprintf("%s/adapter_config.json", fixture_adapter());
    size_t n;
    char *text = lc_test_read_file(src, &n);
    char *edited = replace1(text, "\"r\": 8", "\"r\": 16");
    write_text(rk, "adapter_config.json", edited);
    char *st_src = lc_test_asprintf("%s/adapter_model.safetensors", fixture_adapter());
    char *st_dst = lc_test_asprintf("%s/adapter_model.safetensors", rk);
    copy_file(st_src, st_dst);
    expect_refused(fixture_model(), rk, out, "rank mismatch", "r = 16");
    /* adapts a layer the base does not have */
    char *deep = make_adapter(tmp, "layers3", "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3");
    expect_refused(fixture_model(), deep, out, "layer 2", "2 layers");
    /* the adapter directory is missing its weights */
    char *empty = lc_test_asprintf("%s/empty", tmp);
    cr_assert_eq(lc_mkdir_p(empty, &err), 0);
    write_text(empty, "adapter_config.json", text);
    expect_refused(fixture_model(), empty, out, "adapter_model.safetensors", NULL);
    free(empty);
    free(deep);
    free(st_src);
    free(st_dst);
    free(edited);
    free(text);
    free(src);
    free(rk);
    free(other);
    free(out);
    free(tmp);
}

Test(merge, bad_bases)
{
    char *tmp = lc_test_tmpdir();
    char *out = lc_test_asprintf("%s/merged", tmp);
    lc_error err;
    /* index names a shard that is absent */
    char *sh = lc_test_asprintf("%s/sharded", tmp);
    cr_assert_eq(lc_mkdir_p(sh, &err), 0);
    write_sharded_model(sh);
    char *gone = lc_test_asprintf("%s/model-00002-of-00002.safetensors", sh);
    cr_assert_eq(unlink(gone), 0);
    expect_refused(sh, fixture_adapter(), out, "model-00002-of-00002.safetensors",
                   "No such file");
    /* quantized base: refused, naming the flag a later version will support */
    char *q = lc_test_asprintf("%s/quant", tmp);
    cr_assert_eq(lc_mkdir_p(q, &err), 0);
    char *cp = lc_test_asprintf("%s/config.json", fixture_model());
    size_t n;
    char *text = lc_test_read_file(cp, &n);
    char *qc = replace1(text, "\"model_type\"",
                        "\"quantization_config\": {\"quant_method\": \"bitsandbytes\", "
                        "\"load_in_4bit\": true, \"bnb_4bit_quant_type\": \"nf4\"},\n  \"model_type\"");
    write_text(q, "config.json", qc);
    char *ms = lc_test_asprintf("%s/model.safetensors", fixture_model()), *md = lc_test_asprintf("%s/model.safetensors", q);
    copy_file(ms, md);
    expect_refused(q, fixture_adapter(), out, "--dequantize", "quantized");
    /* with --dequantize it must really hold bitsandbytes NF4 linears */
    const char *args[] = {"merge", "--base", q, "--adapter", fixture_adapter(), "--out", out,
                          "--dequantize", NULL};
    lc_test_run_result r = lc_test_run_lorac(NULL, args);
    cr_log_info("fake quantized base --dequantize: exit %d: %s", r.code, r.err);
    cr_expect_eq(r.code, 1, "--dequantize: exit %d", r.code);
    cr_expect(strstr(r.err, "quant_state.bitsandbytes__nf4"), "%s", r.err);
    cr_expect(!lc_path_exists(out), "%s was created", out);
    lc_test_run_free(&r);
    free(ms);
    free(md);
    free(qc);
    free(text);
    free(cp);
    free(q);
    free(gone);
    free(sh);
    free(out);
    free(tmp);
}

static const char *bnb_model(void) { return lc_test_fixture("tiny-llama-bnb4/model"); }

static lc_test_run_result merge_dq(const char *base, const char *out, const char *dtype)
{
    const char *args[] = {"merge", "--base", base, "--adapter", fixture_adapter(), "--out", out,
                          "--dequantize", dtype ? "--dtype" : NULL, dtype, NULL};
    return lc_test_run_lorac(NULL, args);
}

/* A decoder linear's packed weight or one of its bitsandbytes companions. */
static bool is_bnb_linear_part(const char *name)
{
    int l, n = 0;
    char parent[32], mod[32];
    return sscanf(name, "model.layers.%d.%31[^.].%31[^_.]_proj.weight%n", &l, parent, mod, &n) == 3 &&
           n > 0;
}

/* The bnb fixture as two shards + index: layer 1 and the final norm in the
 * second, together with the companions (absmax, ...) of layer 0's down_proj,
 * whose packed weight stays in the first. */
static bool bnb_in_second(const char *name)
{
    return !is_shard1(name) || !strncmp(name, "model.layers.0.mlp.down_proj.weight.", 36);
}

static void write_sharded_bnb(const char *dir)
{
    write_sharded(bnb_model(), dir, bnb_in_second);
}

Test(merge, dequantize_bnb4)
{
    char *tmp = lc_test_tmpdir();
    char *out = lc_test_asprintf("%s/merged32", tmp);
    lc_error err;

    /* without --dequantize: refused, naming the flag */
    char *refused = lc_test_asprintf("%s/refused", tmp);
    expect_refused(bnb_model(), fixture_adapter(), refused, "--dequantize", "quantized");

    lc_test_run_result r = merge_dq(bnb_model(), out, "f32");
    cr_assert_eq(r.code, 0, "merge --dequantize failed (%d):\n%s%s", r.code, r.out, r.err);
    cr_log_info("%s", r.out);
    cr_expect(strstr(r.out, "dequantizing NF4 linears to F32"), "%s", r.out);
    cr_expect(strstr(r.out, "f32 output") && strstr(r.out, "): ok"), "%s", r.out);
    double vdiff = parse_verify_diff(r.out);
    cr_expect_leq(vdiff, TOL_VERIFY_F32, "verification difference %g", vdiff);
    lc_test_run_free(&r);

    /* the independent computation: dequant(W) through the loader's NF4 view */
    lc_model bm;
    cr_assert_eq(lc_model_load(&bm, bnb_model(), &err), 0, "%s", err.msg);
    lc_st_file in, mo, ad;
    char *ip = lc_test_asprintf("%s/model.safetensors", bnb_model());
    char *op = lc_test_asprintf("%s/model.safetensors", out);
    char *ap = lc_test_asprintf("%s/adapter_model.safetensors", fixture_adapter());
    cr_assert_eq(lc_st_open(&in, ip, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_st_open(&mo, op, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_st_open(&ad, ap, &err), 0, "%s", err.msg);
    double worst = 0;
    int linears = 0;
    for (int l = 0; l < bm.cfg.n_layers; l++)
        for (int m = 0; m < LC_TEST_LLAMA_MODULES; m++) {
            const lc_weight *w = &bm.layers[l].proj[m];
            cr_assert(w->nf4, "layer %d %s: the fixture is not loaded as NF4", l, lc_module_name(m));
            char name[128], an[160], bn[160];
            snprintf(name, sizeof name, "model.layers.%d.%s.%s.weight", l, lc_module_parent(m),
                     lc_module_name(m));
            snprintf(an, sizeof an, "base_model.model.model.layers.%d.%s.%s.lora_A.weight", l,
                     lc_module_parent(m), lc_module_name(m));
            snprintf(bn, sizeof bn, "base_model.model.model.layers.%d.%s.%s.lora_B.weight", l,
                     lc_module_parent(m), lc_module_name(m));
            const lc_st_tensor *t = lc_st_find(&mo, name), *A = lc_st_find(&ad, an),
                               *B = lc_st_find(&ad, bn);
            cr_assert(t, "%s missing from the merged model", name);
            cr_assert(A && B, "%s: no adapter (%s)", name, an);
            cr_assert_eq(t->dtype, LC_DTYPE_F32, "%s", name);
            cr_assert_eq(t->ndim, 2, "%s", name);
            cr_assert(t->shape[0] == w->rows && t->shape[1] == w->cols, "%s: shape [%lld,%lld]",
                      name, (long long)t->shape[0], (long long)t->shape[1]);
            const int64_t rows = w->rows, cols = w->cols, rk = A->shape[0];
            float *deq = malloc((size_t)(rows * cols) * sizeof *deq);
            lc_weight_rows_to_real(w, 0, rows, deq);
            const float *a = A->data, *b = B->data, *got = t->data;
            double werr = 0;
            for (int64_t i = 0; i < rows; i++)
                for (int64_t jc = 0; jc < cols; jc++) {
                    double acc = 0;
                    for (int64_t k = 0; k < rk; k++)
                        acc += (double)b[i * rk + k] * (double)a[k * cols + jc];
                    double want = (double)deq[i * cols + jc] + SCALING * acc;
                    werr = fmax(werr, fabs((double)got[i * cols + jc] - want));
                }
            cr_expect_leq(werr, TOL_WEIGHT, "%s: max abs error %g vs dequant(W) + s*B@A", name,
                          werr);
            worst = fmax(worst, werr);
            free(deq);
            linears++;
        }
    cr_expect_eq(linears, 14);
    cr_log_info("dequantize merge: %d linears, max abs error vs dequant(W) + scaling*B@A: %.3g; "
                "verification logit difference %.3g", linears, worst, vdiff);
    /* everything else bit for bit; no bitsandbytes tensor left */
    size_t others = 0;
    for (size_t i = 0; i < in.n_tensors; i++) {
        const lc_st_tensor *w = &in.tensors[i];
        if (is_bnb_linear_part(w->name))
            continue;
        const lc_st_tensor *t = lc_st_find(&mo, w->name);
        cr_assert(t, "%s missing", w->name);
        cr_expect_eq(t->dtype, w->dtype, "%s", w->name);
        cr_expect(t->end - t->begin == w->end - w->begin &&
                  memcmp(t->data, w->data, w->end - w->begin) == 0, "%s changed", w->name);
        others++;
    }
    cr_expect_eq(mo.n_tensors, others + 14, "merged model has %zu tensors", mo.n_tensors);
    for (size_t i = 0; i < mo.n_tensors; i++)
        cr_expect(!strstr(mo.tensors[i].name, ".weight.") && mo.tensors[i].dtype == LC_DTYPE_F32,
                  "unexpected tensor %s (%s)", mo.tensors[i].name,
                  lc_dtype_name(mo.tensors[i].dtype));
    /* config.json: no quantization_config, dtype float32; a dense model */
    char *cp = lc_test_asprintf("%s/config.json", out);
    char *ct = lc_test_read_file(cp, NULL);
    cJSON *cj = cJSON_Parse(ct);
    cr_assert(cj, "config.json is not JSON");
    cr_expect(!cJSON_GetObjectItem(cj, "quantization_config"), "quantization_config kept");
    const cJSON *dt = cJSON_GetObjectItem(cj, "dtype");
    cr_expect(cJSON_IsString(dt) && !strcmp(dt->valuestring, "float32"), "dtype not float32");
    lc_model mm;
    cr_assert_eq(lc_model_load(&mm, out, &err), 0, "%s", err.msg);
    cr_expect(!mm.cfg.prequantized_bnb4 && !mm.layers[0].proj[0].nf4, "merged model is not dense");
    lc_model_free(&mm);
    char *gc = lc_test_asprintf("%s/generation_config.json", out);
    cr_expect(lc_path_exists(gc), "generation_config.json not copied");

    /* default dtype: BF16, every float tensor; the linears are the f32 merge rounded */
    char *out16 = lc_test_asprintf("%s/merged-bf16", tmp);
    r = merge_dq(bnb_model(), out16, NULL);
    cr_assert_eq(r.code, 0, "merge --dequantize (default dtype) failed:\n%s%s", r.out, r.err);
    cr_expect(strstr(r.out, "dequantizing NF4 linears to BF16"), "%s", r.out);
    cr_expect(strstr(r.out, "16 x 2^-8) x max|logit|, bf16 output") && strstr(r.out, "): ok"), "%s",
              r.out);
    cr_log_info("default dtype: %s", r.out);
    lc_test_run_free(&r);
    lc_st_file m16;
    char *p16 = lc_test_asprintf("%s/model.safetensors", out16);
    cr_assert_eq(lc_st_open(&m16, p16, &err), 0, "%s", err.msg);
    cr_expect_eq(m16.n_tensors, mo.n_tensors);
    uint64_t mismatches = 0;
    for (size_t i = 0; i < mo.n_tensors; i++) {
        const lc_st_tensor *t32 = &mo.tensors[i], *t16 = lc_st_find(&m16, t32->name);
        cr_assert(t16 && t16->dtype == LC_DTYPE_BF16, "%s not BF16", t32->name);
        for (uint64_t k = 0; k < t32->numel; k++)
            mismatches += ((const uint16_t *)t16->data)[k] != lc_f32_to_bf16(((const float *)t32->data)[k]);
    }
    cr_expect_eq(mismatches, 0, "%llu BF16 values are not the rounded f32 merge",
                 (unsigned long long)mismatches);
    lc_model_config mc;
    cr_assert_eq(lc_model_config_load(&mc, out16, &err), 0, "%s", err.msg);
    cr_expect(mc.dtype == LC_DTYPE_BF16 && !mc.prequantized_bnb4, "config.json not updated");
    lc_st_close(&m16);

    /* two shards, one linear's companions apart from its packed weight */
    char *sh = lc_test_asprintf("%s/sharded", tmp), *outs = lc_test_asprintf("%s/merged-sharded", tmp);
    cr_assert_eq(lc_mkdir_p(sh, &err), 0);
    write_sharded_bnb(sh);
    r = merge_dq(sh, outs, "f32");
    cr_assert_eq(r.code, 0, "sharded merge --dequantize failed:\n%s%s", r.out, r.err);
    lc_test_run_free(&r);
    const char *files[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
    size_t seen = 0;
    double total = 0;
    for (int f = 0; f < 2; f++) {
        lc_st_file sf;
        char *spath = lc_test_asprintf("%s/%s", outs, files[f]);
        cr_assert_eq(lc_st_open(&sf, spath, &err), 0, "%s", err.msg);
        for (size_t i = 0; i < sf.n_tensors; i++) {
            const lc_st_tensor *t = &sf.tensors[i], *ref = lc_st_find(&mo, t->name);
            cr_assert(ref, "%s: unexpected tensor %s", files[f], t->name);
            cr_expect(t->end - t->begin == ref->end - ref->begin &&
                      memcmp(t->data, ref->data, t->end - t->begin) == 0,
                      "%s differs from the single-file merge", t->name);
            total += (double)(t->end - t->begin);
            seen++;
        }
        lc_st_close(&sf);
        free(spath);
    }
    cr_expect_eq(seen, mo.n_tensors);
    char *ix = lc_test_asprintf("%s/model.safetensors.index.json", outs);
    char *it = lc_test_read_file(ix, NULL);
    cJSON *ij = cJSON_Parse(it);
    cr_assert(ij);
    const cJSON *wm = cJSON_GetObjectItem(ij, "weight_map");
    cr_expect_eq((size_t)cJSON_GetArraySize(wm), mo.n_tensors, "weight_map has %d names",
                 cJSON_GetArraySize(wm));
    const cJSON *e;
    cJSON_ArrayForEach(e, wm)
        cr_expect(lc_st_find(&mo, e->string), "weight_map keeps %s", e->string);
    const cJSON *ts = cJSON_GetObjectItem(cJSON_GetObjectItem(ij, "metadata"), "total_size");
    cr_expect(cJSON_IsNumber(ts) && ts->valuedouble == total, "total_size %g, tensors %g",
              cJSON_IsNumber(ts) ? ts->valuedouble : -1.0, total);

    cJSON_Delete(ij);
    free(it);
    free(ix);
    free(sh);
    free(outs);
    free(p16);
    free(out16);
    free(gc);
    cJSON_Delete(cj);
    free(ct);
    free(cp);
    lc_st_close(&in);
    lc_st_close(&mo);
    lc_st_close(&ad);
    lc_model_free(&bm);
    free(ip);
    free(op);
    free(ap);
    free(refused);
    free(out);
    free(tmp);
}

Test(merge, existing_output_needs_force)
{
    char *tmp = lc_test_tmpdir();
    char *out = lc_test_asprintf("%s/merged", tmp);
    lc_error err;
    cr_assert_eq(lc_mkdir_p(out, &err), 0);
    write_text(out, "marker.json", "old");
    char *marker = lc_test_asprintf("%s/marker.json", out);
    lc_test_run_result r = merge3(NULL, fixture_model(), fixture_adapter(), out, NULL, NULL);
    cr_expect_eq(r.code, 1, "exit %d: %s", r.code, r.err);
    cr_expect(strstr(r.err, "--force"), "%s", r.err);
    cr_expect(lc_path_exists(marker), "the existing directory was touched");
    lc_test_run_free(&r);
    /* --force replaces only what looks like an earlier output (model files,
     * no subdirectory): not a directory holding anything else. */
    static const char *const foreign[] = {"notes.doc", "sub/x.json"};
    for (int i = 0; i < 2; i++) {
        char *dir = lc_test_asprintf("%s/other%d", tmp, i);
        char *f = lc_test_asprintf("%s/%s", dir, foreign[i]);
        char *fdir = strdup(f);
        *strrchr(fdir, '/') = '\0';
        cr_assert_eq(lc_mkdir_p(fdir, &err), 0);
        write_text(fdir, strrchr(f, '/') + 1, "mine");
        r = merge3(NULL, fixture_model(), fixture_adapter(), dir, "--force", NULL);
        cr_expect_eq(r.code, 1, "%s: exit %d: %s", foreign[i], r.code, r.err);
        cr_expect(strstr(r.err, "which lorac does not write"), "%s", r.err);
        cr_expect(lc_path_exists(f), "--force deleted %s", f);
        lc_test_run_free(&r);
        free(fdir);
        free(f);
        free(dir);
    }
    r = merge3(NULL, fixture_model(), fixture_adapter(), out, "--force", NULL);
    cr_expect_eq(r.code, 0, "--force: exit %d: %s", r.code, r.err);
    cr_expect(!lc_path_exists(marker), "--force should replace the directory");
    char *m = lc_test_asprintf("%s/model.safetensors", out);
    cr_expect(lc_path_exists(m));
    lc_test_run_free(&r);
    /* --force never deletes the base model */
    r = merge3(NULL, fixture_model(), fixture_adapter(), fixture_model(), "--force", NULL);
    cr_expect_eq(r.code, 1);
    cr_expect(strstr(r.err, "is (or contains) the input"), "%s", r.err);
    char *fm = lc_test_asprintf("%s/model.safetensors", fixture_model());
    cr_assert(lc_path_exists(fm), "the fixture model was deleted");
    /* no leftovers next to the output */
    DIR *d = opendir(tmp);
    struct dirent *e;
    while ((e = readdir(d)))
        cr_expect(!strstr(e->d_name, ".lorac-"), "leftover %s", e->d_name);
    closedir(d);
    lc_test_run_free(&r);
    free(fm);
    free(m);
    free(marker);
    free(out);
    free(tmp);
}

Test(merge, no_space_left_removes_partial_output)
{
    char *tmp = lc_test_tmpdir();
    char *mnt = lc_test_asprintf("%s/small", tmp);
    lc_error err;
    cr_assert_eq(lc_mkdir_p(mnt, &err), 0);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=200k") != 0) {
        int e = errno;
        rmdir(mnt);
        rmdir(tmp);
        cr_skip_test("cannot mount a 200 KiB tmpfs to simulate a full disk (%s; needs root "
                     "and CAP_SYS_ADMIN): ENOSPC case not tested", strerror(e));
    }
    char *out = lc_test_asprintf("%s/merged", mnt);
    lc_test_run_result r = merge3(NULL, fixture_model(), fixture_adapter(), out, NULL, NULL);
    cr_log_info("full disk: exit %d: %s", r.code, r.err);
    cr_expect_eq(r.code, 1, "exit %d", r.code);
    cr_expect(strstr(r.err, "No space left"), "%s", r.err);
    cr_expect(strstr(r.err, "removed"), "the message should say the partial output was removed: %s",
              r.err);
    DIR *d = opendir(mnt);
    int left = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            left++;
    closedir(d);
    cr_expect_eq(left, 0, "%d entries left on the full file system", left);
    lc_test_run_free(&r);
    umount(mnt);
    rmdir(mnt);
    rmdir(tmp);
    free(out);
    free(mnt);
    free(tmp);
}

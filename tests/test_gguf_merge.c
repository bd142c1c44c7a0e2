/* test_gguf_merge.c — `lorac merge --base model.gguf --adapter DIR --out F.gguf`
 * (train/gguf_merge.h) against references computed without lorac.
 *
 * Fixture: tests/fixtures/gguf-merge/expected.json (scripts/make_gguf_merge_fixtures.py):
 * per case (a GGUF base of tests/fixtures/gguf-base, a PEFT adapter, rsLoRA or
 * not, --type) and per adapted linear, the FNV-1a 64 of the bytes gguf-py /
 * numpy make of the float32 merge (W dequantized by gguf-py, s·B@A in
 * float64, q/k permuted as convert_hf_to_gguf.py does), and the sum of |W'|
 * and a ±1-signed sum of W' in float64.
 *
 * - every adapted tensor: its type and bytes equal the reference's (f32,
 *   f16, bf16, q8_0 alike; DoRA adapters too, m/‖W + s·B·A‖ per HF row);
 *   f32 ones also within 1e-6 · Σ|W'| of the float64 signed sum; every other tensor byte-identical to the base's,
 *   same names, shapes and order; every metadata key/value equal, in order;
 * - the merged file loaded back as a base gives the logits of base +
 *   adapter (lorac's own forward), within a tolerance per output type;
 * - bad inputs refused with one line: an adapter of another shape, a
 *   target absent from the GGUF, an unsupported --type, --out = --base, an
 *   --out that is not .gguf, an existing --out without --force;
 * - a merge made wrong on purpose (the test hook LORAC_TEST_CORRUPT_MERGE adds
 *   1e-3 to one element in f32, 2e-2 in q8_0, whose step there is ~1.4e-3)
 *   fails the verification and writes nothing; --force
 *   replaces an earlier output. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/gguf.h"
#include "data/gguf_write.h"
#include "fixture_rows.h"
#include "helpers.h"
#include "train/merge.h"

/* Logits of the merged file vs base + adapter, max |difference| / max |logit|
 * (merged_logits), 3-7x the worst measured per output type: f32 1.4e-6
 * (llama3 Q4_K base), f16 7.1e-4 (qwen2), bf16 1.8e-2, q8_0 2.3e-2 (llama3). */
#define TOL_LOGITS_F32 1e-5
#define TOL_LOGITS_F16 4e-3
#define TOL_LOGITS_BF16 6e-2
#define TOL_LOGITS_Q8_0 8e-2
#define TOL_SIGNED_SUM 1e-6 /* x sum |W'|: the f32 merge against float64 */

static cJSON *expected(void)
{
    size_t n;
    char *text = lc_test_read_file(lc_test_fixture("gguf-merge/expected.json"), &n);
    cr_assert(text);
    cJSON *root = cJSON_Parse(text);
    free(text);
    cr_assert(root, "expected.json does not parse");
    return root;
}

static char *base_path(const cJSON *c)
{
    return lc_test_asprintf("%s/gguf-base/%s", lc_test_fixture("."),
                            cJSON_GetObjectItem(c, "base")->valuestring);
}

/* The case's adapter directory; rsLoRA: a copy in tmp whose config says so. */
static char *adapter_dir(const cJSON *c, const char *tmp, const char *name)
{
    const char *rel = cJSON_GetObjectItem(c, "adapter")->valuestring;
    char *src = lc_test_asprintf("%s", lc_test_fixture(rel));
    if (!cJSON_IsTrue(cJSON_GetObjectItem(c, "rslora")))
        return src;
    char *dir = lc_test_path_in(tmp, name);
    char *cmd = lc_test_asprintf("mkdir -p '%s' && cp '%s/adapter_model.safetensors' '%s/'", dir,
                                 src, dir);
    cr_assert_eq(system(cmd), 0);
    free(cmd);
    char *cfg_path = lc_test_asprintf("%s/adapter_config.json", src);
    size_t n;
    char *text = lc_test_read_file(cfg_path, &n);
    cJSON *cfg = cJSON_Parse(text);
    cJSON_ReplaceItemInObject(cfg, "use_rslora", cJSON_CreateTrue());
    char *out = cJSON_Print(cfg);
    free(lc_test_write_text(dir, "adapter_config.json", out));
    free(out);
    cJSON_Delete(cfg);
    free(text);
    free(cfg_path);
    free(src);
    return dir;
}

static void same_metadata(const lc_gguf_file *a, const lc_gguf_file *b)
{
    cr_assert_eq(a->n_kv, b->n_kv);
    for (size_t i = 0; i < a->n_kv; i++) {
        const lc_gguf_kv *x = &a->kvs[i], *y = &b->kvs[i];
        cr_assert_str_eq(x->key, y->key, "key %zu", i);
        cr_assert(x->type == y->type && x->elem == y->elem && x->n == y->n, "%s", x->key);
        bool str = x->type == LC_GGUF_STRING ||
                   (x->type == LC_GGUF_ARRAY && x->elem == LC_GGUF_STRING);
        if (str)
            for (uint64_t k = 0; k < x->n; k++)
                cr_assert(x->strs[k].len == y->strs[k].len &&
                              !memcmp(x->strs[k].ptr, y->strs[k].ptr, x->strs[k].len),
                          "%s[%llu]", x->key, (unsigned long long)k);
        else
            cr_assert(!memcmp(x->data, y->data,
                              x->n * lc_gguf_vtype_size(x->type == LC_GGUF_ARRAY ? x->elem
                                                                                 : x->type)),
                      "%s", x->key);
    }
}

/* The ±1 signs of scripts/make_gguf_merge_fixtures.py. */
static double signed_sum(const float *x, uint64_t n)
{
    double s = 0;
    for (uint64_t i = 0; i < n; i++)
        s += (i * 0x9E3779B97F4A7C15ull) >> 63 ? -(double)x[i] : (double)x[i];
    return s;
}

/* out against base and the case's reference; the number of merged tensors. */
static int compare_file(const char *name, const char *base, const char *out, const cJSON *merged)
{
    lc_error err;
    lc_gguf_file b, o;
    cr_assert_eq(lc_gguf_open(&b, base, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_gguf_open(&o, out, &err), 0, "%s", err.msg);
    same_metadata(&b, &o);
    cr_assert_eq(b.n_tensors, o.n_tensors, "%s", name);
    int n_merged = 0;
    for (size_t i = 0; i < b.n_tensors; i++) {
        const lc_gguf_tensor *x = &b.tensors[i], *y = &o.tensors[i];
        cr_assert_str_eq(x->name, y->name, "%s: tensor %zu", name, i);
        cr_assert(x->n_dims == y->n_dims && !memcmp(x->ne, y->ne, sizeof x->ne), "%s %s", name,
                  x->name);
        const cJSON *want = cJSON_GetObjectItem(merged, x->name);
        if (!want) {
            cr_assert(x->type == y->type && x->nbytes == y->nbytes &&
                          !memcmp(x->data, y->data, x->nbytes),
                      "%s: untouched tensor %s is not the base's bytes", name, x->name);
            continue;
        }
        n_merged++;
        cr_assert_str_eq(lc_ggml_type_get(y->type)->name,
                         cJSON_GetArrayItem(want, 0)->valuestring, "%s %s", name, x->name);
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)lc_test_fnv1a64(LC_TEST_FNV0, y->data, y->nbytes));
        cr_expect_str_eq(hex, cJSON_GetArrayItem(want, 1)->valuestring,
                         "%s %s: bytes differ from gguf-py's", name, x->name);
        if (y->type == LC_GGML_F32) {
            double abs = cJSON_GetArrayItem(want, 2)->valuedouble;
            double ref = cJSON_GetArrayItem(want, 3)->valuedouble;
            double got = signed_sum((const float *)y->data, y->numel);
            cr_expect_leq(fabs(got - ref), TOL_SIGNED_SUM * abs, "%s %s: %.17g vs %.17g", name,
                          x->name, got, ref);
        }
    }
    lc_gguf_close(&b);
    lc_gguf_close(&o);
    return n_merged;
}

/* max |logit(merged) − logit(base + adapter)| / max |logit| on rows 0–1. */
static double merged_logits(const char *base, const char *adapter, const char *out)
{
    lc_test_step s, m;
    lc_error err;
    memset(&s, 0, sizeof s);
    memset(&m, 0, sizeof m);
    cr_assert_eq(lc_model_load(&s.model, base, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_model_load(&m.model, out, &err), 0, "%s", err.msg);
    lc_test_step_init(&s, adapter, lc_test_fixture("tiny-llama/train.jsonl"), 0, 2);
    lc_test_step_init(&m, adapter, lc_test_fixture("tiny-llama/train.jsonl"), 0, 2);
    const size_t n = (size_t)(2 * 16) * (size_t)s.model.cfg.vocab_size;
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    lc_model_logits(&s.model, &s.tape, &s.batch, &s.lora, a, NULL, NULL);
    lc_model_logits(&m.model, &m.tape, &m.batch, NULL, b, NULL, NULL);
    double maxd = 0, maxl = 0;
    for (size_t i = 0; i < n; i++) {
        maxd = fmax(maxd, fabs((double)a[i] - (double)b[i]));
        maxl = fmax(maxl, fabs((double)a[i]));
    }
    free(a);
    free(b);
    lc_test_step_free(&s);
    lc_test_step_free(&m);
    return maxd / maxl;
}

static double logit_tol(uint32_t t)
{
    return t == LC_GGML_F32 ? TOL_LOGITS_F32 : t == LC_GGML_F16 ? TOL_LOGITS_F16
         : t == LC_GGML_BF16 ? TOL_LOGITS_BF16 : TOL_LOGITS_Q8_0;
}

Test(gguf_merge, every_case_matches_gguf_py_reference)
{
    char *tmp = lc_test_tmpdir();
    cJSON *root = expected();
    int n_cases = 0;
    for (const cJSON *c = root->child; c; c = c->next) {
        const char *name = c->string;
        char *base = base_path(c), *ad = adapter_dir(c, tmp, name);
        char *out = lc_test_asprintf("%s/%s.gguf", tmp, name);
        const cJSON *type = cJSON_GetObjectItem(c, "type");
        lc_merge_opts o = {.base_dir = base, .adapter_dir = ad, .out_dir = out,
                           .dtype = LC_MERGE_DTYPE_AUTO, .verify = true,
                           .gguf_type = cJSON_IsString(type) ? type->valuestring : NULL};
        lc_merge_report r;
        lc_error err;
        cr_assert_eq(lc_merge(&o, &r, NULL, &err), 0, "%s: %s", name, err.msg);
        cr_expect(r.verified, "%s", name);
        cr_expect_eq(r.dora, strstr(name, "dora") != NULL, "%s: report's dora", name);
        const cJSON *merged = cJSON_GetObjectItem(c, "merged");
        int n = compare_file(name, base, out, merged);
        cr_expect_eq(n, cJSON_GetArraySize(merged), "%s", name);
        cr_expect_eq(r.n_merged, n, "%s", name);
        /* the output type of the merged linears, from the file */
        lc_gguf_file f;
        cr_assert_eq(lc_gguf_open(&f, out, &err), 0, "%s", err.msg);
        uint32_t t = lc_gguf_find_tensor(&f, "blk.0.attn_q.weight")->type;
        lc_gguf_close(&f);
        double e = merged_logits(base, ad, out);
        cr_log_info("%s: %d merged, logits of the merged file vs base + adapter %.3g of max|logit| "
                    "(verify: %.3g, weights at most %.2f of their bound)", name, n, e,
                    r.verify_max_diff / r.verify_max_logit, r.verify_weight_worst);
        cr_expect_leq(e, logit_tol(t), "%s: logits %.3g apart", name, e);
        free(base);
        free(ad);
        free(out);
        n_cases++;
    }
    cr_expect_geq(n_cases, 11);
    cJSON_Delete(root);
    lc_test_rm_rf(tmp);
    free(tmp);
}

/* One "lorac merge: ..." line on stderr holding want, exit 1. */
static void refused(const char *what, const char *const *args, const char *want)
{
    lc_test_run_result r = lc_test_run_lorac(NULL, args);
    cr_expect_eq(r.code, 1, "%s: exit %d\n%s%s", what, r.code, r.out, r.err);
    int lines = 0;
    for (const char *p = r.err; *p; p++)
        lines += *p == '\n';
    cr_expect_eq(lines, 1, "%s: %s", what, r.err);
    cr_expect(strstr(r.err, "lorac merge: ") && strstr(r.err, want), "%s: %s", what, r.err);
    lc_test_run_free(&r);
}

/* base without tensor `drop`, written with lorac's GGUF writer into path. */
static void write_without(const char *base, const char *drop, const char *path)
{
    lc_error err;
    lc_gguf_file f;
    cr_assert_eq(lc_gguf_open(&f, base, &err), 0, "%s", err.msg);
    lc_gguf_writer *w = lc_gguf_writer_new(f.alignment);
    for (size_t i = 0; i < f.n_kv; i++)
        lc_gguf_add_kv(w, &f.kvs[i]);
    for (size_t i = 0; i < f.n_tensors; i++)
        if (strcmp(f.tensors[i].name, drop))
            cr_assert_geq(lc_gguf_add_tensor(w, f.tensors[i].name, f.tensors[i].n_dims,
                                             f.tensors[i].ne, f.tensors[i].type, &err), 0);
    FILE *fp = fopen(path, "wb");
    cr_assert(fp);
    cr_assert_eq(lc_gguf_write_header(w, fp, &err), 0, "%s", err.msg);
    for (size_t i = 0; i < f.n_tensors; i++)
        if (strcmp(f.tensors[i].name, drop))
            cr_assert_eq(lc_gguf_write_tensor(w, fp, f.tensors[i].data, f.tensors[i].nbytes,
                                              &err), 0, "%s", err.msg);
    fclose(fp);
    lc_gguf_writer_free(w);
    lc_gguf_close(&f);
}

Test(gguf_merge, bad_inputs_refused_with_one_line)
{
    char *tmp = lc_test_tmpdir();
    char *q8 = lc_test_asprintf("%s", lc_test_fixture("gguf-base/tiny-llama-q8_0.gguf"));
    char *ad = lc_test_asprintf("%s", lc_test_fixture("tiny-llama/adapter_step3"));
    char *ad3 = lc_test_asprintf("%s", lc_test_fixture("gguf-base/tiny-llama3-adapter"));
    char *out = lc_test_path_in(tmp, "m.gguf");
    size_t n0;
    char *before = lc_test_read_file(q8, &n0);

    const char *a1[] = {"merge", "--base", q8, "--adapter", ad3, "--out", out, NULL};
    refused("adapter of another shape", a1, "does not fit base model");
    char *missing = lc_test_path_in(tmp, "no-down.gguf");
    write_without(q8, "blk.1.ffn_down.weight", missing);
    const char *a2[] = {"merge", "--base", missing, "--adapter", ad, "--out", out, NULL};
    refused("target absent", a2, "no tensor 'blk.1.ffn_down.weight'");
    const char *a3[] = {"merge", "--base", q8, "--adapter", ad, "--out", out, "--type", "q4_k",
                        NULL};
    refused("unsupported --type", a3, "--type: expected f32, f16, bf16 or q8_0, got 'q4_k'");
    const char *a4[] = {"merge", "--base", q8, "--adapter", ad, "--out", q8, "--force", NULL};
    refused("--out = --base", a4, "is the --base file: merge never overwrites an input");
    char *dir_out = lc_test_path_in(tmp, "merged");
    const char *a5[] = {"merge", "--base", q8, "--adapter", ad, "--out", dir_out, NULL};
    refused("--out not .gguf", a5, "--out must name a file ending in .gguf");
    const char *a6[] = {"merge", "--base", q8, "--adapter", ad, "--out", out, "--dtype", "f16",
                        NULL};
    refused("--dtype on a GGUF base", a6, "--dtype is for a Hugging Face base");
    free(lc_test_write_text(tmp, "m.gguf", "old"));
    const char *a7[] = {"merge", "--base", q8, "--adapter", ad, "--out", out, NULL};
    refused("existing --out", a7, "already exists");
    size_t n1;
    char *after = lc_test_read_file(q8, &n1);
    cr_expect(n0 == n1 && !memcmp(before, after, n0), "the base file changed");
    /* nothing left behind: only m.gguf ("old") and the test's own base copy */
    char *ls = lc_test_asprintf("test $(ls -A '%s' | wc -l) -eq 2", tmp);
    cr_expect_eq(system(ls), 0, "partial files left in %s", tmp);
    free(ls);
    free(before);
    free(after);
    free(missing);
    free(dir_out);
    free(out);
    free(q8);
    free(ad);
    free(ad3);
    lc_test_rm_rf(tmp);
    free(tmp);
}

Test(gguf_merge, wrong_merge_fails_verification_and_force_replaces)
{
    char *tmp = lc_test_tmpdir();
    char *q8 = lc_test_asprintf("%s", lc_test_fixture("gguf-base/tiny-llama3-q4_k.gguf"));
    char *ad = lc_test_asprintf("%s", lc_test_fixture("gguf-base/tiny-llama3-adapter"));
    char *out = lc_test_path_in(tmp, "m.gguf");
    const char *types[2] = {"f32", "q8_0"}, *bumps[2] = {"LORAC_TEST_CORRUPT_MERGE=1e-3",
                                                         "LORAC_TEST_CORRUPT_MERGE=2e-2"};
    for (int k = 0; k < 2; k++) {
        const char *args[] = {"merge", "--base", q8, "--adapter", ad, "--out", out, "--type",
                              types[k], NULL};
        lc_test_run_result r = lc_test_run_lorac(bumps[k], args);
        cr_expect_eq(r.code, 1, "%s: %s%s", types[k], r.out, r.err);
        cr_expect(strstr(r.err, "verification failed") &&
                      strstr(r.err, "nothing was written to"), "%s: %s", types[k], r.err);
        lc_test_run_free(&r);
        char *ls = lc_test_asprintf("test -z \"$(ls -A '%s')\"", tmp);
        cr_expect_eq(system(ls), 0, "%s: files left in %s", types[k], tmp);
        free(ls);
    }
    free(lc_test_write_text(tmp, "m.gguf", "an earlier output"));
    const char *args[] = {"merge", "--base", q8, "--adapter", ad, "--out", out, "--force", NULL};
    lc_test_run_result r = lc_test_run_lorac(NULL, args);
    cr_expect_eq(r.code, 0, "%s%s", r.out, r.err);
    cr_expect(strstr(r.out, "Q4_K -> F16 x 14") && strstr(r.out, "): ok"), "%s", r.out);
    lc_test_run_free(&r);
    lc_error err;
    lc_gguf_file f;
    cr_expect_eq(lc_gguf_open(&f, out, &err), 0, "%s", err.msg);
    lc_gguf_close(&f);
    free(out);
    free(q8);
    free(ad);
    lc_test_rm_rf(tmp);
    free(tmp);
}

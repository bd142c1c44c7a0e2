/* test_adapter.c — LoRA parameter store and PEFT adapter directories
 * (train/lora.c): a PEFT-written fixture adapter survives load → save → load
 * bit for bit, the written adapter_config.json carries PEFT's keys (and names
 * an existing base by its absolute canonical path, a Hub id as given), A/B init
 * follows PEFT (U(−1/√in, 1/√in), B = 0, scale α/r or α/√r), and every broken
 * adapter directory or LoRA config fails with a specific one-line message.
 * Broken adapters are built in a temporary directory from the fixture
 * (tests/fixtures/tiny-llama/adapter_init, written by PEFT 0.21). */
#include <criterion/criterion.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/safetensors.h"
#include "helpers.h"
#include "train/lora.h"
#include "train/model_config.h"

/* ---------------------------------------------------------------- helpers */

static void copy_file(const char *src, const char *dir, const char *name)
{
    size_t n;
    char *b = lc_test_read_file(src, &n);
    free(lc_test_write_file(dir, name, b, n));
    free(b);
}

static const char *fixture_adapter(void) { return lc_test_fixture("tiny-llama/adapter_init"); }

static const char *fixture_st(void)
{
    return lc_test_fixture("tiny-llama/adapter_init/adapter_model.safetensors");
}

static lc_model_config tiny_config(void)
{
    lc_model_config mc;
    lc_error err = {{0}};
    cr_assert_eq(lc_model_config_load(&mc, lc_test_fixture("tiny-llama/model"), &err), 0,
                 "%s", err.msg);
    cr_assert_eq(mc.n_layers, 2);
    return mc;
}

static lc_lora_config all_targets(int r, double alpha)
{
    lc_lora_config c;
    memset(&c, 0, sizeof c);
    c.r = r;
    c.alpha = alpha;
    c.all_linear = true;
    return c;
}

/* The fixture's adapter_config.json with key replaced by the JSON text
 * value_json (NULL: key removed), as printed text (malloc'd). */
static char *fixture_config_with(const char *key, const char *value_json)
{
    size_t n;
    char *path = lc_test_path_in(fixture_adapter(), "adapter_config.json");
    char *text = lc_test_read_file(path, &n);
    free(path);
    cJSON *root = cJSON_Parse(text);
    free(text);
    cr_assert_not_null(root);
    if (key) {
        cJSON_DeleteItemFromObjectCaseSensitive(root, key);
        if (value_json) {
            cJSON *v = cJSON_Parse(value_json);
            cr_assert_not_null(v, "bad test JSON %s", value_json);
            cJSON_AddItemToObject(root, key, v);
        }
    }
    char *out = cJSON_Print(root);
    cJSON_Delete(root);
    return out;
}

/* A fresh adapter directory: config text (NULL: no adapter_config.json) and
 * the fixture's adapter_model.safetensors when copy_st. */
static char *make_adapter(const char *config_text, bool copy_st)
{
    char *dir = lc_test_tmpdir();
    if (config_text)
        free(lc_test_write_file(dir, "adapter_config.json", config_text, strlen(config_text)));
    if (copy_st)
        copy_file(fixture_st(), dir, "adapter_model.safetensors");
    return dir;
}

/* Same, with the fixture config patched at one key. */
static char *make_adapter_patched(const char *key, const char *value_json, bool copy_st)
{
    char *cfg = fixture_config_with(key, value_json);
    char *dir = make_adapter(cfg, copy_st);
    free(cfg);
    return dir;
}

/* Expects lc_lora_load_peft(dir) to fail with a message containing each of
 * the (NULL-terminated) substrings; cleans dir up. */
static void expect_load_fails(char *dir, const char *const *subs)
{
    lc_model_config mc = tiny_config();
    lc_lora lora;
    lc_error err = {{0}};
    int rc = lc_lora_load_peft(&lora, &mc, dir, &err);
    cr_assert_eq(rc, -1, "load of %s succeeded, expected failure with '%s'", dir, subs[0]);
    for (int i = 0; subs[i]; i++)
        cr_expect_not_null(strstr(err.msg, subs[i]), "message '%s' lacks '%s'", err.msg,
                           subs[i]);
    cr_expect_eq(strchr(err.msg, '\n'), NULL, "message is not one line: '%s'", err.msg);
    lc_test_rm_rf(dir);
    free(dir);
}

#define EXPECT_LOAD_FAILS(dir, ...) \
    expect_load_fails((dir), (const char *const[]){__VA_ARGS__, NULL})

/* Writes DIR/adapter_model.safetensors holding the fixture's tensors, minus
 * the one named `drop` (may be NULL), with `retype` (may be NULL) rewritten
 * as I32 of the same shape, plus one extra F32 tensor `extra` of shape
 * extra_shape (may be NULL). */
static void write_modified_st(const char *dir, const char *drop, const char *retype,
                              const char *extra, const int64_t extra_shape[2])
{
    lc_st_file f;
    lc_error err = {{0}};
    cr_assert_eq(lc_st_open(&f, fixture_st(), &err), 0, "%s", err.msg);
    lc_st_entry *e = calloc(f.n_tensors + 1, sizeof *e);
    int32_t *ints = NULL;
    float *extra_data = NULL;
    size_t n = 0;
    for (size_t i = 0; i < f.n_tensors; i++) {
        const lc_st_tensor *t = &f.tensors[i];
        if (drop && strcmp(t->name, drop) == 0)
            continue;
        e[n] = (lc_st_entry){t->name, t->dtype, t->ndim, t->shape, t->data};
        if (retype && strcmp(t->name, retype) == 0) {
            ints = calloc(t->numel, sizeof *ints);
            for (uint64_t k = 0; k < t->numel; k++)
                ints[k] = (int32_t)k;
            e[n].dtype = LC_DTYPE_I32;
            e[n].data = ints;
        }
        n++;
    }
    if (extra) {
        size_t numel = (size_t)(extra_shape[0] * extra_shape[1]);
        extra_data = calloc(numel, sizeof *extra_data);
        e[n++] = (lc_st_entry){extra, LC_DTYPE_F32, 2, extra_shape, extra_data};
    }
    char *path = lc_test_path_in(dir, "adapter_model.safetensors");
    const char *mk[1] = {"format"}, *mv[1] = {"pt"};
    cr_assert_eq(lc_st_write(path, e, n, mk, mv, 1, &err), 0, "%s", err.msg);
    free(path);
    free(e);
    free(ints);
    free(extra_data);
    lc_st_close(&f);
}

/* Both files hold the same tensor names, shapes, dtype F32 and bytes. */
static void assert_same_tensors(const char *written, const char *reference)
{
    lc_st_file a, b;
    lc_error err = {{0}};
    cr_assert_eq(lc_st_open(&a, written, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_st_open(&b, reference, &err), 0, "%s", err.msg);
    cr_assert_eq(a.n_tensors, b.n_tensors, "%zu tensors written, fixture has %zu", a.n_tensors,
                 b.n_tensors);
    cr_assert_eq(b.n_tensors, 2u * 7u * 2u);
    for (size_t i = 0; i < b.n_tensors; i++) {
        const lc_st_tensor *r = &b.tensors[i];
        const lc_st_tensor *w = lc_st_find(&a, r->name);
        cr_assert_not_null(w, "written file lacks '%s'", r->name);
        cr_assert_eq(w->dtype, LC_DTYPE_F32, "'%s' written as %s", r->name,
                     lc_dtype_name(w->dtype));
        cr_assert_eq(r->dtype, LC_DTYPE_F32);
        cr_assert_eq(w->ndim, 2);
        cr_assert_eq(w->ndim, r->ndim);
        cr_assert_eq(w->shape[0], r->shape[0], "'%s' dim 0", r->name);
        cr_assert_eq(w->shape[1], r->shape[1], "'%s' dim 1", r->name);
        cr_assert_eq(w->end - w->begin, r->end - r->begin);
        cr_assert_eq(memcmp(w->data, r->data, (size_t)(r->end - r->begin)), 0,
                     "'%s' bytes differ", r->name);
    }
    const char *fmt = lc_st_meta(&a, "format");
    cr_assert_not_null(fmt, "written file lacks __metadata__ format");
    cr_assert_str_eq(fmt, "pt");
    lc_st_close(&a);
    lc_st_close(&b);
}

static cJSON *read_json(const char *dir, const char *name)
{
    char *p = lc_test_path_in(dir, name);
    size_t n;
    char *text = lc_test_read_file(p, &n);
    cJSON *root = cJSON_ParseWithLength(text, n);
    cr_assert_not_null(root, "%s is not JSON", p);
    cr_assert(cJSON_IsObject(root));
    free(text);
    free(p);
    return root;
}

/* ----------------------------------------------------- round trip (PEFT) */

Test(adapter, fixture_round_trip_is_bit_identical)
{
    lc_model_config mc = tiny_config();
    lc_lora a, b;
    lc_error err = {{0}};
    cr_assert_eq(lc_lora_load_peft(&a, &mc, fixture_adapter(), &err), 0, "%s", err.msg);
    cr_assert_eq(a.cfg.r, 8);
    cr_assert_eq(a.cfg.alpha, 16.0);
    cr_assert_eq(a.n_layers, 2);
    cr_assert_eq(a.n_tensors, 28u);
    for (int m = 0; m < LC_TEST_LLAMA_MODULES; m++)
        cr_assert(a.cfg.targets[m], "module %s not targeted", lc_module_name(m));

    /* Loaded values equal the fixture's bytes. */
    lc_st_file f;
    cr_assert_eq(lc_st_open(&f, fixture_st(), &err), 0, "%s", err.msg);
    char name[256];
    for (int l = 0; l < 2; l++)
        for (int m = 0; m < LC_TEST_LLAMA_MODULES; m++)
            for (int isb = 0; isb < 2; isb++) {
                const lc_lora_adapter *ad = lc_lora_get(&a, l, m);
                cr_assert_not_null(ad);
                const lc_tensor *t = isb ? ad->B : ad->A;
                lc_lora_tensor_name(name, sizeof name, l, m, isb);
                const lc_st_tensor *st = lc_st_find(&f, name);
                cr_assert_not_null(st, "fixture lacks %s", name);
                cr_assert_eq(t->numel, (int64_t)st->numel);
                cr_assert_eq(memcmp(t->data, st->data, st->numel * sizeof(float)), 0,
                             "%s loaded with different bits", name);
            }
    lc_st_close(&f);

    char *dir = lc_test_tmpdir();
    char *out = lc_test_path_in(dir, "nested/adapter"); /* save creates missing dirs */
    cr_assert_eq(lc_lora_save_peft(&a, out, "../model", &err), 0, "%s", err.msg);
    char *st_path = lc_test_path_in(out, "adapter_model.safetensors");
    assert_same_tensors(st_path, fixture_st());

    cr_assert_eq(lc_lora_load_peft(&b, &mc, out, &err), 0, "%s", err.msg);
    cr_assert_eq(b.n_params, a.n_params);
    cr_assert_eq(b.n_tensors, a.n_tensors);
    cr_assert_eq(memcmp(a.params, b.params, a.n_params * sizeof(lc_real)), 0);
    cr_assert_eq(b.cfg.r, a.cfg.r);
    cr_assert_eq(b.cfg.alpha, a.cfg.alpha);
    cr_assert_eq(b.cfg.dropout, a.cfg.dropout);
    cr_assert_eq(b.cfg.use_rslora, a.cfg.use_rslora);
    cr_assert_eq(b.scale, a.scale);
    cr_assert_eq(memcmp(a.cfg.targets, b.cfg.targets, sizeof a.cfg.targets), 0);

    /* Saving again over the same directory gives the same tensors. */
    cr_assert_eq(lc_lora_save_peft(&b, out, "../model", &err), 0, "%s", err.msg);
    assert_same_tensors(st_path, fixture_st());

    lc_lora_free(&a);
    lc_lora_free(&b);
    free(st_path);
    free(out);
    lc_test_rm_rf(dir);
    free(dir);
}

Test(adapter, trained_fixture_round_trip)
{
    /* adapter_step3 has trained (non-zero) B as well. */
    lc_model_config mc = tiny_config();
    lc_lora a, b;
    lc_error err = {{0}};
    const char *src = lc_test_fixture("tiny-llama/adapter_step3");
    cr_assert_eq(lc_lora_load_peft(&a, &mc, src, &err), 0, "%s", err.msg);
    char *dir = lc_test_tmpdir();
    cr_assert_eq(lc_lora_save_peft(&a, dir, "../model", &err), 0, "%s", err.msg);
    char *w = lc_test_path_in(dir, "adapter_model.safetensors");
    char *r = lc_test_path_in(src, "adapter_model.safetensors");
    assert_same_tensors(w, r);
    cr_assert_eq(lc_lora_load_peft(&b, &mc, dir, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(a.params, b.params, a.n_params * sizeof(lc_real)), 0);
    lc_lora_free(&a);
    lc_lora_free(&b);
    free(w);
    free(r);
    lc_test_rm_rf(dir);
    free(dir);
}

/* ------------------------------------------------- adapter_config.json */

static void assert_bool_key(const cJSON *root, const char *key, bool want)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    cr_assert_not_null(v, "adapter_config.json lacks '%s'", key);
    cr_assert(cJSON_IsBool(v), "'%s' is not a boolean", key);
    cr_assert_eq(cJSON_IsTrue(v), want, "'%s' is %s", key, want ? "false" : "true");
}

static void assert_str_key(const cJSON *root, const char *key, const char *want)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    cr_assert_not_null(v, "adapter_config.json lacks '%s'", key);
    cr_assert(cJSON_IsString(v), "'%s' is not a string", key);
    cr_assert_str_eq(v->valuestring, want, "'%s'", key);
}

static void assert_num_key(const cJSON *root, const char *key, double want)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    cr_assert_not_null(v, "adapter_config.json lacks '%s'", key);
    cr_assert(cJSON_IsNumber(v), "'%s' is not a number", key);
    cr_assert_eq(v->valuedouble, want, "'%s' is %g, expected %g", key, v->valuedouble, want);
}

Test(adapter, written_config_has_peft_keys)
{
    lc_model_config mc = tiny_config();
    lc_lora a;
    lc_error err = {{0}};
    cr_assert_eq(lc_lora_load_peft(&a, &mc, fixture_adapter(), &err), 0, "%s", err.msg);
    char *dir = lc_test_tmpdir();
    cr_assert_eq(lc_lora_save_peft(&a, dir, "/models/tiny-llama", &err), 0, "%s", err.msg);
    cJSON *root = read_json(dir, "adapter_config.json");

    assert_str_key(root, "peft_type", "LORA");
    assert_str_key(root, "task_type", "CAUSAL_LM");
    assert_str_key(root, "base_model_name_or_path", "/models/tiny-llama");
    assert_str_key(root, "bias", "none");
    assert_num_key(root, "r", 8);
    assert_num_key(root, "lora_alpha", 16);
    assert_num_key(root, "lora_dropout", 0);
    assert_bool_key(root, "fan_in_fan_out", false);
    assert_bool_key(root, "use_rslora", false);
    assert_bool_key(root, "use_dora", false);
    assert_bool_key(root, "inference_mode", true);
    const cJSON *mts = cJSON_GetObjectItemCaseSensitive(root, "modules_to_save");
    cr_assert_not_null(mts, "adapter_config.json lacks 'modules_to_save'");
    cr_assert(cJSON_IsNull(mts), "modules_to_save is not null");
    /* r is written as an integer (PEFT's LoraConfig.r is an int). */
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(root, "r");
    cr_assert_eq(r->valueint, 8);

    /* target_modules: the 7 modules as a set. */
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(root, "target_modules");
    cr_assert(cJSON_IsArray(tm), "target_modules is not a list");
    cr_assert_eq(cJSON_GetArraySize(tm), 7);
    bool seen[LC_MOD_COUNT] = {0};
    const cJSON *it;
    cJSON_ArrayForEach(it, tm)
    {
        cr_assert(cJSON_IsString(it));
        int m = lc_module_from_name(it->valuestring);
        cr_assert_geq(m, 0, "unknown target module '%s'", it->valuestring);
        cr_assert_not(seen[m], "'%s' listed twice", it->valuestring);
        seen[m] = true;
    }
    /* Per-module patterns, when written, must be empty (PEFT reads them). */
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "rank_pattern");
    if (rp)
        cr_assert(cJSON_IsObject(rp) && rp->child == NULL);
    const cJSON *ap = cJSON_GetObjectItemCaseSensitive(root, "alpha_pattern");
    if (ap)
        cr_assert(cJSON_IsObject(ap) && ap->child == NULL);
    cJSON_Delete(root);

    /* And lorac reads back what it wrote. */
    lc_lora_config back;
    cr_assert_eq(lc_lora_read_config(&back, dir, &err), 0, "%s", err.msg);
    cr_assert_eq(back.r, 8);
    cr_assert_eq(back.alpha, 16.0);
    cr_assert_eq(back.dropout, 0.0);
    cr_assert_not(back.use_rslora);
    for (int m = 0; m < LC_TEST_LLAMA_MODULES; m++)
        cr_assert(back.targets[m]);

    lc_lora_free(&a);
    lc_test_rm_rf(dir);
    free(dir);
}

/* base_model_name_or_path: an existing path is written as its absolute
 * canonical path, so PEFT (AutoPeftModelForCausalLM) finds the base from
 * any working directory; a Hub id that names no path is written as given. */
Test(adapter, written_config_base_model_path)
{
    lc_model_config mc = tiny_config();
    lc_lora a;
    lc_error err = {{0}};
    cr_assert_eq(lc_lora_load_peft(&a, &mc, fixture_adapter(), &err), 0, "%s", err.msg);
    char *dir = lc_test_tmpdir();
    char *models = lc_test_path_in(dir, "models"), *smol = lc_test_path_in(dir, "models/smol");
    char *run = lc_test_path_in(dir, "run"), *out = lc_test_path_in(dir, "out");
    cr_assert_eq(mkdir(models, 0755), 0);
    cr_assert_eq(mkdir(smol, 0755), 0);
    cr_assert_eq(mkdir(run, 0755), 0);
    char *want = realpath(smol, NULL);
    cr_assert_not_null(want);
    char cwd[4096];
    cr_assert_not_null(getcwd(cwd, sizeof cwd));

    /* relative to a working directory that is not the adapter's */
    cr_assert_eq(chdir(run), 0);
    cr_assert_eq(lc_lora_save_peft(&a, out, "../models/./smol/", &err), 0, "%s", err.msg);
    cr_assert_eq(chdir(cwd), 0);
    cJSON *root = read_json(out, "adapter_config.json");
    assert_str_key(root, "base_model_name_or_path", want);
    cJSON_Delete(root);

    /* "org/name" that is no path here: a Hub id, written as given */
    cr_assert_eq(chdir(dir), 0);
    cr_assert_eq(lc_lora_save_peft(&a, out, "HuggingFaceTB/SmolLM2-135M", &err), 0, "%s",
                 err.msg);
    cr_assert_eq(chdir(cwd), 0);
    root = read_json(out, "adapter_config.json");
    assert_str_key(root, "base_model_name_or_path", "HuggingFaceTB/SmolLM2-135M");
    cJSON_Delete(root);

    lc_lora_free(&a);
    free(want);
    free(models);
    free(smol);
    free(run);
    free(out);
    lc_test_rm_rf(dir);
    free(dir);
}

Test(adapter, written_config_subset_rslora_dropout)
{
    lc_model_config mc = tiny_config();
    lc_lora_config c;
    memset(&c, 0, sizeof c);
    c.r = 4;
    c.alpha = 8.5;
    c.dropout = 0.05;
    c.use_rslora = true;
    c.targets[LC_MOD_Q] = c.targets[LC_MOD_V] = c.targets[LC_MOD_DOWN] = true;
    lc_lora a, b;
    lc_error err = {{0}};
    cr_assert_eq(lc_lora_init(&a, &mc, &c, 7, &err), 0, "%s", err.msg);
    char *dir = lc_test_tmpdir();
    cr_assert_eq(lc_lora_save_peft(&a, dir, NULL, &err), 0, "%s", err.msg);
    cJSON *root = read_json(dir, "adapter_config.json");
    assert_num_key(root, "r", 4);
    assert_num_key(root, "lora_alpha", 8.5);
    assert_num_key(root, "lora_dropout", 0.05);
    assert_bool_key(root, "use_rslora", true);
    const cJSON *bm = cJSON_GetObjectItemCaseSensitive(root, "base_model_name_or_path");
    cr_assert(bm != NULL && (cJSON_IsNull(bm) || cJSON_IsString(bm)));
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(root, "target_modules");
    cr_assert_eq(cJSON_GetArraySize(tm), 3);
    bool seen[LC_MOD_COUNT] = {0};
    const cJSON *it;
    cJSON_ArrayForEach(it, tm)
    {
        int m = lc_module_from_name(it->valuestring);
        cr_assert_geq(m, 0);
        seen[m] = true;
    }
    cr_assert(seen[LC_MOD_Q] && seen[LC_MOD_V] && seen[LC_MOD_DOWN]);
    cJSON_Delete(root);

    /* Only the targeted tensors are written: 2 layers × 3 modules × A, B. */
    char *st_path = lc_test_path_in(dir, "adapter_model.safetensors");
    lc_st_file f;
    cr_assert_eq(lc_st_open(&f, st_path, &err), 0, "%s", err.msg);
    cr_assert_eq(f.n_tensors, 12u);
    const lc_st_tensor *t =
        lc_st_find(&f, "base_model.model.model.layers.1.mlp.down_proj.lora_A.weight");
    cr_assert_not_null(t);
    cr_assert_eq(t->shape[0], 4);
    cr_assert_eq(t->shape[1], 160);
    t = lc_st_find(&f, "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight");
    cr_assert_not_null(t);
    cr_assert_eq(t->shape[0], 32);
    cr_assert_eq(t->shape[1], 4);
    cr_assert_null(lc_st_find(&f, "base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight"));
    lc_st_close(&f);

    cr_assert_eq(lc_lora_load_peft(&b, &mc, dir, &err), 0, "%s", err.msg);
    cr_assert_eq(b.n_params, a.n_params);
    cr_assert_eq(memcmp(a.params, b.params, a.n_params * sizeof(lc_real)), 0);
    cr_assert(b.cfg.use_rslora);
    cr_assert_eq(b.cfg.alpha, 8.5);
    cr_assert_eq(b.cfg.dropout, 0.05);
    cr_assert_float_eq(b.scale, (lc_real)(8.5 / 2.0), 1e-6);
    cr_assert_null(lc_lora_get(&b, 0, LC_MOD_K));
    cr_assert_not_null(lc_lora_get(&b, 1, LC_MOD_DOWN));

    lc_lora_free(&a);
    lc_lora_free(&b);
    free(st_path);
    lc_test_rm_rf(dir);
    free(dir);
}

Test(adapter, all_linear_target)
{
    /* PEFT also writes target_modules "all-linear". */
    char *dir = make_adapter_patched("target_modules", "\"all-linear\"", true);
    lc_model_config mc = tiny_config();
    lc_lora a;
    lc_error err = {{0}};
    cr_assert_eq(lc_lora_load_peft(&a, &mc, dir, &err), 0, "%s", err.msg);
    for (int m = 0; m < LC_MOD_COUNT; m++) /* a Llama's seven linears, not Phi-3's fused ones */
        cr_assert_eq(a.cfg.targets[m], m <= LC_MOD_DOWN, "module %d", m);
    lc_lora_free(&a);
    lc_test_rm_rf(dir);
    free(dir);
}

Test(adapter, f16_tensors_load)
{
    /* F16 adapters are accepted and converted. */
    lc_st_file f;
    lc_error err = {{0}};
    cr_assert_eq(lc_st_open(&f, fixture_st(), &err), 0, "%s", err.msg);
    lc_st_entry *e = calloc(f.n_tensors, sizeof *e);
    uint16_t **h = calloc(f.n_tensors, sizeof *h);
    for (size_t i = 0; i < f.n_tensors; i++) {
        const lc_st_tensor *t = &f.tensors[i];
        const float *src = t->data;
        h[i] = malloc(t->numel * sizeof(uint16_t));
        for (uint64_t k = 0; k < t->numel; k++)
            h[i][k] = lc_f32_to_f16(src[k]);
        e[i] = (lc_st_entry){t->name, LC_DTYPE_F16, 2, t->shape, h[i]};
    }
    char *cfg = fixture_config_with(NULL, NULL);
    char *dir = make_adapter(cfg, false);
    char *p = lc_test_path_in(dir, "adapter_model.safetensors");
    cr_assert_eq(lc_st_write(p, e, f.n_tensors, NULL, NULL, 0, &err), 0, "%s", err.msg);

    lc_model_config mc = tiny_config();
    lc_lora a;
    cr_assert_eq(lc_lora_load_peft(&a, &mc, dir, &err), 0, "%s", err.msg);
    const lc_lora_adapter *ad = lc_lora_get(&a, 1, LC_MOD_UP);
    const lc_st_tensor *t =
        lc_st_find(&f, "base_model.model.model.layers.1.mlp.up_proj.lora_A.weight");
    const float *ref = t->data;
    for (int64_t k = 0; k < ad->A->numel; k++)
        cr_assert_float_eq(ad->A->data[k], ref[k], 1e-3 * fabsf(ref[k]) + 1e-7, "A[%lld]",
                           (long long)k);
    lc_lora_free(&a);
    for (size_t i = 0; i < f.n_tensors; i++)
        free(h[i]);
    free(h);
    free(e);
    free(cfg);
    free(p);
    lc_st_close(&f);
    lc_test_rm_rf(dir);
    free(dir);
}

/* -------------------------------------------------------------- init */

Test(adapter, init_follows_peft)
{
    lc_model_config mc = tiny_config();
    lc_lora_config c = all_targets(8, 16);
    lc_lora a, b, d;
    lc_error err = {{0}};
    cr_assert_eq(lc_lora_init(&a, &mc, &c, 1234, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_lora_init(&b, &mc, &c, 1234, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_lora_init(&d, &mc, &c, 1235, &err), 0, "%s", err.msg);

    cr_assert_float_eq(a.scale, 2.0f, 0);
    cr_assert_eq(a.n_tensors, 28u);
    size_t expect_params = 0;
    for (int l = 0; l < mc.n_layers; l++)
        for (int m = 0; m < LC_TEST_LLAMA_MODULES; m++) {
            int64_t out, in;
            lc_module_shape(&mc, m, &out, &in);
            expect_params += (size_t)(8 * (in + out));
            const lc_lora_adapter *ad = lc_lora_get(&a, l, m);
            cr_assert_not_null(ad);
            cr_assert_float_eq(ad->scale, 2.0f, 0);
            cr_assert_eq(ad->dropout, 0.0);
            cr_assert_eq(ad->A->shape[0], 8);
            cr_assert_eq(ad->A->shape[1], in);
            cr_assert_eq(ad->B->shape[0], out);
            cr_assert_eq(ad->B->shape[1], 8);
            cr_assert(ad->A->requires_grad && ad->B->requires_grad);
            double bound = 1.0 / sqrt((double)in);
            double lo = INFINITY, hi = -INFINITY, sum = 0;
            for (int64_t i = 0; i < ad->A->numel; i++) {
                double v = ad->A->data[i];
                cr_assert(fabs(v) <= bound, "%s A[%lld] = %g outside ±%g", lc_module_name(m),
                          (long long)i, v, bound);
                lo = fmin(lo, v);
                hi = fmax(hi, v);
                sum += v;
            }
            /* Spread over the interval, centred: ≥ 256 samples of U(−b, b). */
            cr_assert(hi - lo > bound, "%s A values not spread: [%g, %g]", lc_module_name(m), lo,
                      hi);
            cr_assert(fabs(sum / (double)ad->A->numel) < 0.25 * bound);
            for (int64_t i = 0; i < ad->B->numel; i++)
                cr_assert_eq(ad->B->data[i], 0.0f, "%s B[%lld] not zero", lc_module_name(m),
                             (long long)i);
            for (int64_t i = 0; i < ad->A->numel; i++)
                cr_assert_eq(ad->A->grad[i], 0.0f);
        }
    cr_assert_eq(a.n_params, expect_params);
    /* Module shapes of the tiny model: q [64,64], k/v [32,64], gate/up [160,64]. */
    int64_t out, in;
    lc_module_shape(&mc, LC_MOD_K, &out, &in);
    cr_assert(out == 32 && in == 64);
    lc_module_shape(&mc, LC_MOD_DOWN, &out, &in);
    cr_assert(out == 64 && in == 160);

    /* Same seed → same values; another seed → different A. */
    cr_assert_eq(memcmp(a.params, b.params, a.n_params * sizeof(lc_real)), 0);
    size_t differ = 0, n_a = 0;
    for (int l = 0; l < mc.n_layers; l++)
        for (int m = 0; m < LC_TEST_LLAMA_MODULES; m++) {
            const lc_lora_adapter *x = lc_lora_get(&a, l, m), *y = lc_lora_get(&d, l, m);
            for (int64_t i = 0; i < x->A->numel; i++, n_a++)
                differ += x->A->data[i] != y->A->data[i];
        }
    cr_assert_gt(differ, n_a * 9 / 10, "only %zu of %zu A values differ between seeds", differ,
                 n_a);
    /* Layers and modules are not copies of each other. */
    cr_assert_neq(lc_lora_get(&a, 0, LC_MOD_Q)->A->data[0], lc_lora_get(&a, 1, LC_MOD_Q)->A->data[0]);

    lc_lora_free(&a);
    lc_lora_free(&b);
    lc_lora_free(&d);
}

Test(adapter, init_scale_rslora_and_subset)
{
    lc_model_config mc = tiny_config();
    lc_lora_config c = all_targets(8, 16);
    c.use_rslora = true;
    lc_lora a;
    lc_error err = {{0}};
    cr_assert_eq(lc_lora_init(&a, &mc, &c, 1, &err), 0, "%s", err.msg);
    cr_assert_float_eq(a.scale, (lc_real)(16.0 / sqrt(8.0)), 1e-6);
    cr_assert_float_eq(lc_lora_get(&a, 1, LC_MOD_O)->scale, (lc_real)(16.0 / sqrt(8.0)), 1e-6);
    lc_lora_free(&a);

    lc_lora_config s;
    memset(&s, 0, sizeof s);
    s.r = 2;
    s.alpha = 3;
    s.dropout = 0.1;
    s.targets[LC_MOD_Q] = s.targets[LC_MOD_V] = true;
    cr_assert_eq(lc_lora_init(&a, &mc, &s, 1, &err), 0, "%s", err.msg);
    cr_assert_float_eq(a.scale, 1.5f, 1e-7);
    cr_assert_eq(a.n_tensors, 8u);
    cr_assert_eq(a.n_params, (size_t)2 * 2 * ((64 + 64) + (64 + 32)));
    for (int l = 0; l < 2; l++)
        for (int m = 0; m < LC_TEST_LLAMA_MODULES; m++) {
            const lc_lora_adapter *ad = lc_lora_get(&a, l, m);
            if (m == LC_MOD_Q || m == LC_MOD_V) {
                cr_assert_not_null(ad);
                cr_assert_eq(ad->dropout, 0.1);
            } else {
                cr_assert_null(ad, "module %s should not be targeted", lc_module_name(m));
            }
        }
    lc_lora_free(&a);
}

Test(adapter, tensor_names_are_peft_names)
{
    char buf[256];
    lc_lora_tensor_name(buf, sizeof buf, 0, LC_MOD_Q, false);
    cr_assert_str_eq(buf, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
    lc_lora_tensor_name(buf, sizeof buf, 11, LC_MOD_DOWN, true);
    cr_assert_str_eq(buf, "base_model.model.model.layers.11.mlp.down_proj.lora_B.weight");
    cr_assert_eq(lc_module_from_name("gate_proj"), LC_MOD_GATE);
    cr_assert_eq(lc_module_from_name("foo_proj"), -1);
    cr_assert_str_eq(lc_module_parent(LC_MOD_O), "self_attn");
    cr_assert_str_eq(lc_module_parent(LC_MOD_UP), "mlp");
}

/* ------------------------------------------------------- init errors */

static void expect_init_fails(lc_lora_config c, const char *sub)
{
    lc_model_config mc = tiny_config();
    lc_lora a;
    lc_error err = {{0}};
    cr_assert_eq(lc_lora_init(&a, &mc, &c, 1, &err), -1, "init succeeded, expected '%s'", sub);
    lc_test_assert_msg_has(&err, sub);
    cr_assert_null(a.params);
    lc_lora_free(&a); /* harmless on a failed init */
}

Test(adapter_errors, init_bad_config)
{
    lc_lora_config c = all_targets(0, 16);
    expect_init_fails(c, "lora_r: 0 is out of range");
    c = all_targets(-3, 16);
    expect_init_fails(c, "lora_r: -3 is out of range");
    c = all_targets(5000, 16);
    expect_init_fails(c, "lora_r: 5000 is out of range");
    c = all_targets(8, 0);
    expect_init_fails(c, "lora_alpha: must be > 0");
    c = all_targets(8, -1);
    expect_init_fails(c, "lora_alpha: must be > 0");
    c = all_targets(8, NAN);
    expect_init_fails(c, "lora_alpha: must be > 0");
    c = all_targets(8, 16);
    c.dropout = 1.0;
    expect_init_fails(c, "lora_dropout: 1 is out of range");
    c.dropout = -0.1;
    expect_init_fails(c, "lora_dropout: -0.1 is out of range");
    c.dropout = NAN;
    expect_init_fails(c, "lora_dropout:");
    c = all_targets(8, 16);
    c.all_linear = false;
    expect_init_fails(c, "lora_target_modules: no module targeted");
    c.targets[LC_MOD_QKV] = true; /* Phi-3's fused module on a Llama */
    expect_init_fails(c, "lora_target_modules: 'qkv_proj' is not a module of llama models "
                         "(they have q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, "
                         "down_proj)");
}

/* ---------------------------------------------- adapter directory errors */

Test(adapter_errors, missing_adapter_config)
{
    char *dir = make_adapter(NULL, true);
    EXPECT_LOAD_FAILS(dir, "adapter_config.json", "No such file");
}

Test(adapter_errors, missing_dir)
{
    char *dir = strdup("/nonexistent/lorac-adapter");
    EXPECT_LOAD_FAILS(dir, "/nonexistent/lorac-adapter/adapter_config.json", "No such file");
}

Test(adapter_errors, missing_safetensors)
{
    char *cfg = fixture_config_with(NULL, NULL);
    char *dir = make_adapter(cfg, false);
    free(cfg);
    EXPECT_LOAD_FAILS(dir, "adapter_model.safetensors", "cannot open");
}

Test(adapter_errors, config_not_json)
{
    EXPECT_LOAD_FAILS(make_adapter("{\"r\": 8, lora_alpha", true), "adapter_config.json",
                      "not a JSON object");
    EXPECT_LOAD_FAILS(make_adapter("[8, 16]", true), "adapter_config.json", "not a JSON object");
    EXPECT_LOAD_FAILS(make_adapter("", true), "adapter_config.json", "not a JSON object");
}

Test(adapter_errors, r_missing_or_not_integer)
{
    const char *sub = "adapter_config.json: r: expected an integer in 1..4096";
    EXPECT_LOAD_FAILS(make_adapter_patched("r", NULL, true), sub);
    EXPECT_LOAD_FAILS(make_adapter_patched("r", "\"8\"", true), sub);
    EXPECT_LOAD_FAILS(make_adapter_patched("r", "8.5", true), sub);
    EXPECT_LOAD_FAILS(make_adapter_patched("r", "0", true), sub);
    EXPECT_LOAD_FAILS(make_adapter_patched("r", "-8", true), sub);
    EXPECT_LOAD_FAILS(make_adapter_patched("r", "null", true), sub);
    EXPECT_LOAD_FAILS(make_adapter_patched("r", "1e10", true), sub);
}

Test(adapter_errors, r_too_large)
{
    EXPECT_LOAD_FAILS(make_adapter_patched("r", "5000", true), "adapter_config.json",
                      "r: expected an integer in 1..4096");
}

Test(adapter_errors, alpha_missing)
{
    EXPECT_LOAD_FAILS(make_adapter_patched("lora_alpha", NULL, true),
                      "lora_alpha: expected a positive number");
    EXPECT_LOAD_FAILS(make_adapter_patched("lora_alpha", "0", true),
                      "lora_alpha: expected a positive number");
}

/* use_dora: true over a plain LoRA file: the magnitudes are missing, and
 * the message names the first (DoRA itself: tests/test_dora.c). */
Test(adapter_errors, use_dora)
{
    EXPECT_LOAD_FAILS(make_adapter_patched("use_dora", "true", true),
                      "missing tensor 'base_model.model.model.layers.0.self_attn.q_proj."
                      "lora_magnitude_vector'");
    EXPECT_LOAD_FAILS(make_adapter_patched("use_dora", "\"yes\"", true),
                      "use_dora: expected true or false");
}

Test(adapter_errors, unsupported_peft_options)
{
    EXPECT_LOAD_FAILS(make_adapter_patched("peft_type", "\"PREFIX_TUNING\"", true),
                      "peft_type: only \"LORA\" adapters are supported");
    EXPECT_LOAD_FAILS(make_adapter_patched("fan_in_fan_out", "true", true),
                      "fan_in_fan_out: true is not supported");
    EXPECT_LOAD_FAILS(make_adapter_patched("rank_pattern", "{\"q_proj\": 16}", true),
                      "per-module ranks are not supported");
    EXPECT_LOAD_FAILS(make_adapter_patched("alpha_pattern", "{\"q_proj\": 32}", true),
                      "per-module ranks are not supported");
}

Test(adapter_errors, unknown_target_module)
{
    EXPECT_LOAD_FAILS(
        make_adapter_patched("target_modules", "[\"q_proj\", \"foo_proj\"]", true),
        "target_modules: unknown module 'foo_proj'");
    EXPECT_LOAD_FAILS(make_adapter_patched("target_modules", "[\"q_proj\", 3]", true),
                      "target_modules: unknown module (not a string)");
    EXPECT_LOAD_FAILS(make_adapter_patched("target_modules", "\"q_proj|v_proj\"", true),
                      "target_modules: expected a list of module names");
    EXPECT_LOAD_FAILS(make_adapter_patched("target_modules", NULL, true),
                      "target_modules: expected a list of module names");
    EXPECT_LOAD_FAILS(make_adapter_patched("target_modules", "[]", true),
                      "no module targeted");
}

Test(adapter_errors, rank_mismatch)
{
    /* Config says r 4, tensors are r 8: the first tensor checked is layer 0 q_proj A. */
    EXPECT_LOAD_FAILS(make_adapter_patched("r", "4", true),
                      "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
                      "has shape [8,64], expected [4,64]", "rank or base model mismatch");
}

Test(adapter_errors, missing_tensor)
{
    char *dir = make_adapter_patched(NULL, NULL, false);
    write_modified_st(dir, "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight", NULL,
                      NULL, NULL);
    EXPECT_LOAD_FAILS(dir, "adapter_model.safetensors",
                      "missing tensor 'base_model.model.model.layers.1.mlp.down_proj.lora_B.weight'");
}

Test(adapter_errors, tensor_of_untargeted_module)
{
    /* Config drops down_proj, the file still has its tensors. */
    char *dir = make_adapter_patched(
        "target_modules",
        "[\"q_proj\", \"k_proj\", \"v_proj\", \"o_proj\", \"gate_proj\", \"up_proj\"]", true);
    EXPECT_LOAD_FAILS(dir, "adapter_model.safetensors",
                      "tensor 'base_model.model.model.layers.0.mlp.down_proj.lora_A.weight' does "
                      "not belong to this model and adapter_config.json");
}

Test(adapter_errors, tensor_of_missing_layer)
{
    char *dir = make_adapter_patched(NULL, NULL, false);
    const int64_t shape[2] = {8, 64};
    write_modified_st(dir, NULL, NULL,
                      "base_model.model.model.layers.5.self_attn.q_proj.lora_A.weight", shape);
    EXPECT_LOAD_FAILS(dir,
                      "tensor 'base_model.model.model.layers.5.self_attn.q_proj.lora_A.weight' "
                      "does not belong", "wrong layer count or target modules?");
}

Test(adapter_errors, tensor_of_other_kind)
{
    /* e.g. lora_bias or modules_to_save tensors. */
    char *dir = make_adapter_patched(NULL, NULL, false);
    const int64_t shape[2] = {1, 64};
    write_modified_st(dir, NULL, NULL, "base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias",
                      shape);
    EXPECT_LOAD_FAILS(dir, "'base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias' does "
                           "not belong");
}

Test(adapter_errors, wrong_dtype)
{
    char *dir = make_adapter_patched(NULL, NULL, false);
    write_modified_st(dir, NULL, "base_model.model.model.layers.1.self_attn.k_proj.lora_A.weight",
                      NULL, NULL);
    EXPECT_LOAD_FAILS(dir,
                      "tensor 'base_model.model.model.layers.1.self_attn.k_proj.lora_A.weight' has "
                      "dtype I32, expected a float type");
}

Test(adapter_errors, wrong_base_model_shape)
{
    /* An adapter for a wider model: replace one A with in = 65. */
    char *dir = make_adapter_patched(NULL, NULL, false);
    const char *name = "base_model.model.model.layers.0.mlp.gate_proj.lora_A.weight";
    const int64_t shape[2] = {8, 65};
    write_modified_st(dir, name, NULL, name, shape);
    EXPECT_LOAD_FAILS(dir, "'base_model.model.model.layers.0.mlp.gate_proj.lora_A.weight' has "
                           "shape [8,65], expected [8,64]");
}

Test(adapter_errors, not_a_safetensors_file)
{
    char *cfg = fixture_config_with(NULL, NULL);
    char *dir = make_adapter(cfg, false);
    free(cfg);
    free(lc_test_write_file(dir, "adapter_model.safetensors", "garbage", 7));
    EXPECT_LOAD_FAILS(dir, "adapter_model.safetensors", "file too short");
}

/* test_model_files.c — model directories: sharded index, single file, and the
 * ways an index can be wrong or hostile (missing shard, path escapes,
 * symlinks out of the directory, tensors mapped to the wrong shard). Each
 * test builds its model directory in a fresh temporary directory. */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/model_files.h"
#include "helpers.h"

/* Writes dir/file holding F32 tensors of shape [2] named names[0..n), the
 * i-th filled with base + i. */
static void write_shard(const char *dir, const char *file, const char *const *names, size_t n,
                        float base)
{
    float vals[8][2];
    int64_t shape[1] = {2};
    lc_st_entry e[8];
    cr_assert_leq(n, 8);
    for (size_t i = 0; i < n; i++) {
        vals[i][0] = vals[i][1] = base + (float)i;
        e[i] = (lc_st_entry){names[i], LC_DTYPE_F32, 1, shape, vals[i]};
    }
    char *p = lc_test_path_in(dir, file);
    lc_error err = {{0}};
    cr_assert_eq(lc_st_write(p, e, n, NULL, NULL, 0, &err), 0, "%s", err.msg);
    free(p);
}

static void write_index(const char *dir, const char *json)
{
    free(lc_test_write_file(dir, "model.safetensors.index.json", json, strlen(json)));
}

static void expect_open_fail(const char *dir, const char *want)
{
    lc_model_files mf;
    lc_error err = {{0}};
    cr_assert_eq(lc_model_files_open(&mf, dir, &err), -1, "open should fail (want '%s')",
                 want);
    lc_test_assert_msg_has(&err, want);
    cr_assert_null(strchr(err.msg, '\n'));
    cr_assert_null(mf.shards);
    cr_assert_null(mf.dir);
    lc_model_files_close(&mf);
}

static float first_value(const lc_st_tensor *t)
{
    float v;
    memcpy(&v, t->data, sizeof v);
    return v;
}

static const char *const SHARD1[] = {"model.embed_tokens.weight", "model.norm.weight"};
static const char *const SHARD2[] = {"lm_head.weight", "model.layers.0.mlp.up_proj.weight",
                                     "extra.not_in_map"};

static const char *HAPPY_INDEX =
    "{\"metadata\": {\"total_size\": 40},\n"
    " \"weight_map\": {\n"
    "  \"lm_head.weight\": \"model-00002-of-00002.safetensors\",\n"
    "  \"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\",\n"
    "  \"model.layers.0.mlp.up_proj.weight\": \"model-00002-of-00002.safetensors\",\n"
    "  \"model.norm.weight\": \"model-00001-of-00002.safetensors\"}}";

Test(model_files, sharded_index)
{
    char *dir = lc_test_tmpdir();
    write_shard(dir, "model-00001-of-00002.safetensors", SHARD1, 2, 10);
    write_shard(dir, "model-00002-of-00002.safetensors", SHARD2, 3, 20);
    write_index(dir, HAPPY_INDEX);

    lc_model_files mf;
    lc_error err = {{0}};
    cr_assert_eq(lc_model_files_open(&mf, dir, &err), 0, "%s", err.msg);
    cr_assert_eq(mf.n_shards, 2);
    cr_assert_str_eq(mf.dir, dir);
    cr_assert_str_eq(mf.shard_names[0], "model-00001-of-00002.safetensors");
    cr_assert_str_eq(mf.shard_names[1], "model-00002-of-00002.safetensors");

    const lc_st_tensor *t = lc_model_files_find(&mf, "model.embed_tokens.weight");
    cr_assert_not_null(t);
    cr_assert_eq(first_value(t), 10.0f);
    cr_assert_eq(lc_model_files_shard_of(&mf, "model.embed_tokens.weight"), 0);
    t = lc_model_files_find(&mf, "model.norm.weight");
    cr_assert_not_null(t);
    cr_assert_eq(first_value(t), 11.0f);
    t = lc_model_files_find(&mf, "lm_head.weight");
    cr_assert_not_null(t);
    cr_assert_eq(first_value(t), 20.0f);
    cr_assert_eq(lc_model_files_shard_of(&mf, "lm_head.weight"), 1);
    t = lc_model_files_find(&mf, "model.layers.0.mlp.up_proj.weight");
    cr_assert_not_null(t);
    cr_assert_eq(t->dtype, LC_DTYPE_F32);
    cr_assert_eq(first_value(t), 21.0f);

    /* only weight_map is trusted: a tensor the map does not name is not found */
    cr_assert_null(lc_model_files_find(&mf, "extra.not_in_map"));
    cr_assert_eq(lc_model_files_shard_of(&mf, "extra.not_in_map"), -1);
    cr_assert_null(lc_model_files_find(&mf, "nope"));
    cr_assert_eq(lc_model_files_shard_of(&mf, "nope"), -1);
    lc_model_files_close(&mf);
    cr_assert_null(mf.shards);
    lc_test_rm_rf(dir);
    free(dir);
}

Test(model_files, single_file)
{
    char *dir = lc_test_tmpdir();
    write_shard(dir, "model.safetensors", SHARD2, 3, 5);
    lc_model_files mf;
    lc_error err = {{0}};
    cr_assert_eq(lc_model_files_open(&mf, dir, &err), 0, "%s", err.msg);
    cr_assert_eq(mf.n_shards, 1);
    cr_assert_str_eq(mf.shard_names[0], "model.safetensors");
    const lc_st_tensor *t = lc_model_files_find(&mf, "extra.not_in_map");
    cr_assert_not_null(t);
    cr_assert_eq(first_value(t), 7.0f);
    cr_assert_eq(lc_model_files_shard_of(&mf, "lm_head.weight"), 0);
    cr_assert_null(lc_model_files_find(&mf, "nope"));
    lc_model_files_close(&mf);
    lc_test_rm_rf(dir);
    free(dir);
}

Test(model_files, tiny_llama_fixture)
{
    lc_model_files mf;
    lc_error err = {{0}};
    cr_assert_eq(lc_model_files_open(&mf, lc_test_fixture("tiny-llama/model"), &err), 0, "%s",
                 err.msg);
    const lc_st_tensor *t = lc_model_files_find(&mf, "model.embed_tokens.weight");
    cr_assert_not_null(t);
    cr_assert_eq(t->shape[0], 512);
    cr_assert_eq(t->shape[1], 64);
    lc_model_files_close(&mf);
}

Test(model_files, no_model_file)
{
    char *dir = lc_test_tmpdir();
    char want[4200];
    snprintf(want, sizeof want, "%s: no model.safetensors or model.safetensors.index.json",
             dir);
    expect_open_fail(dir, want);
    lc_test_rm_rf(dir);
    free(dir);
}

Test(model_files, missing_shard)
{
    char *dir = lc_test_tmpdir();
    write_shard(dir, "model-00001-of-00002.safetensors", SHARD1, 2, 10);
    write_index(dir, HAPPY_INDEX);
    expect_open_fail(dir, "shard 'model-00002-of-00002.safetensors' listed in "
                          "model.safetensors.index.json: No such file or directory");
    lc_test_rm_rf(dir);
    free(dir);
}

Test(model_files, shard_name_escapes_refused)
{
    char *dir = lc_test_tmpdir();
    const char *bad[] = {"../x", "/abs", "", "..", "sub/model.safetensors"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char json[256], want[256];
        snprintf(json, sizeof json, "{\"weight_map\": {\"w\": \"%s\"}}", bad[i]);
        write_index(dir, json);
        snprintf(want, sizeof want, "tensor 'w' is mapped to shard '%s', which is not a plain "
                                    "file name", bad[i]);
        expect_open_fail(dir, want);
    }
    lc_test_rm_rf(dir);
    free(dir);
}

Test(model_files, tensor_missing_from_its_shard)
{
    char *dir = lc_test_tmpdir();
    write_shard(dir, "model-00001-of-00002.safetensors", SHARD1, 2, 10);
    write_shard(dir, "model-00002-of-00002.safetensors", SHARD2, 3, 20);
    /* lm_head.weight really lives in shard 2, but the map says shard 1 */
    write_index(dir, "{\"weight_map\": {"
                     "\"lm_head.weight\": \"model-00001-of-00002.safetensors\","
                     "\"model.norm.weight\": \"model-00001-of-00002.safetensors\"}}");
    expect_open_fail(dir, "tensor 'lm_head.weight' is mapped to shard "
                          "'model-00001-of-00002.safetensors', which has no such tensor");
    lc_test_rm_rf(dir);
    free(dir);
}

Test(model_files, symlink_out_of_dir_refused)
{
    char *dir = lc_test_tmpdir();
    char *outside = lc_test_tmpdir();
    write_shard(outside, "real.safetensors", SHARD1, 2, 10);
    char *target = lc_test_path_in(outside, "real.safetensors");
    char *link = lc_test_path_in(dir, "model-00001.safetensors");
    cr_assert_eq(symlink(target, link), 0);
    write_index(dir, "{\"weight_map\": {\"model.norm.weight\": \"model-00001.safetensors\"}}");
    expect_open_fail(dir, "shard 'model-00001.safetensors' resolves to");
    expect_open_fail(dir, "outside the model directory");

    /* a symlink that stays inside the directory is fine */
    write_shard(dir, "blob.safetensors", SHARD1, 2, 30);
    char *inside = lc_test_path_in(dir, "model-00002.safetensors");
    cr_assert_eq(symlink("blob.safetensors", inside), 0);
    write_index(dir, "{\"weight_map\": {\"model.norm.weight\": \"model-00002.safetensors\"}}");
    lc_model_files mf;
    lc_error err = {{0}};
    cr_assert_eq(lc_model_files_open(&mf, dir, &err), 0, "%s", err.msg);
    cr_assert_eq(first_value(lc_model_files_find(&mf, "model.norm.weight")), 31.0f);
    lc_model_files_close(&mf);

    free(inside);
    free(link);
    free(target);
    lc_test_rm_rf(outside);
    lc_test_rm_rf(dir);
    free(outside);
    free(dir);
}

Test(model_files, bad_index_json)
{
    char *dir = lc_test_tmpdir();
    write_shard(dir, "a.safetensors", SHARD1, 2, 10);
    write_index(dir, "{\"weight_map\": ");
    expect_open_fail(dir, "model.safetensors.index.json: not valid JSON");
    write_index(dir, "[]");
    expect_open_fail(dir, "model.safetensors.index.json: not a JSON object");
    write_index(dir, "{\"metadata\": {}}");
    expect_open_fail(dir, "missing \"weight_map\" object");
    write_index(dir, "{\"weight_map\": {}}");
    expect_open_fail(dir, "weight_map is empty");
    write_index(dir, "{\"weight_map\": {\"model.norm.weight\": 3}}");
    expect_open_fail(dir, "weight_map entry for tensor 'model.norm.weight' is not a string");
    write_index(dir, "{\"weight_map\": {\"model.norm.weight\": \"a.safetensors\","
                     "\"model.norm.weight\": \"a.safetensors\"}}");
    expect_open_fail(dir, "tensor 'model.norm.weight' appears twice in weight_map");
    lc_test_rm_rf(dir);
    free(dir);
}

Test(model_files, broken_shard_reported)
{
    char *dir = lc_test_tmpdir();
    free(lc_test_write_file(dir, "a.safetensors", "\x02\0\0", 3));
    write_index(dir, "{\"weight_map\": {\"model.norm.weight\": \"a.safetensors\"}}");
    expect_open_fail(dir, "a.safetensors: file too short (3 bytes)");
    /* a broken single file too */
    char *idx = lc_test_path_in(dir, "model.safetensors.index.json");
    unlink(idx);
    free(idx);
    free(lc_test_write_file(dir, "model.safetensors", "\x02\0\0", 3));
    expect_open_fail(dir, "model.safetensors: file too short (3 bytes)");
    lc_test_rm_rf(dir);
    free(dir);
}

Test(model_files, index_preferred_over_single_file)
{
    char *dir = lc_test_tmpdir();
    write_shard(dir, "model.safetensors", SHARD2, 3, 5);
    write_shard(dir, "s1.safetensors", SHARD1, 2, 40);
    write_index(dir, "{\"weight_map\": {\"model.norm.weight\": \"s1.safetensors\"}}");
    lc_model_files mf;
    lc_error err = {{0}};
    cr_assert_eq(lc_model_files_open(&mf, dir, &err), 0, "%s", err.msg);
    cr_assert_eq(mf.n_shards, 1);
    cr_assert_str_eq(mf.shard_names[0], "s1.safetensors");
    cr_assert_null(lc_model_files_find(&mf, "lm_head.weight"));
    cr_assert_eq(first_value(lc_model_files_find(&mf, "model.norm.weight")), 41.0f);
    lc_model_files_close(&mf);
    lc_test_rm_rf(dir);
    free(dir);
}

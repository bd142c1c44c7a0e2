/* test_gguf_spm.c — SentencePiece ("llama" model) vocabularies read from GGUF
 * files (lc_gguf_tokenizer_load, train/gguf_vocab.c) against llama.cpp itself:
 * tests/fixtures/gguf_spm/ (scripts/make_gguf_spm_fixtures.py, llama-cpp-python
 * 0.3.36) holds vocab-only GGUF files — Llama 2 with SentencePiece-like ranked
 * scores (32000 tokens), with the converter's flat -1000 scores (all ties),
 * the flat one without add_space_prefix and with add_eos, Phi-3 with control
 * and user-defined added tokens, and named "Phi3" (llama.cpp then makes its
 * special tokens rstrip) — and llama.cpp's ids of 280 texts each, with
 * and without add_special (parse_special on), and its detokenized text of
 * both. Every case must give the same ids and text. Then a completion dataset
 * over the Llama 2 GGUF file as base_model goes through `lorac preprocess`
 * into rows of llama.cpp's ids; and bad score arrays are refused by name. */
#include <criterion/criterion.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/gguf_write.h"
#include "data/tokenizer.h"
#include "helpers.h"
#include "tokenizer_fixture.h"
#include "train/gguf_vocab.h"

/* tests/fixtures/gguf_spm/<name>.gguf.gz unpacked into dir (malloc'd path). */
static char *unpack_gguf(const char *dir, const char *name)
{
    char *gz = lc_test_asprintf("%s/gguf_spm/%s.gguf.gz", lc_test_fixture(""), name);
    char *path = lc_test_asprintf("%s/%s.gguf", dir, name);
    char *cmd = lc_test_asprintf("gzip -dc '%s' > '%s'", gz, path);
    const char *argv[] = {"sh", "-c", cmd, NULL};
    lc_test_run_result r = lc_test_run(NULL, argv);
    cr_assert_eq(r.code, 0, "%s: %s", cmd, r.err);
    lc_test_run_free(&r);
    free(cmd);
    free(gz);
    return path;
}

/* tests/fixtures/gguf_spm/<name>.json.gz parsed. */
static cJSON *load_cases(const char *name)
{
    char *rel = lc_test_asprintf("gguf_spm/%s.json.gz", name);
    const char *argv[] = {"gzip", "-dc", lc_test_fixture(rel), NULL};
    lc_test_run_result r = lc_test_run(NULL, argv);
    cr_assert_eq(r.code, 0, "gzip -dc %s: %s", rel, r.err);
    cJSON *j = cJSON_Parse(r.out);
    cr_assert_not_null(j, "%s: not JSON", rel);
    lc_test_run_free(&r);
    free(rel);
    return j;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One check of a case: encode (add_special sp) gives want_ids; decoding them
 * gives want_text. Returns 1 when both hold; logs the first failures. */
static int check_one(lc_tokenizer *t, const char *name, const char *text, bool sp,
                     const cJSON *want_ids, const char *want_text, int *logged)
{
    lc_ids ids = {0};
    lc_error err;
    cr_assert_eq(lc_tokenizer_encode(t, text, strlen(text), sp, &ids, &err), 0, "%s: %s", name,
                 err.msg);
    int ok = lc_test_ids_equal(&ids, want_ids);
    int32_t *want = malloc((size_t)(cJSON_GetArraySize(want_ids) + 1) * sizeof *want);
    size_t n = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, want_ids)
        want[n++] = (int32_t)v->valuedouble;
    char *dec = NULL;
    size_t dn = 0;
    cr_assert_eq(lc_tokenizer_decode(t, want, n, &dec, &dn, &err), 0, "%s: %s", name, err.msg);
    int dec_ok = dn == strlen(want_text) && memcmp(dec, want_text, dn) == 0;
    if ((!ok || !dec_ok) && (*logged)++ < 8) {
        char a[512], b[512];
        lc_test_print_ids(a, sizeof a, ids.v, ids.n);
        lc_test_print_ids(b, sizeof b, want, n);
        cr_log_error("%s [%s] \"%.60s\": ids %s| llama.cpp %s| decoded \"%.60s\" | llama.cpp "
                     "\"%.60s\"", name, sp ? "special" : "plain", text, a, b, dec, want_text);
    }
    free(dec);
    free(want);
    lc_ids_free(&ids);
    return ok && dec_ok;
}

/* Every case of gguf_spm/<name>: ids and text, with and without add_special. */
static void check_file(const char *name, int want_vocab)
{
    char *tmp = lc_test_tmpdir();
    char *path = unpack_gguf(tmp, name);
    cJSON *j = load_cases(name);
    lc_tokenizer *t;
    lc_error err;
    double t0 = now_s();
    cr_assert_eq(lc_gguf_tokenizer_load(&t, path, &err), 0, "%s", err.msg);
    double load_s = now_s() - t0;
    cr_expect_eq(lc_tokenizer_vocab_size(t), want_vocab);
    const cJSON *cases = cJSON_GetObjectItem(j, "cases"), *c;
    int total = 0, pass = 0, logged = 0;
    cJSON_ArrayForEach(c, cases) {
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        pass += check_one(t, name, text, false, cJSON_GetObjectItem(c, "ids"),
                          cJSON_GetObjectItem(c, "decoded")->valuestring, &logged);
        pass += check_one(t, name, text, true, cJSON_GetObjectItem(c, "ids_special"),
                          cJSON_GetObjectItem(c, "decoded_special")->valuestring, &logged);
        total += 2;
    }
    cr_assert_geq(total, 120, "%s: only %d checks", name, total);
    cr_expect_eq(pass, total, "%s: %d of %d encodings (ids and decoded text) equal llama.cpp's",
                 name, pass, total);
    cr_log_info("%s: %d/%d encodings equal llama.cpp's (ids and text); %d tokens loaded in "
                "%.3f s", name, pass, total, want_vocab, load_s);
    lc_tokenizer_free(t);
    cJSON_Delete(j);
    lc_test_rm_rf(tmp);
    free(path);
    free(tmp);
}

Test(gguf_spm, llama2_ranked_scores, .timeout = 120) { check_file("llama-spm-ranked", 32000); }
Test(gguf_spm, llama2_flat_scores, .timeout = 120) { check_file("llama-spm-flat", 10129); }
Test(gguf_spm, no_space_prefix_eos, .timeout = 120) { check_file("llama-spm-noprefix", 10129); }
Test(gguf_spm, phi3_added_tokens, .timeout = 120) { check_file("phi-3", 10140); }
Test(gguf_spm, phi3_named_rstrip, .timeout = 120) { check_file("phi-3-named", 10140); }

/* The 32000-token vocabulary loads in well under a second (the merges come
 * from the scores: every split of every token is looked up). */
Test(gguf_spm, load_time, .timeout = 120)
{
    char *tmp = lc_test_tmpdir();
    char *path = unpack_gguf(tmp, "llama-spm-ranked");
    double best = 1e9;
    for (int k = 0; k < 3; k++) {
        lc_tokenizer *t;
        lc_error err;
        double t0 = now_s();
        cr_assert_eq(lc_gguf_tokenizer_load(&t, path, &err), 0, "%s", err.msg);
        double dt = now_s() - t0;
        best = dt < best ? dt : best;
        lc_tokenizer_free(t);
    }
#if defined(__SANITIZE_ADDRESS__)
    const double limit = 5.0;
#else
    const double limit = 0.5;
#endif
    cr_expect_lt(best, limit, "32000-token SPM vocabulary loads in %.3f s", best);
    cr_log_info("32000-token SPM vocabulary: best of 3 loads %.3f s", best);
    lc_test_rm_rf(tmp);
    free(path);
    free(tmp);
}

/* A tiny "llama" vocabulary: tokens a, b, ab, ▁ and <0x00>..; bad says what to spoil. */
static char *tiny_gguf(const char *dir, const char *name, int bad)
{
    static const char *const toks[] = {"<unk>", "<s>", "a", "b", "ab", "\xe2\x96\x81"};
    size_t lens[6];
    for (int i = 0; i < 6; i++)
        lens[i] = strlen(toks[i]);
    int32_t types[6] = {2, 3, 1, 1, 1, 1};
    float scores[6] = {0, 0, -2, -3, -1, -4};
    if (bad == 1)
        scores[4] = 0.0f / 0.0f;
    lc_gguf_writer *w = lc_gguf_writer_new(32);
    lc_gguf_add_str(w, "tokenizer.ggml.model", "llama", 5);
    lc_gguf_add_arr_str(w, "tokenizer.ggml.tokens", toks, lens, 6);
    lc_gguf_add_arr_i32(w, "tokenizer.ggml.token_type", types, 6);
    if (bad != 2)
        lc_gguf_add_arr_f32(w, "tokenizer.ggml.scores", scores, bad == 3 ? 5 : 6);
    if (bad == 4)
        lc_gguf_add_u32(w, "tokenizer.ggml.add_space_prefix", 1);
    if (bad != 6) /* absent: llama.cpp's SPM default 1 */
        lc_gguf_add_u32(w, "tokenizer.ggml.bos_token_id", bad == 5 ? 99 : 1);
    char *path = lc_test_path_in(dir, name);
    FILE *f = fopen(path, "wb");
    lc_error err;
    cr_assert_eq(lc_gguf_write_header(w, f, &err), 0, "%s", err.msg);
    fclose(f);
    lc_gguf_writer_free(w);
    return path;
}

Test(gguf_spm, bad_vocabularies)
{
    char *tmp = lc_test_tmpdir();
    lc_tokenizer *t;
    lc_error err;
    for (int bad = 0; bad <= 6; bad += 6) { /* bos_token_id 1, or absent */
        char *ok = tiny_gguf(tmp, bad ? "nobos.gguf" : "ok.gguf", bad);
        cr_assert_eq(lc_gguf_tokenizer_load(&t, ok, &err), 0, "%s", err.msg);
        lc_ids ids = {0};
        cr_assert_eq(lc_tokenizer_encode(t, "ab", 2, true, &ids, &err), 0, "%s", err.msg);
        /* BOS, then "▁ab": ▁ and a and b; "ab" (-1) merges, ▁ stays (no "▁a" token) */
        cr_expect(ids.n == 3 && ids.v[0] == 1 && ids.v[1] == 5 && ids.v[2] == 4, "%s", ok);
        cr_expect_eq(lc_tokenizer_bos(t), 1);
        cr_expect_eq(lc_tokenizer_special(t, LC_SPECIAL_UNK), 0);
        lc_ids_free(&ids);
        lc_tokenizer_free(t);
        free(ok);
    }
    static const struct { int bad; const char *msg; } cases[] = {
        {1, "tokenizer.ggml.scores[4] is not a finite number"},
        {2, "tokenizer.ggml.scores"},
        {3, "tokenizer.ggml.scores has 5 entries for 6 tokens"},
        {4, "tokenizer.ggml.add_space_prefix is a"},
        {5, "tokenizer.ggml.bos_token_id is not a token id"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *name = lc_test_asprintf("bad%d.gguf", cases[i].bad);
        char *p = tiny_gguf(tmp, name, cases[i].bad);
        t = NULL;
        cr_expect_eq(lc_gguf_tokenizer_load(&t, p, &err), -1, "%s loaded", name);
        cr_expect_null(t);
        lc_test_assert_msg_has(&err, cases[i].msg);
        cr_expect(strstr(err.msg, p) != NULL, "no file name in: %s", err.msg);
        free(p), free(name);
    }
    lc_test_rm_rf(tmp);
    free(tmp);
}

/* A completion dataset over the Llama 2 GGUF file as base_model (its own
 * vocabulary: no tokenizer.json next to it): `lorac preprocess` writes rows of
 * llama.cpp's ids — BOS, the text's ids — and the EOS completion appends. */
Test(gguf_spm, text_dataset_over_gguf, .timeout = 120)
{
    char *tmp = lc_test_tmpdir();
    char *gguf = unpack_gguf(tmp, "llama-spm-ranked");
    cJSON *j = load_cases("llama-spm-ranked");
    const cJSON *c;
    size_t cap = 1 << 16, len = 0;
    char *rows = malloc(cap);
    cJSON *want = cJSON_CreateArray();
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "cases")) {
        const cJSON *ids = cJSON_GetObjectItem(c, "ids_special");
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        int n = cJSON_GetArraySize(ids);
        if (n < 3 || n > 200 || strstr(text, "</s>") || cJSON_GetArraySize(want) >= 40)
            continue; /* non-empty, one row each, not ending in EOS already */
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "text", text);
        char *line = cJSON_PrintUnformatted(o);
        size_t ln = strlen(line);
        cr_assert_lt(len + ln + 2, cap);
        memcpy(rows + len, line, ln);
        len += ln;
        rows[len++] = '\n';
        cJSON_AddItemToArray(want, cJSON_Duplicate(ids, 1));
        free(line);
        cJSON_Delete(o);
    }
    char *data = lc_test_write_file(tmp, "completion.jsonl", rows, len);
    char *out = lc_test_path_in(tmp, "rows.jsonl");
    char *base = lc_test_asprintf("base_model=%s", gguf);
    char *ds = lc_test_asprintf("datasets=[{path: %s, type: completion}]", data);
    const char *args[] = {"preprocess", LORAC_SOURCE_DIR "/configs/quickstart_chat.yaml",
                          "--set", base, "--set", ds, "--set", "test_datasets=null",
                          "--out", out, NULL};
    lc_test_run_result r = lc_test_run_lorac(NULL, args);
    cr_assert_eq(r.code, 0, "preprocess: exit %d:\n%s", r.code, r.err);
    char *got = lc_test_read_file(out, NULL);
    int n = 0, same = 0;
    const cJSON *w = want->child;
    for (char *l = got; l && *l && w; n++, w = w->next) {
        char *nl = strchr(l, '\n');
        cJSON *row = cJSON_ParseWithLength(l, nl ? (size_t)(nl - l) : strlen(l));
        cr_assert_not_null(row, "row %d is not JSON", n + 1);
        const cJSON *ids = cJSON_GetObjectItem(row, "input_ids");
        int k = cJSON_GetArraySize(w);
        int ok = cJSON_GetArraySize(ids) == k + 1 &&
                 cJSON_GetArrayItem(ids, k)->valueint == 2; /* </s> */
        for (int i = 0; ok && i < k; i++)
            ok = cJSON_GetArrayItem(ids, i)->valueint == cJSON_GetArrayItem(w, i)->valueint;
        same += ok;
        cJSON_Delete(row);
        l = nl ? nl + 1 : NULL;
    }
    cr_expect_eq(n, cJSON_GetArraySize(want), "%d rows for %d texts", n, cJSON_GetArraySize(want));
    cr_expect_eq(same, n, "%d of %d rows are llama.cpp's ids + EOS:\n%s", same, n, r.err);
    cr_log_info("preprocess over the SPM GGUF: %d/%d rows are llama.cpp's ids + EOS", same, n);
    lc_test_run_free(&r);
    free(got), free(ds), free(base), free(out), free(data), free(rows), free(gguf);
    cJSON_Delete(want);
    cJSON_Delete(j);
    lc_test_rm_rf(tmp);
    free(tmp);
}

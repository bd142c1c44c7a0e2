/* test_spm_model.c — data/spm_model.c, SentencePiece's tokenizer.model read
 * from untrusted bytes:
 *
 * - the fixture model (tests/fixtures/tokenizers/spm-bpe, made by
 *   scripts/make_spm_fixtures.py) read as SentencePiece itself reads it
 *   (model_info.json: every piece's text, score and type from
 *   SentencePieceProcessor; model type, byte_fallback, normalizer flags);
 * - hostile models, built with lorac's protobuf writer (train/protobuf.c):
 *   every truncation of the real file, lengths past the end and near 2^64,
 *   overlong varints, group / reserved wire types, field number 0, a known
 *   field with the wrong wire type, empty / NUL / non-UTF-8 / duplicate
 *   pieces, BYTE pieces not <0xXX>, unknown piece types, no or two UNKNOWN
 *   pieces, WORD and CHAR model types: each
 *   refused with one line naming the file, never a crash;
 * - export-gguf's reading of the added tokens next to it (added_tokens.json,
 *   added_tokens_decoder) refuses ids that are not non-negative integers.
 * (That lorac's GGUF keys from it equal the converter's is in
 * test_gguf_export.c.) */
#include <criterion/criterion.h>

#include <cjson/cJSON.h>
#include <string.h>

#include "data/gguf.h"
#include "data/spm_model.h"
#include "helpers.h"
#include "train/gguf_vocab.h"
#include "train/protobuf.h"

static void one_line(const lc_error *err, const char *label)
{
    cr_assert(err->msg[0], "%s: no message", label);
    cr_assert_null(strchr(err->msg, '\n'), "%s: message has a newline: %s", label, err->msg);
}

Test(spm_model, fixture_reads_as_sentencepiece)
{
    lc_spm_model m;
    lc_error err = {{0}};
    cr_assert_eq(lc_spm_load(&m, lc_test_fixture("tokenizers/spm-bpe/tokenizer.model"), &err), 0,
                 "%s", err.msg);
    size_t len;
    char *text = lc_test_read_file(lc_test_fixture("tokenizers/spm-bpe/model_info.json"), &len);
    cJSON *info = cJSON_ParseWithLength(text, len);
    cr_assert(info);
    cr_assert_eq(m.n, (size_t)cJSON_GetObjectItem(info, "n")->valuedouble);
    cr_assert_eq(m.model_type, cJSON_GetObjectItem(info, "model_type")->valueint);
    cr_assert_eq(m.model_type, LC_SPM_BPE);
    cr_assert_eq(m.byte_fallback, cJSON_IsTrue(cJSON_GetObjectItem(info, "byte_fallback")));
    cr_assert_eq(m.add_dummy_prefix, cJSON_IsTrue(cJSON_GetObjectItem(info, "add_dummy_prefix")));
    cr_assert_eq(m.remove_extra_whitespaces,
                 cJSON_IsTrue(cJSON_GetObjectItem(info, "remove_extra_whitespaces")));
    cr_assert_eq(m.escape_whitespaces,
                 cJSON_IsTrue(cJSON_GetObjectItem(info, "escape_whitespaces")));
    int counts[7] = {0};
    size_t i = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(info, "pieces")) {
        cr_assert_lt(i, m.n);
        cr_assert_str_eq(m.pieces[i].text, cJSON_GetArrayItem(p, 0)->valuestring, "piece %zu", i);
        /* SentencePiece's score is a float32: the JSON holds it exactly */
        cr_assert_eq(m.pieces[i].score, (float)cJSON_GetArrayItem(p, 1)->valuedouble,
                     "piece %zu score %.9g", i, (double)m.pieces[i].score);
        cr_assert_eq(m.pieces[i].type, cJSON_GetArrayItem(p, 2)->valueint, "piece %zu type", i);
        counts[m.pieces[i].type]++;
        i++;
    }
    cr_assert_eq(i, m.n);
    /* every type the fixture was made to hold */
    cr_assert_eq(counts[LC_SPM_UNKNOWN], 1);
    cr_assert_eq(counts[LC_SPM_CONTROL], 3);
    cr_assert_eq(counts[LC_SPM_USER_DEFINED], 3);
    cr_assert_eq(counts[LC_SPM_UNUSED], 1);
    cr_assert_eq(counts[LC_SPM_BYTE], 256);
    cJSON_Delete(info);
    free(text);
    lc_spm_free(&m);
}

/* ---- hostile models ---- */

typedef struct piece_spec {
    const char *text;
    size_t len;
    int type; /* 0: field left out (NORMAL) */
} piece_spec;

/* A ModelProto with the given pieces (and trainer model_type when > 0). */
static lc_pb build(const piece_spec *ps, int n, int model_type)
{
    lc_pb b = {0};
    for (int i = 0; i < n; i++) {
        lc_pb p = {0};
        lc_pb_bytes(&p, 1, ps[i].text, ps[i].len);
        lc_pb_float(&p, 2, -(float)i);
        if (ps[i].type)
            lc_pb_int(&p, 3, ps[i].type);
        lc_pb_message(&b, 1, &p);
        lc_pb_free(&p);
    }
    lc_pb t = {0}, nz = {0};
    if (model_type > 0)
        lc_pb_int(&t, 3, model_type);
    lc_pb_int(&t, 35, 1);
    lc_pb_message(&b, 2, &t);
    lc_pb_string(&nz, 1, "identity");
    lc_pb_int(&nz, 3, 0);
    lc_pb_message(&b, 3, &nz);
    lc_pb_free(&t);
    lc_pb_free(&nz);
    cr_assert(!b.oom);
    return b;
}

static const piece_spec good[] = {
    {"<unk>", 5, 2}, {"<s>", 3, 3}, {"\xe2\x96\x81the", 6, 0}, {"<0x41>", 6, 6}};

/* lc_spm_parse refuses buf with a one-line message containing want. */
static void refused(const void *buf, size_t n, const char *want, const char *label)
{
    lc_spm_model m;
    lc_error err = {{0}};
    cr_assert_neq(lc_spm_parse(&m, buf, n, "hostile.model", &err), 0, "%s: accepted", label);
    one_line(&err, label);
    cr_assert(strstr(err.msg, "hostile.model"), "%s: %s", label, err.msg);
    cr_assert(strstr(err.msg, want), "%s: '%s' lacks '%s'", label, err.msg, want);
    cr_assert_eq(m.n, 0);
    cr_assert_null(m.pieces);
}

Test(spm_model, small_valid_model)
{
    lc_pb b = build(good, 4, 2);
    lc_spm_model m;
    lc_error err = {{0}};
    cr_assert_eq(lc_spm_parse(&m, b.p, b.len, "ok.model", &err), 0, "%s", err.msg);
    cr_assert_eq(m.n, 4);
    cr_assert_str_eq(m.pieces[2].text, "\xe2\x96\x81the");
    cr_assert_eq(m.pieces[2].type, LC_SPM_NORMAL);
    cr_assert_eq(m.pieces[3].type, LC_SPM_BYTE);
    cr_assert_eq(m.pieces[1].score, -1.0f);
    cr_assert_eq(m.model_type, LC_SPM_BPE);
    cr_assert(m.byte_fallback);
    cr_assert(!m.add_dummy_prefix);
    cr_assert(m.remove_extra_whitespaces); /* defaults when absent */
    lc_spm_free(&m);
    lc_pb_free(&b);
    /* model_type absent: UNIGRAM, accepted */
    b = build(good, 4, 0);
    cr_assert_eq(lc_spm_parse(&m, b.p, b.len, "ok.model", &err), 0, "%s", err.msg);
    cr_assert_eq(m.model_type, LC_SPM_UNIGRAM);
    lc_spm_free(&m);
    lc_pb_free(&b);
}

Test(spm_model, every_truncation_of_the_fixture)
{
    size_t n;
    char *buf = lc_test_read_file(lc_test_fixture("tokenizers/spm-bpe/tokenizer.model"), &n);
    size_t ok = 0, bad = 0;
    for (size_t len = 0; len < n; len++) {
        lc_spm_model m;
        lc_error err = {{0}};
        if (lc_spm_parse(&m, buf, len, "cut.model", &err) == 0) {
            ok++; /* a cut at a field boundary is a shorter model */
            cr_assert_gt(m.n, 0);
            lc_spm_free(&m);
        } else {
            bad++;
            one_line(&err, "truncation");
        }
    }
    cr_assert_gt(bad, n / 2, "%zu of %zu truncations refused", bad, n);
    (void)ok;
    free(buf);
}

Test(spm_model, hostile_wire_format)
{
    /* a piece whose length runs past the end */
    uint8_t past[] = {0x0A, 0x20, 0x0A, 0x01, 'a'};
    refused(past, sizeof past, "past the end", "length past end");
    /* a length near 2^64 */
    uint8_t huge[] = {0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x00};
    refused(huge, sizeof huge, "past the end", "huge length");
    /* an 11-byte varint, and a 10-byte one with bits past 64 */
    uint8_t longv[] = {0x10, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01};
    refused(longv, sizeof longv, "overlong", "11-byte varint");
    uint8_t over[] = {0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02};
    refused(over, sizeof over, "overlong", "varint past 64 bits");
    /* a cut-off key */
    uint8_t cutkey[] = {0x80};
    refused(cutkey, sizeof cutkey, "cut off", "cut key");
    /* wire types 3, 4 (groups), 6, 7 */
    for (int w = 3; w <= 7; w++) {
        if (w == 5)
            continue;
        uint8_t g[] = {(uint8_t)(0x20 | w), 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
        refused(g, sizeof g, "wire type", "bad wire type");
    }
    /* field number 0 */
    uint8_t zero[] = {0x00, 0x01};
    refused(zero, sizeof zero, "field number", "field 0");
    /* pieces as a varint; a score as a varint */
    uint8_t pv[] = {0x08, 0x01};
    refused(pv, sizeof pv, "wire type 0", "pieces varint");
    uint8_t sv[] = {0x0A, 0x05, 0x0A, 0x01, 'a', 0x10, 0x01};
    refused(sv, sizeof sv, "wire type 0", "score varint");
    /* a cut-off fixed32 score inside a piece */
    uint8_t cf[] = {0x0A, 0x05, 0x0A, 0x01, 'a', 0x15, 0x00};
    refused(cf, sizeof cf, "cut off", "cut float");
    /* empty input: no pieces */
    refused("", 0, "without pieces", "empty");
}

Test(spm_model, hostile_pieces)
{
    piece_spec ps[4];
    memcpy(ps, good, sizeof ps);
    lc_pb b;
#define REFUSE(want, label)                    \
    do {                                       \
        b = build(ps, 4, 2);                   \
        refused(b.p, b.len, want, label);      \
        lc_pb_free(&b);                        \
        memcpy(ps, good, sizeof ps);           \
    } while (0)
    ps[2] = (piece_spec){"", 0, 0};
    REFUSE("is empty", "empty piece");
    ps[2] = (piece_spec){"a\0b", 3, 0};
    REFUSE("NUL", "NUL piece");
    ps[2] = (piece_spec){"\xff\xfe", 2, 0};
    REFUSE("UTF-8", "bad UTF-8");
    ps[2] = (piece_spec){"x", 1, 9};
    REFUSE("type 9", "type 9");
    ps[2] = (piece_spec){"x", 1, -1};
    REFUSE("type -1", "type -1");
    ps[0] = (piece_spec){"x", 1, 0};
    REFUSE("UNKNOWN", "no unk");
    ps[2] = (piece_spec){"<unk2>", 6, 2};
    REFUSE("UNKNOWN", "two unks");
    ps[2] = (piece_spec){"<s>", 3, 0};
    REFUSE("pieces 1 and 2 have the same text", "duplicate");
    ps[2] = (piece_spec){"<0x4g>", 6, 6};
    REFUSE("BYTE", "bad byte piece");
    ps[2] = (piece_spec){"A", 1, 6};
    REFUSE("BYTE", "short byte piece");
#undef REFUSE
    b = build(good, 4, 3);
    refused(b.p, b.len, "WORD", "word model");
    lc_pb_free(&b);
    b = build(good, 4, 4);
    refused(b.p, b.len, "CHAR", "char model");
    lc_pb_free(&b);
    b = build(good, 4, 77);
    refused(b.p, b.len, "model type 77", "unknown model type");
    lc_pb_free(&b);
}

/* ---- export-gguf's added tokens next to a tokenizer.model ---- */

static void export_refused(const char *file, const char *text, const char *want)
{
    char *dir = lc_test_tmpdir();
    lc_pb b = build(good, 4, 2);
    free(lc_test_write_file(dir, "tokenizer.model", b.p, b.len));
    lc_pb_free(&b);
    free(lc_test_write_text(dir, file, text));
    lc_model_config mc = {0};
    mc.arch = LC_ARCH_LLAMA;
    mc.vocab_size = 4;
    lc_gguf_writer *w = lc_gguf_writer_new(32);
    lc_error err = {{0}};
    cr_assert_neq(lc_gguf_vocab_add(w, dir, &mc, &err), 0, "%s accepted", text);
    one_line(&err, text);
    cr_assert(strstr(err.msg, file), "%s", err.msg);
    cr_assert(strstr(err.msg, want), "'%s' lacks '%s'", err.msg, want);
    lc_gguf_writer_free(w);
    lc_test_rm_rf(dir);
    free(dir);
}

Test(spm_model, hostile_added_tokens)
{
    export_refused("added_tokens.json", "{\"<x>\": -1}", "not a non-negative integer");
    export_refused("added_tokens.json", "{\"<x>\": 1.5}", "not a non-negative integer");
    export_refused("added_tokens.json", "{\"<x>\": \"3\"}", "no numeric id");
    export_refused("added_tokens.json", "{\"a\\nb\": -2}", "a?b");
    export_refused("tokenizer_config.json",
                   "{\"added_tokens_decoder\": {\"-1\": {\"content\": \"<x>\"}}}", "decimal id");
    export_refused("tokenizer_config.json",
                   "{\"added_tokens_decoder\": {\"1e3\": {\"content\": \"<x>\"}}}", "decimal id");
    export_refused("tokenizer_config.json",
                   "{\"added_tokens_decoder\": {\"3\": {\"special\": true}}}", "content");
    export_refused("tokenizer_config.json",
                   "{\"added_tokens_decoder\": {\"99999999999\": {\"content\": \"x\"}}}",
                   "decimal id");
}

Test(spm_model, export_without_tokenizer_json)
{
    /* tokenizer.model alone (+ config ids) is enough, as for the converter;
     * ids past the pieces are [PADn], added tokens past vocab_size skipped */
    char *dir = lc_test_tmpdir();
    lc_pb b = build(good, 4, 2);
    free(lc_test_write_file(dir, "tokenizer.model", b.p, b.len));
    lc_pb_free(&b);
    free(lc_test_write_text(dir, "added_tokens.json", "{\"<a>\": 4, \"<far>\": 9}"));
    lc_model_config mc = {0};
    mc.arch = LC_ARCH_LLAMA;
    mc.vocab_size = 6;
    lc_gguf_writer *w = lc_gguf_writer_new(32);
    lc_error err = {{0}};
    cr_assert_eq(lc_gguf_vocab_add(w, dir, &mc, &err), 0, "%s", err.msg);
    char *out = lc_test_path_in(dir, "v.gguf");
    FILE *f = fopen(out, "wb");
    cr_assert_eq(lc_gguf_write_header(w, f, &err), 0, "%s", err.msg);
    fclose(f);
    lc_gguf_file g;
    cr_assert_eq(lc_gguf_open(&g, out, &err), 0, "%s", err.msg);
    const lc_gguf_kv *tok, *ty, *sc;
    cr_assert_eq(lc_gguf_get_arr(&g, "tokenizer.ggml.tokens", LC_GGUF_STRING, &tok, &err), 0);
    cr_assert_eq(lc_gguf_get_arr(&g, "tokenizer.ggml.token_type", LC_GGUF_I32, &ty, &err), 0);
    cr_assert_eq(lc_gguf_get_arr(&g, "tokenizer.ggml.scores", LC_GGUF_F32, &sc, &err), 0);
    cr_assert_eq(tok->n, 6);
    static const char *want[] = {"<unk>", "<s>", "\xe2\x96\x81the", "<0x41>", "<a>", "[PAD5]"};
    static const int types[] = {2, 3, 1, 6, 4, 5};
    static const float scores[] = {0, -1, -2, -3, -1000, -10000};
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(tok->strs[i].len, strlen(want[i]));
        cr_assert(!memcmp(tok->strs[i].ptr, want[i], strlen(want[i])), "token %d", i);
        cr_assert_eq(lc_gguf_kv_int(ty, i), types[i], "type %d", i);
        cr_assert_eq((float)lc_gguf_kv_float(sc, i), scores[i], "score %d", i);
    }
    lc_gguf_close(&g);
    lc_gguf_writer_free(w);
    free(out);
    lc_test_rm_rf(dir);
    free(dir);
}

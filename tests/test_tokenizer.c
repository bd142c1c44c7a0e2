/* test_tokenizer.c — data/tokenizer.c against Hugging Face `tokenizers`:
 * for the Llama 3, Qwen2, Llama 2 and Phi-3 fixtures (tokenizers/<name>/,
 * made by scripts/make_tokenizer_fixtures.py) every llama.cpp reference case
 * and every hard case of our own gives HF's ids, with and without the
 * special tokens, and decodes to HF's text; long inputs stay fast; hostile
 * tokenizer.json files and inputs are refused with one clear line, and so
 * are bad rows of `lorac tokenize` input (data/text_jsonl.c), by file and line. */
#include <criterion/criterion.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "autograd/hash.h"
#include "data/bpe_queue.h"
#include "data/text_jsonl.h"
#include "data/tokenizer.h"
#include "helpers.h"
#include "tokenizer_fixture.h"

static lc_tokenizer *load_fixture(const char *name)
{
    char *dir = lc_test_tokenizer_dir(name);
    lc_tokenizer *t;
    lc_error err;
    cr_assert_eq(lc_tokenizer_load(&t, dir, &err), 0, "%s: %s", name, err.msg);
    lc_test_rm_rf(dir);
    free(dir);
    return t;
}

/* The fixture's tokenizer.json with the top-level keys of
 * tokenizers/<name>/variant-<variant>.json put in place of its own. */
static lc_tokenizer *load_variant(const char *name, const char *variant)
{
    char *rel = lc_test_asprintf("tokenizers/%s/tokenizer.json.gz", name);
    const char *argv[] = {"gzip", "-dc", lc_test_fixture(rel), NULL};
    lc_test_run_result r = lc_test_run(NULL, argv);
    cr_assert_eq(r.code, 0);
    cJSON *root = cJSON_Parse(r.out);
    lc_test_run_free(&r);
    free(rel);
    rel = lc_test_asprintf("tokenizers/%s/variant-%s.json", name, variant);
    char *text = lc_test_read_file(lc_test_fixture(rel), NULL);
    cJSON *patch = cJSON_Parse(text);
    cr_assert(root && patch);
    for (cJSON *k = patch->child; k; k = k->next)
        cJSON_ReplaceItemInObjectCaseSensitive(root, k->string, cJSON_Duplicate(k, 1));
    char *json = cJSON_PrintUnformatted(root);
    lc_tokenizer *t;
    lc_error err;
    cr_assert_eq(lc_tokenizer_from_json(&t, json, strlen(json), NULL, 0, rel, &err), 0, "%s", err.msg);
    free(json);
    cJSON_Delete(root);
    cJSON_Delete(patch);
    free(text);
    free(rel);
    return t;
}

/* encode_spans gives encode's ids, and byte ranges that run through the text in
 * order without overlap; a case whose text normalization leaves alone is covered
 * by its ranges up to the spaces the tokenizer drops or adds. */
static int spans_ok(lc_tokenizer *t, const char *s, const lc_ids *want)
{
    lc_ids ids = {0}, st = {0}, en = {0};
    lc_error err;
    size_t n = strlen(s);
    cr_assert_eq(lc_tokenizer_encode_spans(t, s, n, true, &ids, &st, &en, &err), 0, "%s", err.msg);
    int ok = ids.n == want->n && st.n == ids.n && en.n == ids.n &&
             (ids.n == 0 || memcmp(ids.v, want->v, ids.n * sizeof *ids.v) == 0);
    size_t covered = 0;
    for (size_t k = 0; ok && k < ids.n; k++) {
        ok = st.v[k] <= en.v[k] && (size_t)en.v[k] <= n && (k == 0 || st.v[k] >= en.v[k - 1]);
        covered += (size_t)(en.v[k] - st.v[k]);
    }
    size_t spaces = 0;
    for (size_t i = 0; i < n; i++)
        spaces += s[i] == ' ';
    if (ok && covered + spaces < n)
        ok = 0;
    lc_ids_free(&ids);
    lc_ids_free(&st);
    lc_ids_free(&en);
    return ok;
}

/* Checks every case of tokenizers/<name>/cases.jsonl (variant NULL) or
 * cases-<variant>.jsonl; counts per source. */
static void check_cases(const char *name, const char *variant, int want_ref)
{
    lc_tokenizer *t = variant ? load_variant(name, variant) : load_fixture(name);
    char *rel = variant ? lc_test_asprintf("tokenizers/%s/cases-%s.jsonl", name, variant)
                        : lc_test_asprintf("tokenizers/%s/cases.jsonl", name);
    FILE *f = fopen(lc_test_fixture(rel), "r");
    cr_assert_not_null(f, "%s", rel);
    char *line = NULL;
    size_t cap = 0;
    int n_ref = 0, n_hard = 0, n_random = 0, bad = 0;
    lc_error err;
    while (getline(&line, &cap, f) > 0) {
        cJSON *row = cJSON_Parse(line);
        cr_assert_not_null(row);
        const cJSON *text = cJSON_GetObjectItem(row, "text");
        const char *src = cJSON_GetObjectItem(row, "source")->valuestring;
        const char *s = text->valuestring;
        lc_ids ids = {0}, ids_sp = {0};
        cr_assert_eq(lc_tokenizer_encode(t, s, strlen(s), false, &ids, &err), 0, "%s", err.msg);
        cr_assert_eq(lc_tokenizer_encode(t, s, strlen(s), true, &ids_sp, &err), 0, "%s", err.msg);
        char *dec;
        size_t dn;
        cr_assert_eq(lc_tokenizer_decode(t, ids.v, ids.n, &dec, &dn, &err), 0, "%s", err.msg);
        int ok = lc_test_ids_equal(&ids, cJSON_GetObjectItem(row, "ids")) &&
                 lc_test_ids_equal(&ids_sp, cJSON_GetObjectItem(row, "ids_special"));
        if (ok && !spans_ok(t, s, &ids_sp)) {
            cr_log_error("%s: spans of %s are wrong", name, cJSON_PrintUnformatted(text));
            ok = 0;
        }
        const char *want_dec = cJSON_GetObjectItem(row, "decoded")->valuestring;
        int dec_ok = dn == strlen(want_dec) && memcmp(dec, want_dec, dn) == 0;
        if (!ok || !dec_ok) {
            char got[2048], *want = cJSON_PrintUnformatted(cJSON_GetObjectItem(row, "ids"));
            lc_test_print_ids(got, sizeof got, ids.v, ids.n);
            cr_log_error("%s: %s case %s\n  want %s\n  got  %s\n  decoded %s: \"%s\"", name, src,
                         cJSON_PrintUnformatted(text), want, got, dec_ok ? "ok" : "DIFFERS", dec);
            free(want);
            bad++;
        } else if (strcmp(src, "ref") == 0) {
            n_ref++;
        } else if (strcmp(src, "random") == 0) {
            n_random++;
        } else {
            n_hard++;
        }
        free(dec);
        lc_ids_free(&ids);
        lc_ids_free(&ids_sp);
        cJSON_Delete(row);
    }
    free(line);
    fclose(f);
    free(rel);
    lc_tokenizer_free(t);
    cr_log_info("%s%s%s: %d reference, %d hard and %d random cases match HF", name,
                variant ? " " : "", variant ? variant : "", n_ref, n_hard, n_random);
    cr_assert_eq(bad, 0, "%s: %d cases differ from HF", name, bad);
    cr_assert_eq(n_ref, want_ref, "%s: %d reference cases", name, n_ref);
    cr_assert_gt(n_hard, 20);
    cr_assert_eq(n_random, 150);
}

Test(tokenizer, llama3_matches_hf, .timeout = 120) { check_cases("llama-bpe", NULL, 46); }
Test(tokenizer, qwen2_matches_hf, .timeout = 120) { check_cases("qwen2", NULL, 46); }
Test(tokenizer, llama2_matches_hf, .timeout = 120) { check_cases("llama-spm", NULL, 46); }
Test(tokenizer, phi3_matches_hf, .timeout = 120) { check_cases("phi-3", NULL, 46); }

/* Constructs of other families on the same vocabularies (see the script). */
Test(tokenizer, variants_match_hf, .timeout = 240)
{
    check_cases("llama-spm", "metaspace", 46);
    check_cases("llama-spm", "metaspace-split", 46);
    check_cases("qwen2", "gpt2-bytelevel", 46);
    check_cases("qwen2", "prefix-space", 46);
    check_cases("qwen2", "added-flags", 46);
}

/* Long words (scripts/make_tokenizer_long_cases.py): thousands of symbols
 * with nowhere to split, so the split into pieces and the merge queue's
 * sorted runs (data/bpe_queue.h) are what decides the ids. */
Test(tokenizer, long_words_match_hf, .timeout = 120)
{
    const char *names[] = {"llama-spm", "llama-bpe", "qwen2", "phi-3"};
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        lc_tokenizer *t = load_fixture(names[k]);
        char *rel = lc_test_asprintf("tokenizers/%s/cases-long.jsonl", names[k]);
        FILE *f = fopen(lc_test_fixture(rel), "r");
        cr_assert_not_null(f, "%s", rel);
        char *line = NULL;
        size_t cap = 0;
        int n = 0;
        while (getline(&line, &cap, f) > 0) {
            cJSON *row = cJSON_Parse(line);
            cr_assert_not_null(row);
            const char *s = cJSON_GetObjectItem(row, "text")->valuestring;
            const cJSON *want = cJSON_GetObjectItem(row, "ids");
            lc_ids ids = {0};
            lc_error err;
            cr_assert_eq(lc_tokenizer_encode(t, s, strlen(s), false, &ids, &err), 0, "%s", err.msg);
            int first_bad = -1;
            for (int i = 0; first_bad < 0 && i < cJSON_GetArraySize(want); i++)
                if ((size_t)i >= ids.n || ids.v[i] != cJSON_GetArrayItem(want, i)->valueint)
                    first_bad = i;
            cr_assert(first_bad < 0 && ids.n == (size_t)cJSON_GetArraySize(want),
                      "%s, %s text: %zu ids, HF %d; first difference at id %d", names[k],
                      cJSON_GetObjectItem(row, "kind")->valuestring, ids.n,
                      cJSON_GetArraySize(want), first_bad);
            lc_ids_free(&ids);
            cJSON_Delete(row);
            n++;
        }
        cr_assert_eq(n, 8, "%s: %d long texts", rel, n);
        free(line);
        fclose(f);
        free(rel);
        lc_tokenizer_free(t);
    }
}

/* The merge queue against a linear scan: random (rank, position) pairs pushed
 * and popped in random turns, past the insertion heap into many runs; every
 * pop must be the smallest pair still in. Keys are distinct, so the order
 * is fully determined. */
static int pair_cmp(const void *a, const void *c)
{
    const lc_bpe_pair *x = a, *y = c;
    return x->rank != y->rank ? (x->rank > y->rank) - (x->rank < y->rank)
                              : (x->pos > y->pos) - (x->pos < y->pos);
}

Test(tokenizer, merge_queue_pops_in_order)
{
    lc_bpe_queue q = {0};
    lc_error err;
    uint64_t rng = 7;
    for (int trial = 0; trial < 6; trial++) {
        /* trials 0-2: never past the insertion heap; 3-5: 16 heaps' worth */
        size_t max = trial < 3 ? (size_t)(LC_BPE_QUEUE_INSERT / 3) : (size_t)16 * LC_BPE_QUEUE_INSERT;
        cr_assert_eq(lc_bpe_queue_reset(&q, max, &err), 0, "%s", err.msg);
        lc_bpe_pair *in = malloc(max * sizeof *in); /* what the queue holds, unsorted */
        size_t n_in = 0, pushed = 0, popped = 0;
        uint64_t ranks = trial % 3 == 0 ? 3 : trial % 3 == 1 ? 50 : 100000; /* 3: long equal-rank runs */
        while (pushed < max || n_in > 0) {
            /* the first half all pushes (runs pile up), then pushes and pops at random */
            int push = pushed < max && (pushed < max / 2 || n_in == 0 || lc_rng_next(&rng) % 2);
            if (push) {
                lc_bpe_pair p = {(int32_t)(lc_rng_next(&rng) % ranks), (int32_t)pushed,
                                 (int32_t)(lc_rng_next(&rng) % 1000)};
                if (trial % 2 == 0) /* else positions going up, as a merge pass pushes them */
                    p.pos += (int32_t)(lc_rng_next(&rng) % 30000) * 65536; /* distinct: low part */
                in[n_in++] = p;
                lc_bpe_queue_push(&q, p);
                pushed++;
                continue;
            }
            lc_bpe_pair got;
            cr_assert_eq(lc_bpe_queue_pop(&q, &got), 1);
            size_t best = 0;
            for (size_t i = 1; i < n_in; i++)
                if (pair_cmp(&in[i], &in[best]) < 0)
                    best = i;
            cr_assert(got.rank == in[best].rank && got.pos == in[best].pos &&
                          got.new_id == in[best].new_id,
                      "trial %d, pop %zu: got (%d, %d), want (%d, %d)", trial, popped, got.rank,
                      got.pos, in[best].rank, in[best].pos);
            in[best] = in[--n_in];
            popped++;
        }
        lc_bpe_pair none;
        cr_assert_eq(lc_bpe_queue_pop(&q, &none), 0);
        cr_assert_eq(popped, max);
        free(in);
    }
    lc_bpe_queue_free(&q);
}

Test(tokenizer, config_bos_eos)
{
    lc_tokenizer *t = load_fixture("llama-bpe");
    cr_assert_eq(lc_tokenizer_bos(t), 128000);
    cr_assert_eq(lc_tokenizer_eos(t), 128001);
    cr_assert_eq(lc_tokenizer_vocab_size(t), 128256);
    cr_assert_eq(lc_tokenizer_token_id(t, "<|eot_id|>"), 128009);
    cr_assert_eq(lc_tokenizer_add_bos(t), -1); /* Llama 3 files have no add_bos_token */
    lc_tokenizer_free(t);
    t = load_fixture("llama-spm");
    cr_assert_eq(lc_tokenizer_add_bos(t), 1);
    cr_assert_eq(lc_tokenizer_add_eos(t), 0);
    cr_assert_eq(lc_tokenizer_bos(t), 1);
    lc_tokenizer_free(t);
    t = load_fixture("qwen2");
    cr_assert_eq(lc_tokenizer_bos(t), -1);
    cr_assert_eq(lc_tokenizer_eos(t), 151643);
    lc_tokenizer_free(t);
}

/* CPU time of this process: other load on the machine does not count. */
static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Time to encode n bytes of a repeated pattern. For Llama 2, which has no
 * pre-tokenizer, the text is one BPE word: most patterns split into small
 * pieces, but 'a' and ' ' repeated stay one piece of n symbols, whose merge
 * queue holds millions of pairs (data/bpe_queue.h). */
static double encode_time(lc_tokenizer *t, const char *pat, size_t n, size_t *n_ids)
{
    size_t pl = strlen(pat);
    n -= n % pl; /* whole characters only */
    char *s = malloc(n);
    for (size_t i = 0; i < n; i++)
        s[i] = pat[i % pl];
    lc_ids ids = {0};
    lc_error err;
    double t0 = seconds();
    cr_assert_eq(lc_tokenizer_encode(t, s, n, false, &ids, &err), 0, "%s", err.msg);
    double dt = seconds() - t0;
    *n_ids = ids.n;
    lc_ids_free(&ids);
    free(s);
    return dt;
}

Test(tokenizer, long_inputs_near_linear, .timeout = 120)
{
    const char *names[] = {"llama-spm", "llama-bpe"};
    const char *pats[] = {"ab cd ", "a", " ", "hello world, 12345 ", "\xe6\x97\xa5\xe6\x9c\xac"};
    for (int k = 0; k < 2; k++) {
        lc_tokenizer *t = load_fixture(names[k]);
        for (size_t p = 0; p < sizeof pats / sizeof *pats; p++) {
            size_t n1, n2;
            double t1 = encode_time(t, pats[p], 1 << 17, &n1);
            double t2 = encode_time(t, pats[p], 1 << 20, &n2);
            for (int again = 0; again < 2 && t2 >= 20 * t1 + 0.05; again++) { /* best of 3 */
                double u1 = encode_time(t, pats[p], 1 << 17, &n1);
                double u2 = encode_time(t, pats[p], 1 << 20, &n2);
                t1 = u1 < t1 ? u1 : t1;
                t2 = u2 < t2 ? u2 : t2;
            }
            cr_assert_gt(n2, 0);
            /* 8x the text: at most ~8 log-factor times the CPU time (quadratic would be 64x) */
            cr_assert_lt(t2, 20 * t1 + 0.05, "%s '%s': %.3f s for 128 KiB, %.3f s for 1 MiB",
                         names[k], pats[p], t1, t2);
        }
        lc_tokenizer_free(t);
    }
}

Test(tokenizer, invalid_utf8_and_bad_ids)
{
    lc_tokenizer *t = load_fixture("llama-spm");
    lc_ids ids = {0};
    lc_error err;
    const char *bad[] = {"ab\xff", "\xc3", "\xed\xa0\x80 surrogate", "\xf4\x90\x80\x80"};
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq(lc_tokenizer_encode(t, bad[i], strlen(bad[i]), false, &ids, &err), -1);
        lc_test_assert_msg_has(&err, "not valid UTF-8");
    }
    int32_t oob[] = {1, 99999999};
    char *s;
    size_t n;
    cr_assert_eq(lc_tokenizer_decode(t, oob, 2, &s, &n, &err), -1);
    lc_test_assert_msg_has(&err, "id 99999999 (position 1)");
    lc_ids_free(&ids);
    lc_tokenizer_free(t);
}

/* ---- hostile tokenizer.json files ------------------------------------------ */
#define GOOD_MODEL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\"]}"

static void refused(const char *json, const char *sub)
{
    lc_tokenizer *t = NULL;
    lc_error err;
    cr_assert_eq(lc_tokenizer_from_json(&t, json, strlen(json), NULL, 0, "x/tokenizer.json", &err), -1,
                 "accepted: %s", json);
    cr_assert_null(t);
    lc_test_assert_msg_has(&err, sub);
    cr_assert_null(strchr(err.msg, '\n'), "message on more than one line: %s", err.msg);
}

Test(tokenizer, tiny_file_works)
{
    const char *json = "{" GOOD_MODEL "}";
    lc_tokenizer *t;
    lc_error err;
    cr_assert_eq(lc_tokenizer_from_json(&t, json, strlen(json), NULL, 0, "x", &err), 0, "%s", err.msg);
    lc_ids ids = {0};
    cr_assert_eq(lc_tokenizer_encode(t, "abba", 4, true, &ids, &err), 0, "%s", err.msg);
    cr_assert_eq(ids.n, 3);
    cr_assert(ids.v[0] == 2 && ids.v[1] == 1 && ids.v[2] == 0);
    char *s;
    size_t n;
    cr_assert_eq(lc_tokenizer_decode(t, ids.v, ids.n, &s, &n, &err), 0);
    cr_assert_str_eq(s, "ab b a"); /* no decoder: HF joins with spaces */
    free(s);
    lc_ids_free(&ids);
    lc_tokenizer_free(t);

    /* added tokens take HF's ids, not the file's: vocabulary id, else
     * numbered on from the vocabulary size */
    json = "{" GOOD_MODEL ",\"added_tokens\":[{\"id\":0,\"content\":\"zz\"},"
           "{\"id\":9,\"content\":\"ab\",\"special\":true},{\"id\":1,\"content\":\"yy\"}]}";
    cr_assert_eq(lc_tokenizer_from_json(&t, json, strlen(json), NULL, 0, "x", &err), 0, "%s", err.msg);
    cr_assert_eq(lc_tokenizer_token_id(t, "zz"), 3);
    cr_assert_eq(lc_tokenizer_token_id(t, "ab"), 2);
    cr_assert_eq(lc_tokenizer_token_id(t, "yy"), 4);
    cr_assert_eq(lc_tokenizer_vocab_size(t), 5);

    ids.n = 0;
    cr_assert_eq(lc_tokenizer_encode(t, "azzyyab", 7, false, &ids, &err), 0, "%s", err.msg);
    cr_assert(ids.n == 4 && ids.v[0] == 0 && ids.v[1] == 3 && ids.v[2] == 4 && ids.v[3] == 2);
    lc_tokenizer_free(t);

    /* a model without merges (found by fuzz_tokenizer: the merge table was never made) */
    json = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1}}}";
    cr_assert_eq(lc_tokenizer_from_json(&t, json, strlen(json), NULL, 0, "x", &err), 0, "%s", err.msg);
    ids.n = 0;
    cr_assert_eq(lc_tokenizer_encode(t, "abba", 4, false, &ids, &err), 0, "%s", err.msg);
    cr_assert(ids.n == 4 && ids.v[0] == 0 && ids.v[3] == 0);
    lc_ids_free(&ids);
    lc_tokenizer_free(t);
}

Test(tokenizer, hostile_files_refused)
{
    refused("", "not a JSON object");
    refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,", "truncated");
    refused("[1,2]", "not a JSON object");
    refused("{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", "model.type: unsupported \"Unigram\"");
    refused("{\"model\":{\"type\":\"WordPiece\"}}", "model.type: unsupported");
    refused("{\"model\":{\"type\":\"BPE\",\"vocab\":[\"a\"]}}", "model.vocab must be an object");
    refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"0\"}}}", "model.vocab[\"a\"] must be an integer");
    refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1.5}}}", "model.vocab[\"a\"]");
    refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1}}}", "out of range");
    refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1e12}}}", "model.vocab[\"a\"]");
    refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0}}}", "id 0 given twice");
    refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a c\"]}}",
            "model.merges[0]: merge part \"c\" is not in the vocabulary");
    refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a a\"]}}",
            "merged token \"aa\" is not in the vocabulary");
    refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[7]}}", "model.merges[0] must be");
    refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"ab\"]}}", "model.merges[0] must be");
    refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":{}}}", "model.merges must be an array");
    refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"unk_token\":\"<unk>\"}}", "model.unk_token");
    refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"dropout\":0.1}}", "model.dropout");
    refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"continuing_subword_prefix\":\"##\"}}",
            "model.continuing_subword_prefix");
    refused("{" GOOD_MODEL ",\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(a\"},"
            "\"behavior\":\"Isolated\",\"invert\":false}}", "pre_tokenizer.pattern.Regex: bad regex");
    refused("{" GOOD_MODEL ",\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":"
            "\"Whitespace\"}]}}", "pre_tokenizer.pretokenizers[0].type: unsupported \"Whitespace\"");
    refused("{" GOOD_MODEL ",\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"a\"},"
            "\"behavior\":\"Contiguous\"}}", "pre_tokenizer.behavior: unsupported");
    refused("{" GOOD_MODEL ",\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":7,\"behavior\":\"Isolated\"}}",
            "pre_tokenizer.pattern must be");
    refused("{" GOOD_MODEL ",\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"},"
            "{\"type\":\"Lowercase\"}]}}", "normalizer.normalizers[1].type: unsupported \"Lowercase\"");
    refused("{" GOOD_MODEL ",\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"Regex\":\" +\"},"
            "\"content\":\" \"}}", "normalizer.pattern.Regex: unsupported");
    refused("{" GOOD_MODEL ",\"normalizer\":\"NFC\"}", "normalizer must be an object");
    refused("{" GOOD_MODEL ",\"decoder\":{\"type\":\"WordPiece\"}}", "decoder.type: unsupported");
    refused("{" GOOD_MODEL ",\"post_processor\":{\"type\":\"RobertaProcessing\"}}",
            "post_processor.type: unsupported");
    refused("{" GOOD_MODEL ",\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":"
            "[{\"SpecialToken\":{\"id\":\"<s>\"}},{\"Sequence\":{\"id\":\"A\"}}],\"special_tokens\":{}}}",
            "special_tokens[\"<s>\"].ids");
    refused("{" GOOD_MODEL ",\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":"
            "[{\"SpecialToken\":{\"id\":\"<s>\"}},{\"Sequence\":{\"id\":\"A\"}}],\"special_tokens\":"
            "{\"<s>\":{\"ids\":[77]}}}}", "post_processor: id 77 is not a token");
    refused("{" GOOD_MODEL ",\"added_tokens\":[{\"id\":5}]}", "added_tokens[0].content is missing");
    refused("{" GOOD_MODEL ",\"added_tokens\":[{\"id\":5,\"content\":\"\"}]}", "added_tokens[0].content is empty");
    refused("{" GOOD_MODEL ",\"added_tokens\":[{\"id\":5,\"content\":\"x\",\"special\":\"yes\"}]}",
            "added_tokens[0].special must be true or false");
    refused("{" GOOD_MODEL ",\"added_tokens\":[{\"id\":99999999999,\"content\":\"x\"}]}",
            "added_tokens[0].id must be an integer");
    refused("{" GOOD_MODEL ",\"truncation\":{\"max_length\":5}}", "truncation");

    /* a token longer than the limit, and a huge id */
    size_t big = LC_BPE_MAX_TOKEN + 10;
    char *json = malloc(big + 100);
    int m = snprintf(json, 100, "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"");
    memset(json + m, 'x', big);
    strcpy(json + m + big, "\":0}}}");
    refused(json, "token of");
    free(json);
    refused("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":2147483647}}}", "out of range");

    /* config errors */
    const char *good = "{" GOOD_MODEL "}";
    lc_tokenizer *t = NULL;
    lc_error err;
    const char *cfg = "{\"eos_token\": \"</s>\"}";
    cr_assert_eq(lc_tokenizer_from_json(&t, good, strlen(good), cfg, strlen(cfg), "x", &err), -1);
    lc_test_assert_msg_has(&err, "tokenizer_config.json: eos_token \"</s>\" is not a token");
    cfg = "{\"add_bos_token\": \"yes\"}";
    cr_assert_eq(lc_tokenizer_from_json(&t, good, strlen(good), cfg, strlen(cfg), "x", &err), -1);
    lc_test_assert_msg_has(&err, "tokenizer_config.json: (top).add_bos_token must be true or false");
    cfg = "{\"eos_token\": 3}";
    cr_assert_eq(lc_tokenizer_from_json(&t, good, strlen(good), cfg, strlen(cfg), "x", &err), -1);
    lc_test_assert_msg_has(&err, "eos_token must be");
    cfg = "{\"eos_token\": {\"content\": \"ab\"}, \"bos_token\": null}";
    cr_assert_eq(lc_tokenizer_from_json(&t, good, strlen(good), cfg, strlen(cfg), "x", &err), 0, "%s", err.msg);
    cr_assert_eq(lc_tokenizer_eos(t), 2);
    cr_assert_eq(lc_tokenizer_bos(t), -1);
    lc_tokenizer_free(t);

    /* a missing directory names the file */
    cr_assert_eq(lc_tokenizer_load(&t, "/nonexistent-dir", &err), -1);
    lc_test_assert_msg_has(&err, "/nonexistent-dir/tokenizer.json");
}

/* Limits: too many steps in a chain, the merge count, a regex that would
 * backtrack for ever (PCRE2's match limit turns it into an error). */
Test(tokenizer, limits, .timeout = 60)
{
    char json[4096];
    int m = snprintf(json, sizeof json, "{" GOOD_MODEL ",\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[");
    for (int i = 0; i < 17; i++)
        m += snprintf(json + m, sizeof json - (size_t)m, "%s{\"type\":\"NFC\"}", i ? "," : "");
    snprintf(json + m, sizeof json - (size_t)m, "]}}");
    refused(json, "normalizer.normalizers[16]: more than 16 normalizer steps");

    lc_bpe b;
    lc_error err;
    lc_bpe_init(&b);
    cr_assert_eq(lc_bpe_add_token(&b, "a", 1, 0, &err), 0);
    cr_assert_eq(lc_bpe_add_token(&b, "aa", 2, 1, &err), 0);
    b.n_merges = LC_BPE_MAX_MERGES;
    cr_assert_eq(lc_bpe_add_merge(&b, "a", 1, "a", 1, &err), -1);
    lc_test_assert_msg_has(&err, "more than");
    lc_bpe_free(&b);

    const char *re = "{" GOOD_MODEL ",\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":"
                     "{\"Regex\":\"(a|aa)+$\"},\"behavior\":\"Isolated\"}}";
    lc_tokenizer *t;
    cr_assert_eq(lc_tokenizer_from_json(&t, re, strlen(re), NULL, 0, "x", &err), 0, "%s", err.msg);
    char text[200];
    memset(text, 'a', 120);
    text[120] = 'b';
    lc_ids ids = {0};
    cr_assert_eq(lc_tokenizer_encode(t, text, 121, false, &ids, &err), -1);
    lc_test_assert_msg_has(&err, "pre-tokenizer regex failed");
    lc_ids_free(&ids);
    lc_tokenizer_free(t);
}

/* Every prefix of a real file is refused or loads; nothing crashes. */
Test(tokenizer, truncated_real_file, .timeout = 120)
{
    char *rel = "tokenizers/llama-spm/tokenizer.json.gz";
    const char *argv[] = {"gzip", "-dc", lc_test_fixture(rel), NULL};
    lc_test_run_result r = lc_test_run(NULL, argv);
    cr_assert_eq(r.code, 0);
    size_t n = strlen(r.out);
    for (size_t cut = 0; cut < n; cut += n / 7 + 1) {
        lc_tokenizer *t = NULL;
        lc_error err;
        cr_assert_eq(lc_tokenizer_from_json(&t, r.out, cut, NULL, 0, "x", &err), -1);
        lc_test_assert_msg_has(&err, "not a JSON object");
    }
    lc_test_run_free(&r);
}

/* Bad rows of a {"text": ...} JSONL file: an error naming file and line. */
Test(tokenizer, bad_text_rows)
{
    const char *json = "{" GOOD_MODEL "}";
    lc_tokenizer *t;
    lc_error err;
    cr_assert_eq(lc_tokenizer_from_json(&t, json, strlen(json), NULL, 0, "x", &err), 0, "%s", err.msg);
    char *dir = lc_test_tmpdir();
    struct { const char *rows, *msg; } cases[] = {
        {"{\"text\": \"ab\"}\n\n{\"text\": 1}\n", ":3: \"text\" must be a string"},
        {"{\"txt\": \"ab\"}\n", ":1: no \"text\" field"},
        {"[\"ab\"]\n", ":1: a row must be a JSON object"},
        {"{\"text\": \"ab\"\n", ":1: not valid JSON"},
        {"{\"text\": \"a\xc3\"}\n", ":1: \"text\": text is not valid UTF-8"},
        {"{\"text\": \"a\\u0000b\"}\n", ":1: \\u0000 (NUL)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *path = lc_test_write_text(dir, "rows.jsonl", cases[i].rows);
        FILE *out = fopen("/dev/null", "w");
        long long rows;
        cr_assert_eq(lc_text_jsonl_tokenize(t, path, false, out, &rows, &err), -1, "%s", cases[i].rows);
        fclose(out);
        lc_test_assert_msg_has(&err, "rows.jsonl");
        lc_test_assert_msg_has(&err, cases[i].msg);
        free(path);
    }
    char *path = lc_test_write_text(dir, "ok.jsonl", "{\"text\": \"abba\"}\n\n{\"text\": \"\"}\n"
                                                      "{\"text\": \"\\\\u0000\"}\n");
    char *buf = NULL;
    size_t n = 0;
    FILE *out = open_memstream(&buf, &n);
    long long rows;
    cr_assert_eq(lc_text_jsonl_tokenize(t, path, false, out, &rows, &err), 0, "%s", err.msg);
    fclose(out);
    cr_assert_eq(rows, 3);
    /* the last row is a backslash and "u0000": not in the vocabulary, no unk: no ids */
    cr_assert_str_eq(buf, "{\"input_ids\": [2, 1, 0]}\n{\"input_ids\": []}\n{\"input_ids\": []}\n");
    free(buf);
    free(path);
    cr_assert_eq(lc_text_jsonl_tokenize(t, "/nonexistent.jsonl", false, stdout, &rows, &err), -1);
    lc_test_assert_msg_has(&err, "/nonexistent.jsonl");
    lc_test_rm_rf(dir);
    free(dir);
    lc_tokenizer_free(t);
}

/* The inputs fuzz_tokenizer found bugs with (tests/fuzz/regressions/fuzz_tokenizer/),
 * through the same API: tokenizer.json before the first NUL, text after. */
Test(tokenizer, fuzz_regressions)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/fuzz/regressions/fuzz_tokenizer", LORAC_SOURCE_DIR);
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s", dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char *p = lc_test_asprintf("%s/%s", dir, e->d_name);
        size_t size;
        char *data = lc_test_read_file(p, &size);
        size_t jn = strnlen(data, size);
        const char *text = jn < size ? data + jn + 1 : "";
        size_t tn = jn < size ? size - jn - 1 : 0;
        lc_tokenizer *t;
        lc_error err;
        if (lc_tokenizer_from_json(&t, data, jn, NULL, 0, e->d_name, &err) == 0) {
            lc_ids ids = {0};
            if (lc_tokenizer_encode(t, text, tn, true, &ids, &err) == 0) {
                char *dec;
                size_t dn;
                cr_assert_eq(lc_tokenizer_decode(t, ids.v, ids.n, &dec, &dn, &err), 0, "%s", err.msg);
                free(dec);
            }
            lc_ids_free(&ids);
            lc_tokenizer_free(t);
        }
        free(data);
        free(p);
        n++;
    }
    closedir(d);
    cr_assert_gt(n, 0);
}

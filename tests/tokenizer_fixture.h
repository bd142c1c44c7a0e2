/* tokenizer_fixture.h — a model directory holding one of the tokenizer
 * fixtures of tests/fixtures/tokenizers/<name>/ (made by
 * scripts/make_tokenizer_fixtures.py): tokenizer.json, stored gzipped
 * because the vocabularies are large, is unpacked with gzip into a fresh
 * temporary directory next to a copy of tokenizer_config.json; and the
 * comparison of ids with a JSON list of expected ones. Header-only (uses
 * nothing beyond helpers.h) for test_tokenizer.c, test_cli.c and
 * test_gguf_spm.c. */
#ifndef LC_TEST_TOKENIZER_FIXTURE_H
#define LC_TEST_TOKENIZER_FIXTURE_H

#include <criterion/criterion.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

#include "data/bpe.h"
#include "helpers.h"

/* The four fixtures: Llama 3, Qwen2, Llama 2, Phi-3. */
static const char *const lc_test_tokenizer_names[] = {"llama-bpe", "qwen2", "llama-spm", "phi-3"};

/* A temporary model directory with the fixture's tokenizer files (malloc'd
 * path; lc_test_rm_rf it). */
static inline char *lc_test_tokenizer_dir(const char *name)
{
    char *rel = lc_test_asprintf("tokenizers/%s/tokenizer.json.gz", name);
    const char *gz = lc_test_fixture(rel);
    const char *argv[] = {"gzip", "-dc", gz, NULL};
    lc_test_run_result r = lc_test_run(NULL, argv);
    cr_assert_eq(r.code, 0, "gzip -dc %s: %s", gz, r.err);
    char *dir = lc_test_tmpdir();
    free(lc_test_write_text(dir, "tokenizer.json", r.out));
    lc_test_run_free(&r);
    free(rel);
    rel = lc_test_asprintf("tokenizers/%s/tokenizer_config.json", name);
    size_t n;
    char *cfg = lc_test_read_file(lc_test_fixture(rel), &n);
    free(lc_test_write_file(dir, "tokenizer_config.json", cfg, n));
    free(cfg);
    free(rel);
    return dir;
}

/* Whether ids[0..n) equal the JSON array want. */
static inline int lc_test_ids_equal(const lc_ids *ids, const cJSON *want)
{
    if ((size_t)cJSON_GetArraySize(want) != ids->n)
        return 0;
    size_t i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, want)
        if ((int32_t)v->valuedouble != ids->v[i++])
            return 0;
    return 1;
}

/* v[0..n) as "1 2 3 " in buf (cut to fit cap). */
static inline void lc_test_print_ids(char *buf, size_t cap, const int32_t *v, size_t n)
{
    size_t m = 0;
    buf[0] = 0;
    for (size_t i = 0; i < n && m + 16 < cap; i++)
        m += (size_t)snprintf(buf + m, cap - m, "%d ", (int)v[i]);
}

#endif

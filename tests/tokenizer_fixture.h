/* tokenizer_fixture.h — a model directory holding one of the tokenizer
 * fixtures of tests/fixtures/tokenizers/<name>/ (made by
 * scripts/make_tokenizer_fixtures.py): tokenizer.json, stored gzipped
 * because the vocabularies are large, is unpacked with gzip into a fresh
 * temporary directory next to a copy of tokenizer_config.json. Header-only
 * (uses nothing beyond helpers.h) for test_tokenizer.c and test_cli.c. */
#ifndef LC_TEST_TOKENIZER_FIXTURE_H
#define LC_TEST_TOKENIZER_FIXTURE_H

#include <criterion/criterion.h>

#include <stdlib.h>

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

#endif

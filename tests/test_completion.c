/* test_completion.c — `type: completion` datasets (data/completion.h): the
 * rows lorac's stream yields from raw text are exactly those Axolotl trains
 * on (expected ids made by scripts/make_completion_fixture.py with
 * transformers on the llama-bpe tokenizer fixture: BOS, EOS appended,
 * truncation at 64 × sequence_len, sequence_len chunks); the shuffled,
 * packed stream resumes at a row count exactly; bad rows are file:line
 * errors. */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "data/jsonl.h"
#include "data/tokenizer.h"
#include "helpers.h"
#include "tokenizer_fixture.h"

#define LLAMA3_VOCAB 128256

typedef struct rows {
    int32_t **ids;
    int64_t *len;
    int64_t n;
} rows;

static void rows_push(rows *r, const int32_t *ids, int64_t len)
{
    r->ids = realloc(r->ids, (size_t)(r->n + 1) * sizeof *r->ids);
    r->len = realloc(r->len, (size_t)(r->n + 1) * sizeof *r->len);
    cr_assert(r->ids && r->len);
    r->ids[r->n] = malloc((size_t)len * sizeof(int32_t));
    cr_assert(r->ids[r->n]);
    memcpy(r->ids[r->n], ids, (size_t)len * sizeof(int32_t));
    r->len[r->n++] = len;
}

static void rows_free(rows *r)
{
    for (int64_t i = 0; i < r->n; i++)
        free(r->ids[i]);
    free(r->ids);
    free(r->len);
    memset(r, 0, sizeof *r);
}

static lc_tokenizer *load_llama3(char **dir)
{
    *dir = lc_test_tokenizer_dir("llama-bpe");
    lc_tokenizer *t;
    lc_error err = {0};
    cr_assert_eq(lc_tokenizer_load(&t, *dir, &err), 0, "%s", err.msg);
    return t;
}

/* A completion encoder: field "body", sequence_len L (free it). */
static lc_row_encoder *body_encoder(lc_tokenizer *t, int64_t vocab, int64_t L)
{
    lc_dataset_spec spec;
    lc_row_encoder *enc;
    lc_error err = {0};
    cr_assert_eq(lc_dataset_spec_defaults(&spec, LC_DS_COMPLETION), 0);
    free(spec.field);
    spec.field = strdup("body");
    lc_row_encoder_opts o = {.spec = &spec, .tok = t, .sequence_len = L, .vocab = vocab};
    cr_assert_eq(lc_row_encoder_new(&enc, &o, &err), 0, "%s", err.msg);
    lc_dataset_spec_free(&spec);
    return enc;
}

/* A reader of completion file path chunked at L (the encoder in *enc: free
 * it after closing the reader). */
static int open_completion(lc_jsonl_reader *r, const char *path, int64_t vocab, lc_tokenizer *t,
                           int64_t L, lc_row_encoder **enc, lc_error *err)
{
    *enc = body_encoder(t, vocab, L);
    return lc_jsonl_open_encoded(r, path, vocab, *enc, L, err);
}

/* Every row of a completion file, field "body", chunked at L. */
static void read_completion(lc_tokenizer *t, const char *path, int64_t L, rows *out,
                            int64_t *truncated)
{
    lc_jsonl_reader r;
    lc_error err = {0};
    lc_row_encoder *enc;
    cr_assert_eq(open_completion(&r, path, LLAMA3_VOCAB, t, L, &enc, &err), 0, "%s", err.msg);
    lc_row row;
    int rc;
    *truncated = 0;
    while ((rc = lc_jsonl_next(&r, &row, &err)) == 1) {
        cr_assert_eq(memcmp(row.input_ids, row.labels, (size_t)row.len * sizeof(int32_t)), 0,
                     "labels = input_ids (every token supervised)");
        rows_push(out, row.input_ids, row.len);
        *truncated += row.truncated;
    }
    cr_assert_eq(rc, 0, "%s", err.msg);
    lc_jsonl_close(&r);
    lc_row_encoder_free(enc);
}

static void read_expected(const char *path, rows *out)
{
    lc_jsonl_reader r;
    lc_error err = {0};
    cr_assert_eq(lc_jsonl_open(&r, path, 1 << 24, &err), 0, "%s", err.msg);
    lc_row row;
    int rc;
    while ((rc = lc_jsonl_next(&r, &row, &err)) == 1)
        rows_push(out, row.input_ids, row.len);
    cr_assert_eq(rc, 0, "%s", err.msg);
    lc_jsonl_close(&r);
}

Test(completion, rows_equal_axolotl_via_hf, .timeout = 60)
{
    char *dir;
    lc_tokenizer *t = load_llama3(&dir);
    static const int64_t lens[] = {8, 2, 4096};
    static const int64_t want_truncated[] = {0, 1, 0};
    for (int k = 0; k < 3; k++) {
        char *rel = lc_test_asprintf("completion/expected-%lld.jsonl", (long long)lens[k]);
        rows got = {0}, want = {0};
        int64_t truncated;
        read_completion(t, lc_test_fixture("completion/train.jsonl"), lens[k], &got, &truncated);
        read_expected(lc_test_fixture(rel), &want);
        cr_assert_eq(got.n, want.n, "L=%lld: %lld rows, expected %lld", (long long)lens[k],
                     (long long)got.n, (long long)want.n);
        for (int64_t i = 0; i < got.n; i++) {
            cr_assert_eq(got.len[i], want.len[i], "L=%lld row %lld: length %lld, expected %lld",
                         (long long)lens[k], (long long)i, (long long)got.len[i],
                         (long long)want.len[i]);
            cr_assert_eq(memcmp(got.ids[i], want.ids[i], (size_t)got.len[i] * sizeof(int32_t)), 0,
                         "L=%lld row %lld: ids differ from HF/Axolotl", (long long)lens[k],
                         (long long)i);
        }
        cr_assert_eq(truncated, want_truncated[k], "L=%lld: %lld rows truncated",
                     (long long)lens[k], (long long)truncated);

        /* the scan counts the same rows and the truncation */
        char *paths[] = {(char *)lc_test_fixture("completion/train.jsonl")};
        lc_row_encoder *enc[] = {body_encoder(t, LLAMA3_VOCAB, lens[k])};
        lc_dataset_opts o = {.paths = paths, .n_paths = 1, .vocab = LLAMA3_VOCAB,
                             .seq_len = lens[k], .micro_batch = 2, .encoders = enc};
        lc_dataset_scan s;
        lc_error err = {0};
        cr_assert_eq(lc_dataset_scan_files(&s, &o, &err), 0, "%s", err.msg);
        int64_t short_rows = 0; /* Axolotl drops rows under min_sample_len (2) tokens */
        for (int64_t i = 0; i < want.n; i++)
            short_rows += want.len[i] < LC_MIN_ROW_TOKENS;
        cr_assert_eq(s.n_rows, want.n - short_rows);
        cr_assert_eq(s.counts.dropped_short, short_rows);
        cr_assert_eq(s.counts.rows + s.counts.dropped_short, s.counts.lines + s.counts.chunked,
                     "every row is kept or dropped");
        cr_assert_eq(s.n_truncated, want_truncated[k]);
        lc_dataset_scan_free(&s);
        lc_row_encoder_free(enc[0]);
        rows_free(&got);
        rows_free(&want);
        free(rel);
    }
    lc_tokenizer_free(t);
    lc_test_rm_rf(dir);
    free(dir);
}

/* Batches of the shuffled, packed stream from row `skip` on, flattened. */
static void stream_batches(const lc_dataset_opts *o, int64_t skip, int64_t n_batches,
                           int32_t *out, int64_t *rows_after)
{
    lc_dataset_stream st;
    lc_batch_buf b;
    lc_error err = {0};
    cr_assert_eq(lc_batch_buf_init(&b, o->micro_batch, o->seq_len, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_dataset_stream_open(&st, o, 0, skip, &err), 0, "%s", err.msg);
    const size_t cells = (size_t)(o->micro_batch * o->seq_len);
    for (int64_t i = 0; i < n_batches; i++) {
        int64_t T_used;
        cr_assert_eq(lc_dataset_next_batch(&st, &b, &T_used, &err), 1, "batch %lld: %s",
                     (long long)i, err.msg);
        memcpy(out + (size_t)i * 2 * cells, b.ids, cells * sizeof(int32_t));
        memcpy(out + (size_t)i * 2 * cells + cells, b.targets, cells * sizeof(int32_t));
        if (rows_after)
            rows_after[i] = st.rows_emitted;
    }
    lc_dataset_stream_close(&st);
    lc_batch_buf_free(&b);
}

Test(completion, shuffled_packed_stream_resumes_exactly, .timeout = 60)
{
    char *dir;
    lc_tokenizer *t = load_llama3(&dir);
    char *paths[] = {(char *)lc_test_fixture("completion/train.jsonl"),
                     (char *)lc_test_fixture("completion/train.jsonl")};
    lc_row_encoder *enc[] = {body_encoder(t, LLAMA3_VOCAB, 8), body_encoder(t, LLAMA3_VOCAB, 8)};
    lc_dataset_opts o = {.paths = paths, .n_paths = 2, .vocab = LLAMA3_VOCAB, .seq_len = 8,
                         .micro_batch = 2, .shuffle = true, .packing = true, .seed = 7,
                         .encoders = enc};
    lc_dataset_scan s;
    lc_error err = {0};
    cr_assert_eq(lc_dataset_scan_files(&s, &o, &err), 0, "%s", err.msg);
    int64_t nb = lc_dataset_epoch_batches(&s, &o, 0);
    cr_assert_gt(nb, 4);
    const size_t per = (size_t)(2 * o.micro_batch * o.seq_len);
    int32_t *full = calloc((size_t)nb * per, sizeof(int32_t));
    int64_t *after = calloc((size_t)nb, sizeof(int64_t));
    cr_assert(full && after);
    stream_batches(&o, 0, nb, full, after);
    for (int64_t cut = 1; cut < nb; cut += 3) {
        int32_t *rest = calloc((size_t)(nb - cut) * per, sizeof(int32_t));
        cr_assert(rest);
        stream_batches(&o, after[cut - 1], nb - cut, rest, NULL);
        cr_assert_eq(memcmp(rest, full + (size_t)cut * per,
                            (size_t)(nb - cut) * per * sizeof(int32_t)), 0,
                     "resumed after batch %lld (row %lld): batches differ", (long long)cut,
                     (long long)after[cut - 1]);
        free(rest);
    }
    free(full);
    free(after);
    lc_dataset_scan_free(&s);
    lc_row_encoder_free(enc[0]);
    lc_row_encoder_free(enc[1]);
    lc_tokenizer_free(t);
    lc_test_rm_rf(dir);
    free(dir);
}

/* The error of the first bad row of text, read with vocab. */
static void expect_error(lc_tokenizer *t, const char *text, int64_t vocab, const char *want1,
                         const char *want2)
{
    char *tmp = lc_test_tmpdir();
    char *path = lc_test_write_text(tmp, "d.jsonl", text);
    lc_jsonl_reader r;
    lc_error err = {0};
    lc_row_encoder *enc;
    cr_assert_eq(open_completion(&r, path, vocab, t, 8, &enc, &err), 0, "%s", err.msg);
    lc_row row;
    int rc;
    while ((rc = lc_jsonl_next(&r, &row, &err)) == 1)
        ;
    cr_assert_eq(rc, -1, "no error for %s", text);
    cr_assert(strstr(err.msg, want1) && strstr(err.msg, want2),
              "error '%s' lacks '%s' / '%s'", err.msg, want1, want2);
    cr_assert(!strchr(err.msg, '\n'), "one line: %s", err.msg);
    lc_jsonl_close(&r);
    lc_row_encoder_free(enc);
    lc_test_rm_rf(tmp);
    free(path);
    free(tmp);
}

Test(completion, bad_rows_name_file_line_and_reason, .timeout = 60)
{
    char *dir;
    lc_tokenizer *t = load_llama3(&dir);
    expect_error(t, "{\"body\": \"ok\"}\n{\"text\": \"x\"}\n", LLAMA3_VOCAB, "d.jsonl:2",
                 "no \"body\" field");
    expect_error(t, "{\"body\": 3}\n", LLAMA3_VOCAB, "d.jsonl:1", "\"body\" must be a string");
    expect_error(t, "\n{\"body\": \"ok\"}\n{\"body\": \"x\"\n", LLAMA3_VOCAB, "d.jsonl:3",
                 "not valid JSON");
    expect_error(t, "[\"body\"]\n", LLAMA3_VOCAB, "d.jsonl:1", "JSON object");
    expect_error(t, "{\"body\": \"\"}\n", LLAMA3_VOCAB, "d.jsonl:1", "empty");
    /* a 512-token model (the tiny fixtures) cannot take Llama 3's ids */
    expect_error(t, "{\"body\": \"Hello world\"}\n", 512, "d.jsonl:1", "vocab_size 512");
    lc_tokenizer_free(t);
    lc_test_rm_rf(dir);
    free(dir);
}

/* preprocess.c — `lorac preprocess` (see preprocess.h). */
#include "train/preprocess.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/batch.h"
#include "data/dataset.h"
#include "train/model_config.h"
#include "train/rows_out.h"
#include "train/text_data.h"


static bool same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

/* OUT opened, unless it is an input or exists without --force. */
static int out_open(lc_rows_out *o, const lc_train_config *c, const lc_preprocess_opts *p,
                    lc_error *err)
{
    memset(o, 0, sizeof *o);
    if (!p->out)
        return 0;
    for (int i = 0; i < c->n_datasets + c->n_test_datasets; i++) {
        const char *in = i < c->n_datasets ? c->datasets[i] : c->test_datasets[i - c->n_datasets];
        if (same_file(p->out, in))
            return lc_error_set(err, "--out %s is the input %s: choose another file", p->out, in);
    }
    if (access(p->out, F_OK) == 0 && !p->force)
        return lc_error_set(err, "--out %s exists (add --force to replace it)", p->out);
    return lc_rows_out_open(o, p->out, err) ? lc_error_prefix(err, "--out") : 0;
}

static void write_ids(FILE *f, const int32_t *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        fprintf(f, i ? ",%d" : "%d", (int)v[i]);
}

/* Text of ids[0..n) for display (ids when there is no tokenizer). */
static void show_ids(FILE *log, lc_tokenizer *tok, const int32_t *ids, int64_t n)
{
    char *text = NULL;
    size_t len;
    lc_error err;
    if (tok && lc_tokenizer_decode(tok, ids, (size_t)n, &text, &len, &err) == 0) {
        fwrite(text, 1, len, log);
        free(text);
        return;
    }
    fputc('[', log);
    write_ids(log, ids, n);
    fputc(']', log);
}

/* The row as text, supervised runs marked (Axolotl's preprocess --debug). */
static void show_row(FILE *log, lc_tokenizer *tok, const lc_row *row, int64_t len,
                     const char *where, bool color)
{
    int64_t sup = 0; /* targets after the causal shift, as the data line counts them */
    for (int64_t i = 1; i < len; i++)
        sup += row->labels[i] != LC_LABEL_IGNORE;
    fprintf(log, "--- %s: %lld tokens, %lld supervised ---\n", where, (long long)len,
            (long long)sup);
    for (int64_t i = 0; i < len;) {
        bool on = row->labels[i] != LC_LABEL_IGNORE;
        int64_t j = i;
        while (j < len && (row->labels[j] != LC_LABEL_IGNORE) == on)
            j++;
        if (on)
            fputs(color ? "\033[32m" : "\u00ab", log);
        show_ids(log, tok, row->input_ids + i, j - i);
        if (on)
            fputs(color ? "\033[0m" : "\u00bb", log);
        i = j;
    }
    fputc('\n', log);
}

/* Why the counts moved from before to after (one row dropped). */
static const char *drop_reason(const lc_data_counts *before, const lc_data_counts *after)
{
    if (after->dropped_long > before->dropped_long)
        return "longer than sequence_len (excess_length_strategy: drop)";
    if (after->dropped_short > before->dropped_short)
        return "fewer than 2 tokens";
    return "no supervised token";
}

/* One dataset file: its rows to out, its counts into k (and *all). */
static int preprocess_file(const lc_dataset_opts *d, int f, lc_tokenizer *tok,
                           const lc_preprocess_opts *p, lc_rows_out *out, lc_data_counts *all,
                           FILE *log, lc_error *err)
{
    lc_jsonl_reader r;
    if (lc_dataset_open_file(&r, d, f, err))
        return -1;
    lc_data_counts k = {0};
    lc_row row;
    int rc, shown = 0;
    int64_t last_line = -1;
    while ((rc = lc_jsonl_next(&r, &row, err)) == 1) {
        lc_data_count_line(&k, &row, &last_line);
        lc_data_counts before = k;
        int64_t len;
        int fate = lc_dataset_row_fate(d, &row, &len, &k, err);
        char where[4200];
        snprintf(where, sizeof where, "%s:%lld", d->paths[f], (long long)row.line);
        if (fate < 0) {
            rc = lc_error_prefix(err, "%s", where);
            break;
        }
        if (fate > 0 && p->debug_rows > 0)
            fprintf(log, "--- %s: dropped (%s) ---\n", where, drop_reason(&before, &k));
        if (fate > 0)
            continue;
        if (out->f)
            lc_rows_out_put(out, &row, len);
        if (shown < p->debug_rows) {
            show_row(log, tok, &row, len, where, p->color);
            shown++;
        }
    }
    lc_jsonl_close(&r);
    if (rc < 0)
        return -1;
    lc_data_summary(log, d->paths[f], &k, d->seq_len);
    all->lines += k.lines, all->rows += k.rows, all->chunked += k.chunked;
    all->truncated += k.truncated, all->dropped_long += k.dropped_long;
    all->dropped_short += k.dropped_short, all->dropped_untrained += k.dropped_untrained;
    all->tokens += k.tokens, all->supervised += k.supervised;
    return 0;
}

int lc_preprocess(const lc_train_config *c, const lc_preprocess_opts *p, FILE *log,
                  lc_error *err)
{
    lc_model_config mc;
    if (lc_model_config_load(&mc, c->base_model, err))
        return lc_error_prefix(err, "base_model");
    lc_text_data text;
    if (lc_text_data_open(&text, c, mc.vocab_size, NULL, log, err))
        return -1;
    lc_rows_out out;
    if (out_open(&out, c, p, err)) {
        lc_text_data_close(&text);
        return -1;
    }
    lc_dataset_opts d = lc_text_data_opts(&text, c, false, mc.vocab_size);
    lc_data_counts all = {0};
    int rc = 0;
    for (int f = 0; f < d.n_paths && !rc; f++)
        rc = preprocess_file(&d, f, text.tok, p, &out, &all, log, err);
    if (!rc)
        lc_data_summary(log, "data", &all, c->sequence_len);
    if (!rc && all.rows == 0)
        rc = lc_error_set(err, "datasets: no rows left to train on (%lld line%s read)",
                          (long long)all.lines, all.lines == 1 ? "" : "s");
    rc = lc_rows_out_finish(&out, rc == 0, err);
    if (!rc && p->out)
        fprintf(log, "wrote %lld row%s to %s\n", (long long)all.rows, all.rows == 1 ? "" : "s",
                p->out);
    lc_text_data_close(&text);
    return rc;
}

/* text_data.c — tokenizer, chat template and row encoders of a config's
 * datasets (see text_data.h). */
#include "train/text_data.h"

#include "train/gguf_model.h"
#include "train/gguf_vocab.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autograd/hash.h"
#include "data/chat_builtin.h"
#include "train/fsutil.h"
#include "train/metrics.h"
#include "train/rows_out.h"

static bool any_text(const lc_train_config *c)
{
    for (int i = 0; i < c->n_datasets; i++)
        if (c->dataset_specs[i].type != LC_DS_TOKENIZED)
            return true;
    for (int i = 0; i < c->n_test_datasets; i++)
        if (c->test_dataset_specs[i].type != LC_DS_TOKENIZED)
            return true;
    return false;
}

static bool any_chat(const lc_train_config *c)
{
    for (int i = 0; i < c->n_datasets; i++)
        if (c->dataset_specs[i].type == LC_DS_CHAT_TEMPLATE)
            return true;
    for (int i = 0; i < c->n_test_datasets; i++)
        if (c->test_dataset_specs[i].type == LC_DS_CHAT_TEMPLATE)
            return true;
    return false;
}

static int apply_special_tokens(lc_text_data *d, const lc_train_config *c, lc_error *err)
{
    for (int k = 0; k < LC_SPECIAL_COUNT; k++)
        if (c->special_tokens[k] &&
            lc_tokenizer_set_special(d->tok, (lc_special)k, c->special_tokens[k], err))
            return -1;
    return 0;
}

/* base_model's tokenizer (special_tokens applied) and the fingerprint of the
 * files it was read from (the run record's). */
static int load_tokenizer(lc_text_data *d, const lc_train_config *c, lc_error *err)
{
    char path[4200], cfg_path[4200], dirbuf[4200];
    const char *dir = lc_model_tokenizer_dir(c->base_model, dirbuf, sizeof dirbuf);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    snprintf(cfg_path, sizeof cfg_path, "%s/tokenizer_config.json", dir);
    if (access(path, F_OK) != 0 && dir != c->base_model) { /* a GGUF file's own vocabulary */
        if (lc_gguf_tokenizer_load(&d->tok, c->base_model, err) ||
            lc_fileprint_take(c->base_model, true, &d->tok_print, err))
            return lc_error_prefix(err, "base_model (no %s next to it)", path);
        return apply_special_tokens(d, c, err);
    }
    if (access(path, F_OK) != 0)
        return lc_error_set(err, "base_model: %s is missing (text datasets are tokenized with "
                            "the model's own tokenizer)", path);
    if (lc_tokenizer_load(&d->tok, dir, err) || apply_special_tokens(d, c, err))
        return lc_error_prefix(err, "base_model: tokenizer");
    lc_fileprint cfg_print = {0};
    if (lc_fileprint_take(path, false, &d->tok_print, err) ||
        (access(cfg_path, F_OK) == 0 && lc_fileprint_take(cfg_path, false, &cfg_print, err)))
        return lc_error_prefix(err, "base_model: tokenizer files");
    d->tok_print.hash = lc_splitmix64(d->tok_print.hash ^ cfg_print.hash);
    return 0;
}

static int make_encoders(lc_text_data *d, const lc_train_config *c, bool test, int64_t vocab,
                         lc_error *err)
{
    int n = test ? c->n_test_datasets : c->n_datasets;
    const lc_dataset_spec *specs = test ? c->test_dataset_specs : c->dataset_specs;
    lc_row_encoder **enc = test ? d->test : d->train;
    for (int i = 0; i < n; i++) {
        if (specs[i].type == LC_DS_TOKENIZED)
            continue;
        lc_row_encoder_opts o = {.spec = &specs[i], .tok = d->tok,
                                 .chat_template = d->chat_template,
                                 .eot_tokens = c->n_eot_tokens ? c->eot_tokens : NULL,
                                 .n_eot_tokens = c->n_eot_tokens,
                                 .train_on_inputs = c->train_on_inputs,
                                 .sequence_len = c->sequence_len, .vocab = vocab};
        if (lc_row_encoder_new(&enc[i], &o, err))
            return lc_error_prefix(err, "%s[%d]", test ? "test_datasets" : "datasets", i);
        if (!test)
            d->reading[i] = enc[i];
    }
    return 0;
}

/* The chat template the config chooses (data/chat_builtin.h has Axolotl's rules). */
static int select_template(const lc_train_config *c, char **out, lc_error *err)
{
    char *model_text = NULL, *owned = NULL;
    const char *text = NULL;
    *out = NULL;
    char dirbuf[4200];
    int rc = lc_chat_template_from_model_dir(
        lc_model_tokenizer_dir(c->base_model, dirbuf, sizeof dirbuf), &model_text, err);
    if (!rc && !model_text && lc_gguf_model_is_gguf(c->base_model)) /* the file's own */
        rc = lc_gguf_chat_template(c->base_model, &model_text, err);
    if (!rc)
        rc = lc_chat_template_resolve(c->chat_template, c->chat_template_jinja, model_text, &text,
                                      &owned, err);
    if (!rc && !(*out = strdup(text)))
        rc = lc_error_set(err, "out of memory");
    free(model_text);
    free(owned);
    return rc ? lc_error_prefix(err, "chat_template") : 0;
}

/* The prepared file of datasets[i]: DIR/<name>-<hash of what decides its rows>.jsonl. */
static int prepared_name(const lc_text_data *d, const lc_train_config *c, int i, int64_t vocab,
                         const lc_fileprint *data_print, char **out, lc_error *err)
{
    lc_fileprint fp;
    if (data_print)
        fp = data_print[i];
    else if (lc_fileprint_take(c->datasets[i], false, &fp, err))
        return lc_error_prefix(err, "datasets[%d]", i);
    char spec[2048], num[64];
    lc_dataset_spec_describe(&c->dataset_specs[i], spec, sizeof spec);
    uint64_t h = lc_hash_text(lc_splitmix64(fp.hash ^ d->tok_print.hash), "lorac prepared 1");
    h = lc_hash_text(h, spec);
    snprintf(num, sizeof num, "%lld %d %d %lld", (long long)c->sequence_len,
             (int)c->excess_length_strategy, (int)c->train_on_inputs, (long long)vocab);
    h = lc_hash_text(h, num);
    for (int k = 0; k < c->n_eot_tokens; k++)
        h = lc_hash_text(h, c->eot_tokens[k]);
    const char *base = strrchr(c->datasets[i], '/');
    base = base ? base + 1 : c->datasets[i];
    size_t n = strlen(c->dataset_prepared_path) + strlen(base) + 32;
    if (!(*out = malloc(n)))
        return lc_error_set(err, "out of memory");
    snprintf(*out, n, "%s/%.*s-%016llx.jsonl", c->dataset_prepared_path,
             (int)(strlen(base) > 6 && !strcmp(base + strlen(base) - 6, ".jsonl")
                       ? strlen(base) - 6 : strlen(base)), base, (unsigned long long)h);
    return 0;
}

/* dataset_prepared_path: datasets' text rows from their prepared files, made
 * when missing. */
static int use_prepared(lc_text_data *d, const lc_train_config *c, int64_t vocab,
                        const lc_fileprint *data_print, FILE *log, lc_error *err)
{
    if (!c->dataset_prepared_path)
        return 0;
    if (lc_mkdir_p(c->dataset_prepared_path, err))
        return lc_error_prefix(err, "dataset_prepared_path");
    lc_dataset_opts o = lc_text_data_opts(d, c, false, vocab);
    for (int i = 0; i < c->n_datasets; i++) {
        if (!d->train[i])
            continue;
        if (prepared_name(d, c, i, vocab, data_print, &d->prepared[i], err))
            return -1;
        bool have = lc_path_exists(d->prepared[i]);
        lc_data_counts k;
        if (!have && lc_rows_prepare(&o, i, d->prepared[i], &k, err))
            return lc_error_prefix(err, "dataset_prepared_path");
        if (log)
            fprintf(log, "datasets[%d]: %s %s\n", i, have ? "prepared rows from" : "prepared into",
                    d->prepared[i]);
        d->paths[i] = d->prepared[i];
        d->reading[i] = NULL;
    }
    return 0;
}

int lc_text_data_open(lc_text_data *d, const lc_train_config *c, int64_t vocab,
                      const lc_fileprint *data_print, FILE *log, lc_error *err)
{
    memset(d, 0, sizeof *d);
    for (int i = 0; i < c->n_datasets; i++)
        d->paths[i] = c->datasets[i];
    if (!any_text(c))
        return 0;
    int rc = load_tokenizer(d, c, err);
    if (!rc && any_chat(c) && !(rc = select_template(c, &d->chat_template, err)))
        d->tok_print.hash = lc_hash_text(d->tok_print.hash, d->chat_template);
    if (!rc)
        rc = make_encoders(d, c, false, vocab, err) || make_encoders(d, c, true, vocab, err) ||
             use_prepared(d, c, vocab, data_print, log, err);
    if (rc)
        lc_text_data_close(d);
    return rc ? -1 : 0;
}

void lc_text_data_close(lc_text_data *d)
{
    for (int i = 0; i < LC_CONFIG_MAX_DATASETS; i++) {
        lc_row_encoder_free(d->train[i]);
        lc_row_encoder_free(d->test[i]);
        free(d->prepared[i]);
    }
    lc_tokenizer_free(d->tok);
    free(d->chat_template);
    free(d->holdout);
    memset(d, 0, sizeof *d);
}

int lc_text_data_hold_out(lc_text_data *d, const lc_train_config *c, lc_dataset_scan *scan,
                          lc_error *err)
{
    if (c->val_set_size <= 0)
        return 0;
    free(d->holdout);
    if (lc_dataset_holdout_make(scan, c->val_set_size, c->val_set_size_rows, c->seed,
                                &d->holdout, err))
        return lc_error_prefix(err, "val_set_size");
    lc_dataset_scan_split(scan, d->holdout, 1);
    return 0;
}

bool lc_text_data_has_eval(const lc_text_data *d, const lc_train_config *c)
{
    return c->n_test_datasets > 0 || d->holdout;
}

lc_dataset_opts lc_text_data_opts(const lc_text_data *d, const lc_train_config *c, bool test,
                                  int64_t vocab)
{
    bool held = test && c->n_test_datasets == 0 && d->holdout;
    bool own = test && !held; /* test_datasets */
    return (lc_dataset_opts){
        .paths = own ? c->test_datasets : (char *const *)d->paths,
        .n_paths = own ? c->n_test_datasets : c->n_datasets,
        .vocab = vocab, .seq_len = c->sequence_len, .excess = c->excess_length_strategy,
        .encoders = own ? d->test : d->reading,
        .holdout = own ? NULL : d->holdout,
        .holdout_side = own || !d->holdout ? 0 : test ? 2 : 1,
        .micro_batch = c->micro_batch_size, .shuffle = !test && c->shuffle,
        .packing = !test && c->sample_packing, .seed = c->seed};
}

void lc_data_summary(FILE *out, const char *what, const lc_data_counts *k, int64_t seq_len)
{
    fprintf(out, "%s: %lld row%s, %lld token%s, %lld supervised (%.1f%%) from %lld line%s",
            what, (long long)k->rows, lc_plural(k->rows), (long long)k->tokens,
            lc_plural(k->tokens), (long long)k->supervised,
            k->tokens ? 100.0 * (double)k->supervised / (double)k->tokens : 0.0,
            (long long)k->lines, lc_plural(k->lines));
    if (k->chunked)
        fprintf(out, "; %lld more row%s from splitting long texts", (long long)k->chunked,
                lc_plural(k->chunked));
    if (k->truncated)
        fprintf(out, "; %lld truncated to sequence_len %lld", (long long)k->truncated,
                (long long)seq_len);
    if (k->dropped_long)
        fprintf(out, "; %lld dropped as longer than sequence_len %lld (excess_length_strategy: "
                "drop)", (long long)k->dropped_long, (long long)seq_len);
    if (k->dropped_short)
        fprintf(out, "; %lld dropped with fewer than %d tokens", (long long)k->dropped_short,
                LC_MIN_ROW_TOKENS);
    if (k->dropped_untrained)
        fprintf(out, "; %lld dropped with no supervised token", (long long)k->dropped_untrained);
    if (k->held_out)
        fprintf(out, "; %lld held out for evaluation (val_set_size)", (long long)k->held_out);
    fputc('\n', out);
}

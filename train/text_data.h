/* text_data.h — what the config's text datasets need before a row is read:
 * base_model's tokenizer (with the config's special_tokens), the chat
 * template (chat_template / chat_template_jinja / the model's own), and one
 * row encoder per dataset (data/row_encoder.h). `lorac train`, `lorac eval`
 * and `lorac preprocess` all open their data through this, so they encode
 * rows identically; and the data summary all three print is here. */
#ifndef LC_TEXT_DATA_H
#define LC_TEXT_DATA_H

#include <stdio.h>

#include "data/dataset.h"
#include "data/row_encoder.h"
#include "train/config.h"
#include "train/fingerprint.h"

typedef struct lc_text_data {
    lc_tokenizer *tok;             /* NULL when every dataset is tokenized */
    lc_fileprint tok_print;        /* the tokenizer files' fingerprint (tok non-NULL) */
    char *chat_template;           /* the template text (a chat_template dataset) */
    lc_row_encoder *train[LC_CONFIG_MAX_DATASETS]; /* per datasets[i], NULL: tokenized */
    lc_row_encoder *test[LC_CONFIG_MAX_DATASETS];  /* per test_datasets[i] */
    uint8_t *holdout;              /* val_set_size: the kept rows of datasets held out */
    /* dataset_prepared_path: datasets[i] read from its prepared file when
     * prepared[i] is set (then train[i] is not used) */
    char *prepared[LC_CONFIG_MAX_DATASETS];
    char *paths[LC_CONFIG_MAX_DATASETS];          /* what datasets[i] is read from */
    lc_row_encoder *reading[LC_CONFIG_MAX_DATASETS]; /* ... and how (NULL: tokenized rows) */
} lc_text_data;

/* Opens everything the config's datasets and test_datasets need; vocab is
 * the model's vocab_size (ids must fit). With dataset_prepared_path, each
 * text dataset of `datasets` is read from its prepared file there — the kept
 * rows as tokenized JSONL, named by a hash of everything that decides them
 * (the file's content, the dataset's options, tokenizer and template,
 * sequence_len, excess_length_strategy, train_on_inputs, eot_tokens,
 * vocab_size) — which is made first when missing; log (may be NULL) says
 * which. Axolotl's cache, made safe: a change to any input is a new file.
 * data_print: the datasets' fingerprints when the caller took them already
 * (the trainer does, for its run record), else NULL (taken here if needed). */
int lc_text_data_open(lc_text_data *d, const lc_train_config *c, int64_t vocab,
                      const lc_fileprint *data_print, FILE *log, lc_error *err);
void lc_text_data_close(lc_text_data *d);

/* val_set_size: given the scan of every kept row of datasets (side 0),
 * chooses the held-out rows and leaves the training ones in *scan. Nothing
 * to do when val_set_size is 0. */
int lc_text_data_hold_out(lc_text_data *d, const lc_train_config *c, lc_dataset_scan *scan,
                          lc_error *err);

/* Whether there is evaluation data (test_datasets or held-out rows). */
bool lc_text_data_has_eval(const lc_text_data *d, const lc_train_config *c);

/* The data options of datasets (test false: the training rows) or of the
 * evaluation data (test true: test_datasets, or the rows val_set_size holds
 * out of datasets; lc_text_data_hold_out first). */
lc_dataset_opts lc_text_data_opts(const lc_text_data *d, const lc_train_config *c, bool test,
                                  int64_t vocab);

/* "data: 1200 rows from 1000 lines ... " — where every line went, one line. */
void lc_data_summary(FILE *out, const char *what, const lc_data_counts *k, int64_t seq_len);

#endif

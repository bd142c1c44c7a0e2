/* preprocess.h — `lorac preprocess CONFIG.yaml --out OUT.jsonl [--debug [N]]`:
 * every row of the config's datasets written exactly as lorac train will
 * train it (before packing and shuffling): {"input_ids": [...], "labels":
 * [...]} with −100 where unsupervised, kept rows in file order. A row that is
 * dropped (longer than sequence_len, shorter than 2 tokens, nothing
 * supervised) is counted in the summary and, with --debug, listed with its
 * file, line and reason; a row that cannot be read is an error. OUT is a
 * `type: tokenized` dataset that trains exactly like the config's own.
 *
 * --debug shows the first N rows of each dataset (default 3) as text with
 * the supervised spans marked, as Axolotl's preprocess --debug does: green
 * on a terminal, else between «» (and the id/label pairs with --debug-ids).
 * The summary — rows, tokens, supervised share, truncated and dropped rows
 * and why — is the same line lorac train prints at its start. */
#ifndef LC_PREPROCESS_H
#define LC_PREPROCESS_H

#include <stdbool.h>
#include <stdio.h>

#include "autograd/error.h"
#include "train/config.h"

typedef struct lc_preprocess_opts {
    const char *out;          /* OUT.jsonl; NULL: no rows written (summary / debug only) */
    bool force;               /* replace an existing OUT (never one of the inputs) */
    int debug_rows;           /* rows shown per dataset (0: none) */
    bool color;               /* mark spans with ANSI colors instead of «» */
} lc_preprocess_opts;

/* Runs preprocess on config c; the summary and debug output go to log. */
int lc_preprocess(const lc_train_config *c, const lc_preprocess_opts *o, FILE *log,
                  lc_error *err);

#endif

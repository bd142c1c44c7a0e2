/* text_jsonl.h — `lorac tokenize`: JSONL rows {"text": "..."} turned into
 * rows {"input_ids": [...]} with a model's tokenizer (data/tokenizer.h).
 *
 * The input is read a line at a time (at most LC_JSONL_MAX_LINE bytes a
 * line, never the whole file); blank lines are skipped; every other line
 * must be a JSON object whose "text" is a string of valid UTF-8, else the
 * error is "FILE:LINE: what". Output goes to a stream the caller gives
 * (main.c passes stdout), one line per input row, nothing else. */
#ifndef LC_TEXT_JSONL_H
#define LC_TEXT_JSONL_H

#include <stdbool.h>
#include <stdio.h>

#include "autograd/error.h"
#include "data/tokenizer.h"

struct cJSON;

/* One row line[0..n) parsed into a JSON object *row (cJSON_Delete it):
 * "WHERE: not valid JSON", "a row must be a JSON object", or a \u0000 escape
 * (cJSON would cut the string there) refused. */
int lc_json_row_object(const char *line, size_t n, const char *where, struct cJSON **row,
                       lc_error *err);

/* The string `field` of one row line[0..n): *text points into *owner
 * (cJSON_Delete it). Also the row parser of completion datasets. */
int lc_text_row_parse(const char *line, size_t n, const char *field, const char *where,
                      const char **text, size_t *len, struct cJSON **owner, lc_error *err);

/* Tokenizes every row of the JSONL file at path (HF's
 * tokenizer(text, add_special_tokens=add_special)) and writes one
 * {"input_ids": [...]} line per row to out. *rows: rows written. */
int lc_text_jsonl_tokenize(lc_tokenizer *t, const char *path, bool add_special, FILE *out,
                           long long *rows, lc_error *err);

#endif

/* jsonl.h — streaming reader of tokenized JSONL datasets, and of text
 * datasets (completion, alpaca, chat_template, input_output: data/row_encoder.h)
 * tokenized as they are read.
 *
 * One row per line: {"input_ids": [...], "labels": [...]} (labels optional,
 * default = input_ids; −100 = not trained; "attention_mask", when present,
 * must be all ones). Read a line at a time, never the whole file; every bad
 * row is an error "FILE:LINE: what". Ids must lie in [0, vocab). The byte
 * offset of each row is reported so a trainer can resume mid-file.
 *
 * Text mode (lc_jsonl_open_encoded): each line is encoded; a completion text
 * is split into sequence_len chunks as Axolotl does, every chunk a row (same
 * line and offset), so the row count a resume skips stays exact. */
#ifndef LC_JSONL_H
#define LC_JSONL_H

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "autograd/error.h"
#include "data/row_encoder.h"

#define LC_JSONL_MAX_LINE (64u << 20)

typedef struct lc_row {
    const int32_t *input_ids;  /* [len], owned by the reader until the next call */
    const int32_t *labels;     /* [len] */
    int64_t len;
    int64_t line;              /* 1-based line number */
    int64_t offset;            /* byte offset of the line's start */
    bool truncated;            /* completion: first chunk of a text cut at its max length */
} lc_row;

typedef struct lc_jsonl_reader {
    FILE *f;
    char *path;
    char *line;
    size_t line_cap;
    int64_t line_no;
    int64_t offset;            /* byte offset of the next line */
    int64_t vocab;
    int32_t *ids, *labels;
    size_t cap;
    /* text datasets (enc NULL: tokenized rows): each line encoded, then split
     * into chunk-token rows (completion; other types: chunk INT64_MAX) */
    lc_row_encoder *enc;
    int64_t chunk;
    lc_ids text, text_labels;  /* the current line's ids and labels */
    size_t text_pos;           /* where its next chunk starts (text.n: none left) */
    bool text_truncated;
    int64_t text_line, text_offset;
} lc_jsonl_reader;

int lc_jsonl_open(lc_jsonl_reader *r, const char *path, int64_t vocab, lc_error *err);
/* A text dataset: each line encoded with enc (borrowed; data/row_encoder.h),
 * its ids split into rows of at most chunk tokens (0: never split). A row
 * whose encoding is empty comes back with len 0 (the caller counts it). */
int lc_jsonl_open_encoded(lc_jsonl_reader *r, const char *path, int64_t vocab,
                          lc_row_encoder *enc, int64_t chunk, lc_error *err);
/* 1: *row filled; 0: end of file; −1: error. Blank lines are skipped. */
int lc_jsonl_next(lc_jsonl_reader *r, lc_row *row, lc_error *err);
/* Continue reading at a row saved earlier: its lc_row offset and line. */
int lc_jsonl_seek(lc_jsonl_reader *r, int64_t offset, int64_t line_no, lc_error *err);
void lc_jsonl_close(lc_jsonl_reader *r);

/* Reads one line of f (its '\n' included, NUL-terminated) into *line (grown
 * with realloc, *line_cap bytes), at most LC_JSONL_MAX_LINE + 1 bytes of it,
 * so a longer line is seen as such without reading it all. Returns the byte
 * count, -1 at end of file or on a read error, -2 when out of memory. */
ssize_t lc_read_line_bounded(FILE *f, char **line, size_t *line_cap);

/* Parses one row's JSON text into ids/labels (each with room for *cap
 * values, grown with realloc). For the reader and the fuzzer. */
int lc_jsonl_parse_row(const char *text, size_t len, int64_t vocab, const char *where,
                       int32_t **ids, int32_t **labels, size_t *cap, int64_t *out_len,
                       lc_error *err);

#endif

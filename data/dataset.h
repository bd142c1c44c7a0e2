/* dataset.h — tokenized JSONL datasets streamed into micro-batches.
 *
 * A first pass (lc_dataset_scan) reads every row once and keeps only its
 * length and supervised-token count (8 bytes a row): it gives the label
 * audit, where every row went (kept, truncated, dropped and why; rows are
 * dropped or cut as Axolotl does), and — by replaying the same seeded
 * shuffle and packing over lengths alone — the exact number of micro-batches
 * of every epoch, so the LR schedule and the ETA are right from step one.
 *
 * Training then streams rows file by file through a seeded shuffle buffer
 * (rows are never all in memory) and packs them: unpacked, one row per
 * batch row, padded to the longest row of the micro-batch; packed, rows laid
 * greedily into sequence_len windows as separate segments (block-diagonal
 * attention, positions restarting at 0). The stream position is a plain
 * (epoch, rows emitted) pair: resuming replays the epoch's shuffle and skips
 * that many rows, which reproduces the exact same batches. */
#ifndef LC_DATASET_H
#define LC_DATASET_H

#include <stdbool.h>
#include <stdint.h>

#include "data/batch.h"
#include "data/jsonl.h"
#include "data/row_encoder.h"

#define LC_SHUFFLE_BUFFER_ROWS 4096

/* What happens to a row longer than sequence_len (Axolotl's excess_length_strategy). */
typedef enum lc_excess { LC_EXCESS_DROP, LC_EXCESS_TRUNCATE, LC_EXCESS_RAISE } lc_excess;

#define LC_MIN_ROW_TOKENS 2   /* Axolotl's min_sample_len default: shorter rows are dropped */

typedef struct lc_dataset_opts {
    char *const *paths;
    int n_paths;
    int64_t vocab;
    int64_t seq_len;
    lc_excess excess;        /* rows longer than seq_len (completion texts are split instead) */
    /* text datasets: encoders[f] non-NULL reads paths[f] through it (NULL
     * encoders: all tokenized) */
    lc_row_encoder *const *encoders;
    /* val_set_size: bit i of holdout set = the i-th kept row (file order) is
     * held out for evaluation; side 0 reads every row, 1 the others (training),
     * 2 the held-out ones (evaluation) */
    const uint8_t *holdout;
    int holdout_side;
    int64_t micro_batch;     /* rows (unpacked) or windows (packed) per micro-batch */
    bool shuffle;
    bool packing;
    uint64_t seed;
} lc_dataset_opts;

typedef struct lc_row_stats {
    int32_t len;             /* after truncation */
    int32_t supervised;      /* targets ≥ 0 after the causal shift */
} lc_row_stats;

/* Where the rows went: every line of the files is in exactly one count
 * (completion lines split into chunks count each chunk). */
typedef struct lc_data_counts {
    int64_t lines;           /* non-blank lines read */
    int64_t rows;            /* rows trained (kept) */
    int64_t chunked;         /* extra rows made by splitting long completion texts */
    int64_t truncated;       /* kept rows cut to seq_len (truncate), or texts cut at 64×seq_len */
    int64_t dropped_long;    /* longer than seq_len (drop) */
    int64_t dropped_short;   /* fewer than LC_MIN_ROW_TOKENS tokens (incl. empty) */
    int64_t dropped_untrained; /* no supervised token after the causal shift */
    int64_t held_out;        /* kept rows set aside for evaluation (val_set_size) */
    int64_t tokens;          /* of kept rows, after truncation */
    int64_t supervised;
} lc_data_counts;

typedef struct lc_dataset_scan {
    lc_row_stats *rows;      /* [n_rows] kept rows in file order */
    int64_t n_rows;
    int64_t n_truncated;
    int64_t tokens;          /* after truncation */
    int64_t supervised;
    lc_data_counts counts;
    int64_t kept_seen;       /* kept rows of either side (val_set_size) */
} lc_dataset_scan;

int lc_dataset_scan_files(lc_dataset_scan *s, const lc_dataset_opts *o, lc_error *err);
void lc_dataset_scan_free(lc_dataset_scan *s);
/* Micro-batches epoch `epoch` yields (replays shuffle + packing on lengths). */
int64_t lc_dataset_epoch_batches(const lc_dataset_scan *s, const lc_dataset_opts *o, int64_t epoch);

/* val_set_size (Axolotl's): of the n_rows kept rows of a side-0 scan,
 * `size` rows (as_rows) or ceil(size × n_rows) (a fraction) are held out,
 * chosen by a seeded hash of their index; *bits (malloc'd, a bit per row)
 * marks them. Then lc_dataset_scan_split keeps the rows of one side in s. */
int lc_dataset_holdout_make(const lc_dataset_scan *s, double size, bool as_rows, uint64_t seed,
                            uint8_t **bits, lc_error *err);
void lc_dataset_scan_split(lc_dataset_scan *s, const uint8_t *bits, int side);

/* Counts row in k as a new line or (the same line as the last row: a split
 * completion text) an extra row; *last_line starts at −1 for each file. */
void lc_data_count_line(lc_data_counts *k, const lc_row *row, int64_t *last_line);

/* Opens file f of o with the reader its type needs (its encoder, or the
 * tokenized reader). */
int lc_dataset_open_file(lc_jsonl_reader *r, const lc_dataset_opts *o, int f, lc_error *err);

/* What the stream does with one row as read (len tokens, its labels): 0 keep
 * (*len cut to seq_len when truncated), 1 drop (*reason counted in c when c
 * is non-NULL), −1 error (excess raise; the caller prefixes FILE:LINE). The
 * one rule scan, stream and
 * `lorac preprocess` share. */
int lc_dataset_row_fate(const lc_dataset_opts *o, const lc_row *row, int64_t *len,
                        lc_data_counts *c, lc_error *err);

typedef struct lc_pending_row {
    int32_t *ids, *labels;
    int64_t len;
} lc_pending_row;

typedef struct lc_dataset_stream {
    lc_dataset_opts o;
    int64_t epoch;
    int64_t rows_emitted;    /* rows handed to batches this epoch */
    int file;                /* index into paths */
    lc_jsonl_reader reader;
    bool reader_open;
    bool files_done;
    uint64_t rng;
    lc_pending_row *buf;     /* shuffle buffer [LC_SHUFFLE_BUFFER_ROWS] */
    int64_t buf_n;
    lc_pending_row carry;    /* a row drawn but not yet placed (packing overflow) */
    int64_t kept_seen;       /* kept rows read this epoch, either side (val_set_size) */
    bool has_carry;
} lc_dataset_stream;

int lc_dataset_stream_open(lc_dataset_stream *st, const lc_dataset_opts *o, int64_t epoch,
                           int64_t skip_rows, lc_error *err);
void lc_dataset_stream_close(lc_dataset_stream *st);
/* Fills b (cleared first) with the next micro-batch. Returns 1 when a
 * micro-batch was produced, 0 at the end of the epoch, −1 on error.
 * b must have B = micro_batch and T = seq_len; *T_used gets the columns
 * actually needed (≤ seq_len: the longest row or fullest window). */
int lc_dataset_next_batch(lc_dataset_stream *st, lc_batch_buf *b, int64_t *T_used, lc_error *err);

#endif

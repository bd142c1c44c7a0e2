/* batch.h — micro-batch buffers: token ids, shifted targets, positions and
 * packing segments for B rows of T tokens.
 *
 * The causal shift happens here, once: targets[t] = labels[t+1] inside the
 * same row (segment), −100 at a row's last token and on padding, so the loss
 * never sees a label across a row boundary. Positions restart at 0 for every
 * row, also for rows packed into one window. */
#ifndef LC_BATCH_H
#define LC_BATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "autograd/error.h"

/* The label of a token that is not trained (HF's ignore_index; JSONL rows,
 * dataset encoders, shifted targets and padding all use it). */
#define LC_LABEL_IGNORE (-100)

/* What the model consumes: B rows of T tokens, row-major. */
typedef struct lc_batch {
    int64_t B, T;
    const int32_t *input_ids;   /* [B·T] */
    const int32_t *targets;     /* [B·T] next-token labels, −100 = ignored */
    const int32_t *positions;   /* [B·T] */
    const int32_t *segments;    /* [B·T] or NULL (packed rows: attend within a segment) */
} lc_batch;

typedef struct lc_batch_buf {
    int64_t B, T;
    int32_t *ids, *targets, *positions, *segments; /* [B·T] each */
    int64_t *fill;                                  /* [B] tokens used per row */
    int32_t *n_segments;                            /* [B] rows packed per window */
    bool packed;
} lc_batch_buf;

int lc_batch_buf_init(lc_batch_buf *b, int64_t B, int64_t T, lc_error *err);
void lc_batch_buf_free(lc_batch_buf *b);
/* Empties every window: padding ids 0, targets −100. */
void lc_batch_buf_clear(lc_batch_buf *b);
/* Appends a row (len ≤ T − fill[r]) to window r as a new segment. */
void lc_batch_buf_put(lc_batch_buf *b, int64_t r, const int32_t *ids, const int32_t *labels,
                      int64_t len);
/* Compacts the buffer in place to the rows and columns in use (windows with
 * tokens; the first T_used columns) and returns that view. The buffer must
 * be cleared before it is filled again. segments are NULL unless packed. */
void lc_batch_buf_compact(lc_batch_buf *b, int64_t T_used, bool packed, lc_batch *out);
/* Supervised target count of the whole buffer. */
int64_t lc_batch_buf_supervised(const lc_batch_buf *b);

#endif

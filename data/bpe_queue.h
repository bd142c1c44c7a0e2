/* bpe_queue.h — the priority queue of candidate merges in one BPE word:
 * pairs ordered by (merge rank, position), smallest first, as HF's heap.
 *
 * Why not one binary heap: a SentencePiece-style model merges a whole text
 * as one word, so the queue may hold millions of pairs, and every pop of a
 * heap that large walks ~20 levels of cache misses: the encode grew ~25x
 * for 8x the text. This queue keeps its work in cache (Sanders' sequence
 * heap, simplified): new pairs go to a small insertion heap; when that is
 * full it is emptied, in order, into a sorted run in one array; a pop takes
 * the smaller of the insertion heap's top and the smallest run head, the
 * run heads kept in a small heap of their own. Runs are read front to back.
 * A short word never fills the insertion heap: it is a plain binary heap.
 *
 * Pops come out in the order of (rank, position); pairs equal in both come
 * out in some order, as they do from HF's heap. */
#ifndef LC_BPE_QUEUE_H
#define LC_BPE_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "autograd/error.h"

typedef struct lc_bpe_pair { int32_t rank, pos, new_id; } lc_bpe_pair;

/* Pairs in the insertion heap before it becomes a run (12 KiB: in L1). */
#define LC_BPE_QUEUE_INSERT 1024

/* A sorted run: runs[next..end) still to pop. */
typedef struct lc_bpe_run { size_t next, end; } lc_bpe_run;

typedef struct lc_bpe_queue {
    lc_bpe_pair *insert;   /* binary heap, [LC_BPE_QUEUE_INSERT] */
    size_t n_insert;
    lc_bpe_pair *runs;     /* the runs one after another, [runs_cap] */
    size_t runs_len, runs_cap;
    lc_bpe_run *heads;     /* binary heap by runs[next], [heads_cap] */
    size_t n_heads, heads_cap;
} lc_bpe_queue;

/* Empties q, with room for max_pushes pushes until the next reset. */
int lc_bpe_queue_reset(lc_bpe_queue *q, size_t max_pushes, lc_error *err);
/* Adds p; at most max_pushes since the reset. */
void lc_bpe_queue_push(lc_bpe_queue *q, lc_bpe_pair p);
/* Removes the smallest pair into *p; 0 when the queue was empty. */
int lc_bpe_queue_pop(lc_bpe_queue *q, lc_bpe_pair *p);
void lc_bpe_queue_free(lc_bpe_queue *q);

#endif

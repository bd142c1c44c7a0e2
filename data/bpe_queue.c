/* bpe_queue.c — the cache-friendly priority queue of BPE merge candidates
 * (see bpe_queue.h for why and how). */
#include "data/bpe_queue.h"

#include <stdlib.h>

static int pair_less(const lc_bpe_pair *a, const lc_bpe_pair *c)
{
    return a->rank != c->rank ? a->rank < c->rank : a->pos < c->pos;
}

static void heap_push(lc_bpe_pair *h, size_t *n, lc_bpe_pair p)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pair_less(&p, &h[parent]))
            break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = p;
}

static lc_bpe_pair heap_pop(lc_bpe_pair *h, size_t *n)
{
    lc_bpe_pair top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && pair_less(&h[c + 1], &h[c]))
            c++;
        if (!pair_less(&h[c], &last))
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = last;
    return top;
}

/* ---- the heap of run heads, ordered by each run's next pair ---------------- */
static int head_less(const lc_bpe_queue *q, const lc_bpe_run *a, const lc_bpe_run *c)
{
    return pair_less(&q->runs[a->next], &q->runs[c->next]);
}

static void heads_push(lc_bpe_queue *q, lc_bpe_run r)
{
    size_t i = q->n_heads++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!head_less(q, &r, &q->heads[parent]))
            break;
        q->heads[i] = q->heads[parent];
        i = parent;
    }
    q->heads[i] = r;
}

/* Puts r (a changed heads[0], or the last head when heads[0] is done) at the top and sifts it down. */
static void heads_sift_down(lc_bpe_queue *q, lc_bpe_run r)
{
    size_t i = 0, n = q->n_heads;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && head_less(q, &q->heads[c + 1], &q->heads[c]))
            c++;
        if (!head_less(q, &q->heads[c], &r))
            break;
        q->heads[i] = q->heads[c];
        i = c;
    }
    q->heads[i] = r;
}

/* ---- the queue ----------------------------------------------------------- */
int lc_bpe_queue_reset(lc_bpe_queue *q, size_t max_pushes, lc_error *err)
{
    q->n_insert = q->runs_len = q->n_heads = 0;
    if (!q->insert && !(q->insert = malloc(LC_BPE_QUEUE_INSERT * sizeof *q->insert)))
        return lc_error_set(err, "tokenizer: out of memory for the merge queue");
    if (max_pushes <= LC_BPE_QUEUE_INSERT)
        return 0; /* never a run */
    if (q->runs_cap < max_pushes) {
        lc_bpe_pair *runs = realloc(q->runs, max_pushes * sizeof *runs);
        if (!runs)
            return lc_error_set(err, "tokenizer: out of memory for %zu merge candidates",
                                max_pushes);
        q->runs = runs;
        q->runs_cap = max_pushes;
    }
    size_t max_runs = max_pushes / LC_BPE_QUEUE_INSERT + 1;
    if (q->heads_cap < max_runs) {
        lc_bpe_run *heads = realloc(q->heads, max_runs * sizeof *heads);
        if (!heads)
            return lc_error_set(err, "tokenizer: out of memory for the merge queue");
        q->heads = heads;
        q->heads_cap = max_runs;
    }
    return 0;
}

void lc_bpe_queue_push(lc_bpe_queue *q, lc_bpe_pair p)
{
    if (q->n_insert == LC_BPE_QUEUE_INSERT) { /* full: empty it, in order, into a run */
        lc_bpe_run r = {q->runs_len, q->runs_len + q->n_insert};
        while (q->n_insert > 0)
            q->runs[q->runs_len++] = heap_pop(q->insert, &q->n_insert);
        heads_push(q, r);
    }
    heap_push(q->insert, &q->n_insert, p);
}

int lc_bpe_queue_pop(lc_bpe_queue *q, lc_bpe_pair *p)
{
    if (q->n_heads > 0 &&
        (q->n_insert == 0 || pair_less(&q->runs[q->heads[0].next], &q->insert[0]))) {
        lc_bpe_run top = q->heads[0];
        *p = q->runs[top.next++];
        if (top.next == top.end)
            top = q->heads[--q->n_heads];
        if (q->n_heads > 0)
            heads_sift_down(q, top);
        return 1;
    }
    if (q->n_insert == 0)
        return 0;
    *p = heap_pop(q->insert, &q->n_insert);
    return 1;
}

void lc_bpe_queue_free(lc_bpe_queue *q)
{
    free(q->insert);
    free(q->runs);
    free(q->heads);
    q->insert = q->runs = NULL;
    q->heads = NULL;
    q->n_insert = q->runs_len = q->runs_cap = q->n_heads = q->heads_cap = 0;
}

/* batch.c — see batch.h. */
#include "data/batch.h"

#include <stdlib.h>
#include <string.h>

int lc_batch_buf_init(lc_batch_buf *b, int64_t B, int64_t T, lc_error *err)
{
    memset(b, 0, sizeof *b);
    b->B = B;
    b->T = T;
    size_t n = (size_t)(B * T);
    b->ids = malloc(n * sizeof(int32_t));
    b->targets = malloc(n * sizeof(int32_t));
    b->positions = malloc(n * sizeof(int32_t));
    b->segments = malloc(n * sizeof(int32_t));
    b->fill = calloc((size_t)B, sizeof(int64_t));
    b->n_segments = calloc((size_t)B, sizeof(int32_t));
    if (!b->ids || !b->targets || !b->positions || !b->segments || !b->fill || !b->n_segments) {
        lc_batch_buf_free(b);
        return lc_error_set(err, "out of memory for a %lld x %lld batch", (long long)B,
                            (long long)T);
    }
    lc_batch_buf_clear(b);
    return 0;
}

void lc_batch_buf_free(lc_batch_buf *b)
{
    free(b->ids);
    free(b->targets);
    free(b->positions);
    free(b->segments);
    free(b->fill);
    free(b->n_segments);
    memset(b, 0, sizeof *b);
}

void lc_batch_buf_clear(lc_batch_buf *b)
{
    for (int64_t i = 0; i < b->B * b->T; i++) {
        b->ids[i] = 0;
        b->targets[i] = LC_LABEL_IGNORE;
        b->positions[i] = (int32_t)(i % b->T);
        b->segments[i] = -1; /* padding: its own segment */
    }
    memset(b->fill, 0, (size_t)b->B * sizeof(int64_t));
    memset(b->n_segments, 0, (size_t)b->B * sizeof(int32_t));
}

void lc_batch_buf_put(lc_batch_buf *b, int64_t r, const int32_t *ids, const int32_t *labels,
                      int64_t len)
{
    int64_t start = b->fill[r];
    LC_ASSERT(r >= 0 && r < b->B && len > 0 && start + len <= b->T);
    int32_t seg = b->n_segments[r]++;
    int32_t *I = b->ids + r * b->T + start, *Tg = b->targets + r * b->T + start;
    int32_t *P = b->positions + r * b->T + start, *S = b->segments + r * b->T + start;
    for (int64_t t = 0; t < len; t++) {
        I[t] = ids[t];
        Tg[t] = t + 1 < len ? labels[t + 1] : LC_LABEL_IGNORE;
        P[t] = (int32_t)t;
        S[t] = seg;
    }
    b->fill[r] = start + len;
    /* Padding after the row continues its positions harmlessly; it has its
     * own segment id and no targets. */
    for (int64_t t = start + len; t < b->T; t++)
        b->positions[r * b->T + t] = (int32_t)(t - start);
}

int64_t lc_batch_buf_supervised(const lc_batch_buf *b)
{
    int64_t n = 0;
    for (int64_t i = 0; i < b->B * b->T; i++)
        n += b->targets[i] >= 0;
    return n;
}

void lc_batch_buf_compact(lc_batch_buf *b, int64_t T_used, bool packed, lc_batch *out)
{
    int64_t B_used = 0;
    for (int64_t r = 0; r < b->B; r++)
        if (b->fill[r] > 0)
            B_used = r + 1;
    LC_ASSERT(T_used >= 1 && T_used <= b->T);
    int32_t *arrays[4] = {b->ids, b->targets, b->positions, b->segments};
    for (int a = 0; a < 4; a++)
        for (int64_t r = 1; r < B_used; r++)
            memmove(arrays[a] + r * T_used, arrays[a] + r * b->T, (size_t)T_used * sizeof(int32_t));
    *out = (lc_batch){B_used, T_used, b->ids, b->targets, b->positions,
                                  packed ? b->segments : NULL};
}

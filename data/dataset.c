/* dataset.c — see dataset.h. */
#include "data/dataset.h"
#include "autograd/hash.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int lc_dataset_open_file(lc_jsonl_reader *r, const lc_dataset_opts *o, int f, lc_error *err)
{
    lc_row_encoder *enc = o->encoders ? o->encoders[f] : NULL;
    if (enc) {
        bool split = lc_row_encoder_spec(enc)->type == LC_DS_COMPLETION;
        return lc_jsonl_open_encoded(r, o->paths[f], o->vocab, enc, split ? o->seq_len : 0, err);
    }
    return lc_jsonl_open(r, o->paths[f], o->vocab, err);
}

static bool held(const uint8_t *bits, int64_t i) { return bits[i >> 3] >> (i & 7) & 1; }

/* Whether the i-th kept row belongs to the side o reads. */
static bool on_side(const lc_dataset_opts *o, int64_t i)
{
    return !o->holdout_side || held(o->holdout, i) == (o->holdout_side == 2);
}

static int64_t row_supervised(const int32_t *labels, int64_t len)
{
    int64_t n = 0;
    for (int64_t t = 1; t < len; t++)
        n += labels[t] >= 0;
    return n;
}

void lc_data_count_line(lc_data_counts *k, const lc_row *row, int64_t *last_line)
{
    if (row->line != *last_line)
        k->lines++;
    else
        k->chunked++;
    *last_line = row->line;
}

int lc_dataset_row_fate(const lc_dataset_opts *o, const lc_row *row, int64_t *len,
                        lc_data_counts *c, lc_error *err)
{
    lc_data_counts none = {0};
    if (!c)
        c = &none;
    *len = row->len;
    if (row->len > o->seq_len) {
        if (o->excess == LC_EXCESS_RAISE)
            return lc_error_set(err, "%lld tokens, more than sequence_len %lld "
                                "(excess_length_strategy: raise)", (long long)row->len,
                                (long long)o->seq_len);
        if (o->excess == LC_EXCESS_DROP) {
            c->dropped_long++;
            return 1;
        }
        *len = o->seq_len;
    }
    if (*len < LC_MIN_ROW_TOKENS) {
        c->dropped_short++;
        return 1;
    }
    int64_t sup = row_supervised(row->labels, *len);
    if (sup == 0) {
        c->dropped_untrained++;
        return 1;
    }
    c->rows++;
    c->truncated += *len < row->len || row->truncated;
    c->tokens += *len;
    c->supervised += sup;
    return 0;
}

static int scan_file(lc_dataset_scan *s, const lc_dataset_opts *o, int f, size_t *cap,
                     lc_error *err)
{
    lc_jsonl_reader r;
    if (lc_dataset_open_file(&r, o, f, err))
        return -1;
    lc_row row;
    int rc;
    int64_t last_line = -1;
    while ((rc = lc_jsonl_next(&r, &row, err)) == 1) {
        lc_data_count_line(&s->counts, &row, &last_line);
        int64_t len;
        lc_data_counts k = s->counts;
        int fate = lc_dataset_row_fate(o, &row, &len, &k, err);
        if (fate == 0 && !on_side(o, s->kept_seen++)) {
            s->counts.held_out += o->holdout_side == 1;
            continue;
        }
        s->counts = k;
        if (fate < 0) {
            rc = lc_error_prefix(err, "%s:%lld", o->paths[f], (long long)row.line);
            break;
        }
        if (fate > 0)
            continue;
        if ((size_t)s->n_rows == *cap) {
            *cap = *cap ? *cap * 2 : 1024;
            lc_row_stats *p = realloc(s->rows, *cap * sizeof *p);
            if (!p) {
                rc = lc_error_set(err, "out of memory scanning %s", o->paths[f]);
                break;
            }
            s->rows = p;
        }
        s->rows[s->n_rows++] = (lc_row_stats){(int32_t)len,
                                              (int32_t)row_supervised(row.labels, len)};
    }
    lc_jsonl_close(&r);
    return rc < 0 ? -1 : 0;
}

int lc_dataset_scan_files(lc_dataset_scan *s, const lc_dataset_opts *o, lc_error *err)
{
    memset(s, 0, sizeof *s);
    size_t cap = 0;
    for (int f = 0; f < o->n_paths; f++)
        if (scan_file(s, o, f, &cap, err)) {
            lc_dataset_scan_free(s);
            return -1;
        }
    s->n_truncated = s->counts.truncated;
    s->tokens = s->counts.tokens;
    s->supervised = s->counts.supervised;
    return 0;
}

typedef struct keyed { uint64_t key; int64_t index; } keyed;

static int keyed_less(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    return x->key < y->key ? -1 : x->key > y->key ? 1 : (x->index > y->index) - (x->index < y->index);
}

int lc_dataset_holdout_make(const lc_dataset_scan *s, double size, bool as_rows, uint64_t seed,
                            uint8_t **bits, lc_error *err)
{
    int64_t n = s->n_rows;
    double want = as_rows ? size : ceil(size * (double)n);
    *bits = NULL;
    if (want >= (double)n)
        return lc_error_set(err, "val_set_size %g would hold out %.0f of the %lld rows, leaving "
                            "none to train on", size, want, (long long)n);
    int64_t k = (int64_t)want;
    keyed *order = malloc((size_t)(n ? n : 1) * sizeof *order);
    *bits = calloc((size_t)(n / 8 + 1), 1);
    if (!order || !*bits) {
        free(order);
        free(*bits);
        *bits = NULL;
        return lc_error_set(err, "out of memory for val_set_size");
    }
    for (int64_t i = 0; i < n; i++)
        order[i] = (keyed){lc_splitmix64(seed ^ lc_splitmix64((uint64_t)i + 0x5eedull)), i};
    qsort(order, (size_t)n, sizeof *order, keyed_less);
    for (int64_t j = 0; j < k; j++)
        (*bits)[order[j].index >> 3] |= (uint8_t)(1u << (order[j].index & 7));
    free(order);
    return 0;
}

void lc_dataset_scan_split(lc_dataset_scan *s, const uint8_t *bits, int side)
{
    int64_t m = 0, held_n = 0;
    s->tokens = s->supervised = 0;
    for (int64_t i = 0; i < s->n_rows; i++) {
        held_n += held(bits, i);
        if (held(bits, i) != (side == 2))
            continue;
        s->rows[m++] = s->rows[i];
        s->tokens += s->rows[i].len;
        s->supervised += s->rows[i].supervised;
    }
    s->n_rows = m;
    s->counts.rows = m;
    s->counts.tokens = s->tokens;
    s->counts.supervised = s->supervised;
    s->counts.held_out = side == 2 ? 0 : held_n;
}

void lc_dataset_scan_free(lc_dataset_scan *s)
{
    free(s->rows);
    memset(s, 0, sizeof *s);
}

/* Source of rows in file order: the JSONL files, or (lengths-only mode,
 * used to count batches) the scan. */
typedef struct source {
    lc_dataset_stream *st;
    const lc_dataset_scan *scan;  /* non-NULL: lengths-only mode */
    int64_t next_index;           /* lengths-only mode */
} source;

static void row_free(lc_pending_row *r)
{
    free(r->ids);
    free(r->labels);
    memset(r, 0, sizeof *r);
}

/* Reads the next row in file order into *dst. 1 ok, 0 exhausted, −1 error. */
static int source_next(source *src, lc_pending_row *dst, lc_error *err)
{
    lc_dataset_stream *st = src->st;
    if (src->scan) {
        if (src->next_index >= src->scan->n_rows)
            return 0;
        dst->len = src->scan->rows[src->next_index++].len;
        return 1;
    }
    for (;;) {
        if (st->files_done)
            return 0;
        if (!st->reader_open) {
            if (st->file >= st->o.n_paths) {
                st->files_done = true;
                return 0;
            }
            if (lc_dataset_open_file(&st->reader, &st->o, st->file, err))
                return -1;
            st->reader_open = true;
        }
        lc_row row;
        int rc = lc_jsonl_next(&st->reader, &row, err);
        if (rc < 0)
            return -1;
        if (rc == 0) {
            lc_jsonl_close(&st->reader);
            st->reader_open = false;
            st->file++;
            continue;
        }
        int64_t len;
        int fate = lc_dataset_row_fate(&st->o, &row, &len, NULL, err);
        if (fate < 0)
            return lc_error_prefix(err, "%s:%lld", st->o.paths[st->file], (long long)row.line);
        if (fate > 0 || !on_side(&st->o, st->kept_seen++))
            continue;
        int32_t *ids = realloc(dst->ids, (size_t)len * sizeof(int32_t));
        if (ids)
            dst->ids = ids;
        int32_t *labels = realloc(dst->labels, (size_t)len * sizeof(int32_t));
        if (labels)
            dst->labels = labels;
        if (!ids || !labels)
            return lc_error_set(err, "out of memory for a row of %lld tokens", (long long)len);
        memcpy(dst->ids, row.input_ids, (size_t)len * sizeof(int32_t));
        memcpy(dst->labels, row.labels, (size_t)len * sizeof(int32_t));
        dst->len = len;
        return 1;
    }
}

/* Draws the next row of the epoch's order into *out (swapping buffers, no
 * copy). Shuffle buffer: fill to capacity, pick a uniform slot, refill it. */
static int draw_row(source *src, lc_pending_row *out, lc_error *err)
{
    lc_dataset_stream *st = src->st;
    if (!st->o.shuffle)
        return source_next(src, out, err);
    while (st->buf_n < LC_SHUFFLE_BUFFER_ROWS) {
        int rc = source_next(src, &st->buf[st->buf_n], err);
        if (rc < 0)
            return -1;
        if (rc == 0)
            break;
        st->buf_n++;
    }
    if (st->buf_n == 0)
        return 0;
    int64_t j = (int64_t)(lc_rng_next(&st->rng) % (uint64_t)st->buf_n);
    lc_pending_row tmp = *out;
    *out = st->buf[j];
    st->buf[j] = st->buf[st->buf_n - 1];
    st->buf[st->buf_n - 1] = tmp; /* keep the spare allocation for reuse */
    st->buf_n--;
    return 1;
}

static void stream_reset(lc_dataset_stream *st, const lc_dataset_opts *o, int64_t epoch)
{
    memset(st, 0, sizeof *st);
    st->o = *o;
    st->epoch = epoch;
    st->rng = o->seed * 0x2545f4914f6cdd1dull + (uint64_t)epoch + 1;
}

/* Core of batching, shared by the real stream and the lengths-only count.
 * b may be NULL (counting). Returns 1 / 0 / −1 like lc_dataset_next_batch. */
static int next_batch(source *src, lc_batch_buf *b, int64_t *T_used, lc_error *err)
{
    lc_dataset_stream *st = src->st;
    const int64_t B = st->o.micro_batch, T = st->o.seq_len;
    if (b)
        lc_batch_buf_clear(b);
    int64_t window = 0, fill = 0, used = 0, placed = 0;
    for (;;) {
        if (!st->has_carry) {
            int rc = draw_row(src, &st->carry, err);
            if (rc < 0)
                return -1;
            if (rc == 0)
                break;
            st->has_carry = true;
        }
        lc_pending_row *r = &st->carry;
        if (st->o.packing) {
            if (fill + r->len > T) {
                if (window + 1 >= B)
                    break; /* batch full: the row opens the next one */
                window++;
                fill = 0;
            }
        } else if (placed == B) {
            break;
        } else {
            window = placed;
            fill = 0;
        }
        if (b)
            lc_batch_buf_put(b, window, r->ids, r->labels, r->len);
        fill += r->len;
        used = fill > used ? fill : used;
        placed++;
        st->rows_emitted++;
        st->has_carry = false;
    }
    if (placed == 0)
        return 0;
    if (T_used)
        *T_used = used;
    return 1;
}

static void stream_free_rows(lc_dataset_stream *st)
{
    if (st->buf) {
        for (int64_t i = 0; i < LC_SHUFFLE_BUFFER_ROWS; i++)
            row_free(&st->buf[i]);
        free(st->buf);
    }
    row_free(&st->carry);
}

int64_t lc_dataset_epoch_batches(const lc_dataset_scan *s, const lc_dataset_opts *o, int64_t epoch)
{
    lc_dataset_stream st;
    stream_reset(&st, o, epoch);
    st.buf = calloc(LC_SHUFFLE_BUFFER_ROWS, sizeof *st.buf);
    LC_ASSERT(st.buf);
    source src = {&st, s, 0};
    int64_t n = 0;
    while (next_batch(&src, NULL, NULL, NULL) == 1)
        n++;
    stream_free_rows(&st);
    return n;
}

int lc_dataset_stream_open(lc_dataset_stream *st, const lc_dataset_opts *o, int64_t epoch,
                           int64_t skip_rows, lc_error *err)
{
    stream_reset(st, o, epoch);
    st->buf = calloc(LC_SHUFFLE_BUFFER_ROWS, sizeof *st->buf);
    if (!st->buf)
        return lc_error_set(err, "out of memory for the shuffle buffer");
    source src = {st, NULL, 0};
    lc_pending_row tmp = {0};
    for (int64_t i = 0; i < skip_rows; i++) {
        int rc = draw_row(&src, &tmp, err);
        if (rc <= 0) {
            row_free(&tmp);
            lc_dataset_stream_close(st);
            if (rc == 0)
                return lc_error_set(err, "resume: the dataset has fewer rows than the "
                                    "checkpoint consumed (%lld); did it change?",
                                    (long long)skip_rows);
            return -1;
        }
    }
    row_free(&tmp);
    st->rows_emitted = skip_rows;
    return 0;
}

void lc_dataset_stream_close(lc_dataset_stream *st)
{
    if (st->reader_open)
        lc_jsonl_close(&st->reader);
    stream_free_rows(st);
    memset(st, 0, sizeof *st);
}

int lc_dataset_next_batch(lc_dataset_stream *st, lc_batch_buf *b, int64_t *T_used, lc_error *err)
{
    source src = {st, NULL, 0};
    return next_batch(&src, b, T_used, err);
}

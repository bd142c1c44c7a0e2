/* bpe.c — vocabulary and merge tables of a BPE model and HF's rank-ordered
 * merge of one word (see bpe.h for the algorithm and its cost). */
#include "data/bpe.h"

#include <stdlib.h>
#include <string.h>

#include "autograd/hash.h"
#include "data/tok_util.h"

int lc_ids_push(lc_ids *ids, int32_t id, lc_error *err)
{
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 64;
        int32_t *v = realloc(ids->v, cap * sizeof *v);
        if (!v)
            return lc_error_set(err, "tokenizer: out of memory for %zu ids", cap);
        ids->v = v;
        ids->cap = cap;
    }
    ids->v[ids->n++] = id;
    return 0;
}

void lc_ids_free(lc_ids *ids)
{
    free(ids->v);
    memset(ids, 0, sizeof *ids);
}

const char *lc_printable_n(const char *s, size_t n, char *buf, size_t cap)
{
    char tmp[LC_ERROR_MAX];
    if (cap > sizeof tmp)
        cap = sizeof tmp;
    size_t k = n < cap ? n : cap; /* one more than fits: lc_printable marks the cut */
    memcpy(tmp, s, k);
    tmp[k < sizeof tmp ? k : sizeof tmp - 1] = 0;
    return lc_printable(tmp, buf, cap);
}

/* ---- GPT-2 byte map ------------------------------------------------------ */
/* Printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for
 * themselves; the other 68 bytes take 256, 257, … in byte order. */
static int byte_is_printable(unsigned b)
{
    return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
}

uint32_t lc_bytelevel_char(uint8_t b)
{
    if (byte_is_printable(b))
        return b;
    uint32_t n = 0;
    for (unsigned c = 0; c < b; c++)
        n += !byte_is_printable(c);
    return 256 + n;
}

int lc_bytelevel_byte(uint32_t cp)
{
    if (cp < 256)
        return byte_is_printable(cp) ? (int)cp : -1;
    uint32_t n = cp - 256;
    for (unsigned c = 0; c < 256; c++)
        if (!byte_is_printable(c) && n-- == 0)
            return (int)c;
    return -1;
}

/* ---- tables ------------------------------------------------------------- */
static uint64_t str_hash(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    return h;
}

void lc_bpe_init(lc_bpe *b)
{
    memset(b, 0, sizeof *b);
    b->unk_id = -1;
    for (int i = 0; i < 256; i++)
        b->byte_id[i] = -1;
}

void lc_bpe_free(lc_bpe *b)
{
    free(b->pool);
    free(b->off);
    free(b->len);
    free(b->slots);
    free(b->mkeys);
    free(b->mrank);
    free(b->mnew);
    free(b->syms);
    lc_bpe_queue_free(&b->queue);
    free(b->joins);
    free(b->scratch);
    lc_bpe_init(b);
}

const char *lc_bpe_token(const lc_bpe *b, int32_t id, size_t *n)
{
    if (id < 0 || id >= b->n_ids || b->len[id] == UINT32_MAX)
        return NULL;
    *n = b->len[id];
    return b->pool + b->off[id];
}

int32_t lc_bpe_id(const lc_bpe *b, const char *s, size_t n)
{
    if (!b->slots)
        return -1;
    uint64_t h = str_hash(s, n);
    for (size_t i = h & b->slot_mask;; i = (i + 1) & b->slot_mask) {
        int32_t id = b->slots[i].id;
        if (id < 0)
            return -1;
        if (b->slots[i].check == (uint32_t)(h >> 32) && b->len[id] == n &&
            memcmp(b->pool + b->off[id], s, n) == 0)
            return id;
    }
}

static int slots_grow(lc_bpe *b, lc_error *err)
{
    size_t cap = b->slots ? (b->slot_mask + 1) * 2 : 1024;
    lc_bpe_slot *slots = malloc(cap * sizeof *slots);
    if (!slots)
        return lc_error_set(err, "tokenizer: out of memory for the vocabulary");
    memset(slots, 0xff, cap * sizeof *slots);
    for (size_t i = 0; b->slots && i <= b->slot_mask; i++) {
        int32_t id = b->slots[i].id;
        if (id < 0)
            continue;
        size_t j = str_hash(b->pool + b->off[id], b->len[id]) & (cap - 1);
        while (slots[j].id >= 0)
            j = (j + 1) & (cap - 1);
        slots[j] = b->slots[i];
    }
    free(b->slots);
    b->slots = slots;
    b->slot_mask = cap - 1;
    return 0;
}

int lc_bpe_add_token(lc_bpe *b, const char *s, size_t n, int32_t id, lc_error *err)
{
    if (id < 0 || id >= LC_BPE_MAX_ID)
        return lc_error_set(err, "id %d out of range [0, %d)", (int)id, LC_BPE_MAX_ID);
    if (n > LC_BPE_MAX_TOKEN)
        return lc_error_set(err, "token of %zu bytes (at most %d)", n, LC_BPE_MAX_TOKEN);
    if (id >= b->n_ids) {
        size_t cap = (size_t)id + 1 > (size_t)b->n_ids * 2 ? (size_t)id + 1 : (size_t)b->n_ids * 2;
        if (cap > LC_BPE_MAX_ID)
            cap = LC_BPE_MAX_ID;
        uint32_t *off = realloc(b->off, cap * sizeof *off);
        if (off)
            b->off = off;
        uint32_t *len = off ? realloc(b->len, cap * sizeof *len) : NULL;
        if (!len)
            return lc_error_set(err, "tokenizer: out of memory for %zu tokens", cap);
        b->len = len;
        for (size_t i = (size_t)b->n_ids; i < cap; i++)
            b->len[i] = UINT32_MAX;
        b->n_ids = (int32_t)cap;
    }
    char buf[64];
    if (b->len[id] != UINT32_MAX)
        return lc_error_set(err, "id %d given twice", (int)id);
    if (lc_bpe_id(b, s, n) >= 0)
        return lc_error_set(err, "token \"%s\" given twice",
                            lc_printable_n(s, n, buf, sizeof buf));
    if (b->pool_len + n > UINT32_MAX)
        return lc_error_set(err, "vocabulary larger than 4 GiB");
    if (b->pool_len + n > b->pool_cap || !b->pool) { /* allocated even for "" */
        size_t cap = b->pool_cap ? b->pool_cap * 2 : 1 << 16;
        while (cap < b->pool_len + n)
            cap *= 2;
        char *pool = realloc(b->pool, cap);
        if (!pool)
            return lc_error_set(err, "tokenizer: out of memory for the vocabulary");
        b->pool = pool;
        b->pool_cap = cap;
    }
    if ((b->n_tokens + 1) * 2 > (b->slots ? b->slot_mask + 1 : 0) && slots_grow(b, err))
        return -1;
    memcpy(b->pool + b->pool_len, s, n);
    b->off[id] = (uint32_t)b->pool_len;
    b->len[id] = (uint32_t)n;
    b->pool_len += n;
    uint64_t h = str_hash(s, n);
    size_t j = h & b->slot_mask;
    while (b->slots[j].id >= 0)
        j = (j + 1) & b->slot_mask;
    b->slots[j] = (lc_bpe_slot){id, (uint32_t)(h >> 32)};
    b->n_tokens++;
    return 0;
}

static uint64_t pair_key(int32_t l, int32_t r)
{
    return (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
}

/* Slot of key in the merge table (empty slot when absent). */
static size_t merge_slot(const lc_bpe *b, uint64_t key)
{
    size_t i = lc_splitmix64(key) & b->mmask;
    while (b->mkeys[i] != UINT64_MAX && b->mkeys[i] != key)
        i = (i + 1) & b->mmask;
    return i;
}

static int merges_grow(lc_bpe *b, lc_error *err)
{
    size_t cap = b->mkeys ? (b->mmask + 1) * 2 : 1024;
    uint64_t *keys = malloc(cap * sizeof *keys);
    int32_t *rank = malloc(cap * sizeof *rank);
    int32_t *nw = malloc(cap * sizeof *nw);
    if (!keys || !rank || !nw) {
        free(keys);
        free(rank);
        free(nw);
        return lc_error_set(err, "tokenizer: out of memory for the merges");
    }
    memset(keys, 0xff, cap * sizeof *keys);
    lc_bpe old = *b;
    b->mkeys = keys;
    b->mrank = rank;
    b->mnew = nw;
    b->mmask = cap - 1;
    for (size_t i = 0; old.mkeys && i <= old.mmask; i++) {
        if (old.mkeys[i] == UINT64_MAX)
            continue;
        size_t j = merge_slot(b, old.mkeys[i]);
        keys[j] = old.mkeys[i];
        rank[j] = old.mrank[i];
        nw[j] = old.mnew[i];
    }
    free(old.mkeys);
    free(old.mrank);
    free(old.mnew);
    return 0;
}

/* Puts merge (li, ri) → ni with rank; a pair already there keeps its rank. */
static int merge_put(lc_bpe *b, int32_t li, int32_t ri, int32_t ni, int32_t rank, lc_error *err)
{
    if (b->n_merges >= LC_BPE_MAX_MERGES)
        return lc_error_set(err, "more than %d merges", LC_BPE_MAX_MERGES);
    if ((b->n_merges + 1) * 2 > (b->mkeys ? b->mmask + 1 : 0) && merges_grow(b, err))
        return -1;
    uint64_t key = pair_key(li, ri);
    size_t j = merge_slot(b, key);
    if (b->mkeys[j] == key)
        return 0; /* HF keeps the first (best) rank of a repeated merge */
    b->mkeys[j] = key;
    b->mrank[j] = rank;
    b->mnew[j] = ni;
    b->n_merges++;
    b->joins_stale = 1;
    return 0;
}

int lc_bpe_add_merge(lc_bpe *b, const char *l, size_t ln, const char *r, size_t rn, lc_error *err)
{
    char buf[64];
    int32_t li = lc_bpe_id(b, l, ln), ri = lc_bpe_id(b, r, rn);
    if (li < 0)
        return lc_error_set(err, "merge part \"%s\" is not in the vocabulary",
                            lc_printable_n(l, ln, buf, sizeof buf));
    if (ri < 0)
        return lc_error_set(err, "merge part \"%s\" is not in the vocabulary",
                            lc_printable_n(r, rn, buf, sizeof buf));
    if (ln + rn > LC_BPE_MAX_TOKEN)
        return lc_error_set(err, "merged token of %zu bytes", ln + rn);
    char cat[LC_BPE_MAX_TOKEN];
    memcpy(cat, l, ln);
    memcpy(cat + ln, r, rn);
    int32_t ni = lc_bpe_id(b, cat, ln + rn);
    if (ni < 0)
        return lc_error_set(err, "merged token \"%s\" is not in the vocabulary",
                            lc_printable_n(cat, ln + rn, buf, sizeof buf));
    return merge_put(b, li, ri, ni, (int32_t)b->n_merges, err);
}

/* qsort order of ids by score, higher first (ids break ties: a stable order). */
static const float *sort_scores;
static int by_score_desc(const void *a, const void *c)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)c;
    float sx = sort_scores[x], sy = sort_scores[y];
    return sx != sy ? (sx < sy ? 1 : -1) : (x > y) - (x < y);
}

int lc_bpe_merges_from_scores(lc_bpe *b, const float *score, size_t n, lc_error *err)
{
    if (b->n_merges)
        return lc_error_set(err, "merges from scores: the model already has %zu merges",
                            b->n_merges);
    int32_t *order = malloc((size_t)b->n_ids * sizeof *order);
    int32_t *rank = malloc((size_t)b->n_ids * sizeof *rank);
    if (!order || !rank) {
        free(order);
        free(rank);
        return lc_error_set(err, "tokenizer: out of memory for %d scores", (int)b->n_ids);
    }
    size_t m = 0;
    for (int32_t id = 0; id < b->n_ids; id++)
        if (b->len[id] != UINT32_MAX)
            order[m++] = id;
    if (m && (size_t)order[m - 1] >= n) {
        int32_t last = order[m - 1];
        free(order);
        free(rank);
        return lc_error_set(err, "merges from scores: no score for id %d (%zu scores)", (int)last, n);
    }
    sort_scores = score; /* not reentrant: loading is single-threaded */
    qsort(order, m, sizeof *order, by_score_desc);
    for (size_t i = 0; i < m; i++) /* equal scores, equal rank */
        rank[order[i]] = i && score[order[i]] == score[order[i - 1]] ? rank[order[i - 1]]
                                                                    : (int32_t)i;
    int rc = 0;
    for (size_t i = 0; i < m && !rc; i++) {
        int32_t id = order[i];
        const char *s = b->pool + b->off[id];
        size_t len = b->len[id];
        /* split at each character boundary (lead-byte lengths, as encode_word reads text) */
        for (size_t k = 0; k < len && !rc;) {
            k += lc_utf8_len(s + k);
            if (k >= len)
                break;
            int32_t li = lc_bpe_id(b, s, k), ri = li < 0 ? -1 : lc_bpe_id(b, s + k, len - k);
            if (ri >= 0)
                rc = merge_put(b, li, ri, id, rank[id], err);
        }
    }
    free(order);
    free(rank);
    return rc;
}

void lc_bpe_finish(lc_bpe *b)
{
    for (int c = 0; c < 256; c++) {
        char s[8];
        size_t n;
        if (b->byte_level) {
            uint32_t cp = lc_bytelevel_char((uint8_t)c);
            if (cp < 0x80) {
                s[0] = (char)cp;
                n = 1;
            } else {
                s[0] = (char)(0xc0 | (cp >> 6));
                s[1] = (char)(0x80 | (cp & 0x3f));
                n = 2;
            }
        } else {
            static const char hex[] = "0123456789ABCDEF";
            memcpy(s, "<0x", 3);
            s[3] = hex[c >> 4];
            s[4] = hex[c & 15];
            s[5] = '>';
            n = 6;
        }
        b->byte_id[c] = (b->byte_level || b->byte_fallback) ? lc_bpe_id(b, s, n) : -1;
    }
}

/* ---- merge -------------------------------------------------------------- */
/* Pushes the pair (l, l's next) when it is a merge. */
static void push_pair(lc_bpe *b, int32_t l)
{
    int32_t r = b->syms[l].next;
    if (r < 0 || !b->mkeys) /* no merges at all: no table */
        return;
    size_t j = merge_slot(b, pair_key(b->syms[l].id, b->syms[r].id));
    if (b->mkeys[j] == UINT64_MAX)
        return;
    lc_bpe_queue_push(&b->queue, (lc_bpe_pair){b->mrank[j], l, b->mnew[j]});
}

static void add_sym(lc_bpe *b, size_t *n, int32_t id)
{
    b->syms[*n] = (lc_bpe_sym){id, (int32_t)*n - 1, -1};
    if (*n > 0)
        b->syms[*n - 1].next = (int32_t)*n;
    (*n)++;
}

/* ---- joins: where a word may split ---------------------------------------- */
/* The bytes of the character that ends s[0..n) (n > 0), packed: the lead
 * byte and its continuation bytes, at most 4. */
static uint32_t last_char_bytes(const char *s, size_t n)
{
    size_t i = n - 1;
    while (i > 0 && n - i < 4 && ((uint8_t)s[i] & 0xc0) == 0x80)
        i--;
    uint32_t c = 0;
    for (; i < n; i++)
        c = c << 8 | (uint8_t)s[i];
    return c;
}

/* The bytes of the character that starts s[0..n) (n > 0), packed. */
static uint32_t first_char_bytes(const char *s, size_t n)
{
    size_t cl = lc_utf8_len(s);
    uint32_t c = 0;
    for (size_t i = 0; i < cl && i < n; i++)
        c = c << 8 | (uint8_t)s[i];
    return c;
}

static size_t join_bit(const lc_bpe *b, uint32_t last, uint32_t first)
{
    return lc_splitmix64((uint64_t)last << 32 | first) & b->joins_mask;
}

/* Sets the joins bit of every merge (l, r) (a new table: the merges changed). */
static int joins_build(lc_bpe *b, lc_error *err)
{
    size_t bits = (size_t)1 << 16; /* ≥ 16 bits a merge, up to 16 MiB */
    while (bits < 16 * b->n_merges && bits < ((size_t)1 << 27))
        bits *= 2;
    uint64_t *joins = calloc(bits / 64, sizeof *joins);
    if (!joins)
        return lc_error_set(err, "tokenizer: out of memory for the merges' joins");
    free(b->joins);
    b->joins = joins;
    b->joins_mask = bits - 1;
    for (size_t i = 0; i <= b->mmask; i++) {
        if (b->mkeys[i] == UINT64_MAX)
            continue;
        size_t ln = 0, rn = 0;
        const char *l = lc_bpe_token(b, (int32_t)(b->mkeys[i] >> 32), &ln);
        const char *r = lc_bpe_token(b, (int32_t)(uint32_t)b->mkeys[i], &rn);
        if (l && r && ln && rn) { /* an empty part never meets a character of the text */
            size_t k = join_bit(b, last_char_bytes(l, ln), first_char_bytes(r, rn));
            joins[k / 64] |= 1ull << (k % 64);
        }
    }
    b->joins_stale = 0;
    return 0;
}

/* Whether a merge may ever join a symbol that ends in l's last character
 * to one that starts with r's first: a merged symbol keeps the last
 * character of its left part and the first of its right one, so a merge
 * across this boundary would be a merge (x, y) with x ending and y starting
 * in these characters. The unknown token, whose string is not text, always
 * may. */
static int may_join(const lc_bpe *b, int32_t l, int32_t r)
{
    size_t ln = 0, rn = 0;
    const char *ls = lc_bpe_token(b, l, &ln), *rs = lc_bpe_token(b, r, &rn);
    if (l == b->unk_id || r == b->unk_id || !ls || !rs || !ln || !rn)
        return 1;
    size_t k = join_bit(b, last_char_bytes(ls, ln), first_char_bytes(rs, rn));
    return (int)(b->joins[k / 64] >> (k % 64) & 1);
}

/* Cuts the symbol list syms[0..ns) where no merge may ever join: the
 * pieces then merge apart, each with a queue of its own size. No merge
 * crosses a cut in the whole-word merge either, and the order of the merges
 * within a piece, by (rank, position), is the same. */
static int split_unjoinable(lc_bpe *b, size_t ns, lc_error *err)
{
    if ((!b->joins || b->joins_stale) && joins_build(b, err))
        return -1;
    for (size_t i = 1; i < ns; i++)
        if (!may_join(b, b->syms[i - 1].id, b->syms[i].id)) {
            b->syms[i - 1].next = -1;
            b->syms[i].prev = -1;
        }
    return 0;
}

/* Merges the linked piece syms[start..end) as HF does: pairs in a queue by
 * (rank, position); a popped pair whose symbols have changed is skipped.
 * Pushes: end − start − 1 pairs, then at most 2 a merge. */
static int merge_piece(lc_bpe *b, size_t start, size_t end, lc_error *err)
{
    if (lc_bpe_queue_reset(&b->queue, 3 * (end - start), err))
        return -1;
    for (size_t i = start; i + 1 < end; i++)
        push_pair(b, (int32_t)i);
    lc_bpe_pair top;
    while (lc_bpe_queue_pop(&b->queue, &top)) {
        lc_bpe_sym *l = &b->syms[top.pos];
        if (l->id < 0 || l->next < 0)
            continue;
        int32_t ri = l->next;
        size_t j = merge_slot(b, pair_key(l->id, b->syms[ri].id));
        if (b->mkeys[j] == UINT64_MAX || b->mnew[j] != top.new_id)
            continue; /* stale: a neighbour changed since this pair was pushed */
        l->id = top.new_id;
        l->next = b->syms[ri].next;
        b->syms[ri].id = -1;
        if (l->next >= 0)
            b->syms[l->next].prev = top.pos;
        if (l->prev >= 0)
            push_pair(b, l->prev);
        push_pair(b, top.pos);
    }
    return 0;
}

int lc_bpe_encode_word(lc_bpe *b, const char *s, size_t n, lc_ids *out, lc_error *err)
{
    if (n == 0)
        return 0;
    if (n > INT32_MAX / 4)
        return lc_error_set(err, "tokenizer: word of %zu bytes is too long", n);
    if (b->ignore_merges) {
        const char *w = s;
        size_t wn = n;
        if (b->byte_level) { /* look the word up in its GPT-2 characters */
            if (b->scratch_cap < 2 * n) {
                char *sc = realloc(b->scratch, 2 * n);
                if (!sc)
                    return lc_error_set(err, "tokenizer: out of memory");
                b->scratch = sc;
                b->scratch_cap = 2 * n;
            }
            wn = 0;
            for (size_t i = 0; i < n; i++) {
                uint32_t cp = lc_bytelevel_char((uint8_t)s[i]);
                if (cp < 0x80) {
                    b->scratch[wn++] = (char)cp;
                } else {
                    b->scratch[wn++] = (char)(0xc0 | (cp >> 6));
                    b->scratch[wn++] = (char)(0x80 | (cp & 0x3f));
                }
            }
            w = b->scratch;
        }
        int32_t id = lc_bpe_id(b, w, wn);
        if (id >= 0)
            return lc_ids_push(out, id, err);
    }
    /* at most one symbol per byte */
    if (b->syms_cap < n) {
        lc_bpe_sym *syms = realloc(b->syms, n * sizeof *syms);
        if (!syms)
            return lc_error_set(err, "tokenizer: out of memory for a word of %zu bytes", n);
        b->syms = syms;
        b->syms_cap = n;
    }
    size_t ns = 0;
    int pending_unk = 0; /* HF: an unknown waits until the next known character */
    for (size_t i = 0; i < n;) {
        size_t cl = 1;
        int32_t id;
        if (b->byte_level) {
            id = b->byte_id[(uint8_t)s[i]];
        } else {
            cl = lc_utf8_len(s + i);
            if (cl > n - i)
                cl = n - i;
            id = lc_bpe_id(b, s + i, cl);
        }
        if (id >= 0) {
            if (pending_unk)
                add_sym(b, &ns, b->unk_id);
            pending_unk = 0;
            add_sym(b, &ns, id);
        } else {
            int all = b->byte_fallback && !b->byte_level;
            for (size_t k = 0; all && k < cl; k++)
                all = b->byte_id[(uint8_t)s[i + k]] >= 0;
            if (all) {
                for (size_t k = 0; k < cl; k++)
                    add_sym(b, &ns, b->byte_id[(uint8_t)s[i + k]]);
            } else if (b->unk_id >= 0) {
                if (pending_unk && !b->fuse_unk)
                    add_sym(b, &ns, b->unk_id);
                pending_unk = 1;
            }
        }
        i += cl;
    }
    if (pending_unk)
        add_sym(b, &ns, b->unk_id);
    if (ns == 0)
        return 0;
    if (b->mkeys && split_unjoinable(b, ns, err))
        return -1;
    for (size_t start = 0; start < ns;) { /* each piece alone: [start, end) */
        size_t end = start + 1;
        while (end < ns && b->syms[end].prev >= 0)
            end++;
        if (merge_piece(b, start, end, err))
            return -1;
        for (int32_t i = (int32_t)start; i >= 0; i = b->syms[i].next)
            if (lc_ids_push(out, b->syms[i].id, err))
                return -1;
        start = end;
    }
    return 0;
}

/* tokenizer.c — loads a Hugging Face tokenizer.json into a pipeline of
 * small steps (added-token split, normalizers, pre-tokenizers, BPE model,
 * post-processor template) and runs it the way HF `tokenizers` does; see
 * tokenizer.h for what is supported and why it is shaped so. The BPE model
 * is data/bpe.c, the decoder chain data/tok_decoder.c, the JSON readers
 * data/tok_json.c. Unicode: PCRE2 (UTF + UCP, JIT) for the pre-tokenizer
 * regexes, utf8proc for validation and normalization forms. */
#include "data/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <cjson/cJSON.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "data/tok_decoder.h"
#include "data/tok_json.h"
#include "data/tok_util.h"
#include "train/fsutil.h"

#define MAX_STEPS 16        /* steps of one normalizer / pre-tokenizer chain */
#define MATCH_LIMIT 10000000 /* PCRE2 backtracking bound per match (hostile regexes) */

/* The GPT-2 pre-tokenizer regex ByteLevel(use_regex: true) splits with. */
static const char GPT2_REGEX[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* ---- pipeline steps ------------------------------------------------------- */
enum norm_kind { NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD, NORM_PREPEND, NORM_REPLACE };
typedef struct norm_step {
    enum norm_kind kind;
    char *a, *b;             /* PREPEND: a; REPLACE: a → b (owned) */
} norm_step;

enum split_behavior { SPLIT_ISOLATED, SPLIT_REMOVED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT };
enum pre_kind { PRE_SPLIT, PRE_BYTELEVEL, PRE_METASPACE };
typedef struct pre_step {
    enum pre_kind kind;
    pcre2_code *re;          /* SPLIT, BYTELEVEL with use_regex (else NULL) */
    pcre2_match_data *md;    /* one per step: steps nest while matching */
    enum split_behavior behavior;
    int add_prefix_space;    /* BYTELEVEL */
    char repl[8];            /* METASPACE: replacement character, UTF-8 */
    size_t repl_len;
    enum lc_prepend_scheme scheme;
    int split;               /* METASPACE: split before each replacement char */
    char *buf;               /* work text of this step */
    size_t buf_cap;
    size_t *cuts;            /* work: match ranges [2k, 2k+1] */
    size_t cuts_cap;
} pre_step;

typedef struct added_token {
    int32_t id;
    char *content;           /* owned, UTF-8, len bytes */
    size_t len;
    bool special, lstrip, rstrip, single_word, normalized;
} added_token;

/* Byte trie of added-token contents: node 0 is the root. */
typedef struct trie_node {
    int32_t child, sibling;  /* first child, next sibling: node index or −1 */
    int32_t token;           /* index into added[] ending here, or −1 */
    uint8_t byte;
} trie_node;
typedef struct trie {
    trie_node *nodes;
    size_t n, cap;
} trie;

struct lc_tokenizer {
    lc_bpe bpe;
    added_token *added;      /* [n_added] */
    size_t n_added;
    int32_t *added_of;       /* [vocab_size]: index into added[] of an id, or −1 */
    int32_t vocab_size;      /* 1 + the largest id of vocabulary and added tokens */
    trie raw_trie, norm_trie; /* added tokens matched before / after normalization */
    norm_step norm[MAX_STEPS];
    size_t n_norm;
    pre_step pre[MAX_STEPS];
    size_t n_pre;
    lc_decoder dec;
    lc_ids prefix, suffix;   /* post-processor template around the ids */
    int32_t special[LC_SPECIAL_COUNT]; /* tokenizer_config.json's bos/eos/unk/pad_token, −1: none */
    int add_bos, add_eos;    /* its add_bos_token / add_eos_token: 1, 0, −1 absent */
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit_stack;
    char *norm_buf[2];       /* work: normalizer ping-pong */
    size_t norm_cap[2];
    lc_ids *span_start, *span_end; /* encode_spans: where each id's bytes lie (else NULL) */
    bool strip_ascii;        /* lstrip/rstrip take ASCII whitespace only (llama.cpp's) */
};

/* Rust's char::is_whitespace (Unicode White_Space). */
static int is_space(uint32_t c)
{
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}

/* Whitespace an added token's lstrip/rstrip takes: HF's White_Space, or with
 * strip_ascii llama.cpp's isspace (C locale: the ASCII part of it). */
static int strip_space(const lc_tokenizer *t, uint32_t c)
{
    return is_space(c) && (!t->strip_ascii || c < 0x80);
}

/* A word character for single_word added tokens: HF tests with the Rust
 * regex \\w (Alphabetic, marks, decimal digits, connector punctuation such
 * as '_', joiners); letters and Nl stand for Alphabetic. */
static int is_word(uint32_t c)
{
    if (c == 0x200c || c == 0x200d)
        return 1;
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
    return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
           (cat >= UTF8PROC_CATEGORY_MN && cat <= UTF8PROC_CATEGORY_ME) ||
           cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_PC;
}

/* ---- loading: model ------------------------------------------------------------ */
/* model of tokenizer.json; its vocabulary from ext[0..n_ext) instead of
 * model.vocab when ext is not NULL. */
static int load_model(lc_tokenizer *t, const cJSON *m, const lc_vocab_entry *ext, size_t n_ext,
                      const char *where, lc_error *err)
{
    lc_bpe *b = &t->bpe;
    if (!cJSON_IsObject(m))
        return lc_tj_type_error(err, where, "model", "an object");
    const char *type;
    if (lc_tj_str(m, "type", &type, where, "model", err))
        return -1;
    if (type && strcmp(type, "BPE") != 0)
        return lc_tj_unsupported(err, where, "model.type", type);
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(m, "dropout");
    if (dropout && !cJSON_IsNull(dropout))
        return lc_tj_unsupported(err, where, "model.dropout", "BPE dropout (must be null)");
    const char *s;
    if (lc_tj_str(m, "continuing_subword_prefix", &s, where, "model", err))
        return -1;
    if (s && *s)
        return lc_tj_unsupported(err, where, "model.continuing_subword_prefix", s);
    if (lc_tj_str(m, "end_of_word_suffix", &s, where, "model", err))
        return -1;
    if (s && *s)
        return lc_tj_unsupported(err, where, "model.end_of_word_suffix", s);
    bool fuse = false, fallback = false, ignore = false;
    if (lc_tj_bool(m, "fuse_unk", &fuse, where, "model", err) ||
        lc_tj_bool(m, "byte_fallback", &fallback, where, "model", err) ||
        lc_tj_bool(m, "ignore_merges", &ignore, where, "model", err))
        return -1;
    b->fuse_unk = fuse;
    b->byte_fallback = fallback;
    b->ignore_merges = ignore;

    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(m, "vocab");
    if (ext && vocab)
        return lc_error_set(err, "%s: model.vocab given next to a vocabulary list", where);
    for (size_t i = 0; ext && i < n_ext; i++) {
        char buf[64];
        if (lc_bpe_add_token(b, ext[i].s, ext[i].n, ext[i].id, err))
            return lc_error_prefix(err, "%s: token %d \"%s\"", where, (int)ext[i].id,
                                   lc_printable_n(ext[i].s, ext[i].n, buf, sizeof buf));
    }
    if (!ext && !cJSON_IsObject(vocab))
        return lc_tj_type_error(err, where, "model.vocab", "an object {token: id}");
    const cJSON *v, *json_vocab = ext ? NULL : vocab;
    cJSON_ArrayForEach(v, json_vocab) {
        char buf[64];
        long long id;
        if (!lc_tj_int(v, INT32_MIN, INT32_MAX, &id))
            return lc_error_set(err, "%s: model.vocab[\"%s\"] must be an integer id", where,
                                lc_printable(v->string, buf, sizeof buf));
        if (lc_bpe_add_token(b, v->string, strlen(v->string), (int32_t)id, err))
            return lc_error_prefix(err, "%s: model.vocab[\"%s\"]", where,
                                   lc_printable(v->string, buf, sizeof buf));
    }
    const char *unk;
    if (lc_tj_str(m, "unk_token", &unk, where, "model", err))
        return -1;
    if (unk) {
        b->unk_id = lc_bpe_id(b, unk, strlen(unk));
        if (b->unk_id < 0) {
            char buf[64];
            return lc_error_set(err, "%s: model.unk_token \"%s\" is not in model.vocab", where,
                                lc_printable(unk, buf, sizeof buf));
        }
    }
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(m, "merges");
    if (merges && !cJSON_IsArray(merges))
        return lc_tj_type_error(err, where, "model.merges", "an array");
    if (cJSON_GetArraySize(merges) > LC_BPE_MAX_MERGES)
        return lc_error_set(err, "%s: model.merges has %d entries (at most %d)", where,
                            cJSON_GetArraySize(merges), LC_BPE_MAX_MERGES);
    size_t k = 0;
    cJSON_ArrayForEach(v, merges) {
        const char *l = NULL, *r = NULL;
        size_t ln = 0, rn = 0;
        if (cJSON_IsString(v)) { /* "left right" */
            const char *sp = strchr(v->valuestring, ' ');
            if (sp && sp != v->valuestring) {
                l = v->valuestring;
                ln = (size_t)(sp - l);
                r = sp + 1;
                rn = strlen(r);
            }
        } else if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 2 &&
                   cJSON_IsString(v->child) && cJSON_IsString(v->child->next)) {
            l = v->child->valuestring;
            ln = strlen(l);
            r = v->child->next->valuestring;
            rn = strlen(r);
        }
        if (!l || !rn)
            return lc_error_set(err, "%s: model.merges[%zu] must be \"left right\" or [left, right]",
                                where, k);
        if (lc_bpe_add_merge(b, l, ln, r, rn, err))
            return lc_error_prefix(err, "%s: model.merges[%zu]", where, k);
        k++;
    }
    return 0;
}

/* ---- loading: added tokens ------------------------------------------------------- */
static int normalize(lc_tokenizer *t, const char *s, size_t n, const char **res, size_t *rn,
                     lc_error *err);

static int trie_add(trie *tr, const char *s, size_t n, int32_t token, lc_error *err)
{
    if (tr->n == 0) {
        if (lc_tok_grow((void **)&tr->nodes, &tr->cap, 1, sizeof *tr->nodes, err))
            return -1;
        tr->nodes[0] = (trie_node){-1, -1, -1, 0};
        tr->n = 1;
    }
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t c = tr->nodes[node].child;
        while (c >= 0 && tr->nodes[c].byte != (uint8_t)s[i])
            c = tr->nodes[c].sibling;
        if (c < 0) {
            if (lc_tok_grow((void **)&tr->nodes, &tr->cap, tr->n + 1, sizeof *tr->nodes, err))
                return -1;
            c = (int32_t)tr->n++;
            tr->nodes[c] = (trie_node){-1, tr->nodes[node].child, -1, (uint8_t)s[i]};
            tr->nodes[node].child = c;
        }
        node = c;
    }
    if (tr->nodes[node].token < 0) /* the first of two equal contents wins */
        tr->nodes[node].token = token;
    return 0;
}

/* Longest added token starting at s[0..n): its index and *len, or −1. */
static int32_t trie_longest(const trie *tr, const char *s, size_t n, size_t *len)
{
    int32_t best = -1;
    if (tr->n == 0)
        return -1;
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t c = tr->nodes[node].child;
        while (c >= 0 && tr->nodes[c].byte != (uint8_t)s[i])
            c = tr->nodes[c].sibling;
        if (c < 0)
            break;
        node = c;
        if (tr->nodes[node].token >= 0) {
            best = tr->nodes[node].token;
            *len = i + 1;
        }
    }
    return best;
}

static int load_added(lc_tokenizer *t, const cJSON *arr, const char *where, lc_error *err)
{
    if (!arr || cJSON_IsNull(arr))
        return 0;
    if (!cJSON_IsArray(arr))
        return lc_tj_type_error(err, where, "added_tokens", "an array");
    int n = cJSON_GetArraySize(arr);
    if (n > LC_TOKENIZER_MAX_ADDED)
        return lc_error_set(err, "%s: added_tokens has %d entries (at most %d)", where, n,
                            LC_TOKENIZER_MAX_ADDED);
    t->added = calloc((size_t)n + 1, sizeof *t->added);
    if (!t->added)
        return lc_error_set(err, "tokenizer: out of memory");
    const cJSON *a;
    int32_t max_id = -1, n_vocab = (int32_t)t->bpe.n_tokens;
    cJSON_ArrayForEach(a, arr) {
        char path[64];
        snprintf(path, sizeof path, "added_tokens[%zu]", t->n_added);
        if (!cJSON_IsObject(a))
            return lc_tj_type_error(err, where, path, "an object");
        added_token *tok = &t->added[t->n_added];
        long long id = -1;
        const char *content;
        if (lc_tj_get_int(a, "id", 0, LC_BPE_MAX_ID - 1, &id, where, path, err) ||
            lc_tj_need_str(a, "content", &content, where, path, err))
            return -1;
        if (id < 0)
            return lc_error_set(err, "%s: %s.id is missing", where, path);
        if (!*content)
            return lc_error_set(err, "%s: %s.content is empty", where, path);
        if (strlen(content) > LC_BPE_MAX_TOKEN)
            return lc_error_set(err, "%s: %s.content is longer than %d bytes", where, path,
                                LC_BPE_MAX_TOKEN);
        tok->len = strlen(content);
        if (!(tok->content = lc_tok_dup(content, tok->len, err)))
            return -1;
        t->n_added++;
        if (lc_tj_bool(a, "special", &tok->special, where, path, err))
            return -1;
        tok->normalized = !tok->special; /* HF's default */
        if (lc_tj_bool(a, "lstrip", &tok->lstrip, where, path, err) ||
            lc_tj_bool(a, "rstrip", &tok->rstrip, where, path, err) ||
            lc_tj_bool(a, "single_word", &tok->single_word, where, path, err) ||
            lc_tj_bool(a, "normalized", &tok->normalized, where, path, err))
            return -1;
        /* HF's ids, whatever the file says: content in the vocabulary (or
         * added before) keeps that id, the others are numbered on from the
         * vocabulary size, in file order */
        tok->id = lc_bpe_id(&t->bpe, content, tok->len);
        for (size_t k = 0; tok->id < 0 && k + 1 < t->n_added; k++)
            if (t->added[k].len == tok->len && memcmp(t->added[k].content, content, tok->len) == 0)
                tok->id = t->added[k].id;
        if (tok->id < 0)
            tok->id = max_id >= 0 && (max_id >= n_vocab || n_vocab == 0) ? max_id + 1 : n_vocab;
        if (tok->id >= LC_BPE_MAX_ID)
            return lc_error_set(err, "%s: %s: id %d out of range", where, path, (int)tok->id);
        if (tok->id > max_id)
            max_id = tok->id;
        const char *pattern = content;
        size_t pn = tok->len;
        if (tok->normalized && t->n_norm && normalize(t, content, tok->len, &pattern, &pn, err))
            return -1; /* HF matches normalized tokens in their normalized form */
        if (pn == 0)
            continue;
        if (trie_add(tok->normalized ? &t->norm_trie : &t->raw_trie, pattern, pn,
                     (int32_t)(t->n_added - 1), err))
            return -1;
    }
    return 0;
}

/* ---- loading: normalizer, pre-tokenizer, post-processor, decoder --------------------- */
static int normalizer_step(void *ctx, const cJSON *o, const char *type, const char *where,
                           const char *path, lc_error *err)
{
    lc_tokenizer *t = ctx;
    char sub[256];
    if (t->n_norm == MAX_STEPS)
        return lc_error_set(err, "%s: %s: more than %d normalizer steps", where, path, MAX_STEPS);
    norm_step *st = &t->norm[t->n_norm];
    memset(st, 0, sizeof *st);
    if (strcmp(type, "NFC") == 0) {
        st->kind = NORM_NFC;
    } else if (strcmp(type, "NFD") == 0) {
        st->kind = NORM_NFD;
    } else if (strcmp(type, "NFKC") == 0) {
        st->kind = NORM_NFKC;
    } else if (strcmp(type, "NFKD") == 0) {
        st->kind = NORM_NFKD;
    } else if (strcmp(type, "Prepend") == 0) {
        const char *p;
        st->kind = NORM_PREPEND;
        if (lc_tj_need_str(o, "prepend", &p, where, path, err) || !(st->a = lc_tok_dup(p, strlen(p), err)))
            return -1;
    } else if (strcmp(type, "Replace") == 0) {
        st->kind = NORM_REPLACE;
        if (lc_tj_replace(o, &st->a, &st->b, where, path, err))
            return -1;
    } else {
        snprintf(sub, sizeof sub, "%s.type", path);
        return lc_tj_unsupported(err, where, sub, type);
    }
    t->n_norm++;
    return 0;
}

/* Unicode White_Space, what \\s means to HF's regex engine (Oniguruma).
 * PCRE2's \\s (UCP) also takes U+180E, which Unicode dropped from White_Space. */
#define WHITE_SPACE "\\t-\\r \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"

/* pattern with \\s (and \\S outside classes) spelled as White_Space classes,
 * in a malloc'd string. */
static char *oniguruma_spaces(const char *pattern, lc_error *err)
{
    size_t n = strlen(pattern), m = 0, cap = n * (sizeof WHITE_SPACE + 3) + 1;
    char *r = malloc(cap);
    if (!r) {
        lc_error_set(err, "tokenizer: out of memory");
        return NULL;
    }
    int in_class = 0;
    for (size_t i = 0; i < n; i++) {
        char c = pattern[i];
        if (c == '\\' && i + 1 < n) {
            char e = pattern[++i];
            if (e == 's' || (e == 'S' && !in_class)) {
                const char *open = in_class ? "" : e == 's' ? "[" : "[^";
                m += (size_t)snprintf(r + m, cap - m, "%s%s%s", open, WHITE_SPACE, in_class ? "" : "]");
            } else {
                r[m++] = c;
                r[m++] = e;
            }
            continue;
        }
        if (c == '[' && !in_class) {
            in_class = 1;
            r[m++] = c;
            if (i + 1 < n && pattern[i + 1] == '^')
                r[m++] = pattern[++i];
            if (i + 1 < n && pattern[i + 1] == ']') /* a leading ']' is a literal */
                r[m++] = pattern[++i];
            continue;
        }
        if (c == ']' && in_class)
            in_class = 0;
        r[m++] = c;
    }
    r[m] = 0;
    return r;
}

static int compile_regex(pre_step *st, const char *pattern, int literal,
                         const char *where, const char *path, lc_error *err)
{
    int code;
    PCRE2_SIZE off;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0);
    char *spelled = literal ? NULL : oniguruma_spaces(pattern, err);
    if (!literal && !spelled)
        return -1;
    st->re = pcre2_compile((PCRE2_SPTR)(literal ? pattern : spelled), PCRE2_ZERO_TERMINATED, opts,
                           &code, &off, NULL);
    free(spelled);
    if (!st->re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof msg);
        return lc_error_set(err, "%s: %s: bad regex at offset %zu: %s", where, path, (size_t)off,
                            (const char *)msg);
    }
    pcre2_jit_compile(st->re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
    st->md = pcre2_match_data_create_from_pattern(st->re, NULL);
    if (!st->md)
        return lc_error_set(err, "tokenizer: out of memory");
    return 0;
}

static int pre_step_load(void *ctx, const cJSON *o, const char *type, const char *where,
                         const char *path, lc_error *err)
{
    lc_tokenizer *t = ctx;
    char sub[256];
    if (t->n_pre == MAX_STEPS)
        return lc_error_set(err, "%s: %s: more than %d pre-tokenizer steps", where, path, MAX_STEPS);
    if (t->bpe.byte_level)
        return lc_tj_unsupported(err, where, path, "pre-tokenizer after ByteLevel");
    pre_step *st = &t->pre[t->n_pre];
    memset(st, 0, sizeof *st);
    t->n_pre++; /* counted now so lc_tokenizer_free releases a half-made step */
    if (strcmp(type, "Split") == 0) {
        const char *s, *re, *beh;
        bool invert = false;
        st->kind = PRE_SPLIT;
        if (lc_tj_pattern(o, &s, &re, where, path, err) ||
            lc_tj_need_str(o, "behavior", &beh, where, path, err) ||
            lc_tj_bool(o, "invert", &invert, where, path, err))
            return -1;
        snprintf(sub, sizeof sub, "%s.invert", path);
        if (invert)
            return lc_tj_unsupported(err, where, sub, "inverted split");
        snprintf(sub, sizeof sub, "%s.behavior", path);
        if (strcmp(beh, "Isolated") == 0)
            st->behavior = SPLIT_ISOLATED;
        else if (strcmp(beh, "Removed") == 0)
            st->behavior = SPLIT_REMOVED;
        else if (strcmp(beh, "MergedWithPrevious") == 0)
            st->behavior = SPLIT_MERGED_PREV;
        else if (strcmp(beh, "MergedWithNext") == 0)
            st->behavior = SPLIT_MERGED_NEXT;
        else
            return lc_tj_unsupported(err, where, sub, beh);
        snprintf(sub, sizeof sub, "%s.pattern.%s", path, re ? "Regex" : "String");
        return compile_regex(st, re ? re : s, !re, where, sub, err);
    }
    if (strcmp(type, "ByteLevel") == 0) {
        bool prefix = false, use_regex = true;
        st->kind = PRE_BYTELEVEL;
        st->behavior = SPLIT_ISOLATED;
        if (lc_tj_bool(o, "add_prefix_space", &prefix, where, path, err) ||
            lc_tj_bool(o, "use_regex", &use_regex, where, path, err))
            return -1;
        st->add_prefix_space = prefix;
        t->bpe.byte_level = 1;
        return use_regex ? compile_regex(st, GPT2_REGEX, 0, where, path, err) : 0;
    }
    if (strcmp(type, "Metaspace") == 0) {
        const char *repl;
        bool split = true;
        st->kind = PRE_METASPACE;
        if (lc_tj_char(o, "replacement", &repl, where, path, err) ||
            lc_tj_scheme(o, &st->scheme, where, path, err) ||
            lc_tj_bool(o, "split", &split, where, path, err))
            return -1;
        memcpy(st->repl, repl, strlen(repl));
        st->repl_len = strlen(repl);
        st->split = split;
        return 0;
    }
    snprintf(sub, sizeof sub, "%s.type", path);
    return lc_tj_unsupported(err, where, sub, type);
}

/* The ids of a TemplateProcessing "single" template around $A. */
static int load_template(lc_tokenizer *t, const cJSON *o, const char *where, const char *path,
                         lc_error *err)
{
    char sub[256];
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(o, "single");
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(o, "special_tokens");
    snprintf(sub, sizeof sub, "%s.single", path);
    if (!cJSON_IsArray(single))
        return lc_tj_type_error(err, where, sub, "an array");
    if (t->prefix.n || t->suffix.n)
        return lc_tj_unsupported(err, where, path, "second TemplateProcessing");
    int seen_a = 0, i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, single) {
        snprintf(sub, sizeof sub, "%s.single[%d]", path, i++);
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(e, "SpecialToken");
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(e, "Sequence");
        if (cJSON_IsObject(seq)) {
            const char *id;
            if (lc_tj_need_str(seq, "id", &id, where, sub, err))
                return -1;
            if (strcmp(id, "A") != 0 || seen_a)
                return lc_tj_unsupported(err, where, sub, "sequence other than one $A");
            seen_a = 1;
            continue;
        }
        const char *name;
        if (!cJSON_IsObject(sp) || lc_tj_need_str(sp, "id", &name, where, sub, err)) {
            if (!cJSON_IsObject(sp))
                lc_tj_type_error(err, where, sub, "{\"SpecialToken\": ...} or {\"Sequence\": ...}");
            return -1;
        }
        const cJSON *def = cJSON_IsObject(specials) ?
            cJSON_GetObjectItemCaseSensitive(specials, name) : NULL;
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(def, "ids");
        char buf[64];
        if (!cJSON_IsArray(ids))
            return lc_error_set(err, "%s: %s.special_tokens[\"%s\"].ids must be an array", where,
                                path, lc_printable(name, buf, sizeof buf));
        const cJSON *idv;
        cJSON_ArrayForEach(idv, ids) {
            long long id;
            if (!lc_tj_int(idv, 0, LC_BPE_MAX_ID - 1, &id))
                return lc_error_set(err, "%s: %s.special_tokens[\"%s\"].ids must hold ids", where,
                                    path, lc_printable(name, buf, sizeof buf));
            if (lc_ids_push(seen_a ? &t->suffix : &t->prefix, (int32_t)id, err))
                return -1;
        }
    }
    if (!seen_a)
        return lc_error_set(err, "%s: %s.single has no $A", where, path);
    return 0;
}

static int post_step(void *ctx, const cJSON *o, const char *type, const char *where,
                     const char *path, lc_error *err)
{
    lc_tokenizer *t = ctx;
    char sub[256];
    if (strcmp(type, "ByteLevel") == 0)
        return 0; /* only trims offsets: the ids are unchanged */
    if (strcmp(type, "TemplateProcessing") == 0)
        return load_template(t, o, where, path, err);
    snprintf(sub, sizeof sub, "%s.type", path);
    return lc_tj_unsupported(err, where, sub, type);
}

static const char *const SPECIAL_KEYS[LC_SPECIAL_COUNT] = {
    [LC_SPECIAL_BOS] = "bos_token", [LC_SPECIAL_EOS] = "eos_token",
    [LC_SPECIAL_UNK] = "unk_token", [LC_SPECIAL_PAD] = "pad_token",
};

/* bos_token ... of tokenizer_config.json: a string, {"content": s} or null. */
static int config_token(lc_tokenizer *t, const cJSON *cfg, const char *key, int32_t *out,
                        lc_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    *out = -1;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (cJSON_IsObject(v))
        v = cJSON_GetObjectItemCaseSensitive(v, "content");
    if (!cJSON_IsString(v))
        return lc_error_set(err, "tokenizer_config.json: %s must be a string, {\"content\": ...} or null",
                            key);
    *out = lc_tokenizer_token_id(t, v->valuestring);
    if (*out < 0 && (out == &t->special[LC_SPECIAL_UNK] || out == &t->special[LC_SPECIAL_PAD]))
        return 0; /* not used in training: a pad/unk the file lacks is no error */
    if (*out < 0) {
        char buf[64];
        return lc_error_set(err, "tokenizer_config.json: %s \"%s\" is not a token of tokenizer.json",
                            key, lc_printable(v->valuestring, buf, sizeof buf));
    }
    return 0;
}

static int from_json(lc_tokenizer **out, const char *json, size_t len, const char *config,
                     size_t config_len, const char *where, const lc_vocab_entry *vocab,
                     size_t n_vocab, lc_error *err)
{
    *out = NULL;
    if (len > LC_TOKENIZER_MAX_JSON)
        return lc_error_set(err, "%s: %zu bytes (at most %u)", where, len, LC_TOKENIZER_MAX_JSON);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return lc_error_set(err, "%s: not a JSON object (truncated or malformed)", where);
    }
    lc_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        cJSON_Delete(root);
        return lc_error_set(err, "tokenizer: out of memory");
    }
    lc_bpe_init(&t->bpe);
    lc_decoder_init(&t->dec);
    for (int k = 0; k < LC_SPECIAL_COUNT; k++)
        t->special[k] = -1;
    t->add_bos = t->add_eos = -1;
    int rc = -1;
    const cJSON *trunc = cJSON_GetObjectItemCaseSensitive(root, "truncation");
    const cJSON *pad = cJSON_GetObjectItemCaseSensitive(root, "padding");
    if (trunc && !cJSON_IsNull(trunc)) {
        lc_tj_unsupported(err, where, "truncation", "truncation (must be null)");
        goto done;
    }
    if (pad && !cJSON_IsNull(pad)) {
        lc_tj_unsupported(err, where, "padding", "padding (must be null)");
        goto done;
    }
    /* pre-tokenizer first: it says whether the model is byte-level */
    if (lc_tj_chain(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), "pretokenizers",
                   pre_step_load, where, "pre_tokenizer", err) ||
        load_model(t, cJSON_GetObjectItemCaseSensitive(root, "model"), vocab, n_vocab, where,
                   err) ||
        lc_tj_chain(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), "normalizers",
                   normalizer_step, where, "normalizer", err) ||
        load_added(t, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), where, err) ||
        lc_tj_chain(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), "processors",
                   post_step, where, "post_processor", err) ||
        lc_decoder_load(&t->dec, cJSON_GetObjectItemCaseSensitive(root, "decoder"), where, err))
        goto done;
    lc_bpe_finish(&t->bpe);
    int32_t nv = t->vocab_size = lc_tokenizer_vocab_size(t);
    t->added_of = malloc(((size_t)nv + 1) * sizeof *t->added_of);
    if (!t->added_of) {
        lc_error_set(err, "tokenizer: out of memory");
        goto done;
    }
    for (int32_t i = 0; i < nv; i++)
        t->added_of[i] = -1;
    for (size_t k = t->n_added; k-- > 0;) /* the first of two entries for an id wins */
        t->added_of[t->added[k].id] = (int32_t)k;
    t->mctx = pcre2_match_context_create(NULL);
    t->jit_stack = pcre2_jit_stack_create(32 << 10, 8 << 20, NULL);
    if (!t->mctx || !t->jit_stack) {
        lc_error_set(err, "tokenizer: out of memory");
        goto done;
    }
    pcre2_set_match_limit(t->mctx, MATCH_LIMIT);
    pcre2_jit_stack_assign(t->mctx, NULL, t->jit_stack);
    for (size_t i = 0; i < t->prefix.n + t->suffix.n; i++) {
        int32_t id = i < t->prefix.n ? t->prefix.v[i] : t->suffix.v[i - t->prefix.n];
        size_t n;
        int known = lc_bpe_token(&t->bpe, id, &n) != NULL;
        for (size_t k = 0; !known && k < t->n_added; k++)
            known = t->added[k].id == id;
        if (!known) {
            lc_error_set(err, "%s: post_processor: id %d is not a token", where, (int)id);
            goto done;
        }
    }
    if (config) {
        cJSON *cfg = cJSON_ParseWithLength(config, config_len);
        if (!cJSON_IsObject(cfg)) {
            cJSON_Delete(cfg);
            lc_error_set(err, "tokenizer_config.json: not a JSON object (truncated or malformed)");
            goto done;
        }
        bool ab = false, ae = false;
        const cJSON *v_ab = cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token");
        const cJSON *v_ae = cJSON_GetObjectItemCaseSensitive(cfg, "add_eos_token");
        int bad = 0;
        for (int k = 0; k < LC_SPECIAL_COUNT && !bad; k++)
            bad = config_token(t, cfg, SPECIAL_KEYS[k], &t->special[k], err);
        bad = bad ||
                  lc_tj_bool(cfg, "add_bos_token", &ab, "tokenizer_config.json", "(top)", err) ||
                  lc_tj_bool(cfg, "add_eos_token", &ae, "tokenizer_config.json", "(top)", err);
        if (v_ab && !cJSON_IsNull(v_ab))
            t->add_bos = ab;
        if (v_ae && !cJSON_IsNull(v_ae))
            t->add_eos = ae;
        cJSON_Delete(cfg);
        if (bad)
            goto done;
    }
    rc = 0;
done:
    cJSON_Delete(root);
    if (rc)
        lc_tokenizer_free(t);
    else
        *out = t;
    return rc;
}

int lc_tokenizer_from_json(lc_tokenizer **out, const char *json, size_t len, const char *config,
                           size_t config_len, const char *where, lc_error *err)
{
    return from_json(out, json, len, config, config_len, where, NULL, 0, err);
}

int lc_tokenizer_from_json_vocab(lc_tokenizer **out, const char *json, size_t len,
                                 const char *config, size_t config_len, const char *where,
                                 const lc_vocab_entry *vocab, size_t n_vocab, lc_error *err)
{
    return from_json(out, json, len, config, config_len, where, vocab, n_vocab, err);
}

int lc_tokenizer_load(lc_tokenizer **out, const char *dir, lc_error *err)
{
    char path[4096];
    size_t len, clen = 0;
    *out = NULL;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    char *json = lc_read_file(path, LC_TOKENIZER_MAX_JSON, &len, err);
    if (!json)
        return -1;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    char *config = NULL;
    if (lc_path_exists(path) && !(config = lc_read_file(path, LC_TOKENIZER_MAX_CONFIG, &clen, err))) {
        free(json);
        return -1;
    }
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    int rc = lc_tokenizer_from_json(out, json, len, config, clen, path, err);
    if (rc && config && strncmp(err->msg, "tokenizer_config.json", 21) == 0)
        lc_error_prefix(err, "%s", dir);
    free(json);
    free(config);
    return rc;
}

void lc_tokenizer_free(lc_tokenizer *t)
{
    if (!t)
        return;
    lc_bpe_free(&t->bpe);
    for (size_t i = 0; i < t->n_added; i++)
        free(t->added[i].content);
    free(t->added);
    free(t->added_of);
    free(t->raw_trie.nodes);
    free(t->norm_trie.nodes);
    for (size_t i = 0; i < t->n_norm; i++) {
        free(t->norm[i].a);
        free(t->norm[i].b);
    }
    for (size_t i = 0; i < t->n_pre; i++) {
        pcre2_match_data_free(t->pre[i].md);
        pcre2_code_free(t->pre[i].re);
        free(t->pre[i].buf);
        free(t->pre[i].cuts);
    }
    lc_decoder_free(&t->dec);
    lc_ids_free(&t->prefix);
    lc_ids_free(&t->suffix);
    pcre2_match_context_free(t->mctx);
    pcre2_jit_stack_free(t->jit_stack);
    free(t->norm_buf[0]);
    free(t->norm_buf[1]);
    free(t);
}

int lc_tokenizer_merges_from_scores(lc_tokenizer *t, const float *score, size_t n,
                                    lc_error *err)
{
    return lc_bpe_merges_from_scores(&t->bpe, score, n, err);
}

void lc_tokenizer_strip_ascii(lc_tokenizer *t)
{
    t->strip_ascii = true;
}

int32_t lc_tokenizer_token_id(const lc_tokenizer *t, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && memcmp(t->added[i].content, s, n) == 0)
            return t->added[i].id;
    return lc_bpe_id(&t->bpe, s, n);
}

int32_t lc_tokenizer_bos(const lc_tokenizer *t) { return t->special[LC_SPECIAL_BOS]; }
int lc_tokenizer_add_bos(const lc_tokenizer *t) { return t->add_bos; }
int lc_tokenizer_add_eos(const lc_tokenizer *t) { return t->add_eos; }
int32_t lc_tokenizer_eos(const lc_tokenizer *t) { return t->special[LC_SPECIAL_EOS]; }

const char *lc_special_key(lc_special k) { return k < LC_SPECIAL_COUNT ? SPECIAL_KEYS[k] : "?"; }

int32_t lc_tokenizer_special(const lc_tokenizer *t, lc_special k)
{
    return k < LC_SPECIAL_COUNT ? t->special[k] : -1;
}

const char *lc_tokenizer_token_text(const lc_tokenizer *t, int32_t id, size_t *n)
{
    int32_t k = id >= 0 && id < t->vocab_size ? t->added_of[id] : -1;
    if (k >= 0) {
        *n = t->added[k].len;
        return t->added[k].content;
    }
    return lc_bpe_token(&t->bpe, id, n);
}

int lc_tokenizer_set_special(lc_tokenizer *t, lc_special k, const char *content, lc_error *err)
{
    int32_t id = lc_tokenizer_token_id(t, content);
    char buf[64];
    if (k >= LC_SPECIAL_COUNT)
        return lc_error_set(err, "special_tokens: unknown kind");
    if (id < 0)
        return lc_error_set(err, "special_tokens: %s \"%s\" is not a token of the tokenizer "
                            "(adding tokens needs new embedding rows, which lorac does not "
                            "train)", SPECIAL_KEYS[k], lc_printable(content, buf, sizeof buf));
    t->special[k] = id;
    return 0;
}

int32_t lc_tokenizer_vocab_size(const lc_tokenizer *t)
{
    int32_t n = t->bpe.n_ids;
    while (n > 0 && t->bpe.len[n - 1] == UINT32_MAX)
        n--;
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].id >= n)
            n = t->added[i].id + 1;
    return n;
}

/* ---- encode: pre-tokenizers ------------------------------------------------------ */
static int pretokenize(lc_tokenizer *t, size_t step, const char *s, size_t n, int at_origin,
                       lc_ids *out, lc_error *err);

/* The match ranges of st's regex in s[0..n) into st->cuts; their count in *nm. */
static int regex_matches(lc_tokenizer *t, pre_step *st, const char *s, size_t n, size_t *nm,
                         lc_error *err)
{
    size_t pos = 0, k = 0;
    while (pos <= n) {
        int rc = pcre2_match(st->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, st->md, t->mctx);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return lc_error_set(err, "tokenizer: pre-tokenizer regex failed: %s", (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(st->md);
        if (ov[1] <= ov[0]) { /* empty match: no piece; step over one character */
            pos = ov[0] < n ? ov[0] + lc_utf8_len(s + ov[0]) : n + 1;
            continue;
        }
        if (lc_tok_grow((void **)&st->cuts, &st->cuts_cap, 2 * k + 2, sizeof *st->cuts, err))
            return -1;
        st->cuts[2 * k] = ov[0];
        st->cuts[2 * k + 1] = ov[1];
        k++;
        pos = ov[1];
    }
    *nm = k;
    return 0;
}

/* Hands each piece that st's matches (st->cuts[0..2nm)) and its behavior make of
 * s[0..n) to the next step. */
static int split_pieces(lc_tokenizer *t, size_t step, const char *s, size_t n, size_t nm,
                        int at_origin, lc_ids *out, lc_error *err)
{
    pre_step *st = &t->pre[step];
    size_t prev = 0;
#define PIECE(a, b) \
    do { \
        if ((b) > (a) && pretokenize(t, step + 1, s + (a), (b) - (a), at_origin && (a) == 0, out, err)) \
            return -1; \
    } while (0)
    for (size_t k = 0; k < nm; k++) {
        size_t a = st->cuts[2 * k], b = st->cuts[2 * k + 1];
        switch (st->behavior) {
        case SPLIT_ISOLATED:
            PIECE(prev, a);
            PIECE(a, b);
            prev = b;
            break;
        case SPLIT_REMOVED:
            PIECE(prev, a);
            prev = b;
            break;
        case SPLIT_MERGED_PREV:
            PIECE(prev, b);
            prev = b;
            break;
        case SPLIT_MERGED_NEXT:
            PIECE(prev, a);
            prev = a;
            break;
        }
    }
    PIECE(prev, n);
#undef PIECE
    return 0;
}

static int pretokenize(lc_tokenizer *t, size_t step, const char *s, size_t n, int at_origin,
                       lc_ids *out, lc_error *err)
{
    if (n == 0)
        return 0;
    if (step == t->n_pre)
        return lc_bpe_encode_word(&t->bpe, s, n, out, err);
    pre_step *st = &t->pre[step];
    size_t nm = 0;
    switch (st->kind) {
    case PRE_SPLIT:
        if (regex_matches(t, st, s, n, &nm, err))
            return -1;
        return split_pieces(t, step, s, n, nm, at_origin, out, err);
    case PRE_BYTELEVEL:
        if (st->add_prefix_space && s[0] != ' ') {
            if (lc_tok_grow((void **)&st->buf, &st->buf_cap, n + 1, 1, err))
                return -1;
            st->buf[0] = ' ';
            memcpy(st->buf + 1, s, n);
            s = st->buf;
            n++;
        }
        if (!st->re)
            return pretokenize(t, step + 1, s, n, at_origin, out, err);
        if (regex_matches(t, st, s, n, &nm, err))
            return -1;
        return split_pieces(t, step, s, n, nm, at_origin, out, err);
    case PRE_METASPACE: {
        /* ' ' → replacement, then maybe the replacement in front */
        size_t spaces = 0;
        for (size_t i = 0; i < n; i++)
            spaces += s[i] == ' ';
        if (lc_tok_grow((void **)&st->buf, &st->buf_cap, n + (spaces + 1) * st->repl_len, 1, err))
            return -1;
        size_t m = 0;
        int starts = n >= st->repl_len && memcmp(s, st->repl, st->repl_len) == 0;
        if ((s[0] != ' ' && !starts) &&
            (st->scheme == LC_PREPEND_ALWAYS || (st->scheme == LC_PREPEND_FIRST && at_origin))) {
            memcpy(st->buf, st->repl, st->repl_len);
            m = st->repl_len;
        }
        for (size_t i = 0; i < n; i++) {
            if (s[i] == ' ') {
                memcpy(st->buf + m, st->repl, st->repl_len);
                m += st->repl_len;
            } else {
                st->buf[m++] = s[i];
            }
        }
        if (!st->split)
            return pretokenize(t, step + 1, st->buf, m, at_origin, out, err);
        for (size_t i = 0; i + st->repl_len <= m; i++) {
            if (memcmp(st->buf + i, st->repl, st->repl_len) != 0)
                continue;
            if (lc_tok_grow((void **)&st->cuts, &st->cuts_cap, 2 * nm + 2, sizeof *st->cuts, err))
                return -1;
            st->cuts[2 * nm] = i;
            st->cuts[2 * nm + 1] = i + st->repl_len;
            nm++;
            i += st->repl_len - 1;
        }
        st->behavior = SPLIT_MERGED_NEXT;
        return split_pieces(t, step, st->buf, m, nm, at_origin, out, err);
    }
    }
    return 0;
}

/* ---- encode: normalizers ----------------------------------------------------------- */
/* Normalizes s[0..n) into one of t->norm_buf; *res, *rn the result. */
static int normalize(lc_tokenizer *t, const char *s, size_t n, const char **res, size_t *rn,
                     lc_error *err)
{
    int cur = 0;
    for (size_t k = 0; k < t->n_norm; k++) {
        norm_step *st = &t->norm[k];
        char *dst;
        size_t m = 0;
        int nb = s == t->norm_buf[cur] ? 1 - cur : cur;
        switch (st->kind) {
        case NORM_NFC:
        case NORM_NFD:
        case NORM_NFKC:
        case NORM_NFKD: {
            static const int opts[] = {
                [NORM_NFC] = UTF8PROC_STABLE | UTF8PROC_COMPOSE,
                [NORM_NFD] = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE,
                [NORM_NFKC] = UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT,
                [NORM_NFKD] = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT,
            };
            utf8proc_uint8_t *r = NULL;
            utf8proc_ssize_t rl = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &r,
                                               (utf8proc_option_t)opts[st->kind]);
            if (rl < 0)
                return lc_error_set(err, "tokenizer: normalization failed: %s", utf8proc_errmsg(rl));
            if (lc_tok_grow((void **)&t->norm_buf[nb], &t->norm_cap[nb], (size_t)rl + 1, 1, err)) {
                free(r);
                return -1;
            }
            memcpy(t->norm_buf[nb], r, (size_t)rl);
            free(r);
            m = (size_t)rl;
            break;
        }
        case NORM_PREPEND: {
            size_t pl = strlen(st->a);
            if (lc_tok_grow((void **)&t->norm_buf[nb], &t->norm_cap[nb], n + pl + 1, 1, err))
                return -1;
            dst = t->norm_buf[nb];
            if (n > 0) { /* HF prepends to non-empty text only */
                memcpy(dst, st->a, pl);
                m = pl;
            }
            memcpy(dst + m, s, n);
            m += n;
            break;
        }
        case NORM_REPLACE: {
            size_t al = strlen(st->a), bl = strlen(st->b), hits = 0;
            for (size_t i = 0; i + al <= n;)
                if (memcmp(s + i, st->a, al) == 0) {
                    hits++;
                    i += al;
                } else {
                    i++;
                }
            if (lc_tok_grow((void **)&t->norm_buf[nb], &t->norm_cap[nb], n + hits * bl + 1, 1, err))
                return -1;
            dst = t->norm_buf[nb];
            for (size_t i = 0; i < n;)
                if (i + al <= n && memcmp(s + i, st->a, al) == 0) {
                    memcpy(dst + m, st->b, bl);
                    m += bl;
                    i += al;
                } else {
                    dst[m++] = s[i++];
                }
            break;
        }
        }
        s = t->norm_buf[nb];
        n = m;
        cur = nb;
    }
    *res = s;
    *rn = n;
    return 0;
}

/* ---- encode: added tokens ------------------------------------------------------------ */
typedef int (*gap_fn)(lc_tokenizer *t, const char *s, size_t n, int at_origin, lc_ids *out,
                      lc_error *err);

/* ---- encode: where each id came from (lc_tokenizer_encode_spans) -------------------- */
#define META "\xe2\x96\x81" /* U+2581 ▁, SentencePiece's space */
static int note_pair(lc_ids *start, lc_ids *end, int32_t at, lc_error *err)
{
    return lc_ids_push(start, at, err) || lc_ids_push(end, at, err);
}

static int note_span(lc_tokenizer *t, size_t a, size_t b, lc_error *err)
{
    if (!t->span_start)
        return 0;
    if (a > INT32_MAX || b > INT32_MAX)
        return lc_error_set(err, "tokenizer: text too long for byte spans");
    return lc_ids_push(t->span_start, (int32_t)a, err) || lc_ids_push(t->span_end, (int32_t)b, err);
}

/* The bytes of the raw text token id stands for, into buf (at most cap): an added
 * token's content; a byte-level token's bytes; a SentencePiece piece (its ▁ stand
 * for spaces) or its <0xXX> byte. −1 when unknown (unk). */
static long token_surface(const lc_tokenizer *t, int32_t id, char *buf, size_t cap)
{
    int32_t k = id >= 0 && id < t->vocab_size ? t->added_of[id] : -1;
    size_t n = 0;
    const char *s = k >= 0 ? t->added[k].content : lc_bpe_token(&t->bpe, id, &n);
    if (k >= 0)
        n = t->added[k].len;
    if (!s || n > cap || (k < 0 && id == t->bpe.unk_id))
        return -1;
    if (k >= 0) {
        memcpy(buf, s, n);
        return (long)n;
    }
    if (t->bpe.byte_level) {
        size_t m = 0;
        for (size_t i = 0; i < n;) {
            size_t cl;
            int b = lc_bytelevel_byte(lc_utf8_decode(s + i, n - i, &cl));
            if (b < 0)
                return -1;
            buf[m++] = (char)b;
            i += cl;
        }
        return (long)m;
    }
    unsigned byte;
    if (t->bpe.byte_fallback && n == 6 && sscanf(s, "<0x%2X>", &byte) == 1 && s[5] == '>')
        return (long)(buf[0] = (char)byte, 1);
    memcpy(buf, s, n); /* a SentencePiece piece: its ▁ are matched in align_gap */
    return (long)n;
}

/* Spans of the ids out->v[k0..) made from raw text s[a..b): each id's surface bytes
 * are matched against the text in order; a space the normalizer or pre-tokenizer
 * added is matched to nothing. Where the text was changed in other ways (NFC,
 * an unknown character) the rest of the gap's ids get the rest of the gap. */
static int align_gap(lc_tokenizer *t, const char *s, size_t a, size_t b, const lc_ids *out,
                     size_t k0, lc_error *err)
{
    char buf[LC_BPE_MAX_TOKEN * 4];
    size_t p = a;
    int lost = 0;
    for (size_t k = k0; k < out->n; k++) {
        size_t start = p;
        long m = lost ? -1 : token_surface(t, out->v[k], buf, sizeof buf);
        for (long i = 0; i < m && !lost;) {
            int meta = i + 3 <= m && memcmp(buf + i, META, 3) == 0;
            if (meta && p < b && s[p] == ' ') { /* ▁ for a space of the text */
                p++;
                i += 3;
            } else if (p < b && s[p] == buf[i]) {
                p++;
                i++;
            } else if (meta || buf[i] == ' ') { /* a space the tokenizer added */
                i += meta ? 3 : 1;
            } else {
                lost = 1;
            }
        }
        if (m < 0 || lost) {
            lost = 1;
            p = b;
        }
        if (note_span(t, start, p, err))
            return -1;
    }
    return 0;
}

/* gap() on s[a..b), and at the top level the spans of what it made. */
static int run_gap(lc_tokenizer *t, const trie *tr, const char *s, size_t a, size_t b,
                   int at_origin, gap_fn gap, lc_ids *out, lc_error *err)
{
    size_t k0 = out->n;
    if (gap(t, s + a, b - a, at_origin && a == 0, out, err))
        return -1;
    return t->span_start && tr == &t->raw_trie ? align_gap(t, s, a, b, out, k0, err) : 0;
}

/* Splits s[0..n) on the added tokens of tr as HF's AddedVocabulary does:
 * leftmost-longest matches; single_word ones only between non-word
 * characters; lstrip/rstrip take the whitespace before/after into the
 * token. The text between tokens goes to gap. */
static int split_added(lc_tokenizer *t, const trie *tr, const char *s, size_t n, int at_origin,
                       gap_fn gap, lc_ids *out, lc_error *err)
{
    size_t done = 0; /* end of the last token (its stripped space included) */
    for (size_t p = 0; p < n;) {
        size_t len = 0;
        int32_t k = tr->n ? trie_longest(tr, s + p, n - p, &len) : -1;
        if (k < 0) {
            p += lc_utf8_len(s + p);
            continue;
        }
        const added_token *a = &t->added[k];
        size_t start = p, stop = p + len;
        p = stop;
        if (a->single_word &&
            ((start > 0 && is_word(lc_utf8_last(s, start))) ||
             (stop < n && is_word(lc_utf8_decode(s + stop, n - stop, &len)))))
            continue;
        if (a->lstrip) {
            size_t ns = start;
            while (ns > done) { /* space before the last token's end is not taken again */
                size_t q = ns - 1;
                while (q > 0 && ((uint8_t)s[q] & 0xc0) == 0x80)
                    q--;
                size_t cl;
                if (!strip_space(t, lc_utf8_decode(s + q, ns - q, &cl)))
                    break;
                ns = q;
            }
            start = ns > done ? ns : done;
        }
        if (a->rstrip) {
            while (stop < n) {
                size_t cl;
                if (!strip_space(t, lc_utf8_decode(s + stop, n - stop, &cl)))
                    break;
                stop += cl;
            }
        }
        if (done < start && run_gap(t, tr, s, done, start, at_origin, gap, out, err))
            return -1;
        if (lc_ids_push(out, a->id, err) || (tr == &t->raw_trie && note_span(t, start, stop, err)))
            return -1;
        done = stop; /* matching goes on from the match's end, as HF's */
    }
    if (done < n && run_gap(t, tr, s, done, n, at_origin, gap, out, err))
        return -1;
    return 0;
}

static int gap_normalized(lc_tokenizer *t, const char *s, size_t n, int at_origin, lc_ids *out,
                          lc_error *err)
{
    return pretokenize(t, 0, s, n, at_origin, out, err);
}

static int gap_raw(lc_tokenizer *t, const char *s, size_t n, int at_origin, lc_ids *out,
                   lc_error *err)
{
    const char *ns = s;
    size_t nn = n;
    if (t->n_norm && normalize(t, s, n, &ns, &nn, err))
        return -1;
    if (t->norm_trie.n == 0)
        return pretokenize(t, 0, ns, nn, at_origin, out, err);
    /* the normalized text lives in norm_buf until pretokenize is done with it;
     * nothing below normalizes again */
    return split_added(t, &t->norm_trie, ns, nn, at_origin, gap_normalized, out, err);
}

int lc_tokenizer_encode_spans(lc_tokenizer *t, const char *text, size_t len, bool add_special,
                              lc_ids *out, lc_ids *start, lc_ids *end, lc_error *err)
{
    if (start->n != out->n || end->n != out->n)
        return lc_error_set(err, "tokenizer: span lists out of step with the ids");
    for (size_t i = 0; add_special && i < t->prefix.n; i++)
        if (lc_ids_push(out, t->prefix.v[i], err) || note_pair(start, end, 0, err))
            return -1;
    t->span_start = start;
    t->span_end = end;
    int rc = lc_tokenizer_encode(t, text, len, false, out, err);
    t->span_start = t->span_end = NULL;
    for (size_t i = 0; !rc && add_special && i < t->suffix.n; i++)
        if (lc_ids_push(out, t->suffix.v[i], err) || note_pair(start, end, (int32_t)len, err))
            return -1;
    return rc;
}

int lc_tokenizer_encode_truncated(lc_tokenizer *t, const char *text, size_t len, size_t max_len,
                                  lc_ids *out, bool *cut, lc_error *err)
{
    size_t n0 = out->n, specials = t->prefix.n + t->suffix.n;
    *cut = false;
    for (size_t i = 0; i < t->prefix.n; i++)
        if (lc_ids_push(out, t->prefix.v[i], err))
            return -1;
    if (lc_tokenizer_encode(t, text, len, false, out, err))
        return -1;
    size_t body = out->n - n0 - t->prefix.n;
    if (body + specials > max_len) { /* HF: the text's ids give way, the specials stay */
        body = max_len > specials ? max_len - specials : 0;
        out->n = n0 + t->prefix.n + body;
        *cut = true;
    }
    for (size_t i = 0; i < t->suffix.n; i++)
        if (lc_ids_push(out, t->suffix.v[i], err))
            return -1;
    return 0;
}

int lc_tokenizer_encode(lc_tokenizer *t, const char *text, size_t len, bool add_special,
                        lc_ids *out, lc_error *err)
{
    size_t bad = lc_utf8_valid_prefix(text, len);
    if (bad < len)
        return lc_error_set(err, "text is not valid UTF-8 (byte %zu)", bad);
    for (size_t i = 0; add_special && i < t->prefix.n; i++)
        if (lc_ids_push(out, t->prefix.v[i], err))
            return -1;
    if (split_added(t, &t->raw_trie, text, len, 1, gap_raw, out, err))
        return -1;
    for (size_t i = 0; add_special && i < t->suffix.n; i++)
        if (lc_ids_push(out, t->suffix.v[i], err))
            return -1;
    return 0;
}

int lc_tokenizer_decode(lc_tokenizer *t, const int32_t *ids, size_t n, char **text, size_t *len,
                        lc_error *err)
{
    *text = NULL;
    *len = 0;
    lc_decoder_begin(&t->dec);
    for (size_t i = 0; i < n; i++) {
        const char *s = NULL;
        size_t sn = 0;
        int32_t k = ids[i] >= 0 && ids[i] < t->vocab_size ? t->added_of[ids[i]] : -1;
        if (k >= 0) {
            s = t->added[k].content;
            sn = t->added[k].len;
        } else {
            s = lc_bpe_token(&t->bpe, ids[i], &sn);
        }
        if (!s)
            return lc_error_set(err, "decode: id %d (position %zu) is not a token", (int)ids[i], i);
        if (lc_decoder_push(&t->dec, s, sn, err))
            return -1;
    }
    return lc_decoder_finish(&t->dec, text, len, err);
}

/* gguf_vocab.c — both directions between a model's tokenizer and GGUF's
 * tokenizer.ggml.* keys (see gguf_vocab.h for the rules): writing them from
 * tokenizer.model / tokenizer.json / tokenizer_config.json as
 * convert_hf_to_gguf.py and gguf-py's SpecialVocab do (first half), and
 * reading a GGUF file's vocabulary back as lorac's tokenizer, tokenizing as
 * llama.cpp does (second half, "the other way"). */
#include "train/gguf_vocab.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/bpe.h"
#include "data/spm_model.h"
#include "train/fsutil.h"

#define MAX_JSON (256u << 20)

enum {
    TT_NORMAL = 1,
    TT_UNKNOWN = 2,
    TT_CONTROL = 3,
    TT_USER_DEFINED = 4,
    TT_UNUSED = 5,
    TT_BYTE = 6
};

/* The pre-tokenizer regexes llama.cpp implements, by the name the converter
 * gives the models that use them. */
static const struct {
    const char *name, *regex;
} known_pre[] = {
    {"llama-bpe", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?"
                  "[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    {"qwen2", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?"
              "[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
};

const char *lc_gguf_pre_regex(const char *name)
{
    for (size_t k = 0; k < sizeof known_pre / sizeof *known_pre; k++)
        if (!strcmp(name, known_pre[k].name))
            return known_pre[k].regex;
    return NULL;
}

typedef struct vocab {
    const char *dir;
    int n;                 /* entries of tokens/types */
    char **tok;            /* owned strings, NULL where absent */
    int32_t *type;
    float *score;
    cJSON *tj, *tc, *cj;   /* tokenizer.json, tokenizer_config.json, config.json */
} vocab;

static int path_in(char *buf, size_t n, const char *dir, const char *name, lc_error *err)
{
    if ((size_t)snprintf(buf, n, "%s/%s", dir, name) >= n)
        return lc_error_set(err, "path too long: %s/%s", dir, name);
    return 0;
}

static cJSON *load_json(const char *dir, const char *name, bool optional, lc_error *err)
{
    char p[4200];
    if (path_in(p, sizeof p, dir, name, err))
        return NULL;
    if (optional && !lc_path_exists(p)) {
        err->msg[0] = '\0';
        return NULL;
    }
    return lc_read_json_object(p, MAX_JSON, err);
}

static bool looks_special(const char *t)
{
    size_t n = strlen(t);
    if (!strcmp(t, "<pad>") || !strcmp(t, "<mask>") || !strcmp(t, "<2mass>") ||
        !strcmp(t, "[@BOS@]"))
        return true;
    if (n >= 4 && !strncmp(t, "<|", 2) && !strcmp(t + n - 2, "|>"))
        return true;
    /* "<｜" ... "｜>" (fullwidth vertical line, deepseek-coder) */
    if (n >= 8 && !strncmp(t, "<\xef\xbd\x9c", 4) && !strcmp(t + n - 4, "\xef\xbd\x9c>"))
        return true;
    return n >= 8 && !strncmp(t, "<unused", 7) && t[n - 1] == '>';
}

/* "▁" (U+2581) -> " " in place (the string only shrinks). */
static void unspace(char *s)
{
    char *o = s;
    for (char *p = s; *p;) {
        if (!strncmp(p, "\xe2\x96\x81", 3)) {
            *o++ = ' ';
            p += 3;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
}

static int set_tok(vocab *v, int id, const char *s, int type, lc_error *err)
{
    char pb[64];
    if (id < 0 || id >= v->n)
        return lc_error_set(err, "%s/tokenizer.json: token id %d of '%s' is not below the "
                            "model's vocab_size %d", v->dir, id, lc_printable(s, pb, sizeof pb),
                            v->n);
    free(v->tok[id]);
    if (!(v->tok[id] = strdup(s)))
        return lc_error_set(err, "out of memory");
    v->type[id] = type;
    return 0;
}

static const char *special_content(const cJSON *tc, const char *typ)
{
    char key[32];
    snprintf(key, sizeof key, "%s_token", typ);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(tc, key);
    if (cJSON_IsString(e))
        return e->valuestring;
    if (cJSON_IsObject(e)) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        return cJSON_IsString(c) ? c->valuestring : NULL;
    }
    return NULL;
}

/* id of the added token with content s, or -1 */
static int added_id(const cJSON *tj, const char *s)
{
    const cJSON *a;
    cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(tj, "added_tokens")) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(a, "content");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");
        if (cJSON_IsString(c) && cJSON_IsNumber(id) && s && !strcmp(c->valuestring, s))
            return id->valueint;
    }
    return -1;
}

/* The name of the pre-tokenizer, or NULL (err set). */
static const char *pre_name(const vocab *v, lc_error *err)
{
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(v->tj, "pre_tokenizer");
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(pt, "type");
    if (cJSON_IsString(type) && !strcmp(type->valuestring, "ByteLevel")) {
        const cJSON *ur = cJSON_GetObjectItemCaseSensitive(pt, "use_regex");
        if (!cJSON_IsFalse(ur))
            return "gpt-2";
    }
    const cJSON *p;
    cJSON_ArrayForEach(p, seq) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "type");
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
        const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
        if (!cJSON_IsString(t) || strcmp(t->valuestring, "Split") || !cJSON_IsString(re))
            continue;
        for (size_t k = 0; k < sizeof known_pre / sizeof *known_pre; k++)
            if (!strcmp(re->valuestring, known_pre[k].regex))
                return known_pre[k].name;
        char pb[128];
        lc_error_set(err, "%s/tokenizer.json: the pre-tokenizer's Split regex '%s' is not "
                     "one llama.cpp implements under a name lorac knows (llama-bpe, qwen2, "
                     "gpt-2); the GGUF would tokenize differently, so it is not written",
                     v->dir, lc_printable(re->valuestring, pb, sizeof pb));
        return NULL;
    }
    lc_error_set(err, "%s/tokenizer.json: a byte-level BPE without a Split regex or a ByteLevel "
                 "pre-tokenizer with its GPT-2 regex: lorac cannot name its llama.cpp "
                 "pre-tokenizer", v->dir);
    return NULL;
}

static int add_arrays(lc_gguf_writer *w, vocab *v, bool scores, lc_error *err)
{
    const char **strs = malloc((size_t)v->n * sizeof *strs);
    size_t *lens = malloc((size_t)v->n * sizeof *lens);
    if (!strs || !lens) {
        free(strs);
        free(lens);
        return lc_error_set(err, "out of memory");
    }
    for (int i = 0; i < v->n; i++) {
        strs[i] = v->tok[i];
        lens[i] = strlen(v->tok[i]);
    }
    lc_gguf_add_arr_str(w, "tokenizer.ggml.tokens", strs, lens, (size_t)v->n);
    if (scores)
        lc_gguf_add_arr_f32(w, "tokenizer.ggml.scores", v->score, (size_t)v->n);
    lc_gguf_add_arr_i32(w, "tokenizer.ggml.token_type", v->type, (size_t)v->n);
    free(strs);
    free(lens);
    return 0;
}

/* merges as "a b" strings (new-style [a, b] pairs joined, a space inside a
 * part written U+0120) */
static int add_merges(lc_gguf_writer *w, const vocab *v, lc_error *err)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(v->tj, "model");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(model, "merges");
    int n = cJSON_GetArraySize(m);
    if (n <= 0)
        return 0;
    char **strs = calloc((size_t)n, sizeof *strs);
    size_t *lens = calloc((size_t)n, sizeof *lens);
    int rc = 0, i = 0;
    if (!strs || !lens)
        rc = lc_error_set(err, "out of memory");
    const cJSON *e;
    cJSON_ArrayForEach(e, m) {
        if (rc)
            break;
        if (cJSON_IsString(e)) {
            strs[i] = strdup(e->valuestring);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
            const char *a = cJSON_GetArrayItem(e, 0)->valuestring;
            const char *b = cJSON_GetArrayItem(e, 1)->valuestring;
            char *s = malloc(2 * (strlen(a) + strlen(b)) + 2), *o = s;
            if (s) {
                for (int part = 0; part < 2; part++) {
                    for (const char *p = part ? b : a; *p; p++)
                        if (*p == ' ') {
                            *o++ = '\xc4'; /* U+0120 */
                            *o++ = '\xa0';
                        } else {
                            *o++ = *p;
                        }
                    if (!part)
                        *o++ = ' ';
                }
                *o = '\0';
            }
            strs[i] = s;
        } else {
            rc = lc_error_set(err, "%s/tokenizer.json: model.merges[%d] is neither \"a b\" nor "
                              "[\"a\", \"b\"]", v->dir, i);
            break;
        }
        if (!strs[i])
            rc = lc_error_set(err, "out of memory");
        else
            lens[i] = strlen(strs[i]);
        i++;
    }
    if (!rc)
        lc_gguf_add_arr_str(w, "tokenizer.ggml.merges", (const char *const *)strs, lens,
                            (size_t)n);
    for (int k = 0; k < n && strs; k++)
        free(strs[k]);
    free(strs);
    free(lens);
    return rc;
}

static const char *special_id(const cJSON *piece)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(piece, "SpecialToken"), "id");
    return cJSON_IsString(id) ? id->valuestring : NULL;
}

static const char *sequence_id(const cJSON *piece)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(piece, "Sequence"), "id");
    return cJSON_IsString(id) ? id->valuestring : NULL;
}

static bool same(const char *a, const char *b)
{
    return a && b && !strcmp(a, b);
}

/* SpecialVocab's reading of a TemplateProcessing pair template "A [sep] B"
 * (first/last: the single template's leading/trailing special tokens):
 * whether a separator is added (1/0), or -1 when it says nothing. */
static int pair_sep(const cJSON *pair, const char *first, const char *last, const char *sep,
                    const char *eos)
{
    int n = cJSON_GetArraySize(pair);
    if (n <= 0)
        return -1;
    int start = first && same(special_id(cJSON_GetArrayItem(pair, 0)), first) ? 1 : 0;
    int stop = last && same(special_id(cJSON_GetArrayItem(pair, n - 1)), last) ? n - 1 : n;
    if (stop - start < 3)
        return -1;
    if (!same(sequence_id(cJSON_GetArrayItem(pair, start)), "A") ||
        !same(sequence_id(cJSON_GetArrayItem(pair, stop - 1)), "B"))
        return -1;
    int add = 0;
    const char *e = special_id(cJSON_GetArrayItem(pair, start + 1));
    if (e && (same(e, sep) || same(e, eos)) && !last)
        add = 1;
    if (stop - start - 2 == 2) {
        e = special_id(cJSON_GetArrayItem(pair, start + 2));
        if (e && (same(e, sep) || same(e, eos)))
            add = 1;
    }
    return add;
}

/* SpecialVocab: special ids, add_bos/add_eos, chat template. */
static int add_specials(lc_gguf_writer *w, const vocab *v, lc_error *err)
{
    static const char *typs[4] = {"bos", "eos", "unk", "pad"};
    static const char *keys[4] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                  "tokenizer.ggml.unknown_token_id",
                                  "tokenizer.ggml.padding_token_id"};
    const char *content[4];
    for (int k = 0; k < 4; k++)
        content[k] = v->tc ? special_content(v->tc, typs[k]) : NULL;
    int add_bos = -1, add_eos = -1, add_sep = -1;
    const cJSON *pp = cJSON_GetObjectItemCaseSensitive(v->tj, "post_processor");
    const cJSON *procs = cJSON_GetObjectItemCaseSensitive(pp, "processors");
    const cJSON *one = pp;
    int np = cJSON_IsArray(procs) ? cJSON_GetArraySize(procs) : (cJSON_IsObject(pp) ? 1 : 0);
    for (int i = 0; i < np; i++) {
        const cJSON *p = cJSON_IsArray(procs) ? cJSON_GetArrayItem(procs, i) : one;
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "type");
        if (!cJSON_IsString(t))
            continue;
        if (!strcmp(t->valuestring, "ByteLevel")) {
            if (add_bos < 0)
                add_bos = 0;
            if (add_eos < 0)
                add_eos = 0;
        } else if (!strcmp(t->valuestring, "TemplateProcessing")) {
            const cJSON *single = cJSON_GetObjectItemCaseSensitive(p, "single");
            int n = cJSON_GetArraySize(single);
            if (n > 1) {
                const cJSON *first = cJSON_GetObjectItemCaseSensitive(
                    cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(single, 0),
                                                     "SpecialToken"), "id");
                const cJSON *last = cJSON_GetObjectItemCaseSensitive(
                    cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(single, n - 1),
                                                     "SpecialToken"), "id");
                if (cJSON_IsString(first)) {
                    if (!v->tc)
                        content[0] = first->valuestring;
                    else if (!content[0])
                        content[0] = first->valuestring;
                    add_bos = content[0] && !strcmp(first->valuestring, content[0]);
                }
                if (cJSON_IsString(last)) {
                    if (!v->tc || !content[1] || strcmp(last->valuestring, content[1]))
                        content[1] = last->valuestring; /* the converter's override */
                    add_eos = 1;
                }
                int sep = pair_sep(cJSON_GetObjectItemCaseSensitive(p, "pair"),
                                   cJSON_IsString(first) ? first->valuestring : NULL,
                                   cJSON_IsString(last) ? last->valuestring : NULL,
                                   v->tc ? special_content(v->tc, "sep") : NULL, content[1]);
                if (sep >= 0)
                    add_sep = sep;
            }
        }
    }
    if (v->tc) {
        const cJSON *ab = cJSON_GetObjectItemCaseSensitive(v->tc, "add_bos_token");
        const cJSON *ae = cJSON_GetObjectItemCaseSensitive(v->tc, "add_eos_token");
        if (add_bos < 0 && cJSON_IsBool(ab))
            add_bos = cJSON_IsTrue(ab);
        if (add_eos < 0 && cJSON_IsBool(ae))
            add_eos = cJSON_IsTrue(ae);
    }
    for (int k = 0; k < 4; k++) {
        int id = content[k] ? added_id(v->tj, content[k]) : -1;
        if (id < 0 && v->cj) {
            char key[32];
            snprintf(key, sizeof key, "%s_token_id", typs[k]);
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(v->cj, key);
            if (cJSON_IsNumber(e) && e->valuedouble == (double)e->valueint)
                id = e->valueint;
        }
        if (id >= 0 && id < v->n)
            lc_gguf_add_u32(w, keys[k], (uint32_t)id);
    }
    if (add_bos >= 0)
        lc_gguf_add_bool(w, "tokenizer.ggml.add_bos_token", add_bos);
    if (add_eos >= 0)
        lc_gguf_add_bool(w, "tokenizer.ggml.add_eos_token", add_eos);
    if (add_sep >= 0)
        lc_gguf_add_bool(w, "tokenizer.ggml.add_sep_token", add_sep);
    const cJSON *ct = v->tc ? cJSON_GetObjectItemCaseSensitive(v->tc, "chat_template") : NULL;
    char *alt = NULL;
    if (!ct) {
        char p[4200];
        size_t len;
        if (path_in(p, sizeof p, v->dir, "chat_template.jinja", err))
            return -1;
        if (lc_path_exists(p) && !(alt = lc_read_file(p, MAX_JSON, &len, err)))
            return -1;
    }
    if (cJSON_IsString(ct))
        lc_gguf_add_str(w, "tokenizer.chat_template", ct->valuestring, strlen(ct->valuestring));
    else if (alt)
        lc_gguf_add_str(w, "tokenizer.chat_template", alt, strlen(alt));
    else if (ct && !cJSON_IsNull(ct))
        return lc_error_set(err, "%s/tokenizer_config.json: chat_template is not a string "
                            "(a list of named templates is not supported)", v->dir);
    free(alt);
    return 0;
}

static bool is_byte_token(const char *s)
{
    return strlen(s) == 6 && !strncmp(s, "<0x", 3) && s[5] == '>' &&
           strchr("0123456789abcdefABCDEF", s[3]) && strchr("0123456789abcdefABCDEF", s[4]) &&
           s[3] && s[4];
}

/* id i as the converters' filler "[PADi]", type unused */
static int set_pad(vocab *v, int i, lc_error *err)
{
    char pad[32];
    snprintf(pad, sizeof pad, "[PAD%d]", i);
    return set_tok(v, i, pad, TT_UNUSED, err);
}

static int fill_gpt2(vocab *v, lc_error *err)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(v->tj, "model");
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(model, "vocab")) {
        char pb[64];
        if (!cJSON_IsNumber(e))
            return lc_error_set(err, "%s/tokenizer.json: vocab entry '%s' has no id", v->dir,
                                lc_printable(e->string, pb, sizeof pb));
        if (set_tok(v, e->valueint, e->string, TT_NORMAL, err))
            return -1;
    }
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(v->tj, "added_tokens")) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(e, "special");
        if (!cJSON_IsString(c) || !cJSON_IsNumber(id))
            return lc_error_set(err, "%s/tokenizer.json: an added token without content/id",
                                v->dir);
        bool control = cJSON_IsTrue(sp) || looks_special(c->valuestring);
        if (set_tok(v, id->valueint, c->valuestring, control ? TT_CONTROL : TT_USER_DEFINED, err))
            return -1;
        if (!control)
            unspace(v->tok[id->valueint]);
    }
    for (int i = 0; i < v->n; i++)
        if (!v->tok[i] && set_pad(v, i, err))
            return -1;
    return 0;
}

/* id of token text s: an added token or a vocabulary entry; -1 */
static int token_id(const vocab *v, const char *s)
{
    int id = added_id(v->tj, s);
    if (id >= 0)
        return id;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(v->tj, "model"),
                                         "vocab"), s);
    return cJSON_IsNumber(e) ? e->valueint : -1;
}

/* Marks control, as transformers' all_special_ids: the tokens
 * tokenizer_config.json names as bos/eos/unk/sep/pad/cls/mask and in
 * additional_special_tokens (or extra_special_tokens). */
static void mark_specials(vocab *v, bool *special)
{
    if (!v->tc)
        return;
    static const char *typs[] = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"};
    for (size_t k = 0; k < sizeof typs / sizeof *typs; k++) {
        const char *c = special_content(v->tc, typs[k]);
        int id = c ? token_id(v, c) : -1;
        if (id >= 0 && id < v->n)
            special[id] = true;
    }
    static const char *lists[] = {"additional_special_tokens", "extra_special_tokens"};
    for (int l = 0; l < 2; l++) {
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(v->tc, lists[l])) {
            const cJSON *c = cJSON_IsObject(e) ? cJSON_GetObjectItemCaseSensitive(e, "content")
                                               : e;
            int id = cJSON_IsString(c) ? token_id(v, c->valuestring) : -1;
            if (id >= 0 && id < v->n)
                special[id] = true;
        }
    }
}

/* LlamaHfVocab: the base vocabulary (ids 0..len(vocab)-1), then the added
 * tokens past it, in id order; control = the special tokens of
 * tokenizer_config.json (mark_specials), byte = <0xXX>. */
static int fill_llama(vocab *v, lc_error *err)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(v->tj, "model");
    const cJSON *voc = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    int base = cJSON_GetArraySize(voc), top = base;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(v->tj, "added_tokens")) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        if (cJSON_IsNumber(id) && id->valueint + 1 > top)
            top = id->valueint + 1;
    }
    if (top > v->n)
        return lc_error_set(err, "%s/tokenizer.json: %d tokens, more than the model's vocab_size "
                            "%d", v->dir, top, v->n);
    bool *special = calloc((size_t)v->n, sizeof *special);
    if (!special)
        return lc_error_set(err, "out of memory");
    mark_specials(v, special);
    v->n = top;
    int rc = 0;
    cJSON_ArrayForEach(e, voc) {
        if (!cJSON_IsNumber(e) || e->valueint < 0 || e->valueint >= base) {
            char pb[64];
            rc = lc_error_set(err, "%s/tokenizer.json: vocab entry '%s' has an id outside "
                              "0..%d", v->dir, lc_printable(e->string, pb, sizeof pb), base - 1);
            break;
        }
        int t = is_byte_token(e->string) ? TT_BYTE : special[e->valueint] ? TT_CONTROL : TT_NORMAL;
        if ((rc = set_tok(v, e->valueint, e->string, t, err)))
            break;
    }
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(v->tj, "added_tokens")) {
        if (rc)
            break;
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        if (!cJSON_IsString(c) || !cJSON_IsNumber(id)) {
            rc = lc_error_set(err, "%s/tokenizer.json: an added token without content/id",
                              v->dir);
            break;
        }
        if (id->valueint < base) /* in the base range: typed with the vocabulary */
            continue;
        rc = set_tok(v, id->valueint, c->valuestring,
                     special[id->valueint] ? TT_CONTROL : TT_USER_DEFINED, err);
    }
    free(special);
    for (int i = 0; i < v->n && !rc; i++) {
        v->score[i] = -1000.0f;
        if (!v->tok[i])
            rc = lc_error_set(err, "%s/tokenizer.json: no token has id %d", v->dir, i);
    }
    return rc;
}

/* An id of added_tokens.json / added_tokens_decoder as the converter indexes
 * its lists with it: -1 (and err) when it is not a non-negative integer. */
static int added_index(const vocab *v, const char *file, const char *tok, double id, lc_error *err)
{
    char pb[64];
    if (!(id >= 0 && id <= 2147483647.0) || id != (double)(int)id)
        return lc_error_set(err, "%s/%s: token '%s' has id %g, not a non-negative integer",
                            v->dir, file, lc_printable(tok, pb, sizeof pb), id);
    return 0;
}

/* Python truthiness of a JSON value (token_data.get("special")). */
static bool truthy(const cJSON *e)
{
    return cJSON_IsTrue(e) || (cJSON_IsNumber(e) && e->valuedouble != 0) ||
           (cJSON_IsString(e) && e->valuestring[0]) ||
           ((cJSON_IsArray(e) || cJSON_IsObject(e)) && e->child);
}

/* _create_vocab_sentencepiece: vocab_size entries "[PADi]" (score -10000,
 * unused), then the pieces of tokenizer.model below vocab_size (their text,
 * score, and type: unknown, control, unused, byte, else normal — a
 * user-defined piece is normal), then added_tokens.json's tokens
 * (user-defined, -1000) and tokenizer_config.json's added_tokens_decoder
 * (control when special or looking special, else user-defined with U+2581
 * as a space; -1000); ids past vocab_size are skipped, as the converter
 * skips them. */
static int fill_spm(vocab *v, const lc_spm_model *m, lc_error *err)
{
    for (int i = 0; i < v->n; i++) {
        if (set_pad(v, i, err))
            return -1;
        v->score[i] = -10000.0f;
    }
    for (size_t i = 0; i < m->n && i < (size_t)v->n; i++) {
        int t = m->pieces[i].type;
        int tt = t == LC_SPM_UNKNOWN ? TT_UNKNOWN : t == LC_SPM_CONTROL ? TT_CONTROL
               : t == LC_SPM_UNUSED ? TT_UNUSED : t == LC_SPM_BYTE ? TT_BYTE : TT_NORMAL;
        if (set_tok(v, (int)i, m->pieces[i].text, tt, err))
            return -1;
        v->score[i] = m->pieces[i].score;
    }
    cJSON *at = load_json(v->dir, "added_tokens.json", true, err);
    if (!at && err->msg[0])
        return -1;
    const cJSON *e;
    int rc = 0;
    cJSON_ArrayForEach(e, at) {
        if (!cJSON_IsNumber(e) ||
            added_index(v, "added_tokens.json", e->string, e->valuedouble, err)) {
            char pb[64];
            if (!cJSON_IsNumber(e))
                lc_error_set(err, "%s/added_tokens.json: token '%s' has no numeric id", v->dir,
                             lc_printable(e->string, pb, sizeof pb));
            rc = -1;
            break;
        }
        if (e->valueint >= v->n)
            continue;
        if ((rc = set_tok(v, e->valueint, e->string, TT_USER_DEFINED, err)))
            break;
        v->score[e->valueint] = -1000.0f;
    }
    cJSON_Delete(at);
    const cJSON *dec = v->tc ? cJSON_GetObjectItemCaseSensitive(v->tc, "added_tokens_decoder")
                             : NULL;
    if (!cJSON_IsObject(dec))
        dec = NULL;
    cJSON_ArrayForEach(e, dec) {
        if (rc)
            break;
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        size_t digits = strspn(e->string, "0123456789");
        if (!cJSON_IsString(c) || !digits || e->string[digits] || digits > 10) {
            char pb[48];
            rc = lc_error_set(err, "%s/tokenizer_config.json: added_tokens_decoder entry "
                              "'%s' needs a decimal id and a content string", v->dir,
                              lc_printable(e->string, pb, sizeof pb));
            break;
        }
        double id = strtod(e->string, NULL);
        if ((rc = added_index(v, "tokenizer_config.json", c->valuestring, id, err)))
            break;
        if (id >= v->n)
            continue;
        int i = (int)id;
        bool control = truthy(cJSON_GetObjectItemCaseSensitive(e, "special")) ||
                       looks_special(c->valuestring);
        if ((rc = set_tok(v, i, c->valuestring, control ? TT_CONTROL : TT_USER_DEFINED, err)))
            break;
        if (!control)
            unspace(v->tok[i]);
        v->score[i] = -1000.0f;
    }
    return rc;
}

int lc_gguf_vocab_add(lc_gguf_writer *w, const char *dir, const lc_model_config *cfg,
                      lc_error *err)
{
    vocab v = {.dir = dir, .n = cfg->vocab_size};
    lc_spm_model spm = {0};
    int rc = -1;
    char spm_path[4200];
    if (path_in(spm_path, sizeof spm_path, dir, "tokenizer.model", err))
        return -1;
    bool have_spm = lc_path_exists(spm_path); /* the converter's first choice */
    if (have_spm && lc_spm_load(&spm, spm_path, err))
        return lc_error_prefix(err, "the GGUF vocabulary");
    if (!(v.tj = load_json(dir, "tokenizer.json", have_spm, err)) && (!have_spm || err->msg[0])) {
        lc_spm_free(&spm);
        return lc_error_prefix(err, "the GGUF needs the model's tokenizer");
    }
    v.tc = load_json(dir, "tokenizer_config.json", true, err);
    if (!v.tc && err->msg[0])
        goto out;
    v.cj = load_json(dir, "config.json", true, err);
    if (!v.cj && err->msg[0])
        goto out;
    v.tok = calloc((size_t)v.n, sizeof *v.tok);
    v.type = calloc((size_t)v.n, sizeof *v.type);
    v.score = calloc((size_t)v.n, sizeof *v.score);
    if (!v.tok || !v.type || !v.score) {
        lc_error_set(err, "out of memory");
        goto out;
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(v.tj, "model");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *bf = cJSON_GetObjectItemCaseSensitive(model, "byte_fallback");
    if (!have_spm && (!cJSON_IsString(mt) || strcmp(mt->valuestring, "BPE"))) {
        char pb[48];
        lc_error_set(err, "%s/tokenizer.json: model type '%s' is not BPE; lorac writes GGUF "
                     "vocabularies for byte-level BPE and SentencePiece-style BPE only", dir,
                     cJSON_IsString(mt) ? lc_printable(mt->valuestring, pb, sizeof pb) : "?");
        goto out;
    }
    if (cfg->arch == LC_ARCH_LLAMA || cfg->arch == LC_ARCH_MISTRAL) {
        const cJSON *aps = v.tc ? cJSON_GetObjectItemCaseSensitive(v.tc, "add_prefix_space")
                                : NULL;
        if (cJSON_IsBool(aps))
            lc_gguf_add_bool(w, "tokenizer.ggml.add_space_prefix", cJSON_IsTrue(aps));
    }
    if (have_spm) { /* tokenizer.model: _set_vocab_sentencepiece */
        if (fill_spm(&v, &spm, err))
            goto out;
        lc_gguf_add_str(w, "tokenizer.ggml.model", "llama", 5);
        lc_gguf_add_str(w, "tokenizer.ggml.pre", "default", 7);
        if (add_arrays(w, &v, true, err) || add_specials(w, &v, err))
            goto out;
    } else if (cJSON_IsTrue(bf)) { /* SentencePiece-style: llama.cpp's "llama" model */
        if (fill_llama(&v, err))
            goto out;
        lc_gguf_add_str(w, "tokenizer.ggml.model", "llama", 5);
        lc_gguf_add_str(w, "tokenizer.ggml.pre", "default", 7);
        if (add_arrays(w, &v, true, err) || add_specials(w, &v, err))
            goto out;
    } else {
        const char *pre = pre_name(&v, err);
        if (!pre)
            goto out;
        if (fill_gpt2(&v, err))
            goto out;
        lc_gguf_add_str(w, "tokenizer.ggml.model", "gpt2", 4);
        lc_gguf_add_str(w, "tokenizer.ggml.pre", pre, strlen(pre));
        if (add_arrays(w, &v, false, err) || add_merges(w, &v, err) || add_specials(w, &v, err))
            goto out;
    }
    rc = 0;
out:
    for (int i = 0; v.tok && i < cfg->vocab_size; i++)
        free(v.tok[i]);
    free(v.tok);
    free(v.type);
    free(v.score);
    cJSON_Delete(v.tj);
    cJSON_Delete(v.tc);
    cJSON_Delete(v.cj);
    lc_spm_free(&spm);
    return rc;
}

/* ---- the other way: a tokenizer from a GGUF file's tokenizer.ggml.* keys ---------------- */

/* A string of the mapping as a NUL-terminated copy (NULL: out of memory). */
static char *str_dup(lc_gguf_str s)
{
    char *z = malloc(s.len + 1);
    if (z) {
        memcpy(z, s.ptr, s.len);
        z[s.len] = '\0';
    }
    return z;
}

/* tokenizer.json's pre_tokenizer for llama.cpp's pre name. */
static cJSON *pre_tokenizer_of(const char *pre, const char *path, lc_error *err)
{
    cJSON *bl = cJSON_CreateObject();
    cJSON_AddStringToObject(bl, "type", "ByteLevel");
    cJSON_AddFalseToObject(bl, "add_prefix_space");
    cJSON_AddTrueToObject(bl, "trim_offsets");
    if (!strcmp(pre, "gpt-2") || !strcmp(pre, "default")) {
        cJSON_AddTrueToObject(bl, "use_regex");
        return bl;
    }
    const char *re = lc_gguf_pre_regex(pre);
    if (!re) {
        cJSON_Delete(bl);
        char pb[72];
        lc_error_set(err, "%s: tokenizer.ggml.pre '%s' is not a pre-tokenizer lorac knows "
                     "(llama-bpe, qwen2, gpt-2): put the model's tokenizer.json next to the file",
                     path, lc_printable(pre, pb, sizeof pb));
        return NULL;
    }
    cJSON_AddFalseToObject(bl, "use_regex");
    cJSON *split = cJSON_CreateObject(), *pat = cJSON_CreateObject();
    cJSON_AddStringToObject(pat, "Regex", re);
    cJSON_AddStringToObject(split, "type", "Split");
    cJSON_AddItemToObject(split, "pattern", pat);
    cJSON_AddStringToObject(split, "behavior", "Isolated");
    cJSON_AddFalseToObject(split, "invert");
    cJSON *seq = cJSON_CreateObject(), *list = cJSON_CreateArray();
    cJSON_AddStringToObject(seq, "type", "Sequence");
    cJSON_AddItemToArray(list, split);
    cJSON_AddItemToArray(list, bl);
    cJSON_AddItemToObject(seq, "pretokenizers", list);
    return seq;
}

/* The special ids llama.cpp assumes for a "llama" vocabulary without the keys:
 * bos, eos, unknown, padding. */
static const int64_t SPM_DEFAULT_ID[4] = {1, 2, 0, -1};
static const char *const SPECIAL_ID_KEY[4] = {
    "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id"};

/* Special id k (0..3: bos, eos, unknown, padding) of the file, the SPM
 * default when spm and the key is absent; −1 for none. */
static int64_t gguf_special_id(const lc_gguf_file *f, int k, bool spm)
{
    int64_t id;
    lc_error ignore;
    if (!lc_gguf_find_kv(f, SPECIAL_ID_KEY[k]))
        return spm ? SPM_DEFAULT_ID[k] : -1;
    return lc_gguf_get_int(f, SPECIAL_ID_KEY[k], &id, &ignore) ? -1 : id;
}

/* Special id k as its token's text in cfg under name. */
static void add_special_text(cJSON *cfg, const lc_gguf_file *f, const lc_gguf_kv *tokens, int k,
                             bool spm, const char *name)
{
    int64_t id = gguf_special_id(f, k, spm);
    if (id < 0 || (uint64_t)id >= tokens->n)
        return;
    char *z = str_dup(tokens->strs[id]);
    if (z)
        cJSON_AddStringToObject(cfg, name, z);
    free(z);
}

/* Bool key (tokenizer.ggml.add_bos_token ...) in *v, dflt when absent. */
static int gguf_flag(const lc_gguf_file *f, const char *path, const char *key, bool dflt, bool *v,
                     lc_error *err)
{
    const lc_gguf_kv *kv = lc_gguf_find_kv(f, key);
    *v = dflt;
    if (!kv)
        return 0;
    if (kv->type != LC_GGUF_BOOL)
        return lc_error_set(err, "%s: %s is a %s, not a bool", path, key,
                            lc_gguf_vtype_name(kv->type));
    *v = kv->data[0] != 0;
    return 0;
}

/* {"SpecialToken": {"id": text}} of a TemplateProcessing template, and text's
 * entry in its special_tokens. */
static void template_special(cJSON *single, cJSON *specials, const char *text, int64_t id)
{
    cJSON *sp = cJSON_CreateObject(), *st = cJSON_CreateObject();
    cJSON_AddStringToObject(st, "id", text);
    cJSON_AddNumberToObject(st, "type_id", 0);
    cJSON_AddItemToObject(sp, "SpecialToken", st);
    cJSON_AddItemToArray(single, sp);
    if (cJSON_GetObjectItemCaseSensitive(specials, text))
        return; /* bos and eos the same token */
    cJSON *def = cJSON_CreateObject(), *ids = cJSON_CreateArray();
    cJSON_AddStringToObject(def, "id", text);
    cJSON_AddItemToArray(ids, cJSON_CreateNumber((double)id));
    cJSON_AddItemToObject(def, "ids", ids);
    cJSON_AddItemToObject(specials, text, def);
}

/* The post-processor putting BOS / EOS around the text as llama.cpp's
 * tokenize(add_special) does: tokenizer.ggml.add_bos_token (default: spm)
 * and add_eos_token (default false) with the bos/eos ids. */
static int post_processor_of(const lc_gguf_file *f, const char *path, const lc_gguf_kv *tokens,
                             bool spm, cJSON *tj, lc_error *err)
{
    bool add[2];
    static const char *const flag[2] = {"tokenizer.ggml.add_bos_token",
                                        "tokenizer.ggml.add_eos_token"};
    if (gguf_flag(f, path, flag[0], spm, &add[0], err) ||
        gguf_flag(f, path, flag[1], false, &add[1], err))
        return -1;
    int64_t id[2] = {gguf_special_id(f, 0, spm), gguf_special_id(f, 1, spm)};
    for (int k = 0; k < 2; k++)
        if (add[k] && (id[k] < 0 || (uint64_t)id[k] >= tokens->n))
            return lc_error_set(err, "%s: %s is set but %s is not a token id", path, flag[k],
                                SPECIAL_ID_KEY[k]);
    if (!add[0] && !add[1]) {
        cJSON_AddNullToObject(tj, "post_processor");
        return 0;
    }
    char *z[2] = {add[0] ? str_dup(tokens->strs[id[0]]) : NULL,
                  add[1] ? str_dup(tokens->strs[id[1]]) : NULL};
    if ((add[0] && !z[0]) || (add[1] && !z[1])) {
        free(z[0]), free(z[1]);
        return lc_error_set(err, "out of memory");
    }
    cJSON *pp = cJSON_CreateObject(), *single = cJSON_CreateArray(), *specials = cJSON_CreateObject();
    cJSON *seqa = cJSON_CreateObject(), *sq = cJSON_CreateObject();
    if (add[0])
        template_special(single, specials, z[0], id[0]);
    cJSON_AddStringToObject(sq, "id", "A");
    cJSON_AddNumberToObject(sq, "type_id", 0);
    cJSON_AddItemToObject(seqa, "Sequence", sq);
    cJSON_AddItemToArray(single, seqa);
    if (add[1])
        template_special(single, specials, z[1], id[1]);
    cJSON_AddStringToObject(pp, "type", "TemplateProcessing");
    cJSON_AddItemToObject(pp, "single", single);
    cJSON_AddItemToObject(pp, "special_tokens", specials);
    cJSON_AddItemToObject(tj, "post_processor", pp);
    free(z[0]), free(z[1]);
    return 0;
}

/* Token i as a NUL-terminated copy for tokenizer.json's added_tokens (NULL
 * with the error: out of memory, or a NUL byte JSON strings cannot hold here). */
static char *added_text(const lc_gguf_kv *tokens, uint64_t i, const char *path, lc_error *err)
{
    char *z = str_dup(tokens->strs[i]);
    if (!z)
        lc_error_set(err, "out of memory");
    else if (strlen(z) != tokens->strs[i].len)
        lc_error_set(err, "%s: tokenizer.ggml.tokens[%llu] (a special token) holds a NUL byte",
                     path, (unsigned long long)i);
    else
        return z;
    free(z);
    return NULL;
}

/* An added_tokens entry of tokenizer.json. */
static void add_added(cJSON *added, uint64_t id, const char *text, bool special, bool normalized,
                      bool rstrip)
{
    cJSON *a = cJSON_CreateObject();
    cJSON_AddNumberToObject(a, "id", (double)id);
    cJSON_AddStringToObject(a, "content", text);
    cJSON_AddFalseToObject(a, "single_word");
    cJSON_AddFalseToObject(a, "lstrip");
    cJSON_AddBoolToObject(a, "rstrip", rstrip);
    cJSON_AddBoolToObject(a, "normalized", normalized);
    cJSON_AddBoolToObject(a, "special", special);
    cJSON_AddItemToArray(added, a);
}

/* A decoder or normalizer Replace step: pattern → content. */
static cJSON *replace_step(const char *pattern, const char *content)
{
    cJSON *r = cJSON_CreateObject(), *pat = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "type", "Replace");
    cJSON_AddStringToObject(pat, "String", pattern);
    cJSON_AddItemToObject(r, "pattern", pat);
    cJSON_AddStringToObject(r, "content", content);
    return r;
}

/* A step {"type": type} appended to a Sequence's list. */
static cJSON *add_step(cJSON *list, const char *type)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    cJSON_AddItemToArray(list, o);
    return o;
}

#define SPM_SPACE "\xe2\x96\x81" /* U+2581 ▁, SentencePiece's escaped space */

/* llama.cpp's per-model token attribute for Phi-3 (general.name holding
 * "phi-3" or "phi3", any case): its special tokens take the whitespace after
 * them (rstrip; ASCII whitespace: lc_tokenizer_strip_ascii), but for <unk>,
 * <s> and <|endoftext|>. */
static bool phi3_rstrip(const lc_gguf_file *f, const char *text)
{
    lc_gguf_str name;
    lc_error ignore;
    if (lc_gguf_get_str(f, "general.name", &name, &ignore))
        return false;
    bool phi3 = false;
    for (size_t i = 0; i < name.len && !phi3; i++) {
        char w[5] = {0};
        for (size_t k = 0; k < 5 && i + k < name.len; k++)
            w[k] = (char)tolower((unsigned char)name.ptr[i + k]);
        phi3 = !memcmp(w, "phi-3", 5) || !memcmp(w, "phi3", 4);
    }
    return phi3 && strcmp(text, "<unk>") && strcmp(text, "<s>") && strcmp(text, "<|endoftext|>");
}

/* The tokenizer.json of a "llama" (SentencePiece) GGUF vocabulary, without
 * merges (lc_gguf_tokenizer_load makes them from the scores), as llama.cpp's
 * SPM tokenizer reads it: every token in the BPE vocabulary (so that merges may
 * make any of them); control, user-defined and unknown tokens also added
 * tokens, matched in the raw text (llama.cpp's tokenizer_st_partition with
 * parse_special); each text piece between them gets "▁" in front when
 * add_space_prefix (absent: true) and " " → "▁"; no pre-tokenizer (the whole
 * piece is one word); characters without a token become <0xXX> byte tokens
 * (else unk); decode: "▁" → " ", bytes, and with the prefix one leading space
 * stripped. */
static int spm_to_json(const lc_gguf_file *f, const char *path, const lc_gguf_kv *tokens,
                       const lc_gguf_kv *types, cJSON *tj, lc_vocab_entry *ve, size_t *nve,
                       lc_error *err)
{
    bool prefix;
    if (gguf_flag(f, path, "tokenizer.ggml.add_space_prefix", true, &prefix, err))
        return -1;
    cJSON *added = cJSON_CreateArray();
    cJSON *m = cJSON_CreateObject(), *norm = cJSON_CreateObject(), *dec = cJSON_CreateObject();
    cJSON_AddItemToObject(tj, "added_tokens", added); /* owned by tj from here: no leak on error */
    cJSON_AddItemToObject(tj, "model", m);
    cJSON_AddItemToObject(tj, "normalizer", norm);
    cJSON_AddItemToObject(tj, "decoder", dec);
    for (uint64_t i = 0; i < tokens->n; i++) {
        int64_t t = lc_gguf_kv_int(types, i);
        ve[(*nve)++] = (lc_vocab_entry){tokens->strs[i].ptr, tokens->strs[i].len, (int32_t)i};
        if ((t == TT_CONTROL || t == TT_USER_DEFINED || t == TT_UNKNOWN) &&
            tokens->strs[i].len > 0) { /* "" would match nothing */
            char *z = added_text(tokens, i, path, err);
            if (!z)
                return -1;
            add_added(added, i, z, t != TT_USER_DEFINED, false, phi3_rstrip(f, z));
            free(z);
        }
    }
    cJSON_AddStringToObject(m, "type", "BPE");
    cJSON_AddNullToObject(m, "dropout");
    int64_t unk = gguf_special_id(f, 2, true);
    if (unk >= 0 && (uint64_t)unk < tokens->n) {
        char *z = str_dup(tokens->strs[unk]);
        if (!z)
            return lc_error_set(err, "out of memory");
        cJSON_AddStringToObject(m, "unk_token", z);
        free(z);
    } else {
        cJSON_AddNullToObject(m, "unk_token");
    }
    cJSON_AddFalseToObject(m, "fuse_unk");
    cJSON_AddTrueToObject(m, "byte_fallback");
    cJSON_AddFalseToObject(m, "ignore_merges");
    cJSON_AddItemToObject(m, "merges", cJSON_CreateArray());
    cJSON_AddStringToObject(norm, "type", "Sequence");
    cJSON *nl = cJSON_CreateArray(), *dl = cJSON_CreateArray();
    if (prefix)
        cJSON_AddStringToObject(add_step(nl, "Prepend"), "prepend", SPM_SPACE);
    cJSON_AddItemToArray(nl, replace_step(" ", SPM_SPACE));
    cJSON_AddItemToObject(norm, "normalizers", nl);
    cJSON_AddNullToObject(tj, "pre_tokenizer");
    cJSON_AddStringToObject(dec, "type", "Sequence");
    cJSON_AddItemToArray(dl, replace_step(SPM_SPACE, " "));
    add_step(dl, "ByteFallback");
    add_step(dl, "Fuse");
    if (prefix) {
        cJSON *st = add_step(dl, "Strip");
        cJSON_AddStringToObject(st, "content", " ");
        cJSON_AddNumberToObject(st, "start", 1);
        cJSON_AddNumberToObject(st, "stop", 0);
    }
    cJSON_AddItemToObject(dec, "decoders", dl);
    return 0;
}

/* The tokenizer.json of a "gpt2" (byte-level BPE) GGUF vocabulary. */
static int gpt2_to_json(const lc_gguf_file *f, const char *path, const lc_gguf_kv *tokens,
                        const lc_gguf_kv *types, cJSON *tj, lc_vocab_entry *ve, size_t *nve,
                        lc_error *err)
{
    const lc_gguf_kv *merges;
    lc_gguf_str pre = {"default", 7};
    if (lc_gguf_get_arr(f, "tokenizer.ggml.merges", LC_GGUF_STRING, &merges, err))
        return -1;
    lc_error ignore;
    lc_gguf_get_str(f, "tokenizer.ggml.pre", &pre, &ignore);
    char *pre_z = str_dup(pre);
    if (!pre_z)
        return lc_error_set(err, "out of memory");
    cJSON *pt = pre_tokenizer_of(pre_z, path, err);
    bool llama3 = !strcmp(pre_z, "llama-bpe"); /* llama.cpp ignores merges there */
    free(pre_z);
    if (!pt)
        return -1;
    cJSON *added = cJSON_CreateArray(), *ml = cJSON_CreateArray();
    cJSON *m = cJSON_CreateObject(), *dec = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "type", "BPE");
    cJSON_AddNullToObject(m, "dropout");
    cJSON_AddNullToObject(m, "unk_token");
    cJSON_AddBoolToObject(m, "ignore_merges", llama3);
    cJSON_AddFalseToObject(m, "byte_fallback");
    cJSON_AddItemToObject(m, "merges", ml);
    cJSON_AddStringToObject(dec, "type", "ByteLevel");
    cJSON_AddItemToObject(tj, "added_tokens", added);
    cJSON_AddNullToObject(tj, "normalizer");
    cJSON_AddItemToObject(tj, "pre_tokenizer", pt);
    cJSON_AddItemToObject(tj, "model", m);
    cJSON_AddItemToObject(tj, "decoder", dec);
    for (uint64_t i = 0; i < tokens->n; i++) {
        int64_t t = lc_gguf_kv_int(types, i);
        if (t == TT_CONTROL || t == TT_USER_DEFINED) {
            char *z = added_text(tokens, i, path, err);
            if (!z)
                return -1;
            add_added(added, i, z, t == TT_CONTROL, t == TT_USER_DEFINED, false);
            free(z);
        } else if (t != TT_UNUSED) {
            ve[(*nve)++] = (lc_vocab_entry){tokens->strs[i].ptr, tokens->strs[i].len, (int32_t)i};
        }
    }
    for (uint64_t i = 0; i < merges->n; i++) {
        char *z = str_dup(merges->strs[i]);
        if (!z)
            return lc_error_set(err, "out of memory");
        cJSON_AddItemToArray(ml, cJSON_CreateString(z));
        free(z);
    }
    return 0;
}

/* tokenizer.json and tokenizer_config.json texts of a GGUF vocabulary; *spm
 * set for a "llama" one (merges still to be made from the scores). */
static int gguf_to_json(const lc_gguf_file *f, const char *path, cJSON *tj, cJSON *cfg,
                        bool *spm, lc_vocab_entry **ve, size_t *nve, lc_error *err)
{
    const lc_gguf_kv *tokens, *types;
    lc_gguf_str model;
    if (lc_gguf_get_str(f, "tokenizer.ggml.model", &model, err))
        return -1;
    bool gpt2 = model.len == 4 && !memcmp(model.ptr, "gpt2", 4);
    *spm = model.len == 5 && !memcmp(model.ptr, "llama", 5);
    char pb[40];
    if (!gpt2 && !*spm)
        return lc_error_set(err, "%s: tokenizer.ggml.model '%s': lorac reads byte-level BPE "
                            "(gpt2) and SentencePiece (llama) vocabularies from GGUF; put the "
                            "model's tokenizer.json next to the file", path,
                            lc_printable_n(model.ptr, model.len, pb, sizeof pb));
    if (lc_gguf_get_arr(f, "tokenizer.ggml.tokens", LC_GGUF_STRING, &tokens, err) ||
        lc_gguf_get_arr(f, "tokenizer.ggml.token_type", LC_GGUF_I32, &types, err))
        return -1;
    if (types->n != tokens->n)
        return lc_error_set(err, "%s: tokenizer.ggml.token_type has %llu entries for %llu tokens",
                            path, (unsigned long long)types->n, (unsigned long long)tokens->n);
    if (tokens->n > LC_BPE_MAX_ID)
        return lc_error_set(err, "%s: %llu tokens (at most %d)", path,
                            (unsigned long long)tokens->n, LC_BPE_MAX_ID);
    if (!(*ve = malloc((tokens->n ? tokens->n : 1) * sizeof **ve)))
        return lc_error_set(err, "out of memory for %llu tokens", (unsigned long long)tokens->n);
    cJSON_AddNullToObject(tj, "truncation");
    cJSON_AddNullToObject(tj, "padding");
    if ((*spm ? spm_to_json : gpt2_to_json)(f, path, tokens, types, tj, *ve, nve, err) ||
        post_processor_of(f, path, tokens, *spm, tj, err))
        return -1;
    for (int k = 0; k < 4; k++) /* in lc_special order: bos, eos, unk, pad */
        add_special_text(cfg, f, tokens, k, *spm, lc_special_key((lc_special)k));
    return 0;
}

/* tokenizer.ggml.scores (finite F32, one per token) as a malloc'd array in *out. */
static int spm_scores(const lc_gguf_file *f, const char *path, float **out, size_t *n,
                      lc_error *err)
{
    const lc_gguf_kv *scores, *tokens;
    *out = NULL;
    if (lc_gguf_get_arr(f, "tokenizer.ggml.tokens", LC_GGUF_STRING, &tokens, err) ||
        lc_gguf_get_arr(f, "tokenizer.ggml.scores", LC_GGUF_F32, &scores, err))
        return -1;
    if (scores->n != tokens->n)
        return lc_error_set(err, "%s: tokenizer.ggml.scores has %llu entries for %llu tokens",
                            path, (unsigned long long)scores->n, (unsigned long long)tokens->n);
    float *s = malloc((scores->n ? scores->n : 1) * sizeof *s);
    if (!s)
        return lc_error_set(err, "out of memory for %llu scores", (unsigned long long)scores->n);
    for (uint64_t i = 0; i < scores->n; i++) {
        s[i] = (float)lc_gguf_kv_float(scores, i);
        if (!isfinite(s[i])) {
            free(s);
            return lc_error_set(err, "%s: tokenizer.ggml.scores[%llu] is not a finite number",
                                path, (unsigned long long)i);
        }
    }
    *out = s;
    *n = scores->n;
    return 0;
}

int lc_gguf_tokenizer_load(lc_tokenizer **out, const char *path, lc_error *err)
{
    lc_gguf_file f;
    *out = NULL;
    if (lc_gguf_open(&f, path, err))
        return -1;
    int rc = lc_gguf_tokenizer_from(out, &f, err);
    lc_gguf_close(&f);
    return rc;
}

int lc_gguf_tokenizer_from(lc_tokenizer **out, const lc_gguf_file *fp, lc_error *err)
{
    const char *path = fp->path;
    *out = NULL;
    bool spm = false;
    float *scores = NULL;
    size_t n_scores = 0, nve = 0;
    lc_vocab_entry *ve = NULL;
    cJSON *tj = cJSON_CreateObject(), *cfg = cJSON_CreateObject();
    int rc = tj && cfg ? gguf_to_json(fp, path, tj, cfg, &spm, &ve, &nve, err)
                       : lc_error_set(err, "out of memory");
    if (!rc && spm)
        rc = spm_scores(fp, path, &scores, &n_scores, err);
    char *tjs = rc ? NULL : cJSON_PrintUnformatted(tj), *cfgs = rc ? NULL : cJSON_PrintUnformatted(cfg);
    if (!rc && (!tjs || !cfgs))
        rc = lc_error_set(err, "out of memory");
    if (!rc)
        rc = lc_tokenizer_from_json_vocab(out, tjs, strlen(tjs), cfgs, strlen(cfgs), path, ve,
                                          nve, err);
    if (!rc)
        lc_tokenizer_strip_ascii(*out); /* llama.cpp's isspace for lstrip/rstrip tokens */
    if (!rc && spm && lc_tokenizer_merges_from_scores(*out, scores, n_scores, err)) {
        lc_error_prefix(err, "%s", path);
        lc_tokenizer_free(*out);
        *out = NULL;
        rc = -1;
    }
    free(scores);
    free(ve);
    free(tjs);
    free(cfgs);
    cJSON_Delete(tj);
    cJSON_Delete(cfg);
    return rc;
}

int lc_gguf_chat_template(const char *path, char **text, lc_error *err)
{
    lc_gguf_file f;
    *text = NULL;
    if (lc_gguf_open(&f, path, err))
        return -1;
    int rc = 0;
    const lc_gguf_kv *kv = lc_gguf_find_kv(&f, "tokenizer.chat_template");
    if (kv && kv->type == LC_GGUF_STRING && !(*text = str_dup(kv->strs[0])))
        rc = lc_error_set(err, "out of memory");
    else if (kv && kv->type != LC_GGUF_STRING)
        rc = lc_error_set(err, "%s: tokenizer.chat_template is not a string", path);
    lc_gguf_close(&f);
    return rc;
}

/* chat_value.h — the values a chat template computes with (Jinja's Python objects).
 *
 * The template engine (data/chat_template.c) evaluates over these: undefined, none, bool,
 * int, float, str, list (and tuple), dict (insertion-ordered, as Python's) and namespace.
 * Every value lives in one render's arena (ct_arena) and is freed with it, so evaluation
 * never frees piecemeal; the arena has a byte budget, because templates are untrusted
 * input and `'x' * 10**9` must be refused, not attempted. Strings are UTF-8 byte spans.
 * Printing (ct_str: Python str()) and tojson (Python json.dumps) follow CPython exactly,
 * since rendered text must match transformers byte for byte. */
#ifndef LC_CHAT_VALUE_H
#define LC_CHAT_VALUE_H

#include <stdbool.h>
#include <stddef.h>

#include "autograd/error.h"

typedef enum {
    CT_UNDEF, CT_NONE, CT_BOOL, CT_INT, CT_FLOAT, CT_STR, CT_LIST, CT_DICT, CT_NS,
    CT_MACRO, CT_BUILTIN
} ct_kind;

typedef struct ct_value ct_value;
struct ct_value {
    ct_kind kind;
    bool tuple;          /* CT_LIST printed as (a, b) */
    const char *name;    /* CT_UNDEF: the missing name (for messages); CT_BUILTIN: its name */
    union {
        bool b;
        long long i;
        double f;
        struct { const char *s; size_t n; } str;
        struct { ct_value **items; size_t n, cap; } list;
        struct { const char **keys; size_t *klen; ct_value **vals; size_t n, cap; } dict;
        const void *macro; /* CT_MACRO: the parser's node */
    } u;
};

/* A bump allocator with a byte budget; ct_alloc returns NULL (and sets err once) past it. */
typedef struct ct_arena {
    struct ct_block *head;
    size_t used, budget;
    lc_error *err;
} ct_arena;

void ct_arena_init(ct_arena *a, size_t budget, lc_error *err);
void ct_arena_free(ct_arena *a);
void *ct_alloc(ct_arena *a, size_t n);

ct_value *ct_new(ct_arena *a, ct_kind kind);
ct_value *ct_int(ct_arena *a, long long i);
ct_value *ct_float(ct_arena *a, double f);
ct_value *ct_bool(ct_arena *a, bool b);
ct_value *ct_strn(ct_arena *a, const char *s, size_t n); /* copies s */
ct_value *ct_list(ct_arena *a);
ct_value *ct_dict(ct_arena *a);
int ct_list_push(ct_arena *a, ct_value *list, ct_value *v);
/* sets (replacing) key in a dict or namespace; the key is copied */
int ct_dict_set(ct_arena *a, ct_value *dict, const char *key, size_t klen, ct_value *v);
ct_value *ct_dict_get(const ct_value *dict, const char *key, size_t klen); /* NULL if absent */

bool ct_truthy(const ct_value *v);
bool ct_equal(const ct_value *x, const ct_value *y);
const char *ct_kind_name(const ct_value *v);

/* A growing byte buffer inside an arena. */
typedef struct ct_buf {
    char *p;
    size_t n, cap;
} ct_buf;
int ct_buf_add(ct_arena *a, ct_buf *b, const char *s, size_t n);

/* Python str(v) appended to b. */
int ct_str(ct_arena *a, ct_buf *b, const ct_value *v);
/* json.dumps(v, ensure_ascii=False, indent=indent (<0: None), separators, sort_keys). */
int ct_tojson(ct_arena *a, ct_buf *b, const ct_value *v, int indent, const char *item_sep,
              const char *key_sep, bool sort_keys);

/* Converts parsed JSON (cJSON) into arena values: integral numbers become int. */
struct cJSON;
ct_value *ct_from_json(ct_arena *a, const struct cJSON *j);

#endif

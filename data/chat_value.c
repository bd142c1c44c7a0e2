/* chat_value.c — chat-template values, their arena, Python str() and json.dumps.
 * See chat_value.h. */
#include "data/chat_value.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CT_BLOCK_MIN (64 * 1024)
#define CT_PRINT_DEPTH 64 /* nesting printed by str()/tojson: also stops namespace cycles */

struct ct_block {
    struct ct_block *next;
    size_t cap, off;
    max_align_t data[];
};

void ct_arena_init(ct_arena *a, size_t budget, lc_error *err)
{
    a->head = NULL;
    a->used = 0;
    a->budget = budget;
    a->err = err;
}

void ct_arena_free(ct_arena *a)
{
    struct ct_block *b = a->head;
    while (b) {
        struct ct_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
}

void *ct_alloc(ct_arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (n == 0)
        n = 16;
    if (n > a->budget || a->used > a->budget - n) {
        lc_error_set(a->err, "chat template: render needs more than %zu MiB of memory",
                     a->budget >> 20);
        return NULL;
    }
    struct ct_block *b = a->head;
    if (!b || b->cap - b->off < n) {
        size_t cap = n > CT_BLOCK_MIN ? n : CT_BLOCK_MIN;
        b = malloc(sizeof *b + cap);
        if (!b) {
            lc_error_set(a->err, "chat template: out of memory");
            return NULL;
        }
        b->cap = cap;
        b->off = 0;
        b->next = a->head;
        a->head = b;
    }
    void *p = (char *)b->data + b->off;
    b->off += n;
    a->used += n;
    memset(p, 0, n);
    return p;
}

ct_value *ct_new(ct_arena *a, ct_kind kind)
{
    ct_value *v = ct_alloc(a, sizeof *v);
    if (v)
        v->kind = kind;
    return v;
}

ct_value *ct_int(ct_arena *a, long long i)
{
    ct_value *v = ct_new(a, CT_INT);
    if (v)
        v->u.i = i;
    return v;
}

ct_value *ct_float(ct_arena *a, double f)
{
    ct_value *v = ct_new(a, CT_FLOAT);
    if (v)
        v->u.f = f;
    return v;
}

ct_value *ct_bool(ct_arena *a, bool b)
{
    ct_value *v = ct_new(a, CT_BOOL);
    if (v)
        v->u.b = b;
    return v;
}

ct_value *ct_strn(ct_arena *a, const char *s, size_t n)
{
    ct_value *v = ct_new(a, CT_STR);
    char *p = v ? ct_alloc(a, n + 1) : NULL;
    if (!p)
        return NULL;
    if (n)
        memcpy(p, s, n);
    v->u.str.s = p;
    v->u.str.n = n;
    return v;
}

ct_value *ct_list(ct_arena *a) { return ct_new(a, CT_LIST); }
ct_value *ct_dict(ct_arena *a) { return ct_new(a, CT_DICT); }

int ct_list_push(ct_arena *a, ct_value *list, ct_value *v)
{
    if (list->u.list.n == list->u.list.cap) {
        size_t cap = list->u.list.cap ? 2 * list->u.list.cap : 4;
        ct_value **items = ct_alloc(a, cap * sizeof *items);
        if (!items)
            return -1;
        if (list->u.list.n)
            memcpy(items, list->u.list.items, list->u.list.n * sizeof *items);
        list->u.list.items = items;
        list->u.list.cap = cap;
    }
    list->u.list.items[list->u.list.n++] = v;
    return 0;
}

ct_value *ct_dict_get(const ct_value *d, const char *key, size_t klen)
{
    for (size_t i = 0; i < d->u.dict.n; i++)
        if (d->u.dict.klen[i] == klen && memcmp(d->u.dict.keys[i], key, klen) == 0)
            return d->u.dict.vals[i];
    return NULL;
}

int ct_dict_set(ct_arena *a, ct_value *d, const char *key, size_t klen, ct_value *v)
{
    for (size_t i = 0; i < d->u.dict.n; i++)
        if (d->u.dict.klen[i] == klen && memcmp(d->u.dict.keys[i], key, klen) == 0) {
            d->u.dict.vals[i] = v;
            return 0;
        }
    if (d->u.dict.n == d->u.dict.cap) {
        size_t cap = d->u.dict.cap ? 2 * d->u.dict.cap : 4, n = d->u.dict.n;
        const char **keys = ct_alloc(a, cap * sizeof *keys);
        size_t *klens = ct_alloc(a, cap * sizeof *klens);
        ct_value **vals = ct_alloc(a, cap * sizeof *vals);
        if (!keys || !klens || !vals)
            return -1;
        if (n) {
            memcpy(keys, d->u.dict.keys, n * sizeof *keys);
            memcpy(klens, d->u.dict.klen, n * sizeof *klens);
            memcpy(vals, d->u.dict.vals, n * sizeof *vals);
        }
        d->u.dict.keys = keys;
        d->u.dict.klen = klens;
        d->u.dict.vals = vals;
        d->u.dict.cap = cap;
    }
    char *k = ct_alloc(a, klen + 1);
    if (!k)
        return -1;
    memcpy(k, key, klen);
    d->u.dict.keys[d->u.dict.n] = k;
    d->u.dict.klen[d->u.dict.n] = klen;
    d->u.dict.vals[d->u.dict.n++] = v;
    return 0;
}

bool ct_truthy(const ct_value *v)
{
    switch (v->kind) {
    case CT_UNDEF: case CT_NONE: return false;
    case CT_BOOL: return v->u.b;
    case CT_INT: return v->u.i != 0;
    case CT_FLOAT: return v->u.f != 0.0;
    case CT_STR: return v->u.str.n != 0;
    case CT_LIST: return v->u.list.n != 0;
    case CT_DICT: return v->u.dict.n != 0;
    default: return true;
    }
}

static bool is_num(const ct_value *v)
{
    return v->kind == CT_INT || v->kind == CT_FLOAT || v->kind == CT_BOOL;
}

static double num(const ct_value *v)
{
    return v->kind == CT_FLOAT ? v->u.f : v->kind == CT_INT ? (double)v->u.i : (double)v->u.b;
}

bool ct_equal(const ct_value *x, const ct_value *y)
{
    if (is_num(x) && is_num(y)) {
        if (x->kind != CT_FLOAT && y->kind != CT_FLOAT)
            return (x->kind == CT_INT ? x->u.i : x->u.b) == (y->kind == CT_INT ? y->u.i : y->u.b);
        return num(x) == num(y);
    }
    if (x->kind != y->kind)
        return false;
    switch (x->kind) {
    case CT_UNDEF: case CT_NONE: return true;
    case CT_STR:
        return x->u.str.n == y->u.str.n && memcmp(x->u.str.s, y->u.str.s, x->u.str.n) == 0;
    case CT_LIST:
        if (x->u.list.n != y->u.list.n)
            return false;
        for (size_t i = 0; i < x->u.list.n; i++)
            if (!ct_equal(x->u.list.items[i], y->u.list.items[i]))
                return false;
        return true;
    case CT_DICT:
        if (x->u.dict.n != y->u.dict.n)
            return false;
        for (size_t i = 0; i < x->u.dict.n; i++) {
            const ct_value *o = ct_dict_get(y, x->u.dict.keys[i], x->u.dict.klen[i]);
            if (!o || !ct_equal(x->u.dict.vals[i], o))
                return false;
        }
        return true;
    default: return x == y;
    }
}

const char *ct_kind_name(const ct_value *v)
{
    static const char *names[] = {"undefined", "NoneType", "bool", "int", "float", "str",
                                  "list", "dict", "namespace", "macro", "function"};
    if (v->kind == CT_LIST && v->tuple)
        return "tuple";
    return names[v->kind];
}

int ct_buf_add(ct_arena *a, ct_buf *b, const char *s, size_t n)
{
    if (b->cap - b->n <= n) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->n <= n)
            cap *= 2;
        char *p = ct_alloc(a, cap);
        if (!p)
            return -1;
        if (b->n)
            memcpy(p, b->p, b->n);
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return 0;
}

static int add_s(ct_arena *a, ct_buf *b, const char *s) { return ct_buf_add(a, b, s, strlen(s)); }

/* Python repr(float): the shortest digits that read back, fixed for 1e-4 <= |x| < 1e16. */
static int add_float(ct_arena *a, ct_buf *b, double f, bool json)
{
    char s[64];
    if (isnan(f))
        return add_s(a, b, json ? "NaN" : "nan");
    if (isinf(f))
        return add_s(a, b, f > 0 ? (json ? "Infinity" : "inf") : (json ? "-Infinity" : "-inf"));
    int p = 1;
    for (; p < 17; p++) {
        snprintf(s, sizeof s, "%.*e", p - 1, f);
        if (strtod(s, NULL) == f)
            break;
    }
    snprintf(s, sizeof s, "%.*e", p - 1, f);
    int exp = atoi(strchr(s, 'e') + 1);
    if (exp >= -4 && exp < 16) {
        int decimals = p - 1 - exp;
        snprintf(s, sizeof s, "%.*f", decimals > 0 ? decimals : 0, f);
        if (!strchr(s, '.'))
            strcat(s, ".0");
        return add_s(a, b, s);
    }
    /* d.ddde+XX with at least two exponent digits, as CPython */
    char mant[32];
    snprintf(mant, sizeof mant, "%.*e", p - 1, f);
    *strchr(mant, 'e') = '\0';
    snprintf(s, sizeof s, "%se%c%02d", mant, exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    return add_s(a, b, s);
}

/* Python repr(str): single quotes unless the text holds ' and no ". */
static int add_repr_str(ct_arena *a, ct_buf *b, const char *s, size_t n)
{
    bool sq = memchr(s, '\'', n) != NULL, dq = memchr(s, '"', n) != NULL;
    char q = sq && !dq ? '"' : '\'';
    if (ct_buf_add(a, b, &q, 1))
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        const char *e = NULL;
        if (c == '\\') e = "\\\\";
        else if (c == '\n') e = "\\n";
        else if (c == '\r') e = "\\r";
        else if (c == '\t') e = "\\t";
        else if (c == (unsigned char)q) e = q == '\'' ? "\\'" : "\\\"";
        else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\x%02x", c);
            e = esc;
        }
        if (e ? add_s(a, b, e) : ct_buf_add(a, b, s + i, 1))
            return -1;
    }
    return ct_buf_add(a, b, &q, 1);
}

static int repr(ct_arena *a, ct_buf *b, const ct_value *v, int depth);

static int str_depth(ct_arena *a, ct_buf *b, const ct_value *v, int depth)
{
    char s[32];
    if (depth > CT_PRINT_DEPTH)
        return lc_error_set(a->err, "chat template: value nested more than %d deep", CT_PRINT_DEPTH);
    switch (v->kind) {
    case CT_UNDEF: return 0;
    case CT_NONE: return add_s(a, b, "None");
    case CT_BOOL: return add_s(a, b, v->u.b ? "True" : "False");
    case CT_INT:
        snprintf(s, sizeof s, "%lld", v->u.i);
        return add_s(a, b, s);
    case CT_FLOAT: return add_float(a, b, v->u.f, false);
    case CT_STR: return ct_buf_add(a, b, v->u.str.s, v->u.str.n);
    case CT_LIST:
        if (add_s(a, b, v->tuple ? "(" : "["))
            return -1;
        for (size_t i = 0; i < v->u.list.n; i++)
            if ((i && add_s(a, b, ", ")) || repr(a, b, v->u.list.items[i], depth + 1))
                return -1;
        if (v->tuple && v->u.list.n == 1 && add_s(a, b, ","))
            return -1;
        return add_s(a, b, v->tuple ? ")" : "]");
    case CT_DICT: case CT_NS:
        if (add_s(a, b, v->kind == CT_NS ? "<Namespace {" : "{"))
            return -1;
        for (size_t i = 0; i < v->u.dict.n; i++)
            if ((i && add_s(a, b, ", ")) ||
                add_repr_str(a, b, v->u.dict.keys[i], v->u.dict.klen[i]) || add_s(a, b, ": ") ||
                repr(a, b, v->u.dict.vals[i], depth + 1))
                return -1;
        return add_s(a, b, v->kind == CT_NS ? "}>" : "}");
    case CT_MACRO: return add_s(a, b, "<macro>");
    case CT_BUILTIN: return add_s(a, b, "<built-in function>");
    }
    return 0;
}

static int repr(ct_arena *a, ct_buf *b, const ct_value *v, int depth)
{
    if (v->kind == CT_STR)
        return add_repr_str(a, b, v->u.str.s, v->u.str.n);
    return str_depth(a, b, v, depth);
}

int ct_str(ct_arena *a, ct_buf *b, const ct_value *v) { return str_depth(a, b, v, 0); }

static int json_str(ct_arena *a, ct_buf *b, const char *s, size_t n)
{
    if (add_s(a, b, "\""))
        return -1;
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        char esc[8];
        const char *e = esc;
        switch (c) {
        case '"': e = "\\\""; break;
        case '\\': e = "\\\\"; break;
        case '\n': e = "\\n"; break;
        case '\r': e = "\\r"; break;
        case '\t': e = "\\t"; break;
        case '\b': e = "\\b"; break;
        case '\f': e = "\\f"; break;
        default: snprintf(esc, sizeof esc, "\\u%04x", c);
        }
        if (ct_buf_add(a, b, s + run, i - run) || add_s(a, b, e))
            return -1;
        run = i + 1;
    }
    return ct_buf_add(a, b, s + run, n - run) || add_s(a, b, "\"") ? -1 : 0;
}

typedef struct {
    int indent;
    const char *item_sep, *key_sep;
    bool sort_keys;
} json_fmt;

static int json_newline(ct_arena *a, ct_buf *b, const json_fmt *f, int level)
{
    if (f->indent < 0)
        return 0;
    if (add_s(a, b, "\n"))
        return -1;
    for (int i = 0; i < f->indent * level; i++)
        if (add_s(a, b, " "))
            return -1;
    return 0;
}

static int key_cmp(const ct_value *d, size_t x, size_t y)
{
    size_t nx = d->u.dict.klen[x], ny = d->u.dict.klen[y];
    int c = memcmp(d->u.dict.keys[x], d->u.dict.keys[y], nx < ny ? nx : ny);
    return c ? c : (nx > ny) - (nx < ny);
}

static int json_value(ct_arena *a, ct_buf *b, const ct_value *v, const json_fmt *f, int level)
{
    char s[32];
    if (level > CT_PRINT_DEPTH)
        return lc_error_set(a->err, "chat template: tojson: value nested more than %d deep",
                            CT_PRINT_DEPTH);
    switch (v->kind) {
    case CT_NONE: return add_s(a, b, "null");
    case CT_BOOL: return add_s(a, b, v->u.b ? "true" : "false");
    case CT_INT:
        snprintf(s, sizeof s, "%lld", v->u.i);
        return add_s(a, b, s);
    case CT_FLOAT: return add_float(a, b, v->u.f, true);
    case CT_STR: return json_str(a, b, v->u.str.s, v->u.str.n);
    case CT_LIST:
        if (v->u.list.n == 0)
            return add_s(a, b, "[]");
        if (add_s(a, b, "["))
            return -1;
        for (size_t i = 0; i < v->u.list.n; i++)
            if ((i && add_s(a, b, f->item_sep)) || json_newline(a, b, f, level + 1) ||
                json_value(a, b, v->u.list.items[i], f, level + 1))
                return -1;
        return json_newline(a, b, f, level) || add_s(a, b, "]") ? -1 : 0;
    case CT_DICT: {
        size_t n = v->u.dict.n;
        if (n == 0)
            return add_s(a, b, "{}");
        size_t *order = ct_alloc(a, n * sizeof *order);
        if (!order)
            return -1;
        for (size_t i = 0; i < n; i++) {
            order[i] = i; /* insertion sort: stable, dicts here are small */
            for (size_t j = i; f->sort_keys && j > 0 && key_cmp(v, order[j - 1], order[j]) > 0; j--) {
                size_t t = order[j];
                order[j] = order[j - 1];
                order[j - 1] = t;
            }
        }
        if (add_s(a, b, "{"))
            return -1;
        for (size_t k = 0; k < n; k++) {
            size_t i = order[k];
            if ((k && add_s(a, b, f->item_sep)) || json_newline(a, b, f, level + 1) ||
                json_str(a, b, v->u.dict.keys[i], v->u.dict.klen[i]) || add_s(a, b, f->key_sep) ||
                json_value(a, b, v->u.dict.vals[i], f, level + 1))
                return -1;
        }
        return json_newline(a, b, f, level) || add_s(a, b, "}") ? -1 : 0;
    }
    default:
        return lc_error_set(a->err, "chat template: tojson: Object of type %s is not JSON "
                            "serializable", ct_kind_name(v));
    }
}

int ct_tojson(ct_arena *a, ct_buf *b, const ct_value *v, int indent, const char *item_sep,
              const char *key_sep, bool sort_keys)
{
    json_fmt f = {indent, item_sep ? item_sep : indent >= 0 ? "," : ", ",
                  key_sep ? key_sep : ": ", sort_keys};
    return json_value(a, b, v, &f, 0);
}

ct_value *ct_from_json(ct_arena *a, const cJSON *j)
{
    ct_value *v = NULL;
    if (cJSON_IsNull(j))
        return ct_new(a, CT_NONE);
    if (cJSON_IsBool(j))
        return ct_bool(a, cJSON_IsTrue(j));
    if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (d == floor(d) && fabs(d) < 9e15)
            return ct_int(a, (long long)d);
        return ct_float(a, d);
    }
    if (cJSON_IsString(j))
        return ct_strn(a, j->valuestring, strlen(j->valuestring));
    if (cJSON_IsArray(j)) {
        v = ct_list(a);
        for (const cJSON *c = j->child; v && c; c = c->next) {
            ct_value *e = ct_from_json(a, c);
            if (!e || ct_list_push(a, v, e))
                return NULL;
        }
        return v;
    }
    if (cJSON_IsObject(j)) {
        v = ct_dict(a);
        for (const cJSON *c = j->child; v && c; c = c->next) {
            ct_value *e = ct_from_json(a, c);
            if (!e || ct_dict_set(a, v, c->string, strlen(c->string), e))
                return NULL;
        }
        return v;
    }
    lc_error_set(a->err, "chat template: unsupported JSON value in the context");
    return NULL;
}

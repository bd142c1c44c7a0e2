/* chat_template.c — evaluates a parsed chat template (data/chat_parse.h) over a context.
 * See chat_template.h. Python semantics are followed where output depends on them:
 * str() of values, integer vs float arithmetic, negative indices and slices by code point,
 * and the filters, tests, string and dict methods real templates call. */
#include "data/chat_template.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/chat_parse.h"

#define CT_PARSE_BUDGET ((size_t)64 << 20)
#define CT_RENDER_BUDGET ((size_t)256 << 20)
#define CT_MAX_OUTPUT ((size_t)32 << 20)
#define CT_MAX_ITERATIONS 100000LL
#define CT_MAX_RANGE 100000LL
#define CT_MAX_CALLS 64

struct lc_chat_template {
    ct_template t;
};

typedef struct scope {
    ct_value *vars;
    struct scope *parent;
} scope;

typedef struct {
    ct_arena *a;
    lc_error *err;
    scope *root;
    long long iterations;
    int calls;
    long long now;
} ev;

enum { EX_OK = 0, EX_ERR = -1, EX_BREAK = 1, EX_CONTINUE = 2 };

__attribute__((format(printf, 3, 4)))
static ct_value *fail(ev *e, int line, const char *fmt, ...)
{
    char msg[LC_ERROR_MAX - 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lc_error_set(e->err, "chat template line %d: %s", line, msg);
    return NULL;
}

static ct_value *undef(ev *e, const char *name)
{
    ct_value *v = ct_new(e->a, CT_UNDEF);
    if (v)
        v->name = name;
    return v;
}

static const char *undef_name(const ct_value *v) { return v->name ? v->name : "value"; }

/* ---- UTF-8 and Python whitespace ----------------------------------------------------- */

static size_t cp_len(unsigned char c)
{
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

static size_t cp_count(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i += cp_len((unsigned char)s[i]))
        k++;
    return k;
}

/* byte offset of code point index ci (ci <= count) */
static size_t cp_offset(const char *s, size_t n, size_t ci)
{
    size_t i = 0;
    while (ci-- && i < n)
        i += cp_len((unsigned char)s[i]);
    return i < n ? i : n;
}

/* length in bytes of a Python whitespace character at s (0 if none) */
static size_t ws_at(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    if (n == 0)
        return 0;
    if (u[0] == ' ' || (u[0] >= 0x09 && u[0] <= 0x0D) || (u[0] >= 0x1C && u[0] <= 0x1F))
        return 1;
    if (n >= 2 && u[0] == 0xC2 && (u[1] == 0x85 || u[1] == 0xA0))
        return 2;
    if (n >= 3 && u[0] == 0xE1 && u[1] == 0x9A && u[2] == 0x80)
        return 3;
    if (n >= 3 && u[0] == 0xE2 && u[1] == 0x80 &&
        (u[2] <= 0x8A || u[2] == 0xA8 || u[2] == 0xA9 || u[2] == 0xAF))
        return 3;
    if (n >= 3 && u[0] == 0xE2 && u[1] == 0x81 && u[2] == 0x9F)
        return 3;
    if (n >= 3 && u[0] == 0xE3 && u[1] == 0x80 && u[2] == 0x80)
        return 3;
    return 0;
}

static size_t ws_before(const char *s, size_t end)
{
    size_t b = end;
    while (b > 0 && ((unsigned char)s[b - 1] & 0xC0) == 0x80)
        b--;
    if (b > 0)
        b--;
    while (b > 0 && ((unsigned char)s[b] & 0xC0) == 0x80)
        b--;
    return ws_at(s + b, end - b) == end - b ? end - b : 0;
}

static bool in_chars(const char *c, size_t cn, const char *s, size_t len)
{
    for (size_t i = 0; i < cn; i += cp_len((unsigned char)c[i]))
        if (cp_len((unsigned char)c[i]) == len && memcmp(c + i, s, len) == 0)
            return true;
    return false;
}

/* Python str.strip/lstrip/rstrip; chars NULL = whitespace */
static ct_value *strip(ev *e, const ct_value *v, const ct_value *chars, bool left, bool right)
{
    const char *s = v->u.str.s;
    size_t b = 0, end = v->u.str.n;
    const char *c = chars ? chars->u.str.s : NULL;
    size_t cn = chars ? chars->u.str.n : 0;
    while (left && b < end) {
        size_t k = c ? (in_chars(c, cn, s + b, cp_len((unsigned char)s[b])) ?
                        cp_len((unsigned char)s[b]) : 0) : ws_at(s + b, end - b);
        if (!k)
            break;
        b += k;
    }
    while (right && end > b) {
        size_t k;
        if (c) {
            size_t st = end - 1;
            while (st > b && ((unsigned char)s[st] & 0xC0) == 0x80)
                st--;
            k = in_chars(c, cn, s + st, end - st) ? end - st : 0;
        } else {
            k = ws_before(s + b, end - b);
        }
        if (!k)
            break;
        end -= k;
    }
    return ct_strn(e->a, s + b, end - b);
}

static ct_value *case_map(ev *e, const ct_value *v, char mode)
{
    ct_value *r = ct_strn(e->a, v->u.str.s, v->u.str.n);
    if (!r)
        return NULL;
    char *s = (char *)r->u.str.s;
    bool word_start = true;
    for (size_t i = 0; i < r->u.str.n; i++) {
        char c = s[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (mode == 'u' || ((mode == 't' || mode == 'T' || mode == 'c') && word_start && alpha))
            s[i] = (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
        else if (mode == 'l' || mode == 't' || mode == 'T' || mode == 'c')
            s[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
        if (mode == 'c')
            word_start = false;
        else if (mode == 't') /* str.title(): a word starts after any non-letter */
            word_start = !alpha && !((unsigned char)c & 0x80);
        else if (mode == 'T') /* jinja's title filter: after - whitespace ( { [ < */
            word_start = strchr("- \t\n\r\f\v({[<", c) != NULL && c != '\0';
    }
    return r;
}

static ct_value *replace(ev *e, const ct_value *v, const ct_value *old, const ct_value *new_,
                         long long count)
{
    ct_buf b = {0};
    const char *s = v->u.str.s;
    size_t n = v->u.str.n, on = old->u.str.n, i = 0;
    if (ct_buf_add(e->a, &b, "", 0))
        return NULL;
    while (i <= n) {
        const char *hit = NULL;
        if (count != 0) {
            if (on == 0)
                hit = s + i;
            else if (n - i >= on)
                hit = memmem(s + i, n - i, old->u.str.s, on);
        }
        if (!hit)
            break;
        size_t h = (size_t)(hit - s);
        if (ct_buf_add(e->a, &b, s + i, h - i) ||
            ct_buf_add(e->a, &b, new_->u.str.s, new_->u.str.n))
            return NULL;
        if (b.n > CT_MAX_OUTPUT)
            return fail(e, 0, "replace: result longer than %zu bytes", CT_MAX_OUTPUT);
        if (count > 0)
            count--;
        if (on == 0) {
            if (h >= n) {
                i = n + 1;
                break;
            }
            size_t k = cp_len((unsigned char)s[h]);
            if (ct_buf_add(e->a, &b, s + h, k))
                return NULL;
            i = h + k;
        } else {
            i = h + on;
        }
    }
    if (i < n && ct_buf_add(e->a, &b, s + i, n - i))
        return NULL;
    return ct_strn(e->a, b.p, b.n);
}

static ct_value *split(ev *e, int line, const ct_value *v, const ct_value *sep, long long maxsplit)
{
    ct_value *r = ct_list(e->a);
    const char *s = v->u.str.s;
    size_t n = v->u.str.n, i = 0;
    if (!r)
        return NULL;
    if (sep && sep->kind != CT_NONE) {
        if (sep->kind != CT_STR || sep->u.str.n == 0)
            return fail(e, line, "split: empty or non-string separator");
        for (;;) {
            const char *hit = maxsplit != 0 && n - i >= sep->u.str.n ?
                memmem(s + i, n - i, sep->u.str.s, sep->u.str.n) : NULL;
            size_t end = hit ? (size_t)(hit - s) : n;
            ct_value *part = ct_strn(e->a, s + i, end - i);
            if (!part || ct_list_push(e->a, r, part))
                return NULL;
            if (!hit)
                return r;
            i = end + sep->u.str.n;
            if (maxsplit > 0)
                maxsplit--;
        }
    }
    for (;;) {
        size_t k;
        while (i < n && (k = ws_at(s + i, n - i)))
            i += k;
        if (i >= n)
            return r;
        size_t b = i;
        if (maxsplit == 0) {
            size_t end = n;
            while (end > b && (k = ws_before(s + b, end - b)))
                end -= k;
            ct_value *part = ct_strn(e->a, s + b, end - b);
            return part && !ct_list_push(e->a, r, part) ? r : NULL;
        }
        while (i < n && !ws_at(s + i, n - i))
            i += cp_len((unsigned char)s[i]);
        ct_value *part = ct_strn(e->a, s + b, i - b);
        if (!part || ct_list_push(e->a, r, part))
            return NULL;
        if (maxsplit > 0)
            maxsplit--;
    }
}

static ct_value *to_str(ev *e, const ct_value *v)
{
    if (v->kind == CT_STR)
        return (ct_value *)v;
    ct_buf b = {0};
    if (ct_buf_add(e->a, &b, "", 0) || ct_str(e->a, &b, v))
        return NULL;
    return ct_strn(e->a, b.p, b.n);
}

/* ---- scopes -------------------------------------------------------------------------- */

static ct_value *lookup(scope *s, const char *name)
{
    for (; s; s = s->parent) {
        ct_value *v = ct_dict_get(s->vars, name, strlen(name));
        if (v)
            return v;
    }
    return NULL;
}

static int assign(ev *e, scope *s, const char *name, ct_value *v)
{
    return ct_dict_set(e->a, s->vars, name, strlen(name), v);
}

static scope *new_scope(ev *e, scope *parent)
{
    scope *s = ct_alloc(e->a, sizeof *s);
    if (!s || !(s->vars = ct_dict(e->a)))
        return NULL;
    s->parent = parent;
    return s;
}

static const char *const builtins[] = {"raise_exception", "strftime_now", "range", "namespace",
                                       "dict", NULL};

/* ---- evaluation ---------------------------------------------------------------------- */

static ct_value *eval(ev *e, scope *s, const ct_node *n);
static int exec(ev *e, scope *s, const ct_node *n, ct_buf *out);

typedef struct {
    ct_value **pos;
    size_t npos;
    const char **kw;
    ct_value **kwv;
    size_t nkw;
} args_t;

static int eval_args(ev *e, scope *s, const ct_node *n, args_t *ar, size_t skip)
{
    memset(ar, 0, sizeof *ar);
    ar->pos = ct_alloc(e->a, (n->nargs + 1) * sizeof *ar->pos);
    ar->kw = ct_alloc(e->a, (n->nargs + 1) * sizeof *ar->kw);
    ar->kwv = ct_alloc(e->a, (n->nargs + 1) * sizeof *ar->kwv);
    if (!ar->pos || !ar->kw || !ar->kwv)
        return -1;
    for (size_t i = skip; i < n->nargs; i++) {
        ct_value *v = eval(e, s, n->args[i]);
        if (!v)
            return -1;
        if (n->kw[i]) {
            ar->kw[ar->nkw] = n->kw[i];
            ar->kwv[ar->nkw++] = v;
        } else {
            ar->pos[ar->npos++] = v;
        }
    }
    return 0;
}

/* argument i (positional) or keyword name, else NULL */
static ct_value *arg(const args_t *ar, size_t i, const char *name)
{
    if (i < ar->npos)
        return ar->pos[i];
    for (size_t k = 0; name && k < ar->nkw; k++)
        if (!strcmp(ar->kw[k], name))
            return ar->kwv[k];
    return NULL;
}

static bool is_int(const ct_value *v) { return v->kind == CT_INT || v->kind == CT_BOOL; }
static long long ival(const ct_value *v) { return v->kind == CT_INT ? v->u.i : v->u.b; }
static bool is_num(const ct_value *v) { return is_int(v) || v->kind == CT_FLOAT; }
static double fval(const ct_value *v) { return v->kind == CT_FLOAT ? v->u.f : (double)ival(v); }

static ct_value *need_str(ev *e, int line, const ct_value *v, const char *what)
{
    if (v && v->kind == CT_STR)
        return (ct_value *)v;
    return fail(e, line, "%s expects a string, got %s", what, v ? ct_kind_name(v) : "nothing");
}

static ct_value *index_value(ev *e, int line, ct_value *obj, ct_value *key)
{
    if (obj->kind == CT_UNDEF)
        return fail(e, line, "'%s' is undefined", undef_name(obj));
    if (obj->kind == CT_DICT || obj->kind == CT_NS) {
        if (key->kind == CT_STR) {
            ct_value *v = ct_dict_get(obj, key->u.str.s, key->u.str.n);
            return v ? v : undef(e, key->u.str.s);
        }
        return undef(e, "key");
    }
    if ((obj->kind == CT_LIST || obj->kind == CT_STR) && is_int(key)) {
        long long n = obj->kind == CT_LIST ? (long long)obj->u.list.n
                                           : (long long)cp_count(obj->u.str.s, obj->u.str.n);
        long long i = ival(key);
        if (i < 0)
            i += n;
        if (i < 0 || i >= n)
            return undef(e, "index");
        if (obj->kind == CT_LIST)
            return obj->u.list.items[i];
        size_t b = cp_offset(obj->u.str.s, obj->u.str.n, (size_t)i);
        return ct_strn(e->a, obj->u.str.s + b, cp_len((unsigned char)obj->u.str.s[b]));
    }
    if (obj->kind == CT_NONE)
        return fail(e, line, "'None' has no item or attribute");
    return undef(e, "item");
}

static ct_value *slice(ev *e, int line, ct_value *obj, ct_value *lo, ct_value *hi, ct_value *st)
{
    if (obj->kind != CT_LIST && obj->kind != CT_STR)
        return fail(e, line, "cannot slice a %s", ct_kind_name(obj));
    long long n = obj->kind == CT_LIST ? (long long)obj->u.list.n
                                       : (long long)cp_count(obj->u.str.s, obj->u.str.n);
    long long step = 1, b, en;
    if (st && st->kind != CT_NONE) {
        if (!is_int(st) || ival(st) == 0)
            return fail(e, line, "slice step must be a non-zero integer");
        step = ival(st);
    }
    ct_value *bounds[2] = {lo, hi};
    long long out[2];
    for (int k = 0; k < 2; k++) {
        ct_value *v = bounds[k];
        if (!v || v->kind == CT_NONE) {
            out[k] = step > 0 ? (k ? n : 0) : (k ? -1 : n - 1);
            continue;
        }
        if (!is_int(v))
            return fail(e, line, "slice indices must be integers");
        long long i = ival(v);
        if (i < 0)
            i += n;
        if (step > 0)
            i = i < 0 ? 0 : i > n ? n : i;
        else
            i = i < -1 ? -1 : i > n - 1 ? n - 1 : i;
        out[k] = i;
    }
    b = out[0];
    en = out[1];
    if (obj->kind == CT_LIST) {
        ct_value *r = ct_list(e->a);
        if (!r)
            return NULL;
        for (long long i = b; step > 0 ? i < en : i > en; i += step)
            if (ct_list_push(e->a, r, obj->u.list.items[i]))
                return NULL;
        return r;
    }
    const char *s = obj->u.str.s;
    if (step == 1) {
        size_t ob = cp_offset(s, obj->u.str.n, (size_t)b);
        size_t oe = en > b ? cp_offset(s, obj->u.str.n, (size_t)en) : ob;
        return ct_strn(e->a, s + ob, oe - ob);
    }
    ct_buf buf = {0};
    if (ct_buf_add(e->a, &buf, "", 0))
        return NULL;
    for (long long i = b; step > 0 ? i < en : i > en; i += step) {
        size_t o = cp_offset(s, obj->u.str.n, (size_t)i);
        if (ct_buf_add(e->a, &buf, s + o, cp_len((unsigned char)s[o])))
            return NULL;
    }
    return ct_strn(e->a, buf.p, buf.n);
}

static int compare_values(ev *e, int line, const ct_value *x, const ct_value *y, int *cmp)
{
    if (is_num(x) && is_num(y)) {
        if (is_int(x) && is_int(y))
            *cmp = (ival(x) > ival(y)) - (ival(x) < ival(y));
        else
            *cmp = (fval(x) > fval(y)) - (fval(x) < fval(y));
        return 0;
    }
    if (x->kind == CT_STR && y->kind == CT_STR) {
        size_t m = x->u.str.n < y->u.str.n ? x->u.str.n : y->u.str.n;
        int c = memcmp(x->u.str.s, y->u.str.s, m);
        *cmp = c ? (c > 0) - (c < 0) : (x->u.str.n > y->u.str.n) - (x->u.str.n < y->u.str.n);
        return 0;
    }
    fail(e, line, "cannot order %s and %s", ct_kind_name(x), ct_kind_name(y));
    return -1;
}

static int contains(ev *e, int line, const ct_value *hay, const ct_value *needle, bool *r)
{
    *r = false;
    if (hay->kind == CT_STR) {
        if (needle->kind != CT_STR) {
            fail(e, line, "'in <string>' requires a string on the left, got %s",
                 ct_kind_name(needle));
            return -1;
        }
        *r = needle->u.str.n == 0 ||
             memmem(hay->u.str.s, hay->u.str.n, needle->u.str.s, needle->u.str.n) != NULL;
    } else if (hay->kind == CT_LIST) {
        for (size_t i = 0; i < hay->u.list.n && !*r; i++)
            *r = ct_equal(hay->u.list.items[i], needle);
    } else if (hay->kind == CT_DICT || hay->kind == CT_NS) {
        *r = needle->kind == CT_STR && ct_dict_get(hay, needle->u.str.s, needle->u.str.n);
    } else if (hay->kind != CT_UNDEF) {
        fail(e, line, "argument of type %s is not iterable", ct_kind_name(hay));
        return -1;
    }
    return 0;
}

static ct_value *arith(ev *e, int line, const char *op, ct_value *x, ct_value *y)
{
    if (x->kind == CT_UNDEF || y->kind == CT_UNDEF)
        return fail(e, line, "'%s' is undefined", undef_name(x->kind == CT_UNDEF ? x : y));
    if (!strcmp(op, "~")) {
        ct_buf b = {0};
        if (ct_buf_add(e->a, &b, "", 0) || ct_str(e->a, &b, x) || ct_str(e->a, &b, y))
            return NULL;
        return ct_strn(e->a, b.p, b.n);
    }
    if (!strcmp(op, "+") && x->kind == CT_STR && y->kind == CT_STR) {
        ct_buf b = {0};
        if (ct_buf_add(e->a, &b, x->u.str.s, x->u.str.n) ||
            ct_buf_add(e->a, &b, y->u.str.s, y->u.str.n))
            return NULL;
        return ct_strn(e->a, b.p, b.n);
    }
    if (!strcmp(op, "+") && x->kind == CT_LIST && y->kind == CT_LIST) {
        ct_value *r = ct_list(e->a);
        for (size_t i = 0; r && i < x->u.list.n; i++)
            if (ct_list_push(e->a, r, x->u.list.items[i]))
                return NULL;
        for (size_t i = 0; r && i < y->u.list.n; i++)
            if (ct_list_push(e->a, r, y->u.list.items[i]))
                return NULL;
        return r;
    }
    if (!strcmp(op, "*") && ((x->kind == CT_STR && is_int(y)) || (is_int(x) && y->kind == CT_STR))) {
        ct_value *sv = x->kind == CT_STR ? x : y;
        long long k = ival(x->kind == CT_STR ? y : x);
        if (k <= 0)
            return ct_strn(e->a, "", 0);
        if (sv->u.str.n && (unsigned long long)k > CT_MAX_OUTPUT / sv->u.str.n)
            return fail(e, line, "string repetition longer than %zu bytes", CT_MAX_OUTPUT);
        ct_buf b = {0};
        if (ct_buf_add(e->a, &b, "", 0))
            return NULL;
        for (long long i = 0; i < k; i++)
            if (ct_buf_add(e->a, &b, sv->u.str.s, sv->u.str.n))
                return NULL;
        return ct_strn(e->a, b.p, b.n);
    }
    if (!is_num(x) || !is_num(y))
        return fail(e, line, "unsupported operand types for %s: %s and %s", op, ct_kind_name(x),
                    ct_kind_name(y));
    if (is_int(x) && is_int(y) && strcmp(op, "/")) {
        long long a = ival(x), b = ival(y), r = 0;
        bool ovf = false;
        switch (op[0]) {
        case '+': ovf = __builtin_add_overflow(a, b, &r); break;
        case '-': ovf = __builtin_sub_overflow(a, b, &r); break;
        case '*':
            if (op[1] == '*') {
                if (b < 0)
                    return ct_float(e->a, pow((double)a, (double)b));
                r = 1;
                for (long long i = 0; i < b && !ovf; i++)
                    ovf = __builtin_mul_overflow(r, a, &r);
            } else {
                ovf = __builtin_mul_overflow(a, b, &r);
            }
            break;
        case '/': case '%':
            if (b == 0)
                return fail(e, line, "integer division or modulo by zero");
            if (a == LLONG_MIN && b == -1)
                ovf = true;
            else if (op[0] == '/') {
                r = a / b;
                if ((a % b != 0) && ((a < 0) != (b < 0)))
                    r--;
            } else {
                r = a % b;
                if (r != 0 && ((r < 0) != (b < 0)))
                    r += b;
            }
            break;
        }
        if (ovf)
            return fail(e, line, "integer overflow in %s", op);
        return ct_int(e->a, r);
    }
    double a = fval(x), b = fval(y);
    switch (op[0]) {
    case '+': return ct_float(e->a, a + b);
    case '-': return ct_float(e->a, a - b);
    case '*': return ct_float(e->a, op[1] ? pow(a, b) : a * b);
    case '/':
        if (b == 0)
            return fail(e, line, "division by zero");
        return ct_float(e->a, op[1] ? floor(a / b) : a / b);
    case '%':
        if (b == 0)
            return fail(e, line, "float modulo by zero");
        return ct_float(e->a, a - floor(a / b) * b);
    }
    return fail(e, line, "unsupported operator %s", op);
}

/* ---- tests (`x is name`) ------------------------------------------------------------- */

static int run_test(ev *e, int line, const char *name, ct_value *v, const args_t *ar, bool *r)
{
    ct_value *a0 = arg(ar, 0, NULL);
    int cmp;
    if (!strcmp(name, "defined")) *r = v->kind != CT_UNDEF;
    else if (!strcmp(name, "undefined")) *r = v->kind == CT_UNDEF;
    else if (!strcmp(name, "none")) *r = v->kind == CT_NONE;
    else if (!strcmp(name, "string")) *r = v->kind == CT_STR;
    else if (!strcmp(name, "number")) *r = is_num(v);
    else if (!strcmp(name, "integer")) *r = v->kind == CT_INT;
    else if (!strcmp(name, "float")) *r = v->kind == CT_FLOAT;
    else if (!strcmp(name, "boolean")) *r = v->kind == CT_BOOL;
    else if (!strcmp(name, "true")) *r = v->kind == CT_BOOL && v->u.b;
    else if (!strcmp(name, "false")) *r = v->kind == CT_BOOL && !v->u.b;
    else if (!strcmp(name, "mapping")) *r = v->kind == CT_DICT;
    else if (!strcmp(name, "iterable") || !strcmp(name, "sequence"))
        *r = v->kind == CT_STR || v->kind == CT_LIST || v->kind == CT_DICT;
    else if (!strcmp(name, "callable")) *r = v->kind == CT_MACRO || v->kind == CT_BUILTIN;
    else if (!strcmp(name, "odd") || !strcmp(name, "even")) {
        if (!is_int(v))
            return fail(e, line, "test '%s' needs an integer", name) ? 0 : -1;
        *r = (ival(v) % 2 != 0) == (name[0] == 'o');
    } else if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        bool lower = name[0] == 'l';
        *r = v->kind == CT_STR;
        for (size_t i = 0; *r && i < v->u.str.n; i++) {
            char c = v->u.str.s[i];
            if (lower ? (c >= 'A' && c <= 'Z') : (c >= 'a' && c <= 'z'))
                *r = false;
        }
    } else if (a0 && (!strcmp(name, "equalto") || !strcmp(name, "eq") || !strcmp(name, "==") ||
                      !strcmp(name, "sameas")))
        *r = ct_equal(v, a0);
    else if (a0 && (!strcmp(name, "ne") || !strcmp(name, "!=")))
        *r = !ct_equal(v, a0);
    else if (a0 && !strcmp(name, "in"))
        return contains(e, line, a0, v, r);
    else if (a0 && (!strcmp(name, "lt") || !strcmp(name, "gt") || !strcmp(name, "le") ||
                    !strcmp(name, "ge"))) {
        if (compare_values(e, line, v, a0, &cmp))
            return -1;
        *r = name[0] == 'l' ? (name[1] == 't' ? cmp < 0 : cmp <= 0)
                            : (name[1] == 't' ? cmp > 0 : cmp >= 0);
    } else if (a0 && !strcmp(name, "divisibleby")) {
        if (!is_int(v) || !is_int(a0) || ival(a0) == 0)
            return fail(e, line, "test 'divisibleby' needs non-zero integers") ? 0 : -1;
        *r = ival(v) % ival(a0) == 0;
    } else {
        fail(e, line, "unsupported test '%s'", name);
        return -1;
    }
    return 0;
}

/* ---- filters ------------------------------------------------------------------------- */

static ct_value *iter_list(ev *e, int line, ct_value *v); /* list view of an iterable */
static ct_value *apply_filter(ev *e, int line, const char *name, ct_value *v, const args_t *ar);

static ct_value *attr_of(ev *e, int line, ct_value *obj, const char *path)
{
    /* dotted attribute path as map(attribute='a.b') allows */
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    ct_value *v = obj;
    for (char *tok = buf, *dot; v && tok; tok = dot ? dot + 1 : NULL) {
        dot = strchr(tok, '.');
        if (dot)
            *dot = '\0';
        if (v->kind == CT_UNDEF)
            return v;
        ct_value *key = ct_strn(e->a, tok, strlen(tok));
        if (!key)
            return NULL;
        v = index_value(e, line, v, key);
    }
    return v;
}

/* What select/reject/selectattr/rejectattr/map iterate: as jinja2 (`if value: for item in
 * value`), a falsy value (none, false, 0, '', [], {}) gives nothing rather than an error. */
static ct_value *filter_seq(ev *e, int line, ct_value *v)
{
    return ct_truthy(v) ? iter_list(e, line, v) : ct_list(e->a);
}

static ct_value *select_items(ev *e, int line, ct_value *v, const args_t *ar, bool by_attr,
                              bool keep)
{
    ct_value *list = filter_seq(e, line, v), *r = ct_list(e->a);
    if (!list || !r)
        return NULL;
    size_t first = by_attr ? 1 : 0;
    ct_value *attr = by_attr ? arg(ar, 0, NULL) : NULL;
    if (by_attr && (!attr || attr->kind != CT_STR))
        return fail(e, line, "selectattr/rejectattr need an attribute name");
    ct_value *test = arg(ar, first, NULL);
    args_t rest = *ar;
    rest.pos = ar->pos + (ar->npos > first + 1 ? first + 1 : ar->npos);
    rest.npos = ar->npos > first + 1 ? ar->npos - first - 1 : 0;
    for (size_t i = 0; i < list->u.list.n; i++) {
        ct_value *item = list->u.list.items[i], *x = item;
        if (by_attr && !(x = attr_of(e, line, item, attr->u.str.s)))
            return NULL;
        bool ok;
        if (!test) {
            ok = ct_truthy(x);
        } else {
            if (test->kind != CT_STR)
                return fail(e, line, "select: the test name must be a string");
            if (run_test(e, line, test->u.str.s, x, &rest, &ok))
                return NULL;
        }
        if (ok == keep && ct_list_push(e->a, r, item))
            return NULL;
    }
    return r;
}

static ct_value *iter_list(ev *e, int line, ct_value *v)
{
    if (v->kind == CT_LIST)
        return v;
    ct_value *r = ct_list(e->a);
    if (!r)
        return NULL;
    if (v->kind == CT_UNDEF)
        return r;
    if (v->kind == CT_DICT) {
        for (size_t i = 0; i < v->u.dict.n; i++) {
            ct_value *k = ct_strn(e->a, v->u.dict.keys[i], v->u.dict.klen[i]);
            if (!k || ct_list_push(e->a, r, k))
                return NULL;
        }
        return r;
    }
    if (v->kind == CT_STR) {
        for (size_t i = 0; i < v->u.str.n; i += cp_len((unsigned char)v->u.str.s[i])) {
            ct_value *c = ct_strn(e->a, v->u.str.s + i, cp_len((unsigned char)v->u.str.s[i]));
            if (!c || ct_list_push(e->a, r, c))
                return NULL;
        }
        return r;
    }
    return fail(e, line, "'%s' object is not iterable", ct_kind_name(v));
}

static ct_value *dict_items(ev *e, ct_value *d)
{
    ct_value *r = ct_list(e->a);
    for (size_t i = 0; r && i < d->u.dict.n; i++) {
        ct_value *t = ct_list(e->a), *k = ct_strn(e->a, d->u.dict.keys[i], d->u.dict.klen[i]);
        if (!t || !k || ct_list_push(e->a, t, k) || ct_list_push(e->a, t, d->u.dict.vals[i]) ||
            ct_list_push(e->a, r, t))
            return NULL;
        t->tuple = true;
    }
    return r;
}

static ct_value *tojson(ev *e, int line, ct_value *v, const args_t *ar)
{
    ct_value *ind = arg(ar, 0, "indent"), *asc = arg(ar, 99, "ensure_ascii");
    ct_value *sep = arg(ar, 99, "separators"), *sk = arg(ar, 99, "sort_keys");
    if (asc && ct_truthy(asc))
        return fail(e, line, "unsupported tojson(ensure_ascii=true)");
    int indent = -1;
    if (ind && ind->kind != CT_NONE) {
        if (!is_int(ind) || ival(ind) < 0 || ival(ind) > 64)
            return fail(e, line, "tojson: indent must be an integer 0..64");
        indent = (int)ival(ind);
    }
    const char *isep = NULL, *ksep = NULL;
    if (sep && sep->kind != CT_NONE) {
        if (sep->kind != CT_LIST || sep->u.list.n != 2 || sep->u.list.items[0]->kind != CT_STR ||
            sep->u.list.items[1]->kind != CT_STR)
            return fail(e, line, "tojson: separators must be two strings");
        isep = sep->u.list.items[0]->u.str.s;
        ksep = sep->u.list.items[1]->u.str.s;
    }
    ct_buf b = {0};
    if (ct_buf_add(e->a, &b, "", 0) ||
        ct_tojson(e->a, &b, v, indent, isep, ksep, sk && ct_truthy(sk))) {
        lc_error_prefix(e->err, "chat template line %d", line);
        return NULL;
    }
    return ct_strn(e->a, b.p, b.n);
}

static ct_value *indent_filter(ev *e, int line, ct_value *v, const args_t *ar)
{
    ct_value *w = arg(ar, 0, "width"), *first = arg(ar, 1, "first"), *blank = arg(ar, 2, "blank");
    ct_value *ind;
    if (!w)
        ind = ct_strn(e->a, "    ", 4);
    else if (w->kind == CT_STR)
        ind = w;
    else if (is_int(w) && ival(w) >= 0 && ival(w) <= 256) {
        char sp[257];
        memset(sp, ' ', (size_t)ival(w));
        ind = ct_strn(e->a, sp, (size_t)ival(w));
    } else
        return fail(e, line, "indent: width must be a string or an integer 0..256");
    if (!ind || !need_str(e, line, v, "indent"))
        return NULL;
    ct_buf b = {0};
    if (ct_buf_add(e->a, &b, "", 0))
        return NULL;
    if (first && ct_truthy(first) && ct_buf_add(e->a, &b, ind->u.str.s, ind->u.str.n))
        return NULL;
    const char *s = v->u.str.s;
    size_t n = v->u.str.n, i = 0;
    bool first_line = true;
    while (i < n) {
        const char *nl = memchr(s + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - s) : n;
        if (!first_line) {
            if (ct_buf_add(e->a, &b, "\n", 1))
                return NULL;
            if ((end > i || (blank && ct_truthy(blank))) &&
                ct_buf_add(e->a, &b, ind->u.str.s, ind->u.str.n))
                return NULL;
        }
        if (ct_buf_add(e->a, &b, s + i, end - i))
            return NULL;
        first_line = false;
        i = end + 1;
    }
    return ct_strn(e->a, b.p, b.n);
}

static ct_value *apply_filter(ev *e, int line, const char *name, ct_value *v, const args_t *ar)
{
    ct_value *a0 = arg(ar, 0, NULL);
    if (!strcmp(name, "safe"))
        return v;
    if (!strcmp(name, "default") || !strcmp(name, "d")) {
        ct_value *b = arg(ar, 1, "boolean"), *dv = arg(ar, 0, "default_value");
        bool use = v->kind == CT_UNDEF || (b && ct_truthy(b) && !ct_truthy(v));
        return use ? (dv ? dv : ct_strn(e->a, "", 0)) : v;
    }
    if (!strcmp(name, "length") || !strcmp(name, "count")) {
        switch (v->kind) {
        case CT_UNDEF: return ct_int(e->a, 0);
        case CT_STR: return ct_int(e->a, (long long)cp_count(v->u.str.s, v->u.str.n));
        case CT_LIST: return ct_int(e->a, (long long)v->u.list.n);
        case CT_DICT: return ct_int(e->a, (long long)v->u.dict.n);
        default: return fail(e, line, "object of type '%s' has no len()", ct_kind_name(v));
        }
    }
    if (!strcmp(name, "tojson"))
        return tojson(e, line, v, ar);
    if (!strcmp(name, "string"))
        return to_str(e, v);
    if (!strcmp(name, "list"))
        return iter_list(e, line, v);
    if (!strcmp(name, "items")) {
        if (v->kind == CT_UNDEF)
            return ct_list(e->a);
        if (v->kind != CT_DICT)
            return fail(e, line, "items expects a mapping, got %s", ct_kind_name(v));
        return dict_items(e, v);
    }
    if (!strcmp(name, "first") || !strcmp(name, "last")) {
        ct_value *l = iter_list(e, line, v);
        if (!l)
            return NULL;
        if (l->u.list.n == 0)
            return undef(e, name);
        return l->u.list.items[name[0] == 'f' ? 0 : l->u.list.n - 1];
    }
    if (!strcmp(name, "join")) {
        ct_value *l = iter_list(e, line, v), *sep = arg(ar, 0, "d"), *at = arg(ar, 1, "attribute");
        ct_buf b = {0};
        if (!l || ct_buf_add(e->a, &b, "", 0))
            return NULL;
        for (size_t i = 0; i < l->u.list.n; i++) {
            ct_value *x = l->u.list.items[i];
            if (at && at->kind == CT_STR && !(x = attr_of(e, line, x, at->u.str.s)))
                return NULL;
            if ((i && sep && ct_str(e->a, &b, sep)) || ct_str(e->a, &b, x))
                return NULL;
        }
        return ct_strn(e->a, b.p, b.n);
    }
    if (!strcmp(name, "int") || !strcmp(name, "float")) {
        ct_value *dflt = arg(ar, 0, "default");
        bool as_int = name[0] == 'i';
        if (is_num(v))
            return as_int ? ct_int(e->a, is_int(v) ? ival(v) : (long long)v->u.f)
                          : ct_float(e->a, fval(v));
        if (v->kind == CT_STR) {
            char buf[64];
            snprintf(buf, sizeof buf, "%.*s", (int)(v->u.str.n < 63 ? v->u.str.n : 63), v->u.str.s);
            char *end;
            double d = strtod(buf, &end);
            if (end != buf && *end == '\0' && v->u.str.n < 63)
                return as_int ? ct_int(e->a, (long long)d) : ct_float(e->a, d);
        }
        return dflt ? dflt : as_int ? ct_int(e->a, 0) : ct_float(e->a, 0.0);
    }
    if (!strcmp(name, "abs")) {
        if (!is_num(v))
            return fail(e, line, "abs expects a number");
        return is_int(v) ? ct_int(e->a, llabs(ival(v))) : ct_float(e->a, fabs(v->u.f));
    }
    if (!strcmp(name, "selectattr") || !strcmp(name, "rejectattr"))
        return select_items(e, line, v, ar, true, name[0] == 's');
    if (!strcmp(name, "select") || !strcmp(name, "reject"))
        return select_items(e, line, v, ar, false, name[0] == 's');
    if (!strcmp(name, "map")) {
        ct_value *l = filter_seq(e, line, v), *at = arg(ar, 99, "attribute"), *r = ct_list(e->a);
        if (!l || !r)
            return NULL;
        ct_value *dflt = arg(ar, 99, "default");
        for (size_t i = 0; i < l->u.list.n; i++) {
            ct_value *x;
            if (at) {
                if (at->kind != CT_STR)
                    return fail(e, line, "map: attribute must be a string");
                x = attr_of(e, line, l->u.list.items[i], at->u.str.s);
                if (x && x->kind == CT_UNDEF && dflt)
                    x = dflt;
            } else if (a0 && a0->kind == CT_STR) {
                args_t rest = *ar;
                rest.pos++;
                rest.npos--;
                x = apply_filter(e, line, a0->u.str.s, l->u.list.items[i], &rest);
            } else {
                return fail(e, line, "map needs attribute= or a filter name");
            }
            if (!x || ct_list_push(e->a, r, x))
                return NULL;
        }
        return r;
    }
    if (!strcmp(name, "indent"))
        return indent_filter(e, line, v, ar);
    if (!strcmp(name, "trim") || !strcmp(name, "upper") || !strcmp(name, "lower") ||
        !strcmp(name, "capitalize") || !strcmp(name, "title") || !strcmp(name, "replace")) {
        ct_value *sv = to_str(e, v);
        if (!sv)
            return NULL;
        switch (name[0]) {
        case 't':
            if (name[1] == 'r')
                return strip(e, sv, a0 && a0->kind == CT_STR ? a0 : NULL, true, true);
            return case_map(e, sv, 'T');
        case 'u': return case_map(e, sv, 'u');
        case 'l': return case_map(e, sv, 'l');
        case 'c': return case_map(e, sv, 'c');
        default: {
            ct_value *o = arg(ar, 0, "old"), *nw = arg(ar, 1, "new"), *c = arg(ar, 2, "count");
            if (!need_str(e, line, o, "replace") || !need_str(e, line, nw, "replace"))
                return NULL;
            return replace(e, sv, o, nw, c && is_int(c) ? ival(c) : -1);
        }
        }
    }
    return fail(e, line, "unsupported filter '%s'", name);
}

/* ---- methods, globals, macros -------------------------------------------------------- */

static ct_value *method(ev *e, int line, ct_value *obj, const char *m, const args_t *ar)
{
    ct_value *a0 = arg(ar, 0, NULL), *a1 = arg(ar, 1, NULL);
    if (obj->kind == CT_STR) {
        if (!strcmp(m, "strip") || !strcmp(m, "lstrip") || !strcmp(m, "rstrip")) {
            if (a0 && a0->kind != CT_NONE && !need_str(e, line, a0, m))
                return NULL;
            return strip(e, obj, a0 && a0->kind == CT_STR ? a0 : NULL, m[0] != 'r', m[0] != 'l');
        }
        if (!strcmp(m, "split"))
            return split(e, line, obj, arg(ar, 0, "sep"),
                         arg(ar, 1, "maxsplit") && is_int(arg(ar, 1, "maxsplit")) ?
                         ival(arg(ar, 1, "maxsplit")) : -1);
        if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
            if (!a0)
                return fail(e, line, "%s needs an argument", m);
            ct_value *l = a0->kind == CT_LIST ? a0 : NULL;
            size_t k = l ? l->u.list.n : 1;
            for (size_t i = 0; i < k; i++) {
                ct_value *p = l ? l->u.list.items[i] : a0;
                if (!need_str(e, line, p, m))
                    return NULL;
                size_t pn = p->u.str.n, n = obj->u.str.n;
                if (pn <= n && memcmp(obj->u.str.s + (m[0] == 's' ? 0 : n - pn), p->u.str.s, pn) == 0)
                    return ct_bool(e->a, true);
            }
            return ct_bool(e->a, false);
        }
        if (!strcmp(m, "upper")) return case_map(e, obj, 'u');
        if (!strcmp(m, "lower")) return case_map(e, obj, 'l');
        if (!strcmp(m, "title")) return case_map(e, obj, 't');
        if (!strcmp(m, "capitalize")) return case_map(e, obj, 'c');
        if (!strcmp(m, "replace")) {
            if (!need_str(e, line, a0, m) || !need_str(e, line, a1, m))
                return NULL;
            ct_value *c = arg(ar, 2, "count");
            return replace(e, obj, a0, a1, c && is_int(c) ? ival(c) : -1);
        }
    }
    if (obj->kind == CT_DICT) {
        if (!strcmp(m, "get")) {
            if (!a0)
                return fail(e, line, "get needs a key");
            ct_value *v = a0->kind == CT_STR ? ct_dict_get(obj, a0->u.str.s, a0->u.str.n) : NULL;
            return v ? v : a1 ? a1 : ct_new(e->a, CT_NONE);
        }
        if (!strcmp(m, "items"))
            return dict_items(e, obj);
        if (!strcmp(m, "keys") || !strcmp(m, "values")) {
            ct_value *r = ct_list(e->a);
            for (size_t i = 0; r && i < obj->u.dict.n; i++) {
                ct_value *x = m[0] == 'k' ? ct_strn(e->a, obj->u.dict.keys[i], obj->u.dict.klen[i])
                                          : obj->u.dict.vals[i];
                if (!x || ct_list_push(e->a, r, x))
                    return NULL;
            }
            return r;
        }
    }
    return fail(e, line, "unsupported method '%s' of %s", m, ct_kind_name(obj));
}

static ct_value *builtin(ev *e, int line, const char *name, const args_t *ar)
{
    ct_value *a0 = arg(ar, 0, NULL);
    if (!strcmp(name, "raise_exception")) {
        ct_value *msg = a0 ? to_str(e, a0) : NULL;
        char buf[LC_ERROR_MAX - 96];
        lc_printable(msg ? msg->u.str.s : "", buf, sizeof buf);
        return fail(e, line, "raise_exception: %s", buf);
    }
    if (!strcmp(name, "strftime_now")) {
        if (!need_str(e, line, a0, "strftime_now"))
            return NULL;
        time_t t = e->now ? (time_t)e->now : time(NULL);
        struct tm tm;
        char out[512];
        if (!localtime_r(&t, &tm))
            return fail(e, line, "strftime_now: no local time");
        size_t k = a0->u.str.n ? strftime(out, sizeof out, a0->u.str.s, &tm) : 0;
        if (k == 0 && a0->u.str.n)
            return fail(e, line, "strftime_now: result empty or too long");
        return ct_strn(e->a, out, k);
    }
    if (!strcmp(name, "range")) {
        long long lo = 0, hi, step = 1;
        for (size_t i = 0; i < ar->npos; i++)
            if (!is_int(ar->pos[i]))
                return fail(e, line, "range() arguments must be integers");
        if (ar->npos == 1) hi = ival(ar->pos[0]);
        else if (ar->npos == 2 || ar->npos == 3) {
            lo = ival(ar->pos[0]);
            hi = ival(ar->pos[1]);
            if (ar->npos == 3)
                step = ival(ar->pos[2]);
        } else return fail(e, line, "range() takes 1 to 3 arguments");
        if (step == 0)
            return fail(e, line, "range() step must not be zero");
        double count = ceil(((double)hi - (double)lo) / (double)step);
        if (count > (double)CT_MAX_RANGE)
            return fail(e, line, "range() of %.0f items exceeds the limit of %lld", count,
                        CT_MAX_RANGE);
        ct_value *r = ct_list(e->a);
        for (long long i = lo; r && (step > 0 ? i < hi : i > hi); i += step) {
            ct_value *x = ct_int(e->a, i);
            if (!x || ct_list_push(e->a, r, x))
                return NULL;
        }
        return r;
    }
    /* namespace(...) and dict(...) */
    ct_value *d = ct_new(e->a, name[0] == 'n' ? CT_NS : CT_DICT);
    if (!d)
        return NULL;
    if (a0) {
        if (a0->kind != CT_DICT || ar->npos > 1)
            return fail(e, line, "%s() takes a mapping and keyword arguments", name);
        for (size_t i = 0; i < a0->u.dict.n; i++)
            if (ct_dict_set(e->a, d, a0->u.dict.keys[i], a0->u.dict.klen[i], a0->u.dict.vals[i]))
                return NULL;
    }
    for (size_t i = 0; i < ar->nkw; i++)
        if (ct_dict_set(e->a, d, ar->kw[i], strlen(ar->kw[i]), ar->kwv[i]))
            return NULL;
    return d;
}

static ct_value *call_macro(ev *e, int line, const ct_node *m, const args_t *ar)
{
    if (e->calls >= CT_MAX_CALLS)
        return fail(e, line, "macro '%s' nested more than %d calls deep", m->name, CT_MAX_CALLS);
    scope *s = new_scope(e, e->root);
    if (!s)
        return NULL;
    if (ar->npos > m->nargs)
        return fail(e, line, "macro '%s' takes %zu arguments, got %zu", m->name, m->nargs,
                    ar->npos);
    for (size_t i = 0; i < m->nargs; i++) {
        ct_value *v = arg(ar, i, m->kw[i]);
        if (!v && m->args[i] && !(v = eval(e, s, m->args[i])))
            return NULL;
        if (!v && !(v = undef(e, m->kw[i])))
            return NULL;
        if (assign(e, s, m->kw[i], v))
            return NULL;
    }
    ct_buf out = {0};
    e->calls++;
    int rc = ct_buf_add(e->a, &out, "", 0) ? EX_ERR : exec(e, s, m->b, &out);
    e->calls--;
    if (rc == EX_ERR)
        return NULL;
    return ct_strn(e->a, out.p, out.n);
}

static ct_value *call(ev *e, scope *s, const ct_node *n)
{
    args_t ar;
    if (n->a->type == CN_ATTR) {
        ct_value *obj = eval(e, s, n->a->a);
        if (!obj)
            return NULL;
        if (obj->kind == CT_STR || obj->kind == CT_DICT) {
            ct_value *member = obj->kind == CT_DICT ?
                ct_dict_get(obj, n->a->name, strlen(n->a->name)) : NULL;
            if (!member || member->kind != CT_MACRO) {
                if (eval_args(e, s, n, &ar, 0))
                    return NULL;
                return method(e, n->line, obj, n->a->name, &ar);
            }
        }
    }
    ct_value *f = eval(e, s, n->a);
    if (!f || eval_args(e, s, n, &ar, 0))
        return NULL;
    if (f->kind == CT_BUILTIN)
        return builtin(e, n->line, f->name, &ar);
    if (f->kind == CT_MACRO)
        return call_macro(e, n->line, f->u.macro, &ar);
    if (f->kind == CT_UNDEF)
        return fail(e, n->line, "'%s' is undefined", undef_name(f));
    return fail(e, n->line, "'%s' object is not callable", ct_kind_name(f));
}

static ct_value *eval(ev *e, scope *s, const ct_node *n)
{
    ct_value *x, *y;
    args_t ar;
    bool r;
    switch (n->type) {
    case CN_CONST:
        return n->value;
    case CN_NAME:
        if ((x = lookup(s, n->name)))
            return x;
        for (int i = 0; builtins[i]; i++)
            if (!strcmp(builtins[i], n->name)) {
                if (!(x = ct_new(e->a, CT_BUILTIN)))
                    return NULL;
                x->name = builtins[i];
                return x;
            }
        return undef(e, n->name);
    case CN_ATTR:
        if (!(x = eval(e, s, n->a)))
            return NULL;
        if (x->kind == CT_UNDEF)
            return fail(e, n->line, "'%s' is undefined", undef_name(x));
        if (x->kind == CT_DICT || x->kind == CT_NS) {
            ct_value *v = ct_dict_get(x, n->name, strlen(n->name));
            return v ? v : undef(e, n->name);
        }
        if (x->kind == CT_NONE)
            return fail(e, n->line, "'None' has no attribute '%s'", n->name);
        return undef(e, n->name);
    case CN_INDEX:
        if (!(x = eval(e, s, n->a)) || !(y = eval(e, s, n->b)))
            return NULL;
        return index_value(e, n->line, x, y);
    case CN_SLICE: {
        ct_value *lo = NULL, *hi = NULL, *st = NULL;
        if (!(x = eval(e, s, n->a)) || (n->b && !(lo = eval(e, s, n->b))) ||
            (n->c && !(hi = eval(e, s, n->c))) || (n->d && !(st = eval(e, s, n->d))))
            return NULL;
        return slice(e, n->line, x, lo, hi, st);
    }
    case CN_CALL:
        return call(e, s, n);
    case CN_FILTER:
        if (!(x = eval(e, s, n->a)) || eval_args(e, s, n, &ar, 0))
            return NULL;
        return apply_filter(e, n->line, n->name, x, &ar);
    case CN_TEST:
        if (!(x = eval(e, s, n->a)) || eval_args(e, s, n, &ar, 0) ||
            run_test(e, n->line, n->name, x, &ar, &r))
            return NULL;
        return ct_bool(e->a, r);
    case CN_NEG: case CN_POS:
        if (!(x = eval(e, s, n->a)))
            return NULL;
        if (!is_num(x))
            return fail(e, n->line, "bad operand type for unary %c: %s",
                        n->type == CN_NEG ? '-' : '+', ct_kind_name(x));
        if (n->type == CN_POS)
            return x;
        if (is_int(x))
            return ival(x) == LLONG_MIN ? fail(e, n->line, "integer overflow")
                                        : ct_int(e->a, -ival(x));
        return ct_float(e->a, -x->u.f);
    case CN_NOT:
        if (!(x = eval(e, s, n->a)))
            return NULL;
        return ct_bool(e->a, !ct_truthy(x));
    case CN_AND: case CN_OR:
        if (!(x = eval(e, s, n->a)))
            return NULL;
        if (ct_truthy(x) == (n->type == CN_OR))
            return x;
        return eval(e, s, n->b);
    case CN_COND:
        if (!(x = eval(e, s, n->b)))
            return NULL;
        if (ct_truthy(x))
            return eval(e, s, n->a);
        return n->c ? eval(e, s, n->c) : undef(e, "conditional");
    case CN_BINARY: {
        if (!(x = eval(e, s, n->a)) || !(y = eval(e, s, n->b)))
            return NULL;
        const char *op = n->op;
        int cmp;
        if (!strcmp(op, "=="))
            return ct_bool(e->a, ct_equal(x, y));
        if (!strcmp(op, "!="))
            return ct_bool(e->a, !ct_equal(x, y));
        if (!strcmp(op, "in") || !strcmp(op, "!in")) {
            if (contains(e, n->line, y, x, &r))
                return NULL;
            return ct_bool(e->a, r == (op[0] == 'i'));
        }
        if (op[0] == '<' || op[0] == '>') {
            if (compare_values(e, n->line, x, y, &cmp))
                return NULL;
            return ct_bool(e->a, op[0] == '<' ? (op[1] ? cmp <= 0 : cmp < 0)
                                              : (op[1] ? cmp >= 0 : cmp > 0));
        }
        return arith(e, n->line, op, x, y);
    }
    case CN_LIST: case CN_TUPLE:
        if (!(x = ct_list(e->a)))
            return NULL;
        x->tuple = n->type == CN_TUPLE;
        for (size_t i = 0; i < n->nargs; i++)
            if (!(y = eval(e, s, n->args[i])) || ct_list_push(e->a, x, y))
                return NULL;
        return x;
    case CN_DICT:
        if (!(x = ct_dict(e->a)))
            return NULL;
        for (size_t i = 0; i + 1 < n->nargs; i += 2) {
            ct_value *k = eval(e, s, n->args[i]), *v = k ? eval(e, s, n->args[i + 1]) : NULL;
            if (!v)
                return NULL;
            if (k->kind != CT_STR)
                return fail(e, n->line, "unsupported non-string dict key");
            if (ct_dict_set(e->a, x, k->u.str.s, k->u.str.n, v))
                return NULL;
        }
        return x;
    default:
        return fail(e, n->line, "unsupported expression");
    }
}

static int bind(ev *e, scope *s, int line, const char *const *names, size_t k, ct_value *v)
{
    if (k == 1)
        return assign(e, s, names[0], v);
    if (v->kind != CT_LIST || v->u.list.n != k) {
        fail(e, line, "cannot unpack %s into %zu names", ct_kind_name(v), k);
        return -1;
    }
    for (size_t i = 0; i < k; i++)
        if (assign(e, s, names[i], v->u.list.items[i]))
            return -1;
    return 0;
}

static int emit(ev *e, ct_buf *out, const ct_value *v, int line)
{
    if (ct_str(e->a, out, v))
        return EX_ERR;
    if (out->n > CT_MAX_OUTPUT) {
        fail(e, line, "output longer than %zu bytes", CT_MAX_OUTPUT);
        return EX_ERR;
    }
    return EX_OK;
}

static int exec_for(ev *e, scope *s, const ct_node *n, ct_buf *out)
{
    ct_value *it = eval(e, s, n->a), *list, *items;
    if (!it)
        return EX_ERR;
    if (it->kind == CT_DICT)
        list = iter_list(e, n->line, it);
    else
        list = iter_list(e, n->line, it);
    scope *ls = list ? new_scope(e, s) : NULL;
    if (!ls || !(items = ct_list(e->a)))
        return EX_ERR;
    for (size_t i = 0; i < list->u.list.n; i++) { /* `for x in xs if cond` filters first */
        if (n->d) {
            if (bind(e, ls, n->line, n->targets, n->ntargets, list->u.list.items[i]))
                return EX_ERR;
            ct_value *c = eval(e, ls, n->d);
            if (!c)
                return EX_ERR;
            if (!ct_truthy(c))
                continue;
        }
        if (ct_list_push(e->a, items, list->u.list.items[i]))
            return EX_ERR;
    }
    size_t len = items->u.list.n;
    for (size_t i = 0; i < len; i++) {
        if (++e->iterations > CT_MAX_ITERATIONS) {
            fail(e, n->line, "loops ran more than %lld iterations", CT_MAX_ITERATIONS);
            return EX_ERR;
        }
        ct_value *loop = ct_dict(e->a), *item = items->u.list.items[i];
        if (!loop)
            return EX_ERR;
        struct { const char *k; ct_value *v; } f[] = {
            {"index", ct_int(e->a, (long long)i + 1)}, {"index0", ct_int(e->a, (long long)i)},
            {"revindex", ct_int(e->a, (long long)(len - i))},
            {"revindex0", ct_int(e->a, (long long)(len - i - 1))},
            {"first", ct_bool(e->a, i == 0)}, {"last", ct_bool(e->a, i + 1 == len)},
            {"length", ct_int(e->a, (long long)len)},
            {"previtem", i ? items->u.list.items[i - 1] : undef(e, "previtem")},
            {"nextitem", i + 1 < len ? items->u.list.items[i + 1] : undef(e, "nextitem")},
        };
        for (size_t k = 0; k < sizeof f / sizeof *f; k++)
            if (!f[k].v || ct_dict_set(e->a, loop, f[k].k, strlen(f[k].k), f[k].v))
                return EX_ERR;
        if (assign(e, ls, "loop", loop) || bind(e, ls, n->line, n->targets, n->ntargets, item))
            return EX_ERR;
        int rc = exec(e, ls, n->b, out);
        if (rc == EX_ERR)
            return EX_ERR;
        if (rc == EX_BREAK)
            break;
    }
    if (len == 0 && n->c)
        return exec(e, s, n->c, out);
    return EX_OK;
}

static int exec(ev *e, scope *s, const ct_node *n, ct_buf *out)
{
    for (; n; n = n->next) {
        ct_value *v;
        int rc;
        switch (n->type) {
        case CN_TEXT:
            if (emit(e, out, n->value, n->line))
                return EX_ERR;
            break;
        case CN_OUTPUT:
            if (!(v = eval(e, s, n->a)) || emit(e, out, v, n->line))
                return EX_ERR;
            break;
        case CN_IF:
            if (!(v = eval(e, s, n->a)))
                return EX_ERR;
            if ((rc = exec(e, s, ct_truthy(v) ? n->b : n->c, out)) != EX_OK)
                return rc;
            break;
        case CN_FOR:
            if (exec_for(e, s, n, out))
                return EX_ERR;
            break;
        case CN_SET:
            if (!(v = eval(e, s, n->a)) ||
                bind(e, s, n->line, n->targets, n->ntargets, v))
                return EX_ERR;
            break;
        case CN_SET_ATTR: {
            ct_value *ns = lookup(s, n->name);
            if (!ns || ns->kind != CT_NS) {
                fail(e, n->line, "cannot set attribute '%s' of '%s': not a namespace", n->attr,
                     n->name);
                return EX_ERR;
            }
            if (!(v = eval(e, s, n->a)) || ct_dict_set(e->a, ns, n->attr, strlen(n->attr), v))
                return EX_ERR;
            break;
        }
        case CN_SET_BLOCK: {
            ct_buf b = {0};
            if (ct_buf_add(e->a, &b, "", 0) || exec(e, s, n->b, &b) != EX_OK ||
                !(v = ct_strn(e->a, b.p, b.n)) || assign(e, s, n->targets[0], v))
                return EX_ERR;
            break;
        }
        case CN_MACRO:
            if (!(v = ct_new(e->a, CT_MACRO)))
                return EX_ERR;
            v->u.macro = n;
            if (assign(e, s, n->name, v))
                return EX_ERR;
            break;
        case CN_GENERATION:
            if ((rc = exec(e, s, n->b, out)) != EX_OK)
                return rc;
            break;
        case CN_BREAK:
            return EX_BREAK;
        case CN_CONTINUE:
            return EX_CONTINUE;
        default:
            fail(e, n->line, "unsupported statement");
            return EX_ERR;
        }
    }
    return EX_OK;
}

/* ---- public API ---------------------------------------------------------------------- */

int lc_chat_template_parse(const char *src, size_t n, lc_chat_template **out, lc_error *err)
{
    lc_error local;
    if (!err)
        err = &local;
    *out = NULL;
    lc_chat_template *t = calloc(1, sizeof *t);
    if (!t)
        return lc_error_set(err, "chat template: out of memory");
    ct_arena_init(&t->t.arena, CT_PARSE_BUDGET, err);
    if (ct_parse(&t->t, src, n, err)) {
        lc_chat_template_free(t);
        return -1;
    }
    t->t.arena.err = NULL;
    *out = t;
    return 0;
}

int lc_chat_template_render(const lc_chat_template *t, const cJSON *context,
                            const lc_chat_render_opts *opts, char **out, size_t *len,
                            lc_error *err)
{
    lc_error local;
    if (!err)
        err = &local;
    *out = NULL;
    *len = 0;
    if (!cJSON_IsObject(context))
        return lc_error_set(err, "chat template: the context must be a JSON object");
    ct_arena a;
    ct_arena_init(&a, CT_RENDER_BUDGET, err);
    ev e = {.a = &a, .err = err, .now = opts ? opts->now : 0};
    ct_buf b = {0};
    int rc = -1;
    if (!(e.root = new_scope(&e, NULL)) || ct_buf_add(&a, &b, "", 0))
        goto done;
    for (const cJSON *c = context->child; c; c = c->next) {
        ct_value *v = ct_from_json(&a, c);
        if (!v || assign(&e, e.root, c->string, v))
            goto done;
    }
    int ex = exec(&e, e.root, t->t.body, &b);
    if (ex == EX_ERR)
        goto done;
    if (ex != EX_OK) {
        lc_error_set(err, "chat template: 'break' or 'continue' outside a loop");
        goto done;
    }
    *out = malloc(b.n + 1);
    if (!*out) {
        lc_error_set(err, "chat template: out of memory");
        goto done;
    }
    memcpy(*out, b.p, b.n + 1);
    *len = b.n;
    rc = 0;
done:
    ct_arena_free(&a);
    return rc;
}

void lc_chat_template_free(lc_chat_template *t)
{
    if (!t)
        return;
    ct_arena_free(&t->t.arena);
    free(t);
}

/* chat_parse.c — lexer and parser of the Jinja subset that chat templates use.
 * See chat_parse.h for the whitespace rules followed and the tree produced. */
#include "data/chat_parse.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { T_TEXT, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END, T_NAME, T_STRING,
               T_INT, T_FLOAT, T_OP, T_EOF } tok_type;

typedef struct {
    tok_type type;
    int line;
    const char *s; /* T_TEXT/T_NAME/T_OP/T_STRING (unescaped): arena copy, NUL-terminated */
    size_t n;
    long long i;
    double f;
} token;

typedef struct {
    ct_arena *a;
    lc_error *err;
    token *toks;
    size_t n, cap, pos;
    int depth;
} parser;

static int fail(parser *p, int line, const char *what)
{
    char buf[256];
    lc_printable(what, buf, sizeof buf);
    return lc_error_set(p->err, "chat template line %d: %s", line, buf);
}

static token *push(parser *p, tok_type type, int line)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 256;
        token *t = ct_alloc(p->a, cap * sizeof *t);
        if (!t)
            return NULL;
        if (p->n)
            memcpy(t, p->toks, p->n * sizeof *t);
        p->toks = t;
        p->cap = cap;
    }
    token *t = &p->toks[p->n++];
    memset(t, 0, sizeof *t);
    t->type = type;
    t->line = line;
    return t;
}

static char *dup(parser *p, const char *s, size_t n)
{
    char *d = ct_alloc(p->a, n + 1);
    if (d && n)
        memcpy(d, s, n);
    return d;
}

static int lines_in(const char *s, size_t n)
{
    int k = 0;
    for (size_t i = 0; i < n; i++)
        k += s[i] == '\n';
    return k;
}

static void utf8_put(char **o, unsigned cp)
{
    unsigned char *u = (unsigned char *)*o;
    if (cp < 0x80) { *u++ = (unsigned char)cp; }
    else if (cp < 0x800) { *u++ = 0xC0 | (cp >> 6); *u++ = 0x80 | (cp & 63); }
    else if (cp < 0x10000) { *u++ = 0xE0 | (cp >> 12); *u++ = 0x80 | ((cp >> 6) & 63); *u++ = 0x80 | (cp & 63); }
    else { *u++ = 0xF0 | (cp >> 18); *u++ = 0x80 | ((cp >> 12) & 63); *u++ = 0x80 | ((cp >> 6) & 63); *u++ = 0x80 | (cp & 63); }
    *o = (char *)u;
}

/* Lexes the inside of one {{ }} / {% %} tag starting at *i; stops after its end marker.
 * Returns -1 on error; sets *strip_after when the tag ends with '-'. */
static int lex_tag(parser *p, const char *s, size_t n, size_t *i, int *line, bool block,
                   bool *strip_after, bool *ended_nl)
{
    const char *close = block ? "%}" : "}}";
    int depth = 0, start_line = *line;
    size_t k = *i;
    while (k < n) {
        char c = s[k];
        if (depth == 0 && (c == '-' || c == close[0])) {
            size_t m = k + (c == '-');
            if (m + 1 < n && s[m] == close[0] && s[m + 1] == close[1]) {
                *strip_after = c == '-';
                k = m + 2;
                if (*strip_after) {
                    while (k < n && isspace((unsigned char)s[k])) {
                        *line += s[k] == '\n';
                        k++;
                    }
                    *ended_nl = k > m + 2 && s[k - 1] == '\n';
                } else if (block && k < n && s[k] == '\n') { /* trim_blocks */
                    k++;
                    (*line)++;
                    *ended_nl = true;
                } else {
                    *ended_nl = false;
                }
                if (!push(p, block ? T_BLOCK_END : T_VAR_END, *line))
                    return -1;
                *i = k;
                return 0;
            }
        }
        if (c == '\n') { (*line)++; k++; continue; }
        if (isspace((unsigned char)c)) { k++; continue; }
        token *t;
        if (isalpha((unsigned char)c) || c == '_') {
            size_t b = k;
            while (k < n && (isalnum((unsigned char)s[k]) || s[k] == '_'))
                k++;
            if (!(t = push(p, T_NAME, *line)) || !(t->s = dup(p, s + b, k - b)))
                return -1;
            t->n = k - b;
        } else if (isdigit((unsigned char)c)) {
            size_t b = k;
            bool fl = false;
            while (k < n && (isdigit((unsigned char)s[k]) || s[k] == '_'))
                k++;
            if (k + 1 < n && s[k] == '.' && isdigit((unsigned char)s[k + 1])) {
                fl = true;
                k++;
                while (k < n && isdigit((unsigned char)s[k]))
                    k++;
            }
            if (k < n && (s[k] == 'e' || s[k] == 'E')) {
                fl = true;
                k++;
                if (k < n && (s[k] == '+' || s[k] == '-'))
                    k++;
                while (k < n && isdigit((unsigned char)s[k]))
                    k++;
            }
            char num[64];
            size_t m = 0;
            for (size_t j = b; j < k && m < sizeof num - 1; j++)
                if (s[j] != '_')
                    num[m++] = s[j];
            num[m] = '\0';
            if (!(t = push(p, fl ? T_FLOAT : T_INT, *line)))
                return -1;
            if (fl) {
                t->f = strtod(num, NULL);
            } else {
                t->i = strtoll(num, NULL, 10);
                if (m > 18)
                    return fail(p, *line, "integer literal too large");
            }
        } else if (c == '\'' || c == '"') {
            char q = c;
            size_t b = ++k;
            while (k < n && s[k] != q) {
                if (s[k] == '\\' && k + 1 < n)
                    k++;
                k++;
            }
            if (k >= n)
                return fail(p, start_line, "unterminated string literal");
            char *o = ct_alloc(p->a, (k - b) * 2 + 1), *o0 = o;
            if (!o || !(t = push(p, T_STRING, *line)))
                return -1;
            for (size_t j = b; j < k; j++) {
                if (s[j] != '\\') {
                    *o++ = s[j];
                    continue;
                }
                char e = s[++j];
                unsigned cp = 0;
                int digits = 0;
                switch (e) {
                case 'n': *o++ = '\n'; break;
                case 't': *o++ = '\t'; break;
                case 'r': *o++ = '\r'; break;
                case 'b': *o++ = '\b'; break;
                case 'f': *o++ = '\f'; break;
                case 'v': *o++ = '\v'; break;
                case 'a': *o++ = '\a'; break;
                case '0': *o++ = '\0'; break;
                case '\\': case '\'': case '"': *o++ = e; break;
                case '\n': (*line)++; break;
                case 'x': digits = 2; break;
                case 'u': digits = 4; break;
                case 'U': digits = 8; break;
                default: *o++ = '\\'; *o++ = e;
                }
                if (digits) {
                    for (int d = 0; d < digits; d++) {
                        char h = j + 1 < k ? s[j + 1] : 0;
                        if (!isxdigit((unsigned char)h))
                            return fail(p, *line, "bad \\x/\\u escape in string literal");
                        cp = cp * 16 + (unsigned)(isdigit((unsigned char)h) ? h - '0' : (tolower(h) - 'a' + 10));
                        j++;
                    }
                    if (cp > 0x10FFFF)
                        return fail(p, *line, "bad \\U escape in string literal");
                    utf8_put(&o, cp);
                }
            }
            *line += lines_in(s + b, k - b);
            t->s = o0;
            t->n = (size_t)(o - o0);
            k++;
        } else {
            static const char *two[] = {"==", "!=", "<=", ">=", "//", "**"};
            size_t len = 1;
            for (size_t j = 0; j < sizeof two / sizeof *two; j++)
                if (k + 1 < n && s[k] == two[j][0] && s[k + 1] == two[j][1])
                    len = 2;
            if (len == 1 && !strchr("()[]{}.,:|~+-*/%<>=", c)) {
                char msg[64];
                snprintf(msg, sizeof msg, "unexpected character '%c' in a tag", c);
                return fail(p, *line, msg);
            }
            if (c == '(' || c == '[' || c == '{')
                depth++;
            if ((c == ')' || c == ']' || c == '}') && depth > 0)
                depth--;
            if (!(t = push(p, T_OP, *line)) || !(t->s = dup(p, s + k, len)))
                return -1;
            t->n = len;
            k += len;
        }
    }
    return fail(p, start_line, block ? "unterminated '{%' tag" : "unterminated '{{' tag");
}

static int lex(parser *p, const char *s, size_t n)
{
    size_t i = 0;
    int line = 1;
    bool strip_next = false, line_starting = true;
    while (i <= n) {
        /* text up to the next tag opener */
        size_t b = i, e = i;
        while (e < n && !(s[e] == '{' && e + 1 < n && strchr("{%#", s[e + 1])))
            e++;
        size_t tb = b, te = e;
        if (strip_next)
            while (tb < te && isspace((unsigned char)s[tb]))
                tb++;
        char kind = e < n ? s[e + 1] : 0;
        char mod = e + 2 < n ? s[e + 2] : 0;
        if (kind && mod == '-') {
            while (te > tb && isspace((unsigned char)s[te - 1]))
                te--;
        } else if ((kind == '%' || kind == '#') && mod != '+') { /* lstrip_blocks */
            size_t l = te;
            while (l > tb && (s[l - 1] == ' ' || s[l - 1] == '\t' || s[l - 1] == '\f' ||
                              s[l - 1] == '\v'))
                l--;
            if ((l > tb && s[l - 1] == '\n') || (l == tb && (tb > b || line_starting || tb == 0)))
                te = l;
        }
        if (te > tb) {
            token *t = push(p, T_TEXT, line);
            if (!t || !(t->s = dup(p, s + tb, te - tb)))
                return -1;
            t->n = te - tb;
        }
        line += lines_in(s + b, e - b);
        if (e >= n)
            break;
        i = e + 2;
        if (i < n && (s[i] == '-' || s[i] == '+'))
            i++;
        int tag_line = line;
        if (kind == '#') {
            const char *end = NULL;
            for (size_t k = i; k + 1 < n; k++)
                if (s[k] == '#' && s[k + 1] == '}') {
                    end = s + k;
                    break;
                }
            if (!end)
                return fail(p, tag_line, "unterminated comment '{#'");
            size_t k = (size_t)(end - s);
            strip_next = k > i && s[k - 1] == '-';
            line += lines_in(s + i, k + 2 - i);
            i = k + 2;
            line_starting = false;
            if (strip_next) {
                size_t k0 = i;
                while (i < n && isspace((unsigned char)s[i]))
                    line += s[i++] == '\n';
                line_starting = i > k0 && s[i - 1] == '\n';
                strip_next = false;
            } else if (i < n && s[i] == '\n') {
                i++;
                line++;
                line_starting = true;
            }
            continue;
        }
        if (!push(p, kind == '%' ? T_BLOCK_BEGIN : T_VAR_BEGIN, tag_line))
            return -1;
        bool ended_nl = false;
        if (lex_tag(p, s, n, &i, &line, kind == '%', &strip_next, &ended_nl))
            return -1;
        strip_next = false; /* lex_tag already consumed the whitespace for '-' */
        line_starting = ended_nl;
    }
    return push(p, T_EOF, line) ? 0 : -1;
}

/* ---- parser ------------------------------------------------------------------------- */

static token *cur(parser *p) { return &p->toks[p->pos]; }

static bool is_op(parser *p, const char *op)
{
    token *t = cur(p);
    return t->type == T_OP && strcmp(t->s, op) == 0;
}

static bool is_name(parser *p, const char *name)
{
    token *t = cur(p);
    return t->type == T_NAME && strcmp(t->s, name) == 0;
}

static const char *tok_desc(token *t)
{
    switch (t->type) {
    case T_TEXT: return "template text";
    case T_VAR_BEGIN: return "'{{'";
    case T_VAR_END: return "'}}'";
    case T_BLOCK_BEGIN: return "'{%'";
    case T_BLOCK_END: return "'%}'";
    case T_STRING: return "a string";
    case T_INT: case T_FLOAT: return "a number";
    case T_EOF: return "end of template";
    default: return t->s;
    }
}

static int expect_op(parser *p, const char *op)
{
    if (!is_op(p, op)) {
        char msg[128];
        snprintf(msg, sizeof msg, "expected '%s', found %s", op, tok_desc(cur(p)));
        return fail(p, cur(p)->line, msg);
    }
    p->pos++;
    return 0;
}

static ct_node *node(parser *p, ct_node_type type, int line)
{
    ct_node *nd = ct_alloc(p->a, sizeof *nd);
    if (nd) {
        nd->type = type;
        nd->line = line;
    }
    return nd;
}

static int add_arg(parser *p, ct_node *nd, ct_node *arg, const char *kw)
{
    if (nd->nargs % 8 == 0) {
        ct_node **args = ct_alloc(p->a, (nd->nargs + 8) * sizeof *args);
        const char **kws = ct_alloc(p->a, (nd->nargs + 8) * sizeof *kws);
        if (!args || !kws)
            return -1;
        if (nd->nargs) {
            memcpy(args, nd->args, nd->nargs * sizeof *args);
            memcpy(kws, nd->kw, nd->nargs * sizeof *kws);
        }
        nd->args = args;
        nd->kw = kws;
    }
    nd->args[nd->nargs] = arg;
    nd->kw[nd->nargs++] = kw;
    return 0;
}

static ct_node *expr(parser *p);
static ct_node *or_expr(parser *p);

static bool enter(parser *p)
{
    if (++p->depth > CT_MAX_DEPTH) {
        fail(p, cur(p)->line, "template nested too deeply");
        return false;
    }
    return true;
}

/* (args, kw=args) after the '(' was consumed */
static int call_args(parser *p, ct_node *nd)
{
    while (!is_op(p, ")")) {
        const char *kw = NULL;
        if (cur(p)->type == T_NAME && p->toks[p->pos + 1].type == T_OP &&
            strcmp(p->toks[p->pos + 1].s, "=") == 0) {
            kw = cur(p)->s;
            p->pos += 2;
        }
        ct_node *arg = expr(p);
        if (!arg || add_arg(p, nd, arg, kw))
            return -1;
        if (!is_op(p, ","))
            break;
        p->pos++;
    }
    return expect_op(p, ")");
}

static ct_node *primary(parser *p)
{
    token *t = cur(p);
    ct_node *nd;
    if (t->type == T_STRING) {
        /* adjacent literals concatenate */
        size_t len = 0, k = p->pos;
        for (; p->toks[k].type == T_STRING; k++)
            len += p->toks[k].n;
        char *s = ct_alloc(p->a, len + 1), *o = s;
        if (!s || !(nd = node(p, CN_CONST, t->line)))
            return NULL;
        for (; p->pos < k; p->pos++) {
            memcpy(o, cur(p)->s, cur(p)->n);
            o += cur(p)->n;
        }
        nd->value = ct_new(p->a, CT_STR);
        if (!nd->value)
            return NULL;
        nd->value->u.str.s = s;
        nd->value->u.str.n = len;
        return nd;
    }
    if (t->type == T_INT || t->type == T_FLOAT) {
        p->pos++;
        if (!(nd = node(p, CN_CONST, t->line)))
            return NULL;
        nd->value = t->type == T_INT ? ct_int(p->a, t->i) : ct_float(p->a, t->f);
        return nd->value ? nd : NULL;
    }
    if (t->type == T_NAME) {
        p->pos++;
        if (!(nd = node(p, CN_CONST, t->line)))
            return NULL;
        if (!strcmp(t->s, "true") || !strcmp(t->s, "True"))
            nd->value = ct_bool(p->a, true);
        else if (!strcmp(t->s, "false") || !strcmp(t->s, "False"))
            nd->value = ct_bool(p->a, false);
        else if (!strcmp(t->s, "none") || !strcmp(t->s, "None"))
            nd->value = ct_new(p->a, CT_NONE);
        else {
            nd->type = CN_NAME;
            nd->name = t->s;
            return nd;
        }
        return nd->value ? nd : NULL;
    }
    if (is_op(p, "(")) {
        p->pos++;
        if (is_op(p, ")")) {
            p->pos++;
            return node(p, CN_TUPLE, t->line);
        }
        ct_node *e = expr(p);
        if (!e)
            return NULL;
        if (is_op(p, ",")) {
            ct_node *tup = node(p, CN_TUPLE, t->line);
            if (!tup || add_arg(p, tup, e, NULL))
                return NULL;
            while (is_op(p, ",")) {
                p->pos++;
                if (is_op(p, ")"))
                    break;
                if (!(e = expr(p)) || add_arg(p, tup, e, NULL))
                    return NULL;
            }
            e = tup;
        }
        return expect_op(p, ")") ? NULL : e;
    }
    if (is_op(p, "[")) {
        p->pos++;
        if (!(nd = node(p, CN_LIST, t->line)))
            return NULL;
        while (!is_op(p, "]")) {
            ct_node *e = expr(p);
            if (!e || add_arg(p, nd, e, NULL))
                return NULL;
            if (!is_op(p, ","))
                break;
            p->pos++;
        }
        return expect_op(p, "]") ? NULL : nd;
    }
    if (is_op(p, "{")) {
        p->pos++;
        if (!(nd = node(p, CN_DICT, t->line)))
            return NULL;
        while (!is_op(p, "}")) {
            ct_node *k = expr(p), *v;
            if (!k || expect_op(p, ":") || !(v = expr(p)) || add_arg(p, nd, k, NULL) ||
                add_arg(p, nd, v, NULL))
                return NULL;
            if (!is_op(p, ","))
                break;
            p->pos++;
        }
        return expect_op(p, "}") ? NULL : nd;
    }
    char msg[128];
    snprintf(msg, sizeof msg, "unexpected %s in an expression", tok_desc(t));
    fail(p, t->line, msg);
    return NULL;
}

static ct_node *postfix(parser *p, ct_node *nd)
{
    while (nd) {
        int line = cur(p)->line;
        if (is_op(p, ".")) {
            p->pos++;
            token *t = cur(p);
            ct_node *a = node(p, CN_ATTR, line);
            if (!a)
                return NULL;
            a->a = nd;
            if (t->type == T_NAME) {
                a->name = t->s;
            } else if (t->type == T_INT) {
                a->type = CN_INDEX;
                if (!(a->b = node(p, CN_CONST, line)) || !(a->b->value = ct_int(p->a, t->i)))
                    return NULL;
            } else {
                fail(p, line, "expected an attribute name after '.'");
                return NULL;
            }
            p->pos++;
            nd = a;
        } else if (is_op(p, "[")) {
            p->pos++;
            ct_node *ix = node(p, CN_INDEX, line), *parts[3] = {0};
            if (!ix)
                return NULL;
            ix->a = nd;
            int k = 0;
            bool slice = false;
            for (;;) {
                if (!is_op(p, ":") && !is_op(p, "]") && !(parts[k] = expr(p)))
                    return NULL;
                if (is_op(p, ":") && k < 2) {
                    slice = true;
                    k++;
                    p->pos++;
                    continue;
                }
                break;
            }
            if (expect_op(p, "]"))
                return NULL;
            if (slice) {
                ix->type = CN_SLICE;
                ix->b = parts[0];
                ix->c = parts[1];
                ix->d = parts[2];
            } else if (!parts[0]) {
                fail(p, line, "empty subscript '[]'");
                return NULL;
            } else {
                ix->b = parts[0];
            }
            nd = ix;
        } else if (is_op(p, "(")) {
            p->pos++;
            ct_node *c = node(p, CN_CALL, line);
            if (!c)
                return NULL;
            c->a = nd;
            if (call_args(p, c))
                return NULL;
            nd = c;
        } else {
            break;
        }
    }
    return nd;
}

/* | filter(args) and `is [not] test [arg]` */
static ct_node *filters(parser *p, ct_node *nd)
{
    while (nd) {
        int line = cur(p)->line;
        if (is_op(p, "|")) {
            p->pos++;
            if (cur(p)->type != T_NAME) {
                fail(p, line, "expected a filter name after '|'");
                return NULL;
            }
            ct_node *f = node(p, CN_FILTER, line);
            if (!f)
                return NULL;
            f->name = cur(p)->s;
            f->a = nd;
            p->pos++;
            if (is_op(p, "(")) {
                p->pos++;
                if (call_args(p, f))
                    return NULL;
            }
            nd = f;
        } else if (is_name(p, "is")) {
            p->pos++;
            bool neg = false;
            if (is_name(p, "not")) {
                neg = true;
                p->pos++;
            }
            if (cur(p)->type != T_NAME) {
                fail(p, line, "expected a test name after 'is'");
                return NULL;
            }
            ct_node *t = node(p, CN_TEST, line);
            if (!t)
                return NULL;
            t->name = cur(p)->s;
            t->a = nd;
            p->pos++;
            token *c = cur(p);
            if (is_op(p, "(")) {
                p->pos++;
                if (call_args(p, t))
                    return NULL;
            } else if ((c->type == T_NAME || c->type == T_STRING || c->type == T_INT ||
                        c->type == T_FLOAT || is_op(p, "[") || is_op(p, "{")) &&
                       !is_name(p, "else") && !is_name(p, "or") && !is_name(p, "and") &&
                       !is_name(p, "is") && !is_name(p, "if") && !is_name(p, "in") &&
                       !is_name(p, "not")) {
                ct_node *arg = postfix(p, primary(p));
                if (!arg || add_arg(p, t, arg, NULL))
                    return NULL;
            }
            if (neg) {
                ct_node *n = node(p, CN_NOT, line);
                if (!n)
                    return NULL;
                n->a = t;
                t = n;
            }
            nd = t;
        } else {
            break;
        }
    }
    return nd;
}

static ct_node *unary(parser *p, bool with_filter)
{
    int line = cur(p)->line;
    ct_node *nd;
    if (!enter(p))
        return NULL;
    if (is_op(p, "-") || is_op(p, "+")) {
        bool neg = is_op(p, "-");
        p->pos++;
        if (!(nd = node(p, neg ? CN_NEG : CN_POS, line)) || !(nd->a = unary(p, false)))
            return NULL;
    } else {
        nd = primary(p);
    }
    nd = postfix(p, nd);
    if (with_filter)
        nd = filters(p, nd);
    p->depth--;
    return nd;
}

static ct_node *binary(parser *p, int line, const char *op, ct_node *l, ct_node *r)
{
    ct_node *nd = l && r ? node(p, CN_BINARY, line) : NULL;
    if (nd) {
        snprintf(nd->op, sizeof nd->op, "%s", op);
        nd->a = l;
        nd->b = r;
    }
    return nd;
}

static ct_node *power(parser *p)
{
    ct_node *l = unary(p, true);
    while (l && is_op(p, "**")) {
        int line = cur(p)->line;
        p->pos++;
        l = binary(p, line, "**", l, unary(p, true));
    }
    return l;
}

static ct_node *math2(parser *p)
{
    ct_node *l = power(p);
    while (l && (is_op(p, "*") || is_op(p, "/") || is_op(p, "//") || is_op(p, "%"))) {
        const char *op = cur(p)->s;
        int line = cur(p)->line;
        p->pos++;
        l = binary(p, line, op, l, power(p));
    }
    return l;
}

static ct_node *concat(parser *p)
{
    ct_node *l = math2(p);
    while (l && is_op(p, "~")) {
        int line = cur(p)->line;
        p->pos++;
        l = binary(p, line, "~", l, math2(p));
    }
    return l;
}

static ct_node *math1(parser *p)
{
    ct_node *l = concat(p);
    while (l && (is_op(p, "+") || is_op(p, "-"))) {
        const char *op = cur(p)->s;
        int line = cur(p)->line;
        p->pos++;
        l = binary(p, line, op, l, concat(p));
    }
    return l;
}

static ct_node *compare(parser *p)
{
    ct_node *l = math1(p);
    while (l) {
        int line = cur(p)->line;
        static const char *ops[] = {"==", "!=", "<", ">", "<=", ">="};
        const char *op = NULL;
        for (size_t i = 0; i < 6; i++)
            if (is_op(p, ops[i]))
                op = ops[i];
        if (op) {
            p->pos++;
        } else if (is_name(p, "in")) {
            op = "in";
            p->pos++;
        } else if (is_name(p, "not") && p->toks[p->pos + 1].type == T_NAME &&
                   !strcmp(p->toks[p->pos + 1].s, "in")) {
            op = "!in";
            p->pos += 2;
        } else {
            break;
        }
        l = binary(p, line, op, l, math1(p));
    }
    return l;
}

static ct_node *not_expr(parser *p)
{
    if (is_name(p, "not")) {
        int line = cur(p)->line;
        p->pos++;
        if (!enter(p))
            return NULL;
        ct_node *nd = node(p, CN_NOT, line);
        if (!nd || !(nd->a = not_expr(p)))
            return NULL;
        p->depth--;
        return nd;
    }
    return compare(p);
}

static ct_node *and_expr(parser *p)
{
    ct_node *l = not_expr(p);
    while (l && is_name(p, "and")) {
        ct_node *nd = node(p, CN_AND, cur(p)->line);
        p->pos++;
        if (!nd || !(nd->b = not_expr(p)))
            return NULL;
        nd->a = l;
        l = nd;
    }
    return l;
}

static ct_node *or_expr(parser *p)
{
    ct_node *l = and_expr(p);
    while (l && is_name(p, "or")) {
        ct_node *nd = node(p, CN_OR, cur(p)->line);
        p->pos++;
        if (!nd || !(nd->b = and_expr(p)))
            return NULL;
        nd->a = l;
        l = nd;
    }
    return l;
}

/* a if cond [else b] */
static ct_node *expr(parser *p)
{
    if (!enter(p))
        return NULL;
    ct_node *l = or_expr(p);
    while (l && is_name(p, "if")) {
        ct_node *nd = node(p, CN_COND, cur(p)->line);
        p->pos++;
        if (!nd || !(nd->b = or_expr(p)))
            return NULL;
        nd->a = l;
        if (is_name(p, "else")) {
            p->pos++;
            if (!(nd->c = expr(p)))
                return NULL;
        }
        l = nd;
    }
    p->depth--;
    return l;
}

/* ---- statements ---------------------------------------------------------------------- */

static int block_end(parser *p)
{
    if (cur(p)->type != T_BLOCK_END) {
        char msg[128];
        snprintf(msg, sizeof msg, "expected '%%}', found %s", tok_desc(cur(p)));
        return fail(p, cur(p)->line, msg);
    }
    p->pos++;
    return 0;
}

/* Parses statements until `{% <one of ends> ...`; leaves pos at the end keyword (or EOF
 * when ends is NULL). *which receives the index of the end keyword found. */
static ct_node *body(parser *p, const char *const *ends, int *which, int open_line,
                     const char *open_name);

static int add_target(parser *p, ct_node *nd, const char *name)
{
    const char **t = ct_alloc(p->a, (nd->ntargets + 1) * sizeof *t);
    if (!t)
        return -1;
    if (nd->ntargets)
        memcpy(t, nd->targets, nd->ntargets * sizeof *t);
    t[nd->ntargets++] = name;
    nd->targets = t;
    return 0;
}

static int targets(parser *p, ct_node *nd)
{
    bool paren = is_op(p, "(");
    if (paren)
        p->pos++;
    do {
        if (nd->ntargets && is_op(p, ","))
            p->pos++;
        if (cur(p)->type != T_NAME)
            return fail(p, cur(p)->line, "expected a variable name");
        if (add_target(p, nd, cur(p)->s))
            return -1;
        p->pos++;
    } while (is_op(p, ","));
    return paren ? expect_op(p, ")") : 0;
}

static ct_node *statement(parser *p)
{
    token *kw = cur(p);
    int line = kw->line;
    if (kw->type != T_NAME) {
        fail(p, line, "expected a statement name after '{%'");
        return NULL;
    }
    const char *k = kw->s;
    p->pos++;
    ct_node *nd;
    int which;
    if (!strcmp(k, "if")) {
        if (!(nd = node(p, CN_IF, line)) || !(nd->a = expr(p)) || block_end(p))
            return NULL;
        static const char *const ends[] = {"elif", "else", "endif", NULL};
        ct_node *at = nd;
        for (;;) {
            ct_node *b = body(p, ends, &which, line, "if");
            if (p->err->msg[0])
                return NULL;
            p->pos++;
            if (which == 0) { /* elif: a nested if in the else branch */
                at->b = b;
                ct_node *e = node(p, CN_IF, cur(p)->line);
                if (!e || !(e->a = expr(p)) || block_end(p))
                    return NULL;
                at->c = e;
                at = e;
            } else if (which == 1) {
                at->b = b;
                if (block_end(p))
                    return NULL;
                static const char *const end_only[] = {"endif", NULL};
                at->c = body(p, end_only, &which, line, "if");
                if (p->err->msg[0])
                    return NULL;
                p->pos++;
                return block_end(p) ? NULL : nd;
            } else {
                at->b = b;
                return block_end(p) ? NULL : nd;
            }
        }
    }
    if (!strcmp(k, "for")) {
        if (!(nd = node(p, CN_FOR, line)) || targets(p, nd))
            return NULL;
        if (!is_name(p, "in")) {
            fail(p, cur(p)->line, "expected 'in' in a for statement");
            return NULL;
        }
        p->pos++;
        if (!(nd->a = or_expr(p)))
            return NULL;
        if (is_name(p, "if")) {
            p->pos++;
            if (!(nd->d = expr(p)))
                return NULL;
        }
        if (is_name(p, "recursive")) {
            fail(p, line, "unsupported recursive for loop");
            return NULL;
        }
        if (block_end(p))
            return NULL;
        static const char *const ends[] = {"else", "endfor", NULL};
        nd->b = body(p, ends, &which, line, "for");
        if (p->err->msg[0])
            return NULL;
        p->pos++;
        if (block_end(p))
            return NULL;
        if (which == 0) {
            static const char *const end_only[] = {"endfor", NULL};
            nd->c = body(p, end_only, &which, line, "for");
            if (p->err->msg[0])
                return NULL;
            p->pos++;
            if (block_end(p))
                return NULL;
        }
        return nd;
    }
    if (!strcmp(k, "set")) {
        if (!(nd = node(p, CN_SET, line)))
            return NULL;
        if (cur(p)->type == T_NAME && p->toks[p->pos + 1].type == T_OP &&
            !strcmp(p->toks[p->pos + 1].s, ".")) {
            nd->type = CN_SET_ATTR;
            nd->name = cur(p)->s;
            p->pos += 2;
            if (cur(p)->type != T_NAME) {
                fail(p, line, "expected an attribute name in set");
                return NULL;
            }
            nd->attr = cur(p)->s;
            p->pos++;
        } else if (targets(p, nd)) {
            return NULL;
        }
        if (cur(p)->type == T_BLOCK_END && nd->type == CN_SET && nd->ntargets == 1) {
            p->pos++;
            nd->type = CN_SET_BLOCK;
            static const char *const ends[] = {"endset", NULL};
            nd->b = body(p, ends, &which, line, "set");
            if (p->err->msg[0])
                return NULL;
            p->pos++;
            return block_end(p) ? NULL : nd;
        }
        if (expect_op(p, "="))
            return NULL;
        ct_node *v = expr(p);
        if (v && is_op(p, ",")) { /* set a, b = x, y */
            ct_node *tup = node(p, CN_TUPLE, line);
            if (!tup || add_arg(p, tup, v, NULL))
                return NULL;
            while (is_op(p, ",")) {
                p->pos++;
                if (!(v = expr(p)) || add_arg(p, tup, v, NULL))
                    return NULL;
            }
            v = tup;
        }
        if (!v || block_end(p))
            return NULL;
        nd->a = v;
        return nd;
    }
    if (!strcmp(k, "macro")) {
        if (!(nd = node(p, CN_MACRO, line)))
            return NULL;
        if (cur(p)->type != T_NAME) {
            fail(p, line, "expected a macro name");
            return NULL;
        }
        nd->name = cur(p)->s;
        p->pos++;
        if (expect_op(p, "("))
            return NULL;
        while (!is_op(p, ")")) {
            if (cur(p)->type != T_NAME) {
                fail(p, line, "expected a macro parameter name");
                return NULL;
            }
            const char *param = cur(p)->s;
            ct_node *def = NULL;
            p->pos++;
            if (is_op(p, "=")) {
                p->pos++;
                if (!(def = expr(p)))
                    return NULL;
            }
            if (add_arg(p, nd, def, param))
                return NULL;
            if (!is_op(p, ","))
                break;
            p->pos++;
        }
        if (expect_op(p, ")") || block_end(p))
            return NULL;
        static const char *const ends[] = {"endmacro", NULL};
        nd->b = body(p, ends, &which, line, "macro");
        if (p->err->msg[0])
            return NULL;
        p->pos++;
        return block_end(p) ? NULL : nd;
    }
    if (!strcmp(k, "generation")) {
        if (!(nd = node(p, CN_GENERATION, line)) || block_end(p))
            return NULL;
        static const char *const ends[] = {"endgeneration", NULL};
        nd->b = body(p, ends, &which, line, "generation");
        if (p->err->msg[0])
            return NULL;
        p->pos++;
        return block_end(p) ? NULL : nd;
    }
    if (!strcmp(k, "break") || !strcmp(k, "continue")) {
        nd = node(p, k[0] == 'b' ? CN_BREAK : CN_CONTINUE, line);
        return !nd || block_end(p) ? NULL : nd;
    }
    char msg[128];
    snprintf(msg, sizeof msg, "unsupported statement '%s'", k);
    fail(p, line, msg);
    return NULL;
}

static ct_node *body(parser *p, const char *const *ends, int *which, int open_line,
                     const char *open_name)
{
    ct_node *head = NULL, **tail = &head;
    if (!enter(p))
        return NULL;
    for (;;) {
        token *t = cur(p);
        ct_node *nd = NULL;
        if (t->type == T_EOF) {
            if (ends) {
                char msg[128];
                snprintf(msg, sizeof msg, "'%s' block is never closed (missing 'end%s')",
                         open_name, open_name);
                fail(p, open_line, msg);
                return NULL;
            }
            break;
        }
        if (t->type == T_TEXT) {
            if (!(nd = node(p, CN_TEXT, t->line)) || !(nd->value = ct_new(p->a, CT_STR)))
                return NULL;
            nd->value->u.str.s = t->s;
            nd->value->u.str.n = t->n;
            p->pos++;
        } else if (t->type == T_VAR_BEGIN) {
            p->pos++;
            if (!(nd = node(p, CN_OUTPUT, t->line)) || !(nd->a = expr(p)))
                return NULL;
            if (cur(p)->type != T_VAR_END) {
                char msg[128];
                snprintf(msg, sizeof msg, "expected '}}', found %s", tok_desc(cur(p)));
                fail(p, cur(p)->line, msg);
                return NULL;
            }
            p->pos++;
        } else if (t->type == T_BLOCK_BEGIN) {
            token *kw = &p->toks[p->pos + 1];
            if (kw->type == T_NAME && ends)
                for (int i = 0; ends[i]; i++)
                    if (!strcmp(kw->s, ends[i])) {
                        *which = i;
                        p->pos++;
                        p->depth--;
                        return head;
                    }
            if (kw->type == T_NAME && (!strncmp(kw->s, "end", 3) || !strcmp(kw->s, "elif") ||
                                       !strcmp(kw->s, "else"))) {
                char msg[128];
                snprintf(msg, sizeof msg, "unexpected '%s'", kw->s);
                fail(p, kw->line, msg);
                return NULL;
            }
            p->pos++;
            if (!(nd = statement(p)))
                return NULL;
        } else {
            fail(p, t->line, "unexpected token outside a tag");
            return NULL;
        }
        *tail = nd;
        tail = &nd->next;
    }
    p->depth--;
    return head;
}

int ct_parse(ct_template *t, const char *src, size_t n, lc_error *err)
{
    /* jinja2 normalises \r\n and \r to \n and drops one trailing newline */
    char *s = ct_alloc(&t->arena, n + 1);
    if (!s)
        return -1;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (src[i] == '\r') {
            s[m++] = '\n';
            if (i + 1 < n && src[i + 1] == '\n')
                i++;
        } else {
            s[m++] = src[i];
        }
    }
    if (m && s[m - 1] == '\n')
        m--;
    parser p = {.a = &t->arena, .err = err};
    err->msg[0] = '\0';
    if (lex(&p, s, m))
        return -1;
    t->body = body(&p, NULL, NULL, 0, "");
    return err->msg[0] ? -1 : 0;
}

/* chat_parse.h — a chat template's syntax tree, parsed once from the Jinja source.
 *
 * Lexing follows jinja2 as transformers configures it: newlines normalised to \n, one
 * trailing newline dropped (keep_trailing_newline=False), trim_blocks and lstrip_blocks on,
 * `{%-`/`-%}` style whitespace control, comments `{# #}`. The parser builds ct_node trees
 * (statements linked by `next`) that data/chat_template.c evaluates. Nesting is bounded
 * (CT_MAX_DEPTH) because templates are untrusted; every refusal names the template line. */
#ifndef LC_CHAT_PARSE_H
#define LC_CHAT_PARSE_H

#include "data/chat_value.h"

#define CT_MAX_DEPTH 128

typedef enum {
    /* statements */
    CN_TEXT, CN_OUTPUT, CN_IF, CN_FOR, CN_SET, CN_SET_ATTR, CN_SET_BLOCK, CN_MACRO,
    CN_BREAK, CN_CONTINUE, CN_GENERATION,
    /* expressions */
    CN_CONST, CN_NAME, CN_ATTR, CN_INDEX, CN_SLICE, CN_CALL, CN_FILTER, CN_TEST, CN_NEG,
    CN_POS, CN_NOT, CN_BINARY, CN_AND, CN_OR, CN_COND, CN_LIST, CN_TUPLE, CN_DICT
} ct_node_type;

typedef struct ct_node ct_node;
struct ct_node {
    ct_node_type type;
    int line;
    char op[4];          /* CN_BINARY: "+", "==", "in", "not in", "//" ... */
    const char *name;    /* CN_NAME / CN_ATTR / CN_FILTER / CN_TEST / CN_SET / CN_MACRO ... */
    ct_value *value;     /* CN_CONST, CN_TEXT */
    ct_node *a, *b, *c, *d;
    /* CN_IF: a cond, b then, c else. CN_FOR: a iterable, b body, c else, d filter.
     * CN_SET: a value. CN_SET_ATTR: a value (name.attr = a; attr in op-less `attr`).
     * CN_INDEX: a object, b index. CN_SLICE: a object, b start, c stop, d step (NULL = omitted).
     * CN_ATTR: a object. CN_CALL/FILTER/TEST: a callee or operand. CN_COND: a then, b cond, c else. */
    const char *attr;    /* CN_SET_ATTR: the attribute */
    ct_node **args;      /* call/filter/test arguments, list/tuple items, dict k,v pairs, macro defaults */
    const char **kw;     /* keyword names parallel to args (NULL = positional); macro parameters */
    size_t nargs;
    const char **targets; /* CN_FOR / CN_SET: names being bound (more than one: unpacking) */
    size_t ntargets;
    ct_node *next;       /* next statement */
};

typedef struct ct_template {
    ct_arena arena;
    ct_node *body;
    lc_error parse_err;
} ct_template;

/* Parses src into t (t->arena owns the tree). -1 with "chat template line N: ..." in err. */
int ct_parse(ct_template *t, const char *src, size_t n, lc_error *err);

#endif

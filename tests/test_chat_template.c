/* test_chat_template.c — the chat-template engine against transformers' own renderings.
 *
 * Every case of tests/fixtures/chat_templates/<family>.json (made by
 * scripts/make_chat_template_fixtures.py with strftime_now pinned to the file's "now", UTC)
 * must render byte-identically, or fail with the template's raise_exception message
 * (tests/chat_fixture.h). Unit tests cover the engine's pieces; hostile templates must be
 * refused with one clear line. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "data/chat_template.h"
#include "tests/chat_fixture.h"

static void run_fixture(const char *family) { lc_test_chat_fixture(family, NULL); }

Test(chat_fixtures, llama3_1) { run_fixture("llama3_1"); }
Test(chat_fixtures, qwen2_5) { run_fixture("qwen2_5"); }
Test(chat_fixtures, qwen3) { run_fixture("qwen3"); }
Test(chat_fixtures, mistral_nemo) { run_fixture("mistral_nemo"); }
Test(chat_fixtures, phi3_5) { run_fixture("phi3_5"); }
Test(chat_fixtures, gemma2) { run_fixture("gemma2"); }
Test(chat_fixtures, llama3_2) { run_fixture("llama3_2"); }

/* renders src with ctx_json; returns the output (malloc'd) or NULL with err */
static char *render(const char *src, const char *ctx_json, lc_error *err)
{
    lc_chat_template *t;
    if (lc_chat_template_parse(src, strlen(src), &t, err))
        return NULL;
    cJSON *ctx = cJSON_Parse(ctx_json ? ctx_json : "{}");
    cr_assert(ctx);
    char *out = NULL;
    size_t len;
    lc_chat_template_render(t, ctx, NULL, &out, &len, err);
    cJSON_Delete(ctx);
    lc_chat_template_free(t);
    return out;
}

static void expect(const char *src, const char *ctx, const char *want)
{
    lc_error err = {{0}};
    char *out = render(src, ctx, &err);
    cr_assert(out, "'%s': %s", src, err.msg);
    cr_assert_str_eq(out, want, "'%s'", src);
    free(out);
}

static void refuse(const char *src, const char *ctx, const char *want)
{
    lc_error err = {{0}};
    char *out = render(src, ctx, &err);
    cr_assert_null(out, "'%s' should fail", src);
    cr_assert(strstr(err.msg, want), "'%s': error '%s' lacks '%s'", src, err.msg, want);
}

Test(chat_engine, whitespace_control)
{
    expect("a  {{- 'b' -}}  \n c", NULL, "abc");
    expect("x\n  {% if true %}\ny\n  {% endif %}\nz\n", NULL, "x\ny\nz");
    expect("{# note #}\nq", NULL, "q");
    expect("a {%- if true %} b{% endif %}", NULL, "a b");
}

Test(chat_engine, loops)
{
    expect("{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}"
           "{{ loop.length }}{{ loop.revindex }},{% endfor %}", "{\"xs\":[5,6]}",
           "10TrueFalse22,21FalseTrue21,");
    expect("{% for x in xs if x > 1 %}{{ x }}{% else %}none{% endfor %}", "{\"xs\":[1,2,3]}", "23");
    expect("{% for x in [] %}{{ x }}{% else %}none{% endfor %}", NULL, "none");
    expect("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", "{\"d\":{\"a\":1,\"b\":\"x\"}}",
           "a=1;b=x;");
    expect("{% for x in range(5) %}{% if x == 3 %}{% break %}{% endif %}{{ x }}{% endfor %}", NULL,
           "012");
}

Test(chat_engine, namespace_and_scope)
{
    expect("{% set ns = namespace(n=0) %}{% for x in range(4) %}{% set ns.n = ns.n + x %}"
           "{% endfor %}{{ ns.n }}", NULL, "6");
    expect("{% set y = 1 %}{% for x in range(2) %}{% set y = 5 %}{% endfor %}{{ y }}", NULL, "1");
}

Test(chat_engine, slicing_and_strings)
{
    expect("{{ xs[1:] }}|{{ xs[::-1] }}|{{ xs[-1] }}", "{\"xs\":[1,2,3]}", "[2, 3]|[3, 2, 1]|3");
    expect("{{ 'héllo'[1:3] }}{{ 'abc'[::-1] }}", NULL, "élcba");
    expect("{{ '  a b '.strip() }}|{{ 'x</think>y'.split('</think>')[-1] }}|{{ 'aab'.lstrip('a') }}",
           NULL, "a b|y|b");
    expect("{{ 'Hello'.startswith('He') }}{{ 'a-b'.replace('-', '+') }}{{ 'ab cd'.title() }}",
           NULL, "Truea+bAb Cd");
}

Test(chat_engine, filters)
{
    expect("{{ '  x ' | trim }}{{ [1,2] | length }}{{ 'ab' | upper }}{{ xs | join(', ') }}",
           "{\"xs\":[\"a\",\"b\"]}", "x2ABa, b");
    expect("{{ ms | selectattr('role', 'equalto', 'user') | map(attribute='c') | list }}",
           "{\"ms\":[{\"role\":\"user\",\"c\":1},{\"role\":\"bot\",\"c\":2}]}", "[1]");
    /* jinja2 iterates nothing for a falsy value here: content null in a tool-call message */
    expect("[{{ n | selectattr('text', 'defined') | map(attribute='text') | join('') }}]"
           "{{ n | map(attribute='x') | list }}{{ '' | select | list }}", "{\"n\":null}", "[][][]");
    expect("{{ u | default('d') }}{{ 3 | string }}{{ '7' | int + 1 }}{{ [1,2] | first }}", NULL,
           "d381");
    expect("{{ 'a\nb' | indent(2) }}|{{ 'a\nb' | indent(2, true) }}", NULL, "a\n  b|  a\n  b");
}

Test(chat_engine, tojson)
{
    expect("{{ d | tojson }}", "{\"d\":{\"k\":[1,2.5,\"é\\\"\\n\",null,true],\"e\":{}}}",
           "{\"k\": [1, 2.5, \"é\\\"\\n\", null, true], \"e\": {}}");
    expect("{{ d | tojson(indent=2) }}", "{\"d\":{\"a\":[1]}}", "{\n  \"a\": [\n    1\n  ]\n}");
}

Test(chat_engine, tests_and_operators)
{
    expect("{{ x is defined }}{{ y is undefined }}{{ n is none }}{{ 's' is string }}"
           "{{ 1 is number }}{{ d is mapping }}{{ [] is iterable }}{{ t is true }}",
           "{\"x\":1,\"n\":null,\"d\":{},\"t\":true}", "TrueTrueTrueTrueTrueTrueTrueTrue");
    expect("{{ 7 // 2 }}{{ -7 // 2 }}{{ 7 % 3 }}{{ 1 / 2 }}{{ 'a' ~ 1 }}{{ 'b' in 'abc' }}"
           "{{ 2 not in [1] }}{{ 'y' if false else 'n' }}", NULL, "3-410.5a1TrueTruen");
}

Test(chat_engine, macros)
{
    expect("{% macro m(a, b='z') %}[{{ a }}{{ b }}]{% endmacro %}{{ m(1) }}{{ m(2, b=3) }}", NULL,
           "[1z][23]");
}

Test(chat_hostile, refused_with_line)
{
    refuse("a {{ x", NULL, "line 1: unterminated '{{'");
    refuse("{% if x %}\nno end", NULL, "line 1: 'if' block is never closed");
    refuse("\n{% include 'x' %}", NULL, "line 2: unsupported statement 'include'");
    refuse("{{ x | nope }}", NULL, "unsupported filter 'nope'");
    refuse("{{ raise_exception('bad role') }}", NULL, "raise_exception: bad role");
    refuse("{% for i in range(10**9) %}x{% endfor %}", NULL, "exceeds the limit");
    refuse("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
           NULL, "iterations");
    refuse("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", NULL, "calls deep");
    refuse("{{ 'x' * 10**9 }}", NULL, "longer than");
    char deep[4000] = "";
    for (int i = 0; i < 300; i++)
        strcat(deep, "{% if 1 %}");
    refuse(deep, NULL, "nested too deeply");
    char parens[2000] = "{{ ";
    for (int i = 0; i < 500; i++)
        strcat(parens, "(");
    strcat(parens, "1");
    for (int i = 0; i < 500; i++)
        strcat(parens, ")");
    strcat(parens, " }}");
    refuse(parens, NULL, "nested too deeply");
}

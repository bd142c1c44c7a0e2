/* chat_fixture.h — runs one tests/fixtures/chat_templates/<family>.json against the engine.
 *
 * A fixture (scripts/make_chat_template_fixtures.py, make_chat_builtin_fixtures.py) holds a
 * template, the instant strftime_now formats ("now", rendered in UTC) and cases of
 * {name, context, expected | error}. Every case must render byte-identically to expected, or
 * fail with an error containing `error`. Shared by test_chat_template.c (the fixture's own
 * template) and test_chat_builtin.c (lorac's built-in of the same name). */
#ifndef LC_TEST_CHAT_FIXTURE_H
#define LC_TEST_CHAT_FIXTURE_H

#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/chat_template.h"
#include "tests/helpers.h"

/* Renders each case of the fixture with tpl (NULL: the fixture's "template"); returns how
 * many cases there were. */
static inline int lc_test_chat_fixture(const char *family, const char *tpl)
{
    char *rel = lc_test_asprintf("chat_templates/%s.json", family);
    char *text = lc_test_read_file(lc_test_fixture(rel), NULL);
    cJSON *doc = cJSON_Parse(text);
    cr_assert(doc, "%s: not JSON", rel);
    setenv("TZ", "UTC", 1);
    tzset();
    if (!tpl)
        tpl = cJSON_GetObjectItem(doc, "template")->valuestring;
    lc_chat_render_opts opts = {.now = (long long)cJSON_GetObjectItem(doc, "now")->valuedouble};
    lc_chat_template *t;
    lc_error err = {{0}};
    cr_assert_eq(lc_chat_template_parse(tpl, strlen(tpl), &t, &err), 0, "%s: %s", family, err.msg);
    int n = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(doc, "cases")) {
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        const cJSON *want = cJSON_GetObjectItem(c, "expected");
        const cJSON *want_err = cJSON_GetObjectItem(c, "error");
        char *out;
        size_t len;
        int rc = lc_chat_template_render(t, cJSON_GetObjectItem(c, "context"), &opts, &out, &len,
                                         &err);
        if (want) {
            cr_assert_eq(rc, 0, "%s/%s: %s", family, name, err.msg);
            cr_assert_str_eq(out, want->valuestring, "%s/%s differs", family, name);
            cr_assert_eq(len, strlen(want->valuestring));
            free(out);
        } else {
            cr_assert_eq(rc, -1, "%s/%s should fail", family, name);
            cr_assert(strstr(err.msg, want_err->valuestring), "%s/%s: error '%s' lacks '%s'",
                      family, name, err.msg, want_err->valuestring);
        }
        n++;
    }
    lc_chat_template_free(t);
    cJSON_Delete(doc);
    free(text);
    free(rel);
    return n;
}

#endif

/* test_chat_builtin.c — lorac's built-in chat templates and Axolotl's rules for choosing one.
 *
 * Each built-in (data/chat_templates/<name>.jinja, whose text it must be) must render every
 * case of tests/fixtures/chat_templates/builtin_<name>.json — Axolotl's template of that name
 * rendered by transformers (scripts/make_chat_builtin_fixtures.py) — byte-identically, or fail
 * with the same raise_exception message; the engine must render Axolotl's own text too. Then
 * lc_chat_template_resolve (tokenizer_default, the fallback, jinja from text and from a file,
 * unknown names) and lc_chat_template_from_model_dir (chat_template.jinja, a string, a list of
 * templates, malformed configs). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "data/chat_builtin.h"
#include "tests/chat_fixture.h"
#include "tests/helpers.h"

/* renders builtin_<name>.json with lorac's own text for name, and with Axolotl's (the
 * fixture's template: the engine must render the reference too) */
static void run_builtin(const char *name)
{
    const char *text = lc_chat_builtin(name);
    cr_assert(text, "no built-in %s", name);
    char *family = lc_test_asprintf("builtin_%s", name);
    cr_assert_gt(lc_test_chat_fixture(family, text), 7, "%s: too few cases", family);
    lc_test_chat_fixture(family, NULL);
    free(family);
    char *path = lc_test_asprintf("%s/data/chat_templates/%s.jinja", LORAC_SOURCE_DIR, name);
    char *file = lc_test_read_file(path, NULL);
    cr_assert_str_eq(text, file, "%s: the compiled-in text is not the file's", name);
    free(file);
    free(path);
}

/* every compiled-in template (the table is the list) against its fixture */
Test(chat_builtin, renders_like_axolotl)
{
    cr_assert_geq(lc_chat_builtin_count(), 28);
    for (size_t i = 0; i < lc_chat_builtin_count(); i++)
        run_builtin(lc_chat_builtin_name(i));
    cr_assert_null(lc_chat_builtin_name(lc_chat_builtin_count()));
    cr_assert_null(lc_chat_builtin("nope"));
    cr_assert_null(lc_chat_builtin(NULL));
}

/* resolves with no file involved; returns the text (NULL with err on failure) */
static const char *resolve(const char *choice, const char *jinja, const char *own, lc_error *err)
{
    const char *text;
    char *owned;
    if (lc_chat_template_resolve(choice, jinja, own, &text, &owned, err))
        return NULL;
    cr_assert_null(owned);
    return text;
}

Test(chat_resolve, builtin_and_unknown_names)
{
    lc_error err = {{0}};
    cr_assert_eq(resolve("chatml", NULL, "own", &err), lc_chat_builtin("chatml"));
    cr_assert_null(resolve("chatml2", NULL, "own", &err));
    lc_test_assert_msg_has(&err, "unknown chat_template 'chatml2' (built-in: alpaca, chatml, ");
    lc_test_assert_msg_has(&err, ", or tokenizer_default, "
                                 "tokenizer_default_fallback_<built-in>, jinja)");
    for (size_t i = 0; i < lc_chat_builtin_count(); i++) {
        char *listed = lc_test_asprintf(" %s,", lc_chat_builtin_name(i));
        lc_test_assert_msg_has(&err, listed);
        free(listed);
    }
}

Test(chat_resolve, tokenizer_default)
{
    lc_error err = {{0}};
    cr_assert_str_eq(resolve("tokenizer_default", NULL, "own", &err), "own");
    cr_assert_str_eq(resolve(NULL, NULL, "own", &err), "own");
    cr_assert_str_eq(resolve("", NULL, "own", &err), "own");
    cr_assert_null(resolve("tokenizer_default", NULL, NULL, &err));
    lc_test_assert_msg_has(&err, "no chat_template.jinja, and no chat_template in "
                                 "tokenizer_config.json");
    cr_assert_null(resolve(NULL, NULL, "", &err));
    lc_test_assert_msg_has(&err, "tokenizer_default but the model has no chat template");
}

Test(chat_resolve, fallback)
{
    lc_error err = {{0}};
    cr_assert_str_eq(resolve("tokenizer_default_fallback_chatml", NULL, "own", &err), "own");
    cr_assert_eq(resolve("tokenizer_default_fallback_chatml", NULL, NULL, &err),
                 lc_chat_builtin("chatml"));
    cr_assert_eq(resolve("tokenizer_default_fallback_llama3", NULL, "", &err),
                 lc_chat_builtin("llama3"));
    cr_assert_null(resolve("tokenizer_default_fallback_x", NULL, "own", &err));
    lc_test_assert_msg_has(&err, "unknown chat_template 'x'");
}

Test(chat_resolve, jinja_text_and_file)
{
    lc_error err = {{0}};
    cr_assert_str_eq(resolve("jinja", "{{ messages }}", "own", &err), "{{ messages }}");
    cr_assert_null(resolve("jinja", NULL, "own", &err));
    lc_test_assert_msg_has(&err, "jinja needs chat_template_jinja");
    cr_assert_null(resolve("jinja", "/nonexistent/t.jinja", NULL, &err));
    lc_test_assert_msg_has(&err, "chat_template_jinja: /nonexistent/t.jinja: no such file");

    char *dir = lc_test_tmpdir();
    char *path = lc_test_write_text(dir, "t.jinja", "{{ bos_token }}file");
    const char *text;
    char *owned;
    cr_assert_eq(lc_chat_template_resolve("jinja", path, "own", &text, &owned, &err), 0, "%s",
                 err.msg);
    cr_assert_str_eq(text, "{{ bos_token }}file");
    cr_assert_eq(text, owned);
    free(owned);
    lc_test_rm_rf(dir);
    free(path);
    free(dir);
}

/* lc_chat_template_from_model_dir on a directory holding files (name, text pairs) */
static char *from_dir(const char *const *files, int rc_want, lc_error *err)
{
    char *dir = lc_test_tmpdir();
    for (int i = 0; files[i]; i += 2)
        free(lc_test_write_text(dir, files[i], files[i + 1]));
    char *text = (char *)"unset";
    cr_assert_eq(lc_chat_template_from_model_dir(dir, &text, err), rc_want, "%s", err->msg);
    lc_test_rm_rf(dir);
    free(dir);
    return text;
}

Test(chat_model_dir, where_the_template_comes_from)
{
    lc_error err = {{0}};
    const char *none[] = {NULL};
    cr_assert_null(from_dir(none, 0, &err));
    const char *no_tpl[] = {"tokenizer_config.json", "{\"eos_token\": \"</s>\"}", NULL};
    cr_assert_null(from_dir(no_tpl, 0, &err));
    const char *str[] = {"tokenizer_config.json", "{\"chat_template\": \"{{ a }}\"}", NULL};
    char *t = from_dir(str, 0, &err);
    cr_assert_str_eq(t, "{{ a }}");
    free(t);
    const char *list[] = {"tokenizer_config.json",
                          "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"},"
                          " {\"name\": \"default\", \"template\": \"D\"}]}", NULL};
    t = from_dir(list, 0, &err);
    cr_assert_str_eq(t, "D");
    free(t);
    const char *jinja_wins[] = {"tokenizer_config.json", "{\"chat_template\": \"config\"}",
                                "chat_template.jinja", "file", NULL};
    t = from_dir(jinja_wins, 0, &err);
    cr_assert_str_eq(t, "file");
    free(t);
}

Test(chat_model_dir, malformed)
{
    lc_error err = {{0}};
    const char *no_default[] = {"tokenizer_config.json",
                                "{\"chat_template\": [{\"name\": \"rag\", \"template\": \"R\"}]}",
                                NULL};
    cr_assert_null(from_dir(no_default, -1, &err));
    lc_test_assert_msg_has(&err, "tokenizer_config.json: chat_template lists templates but none "
                                 "named \"default\"");
    const char *bad_type[] = {"tokenizer_config.json", "{\"chat_template\": 3}", NULL};
    cr_assert_null(from_dir(bad_type, -1, &err));
    lc_test_assert_msg_has(&err, "chat_template must be a string or a list");
    const char *bad_json[] = {"tokenizer_config.json", "{\"chat_template\": ", NULL};
    cr_assert_null(from_dir(bad_json, -1, &err));
    lc_test_assert_msg_has(&err, "tokenizer_config.json: not a JSON object");
}

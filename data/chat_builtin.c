/* chat_builtin.c — the built-in chat templates and Axolotl's rules for choosing one.
 *
 * The texts come from data/chat_templates/<name>.jinja through chat_builtin_texts.h, which
 * CMakeLists.txt generates (a byte array per file and LC_CHAT_BUILTIN_TABLE, sorted by name),
 * so the binary needs no template file at run time and the file names are the only list of
 * names. The rules mirror axolotl/utils/chat_templates/base.py (get_chat_template, 0.19);
 * see chat_builtin.h. */
#include "data/chat_builtin.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "chat_builtin_texts.h"
#include "data/tok_util.h"
#include "train/fsutil.h"

#define CHOICE_DEFAULT "tokenizer_default"
#define CHOICE_FALLBACK "tokenizer_default_fallback_"
#define CHOICE_JINJA "jinja"
#define MAX_TEMPLATE_FILE (16u << 20) /* bytes of a .jinja or tokenizer_config.json */

typedef struct builtin {
    const char *name;
    const char *text;
} builtin;

static const builtin table[] = {LC_CHAT_BUILTIN_TABLE};
#define N_BUILTINS (sizeof table / sizeof table[0])

const char *lc_chat_builtin(const char *name)
{
    for (size_t i = 0; name && i < N_BUILTINS; i++)
        if (!strcmp(table[i].name, name))
            return table[i].text;
    return NULL;
}

size_t lc_chat_builtin_count(void) { return N_BUILTINS; }

const char *lc_chat_builtin_name(size_t i) { return i < N_BUILTINS ? table[i].name : NULL; }

/* "unknown chat_template 'x' (built-in: a, b, ..., or tokenizer_default, ...)" */
static int unknown(const char *name, lc_error *err)
{
    char list[LC_ERROR_MAX / 2] = "", shown[128];
    size_t used = 0;
    for (size_t i = 0; i < N_BUILTINS && used < sizeof list; i++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s, ", table[i].name);
    return lc_error_set(err, "unknown chat_template '%s' (built-in: %s" "or " CHOICE_DEFAULT
                        ", " CHOICE_FALLBACK "<built-in>, " CHOICE_JINJA ")",
                        lc_printable(name, shown, sizeof shown), list);
}

static bool is_regular_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* chat_template: jinja — chat_template_jinja is a file to read or the template itself. A
 * missing "x.jinja" with no Jinja markup is refused: Axolotl would train on the path as text. */
static int from_jinja(const char *jinja, const char **text, char **owned, lc_error *err)
{
    char shown[256];
    if (!jinja || !*jinja)
        return lc_error_set(err, "chat_template: " CHOICE_JINJA " needs chat_template_jinja "
                            "(the template text, or a path to a .jinja file)");
    if (is_regular_file(jinja)) {
        size_t len;
        if (!(*owned = lc_read_file(jinja, MAX_TEMPLATE_FILE, &len, err)))
            return lc_error_prefix(err, "chat_template_jinja");
        *text = *owned;
        return 0;
    }
    if (ends_with(jinja, ".jinja") && !strchr(jinja, '{'))
        return lc_error_set(err, "chat_template_jinja: %s: no such file",
                            lc_printable(jinja, shown, sizeof shown));
    *text = jinja;
    return 0;
}

int lc_chat_template_resolve(const char *chat_template, const char *jinja,
                             const char *tokenizer_text, const char **text, char **owned,
                             lc_error *err)
{
    const char *choice = chat_template && *chat_template ? chat_template : CHOICE_DEFAULT;
    bool has_own = tokenizer_text && *tokenizer_text;
    *text = NULL;
    *owned = NULL;
    if (!strcmp(choice, CHOICE_JINJA))
        return from_jinja(jinja, text, owned, err);
    if (!strcmp(choice, CHOICE_DEFAULT)) {
        if (!has_own)
            return lc_error_set(err, "chat_template: " CHOICE_DEFAULT " but the model has no chat "
                                "template (no chat_template.jinja, and no chat_template in "
                                "tokenizer_config.json); name a built-in or use " CHOICE_JINJA);
        *text = tokenizer_text;
        return 0;
    }
    if (!strncmp(choice, CHOICE_FALLBACK, strlen(CHOICE_FALLBACK))) {
        const char *name = choice + strlen(CHOICE_FALLBACK);
        if (!lc_chat_builtin(name))
            return unknown(name, err);
        *text = has_own ? tokenizer_text : lc_chat_builtin(name);
        return 0;
    }
    if (!(*text = lc_chat_builtin(choice)))
        return unknown(choice, err);
    return 0;
}

/* tokenizer_config.json's chat_template: a string, or [{"name", "template"}...] ("default"). */
static int config_template(const cJSON *v, const char *path, char **text, lc_error *err)
{
    if (!v || cJSON_IsNull(v))
        return 0;
    if (cJSON_IsString(v))
        return (*text = lc_tok_dup(v->valuestring, strlen(v->valuestring), err)) ? 0 : -1;
    if (!cJSON_IsArray(v))
        return lc_error_set(err, "%s: chat_template must be a string or a list of "
                            "{\"name\", \"template\"}", path);
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name");
        const cJSON *tpl = cJSON_GetObjectItemCaseSensitive(e, "template");
        if (!cJSON_IsString(name) || !cJSON_IsString(tpl))
            return lc_error_set(err, "%s: chat_template: every entry needs a string \"name\" "
                                "and \"template\"", path);
        if (!strcmp(name->valuestring, "default"))
            return (*text = lc_tok_dup(tpl->valuestring, strlen(tpl->valuestring), err)) ? 0 : -1;
    }
    return lc_error_set(err, "%s: chat_template lists templates but none named \"default\"", path);
}

int lc_chat_template_from_model_dir(const char *dir, char **text, lc_error *err)
{
    char path[4096];
    size_t len;
    *text = NULL;
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    if (lc_path_exists(path))
        return (*text = lc_read_file(path, MAX_TEMPLATE_FILE, &len, err)) ? 0 : -1;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    if (!lc_path_exists(path))
        return 0;
    cJSON *cfg = lc_read_json_object(path, MAX_TEMPLATE_FILE, err);
    if (!cfg)
        return -1;
    int rc = config_template(cJSON_GetObjectItemCaseSensitive(cfg, "chat_template"), path, text,
                             err);
    cJSON_Delete(cfg);
    return rc;
}

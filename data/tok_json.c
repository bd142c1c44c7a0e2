/* tok_json.c — reading tokenizer.json / tokenizer_config.json members with
 * the JSON path in every message (see tok_json.h). */
#include "data/tok_json.h"

#include <stdio.h>
#include <string.h>

#include "data/tok_util.h"

int lc_tj_type_error(lc_error *err, const char *where, const char *path, const char *want)
{
    return lc_error_set(err, "%s: %s must be %s", where, path, want);
}

/* Member key of o in *v (NULL when absent or null); an error when it is
 * there but is_type says it is not what want names. */
static int member(const cJSON *o, const char *key, cJSON_bool (*is_type)(const cJSON *),
                  const char *want, const cJSON **v, const char *where, const char *path,
                  lc_error *err)
{
    *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!*v || cJSON_IsNull(*v)) {
        *v = NULL;
        return 0;
    }
    if (!is_type(*v))
        return lc_error_set(err, "%s: %s.%s must be %s", where, path, key, want);
    return 0;
}

/* Optional bool member: *out unchanged when absent or null. */
int lc_tj_bool(const cJSON *o, const char *key, bool *out, const char *where,
                    const char *path, lc_error *err)
{
    const cJSON *v;
    int rc = member(o, key, cJSON_IsBool, "true or false", &v, where, path, err);
    if (v && !rc)
        *out = cJSON_IsTrue(v);
    return rc;
}

/* Optional string member (NULL when absent or null). */
int lc_tj_str(const cJSON *o, const char *key, const char **out, const char *where,
                   const char *path, lc_error *err)
{
    const cJSON *v;
    *out = NULL;
    if (member(o, key, cJSON_IsString, "a string", &v, where, path, err))
        return -1;
    if (v)
        *out = v->valuestring;
    return 0;
}

int lc_tj_need_str(const cJSON *o, const char *key, const char **out, const char *where,
                    const char *path, lc_error *err)
{
    if (lc_tj_str(o, key, out, where, path, err))
        return -1;
    if (!*out)
        return lc_error_set(err, "%s: %s.%s is missing", where, path, key);
    return 0;
}

/* Whether v is an integer number in [lo, hi] (range checked before any
 * conversion: a huge double does not fit a long long); the value in *out. */
int lc_tj_int(const cJSON *v, long long lo, long long hi, long long *out)
{
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= (double)lo && v->valuedouble <= (double)hi))
        return 0;
    *out = (long long)v->valuedouble;
    return (double)*out == v->valuedouble;
}

int lc_tj_get_int(const cJSON *o, const char *key, long long lo, long long hi, long long *out,
                   const char *where, const char *path, lc_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!lc_tj_int(v, lo, hi, out))
        return lc_error_set(err, "%s: %s.%s must be an integer in [%lld, %lld]", where, path,
                            key, lo, hi);
    return 0;
}

const char *lc_tj_type(const cJSON *o, const char *where, const char *path, lc_error *err)
{
    const char *type;
    if (!cJSON_IsObject(o)) {
        lc_tj_type_error(err, where, path, "an object");
        return NULL;
    }
    if (lc_tj_need_str(o, "type", &type, where, path, err))
        return NULL;
    return type;
}

int lc_tj_unsupported(lc_error *err, const char *where, const char *path, const char *what)
{
    char buf[64];
    return lc_error_set(err, "%s: %s: unsupported \"%s\"", where, path,
                        lc_printable(what, buf, sizeof buf));
}

/* A pattern object {"String": s} or {"Regex": r}; sets exactly one. */
int lc_tj_pattern(const cJSON *o, const char **str, const char **regex, const char *where,
                       const char *path, lc_error *err)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "pattern");
    char sub[256];
    snprintf(sub, sizeof sub, "%s.pattern", path);
    if (!cJSON_IsObject(p))
        return lc_tj_type_error(err, where, sub, "an object {\"String\": ...} or {\"Regex\": ...}");
    if (lc_tj_str(p, "String", str, where, sub, err) || lc_tj_str(p, "Regex", regex, where, sub, err))
        return -1;
    if (!*str == !*regex)
        return lc_tj_type_error(err, where, sub, "an object {\"String\": ...} or {\"Regex\": ...}");
    return 0;
}

/* A Replace step's {"pattern": {"String": a}, "content": b} into owned *a, *b. */
int lc_tj_replace(const cJSON *o, char **a, char **b, const char *where, const char *path,
                        lc_error *err)
{
    const char *s, *re, *c;
    char sub[256];
    if (lc_tj_pattern(o, &s, &re, where, path, err) || lc_tj_need_str(o, "content", &c, where, path, err))
        return -1;
    snprintf(sub, sizeof sub, "%s.pattern.Regex", path);
    if (re)
        return lc_tj_unsupported(err, where, sub, "regex pattern of Replace");
    if (!*s)
        return lc_error_set(err, "%s: %s.pattern.String is empty", where, path);
    if (!(*a = lc_tok_dup(s, strlen(s), err)) || !(*b = lc_tok_dup(c, strlen(c), err)))
        return -1;
    return 0;
}

/* A string member that must hold exactly one character. */
int lc_tj_char(const cJSON *o, const char *key, const char **out, const char *where,
                     const char *path, lc_error *err)
{
    size_t cl;
    if (lc_tj_need_str(o, key, out, where, path, err))
        return -1;
    if (!**out || (lc_utf8_decode(*out, strlen(*out), &cl), cl != strlen(*out)))
        return lc_error_set(err, "%s: %s.%s must be one character", where, path, key);
    return 0;
}

/* Metaspace's prepend_scheme ("always", "first", "never"), or for older
 * files its add_prefix_space (true: always). */
int lc_tj_scheme(const cJSON *o, enum lc_prepend_scheme *out, const char *where,
                      const char *path, lc_error *err)
{
    const char *scheme;
    bool prefix = true;
    char sub[256];
    if (lc_tj_str(o, "prepend_scheme", &scheme, where, path, err) ||
        lc_tj_bool(o, "add_prefix_space", &prefix, where, path, err))
        return -1;
    *out = prefix ? LC_PREPEND_ALWAYS : LC_PREPEND_NEVER;
    if (!scheme)
        return 0;
    snprintf(sub, sizeof sub, "%s.prepend_scheme", path);
    if (strcmp(scheme, "always") == 0)
        *out = LC_PREPEND_ALWAYS;
    else if (strcmp(scheme, "first") == 0)
        *out = LC_PREPEND_FIRST;
    else if (strcmp(scheme, "never") == 0)
        *out = LC_PREPEND_NEVER;
    else
        return lc_tj_unsupported(err, where, sub, scheme);
    return 0;
}

/* Loads o at path: null (nothing), {"type": "Sequence", list_key: [...]} (each
 * element in turn, nested sequences flattened) or one step given to one. */
int lc_tj_chain(void *ctx, const cJSON *o, const char *list_key, lc_tj_step_fn one,
                      const char *where, const char *path, lc_error *err)
{
    if (!o || cJSON_IsNull(o))
        return 0;
    const char *type = lc_tj_type(o, where, path, err);
    if (!type)
        return -1;
    if (strcmp(type, "Sequence") != 0)
        return one(ctx, o, type, where, path, err);
    char sub[256];
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, list_key);
    snprintf(sub, sizeof sub, "%s.%s", path, list_key);
    if (!cJSON_IsArray(list))
        return lc_tj_type_error(err, where, sub, "an array");
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, list) {
        snprintf(sub, sizeof sub, "%s.%s[%d]", path, list_key, i++);
        if (lc_tj_chain(ctx, e, list_key, one, where, sub, err))
            return -1;
    }
    return 0;
}

/* run_record.c — see run_record.h. */
#include "train/run_record.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "autograd/hash.h"

#define VALUE_MAX 2048

static void hex64(uint64_t v, char *buf)
{
    snprintf(buf, LC_RUN_IDENTITY_CHARS, "%016" PRIx64, v);
}

cJSON *lc_run_record_make(const lc_train_config *cfg, const lc_modelprint *mp,
                          const lc_fileprint *data, const lc_fileprint *tokenizer)
{
    cJSON *rec = cJSON_CreateObject(), *settings = cJSON_CreateObject();
    cJSON *model = cJSON_CreateObject(), *sets = cJSON_CreateArray();
    char value[VALUE_MAX], hex[LC_RUN_IDENTITY_CHARS];
    bool ok = rec && settings && model && sets;
    uint64_t id = 0x6c6f726163ull; /* "lorac" */
    for (int i = 0; ok && i < lc_train_config_key_count(); i++) {
        const char *name;
        lc_resume_class k = lc_train_config_key(i, &name);
        if (k == LC_RESUME_NA)
            continue;
        lc_train_config_value(cfg, i, value, sizeof value);
        ok = cJSON_AddStringToObject(settings, name, value) != NULL;
        if (k == LC_RESUME_FIXED) {
            id = lc_hash_text(id, name);
            id = lc_hash_text(id, value);
        }
    }
    hex64(mp->hash, hex);
    id = lc_hash_text(id, hex);
    ok = ok && cJSON_AddStringToObject(model, "path", cfg->base_model) &&
         cJSON_AddStringToObject(model, "fingerprint", hex);
    for (int i = 0; ok && i < cfg->n_datasets; i++) {
        cJSON *d = cJSON_CreateObject();
        ok = d && cJSON_AddItemToArray(sets, d);
        hex64(data[i].hash, hex);
        char format[VALUE_MAX];
        lc_dataset_spec_describe(&cfg->dataset_specs[i], format, sizeof format);
        if (cfg->dataset_specs[i].type != LC_DS_TOKENIZED) {
            char tok[LC_RUN_IDENTITY_CHARS] = "none";
            if (tokenizer)
                hex64(tokenizer->hash, tok);
            size_t used = strlen(format);
            snprintf(format + used, sizeof format - used, ", tokenizer %s", tok);
        }
        ok = ok && cJSON_AddStringToObject(d, "path", cfg->datasets[i]) &&
             cJSON_AddNumberToObject(d, "size", (double)data[i].size) &&
             cJSON_AddStringToObject(d, "hash", hex) &&
             cJSON_AddStringToObject(d, "format", format);
    }
    hex64(id, hex);
    if (ok && cJSON_AddStringToObject(rec, "identity", hex) &&
        cJSON_AddItemToObject(rec, "base_model", model)) {
        model = NULL;
        if (cJSON_AddItemToObject(rec, "datasets", sets)) {
            sets = NULL;
            if (cJSON_AddItemToObject(rec, "settings", settings))
                return rec;
        }
    }
    cJSON_Delete(settings);
    cJSON_Delete(sets);
    cJSON_Delete(model);
    cJSON_Delete(rec);
    return NULL;
}

static const char *str_of(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

const char *lc_run_record_identity(const cJSON *rec)
{
    return str_of(rec, "identity");
}

/* Appends "sep + text" to buf (cut, never overflowing). */
__attribute__((format(printf, 3, 4)))
static void append(char *buf, size_t n, const char *fmt, ...)
{
    size_t l = strlen(buf);
    if (l + 1 >= n)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + l, n - l, fmt, ap);
    va_end(ap);
}

static void compare_settings(const cJSON *saved, const cJSON *now, char *fixed, size_t nf,
                             char *changes, size_t nc)
{
    const cJSON *ss = cJSON_GetObjectItemCaseSensitive(saved, "settings");
    const cJSON *ns = cJSON_GetObjectItemCaseSensitive(now, "settings");
    for (int i = 0; i < lc_train_config_key_count(); i++) {
        const char *name;
        lc_resume_class k = lc_train_config_key(i, &name);
        const char *a = str_of(ss, name), *b = str_of(ns, name);
        if (k == LC_RESUME_NA || !b || (a && strcmp(a, b) == 0))
            continue;
        if (k == LC_RESUME_FIXED)
            append(fixed, nf, "%s%s %s -> %s", *fixed ? ", " : "", name,
                   a ? a : "(not recorded)", b);
        else
            append(changes, nc, "%s %s -> %s\n", name, a ? a : "(not recorded)", b);
    }
    const cJSON *sm = cJSON_GetObjectItemCaseSensitive(saved, "base_model");
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(now, "base_model");
    const char *sf = str_of(sm, "fingerprint"), *nf_ = str_of(nm, "fingerprint");
    if (!sf || !nf_ || strcmp(sf, nf_) != 0)
        append(fixed, nf, "%sbase_model %s -> %s (model files with fingerprint %s -> %s)",
               *fixed ? ", " : "", str_of(sm, "path") ? str_of(sm, "path") : "(not recorded)",
               str_of(nm, "path") ? str_of(nm, "path") : "?", sf ? sf : "none",
               nf_ ? nf_ : "none");
}

/* One "datasets[i] ..." description per dataset that differs, in buf. */
static void compare_data(const cJSON *saved, const cJSON *now, char *buf, size_t n,
                         const char *sep)
{
    const cJSON *sd = cJSON_GetObjectItemCaseSensitive(saved, "datasets");
    const cJSON *nd = cJSON_GetObjectItemCaseSensitive(now, "datasets");
    int ns = cJSON_GetArraySize(sd), nn = cJSON_GetArraySize(nd);
    if (!cJSON_IsArray(sd) || ns != nn) {
        append(buf, n, "%s%d dataset%s -> %d", *buf ? sep : "", cJSON_IsArray(sd) ? ns : 0,
               lc_plural(ns), nn);
        return;
    }
    for (int i = 0; i < nn; i++) {
        const cJSON *a = cJSON_GetArrayItem(sd, i), *b = cJSON_GetArrayItem(nd, i);
        const cJSON *sa = cJSON_GetObjectItemCaseSensitive(a, "size");
        const cJSON *sb = cJSON_GetObjectItemCaseSensitive(b, "size");
        const char *ha = str_of(a, "hash"), *hb = str_of(b, "hash");
        double za = cJSON_IsNumber(sa) ? sa->valuedouble : -1;
        double zb = cJSON_IsNumber(sb) ? sb->valuedouble : -1;
        const char *fa = str_of(a, "format"), *fb = str_of(b, "format");
        if (!fa || !fb || strcmp(fa, fb) != 0) {
            append(buf, n, "%sdatasets[%d] read as %s -> %s", *buf ? sep : "", i,
                   fa ? fa : "(not recorded)", fb ? fb : "(not recorded)");
            continue;
        }
        if (ha && hb && strcmp(ha, hb) == 0 && za == zb)
            continue;
        append(buf, n, "%sdatasets[%d] %s -> %s (%.0f bytes, content hash %s -> %.0f bytes, "
               "content hash %s)", *buf ? sep : "", i,
               str_of(a, "path") ? str_of(a, "path") : "?", str_of(b, "path"), za,
               ha ? ha : "none", zb, hb ? hb : "none");
    }
}

int lc_run_record_check(const cJSON *saved, const cJSON *now, bool allow_data,
                        const char *where, char *changes, size_t n, lc_error *err)
{
    char fixed[LC_ERROR_MAX] = "", data[LC_ERROR_MAX] = "";
    changes[0] = '\0';
    if (!cJSON_IsObject(saved))
        return lc_error_set(err, "%s has no run record (it was written by an older lorac), so "
                            "whether it belongs to this run cannot be checked", where);
    compare_settings(saved, now, fixed, sizeof fixed, changes, n);
    if (*fixed)
        return lc_error_set(err, "%s was trained with other settings: %s (these keys define "
                            "the saved adapter and optimizer state; configs/README.md, "
                            "\"Resuming\", lists what a resume may change)", where, fixed);
    compare_data(saved, now, data, sizeof data, allow_data ? "\n" : ", ");
    if (*data && !allow_data)
        return lc_error_set(err, "the training data changed since %s: %s (set "
                            "resume_allow_data_change: true to resume on the new data)",
                            where, data);
    if (*data)
        append(changes, n, "%s (resume_allow_data_change: true)\n", data);
    return 0;
}

/* tok_json.h — reading the members of an untrusted tokenizer.json or
 * tokenizer_config.json (cJSON) so that every refusal is one line naming
 * the file (where) and the JSON path of the construct (path, e.g.
 * "pre_tokenizer.pretokenizers[0]"): "WHERE: PATH.KEY must be ...",
 * "WHERE: PATH: unsupported \"X\"". Optional members read as absent when
 * missing or null. All return 0, or -1 with err set. */
#ifndef LC_TOK_JSON_H
#define LC_TOK_JSON_H

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "autograd/error.h"

/* Metaspace's prepend_scheme (pre-tokenizer and decoder). */
enum lc_prepend_scheme { LC_PREPEND_ALWAYS, LC_PREPEND_FIRST, LC_PREPEND_NEVER };

/* "WHERE: PATH must be WANT". */
int lc_tj_type_error(lc_error *err, const char *where, const char *path, const char *want);
/* "WHERE: PATH: unsupported \"WHAT\"". */
int lc_tj_unsupported(lc_error *err, const char *where, const char *path, const char *what);
/* Optional bool member (*out unchanged when absent). */
int lc_tj_bool(const cJSON *o, const char *key, bool *out, const char *where, const char *path,
               lc_error *err);
/* Optional string member (*out NULL when absent; points into o). */
int lc_tj_str(const cJSON *o, const char *key, const char **out, const char *where,
              const char *path, lc_error *err);
/* Required string member. */
int lc_tj_need_str(const cJSON *o, const char *key, const char **out, const char *where,
                   const char *path, lc_error *err);
/* Required string member of exactly one character. */
int lc_tj_char(const cJSON *o, const char *key, const char **out, const char *where,
               const char *path, lc_error *err);
/* 1 when v is an integer in [lo, hi] (checked before any conversion), value in *out. */
int lc_tj_int(const cJSON *v, long long lo, long long hi, long long *out);
/* Optional integer member in [lo, hi] (*out unchanged when absent). */
int lc_tj_get_int(const cJSON *o, const char *key, long long lo, long long hi, long long *out,
                  const char *where, const char *path, lc_error *err);
/* The "type" of object o (NULL with err set when o is no object or has none). */
const char *lc_tj_type(const cJSON *o, const char *where, const char *path, lc_error *err);
/* o's "pattern": {"String": s} or {"Regex": r}; exactly one of *str, *regex is set. */
int lc_tj_pattern(const cJSON *o, const char **str, const char **regex, const char *where,
                  const char *path, lc_error *err);
/* A Replace step's {"pattern": {"String": a}, "content": b} into owned *a, *b
 * (a regex pattern is refused). */
int lc_tj_replace(const cJSON *o, char **a, char **b, const char *where, const char *path,
                  lc_error *err);
/* Metaspace's prepend_scheme, or for older files add_prefix_space (true: always). */
int lc_tj_scheme(const cJSON *o, enum lc_prepend_scheme *out, const char *where,
                 const char *path, lc_error *err);

/* Loads one step of a chain: o is an object whose "type" is type (never "Sequence"). */
typedef int (*lc_tj_step_fn)(void *ctx, const cJSON *o, const char *type, const char *where,
                             const char *path, lc_error *err);
/* Loads o at path: null (nothing), {"type": "Sequence", list_key: [...]} (each
 * element in turn, nested sequences flattened) or one step given to one. */
int lc_tj_chain(void *ctx, const cJSON *o, const char *list_key, lc_tj_step_fn one,
                const char *where, const char *path, lc_error *err);

#endif

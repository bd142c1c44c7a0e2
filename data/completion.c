/* completion.c — one completion row → token ids (see completion.h). */
#include "data/completion.h"

#include <cjson/cJSON.h>

#include "data/text_jsonl.h"

int lc_completion_encode(lc_tokenizer *t, const char *line, size_t n, const char *field,
                         const char *where, int64_t vocab, int64_t max_len, lc_ids *out,
                         bool *truncated, lc_error *err)
{
    *truncated = false;
    out->n = 0;
    const char *text;
    size_t len;
    cJSON *owner;
    if (lc_text_row_parse(line, n, field, where, &text, &len, &owner, err))
        return -1;
    if (len == 0) {
        cJSON_Delete(owner);
        return lc_error_set(err, "%s: \"%s\" is empty (a completion row needs text; remove "
                            "the row)", where, field);
    }
    int rc = lc_tokenizer_encode_truncated(t, text, len, (size_t)max_len, out, truncated, err);
    cJSON_Delete(owner);
    if (rc)
        return lc_error_prefix(err, "%s: \"%s\"", where, field);
    int32_t eos = lc_tokenizer_eos(t);
    if (eos < 0)
        return lc_error_set(err, "%s: the tokenizer has no eos_token (tokenizer_config.json), "
                            "which completion rows end with", where);
    if (!*truncated && (int64_t)out->n < max_len && (out->n == 0 || out->v[out->n - 1] != eos)) {
        if (lc_ids_push(out, eos, err))
            return -1;
    }
    if (out->n == 0)
        return lc_error_set(err, "%s: \"%s\" gives no tokens", where, field);
    for (size_t i = 0; i < out->n; i++)
        if (out->v[i] < 0 || out->v[i] >= vocab)
            return lc_error_set(err, "%s: token id %d (token %zu of the row) is outside the "
                                "model's vocab_size %lld: the tokenizer does not belong to "
                                "the model", where, (int)out->v[i], i, (long long)vocab);
    return 0;
}

/* gen_text.c — prompts, stop ids and streamed text of generation (see gen_text.h). */
#include "train/gen_text.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/chat_builtin.h"
#include "data/chat_rows.h"
#include "train/fsutil.h"
#include "train/gguf_model.h"
#include "train/gguf_vocab.h"

static void stop_add(lc_gen_stops *s, int32_t id)
{
    if (id < 0 || lc_gen_stops_has(s, id) || s->n == LC_GEN_MAX_STOP)
        return;
    s->ids[s->n++] = id;
}

bool lc_gen_stops_has(const lc_gen_stops *s, int32_t id)
{
    for (int i = 0; i < s->n; i++)
        if (s->ids[i] == id)
            return true;
    return false;
}

/* eos_token_id of DIR/name (an int or a list of ints) into s; *found tells
 * whether the file exists. */
static int eos_from_json(const char *dir, const char *name, lc_gen_stops *s, bool *found,
                         lc_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    *found = lc_path_exists(path);
    if (!*found)
        return 0;
    cJSON *o = lc_read_json_object(path, 16u << 20, err);
    if (!o)
        return -1;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "eos_token_id");
    int rc = 0;
    if (cJSON_IsNumber(e)) {
        stop_add(s, (int32_t)e->valuedouble);
    } else if (cJSON_IsArray(e)) {
        const cJSON *x;
        cJSON_ArrayForEach(x, e) {
            if (!cJSON_IsNumber(x)) {
                rc = lc_error_set(err, "%s: eos_token_id: expected integers", path);
                break;
            }
            stop_add(s, (int32_t)x->valuedouble);
        }
    } else if (e && !cJSON_IsNull(e)) {
        rc = lc_error_set(err, "%s: eos_token_id: expected an integer or a list of them", path);
    }
    cJSON_Delete(o);
    return rc;
}

int lc_gen_tokenizer_load(const char *model, bool optional, lc_tokenizer **tok, lc_error *err)
{
    char buf[4200], path[4300];
    const char *dir = lc_model_tokenizer_dir(model, buf, sizeof buf);
    *tok = NULL;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (lc_path_exists(path) || dir == model) {
        if (optional && !lc_path_exists(path))
            return 0;
        return lc_tokenizer_load(tok, dir, err);
    }
    if (optional) { /* a GGUF file without tokenizer.ggml.* keys: ids only */
        lc_gguf_file f;
        if (lc_gguf_open(&f, model, err))
            return -1;
        bool has = lc_gguf_find_kv(&f, "tokenizer.ggml.model") != NULL;
        lc_gguf_close(&f);
        if (!has)
            return 0;
    }
    return lc_gguf_tokenizer_load(tok, model, err)
               ? lc_error_prefix(err, "%s (no tokenizer.json next to it)", model)
               : 0;
}

int lc_gen_stops_load(lc_gen_stops *s, const char *model, lc_tokenizer *tok, lc_error *err)
{
    bool found;
    char buf[4200];
    const char *dir = lc_model_tokenizer_dir(model, buf, sizeof buf);
    s->n = 0;
    if (tok)
        stop_add(s, lc_tokenizer_eos(tok));
    if (eos_from_json(dir, "generation_config.json", s, &found, err))
        return -1;
    if (!found && eos_from_json(dir, "config.json", s, &found, err))
        return -1;
    return 0;
}

int lc_gen_template_open(const char *model, const char *chat_template, lc_chat_template **tpl,
                         lc_error *err)
{
    char *own = NULL, *owned = NULL, buf[4200];
    const char *text = NULL, *dir = lc_model_tokenizer_dir(model, buf, sizeof buf);
    *tpl = NULL;
    int rc = lc_chat_template_from_model_dir(dir, &own, err);
    if (!rc && !own && dir != model) /* a GGUF file's tokenizer.chat_template */
        rc = lc_gguf_chat_template(model, &own, err);
    if (!rc)
        rc = lc_chat_template_resolve(chat_template, NULL, own, &text, &owned, err);
    if (!rc && !text)
        rc = lc_error_set(err, "%s has no chat template: name a built-in one (chatml, llama3, "
                          "...)", model);
    if (!rc)
        rc = lc_chat_template_parse(text, strlen(text), tpl, err);
    free(owned);
    free(own);
    return rc;
}

int lc_gen_prompt(const lc_chat_template *tpl, lc_tokenizer *tok, const cJSON *messages,
                  lc_ids *ids, lc_error *err)
{
    cJSON *ctx = lc_chat_context_new(tok, messages, true, NULL);
    char *text = NULL;
    size_t len;
    if (!ctx)
        return lc_error_set(err, "out of memory");
    int rc = lc_chat_template_render(tpl, ctx, NULL, &text, &len, err);
    cJSON_Delete(ctx);
    if (!rc)
        rc = lc_tokenizer_encode(tok, text, len, false, ids, err);
    free(text);
    return rc;
}

void lc_gen_stream_init(lc_gen_stream *s, lc_tokenizer *tok, lc_text_sink sink, void *user)
{
    *s = (lc_gen_stream){.tok = tok, .sink = sink, .user = user};
}

static int stream_flush(lc_gen_stream *s, bool final, lc_error *err)
{
    char *text;
    size_t len;
    if (lc_tokenizer_decode(s->tok, s->ids.v, s->ids.n, &text, &len, err))
        return -1;
    size_t safe = len;
    while (!final && safe >= 3 && memcmp(text + safe - 3, "\xef\xbf\xbd", 3) == 0)
        safe -= 3;
    if (safe > s->done) {
        s->sink(s->user, text + s->done, safe - s->done);
        s->done = safe;
    }
    free(text);
    return 0;
}

int lc_gen_stream_push(lc_gen_stream *s, int32_t id, lc_error *err)
{
    return lc_ids_push(&s->ids, id, err) || stream_flush(s, false, err) ? -1 : 0;
}

int lc_gen_stream_finish(lc_gen_stream *s, lc_error *err)
{
    return stream_flush(s, true, err);
}

void lc_gen_stream_free(lc_gen_stream *s)
{
    lc_ids_free(&s->ids);
    s->done = 0;
}

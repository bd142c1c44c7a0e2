/* generate_cmd.c — `lorac generate` (see generate_cmd.h). */
#include "train/generate_cmd.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "data/chat_builtin.h"
#include "data/chat_template.h"
#include "data/tokenizer.h"
#include "train/fsutil.h"
#include "train/generate.h"

#define MAX_STOP 64
#define MAX_MESSAGES_BYTES (64u << 20)

typedef struct stop_set {
    int32_t ids[MAX_STOP];
    int n;
} stop_set;

static void stop_add(stop_set *s, int32_t id)
{
    for (int i = 0; i < s->n; i++)
        if (s->ids[i] == id)
            return;
    if (id >= 0 && s->n < MAX_STOP)
        s->ids[s->n++] = id;
}

/* eos_token_id of DIR/name (an int or a list of ints) into s; *found tells
 * whether the file exists. */
static int eos_from_json(const char *dir, const char *name, stop_set *s, bool *found,
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

/* The render context of --messages: the list, add_generation_prompt true and
 * the tokenizer's special tokens as variables (as apply_chat_template). */
static cJSON *messages_context(const char *path, lc_tokenizer *tok, lc_error *err)
{
    size_t n;
    char *text = lc_read_file(path, MAX_MESSAGES_BYTES, &n, err);
    if (!text)
        return NULL;
    cJSON *msgs = cJSON_ParseWithLength(text, n);
    free(text);
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0) {
        cJSON_Delete(msgs);
        lc_error_set(err, "%s: expected a non-empty JSON list of {\"role\", \"content\"}", path);
        return NULL;
    }
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        if (!cJSON_IsObject(m) ||
            !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(m, "role"))) {
            cJSON_Delete(msgs);
            lc_error_set(err, "%s: every message must be an object with a string \"role\"", path);
            return NULL;
        }
    }
    cJSON *ctx = cJSON_CreateObject();
    if (!ctx || !cJSON_AddItemToObject(ctx, "messages", msgs) ||
        !cJSON_AddTrueToObject(ctx, "add_generation_prompt")) {
        cJSON_Delete(ctx);
        lc_error_set(err, "out of memory");
        return NULL;
    }
    for (int k = 0; k < LC_SPECIAL_COUNT; k++) {
        int32_t id = lc_tokenizer_special(tok, (lc_special)k);
        size_t len;
        const char *s = id >= 0 ? lc_tokenizer_token_text(tok, id, &len) : NULL;
        char *z = s ? strndup(s, len) : NULL;
        if (s && (!z || !cJSON_AddStringToObject(ctx, lc_special_key((lc_special)k), z))) {
            free(z);
            cJSON_Delete(ctx);
            lc_error_set(err, "out of memory");
            return NULL;
        }
        free(z);
    }
    return ctx;
}

/* The prompt's ids: the text tokenized, the messages rendered and tokenized, or as given. */
static int prompt_ids(const lc_generate_request *q, lc_tokenizer *tok, lc_ids *ids,
                      lc_error *err)
{
    if (q->prompt_ids) {
        for (int64_t i = 0; i < q->n_prompt_ids; i++)
            if (lc_ids_push(ids, q->prompt_ids[i], err))
                return -1;
        return 0;
    }
    if (q->prompt)
        return lc_tokenizer_encode(tok, q->prompt, strlen(q->prompt), true, ids, err);
    char *own = NULL, *owned = NULL, *rendered = NULL;
    const char *tpl_text = NULL;
    lc_chat_template *tpl = NULL;
    int rc = -1;
    size_t len;
    cJSON *ctx = messages_context(q->messages_path, tok, err);
    if (!ctx || lc_chat_template_from_model_dir(q->model_dir, &own, err) ||
        lc_chat_template_resolve(q->chat_template, NULL, own, &tpl_text, &owned, err))
        goto out;
    if (!tpl_text) {
        lc_error_set(err, "%s has no chat template: name a built-in with --chat-template",
                     q->model_dir);
        goto out;
    }
    if (lc_chat_template_parse(tpl_text, strlen(tpl_text), &tpl, err) ||
        lc_chat_template_render(tpl, ctx, NULL, &rendered, &len, err)) {
        lc_error_prefix(err, "%s", q->messages_path);
        goto out;
    }
    rc = lc_tokenizer_encode(tok, rendered, len, false, ids, err);
out:
    free(rendered);
    lc_chat_template_free(tpl);
    free(owned);
    free(own);
    cJSON_Delete(ctx);
    return rc;
}

/* Streaming: the new ids so far (stop ids left out) decoded as a whole, and
 * the bytes of it that are final printed — all but a trailing run of U+FFFD,
 * which is what an incomplete UTF-8 sequence decodes to until its last byte
 * comes. */
typedef struct streamer {
    lc_tokenizer *tok;            /* NULL: ids are printed */
    FILE *out;
    const stop_set *stops;
    lc_ids ids;
    size_t printed;
    lc_error err;
    int failed;
} streamer;

static bool in_stops(const stop_set *s, int32_t id)
{
    for (int i = 0; i < s->n; i++)
        if (s->ids[i] == id)
            return true;
    return false;
}

static void stream_flush(streamer *st, bool final)
{
    char *text;
    size_t len;
    if (lc_tokenizer_decode(st->tok, st->ids.v, st->ids.n, &text, &len, &st->err)) {
        st->failed = 1;
        return;
    }
    size_t safe = len;
    while (!final && safe >= 3 && memcmp(text + safe - 3, "\xef\xbf\xbd", 3) == 0)
        safe -= 3;
    if (safe > st->printed) {
        fwrite(text + st->printed, 1, safe - st->printed, st->out);
        fflush(st->out);
        st->printed = safe;
    }
    free(text);
}

static int on_token(void *user, int32_t id, int64_t index)
{
    streamer *st = user;
    if (in_stops(st->stops, id))
        return 0;
    if (!st->tok) {
        fprintf(st->out, "%s%ld", index ? " " : "", (long)id);
        fflush(st->out);
        return 0;
    }
    if (lc_ids_push(&st->ids, id, &st->err)) {
        st->failed = 1;
        return 1;
    }
    stream_flush(st, false);
    return st->failed;
}

static void add_ids(cJSON *o, const char *key, const int32_t *ids, int64_t n)
{
    cJSON *a = cJSON_AddArrayToObject(o, key);
    for (int64_t i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
}

static int print_json(FILE *out, const lc_ids *prompt, const lc_gen_result *r,
                      lc_tokenizer *tok, const stop_set *stops, lc_error *err)
{
    int64_t n_text = r->n;
    if (r->stopped && n_text > 0 && in_stops(stops, r->ids[n_text - 1]))
        n_text--;
    char *text = NULL;
    size_t len = 0;
    if (tok && lc_tokenizer_decode(tok, r->ids, (size_t)n_text, &text, &len, err))
        return -1;
    cJSON *o = cJSON_CreateObject();
    add_ids(o, "prompt_ids", prompt->v, (int64_t)prompt->n);
    add_ids(o, "ids", r->ids, r->n);
    if (text)
        cJSON_AddStringToObject(o, "text", text);
    else
        cJSON_AddNullToObject(o, "text");
    cJSON_AddStringToObject(o, "stop", r->stopped ? "eos" : "length");
    double total = r->prefill_s + r->decode_s;
    cJSON_AddNumberToObject(o, "tokens_per_s", total > 0 ? (double)r->n / total : 0);
    cJSON_AddNumberToObject(o, "prefill_tokens_per_s",
                            r->prefill_s > 0 ? (double)prompt->n / r->prefill_s : 0);
    cJSON_AddNumberToObject(o, "decode_tokens_per_s",
                            r->decode_s > 0 && r->n > 1 ? (double)(r->n - 1) / r->decode_s : 0);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    free(text);
    if (!s)
        return lc_error_set(err, "out of memory");
    fprintf(out, "%s\n", s);
    free(s);
    return 0;
}

int lc_generate_command(const lc_generate_request *q, FILE *out, FILE *log, lc_error *err)
{
    lc_model m;
    lc_lora lora;
    memset(&lora, 0, sizeof lora);
    lc_tokenizer *tok = NULL;
    lc_generator *g = NULL;
    lc_ids ids = {0};
    lc_gen_result r = {0};
    streamer st = {0};
    stop_set stops = {{0}, 0};
    int rc = -1;
    const lc_model_load_opts lo = {.nf4 = q->nf4, .nf4_blocksize = 64, .nf4_double_quant = true};
    if (lc_model_load_with(&m, q->model_dir, &lo, err))
        return -1;
    if (q->adapter_dir && lc_lora_load_peft(&lora, &m.cfg, q->adapter_dir, err)) {
        lc_error_prefix(err, "adapter %s (for base model %s)", q->adapter_dir, q->model_dir);
        goto out;
    }
    char tj[4200];
    snprintf(tj, sizeof tj, "%s/tokenizer.json", q->model_dir);
    if ((!q->prompt_ids || lc_path_exists(tj)) && lc_tokenizer_load(&tok, q->model_dir, err))
        goto out;
    if (prompt_ids(q, tok, &ids, err))
        goto out;
    if (!q->ignore_eos) {
        bool found;
        if (tok)
            stop_add(&stops, lc_tokenizer_eos(tok));
        if (eos_from_json(q->model_dir, "generation_config.json", &stops, &found, err))
            goto out;
        if (!found && eos_from_json(q->model_dir, "config.json", &stops, &found, err))
            goto out;
    }
    const int64_t n_prompt = (int64_t)ids.n, max_pos = m.cfg.max_position_embeddings;
    if (n_prompt < 1) {
        lc_error_set(err, "the prompt has no tokens");
        goto out;
    }
    if (n_prompt >= max_pos) {
        lc_error_set(err, "the prompt is %lld tokens; the model takes at most %lld "
                     "(max_position_embeddings), with room for a new one", (long long)n_prompt,
                     (long long)max_pos);
        goto out;
    }
    int64_t max_new = q->max_new_tokens > 0 ? q->max_new_tokens : LC_GENERATE_DEFAULT_MAX_NEW;
    if (n_prompt + max_new > max_pos) {
        fprintf(log, "lorac generate: max_new_tokens %lld cut to %lld: the prompt (%lld tokens) "
                "and the new tokens fit in max_position_embeddings %lld\n", (long long)max_new,
                (long long)(max_pos - n_prompt), (long long)n_prompt, (long long)max_pos);
        max_new = max_pos - n_prompt;
    }
    g = lc_generator_new(&m, q->adapter_dir ? &lora : NULL, n_prompt + max_new, err);
    if (!g)
        goto out;
    st = (streamer){.tok = tok, .out = out, .stops = &stops};
    lc_gen_opts go = {.max_new_tokens = max_new, .sampling = q->sampling,
                      .stop_ids = stops.ids, .n_stop = stops.n,
                      .on_token = q->json ? NULL : on_token, .user = &st};
    if (lc_generate(g, ids.v, n_prompt, &go, &r, err))
        goto out;
    if (st.failed) {
        *err = st.err;
        goto out;
    }
    if (q->json) {
        if (print_json(out, &ids, &r, tok, &stops, err))
            goto out;
    } else {
        if (tok)
            stream_flush(&st, true);
        if (st.failed) {
            *err = st.err;
            goto out;
        }
        fputc('\n', out);
    }
    if (fflush(out) != 0) {
        lc_error_set(err, "writing stdout failed");
        goto out;
    }
    fprintf(log, "lorac generate: prompt %lld tokens, %.1f tokens/s (prefill); %lld new tokens "
            "(stop: %s), %.1f tokens/s (decode)\n", (long long)n_prompt,
            r.prefill_s > 0 ? (double)n_prompt / r.prefill_s : 0, (long long)r.n,
            r.stopped ? "eos" : "length",
            r.decode_s > 0 && r.n > 1 ? (double)(r.n - 1) / r.decode_s : 0);
    rc = 0;
out:
    lc_gen_result_free(&r);
    lc_ids_free(&st.ids);
    lc_ids_free(&ids);
    lc_generator_free(g);
    lc_tokenizer_free(tok);
    lc_lora_free(&lora);
    lc_model_free(&m);
    return rc;
}

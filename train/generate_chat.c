/* generate_chat.c — `lorac chat`'s generator (see generate_chat.h). */
#include "train/generate_chat.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "train/fsutil.h"
#include "train/gen_text.h"
#include "train/generate.h"
#include "train/gguf_model.h"

#define CHAT_DEFAULT_MAX_NEW 512
#define CHAT_MAX_CONTEXT 8192     /* positions the KV cache holds (memory bound) */

typedef struct chat_gen {
    lc_model model;
    lc_lora lora;
    bool has_lora;
    lc_tokenizer *tok;
    lc_chat_template *tpl;
    lc_gen_stops stops;
    lc_sampler_opts sampling;
    int64_t max_new;
    lc_generator *gen;        /* made on first use: min(max_position_embeddings, 8192) */
} chat_gen;

/* Sampling of generation_config.json (absent: greedy), then the options given. */
static int sampling_of(const lc_chat_opts *o, lc_sampler_opts *s, lc_error *err)
{
    *s = (lc_sampler_opts){.temperature = 0, .top_k = 0, .top_p = 1, .seed = 0};
    char path[4300], buf[4200];
    snprintf(path, sizeof path, "%s/generation_config.json",
             lc_model_tokenizer_dir(o->model_dir, buf, sizeof buf));
    if (lc_path_exists(path)) {
        cJSON *g = lc_read_json_object(path, 1u << 20, err);
        if (!g)
            return -1;
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(g, "temperature");
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(g, "top_p");
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(g, "top_k");
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(g, "do_sample"))) {
            s->temperature = cJSON_IsNumber(t) ? t->valuedouble : 1.0;
            s->top_p = cJSON_IsNumber(p) ? p->valuedouble : 1.0;
            s->top_k = cJSON_IsNumber(k) ? (int64_t)k->valuedouble : 50; /* HF's default */
        }
        cJSON_Delete(g);
    }
    if (o->temperature >= 0)
        s->temperature = o->temperature;
    if (o->top_p >= 0)
        s->top_p = o->top_p;
    if (o->top_k >= 0)
        s->top_k = o->top_k;
    if (o->has_seed)
        s->seed = o->seed;
    return 0;
}

static void chat_free(chat_gen *c)
{
    lc_generator_free(c->gen);
    lc_chat_template_free(c->tpl);
    lc_tokenizer_free(c->tok);
    if (c->has_lora)
        lc_lora_free(&c->lora);
    lc_model_free(&c->model);
    free(c);
}

/* Streams pieces to the REPL and stops on its cancel flag. */
typedef struct reply_run {
    chat_gen *c;
    lc_gen_stream text;
    void (*on_text)(void *user, const char *piece, size_t n);
    void *user;
    volatile sig_atomic_t *cancel;
    lc_error err;
    int failed;
} reply_run;

static void to_repl(void *user, const char *piece, size_t n)
{
    reply_run *r = user;
    r->on_text(r->user, piece, n);
}

static int on_token(void *user, int32_t id, int64_t index)
{
    (void)index;
    reply_run *r = user;
    if (*r->cancel)
        return 1;
    if (lc_gen_stops_has(&r->c->stops, id))
        return 0;
    r->failed = lc_gen_stream_push(&r->text, id, &r->err) != 0;
    return r->failed || *r->cancel;
}

static int chat_reply(void *ctx, const char *messages_json,
                      void (*on_text)(void *user, const char *piece, size_t n), void *user,
                      volatile sig_atomic_t *cancel, char **reply, lc_error *err)
{
    chat_gen *c = ctx;
    *reply = NULL;
    cJSON *msgs = cJSON_Parse(messages_json);
    lc_ids ids = {0};
    lc_gen_result res = {0};
    reply_run r = {.c = c, .on_text = on_text, .user = user, .cancel = cancel};
    lc_gen_stream_init(&r.text, c->tok, to_repl, &r);
    int rc = -1;
    if (!cJSON_IsArray(msgs)) {
        lc_error_set(err, "chat: the conversation is not a JSON list");
        goto out;
    }
    if (lc_gen_prompt(c->tpl, c->tok, msgs, &ids, err))
        goto out;
    const int64_t max_pos = c->model.cfg.max_position_embeddings;
    const int64_t cap = max_pos < CHAT_MAX_CONTEXT ? max_pos : CHAT_MAX_CONTEXT;
    if ((int64_t)ids.n >= cap) {
        lc_error_set(err, "the conversation is %zu tokens; the model takes %lld: /reset to start "
                     "over", ids.n, (long long)cap);
        goto out;
    }
    if (!c->gen && !(c->gen = lc_generator_new(&c->model, c->has_lora ? &c->lora : NULL, cap,
                                               err)))
        goto out;
    int64_t room = cap - (int64_t)ids.n;
    lc_gen_opts go = {.max_new_tokens = c->max_new < room ? c->max_new : room,
                      .sampling = c->sampling, .stop_ids = c->stops.ids, .n_stop = c->stops.n,
                      .on_token = on_token, .user = &r};
    if (lc_generate(c->gen, ids.v, (int64_t)ids.n, &go, &res, err))
        goto out;
    if (r.failed || lc_gen_stream_finish(&r.text, &r.err)) {
        *err = r.err;
        goto out;
    }
    char *text; /* what was streamed: the new ids less the stop id and any cancelled tail */
    size_t len;
    if (lc_tokenizer_decode(c->tok, r.text.ids.v, r.text.ids.n, &text, &len, err))
        goto out;
    *reply = text;
    rc = 0;
out:
    lc_gen_stream_free(&r.text);
    lc_gen_result_free(&res);
    lc_ids_free(&ids);
    cJSON_Delete(msgs);
    return rc;
}

static int chat_open(const lc_chat_opts *o, lc_chat_backend *b, FILE *log, lc_error *err)
{
    chat_gen *c = calloc(1, sizeof *c);
    if (!c)
        return lc_error_set(err, "out of memory");
    if (lc_model_load_with(&c->model, o->model_dir, &(lc_model_load_opts){0}, err)) {
        free(c);
        return -1;
    }
    int rc = 0;
    if (o->adapter_dir) {
        rc = lc_lora_load_peft(&c->lora, &c->model.cfg, o->adapter_dir, err);
        c->has_lora = rc == 0;
        rc = rc || lc_model_dora_freeze(&c->model, &c->lora, err);
        if (rc)
            lc_error_prefix(err, "adapter %s (for base model %s)", o->adapter_dir, o->model_dir);
    }
    rc = rc || lc_gen_tokenizer_load(o->model_dir, false, &c->tok, err) ||
         lc_gen_template_open(o->model_dir, NULL, &c->tpl, err) ||
         lc_gen_stops_load(&c->stops, o->model_dir, c->tok, err) ||
         sampling_of(o, &c->sampling, err);
    if (rc) {
        chat_free(c);
        return -1;
    }
    c->max_new = o->max_new_tokens > 0 ? o->max_new_tokens : CHAT_DEFAULT_MAX_NEW;
    fprintf(log, "chat: %s%s%s, %s\n", o->model_dir, o->adapter_dir ? " + " : "",
            o->adapter_dir ? o->adapter_dir : "",
            c->sampling.temperature > 0 ? "sampling" : "greedy");
    *b = (lc_chat_backend){.ctx = c, .reply = chat_reply};
    return 0;
}

static void chat_close(lc_chat_backend *b)
{
    chat_free(b->ctx);
    b->ctx = NULL;
}

const lc_chat_backend_ops lc_generate_chat_ops = {chat_open, chat_close};

/* generate_cmd.c — `lorac generate` (see generate_cmd.h). */
#include "train/generate_cmd.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"
#include "train/fsutil.h"
#include "train/gen_text.h"
#include "train/generate.h"

#define MAX_MESSAGES_BYTES (64u << 20)

/* The messages of --messages: a non-empty JSON list of objects with a role. */
static cJSON *read_messages(const char *path, lc_error *err)
{
    size_t n;
    char *text = lc_read_file(path, MAX_MESSAGES_BYTES, &n, err);
    if (!text)
        return NULL;
    cJSON *msgs = cJSON_ParseWithLength(text, n);
    free(text);
    bool ok = cJSON_IsArray(msgs) && cJSON_GetArraySize(msgs) > 0;
    for (const cJSON *m = ok ? msgs->child : NULL; m; m = m->next)
        ok = ok && cJSON_IsObject(m) &&
             cJSON_IsString(cJSON_GetObjectItemCaseSensitive(m, "role"));
    if (!ok) {
        cJSON_Delete(msgs);
        lc_error_set(err, "%s: expected a non-empty JSON list of {\"role\", \"content\"}", path);
        return NULL;
    }
    return msgs;
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
    lc_chat_template *tpl = NULL;
    cJSON *msgs = read_messages(q->messages_path, err);
    int rc = !msgs || lc_gen_template_open(q->model_dir, q->chat_template, &tpl, err) ? -1 : 0;
    if (!rc && lc_gen_prompt(tpl, tok, msgs, ids, err))
        rc = lc_error_prefix(err, "%s", q->messages_path);
    lc_chat_template_free(tpl);
    cJSON_Delete(msgs);
    return rc;
}

/* Streaming to out: text as it becomes final, or ids when there is no tokenizer. */
typedef struct streamer {
    lc_gen_stream text;
    FILE *out;
    const lc_gen_stops *stops;
    lc_error err;
    int failed;
} streamer;

static void to_file(void *user, const char *piece, size_t n)
{
    streamer *st = user;
    fwrite(piece, 1, n, st->out);
    fflush(st->out);
}

static int on_token(void *user, int32_t id, int64_t index)
{
    streamer *st = user;
    if (lc_gen_stops_has(st->stops, id))
        return 0;
    if (!st->text.tok) {
        fprintf(st->out, "%s%ld", index ? " " : "", (long)id);
        fflush(st->out);
        return 0;
    }
    st->failed = lc_gen_stream_push(&st->text, id, &st->err) != 0;
    return st->failed;
}

static void add_ids(cJSON *o, const char *key, const int32_t *ids, int64_t n)
{
    cJSON *a = cJSON_AddArrayToObject(o, key);
    for (int64_t i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
}

static int print_json(FILE *out, const lc_ids *prompt, const lc_gen_result *r,
                      lc_tokenizer *tok, const lc_gen_stops *stops, lc_error *err)
{
    int64_t n_text = r->n;
    if (r->stopped && n_text > 0 && lc_gen_stops_has(stops, r->ids[n_text - 1]))
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
    lc_gen_stops stops = {{0}, 0};
    int rc = -1;
    const lc_model_load_opts lo = {.nf4 = q->nf4, .nf4_blocksize = 64, .nf4_double_quant = true};
    if (lc_model_load_with(&m, q->model_dir, &lo, err))
        return -1;
    if (q->adapter_dir && (lc_lora_load_peft(&lora, &m.cfg, q->adapter_dir, err) ||
                           lc_model_dora_freeze(&m, &lora, err))) {
        lc_error_prefix(err, "adapter %s (for base model %s)", q->adapter_dir, q->model_dir);
        goto out;
    }
    if (lc_gen_tokenizer_load(q->model_dir, q->prompt_ids != NULL, &tok, err))
        goto out;
    if (prompt_ids(q, tok, &ids, err))
        goto out;
    if (!q->ignore_eos && lc_gen_stops_load(&stops, q->model_dir, tok, err))
        goto out;
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
    st = (streamer){.out = out, .stops = &stops};
    lc_gen_stream_init(&st.text, tok, to_file, &st);
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
        if (tok && lc_gen_stream_finish(&st.text, &st.err))
            st.failed = 1;
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
    lc_gen_stream_free(&st.text);
    lc_ids_free(&ids);
    lc_generator_free(g);
    lc_tokenizer_free(tok);
    lc_lora_free(&lora);
    lc_model_free(&m);
    return rc;
}

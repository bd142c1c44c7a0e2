/* samples.c — sample generations during training (see samples.h). */
#include "train/samples.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

/* The ids of prompt p: a user message through the chat template, or raw text. */
static int prompt_ids(lc_samples *s, const lc_chat_template *tpl, const char *p, lc_ids *ids,
                      lc_error *err)
{
    if (!tpl)
        return lc_tokenizer_encode(s->tok, p, strlen(p), true, ids, err);
    cJSON *msgs = cJSON_CreateArray();
    cJSON *m = msgs ? cJSON_CreateObject() : NULL;
    if (m && !cJSON_AddItemToArray(msgs, m)) { /* the list owns m from here on */
        cJSON_Delete(m);
        m = NULL;
    }
    if (!m || !cJSON_AddStringToObject(m, "role", "user") ||
        !cJSON_AddStringToObject(m, "content", p)) {
        cJSON_Delete(msgs);
        return lc_error_set(err, "out of memory");
    }
    int rc = lc_gen_prompt(tpl, s->tok, msgs, ids, err);
    cJSON_Delete(msgs);
    return rc;
}

static int prepare(lc_samples *s, const lc_train_config *c, lc_model *m, const lc_lora *lora,
                   const char *chat_template, lc_error *err)
{
    lc_chat_template *tpl = NULL;
    int rc = chat_template
                 ? lc_chat_template_parse(chat_template, strlen(chat_template), &tpl, err)
                 : 0;
    int64_t longest = 0;
    for (int i = 0; !rc && i < s->n; i++) {
        rc = prompt_ids(s, tpl, s->prompts[i], &s->ids[i], err);
        if (!rc && s->ids[i].n == 0)
            rc = lc_error_set(err, "sample_prompts[%d] has no tokens", i);
        if (rc)
            lc_error_prefix(err, "sample_prompts[%d]", i);
        else if ((int64_t)s->ids[i].n > longest)
            longest = (int64_t)s->ids[i].n;
    }
    lc_chat_template_free(tpl);
    if (rc || lc_gen_stops_load(&s->stops, c->base_model, s->tok, err))
        return -1;
    int64_t max_len = longest + s->max_new;
    if (max_len > m->cfg.max_position_embeddings)
        return lc_error_set(err, "sample_prompts: a prompt of %lld tokens and "
                            "sample_max_new_tokens %lld exceed max_position_embeddings %lld",
                            (long long)longest, (long long)s->max_new,
                            (long long)m->cfg.max_position_embeddings);
    s->gen = lc_generator_new(m, lora, max_len, err);
    return s->gen ? 0 : lc_error_prefix(err, "sample_prompts");
}

int lc_samples_open(lc_samples *s, const lc_train_config *c, lc_model *m, const lc_lora *lora,
                    lc_tokenizer *tok, const char *chat_template, lc_error *err)
{
    memset(s, 0, sizeof *s);
    if (c->n_sample_prompts == 0)
        return 0;
    s->n = c->n_sample_prompts;
    s->prompts = c->sample_prompts;
    s->max_new = c->sample_max_new_tokens;
    s->tok = tok;
    if (!tok) {
        if (lc_gen_tokenizer_load(c->base_model, false, &s->tok, err)) {
            s->n = 0;
            return lc_error_prefix(err, "sample_prompts need base_model's tokenizer");
        }
        s->own_tok = true;
    }
    s->ids = calloc((size_t)s->n, sizeof *s->ids);
    if (!s->ids || prepare(s, c, m, lora, chat_template, err)) {
        if (!s->ids)
            lc_error_set(err, "out of memory");
        lc_samples_close(s);
        return -1;
    }
    return 0;
}

/* text with its newlines shown as "\n", for a log line. */
static void print_flat(FILE *log, const char *text)
{
    for (const char *p = text; *p; p++)
        if (*p == '\n')
            fputs("\\n", log);
        else
            fputc(*p, log);
}

static int sample_one(lc_samples *s, int i, int64_t step, lc_metrics *metrics, FILE *log,
                      bool tty, lc_error *err)
{
    lc_gen_opts go = {.max_new_tokens = s->max_new, .sampling = {.top_p = 1},
                      .stop_ids = s->stops.ids, .n_stop = s->stops.n};
    lc_gen_result r = {0};
    if (lc_generate(s->gen, s->ids[i].v, (int64_t)s->ids[i].n, &go, &r, err))
        return lc_error_prefix(err, "sample_prompts[%d] at step %lld", i, (long long)step);
    int64_t n = r.n;
    if (r.stopped && n > 0 && lc_gen_stops_has(&s->stops, r.ids[n - 1]))
        n--;
    char *text;
    size_t len;
    int rc = lc_tokenizer_decode(s->tok, r.ids, (size_t)n, &text, &len, err);
    lc_gen_result_free(&r);
    if (rc)
        return -1;
    char tag[32];
    snprintf(tag, sizeof tag, "samples/%d", i + 1);
    fprintf(log, "%ssample %d at step %lld: ", tty ? "\r\033[K" : "", i + 1, (long long)step);
    print_flat(log, s->prompts[i]);
    fputs(" -> ", log);
    print_flat(log, text);
    fputc('\n', log);
    rc = lc_metrics_text(metrics, tag, step, text, err);
    free(text);
    return rc;
}

int lc_samples_run(lc_samples *s, int64_t step, lc_metrics *metrics, FILE *log, bool tty,
                   lc_error *err)
{
    for (int i = 0; i < s->n; i++)
        if (sample_one(s, i, step, metrics, log, tty, err))
            return -1;
    fflush(log);
    return 0;
}

void lc_samples_close(lc_samples *s)
{
    for (int i = 0; s->ids && i < s->n; i++)
        lc_ids_free(&s->ids[i]);
    free(s->ids);
    lc_generator_free(s->gen);
    if (s->own_tok)
        lc_tokenizer_free(s->tok);
    memset(s, 0, sizeof *s);
}

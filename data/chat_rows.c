/* chat_rows.c — chat_template rows → input_ids and labels, as Axolotl 0.19's
 * ChatTemplateStrategy does it (prompt_strategies/chat_template.py), see
 * row_encoder.h. The conversation is normalised into turns (mapped role and
 * content, the other message keys kept), rendered once with the template and
 * tokenized with byte spans (lc_tokenizer_encode_spans); each turn that may be
 * trained is then rendered twice more with its content swapped for a sentinel,
 * and the bytes that differ — widest over both sentinels, so a template that
 * glues a character onto the content cannot hide it — are the turn's content;
 * the tokens overlapping them are trained. */
#include "data/chat_rows.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "data/batch.h"
#include "data/chat_template.h"

#define EOT_REACH 3   /* Axolotl: an end-of-turn token at most 3 tokens after the content */
#define MAX_EOT 16

/* Two sentinels with different first and last characters (Axolotl's). */
static const char *const SENTINELS[2] = {"[[dummy_message]]", "zzdummymessagezz"};
/* Roles a template knows without a `roles:` mapping. */
static const char *const KNOWN_ROLES[] = {"system", "user", "assistant", "tool"};
/* Axolotl's default `roles`: name in the data → role. */
static const char *const DEFAULT_ROLES[][2] = {
    {"human", "user"}, {"user", "user"}, {"assistant", "assistant"},
    {"gpt", "assistant"}, {"system", "system"}, {"tool", "tool"},
};

struct lc_chat_rows {
    const lc_dataset_spec *spec;
    lc_tokenizer *tok;
    lc_chat_template *tpl;
    int32_t eot[MAX_EOT];
    int n_eot;
    int32_t eos;
    bool train_on_inputs;
    long long now;
    lc_ids st, en;               /* work: byte spans of the ids */
    int8_t *train;               /* work: per turn −1 (by role), 0, 1 (message's own flag) */
    size_t train_cap;
};

int lc_chat_rows_new(lc_chat_rows **out, const lc_chat_rows_opts *o, lc_error *err)
{
    *out = NULL;
    if (!o->template_text)
        return lc_error_set(err, "type: chat_template needs a chat template (the model's "
                            "tokenizer_config.json has none: set chat_template: to a built-in "
                            "name or chat_template_jinja:)");
    lc_chat_rows *c = calloc(1, sizeof *c);
    if (!c)
        return lc_error_set(err, "out of memory");
    c->spec = o->spec;
    c->tok = o->tok;
    c->train_on_inputs = o->train_on_inputs;
    c->now = o->now;
    c->eos = lc_tokenizer_eos(o->tok);
    if (lc_chat_template_parse(o->template_text, strlen(o->template_text), &c->tpl, err)) {
        free(c);
        return -1;
    }
    if (o->n_eot_tokens > MAX_EOT) {
        lc_chat_rows_free(c);
        return lc_error_set(err, "eot_tokens: at most %d tokens", MAX_EOT);
    }
    for (int i = 0; i < o->n_eot_tokens; i++) {
        c->eot[i] = lc_tokenizer_token_id(o->tok, o->eot_tokens[i]);
        if (c->eot[i] < 0) {
            lc_error_set(err, "eot_tokens: \"%.64s\" is not a token of the tokenizer",
                         o->eot_tokens[i]);
            lc_chat_rows_free(c);
            return -1;
        }
    }
    c->n_eot = o->n_eot_tokens;
    if (!o->eot_tokens && c->eos >= 0) {
        c->eot[0] = c->eos;
        c->n_eot = 1;
    }
    *out = c;
    return 0;
}

void lc_chat_rows_free(lc_chat_rows *c)
{
    if (!c)
        return;
    lc_chat_template_free(c->tpl);
    lc_ids_free(&c->st);
    lc_ids_free(&c->en);
    free(c->train);
    free(c);
}

/* ---- turns ------------------------------------------------------------------------- */
/* The role a name in the data stands for (spec roles, else Axolotl's default table;
 * an unmapped name is itself). */
static const char *map_role(const lc_dataset_spec *s, const char *name)
{
    if (s->n_roles) {
        for (int i = 0; i < s->n_roles; i++)
            if (!strcmp(s->roles[i].name, name))
                return s->roles[i].role;
        return name;
    }
    for (size_t i = 0; i < sizeof DEFAULT_ROLES / sizeof *DEFAULT_ROLES; i++)
        if (!strcmp(DEFAULT_ROLES[i][0], name))
            return DEFAULT_ROLES[i][1];
    return name;
}

static bool role_known(const lc_dataset_spec *s, const char *role)
{
    for (size_t i = 0; i < sizeof KNOWN_ROLES / sizeof *KNOWN_ROLES; i++)
        if (!strcmp(KNOWN_ROLES[i], role))
            return true;
    for (int i = 0; i < s->n_roles; i++)
        if (!strcmp(s->roles[i].role, role))
            return true;
    return false;
}

static bool role_trained(const lc_dataset_spec *s, const char *role)
{
    for (int i = 0; i < s->n_roles_to_train; i++)
        if (!strcmp(map_role(s, s->roles_to_train[i]), role))
            return true;
    return false;
}

static cJSON *turn_new(const char *role, const char *content)
{
    cJSON *t = cJSON_CreateObject();
    if (t && (!cJSON_AddStringToObject(t, "role", role) ||
              (content && !cJSON_AddStringToObject(t, "content", content)))) {
        cJSON_Delete(t);
        return NULL;
    }
    return t;
}

/* One message → a turn {role, content, the message's other keys}; *flag its own
 * training flag (−1 none). */
static cJSON *message_turn(const lc_chat_rows *c, const cJSON *m, int i, const char *where,
                           int8_t *flag, lc_error *err)
{
    const lc_dataset_spec *s = c->spec;
    if (!cJSON_IsObject(m))
        return lc_error_set(err, "%s: %s[%d] must be an object", where, s->field_messages, i),
               NULL;
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, s->role_key);
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, s->content_key);
    const cJSON *training = s->message_field_training
                                ? cJSON_GetObjectItemCaseSensitive(m, s->message_field_training)
                                : NULL;
    if (!cJSON_IsString(role))
        return lc_error_set(err, "%s: %s[%d] has no string \"%s\" (its role; map another key "
                            "with message_property_mappings)", where, s->field_messages, i,
                            s->role_key), NULL;
    const char *r = map_role(s, role->valuestring);
    char rb[72]; /* the role is the row's text: a newline in it must not split the message */
    if (!role_known(s, r))
        return lc_error_set(err, "%s: %s[%d] has role '%s' (known: system, user, assistant, "
                            "tool; map others with roles:)", where, s->field_messages, i,
                            lc_printable(role->valuestring, rb, sizeof rb)), NULL;
    bool has_calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls") != NULL;
    if (!cJSON_IsString(content) && !(has_calls && (!content || cJSON_IsNull(content))))
        return lc_error_set(err, "%s: %s[%d] has no string \"%s\" (its text)", where,
                            s->field_messages, i, s->content_key), NULL;
    if (training && !cJSON_IsNull(training) && !cJSON_IsBool(training))
        return lc_error_set(err, "%s: %s[%d].%s must be true or false", where,
                            s->field_messages, i, s->message_field_training), NULL;
    *flag = training && cJSON_IsBool(training) ? (int8_t)cJSON_IsTrue(training) : -1;
    cJSON *t = turn_new(r, cJSON_IsString(content) ? content->valuestring : NULL);
    for (const cJSON *k = m->child; t && k; k = k->next) {
        if (!strcmp(k->string, s->role_key) || !strcmp(k->string, s->content_key) ||
            (s->message_field_training && !strcmp(k->string, s->message_field_training)) ||
            cJSON_IsNull(k) ||
            cJSON_GetObjectItemCaseSensitive(t, k->string))
            continue;
        cJSON *dup = cJSON_Duplicate(k, 1);
        if (!dup || !cJSON_AddItemToObject(t, k->string, dup)) {
            cJSON_Delete(dup);
            cJSON_Delete(t);
            t = NULL;
        }
    }
    if (!t)
        lc_error_set(err, "out of memory");
    return t;
}

static int grow_flags(lc_chat_rows *c, size_t n, lc_error *err)
{
    if (n <= c->train_cap)
        return 0;
    int8_t *p = realloc(c->train, n);
    if (!p)
        return lc_error_set(err, "out of memory");
    c->train = p;
    c->train_cap = n;
    return 0;
}

/* The turns of a row (a new array), with c->train[] their flags. */
static cJSON *row_turns(lc_chat_rows *c, const cJSON *row, const char *where, lc_error *err)
{
    const lc_dataset_spec *s = c->spec;
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(row, s->field_messages);
    if (!cJSON_IsArray(msgs))
        return lc_error_set(err, "%s: no list \"%s\" (the conversation; another key is set "
                            "with field_messages)", where, s->field_messages), NULL;
    int n = cJSON_GetArraySize(msgs);
    if (n == 0)
        return lc_error_set(err, "%s: \"%s\" is an empty conversation", where,
                            s->field_messages), NULL;
    if (grow_flags(c, (size_t)n + 1, err))
        return NULL;
    cJSON *turns = cJSON_CreateArray();
    if (!turns)
        return lc_error_set(err, "out of memory"), NULL;
    int k = 0, i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        int8_t flag;
        cJSON *t = message_turn(c, m, i, where, &flag, err);
        if (!t) {
            cJSON_Delete(turns);
            return NULL;
        }
        /* a row-level system prompt goes first unless the conversation has one */
        const cJSON *sys = cJSON_GetObjectItemCaseSensitive(row, s->field_system);
        const char *r0 = cJSON_GetObjectItemCaseSensitive(t, "role")->valuestring;
        if (i == 0 && strcmp(r0, "system") && cJSON_IsString(sys)) {
            cJSON *st = turn_new("system", sys->valuestring);
            if (!st || !cJSON_AddItemToArray(turns, st)) {
                cJSON_Delete(st);
                cJSON_Delete(t);
                cJSON_Delete(turns);
                return lc_error_set(err, "out of memory"), NULL;
            }
            c->train[k++] = -1;
        }
        cJSON_AddItemToArray(turns, t);
        c->train[k++] = flag;
        i++;
    }
    if (s->drop_system_message &&
        !strcmp(cJSON_GetObjectItemCaseSensitive(turns->child, "role")->valuestring, "system")) {
        cJSON_DeleteItemFromArray(turns, 0);
        memmove(c->train, c->train + 1, (size_t)--k);
        if (k == 0) {
            cJSON_Delete(turns);
            return lc_error_set(err, "%s: only a system message, which drop_system_message "
                                "drops", where), NULL;
        }
    }
    return turns;
}

/* ---- rendering ----------------------------------------------------------------------- */
cJSON *lc_chat_context_new(lc_tokenizer *tok, const cJSON *messages, bool add_generation_prompt,
                           const cJSON *tools)
{
    cJSON *ctx = cJSON_CreateObject();
    if (!ctx || !cJSON_AddItemReferenceToObject(ctx, "messages", (cJSON *)messages) ||
        !cJSON_AddBoolToObject(ctx, "add_generation_prompt", add_generation_prompt))
        goto fail;
    for (int k = 0; k < LC_SPECIAL_COUNT; k++) {
        int32_t id = lc_tokenizer_special(tok, (lc_special)k);
        size_t n;
        const char *text = id >= 0 ? lc_tokenizer_token_text(tok, id, &n) : NULL;
        char *z = text ? strndup(text, n) : NULL;
        if (text && (!z || !cJSON_AddStringToObject(ctx, lc_special_key((lc_special)k), z))) {
            free(z);
            goto fail;
        }
        free(z);
    }
    if (cJSON_IsArray(tools) && !cJSON_AddItemReferenceToObject(ctx, "tools", (cJSON *)tools))
        goto fail;
    return ctx;
fail:
    cJSON_Delete(ctx);
    return NULL;
}

/* The render context of a row's turns (add_generation_prompt false, its tools). */
static cJSON *render_context(const lc_chat_rows *c, const cJSON *row, const cJSON *turns)
{
    return lc_chat_context_new(c->tok, turns, false,
                               cJSON_GetObjectItemCaseSensitive(row, "tools"));
}

static int render(const lc_chat_rows *c, const cJSON *ctx, const char *where, char **text,
                  size_t *len, lc_error *err)
{
    lc_chat_render_opts ro = {.now = c->now};
    if (lc_chat_template_render(c->tpl, ctx, &ro, text, len, err))
        return lc_error_prefix(err, "%s", where); /* the message names the template line */
    return 0;
}

/* The byte span [*a, *b) of full that differs from dummy (suffix bounded by the prefix). */
static void diff_span(const char *full, size_t fn, const char *dummy, size_t dn, size_t *a,
                      size_t *b)
{
    size_t limit = fn < dn ? fn : dn, pre = 0, suf = 0;
    while (pre < limit && full[pre] == dummy[pre])
        pre++;
    while (suf < limit - pre && full[fn - 1 - suf] == dummy[dn - 1 - suf])
        suf++;
    *a = pre;
    *b = fn - suf;
}

/* turns with turn i replaced by {role, content: sentinel} (Axolotl's dummy
 * turn: the message's other keys left out); the others are references. */
static cJSON *dummy_turns(const cJSON *turns, int i, const char *sentinel)
{
    cJSON *alt = cJSON_CreateArray();
    int j = 0;
    for (const cJSON *t = turns ? turns->child : NULL; alt && t; t = t->next, j++) {
        cJSON *item = j != i ? cJSON_CreateObjectReference(t->child)
                             : turn_new(cJSON_GetObjectItemCaseSensitive(t, "role")->valuestring,
                                        sentinel);
        if (!item || !cJSON_AddItemToArray(alt, item)) {
            cJSON_Delete(item);
            cJSON_Delete(alt);
            alt = NULL;
        }
    }
    return alt;
}

/* Where turn i's content lies in full: the widest span over both sentinels,
 * [*a, *b), empty when the template does not show it. */
static int content_span(lc_chat_rows *c, const cJSON *row, const cJSON *turns, int i,
                        const char *full, size_t fn, const char *where, size_t *a, size_t *b,
                        lc_error *err)
{
    *a = fn;
    *b = 0;
    for (int k = 0; k < 2; k++) {
        cJSON *alt = dummy_turns(turns, i, SENTINELS[k]);
        cJSON *ctx = alt ? render_context(c, row, alt) : NULL;
        char *text = NULL;
        size_t n = 0, s0, s1;
        int rc = ctx ? render(c, ctx, where, &text, &n, err) : lc_error_set(err, "out of memory");
        cJSON_Delete(ctx);
        cJSON_Delete(alt);
        if (rc)
            return -1;
        diff_span(full, fn, text, n, &s0, &s1);
        free(text);
        *a = s0 < *a ? s0 : *a;
        *b = s1 > *b ? s1 : *b;
    }
    return 0;
}

/* ---- labels ------------------------------------------------------------------------- */
static bool is_eot(const lc_chat_rows *c, int32_t id)
{
    for (int k = 0; k < c->n_eot; k++)
        if (c->eot[k] == id)
            return true;
    return false;
}

/* The first token at or after from that is an end-of-turn (eos: the eos token)
 * within EOT_REACH of from, or −1. */
static long find_end(const lc_chat_rows *c, const lc_ids *ids, size_t from, bool eos)
{
    for (size_t k = from; k < ids->n; k++)
        if (eos ? ids->v[k] == c->eos : is_eot(c, ids->v[k]))
            return k - from <= EOT_REACH ? (long)k : -1;
    return -1;
}

static bool mode_trains(lc_eos_mode m, bool turn_trained)
{
    return m == LC_EOS_ALL || (m == LC_EOS_TURN && turn_trained);
}

/* Labels of turn i: its content tokens when trained, then its end tokens. */
static int label_turn(lc_chat_rows *c, const cJSON *row, const cJSON *turns, int i, bool trained,
                      const char *full, size_t fn, const lc_ids *ids, lc_ids *labels,
                      long last[2], const char *where, lc_error *err)
{
    size_t a, b;
    if (content_span(c, row, turns, i, full, fn, where, &a, &b, err))
        return -1;
    if (b <= a)
        return 0; /* the template does not show this turn's content */
    size_t start = 0, end = 0;
    while (start < ids->n && (size_t)c->en.v[start] <= a)
        start++;
    while (end < ids->n && (size_t)c->st.v[end] < b)
        end++;
    if (start >= ids->n || end <= start)
        return 0;
    for (size_t k = start; trained && k < end; k++)
        labels->v[k] = ids->v[k];
    const lc_eos_mode modes[2] = {c->spec->train_on_eot, c->spec->train_on_eos};
    for (int e = 0; e < 2; e++) {
        long k = find_end(c, ids, end, e == 1);
        if (k < 0)
            continue;
        last[e] = k;
        if (mode_trains(modes[e], trained))
            labels->v[k] = ids->v[k];
    }
    return 0;
}

int lc_chat_rows_encode(lc_chat_rows *c, const cJSON *row, const char *where, lc_ids *ids,
                        lc_ids *labels, lc_error *err)
{
    cJSON *turns = row_turns(c, row, where, err);
    if (!turns)
        return -1;
    cJSON *ctx = render_context(c, row, turns);
    char *full = NULL;
    size_t fn = 0;
    int rc = -1;
    if (!ctx) {
        lc_error_set(err, "out of memory");
        goto done;
    }
    c->st.n = c->en.n = 0;
    if (render(c, ctx, where, &full, &fn, err))
        goto done;
    if (lc_tokenizer_encode_spans(c->tok, full, fn, false, ids, &c->st, &c->en, err)) {
        lc_error_prefix(err, "%s: the rendered conversation", where);
        goto done;
    }
    for (size_t k = 0; k < ids->n; k++)
        if (lc_ids_push(labels, LC_LABEL_IGNORE, err))
            goto done;
    const lc_dataset_spec *s = c->spec;
    bool any_all = s->train_on_eos == LC_EOS_ALL || s->train_on_eot == LC_EOS_ALL;
    long last[2] = {-1, -1};
    int n = cJSON_GetArraySize(turns);
    for (int i = 0; i < n; i++) {
        const char *role = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(turns, i),
                                                            "role")->valuestring;
        bool trained = c->train[i] >= 0 ? c->train[i] == 1
                                         : c->train_on_inputs || role_trained(s, role);
        if ((trained || any_all) &&
            label_turn(c, row, turns, i, trained, full, fn, ids, labels, last, where, err))
            goto done;
    }
    if (s->train_on_eot == LC_EOS_LAST && last[0] >= 0)
        labels->v[last[0]] = ids->v[last[0]];
    if (s->train_on_eos == LC_EOS_LAST && last[1] >= 0)
        labels->v[last[1]] = ids->v[last[1]];
    rc = 0;
done:
    free(full);
    cJSON_Delete(ctx);
    cJSON_Delete(turns);
    return rc;
}

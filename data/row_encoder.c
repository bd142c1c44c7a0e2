/* row_encoder.c — text dataset rows → input_ids / labels (see row_encoder.h).
 * completion is data/completion.c, chat_template data/chat_rows.c; alpaca and
 * input_output are here. */
#include "data/row_encoder.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "data/batch.h"
#include "data/chat_rows.h"
#include "data/completion.h"
#include "data/text_jsonl.h"


/* Axolotl's Alpaca prompt (prompters.py AlpacaPrompter, style "instruct"). */
#define ALPACA_SYSTEM "Below is an instruction that describes a task, paired with an input " \
                      "that provides further context. Write a response that appropriately " \
                      "completes the request."
#define ALPACA_SYSTEM_NO_INPUT "Below is an instruction that describes a task. Write a " \
                               "response that appropriately completes the request."

struct lc_row_encoder {
    lc_dataset_spec spec;
    lc_tokenizer *tok;
    lc_chat_rows *chat;
    bool train_on_inputs;
    int64_t sequence_len, vocab;
    lc_ids part;                 /* work: one tokenized part */
};

int lc_row_encoder_new(lc_row_encoder **out, const lc_row_encoder_opts *o, lc_error *err)
{
    *out = NULL;
    if (o->spec->type != LC_DS_TOKENIZED && !o->tok)
        return lc_error_set(err, "type: %s needs the model's tokenizer",
                            lc_dataset_type_name(o->spec->type));
    lc_row_encoder *e = calloc(1, sizeof *e);
    if (!e || lc_dataset_spec_copy(&e->spec, o->spec)) {
        free(e);
        return lc_error_set(err, "out of memory");
    }
    e->tok = o->tok;
    e->train_on_inputs = o->train_on_inputs;
    e->sequence_len = o->sequence_len;
    e->vocab = o->vocab;
    if (o->spec->type == LC_DS_CHAT_TEMPLATE) {
        lc_chat_rows_opts co = {.spec = &e->spec, .tok = o->tok, .template_text = o->chat_template,
                                .eot_tokens = o->eot_tokens, .n_eot_tokens = o->n_eot_tokens,
                                .train_on_inputs = o->train_on_inputs, .now = o->now};
        if (lc_chat_rows_new(&e->chat, &co, err)) {
            lc_row_encoder_free(e);
            return -1;
        }
    }
    *out = e;
    return 0;
}

void lc_row_encoder_free(lc_row_encoder *e)
{
    if (!e)
        return;
    lc_chat_rows_free(e->chat);
    lc_dataset_spec_free(&e->spec);
    lc_ids_free(&e->part);
    free(e);
}

const lc_dataset_spec *lc_row_encoder_spec(const lc_row_encoder *e) { return &e->spec; }

/* Appends part's ids to ids, and to labels as themselves or −100. */
static int append(lc_ids *ids, lc_ids *labels, const lc_ids *part, bool trained, lc_error *err)
{
    for (size_t i = 0; i < part->n; i++)
        if (lc_ids_push(ids, part->v[i], err) ||
            lc_ids_push(labels, trained ? part->v[i] : LC_LABEL_IGNORE, err))
            return -1;
    return 0;
}

/* Axolotl's _tokenize: tokenizer(text, truncation, max_length=sequence_len)
 * with specials; EOS appended when asked, not already last and not cut;
 * a leading BOS dropped when asked. An empty text gives nothing. */
static int axolotl_tokenize(lc_row_encoder *e, const char *text, bool add_eos, bool strip_bos,
                            bool *cut, lc_error *err)
{
    lc_ids *p = &e->part;
    p->n = 0;
    if (!*text)
        return 0;
    bool c = false;
    if (lc_tokenizer_encode_truncated(e->tok, text, strlen(text), (size_t)e->sequence_len, p, &c,
                                      err))
        return -1;
    *cut = *cut || c;
    int32_t eos = lc_tokenizer_eos(e->tok), bos = lc_tokenizer_bos(e->tok);
    if (add_eos && p->n > 0 && p->v[p->n - 1] != eos && (int64_t)p->n < e->sequence_len) {
        if (eos < 0)
            return lc_error_set(err, "the tokenizer has no eos_token (tokenizer_config.json, or "
                                "special_tokens: eos_token in the config)");
        if (lc_ids_push(p, eos, err))
            return -1;
    }
    if (strip_bos && p->n > 0 && p->v[0] == bos) {
        memmove(p->v, p->v + 1, (p->n - 1) * sizeof *p->v);
        p->n--;
    }
    return 0;
}

/* A string field of row, "" when absent and optional. */
static int string_field(const cJSON *row, const char *key, bool required, const char *where,
                        const char **out, lc_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, key);
    *out = "";
    if (!v || cJSON_IsNull(v)) {
        if (required)
            return lc_error_set(err, "%s: no \"%s\" field (an alpaca row has instruction, "
                                "input and output)", where, key);
        return 0;
    }
    if (!cJSON_IsString(v))
        return lc_error_set(err, "%s: \"%s\" must be a string", where, key);
    *out = v->valuestring;
    return 0;
}

static int encode_alpaca(lc_row_encoder *e, const cJSON *row, const char *where, lc_ids *ids,
                         lc_ids *labels, bool *cut, lc_error *err)
{
    const char *instruction, *input, *output;
    if (string_field(row, "instruction", true, where, &instruction, err) ||
        string_field(row, "input", false, where, &input, err) ||
        string_field(row, "output", true, where, &output, err))
        return -1;
    const char *system = *input ? ALPACA_SYSTEM : ALPACA_SYSTEM_NO_INPUT;
    size_t n = strlen(system) + strlen(instruction) + strlen(input) + 64;
    char *prompt = malloc(n);
    if (!prompt)
        return lc_error_set(err, "out of memory");
    if (*input)
        snprintf(prompt, n, "%s\n\n### Instruction:\n%s\n\n### Input:\n%s\n\n### Response:\n",
                 system, instruction, input);
    else
        snprintf(prompt, n, "%s\n\n### Instruction:\n%s\n\n### Response:\n", system, instruction);
    int rc = axolotl_tokenize(e, prompt, false, false, cut, err) ||
             append(ids, labels, &e->part, e->train_on_inputs, err) ||
             axolotl_tokenize(e, output, true, true, cut, err) ||
             append(ids, labels, &e->part, true, err);
    free(prompt);
    return rc ? lc_error_prefix(err, "%s", where) : 0;
}

static int encode_input_output(lc_row_encoder *e, const cJSON *row, const char *where,
                               lc_ids *ids, lc_ids *labels, lc_error *err)
{
    const cJSON *segs = cJSON_GetObjectItemCaseSensitive(row, "segments");
    if (!cJSON_IsArray(segs))
        return lc_error_set(err, "%s: \"segments\" must be a list of {\"text\": ..., \"label\": "
                            "true|false}", where);
    int i = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, segs) {
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(s, "text");
        const cJSON *label = cJSON_GetObjectItemCaseSensitive(s, "label");
        if (!cJSON_IsString(text) || !cJSON_IsBool(label))
            return lc_error_set(err, "%s: segments[%d] must be {\"text\": string, \"label\": "
                                "true|false}", where, i);
        e->part.n = 0;
        if (lc_tokenizer_encode(e->tok, text->valuestring, strlen(text->valuestring), false,
                                &e->part, err))
            return lc_error_prefix(err, "%s: segments[%d]", where, i);
        if (append(ids, labels, &e->part, cJSON_IsTrue(label) || e->train_on_inputs, err))
            return -1;
        i++;
    }
    if (i == 0)
        return lc_error_set(err, "%s: \"segments\" is empty", where);
    return 0;
}

/* Every id must be a row of the model's embedding. */
static int check_vocab(const lc_row_encoder *e, const lc_ids *ids, const char *where,
                       lc_error *err)
{
    for (size_t i = 0; i < ids->n; i++)
        if (ids->v[i] < 0 || ids->v[i] >= e->vocab)
            return lc_error_set(err, "%s: token id %d (token %zu of the row) is outside the "
                                "model's vocab_size %lld: the tokenizer does not belong to "
                                "the model", where, (int)ids->v[i], i, (long long)e->vocab);
    return 0;
}

int lc_row_encode(lc_row_encoder *e, const char *line, size_t n, const char *where,
                  lc_ids *ids, lc_ids *labels, bool *truncated, lc_error *err)
{
    ids->n = labels->n = 0;
    *truncated = false;
    if (e->spec.type == LC_DS_TOKENIZED)
        return lc_error_set(err, "%s: tokenized rows are read by the JSONL reader", where);
    if (e->spec.type == LC_DS_COMPLETION) {
        int64_t max_len = e->sequence_len * LC_COMPLETION_MAX_LEN_FACTOR;
        if (lc_completion_encode(e->tok, line, n, e->spec.field, where, e->vocab, max_len, ids,
                                 truncated, err))
            return -1;
        for (size_t i = 0; i < ids->n; i++)
            if (lc_ids_push(labels, ids->v[i], err))
                return -1;
        return 0;
    }
    cJSON *row;
    if (lc_json_row_object(line, n, where, &row, err))
        return -1;
    int rc;
    switch (e->spec.type) {
    case LC_DS_ALPACA:
        rc = encode_alpaca(e, row, where, ids, labels, truncated, err);
        break;
    case LC_DS_INPUT_OUTPUT:
        rc = encode_input_output(e, row, where, ids, labels, err);
        break;
    default:
        rc = lc_chat_rows_encode(e->chat, row, where, ids, labels, err);
        break;
    }
    cJSON_Delete(row);
    return rc ? -1 : check_vocab(e, ids, where, err);
}

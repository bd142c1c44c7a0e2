/* test_dataset_types.c — Axolotl's dataset types against Axolotl itself.
 *
 * Every case file of tests/fixtures/dataset_types/ (made by
 * scripts/make_dataset_type_fixtures.py, which runs Axolotl 0.19.0's own
 * ChatTemplateStrategy, AlpacaPromptTokenizingStrategy and
 * RawInputOutputStrategy with transformers) holds rows and the input_ids and
 * labels Axolotl made of them. Each file's dataset entry goes through lorac's
 * config parser (so the YAML keys are tested too), the row encoder encodes
 * each row, and ids and labels must be equal, token for token — which means
 * that exactly the assistant contents plus their end-of-turn tokens are
 * supervised, as Axolotl supervises them, and nothing of system or user turns.
 * A few bad rows then check the one-line errors. */
#include <criterion/criterion.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "data/row_encoder.h"
#include "helpers.h"
#include "tokenizer_fixture.h"
#include "train/config.h"

typedef struct case_file {
    cJSON *root;
    lc_train_config cfg;
    lc_tokenizer *tok;
    char *tok_dir;
    char *template_text;
    lc_row_encoder *enc;
} case_file;

static cJSON *read_json(const char *rel)
{
    size_t n;
    char *text = lc_test_read_file(lc_test_fixture(rel), &n);
    cJSON *j = cJSON_ParseWithLength(text, n);
    cr_assert_not_null(j, "%s: not JSON", rel);
    free(text);
    return j;
}

/* The YAML of the fixture's dataset entry: JSON is YAML's flow syntax. */
static void parse_entry(case_file *k, const char *name)
{
    cJSON *entry = cJSON_Duplicate(cJSON_GetObjectItem(k->root, "dataset"), 1);
    cJSON_AddStringToObject(entry, "path", "rows.jsonl");
    char *flow = cJSON_PrintUnformatted(entry);
    char *yaml = lc_test_asprintf("base_model: m\ndatasets:\n  - %s\n", flow);
    lc_error err = {0};
    cr_assert_eq(lc_train_config_parse(&k->cfg, yaml, strlen(yaml), name, "/", NULL, 0, &err), 0,
                 "%s: %s", name, err.msg);
    free(yaml);
    free(flow);
    cJSON_Delete(entry);
}

static void open_case(case_file *k, const char *file)
{
    char *rel = lc_test_asprintf("dataset_types/%s", file);
    memset(k, 0, sizeof *k);
    k->root = read_json(rel);
    parse_entry(k, file);
    k->tok_dir = lc_test_tokenizer_dir(cJSON_GetObjectItem(k->root, "tokenizer")->valuestring);
    lc_error err = {0};
    cr_assert_eq(lc_tokenizer_load(&k->tok, k->tok_dir, &err), 0, "%s", err.msg);
    const cJSON *sp;
    cJSON_ArrayForEach(sp, cJSON_GetObjectItem(k->root, "special_tokens")) {
        int kind = -1;
        for (int s = 0; s < LC_SPECIAL_COUNT; s++)
            if (!strcmp(sp->string, lc_special_key((lc_special)s)))
                kind = s;
        cr_assert_geq(kind, 0, "%s: special token %s", file, sp->string);
        cr_assert_eq(lc_tokenizer_set_special(k->tok, (lc_special)kind, sp->valuestring, &err), 0,
                     "%s", err.msg);
    }
    const cJSON *tf = cJSON_GetObjectItem(k->root, "chat_template_fixture");
    if (cJSON_IsString(tf)) {
        char *trel = lc_test_asprintf("chat_templates/%s.json", tf->valuestring);
        cJSON *t = read_json(trel);
        k->template_text = strdup(cJSON_GetObjectItem(t, "template")->valuestring);
        cJSON_Delete(t);
        free(trel);
    }
    const cJSON *eot = cJSON_GetObjectItem(k->root, "eot_tokens");
    char *eots[8];
    int n_eot = 0;
    for (const cJSON *e = cJSON_IsArray(eot) ? eot->child : NULL; e; e = e->next)
        eots[n_eot++] = e->valuestring;
    const cJSON *now = cJSON_GetObjectItem(k->root, "now");
    lc_row_encoder_opts o = {
        .spec = &k->cfg.dataset_specs[0], .tok = k->tok, .chat_template = k->template_text,
        .eot_tokens = n_eot ? eots : NULL, .n_eot_tokens = n_eot,
        .train_on_inputs = cJSON_IsTrue(cJSON_GetObjectItem(k->root, "train_on_inputs")),
        .sequence_len = (int64_t)cJSON_GetObjectItem(k->root, "sequence_len")->valuedouble,
        .vocab = lc_tokenizer_vocab_size(k->tok),
        .now = cJSON_IsNumber(now) ? (long long)now->valuedouble : 0};
    cr_assert_eq(lc_row_encoder_new(&k->enc, &o, &err), 0, "%s: %s", file, err.msg);
    free(rel);
}

static void close_case(case_file *k)
{
    lc_row_encoder_free(k->enc);
    lc_tokenizer_free(k->tok);
    lc_train_config_free(&k->cfg);
    cJSON_Delete(k->root);
    free(k->template_text);
    lc_test_rm_rf(k->tok_dir);
    free(k->tok_dir);
}

static bool same_ids(const lc_ids *got, const cJSON *want)
{
    if (got->n != (size_t)cJSON_GetArraySize(want))
        return false;
    size_t i = 0;
    for (const cJSON *v = want->child; v; v = v->next, i++)
        if (got->v[i] != (int32_t)v->valuedouble)
            return false;
    return true;
}

/* Where ids or labels first differ, for the message. */
static size_t first_diff(const lc_ids *got, const cJSON *want)
{
    size_t i = 0;
    for (const cJSON *v = want->child; v && i < got->n; v = v->next, i++)
        if (got->v[i] != (int32_t)v->valuedouble)
            return i;
    return i;
}

/* Checks every row of one case file; returns the rows compared. */
static int check_file(const char *file)
{
    case_file k;
    open_case(&k, file);
    lc_ids ids = {0}, labels = {0};
    int n = 0, line = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, cJSON_GetObjectItem(k.root, "rows")) {
        char *text = cJSON_PrintUnformatted(cJSON_GetObjectItem(row, "row"));
        char where[256];
        snprintf(where, sizeof where, "%s:%d", file, ++line);
        lc_error err = {0};
        bool cut;
        int rc = lc_row_encode(k.enc, text, strlen(text), where, &ids, &labels, &cut, &err);
        if (cJSON_GetObjectItem(row, "error")) {
            cr_expect_eq(rc, -1, "%s: Axolotl refused the row, lorac did not", where);
        } else {
            cr_assert_eq(rc, 0, "%s: %s", where, err.msg);
            const cJSON *wi = cJSON_GetObjectItem(row, "input_ids");
            const cJSON *wl = cJSON_GetObjectItem(row, "labels");
            cr_expect(same_ids(&ids, wi), "%s: input_ids differ from Axolotl's at token %zu "
                      "(%zu vs %d tokens)", where, first_diff(&ids, wi), ids.n,
                      cJSON_GetArraySize(wi));
            cr_expect(same_ids(&labels, wl), "%s: labels differ from Axolotl's at token %zu",
                      where, first_diff(&labels, wl));
            n++;
        }
        free(text);
    }
    lc_ids_free(&ids);
    lc_ids_free(&labels);
    close_case(&k);
    return n;
}

Test(dataset_types, equal_axolotl, .timeout = 240)
{
    DIR *d = opendir(lc_test_fixture("dataset_types"));
    cr_assert_not_null(d);
    int files = 0, rows = 0, chat = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 6 || strcmp(e->d_name + l - 5, ".json"))
            continue;
        int n = check_file(e->d_name);
        cr_log_info("%s: %d rows equal Axolotl's", e->d_name, n);
        rows += n;
        chat += !strncmp(e->d_name, "chat_template", 13);
        files++;
    }
    closedir(d);
    cr_assert_geq(files, 24, "%d case files", files);
    cr_assert_geq(chat, 14);
    cr_assert_geq(rows, 150, "%d rows", rows);
}

/* ---- bad rows: one line, FILE:LINE and what -------------------------------------- */

/* An encoder of type `type` on the llama-bpe fixture with the Llama 3.1 template. */
static lc_row_encoder *encoder_of(lc_dataset_type type, const char *tpl, lc_tokenizer *tok,
                                  int64_t vocab)
{
    lc_dataset_spec spec;
    cr_assert_eq(lc_dataset_spec_defaults(&spec, type), 0);
    lc_row_encoder_opts o = {.spec = &spec, .tok = tok, .chat_template = tpl,
                             .sequence_len = 64, .vocab = vocab};
    lc_row_encoder *e;
    lc_error err = {0};
    cr_assert_eq(lc_row_encoder_new(&e, &o, &err), 0, "%s", err.msg);
    lc_dataset_spec_free(&spec);
    return e;
}

static void expect_bad_row(lc_row_encoder *e, const char *row, const char *want)
{
    lc_ids ids = {0}, labels = {0};
    lc_error err = {0};
    bool cut;
    cr_expect_eq(lc_row_encode(e, row, strlen(row), "d.jsonl:7", &ids, &labels, &cut, &err), -1,
                 "no error for %s", row);
    cr_expect(strncmp(err.msg, "d.jsonl:7: ", 11) == 0, "'%s' does not start with the row's "
              "place", err.msg);
    cr_expect(strstr(err.msg, want), "'%s' lacks '%s'", err.msg, want);
    cr_expect(!strchr(err.msg, '\n'), "not one line: %s", err.msg);
    lc_ids_free(&ids);
    lc_ids_free(&labels);
}

Test(dataset_types, bad_rows_are_one_line_errors)
{
    char *dir = lc_test_tokenizer_dir("llama-bpe");
    lc_tokenizer *tok;
    lc_error err = {0};
    cr_assert_eq(lc_tokenizer_load(&tok, dir, &err), 0, "%s", err.msg);
    cJSON *t = read_json("chat_templates/llama3_1.json");
    const char *tpl = cJSON_GetObjectItem(t, "template")->valuestring;
    const char *raising = "{% if messages[0]['role'] == 'tool' %}{{ raise_exception('tools "
                          "first is not allowed') }}{% endif %}{{ messages[0]['content'] }}";
    lc_row_encoder *chat = encoder_of(LC_DS_CHAT_TEMPLATE, tpl, tok, 128256);
    lc_row_encoder *raises = encoder_of(LC_DS_CHAT_TEMPLATE, raising, tok, 128256);
    lc_row_encoder *small = encoder_of(LC_DS_CHAT_TEMPLATE, tpl, tok, 1000);
    lc_row_encoder *alpaca = encoder_of(LC_DS_ALPACA, NULL, tok, 128256);
    lc_row_encoder *io = encoder_of(LC_DS_INPUT_OUTPUT, NULL, tok, 128256);
    static const char ok_msg[] = "{\"role\": \"user\", \"content\": \"hi\"}";
    expect_bad_row(chat, "{\"messages\": []}", "\"messages\" is an empty conversation");
    expect_bad_row(chat, "{\"conversations\": []}", "no list \"messages\"");
    expect_bad_row(chat, "{\"messages\": [{\"role\": \"narrator\", \"content\": \"x\"}]}",
                   "messages[0] has role 'narrator' (known: system, user, assistant, tool");
    /* fuzz_row_encoder: the role is the row's text, a newline in it stays out of the message */
    expect_bad_row(chat, "{\"messages\": [{\"role\": \"a\nb\\n\", \"content\": \"x\"}]}",
                   "messages[0] has role 'a?b?' (known:");
    expect_bad_row(chat, "{\"messages\": [{\"content\": \"x\"}]}",
                   "messages[0] has no string \"role\"");
    expect_bad_row(chat, "{\"messages\": [" "{\"role\": \"user\", \"content\": 3}]}",
                   "messages[0] has no string \"content\"");
    expect_bad_row(chat, "{\"messages\": [\"hi\"]}", "messages[0] must be an object");
    expect_bad_row(chat, "{\"messages\": [{\"role\": \"user\", \"content\": \"a\xff\"}]}",
                   "not valid UTF-8");
    expect_bad_row(chat, "{\"messages\": [", "not valid JSON");
    expect_bad_row(chat, "[1]", "a row must be a JSON object");
    expect_bad_row(raises, "{\"messages\": [{\"role\": \"tool\", \"content\": \"x\"}]}",
                   "tools first is not allowed");
    char *row = lc_test_asprintf("{\"messages\": [%s]}", ok_msg);
    expect_bad_row(small, row, "is outside the model's vocab_size 1000");
    free(row);
    expect_bad_row(alpaca, "{\"input\": \"x\", \"output\": \"y\"}", "no \"instruction\" field");
    expect_bad_row(alpaca, "{\"instruction\": \"x\", \"output\": 5}", "\"output\" must be a string");
    expect_bad_row(io, "{\"segments\": [{\"text\": \"x\"}]}",
                   "segments[0] must be {\"text\": string, \"label\": true|false}");
    expect_bad_row(io, "{\"segments\": []}", "\"segments\" is empty");
    expect_bad_row(io, "{\"text\": \"x\"}", "\"segments\" must be a list");
    lc_row_encoder_free(chat);
    lc_row_encoder_free(raises);
    lc_row_encoder_free(small);
    lc_row_encoder_free(alpaca);
    lc_row_encoder_free(io);
    cJSON_Delete(t);
    lc_tokenizer_free(tok);
    lc_test_rm_rf(dir);
    free(dir);
}

/* fuzz_row_encoder.c — one JSONL row of a text dataset through lc_row_encode
 * (data/row_encoder.c, data/chat_rows.c, data/completion.c, the chat template
 * renderer and the tokenizer behind them).
 *
 * Once, at start-up: the byte-level BPE tokenizer of configs/quickstart_chat/model
 * (vocab_size 1024; the path comes from LORAC_SOURCE_DIR, a compile definition)
 * and two chat templates — that model's ChatML (its tokenizer_config.json) and
 * Llama 3.1's (tests/fixtures/chat_templates/llama3_1.json) — and one encoder
 * per case below. Per input: the first byte picks the encoder (byte % 8, so the
 * seeds start with '0'..'7'), the rest is one row line, passed NUL-terminated
 * as the JSONL reader passes its lines.
 *
 *   0 completion       1 alpaca           2 input_output
 *   3 chat_template ChatML, defaults      4 chat_template Llama 3.1, defaults
 *   5 ChatML with options: roles {user: [human, usr], assistant: [gpt, bot],
 *     tool: [function]}, roles_to_train [assistant, user], train_on_eos all,
 *     message_field_training "training", field_system "system_prompt",
 *     field_messages "conversations", message_property_mappings from / value
 *   6 Llama 3.1 with the options of 5 but the default keys (messages, role, content)
 *   7 ChatML, eot_tokens [<|im_end|>, <|endoftext|>], train_on_eot last,
 *     train_on_eos none, drop_system_message, train_on_inputs
 *
 * Checked: rc is 0 or -1; on -1 the message is one non-empty line starting with
 * the row's place, without control bytes (the row's text in it is lc_printable); on 0 ids and labels have the same length, every id lies in
 * [0, vocab) and every label is -100 or its id. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/row_encoder.h"
#include "fuzz_util.h"

#ifndef LORAC_SOURCE_DIR
#error "LORAC_SOURCE_DIR must be defined (CMakeLists.txt does)"
#endif

#define N_ENC 8
#define WHERE "rows.jsonl:7"
#define VOCAB 1024 /* configs/quickstart_chat/model/config.json vocab_size */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static lc_tokenizer *tok;
static lc_row_encoder *enc[N_ENC];
static char *chatml, *llama31;

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "fuzz_row_encoder: %s: %s\n", what, msg);
    abort();
}

static char *read_text(const char *rel)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", LORAC_SOURCE_DIR, rel);
    FILE *f = fopen(path, "rb");
    if (!f)
        die(path, "cannot open");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (!s || fread(s, 1, (size_t)n, f) != (size_t)n)
        die(path, "cannot read");
    s[n] = 0;
    fclose(f);
    return s;
}

/* The string `key` of the JSON file rel (malloc'd). */
static char *json_string(const char *rel, const char *key)
{
    char *text = read_text(rel);
    cJSON *j = cJSON_Parse(text);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsString(v))
        die(rel, key);
    char *s = strdup(v->valuestring);
    cJSON_Delete(j);
    free(text);
    return s;
}

static void set(char **field, const char *value)
{
    free(*field);
    *field = strdup(value);
}

static void chat_options(lc_dataset_spec *s, bool own_keys)
{
    static const char *const roles[][2] = {
        {"human", "user"}, {"usr", "user"}, {"gpt", "assistant"}, {"bot", "assistant"},
        {"function", "tool"},
    };
    for (size_t i = 0; i < sizeof roles / sizeof *roles; i++) {
        s->roles[s->n_roles].name = strdup(roles[i][0]);
        s->roles[s->n_roles].role = strdup(roles[i][1]);
        s->n_roles++;
    }
    set(&s->roles_to_train[0], "assistant");
    s->roles_to_train[1] = strdup("user");
    s->n_roles_to_train = 2;
    s->train_on_eos = LC_EOS_ALL;
    s->train_on_eot = LC_EOS_ALL;
    s->message_field_training = strdup("training");
    set(&s->field_system, "system_prompt");
    if (own_keys) {
        set(&s->field_messages, "conversations");
        set(&s->role_key, "from");
        set(&s->content_key, "value");
    }
}

static void make(int k, lc_dataset_type type, const char *tpl, int variant)
{
    lc_dataset_spec spec;
    if (lc_dataset_spec_defaults(&spec, type))
        die("spec", "out of memory");
    char *eots[2] = {"<|im_end|>", "<|endoftext|>"};
    lc_row_encoder_opts o = {.spec = &spec, .tok = tok, .chat_template = tpl,
                             .sequence_len = 64, .vocab = VOCAB,
                             .now = 1721822400 /* llama3_1.json's "now" */};
    if (variant == 1)
        chat_options(&spec, tpl == chatml);
    if (variant == 2) {
        o.eot_tokens = eots;
        o.n_eot_tokens = 2;
        spec.train_on_eot = LC_EOS_LAST;
        spec.train_on_eos = LC_EOS_NONE;
        spec.drop_system_message = true;
        o.train_on_inputs = true;
    }
    lc_error err;
    err.msg[0] = 0;
    if (lc_row_encoder_new(&enc[k], &o, &err))
        die("lc_row_encoder_new", err.msg);
    lc_dataset_spec_free(&spec);
}

static void teardown(void)
{
    for (int k = 0; k < N_ENC; k++)
        lc_row_encoder_free(enc[k]);
    lc_tokenizer_free(tok);
    free(chatml);
    free(llama31);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    lc_error err;
    err.msg[0] = 0;
    if (lc_tokenizer_load(&tok, LORAC_SOURCE_DIR "/configs/quickstart_chat/model", &err))
        die("tokenizer", err.msg);
    if (lc_tokenizer_vocab_size(tok) > VOCAB)
        die("tokenizer", "vocab larger than the model's");
    chatml = json_string("configs/quickstart_chat/model/tokenizer_config.json", "chat_template");
    llama31 = json_string("tests/fixtures/chat_templates/llama3_1.json", "template");
    make(0, LC_DS_COMPLETION, NULL, 0);
    make(1, LC_DS_ALPACA, NULL, 0);
    make(2, LC_DS_INPUT_OUTPUT, NULL, 0);
    make(3, LC_DS_CHAT_TEMPLATE, chatml, 0);
    make(4, LC_DS_CHAT_TEMPLATE, llama31, 0);
    make(5, LC_DS_CHAT_TEMPLATE, chatml, 1);
    make(6, LC_DS_CHAT_TEMPLATE, llama31, 1);
    make(7, LC_DS_CHAT_TEMPLATE, chatml, 2);
    atexit(teardown);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    lc_row_encoder *e = enc[data[0] % N_ENC];
    size_t n = size - 1;
    char *line = malloc(n + 1); /* exactly n bytes and the NUL the line reader adds */
    FUZZ_CHECK(line != NULL);
    memcpy(line, data + 1, n);
    line[n] = 0;
    lc_ids ids = {0}, labels = {0};
    lc_error err;
    memset(err.msg, 'x', sizeof err.msg); /* no stale NUL to hide a missing message */
    err.msg[sizeof err.msg - 1] = 0;
    bool cut = false;
    int rc = lc_row_encode(e, line, n, WHERE, &ids, &labels, &cut, &err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc) {
        fuzz_check_error(&err);
        FUZZ_CHECK(strncmp(err.msg, WHERE, strlen(WHERE)) == 0);
        for (const char *p = err.msg; *p; p++) /* printable, as tests/test_hostile.c asks */
            FUZZ_CHECK(!((unsigned char)*p < 0x20 || *p == 0x7f));
    } else {
        FUZZ_CHECK(ids.n == labels.n);
        for (size_t i = 0; i < ids.n; i++) {
            FUZZ_CHECK(ids.v[i] >= 0 && ids.v[i] < VOCAB);
            FUZZ_CHECK(labels.v[i] == -100 || labels.v[i] == ids.v[i]);
        }
    }
    lc_ids_free(&ids);
    lc_ids_free(&labels);
    free(line);
    return 0;
}

/* test_config.c — the training YAML (train/config.c).
 *
 * Good configs: every key set (each parsed value checked), a minimal config
 * (defaults applied), path resolution against the config's directory (from
 * text and from a file on disk), null as "default", qlora spellings, target
 * module forms. Overrides: number, list, string, bool, null, datasets, and
 * their errors. Bad configs: each must fail with a message that carries the
 * label, the line where one exists, and a specific substring; after every
 * failure the struct must be back at the defaults (so freeing is safe). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/helpers.h"
#include "train/axolotl_keys.h"
#include "train/config.h"

static int parse_sets(lc_train_config *c, const char *yaml, const char *base_dir,
                      char *const *sets, int n_sets, lc_error *err)
{
    memset(err, 0, sizeof *err);
    return lc_train_config_parse(c, yaml, strlen(yaml), "t.yaml", base_dir, sets, n_sets, err);
}

static void expect_ok_sets(lc_train_config *c, const char *yaml, const char *base_dir,
                           char *const *sets, int n_sets)
{
    lc_error err;
    int rc = parse_sets(c, yaml, base_dir, sets, n_sets, &err);
    cr_assert_eq(rc, 0, "parse failed: %s\n--- yaml:\n%s", err.msg, yaml);
}

static void expect_ok(lc_train_config *c, const char *yaml)
{
    expect_ok_sets(c, yaml, NULL, NULL, 0);
}

/* After a failure the struct holds the defaults and no strings. */
static void assert_reset(const lc_train_config *c)
{
    cr_assert_null(c->config_path);
    cr_assert_null(c->base_model);
    cr_assert_null(c->output_dir);
    cr_assert_null(c->lora_model_dir);
    cr_assert_null(c->resume_from_checkpoint);
    cr_assert_eq(c->n_datasets, 0);
    cr_assert_eq(c->n_test_datasets, 0);
    cr_assert_eq(c->lora.r, 8);
    cr_assert_null(c->warning);
    cr_assert_null(c->chat_template);
    cr_assert_null(c->chat_template_jinja);
    cr_assert_null(c->dataset_prepared_path);
    cr_assert_null(c->eot_tokens);
    for (int t = 0; t < LC_SPECIAL_COUNT; t++)
        cr_assert_null(c->special_tokens[t]);
}

static void expect_bad_sets(const char *yaml, char *const *sets, int n_sets, const char *prefix,
                            const char *substr)
{
    lc_train_config c;
    lc_error err;
    int rc = parse_sets(&c, yaml, "/cfg", sets, n_sets, &err);
    cr_assert_eq(rc, -1, "expected failure for:\n%s", yaml);
    lc_test_assert_msg_has(&err, substr);
    cr_assert(strncmp(err.msg, prefix, strlen(prefix)) == 0, "message '%s' does not start with '%s'",
              err.msg, prefix);
    assert_reset(&c);
    lc_train_config_free(&c);   /* safe after a failure */
    lc_train_config_free(&c);   /* and idempotent */
}

static void expect_bad(const char *yaml, const char *prefix, const char *substr)
{
    expect_bad_sets(yaml, NULL, 0, prefix, substr);
}

static void assert_close(double got, double want)
{
    cr_assert(fabs(got - want) <= 1e-15 * fmax(fabs(want), 1e-300), "got %.17g want %.17g", got,
              want);
}

#define MINIMAL "base_model: models/tiny\ndatasets:\n  - path: data/train.jsonl\n"

Test(config, full_config_every_key)
{
    static const char yaml[] =
        "# every key, none at its default\n"
        "base_model: models/tiny\n"
        "adapter: qlora\n"
        "load_in_4bit: false\n"
        "lora_r: 16\n"
        "lora_alpha: 32.5\n"
        "lora_dropout: 0.05\n"
        "lora_target_modules:\n"
        "  - q_proj\n"
        "  - v_proj\n"
        "  - down_proj\n"
        "lora_target_linear: false\n"
        "lora_model_dir: adapters/start\n"
        "peft_use_rslora: true\n"
        "peft_use_dora: true\n"
        "datasets:\n"
        "  - path: data/a.jsonl\n"
        "    type: tokenized\n"
        "  - {path: /abs/b.jsonl}\n"
        "test_datasets: [{path: data/eval.jsonl, type: tokenized}]\n"
        "sequence_len: 512\n"
        "sample_packing: true\n"
        "shuffle: False\n"
        "micro_batch_size: 4\n"
        "gradient_accumulation_steps: 8\n"
        "num_epochs: 3\n"
        "max_steps: 100\n"
        "learning_rate: 2.0e-4\n"
        "lr_scheduler: linear\n"
        "warmup_steps: 0\n"
        "warmup_ratio: 0.1\n"
        "cosine_min_lr_ratio: 0.1\n"
        "optimizer: adamw_torch_fused\n"
        "weight_decay: 0.01\n"
        "adam_beta1: 0.85\n"
        "adam_beta2: 0.95\n"
        "adam_epsilon: 1e-6\n"
        "max_grad_norm: 0.5\n"
        "gradient_checkpointing: True\n"
        "seed: 9223372036854775807\n"
        "device: cpu\n"
        "output_dir: out/run1\n"
        "logging_steps: 5\n"
        "save_steps: 50\n"
        "save_total_limit: 3\n"
        "eval_steps: 25\n"
        "resume_from_checkpoint: out/run1/checkpoint-50\n"
        "max_bad_steps: 2\n";
    lc_train_config c;
    expect_ok_sets(&c, yaml, "/cfg", NULL, 0);
    cr_assert_str_eq(c.config_path, "t.yaml");
    cr_assert_str_eq(c.base_model, "/cfg/models/tiny");
    cr_assert(c.qlora);
    cr_assert_eq(c.lora.r, 16);
    assert_close(c.lora.alpha, 32.5);
    assert_close(c.lora.dropout, 0.05);
    bool want[LC_MOD_COUNT] = { [LC_MOD_Q] = true, [LC_MOD_V] = true, [LC_MOD_DOWN] = true };
    for (int m = 0; m < LC_MOD_COUNT; m++)
        cr_assert_eq(c.lora.targets[m], want[m], "target %d", m);
    cr_assert(c.lora.use_rslora);
    cr_assert(c.lora.use_dora);
    cr_assert_not(c.lora_target_linear);
    cr_assert_str_eq(c.lora_model_dir, "/cfg/adapters/start");
    cr_assert_eq(c.n_datasets, 2);
    cr_assert_str_eq(c.datasets[0], "/cfg/data/a.jsonl");
    cr_assert_str_eq(c.datasets[1], "/abs/b.jsonl");
    cr_assert_eq(c.n_test_datasets, 1);
    cr_assert_str_eq(c.test_datasets[0], "/cfg/data/eval.jsonl");
    cr_assert_eq(c.sequence_len, 512);
    cr_assert(c.sample_packing);
    cr_assert_not(c.shuffle);
    cr_assert_eq(c.micro_batch_size, 4);
    cr_assert_eq(c.gradient_accumulation_steps, 8);
    cr_assert_eq(c.num_epochs, 3);
    cr_assert_eq(c.max_steps, 100);
    assert_close(c.learning_rate, 2.0e-4);
    cr_assert_eq(c.lr_scheduler, LC_LR_LINEAR);
    cr_assert_eq(c.warmup_steps, 0);
    assert_close(c.warmup_ratio, 0.1);
    assert_close(c.cosine_min_lr_ratio, 0.1);
    assert_close(c.weight_decay, 0.01);
    assert_close(c.adam.weight_decay, 0.01);
    assert_close(c.adam.beta1, 0.85);
    assert_close(c.adam.beta2, 0.95);
    assert_close(c.adam.eps, 1e-6);
    assert_close(c.max_grad_norm, 0.5);
    cr_assert(c.gradient_checkpointing);
    cr_assert_eq(c.seed, (uint64_t)9223372036854775807ull);
    cr_assert_eq(c.device, LC_DEVICE_CPU);
    cr_assert_str_eq(c.output_dir, "/cfg/out/run1");
    cr_assert_eq(c.logging_steps, 5);
    cr_assert_eq(c.save_steps, 50);
    cr_assert_eq(c.save_total_limit, 3);
    cr_assert_eq(c.eval_steps, 25);
    cr_assert_str_eq(c.resume_from_checkpoint, "/cfg/out/run1/checkpoint-50");
    cr_assert_eq(c.max_bad_steps, 2);
    lc_train_config_free(&c);
}

static void assert_defaults(const lc_train_config *c)
{
    cr_assert_not(c->qlora);
    cr_assert_eq(c->lora.r, 8);
    assert_close(c->lora.alpha, 16);
    assert_close(c->lora.dropout, 0);
    cr_assert_not(c->lora.use_rslora);
    cr_assert_not(c->lora.use_dora);
    cr_assert(c->lora.all_linear, "default: every linear of the family");
    cr_assert_not(c->lora_target_linear);
    cr_assert_null(c->lora_model_dir);
    cr_assert_eq(c->n_test_datasets, 0);
    cr_assert_eq(c->sequence_len, 2048);
    cr_assert_not(c->sample_packing);
    cr_assert(c->shuffle);
    cr_assert_eq(c->micro_batch_size, 2);
    cr_assert_eq(c->gradient_accumulation_steps, 1);
    cr_assert_eq(c->num_epochs, 1);
    cr_assert_eq(c->max_steps, 0);
    assert_close(c->learning_rate, 2.0e-4);
    cr_assert_eq(c->lr_scheduler, LC_LR_COSINE);
    cr_assert_eq(c->warmup_steps, 0);
    assert_close(c->warmup_ratio, 0);
    assert_close(c->cosine_min_lr_ratio, 0);
    assert_close(c->weight_decay, 0);
    assert_close(c->adam.weight_decay, 0);
    assert_close(c->adam.beta1, 0.9);
    assert_close(c->adam.beta2, 0.999);
    assert_close(c->adam.eps, 1e-8);
    assert_close(c->max_grad_norm, 1.0);
    cr_assert_not(c->gradient_checkpointing);
    cr_assert_eq(c->seed, 42);
    cr_assert_eq(c->device, LC_DEVICE_AUTO);
    cr_assert_eq(c->logging_steps, 1);
    cr_assert_eq(c->save_steps, 0);
    cr_assert_eq(c->save_total_limit, 0);
    cr_assert_eq(c->eval_steps, 0);
    cr_assert_null(c->resume_from_checkpoint);
    cr_assert_eq(c->max_bad_steps, 0);
}

Test(config, defaults_function)
{
    lc_train_config c;
    lc_train_config_defaults(&c);
    assert_defaults(&c);
    cr_assert_null(c.base_model);
    cr_assert_null(c.output_dir);
    lc_train_config_free(&c);   /* nothing allocated: a no-op */
}

Test(config, minimal_config_gets_defaults)
{
    lc_train_config c;
    expect_ok(&c, MINIMAL);
    assert_defaults(&c);
    cr_assert_str_eq(c.base_model, "models/tiny");
    cr_assert_eq(c.n_datasets, 1);
    cr_assert_str_eq(c.datasets[0], "data/train.jsonl");
    cr_assert_str_eq(c.output_dir, "out");
    lc_train_config_free(&c);
}

Test(config, completion_datasets)
{
    lc_train_config c;
    expect_ok(&c, "base_model: m\n"
                  "datasets:\n"
                  "  - {path: a.jsonl, type: completion}\n"
                  "  - {path: b.jsonl, type: completion, field: body}\n"
                  "  - {path: c.jsonl, type: tokenized}\n"
                  "  - {path: d.jsonl}\n");
    cr_assert_eq(c.n_datasets, 4);
    cr_assert_eq(c.dataset_specs[0].type, LC_DS_COMPLETION);
    cr_assert_str_eq(c.dataset_specs[0].field, "text");
    cr_assert_str_eq(c.dataset_specs[1].field, "body");
    cr_assert_eq(c.dataset_specs[2].type, LC_DS_TOKENIZED);
    cr_assert_null(c.dataset_specs[2].field);
    cr_assert_eq(c.dataset_specs[3].type, LC_DS_TOKENIZED);
    lc_train_config_free(&c);
}

/* Every Axolotl option of a chat_template dataset, with Axolotl's defaults. */
Test(config, chat_template_datasets)
{
    lc_train_config c;
    expect_ok(&c, "base_model: m\n"
                  "datasets:\n"
                  "  - path: a.jsonl\n"
                  "    type: chat_template\n"
                  "  - path: b.jsonl\n"
                  "    type: chat_template\n"
                  "    ds_type: json\n"
                  "    split: train\n"
                  "    field_messages: conversations\n"
                  "    message_property_mappings: {role: from, content: value}\n"
                  "    roles: {user: [human], assistant: [gpt, bot]}\n"
                  "    roles_to_train: [assistant, user]\n"
                  "    train_on_eos: all\n"
                  "    message_field_training: train\n"
                  "    drop_system_message: true\n"
                  "test_datasets:\n"
                  "  - {path: e.jsonl, type: alpaca}\n"
                  "  - {path: f.jsonl, type: input_output}\n");
    const lc_dataset_spec *a = &c.dataset_specs[0], *b = &c.dataset_specs[1];
    cr_assert_eq(a->type, LC_DS_CHAT_TEMPLATE);
    cr_assert_str_eq(a->field_messages, "messages");
    cr_assert_str_eq(a->role_key, "role");
    cr_assert_str_eq(a->content_key, "content");
    cr_assert_eq(a->n_roles, 0);
    cr_assert_eq(a->n_roles_to_train, 1);
    cr_assert_str_eq(a->roles_to_train[0], "assistant");
    cr_assert_eq(a->train_on_eos, LC_EOS_TURN);
    cr_assert_eq(a->train_on_eot, LC_EOS_TURN);
    cr_assert_null(a->message_field_training, "Axolotl: no per-message flag unless set");
    cr_assert_str_eq(b->field_messages, "conversations");
    cr_assert_str_eq(b->role_key, "from");
    cr_assert_str_eq(b->content_key, "value");
    cr_assert_eq(b->n_roles, 3);
    cr_assert_str_eq(b->roles[2].name, "bot");
    cr_assert_str_eq(b->roles[2].role, "assistant");
    cr_assert_eq(b->n_roles_to_train, 2);
    cr_assert_eq(b->train_on_eos, LC_EOS_ALL);
    cr_assert_eq(b->train_on_eot, LC_EOS_ALL, "train_on_eot follows train_on_eos");
    cr_assert_str_eq(b->message_field_training, "train");
    cr_assert(b->drop_system_message);
    cr_assert_eq(c.test_dataset_specs[0].type, LC_DS_ALPACA);
    cr_assert_eq(c.test_dataset_specs[1].type, LC_DS_INPUT_OUTPUT);
    lc_train_config_free(&c);
}

Test(config, bad_dataset_entries)
{
    static const struct { const char *yaml, *msg; } cases[] = {
        {"  - {path: a.jsonl, type: sharegpt}\n",
         "datasets[0].type: expected one of tokenized, completion, alpaca, chat_template, "
         "input_output, got 'sharegpt'"},
        {"  - {path: a.jsonl, type: alpaca, field_messages: m}\n",
         "datasets[0].field_messages: a type: alpaca dataset has no field_messages"},
        {"  - {path: a.jsonl, type: chat_template, train_on_eos: sometimes}\n",
         "datasets[0].train_on_eos: expected turn, all, last or none, got 'sometimes'"},
        {"  - {path: a.jsonl, type: chat_template, message_property_mappings: {name: n}}\n",
         "'name' cannot be mapped"},
        {"  - {path: a.jsonl, type: completion, ds_type: parquet}\n",
         "datasets[0].ds_type: only json is supported"},
        {"  - {path: a.jsonl, type: chat_template, roles: [user]}\n",
         "datasets[0].roles: expected a mapping"},
        {"  - {path: a.jsonl, type: chat_template, shuffle_merged_datasets: true}\n",
         "unknown key 'shuffle_merged_datasets'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char yaml[512];
        snprintf(yaml, sizeof yaml, "base_model: m\ndatasets:\n%s", cases[i].yaml);
        expect_bad(yaml, "", cases[i].msg);
    }
}

Test(config, null_means_default)
{
    lc_train_config c;
    expect_ok(&c, MINIMAL
              "lora_r:\n"
              "learning_rate: ~\n"
              "shuffle: null\n"
              "lr_scheduler: NULL\n"
              "device:\n"
              "optimizer:\n"
              "adapter:\n"
              "lora_model_dir:\n"
              "resume_from_checkpoint: ~\n"
              "lora_target_modules:\n"
              "test_datasets:\n"
              "output_dir:\n"
              "seed: Null\n");
    assert_defaults(&c);
    cr_assert_str_eq(c.output_dir, "out");
    lc_train_config_free(&c);
}

Test(config, path_resolution)
{
    lc_train_config c;
    /* base_dir with and without a trailing slash; absolute paths kept;
     * "auto" is not a path; the default output_dir resolves too. */
    expect_ok_sets(&c,
                   "base_model: /models/tiny\n"
                   "datasets: [{path: d.jsonl}, {path: ../up/e.jsonl}]\n"
                   "lora_model_dir: prev\n"
                   "resume_from_checkpoint: auto\n",
                   "/home/u/cfg/", NULL, 0);
    cr_assert_str_eq(c.base_model, "/models/tiny");
    cr_assert_str_eq(c.datasets[0], "/home/u/cfg/d.jsonl");
    cr_assert_str_eq(c.datasets[1], "/home/u/cfg/../up/e.jsonl");
    cr_assert_str_eq(c.lora_model_dir, "/home/u/cfg/prev");
    cr_assert_str_eq(c.resume_from_checkpoint, "auto");
    cr_assert_str_eq(c.output_dir, "/home/u/cfg/out");
    lc_train_config_free(&c);

    expect_ok_sets(&c, MINIMAL "output_dir: /abs/out\n", "rel/dir", NULL, 0);
    cr_assert_str_eq(c.base_model, "rel/dir/models/tiny");
    cr_assert_str_eq(c.datasets[0], "rel/dir/data/train.jsonl");
    cr_assert_str_eq(c.output_dir, "/abs/out");
    lc_train_config_free(&c);

    /* An empty base_dir keeps relative paths as given. */
    expect_ok_sets(&c, MINIMAL, "", NULL, 0);
    cr_assert_str_eq(c.base_model, "models/tiny");
    lc_train_config_free(&c);
}

Test(config, load_from_file)
{
    char *dir = lc_test_tmpdir();
    static const char yaml[] = MINIMAL "lora_r: 4\nresume_from_checkpoint: ckpt/checkpoint-2\n";
    char *path = lc_test_write_file(dir, "train.yaml", yaml, strlen(yaml));
    char *models = lc_test_path_in(dir, "models"), *tiny = lc_test_path_in(models, "tiny");
    cr_assert_eq(mkdir(models, 0755), 0);
    cr_assert_eq(mkdir(tiny, 0755), 0);   /* load() checks that base_model is a directory */
    lc_train_config c;
    lc_error err;
    char *sets[] = { "lora_alpha=8", "output_dir=runs/here" };
    int rc = lc_train_config_load(&c, path, sets, 2, &err);
    cr_assert_eq(rc, 0, "%s", err.msg);
    char want[4096];
    cr_assert_str_eq(c.config_path, path);
    snprintf(want, sizeof want, "%s/models/tiny", dir);
    cr_assert_str_eq(c.base_model, want);
    snprintf(want, sizeof want, "%s/data/train.jsonl", dir);
    cr_assert_str_eq(c.datasets[0], want);
    snprintf(want, sizeof want, "%s/ckpt/checkpoint-2", dir);
    cr_assert_str_eq(c.resume_from_checkpoint, want);
    cr_assert_str_eq(c.output_dir, "runs/here");   /* override: relative to the cwd */
    cr_assert_eq(c.lora.r, 4);
    assert_close(c.lora.alpha, 8);
    lc_train_config_free(&c);

    /* Errors from a file carry its path and the line. */
    static const char bad[] = MINIMAL "lora_r: 8.5\n";
    char *bad_path = lc_test_write_file(dir, "bad.yaml", bad, strlen(bad));
    rc = lc_train_config_load(&c, bad_path, NULL, 0, &err);
    cr_assert_eq(rc, -1);
    snprintf(want, sizeof want, "%s:4: lora_r: expected an integer", bad_path);
    lc_test_assert_msg_has(&err, want);
    lc_train_config_free(&c);

    /* Over the 1 MB cap. */
    size_t big_n = (1u << 20) + 16;
    char *big = malloc(big_n);
    memset(big, '#', big_n);
    big[big_n - 1] = '\n';
    char *big_path = lc_test_write_file(dir, "big.yaml", big, big_n);
    rc = lc_train_config_load(&c, big_path, NULL, 0, &err);
    cr_assert_eq(rc, -1);
    cr_assert(strstr(err.msg, "more than") != NULL, "%s", err.msg);
    lc_train_config_free(&c);

    /* Missing file. */
    char missing[4096];
    snprintf(missing, sizeof missing, "%s/nope.yaml", dir);
    rc = lc_train_config_load(&c, missing, NULL, 0, &err);
    cr_assert_eq(rc, -1);
    cr_assert(strstr(err.msg, "nope.yaml") != NULL, "%s", err.msg);
    lc_train_config_free(&c);

    unlink(path);
    unlink(bad_path);
    unlink(big_path);
    rmdir(tiny);
    rmdir(models);
    rmdir(dir);
    free(tiny);
    free(models);
    free(big);
    free(path);
    free(bad_path);
    free(big_path);
    free(dir);
}

Test(config, qlora_spellings)
{
    lc_train_config c;
    expect_ok(&c, MINIMAL "adapter: lora\n");
    cr_assert_not(c.qlora);
    lc_train_config_free(&c);
    expect_ok(&c, MINIMAL "adapter: qlora\n");
    cr_assert(c.qlora);
    lc_train_config_free(&c);
    expect_ok(&c, MINIMAL "adapter: lora\nload_in_4bit: true\n");
    cr_assert(c.qlora);
    lc_train_config_free(&c);
}

Test(config, target_module_forms)
{
    lc_train_config c;
    expect_ok(&c, MINIMAL "lora_target_modules: [o_proj]\nlora_target_linear: true\n");
    cr_assert(c.lora.all_linear, "target_linear: every linear of the family");
    cr_assert(c.lora_target_linear);
    lc_train_config_free(&c);

    expect_ok(&c, MINIMAL "lora_target_modules: all-linear\n");
    cr_assert(c.lora.all_linear, "all-linear");
    for (int m = 0; m < LC_MOD_COUNT; m++)
        cr_assert_not(c.lora.targets[m], "all-linear: resolved per family, not here (%d)", m);
    lc_train_config_free(&c);

    expect_ok(&c, MINIMAL "lora_target_modules: gate_proj\n");
    cr_assert_not(c.lora.all_linear);
    for (int m = 0; m < LC_MOD_COUNT; m++)
        cr_assert_eq(c.lora.targets[m], m == LC_MOD_GATE, "single: target %d", m);
    lc_train_config_free(&c);

    /* Axolotl's lora_target_parameters: the experts' parameters, beside the modules */
    expect_ok(&c, MINIMAL "lora_target_parameters: [experts.gate_up_proj, experts.down_proj]\n"
              "lora_target_modules: [q_proj]\n");
    for (int m = 0; m < LC_MOD_COUNT; m++)
        cr_assert_eq(c.lora.targets[m], m == LC_MOD_Q || lc_module_is_expert(m), "target %d", m);
    char shown[128] = "";
    for (int k = 0; k < lc_train_config_key_count(); k++) {
        const char *name;
        lc_train_config_key(k, &name);
        if (!strcmp(name, "lora_target_parameters"))
            lc_train_config_value(&c, k, shown, sizeof shown);
    }
    cr_expect(strstr(shown, "experts.gate_up_proj") && strstr(shown, "experts.down_proj"), "%s",
              shown);
    lc_train_config_free(&c);
    expect_bad(MINIMAL "lora_target_parameters: [q_proj]\n", "t.yaml:4: lora_target_parameters[0]: ",
               "unknown parameter 'q_proj' (expected experts.gate_up_proj or experts.down_proj)");
    expect_bad(MINIMAL "lora_target_modules: [experts.down_proj]\n",
               "t.yaml:4: lora_target_modules[0]: ", "unknown module 'experts.down_proj'");

    /* An empty list is fine when lora_target_linear supplies the targets. */
    expect_ok(&c, MINIMAL "lora_target_modules: []\nlora_target_linear: true\n");
    cr_assert(c.lora.all_linear);
    lc_train_config_free(&c);
    expect_bad(MINIMAL "lora_target_modules: []\n", "t.yaml:4: lora_target_modules:",
               "no modules to adapt");
}

Test(config, number_forms)
{
    lc_train_config c;
    expect_ok(&c, MINIMAL "learning_rate: 1e-3\nlora_alpha: 16\nadam_epsilon: .5E-7\n"
                          "weight_decay: +0.25\nmax_grad_norm: 0\nwarmup_steps: +10\n");
    assert_close(c.learning_rate, 1e-3);
    assert_close(c.lora.alpha, 16);
    assert_close(c.adam.eps, 0.5e-7);
    assert_close(c.weight_decay, 0.25);
    assert_close(c.max_grad_norm, 0);
    cr_assert_eq(c.warmup_steps, 10);
    lc_train_config_free(&c);
}

Test(config, set_overrides)
{
    lc_train_config c;
    char *sets[] = {
        "learning_rate=1e-3",                 /* number */
        "lora_target_modules=[q_proj,v_proj]", /* list */
        "lr_scheduler=constant",              /* string (enum) */
        "shuffle=false",                      /* bool */
        "lora_r=32",
        "lora_r=64",                          /* the last one wins */
        "datasets=[{path: other.jsonl}, {path: /abs/x.jsonl, type: tokenized}]",
        "lora_model_dir=null",                /* back to absent */
        "base_model=\"models/with space\"",
        "warmup_steps=5",
        "device=cuda",
    };
    expect_ok_sets(&c, MINIMAL "lora_model_dir: prev\nlearning_rate: 5e-5\n", "/cfg", sets,
                   (int)(sizeof sets / sizeof sets[0]));
    assert_close(c.learning_rate, 1e-3);
    for (int m = 0; m < LC_MOD_COUNT; m++)
        cr_assert_eq(c.lora.targets[m], m == LC_MOD_Q || m == LC_MOD_V, "target %d", m);
    cr_assert_eq(c.lr_scheduler, LC_LR_CONSTANT);
    cr_assert_not(c.shuffle);
    cr_assert_eq(c.lora.r, 64);
    cr_assert_eq(c.n_datasets, 2);
    cr_assert_str_eq(c.datasets[0], "other.jsonl");   /* relative to the cwd */
    cr_assert_str_eq(c.datasets[1], "/abs/x.jsonl");
    cr_assert_null(c.lora_model_dir);
    cr_assert_str_eq(c.base_model, "models/with space");
    cr_assert_eq(c.warmup_steps, 5);
    cr_assert_eq(c.device, LC_DEVICE_CUDA);
    cr_assert_str_eq(c.output_dir, "/cfg/out");
    lc_train_config_free(&c);

    /* Overrides can supply required keys missing from the file. */
    char *req[] = { "base_model=/m", "datasets=[{path: d.jsonl}]" };
    expect_ok_sets(&c, "lora_r: 4\n", "/cfg", req, 2);
    cr_assert_str_eq(c.base_model, "/m");
    cr_assert_str_eq(c.datasets[0], "d.jsonl");
    lc_train_config_free(&c);
}

Test(config, set_errors)
{
    char *unknown[] = { "lerning_rate=1e-3" };
    expect_bad_sets(MINIMAL, unknown, 1, "--set lerning_rate=1e-3: ",
                    "unknown key 'lerning_rate' (did you mean 'learning_rate'?)");
    char *bad_value[] = { "lora_r=abc" };
    expect_bad_sets(MINIMAL, bad_value, 1, "--set lora_r=abc: lora_r: ",
                    "expected an integer from 1 to 4096, got 'abc'");
    char *bad_bool[] = { "shuffle=maybe" };
    expect_bad_sets(MINIMAL, bad_bool, 1, "--set shuffle=maybe: shuffle: ", "true or false");
    char *bad_list[] = { "lora_target_modules=[q_proj,qkv]" };
    expect_bad_sets(MINIMAL, bad_list, 1, "--set lora_target_modules=[q_proj,qkv]: ",
                    "unknown module 'qkv'");
    char *no_eq[] = { "lora_r" };
    expect_bad_sets(MINIMAL, no_eq, 1, "--set lora_r: ", "expected key=value");
    char *syntax[] = { "lora_target_modules=[q_proj" };
    expect_bad_sets(MINIMAL, syntax, 1, "--set lora_target_modules=[q_proj: ",
                    "YAML syntax error");
    char *alias[] = { "lora_r=*x" };
    expect_bad_sets(MINIMAL, alias, 1, "--set lora_r=*x: ", "aliases");
    /* Cross-key errors name the override that caused them. */
    char *warm[] = { "warmup_ratio=0.1" };
    expect_bad_sets(MINIMAL "warmup_steps: 10\n", warm, 1, "--set warmup_ratio=0.1: warmup_ratio: ",
                    "both set");
    char *nodata[] = { "datasets=[]" };
    expect_bad_sets(MINIMAL, nodata, 1, "--set datasets=[]: datasets: ", "required");
}

/* The bad-input table: YAML after MINIMAL (or on its own), the expected
 * message prefix (label and line) and a specific substring. */
typedef struct bad_case {
    const char *yaml;
    const char *prefix;
    const char *substr;
} bad_case;

static const bad_case bad_cases[] = {
    { MINIMAL "lerning_rate: 1e-4\n", "t.yaml:4: ",
      "unknown key 'lerning_rate' (did you mean 'learning_rate'?)" },
    { MINIMAL "lora_target: [q_proj]\n", "t.yaml:4: ",
      "unknown key 'lora_target' (did you mean 'lora_target_modules'?)" },
    { MINIMAL "epochs: 3\n", "t.yaml:4: ", "unknown key 'epochs' (did you mean 'num_epochs'?)" },
    { MINIMAL "batch_size: 3\n", "t.yaml:4: ", "(did you mean 'micro_batch_size'?)" },
    { MINIMAL "\tlora_r: 8\n", "t.yaml:4: ", "YAML syntax error: found a tab character" },
    { "datasets: [{path: a}]\n\tbase_model: m\n", "t.yaml:2: ",
      "YAML syntax error: found character that cannot start any token (a tab: YAML indents "
      "with spaces only)" },
    { MINIMAL "foo_bar_baz: x\n", "t.yaml:4: ", "unknown key 'foo_bar_baz' (configs/README.md" },
    { MINIMAL "lora_r: 8\nlora_r: 16\n", "t.yaml:5: lora_r: ", "duplicate key (first given on line 4)" },
    { MINIMAL "lora_r: [8\nlora_alpha: 16\n", "t.yaml:", "YAML syntax error" },
    { "base_model: a\n  bad indent: 1\n", "t.yaml:2: ", "YAML syntax error" },
    { "- base_model: a\n", "t.yaml:1: ", "top level must be a mapping" },
    { "just a string\n", "t.yaml:1: ", "top level must be a mapping" },
    { "# only a comment\n", "t.yaml: ", "empty" },
    { MINIMAL "lora_r: 8.5\n", "t.yaml:4: lora_r: ", "expected an integer from 1 to 4096, got '8.5'" },
    { MINIMAL "lora_r: \"8\"\n", "t.yaml:4: lora_r: ", "got the quoted string \"8\"" },
    { MINIMAL "lora_r: 0\n", "t.yaml:4: lora_r: ", "expected an integer from 1 to 4096, got '0'" },
    { MINIMAL "lora_r: 4097\n", "t.yaml:4: lora_r: ", "from 1 to 4096" },
    { MINIMAL "learning_rate: -1\n", "t.yaml:4: learning_rate: ", "expected a finite number > 0" },
    { MINIMAL "learning_rate: 0\n", "t.yaml:4: learning_rate: ", "> 0" },
    { MINIMAL "learning_rate: .inf\n", "t.yaml:4: learning_rate: ", "finite" },
    { MINIMAL "learning_rate: 1e999\n", "t.yaml:4: learning_rate: ", "finite" },
    { MINIMAL "learning_rate: fast\n", "t.yaml:4: learning_rate: ", "got 'fast'" },
    { MINIMAL "lr_scheduler: cosinus\n", "t.yaml:4: lr_scheduler: ",
      "expected one of constant, linear, cosine, got 'cosinus'" },
    { MINIMAL "lora_target_modules: [q_proj, qkv_projection]\n", "t.yaml:4: lora_target_modules[1]: ",
      "unknown module 'qkv_projection'" },
    { MINIMAL "lora_target_modules: {q_proj: 1}\n", "t.yaml:4: lora_target_modules: ",
      "got a mapping" },
    { "base_model: m\nlora_r: 8\n", "t.yaml: datasets: ", "required" },
    { "base_model: m\ndatasets: []\n", "t.yaml:2: datasets: ", "required" },
    { "datasets: [{path: a}]\n", "t.yaml: base_model: ", "required" },
    { "base_model: m\ndatasets:\n  - type: tokenized\n", "t.yaml:3: datasets[0].path: ",
      "required" },
    { "base_model: m\ndatasets:\n  - path: a.jsonl\n    type: alpaca:chat\n",
      "t.yaml:4: datasets[0].type: ", "expected one of tokenized, completion, alpaca, chat_template, input_output, got 'alpaca:chat'" },
    { "base_model: m\ndatasets:\n  - path: a.jsonl\n    field: body\n",
      "t.yaml:4: datasets[0].field: ", "a type: tokenized dataset has no field (it belongs to type: completion)" },
    { "base_model: m\ndatasets:\n  - path: a.jsonl\n    type: completion\n    field: ''\n",
      "t.yaml:5: datasets[0].field: ", "empty" },
    { "base_model: m\ndatasets:\n  - a.jsonl\n", "t.yaml:3: datasets[0]: ", "expected a mapping" },
    { "base_model: m\ndatasets: {path: a}\n", "t.yaml:2: datasets: ", "expected a list" },
    { "base_model: m\ndatasets: [{path: a, split: test}]\n", "t.yaml:2: datasets[0].split: ",
      "only train is supported" },
    { "base_model: m\ndatasets: [{path: a}, {path: b, type: sharegpt}]\n",
      "t.yaml:2: datasets[1].type: ", "got 'sharegpt'" },
    { "base_model: m\ndatasets: [{path: a, path: b}]\n", "t.yaml:2: datasets[0]: ",
      "duplicate key 'path'" },
    { "base_model: m\ndatasets: [{path: a}]\ntest_datasets: [{path: b, type: chat}]\n",
      "t.yaml:3: test_datasets[0].type: ", "got 'chat'" },
    { MINIMAL "warmup_steps: 10\nwarmup_ratio: 0.1\n", "t.yaml:5: warmup_ratio: ",
      "warmup_steps (10) and warmup_ratio (0.1) are both set" },
    { MINIMAL "warmup_ratio: 1.0\n", "t.yaml:4: warmup_ratio: ", "[0, 1)" },
    { MINIMAL "shuffle: maybe\n", "t.yaml:4: shuffle: ", "expected true or false, got 'maybe'" },
    { MINIMAL "shuffle: yes\n", "t.yaml:4: shuffle: ", "expected true or false" },
    { MINIMAL "shuffle: \"true\"\n", "t.yaml:4: shuffle: ", "quoted string" },
    { MINIMAL "sequence_len: 1\n", "t.yaml:4: sequence_len: ", "from 2 to 1048576, got '1'" },
    { MINIMAL "adam_beta1: 1.0\n", "t.yaml:4: adam_beta1: ", "a number in [0, 1), got '1.0'" },
    { MINIMAL "adam_beta2: -0.1\n", "t.yaml:4: adam_beta2: ", "[0, 1)" },
    { MINIMAL "adam_epsilon: 0\n", "t.yaml:4: adam_epsilon: ", "> 0" },
    { MINIMAL "lora_dropout: 1\n", "t.yaml:4: lora_dropout: ", "[0, 1)" },
    { MINIMAL "lora_alpha: 0\n", "t.yaml:4: lora_alpha: ", "> 0" },
    { MINIMAL "weight_decay: -0.1\n", "t.yaml:4: weight_decay: ", ">= 0" },
    { MINIMAL "max_grad_norm: -1\n", "t.yaml:4: max_grad_norm: ", ">= 0" },
    { MINIMAL "micro_batch_size: 0\n", "t.yaml:4: micro_batch_size: ", "from 1 to 65536" },
    { MINIMAL "gradient_accumulation_steps: 0\n", "t.yaml:4: gradient_accumulation_steps: ",
      ">= 1" },
    { MINIMAL "num_epochs: 0\n", "t.yaml:4: num_epochs: ", ">= 1" },
    { MINIMAL "max_steps: -1\n", "t.yaml:4: max_steps: ", ">= 0" },
    { MINIMAL "logging_steps: 0\n", "t.yaml:4: logging_steps: ", ">= 1" },
    { MINIMAL "save_steps: -5\n", "t.yaml:4: save_steps: ", ">= 0" },
    { MINIMAL "eval_steps: 1.5\n", "t.yaml:4: eval_steps: ", "an integer" },
    { MINIMAL "save_total_limit: -1\n", "t.yaml:4: save_total_limit: ", ">= 0" },
    { MINIMAL "max_bad_steps: -1\n", "t.yaml:4: max_bad_steps: ", ">= 0" },
    { MINIMAL "seed: -1\n", "t.yaml:4: seed: ", "from 0 to 2^63-1" },
    { MINIMAL "seed: 9223372036854775808\n", "t.yaml:4: seed: ", "from 0 to 2^63-1" },
    { MINIMAL "device: tpu\n", "t.yaml:4: device: ", "expected one of auto, cpu, cuda, got 'tpu'" },
    { MINIMAL "optimizer: sgd\n", "t.yaml: ",
      "1 Axolotl key that would change training, not implemented by lorac: line 4 optimizer: sgd "
      "(another optimizer; lorac implements AdamW: adamw, adamw_torch, adamw_torch_fused) "
      "(remove it or turn it off)" },
    { MINIMAL "optimizer: [adamw]\n", "t.yaml:4: optimizer: ", "got a list" },
    { MINIMAL "val_set_size: 1.0\n", "t.yaml:4: val_set_size: ",
      "expected a fraction in [0, 1) or a whole number of rows > 1, got '1.0'" },
    { MINIMAL "val_set_size: 1\n", "t.yaml:4: val_set_size: ", "rows > 1, got '1'" },
    { MINIMAL "val_set_size: 2.5\n", "t.yaml:4: val_set_size: ", "rows > 1, got '2.5'" },
    { MINIMAL "val_set_size: -1\n", "t.yaml:4: val_set_size: ", "got '-1'" },
    { MINIMAL "val_set_size: \"0.1\"\n", "t.yaml:4: val_set_size: ", "quoted string" },
    { MINIMAL "val_set_size: 0.1\ntest_datasets: [{path: e.jsonl}]\n", "t.yaml:4: val_set_size: ",
      "set either val_set_size or test_datasets, not both" },
    { MINIMAL "train_on_inputs: maybe\n", "t.yaml:4: train_on_inputs: ", "true or false" },
    { MINIMAL "special_tokens: [a]\n", "t.yaml:4: special_tokens: ", "expected a mapping" },
    { MINIMAL "special_tokens:\n  sep_token: x\n", "t.yaml:5: special_tokens: ",
      "unknown key 'sep_token' (lorac takes bos_token, eos_token, pad_token and unk_token)" },
    { MINIMAL "special_tokens:\n  pad_token: [x]\n", "t.yaml:5: special_tokens.pad_token: ",
      "got a list" },
    { MINIMAL "special_tokens:\n  pad_token: a\n  pad_token: b\n",
      "t.yaml:6: special_tokens.pad_token: ", "duplicate key" },
    { MINIMAL "chat_template: chatml2\n", "t.yaml:4: chat_template: ",
      "unknown chat template 'chatml2'" },
    { MINIMAL "chat_template: tokenizer_default_fallback_jinja\n", "t.yaml:4: chat_template: ",
      "unknown chat template" },
    { MINIMAL "chat_template: jinja\n", "t.yaml:4: chat_template: ",
      "chat_template: jinja needs chat_template_jinja" },
    { MINIMAL "chat_template: chatml\nchat_template_jinja: '{{ x }}'\n",
      "t.yaml:5: chat_template_jinja: ",
      "is used only with chat_template: jinja (or no chat_template), but chat_template is chatml" },
    { MINIMAL "chat_template_jinja: ''\n", "t.yaml:4: chat_template_jinja: ", "empty string" },
    { MINIMAL "eot_tokens: <eot>\n", "t.yaml:4: eot_tokens: ", "expected a list of token strings" },
    { MINIMAL "eot_tokens: [a, [b]]\n", "t.yaml:4: eot_tokens[1]: ", "got a list" },
    { MINIMAL "excess_length_strategy: split\n", "t.yaml:4: excess_length_strategy: ",
      "expected one of drop, truncate, raise, got 'split'" },
    { MINIMAL "dataset_prepared_path: [a]\n", "t.yaml:4: dataset_prepared_path: ", "got a list" },
    { MINIMAL "adapter: dora\n", "t.yaml:4: adapter: ", "expected one of lora, qlora" },
    { MINIMAL "load_in_4bit: 1\n", "t.yaml:4: load_in_4bit: ", "true or false" },
    { MINIMAL "output_dir: [a]\n", "t.yaml:4: output_dir: ", "got a list" },
    { MINIMAL "output_dir: \"\"\n", "t.yaml:4: output_dir: ", "empty string" },
    { MINIMAL "base: &b 1\n", "t.yaml:4: ", "anchors (&b) are not supported" },
    { "base_model: &m x\ndatasets: [{path: *m}]\n", "t.yaml:1: ", "anchors" },
    { MINIMAL "lora_r: !!int 8\n", "t.yaml:4: ", "tags (tag:yaml.org,2002:int) are not supported" },
    { MINIMAL "---\nlora_r: 8\n", "t.yaml:4: ", "only one YAML document" },
    { MINIMAL "[a]: 1\n", "t.yaml:4: ", "keys must be plain names" },
};

Test(config, bad_inputs)
{
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++)
        expect_bad(bad_cases[i].yaml, bad_cases[i].prefix, bad_cases[i].substr);
}

Test(config, too_many_datasets)
{
    char yaml[2048] = "base_model: m\ndatasets:\n";
    for (int i = 0; i < LC_CONFIG_MAX_DATASETS + 1; i++) {
        size_t l = strlen(yaml);
        snprintf(yaml + l, sizeof yaml - l, "  - path: d%d.jsonl\n", i);
    }
    expect_bad(yaml, "t.yaml:3: datasets: ", "at most 16 datasets");
    /* Exactly the maximum is fine. */
    char ok[2048] = "base_model: m\ndatasets:\n";
    for (int i = 0; i < LC_CONFIG_MAX_DATASETS; i++) {
        size_t l = strlen(ok);
        snprintf(ok + l, sizeof ok - l, "  - {path: d%d.jsonl, type: tokenized}\n", i);
    }
    lc_train_config c;
    expect_ok(&c, ok);
    cr_assert_eq(c.n_datasets, LC_CONFIG_MAX_DATASETS);
    cr_assert_str_eq(c.datasets[15], "d15.jsonl");
    lc_train_config_free(&c);
}

Test(config, embedded_nul_and_oversize_text)
{
    /* A double-quoted \0 cannot become a C string path. */
    expect_bad("base_model: \"a\\0b\"\ndatasets: [{path: a}]\n", "t.yaml:1: base_model: ",
               "NUL");
    /* parse() enforces the same 1 MB cap as load(). */
    size_t n = (1u << 20) + 1;
    char *big = malloc(n);
    memset(big, ' ', n);
    lc_train_config c;
    lc_error err;
    int rc = lc_train_config_parse(&c, big, n, "big", NULL, NULL, 0, &err);
    cr_assert_eq(rc, -1);
    cr_assert(strstr(err.msg, "more than") != NULL, "%s", err.msg);
    lc_train_config_free(&c);
    free(big);
}

/* ---- Axolotl configs ------------------------------------------------------- */

/* Every unknown key is named in one message, with its line and suggestion;
 * one unknown key keeps the one-key message. */
Test(config, unknown_keys_all_at_once)
{
    expect_bad(MINIMAL "lora_rr: 8\nfoo: 1\nlora_r: 4\nbar: [x]\n", "t.yaml: ",
               "t.yaml: 3 unknown keys: line 4 'lora_rr' (did you mean 'lora_r'?), line 5 'foo', "
               "line 7 'bar' (configs/README.md lists the known keys)");
    /* Overrides too, with the file's. */
    char *sets[] = { "lerning_rate=1e-3", "zzz_qqq=1", "lora_r=4" };
    expect_bad_sets(MINIMAL "foo: 1\n", sets, 3, "t.yaml: ",
                    "t.yaml: 3 unknown keys: line 4 'foo', --set 'lerning_rate' (did you mean "
                    "'learning_rate'?), --set 'zzz_qqq' (configs/README.md lists the known keys)");
    /* Unknown and refused keys in one message. */
    expect_bad(MINIMAL "foo: 1\nload_in_8bit: true\nneftune_noise_alpha: 5\n", "t.yaml: ",
               "t.yaml: 1 unknown key: line 4 'foo' (configs/README.md lists the known keys); 2 "
               "Axolotl keys that would change training, not implemented by lorac: line 5 "
               "load_in_8bit: true (would load the base model in 8 bits (LLM.int8)), line 6 "
               "neftune_noise_alpha: 5 (would add noise to the embeddings (NEFTune)) (remove them "
               "or turn them off)");
    /* Many unknown keys: the message stays one line and says how many more. */
    char many[8192] = MINIMAL;
    for (int i = 0; i < 60; i++) {
        size_t l = strlen(many);
        snprintf(many + l, sizeof many - l, "unknown_key_number_%02d: 1\n", i);
    }
    lc_train_config c;
    lc_error err;
    cr_assert_eq(parse_sets(&c, many, NULL, NULL, 0, &err), -1);
    lc_test_assert_msg_has(&err, "t.yaml: 60 unknown keys: line 4 'unknown_key_number_00'");
    lc_test_assert_msg_has(&err, "more (configs/README.md lists the known keys)");
    lc_train_config_free(&c);
}

/* Axolotl keys that do not change training: one warning line naming them
 * all, notes after the keys that share them; the value may decide. */
Test(config, axolotl_accepted_without_effect)
{
    lc_train_config c;
    expect_ok(&c, MINIMAL "wandb_project: x\nhub_model_id: me/m\nstrict: false\nbf16: auto\n"
                          "fp16:\ndeepspeed:\nload_in_8bit: false\ngroup_by_length: false\n"
                          "early_stopping_patience:\noptimizer: paged_adamw_32bit\n"
                          "flash_attention: true\n");
    cr_assert_str_eq(c.warning,
                     "t.yaml: accepted without effect (they do not change training): "
                     "wandb_project, hub_model_id, strict, deepspeed, load_in_8bit, "
                     "group_by_length, early_stopping_patience, bf16, fp16 (lorac computes in "
                     "f32 on CPU), optimizer: paged_adamw_32bit (the same update as lorac's "
                     "AdamW), flash_attention (lorac computes exact attention itself)");
    lc_train_config_free(&c);
    /* lorac's own optimizer names and keys give no warning. */
    expect_ok(&c, MINIMAL "optimizer: adamw_torch\n");
    cr_assert_null(c.warning);
    lc_train_config_free(&c);
    /* --set the same way; a key given again is named once. */
    char *sets[] = { "wandb_project=y", "tf32=false" };
    expect_ok_sets(&c, MINIMAL "wandb_project: x\n", NULL, sets, 2);
    cr_assert_str_eq(c.warning, "t.yaml: accepted without effect (they do not change "
                                "training): wandb_project, tf32 (lorac computes in f32 on CPU)");
    lc_train_config_free(&c);
    /* Refused when on, from --set too. */
    char *on[] = { "deepspeed=zero2.json", "lora_fan_in_fan_out=true" };
    expect_bad_sets(MINIMAL "optimizer: adamw_bnb_8bit\n", on, 2, "t.yaml: ",
                    "t.yaml: 3 Axolotl keys that would change training, not implemented by "
                    "lorac: line 4 optimizer: adamw_bnb_8bit (would keep AdamW's moments in 8 "
                    "bits (bitsandbytes); lorac's AdamW is adamw_torch), --set deepspeed: "
                    "zero2.json (would train under DeepSpeed (ZeRO) with its config), --set "
                    "lora_fan_in_fan_out: true (would read the base weights transposed (GPT-2 "
                    "Conv1D layout)) (remove them or turn them off)");
}

/* The data keys: values, defaults, Axolotl's rules. */
Test(config, data_keys)
{
    lc_train_config c;
    expect_ok(&c, MINIMAL);
    cr_assert_eq(c.val_set_size, 0);
    cr_assert(!c.val_set_size_rows);
    cr_assert(!c.train_on_inputs);
    cr_assert_null(c.chat_template);
    cr_assert_eq(c.n_eot_tokens, 0);
    cr_assert_eq(c.excess_length_strategy, LC_EXCESS_DROP);
    lc_train_config_free(&c);

    expect_ok_sets(&c, MINIMAL "val_set_size: 0.05\ntrain_on_inputs: true\n"
                               "special_tokens:\n  pad_token: \"<|end_of_text|>\"\n  bos_token: <s>\n"
                               "dataset_prepared_path: last_run_prepared\n"
                               "chat_template: tokenizer_default_fallback_chatml\n"
                               "eot_tokens: [\"<|eot_id|>\", \"[/INST]\"]\n"
                               "excess_length_strategy: truncate\n",
                   "/cfg", NULL, 0);
    assert_close(c.val_set_size, 0.05);
    cr_assert(!c.val_set_size_rows);
    cr_assert(c.train_on_inputs);
    cr_assert_str_eq(c.special_tokens[LC_SPECIAL_PAD], "<|end_of_text|>");
    cr_assert_str_eq(c.special_tokens[LC_SPECIAL_BOS], "<s>");
    cr_assert_null(c.special_tokens[LC_SPECIAL_EOS]);
    cr_assert_null(c.special_tokens[LC_SPECIAL_UNK]);
    cr_assert_str_eq(c.dataset_prepared_path, "/cfg/last_run_prepared");
    cr_assert_str_eq(c.chat_template, "tokenizer_default_fallback_chatml");
    cr_assert_eq(c.n_eot_tokens, 2);
    cr_assert_str_eq(c.eot_tokens[0], "<|eot_id|>");
    cr_assert_str_eq(c.eot_tokens[1], "[/INST]");
    cr_assert_eq(c.excess_length_strategy, LC_EXCESS_TRUNCATE);
    lc_train_config_free(&c);

    /* An integer val_set_size is a number of rows; chat_template_jinja alone
     * means chat_template: jinja (as Axolotl); overrides reset to defaults. */
    char *sets[] = { "excess_length_strategy=null", "eot_tokens=null" };
    expect_ok_sets(&c, MINIMAL "val_set_size: 100\nchat_template_jinja: tpl/chat.jinja\n"
                               "excess_length_strategy: raise\neot_tokens: [a]\n",
                   NULL, sets, 2);
    cr_assert_eq(c.val_set_size, 100);
    cr_assert(c.val_set_size_rows);
    lc_train_config_free(&c);
    expect_ok(&c, MINIMAL "val_set_size: 2.0e3\n");   /* Axolotl: int(v) rows when v > 1 */
    cr_assert_eq(c.val_set_size, 2000);
    cr_assert(c.val_set_size_rows);
    lc_train_config_free(&c);
    expect_ok_sets(&c, MINIMAL "val_set_size: 100\nchat_template_jinja: tpl/chat.jinja\n"
                               "excess_length_strategy: raise\neot_tokens: [a]\n",
                   NULL, sets, 2);
    cr_assert_str_eq(c.chat_template, "jinja");
    cr_assert_str_eq(c.chat_template_jinja, "tpl/chat.jinja");   /* stored as given */
    cr_assert_eq(c.excess_length_strategy, LC_EXCESS_DROP);
    cr_assert_eq(c.n_eot_tokens, 0);
    cr_assert_null(c.eot_tokens);
    lc_train_config_free(&c);

    expect_ok(&c, MINIMAL "chat_template: jinja\nchat_template_jinja: \"{{ messages }}\"\n");
    cr_assert_str_eq(c.chat_template_jinja, "{{ messages }}");
    lc_train_config_free(&c);

    /* The data keys are FIXED for a resume. */
    for (int i = 0; i < lc_train_config_key_count(); i++) {
        const char *name;
        lc_resume_class k = lc_train_config_key(i, &name);
        if (!strcmp(name, "val_set_size") || !strcmp(name, "train_on_inputs") ||
            !strcmp(name, "special_tokens") || !strcmp(name, "chat_template") ||
            !strcmp(name, "chat_template_jinja") || !strcmp(name, "eot_tokens") ||
            !strcmp(name, "excess_length_strategy"))
            cr_assert_eq(k, LC_RESUME_FIXED, "%s", name);
        if (!strcmp(name, "dataset_prepared_path"))
            cr_assert_eq(k, LC_RESUME_NA);
    }
}

/* base_model and lora_model_dir must be directories when a file is loaded;
 * a hub id says how to get a local copy. */
Test(config, base_model_not_a_directory)
{
    char *dir = lc_test_tmpdir();
    char *file = lc_test_write_text(dir, "notadir", "x");
    char *yaml = lc_test_asprintf("datasets: [{path: d.jsonl}]\nbase_model: meta-llama/Llama-3.2-1B\n");
    char *path = lc_test_write_text(dir, "c.yaml", yaml);
    lc_train_config c;
    lc_error err;
    cr_assert_eq(lc_train_config_load(&c, path, NULL, 0, &err), -1);
    char *want = lc_test_asprintf("%s:2: base_model 'meta-llama/Llama-3.2-1B' is not a directory "
                                  "(a Hugging Face hub id needs a local copy: huggingface-cli "
                                  "download meta-llama/Llama-3.2-1B --local-dir DIR, then "
                                  "base_model: DIR)", path);
    cr_assert_str_eq(err.msg, want);
    free(want);
    /* A file, a missing absolute path; lora_model_dir the same, --set too. */
    char *s1 = lc_test_asprintf("base_model=%s", file);
    char *sets[] = { s1 };
    cr_assert_eq(lc_train_config_load(&c, path, sets, 1, &err), -1);
    want = lc_test_asprintf("--set %s: base_model '%s' is not a directory (it is a file)", s1, file);
    cr_assert_str_eq(err.msg, want);
    free(want);
    char *s2 = lc_test_asprintf("base_model=%s", dir);
    char *sets2[] = { s2, "lora_model_dir=someone/adapter" };
    cr_assert_eq(lc_train_config_load(&c, path, sets2, 2, &err), -1);
    lc_test_assert_msg_has(&err, "--set lora_model_dir=someone/adapter: lora_model_dir "
                                 "'someone/adapter' is not a directory (a Hugging Face hub id "
                                 "needs a local copy: huggingface-cli download someone/adapter "
                                 "--local-dir DIR, then lora_model_dir: DIR)");
    char *sets3[] = { s2, "lora_model_dir=/nonexistent/x/y" };
    cr_assert_eq(lc_train_config_load(&c, path, sets3, 2, &err), -1);
    lc_test_assert_msg_has(&err, "lora_model_dir '/nonexistent/x/y' is not a directory (No such "
                                 "file or directory)");
    cr_assert_eq(lc_train_config_load(&c, path, sets2, 1, &err), 0, "%s", err.msg);
    lc_train_config_free(&c);
    lc_test_rm_rf(dir);
    free(s1);
    free(s2);
    free(yaml);
    free(path);
    free(file);
    free(dir);
}

/* Axolotl's example configs (tests/fixtures/axolotl/, only base_model and
 * the dataset edited) load as they are: the keys without effect in one
 * warning line, the keys that change training refused in one error. */
static int load_fixture(const char *name, lc_train_config *c, char *const *sets, int n_sets,
                        lc_error *err)
{
    char *rel = lc_test_asprintf("axolotl/%s", name);
    int rc = lc_train_config_load(c, lc_test_fixture(rel), sets, n_sets, err);
    free(rel);
    return rc;
}

static const char NO_EFFECT_LLAMA3_QLORA[] =
    ": accepted without effect (they do not change training): load_in_8bit, strict, "
    "lora_fan_in_fan_out, wandb_project, wandb_entity, wandb_watch, wandb_name, wandb_log_model, "
    "group_by_length, early_stopping_patience, eval_table_size, debug, deepspeed, fsdp, "
    "fsdp_config, model_type (lorac reads the architecture from config.json), tokenizer_type "
    "(lorac reads tokenizer.json), pad_to_sequence_len (padding does not change the loss), "
    "optimizer: paged_adamw_32bit (the same update as lorac's AdamW), bf16, fp16, tf32 (lorac "
    "computes in f32 on CPU), local_rank (lorac trains in one process), xformers_attention, "
    "flash_attention (lorac computes exact attention itself), evals_per_epoch (lorac evaluates "
    "every eval_steps), saves_per_epoch (lorac saves every save_steps)";
#define WATCHDOG(l1, l2)                                                                          \
    "line " l1 " loss_watchdog_threshold: 5.0 (would stop the run when the loss stays above "   \
    "it), line " l2 " loss_watchdog_patience: 3 (would stop the run when the loss stays above "  \
    "the threshold) (remove them or turn them off)"
static const char REFUSED_LORA_1B[] =
    ": 3 Axolotl keys that would change training, not implemented by lorac: line 47 optimizer: "
    "adamw_8bit (would keep AdamW's moments in 8 bits (bitsandbytes); lorac's AdamW is "
    "adamw_torch), " WATCHDOG("65", "66");
static const char REFUSED_MISTRAL_QLORA[] =
    ": 3 Axolotl keys that would change training, not implemented by lorac: line 50 optimizer: "
    "adamw_bnb_8bit (would keep AdamW's moments in 8 bits (bitsandbytes); lorac's AdamW is "
    "adamw_torch), " WATCHDOG("68", "69");

Test(config, axolotl_examples)
{
    lc_train_config c;
    lc_error err;
    cr_assert_eq(load_fixture("llama-3-qlora.yml", &c, NULL, 0, &err), 0, "%s", err.msg);
    const char *w = strstr(c.warning, ": accepted without effect");
    cr_assert_not_null(w, "%s", c.warning);
    cr_assert_str_eq(w, NO_EFFECT_LLAMA3_QLORA);
    cr_assert(c.qlora);
    cr_assert_eq(c.lora.r, 32);
    cr_assert(c.train_on_inputs == false && c.val_set_size == 0);
    cr_assert_str_eq(c.special_tokens[LC_SPECIAL_PAD], "<|end_of_text|>");
    lc_train_config_free(&c);

    cr_assert_eq(load_fixture("llama-3-lora-1b.yml", &c, NULL, 0, &err), -1);
    const char *e = strstr(err.msg, ": ");
    cr_assert_str_eq(e, REFUSED_LORA_1B);
    /* With those three turned off it loads. */
    char *off[] = { "optimizer=adamw_torch", "loss_watchdog_threshold=null",
                    "loss_watchdog_patience=null" };
    cr_assert_eq(load_fixture("llama-3-lora-1b.yml", &c, off, 3, &err), 0, "%s", err.msg);
    assert_close(c.val_set_size, 0.1);
    cr_assert_not_null(strstr(c.dataset_prepared_path, "axolotl/last_run_prepared"));
    cr_assert_not_null(strstr(c.warning, "loss_watchdog_threshold, loss_watchdog_patience"),
                       "%s", c.warning);
    lc_train_config_free(&c);
    cr_assert_eq(load_fixture("mistral-qlora.yml", &c, NULL, 0, &err), -1);
    e = strstr(err.msg, ": ");
    cr_assert_str_eq(e, REFUSED_MISTRAL_QLORA);
}

/* configs/README.md names every key lorac reads and every Axolotl key it
 * accepts or refuses. */
Test(config, readme_lists_every_key)
{
    size_t len;
    char *readme = lc_test_read_file(LORAC_SOURCE_DIR "/configs/README.md", &len);
    cr_assert_not_null(readme);
    for (int i = 0; i < lc_train_config_key_count(); i++) {
        const char *name;
        lc_train_config_key(i, &name);
        char *q = lc_test_asprintf("`%s`", name);
        cr_expect(strstr(readme, q), "configs/README.md does not list %s", q);
        free(q);
    }
    for (int i = 0; i < lc_ax_key_count(); i++) {
        char *q = lc_test_asprintf("`%s`", lc_ax_key_at(i)->name);
        cr_expect(strstr(readme, q), "configs/README.md does not list %s", q);
        free(q);
    }
    free(readme);
}

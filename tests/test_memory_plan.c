/* test_memory_plan.c — the memory plan is the allocations themselves
 * (train/memory_plan.h): tiny training jobs on the fixture models check that
 * the step arena and gradient pool peaks measured over the real steps equal
 * the dry run's (the plan the trainer prints and sizes its arenas from), for
 * a dense family with LoRA, DoRA, QLoRA, packing and accumulation, Phi-3
 * (fused linears), Gemma 2 (extra norms, soft-capping, sliding layers) and
 * Mixtral (MoE), each with and without gradient checkpointing. Exactly
 * equal, bytes: the dry run performs the same allocations in the same order;
 * only MoE differs, where the dry run routes every token to every expert (a
 * bound over all routings), so the real peaks must stay at or under it.
 * Also: the dry run commits no activation memory (a 7B-shaped plan of tens
 * of GiB runs in a few MiB), and `lorac info`'s shapes-only model plans
 * exactly what the loaded model does. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "helpers.h"
#include "train/config.h"
#include "train/memory_plan.h"
#include "train/model.h"
#include "train/trainer.h"

typedef struct peaks {
    size_t arena, arena_plan, grad, grad_plan;
} peaks;

/* Trains fam's fixture (lora_r 4, 2 steps of micro-batch mb, and `extra`,
 * YAML lines) in-process on the backend the tests run on; the log's text
 * into *log_text (free it). Returns lc_train_run's status. */
static int train_fixture(const char *fam, int mb, const char *extra, char **log_text,
                         lc_error *err)
{
    char *dir = lc_test_tmpdir();
    char *fx = lc_test_asprintf("%s", lc_test_fixture(fam));
    char *yaml = lc_test_asprintf(
        "base_model: %s/model\nlora_r: 4\nlora_alpha: 8\n"
        "datasets:\n  - path: %s/train.jsonl\n    type: tokenized\n"
        "micro_batch_size: %d\nmax_steps: 2\nlearning_rate: 1.0e-3\nsave_steps: 0\n"
        "output_dir: %s/out\n%s%s",
        fx, fx, mb, dir, lc_test_backend_yaml(), extra);
    char *cfg_path = lc_test_write_text(dir, "run.yaml", yaml);
    lc_train_config c;
    cr_assert_eq(lc_train_config_load(&c, cfg_path, NULL, 0, err), 0, "%s", err->msg);
    char *log_path = lc_test_asprintf("%s/train.log", dir);
    FILE *log = fopen(log_path, "w");
    cr_assert_not_null(log);
    int rc = lc_train_run(&c, log, err);
    fclose(log);
    lc_train_config_free(&c);
    *log_text = lc_test_read_file(log_path, NULL);
    lc_test_rm_rf(dir);
    free(log_path);
    free(cfg_path);
    free(yaml);
    free(fx);
    free(dir);
    return rc;
}

/* Trains `extra` (YAML lines) on the fixture family fam for 2 steps and reads
 * back the trainer's "memory used:" line. */
static peaks train_peaks(const char *fam, const char *extra)
{
    lc_error err = {{0}};
    char *text;
    int rc = train_fixture(fam, 2, extra, &text, &err);
    cr_assert_eq(rc, 0, "%s: %s", fam, err.msg);
    const char *line = strstr(text, "memory used:");
    cr_assert_not_null(line, "no memory line in the log:\n%s", text);
    peaks p;
    cr_assert_eq(sscanf(line, "memory used: step arena %zu bytes (planned %zu), gradient pool "
                        "%zu bytes (planned %zu)", &p.arena, &p.arena_plan, &p.grad, &p.grad_plan),
                 4, "%s", line);
    cr_log_info("%s %s: step arena %zu (plan %zu), gradient pool %zu (plan %zu)", fam, extra,
                p.arena, p.arena_plan, p.grad, p.grad_plan);
    free(text);
    return p;
}

static void exact(const char *fam, const char *extra)
{
    peaks p = train_peaks(fam, extra);
    cr_expect_gt(p.arena, 0);
    cr_expect_gt(p.grad, 0);
    cr_expect_eq(p.arena, p.arena_plan, "%s %s: step arena %zu, planned %zu", fam, extra,
                 p.arena, p.arena_plan);
    cr_expect_eq(p.grad, p.grad_plan, "%s %s: gradient pool %zu, planned %zu", fam, extra,
                 p.grad, p.grad_plan);
}

/* Both checkpointing modes of one configuration. */
static void exact_both(const char *fam, const char *extra)
{
    char *on = lc_test_asprintf("%sgradient_checkpointing: true\n", extra);
    char *off = lc_test_asprintf("%sgradient_checkpointing: false\n", extra);
    exact(fam, off);
    exact(fam, on);
    free(on);
    free(off);
}

#define DENSE "sequence_len: 16\nlora_target_linear: true\nlora_dropout: 0.1\n"

Test(memory_plan, llama_lora, .timeout = 120) { exact_both("tiny-llama", DENSE); }
Test(memory_plan, llama_qlora, .timeout = 120)
{
    exact_both("tiny-llama", DENSE "adapter: qlora\nbnb_4bit_use_double_quant: true\n");
}
Test(memory_plan, llama_dora, .timeout = 120)
{
    exact_both("tiny-llama", DENSE "peft_use_dora: true\n");
}
/* packed windows of two 16-token rows, two micro-batches per step */
Test(memory_plan, llama_packing_accumulation, .timeout = 120)
{
    exact_both("tiny-llama", "sequence_len: 32\nsample_packing: true\nlora_target_linear: true\n"
                             "gradient_accumulation_steps: 2\n");
}
Test(memory_plan, phi3_fused, .timeout = 120) { exact_both("tiny-phi3", DENSE); }
Test(memory_plan, phi3_qlora, .timeout = 120)
{
    exact_both("tiny-phi3", DENSE "adapter: qlora\n");
}
Test(memory_plan, gemma2, .timeout = 120) { exact_both("tiny-gemma2", DENSE); }
Test(memory_plan, gemma2_qlora, .timeout = 120)
{
    exact_both("tiny-gemma2", DENSE "adapter: qlora\n");
}

/* MoE: the real routing keeps N·k expert rows, the plan N·E — a bound. The
 * gradient pool sizes every expert's buffers for N rows (tape max_rows)
 * whatever the routing, so it is met exactly. */
static void moe(const char *extra)
{
    peaks p = train_peaks("tiny-mixtral", extra);
    cr_expect_gt(p.arena, 0);
    cr_expect_leq(p.arena, p.arena_plan, "step arena %zu over the plan %zu", p.arena,
                  p.arena_plan);
    cr_expect_geq(p.arena, p.arena_plan / 4, "step arena %zu: the plan %zu is too loose",
                  p.arena, p.arena_plan);
    cr_expect_eq(p.grad, p.grad_plan, "gradient pool %zu, planned %zu", p.grad, p.grad_plan);
}

#define MOE "sequence_len: 16\nlora_target_modules: [q_proj, v_proj]\n" \
            "lora_target_parameters: [experts.gate_up_proj, experts.down_proj]\n"
Test(memory_plan, mixtral, .timeout = 120) { moe(MOE "gradient_checkpointing: false\n"); }
Test(memory_plan, mixtral_checkpointing, .timeout = 120)
{
    moe(MOE "gradient_checkpointing: true\n");
}

/* The dry run touches no element memory: a Llama-2-7B-shaped step of 4 x
 * 2048 tokens plans tens of GiB while the process's peak grows by a few MiB
 * (the pages of tensor headers and op contexts). */
Test(memory_plan, dry_run_commits_no_activations, .timeout = 120)
{
    char *dir = lc_test_tmpdir();
    char *p = lc_test_write_text(
        dir, "config.json",
        "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
        "\"hidden_size\": 4096, \"intermediate_size\": 11008, \"num_hidden_layers\": 32, "
        "\"num_attention_heads\": 32, \"num_key_value_heads\": 32, \"vocab_size\": 32000, "
        "\"max_position_embeddings\": 4096, \"rms_norm_eps\": 1e-5, "
        "\"torch_dtype\": \"bfloat16\"}");
    lc_model_config c;
    lc_error err = {{0}};
    cr_assert_eq(lc_model_config_load(&c, dir, &err), 0, "%s", err.msg);
    lc_model m;
    cr_assert_eq(lc_model_init_shapes(&m, &c, LC_DTYPE_BF16, false, &err), 0, "%s", err.msg);
    m.checkpoint_layers = false;
    lc_lora lora;
    lc_lora_config lc = {.r = 8, .alpha = 16, .all_linear = true};
    cr_assert_eq(lc_lora_init(&lora, &c, &lc, 1, &err), 0, "%s", err.msg);
    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    lc_memory_plan plan;
    cr_assert_eq(lc_memory_plan_cpu(&m, &lora, 4, 2048, &plan, &err), 0, "%s", err.msg);
    getrusage(RUSAGE_SELF, &after);
    double grown = (double)(after.ru_maxrss - before.ru_maxrss) * 1024.0;
    cr_log_info("7B plan: activations %.2f GiB, workspace %.2f GiB; peak RSS grew %.1f MiB",
                plan.activations / 1073741824.0, plan.workspace / 1073741824.0,
                grown / 1048576.0);
    cr_expect_gt(plan.activations, 16.0 * 1073741824.0);
    cr_expect_lt(grown, 64.0 * 1048576.0, "the dry run committed %.1f MiB", grown / 1048576.0);
    /* weights from the shapes: 6.74e9 parameters at 2 bytes */
    cr_expect_eq(plan.weights, 2.0 * (32000.0 * 4096 * 2 +
                                      32.0 * (4.0 * 4096 * 4096 + 3.0 * 4096 * 11008)));
    lc_lora_free(&lora);
    lc_model_free(&m);
    lc_test_rm_rf(dir);
    free(p);
    free(dir);
}

/* lorac info plans over a shapes-only model: the same dry run, the same
 * bytes, as over the loaded model. */
static void shapes_equal_loaded(const char *fam, bool checkpointing)
{
    char *dir = lc_test_asprintf("%s/model", lc_test_fixture(fam));
    lc_error err = {{0}};
    lc_model real, shapes;
    cr_assert_eq(lc_model_load(&real, dir, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_model_init_shapes(&shapes, &real.cfg, real.embed.dtype, false, &err), 0,
                 "%s", err.msg);
    cr_assert_eq(lc_model_prepare_rope(&real, 64, &err), 0, "%s", err.msg);
    real.checkpoint_layers = shapes.checkpoint_layers = checkpointing;
    lc_lora lora;
    lc_lora_config lc = {.r = 4, .alpha = 8, .all_linear = true, .dropout = 0.05};
    cr_assert_eq(lc_lora_init(&lora, &real.cfg, &lc, 1, &err), 0, "%s", err.msg);
    lc_memory_plan a, b;
    cr_assert_eq(lc_memory_plan_cpu(&real, &lora, 3, 64, &a, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_memory_plan_cpu(&shapes, &lora, 3, 64, &b, &err), 0, "%s", err.msg);
    cr_expect_eq(a.arena_peak, b.arena_peak, "%s: %zu vs %zu", fam, a.arena_peak, b.arena_peak);
    cr_expect_eq(a.grad_peak, b.grad_peak, "%s: %zu vs %zu", fam, a.grad_peak, b.grad_peak);
    cr_expect_eq(a.activations, b.activations);
    cr_expect_eq(a.weights, b.weights, "%s: weights %.0f vs %.0f", fam, a.weights, b.weights);
    cr_expect_eq(a.total, b.total);
    lc_lora_free(&lora);
    lc_model_free(&shapes);
    lc_model_free(&real);
    free(dir);
}

Test(memory_plan, shapes_only_equals_loaded)
{
    const char *fams[] = {"tiny-llama", "tiny-phi3", "tiny-gemma2", "tiny-qwen3"};
    for (int i = 0; i < 4; i++) {
        shapes_equal_loaded(fams[i], false);
        shapes_equal_loaded(fams[i], true);
    }
}

/* On a device the plan is checked against its free memory before anything
 * is allocated there: a simulated device of 40 MiB (the context's cuBLASLt
 * workspace takes 32) refuses a step that needs more, naming both. */
Test(memory_plan, device_refuses_what_does_not_fit, .timeout = 120)
{
    if (!*lc_test_backend_yaml())
        cr_skip_test("a device test (LORAC_TEST_BACKEND=cuda)");
#ifndef LORAC_CUDA_SIM
    cr_skip_test("needs the simulator's configurable device memory");
#endif
    setenv("LC_SIM_DEVICE_MEMORY", "40MiB", 1);
    lc_error err = {{0}};
    char *text;
    int rc = train_fixture("tiny-llama", 64, "sequence_len: 128\n", &text, &err);
    cr_assert_neq(rc, 0, "a step larger than the device trained:\n%s", text);
    cr_log_info("%s", err.msg);
    cr_expect(strstr(err.msg, "of device memory") && strstr(err.msg, "are free"), "%s", err.msg);
    cr_expect(strstr(text, "memory plan (cuda device memory)"), "no plan printed:\n%s", text);
    cr_expect(!strstr(text, "step 1/"), "a step ran:\n%s", text);
    free(text);
}

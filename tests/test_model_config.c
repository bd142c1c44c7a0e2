/* test_model_config.c — config.json parsing (train/model_config.c).
 *
 * Good configs: the tiny-llama fixture (transformers-5 spelling), a legacy
 * Llama 3.1 config whose llama3 inv_freq is checked against values computed
 * here independently (and against Python-computed literals), qwen2, qwen3,
 * mistral, tied embeddings. Bad configs: each must fail with a message that
 * names what was wrong. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/helpers.h"
#include "train/model_config.h"

static int parse(lc_model_config *cfg, const char *json, lc_error *err)
{
    memset(err, 0, sizeof *err);
    return lc_model_config_parse(cfg, json, strlen(json), "test.json", err);
}

static void expect_ok(lc_model_config *cfg, const char *json)
{
    lc_error err;
    int rc = parse(cfg, json, &err);
    cr_assert_eq(rc, 0, "parse failed: %s", err.msg);
}

static void expect_bad(const char *json, const char *substr)
{
    lc_model_config cfg;
    lc_error err;
    int rc = parse(&cfg, json, &err);
    cr_assert_eq(rc, -1, "expected failure for %s", json);
    lc_test_assert_msg_has(&err, substr);
    cr_assert(strncmp(err.msg, "test.json: ", 11) == 0, "message '%s' lacks the label", err.msg);
}

static void assert_rel(double got, double want, double tol)
{
    double d = fabs(got - want) / fmax(fabs(want), 1e-300);
    cr_assert(d <= tol, "got %.17g want %.17g (rel %g)", got, want, d);
}

/* A minimal valid llama body; tests prepend/append keys. */
#define BASE_LLAMA "\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 160, " \
                   "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 512"

Test(model_config, tiny_llama_fixture)
{
    lc_model_config cfg;
    lc_error err;
    const char *paths[2] = { lc_test_fixture("tiny-llama/model"),
                             lc_test_fixture("tiny-llama/model/config.json") };
    for (int p = 0; p < 2; p++) {
        int rc = lc_model_config_load(&cfg, paths[p], &err);
        cr_assert_eq(rc, 0, "%s", err.msg);
        cr_assert_eq(cfg.arch, LC_ARCH_LLAMA);
        cr_assert_str_eq(cfg.model_type, "llama");
        cr_assert_str_eq(lc_arch_name(cfg.arch), "llama");
        cr_assert_eq(cfg.hidden_size, 64);
        cr_assert_eq(cfg.intermediate_size, 160);
        cr_assert_eq(cfg.n_layers, 2);
        cr_assert_eq(cfg.n_heads, 4);
        cr_assert_eq(cfg.n_kv_heads, 2);
        cr_assert_eq(cfg.head_dim, 16);
        cr_assert_eq(cfg.vocab_size, 512);
        cr_assert_eq(cfg.max_position_embeddings, 128);
        assert_rel(cfg.rms_norm_eps, 1e-5, 1e-15);
        cr_assert_eq(cfg.rope_type, LC_ROPE_DEFAULT);
        assert_rel(cfg.rope_theta, 10000.0, 0);
        cr_assert_not(cfg.tie_word_embeddings);
        cr_assert_eq(cfg.dtype, LC_DTYPE_F32);
        cr_assert_not(cfg.qkv_bias);
        cr_assert_not(cfg.o_bias);
        cr_assert_not(cfg.mlp_bias);
        cr_assert_not(cfg.qk_norm);
        cr_assert_eq(cfg.sliding_window, 0);
        cr_assert_not(cfg.prequantized_bnb4);

        double inv[8];
        lc_model_config_inv_freq(&cfg, inv);
        for (int i = 0; i < 8; i++)
            assert_rel(inv[i], pow(10000.0, -(double)(2 * i) / 16.0), 1e-14);
    }
}

Test(model_config, load_missing_file)
{
    lc_model_config cfg;
    lc_error err;
    cr_assert_eq(lc_model_config_load(&cfg, "/nonexistent/lorac/config.json", &err), -1);
    cr_assert(strstr(err.msg, "/nonexistent/lorac/config.json") != NULL, "%s", err.msg);
    cr_assert(strstr(err.msg, "No such file") != NULL, "%s", err.msg);

    /* A directory without config.json. */
    char *dir = lc_test_tmpdir();
    cr_assert_eq(lc_model_config_load(&cfg, dir, &err), -1);
    cr_assert(strstr(err.msg, "config.json") != NULL, "%s", err.msg);
    rmdir(dir);
    free(dir);
}

Test(model_config, load_from_tmp_dir)
{
    const char *json = "{" BASE_LLAMA ", \"torch_dtype\": \"bfloat16\"}";
    char *dir = lc_test_tmpdir();
    char *path = lc_test_write_file(dir, "config.json", json, strlen(json));
    lc_model_config cfg;
    lc_error err;
    cr_assert_eq(lc_model_config_load(&cfg, dir, &err), 0, "%s", err.msg);
    cr_assert_eq(cfg.dtype, LC_DTYPE_BF16);
    cr_assert_eq(cfg.head_dim, 16);
    cr_assert_eq(cfg.n_kv_heads, 4);
    cr_assert_eq(cfg.max_position_embeddings, 2048);
    assert_rel(cfg.rms_norm_eps, 1e-6, 0);

    /* Bad JSON in a file names the file. */
    const char *bad = "{ \"model_type\": ";
    char *path2 = lc_test_write_file(dir, "bad.json", bad, strlen(bad));
    cr_assert_eq(lc_model_config_load(&cfg, path2, &err), -1);
    cr_assert(strstr(err.msg, path2) != NULL, "%s", err.msg);
    cr_assert(strstr(err.msg, "not valid JSON") != NULL, "%s", err.msg);
    remove(path);
    remove(path2);
    rmdir(dir);
    free(path);
    free(path2);
    free(dir);
}

/* Llama 3.1 8B as written by transformers 4.x (legacy spelling). */
static const char *LLAMA31 =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"attention_bias\": false,"
    " \"hidden_act\": \"silu\", \"hidden_size\": 4096, \"intermediate_size\": 14336,"
    " \"max_position_embeddings\": 131072, \"mlp_bias\": false, \"model_type\": \"llama\","
    " \"num_attention_heads\": 32, \"num_hidden_layers\": 32, \"num_key_value_heads\": 8,"
    " \"rms_norm_eps\": 1e-05, \"rope_scaling\": {\"factor\": 8.0, \"low_freq_factor\": 1.0,"
    " \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192,"
    " \"rope_type\": \"llama3\"}, \"rope_theta\": 500000.0, \"tie_word_embeddings\": false,"
    " \"torch_dtype\": \"bfloat16\", \"vocab_size\": 128256}";

/* Independent llama3 reference: classify by frequency, not by wavelength. */
static double llama3_ref(int i)
{
    const double pi = acos(-1.0);
    double base = exp(-(2.0 * i / 128.0) * log(500000.0));
    double cycles_in_old_ctx = 8192.0 * base / (2.0 * pi); /* = old_ctx / wavelen */
    if (cycles_in_old_ctx < 1.0) /* wavelen > old_ctx / low_f */
        return base / 8.0;
    if (cycles_in_old_ctx > 4.0) /* wavelen < old_ctx / high_f */
        return base;
    double s = (cycles_in_old_ctx - 1.0) / 3.0;
    return base * ((1.0 - s) / 8.0 + s);
}

Test(model_config, llama31_legacy_rope)
{
    lc_model_config cfg;
    expect_ok(&cfg, LLAMA31);
    cr_assert_eq(cfg.head_dim, 128);
    cr_assert_eq(cfg.n_kv_heads, 8);
    cr_assert_eq(cfg.vocab_size, 128256);
    cr_assert_eq(cfg.max_position_embeddings, 131072);
    cr_assert_eq(cfg.dtype, LC_DTYPE_BF16);
    cr_assert_eq(cfg.rope_type, LC_ROPE_LLAMA3);
    assert_rel(cfg.rope_theta, 500000.0, 0);
    assert_rel(cfg.rope_factor, 8.0, 0);
    assert_rel(cfg.rope_low_freq_factor, 1.0, 0);
    assert_rel(cfg.rope_high_freq_factor, 4.0, 0);
    cr_assert_eq(cfg.rope_original_max_position, 8192);

    double inv[64];
    lc_model_config_inv_freq(&cfg, inv);
    /* i=0: high-frequency region (unchanged); i=30: blended; i=63: divided by 8. */
    assert_rel(inv[0], 1.0, 1e-15);
    assert_rel(inv[30], 0.0013718935677611381, 1e-12);
    assert_rel(inv[63], 3.068925988914511e-07, 1e-12);
    int regions[3] = { 0, 0, 0 };
    for (int i = 0; i < 64; i++) {
        assert_rel(inv[i], llama3_ref(i), 1e-12);
        double plain = pow(500000.0, -2.0 * i / 128.0);
        double ratio = inv[i] / plain;
        regions[ratio > 0.999999 ? 0 : ratio < 0.125 * 1.000001 ? 2 : 1]++;
    }
    cr_assert(regions[0] > 0 && regions[1] > 0 && regions[2] > 0);
    /* Blend is strictly between the two extremes. */
    double plain30 = pow(500000.0, -60.0 / 128.0);
    cr_assert(inv[30] > plain30 / 8.0 && inv[30] < plain30);
}

Test(model_config, rope_parameters_wins_and_linear)
{
    lc_model_config cfg;
    expect_ok(&cfg, "{" BASE_LLAMA ", \"rope_theta\": 1234.0,"
                    " \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4},"
                    " \"rope_parameters\": {\"rope_type\": \"linear\", \"factor\": 2.0,"
                    " \"rope_theta\": 20000.0}}");
    cr_assert_eq(cfg.rope_type, LC_ROPE_LINEAR);
    assert_rel(cfg.rope_theta, 20000.0, 0);
    assert_rel(cfg.rope_factor, 2.0, 0);
    double inv[8];
    lc_model_config_inv_freq(&cfg, inv);
    for (int i = 0; i < 8; i++)
        assert_rel(inv[i], pow(20000.0, -(double)(2 * i) / 16.0) / 2.0, 1e-14);

    /* Legacy "type" spelling. */
    expect_ok(&cfg, "{" BASE_LLAMA ", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 4}}");
    cr_assert_eq(cfg.rope_type, LC_ROPE_LINEAR);
    assert_rel(cfg.rope_factor, 4.0, 0);
    assert_rel(cfg.rope_theta, 10000.0, 0);
}

Test(model_config, qwen2)
{
    lc_model_config cfg;
    expect_ok(&cfg,
              "{\"model_type\": \"qwen2\", \"hidden_size\": 896, \"intermediate_size\": 4864,"
              " \"num_hidden_layers\": 24, \"num_attention_heads\": 14, \"num_key_value_heads\": 2,"
              " \"vocab_size\": 151936, \"max_position_embeddings\": 32768, \"rms_norm_eps\": 1e-06,"
              " \"rope_theta\": 1000000.0, \"rope_scaling\": null, \"sliding_window\": 32768,"
              " \"use_sliding_window\": false, \"tie_word_embeddings\": true,"
              " \"torch_dtype\": \"bfloat16\", \"hidden_act\": \"silu\"}");
    cr_assert_eq(cfg.arch, LC_ARCH_QWEN2);
    cr_assert_str_eq(lc_arch_name(cfg.arch), "qwen2");
    cr_assert(cfg.qkv_bias);
    cr_assert_not(cfg.o_bias);
    cr_assert_not(cfg.qk_norm);
    cr_assert_eq(cfg.head_dim, 64);
    cr_assert_eq(cfg.sliding_window, 0);
    cr_assert(cfg.tie_word_embeddings);
    cr_assert_eq(cfg.rope_type, LC_ROPE_DEFAULT);
    assert_rel(cfg.rope_theta, 1e6, 0);

    expect_ok(&cfg, "{\"model_type\": \"qwen2\", \"hidden_size\": 64, \"intermediate_size\": 128,"
                    " \"num_hidden_layers\": 1, \"num_attention_heads\": 4, \"vocab_size\": 100,"
                    " \"use_sliding_window\": true, \"sliding_window\": 4096}");
    cr_assert_eq(cfg.sliding_window, 4096);
    cr_assert_not(cfg.tie_word_embeddings);
}

Test(model_config, qwen3)
{
    lc_model_config cfg;
    expect_ok(&cfg,
              "{\"model_type\": \"qwen3\", \"hidden_size\": 1024, \"intermediate_size\": 3072,"
              " \"num_hidden_layers\": 28, \"num_attention_heads\": 16, \"num_key_value_heads\": 8,"
              " \"head_dim\": 128, \"vocab_size\": 151936, \"max_position_embeddings\": 40960,"
              " \"attention_bias\": false, \"rope_theta\": 1000000, \"rope_scaling\": null,"
              " \"sliding_window\": null, \"use_sliding_window\": false,"
              " \"tie_word_embeddings\": true, \"dtype\": \"bfloat16\"}");
    cr_assert_eq(cfg.arch, LC_ARCH_QWEN3);
    cr_assert(cfg.qk_norm);
    cr_assert_not(cfg.qkv_bias);
    cr_assert_not(cfg.o_bias);
    cr_assert_eq(cfg.head_dim, 128);
    cr_assert_eq(cfg.n_heads, 16);
    cr_assert_eq(cfg.hidden_size, 1024);
    cr_assert_eq(cfg.sliding_window, 0);
    cr_assert(cfg.tie_word_embeddings);
    cr_assert_eq(cfg.dtype, LC_DTYPE_BF16);
}

Test(model_config, mistral_sliding_window)
{
    lc_model_config cfg;
    expect_ok(&cfg,
              "{\"model_type\": \"mistral\", \"hidden_size\": 4096, \"intermediate_size\": 14336,"
              " \"num_hidden_layers\": 32, \"num_attention_heads\": 32, \"num_key_value_heads\": 8,"
              " \"vocab_size\": 32000, \"max_position_embeddings\": 32768, \"rms_norm_eps\": 1e-05,"
              " \"rope_theta\": 10000.0, \"sliding_window\": 4096, \"torch_dtype\": \"float16\"}");
    cr_assert_eq(cfg.arch, LC_ARCH_MISTRAL);
    cr_assert_eq(cfg.sliding_window, 4096);
    cr_assert_eq(cfg.head_dim, 128);
    cr_assert_eq(cfg.dtype, LC_DTYPE_F16);
    cr_assert_not(cfg.qkv_bias);

    expect_ok(&cfg, "{\"model_type\": \"mistral\", \"hidden_size\": 64, \"intermediate_size\": 128,"
                    " \"num_hidden_layers\": 1, \"num_attention_heads\": 4, \"vocab_size\": 100,"
                    " \"sliding_window\": null}");
    cr_assert_eq(cfg.sliding_window, 0);
}

Test(model_config, tied_bias_and_bnb)
{
    lc_model_config cfg;
    expect_ok(&cfg, "{" BASE_LLAMA ", \"tie_word_embeddings\": true, \"attention_bias\": true,"
                    " \"mlp_bias\": true, \"quantization_config\": {\"quant_method\":"
                    " \"bitsandbytes\", \"load_in_4bit\": true, \"bnb_4bit_quant_type\": \"nf4\"}}");
    cr_assert(cfg.tie_word_embeddings);
    cr_assert(cfg.qkv_bias);
    cr_assert(cfg.o_bias);
    cr_assert(cfg.mlp_bias);
    cr_assert(cfg.prequantized_bnb4);
}

/* ---- bad configs ---- */

Test(model_config_bad, unsupported_model_type)
{
    expect_bad("{\"model_type\": \"gpt2\", \"hidden_size\": 64}", "unsupported architecture 'gpt2'");
}

Test(model_config_bad, missing_model_type)
{
    expect_bad("{\"hidden_size\": 64, \"intermediate_size\": 160, \"num_hidden_layers\": 2,"
               " \"num_attention_heads\": 4, \"vocab_size\": 512}", "model_type: missing");
}

Test(model_config_bad, not_json)
{
    expect_bad("this is not json", "not valid JSON");
    expect_bad("", "not valid JSON");
    expect_bad("[1, 2]", "expected a JSON object");
    expect_bad("{" BASE_LLAMA "} trailing", "unexpected text");
}

Test(model_config_bad, hidden_size_string)
{
    expect_bad("{\"model_type\": \"llama\", \"hidden_size\": \"64\", \"intermediate_size\": 160,"
               " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 512}",
               "hidden_size: expected an integer, got a string");
}

Test(model_config_bad, non_integral)
{
    expect_bad("{\"model_type\": \"llama\", \"hidden_size\": 64.5, \"intermediate_size\": 160,"
               " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 512}",
               "hidden_size: expected an integer");
}

Test(model_config_bad, negative_layers)
{
    expect_bad("{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 160,"
               " \"num_hidden_layers\": -2, \"num_attention_heads\": 4, \"vocab_size\": 512}",
               "num_hidden_layers: -2 is out of range");
}

Test(model_config_bad, heads_not_dividing_hidden)
{
    expect_bad("{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 160,"
               " \"num_hidden_layers\": 2, \"num_attention_heads\": 5, \"vocab_size\": 512}",
               "does not divide hidden_size");
}

Test(model_config_bad, kv_heads_not_dividing)
{
    expect_bad("{" BASE_LLAMA ", \"num_key_value_heads\": 3}",
               "num_key_value_heads: 3 does not divide num_attention_heads");
}

Test(model_config_bad, zero_vocab)
{
    expect_bad("{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 160,"
               " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 0}",
               "vocab_size: 0 is out of range");
}

Test(model_config_bad, odd_head_dim)
{
    expect_bad("{" BASE_LLAMA ", \"head_dim\": 15}", "head_dim: 15 is odd");
    /* Odd derived head_dim too: 60 / 4 = 15. */
    expect_bad("{\"model_type\": \"llama\", \"hidden_size\": 60, \"intermediate_size\": 160,"
               " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 512}",
               "head_dim: 15 is odd");
}

Test(model_config_bad, rope_yarn)
{
    expect_bad("{" BASE_LLAMA ", \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4}}",
               "unsupported rope_type 'yarn'");
    expect_bad("{" BASE_LLAMA ", \"rope_parameters\": {\"rope_type\": \"dynamic\", \"factor\": 2}}",
               "rope_parameters.rope_type: unsupported rope_type 'dynamic'");
}

Test(model_config_bad, llama3_missing_factor)
{
    expect_bad("{" BASE_LLAMA ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"low_freq_factor\": 1,"
               " \"high_freq_factor\": 4, \"original_max_position_embeddings\": 8192}}",
               "rope_scaling.factor: missing");
    expect_bad("{" BASE_LLAMA ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8,"
               " \"low_freq_factor\": 4, \"high_freq_factor\": 1,"
               " \"original_max_position_embeddings\": 8192}}",
               "rope_scaling.high_freq_factor");
}

Test(model_config_bad, hidden_act_gelu)
{
    expect_bad("{" BASE_LLAMA ", \"hidden_act\": \"gelu\"}", "unsupported hidden_act 'gelu'");
}

Test(model_config_bad, bad_dtype)
{
    expect_bad("{" BASE_LLAMA ", \"torch_dtype\": \"int8\"}", "torch_dtype: unsupported dtype 'int8'");
    expect_bad("{" BASE_LLAMA ", \"dtype\": 16}", "dtype: expected a string");
}

Test(model_config_bad, over_cap)
{
    expect_bad("{\"model_type\": \"llama\", \"hidden_size\": 1000000000000, \"intermediate_size\": 160,"
               " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 512}",
               "hidden_size: 1000000000000 is out of range");
    expect_bad("{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 160,"
               " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 1e30}",
               "vocab_size: 1e+30 is out of range");
    expect_bad("{" BASE_LLAMA ", \"head_dim\": 2048}", "head_dim: 2048 is out of range");
}

Test(model_config_bad, duplicate_key)
{
    expect_bad("{" BASE_LLAMA ", \"vocab_size\": 1024}", "vocab_size: given more than once");
}

Test(model_config_bad, rope_theta_and_eps)
{
    expect_bad("{" BASE_LLAMA ", \"rope_theta\": 0}", "rope_theta: 0 is not positive");
    expect_bad("{" BASE_LLAMA ", \"rms_norm_eps\": 0}", "rms_norm_eps: 0 is out of range");
    expect_bad("{" BASE_LLAMA ", \"rms_norm_eps\": \"1e-6\"}", "rms_norm_eps: expected a finite number");
}

Test(model_config_bad, wrong_types_elsewhere)
{
    expect_bad("{" BASE_LLAMA ", \"tie_word_embeddings\": \"yes\"}",
               "tie_word_embeddings: expected true or false, got a string");
    expect_bad("{" BASE_LLAMA ", \"rope_scaling\": 3}", "rope_scaling: expected an object");
    expect_bad("{" BASE_LLAMA ", \"rope_scaling\": {\"factor\": 2}}", "rope_scaling.rope_type: missing");
    expect_bad("{" BASE_LLAMA ", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 0.5}}",
               "rope_scaling.factor: 0.5 is below 1");
}

Test(model_config_bad, quantization)
{
    expect_bad("{" BASE_LLAMA ", \"quantization_config\": {\"quant_method\": \"gptq\", \"bits\": 4}}",
               "unsupported quantization_config.quant_method 'gptq'");
}

/* ---- Gemma 2, Gemma 3 text, Phi-3 (transformers 5.17's config classes) ---- */

#define BASE_GEMMA(type) "\"model_type\": \"" type "\", \"hidden_size\": 64, " \
    "\"intermediate_size\": 160, \"num_hidden_layers\": 4, \"num_attention_heads\": 4, " \
    "\"num_key_value_heads\": 2, \"head_dim\": 16, \"vocab_size\": 512"

Test(model_config, gemma2_class_defaults)
{
    /* Keys left out take Gemma2Config's defaults: caps 50 / 30, scalar 256,
     * tied head, alternating windows starting with a sliding layer. */
    lc_model_config cfg;
    expect_ok(&cfg, "{" BASE_GEMMA("gemma2") ", \"hidden_activation\": \"gelu_pytorch_tanh\"}");
    cr_assert_eq(cfg.arch, LC_ARCH_GEMMA2);
    cr_assert_eq(cfg.attn_softcap, 50.0);
    cr_assert_eq(cfg.final_softcap, 30.0);
    cr_assert_eq(cfg.query_pre_attn_scalar, 256.0);
    assert_rel(lc_model_config_attn_scale(&cfg), 1.0 / 16.0, 1e-15);
    cr_assert(cfg.tie_word_embeddings);
    cr_assert_eq(cfg.sliding_window, 4096);
    for (int l = 0; l < 4; l++)
        cr_assert_eq(cfg.layer_sliding[l], l % 2 == 0, "layer %d", l);
    cr_assert_not(cfg.qk_norm);
    cr_assert_not(lc_model_config_has_rope_table(&cfg, LC_ROPE_TABLE_LOCAL));
}

Test(model_config, gemma2_as_saved)
{
    lc_model_config cfg;
    expect_ok(&cfg, "{" BASE_GEMMA("gemma2") ", \"query_pre_attn_scalar\": 24, "
              "\"attn_logit_softcapping\": 1.5, \"final_logit_softcapping\": null, "
              "\"sliding_window\": 6, \"tie_word_embeddings\": false, \"layer_types\": "
              "[\"full_attention\", \"sliding_attention\", \"full_attention\", \"full_attention\"]}");
    cr_assert_eq(cfg.attn_softcap, 1.5);
    cr_assert_eq(cfg.final_softcap, 0.0, "null turns the cap off");
    assert_rel(lc_model_config_attn_scale(&cfg), 1.0 / sqrt(24.0), 1e-15);
    cr_assert_not(cfg.tie_word_embeddings);
    cr_assert_eq(cfg.sliding_window, 6);
    for (int l = 0; l < 4; l++)
        cr_assert_eq(cfg.layer_sliding[l], l == 1, "layer %d", l);
}

Test(model_config, gemma3_rope_per_layer_type)
{
    /* transformers 5 nests rope_parameters by layer type */
    lc_model_config cfg;
    expect_ok(&cfg, "{" BASE_GEMMA("gemma3_text") ", \"attn_logit_softcapping\": 20, "
              "\"rope_parameters\": {\"full_attention\": {\"rope_type\": \"linear\", "
              "\"factor\": 8.0, \"rope_theta\": 1000000.0}, \"sliding_attention\": "
              "{\"rope_type\": \"default\", \"rope_theta\": 10000.0}}}");
    cr_assert_eq(cfg.arch, LC_ARCH_GEMMA3);
    cr_assert(cfg.qk_norm);
    cr_assert_eq(cfg.attn_softcap, 0.0, "Gemma 3's attention ignores the cap, as transformers'");
    cr_assert_eq(cfg.final_softcap, 0.0);
    cr_assert_eq(cfg.rope_type, LC_ROPE_LINEAR);
    cr_assert_eq(cfg.rope_theta, 1e6);
    cr_assert_eq(cfg.rope_factor, 8.0);
    cr_assert_eq(cfg.rope_local_theta, 1e4);
    /* default pattern 6: layers 0..4 slide */
    for (int l = 0; l < 4; l++)
        cr_assert(cfg.layer_sliding[l]);
    double g[8], s[8];
    lc_model_config_rope_inv_freq(&cfg, LC_ROPE_TABLE_MAIN, g);
    lc_model_config_rope_inv_freq(&cfg, LC_ROPE_TABLE_LOCAL, s);
    for (int i = 0; i < 8; i++) {
        assert_rel(g[i], pow(1e6, -2.0 * i / 16) / 8.0, 1e-14);
        assert_rel(s[i], pow(1e4, -2.0 * i / 16), 1e-14);
    }
}

Test(model_config, gemma3_legacy_rope_and_pattern)
{
    /* transformers 4 spellings, as Gemma 3 checkpoints ship them */
    lc_model_config cfg;
    expect_ok(&cfg, "{" BASE_GEMMA("gemma3_text") ", \"rope_theta\": 1000000.0, "
              "\"rope_local_base_freq\": 20000.0, \"rope_scaling\": {\"rope_type\": \"linear\", "
              "\"factor\": 8.0}, \"sliding_window_pattern\": 2}");
    cr_assert_eq(cfg.rope_local_theta, 2e4);
    cr_assert_eq(cfg.rope_factor, 8.0);
    for (int l = 0; l < 4; l++)
        cr_assert_eq(cfg.layer_sliding[l], l % 2 == 0, "layer %d", l);
}

Test(model_config, phi3_longrope)
{
    lc_model_config cfg;
    expect_ok(&cfg, "{\"model_type\": \"phi3\", \"hidden_size\": 16, \"intermediate_size\": 32, "
              "\"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"vocab_size\": 64, "
              "\"max_position_embeddings\": 128, \"original_max_position_embeddings\": 8, "
              "\"sliding_window\": null, \"rope_parameters\": {\"rope_type\": \"longrope\", "
              "\"rope_theta\": 10000.0, \"short_factor\": [1, 1.1, 1.2, 1.3], "
              "\"long_factor\": [2, 3, 4, 5]}}");
    cr_assert_eq(cfg.arch, LC_ARCH_PHI3);
    cr_assert_eq(cfg.rope_type, LC_ROPE_LONGROPE);
    cr_assert_eq(cfg.rope_original_max_position, 8);
    /* factor 128/8 = 16: √(1 + ln 16 / ln 8) */
    assert_rel(cfg.rope_attention_factor, sqrt(1.0 + log(16.0) / log(8.0)), 1e-15);
    cr_assert_eq(cfg.sliding_window, 0);
    cr_assert_not(cfg.tie_word_embeddings);
    double sh[4], lo[4];
    lc_model_config_rope_inv_freq(&cfg, LC_ROPE_TABLE_MAIN, sh);
    lc_model_config_rope_inv_freq(&cfg, LC_ROPE_TABLE_LONG, lo);
    const double shf[4] = {1, 1.1, 1.2, 1.3}, lof[4] = {2, 3, 4, 5};
    for (int i = 0; i < 4; i++) {
        assert_rel(sh[i], pow(1e4, -2.0 * i / 8) / shf[i], 1e-7);
        assert_rel(lo[i], pow(1e4, -2.0 * i / 8) / lof[i], 1e-7);
    }
    /* an explicit attention_factor wins */
    expect_ok(&cfg, "{\"model_type\": \"phi3\", \"hidden_size\": 16, \"intermediate_size\": 32, "
              "\"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"vocab_size\": 64, "
              "\"rope_scaling\": {\"type\": \"longrope\", \"short_factor\": [1, 1, 1, 1], "
              "\"long_factor\": [2, 3, 4, 5], \"attention_factor\": 1.25}, "
              "\"original_max_position_embeddings\": 8}");
    cr_assert_eq(cfg.rope_attention_factor, 1.25);
}

Test(model_config_bad, new_families)
{
    expect_bad("{" BASE_GEMMA("gemma2") ", \"hidden_activation\": \"silu\"}",
               "hidden_activation: unsupported hidden_activation 'silu' (expected "
               "\"gelu_pytorch_tanh\")");
    expect_bad("{" BASE_GEMMA("gemma2") ", \"layer_types\": [\"full_attention\"]}",
               "layer_types: expected a list of 4 layer types");
    expect_bad("{" BASE_GEMMA("gemma2") ", \"layer_types\": [\"full_attention\", \"x\", "
               "\"full_attention\", \"full_attention\"]}", "layer_types: entry 1 is not");
    expect_bad("{" BASE_GEMMA("gemma2") ", \"attn_logit_softcapping\": -1}",
               "attn_logit_softcapping: -1 is not positive");
    expect_bad("{" BASE_GEMMA("gemma2") ", \"use_bidirectional_attention\": true}",
               "use_bidirectional_attention: true is not supported");
    expect_bad("{" BASE_GEMMA("gemma3_text") ", \"rope_parameters\": {\"full_attention\": "
               "{\"rope_theta\": 1e6}}}", "sliding_attention: missing");
    expect_bad("{" BASE_GEMMA("gemma3_text") ", \"rope_parameters\": {\"full_attention\": "
               "{\"rope_theta\": 1e6}, \"sliding_attention\": {\"rope_theta\": 1e4, "
               "\"rope_type\": \"linear\"}}}", "is not supported for sliding layers");
    expect_bad("{\"model_type\": \"phi3\", \"hidden_size\": 16, \"intermediate_size\": 32, "
               "\"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"vocab_size\": 64, "
               "\"original_max_position_embeddings\": 8, \"rope_parameters\": {\"rope_type\": "
               "\"longrope\", \"short_factor\": [1, 1, 1], \"long_factor\": [2, 3, 4, 5]}}",
               "short_factor: expected a list of 4 numbers");
    expect_bad("{\"model_type\": \"phi3\", \"hidden_size\": 16, \"intermediate_size\": 32, "
               "\"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"vocab_size\": 64, "
               "\"rope_parameters\": {\"rope_type\": \"longrope\", \"short_factor\": [1, 1, 1, 1],"
               " \"long_factor\": [2, 3, 0, 5]}}", "long_factor: entry 2 is not a positive number");
    expect_bad("{" BASE_LLAMA ", \"rope_parameters\": {\"rope_type\": \"longrope\"}}",
               "unsupported rope_type 'longrope' (supported: default, linear, llama3)");
}

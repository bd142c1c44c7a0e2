/* test_generate.c — `lorac generate` and its API (train/generate.h) against
 * transformers' generate() (tests/fixtures/generate/, written by
 * scripts/make_generate_fixtures.py):
 *
 *   greedy_<family>        for tiny-{llama,mistral,qwen2,qwen3}, without and with
 *                          adapter_init (unmerged), for each of 4 prompts (1, 5, 16,
 *                          48 ids): the 32 greedy ids == HF's; the first step's
 *                          logits == HF's (float64) within TOL_LOGITS; and every
 *                          step's cached logits == a full forward (lc_model_logits,
 *                          the training path) over prompt + generated ids, same
 *                          argmax, within TOL_CACHE — the cache is the trainer's math.
 *   nf4_sampled_cache      the same cache check on tiny-llama quantized to NF4 at
 *                          load, with the adapter, sampling (temperature 1, top-k,
 *                          top-p): NF4 linears and sampled tokens go through the cache.
 *   attention_past         the kernel: queries after `past` cached keys (with a
 *                          sliding window) == the rows of one full causal pass.
 *   cli_*                  through LORAC_BINARY: --prompt-ids --json ids == HF's;
 *                          --prompt and --messages on configs/quickstart_chat/model
 *                          (a real tokenizer and ChatML template): prompt ids,
 *                          new ids and text == HF's tokenizer, apply_chat_template
 *                          and generate; streamed text == the JSON text; stop at a
 *                          generation_config.json eos id; the same seed, the same
 *                          tokens; --nf4 and a bitsandbytes checkpoint run; a prompt
 *                          longer than max_position_embeddings fails (exit 1); bad
 *                          usage exits 2. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"
#include "train/generate.h"
#include "train/model.h"

/* Measured (float32 here, float64 in HF; 4 families x with/without adapter):
 * first-step logits within 3.9e-7 relative (norm-wise; llama 3.75e-7,
 * mistral 2.66e-7, qwen2 2.16e-7, qwen3 3.86e-7); cached vs full forward
 * within 1.39e-6 (qwen3; others 5.4e-7 .. 7.3e-7: one-row GEMMs round in
 * another order than T-row ones). Tolerances ~10x that. */
#define TOL_LOGITS 4e-6
#define TOL_CACHE 1.5e-5

static cJSON *read_json(const char *rel)
{
    char *text = lc_test_read_file(lc_test_fixture(rel), NULL);
    cJSON *j = cJSON_Parse(text);
    free(text);
    cr_assert(j, "%s: not JSON", rel);
    return j;
}

/* ids of a JSON list into out [n] (malloc'd). */
static int32_t *json_ids(const cJSON *a, int64_t *n)
{
    *n = cJSON_GetArraySize(a);
    int32_t *v = malloc((size_t)(*n ? *n : 1) * sizeof *v);
    int64_t i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, a) v[i++] = (int32_t)x->valuedouble;
    return v;
}

typedef struct worst {
    double logits, cache;
} worst;

/* Feeds prompt, then each of gen[0..n−1) one at a time; checks each step's
 * logits (and argmax when greedy) against the full forward over prompt +
 * gen. Returns the worst norm-wise relative difference. */
static double cache_vs_full(lc_model *m, const lc_lora *lora, lc_generator *g,
                            const int32_t *prompt, int64_t np, const int32_t *gen, int64_t n,
                            bool greedy)
{
    lc_error err;
    const int64_t V = m->cfg.vocab_size, T = np + n - 1;
    int32_t *ids = malloc((size_t)T * sizeof *ids), *pos = malloc((size_t)T * sizeof *pos);
    memcpy(ids, prompt, (size_t)np * sizeof *ids);
    memcpy(ids + np, gen, (size_t)(n - 1) * sizeof *ids);
    for (int64_t i = 0; i < T; i++)
        pos[i] = (int32_t)i;
    lc_arena arena;
    lc_tape tape;
    cr_assert_eq(lc_arena_init(&arena, "full", 64 << 20, &err), 0);
    cr_assert_eq(lc_tape_init(&tape, &arena, 1 << 20, &err), 0);
    cr_assert_eq(lc_model_prepare_rope(m, T, &err), 0);
    lc_real *full = malloc((size_t)(T * V) * sizeof *full);
    lc_batch b = {.B = 1, .T = T, .input_ids = ids, .positions = pos};
    lc_model_logits(m, &tape, &b, lora, full, NULL, NULL);
    double w = 0;
    lc_generator_reset(g);
    for (int64_t s = 0; s < n; s++) {
        if (s == 0)
            cr_assert_eq(lc_generator_feed(g, prompt, np, &err), 0, "%s", err.msg);
        else
            cr_assert_eq(lc_generator_feed(g, &gen[s - 1], 1, &err), 0, "%s", err.msg);
        const lc_real *row = full + (np - 1 + s) * V, *got = lc_generator_logits(g);
        double r = lc_test_rel_err_f32(got, row, (size_t)V);
        w = r > w ? r : w;
        if (greedy) {
            int64_t am = 0;
            for (int64_t i = 1; i < V; i++)
                if (row[i] > row[am])
                    am = i;
            cr_expect_eq(am, gen[s], "step %lld: full forward's argmax %lld, generated %d",
                         (long long)s, (long long)am, gen[s]);
        }
    }
    free(full);
    lc_tape_free(&tape);
    lc_arena_free(&arena);
    free(ids);
    free(pos);
    return w;
}

static void check_family(const char *fam)
{
    char rel[128];
    snprintf(rel, sizeof rel, "generate/%s.json", fam);
    cJSON *ref = read_json(rel);
    lc_error err;
    lc_model m;
    lc_lora lora;
    snprintf(rel, sizeof rel, "tiny-%s/model", fam);
    cr_assert_eq(lc_model_load(&m, lc_test_fixture(rel), &err), 0, "%s", err.msg);
    snprintf(rel, sizeof rel, "tiny-%s/adapter_init", fam);
    cr_assert_eq(lc_lora_load_peft(&lora, &m.cfg, lc_test_fixture(rel), &err), 0, "%s", err.msg);
    const int64_t NEW = (int64_t)cJSON_GetObjectItem(ref, "max_new_tokens")->valuedouble;
    const int lp = (int)cJSON_GetObjectItem(ref, "logits_prompt")->valuedouble;
    lc_generator *g = lc_generator_new(&m, &lora, 48 + NEW, &err);
    lc_generator *g0 = lc_generator_new(&m, NULL, 48 + NEW, &err);
    cr_assert(g && g0, "%s", err.msg);
    int equal = 0, total = 0;
    worst w = {0, 0};
    for (int variant = 0; variant < 2; variant++) {
        const cJSON *prompts = cJSON_GetObjectItem(ref, "prompts");
        const cJSON *greedy = cJSON_GetObjectItem(ref, variant ? "greedy_adapter" : "greedy");
        lc_generator *gen = variant ? g : g0;
        const lc_lora *lo = variant ? &lora : NULL;
        for (int p = 0; p < cJSON_GetArraySize(prompts); p++) {
            int64_t np, nh;
            int32_t *prompt = json_ids(cJSON_GetArrayItem(prompts, p), &np);
            int32_t *hf = json_ids(cJSON_GetArrayItem(greedy, p), &nh);
            cr_assert_eq(nh, NEW);
            lc_gen_opts o = {.max_new_tokens = NEW, .sampling = {.top_p = 1}};
            lc_gen_result r;
            cr_assert_eq(lc_generate(gen, prompt, np, &o, &r, &err), 0, "%s", err.msg);
            cr_assert_eq(r.n, NEW);
            cr_assert(!r.stopped);
            total++;
            if (memcmp(r.ids, hf, (size_t)NEW * sizeof *hf) == 0)
                equal++;
            for (int64_t i = 0; i < NEW; i++)
                if (r.ids[i] != hf[i]) {
                    cr_expect_eq(r.ids[i], hf[i], "%s%s prompt %d (%lld ids): first difference "
                                 "at new token %lld", fam, variant ? "+adapter" : "", p,
                                 (long long)np, (long long)i);
                    break;
                }
            if (p == lp) {
                int64_t nv;
                cJSON *lj = cJSON_GetObjectItem(ref, variant ? "logits_adapter" : "logits");
                nv = cJSON_GetArraySize(lj);
                cr_assert_eq(nv, m.cfg.vocab_size);
                float *want = malloc((size_t)nv * sizeof *want);
                int64_t i = 0;
                const cJSON *x;
                cJSON_ArrayForEach(x, lj) want[i++] = (float)x->valuedouble;
                lc_generator_reset(gen);
                cr_assert_eq(lc_generator_feed(gen, prompt, np, &err), 0, "%s", err.msg);
                double e = lc_test_rel_err_f32(lc_generator_logits(gen), want, (size_t)nv);
                w.logits = e > w.logits ? e : w.logits;
                free(want);
            }
            double c = cache_vs_full(&m, lo, gen, prompt, np, r.ids, r.n, true);
            w.cache = c > w.cache ? c : w.cache;
            lc_gen_result_free(&r);
            free(prompt);
            free(hf);
        }
    }
    cr_log_info("%s: greedy ids equal to HF on %d/%d; first-step logits rel err %.3g; cached vs "
                "full forward %.3g", fam, equal, total, w.logits, w.cache);
    fprintf(stderr, "%s: greedy ids equal to HF on %d/%d; first-step logits rel err %.3g; cached "
            "vs full forward %.3g\n", fam, equal, total, w.logits, w.cache);
    cr_expect_eq(equal, total);
    cr_expect_lt(w.logits, TOL_LOGITS, "%s: first-step logits rel err %g", fam, w.logits);
    cr_expect_lt(w.cache, TOL_CACHE, "%s: cached vs full rel err %g", fam, w.cache);
    lc_generator_free(g);
    lc_generator_free(g0);
    lc_lora_free(&lora);
    lc_model_free(&m);
    cJSON_Delete(ref);
}

/* The newer families decode through the KV cache as the full forward
 * computes: Gemma 2's window of 6 crossed (sliding and global layers),
 * Gemma 3's local/global RoPE, the final soft-cap on every step's logits,
 * Phi-3 past its original context (a 10-token prefill: long factors
 * throughout, as transformers picks per call) and the MoE routing per token.
 * Prompt: row 0's first 10 ids, then its next 6 one at a time. */
static void cache_family(const char *fam)
{
    lc_error err;
    lc_model m;
    lc_lora lora;
    char rel[128];
    snprintf(rel, sizeof rel, "tiny-%s/model", fam);
    cr_assert_eq(lc_model_load(&m, lc_test_fixture(rel), &err), 0, "%s", err.msg);
    snprintf(rel, sizeof rel, "tiny-%s/adapter_init", fam);
    cr_assert_eq(lc_lora_load_peft(&lora, &m.cfg, lc_test_fixture(rel), &err), 0, "%s", err.msg);
    snprintf(rel, sizeof rel, "tiny-%s/train.jsonl", fam);
    char *text = lc_test_read_file(lc_test_fixture(rel), NULL);
    cJSON *row = cJSON_Parse(text); /* the first line */
    int64_t n;
    int32_t *ids = json_ids(cJSON_GetObjectItem(row, "input_ids"), &n);
    cr_assert_geq(n, 16);
    lc_generator *g = lc_generator_new(&m, &lora, 32, &err);
    cr_assert(g, "%s", err.msg);
    double w = cache_vs_full(&m, &lora, g, ids, 10, ids + 10, 6, false);
    cr_log_info("%s: cached vs full forward %.3g", fam, w);
    cr_expect_lt(w, TOL_CACHE, "%s: cached vs full rel err %g", fam, w);
    lc_generator_free(g);
    free(ids);
    cJSON_Delete(row);
    free(text);
    lc_lora_free(&lora);
    lc_model_free(&m);
}

Test(generate, cache_gemma2) { cache_family("gemma2"); }
Test(generate, cache_gemma3) { cache_family("gemma3"); }
Test(generate, cache_phi3) { cache_family("phi3"); }
Test(generate, cache_mixtral) { cache_family("mixtral"); }
Test(generate, cache_qwen3moe) { cache_family("qwen3moe"); }

Test(generate, greedy_llama) { check_family("llama"); }
Test(generate, greedy_mistral) { check_family("mistral"); }
Test(generate, greedy_qwen2) { check_family("qwen2"); }
Test(generate, greedy_qwen3) { check_family("qwen3"); }

Test(generate, nf4_sampled_cache)
{
    lc_error err;
    lc_model m;
    lc_lora lora;
    lc_model_load_opts lo = {.nf4 = true, .nf4_blocksize = 64, .nf4_double_quant = true};
    cr_assert_eq(lc_model_load_with(&m, lc_test_fixture("tiny-llama/model"), &lo, &err), 0,
                 "%s", err.msg);
    cr_assert_eq(lc_lora_load_peft(&lora, &m.cfg, lc_test_fixture("tiny-llama/adapter_init"),
                                   &err), 0, "%s", err.msg);
    lc_generator *g = lc_generator_new(&m, &lora, 64, &err);
    cr_assert(g, "%s", err.msg);
    const int32_t prompt[7] = {5, 17, 300, 42, 99, 3, 250};
    lc_gen_opts o = {.max_new_tokens = 40,
                     .sampling = {.temperature = 1.0, .top_k = 50, .top_p = 0.95, .seed = 3}};
    lc_gen_result r, r2;
    cr_assert_eq(lc_generate(g, prompt, 7, &o, &r, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_generate(g, prompt, 7, &o, &r2, &err), 0, "%s", err.msg);
    cr_expect_arr_eq(r.ids, r2.ids, (size_t)r.n * sizeof *r.ids, "same seed, same tokens");
    double c = cache_vs_full(&m, &lora, g, prompt, 7, r.ids, r.n, false);
    cr_expect_lt(c, TOL_CACHE, "NF4 cached vs full rel err %g", c);
    lc_gen_result_free(&r2);
    /* a sequence longer than the generator is refused, not overrun */
    lc_gen_opts big = {.max_new_tokens = 60, .sampling = {.top_p = 1}};
    cr_expect_eq(lc_generate(g, prompt, 7, &big, &r2, &err), -1);
    lc_gen_result_free(&r);
    lc_gen_result_free(&r2);
    lc_generator_free(g);
    lc_lora_free(&lora);
    lc_model_free(&m);
}

Test(generate, attention_past)
{
    const int B = 1, T = 13, H = 4, KV = 2, D = 8, past = 9;
    uint64_t rng = 5;
    lc_real q[T * H * D], k[T * KV * D], v[T * KV * D], full[T * H * D], part[T * H * D];
    lc_real lse[H * T];
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++)
        q[i] = (lc_real)((lc_test_splitmix64(&rng) >> 40) / 16777216.0 - 0.5);
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        k[i] = (lc_real)((lc_test_splitmix64(&rng) >> 40) / 16777216.0 - 0.5);
        v[i] = (lc_real)((lc_test_splitmix64(&rng) >> 40) / 16777216.0 - 0.5);
    }
    for (int64_t window = 0; window <= 4; window += 4) {
        lc_attn_shape s = {.B = B, .T = T, .H = H, .KV = KV, .D = D, .scale = 0.35,
                           .window = window};
        lc_real *scr = malloc(lc_k_attention_scratch(&s) * sizeof(lc_real));
        lc_k_attention_fwd(&s, q, k, v, full, lse, scr);
        lc_attn_shape sp = s;
        sp.T = T - past;
        sp.past = past;
        lc_k_attention_fwd(&sp, q + past * H * D, k, v, part, lse, scr);
        double e = lc_test_rel_err_f32(part, full + past * H * D, (size_t)((T - past) * H * D));
        cr_expect_lt(e, 1e-6, "window %lld: past rows differ by %g", (long long)window, e);
        free(scr);
    }
}

/* ---- the command line ---- */

static cJSON *run_json(const char *const *args)
{
    lc_test_run_result r = lc_test_run_lorac(NULL, args);
    cr_assert_eq(r.code, 0, "exit %d\nstdout: %s\nstderr: %s", r.code, r.out, r.err);
    cr_expect(strstr(r.err, "tokens/s (prefill)") && strstr(r.err, "tokens/s (decode)"),
              "stderr: %s", r.err);
    cJSON *j = cJSON_Parse(r.out);
    cr_assert(j, "not JSON: %s", r.out);
    lc_test_run_free(&r);
    return j;
}

static void expect_ids(const cJSON *got, const cJSON *want, const char *what)
{
    char *a = cJSON_PrintUnformatted(got), *b = cJSON_PrintUnformatted(want);
    cr_expect_str_eq(a, b, "%s", what);
    free(a);
    free(b);
}

Test(generate, cli_prompt_ids_match_hf)
{
    cJSON *ref = read_json("generate/llama.json");
    cJSON *p = cJSON_GetArrayItem(cJSON_GetObjectItem(ref, "prompts"), 1);
    char ids[256] = "";
    const cJSON *x;
    cJSON_ArrayForEach(x, p) snprintf(ids + strlen(ids), sizeof ids - strlen(ids), "%s%d",
                                      ids[0] ? "," : "", (int)x->valuedouble);
    const char *args[] = {"generate", "--model", lc_test_fixture("tiny-llama/model"),
                          "--adapter", lc_test_fixture("tiny-llama/adapter_init"),
                          "--prompt-ids", ids, "--max-new-tokens", "32", "--ignore-eos",
                          "--json", NULL};
    cJSON *j = run_json(args);
    expect_ids(cJSON_GetObjectItem(j, "ids"),
               cJSON_GetArrayItem(cJSON_GetObjectItem(ref, "greedy_adapter"), 1), "new ids");
    expect_ids(cJSON_GetObjectItem(j, "prompt_ids"), p, "prompt ids");
    cr_expect_str_eq(cJSON_GetObjectItem(j, "stop")->valuestring, "length");
    cr_expect_gt(cJSON_GetObjectItem(j, "tokens_per_s")->valuedouble, 0);
    /* stop at an id of generation_config.json: a copy of the model with one */
    char *dir = lc_test_tmpdir();
    char *st = lc_test_path_in(dir, "model.safetensors");
    cr_assert_eq(symlink(lc_test_fixture("tiny-llama/model/model.safetensors"), st), 0);
    char *cfg = lc_test_read_file(lc_test_fixture("tiny-llama/model/config.json"), NULL);
    free(lc_test_write_text(dir, "config.json", cfg));
    int third = (int)cJSON_GetArrayItem(cJSON_GetArrayItem(
        cJSON_GetObjectItem(ref, "greedy_adapter"), 1), 2)->valuedouble;
    char *gc = lc_test_asprintf("{\"eos_token_id\": [%d, 100000]}", third);
    free(lc_test_write_text(dir, "generation_config.json", gc));
    const char *args2[] = {"generate", "--model", dir, "--adapter",
                           lc_test_fixture("tiny-llama/adapter_init"), "--prompt-ids", ids,
                           "--max-new-tokens", "32", "--json", NULL};
    cJSON *j2 = run_json(args2);
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j2, "ids")), 3, "stops at the 3rd id");
    cr_expect_str_eq(cJSON_GetObjectItem(j2, "stop")->valuestring, "eos");
    cJSON_Delete(j2);
    lc_test_rm_rf(dir);
    free(dir);
    free(st);
    free(cfg);
    free(gc);
    cJSON_Delete(j);
    cJSON_Delete(ref);
}

Test(generate, cli_text_matches_hf)
{
    cJSON *ref = read_json("generate/quickstart_chat.json");
    char *model = lc_test_asprintf("%s/../../configs/quickstart_chat/model", lc_test_fixture(""));
    const char *prompt = cJSON_GetObjectItem(ref, "prompt")->valuestring;
    const char *a1[] = {"generate", "--model", model, "--prompt", prompt, "--max-new-tokens",
                        "24", "--json", NULL};
    cJSON *j = run_json(a1);
    expect_ids(cJSON_GetObjectItem(j, "prompt_ids"), cJSON_GetObjectItem(ref, "prompt_ids"),
               "tokenizer(prompt)");
    expect_ids(cJSON_GetObjectItem(j, "ids"), cJSON_GetObjectItem(ref, "greedy_prompt"),
               "new ids from the prompt");
    cr_expect_str_eq(cJSON_GetObjectItem(j, "text")->valuestring,
                     cJSON_GetObjectItem(ref, "text_prompt")->valuestring);
    /* streamed, the same text (and a final newline) */
    const char *a2[] = {"generate", "--model", model, "--prompt", prompt, "--max-new-tokens",
                        "24", NULL};
    lc_test_run_result r = lc_test_run_lorac(NULL, a2);
    cr_assert_eq(r.code, 0, "%s", r.err);
    char *want = lc_test_asprintf("%s\n", cJSON_GetObjectItem(ref, "text_prompt")->valuestring);
    cr_expect_str_eq(r.out, want);
    lc_test_run_free(&r);
    free(want);
    /* --messages: the chat template, add_generation_prompt, no added specials */
    char *dir = lc_test_tmpdir();
    char *msgs = cJSON_PrintUnformatted(cJSON_GetObjectItem(ref, "messages"));
    char *mpath = lc_test_write_text(dir, "m.json", msgs);
    const char *a3[] = {"generate", "--model", model, "--messages", mpath, "--max-new-tokens",
                        "24", "--json", NULL};
    cJSON *jm = run_json(a3);
    expect_ids(cJSON_GetObjectItem(jm, "prompt_ids"), cJSON_GetObjectItem(ref, "messages_ids"),
               "apply_chat_template(messages)");
    expect_ids(cJSON_GetObjectItem(jm, "ids"), cJSON_GetObjectItem(ref, "greedy_messages"),
               "new ids from the messages");
    cr_expect_str_eq(cJSON_GetObjectItem(jm, "text")->valuestring,
                     cJSON_GetObjectItem(ref, "text_messages")->valuestring);
    /* a built-in template by name gives the same (the model's is ChatML) */
    const char *a4[] = {"generate", "--model", model, "--messages", mpath, "--chat-template",
                        "chatml", "--max-new-tokens", "4", "--json", NULL};
    cJSON *jc = run_json(a4);
    expect_ids(cJSON_GetObjectItem(jc, "prompt_ids"), cJSON_GetObjectItem(ref, "messages_ids"),
               "--chat-template chatml");
    /* sampling: the same seed, the same tokens; another seed, others */
    const char *s1[] = {"generate", "--model", model, "--prompt", prompt, "--temperature", "1.5",
                        "--top-k", "100", "--top-p", "0.95", "--seed", "7", "--json", NULL};
    cJSON *x1 = run_json(s1), *x2 = run_json(s1);
    expect_ids(cJSON_GetObjectItem(x1, "ids"), cJSON_GetObjectItem(x2, "ids"), "same seed");
    s1[12] = "8";
    cJSON *x3 = run_json(s1);
    char *i1 = cJSON_PrintUnformatted(cJSON_GetObjectItem(x1, "ids"));
    char *i3 = cJSON_PrintUnformatted(cJSON_GetObjectItem(x3, "ids"));
    cr_expect_str_neq(i1, i3, "seeds 7 and 8 drew the same tokens");
    free(i1);
    free(i3);
    cJSON_Delete(x1);
    cJSON_Delete(x2);
    cJSON_Delete(x3);
    cJSON_Delete(jc);
    cJSON_Delete(jm);
    cJSON_Delete(j);
    lc_test_rm_rf(dir);
    free(dir);
    free(msgs);
    free(mpath);
    free(model);
    cJSON_Delete(ref);
}

Test(generate, cli_nf4_and_errors)
{
    const char *nf4[] = {"generate", "--model", lc_test_fixture("tiny-llama/model"), "--nf4",
                         "--prompt-ids", "1,2,3", "--max-new-tokens", "5", "--json", NULL};
    cJSON *j = run_json(nf4);
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "ids")) <= 5, 1);
    cJSON_Delete(j);
    const char *bnb[] = {"generate", "--model", lc_test_fixture("tiny-llama-bnb4/model"),
                         "--adapter", lc_test_fixture("tiny-llama/adapter_init"), "--prompt-ids",
                         "1,2,3", "--max-new-tokens", "5", "--ignore-eos", "--json", NULL};
    j = run_json(bnb);
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "ids")), 5);
    cJSON_Delete(j);
    /* a prompt as long as max_position_embeddings (128): no room, exit 1 */
    char ids[1024] = "";
    for (int i = 0; i < 128; i++)
        snprintf(ids + strlen(ids), sizeof ids - strlen(ids), "%s%d", i ? "," : "", 5 + i);
    const char *longp[] = {"generate", "--model", lc_test_fixture("tiny-llama/model"),
                           "--prompt-ids", ids, NULL};
    lc_test_run_result r = lc_test_run_lorac(NULL, longp);
    cr_expect_eq(r.code, 1, "exit %d: %s", r.code, r.err);
    cr_expect(strstr(r.err, "max_position_embeddings"), "%s", r.err);
    lc_test_run_free(&r);
    /* bad usage: exit 2 */
    const char *m = lc_test_fixture("tiny-llama/model");
    const char *const bad[][8] = {
        {"generate", "--model", m, NULL},
        {"generate", "--prompt", "x", NULL},
        {"generate", "--model", m, "--prompt", "x", "--messages", "m.json", NULL},
        {"generate", "--model", m, "--prompt", "x", "--top-p", "0", NULL},
        {"generate", "--model", m, "--prompt", "x", "--temperature", "-1", NULL},
        {"generate", "--model", m, "--prompt-ids", "1,,2", NULL},
        {"generate", "--model", m, "--prompt", "x", "--bogus", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = lc_test_run_lorac(NULL, bad[i]);
        cr_expect_eq(r.code, 2, "case %zu: exit %d: %s", i, r.code, r.err);
        lc_test_run_free(&r);
    }
    /* an id outside the vocabulary: exit 1 */
    const char *oov[] = {"generate", "--model", m, "--prompt-ids", "1,512", NULL};
    r = lc_test_run_lorac(NULL, oov);
    cr_expect_eq(r.code, 1, "exit %d: %s", r.code, r.err);
    cr_expect(strstr(r.err, "vocabulary"), "%s", r.err);
    lc_test_run_free(&r);
}

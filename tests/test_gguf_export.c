/* test_gguf_export.c — `lorac export-gguf` (train/gguf_export.c,
 * train/gguf_vocab.c, data/gguf_write.c), read back with lorac's own GGUF
 * reader (data/gguf.h):
 *
 * - against llama.cpp's converter: tests/fixtures/gguf_export/<case>.json
 *   (scripts/make_gguf_export_fixtures.py ran convert_hf_to_gguf.py /
 *   convert_lora_to_gguf.py on the same inputs) records every metadata key
 *   with its type and value, and every tensor's name, shape, type and data
 *   (FNV-1a 64 of its bytes): lorac's file must have the same keys (plus
 *   general.alignment) and the same tensors, byte for byte — F32, F16, BF16
 *   and gguf-py's Q8_0 quantization, the llama q/k permutation, the Llama 3
 *   rope_freqs, the LoRA A/B (over the HF directory and over the GGUF file of
 *   the same model) and the tokenizer of the quickstart chat model;
 * - the tokenizer keys alone (lc_gguf_vocab_add) for four real tokenizers
 *   (Llama 3, Qwen2, Llama 2, Phi-3) and a small SentencePiece model with and
 *   without its tokenizer.model against the converter's --vocab-only;
 * - every F32 tensor equals the Hugging Face tensor bit for bit (q/k rows
 *   permuted back); the merged export equals `lorac merge --dtype f32`;
 *   rsLoRA is folded into adapter.lora.alpha;
 * - refusals: an existing output without --force, an output inside an
 *   input, a model without tokenizer (without --no-vocab), an unknown
 *   pre-tokenizer regex; none leaves a partial file. */
#include <criterion/criterion.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "autograd/dtype.h"
#include "data/gguf.h"
#include "data/gguf_write.h"
#include "data/model_files.h"
#include "data/safetensors.h"
#include "helpers.h"
#include "tokenizer_fixture.h"
#include "train/gguf_export.h"
#include "train/gguf_vocab.h"
#include "train/merge.h"


static const char *type_name(lc_gguf_vtype t)
{
    static const char *n[] = {"UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32",
                              "BOOL", "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64"};
    return n[t];
}

static size_t elem_size(lc_gguf_vtype t)
{
    static const size_t s[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return s[t];
}

static cJSON *load_fixture(const char *name)
{
    char *rel = lc_test_asprintf("gguf_export/%s.json", name);
    size_t n;
    char *text = lc_test_read_file(lc_test_fixture(rel), &n);
    cJSON *j = cJSON_ParseWithLength(text, n);
    cr_assert(j, "%s: bad JSON", rel);
    free(text);
    free(rel);
    return j;
}

/* Checks the keys of f against the fixture's (only those starting with
 * prefix, when not NULL). */
static void check_kv(const lc_gguf_file *f, const cJSON *fx, const char *prefix, const char *label)
{
    const cJSON *e;
    size_t n_want = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(fx, "kv")) {
        const char *key = cJSON_GetArrayItem(e, 0)->valuestring;
        const cJSON *type = cJSON_GetArrayItem(e, 1), *val = cJSON_GetArrayItem(e, 2);
        n_want++;
        const lc_gguf_kv *kv = lc_gguf_find_kv(f, key);
        cr_assert(kv, "%s: key %s missing", label, key);
        if (cJSON_IsArray(type)) {
            cr_assert_eq(kv->type, LC_GGUF_ARRAY, "%s: %s is not an array", label, key);
            cr_assert_str_eq(type_name(kv->elem), cJSON_GetArrayItem(type, 1)->valuestring,
                             "%s: %s element type", label, key);
            cr_assert_eq(kv->n, (uint64_t)cJSON_GetObjectItem(val, "n")->valuedouble,
                         "%s: %s has %llu elements", label, key, (unsigned long long)kv->n);
            uint64_t h = LC_TEST_FNV0;
            if (kv->elem == LC_GGUF_STRING) {
                for (uint64_t i = 0; i < kv->n; i++) {
                    unsigned char len[8];
                    for (int b = 0; b < 8; b++)
                        len[b] = (unsigned char)(kv->strs[i].len >> (8 * b));
                    h = lc_test_fnv1a64(h, len, 8);
                    h = lc_test_fnv1a64(h, kv->strs[i].ptr, (size_t)kv->strs[i].len);
                }
            } else {
                h = lc_test_fnv1a64(h, kv->data, (size_t)kv->n * elem_size(kv->elem));
            }
            char hex[17];
            snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
            cr_assert_str_eq(hex, cJSON_GetObjectItem(val, "fnv")->valuestring,
                             "%s: %s values differ from the converter's", label, key);
            continue;
        }
        cr_assert_str_eq(type_name(kv->type), type->valuestring, "%s: %s type", label, key);
        if (kv->type == LC_GGUF_STRING) {
            cr_assert_eq(kv->strs[0].len, strlen(val->valuestring), "%s: %s", label, key);
            cr_assert(!memcmp(kv->strs[0].ptr, val->valuestring, kv->strs[0].len),
                      "%s: %s = '%.*s', converter '%s'", label, key, (int)kv->strs[0].len,
                      kv->strs[0].ptr, val->valuestring);
        } else if (kv->type == LC_GGUF_BOOL) {
            cr_assert_eq(kv->data[0] != 0, cJSON_IsTrue(val), "%s: %s", label, key);
        } else if (kv->type == LC_GGUF_F32) {
            float got;
            memcpy(&got, kv->data, 4);
            cr_assert_eq(got, (float)val->valuedouble, "%s: %s = %.9g, converter %.9g", label,
                         key, (double)got, val->valuedouble);
        } else {
            cr_assert_eq(lc_gguf_kv_int(kv, 0), (int64_t)val->valuedouble,
                         "%s: %s = %lld, converter %.0f", label, key,
                         (long long)lc_gguf_kv_int(kv, 0), val->valuedouble);
        }
    }
    size_t n_have = 0;
    for (size_t i = 0; i < f->n_kv; i++)
        if ((!prefix || !strncmp(f->kvs[i].key, prefix, strlen(prefix))) &&
            strcmp(f->kvs[i].key, "general.alignment") != 0)
            n_have++;
    cr_assert_eq(n_have, n_want, "%s: %zu keys, the converter writes %zu", label, n_have, n_want);
}

static void check_tensors(const lc_gguf_file *f, const cJSON *fx, const char *label)
{
    const cJSON *e;
    size_t n_want = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(fx, "tensors")) {
        const char *name = cJSON_GetArrayItem(e, 0)->valuestring;
        const cJSON *shape = cJSON_GetArrayItem(e, 1);
        n_want++;
        const lc_gguf_tensor *t = lc_gguf_find_tensor(f, name);
        cr_assert(t, "%s: tensor %s missing", label, name);
        cr_assert_eq(t->n_dims, cJSON_GetArraySize(shape), "%s: %s dims", label, name);
        for (int d = 0; d < t->n_dims; d++)
            cr_assert_eq(t->ne[d], (int64_t)cJSON_GetArrayItem(shape, d)->valuedouble,
                         "%s: %s ne[%d]", label, name, d);
        cr_assert_str_eq(lc_ggml_type_get(t->type)->name,
                         cJSON_GetArrayItem(e, 2)->valuestring, "%s: %s type", label, name);
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx",
                 (unsigned long long)lc_test_fnv1a64(LC_TEST_FNV0, t->data, (size_t)t->nbytes));
        cr_assert_str_eq(hex, cJSON_GetArrayItem(e, 3)->valuestring,
                         "%s: %s data differs from the converter's", label, name);
    }
    cr_assert_eq(f->n_tensors, n_want, "%s: %zu tensors, the converter writes %zu", label,
                 f->n_tensors, n_want);
}

/* Runs the export; 0 or -1 with err. */
static int export(const char *base, const char *adapter, bool lora, const char *type,
                  bool no_vocab, const char *out, lc_error *err)
{
    lc_gguf_export_opts o = {.base_dir = base, .adapter_dir = adapter, .out_path = out,
                             .lora = lora, .no_vocab = no_vocab};
    cr_assert_eq(lc_gguf_export_parse_type(type, &o.type), 0);
    lc_gguf_export_report r;
    return lc_gguf_export(&o, &r, NULL, err);
}

static void against_converter(const char *fixture, const char *base, const char *adapter,
                              bool lora, bool no_vocab)
{
    cJSON *fx = load_fixture(fixture);
    char *dir = lc_test_tmpdir();
    char *out = lc_test_path_in(dir, "out.gguf");
    lc_error err = {{0}};
    const char *type = cJSON_GetObjectItem(fx, "outtype")->valuestring;
    cr_assert_eq(export(base, adapter, lora, type, no_vocab, out, &err), 0, "%s: %s", fixture,
                 err.msg);
    lc_gguf_file f;
    cr_assert_eq(lc_gguf_open(&f, out, &err), 0, "%s", err.msg);
    cr_assert_eq(f.version, 3);
    cr_assert_eq(f.alignment, 32);
    check_kv(&f, fx, NULL, fixture);
    check_tensors(&f, fx, fixture);
    lc_gguf_close(&f);
    cJSON_Delete(fx);
    lc_test_rm_rf(dir);
    free(dir);
    free(out);
}

/* parent/name: tiny-llama with rope_parameters replaced (as the fixture
 * script does; general.name comes from the directory's name) */
static char *rope_variant(const char *parent, const char *name, const char *rope_json)
{
    char *dir = lc_test_path_in(parent, name);
    cr_assert_eq(mkdir(dir, 0755), 0);
    size_t n;
    char *cfg = lc_test_read_file(lc_test_fixture("tiny-llama/model/config.json"), &n);
    cJSON *j = cJSON_ParseWithLength(cfg, n);
    cJSON_ReplaceItemInObject(j, "rope_parameters", cJSON_Parse(rope_json));
    char *text = cJSON_Print(j);
    free(lc_test_write_text(dir, "config.json", text));
    free(text);
    cJSON_Delete(j);
    free(cfg);
    char *st = lc_test_read_file(lc_test_fixture("tiny-llama/model/model.safetensors"), &n);
    free(lc_test_write_file(dir, "model.safetensors", st, n));
    free(st);
    return dir;
}

Test(gguf_export, models_equal_the_converters)
{
    static const char *arch[] = {"llama", "mistral", "qwen2", "qwen3"};
    for (int a = 0; a < 4; a++)
        for (int t = 0; t < 4; t++) {
            static const char *types[] = {"f32", "q8_0", "f16", "bf16"};
            if (a > 0 && t > 1)
                continue; /* f16/bf16 fixtures: llama only */
            char *fx = lc_test_asprintf("%s-%s", arch[a], types[t]);
            char *base = lc_test_asprintf("tiny-%s/model", arch[a]);
            against_converter(fx, lc_test_fixture(base), NULL, false, true);
            free(fx);
            free(base);
        }
}

Test(gguf_export, rope_scaling_equals_the_converters)
{
    char *tmp = lc_test_tmpdir();
    char *l3 = rope_variant(tmp, "llama3rope",
                            "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": "
                            "1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\""
                            ": 32, \"rope_theta\": 500000.0}");
    char *lin = rope_variant(tmp, "linrope", "{\"rope_type\": \"linear\", \"factor\": 2.0, "
                             "\"rope_theta\": 500000.0}");
    against_converter("llama3rope-f32", l3, NULL, false, true);
    against_converter("llama3rope-q8_0", l3, NULL, false, true);
    against_converter("linrope-f32", lin, NULL, false, true);
    against_converter("linrope-q8_0", lin, NULL, false, true);
    lc_test_rm_rf(tmp);
    free(tmp);
    free(l3);
    free(lin);
}

Test(gguf_export, chat_model_with_tokenizer_equals_the_converters)
{
    char *base = lc_test_asprintf("%s/configs/quickstart_chat/model", LORAC_SOURCE_DIR);
    against_converter("chat-f32", base, NULL, false, false);
    against_converter("chat-q8_0", base, NULL, false, false);
    free(base);
}

Test(gguf_export, lora_adapters_equal_the_converters)
{
    static const char *arch[] = {"llama", "qwen2"};
    for (int a = 0; a < 2; a++)
        for (int t = 0; t < 2; t++) {
            char *fx = lc_test_asprintf("lora-%s-%s", arch[a], t ? "q8_0" : "f32");
            char *base = lc_test_asprintf("tiny-%s/model", arch[a]);
            char *ad = lc_test_asprintf("tiny-%s/adapter_step3", arch[a]);
            char *ad_abs = strdup(lc_test_fixture(ad));
            against_converter(fx, lc_test_fixture(base), ad_abs, true, false);
            /* over the GGUF file of the same model (tests/fixtures/gguf-base/) */
            char *gguf = lc_test_asprintf("gguf-base/tiny-%s-%s.gguf", arch[a],
                                          a ? "q8_0" : "f32");
            against_converter(fx, lc_test_fixture(gguf), ad_abs, true, false);
            free(gguf);
            free(fx);
            free(base);
            free(ad);
            free(ad_abs);
        }
}

Test(gguf_export, tokenizers_equal_the_converters)
{
    /* spm-bpe: a SentencePiece model with its tokenizer.model (read as the
     * converter's _set_vocab_sentencepiece reads it); spm-bpe-pad: vocab_size
     * 3 past the tokenizer (the fixture's token count), [PADn]; spm-bpe-json: the same
     * HF files without tokenizer.model (scores -1000 from tokenizer.json) nor
     * add_prefix_space (transformers cannot load them so) */
    static const char *toks[] = {"llama-bpe", "qwen2", "llama-spm", "phi-3", "spm-bpe",
                                 "spm-bpe-pad", "spm-bpe-json"};
    for (int k = 0; k < 7; k++) {
        char *fxname = lc_test_asprintf("vocab-%s", toks[k]);
        cJSON *fx = load_fixture(fxname);
        int n = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItem(fx, "kv"))
            if (!strcmp(cJSON_GetArrayItem(e, 0)->valuestring, "tokenizer.ggml.tokens"))
                n = (int)cJSON_GetObjectItem(cJSON_GetArrayItem(e, 2), "n")->valuedouble;
        cr_assert(n > 0);
        bool json_only = !strcmp(toks[k], "spm-bpe-json");
        bool spm = !strncmp(toks[k], "spm-bpe", 7);
        char *dir = lc_test_tokenizer_dir(spm ? "spm-bpe" : toks[k]);
        size_t len;
        if (spm && !json_only) {
            char *model = lc_test_read_file(
                lc_test_fixture("tokenizers/spm-bpe/tokenizer.model"), &len);
            free(lc_test_write_file(dir, "tokenizer.model", model, len));
            free(model);
        }
        if (json_only) { /* as the fixture script: no add_prefix_space without the .model */
            char *tcp = lc_test_path_in(dir, "tokenizer_config.json");
            char *tct = lc_test_read_file(tcp, &len);
            cJSON *tc = cJSON_ParseWithLength(tct, len);
            cJSON_DeleteItemFromObject(tc, "add_prefix_space");
            char *again = cJSON_Print(tc);
            free(lc_test_write_text(dir, "tokenizer_config.json", again));
            free(again);
            cJSON_Delete(tc);
            free(tct);
            free(tcp);
        }
        char *cfg = lc_test_read_file(lc_test_fixture("tiny-llama/model/config.json"), &len);
        cJSON *j = cJSON_ParseWithLength(cfg, len);
        cJSON_ReplaceItemInObject(j, "vocab_size", cJSON_CreateNumber(n));
        char *text = cJSON_Print(j);
        free(lc_test_write_text(dir, "config.json", text));
        lc_model_config mc;
        lc_error err = {{0}};
        cr_assert_eq(lc_model_config_load(&mc, dir, &err), 0, "%s", err.msg);
        lc_gguf_writer *w = lc_gguf_writer_new(32);
        cr_assert_eq(lc_gguf_vocab_add(w, dir, &mc, &err), 0, "%s: %s", toks[k], err.msg);
        char *out = lc_test_path_in(dir, "vocab.gguf");
        FILE *f = fopen(out, "wb");
        cr_assert_eq(lc_gguf_write_header(w, f, &err), 0, "%s", err.msg);
        fclose(f);
        lc_gguf_file g;
        cr_assert_eq(lc_gguf_open(&g, out, &err), 0, "%s", err.msg);
        check_kv(&g, fx, "tokenizer.", fxname);
        lc_gguf_close(&g);
        lc_gguf_writer_free(w);
        free(out);
        free(text);
        cJSON_Delete(j);
        free(cfg);
        cJSON_Delete(fx);
        lc_test_rm_rf(dir);
        free(dir);
        free(fxname);
    }
}

/* ggml [ne0, ne1] tensor t of f (F32) equals HF [rows, cols] f32 tensor h,
 * rows permuted back when heads > 0. */
static void same_f32(const lc_gguf_tensor *t, const float *h, int64_t rows, int64_t cols,
                     int heads, const char *name)
{
    cr_assert_eq(t->type, LC_GGML_F32, "%s", name);
    cr_assert_eq(t->ne[0], cols, "%s", name);
    cr_assert_eq(t->ne[1], rows, "%s", name);
    const float *g = (const float *)t->data;
    const int64_t d = heads ? rows / heads : rows, half = d / 2;
    for (int64_t r = 0; r < rows; r++) {
        int64_t src = r;
        if (heads) { /* gguf row h*d + i*2 + p holds HF row h*d + p*half + i */
            int64_t hh = r / d, i = (r % d) / 2, p = r % 2;
            src = hh * d + p * half + i;
        }
        cr_assert(!memcmp(g + r * cols, h + src * cols, (size_t)cols * 4),
                  "%s: row %lld differs", name, (long long)r);
    }
}

Test(gguf_export, f32_tensors_are_the_hf_tensors_bit_for_bit)
{
    static const char *arch[] = {"llama", "mistral", "qwen2", "qwen3"};
    for (int a = 0; a < 4; a++) {
        char *base_rel = lc_test_asprintf("tiny-%s/model", arch[a]);
        const char *base = lc_test_fixture(base_rel);
        char *dir = lc_test_tmpdir(), *out = lc_test_path_in(dir, "m.gguf");
        lc_error err = {{0}};
        cr_assert_eq(export(base, NULL, false, "f32", true, out, &err), 0, "%s", err.msg);
        lc_model_config mc;
        cr_assert_eq(lc_model_config_load(&mc, base, &err), 0);
        lc_model_files mf;
        cr_assert_eq(lc_model_files_open(&mf, base, &err), 0);
        lc_gguf_file f;
        cr_assert_eq(lc_gguf_open(&f, out, &err), 0, "%s", err.msg);
        int checked = 0;
        for (size_t s = 0; s < mf.n_shards; s++)
            for (size_t i = 0; i < mf.shards[s].n_tensors; i++) {
                const lc_st_tensor *t = &mf.shards[s].tensors[i];
                cr_assert_eq(t->dtype, LC_DTYPE_F32);
                char g[128];
                int l = -1, k = 0;
                const char *rest = "";
                if (sscanf(t->name, "model.layers.%d.%n", &l, &k) == 1 && k)
                    rest = t->name + k;
                static const char *map[][2] = {
                    {"input_layernorm.weight", "attn_norm.weight"},
                    {"post_attention_layernorm.weight", "ffn_norm.weight"},
                    {"self_attn.q_proj.weight", "attn_q.weight"},
                    {"self_attn.k_proj.weight", "attn_k.weight"},
                    {"self_attn.v_proj.weight", "attn_v.weight"},
                    {"self_attn.o_proj.weight", "attn_output.weight"},
                    {"self_attn.q_proj.bias", "attn_q.bias"},
                    {"self_attn.k_proj.bias", "attn_k.bias"},
                    {"self_attn.v_proj.bias", "attn_v.bias"},
                    {"self_attn.q_norm.weight", "attn_q_norm.weight"},
                    {"self_attn.k_norm.weight", "attn_k_norm.weight"},
                    {"mlp.gate_proj.weight", "ffn_gate.weight"},
                    {"mlp.up_proj.weight", "ffn_up.weight"},
                    {"mlp.down_proj.weight", "ffn_down.weight"}};
                g[0] = '\0';
                if (!strcmp(t->name, "model.embed_tokens.weight"))
                    snprintf(g, sizeof g, "token_embd.weight");
                else if (!strcmp(t->name, "lm_head.weight"))
                    snprintf(g, sizeof g, "output.weight");
                else if (!strcmp(t->name, "model.norm.weight"))
                    snprintf(g, sizeof g, "output_norm.weight");
                for (size_t m = 0; l >= 0 && m < sizeof map / sizeof *map; m++)
                    if (!strcmp(rest, map[m][0]))
                        snprintf(g, sizeof g, "blk.%d.%s", l, map[m][1]);
                cr_assert(g[0], "%s: no GGUF name in the test", t->name);
                const lc_gguf_tensor *gt = lc_gguf_find_tensor(&f, g);
                cr_assert(gt, "%s: %s missing", arch[a], g);
                bool llama = a < 2;
                int heads = !llama ? 0 : strstr(rest, "q_proj") ? mc.n_heads
                                       : strstr(rest, "k_proj") ? mc.n_kv_heads : 0;
                int64_t rows = t->ndim == 2 ? t->shape[0] : 1, cols = t->shape[t->ndim - 1];
                same_f32(gt, t->data, rows, cols, heads, g);
                checked++;
            }
        cr_assert_eq((size_t)checked, f.n_tensors);
        lc_gguf_close(&f);
        lc_model_files_close(&mf);
        lc_test_rm_rf(dir);
        free(dir);
        free(out);
        free(base_rel);
    }
}

Test(gguf_export, merged_export_equals_lorac_merge_f32)
{
    const char *base = lc_test_fixture("tiny-llama/model");
    char *ad = strdup(lc_test_fixture("tiny-llama/adapter_step3"));
    char *dir = lc_test_tmpdir(), *out = lc_test_path_in(dir, "m.gguf");
    char *mdir = lc_test_path_in(dir, "merged");
    lc_error err = {{0}};
    cr_assert_eq(export(base, ad, false, "f32", true, out, &err), 0, "%s", err.msg);
    lc_merge_opts mo = {.base_dir = base, .adapter_dir = ad, .out_dir = mdir,
                        .dtype = LC_DTYPE_F32, .verify = false};
    lc_merge_report mr;
    cr_assert_eq(lc_merge(&mo, &mr, NULL, &err), 0, "%s", err.msg);
    lc_model_files mf;
    cr_assert_eq(lc_model_files_open(&mf, mdir, &err), 0, "%s", err.msg);
    lc_gguf_file f;
    cr_assert_eq(lc_gguf_open(&f, out, &err), 0, "%s", err.msg);
    static const char *mods[][2] = {{"self_attn.q_proj", "attn_q"}, {"self_attn.k_proj", "attn_k"},
                                    {"self_attn.v_proj", "attn_v"}, {"self_attn.o_proj", "attn_output"},
                                    {"mlp.gate_proj", "ffn_gate"}, {"mlp.up_proj", "ffn_up"},
                                    {"mlp.down_proj", "ffn_down"}};
    for (int l = 0; l < 2; l++)
        for (int m = 0; m < 7; m++) {
            char hn[128], gn[128];
            snprintf(hn, sizeof hn, "model.layers.%d.%s.weight", l, mods[m][0]);
            snprintf(gn, sizeof gn, "blk.%d.%s.weight", l, mods[m][1]);
            const lc_st_tensor *t = lc_model_files_find(&mf, hn);
            const lc_gguf_tensor *g = lc_gguf_find_tensor(&f, gn);
            cr_assert(t && g, "%s", hn);
            same_f32(g, t->data, t->shape[0], t->shape[1], m == 0 ? 4 : m == 1 ? 2 : 0, gn);
        }
    lc_gguf_close(&f);
    lc_model_files_close(&mf);
    lc_test_rm_rf(dir);
    free(dir);
    free(out);
    free(mdir);
    free(ad);
}

Test(gguf_export, rslora_alpha_is_folded)
{
    char *dir = lc_test_tmpdir();
    char *ad = lc_test_path_in(dir, "adapter");
    char *cmd = lc_test_asprintf("cp -r '%s' '%s'", lc_test_fixture("tiny-llama/adapter_step3"), ad);
    cr_assert_eq(system(cmd), 0);
    char *cfgp = lc_test_path_in(ad, "adapter_config.json");
    size_t n;
    char *text = lc_test_read_file(cfgp, &n);
    cJSON *j = cJSON_ParseWithLength(text, n);
    cJSON_ReplaceItemInObject(j, "use_rslora", cJSON_CreateTrue());
    char *t2 = cJSON_Print(j);
    free(lc_test_write_text(ad, "adapter_config.json", t2));
    char *out = lc_test_path_in(dir, "a.gguf");
    lc_error err = {{0}};
    cr_assert_eq(export(lc_test_fixture("tiny-llama/model"), ad, true, "f32", false, out, &err), 0,
                 "%s", err.msg);
    lc_gguf_file f;
    cr_assert_eq(lc_gguf_open(&f, out, &err), 0, "%s", err.msg);
    float alpha;
    cr_assert_eq(lc_gguf_get_f32(&f, "adapter.lora.alpha", &alpha, &err), 0, "%s", err.msg);
    /* llama.cpp scales by alpha / r: 16 sqrt(8) / 8 = 16 / sqrt(8), rsLoRA's scaling */
    cr_assert_eq(alpha, (float)(16.0 * sqrt(8.0)), "alpha %.9g", (double)alpha);
    lc_gguf_close(&f);
    lc_test_rm_rf(dir);
    free(dir);
    free(ad);
    free(cmd);
    free(cfgp);
    free(text);
    free(t2);
    cJSON_Delete(j);
    free(out);
}

static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

Test(gguf_export, refusals_leave_nothing_behind)
{
    const char *base = lc_test_fixture("tiny-llama/model");
    char *dir = lc_test_tmpdir(), *out = lc_test_path_in(dir, "m.gguf");
    lc_error err = {{0}};
    /* no tokenizer: refused, says why and what to do */
    cr_assert_neq(export(base, NULL, false, "f32", false, out, &err), 0);
    lc_test_assert_msg_has(&err, "tokenizer.json");
    cr_assert_eq(count_entries(dir), 0, "a partial file was left");
    /* an existing output: refused without --force, replaced with it */
    free(lc_test_write_text(dir, "m.gguf", "old"));
    cr_assert_neq(export(base, NULL, false, "f32", true, out, &err), 0);
    lc_test_assert_msg_has(&err, "--force");
    size_t n;
    char *old = lc_test_read_file(out, &n);
    cr_assert_str_eq(old, "old");
    free(old);
    lc_gguf_export_opts o = {.base_dir = base, .out_path = out, .type = LC_GGML_F32,
                             .force = true, .no_vocab = true};
    lc_gguf_export_report r;
    cr_assert_eq(lc_gguf_export(&o, &r, NULL, &err), 0, "%s", err.msg);
    lc_gguf_file f;
    cr_assert_eq(lc_gguf_open(&f, out, &err), 0, "%s", err.msg);
    lc_gguf_close(&f);
    cr_assert_eq(count_entries(dir), 1);
    /* an output inside an input: refused even with --force */
    char *in_input = lc_test_path_in(base, "config.json");
    o.out_path = in_input;
    cr_assert_neq(lc_gguf_export(&o, &r, NULL, &err), 0);
    lc_test_assert_msg_has(&err, "never replaces an input");
    free(in_input);
    /* a family the GGUF writer does not know yet: refused, nothing written */
    o.base_dir = lc_test_fixture("tiny-gemma2/model");
    o.out_path = lc_test_path_in(dir, "g.gguf");
    cr_assert_neq(lc_gguf_export(&o, &r, NULL, &err), 0);
    lc_test_assert_msg_has(&err, "export-gguf does not support gemma2 models yet");
    cr_assert_eq(count_entries(dir), 1);
    free((char *)o.out_path);
    /* an unknown pre-tokenizer regex: refused */
    char *tok = lc_test_tokenizer_dir("qwen2");
    char *tj = lc_test_path_in(tok, "tokenizer.json");
    char *text = lc_test_read_file(tj, &n);
    char *p = strstr(text, "\\\\p{N}|");
    cr_assert(p);
    p[5] = '+'; /* \p{N}+ : a regex llama.cpp has no name for here */
    free(lc_test_write_text(tok, "tokenizer.json", text));
    lc_model_config mc;
    cr_assert_eq(lc_model_config_load(&mc, lc_test_fixture("tiny-qwen2/model"), &err), 0);
    mc.vocab_size = 151646;
    lc_gguf_writer *w = lc_gguf_writer_new(32);
    cr_assert_neq(lc_gguf_vocab_add(w, tok, &mc, &err), 0);
    lc_test_assert_msg_has(&err, "pre-tokenizer");
    lc_gguf_writer_free(w);
    lc_test_rm_rf(tok);
    free(tok);
    free(tj);
    free(text);
    lc_test_rm_rf(dir);
    free(dir);
    free(out);
}

Test(gguf_export, cli)
{
    char *dir = lc_test_tmpdir(), *out = lc_test_path_in(dir, "m.gguf");
    const char *args[] = {"export-gguf", "--base", lc_test_fixture("tiny-qwen3/model"), "--out",
                          out, "--type", "q8_0", "--no-vocab", NULL};
    lc_test_run_result r = lc_test_run_lorac(NULL, args);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert(strstr(r.out, "qwen3 model, 25 tensors"), "%s", r.out);
    lc_test_run_free(&r);
    const char *bad[] = {"export-gguf", "--base", "x", "--out", out, "--type", "q4_0", NULL};
    r = lc_test_run_lorac(NULL, bad);
    cr_assert_eq(r.code, 2);
    cr_assert(strstr(r.err, "--type"), "%s", r.err);
    lc_test_run_free(&r);
    lc_test_rm_rf(dir);
    free(dir);
    free(out);
}

/* main.c — the lorac command line: the only place that prints errors and
 * chooses exit codes (0 ok, 1 failed, 2 bad usage; lorac train also 128 +
 * the signal that stopped it: 129 SIGHUP, 130 SIGINT, 141 SIGPIPE, 143
 * SIGTERM). */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autograd/cpu/blas.h"
#include "autograd/cpu/dispatch.h"
#include "autograd/cpu/gemm_bf16.h"
#include "data/text_jsonl.h"
#include "train/bench.h"
#include "train/chat_cmd.h"
#include "train/cli_opt.h"
#include "train/config.h"
#include "train/eval.h"
#include "train/generate_chat.h"
#include "train/generate_cmd.h"
#include "train/info.h"
#include "data/ggml_quants.h"
#include "train/gguf_export.h"
#include "train/gguf_model.h"
#include "train/merge.h"
#include "train/preprocess.h"
#include "train/quantize.h"
#include "train/trainer.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: lorac <command> [options]\n"
               "commands:\n"
               "  train CONFIG.yaml [--set key=value ...]   fine-tune LoRA adapters\n"
               "  bench [--layers N --hidden N ...]          time forward+backward+AdamW steps\n"
               "                                             on a random model (see --help)\n"
               "  merge --base DIR --adapter DIR --out DIR   fold an adapter into its base model\n"
               "  export-gguf --base DIR --out F.gguf        the model (merged with --adapter DIR), or\n"
               "                                             the adapter (--lora), as GGUF for llama.cpp\n"
               "  eval CONFIG.yaml | --model DIR --data F    loss and perplexity on tokenized JSONL\n"
               "  generate --model DIR --prompt TEXT         generate text (KV cache; greedy or\n"
               "                                             sampled; --adapter, --messages F.json)\n"
               "  info DIR                                   architecture, parameters, memory plan\n"
               "  quantize IN_DIR OUT_DIR                    write a bitsandbytes NF4 checkpoint\n"
               "  tokenize --model DIR --jsonl IN.jsonl      token ids of {\"text\": ...} rows\n"
               "  preprocess CONFIG.yaml --out OUT.jsonl     rows exactly as train trains them\n"
               "  chat --model DIR [--adapter DIR]           talk with a model (streamed replies)\n"
               "run 'lorac <command> --help' for a command's options;\n"
               "'lorac --version' for the build and the CPU kernels in use\n");
}

/* The version, how this binary was built, and what it runs on this CPU. */
static int print_version(void)
{
    char cpu[512];
    lc_cpu_describe(cpu, sizeof cpu);
    printf("lorac %s\n%s\nkernel variants in this binary: %s (best for this CPU: %s; "
           "force one with %s=NAME)\n", LORAC_VERSION, cpu, lc_cpu_isa_names(),
           lc_cpu_isa_best(), LC_CPU_ISA_ENV);
    /* what compute_dtype auto means on this CPU */
    lc_cpu_bf16_engine e = LC_CPU_BF16_OFF;
    char why[320];
    lc_error err = {{0}};
    bool bad = lc_cpu_bf16_engine_select(&e, why, sizeof why, &err) != 0;
    printf("bfloat16 on this CPU: %s (%s); compute_dtype auto: %s\n",
           e == LC_CPU_BF16_OFF ? "no" : "yes", bad ? err.msg : why,
           e == LC_CPU_BF16_OFF ? "float32" : "bfloat16");
    return 0;
}

static void train_usage(FILE *f)
{
    fprintf(f, "usage: lorac train CONFIG.yaml [--set key=value ...]\n"
               "  Trains LoRA adapters as CONFIG.yaml says (keys: configs/README.md).\n"
               "  --set key=value   override a config key (value is YAML: 1e-3, [q_proj,v_proj])\n"
               "  Exit status: 0 finished, 1 failed, 2 bad usage; stopped by a signal after\n"
               "  saving a checkpoint: 128 + the signal (129 SIGHUP, 130 SIGINT, 141 SIGPIPE,\n"
               "  143 SIGTERM).\n");
}

static void bench_usage(FILE *f)
{
    fprintf(f, "usage: lorac bench [--hidden 576] [--layers 30] [--heads 9] [--kv-heads 3]\n"
               "                   [--intermediate 1536] [--vocab 49152] [--tied 1] [--rank 16]\n"
               "                   [--batch 4] [--seq 256] [--steps 3] [--warmup 1] [--bf16] [--dora]\n"
               "                   [--nf4] [--experts E [--top-k 2]] [--checkpointing]\n"
               "                   [--device cpu|cuda|auto] [--compute-dtype auto|bfloat16|float32]\n"
               "                   [--gemm-peak]\n"
               "  A random Llama of that shape (with --experts: a Mixtral whose MLPs are E experts\n"
               "  of --intermediate each), LoRA r on every linear (and expert), gradient\n"
               "  checkpointing when asked. Prints one JSON line: tokens/s, peak RSS, per-step\n"
               "  seconds, set-up seconds, the step's GEMM GFLOP; on a device also its peak memory\n"
               "  (device_peak_mib). --gemm-peak: GFLOP/s of this machine's GEMMs at the step's\n"
               "  shapes instead (f32 on OpenBLAS and oneDNN, bf16 where the CPU has bf16 units),\n"
               "  and of its cores' float32 multiply-adds (fma_peak_gflops: no GEMM is faster).\n");
}

static bool wants_help(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    return false;
}

static int cmd_train(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        train_usage(stdout);
        return 0;
    }
    if (argc < 1 || argv[0][0] == '-') {
        train_usage(stderr);
        return 2;
    }
    const char *path = argv[0];
    char **sets = calloc((size_t)argc + 1, sizeof *sets);
    int n_sets = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) {
            sets[n_sets++] = argv[++i];
        } else if (strncmp(argv[i], "--set=", 6) == 0) {
            sets[n_sets++] = argv[i] + 6;
        } else {
            fprintf(stderr, "lorac train: unexpected argument '%s'\n", argv[i]);
            train_usage(stderr);
            free(sets);
            return 2;
        }
    }
    lc_error err = {{0}};
    lc_train_config cfg;
    int rc = lc_train_config_load(&cfg, path, sets, n_sets, &err);
    if (rc == 0)
        rc = lc_train_run(&cfg, stderr, &err);
    if (rc < 0) {
        fprintf(stderr, "lorac: %s\n", err.msg);
        rc = 1;
    } else if (rc > 0) {
        /* Stopped by a signal, checkpoint saved: not finished, so not 0. */
        if (rc != SIGPIPE) /* (nobody is reading stderr any more) */
            fprintf(stderr, "lorac: stopped by %s before the run finished; continue it with "
                    "resume_from_checkpoint: auto\n",
                    rc == SIGINT ? "SIGINT" : rc == SIGTERM ? "SIGTERM"
                    : rc == SIGHUP ? "SIGHUP" : strsignal(rc));
        rc = 128 + rc;
    }
    lc_train_config_free(&cfg);
    free(sets);
    return rc;
}

/* ---- option helpers for merge / eval / info ---- */


static bool parse_count(const char *cmd, const char *flag, const char *v, int64_t max,
                        int64_t *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < 1 || x > max) {
        fprintf(stderr, "lorac %s: %s: expected an integer from 1 to %lld, got '%s'\n", cmd, flag,
                (long long)max, v);
        return false;
    }
    *out = x;
    return true;
}

static void merge_usage(FILE *f)
{
    fprintf(f,
        "usage: lorac merge --base DIR --adapter DIR --out DIR [--dtype auto|bf16|f16|f32]\n"
        "                   [--dequantize] [--force] [--no-verify]\n"
        "  Folds a PEFT LoRA adapter into its base model: every adapted linear becomes\n"
        "  W + scaling * (B @ A), computed in f32 and written back in the base's dtype (or\n"
        "  --dtype) with round-to-nearest-even; every other tensor is copied bit for bit.\n"
        "  OUT is a plain Hugging Face model directory: the base's shard files and\n"
        "  model.safetensors.index.json (same weight_map), config.json, tokenizer and\n"
        "  generation files (*.json, *.model, *.txt, *.jinja, *.tiktoken) copied. Shards are\n"
        "  processed one at a time: peak memory is about one shard (printed at the end).\n"
        "  --base DIR      the Hugging Face model the adapter was trained on\n"
        "  --adapter DIR   adapter_config.json + adapter_model.safetensors (PEFT)\n"
        "  --out DIR       where to write the merged model; must not exist\n"
        "  --dtype D       auto (default: each tensor keeps its dtype; bf16 with --dequantize),\n"
        "                  or bf16, f16, f32: every float tensor is written in D and\n"
        "                  config.json's dtype and the index's total_size are updated\n"
        "  --dequantize    accept a quantized base (a bitsandbytes 4-bit NF4 checkpoint, whose\n"
        "                  config.json has a quantization_config): every NF4 linear is\n"
        "                  dequantized to f32, the adapter's update added in f32 as above, and\n"
        "                  written dense in --dtype, by default BF16 (every other float tensor\n"
        "                  too); the bitsandbytes tensors (.absmax, .quant_map, .nested_*,\n"
        "                  .quant_state.*) are dropped and config.json loses\n"
        "                  quantization_config. The result is a plain, unquantized model; it\n"
        "                  holds the NF4 values, not the weights before quantization.\n"
        "  --force         replace OUT when it exists (only once the new model is complete;\n"
        "                  only an earlier output: model files, no subdirectory, no input)\n"
        "  --no-verify     skip the verification below\n"
        "  Verification: a fixed probe batch (2 rows x 16 tokens) runs through base + adapter\n"
        "  and through the merged model; the largest absolute logit difference must be at\n"
        "  most (256 x 2^-24 + 16 x u) x max|logit|, u = 2^-8 for bf16 output, 2^-11 for\n"
        "  f16, 0 for f32 (other rounding order, and the rounding of the weights). Then\n"
        "  every merged matrix is compared element by element with W + scaling * B@A: each\n"
        "  must be within the roundings of the merge, (3 x 2^-24 + u) relative. Otherwise\n"
        "  nothing is written and merge fails.\n"
        "  Any failure (a write error such as a full disk included) removes the partial\n"
        "  output; an existing OUT is left as it was.\n"
        "  Quantized bases (config.json quantization_config, bitsandbytes 4-bit) are refused\n"
        "  without --dequantize. With it, the verification compares base (NF4) + adapter\n"
        "  against the dense merged model, with the tolerance of the output dtype.\n"
        "  GGUF base: lorac merge --base model.gguf --adapter DIR --out merged.gguf\n"
        "  [--type f32|f16|bf16|q8_0] [--force] [--no-verify] writes a GGUF file, as\n"
        "  llama.cpp's llama-export-lora: metadata and untouched tensors copied byte for\n"
        "  byte, each adapted linear dequantized, merged in f32 and written in --type\n"
        "  (default: F32 stays F32, any other type becomes F16), q/k rows in llama.cpp's\n"
        "  order; verified as above before the file is renamed into place.\n"
        "  Exit status: 0 merged, 1 failed, 2 bad usage.\n");
}

static int cmd_merge(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        merge_usage(stdout);
        return 0;
    }
    lc_merge_opts o = {.dtype = LC_MERGE_DTYPE_AUTO, .verify = true};
    const char *dtype = NULL;
    bool no_verify = false;
    const lc_cli_flag flags[] = {
        {"--base", &o.base_dir, NULL}, {"--adapter", &o.adapter_dir, NULL},
        {"--out", &o.out_dir, NULL}, {"--dtype", &dtype, NULL}, {"--force", NULL, &o.force},
        {"--no-verify", NULL, &no_verify}, {"--dequantize", NULL, &o.dequantize},
        {"--type", &o.gguf_type, NULL},
    };
    if (lc_cli_parse("merge", argc, argv, flags, (int)(sizeof flags / sizeof *flags), stderr)) {
        merge_usage(stderr);
        return 2;
    }
    o.verify = !no_verify;
    if (dtype && lc_merge_parse_dtype(dtype, &o.dtype) != 0) {
        fprintf(stderr, "lorac merge: --dtype: expected auto, bf16, f16 or f32, got '%s'\n", dtype);
        return 2;
    }
    const char *missing = !o.base_dir ? "--base DIR" : !o.adapter_dir ? "--adapter DIR"
                          : !o.out_dir ? "--out DIR|F.gguf" : NULL;
    if (missing) {
        fprintf(stderr, "lorac merge: missing %s\n", missing);
        merge_usage(stderr);
        return 2;
    }
    lc_error err = {{0}};
    lc_merge_report r;
    if (lc_merge(&o, &r, stdout, &err)) {
        fflush(stdout);
        fprintf(stderr, "lorac merge: %s\n", err.msg);
        return 1;
    }
    if (lc_gguf_model_is_gguf(o.base_dir)) {
        printf("merged %d linear%s of %s into %s: %s (%d tensor%s, %.1f MiB; %s)\n",
               r.n_merged, lc_plural(r.n_merged), o.adapter_dir, o.base_dir, o.out_dir,
               r.n_tensors, lc_plural(r.n_tensors), r.bytes_written / 1048576.0, r.copied);
    } else {
        printf("merged %d linear%s of %s into %s: %s (%d shard%s, %d tensor%s, %.1f MiB",
               r.n_merged, lc_plural(r.n_merged), o.adapter_dir, o.base_dir, o.out_dir,
               r.n_shards, lc_plural(r.n_shards), r.n_tensors, lc_plural(r.n_tensors),
               r.bytes_written / 1048576.0);
        if (r.n_dequantized)
            printf(", %d NF4 linear%s dequantized to %s, %d bitsandbytes tensor%s dropped",
                   r.n_dequantized, lc_plural(r.n_dequantized),
                   lc_dtype_name((lc_dtype)r.out_dtype), r.n_dropped, lc_plural(r.n_dropped));
        if (r.n_converted)
            printf(", %d other tensor%s converted", r.n_converted, lc_plural(r.n_converted));
        printf(")\ncopied: %s\n", r.n_files_copied ? r.copied : "(no other files)");
    }
    printf("peak memory (max RSS) while merging: %.1f MiB (largest input shard %.1f MiB), "
           "%.2f s", r.peak_rss_merge / 1048576.0, r.largest_shard_bytes / 1048576.0,
           r.seconds_merge);
    if (r.verified)
        printf("; %.1f MiB with the verification (maps base and merged model), %.2f s",
               r.peak_rss_total / 1048576.0, r.seconds_verify);
    printf("\n");
    if (r.verified)
        printf("verify: max abs logit difference %.3g (tolerance %.3g = %s; max |logit| %.3g; "
               "%dx%d-token probe batch); %d matrices equal %sW + scaling*B@A%s to their rounding "
               "(at most %.2f of the bound): ok\n", r.verify_max_diff, r.verify_tolerance,
               r.verify_rule, r.verify_max_logit, LC_MERGE_PROBE_ROWS, LC_MERGE_PROBE_TOKENS,
               r.verify_weights_checked, r.dora ? "(m/c)*(" : "", r.dora ? ")" : "",
               r.verify_weight_worst);
    else
        printf("verify: skipped (--no-verify)\n");
    return 0;
}

static void export_gguf_usage(FILE *f)
{
    fprintf(f,
        "usage: lorac export-gguf --base DIR [--adapter DIR [--lora]] --out F.gguf\n"
        "                         [--type f32|f16|bf16|q8_0] [--force] [--no-vocab]\n"
        "  Writes a GGUF v3 file llama.cpp loads, as its convert_hf_to_gguf.py writes it:\n"
        "  architecture llama (Llama 2/3, Mistral), qwen2 or qwen3, the hyperparameters,\n"
        "  the tokenizer (tokenizer.json: byte-level BPE as gpt2, SentencePiece-style BPE as\n"
        "  llama), the chat template, and the tensors renamed (q/k rows permuted for llama).\n"
        "  --base DIR      Hugging Face model directory (F32/BF16/F16 weights); with --lora\n"
        "                  also the GGUF file the adapter was trained over\n"
        "  --adapter DIR   PEFT adapter: merged into the base (W + scaling * B@A, in f32)\n"
        "  --lora          write the adapter alone as a GGUF LoRA adapter (llama.cpp --lora),\n"
        "                  as convert_lora_to_gguf.py writes it (rsLoRA folded into alpha)\n"
        "  --out F.gguf    the file to write; must not exist unless --force\n"
        "  --type T        f32 (default), f16, bf16 or q8_0 for the matrices; 1-D tensors and\n"
        "                  norms stay f32, as the converter keeps them\n"
        "  --force         replace an existing F.gguf (never a file of the inputs)\n"
        "  --no-vocab      write no tokenizer (llama.cpp cannot run such a file: inspection)\n"
        "  The file is written one tensor at a time to F.gguf.lorac-partial-XXXXXX and renamed\n"
        "  when complete. Exit status: 0 written, 1 failed, 2 bad usage.\n");
}

static int cmd_export_gguf(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        export_gguf_usage(stdout);
        return 0;
    }
    lc_gguf_export_opts o = {.type = LC_GGML_F32};
    const char *type = NULL;
    const lc_cli_flag flags[] = {
        {"--base", &o.base_dir, NULL}, {"--adapter", &o.adapter_dir, NULL},
        {"--out", &o.out_path, NULL}, {"--type", &type, NULL}, {"--force", NULL, &o.force},
        {"--lora", NULL, &o.lora}, {"--no-vocab", NULL, &o.no_vocab},
    };
    if (lc_cli_parse("export-gguf", argc, argv, flags, (int)(sizeof flags / sizeof *flags),
                     stderr)) {
        export_gguf_usage(stderr);
        return 2;
    }
    if (type && lc_gguf_export_parse_type(type, &o.type) != 0) {
        fprintf(stderr, "lorac export-gguf: --type: expected f32, f16, bf16 or q8_0, got '%s'\n",
                type);
        return 2;
    }
    const char *missing = !o.base_dir ? "--base DIR" : !o.out_path ? "--out F.gguf"
                          : o.lora && !o.adapter_dir ? "--adapter DIR (for --lora)" : NULL;
    if (missing) {
        fprintf(stderr, "lorac export-gguf: missing %s\n", missing);
        export_gguf_usage(stderr);
        return 2;
    }
    lc_error err = {{0}};
    lc_gguf_export_report r;
    if (lc_gguf_export(&o, &r, stdout, &err)) {
        fflush(stdout);
        fprintf(stderr, "lorac export-gguf: %s\n", err.msg);
        return 1;
    }
    printf("wrote %s: %s %s, %d tensor%s", o.out_path, r.arch, o.lora ? "LoRA adapter" : "model",
           r.n_tensors, lc_plural(r.n_tensors));
    if (!o.lora && o.adapter_dir)
        printf(" (%d linear%s merged from %s)", r.n_merged, lc_plural(r.n_merged), o.adapter_dir);
    printf(", %.1f MiB; peak memory (max RSS) %.1f MiB, %.2f s\n", r.bytes / 1048576.0,
           r.peak_rss / 1048576.0, r.seconds);
    return 0;
}

static void eval_usage(FILE *f)
{
    fprintf(f,
        "usage: lorac eval CONFIG.yaml [--set key=value ...]\n"
        "       lorac eval --model DIR [--adapter DIR] --data FILE.jsonl [--data FILE ...]\n"
        "                  [--seq-len N] [--micro-batch N] [--nf4]\n"
        "                  [--device cpu|cuda|auto] [--compute-dtype auto|bfloat16|float32]\n"
        "  Prints the mean loss over the supervised tokens, the perplexity exp(loss), the\n"
        "  number of supervised tokens and the throughput (tokens/s). Rows are evaluated\n"
        "  unpacked, in file order, truncated to the sequence length.\n"
        "  With CONFIG.yaml (the training config, keys as for lorac train):\n"
        "    model:    base_model\n"
        "    adapter:  the trained adapter in output_dir when output_dir/adapter_model.safetensors\n"
        "              exists, else lora_model_dir, else none (the base model alone)\n"
        "    data:     test_datasets, or datasets when there are none\n"
        "    lengths:  sequence_len and micro_batch_size\n"
        "    4-bit:    adapter: qlora (or load_in_4bit: true) quantizes the base's linears to\n"
        "              NF4 at load as lorac train does (bnb_4bit_blocksize,\n"
        "              bnb_4bit_use_double_quant), so the loss is the one training saw\n"
        "  --model DIR        Hugging Face model directory\n"
        "  --adapter DIR      PEFT adapter directory (optional)\n"
        "  --data FILE        tokenized JSONL ({\"input_ids\": [...], \"labels\": [...]}), up to 16\n"
        "  --seq-len N        rows are truncated to N tokens (default min(%d, the model's\n"
        "                     max_position_embeddings))\n"
        "  --micro-batch N    rows per forward pass (default 1; changes speed, not the loss)\n"
        "  --nf4              quantize the model's linears to NF4 at load (QLoRA: blocksize 64,\n"
        "                     double quantization), exactly as bitsandbytes would\n"
        "  --device D         where to run: cpu, cuda or auto (default auto: cuda when present)\n"
        "  --compute-dtype T  activations and weights on the device: auto (bfloat16 on cuda,\n"
        "                     float32 on cpu), bfloat16 or float32\n"
        "  A pre-quantized model (a bitsandbytes 4-bit checkpoint, as written by lorac\n"
        "  quantize) is evaluated on its NF4 linears as stored, with or without --nf4.\n"
        "  Exit status: 0 ok, 1 failed, 2 bad usage.\n", LC_DEFAULT_SEQ_LEN);
}

/* The arguments of `lorac eval`, as parsed. */
typedef struct eval_args {
    lc_eval_request req;
    char *data[LC_CONFIG_MAX_DATASETS];
    char **sets;              /* [argc + 1] */
    bool direct;              /* some option of the direct form was given */
} eval_args;

/* One option of the direct form (--model ... --nf4) at argv[*i]: 1 taken,
 * 0 not one of them, -1 bad or missing value (message printed). */
static int eval_direct_option(int argc, char **argv, int *i, eval_args *a)
{
    lc_eval_opts *o = &a->req.direct;
    const char *v = NULL;
    int k;
    if ((k = lc_cli_opt_value(argc, argv, i, "--model", &v)) != 0) {
        if (k > 0)
            o->model_dir = v;
    } else if ((k = lc_cli_opt_value(argc, argv, i, "--adapter", &v)) != 0) {
        if (k > 0)
            o->adapter_dir = v;
    } else if ((k = lc_cli_opt_value(argc, argv, i, "--data", &v)) != 0) {
        if (k > 0 && o->n_data == LC_CONFIG_MAX_DATASETS) {
            fprintf(stderr, "lorac eval: at most %d --data files\n", LC_CONFIG_MAX_DATASETS);
            return -1;
        }
        if (k > 0)
            a->data[o->n_data++] = (char *)v;
    } else if ((k = lc_cli_opt_value(argc, argv, i, "--seq-len", &v)) != 0) {
        if (k > 0 && !parse_count("eval", "--seq-len", v, 1 << 20, &o->seq_len))
            return -1;
    } else if ((k = lc_cli_opt_value(argc, argv, i, "--micro-batch", &v)) != 0) {
        if (k > 0 && !parse_count("eval", "--micro-batch", v, 1 << 16, &o->micro_batch))
            return -1;
    } else if ((k = lc_cli_opt_value(argc, argv, i, "--device", &v)) != 0) {
        if (k > 0 && lc_device_from_name(v, &o->device)) {
            fprintf(stderr, "lorac eval: --device: expected cpu, cuda or auto, got '%s'\n", v);
            return -1;
        }
    } else if ((k = lc_cli_opt_value(argc, argv, i, "--compute-dtype", &v)) != 0) {
        if (k > 0 && lc_compute_dtype_from_name(v, &o->compute_dtype)) {
            fprintf(stderr, "lorac eval: --compute-dtype: expected auto, bfloat16 or float32, "
                    "got '%s'\n", v);
            return -1;
        }
    } else if (strcmp(argv[*i], "--nf4") == 0) {
        o->nf4 = true;
        o->nf4_blocksize = 64;
        o->nf4_double_quant = true;
        k = 1;
    } else {
        return 0;
    }
    a->direct = true;
    if (k < 0) {
        fprintf(stderr, "lorac eval: %s needs a value\n", argv[*i]);
        return -1;
    }
    return 1;
}

/* Fills a from argv; 0, or 2 (bad usage, message printed). */
static int parse_eval_args(int argc, char **argv, eval_args *a)
{
    lc_eval_request *q = &a->req;
    for (int i = 0; i < argc; i++) {
        const char *v = NULL;
        int k = eval_direct_option(argc, argv, &i, a);
        if (k < 0)
            return 2;
        if (k > 0)
            continue;
        if ((k = lc_cli_opt_value(argc, argv, &i, "--set", &v)) > 0) {
            a->sets[q->n_sets++] = (char *)v;
        } else if (k < 0) {
            fprintf(stderr, "lorac eval: %s needs a value\n", argv[i]);
            return 2;
        } else if (argv[i][0] != '-' && !q->config) {
            q->config = argv[i];
        } else {
            fprintf(stderr, "lorac eval: unexpected argument '%s'\n", argv[i]);
            eval_usage(stderr);
            return 2;
        }
    }
    q->sets = a->sets;
    q->direct.data = a->data;
    return 0;
}

/* Exactly one of the two forms, complete; 0, or 2 (message printed). */
static int check_eval_form(const eval_args *a)
{
    const lc_eval_request *q = &a->req;
    if (q->config && a->direct) {
        fprintf(stderr, "lorac eval: give either CONFIG.yaml or --model/--adapter/--data/--nf4, "
                "not both (in CONFIG.yaml, adapter: qlora quantizes to NF4)\n");
        eval_usage(stderr);
        return 2;
    }
    if (!q->config && (!q->direct.model_dir || q->direct.n_data == 0)) {
        fprintf(stderr, "lorac eval: missing %s\n",
                !a->direct ? "CONFIG.yaml (or --model DIR --data FILE)"
                : !q->direct.model_dir ? "--model DIR" : "--data FILE");
        eval_usage(stderr);
        return 2;
    }
    if (!q->config && q->n_sets) {
        fprintf(stderr, "lorac eval: --set applies to CONFIG.yaml only\n");
        return 2;
    }
    return 0;
}

static int cmd_eval(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        eval_usage(stdout);
        return 0;
    }
    eval_args a;
    memset(&a, 0, sizeof a);
    a.sets = calloc((size_t)argc + 1, sizeof *a.sets);
    if (!a.sets) {
        fprintf(stderr, "lorac eval: out of memory\n");
        return 1;
    }
    int rc = parse_eval_args(argc, argv, &a);
    if (rc == 0)
        rc = check_eval_form(&a);
    lc_error err = {{0}};
    if (rc == 0 && lc_eval_command(&a.req, stdout, &err)) {
        fflush(stdout);
        fprintf(stderr, "lorac eval: %s\n", err.msg);
        rc = 1;
    }
    free(a.sets);
    return rc;
}

static void generate_usage(FILE *f)
{
    fprintf(f,
        "usage: lorac generate --model DIR [--adapter DIR] (--prompt TEXT | --messages F.json)\n"
        "                      [--max-new-tokens N] [--temperature T --top-p P --top-k K\n"
        "                      --seed S] [--chat-template NAME] [--json] [--nf4] [--ignore-eos]\n"
        "  Generates a continuation with the base model (and a PEFT adapter, applied unmerged),\n"
        "  decoding with a KV cache: the prompt in one pass, then one token per step. Text is\n"
        "  streamed to stdout as it comes; tokens/s (prefill and decode) go to stderr.\n"
        "  --model DIR          Hugging Face model directory (a merged model works as it is),\n"
        "                       or a GGUF file (tokenizer: tokenizer.json next to it, else its own)\n"
        "  --adapter DIR        PEFT adapter directory (optional)\n"
        "  --prompt TEXT        tokenized with DIR's tokenizer and its special tokens (BOS for\n"
        "                       Llama), as HF tokenizer(text)\n"
        "  --messages F.json    a JSON list of {\"role\", \"content\"} rendered with the model's\n"
        "                       chat template (add_generation_prompt), as apply_chat_template\n"
        "  --chat-template NAME a built-in template instead (chatml, llama3, qwen_25, ...)\n"
        "  --max-new-tokens N   at most N new tokens (default %d; cut so that prompt + new\n"
        "                       tokens fit in max_position_embeddings; a longer prompt fails)\n"
        "  --temperature T      0 (default): greedy, the most likely token (lowest id on ties);\n"
        "                       > 0: sample from softmax(logits / T)\n"
        "  --top-k K            sample among the K most likely tokens (0, default: all)\n"
        "  --top-p P            ... among the smallest most-likely set of mass >= P (default 1)\n"
        "  --seed S             the sampling seed (default 0): same seed, same tokens\n"
        "  --json               print one JSON object at the end instead: {\"prompt_ids\",\n"
        "                       \"ids\" (new ids), \"text\", \"stop\": \"eos\"|\"length\",\n"
        "                       \"tokens_per_s\", ...}\n"
        "  --nf4                quantize the linears to NF4 at load (QLoRA: blocksize 64, double\n"
        "                       quantization); a bitsandbytes 4-bit checkpoint is NF4 regardless\n"
        "  --ignore-eos         do not stop at end-of-sequence tokens (benchmarks)\n"
        "  Stops at the tokenizer's eos_token, at generation_config.json's eos_token_id(s)\n"
        "  (without that file: config.json's), or after max-new-tokens.\n"
        "  Exit status: 0 ok, 1 failed, 2 bad usage.\n", LC_GENERATE_DEFAULT_MAX_NEW);
}

static bool parse_double(const char *flag, const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "lorac generate: %s: expected a number from %g to %g, got '%s'\n", flag,
                lo, hi, v);
        return false;
    }
    *out = x;
    return true;
}

/* "1,2,3" into ids (malloc'd); false with a message when malformed. */
static bool parse_ids(const char *v, int32_t **ids, int64_t *n)
{
    size_t cap = strlen(v) / 2 + 1;
    *ids = malloc(cap * sizeof **ids);
    *n = 0;
    const char *p = v;
    while (*ids && *p) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (errno || end == p || x < 0 || x > INT32_MAX || (*end && *end != ',') ||
            (size_t)*n == cap)
            break;
        (*ids)[(*n)++] = (int32_t)x;
        p = *end ? end + 1 : end;
        if (!*p && *end)
            break;
    }
    if (!*ids || *p || *n == 0) {
        fprintf(stderr, "lorac generate: --prompt-ids: expected ids like 1,2,3, got '%s'\n", v);
        free(*ids);
        *ids = NULL;
        return false;
    }
    return true;
}

static int cmd_generate(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        generate_usage(stdout);
        return 0;
    }
    lc_generate_request q = {.sampling = {.temperature = 0, .top_k = 0, .top_p = 1, .seed = 0}};
    int32_t *ids = NULL;
    int rc = 0;
    for (int i = 0; i < argc && rc == 0; i++) {
        const char *v = NULL;
        int k;
        int64_t n;
        if ((k = lc_cli_opt_value(argc, argv, &i, "--model", &v)) > 0) {
            q.model_dir = v;
        } else if (!k && (k = lc_cli_opt_value(argc, argv, &i, "--adapter", &v)) > 0) {
            q.adapter_dir = v;
        } else if (!k && (k = lc_cli_opt_value(argc, argv, &i, "--prompt", &v)) > 0) {
            q.prompt = v;
        } else if (!k && (k = lc_cli_opt_value(argc, argv, &i, "--messages", &v)) > 0) {
            q.messages_path = v;
        } else if (!k && (k = lc_cli_opt_value(argc, argv, &i, "--prompt-ids", &v)) > 0) {
            free(ids); /* hidden: token ids as they are (models without a tokenizer; tests) */
            if (!parse_ids(v, &ids, &q.n_prompt_ids))
                rc = 2;
            q.prompt_ids = ids;
        } else if (!k && (k = lc_cli_opt_value(argc, argv, &i, "--chat-template", &v)) > 0) {
            q.chat_template = v;
        } else if (!k && (k = lc_cli_opt_value(argc, argv, &i, "--max-new-tokens", &v)) > 0) {
            if (!parse_count("generate", "--max-new-tokens", v, 1 << 24, &q.max_new_tokens))
                rc = 2;
        } else if (!k && (k = lc_cli_opt_value(argc, argv, &i, "--temperature", &v)) > 0) {
            if (!parse_double("--temperature", v, 0, 1e6, &q.sampling.temperature))
                rc = 2;
        } else if (!k && (k = lc_cli_opt_value(argc, argv, &i, "--top-p", &v)) > 0) {
            if (!parse_double("--top-p", v, 1e-9, 1, &q.sampling.top_p))
                rc = 2;
        } else if (!k && (k = lc_cli_opt_value(argc, argv, &i, "--top-k", &v)) > 0) {
            if (strcmp(v, "0") != 0 && !parse_count("generate", "--top-k", v, INT32_MAX, &n))
                rc = 2;
            q.sampling.top_k = strcmp(v, "0") == 0 ? 0 : n;
        } else if (!k && (k = lc_cli_opt_value(argc, argv, &i, "--seed", &v)) > 0) {
            char *end;
            errno = 0;
            unsigned long long x = strtoull(v, &end, 10);
            if (errno || end == v || *end || v[0] == '-') {
                fprintf(stderr, "lorac generate: --seed: expected an integer >= 0, got '%s'\n", v);
                rc = 2;
            }
            q.sampling.seed = x;
        } else if (!k && strcmp(argv[i], "--json") == 0) {
            q.json = true;
        } else if (!k && strcmp(argv[i], "--nf4") == 0) {
            q.nf4 = true;
        } else if (!k && strcmp(argv[i], "--ignore-eos") == 0) {
            q.ignore_eos = true;
        } else {
            fprintf(stderr, "lorac generate: %s '%s'\n", k < 0 ? "missing the value of" :
                    "unexpected argument", argv[i]);
            generate_usage(stderr);
            rc = 2;
        }
    }
    int forms = (q.prompt != NULL) + (q.messages_path != NULL) + (q.prompt_ids != NULL);
    if (rc == 0 && (!q.model_dir || forms != 1)) {
        fprintf(stderr, "lorac generate: %s\n", !q.model_dir ? "missing --model DIR"
                : forms == 0 ? "missing --prompt TEXT or --messages F.json"
                : "give one of --prompt and --messages, not both");
        generate_usage(stderr);
        rc = 2;
    }
    if (rc == 0 && q.chat_template && !q.messages_path) {
        fprintf(stderr, "lorac generate: --chat-template applies to --messages only\n");
        rc = 2;
    }
    lc_error err = {{0}};
    if (rc == 0 && lc_generate_command(&q, stdout, stderr, &err)) {
        fflush(stdout);
        fprintf(stderr, "lorac generate: %s\n", err.msg);
        rc = 1;
    }
    free(ids);
    return rc;
}

static void info_usage(FILE *f)
{
    fprintf(f,
        "usage: lorac info DIR [--seq-len N] [--micro-batch N] [--rank R] [--dora]\n"
        "                      [--target-modules LIST]\n"
        "  Describes the Hugging Face model in DIR: architecture and family, the linears of its\n"
        "  blocks, parameter counts (total and per part), tensor dtypes, and the memory a LoRA /\n"
        "  QLoRA run needs at the given settings, with and without gradient checkpointing.\n"
        "  --target-modules LIST  comma-separated linears the plan adapts, as\n"
        "                    lora_target_modules (default: every linear of the family)\n"
        "  --seq-len N       sequence length (default min(%d, max_position_embeddings))\n"
        "  --micro-batch N   rows per micro-batch (default 1)\n"
        "  --rank R          LoRA rank (default 8)\n"
        "  --dora            plan DoRA (peft_use_dora) instead: a magnitude per output row\n"
        "                    and its row norms (QDoRA rows: over NF4 linears)\n"
        "  QLoRA rows: NF4 linears at 0.5 byte/param + ~0.127 bit/param absmax (double\n"
        "  quantization), embeddings and lm_head at the model's dtype; for a pre-quantized\n"
        "  (bitsandbytes 4-bit) checkpoint, the real sizes of its NF4 linears as loaded. Gradient\n"
        "  checkpointing rows keep one layer's activations plus each layer's residual input, as\n"
        "  lorac train does with gradient_checkpointing: true.\n"
        "  Exit status: 0 ok, 1 failed, 2 bad usage.\n", LC_DEFAULT_SEQ_LEN);
}

static int cmd_info(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        info_usage(stdout);
        return 0;
    }
    lc_info_opts o = {.micro_batch = 1, .rank = 8};
    for (int i = 0; i < argc; i++) {
        const char *v = NULL;
        int k;
        int64_t x;
        if ((k = lc_cli_opt_value(argc, argv, &i, "--seq-len", &v)) != 0) {
            if (k > 0 && !parse_count("info", "--seq-len", v, 1 << 24, &o.seq_len))
                return 2;
        } else if ((k = lc_cli_opt_value(argc, argv, &i, "--micro-batch", &v)) != 0) {
            if (k > 0 && !parse_count("info", "--micro-batch", v, 1 << 16, &o.micro_batch))
                return 2;
        } else if ((k = lc_cli_opt_value(argc, argv, &i, "--rank", &v)) != 0) {
            if (k > 0) {
                if (!parse_count("info", "--rank", v, 4096, &x))
                    return 2;
                o.rank = (int)x;
            }
        } else if ((k = lc_cli_opt_value(argc, argv, &i, "--target-modules", &v)) != 0) {
            o.target_modules = v;
        } else if (strcmp(argv[i], "--dora") == 0) {
            o.dora = true;
        } else if (argv[i][0] != '-' && !o.dir) {
            o.dir = argv[i];
        } else {
            fprintf(stderr, "lorac info: unexpected argument '%s'\n", argv[i]);
            info_usage(stderr);
            return 2;
        }
        if (k < 0) {
            fprintf(stderr, "lorac info: %s needs a value\n", argv[i]);
            return 2;
        }
    }
    if (!o.dir) {
        fprintf(stderr, "lorac info: missing the model directory\n");
        info_usage(stderr);
        return 2;
    }
    lc_error err = {{0}};
    if (lc_info_print(&o, stdout, &err)) {
        fflush(stdout);
        fprintf(stderr, "lorac info: %s\n", err.msg);
        return 1;
    }
    return 0;
}

static void quantize_usage(FILE *f)
{
    fprintf(f,
        "usage: lorac quantize IN_DIR OUT_DIR [--blocksize 64] [--no-double-quant] [--force]\n"
        "  Quantizes every linear of the transformer blocks of the Hugging Face model in\n"
        "  IN_DIR to 4-bit NormalFloat exactly as bitsandbytes does, and writes OUT_DIR in\n"
        "  bitsandbytes' checkpoint layout (a \"-bnb-4bit\" model): `adapter: qlora` then\n"
        "  loads it without quantizing again. Embeddings, norms and lm_head are copied.\n"
        "  --blocksize N         values per absmax block (default 64)\n"
        "  --no-double-quant     keep absmax in f32 (default: 8-bit, like bnb's double quant)\n"
        "  --force               replace OUT_DIR when it exists, once the new one is complete\n"
        "                        (only an earlier output: model files, no subdirectory; never\n"
        "                        IN_DIR or a directory above it)\n"
        "  Exit status: 0 ok, 1 failed, 2 bad usage.\n");
}

static int cmd_quantize(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        quantize_usage(stdout);
        return 0;
    }
    const char *in = NULL, *out = NULL;
    int64_t bs = 64;
    bool dq = true, force = false;
    for (int i = 0; i < argc; i++) {
        char *end = NULL;
        if (strcmp(argv[i], "--blocksize") == 0 && i + 1 < argc) {
            bs = strtoll(argv[++i], &end, 10);
            if (*end || bs < 16 || bs > 4096) {
                fprintf(stderr, "lorac quantize: --blocksize: expected an integer in 16..4096\n");
                return 2;
            }
        } else if (strcmp(argv[i], "--no-double-quant") == 0) {
            dq = false;
        } else if (strcmp(argv[i], "--force") == 0) {
            force = true;
        } else if (argv[i][0] != '-' && !in) {
            in = argv[i];
        } else if (argv[i][0] != '-' && !out) {
            out = argv[i];
        } else {
            fprintf(stderr, "lorac quantize: unexpected argument '%s'\n", argv[i]);
            quantize_usage(stderr);
            return 2;
        }
    }
    if (!in || !out) {
        quantize_usage(stderr);
        return 2;
    }
    lc_error err = {{0}};
    if (lc_quantize_model(in, out, bs, dq, force, &err)) {
        fprintf(stderr, "lorac: %s\n", err.msg);
        return 1;
    }
    printf("wrote %s (NF4, blocksize %lld%s)\n", out, (long long)bs, dq ? ", double quant" : "");
    return 0;
}

static void tokenize_usage(FILE *f)
{
    fprintf(f,
        "usage: lorac tokenize --model DIR --jsonl IN.jsonl [--add-special-tokens]\n"
        "  Tokenizes each row {\"text\": \"...\"} of IN.jsonl with the tokenizer of the model\n"
        "  in DIR (tokenizer.json, tokenizer_config.json) and prints one line\n"
        "  {\"input_ids\": [...]} per row on stdout (nothing else goes there), the ids of\n"
        "  Hugging Face's tokenizer(text, add_special_tokens=False).\n"
        "  --add-special-tokens   add the post-processor's tokens (BOS for Llama) as\n"
        "                         add_special_tokens=True does\n"
        "  Exit status: 0 ok, 1 failed (the message names file and line), 2 bad usage.\n");
}

static int cmd_tokenize(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        tokenize_usage(stdout);
        return 0;
    }
    const char *dir = NULL, *jsonl = NULL;
    bool special = false;
    for (int i = 0; i < argc; i++) {
        const char *v = NULL;
        int k;
        if ((k = lc_cli_opt_value(argc, argv, &i, "--model", &v)) > 0) {
            dir = v;
        } else if (k == 0 && (k = lc_cli_opt_value(argc, argv, &i, "--jsonl", &v)) > 0) {
            jsonl = v;
        } else if (k == 0 && strcmp(argv[i], "--add-special-tokens") == 0) {
            special = true;
        } else if (k == 0) {
            fprintf(stderr, "lorac tokenize: unexpected argument '%s'\n", argv[i]);
            tokenize_usage(stderr);
            return 2;
        }
        if (k < 0) {
            fprintf(stderr, "lorac tokenize: %s needs a value\n", argv[i]);
            return 2;
        }
    }
    if (!dir || !jsonl) {
        fprintf(stderr, "lorac tokenize: missing %s\n", dir ? "--jsonl" : "--model");
        tokenize_usage(stderr);
        return 2;
    }
    lc_error err = {{0}};
    lc_tokenizer *t;
    if (lc_tokenizer_load(&t, dir, &err)) {
        fprintf(stderr, "lorac tokenize: %s\n", err.msg);
        return 1;
    }
    long long rows;
    int rc = lc_text_jsonl_tokenize(t, jsonl, special, stdout, &rows, &err);
    lc_tokenizer_free(t);
    if (fflush(stdout) != 0 && rc == 0)
        rc = lc_error_set(&err, "writing stdout failed");
    if (rc) {
        fprintf(stderr, "lorac tokenize: %s\n", err.msg);
        return 1;
    }
    return 0;
}

static void preprocess_usage(FILE *f)
{
    fprintf(f,
        "usage: lorac preprocess CONFIG.yaml [--out OUT.jsonl] [--force] [--debug [N]]\n"
        "                        [--set key=value ...]\n"
        "  Tokenizes the config's datasets as lorac train does (the model's tokenizer and\n"
        "  chat template, Axolotl's dataset types and label masks) and writes each kept row\n"
        "  as {\"input_ids\": [...], \"labels\": [...]} (-100: not trained) in file order:\n"
        "  OUT trains exactly like the config's data as a type: tokenized dataset.\n"
        "  Dropped rows (longer than sequence_len, under 2 tokens, nothing supervised) are\n"
        "  counted; the summary is the data line lorac train prints.\n"
        "  --out FILE     where the rows go (omitted: summary only); --force replaces it\n"
        "  --debug [N]    show the first N rows of each dataset (default 3) with the\n"
        "                 supervised spans marked (green, or between \u00ab\u00bb when not a\n"
        "                 terminal), and every dropped row with its reason\n"
        "  Exit status: 0 ok, 1 failed, 2 bad usage.\n");
}

static int cmd_preprocess(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        preprocess_usage(stdout);
        return 0;
    }
    if (argc < 1 || argv[0][0] == '-') {
        preprocess_usage(stderr);
        return 2;
    }
    lc_preprocess_opts o = {.color = isatty(STDERR_FILENO) != 0};
    char **sets = calloc((size_t)argc + 1, sizeof *sets);
    int n_sets = 0;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int k;
        if ((k = lc_cli_opt_value(argc, argv, &i, "--out", &v)) > 0) {
            o.out = v;
        } else if (k == 0 && (k = lc_cli_opt_value(argc, argv, &i, "--set", &v)) > 0) {
            sets[n_sets++] = (char *)v;
        } else if (k == 0 && strcmp(argv[i], "--force") == 0) {
            o.force = true;
        } else if (k == 0 && strcmp(argv[i], "--debug") == 0) {
            int64_t n = 3;
            if (i + 1 < argc && argv[i + 1][0] != '-' &&
                !parse_count("preprocess", "--debug", argv[++i], 1000000, &n)) {
                free(sets);
                return 2;
            }
            o.debug_rows = (int)n;
        } else {
            fprintf(stderr, "lorac preprocess: %s '%s'\n", k < 0 ? "missing the value of" :
                    "unexpected argument", argv[i]);
            preprocess_usage(stderr);
            free(sets);
            return 2;
        }
    }
    lc_error err = {{0}};
    lc_train_config cfg;
    int rc = lc_train_config_load(&cfg, argv[0], sets, n_sets, &err);
    if (rc == 0)
        rc = lc_preprocess(&cfg, &o, stderr, &err);
    if (rc)
        fprintf(stderr, "lorac: %s\n", err.msg);
    lc_train_config_free(&cfg);
    free(sets);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    /* Before anything else: OpenBLAS may need a re-exec with the right core
     * (blas.h), and the CPU kernels are chosen once here, so a bad
     * LORAC_CPU_ISA is a usage error rather than a warning. */
    lc_blas_fix_core(argv);
    lc_error cpu_err = {{0}};
    if (lc_cpu_check_baseline(&cpu_err) || lc_cpu_isa_select(&cpu_err)) {
        fprintf(stderr, "lorac: %s\n", cpu_err.msg);
        return 2;
    }
    if (argc >= 2 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0))
        return print_version();
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "train") == 0)
        return cmd_train(argc - 2, argv + 2);
    if (strcmp(argv[1], "merge") == 0)
        return cmd_merge(argc - 2, argv + 2);
    if (strcmp(argv[1], "export-gguf") == 0)
        return cmd_export_gguf(argc - 2, argv + 2);
    if (strcmp(argv[1], "eval") == 0)
        return cmd_eval(argc - 2, argv + 2);
    if (strcmp(argv[1], "generate") == 0)
        return cmd_generate(argc - 2, argv + 2);
    if (strcmp(argv[1], "info") == 0)
        return cmd_info(argc - 2, argv + 2);
    if (strcmp(argv[1], "quantize") == 0)
        return cmd_quantize(argc - 2, argv + 2);
    if (strcmp(argv[1], "tokenize") == 0)
        return cmd_tokenize(argc - 2, argv + 2);
    if (strcmp(argv[1], "preprocess") == 0)
        return cmd_preprocess(argc - 2, argv + 2);
    if (strcmp(argv[1], "chat") == 0)
        return lc_chat_main(argc - 2, argv + 2, &lc_generate_chat_ops);
    if (strcmp(argv[1], "bench") == 0) {
        if (wants_help(argc - 2, argv + 2)) {
            bench_usage(stdout);
            return 0;
        }
        lc_error err = {{0}};
        if (lc_bench_main(argc - 2, argv + 2, stdout, &err)) {
            fprintf(stderr, "lorac: %s\n", err.msg);
            return 2;
        }
        return 0;
    }
    fprintf(stderr, "lorac: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}

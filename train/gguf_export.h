/* gguf_export.h — `lorac export-gguf`: a Hugging Face model (with a PEFT
 * adapter merged in, or the adapter alone) as a GGUF v3 file llama.cpp
 * loads, written as llama.cpp's convert_hf_to_gguf.py / convert_lora_to_gguf.py
 * write it:
 *
 * - metadata: general.architecture (llama for Llama and Mistral, qwen2,
 *   qwen3), general.type, name, size_label, file_type, quantization_version,
 *   alignment 32, and the <arch>.* hyperparameters (block_count,
 *   context_length, embedding_length, feed_forward_length, attention.head_count,
 *   head_count_kv, key_length, value_length, layer_norm_rms_epsilon,
 *   rope.freq_base, rope.scaling.type/factor for linear RoPE, and for llama
 *   vocab_size and rope.dimension_count); Llama 3 RoPE scaling as the
 *   rope_freqs tensor; the tokenizer keys of train/gguf_vocab.h;
 * - tensors renamed (token_embd, blk.N.attn_q, ..., output_norm, output),
 *   the q/k rows of the llama architecture permuted as the converter's
 *   LlamaModel.permute does (qwen2/qwen3: not), 1-D tensors and norms F32,
 *   the rest in the chosen type (F32, F16, BF16 or Q8_0; a row whose length
 *   is not a multiple of 32 falls back to F16 in Q8_0, as the converter
 *   does). F16/BF16/Q8_0 round exactly as numpy / gguf-py do.
 * - with an adapter (not lora), every adapted linear is W + scaling · B@A,
 *   computed by train/merge.h's lc_merge_linear in f32 (as `lorac merge
 *   --dtype f32`), then converted;
 * - lora: the adapter as a GGUF LoRA adapter (general.type adapter,
 *   adapter.type lora, adapter.lora.alpha = lora_alpha, times sqrt(r) for
 *   rsLoRA so that llama.cpp's alpha / r is PEFT's scaling), tensors
 *   <name>.weight.lora_a = A (ggml [in, r]) and .lora_b = B (ggml [r, out]),
 *   B's rows permuted for the llama q/k. The base may be the GGUF file the
 *   adapter was trained over (`base_model: model.gguf`): its metadata gives
 *   the architecture and head counts, and the file is the one the HF base
 *   gives, byte for byte.
 *
 * Streamed: one tensor at a time, the input pages dropped as they are read
 * (peak memory about the largest tensor in f32 plus its converted copy: a
 * 594 MiB F32 model with a 125 MiB embedding exports with a 136 MiB peak
 * RSS in f32, 164 MiB in q8_0), into OUT.lorac-partial-XXXXXX next to OUT,
 * renamed into place when complete (removed on any failure). An existing
 * OUT is refused unless force; OUT never replaces a file of the inputs. */
#ifndef LC_GGUF_EXPORT_H
#define LC_GGUF_EXPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "autograd/error.h"

typedef struct lc_gguf_export_opts {
    const char *base_dir;     /* Hugging Face model directory (lora: or a GGUF file) */
    const char *adapter_dir;  /* PEFT adapter directory or NULL */
    const char *out_path;     /* the .gguf file */
    uint32_t type;            /* LC_GGML_F32 / F16 / BF16 / Q8_0 */
    bool lora;                /* write the adapter alone */
    bool force;               /* replace an existing out_path */
    bool no_vocab;            /* write no tokenizer keys (llama.cpp cannot run such a file;
                                 for models without a tokenizer, inspection and tests) */
} lc_gguf_export_opts;

typedef struct lc_gguf_export_report {
    char arch[16];            /* general.architecture */
    int n_tensors;
    int n_merged;             /* linears with the adapter's update (merged export) */
    double bytes;             /* file size */
    double peak_rss;          /* bytes, getrusage high-water mark */
    double seconds;
} lc_gguf_export_report;

int lc_gguf_export(const lc_gguf_export_opts *o, lc_gguf_export_report *r, FILE *log,
                   lc_error *err);

/* n floats into ggml type F32, F16, BF16 or Q8_0 (n a multiple of 32 for
 * Q8_0), rounded exactly as numpy / gguf-py do (see above); out holds the
 * type's bytes for n elements. */
void lc_gguf_export_convert(const float *x, uint64_t n, uint32_t type, unsigned char *out);

/* f32|f16|bf16|q8_0 -> the ggml type; 0 or -1. */
int lc_gguf_export_parse_type(const char *s, uint32_t *type);

#endif

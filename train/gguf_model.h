/* gguf_model.h — a llama.cpp GGUF file as lorac's base model.
 *
 * `base_model: model.gguf`: the model config comes from the file's metadata
 * (general.architecture llama — Mistral files say llama too —, qwen2 or
 * qwen3, and its `<arch>.*` keys), the weights stay in the file's mapping in
 * their ggml type (autograd/ggml_weight.h) and the kernels dequantize them
 * tile by tile. F32/F16/BF16 matrices in HF row order are plain lc_weights
 * read in place; norm weights and biases are converted to lc_real at load.
 * attn_q / attn_k of the llama architecture, stored by llama.cpp's
 * converter with their rows permuted for GPT-J-style RoPE, are read back in
 * HF order (ggml_weight.h), so LoRA adapters over them are PEFT adapters of
 * the original HF model.
 *
 * GGUF tensor ↔ HF names: train/gguf_names.h (output absent: tied
 * embeddings). Shapes are in ggml order in the file: ne = [in, out].
 *
 * Text datasets use a tokenizer.json next to the file when there is one, else
 * the file's own tokenizer.ggml.* vocabulary (train/gguf_vocab.h: byte-level
 * BPE "gpt2" and SentencePiece "llama" models, as llama.cpp tokenizes them). */
#ifndef LC_GGUF_MODEL_H
#define LC_GGUF_MODEL_H

#include <stdbool.h>
#include <stddef.h>

#include "autograd/error.h"
#include "data/gguf.h"
#include "train/model.h"
#include "train/gguf_names.h"
#include "train/model_config.h"

/* path names a GGUF file: it ends in ".gguf" or its first 4 bytes are "GGUF". */
bool lc_gguf_model_is_gguf(const char *path);

/* The model config of an open GGUF file; errors name the file and the key. */
int lc_gguf_model_config(lc_model_config *cfg, const lc_gguf_file *f, lc_error *err);

/* lc_model_config_load for a GGUF path. */
int lc_gguf_model_config_load(lc_model_config *cfg, const char *path, lc_error *err);

/* Where a base model's tokenizer.json / tokenizer_config.json are looked
 * for: base_model itself for a directory, the directory holding it for a
 * GGUF file (written into buf). */
const char *lc_model_tokenizer_dir(const char *base_model, char *buf, size_t n);

/* Loads path into m (lc_model_load_with calls this for a GGUF path). o may
 * be NULL; o->nf4 is refused (the file is already quantized). */
int lc_gguf_model_load(lc_model *m, const char *path, const lc_model_load_opts *o,
                       lc_error *err);

/* Owned by a model loaded from GGUF (lc_model.gguf); lc_model_free calls this. */
void lc_gguf_base_free(struct lc_gguf_base *g);
/* Its open file (the mapping the weights point into). */
const lc_gguf_file *lc_gguf_base_file(const struct lc_gguf_base *g);

#endif

/* gguf_merge.h — `lorac merge --base model.gguf --adapter DIR --out F.gguf`:
 * a PEFT adapter (as lorac trains it over a GGUF base: Hugging Face names
 * and row order) folded into a llama.cpp GGUF model, written as a GGUF file
 * — what llama.cpp's llama-export-lora does with a GGUF LoRA adapter.
 *
 * - Metadata: every key/value of the base copied in order, unchanged —
 *   general.file_type included: it only labels the file's main type, and
 *   llama.cpp loads by each tensor's own type. (export-lora overwrites it
 *   with MOSTLY_F16 = 1 whatever the tensors are.)
 * - Tensors, in the base's order (export-lora writes them sorted by name):
 *   those the adapter does not touch copied byte for byte in their type;
 *   each adapted linear blk.N.<linear>.weight (train/gguf_names.h) is
 *   dequantized exactly (data/ggml_quants.h: the values training used),
 *   W + scaling · (B @ A) computed by train/merge.h's lc_merge_linear (f32
 *   result; scaling alpha / r, or alpha / sqrt(r) with rsLoRA) in Hugging
 *   Face row order, and stored back in llama.cpp's row order (attn_q /
 *   attn_k of the llama architecture: rows permuted as
 *   autograd/ggml_weight.h's lc_llama_gguf_row says), in the output type:
 *   --type f32, f16, bf16 or q8_0 (rounded exactly as numpy / gguf-py:
 *   train/gguf_export.h's lc_gguf_export_convert); by default as
 *   export-lora, F32 for an F32 tensor and F16 for any other. Q8_0 of a row
 *   whose length is not a multiple of 32 falls back to F16, as llama.cpp's
 *   converter does.
 * - Streamed from the base's mapping one tensor at a time (peak about the
 *   largest tensor: the largest merged linear in f32 plus its converted
 *   copy, or an untouched tensor's mapped pages, dropped once written; a
 *   112 MiB Q8_0 file of 112M parameters merges with a 43 MiB peak RSS, the
 *   verification then maps both models: 256-299 MiB), into
 *   OUT.lorac-partial-XXXXXX.gguf next to OUT, verified as merge.h says
 *   (lc_merge_verify: a probe batch through base + adapter and through the
 *   file loaded back; every matrix against W + scaling · B@A within its
 *   rounding) and renamed into place only then; removed on any failure.
 *
 * Refused with one line: --out not a .gguf file, the base itself or inside
 * the adapter directory, an existing --out without --force, --dtype or
 * --dequantize (HF options), a split GGUF, an adapter whose layers, targets
 * or shapes do not fit the base, a target absent from the file, a type lorac
 * cannot dequantize. */
#ifndef LC_GGUF_MERGE_H
#define LC_GGUF_MERGE_H

#include <stdio.h>

#include "autograd/error.h"
#include "train/merge.h"

/* o->base_dir is the GGUF file, o->out_dir the .gguf to write, o->gguf_type
 * the output type of the merged linears (NULL: as export-lora); o->force and
 * o->verify as for lc_merge. r: n_shards 1, n_tensors, n_merged,
 * n_converted (merged linears stored in another type than the base's),
 * bytes_written, largest_shard_bytes (the base file), peak_rss_merge /
 * _total, seconds and the verification's figures; copied names the output
 * types ("Q8_0 -> F16, ..."). */
int lc_gguf_merge(const lc_merge_opts *o, lc_merge_report *r, FILE *log, lc_error *err);

#endif

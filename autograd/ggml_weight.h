/* ggml_weight.h — a frozen [rows = out, cols = in] matrix kept in the ggml
 * type it has in a GGUF file (Q4_K, Q8_0, F16, ...), read in place from the
 * file's mapping and dequantized tile by tile (data/ggml_quants.h) by the
 * kernels, exactly like NF4 weights (nf4.h): the model never holds a float
 * copy of it.
 *
 * Row order. llama.cpp's converter (convert_hf_to_gguf.py,
 * LlamaModel.permute) stores attn_q / attn_k of the llama architecture with
 * the rows of each head interleaved for its "normal" (GPT-J style) RoPE:
 *     gguf row h·D + 2i + s  =  HF row h·D + s·D/2 + i    (i < D/2, s ∈ {0, 1})
 * for head h of n_head (n_head_kv for attn_k), D = rows / n_head. lorac
 * applies HF's rotate-half RoPE, so such a weight carries rope_heads =
 * n_head and every access maps the HF row it is asked for to the stored row
 * (lc_ggml_weight_src_row): the matrix the kernels see — and the LoRA
 * adapters trained over it — is in HF row order. */
#ifndef LC_GGML_WEIGHT_H
#define LC_GGML_WEIGHT_H

#include <stddef.h>
#include <stdint.h>

#include "autograd/real.h"

typedef struct lc_ggml_weight {
    uint32_t type;           /* lc_ggml_type; lc_ggml_type_get(type)->can_dequant */
    const uint8_t *data;     /* stored row r at data + r·row_bytes (in the mmap) */
    uint64_t row_bytes;      /* cols / block_size · type_size */
    int rope_heads;          /* > 0: llama.cpp's permuted q/k rows, this many heads; 0: HF order */
} lc_ggml_weight;

/* The rule above: the gguf row of HF row r of a `rows`-row q/k weight of
 * `heads` heads (the export writes rows there, the loader reads them back). */
int64_t lc_llama_gguf_row(int64_t rows, int heads, int64_t r);
/* The stored row that holds HF row r of a `rows`-row weight. */
int64_t lc_ggml_weight_src_row(const lc_ggml_weight *g, int64_t rows, int64_t r);

/* HF rows [r0, r1) of the [rows, cols] weight g, dequantized into dst
 * (row-major, cols wide). */
void lc_ggml_weight_rows(const lc_ggml_weight *g, int64_t rows, int64_t cols, int64_t r0,
                         int64_t r1, lc_real *dst);

#endif

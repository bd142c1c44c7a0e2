/* ggml_quants.h — the ggml tensor types found in GGUF files: one table of
 * their names, block sizes and bytes per block, and dequantization to float
 * of any range of elements of a row, bit-identical to gguf-py's
 * gguf.quants.dequantize (which follows ggml's dequantize_row_*).
 *
 * A row of a ggml tensor is ne[0] elements stored as ne[0] / block_size
 * consecutive blocks of type_size bytes. lc_ggml_dequant works on elements
 * [k0, k0 + n) of one row, so a GEMM can dequantize a weight tile by tile
 * (as autograd/nf4.c does for NF4) without ever holding a whole float copy.
 * Any bytes are valid input: there is nothing to validate inside a block. */
#ifndef LC_GGML_QUANTS_H
#define LC_GGML_QUANTS_H

#include <stdint.h>

/* ggml type ids as stored in GGUF tensor infos (ggml.h / gguf-py
 * GGMLQuantizationType). Gaps (4, 5, 31-33, 36-38) are removed types. */
typedef enum lc_ggml_type {
    LC_GGML_F32 = 0,
    LC_GGML_F16 = 1,
    LC_GGML_Q4_0 = 2,
    LC_GGML_Q4_1 = 3,
    LC_GGML_Q5_0 = 6,
    LC_GGML_Q5_1 = 7,
    LC_GGML_Q8_0 = 8,
    LC_GGML_Q8_1 = 9,
    LC_GGML_Q2_K = 10,
    LC_GGML_Q3_K = 11,
    LC_GGML_Q4_K = 12,
    LC_GGML_Q5_K = 13,
    LC_GGML_Q6_K = 14,
    LC_GGML_Q8_K = 15,
    LC_GGML_BF16 = 30,
} lc_ggml_type;

#define LC_GGML_MAX_BLOCK 256 /* the largest block_size of any type (QK_K) */

typedef struct lc_ggml_type_info {
    const char *name;     /* "Q4_K", as ggml and gguf-py spell it */
    uint32_t block_size;  /* elements per block */
    uint32_t type_size;   /* bytes per block */
    int can_dequant;      /* lc_ggml_dequant supports it */
} lc_ggml_type_info;

/* The table entry for a type id read from a file, or NULL when the id is not
 * a ggml type lorac knows the size of. */
const lc_ggml_type_info *lc_ggml_type_get(uint32_t type);

/* Dequantizes elements [k0, k0 + n) of a row whose first block starts at
 * `row` (type's blocks, little-endian) into out[0..n). Any k0, n: partial
 * first/last blocks are decoded whole and cut. The type must have
 * can_dequant (checked: LC_ASSERT). Results are those of gguf-py bit for bit
 * (f16 scales converted exactly; products and sums in float32, in gguf-py's
 * order, never fused). */
void lc_ggml_dequant(uint32_t type, const void *row, int64_t k0, int64_t n, float *out);

#endif

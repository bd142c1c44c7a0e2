/* nf4.h — bitsandbytes-compatible 4-bit NormalFloat (NF4) weights.
 *
 * Layout exactly as bitsandbytes (its checkpoint tensors: data/bnb4.h): the
 * [out, in] weight is flattened row-major and cut into blocks of `blocksize` (64)
 * values; each block keeps absmax (its largest |value|) and each value the
 * index of the nearest of the 16 NF4 code values of value/absmax, two codes
 * a byte with the FIRST element in the HIGH nibble. With double
 * quantization the absmax values themselves are stored as u8 codes of
 * bitsandbytes' signed dynamic 8-bit map over blocks of 256, relative to
 * their mean (offset), with one f32 scale (nested_absmax) per 256 blocks.
 *
 * Dequantization is per row range, so kernels convert a tile of rows at a
 * time into scratch and never hold the whole matrix in f32. */
#ifndef LC_NF4_H
#define LC_NF4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/error.h"
#include "autograd/real.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const float lc_nf4_code[16];

typedef struct lc_nf4 {
    int64_t rows, cols;        /* [out, in] */
    int64_t blocksize;         /* values per absmax block (64) */
    const uint8_t *codes;      /* [rows·cols / 2] packed, first value high nibble */
    /* absmax, either plain or double-quantized */
    const float *absmax;       /* [n_blocks] f32, or NULL when nested */
    const uint8_t *absmax_q;   /* [n_blocks] u8 codes (double quant) */
    const float *nested_absmax;/* [ceil(n_blocks / nested_blocksize)] */
    const float *nested_map;   /* [256] signed dynamic map */
    int64_t nested_blocksize;  /* 256 */
    float offset;              /* mean of the original absmax */
} lc_nf4;

/* Number of absmax blocks of a [rows, cols] weight. */
int64_t lc_nf4_blocks(int64_t rows, int64_t cols, int64_t blocksize);
/* Number of nested_absmax values over nb absmax blocks (double quant). */
static inline int64_t lc_nf4_nested_blocks(int64_t nb, int64_t nested_blocksize)
{
    return (nb + nested_blocksize - 1) / nested_blocksize;
}

/* bitsandbytes' signed dynamic 8-bit map (create_dynamic_map(signed=True)),
 * 256 values, as used for double quantization. */
void lc_nf4_dynamic_map(float map[256]);

/* Owned storage for a weight quantized by lorac. q.nested_map points into
 * the struct itself, so a double-quantized store must not be moved/copied. */
typedef struct lc_nf4_store {
    lc_nf4 q;                  /* views into the buffers below */
    uint8_t *codes;
    float *absmax;             /* plain absmax; NULL when double-quantized */
    uint8_t *absmax_q;
    float *nested_absmax;
    float nested_map[256];
} lc_nf4_store;

/* Quantizes w [rows, cols] (f32) exactly as bitsandbytes'
 * quantize_4bit(quant_type="nf4") does, optionally with double quant
 * (nested blocks of 256). Refuses (-1, err set, *s left empty) an odd
 * rows·cols, a blocksize bitsandbytes does not accept (32..4096, powers of
 * two) and NaN/Inf weights. */
int lc_nf4_quantize(lc_nf4_store *s, const float *w, int64_t rows, int64_t cols,
                    int64_t blocksize, bool double_quant, lc_error *err);
void lc_nf4_store_free(lc_nf4_store *s);

/* Bytes q occupies: codes + absmax (+ nested constants). */
size_t lc_nf4_bytes(const lc_nf4 *q);
/* absmax of block b (dequantizing the nested absmax when needed). */
float lc_nf4_block_absmax(const lc_nf4 *q, int64_t b);
/* Rows [r0, r1) dequantized into dst (row-major, cols wide). */
void lc_nf4_dequant_rows(const lc_nf4 *q, int64_t r0, int64_t r1, lc_real *dst);

#ifdef __cplusplus
}
#endif

#endif

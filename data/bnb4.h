/* bnb4.h — the bitsandbytes 4-bit checkpoint format (the "-bnb-4bit" models
 * on the Hub), as the model loader and `lorac merge --dequantize` read it;
 * train/quantize.c writes it.
 *
 * Per quantized linear "P.weight" the file holds, as bitsandbytes'
 * Linear4bit state dict does: P.weight (U8 [n/2, 1], packed codes),
 * P.weight.absmax (U8 with double quant, else F32), P.weight.quant_map
 * (F32 [16]), P.weight.nested_absmax (F32), P.weight.nested_quant_map
 * (F32 [256]) and P.weight.quant_state.bitsandbytes__nf4 (U8: the bytes of a
 * JSON object with quant_type, blocksize, dtype, shape, nested_blocksize,
 * nested_dtype, nested_offset). config.json gets a quantization_config with
 * quant_method "bitsandbytes". Reading points straight into the mmap'ed
 * file: nothing is copied or dequantized at load.
 *
 * A file format, so it lives in data/ next to safetensors and the model
 * files, and depends on nothing in train/. */
#ifndef LC_BNB4_H
#define LC_BNB4_H

#include <stdint.h>

#include "autograd/nf4.h"
#include "data/model_files.h"

/* Builds an lc_nf4 view of the pre-quantized linear `name` ("...q_proj")
 * expected to be [rows, cols]; validates every size and the JSON state. */
int lc_bnb4_view(const lc_model_files *mf, const char *name, int64_t rows, int64_t cols,
                 lc_nf4 *q, lc_error *err);

#endif

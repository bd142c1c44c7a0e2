/* quantize.h — `lorac quantize`: writes a bitsandbytes 4-bit checkpoint (the
 * layout data/bnb4.h describes and reads), so `adapter: qlora` loads it
 * without quantizing again. */
#ifndef LC_QUANTIZE_H
#define LC_QUANTIZE_H

#include <stdbool.h>
#include <stdint.h>

#include "autograd/error.h"

/* `lorac quantize`: loads in_dir quantizing every linear of the blocks to
 * NF4 and writes out_dir in bitsandbytes' layout (one model.safetensors,
 * config.json with quantization_config, tokenizer/generation files copied).
 * out_dir must not exist unless force. */
int lc_quantize_model(const char *in_dir, const char *out_dir, int64_t blocksize,
                      bool double_quant, bool force, lc_error *err);

#endif

/* dtype.h — element types as stored in files and frozen weights.
 *
 * Activations and trainable tensors are always lc_real (f32, or f64 in the
 * gradient-check build); frozen base weights keep the dtype they were loaded
 * with, so this enum names what a weight buffer holds. Names follow
 * safetensors ("F32", "BF16", ...). */
#ifndef LC_DTYPE_H
#define LC_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lc_dtype {
    LC_DTYPE_BOOL,
    LC_DTYPE_U8,
    LC_DTYPE_I8,
    LC_DTYPE_I16,
    LC_DTYPE_U16,
    LC_DTYPE_F16,
    LC_DTYPE_BF16,
    LC_DTYPE_I32,
    LC_DTYPE_U32,
    LC_DTYPE_F32,
    LC_DTYPE_F64,
    LC_DTYPE_I64,
    LC_DTYPE_U64,
    LC_DTYPE_F8_E4M3,
    LC_DTYPE_F8_E5M2,
    LC_DTYPE_COUNT
} lc_dtype;

/* Bytes per element. */
size_t lc_dtype_size(lc_dtype t);
/* safetensors spelling, e.g. "BF16". */
const char *lc_dtype_name(lc_dtype t);
/* torch spelling, as config.json's dtype / torch_dtype, e.g. "bfloat16". */
const char *lc_dtype_torch_name(lc_dtype t);
/* Parses a safetensors dtype name; returns 0, or -1 when unknown. */
int lc_dtype_from_name(const char *name, lc_dtype *out);

/* Scalar conversions (round-to-nearest-even on the way down, NaN kept).
 * The bf16 pair is defined here, inline, because the CUDA simulator's
 * __float2bfloat16_rn (tests/cuda_sim/include/cuda_bf16.h) must round
 * exactly as the CPU does: one definition for both. */
static inline float lc_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint16_t lc_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it quiet, keep the sign */
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
uint16_t lc_f32_to_f16(float f);
/* f rounded to dtype t and back (BF16, F16; any other type: f itself). */
float lc_dtype_round(float f, lc_dtype t);

/* IEEE half -> float, exact (subnormals, infinities; a NaN keeps its sign and
 * payload). Inline and branch-free so that loops over half arrays (F16
 * weights, the scales of ggml blocks) vectorise: a normal or infinite half
 * moves its exponent and mantissa up 13 bits and re-biases (15 -> 127); a
 * subnormal's value man * 2^-24 is an exact float product, taken from the
 * integer so that no float subnormal is involved (flush-to-zero modes cannot
 * change it). */
static inline float lc_f16_to_f32(uint16_t h)
{
    int32_t em = h & 0x7fff; /* signed: the baseline's vector compares are */
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t normal = ((uint32_t)em << 13) + (112u << 23);
    uint32_t infnan = ((uint32_t)em << 13) | 0x7f800000u;
    float sub = (float)em * 0x1p-24f;
    uint32_t sub_bits;
    memcpy(&sub_bits, &sub, sizeof sub_bits);
    uint32_t bits = em < 0x0400 ? sub_bits : em >= 0x7c00 ? infnan : normal;
    bits |= sign;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

#ifdef __cplusplus
}
#endif

#endif

/* dtype.c — dtype table and the f16/bf16 <-> f32 conversions (see dtype.h). */
#include "dtype.h"

#include <string.h>

static const struct {
    const char *name;  /* safetensors */
    const char *torch; /* torch.dtype's name, as config.json writes it */
    size_t size;
} dtype_table[LC_DTYPE_COUNT] = {
    [LC_DTYPE_BOOL] = {"BOOL", "bool", 1},
    [LC_DTYPE_U8] = {"U8", "uint8", 1},
    [LC_DTYPE_I8] = {"I8", "int8", 1},
    [LC_DTYPE_I16] = {"I16", "int16", 2},
    [LC_DTYPE_U16] = {"U16", "uint16", 2},
    [LC_DTYPE_F16] = {"F16", "float16", 2},
    [LC_DTYPE_BF16] = {"BF16", "bfloat16", 2},
    [LC_DTYPE_I32] = {"I32", "int32", 4},
    [LC_DTYPE_U32] = {"U32", "uint32", 4},
    [LC_DTYPE_F32] = {"F32", "float32", 4},
    [LC_DTYPE_F64] = {"F64", "float64", 8},
    [LC_DTYPE_I64] = {"I64", "int64", 8},
    [LC_DTYPE_U64] = {"U64", "uint64", 8},
    [LC_DTYPE_F8_E4M3] = {"F8_E4M3", "float8_e4m3fn", 1},
    [LC_DTYPE_F8_E5M2] = {"F8_E5M2", "float8_e5m2", 1},
};

size_t lc_dtype_size(lc_dtype t)
{
    return (unsigned)t < LC_DTYPE_COUNT ? dtype_table[t].size : 0;
}

const char *lc_dtype_name(lc_dtype t)
{
    return (unsigned)t < LC_DTYPE_COUNT ? dtype_table[t].name : "?";
}

const char *lc_dtype_torch_name(lc_dtype t)
{
    return (unsigned)t < LC_DTYPE_COUNT ? dtype_table[t].torch : "?";
}

int lc_dtype_from_name(const char *name, lc_dtype *out)
{
    for (int i = 0; i < LC_DTYPE_COUNT; i++) {
        if (strcmp(name, dtype_table[i].name) == 0) {
            *out = (lc_dtype)i;
            return 0;
        }
    }
    return -1;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}


uint16_t lc_f32_to_f16(float f)
{
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t absu = u & 0x7fffffffu;
    if (absu > 0x7f800000u)
        return sign | 0x7e00u;
    if (absu >= 0x477ff000u) /* rounds to >= 65520: inf */
        return sign | 0x7c00u;
    if (absu < 0x38800000u) { /* below f16 normal range: subnormal or zero */
        float a = bits_f32(absu);
        /* value in units of 2^-24, rounded to nearest even by the FPU */
        float scaled = a * 16777216.0f;
        uint32_t q = (uint32_t)scaled;
        float rem = scaled - (float)q;
        if (rem > 0.5f || (rem == 0.5f && (q & 1u)))
            q++;
        return sign | (uint16_t)q;
    }
    uint32_t mant_round = absu + 0xfffu + ((absu >> 13) & 1u);
    return sign | (uint16_t)((mant_round - 0x38000000u) >> 13);
}

float lc_dtype_round(float f, lc_dtype t)
{
    if (t == LC_DTYPE_BF16)
        return lc_bf16_to_f32(lc_f32_to_bf16(f));
    if (t == LC_DTYPE_F16)
        return lc_f16_to_f32(lc_f32_to_f16(f));
    return f;
}

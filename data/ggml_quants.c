/* ggml_quants.c — the ggml type table and block dequantizers.
 *
 * Block layouts (QK_K = 256; "f16" is an IEEE half, little-endian; every
 * formula is float32 arithmetic in the order gguf-py's quants.py evaluates
 * it, each product and sum rounded on its own — no FMA contraction, which
 * would change the last bit):
 *   Q4_0  18 B / 32:  f16 d; u8 qs[16]      x[j] = lo/hi nibble (j<16: qs[j]&15,
 *                     else qs[j-16]>>4);     y = d * (q - 8)
 *   Q4_1  20 B / 32:  f16 d, m; u8 qs[16]   y = d * q + m
 *   Q5_0  22 B / 32:  f16 d; u32 qh; qs[16] q = nibble | bit j of qh << 4; y = d * (q - 16)
 *   Q5_1  24 B / 32:  f16 d, m; u32 qh; qs[16]  y = d * q + m
 *   Q8_0  34 B / 32:  f16 d; i8 qs[32]       y = q * d
 *   Q2_K  84 B / 256: u8 scales[16]; u8 qs[64]; f16 d, dmin. Element j: half
 *                     h = j/128, r = j%128: q = qs[32h + r%32] >> 2(r/32) & 3;
 *                     s = scales[j/16]: y = (d * (s&15)) * q - dmin * (s>>4)
 *   Q3_K 110 B / 256: u8 hmask[32]; qs[64]; scales[12] (16 6-bit signed, -32);
 *                     f16 d. q = 2 low bits as Q2_K, minus 4 when bit j/32 of
 *                     hmask[j%32] is clear; y = (d * sc) * q
 *   Q4_K 144 B / 256: f16 d, dmin; scales[12] (8 6-bit scales + 8 6-bit mins,
 *                     see scale_min_k4); qs[128]. Sub-block i = j/32: nibble
 *                     i&1 of qs[32(i/2) + j%32]; y = (d * sc) * q - dmin * m
 *   Q5_K 176 B / 256: as Q4_K with u8 qh[32] before qs: bit i of qh[j%32] is q's bit 4
 *   Q6_K 210 B / 256: u8 ql[128]; qh[64]; i8 scales[16]; f16 d. Element j:
 *                     h = j/128, s = (j%128)/32, l = j%32: q = (nibble s>>1 of
 *                     ql[64h + 32(s&1) + l]) | (qh[32h + l] >> 2s & 3) << 4;
 *                     y = (d * scales[j/16]) * (q - 32)
 *   F16 / BF16 / F32: exact conversion (BF16: bits << 16; F32: copied). */
#include "data/ggml_quants.h"

#include <string.h>

#include "autograd/error.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif
/* GCC in ISO C mode (-std=c11, CMAKE_C_EXTENSIONS OFF) never contracts. */

#define QK_K 256

/* The one table of ggml types: {name, block_size, type_size, can_dequant},
 * indexed by type id (gguf-py constants.py GGML_QUANT_SIZES). Types without a
 * dequantizer here are known only so a file holding them can be opened and
 * its other tensors read. */
static const lc_ggml_type_info TYPES[] = {
    [0] = {"F32", 1, 4, 1},
    [1] = {"F16", 1, 2, 1},
    [2] = {"Q4_0", 32, 2 + 16, 1},
    [3] = {"Q4_1", 32, 2 + 2 + 16, 1},
    [6] = {"Q5_0", 32, 2 + 4 + 16, 1},
    [7] = {"Q5_1", 32, 2 + 2 + 4 + 16, 1},
    [8] = {"Q8_0", 32, 2 + 32, 1},
    [9] = {"Q8_1", 32, 4 + 4 + 32, 0},
    [10] = {"Q2_K", QK_K, 2 + 2 + QK_K / 16 + QK_K / 4, 1},
    [11] = {"Q3_K", QK_K, 2 + QK_K / 4 + QK_K / 8 + 12, 1},
    [12] = {"Q4_K", QK_K, 2 + 2 + QK_K / 2 + 12, 1},
    [13] = {"Q5_K", QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12, 1},
    [14] = {"Q6_K", QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16, 1},
    [15] = {"Q8_K", QK_K, 4 + QK_K + QK_K / 8, 0},
    [16] = {"IQ2_XXS", QK_K, 2 + QK_K / 4, 0},
    [17] = {"IQ2_XS", QK_K, 2 + QK_K / 4 + QK_K / 32, 0},
    [18] = {"IQ3_XXS", QK_K, 2 + QK_K / 4 + QK_K / 8, 0},
    [19] = {"IQ1_S", QK_K, 2 + QK_K / 8 + QK_K / 16, 0},
    [20] = {"IQ4_NL", 32, 2 + 16, 0},
    [21] = {"IQ3_S", QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4, 0},
    [22] = {"IQ2_S", QK_K, 2 + QK_K / 4 + QK_K / 16, 0},
    [23] = {"IQ4_XS", QK_K, 2 + 2 + QK_K / 2 + QK_K / 64, 0},
    [24] = {"I8", 1, 1, 0},
    [25] = {"I16", 1, 2, 0},
    [26] = {"I32", 1, 4, 0},
    [27] = {"I64", 1, 8, 0},
    [28] = {"F64", 1, 8, 0},
    [29] = {"IQ1_M", QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32, 0},
    [30] = {"BF16", 1, 2, 1},
    [34] = {"TQ1_0", QK_K, 2 + 4 * 13, 0},
    [35] = {"TQ2_0", QK_K, 2 + 64, 0},
    [39] = {"MXFP4", 32, 1 + 16, 0},
};

const lc_ggml_type_info *lc_ggml_type_get(uint32_t type)
{
    if (type >= sizeof TYPES / sizeof TYPES[0] || !TYPES[type].name)
        return NULL;
    return &TYPES[type];
}

float lc_ggml_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13); /* inf / NaN (payload kept) */
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13); /* rebias 15 -> 127 */
    } else if (man == 0) {
        bits = sign; /* ±0 */
    } else { /* subnormal: normalize (value = man · 2^-24, exact in float) */
        int e = -1;
        do {
            man <<= 1;
            e++;
        } while (!(man & 0x400u));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static float f16_at(const uint8_t *p)
{
    return lc_ggml_half_to_float((uint16_t)(p[0] | p[1] << 8));
}

/* ---- one whole block -> y[0..block_size) ------------------------------ */

static void deq_q4_0(const uint8_t *b, float *y)
{
    float d = f16_at(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 32; j++) {
        int q = j < 16 ? (qs[j] & 15) : (qs[j - 16] >> 4);
        y[j] = d * (float)(q - 8);
    }
}

static void deq_q4_1(const uint8_t *b, float *y)
{
    float d = f16_at(b), m = f16_at(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 32; j++) {
        int q = j < 16 ? (qs[j] & 15) : (qs[j - 16] >> 4);
        float p = d * (float)q;
        y[j] = p + m;
    }
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* 5-bit code j of a Q5_0/Q5_1 block: nibble of qs, bit j of qh. */
static int q5_code(const uint8_t *qh4, const uint8_t *qs, int j)
{
    int lo = j < 16 ? (qs[j] & 15) : (qs[j - 16] >> 4);
    return lo | (int)((le32(qh4) >> j) & 1u) << 4;
}

static void deq_q5_0(const uint8_t *b, float *y)
{
    float d = f16_at(b);
    for (int j = 0; j < 32; j++)
        y[j] = d * (float)(q5_code(b + 2, b + 6, j) - 16);
}

static void deq_q5_1(const uint8_t *b, float *y)
{
    float d = f16_at(b), m = f16_at(b + 2);
    for (int j = 0; j < 32; j++) {
        float p = d * (float)q5_code(b + 4, b + 8, j);
        y[j] = p + m;
    }
}

static void deq_q8_0(const uint8_t *b, float *y)
{
    float d = f16_at(b);
    for (int j = 0; j < 32; j++)
        y[j] = (float)(int8_t)b[2 + j] * d;
}

/* The 2 low bits of element j in a Q2_K / Q3_K qs[64]. */
static int q2_bits(const uint8_t *qs, int j)
{
    int h = j / 128, r = j % 128;
    return (qs[32 * h + r % 32] >> (2 * (r / 32))) & 3;
}

static void deq_q2_k(const uint8_t *b, float *y)
{
    const uint8_t *scales = b, *qs = b + 16;
    float d = f16_at(b + 80), dmin = f16_at(b + 82);
    for (int g = 0; g < 16; g++) { /* 16 groups of 16 share a scale and a min */
        float dl = d * (float)(scales[g] & 15), ml = dmin * (float)(scales[g] >> 4);
        for (int j = 16 * g; j < 16 * g + 16; j++) {
            float p = dl * (float)q2_bits(qs, j);
            y[j] = p - ml;
        }
    }
}

static void deq_q3_k(const uint8_t *b, float *y)
{
    const uint8_t *hmask = b, *qs = b + 32, *sc = b + 96;
    float d = f16_at(b + 108);
    for (int g = 0; g < 16; g++) {
        int lo = g < 8 ? (sc[g] & 15) : (sc[g - 8] >> 4);
        int hi = (sc[8 + g % 4] >> (2 * (g / 4))) & 3;
        float dl = d * (float)((lo | hi << 4) - 32);
        for (int j = 16 * g; j < 16 * g + 16; j++) {
            int q = q2_bits(qs, j) - (((hmask[j % 32] >> (j / 32)) & 1) ? 0 : 4);
            y[j] = dl * (float)q;
        }
    }
}

/* The 6-bit scale and min of sub-block i (0..7) of a Q4_K / Q5_K block:
 * bytes 0-3 hold scales 0-3 (low 6 bits) and the top 2 bits of scales 4-7,
 * bytes 4-7 the same for the mins, bytes 8-11 the low 4 bits of scale 4+k
 * (low nibble) and min 4+k (high nibble). */
static void scale_min_k4(const uint8_t *s, int i, int *sc, int *m)
{
    if (i < 4) {
        *sc = s[i] & 63;
        *m = s[4 + i] & 63;
    } else {
        *sc = (s[8 + i - 4] & 15) | ((s[i - 4] >> 2) & 0x30);
        *m = (s[8 + i - 4] >> 4) | ((s[4 + i - 4] >> 2) & 0x30);
    }
}

/* Q4_K (qh == NULL) and Q5_K. */
static void deq_k4(const uint8_t *b, const uint8_t *qh, const uint8_t *qs, float *y)
{
    float d = f16_at(b), dmin = f16_at(b + 2);
    for (int i = 0; i < 8; i++) {
        int sc, m;
        scale_min_k4(b + 4, i, &sc, &m);
        float d1 = d * (float)sc, m1 = dmin * (float)m;
        const uint8_t *q = qs + 32 * (i / 2);
        for (int l = 0; l < 32; l++) {
            int v = (q[l] >> (4 * (i & 1))) & 15;
            if (qh)
                v |= ((qh[l] >> i) & 1) << 4;
            float p = d1 * (float)v;
            y[32 * i + l] = p - m1;
        }
    }
}

static void deq_q4_k(const uint8_t *b, float *y)
{
    deq_k4(b, NULL, b + 16, y);
}

static void deq_q5_k(const uint8_t *b, float *y)
{
    deq_k4(b, b + 16, b + 48, y);
}

static void deq_q6_k(const uint8_t *b, float *y)
{
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *scales = (const int8_t *)(b + 192);
    float d = f16_at(b + 208);
    for (int j = 0; j < QK_K; j++) {
        int h = j / 128, s = (j % 128) / 32, l = j % 32;
        int lo = (ql[64 * h + 32 * (s & 1) + l] >> (4 * (s >> 1))) & 15;
        int hi = (qh[32 * h + l] >> (2 * s)) & 3;
        float dl = d * (float)scales[j / 16];
        y[j] = dl * (float)((lo | hi << 4) - 32);
    }
}

typedef void (*block_fn)(const uint8_t *b, float *y);

static block_fn block_decoder(uint32_t type)
{
    switch (type) {
    case LC_GGML_Q4_0: return deq_q4_0;
    case LC_GGML_Q4_1: return deq_q4_1;
    case LC_GGML_Q5_0: return deq_q5_0;
    case LC_GGML_Q5_1: return deq_q5_1;
    case LC_GGML_Q8_0: return deq_q8_0;
    case LC_GGML_Q2_K: return deq_q2_k;
    case LC_GGML_Q3_K: return deq_q3_k;
    case LC_GGML_Q4_K: return deq_q4_k;
    case LC_GGML_Q5_K: return deq_q5_k;
    case LC_GGML_Q6_K: return deq_q6_k;
    default: return NULL;
    }
}

void lc_ggml_dequant(uint32_t type, const void *row, int64_t k0, int64_t n, float *out)
{
    const lc_ggml_type_info *ti = lc_ggml_type_get(type);
    LC_ASSERT(ti && ti->can_dequant && k0 >= 0 && n >= 0);
    const uint8_t *p = row;
    switch (type) {
    case LC_GGML_F32:
        memcpy(out, p + 4 * k0, (size_t)n * 4);
        return;
    case LC_GGML_F16:
        for (int64_t i = 0; i < n; i++)
            out[i] = f16_at(p + 2 * (k0 + i));
        return;
    case LC_GGML_BF16:
        for (int64_t i = 0; i < n; i++) {
            const uint8_t *e = p + 2 * (k0 + i);
            uint32_t bits = (uint32_t)(e[0] | e[1] << 8) << 16;
            memcpy(&out[i], &bits, 4);
        }
        return;
    default:
        break;
    }
    block_fn fn = block_decoder(type);
    LC_ASSERT(fn != NULL);
    const int64_t bs = ti->block_size;
    float tmp[LC_GGML_MAX_BLOCK];
    int64_t k = k0, end = k0 + n;
    while (k < end) {
        int64_t blk = k / bs, off = k - blk * bs;
        int64_t take = bs - off < end - k ? bs - off : end - k;
        const uint8_t *b = p + blk * (int64_t)ti->type_size;
        if (off == 0 && take == bs) {
            fn(b, out + (k - k0));
        } else {
            fn(b, tmp);
            memcpy(out + (k - k0), tmp + off, (size_t)take * sizeof(float));
        }
        k += take;
    }
}

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

#include <stdbool.h>
#include <string.h>

#include "autograd/dtype.h"
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

static float f16_at(const uint8_t *p)
{
    return lc_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- nb whole blocks from b -> y[0 .. nb·block_size) -------------------
 * Each decoder walks its blocks itself and writes its inner loops over runs
 * of elements that share a scale and a bit position, with no branch or
 * variable shift inside: the compiler vectorises them (4 lanes at the
 * x86-64-v2 baseline). The arithmetic is the layout table's, unchanged. */

static void deq_q4_0(const uint8_t *b, int64_t nb, float *restrict y)
{
    for (int64_t k = 0; k < nb; k++, b += 18, y += 32) {
        float d = f16_at(b);
        const uint8_t *qs = b + 2;
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)((qs[j] & 15) - 8);
            y[j + 16] = d * (float)((qs[j] >> 4) - 8);
        }
    }
}

static void deq_q4_1(const uint8_t *b, int64_t nb, float *restrict y)
{
    for (int64_t k = 0; k < nb; k++, b += 20, y += 32) {
        float d = f16_at(b), m = f16_at(b + 2);
        const uint8_t *qs = b + 4;
        for (int j = 0; j < 16; j++) {
            float lo = d * (float)(qs[j] & 15), hi = d * (float)(qs[j] >> 4);
            y[j] = lo + m;
            y[j + 16] = hi + m;
        }
    }
}

/* Bit 4 of the codes of a Q5_0/Q5_1 block, from its u32 qh: bit j for
 * element j, as 0 or 16 (a mask table instead of a shift by j, which the
 * baseline's vector unit cannot do lane by lane). */
static const uint32_t BIT_J[32] = {
    1u << 0,  1u << 1,  1u << 2,  1u << 3,  1u << 4,  1u << 5,  1u << 6,  1u << 7,
    1u << 8,  1u << 9,  1u << 10, 1u << 11, 1u << 12, 1u << 13, 1u << 14, 1u << 15,
    1u << 16, 1u << 17, 1u << 18, 1u << 19, 1u << 20, 1u << 21, 1u << 22, 1u << 23,
    1u << 24, 1u << 25, 1u << 26, 1u << 27, 1u << 28, 1u << 29, 1u << 30, 1u << 31};

/* The 32 5-bit codes of a Q5_0/Q5_1 block into q. */
static void q5_codes(const uint8_t *qh4, const uint8_t *qs, int32_t *restrict q)
{
    uint32_t qh = le32(qh4);
    for (int j = 0; j < 16; j++) {
        q[j] = (qs[j] & 15) | ((qh & BIT_J[j]) ? 16 : 0);
        q[j + 16] = (qs[j] >> 4) | ((qh & BIT_J[j + 16]) ? 16 : 0);
    }
}

static void deq_q5_0(const uint8_t *b, int64_t nb, float *restrict y)
{
    int32_t q[32];
    for (int64_t k = 0; k < nb; k++, b += 22, y += 32) {
        float d = f16_at(b);
        q5_codes(b + 2, b + 6, q);
        for (int j = 0; j < 32; j++)
            y[j] = d * (float)(q[j] - 16);
    }
}

static void deq_q5_1(const uint8_t *b, int64_t nb, float *restrict y)
{
    int32_t q[32];
    for (int64_t k = 0; k < nb; k++, b += 24, y += 32) {
        float d = f16_at(b), m = f16_at(b + 2);
        q5_codes(b + 4, b + 8, q);
        for (int j = 0; j < 32; j++) {
            float p = d * (float)q[j];
            y[j] = p + m;
        }
    }
}

static void deq_q8_0(const uint8_t *b, int64_t nb, float *restrict y)
{
    for (int64_t k = 0; k < nb; k++, b += 34, y += 32) {
        float d = f16_at(b);
        const int8_t *qs = (const int8_t *)(b + 2);
        for (int j = 0; j < 32; j++)
            y[j] = (float)qs[j] * d;
    }
}

/* Q2_K / Q3_K / Q6_K order their 256 elements as two halves h of 128, each
 * four runs s of 32 that take bits 2s.. of the half's 32 code bytes; a run is
 * two groups of 16 with a scale each (group 8h + 2s + l/16). */

static void deq_q2_k(const uint8_t *b, int64_t nb, float *restrict y)
{
    for (int64_t k = 0; k < nb; k++, b += 84) {
        const uint8_t *scales = b;
        float d = f16_at(b + 80), dmin = f16_at(b + 82);
        for (int h = 0; h < 2; h++) {
            const uint8_t *qs = b + 16 + 32 * h;
            for (int s = 0; s < 4; s++)
                for (int g = 0; g < 2; g++, y += 16) {
                    uint8_t sc = scales[8 * h + 2 * s + g];
                    float dl = d * (float)(sc & 15), ml = dmin * (float)(sc >> 4);
                    for (int l = 0; l < 16; l++) {
                        float p = dl * (float)((qs[16 * g + l] >> (2 * s)) & 3);
                        y[l] = p - ml;
                    }
                }
        }
    }
}

static void deq_q3_k(const uint8_t *b, int64_t nb, float *restrict y)
{
    for (int64_t k = 0; k < nb; k++, b += 110) {
        const uint8_t *hmask = b, *sc = b + 96;
        float d = f16_at(b + 108);
        for (int h = 0; h < 2; h++) {
            const uint8_t *qs = b + 32 + 32 * h;
            for (int s = 0; s < 4; s++)
                for (int g = 0; g < 2; g++, y += 16) {
                    int G = 8 * h + 2 * s + g, bit = 4 * h + s;
                    int lo = G < 8 ? (sc[G] & 15) : (sc[G - 8] >> 4);
                    int hi = (sc[8 + G % 4] >> (2 * (G / 4))) & 3;
                    float dl = d * (float)((lo | hi << 4) - 32);
                    for (int l = 0; l < 16; l++) {
                        int q = (qs[16 * g + l] >> (2 * s)) & 3;
                        q -= ((hmask[16 * g + l] >> bit) & 1) ? 0 : 4;
                        y[l] = dl * (float)q;
                    }
                }
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

/* Q4_K (qh == NULL) and Q5_K: 8 sub-blocks i of 32, nibble i&1 of
 * qs[32(i/2) + l], bit i of qh[l]. */
static void deq_k4(const uint8_t *b, int64_t nb, size_t block_bytes, bool has_qh,
                   float *restrict y)
{
    for (int64_t k = 0; k < nb; k++, b += block_bytes) {
        const uint8_t *qh = b + 16, *qs = b + (has_qh ? 48 : 16);
        float d = f16_at(b), dmin = f16_at(b + 2);
        for (int i = 0; i < 8; i++, y += 32) {
            int sc, m;
            scale_min_k4(b + 4, i, &sc, &m);
            float d1 = d * (float)sc, m1 = dmin * (float)m;
            const uint8_t *q = qs + 32 * (i / 2);
            int shift = 4 * (i & 1);
            for (int l = 0; l < 32; l++) {
                int v = (q[l] >> shift) & 15;
                if (has_qh)
                    v |= ((qh[l] >> i) & 1) << 4;
                float p = d1 * (float)v;
                y[l] = p - m1;
            }
        }
    }
}

static void deq_q4_k(const uint8_t *b, int64_t nb, float *restrict y)
{
    deq_k4(b, nb, 144, false, y);
}

static void deq_q5_k(const uint8_t *b, int64_t nb, float *restrict y)
{
    deq_k4(b, nb, 176, true, y);
}

static void deq_q6_k(const uint8_t *b, int64_t nb, float *restrict y)
{
    for (int64_t k = 0; k < nb; k++, b += 210) {
        const int8_t *scales = (const int8_t *)(b + 192);
        float d = f16_at(b + 208);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = b + 64 * h, *qh = b + 128 + 32 * h;
            for (int s = 0; s < 4; s++)
                for (int g = 0; g < 2; g++, y += 16) {
                    float dl = d * (float)scales[8 * h + 2 * s + g];
                    const uint8_t *lo_b = ql + 32 * (s & 1) + 16 * g, *hi_b = qh + 16 * g;
                    for (int l = 0; l < 16; l++) {
                        int lo = (lo_b[l] >> (4 * (s >> 1))) & 15;
                        int hi = (hi_b[l] >> (2 * s)) & 3;
                        y[l] = dl * (float)((lo | hi << 4) - 32);
                    }
                }
        }
    }
}

/* n halves from e (little-endian host, as every reader of lorac). */
static void deq_f16(const uint8_t *restrict e, int64_t n, float *restrict y)
{
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, e + 2 * i, sizeof h);
        y[i] = lc_f16_to_f32(h);
    }
}

typedef void (*block_fn)(const uint8_t *b, int64_t nb, float *restrict y);

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
        deq_f16(p + 2 * k0, n, out);
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
    const int64_t bs = ti->block_size, tb = ti->type_size;
    float tmp[LC_GGML_MAX_BLOCK];
    int64_t k = k0, end = k0 + n;
    if (k % bs && k < end) { /* a first block cut at its start */
        int64_t off = k % bs, take = bs - off < end - k ? bs - off : end - k;
        fn(p + k / bs * tb, 1, tmp);
        memcpy(out, tmp + off, (size_t)take * sizeof(float));
        k += take;
    }
    int64_t whole = (end - k) / bs; /* k is at a block start (or at end) */
    if (whole > 0) {
        fn(p + k / bs * tb, whole, out + (k - k0));
        k += whole * bs;
    }
    if (k < end) { /* a last block cut at its end */
        fn(p + k / bs * tb, 1, tmp);
        memcpy(out + (k - k0), tmp, (size_t)(end - k) * sizeof(float));
    }
}

/* nf4.c — bitsandbytes-compatible NF4 quantization and dequantization (see
 * nf4.h).
 *
 * What is reproduced bit for bit, and from where (bitsandbytes 0.50, whose
 * CPU backend quantizes; checked against it with scripts/make_nf4_fixture.py):
 *
 * - quantize_4bit (pure-torch "default" kernel): absmax = max |x| per block
 *   of the flattened weight. Full blocks scale by x · (1/max(absmax, 1e-38))
 *   (torch evaluates `1.0 / t` as reciprocal(t) · 1.0), the trailing partial
 *   block by x / max(absmax, 1e-38) — and stores that clamped absmax, while
 *   full blocks store the unclamped one (0 for an all-zero block). The scaled
 *   value is clamped to [−1, 1] and the code is torch.bucketize over the f32
 *   midpoints of adjacent codes: the number of midpoints strictly below it,
 *   so a value on a midpoint takes the lower code (as CUDA's dQuantizeNF4
 *   decision tree does, though four of its pivots are 1 ulp off — see
 *   nf4_mid). Zero (an all-zero block) is code 7.
 * - Double quant: offset = torch's f32 mean of absmax — sum by ATen's
 *   cascade_sum (AVX2 kernel, 8 float lanes, single-threaded) then / n —
 *   exact against one torch thread at any size. torch splits a sum of
 *   32768+ values over its threads (order depends on their number), so
 *   beyond 32768 blocks the offset can differ from a multi-threaded torch
 *   run in its last bit (it is stored, so loading is always exact); an
 *   AVX-512 torch sums 16 lanes. absmax − offset then goes through bnb's C++
 *   quantize_cpu: per 256 values am = max |v| (0 → all codes 0), then
 *   lut[(u16)trunc(fma((clamp(v·(1/am)) + 1)·0.5, 65535, 0.5))] with a
 *   65536-entry table built from the map's midpoints. That is NOT always
 *   the nearest map entry (the table's bins are 2/65535 wide), and we match
 *   it, not the nearest.
 * - The signed dynamic map (create_dynamic_map(signed=True)) is rebuilt the
 *   way torch computes it on an AVX2 CPU: torch.linspace as fused
 *   multiply-adds from either end, f32 means and f32 scale products, sorted.
 * - Dequant: code · absmax in f32; nested absmax = map[q] · nested_absmax
 *   then + offset, two separately rounded f32 operations (never contracted
 *   into an fma, whatever -ffp-contract says).
 *
 * lorac refuses an odd number of elements (bnb pads the last byte with
 * code 7), non-finite weights, and block sizes bnb does not accept. */
#include "nf4.h"
#include "nf4_code.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const float lc_nf4_code[16] = LC_NF4_CODE_INIT;

/* (code[i] + code[i+1]) / 2 computed in f32, as bitsandbytes' CPU path
 * (torch.bucketize bounds) has them. CUDA's dQuantizeNF4 writes its pivots
 * as decimal float literals, and four of those round to the neighbouring
 * f32: the 0|1 and 14|15 pivots 1 ulp below these midpoints, 8|9 and
 * 12|13 1 ulp above. So one f32 value at each of those four midpoints
 * (the midpoint itself, resp. the next float up) gets another code on a
 * GPU than here and on bnb's CPU. */
static const float nf4_mid[15] = {
    -0x1.b239bp-1f,  /* -0.848096371 */
    -0x1.38a4ep-1f,  /* -0.610632896 */
    -0x1.d709p-2f,   /* -0.45999527 */
    -0x1.5bd4ecp-2f, /* -0.33967942 */
    -0x1.e079d8p-3f, /* -0.234607399 */
    -0x1.1a7178p-3f, /* -0.137911737 */
    -0x1.74f0e2p-5f, /* -0.0455250181 */
    0x1.45f5fep-5f,  /* 0.0397901498 */
    0x1.ec90c4p-4f,  /* 0.120255247 */
    0x1.a0cfcp-3f,   /* 0.203521252 */
    0x1.2b05a8p-2f,  /* 0.292013764 */
    0x1.8ea7f2p-2f,  /* 0.389312536 */
    0x1.00da08p-1f,  /* 0.501663446 */
    0x1.491b5ep-1f,  /* 0.64278692 */
    0x1.b913b4p-1f,  /* 0.861478448 */
};

#define NF4_PAR_MIN 65536 /* elements below which loops stay serial */

/* Number of midpoints strictly below s (torch.bucketize, right=False). */
static inline unsigned nf4_bucket(float s)
{
    unsigned c = 0;
    for (int i = 0; i < 15; i++)
        c += s > nf4_mid[i];
    return c;
}

static inline float clamp1(float s)
{
    /* torch.clamp(s, -1, 1) = min(max(s, -1), 1) */
    s = s < -1.0f ? -1.0f : s;
    return s > 1.0f ? 1.0f : s;
}

int64_t lc_nf4_blocks(int64_t rows, int64_t cols, int64_t blocksize)
{
    if (rows <= 0 || cols <= 0 || blocksize <= 0 || rows > INT64_MAX / cols)
        return 0;
    int64_t n = rows * cols;
    return n / blocksize + (n % blocksize != 0);
}

/* ------------------------------------------------------------ dynamic map */

/* torch.linspace(start, end, steps, dtype=float32) as ATen's CPU kernel
 * computes it (AVX2 build, where the compiler fuses the multiply-add):
 * indices below steps/2 as fma(step, i, start), the others counting back
 * from end as fma(−step, steps − 1 − i, end). */
static void torch_linspace_f32(float start, float end, int64_t steps, float *out)
{
    const float step = (end - start) / (float)(steps - 1);
    const int64_t halfway = steps / 2;
    for (int64_t i = 0; i < steps; i++)
        out[i] = i < halfway ? fmaf(step, (float)i, start)
                             : fmaf(-step, (float)(steps - i - 1), end);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

void lc_nf4_dynamic_map(float map[256])
{
    /* create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8):
     * for exponent i = 0..6, 2^i means of linspace(0.1, 1, 2^i + 1),
     * scaled by ±10^(i−6) (a Python float, rounded to f32 by torch's mul);
     * then 0 and 1. 2·127 + 2 = 256 values, sorted. */
    static const double scale[7] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0};
    float b[65];
    int n = 0;
    for (int i = 0; i < 7; i++) {
        int64_t items = ((int64_t)1 << i) + 1;
        torch_linspace_f32(0.1f, 1.0f, items, b);
        float s = (float)scale[i];
        for (int64_t j = 0; j + 1 < items; j++) {
            float mean = (b[j] + b[j + 1]) / 2.0f;
            map[n++] = s * mean;
            map[n++] = -s * mean;
        }
    }
    map[n++] = 0.0f;
    map[n++] = 1.0f;
    LC_ASSERT(n == 256);
    qsort(map, 256, sizeof(float), cmp_float);
}

/* ------------------------------------------------------- torch f32 mean */

/* ATen's multi_row_sum: 4 interleaved rows of `lanes`-wide accumulators,
 * summed in a 4-level cascade (level width 2^max(4, ceil_log2(size)/4)).
 * Row r of step i is x[(i·4 + r)·lanes + l]. */
#define TS_MAXL 8
static void ts_multi_row_sum(const float *x, int lanes, int64_t size,
                             float out[4][TS_MAXL])
{
    int64_t cl2 = 1;
    if (size > 2) {
        cl2 = 0;
        for (uint64_t v = (uint64_t)(size - 1); v; v >>= 1)
            cl2++;
    }
    const int64_t level_power = cl2 / 4 > 4 ? cl2 / 4 : 4;
    const int64_t level_step = (int64_t)1 << level_power;
    const int64_t level_mask = level_step - 1;
    float acc[4][4][TS_MAXL] = {{{0}}};

#define TS_ADD_ROW(i)                                                         \
    for (int r = 0; r < 4; r++)                                               \
        for (int l = 0; l < lanes; l++)                                       \
            acc[0][r][l] = acc[0][r][l] + x[((i) * 4 + r) * lanes + l];

    int64_t i = 0;
    while (i + level_step <= size) {
        for (int64_t j = 0; j < level_step; j++, i++) {
            TS_ADD_ROW(i)
        }
        for (int j = 1; j < 4; j++) {
            for (int r = 0; r < 4; r++)
                for (int l = 0; l < lanes; l++) {
                    acc[j][r][l] = acc[j][r][l] + acc[j - 1][r][l];
                    acc[j - 1][r][l] = 0.0f;
                }
            if ((i & (level_mask << (j * level_power))) != 0)
                break;
        }
    }
    for (; i < size; i++) {
        TS_ADD_ROW(i)
    }
#undef TS_ADD_ROW
    for (int j = 1; j < 4; j++)
        for (int r = 0; r < 4; r++)
            for (int l = 0; l < lanes; l++)
                acc[0][r][l] = acc[0][r][l] + acc[j][r][l];
    memcpy(out, acc[0], sizeof(acc[0]));
}

/* ATen's row_sum: rows of 4 "vectors" (each `lanes` wide) through
 * multi_row_sum, leftover vectors into row 0, rows 1..3 added into row 0. */
static void ts_row_sum(const float *x, int lanes, int64_t nvec, float res[TS_MAXL])
{
    float rows[4][TS_MAXL];
    const int64_t size_ilp = nvec / 4;
    ts_multi_row_sum(x, lanes, size_ilp, rows);
    for (int64_t i = size_ilp * 4; i < nvec; i++)
        for (int l = 0; l < lanes; l++)
            rows[0][l] = rows[0][l] + x[i * lanes + l];
    for (int r = 1; r < 4; r++)
        for (int l = 0; l < lanes; l++)
            rows[0][l] = rows[0][l] + rows[r][l];
    memcpy(res, rows[0], sizeof(rows[0]));
}

/* torch.Tensor.mean() of a contiguous f32 vector as ATen computes it on one
 * thread (AVX2 build): cascade_sum → vectorized_inner_sum (8 lanes) for
 * n ≥ 8, scalar_inner_sum below; then sum / n in f32. */
static float torch_mean_f32(const float *x, int64_t n)
{
    float sum;
    if (n >= 8) {
        const int64_t nvec = n / 8;
        float v[TS_MAXL];
        ts_row_sum(x, 8, nvec, v);
        float acc = 0.0f;
        for (int64_t k = nvec * 8; k < n; k++)
            acc = acc + x[k];
        for (int l = 0; l < 8; l++)
            acc = acc + v[l];
        sum = acc;
    } else {
        float v[TS_MAXL];
        ts_row_sum(x, 1, n, v);
        sum = v[0];
    }
    return sum / (float)n;
}

/* ------------------------------------------------- nested 8-bit quantize */

#define LUT_SIZE 65536

/* bnb's build_quantize_lut: table index i stands for −1 + 2i/65535; its
 * entry is the first map index whose upper midpoint is not below that. */
static void build_lut(const float map[256], uint8_t *lut)
{
    float mid[255];
    for (int i = 0; i < 255; i++)
        mid[i] = 0.5f * (map[i] + map[i + 1]);
    int c = 0;
    for (int i = 0; i < LUT_SIZE; i++) {
        float fi = (float)i;
        float val = (fi + fi) / 65535.0f - 1.0f;
        while (c < 255 && mid[c] < val)
            c++;
        lut[i] = (uint8_t)c;
    }
}

/* bnb's quantize_cpu (0.50) over v[0..n) with blocks of bs. */
static void quantize_blockwise8(const float *v, int64_t n, int64_t bs,
                                const uint8_t *lut, uint8_t *q, float *absmax)
{
    const int64_t nb = n / bs + (n % bs != 0);
#pragma omp parallel for schedule(static) if (n >= NF4_PAR_MIN)
    for (int64_t b = 0; b < nb; b++) {
        const int64_t s = b * bs, e = s + bs < n ? s + bs : n;
        float am = 0.0f;
        for (int64_t i = s; i < e; i++) {
            float a = fabsf(v[i]);
            am = a > am ? a : am;
        }
        absmax[b] = am;
        if (am == 0.0f) {
            memset(q + s, 0, (size_t)(e - s));
            continue;
        }
        const float inv = 1.0f / am;
        for (int64_t i = s; i < e; i++) {
            float t = clamp1(v[i] * inv);
            t = (t + 1.0f) * 0.5f;
            t = fmaf(t, 65535.0f, 0.5f);
            q[i] = lut[(uint16_t)(int32_t)t];
        }
    }
}

/* --------------------------------------------------------------- quantize */

void lc_nf4_store_free(lc_nf4_store *s)
{
    if (!s)
        return;
    free(s->codes);
    free(s->absmax);
    free(s->absmax_q);
    free(s->nested_absmax);
    memset(s, 0, sizeof *s);
}

int lc_nf4_quantize(lc_nf4_store *s, const float *w, int64_t rows, int64_t cols,
                    int64_t blocksize, bool double_quant, lc_error *err)
{
    memset(s, 0, sizeof *s);
    if (rows <= 0 || cols <= 0)
        return lc_error_set(err, "nf4: weight shape [%lld, %lld] must be positive",
                            (long long)rows, (long long)cols);
    if (rows > INT64_MAX / cols || rows * cols > INT64_MAX / 4)
        return lc_error_set(err, "nf4: weight [%lld, %lld] is too large",
                            (long long)rows, (long long)cols);
    const int64_t n = rows * cols;
    if (n % 2 != 0)
        return lc_error_set(err,
                            "nf4: weight [%lld, %lld] has an odd number of elements; "
                            "two 4-bit codes share a byte, so lorac needs rows·cols even",
                            (long long)rows, (long long)cols);
    bool bs_ok = false;
    for (int64_t b = 32; b <= 4096; b *= 2)
        bs_ok |= blocksize == b;
    if (!bs_ok)
        return lc_error_set(err,
                            "nf4: blocksize %lld is not one bitsandbytes accepts "
                            "(32, 64, 128, 256, 512, 1024, 2048, 4096)",
                            (long long)blocksize);

    const int64_t nb = lc_nf4_blocks(rows, cols, blocksize);
    const int64_t full = n / blocksize;
    float *absmax = malloc((size_t)nb * sizeof(float));
    s->codes = malloc((size_t)(n / 2));
    if (!absmax || !s->codes) {
        free(absmax);
        lc_nf4_store_free(s);
        return lc_error_set(err, "nf4: out of memory for a [%lld, %lld] weight",
                            (long long)rows, (long long)cols);
    }

    /* absmax; any NaN/Inf makes the block's max non-finite */
    int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad) if (n >= NF4_PAR_MIN)
    for (int64_t b = 0; b < nb; b++) {
        const int64_t st = b * blocksize, e = st + blocksize < n ? st + blocksize : n;
        float am = 0.0f;
        int nonfinite = 0;
        for (int64_t i = st; i < e; i++) {
            float a = fabsf(w[i]);
            nonfinite |= !(a <= 3.40282347e38f);
            am = a > am ? a : am;
        }
        bad |= nonfinite;
        /* torch clamps the partial block's absmax before storing it */
        absmax[b] = b < full ? am : fmaxf(am, 1e-38f);
    }
    if (bad) {
        free(absmax);
        lc_nf4_store_free(s);
        return lc_error_set(err, "nf4: weight [%lld, %lld] contains NaN or Inf",
                            (long long)rows, (long long)cols);
    }

    /* codes, two per byte, first element in the high nibble. Blocks can
     * start on an odd element only when blocksize is odd, which it is not,
     * so each block owns whole bytes. */
    uint8_t *codes = s->codes;
#pragma omp parallel for schedule(static) if (n >= NF4_PAR_MIN)
    for (int64_t b = 0; b < nb; b++) {
        const int64_t st = b * blocksize, e = st + blocksize < n ? st + blocksize : n;
        if (b < full) {
            const float inv = 1.0f / fmaxf(absmax[b], 1e-38f);
            for (int64_t i = st; i < e; i += 2) {
                unsigned hi = nf4_bucket(clamp1(w[i] * inv));
                unsigned lo = nf4_bucket(clamp1(w[i + 1] * inv));
                codes[i >> 1] = (uint8_t)(hi << 4 | lo);
            }
        } else {
            const float am = absmax[b];
            for (int64_t i = st; i < e; i += 2) {
                unsigned hi = nf4_bucket(clamp1(w[i] / am));
                unsigned lo = nf4_bucket(clamp1(w[i + 1] / am));
                codes[i >> 1] = (uint8_t)(hi << 4 | lo);
            }
        }
    }

    s->q.rows = rows;
    s->q.cols = cols;
    s->q.blocksize = blocksize;
    s->q.codes = s->codes;

    if (!double_quant) {
        s->absmax = absmax;
        s->q.absmax = absmax;
        return 0;
    }

    const int64_t nbs = 256;
    const int64_t nb2 = nb / nbs + (nb % nbs != 0);
    float *centred = malloc((size_t)nb * sizeof(float));
    uint8_t *lut = malloc(LUT_SIZE);
    s->absmax_q = malloc((size_t)nb);
    s->nested_absmax = malloc((size_t)nb2 * sizeof(float));
    if (!centred || !lut || !s->absmax_q || !s->nested_absmax) {
        free(centred);
        free(lut);
        free(absmax);
        lc_nf4_store_free(s);
        return lc_error_set(err, "nf4: out of memory for a [%lld, %lld] weight",
                            (long long)rows, (long long)cols);
    }
    const float offset = torch_mean_f32(absmax, nb);
    for (int64_t b = 0; b < nb; b++)
        centred[b] = absmax[b] - offset;
    lc_nf4_dynamic_map(s->nested_map);
    build_lut(s->nested_map, lut);
    quantize_blockwise8(centred, nb, nbs, lut, s->absmax_q, s->nested_absmax);
    free(lut);
    free(centred);
    free(absmax);

    s->q.absmax = NULL;
    s->q.absmax_q = s->absmax_q;
    s->q.nested_absmax = s->nested_absmax;
    s->q.nested_map = s->nested_map;
    s->q.nested_blocksize = nbs;
    s->q.offset = offset;
    return 0;
}

/* ------------------------------------------------------------- dequantize */

float lc_nf4_block_absmax(const lc_nf4 *q, int64_t b)
{
    if (q->absmax)
        return q->absmax[b];
    /* bnb: dequantize_blockwise (f32 product), then `absmax += offset`: two
     * roundings. volatile keeps compilers that contract across statements
     * (gcc -std=gnu11 -ffp-contract=fast) from fusing them into one fma. */
    volatile float a = q->nested_map[q->absmax_q[b]] * q->nested_absmax[b / q->nested_blocksize];
    return a + q->offset;
}

void lc_nf4_dequant_rows(const lc_nf4 *q, int64_t r0, int64_t r1, lc_real *dst)
{
    if (r1 <= r0)
        return;
    const int64_t bs = q->blocksize;
    const int64_t e0 = r0 * q->cols, e1 = r1 * q->cols;
    const int64_t b0 = e0 / bs, b1 = (e1 - 1) / bs + 1;
    const uint8_t *codes = q->codes;
#pragma omp parallel for schedule(static) if (e1 - e0 >= NF4_PAR_MIN)
    for (int64_t b = b0; b < b1; b++) {
        const float am = lc_nf4_block_absmax(q, b);
        lc_real tab[16];
        for (int c = 0; c < 16; c++) {
            float v = lc_nf4_code[c] * am;
            tab[c] = (lc_real)v;
        }
        int64_t e = b * bs > e0 ? b * bs : e0;
        const int64_t end = (b + 1) * bs < e1 ? (b + 1) * bs : e1;
        lc_real *out = dst + (e - e0);
        if ((e & 1) && e < end) { /* starts on a low nibble (odd cols) */
            *out++ = tab[codes[e >> 1] & 15];
            e++;
        }
        for (; e + 1 < end; e += 2) {
            const uint8_t byte = codes[e >> 1];
            *out++ = tab[byte >> 4];
            *out++ = tab[byte & 15];
        }
        if (e < end)
            *out = tab[codes[e >> 1] >> 4];
    }
}

size_t lc_nf4_bytes(const lc_nf4 *q)
{
    int64_t nb = lc_nf4_blocks(q->rows, q->cols, q->blocksize);
    size_t bytes = (size_t)(q->rows * q->cols / 2);
    if (q->absmax_q) {
        int64_t nn = lc_nf4_nested_blocks(nb, q->nested_blocksize);
        bytes += (size_t)nb + (size_t)nn * sizeof(float) + sizeof q->offset;
    } else {
        bytes += (size_t)nb * sizeof(float);
    }
    return bytes;
}

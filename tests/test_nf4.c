/* test_nf4.c — NF4 quantization (autograd/nf4.c) against bitsandbytes.
 *
 * Bit-exact checks read files that real bitsandbytes wrote: the NF4 round
 * trip of tiny-llama's layer-0 linears (tiny-llama/ref_nf4.safetensors, no
 * double quant) and tests/fixtures/nf4_double_quant.safetensors
 * (scripts/make_nf4_fixture.py: codes, absmax, nested absmax, offset, map and
 * dequantized weights with and without double quant, ties on NF4 midpoints,
 * zero blocks, partial blocks, blocks straddling rows). Then bounds on the
 * double-quant error for a large random weight, bytes per parameter, edge
 * cases and refusals, and row-range dequantization of a mid-sized weight
 * against the whole-matrix one and a per-element reference. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/nf4.h"
#include "data/safetensors.h"
#include "helpers.h"

/* ---------------------------------------------------------------- helpers */

/* malloc'd copy of a tensor (safetensors data need not be aligned) after
 * checking its dtype and element count. */
static void *tensor_copy(const lc_st_file *f, const char *name, lc_dtype dt, uint64_t numel)
{
    const lc_st_tensor *t = lc_st_find(f, name);
    cr_assert(t != NULL, "%s: no tensor %s", f->path, name);
    cr_assert_eq(t->dtype, dt, "%s: dtype %s", name, lc_dtype_name(t->dtype));
    cr_assert_eq(t->numel, numel, "%s: %llu elements, expected %llu", name,
                 (unsigned long long)t->numel, (unsigned long long)numel);
    size_t bytes = (size_t)numel * lc_dtype_size(dt);
    void *p = malloc(bytes ? bytes : 1);
    cr_assert(p != NULL);
    memcpy(p, t->data, bytes);
    return p;
}

static void open_st(lc_st_file *f, const char *rel)
{
    lc_error err;
    cr_assert_eq(lc_st_open(f, lc_test_fixture(rel), &err), 0, "%s", err.msg);
}

static uint32_t bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

/* First index where two f32 arrays differ bitwise, or -1. */
static int64_t first_diff_f32(const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (bits(a[i]) != bits(b[i]))
            return i;
    return -1;
}

static int64_t first_diff_u8(const uint8_t *a, const uint8_t *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return i;
    return -1;
}

/* Whole weight dequantized as f32 (lc_real is float in lorac_core). */
static float *dequant_all(const lc_nf4 *q)
{
    float *d = malloc((size_t)(q->rows * q->cols) * sizeof(float));
    cr_assert(d != NULL);
    lc_nf4_dequant_rows(q, 0, q->rows, d);
    return d;
}

/* Every row range [r0, r1) must equal the same slice of the full dequant. */
static void check_row_ranges(const lc_nf4 *q, const float *full)
{
    float *buf = malloc((size_t)(q->rows * q->cols) * sizeof(float));
    for (int64_t r0 = 0; r0 < q->rows; r0++)
        for (int64_t r1 = r0 + 1; r1 <= q->rows; r1++) {
            lc_nf4_dequant_rows(q, r0, r1, buf);
            int64_t d = first_diff_f32(buf, full + r0 * q->cols, (r1 - r0) * q->cols);
            cr_assert_eq(d, -1, "rows [%lld, %lld) differ at %lld", (long long)r0,
                         (long long)r1, (long long)d);
        }
    free(buf);
}

static uint64_t rng_state;
static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double rng_unit(void) { return ((double)(rng_next() >> 11) + 0.5) / 9007199254740992.0; }

/* Normal(0, sigma) floats by Box–Muller from a fixed seed. */
static float *random_normal(int64_t n, uint64_t seed, float sigma)
{
    float *w = malloc((size_t)n * sizeof(float));
    cr_assert(w != NULL);
    rng_state = seed;
    for (int64_t i = 0; i < n; i += 2) {
        double r = sqrt(-2.0 * log(rng_unit())), t = 6.283185307179586 * rng_unit();
        w[i] = (float)(sigma * r * cos(t));
        if (i + 1 < n)
            w[i + 1] = (float)(sigma * r * sin(t));
    }
    return w;
}

/* (codes + absmax_q + nested_absmax + offset) / numel for a double-quantized weight. */
static double bytes_per_param(const lc_nf4 *q)
{
    int64_t n = q->rows * q->cols, nb = lc_nf4_blocks(q->rows, q->cols, q->blocksize);
    int64_t nb2 = (nb + q->nested_blocksize - 1) / q->nested_blocksize;
    return (double)(n / 2 + nb + 4 * nb2 + 4) / (double)n;
}

/* ------------------------------------------- tiny-llama vs bitsandbytes */

static const char *const linears[7] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj",
};

Test(nf4, tiny_llama_matches_bitsandbytes_bitwise)
{
    lc_st_file model, ref;
    open_st(&model, "tiny-llama/model/model.safetensors");
    open_st(&ref, "tiny-llama/ref_nf4.safetensors");
    int checked = 0;
    for (int layer = 0;; layer++) {
        char name[256];
        snprintf(name, sizeof name, "model.layers.%d.%s.weight.nf4", layer, linears[0]);
        if (!lc_st_find(&ref, name))
            break; /* ref_nf4 stores layer 0 only; take more when it has them */
        for (int l = 0; l < 7; l++) {
            char wname[200];
            snprintf(wname, sizeof wname, "model.layers.%d.%s.weight", layer, linears[l]);
            const lc_st_tensor *wt = lc_st_find(&model, wname);
            cr_assert(wt != NULL && wt->dtype == LC_DTYPE_F32 && wt->ndim == 2, "%s", wname);
            const int64_t rows = wt->shape[0], cols = wt->shape[1], n = rows * cols;
            float *w = tensor_copy(&model, wname, LC_DTYPE_F32, (uint64_t)n);

            snprintf(name, sizeof name, "%s.nf4", wname);
            uint8_t *rcodes = tensor_copy(&ref, name, LC_DTYPE_U8, (uint64_t)n / 2);
            snprintf(name, sizeof name, "%s.absmax", wname);
            float *rabs = tensor_copy(&ref, name, LC_DTYPE_F32, (uint64_t)lc_nf4_blocks(rows, cols, 64));
            snprintf(name, sizeof name, "%s.dequant", wname);
            float *rdeq = tensor_copy(&ref, name, LC_DTYPE_F32, (uint64_t)n);

            lc_nf4_store s;
            lc_error err;
            cr_assert_eq(lc_nf4_quantize(&s, w, rows, cols, 64, false, &err), 0, "%s", err.msg);
            int64_t d = first_diff_u8(s.q.codes, rcodes, n / 2);
            cr_assert_eq(d, -1, "%s: code byte %lld is 0x%02x, bitsandbytes 0x%02x", wname,
                         (long long)d, d >= 0 ? s.q.codes[d] : 0, d >= 0 ? rcodes[d] : 0);
            d = first_diff_f32(s.q.absmax, rabs, lc_nf4_blocks(rows, cols, 64));
            cr_assert_eq(d, -1, "%s: absmax[%lld] differs", wname, (long long)d);
            float *deq = dequant_all(&s.q);
            d = first_diff_f32(deq, rdeq, n);
            cr_assert_eq(d, -1, "%s: dequant[%lld] = %.9g, bitsandbytes %.9g", wname,
                         (long long)d, d >= 0 ? deq[d] : 0, d >= 0 ? rdeq[d] : 0);
            /* row tiles of 3 give the same values */
            float *tile = malloc((size_t)(3 * cols) * sizeof(float));
            for (int64_t r = 0; r < rows; r += 3) {
                int64_t r1 = r + 3 < rows ? r + 3 : rows;
                lc_nf4_dequant_rows(&s.q, r, r1, tile);
                cr_assert_eq(first_diff_f32(tile, rdeq + r * cols, (r1 - r) * cols), -1);
            }
            free(tile);
            free(deq);
            lc_nf4_store_free(&s);
            free(w);
            free(rcodes);
            free(rabs);
            free(rdeq);
            checked++;
        }
    }
    cr_assert_geq(checked, 7, "ref_nf4 has no layer-0 linears");
    cr_log_info("tiny-llama: %d linears match bitsandbytes bit for bit (codes, absmax, dequant)",
                checked);
    lc_st_close(&model);
    lc_st_close(&ref);
}

/* ------------------------------------- double quant vs bitsandbytes file */

static void check_case(const lc_st_file *f, const char *cs, const float *bnb_map)
{
    char name[128];
    snprintf(name, sizeof name, "%s.weight", cs);
    const lc_st_tensor *wt = lc_st_find(f, name);
    cr_assert(wt != NULL && wt->ndim == 2, "%s", name);
    const int64_t rows = wt->shape[0], cols = wt->shape[1], n = rows * cols;
    const int64_t nb = lc_nf4_blocks(rows, cols, 64), nb2 = (nb + 255) / 256;
    float *w = tensor_copy(f, name, LC_DTYPE_F32, (uint64_t)n);
#define GET(var, what, dt, cnt)                                                \
    snprintf(name, sizeof name, "%s." what, cs);                               \
    var = tensor_copy(f, name, dt, (uint64_t)(cnt))
    uint8_t *codes, *absmax_q;
    float *absmax, *nested, *offset, *absmax_dq, *deq;
    GET(codes, "codes", LC_DTYPE_U8, n / 2);
    GET(absmax, "absmax", LC_DTYPE_F32, nb);
    GET(absmax_q, "absmax_q", LC_DTYPE_U8, nb);
    GET(nested, "nested_absmax", LC_DTYPE_F32, nb2);
    GET(offset, "offset", LC_DTYPE_F32, 1);
    GET(absmax_dq, "absmax_dq", LC_DTYPE_F32, nb);
    GET(deq, "dequant", LC_DTYPE_F32, n);
#undef GET
    lc_error err;

    /* plain */
    int64_t d;
    lc_nf4_store p;
    cr_assert_eq(lc_nf4_quantize(&p, w, rows, cols, 64, false, &err), 0, "%s", err.msg);
    d = first_diff_u8(p.q.codes, codes, n / 2);
    cr_assert_eq(d, -1, "%s: code byte %lld = 0x%02x, bitsandbytes 0x%02x", cs, (long long)d,
                 d >= 0 ? p.q.codes[d] : 0, d >= 0 ? codes[d] : 0);
    d = first_diff_f32(p.q.absmax, absmax, nb);
    cr_assert_eq(d, -1, "%s: absmax[%lld] = %a, bitsandbytes %a", cs, (long long)d,
                 d >= 0 ? p.q.absmax[d] : 0, d >= 0 ? absmax[d] : 0);
    snprintf(name, sizeof name, "%s.dequant_plain", cs);
    if (lc_st_find(f, name)) {
        float *dp = tensor_copy(f, name, LC_DTYPE_F32, (uint64_t)n);
        float *mine = dequant_all(&p.q);
        cr_assert_eq(first_diff_f32(mine, dp, n), -1, "%s: plain dequant", cs);
        free(mine);
        free(dp);
    }

    /* double quant */
    lc_nf4_store s;
    cr_assert_eq(lc_nf4_quantize(&s, w, rows, cols, 64, true, &err), 0, "%s", err.msg);
    cr_assert(s.q.absmax == NULL && s.q.absmax_q && s.q.nested_absmax && s.q.nested_map);
    cr_assert_eq(s.q.nested_blocksize, 256);
    cr_assert_eq(first_diff_u8(s.q.codes, codes, n / 2), -1, "%s: codes", cs);
    cr_assert_eq(bits(s.q.offset), bits(offset[0]), "%s: offset %a, bitsandbytes %a", cs,
                 s.q.offset, offset[0]);
    d = first_diff_u8(s.q.absmax_q, absmax_q, nb);
    cr_assert_eq(d, -1, "%s: absmax_q[%lld] = %d, bitsandbytes %d", cs, (long long)d,
                 d >= 0 ? s.q.absmax_q[d] : 0, d >= 0 ? absmax_q[d] : 0);
    cr_assert_eq(first_diff_f32(s.q.nested_absmax, nested, nb2), -1, "%s: nested_absmax", cs);
    cr_assert_eq(first_diff_f32(s.q.nested_map, bnb_map, 256), -1, "%s: nested map", cs);
    for (int64_t b = 0; b < nb; b++)
        cr_assert_eq(bits(lc_nf4_block_absmax(&s.q, b)), bits(absmax_dq[b]),
                     "%s: dequantized absmax[%lld] = %a, bitsandbytes %a", cs, (long long)b,
                     lc_nf4_block_absmax(&s.q, b), absmax_dq[b]);
    float *mine = dequant_all(&s.q);
    d = first_diff_f32(mine, deq, n);
    cr_assert_eq(d, -1, "%s: dequant[%lld] = %.9g, bitsandbytes %.9g", cs, (long long)d,
                 d >= 0 ? mine[d] : 0, d >= 0 ? deq[d] : 0);
    if (rows <= 8)
        check_row_ranges(&s.q, mine);

    /* a view over bitsandbytes' own arrays (what a checkpoint loader builds)
     * dequantizes to the same bytes */
    lc_nf4 view = {.rows = rows, .cols = cols, .blocksize = 64, .codes = codes,
                   .absmax = NULL, .absmax_q = absmax_q, .nested_absmax = nested,
                   .nested_map = bnb_map, .nested_blocksize = 256, .offset = offset[0]};
    float *from_bnb = dequant_all(&view);
    cr_assert_eq(first_diff_f32(from_bnb, deq, n), -1, "%s: dequant of bnb's state", cs);

    cr_log_info("%s [%lld, %lld]: %lld blocks, %lld nested; codes, absmax, absmax_q, "
                "nested_absmax, offset, dequant all bit-exact", cs, (long long)rows,
                (long long)cols, (long long)nb, (long long)nb2);
    free(from_bnb);
    free(mine);
    lc_nf4_store_free(&s);
    lc_nf4_store_free(&p);
    free(w);
    free(codes);
    free(absmax);
    free(absmax_q);
    free(nested);
    free(offset);
    free(absmax_dq);
    free(deq);
}

Test(nf4, double_quant_matches_bitsandbytes_fixture)
{
    lc_st_file f;
    open_st(&f, "nf4_double_quant.safetensors");
    float *map = tensor_copy(&f, "nested_map", LC_DTYPE_F32, 256);
    check_case(&f, "main", map);
    check_case(&f, "tail", map);
    check_case(&f, "odd_cols", map);
    free(map);
    lc_st_close(&f);
}

Test(nf4, maps_match_bitsandbytes)
{
    lc_st_file f;
    open_st(&f, "nf4_double_quant.safetensors");
    float *map = tensor_copy(&f, "nested_map", LC_DTYPE_F32, 256);
    float *code = tensor_copy(&f, "nf4_code", LC_DTYPE_F32, 16);
    float mine[256];
    lc_nf4_dynamic_map(mine);
    int64_t d = first_diff_f32(mine, map, 256);
    cr_assert_eq(d, -1, "dynamic map[%lld] = %a, bitsandbytes %a", (long long)d,
                 d >= 0 ? mine[d] : 0, d >= 0 ? map[d] : 0);
    cr_assert_eq(first_diff_f32(lc_nf4_code, code, 16), -1, "NF4 code table");
    for (int i = 1; i < 256; i++)
        cr_assert(mine[i - 1] < mine[i], "map not strictly increasing at %d", i);
    cr_assert_eq(mine[255], 1.0f);
    free(map);
    free(code);
    lc_st_close(&f);
}

/* -------------------------------------------- double quant error bound */

Test(nf4, double_quant_error_bound_and_bytes_per_param)
{
    const int64_t rows = 1000, cols = 3000, n = rows * cols;
    float *w = random_normal(n, 42, 0.02f);
    /* vary the block scales so the absmax spread is wide */
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            w[r * cols + c] *= 0.25f + (float)(r % 17) * 0.125f;
    lc_nf4_store p, s;
    lc_error err;
    cr_assert_eq(lc_nf4_quantize(&p, w, rows, cols, 64, false, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_nf4_quantize(&s, w, rows, cols, 64, true, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(p.q.codes, s.q.codes, (size_t)n / 2), 0, "codes depend on double quant");

    /* the 8-bit map's worst rounding: half its largest gap, or the distance
     * from −1 to its lowest entry; bnb's 65536-entry table adds up to one
     * table step (1/65535 either side of the value) */
    const float *map = s.q.nested_map;
    double gap = 1.0 + map[0];
    for (int i = 1; i < 256; i++)
        gap = fmax(gap, 0.5 * ((double)map[i] - map[i - 1]));
    const double unit = gap + 1.0 / 65535.0;

    const int64_t nb = lc_nf4_blocks(rows, cols, 64);
    double worst = 0;
    float *dp = dequant_all(&p.q), *ds = dequant_all(&s.q);
    for (int64_t b = 0; b < nb; b++) {
        const double a = p.q.absmax[b], adq = lc_nf4_block_absmax(&s.q, b);
        const double nested = s.q.nested_absmax[b / 256];
        const double slack = 1e-6 * (fabs(a) + fabs((double)s.q.offset));
        const double bound = unit * nested + slack;
        cr_assert(fabs(adq - a) <= bound, "block %lld: |%.9g - %.9g| > %.3g", (long long)b,
                  adq, a, bound);
        worst = fmax(worst, fabs(adq - a) / (unit * nested));
        for (int64_t i = b * 64; i < (b + 1) * 64 && i < n; i++) {
            const unsigned c = (s.q.codes[i >> 1] >> ((i & 1) ? 0 : 4)) & 15;
            const double lim = fabs((double)lc_nf4_code[c]) * bound + 1e-7 * fabs(a);
            cr_assert(fabs((double)ds[i] - dp[i]) <= lim, "element %lld: %.9g vs %.9g",
                      (long long)i, ds[i], dp[i]);
        }
    }
    const double bpp = bytes_per_param(&s.q);
    cr_log_info("double quant [%lld, %lld]: worst |absmax error| = %.3f of the bound "
                "(half max map gap %.5f + 1/65535, times nested absmax); bytes/param %.5f "
                "(plain absmax would be %.5f)", (long long)rows, (long long)cols, worst, gap,
                bpp, (double)(n / 2 + 4 * nb) / (double)n);
    cr_assert_leq(bpp, 0.52);
    free(dp);
    free(ds);
    free(w);
    lc_nf4_store_free(&p);
    lc_nf4_store_free(&s);
}

/* ---------------------------------------------------------- edge cases */

Test(nf4, all_zero_block)
{
    float w[128] = {0};
    lc_nf4_store s;
    lc_error err;
    cr_assert_eq(lc_nf4_quantize(&s, w, 2, 64, 64, false, &err), 0, "%s", err.msg);
    for (int i = 0; i < 64; i++)
        cr_assert_eq(s.q.codes[i], 0x77, "zero encodes as code 7");
    cr_assert_eq(bits(s.q.absmax[0]), 0u, "a full zero block keeps absmax 0");
    float out[128];
    lc_nf4_dequant_rows(&s.q, 0, 2, out);
    for (int i = 0; i < 128; i++)
        cr_assert_eq(bits(out[i]), 0u);
    lc_nf4_store_free(&s);

    cr_assert_eq(lc_nf4_quantize(&s, w, 2, 64, 64, true, &err), 0, "%s", err.msg);
    cr_assert_eq(s.q.offset, 0.0f);
    lc_nf4_dequant_rows(&s.q, 0, 2, out);
    for (int i = 0; i < 128; i++)
        cr_assert_eq(out[i], 0.0f);
    lc_nf4_store_free(&s);

    /* a trailing partial block of zeros stores torch's clamp value 1e-38 */
    float v[80] = {0};
    v[3] = 0.5f;
    cr_assert_eq(lc_nf4_quantize(&s, v, 2, 40, 64, false, &err), 0, "%s", err.msg);
    cr_assert_eq(s.q.absmax[0], 0.5f);
    cr_assert_eq(bits(s.q.absmax[1]), bits(1e-38f));
    for (int i = 32; i < 40; i++)
        cr_assert_eq(s.q.codes[i], 0x77);
    lc_nf4_store_free(&s);
}

Test(nf4, one_nonzero_value)
{
    for (int sign = -1; sign <= 1; sign += 2) {
        float w[64] = {0};
        w[11] = (float)sign * 3.5f;
        lc_nf4_store s;
        lc_error err;
        cr_assert_eq(lc_nf4_quantize(&s, w, 1, 64, 64, false, &err), 0, "%s", err.msg);
        cr_assert_eq(s.q.absmax[0], 3.5f);
        for (int i = 0; i < 64; i++) {
            unsigned c = (s.q.codes[i >> 1] >> ((i & 1) ? 0 : 4)) & 15;
            cr_assert_eq(c, i == 11 ? (sign < 0 ? 0u : 15u) : 7u, "element %d code %u", i, c);
        }
        float out[64];
        lc_nf4_dequant_rows(&s.q, 0, 1, out);
        cr_assert_eq(out[11], w[11]);
        cr_assert_eq(out[0], 0.0f);
        lc_nf4_store_free(&s);
    }
}

/* 3 × 50 with blocks of 64: blocks straddle rows, the last one partial. */
Test(nf4, blocks_straddle_rows)
{
    const int64_t rows = 3, cols = 50, n = rows * cols;
    float *w = random_normal(n, 7, 1.0f);
    lc_nf4_store s;
    lc_error err;
    cr_assert_eq(lc_nf4_quantize(&s, w, rows, cols, 64, false, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_nf4_blocks(rows, cols, 64), 3);
    for (int64_t b = 0; b < 3; b++) {
        float am = 0;
        for (int64_t i = b * 64; i < (b + 1) * 64 && i < n; i++)
            am = fmaxf(am, fabsf(w[i]));
        cr_assert_eq(s.q.absmax[b], am, "block %lld absmax", (long long)b);
    }
    /* each code is a nearest NF4 value of x / absmax */
    for (int64_t i = 0; i < n; i++) {
        unsigned c = (s.q.codes[i >> 1] >> ((i & 1) ? 0 : 4)) & 15;
        double x = (double)w[i] / s.q.absmax[i / 64];
        double dc = fabs(x - lc_nf4_code[c]);
        for (int k = 0; k < 16; k++)
            cr_assert(dc <= fabs(x - lc_nf4_code[k]) + 1e-6, "element %lld: code %u, %d nearer",
                      (long long)i, c, k);
    }
    float *full = dequant_all(&s.q);
    for (int64_t i = 0; i < n; i++) {
        unsigned c = (s.q.codes[i >> 1] >> ((i & 1) ? 0 : 4)) & 15;
        cr_assert_eq(bits(full[i]), bits(lc_nf4_code[c] * s.q.absmax[i / 64]));
    }
    check_row_ranges(&s.q, full);
    lc_nf4_store_free(&s);

    /* 4 × 51: rows 1 and 3 begin on the low nibble of a byte */
    float *w2 = random_normal(4 * 51, 8, 1.0f);
    cr_assert_eq(lc_nf4_quantize(&s, w2, 4, 51, 64, true, &err), 0, "%s", err.msg);
    float *full2 = dequant_all(&s.q);
    check_row_ranges(&s.q, full2);
    free(full2);
    lc_nf4_store_free(&s);
    free(w2);
    free(full);
    free(w);
}

Test(nf4, refusals)
{
    float w[64] = {0};
    lc_nf4_store s;
    lc_error err;
    cr_assert_eq(lc_nf4_quantize(&s, w, 3, 5, 64, false, &err), -1);
    cr_assert(strstr(err.msg, "odd number of elements") != NULL, "%s", err.msg);
    cr_assert_eq(lc_nf4_quantize(&s, w, 2, 32, 48, false, &err), -1);
    cr_assert(strstr(err.msg, "blocksize 48") != NULL, "%s", err.msg);
    cr_assert_eq(lc_nf4_quantize(&s, w, 0, 64, 64, false, &err), -1);
    cr_assert(strstr(err.msg, "[0, 64]") != NULL, "%s", err.msg);
    w[5] = NAN;
    cr_assert_eq(lc_nf4_quantize(&s, w, 1, 64, 64, true, &err), -1);
    cr_assert(strstr(err.msg, "NaN or Inf") != NULL, "%s", err.msg);
    w[5] = INFINITY;
    cr_assert_eq(lc_nf4_quantize(&s, w, 1, 64, 64, false, &err), -1);
    cr_assert(s.codes == NULL && s.q.codes == NULL, "a refused store owns nothing");
    lc_nf4_store_free(&s); /* harmless */
}

/* ------------------------------------------------- row-range dequantization */

/* Element e of q, computed from its parts as bitsandbytes defines them: the
 * 4-bit code (first element of a byte in the high nibble) times its block's
 * absmax, both f32; with double quantization the absmax is
 * nested_map[absmax_q[b]] * nested_absmax[b / nested_blocksize], rounded to
 * f32, plus offset, rounded again (volatile keeps the two roundings apart:
 * gcc may otherwise contract them into one fma). */
static float reference_element(const lc_nf4 *q, int64_t e)
{
    const int64_t b = e / q->blocksize;
    const unsigned code = (q->codes[e / 2] >> (e % 2 ? 0 : 4)) & 15u;
    float absmax;
    if (q->absmax_q) {
        volatile float scaled = q->nested_map[q->absmax_q[b]] *
                                q->nested_absmax[b / q->nested_blocksize];
        absmax = scaled + q->offset;
    } else {
        absmax = q->absmax[b];
    }
    return lc_nf4_code[code] * absmax;
}

/* 300 x 517: odd columns (every other row starts on a low nibble), blocks
 * (128 without, 64 with double quantization) straddling rows, a partial last
 * block and, with double quantization, 2424 blocks in 10 nested blocks, the
 * last partial. The whole matrix (155100
 * elements) is above the size where dequantization goes parallel (65536),
 * a 64-row tile below it. Every element of the whole-matrix dequantization
 * must be the per-element reference, and every row range tried (64-row tiles,
 * single rows, ranges starting and ending on odd rows, large ones, 40 random
 * ones) the same slice of it, bit for bit. */
Test(nf4, row_ranges_match_whole_matrix_and_reference)
{
    const int64_t rows = 300, cols = 517, n = rows * cols;
    float *w = random_normal(n, 99, 0.02f);
    for (int64_t i = 0; i < n; i += 97) /* some blocks with a wide spread */
        w[i] *= 8.0f;
    float *buf = malloc((size_t)n * sizeof(float));
    cr_assert(buf != NULL);
    for (int dq = 0; dq < 2; dq++) {
        const int64_t bs = dq ? 64 : 128;
        lc_nf4_store s;
        lc_error err;
        cr_assert_eq(lc_nf4_quantize(&s, w, rows, cols, bs, dq, &err), 0, "%s", err.msg);
        float *full = dequant_all(&s.q);
        for (int64_t e = 0; e < n; e++) {
            const float want = reference_element(&s.q, e);
            cr_assert_eq(bits(full[e]), bits(want), "double quant %d: element %lld (row %lld) "
                         "is %a, its code times its absmax %a", dq, (long long)e,
                         (long long)(e / cols), full[e], want);
        }
        int64_t ranges[200][2], nr = 0;
        for (int64_t r = 0; r < rows; r += 64) /* tiles, as the matmul kernels use */
            ranges[nr][0] = r, ranges[nr][1] = r + 64 < rows ? r + 64 : rows, nr++;
        const int64_t fixed[][2] = {{0, 1},   {1, 2},     {2, 3},   {299, 300}, {1, 4},
                                    {3, 300}, {0, 299},   {1, 299}, {150, 151}, {127, 130},
                                    {0, 300}, {17, 283}};
        for (size_t k = 0; k < sizeof fixed / sizeof fixed[0]; k++)
            ranges[nr][0] = fixed[k][0], ranges[nr][1] = fixed[k][1], nr++;
        rng_state = 1234 + (uint64_t)dq;
        for (int k = 0; k < 40; k++) {
            int64_t a = (int64_t)(rng_next() % (uint64_t)rows);
            int64_t b = a + 1 + (int64_t)(rng_next() % (uint64_t)(rows - a));
            ranges[nr][0] = a, ranges[nr][1] = b, nr++;
        }
        for (int64_t k = 0; k < nr; k++) {
            const int64_t r0 = ranges[k][0], r1 = ranges[k][1];
            memset(buf, 0xff, (size_t)((r1 - r0) * cols) * sizeof(float));
            lc_nf4_dequant_rows(&s.q, r0, r1, buf);
            int64_t d = first_diff_f32(buf, full + r0 * cols, (r1 - r0) * cols);
            cr_assert_eq(d, -1, "double quant %d: rows [%lld, %lld) differ from the whole "
                         "matrix at element %lld", dq, (long long)r0, (long long)r1, (long long)d);
        }
        cr_log_info("double quant %d, blocksize %lld: %lld elements equal the per-element "
                    "reference, %lld row ranges equal the whole matrix", dq, (long long)bs,
                    (long long)n, (long long)nr);
        free(full);
        lc_nf4_store_free(&s);
    }
    free(buf);
    free(w);
}

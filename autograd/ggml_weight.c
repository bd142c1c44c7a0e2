/* ggml_weight.c — row access to frozen ggml-typed weights (see ggml_weight.h). */
#include "autograd/ggml_weight.h"

#include "autograd/error.h"
#include "data/ggml_quants.h"

#define GGML_PAR_MIN 32768 /* elements: below this a tile is dequantized on one thread */

int64_t lc_llama_gguf_row(int64_t rows, int heads, int64_t r)
{
    int64_t D = rows / heads, half = D / 2;
    int64_t h = r / D, within = r % D;
    int64_t s = within / half, i = within % half;
    return h * D + 2 * i + s;
}

int64_t lc_ggml_weight_src_row(const lc_ggml_weight *g, int64_t rows, int64_t r)
{
    return g->rope_heads <= 0 ? r : lc_llama_gguf_row(rows, g->rope_heads, r);
}

void lc_ggml_weight_rows(const lc_ggml_weight *g, int64_t rows, int64_t cols, int64_t r0,
                         int64_t r1, lc_real *dst)
{
    LC_ASSERT(r0 >= 0 && r0 <= r1 && r1 <= rows);
#pragma omp parallel for schedule(static) if ((r1 - r0) * cols >= GGML_PAR_MIN)
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *src = g->data + (uint64_t)lc_ggml_weight_src_row(g, rows, r) * g->row_bytes;
        lc_real *out = dst + (r - r0) * cols;
#if LC_REAL_IS_F64
        /* dequantize to float in chunks of whole 256-blocks, then widen */
        float buf[1024];
        for (int64_t k0 = 0; k0 < cols; k0 += 1024) {
            int64_t n = cols - k0 < 1024 ? cols - k0 : 1024;
            lc_ggml_dequant(g->type, src, k0, n, buf);
            for (int64_t k = 0; k < n; k++)
                out[k0 + k] = buf[k];
        }
#else
        lc_ggml_dequant(g->type, src, 0, cols, out);
#endif
    }
}

/* tensor.c — shape helpers and frozen-weight conversion (see tensor.h). */
#include "tensor.h"

#include <string.h>

#include "autograd/error.h"
#include "autograd/ggml_weight.h"
#include "autograd/nf4.h"

void lc_tensor_set_shape(lc_tensor *t, int ndim, const int64_t *shape)
{
    LC_ASSERT(ndim >= 0 && ndim <= LC_MAX_DIMS);
    t->ndim = ndim;
    t->numel = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->numel *= shape[i];
    }
    for (int i = ndim; i < LC_MAX_DIMS; i++)
        t->shape[i] = 1;
}

double lc_weight_bytes(const lc_weight *w)
{
    if (w->nf4)
        return (double)lc_nf4_bytes(w->nf4);
    if (w->ggml)
        return (double)w->rows * (double)w->ggml->row_bytes;
    return (double)w->rows * (double)w->cols * (double)lc_dtype_size(w->dtype);
}

void lc_weight_rows_to_real(const lc_weight *w, int64_t r0, int64_t r1, lc_real *dst)
{
    if (w->nf4) {
        lc_nf4_dequant_rows(w->nf4, r0, r1, dst);
        return;
    }
    if (w->ggml) {
        lc_ggml_weight_rows(w->ggml, w->rows, w->cols, r0, r1, dst);
        return;
    }
    int64_t n = (r1 - r0) * w->cols;
    int64_t off = r0 * w->cols;
    switch (w->dtype) {
    case LC_DTYPE_F32: {
        const float *s = (const float *)w->data + off;
        for (int64_t i = 0; i < n; i++)
            dst[i] = (lc_real)s[i];
        break;
    }
    case LC_DTYPE_F64: {
        const double *s = (const double *)w->data + off;
        for (int64_t i = 0; i < n; i++)
            dst[i] = (lc_real)s[i];
        break;
    }
    case LC_DTYPE_BF16: {
        const uint16_t *s = (const uint16_t *)w->data + off;
        for (int64_t i = 0; i < n; i++)
            dst[i] = (lc_real)lc_bf16_to_f32(s[i]);
        break;
    }
    case LC_DTYPE_F16: {
        const uint16_t *s = (const uint16_t *)w->data + off;
        for (int64_t i = 0; i < n; i++)
            dst[i] = (lc_real)lc_f16_to_f32(s[i]);
        break;
    }
    default:
        LC_ASSERT(!"unsupported frozen weight dtype");
    }
}

/* tensor.h — the two kinds of data autograd works with.
 *
 * lc_tensor: a buffer with a shape and a dtype, living in the step arena (an
 * activation, in the backend's activation dtype) or in the flat parameter
 * store (a trainable LoRA tensor, always lc_real). Only
 * a tensor with requires_grad ever gets a gradient buffer.
 *
 * lc_weight: a frozen base-model matrix [rows = out, cols = in], row-major,
 * kept in the dtype it was loaded in (F32, F16, BF16), or packed: NF4
 * (nf4.h) or a GGUF file's ggml type (ggml_weight.h). It is never a tensor
 * and never has a gradient: by construction no memory or time is spent on
 * gradients of the base model. Kernels convert it tile by tile as needed.
 *
 * Shape letters used across autograd/: N tokens (= B·T), B batch rows, T
 * sequence, C hidden, H query heads, KV key/value heads, D head dim, FF MLP
 * width, V vocab, R LoRA rank. */
#ifndef LC_TENSOR_H
#define LC_TENSOR_H

#include <stdbool.h>
#include <stdint.h>

#include "autograd/dtype.h"
#include "autograd/real.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LC_MAX_DIMS 4

/* The dtype lc_real is (F64 in the gradient-check build). */
#define LC_DTYPE_REAL (LC_REAL_IS_F64 ? LC_DTYPE_F64 : LC_DTYPE_F32)

typedef struct lc_tensor {
    lc_real *data;             /* [numel] of dtype */
    lc_real *grad;             /* [numel] of dtype; NULL until first needed */
    lc_dtype dtype;            /* LC_DTYPE_REAL (a parameter, always), or the tape
                                * backend's activation dtype (an activation) */
    int64_t shape[LC_MAX_DIMS];
    int ndim;
    int64_t numel;
    bool requires_grad;
    bool is_param;             /* grad buffer owned by the parameter store */
    int64_t grad_capacity;     /* elements of the pooled grad buffer */
} lc_tensor;

struct lc_nf4;
struct lc_ggml_weight;

typedef struct lc_weight {
    const void *data;          /* [rows, cols] in dtype (unused when nf4 or ggml) */
    lc_dtype dtype;            /* F32, F16 or BF16: as stored (or before quantization) */
    int64_t rows, cols;
    const struct lc_nf4 *nf4;  /* non-NULL: 4-bit NormalFloat, see nf4.h */
    const struct lc_ggml_weight *ggml; /* non-NULL: a GGUF tensor in its ggml type */
} lc_weight;

/* Rows (product of all dims but the last) and the last dim. */
static inline int64_t lc_tensor_rows(const lc_tensor *t)
{
    return t->ndim ? t->numel / t->shape[t->ndim - 1] : 1;
}
static inline int64_t lc_tensor_cols(const lc_tensor *t)
{
    return t->ndim ? t->shape[t->ndim - 1] : 1;
}

/* Fills shape/ndim/numel (data and grad untouched). */
void lc_tensor_set_shape(lc_tensor *t, int ndim, const int64_t *shape);

/* Bytes w occupies as held: NF4 codes and scales, ggml blocks, or rows·cols
 * elements of its dtype. */
double lc_weight_bytes(const lc_weight *w);

/* Converts rows [r0, r1) of w into dst (row-major, cols wide) as lc_real. */
void lc_weight_rows_to_real(const lc_weight *w, int64_t r0, int64_t r1, lc_real *dst);

#ifdef __cplusplus
}
#endif

#endif

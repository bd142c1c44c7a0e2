/* real.h — the scalar type of activations, gradients and trainable tensors.
 *
 * lc_real is float in lorac itself. The test suite compiles autograd/ a second
 * time with LC_REAL_DOUBLE so every op's backward can be checked against
 * central finite differences in double precision, where the check is exact
 * enough to catch small mistakes (a finite difference in f32 cannot). */
#ifndef LC_REAL_H
#define LC_REAL_H

#include <cblas.h>

#ifdef LC_REAL_DOUBLE
typedef double lc_real;
#define LC_GEMM cblas_dgemm
#define LC_GEMV cblas_dgemv
#define LC_EXP exp
#define LC_LOG log
#define LC_TANH tanh
#define LC_REAL_IS_F64 1
#else
typedef float lc_real;
#define LC_GEMM cblas_sgemm
#define LC_GEMV cblas_sgemv
#define LC_EXP lc_expf
#define LC_LOG logf
#define LC_TANH lc_tanhf
#define LC_REAL_IS_F64 0
#endif

#if !LC_REAL_IS_F64
#include <math.h>
#include <stdint.h>
/* exp for float that the compiler can vectorise (libm's expf is a call per
 * element): range reduction x = n·ln2 + r with |r| ≤ ln2/2 (ln2 split in two
 * for exactness), a degree-7 Taylor polynomial for e^r (relative error
 * < 1e-8 there, so the result is within ~1 ulp), and 2^n built in the
 * exponent bits. Inputs are clamped to the finite range; −inf gives 0.
 * Written without branches or libm calls so loops over it vectorise. */
static inline float lc_expf(float x)
{
    x = x > -104.0f ? x : -104.0f; /* (NaN stays NaN through the next line) */
    x = x < 88.5f ? x : 88.5f;
    /* n = round(x / ln2) by the 1.5·2^23 trick: no libm call, vectorises */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693145751953125f;
    r = r - n * 1.42860682030941723212e-6f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    /* 2^n in two halves so n < −126 (subnormal results) stays exact */
    int32_t ni = (int32_t)n;
    int32_t n1 = ni >> 1, n2 = ni - n1;
    union { uint32_t u; float f; } s1 = {(uint32_t)(n1 + 127) << 23},
                                   s2 = {(uint32_t)(n2 + 127) << 23};
    return p * s1.f * s2.f;
}

/* tanh for float that the compiler can vectorise (libm's tanhf is a call per
 * element: logit soft-capping and GeGLU take one per element, which made
 * soft-capped attention 3x slower than without). |x| ≥ 0.3: (1 − e)/(1 + e)
 * with e = lc_expf(−2|x|), free of cancellation there; |x| < 0.3: the Taylor
 * series to x⁹ (the next term is < 6e-8 of the value). Within a few ulp
 * over the whole range (tests/test_real.c); NaN stays NaN. */
static inline float lc_tanhf(float x)
{
    float a = fabsf(x);
    float e = lc_expf(-2.0f * a);
    float big = (1.0f - e) / (1.0f + e);
    float a2 = a * a;
    float small = a * (1.0f + a2 * (-1.0f / 3.0f + a2 * (2.0f / 15.0f + a2 * (-17.0f / 315.0f +
                                                                         a2 * (62.0f / 2835.0f)))));
    big = a == a ? big : a; /* NaN: lc_expf would clamp it */
    return copysignf(a < 0.3f ? small : big, x);
}
#endif

#endif

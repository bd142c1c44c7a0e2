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
#define LC_EXP exp
#define LC_LOG log
#define LC_REAL_IS_F64 1
#else
typedef float lc_real;
#define LC_GEMM cblas_sgemm
#define LC_EXP expf
#define LC_LOG logf
#define LC_REAL_IS_F64 0
#endif

#endif

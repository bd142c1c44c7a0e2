/* test_real.c — the vectorisable float math of autograd/real.h (lc_expf,
 * lc_tanhf) against libm in double, over a dense grid of their range.
 *
 * The f32 kernels use these instead of libm (attention's softmax, logit
 * soft-capping, GeGLU); the gradient checks run the f64 build, which uses
 * libm, so this is where their accuracy is pinned. Bounds are in units of
 * the float ulp of the exact value, about 3x what is measured. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <math.h>

#include "autograd/real.h"

/* |got − want| in ulps of want (as a float; subnormal-safe via nextafter). */
static double ulps(float got, double want)
{
    float w = (float)want;
    double ulp = (double)nextafterf(fabsf(w), INFINITY) - (double)fabsf(w);
    return fabs((double)got - want) / ulp;
}

Test(real, tanhf_within_a_few_ulp)
{
    double worst = 0, at = 0;
    for (int i = -2000000; i <= 2000000; i++) {
        float x = (float)i * 1e-5f; /* [−20, 20] in steps of 1e-5, both branches and the seam */
        double u = ulps(lc_tanhf(x), tanh((double)x));
        if (u > worst)
            worst = u, at = x;
    }
    static const float tiny[] = {1e-30f, -1e-20f, 1e-8f, -3e-4f, 0.29999998f, 0.3f, 0.30000001f};
    for (size_t i = 0; i < sizeof tiny / sizeof tiny[0]; i++) {
        double u = ulps(lc_tanhf(tiny[i]), tanh((double)tiny[i]));
        if (u > worst)
            worst = u, at = tiny[i];
    }
    cr_log_info("lc_tanhf: worst %.2f ulp at x = %.9g", worst, at);
    cr_expect_leq(worst, 6.0, "lc_tanhf: %.2f ulp at x = %.9g", worst, at);
    cr_expect_eq(lc_tanhf(0.0f), 0.0f);
    cr_expect(signbit(lc_tanhf(-0.0f)));
    cr_expect_eq(lc_tanhf(100.0f), 1.0f);
    cr_expect_eq(lc_tanhf(-INFINITY), -1.0f);
    cr_expect(isnan(lc_tanhf(NAN)));
}

Test(real, expf_within_a_few_ulp)
{
    double worst = 0, at = 0;
    for (int i = -870000; i <= 880000; i++) {
        float x = (float)i * 1e-4f; /* [−87, 88]: normal results */
        double u = ulps(lc_expf(x), exp((double)x));
        if (u > worst)
            worst = u, at = x;
    }
    cr_log_info("lc_expf: worst %.2f ulp at x = %.9g", worst, at);
    cr_expect_leq(worst, 4.0, "lc_expf: %.2f ulp at x = %.9g", worst, at);
    cr_expect_eq(lc_expf(-INFINITY), 0.0f);
}

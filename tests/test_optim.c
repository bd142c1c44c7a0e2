/* test_optim.c — AdamW, gradient clipping and lr schedules against the
 * values torch and transformers compute (reference numbers from torch 2.15
 * torch.optim.AdamW / clip_grad_norm_ and transformers 5.24's
 * get_{constant,linear,cosine,cosine_with_min_lr}_schedule_with_warmup, lr
 * 2e-4, warmup 3, 10 training steps, read at steps 0..11). */
#include <criterion/criterion.h>
#include <math.h>

#include "optim/adamw.h"

static void expect_close(double got, double want, double rel, const char *what, int i)
{
    double tol = rel * fmax(fabs(want), 1e-12);
    cr_expect(fabs(got - want) <= tol, "%s[%d]: %.17g vs %.17g", what, i, got, want);
}

Test(optim, lr_schedules_equal_transformers)
{
    const double constant[12] = {0.0, 6.666666666666667e-05, 0.00013333333333333334, 0.0002,
                                 0.0002, 0.0002, 0.0002, 0.0002, 0.0002, 0.0002, 0.0002, 0.0002};
    const double linear[12] = {0.0, 6.666666666666667e-05, 0.00013333333333333334, 0.0002,
                               0.00017142857142857143, 0.00014285714285714287,
                               0.00011428571428571428, 8.571428571428571e-05,
                               5.714285714285714e-05, 2.857142857142857e-05, 0.0, 0.0};
    const double cosine[12] = {0.0, 6.666666666666667e-05, 0.00013333333333333334, 0.0002,
                               0.0001900968867902419, 0.00016234898018587337,
                               0.00012225209339563145, 7.774790660436858e-05,
                               3.7651019814126654e-05, 9.903113209758096e-06, 0.0,
                               9.903113209758086e-06};
    const double cosmin[12] = {0.0, 6.666666666666667e-05, 0.00013333333333333334, 0.0002,
                               0.00019108719811121772, 0.00016611408216728603,
                               0.00013002688405606828, 8.997311594393172e-05,
                               5.3885917832713996e-05, 2.891280188878229e-05, 2e-05,
                               2.891280188878228e-05};
    for (int i = 0; i < 12; i++) {
        expect_close(lc_lr_at(LC_LR_CONSTANT, 2e-4, i, 3, 10, 0), constant[i], 1e-12, "constant", i);
        expect_close(lc_lr_at(LC_LR_LINEAR, 2e-4, i, 3, 10, 0), linear[i], 1e-12, "linear", i);
        double c = lc_lr_at(LC_LR_COSINE, 2e-4, i, 3, 10, 0);
        if (cosine[i] == 0.0)
            cr_expect(fabs(c) < 1e-20, "cosine[%d] = %g", i, c);
        else
            expect_close(c, cosine[i], 1e-12, "cosine", i);
        expect_close(lc_lr_at(LC_LR_COSINE, 2e-4, i, 3, 10, 0.1), cosmin[i], 1e-12, "cosmin", i);
    }
}

Test(optim, adamw_three_steps_equal_torch)
{
    float p[4] = {0.5f, -1.0f, 2.0f, 0.0f};
    const float g[3][4] = {{0.1f, -0.2f, 0.3f, 0.0f}, {1.0f, 0.5f, -0.5f, 0.25f},
                           {-0.3f, 0.0f, 0.2f, 1.0f}};
    lc_adamw opt;
    lc_error err;
    cr_assert_eq(lc_adamw_init(&opt, 4, &err), 0);
    lc_adamw_hparams hp = {0.9, 0.999, 1e-8, 0.1};
    for (int s = 0; s < 3; s++)
        lc_adamw_update(&opt, p, g[s], &hp, 1e-2);
    const double want_p[4] = {0.4763089120388031, -0.9948590993881226, 1.9870314598083496,
                              -0.015025967732071877};
    const double want_m[4] = {0.06810000538825989, 0.0287999976426363, -0.0006999954930506647,
                              0.12250000238418579};
    const double want_v[4] = {0.001098979962989688, 0.0002896700461860746,
                              0.00037957014865241945, 0.0010624375427141786};
    /* float rounding (torch fuses some multiply-adds) differs in the last
     * bits: compare each element to 1e-6 of its vector's largest value */
    const double *want[3] = {want_p, want_m, want_v};
    const float *got[3] = {p, opt.m, opt.v};
    const char *what[3] = {"param", "exp_avg", "exp_avg_sq"};
    for (int k = 0; k < 3; k++) {
        double scale = 0;
        for (int i = 0; i < 4; i++)
            scale = fmax(scale, fabs(want[k][i]));
        for (int i = 0; i < 4; i++)
            cr_expect(fabs(got[k][i] - want[k][i]) <= 1e-6 * scale, "%s[%d]: %.9g vs %.9g",
                      what[k], i, got[k][i], want[k][i]);
    }
    cr_expect_eq(opt.step, 3);
    lc_adamw_free(&opt);
}

Test(optim, clip_grad_norm_equals_torch)
{
    float g[2] = {3.0f, 4.0f};
    double n = lc_grad_clip(g, 2, 1.0);
    cr_expect_float_eq(n, 5.0, 1e-12);
    expect_close(g[0], 0.5999999046325684, 1e-7, "clipped", 0);
    expect_close(g[1], 0.7999998331069946, 1e-7, "clipped", 1);
    float h[2] = {0.3f, 0.4f}; /* norm 0.5 < 1: untouched */
    cr_expect_float_eq(lc_grad_clip(h, 2, 1.0), 0.5, 1e-7);
    cr_expect_eq(h[0], 0.3f);
    cr_expect_eq(h[1], 0.4f);
}

/* Parameter groups (LoRA+): a span learning at k x lr takes exactly the
 * steps a separate optimizer at k x lr takes, the others those at lr; spans
 * that do not tile the buffer are refused. */
Test(optim, lr_spans_are_separate_groups)
{
    enum { N = 200000, SPLIT = 70001 }; /* above the parallel threshold */
    static lc_real p_all[N], p_a[SPLIT], p_b[N - SPLIT], g[N];
    for (int i = 0; i < N; i++) {
        p_all[i] = (lc_real)sin(0.37 * i);
        g[i] = (lc_real)(cos(1.3 * i) * (i % 7 == 0 ? 1e-9 : 1e-2));
    }
    for (int i = 0; i < SPLIT; i++)
        p_a[i] = p_all[i];
    for (int i = SPLIT; i < N; i++)
        p_b[i - SPLIT] = p_all[i];
    lc_adamw_hparams hp = {0.9, 0.999, 1e-8, 0.01};
    lc_adamw all, a, b;
    lc_error err;
    cr_assert_eq(lc_adamw_init(&all, N, &err), 0);
    cr_assert_eq(lc_adamw_init(&a, SPLIT, &err), 0);
    cr_assert_eq(lc_adamw_init(&b, N - SPLIT, &err), 0);
    lc_adamw_span bad[2] = {{0, SPLIT, 1.0}, {SPLIT + 1, N, 16.0}};
    cr_assert_neq(lc_adamw_set_spans(&all, bad, 2, &err), 0);
    cr_log_info("%s", err.msg);
    lc_adamw_span short_[1] = {{0, SPLIT, 1.0}};
    cr_assert_neq(lc_adamw_set_spans(&all, short_, 1, &err), 0);
    lc_adamw_span zero[2] = {{0, SPLIT, 1.0}, {SPLIT, N, 0.0}};
    cr_assert_neq(lc_adamw_set_spans(&all, zero, 2, &err), 0);
    lc_adamw_span spans[2] = {{0, SPLIT, 1.0}, {SPLIT, N, 16.0}};
    cr_assert_eq(lc_adamw_set_spans(&all, spans, 2, &err), 0, "%s", err.msg);
    for (int step = 0; step < 3; step++) {
        lc_adamw_update(&all, p_all, g, &hp, 1e-3);
        lc_adamw_update(&a, p_a, g, &hp, 1e-3);
        lc_adamw_update(&b, p_b, g + SPLIT, &hp, 1e-3 * 16.0);
    }
    for (int i = 0; i < N; i++) {
        lc_real want = i < SPLIT ? p_a[i] : p_b[i - SPLIT];
        cr_assert_eq(p_all[i], want, "value %d: %.9g vs %.9g", i, (double)p_all[i], (double)want);
    }
    lc_adamw_free(&all);
    lc_adamw_free(&a);
    lc_adamw_free(&b);
}

/* test_sampler.c — train/sampler.h on fixed logits: greedy (ties to the
 * lowest id), top-k and top-p keep exactly the tokens their definitions
 * (HF's TopKLogitsWarper / TopPLogitsWarper) say — ties at the k-th value,
 * k ≥ V, k = 1, p = 1, p small, ties inside the top-p set — temperature
 * scales, the draws of many seeds follow the probabilities (a chi-square
 * bound), and the same seed draws the same sequence. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "train/sampler.h"

static lc_sampler make(int64_t V, double temp, int64_t k, double p, uint64_t seed)
{
    lc_sampler s;
    lc_error err;
    lc_sampler_opts o = {.temperature = temp, .top_k = k, .top_p = p, .seed = seed};
    cr_assert_eq(lc_sampler_init(&s, V, &o, &err), 0, "%s", err.msg);
    return s;
}

/* The kept set of the last lc_sampler_probs as a 0/1 string over the ids. */
static void kept_in(const lc_sampler *s, char *out, size_t cap)
{
    size_t i = 0;
    for (; i < (size_t)s->V && i + 1 < cap; i++)
        out[i] = s->p[i] > 0 ? '1' : '0';
    out[i] = 0;
}
#define kept(s, out) kept_in(s, out, sizeof out)

Test(sampler, greedy_ties_lowest_id)
{
    const lc_real x[6] = {0.5f, 2.0f, -1.0f, 2.0f, 1.9f, 2.0f};
    cr_expect_eq(lc_sampler_argmax(x, 6), 1);
    const lc_real y[3] = {NAN, 1.0f, 0.0f};
    cr_expect_eq(lc_sampler_argmax(y, 3), 1);
    lc_sampler s = make(6, 0, 0, 1, 0);
    for (uint64_t step = 0; step < 10; step++)
        cr_expect_eq(lc_sampler_next(&s, x, step), 1);
    lc_sampler_probs(&s, x);
    cr_expect_eq(s.n_kept, 1);
    cr_expect_eq(s.p[1], 1.0);
    lc_sampler_free(&s);
}

Test(sampler, top_k)
{
    const lc_real x[6] = {1.0f, 3.0f, 2.0f, 2.0f, 0.0f, 5.0f};
    char k[8];
    lc_sampler s = make(6, 1, 1, 1, 0); /* k = 1: only the max */
    lc_sampler_probs(&s, x);
    kept(&s, k);
    cr_expect_str_eq(k, "000001");
    lc_sampler_free(&s);
    s = make(6, 1, 3, 1, 0); /* the 3rd largest is 2.0, tied: both 2.0 stay (HF: >= kth) */
    lc_sampler_probs(&s, x);
    kept(&s, k);
    cr_expect_str_eq(k, "011101");
    cr_expect_eq(s.n_kept, 4);
    double z = exp(3.0) + 2 * exp(2.0) + exp(5.0);
    cr_expect(fabs(s.p[5] - exp(5.0) / z) < 1e-12);
    cr_expect(fabs(s.p[2] - exp(2.0) / z) < 1e-12);
    lc_sampler_free(&s);
    s = make(6, 1, 2, 1, 0);
    lc_sampler_probs(&s, x);
    kept(&s, k);
    cr_expect_str_eq(k, "010001");
    lc_sampler_free(&s);
    s = make(6, 1, 100, 1, 0); /* k > V: all */
    lc_sampler_probs(&s, x);
    kept(&s, k);
    cr_expect_str_eq(k, "111111");
    double sum = 0;
    for (int i = 0; i < 6; i++)
        sum += s.p[i];
    cr_expect(fabs(sum - 1) < 1e-12);
    lc_sampler_free(&s);
}

Test(sampler, top_p)
{
    /* probabilities 0.5, 0.25, 0.125, 0.125 (ids 2, 0, 1, 3) */
    const lc_real x[4] = {(lc_real)log(0.25), (lc_real)log(0.125), (lc_real)log(0.5),
                          (lc_real)log(0.125)};
    char k[8];
    /* HF: sort ascending (the tied 0.125s: id 3 first, as lorac ranks the lower id
     * higher), cumsum 0.125, 0.25, 0.5, 1.0, remove the tokens whose cumsum <= 1 - p */
    struct { double p; const char *keep; } cases[] = {
        {1.0, "1111"},   /* p = 1: everything */
        {0.3, "0010"},   /* 0.5 alone reaches 0.3 */
        {0.45, "0010"},
        {0.6, "1010"},   /* 0.5 + 0.25 */
        {0.7, "1010"},
        {0.8, "1110"},   /* one of the tied 0.125s: the lower id */
        {0.9, "1111"},
        {1e-9, "0010"},  /* always at least one */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        lc_sampler s = make(4, 1, 0, cases[c].p, 0);
        lc_sampler_probs(&s, x);
        kept(&s, k);
        cr_expect_str_eq(k, cases[c].keep, "top_p %g", cases[c].p);
        double sum = 0;
        for (int i = 0; i < 4; i++)
            sum += s.p[i];
        cr_expect(fabs(sum - 1) < 1e-12, "top_p %g: kept mass renormalised", cases[c].p);
        lc_sampler_free(&s);
    }
    /* top-k then top-p: k = 2 leaves 2/3, 1/3; p = 0.6 keeps the first only */
    lc_sampler s = make(4, 1, 2, 0.6, 0);
    lc_sampler_probs(&s, x);
    kept(&s, k);
    cr_expect_str_eq(k, "0010");
    lc_sampler_free(&s);
}

Test(sampler, temperature_scales)
{
    const lc_real x[3] = {1.0f, 2.0f, 3.0f};
    lc_sampler s = make(3, 0.5, 0, 1, 0);
    lc_sampler_probs(&s, x);
    double z = exp(2.0) + exp(4.0) + exp(6.0);
    for (int i = 0; i < 3; i++)
        cr_expect(fabs(s.p[i] - exp(2.0 * (i + 1)) / z) < 1e-12);
    lc_sampler_free(&s);
}

Test(sampler, draws_follow_probabilities)
{
    /* 5 tokens, top-k 4 drops the least likely; 40000 draws (one per seed) */
    const lc_real x[5] = {0.0f, 1.0f, -0.5f, 0.7f, -3.0f};
    const int n = 40000;
    lc_sampler s = make(5, 1, 4, 1, 0);
    lc_sampler_probs(&s, x);
    double p[5];
    memcpy(p, s.p, sizeof p);
    int count[5] = {0};
    for (int seed = 0; seed < n; seed++) {
        s.o.seed = (uint64_t)seed;
        count[lc_sampler_next(&s, x, 0)]++;
    }
    cr_expect_eq(count[4], 0, "a filtered token was drawn");
    double chi2 = 0;
    for (int i = 0; i < 4; i++)
        chi2 += (count[i] - n * p[i]) * (count[i] - n * p[i]) / (n * p[i]);
    /* 3 degrees of freedom: P(chi2 > 16.27) = 0.001 */
    cr_expect_lt(chi2, 16.27, "chi-square %g over 3 dof (counts %d %d %d %d)", chi2, count[0],
                 count[1], count[2], count[3]);
    /* and over the steps of one seed */
    memset(count, 0, sizeof count);
    s.o.seed = 12345;
    for (int step = 0; step < n; step++)
        count[lc_sampler_next(&s, x, (uint64_t)step)]++;
    chi2 = 0;
    for (int i = 0; i < 4; i++)
        chi2 += (count[i] - n * p[i]) * (count[i] - n * p[i]) / (n * p[i]);
    cr_expect_lt(chi2, 16.27, "chi-square over steps %g", chi2);
    lc_sampler_free(&s);
}

Test(sampler, same_seed_same_sequence)
{
    lc_real x[64];
    for (int i = 0; i < 64; i++)
        x[i] = (lc_real)sin(i * 1.7);
    int32_t a[50], b[50], c[50];
    lc_sampler s = make(64, 1.3, 20, 0.9, 7);
    for (int i = 0; i < 50; i++)
        a[i] = lc_sampler_next(&s, x, (uint64_t)i);
    for (int i = 0; i < 50; i++)
        b[i] = lc_sampler_next(&s, x, (uint64_t)i);
    s.o.seed = 8;
    for (int i = 0; i < 50; i++)
        c[i] = lc_sampler_next(&s, x, (uint64_t)i);
    cr_expect_arr_eq(a, b, sizeof a, "same seed, same draws");
    cr_expect(memcmp(a, c, sizeof a) != 0, "another seed draws otherwise");
    lc_sampler_free(&s);
}

Test(sampler, bad_options)
{
    lc_sampler s;
    lc_error err;
    lc_sampler_opts bad[] = {{.temperature = -1, .top_p = 1}, {.temperature = 1, .top_p = 0},
                             {.temperature = 1, .top_p = 1.5}, {.temperature = 1, .top_k = -2,
                             .top_p = 1}, {.temperature = INFINITY, .top_p = 1}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(lc_sampler_init(&s, 10, &bad[i], &err), -1, "case %zu", i);
}

/* lc_sim_structs.h (tests/cuda_sim/include/) — the device pointers inside
 * the structs the backend passes to kernels by value, checked at launch like
 * pointer arguments (lc_sim_check_inner, found by argument-dependent lookup
 * from lc_sim_launcher). gen.py includes this file after cuda_common.cuh
 * (lc_dweight) and again after `struct mt_args {...};` (cuda_optim.cu) and
 * `struct attn_args {...};` (cuda_attention.cu), defining LC_SIM_HAVE_<name>.
 * A new struct-of-pointers kernel argument needs its check here. */
#include <cstdint>

#ifndef LC_SIM_STRUCTS_WEIGHT
#define LC_SIM_STRUCTS_WEIGHT
/* only the pointers the weight uses (the others may be stale) */
inline void lc_sim_check_inner(const char *k, int i, const lc_dweight &w)
{
    if (!w.is_nf4) {
        lc_sim_check_arg(k, i, w.data);
        return;
    }
    const void *p[] = {w.nf4.codes, w.nf4.absmax, w.nf4.absmax_q, w.nf4.nested_absmax, w.nf4.nested_map};
    for (const void *q : p)
        lc_sim_check_arg(k, i, q);
}
#endif

#if defined(LC_SIM_HAVE_mt_args) && !defined(LC_SIM_STRUCTS_MT)
#define LC_SIM_STRUCTS_MT
/* the multi-tensor launches: the first count tensors' p / g / m / v */
inline void lc_sim_check_inner(const char *k, int i, const mt_args &a)
{
    if (a.count < 1 || a.count > MT_MAX) {
        fprintf(stderr, "lc_sim: kernel %s argument %d: mt_args.count %d outside 1..%d\n", k, i,
                a.count, MT_MAX);
        abort();
    }
    for (int t = 0; t < a.count; t++) {
        lc_sim_check_arg(k, i, a.p[t]);
        lc_sim_check_arg(k, i, a.g[t]);
        lc_sim_check_arg(k, i, a.m[t]);
        lc_sim_check_arg(k, i, a.v[t]);
    }
}
#endif

#if defined(LC_SIM_HAVE_attn_args) && !defined(LC_SIM_STRUCTS_ATTN)
#define LC_SIM_STRUCTS_ATTN
/* the segment ids (NULL without packing) */
inline void lc_sim_check_inner(const char *k, int i, const attn_args &a) { lc_sim_check_arg(k, i, a.seg); }
#endif

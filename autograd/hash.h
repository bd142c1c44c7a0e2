/* hash.h — the counter-based hashes lorac draws all its randomness from:
 * splitmix64 (LoRA init, random weights, data shuffling, dropout seeds) and
 * a 32-bit finaliser for dropout masks. Counter-based means a value depends
 * only on (seed, position): the CPU and CUDA backends draw the same dropout
 * mask, and a recomputed or resumed step draws what the original drew.
 * Header-only so .cu files share the exact code (LC_HOSTDEV). */
#ifndef LC_HASH_H
#define LC_HASH_H

#include <stdint.h>

#ifdef __CUDACC__
#define LC_HOSTDEV __host__ __device__ __forceinline__
#else
#define LC_HOSTDEV static inline
#endif

/* splitmix64 of z (one output of the generator whose state was z). */
LC_HOSTDEV uint64_t lc_splitmix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The generator's state advances by this each draw. */
#define LC_RNG_GAMMA 0x9e3779b97f4a7c15ull

/* Next value of the splitmix64 generator with state *s. */
LC_HOSTDEV uint64_t lc_rng_next(uint64_t *s)
{
    uint64_t r = lc_splitmix64(*s);
    *s += LC_RNG_GAMMA;
    return r;
}

/* The state of a generator that started at s0 after i draws: draw i of a
 * stream can be made without the i before it (parallel fills). */
LC_HOSTDEV uint64_t lc_rng_at(uint64_t s0, uint64_t i) { return s0 + i * LC_RNG_GAMMA; }

/* Uniform double in [0, 1) from the generator. */
LC_HOSTDEV double lc_rng_uniform(uint64_t *s)
{
    return (double)(lc_rng_next(s) >> 11) * 0x1.0p-53;
}

/* h folded with the NUL-terminated text s (identities of runs and inputs,
 * not randomness). */
LC_HOSTDEV uint64_t lc_hash_text(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = lc_splitmix64(h ^ (unsigned char)*s);
    return lc_splitmix64(h ^ 0x0a);
}

/* lowbias32 finaliser: cheap, vectorisable 32-bit counter hash. */
LC_HOSTDEV uint32_t lc_hash32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

#endif

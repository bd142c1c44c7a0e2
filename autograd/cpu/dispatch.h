/* dispatch.h — choosing the CPU kernels for the machine lorac runs on.
 *
 * A lorac binary must run on any x86-64 CPU from x86-64-v2 (SSE4.2, 2009)
 * on and still use AVX2 or AVX-512 where the CPU has them. The hot loops
 * (cpu/kernels_cpu.c) are therefore compiled once per level into a table of
 * function pointers (an lc_kernels table), and the kernels.h functions call into
 * the table chosen once, at first use, from CPUID: the best level the CPU
 * and OS support, or the one LORAC_CPU_ISA names (to force the baseline
 * under valgrind or to test the fallback). The rest of lorac is compiled
 * for the baseline. A build configured with -DLORAC_NATIVE=ON has one
 * variant, "native" (-march=native), for local use only.
 *
 * Each variant is one lc_kernels table (backend.h), whose fields take their
 * types from the kernels.h declarations: a signature is written once and
 * every variant is checked against it. */
#ifndef LC_CPU_DISPATCH_H
#define LC_CPU_DISPATCH_H

#include <stdbool.h>

#include "autograd/error.h"
#include "autograd/backend.h"

/* A frozen weight in another dtype than lc_real (or packed) is converted
 * this many elements at a time, a tile of whole rows (1 MiB of f32: stays
 * in L2), by the f32 and the bf16 weight kernels alike. */
#define LC_CPU_WEIGHT_TILE_ELEMS (1 << 18)
static inline int64_t lc_cpu_weight_tile_rows(const lc_weight *W)
{
    int64_t r = LC_CPU_WEIGHT_TILE_ELEMS / (W->cols ? W->cols : 1);
    if (r < 1)
        r = 1;
    return r < W->rows ? r : W->rows;
}

/* A scratch buffer that only grows; its contents are not kept when it does.
 * Freed never: it stays reachable until exit. */
typedef struct lc_grow_buf {
    void *p;
    size_t bytes;
} lc_grow_buf;
/* b's memory, at least `bytes` long; NULL when out of memory (b is then
 * empty). */
void *lc_grow(lc_grow_buf *b, size_t bytes);

/* Overwrites the compute entries of k with no-ops (kernels_dry.c), keeping
 * its size queries: the kernels of a dry run (backend.h lc_backend_dry). */
void lc_kernels_make_dry(lc_kernels *k);

/* The chosen variant's table (chosen on first use, as lc_cpu_isa_select). */
const lc_kernels *lc_cpu_kernels_active(void);
/* The same variant's table with bf16 frozen-weight GEMMs (gemm_bf16.h). */
const lc_kernels *lc_cpu_kernels_active_bf16(void);

/* Environment variable that forces a variant: "auto" (default), a name
 * from lc_cpu_isa_names(), or an alias (baseline, avx2, avx512). */
#define LC_CPU_ISA_ENV "LORAC_CPU_ISA"

/* Chooses the variant now (from LC_CPU_ISA_ENV and CPUID). Fails when the
 * variable names no variant, or one this CPU cannot run. Commands call this
 * first; without the call the first kernel chooses, and a bad variable is
 * then reported on stderr and ignored. Calling it again re-reads the
 * environment (tests use that to switch variants). */
int lc_cpu_isa_select(lc_error *err);

/* The variant in use, e.g. "x86-64-v4", and what it means ("AVX-512"). */
const char *lc_cpu_isa(void);
const char *lc_cpu_isa_desc(void);
/* The best variant this CPU supports (what "auto" picks). */
const char *lc_cpu_isa_best(void);
/* Space-separated names of the variants this binary holds. */
const char *lc_cpu_isa_names(void);
/* The cores' multiply-add throughput in GFLOP/s: independent chains of
 * float32 FMAs (a multiply and an add where the variant has no FMA) in the
 * variant in use's widest vectors, on every OpenMP thread, ~0.2 s. No GEMM
 * can run faster: bench --gemm-peak's hardware ceiling. */
double lc_cpu_fma_peak_gflops(void);

/* True when the variant in use was forced below the best one. */
bool lc_cpu_isa_forced(void);

/* The x86-64 micro-architecture level of this CPU (1–4: x86-64-v1 … -v4,
 * with the OS support of the vector registers), 0 on other architectures. */
int lc_cpu_x86_level(void);

/* Fails with a clear message when this CPU lacks what the baseline needs
 * (the whole binary, not only the kernels, is compiled for it). */
int lc_cpu_check_baseline(lc_error *err);

#endif

/* dispatch.h — choosing the CPU kernels for the machine lorac runs on.
 *
 * A lorac binary must run on any x86-64 CPU from x86-64-v2 (SSE4.2, 2009)
 * on and still use AVX2 or AVX-512 where the CPU has them. The hot loops
 * (cpu/kernels_cpu.c) are therefore compiled once per level into a table of
 * function pointers (lc_cpu_kernels), and the kernels.h functions call into
 * the table chosen once, at first use, from CPUID: the best level the CPU
 * and OS support, or the one LORAC_CPU_ISA names (to force the baseline
 * under valgrind or to test the fallback). The rest of lorac is compiled
 * for the baseline. A build configured with -DLORAC_NATIVE=ON has one
 * variant, "native" (-march=native), for local use only.
 *
 * The table's fields take their types from the kernels.h declarations, so
 * a signature is written once and every variant is checked against it. */
#ifndef LC_CPU_DISPATCH_H
#define LC_CPU_DISPATCH_H

#include <stdbool.h>

#include "autograd/error.h"
#include "autograd/kernels.h"

typedef struct lc_cpu_kernels {
    __typeof__(lc_k_gemm) *gemm;
    __typeof__(lc_k_weight_scratch) *weight_scratch;
    __typeof__(lc_k_weight_matmul) *weight_matmul;
    __typeof__(lc_k_weight_matmul_grad) *weight_matmul_grad;
    __typeof__(lc_k_rmsnorm_fwd) *rmsnorm_fwd;
    __typeof__(lc_k_rmsnorm_bwd) *rmsnorm_bwd;
    __typeof__(lc_k_swiglu_fwd) *swiglu_fwd;
    __typeof__(lc_k_swiglu_bwd) *swiglu_bwd;
    __typeof__(lc_k_geglu_tanh_fwd) *geglu_tanh_fwd;
    __typeof__(lc_k_geglu_tanh_bwd) *geglu_tanh_bwd;
    __typeof__(lc_k_softcap) *softcap;
    __typeof__(lc_k_rope) *rope;
    __typeof__(lc_k_attention_scratch) *attention_scratch;
    __typeof__(lc_k_attention_fwd) *attention_fwd;
    __typeof__(lc_k_attention_bwd) *attention_bwd;
    __typeof__(lc_k_ce_chunk_rows) *ce_chunk_rows;
    __typeof__(lc_k_ce_scratch) *ce_scratch;
    __typeof__(lc_k_lm_head_ce) *lm_head_ce;
    __typeof__(lc_k_embedding) *embedding;
    __typeof__(lc_k_dropout) *dropout;
    __typeof__(lc_k_axpy) *axpy;
    __typeof__(lc_k_dora_norm_scratch) *dora_norm_scratch;
    __typeof__(lc_k_dora_norm) *dora_norm;
    __typeof__(lc_k_dora_combine) *dora_combine;
    __typeof__(lc_k_col_scale) *col_scale;
    __typeof__(lc_k_dora_mag_grad) *dora_mag_grad;
} lc_cpu_kernels;

/* Environment variable that forces a variant: "auto" (default), a name
 * from lc_cpu_isa_names(), or an alias (baseline, avx2, avx512). */
#define LC_CPU_ISA_ENV "LORAC_CPU_ISA"

/* Chooses the variant now (from LC_CPU_ISA_ENV and CPUID). Fails when the
 * variable names no variant, or one this CPU cannot run. Commands call this
 * first; without the call the first kernel chooses, and a bad variable is
 * then reported on stderr and ignored. Calling it again re-reads the
 * environment (tests use that to switch variants). */
int lc_cpu_isa_select(lc_error *err);

/* Dry mode (on: every compute kernel of kernels.h does nothing; the
 * scratch-size queries still answer for the variant in use). The memory
 * plan's dry run (train/memory_plan.h) switches it on around one step whose
 * element memory is never touched. Process-wide: call it only between
 * steps, never from inside a parallel region. */
void lc_cpu_set_dry(bool on);

/* The variant in use, e.g. "x86-64-v4", and what it means ("AVX-512"). */
const char *lc_cpu_isa(void);
const char *lc_cpu_isa_desc(void);
/* The best variant this CPU supports (what "auto" picks). */
const char *lc_cpu_isa_best(void);
/* Space-separated names of the variants this binary holds. */
const char *lc_cpu_isa_names(void);
/* True when the variant in use was forced below the best one. */
bool lc_cpu_isa_forced(void);

/* The x86-64 micro-architecture level of this CPU (1–4: x86-64-v1 … -v4,
 * with the OS support of the vector registers), 0 on other architectures. */
int lc_cpu_x86_level(void);

/* Fails with a clear message when this CPU lacks what the baseline needs
 * (the whole binary, not only the kernels, is compiled for it). */
int lc_cpu_check_baseline(lc_error *err);

#endif

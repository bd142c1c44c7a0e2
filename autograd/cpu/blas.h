/* blas.h — which OpenBLAS kernels run the GEMMs, and making them the right
 * ones.
 *
 * OpenBLAS (DYNAMIC_ARCH builds, as Debian ships) picks its kernel set
 * ("core") from CPUID when the library loads. Versions older than the CPU
 * misidentify it: Debian 12's 0.3.21 runs its SSE3 "Prescott" kernels on
 * Xeons with AVX-512 and AMX, 3–4× slower, and says nothing. lorac compares
 * the core OpenBLAS chose with what CPUID reports and, when OpenBLAS chose
 * a weaker one and the user did not choose one (OPENBLAS_CORETYPE unset),
 * re-executes itself once with OPENBLAS_CORETYPE set (the variable is read
 * only while the library loads, before main). The start-up lines and
 * `lorac --version` name the core in use and why. */
#ifndef LC_CPU_BLAS_H
#define LC_CPU_BLAS_H

#include <stddef.h>

/* Set in the re-executed process: the core OpenBLAS had chosen itself. */
#define LC_BLAS_DETECTED_ENV "LORAC_BLAS_DETECTED"

/* The x86-64 level (2–4) an OpenBLAS core's kernels need: 4 for the
 * AVX-512 cores, 3 for the AVX2 ones, 2 for every older one; −1 for a name
 * this table does not know (it may be newer: left alone). */
int lc_blas_core_level(const char *core);

/* The core to ask for on a CPU of x86 level cpu_level when OpenBLAS chose
 * `current`: NULL when current is fine (or unknown, or nothing better
 * applies). Pure: the decision behind lc_blas_fix_core. */
const char *lc_blas_better_core(const char *current, int cpu_level);

/* Called first in main(): when OPENBLAS_CORETYPE is unset and OpenBLAS
 * chose a core below this CPU's level, sets OPENBLAS_CORETYPE and
 * LC_BLAS_DETECTED_ENV and re-executes /proc/self/exe with argv. Returns
 * when nothing needs doing or the re-exec failed (the start-up line then
 * says so). */
void lc_blas_fix_core(char **argv);

/* The OpenBLAS core in use, e.g. "SkylakeX". */
const char *lc_blas_core(void);

/* One line about the BLAS in use, e.g. "OpenBLAS 0.3.21, SkylakeX kernels,
 * 2 threads" plus how the core was chosen when lorac or the user chose it. */
void lc_blas_describe(char *buf, size_t n);

/* One line about the CPU kernels and the BLAS, printed by every command that
 * computes (train, eval, bench) and by --version:
 * "cpu: x86-64-v4 (AVX-512) kernels; OpenBLAS 0.3.21, SkylakeX kernels, 2 threads". */
void lc_cpu_describe(char *buf, size_t n);

#endif

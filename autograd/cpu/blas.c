/* blas.c — the OpenBLAS core check and re-execution (see blas.h). */
#include "autograd/cpu/blas.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "autograd/cpu/dispatch.h"

/* OpenBLAS's x86-64 core names (as openblas_get_corename spells them,
 * compared without case) and the level their kernels need. Cores not listed
 * with 3 or 4 use SSE/AVX kernels at most. */
static const struct {
    const char *core;
    int level;
} core_levels[] = {
    {"SkylakeX", 4},     {"Cooperlake", 4},  {"SapphireRapids", 4},
    {"Haswell", 3},      {"Zen", 3},         {"Excavator", 3},
    {"Sandybridge", 2},  {"Bulldozer", 2},   {"Piledriver", 2},  {"Steamroller", 2},
    {"Nehalem", 2},      {"Core2", 2},       {"Penryn", 2},      {"Dunnington", 2},
    {"Prescott", 2},     {"Atom", 2},        {"Opteron", 2},     {"Opteron(SSE3)", 2},
    {"Barcelona", 2},    {"Bobcat", 2},      {"Nano", 2},        {"Katmai", 2},
    {"Coppermine", 2},   {"Northwood", 2},   {"Banias", 2},      {"Athlon", 2},
};

/* The core whose kernels fit each level best (what a current OpenBLAS
 * picks for such CPUs). */
static const char *core_for_level(int level)
{
    return level >= 4 ? "SkylakeX" : level == 3 ? "Haswell" : NULL;
}

int lc_blas_core_level(const char *core)
{
    if (!core)
        return -1;
    for (size_t i = 0; i < sizeof core_levels / sizeof core_levels[0]; i++)
        if (strcasecmp(core, core_levels[i].core) == 0)
            return core_levels[i].level;
    return -1;
}

const char *lc_blas_better_core(const char *current, int cpu_level)
{
    const char *want = core_for_level(cpu_level);
    int have = lc_blas_core_level(current);
    if (!want || have < 0 || have >= cpu_level)
        return NULL;
    return want;
}

void lc_blas_fix_core(char **argv)
{
    if (getenv("OPENBLAS_CORETYPE") || getenv(LC_BLAS_DETECTED_ENV))
        return; /* the user's choice, or already re-executed */
    const char *have = openblas_get_corename();
    const char *want = lc_blas_better_core(have, lc_cpu_x86_level());
    if (!want)
        return;
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0)
        return;
    self[len] = '\0';
    if (setenv("OPENBLAS_CORETYPE", want, 1) || setenv(LC_BLAS_DETECTED_ENV, have, 1))
        return;
    fflush(NULL);
    execv(self, argv);
    /* still here: run on with what OpenBLAS chose, and say so */
    unsetenv("OPENBLAS_CORETYPE");
    setenv(LC_BLAS_DETECTED_ENV, "exec-failed", 1);
}

const char *lc_blas_core(void)
{
    const char *core = openblas_get_corename();
    return core ? core : "?";
}

void lc_blas_describe(char *buf, size_t n)
{
    char version[64] = "OpenBLAS";
    const char *config = openblas_get_config();
    if (config) /* "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ...": the first two words */
        sscanf(config, "%*s %54s", version + snprintf(version, sizeof version, "OpenBLAS "));
    const char *core = lc_blas_core();
    int len = snprintf(buf, n, "%s, %s kernels, %d threads", version, core,
                       omp_get_max_threads());
    if (len < 0 || (size_t)len >= n)
        return;
    const char *detected = getenv(LC_BLAS_DETECTED_ENV);
    const char *forced = getenv("OPENBLAS_CORETYPE");
    if (detected && strcmp(detected, "exec-failed") == 0) {
        const char *better = lc_blas_better_core(core, lc_cpu_x86_level());
        snprintf(buf + len, n - (size_t)len, " (slow: this CPU can run %s kernels, and "
                 "re-running lorac with OPENBLAS_CORETYPE set failed)", better ? better : "better");
    } else if (detected && forced) {
        snprintf(buf + len, n - (size_t)len, " (OpenBLAS chose %s for this CPU; lorac set "
                 "OPENBLAS_CORETYPE=%s)", detected, forced);
    } else if (forced) {
        snprintf(buf + len, n - (size_t)len, " (OPENBLAS_CORETYPE=%s from the environment)",
                 forced);
    }
}

void lc_cpu_describe(char *buf, size_t n)
{
    char blas[384];
    lc_blas_describe(blas, sizeof blas);
    snprintf(buf, n, "cpu: %s (%s) kernels%s; %s", lc_cpu_isa(), lc_cpu_isa_desc(),
             lc_cpu_isa_forced() ? ", forced by " LC_CPU_ISA_ENV : "", blas);
}

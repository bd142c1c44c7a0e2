/* bench.h — `lorac bench`: forward + backward + AdamW steps on a random
 * model of a given shape, timed, with peak resident memory. The numbers a
 * benchmark script compares against other trainers. */
#ifndef LC_BENCH_H
#define LC_BENCH_H

#include <stdio.h>

#include "autograd/error.h"

int lc_bench_main(int argc, char **argv, FILE *out, lc_error *err);

#endif

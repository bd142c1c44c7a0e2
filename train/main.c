/* main.c — the lorac command line: the only place that prints errors and
 * chooses exit codes (0 ok, 1 failed, 2 bad usage). */
#include <stdio.h>
#include <string.h>

#include "train/bench.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: lorac <command> [options]\n"
               "commands:\n"
               "  train CONFIG.yaml     fine-tune LoRA adapters\n"
               "  bench [options]       time forward+backward+AdamW on a random model\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    lc_error err = {{0}};
    if (strcmp(argv[1], "bench") == 0) {
        if (lc_bench_main(argc - 2, argv + 2, stdout, &err)) {
            fprintf(stderr, "lorac: %s\n", err.msg);
            return 1;
        }
        return 0;
    }
    fprintf(stderr, "lorac: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}

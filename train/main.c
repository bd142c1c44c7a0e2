/* main.c — the lorac command line: the only place that prints errors and
 * chooses exit codes (0 ok, 1 failed, 2 bad usage). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/bench.h"
#include "train/config.h"
#include "train/trainer.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: lorac <command> [options]\n"
               "commands:\n"
               "  train CONFIG.yaml [--set key=value ...]   fine-tune LoRA adapters\n"
               "  bench [--layers N --hidden N ...]          time forward+backward+AdamW steps\n"
               "                                             on a random model (see --help)\n"
               "run 'lorac <command> --help' for a command's options\n");
}

static void train_usage(FILE *f)
{
    fprintf(f, "usage: lorac train CONFIG.yaml [--set key=value ...]\n"
               "  Trains LoRA adapters as CONFIG.yaml says (keys: configs/README.md).\n"
               "  --set key=value   override a config key (value is YAML: 1e-3, [q_proj,v_proj])\n");
}

static void bench_usage(FILE *f)
{
    fprintf(f, "usage: lorac bench [--hidden 576] [--layers 30] [--heads 9] [--kv-heads 3]\n"
               "                   [--intermediate 1536] [--vocab 49152] [--tied 1] [--rank 16]\n"
               "                   [--batch 4] [--seq 256] [--steps 3] [--warmup 1] [--bf16]\n"
               "  Prints one JSON line: tokens/s, peak RSS, per-step seconds.\n");
}

static bool wants_help(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    return false;
}

static int cmd_train(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        train_usage(stdout);
        return 0;
    }
    if (argc < 1 || argv[0][0] == '-') {
        train_usage(stderr);
        return 2;
    }
    const char *path = argv[0];
    char **sets = calloc((size_t)argc + 1, sizeof *sets);
    int n_sets = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) {
            sets[n_sets++] = argv[++i];
        } else if (strncmp(argv[i], "--set=", 6) == 0) {
            sets[n_sets++] = argv[i] + 6;
        } else {
            fprintf(stderr, "lorac train: unexpected argument '%s'\n", argv[i]);
            train_usage(stderr);
            free(sets);
            return 2;
        }
    }
    lc_error err = {{0}};
    lc_train_config cfg;
    int rc = 0;
    if (lc_train_config_load(&cfg, path, sets, n_sets, &err) != 0 ||
        lc_train_run(&cfg, stderr, &err) != 0) {
        fprintf(stderr, "lorac: %s\n", err.msg);
        rc = 1;
    }
    lc_train_config_free(&cfg);
    free(sets);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "train") == 0)
        return cmd_train(argc - 2, argv + 2);
    if (strcmp(argv[1], "bench") == 0) {
        if (wants_help(argc - 2, argv + 2)) {
            bench_usage(stdout);
            return 0;
        }
        lc_error err = {{0}};
        if (lc_bench_main(argc - 2, argv + 2, stdout, &err)) {
            fprintf(stderr, "lorac: %s\n", err.msg);
            return 2;
        }
        return 0;
    }
    fprintf(stderr, "lorac: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}

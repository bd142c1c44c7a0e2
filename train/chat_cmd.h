/* chat_cmd.h — the `lorac chat` command line: options, usage, exit status,
 * and the REPL (chat_repl.h) over a backend opened from those options.
 *
 *   lorac chat --model DIR [--adapter DIR] [--system TEXT] [--max-new-tokens N]
 *              [--temperature T] [--top-p P] [--top-k K] [--seed S]
 *
 * The generator is not a dependency of this module: the caller hands in
 * lc_chat_backend_ops (how to open a backend from the options, and close it),
 * so the command is tested with a fake generator and wired to the real one in
 * train/main.c:
 *     if (strcmp(argv[1], "chat") == 0)
 *         return lc_chat_main(argc - 2, argv + 2, &lc_generate_chat_ops);
 * Exit status: 0 the session ended (Ctrl-D, /bye), 1 failed (the backend could
 * not be opened; off a terminal also a failed reply), 2 bad usage. */
#ifndef LC_CHAT_CMD_H
#define LC_CHAT_CMD_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "autograd/error.h"
#include "train/chat_repl.h"

/* The options as given. A sampling value that was not given is -1 (seed:
 * has_seed false): the generator then uses its default (e.g. the model's
 * generation_config.json). */
typedef struct lc_chat_opts {
    const char *model_dir;      /* required */
    const char *adapter_dir;    /* NULL: the base model alone */
    const char *system_prompt;  /* NULL: none */
    int64_t max_new_tokens;     /* 1..1<<20, or -1 */
    double temperature;         /* >= 0 (0: greedy), or -1 */
    double top_p;               /* in (0, 1], or -1 */
    int64_t top_k;              /* >= 0 (0: no top-k cut), or -1 */
    bool has_seed;
    uint64_t seed;
} lc_chat_opts;

typedef struct lc_chat_backend_ops {
    /* Loads what opts name (model, adapter, tokenizer, chat template) and
     * fills *b. log: where progress and warnings may go (stderr). 0, or -1
     * with err set (the message names the file or option at fault). */
    int (*open)(const lc_chat_opts *opts, lc_chat_backend *b, FILE *log, lc_error *err);
    /* Frees what open made (called once, only after a successful open). */
    void (*close)(lc_chat_backend *b);
} lc_chat_backend_ops;

/* Parses argv (the arguments after "chat") into *o. 0 ok, 1 --help given
 * (nothing else checked), 2 bad usage (the message printed on err_out). */
int lc_chat_parse_args(int argc, char **argv, lc_chat_opts *o, FILE *err_out);
void lc_chat_usage(FILE *f);

/* The whole command on the given streams: parse, open, REPL, close. Returns
 * the exit status. */
int lc_chat_command(int argc, char **argv, const lc_chat_backend_ops *ops, FILE *in,
                    FILE *out, FILE *err_out);
/* lc_chat_command on stdin, stdout and stderr. */
int lc_chat_main(int argc, char **argv, const lc_chat_backend_ops *ops);

#endif

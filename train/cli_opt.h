/* cli_opt.h — the one rule every lorac command reads "--flag VALUE" and
 * "--flag=VALUE" by. */
#ifndef LC_CLI_OPT_H
#define LC_CLI_OPT_H

#include <stdbool.h>
#include <stdio.h>

/* Matches argv[*i] against flag: 1 with *val set (and *i past the value),
 * 0 when it is another argument, -1 when the value is missing. */
int lc_cli_opt_value(int argc, char **argv, int *i, const char *flag, const char **val);

/* A command's flags as a table: a value flag sets *value, a switch sets *on. */
typedef struct lc_cli_flag {
    const char *name;         /* "--out" */
    const char **value;       /* non-NULL: takes a value */
    bool *on;                 /* non-NULL: a switch */
} lc_cli_flag;

/* Reads every argument of argv by flags[0..n): 0, or 2 after printing
 * "lorac CMD: unknown argument 'X'" / "lorac CMD: --x needs a value" to err. */
int lc_cli_parse(const char *cmd, int argc, char **argv, const lc_cli_flag *flags, int n,
                 FILE *err);

#endif

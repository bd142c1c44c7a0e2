/* cli_opt.h — the one rule every lorac command reads "--flag VALUE" and
 * "--flag=VALUE" by. */
#ifndef LC_CLI_OPT_H
#define LC_CLI_OPT_H

/* Matches argv[*i] against flag: 1 with *val set (and *i past the value),
 * 0 when it is another argument, -1 when the value is missing. */
int lc_cli_opt_value(int argc, char **argv, int *i, const char *flag, const char **val);

#endif

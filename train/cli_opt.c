/* cli_opt.c — "--flag VALUE" / "--flag=VALUE" (see cli_opt.h). */
#include "train/cli_opt.h"

#include <string.h>

int lc_cli_opt_value(int argc, char **argv, int *i, const char *flag, const char **val)
{
    size_t n = strlen(flag);
    if (strncmp(argv[*i], flag, n) != 0)
        return 0;
    if (argv[*i][n] == '=') {
        *val = argv[*i] + n + 1;
        return 1;
    }
    if (argv[*i][n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *val = argv[++*i];
    return 1;
}

int lc_cli_parse(const char *cmd, int argc, char **argv, const lc_cli_flag *flags, int n,
                 FILE *err)
{
    for (int i = 0; i < argc; i++) {
        int k = 0, f = 0;
        for (; f < n && k == 0; f++) {
            if (flags[f].on && strcmp(argv[i], flags[f].name) == 0) {
                *flags[f].on = true;
                k = 1;
            } else if (flags[f].value) {
                k = lc_cli_opt_value(argc, argv, &i, flags[f].name, flags[f].value);
            }
        }
        if (k == 0) {
            fprintf(err, "lorac %s: unknown argument '%s'\n", cmd, argv[i]);
            return 2;
        }
        if (k < 0) {
            fprintf(err, "lorac %s: %s needs a value\n", cmd, argv[i]);
            return 2;
        }
    }
    return 0;
}

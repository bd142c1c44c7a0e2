/* test_eval_progress.c — the progress lines of a long evaluation
 * (lc_eval_progress, train/eval.c), with the time thresholds made tiny so
 * that every micro-batch reports:
 *
 *   lines_and_same_loss   one "eval: k/6 rows" line per micro-batch of one
 *                         row (not a terminal), the last "eval: 6/6 rows";
 *                         as a terminal, lines rewritten in place and the
 *                         line cleared at the end; the loss and token count
 *                         bitwise those of the evaluation without progress. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "train/eval.h"

Test(eval_progress, lines_and_same_loss)
{
    char *model = lc_test_asprintf("%s", lc_test_fixture("tiny-llama/model"));
    char *rows = lc_test_asprintf("%s", lc_test_fixture("tiny-llama/train.jsonl"));
    char *data[1] = {rows};
    lc_eval_opts o = {.model_dir = model, .data = data, .n_data = 1, .seq_len = 40,
                      .micro_batch = 1};
    lc_eval_report plain, with;
    lc_error err = {{0}};
    cr_assert_eq(lc_eval_run(&o, &plain, &err), 0, "%s", err.msg);
    cr_assert_eq(plain.rows, 6);

    for (int tty = 0; tty < 2; tty++) {
        char *dir = lc_test_tmpdir(), *path = lc_test_path_in(dir, "progress.txt");
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f);
        o.progress = (lc_eval_progress){.out = f, .tty = tty, .first_s = 1e-12,
                                        .every_s = 1e-12};
        cr_assert_eq(lc_eval_run(&o, &with, &err), 0, "%s", err.msg);
        fclose(f);
        cr_assert(memcmp(&plain.loss, &with.loss, sizeof plain.loss) == 0,
                  "progress changed the loss: %.17g vs %.17g", plain.loss, with.loss);
        cr_assert_eq(plain.supervised, with.supervised);
        char *text = lc_test_read_file(path, NULL);
        if (!tty) {
            cr_assert_str_eq(text, "eval: 1/6 rows\neval: 2/6 rows\neval: 3/6 rows\n"
                                   "eval: 4/6 rows\neval: 5/6 rows\neval: 6/6 rows\n");
        } else {
            /* rewritten at most every quarter second: the first line at least,
             * and the line cleared at the end */
            cr_assert(strncmp(text, "\r\033[Keval: 1/6 rows", 18) == 0, "%s", text);
            size_t n = strlen(text);
            cr_assert(n >= 4 && strcmp(text + n - 4, "\r\033[K") == 0, "%s", text);
            cr_assert_null(strchr(text, '\n'));
        }
        free(text);
        free(path);
        lc_test_rm_rf(dir);
        free(dir);
    }
    free(model);
    free(rows);
}

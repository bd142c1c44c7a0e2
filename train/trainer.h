/* trainer.h — `lorac train`: the training loop from a parsed config to
 * adapters, metrics and checkpoints (semantics in configs/README.md). */
#ifndef LC_TRAINER_H
#define LC_TRAINER_H

#include <stdio.h>

#include "train/config.h"

/* Runs the whole job. Progress goes to `log`. Returns 0 when training
 * finished, −1 on error, or the number of the signal (SIGINT, SIGTERM,
 * SIGHUP, SIGPIPE) that stopped it once a checkpoint was saved. A second
 * SIGINT, or a stop signal during setup, kills the process by that signal
 * (trainer.c says why). */
int lc_train_run(const lc_train_config *cfg, FILE *log, lc_error *err);

#endif

/* trainer.h — `lorac train`: the training loop from a parsed config to
 * adapters, metrics and checkpoints (semantics in configs/README.md). */
#ifndef LC_TRAINER_H
#define LC_TRAINER_H

#include <stdio.h>

#include "train/config.h"

/* Runs the whole job. Progress goes to `log`. Returns 0 when training
 * finished or was interrupted cleanly (checkpoint saved), −1 on error. */
int lc_train_run(const lc_train_config *cfg, FILE *log, lc_error *err);

#endif

/* trainer.h — `lorac train`: the training loop from a parsed config to
 * adapters, metrics and checkpoints (semantics in configs/README.md). */
#ifndef LC_TRAINER_H
#define LC_TRAINER_H

#include <stdio.h>

#include "train/config.h"
#include "train/model.h"

/* Runs the whole job. Progress goes to `log`. Returns 0 when training
 * finished or was interrupted cleanly (checkpoint saved), −1 on error. */
int lc_train_run(const lc_train_config *cfg, FILE *log, lc_error *err);

/* Mean loss of `lora` on the rows of the JSONL files (unpacked, no
 * shuffle, micro-batches of mb rows up to seq_len). */
int lc_eval_files(const lc_model *m, lc_tape *t, const lc_lora *lora, char *const *paths,
                  int n_paths, int64_t seq_len, int64_t mb, double *loss, int64_t *tokens,
                  lc_error *err);

#endif

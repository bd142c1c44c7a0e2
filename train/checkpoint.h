/* checkpoint.h — resumable training checkpoints.
 *
 * OUTPUT_DIR/checkpoint-N/ holds the adapter as PEFT writes it
 * (adapter_config.json + adapter_model.safetensors, so any checkpoint is
 * usable as-is), optimizer.safetensors (Adam m and v, flat F32) and
 * trainer_state.json (step, data cursor, counters). It is written complete
 * into checkpoint-N.tmp and then renamed, and the directory is fsynced: a
 * crash or SIGKILL at any moment leaves either the old set of checkpoints or
 * the new one, never a half-written checkpoint-N. Pruning to
 * save_total_limit happens only after the new one is in place. */
#ifndef LC_CHECKPOINT_H
#define LC_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "optim/adamw.h"

struct cJSON;
#include "train/lora.h"

typedef struct lc_train_state {
    int64_t step;            /* optimizer steps completed */
    int64_t total_steps;
    int64_t epoch;           /* epoch the data cursor is in */
    int64_t rows_in_epoch;   /* rows of that epoch already consumed */
    int64_t bad_steps;       /* refused (non-finite) steps so far */
    uint64_t seed;
} lc_train_state;

/* Writes OUTPUT_DIR/checkpoint-<step> atomically with the run record run
 * (train/run_record.h) in its trainer_state.json, then prunes the oldest
 * checkpoints of the same run beyond keep (0 = keep all); other runs'
 * checkpoints are never pruned. path_out (may be NULL) gets the final
 * directory. */
int lc_checkpoint_save(const char *output_dir, const lc_lora *lora, const lc_adamw *opt,
                       const lc_train_state *st, const char *base_model, int64_t keep,
                       const struct cJSON *run, char *path_out, size_t path_n, lc_error *err);
/* Loads a checkpoint directory into an initialised lora (same shapes) and
 * opt (same size). *run (when run is not NULL) gets its run record, or NULL
 * when it has none; the caller cJSON_Deletes it. */
int lc_checkpoint_load(const char *dir, lc_lora *lora, lc_adamw *opt, lc_train_state *st,
                       struct cJSON **run, lc_error *err);
/* The run record of checkpoint dir into *run (NULL when it has none). */
int lc_checkpoint_read_run(const char *dir, struct cJSON **run, lc_error *err);
/* Newest complete checkpoint-N in output_dir whose run identity is
 * `identity` (NULL: any): 1 found (path in out), 0 none. */
int lc_checkpoint_latest(const char *output_dir, const char *identity, char *out, size_t n);
/* Newest complete checkpoint-N of another run (identity NULL: any). */
int lc_checkpoint_other(const char *output_dir, const char *identity, char *out, size_t n);
/* Deletes every checkpoint of another run (identity NULL: every one). */
int lc_checkpoint_remove_others(const char *output_dir, const char *identity, lc_error *err);

#endif

/* run_record.h — what defines a training run, as each checkpoint records it.
 *
 * trainer_state.json holds a "run" object: every config key a resume
 * compares (config.h, lc_resume_class) with its value as text, the base
 * model's fingerprint and each dataset's (train/fingerprint.h), and the
 * run's identity: a hash of the FIXED keys and the base model's fingerprint.
 * Checkpoints with the identity of the current configuration are "this
 * run's": pruning and `resume_from_checkpoint: auto` look at those only.
 * The data is deliberately not part of the identity, so that a resume with
 * resume_allow_data_change keeps owning its checkpoints; it is compared
 * separately. */
#ifndef LC_RUN_RECORD_H
#define LC_RUN_RECORD_H

#include <stdbool.h>

#include "train/config.h"
#include "train/fingerprint.h"

struct cJSON;

#define LC_RUN_IDENTITY_CHARS 17  /* 16 hex digits and the NUL */

/* The record of a run configured by cfg (whose lora is the adapter's
 * effective configuration) on model mp and datasets data[n] (paths in
 * cfg->datasets). Each dataset also records how its rows become tokens
 * ("tokenized", or a completion dataset's field and the content hash of
 * the tokenizer.json it is tokenized with: tokenizer, NULL when no dataset
 * is a completion one), so a resume that would read the same file
 * differently counts as changed data. NULL when out of memory. */
struct cJSON *lc_run_record_make(const lc_train_config *cfg, const lc_modelprint *mp,
                                 const lc_fileprint *data, const lc_fileprint *tokenizer);
/* The record's identity, or NULL when it has none. */
const char *lc_run_record_identity(const struct cJSON *rec);

/* Compares saved (the record of checkpoint `where`) with now. A FIXED key,
 * the base model or (unless allow_data) a dataset that differs: −1 with one
 * line naming each difference as "key old -> new". FREE keys that differ
 * are written to changes as "key old -> new" lines (each ending in '\n');
 * with allow_data, changed datasets are listed there too. */
int lc_run_record_check(const struct cJSON *saved, const struct cJSON *now, bool allow_data,
                        const char *where, char *changes, size_t n, lc_error *err);

#endif

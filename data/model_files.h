/* model_files.h — the weight files of a Hugging Face model directory.
 *
 * A model is either DIR/model.safetensors or shards listed by
 * DIR/model.safetensors.index.json ({"weight_map": {tensor: file}}); only
 * weight_map is trusted. Shard names must be plain file names inside DIR (no
 * '/', no "..", not absolute, not a symlink leading out of DIR). Every shard
 * named is opened (and validated) once; every tensor the map names must
 * exist in the shard it is mapped to, and a tensor must not appear in two
 * shards. Lookups go straight to the mapped tensor. */
#ifndef LC_MODEL_FILES_H
#define LC_MODEL_FILES_H

#include <stddef.h>

#include "data/safetensors.h"

typedef struct lc_model_files {
    char *dir;                 /* owned */
    lc_st_file *shards;        /* owned, n_shards of them */
    char **shard_names;        /* owned, file names as in the index */
    size_t n_shards;
} lc_model_files;

int lc_model_files_open(lc_model_files *mf, const char *dir, lc_error *err);
void lc_model_files_close(lc_model_files *mf);

/* The tensor called name, or NULL when no shard has it. */
const lc_st_tensor *lc_model_files_find(const lc_model_files *mf, const char *name);
/* Which shard (index into shards) holds name, or -1. */
int lc_model_files_shard_of(const lc_model_files *mf, const char *name);

#endif

/* fingerprint.h — recognising the files a run reads, later or elsewhere.
 *
 * A run records what it trained on (train/run_record.h) so that a resume can
 * tell whether the data or the base model changed, and watches the same
 * files while it runs so that one replaced or truncated under it is an error
 * rather than something silently re-read (datasets are read again every
 * epoch; model weights are mmapped and read at every step).
 *
 * A file's fingerprint has two parts: its identity on disk (size,
 * modification time, device, inode: one stat, compared while the run goes
 * on) and a hash of its content (compared on resume, so a copy or a touch
 * of the same bytes is still the same data). Datasets are hashed whole.
 * Model files, often many GB, are hashed by sample: their first MiB (the
 * safetensors header with every name, shape and offset, and the first
 * weights), 64 evenly spaced 4 KiB blocks and the last 4 KiB, plus the size.
 * A different model, a truncated, resharded or requantized one changes the
 * sample; an edit of a few weights between samples would not. */
#ifndef LC_FINGERPRINT_H
#define LC_FINGERPRINT_H

#include <stdbool.h>
#include <stdint.h>

#include "autograd/error.h"

typedef struct lc_fileprint {
    int64_t size;
    int64_t mtime_ns;
    uint64_t dev, ino;
    uint64_t hash;          /* content hash (whole file, or sampled) */
} lc_fileprint;

/* Fingerprints a regular file; sampled: hash the sample described above
 * instead of the whole content. */
int lc_fileprint_take(const char *path, bool sampled, lc_fileprint *fp, lc_error *err);
/* 0 when path still has fp's size, mtime, device and inode; otherwise −1
 * with "PATH changed while the run was using it (...)". */
int lc_fileprint_unchanged(const char *path, const lc_fileprint *fp, lc_error *err);

/* The files a model directory is loaded from: config.json and every
 * *.safetensors and *.safetensors.index.json file, sorted by name. */
typedef struct lc_modelprint {
    int n;
    char **paths;           /* owned */
    lc_fileprint *files;    /* sampled hashes */
    uint64_t hash;          /* of every file's name, size and sample */
} lc_modelprint;

int lc_modelprint_take(lc_modelprint *mp, const char *dir, lc_error *err);
/* 0 when no file of the model changed on disk since it was fingerprinted. */
int lc_modelprint_unchanged(const lc_modelprint *mp, lc_error *err);
void lc_modelprint_free(lc_modelprint *mp);

#endif

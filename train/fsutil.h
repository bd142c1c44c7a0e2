/* fsutil.h — small file-system helpers used by the writers and readers:
 * bounded whole-file reads, mkdir -p, and atomic (temp + fsync + rename)
 * writes, so a crash never leaves a half-written file under its final name. */
#ifndef LC_FSUTIL_H
#define LC_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>

#include "autograd/error.h"

/* Reads a whole file (at most max_bytes) into a NUL-terminated malloc'd buffer. */
char *lc_read_file(const char *path, size_t max_bytes, size_t *len, lc_error *err);
/* Reads and parses a JSON file (at most max_bytes) whose top level must be
 * an object; returns it (cJSON_Delete it) or NULL with "PATH: ..." set. */
struct cJSON *lc_read_json_object(const char *path, size_t max_bytes, lc_error *err);
int lc_mkdir_p(const char *path, lc_error *err);
int lc_write_file_atomic(const char *path, const void *data, size_t n, lc_error *err);
/* fsync of a directory, so the renames in it survive a crash (best effort:
 * a file system that cannot sync directories is not an error). */
void lc_fsync_dir(const char *dir);
bool lc_path_exists(const char *path);
bool lc_is_dir(const char *path);

#endif

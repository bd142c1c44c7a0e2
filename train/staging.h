/* staging.h — writing an output directory as a unit.
 *
 * `lorac merge` and `lorac quantize` write their whole output into a
 * staging directory next to it (OUT.lorac-partial-XXXXXX, same file system)
 * and rename it to OUT only when it is complete, so OUT is either absent,
 * the old one, or the new one — never half written. With --force an
 * existing OUT is moved aside first and deleted after the rename; since
 * that deletes a directory the user named, it is allowed only when OUT
 * looks like an earlier output of these commands (only model files in it,
 * no subdirectory) and holds none of the command's inputs: a mistyped
 * --out /tmp or $HOME is refused, not emptied. */
#ifndef LC_STAGING_H
#define LC_STAGING_H

#include <stdbool.h>
#include <stddef.h>

#include "autograd/error.h"

/* Creates OUT's parent if needed and a fresh staging directory next to out
 * (mode 0777 & ~umask) into stage[n]. */
int lc_stage_make(const char *out, char *stage, size_t n, lc_error *err);
/* Renames stage to out; replace: move the existing out aside first and
 * delete it after (put back when the rename fails). */
int lc_stage_finish(const char *stage, const char *out, bool replace, lc_error *err);
/* rm -r path (does not follow symlinks); 0 or −1 with errno. */
int lc_remove_tree(const char *path);
/* True when a is b or a directory above b (both resolved; false when
 * either does not exist). */
bool lc_path_contains(const char *a, const char *b);
/* 0 when --force may replace out: out is a directory (or a link to one)
 * holding only regular files named *.safetensors, *.json, *.model, *.txt,
 * *.jinja or *.tiktoken — what merge and quantize write — and it is not and
 * does not contain any of inputs[n_inputs] (NULL entries skipped); else −1
 * naming what is in the way. what: the option that named out ("--out"). */
int lc_stage_check_replace(const char *out, const char *what, const char *const *inputs,
                           int n_inputs, lc_error *err);

#endif

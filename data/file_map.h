/* file_map.h — a file mapped read-only, for the parsers of untrusted binary
 * files (safetensors, GGUF): opened without following into a FIFO's wait
 * (O_NONBLOCK), refused unless a regular file that fits the address space,
 * every failure one line naming the path. */
#ifndef LC_FILE_MAP_H
#define LC_FILE_MAP_H

#include <stddef.h>

#include "autograd/error.h"

/* Maps path: *map and *size (an empty file: *map NULL, *size 0). Unmap a
 * non-NULL map with lc_file_unmap. */
int lc_file_map(const char *path, void **map, size_t *size, lc_error *err);
void lc_file_unmap(void *map, size_t size);

#endif

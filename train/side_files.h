/* side_files.h — the tokenizer and generation files that travel with a
 * model: `lorac merge` and `lorac quantize` copy them, byte for byte, from
 * the input model directory to the output one. */
#ifndef LC_SIDE_FILES_H
#define LC_SIDE_FILES_H

#include <stdbool.h>

/* The files named (tokenizer.json, tokenizer_config.json, ...), in order;
 * NULL-terminated. */
extern const char *const lc_side_file_names[];

/* Whether a file of a model directory is one to copy: a named one, or
 * another small file of those kinds (*.json, *.model, *.txt, *.jinja,
 * *.tiktoken) — never config.json or the safetensors index, which the
 * writer makes itself. */
bool lc_is_side_file(const char *name);

#endif

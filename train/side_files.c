/* side_files.c — the one list of files that travel with a model (see
 * side_files.h). */
#include "train/side_files.h"

#include <string.h>

const char *const lc_side_file_names[] = {
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
    "tokenizer.model", "generation_config.json", "added_tokens.json", "vocab.json", "merges.txt",
    NULL,
};

static const char *const suffixes[] = { ".json", ".model", ".txt", ".jinja", ".tiktoken" };
static const char *const never[] = { "config.json", "model.safetensors.index.json" };

static bool has_suffix(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

bool lc_is_side_file(const char *name)
{
    if (name[0] == '.')
        return false;
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
        if (!strcmp(name, never[i]))
            return false;
    for (size_t i = 0; lc_side_file_names[i]; i++)
        if (!strcmp(name, lc_side_file_names[i]))
            return true;
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++)
        if (has_suffix(name, suffixes[i]))
            return true;
    return false;
}

/* chat_builtin.h — which chat template a config's chat_template selects, as Axolotl does.
 *
 * Axolotl's `chat_template:` is a built-in name (alpaca, chatml, llama3, qwen_25, ...),
 * `tokenizer_default` (the model's own template), `tokenizer_default_fallback_<name>` (the
 * model's own, else built-in <name>) or `jinja` (the text, or file, of chat_template_jinja);
 * unset means tokenizer_default. lorac's built-ins are its own text (data/chat_templates/
 * <name>.jinja, compiled into the binary by CMakeLists.txt) that renders byte-identically to
 * Axolotl's template of the same name (tests/test_chat_builtin.c). A model's own template is
 * DIR/chat_template.jinja when present (newer transformers write it, and it wins), else
 * tokenizer_config.json's "chat_template": a string, or a list of {"name", "template"} of
 * which the one named "default" is used. */
#ifndef LC_CHAT_BUILTIN_H
#define LC_CHAT_BUILTIN_H

#include <stddef.h>

#include "autograd/error.h"

/* The text of built-in template name, or NULL when there is none by that name. */
const char *lc_chat_builtin(const char *name);

/* How many built-ins there are, and the i-th name (alphabetical; NULL past the end). */
size_t lc_chat_builtin_count(void);
const char *lc_chat_builtin_name(size_t i);

/* Picks the template text by Axolotl's rules. chat_template NULL or "" = tokenizer_default;
 * jinja is chat_template_jinja (a path to an existing file is read, else it is the text);
 * tokenizer_text is the model's own template (lc_chat_template_from_model_dir), NULL when it
 * has none. *text is the chosen template; *owned is NULL, or the malloc'd buffer *text points
 * into (a file read), for the caller to free. -1 with one line in err: an unknown name lists
 * the built-ins. */
int lc_chat_template_resolve(const char *chat_template, const char *jinja,
                             const char *tokenizer_text, const char **text, char **owned,
                             lc_error *err);

/* The model directory's own chat template (malloc'd) in *text; *text = NULL and 0 when it
 * has none. -1 naming the file when one is unreadable or malformed. */
int lc_chat_template_from_model_dir(const char *dir, char **text, lc_error *err);

#endif

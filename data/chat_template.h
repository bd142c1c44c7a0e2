/* chat_template.h — renders a model's chat_template (tokenizer_config.json) to text.
 *
 * Issue #13: training text must be exactly what transformers' apply_chat_template makes,
 * so this is a C implementation of the Jinja subset chat templates use, configured as
 * transformers configures jinja2 (trim_blocks, lstrip_blocks, loopcontrols, its tojson,
 * raise_exception and strftime_now). Parse once, render per conversation. Templates come
 * from downloaded model directories: parsing and rendering are bounded (nesting, loop
 * iterations, macro recursion, output and memory) and every refusal is one line naming the
 * construct and the template line; an unsupported construct is refused, never guessed. */
#ifndef LC_CHAT_TEMPLATE_H
#define LC_CHAT_TEMPLATE_H

#include <stddef.h>

#include "autograd/error.h"

struct cJSON;
typedef struct lc_chat_template lc_chat_template;

typedef struct lc_chat_render_opts {
    /* the instant strftime_now formats (local time), seconds since the epoch; 0 = now.
     * Tests and fixtures pin it (scripts/make_chat_template_fixtures.py). */
    long long now;
} lc_chat_render_opts;

/* Parses src (n bytes). -1 with "chat template line N: ..." in err. */
int lc_chat_template_parse(const char *src, size_t n, lc_chat_template **out, lc_error *err);

/* Renders with the variables of context (a JSON object: messages, add_generation_prompt,
 * bos_token, eos_token, tools, ...). *out is malloc'd, NUL-terminated, *len bytes; opts
 * may be NULL. raise_exception(msg) fails with msg in err. */
int lc_chat_template_render(const lc_chat_template *t, const struct cJSON *context,
                            const lc_chat_render_opts *opts, char **out, size_t *len,
                            lc_error *err);

void lc_chat_template_free(lc_chat_template *t);

#endif

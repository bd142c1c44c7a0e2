/* axolotl_keys.h — Axolotl config keys that lorac does not implement, and
 * what it does with each: accept it without effect (it does not change the
 * trained adapter: logging, hubs, attention kernels, precision flags), or
 * refuse it (it would change training), possibly depending on its value.
 *
 * The table (axolotl_keys.c) is the one place these decisions live;
 * train/config.c consults it for every key it does not know, and
 * configs/README.md lists it (tests/test_config.c checks that every name
 * appears there). */
#ifndef LC_AXOLOTL_KEYS_H
#define LC_AXOLOTL_KEYS_H

#include <stdbool.h>

typedef enum lc_ax_rule {
    LC_AX_ANY,   /* any value: accepted without effect */
    LC_AX_OFF,   /* accepted when off (null, false, 0, "", [] or {}); any other value refused */
} lc_ax_rule;

typedef struct lc_ax_key {
    const char *name;    /* a key, or a prefix ending in '*' ("wandb_*") */
    lc_ax_rule rule;
    const char *note;    /* LC_AX_ANY: why it has no effect (NULL: obvious); LC_AX_OFF: what
                            a value that is not off would have done */
} lc_ax_key;

/* The entry for key name (exact names first, then prefixes), or NULL. */
const lc_ax_key *lc_ax_key_find(const char *name);
/* Entries 0 .. lc_ax_key_count()-1, in table order. */
int lc_ax_key_count(void);
const lc_ax_key *lc_ax_key_at(int i);

#endif

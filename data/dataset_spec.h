/* dataset_spec.h — what one `datasets:` entry of the YAML says about its rows:
 * the Axolotl dataset type and that type's options. The config parser
 * (train/config.c) fills it; the row encoder (data/row_encoder.h) turns each
 * JSONL row into input_ids and labels by it. One place for the type names and
 * the defaults, which are Axolotl 0.19's:
 *
 *   tokenized      {"input_ids": [...], "labels": [...]} (lorac's own; no tokenizer)
 *   completion     field (default "text"): raw text, every token trained
 *   alpaca         instruction / input / output with Axolotl's Alpaca prompt
 *   chat_template  field_messages (default "messages") rendered with the chat
 *                  template; message_property_mappings (role, content), roles
 *                  (target role ← list of names in the data), roles_to_train
 *                  (default [assistant]), train_on_eos / train_on_eot
 *                  (turn | all | last | none; default turn), message_field_training
 *                  (a message key whose true/false overrides roles_to_train; unset by
 *                  default, as in Axolotl), field_system (default "system"),
 *                  drop_system_message
 *   input_output   segments [{"text": ..., "label": bool}] */
#ifndef LC_DATASET_SPEC_H
#define LC_DATASET_SPEC_H

#include <stdbool.h>
#include <stddef.h>

typedef enum lc_dataset_type {
    LC_DS_TOKENIZED,
    LC_DS_COMPLETION,
    LC_DS_ALPACA,
    LC_DS_CHAT_TEMPLATE,
    LC_DS_INPUT_OUTPUT,
    LC_DS_TYPE_COUNT
} lc_dataset_type;

/* Which end-of-turn tokens are trained (Axolotl's train_on_eos / train_on_eot). */
typedef enum lc_eos_mode { LC_EOS_TURN, LC_EOS_ALL, LC_EOS_LAST, LC_EOS_NONE, LC_EOS_COUNT } lc_eos_mode;

#define LC_DS_MAX_ROLES 32          /* entries of roles / roles_to_train */

typedef struct lc_role_alias {
    char *name;                     /* as written in the data ("human", "gpt") */
    char *role;                     /* the template's role ("user", "assistant") */
} lc_role_alias;

typedef struct lc_dataset_spec {
    lc_dataset_type type;
    char *field;                    /* completion: the text field */
    /* chat_template */
    char *field_messages;
    char *field_system;
    char *role_key, *content_key;   /* message_property_mappings role / content */
    lc_role_alias roles[LC_DS_MAX_ROLES]; /* roles: n_roles 0 = Axolotl's default table */
    int n_roles;
    char *roles_to_train[LC_DS_MAX_ROLES];
    int n_roles_to_train;
    lc_eos_mode train_on_eos;
    lc_eos_mode train_on_eot;       /* train_on_eot (default: as train_on_eos) */
    char *message_field_training;   /* NULL: messages carry no training flag */
    bool drop_system_message;
} lc_dataset_spec;

/* "tokenized", "completion", ... and back; −1 for an unknown name. */
const char *lc_dataset_type_name(lc_dataset_type t);
int lc_dataset_type_parse(const char *name);
/* Names joined for messages: "tokenized, completion, alpaca, chat_template, input_output". */
const char *lc_dataset_type_names(void);
const char *lc_eos_mode_name(lc_eos_mode m);
int lc_eos_mode_parse(const char *name);   /* −1 unknown */

/* The defaults of type t (strings allocated); -1 when out of memory. */
int lc_dataset_spec_defaults(lc_dataset_spec *s, lc_dataset_type t);
/* A deep copy. */
int lc_dataset_spec_copy(lc_dataset_spec *dst, const lc_dataset_spec *src);
void lc_dataset_spec_free(lc_dataset_spec *s);
/* Canonical one-line text of the options that decide the rows (for the run
 * record: a resume that would read rows differently is a data change). */
void lc_dataset_spec_describe(const lc_dataset_spec *s, char *buf, size_t n);

#endif

/* dataset_spec.c — dataset type names, defaults and copies (see dataset_spec.h). */
#include "data/dataset_spec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const TYPE_NAMES[LC_DS_TYPE_COUNT] = {
    [LC_DS_TOKENIZED] = "tokenized",
    [LC_DS_COMPLETION] = "completion",
    [LC_DS_ALPACA] = "alpaca",
    [LC_DS_CHAT_TEMPLATE] = "chat_template",
    [LC_DS_INPUT_OUTPUT] = "input_output",
};

static const char *const EOS_NAMES[LC_EOS_COUNT] = {
    [LC_EOS_TURN] = "turn", [LC_EOS_ALL] = "all", [LC_EOS_LAST] = "last", [LC_EOS_NONE] = "none",
};

const char *lc_dataset_type_name(lc_dataset_type t)
{
    return t < LC_DS_TYPE_COUNT ? TYPE_NAMES[t] : "?";
}

int lc_dataset_type_parse(const char *name)
{
    for (int i = 0; i < LC_DS_TYPE_COUNT; i++)
        if (!strcmp(name, TYPE_NAMES[i]))
            return i;
    return -1;
}

const char *lc_dataset_type_names(void)
{
    return "tokenized, completion, alpaca, chat_template, input_output";
}

const char *lc_eos_mode_name(lc_eos_mode m)
{
    return m < LC_EOS_COUNT ? EOS_NAMES[m] : "?";
}

int lc_eos_mode_parse(const char *name)
{
    for (int i = 0; i < LC_EOS_COUNT; i++)
        if (!strcmp(name, EOS_NAMES[i]))
            return i;
    return -1;
}

static int dup_into(char **dst, const char *s)
{
    *dst = s ? strdup(s) : NULL;
    return s && !*dst ? -1 : 0;
}

int lc_dataset_spec_defaults(lc_dataset_spec *s, lc_dataset_type t)
{
    memset(s, 0, sizeof *s);
    s->type = t;
    s->train_on_eos = s->train_on_eot = LC_EOS_TURN;
    int bad = 0;
    if (t == LC_DS_COMPLETION)
        bad |= dup_into(&s->field, "text");
    if (t == LC_DS_CHAT_TEMPLATE) {
        bad |= dup_into(&s->field_messages, "messages");
        bad |= dup_into(&s->field_system, "system");
        bad |= dup_into(&s->role_key, "role");
        bad |= dup_into(&s->content_key, "content");
        bad |= dup_into(&s->roles_to_train[0], "assistant");
        s->n_roles_to_train = 1;
    }
    if (bad) {
        lc_dataset_spec_free(s);
        return -1;
    }
    return 0;
}

int lc_dataset_spec_copy(lc_dataset_spec *dst, const lc_dataset_spec *src)
{
    *dst = *src;
    int bad = dup_into(&dst->field, src->field) | dup_into(&dst->field_messages, src->field_messages) |
              dup_into(&dst->field_system, src->field_system) |
              dup_into(&dst->role_key, src->role_key) | dup_into(&dst->content_key, src->content_key) |
              dup_into(&dst->message_field_training, src->message_field_training);
    for (int i = 0; i < src->n_roles; i++)
        bad |= dup_into(&dst->roles[i].name, src->roles[i].name) |
               dup_into(&dst->roles[i].role, src->roles[i].role);
    for (int i = 0; i < src->n_roles_to_train; i++)
        bad |= dup_into(&dst->roles_to_train[i], src->roles_to_train[i]);
    if (bad) {
        lc_dataset_spec_free(dst);
        return -1;
    }
    return 0;
}

void lc_dataset_spec_free(lc_dataset_spec *s)
{
    free(s->field);
    free(s->field_messages);
    free(s->field_system);
    free(s->role_key);
    free(s->content_key);
    free(s->message_field_training);
    for (int i = 0; i < s->n_roles; i++) {
        free(s->roles[i].name);
        free(s->roles[i].role);
    }
    for (int i = 0; i < s->n_roles_to_train; i++)
        free(s->roles_to_train[i]);
    memset(s, 0, sizeof *s);
}

/* Appends printf output to buf[0..n) (truncating). */
static void add(char *buf, size_t n, const char *fmt, const char *a, const char *b)
{
    size_t used = strlen(buf);
    if (used + 1 < n)
        snprintf(buf + used, n - used, fmt, a ? a : "", b ? b : "");
}

void lc_dataset_spec_describe(const lc_dataset_spec *s, char *buf, size_t n)
{
    if (!n)
        return;
    buf[0] = '\0';
    add(buf, n, "%s%s", lc_dataset_type_name(s->type), NULL);
    if (s->type == LC_DS_COMPLETION)
        add(buf, n, " field=%s%s", s->field, NULL);
    if (s->type != LC_DS_CHAT_TEMPLATE)
        return;
    add(buf, n, " field_messages=%s field_system=%s", s->field_messages, s->field_system);
    add(buf, n, " role=%s content=%s", s->role_key, s->content_key);
    if (s->message_field_training)
        add(buf, n, " training=%s%s", s->message_field_training, NULL);
    for (int i = 0; i < s->n_roles; i++)
        add(buf, n, " roles.%s<-%s", s->roles[i].role, s->roles[i].name);
    for (int i = 0; i < s->n_roles_to_train; i++)
        add(buf, n, " train:%s%s", s->roles_to_train[i], NULL);
    add(buf, n, " train_on_eos=%s train_on_eot=%s", lc_eos_mode_name(s->train_on_eos),
        lc_eos_mode_name(s->train_on_eot));
    add(buf, n, "%s%s", s->drop_system_message ? " drop_system_message" : "", NULL);
}

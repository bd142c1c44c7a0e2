/* config.c — the training YAML (Axolotl key names) into lc_train_config.
 *
 * Parsing is in two passes over the same text with libyaml: an event pass
 * that reports syntax errors (libyaml's problem and line) and refuses what a
 * config has no use for and what makes it hard to read (anchors, aliases,
 * explicit tags, a second document), then a document pass (yaml_parser_load)
 * whose tree is walked key by key. Every top-level key is in one table with
 * its type and range. A key not in it is looked up in Axolotl's keys
 * (train/axolotl_keys.c): accepted without effect (named in one warning
 * line, c->warning) or refused (it would change training); any other is
 * unknown, with the nearest known key suggested (edit distance ≤ 3, or a
 * prefix match). Unknown and refused keys are collected over the file and
 * every override and reported in one error. Errors read
 * "<label>:<line>: <key>: <what, and what was expected>", or
 * "--set key=value: <key>: ..." for an override.
 *
 * Scalars are typed the YAML 1.2 core way, strictly: a quoted scalar is
 * always a string ("8" is not a number), integers are plain decimal digits,
 * floats are decimal with an optional exponent (2.0e-4 and 1e-8 both work),
 * booleans are true/false (True/False, TRUE/FALSE), and null (~, null, or
 * nothing) means "not given": the key keeps its default (for base_model and
 * datasets, which have none, that is the "required" error).
 *
 * Cross-key rules (warmup_steps vs warmup_ratio, an empty target list, the
 * required keys) are checked once, after the file and every override. On any
 * failure the struct is freed and reset to the defaults, so a caller may
 * call lc_train_config_free either way. */
#include "train/config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "data/completion.h"
#include "train/axolotl_keys.h"
#include "train/fsutil.h"
#include "train/gguf_model.h"

#define CFG_MAX_BYTES (1u << 20)      /* config files and --set values */
#define CFG_MAX_KEY_SHOWN 64          /* longest key/value echoed in messages */
#define CFG_MAX_DEPTH 32              /* nesting of sequences/mappings (configs use 3) */
#define CFG_MAX_AX 200                /* Axolotl keys remembered (accepted or refused) */
#define CFG_LIST_MAX 440              /* each list of unknown / refused keys shown (an error is
                                         one LC_ERROR_MAX line) */

/* ---- key table ------------------------------------------------------------ */

typedef enum kind {
    K_INT,       /* int field */
    K_I64,       /* int64_t field */
    K_U64,       /* uint64_t field, 0 .. INT64_MAX */
    K_F64,       /* double field, finite */
    K_BOOL,      /* bool field */
    K_PATH,      /* optional char * field, resolved against base_dir */
    K_SPECIAL,   /* handled by its own function */
} kind;

enum { LO_OPEN = 1, HI_OPEN = 2 };

typedef enum key_id {
    KEY_BASE_MODEL, KEY_ADAPTER, KEY_LOAD_IN_4BIT, KEY_LORA_R, KEY_LORA_ALPHA,
    KEY_LORA_DROPOUT, KEY_LORA_TARGET_MODULES, KEY_LORA_TARGET_PARAMETERS, KEY_LORA_TARGET_LINEAR,
    KEY_LORA_MODEL_DIR,
    KEY_PEFT_USE_RSLORA, KEY_DATASETS, KEY_TEST_DATASETS, KEY_SEQUENCE_LEN,
    KEY_SAMPLE_PACKING, KEY_SHUFFLE, KEY_MICRO_BATCH_SIZE, KEY_GRAD_ACCUM, KEY_NUM_EPOCHS,
    KEY_MAX_STEPS, KEY_LEARNING_RATE, KEY_LR_SCHEDULER, KEY_WARMUP_STEPS, KEY_WARMUP_RATIO,
    KEY_COSINE_MIN_LR_RATIO, KEY_OPTIMIZER, KEY_WEIGHT_DECAY, KEY_ADAM_BETA1, KEY_ADAM_BETA2,
    KEY_ADAM_EPSILON, KEY_MAX_GRAD_NORM, KEY_GRADIENT_CHECKPOINTING, KEY_SEED, KEY_DEVICE,
    KEY_OUTPUT_DIR, KEY_LOGGING_STEPS, KEY_SAVE_STEPS, KEY_SAVE_TOTAL_LIMIT, KEY_EVAL_STEPS,
    KEY_RESUME_FROM_CHECKPOINT, KEY_MAX_BAD_STEPS, KEY_BNB_BLOCKSIZE, KEY_BNB_DOUBLE_QUANT,
    KEY_OVERWRITE_OUTPUT_DIR, KEY_RESUME_ALLOW_DATA_CHANGE, KEY_VAL_SET_SIZE,
    KEY_TRAIN_ON_INPUTS, KEY_SPECIAL_TOKENS, KEY_DATASET_PREPARED_PATH, KEY_CHAT_TEMPLATE,
    KEY_CHAT_TEMPLATE_JINJA, KEY_EOT_TOKENS, KEY_EXCESS_LENGTH_STRATEGY, KEY_USE_TENSORBOARD,
    KEY_SAMPLE_PROMPTS, KEY_SAMPLE_MAX_NEW_TOKENS, KEY_LORAPLUS_LR_RATIO,
    KEY_LORAPLUS_LR_EMBEDDING, KEY_PEFT_USE_DORA, KEY_COMPUTE_DTYPE,
    KEY_COUNT
} key_id;

typedef struct keydef {
    const char *name;
    kind k;
    size_t off;           /* field offset in lc_train_config (not K_SPECIAL) */
    double lo, hi;        /* range; integers use them too (exact below 2^53) */
    unsigned flags;       /* LO_OPEN / HI_OPEN for floats */
    const char *expect;   /* "an integer from 1 to 4096": for type and range errors */
} keydef;

#define OFF(field) offsetof(lc_train_config, field)
#define BIG 9.2233720368547758e18  /* INT64_MAX as a double (range checks only) */

static const keydef keys[KEY_COUNT] = {
    [KEY_BASE_MODEL] = { "base_model", K_SPECIAL, 0, 0, 0, 0, "a model directory path or a .gguf file" },
    [KEY_ADAPTER] = { "adapter", K_SPECIAL, 0, 0, 0, 0, NULL },
    [KEY_LOAD_IN_4BIT] = { "load_in_4bit", K_SPECIAL, 0, 0, 0, 0, "true or false" },
    [KEY_LORA_R] = { "lora_r", K_INT, OFF(lora.r), 1, 4096, 0, "an integer from 1 to 4096" },
    [KEY_LORA_ALPHA] = { "lora_alpha", K_F64, OFF(lora.alpha), 0, INFINITY, LO_OPEN,
                         "a number > 0" },
    [KEY_LORA_DROPOUT] = { "lora_dropout", K_F64, OFF(lora.dropout), 0, 1, HI_OPEN,
                           "a number in [0, 1)" },
    [KEY_LORA_TARGET_MODULES] = { "lora_target_modules", K_SPECIAL, 0, 0, 0, 0, NULL },
    [KEY_LORA_TARGET_PARAMETERS] = { "lora_target_parameters", K_SPECIAL, 0, 0, 0, 0, NULL },
    [KEY_LORA_TARGET_LINEAR] = { "lora_target_linear", K_BOOL, OFF(lora_target_linear), 0, 0,
                                 0, "true or false" },
    [KEY_LORA_MODEL_DIR] = { "lora_model_dir", K_PATH, OFF(lora_model_dir), 0, 0, 0,
                             "an adapter directory path" },
    [KEY_PEFT_USE_RSLORA] = { "peft_use_rslora", K_BOOL, OFF(lora.use_rslora), 0, 0, 0,
                              "true or false" },
    [KEY_PEFT_USE_DORA] = { "peft_use_dora", K_BOOL, OFF(lora.use_dora), 0, 0, 0,
                            "true or false" },
    [KEY_DATASETS] = { "datasets", K_SPECIAL, 0, 0, 0, 0, NULL },
    [KEY_TEST_DATASETS] = { "test_datasets", K_SPECIAL, 0, 0, 0, 0, NULL },
    [KEY_SEQUENCE_LEN] = { "sequence_len", K_I64, OFF(sequence_len), 2, 1048576, 0,
                           "an integer from 2 to 1048576" },
    [KEY_SAMPLE_PACKING] = { "sample_packing", K_BOOL, OFF(sample_packing), 0, 0, 0,
                             "true or false" },
    [KEY_SHUFFLE] = { "shuffle", K_BOOL, OFF(shuffle), 0, 0, 0, "true or false" },
    [KEY_MICRO_BATCH_SIZE] = { "micro_batch_size", K_I64, OFF(micro_batch_size), 1, 65536, 0,
                               "an integer from 1 to 65536" },
    [KEY_GRAD_ACCUM] = { "gradient_accumulation_steps", K_I64, OFF(gradient_accumulation_steps),
                         1, BIG, 0, "an integer >= 1" },
    [KEY_NUM_EPOCHS] = { "num_epochs", K_I64, OFF(num_epochs), 1, BIG, 0, "an integer >= 1" },
    [KEY_MAX_STEPS] = { "max_steps", K_I64, OFF(max_steps), 0, BIG, 0,
                        "an integer >= 0 (0: use num_epochs)" },
    [KEY_LEARNING_RATE] = { "learning_rate", K_F64, OFF(learning_rate), 0, INFINITY, LO_OPEN,
                            "a finite number > 0" },
    [KEY_LR_SCHEDULER] = { "lr_scheduler", K_SPECIAL, 0, 0, 0, 0, NULL },
    [KEY_WARMUP_STEPS] = { "warmup_steps", K_I64, OFF(warmup_steps), 0, BIG, 0,
                           "an integer >= 0" },
    [KEY_WARMUP_RATIO] = { "warmup_ratio", K_F64, OFF(warmup_ratio), 0, 1, HI_OPEN,
                           "a number in [0, 1)" },
    [KEY_COSINE_MIN_LR_RATIO] = { "cosine_min_lr_ratio", K_F64, OFF(cosine_min_lr_ratio), 0, 1,
                                  0, "a number in [0, 1]" },
    [KEY_OPTIMIZER] = { "optimizer", K_SPECIAL, 0, 0, 0, 0, NULL },
    [KEY_WEIGHT_DECAY] = { "weight_decay", K_F64, OFF(weight_decay), 0, INFINITY, 0,
                           "a finite number >= 0" },
    [KEY_ADAM_BETA1] = { "adam_beta1", K_F64, OFF(adam.beta1), 0, 1, HI_OPEN,
                         "a number in [0, 1)" },
    [KEY_ADAM_BETA2] = { "adam_beta2", K_F64, OFF(adam.beta2), 0, 1, HI_OPEN,
                         "a number in [0, 1)" },
    [KEY_ADAM_EPSILON] = { "adam_epsilon", K_F64, OFF(adam.eps), 0, INFINITY, LO_OPEN,
                           "a finite number > 0" },
    [KEY_MAX_GRAD_NORM] = { "max_grad_norm", K_F64, OFF(max_grad_norm), 0, INFINITY, 0,
                            "a finite number >= 0 (0: no clipping)" },
    [KEY_GRADIENT_CHECKPOINTING] = { "gradient_checkpointing", K_BOOL,
                                     OFF(gradient_checkpointing), 0, 0, 0, "true or false" },
    [KEY_SEED] = { "seed", K_U64, OFF(seed), 0, BIG, 0, "an integer from 0 to 2^63-1" },
    [KEY_DEVICE] = { "device", K_SPECIAL, 0, 0, 0, 0, NULL },
    [KEY_COMPUTE_DTYPE] = { "compute_dtype", K_SPECIAL, 0, 0, 0, 0, NULL },
    [KEY_OUTPUT_DIR] = { "output_dir", K_PATH, OFF(output_dir), 0, 0, 0, "a directory path" },
    [KEY_LOGGING_STEPS] = { "logging_steps", K_I64, OFF(logging_steps), 1, BIG, 0,
                            "an integer >= 1" },
    [KEY_SAVE_STEPS] = { "save_steps", K_I64, OFF(save_steps), 0, BIG, 0,
                         "an integer >= 0 (0: save only at the end)" },
    [KEY_SAVE_TOTAL_LIMIT] = { "save_total_limit", K_I64, OFF(save_total_limit), 0, BIG, 0,
                               "an integer >= 0 (0: keep all)" },
    [KEY_EVAL_STEPS] = { "eval_steps", K_I64, OFF(eval_steps), 0, BIG, 0,
                         "an integer >= 0 (0: no periodic eval)" },
    [KEY_RESUME_FROM_CHECKPOINT] = { "resume_from_checkpoint", K_SPECIAL, 0, 0, 0, 0,
                                     "a checkpoint directory path or auto" },
    [KEY_MAX_BAD_STEPS] = { "max_bad_steps", K_I64, OFF(max_bad_steps), 0, BIG, 0,
                            "an integer >= 0" },
    [KEY_BNB_BLOCKSIZE] = { "bnb_4bit_blocksize", K_I64, OFF(bnb_4bit_blocksize), 16, 4096, 0,
                            "an integer from 16 to 4096" },
    [KEY_BNB_DOUBLE_QUANT] = { "bnb_4bit_use_double_quant", K_BOOL,
                               OFF(bnb_4bit_use_double_quant), 0, 0, 0, "true or false" },
    [KEY_OVERWRITE_OUTPUT_DIR] = { "overwrite_output_dir", K_BOOL, OFF(overwrite_output_dir), 0,
                                   0, 0, "true or false" },
    [KEY_RESUME_ALLOW_DATA_CHANGE] = { "resume_allow_data_change", K_BOOL,
                                       OFF(resume_allow_data_change), 0, 0, 0,
                                       "true or false" },
    [KEY_VAL_SET_SIZE] = { "val_set_size", K_SPECIAL, 0, 0, 0, 0,
                           "a fraction in [0, 1) or a whole number of rows > 1" },
    [KEY_TRAIN_ON_INPUTS] = { "train_on_inputs", K_BOOL, OFF(train_on_inputs), 0, 0, 0,
                              "true or false" },
    [KEY_SPECIAL_TOKENS] = { "special_tokens", K_SPECIAL, 0, 0, 0, 0, NULL },
    [KEY_DATASET_PREPARED_PATH] = { "dataset_prepared_path", K_PATH, OFF(dataset_prepared_path),
                                    0, 0, 0, "a directory path" },
    [KEY_CHAT_TEMPLATE] = { "chat_template", K_SPECIAL, 0, 0, 0, 0, NULL },
    [KEY_CHAT_TEMPLATE_JINJA] = { "chat_template_jinja", K_SPECIAL, 0, 0, 0, 0,
                                  "a Jinja template or the path of a .jinja file" },
    [KEY_EOT_TOKENS] = { "eot_tokens", K_SPECIAL, 0, 0, 0, 0, NULL },
    [KEY_SAMPLE_PROMPTS] = { "sample_prompts", K_SPECIAL, 0, 0, 0, 0, NULL },
    [KEY_SAMPLE_MAX_NEW_TOKENS] = { "sample_max_new_tokens", K_I64, OFF(sample_max_new_tokens), 1,
                                    4096, 0, "an integer from 1 to 4096" },
    [KEY_EXCESS_LENGTH_STRATEGY] = { "excess_length_strategy", K_SPECIAL, 0, 0, 0, 0, NULL },
    [KEY_USE_TENSORBOARD] = { "use_tensorboard", K_BOOL, OFF(use_tensorboard), 0, 0, 0,
                              "true or false" },
    [KEY_LORAPLUS_LR_RATIO] = { "loraplus_lr_ratio", K_F64, OFF(loraplus_lr_ratio), 0, INFINITY,
                                LO_OPEN, "a finite number > 0, or null" },
    [KEY_LORAPLUS_LR_EMBEDDING] = { "loraplus_lr_embedding", K_F64, OFF(loraplus_lr_embedding),
                                    0, INFINITY, 0, "a finite number >= 0, or null" },
};

/* What a resume may change (configs/README.md, "Resuming", lists the two
 * classes). FIXED keys define what the saved adapter and optimizer state
 * mean — its shape and scale, the weights it sits on, the data order and
 * the batches the data cursor counts — so a resume that changes one is
 * refused. FREE keys only steer the rest of the run; a change is allowed
 * and reported. (lora_model_dir is FREE: on resume the weights come from
 * the checkpoint, and the shape and scale it gave are compared as the
 * lora_* keys.) Keys left out (paths of this run, datasets, which are
 * checked by content, and keys folded into others: load_in_4bit into
 * adapter, lora_target_linear into lora_target_modules) are not compared. */
static const lc_resume_class resume_class[KEY_COUNT] = {
    [KEY_ADAPTER] = LC_RESUME_FIXED, [KEY_LORA_R] = LC_RESUME_FIXED,
    [KEY_LORA_ALPHA] = LC_RESUME_FIXED, [KEY_LORA_DROPOUT] = LC_RESUME_FIXED,
    [KEY_LORA_TARGET_MODULES] = LC_RESUME_FIXED, [KEY_LORA_TARGET_PARAMETERS] = LC_RESUME_FIXED,
    [KEY_LORA_MODEL_DIR] = LC_RESUME_FREE,
    [KEY_PEFT_USE_RSLORA] = LC_RESUME_FIXED, [KEY_PEFT_USE_DORA] = LC_RESUME_FIXED,
    [KEY_SEQUENCE_LEN] = LC_RESUME_FIXED,
    [KEY_SAMPLE_PACKING] = LC_RESUME_FIXED, [KEY_SHUFFLE] = LC_RESUME_FIXED,
    [KEY_MICRO_BATCH_SIZE] = LC_RESUME_FIXED, [KEY_GRAD_ACCUM] = LC_RESUME_FIXED,
    [KEY_ADAM_BETA1] = LC_RESUME_FIXED, [KEY_ADAM_BETA2] = LC_RESUME_FIXED,
    [KEY_SEED] = LC_RESUME_FIXED, [KEY_BNB_BLOCKSIZE] = LC_RESUME_FIXED,
    [KEY_BNB_DOUBLE_QUANT] = LC_RESUME_FIXED,
    [KEY_TEST_DATASETS] = LC_RESUME_FREE, [KEY_NUM_EPOCHS] = LC_RESUME_FREE,
    [KEY_MAX_STEPS] = LC_RESUME_FREE, [KEY_LEARNING_RATE] = LC_RESUME_FREE,
    [KEY_LR_SCHEDULER] = LC_RESUME_FREE, [KEY_WARMUP_STEPS] = LC_RESUME_FREE,
    [KEY_WARMUP_RATIO] = LC_RESUME_FREE, [KEY_COSINE_MIN_LR_RATIO] = LC_RESUME_FREE,
    [KEY_WEIGHT_DECAY] = LC_RESUME_FREE, [KEY_ADAM_EPSILON] = LC_RESUME_FREE,
    [KEY_MAX_GRAD_NORM] = LC_RESUME_FREE, [KEY_GRADIENT_CHECKPOINTING] = LC_RESUME_FREE,
    [KEY_DEVICE] = LC_RESUME_FREE, [KEY_COMPUTE_DTYPE] = LC_RESUME_FREE,
    [KEY_LOGGING_STEPS] = LC_RESUME_FREE,
    [KEY_SAVE_STEPS] = LC_RESUME_FREE, [KEY_SAVE_TOTAL_LIMIT] = LC_RESUME_FREE,
    [KEY_EVAL_STEPS] = LC_RESUME_FREE, [KEY_MAX_BAD_STEPS] = LC_RESUME_FREE,
    [KEY_USE_TENSORBOARD] = LC_RESUME_FREE, [KEY_LORAPLUS_LR_RATIO] = LC_RESUME_FREE,
    [KEY_LORAPLUS_LR_EMBEDDING] = LC_RESUME_FREE,
    /* What the training rows are: a change is a different data stream. */
    [KEY_VAL_SET_SIZE] = LC_RESUME_FIXED, [KEY_TRAIN_ON_INPUTS] = LC_RESUME_FIXED,
    [KEY_SPECIAL_TOKENS] = LC_RESUME_FIXED, [KEY_CHAT_TEMPLATE] = LC_RESUME_FIXED,
    [KEY_CHAT_TEMPLATE_JINJA] = LC_RESUME_FIXED, [KEY_EOT_TOKENS] = LC_RESUME_FIXED,
    [KEY_SAMPLE_PROMPTS] = LC_RESUME_FREE, [KEY_SAMPLE_MAX_NEW_TOKENS] = LC_RESUME_FREE,
    [KEY_EXCESS_LENGTH_STRATEGY] = LC_RESUME_FIXED,
};

static const char *const adapter_names[] = { "lora", "qlora" };
static const char *const scheduler_names[] = { "constant", "linear", "cosine" };
static const lc_lr_schedule scheduler_values[] = { LC_LR_CONSTANT, LC_LR_LINEAR, LC_LR_COSINE };
static const char *const optimizer_names[] = { "adamw", "adamw_torch", "adamw_torch_fused" };
/* Axolotl optimizers whose update is lorac's AdamW (other implementations,
 * paged memory): accepted with a note. */
static const char *const optimizer_same[] = { "adamw_hf", "adamw_apex_fused", "paged_adamw_32bit",
                                              "adamw_torch_npu_fused" };
static const char *const excess_names[] = { "drop", "truncate", "raise" };
static const lc_excess excess_values[] = { LC_EXCESS_DROP, LC_EXCESS_TRUNCATE,
                                                  LC_EXCESS_RAISE };
/* chat_template values: Axolotl's ChatTemplate names (0.19.0), its
 * tokenizer_default_fallback_<name> forms, and jinja. */
static const char *const chat_template_names[] = {
    "tokenizer_default", "jinja", "alpaca", "chatml", "mistral_v1", "mistral_v2v3",
    "mistral_v3_tekken", "mistral_v7_tekken", "gemma", "cohere", "llama3", "llama3_2_vision",
    "llama4", "phi_3", "phi_35", "deepseek_v2", "deepseek_v3", "jamba", "qwen_25", "qwen3",
    "qwen3_5", "falcon_h1", "nemotron_h", "exaone", "exaone4", "metharme", "pixtral", "llava",
    "qwen2_vl", "gemma3", "gemma3n", "gemma4", "gemma4_unified", "command_a",
    "command_a_tool_use", "command_a_rag", "aya",
};
#define FALLBACK_PREFIX "tokenizer_default_fallback_"
#define MAX_EOT_TOKENS 256
#define MAX_SAMPLE_PROMPTS 16
static const char *const device_names[] = { "auto", "cpu", "cuda" };
static const lc_device device_values[] = { LC_DEVICE_AUTO, LC_DEVICE_CPU, LC_DEVICE_CUDA };
int lc_device_from_name(const char *s, lc_device *out)
{
    for (size_t i = 0; i < sizeof device_names / sizeof device_names[0]; i++)
        if (strcmp(s, device_names[i]) == 0) {
            *out = device_values[i];
            return 0;
        }
    return -1;
}

static const char *const compute_dtype_names[] = { "auto", "bfloat16", "float32" };
static const lc_compute_dtype compute_dtype_values[] = { LC_COMPUTE_AUTO, LC_COMPUTE_BF16,
                                                        LC_COMPUTE_F32 };

int lc_compute_dtype_from_name(const char *s, lc_compute_dtype *out)
{
    for (size_t i = 0; i < sizeof compute_dtype_names / sizeof compute_dtype_names[0]; i++)
        if (strcmp(s, compute_dtype_names[i]) == 0) {
            *out = compute_dtype_values[i];
            return 0;
        }
    return -1;
}
#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---- parse context and errors ---------------------------------------------- */

/* Keys reported together: n of them, the first `shown` as text. */
typedef struct keylist {
    char text[CFG_LIST_MAX];
    int n, shown;
} keylist;

typedef struct ctx {
    lc_train_config *c;
    const lc_train_config *defaults;
    const char *label;          /* the file's label */
    const char *base_dir;       /* NULL or "": keep relative paths as given */
    const char *set_text;       /* the "key=value" being applied, or NULL */
    yaml_document_t *doc;
    lc_error *err;
    bool adapter_qlora, load_in_4bit;
    /* Where each key was last given (for cross-key errors). */
    int given_seq[KEY_COUNT];   /* 0: never; else order of setting */
    int given_line[KEY_COUNT];
    const char *given_set[KEY_COUNT];
    int seq;
    bool check_dirs;            /* base_model / lora_model_dir must be directories */
    char raw_dir[2][CFG_MAX_KEY_SHOWN * 4];   /* base_model, lora_model_dir as written */
    /* Keys collected over the file and every override, reported at once:
     * unknown keys ("line 4 'x' (did you mean 'y'?)"), Axolotl keys refused
     * ("line 9 load_in_8bit: true (would ...)") and Axolotl keys accepted
     * without effect (name and note). */
    keylist unknown;
    int n_ax;
    int unknown_line;           /* the first unknown key, for the one-key message */
    const char *unknown_set;
    char unknown_name[CFG_MAX_KEY_SHOWN + 1];
    struct {
        char key[CFG_MAX_KEY_SHOWN + 1];
        char shown[CFG_MAX_KEY_SHOWN * 2];   /* accepted: "bf16", "optimizer: adamw_hf" */
        char refusal[320];                   /* "" when accepted */
        const char *note;                    /* accepted: why without effect, or NULL */
    } ax[CFG_MAX_AX];                        /* the last value of each key decides */
} ctx;

/* "<label>:<line>: <key>: <msg>" or "--set k=v: <key>: <msg>"; line 0 or
 * key NULL leaves that part out. */
__attribute__((format(printf, 5, 6)))
static int fail_at(const ctx *x, const char *set_text, int line, const char *key,
                   const char *fmt, ...)
{
    char msg[LC_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char where[LC_ERROR_MAX / 2];
    if (set_text)
        snprintf(where, sizeof where, "--set %.400s", set_text);
    else if (line > 0)
        snprintf(where, sizeof where, "%.400s:%d", x->label, line);
    else
        snprintf(where, sizeof where, "%.400s", x->label);
    /* msg quotes scalars and keys from the file (quoted YAML scalars may
     * hold "\n" or terminal escapes) and where the --set text
     * (fuzz_yaml_config): lc_error_set makes the message one printable line */
    if (key)
        return lc_error_set(x->err, "%s: %s: %s", where, key, msg);
    return lc_error_set(x->err, "%s: %s", where, msg);
}

static int node_line(const yaml_node_t *n) { return n ? (int)n->start_mark.line + 1 : 0; }

#define FAIL(x, node, key, ...) fail_at((x), (x)->set_text, node_line(node), (key), __VA_ARGS__)

/* ---- scalars --------------------------------------------------------------- */

static const char *scalar_text(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }

static bool is_plain(const yaml_node_t *n)
{
    return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

static bool is_null(const yaml_node_t *n)
{
    if (!n)
        return true;
    if (!is_plain(n))
        return false;
    const char *s = scalar_text(n);
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
           !strcmp(s, "NULL");
}

/* What was found, for "expected X, got <describe>". */
static const char *describe(const yaml_node_t *n, char *buf, size_t size)
{
    if (n->type == YAML_SEQUENCE_NODE)
        snprintf(buf, size, "a list");
    else if (n->type == YAML_MAPPING_NODE)
        snprintf(buf, size, "a mapping");
    else if (n->type != YAML_SCALAR_NODE)
        snprintf(buf, size, "nothing");
    else if (is_plain(n))
        snprintf(buf, size, "'%.*s'", CFG_MAX_KEY_SHOWN, scalar_text(n));
    else
        snprintf(buf, size, "the quoted string \"%.*s\" (numbers and booleans must not be quoted)",
                 CFG_MAX_KEY_SHOWN, scalar_text(n));
    return buf;
}

static bool all_digits(const char *p)
{
    if (!*p)
        return false;
    for (; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}

/* YAML 1.2 core integer, decimal only: [-+]?[0-9]+, in int64 range. */
static bool parse_int(const yaml_node_t *n, int64_t *out)
{
    if (!is_plain(n))
        return false;
    const char *s = scalar_text(n);
    const char *p = (*s == '+' || *s == '-') ? s + 1 : s;
    if (!all_digits(p))
        return false;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno == ERANGE || *end)
        return false;
    *out = (int64_t)v;
    return true;
}

/* YAML 1.2 core float, decimal forms only:
 * [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?, finite. */
static bool parse_float(const yaml_node_t *n, double *out)
{
    if (!is_plain(n))
        return false;
    const char *s = scalar_text(n), *p = s;
    if (*p == '+' || *p == '-')
        p++;
    size_t digits = 0;
    while (*p >= '0' && *p <= '9')
        p++, digits++;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9')
            p++, digits++;
    }
    if (!digits)
        return false;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!all_digits(p))
            return false;
    } else if (*p) {
        return false;
    }
    char *end;
    double v = strtod(s, &end);
    if (*end || !isfinite(v))
        return false;
    *out = v;
    return true;
}

static bool parse_bool(const yaml_node_t *n, bool *out)
{
    if (!is_plain(n))
        return false;
    const char *s = scalar_text(n);
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")) {
        *out = true;
        return true;
    }
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")) {
        *out = false;
        return true;
    }
    return false;
}

/* A non-null scalar as a C string (quoted or plain); NULL after an error. */
static const char *get_string(ctx *x, const yaml_node_t *n, const char *key, const char *expect)
{
    char d[160];
    if (n->type != YAML_SCALAR_NODE)
        return FAIL(x, n, key, "expected %s, got %s", expect, describe(n, d, sizeof d)), NULL;
    const char *s = scalar_text(n);
    if (strlen(s) != n->data.scalar.length)
        return FAIL(x, n, key, "expected %s, got a string with a NUL character", expect), NULL;
    if (!*s)
        return FAIL(x, n, key, "expected %s, got an empty string", expect), NULL;
    return s;
}

/* base_dir joined with p, unless p is absolute or there is no base_dir. */
static char *resolve_path(const char *base_dir, const char *p)
{
    size_t bl = (base_dir && p[0] != '/') ? strlen(base_dir) : 0;
    size_t pl = strlen(p);
    char *r = malloc(bl + pl + 2);
    if (!r)
        return NULL;
    size_t o = 0;
    if (bl) {
        memcpy(r, base_dir, bl);
        o = bl;
        if (r[o - 1] != '/')
            r[o++] = '/';
    }
    memcpy(r + o, p, pl + 1);
    return r;
}

static char *get_path(ctx *x, const yaml_node_t *n, const char *key, const char *expect)
{
    const char *s = get_string(x, n, key, expect);
    if (!s)
        return NULL;
    char *r = resolve_path(x->base_dir, s);
    if (!r)
        FAIL(x, n, key, "out of memory");
    return r;
}

/* Matches a scalar against names; -1 (error set) when absent. */
static int get_enum(ctx *x, const yaml_node_t *n, const char *key, const char *const *names,
                    int count)
{
    char list[256] = "";
    for (int i = 0; i < count; i++) {
        size_t l = strlen(list);
        snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", names[i]);
    }
    char expect[300];
    snprintf(expect, sizeof expect, "one of %s", list);
    const char *s = get_string(x, n, key, expect);
    if (!s)
        return -1;
    for (int i = 0; i < count; i++)
        if (!strcmp(s, names[i]))
            return i;
    return FAIL(x, n, key, "expected one of %s, got '%.*s'", list, CFG_MAX_KEY_SHOWN, s);
}

/* ---- edit distance for suggestions ----------------------------------------- */

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return 1000;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* The known key nearest to name, or NULL when none is close. */
static const char *suggest_key(const char *name)
{
    const char *best = NULL;
    size_t best_d = 4;
    for (int i = 0; i < KEY_COUNT; i++) {
        size_t d = edit_distance(name, keys[i].name);
        if (d < best_d) {
            best_d = d;
            best = keys[i].name;
        }
    }
    if (best)
        return best;
    /* A prefix match either way (lora_target → lora_target_modules), then,
     * for names of 4+ characters, containment (epochs → num_epochs). */
    size_t nl = strlen(name);
    if (nl < 3)
        return NULL;
    for (int i = 0; i < KEY_COUNT; i++) {
        size_t kl = strlen(keys[i].name);
        if ((nl < kl && !strncmp(keys[i].name, name, nl)) ||
            (kl < nl && !strncmp(name, keys[i].name, kl)))
            return keys[i].name;
    }
    if (nl < 4)
        return NULL;
    for (int i = 0; i < KEY_COUNT; i++)
        if (strstr(keys[i].name, name) || strstr(name, keys[i].name))
            return keys[i].name;
    return NULL;
}

static int find_key(const char *name)
{
    for (int i = 0; i < KEY_COUNT; i++)
        if (!strcmp(name, keys[i].name))
            return i;
    return -1;
}

/* Appends ", item" (or "item" first) to list; an item that does not fit is
 * counted by the caller but not shown (the message says how many). */
__attribute__((format(printf, 2, 3)))
static void list_add(keylist *list, const char *fmt, ...)
{
    char item[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(item, sizeof item, fmt, ap);
    va_end(ap);
    list->n++;
    size_t l = strlen(list->text);
    size_t il = strlen(item), sep = l ? 2 : 0;
    if (list->shown + 1 == list->n && l + sep + il < CFG_LIST_MAX) {
        memcpy(list->text + l, ", ", sep);
        memcpy(list->text + l + sep, item, il + 1);
        list->shown++;
    }
}

/* " and N more" when some were not shown. */
static const char *more(const keylist *list, char *buf, size_t n)
{
    buf[0] = '\0';
    if (list->shown < list->n)
        snprintf(buf, n, " and %d more", list->n - list->shown);
    return buf;
}

/* Where a collected key was given: "line 4 " or "--set " (none for line 0). */
static void where_of(const char *set_text, int line, char *buf, size_t n)
{
    if (set_text)
        snprintf(buf, n, "--set ");
    else if (line > 0)
        snprintf(buf, n, "line %d ", line);
    else
        buf[0] = '\0';
}

/* Unknown key: remembered, reported with all the others (report_keys). */
static void unknown_key(ctx *x, const char *set_text, int line, const char *name)
{
    if (x->unknown.n == 0) {
        x->unknown_line = line;
        x->unknown_set = set_text;
        snprintf(x->unknown_name, sizeof x->unknown_name, "%.*s", CFG_MAX_KEY_SHOWN, name);
    }
    if (x->unknown.shown < x->unknown.n) {
        x->unknown.n++;   /* the list is full: counted, no suggestion computed (1 MB of keys) */
        return;
    }
    char where[64];
    where_of(set_text, line, where, sizeof where);
    const char *s = suggest_key(name);
    if (s)
        list_add(&x->unknown, "%s'%.*s' (did you mean '%s'?)", where, CFG_MAX_KEY_SHOWN, name, s);
    else
        list_add(&x->unknown, "%s'%.*s'", where, CFG_MAX_KEY_SHOWN, name);
}

/* The entry of an Axolotl key, a fresh one when it was not given before
 * (NULL when the table is full: the key is then not reported). */
static int ax_entry(ctx *x, const char *key)
{
    for (int i = 0; i < x->n_ax; i++)
        if (!strcmp(x->ax[i].key, key))
            return i;
    if (x->n_ax == CFG_MAX_AX)
        return -1;
    snprintf(x->ax[x->n_ax].key, sizeof x->ax[0].key, "%.*s", CFG_MAX_KEY_SHOWN, key);
    return x->n_ax++;
}

/* Forgets an Axolotl key given earlier (a --set gives it another value). */
static void ax_forget(ctx *x, const char *key)
{
    for (int i = 0; i < x->n_ax; i++)
        if (!strcmp(x->ax[i].key, key)) {
            memmove(&x->ax[i], &x->ax[i + 1], sizeof x->ax[0] * (size_t)(x->n_ax - i - 1));
            x->n_ax--;
            return;
        }
}

/* An Axolotl key that would change training: remembered, reported with all
 * the others (report_keys). value is the text shown after "key: ". */
static void refuse_key(ctx *x, const yaml_node_t *n, const char *key, const char *value,
                       const char *did)
{
    char where[64];
    where_of(x->set_text, x->set_text ? 0 : node_line(n), where, sizeof where);
    int i = ax_entry(x, key);
    if (i < 0)
        return;
    snprintf(x->ax[i].refusal, sizeof x->ax[0].refusal, "%s%.*s: %.*s (%s)", where,
             CFG_MAX_KEY_SHOWN, key, CFG_MAX_KEY_SHOWN, value, did);
    x->ax[i].note = NULL;
}

/* An Axolotl key accepted without effect, shown as `shown` (the key, or
 * "key: value") with an optional note. */
static void accept_key(ctx *x, const char *key, const char *shown, const char *note)
{
    int i = ax_entry(x, key);
    if (i < 0)
        return;
    snprintf(x->ax[i].shown, sizeof x->ax[0].shown, "%s", shown);
    x->ax[i].refusal[0] = '\0';
    x->ax[i].note = note;
}

/* Off: null, false, 0, an empty string, list or mapping. */
static bool is_off(const yaml_node_t *n)
{
    bool b;
    double v;
    if (is_null(n))
        return true;
    if (n->type == YAML_SEQUENCE_NODE)
        return n->data.sequence.items.top == n->data.sequence.items.start;
    if (n->type == YAML_MAPPING_NODE)
        return n->data.mapping.pairs.top == n->data.mapping.pairs.start;
    if (n->type != YAML_SCALAR_NODE)
        return false;
    if (!*scalar_text(n))
        return true;
    return (parse_bool(n, &b) && !b) || (parse_float(n, &v) && v == 0);
}

/* A value as "key: <value>" shows it: the scalar, or "[...]" / "{...}". */
static const char *value_text(const yaml_node_t *n)
{
    if (!n)
        return "";
    if (n->type == YAML_SEQUENCE_NODE)
        return "[...]";
    if (n->type == YAML_MAPPING_NODE)
        return "{...}";
    return n->type == YAML_SCALAR_NODE ? scalar_text(n) : "";
}

/* A key lorac does not implement: an Axolotl key accepted or refused by
 * the table, or an unknown key. */
static void foreign_key(ctx *x, int line, const char *name, const yaml_node_t *v)
{
    const lc_ax_key *a = lc_ax_key_find(name);
    if (!a)
        unknown_key(x, x->set_text, line, name);
    else if (a->rule == LC_AX_ANY || is_off(v))
        accept_key(x, name, name, a->rule == LC_AX_ANY ? a->note : NULL);
    else
        refuse_key(x, v, name, value_text(v), a->note);
}

/* The one error for every unknown and refused key, or 0 when there is none. */
static int report_keys(ctx *x)
{
    keylist refused = { .n = 0 }, *r = &refused;
    const keylist *u = &x->unknown;
    for (int i = 0; i < x->n_ax; i++)
        if (x->ax[i].refusal[0])
            list_add(r, "%s", x->ax[i].refusal);
    if (u->n == 1 && r->n == 0) {
        const char *s = suggest_key(x->unknown_name);
        if (s)
            return fail_at(x, x->unknown_set, x->unknown_line, NULL,
                           "unknown key '%s' (did you mean '%s'?)", x->unknown_name, s);
        return fail_at(x, x->unknown_set, x->unknown_line, NULL,
                       "unknown key '%s' (configs/README.md lists the known keys)",
                       x->unknown_name);
    }
    char msg[LC_ERROR_MAX] = "", m1[32], m2[32];
    if (u->n)
        snprintf(msg, sizeof msg, "%d unknown key%s: %s%s (configs/README.md lists the known "
                 "keys)", u->n, u->n == 1 ? "" : "s", u->text, more(u, m1, sizeof m1));
    if (r->n) {
        size_t l = strlen(msg);
        const char *them = r->n == 1 ? "it" : "them";
        snprintf(msg + l, sizeof msg - l,
                 "%s%d Axolotl key%s that would change training, not implemented by lorac: "
                 "%s%s (remove %s or turn %s off)", l ? "; " : "", r->n, r->n == 1 ? "" : "s",
                 r->text, more(r, m2, sizeof m2), them, them);
    }
    return *msg ? fail_at(x, NULL, 0, NULL, "%s", msg) : 0;
}

/* "<label>: accepted without effect (they do not change training): a, b,
 * c (note), d (note2)": keys without a note first, then each note after
 * the keys that share it. NULL when there are none. */
static char *accepted_line(const ctx *x)
{
    size_t cap = 256 + (size_t)x->n_ax * (sizeof x->ax[0].shown + 128);
    char *out = malloc(cap);
    if (!out)
        return NULL;
    size_t l = (size_t)snprintf(out, cap, "%s: accepted without effect (they do not change "
                                "training): ", x->label);
    bool first = true;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < x->n_ax; i++) {
            const char *note = x->ax[i].note;
            if (x->ax[i].refusal[0] || (pass == 0) != (note == NULL))
                continue;
            bool seen = false;   /* this note's group was written already */
            for (int j = 0; j < i && note; j++)
                seen |= x->ax[j].note == note;
            if (seen)
                continue;
            for (int j = i; j < x->n_ax; j++) {
                if (x->ax[j].refusal[0] || x->ax[j].note != note || (note == NULL && j != i))
                    continue;
                l += (size_t)snprintf(out + l, cap - l, "%s%s", first ? "" : ", ", x->ax[j].shown);
                first = false;
            }
            if (note)
                l += (size_t)snprintf(out + l, cap - l, " (%s)", note);
        }
    for (char *q = out; *q; q++)   /* one printable line */
        if ((unsigned char)*q < 0x20 || *q == 0x7f)
            *q = '?';
    return out;
}

/* ---- special keys ---------------------------------------------------------- */

static void free_list(char **list, int n)
{
    for (int i = 0; i < n; i++) {
        free(list[i]);
        list[i] = NULL;
    }
}

/* ---- datasets ---------------------------------------------------------------- */
/* The keys of one datasets entry (Axolotl's), and which types have them. */
enum ds_key {
    DK_PATH, DK_TYPE, DK_FIELD, DK_FIELD_MESSAGES, DK_FIELD_SYSTEM, DK_MAPPINGS, DK_ROLES,
    DK_ROLES_TO_TRAIN, DK_TRAIN_ON_EOS, DK_TRAIN_ON_EOT, DK_MESSAGE_FIELD_TRAINING,
    DK_DROP_SYSTEM, DK_DS_TYPE, DK_SPLIT, DK_COUNT
};
#define DS_CHAT (1u << LC_DS_CHAT_TEMPLATE)
#define DS_ALL 0xffu
static const struct { const char *name; unsigned types; } DS_KEYS[DK_COUNT] = {
    [DK_PATH] = {"path", DS_ALL},
    [DK_TYPE] = {"type", DS_ALL},
    [DK_FIELD] = {"field", 1u << LC_DS_COMPLETION},
    [DK_FIELD_MESSAGES] = {"field_messages", DS_CHAT},
    [DK_FIELD_SYSTEM] = {"field_system", DS_CHAT},
    [DK_MAPPINGS] = {"message_property_mappings", DS_CHAT},
    [DK_ROLES] = {"roles", DS_CHAT},
    [DK_ROLES_TO_TRAIN] = {"roles_to_train", DS_CHAT},
    [DK_TRAIN_ON_EOS] = {"train_on_eos", DS_CHAT},
    [DK_TRAIN_ON_EOT] = {"train_on_eot", DS_CHAT},
    [DK_MESSAGE_FIELD_TRAINING] = {"message_field_training", DS_CHAT},
    [DK_DROP_SYSTEM] = {"drop_system_message", DS_CHAT},
    [DK_DS_TYPE] = {"ds_type", DS_ALL},   /* json only: what lorac reads */
    [DK_SPLIT] = {"split", DS_ALL},       /* train only: a local JSONL file has one split */
};

/* A non-empty string option into *dst (replacing the default). */
static int ds_string(ctx *x, const yaml_node_t *n, const char *sub, const char *expect, char **dst)
{
    const char *v = get_string(x, n, sub, expect);
    if (!v)
        return -1;
    char *d = strdup(v);
    if (!d)
        return FAIL(x, n, sub, "out of memory");
    free(*dst);
    *dst = d;
    return 0;
}

/* A list of non-empty strings (or one string) into dst[0..*n). */
static int ds_string_list(ctx *x, const yaml_node_t *n, const char *sub, char **dst, int *count)
{
    char d[160];
    const yaml_node_item_t *it = NULL;
    int len = 1;
    if (n->type == YAML_SEQUENCE_NODE) {
        it = n->data.sequence.items.start;
        len = (int)(n->data.sequence.items.top - it);
    } else if (n->type != YAML_SCALAR_NODE) {
        return FAIL(x, n, sub, "expected a list of names, got %s", describe(n, d, sizeof d));
    }
    if (len > LC_DS_MAX_ROLES)
        return FAIL(x, n, sub, "at most %d names", LC_DS_MAX_ROLES);
    for (int i = 0; i < *count; i++)
        free(dst[i]);
    *count = 0;
    for (int i = 0; i < len; i++) {
        const yaml_node_t *e = it ? yaml_document_get_node(x->doc, it[i]) : n;
        dst[i] = NULL;
        if (ds_string(x, e, sub, "a name", &dst[i]))
            return -1;
        *count = i + 1;
    }
    return 0;
}

/* message_property_mappings: {role: KEY, content: KEY}. */
static int ds_mappings(ctx *x, const yaml_node_t *n, const char *sub, lc_dataset_spec *s)
{
    char d[160];
    if (n->type != YAML_MAPPING_NODE)
        return FAIL(x, n, sub, "expected a mapping {role: ..., content: ...}, got %s",
                    describe(n, d, sizeof d));
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(x->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(x->doc, p->value);
        const char *name = k->type == YAML_SCALAR_NODE ? scalar_text(k) : "";
        char **dst = !strcmp(name, "role") ? &s->role_key
                   : !strcmp(name, "content") ? &s->content_key : NULL;
        if (!dst)
            return FAIL(x, k, sub, "'%.*s' cannot be mapped (lorac maps role and content; "
                        "other message keys reach the template as they are)",
                        CFG_MAX_KEY_SHOWN, name);
        if (ds_string(x, v, sub, "a message key", dst))
            return -1;
    }
    return 0;
}

/* roles: {ROLE: [names in the data]}. */
static int ds_roles(ctx *x, const yaml_node_t *n, const char *sub, lc_dataset_spec *s)
{
    char d[160];
    if (n->type != YAML_MAPPING_NODE)
        return FAIL(x, n, sub, "expected a mapping {assistant: [gpt, ...], ...}, got %s",
                    describe(n, d, sizeof d));
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(x->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(x->doc, p->value);
        char *names[LC_DS_MAX_ROLES];
        int nn = 0;
        const char *role = get_string(x, k, sub, "a role name");
        if (!role || ds_string_list(x, v, sub, names, &nn))
            return -1;
        for (int i = 0; i < nn; i++) {
            if (s->n_roles == LC_DS_MAX_ROLES) {
                for (int j = i; j < nn; j++)
                    free(names[j]);
                return FAIL(x, n, sub, "at most %d names", LC_DS_MAX_ROLES);
            }
            s->roles[s->n_roles].name = names[i];
            s->roles[s->n_roles].role = strdup(role);
            if (!s->roles[s->n_roles++].role) {
                for (int j = i + 1; j < nn; j++)
                    free(names[j]);
                return FAIL(x, n, sub, "out of memory");
            }
        }
    }
    return 0;
}

static int ds_eos_mode(ctx *x, const yaml_node_t *n, const char *sub, lc_eos_mode *dst)
{
    const char *v = get_string(x, n, sub, "turn, all, last or none");
    if (!v)
        return -1;
    if (!strcmp(v, "false")) /* Axolotl accepts false for none */
        v = "none";
    int m = lc_eos_mode_parse(v);
    if (m < 0)
        return FAIL(x, n, sub, "expected turn, all, last or none, got '%.*s'", CFG_MAX_KEY_SHOWN, v);
    *dst = (lc_eos_mode)m;
    return 0;
}

/* The value of key k (non-null) into s. */
static int ds_option(ctx *x, enum ds_key k, const yaml_node_t *v, const char *sub,
                     lc_dataset_spec *s, bool *eot_given)
{
    char d[160];
    switch (k) {
    case DK_FIELD:
        return ds_string(x, v, sub, "the name of the text field", &s->field);
    case DK_FIELD_MESSAGES:
        return ds_string(x, v, sub, "the name of the messages field", &s->field_messages);
    case DK_FIELD_SYSTEM:
        return ds_string(x, v, sub, "the name of the system prompt field", &s->field_system);
    case DK_MESSAGE_FIELD_TRAINING:
        return ds_string(x, v, sub, "a message key", &s->message_field_training);
    case DK_MAPPINGS:
        return ds_mappings(x, v, sub, s);
    case DK_ROLES:
        return ds_roles(x, v, sub, s);
    case DK_ROLES_TO_TRAIN:
        return ds_string_list(x, v, sub, s->roles_to_train, &s->n_roles_to_train);
    case DK_TRAIN_ON_EOS:
        return ds_eos_mode(x, v, sub, &s->train_on_eos);
    case DK_TRAIN_ON_EOT:
        *eot_given = true;
        return ds_eos_mode(x, v, sub, &s->train_on_eot);
    case DK_DROP_SYSTEM:
        if (!parse_bool(v, &s->drop_system_message))
            return FAIL(x, v, sub, "expected true or false, got %s", describe(v, d, sizeof d));
        return 0;
    case DK_DS_TYPE:
    case DK_SPLIT: {
        const char *want = k == DK_DS_TYPE ? "json" : "train";
        const char *got = get_string(x, v, sub, want);
        if (!got)
            return -1;
        if (strcmp(got, want))
            return FAIL(x, v, sub, "only %s is supported (a local JSONL file), got '%.*s'", want,
                        CFG_MAX_KEY_SHOWN, got);
        return 0;
    }
    default:
        return 0;
    }
}

/* One datasets entry e (a mapping) into *path and *s. */
static int set_dataset(ctx *x, const yaml_node_t *e, const char *key, int i, char **path,
                       lc_dataset_spec *s)
{
    char d[160], sub[128];
    const yaml_node_t *v[DK_COUNT] = {0};
    snprintf(sub, sizeof sub, "%s[%d]", key, i);
    if (e->type != YAML_MAPPING_NODE)
        return FAIL(x, e, sub, "expected a mapping {path: ..., type: ...}, got %s",
                    describe(e, d, sizeof d));
    for (yaml_node_pair_t *p = e->data.mapping.pairs.start; p < e->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(x->doc, p->key);
        int id = -1;
        for (int j = 0; k->type == YAML_SCALAR_NODE && j < DK_COUNT && id < 0; j++)
            if (!strcmp(scalar_text(k), DS_KEYS[j].name))
                id = j;
        if (id < 0)
            return FAIL(x, k, sub, "unknown key '%.*s' (a dataset has path, type and the "
                        "options of its type: configs/README.md)", CFG_MAX_KEY_SHOWN,
                        k->type == YAML_SCALAR_NODE ? scalar_text(k) : "?");
        if (v[id])
            return FAIL(x, k, sub, "duplicate key '%s' (first given on line %d)",
                        DS_KEYS[id].name, node_line(v[id]));
        v[id] = yaml_document_get_node(x->doc, p->value);
    }
    int type = LC_DS_TOKENIZED;
    if (v[DK_TYPE] && !is_null(v[DK_TYPE])) {
        snprintf(sub, sizeof sub, "%s[%d].type", key, i);
        const char *t = get_string(x, v[DK_TYPE], sub, lc_dataset_type_names());
        if (!t)
            return -1;
        if ((type = lc_dataset_type_parse(t)) < 0)
            return FAIL(x, v[DK_TYPE], sub, "expected one of %s, got '%.*s' (configs/README.md "
                        "describes each)", lc_dataset_type_names(), CFG_MAX_KEY_SHOWN, t);
    }
    if (lc_dataset_spec_defaults(s, (lc_dataset_type)type))
        return FAIL(x, e, sub, "out of memory");
    bool eot_given = false;
    for (int k = DK_FIELD; k < DK_COUNT; k++) {
        if (!v[k] || is_null(v[k]))
            continue;
        snprintf(sub, sizeof sub, "%s[%d].%s", key, i, DS_KEYS[k].name);
        if (!(DS_KEYS[k].types & (1u << type)))
            return FAIL(x, v[k], sub, "a type: %s dataset has no %s (it belongs to type: %s)",
                        lc_dataset_type_name((lc_dataset_type)type), DS_KEYS[k].name,
                        k == DK_FIELD ? "completion" : "chat_template");
        if (ds_option(x, (enum ds_key)k, v[k], sub, s, &eot_given))
            return -1;
    }
    if (!eot_given)
        s->train_on_eot = s->train_on_eos;
    snprintf(sub, sizeof sub, "%s[%d].path", key, i);
    if (!v[DK_PATH] || is_null(v[DK_PATH]))
        return FAIL(x, e, sub, "required (the JSONL file)");
    *path = get_path(x, v[DK_PATH], sub, "a file path");
    return *path ? 0 : -1;
}

/* datasets / test_datasets: a list of entries (set_dataset). */
static int set_datasets(ctx *x, const yaml_node_t *n, const char *key, char **dst, int *n_dst,
                        lc_dataset_spec *specs)
{
    char *tmp[LC_CONFIG_MAX_DATASETS] = { 0 };
    lc_dataset_spec tmps[LC_CONFIG_MAX_DATASETS];
    int count = 0;
    char d[160];
    memset(tmps, 0, sizeof tmps);
    if (!is_null(n)) {
        if (n->type != YAML_SEQUENCE_NODE)
            return FAIL(x, n, key, "expected a list of {path: ..., type: ...}, got %s",
                        describe(n, d, sizeof d));
        yaml_node_item_t *it = n->data.sequence.items.start;
        int len = (int)(n->data.sequence.items.top - it);
        if (len > LC_CONFIG_MAX_DATASETS)
            return FAIL(x, n, key, "at most %d datasets are allowed, got %d",
                        LC_CONFIG_MAX_DATASETS, len);
        for (; count < len; count++)
            if (set_dataset(x, yaml_document_get_node(x->doc, it[count]), key, count, &tmp[count],
                            &tmps[count])) {
                lc_dataset_spec_free(&tmps[count]);
                goto fail;
            }
    }
    for (int i = 0; i < *n_dst; i++)
        lc_dataset_spec_free(&specs[i]);
    memcpy(specs, tmps, sizeof *specs * (size_t)count);
    free_list(dst, *n_dst);
    memcpy(dst, tmp, sizeof(char *) * (size_t)count);
    *n_dst = count;
    return 0;
fail:
    free_list(tmp, count);
    for (int i = 0; i < count; i++)
        lc_dataset_spec_free(&tmps[i]);
    return -1;
}

/* lora_target_modules: a list of module names, or one name, or all-linear;
 * with experts, lora_target_parameters (Axolotl's name for PEFT's
 * target_parameters): the experts' parameters, experts.gate_up_proj and
 * experts.down_proj. Each key sets its own half of the targets. */
static int set_targets(ctx *x, const yaml_node_t *n, const char *key, bool experts)
{
    bool t[LC_MOD_COUNT] = { false }, all = false;
    char d[160], sub[96];
    const char *expect = experts ? "experts.gate_up_proj or experts.down_proj" : lc_module_names();
    const char *what = experts ? "parameter" : "module";
    lc_lora_config *lc = &x->c->lora;
    if (is_null(n)) {
        memcpy(t, x->defaults->lora.targets, sizeof t);
        all = x->defaults->lora.all_linear;
    } else if (n->type == YAML_SCALAR_NODE) {
        const char *s = get_string(x, n, key, "a list of names");
        if (!s)
            return -1;
        if (!experts && !strcmp(s, "all-linear")) {
            all = true;
        } else {
            int m = lc_module_from_name(s);
            if (m < 0 || lc_module_is_expert(m) != experts)
                return FAIL(x, n, key, "unknown %s '%.*s' (expected a list of %s)", what,
                            CFG_MAX_KEY_SHOWN, s, expect);
            t[m] = true;
        }
    } else if (n->type == YAML_SEQUENCE_NODE) {
        yaml_node_item_t *it = n->data.sequence.items.start;
        int len = (int)(n->data.sequence.items.top - it);
        for (int i = 0; i < len; i++) {
            yaml_node_t *e = yaml_document_get_node(x->doc, it[i]);
            snprintf(sub, sizeof sub, "%s[%d]", key, i);
            const char *s = get_string(x, e, sub, experts ? "a parameter name" : "a module name");
            if (!s)
                return -1;
            int m = lc_module_from_name(s);
            if (m < 0 || lc_module_is_expert(m) != experts)
                return FAIL(x, e, sub, "unknown %s '%.*s' (expected %s)", what,
                            CFG_MAX_KEY_SHOWN, s, expect);
            t[m] = true;
        }
    } else {
        return FAIL(x, n, key, "expected a list of %s names, got %s", what,
                    describe(n, d, sizeof d));
    }
    for (int m = 0; m < LC_MOD_COUNT; m++)
        if (lc_module_is_expert(m) == experts)
            lc->targets[m] = t[m];
    if (!experts)
        lc->all_linear = all;
    return 0;
}

/* get_string, copied into *out (NULL and an error on failure). */
static int get_string_dup(ctx *x, const yaml_node_t *n, const char *key, const char *expect,
                          char **out)
{
    const char *s = get_string(x, n, key, expect);
    if (!s)
        return -1;
    return (*out = strdup(s)) ? 0 : FAIL(x, n, key, "out of memory");
}

static bool in_names(const char *s, const char *const *names, int count)
{
    for (int i = 0; i < count; i++)
        if (!strcmp(s, names[i]))
            return true;
    return false;
}

/* optimizer: lorac's AdamW by one of its names; an Axolotl optimizer with
 * the same update is accepted with a note; any other is refused with the
 * others (report_keys). */
static int set_optimizer(ctx *x, const yaml_node_t *n)
{
    ax_forget(x, "optimizer");
    if (is_null(n))
        return 0;
    const char *s = get_string(x, n, "optimizer", "the name of an optimizer");
    if (!s)
        return -1;
    static const char same[] = "the same update as lorac's AdamW";
    char name[CFG_MAX_KEY_SHOWN * 2];
    if (in_names(s, optimizer_names, NELEM(optimizer_names)))
        return 0;
    if (in_names(s, optimizer_same, NELEM(optimizer_same))) {
        snprintf(name, sizeof name, "optimizer: %.*s", CFG_MAX_KEY_SHOWN, s);
        accept_key(x, "optimizer", name, same);
    } else if (strstr(s, "8bit")) {
        refuse_key(x, n, "optimizer", s, "would keep AdamW's moments in 8 bits (bitsandbytes); "
                   "lorac's AdamW is adamw_torch");
    } else {
        refuse_key(x, n, "optimizer", s, "another optimizer; lorac implements AdamW: adamw, "
                   "adamw_torch, adamw_torch_fused");
    }
    return 0;
}

/* val_set_size, read as Axolotl does (int(v) rows when v > 1, else the
 * fraction v): a fraction in [0, 1), or a whole number of rows > 1. 1
 * (100% to evaluation, which datasets refuses) and fractional row counts
 * are errors. */
static int set_val_set_size(ctx *x, const yaml_node_t *n)
{
    lc_train_config *c = x->c;
    char d[160];
    double v = 0;
    if (!is_null(n) && (!parse_float(n, &v) || v < 0 || v == 1 || v > 9007199254740992.0 ||
                        (v > 1 && v != floor(v))))
        return FAIL(x, n, "val_set_size", "expected %s, got %s", keys[KEY_VAL_SET_SIZE].expect,
                    describe(n, d, sizeof d));
    c->val_set_size = v;
    c->val_set_size_rows = v > 1;
    return 0;
}

static void free_special_tokens(lc_train_config *c)
{
    for (int t = 0; t < LC_SPECIAL_COUNT; t++) {
        free(c->special_tokens[t]);
        c->special_tokens[t] = NULL;
    }
}

/* special_tokens: {bos_token, eos_token, pad_token, unk_token: string}. */
static int set_special_tokens(ctx *x, const yaml_node_t *n)
{
    char d[160], sub[96];
    char *tok[LC_SPECIAL_COUNT] = { 0 };
    if (!is_null(n) && n->type != YAML_MAPPING_NODE)
        return FAIL(x, n, "special_tokens", "expected a mapping of bos_token, eos_token, "
                    "pad_token, unk_token to strings, got %s", describe(n, d, sizeof d));
    for (yaml_node_pair_t *p = is_null(n) ? NULL : n->data.mapping.pairs.start;
         p && p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(x->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(x->doc, p->value);
        int t = 0;
        while (t < LC_SPECIAL_COUNT && (k->type != YAML_SCALAR_NODE ||
                                      strcmp(scalar_text(k), lc_special_key((lc_special)t))))
            t++;
        if (t == LC_SPECIAL_COUNT) {
            FAIL(x, k, "special_tokens", "unknown key '%.*s' (lorac takes bos_token, "
                 "eos_token, pad_token and unk_token)", CFG_MAX_KEY_SHOWN,
                 k->type == YAML_SCALAR_NODE ? scalar_text(k) : "?");
            goto fail;
        }
        snprintf(sub, sizeof sub, "special_tokens.%s", lc_special_key((lc_special)t));
        if (tok[t]) {
            FAIL(x, k, sub, "duplicate key");
            goto fail;
        }
        if (!is_null(v) && get_string_dup(x, v, sub, "the token's text", &tok[t]))
            goto fail;
    }
    free_special_tokens(x->c);
    memcpy(x->c->special_tokens, tok, sizeof tok);
    return 0;
fail:
    for (int t = 0; t < LC_SPECIAL_COUNT; t++)
        free(tok[t]);
    return -1;
}

/* chat_template: tokenizer_default (the default), jinja, one of Axolotl's
 * built-in names, or tokenizer_default_fallback_<built-in name>. */
static int set_chat_template(ctx *x, const yaml_node_t *n)
{
    lc_train_config *c = x->c;
    free(c->chat_template);
    c->chat_template = NULL;
    if (is_null(n))
        return 0;
    const char *s = get_string(x, n, "chat_template", "the name of a chat template");
    if (!s)
        return -1;
    size_t fl = strlen(FALLBACK_PREFIX);
    const char *base = strncmp(s, FALLBACK_PREFIX, fl) ? s : s + fl;
    if (!in_names(base, chat_template_names, NELEM(chat_template_names)) ||
        (base != s && (!strcmp(base, "jinja") || !strcmp(base, "tokenizer_default"))))
        return FAIL(x, n, "chat_template", "unknown chat template '%.*s' (expected "
                    "tokenizer_default, jinja, an Axolotl template name such as chatml, llama3, "
                    "qwen_25, or tokenizer_default_fallback_NAME)", CFG_MAX_KEY_SHOWN, s);
    return (c->chat_template = strdup(s)) ? 0 : FAIL(x, n, "chat_template", "out of memory");
}

static void free_strings(char ***list, int *n)
{
    free_list(*list, *n);
    free(*list);
    *list = NULL;
    *n = 0;
}

static void free_eot_tokens(lc_train_config *c) { free_strings(&c->eot_tokens, &c->n_eot_tokens); }

/* A list of at most max non-empty strings (what: "a token string") into
 * *dst / *n_dst (null: none). */
static int set_string_list(ctx *x, const yaml_node_t *n, const char *key, int max,
                           const char *what, char ***dst, int *n_dst)
{
    char d[160], sub[96];
    if (is_null(n)) {
        free_strings(dst, n_dst);
        return 0;
    }
    if (n->type != YAML_SEQUENCE_NODE)
        return FAIL(x, n, key, "expected a list of %ss, got %s", what, describe(n, d, sizeof d));
    yaml_node_item_t *it = n->data.sequence.items.start;
    int len = (int)(n->data.sequence.items.top - it);
    if (len > max)
        return FAIL(x, n, key, "at most %d, got %d", max, len);
    char **list = calloc((size_t)len + 1, sizeof *list);
    if (!list)
        return FAIL(x, n, key, "out of memory");
    for (int i = 0; i < len; i++) {
        snprintf(sub, sizeof sub, "%s[%d]", key, i);
        if (get_string_dup(x, yaml_document_get_node(x->doc, it[i]), sub, what, &list[i])) {
            free_list(list, i);
            free(list);
            return -1;
        }
    }
    free_strings(dst, n_dst);
    *dst = list;
    *n_dst = len;
    return 0;
}

static int set_special(ctx *x, key_id id, const yaml_node_t *n)
{
    lc_train_config *c = x->c;
    const char *key = keys[id].name;
    bool null = is_null(n);
    int i;
    bool b;
    char d[160];
    switch (id) {
    case KEY_BASE_MODEL:
        free(c->base_model);
        c->base_model = NULL;
        if (!null && !(c->base_model = get_path(x, n, key, keys[id].expect)))
            return -1;
        return 0;
    case KEY_ADAPTER:
        if (null) {
            x->adapter_qlora = false;
            return 0;
        }
        if ((i = get_enum(x, n, key, adapter_names, NELEM(adapter_names))) < 0)
            return -1;
        x->adapter_qlora = i == 1;
        return 0;
    case KEY_LOAD_IN_4BIT:
        if (null) {
            x->load_in_4bit = false;
            return 0;
        }
        if (!parse_bool(n, &b))
            return FAIL(x, n, key, "expected true or false, got %s", describe(n, d, sizeof d));
        x->load_in_4bit = b;
        return 0;
    case KEY_LORA_TARGET_MODULES:
        return set_targets(x, n, key, false);
    case KEY_LORA_TARGET_PARAMETERS:
        return set_targets(x, n, key, true);
    case KEY_DATASETS:
        return set_datasets(x, n, key, c->datasets, &c->n_datasets, c->dataset_specs);
    case KEY_TEST_DATASETS:
        return set_datasets(x, n, key, c->test_datasets, &c->n_test_datasets, c->test_dataset_specs);
    case KEY_LR_SCHEDULER:
        if (null) {
            c->lr_scheduler = x->defaults->lr_scheduler;
            return 0;
        }
        if ((i = get_enum(x, n, key, scheduler_names, NELEM(scheduler_names))) < 0)
            return -1;
        c->lr_scheduler = scheduler_values[i];
        return 0;
    case KEY_OPTIMIZER:
        return set_optimizer(x, n);
    case KEY_VAL_SET_SIZE:
        return set_val_set_size(x, n);
    case KEY_SPECIAL_TOKENS:
        return set_special_tokens(x, n);
    case KEY_CHAT_TEMPLATE:
        return set_chat_template(x, n);
    case KEY_CHAT_TEMPLATE_JINJA:
        free(c->chat_template_jinja);
        c->chat_template_jinja = NULL;
        if (null)
            return 0;
        return get_string_dup(x, n, key, keys[id].expect, &c->chat_template_jinja);
    case KEY_EOT_TOKENS:
        return set_string_list(x, n, "eot_tokens", MAX_EOT_TOKENS, "token string",
                               &c->eot_tokens, &c->n_eot_tokens);
    case KEY_SAMPLE_PROMPTS:
        return set_string_list(x, n, "sample_prompts", MAX_SAMPLE_PROMPTS, "prompt",
                               &c->sample_prompts, &c->n_sample_prompts);
    case KEY_EXCESS_LENGTH_STRATEGY:
        if (null) {
            c->excess_length_strategy = x->defaults->excess_length_strategy;
            return 0;
        }
        if ((i = get_enum(x, n, key, excess_names, NELEM(excess_names))) < 0)
            return -1;
        c->excess_length_strategy = excess_values[i];
        return 0;
    case KEY_DEVICE:
        if (null) {
            c->device = x->defaults->device;
            return 0;
        }
        if ((i = get_enum(x, n, key, device_names, NELEM(device_names))) < 0)
            return -1;
        c->device = device_values[i];
        return 0;
    case KEY_COMPUTE_DTYPE:
        if (null) {
            c->compute_dtype = x->defaults->compute_dtype;
            return 0;
        }
        if ((i = get_enum(x, n, key, compute_dtype_names, NELEM(compute_dtype_names))) < 0)
            return -1;
        c->compute_dtype = compute_dtype_values[i];
        return 0;
    case KEY_RESUME_FROM_CHECKPOINT: {
        free(c->resume_from_checkpoint);
        c->resume_from_checkpoint = NULL;
        if (null)
            return 0;
        const char *s = get_string(x, n, key, keys[id].expect);
        if (!s)
            return -1;
        c->resume_from_checkpoint = !strcmp(s, "auto") ? strdup(s) : resolve_path(x->base_dir, s);
        return c->resume_from_checkpoint ? 0 : FAIL(x, n, key, "out of memory");
    }
    default:
        LC_ASSERT(!"not a special key");
        return -1;
    }
}

/* Sets key id from value node n (null: back to the default). */
static int set_key(ctx *x, key_id id, const yaml_node_t *n)
{
    const keydef *k = &keys[id];
    char *field = (char *)x->c + k->off;
    const char *dflt = (const char *)x->defaults + k->off;
    char d[160];
    int rc = 0;
    switch (k->k) {
    case K_SPECIAL:
        rc = set_special(x, id, n);
        break;
    case K_PATH: {
        char **p = (char **)(void *)field;
        free(*p);
        *p = NULL;
        if (!is_null(n) && !(*p = get_path(x, n, k->name, k->expect)))
            rc = -1;
        break;
    }
    case K_BOOL: {
        bool b;
        if (is_null(n))
            memcpy(field, dflt, sizeof b);
        else if (parse_bool(n, &b))
            memcpy(field, &b, sizeof b);
        else
            rc = FAIL(x, n, k->name, "expected %s, got %s", k->expect, describe(n, d, sizeof d));
        break;
    }
    case K_INT:
    case K_I64:
    case K_U64: {
        size_t size = k->k == K_INT ? sizeof(int) : sizeof(int64_t);
        int64_t v;
        if (is_null(n)) {
            memcpy(field, dflt, size);
        } else if (!parse_int(n, &v) || (double)v < k->lo || (double)v > k->hi) {
            rc = FAIL(x, n, k->name, "expected %s, got %s", k->expect, describe(n, d, sizeof d));
        } else if (k->k == K_INT) {
            int iv = (int)v;
            memcpy(field, &iv, size);
        } else if (k->k == K_U64) {
            uint64_t uv = (uint64_t)v;
            memcpy(field, &uv, size);
        } else {
            memcpy(field, &v, size);
        }
        break;
    }
    case K_F64: {
        double v;
        if (is_null(n)) {
            memcpy(field, dflt, sizeof v);
        } else if (!parse_float(n, &v) || v < k->lo || v > k->hi ||
                   ((k->flags & LO_OPEN) && v == k->lo) || ((k->flags & HI_OPEN) && v == k->hi)) {
            rc = FAIL(x, n, k->name, "expected %s, got %s", k->expect, describe(n, d, sizeof d));
        } else {
            memcpy(field, &v, sizeof v);
        }
        break;
    }
    }
    if (rc == 0 && (id == KEY_BASE_MODEL || id == KEY_LORA_MODEL_DIR))
        snprintf(x->raw_dir[id == KEY_BASE_MODEL ? 0 : 1], sizeof x->raw_dir[0], "%s",
                 n && n->type == YAML_SCALAR_NODE ? scalar_text(n) : "");
    if (rc == 0) {
        x->given_seq[id] = ++x->seq;
        x->given_line[id] = node_line(n);
        x->given_set[id] = x->set_text;
    }
    return rc;
}

/* ---- YAML loading ---------------------------------------------------------- */

static const char *event_anchor(const yaml_event_t *e, const yaml_char_t **tag)
{
    *tag = NULL;
    switch (e->type) {
    case YAML_SCALAR_EVENT:
        *tag = e->data.scalar.tag;
        return (const char *)e->data.scalar.anchor;
    case YAML_SEQUENCE_START_EVENT:
        *tag = e->data.sequence_start.tag;
        return (const char *)e->data.sequence_start.anchor;
    case YAML_MAPPING_START_EVENT:
        *tag = e->data.mapping_start.tag;
        return (const char *)e->data.mapping_start.anchor;
    default:
        return NULL;
    }
}

/* libyaml's problem and line; a tab where a token should start (the most
 * common YAML mistake) gets a hint. */
static int syntax_error(ctx *x, const yaml_parser_t *p, const char *text, size_t len)
{
    if (p->error == YAML_MEMORY_ERROR)
        return fail_at(x, x->set_text, 0, NULL, "out of memory while parsing YAML");
    int line = (int)p->problem_mark.line + 1;
    const char *problem = p->problem ? p->problem : "unknown error";
    size_t at = p->problem_mark.index;
    const char *hint = at < len && text[at] == '\t' && !strstr(problem, "tab") ? " (a tab: YAML indents with spaces only)" : "";
    if (p->context)
        return fail_at(x, x->set_text, line, NULL,
                       "YAML syntax error: %s%s (%s started on line %d)", problem, hint,
                       p->context, (int)p->context_mark.line + 1);
    return fail_at(x, x->set_text, line, NULL, "YAML syntax error: %s%s", problem, hint);
}

/* Event pass: syntax, anchors/aliases/tags, one document at most. */
static int prescan(ctx *x, const char *text, size_t len)
{
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p))
        return fail_at(x, x->set_text, 0, NULL, "out of memory");
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    int docs = 0, rc = 0, depth = 0;
    for (;;) {
        yaml_event_t e;
        if (!yaml_parser_parse(&p, &e)) {
            rc = syntax_error(x, &p, text, len);
            break;
        }
        int line = (int)e.start_mark.line + 1;
        const yaml_char_t *tag;
        const char *anchor = event_anchor(&e, &tag);
        /* Hardening (tests/test_hostile.c): libyaml's scanner checks every
         * open flow level on each token, so "[[[[..." nested n deep costs
         * O(n^2): 200 KB of '[' took minutes, a 1 MB file hours. Events come
         * lazily, so stopping at a depth no config needs bounds the work. */
        if (e.type == YAML_SEQUENCE_START_EVENT || e.type == YAML_MAPPING_START_EVENT)
            depth++;
        else if (e.type == YAML_SEQUENCE_END_EVENT || e.type == YAML_MAPPING_END_EVENT)
            depth--;
        if (depth > CFG_MAX_DEPTH)
            rc = fail_at(x, x->set_text, line, NULL,
                         "YAML nested more than %d levels deep", CFG_MAX_DEPTH);
        else if (e.type == YAML_ALIAS_EVENT)
            rc = fail_at(x, x->set_text, line, NULL, "YAML aliases (*%.*s) are not supported",
                         CFG_MAX_KEY_SHOWN, (const char *)e.data.alias.anchor);
        else if (anchor)
            rc = fail_at(x, x->set_text, line, NULL, "YAML anchors (&%.*s) are not supported",
                         CFG_MAX_KEY_SHOWN, anchor);
        else if (tag)
            rc = fail_at(x, x->set_text, line, NULL, "YAML tags (%.*s) are not supported",
                         CFG_MAX_KEY_SHOWN, (const char *)tag);
        else if (e.type == YAML_DOCUMENT_START_EVENT && ++docs > 1)
            rc = fail_at(x, x->set_text, line, NULL,
                         "only one YAML document is allowed (a second one starts here)");
        yaml_event_type_t type = e.type;
        yaml_event_delete(&e);
        if (rc || type == YAML_STREAM_END_EVENT)
            break;
    }
    yaml_parser_delete(&p);
    return rc;
}

/* Loads text into doc (after prescan). doc must be deleted by the caller on
 * success; its root is NULL for an empty stream. */
static int load_doc(ctx *x, const char *text, size_t len, yaml_document_t *doc)
{
    if (len > CFG_MAX_BYTES)
        return fail_at(x, x->set_text, 0, NULL, "%zu bytes, more than the %u allowed", len,
                       CFG_MAX_BYTES);
    if (prescan(x, text, len))
        return -1;
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p))
        return fail_at(x, x->set_text, 0, NULL, "out of memory");
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    int rc = 0;
    if (!yaml_parser_load(&p, doc))
        rc = syntax_error(x, &p, text, len);   /* the document is deleted by libyaml */
    yaml_parser_delete(&p);
    return rc;
}

static int apply_file(ctx *x, const char *yaml, size_t len)
{
    yaml_document_t doc;
    if (load_doc(x, yaml, len, &doc))
        return -1;
    x->doc = &doc;
    int rc = 0;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    char d[160];
    int first_line[KEY_COUNT] = { 0 };
    if (!root || is_null(root)) {
        rc = fail_at(x, NULL, 0, NULL, "the file is empty (expected a mapping of keys)");
    } else if (root->type != YAML_MAPPING_NODE) {
        rc = fail_at(x, NULL, node_line(root), NULL,
                     "the top level must be a mapping of keys (key: value), got %s",
                     describe(root, d, sizeof d));
    } else {
        for (yaml_node_pair_t *p = root->data.mapping.pairs.start;
             p < root->data.mapping.pairs.top && !rc; p++) {
            yaml_node_t *k = yaml_document_get_node(&doc, p->key);
            yaml_node_t *v = yaml_document_get_node(&doc, p->value);
            if (k->type != YAML_SCALAR_NODE || is_null(k)) {
                rc = fail_at(x, NULL, node_line(k), NULL, "keys must be plain names, got %s",
                             describe(k, d, sizeof d));
                break;
            }
            int id = find_key(scalar_text(k));
            if (id < 0) {
                foreign_key(x, node_line(k), scalar_text(k), v);
            } else if (first_line[id]) {
                rc = fail_at(x, NULL, node_line(k), keys[id].name,
                             "duplicate key (first given on line %d)", first_line[id]);
            } else {
                first_line[id] = node_line(k);
                rc = set_key(x, (key_id)id, v);
            }
        }
    }
    x->doc = NULL;
    yaml_document_delete(&doc);
    return rc;
}

static int apply_set(ctx *x, const char *set)
{
    const char *eq = strchr(set, '=');
    if (!eq || eq == set)
        return fail_at(x, set, 0, NULL, "expected key=value");
    char name[128];
    size_t nl = (size_t)(eq - set);
    if (nl >= sizeof name) {
        unknown_key(x, set, 0, "(too long)");
        return 0;
    }
    memcpy(name, set, nl);
    name[nl] = '\0';
    int id = find_key(name);
    const char *value = eq + 1;
    x->set_text = set;
    const char *saved_base = x->base_dir;
    x->base_dir = NULL;   /* relative override paths stay relative to the cwd */
    yaml_document_t doc;
    int rc = load_doc(x, value, strlen(value), &doc);
    if (rc == 0) {
        x->doc = &doc;
        if (id >= 0)
            rc = set_key(x, (key_id)id, yaml_document_get_root_node(&doc));
        else
            foreign_key(x, 0, name, yaml_document_get_root_node(&doc));
        x->doc = NULL;
        yaml_document_delete(&doc);
    }
    x->base_dir = saved_base;
    x->set_text = NULL;
    return rc;
}

/* Where key id was last given, for cross-key errors. */
#define GIVEN(x, id) (x)->given_set[id], (x)->given_line[id], keys[id].name

/* Axolotl's rules between the data keys. */
static int check_data_keys(ctx *x)
{
    lc_train_config *c = x->c;
    if (c->chat_template && !strcmp(c->chat_template, "jinja") && !c->chat_template_jinja)
        return fail_at(x, GIVEN(x, KEY_CHAT_TEMPLATE), "chat_template: jinja needs "
                       "chat_template_jinja (the template, or the path of a .jinja file)");
    if (c->chat_template_jinja && c->chat_template && strcmp(c->chat_template, "jinja"))
        return fail_at(x, GIVEN(x, KEY_CHAT_TEMPLATE_JINJA), "is used only with "
                       "chat_template: jinja (or no chat_template), but chat_template is %s",
                       c->chat_template);
    if (c->chat_template_jinja && !c->chat_template && !(c->chat_template = strdup("jinja")))
        return fail_at(x, NULL, 0, "chat_template", "out of memory");
    if (c->val_set_size > 0 && c->n_test_datasets > 0)
        return fail_at(x, GIVEN(x, KEY_VAL_SET_SIZE), "set either val_set_size or "
                       "test_datasets, not both (as Axolotl)");
    return 0;
}

/* base_model (or a GGUF file) and lora_model_dir must be directories (checked when the
 * config is loaded from a file, not by lc_train_config_parse). A value
 * that names nothing and reads as a hub id ("org/name") says how to get a
 * local copy. */
static int check_dir(ctx *x, key_id id, const char *path)
{
    struct stat st;
    if (!path || (stat(path, &st) == 0 && S_ISDIR(st.st_mode)))
        return 0;
    if (id == KEY_BASE_MODEL && stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
        lc_gguf_model_is_gguf(path))
        return 0; /* a llama.cpp GGUF file (train/gguf_model.h) */
    int e = errno;
    bool exists = stat(path, &st) == 0;
    const char *g = x->raw_dir[id == KEY_BASE_MODEL ? 0 : 1];
    const char *slash = strchr(g, '/');
    bool hub = !exists && g[0] != '/' && g[0] != '.' && g[0] != '~' &&
               !(slash && strchr(slash + 1, '/'));
    if (hub)
        return fail_at(x, x->given_set[id], x->given_line[id], NULL,
                       "%s '%s' is not a directory (a Hugging Face hub id needs a local copy: "
                       "huggingface-cli download %s --local-dir DIR, then %s: DIR)",
                       keys[id].name, g, g, keys[id].name);
    return fail_at(x, x->given_set[id], x->given_line[id], NULL,
                   "%s '%s' is not a directory (%s)", keys[id].name, path,
                   exists ? "it is a file" : strerror(e));
}

/* Cross-key rules, after the file and every override. */
static int finalize(ctx *x)
{
    lc_train_config *c = x->c;
    if (!c->base_model)
        return fail_at(x, NULL, 0, "base_model",
                       "required (the directory of the Hugging Face model to adapt, or a .gguf file)");
    if (c->n_datasets == 0)
        return fail_at(x, x->given_set[KEY_DATASETS], x->given_line[KEY_DATASETS], "datasets",
                       "required: a non-empty list of {path: file.jsonl, type: tokenized}");
    if (c->warmup_steps > 0 && c->warmup_ratio > 0) {
        key_id later = x->given_seq[KEY_WARMUP_RATIO] > x->given_seq[KEY_WARMUP_STEPS]
                           ? KEY_WARMUP_RATIO : KEY_WARMUP_STEPS;
        return fail_at(x, x->given_set[later], x->given_line[later], keys[later].name,
                       "warmup_steps (%lld) and warmup_ratio (%g) are both set; set only one "
                       "(the other 0)", (long long)c->warmup_steps, c->warmup_ratio);
    }
    c->qlora = x->adapter_qlora || x->load_in_4bit;
    if (c->lora_target_linear)
        c->lora.all_linear = true;
    bool any = c->lora.all_linear;
    for (int m = 0; m < LC_MOD_COUNT; m++)
        any |= c->lora.targets[m];
    if (!any)
        return fail_at(x, x->given_set[KEY_LORA_TARGET_MODULES],
                       x->given_line[KEY_LORA_TARGET_MODULES], "lora_target_modules",
                       "no modules to adapt; list at least one of %s, or set "
                       "lora_target_linear: true", lc_module_names());
    if (check_data_keys(x) || (x->check_dirs && (check_dir(x, KEY_BASE_MODEL, c->base_model) ||
                                                  check_dir(x, KEY_LORA_MODEL_DIR,
                                                            c->lora_model_dir))))
        return -1;
    c->adam.weight_decay = c->weight_decay;
    if (!c->output_dir && !(c->output_dir = resolve_path(x->base_dir, "out")))
        return fail_at(x, NULL, 0, "output_dir", "out of memory");
    return 0;
}

/* ---- public API ------------------------------------------------------------ */

void lc_train_config_defaults(lc_train_config *c)
{
    memset(c, 0, sizeof *c);
    c->lora.r = 8;
    c->lora.alpha = 16;
    c->lora.dropout = 0;
    c->lora.use_rslora = false;
    c->lora.use_dora = false;
    c->lora.all_linear = true;
    c->sequence_len = 2048;
    c->shuffle = true;
    c->micro_batch_size = 2;
    c->gradient_accumulation_steps = 1;
    c->num_epochs = 1;
    c->learning_rate = 2.0e-4;
    c->lr_scheduler = LC_LR_COSINE;
    c->adam.beta1 = 0.9;
    c->adam.beta2 = 0.999;
    c->adam.eps = 1.0e-8;
    c->adam.weight_decay = 0.0;
    c->max_grad_norm = 1.0;
    c->seed = 42;
    c->bnb_4bit_blocksize = 64;
    c->bnb_4bit_use_double_quant = true;
    c->device = LC_DEVICE_AUTO;
    c->compute_dtype = LC_COMPUTE_AUTO;
    c->logging_steps = 1;
    c->sample_max_new_tokens = 64;
    c->loraplus_lr_embedding = 1e-6; /* Axolotl's default */
    /* output_dir stays NULL here: parsing fills in "out" resolved against
     * the config's directory when the file does not set it. */
}

void lc_train_config_free(lc_train_config *c)
{
    if (!c)
        return;
    free(c->config_path);
    free(c->base_model);
    free(c->lora_model_dir);
    for (int i = 0; i < c->n_datasets; i++)
        lc_dataset_spec_free(&c->dataset_specs[i]);
    for (int i = 0; i < c->n_test_datasets; i++)
        lc_dataset_spec_free(&c->test_dataset_specs[i]);
    free_list(c->datasets, c->n_datasets);
    free_list(c->test_datasets, c->n_test_datasets);
    free(c->output_dir);
    free(c->resume_from_checkpoint);
    free_special_tokens(c);
    free_eot_tokens(c);
    free_strings(&c->sample_prompts, &c->n_sample_prompts);
    free(c->dataset_prepared_path);
    free(c->chat_template);
    free(c->chat_template_jinja);
    free(c->warning);
    c->dataset_prepared_path = c->chat_template = c->chat_template_jinja = c->warning = NULL;
    c->config_path = c->base_model = c->lora_model_dir = NULL;
    c->output_dir = c->resume_from_checkpoint = NULL;
    c->n_datasets = c->n_test_datasets = 0;
}

int lc_train_config_key_count(void)
{
    return KEY_COUNT;
}

lc_resume_class lc_train_config_key(int i, const char **name)
{
    LC_ASSERT(i >= 0 && i < KEY_COUNT);
    *name = keys[i].name;
    return resume_class[i];
}

/* Shortest "%.Ng" that reads back as v, so 2e-4 prints as 0.0002. */
static void format_double(double v, char *buf, size_t n)
{
    if (!buf || n == 0) /* (also keeps GCC's -Wformat-truncation quiet in sanitizer builds) */
        return;
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, n, "%.*g", p, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

static void format_list(char *const *list, int count, char *buf, size_t n)
{
    snprintf(buf, n, "%s", count ? "" : "none");
    for (int i = 0; i < count; i++) {
        size_t l = strlen(buf);
        snprintf(buf + l, n - l, "%s%s", i ? "," : "", list[i]);
    }
}

static void data_key_value(const lc_train_config *c, key_id id, char *buf, size_t n);

void lc_train_config_value(const lc_train_config *c, int i, char *buf, size_t n)
{
    LC_ASSERT(i >= 0 && i < KEY_COUNT && n > 0);
    const keydef *k = &keys[i];
    const char *field = (const char *)c + k->off;
    buf[0] = '\0';
    switch (k->k) {
    case K_INT: {
        int v;
        memcpy(&v, field, sizeof v);
        snprintf(buf, n, "%d", v);
        return;
    }
    case K_I64: {
        int64_t v;
        memcpy(&v, field, sizeof v);
        snprintf(buf, n, "%lld", (long long)v);
        return;
    }
    case K_U64: {
        uint64_t v;
        memcpy(&v, field, sizeof v);
        snprintf(buf, n, "%llu", (unsigned long long)v);
        return;
    }
    case K_F64: {
        double v;
        memcpy(&v, field, sizeof v);
        format_double(v, buf, n);
        return;
    }
    case K_BOOL: {
        bool v;
        memcpy(&v, field, sizeof v);
        snprintf(buf, n, "%s", v ? "true" : "false");
        return;
    }
    case K_PATH: {
        const char *v;
        memcpy(&v, field, sizeof v);
        snprintf(buf, n, "%s", v ? v : "none");
        return;
    }
    case K_SPECIAL:
        break;
    }
    char *mods[LC_MOD_COUNT];
    int nm = 0;
    switch ((key_id)i) {
    case KEY_ADAPTER:
        snprintf(buf, n, "%s", c->qlora ? "qlora" : "lora");
        return;
    case KEY_LORA_TARGET_MODULES:
    case KEY_LORA_TARGET_PARAMETERS: {
        bool experts = i == KEY_LORA_TARGET_PARAMETERS;
        if (!experts && c->lora.all_linear) {
            snprintf(buf, n, "all-linear");
            return;
        }
        for (int m = 0; m < LC_MOD_COUNT; m++)
            if (c->lora.targets[m] && lc_module_is_expert(m) == experts)
                mods[nm++] = (char *)lc_module_name((lc_module)m);
        format_list(mods, nm, buf, n);
        return;
    }
    case KEY_TEST_DATASETS:
        format_list(c->test_datasets, c->n_test_datasets, buf, n);
        return;
    case KEY_LR_SCHEDULER:
        for (int s = 0; s < NELEM(scheduler_values); s++)
            if (scheduler_values[s] == c->lr_scheduler)
                snprintf(buf, n, "%s", scheduler_names[s]);
        return;
    case KEY_DEVICE:
        for (int d = 0; d < NELEM(device_values); d++)
            if (device_values[d] == c->device)
                snprintf(buf, n, "%s", device_names[d]);
        return;
    case KEY_COMPUTE_DTYPE:
        for (int d = 0; d < NELEM(compute_dtype_values); d++)
            if (compute_dtype_values[d] == c->compute_dtype)
                snprintf(buf, n, "%s", compute_dtype_names[d]);
        return;
    default:
        data_key_value(c, (key_id)i, buf, n);
        return;
    }
}

/* FNV-1a of s, for values too long to record as they are. */
static uint64_t text_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* The data keys' values for the run record. */
static void data_key_value(const lc_train_config *c, key_id id, char *buf, size_t n)
{
    switch (id) {
    case KEY_VAL_SET_SIZE:
        if (c->val_set_size_rows)
            snprintf(buf, n, "%.0f rows", c->val_set_size);
        else
            format_double(c->val_set_size, buf, n);
        return;
    case KEY_SPECIAL_TOKENS:
        for (int t = 0; t < LC_SPECIAL_COUNT; t++)
            if (c->special_tokens[t]) {
                size_t l = strlen(buf);
                snprintf(buf + l, n - l, "%s%s=%s", l ? "," : "", lc_special_key((lc_special)t),
                         c->special_tokens[t]);
            }
        if (!*buf)
            snprintf(buf, n, "none");
        return;
    case KEY_CHAT_TEMPLATE:
        snprintf(buf, n, "%s", c->chat_template ? c->chat_template : "tokenizer_default");
        return;
    case KEY_CHAT_TEMPLATE_JINJA:
        if (c->chat_template_jinja)
            snprintf(buf, n, "%zu bytes, fnv1a %016llx", strlen(c->chat_template_jinja),
                     (unsigned long long)text_hash(c->chat_template_jinja));
        else
            snprintf(buf, n, "none");
        return;
    case KEY_EOT_TOKENS:
        format_list(c->eot_tokens, c->n_eot_tokens, buf, n);
        return;
    case KEY_SAMPLE_PROMPTS:
        format_list(c->sample_prompts, c->n_sample_prompts, buf, n);
        return;
    case KEY_EXCESS_LENGTH_STRATEGY:
        for (int e = 0; e < NELEM(excess_values); e++)
            if (excess_values[e] == c->excess_length_strategy)
                snprintf(buf, n, "%s", excess_names[e]);
        return;
    default:
        return; /* not compared on resume (resume_class NA) */
    }
}

static int parse(lc_train_config *c, const char *yaml, size_t len, const char *label,
                 const char *base_dir, char *const *sets, int n_sets, bool check_dirs,
                 lc_error *err)
{
    lc_train_config defaults;
    lc_train_config_defaults(&defaults);
    lc_train_config_defaults(c);
    ctx x = { .c = c, .defaults = &defaults, .label = label ? label : "<config>",
              .base_dir = (base_dir && *base_dir) ? base_dir : NULL, .err = err,
              .check_dirs = check_dirs };
    int rc = 0;
    if (label && !(c->config_path = strdup(label)))
        rc = fail_at(&x, NULL, 0, NULL, "out of memory");
    if (!rc)
        rc = apply_file(&x, yaml, len);
    for (int i = 0; i < n_sets && !rc; i++)
        rc = apply_set(&x, sets[i]);
    if (!rc)
        rc = report_keys(&x);
    if (!rc)
        rc = finalize(&x);
    if (!rc && x.n_ax && !(c->warning = accepted_line(&x)))
        rc = fail_at(&x, NULL, 0, NULL, "out of memory");
    if (rc) {
        lc_train_config_free(c);
        lc_train_config_defaults(c);
    }
    return rc;
}

int lc_train_config_parse(lc_train_config *c, const char *yaml, size_t len, const char *label,
                          const char *base_dir, char *const *sets, int n_sets, lc_error *err)
{
    return parse(c, yaml, len, label, base_dir, sets, n_sets, false, err);
}

int lc_train_config_load(lc_train_config *c, const char *path, char *const *sets, int n_sets,
                         lc_error *err)
{
    lc_train_config_defaults(c);
    size_t len;
    char *text = lc_read_file(path, CFG_MAX_BYTES, &len, err);
    if (!text)
        return -1;
    /* The directory of the config file: everything before the last '/'. */
    const char *slash = strrchr(path, '/');
    char *dir = NULL;
    if (slash) {
        size_t dl = slash == path ? 1 : (size_t)(slash - path);
        dir = malloc(dl + 1);
        if (!dir) {
            free(text);
            return lc_error_set(err, "%s: out of memory", path);
        }
        memcpy(dir, path, dl);
        dir[dl] = '\0';
    }
    int rc = parse(c, text, len, path, dir, sets, n_sets, true, err);
    free(dir);
    free(text);
    if (rc == 0 && c->warning)
        fprintf(stderr, "%s\n", c->warning);
    return rc;
}

/* config.h — the training YAML (Axolotl's key names), parsed and checked.
 *
 * Every key is known: unknown keys are one error naming each key's line and
 * the nearest known key; Axolotl keys lorac does not implement are accepted
 * without effect (one warning line) or refused (one error); a wrong type or an impossible value names the key, the
 * line and what was expected. Relative paths resolve against the config
 * file's directory. `--set key=value` overrides are applied after the file,
 * with the value parsed as a YAML scalar (or flow sequence). */
#ifndef LC_CONFIG_H
#define LC_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "autograd/error.h"
#include "data/dataset.h"
#include "data/dataset_spec.h"
#include "data/tokenizer.h"
#include "optim/adamw.h"
#include "train/lora.h"

#define LC_CONFIG_MAX_DATASETS 16

typedef enum lc_device { LC_DEVICE_AUTO, LC_DEVICE_CPU, LC_DEVICE_CUDA } lc_device;
/* Parses a `device` value ("auto", "cpu", "cuda"); -1 when unknown. */
int lc_device_from_name(const char *s, lc_device *out);
/* compute_dtype: the dtype of activations and frozen weights in a step (auto:
 * bfloat16 on CUDA, float32 on the CPU); LoRA master weights, gradients and
 * AdamW state are float32 always. */
typedef enum lc_compute_dtype {
    LC_COMPUTE_AUTO, LC_COMPUTE_BF16, LC_COMPUTE_F32
} lc_compute_dtype;
/* Parses a `compute_dtype` value ("auto", "bfloat16", "float32"); -1 when unknown. */
int lc_compute_dtype_from_name(const char *s, lc_compute_dtype *out);

typedef struct lc_train_config {
    char *config_path;              /* the YAML file (absolute or as given) */
    char *base_model;               /* resolved path */
    bool qlora;                     /* adapter: qlora (or load_in_4bit: true) */
    int64_t bnb_4bit_blocksize;     /* NF4 block (64) */
    bool bnb_4bit_use_double_quant; /* quantize the absmax values too (true) */
    lc_lora_config lora;            /* lora_r, lora_alpha, lora_dropout, targets, rslora */
    bool lora_target_linear;
    char *lora_model_dir;           /* NULL or resolved path */
    char *datasets[LC_CONFIG_MAX_DATASETS];      /* resolved paths */
    lc_dataset_spec dataset_specs[LC_CONFIG_MAX_DATASETS]; /* each one's type and options */
    int n_datasets;
    char *test_datasets[LC_CONFIG_MAX_DATASETS];
    lc_dataset_spec test_dataset_specs[LC_CONFIG_MAX_DATASETS];
    int n_test_datasets;
    int64_t sequence_len;
    bool sample_packing;
    bool shuffle;
    int64_t micro_batch_size;
    int64_t gradient_accumulation_steps;
    int64_t num_epochs;
    int64_t max_steps;              /* > 0 overrides num_epochs */
    double learning_rate;
    lc_lr_schedule lr_scheduler;
    int64_t warmup_steps;
    double warmup_ratio;            /* used when warmup_steps is 0 */
    double cosine_min_lr_ratio;
    double weight_decay;
    lc_adamw_hparams adam;          /* adam_beta1, adam_beta2, adam_epsilon (weight_decay copied) */
    double max_grad_norm;
    bool gradient_checkpointing;
    uint64_t seed;
    lc_device device;
    lc_compute_dtype compute_dtype;
    char *output_dir;               /* resolved path */
    int64_t logging_steps;
    int64_t save_steps;
    int64_t save_total_limit;
    int64_t eval_steps;
    char *resume_from_checkpoint;   /* NULL, "auto", or a resolved path */
    int64_t max_bad_steps;          /* refused non-finite steps before the run stops (0 = never stop) */
    bool overwrite_output_dir;      /* a fresh run may delete another run's outputs in output_dir */
    bool resume_allow_data_change;  /* resume although the training data changed */
    double loraplus_lr_ratio;       /* > 0: lora_B learns at this times the learning rate (LoRA+);
                                       0 (null): off */
    double loraplus_lr_embedding;   /* LoRA+'s rate for embedding adapters: lorac trains none */
    bool use_tensorboard;           /* write TensorBoard event files to output_dir/runs/ */
    /* Data keys (Axolotl's): parsed and checked; the data pipeline reads them. */
    double val_set_size;            /* fraction in [0, 1), or a row count (val_set_size_rows) */
    bool val_set_size_rows;         /* val_set_size was an integer: a number of rows */
    bool train_on_inputs;           /* train on prompt tokens too (false) */
    char *special_tokens[LC_SPECIAL_COUNT]; /* bos/eos/unk/pad_token (lc_special) or NULL */
    char *dataset_prepared_path;    /* NULL or resolved path */
    char *chat_template;            /* NULL (tokenizer_default), a built-in name or "jinja" */
    char *chat_template_jinja;      /* NULL, or a template text or a .jinja path, as given */
    char **eot_tokens;              /* n_eot_tokens strings */
    int n_eot_tokens;
    lc_excess excess_length_strategy; /* LC_EXCESS_DROP unless set (data/dataset.h) */
    char **sample_prompts;          /* generated at each evaluation (train/samples.h) */
    int n_sample_prompts;
    int64_t sample_max_new_tokens;  /* 64 */
    /* Axolotl keys accepted without effect: one line for stderr
     * ("<label>: accepted without effect ...: a, b"), or NULL. */
    char *warning;
} lc_train_config;

/* How a key may differ between a checkpoint and the run that resumes it
 * (the table is in config.c; configs/README.md lists it). */
typedef enum lc_resume_class {
    LC_RESUME_NA,     /* not compared */
    LC_RESUME_FIXED,  /* defines the saved state: a change is refused */
    LC_RESUME_FREE,   /* steers the rest of the run: a change is allowed and reported */
} lc_resume_class;

/* Keys are numbered 0 .. lc_train_config_key_count()-1 in table order. */
int lc_train_config_key_count(void);
lc_resume_class lc_train_config_key(int i, const char **name);
/* Key i's value in c as canonical text ("0.0002", "true", "q_proj,v_proj");
 * "" for keys that are not compared. */
void lc_train_config_value(const lc_train_config *c, int i, char *buf, size_t n);

/* Defaults (the values listed in configs/README, as Axolotl's). */
void lc_train_config_defaults(lc_train_config *c);
/* Parses the YAML file at path, then applies n_sets "key=value" overrides;
 * then checks that base_model and lora_model_dir are directories (a hub id
 * is named as one), and prints c->warning, if any, as one line on stderr. */
int lc_train_config_load(lc_train_config *c, const char *path, char *const *sets, int n_sets,
                         lc_error *err);
/* Same from text (for tests and fuzzing); base_dir resolves relative paths. */
int lc_train_config_parse(lc_train_config *c, const char *yaml, size_t len, const char *label,
                          const char *base_dir, char *const *sets, int n_sets, lc_error *err);
void lc_train_config_free(lc_train_config *c);

#endif

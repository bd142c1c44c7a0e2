/* axolotl_keys.c — the table of Axolotl keys lorac accepts without effect or
 * refuses (see axolotl_keys.h). Names and meanings follow Axolotl 0.19.0's
 * schema (the files of axolotl/utils/schemas/) and its example configs. A key lorac
 * implements is not here: it is in train/config.c's key table. */
#include "train/axolotl_keys.h"

#include <string.h>

#define ANY(n, note) { n, LC_AX_ANY, note }
#define OFF(n, did) { n, LC_AX_OFF, did }

static const char F32[] = "lorac computes in f32 on CPU";
static const char ATTN[] = "lorac computes exact attention itself";
static const char KERNEL[] = "a faster kernel for the same math";
static const char DIST[] = "lorac trains in one process";

static const lc_ax_key table[] = {
    /* Logging, experiment trackers, hubs. */
    ANY("wandb_*", NULL), ANY("use_wandb", NULL), ANY("mlflow_*", NULL),
    ANY("use_mlflow", NULL), ANY("hf_mlflow_log_artifacts", NULL), ANY("comet_*", NULL),
    ANY("use_comet", NULL), ANY("trackio_*", NULL), ANY("use_trackio", NULL),
    ANY("use_otel_metrics", NULL), ANY("otel_metrics_*", NULL),
    ANY("include_tokens_per_second", NULL), ANY("include_tkps", NULL),
    ANY("hub_model_id", NULL), ANY("hub_strategy", NULL), ANY("hub_revision", NULL),
    ANY("push_dataset_to_hub", NULL), ANY("hf_use_auth_token", NULL),
    ANY("strict", NULL), ANY("debug", NULL),
    /* Model and tokenizer classes: lorac reads config.json and tokenizer.json. */
    ANY("model_type", "lorac reads the architecture from config.json"),
    ANY("tokenizer_type", "lorac reads tokenizer.json"),
    ANY("tokenizer_use_fast", "lorac reads tokenizer.json"),
    ANY("trust_remote_code", "lorac runs no model code"),
    ANY("is_llama_derived_model", "lorac reads the architecture from config.json"),
    ANY("is_mistral_derived_model", "lorac reads the architecture from config.json"),
    ANY("is_qwen_derived_model", "lorac reads the architecture from config.json"),
    /* Precision: the CPU path computes in f32. */
    ANY("bf16", F32), ANY("fp16", F32), ANY("tf32", F32), ANY("bfloat16", F32),
    ANY("float16", F32),
    /* Attention implementations and kernels for the same math. */
    ANY("flash_attention", ATTN), ANY("xformers_attention", ATTN), ANY("sdp_attention", ATTN),
    ANY("flex_attention", ATTN), ANY("eager_attention", ATTN), ANY("flash_attn_*", ATTN),
    ANY("flash_optimum", ATTN), ANY("attn_implementation", ATTN),
    ANY("lora_mlp_kernel", KERNEL), ANY("lora_qkv_kernel", KERNEL), ANY("lora_o_kernel", KERNEL),
    ANY("liger_*", KERNEL), ANY("cut_cross_entropy", KERNEL), ANY("chunked_cross_entropy", KERNEL),
    ANY("torch_compile", KERNEL), ANY("torch_compile_backend", KERNEL),
    ANY("torch_compile_mode", KERNEL), ANY("use_kernels", KERNEL),
    ANY("gradient_checkpointing_kwargs", "same gradients; lorac's gradient_checkpointing "
                                         "recomputes bit for bit"),
    /* Padding, evaluation, saving, devices and processes. */
    ANY("pad_to_sequence_len", "padding does not change the loss"),
    ANY("eval_sample_packing", NULL), ANY("eval_batch_size", NULL), ANY("eval_table_size", NULL),
    ANY("eval_table_max_new_tokens", NULL), ANY("eval_max_new_tokens", NULL),
    ANY("do_causal_lm_eval", NULL), ANY("eval_causal_lm_metrics", NULL),
    ANY("evals_per_epoch", "lorac evaluates every eval_steps"),
    ANY("saves_per_epoch", "lorac saves every save_steps"),
    ANY("save_safetensors", "lorac always writes safetensors"),
    ANY("save_first_step", NULL), ANY("save_only_model", NULL),
    ANY("local_rank", DIST), ANY("world_size", DIST), ANY("ddp_timeout", DIST),
    ANY("ddp_bucket_cap_mb", DIST), ANY("ddp_broadcast_buffers", DIST),
    ANY("ddp_find_unused_parameters", DIST), ANY("device_map", DIST), ANY("max_memory", DIST),
    ANY("gpu_memory_limit", DIST), ANY("low_cpu_mem_usage", NULL), ANY("lora_on_cpu", NULL),
    ANY("qlora_sharded_model_loading", NULL), ANY("dataloader_num_workers", NULL),
    ANY("dataloader_pin_memory", NULL), ANY("dataloader_prefetch_factor", NULL),
    ANY("dataset_processes", NULL), ANY("dataset_num_proc", NULL),
    ANY("dataset_keep_in_memory", NULL), ANY("gc_steps", NULL),
    ANY("torch_empty_cache_steps", NULL), ANY("torchdistx_path", NULL),
    ANY("remove_unused_columns", NULL), ANY("tokenizer_save_jinja_files", NULL),
    ANY("sample_packing_eff_est", NULL), ANY("sample_packing_bin_size", NULL),
    ANY("sample_packing_group_size", NULL), ANY("profiler_steps", NULL),

    /* Refused unless off: each would change the training. */
    OFF("load_in_8bit", "would load the base model in 8 bits (LLM.int8)"),
    OFF("gptq", "would load a GPTQ-quantized base model"),
    OFF("group_by_length", "would batch rows of similar length together"),
    OFF("deepspeed", "would train under DeepSpeed (ZeRO) with its config"),
    OFF("fsdp", "would shard the model with FSDP across GPUs"),
    OFF("fsdp_config", "would shard the model with FSDP across GPUs"),
    OFF("fsdp_version", "would shard the model with FSDP across GPUs"),
    OFF("use_ray", "would train with Ray workers"),
    OFF("early_stopping_patience", "would stop when the eval loss stops improving"),
    OFF("loss_watchdog_threshold", "would stop the run when the loss stays above it"),
    OFF("loss_watchdog_patience", "would stop the run when the loss stays above the threshold"),
    OFF("auto_find_batch_size", "would lower micro_batch_size until it fits"),
    OFF("auto_resume_from_checkpoints", "would resume from the newest checkpoint; use "
                                         "resume_from_checkpoint: auto"),
    OFF("neftune_noise_alpha", "would add noise to the embeddings (NEFTune)"),
    OFF("relora*", "would merge and restart the adapter periodically (ReLoRA)"),
    OFF("lora_fan_in_fan_out", "would read the base weights transposed (GPT-2 Conv1D layout)"),
    OFF("unfrozen_parameters", "would train these base parameters too"),
    OFF("lora_modules_to_save", "would train and save full copies of these modules"),
    OFF("peft_layers_to_transform", "would adapt only these layers"),
    OFF("lr_quadratic_warmup", "would warm the learning rate up quadratically"),
    OFF("cosine_constant_lr_ratio", "would hold the learning rate constant for part of the run"),
    OFF("lr_scheduler_kwargs", "would pass arguments to the learning-rate schedule"),
    OFF("optim_args", "would pass arguments to the optimizer"),
    OFF("optim_target_modules", "would apply the optimizer to these modules only"),
    OFF("lr_groups", "would give parameter groups their own learning rates"),
    OFF("embedding_lr", "would give the embeddings their own learning rate"),
    OFF("embedding_lr_scale", "would scale the embeddings' learning rate"),
    OFF("rl", "would train with a preference or RL objective (DPO, KTO, ORPO, GRPO)"),
    OFF("s2_attention", "would use shifted sparse attention (LongLoRA)"),
    OFF("sage_attention", "would compute attention in 8 bits (SageAttention)"),
    OFF("pretraining_dataset", "would stream a pretraining dataset"),
    OFF("streaming", "would stream the datasets"),
    OFF("dataset_shard_num", "would train on one shard of the data"),
    OFF("dataset_shard_idx", "would train on one shard of the data"),
    OFF("dataset_exact_deduplication", "would drop duplicate rows"),
    OFF("curriculum_sampling", "would read rows in order; use shuffle: false"),
    OFF("sample_packing_sequentially", "would pack rows in order"),
    OFF("default_system_message", "would add a system message to chat rows"),
    OFF("tokens", "would add tokens to the tokenizer and the embeddings"),
    OFF("added_tokens_overrides", "would rename tokens of the tokenizer"),
    OFF("resize_token_embeddings_to_32x", "would resize the embeddings"),
    OFF("shrink_embeddings", "would shrink the embeddings to the tokenizer"),
    OFF("mean_resizing_embeddings", "would initialize new embeddings to the mean"),
    OFF("fix_untrained_tokens", "would reset the embeddings of untrained tokens"),
    OFF("model_quantization_config", "would load the base model quantized"),
    OFF("plugins", "would load Axolotl plugins"),
};

int lc_ax_key_count(void)
{
    return (int)(sizeof table / sizeof table[0]);
}

const lc_ax_key *lc_ax_key_at(int i)
{
    return i >= 0 && i < lc_ax_key_count() ? &table[i] : NULL;
}

const lc_ax_key *lc_ax_key_find(const char *name)
{
    for (int i = 0; i < lc_ax_key_count(); i++)
        if (!strcmp(table[i].name, name))
            return &table[i];
    for (int i = 0; i < lc_ax_key_count(); i++) {
        size_t l = strlen(table[i].name);
        if (table[i].name[l - 1] == '*' && !strncmp(table[i].name, name, l - 1))
            return &table[i];
    }
    return NULL;
}

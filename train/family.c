/* family.c — the per-architecture tables (see family.h). */
#include "train/family.h"

#include <stdio.h>
#include <string.h>

#define LLAMA_MODULES .n_modules = 7, \
    .modules = {LC_MOD_Q, LC_MOD_K, LC_MOD_V, LC_MOD_O, LC_MOD_GATE, LC_MOD_UP, LC_MOD_DOWN}
/* attention, and the experts' parameters (lora_target_parameters) */
#define MOE_MODULES .n_modules = 6, .modules = {LC_MOD_Q, LC_MOD_K, LC_MOD_V, LC_MOD_O, \
                                                LC_MOD_EXPERTS_GATE_UP, LC_MOD_EXPERTS_DOWN}
#define LLAMA_NORMS .norm_names = {"input_layernorm", NULL, "post_attention_layernorm", NULL}
#define GEMMA_NORMS .norm_names = {"input_layernorm", "post_attention_layernorm", \
                                   "pre_feedforward_layernorm", "post_feedforward_layernorm"}

static const lc_family families[] = {
    {.arch = LC_ARCH_LLAMA, .model_type = "llama", LLAMA_MODULES, LLAMA_NORMS,
     .act = LC_ACT_SILU, .gguf = true},
    {.arch = LC_ARCH_MISTRAL, .model_type = "mistral", LLAMA_MODULES, LLAMA_NORMS,
     .act = LC_ACT_SILU, .gguf = true},
    {.arch = LC_ARCH_QWEN2, .model_type = "qwen2", LLAMA_MODULES, LLAMA_NORMS,
     .act = LC_ACT_SILU, .gguf = true},
    {.arch = LC_ARCH_QWEN3, .model_type = "qwen3", LLAMA_MODULES, LLAMA_NORMS,
     .act = LC_ACT_SILU, .qk_norm = true, .gguf = true},
    {.arch = LC_ARCH_GEMMA2, .model_type = "gemma2", LLAMA_MODULES, GEMMA_NORMS,
     .act = LC_ACT_GELU_TANH, .norm_plus_one = true, .embed_scale = true},
    {.arch = LC_ARCH_GEMMA3, .model_type = "gemma3_text", LLAMA_MODULES, GEMMA_NORMS,
     .act = LC_ACT_GELU_TANH, .norm_plus_one = true, .embed_scale = true, .qk_norm = true},
    {.arch = LC_ARCH_PHI3, .model_type = "phi3", .n_modules = 4,
     .modules = {LC_MOD_QKV, LC_MOD_O, LC_MOD_GATE_UP, LC_MOD_DOWN}, LLAMA_NORMS,
     .act = LC_ACT_SILU},
    {.arch = LC_ARCH_MIXTRAL, .model_type = "mixtral", MOE_MODULES, LLAMA_NORMS,
     .act = LC_ACT_SILU, .moe = true, .moe_parent = "block_sparse_moe",
     .expert_linears = {"w1", "w3", "w2"}},
    {.arch = LC_ARCH_QWEN3_MOE, .model_type = "qwen3_moe", MOE_MODULES, LLAMA_NORMS,
     .act = LC_ACT_SILU, .qk_norm = true, .moe = true, .moe_parent = "mlp",
     .expert_linears = {"gate_proj", "up_proj", "down_proj"}},
};
#define N_FAMILIES (sizeof families / sizeof families[0])

const lc_family *lc_family_of(lc_arch a)
{
    for (size_t i = 0; i < N_FAMILIES; i++)
        if (families[i].arch == a)
            return &families[i];
    return &families[0];
}

const lc_family *lc_family_by_model_type(const char *s)
{
    for (size_t i = 0; s && i < N_FAMILIES; i++)
        if (strcmp(families[i].model_type, s) == 0)
            return &families[i];
    return NULL;
}

const char *lc_family_model_types(void)
{
    static char list[256];
    if (!list[0])
        for (size_t i = 0; i < N_FAMILIES; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                     families[i].model_type);
    return list;
}

bool lc_family_has_module(const lc_family *f, lc_module m)
{
    for (int i = 0; i < f->n_modules; i++)
        if (f->modules[i] == m)
            return true;
    return false;
}

void lc_family_expert_weight_name(const lc_family *f, char *buf, size_t n, int layer, int e,
                                  int i)
{
    snprintf(buf, n, "model.layers.%d.%s.experts.%d.%s.weight", layer, f->moe_parent, e,
             f->expert_linears[i]);
}

void lc_family_module_list(const lc_family *f, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < f->n_modules && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%s", i ? ", " : "",
                                lc_module_name(f->modules[i]));
}

/* gguf_names.c — HF ↔ GGUF tensor names (see gguf_names.h). */
#include "train/gguf_names.h"

#include <stdio.h>
#include <string.h>

typedef struct name_pair {
    const char *hf, *gguf;
} name_pair;

static const name_pair model_names[] = {
    {"model.embed_tokens", "token_embd"},
    {"lm_head", "output"},
    {"model.norm", "output_norm"},
};

static const name_pair layer_names[] = {
    {"input_layernorm", "attn_norm"},
    {"post_attention_layernorm", "ffn_norm"},
    {"self_attn.q_proj", "attn_q"},
    {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},
    {"self_attn.o_proj", "attn_output"},
    {"self_attn.q_norm", "attn_q_norm"},
    {"self_attn.k_norm", "attn_k_norm"},
    {"mlp.gate_proj", "ffn_gate"},
    {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},
};

#define COUNT(a) (sizeof(a) / sizeof *(a))

static const char *lookup(const name_pair *t, size_t n, const char *hf, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(t[i].hf) == len && !strncmp(t[i].hf, hf, len))
            return t[i].gguf;
    return NULL;
}

const char *lc_gguf_stem(const char *hf_stem)
{
    const char *g = lookup(model_names, COUNT(model_names), hf_stem, strlen(hf_stem));
    return g ? g : lookup(layer_names, COUNT(layer_names), hf_stem, strlen(hf_stem));
}

const char *lc_gguf_linear_name(lc_module m)
{
    char stem[64];
    snprintf(stem, sizeof stem, "%s.%s", lc_module_parent(m), lc_module_name(m));
    return lookup(layer_names, COUNT(layer_names), stem, strlen(stem));
}

const char *lc_gguf_blk_name(char *buf, size_t n, int layer, const char *hf_stem,
                             const char *suffix)
{
    const char *g = lc_gguf_stem(hf_stem);
    if (layer < 0)
        snprintf(buf, n, "%s.%s", g ? g : hf_stem, suffix);
    else
        snprintf(buf, n, "blk.%d.%s.%s", layer, g ? g : hf_stem, suffix);
    return buf;
}

int lc_gguf_name_from_hf(const char *hf, int n_layers, char *out, size_t n, int *layer,
                         int *mod)
{
    *layer = -1;
    *mod = -1;
    const char *dot = strrchr(hf, '.');
    if (!dot)
        return -1;
    const char *g = lookup(model_names, COUNT(model_names), hf, (size_t)(dot - hf));
    if (g) {
        snprintf(out, n, "%s%s", g, dot);
        return 0;
    }
    int l = -1, k = 0;
    if (sscanf(hf, "model.layers.%d.%n", &l, &k) != 1 || k == 0 || l < 0 || l >= n_layers)
        return -1;
    const char *stem = hf + k;
    if (!(g = lookup(layer_names, COUNT(layer_names), stem, (size_t)(dot - stem))))
        return -1;
    snprintf(out, n, "blk.%d.%s%s", l, g, dot);
    *layer = l;
    if (!strcmp(dot, ".weight"))
        for (int m = 0; m < LC_MOD_COUNT; m++) {
            const char *gl = lc_gguf_linear_name((lc_module)m); /* NULL: no GGUF name */
            if (gl && !strcmp(gl, g))
                *mod = m;
        }
    return 0;
}

/* memory_plan.c — see memory_plan.h. */
#include "train/memory_plan.h"

#include <omp.h>
#include <string.h>

#include "autograd/kernels.h"
#include "train/family.h"

double lc_memory_weight_bytes(const lc_model_config *c, lc_dtype dtype)
{
    const lc_family *fam = lc_family_of(c->arch);
    double n = (double)c->vocab_size * c->hidden_size * (c->tie_word_embeddings ? 1 : 2);
    for (int i = 0; i < fam->n_modules; i++) {
        int64_t out, in;
        lc_module_shape(c, fam->modules[i], &out, &in);
        n += (double)out * in * (double)lc_module_copies(c, fam->modules[i]) * c->n_layers;
    }
    n += (double)c->n_experts * c->hidden_size * c->n_layers; /* MoE routers */
    return n * (double)lc_dtype_size(dtype);
}

void lc_memory_plan_cpu(const lc_model_config *c, double weight_bytes, size_t lora_params,
                        const lc_lora_config *lora, int64_t B, int64_t T, bool checkpointing,
                        lc_memory_plan *p)
{
    memset(p, 0, sizeof *p);
    const double f = sizeof(lc_real);
    const double N = (double)B * T, C = c->hidden_size, FF = c->intermediate_size;
    const double HD = (double)c->n_heads * c->head_dim, KVD = (double)c->n_kv_heads * c->head_dim;
    const lc_family *fam = lc_family_of(c->arch);
    int targets = 0;
    double dora_rows = 0; /* DoRA keeps c [out] per adapted linear of every layer */
    for (int i = 0; i < fam->n_modules; i++) {
        lc_module m = fam->modules[i];
        bool expert = lc_module_is_expert(m);
        bool targeted = (lora->all_linear && !expert) || lora->targets[m];
        /* an expert's x·Aᵀ is kept for each of the k rows a token is routed to */
        targets += targeted ? (expert ? c->n_experts_per_tok : 1) : 0;
        int64_t out, in;
        lc_module_shape(c, m, &out, &in);
        if (lora->use_dora && targeted)
            dora_rows += (double)out * c->n_layers;
    }
    double per_layer = C + HD + 2 * KVD + HD + c->n_heads + C + 2 * FF + 2 +
                       (double)lora->r * targets;
    if (fam->moe) /* normed input, router logits and weights; per routed row its gathered
                   * input and gate / up outputs, instead of the dense MLP's */
        per_layer += C + c->n_experts + c->n_experts_per_tok - 2 * FF +
                     c->n_experts_per_tok * (C + 2.0 * c->moe_intermediate_size);
    if (c->qk_norm)
        per_layer += HD + KVD + c->n_heads + c->n_kv_heads;
    /* a fused linear keeps its whole output besides the split parts */
    if (lc_family_has_module(fam, LC_MOD_QKV))
        per_layer += HD + 2 * KVD;
    if (lc_family_has_module(fam, LC_MOD_GATE_UP))
        per_layer += 2 * FF;
    /* a norm on a sub-block's output keeps the output, the normed copy, its
     * rstd and the residual sum */
    for (int k = LC_NORM_ATTN_OUT; k <= LC_NORM_MLP_OUT; k += 2)
        if (fam->norm_names[k])
            per_layer += 3 * C + 1;
    double act = checkpointing ? N * (C * c->n_layers + per_layer + C + 3 * C) * f
                               : N * (per_layer * c->n_layers + 3 * C) * f;
    act += dora_rows * f;
    /* Largest scratch any op takes: recomputed f(x) + d f(x) + LoRA
     * dropout buffer (DoRA: two [N, out] products more and a tile of
     * W + s·B·A for the row norms), attention blocks, lm_head chunk. */
    double lin_scr = (lora->use_dora ? 5 : 3) * N * (FF > C ? FF : C) * f +
                     (double)(lora->use_dora ? 2 << 18 : 1 << 18) * f;
    lc_attn_shape s = {.B = B, .T = T, .H = c->n_heads, .KV = c->n_kv_heads, .D = c->head_dim};
    double attn_scr = (double)lc_k_attention_scratch(&s) * f;
    int64_t chunk = lc_k_ce_chunk_rows(c->vocab_size);
    double ce_scr = ((double)chunk * c->vocab_size + 2.0 * chunk * C + (1 << 18)) * f;
    double scr = lin_scr;
    scr = attn_scr > scr ? attn_scr : scr;
    scr = ce_scr > scr ? ce_scr : scr;
    double pool = N * (3 * FF + 4 * C + HD + 2 * KVD) * f;
    p->weights = weight_bytes;
    p->adapters = 2.0 * (double)lora_params * f;
    p->optimizer = 2.0 * (double)lora_params * f;
    p->activations = act;
    p->workspace = scr + pool;
    p->total = p->weights + p->adapters + p->optimizer + p->activations + p->workspace;
    double arena = (act + scr) * 1.25 + 64.0 * (1 << 20);
    p->arena_bytes = (size_t)arena;
    p->grad_bytes = (size_t)(pool * 2 + 64.0 * (1 << 20));
}

static void line(FILE *f, const char *what, double bytes)
{
    fprintf(f, "  %-12s %10.1f MiB\n", what, bytes / 1048576.0);
}

void lc_memory_plan_print(const lc_memory_plan *p, FILE *f)
{
    fprintf(f, "memory plan (CPU, %d thread%s):\n", omp_get_max_threads(),
            lc_plural(omp_get_max_threads()));
    line(f, "weights", p->weights);
    line(f, "adapters", p->adapters);
    line(f, "optimizer", p->optimizer);
    line(f, "activations", p->activations);
    line(f, "workspace", p->workspace);
    line(f, "total", p->total);
}

double lc_memory_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return 0;
    char key[64];
    double kb = 0, v;
    while (fscanf(f, "%63s %lf kB\n", key, &v) == 2) {
        if (strcmp(key, "MemAvailable:") == 0) {
            kb = v;
            break;
        }
    }
    fclose(f);
    return kb * 1024.0;
}

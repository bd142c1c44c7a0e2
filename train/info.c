/* info.c — `lorac info` (see info.h). */
#include "train/info.h"

#include <omp.h>
#include <string.h>

#include "data/model_files.h"
#include "train/family.h"
#include "train/gguf_model.h"
#include "train/lora.h"
#include "train/memory_plan.h"
#include "train/model.h"
#include "train/trainer.h"

void lc_param_counts_from_config(const lc_model_config *c, lc_param_counts *p)
{
    memset(p, 0, sizeof *p);
    const double L = c->n_layers, C = c->hidden_size;
    p->embeddings = (double)c->vocab_size * C;
    p->lm_head = c->tie_word_embeddings ? 0 : p->embeddings;
    const lc_family *f = lc_family_of(c->arch);
    for (int i = 0; i < f->n_modules; i++) {
        lc_module m = f->modules[i];
        int64_t out, in;
        lc_module_shape(c, m, &out, &in);
        double w = (double)out * (double)in * (double)lc_module_copies(c, m) * L;
        double b = lc_module_has_bias(c, m) ? (double)out * L : 0;
        p->linears += w;
        if (!strcmp(lc_module_parent(m), "self_attn"))
            p->attention += w + b;
        else
            p->mlp += w + b;
    }
    p->mlp += (double)c->n_experts * C * L; /* MoE routers (frozen, not LoRA targets) */
    int norms = 0;
    for (int k = 0; k < LC_NORM_COUNT; k++)
        norms += f->norm_names[k] != NULL;
    p->norms = norms * C * L + C + (c->qk_norm ? 2.0 * c->head_dim * L : 0);
    p->total = p->embeddings + p->lm_head + p->attention + p->mlp + p->norms;
}

/* ------------------------------------------------------------------ */
/* lorac info                                                          */

typedef struct dtype_tally {
    int count[LC_DTYPE_COUNT];
    double numel[LC_DTYPE_COUNT], bytes[LC_DTYPE_COUNT];
} dtype_tally;

static const char *rope_name(lc_rope_type t)
{
    return t == LC_ROPE_LINEAR ? "linear" : t == LC_ROPE_LLAMA3 ? "llama3"
         : t == LC_ROPE_FACTORS ? "rope_freqs (GGUF)" : t == LC_ROPE_LONGROPE ? "longrope"
         : "default";
}

static void human(double bytes, char *buf, size_t n)
{
    if (bytes >= 1073741824.0)
        snprintf(buf, n, "%.2f GiB", bytes / 1073741824.0);
    else if (bytes >= 1048576.0)
        snprintf(buf, n, "%.1f MiB", bytes / 1048576.0);
    else
        snprintf(buf, n, "%.1f KiB", bytes / 1024.0);
}

static void count_line(FILE *f, const char *what, double n, double total, const char *note)
{
    fprintf(f, "  %-12s %15.0f  (%5.1f%%)%s%s\n", what, n, total > 0 ? 100.0 * n / total : 0.0,
            note ? "  " : "", note ? note : "");
}

static void plan_row(FILE *f, const char *name, const lc_memory_plan *p, double unit)
{
    fprintf(f, "  %-28s %9.2f %9.2f %9.2f %11.2f %9.2f %9.2f\n", name, p->weights / unit,
            p->adapters / unit, p->optimizer / unit, p->activations / unit, p->workspace / unit,
            p->total / unit);
}

/* What the weight files hold, tensor by tensor. */
typedef struct file_scan {
    dtype_tally tally;
    double params, bytes;
    double part[6];          /* embeddings, lm_head, attention, mlp, norms, other */
    size_t n_tensors;
    lc_dtype lin_dtype;      /* of layer 0's first linear when it is a float tensor */
} file_scan;

static int part_of(const char *name)
{
    return !strncmp(name, "model.embed_tokens.", 19) ? 0
           : !strncmp(name, "lm_head.", 8)           ? 1
           : strstr(name, "norm.")                   ? 4
           : strstr(name, ".self_attn.")             ? 2
           : strstr(name, ".mlp.") || strstr(name, ".block_sparse_moe.") ? 3
                                                     : 5;
}

static void scan_files(const lc_model_files *mf, const lc_model_config *c, file_scan *fs)
{
    memset(fs, 0, sizeof *fs);
    fs->lin_dtype = c->dtype;
    lc_module first = lc_family_of(c->arch)->modules[0];
    char first_name[96];
    snprintf(first_name, sizeof first_name, "model.layers.0.%s.%s.weight",
             lc_module_parent(first), lc_module_name(first));
    for (size_t s = 0; s < mf->n_shards; s++) {
        fs->bytes += (double)mf->shards[s].map_size;
        for (size_t i = 0; i < mf->shards[s].n_tensors; i++) {
            const lc_st_tensor *t = &mf->shards[s].tensors[i];
            double n = (double)t->numel;
            fs->tally.count[t->dtype]++;
            fs->tally.numel[t->dtype] += n;
            fs->tally.bytes[t->dtype] += n * (double)lc_dtype_size(t->dtype);
            fs->params += n;
            fs->n_tensors++;
            fs->part[part_of(t->name)] += n;
            if (!strcmp(t->name, first_name) &&
                (t->dtype == LC_DTYPE_F32 || t->dtype == LC_DTYPE_BF16 ||
                 t->dtype == LC_DTYPE_F16))
                fs->lin_dtype = t->dtype;
        }
    }
}

/* targets: the linears the plan adapts, marked '*' (NULL: no plan). */
static void print_architecture(FILE *out, const char *dir, const lc_model_config *c,
                               const bool *targets)
{
    fprintf(out, "model:          %s\n", dir);
    const lc_family *f = lc_family_of(c->arch);
    fprintf(out, "architecture:   %s (model_type %s)\n", lc_arch_name(c->arch), c->model_type);
    fprintf(out, "linears:       ");
    for (int i = 0; i < f->n_modules; i++)
        fprintf(out, " %s%s", lc_module_name(f->modules[i]),
                targets && targets[f->modules[i]] ? "*" : "");
    fprintf(out, " (each layer; what lora_target_modules may name%s%s)\n",
            f->moe ? ", experts.* lora_target_parameters" : "",
            targets ? "; * = adapted in the plans below" : "");
    if (f->moe)
        fprintf(out, "experts:        %d of %d intermediate each, top-%d routing%s\n",
                c->n_experts, c->moe_intermediate_size, c->n_experts_per_tok,
                c->moe_renorm ? ", weights renormalised" : "");
    fprintf(out, "layers:         %d\n", c->n_layers);
    fprintf(out, "hidden size:    %d\n", c->hidden_size);
    fprintf(out, "intermediate:   %d\n", c->intermediate_size);
    fprintf(out, "heads:          %d query, %d key/value%s, head_dim %d\n", c->n_heads,
            c->n_kv_heads, c->n_kv_heads < c->n_heads ? " (GQA)" : "", c->head_dim);
    fprintf(out, "vocab:          %d\n", c->vocab_size);
    fprintf(out, "context:        %d positions, RoPE %s, theta %g", c->max_position_embeddings,
            rope_name(c->rope_type), c->rope_theta);
    if (c->rope_type == LC_ROPE_LINEAR || c->rope_type == LC_ROPE_LLAMA3)
        fprintf(out, ", factor %g", c->rope_factor);
    if (c->rope_type == LC_ROPE_LONGROPE)
        fprintf(out, ", original %d, attention factor %.6g", c->rope_original_max_position,
                c->rope_attention_factor);
    if (c->rope_local_theta > 0)
        fprintf(out, ", sliding layers theta %g", c->rope_local_theta);
    if (c->sliding_window) {
        int n = 0;
        for (int l = 0; l < c->n_layers; l++)
            n += c->layer_sliding[l];
        fprintf(out, ", sliding window %d on %d of %d layers", c->sliding_window, n, c->n_layers);
    }
    fprintf(out, "\n");
    if (f->act == LC_ACT_GELU_TANH || f->norm_plus_one || c->attn_softcap || c->final_softcap)
        fprintf(out, "block:          %s MLP%s%s, attention scale 1/sqrt(%g), soft-capping "
                "attention %g, logits %g (0 = none)\n",
                f->act == LC_ACT_GELU_TANH ? "GeGLU (tanh)" : "SwiGLU",
                f->norm_plus_one ? ", (1 + w) norms" : "",
                f->norm_names[LC_NORM_MLP_OUT] ? " before and after attention and MLP" : "",
                c->query_pre_attn_scalar > 0 ? c->query_pre_attn_scalar : (double)c->head_dim,
                c->attn_softcap, c->final_softcap);
    fprintf(out, "details:        %s embeddings, rms_norm_eps %g%s%s%s%s\n",
            c->tie_word_embeddings ? "tied" : "untied", c->rms_norm_eps,
            c->qkv_bias ? ", q/k/v bias" : "", c->o_bias ? ", o bias" : "",
            c->mlp_bias ? ", mlp bias" : "", c->qk_norm ? ", q/k norm" : "");
    fprintf(out, "config dtype:   %s%s\n", lc_dtype_name(c->dtype),
            c->prequantized_bnb4 ? " (pre-quantized bitsandbytes 4-bit checkpoint)" : "");
}

static void print_files(FILE *out, const lc_model_files *mf, const file_scan *fs)
{
    char hb[64];
    human(fs->bytes, hb, sizeof hb);
    fprintf(out, "files:          %zu shard%s, %zu tensor%s, %s\n", mf->n_shards,
            lc_plural((long long)mf->n_shards), fs->n_tensors,
            lc_plural((long long)fs->n_tensors), hb);
    fprintf(out, "tensor dtypes: ");
    for (int d = 0; d < LC_DTYPE_COUNT; d++)
        if (fs->tally.count[d]) {
            human(fs->tally.bytes[d], hb, sizeof hb);
            fprintf(out, " %s: %d tensor%s, %.0f element%s, %s;", lc_dtype_name((lc_dtype)d),
                    fs->tally.count[d], lc_plural(fs->tally.count[d]), fs->tally.numel[d],
                    lc_plural((long long)fs->tally.numel[d]), hb);
        }
    fprintf(out, "\n");
}

/* Parameter counts: from the files, or from config.json's shapes for a
 * pre-quantized checkpoint (whose files hold packed 4-bit values). */
static void print_parameters(FILE *out, const lc_model_config *c, const lc_param_counts *pc,
                             const file_scan *fs)
{
    const char *head_note = c->tie_word_embeddings ? "(tied to the embeddings)" : NULL;
    if (c->prequantized_bnb4) {
        fprintf(out, "parameters:     %.0f (%.3g M; from config.json shapes: the files hold "
                "packed 4-bit weights)\n", pc->total, pc->total / 1e6);
        count_line(out, "embeddings", pc->embeddings, pc->total, NULL);
        count_line(out, "lm_head", pc->lm_head, pc->total, head_note);
        count_line(out, "attention", pc->attention, pc->total, NULL);
        count_line(out, "mlp", pc->mlp, pc->total, NULL);
        count_line(out, "norms", pc->norms, pc->total, NULL);
    } else {
        const double *part = fs->part, total = fs->params;
        fprintf(out, "parameters:     %.0f (%.3g M)\n", total, total / 1e6);
        count_line(out, "embeddings", part[0], total, NULL);
        count_line(out, "lm_head", part[1], total, head_note);
        count_line(out, "attention", part[2], total, NULL);
        count_line(out, "mlp", part[3], total, NULL);
        count_line(out, "norms", part[4], total, NULL);
        if (part[5] > 0)
            count_line(out, "other", part[5], total, NULL);
        if (total != pc->total)
            fprintf(out, "  note: config.json shapes imply %.0f parameters\n", pc->total);
    }
    fprintf(out, "  %-12s %15.0f  (the %d linears of every layer: what LoRA adapts "
            "and QLoRA quantizes)\n", "linears", pc->linears, lc_family_of(c->arch)->n_modules);
}

/* The frozen weights the memory plans count: estimated from config.json, or
 * for a pre-quantized checkpoint the real sizes of the loaded model. */
typedef struct plan_weights {
    lc_dtype dtype;          /* of the embeddings (and of the dense linears) */
    double emb_bytes;        /* embeddings + untied lm_head */
    double nf4_bytes;        /* the linears as NF4 */
    bool real;               /* loaded from a pre-quantized checkpoint */
    char load_err[sizeof(lc_error)]; /* why loading it failed (then estimates) */
} plan_weights;

static void weights_for_plan(const lc_info_opts *o, const lc_model_config *c,
                             const lc_param_counts *pc, lc_dtype lin_dtype, plan_weights *w)
{
    memset(w, 0, sizeof *w);
    w->dtype = c->prequantized_bnb4 ? c->dtype : lin_dtype;
    w->emb_bytes = (pc->embeddings + pc->lm_head) * (double)lc_dtype_size(w->dtype);
    w->nf4_bytes = pc->linears * (4.0 + LC_NF4_ABSMAX_BITS) / 8.0;
    if (!c->prequantized_bnb4)
        return;
    /* A pre-quantized checkpoint is loaded with its NF4 linears as stored,
     * whatever the adapter type: its weights are the real sizes of the
     * loaded model, not an estimate. */
    lc_model qm;
    lc_error lerr = {{0}};
    if (lc_model_load(&qm, o->dir, &lerr) != 0) {
        snprintf(w->load_err, sizeof w->load_err, "%s", lerr.msg);
        return;
    }
    w->real = true;
    w->dtype = qm.embed.dtype;
    w->emb_bytes = (double)(qm.embed.rows * qm.embed.cols) * (double)lc_dtype_size(qm.embed.dtype) *
                   (c->tie_word_embeddings ? 1.0 : 2.0);
    w->nf4_bytes = lc_model_weight_bytes(&qm) - w->emb_bytes;
    lc_model_free(&qm);
}

/* The linears the plans adapt: --target-modules (comma-separated, each a
 * linear of the model's family) or every linear of the family. */
static int plan_targets(const lc_info_opts *o, const lc_model_config *c, bool *targets,
                        lc_error *err)
{
    lc_lora_config all = {0};
    lc_lora_target_all(&all, c);
    if (!o->target_modules) {
        memcpy(targets, all.targets, sizeof all.targets);
        return 0;
    }
    memset(targets, 0, LC_MOD_COUNT * sizeof *targets);
    const char *p = o->target_modules;
    bool any = false;
    while (*p) {
        size_t n = strcspn(p, ",");
        char name[32];
        snprintf(name, sizeof name, "%.*s", (int)(n < 31 ? n : 31), p);
        int m = n < 31 ? lc_module_from_name(name) : -1;
        if (m < 0 || !lc_model_has_module(c, m)) {
            char have[160];
            lc_family_module_list(lc_family_of(c->arch), have, sizeof have);
            return lc_error_set(err, "--target-modules: '%.*s' is not a linear of %s models "
                                "(they have %s)", (int)(n < 64 ? n : 64), p, c->model_type, have);
        }
        targets[m] = any = true;
        p += n + (p[n] == ',');
    }
    if (!any)
        return lc_error_set(err, "--target-modules: no module named");
    return 0;
}

/* LoRA (or DoRA) r on the targeted linears: the adapter the plans train,
 * allocated as the trainer would (its parameter count is lc_lora_init's). */
static int plan_lora(const lc_model_config *c, int rank, bool dora, const bool *targets,
                     lc_lora *lora, lc_error *err)
{
    lc_lora_config cfg = {.r = rank, .alpha = 2.0 * rank, .use_dora = dora};
    memcpy(cfg.targets, targets, sizeof cfg.targets);
    return lc_lora_init(lora, c, &cfg, 42, err);
}

/* One plan: the memory plan's dry run over a shapes-only model (its matrices
 * never materialised; NF4 linears for QLoRA), the frozen weights counted as
 * weight_bytes (< 0: the shapes-only model's, its dtype's real sizes). */
static int plan_one(const lc_model_config *c, lc_dtype dtype, bool nf4, bool checkpointing,
                    const lc_lora *lora, int64_t B, int64_t T, double weight_bytes,
                    lc_memory_plan *p, lc_error *err)
{
    lc_model m;
    if (lc_model_init_shapes(&m, c, dtype, nf4, err))
        return -1;
    m.checkpoint_layers = checkpointing;
    if (m.rope_len < T)
        m.rope_len = T; /* no tables to grow: a shapes-only model reads none */
    int rc = lc_memory_plan_cpu(&m, lora, B, T, p, err);
    lc_model_free(&m);
    if (rc == 0 && weight_bytes >= 0) {
        p->total += weight_bytes - p->weights;
        p->weights = weight_bytes;
    }
    return rc;
}

static void print_plan_notes(FILE *out, const lc_model_config *c, const plan_weights *w,
                             bool dora)
{
    if (dora)
        fprintf(out, "  DoRA: the magnitudes count as adapters, their row norms as activations, "
                "two [tokens, out] products more as workspace.\n");
    if (w->real)
        fprintf(out, "  weights: the real sizes of this pre-quantized checkpoint as loaded, "
                "%.0f bytes: NF4 linears %.0f (packed codes, absmax, nested constants), "
                "embeddings%s %.0f at %s. The linears stay NF4 for adapter: lora too; for "
                "dense LoRA use the unquantized model.\n", w->emb_bytes + w->nf4_bytes,
                w->nf4_bytes, c->tie_word_embeddings ? "" : " and lm_head", w->emb_bytes,
                lc_dtype_name(w->dtype));
    else
        fprintf(out, "  QLoRA: the linears as NF4 (0.5 byte/param + %.3f bit/param absmax with "
                "double quantization), embeddings%s at %s.\n", LC_NF4_ABSMAX_BITS,
                c->tie_word_embeddings ? "" : " and lm_head", lc_dtype_name(w->dtype));
    if (!w->real && c->prequantized_bnb4)
        fprintf(out, "  note: the NF4 linears of this checkpoint could not be loaded (%s): "
                "the rows above are estimates from config.json.\n", w->load_err);
    fprintf(out, "  * gradient_checkpointing: true keeps each layer's input and recomputes the "
            "layer in backward (one extra forward).\n");
}

/* The memory plans: LoRA and QLoRA, each with and without checkpointing. */
static int print_memory_plans(FILE *out, const lc_info_opts *o, const lc_model_config *c,
                              const plan_weights *w, const bool *targets, lc_error *err)
{
    const int64_t T = lc_model_config_seq_len(c, o->seq_len), B = o->micro_batch;
    lc_lora lora;
    if (plan_lora(c, o->rank, o->dora, targets, &lora, err))
        return -1;
    size_t lora_params = lora.n_params;
    int n_targets = 0;
    for (int m = 0; m < LC_MOD_COUNT; m++)
        n_targets += targets[m];
    lc_memory_plan lp, qp, lpc, qpc;
    double qbytes = w->emb_bytes + w->nf4_bytes;
    int rc = plan_one(c, w->dtype, w->real, false, &lora, B, T, w->real ? qbytes : -1, &lp, err) ||
             plan_one(c, w->dtype, true, false, &lora, B, T, qbytes, &qp, err) ||
             plan_one(c, w->dtype, w->real, true, &lora, B, T, lp.weights, &lpc, err) ||
             plan_one(c, w->dtype, true, true, &lora, B, T, qbytes, &qpc, err);
    lc_lora_free(&lora);
    if (rc)
        return -1;

    double unit = lp.total >= 1073741824.0 ? 1073741824.0 : 1048576.0;
    fprintf(out, "\nmemory plan (%s): %s r %d on %d of %d linears (%zu trainable parameters), "
            "micro-batch %lld x sequence %lld, %s%s %s, CPU backend (%d thread%s)\n",
            unit > 1048576.0 ? "GiB" : "MiB", o->dora ? "DoRA" : "LoRA", o->rank, n_targets,
            lc_family_of(c->arch)->n_modules, lora_params, (long long)B, (long long)T,
            w->real ? "NF4 linears + " : "", lc_dtype_name(w->dtype),
            w->real ? "embeddings" : "weights", omp_get_max_threads(),
            lc_plural(omp_get_max_threads()));
    fprintf(out, "  %-28s %9s %9s %9s %11s %9s %9s\n", "", "weights", "adapters", "optimizer",
            "activations", "workspace", "total");
    const char *k = o->dora ? "Do" : "Lo"; /* DoRA: over NF4 linears too (dequantized rows) */
    char name[5][40];
    snprintf(name[0], sizeof name[0], "%sRA/Q%sRA (NF4 as stored)", k, k);
    snprintf(name[1], sizeof name[1], "%sRA", k);
    snprintf(name[2], sizeof name[2], "%sRA + grad checkpointing*", k);
    snprintf(name[3], sizeof name[3], "Q%sRA (NF4)", k);
    snprintf(name[4], sizeof name[4], "Q%sRA + grad checkpointing*", k);
    if (w->real) {
        plan_row(out, name[0], &qp, unit);
        plan_row(out, "  + grad checkpointing*", &qpc, unit);
    } else {
        plan_row(out, name[1], &lp, unit);
        plan_row(out, name[2], &lpc, unit);
        plan_row(out, name[3], &qp, unit);
        plan_row(out, name[4], &qpc, unit);
    }
    print_plan_notes(out, c, w, o->dora);
    return 0;
}

/* A GGUF base: its architecture and the bytes its weights hold as loaded
 * (in their GGUF types); the memory plans are for safetensors bases only so far. */
static int print_gguf(const lc_info_opts *o, FILE *out, lc_error *err)
{
    lc_model m;
    if (lc_model_load(&m, o->dir, err))
        return -1;
    print_architecture(out, o->dir, &m.cfg, NULL);
    char hb[64];
    human(lc_model_weight_bytes(&m), hb, sizeof hb);
    fprintf(out, "weights:        %s as held (GGUF types, mapped from the file)\n", hb);
    fprintf(out, "memory plans:   not computed for GGUF bases yet\n");
    lc_model_free(&m);
    return 0;
}

int lc_info_print(const lc_info_opts *o, FILE *out, lc_error *err)
{
    if (lc_gguf_model_is_gguf(o->dir))
        return print_gguf(o, out, err);
    lc_model_config c;
    bool targets[LC_MOD_COUNT];
    if (lc_model_config_load(&c, o->dir, err) || plan_targets(o, &c, targets, err))
        return -1;
    lc_model_files mf;
    if (lc_model_files_open(&mf, o->dir, err))
        return -1;
    file_scan fs;
    scan_files(&mf, &c, &fs);
    lc_param_counts pc;
    lc_param_counts_from_config(&c, &pc);
    print_architecture(out, o->dir, &c, targets);
    print_files(out, &mf, &fs);
    print_parameters(out, &c, &pc, &fs);
    lc_model_files_close(&mf);

    plan_weights w;
    weights_for_plan(o, &c, &pc, fs.lin_dtype, &w);
    if (print_memory_plans(out, o, &c, &w, targets, err))
        return -1;
    double avail = lc_memory_available();
    if (avail > 0) {
        char hb[64];
        human(avail, hb, sizeof hb);
        fprintf(out, "  available memory now: %s\n", hb);
    }
    return 0;
}

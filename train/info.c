/* info.c — `lorac info` (see info.h). */
#include "train/info.h"

#include <omp.h>
#include <string.h>

#include "data/model_files.h"
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
    for (int m = 0; m < LC_MOD_COUNT; m++) {
        int64_t out, in;
        lc_module_shape(c, m, &out, &in);
        double w = (double)out * (double)in * L;
        bool bias = (m <= LC_MOD_V && c->qkv_bias) || (m == LC_MOD_O && c->o_bias) ||
                    (m >= LC_MOD_GATE && c->mlp_bias);
        double b = bias ? (double)out * L : 0;
        p->linears += w;
        if (m <= LC_MOD_O)
            p->attention += w + b;
        else
            p->mlp += w + b;
    }
    p->norms = 2 * C * L + C + (c->qk_norm ? 2.0 * c->head_dim * L : 0);
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
    return t == LC_ROPE_LINEAR ? "linear" : t == LC_ROPE_LLAMA3 ? "llama3" : "default";
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

int lc_info_print(const lc_info_opts *o, FILE *out, lc_error *err)
{
    lc_model_config c;
    if (lc_model_config_load(&c, o->dir, err))
        return -1;
    lc_model_files mf;
    if (lc_model_files_open(&mf, o->dir, err))
        return -1;
    dtype_tally tally;
    memset(&tally, 0, sizeof tally);
    double file_params = 0, file_bytes = 0, part[6] = {0}; /* emb, head, attn, mlp, norm, other */
    size_t n_tensors = 0;
    lc_dtype lin_dtype = c.dtype;
    for (size_t s = 0; s < mf.n_shards; s++) {
        file_bytes += (double)mf.shards[s].map_size;
        for (size_t i = 0; i < mf.shards[s].n_tensors; i++) {
            const lc_st_tensor *t = &mf.shards[s].tensors[i];
            double n = (double)t->numel;
            tally.count[t->dtype]++;
            tally.numel[t->dtype] += n;
            tally.bytes[t->dtype] += n * (double)lc_dtype_size(t->dtype);
            file_params += n;
            n_tensors++;
            int k = !strncmp(t->name, "model.embed_tokens.", 19) ? 0
                    : !strncmp(t->name, "lm_head.", 8)           ? 1
                    : strstr(t->name, "norm.")                   ? 4
                    : strstr(t->name, ".self_attn.")             ? 2
                    : strstr(t->name, ".mlp.")                   ? 3
                                                                 : 5;
            part[k] += n;
            if (!strcmp(t->name, "model.layers.0.self_attn.q_proj.weight") &&
                (t->dtype == LC_DTYPE_F32 || t->dtype == LC_DTYPE_BF16 ||
                 t->dtype == LC_DTYPE_F16))
                lin_dtype = t->dtype;
        }
    }
    lc_param_counts pc;
    lc_param_counts_from_config(&c, &pc);
    char hb[64];

    fprintf(out, "model:          %s\n", o->dir);
    fprintf(out, "architecture:   %s (model_type %s)\n", lc_arch_name(c.arch), c.model_type);
    fprintf(out, "layers:         %d\n", c.n_layers);
    fprintf(out, "hidden size:    %d\n", c.hidden_size);
    fprintf(out, "intermediate:   %d\n", c.intermediate_size);
    fprintf(out, "heads:          %d query, %d key/value%s, head_dim %d\n", c.n_heads,
            c.n_kv_heads, c.n_kv_heads < c.n_heads ? " (GQA)" : "", c.head_dim);
    fprintf(out, "vocab:          %d\n", c.vocab_size);
    fprintf(out, "context:        %d positions, RoPE %s, theta %g", c.max_position_embeddings,
            rope_name(c.rope_type), c.rope_theta);
    if (c.rope_type != LC_ROPE_DEFAULT)
        fprintf(out, ", factor %g", c.rope_factor);
    if (c.sliding_window)
        fprintf(out, ", sliding window %d", c.sliding_window);
    fprintf(out, "\n");
    fprintf(out, "details:        %s embeddings, rms_norm_eps %g%s%s%s%s\n",
            c.tie_word_embeddings ? "tied" : "untied", c.rms_norm_eps,
            c.qkv_bias ? ", q/k/v bias" : "", c.o_bias ? ", o bias" : "",
            c.mlp_bias ? ", mlp bias" : "", c.qk_norm ? ", q/k norm" : "");
    fprintf(out, "config dtype:   %s%s\n", lc_dtype_name(c.dtype),
            c.prequantized_bnb4 ? " (pre-quantized bitsandbytes 4-bit checkpoint)" : "");
    human(file_bytes, hb, sizeof hb);
    fprintf(out, "files:          %zu shard%s, %zu tensors, %s\n", mf.n_shards,
            mf.n_shards == 1 ? "" : "s", n_tensors, hb);
    fprintf(out, "tensor dtypes: ");
    for (int d = 0; d < LC_DTYPE_COUNT; d++)
        if (tally.count[d]) {
            human(tally.bytes[d], hb, sizeof hb);
            fprintf(out, " %s: %d tensors, %.0f elements, %s;", lc_dtype_name((lc_dtype)d),
                    tally.count[d], tally.numel[d], hb);
        }
    fprintf(out, "\n");

    if (c.prequantized_bnb4) {
        fprintf(out, "parameters:     %.0f (%.3g M; from config.json shapes: the files hold "
                "packed 4-bit weights)\n", pc.total, pc.total / 1e6);
        count_line(out, "embeddings", pc.embeddings, pc.total, NULL);
        count_line(out, "lm_head", pc.lm_head, pc.total,
                   c.tie_word_embeddings ? "(tied to the embeddings)" : NULL);
        count_line(out, "attention", pc.attention, pc.total, NULL);
        count_line(out, "mlp", pc.mlp, pc.total, NULL);
        count_line(out, "norms", pc.norms, pc.total, NULL);
    } else {
        fprintf(out, "parameters:     %.0f (%.3g M)\n", file_params, file_params / 1e6);
        count_line(out, "embeddings", part[0], file_params, NULL);
        count_line(out, "lm_head", part[1], file_params,
                   c.tie_word_embeddings ? "(tied to the embeddings)" : NULL);
        count_line(out, "attention", part[2], file_params, NULL);
        count_line(out, "mlp", part[3], file_params, NULL);
        count_line(out, "norms", part[4], file_params, NULL);
        if (part[5] > 0)
            count_line(out, "other", part[5], file_params, NULL);
        if (file_params != pc.total)
            fprintf(out, "  note: config.json shapes imply %.0f parameters\n", pc.total);
    }
    fprintf(out, "  %-12s %15.0f  (the 7 projections of every layer: what LoRA adapts "
            "and QLoRA quantizes)\n", "linears", pc.linears);
    lc_model_files_close(&mf);

    /* memory plans */
    const int64_t T = lc_model_config_seq_len(&c, o->seq_len), B = o->micro_batch;
    lc_lora_config lora = {.r = o->rank, .alpha = 2.0 * o->rank};
    size_t lora_params = 0;
    for (int m = 0; m < LC_MOD_COUNT; m++) {
        lora.targets[m] = true;
        int64_t mo, mi;
        lc_module_shape(&c, m, &mo, &mi);
        lora_params += (size_t)o->rank * (size_t)(mo + mi) * (size_t)c.n_layers;
    }
    lc_dtype wdt = c.prequantized_bnb4 ? c.dtype : lin_dtype;
    double wsize = (double)lc_dtype_size(wdt);
    double emb_bytes = (pc.embeddings + pc.lm_head) * wsize;
    double nf4_bytes = pc.linears * (4.0 + LC_NF4_ABSMAX_BITS) / 8.0;
    /* A pre-quantized checkpoint is loaded with its NF4 linears as stored,
     * whatever the adapter type: its weights are the real sizes of the
     * loaded model, not an estimate. */
    bool real = false;
    char load_err[sizeof(lc_error)] = "";
    if (c.prequantized_bnb4) {
        lc_model qm;
        lc_error lerr = {{0}};
        if (lc_model_load(&qm, o->dir, &lerr) == 0) {
            real = true;
            wdt = qm.embed.dtype;
            emb_bytes = (double)(qm.embed.rows * qm.embed.cols) *
                        (double)lc_dtype_size(qm.embed.dtype) *
                        (c.tie_word_embeddings ? 1.0 : 2.0);
            double total = lc_model_weight_bytes(&qm);
            nf4_bytes = total - emb_bytes;
            lc_model_free(&qm);
        } else {
            snprintf(load_err, sizeof load_err, "%s", lerr.msg);
        }
    }
    lc_memory_plan lp, qp;
    lc_memory_plan_cpu(&c, real ? emb_bytes + nf4_bytes : lc_memory_weight_bytes(&c, wdt),
                       lora_params, &lora, B, T, false, &lp);
    lc_memory_plan_cpu(&c, emb_bytes + nf4_bytes, lora_params, &lora, B, T, false, &qp);
    lc_memory_plan lpc, qpc;
    lc_memory_plan_cpu(&c, lp.weights, lora_params, &lora, B, T, true, &lpc);
    lc_memory_plan_cpu(&c, qp.weights, lora_params, &lora, B, T, true, &qpc);

    double unit = lp.total >= 1073741824.0 ? 1073741824.0 : 1048576.0;
    const char *un = unit > 1048576.0 ? "GiB" : "MiB";
    fprintf(out, "\nmemory plan (%s): LoRA r %d on all 7 linears (%zu trainable parameters), "
            "micro-batch %lld x sequence %lld, %s%s %s, CPU backend (%d threads)\n",
            un, o->rank, lora_params, (long long)B, (long long)T,
            real ? "NF4 linears + " : "", lc_dtype_name(wdt), real ? "embeddings" : "weights",
            omp_get_max_threads());
    fprintf(out, "  %-28s %9s %9s %9s %11s %9s %9s\n", "", "weights", "adapters", "optimizer",
            "activations", "workspace", "total");
    if (real) {
        plan_row(out, "LoRA/QLoRA (NF4 as stored)", &qp, unit);
        plan_row(out, "  + grad checkpointing*", &qpc, unit);
        fprintf(out, "  weights: the real sizes of this pre-quantized checkpoint as loaded, "
                "%.0f bytes: NF4 linears %.0f (packed codes, absmax, nested constants), "
                "embeddings%s %.0f at %s. The linears stay NF4 for adapter: lora too; for "
                "dense LoRA use the unquantized model.\n", emb_bytes + nf4_bytes, nf4_bytes,
                c.tie_word_embeddings ? "" : " and lm_head", emb_bytes, lc_dtype_name(wdt));
    } else {
        plan_row(out, "LoRA", &lp, unit);
        plan_row(out, "LoRA + grad checkpointing*", &lpc, unit);
        plan_row(out, "QLoRA (NF4)", &qp, unit);
        plan_row(out, "QLoRA + grad checkpointing*", &qpc, unit);
        fprintf(out, "  QLoRA: the linears as NF4 (0.5 byte/param + %.3f bit/param absmax with "
                "double quantization), embeddings%s at %s.\n", LC_NF4_ABSMAX_BITS,
                c.tie_word_embeddings ? "" : " and lm_head", lc_dtype_name(wdt));
        if (c.prequantized_bnb4)
            fprintf(out, "  note: the NF4 linears of this checkpoint could not be loaded (%s): "
                    "the rows above are estimates from config.json.\n", load_err);
    }
    fprintf(out, "  * gradient_checkpointing: true keeps each layer's input and recomputes the "
            "layer in backward (one extra forward).\n");
    double avail = lc_memory_available();
    if (avail > 0) {
        human(avail, hb, sizeof hb);
        fprintf(out, "  available memory now: %s\n", hb);
    }
    return 0;
}

/* eval.c — evaluation passes and `lorac eval` (see eval.h). */
#include "train/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autograd/cpu/blas.h"
#include "data/dataset.h"
#include "train/backend_select.h"
#include "train/engine.h"
#include "train/text_data.h"
#include "train/fsutil.h"
#include "train/memory_plan.h"
#include "train/sysinfo.h"

/* The progress line (lc_eval_progress) after rows_done rows, when due. */
static void report_progress(const lc_eval_progress *p, int64_t rows_done, double t0,
                            double *last, bool *shown)
{
    double now = lc_now_s();
    double first = p->first_s > 0 ? p->first_s : 2.0, every = p->every_s > 0 ? p->every_s : 10.0;
    if (now - t0 < first || (*shown && now - *last < (p->tty ? 0.25 : every)))
        return;
    char total[32] = "";
    if (p->rows > 0)
        snprintf(total, sizeof total, "/%lld", (long long)p->rows);
    fprintf(p->out, "%seval: %lld%s rows%s", p->tty ? "\r\033[K" : "", (long long)rows_done,
            total, p->tty ? "" : "\n");
    fflush(p->out);
    *last = now;
    *shown = true;
}

int lc_eval_files(const lc_model *m, lc_tape *t, const lc_lora *lora, const lc_dataset_opts *data,
                  const lc_eval_progress *progress, double *loss, int64_t *tokens, lc_error *err)
{
    lc_dataset_opts o = *data;
    o.shuffle = o.packing = false;
    const int64_t mb = o.micro_batch, seq_len = o.seq_len;
    lc_dataset_stream st;
    lc_batch_buf buf;
    if (lc_batch_buf_init(&buf, mb, seq_len, err))
        return -1;
    if (lc_dataset_stream_open(&st, &o, 0, 0, err)) {
        lc_batch_buf_free(&buf);
        return -1;
    }
    bool was = t->grad_enabled, was_training = t->training;
    t->grad_enabled = false;
    t->training = false; /* no LoRA dropout: evaluation is deterministic, as PEFT's eval() */
    double sum = 0, t0 = lc_now_s(), last = 0;
    bool shown = false;
    int64_t n = 0, T_used;
    int rc;
    while ((rc = lc_dataset_next_batch(&st, &buf, &T_used, err)) == 1) {
        lc_batch b;
        lc_batch_buf_compact(&buf, T_used, false, &b);
        double s;
        int64_t k;
        lc_tape_reset(t);
        lc_model_loss(m, t, &b, lora, 1, &s, &k);
        lc_tape_reset(t);
        sum += s;
        n += k;
        if (progress && progress->out)
            report_progress(progress, st.rows_emitted, t0, &last, &shown);
    }
    if (shown && progress->tty) {
        fprintf(progress->out, "\r\033[K");
        fflush(progress->out);
    }
    t->grad_enabled = was;
    t->training = was_training;
    lc_dataset_stream_close(&st);
    lc_batch_buf_free(&buf);
    if (rc < 0)
        return -1;
    if (n == 0)
        return lc_error_set(err, "evaluation data has no supervised tokens");
    *loss = sum / (double)n;
    *tokens = n;
    return 0;
}

/* The report's account of the frozen weights as loaded. */
static void describe_weights(const lc_model *m, lc_eval_report *r)
{
    r->cfg = m->cfg;
    r->weight_dtype = m->embed.dtype;
    r->weight_bytes = lc_model_weight_bytes(m);
    if (m->cfg.n_layers > 0 && m->layers[0].proj[0].nf4) {
        const lc_nf4 *q = m->layers[0].proj[0].nf4;
        r->nf4 = true;
        r->nf4_prequantized = m->cfg.prequantized_bnb4;
        r->nf4_blocksize = q->blocksize;
        r->nf4_double_quant = q->absmax_q != NULL;
    }
}

/* Rows, tokens and truncated rows of the data, into r; at least one row. */
static int count_rows(const lc_dataset_opts *dopts, lc_dataset_scan *scan, lc_eval_report *r,
                      lc_error *err)
{
    if (lc_dataset_scan_files(scan, dopts, err))
        return -1;
    r->rows = scan->n_rows;
    r->tokens = scan->tokens;
    r->truncated = scan->n_truncated;
    r->counts = scan->counts;
    if (scan->n_rows == 0)
        return lc_error_set(err, "%s: no rows to evaluate on", dopts->paths[0]);
    return 0;
}

/* The data options of o for a model of vocab ids: the config's text data
 * (encoders opened into *text), or tokenized files. */
static int data_opts(const lc_eval_opts *o, int64_t vocab, int64_t T, int64_t mb,
                     lc_text_data *text, lc_dataset_opts *d, lc_error *err)
{
    if (o->config) {
        lc_train_config c = *o->config;
        c.sequence_len = T;
        c.micro_batch_size = mb;
        if (lc_text_data_open(text, &c, vocab, NULL, NULL, err))
            return -1;
        if (c.n_test_datasets == 0 && c.val_set_size > 0) { /* the rows training held out */
            lc_dataset_opts all = lc_text_data_opts(text, &c, false, vocab);
            lc_dataset_scan s;
            if (lc_dataset_scan_files(&s, &all, err))
                return -1;
            int rc = lc_text_data_hold_out(text, &c, &s, err);
            lc_dataset_scan_free(&s);
            if (rc)
                return -1;
        }
        *d = lc_text_data_opts(text, &c, lc_text_data_has_eval(text, &c), vocab);
        return 0;
    }
    *d = (lc_dataset_opts){.paths = o->data, .n_paths = o->n_data, .vocab = vocab, .seq_len = T,
                           .micro_batch = mb, .excess = LC_EXCESS_TRUNCATE};
    return 0;
}

int lc_eval_run(const lc_eval_opts *o, lc_eval_report *r, lc_error *err)
{
    memset(r, 0, sizeof *r);
    if (o->n_data < 1)
        return lc_error_set(err, "no data files to evaluate on");
    lc_model m;
    lc_lora lora;
    memset(&lora, 0, sizeof lora);
    lc_engine eng = {0};
    lc_backend *be = NULL;
    lc_dataset_scan scan = {0};
    lc_text_data text = {0};
    lc_dataset_opts dopts;
    int rc = -1;
    const lc_model_load_opts lo = {.nf4 = o->nf4,
                                   .nf4_blocksize = o->nf4_blocksize > 0 ? o->nf4_blocksize : 64,
                                   .nf4_double_quant = o->nf4_double_quant};
    if (lc_model_load_with(&m, o->model_dir, &lo, err))
        return -1;
    describe_weights(&m, r);
    const int64_t T = lc_model_config_seq_len(&m.cfg, o->seq_len);
    const int64_t mb = o->micro_batch > 0 ? o->micro_batch : 1;
    r->seq_len = T;
    if (o->adapter_dir) {
        if (lc_lora_load_peft(&lora, &m.cfg, o->adapter_dir, err) ||
            lc_model_dora_freeze(&m, &lora, err)) {
            lc_error_prefix(err, "adapter %s (for base model %s)", o->adapter_dir, o->model_dir);
            goto out;
        }
        r->lora_r = lora.cfg.r;
        r->lora_alpha = lora.cfg.alpha;
        r->lora_dora = lora.cfg.use_dora;
    }
    if (data_opts(o, m.cfg.vocab_size, T, mb, &text, &dopts, err) ||
        count_rows(&dopts, &scan, r, err))
        goto out;
    /* the engine plans a training step: a bound on an evaluation's */
    if (lc_backend_open(o->device, o->compute_dtype, &be, err) ||
        lc_engine_open(&eng, be, &m, o->adapter_dir ? &lora : NULL, mb, T, NULL, err))
        goto out;
    r->backend = be->name;
    double t0 = lc_now_s();
    lc_eval_progress progress = o->progress;
    progress.rows = r->rows;
    if (lc_eval_files(eng.model, &eng.tape, eng.lora, &dopts, &progress, &r->loss,
                      &r->supervised, err))
        goto out;
    r->seconds = lc_now_s() - t0;
    r->perplexity = exp(r->loss);
    r->tokens_per_s = r->seconds > 0 ? (double)r->tokens / r->seconds : 0;
    rc = 0;
out:
    lc_dataset_scan_free(&scan);
    lc_text_data_close(&text);
    lc_engine_close(&eng);
    lc_backend_close(be);
    lc_lora_free(&lora);
    lc_model_free(&m);
    return rc;
}

int lc_eval_opts_from_config(const lc_train_config *c, lc_eval_opts *o, char *adapter_buf,
                             size_t adapter_len, const char **adapter_from,
                             const char **data_from, lc_error *err)
{
    memset(o, 0, sizeof *o);
    o->model_dir = c->base_model;
    o->nf4 = c->qlora; /* as lorac train loads it */
    o->nf4_blocksize = c->bnb_4bit_blocksize;
    o->nf4_double_quant = c->bnb_4bit_use_double_quant;
    *adapter_from = "none";
    char probe[4200];
    if (c->output_dir) {
        snprintf(probe, sizeof probe, "%s/adapter_model.safetensors", c->output_dir);
        if (lc_path_exists(probe)) {
            if ((size_t)snprintf(adapter_buf, adapter_len, "%s", c->output_dir) >= adapter_len)
                return lc_error_set(err, "output_dir: path too long");
            o->adapter_dir = adapter_buf;
            *adapter_from = "output_dir";
        }
    }
    if (!o->adapter_dir && c->lora_model_dir) {
        o->adapter_dir = c->lora_model_dir;
        *adapter_from = "lora_model_dir";
    }
    o->config = c;
    if (c->n_test_datasets > 0) {
        o->data = c->test_datasets;
        o->n_data = c->n_test_datasets;
        *data_from = "test_datasets";
    } else {
        o->data = c->datasets;
        o->n_data = c->n_datasets;
        *data_from = "datasets";
    }
    o->seq_len = c->sequence_len;
    o->micro_batch = c->micro_batch_size;
    o->device = c->device;
    o->compute_dtype = c->compute_dtype;
    return 0;
}

static void print_report(FILE *out, const lc_eval_opts *o, const lc_eval_report *r,
                         const char *adapter_from, const char *data_from, bool from_config)
{
    fprintf(out, "model:             %s (%s, %d layer%s, %s", o->model_dir,
            lc_arch_name(r->cfg.arch), r->cfg.n_layers, lc_plural(r->cfg.n_layers),
            lc_dtype_name(r->weight_dtype));
    if (r->nf4)
        fprintf(out, "; linears NF4, %s, blocksize %lld%s", r->nf4_prequantized
                ? "pre-quantized checkpoint" : "quantized at load", (long long)r->nf4_blocksize,
                r->nf4_double_quant ? ", double quant" : "");
    fprintf(out, "; weights %.1f MiB)\n", r->weight_bytes / 1048576.0);
    if (o->adapter_dir)
        fprintf(out, "adapter:           %s (%sr %d, alpha %g; from %s)\n", o->adapter_dir,
                r->lora_dora ? "DoRA, " : "", r->lora_r, r->lora_alpha, adapter_from);
    else
        fprintf(out, "adapter:           none (base model alone%s)\n",
                from_config ? "; no adapter in output_dir and no lora_model_dir" : "");
    const lc_data_counts *k = &r->counts;
    fprintf(out, "data:              %d file%s from %s%s, %lld row%s (%lld truncated to %lld "
            "token%s", o->n_data, lc_plural(o->n_data), data_from,
            o->config && o->config->n_test_datasets == 0 && o->config->val_set_size > 0
                ? " (the rows val_set_size holds out)" : "",
            (long long)r->rows, lc_plural(r->rows), (long long)r->truncated,
            (long long)r->seq_len, lc_plural(r->seq_len));
    if (k->dropped_long + k->dropped_short + k->dropped_untrained)
        fprintf(out, "; %lld dropped: %lld too long, %lld under %d tokens, %lld with nothing "
                "supervised", (long long)(k->dropped_long + k->dropped_short +
                                          k->dropped_untrained),
                (long long)k->dropped_long, (long long)k->dropped_short, LC_MIN_ROW_TOKENS,
                (long long)k->dropped_untrained);
    fprintf(out, "), micro-batch %lld\n", (long long)(o->micro_batch > 0 ? o->micro_batch : 1));
    fprintf(out, "loss:              %.9g\n", r->loss);
    fprintf(out, "perplexity:        %.6g\n", r->perplexity);
    fprintf(out, "supervised tokens: %lld\n", (long long)r->supervised);
    fprintf(out, "tokens/s:          %.1f on %s (%lld token%s in %.3f s)\n", r->tokens_per_s,
            r->backend, (long long)r->tokens, lc_plural(r->tokens), r->seconds);
    char cpu[512];
    lc_cpu_describe(cpu, sizeof cpu);
    fprintf(out, "%s\n", cpu);
}

int lc_eval_command(const lc_eval_request *req, FILE *out, lc_error *err)
{
    lc_eval_opts o = req->direct;
    const char *adapter_from = "--adapter", *data_from = "--data";
    char adapter_buf[4200];
    lc_train_config cfg;
    memset(&cfg, 0, sizeof cfg);
    int rc = -1;
    if (req->config &&
        (lc_train_config_load(&cfg, req->config, req->sets, req->n_sets, err) ||
         lc_eval_opts_from_config(&cfg, &o, adapter_buf, sizeof adapter_buf, &adapter_from,
                                  &data_from, err)))
        goto out;
    o.progress = (lc_eval_progress){.out = stderr, .tty = isatty(STDERR_FILENO)}; /* the
                                                        * report goes to out, when done */
    lc_eval_report r;
    if (lc_eval_run(&o, &r, err))
        goto out;
    print_report(out, &o, &r, adapter_from, data_from, req->config != NULL);
    rc = 0;
out:
    lc_train_config_free(&cfg); /* zeroed when there is no config: a no-op */
    return rc;
}

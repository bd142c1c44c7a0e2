/* trainer.c — the training loop (see trainer.h).
 *
 * Loss of an optimizer step = Σ token losses over all its micro-batches /
 * supervised tokens of the whole step: every micro-batch of a step is read
 * before the first forward so that count is known, and each micro-batch's
 * backward is scaled by it. Accumulation therefore equals one big batch,
 * whatever the rows' lengths.
 *
 * Everything that decides the numbers — data order, dropout masks, the
 * optimizer — derives from (seed, step), and the data cursor is saved with
 * each checkpoint, so a resumed run is bitwise identical to an
 * uninterrupted one.
 *
 * A run is never silently mixed with another, lost, or reported finished
 * when it is not: it locks output_dir (outdir_lock.h), records what defines
 * it in every checkpoint and resumes only a checkpoint whose record agrees
 * (run_record.h), refuses another run's directory, watches its data and
 * model files (fingerprint.h), checks everything it will read before the
 * first step, undoes updates that overflow, writes the final adapter
 * before anything that can still fail, and answers every stop request with
 * a checkpoint and a non-zero status (the signal handling below). */
#include "train/sysinfo.h"
#include "train/trainer.h"
#include "train/gguf_export.h"
#include "train/gguf_model.h"
#include "train/samples.h"
#include "train/text_data.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "autograd/cpu/blas.h"
#include "autograd/hash.h"
#include "data/dataset.h"
#include "train/backend_select.h"
#include "train/checkpoint.h"
#include "train/device_model.h"
#include "train/engine.h"
#include "train/eval.h"
#include "train/fingerprint.h"
#include "train/fsutil.h"
#include "train/memory_plan.h"
#include "train/metrics.h"
#include "train/outdir_lock.h"
#include "train/run_record.h"
#include "train/staging.h"
#include "train/step.h"

/* How a run is asked to stop. SIGINT, SIGTERM, SIGHUP (the terminal went
 * away) and SIGPIPE (whoever read the log went away) all ask the loop to
 * save a checkpoint at the end of the current step and stop; lc_train_run
 * then returns the signal, and `lorac train` exits with 128 + it, the
 * status a shell gives a process the signal killed. A second SIGINT (a
 * second Ctrl-C), and any of them during setup (loading, quantizing,
 * scanning: nothing trained, nothing to save), kill the process at once
 * by the signal itself. Every file a run writes is written atomically, so
 * that leaves the earlier checkpoints intact. */
static volatile sig_atomic_t stop_requested; /* the signal, 0 when none */
static volatile sig_atomic_t in_setup;

static const int stop_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE};
#define N_STOP_SIGNALS ((int)(sizeof stop_signals / sizeof stop_signals[0]))

static void on_signal(int sig)
{
    if (in_setup || (sig == SIGINT && stop_requested)) {
        signal(sig, SIG_DFL);
        raise(sig); /* delivered when the handler returns */
        return;
    }
    if (!stop_requested)
        stop_requested = sig;
}

/* A base model file truncated (or rewritten in place) while the run reads
 * its memory-mapped weights makes the next read raise SIGBUS, which would
 * kill the process without a word. The handler names the file (the mapped
 * range holding the faulting address) in one line on the log's descriptor
 * — the only output a run can still give at that point — and exits 1.
 * Changes that do not fault (a file replaced by rename, or rewritten with
 * the same size) are caught by the fingerprint check at each epoch and
 * checkpoint (inputs_unchanged, save_checkpoint). */
#define MAX_BUS_FILES 256
static struct {
    uintptr_t lo, hi;
    const char *path;
} bus_files[MAX_BUS_FILES];
static volatile sig_atomic_t n_bus_files;
static int bus_fd = 2;

static void say(const char *s)
{
    ssize_t w = write(bus_fd, s, strlen(s));
    (void)w;
}

static void on_sigbus(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    (void)ctx;
    uintptr_t a = (uintptr_t)si->si_addr;
    const char *path = "(a memory-mapped file)";
    for (int i = 0; i < n_bus_files; i++)
        if (a >= bus_files[i].lo && a < bus_files[i].hi)
            path = bus_files[i].path;
    say("\nlorac: base_model file ");
    say(path);
    say(" was truncated or changed while training (reading its memory-mapped weights failed: "
        "SIGBUS); the run stopped; the checkpoints already written are intact\n");
    _exit(1);
}

/* Registers the model's mapped files for on_sigbus. */
static void watch_mapped_files(const lc_model *m, int log_fd)
{
    n_bus_files = 0;
    bus_fd = log_fd;
    for (size_t i = 0; m->has_files && i < m->files.n_shards && i < MAX_BUS_FILES; i++) {
        const lc_st_file *f = &m->files.shards[i];
        bus_files[i].lo = (uintptr_t)f->map;
        bus_files[i].hi = (uintptr_t)f->map + f->map_size;
        bus_files[i].path = f->path;
        n_bus_files = (sig_atomic_t)(i + 1);
    }
    if (m->gguf) {
        const lc_gguf_file *g = lc_gguf_base_file(m->gguf);
        bus_files[0].lo = (uintptr_t)g->map;
        bus_files[0].hi = (uintptr_t)g->map + g->map_size;
        bus_files[0].path = g->path;
        n_bus_files = 1;
    }
}

static void format_eta(double s, char *buf, size_t n)
{
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else
        snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
}

typedef struct run {
    const lc_train_config *cfg;
    lc_model model;
    lc_lora lora;
    lc_adamw opt;                /* AdamW state; on a device the host copy checkpoints use */
    /* where steps run: the CPU (eng.model, eng.lora and step_opt are model,
     * lora and opt) or a device (the mirrors and dev_opt; state_to_host and
     * state_to_device move the trained values between them) */
    lc_backend *be;
    lc_engine eng;
    lc_adamw dev_opt;
    lc_adamw *step_opt;
    lc_dataset_opts dopts;
    lc_text_data text;           /* tokenizer, chat template and row encoders of text datasets */
    lc_samples samples;          /* sample_prompts, answered at each evaluation point */
    lc_dataset_scan scan;
    lc_dataset_stream stream;
    bool stream_open;
    lc_batch_buf *bufs;          /* [accumulation] */
    lc_batch *batches;
    lc_train_state st;
    int64_t step_epoch;          /* epoch the current step's data came from */
    int64_t warmup;
    lc_metrics metrics;
    int64_t eval_rows;           /* rows of the evaluation data (progress lines) */
    FILE *log;
    bool tty;
    int stopped_by;              /* the signal the run stopped for (checkpoint saved) */
    double t_start;              /* when this invocation's first step began (lc_now_s) */
    int64_t applied;             /* steps this invocation applied (not refused) */
    lc_real *backup;             /* [3 · n_params] on be: params, Adam m, v before an update */
    lc_outdir_lock lock;         /* output_dir, held for the whole run */
    lc_modelprint model_print;   /* base_model's files as loaded */
    lc_fileprint data_print[LC_CONFIG_MAX_DATASETS];
    cJSON *record;               /* this run's record (run_record.h) */
} run;

/* On a device: the trained values (LoRA, AdamW moments and count) copied to
 * the host structs that checkpoints, adapter files and samples read. */
static void state_to_host(run *r)
{
    if (!r->be || !r->be->device)
        return;
    size_t bytes = r->lora.n_params * sizeof(lc_real);
    lc_device_lora_download(&r->eng.dev, &r->lora);
    r->be->download(r->be, r->opt.m, r->dev_opt.m, bytes);
    r->be->download(r->be, r->opt.v, r->dev_opt.v, bytes);
    r->opt.step = r->dev_opt.step;
}

/* The reverse, after a resume loaded the host structs. */
static void state_to_device(run *r)
{
    if (!r->be->device)
        return;
    size_t bytes = r->lora.n_params * sizeof(lc_real);
    lc_device_lora_upload(&r->eng.dev, &r->lora);
    r->be->upload(r->be, r->dev_opt.m, r->opt.m, bytes);
    r->be->upload(r->be, r->dev_opt.v, r->opt.v, bytes);
    r->dev_opt.step = r->opt.step;
}

static int save_checkpoint(run *r, lc_error *err)
{
    char path[4200];
    state_to_host(r);
    if (lc_modelprint_unchanged(&r->model_print, err))
        return lc_error_prefix(err, "not saving checkpoint-%lld (weights read since may be "
                               "wrong; the earlier checkpoints are kept)", (long long)r->st.step);
    if (lc_checkpoint_save(r->cfg->output_dir, &r->lora, &r->opt, &r->st, r->cfg->base_model,
                           r->cfg->save_total_limit, r->record, path, sizeof path, err))
        return -1;
    fprintf(r->log, "%ssaved %s\n", r->tty ? "\r\033[K" : "", path);
    return 0;
}

/* Before an epoch reads the datasets again: they and the model must be the
 * files the run started with (a dataset replaced or appended to would
 * otherwise be read silently as if it were the same data). */
static int inputs_unchanged(run *r, lc_error *err)
{
    const lc_train_config *c = r->cfg;
    for (int i = 0; i < c->n_datasets; i++) {
        if (lc_fileprint_unchanged(c->datasets[i], &r->data_print[i], err)) {
            char what[LC_ERROR_MAX];
            snprintf(what, sizeof what, "%s", err->msg);
            return lc_error_set(err, "datasets[%d]: %.900s; it is not read again: the run "
                                "stops at step %lld (resume with resume_allow_data_change: "
                                "true to train on the new content)", i, what,
                                (long long)r->st.step);
        }
    }
    return lc_modelprint_unchanged(&r->model_print, err);
}

/* Reads the micro-batches of the next optimizer step. Returns how many
 * (0 only on error, with rc −1). */
static int gather_step(run *r, int64_t *n_mb, lc_error *err)
{
    *n_mb = 0;
    int64_t accum = r->cfg->gradient_accumulation_steps;
    int empty_epochs = 0;
    while (*n_mb < accum) {
        if (!r->stream_open) {
            if (inputs_unchanged(r, err) ||
                lc_dataset_stream_open(&r->stream, &r->dopts, r->st.epoch, r->st.rows_in_epoch, err))
                return -1;
            r->stream_open = true;
        }
        int64_t T_used;
        int rc = lc_dataset_next_batch(&r->stream, &r->bufs[*n_mb], &T_used, err);
        if (rc < 0)
            return -1;
        if (rc == 0) {
            lc_dataset_stream_close(&r->stream);
            r->stream_open = false;
            r->st.epoch++;
            r->st.rows_in_epoch = 0;
            if (*n_mb > 0)
                break; /* an epoch's last step may be short */
            if (++empty_epochs > 1)
                return lc_error_set(err, "the dataset yields no batches");
            continue;
        }
        lc_batch_buf_compact(&r->bufs[*n_mb], T_used, r->cfg->sample_packing, &r->batches[*n_mb]);
        if (*n_mb == 0)
            r->step_epoch = r->st.epoch;
        r->st.rows_in_epoch = r->stream.rows_emitted;
        (*n_mb)++;
    }
    return 0;
}

/* The step's line of metrics.jsonl (not for a refused step) and of the log. */
static int log_step(run *r, int64_t step, double loss, double norm, double lr, int64_t sup,
                    double tok_s, double eta_s, bool refused, lc_error *err)
{
    if (step % r->cfg->logging_steps != 0 && step != r->st.total_steps && !refused)
        return 0;
    lc_metrics_step line = {.step = step, .loss = loss, .grad_norm = norm, .lr = lr,
                            .tokens = sup, .epoch = r->step_epoch, .tok_s = tok_s};
    if (!refused && lc_metrics_train(&r->metrics, &line, err))
        return -1;
    char eta[32], elapsed[32];
    format_eta(eta_s, eta, sizeof eta);
    format_eta(lc_now_s() - r->t_start, elapsed, sizeof elapsed);
    fprintf(r->log, "%sstep %lld/%lld  loss %.4f  lr %.3g  grad_norm %.3f  %.0f tok/s  elapsed %s  "
            "ETA %s  mem %.2f GiB%s", r->tty ? "\r\033[K" : "", (long long)step,
            (long long)r->st.total_steps, loss, lr, norm, tok_s, elapsed, eta,
            lc_current_rss_bytes() / 1073741824.0, r->tty ? "" : "\n");
    fflush(r->log);
    return 0;
}

static int run_eval(run *r, int64_t step, lc_error *err)
{
    const lc_train_config *c = r->cfg;
    double loss;
    int64_t tokens;
    lc_dataset_opts o = lc_text_data_opts(&r->text, c, true, r->model.cfg.vocab_size);
    lc_eval_progress progress = {.out = r->log, .tty = r->tty, .rows = r->eval_rows};
    if (lc_eval_files(r->eng.model, &r->eng.tape, r->eng.lora, &o, &progress, &loss, &tokens, err))
        return lc_error_prefix(err, "evaluation at step %lld", (long long)step);
    if (lc_metrics_eval(&r->metrics, step, loss, tokens, err))
        return -1;
    fprintf(r->log, "%seval at step %lld: loss %.4f  ppl %.3f  (%lld token%s)\n",
            r->tty ? "\r\033[K" : "", (long long)step, loss, exp(loss), (long long)tokens,
            lc_plural(tokens));
    return 0;
}

/* What happens every eval_steps and at the end: the evaluation (when there is
 * evaluation data) and the sample generations (when there are prompts). */
static bool has_eval_point(const run *r)
{
    return lc_text_data_has_eval(&r->text, r->cfg) || r->samples.n > 0;
}

static int eval_point(run *r, int64_t step, lc_error *err)
{
    if (lc_text_data_has_eval(&r->text, r->cfg) && run_eval(r, step, err))
        return -1;
    if (r->samples.n > 0)
        state_to_host(r); /* samples generate on the CPU from the host values */
    return lc_samples_run(&r->samples, step, &r->metrics, r->log, r->tty, err);
}

/* The run writes its final adapter into output_dir and, with
 * overwrite_output_dir, deletes adapters and checkpoints there: it must
 * not be the base model's directory, nor be or hold the adapter the run
 * starts from. */
static int check_output_dir(const lc_train_config *c, lc_error *err)
{
    if (c->lora_model_dir && lc_path_contains(c->output_dir, c->lora_model_dir))
        return lc_error_set(err, "output_dir %s is (or contains) lora_model_dir %s, the adapter "
                            "this run starts from, which the run would overwrite: choose another "
                            "output_dir", c->output_dir, c->lora_model_dir);
    if (lc_path_contains(c->output_dir, c->base_model) &&
        lc_path_contains(c->base_model, c->output_dir))
        return lc_error_set(err, "output_dir %s is the base_model directory: choose another "
                            "output_dir", c->output_dir);
    return 0;
}

/* test_datasets are read and checked in full before the first step, so
 * that a bad evaluation file fails the run at once instead of after the
 * training it would then throw away. */
static int check_eval_data(run *r, lc_error *err)
{
    const lc_train_config *c = r->cfg;
    if (!lc_text_data_has_eval(&r->text, c))
        return 0;
    lc_dataset_opts o = lc_text_data_opts(&r->text, c, true, r->model.cfg.vocab_size);
    lc_dataset_scan s;
    if (lc_dataset_scan_files(&s, &o, err))
        return lc_error_prefix(err, "test_datasets");
    lc_data_summary(r->log, "eval data", &s.counts, c->sequence_len);
    int64_t sup = s.supervised;
    r->eval_rows = s.n_rows;
    lc_dataset_scan_free(&s);
    if (sup == 0)
        return lc_error_set(err, "test_datasets: no supervised tokens to evaluate on (every "
                            "label is -100 or rows have one token)");
    return 0;
}

/* The checkpoint to resume (auto: the newest of this run) into path, or
 * "" for a fresh start. */
static void resume_target(run *r, char *path, size_t n)
{
    const lc_train_config *c = r->cfg;
    const char *want = c->resume_from_checkpoint;
    path[0] = '\0';
    if (want && strcmp(want, "auto") != 0)
        snprintf(path, n, "%s", want);
    else if (want)
        lc_checkpoint_latest(c->output_dir, lc_run_record_identity(r->record), path, n);
}

/* The refusal of an output_dir that holds another run's checkpoint other
 * (or, other NULL, an earlier run's final adapter). */
static int refuse_other_run(run *r, const char *other, lc_error *err)
{
    const char *dir = r->cfg->output_dir;
    if (!other)
        return lc_error_set(err, "output_dir %s holds the adapter of an earlier run "
                            "(adapter_model.safetensors); choose another output_dir, or set "
                            "overwrite_output_dir: true to replace it", dir);
    cJSON *saved = NULL;
    char changes[2048];
    lc_error why;
    int differs = lc_checkpoint_read_run(other, &saved, &why) ||
                  lc_run_record_check(saved, r->record, false, other, changes, sizeof changes,
                                      &why);
    cJSON_Delete(saved);
    if (!differs)
        return lc_error_set(err, "output_dir %s already holds %s of a run with these settings "
                            "(this one is not resuming it): set resume_from_checkpoint: auto to "
                            "continue it, or overwrite_output_dir: true to start over", dir,
                            other);
    return lc_error_set(err, "output_dir %s holds another run's checkpoints: %.700s; choose "
                        "another output_dir, or set overwrite_output_dir: true to delete them",
                        dir, why.msg);
}

/* A run owns output_dir: other runs' checkpoints there (for a fresh run,
 * every checkpoint and a final adapter) are refused, or deleted with
 * overwrite_output_dir, so that pruning, auto-resume and the final adapter
 * never mix two runs. */
static int claim_output_dir(run *r, const char *target, lc_error *err)
{
    const lc_train_config *c = r->cfg;
    char other[4200], adapter[4200];
    snprintf(adapter, sizeof adapter, "%s/adapter_model.gguf", c->output_dir);
    if (lc_path_contains(adapter, c->base_model)) /* the final adapter would replace it */
        return lc_error_set(err, "base_model %s is output_dir's adapter_model.gguf, which "
                            "training writes: move the base model or choose another output_dir",
                            c->base_model);
    const char *mine = target[0] ? lc_run_record_identity(r->record) : NULL;
    bool has_other = lc_checkpoint_other(c->output_dir, mine, other, sizeof other);
    snprintf(adapter, sizeof adapter, "%s/adapter_model.safetensors", c->output_dir);
    bool has_adapter = !target[0] && lc_path_exists(adapter);
    if (!has_other && !has_adapter)
        return 0;
    if (!c->overwrite_output_dir)
        return refuse_other_run(r, has_other ? other : NULL, err);
    if (lc_checkpoint_remove_others(c->output_dir, mine, err))
        return -1;
    if (has_adapter) {
        unlink(adapter);
        snprintf(adapter, sizeof adapter, "%s/adapter_config.json", c->output_dir);
        unlink(adapter);
        snprintf(adapter, sizeof adapter, "%s/adapter_model.gguf", c->output_dir);
        unlink(adapter);
    }
    fprintf(r->log, "overwrite_output_dir: removed the earlier run's %s from %s\n",
            has_other ? "checkpoints" : "adapter", c->output_dir);
    return 0;
}

/* Prints "resume: changed KEY OLD -> NEW" for each line of changes. */
static void print_changes(run *r, const char *changes)
{
    for (const char *p = changes; *p;) {
        const char *nl = strchr(p, '\n');
        int len = nl ? (int)(nl - p) : (int)strlen(p);
        fprintf(r->log, "resume: changed %.*s\n", len, p);
        p += len + (nl != NULL);
    }
}

/* Claims output_dir and loads the checkpoint to resume (if any), once its
 * run record shows it is this run's (run_record.h: FIXED keys, base model,
 * data): the record is checked before the claim, so that resuming with a
 * changed key is reported as such rather than as another run's directory. */
static int claim_and_resume(run *r, lc_error *err)
{
    const lc_train_config *c = r->cfg;
    char path[4200], changes[4096];
    resume_target(r, path, sizeof path);
    if (c->resume_from_checkpoint && !path[0])
        fprintf(r->log, "resume: no checkpoint of this run in %s, starting fresh\n",
                c->output_dir);
    cJSON *saved = NULL;
    if (path[0]) {
        int rc = lc_checkpoint_read_run(path, &saved, err) ||
                 lc_run_record_check(saved, r->record, c->resume_allow_data_change, path,
                                     changes, sizeof changes, err);
        cJSON_Delete(saved);
        if (rc)
            return lc_error_prefix(err, "resume_from_checkpoint");
    }
    if (claim_output_dir(r, path, err))
        return -1;
    if (!path[0])
        return 0;
    lc_train_state st;
    if (lc_checkpoint_load(path, &r->lora, &r->opt, &st, NULL, err))
        return lc_error_prefix(err, "resume_from_checkpoint");
    print_changes(r, changes);
    r->st.step = st.step;
    r->st.epoch = st.epoch;
    r->st.rows_in_epoch = st.rows_in_epoch;
    r->st.bad_steps = st.bad_steps;
    fprintf(r->log, "resume: %s (step %lld, epoch %lld, %lld row%s into it)\n", path,
            (long long)st.step, (long long)st.epoch, (long long)st.rows_in_epoch,
            lc_plural(st.rows_in_epoch));
    return 0;
}

/* The base model (fingerprinted, then loaded; its mapped files watched
 * for SIGBUS) and the adapter to train, described in the log. */
static int load_model_and_adapter(run *r, lc_error *err)
{
    const lc_train_config *c = r->cfg;
    lc_model_load_opts lo = {.nf4 = c->qlora, .nf4_blocksize = c->bnb_4bit_blocksize,
                             .nf4_double_quant = c->bnb_4bit_use_double_quant};
    if (lc_modelprint_take(&r->model_print, c->base_model, err) ||
        lc_model_load_with(&r->model, c->base_model, &lo, err))
        return -1;
    watch_mapped_files(&r->model, fileno(r->log));
    const lc_model_config *mc = &r->model.cfg;
    bool nf4 = r->model.nf4 != NULL;
    fprintf(r->log, "model: %s (%s), %d layer%s, hidden %d, %d/%d heads, vocab %d, %s%s\n",
            c->base_model, lc_arch_name(mc->arch), mc->n_layers, lc_plural(mc->n_layers),
            mc->hidden_size, mc->n_heads,
            mc->n_kv_heads, mc->vocab_size,
            r->model.gguf ? "GGUF" : lc_dtype_name(r->model.embed.dtype),
            r->model.gguf ? " (weights in their GGUF types)"
            : !nf4 ? ""
                 : mc->prequantized_bnb4 ? ", linears NF4 (pre-quantized checkpoint)"
                 : c->bnb_4bit_use_double_quant ? ", linears quantized to NF4 (double quant)"
                                                : ", linears quantized to NF4");
    char cpu[512];
    lc_cpu_describe(cpu, sizeof cpu);
    fprintf(r->log, "%s\n", cpu);
    r->model.checkpoint_layers = c->gradient_checkpointing;
    if (c->lora_model_dir) {
        if (lc_lora_load_peft(&r->lora, mc, c->lora_model_dir, err))
            return -1;
        fprintf(r->log, "adapter: starting from %s (r %d, alpha %g)\n", c->lora_model_dir,
                r->lora.cfg.r, r->lora.cfg.alpha);
    } else {
        if (lc_lora_init(&r->lora, mc, &c->lora, c->seed, err) ||
            lc_model_dora_init(&r->model, &r->lora, err))
            return -1;
    }
    char plus[128] = "";
    if (c->loraplus_lr_ratio > 0)
        snprintf(plus, sizeof plus, ", LoRA+ (lora_B at %g x the learning rate%s)",
                 c->loraplus_lr_ratio, c->weight_decay > 0 ? "; no weight decay, as Axolotl" : "");
    fprintf(r->log, "adapter: %s r %d, alpha %g%s, dropout %g%s, %zu trainable parameters\n",
            r->lora.cfg.use_dora ? "DoRA" : "LoRA", r->lora.cfg.r, r->lora.cfg.alpha,
            r->lora.cfg.use_rslora ? " (rsLoRA)" : "", r->lora.cfg.dropout, plus,
            r->lora.n_params);
    return 0;
}

/* The training data scanned (every row read and checked, the label audit),
 * the evaluation data checked, and the schedule. */
static int load_data(run *r, lc_error *err)
{
    const lc_train_config *c = r->cfg;
    const lc_model_config *mc = &r->model.cfg;
    if (lc_text_data_open(&r->text, c, mc->vocab_size, r->data_print, r->log, err))
        return -1;
    r->dopts = lc_text_data_opts(&r->text, c, false, mc->vocab_size);
    if (lc_dataset_scan_files(&r->scan, &r->dopts, err) ||
        lc_text_data_hold_out(&r->text, c, &r->scan, err))
        return -1;
    r->dopts = lc_text_data_opts(&r->text, c, false, mc->vocab_size);
    const lc_dataset_scan *s = &r->scan;
    lc_data_summary(r->log, "data", &s->counts, c->sequence_len);
    if (s->n_rows == 0)
        return lc_error_set(err, "datasets: no rows left to train on (%lld line%s read; the "
                            "data line above says where they went)", (long long)s->counts.lines,
                            lc_plural(s->counts.lines));
    if (s->supervised == 0)
        return lc_error_set(err, "datasets: no supervised tokens (every label is -100 or rows "
                            "have one token): nothing to train on");
    if (check_eval_data(r, err))
        return -1;

    int64_t total = 0;
    if (c->max_steps > 0) {
        total = c->max_steps;
    } else {
        for (int64_t e = 0; e < c->num_epochs; e++) {
            int64_t nb = lc_dataset_epoch_batches(s, &r->dopts, e);
            total += (nb + c->gradient_accumulation_steps - 1) / c->gradient_accumulation_steps;
        }
    }
    r->st.total_steps = total;
    r->st.seed = c->seed;
    r->warmup = c->warmup_steps > 0 ? c->warmup_steps : (int64_t)ceil(c->warmup_ratio * (double)total);
    fprintf(r->log, "schedule: %lld optimizer step%s (micro-batch %lld x accumulation %lld), "
            "warmup %lld\n", (long long)total, lc_plural(total), (long long)c->micro_batch_size,
            (long long)c->gradient_accumulation_steps, (long long)r->warmup);
    return 0;
}

/* The engine (memory plan, refused when it cannot fit; on a device the
 * uploads), the optimizer (on a device a host copy too, for checkpoints) and
 * the buffers of a step. */
static int allocate(run *r, lc_error *err)
{
    const lc_train_config *c = r->cfg;
    size_t n = r->lora.n_params;
    if (lc_engine_open(&r->eng, r->be, &r->model, &r->lora, c->micro_batch_size, c->sequence_len,
                       r->log, err) ||
        lc_adamw_init(&r->opt, n, err) ||
        (r->be->device && lc_adamw_init_on(&r->dev_opt, n, r->be, err)))
        return -1;
    r->step_opt = r->be->device ? &r->dev_opt : &r->opt;
    if (c->loraplus_lr_ratio > 0 &&
        (lc_lora_loraplus_groups(&r->lora, c->loraplus_lr_ratio, &r->opt, err) ||
         (r->be->device &&
          lc_lora_loraplus_groups(&r->lora, c->loraplus_lr_ratio, &r->dev_opt, err))))
        return -1;
    lc_error e = {{0}};
    if (!(r->backup = r->be->alloc(r->be, 3 * n * sizeof(lc_real) + 1, &e)))
        return lc_error_set(err, "the update's rollback copy: %s", e.msg);
    int64_t accum = c->gradient_accumulation_steps;
    r->bufs = calloc((size_t)accum, sizeof *r->bufs);
    r->batches = calloc((size_t)accum, sizeof *r->batches);
    if (!r->bufs || !r->batches)
        return lc_error_set(err, "out of memory for batch buffers");
    for (int64_t i = 0; i < accum; i++)
        if (lc_batch_buf_init(&r->bufs[i], c->micro_batch_size, c->sequence_len, err))
            return -1;
    return 0;
}

static int setup(run *r, lc_error *err)
{
    const lc_train_config *c = r->cfg;
    if (lc_backend_open(c->device, c->compute_dtype, &r->be, err) ||
        check_output_dir(c, err) || lc_outdir_lock_take(&r->lock, c->output_dir, err))
        return -1;
    char where[512];
    lc_backend_describe(r->be, where, sizeof where);
    fprintf(r->log, "backend: %s\n", where);
    for (int i = 0; i < c->n_datasets; i++)
        if (lc_fileprint_take(c->datasets[i], false, &r->data_print[i], err))
            return lc_error_prefix(err, "datasets[%d]", i);
    if (load_model_and_adapter(r, err) || load_data(r, err) || allocate(r, err) ||
        lc_samples_open(&r->samples, c, &r->model, &r->lora, r->text.tok, r->text.chat_template,
                        err))
        return -1;
    lc_train_config eff = *c; /* the record holds the adapter as it really is */
    eff.lora = r->lora.cfg;
    if (!(r->record = lc_run_record_make(&eff, &r->model_print, r->data_print,
                                           r->text.tok ? &r->text.tok_print : NULL)))
        return lc_error_set(err, "out of memory for the run record");
    if (claim_and_resume(r, err))
        return -1;
    state_to_device(r);
    return lc_metrics_open(&r->metrics, c->output_dir, r->st.step, c->use_tensorboard, err);
}

static void teardown(run *r)
{
    if (r->stream_open)
        lc_dataset_stream_close(&r->stream);
    for (int64_t i = 0; r->bufs && i < r->cfg->gradient_accumulation_steps; i++)
        lc_batch_buf_free(&r->bufs[i]);
    free(r->bufs);
    free(r->batches);
    if (r->backup)
        r->be->free(r->be, r->backup);
    lc_metrics_close(&r->metrics, NULL); /* after an error: already reported */
    lc_dataset_scan_free(&r->scan);
    lc_samples_close(&r->samples);
    lc_text_data_close(&r->text);
    lc_adamw_free(&r->opt);
    lc_adamw_free(&r->dev_opt);
    lc_engine_close(&r->eng);
    lc_lora_free(&r->lora);
    lc_model_free(&r->model);
    cJSON_Delete(r->record);
    lc_modelprint_free(&r->model_print);
    lc_backend_close(r->be);
    lc_outdir_lock_release(&r->lock); /* last: the run no longer touches output_dir */
}

/* Whether x[n] on be is all finite: Σ x² in double is finite exactly then
 * (no f32 square overflows a double, and inf and NaN propagate). */
static bool all_finite(lc_backend *be, const lc_real *x, size_t n)
{
    return isfinite(be->f32->sum_squares((int64_t)n, x));
}

/* Applies the optimizer step; when it leaves a weight or a moment
 * non-finite (an overflowing update: huge learning rate or weight decay,
 * gradients near the float range), restores the state from before it and
 * returns false, so the step is refused like a non-finite loss and no
 * checkpoint ever holds inf or NaN. */
static bool apply_update(run *r, const lc_adamw_hparams *hp, double lr, double norm)
{
    lc_backend *be = r->be;
    lc_lora *l = r->eng.lora;
    lc_adamw *o = r->step_opt;
    int64_t n = (int64_t)l->n_params;
    lc_backend_copy(be, r->backup, l->params, n);
    lc_backend_copy(be, r->backup + n, o->m, n);
    lc_backend_copy(be, r->backup + 2 * n, o->v, n);
    int64_t step = o->step;
    lc_step_optimizer(l, o, hp, lr, r->cfg->max_grad_norm, norm);
    if (all_finite(be, l->params, (size_t)n) && all_finite(be, o->m, (size_t)n) &&
        all_finite(be, o->v, (size_t)n))
        return true;
    lc_backend_copy(be, l->params, r->backup, n);
    lc_backend_copy(be, o->m, r->backup + n, n);
    lc_backend_copy(be, o->v, r->backup + 2 * n, n);
    o->step = step;
    return false;
}

/* A step that applies no update (why says which check refused it):
 * counted, reported, and the run stopped at max_bad_steps. */
static int refuse_step(run *r, int64_t step, const char *why, lc_error *err)
{
    const lc_train_config *c = r->cfg;
    lc_backend_zero(r->be, r->eng.lora->grads, (int64_t)r->eng.lora->n_params);
    r->st.bad_steps++;
    fprintf(r->log, "%sstep %lld refused: %s; no update applied\n", r->tty ? "\r\033[K" : "",
            (long long)step, why);
    if (c->max_bad_steps > 0 && r->st.bad_steps >= c->max_bad_steps)
        return lc_error_set(err, "stopping: %lld refused step%s (max_bad_steps %lld); the last "
                            "good checkpoint is kept", (long long)r->st.bad_steps,
                            lc_plural(r->st.bad_steps), (long long)c->max_bad_steps);
    return 0;
}

static uint64_t mix(uint64_t a, uint64_t b)
{
    uint64_t z = a * 0x9e3779b97f4a7c15ull ^ (b + 0x632be59bd9b4e019ull);
    z = (z ^ (z >> 31)) * 0xbf58476d1ce4e5b9ull;
    return z ^ (z >> 29);
}

/* The final adapter: the PEFT files and, over a GGUF base, adapter_model.gguf
 * for llama.cpp (not for DoRA: llama.cpp has no DoRA, finish says so),
 * exported from the files just written by `lorac export-gguf --lora`'s code
 * (F32), so the two always hold the same A/B. An earlier
 * adapter_model.gguf is removed first: it never sits beside weights it does
 * not hold (claim_output_dir made sure it is not the base model). */
static int save_final_adapter(run *r, lc_error *err)
{
    const lc_train_config *c = r->cfg;
    char path[4200];
    snprintf(path, sizeof path, "%s/adapter_model.gguf", c->output_dir);
    if (unlink(path) != 0 && errno != ENOENT)
        return lc_error_set(err, "cannot replace %s: %s", path, strerror(errno));
    state_to_host(r);
    if (lc_lora_save_peft(&r->lora, c->output_dir, c->base_model, err))
        return -1;
    if (!r->model.gguf || r->lora.cfg.use_dora)
        return 0;
    const lc_gguf_export_opts o = {.base_dir = c->base_model, .adapter_dir = c->output_dir,
                                   .out_path = path, .type = LC_GGML_F32, .lora = true};
    lc_gguf_export_report rep;
    if (lc_gguf_export(&o, &rep, NULL, err))
        return lc_error_prefix(err, "the PEFT adapter is written to %s, but its GGUF copy",
                               c->output_dir);
    return 0;
}

/* After the last step. A run that took steps and applied none trained
 * nothing: that is a failure, and no final adapter is written (it would be
 * the starting one, looking like a result; the last checkpoint is). Otherwise the final adapter is
 * written first, before anything that can still fail (the last checkpoint,
 * the final evaluation), so a failure there never discards the weights. */
static int finish(run *r, int64_t start_step, lc_error *err)
{
    const lc_train_config *c = r->cfg;
    int64_t taken = r->st.step - start_step;
    if (taken > 0 && r->applied == 0) {
        if (c->save_steps > 0 && save_checkpoint(r, err)) /* resumable, e.g. at a lower lr */
            return -1;
        return lc_error_set(err, "trained nothing: all %lld step%s of this run were refused "
                            "(see the 'refused' lines); no adapter written", (long long)taken,
                            lc_plural(taken));
    }
    if (lc_modelprint_unchanged(&r->model_print, err) || save_final_adapter(r, err))
        return -1;
    if (c->save_steps > 0 && save_checkpoint(r, err))
        return lc_error_prefix(err, "the adapter is written to %s, but", c->output_dir);
    if (has_eval_point(r) && (c->eval_steps == 0 || r->st.step % c->eval_steps != 0) &&
        eval_point(r, r->st.step, err))
        return lc_error_prefix(err, "the adapter is written to %s, but", c->output_dir);
    fprintf(r->log, "done: adapter written to %s (adapter_model.safetensors + "
            "adapter_config.json%s)\n", c->output_dir,
            !r->model.gguf ? ""
            : r->lora.cfg.use_dora ? "; no adapter_model.gguf: llama.cpp has no DoRA, merge it "
                                     "with lorac merge --base the .gguf instead"
                                   : "; adapter_model.gguf, the GGUF LoRA adapter for llama.cpp");
    return 0;
}

static int train_loop(run *r, lc_error *err)
{
    const lc_train_config *c = r->cfg;
    const int64_t start_step = r->st.step;
    double t_start = r->t_start = lc_now_s();
    lc_adamw_hparams hp = c->adam;
    /* LoRA+ as Axolotl runs it (PEFT's create_loraplus_optimizer without
     * loraplus_weight_decay): every group decays at 0 */
    hp.weight_decay = c->loraplus_lr_ratio > 0 ? 0.0 : c->weight_decay;
    r->eng.tape.training = true;
    while (r->st.step < r->st.total_steps) {
        if (stop_requested) {
            r->stopped_by = stop_requested;
            fprintf(r->log, "%sinterrupted: saving a checkpoint at step %lld\n",
                    r->tty ? "\r\033[K" : "", (long long)r->st.step);
            fflush(r->log);
            return save_checkpoint(r, err);
        }
        double t0 = lc_now_s();
        int64_t n_mb;
        if (gather_step(r, &n_mb, err))
            return -1;
        int64_t sup = 0, tokens = 0;
        for (int64_t k = 0; k < n_mb; k++)
            for (int64_t i = 0; i < r->batches[k].B * r->batches[k].T; i++) {
                sup += r->batches[k].targets[i] >= 0;
                tokens += r->bufs[k].segments[i] >= 0; /* padding has segment −1 */
            }
        int64_t step = r->st.step + 1;
        double loss_sum = 0;
        for (int64_t k = 0; k < n_mb && sup > 0; k++) {
            r->eng.tape.dropout_seed = mix(c->seed, (uint64_t)step * 64 + (uint64_t)k);
            int64_t n;
            loss_sum += lc_step_micro(r->eng.model, &r->eng.tape, &r->batches[k], r->eng.lora,
                                      (lc_real)(1.0 / (double)sup), &n);
        }
        if (r->be->sync(r->be, err))
            return lc_error_prefix(err, "step %lld on %s", (long long)r->st.step + 1,
                                   r->be->name);
        double loss = sup ? loss_sum / (double)sup : NAN;
        double lr = lc_lr_at(c->lr_scheduler, c->learning_rate, r->st.step, r->warmup,
                             r->st.total_steps, c->cosine_min_lr_ratio);
        double norm = lc_grad_norm_on(r->be, r->eng.lora->grads, r->eng.lora->n_params);
        const char *why = sup == 0 ? "no supervised tokens in its batches"
                          : !isfinite(loss) || !isfinite(norm) ? "non-finite loss or gradient"
                          : NULL;
        if (!why && !apply_update(r, &hp, lr, norm))
            why = "the update made weights non-finite (rolled back)";
        bool refused = why != NULL;
        if (refused && refuse_step(r, step, why, err))
            return -1;
        r->applied += !refused;
        r->st.step = step;
        double dt = lc_now_s() - t0;
        double avg = (lc_now_s() - t_start) / (double)(step - start_step);
        if (log_step(r, step, loss, norm, lr, sup, (double)tokens / dt,
                     avg * (double)(r->st.total_steps - step), refused, err))
            return -1;
        if (c->save_steps > 0 && step % c->save_steps == 0 && step < r->st.total_steps &&
            save_checkpoint(r, err))
            return -1;
        if (c->eval_steps > 0 && has_eval_point(r) && step % c->eval_steps == 0 &&
            eval_point(r, step, err))
            return -1;
    }
    if (r->tty)
        fprintf(r->log, "\n");
    /* what the steps used against what the dry run planned (bytes: tests compare them) */
    if (r->st.step > start_step)
        fprintf(r->log, "memory used: step arena %zu bytes (planned %zu), gradient pool %zu "
                "bytes (planned %zu)\n", r->eng.tape.data->peak, r->eng.plan.arena_peak,
                r->eng.tape.grad_arena.peak, r->eng.plan.grad_peak);
    return finish(r, start_step, err);
}

int lc_train_run(const lc_train_config *cfg, FILE *log, lc_error *err)
{
    run r;
    memset(&r, 0, sizeof r);
    r.lock.fd = -1;
    r.cfg = cfg;
    r.log = log;
    r.tty = isatty(fileno(log));
    struct sigaction sa = {0}, old[N_STOP_SIGNALS], bus = {0}, old_bus;
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    bus.sa_sigaction = on_sigbus;
    /* SA_ONSTACK: on a thread with an alternate signal stack (ASan gives
     * every thread one) the handler's frame goes there. Taken on a oneDNN
     * worker without it, under ASan, the frame landed in what ASan marks as
     * the redzone of a buffer oneDNN had allocated on that thread (2752
     * bytes below it), and reading siginfo was reported as a heap-buffer-
     * overflow: 3 of 60 runs of integrity::model_truncated_during_run,
     * 0 of 120 with the flag. */
    bus.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&bus.sa_mask);
    n_bus_files = 0;
    sigaction(SIGBUS, &bus, &old_bus);
    stop_requested = 0;
    in_setup = 1;
    /* A mask inherited blocked (some launchers block SIGPIPE or SIGHUP)
     * would hold the signals pending and defeat the handlers: unblocked
     * for the run, the caller's mask restored after. */
    sigset_t stops, old_mask;
    sigemptyset(&stops);
    for (int i = 0; i < N_STOP_SIGNALS; i++) {
        sigaction(stop_signals[i], &sa, &old[i]);
        sigaddset(&stops, stop_signals[i]);
    }
    pthread_sigmask(SIG_UNBLOCK, &stops, &old_mask);
    int rc = setup(&r, err);
    in_setup = 0;
    if (rc == 0)
        rc = train_loop(&r, err);
    if (rc == 0)
        rc = lc_metrics_close(&r.metrics, err);
    n_bus_files = 0; /* the model is unmapped next */
    teardown(&r);
    sigaction(SIGBUS, &old_bus, NULL);
    for (int i = 0; i < N_STOP_SIGNALS; i++)
        sigaction(stop_signals[i], &old[i], NULL);
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    return rc == 0 && r.stopped_by ? r.stopped_by : rc;
}

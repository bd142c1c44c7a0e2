/* test_integrity.c — a run owns its output directory and resumes only
 * itself (issue 16). Every case runs LORAC_BINARY on the tiny-llama fixture
 * into a fresh temporary directory.
 *
 *   lock                 a second `lorac train` on an output_dir in use
 *                        refuses at once, naming the first one's pid, and
 *                        leaves its metrics.jsonl alone; once the first is
 *                        SIGKILLed the directory is free again.
 *   other_run            a fresh run into a directory holding a run's
 *                        checkpoints is refused (same settings: "set
 *                        resume_from_checkpoint: auto"; other settings: the
 *                        keys that differ); `auto` with other settings never
 *                        resumes the other run; overwrite_output_dir deletes
 *                        it and the run equals a run into an empty directory.
 *   pruning_keeps_other_runs  lc_checkpoint_save with save_total_limit 2 next
 *                        to another run's checkpoint-9 prunes only its own
 *                        run's oldest (by number, 9 would have counted as
 *                        the newest and this run's checkpoint-3 been
 *                        deleted); latest/other pick by run identity.
 *   resume_fixed_keys    one refused key of each kind (adapter: lora_alpha,
 *                        lora_dropout; data shape: sequence_len,
 *                        micro_batch_size; the base model's files) names the
 *                        key with its old and new value; nothing is written.
 *   resume_free_keys     learning_rate and max_steps may change: one
 *                        "resume: changed" line each, and the run continues.
 *   resume_data_changed  a dataset appended to after the checkpoint is
 *                        refused, and accepted (with a line) under
 *                        resume_allow_data_change: true.
 *   data_replaced_during_run  a dataset replaced while the run goes on is an
 *                        error at the next epoch, not re-read.
 *   negative_exp_avg_sq  a hand-edited optimizer.safetensors with a negative
 *                        second moment is refused by name on resume.
 *   eval_data_checked_first  a test_datasets file with a token outside the
 *                        vocabulary, or without a supervised token, fails the
 *                        run before its first step.
 *   eval_fails_after_training  an eval file that turns bad while the run goes
 *                        on: the final adapter is already written when the
 *                        final evaluation fails (exit 1, says so).
 *   nonfinite_update_rolled_back  an update that overflows the weights
 *                        (learning_rate 1e10, weight_decay 1e30) is refused and
 *                        undone: checkpoints hold the finite starting adapter,
 *                        and a run whose every step was refused exits 1
 *                        ("trained nothing") without a final adapter.
 *   final_adapter_config_last  the final adapter's weights cannot be written
 *                        (a directory squats adapter_model.safetensors.tmp):
 *                        the old adapter_config.json is gone rather than left
 *                        describing weights it does not belong to.
 *   train_output_is_not_an_input  output_dir = lora_model_dir or = base_model
 *                        is refused before anything is written.
 *   quantize_never_overwrites_input  `lorac quantize IN IN --force`, an OUT
 *                        above IN, and an OUT holding a file lorac does not
 *                        write are refused untouched; an earlier quantize
 *                        output is replaced; a failure midway leaves no OUT
 *                        and no partial directory.
 *   model_truncated_during_run  the base model file truncated under a running
 *                        job: one "lorac:" line naming the file, exit 1 (the
 *                        SIGBUS of the next read of its mapped weights is
 *                        caught; epochs are made long so that it comes before
 *                        the check at the next epoch).
 *   model_replaced_during_run  the model file replaced by rename (no fault:
 *                        the old file stays mapped) is an error at the next
 *                        epoch, naming the file.
 *   sigpipe              the reader of stderr goes away: the run saves a
 *                        checkpoint and exits 141 (128 + SIGPIPE); resumable.
 *                        The same when the run was started with SIGPIPE
 *                        blocked (it unblocks its stop signals).
 *   second_sigint        a second Ctrl-C while the first one's checkpoint is
 *                        pending (the process is held in a write to a full
 *                        stderr pipe) kills it at once: 130, no checkpoint.
 *   setup_interrupted    SIGTERM while setup is blocked (its first log line
 *                        waits on a full stderr pipe) ends it at once with
 *                        143, nothing written but the lock file.
 *   fifo_dataset_refused a dataset that is a FIFO is refused at once (it
 *                        could not be read again each epoch), not waited on.
 * SIGINT, SIGTERM and SIGHUP in the loop: tests/test_trainer.c. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/helpers.h"
#include "train/checkpoint.h"
#include "train/model_config.h"
#include "train/run_record.h"

#define MAX_SETS 12

/* A config on the fixture model, training on data (r 4, alpha 16, 2 rows a
 * step in file order, a checkpoint after every step), written to dir. */
static char *base_config(const char *dir, const char *model, const char *data)
{
    char *text = lc_test_asprintf("base_model: %s\n"
                                  "adapter: lora\n"
                                  "lora_r: 4\n"
                                  "lora_alpha: 16\n"
                                  "datasets:\n  - path: %s\n    type: tokenized\n"
                                  "sequence_len: 16\n"
                                  "sample_packing: false\n"
                                  "shuffle: false\n"
                                  "micro_batch_size: 2\n"
                                  "max_steps: 3\n"
                                  "learning_rate: 1.0e-3\n"
                                  "lr_scheduler: constant\n"
                                  "device: cpu\n"
                                  "save_steps: 1\n",
                                  model, data);
    char *path = lc_test_write_text(dir, "run.yaml", text);
    free(text);
    return path;
}

/* `lorac train cfg --set output_dir=out --set s...` into args[4 + 2 *
 * MAX_SETS + 1] (the sets from ap, NULL-terminated); returns the
 * "output_dir=..." argument, to be freed after the run. */
static char *train_args(const char **args, const char *cfg, const char *out, va_list ap)
{
    int a = 0;
    char *outset = lc_test_asprintf("output_dir=%s", out);
    args[a++] = "train";
    args[a++] = cfg;
    args[a++] = "--set";
    args[a++] = outset;
    for (const char *s; (s = va_arg(ap, const char *));) {
        cr_assert_lt(a, 4 + 2 * MAX_SETS);
        args[a++] = "--set";
        args[a++] = s;
    }
    args[a] = NULL;
    return outset;
}

/* `lorac train cfg --set output_dir=out --set ...` (sets NULL-terminated). */
static lc_test_run_result train(const char *cfg, const char *out, ...)
{
    const char *args[4 + 2 * MAX_SETS + 1];
    va_list ap;
    va_start(ap, out);
    char *outset = train_args(args, cfg, out, ap);
    va_end(ap);
    lc_test_run_result r = lc_test_run_lorac(NULL, args);
    free(outset);
    return r;
}

static void expect_ok(const lc_test_run_result *r, const char *what)
{
    cr_assert_eq(r->code, 0, "%s: exit %d:\n%s", what, r->code, r->err);
}

/* Exit 1 with one "lorac: " line that holds every one of subs (NULL-ended). */
static void expect_refused(const lc_test_run_result *r, const char *what, ...)
{
    cr_assert_eq(r->code, 1, "%s: exit %d, expected 1:\n%s", what, r->code, r->err);
    const char *line = strstr(r->err, "lorac: ");
    cr_assert_not_null(line, "%s: no 'lorac: ' line:\n%s", what, r->err);
    cr_assert_null(strstr(line + 1, "lorac: "), "%s: two 'lorac: ' lines:\n%s", what, r->err);
    va_list ap;
    va_start(ap, what);
    for (const char *s; (s = va_arg(ap, const char *));)
        cr_expect(strstr(line, s), "%s: the error lacks '%s':\n%s", what, s, line);
    va_end(ap);
    cr_log_info("%s: %s", what, line);
}

static char *copy_file(const char *from, const char *dir, const char *name)
{
    size_t n;
    char *data = lc_test_read_file(from, &n);
    char *path = lc_test_write_file(dir, name, data, n);
    free(data);
    return path;
}

typedef struct env {
    char *dir, *model, *data, *cfg, *out;
} env;

/* A temporary directory with a copy of the fixture's data (so tests may
 * change it), the config, and out/ (not yet created). */
static env setup_env(void)
{
    env e;
    e.dir = lc_test_tmpdir();
    e.model = strdup(lc_test_fixture("tiny-llama/model"));
    e.data = copy_file(lc_test_fixture("tiny-llama/train.jsonl"), e.dir, "train.jsonl");
    e.cfg = base_config(e.dir, e.model, e.data);
    e.out = lc_test_path_in(e.dir, "out");
    return e;
}

static void free_env(env *e)
{
    lc_test_rm_rf(e->dir);
    free(e->dir);
    free(e->model);
    free(e->data);
    free(e->cfg);
    free(e->out);
}

/* A run in the background, stderr to DIR/run.err. */
typedef struct bg {
    int pid;
    char *errp;
} bg;

/* Starts `lorac train` on e (sets NULL-terminated) and, unless it is told
 * not to (first_step false), waits for its first metrics line. */
static bg start(const env *e, bool first_step, ...)
{
    bg b = {0, lc_test_path_in(e->dir, "run.err")};
    const char *args[4 + 2 * MAX_SETS + 1];
    va_list ap;
    va_start(ap, first_step);
    char *outset = train_args(args, e->cfg, e->out, ap);
    va_end(ap);
    b.pid = lc_test_spawn_lorac(args, NULL, b.errp);
    free(outset);
    char *metrics = lc_test_path_in(e->out, "metrics.jsonl");
    int code = -1;
    if (first_step)
        cr_assert(lc_test_wait_for_text(metrics, "\n", b.pid, 60, &code),
                  "the run exited (%d) before its first step", code);
    free(metrics);
    return b;
}

/* Waits for the run to end: its exit code, and its stderr (malloc'd). */
static char *finish(bg *b, int *code)
{
    *code = lc_test_wait(b->pid);
    char *log = lc_test_read_file(b->errp, NULL);
    free(b->errp);
    return log;
}

/* setup_env, then run A: the config (with max_steps, when not NULL) to
 * the end, a checkpoint after every step. */
static env setup_trained(const char *max_steps)
{
    env e = setup_env();
    lc_test_run_result r = train(e.cfg, e.out, max_steps, NULL);
    expect_ok(&r, "run A");
    lc_test_run_free(&r);
    return e;
}

static char *ckpt_file(const char *out, int step, const char *name)
{
    return lc_test_asprintf("%s/checkpoint-%d/%s", out, step, name);
}

/* ---- the lock ------------------------------------------------------------------- */

Test(integrity, lock, .timeout = 120)
{
    env e = setup_env();
    bg first = start(&e, true, "max_steps=1000000", "save_steps=0", NULL);
    int pid = first.pid;
    char *metrics = lc_test_path_in(e.out, "metrics.jsonl");
    char *before = lc_test_read_file(metrics, NULL);
    lc_test_run_result r = train(e.cfg, e.out, NULL);
    char *holder = lc_test_asprintf("in use by another lorac train (process %d holds", pid);
    expect_refused(&r, "second run", holder, "lorac.lock", NULL);
    cr_expect_null(strstr(r.err, "model:"), "the second run loaded the model:\n%s", r.err);
    lc_test_run_free(&r);
    /* The second run wrote nothing: the first one's metrics only grew. */
    char *after = lc_test_read_file(metrics, NULL);
    cr_expect_eq(strncmp(before, after, strlen(before)), 0, "metrics.jsonl was rewritten");
    cr_assert_eq(kill(pid, SIGKILL), 0);
    int code;
    free(finish(&first, &code));
    cr_assert_eq(code, 128 + SIGKILL);
    /* The kernel dropped the lock with the process. */
    r = train(e.cfg, e.out, "overwrite_output_dir=true", NULL);
    expect_ok(&r, "after the holder died");
    lc_test_run_free(&r);
    free(after);
    free(before);
    free(holder);
    free(metrics);
    free_env(&e);
}

/* ---- another run's directory ------------------------------------------------------- */

Test(integrity, other_run, .timeout = 120)
{
    env e = setup_trained(NULL);
    lc_test_run_result r;
    char *a3 = ckpt_file(e.out, 3, "adapter_model.safetensors");
    char *keep = copy_file(a3, e.dir, "a3.safetensors");

    r = train(e.cfg, e.out, NULL);
    expect_refused(&r, "fresh run, same settings", "already holds", "checkpoint-3",
                   "resume_from_checkpoint: auto", "overwrite_output_dir: true", NULL);
    lc_test_run_free(&r);
    r = train(e.cfg, e.out, "lora_alpha=64", NULL);
    expect_refused(&r, "fresh run, other settings", "another run's checkpoints",
                   "lora_alpha 16 -> 64", "overwrite_output_dir: true", NULL);
    lc_test_run_free(&r);
    r = train(e.cfg, e.out, "lora_alpha=64", "resume_from_checkpoint=auto", NULL);
    expect_refused(&r, "auto, other settings", "lora_alpha 16 -> 64", NULL);
    cr_expect_null(strstr(r.err, "(step "), "auto resumed another run:\n%s", r.err);
    lc_test_run_free(&r);
    cr_expect(lc_test_same_file(a3, keep), "a refused run changed run A's checkpoint-3");

    /* overwrite_output_dir: A's outputs go, B equals B in an empty directory. */
    r = train(e.cfg, e.out, "lora_alpha=64", "resume_from_checkpoint=auto",
              "overwrite_output_dir=true", NULL);
    expect_ok(&r, "overwrite");
    cr_expect(strstr(r.err, "overwrite_output_dir: removed"), "%s", r.err);
    cr_expect_null(strstr(r.err, "resume: checkpoint"), "%s", r.err);
    lc_test_run_free(&r);
    char *clean = lc_test_path_in(e.dir, "clean");
    r = train(e.cfg, clean, "lora_alpha=64", NULL);
    expect_ok(&r, "B into an empty directory");
    lc_test_run_free(&r);
    for (int k = 1; k <= 3; k++) {
        char *x = ckpt_file(e.out, k, "adapter_model.safetensors");
        char *y = ckpt_file(clean, k, "adapter_model.safetensors");
        cr_expect(lc_test_same_file(x, y), "checkpoint-%d differs from a run into an empty directory",
                  k);
        free(x);
        free(y);
    }
    free(clean);
    free(keep);
    free(a3);
    free_env(&e);
}

Test(integrity, pruning_keeps_other_runs, .timeout = 60)
{
    char *dir = lc_test_tmpdir();
    const char *model = lc_test_fixture("tiny-llama/model");
    lc_error err;
    lc_model_config mc;
    cr_assert_eq(lc_model_config_load(&mc, model, &err), 0, "%s", err.msg);
    lc_lora_config c = {.r = 2, .alpha = 4, .targets = {[0] = true}};
    lc_lora a;
    lc_adamw opt;
    cr_assert_eq(lc_lora_init(&a, &mc, &c, 1, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_adamw_init(&opt, a.n_params, &err), 0, "%s", err.msg);
    cJSON *mine = cJSON_Parse("{\"identity\": \"00000000000000aa\"}");
    cJSON *theirs = cJSON_Parse("{\"identity\": \"00000000000000bb\"}");
    lc_train_state st = {.step = 9, .total_steps = 9};
    cr_assert_eq(lc_checkpoint_save(dir, &a, &opt, &st, model, 0, theirs, NULL, 0, &err), 0,
                 "%s", err.msg);
    for (int k = 1; k <= 4; k++) {
        st = (lc_train_state){.step = k, .total_steps = 4};
        cr_assert_eq(lc_checkpoint_save(dir, &a, &opt, &st, model, 2, mine, NULL, 0, &err), 0,
                     "%s", err.msg);
    }
    const bool want[10] = {[3] = true, [4] = true, [9] = true};
    for (int k = 1; k <= 9; k++) {
        char *p = lc_test_asprintf("%s/checkpoint-%d", dir, k);
        cr_expect_eq(access(p, F_OK) == 0, want[k], "checkpoint-%d %s", k,
                     want[k] ? "was pruned" : "is still there");
        free(p);
    }
    char path[4200];
    cr_assert_eq(lc_checkpoint_latest(dir, "00000000000000aa", path, sizeof path), 1);
    cr_expect(strstr(path, "/checkpoint-4"), "latest of this run: %s", path);
    cr_assert_eq(lc_checkpoint_other(dir, "00000000000000aa", path, sizeof path), 1);
    cr_expect(strstr(path, "/checkpoint-9"), "other run: %s", path);
    cr_assert_eq(lc_checkpoint_other(dir, "00000000000000bb", path, sizeof path), 1);
    cr_expect(strstr(path, "/checkpoint-4"), "other run: %s", path);
    cJSON_Delete(mine);
    cJSON_Delete(theirs);
    lc_adamw_free(&opt);
    lc_lora_free(&a);
    lc_test_rm_rf(dir);
    free(dir);
}

/* ---- resume checks ----------------------------------------------------------------- */

Test(integrity, resume_fixed_keys, .timeout = 120)
{
    env e = setup_trained("max_steps=2");
    lc_test_run_result r;
    char *c2 = ckpt_file(e.out, 2, "trainer_state.json");
    char *keep = copy_file(c2, e.dir, "state2.json");
    static const char *const cases[][2] = {
        {"lora_alpha=64", "lora_alpha 16 -> 64"},         /* adapter scale */
        {"lora_dropout=0.1", "lora_dropout 0 -> 0.1"},     /* adapter */
        {"sequence_len=32", "sequence_len 16 -> 32"},      /* data shape */
        {"micro_batch_size=1", "micro_batch_size 2 -> 1"}, /* data shape */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        r = train(e.cfg, e.out, cases[i][0], "resume_from_checkpoint=auto", "max_steps=4",
                  NULL);
        expect_refused(&r, cases[i][0], cases[i][1], "other settings", NULL);
        lc_test_run_free(&r);
        char *ck = lc_test_asprintf("resume_from_checkpoint=%s/checkpoint-2", e.out);
        r = train(e.cfg, e.out, cases[i][0], ck, "max_steps=4", NULL);
        expect_refused(&r, cases[i][0], "resume_from_checkpoint", cases[i][1], NULL);
        lc_test_run_free(&r);
        free(ck);
    }
    /* The base model: a copy with one weight changed. */
    char *mdir = lc_test_path_in(e.dir, "model");
    cr_assert_eq(mkdir(mdir, 0755), 0);
    char *src = lc_test_path_in(e.model, "config.json");
    free(copy_file(src, mdir, "config.json"));
    free(src);
    src = lc_test_path_in(e.model, "model.safetensors");
    size_t n;
    char *w = lc_test_read_file(src, &n);
    w[n - 3] ^= 0x01; /* the low mantissa bits of the last weight */
    free(lc_test_write_file(mdir, "model.safetensors", w, n));
    free(w);
    free(src);
    char *bm = lc_test_asprintf("base_model=%s", mdir);
    r = train(e.cfg, e.out, bm, "resume_from_checkpoint=auto", "max_steps=4", NULL);
    expect_refused(&r, "another base model", "base_model", e.model, mdir, NULL);
    lc_test_run_free(&r);
    cr_expect(lc_test_same_file(c2, keep), "a refused resume changed checkpoint-2");
    char *c3 = ckpt_file(e.out, 3, "trainer_state.json");
    cr_expect_eq(access(c3, F_OK), -1, "a refused resume wrote checkpoint-3");
    free(c3);
    free(bm);
    free(mdir);
    free(keep);
    free(c2);
    free_env(&e);
}

Test(integrity, resume_free_keys, .timeout = 120)
{
    env e = setup_trained("max_steps=2");
    lc_test_run_result r;
    r = train(e.cfg, e.out, "resume_from_checkpoint=auto", "max_steps=3",
              "learning_rate=5.0e-4", NULL);
    expect_ok(&r, "resume with a new learning_rate");
    cr_expect(strstr(r.err, "resume: changed learning_rate 0.001 -> 0.0005\n"), "%s", r.err);
    cr_expect(strstr(r.err, "resume: changed max_steps 2 -> 3\n"), "%s", r.err);
    cr_expect(strstr(r.err, "/checkpoint-2 (step 2,"), "%s", r.err);
    char *c3 = ckpt_file(e.out, 3, "trainer_state.json");
    cr_expect_eq(access(c3, F_OK), 0, "the resumed run did not reach step 3");
    lc_test_run_free(&r);
    /* Resuming again with the same settings reports no change. */
    r = train(e.cfg, e.out, "resume_from_checkpoint=auto", "max_steps=3",
              "learning_rate=5.0e-4", NULL);
    expect_ok(&r, "resume with the same settings");
    cr_expect_null(strstr(r.err, "resume: changed"), "%s", r.err);
    lc_test_run_free(&r);
    free(c3);
    free_env(&e);
}

Test(integrity, resume_data_changed, .timeout = 120)
{
    env e = setup_trained("max_steps=2");
    lc_test_run_result r;
    size_t n;
    char *text = lc_test_read_file(e.data, &n);
    char *more = lc_test_asprintf("%s%.*s", text, (int)(strchr(text, '\n') + 1 - text), text);
    free(lc_test_write_text(e.dir, "train.jsonl", more));
    r = train(e.cfg, e.out, "resume_from_checkpoint=auto", "max_steps=4", NULL);
    expect_refused(&r, "data appended", "the training data changed since", "datasets[0]",
                   "resume_allow_data_change: true", NULL);
    lc_test_run_free(&r);
    r = train(e.cfg, e.out, "resume_from_checkpoint=auto", "max_steps=4",
              "resume_allow_data_change=true", NULL);
    expect_ok(&r, "data appended, allowed");
    cr_expect(strstr(r.err, "resume: changed datasets[0]"), "%s", r.err);
    cr_expect(strstr(r.err, "/checkpoint-2 (step 2,"), "%s", r.err);
    lc_test_run_free(&r);
    free(more);
    free(text);
    free_env(&e);
}

Test(integrity, data_replaced_during_run, .timeout = 120)
{
    env e = setup_env();
    bg run = start(&e, true, "max_steps=0", "num_epochs=1000", "save_steps=0", NULL);
    /* Replaced by a new file of the same rows (rename over it). */
    char *text = lc_test_read_file(e.data, NULL);
    char *tmp = lc_test_write_text(e.dir, "new.jsonl", text);
    cr_assert_eq(rename(tmp, e.data), 0);
    int code;
    char *log = finish(&run, &code);
    cr_assert_eq(code, 1, "exit %d:\n%s", code, log);
    cr_expect(strstr(log, "lorac: datasets[0]: "), "%s", log);
    cr_expect(strstr(log, "changed while the run was using it (replaced by another file)"),
              "%s", log);
    cr_expect(strstr(log, "it is not read again"), "%s", log);
    free(log);
    free(tmp);
    free(text);
    free_env(&e);
}

/* ---- resume state validated on load -------------------------------------------------- */

Test(integrity, negative_exp_avg_sq, .timeout = 120)
{
    env e = setup_trained("max_steps=2");
    lc_test_run_result r;
    char *opt = ckpt_file(e.out, 2, "optimizer.safetensors");
    size_t n;
    char *bytes = lc_test_read_file(opt, &n);
    uint64_t hlen = 0;
    memcpy(&hlen, bytes, 8); /* little-endian header length */
    char *header = strndup(bytes + 8, (size_t)hlen);
    /* "exp_avg_sq":{"dtype":"F32","shape":[N],"data_offsets":[BEGIN,END]} */
    const char *t = strstr(header, "\"exp_avg_sq\"");
    cr_assert_not_null(t);
    const char *offs = strstr(t, "data_offsets");
    cr_assert_not_null(offs);
    unsigned long long begin = strtoull(strchr(offs, '[') + 1, NULL, 10);
    float neg = -1.0f;
    memcpy(bytes + 8 + hlen + begin + 5 * sizeof(float), &neg, sizeof neg);
    free(lc_test_write_file(e.out, "checkpoint-2/optimizer.safetensors", bytes, n));
    r = train(e.cfg, e.out, "resume_from_checkpoint=auto", "max_steps=3", NULL);
    expect_refused(&r, "negative exp_avg_sq", "optimizer.safetensors", "exp_avg_sq[5] is -1",
                   ">= 0", NULL);
    lc_test_run_free(&r);
    free(header);
    free(bytes);
    free(opt);
    free_env(&e);
}

/* ---- stop paths ------------------------------------------------------------------- */

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Starts a long run (save_steps 0) of e with stderr into a new pipe whose
 * read end goes to *rd; stdout to /dev/null. wr (may be NULL) gets a
 * non-blocking write end of the same pipe (its own open file description,
 * so the child's stays blocking). */
static int spawn_piped(const env *e, int *rd, int *wr, int pipe_size, bool block_sigpipe)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    if (pipe_size)
        cr_assert_geq(fcntl(fds[0], F_SETPIPE_SZ, pipe_size), pipe_size);
    if (wr) {
        char *self = lc_test_asprintf("/proc/self/fd/%d", fds[1]);
        *wr = open(self, O_WRONLY | O_NONBLOCK);
        cr_assert_geq(*wr, 0, "open %s: %s", self, strerror(errno));
        free(self);
    }
    char *outset = lc_test_asprintf("output_dir=%s", e->out);
    const char *argv[] = {LORAC_BINARY, "train", e->cfg, "--set", outset, "--set",
                          "max_steps=1000000", "--set", "save_steps=0", NULL};
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        if (block_sigpipe) { /* as some launchers leave it: the run must unblock it */
            sigset_t m;
            sigemptyset(&m);
            sigaddset(&m, SIGPIPE);
            sigprocmask(SIG_BLOCK, &m, NULL);
        }
        int nul = open("/dev/null", O_WRONLY);
        dup2(nul, 1);
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    free(outset);
    *rd = fds[0];
    return (int)pid;
}

/* Writes into the pipe until it is full. */
static void fill_pipe(int wr)
{
    while (write(wr, "x", 1) == 1)
        ;
    cr_assert_eq(errno, EAGAIN);
}

static bool alive(int pid)
{
    int status;
    return waitpid((pid_t)pid, &status, WNOHANG) == 0;
}

/* Names in out starting with "checkpoint-" (complete or not); the step
 * of the last one listed in *last when last is not NULL. */
static int count_checkpoints_last(const char *out, long *last)
{
    char *cmd = lc_test_asprintf("ls %s", out);
    const char *argv[] = {"sh", "-c", cmd, NULL};
    lc_test_run_result r = lc_test_run(NULL, argv);
    int n = 0;
    for (const char *p = r.out; (p = strstr(p, "checkpoint-")); p++) {
        n++;
        if (last)
            *last = strtol(p + 11, NULL, 10);
    }
    lc_test_run_free(&r);
    free(cmd);
    return n;
}

static int count_checkpoints(const char *out)
{
    return count_checkpoints_last(out, NULL);
}

/* The reader of stderr goes away (SIGPIPE blocked in the child too, when
 * block is true): checkpoint, 141, resumable. */
static void sigpipe_stop(bool block)
{
    env e = setup_env();
    int rd;
    int pid = spawn_piped(&e, &rd, NULL, 0, block);
    char *metrics = lc_test_path_in(e.out, "metrics.jsonl");
    int code = -1;
    cr_assert(lc_test_wait_for_text(metrics, "\n", pid, 60, &code), "exited early (%d)", code);
    close(rd); /* the reader goes away */
    code = lc_test_wait(pid);
    cr_assert_eq(code, 128 + SIGPIPE, "SIGPIPE%s: exit %d", block ? " blocked" : "", code);
    long step = 0;
    cr_assert_eq(count_checkpoints_last(e.out, &step), 1, "expected one checkpoint");
    char *more = lc_test_asprintf("max_steps=%ld", step + 2);
    lc_test_run_result r = train(e.cfg, e.out, "resume_from_checkpoint=auto", "save_steps=0",
                                 more, NULL);
    expect_ok(&r, "resume after SIGPIPE");
    char *want = lc_test_asprintf("/checkpoint-%ld (step %ld,", step, step);
    cr_expect(strstr(r.err, want), "expected '%s' in:\n%s", want, r.err);
    free(want);
    free(more);
    lc_test_run_free(&r);
    free(metrics);
    free_env(&e);
}

Test(integrity, sigpipe, .timeout = 120)
{
    sigpipe_stop(false);
    sigpipe_stop(true);
}

Test(integrity, second_sigint, .timeout = 120)
{
    env e = setup_env();
    int rd, wr;
    int pid = spawn_piped(&e, &rd, &wr, 4096, false);
    char *metrics = lc_test_path_in(e.out, "metrics.jsonl");
    int code = -1;
    cr_assert(lc_test_wait_for_text(metrics, "\n", pid, 60, &code), "exited early (%d)", code);
    /* Wait until the full pipe holds the run in a write (metrics stop growing). */
    size_t last = 0, n = 0;
    for (int still = 0; still < 5;) {
        sleep_ms(100);
        free(lc_test_read_file(metrics, &n));
        still = n == last ? still + 1 : 0;
        last = n;
        cr_assert(alive(pid), "the run exited");
    }
    /* Fill what room is left, so that any write (a shorter line too) waits. */
    fill_pipe(wr);
    cr_assert_eq(kill(pid, SIGINT), 0);
    sleep_ms(300);
    cr_assert(alive(pid), "one SIGINT with a blocked log ended the run");
    cr_assert_eq(count_checkpoints(e.out), 0, "the checkpoint was saved already");
    cr_assert_eq(kill(pid, SIGINT), 0);
    code = lc_test_wait(pid);
    cr_expect_eq(code, 128 + SIGINT, "exit %d", code);
    cr_expect_eq(count_checkpoints(e.out), 0, "a second Ctrl-C still saved a checkpoint");
    close(rd);
    close(wr);
    free(metrics);
    free_env(&e);
}

Test(integrity, setup_interrupted, .timeout = 120)
{
    env e = setup_env();
    /* The full stderr pipe holds setup in its first log line, after the
     * model is loaded, before anything is trained. */
    int rd, wr;
    int pid = spawn_piped(&e, &rd, &wr, 4096, false);
    fill_pipe(wr);
    char *lock = lc_test_path_in(e.out, "lorac.lock");
    for (int i = 0; access(lock, F_OK) != 0; i++) {
        cr_assert_lt(i, 3000, "no lock file after 30 s");
        cr_assert(alive(pid), "the run exited");
        sleep_ms(10);
    }
    sleep_ms(300);
    cr_assert(alive(pid), "the run exited");
    char *metrics = lc_test_path_in(e.out, "metrics.jsonl");
    cr_assert_eq(access(metrics, F_OK), -1, "setup finished although its log was blocked");
    cr_assert_eq(kill(pid, SIGTERM), 0);
    int code = lc_test_wait(pid);
    cr_expect_eq(code, 128 + SIGTERM, "exit %d", code);
    cr_expect_eq(count_checkpoints(e.out), 0);
    close(rd);
    close(wr);
    free(metrics);
    free(lock);
    free_env(&e);
}

Test(integrity, fifo_dataset_refused, .timeout = 60)
{
    env e = setup_env();
    unlink(e.data);
    cr_assert_eq(mkfifo(e.data, 0644), 0);
    lc_test_run_result r = train(e.cfg, e.out, NULL);
    expect_refused(&r, "a FIFO as dataset", "datasets[0]", "not a regular file", NULL);
    lc_test_run_free(&r);
    free_env(&e);
}

/* ---- validated before the first step; nothing trained is lost -------------------- */

static bool has_step_lines(const char *log)
{
    return strstr(log, "step 1/") != NULL;
}

Test(integrity, eval_data_checked_first, .timeout = 120)
{
    env e = setup_env();
    static const char *const bad[][2] = {
        {"{\"input_ids\": [1, 2, 99999], \"labels\": [1, 2, 3]}\n", "99999"},
        {"{\"input_ids\": [1, 2, 3], \"labels\": [-100, -100, -100]}\n",
         "no supervised tokens to evaluate on"},
    };
    for (int i = 0; i < 2; i++) {
        char *evalp = lc_test_write_text(e.dir, "eval.jsonl", bad[i][0]);
        char *set = lc_test_asprintf("test_datasets=[{path: %s, type: tokenized}]", evalp);
        lc_test_run_result r = train(e.cfg, e.out, set, "overwrite_output_dir=true", NULL);
        expect_refused(&r, bad[i][1], "test_datasets", bad[i][1], NULL);
        cr_expect(!has_step_lines(r.err), "trained before refusing the eval data:\n%s", r.err);
        lc_test_run_free(&r);
        free(set);
        free(evalp);
    }
    free_env(&e);
}

Test(integrity, eval_fails_after_training, .timeout = 120)
{
    env e = setup_env();
    char *evalp = copy_file(e.data, e.dir, "eval.jsonl");
    char *set = lc_test_asprintf("test_datasets=[{path: %s, type: tokenized}]", evalp);
    bg run = start(&e, false, set, "max_steps=300", "save_steps=0", NULL);
    int code = -1;
    /* "schedule:" comes after the eval data was checked, before step 1. */
    cr_assert(lc_test_wait_for_text(run.errp, "schedule:", run.pid, 60, &code),
              "exited early (%d)", code);
    free(lc_test_write_text(e.dir, "eval.jsonl", "{\"input_ids\": [1, 99999]}\n"));
    char *log = finish(&run, &code);
    cr_assert_eq(code, 1, "exit %d:\n%s", code, log);
    char *said = lc_test_asprintf("lorac: the adapter is written to %s, but: evaluation at step "
                                  "300", e.out);
    cr_expect(strstr(log, said), "expected '%s' in:\n%s", said, log);
    char *ad = lc_test_path_in(e.out, "adapter_model.safetensors");
    char *ac = lc_test_path_in(e.out, "adapter_config.json");
    cr_expect_eq(access(ad, F_OK), 0, "the trained adapter was lost");
    cr_expect_eq(access(ac, F_OK), 0, "the trained adapter's config was lost");
    free(ac);
    free(ad);
    free(said);
    free(log);
    free(set);
    free(evalp);
    free_env(&e);
}

/* Every float of an F32 safetensors file's data is finite. */
static bool all_finite_f32(const char *path)
{
    size_t n;
    char *b = lc_test_read_file(path, &n);
    uint64_t hlen;
    memcpy(&hlen, b, 8);
    bool ok = true;
    for (size_t off = 8 + hlen; off + 4 <= n; off += 4) {
        float f;
        memcpy(&f, b + off, 4);
        ok &= f == f && f - f == 0;
    }
    free(b);
    return ok;
}

Test(integrity, nonfinite_update_rolled_back, .timeout = 120)
{
    env e = setup_env();
    lc_test_run_result r = train(e.cfg, e.out, "learning_rate=1.0e10", "weight_decay=1.0e30",
                                 "max_steps=2", NULL);
    cr_log_info("%s", r.err);
    expect_refused(&r, "overflowing update", "trained nothing: all 2 steps of this run were "
                   "refused", NULL);
    cr_expect(strstr(r.err, "step 1 refused: the update made weights non-finite (rolled back)"),
              "%s", r.err);
    cr_expect(strstr(r.err, "step 2 refused: the update made weights non-finite (rolled back)"),
              "%s", r.err);
    lc_test_run_free(&r);
    char *final = lc_test_path_in(e.out, "adapter_model.safetensors");
    cr_expect_eq(access(final, F_OK), -1, "a run that trained nothing wrote %s", final);
    for (int k = 1; k <= 2; k++) {
        char *a = ckpt_file(e.out, k, "adapter_model.safetensors");
        char *o = ckpt_file(e.out, k, "optimizer.safetensors");
        cr_expect(all_finite_f32(a), "checkpoint-%d holds non-finite weights", k);
        cr_expect(all_finite_f32(o), "checkpoint-%d holds non-finite Adam state", k);
        free(a);
        free(o);
    }
    /* The rollback restored the starting adapter exactly: both checkpoints hold it. */
    char *a1 = ckpt_file(e.out, 1, "adapter_model.safetensors");
    char *a2 = ckpt_file(e.out, 2, "adapter_model.safetensors");
    cr_expect(lc_test_same_file(a1, a2), "a refused update changed the weights");
    free(a1);
    free(a2);
    free(final);
    free_env(&e);
}

/* ---- atomic outputs, inputs never overwritten ------------------------------------ */

Test(integrity, final_adapter_config_last, .timeout = 120)
{
    env e = setup_trained("max_steps=2");
    lc_test_run_result r;
    char *cfgp = lc_test_path_in(e.out, "adapter_config.json");
    char *squat = lc_test_path_in(e.out, "adapter_model.safetensors.tmp");
    cr_assert_eq(mkdir(squat, 0755), 0);
    r = train(e.cfg, e.out, "resume_from_checkpoint=auto", "max_steps=3", NULL);
    expect_refused(&r, "weights not writable", "adapter_model.safetensors", NULL);
    lc_test_run_free(&r);
    cr_expect_eq(access(cfgp, F_OK), -1, "adapter_config.json stayed beside weights it does "
                 "not describe");
    free(squat);
    free(cfgp);
    free_env(&e);
}

Test(integrity, train_output_is_not_an_input, .timeout = 120)
{
    env e = setup_env();
    char *adir = lc_test_path_in(e.dir, "adapter");
    cr_assert_eq(mkdir(adir, 0755), 0);
    const char *files[] = {"adapter_config.json", "adapter_model.safetensors"};
    for (int i = 0; i < 2; i++) {
        char *src = lc_test_asprintf("%s/%s", lc_test_fixture("tiny-llama/adapter_init"),
                                     files[i]);
        free(copy_file(src, adir, files[i]));
        free(src);
    }
    char *keep = copy_file(lc_test_fixture("tiny-llama/adapter_init/adapter_model.safetensors"),
                           e.dir, "keep.safetensors");
    char *lmd = lc_test_asprintf("lora_model_dir=%s", adir);
    lc_test_run_result r = train(e.cfg, adir, lmd, "overwrite_output_dir=true", NULL);
    expect_refused(&r, "output_dir = lora_model_dir", "is (or contains) lora_model_dir", NULL);
    lc_test_run_free(&r);
    char *w = lc_test_path_in(adir, "adapter_model.safetensors");
    cr_expect(lc_test_same_file(w, keep), "the starting adapter was overwritten");
    char *lock = lc_test_path_in(adir, "lorac.lock");
    cr_expect_eq(access(lock, F_OK), -1, "the refused run wrote into %s", adir);
    r = train(e.cfg, e.model, NULL);
    expect_refused(&r, "output_dir = base_model", "is the base_model directory", NULL);
    lc_test_run_free(&r);
    free(lock);
    free(w);
    free(lmd);
    free(keep);
    free(adir);
    free_env(&e);
}

/* A copy of the fixture model in dir/name (returns its path). */
static char *copy_model(const char *dir, const char *name)
{
    char *m = lc_test_path_in(dir, name);
    cr_assert_eq(mkdir(m, 0755), 0);
    const char *files[] = {"config.json", "model.safetensors"};
    for (int i = 0; i < 2; i++) {
        char *src = lc_test_asprintf("%s/%s", lc_test_fixture("tiny-llama/model"), files[i]);
        free(copy_file(src, m, files[i]));
        free(src);
    }
    return m;
}

static lc_test_run_result quantize(const char *in, const char *out, bool force)
{
    const char *args[] = {"quantize", in, out, force ? "--force" : NULL, NULL};
    return lc_test_run_lorac(NULL, args);
}

/* Whether dir holds an entry whose name contains sub. */
static bool has_entry(const char *dir, const char *sub)
{
    char *cmd = lc_test_asprintf("ls -a %s", dir);
    const char *argv[] = {"sh", "-c", cmd, NULL};
    lc_test_run_result r = lc_test_run(NULL, argv);
    bool found = strstr(r.out, sub) != NULL;
    lc_test_run_free(&r);
    free(cmd);
    return found;
}

Test(integrity, quantize_never_overwrites_input, .timeout = 120)
{
    char *dir = lc_test_tmpdir();
    char *in = copy_model(dir, "model");
    char *w = lc_test_path_in(in, "model.safetensors");
    char *keep = copy_file(w, dir, "original.safetensors");

    lc_test_run_result r = quantize(in, in, true);
    expect_refused(&r, "quantize IN IN --force", "is (or contains) the input", NULL);
    lc_test_run_free(&r);
    r = quantize(in, dir, true);
    expect_refused(&r, "quantize IN PARENT --force", "is (or contains) the input", NULL);
    lc_test_run_free(&r);
    cr_expect(lc_test_same_file(w, keep), "the input model was changed");

    char *other = lc_test_path_in(dir, "other");
    cr_assert_eq(mkdir(other, 0755), 0);
    char *mine = lc_test_write_text(other, "notes.txt.bak", "mine\n");
    r = quantize(in, other, true);
    expect_refused(&r, "OUT holds another file", "notes.txt.bak", "which lorac does not write",
                   NULL);
    lc_test_run_free(&r);
    cr_expect_eq(access(mine, F_OK), 0, "--force deleted a file lorac did not write");

    char *q = lc_test_path_in(dir, "q");
    r = quantize(in, q, false);
    expect_ok(&r, "quantize");
    lc_test_run_free(&r);
    r = quantize(in, q, true);
    expect_ok(&r, "quantize --force over an earlier output");
    lc_test_run_free(&r);
    cr_expect(!has_entry(dir, "lorac-"), "a staging directory was left behind");

    /* A failure after the weights were written: a side file that cannot be
     * read (a directory named *.json) fails the copy of side files. */
    char *bad = lc_test_path_in(in, "tokenizer.json");
    cr_assert_eq(mkdir(bad, 0755), 0);
    char *q2 = lc_test_path_in(dir, "q2");
    r = quantize(in, q2, false);
    expect_refused(&r, "unreadable side file", "tokenizer.json", NULL);
    lc_test_run_free(&r);
    cr_expect_eq(access(q2, F_OK), -1, "a failed quantize left %s", q2);
    cr_expect(!has_entry(dir, "lorac-partial"), "a failed quantize left a partial directory");

    free(q2);
    free(bad);
    free(q);
    free(mine);
    free(other);
    free(keep);
    free(w);
    free(in);
    lc_test_rm_rf(dir);
    free(dir);
}

/* ---- the base model changing under a running job ------------------------------------ */

Test(integrity, model_truncated_during_run, .timeout = 120)
{
    env e = setup_env();
    char *mdir = copy_model(e.dir, "model");
    /* 600 rows: an epoch is 300 steps, so the truncation is met by a read
     * of the weights long before the next epoch's check. float32: its
     * weight products read the mapped file every step. The bfloat16 path
     * (auto's choice on a CPU with bf16 units) multiplies its own bf16 copy
     * of this f32 model, never the mapping, so only the epoch check would
     * meet the truncation: 300 steps, which took up to ~115 s next to other
     * tests' runs on 2 cores (AMD EPYC Zen 5, 2026-12-02; OpenMP threads of
     * two processes on two cores), against the 120 s timeout. */
    char *rows = lc_test_read_file(e.data, NULL);
    size_t len = strlen(rows), cap = len * 100 + 1, n = 0;
    char *many = malloc(cap);
    for (int i = 0; i < 100; i++, n += len)
        memcpy(many + n, rows, len);
    many[n] = '\0';
    free(lc_test_write_text(e.dir, "train.jsonl", many));
    char *bm = lc_test_asprintf("base_model=%s", mdir);
    bg run = start(&e, true, bm, "max_steps=1000000", "save_steps=0", "compute_dtype=float32",
                   NULL);
    char *w = lc_test_path_in(mdir, "model.safetensors");
    cr_assert_eq(truncate(w, 4096), 0);
    int code;
    char *log = finish(&run, &code);
    cr_assert_eq(code, 1, "exit %d (135 = killed by SIGBUS):\n%s", code, log);
    const char *line = strstr(log, "lorac: ");
    cr_assert_not_null(line, "%s", log);
    cr_expect(strstr(line, w), "the error does not name %s:\n%s", w, line);
    cr_expect(strstr(line, "SIGBUS"), "not the failed read of the mapping: %s", line);
    cr_log_info("%s", line);
    free(log);
    free(w);
    free(bm);
    free(many);
    free(rows);
    free(mdir);
    free_env(&e);
}

Test(integrity, model_replaced_during_run, .timeout = 120)
{
    env e = setup_env();
    char *mdir = copy_model(e.dir, "model");
    char *bm = lc_test_asprintf("base_model=%s", mdir);
    bg run = start(&e, true, bm, "max_steps=1000000", "save_steps=0", NULL);
    char *w = lc_test_path_in(mdir, "model.safetensors");
    char *copy = copy_file(w, e.dir, "same.safetensors");
    cr_assert_eq(rename(copy, w), 0);
    int code;
    char *log = finish(&run, &code);
    cr_assert_eq(code, 1, "exit %d:\n%s", code, log);
    char *want = lc_test_asprintf("lorac: base_model: %s changed while the run was using it "
                                  "(replaced by another file)", w);
    cr_expect(strstr(log, want), "expected '%s' in:\n%s", want, log);
    free(want);
    free(log);
    free(copy);
    free(w);
    free(bm);
    free(mdir);
    free_env(&e);
}

/* ---- how a dataset is read is part of the run record ----------------------------- */

static cJSON *record_for(const char *dataset_yaml, uint64_t tokenizer_hash)
{
    char *yaml = lc_test_asprintf("base_model: m\ndatasets:\n%soutput_dir: o\n", dataset_yaml);
    lc_train_config c;
    lc_error err = {{0}};
    cr_assert_eq(lc_train_config_parse(&c, yaml, strlen(yaml), "t.yaml", "/nowhere", NULL, 0,
                                       &err), 0, "%s", err.msg);
    lc_modelprint mp = {0};
    lc_fileprint data[LC_CONFIG_MAX_DATASETS] = {{0}};
    lc_fileprint tok = {.hash = tokenizer_hash};
    cJSON *rec = lc_run_record_make(&c, &mp, data, &tok);
    cr_assert_not_null(rec);
    lc_train_config_free(&c);
    free(yaml);
    return rec;
}

Test(integrity, resume_dataset_read_differently)
{
    cJSON *text = record_for("  - {path: d.jsonl, type: completion}\n", 1);
    cJSON *body = record_for("  - {path: d.jsonl, type: completion, field: body}\n", 1);
    cJSON *other_tok = record_for("  - {path: d.jsonl, type: completion}\n", 2);
    cJSON *tokenized = record_for("  - {path: d.jsonl, type: tokenized}\n", 1);
    char changes[4096];
    lc_error err = {{0}};
    cr_expect_eq(lc_run_record_check(text, text, false, "checkpoint-1", changes, sizeof changes,
                                     &err), 0, "%s", err.msg);
    cJSON *chat = record_for("  - {path: d.jsonl, type: chat_template}\n", 1);
    cJSON *chat_all = record_for("  - {path: d.jsonl, type: chat_template, train_on_eos: all}\n",
                                 1);
    const cJSON *now[] = {body, other_tok, tokenized, chat, chat_all};
    const char *want[] = {"field=text, tokenizer 0000000000000001 -> completion field=body",
                          "tokenizer 0000000000000001 -> completion field=text, "
                          "tokenizer 0000000000000002",
                          "read as completion field=text, tokenizer 0000000000000001 -> "
                          "tokenized",
                          "-> chat_template field_messages=messages",
                          "train_on_eos=all train_on_eot=all"};
    for (int i = 0; i < 5; i++) {
        const cJSON *was = i < 4 ? text : chat;
        cr_expect_eq(lc_run_record_check(was, now[i], false, "checkpoint-1", changes,
                                         sizeof changes, &err), -1);
        cr_expect(strstr(err.msg, "the training data changed since checkpoint-1: datasets[0] "
                                  "read as "), "%s", err.msg);
        cr_expect(strstr(err.msg, want[i]), "no '%s' in: %s", want[i], err.msg);
        /* and resume_allow_data_change lets it through, reported */
        cr_expect_eq(lc_run_record_check(was, now[i], true, "checkpoint-1", changes,
                                         sizeof changes, &err), 0, "%s", err.msg);
        cr_expect(strstr(changes, "read as"), "%s", changes);
    }
    cJSON_Delete(text), cJSON_Delete(body), cJSON_Delete(other_tok), cJSON_Delete(tokenized);
    cJSON_Delete(chat), cJSON_Delete(chat_all);
}

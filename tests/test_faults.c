/* test_faults.c — how `lorac train` behaves when things go wrong: the disk
 * fills up or a write fails while a checkpoint is saved, the loss or the
 * gradient is not finite, a step has nothing to learn from. Every run
 * fork/execs LORAC_BINARY on the tiny-llama fixture into a fresh temporary
 * directory (configs/fixture_3step.yaml with --set overrides, or a config
 * written here), and compares what it leaves with a straight run.
 *
 *   disk_full_checkpoint   output_dir on a tmpfs sized (from a measured
 *                          straight run) so checkpoints 1 and 2 fit and
 *                          checkpoint 3 runs out of room in each of its four
 *                          files in turn: exit 1, one last "lorac:" line
 *                          naming checkpoint-3, "previous checkpoints are
 *                          intact" and "No space left on device"; checkpoints
 *                          1 and 2 identical to the straight run's and
 *                          loadable; nothing else left (no checkpoint-3.tmp,
 *                          no *.tmp file). A roomy copy of the output dir
 *                          then resumes (resume_from_checkpoint: auto) from
 *                          checkpoint-2 and ends with the straight run's
 *                          adapter and metrics. With save_total_limit 1 a
 *                          disk with room for 1.5 checkpoints keeps
 *                          checkpoint-1 when checkpoint-2 fails (pruning
 *                          comes after the save). Skipped when no tmpfs can
 *                          be mounted (needs root / CAP_SYS_ADMIN).
 *   checkpoint_write_errors  other failures while saving checkpoint-2 or -3:
 *                          a foreign file named checkpoint-2.tmp (mkdir
 *                          fails), a foreign file named checkpoint-2 (the
 *                          rename fails), and RLIMIT_FSIZE below the
 *                          optimizer file's size (short write, then EFBIG,
 *                          "File too large") on a resumed run. Each: exit 1,
 *                          a clear message, the foreign file untouched, the
 *                          earlier checkpoints intact, no leftovers.
 *   nonfinite_refused      an adapter of huge finite values (A 1e30, B 3e38:
 *                          accepted on load, the forward overflows): with
 *                          max_bad_steps 0 every step is refused by name, the
 *                          run trained nothing and says so (exit 1, no final
 *                          adapter); every checkpoint holds the starting
 *                          adapter bit for bit, Adam state untouched;
 *                          with max_bad_steps 2 the run stops with exit 1
 *                          after step 2 and checkpoint-1 is intact; with 1,
 *                          after step 1 ("1 refused step", singular).
 *   no_supervised_tokens   rows 2 and 4 of 5 (micro_batch_size 1, no shuffle)
 *                          supervise nothing (all labels -100; only label 0,
 *                          which the causal shift drops): they are dropped
 *                          and counted before training, as Axolotl drops
 *                          rows with no trainable token, so no step is
 *                          refused and the result equals a run on the three
 *                          good rows alone, bit for bit.
 *   nonfinite_then_good    a copy of the model whose embedding row for a token
 *                          only row 2 of 5 holds is NaN: step 2 is refused as
 *                          non-finite, the others train, and adapter and Adam
 *                          state equal a run on the four good rows alone, bit
 *                          for bit (the refused step leaves no residue).
 *   metrics_write_error    metrics.jsonl a link to /dev/full: the first line
 *                          fails to flush (ENOSPC), the run stops at step 1
 *                          with exit 1 and one "lorac:" line naming the file
 *                          and "No space left on device"; nothing else is
 *                          written.
 *
 * The tmpfs sizes are exact page counts (tmpfs charges whole pages for file
 * data and nothing for directories), so the cases that fill the disk at the
 * 1-page files leave no slack: a kernel that charged more would show up as
 * checkpoint-2 failing, not as a pass. A SIGKILL at any moment is covered by
 * tests/test_trainer.c. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/safetensors.h"
#include "tests/helpers.h"
#include "tests/run_state.h"
#include "train/fsutil.h"

#define CFG_3STEP LORAC_SOURCE_DIR "/configs/fixture_3step.yaml"
#define PAGE 4096

/* ---- running lorac ------------------------------------------------------------ */

/* `lorac train cfg --set output_dir=out --set s...` (sets NULL-terminated). */
static lc_test_run_result train(const char *cfg, const char *out, const char *const *sets)
{
    const char *args[46];
    int a = 0;
    args[a++] = "train";
    args[a++] = cfg;
    char *outset = lc_test_asprintf("output_dir=%s", out);
    args[a++] = "--set";
    args[a++] = outset;
    for (int i = 0; sets && sets[i]; i++) {
        cr_assert_lt(a, 43);
        args[a++] = "--set";
        args[a++] = sets[i];
    }
    args[a] = NULL;
    lc_test_run_result r = lc_test_run_lorac(NULL, args);
    free(outset);
    return r;
}

static void expect_ok(const lc_test_run_result *r, const char *what)
{
    cr_assert_eq(r->code, 0, "%s: exit %d:\n%s", what, r->code, r->err);
}


static void expect_has(const char *text, const char *sub, const char *what)
{
    cr_expect(strstr(text, sub), "%s: '%s' lacks '%s'", what, text, sub);
}

static int count_of(const char *text, const char *sub)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, sub)); p += strlen(sub))
        n++;
    return n;
}

/* ---- files ------------------------------------------------------------------------ */

static size_t pages_of(const char *path)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "stat %s: %s", path, strerror(errno));
    return ((size_t)st.st_size + PAGE - 1) / PAGE * PAGE;
}

/* The names in dir, sorted, comma-separated (malloc'd). */
static char *listing(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "opendir %s: %s", dir, strerror(errno));
    char *names[64];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            cr_assert_lt(n, 64);
            names[n++] = strdup(e->d_name);
        }
    closedir(d);
    for (int i = 1; i < n; i++) /* insertion sort */
        for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    char *s = strdup("");
    for (int i = 0; i < n; i++) {
        char *t = lc_test_asprintf("%s%s%s", s, i ? "," : "", names[i]);
        free(s);
        free(names[i]);
        s = t;
    }
    return s;
}

static void expect_listing(const char *dir, const char *want, const char *what)
{
    char *got = listing(dir);
    cr_expect_str_eq(got, want, "%s: %s holds [%s], expected [%s]", what, dir, got, want);
    free(got);
}

/* Every file of the flat directories a and b (same names) byte for byte
 * (trainer_state.json: lc_test_same_state). */
static void expect_same_dir(const char *a, const char *b, const char *what)
{
    char *la = listing(a), *lb = listing(b);
    cr_expect_str_eq(la, lb, "%s: %s holds [%s] but %s holds [%s]", what, a, la, b, lb);
    for (char *name = strtok(la, ","); name; name = strtok(NULL, ",")) {
        char *pa = lc_test_path_in(a, name), *pb = lc_test_path_in(b, name);
        bool same = strcmp(name, "trainer_state.json") == 0 ? lc_test_same_state(pa, pb)
                                                             : lc_test_same_file(pa, pb);
        cr_expect(same, "%s: %s differs from %s", what, pa, pb);
        free(pa);
        free(pb);
    }
    free(la);
    free(lb);
}

/* Copies a directory tree of regular files (one level of subdirectories). */
static void copy_tree(const char *from, const char *to, int depth)
{
    cr_assert_eq(mkdir(to, 0755), 0, "mkdir %s: %s", to, strerror(errno));
    DIR *d = opendir(from);
    cr_assert_not_null(d, "opendir %s", from);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char *src = lc_test_path_in(from, e->d_name), *dst = lc_test_path_in(to, e->d_name);
        if (lc_is_dir(src)) {
            cr_assert_lt(depth, 2, "unexpected nesting at %s", src);
            copy_tree(src, dst, depth + 1);
        } else {
            size_t n;
            char *data = lc_test_read_file(src, &n);
            free(lc_test_write_file(to, e->d_name, data, n));
            free(data);
        }
        free(src);
        free(dst);
    }
    closedir(d);
}

/* metrics.jsonl with the wall-clock field ,"tok_s":... (always last) cut from
 * every line (malloc'd). */
static char *metrics_sans_tok_s(const char *out)
{
    char *path = lc_test_path_in(out, "metrics.jsonl");
    char *text = lc_test_read_file(path, NULL);
    free(path);
    char *w = text;
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t ll = nl ? (size_t)(nl - p) : strlen(p);
        const char *cut = memmem(p, ll, ",\"tok_s\":", 9);
        size_t keep = cut ? (size_t)(cut - p) : ll;
        memmove(w, p, keep);
        w += keep;
        if (cut)
            *w++ = '}';
        if (nl)
            *w++ = '\n';
        p += ll + (nl ? 1 : 0);
    }
    *w = '\0';
    return text;
}

/* The steps of metrics.jsonl's training lines, as "1,3,5" (malloc'd); every
 * line must be JSON with a finite loss. */
static char *metric_steps(const char *out)
{
    char *path = lc_test_path_in(out, "metrics.jsonl");
    char *text = lc_test_read_file(path, NULL);
    char *s = strdup("");
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        cr_assert_not_null(j, "%s: line is not JSON: %s", path, line);
        const cJSON *loss = cJSON_GetObjectItemCaseSensitive(j, "loss");
        const cJSON *step = cJSON_GetObjectItemCaseSensitive(j, "step");
        cr_assert(cJSON_IsNumber(loss) && isfinite(loss->valuedouble) && cJSON_IsNumber(step),
                  "%s: bad line %s", path, line);
        char *t = lc_test_asprintf("%s%s%d", s, *s ? "," : "", step->valueint);
        free(s);
        s = t;
        cJSON_Delete(j);
    }
    free(text);
    free(path);
    return s;
}

/* Same tensor names, dtypes, shapes and bytes in two safetensors files. */
static bool same_tensors(const char *a, const char *b, char *why, size_t n_why)
{
    lc_error err;
    lc_st_file fa, fb;
    cr_assert_eq(lc_st_open(&fa, a, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_st_open(&fb, b, &err), 0, "%s", err.msg);
    bool same = fa.n_tensors == fb.n_tensors;
    snprintf(why, n_why, "%zu vs %zu tensors", fa.n_tensors, fb.n_tensors);
    for (size_t i = 0; same && i < fa.n_tensors; i++) {
        const lc_st_tensor *x = &fa.tensors[i], *y = lc_st_find(&fb, x->name);
        same = y && x->dtype == y->dtype && x->ndim == y->ndim &&
               memcmp(x->shape, y->shape, sizeof x->shape) == 0 &&
               x->end - x->begin == y->end - y->begin &&
               memcmp(x->data, y->data, x->end - x->begin) == 0;
        if (!same)
            snprintf(why, n_why, "tensor %s differs", x->name);
    }
    lc_st_close(&fa);
    lc_st_close(&fb);
    return same;
}

static void expect_same_tensors(const char *a, const char *b, bool want_same, const char *what)
{
    char why[512];
    bool same = same_tensors(a, b, why, sizeof why);
    if (want_same)
        cr_expect(same, "%s: %s and %s differ: %s", what, a, b, why);
    else
        cr_expect(!same, "%s: %s and %s are identical (an update was expected)", what, a, b);
}

/* A checkpoint directory loads: adapter and optimizer safetensors open, the
 * trainer state parses with global_step == step (and bad_steps == bad when
 * bad >= 0). Returns adam_step. */
static long long expect_checkpoint(const char *dir, long long step, long long bad)
{
    lc_error err;
    lc_st_file f;
    char *p = lc_test_path_in(dir, "adapter_model.safetensors");
    cr_assert_eq(lc_st_open(&f, p, &err), 0, "%s", err.msg);
    cr_expect_eq(f.n_tensors, 28, "%s: %zu tensors", p, f.n_tensors);
    lc_st_close(&f);
    free(p);
    p = lc_test_path_in(dir, "optimizer.safetensors");
    cr_assert_eq(lc_st_open(&f, p, &err), 0, "%s", err.msg);
    cr_expect(lc_st_find(&f, "exp_avg") && lc_st_find(&f, "exp_avg_sq"), "%s: no Adam state", p);
    const char *as = lc_st_meta(&f, "adam_step");
    cr_assert_not_null(as, "%s: no adam_step", p);
    long long adam_step = atoll(as);
    lc_st_close(&f);
    free(p);
    p = lc_test_path_in(dir, "adapter_config.json");
    char *text = lc_test_read_file(p, NULL);
    cJSON *j = cJSON_Parse(text);
    cr_expect(cJSON_IsObject(j), "%s is not a JSON object", p);
    cJSON_Delete(j);
    free(text);
    free(p);
    p = lc_test_path_in(dir, "trainer_state.json");
    text = lc_test_read_file(p, NULL);
    j = cJSON_Parse(text);
    cr_assert(cJSON_IsObject(j), "%s is not a JSON object: %s", p, text);
    const cJSON *gs = cJSON_GetObjectItemCaseSensitive(j, "global_step");
    const cJSON *bs = cJSON_GetObjectItemCaseSensitive(j, "bad_steps");
    cr_expect(cJSON_IsNumber(gs) && gs->valuedouble == (double)step, "%s: global_step, expected %lld: %s",
              p, step, text);
    if (bad >= 0)
        cr_expect(cJSON_IsNumber(bs) && bs->valuedouble == (double)bad,
                  "%s: bad_steps, expected %lld: %s", p, bad, text);
    cJSON_Delete(j);
    free(text);
    free(p);
    return adam_step;
}

static char *ckpt(const char *out, int n)
{
    return lc_test_asprintf("%s/checkpoint-%d", out, n);
}

static char *ckpt_file(const char *out, int n, const char *file)
{
    return lc_test_asprintf("%s/checkpoint-%d/%s", out, n, file);
}

/* ---- 1. disk full --------------------------------------------------------------- */

/* tmpfs mounts made by the running test, unmounted by its fini whatever
 * happened (and gone with the test process anyway when it got a private
 * mount namespace). */
static char *g_mounts[8];
static int g_n_mounts;
static char *g_tmp;

static void faults_fini(void)
{
    for (int i = 0; i < g_n_mounts; i++)
        if (g_mounts[i]) {
            umount2(g_mounts[i], MNT_DETACH);
            rmdir(g_mounts[i]);
        }
    if (g_tmp)
        lc_test_rm_rf(g_tmp);
}

static void unmount_now(const char *dir)
{
    for (int i = 0; i < g_n_mounts; i++)
        if (g_mounts[i] && strcmp(g_mounts[i], dir) == 0) {
            cr_expect_eq(umount(dir), 0, "umount %s: %s", dir, strerror(errno));
            free(g_mounts[i]);
            g_mounts[i] = NULL;
        }
}

/* Mounts a tmpfs of `bytes` on dir (created), or skips the test. */
static void mount_small_tmpfs(const char *dir, size_t bytes)
{
    static bool private_ns;
    if (!private_ns) {
        /* Best effort: a mount namespace of this test process's own, so a
         * mount can never outlive it (a timeout kills it before fini). */
        if (unshare(CLONE_NEWNS) == 0 && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0)
            cr_log_info("tmpfs mounts in a private mount namespace");
        private_ns = true;
    }
    cr_assert_eq(mkdir(dir, 0755), 0, "mkdir %s: %s", dir, strerror(errno));
    char opts[64];
    snprintf(opts, sizeof opts, "size=%zuk", bytes / 1024);
    if (mount("tmpfs", dir, "tmpfs", 0, opts) != 0) {
        int e = errno;
        rmdir(dir);
        cr_skip_test("cannot mount a %zu KiB tmpfs to simulate a full disk (%s; needs root and "
                     "CAP_SYS_ADMIN): disk-full case not tested", bytes / 1024, strerror(e));
    }
    cr_assert_lt(g_n_mounts, 8);
    g_mounts[g_n_mounts++] = strdup(dir);
}

Test(faults, disk_full_checkpoint, .fini = faults_fini, .timeout = 120)
{
    g_tmp = lc_test_tmpdir();
    const char *sets[] = {"save_steps=1", "max_steps=6", NULL};

    /* The straight run, and what a checkpoint takes on a tmpfs (whole pages). */
    char *ref = lc_test_path_in(g_tmp, "ref");
    lc_test_run_result r = train(CFG_3STEP, ref, sets);
    expect_ok(&r, "straight run");
    lc_test_run_free(&r);
    static const char *const files[4] = {"adapter_model.safetensors", "adapter_config.json",
                                         "optimizer.safetensors", "trainer_state.json"};
    size_t page[4], ck = 0;
    for (int i = 0; i < 4; i++) {
        char *p = ckpt_file(ref, 1, files[i]);
        ck += page[i] = pages_of(p);
        free(p);
    }
    char *m = lc_test_path_in(ref, "metrics.jsonl");
    size_t metrics = pages_of(m);
    free(m);
    cr_assert_eq(metrics, PAGE, "metrics.jsonl of 6 steps should fit one page");
    m = lc_test_path_in(ref, "loss.svg");
    metrics += pages_of(m); /* the picture of those steps, as many pages at step 3 */
    free(m);
    cr_log_info("a checkpoint takes %zu KiB on tmpfs (%zu + %zu + %zu + %zu)", ck / 1024,
                page[0] / 1024, page[1] / 1024, page[2] / 1024, page[3] / 1024);

    /* checkpoint-3 writes adapter_model.safetensors, adapter_config.json
     * (the config after the weights: lora.c says why),
     * optimizer.safetensors, trainer_state.json, in that order: the room left
     * after checkpoint-2 runs out in file i (half-way through it when it
     * spans several pages). */
    for (int i = 0; i < 4; i++) {
        size_t room = metrics + 2 * ck;
        for (int j = 0; j < i; j++)
            room += page[j];
        room += (page[i] / PAGE / 2) * PAGE;
        char *what = lc_test_asprintf("disk full in checkpoint-3/%s", files[i]);
        char *mnt = lc_test_asprintf("%s/small%d", g_tmp, i);
        mount_small_tmpfs(mnt, room);
        char *out = lc_test_path_in(mnt, "out");
        r = train(CFG_3STEP, out, sets);
        char *line = lc_test_error_line(&r, what);
        expect_has(line, "saving checkpoint", what);
        expect_has(line, "checkpoint-3", what);
        expect_has(line, "previous checkpoints are intact", what);
        expect_has(line, "No space left on device", what);
        expect_has(line, files[i], what);
        cr_expect_eq(count_of(r.err, "\nsaved "), 2, "%s: expected 2 checkpoints saved:\n%s", what,
                     r.err);
        free(line);
        lc_test_run_free(&r);

        /* Nothing but complete checkpoints 1 and 2, as the straight run's. */
        expect_listing(out, "checkpoint-1,checkpoint-2,lorac.lock,loss.svg,metrics.jsonl", what);
        for (int k = 1; k <= 2; k++) {
            char *a = ckpt(out, k), *b = ckpt(ref, k);
            expect_same_dir(a, b, what);
            expect_checkpoint(a, k, 0);
            free(a);
            free(b);
        }

        /* A roomy copy resumes from checkpoint-2 and ends as the straight run. */
        char *roomy = lc_test_asprintf("%s/roomy%d", g_tmp, i);
        copy_tree(out, roomy, 0);
        unmount_now(mnt);
        const char *resume_sets[] = {"save_steps=1", "max_steps=6", "resume_from_checkpoint=auto",
                                     NULL};
        r = train(CFG_3STEP, roomy, resume_sets);
        expect_ok(&r, what);
        expect_has(r.err, "checkpoint-2 (step 2,", what);
        lc_test_run_free(&r);
        char *a = lc_test_path_in(roomy, "adapter_model.safetensors");
        char *b = lc_test_path_in(ref, "adapter_model.safetensors");
        cr_expect(lc_test_same_file(a, b), "%s: the resumed run's adapter differs from the straight run's",
                  what);
        char *ma = metrics_sans_tok_s(roomy), *mb = metrics_sans_tok_s(ref);
        cr_expect_str_eq(ma, mb, "%s: metrics differ:\n%s\nvs straight:\n%s", what, ma, mb);
        free(ma);
        free(mb);
        free(a);
        free(b);
        free(roomy);
        free(out);
        free(mnt);
        free(what);
    }

    /* save_total_limit 1: checkpoint-1 is pruned only once checkpoint-2 is in
     * place, so a disk with room for one and a half checkpoints keeps it. */
    {
        const char *what = "disk full, save_total_limit 1";
        char *mnt = lc_test_path_in(g_tmp, "small_limit");
        mount_small_tmpfs(mnt, metrics + ck + (ck / PAGE / 2) * PAGE);
        char *out = lc_test_path_in(mnt, "out");
        const char *limit[] = {"save_steps=1", "max_steps=6", "save_total_limit=1", NULL};
        r = train(CFG_3STEP, out, limit);
        char *line = lc_test_error_line(&r, what);
        expect_has(line, "checkpoint-2 ", what);
        expect_has(line, "previous checkpoints are intact", what);
        expect_has(line, "No space left on device", what);
        free(line);
        lc_test_run_free(&r);
        expect_listing(out, "checkpoint-1,lorac.lock,loss.svg,metrics.jsonl", what);
        char *a = ckpt(out, 1), *b = ckpt(ref, 1);
        expect_same_dir(a, b, what);
        free(a);
        free(b);
        unmount_now(mnt);
        free(out);
        free(mnt);
    }
    free(ref);
}

/* ---- 2. other write errors -------------------------------------------------------- */

Test(faults, checkpoint_write_errors, .fini = faults_fini, .timeout = 120)
{
    g_tmp = lc_test_tmpdir();
    const char *sets[] = {"save_steps=1", "max_steps=3", NULL};
    char *ref = lc_test_path_in(g_tmp, "ref");
    lc_test_run_result r = train(CFG_3STEP, ref, sets);
    expect_ok(&r, "straight run");
    lc_test_run_free(&r);
    char *ref1 = ckpt(ref, 1);

    /* A foreign file where checkpoint-2.tmp (a directory) must go, then one
     * where checkpoint-2 must go: neither is a leftover of lorac's, so both
     * are kept and the save fails. */
    static const char *const names[2] = {"checkpoint-2.tmp", "checkpoint-2"};
    static const char *const why[2] = {"not a directory", "Not a directory"};
    for (int i = 0; i < 2; i++) {
        char *what = lc_test_asprintf("a file named %s", names[i]);
        char *out = lc_test_asprintf("%s/out%d", g_tmp, i);
        cr_assert_eq(mkdir(out, 0755), 0);
        char *foreign = lc_test_write_text(out, names[i], "not lorac's\n");
        r = train(CFG_3STEP, out, sets);
        char *line = lc_test_error_line(&r, what);
        expect_has(line, "saving checkpoint", what);
        expect_has(line, "checkpoint-2 ", what);
        expect_has(line, "previous checkpoints are intact", what);
        expect_has(line, why[i], what);
        free(line);
        lc_test_run_free(&r);
        char *text = lc_test_read_file(foreign, NULL);
        cr_expect_str_eq(text, "not lorac's\n", "%s: the file was changed", what);
        free(text);
        char *want = lc_test_asprintf("checkpoint-1,%s,lorac.lock,loss.svg,metrics.jsonl", names[i]);
        expect_listing(out, want, what);
        char *c1 = ckpt(out, 1);
        expect_same_dir(c1, ref1, what);
        expect_checkpoint(c1, 1, 0);
        free(c1);
        free(want);
        free(foreign);
        free(out);
        free(what);
    }

    /* A file-size limit (ulimit -f) that the adapter (75 KB) passes and the
     * optimizer state (143 KB) does not: its write comes back short, then
     * fails with EFBIG. On a resumed run, so checkpoints 1 and 2 exist. */
    {
        const char *what = "RLIMIT_FSIZE";
        char *out = lc_test_path_in(g_tmp, "fsize");
        const char *first[] = {"save_steps=1", "max_steps=2", NULL};
        r = train(CFG_3STEP, out, first);
        expect_ok(&r, "2 steps");
        lc_test_run_free(&r);
        char *ad = lc_test_path_in(ref, "adapter_model.safetensors");
        char *op = ckpt_file(ref, 1, "optimizer.safetensors");
        struct stat sa, so;
        cr_assert(stat(ad, &sa) == 0 && stat(op, &so) == 0);
        rlim_t limit = (rlim_t)(sa.st_size + so.st_size) / 2;
        cr_assert(sa.st_size < (off_t)limit && (off_t)limit < so.st_size);
        free(ad);
        free(op);
        struct rlimit old, lim;
        cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
        lim = old;
        lim.rlim_cur = limit;
        /* Both are inherited across fork and exec; restored right after. */
        void (*old_xfsz)(int) = signal(SIGXFSZ, SIG_IGN);
        cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0, "setrlimit: %s", strerror(errno));
        const char *resume[] = {"save_steps=1", "max_steps=3", "resume_from_checkpoint=auto", NULL};
        r = train(CFG_3STEP, out, resume);
        setrlimit(RLIMIT_FSIZE, &old);
        signal(SIGXFSZ, old_xfsz);
        char *line = lc_test_error_line(&r, what);
        expect_has(line, "saving checkpoint", what);
        expect_has(line, "checkpoint-3", what);
        expect_has(line, "previous checkpoints are intact", what);
        expect_has(line, "optimizer.safetensors", what);
        expect_has(line, "File too large", what);
        free(line);
        lc_test_run_free(&r);
        /* (the first run's final adapter is there too) */
        expect_listing(out, "adapter_config.json,adapter_model.safetensors,checkpoint-1,"
                            "checkpoint-2,lorac.lock,loss.svg,metrics.jsonl", what);
        for (int k = 1; k <= 2; k++) {
            char *a = ckpt(out, k);
            expect_checkpoint(a, k, 0);
            expect_listing(a, "adapter_config.json,adapter_model.safetensors,optimizer.safetensors,"
                              "trainer_state.json", what);
            free(a);
        }
        char *a = ckpt_file(out, 2, "adapter_model.safetensors");
        char *b = ckpt_file(ref, 2, "adapter_model.safetensors");
        cr_expect(lc_test_same_file(a, b), "%s: checkpoint-2's adapter changed", what);
        free(a);
        free(b);
        free(out);
    }
    free(ref1);
    free(ref);
}

/* ---- 3. refused steps ---------------------------------------------------------------- */

/* tmp/huge: adapter_init's config with A = ±1e30 and B = ±3e38 (finite, so
 * the loader takes them; the forward overflows to inf / NaN). */
static char *write_huge_adapter(const char *tmp)
{
    char *dir = lc_test_path_in(tmp, "huge");
    cr_assert_eq(mkdir(dir, 0755), 0);
    size_t n;
    char *cfg = lc_test_read_file(lc_test_fixture("tiny-llama/adapter_init/adapter_config.json"), &n);
    free(lc_test_write_file(dir, "adapter_config.json", cfg, n));
    free(cfg);
    lc_error err;
    lc_st_file f;
    cr_assert_eq(lc_st_open(&f, lc_test_fixture("tiny-llama/adapter_init/adapter_model.safetensors"),
                            &err), 0, "%s", err.msg);
    lc_st_entry *e = calloc(f.n_tensors, sizeof *e);
    float **data = calloc(f.n_tensors, sizeof *data);
    for (size_t i = 0; i < f.n_tensors; i++) {
        const lc_st_tensor *t = &f.tensors[i];
        cr_assert_eq(t->dtype, LC_DTYPE_F32, "%s", t->name);
        bool is_b = strstr(t->name, "lora_B") != NULL;
        cr_assert(is_b || strstr(t->name, "lora_A"), "%s", t->name);
        data[i] = malloc(t->numel * sizeof(float));
        for (uint64_t k = 0; k < t->numel; k++)
            data[i][k] = (k % 2 ? -1.0f : 1.0f) * (is_b ? 3e38f : 1e30f);
        e[i] = (lc_st_entry){t->name, t->dtype, t->ndim, t->shape, data[i]};
    }
    char *path = lc_test_path_in(dir, "adapter_model.safetensors");
    cr_assert_eq(lc_st_write(path, e, f.n_tensors, NULL, NULL, 0, &err), 0, "%s", err.msg);
    for (size_t i = 0; i < f.n_tensors; i++)
        free(data[i]);
    free(data);
    free(e);
    free(path);
    lc_st_close(&f);
    return dir;
}

/* Adam state of a checkpoint is all zeros with adam_step 0. */
static void expect_no_adam_update(const char *ck)
{
    lc_error err;
    lc_st_file f;
    char *p = lc_test_path_in(ck, "optimizer.safetensors");
    cr_assert_eq(lc_st_open(&f, p, &err), 0, "%s", err.msg);
    cr_expect_str_eq(lc_st_meta(&f, "adam_step"), "0", "%s: adam_step", p);
    for (size_t i = 0; i < f.n_tensors; i++) {
        const float *v = f.tensors[i].data;
        for (uint64_t k = 0; k < f.tensors[i].numel; k++)
            if (v[k] != 0.0f) {
                cr_expect_fail("%s: %s[%llu] = %g, expected no update", p, f.tensors[i].name,
                               (unsigned long long)k, (double)v[k]);
                break;
            }
    }
    lc_st_close(&f);
    free(p);
}

Test(faults, nonfinite_refused, .fini = faults_fini, .timeout = 120)
{
    g_tmp = lc_test_tmpdir();
    char *huge = write_huge_adapter(g_tmp);
    char *start = lc_test_path_in(huge, "adapter_model.safetensors");
    char *lmd = lc_test_asprintf("lora_model_dir=%s", huge);

    /* max_bad_steps 0: never stop. */
    char *out = lc_test_path_in(g_tmp, "never");
    const char *sets[] = {lmd, "save_steps=1", "max_steps=3", "max_bad_steps=0", NULL};
    lc_test_run_result r = train(CFG_3STEP, out, sets);
    const char *what = "max_bad_steps 0";
    char *nothing = lc_test_error_line(&r, what);
    expect_has(nothing, "trained nothing: all 3 steps of this run were refused", what);
    expect_has(nothing, "no adapter written", what);
    free(nothing);
    expect_has(r.err, "adapter: starting from", what);
    for (int s = 1; s <= 3; s++) {
        char *msg = lc_test_asprintf("step %d refused: non-finite loss or gradient; no update applied\n",
                                     s);
        expect_has(r.err, msg, what);
        free(msg);
    }
    cr_expect_eq(count_of(r.err, " refused: "), 3, "%s: expected 3 refusals:\n%s", what, r.err);
    cr_log_info("%s:\n%s", what, r.err);
    lc_test_run_free(&r);
    char *final = lc_test_path_in(out, "adapter_model.safetensors");
    cr_expect_eq(access(final, F_OK), -1, "%s: a run that trained nothing wrote %s", what, final);
    for (int k = 1; k <= 3; k++) {
        char *c = ckpt(out, k), *a = ckpt_file(out, k, "adapter_model.safetensors");
        expect_checkpoint(c, k, k);
        expect_no_adam_update(c);
        expect_same_tensors(a, start, true, what);
        free(c);
        free(a);
    }
    char *steps = metric_steps(out);
    cr_expect_str_eq(steps, "", "%s: metrics.jsonl has lines for refused steps: %s", what, steps);
    free(steps);
    free(final);
    free(out);

    /* max_bad_steps 2: stop after the second refusal, keeping checkpoint-1. */
    out = lc_test_path_in(g_tmp, "two");
    const char *sets2[] = {lmd, "save_steps=1", "max_steps=3", "max_bad_steps=2", NULL};
    r = train(CFG_3STEP, out, sets2);
    what = "max_bad_steps 2";
    char *line = lc_test_error_line(&r, what);
    expect_has(line, "stopping: 2 refused steps (max_bad_steps 2); the last good checkpoint is kept",
               what);
    expect_has(r.err, "step 1 refused: non-finite loss or gradient; no update applied\n", what);
    expect_has(r.err, "step 2 refused: non-finite loss or gradient; no update applied\n", what);
    cr_expect(!strstr(r.err, "step 3/") && !strstr(r.err, "step 3 refused"), "%s: step 3 ran:\n%s",
              what, r.err);
    free(line);
    lc_test_run_free(&r);
    expect_listing(out, "checkpoint-1,lorac.lock,metrics.jsonl", what);
    char *c1 = ckpt(out, 1), *a1 = ckpt_file(out, 1, "adapter_model.safetensors");
    expect_checkpoint(c1, 1, 1);
    expect_same_tensors(a1, start, true, what);
    free(c1);
    free(a1);
    free(out);

    /* max_bad_steps 1: stops at the first refusal, and says so in the singular. */
    out = lc_test_path_in(g_tmp, "one");
    const char *sets1[] = {lmd, "max_steps=3", "max_bad_steps=1", NULL};
    r = train(CFG_3STEP, out, sets1);
    what = "max_bad_steps 1";
    line = lc_test_error_line(&r, what);
    expect_has(line, "stopping: 1 refused step (max_bad_steps 1); the last good checkpoint is kept",
               what);
    free(line);
    lc_test_run_free(&r);
    free(out);
    free(lmd);
    free(start);
    free(huge);
}

/* ---- 4. steps without supervised tokens ----------------------------------------------- */

/* A config for rows (a JSONL file) in dir on model (NULL: the fixture's):
 * micro-batch 1, file order, constant lr, from adapter_init, a checkpoint
 * every step. */
static char *write_rows_config(const char *dir, const char *model, const char *rows, int max_steps)
{
    char *text = lc_test_asprintf(
        "base_model: %s\n"
        "adapter: lora\n"
        "lora_model_dir: %s\n"
        "datasets:\n  - path: %s\n    type: tokenized\n"
        "sequence_len: 16\nsample_packing: false\nshuffle: false\n"
        "micro_batch_size: 1\ngradient_accumulation_steps: 1\nmax_steps: %d\n"
        "learning_rate: 1.0e-3\nlr_scheduler: constant\nwarmup_steps: 0\nweight_decay: 0.01\n"
        "max_grad_norm: 1.0\nseed: 42\ndevice: cpu\nlogging_steps: 1\nsave_steps: 1\n",
        model ? model : lc_test_fixture("tiny-llama/model"),
        lc_test_fixture("tiny-llama/adapter_init"), rows,
        max_steps);
    char *name = lc_test_asprintf("config-%d.yaml", max_steps);
    char *path = lc_test_write_text(dir, name, text);
    free(name);
    free(text);
    return path;
}

/* Line i (0-based) of the fixture's train.jsonl with its labels replaced:
 * mode 0 keeps them, 1 sets all to -100, 2 keeps only label 0 (which no
 * target uses after the causal shift). Returns the JSONL line (malloc'd). */
static char *fixture_row(int i, int mode)
{
    char *text = lc_test_read_file(lc_test_fixture("tiny-llama/train.jsonl"), NULL);
    char *line = strtok(text, "\n");
    for (int k = 0; k < i; k++)
        line = strtok(NULL, "\n");
    cr_assert_not_null(line);
    cJSON *j = cJSON_Parse(line);
    cJSON *labels = cJSON_GetObjectItemCaseSensitive(j, "labels");
    cr_assert(cJSON_IsArray(labels));
    int k = 0;
    for (cJSON *v = labels->child; v; v = v->next, k++)
        if (mode == 1 || (mode == 2 && k > 0))
            cJSON_SetNumberValue(v, -100);
    char *res = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    free(text);
    return res;
}

Test(faults, no_supervised_tokens, .fini = faults_fini, .timeout = 120)
{
    g_tmp = lc_test_tmpdir();
    /* Rows: good, none (all -100), good, none (label 0 only), good; and the
     * good ones alone. */
    char *r0 = fixture_row(0, 0), *r1 = fixture_row(1, 1), *r2 = fixture_row(2, 0),
         *r3 = fixture_row(3, 2), *r4 = fixture_row(4, 0);
    char *mixed_text = lc_test_asprintf("%s\n%s\n%s\n%s\n%s\n", r0, r1, r2, r3, r4);
    char *good_text = lc_test_asprintf("%s\n%s\n%s\n", r0, r2, r4);
    char *mixed = lc_test_write_text(g_tmp, "mixed.jsonl", mixed_text);
    char *good = lc_test_write_text(g_tmp, "good.jsonl", good_text);
    char *dm = lc_test_path_in(g_tmp, "dm"), *dg = lc_test_path_in(g_tmp, "dg");
    cr_assert(mkdir(dm, 0755) == 0 && mkdir(dg, 0755) == 0);
    char *cfg_mixed = write_rows_config(dm, NULL, mixed, 3);
    char *cfg_good = write_rows_config(dg, NULL, good, 3);

    /* The two rows are dropped and counted; three steps train. */
    const char *what = "rows without supervised tokens";
    char *out = lc_test_path_in(g_tmp, "all");
    lc_test_run_result r = train(cfg_mixed, out, NULL);
    expect_ok(&r, what);
    expect_has(r.err, "data: 3 rows, ", what);
    expect_has(r.err, "from 5 lines; 2 dropped with no supervised token\n", what);
    cr_expect(!strstr(r.err, "refused"), "%s: %s", what, r.err);
    lc_test_run_free(&r);
    char *steps = metric_steps(out);
    cr_expect_str_eq(steps, "1,2,3", "%s: metrics lines for steps %s", what, steps);
    free(steps);
    /* The same as training on the good rows alone. */
    char *alone = lc_test_path_in(g_tmp, "alone");
    r = train(cfg_good, alone, NULL);
    expect_ok(&r, "good rows alone");
    lc_test_run_free(&r);
    char *fa = lc_test_path_in(out, "adapter_model.safetensors");
    char *fg = lc_test_path_in(alone, "adapter_model.safetensors");
    cr_expect(lc_test_same_file(fa, fg), "%s: the adapter differs from training on the good rows alone", what);
    free(fg);
    free(fa);
    free(alone);
    free(out);
    free(cfg_mixed);
    free(cfg_good);
    free(dm);
    free(dg);
    free(mixed);
    free(good);
    free(mixed_text);
    free(good_text);
    free(r0);
    free(r1);
    free(r2);
    free(r3);
    free(r4);
}

/* ---- 5. a non-finite step among good ones --------------------------------------------- */

/* tmp/poisoned: the fixture model with the embedding row of `token` all NaN
 * (the loader does not look at base weights' values), so exactly the rows
 * holding that token give a NaN loss. */
static char *write_poisoned_model(const char *tmp, int token)
{
    char *dir = lc_test_path_in(tmp, "poisoned");
    cr_assert_eq(mkdir(dir, 0755), 0);
    size_t n;
    char *cfg = lc_test_read_file(lc_test_fixture("tiny-llama/model/config.json"), &n);
    free(lc_test_write_file(dir, "config.json", cfg, n));
    free(cfg);
    lc_error err;
    lc_st_file f;
    cr_assert_eq(lc_st_open(&f, lc_test_fixture("tiny-llama/model/model.safetensors"), &err), 0,
                 "%s", err.msg);
    lc_st_entry *e = calloc(f.n_tensors, sizeof *e);
    float *embed = NULL;
    for (size_t i = 0; i < f.n_tensors; i++) {
        const lc_st_tensor *t = &f.tensors[i];
        e[i] = (lc_st_entry){t->name, t->dtype, t->ndim, t->shape, t->data};
        if (strcmp(t->name, "model.embed_tokens.weight") == 0) {
            cr_assert(t->dtype == LC_DTYPE_F32 && t->ndim == 2 && token < t->shape[0]);
            embed = malloc(t->end - t->begin);
            memcpy(embed, t->data, t->end - t->begin);
            for (int64_t k = 0; k < t->shape[1]; k++)
                embed[token * t->shape[1] + k] = NAN;
            e[i].data = embed;
        }
    }
    cr_assert_not_null(embed, "no model.embed_tokens.weight");
    char *path = lc_test_path_in(dir, "model.safetensors");
    cr_assert_eq(lc_st_write(path, e, f.n_tensors, (const char *const *)f.meta_keys,
                             (const char *const *)f.meta_values, f.n_meta, &err), 0, "%s", err.msg);
    free(path);
    free(embed);
    free(e);
    lc_st_close(&f);
    return dir;
}

/* A token of fixture row `row` that none of the other rows 0-4 holds. */
static int token_only_in(int row)
{
    char *text = lc_test_read_file(lc_test_fixture("tiny-llama/train.jsonl"), NULL);
    cJSON *roots[5], *ids[5];
    char *line = strtok(text, "\n");
    for (int i = 0; i < 5; i++, line = strtok(NULL, "\n")) {
        cr_assert_not_null(line);
        roots[i] = cJSON_Parse(line);
        ids[i] = cJSON_GetObjectItemCaseSensitive(roots[i], "input_ids");
        cr_assert(cJSON_IsArray(ids[i]), "fixture row %d", i);
    }
    int found = -1;
    for (cJSON *t = ids[row]->child; t && found < 0; t = t->next) {
        bool elsewhere = false;
        for (int i = 0; i < 5; i++)
            for (cJSON *u = ids[i]->child; i != row && u && !elsewhere; u = u->next)
                elsewhere = u->valueint == t->valueint;
        if (!elsewhere)
            found = t->valueint;
    }
    cr_assert_geq(found, 0, "row %d has no token of its own", row);
    for (int i = 0; i < 5; i++)
        cJSON_Delete(roots[i]);
    free(text);
    return found;
}

Test(faults, nonfinite_then_good, .fini = faults_fini, .timeout = 120)
{
    g_tmp = lc_test_tmpdir();
    int token = token_only_in(1);
    char *model = write_poisoned_model(g_tmp, token);
    cr_log_info("token %d poisoned (only fixture row 1 holds it)", token);
    char *r0 = fixture_row(0, 0), *r1 = fixture_row(1, 0), *r2 = fixture_row(2, 0),
         *r3 = fixture_row(3, 0), *r4 = fixture_row(4, 0);
    char *mixed_text = lc_test_asprintf("%s\n%s\n%s\n%s\n%s\n", r0, r1, r2, r3, r4);
    char *good_text = lc_test_asprintf("%s\n%s\n%s\n%s\n", r0, r2, r3, r4);
    char *mixed = lc_test_write_text(g_tmp, "mixed.jsonl", mixed_text);
    char *good = lc_test_write_text(g_tmp, "good.jsonl", good_text);
    char *dm = lc_test_path_in(g_tmp, "dm"), *dg = lc_test_path_in(g_tmp, "dg");
    cr_assert(mkdir(dm, 0755) == 0 && mkdir(dg, 0755) == 0);
    char *cfg_mixed = write_rows_config(dm, model, mixed, 5);
    char *cfg_good = write_rows_config(dg, model, good, 4);

    const char *what = "a NaN step among good ones";
    char *out = lc_test_path_in(g_tmp, "mixed");
    lc_test_run_result r = train(cfg_mixed, out, NULL);
    expect_ok(&r, what);
    expect_has(r.err, "step 2 refused: non-finite loss or gradient; no update applied\n", what);
    cr_expect_eq(count_of(r.err, " refused: "), 1, "%s: expected 1 refusal:\n%s", what, r.err);
    lc_test_run_free(&r);
    char *steps = metric_steps(out);
    cr_expect_str_eq(steps, "1,3,4,5", "%s: metrics lines for steps %s", what, steps);
    free(steps);
    char *a1 = ckpt_file(out, 1, "adapter_model.safetensors");
    char *a2 = ckpt_file(out, 2, "adapter_model.safetensors");
    expect_same_tensors(a1, a2, true, what);
    char *c2 = ckpt(out, 2);
    cr_expect_eq(expect_checkpoint(c2, 2, 1), 1, "%s: checkpoint-2 adam_step", what);

    /* The NaN step leaves nothing behind: the same as the good rows alone. */
    char *alone = lc_test_path_in(g_tmp, "alone");
    r = train(cfg_good, alone, NULL);
    expect_ok(&r, "good rows alone");
    cr_expect(!strstr(r.err, "refused"), "good rows alone: %s", r.err);
    lc_test_run_free(&r);
    char *fa = lc_test_path_in(out, "adapter_model.safetensors");
    char *fg = lc_test_path_in(alone, "adapter_model.safetensors");
    cr_expect(lc_test_same_file(fa, fg), "%s: the adapter differs from training on the good rows alone",
              what);
    char *o5 = ckpt_file(out, 5, "optimizer.safetensors"), *o4 = ckpt_file(alone, 4, "optimizer.safetensors");
    cr_expect(lc_test_same_file(o5, o4), "%s: the Adam state differs from training on the good rows alone",
              what);
    free(o5);
    free(o4);
    free(fa);
    free(fg);
    free(alone);
    free(c2);
    free(a1);
    free(a2);
    free(out);
    free(cfg_mixed);
    free(cfg_good);
    free(dm);
    free(dg);
    free(mixed);
    free(good);
    free(mixed_text);
    free(good_text);
    free(r0);
    free(r1);
    free(r2);
    free(r3);
    free(r4);
    free(model);
}

/* ---- 6. metrics.jsonl cannot be written ---------------------------------------- */

Test(faults, metrics_write_error, .fini = faults_fini, .timeout = 120)
{
    g_tmp = lc_test_tmpdir();
    const char *what = "metrics.jsonl on /dev/full";
    char *out = lc_test_path_in(g_tmp, "out");
    cr_assert_eq(mkdir(out, 0755), 0);
    char *metrics = lc_test_path_in(out, "metrics.jsonl");
    cr_assert_eq(symlink("/dev/full", metrics), 0, "symlink: %s", strerror(errno));
    const char *sets[] = {"save_steps=2", NULL};
    lc_test_run_result r = train(CFG_3STEP, out, sets);
    char *line = lc_test_error_line(&r, what);
    expect_has(line, metrics, what);
    expect_has(line, "write failed: No space left on device", what);
    cr_expect(!strstr(r.err, "step 2/3") && !strstr(r.err, "done:"),
              "%s: the run should stop at step 1:\n%s", what, r.err);
    free(line);
    lc_test_run_free(&r);
    expect_listing(out, "lorac.lock,metrics.jsonl", what); /* no adapter, no checkpoint */
    free(metrics);
    free(out);
}

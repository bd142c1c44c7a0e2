/* test_text_data.c — text datasets (Axolotl's chat_template, alpaca,
 * input_output, completion types) end to end through LORAC_BINARY, on the
 * chat quickstart (configs/quickstart_chat.yaml: a tiny Llama with a real
 * byte-level BPE tokenizer and a ChatML template, 800 training and 60 eval
 * conversations). Row-level agreement with Axolotl is tests/
 * test_dataset_types.c; this file checks that the commands put those rows
 * to use as documented: what train, eval and preprocess print, what they
 * write and refuse, and that every route to the same rows trains the same
 * adapter bit for bit. Runs are short (a few steps, small micro-batches);
 * every file is written into a fresh temporary directory, never configs/.
 *
 *   chat_quickstart_trains   the quickstart trains 4 steps: its data line,
 *                            an eval line, the adapter files.
 *   preprocess_is_training   preprocess --out rows, then a type: tokenized
 *                            config of those rows trains the adapter the
 *                            chat config trains, byte for byte.
 *   preprocess_cli           --debug N shows N rows marked with «» and the
 *                            data line; --out refuses an input and an
 *                            existing file (untouched) unless --force; bad
 *                            usage exits 2; an unknown role fails with
 *                            FILE:LINE and leaves no output or temp file.
 *   val_set_size             rows held out (40, 0.05 -> 40), the same each
 *                            run, evaluated by the trainer and lorac eval
 *                            alike; holding out every row is refused.
 *   prepared_path_cache      dataset_prepared_path: prepared once, read
 *                            back, the same adapter as without it; any
 *                            change (sequence_len, train_on_inputs, the
 *                            file's content at the same size and mtime)
 *                            makes a new file, never a stale one.
 *   other_types_train        alpaca, input_output and completion rows train;
 *                            alpaca's --debug marks only output + EOS.
 *   excess_length            sequence_len 40: drop / truncate counted in the
 *                            data line, raise names FILE:LINE and the length.
 *   eval_without_dropout     (disabled: a lorac bug, see the test) the
 *                            trainer's eval loss is lorac eval's. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/tokenizer.h"
#include "train/gguf_vocab.h"
#include "tests/helpers.h"

#define CHAT_CFG LORAC_SOURCE_DIR "/configs/quickstart_chat.yaml"
#define CHAT_DIR LORAC_SOURCE_DIR "/configs/quickstart_chat"
#define CHAT_DATA_LINE "data: 800 rows, 39934 tokens, 10560 supervised (26.4%) from 800 lines\n"
#define MAX_ARGS 46

/* ---- running lorac ------------------------------------------------------------ */

/* Appends the NULL-terminated va_list of strings to args[*n]. */
static void add_args(const char **args, int *n, va_list ap)
{
    for (const char *s; (s = va_arg(ap, const char *)) != NULL;) {
        cr_assert_lt(*n, MAX_ARGS - 1, "too many arguments");
        args[(*n)++] = s;
    }
}

/* `lorac ARGS...` (NULL-terminated). */
static lc_test_run_result lorac(const char *first, ...)
{
    const char *args[MAX_ARGS];
    int n = 0;
    args[n++] = first;
    va_list ap;
    va_start(ap, first);
    add_args(args, &n, ap);
    va_end(ap);
    args[n] = NULL;
    return lc_test_run_lorac(NULL, args);
}

/* `lorac train cfg --set output_dir=out --set overwrite_output_dir=true
 * --set S...` for the NULL-terminated sets S. */
static lc_test_run_result train(const char *cfg, const char *out, ...)
{
    char *o = lc_test_asprintf("output_dir=%s", out);
    const char *args[MAX_ARGS] = { "train", cfg, "--set", o, "--set",
                                   "overwrite_output_dir=true" };
    int n = 6;
    va_list ap;
    va_start(ap, out);
    const char *sets[MAX_ARGS];
    int k = 0;
    add_args(sets, &k, ap);
    va_end(ap);
    for (int i = 0; i < k; i++) {
        cr_assert_lt(n, MAX_ARGS - 2);
        args[n++] = "--set";
        args[n++] = sets[i];
    }
    args[n] = NULL;
    lc_test_run_result r = lc_test_run_lorac(NULL, args);
    free(o);
    return r;
}

static void expect_ok(const lc_test_run_result *r, const char *what)
{
    cr_assert_eq(r->code, 0, "%s: exit %d:\n%s", what, r->code, r->err);
}

static void expect_has(const char *text, const char *sub, const char *what)
{
    cr_assert(strstr(text, sub), "%s: no '%s' in:\n%s", what, sub, text);
}


/* ---- reading the log ------------------------------------------------------------ */

/* The first line of text that starts with prefix, with its newline
 * (malloc'd); the test fails when there is none. */
static char *line_with(const char *text, const char *prefix)
{
    for (const char *l = text; *l;) {
        const char *nl = strchr(l, '\n');
        size_t len = nl ? (size_t)(nl - l) + 1 : strlen(l);
        if (strncmp(l, prefix, strlen(prefix)) == 0)
            return strndup(l, len);
        l += len;
    }
    cr_assert_fail("no line starting with '%s' in:\n%s", prefix, text);
    return NULL;
}

/* The line of log starting with prefix is want. */
static void expect_line(const char *log, const char *prefix, const char *want)
{
    char *l = line_with(log, prefix);
    cr_expect_str_eq(l, want);
    free(l);
}

/* rows, tokens and supervised of a "WHAT: R rows, T tokens, S supervised"
 * line. */
typedef struct counts {
    long long rows, tokens, supervised;
} counts;

static counts data_counts(const char *log, const char *what)
{
    char *prefix = lc_test_asprintf("%s: ", what);
    char *l = line_with(log, prefix);
    counts k;
    int got = sscanf(l + strlen(prefix), "%lld rows, %lld tokens, %lld supervised", &k.rows,
                     &k.tokens, &k.supervised);
    cr_assert_eq(got, 3, "cannot read '%s'", l);
    free(prefix);
    free(l);
    return k;
}

/* The token count of the trainer's "eval at step N" line. */
static long long eval_tokens(const char *log, int step)
{
    char *prefix = lc_test_asprintf("eval at step %d: ", step);
    char *l = line_with(log, prefix);
    const char *p = strrchr(l, '(');
    long long n = -1;
    cr_assert(p && sscanf(p, "(%lld token", &n) == 1, "cannot read '%s'", l);
    free(prefix);
    free(l);
    return n;
}

/* How many times sub occurs in text. */
static int count_of(const char *text, const char *sub)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, sub)) != NULL; p += strlen(sub))
        n++;
    return n;
}

/* ---- files ------------------------------------------------------------------------ */

/* "dir/adapter_model.safetensors", or "dir/sub/adapter_model.safetensors"
 * when sub is not NULL (malloc'd). */
static char *adapter_of(const char *dir, const char *sub)
{
    return sub ? lc_test_asprintf("%s/%s/adapter_model.safetensors", dir, sub)
               : lc_test_path_in(dir, "adapter_model.safetensors");
}

static bool exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* The names in dir (not . and ..), newline-separated (malloc'd), and their
 * number in *n. */
static char *dir_names(const char *dir, int *n)
{
    DIR *d = opendir(dir);
    cr_assert(d, "opendir %s", dir);
    size_t cap = 4096, len = 0;
    char *s = calloc(cap, 1);
    *n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        cr_assert_lt(len + strlen(e->d_name) + 2, cap);
        len += (size_t)sprintf(s + len, "%s\n", e->d_name);
        (*n)++;
    }
    closedir(d);
    return s;
}

/* The quickstart config with its base_model, datasets, test_datasets and
 * output_dir lines left out (top-level keys and their indented lines),
 * base_model set to the quickstart model by absolute path and tail
 * appended; written to dir/name, path returned (malloc'd). */
static char *derive_cfg(const char *dir, const char *name, const char *tail)
{
    static const char *const dropped[] = { "base_model:", "datasets:", "test_datasets:",
                                           "output_dir:" };
    char *src = lc_test_read_file(CHAT_CFG, NULL);
    size_t cap = strlen(src) + strlen(tail) + 8192, len = 0;
    char *dst = malloc(cap);
    bool skipping = false;
    for (char *l = src; *l;) {
        char *nl = strchr(l, '\n');
        size_t n = nl ? (size_t)(nl - l) + 1 : strlen(l);
        if (l[0] != ' ' && l[0] != '-') {
            skipping = false;
            for (size_t i = 0; i < sizeof dropped / sizeof *dropped; i++)
                skipping |= strncmp(l, dropped[i], strlen(dropped[i])) == 0;
        }
        if (!skipping) {
            memcpy(dst + len, l, n);
            len += n;
        }
        l += n;
    }
    len += (size_t)snprintf(dst + len, cap - len, "\nbase_model: %s/model\n%s", CHAT_DIR, tail);
    char *path = lc_test_write_file(dir, name, dst, len);
    free(src);
    free(dst);
    return path;
}

/* A copy of the quickstart's train.jsonl in dir and a config (cfg.yaml,
 * path returned) training on that copy as chat_template, no test_datasets. */
static char *chat_copy_cfg(const char *dir)
{
    size_t n;
    char *data = lc_test_read_file(CHAT_DIR "/train.jsonl", &n);
    free(lc_test_write_file(dir, "train.jsonl", data, n));
    free(data);
    char *tail = lc_test_asprintf("datasets:\n  - path: %s/train.jsonl\n    type: chat_template\n",
                                  dir);
    char *cfg = derive_cfg(dir, "cfg.yaml", tail);
    free(tail);
    return cfg;
}

/* ---- 1. the chat quickstart trains --------------------------------------------------- */

Test(text_data, chat_quickstart_trains, .timeout = 120)
{
    char *tmp = lc_test_tmpdir();
    lc_test_run_result r = train(CHAT_CFG, tmp, "max_steps=4", NULL);
    expect_ok(&r, "quickstart_chat");
    expect_has(r.err, "\n" CHAT_DATA_LINE, "data line");
    expect_has(r.err, "\neval data: 60 rows, 2966 tokens, 789 supervised", "eval data line");
    cr_expect_eq(eval_tokens(r.err, 4), 789);
    char *ad = adapter_of(tmp, NULL), *cj = lc_test_path_in(tmp, "adapter_config.json");
    cr_expect(exists(ad) && exists(cj), "adapter files missing in %s", tmp);
    free(ad);
    free(cj);
    lc_test_run_free(&r);
    lc_test_rm_rf(tmp);
    free(tmp);
}

/* ---- 2. preprocess --out is what train trains ------------------------------------------- */

Test(text_data, preprocess_is_training, .timeout = 120)
{
    char *tmp = lc_test_tmpdir();
    char *rows = lc_test_path_in(tmp, "rows.jsonl");
    lc_test_run_result p = lorac("preprocess", CHAT_CFG, "--out", rows, NULL);
    expect_ok(&p, "preprocess --out");
    expect_has(p.err, "\n" CHAT_DATA_LINE, "preprocess data line");
    expect_has(p.err, "wrote 800 rows to ", "preprocess");

    char *tail = lc_test_asprintf("datasets:\n  - path: %s\n    type: tokenized\n", rows);
    char *cfg = derive_cfg(tmp, "tokenized.yaml", tail);
    char *out_chat = lc_test_path_in(tmp, "chat"), *out_tok = lc_test_path_in(tmp, "tok");
    lc_test_run_result a = train(CHAT_CFG, out_chat, "test_datasets=null", "max_steps=3",
                                 "micro_batch_size=2", NULL);
    expect_ok(&a, "train chat_template");
    lc_test_run_result b = train(cfg, out_tok, "max_steps=3", "micro_batch_size=2", NULL);
    expect_ok(&b, "train tokenized");
    expect_has(b.err, "\n" CHAT_DATA_LINE, "tokenized data line");
    char *ad_a = adapter_of(out_chat, NULL), *ad_b = adapter_of(out_tok, NULL);
    cr_expect(lc_test_same_file(ad_a, ad_b), "the adapters differ: %s %s", ad_a, ad_b);

    free(ad_a), free(ad_b), free(out_chat), free(out_tok), free(cfg), free(tail), free(rows);
    lc_test_run_free(&p), lc_test_run_free(&a), lc_test_run_free(&b);
    lc_test_rm_rf(tmp);
    free(tmp);
}

/* ---- 3. preprocess: what it shows, writes and refuses ----------------------------------- */

static void preprocess_debug(const char *cfg, const char *dir)
{
    lc_test_run_result r = lorac("preprocess", cfg, "--debug", "2", NULL);
    expect_ok(&r, "preprocess --debug 2");
    char *h1 = lc_test_asprintf("--- %s/train.jsonl:1: 82 tokens, 22 supervised ---\n", dir);
    char *h3 = lc_test_asprintf("--- %s/train.jsonl:3: ", dir);
    expect_has(r.err, h1, "first row");
    cr_expect_eq(count_of(r.err, "--- "), 2, "two rows shown:\n%s", r.err);
    cr_expect(!strstr(r.err, h3), "a third row shown");
    /* the assistant content and its <|im_end|> marked, nothing else */
    expect_has(r.err, "<|im_start|>user\nWhat colour is grass?<|im_end|>\n<|im_start|>assistant\n"
               "\u00abGrass is green.<|im_end|>\u00bb\n<|im_start|>user\n", "marks");
    cr_expect_eq(count_of(r.err, "\u00ab"), count_of(r.err, "\u00bb"));
    cr_expect(!strstr(r.err, "\033["), "colour codes when not a terminal");
    expect_has(r.err, "\n" CHAT_DATA_LINE, "data line");
    free(h1), free(h3);
    lc_test_run_free(&r);
}

static void preprocess_refuses_out(const char *cfg, const char *dir)
{
    /* OUT is an input: refused, the input untouched */
    char *in = lc_test_path_in(dir, "train.jsonl");
    size_t n0;
    char *before = lc_test_read_file(in, &n0);
    lc_test_run_result r = lorac("preprocess", cfg, "--out", in, NULL);
    char *line = lc_test_error_line(&r, "--out = input");
    expect_has(line, "is the input", "--out = input");
    expect_has(line, in, "--out = input");
    size_t n1;
    char *after = lc_test_read_file(in, &n1);
    cr_expect(n0 == n1 && memcmp(before, after, n0) == 0, "the input changed");
    free(line), free(after), free(before), free(in);
    lc_test_run_free(&r);

    /* OUT exists: refused without --force, untouched; replaced with it */
    char *out = lc_test_write_text(dir, "rows.jsonl", "keep me\n");
    r = lorac("preprocess", cfg, "--out", out, NULL);
    line = lc_test_error_line(&r, "--out exists");
    expect_has(line, "exists (add --force", "--out exists");
    char *kept = lc_test_read_file(out, NULL);
    cr_expect_str_eq(kept, "keep me\n");
    free(kept), free(line);
    lc_test_run_free(&r);
    r = lorac("preprocess", cfg, "--out", out, "--force", NULL);
    expect_ok(&r, "--force");
    char *rows = lc_test_read_file(out, NULL);
    cr_expect(strncmp(rows, "{\"input_ids\":", 13) == 0, "not rows: %.40s", rows);
    cr_expect_eq(count_of(rows, "\n"), 800);
    free(rows), free(out);
    lc_test_run_free(&r);
}

static void expect_usage(int code, const char *what, const char *const *args)
{
    lc_test_run_result r = lc_test_run_lorac(NULL, args);
    cr_expect_eq(r.code, code, "%s: exit %d, expected %d:\n%s", what, r.code, code, r.err);
    lc_test_run_free(&r);
}

static void preprocess_usage_errors(const char *cfg)
{
    expect_usage(2, "no config", (const char *const[]){ "preprocess", NULL });
    expect_usage(2, "unknown flag", (const char *const[]){ "preprocess", cfg, "--bogus", NULL });
    expect_usage(2, "--out without value", (const char *const[]){ "preprocess", cfg, "--out",
                                                                  NULL });
    expect_usage(2, "flag first", (const char *const[]){ "preprocess", "--force", cfg, NULL });
    expect_usage(0, "--help", (const char *const[]){ "preprocess", "--help", NULL });
}

/* A conversation whose second message has a role no template knows. */
static void preprocess_bad_role(const char *cfg, const char *dir)
{
    char *bad = lc_test_write_text(dir, "bad.jsonl",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"},"
        "{\"role\":\"assistant\",\"content\":\"Hello.\"}]}\n"
        "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"},"
        "{\"role\":\"narrator\",\"content\":\"Once upon a time.\"}]}\n");
    char *outdir = lc_test_path_in(dir, "out");
    cr_assert_eq(mkdir(outdir, 0755), 0);
    char *out = lc_test_path_in(outdir, "rows.jsonl");
    char *ds = lc_test_asprintf("datasets=[{path: %s, type: chat_template}]", bad);
    lc_test_run_result r = lorac("preprocess", cfg, "--set", ds, "--out", out, NULL);
    char *line = lc_test_error_line(&r, "unknown role");
    char *want = lc_test_asprintf("%s:2: messages[1] has role", bad);
    expect_has(line, want, "unknown role");
    int n;
    char *left = dir_names(outdir, &n);
    cr_expect_eq(n, 0, "left behind in %s:\n%s", outdir, left);
    free(left), free(want), free(line), free(ds), free(out), free(outdir), free(bad);
    lc_test_run_free(&r);
}

Test(text_data, preprocess_cli, .timeout = 120)
{
    char *tmp = lc_test_tmpdir();
    char *cfg = chat_copy_cfg(tmp);
    preprocess_debug(cfg, tmp);
    preprocess_refuses_out(cfg, tmp);
    preprocess_usage_errors(cfg);
    preprocess_bad_role(cfg, tmp);
    free(cfg);
    lc_test_rm_rf(tmp);
    free(tmp);
}

/* ---- 4. val_set_size ---------------------------------------------------------------- */

/* Trains 2 steps holding out val (a --set value) into dir/name; returns the
 * log (malloc'd). */
static char *train_val(const char *dir, const char *name, const char *val)
{
    char *out = lc_test_path_in(dir, name);
    char *v = lc_test_asprintf("val_set_size=%s", val);
    lc_test_run_result r = train(CHAT_CFG, out, "test_datasets=null", v, "max_steps=2",
                                 "micro_batch_size=1", NULL);
    expect_ok(&r, v);
    char *log = r.err;
    r.err = NULL;
    lc_test_run_free(&r);
    free(v);
    free(out);
    return log;
}

Test(text_data, val_set_size, .timeout = 120)
{
    char *tmp = lc_test_tmpdir();
    char *a = train_val(tmp, "a", "40");
    char *data_a = line_with(a, "data: "), *eval_a = line_with(a, "eval data: ");
    expect_has(data_a, "; 40 held out for evaluation (val_set_size)\n", "data line");
    counts tr = data_counts(a, "data"), ev = data_counts(a, "eval data");
    cr_expect_eq(tr.rows, 760);
    cr_expect_eq(ev.rows, 40);
    cr_expect_eq(tr.tokens + ev.tokens, 39934, "held-out tokens are not the rest");
    cr_expect_eq(tr.supervised + ev.supervised, 10560);
    cr_expect_eq(eval_tokens(a, 2), ev.supervised, "eval is not on the held-out rows");

    /* the same rows again, and for 0.05 (ceil(0.05 x 800) = 40) */
    char *b = train_val(tmp, "b", "40"), *c = train_val(tmp, "c", "0.05");
    expect_line(b, "eval data: ", eval_a);
    cr_expect_eq(eval_tokens(b, 2), ev.supervised);
    char *ad_a = adapter_of(tmp, "a"), *ad_b = adapter_of(tmp, "b");
    cr_expect(lc_test_same_file(ad_a, ad_b), "same seed, different adapters");
    expect_line(c, "data: ", data_a);
    expect_line(c, "eval data: ", eval_a);

    /* every row held out: refused by name */
    char *out_d = lc_test_path_in(tmp, "d");
    lc_test_run_result d = train(CHAT_CFG, out_d, "test_datasets=null", "val_set_size=800",
                                 "max_steps=2", NULL);
    char *line = lc_test_error_line(&d, "val_set_size=800");
    expect_has(line, "val_set_size", "val_set_size=800");

    /* lorac eval of the config evaluates the same held-out rows */
    char *o = lc_test_asprintf("output_dir=%s/a", tmp);
    lc_test_run_result e = lorac("eval", CHAT_CFG, "--set", o, "--set", "test_datasets=null",
                                 "--set", "val_set_size=40", NULL);
    expect_ok(&e, "lorac eval");
    char *sup = lc_test_asprintf("supervised tokens: %lld\n", ev.supervised);
    expect_has(e.out, sup, "lorac eval");
    expect_has(e.out, ", 40 rows (", "lorac eval");

    free(sup), free(o), free(line), free(out_d), free(ad_a), free(ad_b);
    free(a), free(b), free(c), free(data_a), free(eval_a);
    lc_test_run_free(&d), lc_test_run_free(&e);
    lc_test_rm_rf(tmp);
    free(tmp);
}

/* ---- 5. dataset_prepared_path ---------------------------------------------------------- */

/* The prepared file a log names after "datasets[0]: VERB " (malloc'd); its
 * name is NAME-<16 hex>.jsonl in prep. */
static char *prepared_file(const char *log, const char *verb, const char *prep,
                           const char *name)
{
    char *prefix = lc_test_asprintf("datasets[0]: %s ", verb);
    char *l = line_with(log, prefix);
    char *path = strndup(l + strlen(prefix), strlen(l) - strlen(prefix) - 1);
    char *start = lc_test_asprintf("%s/%s-", prep, name);
    size_t n = strlen(start);
    cr_assert(strncmp(path, start, n) == 0, "'%s' is not in %s", path, start);
    cr_assert_eq(strlen(path + n), 16 + strlen(".jsonl"), "'%s': not 16 hex digits", path);
    cr_assert_eq(strspn(path + n, "0123456789abcdef"), 16, "'%s': not 16 hex digits", path);
    cr_assert_str_eq(path + n + 16, ".jsonl");
    cr_assert(exists(path), "%s does not exist", path);
    free(prefix), free(l), free(start);
    return path;
}

/* Trains 3 steps into dir/name with the extra set s (may be NULL); returns
 * the log (malloc'd). */
static char *train3(const char *dir, const char *name, const char *s)
{
    char *out = lc_test_path_in(dir, name);
    lc_test_run_result r = train(CHAT_CFG, out, "max_steps=3", "micro_batch_size=1", s, NULL);
    expect_ok(&r, name);
    char *log = r.err;
    r.err = NULL;
    lc_test_run_free(&r);
    free(out);
    return log;
}

/* preprocess of cfg with the prepared path and an extra set s; returns
 * the log (malloc'd). */
static char *preprocess_prep(const char *cfg, const char *prep_set, const char *s)
{
    lc_test_run_result r = lorac("preprocess", cfg, "--set", prep_set, s ? "--set" : NULL, s,
                                 NULL);
    expect_ok(&r, s ? s : prep_set);
    char *log = r.err;
    r.err = NULL;
    lc_test_run_free(&r);
    return log;
}

static void expect_dir_count(const char *dir, int want)
{
    int n;
    char *names = dir_names(dir, &n);
    cr_expect_eq(n, want, "%s holds:\n%s", dir, names);
    cr_expect(!strstr(names, "tmp"), "a temporary file left in %s:\n%s", dir, names);
    free(names);
}

/* A changed option or a changed file (same size, same mtime): a new file;
 * a copy of the file elsewhere (same content): the same one. */
static void prepared_never_stale(const char *tmp, const char *prep, const char *set,
                                 const char *first)
{
    char *l1 = preprocess_prep(CHAT_CFG, set, "sequence_len=128");
    char *f1 = prepared_file(l1, "prepared into", prep, "train");
    cr_expect_str_neq(f1, first);
    char *l2 = preprocess_prep(CHAT_CFG, set, "train_on_inputs=true");
    char *f2 = prepared_file(l2, "prepared into", prep, "train");
    char *l3 = preprocess_prep(CHAT_CFG, set, "sequence_len=128");
    char *f3 = prepared_file(l3, "prepared rows from", prep, "train");
    cr_expect_str_eq(f3, f1);
    expect_dir_count(prep, 3);

    char *data = lc_test_path_in(tmp, "data");
    cr_assert_eq(mkdir(data, 0755), 0);
    char *cfg = chat_copy_cfg(data), *file = lc_test_path_in(data, "train.jsonl");
    char *l4 = preprocess_prep(cfg, set, NULL); /* the same content: the same rows */
    char *f4 = prepared_file(l4, "prepared rows from", prep, "train");
    cr_expect_str_eq(f4, first);
    struct stat st;
    cr_assert_eq(stat(file, &st), 0);
    char *text = lc_test_read_file(file, NULL);
    char *at = strstr(text, "Grass is green.");
    cr_assert(at);
    memcpy(at, "Grass is GREEN.", 15);
    free(lc_test_write_text(data, "train.jsonl", text));
    const struct timespec times[2] = { st.st_atim, st.st_mtim };
    cr_assert_eq(utimensat(AT_FDCWD, file, times, 0), 0);
    char *l5 = preprocess_prep(cfg, set, NULL);
    char *f5 = prepared_file(l5, "prepared into", prep, "train");
    cr_expect_str_neq(f5, f4, "a changed file read from its old prepared rows");
    expect_dir_count(prep, 4);
    free(l1), free(f1), free(l2), free(f2), free(l3), free(f3), free(l4), free(f4);
    free(l5), free(f5), free(text), free(file), free(cfg), free(data);
}

Test(text_data, prepared_path_cache, .timeout = 120)
{
    char *tmp = lc_test_tmpdir();
    char *prep = lc_test_path_in(tmp, "prep");
    char *set = lc_test_asprintf("dataset_prepared_path=%s", prep);
    char *l1 = train3(tmp, "o1", set), *l2 = train3(tmp, "o2", set);
    char *l3 = train3(tmp, "o3", NULL);
    char *f1 = prepared_file(l1, "prepared into", prep, "train");
    char *f2 = prepared_file(l2, "prepared rows from", prep, "train");
    cr_expect_str_eq(f1, f2);
    cr_expect(!strstr(l3, "datasets[0]: prepared"), "prepared without the key:\n%s", l3);
    expect_has(l2, "\n" CHAT_DATA_LINE, "data line from the prepared rows");
    expect_dir_count(prep, 1);
    char *a1 = adapter_of(tmp, "o1"), *a2 = adapter_of(tmp, "o2"), *a3 = adapter_of(tmp, "o3");
    cr_expect(lc_test_same_file(a1, a2), "the run from the cache trained differently");
    cr_expect(lc_test_same_file(a1, a3), "the run without the cache trained differently");
    prepared_never_stale(tmp, prep, set, f1);
    free(a1), free(a2), free(a3), free(f1), free(f2), free(l1), free(l2), free(l3);
    free(set), free(prep);
    lc_test_rm_rf(tmp);
    free(tmp);
}

/* ---- 6. alpaca, input_output, completion ------------------------------------------------ */

/* rows JSONL rows, row i from fmt with i as every argument; path returned. */
static char *write_rows(const char *dir, const char *name, const char *fmt, int rows)
{
    size_t cap = (size_t)rows * (strlen(fmt) + 64) + 1, len = 0;
    char *text = malloc(cap);
    for (int i = 1; i <= rows; i++)
        len += (size_t)snprintf(text + len, cap - len, fmt, i, i, i, i);
    char *path = lc_test_write_file(dir, name, text, len);
    free(text);
    return path;
}

/* Trains 2 steps on path as dataset type; the data line says rows rows. */
static void trains_type(const char *dir, const char *path, const char *type, int rows)
{
    char *ds = lc_test_asprintf("datasets=[{path: %s, type: %s}]", path, type);
    char *out = lc_test_path_in(dir, type);
    lc_test_run_result r = train(CHAT_CFG, out, ds, "test_datasets=null", "max_steps=2",
                                 "micro_batch_size=2", NULL);
    expect_ok(&r, type);
    char *want = lc_test_asprintf("\ndata: %d rows, ", rows);
    expect_has(r.err, want, type);
    expect_has(r.err, "step 2/2 ", type);
    char *ad = adapter_of(out, NULL);
    cr_expect(exists(ad), "%s: no adapter", type);
    free(ad), free(want), free(out), free(ds);
    lc_test_run_free(&r);
}

/* Alpaca's prompt unmarked, the output and EOS (<|im_end|>) marked. */
static void alpaca_debug(const char *path)
{
    char *ds = lc_test_asprintf("datasets=[{path: %s, type: alpaca}]", path);
    lc_test_run_result r = lorac("preprocess", CHAT_CFG, "--set", ds, "--debug", "1", NULL);
    expect_ok(&r, "alpaca --debug");
    char *want = lc_test_asprintf(
        "--- %s:1: 97 tokens, 7 supervised ---\n"
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\nName colour 1.\n\n### Response:\n"
        "\u00abBlue 1.<|im_end|>\u00bb\n", path);
    expect_has(r.err, want, "alpaca --debug");
    cr_expect_eq(count_of(r.err, "\u00ab"), 1, "%s", r.err);
    free(want), free(ds);
    lc_test_run_free(&r);
}

Test(text_data, other_types_train, .timeout = 120)
{
    char *tmp = lc_test_tmpdir();
    char *al = write_rows(tmp, "alpaca.jsonl",
                          "{\"instruction\":\"Name colour %d.\",\"input\":\"\","
                          "\"output\":\"Blue %d.\"}\n", 12);
    char *io = write_rows(tmp, "io.jsonl",
                          "{\"segments\":[{\"text\":\"Q: what is %d plus 1?\\n\",\"label\":false},"
                          "{\"text\":\"A: one more than %d.\",\"label\":true}]}\n", 12);
    char *co = write_rows(tmp, "completion.jsonl",
                          "{\"text\":\"Row %d: the capital of Brann is far from %d.\"}\n", 12);
    trains_type(tmp, al, "alpaca", 12);
    trains_type(tmp, io, "input_output", 12);
    trains_type(tmp, co, "completion", 12);
    alpaca_debug(al);
    free(al), free(io), free(co);
    lc_test_rm_rf(tmp);
    free(tmp);
}

/* ---- 7. excess_length_strategy ---------------------------------------------------------- */

/* Tokens in row `line` (1-based; every row kept) of the quickstart at
 * sequence_len 256, as preprocess --out writes it. */
static int row_tokens(const char *dir, int line)
{
    char *out = lc_test_path_in(dir, "rows256.jsonl");
    lc_test_run_result r = lorac("preprocess", CHAT_CFG, "--out", out, NULL);
    expect_ok(&r, "preprocess at 256");
    char *rows = lc_test_read_file(out, NULL), *l = rows;
    for (int i = 1; i < line; i++) {
        l = strchr(l, '\n');
        cr_assert(l, "no line %d in %s", line, out);
        l++;
    }
    l[strcspn(l, "\n")] = '\0';
    cJSON *j = cJSON_Parse(l);
    cr_assert(j, "row %d of %s is not JSON", line, out);
    int n = cJSON_GetArraySize(cJSON_GetObjectItem(j, "input_ids"));
    cJSON_Delete(j);
    free(rows), free(out);
    lc_test_run_free(&r);
    return n;
}

/* The default (drop): the data line counts them, --debug lists them;
 * returns the line of the first one and the count in *dropped. */
static int excess_drop(long long *dropped)
{
    lc_test_run_result r = lorac("preprocess", CHAT_CFG, "--set", "sequence_len=40", "--debug",
                                 "1", NULL);
    expect_ok(&r, "drop");
    char *l = line_with(r.err, "data: ");
    long long rows = 0;
    const char *p = strstr(l, "; ");
    cr_assert(sscanf(l, "data: %lld rows", &rows) == 1 && p &&
              sscanf(p, "; %lld dropped as longer than sequence_len 40 (excess_length_strategy: "
                     "drop)", dropped) == 1, "drop: %s", l);
    cr_expect_eq(rows + *dropped, 800);
    cr_expect_gt(*dropped, 0);
    cr_expect_gt(rows, 0);
    const char *first = strstr(r.err, ": dropped (longer than sequence_len");
    cr_assert(first, "drop: no dropped row listed:\n%.2000s", r.err);
    const char *start = first;
    while (start > r.err && start[-1] != '\n')
        start--;
    int line = 0;
    cr_assert(sscanf(start, "--- " CHAT_DIR "/train.jsonl:%d: dropped", &line) == 1,
              "drop: %.200s", start);
    cr_expect_eq(count_of(r.err, ": dropped (longer than sequence_len"), *dropped);
    free(l);
    lc_test_run_free(&r);
    return line;
}

Test(text_data, excess_length, .timeout = 120)
{
    char *tmp = lc_test_tmpdir();
    long long dropped;
    int line = excess_drop(&dropped);

    /* truncate: the same rows cut, all 800 trained */
    char *out = lc_test_path_in(tmp, "trunc");
    lc_test_run_result r = train(CHAT_CFG, out, "sequence_len=40",
                                 "excess_length_strategy=truncate", "test_datasets=null",
                                 "max_steps=2", "micro_batch_size=1", NULL);
    expect_ok(&r, "truncate");
    char *want = lc_test_asprintf("; %lld truncated to sequence_len 40\n", dropped);
    char *data = line_with(r.err, "data: 800 rows, ");
    expect_has(data, want, "truncate");
    free(data), free(want);
    lc_test_run_free(&r);

    /* raise: the first long row by file, line and length */
    want = lc_test_asprintf("%s/train.jsonl:%d: %d tokens, more than sequence_len 40 "
                            "(excess_length_strategy: raise)", CHAT_DIR, line,
                            row_tokens(tmp, line));
    r = lorac("preprocess", CHAT_CFG, "--set", "sequence_len=40", "--set",
              "excess_length_strategy=raise", NULL);
    char *msg = lc_test_error_line(&r, "raise");
    expect_has(msg, want, "raise (preprocess)");
    free(msg);
    lc_test_run_free(&r);
    r = train(CHAT_CFG, out, "sequence_len=40", "excess_length_strategy=raise",
              "test_datasets=null", "max_steps=2", NULL);
    msg = lc_test_error_line(&r, "raise (train)");
    expect_has(msg, want, "raise (train)");
    free(msg), free(want), free(out);
    lc_test_run_free(&r);
    lc_test_rm_rf(tmp);
    free(tmp);
}

/* ---- the trainer's evaluation is without dropout ----------------------------------------- */

/* The trainer's eval_loss is lorac eval's loss of the same final adapter on
 * the same rows: evaluation runs without LoRA dropout (lora_dropout 0.05
 * here), as HF evaluates in model.eval() mode. It once ran with the training
 * tape's dropout on (6.11111445 vs 6.11591612). */
static double metrics_eval_loss(const char *dir)
{
    char *path = lc_test_path_in(dir, "metrics.jsonl");
    char *text = lc_test_read_file(path, NULL);
    const char *p = strstr(text, "\"eval_loss\":");
    double v = NAN;
    cr_assert(p && sscanf(p, "\"eval_loss\":%lf", &v) == 1, "no eval_loss in %s", path);
    free(text), free(path);
    return v;
}

Test(text_data, eval_without_dropout, .timeout = 120)
{
    char *tmp = lc_test_tmpdir();
    lc_test_run_result r = train(CHAT_CFG, tmp, "max_steps=2", "micro_batch_size=1", NULL);
    expect_ok(&r, "train");
    double trained = metrics_eval_loss(tmp);
    char *o = lc_test_asprintf("output_dir=%s", tmp);
    lc_test_run_result e = lorac("eval", CHAT_CFG, "--set", o, "--set", "micro_batch_size=1",
                                 NULL);
    expect_ok(&e, "lorac eval");
    double evaluated = NAN;
    const char *p = strstr(e.out, "\nloss:");
    cr_assert(p && sscanf(p, "\nloss: %lf", &evaluated) == 1, "%s", e.out);
    cr_expect_leq(fabs(trained - evaluated), 1e-6 * fabs(evaluated),
                  "trainer eval_loss %.9g, lorac eval %.9g", trained, evaluated);
    free(o);
    lc_test_run_free(&r), lc_test_run_free(&e);
    lc_test_rm_rf(tmp);
    free(tmp);
}

/* ---- sample generations during training ------------------------------------------------ */

/* The lines "sample N at step S: ..." of a log, joined (malloc'd). */
static char *sample_lines(const char *log)
{
    size_t cap = strlen(log) + 1, n = 0;
    char *out = calloc(cap, 1);
    for (const char *l = log; l && *l;) {
        const char *nl = strchr(l, '\n');
        size_t len = nl ? (size_t)(nl - l) + 1 : strlen(l);
        if (!strncmp(l, "sample ", 7)) {
            memcpy(out + n, l, len);
            n += len;
        }
        l = nl ? nl + 1 : NULL;
    }
    return out;
}

/* sample_prompts are answered at every evaluation point (eval_steps 2 of 4
 * steps: at steps 2 and 4), as user messages through the chat template, into
 * the log and metrics.jsonl; greedy without dropout, a run stopped and resumed
 * at a checkpoint prints the same samples as an uninterrupted one. */
Test(text_data, sample_generations, .timeout = 180)
{
    char *tmp = lc_test_tmpdir();
    char *a = lc_test_path_in(tmp, "a"), *b = lc_test_path_in(tmp, "b");
    const char *prompts = "sample_prompts=[\"What is 2 + 3?\", \"What colour is grass?\"]";
    lc_test_run_result r = train(CHAT_CFG, a, "max_steps=4", "eval_steps=2", "save_steps=2",
                                 "test_datasets=null", "sample_max_new_tokens=8", prompts, NULL);
    expect_ok(&r, "train with samples");
    char *got = sample_lines(r.err);
    int lines = 0;
    for (const char *p = got; *p; p++)
        lines += *p == '\n';
    cr_expect_eq(lines, 4, "2 prompts x 2 evaluation points:\n%s", got);
    cr_expect(strstr(got, "sample 1 at step 2: What is 2 + 3? -> "), "%s", got);
    cr_expect(strstr(got, "sample 2 at step 4: What colour is grass? -> "), "%s", got);
    char *mpath = lc_test_path_in(a, "metrics.jsonl");
    char *metrics = lc_test_read_file(mpath, NULL);
    cr_expect(strstr(metrics, "{\"step\":4,\"tag\":\"samples/2\",\"text\":"), "%s", metrics);
    /* stop after step 2 (max_steps 2 of the same schedule is not the same run:
     * cut the run's checkpoint-2 instead) and resume to the end */
    lc_test_run_result r2 = train(CHAT_CFG, b, "max_steps=4", "eval_steps=2", "save_steps=2",
                                  "test_datasets=null", "sample_max_new_tokens=8", prompts, NULL);
    expect_ok(&r2, "second run");
    char *ck4 = lc_test_path_in(b, "checkpoint-4");
    lc_test_rm_rf(ck4);
    lc_test_run_result r3 = train(CHAT_CFG, b, "max_steps=4", "eval_steps=2", "save_steps=2",
                                  "test_datasets=null", "sample_max_new_tokens=8", prompts,
                                  "resume_from_checkpoint=auto", "overwrite_output_dir=false",
                                  NULL);
    expect_ok(&r3, "resumed run");
    char *resumed = sample_lines(r3.err);
    const char *at4 = strstr(got, "sample 1 at step 4");
    cr_assert(at4, "%s", got);
    cr_expect_str_eq(resumed, at4, "resumed samples differ:\n%s\nvs\n%s", resumed, at4);
    free(resumed), free(ck4), free(metrics), free(mpath), free(got);
    lc_test_run_free(&r), lc_test_run_free(&r2), lc_test_run_free(&r3);
    free(a), free(b);
    lc_test_rm_rf(tmp);
    free(tmp);
}

/* ---- a GGUF file alone: its tokenizer and chat template from the metadata --------------- */

/* The chat quickstart's model exported to GGUF (lorac export-gguf) carries its
 * vocabulary and template in tokenizer.ggml.* / tokenizer.chat_template; with
 * base_model: that file alone, `lorac preprocess` writes exactly the rows the
 * HF directory gives (byte-identical), and the tokenizer read back encodes
 * every training line as tokenizer.json's does. */
Test(text_data, gguf_file_alone, .timeout = 120)
{
    char *tmp = lc_test_tmpdir();
    char *gguf = lc_test_path_in(tmp, "chat.gguf");
    char *model = lc_test_asprintf("%s/configs/quickstart_chat/model", LORAC_SOURCE_DIR);
    lc_test_run_result e = lorac("export-gguf", "--base", model, "--out", gguf, NULL);
    expect_ok(&e, "export-gguf");
    char *rows_hf = lc_test_path_in(tmp, "hf.jsonl"), *rows_gg = lc_test_path_in(tmp, "gg.jsonl");
    char *base = lc_test_asprintf("base_model=%s", gguf);
    lc_test_run_result a = lorac("preprocess", CHAT_CFG, "--out", rows_hf, NULL);
    lc_test_run_result b = lorac("preprocess", CHAT_CFG, "--set", base, "--out", rows_gg, NULL);
    expect_ok(&a, "preprocess (HF directory)");
    expect_ok(&b, "preprocess (GGUF file)");
    cr_expect(lc_test_same_file(rows_hf, rows_gg), "rows from the GGUF file differ from the HF "
              "directory's:\n%s", b.err);
    /* the tokenizer itself, on every line of the training file, with and without specials */
    lc_tokenizer *hf, *gg;
    lc_error err = {{0}};
    cr_assert_eq(lc_tokenizer_load(&hf, model, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_gguf_tokenizer_load(&gg, gguf, &err), 0, "%s", err.msg);
    char *text = lc_test_read_file(LORAC_SOURCE_DIR "/configs/quickstart_chat/train.jsonl", NULL);
    int lines = 0, same = 0;
    for (char *l = text; l && *l; lines++) {
        char *nl = strchr(l, '\n');
        size_t n = nl ? (size_t)(nl - l) : strlen(l);
        for (int sp = 0; sp < 2; sp++) {
            lc_ids x = {0}, y = {0};
            cr_assert_eq(lc_tokenizer_encode(hf, l, n, sp, &x, &err), 0, "%s", err.msg);
            cr_assert_eq(lc_tokenizer_encode(gg, l, n, sp, &y, &err), 0, "%s", err.msg);
            same += x.n == y.n && (x.n == 0 || !memcmp(x.v, y.v, x.n * sizeof *x.v));
            lc_ids_free(&x), lc_ids_free(&y);
        }
        l = nl ? nl + 1 : NULL;
    }
    cr_expect_eq(same, 2 * lines, "%d of %d encodings equal", same, 2 * lines);
    cr_expect_eq(lc_tokenizer_eos(gg), lc_tokenizer_eos(hf));
    cr_log_info("GGUF tokenizer: %d/%d encodings of %d lines equal tokenizer.json's", same,
                2 * lines, lines);
    free(text);
    lc_tokenizer_free(hf), lc_tokenizer_free(gg);
    lc_test_run_free(&e), lc_test_run_free(&a), lc_test_run_free(&b);
    free(base), free(rows_hf), free(rows_gg), free(model), free(gguf);
    lc_test_rm_rf(tmp);
    free(tmp);
}

/* test_chat_repl.c — the `lorac chat` loop (train/chat_repl.c) and command
 * line (train/chat_cmd.c), driven with a fake generator that answers
 * "echo(N): TEXT" (N the number of messages it got, TEXT the last user
 * message) in 3-byte pieces and records the messages JSON of every turn:
 *
 *   pipe_conversation      two turns through a pipe: only the replies on out,
 *                          the system prompt and the history in the JSON.
 *   pipe_reset_system      /reset and /clear keep the system prompt; /system
 *                          TEXT sets it, /system alone removes it; both forget.
 *   pipe_multiline_escape  trailing-backslash continuation, CRLF, a last line
 *                          without '\n', a pending continuation at EOF; quotes,
 *                          backslashes, control bytes and UTF-8 come back exact
 *                          from the JSON (which holds no raw control byte).
 *   pipe_commands          /help, unknown /x and "/reset now" hints (not sent),
 *                          //x sends "/x", blank lines ignored, /bye stops.
 *   pipe_eof_errors        empty input: 0, no output; a backend error and a NUL
 *                          byte off a terminal: -1 with the message.
 *   cmd_*                  lc_chat_command: --help, bad usage (2), the options
 *                          handed to open, open failure (1), a session (0),
 *                          close called once.
 *   pty_session            a child runs the loop on a pseudo-terminal (its
 *                          controlling terminal): prompt, streamed answer,
 *                          Ctrl-C during a slow answer returns to the prompt
 *                          quickly and keeps the partial answer (marked
 *                          interrupted), Ctrl-C before any text drops the turn,
 *                          Ctrl-C at the prompt drops the typed line (also a
 *                          pending continuation), a backend error is printed
 *                          and the session goes on, Ctrl-D exits 0 with SIGINT's
 *                          disposition restored.
 * Every wait has a timeout (alarm in process, poll on the terminal). */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "train/chat_cmd.h"
#include "train/chat_repl.h"
#include "train/generate_chat.h"

/* ---- the fake generator ---- */

#define SLOW_PIECES 400 /* "tick " x 400 at 25 ms a piece: 10 s uncancelled */

typedef struct fake {
    char *seen[64]; /* messages JSON of each call (in process) */
    int n_seen;
    FILE *log;      /* the same, one per line (the pty child) */
    const char *fail_on;
} fake;

static void sleep_ms(int ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

static int fake_reply(void *ctx, const char *messages_json,
                      void (*on_text)(void *user, const char *piece, size_t n), void *user,
                      volatile sig_atomic_t *cancel, char **reply, lc_error *err)
{
    fake *f = ctx;
    if (f->n_seen < 64)
        f->seen[f->n_seen++] = strdup(messages_json);
    if (f->log) {
        fprintf(f->log, "%s\n", messages_json);
        fflush(f->log);
    }
    cJSON *m = cJSON_Parse(messages_json);
    if (!cJSON_IsArray(m))
        return lc_error_set(err, "fake: messages are not a JSON list");
    int n = cJSON_GetArraySize(m);
    cJSON *last = cJSON_GetArrayItem(m, n - 1);
    const char *content = cJSON_GetStringValue(cJSON_GetObjectItem(last, "content"));
    const char *role = cJSON_GetStringValue(cJSON_GetObjectItem(last, "role"));
    if (!content || !role || strcmp(role, "user") != 0) {
        cJSON_Delete(m);
        return lc_error_set(err, "fake: the last message is not from the user");
    }
    if (f->fail_on && strcmp(content, f->fail_on) == 0) {
        on_text(user, "partial", 7);
        lc_error_set(err, "fake failure on '%s'", content);
        cJSON_Delete(m);
        return -1;
    }
    char *text;
    int piece = 3, delay = 0;
    if (strcmp(content, "slow") == 0) {
        text = calloc(5 * SLOW_PIECES + 1, 1);
        for (int i = 0; i < SLOW_PIECES; i++)
            memcpy(text + 5 * i, "tick ", 5);
        piece = 5;
        delay = 25;
    } else if (strcmp(content, "sleepy") == 0) {
        text = strdup("");
        for (int i = 0; i < 1000 && !*cancel; i++) /* 10 s, nothing generated */
            sleep_ms(10);
    } else {
        text = lc_test_asprintf("echo(%d): %s", n, content);
    }
    cJSON_Delete(m);
    size_t len = strlen(text), done = 0;
    while (done < len && !*cancel) {
        size_t k = len - done < (size_t)piece ? len - done : (size_t)piece;
        on_text(user, text + done, k);
        done += k;
        if (delay)
            sleep_ms(delay);
    }
    text[done] = '\0';
    *reply = text;
    return 0;
}

static void fake_free(fake *f)
{
    for (int i = 0; i < f->n_seen; i++)
        free(f->seen[i]);
}

/* Asserts that messages JSON text holds exactly the (role, content) pairs of
 * want (NULL-terminated, role then content). */
static void expect_messages(const char *json, const char *const *want)
{
    cJSON *m = cJSON_Parse(json);
    cr_assert(cJSON_IsArray(m), "not a JSON list: %s", json);
    int n = 0;
    while (want[2 * n])
        n++;
    cr_assert_eq(cJSON_GetArraySize(m), n, "%d messages expected in %s", n, json);
    for (int i = 0; i < n; i++) {
        cJSON *it = cJSON_GetArrayItem(m, i);
        const char *role = cJSON_GetStringValue(cJSON_GetObjectItem(it, "role"));
        const char *content = cJSON_GetStringValue(cJSON_GetObjectItem(it, "content"));
        cr_assert(role && content, "message %d lacks role or content: %s", i, json);
        cr_expect_str_eq(role, want[2 * i], "message %d of %s", i, json);
        cr_expect_str_eq(content, want[2 * i + 1], "message %d of %s", i, json);
    }
    cJSON_Delete(m);
}
#define MSGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ---- driving the loop through a pipe ---- */

typedef struct pipe_run {
    int rc;
    char *out, *err;
    lc_error e;
} pipe_run;

static pipe_run run_pipe(fake *f, const char *script, size_t n, const char *system)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    cr_assert_lt(n, 60000); /* fits in the pipe: written before the loop reads */
    cr_assert_eq(write(p[1], script, n), (ssize_t)n);
    close(p[1]);
    FILE *in = fdopen(p[0], "r");
    pipe_run r = {0};
    size_t ol, el;
    FILE *out = open_memstream(&r.out, &ol), *errf = open_memstream(&r.err, &el);
    cr_assert(in && out && errf);
    lc_chat_backend b = {.ctx = f, .reply = fake_reply};
    alarm(20);
    r.rc = lc_chat_repl(&b, in, out, errf, system, &r.e);
    alarm(0);
    fclose(in);
    fclose(out);
    fclose(errf);
    return r;
}
#define RUN(f, script, system) run_pipe(f, script, sizeof script - 1, system)

static void pipe_run_free(pipe_run *r)
{
    free(r->out);
    free(r->err);
}

Test(chat_repl, pipe_conversation)
{
    fake f = {0};
    pipe_run r = RUN(&f, "hi\nhow are you?\n", "be brief");
    cr_assert_eq(r.rc, 0, "%s", r.e.msg);
    cr_expect_str_eq(r.out, "echo(2): hi\necho(4): how are you?\n");
    cr_expect_str_eq(r.err, "");
    cr_assert_eq(f.n_seen, 2);
    expect_messages(f.seen[0], MSGS("system", "be brief", "user", "hi"));
    expect_messages(f.seen[1], MSGS("system", "be brief", "user", "hi", "assistant",
                                    "echo(2): hi", "user", "how are you?"));
    pipe_run_free(&r);
    fake_free(&f);

    /* no system prompt: NULL and "" alike */
    fake g = {0};
    r = RUN(&g, "hi\n", "");
    cr_assert_eq(r.rc, 0);
    expect_messages(g.seen[0], MSGS("user", "hi"));
    pipe_run_free(&r);
    fake_free(&g);
}

Test(chat_repl, pipe_reset_system)
{
    fake f = {0};
    pipe_run r = RUN(&f, "a\n/reset\nb\n/clear\n/system be terse\nc\nd\n/system\ne\n", "S");
    cr_assert_eq(r.rc, 0, "%s", r.e.msg);
    cr_expect_str_eq(r.out, "echo(2): a\necho(2): b\necho(2): c\necho(4): d\necho(1): e\n");
    cr_expect_str_eq(r.err, "");
    cr_assert_eq(f.n_seen, 5);
    expect_messages(f.seen[0], MSGS("system", "S", "user", "a"));
    expect_messages(f.seen[1], MSGS("system", "S", "user", "b"));
    expect_messages(f.seen[2], MSGS("system", "be terse", "user", "c"));
    expect_messages(f.seen[3], MSGS("system", "be terse", "user", "c", "assistant",
                                    "echo(2): c", "user", "d"));
    expect_messages(f.seen[4], MSGS("user", "e"));
    pipe_run_free(&r);
    fake_free(&f);

    /* a multi-line system prompt */
    fake g = {0};
    r = RUN(&g, "/system line 1\\\nline 2\nq\n", NULL);
    cr_assert_eq(r.rc, 0);
    expect_messages(g.seen[0], MSGS("system", "line 1\nline 2", "user", "q"));
    pipe_run_free(&r);
    fake_free(&g);
}

Test(chat_repl, pipe_multiline_escape)
{
    fake f = {0};
    static const char script[] = "first\\\nsecond\\\nthird\n"
                                 "mid\\dle \"q\" \t\x01\x1f\x7f \xc3\xa9 \xe6\x97\xa5 </script> \\n\n"
                                 "crlf\r\n"
                                 "tail";
    pipe_run r = RUN(&f, script, NULL);
    cr_assert_eq(r.rc, 0, "%s", r.e.msg);
    cr_assert_eq(f.n_seen, 4);
    const char *odd = "mid\\dle \"q\" \t\x01\x1f\x7f \xc3\xa9 \xe6\x97\xa5 </script> \\n";
    expect_messages(f.seen[0], MSGS("user", "first\nsecond\nthird"));
    expect_messages(f.seen[1], MSGS("user", "first\nsecond\nthird", "assistant",
                                    "echo(1): first\nsecond\nthird", "user", odd));
    cr_expect(strstr(f.seen[2], "\"content\":\"crlf\""), "%s", f.seen[2]);
    cr_expect(strstr(f.seen[3], "\"content\":\"tail\""), "%s", f.seen[3]);
    for (int i = 0; i < f.n_seen; i++)
        for (const unsigned char *p = (const unsigned char *)f.seen[i]; *p; p++)
            cr_assert_geq(*p, 0x20, "raw control byte in %s", f.seen[i]);
    char *want = lc_test_asprintf("echo(1): first\nsecond\nthird\necho(3): %s\n", odd);
    cr_expect(strncmp(r.out, want, strlen(want)) == 0, "%s", r.out);
    free(want);
    pipe_run_free(&r);
    fake_free(&f);

    /* a continuation pending at end of input is sent without the join */
    fake g = {0};
    r = RUN(&g, "abc\\\ndef\\", NULL);
    cr_assert_eq(r.rc, 0);
    cr_assert_eq(g.n_seen, 1);
    expect_messages(g.seen[0], MSGS("user", "abc\ndef"));
    cr_expect_str_eq(r.out, "echo(1): abc\ndef\n");
    pipe_run_free(&r);
    fake_free(&g);
}

Test(chat_repl, pipe_commands)
{
    fake f = {0};
    pipe_run r = RUN(&f, "/help\n/nope\n/reset now\n//slash\n   \n\nhi\n/bye\nnot sent\n", NULL);
    cr_assert_eq(r.rc, 0, "%s", r.e.msg);
    cr_expect(strstr(r.out, "/system TEXT"), "%s", r.out);
    cr_expect(strstr(r.out, "/reset"), "%s", r.out);
    cr_expect(strstr(r.out, "echo(1): /slash\necho(3): hi\n"), "%s", r.out);
    cr_expect(strstr(r.err, "unknown command /nope: /help lists the commands"), "%s", r.err);
    cr_expect(strstr(r.err, "/reset takes no text"), "%s", r.err);
    int lines = 0;
    for (const char *p = r.err; *p; p++)
        lines += *p == '\n';
    cr_expect_eq(lines, 2, "one line per hint:\n%s", r.err);
    cr_assert_eq(f.n_seen, 2);
    expect_messages(f.seen[0], MSGS("user", "/slash"));
    expect_messages(f.seen[1], MSGS("user", "/slash", "assistant", "echo(1): /slash", "user",
                                    "hi"));
    pipe_run_free(&r);
    fake_free(&f);
}

Test(chat_repl, pipe_eof_errors)
{
    fake f = {0};
    pipe_run r = run_pipe(&f, "", 0, "sys");
    cr_assert_eq(r.rc, 0);
    cr_expect_str_eq(r.out, "");
    cr_expect_str_eq(r.err, "");
    cr_expect_eq(f.n_seen, 0);
    pipe_run_free(&r);
    fake_free(&f);

    fake g = {.fail_on = "boom"};
    r = RUN(&g, "hi\nboom\nafter\n", NULL);
    cr_assert_eq(r.rc, -1);
    lc_test_assert_msg_has(&r.e, "fake failure on 'boom'");
    cr_expect_str_eq(r.out, "echo(1): hi\npartial\n");
    cr_expect_eq(g.n_seen, 2, "the loop went on after a failure");
    pipe_run_free(&r);
    fake_free(&g);

    fake h = {0};
    r = RUN(&h, "ok\na\0b\nc\n", NULL);
    cr_assert_eq(r.rc, -1);
    lc_test_assert_msg_has(&r.e, "input line 2 holds a NUL byte");
    cr_expect_eq(h.n_seen, 1);
    pipe_run_free(&r);
    fake_free(&h);
}

/* ---- lc_chat_command ---- */

typedef struct fake_ops_state {
    lc_chat_opts opts;
    int opened, closed;
    bool fail_open;
    fake f;
} fake_ops_state;
static fake_ops_state g_ops;

static int fake_open(const lc_chat_opts *o, lc_chat_backend *b, FILE *log, lc_error *err)
{
    (void)log;
    g_ops.opts = *o;
    if (g_ops.fail_open)
        return lc_error_set(err, "%s: no config.json", o->model_dir);
    g_ops.opened++;
    b->ctx = &g_ops.f;
    b->reply = fake_reply;
    return 0;
}

static void fake_close(lc_chat_backend *b)
{
    cr_expect_eq(b->ctx, &g_ops.f);
    g_ops.closed++;
}

static const lc_chat_backend_ops FAKE_OPS = {fake_open, fake_close};

/* Runs lc_chat_command on argv (NULL-terminated) with input script. */
static pipe_run run_cmd(const char *const *argv, const char *script)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    int p[2];
    cr_assert_eq(pipe(p), 0);
    size_t n = strlen(script);
    cr_assert_eq(write(p[1], script, n), (ssize_t)n);
    close(p[1]);
    FILE *in = fdopen(p[0], "r");
    pipe_run r = {0};
    size_t ol, el;
    FILE *out = open_memstream(&r.out, &ol), *errf = open_memstream(&r.err, &el);
    alarm(20);
    r.rc = lc_chat_command(argc, (char **)argv, &FAKE_OPS, in, out, errf);
    alarm(0);
    fclose(in);
    fclose(out);
    fclose(errf);
    return r;
}

Test(chat_repl, cmd_help_and_usage)
{
    pipe_run r = run_cmd((const char *[]){"--model", "m", "--help", NULL}, "");
    cr_expect_eq(r.rc, 0);
    cr_expect(strstr(r.out, "usage: lorac chat --model DIR"), "%s", r.out);
    cr_expect_eq(g_ops.opened, 0);
    pipe_run_free(&r);

    static const struct {
        const char *argv[6];
        const char *msg;
    } bad[] = {
        {{NULL}, "missing --model DIR"},
        {{"--adapter", "a", NULL}, "missing --model DIR"},
        {{"--model", NULL}, "--model needs a value"},
        {{"--model", "m", "--foo", NULL}, "unexpected argument '--foo'"},
        {{"--model", "m", "extra", NULL}, "unexpected argument 'extra'"},
        {{"--model", "m", "--top-p", "0", NULL}, "--top-p: expected a number > 0"},
        {{"--model", "m", "--top-p=1.5", NULL}, "--top-p: expected a number > 0"},
        {{"--model", "m", "--temperature", "-1", NULL}, "--temperature: expected a number >= 0"},
        {{"--model", "m", "--temperature", "nan", NULL}, "--temperature"},
        {{"--model", "m", "--max-new-tokens", "0", NULL}, "--max-new-tokens: expected an integer"},
        {{"--model", "m", "--top-k", "-1", NULL}, "--top-k: expected an integer from 0"},
        {{"--model", "m", "--seed", "-3", NULL}, "--seed: expected an integer from 0"},
        {{"--model", "m", "--seed", "18446744073709551616", NULL}, "--seed"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = run_cmd(bad[i].argv, "");
        cr_expect_eq(r.rc, 2, "case %zu", i);
        cr_expect(strstr(r.err, bad[i].msg), "case %zu: '%s' not in:\n%s", i, bad[i].msg, r.err);
        cr_expect_str_eq(r.out, "");
        pipe_run_free(&r);
    }
    cr_expect_eq(g_ops.opened, 0);
}

Test(chat_repl, cmd_session)
{
    pipe_run r = run_cmd((const char *[]){"--model", "M", "--adapter=A", "--system", "sys",
                                          "--max-new-tokens", "64", "--temperature", "0",
                                          "--top-p", "0.9", "--top-k=40", "--seed",
                                          "18446744073709551615", NULL},
                         "hello\n");
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_expect_str_eq(r.out, "echo(2): hello\n");
    cr_expect_str_eq(r.err, "");
    lc_chat_opts *o = &g_ops.opts;
    cr_expect_str_eq(o->model_dir, "M");
    cr_expect_str_eq(o->adapter_dir, "A");
    cr_expect_str_eq(o->system_prompt, "sys");
    cr_expect_eq(o->max_new_tokens, 64);
    cr_expect_eq(o->temperature, 0.0);
    cr_expect_eq(o->top_p, 0.9);
    cr_expect_eq(o->top_k, 40);
    cr_expect(o->has_seed);
    cr_expect_eq(o->seed, UINT64_MAX);
    cr_expect_eq(g_ops.opened, 1);
    cr_expect_eq(g_ops.closed, 1);
    expect_messages(g_ops.f.seen[0], MSGS("system", "sys", "user", "hello"));
    pipe_run_free(&r);

    /* defaults: nothing given is -1 / no seed */
    r = run_cmd((const char *[]){"--model", "M", NULL}, "");
    cr_assert_eq(r.rc, 0);
    cr_expect_null(o->adapter_dir);
    cr_expect_null(o->system_prompt);
    cr_expect_eq(o->max_new_tokens, -1);
    cr_expect_eq(o->temperature, -1);
    cr_expect_eq(o->top_p, -1);
    cr_expect_eq(o->top_k, -1);
    cr_expect_not(o->has_seed);
    cr_expect_eq(g_ops.closed, 2);
    pipe_run_free(&r);

    /* a reply that fails off a terminal: exit 1, backend closed */
    g_ops.f.fail_on = "boom";
    r = run_cmd((const char *[]){"--model", "M", NULL}, "boom\n");
    cr_expect_eq(r.rc, 1);
    cr_expect(strstr(r.err, "lorac chat: fake failure on 'boom'\n"), "%s", r.err);
    cr_expect_eq(g_ops.closed, 3);
    pipe_run_free(&r);

    /* open fails: exit 1 with its message, no close */
    g_ops.fail_open = true;
    r = run_cmd((const char *[]){"--model", "nowhere", NULL}, "hi\n");
    cr_expect_eq(r.rc, 1);
    cr_expect_str_eq(r.err, "lorac chat: nowhere: no config.json\n");
    cr_expect_eq(g_ops.closed, 3);
    pipe_run_free(&r);
    fake_free(&g_ops.f);
}

/* ---- a pseudo-terminal ---- */

typedef struct term {
    int master;
    char buf[1 << 16]; /* everything read from the terminal, '\r' removed */
    size_t len, from;  /* from: where the next expect() starts looking */
} term;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Reads the terminal until sub appears after t->from (then from moves past
 * it); fails after timeout_s. */
static void expect(term *t, const char *sub, double timeout_s)
{
    double t0 = now_s();
    for (;;) {
        t->buf[t->len] = '\0';
        char *p = strstr(t->buf + t->from, sub);
        if (p) {
            t->from = (size_t)(p - t->buf) + strlen(sub);
            return;
        }
        double left = timeout_s - (now_s() - t0);
        cr_assert_gt(left, 0, "'%s' did not come within %.0f s; the terminal shows:\n%s", sub,
                     timeout_s, t->buf + t->from);
        struct pollfd pf = {.fd = t->master, .events = POLLIN};
        int k = poll(&pf, 1, (int)(left * 1000) + 1);
        if (k <= 0)
            continue;
        char chunk[4096];
        ssize_t n = read(t->master, chunk, sizeof chunk);
        cr_assert_gt(n, 0, "reading the terminal: %s", n < 0 ? strerror(errno) : "end");
        for (ssize_t i = 0; i < n; i++)
            if (chunk[i] != '\r' && t->len + 1 < sizeof t->buf)
                t->buf[t->len++] = chunk[i];
    }
}

static void type(term *t, const char *s)
{
    size_t n = strlen(s);
    cr_assert_eq(write(t->master, s, n), (ssize_t)n);
}

/* A new pseudo-terminal: the master in the returned term, the slave's path
 * in *slave, and the slave held open in *keep so that the master never reads
 * EIO before the child opens it. */
static term *term_open(char **slave, int *keep)
{
    term *t = calloc(1, sizeof *t);
    cr_assert_not_null(t);
    t->master = posix_openpt(O_RDWR | O_NOCTTY);
    cr_assert_geq(t->master, 0, "posix_openpt: %s", strerror(errno));
    cr_assert_eq(grantpt(t->master), 0);
    cr_assert_eq(unlockpt(t->master), 0);
    *slave = strdup(ptsname(t->master));
    *keep = open(*slave, O_RDWR | O_NOCTTY);
    cr_assert_geq(*keep, 0, "%s: %s", *slave, strerror(errno));
    fflush(NULL);
    return t;
}

/* Waits up to 20 s for pid after Ctrl-D (killed after that); its status. */
static int term_wait(term *t, pid_t pid)
{
    double d0 = now_s();
    int status = 0;
    pid_t w;
    while ((w = waitpid(pid, &status, WNOHANG)) == 0 && now_s() - d0 < 20)
        sleep_ms(10);
    if (w == 0)
        kill(pid, SIGKILL);
    cr_assert_eq(w, pid, "the child did not exit on Ctrl-D; the terminal shows:\n%s",
                 t->buf + t->from);
    return status;
}

/* The child: the loop on the terminal slave, its controlling terminal. */
/* In a child: a new session whose controlling terminal is slave, on stdin,
 * stdout and stderr (exits 10/11 when that fails); an alarm of `seconds`. */
static void become_terminal_child(const char *slave, unsigned seconds)
{
    alarm(seconds);
    if (setsid() < 0)
        _exit(10);
    int s = open(slave, O_RDWR);
    if (s < 0 || ioctl(s, TIOCSCTTY, 0) != 0)
        _exit(11);
    dup2(s, 0);
    dup2(s, 1);
    dup2(s, 2);
}

static void child(const char *slave, const char *log_path)
{
    become_terminal_child(slave, 60);
    FILE *in = fdopen(0, "r"), *out = fdopen(1, "w");
    FILE *log = fopen(log_path, "w");
    if (!in || !out || !log)
        _exit(12);
    struct sigaction before, after;
    sigaction(SIGINT, NULL, &before);
    fake f = {.log = log, .fail_on = "boom"};
    lc_chat_backend b = {.ctx = &f, .reply = fake_reply};
    lc_error err = {{0}};
    int rc = lc_chat_repl(&b, in, out, stderr, "be brief", &err);
    sigaction(SIGINT, NULL, &after);
    fflush(out);
    fclose(log);
    if (rc)
        fprintf(stderr, "child: %s\n", err.msg);
    _exit(rc ? 1 : after.sa_handler != before.sa_handler ? 3 : 0);
}

/* The JSON list of the child's call i (0-based) from its log. */
static cJSON *logged_call(const char *log, int i)
{
    const char *p = log;
    for (int k = 0; k < i; k++) {
        p = strchr(p, '\n');
        cr_assert(p, "call %d not in the log:\n%s", i, log);
        p++;
    }
    const char *e = strchr(p, '\n');
    cr_assert(e, "call %d not in the log:\n%s", i, log);
    char *line = strndup(p, (size_t)(e - p));
    cJSON *m = cJSON_Parse(line);
    cr_assert(cJSON_IsArray(m), "%s", line);
    free(line);
    return m;
}

Test(chat_repl, pty_session)
{
    alarm(90);
    char *tmp = lc_test_tmpdir();
    char *log_path = lc_test_path_in(tmp, "calls.jsonl");
    char *slave;
    int keep;
    term *t = term_open(&slave, &keep);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0)
        child(slave, log_path);

    expect(t, "/help lists the commands", 20);
    expect(t, "> ", 20);
    type(t, "hello\n");
    expect(t, "echo(2): hello\n", 20);
    expect(t, "> ", 20);

    /* Ctrl-C during a slow answer: back at the prompt long before its 10 s */
    type(t, "slow\n");
    expect(t, "tick tick tick ", 20);
    double t0 = now_s();
    type(t, "\x03");
    expect(t, "[interrupted]\n", 20);
    expect(t, "> ", 20);
    double took = now_s() - t0;
    cr_log_info("Ctrl-C to the prompt: %.3f s", took);
    cr_expect_lt(took, 3.0, "Ctrl-C took %.3f s to stop the answer", took);
    type(t, "after\n");
    expect(t, "echo(6): after\n", 20); /* system, hello, reply, slow, partial, after */

    /* Ctrl-C at the prompt drops what was typed */
    expect(t, "> ", 20);
    type(t, "abc");
    type(t, "\x03");
    expect(t, "(Ctrl-D or /bye ends the session)\n", 20);
    expect(t, "> ", 20);
    type(t, "next\n");
    expect(t, "echo(8): next\n", 20);

    /* ... and a pending continuation */
    expect(t, "> ", 20);
    type(t, "one\\\n");
    expect(t, "... ", 20);
    type(t, "\x03");
    expect(t, "(Ctrl-D or /bye ends the session)\n", 20);
    expect(t, "> ", 20);
    type(t, "two\n");
    expect(t, "echo(10): two\n", 20);

    /* Ctrl-C before the first piece: the question is dropped */
    expect(t, "> ", 20);
    type(t, "sleepy\n");
    int code = -1;
    cr_assert(lc_test_wait_for_text(log_path, "\"content\":\"sleepy\"", pid, 20, &code),
              "the child exited (%d)", code);
    type(t, "\x03");
    expect(t, "[interrupted]\n", 20);
    expect(t, "> ", 20);
    type(t, "last\n");
    expect(t, "echo(12): last\n", 20);

    /* a backend error on a terminal: printed, the question dropped, go on */
    expect(t, "> ", 20);
    type(t, "boom\n");
    expect(t, "partial\nerror: fake failure on 'boom'\n", 20);
    expect(t, "> ", 20);
    type(t, "final\n");
    expect(t, "echo(14): final\n", 20);

    /* Ctrl-D: exit 0, SIGINT's disposition as it was */
    expect(t, "> ", 20);
    type(t, "\x04");
    int status = term_wait(t, pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "child status %d (1: loop error, 3: SIGINT not restored)", status);

    cr_log_info("the terminal (\\r removed):\n%s", t->buf);

    /* the history the backend saw */
    char *log = lc_test_read_file(log_path, NULL);
    cJSON *m = logged_call(log, 2); /* "after" */
    cr_assert_eq(cJSON_GetArraySize(m), 6, "%s", log);
    cJSON *partial = cJSON_GetArrayItem(m, 4);
    const char *pc = cJSON_GetStringValue(cJSON_GetObjectItem(partial, "content"));
    cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(partial, "role")), "assistant");
    cr_assert(pc && strncmp(pc, "tick tick tick ", 15) == 0, "partial answer: %s", pc);
    cr_expect_lt(strlen(pc), 5 * SLOW_PIECES, "the whole answer was kept");
    cr_expect(cJSON_IsTrue(cJSON_GetObjectItem(partial, "interrupted")));
    cr_expect_null(cJSON_GetObjectItem(cJSON_GetArrayItem(m, 2), "interrupted"));
    cr_expect_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(m, 3),
                                                              "content")), "slow");
    cJSON_Delete(m);
    m = logged_call(log, 3); /* "next": "abc" was dropped */
    cr_expect_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(m, 7),
                                                              "content")), "next");
    cJSON_Delete(m);
    m = logged_call(log, 4); /* "two": "one" was dropped */
    cr_expect_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(m, 9),
                                                              "content")), "two");
    cJSON_Delete(m);
    m = logged_call(log, 6); /* "last": no trace of "sleepy" */
    cr_assert_eq(cJSON_GetArraySize(m), 12, "%s", log);
    char *text = cJSON_PrintUnformatted(m);
    cr_expect_null(strstr(text, "sleepy"), "%s", text);
    free(text);
    cJSON_Delete(m);
    free(log);
    close(keep);
    close(t->master);
    free(t);
    free(slave);
    lc_test_rm_rf(tmp);
    free(tmp);
    free(log_path);
    alarm(0);
}

/* ---- the real generator behind `lorac chat` ---- */

static void collect(void *user, const char *piece, size_t n)
{
    size_t *total = user;
    *total += n;
    (void)piece;
}

/* lc_generate_chat_ops on the chat quickstart's model: a reply is streamed in
 * pieces that add up to it, the same conversation gives the same (greedy)
 * reply, and a cancel flag already set stops it before any text. */
Test(chat_repl, real_backend_streams_and_cancels, .timeout = 120)
{
    lc_chat_opts o = {.model_dir = LORAC_SOURCE_DIR "/configs/quickstart_chat/model",
                      .max_new_tokens = 24, .temperature = -1, .top_p = -1, .top_k = -1};
    lc_chat_backend b;
    lc_error err = {{0}};
    FILE *devnull = fopen("/dev/null", "w");
    cr_assert_eq(lc_generate_chat_ops.open(&o, &b, devnull, &err), 0, "%s", err.msg);
    const char *conv = "[{\"role\": \"user\", \"content\": \"What is 2 + 3?\"}]";
    volatile sig_atomic_t cancel = 0;
    size_t streamed = 0;
    char *r1 = NULL, *r2 = NULL, *r3 = NULL;
    cr_assert_eq(b.reply(b.ctx, conv, collect, &streamed, &cancel, &r1, &err), 0, "%s", err.msg);
    cr_expect_gt(strlen(r1), 0);
    cr_expect_eq(streamed, strlen(r1), "streamed %zu bytes of a %zu-byte reply", streamed,
                 strlen(r1));
    cr_assert_eq(b.reply(b.ctx, conv, collect, &streamed, &cancel, &r2, &err), 0, "%s", err.msg);
    cr_expect_str_eq(r1, r2, "greedy replies differ");
    cancel = 1;
    streamed = 0;
    cr_assert_eq(b.reply(b.ctx, conv, collect, &streamed, &cancel, &r3, &err), 0, "%s", err.msg);
    cr_expect_str_eq(r3, "", "a cancelled reply has no text");
    cr_expect_eq(streamed, 0);
    free(r1), free(r2), free(r3);
    lc_generate_chat_ops.close(&b);
    fclose(devnull);
}

/* The child of binary_pty_session: `lorac chat` itself on the terminal. */
static void exec_chat(const char *slave, const char *model)
{
    become_terminal_child(slave, 120);
    setenv("GOMP_SPINCOUNT", "10000", 1);
    execl(LORAC_BINARY, LORAC_BINARY, "chat", "--model", model, "--temperature", "1",
          "--seed", "3", "--max-new-tokens", "600", (char *)NULL);
    _exit(12);
}

/* `lorac chat` on a pseudo-terminal with the chat quickstart's random base
 * model, sampling at temperature 1 with seed 3 — an answer `lorac generate`
 * shows to run 600 tokens without an end: a question, Ctrl-C during its
 * answer (back at the prompt, marked), /reset, the same question (the same
 * answer starts again: the draws restart with each reply), Ctrl-C, Ctrl-D. */
Test(chat_repl, binary_pty_session, .timeout = 180)
{
    char *model = strdup(LORAC_SOURCE_DIR "/configs/quickstart_chat/model");
    char *tmp = lc_test_tmpdir();
    char *msgs = lc_test_write_text(tmp, "m.json",
                                    "[{\"role\": \"user\", \"content\": \"What is 2 + 3?\"}]");
    const char *gen[] = {"generate", "--model", model, "--messages", msgs, "--temperature", "1",
                         "--seed", "3", "--max-new-tokens", "600", "--json", NULL};
    lc_test_run_result g = lc_test_run_lorac(NULL, gen);
    cr_assert_eq(g.code, 0, "%s", g.err);
    cJSON *j = cJSON_Parse(g.out);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "ids")), 600,
                 "the answer is not long enough to interrupt: %s", g.out);
    char first[9];
    snprintf(first, sizeof first, "%s", cJSON_GetObjectItem(j, "text")->valuestring);
    cJSON_Delete(j);

    char *slave;
    int keep;
    term *t = term_open(&slave, &keep);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0)
        exec_chat(slave, model);
    for (int round = 0; round < 2; round++) {
        expect(t, "> ", 60);
        type(t, "What is 2 + 3?\n");
        expect(t, first, 60);
        type(t, "\x03");
        expect(t, "[interrupted]\n", 20);
        expect(t, "> ", 20);
        if (round == 0) {
            type(t, "/reset\n");
            expect(t, "(conversation cleared)\n", 20);
        }
    }
    type(t, "\x04");
    int status = term_wait(t, pid);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status %d:\n%s", status,
              t->buf);
    cr_log_info("the terminal:\n%s", t->buf);
    close(keep);
    close(t->master);
    free(t), free(slave), free(msgs), free(model);
    lc_test_run_free(&g);
    lc_test_rm_rf(tmp);
    free(tmp);
}

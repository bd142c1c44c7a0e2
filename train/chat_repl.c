/* chat_repl.c — the interactive loop of `lorac chat`: reads messages, keeps the
 * conversation, streams the backend's replies, handles the /commands and
 * Ctrl-C. Behaviour: chat_repl.h. */
#include "train/chat_repl.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/chat_input.h"

/* Set by the SIGINT handler (terminal mode); the backend's cancel flag. The
 * handler also writes a byte to the self-pipe g_wake[1], which wakes the
 * input's poll whichever thread ran the handler (chat_input.h). */
static volatile sig_atomic_t g_sigint;
static int g_wake[2] = {-1, -1};

static void on_sigint(int sig)
{
    (void)sig;
    int e = errno;
    g_sigint = 1;
    if (g_wake[1] >= 0 && write(g_wake[1], "", 1) < 0) {
        /* the pipe is full: a wake-up is pending anyway */
    }
    errno = e;
}

typedef struct repl {
    const lc_chat_backend *b;
    FILE *out, *err_out;
    lc_chat_input in;
    bool tty;
    cJSON *history;           /* user and assistant turns, oldest first */
    char *system;             /* NULL: none */
    char *streamed;           /* the pieces of the reply being generated */
    size_t streamed_len, streamed_cap;
    bool streamed_oom;
} repl;

static const char HELP[] =
    "commands:\n"
    "  /help          this list\n"
    "  /reset         forget the conversation (the system prompt stays); also /clear\n"
    "  /system TEXT   set the system prompt (no TEXT: none) and forget the conversation\n"
    "  /bye           end the session; also /exit, or Ctrl-D\n"
    "  //TEXT         send a message that starts with '/'\n"
    "a line ending in '\\' continues the message on the next line;\n"
    "Ctrl-C stops an answer (the partial answer stays in the conversation)\n";

static void on_text(void *user, const char *piece, size_t n)
{
    repl *r = user;
    if (n == 0)
        return;
    fwrite(piece, 1, n, r->out);
    fflush(r->out);
    if (r->streamed_len + n + 1 > r->streamed_cap) {
        size_t cap = r->streamed_cap ? r->streamed_cap : 256;
        while (cap < r->streamed_len + n + 1)
            cap *= 2;
        char *p = realloc(r->streamed, cap);
        if (!p) {
            r->streamed_oom = true;
            return;
        }
        r->streamed = p;
        r->streamed_cap = cap;
    }
    memcpy(r->streamed + r->streamed_len, piece, n);
    r->streamed_len += n;
    r->streamed[r->streamed_len] = '\0';
}

static cJSON *turn(const char *role, const char *content)
{
    cJSON *m = cJSON_CreateObject();
    if (m && (!cJSON_AddStringToObject(m, "role", role) ||
              !cJSON_AddStringToObject(m, "content", content))) {
        cJSON_Delete(m);
        return NULL;
    }
    return m;
}

/* The messages sent for the user message content (malloc'd JSON text). */
static char *messages_json(const repl *r, const char *content)
{
    cJSON *list = cJSON_Duplicate(r->history, 1);
    if (!list)
        return NULL;
    if (r->system && r->system[0]) {
        cJSON *s = turn("system", r->system);
        if (!s || !cJSON_InsertItemInArray(list, 0, s)) {
            cJSON_Delete(s);
            cJSON_Delete(list);
            return NULL;
        }
    }
    cJSON *u = turn("user", content);
    if (!u || !cJSON_AddItemToArray(list, u)) {
        cJSON_Delete(u);
        cJSON_Delete(list);
        return NULL;
    }
    char *text = cJSON_PrintUnformatted(list);
    cJSON_Delete(list);
    return text;
}

/* Appends the user turn and the assistant's reply to the history. */
static int remember(repl *r, const char *content, const char *reply, bool interrupted)
{
    cJSON *u = turn("user", content), *a = turn("assistant", reply);
    if (!u || !a || (interrupted && !cJSON_AddTrueToObject(a, "interrupted"))) {
        cJSON_Delete(u);
        cJSON_Delete(a);
        return -1;
    }
    cJSON_AddItemToArray(r->history, u);
    cJSON_AddItemToArray(r->history, a);
    return 0;
}

/* Sends content with the conversation and streams the reply. 0, or -1 with
 * err set (a backend error off a terminal, out of memory). */
static int send_message(repl *r, const char *content, lc_error *err)
{
    char *json = messages_json(r, content);
    if (!json)
        return lc_error_set(err, "out of memory");
    r->streamed_len = 0;
    r->streamed_oom = false;
    if (r->streamed)
        r->streamed[0] = '\0';
    static volatile sig_atomic_t never; /* off a terminal nothing cancels */
    volatile sig_atomic_t *cancel = r->tty ? &g_sigint : &never;
    *cancel = 0;
    char *reply = NULL;
    lc_error berr = {{0}};
    int rc = r->b->reply(r->b->ctx, json, on_text, r, cancel, &reply, &berr);
    bool interrupted = rc == 0 && *cancel != 0;
    *cancel = 0;
    if (r->tty)
        lc_chat_input_clear_interrupt(&r->in); /* a Ctrl-C for the reply, not the prompt */
    free(json);
    bool ends_nl = r->streamed_len && r->streamed[r->streamed_len - 1] == '\n';
    if (r->streamed_len && !ends_nl && (rc != 0 || r->tty))
        fputc('\n', r->out);
    if (rc != 0) {
        fflush(r->out);
        if (!r->tty)
            return lc_error_set(err, "%s", berr.msg);
        fprintf(r->err_out, "error: %s\n", berr.msg);
        fflush(r->err_out);
        return 0;
    }
    if (r->streamed_oom && !reply)
        return lc_error_set(err, "out of memory");
    const char *text = reply ? reply : r->streamed ? r->streamed : "";
    if (interrupted)
        fputs("[interrupted]\n", r->out); /* a terminal: the reply's line is ended */
    fputc('\n', r->out); /* after the reply; on a terminal also a blank line */
    fflush(r->out);
    int k = 0;
    if (!interrupted || text[0])
        k = remember(r, content, text, interrupted);
    free(reply);
    return k ? lc_error_set(err, "out of memory") : 0;
}

static void clear_history(repl *r)
{
    cJSON *item;
    while ((item = cJSON_DetachItemFromArray(r->history, 0)) != NULL)
        cJSON_Delete(item);
}

static bool blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
            return false;
    return true;
}

/* Runs one message or command. 0 go on, 1 end the session, -1 error. */
static int handle(repl *r, const char *msg, lc_error *err)
{
    if (blank(msg))
        return 0;
    if (msg[0] != '/' || msg[1] == '/')
        return send_message(r, msg + (msg[0] == '/'), err);
    size_t w = strcspn(msg, " \t\n");
    const char *arg = msg + w + strspn(msg + w, " \t\n");
    bool no_arg = arg[0] == '\0';
#define IS(name) (w == strlen(name) && strncmp(msg, name, w) == 0)
    if ((IS("/help") || IS("/?")) && no_arg) {
        fputs(HELP, r->out);
    } else if ((IS("/reset") || IS("/clear")) && no_arg) {
        clear_history(r);
        if (r->tty)
            fputs("(conversation cleared)\n", r->out);
    } else if (IS("/system")) {
        char *s = NULL;
        if (!no_arg && !(s = strdup(arg)))
            return lc_error_set(err, "out of memory");
        free(r->system);
        r->system = s;
        clear_history(r);
        if (r->tty)
            fputs(s ? "(system prompt set; conversation cleared)\n"
                    : "(no system prompt; conversation cleared)\n", r->out);
    } else if ((IS("/bye") || IS("/exit")) && no_arg) {
        return 1;
    } else {
        char word[64];
        char *cmd = strndup(msg, w);
        if (!cmd)
            return lc_error_set(err, "out of memory");
        lc_printable(cmd, word, sizeof word);
        free(cmd);
        if (IS("/help") || IS("/?") || IS("/reset") || IS("/clear") || IS("/bye") ||
            IS("/exit"))
            fprintf(r->err_out, "%s takes no text (/help lists the commands)\n", word);
        else
            fprintf(r->err_out, "unknown command %s: /help lists the commands; start a "
                    "message with // to send it as it is\n", word);
        fflush(r->err_out);
    }
#undef IS
    fflush(r->out);
    return 0;
}

static void close_wake(void)
{
    for (int i = 0; i < 2; i++) {
        if (g_wake[i] >= 0)
            close(g_wake[i]);
        g_wake[i] = -1;
    }
}

/* A growable message (lines joined by '\n'). */
typedef struct msgbuf {
    char *s;
    size_t len, cap;
} msgbuf;

static int msg_add(msgbuf *m, const char *p, size_t n)
{
    if (m->len + n + 1 > m->cap) {
        size_t cap = m->cap ? m->cap : 256;
        while (cap < m->len + n + 1)
            cap *= 2;
        char *q = realloc(m->s, cap);
        if (!q)
            return -1;
        m->s = q;
        m->cap = cap;
    }
    memcpy(m->s + m->len, p, n);
    m->len += n;
    m->s[m->len] = '\0';
    return 0;
}

int lc_chat_repl(const lc_chat_backend *b, FILE *in, FILE *out, FILE *err_out,
                 const char *system_prompt, lc_error *err)
{
    repl r = {.b = b, .out = out, .err_out = err_out};
    int fd = fileno(in);
    r.tty = fd >= 0 && isatty(fd);
    if (r.tty) {
        if (pipe2(g_wake, O_CLOEXEC | O_NONBLOCK) != 0)
            return lc_error_set(err, "pipe: %s", strerror(errno));
    }
    lc_chat_input_init(&r.in, in, &g_sigint, g_wake[0]);
    r.history = cJSON_CreateArray();
    if (system_prompt && system_prompt[0])
        r.system = strdup(system_prompt);
    if (!r.history || (system_prompt && system_prompt[0] && !r.system)) {
        cJSON_Delete(r.history);
        free(r.system);
        close_wake();
        return lc_error_set(err, "out of memory");
    }
    struct sigaction old_sa, sa;
    if (r.tty) {
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_sigint;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART; /* writes go on; ppoll is never restarted */
        g_sigint = 0;
        sigaction(SIGINT, &sa, &old_sa);
        fputs("lorac chat: /help lists the commands; Ctrl-C stops an answer; Ctrl-D "
              "exits\n", out);
    }
    msgbuf m = {0};
    bool continuing = false;
    long line_no = 0;
    int rc = 0;
    for (;;) {
        if (r.tty) {
            fputs(continuing ? "... " : "> ", out);
            fflush(out);
        }
        int k = lc_chat_input_line(&r.in);
        if (k == LC_CHAT_INPUT_INTERRUPTED) {
            m.len = 0;
            continuing = false;
            fputs("\n(Ctrl-D or /bye ends the session)\n", out);
            continue;
        }
        if (k == LC_CHAT_INPUT_ERROR) {
            rc = lc_error_set(err, "reading the input failed: %s", strerror(errno));
            break;
        }
        if (k == LC_CHAT_INPUT_EOF) {
            if (r.tty)
                fputc('\n', out); /* the shell's prompt on a line of its own */
            if (continuing && m.len) {
                m.s[--m.len] = '\0'; /* the '\n' added for the line that never came */
                rc = handle(&r, m.s, err) < 0 ? -1 : 0;
            }
            break;
        }
        line_no++;
        const char *line = r.in.line;
        size_t len = r.in.line_len;
        if (memchr(line, '\0', len)) {
            if (!r.tty) {
                rc = lc_error_set(err, "input line %ld holds a NUL byte", line_no);
                break;
            }
            fputs("the message holds a NUL byte: not sent\n", err_out);
            m.len = 0;
            continuing = false;
            continue;
        }
        bool more = len && line[len - 1] == '\\';
        if (msg_add(&m, line, len - more) || (more && msg_add(&m, "\n", 1))) {
            rc = lc_error_set(err, "out of memory");
            break;
        }
        continuing = more;
        if (more)
            continue;
        k = handle(&r, m.s, err);
        m.len = 0;
        if (k) {
            rc = k < 0 ? -1 : 0;
            break;
        }
        if (ferror(out))
            break;
    }
    if (rc == 0 && (fflush(out) != 0 || ferror(out)))
        rc = lc_error_set(err, "writing the output failed: %s", strerror(errno));
    if (r.tty)
        sigaction(SIGINT, &old_sa, NULL);
    close_wake();
    free(m.s);
    free(r.streamed);
    free(r.system);
    cJSON_Delete(r.history);
    lc_chat_input_free(&r.in);
    return rc;
}

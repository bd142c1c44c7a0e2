/* chat_repl.h — the interactive loop of `lorac chat`, written against a small
 * generation interface (lc_chat_backend) so that any generator can be plugged
 * in: the real one (KV-cache decoding, sampler, chat template) or a fake one
 * in tests (tests/test_chat_repl.c).
 *
 * What the loop does:
 *   - On a terminal (in is a tty): prints a one-line banner and the prompt
 *     "> " ("... " for the continuation lines of a multi-line message) on out.
 *     Otherwise (a pipe, a file: `echo hi | lorac chat ...`): no banner, no
 *     prompt; each line is a message and each reply is printed on out
 *     followed by one '\n', so the output is the replies and nothing else.
 *   - A line ending in '\' continues the message on the next line (the
 *     backslash is removed, a '\n' joins the lines). Empty (or all-blank)
 *     messages are ignored.
 *   - Each message is sent with the whole conversation: the system prompt
 *     (when not empty), then every earlier user and assistant turn, then the
 *     new user message, as the JSON text of a list of {"role", "content"}
 *     (built with cJSON: any byte sequence is escaped correctly). The reply is
 *     streamed to out as it comes, then both turns join the history.
 *   - Commands (a message whose first character is '/'):
 *       /help             lists the commands (on out)
 *       /reset, /clear    forgets the conversation (the system prompt stays)
 *       /system TEXT      sets the system prompt (none when TEXT is empty) and
 *                         forgets the conversation
 *       /bye, /exit       ends the session (exit status 0)
 *       //TEXT            sends the message "/TEXT"
 *     Any other "/x" prints a one-line hint on err_out and is not sent.
 *   - Ctrl-C (terminal mode only; SIGINT's disposition is left alone
 *     otherwise, so a script is stopped as usual):
 *       during a reply: stops it (the backend sees *cancel != 0 between two
 *         tokens), prints " [interrupted]" and returns to the prompt. The
 *         partial reply stays in the history as the assistant turn, its text
 *         unchanged (the model sees what it said, as Ollama keeps it) and
 *         marked with an extra key, {"role": "assistant", "content": "...",
 *         "interrupted": true}, which chat templates ignore. When nothing had
 *         been generated yet, the question is dropped from the history too.
 *       at the prompt: drops what was typed (also the earlier lines of a
 *         multi-line message) and prints a hint; it never exits, so a stray
 *         Ctrl-C cannot lose a conversation: Ctrl-D (end of input), /bye or
 *         /exit end it.
 *     The SIGINT handler (it sets the flag handed to the backend as cancel,
 *     and wakes the input through a self-pipe) is installed when the loop
 *     starts and the previous disposition restored when it returns. One loop
 *     per process at a time (the flag is process-wide). A Ctrl-C that comes
 *     just as a reply ends may mark a complete reply interrupted.
 *   - A backend error: on a terminal, the message is printed on err_out, the
 *     question is dropped from the history and the loop goes on; otherwise
 *     the loop stops and returns -1 with the backend's error (a script must
 *     see the failure in the exit status).
 *   - End of input (Ctrl-D on an empty line, end of the pipe): returns 0. A
 *     pending message (a last line without '\n', or a multi-line message
 *     whose last line ended in '\') is sent first. */
#ifndef LC_CHAT_REPL_H
#define LC_CHAT_REPL_H

#include <signal.h>
#include <stddef.h>
#include <stdio.h>

#include "autograd/error.h"

typedef struct lc_chat_backend {
    void *ctx;
    /* Generates the assistant reply to the conversation messages_json (JSON
     * text of a list of {"role","content"} objects; an assistant message may
     * also hold "interrupted": true, which a chat template ignores), calling
     * on_text(user, piece, n) for each decoded piece as it comes (n bytes, not
     * NUL-terminated; pieces may split a UTF-8 character). Stops early when
     * *cancel becomes nonzero (checked between tokens): that is not an error,
     * it returns 0 with the text generated so far. Returns 0 ok (the full
     * reply in *reply, malloc'd, NUL-terminated; the caller frees it), -1
     * error (err set; *reply untouched). */
    int (*reply)(void *ctx, const char *messages_json,
                 void (*on_text)(void *user, const char *piece, size_t n), void *user,
                 volatile sig_atomic_t *cancel, char **reply, lc_error *err);
} lc_chat_backend;

/* Runs the conversation (see the top of this file) until end of input or
 * /bye. system_prompt may be NULL or "" (none). Returns 0, or -1 with err set:
 * reading in failed, writing out failed, out of memory, an input line holds a
 * NUL byte (not on a terminal), or a backend error (not on a terminal). */
int lc_chat_repl(const lc_chat_backend *b, FILE *in, FILE *out, FILE *err_out,
                 const char *system_prompt, lc_error *err);

#endif

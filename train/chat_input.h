/* chat_input.h — line input for lorac chat (train/chat_repl.c), without readline.
 *
 * Two ways of reading, chosen by lc_chat_input_init:
 *   - a terminal (isatty(fileno(in))): poll(2) on the descriptor and on the
 *     read end of the caller's self-pipe (its SIGINT handler sets *interrupt
 *     and writes a byte there), then read(2). A Ctrl-C typed at the prompt is
 *     seen whenever it comes (before the wait, during it) and whichever thread
 *     of the process runs the handler (a generator's OpenMP workers may be the
 *     ones that get SIGINT). The window left: a Ctrl-C between poll saying the
 *     terminal is readable and the read, which the terminal answers by
 *     flushing the line; that read then waits for the next line, and the
 *     interrupt is reported on the call after. The terminal's own line editing
 *     (canonical mode: backspace, Ctrl-U, Ctrl-W) is used as it is: no raw
 *     mode, no history, no arrow keys. The descriptor is read directly:
 *     nothing may have been read through the FILE before.
 *   - anything else (a pipe, a file): getc(3) on the FILE, so data the FILE
 *     already buffered is never lost; signals are not involved.
 * Lines are returned without their '\n' and without one trailing '\r' (input
 * written on Windows). A last line without '\n' is a line. */
#ifndef LC_CHAT_INPUT_H
#define LC_CHAT_INPUT_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct lc_chat_input {
    FILE *in;
    int fd;                               /* terminal mode: fileno(in); else -1 */
    volatile sig_atomic_t *interrupt;     /* set by the caller's SIGINT handler */
    int wake_fd;                          /* read end of its self-pipe (O_NONBLOCK), or -1 */
    char buf[4096];                       /* terminal mode: bytes read, not yet returned */
    size_t pos, len;
    bool eof;
    char *line;                           /* the last line returned (owned, grows) */
    size_t line_len, line_cap;
} lc_chat_input;

/* Reads from in. interrupt (may be NULL off a terminal) is the flag a SIGINT
 * handler sets, wake_fd (-1: none) the non-blocking read end of the pipe it
 * writes a byte to. Terminal mode when in is a terminal. */
void lc_chat_input_init(lc_chat_input *r, FILE *in, volatile sig_atomic_t *interrupt,
                        int wake_fd);
/* Forgets an interrupt that came while no line was being read (during a
 * reply): resets *interrupt and drains wake_fd. */
void lc_chat_input_clear_interrupt(lc_chat_input *r);
void lc_chat_input_free(lc_chat_input *r);

enum {
    LC_CHAT_INPUT_LINE = 1,        /* r->line (NUL-terminated), r->line_len bytes */
    LC_CHAT_INPUT_EOF = 0,         /* end of input, nothing pending */
    LC_CHAT_INPUT_INTERRUPTED = 2, /* terminal mode: *interrupt was set (Ctrl-C); the
                                      partial line is dropped (the terminal flushed it
                                      too) and *interrupt is reset to 0 */
    LC_CHAT_INPUT_ERROR = -1       /* read error or out of memory (errno says which) */
};
/* The next line. A line may hold NUL bytes: r->line_len counts them. */
int lc_chat_input_line(lc_chat_input *r);

#endif

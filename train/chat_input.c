/* chat_input.c — line input for lorac chat: terminal mode (poll on the terminal
 * and a self-pipe, then read: Ctrl-C seen at the prompt) and stream mode
 * (getc). See chat_input.h. */
#include "train/chat_input.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void lc_chat_input_init(lc_chat_input *r, FILE *in, volatile sig_atomic_t *interrupt,
                        int wake_fd)
{
    memset(r, 0, sizeof *r);
    r->in = in;
    int fd = fileno(in);
    r->fd = fd >= 0 && isatty(fd) ? fd : -1;
    r->interrupt = interrupt;
    r->wake_fd = wake_fd;
}

static void drain(int fd)
{
    char sink[64];
    if (fd >= 0)
        while (read(fd, sink, sizeof sink) > 0) {
        }
}

void lc_chat_input_clear_interrupt(lc_chat_input *r)
{
    if (r->interrupt)
        *r->interrupt = 0; /* first: a Ctrl-C after this leaves a byte in the pipe */
    drain(r->wake_fd);
}

void lc_chat_input_free(lc_chat_input *r)
{
    free(r->line);
    r->line = NULL;
    r->line_len = r->line_cap = 0;
}

static int append(lc_chat_input *r, char c)
{
    if (r->line_len + 2 > r->line_cap) {
        size_t cap = r->line_cap ? 2 * r->line_cap : 256;
        char *p = realloc(r->line, cap);
        if (!p) {
            errno = ENOMEM;
            return -1;
        }
        r->line = p;
        r->line_cap = cap;
    }
    r->line[r->line_len++] = c;
    return 0;
}

/* Terminal mode: refills r->buf. 1 bytes read, 0 end of input, 2 interrupted,
 * -1 error. The flag is checked before each wait; a SIGINT after the check
 * leaves a byte in the self-pipe, which ends the wait. */
static int fill_tty(lc_chat_input *r)
{
    for (;;) {
        if (r->interrupt && *r->interrupt) {
            lc_chat_input_clear_interrupt(r);
            return 2;
        }
        struct pollfd p[2] = {{.fd = r->fd, .events = POLLIN},
                              {.fd = r->wake_fd, .events = POLLIN}};
        int k = poll(p, r->wake_fd >= 0 ? 2 : 1, -1);
        if (k < 0) {
            if (errno == EINTR)
                continue; /* the handler ran: the flag is checked above */
            return -1;
        }
        if (r->wake_fd >= 0 && p[1].revents) {
            drain(r->wake_fd);
            continue;
        }
        ssize_t n = read(r->fd, r->buf, sizeof r->buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EIO) /* the terminal hung up */
            n = 0;
        if (n < 0)
            return -1;
        r->pos = 0;
        r->len = (size_t)n;
        return n > 0 ? 1 : 0;
    }
}

/* The next byte (0..255), or -(1 + LC_CHAT_INPUT_*) for end, interrupt, error. */
static int next_byte(lc_chat_input *r)
{
    if (r->eof)
        return -1 - LC_CHAT_INPUT_EOF;
    if (r->fd >= 0) {
        if (r->pos == r->len) {
            int k = fill_tty(r);
            if (k == 0)
                r->eof = true;
            if (k != 1)
                return -1 - k;
        }
        return (unsigned char)r->buf[r->pos++];
    }
    for (;;) {
        int c = getc(r->in);
        if (c != EOF)
            return c;
        if (ferror(r->in)) {
            if (errno == EINTR) {
                clearerr(r->in);
                continue;
            }
            return -1 - LC_CHAT_INPUT_ERROR;
        }
        r->eof = true;
        return -1 - LC_CHAT_INPUT_EOF;
    }
}

int lc_chat_input_line(lc_chat_input *r)
{
    r->line_len = 0;
    for (;;) {
        int c = next_byte(r);
        if (c < 0) {
            int k = -1 - c;
            if (k == LC_CHAT_INPUT_INTERRUPTED) {
                r->line_len = 0;
                r->pos = r->len; /* nothing typed before the Ctrl-C is kept */
                return k;
            }
            if (k == LC_CHAT_INPUT_ERROR)
                return k;
            if (r->line_len == 0) /* end of input */
                return LC_CHAT_INPUT_EOF;
            break; /* a last line without '\n' */
        }
        if (c == '\n')
            break;
        if (append(r, (char)c))
            return LC_CHAT_INPUT_ERROR;
    }
    if (r->line_len && r->line[r->line_len - 1] == '\r')
        r->line_len--;
    if (append(r, '\0'))
        return LC_CHAT_INPUT_ERROR;
    r->line_len--;
    return LC_CHAT_INPUT_LINE;
}

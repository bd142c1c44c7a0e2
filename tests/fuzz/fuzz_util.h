/* fuzz_util.h — helpers shared by the libFuzzer targets in tests/fuzz/.
 *
 * Each target that needs files gets one temporary directory per process
 * (under /dev/shm when it exists, else /tmp),
 * made on first use and removed (with everything in it) at exit, so LeakSanitizer
 * sees nothing and /tmp does not fill up over a long run. The path lives in a
 * static buffer: no heap memory outlives an iteration. */
#ifndef LC_FUZZ_UTIL_H
#define LC_FUZZ_UTIL_H

#include <fcntl.h>
#include <ftw.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/safetensors.h"

static char fuzz_dir_buf[256];

static inline int fuzz_rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static inline void fuzz_rm_dir(void)
{
    if (fuzz_dir_buf[0])
        nftw(fuzz_dir_buf, fuzz_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The per-process temporary directory (made on the first call). */
static inline const char *fuzz_tmpdir(void)
{
    if (!fuzz_dir_buf[0]) {
        /* tmpfs when there is one: the writers fsync, which is slow on disk */
        char tmpl[] = "/dev/shm/lorac-fuzz-XXXXXX";
        if (access("/dev/shm", W_OK) != 0)
            memcpy(tmpl, "/tmp/////", 9);
        if (!mkdtemp(tmpl)) {
            perror("mkdtemp");
            abort();
        }
        snprintf(fuzz_dir_buf, sizeof fuzz_dir_buf, "%s", tmpl);
        atexit(fuzz_rm_dir);
    }
    return fuzz_dir_buf;
}

/* dir/name into buf. */
static inline const char *fuzz_path(char *buf, size_t n, const char *dir, const char *name)
{
    snprintf(buf, n, "%s/%s", dir, name);
    return buf;
}

/* Writes n bytes to path (truncating); aborts on failure: the harness, not
 * the code under test, would be broken. */
static inline void fuzz_write(const char *path, const void *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        perror(path);
        abort();
    }
    const unsigned char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) {
            perror(path);
            abort();
        }
        p += w;
        n -= (size_t)w;
    }
    close(fd);
}

/* An lc_error message must be one NUL-terminated line inside its buffer.
 * FUZZ_VERBOSE=1 in the environment prints each message (for seeds). */
static inline void fuzz_check_error(const lc_error *err)
{
    static int verbose = -1;
    if (verbose < 0)
        verbose = getenv("FUZZ_VERBOSE") != NULL;
    size_t len = strnlen(err->msg, sizeof err->msg);
    if (verbose && len < sizeof err->msg)
        fprintf(stderr, "error: %s\n", err->msg);
    if (len == sizeof err->msg || len == 0 || memchr(err->msg, '\n', len)) {
        fprintf(stderr, "bad error message (%zu bytes): %.200s\n", len, err->msg);
        abort();
    }
}

#define FUZZ_CHECK(cond)                                                              \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                           \
            abort();                                                                  \
        }                                                                             \
    } while (0)

#endif

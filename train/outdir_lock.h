/* outdir_lock.h — one `lorac train` per output directory.
 *
 * A run holds an exclusive lock on OUTPUT_DIR/lorac.lock from before it
 * reads anything until it exits. The lock is a POSIX record lock (fcntl
 * F_SETLK) rather than flock(2) because F_GETLK names the process that
 * holds it, so the refusal can say which pid to wait for; like flock it
 * belongs to the process and the kernel drops it when the process dies
 * (SIGKILL and crashes included), so a stale lock cannot outlive its run.
 * The file stays empty (it takes no space on a full disk) and is never
 * deleted: removing it on exit would let a third run lock a new file while
 * a second still waits on the old one. */
#ifndef LC_OUTDIR_LOCK_H
#define LC_OUTDIR_LOCK_H

#include "autograd/error.h"

#define LC_OUTDIR_LOCK_NAME "lorac.lock"

typedef struct lc_outdir_lock {
    int fd;                 /* -1 when not held */
} lc_outdir_lock;

/* Creates dir if needed and locks it; −1 at once, naming the holder's pid,
 * when another process holds it. */
int lc_outdir_lock_take(lc_outdir_lock *l, const char *dir, lc_error *err);
void lc_outdir_lock_release(lc_outdir_lock *l);

#endif

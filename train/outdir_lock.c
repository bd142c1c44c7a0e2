/* outdir_lock.c — see outdir_lock.h. */
#include "train/outdir_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "train/fsutil.h"

int lc_outdir_lock_take(lc_outdir_lock *l, const char *dir, lc_error *err)
{
    l->fd = -1;
    if (lc_mkdir_p(dir, err))
        return -1;
    char path[4200];
    if (snprintf(path, sizeof path, "%s/%s", dir, LC_OUTDIR_LOCK_NAME) >= (int)sizeof path)
        return lc_error_set(err, "output_dir path too long: %s", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return lc_error_set(err, "cannot open the lock file %s: %s", path, strerror(errno));
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(fd, F_SETLK, &fl) == 0) {
        l->fd = fd;
        return 0;
    }
    int e = errno;
    if (e != EACCES && e != EAGAIN) {
        close(fd);
        return lc_error_set(err, "cannot lock %s: %s", path, strerror(e));
    }
    struct flock who = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    char holder[64] = "another process";
    if (fcntl(fd, F_GETLK, &who) == 0 && who.l_type != F_UNLCK && who.l_pid > 0)
        snprintf(holder, sizeof holder, "process %ld", (long)who.l_pid);
    close(fd);
    return lc_error_set(err, "output_dir %s is in use by another lorac train (%s holds %s); "
                        "wait for it to finish or choose another output_dir", dir, holder,
                        path);
}

void lc_outdir_lock_release(lc_outdir_lock *l)
{
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
}

/* file_map.c — read-only file maps (see file_map.h). */
#include "data/file_map.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int lc_file_map(const char *path, void **map, size_t *size, lc_error *err)
{
    *map = NULL;
    *size = 0;
    /* O_NONBLOCK: opening a FIFO must not hang; no effect on regular files. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return lc_error_set(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0)
        rc = lc_error_set(err, "%s: cannot stat: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        rc = lc_error_set(err, "%s: not a regular file", path);
    else if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX)
        rc = lc_error_set(err, "%s: file too large to map", path);
    if (rc || st.st_size == 0) { /* mmap cannot map an empty file */
        close(fd);
        return rc;
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED)
        return lc_error_set(err, "%s: cannot mmap: %s", path, strerror(e));
    *map = m;
    *size = (size_t)st.st_size;
    return 0;
}

void lc_file_unmap(void *map, size_t size)
{
    if (map)
        munmap(map, size);
}

/* fsutil.c — see fsutil.h. */
#include "train/fsutil.h"

#include <cjson/cJSON.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *lc_read_file(const char *path, size_t max_bytes, size_t *len, lc_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        lc_error_set(err, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        lc_error_set(err, "%s: not a regular file", path);
        return NULL;
    }
    if ((size_t)st.st_size > max_bytes) {
        fclose(f);
        lc_error_set(err, "%s: file is %lld bytes, more than the %zu allowed", path,
                     (long long)st.st_size, max_bytes);
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf || fread(buf, 1, n, f) != n) {
        fclose(f);
        free(buf);
        lc_error_set(err, "%s: read failed", path);
        return NULL;
    }
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

cJSON *lc_read_json_object(const char *path, size_t max_bytes, lc_error *err)
{
    size_t len;
    char *text = lc_read_file(path, max_bytes, &len, err);
    if (!text)
        return NULL;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        lc_error_set(err, "%s: not a JSON object", path);
        return NULL;
    }
    return root;
}

int lc_mkdir_p(const char *path, lc_error *err)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return lc_error_set(err, "bad directory path '%s'", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return lc_error_set(err, "cannot create directory %s: %s", buf, strerror(errno));
            buf[i] = c;
        }
    }
    if (!lc_is_dir(path))
        return lc_error_set(err, "%s exists and is not a directory", path);
    return 0;
}

int lc_write_file_atomic(const char *path, const void *data, size_t n, lc_error *err)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return lc_error_set(err, "path too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return lc_error_set(err, "cannot write %s: %s", path, strerror(errno));
    const char *p = data;
    size_t left = n;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            return lc_error_set(err, "cannot write %s: %s", path, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return lc_error_set(err, "cannot write %s: %s", path, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return lc_error_set(err, "cannot rename %s to %s: %s", tmp, path, strerror(e));
    }
    return 0;
}

void lc_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

bool lc_path_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

bool lc_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

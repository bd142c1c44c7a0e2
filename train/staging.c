/* staging.c — see staging.h. */
#include "train/staging.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "train/fsutil.h"

int lc_stage_make(const char *out, char *stage, size_t n, lc_error *err)
{
    char parent[4096];
    if ((size_t)snprintf(parent, sizeof parent, "%s", out) >= sizeof parent)
        return lc_error_set(err, "output path too long: %s", out);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = '\0';
        if (lc_mkdir_p(parent, err))
            return -1;
    }
    if ((size_t)snprintf(stage, n, "%s.lorac-partial-XXXXXX", out) >= n)
        return lc_error_set(err, "output path too long: %s", out);
    if (!mkdtemp(stage))
        return lc_error_set(err, "cannot create a directory next to %s: %s", out,
                            strerror(errno));
    mode_t mask = umask(0); /* mkdtemp makes it 0700; give it a normal directory's mode */
    umask(mask);
    chmod(stage, 0777 & ~mask);
    return 0;
}

int lc_stage_finish(const char *stage, const char *out, bool replace, lc_error *err)
{
    char old[4200] = "";
    if (replace) {
        snprintf(old, sizeof old, "%s.lorac-old-XXXXXX", out);
        if (!mkdtemp(old) || rmdir(old) != 0 || rename(out, old) != 0)
            return lc_error_set(err, "cannot move the existing %s aside: %s", out,
                                strerror(errno));
    }
    if (rename(stage, out) != 0) {
        int e = errno;
        if (replace)
            (void)rename(old, out);
        return lc_error_set(err, "cannot rename %s to %s: %s", stage, out, strerror(e));
    }
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", out);
    char *slash = strrchr(parent, '/');
    lc_fsync_dir(!slash ? "." : slash == parent ? "/" : (*slash = '\0', parent));
    if (replace && lc_remove_tree(old) != 0)
        return lc_error_set(err, "the new output is in %s, but the old directory moved to %s "
                            "could not be removed: %s", out, old, strerror(errno));
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) != 0 ? -1 : 0;
}

int lc_remove_tree(const char *path)
{
    return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

bool lc_path_contains(const char *a, const char *b)
{
    char *ra = realpath(a, NULL), *rb = realpath(b, NULL);
    bool r = false;
    if (ra && rb) {
        size_t n = strlen(ra);
        r = strcmp(ra, rb) == 0 || strcmp(ra, "/") == 0 ||
            (strncmp(ra, rb, n) == 0 && rb[n] == '/');
    }
    free(ra);
    free(rb);
    return r;
}

static bool model_output_name(const char *name)
{
    static const char *const suffixes[] = {".safetensors", ".json", ".model", ".txt", ".jinja",
                                           ".tiktoken"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        size_t k = strlen(suffixes[i]);
        if (n > k && strcmp(name + n - k, suffixes[i]) == 0)
            return true;
    }
    return false;
}

int lc_stage_check_replace(const char *out, const char *what, const char *const *inputs,
                           int n_inputs, lc_error *err)
{
    for (int i = 0; i < n_inputs; i++)
        if (inputs[i] && lc_path_contains(out, inputs[i]))
            return lc_error_set(err, "%s %s is (or contains) the input %s; --force would "
                                "delete it: choose another %s", what, out, inputs[i], what);
    DIR *d = opendir(out);
    if (!d)
        return lc_error_set(err, "%s %s exists and is not a directory that can be listed (%s): "
                            "remove it or choose another %s", what, out, strerror(errno), what);
    struct dirent *e;
    int rc = 0;
    char path[4352];
    while (rc == 0 && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", out, e->d_name);
        struct stat st;
        char name[96];
        if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode) || !model_output_name(e->d_name))
            rc = lc_error_set(err, "%s %s holds '%s', which lorac does not write: --force "
                              "replaces only an earlier lorac output (model files only); "
                              "remove it yourself or choose another %s", what, out,
                              lc_printable(e->d_name, name, sizeof name), what);
    }
    closedir(d);
    return rc;
}

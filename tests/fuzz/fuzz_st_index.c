/* fuzz_st_index.c — lc_model_files_open on a fuzzed model.safetensors.index.json.
 *
 * Once per process a model directory is laid out in a temporary directory:
 *
 *   TMP/outside.safetensors                  valid, OUTSIDE the model dir (a, b, c)
 *   TMP/model/model-00001-of-00002.safetensors   valid shard: tensors a, b
 *   TMP/model/model-00002-of-00002.safetensors   valid shard: tensor c
 *   TMP/model/link.safetensors   -> ../outside.safetensors (symlink leading out)
 *   TMP/model/inlink.safetensors -> model-00002-of-00002.safetensors (stays inside)
 *   TMP/model/sub/                a directory
 *   TMP/model/pipe.safetensors    a FIFO (must not hang the open)
 *
 * Each input is written as TMP/model/model.safetensors.index.json and the
 * directory opened. On success no shard may be link.safetensors (or any name
 * that is not a plain file name), and every tensor kept must be found by
 * lc_model_files_find in exactly the shard that holds it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/model_files.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char model_dir[512], index_path[600];

static void write_shard(const char *path, const char *const *names, size_t n)
{
    static const float vals[4] = {1, 2, 3, 4};
    static const int64_t shape[1] = {2};
    lc_st_entry e[3];
    for (size_t i = 0; i < n; i++)
        e[i] = (lc_st_entry){names[i], LC_DTYPE_F32, 1, shape, vals};
    const char *mk[1] = {"format"}, *mv[1] = {"pt"};
    lc_error err;
    if (lc_st_write(path, e, n, mk, mv, 1, &err) != 0) {
        fprintf(stderr, "fuzz setup: %s\n", err.msg);
        abort();
    }
}

static void setup(void)
{
    const char *tmp = fuzz_tmpdir();
    char p[600];
    snprintf(model_dir, sizeof model_dir, "%s/model", tmp);
    snprintf(index_path, sizeof index_path, "%s/model.safetensors.index.json", model_dir);
    FUZZ_CHECK(mkdir(model_dir, 0755) == 0);
    const char *abc[3] = {"a", "b", "c"}, *c[1] = {"c"};
    write_shard(fuzz_path(p, sizeof p, tmp, "outside.safetensors"), abc, 3);
    write_shard(fuzz_path(p, sizeof p, model_dir, "model-00001-of-00002.safetensors"), abc, 2);
    write_shard(fuzz_path(p, sizeof p, model_dir, "model-00002-of-00002.safetensors"), c, 1);
    FUZZ_CHECK(symlink("../outside.safetensors",
                       fuzz_path(p, sizeof p, model_dir, "link.safetensors")) == 0);
    FUZZ_CHECK(symlink("model-00002-of-00002.safetensors",
                       fuzz_path(p, sizeof p, model_dir, "inlink.safetensors")) == 0);
    FUZZ_CHECK(mkdir(fuzz_path(p, sizeof p, model_dir, "sub"), 0755) == 0);
    FUZZ_CHECK(mkfifo(fuzz_path(p, sizeof p, model_dir, "pipe.safetensors"), 0644) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!model_dir[0])
        setup();
    fuzz_write(index_path, data, size);
    lc_model_files mf;
    lc_error err;
    err.msg[0] = '\0';
    if (lc_model_files_open(&mf, model_dir, &err) != 0) {
        fuzz_check_error(&err);
        FUZZ_CHECK(mf.shards == NULL && mf.n_shards == 0 && mf.dir == NULL);
        return 0;
    }
    FUZZ_CHECK(mf.n_shards >= 1);
    for (size_t i = 0; i < mf.n_shards; i++) {
        const char *sn = mf.shard_names[i];
        FUZZ_CHECK(sn && sn[0] && !strchr(sn, '/') && strcmp(sn, "..") && strcmp(sn, "."));
        FUZZ_CHECK(strcmp(sn, "link.safetensors") != 0); /* symlink out of the dir */
        for (size_t k = 0; k < mf.shards[i].n_tensors; k++) {
            const lc_st_tensor *t = &mf.shards[i].tensors[k];
            FUZZ_CHECK(lc_model_files_find(&mf, t->name) == t);
            FUZZ_CHECK(lc_model_files_shard_of(&mf, t->name) == (int)i);
            volatile float v = *(const float *)t->data; /* written aligned above */
            (void)v;
        }
    }
    FUZZ_CHECK(lc_model_files_find(&mf, "no such tensor") == NULL);
    FUZZ_CHECK(lc_model_files_shard_of(&mf, "no such tensor") == -1);
    lc_model_files_close(&mf);
    return 0;
}

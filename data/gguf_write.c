/* gguf_write.c — GGUF v3 writer (see gguf_write.h): the metadata is
 * serialized into a growing buffer as it is added; tensor infos are kept
 * until the header is written; data follows tensor by tensor. */
#include "data/gguf_write.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct wtensor {
    char *name;
    int n_dims;
    int64_t ne[LC_GGUF_MAX_DIMS];
    uint32_t type;
    uint64_t nbytes, offset;
} wtensor;

struct lc_gguf_writer {
    uint32_t alignment;
    unsigned char *kv;
    size_t kv_len, kv_cap;
    uint64_t n_kv;
    char **keys;
    bool oom;
    char dup[128];
    wtensor *t;
    size_t n_t, cap_t, next;
    uint64_t data_size;
};

lc_gguf_writer *lc_gguf_writer_new(uint32_t alignment)
{
    lc_gguf_writer *w = calloc(1, sizeof *w);
    if (w)
        w->alignment = alignment ? alignment : LC_GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void lc_gguf_writer_free(lc_gguf_writer *w)
{
    if (!w)
        return;
    for (uint64_t i = 0; i < w->n_kv; i++)
        free(w->keys[i]);
    for (size_t i = 0; i < w->n_t; i++)
        free(w->t[i].name);
    free(w->keys);
    free(w->kv);
    free(w->t);
    free(w);
}

static void put(lc_gguf_writer *w, const void *p, size_t n)
{
    if (w->oom)
        return;
    if (w->kv_len + n > w->kv_cap) {
        size_t cap = w->kv_cap ? w->kv_cap : 4096;
        while (cap < w->kv_len + n)
            cap *= 2;
        unsigned char *b = realloc(w->kv, cap);
        if (!b) {
            w->oom = true;
            return;
        }
        w->kv = b;
        w->kv_cap = cap;
    }
    memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
}

static void put_u32(lc_gguf_writer *w, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    put(w, b, 4);
}

static void put_u64(lc_gguf_writer *w, uint64_t v)
{
    put_u32(w, (uint32_t)v);
    put_u32(w, (uint32_t)(v >> 32));
}

static void put_str(lc_gguf_writer *w, const char *s, size_t len)
{
    put_u64(w, len);
    put(w, s, len);
}

static void key(lc_gguf_writer *w, const char *k, lc_gguf_vtype t)
{
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->keys[i], k) && !w->dup[0])
            snprintf(w->dup, sizeof w->dup, "%s", k);
    char **keys = realloc(w->keys, (size_t)(w->n_kv + 1) * sizeof *keys);
    char *copy = strdup(k);
    if (!keys || !copy) {
        free(copy);
        if (keys)
            w->keys = keys;
        w->oom = true;
        return;
    }
    w->keys = keys;
    w->keys[w->n_kv++] = copy;
    put_str(w, k, strlen(k));
    put_u32(w, (uint32_t)t);
}

void lc_gguf_add_u32(lc_gguf_writer *w, const char *k, uint32_t v)
{
    key(w, k, LC_GGUF_U32);
    put_u32(w, v);
}

void lc_gguf_add_i32(lc_gguf_writer *w, const char *k, int32_t v)
{
    key(w, k, LC_GGUF_I32);
    put_u32(w, (uint32_t)v);
}

void lc_gguf_add_f32(lc_gguf_writer *w, const char *k, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    key(w, k, LC_GGUF_F32);
    put_u32(w, u);
}

void lc_gguf_add_bool(lc_gguf_writer *w, const char *k, int v)
{
    unsigned char b = v ? 1 : 0;
    key(w, k, LC_GGUF_BOOL);
    put(w, &b, 1);
}

void lc_gguf_add_str(lc_gguf_writer *w, const char *k, const char *s, size_t len)
{
    key(w, k, LC_GGUF_STRING);
    put_str(w, s, len);
}

void lc_gguf_add_arr_str(lc_gguf_writer *w, const char *k, const char *const *strs,
                         const size_t *lens, size_t n)
{
    key(w, k, LC_GGUF_ARRAY);
    put_u32(w, LC_GGUF_STRING);
    put_u64(w, n);
    for (size_t i = 0; i < n; i++)
        put_str(w, strs[i], lens[i]);
}

void lc_gguf_add_arr_i32(lc_gguf_writer *w, const char *k, const int32_t *v, size_t n)
{
    key(w, k, LC_GGUF_ARRAY);
    put_u32(w, LC_GGUF_I32);
    put_u64(w, n);
    for (size_t i = 0; i < n; i++)
        put_u32(w, (uint32_t)v[i]);
}

void lc_gguf_add_arr_f32(lc_gguf_writer *w, const char *k, const float *v, size_t n)
{
    key(w, k, LC_GGUF_ARRAY);
    put_u32(w, LC_GGUF_F32);
    put_u64(w, n);
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        put_u32(w, u);
    }
}

void lc_gguf_add_kv(lc_gguf_writer *w, const lc_gguf_kv *kv)
{
    key(w, kv->key, kv->type);
    lc_gguf_vtype elem = kv->type;
    if (kv->type == LC_GGUF_ARRAY) {
        put_u32(w, kv->elem);
        put_u64(w, kv->n);
        elem = kv->elem;
    }
    if (elem == LC_GGUF_STRING)
        for (uint64_t i = 0; i < kv->n; i++)
            put_str(w, kv->strs[i].ptr, kv->strs[i].len);
    else
        put(w, kv->data, (size_t)(kv->n * lc_gguf_vtype_size(elem)));
}

static uint64_t pad_to(uint64_t x, uint64_t a)
{
    return (x + a - 1) / a * a;
}

int lc_gguf_add_tensor(lc_gguf_writer *w, const char *name, int n_dims, const int64_t *ne,
                       uint32_t type, lc_error *err)
{
    const lc_ggml_type_info *ti = lc_ggml_type_get(type);
    if (!ti)
        return lc_error_set(err, "tensor '%s': unknown ggml type %u", name, type);
    if (n_dims < 1 || n_dims > LC_GGUF_MAX_DIMS || ne[0] <= 0 || ne[0] % ti->block_size)
        return lc_error_set(err, "tensor '%s': row length %lld is not a multiple of the %s "
                            "block size %u", name, (long long)ne[0], ti->name, ti->block_size);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *t = realloc(w->t, cap * sizeof *t);
        if (!t)
            return lc_error_set(err, "out of memory");
        w->t = t;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name)))
        return lc_error_set(err, "out of memory");
    t->n_dims = n_dims;
    uint64_t rows = 1;
    for (int d = 0; d < LC_GGUF_MAX_DIMS; d++) {
        t->ne[d] = d < n_dims ? ne[d] : 1;
        if (d > 0)
            rows *= (uint64_t)t->ne[d];
    }
    t->type = type;
    t->nbytes = rows * ((uint64_t)ne[0] / ti->block_size * ti->type_size);
    t->offset = w->data_size;
    w->data_size = pad_to(w->data_size + t->nbytes, w->alignment);
    return (int)w->n_t++;
}

uint64_t lc_gguf_tensor_nbytes(const lc_gguf_writer *w, int i)
{
    return w->t[i].nbytes;
}

static int fwrite_all(FILE *f, const void *p, size_t n, lc_error *err)
{
    if (n && fwrite(p, 1, n, f) != n)
        return lc_error_set(err, "write failed (disk full?)");
    return 0;
}

static int write_pad(FILE *f, uint64_t pos, uint32_t a, lc_error *err)
{
    static const unsigned char zeros[256];
    uint64_t n = pad_to(pos, a) - pos;
    while (n) {
        size_t k = n > sizeof zeros ? sizeof zeros : (size_t)n;
        if (fwrite_all(f, zeros, k, err))
            return -1;
        n -= k;
    }
    return 0;
}

int lc_gguf_write_header(lc_gguf_writer *w, FILE *f, lc_error *err)
{
    if (w->oom)
        return lc_error_set(err, "out of memory building the GGUF metadata");
    if (w->dup[0])
        return lc_error_set(err, "GGUF key '%s' written twice", w->dup);
    lc_gguf_writer hdr = {0};
    put(&hdr, "GGUF", 4);
    put_u32(&hdr, 3);
    put_u64(&hdr, w->n_t);
    put_u64(&hdr, w->n_kv);
    put(&hdr, w->kv, w->kv_len);
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        put_str(&hdr, t->name, strlen(t->name));
        put_u32(&hdr, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++)
            put_u64(&hdr, (uint64_t)t->ne[d]);
        put_u32(&hdr, t->type);
        put_u64(&hdr, t->offset);
    }
    int rc = hdr.oom ? lc_error_set(err, "out of memory")
                     : fwrite_all(f, hdr.kv, hdr.kv_len, err) ||
                           write_pad(f, hdr.kv_len, w->alignment, err) ? -1 : 0;
    free(hdr.kv);
    w->next = 0;
    return rc;
}

int lc_gguf_write_tensor(lc_gguf_writer *w, FILE *f, const void *data, uint64_t nbytes,
                         lc_error *err)
{
    if (w->next >= w->n_t || nbytes != w->t[w->next].nbytes)
        return lc_error_set(err, "internal: tensor data out of order or of the wrong size");
    const wtensor *t = &w->t[w->next++];
    if (fwrite_all(f, data, (size_t)nbytes, err) ||
        write_pad(f, t->offset + nbytes, w->alignment, err))
        return lc_error_prefix(err, "writing tensor '%s'", t->name);
    return 0;
}

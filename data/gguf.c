/* gguf.c — validating GGUF v2/v3 reader (mmap).
 *
 * Layout (little-endian; "str" = u64 length + that many bytes, no NUL):
 *   u32 magic "GGUF"; u32 version (2 or 3; 1 had u32 counts and is refused);
 *   u64 tensor_count; u64 kv_count;
 *   kv_count × { str key; u32 type; value }, value = scalar of its size, str,
 *     or array { u32 elem_type; u64 n; n elements } (arrays of arrays are
 *     refused, as llama.cpp does);
 *   tensor_count × { str name; u32 n_dims; u64 ne[n_dims]; u32 ggml_type;
 *     u64 offset };
 *   padding to general.alignment (u32, a power of two; default 32), then the
 *   data section; each tensor at data_start + offset (offset aligned).
 *
 * Rules checked before anything is handed out: counts against the bytes
 * left (before any allocation: every entry takes at least 14 / 33 bytes),
 * every length against the bytes left, keys and tensor names non-empty,
 * without NUL, at most LC_GGUF_MAX_NAME bytes and unique; bools 0 or 1;
 * 1 ≤ n_dims ≤ 4, every dim ≥ 1, numel and byte size without 64-bit
 * overflow, ne[0] a multiple of the type's block; known ggml type; aligned
 * offsets; every tensor inside the file; no two tensors overlapping; header
 * + metadata ≤ LC_GGUF_MAX_META. Each refusal is one line "FILE: WHERE: WHAT". */
#include "data/gguf.h"
#include "data/file_map.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAGIC 0x46554747u /* "GGUF" read as little-endian u32 */
#define MIN_KV_BYTES 14        /* key len 8 + 1 byte key + type 4 + u8 value 1 */
#define MIN_TENSOR_BYTES 33    /* name len 8 + 1 + n_dims 4 + ne 8 + type 4 + offset 8 */

uint64_t lc_gguf_vtype_size(uint32_t t)
{
    static const uint8_t sizes[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < sizeof sizes ? sizes[t] : 0;
}

const char *lc_gguf_vtype_name(lc_gguf_vtype t)
{
    static const char *const names[] = {"uint8", "int8",   "uint16", "int16", "uint32",
                                        "int32", "float32", "bool",  "string", "array",
                                        "uint64", "int64",  "float64"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}

/* ------------------------------------------------------------------ */
/* cursor                                                              */

typedef struct rd {
    const uint8_t *buf;
    uint64_t size, pos;
    const char *label;
    lc_error *err;
    char where[320]; /* "key 'x'", "tensor 'y'", "header": the message's place */
} rd;

static int fail(rd *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(rd *r, const char *fmt, ...)
{
    char what[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return lc_error_set(r->err, "%s: %s: %s", r->label, r->where, what);
}

static void set_where(rd *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_where(rd *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->where, sizeof r->where, fmt, ap);
    va_end(ap);
}

/* n bytes at the cursor (advanced), or NULL with "truncated" naming `field`. */
static const uint8_t *take(rd *r, uint64_t n, const char *field)
{
    if (n > r->size - r->pos) {
        fail(r, "truncated: %s needs %llu bytes at offset %llu, the file has %llu", field,
             (unsigned long long)n, (unsigned long long)r->pos, (unsigned long long)r->size);
        return NULL;
    }
    const uint8_t *p = r->buf + r->pos;
    r->pos += n;
    return p;
}

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static int take_u32(rd *r, uint32_t *v, const char *field)
{
    const uint8_t *p = take(r, 4, field);
    if (!p)
        return -1;
    *v = (uint32_t)le(p, 4);
    return 0;
}

static int take_u64(rd *r, uint64_t *v, const char *field)
{
    const uint8_t *p = take(r, 8, field);
    if (!p)
        return -1;
    *v = le(p, 8);
    return 0;
}

/* A gguf string; `field` names it ("key", "tensor name", "string value"). */
static int take_str(rd *r, lc_gguf_str *s, const char *field)
{
    uint64_t len;
    char fb[96];
    snprintf(fb, sizeof fb, "%s length", field);
    if (take_u64(r, &len, fb) != 0)
        return -1;
    if (len > r->size - r->pos)
        return fail(r, "truncated: %s of %llu bytes at offset %llu runs past the end of the "
                       "file (%llu bytes)", field, (unsigned long long)len,
                    (unsigned long long)r->pos, (unsigned long long)r->size);
    s->ptr = (const char *)r->buf + r->pos;
    s->len = len;
    r->pos += len;
    return 0;
}

/* A key or tensor name: non-empty, no NUL, bounded; returns an owned copy. */
static char *take_name(rd *r, const char *field)
{
    lc_gguf_str s = {NULL, 0};
    if (take_str(r, &s, field) != 0)
        return NULL;
    if (s.len == 0) {
        fail(r, "%s is empty", field);
        return NULL;
    }
    if (s.len > LC_GGUF_MAX_NAME) {
        fail(r, "%s is %llu bytes long, at most %u allowed", field, (unsigned long long)s.len,
             LC_GGUF_MAX_NAME);
        return NULL;
    }
    if (memchr(s.ptr, 0, s.len)) {
        fail(r, "%s contains a NUL byte", field);
        return NULL;
    }
    char *c = malloc(s.len + 1);
    if (!c) {
        fail(r, "out of memory");
        return NULL;
    }
    memcpy(c, s.ptr, s.len);
    c[s.len] = '\0';
    return c;
}

/* ------------------------------------------------------------------ */
/* metadata                                                            */

/* Reads kv->n values of type t (not ARRAY) at the cursor into kv. */
static int take_values(rd *r, lc_gguf_kv *kv, uint32_t t)
{
    if (t == LC_GGUF_STRING) {
        /* each string takes at least its 8-byte length: bound n before allocating */
        if (kv->n > (r->size - r->pos) / 8)
            return fail(r, "truncated: %llu strings cannot fit in the %llu bytes left",
                        (unsigned long long)kv->n, (unsigned long long)(r->size - r->pos));
        kv->data = r->buf + r->pos;
        kv->strs = malloc((kv->n ? kv->n : 1) * sizeof *kv->strs);
        if (!kv->strs)
            return fail(r, "out of memory for %llu strings", (unsigned long long)kv->n);
        for (uint64_t i = 0; i < kv->n; i++)
            if (take_str(r, &kv->strs[i], kv->type == LC_GGUF_ARRAY ? "array string"
                                                                     : "string value") != 0)
                return -1;
        return 0;
    }
    uint64_t es = lc_gguf_vtype_size(t);
    if (kv->n > (r->size - r->pos) / es)
        return fail(r, "truncated: %llu %s values do not fit in the %llu bytes left",
                    (unsigned long long)kv->n, lc_gguf_vtype_name((lc_gguf_vtype)t),
                    (unsigned long long)(r->size - r->pos));
    kv->data = r->buf + r->pos;
    r->pos += kv->n * es;
    if (t == LC_GGUF_BOOL)
        for (uint64_t i = 0; i < kv->n; i++)
            if (kv->data[i] > 1)
                return fail(r, "bool value %u%s is not 0 or 1", kv->data[i],
                            kv->type == LC_GGUF_ARRAY ? " in the array" : "");
    return 0;
}

static int parse_kv(rd *r, lc_gguf_kv *kv, size_t i)
{
    set_where(r, "metadata entry %zu", i);
    if (!(kv->key = take_name(r, "key")))
        return -1;
    char kb[200];
    set_where(r, "key '%s'", lc_printable(kv->key, kb, sizeof kb));
    uint32_t t;
    if (take_u32(r, &t, "value type") != 0)
        return -1;
    if (t > LC_GGUF_F64)
        return fail(r, "unknown value type %u", t);
    kv->type = (lc_gguf_vtype)t;
    kv->n = 1;
    if (t != LC_GGUF_ARRAY)
        return take_values(r, kv, t);
    uint32_t e;
    if (take_u32(r, &e, "array element type") != 0)
        return -1;
    if (e == LC_GGUF_ARRAY)
        return fail(r, "arrays of arrays are not supported");
    if (e > LC_GGUF_F64)
        return fail(r, "unknown array element type %u", e);
    kv->elem = (lc_gguf_vtype)e;
    if (take_u64(r, &kv->n, "array length") != 0)
        return -1;
    return take_values(r, kv, e);
}

/* ------------------------------------------------------------------ */
/* tensor infos                                                        */

static const char *shape_str(const int64_t *ne, int n, char *buf, size_t cap)
{
    size_t off = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < n && off < cap; i++)
        off += (size_t)snprintf(buf + off, cap - off, "%s%lld", i ? ", " : "", (long long)ne[i]);
    if (off < cap)
        snprintf(buf + off, cap - off, "]");
    return buf;
}

static int parse_tensor_info(rd *r, lc_gguf_tensor *t, size_t i, uint32_t alignment)
{
    set_where(r, "tensor info %zu", i);
    if (!(t->name = take_name(r, "tensor name")))
        return -1;
    char nb[200], sb[200];
    set_where(r, "tensor '%s'", lc_printable(t->name, nb, sizeof nb));
    uint32_t nd;
    if (take_u32(r, &nd, "n_dims") != 0)
        return -1;
    if (nd < 1 || nd > LC_GGUF_MAX_DIMS)
        return fail(r, "n_dims %u is not in 1..%d", nd, LC_GGUF_MAX_DIMS);
    t->n_dims = (int)nd;
    uint64_t raw[LC_GGUF_MAX_DIMS];
    for (int d = 0; d < LC_GGUF_MAX_DIMS; d++) {
        raw[d] = 1;
        t->ne[d] = 1;
    }
    for (uint32_t d = 0; d < nd; d++)
        if (take_u64(r, &raw[d], "dimension") != 0)
            return -1;
    uint64_t numel = 1;
    for (uint32_t d = 0; d < nd; d++) {
        if (raw[d] == 0)
            return fail(r, "dimension ne[%u] is 0", d);
        if (raw[d] > (uint64_t)INT64_MAX || __builtin_mul_overflow(numel, raw[d], &numel) ||
            numel > (uint64_t)INT64_MAX) {
            char b[200];
            size_t off = (size_t)snprintf(b, sizeof b, "[");
            for (uint32_t k = 0; k < nd && off < sizeof b; k++)
                off += (size_t)snprintf(b + off, sizeof b - off, "%s%llu", k ? ", " : "",
                                        (unsigned long long)raw[k]);
            return fail(r, "shape ne=%s%s overflows a 63-bit element count", b,
                        off < sizeof b ? "]" : "");
        }
        t->ne[d] = (int64_t)raw[d];
    }
    t->numel = numel;
    t->nrows = numel / raw[0];
    if (take_u32(r, &t->type, "ggml type") != 0)
        return -1;
    const lc_ggml_type_info *ti = lc_ggml_type_get(t->type);
    if (!ti)
        return fail(r, "unknown ggml type %u", t->type);
    if (raw[0] % ti->block_size != 0)
        return fail(r, "row length ne[0] = %llu is not a multiple of %s's block size %u",
                    (unsigned long long)raw[0], ti->name, ti->block_size);
    if (__builtin_mul_overflow(raw[0] / ti->block_size, (uint64_t)ti->type_size,
                               &t->row_bytes) ||
        __builtin_mul_overflow(t->row_bytes, t->nrows, &t->nbytes))
        return fail(r, "%s %s overflows a 64-bit byte size", ti->name,
                    shape_str(t->ne, t->n_dims, sb, sizeof sb));
    if (take_u64(r, &t->offset, "data offset") != 0)
        return -1;
    if (t->offset % alignment != 0)
        return fail(r, "data offset %llu is not a multiple of the alignment %u",
                    (unsigned long long)t->offset, alignment);
    return 0;
}

/* ------------------------------------------------------------------ */
/* name index                                                          */

typedef struct name_ix {
    const char *name;
    size_t ix;
} name_ix;

static int cmp_name_ix(const void *a, const void *b)
{
    return strcmp(((const name_ix *)a)->name, ((const name_ix *)b)->name);
}

/* Sorts n names into *out (indices); reports the first duplicate. */
static int sort_names(rd *r, const char *const *names, size_t n, size_t **out,
                      const char *what)
{
    name_ix *v = malloc((n ? n : 1) * sizeof *v);
    *out = malloc((n ? n : 1) * sizeof **out);
    if (!v || !*out) {
        free(v);
        set_where(r, "header");
        return fail(r, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        v[i] = (name_ix){names[i], i};
    qsort(v, n, sizeof *v, cmp_name_ix);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(v[i - 1].name, v[i].name) == 0) {
            char nb[200];
            set_where(r, "%s '%s'", what, lc_printable(v[i].name, nb, sizeof nb));
            size_t a = v[i - 1].ix < v[i].ix ? v[i - 1].ix : v[i].ix;
            size_t b = v[i - 1].ix ^ v[i].ix ^ a;
            free(v);
            return fail(r, "duplicate %s name (entries %zu and %zu)", what, a, b);
        }
        (*out)[i] = v[i].ix;
    }
    free(v);
    return 0;
}

typedef struct span {
    uint64_t begin, end;
    size_t ix;
} span;

static int cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->ix < y->ix ? -1 : x->ix > y->ix;
}

/* ------------------------------------------------------------------ */
/* the whole image                                                     */

static int parse_image(lc_gguf_file *f, const uint8_t *buf, size_t size, const char *label,
                       lc_error *err)
{
    rd r = {.buf = buf, .size = size, .pos = 0, .label = label, .err = err};
    set_where(&r, "header");
    uint32_t magic, version;
    if (take_u32(&r, &magic, "magic") != 0)
        return -1;
    if (magic != GGUF_MAGIC)
        return fail(&r, "bad magic 0x%08x: not a GGUF file (expected the bytes \"GGUF\")",
                    magic);
    if (take_u32(&r, &version, "version") != 0)
        return -1;
    if (version == 0x02000000u || version == 0x03000000u)
        return fail(&r, "big-endian GGUF (version field 0x%08x) is not supported", version);
    if (version != 2 && version != 3)
        return fail(&r, "GGUF version %u is not supported (only 2 and 3)", version);
    f->version = version;
    uint64_t n_tensors, n_kv;
    if (take_u64(&r, &n_tensors, "tensor count") != 0 || take_u64(&r, &n_kv, "kv count") != 0)
        return -1;
    if (n_tensors > LC_GGUF_MAX_TENSORS)
        return fail(&r, "tensor count %llu exceeds the limit of %u",
                    (unsigned long long)n_tensors, LC_GGUF_MAX_TENSORS);
    if (n_kv > LC_GGUF_MAX_KV)
        return fail(&r, "kv count %llu exceeds the limit of %u", (unsigned long long)n_kv,
                    LC_GGUF_MAX_KV);
    if (n_kv * MIN_KV_BYTES + n_tensors * MIN_TENSOR_BYTES > size - r.pos)
        return fail(&r, "truncated: %llu metadata entries and %llu tensor infos need at "
                        "least %llu bytes, %llu left",
                    (unsigned long long)n_kv, (unsigned long long)n_tensors,
                    (unsigned long long)(n_kv * MIN_KV_BYTES + n_tensors * MIN_TENSOR_BYTES),
                    (unsigned long long)(size - r.pos));

    f->kvs = calloc(n_kv ? n_kv : 1, sizeof *f->kvs);
    f->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *f->tensors);
    if (!f->kvs || !f->tensors)
        return fail(&r, "out of memory");
    for (size_t i = 0; i < n_kv; i++) {
        f->n_kv = i + 1;
        if (parse_kv(&r, &f->kvs[i], i) != 0)
            return -1;
    }
    {
        const char **names = calloc(n_kv ? n_kv : 1, sizeof *names);
        if (!names)
            return fail(&r, "out of memory");
        for (size_t i = 0; i < n_kv; i++)
            names[i] = f->kvs[i].key;
        int rc = sort_names(&r, names, n_kv, &f->kv_sorted, "key");
        free(names);
        if (rc != 0)
            return -1;
    }

    f->alignment = LC_GGUF_DEFAULT_ALIGNMENT;
    const lc_gguf_kv *al = lc_gguf_find_kv(f, "general.alignment");
    if (al) {
        set_where(&r, "key 'general.alignment'");
        if (al->type != LC_GGUF_U32)
            return fail(&r, "is %s, expected uint32", lc_gguf_vtype_name(al->type));
        uint32_t a = (uint32_t)le(al->data, 4);
        if (a == 0 || (a & (a - 1)) != 0)
            return fail(&r, "alignment %u is not a power of two", a);
        f->alignment = a;
    }

    for (size_t i = 0; i < n_tensors; i++) {
        f->n_tensors = i + 1;
        if (parse_tensor_info(&r, &f->tensors[i], i, f->alignment) != 0)
            return -1;
    }
    set_where(&r, "header");
    if (r.pos > LC_GGUF_MAX_META)
        return fail(&r, "header, metadata and tensor infos take %llu bytes, more than the "
                        "limit of %llu", (unsigned long long)r.pos, LC_GGUF_MAX_META);
    {
        const char **names = calloc(n_tensors ? n_tensors : 1, sizeof *names);
        if (!names)
            return fail(&r, "out of memory");
        for (size_t i = 0; i < n_tensors; i++)
            names[i] = f->tensors[i].name;
        int rc = sort_names(&r, names, n_tensors, &f->tensor_sorted, "tensor");
        free(names);
        if (rc != 0)
            return -1;
    }

    /* data section: r.pos rounded up to the alignment (r.pos ≤ size < 2^63) */
    uint64_t start = (r.pos + f->alignment - 1) / f->alignment * f->alignment;
    f->data_start = start;
    if (n_tensors == 0)
        return 0;
    if (start > size)
        return fail(&r, "truncated: the data section would start at offset %llu (aligned to "
                        "%u), past the end of the file (%zu bytes)",
                    (unsigned long long)start, f->alignment, size);
    uint64_t data_size = size - start;
    span *sp = malloc(n_tensors * sizeof *sp);
    if (!sp)
        return fail(&r, "out of memory");
    int rc = 0;
    char nb[200], pb[200];
    for (size_t i = 0; i < n_tensors && rc == 0; i++) {
        lc_gguf_tensor *t = &f->tensors[i];
        set_where(&r, "tensor '%s'", lc_printable(t->name, nb, sizeof nb));
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            rc = fail(&r, "data at offset %llu (+%llu bytes) runs past the end of the data "
                          "section (%llu bytes)", (unsigned long long)t->offset,
                      (unsigned long long)t->nbytes, (unsigned long long)data_size);
        else
            t->data = buf + start + t->offset; /* only once it is known to be inside */
        sp[i] = (span){t->offset, t->offset + t->nbytes, i};
    }
    if (rc == 0) {
        qsort(sp, n_tensors, sizeof *sp, cmp_span);
        for (size_t i = 1; i < n_tensors && rc == 0; i++) {
            if (sp[i].begin < sp[i - 1].end) {
                set_where(&r, "tensor '%s'",
                          lc_printable(f->tensors[sp[i].ix].name, nb, sizeof nb));
                rc = fail(&r, "data [%llu, %llu) overlaps tensor '%s' [%llu, %llu)",
                          (unsigned long long)sp[i].begin, (unsigned long long)sp[i].end,
                          lc_printable(f->tensors[sp[i - 1].ix].name, pb, sizeof pb),
                          (unsigned long long)sp[i - 1].begin,
                          (unsigned long long)sp[i - 1].end);
            }
        }
    }
    free(sp);
    return rc;
}

static void free_parsed(lc_gguf_file *f)
{
    for (size_t i = 0; i < f->n_kv; i++) {
        free(f->kvs[i].key);
        free(f->kvs[i].strs);
    }
    free(f->kvs);
    for (size_t i = 0; i < f->n_tensors; i++)
        free(f->tensors[i].name);
    free(f->tensors);
    free(f->kv_sorted);
    free(f->tensor_sorted);
    free(f->path);
}

int lc_gguf_parse(lc_gguf_file *f, const void *buf, size_t size, const char *label,
                  lc_error *err)
{
    memset(f, 0, sizeof *f);
    if (!label)
        label = "<memory>";
    if (!(f->path = strdup(label)))
        return lc_error_set(err, "%s: out of memory", label);
    if (parse_image(f, buf, size, label, err) != 0) {
        free_parsed(f);
        memset(f, 0, sizeof *f);
        return -1;
    }
    return 0;
}

int lc_gguf_open(lc_gguf_file *f, const char *path, lc_error *err)
{
    memset(f, 0, sizeof *f);
    void *map;
    size_t size;
    if (lc_file_map(path, &map, &size, err))
        return -1;
    if (!map) { /* empty: the parser reports it */
        static const uint8_t none[1];
        return lc_gguf_parse(f, none, 0, path, err);
    }
    if (lc_gguf_parse(f, map, size, path, err) != 0) {
        lc_file_unmap(map, size);
        return -1;
    }
    f->map = map;
    f->map_size = size;
    return 0;
}

void lc_gguf_close(lc_gguf_file *f)
{
    if (!f)
        return;
    free_parsed(f);
    lc_file_unmap(f->map, f->map_size);
    memset(f, 0, sizeof *f);
}

/* ------------------------------------------------------------------ */
/* lookups and getters                                                 */

const lc_gguf_kv *lc_gguf_find_kv(const lc_gguf_file *f, const char *key)
{
    size_t lo = 0, hi = f->n_kv;
    while (lo < hi && f->kv_sorted) {
        size_t mid = lo + (hi - lo) / 2;
        const lc_gguf_kv *kv = &f->kvs[f->kv_sorted[mid]];
        int c = strcmp(key, kv->key);
        if (c == 0)
            return kv;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const lc_gguf_tensor *lc_gguf_find_tensor(const lc_gguf_file *f, const char *name)
{
    size_t lo = 0, hi = f->n_tensors;
    while (lo < hi && f->tensor_sorted) {
        size_t mid = lo + (hi - lo) / 2;
        const lc_gguf_tensor *t = &f->tensors[f->tensor_sorted[mid]];
        int c = strcmp(name, t->name);
        if (c == 0)
            return t;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* The kv `key` of type `want`, or NULL with the message. */
static const lc_gguf_kv *typed(const lc_gguf_file *f, const char *key, lc_gguf_vtype want,
                               lc_error *err)
{
    char kb[200];
    const lc_gguf_kv *kv = lc_gguf_find_kv(f, key);
    if (!kv) {
        lc_error_set(err, "%s: key '%s' is missing", f->path, lc_printable(key, kb, sizeof kb));
        return NULL;
    }
    if (kv->type != want) {
        if (kv->type == LC_GGUF_ARRAY)
            lc_error_set(err, "%s: key '%s' is an array of %s, expected %s", f->path,
                         lc_printable(key, kb, sizeof kb), lc_gguf_vtype_name(kv->elem),
                         lc_gguf_vtype_name(want));
        else
            lc_error_set(err, "%s: key '%s' is %s, expected %s", f->path,
                         lc_printable(key, kb, sizeof kb), lc_gguf_vtype_name(kv->type),
                         lc_gguf_vtype_name(want));
        return NULL;
    }
    return kv;
}

int lc_gguf_get_u32(const lc_gguf_file *f, const char *key, uint32_t *out, lc_error *err)
{
    const lc_gguf_kv *kv = typed(f, key, LC_GGUF_U32, err);
    if (!kv)
        return -1;
    *out = (uint32_t)le(kv->data, 4);
    return 0;
}

int lc_gguf_get_i32(const lc_gguf_file *f, const char *key, int32_t *out, lc_error *err)
{
    const lc_gguf_kv *kv = typed(f, key, LC_GGUF_I32, err);
    if (!kv)
        return -1;
    *out = (int32_t)(uint32_t)le(kv->data, 4);
    return 0;
}

int lc_gguf_get_u64(const lc_gguf_file *f, const char *key, uint64_t *out, lc_error *err)
{
    const lc_gguf_kv *kv = typed(f, key, LC_GGUF_U64, err);
    if (!kv)
        return -1;
    *out = le(kv->data, 8);
    return 0;
}

int lc_gguf_get_f32(const lc_gguf_file *f, const char *key, float *out, lc_error *err)
{
    const lc_gguf_kv *kv = typed(f, key, LC_GGUF_F32, err);
    if (!kv)
        return -1;
    memcpy(out, kv->data, 4);
    return 0;
}

int lc_gguf_get_bool(const lc_gguf_file *f, const char *key, int *out, lc_error *err)
{
    const lc_gguf_kv *kv = typed(f, key, LC_GGUF_BOOL, err);
    if (!kv)
        return -1;
    *out = kv->data[0];
    return 0;
}

int lc_gguf_get_str(const lc_gguf_file *f, const char *key, lc_gguf_str *out, lc_error *err)
{
    const lc_gguf_kv *kv = typed(f, key, LC_GGUF_STRING, err);
    if (!kv)
        return -1;
    *out = kv->strs[0];
    return 0;
}

static int is_int_type(lc_gguf_vtype t)
{
    return t <= LC_GGUF_I32 || t == LC_GGUF_U64 || t == LC_GGUF_I64;
}

int lc_gguf_get_int(const lc_gguf_file *f, const char *key, int64_t *out, lc_error *err)
{
    char kb[200];
    const lc_gguf_kv *kv = lc_gguf_find_kv(f, key);
    if (!kv)
        return lc_error_set(err, "%s: key '%s' is missing", f->path,
                            lc_printable(key, kb, sizeof kb));
    if (!is_int_type(kv->type))
        return lc_error_set(err, "%s: key '%s' is %s, expected an integer", f->path,
                            lc_printable(key, kb, sizeof kb),
                            kv->type == LC_GGUF_ARRAY ? "an array" : lc_gguf_vtype_name(kv->type));
    if (kv->type == LC_GGUF_U64 && le(kv->data, 8) > (uint64_t)INT64_MAX)
        return lc_error_set(err, "%s: key '%s' = %llu is too large", f->path,
                            lc_printable(key, kb, sizeof kb),
                            (unsigned long long)le(kv->data, 8));
    *out = lc_gguf_kv_int(kv, 0);
    return 0;
}

int lc_gguf_get_arr(const lc_gguf_file *f, const char *key, lc_gguf_vtype elem,
                    const lc_gguf_kv **out, lc_error *err)
{
    const lc_gguf_kv *kv = typed(f, key, LC_GGUF_ARRAY, err);
    if (!kv)
        return -1;
    if (kv->elem != elem) {
        char kb[200];
        return lc_error_set(err, "%s: key '%s' is an array of %s, expected an array of %s",
                            f->path, lc_printable(key, kb, sizeof kb),
                            lc_gguf_vtype_name(kv->elem), lc_gguf_vtype_name(elem));
    }
    *out = kv;
    return 0;
}

int64_t lc_gguf_kv_int(const lc_gguf_kv *kv, uint64_t i)
{
    lc_gguf_vtype t = kv->type == LC_GGUF_ARRAY ? kv->elem : kv->type;
    LC_ASSERT(i < kv->n && lc_gguf_vtype_size(t) > 0);
    const uint8_t *p = kv->data + i * lc_gguf_vtype_size(t);
    switch (t) {
    case LC_GGUF_U8: case LC_GGUF_BOOL: return p[0];
    case LC_GGUF_I8: return (int8_t)p[0];
    case LC_GGUF_U16: return (int64_t)le(p, 2);
    case LC_GGUF_I16: return (int16_t)(uint16_t)le(p, 2);
    case LC_GGUF_U32: return (int64_t)le(p, 4);
    case LC_GGUF_I32: return (int32_t)(uint32_t)le(p, 4);
    case LC_GGUF_U64: case LC_GGUF_I64: return (int64_t)le(p, 8);
    case LC_GGUF_F32:
    case LC_GGUF_F64: { /* truncated; saturated (a float cast out of range is undefined) */
        double v = lc_gguf_kv_float(kv, i);
        if (!(v == v))
            return 0;
        if (v >= 9223372036854775808.0)
            return INT64_MAX;
        if (v < -9223372036854775808.0)
            return INT64_MIN;
        return (int64_t)v;
    }
    default: return 0;
    }
}

double lc_gguf_kv_float(const lc_gguf_kv *kv, uint64_t i)
{
    lc_gguf_vtype t = kv->type == LC_GGUF_ARRAY ? kv->elem : kv->type;
    LC_ASSERT(i < kv->n && lc_gguf_vtype_size(t) > 0);
    const uint8_t *p = kv->data + i * lc_gguf_vtype_size(t);
    if (t == LC_GGUF_F32) {
        float v;
        memcpy(&v, p, 4);
        return v;
    }
    if (t == LC_GGUF_F64) {
        double v;
        memcpy(&v, p, 8);
        return v;
    }
    if (t == LC_GGUF_U64)
        return (double)le(p, 8);
    return (double)lc_gguf_kv_int(kv, i);
}

int lc_gguf_dequant_row(const lc_gguf_file *f, const lc_gguf_tensor *t, uint64_t row,
                        int64_t k0, int64_t n, float *out, lc_error *err)
{
    char nb[200];
    const lc_ggml_type_info *ti = lc_ggml_type_get(t->type);
    if (!ti->can_dequant)
        return lc_error_set(err, "%s: tensor '%s': ggml type %s cannot be dequantized (lorac "
                                 "reads F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K-Q6_K)",
                            f->path, lc_printable(t->name, nb, sizeof nb), ti->name);
    if (row >= t->nrows || k0 < 0 || n < 0 || k0 > t->ne[0] || n > t->ne[0] - k0)
        return lc_error_set(err, "%s: tensor '%s': row %llu elements [%lld, +%lld) outside "
                                 "its %llu rows of %lld",
                            f->path, lc_printable(t->name, nb, sizeof nb),
                            (unsigned long long)row, (long long)k0, (long long)n,
                            (unsigned long long)t->nrows, (long long)t->ne[0]);
    lc_ggml_dequant(t->type, t->data + row * t->row_bytes, k0, n, out);
    return 0;
}

/* safetensors.c — validating safetensors reader (mmap) and atomic writer.
 *
 * Reader: safetensors files arrive from the internet, so lc_st_parse checks
 * every rule of the format before any tensor pointer is handed out: header
 * length bounds, UTF-8 + JSON header (cJSON), per-entry dtype/shape/
 * data_offsets types, overflow-safe numel * size, exact contiguity of the
 * data from offset 0 to the last byte of the file, duplicate names (cJSON
 * keeps duplicate object keys, so they are detected after sorting) and a
 * string-only __metadata__. Tensors are kept sorted by name so lc_st_find is a
 * binary search. lc_st_open mmaps the file read-only; tensor data is never
 * copied.
 *
 * Writer: the header JSON is built by hand (cJSON prints large integers in
 * exponent form, which other readers reject), names are JSON-escaped, the
 * header is padded with spaces to a multiple of 8 and the data follows in
 * entry order. The file is written to PATH.tmp, fsynced and renamed over
 * PATH, so a crash never leaves a half-written file under the final name. */
#include "data/safetensors.h"
#include "data/file_map.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Largest integer a JSON number (parsed as a double) holds exactly. */
#define MAX_EXACT_INT 9007199254740992.0 /* 2^53 */

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

static uint64_t read_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void write_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* Strict UTF-8 check (no overlongs, no surrogates, max U+10FFFF). Returns the
 * offset of the first bad byte, or len when all is valid. */
static size_t utf8_bad_offset(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        unsigned lo = 0x80, hi = 0xbf;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            if (c == 0xe0)
                lo = 0xa0;
            else if (c == 0xed)
                hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            if (c == 0xf0)
                lo = 0x90;
            else if (c == 0xf4)
                hi = 0x8f;
        } else {
            return i;
        }
        if (len - i <= n)
            return i;
        for (size_t k = 1; k <= n; k++) {
            unsigned b = s[i + k];
            unsigned l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xbf;
            if (b < l || b > h)
                return i;
        }
        i += n + 1;
    }
    return len;
}

/* Formats a shape as "[a, b, c]" into buf. */
static const char *shape_str(const int64_t *shape, int ndim, char *buf, size_t n)
{
    size_t off = 0;
    off += (size_t)snprintf(buf + off, n - off, "[");
    for (int i = 0; i < ndim && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, "%s%lld", i ? ", " : "",
                                (long long)shape[i]);
    if (off < n)
        snprintf(buf + off, n - off, "]");
    return buf;
}

/* numel and byte size of a shape; -1 on overflow. */
static int shape_bytes(const int64_t *shape, int ndim, size_t elem, uint64_t *numel,
                       uint64_t *bytes)
{
    uint64_t ne = 1;
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0 || __builtin_mul_overflow(ne, (uint64_t)shape[i], &ne))
            return -1;
    *numel = ne;
    return __builtin_mul_overflow(ne, (uint64_t)elem, bytes) ? -1 : 0;
}

/* ------------------------------------------------------------------ */
/* reader                                                              */

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp(((const lc_st_tensor *)a)->name, ((const lc_st_tensor *)b)->name);
}

static int cmp_tensor_offset(const void *a, const void *b)
{
    const lc_st_tensor *x = *(const lc_st_tensor *const *)a;
    const lc_st_tensor *y = *(const lc_st_tensor *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return 0;
}

typedef struct meta_pair {
    const char *key, *value;
} meta_pair;

static int cmp_meta(const void *a, const void *b)
{
    return strcmp(((const meta_pair *)a)->key, ((const meta_pair *)b)->key);
}

/* A JSON number that is a non-negative integer exactly representable. Returns
 * 0 and the value, or -1 (what is wrong goes into *why). */
static int json_uint(const cJSON *v, uint64_t *out, const char **why)
{
    if (!cJSON_IsNumber(v)) {
        *why = "is not a number";
        return -1;
    }
    double d = v->valuedouble;
    if (d < 0) {
        *why = "is negative";
        return -1;
    }
    if (d > MAX_EXACT_INT) {
        *why = "is too large";
        return -1;
    }
    uint64_t u = (uint64_t)d;
    if ((double)u != d) {
        *why = "is not an integer";
        return -1;
    }
    *out = u;
    return 0;
}

static void free_tensors(lc_st_tensor *t, size_t n)
{
    if (!t)
        return;
    for (size_t i = 0; i < n; i++)
        free(t[i].name);
    free(t);
}

/* Parses the __metadata__ object into f->meta_*. */
static int parse_metadata(lc_st_file *f, const cJSON *md, const char *label, lc_error *err)
{
    if (!cJSON_IsObject(md))
        return lc_error_set(err, "%s: __metadata__ is not a JSON object", label);
    size_t n = 0;
    for (const cJSON *c = md->child; c; c = c->next)
        n++;
    if (n == 0)
        return 0;
    meta_pair *pairs = calloc(n, sizeof *pairs);
    f->meta_keys = calloc(n, sizeof *f->meta_keys);
    f->meta_values = calloc(n, sizeof *f->meta_values);
    if (!pairs || !f->meta_keys || !f->meta_values) {
        free(pairs);
        return lc_error_set(err, "%s: out of memory reading __metadata__", label);
    }
    char pb[256];
    size_t i = 0;
    for (const cJSON *c = md->child; c; c = c->next, i++) {
        if (!cJSON_IsString(c) || !c->valuestring) {
            free(pairs);
            return lc_error_set(err, "%s: __metadata__ value for '%s' is not a string",
                                label, lc_printable(c->string, pb, sizeof pb));
        }
        pairs[i].key = c->string;
        pairs[i].value = c->valuestring;
    }
    qsort(pairs, n, sizeof *pairs, cmp_meta);
    for (i = 1; i < n; i++) {
        if (strcmp(pairs[i - 1].key, pairs[i].key) == 0) {
            int rc = lc_error_set(err, "%s: duplicate __metadata__ key '%s'", label,
                                  lc_printable(pairs[i].key, pb, sizeof pb));
            free(pairs);
            return rc;
        }
    }
    for (i = 0; i < n; i++) {
        f->meta_keys[i] = strdup(pairs[i].key);
        f->meta_values[i] = strdup(pairs[i].value);
        f->n_meta = i + 1;
        if (!f->meta_keys[i] || !f->meta_values[i]) {
            free(pairs);
            return lc_error_set(err, "%s: out of memory reading __metadata__", label);
        }
    }
    free(pairs);
    return 0;
}

/* Fills t (name already set) from one header entry. data_size is the size
 * of the data buffer. */
static int parse_entry(lc_st_tensor *t, const cJSON *e, uint64_t data_size,
                       const char *label, lc_error *err)
{
    char nb[256], sb[256];
    const char *name = lc_printable(t->name, nb, sizeof nb);
    if (!cJSON_IsObject(e))
        return lc_error_set(err, "%s: tensor '%s': entry is not a JSON object", label, name);

    /* Each known key exactly once: with duplicates, readers would disagree. */
    const cJSON *dt = NULL, *sh = NULL, *off = NULL;
    for (const cJSON *c = e->child; c; c = c->next) {
        const cJSON **slot = strcmp(c->string, "dtype") == 0          ? &dt
                             : strcmp(c->string, "shape") == 0        ? &sh
                             : strcmp(c->string, "data_offsets") == 0 ? &off
                                                                      : NULL;
        if (!slot)
            continue; /* unknown keys are ignored, as the reference reader does */
        if (*slot)
            return lc_error_set(err, "%s: tensor '%s': duplicate key '%s'", label, name,
                                c->string);
        *slot = c;
    }

    if (!dt)
        return lc_error_set(err, "%s: tensor '%s': missing dtype", label, name);
    if (!cJSON_IsString(dt) || !dt->valuestring)
        return lc_error_set(err, "%s: tensor '%s': dtype is not a string", label, name);
    if (lc_dtype_from_name(dt->valuestring, &t->dtype) != 0)
        return lc_error_set(err, "%s: tensor '%s': unknown dtype '%s'", label, name,
                            lc_printable(dt->valuestring, sb, 64));

    if (!sh)
        return lc_error_set(err, "%s: tensor '%s': missing shape", label, name);
    if (!cJSON_IsArray(sh))
        return lc_error_set(err, "%s: tensor '%s': shape is not an array", label, name);
    int nd = cJSON_GetArraySize(sh);
    if (nd > LC_ST_MAX_DIMS)
        return lc_error_set(err, "%s: tensor '%s': shape has %d dims, at most %d allowed",
                            label, name, nd, LC_ST_MAX_DIMS);
    t->ndim = nd;
    int k = 0;
    for (const cJSON *d = sh->child; d; d = d->next, k++) {
        uint64_t v;
        const char *why;
        if (json_uint(d, &v, &why) != 0)
            return lc_error_set(err, "%s: tensor '%s': shape dim %d %s", label, name, k, why);
        t->shape[k] = (int64_t)v;
    }

    if (!off)
        return lc_error_set(err, "%s: tensor '%s': missing data_offsets", label, name);
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return lc_error_set(err, "%s: tensor '%s': data_offsets is not an array of 2 numbers",
                            label, name);
    const char *why;
    if (json_uint(off->child, &t->begin, &why) != 0)
        return lc_error_set(err, "%s: tensor '%s': data_offsets begin %s", label, name, why);
    if (json_uint(off->child->next, &t->end, &why) != 0)
        return lc_error_set(err, "%s: tensor '%s': data_offsets end %s", label, name, why);

    uint64_t bytes;
    if (shape_bytes(t->shape, t->ndim, lc_dtype_size(t->dtype), &t->numel, &bytes) != 0)
        return lc_error_set(err, "%s: tensor '%s': shape %s of %s overflows 64-bit byte size",
                            label, name, shape_str(t->shape, t->ndim, sb, sizeof sb),
                            lc_dtype_name(t->dtype));
    if (t->end < t->begin)
        return lc_error_set(err, "%s: tensor '%s': data_offsets end %llu < begin %llu", label,
                            name, (unsigned long long)t->end, (unsigned long long)t->begin);
    if (t->end - t->begin != bytes)
        return lc_error_set(err,
                            "%s: tensor '%s': shape/offset mismatch: %s %s needs %llu bytes "
                            "but data_offsets [%llu, %llu] span %llu",
                            label, name, lc_dtype_name(t->dtype),
                            shape_str(t->shape, t->ndim, sb, sizeof sb),
                            (unsigned long long)bytes, (unsigned long long)t->begin,
                            (unsigned long long)t->end,
                            (unsigned long long)(t->end - t->begin));
    if (t->end > data_size)
        return lc_error_set(err,
                            "%s: tensor '%s': data_offsets end %llu runs past the end of the "
                            "data (%llu bytes after the header)",
                            label, name, (unsigned long long)t->end,
                            (unsigned long long)data_size);
    return 0;
}

/* Checks that, sorted by offset, the tensors tile [0, data_size) exactly. */
static int check_layout(lc_st_tensor *t, size_t n, uint64_t data_size, const char *label,
                        lc_error *err)
{
    lc_st_tensor **by_off = malloc((n ? n : 1) * sizeof *by_off);
    if (!by_off)
        return lc_error_set(err, "%s: out of memory", label);
    for (size_t i = 0; i < n; i++)
        by_off[i] = &t[i];
    qsort(by_off, n, sizeof *by_off, cmp_tensor_offset);
    uint64_t expect = 0;
    char nb[256], pb[256];
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const lc_st_tensor *x = by_off[i];
        if (x->begin < expect)
            rc = lc_error_set(err,
                              "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' "
                              "(which ends at %llu)",
                              label, lc_printable(x->name, nb, sizeof nb),
                              (unsigned long long)x->begin, (unsigned long long)x->end,
                              lc_printable(by_off[i - 1]->name, pb, sizeof pb),
                              (unsigned long long)expect);
        else if (x->begin > expect)
            rc = lc_error_set(err,
                              "%s: tensor '%s': gap in the data: begins at %llu, previous "
                              "data ends at %llu",
                              label, lc_printable(x->name, nb, sizeof nb),
                              (unsigned long long)x->begin, (unsigned long long)expect);
        expect = x->end;
    }
    free(by_off);
    if (rc == 0 && expect != data_size) /* expect > data_size was caught per tensor */
        rc = lc_error_set(err, "%s: %llu trailing bytes after the last tensor's data", label,
                          (unsigned long long)(data_size - expect));
    return rc;
}

/* Parses buf into f (f->path set by the caller). On failure f is partly
 * filled; the caller cleans up. */
static int parse_image(lc_st_file *f, const unsigned char *buf, size_t size,
                       const char *label, lc_error *err)
{
    if (size < 8)
        return lc_error_set(err, "%s: file too short (%zu bytes) to hold the 8-byte header "
                            "length", label, size);
    uint64_t hlen = read_le64(buf);
    if (hlen > LC_ST_MAX_HEADER)
        return lc_error_set(err, "%s: header length %llu exceeds the limit of %llu bytes",
                            label, (unsigned long long)hlen, LC_ST_MAX_HEADER);
    if (hlen > size - 8)
        return lc_error_set(err, "%s: header length %llu runs past the end of the file "
                            "(%zu bytes)", label, (unsigned long long)hlen, size);
    const unsigned char *hdr = buf + 8;
    uint64_t data_size = size - 8 - hlen;

    size_t bad = utf8_bad_offset(hdr, hlen);
    if (bad != hlen)
        return lc_error_set(err, "%s: header is not valid UTF-8 (at header byte %zu)", label,
                            bad);
    if (memchr(hdr, 0, hlen))
        return lc_error_set(err, "%s: header contains a NUL byte", label);

    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)hdr, hlen, &end, 0);
    if (!root) {
        size_t at = end ? (size_t)(end - (const char *)hdr) : 0;
        return lc_error_set(err, "%s: header is not valid JSON (near header byte %zu)", label,
                            at);
    }
    for (const char *p = end; p < (const char *)hdr + hlen; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return lc_error_set(err, "%s: header is not valid JSON (unexpected data after the "
                                "top-level value at header byte %zu)",
                                label, (size_t)(p - (const char *)hdr));
        }
    }
    int rc = 0;
    if (!cJSON_IsObject(root)) {
        rc = lc_error_set(err, "%s: header JSON is not an object", label);
        goto out;
    }

    size_t n = 0;
    const cJSON *md = NULL;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (strcmp(c->string, "__metadata__") == 0) {
            if (md) {
                rc = lc_error_set(err, "%s: duplicate __metadata__", label);
                goto out;
            }
            md = c;
        } else {
            n++;
        }
    }
    if (md && (rc = parse_metadata(f, md, label, err)) != 0)
        goto out;

    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    if (!f->tensors) {
        rc = lc_error_set(err, "%s: out of memory for %zu tensors", label, n);
        goto out;
    }
    for (const cJSON *c = root->child; c; c = c->next) {
        if (c == md)
            continue;
        lc_st_tensor *t = &f->tensors[f->n_tensors];
        if (!(t->name = strdup(c->string))) {
            rc = lc_error_set(err, "%s: out of memory", label);
            goto out;
        }
        f->n_tensors++;
        if ((rc = parse_entry(t, c, data_size, label, err)) != 0)
            goto out;
    }

    qsort(f->tensors, n, sizeof *f->tensors, cmp_tensor_name);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(f->tensors[i - 1].name, f->tensors[i].name) == 0) {
            char nb[256];
            rc = lc_error_set(err, "%s: duplicate tensor name '%s'", label,
                              lc_printable(f->tensors[i].name, nb, sizeof nb));
            goto out;
        }
    }
    if ((rc = check_layout(f->tensors, n, data_size, label, err)) != 0)
        goto out;

    const unsigned char *data = buf + 8 + hlen;
    for (size_t i = 0; i < n; i++)
        f->tensors[i].data = data + f->tensors[i].begin;
out:
    cJSON_Delete(root);
    return rc;
}

/* Frees everything but leaves the mapping alone. */
static void free_parsed(lc_st_file *f)
{
    free_tensors(f->tensors, f->n_tensors);
    for (size_t i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    free(f->path);
}

int lc_st_parse(lc_st_file *f, const void *buf, size_t size, const char *label,
                lc_error *err)
{
    memset(f, 0, sizeof *f);
    if (!label)
        label = "<memory>";
    if (!(f->path = strdup("<memory>")))
        return lc_error_set(err, "%s: out of memory", label);
    if (parse_image(f, buf, size, label, err) != 0) {
        free_parsed(f);
        memset(f, 0, sizeof *f);
        return -1;
    }
    return 0;
}

int lc_st_open(lc_st_file *f, const char *path, lc_error *err)
{
    memset(f, 0, sizeof *f);
    void *map;
    size_t size;
    if (lc_file_map(path, &map, &size, err))
        return -1;
    if (size < 8) { /* no header length: the parser reports it */
        lc_file_unmap(map, size);
        unsigned char tiny[8] = {0};
        return parse_image(f, tiny, size, path, err);
    }
    if (!(f->path = strdup(path))) {
        lc_file_unmap(map, size);
        return lc_error_set(err, "%s: out of memory", path);
    }
    if (parse_image(f, map, size, path, err) != 0) {
        free_parsed(f);
        lc_file_unmap(map, size);
        memset(f, 0, sizeof *f);
        return -1;
    }
    f->map = map;
    f->map_size = size;
    return 0;
}

void lc_st_close(lc_st_file *f)
{
    if (!f)
        return;
    free_parsed(f);
    lc_file_unmap(f->map, f->map_size);
    memset(f, 0, sizeof *f);
}

const lc_st_tensor *lc_st_find(const lc_st_file *f, const char *name)
{
    size_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, f->tensors[mid].name);
        if (c == 0)
            return &f->tensors[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *lc_st_meta(const lc_st_file *f, const char *key)
{
    /* meta_keys are sorted (parse_metadata sorts them) */
    size_t lo = 0, hi = f->n_meta;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(key, f->meta_keys[mid]);
        if (c == 0)
            return f->meta_values[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* writer                                                              */

typedef struct strbuf {
    char *p;
    size_t len, cap;
    bool oom;
} strbuf;

static void sb_put(strbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(strbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    LC_ASSERT(n >= 0 && (size_t)n < sizeof tmp);
    sb_put(b, tmp, (size_t)n);
}

/* Appends s as a JSON string literal. s is valid UTF-8 (checked earlier). */
static void sb_json_str(strbuf *b, const char *s)
{
    sb_puts(b, "\"");
    const char *run = s;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        sb_put(b, run, (size_t)(s - run));
        switch (c) {
        case '"': sb_puts(b, "\\\""); break;
        case '\\': sb_puts(b, "\\\\"); break;
        case '\n': sb_puts(b, "\\n"); break;
        case '\r': sb_puts(b, "\\r"); break;
        case '\t': sb_puts(b, "\\t"); break;
        case '\b': sb_puts(b, "\\b"); break;
        case '\f': sb_puts(b, "\\f"); break;
        default: sb_printf(b, "\\u%04x", c); break;
        }
        run = s + 1;
    }
    sb_put(b, run, (size_t)(s - run));
    sb_puts(b, "\"");
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Reports the first duplicate among n strings (sorted copy). Returns it or NULL;
 * *oom set when the copy could not be made. */
static const char *find_duplicate(const char *const *names, size_t n, bool *oom)
{
    *oom = false;
    if (n < 2)
        return NULL;
    const char **s = malloc(n * sizeof *s);
    if (!s) {
        *oom = true;
        return NULL;
    }
    memcpy(s, names, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_str_ptr);
    const char *dup = NULL;
    for (size_t i = 1; i < n && !dup; i++)
        if (strcmp(s[i - 1], s[i]) == 0)
            dup = s[i];
    free(s);
    return dup;
}

static bool is_utf8(const char *s)
{
    size_t n = strlen(s);
    return utf8_bad_offset((const unsigned char *)s, n) == n;
}

static int write_all(int fd, const void *p, uint64_t n)
{
    const unsigned char *c = p;
    while (n > 0) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : (size_t)n;
        ssize_t w = write(fd, c, chunk);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        c += w;
        n -= (uint64_t)w;
    }
    return 0;
}

/* Validates entries and metadata and builds the padded header JSON. */
/* qsort has no context argument: the entries being ordered (set by the
 * caller right before sorting; lc_st_write is not used concurrently). */
static const lc_st_entry *layout_entries;

static int cmp_layout(const void *a, const void *b)
{
    const lc_st_entry *x = &layout_entries[*(const size_t *)a];
    const lc_st_entry *y = &layout_entries[*(const size_t *)b];
    size_t sx = lc_dtype_size(x->dtype), sy = lc_dtype_size(y->dtype);
    if (sx != sy)
        return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int build_header(strbuf *b, const char *path, const lc_st_entry *entries, size_t n,
                        const char *const *meta_keys, const char *const *meta_values,
                        size_t n_meta, uint64_t *sizes, size_t *order, lc_error *err)
{
    char nb[256], sb[256];
    const char **names = malloc((n ? n : 1) * sizeof *names);
    if (!names)
        return lc_error_set(err, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) {
        const lc_st_entry *e = &entries[i];
        if (!e->name) {
            free(names);
            return lc_error_set(err, "%s: entry %zu has no name", path, i);
        }
        names[i] = e->name;
        const char *name = lc_printable(e->name, nb, sizeof nb);
        const char *bad = NULL;
        uint64_t numel;
        if (!is_utf8(e->name))
            bad = "name is not valid UTF-8";
        else if (strcmp(e->name, "__metadata__") == 0)
            bad = "name __metadata__ is reserved";
        else if ((unsigned)e->dtype >= LC_DTYPE_COUNT)
            bad = "invalid dtype";
        else if (e->ndim < 0 || e->ndim > LC_ST_MAX_DIMS)
            bad = "ndim must be 0..8";
        else if (e->ndim > 0 && !e->shape)
            bad = "no shape";
        if (!bad) {
            for (int k = 0; k < e->ndim; k++)
                if (e->shape[k] < 0)
                    bad = "negative shape dim";
        }
        if (!bad && shape_bytes(e->shape, e->ndim, lc_dtype_size(e->dtype), &numel,
                                &sizes[i]) != 0)
            bad = "shape overflows 64-bit byte size";
        if (!bad && sizes[i] > 0 && !e->data)
            bad = "no data";
        if (bad) {
            free(names);
            if (e->ndim >= 0 && e->ndim <= LC_ST_MAX_DIMS && (e->shape || e->ndim == 0))
                return lc_error_set(err, "%s: tensor '%s' %s: %s", path, name,
                                    shape_str(e->shape, e->ndim, sb, sizeof sb), bad);
            return lc_error_set(err, "%s: tensor '%s': %s (ndim %d)", path, name, bad,
                                e->ndim);
        }
    }
    bool oom;
    const char *dup = find_duplicate(names, n, &oom);
    free(names);
    if (oom)
        return lc_error_set(err, "%s: out of memory", path);
    if (dup)
        return lc_error_set(err, "%s: duplicate tensor name '%s'", path,
                            lc_printable(dup, nb, sizeof nb));
    for (size_t i = 0; i < n_meta; i++) {
        if (!meta_keys[i] || !meta_values[i])
            return lc_error_set(err, "%s: __metadata__ entry %zu is NULL", path, i);
        if (!is_utf8(meta_keys[i]) || !is_utf8(meta_values[i]))
            return lc_error_set(err, "%s: __metadata__ '%s' is not valid UTF-8", path,
                                lc_printable(meta_keys[i], nb, sizeof nb));
    }
    if ((dup = find_duplicate(meta_keys, n_meta, &oom)) || oom)
        return oom ? lc_error_set(err, "%s: out of memory", path)
                   : lc_error_set(err, "%s: duplicate __metadata__ key '%s'", path,
                                  lc_printable(dup, nb, sizeof nb));

    for (size_t i = 0; i < n; i++)
        order[i] = i;
    layout_entries = entries;
    qsort(order, n, sizeof *order, cmp_layout);

    sb_puts(b, "{");
    bool first = true;
    if (n_meta > 0) {
        sb_puts(b, "\"__metadata__\":{");
        for (size_t i = 0; i < n_meta; i++) {
            if (i)
                sb_puts(b, ",");
            sb_json_str(b, meta_keys[i]);
            sb_puts(b, ":");
            sb_json_str(b, meta_values[i]);
        }
        sb_puts(b, "}");
        first = false;
    }
    uint64_t off = 0;
    for (size_t k = 0; k < n; k++) {
        size_t i = order[k];
        const lc_st_entry *e = &entries[i];
        uint64_t end;
        if (__builtin_add_overflow(off, sizes[i], &end))
            return lc_error_set(err, "%s: total data size overflows", path);
        if (!first)
            sb_puts(b, ",");
        first = false;
        sb_json_str(b, e->name);
        sb_printf(b, ":{\"dtype\":\"%s\",\"shape\":[", lc_dtype_name(e->dtype));
        for (int k = 0; k < e->ndim; k++)
            sb_printf(b, "%s%lld", k ? "," : "", (long long)e->shape[k]);
        sb_printf(b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                  (unsigned long long)end);
        off = end;
    }
    sb_puts(b, "}");
    while (!b->oom && b->len % 8 != 0)
        sb_puts(b, " ");
    if (b->oom)
        return lc_error_set(err, "%s: out of memory building the header", path);
    if (b->len > LC_ST_MAX_HEADER)
        return lc_error_set(err, "%s: header of %zu bytes exceeds the limit of %llu", path,
                            b->len, LC_ST_MAX_HEADER);
    return 0;
}

int lc_st_write(const char *path, const lc_st_entry *entries, size_t n,
                const char *const *meta_keys, const char *const *meta_values,
                size_t n_meta, lc_error *err)
{
    strbuf hb = {0};
    char *tmp = NULL;
    int fd = -1;
    int rc = -1;
    uint64_t *sizes = calloc(n ? n : 1, sizeof *sizes);
    size_t *order = NULL;
    if (!sizes) {
        lc_error_set(err, "%s: out of memory", path);
        goto out;
    }
    /* Data layout as the reference writer orders it: larger elements first,
     * then by name. With the header padded to 8 bytes, every tensor then
     * starts aligned to its element size, so readers can use it in place. */
    if (!(order = malloc((n ? n : 1) * sizeof *order))) {
        lc_error_set(err, "%s: out of memory", path);
        goto out;
    }
    if (build_header(&hb, path, entries, n, meta_keys, meta_values, n_meta, sizes, order, err) != 0)
        goto out;

    size_t plen = strlen(path);
    if (!(tmp = malloc(plen + 5))) {
        lc_error_set(err, "%s: out of memory", path);
        goto out;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        lc_error_set(err, "%s: cannot create %s: %s", path, tmp, strerror(errno));
        goto out;
    }
    unsigned char len8[8];
    write_le64(len8, hb.len);
    if (write_all(fd, len8, 8) != 0 || write_all(fd, hb.p, hb.len) != 0)
        goto write_failed;
    for (size_t k = 0; k < n; k++)
        if (sizes[order[k]] && write_all(fd, entries[order[k]].data, sizes[order[k]]) != 0)
            goto write_failed;
    if (fsync(fd) != 0) {
        lc_error_set(err, "%s: fsync of %s failed: %s", path, tmp, strerror(errno));
        goto fail_unlink;
    }
    int cfd = fd;
    fd = -1;
    if (close(cfd) != 0) {
        lc_error_set(err, "%s: close of %s failed: %s", path, tmp, strerror(errno));
        goto fail_unlink;
    }
    if (rename(tmp, path) != 0) {
        lc_error_set(err, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
        goto fail_unlink;
    }
    /* Best effort: make the rename itself durable. */
    {
        char *dir = strdup(path);
        if (dir) {
            char *slash = strrchr(dir, '/');
            const char *d = slash ? (slash == dir ? "/" : (*slash = '\0', dir)) : ".";
            int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dfd >= 0) {
                (void)fsync(dfd);
                close(dfd);
            }
            free(dir);
        }
    }
    rc = 0;
    goto out;

write_failed:
    lc_error_set(err, "%s: write to %s failed: %s", path, tmp, strerror(errno));
fail_unlink:
    if (fd >= 0)
        close(fd);
    fd = -1;
    unlink(tmp);
out:
    if (fd >= 0)
        close(fd);
    free(tmp);
    free(hb.p);
    free(sizes);
    free(order);
    return rc;
}

/* gguf.h — read (mmap, fully validated) GGUF v2/v3 files: llama.cpp's model
 * format (layout in ../shared/FORMATS.md and at the top of gguf.c).
 *
 * Files come from the internet, so the reader trusts nothing: every count,
 * length, type, dimension and offset is checked with overflow-safe
 * arithmetic before it is used, and every failure is one lc_error line
 * naming the file, the key or tensor, and what is wrong. lc_gguf_parse works
 * on any memory buffer (fuzzers, tests); lc_gguf_open mmaps a file read-only
 * and parses the mapping, so tensor data and metadata values are never
 * copied. Tensor data is dequantized with data/ggml_quants.h. */
#ifndef LC_GGUF_H
#define LC_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "autograd/error.h"
#include "data/ggml_quants.h"

#define LC_GGUF_MAX_DIMS 4
#define LC_GGUF_MAX_NAME 65535u             /* bytes of a key or tensor name */
#define LC_GGUF_MAX_TENSORS (1u << 20)
#define LC_GGUF_MAX_KV (1u << 20)
#define LC_GGUF_MAX_META (1ull << 30)       /* bytes of header + metadata + tensor infos */
#define LC_GGUF_DEFAULT_ALIGNMENT 32u

/* Metadata value types, as stored in the file. */
typedef enum lc_gguf_vtype {
    LC_GGUF_U8 = 0,
    LC_GGUF_I8 = 1,
    LC_GGUF_U16 = 2,
    LC_GGUF_I16 = 3,
    LC_GGUF_U32 = 4,
    LC_GGUF_I32 = 5,
    LC_GGUF_F32 = 6,
    LC_GGUF_BOOL = 7,
    LC_GGUF_STRING = 8,
    LC_GGUF_ARRAY = 9,
    LC_GGUF_U64 = 10,
    LC_GGUF_I64 = 11,
    LC_GGUF_F64 = 12,
} lc_gguf_vtype;

/* A string inside the mapping: len bytes, not NUL-terminated, may hold any
 * byte (NUL included) — keys and tensor names excepted. */
typedef struct lc_gguf_str {
    const char *ptr;
    uint64_t len;
} lc_gguf_str;

typedef struct lc_gguf_kv {
    char *key;              /* owned, NUL-terminated (keys never hold NUL) */
    lc_gguf_vtype type;
    lc_gguf_vtype elem;     /* element type when type == ARRAY (never ARRAY) */
    uint64_t n;             /* array length; 1 for a scalar */
    const uint8_t *data;    /* in the mapping, unaligned, little-endian: the scalar,
                               or the n elements (for a string: its bytes) */
    lc_gguf_str *strs;      /* owned, [n]: the strings of a STRING value or array */
} lc_gguf_kv;

typedef struct lc_gguf_tensor {
    char *name;             /* owned, NUL-terminated */
    uint32_t type;          /* lc_ggml_type id (known to lc_ggml_type_get) */
    int n_dims;             /* 1..LC_GGUF_MAX_DIMS */
    int64_t ne[LC_GGUF_MAX_DIMS]; /* ggml order: ne[0] is the row (contiguous) length,
                                     reversed from torch; ne[i] = 1 for i >= n_dims */
    uint64_t numel;         /* ne[0]·ne[1]·ne[2]·ne[3] */
    uint64_t nrows;         /* numel / ne[0] */
    uint64_t row_bytes;     /* ne[0] / block_size · type_size */
    uint64_t nbytes;        /* nrows · row_bytes */
    uint64_t offset;        /* relative to the data section, aligned */
    const uint8_t *data;    /* in the mapping: row r starts at data + r·row_bytes */
} lc_gguf_tensor;

typedef struct lc_gguf_file {
    char *path;             /* owned; the label for lc_gguf_parse */
    void *map;              /* mmap base (NULL for lc_gguf_parse) */
    size_t map_size;
    uint32_t version;       /* 2 or 3 */
    uint32_t alignment;     /* general.alignment or 32 */
    uint64_t data_start;    /* byte offset of the data section */
    lc_gguf_kv *kvs;        /* owned, in file order */
    size_t n_kv;
    lc_gguf_tensor *tensors; /* owned, in file order */
    size_t n_tensors;
    size_t *kv_sorted, *tensor_sorted; /* owned: indices sorted by name (lookups) */
} lc_gguf_file;

/* Parses a complete GGUF image in buf[0..size); buf must outlive f. `label`
 * names the source in error messages. On failure f is left zeroed. */
int lc_gguf_parse(lc_gguf_file *f, const void *buf, size_t size, const char *label,
                  lc_error *err);
/* mmaps and parses path. */
int lc_gguf_open(lc_gguf_file *f, const char *path, lc_error *err);
void lc_gguf_close(lc_gguf_file *f);

/* Lookups by exact name (binary search); NULL when absent. */
const lc_gguf_kv *lc_gguf_find_kv(const lc_gguf_file *f, const char *key);
const lc_gguf_tensor *lc_gguf_find_tensor(const lc_gguf_file *f, const char *name);

/* Size of one scalar of a value type; 0 for STRING / ARRAY / unknown. */
uint64_t lc_gguf_vtype_size(uint32_t t);

/* "uint32", "string", "array", ... for messages. */
const char *lc_gguf_vtype_name(lc_gguf_vtype t);

/* Typed getters: 0 and the value, or -1 with "FILE: key 'K' is missing" /
 * "FILE: key 'K' is a string, expected uint32". Strictly typed, as
 * llama.cpp reads them (a uint32 key is not read as uint64). */
int lc_gguf_get_u32(const lc_gguf_file *f, const char *key, uint32_t *out, lc_error *err);
int lc_gguf_get_i32(const lc_gguf_file *f, const char *key, int32_t *out, lc_error *err);
int lc_gguf_get_u64(const lc_gguf_file *f, const char *key, uint64_t *out, lc_error *err);
int lc_gguf_get_f32(const lc_gguf_file *f, const char *key, float *out, lc_error *err);
int lc_gguf_get_bool(const lc_gguf_file *f, const char *key, int *out, lc_error *err);
int lc_gguf_get_str(const lc_gguf_file *f, const char *key, lc_gguf_str *out, lc_error *err);
/* Any integer type whose value fits int64 (counts stored as u32 or u64
 * alike by different converters). */
int lc_gguf_get_int(const lc_gguf_file *f, const char *key, int64_t *out, lc_error *err);
/* An array of element type `elem`: its kv (n, data, strs). */
int lc_gguf_get_arr(const lc_gguf_file *f, const char *key, lc_gguf_vtype elem,
                    const lc_gguf_kv **out, lc_error *err);

/* Element i of a numeric array (or the scalar when i == 0), converted to
 * int64 / double; the caller checked the type and i < n. A float read as
 * int64 is truncated and saturated (NaN gives 0); a uint64 above INT64_MAX
 * wraps (lc_gguf_get_int refuses it). */
int64_t lc_gguf_kv_int(const lc_gguf_kv *kv, uint64_t i);
double lc_gguf_kv_float(const lc_gguf_kv *kv, uint64_t i);

/* Dequantizes elements [k0, k0+n) of row `row` (0 ≤ row < nrows) of t into
 * out; -1 with a message when t's type has no dequantizer or the range is
 * outside the row. */
int lc_gguf_dequant_row(const lc_gguf_file *f, const lc_gguf_tensor *t, uint64_t row,
                        int64_t k0, int64_t n, float *out, lc_error *err);

#endif

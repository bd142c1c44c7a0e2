/* gguf_write.h — write GGUF v3 files (llama.cpp's model format; layout in
 * ../shared/FORMATS.md and gguf.c), streamed: the metadata and the tensor
 * infos (name, shape, ggml type) are declared first and written as one
 * header, then each tensor's data is written in the declared order, so a
 * writer never holds more than the tensor at hand.
 *
 * Values are little-endian; every tensor's data starts at a multiple of the
 * alignment (general.alignment, 32 by default) from the data section, as
 * gguf-py's GGUFWriter lays it out. Sizes come from the ggml type table
 * (data/ggml_quants.h). */
#ifndef LC_GGUF_WRITE_H
#define LC_GGUF_WRITE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "autograd/error.h"
#include "data/gguf.h"

typedef struct lc_gguf_writer lc_gguf_writer;

/* A writer with the given data alignment (a power of two; 32 is llama.cpp's
 * default). NULL when out of memory. */
lc_gguf_writer *lc_gguf_writer_new(uint32_t alignment);
void lc_gguf_writer_free(lc_gguf_writer *w);

/* Metadata, in the order they are added (a key added twice is an error
 * reported by lc_gguf_write_header). Out of memory is reported there too. */
void lc_gguf_add_u32(lc_gguf_writer *w, const char *key, uint32_t v);
void lc_gguf_add_i32(lc_gguf_writer *w, const char *key, int32_t v);
void lc_gguf_add_f32(lc_gguf_writer *w, const char *key, float v);
void lc_gguf_add_bool(lc_gguf_writer *w, const char *key, int v);
void lc_gguf_add_str(lc_gguf_writer *w, const char *key, const char *s, size_t len);
/* Arrays: strings (strs[i] of lens[i] bytes), int32, float32. */
void lc_gguf_add_arr_str(lc_gguf_writer *w, const char *key, const char *const *strs,
                         const size_t *lens, size_t n);
void lc_gguf_add_arr_i32(lc_gguf_writer *w, const char *key, const int32_t *v, size_t n);
void lc_gguf_add_arr_f32(lc_gguf_writer *w, const char *key, const float *v, size_t n);

/* A key/value of a file read by data/gguf.h, copied as it is (same key,
 * type and value bytes). */
void lc_gguf_add_kv(lc_gguf_writer *w, const lc_gguf_kv *kv);

/* Declares the next tensor: ne in ggml order (ne[0] the row length), type an
 * lc_ggml_type whose block size divides ne[0]. Returns its index, or -1. */
int lc_gguf_add_tensor(lc_gguf_writer *w, const char *name, int n_dims, const int64_t *ne,
                       uint32_t type, lc_error *err);
/* Bytes of tensor i's data. */
uint64_t lc_gguf_tensor_nbytes(const lc_gguf_writer *w, int i);

/* Header: magic, version 3, counts, metadata, tensor infos, padding. */
int lc_gguf_write_header(lc_gguf_writer *w, FILE *f, lc_error *err);
/* The data of the next tensor (exactly lc_gguf_tensor_nbytes bytes), then
 * the padding to the alignment; tensors must come in declared order. */
int lc_gguf_write_tensor(lc_gguf_writer *w, FILE *f, const void *data, uint64_t nbytes,
                         lc_error *err);

#endif

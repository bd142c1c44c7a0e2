/* protobuf.h — a tiny protocol-buffer encoder and a bounded field reader
 * (the wire format only: varints, fixed 32/64-bit little-endian,
 * length-delimited fields), enough to write TensorBoard's Event messages
 * (train/tfevents.c) and to read SentencePiece's ModelProto
 * (data/spm_model.c) from untrusted bytes.
 *
 * A field is a key varint (field_number << 3 | wire type) followed by its
 * value: wire type 0 = varint (int64, enum, bool), 1 = 8 bytes (double),
 * 5 = 4 bytes (float), 2 = varint length + bytes (string, bytes, embedded
 * message). An embedded message is encoded into its own lc_pb first and
 * then appended with lc_pb_bytes. Memory errors are sticky: after one, every
 * call is a no-op and lc_pb.oom stays set, so a caller checks once. */
#ifndef LC_PROTOBUF_H
#define LC_PROTOBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct lc_pb {
    uint8_t *p;        /* malloc'd; NULL while empty */
    size_t len, cap;
    bool oom;
} lc_pb;

enum { LC_PB_VARINT = 0, LC_PB_I64 = 1, LC_PB_LEN = 2, LC_PB_I32 = 5 };

void lc_pb_free(lc_pb *b);
/* Appends raw bytes (no key). */
void lc_pb_raw(lc_pb *b, const void *data, size_t n);
/* A bare varint (no key). */
void lc_pb_varint(lc_pb *b, uint64_t v);
/* Fields: key then value. Negative int64 values are 10-byte varints, as
 * protobuf encodes int64. */
void lc_pb_int(lc_pb *b, int field, int64_t v);
void lc_pb_double(lc_pb *b, int field, double v);
void lc_pb_float(lc_pb *b, int field, float v);
void lc_pb_bytes(lc_pb *b, int field, const void *data, size_t n);
void lc_pb_string(lc_pb *b, int field, const char *s);
/* An embedded message: the bytes of sub (its oom carried over). */
void lc_pb_message(lc_pb *b, int field, const lc_pb *sub);

/* ---- reading: one field at a time from a buffer that is never read past */

typedef struct lc_pb_field {
    uint32_t number;     /* field number, 1 .. 2^29-1 */
    int wire;            /* LC_PB_VARINT / I64 / LEN / I32 */
    uint64_t v;          /* VARINT: the value; I32/I64: the little-endian bits */
    const uint8_t *data; /* LEN: the bytes (len of them) inside the buffer */
    size_t len;
} lc_pb_field;

/* A varint at *p (before end): 0 with *p past it, or -1 when it is cut off
 * by end or does not fit 64 bits (more than 10 bytes, or a 10th byte over 1). */
int lc_pb_read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v);
/* The field at *p (before end): its key and value, *p past it; -1 with *why
 * (a static phrase) for a cut-off key or value, field number 0 or past
 * 2^29-1, a length past end, or a wire type other than 0, 1, 2, 5 (groups,
 * deprecated, are refused). */
int lc_pb_read_field(const uint8_t **p, const uint8_t *end, lc_pb_field *f, const char **why);

#endif

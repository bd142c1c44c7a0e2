/* protobuf.h — a tiny protocol-buffer encoder (the wire format only:
 * varints, fixed 32/64-bit little-endian, length-delimited fields), enough
 * to write TensorBoard's Event messages (train/tfevents.c).
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

#endif

/* protobuf.c — see protobuf.h. */
#include "train/protobuf.h"

#include <stdlib.h>
#include <string.h>

void lc_pb_free(lc_pb *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

static bool reserve(lc_pb *b, size_t n)
{
    if (b->oom)
        return false;
    if (b->len + n <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void lc_pb_raw(lc_pb *b, const void *data, size_t n)
{
    if (n && reserve(b, n)) {
        memcpy(b->p + b->len, data, n);
        b->len += n;
    }
}

void lc_pb_varint(lc_pb *b, uint64_t v)
{
    uint8_t buf[10];
    size_t n = 0;
    do {
        buf[n] = (uint8_t)(v & 0x7F);
        v >>= 7;
        if (v)
            buf[n] |= 0x80;
        n++;
    } while (v);
    lc_pb_raw(b, buf, n);
}

static void key(lc_pb *b, int field, int wire)
{
    lc_pb_varint(b, (uint64_t)field << 3 | (uint64_t)wire);
}

static void little_endian(lc_pb *b, uint64_t v, int n)
{
    uint8_t buf[8];
    for (int i = 0; i < n; i++)
        buf[i] = (uint8_t)(v >> (8 * i));
    lc_pb_raw(b, buf, (size_t)n);
}

void lc_pb_int(lc_pb *b, int field, int64_t v)
{
    key(b, field, LC_PB_VARINT);
    lc_pb_varint(b, (uint64_t)v);
}

void lc_pb_double(lc_pb *b, int field, double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    key(b, field, LC_PB_I64);
    little_endian(b, u, 8);
}

void lc_pb_float(lc_pb *b, int field, float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    key(b, field, LC_PB_I32);
    little_endian(b, u, 4);
}

void lc_pb_bytes(lc_pb *b, int field, const void *data, size_t n)
{
    key(b, field, LC_PB_LEN);
    lc_pb_varint(b, n);
    lc_pb_raw(b, data, n);
}

void lc_pb_string(lc_pb *b, int field, const char *s)
{
    lc_pb_bytes(b, field, s, strlen(s));
}

void lc_pb_message(lc_pb *b, int field, const lc_pb *sub)
{
    if (sub->oom)
        b->oom = true;
    lc_pb_bytes(b, field, sub->p, sub->len);
}

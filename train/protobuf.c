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

int lc_pb_read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    const uint8_t *q = *p;
    for (int i = 0; i < 10; i++) {
        if (q >= end)
            return -1;
        uint8_t b = *q++;
        if (i == 9 && b > 1) /* bits past 64 */
            return -1;
        r |= (uint64_t)(b & 0x7F) << (7 * i);
        if (!(b & 0x80)) {
            *p = q;
            *v = r;
            return 0;
        }
    }
    return -1;
}

int lc_pb_read_field(const uint8_t **p, const uint8_t *end, lc_pb_field *f, const char **why)
{
    uint64_t k;
    memset(f, 0, sizeof *f);
    if (lc_pb_read_varint(p, end, &k)) {
        *why = "a field key is cut off or overlong";
        return -1;
    }
    if ((k >> 3) == 0 || (k >> 3) > 0x1FFFFFFFu) {
        *why = "a field number is 0 or past 2^29-1";
        return -1;
    }
    f->number = (uint32_t)(k >> 3);
    f->wire = (int)(k & 7);
    size_t left;
    switch (f->wire) {
    case LC_PB_VARINT:
        if (lc_pb_read_varint(p, end, &f->v)) {
            *why = "a varint value is cut off or overlong";
            return -1;
        }
        return 0;
    case LC_PB_I64:
    case LC_PB_I32: {
        size_t n = f->wire == LC_PB_I64 ? 8 : 4;
        if ((size_t)(end - *p) < n) {
            *why = "a fixed-width value is cut off";
            return -1;
        }
        for (size_t i = 0; i < n; i++)
            f->v |= (uint64_t)(*p)[i] << (8 * i);
        *p += n;
        return 0;
    }
    case LC_PB_LEN:
        if (lc_pb_read_varint(p, end, &f->v)) {
            *why = "a length is cut off or overlong";
            return -1;
        }
        left = (size_t)(end - *p);
        if (f->v > left) {
            *why = "a length runs past the end of its message";
            return -1;
        }
        f->data = *p;
        f->len = (size_t)f->v;
        *p += f->len;
        return 0;
    default:
        *why = "a wire type other than varint, fixed 32/64 or length-delimited";
        return -1;
    }
}

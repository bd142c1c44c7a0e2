/* arena.c — see arena.h. */
#include "arena.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int lc_arena_init(lc_arena *a, const char *name, size_t capacity, lc_error *err)
{
    memset(a, 0, sizeof *a);
    a->name = name;
    capacity = (capacity + 4095) & ~(size_t)4095;
    if (capacity == 0)
        capacity = 4096;
    void *p = mmap(NULL, capacity, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return lc_error_set(err, "%s arena: cannot reserve %.1f MiB: %s", name,
                            capacity / 1048576.0, strerror(errno));
    a->base = p;
    a->capacity = capacity;
    return 0;
}

int lc_arena_init_dry(lc_arena *a, const char *name, lc_error *err)
{
    for (int shift = 46; shift >= 32; shift--) {
        if (lc_arena_init(a, name, (size_t)1 << shift, NULL) == 0)
            return 0;
    }
    return lc_arena_init(a, name, (size_t)1 << 31, err);
}

void lc_arena_free(lc_arena *a)
{
    if (a->base)
        munmap(a->base, a->capacity);
    memset(a, 0, sizeof *a);
}

void *lc_arena_alloc(lc_arena *a, size_t bytes)
{
    size_t start = (a->used + LC_ARENA_ALIGN - 1) & ~(size_t)(LC_ARENA_ALIGN - 1);
    if (start > a->capacity || bytes > a->capacity - start) {
        fprintf(stderr,
                "lorac: internal error: %s arena exhausted (capacity %.1f MiB, "
                "in use %.1f MiB, request %.1f MiB): the memory plan is wrong\n",
                a->name, a->capacity / 1048576.0, a->used / 1048576.0,
                bytes / 1048576.0);
        abort();
    }
    a->used = start + bytes;
    if (a->used > a->peak)
        a->peak = a->used;
    return a->base + start;
}

void *lc_arena_calloc(lc_arena *a, size_t bytes)
{
    void *p = lc_arena_alloc(a, bytes);
    memset(p, 0, bytes);
    return p;
}

/* arena.c — see arena.h. */
#include "arena.h"

#include "autograd/backend.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* A dry arena's guard: element buffers all point here, PROT_NONE, so a
 * kernel or op that touched one in a dry run would fault at once. */
#define DRY_GUARD_BYTES ((size_t)1 << 20)
/* A dry arena's side memory for small allocations, in chunks of this size. */
#define DRY_CHUNK_BYTES ((size_t)1 << 20)

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

int lc_arena_init_device(lc_arena *a, const char *name, size_t capacity, lc_backend *be,
                         lc_error *err)
{
    memset(a, 0, sizeof *a);
    a->name = name;
    capacity = (capacity + 4095) & ~(size_t)4095;
    if (capacity == 0)
        capacity = 4096;
    lc_error e = {{0}};
    a->base = be->alloc(be, capacity, &e);
    if (!a->base)
        return lc_error_set(err, "%s arena: cannot allocate %.1f MiB on %s: %s", name,
                            capacity / 1048576.0, be->name, e.msg);
    a->capacity = capacity;
    a->device = be;
    return 0;
}

int lc_arena_init_dry(lc_arena *a, const char *name, lc_error *err)
{
    memset(a, 0, sizeof *a);
    a->name = name;
    void *p = mmap(NULL, DRY_GUARD_BYTES, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return lc_error_set(err, "%s arena: cannot map its guard: %s", name, strerror(errno));
    a->base = p;
    a->capacity = SIZE_MAX / 4; /* counting only: any plan can be measured */
    a->dry = true;
    return 0;
}

void lc_arena_free(lc_arena *a)
{
    if (a->base && a->device)
        a->device->free(a->device, a->base);
    else if (a->base)
        munmap(a->base, a->dry ? DRY_GUARD_BYTES : a->capacity);
    for (void *c = a->dry_chunks; c;) {
        void *next = *(void **)c;
        free(c);
        c = next;
    }
    memset(a, 0, sizeof *a);
}

/* Real memory for a small allocation of a dry arena (the caller may write
 * it: tensor headers, op contexts, routing offsets), from side chunks that
 * live as long as the arena; 64-byte aligned, the chunk's link first. */
static void *dry_small(lc_arena *a, size_t bytes)
{
    size_t start = lc_arena_align_up(a->dry_chunk_used);
    if (!a->dry_chunks || start + bytes > DRY_CHUNK_BYTES) {
        void *c = aligned_alloc(LC_ARENA_ALIGN, DRY_CHUNK_BYTES);
        if (!c) {
            fprintf(stderr, "lorac: out of memory in the %s arena's dry run\n", a->name);
            abort();
        }
        *(void **)c = a->dry_chunks;
        a->dry_chunks = c;
        start = LC_ARENA_ALIGN;
    }
    a->dry_chunk_used = start + bytes;
    return (unsigned char *)a->dry_chunks + start;
}

void *lc_arena_alloc(lc_arena *a, size_t bytes)
{
    size_t start = lc_arena_align_up(a->used);
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
    if (a->dry)
        return bytes <= LC_ARENA_DRY_SMALL ? dry_small(a, bytes) : a->base;
    return a->base + start;
}

void *lc_arena_calloc(lc_arena *a, size_t bytes)
{
    void *p = lc_arena_alloc(a, bytes);
    if (a->device)
        a->device->memset0(a->device, p, bytes);
    else if (!a->dry || bytes <= LC_ARENA_DRY_SMALL)
        memset(p, 0, bytes);
    return p;
}

/* arena.h — bump allocator over one reserved virtual range.
 *
 * The step arena holds every activation, saved context and scratch buffer of
 * one micro-step and is reset (not freed) between micro-steps, so the step
 * loop never calls malloc. The range is reserved with mmap(MAP_NORESERVE):
 * pages become resident only when first touched and stay resident across
 * resets, so peak RSS equals the peak the step really used, and `peak` is
 * what the memory plan is checked against. Allocation past the capacity is
 * an internal error with the numbers (the planner sized it wrongly). */
#ifndef LC_ARENA_H
#define LC_ARENA_H

#include <stdbool.h>
#include <stddef.h>

#include "autograd/error.h"

#define LC_ARENA_ALIGN 64

/* n rounded up to LC_ARENA_ALIGN: where the next allocation after n bytes
 * starts. */
static inline size_t lc_arena_align_up(size_t n)
{
    return (n + LC_ARENA_ALIGN - 1) & ~(size_t)(LC_ARENA_ALIGN - 1);
}

typedef struct lc_arena {
    unsigned char *base;
    size_t capacity;   /* bytes reserved */
    size_t used;       /* bytes handed out since the last reset */
    size_t peak;       /* max of used over the arena's life */
    const char *name;  /* for messages */
    bool dry;          /* counting arena (lc_arena_init_dry) */
    struct lc_backend *device; /* non-NULL: the range is that backend's device memory */
    void *dry_chunks;  /* its side memory for small allocations (a list) */
    size_t dry_chunk_used;
} lc_arena;

int lc_arena_init(lc_arena *a, const char *name, size_t capacity, lc_error *err);
/* A counting arena for a dry run (autograd/tape.h lc_tape_init_dry): it
 * hands out offsets exactly as a real arena does (sizes, 64-byte alignment,
 * marks and releases) and records used and peak, without reserving them.
 * Allocations up to LC_ARENA_DRY_SMALL bytes — the structs a step writes
 * (tensor headers, op contexts, routing offsets) — get real memory on the
 * side; larger ones, element buffers that a dry run never touches, all
 * point at one PROT_NONE guard page range, so a touch would fault. */
#define LC_ARENA_DRY_SMALL ((size_t)64 << 10)
/* An arena over `capacity` bytes of a device backend's memory (backend.h),
 * allocated at once; the host never touches its elements. */
int lc_arena_init_device(lc_arena *a, const char *name, size_t capacity,
                         struct lc_backend *be, lc_error *err);
int lc_arena_init_dry(lc_arena *a, const char *name, lc_error *err);
void lc_arena_free(lc_arena *a);
/* 64-byte aligned, uninitialised. Aborts with a clear message when full. */
void *lc_arena_alloc(lc_arena *a, size_t bytes);
void *lc_arena_calloc(lc_arena *a, size_t bytes);
static inline size_t lc_arena_mark(const lc_arena *a) { return a->used; }
/* Frees everything allocated after mark (LIFO scratch use). */
static inline void lc_arena_release(lc_arena *a, size_t mark) { a->used = mark; }
static inline void lc_arena_reset(lc_arena *a) { a->used = 0; }

#endif

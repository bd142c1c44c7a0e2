/* tape.h — reverse-mode autograd as a tape of nodes over arenas.
 *
 * Ops append a node (backward function + inputs/outputs + a saved context in
 * the step arena) only when an input requires grad; lc_tape_backward walks
 * the nodes in reverse. Execution order is a valid topological order, so no
 * graph sort is needed.
 *
 * Gradients of activations are short-lived: a tensor's gradient is created
 * (zeroed) when its first consumer's backward adds into it, and handed back
 * to a size-keyed pool right after its producer's backward has consumed it.
 * Peak gradient memory is then a few layers' worth, not a copy of every
 * activation, and the pool's buffers are reused step after step (no malloc
 * after the first step). Parameter gradients live in the parameter store and
 * are never pooled. Gradients always accumulate (+=): residual fan-out and
 * micro-batch accumulation are correct by construction. */
#ifndef LC_TAPE_H
#define LC_TAPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/arena.h"
#include "autograd/backend.h"
#include "autograd/tensor.h"

#define LC_NODE_MAX_IO 4

struct lc_tape;
struct lc_node;
typedef void (*lc_backward_fn)(struct lc_tape *tape, struct lc_node *node);

typedef struct lc_node {
    lc_backward_fn backward;
    const char *name;                    /* op name, for debugging */
    lc_tensor *in[LC_NODE_MAX_IO];
    lc_tensor *out[LC_NODE_MAX_IO];
    int n_in, n_out;
    void *ctx;                           /* op-specific, in the step arena */
} lc_node;

typedef struct lc_grad_buf {
    lc_real *ptr;
    int64_t capacity;        /* elements */
} lc_grad_buf;

typedef struct lc_tape {
    lc_backend *be;          /* where element memory lives and kernels run */
    lc_arena *arena;         /* step arena (host): tensor headers, op contexts */
    lc_arena *data;          /* step arena of element memory: activations, scratch
                              * (on the CPU the same arena as `arena`) */
    lc_arena grad_arena;     /* backing store of pooled gradient buffers (on be) */
    lc_grad_buf *free_bufs;  /* pool of released gradient buffers */
    size_t n_free, cap_free;
    lc_node *nodes;
    size_t n_nodes, cap_nodes;
    bool grad_enabled;       /* false: ops record nothing (eval, recompute) */
    bool training;           /* dropout active */
    uint64_t dropout_seed;   /* per micro-step; ops derive their own streams */
    uint64_t op_counter;     /* distinct stream per op within a step */
    bool dry;                /* a dry run (lc_tape_init_dry): ops allocate as in a real
                              * step; be is the dry backend, which touches nothing */
    lc_tensor *root;         /* during lc_tape_backward: the loss it started from, whose
                              * gradient is 1 (an op reading its output's gradient as a
                              * value need not ask the backend for it) */
    int64_t max_rows;        /* largest row count of any activation (0 = unknown): a
                              * gradient of an [rows, cols] tensor is allocated for
                              * max_rows rows, so micro-batches of varying length
                              * reuse the same buffers instead of growing the pool */
} lc_tape;

/* A CPU tape: one step arena for headers and elements. */
int lc_tape_init(lc_tape *t, lc_arena *step_arena, size_t grad_capacity, lc_error *err);
/* A tape on backend be: headers and contexts in host_arena, elements in
 * data_arena (be's memory; the same arena as host_arena on the CPU), the
 * gradient pool on be with grad_capacity bytes. */
int lc_tape_init_on(lc_tape *t, lc_backend *be, lc_arena *host_arena, lc_arena *data_arena,
                    size_t grad_capacity, lc_error *err);
/* A dry-run tape over a dry step arena (both counting, see lc_arena_init_dry):
 * every allocation of a step happens as in a real one, sized and aligned the
 * same, and the arenas' peaks are what a real step at that shape reaches;
 * element memory is never written (the tape's backend is the dry backend,
 * backend.h lc_backend_dry, whose kernels and copies do nothing). */
int lc_tape_init_dry(lc_tape *t, lc_arena *step_arena, lc_error *err);
/* The dry run of a step on `target`: host_arena and data_arena (distinct
 * when target is a device) are made counting arenas here. */
int lc_tape_init_dry_for(lc_tape *t, const lc_backend *target, lc_arena *host_arena,
                         lc_arena *data_arena, lc_error *err);
void lc_tape_free(lc_tape *t);
/* Forgets all nodes and resets the step arena (pooled grads are kept). */
void lc_tape_reset(lc_tape *t);

/* New activation tensor in the step arena, of the backend's activation
 * dtype (data uninitialised, no grad). */
lc_tensor *lc_tape_tensor(lc_tape *t, int ndim, const int64_t *shape);
lc_tensor *lc_tape_tensor2(lc_tape *t, int64_t rows, int64_t cols);
/* n such tensors out[i] [rows, cols[i]] from one allocation, back to back
 * (each part padded to the arena's alignment): a group's outputs, which a
 * backend may write in one batched product (backend.h linear_lora). */
void lc_tape_tensors2(lc_tape *t, int64_t rows, int n, const int64_t *cols, lc_tensor **out);

/* True when any of the inputs requires grad and recording is on. */
bool lc_tape_needs_grad(const lc_tape *t, lc_tensor *const *in, int n);

/* Appends a node; marks its outputs requires_grad. Returns it so the op can
 * attach its context. */
lc_node *lc_tape_record(lc_tape *t, const char *name, lc_backward_fn fn,
                        lc_tensor *const *in, int n_in, lc_tensor *const *out, int n_out);

/* The gradient buffer of t to accumulate into, created zeroed on first use.
 * NULL when t does not require grad (the caller skips that contribution). */
lc_real *lc_tape_grad(lc_tape *tape, lc_tensor *t);

/* x's gradient += y's (same numel), for a y whose gradient flows to x
 * unchanged (a residual or an add). With take, the caller is done with y's
 * gradient: when x has none yet, y's pooled buffer becomes x's (no zeroing,
 * no pass over memory); else, and without take, an axpy. */
void lc_tape_grad_pass(lc_tape *t, lc_tensor *x, lc_tensor *y, bool take);

/* Seeds d(loss)/d(loss) = 1 (loss has one element) and runs every node's
 * backward in reverse order. */
void lc_tape_backward(lc_tape *t, lc_tensor *loss);
/* Runs the backward of nodes [from, n_nodes) in reverse and drops them
 * (gradient checkpointing walks the nodes of a recomputed block). */
void lc_tape_walk_back(lc_tape *t, size_t from);
/* The kernels of the tape's backend (ops call nothing else). */
static inline const lc_kernels *lc_tape_k(const lc_tape *t) { return &t->be->k; }
/* dst[n] = src[n], a copy of activation elements on the tape's backend. */
void lc_tape_copy(const lc_tape *t, lc_real *dst, const lc_real *src, int64_t n);
/* p[n] = 0 (activation elements). */
void lc_tape_zero(const lc_tape *t, lc_real *p, int64_t n);
/* x's values in the activation dtype: x->data when x already is, else a
 * rounded copy in the step's scratch (a LoRA parameter entering a bf16
 * GEMM, as autocast casts it); release with the caller's mark. */
const lc_real *lc_tape_act(lc_tape *t, const lc_tensor *x);
/* host[n] (lc_real) = the activation elements src[n] on the backend, and
 * back: dst[n] = host[n] rounded to the activation dtype. Host-side work
 * that needs values (MoE routing, the loss seed) goes through these; in a
 * dry run they do nothing. */
void lc_tape_to_host(lc_tape *t, lc_real *host, const lc_real *src, int64_t n);
void lc_tape_from_host(lc_tape *t, lc_real *dst, const lc_real *host, int64_t n);

/* Scratch above a mark of both step arenas, released together (LIFO). */
typedef struct lc_tape_mark {
    size_t host, data;
} lc_tape_mark;
static inline lc_tape_mark lc_tape_mark_now(const lc_tape *t)
{
    return (lc_tape_mark){lc_arena_mark(t->arena), lc_arena_mark(t->data)};
}
static inline void lc_tape_release(lc_tape *t, lc_tape_mark m)
{
    lc_arena_release(t->data, m.data);
    lc_arena_release(t->arena, m.host);
}
/* elems activation elements of scratch in the step's data arena (NULL
 * for 0), uninitialised or zeroed; lc_tape_scratch_f32: elems [f32]
 * (lc_real) elements, for statistics and the kernels' sized scratch. */
lc_real *lc_tape_scratch(lc_tape *t, size_t elems);
lc_real *lc_tape_scratch_zero(lc_tape *t, size_t elems);
lc_real *lc_tape_scratch_f32(lc_tape *t, size_t elems);
/* Hands a leaf's pooled gradient back (after its value was used). */
void lc_tape_release_grad(lc_tape *t, lc_tensor *x);

#endif

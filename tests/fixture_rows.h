/* fixture_rows.h — test helpers that need data/ and train/ (so they cannot
 * live in helpers.c, which the gradcheck tests link against autograd/ only):
 * loading fixture JSONL rows into a micro-batch, and the state of one
 * forward/backward step on a fixture model. Include only from tests linked
 * with lorac_core. */
#ifndef LC_TEST_FIXTURE_ROWS_H
#define LC_TEST_FIXTURE_ROWS_H

#include <criterion/criterion.h>

#include <string.h>

#include <stdlib.h>

#include "autograd/arena.h"
#include "autograd/tape.h"
#include "data/batch.h"
#include "data/jsonl.h"
#include "train/backend_select.h"
#include "train/device_model.h"
#include "train/lora.h"
#include "train/model.h"
#include "helpers.h"

/* Rows first .. first+count-1 of the JSONL file at path (vocab 512) into a
 * fresh count x T buffer *buf; *batch points at it. */
static inline void lc_test_load_rows(lc_batch_buf *buf, lc_batch *batch, const char *path,
                                     int first, int count, int64_t T)
{
    lc_error err;
    lc_jsonl_reader r;
    cr_assert_eq(lc_jsonl_open(&r, path, 512, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_batch_buf_init(buf, count, T, &err), 0);
    lc_row row;
    for (int i = 0; i < first + count; i++) {
        cr_assert_eq(lc_jsonl_next(&r, &row, &err), 1, "%s", err.msg);
        if (i >= first)
            lc_batch_buf_put(buf, i - first, row.input_ids, row.labels, row.len);
    }
    lc_jsonl_close(&r);
    *batch = (lc_batch){buf->B, buf->T, buf->ids, buf->targets, buf->positions, NULL};
}

/* One step's worth of state on a fixture model, on the backend the
 * environment names: LORAC_TEST_BACKEND=cuda runs the step on the CUDA
 * backend (a GPU, or the simulator in a -DLORAC_CUDA_SIM=ON build: ctest's
 * `cuda` label runs the fixture tests that way) in float32, cuda-bf16 in
 * bfloat16 (lc_test_bf16: the suites switch to their bf16 tolerances);
 * cpu-bf16: the CPU's bfloat16 backend (lc_test_cpu_bf16); unset or "cpu":
 * the CPU. The step runs on m and l: the host model and adapter on the CPU,
 * their device mirrors (train/device_model.h) on a device. */
typedef struct lc_test_step {
    lc_model model;
    lc_lora lora;
    lc_arena arena;
    lc_tape tape;
    lc_batch_buf buf;
    lc_batch batch;
    lc_backend *be;
    lc_device_model dev;
    lc_arena data_arena;
    const lc_model *m;
    lc_lora *l;
} lc_test_step;

/* Whether the tests run their steps on a device backend. */
static inline bool lc_test_on_device(void)
{
    const char *want = getenv("LORAC_TEST_BACKEND");
    return want && (strcmp(want, "cuda") == 0 || lc_test_bf16());
}

/* With s->model and s->lora loaded: the backend, the mirrors, arenas and
 * tape (64 MiB each). */
static inline void lc_test_step_backend(lc_test_step *s)
{
    lc_error err;
    s->m = &s->model;
    s->l = &s->lora;
    if (!lc_test_on_device()) {
        cr_assert_eq(lc_backend_open(LC_DEVICE_CPU, lc_test_cpu_bf16() ? LC_COMPUTE_BF16
                                                                      : LC_COMPUTE_F32,
                                     &s->be, &err),
                     0, "%s", err.msg);
        cr_assert_eq(s->be->gemm, lc_test_cpu_bf16() ? LC_DTYPE_BF16 : LC_DTYPE_F32,
                     "cpu-bf16 needs LORAC_CPU_BF16=emulate or onednn");
        cr_assert_eq(lc_arena_init(&s->arena, "step", 64 << 20, &err), 0);
        cr_assert_eq(lc_tape_init_on(&s->tape, s->be, &s->arena, &s->arena, 64 << 20, &err), 0);
        return;
    }
    cr_assert_eq(lc_backend_open(LC_DEVICE_CUDA, lc_test_bf16() ? LC_COMPUTE_BF16 : LC_COMPUTE_F32,
                                 &s->be, &err),
                 0, "%s", err.msg);
    cr_assert_eq(lc_device_model_upload(&s->dev, s->be, &s->model, &s->lora, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(lc_arena_init(&s->arena, "step host", 64 << 20, &err), 0);
    cr_assert_eq(lc_arena_init_device(&s->data_arena, "step", 64 << 20, s->be, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(lc_tape_init_on(&s->tape, s->be, &s->arena, &s->data_arena, 64 << 20, &err), 0,
                 "%s", err.msg);
    s->m = &s->dev.model;
    s->l = &s->dev.lora;
}

/* With s->model loaded: RoPE for 16 positions, the PEFT adapter in
 * adapter_dir, the backend (lc_test_step_backend), and rows first ..
 * first+count-1 of rows_path as a count x 16 batch. */
static inline void lc_test_step_init(lc_test_step *s, const char *adapter_dir,
                                     const char *rows_path, int first, int count)
{
    lc_error err;
    cr_assert_eq(lc_model_prepare_rope(&s->model, 16, &err), 0);
    cr_assert_eq(lc_lora_load_peft(&s->lora, &s->model.cfg, adapter_dir, &err), 0, "%s",
                 err.msg);
    lc_test_step_backend(s);
    lc_test_load_rows(&s->buf, &s->batch, rows_path, first, count, 16);
}

/* Zeroes the step's LoRA gradients (on its backend). */
static inline void lc_test_step_zero_grads(lc_test_step *s)
{
    lc_backend_zero(s->be, s->l->grads, (int64_t)s->l->n_params);
}

/* The step's LoRA gradients into s->lora.grads (the host tensors' grad
 * pointers): a copy from the device, nothing on the CPU. */
static inline void lc_test_step_fetch_grads(lc_test_step *s)
{
    if (s->be->device)
        s->be->download(s->be, s->lora.grads, s->l->grads, s->lora.n_params * sizeof(lc_real));
}

/* n activation values at p on the step's backend, copied to a new host
 * buffer as lc_real (free it). */
static inline lc_real *lc_test_step_fetch(lc_test_step *s, const lc_real *p, int64_t n)
{
    lc_real *h = malloc((size_t)(n ? n : 1) * sizeof(lc_real));
    cr_assert(h);
    lc_tape_to_host(&s->tape, h, p, n);
    return h;
}

static inline void lc_test_step_free(lc_test_step *s)
{
    lc_batch_buf_free(&s->buf);
    lc_tape_free(&s->tape);
    lc_arena_free(&s->arena);
    lc_arena_free(&s->data_arena);
    if (s->dev.be)
        lc_device_model_free(&s->dev);
    lc_lora_free(&s->lora);
    lc_model_free(&s->model);
    lc_backend_close(s->be);
}

#endif

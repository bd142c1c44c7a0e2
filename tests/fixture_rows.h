/* fixture_rows.h — test helpers that need data/ and train/ (so they cannot
 * live in helpers.c, which the gradcheck tests link against autograd/ only):
 * loading fixture JSONL rows into a micro-batch, and the state of one
 * forward/backward step on a fixture model. Include only from tests linked
 * with lorac_core. */
#ifndef LC_TEST_FIXTURE_ROWS_H
#define LC_TEST_FIXTURE_ROWS_H

#include <criterion/criterion.h>

#include <string.h>

#include "autograd/arena.h"
#include "autograd/tape.h"
#include "data/batch.h"
#include "data/jsonl.h"
#include "train/lora.h"
#include "train/model.h"

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

/* One step's worth of state on a fixture model. */
typedef struct lc_test_step {
    lc_model model;
    lc_lora lora;
    lc_arena arena;
    lc_tape tape;
    lc_batch_buf buf;
    lc_batch batch;
} lc_test_step;

/* With s->model loaded: RoPE for 16 positions, the PEFT adapter in
 * adapter_dir, a 64 MiB arena and tape, and rows first .. first+count-1 of
 * rows_path as a count x 16 batch. */
static inline void lc_test_step_init(lc_test_step *s, const char *adapter_dir,
                                     const char *rows_path, int first, int count)
{
    lc_error err;
    cr_assert_eq(lc_model_prepare_rope(&s->model, 16, &err), 0);
    cr_assert_eq(lc_lora_load_peft(&s->lora, &s->model.cfg, adapter_dir, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(lc_arena_init(&s->arena, "step", 64 << 20, &err), 0);
    cr_assert_eq(lc_tape_init(&s->tape, &s->arena, 64 << 20, &err), 0);
    lc_test_load_rows(&s->buf, &s->batch, rows_path, first, count, 16);
}

static inline void lc_test_step_free(lc_test_step *s)
{
    lc_batch_buf_free(&s->buf);
    lc_tape_free(&s->tape);
    lc_arena_free(&s->arena);
    lc_lora_free(&s->lora);
    lc_model_free(&s->model);
}

#endif

/* engine.c — see engine.h. */
#include "train/engine.h"

#include <string.h>

/* Whether the plan fits where it will live; the error says by how much. */
static int check_fits(const lc_engine *e, int64_t B, int64_t T, lc_error *err)
{
    const lc_memory_plan *p = &e->plan;
    if (e->be->device) {
        size_t free_b = 0, total = 0;
        e->be->mem_info(e->be, &free_b, &total);
        if (p->total <= (double)free_b)
            return 0;
        return lc_error_set(err, "device: %s: a step needs %.2f GiB of device memory (the plan "
                            "above; %.2f GiB activations for micro_batch_size %lld x sequence_len "
                            "%lld) but %.2f GiB of %.2f GiB are free: lower micro_batch_size or "
                            "sequence_len, turn on gradient_checkpointing, or use load_in_4bit",
                            e->be->name, p->total / 1073741824.0, p->activations / 1073741824.0,
                            (long long)B, (long long)T, free_b / 1073741824.0,
                            total / 1073741824.0);
    }
    double avail = lc_memory_available();
    if (avail <= 0 || p->total - p->weights <= avail)
        return 0;
    return lc_error_set(err, "a step needs %.2f GiB (%.2f GiB activations for micro_batch_size "
                        "%lld x sequence_len %lld) but only %.2f GiB are available: lower "
                        "micro_batch_size or sequence_len", p->total / 1073741824.0,
                        p->activations / 1073741824.0, (long long)B, (long long)T,
                        avail / 1073741824.0);
}

int lc_engine_open(lc_engine *e, lc_backend *be, lc_model *m, lc_lora *lora, int64_t B,
                   int64_t T, FILE *log, lc_error *err)
{
    memset(e, 0, sizeof *e);
    e->be = be;
    e->model = m;
    e->lora = lora;
    /* bf16 weight GEMMs on the CPU: the frozen weights are held in bf16
     * (an f32 checkpoint's converted once here, its pages released) */
    if (!be->device && be->gemm == LC_DTYPE_BF16 && lc_model_weights_to_bf16(m, err))
        return -1;
    if (lc_model_prepare_rope(m, T, err) ||
        lc_memory_plan_on(m, lora, B, T, be, &e->plan, err))
        return -1;
    if (log)
        lc_memory_plan_print(&e->plan, log);
    if (check_fits(e, B, T, err))
        return -1;
    const lc_memory_plan *p = &e->plan;
    int rc;
    if (be->device) {
        rc = lc_device_model_upload(&e->dev, be, m, lora, err) ||
             lc_arena_init(&e->arena, "step host", p->host_bytes, err) ||
             lc_arena_init_device(&e->data_arena, "step", p->arena_bytes, be, err) ||
             lc_tape_init_on(&e->tape, be, &e->arena, &e->data_arena, p->grad_bytes, err);
        e->model = &e->dev.model;
        e->lora = lora ? &e->dev.lora : NULL;
    } else {
        /* the CPU backend be is (float32, or bf16 weight GEMMs) */
        rc = lc_arena_init(&e->arena, "step", p->arena_bytes, err) ||
             lc_tape_init_on(&e->tape, be, &e->arena, &e->arena, p->grad_bytes, err);
    }
    if (rc)
        return -1;
    e->tape.max_rows = B * T;
    return 0;
}

void lc_engine_close(lc_engine *e)
{
    if (e->tape.nodes)
        lc_tape_free(&e->tape);
    lc_arena_free(&e->arena);
    lc_arena_free(&e->data_arena);
    if (e->dev.be)
        lc_device_model_free(&e->dev);
    memset(e, 0, sizeof *e);
}

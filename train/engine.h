/* engine.h — where a run's steps execute: a backend, the model and adapter
 * on it, and the step's arenas and tape, sized by the memory plan.
 *
 * The trainer, `lorac eval` and evaluation during training share it, so a
 * device is set up, planned and refused the same way everywhere:
 *   1. the memory plan of one training step of micro-batch B × T on the
 *      backend (train/memory_plan.h; printed when a log is given);
 *   2. refused before anything is allocated when it does not fit: on a
 *      device its free memory, on the CPU MemAvailable (activations and
 *      workspace; the weights are memory-mapped);
 *   3. on a device the model and LoRA set uploaded (train/device_model.h);
 *   4. the step arenas (host structs, element memory) and the tape.
 * Steps then run on e->model and e->lora: the host ones on the CPU, the
 * device mirrors on a device. */
#ifndef LC_ENGINE_H
#define LC_ENGINE_H

#include <stdio.h>

#include "autograd/backend.h"
#include "autograd/tape.h"
#include "train/device_model.h"
#include "train/memory_plan.h"
#include "train/model.h"

typedef struct lc_engine {
    lc_backend *be;
    lc_memory_plan plan;
    lc_device_model dev;       /* a device: the uploaded model and adapter */
    lc_arena arena;            /* the step arena (a device: its host structs) */
    lc_arena data_arena;       /* a device: the step's element memory there */
    lc_tape tape;
    const lc_model *model;     /* what steps run on */
    lc_lora *lora;             /* NULL when m has no adapter */
} lc_engine;

/* Sets up e for steps of m with lora (may be NULL) at micro-batch B × T on
 * be; m's RoPE tables are prepared for T. */
int lc_engine_open(lc_engine *e, lc_backend *be, lc_model *m, lc_lora *lora, int64_t B,
                   int64_t T, FILE *log, lc_error *err);
void lc_engine_close(lc_engine *e);

#endif

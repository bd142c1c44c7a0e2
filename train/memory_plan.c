/* memory_plan.c — see memory_plan.h. */
#include "train/memory_plan.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/tape.h"
#include "optim/adamw.h"
#include "train/device_model.h"
#include "train/family.h"

/* The dry run: one step of the real model code on counting arenas, as it
 * runs on target (host structs and elements in one arena on the CPU, in two
 * on a device). */
static int dry_step(const lc_model *m, const lc_lora *lora, int64_t B, int64_t T,
                    const lc_backend *target, lc_memory_plan *p, lc_error *err)
{
    const int64_t N = B * T;
    int32_t *ids = calloc((size_t)N, sizeof *ids); /* [N] token 0, every one supervised */
    int32_t *pos = malloc((size_t)N * sizeof *pos);  /* [N] 0..T−1 per row */
    if (!ids || !pos) {
        free(ids);
        free(pos);
        return lc_error_set(err, "memory plan: out of memory for %lld positions", (long long)N);
    }
    for (int64_t i = 0; i < N; i++)
        pos[i] = (int32_t)(i % T);
    lc_batch b = {.B = B, .T = T, .input_ids = ids, .targets = ids, .positions = pos};
    lc_arena arena, data_arena;
    lc_tape tape;
    lc_arena *data = target->device ? &data_arena : &arena;
    int rc = lc_tape_init_dry_for(&tape, target, &arena, data, err);
    if (rc == 0) {
        /* as the trainer's tape: dropout on, gradients sized for the full shape */
        tape.training = true;
        tape.max_rows = N;
        double sum;
        int64_t nsup;
        lc_tape_reset(&tape);
        lc_tensor *loss = lc_model_loss(m, &tape, &b, lora, 1, &sum, &nsup);
        size_t kept = data->used;
        lc_tape_backward(&tape, loss);
        lc_tape_reset(&tape);
        p->arena_peak = data->peak;
        p->host_peak = target->device ? arena.peak : 0;
        p->grad_peak = tape.grad_arena.peak;
        p->activations = (double)kept;
        p->workspace = (double)(data->peak - kept) + (double)tape.grad_arena.peak;
        lc_tape_free(&tape);
        lc_arena_free(&arena);
        if (target->device)
            lc_arena_free(&data_arena);
    }
    free(ids);
    free(pos);
    return rc;
}

int lc_memory_plan_on(const lc_model *m, const lc_lora *lora, int64_t B, int64_t T,
                      const lc_backend *target, lc_memory_plan *p, lc_error *err)
{
    memset(p, 0, sizeof *p);
    if (B < 1 || T < 1 || T > m->rope_len)
        return lc_error_set(err, "memory plan: %lld x %lld tokens (RoPE prepared for %lld)",
                            (long long)B, (long long)T, (long long)m->rope_len);
    /* on a device the step sees the weights as uploaded (device_model.h) */
    lc_model view;
    if (target->device && lc_device_model_view(m, target->act, &view, err))
        return -1;
    int rc = dry_step(target->device ? &view : m, lora, B, T, target, p, err);
    if (target->device)
        lc_device_model_view_free(&view);
    if (rc)
        return -1;
    size_t n = lora ? lora->n_params : 0;
    p->backend = target->name;
    p->device = target->device;
    /* on a device: the weights as uploaded, and the update's rollback copy
     * (values, m, v) the trainer keeps there */
    p->weights = target->device ? lc_device_model_weight_bytes(m, target->act) : lc_model_weight_bytes(m);
    p->adapters = 2.0 * (double)n * sizeof(lc_real); /* lc_lora: params, grads */
    p->optimizer = (double)lc_adamw_state_bytes(n) +
                   (target->device ? 3.0 * (double)n * sizeof(lc_real) : 0);
    p->total = p->weights + p->adapters + p->optimizer + p->activations + p->workspace;
    p->arena_bytes = lc_memory_plan_reserve(p->arena_peak);
    p->host_bytes = lc_memory_plan_reserve(p->host_peak);
    p->grad_bytes = lc_memory_plan_reserve(p->grad_peak);
    return 0;
}

int lc_memory_plan_cpu(const lc_model *m, const lc_lora *lora, int64_t B, int64_t T,
                       lc_memory_plan *p, lc_error *err)
{
    return lc_memory_plan_on(m, lora, B, T, lc_backend_cpu(), p, err);
}

static void line(FILE *f, const char *what, double bytes)
{
    fprintf(f, "  %-12s %10.1f MiB\n", what, bytes / 1048576.0);
}

void lc_memory_plan_print(const lc_memory_plan *p, FILE *f)
{
    if (p->device)
        fprintf(f, "memory plan (%s device memory):\n", p->backend);
    else
        fprintf(f, "memory plan (CPU, %d thread%s):\n", omp_get_max_threads(),
                lc_plural(omp_get_max_threads()));
    line(f, "weights", p->weights);
    line(f, "adapters", p->adapters);
    line(f, "optimizer", p->optimizer);
    line(f, "activations", p->activations);
    line(f, "workspace", p->workspace);
    line(f, "total", p->total);
}

double lc_memory_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return 0;
    char key[64];
    double kb = 0, v;
    while (fscanf(f, "%63s %lf kB\n", key, &v) == 2) {
        if (strcmp(key, "MemAvailable:") == 0) {
            kb = v;
            break;
        }
    }
    fclose(f);
    return kb * 1024.0;
}

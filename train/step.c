/* step.c — see step.h. */
#include "train/step.h"

#include <string.h>

double lc_step_micro(const lc_model *m, lc_tape *t, const lc_batch *b, const lc_lora *lora,
                     lc_real grad_scale, int64_t *n_supervised)
{
    lc_tape_reset(t);
    double sum = 0;
    lc_tensor *loss = lc_model_loss(m, t, b, lora, grad_scale, &sum, n_supervised);
    lc_tape_backward(t, loss);
    lc_tape_reset(t);
    return sum;
}

double lc_step_optimizer(lc_lora *lora, lc_adamw *opt, const lc_adamw_hparams *hp, double lr,
                         double max_grad_norm)
{
    double norm = lc_grad_clip(lora->grads, lora->n_params, max_grad_norm);
    lc_adamw_update(opt, lora->params, lora->grads, hp, lr);
    memset(lora->grads, 0, lora->n_params * sizeof(lc_real));
    return norm;
}

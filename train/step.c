/* step.c — see step.h. */
#include "train/step.h"


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

void lc_step_optimizer(lc_lora *lora, lc_adamw *opt, const lc_adamw_hparams *hp, double lr,
                       double max_grad_norm, double norm)
{
    lc_grad_clip_to(opt->be, lora->grads, lora->n_params, norm, max_grad_norm);
    lc_adamw_update(opt, lora->params, lora->grads, hp, lr);
    lc_backend_zero(opt->be, lora->grads, (int64_t)lora->n_params);
}

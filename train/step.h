/* step.h — one micro-step (forward + backward into the LoRA gradients) and
 * one optimizer step (clip + AdamW + zero), shared by the trainer and the
 * benchmark so both measure and run the same code. */
#ifndef LC_STEP_H
#define LC_STEP_H

#include "optim/adamw.h"
#include "train/model.h"

/* Resets the tape, runs forward to the loss with grad_scale (1 / supervised
 * tokens of the whole optimizer step) and backward, adding into lora->grads.
 * Returns Σ token losses; *n_supervised gets the count. */
double lc_step_micro(const lc_model *m, lc_tape *t, const lc_batch *b, const lc_lora *lora,
                     lc_real grad_scale, int64_t *n_supervised);

/* Clips the gradients, whose norm is `norm` (lc_grad_norm_on: the caller
 * reports or checks it first), to max_grad_norm (≤ 0: no clipping), applies
 * AdamW at lr, zeroes the gradients. */
void lc_step_optimizer(lc_lora *lora, lc_adamw *opt, const lc_adamw_hparams *hp, double lr,
                       double max_grad_norm, double norm);

#endif

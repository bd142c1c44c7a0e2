/* backend_cuda.h — the CUDA backend: autograd/backend.h's table on a GPU
 * (or on the CPU simulator of tests/cuda_sim), its kernels those of
 * cuda_kernels.h run in its activation dtype, f32 or bf16.
 *
 * Compiled only in CUDA builds (LORAC_HAVE_CUDA). The kernels.h signatures
 * carry no backend argument, so the backend keeps ONE process-wide current
 * context (a stream, cuBLASLt, reduction buffers): a second create fails
 * until the first is destroyed.
 *
 * Errors: kernel entries return nothing; the first failure of a kernel
 * (a bad argument, a launch error) or of a copy since the last sync is kept
 * — the first one wins — and sync() reports it ("kernel NAME: the CUDA
 * error") after waiting for the queued work, then clears it, so the
 * backend stays usable after a reported failure. alloc returns NULL with
 * "out of device memory: wanted X MiB, free Y MiB of Z". upload and
 * download are synchronous with respect to the host (download waits for
 * the work queued before it); copy and memset0 are queued on the stream.
 *
 * Device data conventions (what the trainer uploads):
 *   - activations, their gradients, biases and RMSNorm weights are device
 *     elements of the activation dtype; LoRA tensors and their gradients,
 *     AdamW's m and v, statistics (rstd, lse) and RoPE's cos_sin table are
 *     device f32 (kernels.h's [f32]);
 *   - embedding ids, RoPE positions and cross-entropy targets are device
 *     int32; lc_attn_shape.segment is a device pointer (or NULL) and
 *     lc_attn_shape.past must be 0 (no KV cache on the device: an error);
 *   - a frozen lc_weight has data a device pointer in F32, F16 or BF16
 *     (the trainer uploads dense weights in the activation dtype) and
 *     ggml NULL (GGUF weights are dequantized before upload), or nf4
 *     pointing to a HOST lc_nf4 whose arrays (codes, absmax or absmax_q,
 *     nested_absmax, nested_map) are device pointers;
 *   - scratch sizes (weight_scratch, attention_scratch, ce_scratch,
 *     dora_norm_scratch) are in lc_real elements, the device's byte counts
 *     rounded up;
 *   - lm_head_ce synchronizes and returns the loss sum and *n_supervised on
 *     the host (NaN and 0 when it failed: sync reports why); sum_squares
 *     synchronizes and returns Σ g² on the host. */
#ifndef LC_BACKEND_CUDA_H
#define LC_BACKEND_CUDA_H

#include "autograd/backend.h"
#include "autograd/cuda/cuda_kernels.h"

/* The CUDA backend on device `device` (name "cuda", device = true) with
 * activation dtype act (LC_DTYPE_F32 or LC_DTYPE_BF16: backend.h). Fails
 * (-1, err) when there is no usable device, the context cannot be made, or
 * a CUDA backend already exists in this process. */
int lc_backend_cuda_create(lc_backend **out, int device, lc_dtype act, lc_error *err);

/* The kernel table of activation dtype act (F32 or BF16), for the op-parity
 * harness, which compares both tables against the CPU. */
const lc_kernels *lc_backend_cuda_table(lc_dtype act);

/* The context behind a CUDA backend (for the bf16 entry points of
 * cuda_kernels.h, which take it explicitly). */
lc_cuda_ctx *lc_backend_cuda_ctx(const lc_backend *be);

#endif

/* backend_select.h — the backend a run's steps use, from `device` and
 * `compute_dtype` (train/config.h).
 *
 *   cpu   the CPU backend (autograd/backend.h), float32.
 *   cuda  the CUDA backend on device 0 (autograd/cuda/backend_cuda.h): a GPU,
 *         or the CPU simulator of the real CUDA kernels in a build configured
 *         with -DLORAC_CUDA_SIM=ON. Refused with the reason when the build
 *         has no CUDA or no device is present.
 *   auto  cuda when the build has it and a device is present, else cpu.
 * compute_dtype: the backend's activation dtype (backend.h). On CUDA auto
 * means bfloat16 (bf16 activations and frozen weights, f32 LoRA masters,
 * gradients and AdamW state); float32 is the exact-check mode. The CPU
 * computes in float32 (auto); bfloat16 there is refused with the reason. */
#ifndef LC_BACKEND_SELECT_H
#define LC_BACKEND_SELECT_H

#include "autograd/backend.h"
#include "train/config.h"

int lc_backend_open(lc_device device, lc_compute_dtype dtype, lc_backend **be, lc_error *err);
/* CUDA devices this lorac can use: 0 without CUDA in the build, without a
 * driver, or when the backend module does not load. */
int lc_backend_cuda_devices(void);
/* Releases what lc_backend_open gave (the CPU backend is static: nothing;
 * the CUDA backend is one per process, shared by every open, destroyed at
 * the last close). */
void lc_backend_close(lc_backend *be);
/* One line for the log: "cpu (x86-64-v4: AVX-512), float32", "cuda (NVIDIA H200, 139.8 GiB
 * free of 140.4 GiB), bfloat16". */
void lc_backend_describe(lc_backend *be, char *buf, size_t n);

#endif

/* backend_select.c — see backend_select.h. */
#include "train/backend_select.h"

#include <stdio.h>

#include "autograd/cpu/dispatch.h"
#ifdef LORAC_HAVE_CUDA
#include "autograd/cuda/backend_cuda.h"
#include "autograd/cuda/cuda_kernels.h"
#endif

/* Whether a CUDA device can be used by this build (0 devices: no). */
static int cuda_devices(void)
{
#ifdef LORAC_HAVE_CUDA
    return lc_cuda_device_count();
#else
    return 0;
#endif
}

#ifdef LORAC_HAVE_CUDA
/* The process's one CUDA backend (one context on device 0), shared by
 * everyone who opened it and destroyed when the last one closes it. */
static lc_backend *cuda_shared;
static int cuda_users;
#endif

int lc_backend_open(lc_device device, lc_compute_dtype dtype, lc_backend **be, lc_error *err)
{
    *be = NULL;
    if (device == LC_DEVICE_AUTO)
        device = cuda_devices() > 0 ? LC_DEVICE_CUDA : LC_DEVICE_CPU;
    if (dtype == LC_COMPUTE_BF16)
        return lc_error_set(err, "compute_dtype: bfloat16 is not implemented yet (the bf16 "
                            "kernels exist, the step does not use them): set compute_dtype: "
                            "float32 or auto");
    if (device == LC_DEVICE_CPU) {
        *be = lc_backend_cpu();
        return 0;
    }
#ifdef LORAC_HAVE_CUDA
    if (cuda_devices() <= 0)
        return lc_error_set(err, "device: cuda: no CUDA device is present (or no driver); use "
                            "device: cpu or auto");
    if (!cuda_shared && lc_backend_cuda_create(&cuda_shared, 0, err))
        return -1;
    cuda_users++;
    *be = cuda_shared;
    return 0;
#else
    return lc_error_set(err, "device: cuda: this lorac was built without CUDA (nvcc was not "
                        "found when it was configured); use device: cpu or auto");
#endif
}

void lc_backend_close(lc_backend *be)
{
    if (!be || !be->device)
        return;
#ifdef LORAC_HAVE_CUDA
    LC_ASSERT(be == cuda_shared && cuda_users > 0);
    if (--cuda_users == 0) {
        cuda_shared->destroy(cuda_shared);
        cuda_shared = NULL;
    }
#endif
}

void lc_backend_describe(lc_backend *be, char *buf, size_t n)
{
    if (!be->device) {
        snprintf(buf, n, "cpu (%s: %s), float32", lc_cpu_isa(), lc_cpu_isa_desc());
        return;
    }
    size_t free_b = 0, total = 0;
    be->mem_info(be, &free_b, &total);
    snprintf(buf, n, "%s (%.1f GiB free of %.1f GiB), float32", be->name, free_b / 1073741824.0,
             total / 1073741824.0);
}

/* backend_select.c — see backend_select.h.
 *
 * The CUDA backend is a module, liblorac_cuda.so (CMakeLists.txt), loaded
 * with dlopen the first time a run asks for a device: a CPU run never maps
 * the CUDA runtime and cuBLASLt. It is looked for in LORAC_CUDA_MODULE
 * (a path), else next to the running executable. `device: auto` first asks
 * whether a CUDA driver is installed at all (libcuda.so.1 loads) before it
 * loads the module; the simulator build has no driver to ask. */
#include "train/backend_select.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/cpu/dispatch.h"
#include "autograd/cpu/gemm_bf16.h"

#ifdef LORAC_HAVE_CUDA
#include <dlfcn.h>
#include <unistd.h>

typedef int (*cuda_create_fn)(lc_backend **out, int device, lc_dtype act, lc_error *err);
typedef int (*cuda_count_fn)(void);

/* The module, loaded once. */
static struct {
    bool tried;
    void *handle;
    cuda_create_fn create;
    cuda_count_fn count;
    char why[768];             /* why it could not be loaded */
} module;

static void load_module(void)
{
    if (module.tried)
        return;
    module.tried = true;
    char path[4096];
    const char *env = getenv("LORAC_CUDA_MODULE");
    if (env && *env) {
        snprintf(path, sizeof path, "%s", env);
    } else {
        ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
        n = n < 0 ? 0 : n;
        path[n] = '\0';
        char *slash = strrchr(path, '/');
        size_t dir = slash ? (size_t)(slash - path) + 1 : 0;
        snprintf(path + dir, sizeof path - dir, "%s", LORAC_CUDA_MODULE);
    }
    module.handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!module.handle) {
        snprintf(module.why, sizeof module.why, "cannot load the CUDA backend module: %s",
                 dlerror());
        return;
    }
    module.create = (cuda_create_fn)dlsym(module.handle, "lc_backend_cuda_create");
    module.count = (cuda_count_fn)dlsym(module.handle, "lc_cuda_device_count");
    if (!module.create || !module.count) {
        snprintf(module.why, sizeof module.why, "%.600s is not lorac's CUDA backend module "
                 "(no lc_backend_cuda_create)", path);
        dlclose(module.handle);
        module.handle = NULL;
    }
}

/* Whether a CUDA driver is installed (the simulator needs none). */
static bool driver_installed(void)
{
#ifdef LORAC_CUDA_SIM
    return true;
#else
    static int known = -1;
    if (known < 0) {
        void *h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
        known = h != NULL;
        if (h)
            dlclose(h);
    }
    return known;
#endif
}

int lc_backend_cuda_devices(void)
{
    if (!driver_installed())
        return 0;
    load_module();
    return module.handle ? module.count() : 0;
}

/* The process's one CUDA backend (one context on device 0), shared by
 * everyone who opened it and destroyed when the last one closes it. */
static lc_backend *cuda_shared;
static int cuda_users;
#else
int lc_backend_cuda_devices(void) { return 0; }
#endif

/* The CPU: float32, or bf16 frozen-weight GEMMs where the engine allows
 * (cpu/gemm_bf16.h). auto takes bf16 only where the CPU has bf16 units (or
 * LORAC_CPU_BF16 asks for an engine); an explicit bfloat16 on a CPU
 * without them falls back to float32 and says why on stderr. */
static int open_cpu(lc_compute_dtype dtype, lc_backend **be, lc_error *err)
{
    *be = lc_backend_cpu();
    if (dtype == LC_COMPUTE_F32)
        return 0;
    lc_cpu_bf16_engine engine;
    char why[320];
    if (lc_cpu_bf16_engine_select(&engine, why, sizeof why, err))
        return -1;
    if (engine != LC_CPU_BF16_OFF) {
        *be = lc_backend_cpu_bf16();
        return 0;
    }
    if (dtype == LC_COMPUTE_BF16)
        fprintf(stderr, "lorac: compute_dtype bfloat16: %s; computing in float32\n", why);
    return 0;
}

int lc_backend_open(lc_device device, lc_compute_dtype dtype, lc_backend **be, lc_error *err)
{
    *be = NULL;
    if (device == LC_DEVICE_AUTO)
        device = lc_backend_cuda_devices() > 0 ? LC_DEVICE_CUDA : LC_DEVICE_CPU;
    if (device == LC_DEVICE_CPU)
        return open_cpu(dtype, be, err);
#ifdef LORAC_HAVE_CUDA
    /* on CUDA, auto is bfloat16 */
    lc_dtype act = dtype == LC_COMPUTE_F32 ? LC_DTYPE_F32 : LC_DTYPE_BF16;
    if (cuda_shared && cuda_shared->act != act)
        return lc_error_set(err, "device: cuda is already open in this process with "
                            "compute_dtype %s (one CUDA backend per process)",
                            lc_dtype_torch_name(cuda_shared->act));
    if (!cuda_shared) {
        if (!driver_installed())
            return lc_error_set(err, "device: cuda: no CUDA driver is installed (libcuda.so.1 "
                                "does not load); use device: cpu or auto");
        load_module();
        if (!module.handle)
            return lc_error_set(err, "device: cuda: %s", module.why);
        if (module.count() <= 0)
            return lc_error_set(err, "device: cuda: no CUDA device is present; use device: cpu "
                                "or auto");
        if (module.create(&cuda_shared, 0, act, err))
            return -1;
    }
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
    const char *dt = lc_dtype_torch_name(be->act);
    if (!be->device) {
        if (be->gemm == LC_DTYPE_BF16) {
            snprintf(buf, n,
                     "cpu (%s: %s), bfloat16 weight GEMMs (%s) and attention GEMMs (%s), "
                     "float32 activations",
                     lc_cpu_isa(), lc_cpu_isa_desc(), lc_cpu_bf16_engine_why(),
                     lc_cpu_attn_gemm_bf16_kernel());
            return;
        }
        snprintf(buf, n, "cpu (%s: %s), %s", lc_cpu_isa(), lc_cpu_isa_desc(), dt);
        return;
    }
    size_t free_b = 0, total = 0;
    be->mem_info(be, &free_b, &total);
    snprintf(buf, n, "%s (%.1f GiB free of %.1f GiB), %s", be->name, free_b / 1073741824.0,
             total / 1073741824.0, dt);
}

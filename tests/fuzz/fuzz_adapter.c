/* fuzz_adapter.c — PEFT adapter reading: adapter_config.json and the tensors.
 *
 * The input is split at its first NUL byte: the bytes before it are written
 * as TMP/adapter_config.json and read with lc_lora_read_config; the bytes
 * after it (copied to their own malloc'd buffer, so their alignment is that
 * of a mapped file) are parsed with lc_st_parse. When both succeed, LoRA
 * tensors are made for the tiny-llama shape (hidden 64, 2 layers, 4 heads,
 * 2 kv heads, head_dim 16, intermediate 160, vocab 512) with
 * lc_lora_init and filled with lc_lora_load_tensors, then freed. A loaded
 * adapter must hold only finite values. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/safetensors.h"
#include "fuzz_util.h"
#include "train/lora.h"
#include "train/model_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char cfg_path[600];

static lc_model_config tiny_llama(void)
{
    lc_model_config mc;
    memset(&mc, 0, sizeof mc);
    mc.arch = LC_ARCH_LLAMA;
    snprintf(mc.model_type, sizeof mc.model_type, "llama");
    mc.hidden_size = 64;
    mc.intermediate_size = 160;
    mc.n_layers = 2;
    mc.n_heads = 4;
    mc.n_kv_heads = 2;
    mc.head_dim = 16;
    mc.vocab_size = 512;
    mc.max_position_embeddings = 128;
    mc.rms_norm_eps = 1e-5;
    mc.dtype = LC_DTYPE_F32;
    mc.rope_type = LC_ROPE_DEFAULT;
    mc.rope_theta = 10000.0;
    mc.rope_factor = 1.0;
    return mc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *dir = fuzz_tmpdir();
    if (!cfg_path[0])
        fuzz_path(cfg_path, sizeof cfg_path, dir, "adapter_config.json");
    const uint8_t *nul = memchr(data, 0, size);
    size_t clen = nul ? (size_t)(nul - data) : size;
    fuzz_write(cfg_path, data, clen);

    lc_lora_config cfg;
    lc_error err;
    err.msg[0] = '\0';
    int cfg_ok = lc_lora_read_config(&cfg, dir, &err) == 0;
    if (!cfg_ok) {
        fuzz_check_error(&err);
    } else {
        FUZZ_CHECK(cfg.r >= 1 && cfg.r <= 4096);
        FUZZ_CHECK(cfg.alpha > 0);
    }

    size_t slen = nul ? size - clen - 1 : 0;
    uint8_t *st = malloc(slen ? slen : 1);
    FUZZ_CHECK(st != NULL);
    if (slen)
        memcpy(st, nul + 1, slen);
    lc_st_file f;
    err.msg[0] = '\0';
    if (lc_st_parse(&f, st, slen, "adapter_model.safetensors", &err) != 0) {
        fuzz_check_error(&err);
    } else {
        if (cfg_ok) {
            lc_model_config mc = tiny_llama();
            lc_lora lora;
            err.msg[0] = '\0';
            if (lc_lora_init(&lora, &mc, &cfg, 0, &err) != 0) {
                fuzz_check_error(&err);
            } else {
                err.msg[0] = '\0';
                if (lc_lora_load_tensors(&lora, &f, &err) != 0) {
                    fuzz_check_error(&err);
                } else {
                    for (size_t i = 0; i < lora.n_params; i++)
                        FUZZ_CHECK(isfinite(lora.params[i]));
                }
                lc_lora_free(&lora);
            }
        }
        lc_st_close(&f);
    }
    free(st);
    return 0;
}

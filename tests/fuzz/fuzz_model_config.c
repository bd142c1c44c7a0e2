/* fuzz_model_config.c — lc_model_config_parse on arbitrary bytes.
 *
 * On success the ranges the header promises must hold (sizes positive and
 * capped, heads divide evenly, head_dim even, kv heads divide heads) and
 * lc_model_config_inv_freq is run over the whole head_dim / 2. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_util.h"
#include "train/model_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lc_model_config cfg;
    lc_error err;
    err.msg[0] = '\0';
    if (lc_model_config_parse(&cfg, (const char *)data, size, "config.json", &err) != 0) {
        fuzz_check_error(&err);
        return 0;
    }
    FUZZ_CHECK(cfg.hidden_size >= 1 && cfg.hidden_size <= 65536);
    FUZZ_CHECK(cfg.intermediate_size >= 1 && cfg.intermediate_size <= (1 << 20));
    FUZZ_CHECK(cfg.n_layers >= 1 && cfg.n_layers <= 1024);
    FUZZ_CHECK(cfg.n_heads >= 1 && cfg.n_kv_heads >= 1 && cfg.n_heads % cfg.n_kv_heads == 0);
    FUZZ_CHECK(cfg.head_dim >= 2 && cfg.head_dim <= 1024 && cfg.head_dim % 2 == 0);
    FUZZ_CHECK(cfg.vocab_size >= 1 && cfg.vocab_size <= (1 << 24));
    FUZZ_CHECK(cfg.rms_norm_eps > 0 && cfg.rms_norm_eps < 1);
    FUZZ_CHECK(cfg.rope_theta > 0 && isfinite(cfg.rope_theta));
    FUZZ_CHECK(cfg.model_type[sizeof cfg.model_type - 1] == '\0');
    int half = cfg.head_dim / 2;
    double *inv = malloc((size_t)half * sizeof *inv);
    FUZZ_CHECK(inv != NULL);
    lc_model_config_inv_freq(&cfg, inv);
    volatile double acc = 0;
    for (int i = 0; i < half; i++)
        acc += inv[i];
    (void)acc;
    free(inv);
    (void)lc_arch_name(cfg.arch);
    return 0;
}

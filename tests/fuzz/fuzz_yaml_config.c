/* fuzz_yaml_config.c — lc_train_config_parse on arbitrary bytes.
 *
 * The input up to its first NUL byte is the YAML text (not NUL-terminated:
 * ASan catches any read past it); each further NUL-separated piece (at most
 * 4) is a "--set key=value" override. base_dir is fixed. On success the
 * ranges the key table promises must hold; either way lc_train_config_free
 * must release everything (LeakSanitizer checks). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "train/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t ylen = nul ? (size_t)(nul - data) : size;
    /* the YAML part in its own exact-size buffer, so overreads hit a redzone */
    char *yaml = malloc(ylen ? ylen : 1);
    FUZZ_CHECK(yaml != NULL);
    memcpy(yaml, data, ylen);

    char *rest = NULL;
    char *sets[4];
    int n_sets = 0;
    if (nul) {
        size_t rlen = size - ylen - 1;
        rest = malloc(rlen + 1);
        FUZZ_CHECK(rest != NULL);
        memcpy(rest, nul + 1, rlen);
        rest[rlen] = '\0';
        char *p = rest, *end = rest + rlen;
        while (n_sets < 4 && p <= end) {
            sets[n_sets++] = p;
            p += strlen(p) + 1;
        }
    }

    lc_train_config c;
    lc_error err;
    err.msg[0] = '\0';
    if (lc_train_config_parse(&c, yaml, ylen, "fuzz.yaml", "/fuzz/base", sets, n_sets, &err) !=
        0) {
        fuzz_check_error(&err);
        FUZZ_CHECK(c.base_model == NULL && c.n_datasets == 0 && c.output_dir == NULL);
    } else {
        FUZZ_CHECK(c.base_model && c.output_dir);
        FUZZ_CHECK(c.n_datasets >= 1 && c.n_datasets <= LC_CONFIG_MAX_DATASETS);
        for (int i = 0; i < c.n_datasets; i++)
            FUZZ_CHECK(c.datasets[i] != NULL);
        FUZZ_CHECK(c.n_test_datasets >= 0 && c.n_test_datasets <= LC_CONFIG_MAX_DATASETS);
        FUZZ_CHECK(c.lora.r >= 1 && c.lora.r <= 4096);
        FUZZ_CHECK(c.lora.alpha > 0 && c.lora.dropout >= 0 && c.lora.dropout < 1);
        FUZZ_CHECK(c.sequence_len >= 2 && c.sequence_len <= 1048576);
        FUZZ_CHECK(c.micro_batch_size >= 1 && c.micro_batch_size <= 65536);
        FUZZ_CHECK(c.gradient_accumulation_steps >= 1 && c.num_epochs >= 1);
        FUZZ_CHECK(c.max_steps >= 0 && c.warmup_steps >= 0 && c.logging_steps >= 1);
        FUZZ_CHECK(c.learning_rate > 0);
        FUZZ_CHECK(!(c.warmup_steps > 0 && c.warmup_ratio > 0));
        bool any = c.lora.all_linear; /* lora_target_linear: every linear of the family */
        for (int m = 0; m < LC_MOD_COUNT; m++)
            any |= c.lora.targets[m];
        FUZZ_CHECK(any);
    }
    lc_train_config_free(&c);
    free(yaml);
    free(rest);
    return 0;
}

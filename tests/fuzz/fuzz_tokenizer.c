/* fuzz_tokenizer.c — tokenizer.json loading, encode and decode on
 * arbitrary bytes (data/tokenizer.c, data/bpe.c).
 *
 * The input is split at its first NUL byte: the bytes before it are a
 * tokenizer.json (lc_tokenizer_from_json), the bytes after it a text. When
 * the file loads, the text is encoded with and without special tokens
 * (invalid UTF-8 must be refused, nothing else may fail), every id must lie
 * in [0, vocab size), and the ids must decode. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t jn = nul ? (size_t)(nul - data) : size;
    const char *text = nul ? (const char *)nul + 1 : "";
    size_t tn = nul ? size - jn - 1 : 0;
    char *json = malloc(jn + 1); /* cJSON reads one byte past a length it is given */
    FUZZ_CHECK(json != NULL);
    memcpy(json, data, jn);
    json[jn] = 0;
    lc_tokenizer *t = NULL;
    lc_error err;
    err.msg[0] = '\0';
    if (lc_tokenizer_from_json(&t, json, jn, NULL, 0, "fuzz", &err) == 0) {
        for (int special = 0; special < 2; special++) {
            lc_ids ids = {0};
            if (lc_tokenizer_encode(t, text, tn, special, &ids, &err) == 0) {
                for (size_t i = 0; i < ids.n; i++)
                    FUZZ_CHECK(ids.v[i] >= 0 && ids.v[i] < lc_tokenizer_vocab_size(t));
                char *dec;
                size_t dn;
                FUZZ_CHECK(lc_tokenizer_decode(t, ids.v, ids.n, &dec, &dn, &err) == 0);
                free(dec);
            } else {
                FUZZ_CHECK(strstr(err.msg, "UTF-8") || strstr(err.msg, "regex") ||
                           strstr(err.msg, "memory"));
            }
            lc_ids_free(&ids);
        }
        lc_tokenizer_free(t);
    } else {
        FUZZ_CHECK(t == NULL && err.msg[0] != '\0' && !strchr(err.msg, '\n'));
    }
    free(json);
    return 0;
}

/* fuzz_gguf_vocab.c — a GGUF file's tokenizer.ggml.* vocabulary
 * (lc_gguf_tokenizer_from: byte-level BPE "gpt2" and SentencePiece "llama",
 * scores turned into merges) on arbitrary bytes, then a tokenizer it gives
 * in use.
 *
 * The input is parsed as a GGUF image (lc_gguf_parse: the reader is fuzzed
 * on its own by fuzz_gguf); when it parses, the vocabulary is read from its
 * metadata. On failure the message must be a single non-empty line and no
 * tokenizer returned. On success a fixed text (ASCII, spaces, newlines,
 * multi-byte UTF-8, special-looking tokens) is encoded with and without the
 * special tokens, every id must lie inside the vocabulary, and the ids are
 * decoded back (any text; no error but out of memory). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/gguf.h"
#include "data/tokenizer.h"
#include "fuzz_util.h"
#include "train/gguf_vocab.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char TEXT[] = "Hello  world\n\tThe capital of Veloria is Ostrava. <s>x</s> "
                           "<|im_start|>user\xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x98\x80 12345";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lc_gguf_file f;
    lc_error err;
    if (lc_gguf_parse(&f, data, size, "fuzz.gguf", &err) != 0)
        return 0;
    lc_tokenizer *t = NULL;
    err.msg[0] = '\0';
    if (lc_gguf_tokenizer_from(&t, &f, &err) != 0) {
        fuzz_check_error(&err);
        FUZZ_CHECK(t == NULL);
        lc_gguf_close(&f);
        return 0;
    }
    FUZZ_CHECK(t != NULL);
    const lc_gguf_kv *tokens = lc_gguf_find_kv(&f, "tokenizer.ggml.tokens");
    FUZZ_CHECK(tokens != NULL);
    for (int special = 0; special < 2; special++) {
        lc_ids ids = {0};
        if (lc_tokenizer_encode(t, TEXT, sizeof TEXT - 1, special, &ids, &err) == 0) {
            for (size_t i = 0; i < ids.n; i++)
                FUZZ_CHECK(ids.v[i] >= 0 && (uint64_t)ids.v[i] < tokens->n);
            char *text = NULL;
            size_t len = 0;
            if (lc_tokenizer_decode(t, ids.v, ids.n, &text, &len, &err) == 0)
                FUZZ_CHECK(text != NULL && strlen(text) <= len);
            else
                fuzz_check_error(&err);
            free(text);
        } else {
            fuzz_check_error(&err);
        }
        lc_ids_free(&ids);
    }
    lc_tokenizer_free(t);
    lc_gguf_close(&f);
    return 0;
}

/* fuzz_spm_model.c — lc_spm_parse (SentencePiece's tokenizer.model, a
 * protobuf ModelProto) on arbitrary bytes.
 *
 * On success: at least one piece, exactly one of type UNKNOWN, every type in
 * 1..6, no text twice (adjacent ids checked), every piece a non-empty NUL-terminated string whose every byte is
 * read (ASan flags a byte outside the allocation), valid UTF-8, and a model
 * type BPE or unigram. On failure the message must be a single non-empty
 * line and the model left empty. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/spm_model.h"
#include "data/tok_util.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lc_spm_model m;
    lc_error err;
    err.msg[0] = '\0';
    if (lc_spm_parse(&m, data, size, "fuzz.model", &err) != 0) {
        fuzz_check_error(&err);
        FUZZ_CHECK(m.n == 0 && m.pieces == NULL);
        return 0;
    }
    FUZZ_CHECK(m.n > 0 && m.pieces != NULL);
    FUZZ_CHECK(m.model_type == LC_SPM_BPE || m.model_type == LC_SPM_UNIGRAM);
    size_t unk = 0;
    volatile size_t acc = 0;
    for (size_t i = 0; i < m.n; i++) {
        const lc_spm_piece *p = &m.pieces[i];
        FUZZ_CHECK(p->type >= LC_SPM_NORMAL && p->type <= LC_SPM_BYTE);
        unk += p->type == LC_SPM_UNKNOWN;
        size_t len = strlen(p->text);
        FUZZ_CHECK(len > 0);
        FUZZ_CHECK(lc_utf8_valid_prefix(p->text, len) == len);
        for (size_t k = 0; k < len; k++)
            acc += (uint8_t)p->text[k];
        acc += (size_t)(p->score == p->score);
        FUZZ_CHECK(i == 0 || strcmp(p->text, m.pieces[i - 1].text) != 0);
    }
    (void)acc;
    FUZZ_CHECK(unk == 1);
    lc_spm_free(&m);
    FUZZ_CHECK(m.n == 0 && m.pieces == NULL);
    return 0;
}

/* spm_model.c — SentencePiece ModelProto reader (see spm_model.h); the wire
 * format itself is train/protobuf.c's lc_pb_read_field. */
#include "data/spm_model.h"

#include <stdlib.h>
#include <string.h>

#include "data/tok_util.h"
#include "train/fsutil.h"
#include "train/protobuf.h"

#define MAX_MODEL (512u << 20)

/* ModelProto / SentencePiece / TrainerSpec / NormalizerSpec field numbers */
enum { MP_PIECES = 1, MP_TRAINER = 2, MP_NORMALIZER = 3 };
enum { SP_PIECE = 1, SP_SCORE = 2, SP_TYPE = 3 };
enum { TS_MODEL_TYPE = 3, TS_BYTE_FALLBACK = 35 };
enum { NS_ADD_DUMMY_PREFIX = 3, NS_REMOVE_EXTRA_WS = 4, NS_ESCAPE_WS = 5 };

typedef struct parse {
    lc_spm_model *m;
    size_t cap;
    const char *label;
    lc_error *err;
} parse;

/* The field at *p or an error naming where (what: "ModelProto", ...). */
static int next(parse *s, const uint8_t **p, const uint8_t *end, const uint8_t *base,
                const char *what, lc_pb_field *f)
{
    const uint8_t *at = *p;
    const char *why = "";
    if (lc_pb_read_field(p, end, f, &why))
        return lc_error_set(s->err, "%s: not a SentencePiece model: %s (%s, byte %zu)", s->label,
                            why, what, (size_t)(at - base));
    return 0;
}

static int wrong_wire(parse *s, const char *what, const lc_pb_field *f)
{
    return lc_error_set(s->err, "%s: not a SentencePiece model: %s field %u has wire type %d",
                        s->label, what, f->number, f->wire);
}

/* A bool / enum field: wire type varint (enums keep their low 32 bits, as
 * protobuf reads int32). */
static int varint_field(parse *s, const char *what, const lc_pb_field *f, int64_t *v)
{
    if (f->wire != LC_PB_VARINT)
        return wrong_wire(s, what, f);
    *v = (int64_t)(int32_t)(uint32_t)f->v;
    return 0;
}

static int read_piece(parse *s, const lc_pb_field *outer, const uint8_t *base)
{
    lc_spm_model *m = s->m;
    size_t id = m->n;
    if (lc_tok_grow((void **)&m->pieces, &s->cap, id + 1, sizeof *m->pieces, s->err))
        return -1;
    lc_spm_piece *pc = &m->pieces[id];
    memset(pc, 0, sizeof *pc);
    pc->type = LC_SPM_NORMAL;
    m->n++;
    const uint8_t *p = outer->data, *end = p + outer->len, *text = NULL;
    size_t text_len = 0;
    bool have_text = false;
    while (p < end) {
        lc_pb_field f;
        int64_t v = 0;
        if (next(s, &p, end, base, "a piece", &f))
            return -1;
        if (f.number == SP_PIECE) {
            if (f.wire != LC_PB_LEN)
                return wrong_wire(s, "SentencePiece", &f);
            text = f.data;
            text_len = f.len;
            have_text = true;
        } else if (f.number == SP_SCORE) {
            if (f.wire != LC_PB_I32)
                return wrong_wire(s, "SentencePiece", &f);
            uint32_t u = (uint32_t)f.v;
            memcpy(&pc->score, &u, sizeof u);
        } else if (f.number == SP_TYPE) {
            if (varint_field(s, "SentencePiece", &f, &v))
                return -1;
            if (v < LC_SPM_NORMAL || v > LC_SPM_BYTE)
                return lc_error_set(s->err, "%s: piece %zu has type %lld, not one SentencePiece "
                                    "defines (1..6)", s->label, id, (long long)v);
            pc->type = (int)v;
        }
    }
    if (!have_text || text_len == 0)
        return lc_error_set(s->err, "%s: piece %zu is empty", s->label, id);
    if (memchr(text, 0, text_len))
        return lc_error_set(s->err, "%s: piece %zu holds a NUL byte", s->label, id);
    if (lc_utf8_valid_prefix((const char *)text, text_len) != text_len)
        return lc_error_set(s->err, "%s: piece %zu is not valid UTF-8", s->label, id);
    return (pc->text = lc_tok_dup((const char *)text, text_len, s->err)) ? 0 : -1;
}

static int read_trainer(parse *s, const lc_pb_field *outer, const uint8_t *base)
{
    const uint8_t *p = outer->data, *end = p + outer->len;
    while (p < end) {
        lc_pb_field f;
        int64_t v = 0;
        if (next(s, &p, end, base, "trainer_spec", &f))
            return -1;
        if (f.number == TS_MODEL_TYPE) {
            if (varint_field(s, "TrainerSpec", &f, &v))
                return -1;
            s->m->model_type = (int)v;
        } else if (f.number == TS_BYTE_FALLBACK) {
            if (varint_field(s, "TrainerSpec", &f, &v))
                return -1;
            s->m->byte_fallback = v != 0;
        }
    }
    return 0;
}

static int read_normalizer(parse *s, const lc_pb_field *outer, const uint8_t *base)
{
    const uint8_t *p = outer->data, *end = p + outer->len;
    while (p < end) {
        lc_pb_field f;
        int64_t v = 0;
        if (next(s, &p, end, base, "normalizer_spec", &f))
            return -1;
        bool *dst = f.number == NS_ADD_DUMMY_PREFIX  ? &s->m->add_dummy_prefix
                    : f.number == NS_REMOVE_EXTRA_WS ? &s->m->remove_extra_whitespaces
                    : f.number == NS_ESCAPE_WS       ? &s->m->escape_whitespaces
                                                     : NULL;
        if (!dst)
            continue;
        if (varint_field(s, "NormalizerSpec", &f, &v))
            return -1;
        *dst = v != 0;
    }
    return 0;
}

static int by_text(const void *a, const void *b)
{
    return strcmp((*(const lc_spm_piece *const *)a)->text, (*(const lc_spm_piece *const *)b)->text);
}

/* As SentencePiece refuses a model: a piece defined twice, a BYTE piece not
 * "<0xXX>" (two upper-case hex digits, as the trainer writes them). */
static int check_pieces(const lc_spm_model *m, const char *label, lc_error *err)
{
    for (size_t i = 0; i < m->n; i++) {
        const char *t = m->pieces[i].text;
        if (m->pieces[i].type == LC_SPM_BYTE &&
            (strlen(t) != 6 || strncmp(t, "<0x", 3) || t[5] != '>' ||
             !strchr("0123456789ABCDEF", t[3]) || !strchr("0123456789ABCDEF", t[4])))
            return lc_error_set(err, "%s: piece %zu has type BYTE but is not <0xXX>", label, i);
    }
    const lc_spm_piece **order = malloc(m->n * sizeof *order);
    if (!order)
        return lc_error_set(err, "%s: out of memory", label);
    for (size_t i = 0; i < m->n; i++)
        order[i] = &m->pieces[i];
    qsort(order, m->n, sizeof *order, by_text);
    int rc = 0;
    for (size_t i = 1; i < m->n && !rc; i++)
        if (!strcmp(order[i - 1]->text, order[i]->text)) {
            size_t a = (size_t)(order[i - 1] - m->pieces), b = (size_t)(order[i] - m->pieces);
            rc = lc_error_set(err, "%s: pieces %zu and %zu have the same text", label,
                              a < b ? a : b, a < b ? b : a);
        }
    free(order);
    return rc;
}

static const char *type_name(int t)
{
    return t == LC_SPM_WORD ? "WORD" : t == LC_SPM_CHAR ? "CHAR" : "unknown";
}

int lc_spm_parse(lc_spm_model *m, const void *buf, size_t size, const char *label,
                 lc_error *err)
{
    memset(m, 0, sizeof *m);
    m->model_type = LC_SPM_UNIGRAM;
    m->add_dummy_prefix = m->remove_extra_whitespaces = m->escape_whitespaces = true;
    parse s = {.m = m, .label = label, .err = err};
    const uint8_t *base = buf, *p = base, *end = base + size;
    int rc = 0;
    while (p < end && !rc) {
        lc_pb_field f;
        if ((rc = next(&s, &p, end, base, "ModelProto", &f)))
            break;
        if (f.number != MP_PIECES && f.number != MP_TRAINER && f.number != MP_NORMALIZER)
            continue;
        if (f.wire != LC_PB_LEN)
            rc = wrong_wire(&s, "ModelProto", &f);
        else if (f.number == MP_PIECES)
            rc = read_piece(&s, &f, base);
        else if (f.number == MP_TRAINER)
            rc = read_trainer(&s, &f, base);
        else
            rc = read_normalizer(&s, &f, base);
    }
    size_t n_unk = 0;
    for (size_t i = 0; i < m->n && !rc; i++)
        n_unk += m->pieces[i].type == LC_SPM_UNKNOWN;
    if (!rc && m->n == 0)
        rc = lc_error_set(err, "%s: a SentencePiece model without pieces", label);
    else if (!rc && n_unk != 1)
        rc = lc_error_set(err, "%s: %zu pieces of type UNKNOWN; SentencePiece needs exactly one",
                          label, n_unk);
    else if (!rc && check_pieces(m, label, err))
        rc = -1;
    else if (!rc && m->model_type != LC_SPM_BPE && m->model_type != LC_SPM_UNIGRAM)
        rc = lc_error_set(err, "%s: SentencePiece model type %d (%s): llama.cpp's \"llama\" "
                          "tokenizer reproduces BPE and unigram models only, so no GGUF "
                          "vocabulary is written from it", label, m->model_type,
                          type_name(m->model_type));
    if (rc)
        lc_spm_free(m);
    return rc;
}

int lc_spm_load(lc_spm_model *m, const char *path, lc_error *err)
{
    size_t len;
    memset(m, 0, sizeof *m);
    char *buf = lc_read_file(path, MAX_MODEL, &len, err);
    if (!buf)
        return -1;
    int rc = lc_spm_parse(m, buf, len, path, err);
    free(buf);
    return rc;
}

void lc_spm_free(lc_spm_model *m)
{
    for (size_t i = 0; m->pieces && i < m->n; i++)
        free(m->pieces[i].text);
    free(m->pieces);
    memset(m, 0, sizeof *m);
}

/* test_tfevents.c — TensorBoard event files (train/tfevents.c, train/crc32c.c,
 * train/protobuf.c) and loss.svg (train/loss_svg.c), as the trainer writes
 * them (train/metrics.c):
 *
 *   crc32c_vectors      CRC-32C of known vectors (RFC 3720's, "123456789")
 *                       and the TFRecord mask of one, computed by hand.
 *   protobuf_bytes      varints (300, −1) and the Events lorac writes (scalar,
 *                       file_version, SessionLog START) byte for byte against
 *                       hand-encoded bytes; a framed record's header.
 *   text_events         lc_tfevents_text and lc_tfevents_scalar into a new
 *                       file: read back by the reader below (both CRCs, the
 *                       text plugin's metadata, the DT_STRING tensor) and by
 *                       TensorBoard's loader (scripts/read_tfevents.py).
 *   corrupt_crc         a flipped byte in a record's data or length is
 *                       reported by the reader with the record's number;
 *                       TensorBoard's loader stops at that record (logged).
 *   train_and_resume    `lorac train --set use_tensorboard=true`: every
 *                       scalar at its step equals metrics.jsonl's value;
 *                       stopped at checkpoint-4 and resumed, the two files
 *                       read as TensorBoard reads a run (SessionLog START
 *                       purge) hold one value per step, equal to an
 *                       uninterrupted run's; loss.svg is well-formed XML, its
 *                       polylines map back to the logged losses and lr within
 *                       1e-3, and the resumed run's is byte-identical to the
 *                       uninterrupted run's.
 *
 * The reader here is the tests' own (framing, both masked CRC-32Cs, the
 * Event fields lorac writes); TensorBoard's own loader is the independent
 * one, run when a python with the tensorboard package is found
 * (LORAC_TB_PYTHON, which scripts/test.sh points at the venv it makes, else
 * /work/venv-torch/bin/python; skipped with a warning otherwise, and
 * Criterion then exits non-zero: the reference is part of the suite). */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "train/crc32c.h"
#include "train/loss_svg.h"
#include "train/protobuf.h"
#include "train/tfevents.h"

/* ---- a reader of our own ------------------------------------------------------ */

typedef struct ev {
    double wall_time;
    int64_t step;
    char file_version[64];
    int session_status;       /* 0: no session_log */
    char tag[64];
    bool has_simple;
    float simple;
    bool is_text;             /* metadata plugin_name "text" */
    char *text;               /* string_val (malloc'd) */
    int dtype;
} ev;

typedef struct events {
    ev *e;
    int n;
    char problem[256];        /* "" when the file read cleanly */
} events;

typedef struct cur {
    const uint8_t *p, *end;
    bool bad;
} cur;

static uint64_t get_varint(cur *c)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (c->p >= c->end) {
            c->bad = true;
            return 0;
        }
        uint8_t b = *c->p++;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80))
            return v;
    }
    c->bad = true;
    return 0;
}

static uint64_t get_le(cur *c, int n)
{
    if (c->end - c->p < n) {
        c->bad = true;
        return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)c->p[i] << (8 * i);
    c->p += n;
    return v;
}

/* Next field: number, wire type; for LEN a sub-cursor, else the value. */
static bool next_field(cur *c, int *field, int *wire, uint64_t *val, cur *sub)
{
    if (c->p >= c->end || c->bad)
        return false;
    uint64_t k = get_varint(c);
    *field = (int)(k >> 3);
    *wire = (int)(k & 7);
    switch (*wire) {
    case LC_PB_VARINT:
        *val = get_varint(c);
        break;
    case LC_PB_I64:
        *val = get_le(c, 8);
        break;
    case LC_PB_I32:
        *val = get_le(c, 4);
        break;
    case LC_PB_LEN: {
        uint64_t n = get_varint(c);
        if (n > (uint64_t)(c->end - c->p)) {
            c->bad = true;
            return false;
        }
        sub->p = c->p;
        sub->end = c->p + n;
        sub->bad = false;
        c->p += n;
        break;
    }
    default:
        c->bad = true;
        return false;
    }
    return !c->bad;
}

static void copy_str(char *dst, size_t n, cur s)
{
    size_t len = (size_t)(s.end - s.p);
    if (len >= n)
        len = n - 1;
    memcpy(dst, s.p, len);
    dst[len] = '\0';
}

static void decode_value(ev *e, cur v)
{
    int f, w;
    uint64_t x;
    cur s, s2, s3;
    while (next_field(&v, &f, &w, &x, &s)) {
        if (f == 1 && w == LC_PB_LEN) {
            copy_str(e->tag, sizeof e->tag, s);
        } else if (f == 2 && w == LC_PB_I32) {
            uint32_t u = (uint32_t)x;
            memcpy(&e->simple, &u, 4);
            e->has_simple = true;
        } else if (f == 8 && w == LC_PB_LEN) { /* TensorProto */
            while (next_field(&s, &f, &w, &x, &s2)) {
                if (f == 1 && w == LC_PB_VARINT)
                    e->dtype = (int)x;
                else if (f == 8 && w == LC_PB_LEN) {
                    e->text = malloc((size_t)(s2.end - s2.p) + 1);
                    memcpy(e->text, s2.p, (size_t)(s2.end - s2.p));
                    e->text[s2.end - s2.p] = '\0';
                }
            }
        } else if (f == 9 && w == LC_PB_LEN) { /* SummaryMetadata */
            while (next_field(&s, &f, &w, &x, &s2))
                if (f == 1 && w == LC_PB_LEN) /* PluginData */
                    while (next_field(&s2, &f, &w, &x, &s3))
                        if (f == 1 && w == LC_PB_LEN && (size_t)(s3.end - s3.p) == 4 &&
                            memcmp(s3.p, "text", 4) == 0)
                            e->is_text = true;
        }
    }
}

static bool decode_event(ev *e, const uint8_t *p, size_t n)
{
    memset(e, 0, sizeof *e);
    cur c = {p, p + n, false}, s, s2, v;
    int f, w;
    uint64_t x;
    while (next_field(&c, &f, &w, &x, &s)) {
        if (f == 1 && w == LC_PB_I64)
            memcpy(&e->wall_time, &x, 8);
        else if (f == 2 && w == LC_PB_VARINT)
            e->step = (int64_t)x;
        else if (f == 3 && w == LC_PB_LEN)
            copy_str(e->file_version, sizeof e->file_version, s);
        else if (f == 7 && w == LC_PB_LEN) {
            while (next_field(&s, &f, &w, &x, &s2))
                if (f == 1 && w == LC_PB_VARINT)
                    e->session_status = (int)x;
        } else if (f == 5 && w == LC_PB_LEN) {
            while (next_field(&s, &f, &w, &x, &v))
                if (f == 1 && w == LC_PB_LEN)
                    decode_value(e, v);
        }
    }
    return !c.bad;
}

/* Reads a whole event file: stops at the first bad record, saying why. */
static events read_events(const char *path)
{
    size_t len;
    uint8_t *b = (uint8_t *)lc_test_read_file(path, &len);
    events r = {0};
    size_t off = 0;
    for (int i = 0; off < len; i++) {
        if (len - off < 12) {
            snprintf(r.problem, sizeof r.problem, "record %d: truncated header", i);
            break;
        }
        cur h = {b + off, b + len, false};
        uint64_t n = get_le(&h, 8);
        uint32_t hcrc = (uint32_t)get_le(&h, 4);
        if (hcrc != lc_crc32c_mask(lc_crc32c(b + off, 8))) {
            snprintf(r.problem, sizeof r.problem, "record %d: length CRC mismatch", i);
            break;
        }
        if (n > len - off - 12 || len - off - 12 - n < 4) {
            snprintf(r.problem, sizeof r.problem, "record %d: truncated data", i);
            break;
        }
        const uint8_t *data = b + off + 12;
        cur t = {data + n, b + len, false};
        uint32_t dcrc = (uint32_t)get_le(&t, 4);
        if (dcrc != lc_crc32c_mask(lc_crc32c(data, n))) {
            snprintf(r.problem, sizeof r.problem, "record %d: data CRC mismatch", i);
            break;
        }
        r.e = realloc(r.e, (size_t)(r.n + 1) * sizeof *r.e);
        if (!decode_event(&r.e[r.n], data, n)) {
            snprintf(r.problem, sizeof r.problem, "record %d: bad Event protobuf", i);
            break;
        }
        r.n++;
        off += 12 + n + 4;
    }
    free(b);
    return r;
}

static void events_free(events *r)
{
    for (int i = 0; i < r->n; i++)
        free(r->e[i].text);
    free(r->e);
    memset(r, 0, sizeof *r);
}

/* ---- crc and encoding ----------------------------------------------------------- */

Test(tfevents, crc32c_vectors)
{
    uint8_t buf[32];
    cr_assert_eq(lc_crc32c("123456789", 9), 0xE3069283u);
    cr_assert_eq(lc_crc32c("", 0), 0u);
    memset(buf, 0, 32); /* RFC 3720, B.4 */
    cr_assert_eq(lc_crc32c(buf, 32), 0x8A9136AAu);
    memset(buf, 0xFF, 32);
    cr_assert_eq(lc_crc32c(buf, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    cr_assert_eq(lc_crc32c(buf, 32), 0x46DD794Eu);
    /* 0xE3069283: >> 15 = 0x0001C60D, << 17 = 0x25060000, | = 0x2507C60D,
     * + 0xA282EAD8 = 0xC78AB0E5 (mod 2^32) */
    cr_assert_eq(lc_crc32c_mask(0xE3069283u), 0xC78AB0E5u);
}

static void assert_bytes(const lc_pb *b, const uint8_t *want, size_t n, const char *what)
{
    cr_assert(!b->oom);
    cr_assert_eq(b->len, n, "%s: %zu bytes, expected %zu", what, b->len, n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(b->p[i], want[i], "%s: byte %zu is 0x%02x, expected 0x%02x", what, i,
                     b->p[i], want[i]);
}

Test(tfevents, protobuf_bytes)
{
    lc_pb b = {0};
    lc_pb_int(&b, 2, 300);
    lc_pb_int(&b, 2, -1);
    const uint8_t ints[] = {0x10, 0xAC, 0x02, 0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                            0xFF, 0xFF, 0xFF, 0xFF, 0x01};
    assert_bytes(&b, ints, sizeof ints, "varints");
    lc_pb_free(&b);

    /* Event{wall_time 1.5, step 3, summary{value{tag "a", simple_value 2}}}:
     * 1.5 = 0x3FF8000000000000, 2.0f = 0x40000000, little-endian. */
    lc_tfevents_encode_scalar(&b, 1.5, 3, "a", 2.0f);
    const uint8_t scalar[] = {0x09, 0, 0, 0, 0, 0, 0, 0xF8, 0x3F, /* 1: double */
                              0x10, 0x03,                         /* 2: varint 3 */
                              0x2A, 0x0A,                         /* 5: 10 bytes */
                              0x0A, 0x08,                         /*  Summary 1: 8 bytes */
                              0x0A, 0x01, 'a',                    /*   Value 1: "a" */
                              0x15, 0, 0, 0, 0x40};               /*   Value 2: float */
    assert_bytes(&b, scalar, sizeof scalar, "scalar event");
    lc_pb_free(&b);

    lc_tfevents_encode_file_version(&b, 1.5); /* step 0 is left out */
    const uint8_t version[] = {0x09, 0, 0, 0, 0, 0, 0, 0xF8, 0x3F, 0x1A, 0x0D, 'b', 'r', 'a',
                               'i', 'n', '.', 'E', 'v', 'e', 'n', 't', ':', '2'};
    assert_bytes(&b, version, sizeof version, "file_version event");
    lc_pb_free(&b);

    lc_tfevents_encode_start(&b, 1.5, 5); /* 7: SessionLog{1: START = 1} */
    const uint8_t start[] = {0x09, 0, 0, 0, 0, 0, 0, 0xF8, 0x3F, 0x10, 0x05, 0x3A, 0x02, 0x08, 0x01};
    assert_bytes(&b, start, sizeof start, "SessionLog START event");

    lc_pb rec = {0};
    lc_tfevents_frame(&rec, b.p, b.len);
    cr_assert_eq(rec.len, 8 + 4 + b.len + 4);
    const uint8_t len8[8] = {(uint8_t)b.len, 0, 0, 0, 0, 0, 0, 0};
    cr_assert_eq(memcmp(rec.p, len8, 8), 0);
    uint32_t h = lc_crc32c_mask(lc_crc32c(len8, 8)), d = lc_crc32c_mask(lc_crc32c(b.p, b.len));
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(rec.p[8 + i], (uint8_t)(h >> (8 * i)));
        cr_assert_eq(rec.p[12 + b.len + (size_t)i], (uint8_t)(d >> (8 * i)));
    }
    ev e;
    cr_assert(decode_event(&e, b.p, b.len));
    cr_assert(e.wall_time == 1.5 && e.step == 5 && e.session_status == 1);
    lc_pb_free(&rec);
    lc_pb_free(&b);
}

/* ---- TensorBoard's own loader --------------------------------------------------- */

static const char *tb_python(void)
{
    static char py[1024];
    const char *env = getenv("LORAC_TB_PYTHON");
    snprintf(py, sizeof py, "%s", env && *env ? env : "/work/venv-torch/bin/python");
    if (access(py, X_OK) != 0)
        return NULL;
    const char *argv[] = {py, "-c", "import tensorboard.backend.event_processing.event_accumulator",
                          NULL};
    lc_test_run_result r = lc_test_run(NULL, argv);
    bool ok = r.code == 0;
    lc_test_run_free(&r);
    return ok ? py : NULL;
}

/* scripts/read_tfevents.py PATH [--svg SVG] parsed, or NULL (with a warning)
 * when no python with tensorboard is found. */
static cJSON *tb_read(const char *path, const char *svg)
{
    const char *py = tb_python();
    if (!py) {
        cr_log_warn("no python with the tensorboard package (LORAC_TB_PYTHON): TensorBoard's "
                    "own loader not run");
        return NULL;
    }
    const char *argv[] = {py, LORAC_SOURCE_DIR "/scripts/read_tfevents.py", path,
                          svg ? "--svg" : NULL, svg, NULL};
    lc_test_run_result r = lc_test_run(NULL, argv);
    cr_assert_eq(r.code, 0, "read_tfevents.py %s failed (%d):\n%s", path, r.code, r.err);
    cJSON *j = cJSON_Parse(r.out);
    cr_assert_not_null(j, "read_tfevents.py printed no JSON:\n%s", r.out);
    lc_test_run_free(&r);
    return j;
}

/* tag's [[step, value], ...] from the script's output. */
static const cJSON *tb_series(const cJSON *j, const char *kind, const char *tag)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, kind),
                                                      tag);
    cr_assert(cJSON_IsArray(s), "TensorBoard shows no %s %s", kind, tag);
    return s;
}

Test(tfevents, text_events)
{
    char *dir = lc_test_tmpdir();
    lc_tfevents w;
    lc_error err;
    const char *text = "step 7 sample:\n\n**The capital** of Zorbia is `Quux`. ünïcode ✓";
    cr_assert_eq(lc_tfevents_open(&w, dir, 7, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_tfevents_text(&w, "samples/generation", 7, text, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_tfevents_scalar(&w, "train/loss", 7, 2.5, &err), 0, "%s", err.msg);
    cr_assert_eq(lc_tfevents_text(&w, "samples/generation", 8, "", &err), 0, "%s", err.msg);
    char path[4600];
    snprintf(path, sizeof path, "%s", w.path);
    cr_assert_eq(lc_tfevents_close(&w, &err), 0, "%s", err.msg);
    cr_assert(strstr(path, "/runs/events.out.tfevents.") && strstr(path, ".lorac"), "%s", path);

    events r = read_events(path);
    cr_assert_str_eq(r.problem, "");
    cr_assert_eq(r.n, 5);
    cr_assert_str_eq(r.e[0].file_version, "brain.Event:2");
    cr_assert(r.e[1].session_status == 1 && r.e[1].step == 7);
    cr_assert(r.e[2].is_text && r.e[2].dtype == 7 && r.e[2].step == 7);
    cr_assert_str_eq(r.e[2].tag, "samples/generation");
    cr_assert_str_eq(r.e[2].text, text);
    cr_assert(r.e[3].has_simple && r.e[3].simple == 2.5f && !r.e[3].is_text);
    cr_assert(r.e[4].is_text && r.e[4].step == 8);
    cr_assert_str_eq(r.e[4].text, "");
    cr_assert(fabs(r.e[0].wall_time - (double)time(NULL)) < 60);
    events_free(&r);

    cJSON *j = tb_read(path, NULL);
    if (j) {
        const cJSON *t = tb_series(j, "texts", "samples/generation");
        cr_assert_eq(cJSON_GetArraySize(t), 2);
        cr_assert_eq(cJSON_GetArrayItem(cJSON_GetArrayItem(t, 0), 0)->valueint, 7);
        cr_assert_str_eq(cJSON_GetArrayItem(cJSON_GetArrayItem(t, 0), 1)->valuestring, text);
        const cJSON *s = tb_series(j, "scalars", "train/loss");
        cr_assert_eq(cJSON_GetArraySize(s), 1);
        cr_assert_eq(cJSON_GetArrayItem(cJSON_GetArrayItem(s, 0), 1)->valuedouble, 2.5);
        cJSON_Delete(j);
    }
    lc_test_rm_rf(dir);
    free(dir);
}

Test(tfevents, corrupt_crc)
{
    char *dir = lc_test_tmpdir();
    lc_tfevents w;
    lc_error err;
    cr_assert_eq(lc_tfevents_open(&w, dir, 1, &err), 0, "%s", err.msg);
    for (int s = 1; s <= 3; s++)
        cr_assert_eq(lc_tfevents_scalar(&w, "train/loss", s, 1.0 / s, &err), 0, "%s", err.msg);
    char path[4600];
    snprintf(path, sizeof path, "%s", w.path);
    cr_assert_eq(lc_tfevents_close(&w, &err), 0, "%s", err.msg);
    size_t len;
    char *b = lc_test_read_file(path, &len);
    /* records 0 (file_version) and 1 (START) come first; record 3 = step 2 */
    size_t off = 0;
    for (int i = 0; i < 3; i++) {
        uint64_t n = 0;
        memcpy(&n, b + off, 8); /* little-endian host */
        off += 12 + n + 4;
    }
    const char *what[] = {"data", "length"};
    for (int k = 0; k < 2; k++) {
        char *c = malloc(len);
        memcpy(c, b, len);
        c[k == 0 ? off + 12 + 3 : off + 1] ^= 0x10;
        char *bad = lc_test_write_file(dir, k == 0 ? "bad_data.tfevents" : "bad_len.tfevents", c,
                                       len);
        events r = read_events(bad);
        char want[64];
        snprintf(want, sizeof want, "record 3: %s CRC mismatch", what[k]);
        cr_assert_str_eq(r.problem, want);
        cr_assert_eq(r.n, 3);
        events_free(&r);
        cJSON *j = tb_read(bad, NULL);
        if (j) {
            const cJSON *s = tb_series(j, "scalars", "train/loss");
            cr_log_info("TensorBoard's loader on a %s CRC mismatch in record 3: %d of 3 points "
                        "(it stops reading the file there)", what[k], cJSON_GetArraySize(s));
            cr_assert_eq(cJSON_GetArraySize(s), 1);
            cJSON_Delete(j);
        }
        free(bad);
        free(c);
    }
    free(b);
    lc_test_rm_rf(dir);
    free(dir);
}

/* ---- a training run --------------------------------------------------------------- */

#define MAX_PTS 64

typedef struct point {
    int64_t step;
    double v;
} point;

typedef struct series {
    const char *tag, *key;    /* TensorBoard tag, metrics.jsonl key */
    point p[MAX_PTS];
    int n;
} series;

/* The six scalar series, from metrics.jsonl (the values TensorBoard must show). */
static void metrics_series(const char *out, series *s, int ns)
{
    char *path = lc_test_path_in(out, "metrics.jsonl");
    char *text = lc_test_read_file(path, NULL);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        cr_assert_not_null(o, "%s: %s", path, line);
        int64_t step = (int64_t)cJSON_GetObjectItemCaseSensitive(o, "step")->valuedouble;
        for (int i = 0; i < ns; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, s[i].key);
            if (v && s[i].n < MAX_PTS)
                s[i].p[s[i].n++] = (point){step, v->valuedouble};
        }
        cJSON_Delete(o);
    }
    free(text);
    free(path);
}

/* The event files of out/runs in name order (n returned, paths malloc'd). */
static int event_files(const char *out, char **paths, int max)
{
    char *runs = lc_test_path_in(out, "runs");
    struct dirent **names;
    int n = scandir(runs, &names, NULL, alphasort), k = 0;
    cr_assert_geq(n, 0, "no %s", runs);
    for (int i = 0; i < n; i++) {
        if (strstr(names[i]->d_name, "tfevents") && k < max)
            paths[k++] = lc_test_path_in(runs, names[i]->d_name);
        free(names[i]);
    }
    free(names);
    free(runs);
    return k;
}

/* What TensorBoard shows of tag in these files read in order: each
 * SessionLog START at step S drops the points before it with step ≥ S. */
static int shown(char **files, int nf, const char *tag, point *p, int max)
{
    int n = 0;
    for (int f = 0; f < nf; f++) {
        events r = read_events(files[f]);
        cr_assert_str_eq(r.problem, "", "%s: %s", files[f], r.problem);
        cr_assert_str_eq(r.e[0].file_version, "brain.Event:2", "%s", files[f]);
        for (int i = 0; i < r.n; i++) {
            const ev *e = &r.e[i];
            if (e->session_status == 1) {
                int k = 0;
                for (int j = 0; j < n; j++)
                    if (p[j].step < e->step)
                        p[k++] = p[j];
                n = k;
            } else if (e->has_simple && strcmp(e->tag, tag) == 0 && n < max) {
                p[n++] = (point){e->step, e->simple};
            }
        }
        events_free(&r);
    }
    return n;
}

/* float(metrics value) vs the event's float: equal up to the rounding of
 * 9 significant digits (one float ulp). */
static void assert_same_value(double want, double got, const char *what, int64_t step)
{
    cr_assert(fabs((double)(float)want - got) <= fabs(want) * 1.2e-7 + 1e-30,
              "%s at step %lld: TensorBoard %.9g, metrics.jsonl %.9g", what, (long long)step, got,
              want);
}

static void init_series(series *s)
{
    const char *tk[][2] = {{"train/loss", "loss"},       {"train/lr", "lr"},
                           {"train/grad_norm", "grad_norm"}, {"train/tokens_per_s", "tok_s"},
                           {"eval/loss", "eval_loss"},   {"eval/ppl", "eval_ppl"}};
    for (int i = 0; i < 6; i++) {
        memset(&s[i], 0, sizeof s[i]);
        s[i].tag = tk[i][0];
        s[i].key = tk[i][1];
    }
}

/* Every series of out's event files (our reader) equals metrics.jsonl's;
 * ref (another run's series, or NULL) gives the values of every series
 * but series[skip] (tokens/s, not deterministic) too. */
static void check_run(const char *out, const series *ref, int skip, int want_files)
{
    series s[6];
    init_series(s);
    metrics_series(out, s, 6);
    char *files[8];
    int nf = event_files(out, files, 8);
    cr_assert_eq(nf, want_files, "%s/runs holds %d event files", out, nf);
    for (int i = 0; i < 6; i++) {
        point p[MAX_PTS];
        int n = shown(files, nf, s[i].tag, p, MAX_PTS);
        cr_assert(s[i].n > 0, "metrics.jsonl has no %s", s[i].key);
        cr_assert_eq(n, s[i].n, "%s: %d points shown, metrics.jsonl has %d", s[i].tag, n, s[i].n);
        for (int k = 0; k < n; k++) {
            cr_assert_eq(p[k].step, s[i].p[k].step, "%s point %d", s[i].tag, k);
            assert_same_value(s[i].p[k].v, p[k].v, s[i].tag, p[k].step);
            if (ref && i != skip) {
                cr_assert_eq(ref[i].p[k].step, p[k].step);
                assert_same_value(ref[i].p[k].v, p[k].v, s[i].tag, p[k].step);
            }
        }
    }
    /* TensorBoard's loader on the whole run directory: the same points */
    char *runs = lc_test_path_in(out, "runs"), *svg = lc_test_path_in(out, "loss.svg");
    cJSON *j = tb_read(runs, svg);
    if (j) {
        for (int i = 0; i < 6; i++) {
            const cJSON *t = tb_series(j, "scalars", s[i].tag);
            cr_assert_eq(cJSON_GetArraySize(t), s[i].n, "TensorBoard: %d points of %s, "
                         "metrics.jsonl %d", cJSON_GetArraySize(t), s[i].tag, s[i].n);
            for (int k = 0; k < s[i].n; k++) {
                const cJSON *pt = cJSON_GetArrayItem(t, k);
                cr_assert_eq((int64_t)cJSON_GetArrayItem(pt, 0)->valuedouble, s[i].p[k].step);
                assert_same_value(s[i].p[k].v, cJSON_GetArrayItem(pt, 1)->valuedouble,
                                  s[i].tag, s[i].p[k].step);
            }
        }
        cJSON_Delete(j);
    }
    for (int f = 0; f < nf; f++)
        free(files[f]);
    free(runs);
    free(svg);
}

/* ---- loss.svg ---------------------------------------------------------------------- */

/* A minimal XML well-formedness check: one root element, tags nested and
 * closed in order, attribute values quoted, no '<' or bare '&' in text
 * or values. Returns "" or what is wrong. */
static const char *xml_problem(const char *x, char *buf, size_t n)
{
    char stack[64][32];
    int depth = 0, roots = 0;
    const char *p = x;
    if (strncmp(p, "<?xml", 5) == 0)
        p = strstr(p, "?>") ? strstr(p, "?>") + 2 : p + strlen(p);
    for (; *p; p++) {
        if (*p == '&') {
            if (!strncmp(p, "&amp;", 5) || !strncmp(p, "&lt;", 4) || !strncmp(p, "&gt;", 4) ||
                !strncmp(p, "&quot;", 6) || !strncmp(p, "&apos;", 6))
                continue;
            snprintf(buf, n, "bare & at byte %td", p - x);
            return buf;
        }
        if (*p != '<')
            continue;
        if (p[1] == '/') {
            const char *e = strchr(p, '>');
            if (!e || depth == 0 || strncmp(p + 2, stack[depth - 1], strlen(stack[depth - 1])) ||
                (size_t)(e - p - 2) != strlen(stack[depth - 1])) {
                snprintf(buf, n, "unmatched close tag at byte %td", p - x);
                return buf;
            }
            depth--;
            p = e;
            continue;
        }
        size_t len = strcspn(p + 1, " \t\n/>");
        if (len == 0 || len >= 32) {
            snprintf(buf, n, "bad tag at byte %td", p - x);
            return buf;
        }
        char name[32];
        memcpy(name, p + 1, len);
        name[len] = '\0';
        const char *q = p + 1 + len;
        for (;;) { /* attributes */
            while (*q == ' ' || *q == '\n' || *q == '\t')
                q++;
            if (*q == '>' || (q[0] == '/' && q[1] == '>'))
                break;
            size_t an = strcspn(q, "=> \n");
            if (an == 0 || q[an] != '=' || q[an + 1] != '"') {
                snprintf(buf, n, "attribute without a quoted value in <%s> at byte %td", name,
                         q - x);
                return buf;
            }
            const char *v = q + an + 2, *end = strchr(v, '"');
            if (!end || memchr(v, '<', (size_t)(end - v))) {
                snprintf(buf, n, "bad attribute value in <%s>", name);
                return buf;
            }
            q = end + 1;
        }
        if (depth == 0 && ++roots > 1) {
            snprintf(buf, n, "second root element <%s>", name);
            return buf;
        }
        if (*q == '>') {
            if (depth == 64) {
                snprintf(buf, n, "nesting too deep");
                return buf;
            }
            snprintf(stack[depth++], 32, "%s", name);
            p = q;
        } else {
            p = q + 1;
        }
    }
    if (depth != 0 || roots != 1) {
        snprintf(buf, n, "%d unclosed elements, %d roots", depth, roots);
        return buf;
    }
    return "";
}

/* The attribute attr of the element whose id is id (strtod), or NAN. */
static double svg_attr(const char *x, const char *id, const char *attr)
{
    char key[64];
    snprintf(key, sizeof key, "id=\"%s\"", id);
    const char *e = strstr(x, key);
    cr_assert_not_null(e, "loss.svg has no element %s", key);
    const char *end = strchr(e, '>');
    snprintf(key, sizeof key, " %s=\"", attr);
    const char *a = strstr(e, key);
    cr_assert(a && a < end, "loss.svg: %s has no %s", id, attr);
    return strtod(a + strlen(key), NULL);
}

/* The polyline id's points mapped back through the plot's axes. */
static int svg_points(const char *x, const char *id, const char *axis, point *p, int max)
{
    char lo[32], hi[32];
    snprintf(lo, sizeof lo, "data-%s-min", axis);
    snprintf(hi, sizeof hi, "data-%s-max", axis);
    double px = svg_attr(x, "plot", "x"), py = svg_attr(x, "plot", "y"),
           w = svg_attr(x, "plot", "width"), h = svg_attr(x, "plot", "height"),
           s0 = svg_attr(x, "plot", "data-step-min"), s1 = svg_attr(x, "plot", "data-step-max"),
           v0 = svg_attr(x, "plot", lo), v1 = svg_attr(x, "plot", hi);
    char key[64];
    snprintf(key, sizeof key, "id=\"%s\"", id);
    const char *pts = strstr(strstr(x, key), "points=\"");
    cr_assert_not_null(pts);
    pts += 8;
    int n = 0;
    while (*pts != '"' && n < max) {
        char *end;
        double a = strtod(pts, &end);
        cr_assert_eq(*end, ',', "loss.svg %s: bad point", id);
        double b = strtod(end + 1, &end);
        p[n].step = llround(s0 + (a - px) / w * (s1 - s0));
        p[n].v = v0 + (py + h - b) / h * (v1 - v0);
        n++;
        pts = end;
        while (*pts == ' ')
            pts++;
    }
    return n;
}

static void check_svg(const char *out)
{
    char *path = lc_test_path_in(out, "loss.svg");
    char *x = lc_test_read_file(path, NULL), why[128];
    cr_assert_str_eq(xml_problem(x, why, sizeof why), "", "%s is not well-formed XML", path);
    cr_assert(strstr(x, "<svg xmlns=\"http://www.w3.org/2000/svg\""));
    series s[6];
    init_series(s);
    metrics_series(out, s, 6);
    const int which[][2] = {{0, 0}, {1, 1}, {4, 0}}; /* series, axis: loss / lr */
    const char *ids[] = {"train-loss", "lr", "eval-loss"}, *axes[] = {"loss", "lr"};
    for (int k = 0; k < 3; k++) {
        const series *m = &s[which[k][0]];
        const char *ax = axes[which[k][1]];
        point p[MAX_PTS];
        int n = svg_points(x, ids[k], ax, p, MAX_PTS);
        cr_assert_eq(n, m->n, "loss.svg %s: %d points, metrics.jsonl %d", ids[k], n, m->n);
        char lo[32], hi[32];
        snprintf(lo, sizeof lo, "data-%s-min", ax);
        snprintf(hi, sizeof hi, "data-%s-max", ax);
        double range = svg_attr(x, "plot", hi) - svg_attr(x, "plot", lo);
        for (int i = 0; i < n; i++) {
            cr_assert_eq(p[i].step, m->p[i].step, "loss.svg %s point %d", ids[k], i);
            double tol = which[k][1] ? 1e-3 * range : 1e-3;
            cr_assert(fabs(p[i].v - m->p[i].v) <= tol, "loss.svg %s at step %lld: %.6g, "
                      "metrics.jsonl %.6g", ids[k], (long long)p[i].step, p[i].v, m->p[i].v);
        }
    }
    free(x);
    free(path);
}

static char *config(const char *dir)
{
    char *model = lc_test_asprintf("%s", lc_test_fixture("tiny-llama/model"));
    char *data = lc_test_asprintf("%s", lc_test_fixture("tiny-llama/train.jsonl"));
    char *text = lc_test_asprintf("base_model: %s\n"
                                  "adapter: lora\n"
                                  "datasets:\n  - path: %s\n    type: tokenized\n"
                                  "test_datasets:\n  - path: %s\n    type: tokenized\n"
                                  "device: cpu\n"
                                  "lora_r: 4\n"
                                  "lora_alpha: 8\n"
                                  "lora_target_modules: [q_proj, v_proj]\n"
                                  "sequence_len: 40\n"
                                  "micro_batch_size: 1\n"
                                  "max_steps: 6\n"
                                  "learning_rate: 5.0e-3\n"
                                  "lr_scheduler: cosine\n"
                                  "warmup_steps: 2\n"
                                  "seed: 7\n"
                                  "logging_steps: 1\n"
                                  "save_steps: 2\n"
                                  "eval_steps: 2\n",
                                  model, data, data);
    char *path = lc_test_write_text(dir, "tb.yaml", text);
    free(text);
    free(model);
    free(data);
    return path;
}

static void train(const char *cfg, const char *out, const char *extra)
{
    char *outset = lc_test_asprintf("output_dir=%s", out);
    const char *args[] = {"train", cfg, "--set", outset, "--set", "use_tensorboard=true",
                          extra ? "--set" : NULL, extra, NULL};
    lc_test_run_result r = lc_test_run_lorac(NULL, args);
    cr_assert_eq(r.code, 0, "lorac train into %s failed (%d):\n%s", out, r.code, r.err);
    lc_test_run_free(&r);
    free(outset);
}

Test(tfevents, train_and_resume, .timeout = 120)
{
    char *dir = lc_test_tmpdir();
    char *cfg = config(dir);
    char *A = lc_test_path_in(dir, "A"), *B = lc_test_path_in(dir, "B");

    /* A: uninterrupted. */
    train(cfg, A, NULL);
    check_run(A, NULL, -1, 1);
    check_svg(A);
    series ref[6];
    init_series(ref);
    metrics_series(A, ref, 6);
    cr_assert_eq(ref[0].n, 6);
    cr_assert_eq(ref[4].n, 3);

    /* B: the same run; then what a run stopped after step 6 but before its
     * checkpoint-6 leaves (checkpoint-4 the newest; its event file holds
     * steps 5 and 6, orphaned), resumed: the new process logs 5 and 6
     * again in a second file that starts with SessionLog START at step 5. */
    train(cfg, B, NULL);
    const char *gone[] = {"adapter_model.safetensors", "adapter_config.json"};
    for (int i = 0; i < 2; i++) {
        char *p = lc_test_path_in(B, gone[i]);
        cr_assert_eq(unlink(p), 0, "unlink %s", p);
        free(p);
    }
    char *ck6 = lc_test_path_in(B, "checkpoint-6");
    lc_test_rm_rf(ck6);
    free(ck6);
    train(cfg, B, "resume_from_checkpoint=auto");
    char *files[8];
    int nf = event_files(B, files, 8);
    cr_assert_eq(nf, 2);
    events second = read_events(files[1]);
    cr_assert(second.n > 2 && second.e[1].session_status == 1 && second.e[1].step == 5,
              "the resumed run's file does not start with SessionLog START at step 5");
    int64_t first_scalar_step = 0;
    for (int i = 0; i < second.n && !first_scalar_step; i++)
        if (second.e[i].has_simple)
            first_scalar_step = second.e[i].step;
    cr_assert_eq(first_scalar_step, 5);
    events_free(&second);
    events first = read_events(files[0]);
    int orphans = 0;
    for (int i = 0; i < first.n; i++)
        orphans += first.e[i].has_simple && first.e[i].step >= 5;
    cr_assert_gt(orphans, 0, "the first file should hold the orphaned steps 5 and 6");
    events_free(&first);
    for (int f = 0; f < nf; f++)
        free(files[f]);
    /* every series but tokens/s equals A's */
    check_run(B, ref, 3, 2);
    check_svg(B);
    char *sa = lc_test_path_in(A, "loss.svg"), *sbp = lc_test_path_in(B, "loss.svg");
    cr_assert(lc_test_same_file(sa, sbp), "the resumed run's loss.svg differs from the "
              "uninterrupted run's");

    free(sa);
    free(sbp);
    free(A);
    free(B);
    free(cfg);
    lc_test_rm_rf(dir);
    free(dir);
}

/* lc_loss_svg with no points and with one point still renders a valid
 * picture (axes on a default range). */
Test(tfevents, svg_degenerate)
{
    lc_loss_svg s;
    lc_loss_svg_init(&s);
    char why[128];
    for (int k = 0; k < 3; k++) {
        lc_error err;
        if (k == 1)
            cr_assert_eq(lc_loss_svg_add_train(&s, 1, 2.0, 0.0, &err), 0);
        if (k == 2)
            cr_assert_eq(lc_loss_svg_add_eval(&s, 1, NAN, &err), 0);
        size_t len;
        char *x = lc_loss_svg_render(&s, &len);
        cr_assert_not_null(x);
        cr_assert_eq(strlen(x), len);
        cr_assert_str_eq(xml_problem(x, why, sizeof why), "", "case %d", k);
        cr_assert(!strstr(x, "nan") && !strstr(x, "inf"), "case %d:\n%s", k, x);
        free(x);
    }
    lc_loss_svg_free(&s);
}

/* tfevents.c — see tfevents.h. Field numbers are those of TensorBoard's
 * tensorboard/compat/proto/{event,summary,tensor,tensor_shape,types}.proto. */
#include "train/tfevents.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "train/crc32c.h"
#include "train/fsutil.h"

/* event.proto */
enum { EVENT_WALL_TIME = 1, EVENT_STEP = 2, EVENT_FILE_VERSION = 3, EVENT_SUMMARY = 5,
       EVENT_SESSION_LOG = 7 };
enum { SESSION_LOG_STATUS = 1, SESSION_LOG_START = 1 };
/* summary.proto */
enum { SUMMARY_VALUE = 1 };
enum { VALUE_TAG = 1, VALUE_SIMPLE_VALUE = 2, VALUE_TENSOR = 8, VALUE_METADATA = 9 };
enum { METADATA_PLUGIN_DATA = 1 };
enum { PLUGIN_DATA_PLUGIN_NAME = 1 };
/* tensor.proto, types.proto */
enum { TENSOR_DTYPE = 1, TENSOR_SHAPE = 2, TENSOR_STRING_VAL = 8 };
enum { DT_STRING = 7 };

#define NAME_PREFIX "events.out.tfevents."

/* ---- encoding --------------------------------------------------------------- */

/* The fields every event starts with (step left out when 0, as protobuf
 * leaves out a default value). */
static void event_head(lc_pb *e, double wall_time, int64_t step)
{
    lc_pb_double(e, EVENT_WALL_TIME, wall_time);
    if (step != 0)
        lc_pb_int(e, EVENT_STEP, step);
}

void lc_tfevents_encode_file_version(lc_pb *out, double wall_time)
{
    event_head(out, wall_time, 0);
    lc_pb_string(out, EVENT_FILE_VERSION, LC_TFEVENTS_FILE_VERSION);
}

void lc_tfevents_encode_start(lc_pb *out, double wall_time, int64_t step)
{
    lc_pb log = {0};
    lc_pb_int(&log, SESSION_LOG_STATUS, SESSION_LOG_START);
    event_head(out, wall_time, step);
    lc_pb_message(out, EVENT_SESSION_LOG, &log);
    lc_pb_free(&log);
}

/* Event{head, summary{value}} */
static void summary_event(lc_pb *out, double wall_time, int64_t step, const lc_pb *value)
{
    lc_pb summary = {0};
    lc_pb_message(&summary, SUMMARY_VALUE, value);
    event_head(out, wall_time, step);
    lc_pb_message(out, EVENT_SUMMARY, &summary);
    lc_pb_free(&summary);
}

void lc_tfevents_encode_scalar(lc_pb *out, double wall_time, int64_t step, const char *tag,
                               float value)
{
    lc_pb v = {0};
    lc_pb_string(&v, VALUE_TAG, tag);
    lc_pb_float(&v, VALUE_SIMPLE_VALUE, value);
    summary_event(out, wall_time, step, &v);
    lc_pb_free(&v);
}

void lc_tfevents_encode_text(lc_pb *out, double wall_time, int64_t step, const char *tag,
                             const char *text)
{
    lc_pb plugin = {0}, meta = {0}, shape = {0}, tensor = {0}, v = {0};
    lc_pb_string(&plugin, PLUGIN_DATA_PLUGIN_NAME, "text"); /* content: TextPluginData{} */
    lc_pb_message(&meta, METADATA_PLUGIN_DATA, &plugin);
    lc_pb_int(&tensor, TENSOR_DTYPE, DT_STRING);
    lc_pb_message(&tensor, TENSOR_SHAPE, &shape); /* no dims: a scalar */
    lc_pb_string(&tensor, TENSOR_STRING_VAL, text);
    lc_pb_string(&v, VALUE_TAG, tag);
    lc_pb_message(&v, VALUE_TENSOR, &tensor);
    lc_pb_message(&v, VALUE_METADATA, &meta);
    summary_event(out, wall_time, step, &v);
    lc_pb_free(&plugin);
    lc_pb_free(&meta);
    lc_pb_free(&shape);
    lc_pb_free(&tensor);
    lc_pb_free(&v);
}

static void put_le(lc_pb *out, uint64_t v, int n)
{
    uint8_t b[8];
    for (int i = 0; i < n; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    lc_pb_raw(out, b, (size_t)n);
}

void lc_tfevents_frame(lc_pb *out, const void *data, size_t n)
{
    uint8_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)((uint64_t)n >> (8 * i));
    lc_pb_raw(out, len, 8);
    put_le(out, lc_crc32c_mask(lc_crc32c(len, 8)), 4);
    lc_pb_raw(out, data, n);
    put_le(out, lc_crc32c_mask(lc_crc32c(data, n)), 4);
}

/* ---- the file ------------------------------------------------------------------ */

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int write_failed(const lc_tfevents *w, int e, lc_error *err)
{
    return lc_error_set(err, "%s: write failed: %s", w->path, e ? strerror(e) : "I/O error");
}

/* Writes one event (the serialized bytes in e) as a record. */
static int write_event(lc_tfevents *w, const lc_pb *e, lc_error *err)
{
    lc_pb rec = {0};
    if (!e->oom)
        lc_tfevents_frame(&rec, e->p, e->len);
    if (e->oom || rec.oom) {
        lc_pb_free(&rec);
        return lc_error_set(err, "%s: out of memory for an event", w->path);
    }
    size_t off = 0;
    while (off < rec.len) {
        ssize_t n = write(w->fd, rec.p + off, rec.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e2 = n < 0 ? errno : 0;
            lc_pb_free(&rec);
            return write_failed(w, e2, err);
        }
        off += (size_t)n;
    }
    lc_pb_free(&rec);
    return 0;
}

/* The file's time: now, or one second after the newest event file of
 * lorac already in dir (so that the new file sorts after it by name). */
static long long file_time(const char *dir)
{
    long long t = (long long)time(NULL);
    DIR *d = opendir(dir);
    if (!d)
        return t;
    struct dirent *de;
    while ((de = readdir(d))) {
        long long u;
        if (strncmp(de->d_name, NAME_PREFIX, strlen(NAME_PREFIX)) == 0 &&
            sscanf(de->d_name + strlen(NAME_PREFIX), "%lld", &u) == 1 && u >= t)
            t = u + 1;
    }
    closedir(d);
    return t;
}

int lc_tfevents_open(lc_tfevents *w, const char *output_dir, int64_t first_step, lc_error *err)
{
    w->fd = -1;
    char dir[4200], host[256];
    if ((size_t)snprintf(dir, sizeof dir, "%s/runs", output_dir) >= sizeof dir)
        return lc_error_set(err, "output_dir: path too long");
    if (lc_mkdir_p(dir, err))
        return -1;
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    for (char *p = host; *p; p++)
        if (*p == '/')
            *p = '_';
    if ((size_t)snprintf(w->path, sizeof w->path, "%s/" NAME_PREFIX "%010lld.%.200s.%ld.lorac",
                         dir, file_time(dir), host, (long)getpid()) >= sizeof w->path)
        return lc_error_set(err, "output_dir: path too long");
    w->fd = open(w->path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
    if (w->fd < 0)
        return lc_error_set(err, "cannot create %s: %s", w->path, strerror(errno));
    lc_fsync_dir(dir);
    double now = wall_now();
    lc_pb e = {0};
    lc_tfevents_encode_file_version(&e, now);
    int rc = write_event(w, &e, err);
    e.len = 0;
    lc_tfevents_encode_start(&e, now, first_step);
    rc = rc || write_event(w, &e, err) || lc_tfevents_sync(w, err);
    lc_pb_free(&e);
    if (rc) {
        close(w->fd);
        w->fd = -1;
    }
    return rc ? -1 : 0;
}

int lc_tfevents_scalar(lc_tfevents *w, const char *tag, int64_t step, double value,
                       lc_error *err)
{
    lc_pb e = {0};
    lc_tfevents_encode_scalar(&e, wall_now(), step, tag, (float)value);
    int rc = write_event(w, &e, err);
    lc_pb_free(&e);
    return rc;
}

int lc_tfevents_text(lc_tfevents *w, const char *tag, int64_t step, const char *text,
                     lc_error *err)
{
    lc_pb e = {0};
    lc_tfevents_encode_text(&e, wall_now(), step, tag, text);
    int rc = write_event(w, &e, err) || lc_tfevents_sync(w, err);
    lc_pb_free(&e);
    return rc ? -1 : 0;
}

int lc_tfevents_sync(lc_tfevents *w, lc_error *err)
{
    if (fsync(w->fd) != 0 && errno != EINVAL && errno != EROFS)
        return write_failed(w, errno, err);
    return 0;
}

int lc_tfevents_close(lc_tfevents *w, lc_error *err)
{
    if (w->fd < 0)
        return 0;
    lc_error ignored;
    int rc = lc_tfevents_sync(w, err ? err : &ignored);
    if (close(w->fd) != 0 && rc == 0)
        rc = err ? write_failed(w, errno, err) : -1;
    w->fd = -1;
    return rc ? -1 : 0;
}

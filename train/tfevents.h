/* tfevents.h — TensorBoard event files, written by lorac itself.
 *
 * With use_tensorboard the trainer writes output_dir/runs/
 * events.out.tfevents.<unix time, 10 digits>.<hostname>.<pid>.lorac, one
 * file per process (TensorBoard reads every file whose name holds
 * "tfevents", in name order: a new file's time is made later than every
 * earlier lorac file's there, so a resumed run's file always sorts last).
 *
 * A file is a sequence of TFRecords:
 *   uint64 length (little-endian), uint32 masked CRC-32C of those 8 bytes,
 *   the data, uint32 masked CRC-32C of the data (train/crc32c.h);
 * each record's data is one serialized tensorboard.Event (event.proto):
 *   Event     1 wall_time double, 2 step int64, 3 file_version string,
 *             5 summary Summary, 7 session_log SessionLog
 *   Summary   1 value repeated Value
 *   Value     1 tag string, 2 simple_value float, 8 tensor TensorProto,
 *             9 metadata SummaryMetadata
 *   SummaryMetadata 1 plugin_data PluginData {1 plugin_name string, 2 content bytes}
 *   TensorProto     1 dtype enum (DT_STRING = 7), 2 tensor_shape TensorShapeProto
 *                   (empty: a scalar), 8 string_val repeated bytes
 *   SessionLog      1 status enum (START = 1)
 * The first record is {wall_time, file_version: "brain.Event:2"}; the
 * second a SessionLog START at the first step this process will log. On
 * reading it TensorBoard discards what earlier files logged at that step
 * and after (its "purge orphaned data", as after a TensorFlow restart):
 * a run resumed from checkpoint-N shows the steps the stopped process
 * logged after N once, as the resumed one logged them again.
 *
 * Scalars are Value.simple_value (float); texts (the text plugin:
 * metadata plugin_name "text") are a scalar DT_STRING tensor. Records are
 * written with write(2) as they come; lc_tfevents_sync fsyncs them. */
#ifndef LC_TFEVENTS_H
#define LC_TFEVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "autograd/error.h"
#include "train/protobuf.h"

#define LC_TFEVENTS_FILE_VERSION "brain.Event:2"

typedef struct lc_tfevents {
    int fd;                   /* -1 when closed */
    char path[4500];
} lc_tfevents;

/* Creates output_dir/runs/ and a new event file there; writes the
 * file_version record and a SessionLog START at first_step (the first step
 * this process logs: 1 for a fresh run, N + 1 resuming checkpoint-N). */
int lc_tfevents_open(lc_tfevents *w, const char *output_dir, int64_t first_step, lc_error *err);

/* A scalar (stored as a float) at step. */
int lc_tfevents_scalar(lc_tfevents *w, const char *tag, int64_t step, double value,
                       lc_error *err);

/* A text (UTF-8; shown by TensorBoard's Text tab as Markdown) at step;
 * synced to disk before it returns. */
int lc_tfevents_text(lc_tfevents *w, const char *tag, int64_t step, const char *text,
                     lc_error *err);

/* fsyncs what was written. */
int lc_tfevents_sync(lc_tfevents *w, lc_error *err);

/* Syncs and closes; a no-op when closed. err may be NULL (clean-up after
 * another error). */
int lc_tfevents_close(lc_tfevents *w, lc_error *err);

/* ---- encoding (exposed for the tests) ---- */

/* Appends one serialized Event to out. */
void lc_tfevents_encode_file_version(lc_pb *out, double wall_time);
void lc_tfevents_encode_start(lc_pb *out, double wall_time, int64_t step);
void lc_tfevents_encode_scalar(lc_pb *out, double wall_time, int64_t step, const char *tag,
                               float value);
void lc_tfevents_encode_text(lc_pb *out, double wall_time, int64_t step, const char *tag,
                             const char *text);

/* Appends data framed as one TFRecord to out. */
void lc_tfevents_frame(lc_pb *out, const void *data, size_t n);

#endif

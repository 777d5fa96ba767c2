/*
 * event.h - a DynamoDB Streams invocation payload, parsed once.
 *
 * Provides: mm_event_parse (JSON validation plus the shape check that tells
 * a stream event from anything else), per-record facts the pipeline needs
 * without Lua (eventID, SequenceNumber, event time), and the SequenceNumber
 * order Lambda checkpoints by. Relies on json.h.
 *
 * Ownership: the event borrows the payload buffer (it must outlive the
 * event) and owns its tape (mm_event_free). Record info is copied into the
 * info struct.
 */
#ifndef MM_EVENT_H
#define MM_EVENT_H

#include <stddef.h>
#include <stdint.h>
#include "err.h"
#include "json.h"

/* Invocation error types (Runtime API keeps (Runtime|Function).Name). */
#define MM_ETYPE_INVALID_JSON "Runtime.InvalidJSON"
#define MM_ETYPE_NOT_STREAM "Runtime.UnsupportedEvent"
/* The payload could not be parsed for lack of memory (not its fault). */
#define MM_ETYPE_NO_MEMORY "Runtime.OutOfMemory"

/* Longest eventID / SequenceNumber kept (real ones are < 64 bytes). */
#define MM_EVENT_ID_MAX 256

typedef struct mm_event {
  mm_json_doc_t doc;
  uint32_t records;   /* node of the Records array */
  uint32_t nrecords;
  int is_window;      /* a tumbling-window event (has window and state) */
  uint32_t state;     /* node of "state" when is_window, else 0 */
} mm_event_t;

/* Parses and checks payload. On failure *etype names the invocation error
 * type (MM_ETYPE_*) and err says what is wrong, e.g. "event is not a
 * DynamoDB Streams event: Records[0].eventSource is \"aws:sqs\"".
 * Returns 0, MM_EINVAL (the payload's fault, also for the nesting and size
 * limits: etype INVALID_JSON or NOT_STREAM) or MM_ENOMEM (etype NO_MEMORY). */
int mm_event_parse(mm_event_t *ev, const char *buf, size_t len,
                   const char **etype, mm_err_t *err);
void mm_event_free(mm_event_t *ev);

/* What the pipeline needs of one record. mm_event_record sets each field
 * itself (no memset: it runs per record), so a new field is set there. */
typedef struct mm_record_info {
  uint32_t node;                     /* the record object */
  uint32_t dynamodb;                 /* its "dynamodb" object, 0 if none */
  char event_id[MM_EVENT_ID_MAX];    /* "" when absent */
  char seq[MM_EVENT_ID_MAX];         /* "" when absent */
  int has_time;
  double time;                       /* epoch seconds (normalised) */
} mm_record_info_t;

/* Reads record `node`. A record that is not an object, lacks eventID or
 * dynamodb.SequenceNumber (or has them of the wrong type), or has a
 * malformed ApproximateCreationDateTime is MM_EINVAL with a message naming
 * the field; info->seq/event_id are still filled when they were readable.
 * An absent or null ApproximateCreationDateTime is not an error (has_time 0). */
int mm_event_record(const mm_event_t *ev, uint32_t node, mm_record_info_t *info,
                    mm_err_t *err);

/* ApproximateCreationDateTime (a JSON number or numeric string: seconds,
 * milliseconds, a float, scientific notation) as epoch seconds. Values
 * above 1e11 are taken as milliseconds. */
int mm_event_time(const mm_json_doc_t *doc, uint32_t node, double *secs,
                  mm_err_t *err);

/* Orders SequenceNumbers: by length, then bytewise. */
int mm_seq_cmp(const char *a, const char *b);

#endif

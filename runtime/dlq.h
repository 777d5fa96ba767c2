/*
 * dlq.h - the dead-letter queue: a poison pill is kept, not just counted.
 *
 * Provides: mm_dlq_t, where the pipeline parks the records it skips on
 * purpose (a decode error, an instruction-budget or heap-ceiling abort, an
 * invalid AttributeValue). Lambda's own on-failure destination never sees
 * them: without a DLQ a record that fails to decode is gone. Opened from a
 * URL (MURMUR_DLQ, or murmur-ddb invoke --dlq):
 *
 *   sqs://<queue URL>    Amazon SQS, standard or FIFO (the name ends in
 *                        ".fifo"), e.g. sqs://https://sqs.eu-west-1.
 *                        amazonaws.com/123456789012/murmur-dlq; a URL
 *                        without a scheme after sqs:// is taken as https.
 *   file://PATH, PATH    JSON lines appended to PATH: one message body
 *                        (below) per line, the same bytes SQS would get.
 *
 * SQS: the JSON 1.0 protocol (POST / with X-Amz-Target: AmazonSQS.<Op>,
 * Content-Type application/x-amz-json-1.0), signed by libcurl with SigV4
 * for service "sqs" as aws.h describes. Endpoint: AWS_ENDPOINT_URL_SQS,
 * else AWS_ENDPOINT_URL, else the queue URL's own scheme://host[:port]/ (as
 * the AWS SDKs do). Signing region: the queue URL's when its host names
 * one (sqs.<region>.amazonaws.com[.cn], <region>.queue.amazonaws.com,
 * queue.amazonaws.com = us-east-1), else AWS_REGION / AWS_DEFAULT_REGION.
 * Credentials: aws.h. Messages go out with SendMessageBatch: at most
 * MM_DLQ_BATCH entries and MM_DLQ_MAX_MESSAGE bytes (SQS's count: body
 * plus attribute names, types and values) per call, the batches of one
 * send in flight together over one curl multi handle whose connections are
 * kept for the sink's life. Each message carries the String attributes
 * pipeline, eventID, SequenceNumber and eventName (each only when not
 * empty; characters SQS refuses become U+FFFD), so a user can filter and
 * replay. A FIFO queue gets MessageGroupId = the pipeline name and
 * MessageDeduplicationId = the eventID (FNV-1a of the body when there is
 * none), both cut to 128 printable ASCII characters (others become '_'). A
 * FIFO queue shared by several pipelines should use DeduplicationScope
 * messageGroup, so the same eventID parked by two pipelines is kept twice.
 *
 * Outcomes (mm_dlq_msg_t.status), after at most max_attempts attempts with
 * full-jitter backoff (retry.h) between rounds, re-batching what is left:
 *   0             parked (SQS answered it in Successful; the file line was
 *                 written)
 *   MM_ERETRY     throttling, 5xx, a network failure before the request
 *                 was sent, or an entry Failed with SenderFault false, on
 *                 the last attempt
 *   MM_EUNKNOWN   no answer after the request was sent, on the last
 *                 attempt (the message may be parked: SQS delivers at
 *                 least once anyway; FIFO deduplication makes a resend
 *                 harmless)
 *   MM_EPERM      an error retrying cannot fix: another 4xx (the queue
 *                 does not exist, access denied, a bad signature), an
 *                 entry Failed with SenderFault true, a file write error
 *   MM_EDEADLINE  not (re)started: deadline_ms passed, or the next backoff
 *                 would end past it (the message says what failed last)
 * No request starts past deadline_ms, and a request's timeout is cut to end
 * by then: a slow queue never holds the caller past its deadline. Any
 * status but 0 means the record was NOT kept: the pipeline reports it in
 * batchItemFailures so Lambda delivers it again.
 *
 * Message body, version 1 (mm_dlq_body; one JSON object, keys in this
 * order, no white space):
 *   {"version":1,
 *    "pipeline":"order_totals",
 *    "error":"decode.lua:7: order without customer\nstack traceback: ...",
 *    "errorLocation":"decode.lua:7"       the error's leading file:line,
 *                                         null when it has none
 *    "requestId":"..." | null,            the Lambda request id
 *    "eventID":"..." | null,
 *    "sequenceNumber":"..." | null,       dynamodb.SequenceNumber
 *    "eventName":"INSERT" | null,
 *    "parkedAt":1764075600000,            epoch ms
 *    "recordBytes":1234,                  length of the compact record text
 *    "truncated":false,
 *    "record":{...}}                      the stream record as it arrived,
 *                                         compacted (white space outside
 *                                         strings dropped; strings and
 *                                         numbers byte for byte as sent)
 * A record whose body would exceed MM_DLQ_MAX_MESSAGE less its attributes
 * is stored truncated: "truncated":true and, instead of "record",
 * "recordPrefix":"<the compact record text's first bytes, as a JSON
 * string, cut on a UTF-8 character boundary so the body fits>". Such a
 * record cannot be replayed (the prefix is for reading). A record text
 * that is not JSON is stored as a JSON string. Code points SQS refuses
 * (U+FFFE, U+FFFF) are written as \ufffe / \uffff escapes, so every body is
 * a valid SQS message and a valid JSON line.
 *
 * The way back, for murmur-ddb replay (replay.h): mm_dlq_receive and
 * mm_dlq_delete read and remove parked SQS messages.
 *
 * Relies on aws.h, buf.h, json.h, log.h, retry.h, store.h (the options).
 * Ownership: a sink is owned by its opener (mm_dlq_destroy); messages and
 * their strings are borrowed for the duration of one mm_dlq_send; received
 * messages are owned by the caller (mm_dlq_parked_free). Not thread-safe.
 */
#ifndef MM_DLQ_H
#define MM_DLQ_H

#include <stddef.h>
#include <stdint.h>
#include "buf.h"
#include "err.h"
#include "json.h"
#include "store.h"

/* Version written in every body's "version". */
#define MM_DLQ_BODY_VERSION 1
/* Largest message (body + attributes, as SQS counts it) and largest
 * SendMessageBatch payload. 256 KiB is what every SQS queue accepts by
 * default; queues may be configured for up to 1 MiB, never required. */
#define MM_DLQ_MAX_MESSAGE 262144
/* Entries per SendMessageBatch / DeleteMessageBatch (SQS's limit). */
#define MM_DLQ_BATCH 10
/* Longest error message carried in a body (bytes before escaping). */
#define MM_DLQ_MAX_ERROR 8192
/* Per-request timeout by default (opts->request_timeout_ms <= 0). */
#define MM_DLQ_DEF_TIMEOUT_MS 3000
/* Connect timeout (capped by the request's own timeout). */
#define MM_DLQ_CONNECT_TIMEOUT_MS 1000
/* Largest response body kept (10 received messages of 1 MiB each). */
#define MM_DLQ_MAX_RESPONSE (16u << 20)
/* API prefix of X-Amz-Target. */
#define MM_DLQ_TARGET_PREFIX "AmazonSQS."

typedef struct mm_dlq mm_dlq_t;

/* One poison pill to park. */
typedef struct mm_dlq_msg {
  /* in (borrowed; NULL or "" when unknown) */
  const char *pipeline;     /* the pipeline's name */
  const char *error;        /* the error, with its file:line */
  const char *request_id;   /* Lambda's request id */
  const char *record_json;  /* the stream record's JSON text */
  size_t record_len;
  const char *event_id;
  const char *seq;          /* dynamodb.SequenceNumber */
  const char *event_name;   /* INSERT / MODIFY / REMOVE */
  /* out */
  int status;               /* see the table above */
  mm_err_t err;
} mm_dlq_msg_t;

/* Counters since the sink was opened. */
typedef struct mm_dlq_stats {
  uint64_t parked;          /* messages parked (status 0) */
  uint64_t failed;          /* messages whose final status was not 0 */
  uint64_t retries;         /* message sends beyond the first */
  uint64_t requests;        /* HTTP requests completed (SQS) */
} mm_dlq_stats_t;

/* Opens the sink named by url (forms above). opts gives the in-flight
 * limit and per-request timeout (NULL or <= 0 fields: 32 and
 * MM_DLQ_DEF_TIMEOUT_MS). A file is opened (created 0644, appended to) at
 * once. Returns 0, MM_EINVAL naming the URL or variable at fault (unknown
 * scheme, malformed queue URL, missing credentials or region, a file that
 * cannot be opened), MM_ENOMEM or MM_EIO. */
int mm_dlq_open(mm_dlq_t **out, const char *url, const mm_store_opts_t *opts,
                mm_err_t *err);

/* Parks msgs[0..n): sets every message's status and err (table above).
 * deadline_ms is an absolute epoch-ms time after which no request starts
 * (0 = none); max_attempts >= 1 attempts per message, backoff from base_ms
 * capped at max_ms. Returns 0 when every message got a status (look at
 * each), or MM_ENOMEM / MM_EIO when the sender itself failed (every
 * message still gets a non-zero status then). */
int mm_dlq_send(mm_dlq_t *d, mm_dlq_msg_t *msgs, size_t n, int64_t deadline_ms,
                int max_attempts, int base_ms, int max_ms);

/* Releases the sink (d may be NULL). */
void mm_dlq_destroy(mm_dlq_t *d);

/* 1 for an SQS sink, 0 for a file. */
int mm_dlq_is_sqs(const mm_dlq_t *d);
/* The queue URL or file path (borrowed from the sink). */
const char *mm_dlq_target(const mm_dlq_t *d);
mm_dlq_stats_t mm_dlq_stats(const mm_dlq_t *d);

/* Appends m's body (format above) to b. The body is at most max_bytes long
 * (0 = MM_DLQ_MAX_MESSAGE less m's attributes, as the sinks use); a record
 * that does not fit is stored truncated and *truncated set to 1 (may be
 * NULL). Only the record is ever cut: a max_bytes too small for the rest is
 * exceeded rather than dropping the error. Returns 0 or MM_ENOMEM. */
int mm_dlq_body(mm_buf_t *b, const mm_dlq_msg_t *m, size_t max_bytes, int *truncated);

/* Bytes m's attributes add to its SQS size (names, "String", values). */
size_t mm_dlq_attr_bytes(const mm_dlq_msg_t *m);

/* Appends record `node` of a parsed event compactly to b (what
 * record_json should hold): white space outside strings dropped, strings
 * and numbers copied as they arrived. Returns 0 or MM_ENOMEM. */
int mm_dlq_record_json(mm_buf_t *b, const mm_json_doc_t *doc, uint32_t node);

/* ------------------------------------------------------------------ */
/* Reading parked messages back (SQS sinks; murmur-ddb replay)         */
/* ------------------------------------------------------------------ */

typedef struct mm_dlq_parked {
  char *body;               /* owned, NUL-terminated */
  size_t len;
  char *receipt;            /* owned: the receipt handle for mm_dlq_delete */
  char *message_id;         /* owned */
} mm_dlq_parked_t;

/* Receives up to max (1..MM_DLQ_BATCH) messages into out (room for max
 * entries; each received one is owned by the caller), waiting at most wait_s
 * seconds (0..20, SQS long polling) for the first, and hiding them from
 * other readers for visibility_s seconds. Transient failures are retried
 * (max_attempts, backoff as mm_dlq_send). *n is the number received (0
 * when the queue looked empty). Returns 0, or the last failure's code with
 * err set. */
int mm_dlq_receive(mm_dlq_t *d, size_t max, int wait_s, int visibility_s,
                   int max_attempts, mm_dlq_parked_t *out, size_t *n, mm_err_t *err);

/* Deletes msgs[0..n) (DeleteMessageBatch by MM_DLQ_BATCH, transient
 * failures retried as in mm_dlq_receive). status[i] is set to 0 (deleted)
 * or the failure's code; err holds the first failure's message. Returns 0
 * when every message was deleted, else the first failure's code. */
int mm_dlq_delete(mm_dlq_t *d, const mm_dlq_parked_t *msgs, size_t n, int max_attempts,
                  int *status, mm_err_t *err);

/* Releases m's strings (m may be NULL; safe to call twice). */
void mm_dlq_parked_free(mm_dlq_parked_t *m);

#endif

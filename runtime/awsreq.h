/*
 * awsreq.h - the request runner shared by the AWS JSON 1.0 protocol clients
 * (ddb.c for DynamoDB, dlq.c for SQS).
 *
 * Provides: mm_awsreq_pool_t, one curl multi handle and a pool of easy
 * handles kept for the pool's whole life (connections stay open and are
 * reused across invocations), and mm_awsreq_run, which sends a batch of
 * requests concurrently (at most max_inflight at once, each with its own
 * timeout, cut to end by the deadline; none starts past it), captures each
 * answer (body up to max_response bytes, x-amzn-RequestId, x-amz-crc32),
 * and classifies how every transfer ended:
 *
 *   2xx                                 status 0 (body in *resp); with
 *                                       check_crc, a body failing its
 *                                       x-amz-crc32 is a lost answer (below)
 *   any other HTTP status               what the client's http_status hook
 *                                       says (type = the body's `__type`
 *                                       after '#', via mm_aws_error_body)
 *   body larger than max_response       MM_EPERM
 *   no answer, nothing sent (refused,
 *   DNS, TLS handshake, connect timeout) MM_ERETRY
 *   no answer after the request was
 *   sent (timeout, reset)               MM_EUNKNOWN for a write (it may have
 *                                       been applied), MM_ERETRY otherwise
 *   with refuse_resend, a write libcurl
 *   would resend by itself (a reused
 *   connection closed after the request
 *   went out, no answer)                MM_EUNKNOWN: the resend is refused
 *                                       (CURLOPT_PREREQFUNCTION)
 *   not started before the deadline     MM_EDEADLINE
 *
 * Requests are POST / with X-Amz-Target: <target_prefix><op> and
 * Content-Type: application/x-amz-json-1.0, signed as aws.h describes.
 * Messages read "<op> on <on>: ..." and carry the request id; never
 * credentials or payloads. The runner does not retry by itself: a `done`
 * callback may queue a request again after setting its not_before (the
 * retry schedule is the caller's, e.g. retry.h's full jitter).
 *
 * Relies on aws.h, buf.h, log.h, retry.h (clocks). Ownership: the pool is
 * owned by its opener (mm_awsreq_close) and borrows the mm_aws_t settings,
 * which must outlive it. A request's strings and buffers are the caller's;
 * the runner borrows the requests for the duration of mm_awsreq_run and
 * writes only their outputs and *resp. Not thread-safe; no Lua.
 */
#ifndef MM_AWSREQ_H
#define MM_AWSREQ_H

#include <stddef.h>
#include <stdint.h>
#include "aws.h"
#include "buf.h"
#include "err.h"

/* How long one curl_multi_poll waits at most before the runner looks at
 * the clock again (ms). Transfers wake it earlier. */
#define MM_AWSREQ_POLL_MS 100
/* Longest type name kept from an error body (with its NUL). */
#define MM_AWSREQ_TYPE_MAX 96

typedef struct mm_awsreq_pool mm_awsreq_pool_t;

/* How a pool's client talks to its service (copied by mm_awsreq_open;
 * the strings are borrowed and must be static or outlive the pool). */
typedef struct mm_awsreq_conf {
  const char *log_name;       /* log line prefix, "dynamodb" */
  const char *target_prefix;  /* X-Amz-Target before the op, "DynamoDB_20120810." */
  const char *user_agent;
  const char *unknown_subject;/* who "may have been applied": "the write" */
  int max_inflight;           /* > 0: slots, and idle connections kept */
  int64_t timeout_ms;         /* > 0: per-request timeout by default */
  long connect_timeout_ms;    /* > 0, capped by the request's timeout */
  size_t max_response;        /* largest body kept */
  int check_crc;              /* 1: verify x-amz-crc32 of 2xx bodies */
  int refuse_resend;          /* 1: refuse libcurl's own resend of a write */
  const char *quiet_type;     /* error type not logged (an expected outcome,
                                 e.g. a failed condition), or NULL */
  /* Status of a non-2xx answer from its error type ("" when none) and
   * HTTP code: MM_ERETRY or MM_EPERM. */
  int (*http_status)(const char *type, long code);
} mm_awsreq_conf_t;

typedef struct mm_awsreq {
  /* in */
  const char *op;             /* operation, e.g. "UpdateItem" (borrowed) */
  const char *on;             /* what messages name, "table T" (borrowed) */
  const mm_buf_t *body;       /* request JSON (borrowed; NULL or empty: "{}") */
  mm_buf_t *resp;             /* receives the response body (borrowed) */
  int write;                  /* 1: not idempotent; a lost answer is MM_EUNKNOWN */
  int64_t timeout_ms;         /* 0 = the pool's */
  int64_t not_before;         /* mm_mono_ms() time before which it is not
                                 sent (0 = at once): a resend's backoff */
  void *ud;                   /* the caller's */
  /* out (cleared before every send) */
  int status;                 /* see the table above */
  long http_status;           /* 0 when no answer arrived */
  char type[MM_AWSREQ_TYPE_MAX]; /* error type after '#', "" when none */
  mm_err_t err;
} mm_awsreq_t;

/* Called when request r finished (its outputs set, also when it could not
 * start). Return 1 to send r again (outputs are cleared first), 0 when r
 * is done. The callback must bound its own resends. */
typedef int (*mm_awsreq_done_fn)(void *ud, mm_awsreq_t *r);

/* Counters since the pool was opened. */
typedef struct mm_awsreq_stats {
  uint64_t requests;          /* transfers completed (with or without answer) */
  uint64_t connects;          /* new connections opened (the rest were reused) */
  uint64_t failures;          /* completed transfers whose status was not 0 */
} mm_awsreq_stats_t;

/* Opens a pool for the settings *aws (borrowed). Returns 0, MM_ENOMEM
 * (message names `what`, e.g. "the DynamoDB client") or MM_EIO. */
int mm_awsreq_open(mm_awsreq_pool_t **out, const mm_aws_t *aws, const mm_awsreq_conf_t *conf,
                   const char *what, mm_err_t *err);
/* Releases the pool, its handles and connections (p may be NULL). */
void mm_awsreq_close(mm_awsreq_pool_t *p);

mm_awsreq_stats_t mm_awsreq_stats(const mm_awsreq_pool_t *p);
/* The per-request timeout by default (ms). */
int64_t mm_awsreq_timeout_ms(const mm_awsreq_pool_t *p);

/* Clears r's outputs and empties *resp (before a send). */
void mm_awsreq_clear(mm_awsreq_t *r);

/* Sends every request of reqs[0..n) concurrently (and again while done
 * asks for it; done may be NULL). deadline_ms is an absolute epoch-ms time
 * after which no request starts and none runs (0 = none). Returns 0 when
 * every request got a status (look at each), or MM_ENOMEM / MM_EIO when the
 * runner itself failed (then every unfinished request has a status: a
 * write abandoned in flight MM_EUNKNOWN, the others MM_ERETRY). */
int mm_awsreq_run(mm_awsreq_pool_t *p, mm_awsreq_t *const *reqs, size_t n, int64_t deadline_ms,
                  mm_awsreq_done_fn done, void *ud);

#endif

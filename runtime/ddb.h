/*
 * ddb.h - a DynamoDB JSON API client over libcurl.
 *
 * Provides: mm_ddb_t, a client holding one curl multi handle and a pool of
 * easy handles kept for its whole life, so connections stay open and are
 * reused across invocations; and mm_ddb_run, which sends a batch of
 * requests concurrently (at most max_inflight at once, each with its own
 * timeout), and classifies every answer:
 *
 *   2xx                                   status 0 (body in resp)
 *   ConditionalCheckFailedException       MM_EPERM with cond_failed = 1
 *                                         (callers decide what it means)
 *   ProvisionedThroughputExceededException, ThrottlingException,
 *   RequestLimitExceeded, LimitExceededException, InternalServerError,
 *   ServiceUnavailable, any 5xx           MM_ERETRY
 *   ValidationException, ResourceNotFoundException, AccessDeniedException,
 *   any other 4xx                         MM_EPERM
 *   no answer, nothing sent (refused,
 *   DNS, TLS handshake, connect timeout)  MM_ERETRY
 *   no answer after the request was sent
 *   (timeout, reset)                      MM_EUNKNOWN for a write (it may
 *                                         have been applied), MM_ERETRY for
 *                                         a read or an idempotent write
 *   a write libcurl would resend by itself
 *   (a reused connection closed after
 *   the request went out, no answer)      MM_EUNKNOWN: the resend is refused
 *                                         (CURLOPT_PREREQFUNCTION), because
 *                                         the first copy may have been applied
 *   a body failing its x-amz-crc32        the same as a lost answer
 *   not started before the deadline       MM_EDEADLINE
 *
 * The error type is the text after '#' of the body's `__type`; the message
 * is its `message` or `Message`. Every error message names the operation,
 * the table, the type and the request id, never credentials or payloads.
 * Requests are POST / with X-Amz-Target: DynamoDB_20120810.<Op> and
 * Content-Type: application/x-amz-json-1.0, signed as aws.h describes.
 * The client does not retry: callers own the retry budget (DESIGN 3.5).
 *
 * Relies on aws.h, buf.h, json.h (to read error bodies), log.h, retry.h.
 * Ownership: the client is owned by its opener (mm_ddb_destroy). A request
 * owns its body and response buffers (mm_ddb_req_free); the runner borrows
 * requests for the duration of mm_ddb_run. Not thread-safe: one thread
 * uses a client.
 */
#ifndef MM_DDB_H
#define MM_DDB_H

#include <stddef.h>
#include <stdint.h>
#include "aws.h"
#include "buf.h"
#include "err.h"

/* Requests in flight at once by default (MURMUR_MAX_INFLIGHT). */
#define MM_DDB_DEF_INFLIGHT 32
/* Largest in-flight limit accepted. */
#define MM_DDB_MAX_INFLIGHT 1024
/* Per-request timeout by default, connect included. */
#define MM_DDB_DEF_TIMEOUT_MS 3000
/* Connect timeout (capped by the request's own timeout). */
#define MM_DDB_CONNECT_TIMEOUT_MS 1000
/* Largest response body kept (a Query page is at most 1 MB). */
#define MM_DDB_MAX_RESPONSE (16u << 20)
/* API version of X-Amz-Target. */
#define MM_DDB_TARGET_PREFIX "DynamoDB_20120810."
/* User-Agent of every request. */
#define MM_DDB_USER_AGENT "murmur-ddb"

typedef struct mm_ddb mm_ddb_t;

typedef struct mm_ddb_req {
  /* in */
  const char *op;       /* operation name, e.g. "UpdateItem" (borrowed) */
  const char *table;    /* named in messages (borrowed) */
  mm_buf_t body;        /* request JSON (owned by the request) */
  int write;            /* 1: not idempotent; a lost answer is MM_EUNKNOWN */
  int64_t not_before;   /* mm_mono_ms() time before which it is not sent
                           (0 = at once): a resend's backoff */
  void *ud;             /* the caller's */
  /* out (cleared before every send) */
  int status;           /* see the table above */
  int cond_failed;      /* 1: ConditionalCheckFailedException */
  long http_status;     /* 0 when no answer arrived */
  char type[96];        /* error type after '#', "" when none */
  mm_buf_t resp;        /* response body (owned by the request) */
  mm_err_t err;
} mm_ddb_req_t;

/* Called when request r finished (its outputs set). Return 1 to send r
 * again (the callback has rewritten r->body; outputs are cleared first),
 * 0 when r is done. The callback must bound its own resends. */
typedef int (*mm_ddb_done_fn)(void *ud, mm_ddb_req_t *r);

/* Counters since the client was opened. */
typedef struct mm_ddb_stats {
  uint64_t requests;     /* transfers completed (with or without answer) */
  uint64_t connects;     /* new connections opened (the rest were reused) */
  uint64_t failures;     /* requests whose status was not 0 */
} mm_ddb_stats_t;

/* Opens a client with the AWS settings of the environment (aws.h) for
 * service "dynamodb". max_inflight <= 0 and timeout_ms <= 0 take the
 * defaults. Returns 0, MM_EINVAL (settings), MM_ENOMEM or MM_EIO. */
int mm_ddb_open(mm_ddb_t **out, int max_inflight, int64_t timeout_ms, mm_err_t *err);
void mm_ddb_destroy(mm_ddb_t *c);

/* The settings in use (borrowed from the client). */
const mm_aws_t *mm_ddb_aws(const mm_ddb_t *c);
mm_ddb_stats_t mm_ddb_stats(const mm_ddb_t *c);

/* Prepares r (outputs cleared, empty buffers). */
void mm_ddb_req_init(mm_ddb_req_t *r, const char *op, const char *table, int write);
/* Releases r's buffers (r may be NULL; safe to call twice). */
void mm_ddb_req_free(mm_ddb_req_t *r);

/* Sends every request of reqs[0..n) concurrently (and again while done
 * asks for it; done may be NULL). deadline_ms is an absolute epoch-ms time
 * after which no request starts and none runs (0 = none): a request's
 * timeout is cut to end by then. Returns 0 when every request got a status
 * (look at each), or MM_ENOMEM / MM_EIO when the runner itself failed (then
 * every unfinished request has that status). */
int mm_ddb_run(mm_ddb_t *c, mm_ddb_req_t *const *reqs, size_t n, int64_t deadline_ms,
               mm_ddb_done_fn done, void *ud);

/* One request: mm_ddb_run of one, returning r->status. */
int mm_ddb_call(mm_ddb_t *c, mm_ddb_req_t *r, int64_t deadline_ms);

/* Appends s as a DynamoDB-safe JSON string literal: like mm_buf_json_str,
 * but a string that is not valid UTF-8 is refused (MM_EINVAL) instead of
 * repaired, because a repaired key would name another row. */
int mm_ddb_json_str(mm_buf_t *b, const char *s, size_t n, mm_err_t *err);
/* 1 when s[0..n) is valid UTF-8 (no overlongs, surrogates, > U+10FFFF). */
int mm_ddb_utf8_valid(const char *s, size_t n);

#endif

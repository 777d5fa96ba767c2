/*
 * rapi.h - a client of the Lambda Runtime API (runtime-contract section 1).
 *
 * Provides: next / response / invocation error / init error over one reused
 * libcurl easy handle (keep-alive). GET next has no total timeout (the
 * environment may be frozen between invocations); connects are bounded.
 * Connection failures are retried with a bounded backoff; a 500 from the
 * API means "exit". Header values are copied out of libcurl's buffer.
 *
 * Ownership: mm_rapi_t from mm_rapi_create is released with
 * mm_rapi_destroy; an invocation owns its body (mm_invocation_free).
 */
#ifndef MM_RAPI_H
#define MM_RAPI_H

#include <stddef.h>
#include <stdint.h>
#include "err.h"

/* Attempts for a request that cannot connect, and the first backoff. */
#define MM_RAPI_CONNECT_ATTEMPTS 8
#define MM_RAPI_CONNECT_BACKOFF_MS 10
/* Largest event body accepted (Lambda's limit is 6 MB + a little). */
#define MM_RAPI_MAX_BODY (8u * 1024 * 1024)
/* Connect timeout of every request (no total timeout: see rapi.c). */
#define MM_RAPI_CONNECT_TIMEOUT_MS 1000
/* Sent on every request. */
#define MM_RAPI_USER_AGENT "murmur-ddb/0.1"

typedef struct mm_rapi mm_rapi_t;

typedef struct mm_invocation {
  char request_id[128];
  char trace_id[512];       /* "" when absent */
  char function_arn[256];
  int64_t deadline_ms;      /* 0 when absent */
  char *body;               /* owned, NUL-terminated */
  size_t body_len;
} mm_invocation_t;

/* host_port is AWS_LAMBDA_RUNTIME_API ("127.0.0.1:9001"). */
int mm_rapi_create(mm_rapi_t **out, const char *host_port, mm_err_t *err);
void mm_rapi_destroy(mm_rapi_t *r);

/* Blocks for the next event. MM_EIO after persistent connection failures
 * or a 500 (the runtime should exit); other failures MM_EINVAL (a non-200
 * status, a missing request id, a body above MM_RAPI_MAX_BODY). On every
 * failure inv->body is NULL and inv->request_id holds the id when the
 * response carried one (so an oversized event can still be answered with
 * an invocation error); nothing needs freeing. */
int mm_rapi_next(mm_rapi_t *r, mm_invocation_t *inv, mm_err_t *err);
void mm_invocation_free(mm_invocation_t *inv);

/* Posts the response. 413 is MM_ELIMIT (post an error instead); 400/403 are
 * MM_EINVAL; 500 and connection failures MM_EIO. */
int mm_rapi_respond(mm_rapi_t *r, const char *request_id, const char *body,
                    size_t len, mm_err_t *err);

/* Posts {"errorMessage":msg,"errorType":type,"stackTrace":[]} with the
 * Lambda-Runtime-Function-Error-Type header. */
int mm_rapi_error(mm_rapi_t *r, const char *request_id, const char *type,
                  const char *msg, mm_err_t *err);
int mm_rapi_init_error(mm_rapi_t *r, const char *type, const char *msg,
                       mm_err_t *err);

/* HTTP status of the last request, 0 when no response arrived (connection
 * failure). Lets a caller tell "the API said 500: exit cleanly" from "the
 * API is unreachable". */
int mm_rapi_last_status(const mm_rapi_t *r);

#endif

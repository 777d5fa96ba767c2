/*
 * ddb.c - the DynamoDB JSON API client: DynamoDB's settings and error
 * classes over the shared request runner (awsreq.h), which owns the pool of
 * reused easy handles and the curl multi loop (ddb.h).
 */
#include "ddb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "awsreq.h"
#include "json.h"

struct mm_ddb {
  mm_aws_t aws;
  mm_awsreq_pool_t *pool;   /* borrows aws */
};

/* A request as the runner sees it, with the text its messages name. */
typedef struct wrap {
  mm_awsreq_t a;
  char on[300];             /* "table <name>" */
} wrap_t;

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

/*
 * Well-formed UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing
 * above U+10FFFF. DynamoDB stores S values as UTF-8 and rejects others.
 */
int mm_ddb_utf8_valid(const char *str, size_t n) {
  size_t i = 0;
  while (i < n) {
    if ((unsigned char)str[i] < 0x80) {
      i++;
      continue;
    }
    size_t len = mm_utf8_next(str + i, n - i, NULL);
    if (!len) return 0;
    i += len;
  }
  return 1;
}

int mm_ddb_json_str(mm_buf_t *b, const char *s, size_t n, mm_err_t *err) {
  if (!mm_ddb_utf8_valid(s, n))
    return mm_err_set(err, MM_EINVAL,
                      "string is not valid UTF-8 (DynamoDB strings must be)");
  if (mm_buf_json_str(b, s, n))
    return mm_err_set(err, MM_ENOMEM, "out of memory building a request");
  return 0;
}

void mm_ddb_req_init(mm_ddb_req_t *r, const char *op, const char *table, int write) {
  memset(r, 0, sizeof *r);
  r->op = op;
  r->table = table;
  r->write = write;
}

void mm_ddb_req_free(mm_ddb_req_t *r) {
  if (!r) return;
  mm_buf_free(&r->body);
  mm_buf_free(&r->resp);
}

static void clear_outputs(mm_ddb_req_t *r) {
  r->status = 0;
  r->cond_failed = 0;
  r->http_status = 0;
  r->type[0] = '\0';
  mm_buf_reset(&r->resp); /* also clears its failure */
  mm_err_clear(&r->err);
}

/* ------------------------------------------------------------------ */
/* Client                                                              */
/* ------------------------------------------------------------------ */

/* Error types the AWS documentation calls retryable (runtime-contract 5). */
static int retryable_type(const char *t) {
  static const char *const names[] = {
      "ProvisionedThroughputExceededException", "ThrottlingException",
      "RequestLimitExceeded", "LimitExceededException", "InternalServerError",
      "ServiceUnavailable", "Throttling"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(t, names[i]) == 0) return 1;
  return 0;
}

/* The status of a non-2xx answer (ddb.h's table). */
static int http_status(const char *type, long code) {
  if (strcmp(type, "ConditionalCheckFailedException") == 0) return MM_EPERM;
  return retryable_type(type) || code >= 500 ? MM_ERETRY : MM_EPERM;
}

int mm_ddb_open(mm_ddb_t **out, int max_inflight, int64_t timeout_ms, mm_err_t *err) {
  *out = NULL;
  int rc = 0;
  mm_ddb_t *c = calloc(1, sizeof *c);
  if (!c) return mm_err_set(err, MM_ENOMEM, "out of memory opening the DynamoDB client");
  if (max_inflight <= 0) max_inflight = MM_DDB_DEF_INFLIGHT;
  if (max_inflight > MM_DDB_MAX_INFLIGHT) max_inflight = MM_DDB_MAX_INFLIGHT;
  if ((rc = mm_aws_init(&c->aws, "dynamodb", err))) goto fail;
  const mm_awsreq_conf_t conf = {
      .log_name = "dynamodb",
      .target_prefix = MM_DDB_TARGET_PREFIX,
      .user_agent = MM_DDB_USER_AGENT,
      .unknown_subject = "the write",
      .max_inflight = max_inflight,
      .timeout_ms = timeout_ms > 0 ? timeout_ms : MM_DDB_DEF_TIMEOUT_MS,
      .connect_timeout_ms = MM_DDB_CONNECT_TIMEOUT_MS,
      .max_response = MM_DDB_MAX_RESPONSE,
      .check_crc = 1,
      .refuse_resend = 1,
      .quiet_type = "ConditionalCheckFailedException",
      .http_status = http_status,
  };
  if ((rc = mm_awsreq_open(&c->pool, &c->aws, &conf, "the DynamoDB client", err))) goto fail;
  *out = c;
  return 0;
fail:
  mm_ddb_destroy(c);
  return rc;
}

void mm_ddb_destroy(mm_ddb_t *c) {
  if (!c) return;
  mm_awsreq_close(c->pool);
  mm_aws_free(&c->aws);
  free(c);
}

const mm_aws_t *mm_ddb_aws(const mm_ddb_t *c) { return &c->aws; }

mm_ddb_stats_t mm_ddb_stats(const mm_ddb_t *c) {
  mm_awsreq_stats_t s = mm_awsreq_stats(c->pool);
  mm_ddb_stats_t d = {.requests = s.requests, .connects = s.connects, .failures = s.failures};
  return d;
}

/* ------------------------------------------------------------------ */
/* Running                                                             */
/* ------------------------------------------------------------------ */

/* Sets w's inputs from DynamoDB request r (again before every resend:
 * the caller's done callback may have changed the operation). */
static void copy_in(wrap_t *w, mm_ddb_req_t *r) {
  snprintf(w->on, sizeof w->on, "table %s", r->table ? r->table : "?");
  w->a.op = r->op;
  w->a.on = w->on;
  w->a.body = &r->body;
  w->a.resp = &r->resp;
  w->a.write = r->write;
  w->a.not_before = r->not_before;
  w->a.ud = r;
}

/* Copies the runner's outputs of w into its DynamoDB request. */
static void copy_out(wrap_t *w) {
  mm_ddb_req_t *r = w->a.ud;
  r->status = w->a.status;
  r->http_status = w->a.http_status;
  snprintf(r->type, sizeof r->type, "%s", w->a.type);
  r->cond_failed = r->status && strcmp(r->type, "ConditionalCheckFailedException") == 0;
  r->err = w->a.err;
}

/* What the runner's done callback needs to call the caller's. */
typedef struct run_ctx {
  mm_ddb_done_fn done;
  void *ud;
} run_ctx_t;

/* The runner's done callback: hands the outputs to the caller's, and
 * when it asks for a resend, takes its new inputs (op, body, backoff). */
static int on_done(void *ud, mm_awsreq_t *a) {
  run_ctx_t *x = ud;
  wrap_t *w = (wrap_t *)a; /* a is w's first member */
  mm_ddb_req_t *r = a->ud;
  copy_out(w);
  if (!x->done(x->ud, r)) return 0;
  clear_outputs(r);
  copy_in(w, r);
  return 1;
}

/*
 * Sends the requests through the runner: each gets a runner view (its
 * body, response buffer and message text) for the run, and its outputs
 * back from it.
 */
int mm_ddb_run(mm_ddb_t *c, mm_ddb_req_t *const *reqs, size_t n, int64_t deadline_ms,
               mm_ddb_done_fn done, void *ud) {
  if (n == 0) return 0;
  wrap_t *w = calloc(n, sizeof *w);
  mm_awsreq_t **v = calloc(n, sizeof *v); /* calloc: GCC -O2 cannot see the loop fill it */
  if (!w || !v) {
    free(w);
    free(v);
    for (size_t i = 0; i < n; i++)
      reqs[i]->status = mm_err_set(&reqs[i]->err, MM_ENOMEM, "out of memory sending requests");
    return MM_ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    clear_outputs(reqs[i]);
    copy_in(&w[i], reqs[i]);
    v[i] = &w[i].a;
  }
  run_ctx_t x = {done, ud};
  int rc = mm_awsreq_run(c->pool, v, n, deadline_ms, done ? on_done : NULL, &x);
  for (size_t i = 0; i < n; i++) copy_out(&w[i]);
  free(w);
  free(v);
  return rc;
}

int mm_ddb_call(mm_ddb_t *c, mm_ddb_req_t *r, int64_t deadline_ms) {
  mm_ddb_req_t *one[1] = {r};
  int rc = mm_ddb_run(c, one, 1, deadline_ms, NULL, NULL);
  return rc ? rc : r->status;
}

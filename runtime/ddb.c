/*
 * ddb.c - the DynamoDB JSON API client: a curl multi loop over a pool of
 * reused easy handles, and the classification of every answer (ddb.h).
 */
#include "ddb.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json.h"
#include "log.h"
#include "retry.h"

/* How long one curl_multi_poll waits at most before the loop looks at the
 * clock again (ms). Transfers wake it earlier. */
#define POLL_MS 100

/* One easy handle of the pool and the transfer it runs. */
typedef struct slot {
  CURL *h;                  /* kept for the client's life (connection reuse) */
  struct curl_slist *hdrs;  /* this transfer's request headers */
  mm_ddb_req_t *r;          /* the request running here, NULL when idle */
  char curl_err[CURL_ERROR_SIZE];
  int have_crc;             /* the answer carried x-amz-crc32 */
  uint32_t crc;             /* its value */
  int too_big;              /* body exceeded MM_DDB_MAX_RESPONSE */
  int sends;                /* times libcurl was about to send this request */
  int resend_blocked;       /* a write libcurl wanted to send again */
  char request_id[80];      /* x-amzn-RequestId, "" when none */
} slot_t;

struct mm_ddb {
  mm_aws_t aws;
  CURLM *multi;
  slot_t *slots;            /* max_inflight of them */
  int max_inflight;
  int64_t timeout_ms;
  int curl_inited;          /* balances curl_global_init */
  mm_ddb_stats_t stats;
};

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

/* CRC-32 (IEEE 802.3, the zlib polynomial) of the body, as DynamoDB sends
 * it in x-amz-crc32. Bitwise: bodies are small and this runs once each. */
static uint32_t crc32_of(const void *p, size_t n) {
  const unsigned char *s = p;
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++) {
    c ^= s[i];
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return c ^ 0xFFFFFFFFu;
}

/*
 * Well-formed UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing
 * above U+10FFFF. DynamoDB stores S values as UTF-8 and rejects others.
 */
int mm_ddb_utf8_valid(const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return 0;
    }
    if (n - i < len) return 0;
    if (s[i + 1] < lo || s[i + 1] > hi) return 0;
    for (size_t k = 2; k < len; k++)
      if (s[i + k] < 0x80 || s[i + k] > 0xBF) return 0;
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
  mm_buf_reset(&r->resp);
  r->resp.failed = 0;
  mm_err_clear(&r->err);
}

/* ------------------------------------------------------------------ */
/* Client                                                              */
/* ------------------------------------------------------------------ */

int mm_ddb_open(mm_ddb_t **out, int max_inflight, int64_t timeout_ms, mm_err_t *err) {
  *out = NULL;
  int rc = 0;
  mm_ddb_t *c = calloc(1, sizeof *c);
  if (!c) return mm_err_set(err, MM_ENOMEM, "out of memory opening the DynamoDB client");
  if (max_inflight <= 0) max_inflight = MM_DDB_DEF_INFLIGHT;
  if (max_inflight > MM_DDB_MAX_INFLIGHT) max_inflight = MM_DDB_MAX_INFLIGHT;
  c->max_inflight = max_inflight;
  c->timeout_ms = timeout_ms > 0 ? timeout_ms : MM_DDB_DEF_TIMEOUT_MS;
  if ((rc = mm_aws_init(&c->aws, "dynamodb", err))) goto fail;
  /* Reference-counted by libcurl; the runtime is single-threaded. */
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    rc = mm_err_set(err, MM_EIO, "curl_global_init failed");
    goto fail;
  }
  c->curl_inited = 1;
  c->slots = calloc((size_t)max_inflight, sizeof *c->slots);
  c->multi = curl_multi_init();
  if (!c->slots || !c->multi) {
    rc = mm_err_set(err, MM_ENOMEM, "out of memory opening the DynamoDB client");
    goto fail;
  }
  /* Keep one idle connection per possible transfer. */
  curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, (long)max_inflight);
  *out = c;
  return 0;
fail:
  mm_ddb_destroy(c);
  return rc;
}

void mm_ddb_destroy(mm_ddb_t *c) {
  if (!c) return;
  for (int i = 0; c->slots && i < c->max_inflight; i++) {
    slot_t *s = &c->slots[i];
    if (s->h) {
      if (s->r && c->multi) curl_multi_remove_handle(c->multi, s->h);
      curl_easy_cleanup(s->h);
    }
    curl_slist_free_all(s->hdrs);
  }
  free(c->slots);
  if (c->multi) curl_multi_cleanup(c->multi);
  if (c->curl_inited) curl_global_cleanup();
  mm_aws_free(&c->aws);
  free(c);
}

const mm_aws_t *mm_ddb_aws(const mm_ddb_t *c) { return &c->aws; }
mm_ddb_stats_t mm_ddb_stats(const mm_ddb_t *c) { return c->stats; }

/* ------------------------------------------------------------------ */
/* Transfer callbacks                                                  */
/* ------------------------------------------------------------------ */

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud) {
  slot_t *s = ud;
  size_t n = size * nmemb;
  if (s->r->resp.len + n > MM_DDB_MAX_RESPONSE) {
    s->too_big = 1;
    return 0; /* aborts the transfer */
  }
  return mm_buf_add(&s->r->resp, p, n) ? 0 : n;
}

/* Case-insensitive "Name:" prefix test; returns the trimmed value start. */
static const char *header_value(const char *line, size_t n, const char *name,
                                size_t *vlen) {
  size_t k = strlen(name);
  if (n <= k || strncasecmp(line, name, k) != 0 || line[k] != ':') return NULL;
  const char *v = line + k + 1, *e = line + n;
  while (v < e && (*v == ' ' || *v == '\t')) v++;
  while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ')) e--;
  *vlen = (size_t)(e - v);
  return v;
}

/* Copies what the classifier needs out of libcurl's header buffer (it is
 * not kept). A status line starts a new response (after an internal retry
 * or a 100 Continue), so it resets what an earlier one said. */
static size_t on_header(char *p, size_t size, size_t nmemb, void *ud) {
  slot_t *s = ud;
  size_t n = size * nmemb, vl;
  const char *v;
  if (n >= 5 && strncmp(p, "HTTP/", 5) == 0) {
    s->have_crc = 0;
    s->request_id[0] = '\0';
    if (s->r) mm_buf_reset(&s->r->resp);
  } else if ((v = header_value(p, n, "x-amz-crc32", &vl))) {
    char tmp[16];
    if (vl > 0 && vl < sizeof tmp) {
      memcpy(tmp, v, vl);
      tmp[vl] = '\0';
      char *end;
      unsigned long long x = strtoull(tmp, &end, 10);
      if (*end == '\0' && x <= 0xFFFFFFFFull) {
        s->have_crc = 1;
        s->crc = (uint32_t)x;
      }
    }
  } else if ((v = header_value(p, n, "x-amzn-RequestId", &vl))) {
    if (vl >= sizeof s->request_id) vl = sizeof s->request_id - 1;
    memcpy(s->request_id, v, vl);
    s->request_id[vl] = '\0';
  }
  return n;
}

/*
 * Called by libcurl each time it is about to send the request on a
 * connection. A second call means libcurl is resending on its own: it does
 * that when a reused connection closes before any answer byte, even after
 * the whole request went out, so the server may have applied the first
 * copy. For a write that would apply it twice without anyone knowing, so
 * the resend is refused and the write reported as of unknown outcome;
 * reads are left to libcurl's retry.
 */
static int on_prereq(void *ud, char *ip, char *local_ip, int port, int local_port) {
  (void)ip;
  (void)local_ip;
  (void)port;
  (void)local_port;
  slot_t *s = ud;
  if (++s->sends > 1 && s->r && s->r->write) {
    s->resend_blocked = 1;
    return CURL_PREREQFUNC_ABORT;
  }
  return CURL_PREREQFUNC_OK;
}

/* ------------------------------------------------------------------ */
/* Classification                                                      */
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

/*
 * Sets r's status from how the transfer ended (ddb.h's table). "Sent" is
 * judged conservatively: once libcurl reached the transfer phase or put
 * any request byte on the wire, a lost answer may hide an applied write.
 */
static void classify(mm_ddb_t *c, slot_t *s, CURLcode cc) {
  mm_ddb_req_t *r = s->r;
  const char *table = r->table ? r->table : "?";
  char rid[100] = "";
  if (s->request_id[0]) snprintf(rid, sizeof rid, " (request id %s)", s->request_id);
  long conns = 0;
  if (curl_easy_getinfo(s->h, CURLINFO_NUM_CONNECTS, &conns) == CURLE_OK && conns > 0)
    c->stats.connects += (uint64_t)conns;
  c->stats.requests++;

  if (cc == CURLE_OK) {
    curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &r->http_status);
    long code = r->http_status;
    if (code >= 200 && code < 300) {
      if (s->have_crc && crc32_of(r->resp.data ? r->resp.data : "", r->resp.len) != s->crc) {
        r->status = mm_err_set(&r->err, r->write ? MM_EUNKNOWN : MM_ERETRY,
                               "%s on table %s: response failed its x-amz-crc32 check%s%s",
                               r->op, table, rid,
                               r->write ? " (the write may have been applied)" : "");
      } else {
        r->status = 0;
      }
      goto done;
    }
    char msg[400];
    mm_aws_error_body(r->resp.data, r->resp.len, r->type, sizeof r->type, msg, sizeof msg);
    const char *type = r->type[0] ? r->type : "no error type";
    int st;
    if (strcmp(r->type, "ConditionalCheckFailedException") == 0) {
      r->cond_failed = 1;
      st = MM_EPERM;
    } else if (retryable_type(r->type) || code >= 500) {
      st = MM_ERETRY;
    } else {
      st = MM_EPERM;
    }
    r->status = mm_err_set(&r->err, st, "%s on table %s: %s (HTTP %ld)%s%s%s", r->op,
                           table, type, code, msg[0] ? ": " : "", msg, rid);
    goto done;
  }

  /* No (complete) answer. */
  if (s->too_big) {
    r->status = mm_err_set(&r->err, MM_EPERM, "%s on table %s: response larger than %u bytes%s",
                           r->op, table, (unsigned)MM_DDB_MAX_RESPONSE, rid);
    goto done;
  }
  if (s->resend_blocked) {
    r->status = mm_err_set(&r->err, MM_EUNKNOWN,
                           "%s on table %s: the connection closed without an answer after "
                           "the request was sent: the write may have been applied%s",
                           r->op, table, rid);
    goto done;
  }
  curl_off_t pre = 0, up = 0;
  long reqsize = 0;
  curl_easy_getinfo(s->h, CURLINFO_PRETRANSFER_TIME_T, &pre);
  curl_easy_getinfo(s->h, CURLINFO_SIZE_UPLOAD_T, &up);
  curl_easy_getinfo(s->h, CURLINFO_REQUEST_SIZE, &reqsize);
  int sent = pre > 0 || up > 0 || reqsize > 0;
  switch (cc) {
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:
  case CURLE_COULDNT_CONNECT:
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CACERT_BADFILE:
    sent = 0; /* failed before a request byte could leave */
    break;
  default:
    break;
  }
  const char *why = s->curl_err[0] ? s->curl_err : curl_easy_strerror(cc);
  if (sent && r->write) {
    r->status = mm_err_set(&r->err, MM_EUNKNOWN,
                           "%s on table %s: no answer after the request was sent (%s): "
                           "the write may have been applied%s",
                           r->op, table, why, rid);
  } else {
    r->status = mm_err_set(&r->err, MM_ERETRY, "%s on table %s: network error: %s%s", r->op,
                           table, why, rid);
  }
done:
  if (r->status) {
    c->stats.failures++;
    if (!r->cond_failed) mm_log(MM_LOG_DEBUG, NULL, "dynamodb: %s", r->err.msg);
  }
}

/* ------------------------------------------------------------------ */
/* The multi loop                                                      */
/* ------------------------------------------------------------------ */

/*
 * Starts r on slot s: a fresh option set on the slot's reused handle (the
 * handle keeps its connection cache entry through the multi handle).
 * Returns 0, or a status already written into r (deadline, setup failure).
 */
static int start(mm_ddb_t *c, slot_t *s, mm_ddb_req_t *r, int64_t deadline_ms) {
  int64_t timeout = c->timeout_ms;
  if (deadline_ms > 0) {
    int64_t left = deadline_ms - mm_now_ms();
    if (left <= 0)
      return r->status = mm_err_set(&r->err, MM_EDEADLINE,
                                    "%s on table %s: deadline reached before the request started",
                                    r->op, r->table ? r->table : "?");
    if (left < timeout) timeout = left;
  }
  if (!s->h && !(s->h = curl_easy_init()))
    return r->status = mm_err_set(&r->err, MM_ERETRY, "%s: out of memory (curl handle)", r->op);
  curl_easy_reset(s->h);
  curl_slist_free_all(s->hdrs);
  s->hdrs = NULL;
  s->curl_err[0] = '\0';
  s->have_crc = 0;
  s->too_big = 0;
  s->sends = 0;
  s->resend_blocked = 0;
  s->request_id[0] = '\0';
  s->r = r;

  char target[160];
  snprintf(target, sizeof target, "X-Amz-Target: " MM_DDB_TARGET_PREFIX "%s", r->op);
  const char *extra[] = {"Content-Type: application/x-amz-json-1.0", target, NULL};
  int rc = mm_aws_setup(&c->aws, s->h, extra, &s->hdrs, &r->err);
  if (rc) {
    s->r = NULL;
    return r->status = rc == MM_ENOMEM ? MM_ERETRY : MM_EPERM;
  }
  if (r->body.failed) {
    s->r = NULL;
    return r->status = mm_err_set(&r->err, MM_ERETRY, "%s: out of memory building the request",
                                  r->op);
  }
  const char *body = r->body.data ? r->body.data : "{}";
  size_t blen = r->body.data ? r->body.len : 2;
  long connect = MM_DDB_CONNECT_TIMEOUT_MS < timeout ? MM_DDB_CONNECT_TIMEOUT_MS : (long)timeout;
  CURLcode cc = CURLE_OK;
  if (!cc) cc = curl_easy_setopt(s->h, CURLOPT_POST, 1L);
  if (!cc) cc = curl_easy_setopt(s->h, CURLOPT_POSTFIELDS, body);
  if (!cc) cc = curl_easy_setopt(s->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
  if (!cc) cc = curl_easy_setopt(s->h, CURLOPT_USERAGENT, MM_DDB_USER_AGENT);
  if (!cc) cc = curl_easy_setopt(s->h, CURLOPT_TIMEOUT_MS, (long)timeout);
  if (!cc) cc = curl_easy_setopt(s->h, CURLOPT_CONNECTTIMEOUT_MS, connect);
  if (!cc) cc = curl_easy_setopt(s->h, CURLOPT_ERRORBUFFER, s->curl_err);
  if (!cc) cc = curl_easy_setopt(s->h, CURLOPT_WRITEFUNCTION, on_body);
  if (!cc) cc = curl_easy_setopt(s->h, CURLOPT_WRITEDATA, s);
  if (!cc) cc = curl_easy_setopt(s->h, CURLOPT_HEADERFUNCTION, on_header);
  if (!cc) cc = curl_easy_setopt(s->h, CURLOPT_HEADERDATA, s);
  if (!cc) cc = curl_easy_setopt(s->h, CURLOPT_PRIVATE, s);
  if (!cc) cc = curl_easy_setopt(s->h, CURLOPT_PREREQFUNCTION, on_prereq);
  if (!cc) cc = curl_easy_setopt(s->h, CURLOPT_PREREQDATA, s);
  if (cc) {
    s->r = NULL;
    return r->status = mm_err_set(&r->err, MM_EPERM, "%s: libcurl refused an option: %s",
                                  r->op, curl_easy_strerror(cc));
  }
  if (curl_multi_add_handle(c->multi, s->h) != CURLM_OK) {
    s->r = NULL;
    return r->status = mm_err_set(&r->err, MM_ERETRY, "%s: curl_multi_add_handle failed",
                                  r->op);
  }
  return 0;
}

/*
 * The runner: a FIFO of requests waiting for a slot, at most max_inflight
 * transfers at once, each completion classified and offered to `done`,
 * which may queue the request again. Every request is in the queue or in
 * a slot at most once, so the queue never holds more than n entries. The
 * loop ends because every transfer has a timeout and `done` bounds its own
 * resends.
 */
int mm_ddb_run(mm_ddb_t *c, mm_ddb_req_t *const *reqs, size_t n, int64_t deadline_ms,
               mm_ddb_done_fn done, void *ud) {
  if (n == 0) return 0;
  mm_ddb_req_t **queue = malloc(n * sizeof *queue);
  if (!queue) {
    for (size_t i = 0; i < n; i++)
      reqs[i]->status = mm_err_set(&reqs[i]->err, MM_ENOMEM, "out of memory sending requests");
    return MM_ENOMEM;
  }
  size_t head = 0, count = 0;
  for (size_t i = 0; i < n; i++) {
    clear_outputs(reqs[i]);
    queue[count++] = reqs[i];
  }
  int inflight = 0, rc = 0;
  while (count > 0 || inflight > 0) {
    /* Fill free slots with the queued requests that are due; one pass
     * over the queue (a request backing off goes to the back). */
    int64_t now = mm_mono_ms(), wake = 0;
    int k = 0;
    for (size_t pass = count; pass > 0; pass--) {
      while (k < c->max_inflight && c->slots[k].r) k++;
      if (k >= c->max_inflight) break;
      mm_ddb_req_t *r = queue[head];
      head = (head + 1) % n;
      count--;
      if (r->not_before > now) {
        if (!wake || r->not_before < wake) wake = r->not_before;
        queue[(head + count++) % n] = r;
        continue;
      }
      if (start(c, &c->slots[k], r, deadline_ms) == 0) {
        inflight++;
      } else if (done && done(ud, r)) {
        clear_outputs(r); /* not started; the caller wants it sent again */
        queue[(head + count++) % n] = r;
      }
    }
    if (inflight == 0) {
      /* Only backing-off requests left: wait for the first one. */
      if (count > 0 && wake > now) mm_sleep_ms(wake - now < POLL_MS ? wake - now : POLL_MS);
      continue;
    }
    int running = 0;
    CURLMcode mc = curl_multi_perform(c->multi, &running);
    if (mc != CURLM_OK) {
      rc = MM_EIO;
      mm_log(MM_LOG_ERROR, NULL, "dynamodb: curl_multi_perform: %s", curl_multi_strerror(mc));
      break;
    }
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(c->multi, &left))) {
      if (m->msg != CURLMSG_DONE) continue;
      slot_t *s = NULL;
      curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
      CURLcode res = m->data.result;
      mm_ddb_req_t *r = s->r;
      classify(c, s, res);
      curl_multi_remove_handle(c->multi, s->h);
      curl_slist_free_all(s->hdrs);
      s->hdrs = NULL;
      s->r = NULL;
      inflight--;
      if (done && done(ud, r)) {
        clear_outputs(r);
        queue[(head + count++) % n] = r;
      }
    }
    if (inflight > 0 && running > 0) {
      int wait = POLL_MS;
      if (count > 0 && wake > now && wake - now < wait) wait = (int)(wake - now);
      mc = curl_multi_poll(c->multi, NULL, 0, wait, NULL);
      if (mc != CURLM_OK) {
        rc = MM_EIO;
        mm_log(MM_LOG_ERROR, NULL, "dynamodb: curl_multi_poll: %s", curl_multi_strerror(mc));
        break;
      }
    }
  }
  if (rc) {
    /* The runner broke: fail what is still queued or running. */
    for (int k = 0; k < c->max_inflight; k++) {
      slot_t *s = &c->slots[k];
      if (!s->r) continue;
      curl_multi_remove_handle(c->multi, s->h);
      curl_slist_free_all(s->hdrs);
      s->hdrs = NULL;
      s->r->status = mm_err_set(&s->r->err, s->r->write ? MM_EUNKNOWN : MM_ERETRY,
                                "%s: request abandoned: the transfer loop failed", s->r->op);
      s->r = NULL;
    }
    for (size_t i = 0; i < count; i++) {
      mm_ddb_req_t *r = queue[(head + i) % n];
      r->status = mm_err_set(&r->err, MM_ERETRY, "%s: not sent: the transfer loop failed", r->op);
    }
  }
  free(queue);
  return rc;
}

int mm_ddb_call(mm_ddb_t *c, mm_ddb_req_t *r, int64_t deadline_ms) {
  mm_ddb_req_t *one[1] = {r};
  int rc = mm_ddb_run(c, one, 1, deadline_ms, NULL, NULL);
  return rc ? rc : r->status;
}

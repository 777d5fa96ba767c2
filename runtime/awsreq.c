/*
 * awsreq.c - the AWS JSON 1.0 request runner: a curl multi loop over a pool
 * of reused easy handles, answer capture and transfer classification
 * (awsreq.h).
 */
#include "awsreq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "retry.h"

/* One easy handle of the pool and the transfer it runs. */
typedef struct slot {
  CURL *h;                  /* kept for the pool's life (connection reuse) */
  struct curl_slist *hdrs;  /* this transfer's request headers */
  mm_awsreq_t *r;           /* the request running here, NULL when idle */
  const mm_awsreq_pool_t *p;
  char curl_err[CURL_ERROR_SIZE];
  int have_crc;             /* the answer carried x-amz-crc32 */
  uint32_t crc;             /* its value */
  int too_big;              /* body exceeded max_response */
  int sends;                /* times libcurl was about to send this request */
  int resend_blocked;       /* a write libcurl wanted to send again */
  char request_id[80];      /* x-amzn-RequestId (printable), "" when none */
} slot_t;

struct mm_awsreq_pool {
  const mm_aws_t *aws;      /* borrowed */
  mm_awsreq_conf_t conf;
  CURLM *multi;
  slot_t *slots;            /* conf.max_inflight of them */
  int curl_inited;          /* balances curl_global_init */
  mm_awsreq_stats_t stats;
};

/* ------------------------------------------------------------------ */
/* Pool                                                                */
/* ------------------------------------------------------------------ */

int mm_awsreq_open(mm_awsreq_pool_t **out, const mm_aws_t *aws, const mm_awsreq_conf_t *conf,
                   const char *what, mm_err_t *err) {
  *out = NULL;
  int rc = 0;
  mm_awsreq_pool_t *p = calloc(1, sizeof *p);
  if (!p) return mm_err_set(err, MM_ENOMEM, "out of memory opening %s", what);
  p->aws = aws;
  p->conf = *conf;
  if (p->conf.max_inflight < 1) p->conf.max_inflight = 1;
  /* Reference-counted by libcurl; the runtime is single-threaded. */
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    rc = mm_err_set(err, MM_EIO, "curl_global_init failed");
    goto fail;
  }
  p->curl_inited = 1;
  p->slots = calloc((size_t)p->conf.max_inflight, sizeof *p->slots);
  p->multi = curl_multi_init();
  if (!p->slots || !p->multi) {
    rc = mm_err_set(err, MM_ENOMEM, "out of memory opening %s", what);
    goto fail;
  }
  /* Keep one idle connection per possible transfer. */
  curl_multi_setopt(p->multi, CURLMOPT_MAXCONNECTS, (long)p->conf.max_inflight);
  *out = p;
  return 0;
fail:
  mm_awsreq_close(p);
  return rc;
}

void mm_awsreq_close(mm_awsreq_pool_t *p) {
  if (!p) return;
  for (int i = 0; p->slots && i < p->conf.max_inflight; i++) {
    slot_t *s = &p->slots[i];
    if (s->h) {
      if (s->r && p->multi) curl_multi_remove_handle(p->multi, s->h);
      curl_easy_cleanup(s->h);
    }
    curl_slist_free_all(s->hdrs);
  }
  free(p->slots);
  if (p->multi) curl_multi_cleanup(p->multi);
  if (p->curl_inited) curl_global_cleanup();
  free(p);
}

mm_awsreq_stats_t mm_awsreq_stats(const mm_awsreq_pool_t *p) { return p->stats; }
int64_t mm_awsreq_timeout_ms(const mm_awsreq_pool_t *p) { return p->conf.timeout_ms; }

void mm_awsreq_clear(mm_awsreq_t *r) {
  r->status = 0;
  r->http_status = 0;
  r->type[0] = '\0';
  if (r->resp) mm_buf_reset(r->resp); /* also clears its failure */
  mm_err_clear(&r->err);
}

/* ------------------------------------------------------------------ */
/* Transfer callbacks                                                  */
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

/* Appends the body to the request's response, up to max_response. */
static size_t on_body(char *p, size_t size, size_t nmemb, void *ud) {
  slot_t *s = ud;
  size_t n = size * nmemb;
  if (!s->r->resp) return n;
  if (s->r->resp->len + n > s->p->conf.max_response) {
    s->too_big = 1;
    return 0; /* aborts the transfer */
  }
  return mm_buf_add(s->r->resp, p, n) ? 0 : n;
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
    if (s->r && s->r->resp) mm_buf_reset(s->r->resp);
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
    mm_aws_printable(s->request_id, sizeof s->request_id, v, vl);
  }
  return n;
}

/*
 * Called by libcurl each time it is about to send the request on a
 * connection. A second call means libcurl is resending on its own: it does
 * that when a reused connection closes before any answer byte, even after
 * the whole request went out, so the server may have applied the first
 * copy. For a write (with refuse_resend) that would apply it twice without
 * anyone knowing, so the resend is refused and the write reported as of
 * unknown outcome; reads are left to libcurl's retry.
 */
static int on_prereq(void *ud, char *ip, char *local_ip, int port, int local_port) {
  (void)ip;
  (void)local_ip;
  (void)port;
  (void)local_port;
  slot_t *s = ud;
  if (++s->sends > 1 && s->r && s->r->write && s->p->conf.refuse_resend) {
    s->resend_blocked = 1;
    return CURL_PREREQFUNC_ABORT;
  }
  return CURL_PREREQFUNC_OK;
}

/* ------------------------------------------------------------------ */
/* Classification                                                      */
/* ------------------------------------------------------------------ */

/*
 * Sets r's status from how the transfer ended (awsreq.h's table). "Sent"
 * is judged conservatively: once libcurl reached the transfer phase or put
 * any request byte on the wire, a lost answer may hide an applied write.
 */
static void classify(mm_awsreq_pool_t *p, slot_t *s, CURLcode cc) {
  mm_awsreq_t *r = s->r;
  const char *on = r->on ? r->on : "?";
  const char *subject = p->conf.unknown_subject ? p->conf.unknown_subject : "the write";
  char rid[100] = "";
  if (s->request_id[0]) snprintf(rid, sizeof rid, " (request id %s)", s->request_id);
  long conns = 0;
  if (curl_easy_getinfo(s->h, CURLINFO_NUM_CONNECTS, &conns) == CURLE_OK && conns > 0)
    p->stats.connects += (uint64_t)conns;
  p->stats.requests++;

  if (cc == CURLE_OK) {
    curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &r->http_status);
    long code = r->http_status;
    const char *data = r->resp && r->resp->data ? r->resp->data : "";
    size_t len = r->resp ? r->resp->len : 0;
    if (code >= 200 && code < 300) {
      if (p->conf.check_crc && s->have_crc && crc32_of(data, len) != s->crc) {
        r->status = mm_err_set(&r->err, r->write ? MM_EUNKNOWN : MM_ERETRY,
                               "%s on %s: response failed its x-amz-crc32 check%s%s%s%s", r->op,
                               on, rid, r->write ? " (" : "", r->write ? subject : "",
                               r->write ? " may have been applied)" : "");
      } else {
        r->status = 0;
      }
      goto done;
    }
    char msg[400];
    mm_aws_error_body(data, len, r->type, sizeof r->type, msg, sizeof msg);
    int st = p->conf.http_status ? p->conf.http_status(r->type, code)
                                 : (code >= 500 ? MM_ERETRY : MM_EPERM);
    r->status = mm_err_set(&r->err, st, "%s on %s: %s (HTTP %ld)%s%s%s", r->op, on,
                           r->type[0] ? r->type : "no error type", code, msg[0] ? ": " : "",
                           msg, rid);
    goto done;
  }

  /* No (complete) answer. */
  if (s->too_big) {
    r->status = mm_err_set(&r->err, MM_EPERM, "%s on %s: response larger than %zu bytes%s",
                           r->op, on, p->conf.max_response, rid);
    goto done;
  }
  if (s->resend_blocked) {
    r->status = mm_err_set(&r->err, MM_EUNKNOWN,
                           "%s on %s: the connection closed without an answer after "
                           "the request was sent: %s may have been applied%s",
                           r->op, on, subject, rid);
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
                           "%s on %s: no answer after the request was sent (%s): "
                           "%s may have been applied%s",
                           r->op, on, why, subject, rid);
  } else {
    r->status =
        mm_err_set(&r->err, MM_ERETRY, "%s on %s: network error: %s%s", r->op, on, why, rid);
  }
done:
  if (r->status) {
    p->stats.failures++;
    if (!p->conf.quiet_type || strcmp(r->type, p->conf.quiet_type) != 0)
      mm_log(MM_LOG_DEBUG, NULL, "%s: %s", p->conf.log_name, r->err.msg);
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
static int start(mm_awsreq_pool_t *p, slot_t *s, mm_awsreq_t *r, int64_t deadline_ms) {
  int64_t timeout = r->timeout_ms > 0 ? r->timeout_ms : p->conf.timeout_ms;
  if (deadline_ms > 0) {
    int64_t left = deadline_ms - mm_now_ms();
    if (left <= 0)
      return r->status = mm_err_set(&r->err, MM_EDEADLINE,
                                    "%s on %s: deadline reached before the request started",
                                    r->op, r->on ? r->on : "?");
    if (left < timeout) timeout = left;
  }
  if (!s->h && !(s->h = curl_easy_init()))
    return r->status = mm_err_set(&r->err, MM_ERETRY, "%s: out of memory (curl handle)", r->op);
  curl_easy_reset(s->h);
  curl_slist_free_all(s->hdrs);
  s->hdrs = NULL;
  s->p = p;
  s->curl_err[0] = '\0';
  s->have_crc = 0;
  s->too_big = 0;
  s->sends = 0;
  s->resend_blocked = 0;
  s->request_id[0] = '\0';
  s->r = r;

  char target[160];
  snprintf(target, sizeof target, "X-Amz-Target: %s%s", p->conf.target_prefix, r->op);
  const char *extra[] = {"Content-Type: application/x-amz-json-1.0", target, NULL};
  int rc = mm_aws_setup(p->aws, s->h, extra, &s->hdrs, &r->err);
  if (rc) {
    s->r = NULL;
    return r->status = rc == MM_ENOMEM ? MM_ERETRY : MM_EPERM;
  }
  if (r->body && r->body->failed) {
    s->r = NULL;
    return r->status = mm_err_set(&r->err, MM_ERETRY, "%s: out of memory building the request",
                                  r->op);
  }
  int have = r->body && r->body->data;
  const char *body = have ? r->body->data : "{}";
  size_t blen = have ? r->body->len : 2;
  long connect = p->conf.connect_timeout_ms < timeout ? p->conf.connect_timeout_ms : (long)timeout;
  CURLcode cc = CURLE_OK;
  if (!cc) cc = curl_easy_setopt(s->h, CURLOPT_POST, 1L);
  if (!cc) cc = curl_easy_setopt(s->h, CURLOPT_POSTFIELDS, body);
  if (!cc) cc = curl_easy_setopt(s->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
  if (!cc) cc = curl_easy_setopt(s->h, CURLOPT_USERAGENT, p->conf.user_agent);
  if (!cc) cc = curl_easy_setopt(s->h, CURLOPT_TIMEOUT_MS, (long)timeout);
  if (!cc) cc = curl_easy_setopt(s->h, CURLOPT_CONNECTTIMEOUT_MS, connect);
  if (!cc) cc = curl_easy_setopt(s->h, CURLOPT_ERRORBUFFER, s->curl_err);
  if (!cc) cc = curl_easy_setopt(s->h, CURLOPT_WRITEFUNCTION, on_body);
  if (!cc) cc = curl_easy_setopt(s->h, CURLOPT_WRITEDATA, s);
  if (!cc) cc = curl_easy_setopt(s->h, CURLOPT_HEADERFUNCTION, on_header);
  if (!cc) cc = curl_easy_setopt(s->h, CURLOPT_HEADERDATA, s);
  if (!cc) cc = curl_easy_setopt(s->h, CURLOPT_PRIVATE, s);
  if (!cc && p->conf.refuse_resend) {
    cc = curl_easy_setopt(s->h, CURLOPT_PREREQFUNCTION, on_prereq);
    if (!cc) cc = curl_easy_setopt(s->h, CURLOPT_PREREQDATA, s);
  }
  if (cc) {
    s->r = NULL;
    return r->status = mm_err_set(&r->err, MM_EPERM, "%s: libcurl refused an option: %s",
                                  r->op, curl_easy_strerror(cc));
  }
  if (curl_multi_add_handle(p->multi, s->h) != CURLM_OK) {
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
int mm_awsreq_run(mm_awsreq_pool_t *p, mm_awsreq_t *const *reqs, size_t n, int64_t deadline_ms,
                  mm_awsreq_done_fn done, void *ud) {
  if (n == 0) return 0;
  mm_awsreq_t **queue = malloc(n * sizeof *queue);
  if (!queue) {
    for (size_t i = 0; i < n; i++)
      reqs[i]->status = mm_err_set(&reqs[i]->err, MM_ENOMEM, "out of memory sending requests");
    return MM_ENOMEM;
  }
  size_t head = 0, count = 0;
  for (size_t i = 0; i < n; i++) {
    mm_awsreq_clear(reqs[i]);
    queue[count++] = reqs[i];
  }
  const int max = p->conf.max_inflight;
  int inflight = 0, rc = 0;
  while (count > 0 || inflight > 0) {
    /* Fill free slots with the queued requests that are due; one pass
     * over the queue (a request backing off goes to the back). */
    int64_t now = mm_mono_ms(), wake = 0;
    int k = 0;
    for (size_t pass = count; pass > 0; pass--) {
      while (k < max && p->slots[k].r) k++;
      if (k >= max) break;
      mm_awsreq_t *r = queue[head];
      head = (head + 1) % n;
      count--;
      if (r->not_before > now) {
        if (!wake || r->not_before < wake) wake = r->not_before;
        queue[(head + count++) % n] = r;
        continue;
      }
      if (start(p, &p->slots[k], r, deadline_ms) == 0) {
        inflight++;
      } else if (done && done(ud, r)) {
        mm_awsreq_clear(r); /* not started; the caller wants it sent again */
        queue[(head + count++) % n] = r;
      }
    }
    if (inflight == 0) {
      /* Only backing-off requests left: wait for the first one. */
      if (count > 0 && wake > now)
        mm_sleep_ms(wake - now < MM_AWSREQ_POLL_MS ? wake - now : MM_AWSREQ_POLL_MS);
      continue;
    }
    int running = 0;
    CURLMcode mc = curl_multi_perform(p->multi, &running);
    if (mc != CURLM_OK) {
      rc = MM_EIO;
      mm_log(MM_LOG_ERROR, NULL, "%s: curl_multi_perform: %s", p->conf.log_name,
             curl_multi_strerror(mc));
      break;
    }
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(p->multi, &left))) {
      if (m->msg != CURLMSG_DONE) continue;
      slot_t *s = NULL;
      curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
      CURLcode res = m->data.result;
      mm_awsreq_t *r = s->r;
      classify(p, s, res);
      curl_multi_remove_handle(p->multi, s->h);
      curl_slist_free_all(s->hdrs);
      s->hdrs = NULL;
      s->r = NULL;
      inflight--;
      if (done && done(ud, r)) {
        mm_awsreq_clear(r);
        queue[(head + count++) % n] = r;
      }
    }
    if (inflight > 0 && running > 0) {
      int wait = MM_AWSREQ_POLL_MS;
      if (count > 0 && wake > now && wake - now < wait) wait = (int)(wake - now);
      mc = curl_multi_poll(p->multi, NULL, 0, wait, NULL);
      if (mc != CURLM_OK) {
        rc = MM_EIO;
        mm_log(MM_LOG_ERROR, NULL, "%s: curl_multi_poll: %s", p->conf.log_name,
               curl_multi_strerror(mc));
        break;
      }
    }
  }
  if (rc) {
    /* The runner broke: fail what is still queued or running. */
    for (int k = 0; k < max; k++) {
      slot_t *s = &p->slots[k];
      if (!s->r) continue;
      curl_multi_remove_handle(p->multi, s->h);
      curl_slist_free_all(s->hdrs);
      s->hdrs = NULL;
      s->r->status = mm_err_set(&s->r->err, s->r->write ? MM_EUNKNOWN : MM_ERETRY,
                                "%s: request abandoned: the transfer loop failed", s->r->op);
      s->r = NULL;
    }
    for (size_t i = 0; i < count; i++) {
      mm_awsreq_t *r = queue[(head + i) % n];
      r->status = mm_err_set(&r->err, MM_ERETRY, "%s: not sent: the transfer loop failed", r->op);
    }
  }
  free(queue);
  return rc;
}

/*
 * rapi.c - the Lambda Runtime API client (see rapi.h; runtime-contract
 * section 1).
 *
 * One libcurl easy handle per client. It is curl_easy_reset before every
 * request and every option is set again, so no option of one request leaks
 * into the next; the reset keeps the connection cache, so the connection to
 * the API stays alive between requests (keep-alive).
 *
 * Timeouts: connects are bounded (MM_RAPI_CONNECT_TIMEOUT_MS). No request
 * has a total timeout. For GET next that is required: Lambda freezes the
 * environment between invocations and the answer may come minutes later
 * (the freeze outlasts any timer we could set). The posts follow
 * aws-lambda-cpp and have none either: the API answers them at once, and
 * if it does not, Lambda's own deadline ends the invocation anyway.
 *
 * Failures: a request that cannot connect is retried with exponential
 * backoff (MM_RAPI_CONNECT_ATTEMPTS, from MM_RAPI_CONNECT_BACKOFF_MS); the
 * API starts before the runtime, so a refused connect is a short race at
 * boot, not a state to wait out. Nothing that may have reached the server
 * is retried, except a GET next that got no answer at all (GET is safe to
 * repeat; a repeated POST would be a double post).
 */
#include "rapi.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "buf.h"
#include "retry.h"

/* Largest body kept from a POST's answer (only used in error messages). */
#define POST_ANSWER_MAX 4096
/* How much of a server's error answer goes into an error message. */
#define ANSWER_EXCERPT 300

/* The request being performed: where the body goes and what the headers
 * said. Reset before every attempt. */
typedef struct reply {
  mm_buf_t body;
  size_t cap;           /* body limit */
  int abort_over_cap;   /* 1: a longer body fails the request (next);
                           0: the rest is dropped (post answers) */
  int over_cap;         /* the body (or its Content-Length) exceeded cap */
  int nomem;
  char request_id[sizeof(((mm_invocation_t *)0)->request_id)];
  int request_id_too_long;
  char trace_id[sizeof(((mm_invocation_t *)0)->trace_id)];
  char function_arn[sizeof(((mm_invocation_t *)0)->function_arn)];
  char deadline[32];
} reply_t;

struct mm_rapi {
  CURL *curl;
  char base[320];       /* "http://host:port/2018-06-01" */
  reply_t reply;
  long status;          /* last HTTP status, 0 when none */
  char curl_err[CURL_ERROR_SIZE];
};

/* ------------------------------------------------------------------ */
/* libcurl callbacks                                                   */
/* ------------------------------------------------------------------ */

/* Stores up to cap bytes of the body. Over the cap a next request is
 * aborted (returning less than n makes curl fail with CURLE_WRITE_ERROR),
 * while a post's answer is truncated silently. */
static size_t on_body(char *p, size_t size, size_t nmemb, void *ud) {
  reply_t *rp = ud;
  size_t n = size * nmemb;
  size_t room = rp->body.len < rp->cap ? rp->cap - rp->body.len : 0;
  if (n > room) {
    rp->over_cap = 1;
    if (rp->abort_over_cap) return 0;
    n = room;
  }
  if (n && mm_buf_add(&rp->body, p, n)) {
    rp->nomem = 1;
    return 0;
  }
  return size * nmemb;
}

/* Copies value (n bytes) into dst (cap bytes) NUL-terminated; returns 0,
 * or -1 (dst left empty) when it does not fit. */
static int copy_value(char *dst, size_t cap, const char *v, size_t n) {
  if (n >= cap) {
    dst[0] = '\0';
    return -1;
  }
  memcpy(dst, v, n);
  dst[n] = '\0';
  return 0;
}

/* Whether header line name (n bytes) equals want, ignoring case. */
static int name_is(const char *name, size_t n, const char *want) {
  return strlen(want) == n && strncasecmp(name, want, n) == 0;
}

/* Called once per header line (not NUL-terminated, ends in CRLF). Copies
 * the invocation headers out of curl's buffer, which is only valid during
 * the call. A status line starts a new response (e.g. after a 100), so it
 * clears what an earlier one said. A Content-Length above an aborting cap
 * ends the transfer once the headers are read (returning less than n makes
 * curl fail with CURLE_WRITE_ERROR). */
static size_t on_header(char *line, size_t size, size_t nitems, void *ud) {
  reply_t *rp = ud;
  size_t n = size * nitems;
  if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
    rp->request_id[0] = rp->trace_id[0] = rp->function_arn[0] = '\0';
    rp->deadline[0] = '\0';
    rp->request_id_too_long = 0;
    return n;
  }
  const char *colon = memchr(line, ':', n);
  if (!colon) {
    /* The blank line that ends the headers: every header has been copied
     * (the request id too), so an announced oversized body stops here. */
    if (rp->over_cap && rp->abort_over_cap) return 0;
    return n;
  }
  size_t nlen = (size_t)(colon - line);
  const char *v = colon + 1, *end = line + n;
  while (v < end && (*v == ' ' || *v == '\t')) v++;
  while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' ||
                     end[-1] == '\t'))
    end--;
  size_t vlen = (size_t)(end - v);

  if (name_is(line, nlen, "Lambda-Runtime-Aws-Request-Id")) {
    if (copy_value(rp->request_id, sizeof rp->request_id, v, vlen))
      rp->request_id_too_long = 1;
  } else if (name_is(line, nlen, "Lambda-Runtime-Trace-Id")) {
    copy_value(rp->trace_id, sizeof rp->trace_id, v, vlen); /* too long: "" */
  } else if (name_is(line, nlen, "Lambda-Runtime-Invoked-Function-Arn")) {
    copy_value(rp->function_arn, sizeof rp->function_arn, v, vlen);
  } else if (name_is(line, nlen, "Lambda-Runtime-Deadline-Ms")) {
    copy_value(rp->deadline, sizeof rp->deadline, v, vlen);
  } else if (name_is(line, nlen, "Content-Length") && rp->abort_over_cap) {
    char num[32];
    if (copy_value(num, sizeof num, v, vlen) == 0) {
      char *e;
      errno = 0;
      unsigned long long cl = strtoull(num, &e, 10);
      if (e != num && *e == '\0' && (errno == ERANGE || cl > rp->cap))
        rp->over_cap = 1; /* fails the transfer after the last header */
    }
  }
  return n;
}

/* ------------------------------------------------------------------ */
/* Requests                                                            */
/* ------------------------------------------------------------------ */

/* Curl results after which a request may be sent again: it never reached
 * the server (resolve, connect, connect timeout: the only phase with a
 * timeout). For GET next also "sent nothing" and "got nothing": no event
 * left the server (typically a kept-alive connection it had closed), and a
 * GET is safe to repeat. A POST that may have arrived is never repeated: a
 * second post of the same response is an error of its own. */
static int retryable(CURLcode rc, int is_get) {
  switch (rc) {
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_CONNECT:
  case CURLE_OPERATION_TIMEDOUT:
    return 1;
  case CURLE_GOT_NOTHING:
  case CURLE_SEND_ERROR:
    return is_get;
  default:
    return 0;
  }
}

/* Sets every option of one request on the freshly reset handle. post NULL
 * means GET. */
static int set_options(mm_rapi_t *r, const char *url, const char *post,
                       size_t post_len, struct curl_slist *hdrs) {
  CURL *c = r->curl;
  CURLcode rc = CURLE_OK;
#define SET(opt, val) \
  if (rc == CURLE_OK) rc = curl_easy_setopt(c, opt, val)
  SET(CURLOPT_URL, url);
  SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  SET(CURLOPT_TCP_NODELAY, 1L);
  SET(CURLOPT_PROXY, "");              /* never via a proxy from the env */
  SET(CURLOPT_NOSIGNAL, 1L);           /* no SIGALRM/SIGPIPE from curl */
  SET(CURLOPT_CONNECTTIMEOUT_MS, (long)MM_RAPI_CONNECT_TIMEOUT_MS);
  SET(CURLOPT_TIMEOUT_MS, 0L);         /* no total timeout: file comment */
  SET(CURLOPT_FOLLOWLOCATION, 0L);
  SET(CURLOPT_USERAGENT, MM_RAPI_USER_AGENT);
  SET(CURLOPT_ERRORBUFFER, r->curl_err);
  SET(CURLOPT_WRITEFUNCTION, on_body);
  SET(CURLOPT_WRITEDATA, &r->reply);
  SET(CURLOPT_HEADERFUNCTION, on_header);
  SET(CURLOPT_HEADERDATA, &r->reply);
  if (post) {
    SET(CURLOPT_POST, 1L);
    SET(CURLOPT_POSTFIELDS, post);
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)post_len);
    SET(CURLOPT_HTTPHEADER, hdrs);
  } else {
    SET(CURLOPT_HTTPGET, 1L);
  }
#undef SET
  return rc == CURLE_OK ? 0 : -1;
}

/* Clears the reply before an attempt. */
static void reply_reset(reply_t *rp, size_t cap, int abort_over_cap) {
  mm_buf_reset(&rp->body);
  rp->cap = cap;
  rp->abort_over_cap = abort_over_cap;
  rp->over_cap = rp->nomem = 0;
  rp->request_id[0] = rp->trace_id[0] = rp->function_arn[0] = '\0';
  rp->deadline[0] = '\0';
  rp->request_id_too_long = 0;
}

/* Performs one request (GET when post is NULL), retrying what never reached
 * the server with exponential backoff. 0 when an HTTP answer arrived
 * (r->status holds it, whatever it is); MM_EIO when none did; MM_EINVAL
 * when the next body is over its cap; MM_ENOMEM. */
static int perform(mm_rapi_t *r, const char *what, const char *url,
                   const char *post, size_t post_len, struct curl_slist *hdrs,
                   size_t cap, mm_err_t *err) {
  long backoff = MM_RAPI_CONNECT_BACKOFF_MS;
  CURLcode rc = CURLE_OK;
  int attempt;
  for (attempt = 1;; attempt++) {
    curl_easy_reset(r->curl);
    reply_reset(&r->reply, cap, post == NULL);
    r->status = 0;
    r->curl_err[0] = '\0';
    if (set_options(r, url, post, post_len, hdrs))
      return mm_err_set(err, MM_EIO, "%s: cannot set curl options", what);
    rc = curl_easy_perform(r->curl);
    if (rc == CURLE_OK) {
      curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &r->status);
      return 0;
    }
    if (r->reply.nomem)
      return mm_err_set(err, MM_ENOMEM, "%s: out of memory for the body",
                        what);
    if (r->reply.over_cap && post == NULL) {
      curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &r->status);
      return mm_err_set(err, MM_EINVAL,
                        "%s: event body larger than %u bytes", what,
                        MM_RAPI_MAX_BODY);
    }
    if (!retryable(rc, post == NULL) || attempt >= MM_RAPI_CONNECT_ATTEMPTS)
      break;
    mm_sleep_ms(backoff);
    backoff *= 2;
  }
  return mm_err_set(err, MM_EIO, "%s: %s%s%s (after %d attempt%s)", what,
                    curl_easy_strerror(rc), r->curl_err[0] ? ": " : "",
                    r->curl_err, attempt, attempt == 1 ? "" : "s");
}

/* Appends up to ANSWER_EXCERPT bytes of the server's answer to a message
 * buffer, printable ASCII only. */
static void answer_excerpt(const mm_buf_t *body, char *out, size_t cap) {
  size_t n = 0;
  for (size_t i = 0; i < body->len && i < ANSWER_EXCERPT && n + 1 < cap; i++) {
    unsigned char ch = (unsigned char)body->data[i];
    out[n++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
  }
  out[n] = '\0';
}

/* Turns a non-2xx status into the documented code: 413 MM_ELIMIT, 5xx
 * MM_EIO (the runtime should exit), anything else MM_EINVAL. */
static int status_error(mm_rapi_t *r, const char *what, mm_err_t *err) {
  char ex[ANSWER_EXCERPT + 1];
  answer_excerpt(&r->reply.body, ex, sizeof ex);
  int code = r->status == 413   ? MM_ELIMIT
             : r->status >= 500 ? MM_EIO
                                : MM_EINVAL;
  return mm_err_set(err, code, "%s: HTTP %ld%s%s", what, r->status,
                    ex[0] ? ": " : "", ex);
}

/* ------------------------------------------------------------------ */
/* Public API                                                          */
/* ------------------------------------------------------------------ */

int mm_rapi_create(mm_rapi_t **out, const char *host_port, mm_err_t *err) {
  *out = NULL;
  if (!host_port || !*host_port)
    return mm_err_set(err, MM_EINVAL, "AWS_LAMBDA_RUNTIME_API is not set");
  size_t n = strlen(host_port);
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)host_port[i];
    if (ch <= 0x20 || ch >= 0x7f || ch == '/')
      return mm_err_set(err, MM_EINVAL,
                        "AWS_LAMBDA_RUNTIME_API is not host:port: \"%.100s\"",
                        host_port);
  }
  if (n > 200)
    return mm_err_set(err, MM_EINVAL, "AWS_LAMBDA_RUNTIME_API is too long");
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    return mm_err_set(err, MM_EIO, "curl_global_init failed");
  mm_rapi_t *r = calloc(1, sizeof *r);
  if (!r) {
    curl_global_cleanup();
    return mm_err_set(err, MM_ENOMEM, "out of memory");
  }
  snprintf(r->base, sizeof r->base, "http://%s/2018-06-01", host_port);
  r->curl = curl_easy_init();
  if (!r->curl) {
    mm_rapi_destroy(r);
    return mm_err_set(err, MM_EIO, "curl_easy_init failed");
  }
  *out = r;
  return 0;
}

void mm_rapi_destroy(mm_rapi_t *r) {
  if (!r) return;
  if (r->curl) curl_easy_cleanup(r->curl);
  mm_buf_free(&r->reply.body);
  free(r);
  curl_global_cleanup(); /* balances the init in mm_rapi_create */
}

int mm_rapi_last_status(const mm_rapi_t *r) { return r ? (int)r->status : 0; }

void mm_invocation_free(mm_invocation_t *inv) {
  if (!inv) return;
  free(inv->body);
  inv->body = NULL;
  inv->body_len = 0;
}

/* Parses Lambda-Runtime-Deadline-Ms (epoch ms, decimal); 0 when absent or
 * not a positive number. */
static int64_t parse_deadline(const char *s) {
  if (!*s) return 0;
  char *e;
  errno = 0;
  long long v = strtoll(s, &e, 10);
  if (e == s || *e != '\0' || errno == ERANGE || v <= 0) return 0;
  return (int64_t)v;
}

int mm_rapi_next(mm_rapi_t *r, mm_invocation_t *inv, mm_err_t *err) {
  static const char *what = "GET /runtime/invocation/next";
  memset(inv, 0, sizeof *inv);
  char url[sizeof r->base + 64];
  snprintf(url, sizeof url, "%s/runtime/invocation/next", r->base);
  int rc = perform(r, what, url, NULL, 0, NULL, MM_RAPI_MAX_BODY, err);
  reply_t *rp = &r->reply;
  /* The id is handed out even on failure: an oversized event can still be
   * answered. */
  memcpy(inv->request_id, rp->request_id, sizeof inv->request_id);
  if (rc) goto done;
  if (r->status != 200) {
    rc = status_error(r, what, err);
    goto done;
  }
  if (rp->request_id_too_long) {
    rc = mm_err_set(err, MM_EINVAL,
                    "%s: Lambda-Runtime-Aws-Request-Id longer than %zu bytes",
                    what, sizeof inv->request_id - 1);
    goto done;
  }
  if (!rp->request_id[0]) {
    rc = mm_err_set(err, MM_EINVAL,
                    "%s: no Lambda-Runtime-Aws-Request-Id header", what);
    goto done;
  }
  memcpy(inv->trace_id, rp->trace_id, sizeof inv->trace_id);
  memcpy(inv->function_arn, rp->function_arn, sizeof inv->function_arn);
  inv->deadline_ms = parse_deadline(rp->deadline);
  inv->body = mm_buf_take(&rp->body, &inv->body_len); /* "" when empty */
  if (!inv->body) rc = mm_err_set(err, MM_ENOMEM, "%s: out of memory", what);
done:
  if (rc) {
    inv->trace_id[0] = inv->function_arn[0] = '\0';
    inv->deadline_ms = 0;
    inv->body = NULL;
    inv->body_len = 0;
  }
  mm_buf_reset(&rp->body);
  return rc;
}

/* POSTs body to base + path with Content-Type application/json, an explicit
 * Content-Length and no "Expect: 100-continue" (the API answers at once; a
 * 100 round trip would only add latency). error_type, when not NULL, goes
 * into Lambda-Runtime-Function-Error-Type. 202 (any 2xx) is 0. */
static int post(mm_rapi_t *r, const char *path, const char *body, size_t len,
                const char *error_type, mm_err_t *err) {
  char what[sizeof r->base + 300], url[sizeof r->base + 600];
  snprintf(what, sizeof what, "POST %s", path);
  snprintf(url, sizeof url, "%s%s", r->base, path);
  struct curl_slist *hdrs = NULL, *h;
  int rc = MM_ENOMEM;
  char type_hdr[200];
  const char *lines[4] = {"Content-Type: application/json", "Expect:",
                          "Transfer-Encoding:", NULL};
  if (error_type) {
    snprintf(type_hdr, sizeof type_hdr, "Lambda-Runtime-Function-Error-Type: %s",
             error_type);
    lines[3] = type_hdr;
  }
  for (int i = 0; i < 4; i++) {
    if (!lines[i]) continue;
    h = curl_slist_append(hdrs, lines[i]);
    if (!h) {
      rc = mm_err_set(err, MM_ENOMEM, "%s: out of memory", what);
      goto done;
    }
    hdrs = h;
  }
  rc = perform(r, what, url, body ? body : "", body ? len : 0, hdrs,
               POST_ANSWER_MAX, err);
  if (rc) goto done;
  if (r->status < 200 || r->status > 299) rc = status_error(r, what, err);
done:
  curl_slist_free_all(hdrs);
  mm_buf_reset(&r->reply.body);
  return rc;
}

/* Builds the path of an invocation's endpoint with the request id escaped
 * (it comes from a header; it must not be able to change the path). */
static int invocation_path(mm_rapi_t *r, const char *request_id,
                           const char *leaf, char *out, size_t cap,
                           mm_err_t *err) {
  if (!request_id || !*request_id)
    return mm_err_set(err, MM_EINVAL, "POST %s: empty request id", leaf);
  char *esc = curl_easy_escape(r->curl, request_id, 0);
  if (!esc) return mm_err_set(err, MM_ENOMEM, "out of memory");
  int n = snprintf(out, cap, "/runtime/invocation/%s/%s", esc, leaf);
  curl_free(esc);
  if (n < 0 || (size_t)n >= cap)
    return mm_err_set(err, MM_EINVAL, "POST %s: request id too long", leaf);
  return 0;
}

int mm_rapi_respond(mm_rapi_t *r, const char *request_id, const char *body,
                    size_t len, mm_err_t *err) {
  char path[512];
  int rc = invocation_path(r, request_id, "response", path, sizeof path, err);
  if (rc) return rc;
  return post(r, path, body, len, NULL, err);
}

/* The error type as a header value: printable ASCII without spaces, at most
 * 128 bytes; NULL or empty becomes "Runtime.Unknown". A header must never
 * carry CR/LF from a caller's string. */
static void clean_type(const char *type, char *out, size_t cap) {
  size_t n = 0;
  if (type)
    for (; type[n] && n + 1 < cap && n < 128; n++) {
      unsigned char ch = (unsigned char)type[n];
      out[n] = (ch > 0x20 && ch < 0x7f) ? (char)ch : '_';
    }
  out[n] = '\0';
  if (!n) snprintf(out, cap, "Runtime.Unknown");
}

/* Posts {"errorMessage":msg,"errorType":type,"stackTrace":[]} to path. */
static int post_error(mm_rapi_t *r, const char *path, const char *type,
                      const char *msg, mm_err_t *err) {
  char t[160];
  clean_type(type, t, sizeof t);
  if (!msg) msg = "";
  mm_buf_t b = MM_BUF_INIT;
  mm_buf_adds(&b, "{\"errorMessage\":");
  mm_buf_json_str(&b, msg, strlen(msg));
  mm_buf_adds(&b, ",\"errorType\":");
  mm_buf_json_str(&b, t, strlen(t));
  mm_buf_adds(&b, ",\"stackTrace\":[]}");
  int rc;
  if (mm_buf_failed(&b))
    rc = mm_err_set(err, MM_ENOMEM, "POST %s: out of memory", path);
  else
    rc = post(r, path, b.data, b.len, t, err);
  mm_buf_free(&b);
  return rc;
}

int mm_rapi_error(mm_rapi_t *r, const char *request_id, const char *type,
                  const char *msg, mm_err_t *err) {
  char path[512];
  int rc = invocation_path(r, request_id, "error", path, sizeof path, err);
  if (rc) return rc;
  return post_error(r, path, type, msg, err);
}

int mm_rapi_init_error(mm_rapi_t *r, const char *type, const char *msg,
                       mm_err_t *err) {
  return post_error(r, "/runtime/init/error", type, msg, err);
}

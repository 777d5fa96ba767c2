/*
 * dlq.c - the dead-letter queue: message bodies, the file sink, and an SQS
 * client (JSON 1.0 protocol over the shared request runner of awsreq.h,
 * SigV4 by libcurl) sending, receiving and deleting parked messages (see
 * dlq.h).
 */
#include "dlq.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "aws.h"
#include "buf.h"
#include "awsreq.h"
#include "log.h"
#include "retry.h"

/* Requests in flight at once when the options do not say. */
#define DEF_INFLIGHT 32
/* Largest in-flight limit accepted. */
#define MAX_INFLIGHT 256
/* Longest FIFO group / deduplication id (SQS's limit). */
#define FIFO_ID_MAX 128
/* Longest queue URL accepted. */
#define QUEUE_URL_MAX 2048
/* User-Agent of every request. */
#define USER_AGENT "murmur-ddb"

enum { SINK_FILE = 1, SINK_SQS };

/* One SQS request: the runner's view (op, status, error) and the
 * buffers it points at. */
typedef struct req {
  mm_awsreq_t a;         /* a.body = &body, a.resp = &resp (req_init) */
  mm_buf_t body;         /* request JSON */
  mm_buf_t resp;
  size_t first, count;   /* the messages it carries (a slice of a list) */
} req_t;

struct mm_dlq {
  int kind;
  char *target;             /* owned: queue URL or file path */
  /* file */
  int fd;
  /* sqs */
  mm_aws_t aws;
  const char *queue_name;   /* points into target */
  int fifo;
  char *on;                 /* owned: "queue <name>", named in messages */
  mm_awsreq_pool_t *pool;   /* borrows aws */
  int64_t timeout_ms;
  mm_retry_t retry;
  mm_dlq_stats_t stats;
};

/* ------------------------------------------------------------------ */
/* Text helpers                                                        */
/* ------------------------------------------------------------------ */

static char *dup_n(const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (p) {
    memcpy(p, s, n);
    p[n] = '\0';
  }
  return p;
}

/* Code points an SQS message may hold: #x9 #xA #xD #x20-#xD7FF
 * #xE000-#xFFFD #x10000-#x10FFFF. */
static int sqs_char_ok(uint32_t c) {
  return c == 0x9 || c == 0xA || c == 0xD || (c >= 0x20 && c <= 0xD7FF) ||
         (c >= 0xE000 && c <= 0xFFFD) || (c >= 0x10000 && c <= 0x10FFFF);
}

/*
 * Appends JSON text that lies inside a string literal, writing U+FFFE and
 * U+FFFF (valid UTF-8 and valid JSON, refused by SQS) as escapes. Both
 * start with byte EF, a lead byte, so a byte match cannot hit the middle of
 * another character.
 */
static void add_sqs_safe(mm_buf_t *b, const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  size_t run = 0;
  for (size_t i = 0; i + 2 < n; i++) {
    if (p[i] == 0xEF && p[i + 1] == 0xBF && (p[i + 2] == 0xBE || p[i + 2] == 0xBF)) {
      mm_buf_add(b, s + run, i - run);
      mm_buf_adds(b, p[i + 2] == 0xBE ? "\\ufffe" : "\\uffff");
      i += 2;
      run = i + 1;
    }
  }
  mm_buf_add(b, s + run, n - run);
}

/* s[0..n) as a JSON string literal that is also valid in an SQS body. */
static void put_str(mm_buf_t *b, const char *s, size_t n) {
  mm_buf_t t = MM_BUF_INIT;
  if (mm_buf_json_str(&t, s, n)) {
    b->failed = 1;
  } else {
    add_sqs_safe(b, t.data, t.len);
  }
  mm_buf_free(&t);
}

/* A NULL-or-empty string as null, else as a string literal. */
static void put_opt(mm_buf_t *b, const char *s) {
  if (s && *s) put_str(b, s, strlen(s));
  else mm_buf_adds(b, "null");
}

/* Copies s[0..n) into out as text SQS accepts in an attribute value:
 * malformed UTF-8 and refused code points become U+FFFD. */
static void sanitize_text(mm_buf_t *out, const char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint32_t cp = 0;
    size_t l = mm_utf8_next(s + i, n - i, &cp);
    if (l && sqs_char_ok(cp)) {
      mm_buf_add(out, s + i, l);
      i += l;
    } else {
      mm_buf_add(out, "\xEF\xBF\xBD", 3);
      i += l ? l : 1;
    }
  }
  if (!out->data) mm_buf_adds(out, "");
}

/* A FIFO group or deduplication id: printable ASCII (33-126), others as
 * '_', at most FIFO_ID_MAX characters. */
static void fifo_id(char *out, const char *s) {
  size_t j = 0;
  for (; s && s[j] && j < FIFO_ID_MAX; j++) {
    unsigned char c = (unsigned char)s[j];
    out[j] = c >= 33 && c <= 126 ? (char)c : '_';
  }
  out[j] = '\0';
}


/* The length of the error's leading "file:LINE:" location ("decode.lua:7"),
 * 0 when it does not start with one. */
static size_t error_location(const char *e) {
  size_t i = 0;
  while (e[i] && e[i] != ':' && e[i] != ' ' && e[i] != '\n' && e[i] != '\t' && i < 256) i++;
  if (i == 0 || e[i] != ':') return 0;
  size_t j = i + 1;
  while (e[j] >= '0' && e[j] <= '9' && j - i < 12) j++;
  if (j == i + 1 || e[j] != ':') return 0;
  return j;
}

/* ------------------------------------------------------------------ */
/* Message bodies                                                      */
/* ------------------------------------------------------------------ */

int mm_dlq_record_json(mm_buf_t *b, const mm_json_doc_t *doc, uint32_t node) {
  mm_json_emit(b, doc, node, add_sqs_safe);
  return mm_buf_failed(b) ? MM_ENOMEM : 0;
}

/* The record's compact text: parsed and re-emitted, or, when it is not
 * JSON, a string literal of it; "null" when there is none. */
static void compact_record(mm_buf_t *out, const mm_dlq_msg_t *m) {
  if (!m->record_json || !m->record_len) {
    mm_buf_adds(out, "null");
    return;
  }
  mm_json_doc_t doc;
  mm_err_t e;
  memset(&doc, 0, sizeof doc);
  if (m->record_len < MM_JSON_MAX_INPUT &&
      mm_json_parse(&doc, m->record_json, m->record_len, 0, &e) == 0) {
    mm_json_emit(out, &doc, 0, add_sqs_safe);
  } else {
    put_str(out, m->record_json, m->record_len);
  }
  mm_json_free(&doc);
}

/* Names and values of the attributes a message carries. */
static void attrs_of(const mm_dlq_msg_t *m, const char *names[4], const char *vals[4]) {
  names[0] = "pipeline";
  vals[0] = m->pipeline;
  names[1] = "eventID";
  vals[1] = m->event_id;
  names[2] = "SequenceNumber";
  vals[2] = m->seq;
  names[3] = "eventName";
  vals[3] = m->event_name;
}

size_t mm_dlq_attr_bytes(const mm_dlq_msg_t *m) {
  const char *names[4], *vals[4];
  attrs_of(m, names, vals);
  size_t total = 0;
  for (int i = 0; i < 4; i++) {
    if (!vals[i] || !*vals[i]) continue;
    mm_buf_t t = MM_BUF_INIT;
    sanitize_text(&t, vals[i], strlen(vals[i]));
    total += strlen(names[i]) + 6 /* "String" */ + t.len;
    mm_buf_free(&t);
  }
  return total;
}

/*
 * Builds the body of dlq.h. The head (everything but the record) is
 * written first; then either the whole compact record, or, when that would
 * pass max_bytes, as much of its text as fits as "recordPrefix", measured
 * after escaping and cut between UTF-8 characters.
 */
int mm_dlq_body(mm_buf_t *b, const mm_dlq_msg_t *m, size_t max_bytes, int *truncated) {
  if (truncated) *truncated = 0;
  if (!max_bytes) {
    size_t a = mm_dlq_attr_bytes(m);
    max_bytes = a < MM_DLQ_MAX_MESSAGE ? MM_DLQ_MAX_MESSAGE - a : 1;
  }
  mm_buf_t rec = MM_BUF_INIT;
  compact_record(&rec, m);
  if (mm_buf_failed(&rec)) {
    mm_buf_free(&rec);
    return MM_ENOMEM;
  }
  size_t start = b->len;
  mm_buf_printf(b, "{\"version\":%d,\"pipeline\":", MM_DLQ_BODY_VERSION);
  put_opt(b, m->pipeline);
  mm_buf_adds(b, ",\"error\":");
  const char *e = m->error ? m->error : "";
  size_t elen = strlen(e);
  if (elen > MM_DLQ_MAX_ERROR) {
    elen = MM_DLQ_MAX_ERROR;
    while (elen > 0 && ((unsigned char)e[elen] & 0xC0) == 0x80) elen--; /* whole chars */
  }
  put_str(b, e, elen);
  mm_buf_adds(b, ",\"errorLocation\":");
  size_t loc = error_location(e);
  if (loc) put_str(b, e, loc);
  else mm_buf_adds(b, "null");
  mm_buf_adds(b, ",\"requestId\":");
  put_opt(b, m->request_id);
  mm_buf_adds(b, ",\"eventID\":");
  put_opt(b, m->event_id);
  mm_buf_adds(b, ",\"sequenceNumber\":");
  put_opt(b, m->seq);
  mm_buf_adds(b, ",\"eventName\":");
  put_opt(b, m->event_name);
  mm_buf_printf(b, ",\"parkedAt\":%lld,\"recordBytes\":%zu,\"truncated\":",
                (long long)mm_now_ms(), rec.len);
  static const char whole[] = "false,\"record\":";
  static const char cut[] = "true,\"recordPrefix\":\"";
  size_t head = b->len - start;
  if (head + (sizeof whole - 1) + rec.len + 1 <= max_bytes) {
    mm_buf_adds(b, whole);
    mm_buf_add(b, rec.data, rec.len);
    mm_buf_addc(b, '}');
  } else {
    if (truncated) *truncated = 1;
    mm_buf_adds(b, cut);
    size_t used = head + (sizeof cut - 1) + 2; /* closing quote and brace */
    const unsigned char *p = (const unsigned char *)rec.data;
    size_t i = 0, run = 0;
    while (i < rec.len) {
      uint32_t cp;
      size_t l = mm_utf8_next(rec.data + i, rec.len - i, &cp);
      if (!l) l = 1; /* cannot happen: the compact text is valid UTF-8 */
      size_t w = (p[i] == '"' || p[i] == '\\') ? 2 : l;
      if (used + w > max_bytes) break;
      if (w == 2) {
        mm_buf_add(b, rec.data + run, i - run);
        mm_buf_addc(b, '\\');
        mm_buf_addc(b, (char)p[i]);
        run = i + 1;
      }
      used += w;
      i += l;
    }
    mm_buf_add(b, rec.data + run, i - run);
    mm_buf_adds(b, "\"}");
  }
  mm_buf_free(&rec);
  return mm_buf_failed(b) ? MM_ENOMEM : 0;
}

/* ------------------------------------------------------------------ */
/* Opening                                                             */
/* ------------------------------------------------------------------ */

/* Error types SQS documents as transient. */
static int retryable_type(const char *t) {
  static const char *const names[] = {
      "RequestThrottled", "ThrottlingException", "Throttling", "KmsThrottled",
      "ServiceUnavailable", "InternalError", "InternalFailure", "RequestTimeout"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(t, names[i]) == 0) return 1;
  return 0;
}

/* The status of a non-2xx answer (the classes of dlq.h). */
static int http_status(const char *type, long code) {
  return retryable_type(type) || code >= 500 || code == 429 ? MM_ERETRY : MM_EPERM;
}

/* The region a queue URL's host names, copied into out (MM_AWS_NAME_MAX),
 * or 0 when it names none. */
static int region_of_host(const char *host, size_t n, char *out) {
  static const char *const suffixes[] = {".amazonaws.com", ".amazonaws.com.cn"};
  char h[256];
  if (n >= sizeof h) return 0;
  memcpy(h, host, n);
  h[n] = '\0';
  char *colon = strchr(h, ':');
  if (colon) *colon = '\0';
  n = strlen(h);
  if (strcasecmp(h, "queue.amazonaws.com") == 0) {
    snprintf(out, MM_AWS_NAME_MAX, "us-east-1");
    return 1;
  }
  for (size_t s = 0; s < sizeof suffixes / sizeof suffixes[0]; s++) {
    size_t sl = strlen(suffixes[s]);
    if (n <= sl || strcasecmp(h + n - sl, suffixes[s]) != 0) continue;
    h[n - sl] = '\0'; /* "sqs.eu-west-1" or "eu-west-1.queue" */
    const char *r = NULL;
    if (strncasecmp(h, "sqs.", 4) == 0) r = h + 4;
    else {
      char *q = strstr(h, ".queue");
      if (q && q[6] == '\0') {
        *q = '\0';
        r = h;
      }
    }
    if (!r || !*r || strchr(r, '.') || strlen(r) >= MM_AWS_NAME_MAX) return 0;
    for (const char *c = r; *c; c++)
      if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-')) return 0;
    memcpy(out, r, strlen(r) + 1); /* shorter than MM_AWS_NAME_MAX: checked */
    return 1;
  }
  return 0;
}

/*
 * Sets up an SQS sink for queue URL q: checks its form, reads the AWS
 * settings for "sqs", points the endpoint at the queue's host unless an
 * override variable is set, and signs for the queue's region when its host
 * names one.
 */
static int open_sqs(mm_dlq_t *d, const char *q, const mm_store_opts_t *opts, mm_err_t *err) {
  const char *rest = NULL;
  if (strncmp(q, "http://", 7) == 0) rest = q + 7;
  else if (strncmp(q, "https://", 8) == 0) rest = q + 8;
  size_t n = strlen(q);
  if (n > QUEUE_URL_MAX)
    return mm_err_set(err, MM_EINVAL, "dead-letter queue URL is longer than %d bytes",
                      QUEUE_URL_MAX);
  for (const char *p = q; *p; p++)
    if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == '"' || *p == '\\')
      return mm_err_set(err, MM_EINVAL,
                        "dead-letter queue URL '%.200s' contains white space, quotes or "
                        "control characters", q);
  const char *slash = rest ? strchr(rest, '/') : NULL;
  const char *name = strrchr(q, '/');
  if (!rest || !slash || slash == rest || memchr(rest, '@', (size_t)(slash - rest)) ||
      !name || !name[1] || name < slash + 1)
    return mm_err_set(err, MM_EINVAL,
                      "dead-letter queue URL '%.200s' is not an SQS queue URL "
                      "(sqs://https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)", q);
  if (!(d->target = dup_n(q, n)))
    return mm_err_set(err, MM_ENOMEM, "out of memory opening the dead-letter queue");
  d->queue_name = d->target + (name + 1 - q);
  size_t nl = strlen(d->queue_name);
  d->fifo = nl > 5 && strcmp(d->queue_name + nl - 5, ".fifo") == 0;

  /* A queue URL naming its region needs no AWS_REGION (dlq.h). */
  size_t hostlen = (size_t)(slash - rest);
  char region[MM_AWS_NAME_MAX];
  int has_region = region_of_host(rest, hostlen, region);
  int rc = mm_aws_init_hint(&d->aws, "sqs", has_region ? region : NULL, err);
  if (rc) return rc;
  if (!d->aws.endpoint_from_env) {
    size_t origin = (size_t)(slash - q); /* "https://host[:port]" */
    char *ep = malloc(origin + 2);
    if (!ep) return mm_err_set(err, MM_ENOMEM, "out of memory opening the dead-letter queue");
    memcpy(ep, q, origin);
    ep[origin] = '/';
    ep[origin + 1] = '\0';
    free(d->aws.endpoint);
    d->aws.endpoint = ep;
  }
  if (has_region) {
    memcpy(d->aws.region, region, strlen(region) + 1);
    snprintf(d->aws.sigv4, sizeof d->aws.sigv4, "aws:amz:%s:%s", d->aws.region,
             d->aws.service);
  }

  int inflight = opts && opts->max_inflight > 0 ? opts->max_inflight : DEF_INFLIGHT;
  if (inflight > MAX_INFLIGHT) inflight = MAX_INFLIGHT;
  d->timeout_ms = opts && opts->request_timeout_ms > 0 ? opts->request_timeout_ms
                                                        : MM_DLQ_DEF_TIMEOUT_MS;
  size_t onlen = strlen(d->queue_name) + 7;
  if (!(d->on = malloc(onlen)))
    return mm_err_set(err, MM_ENOMEM, "out of memory opening the dead-letter queue");
  snprintf(d->on, onlen, "queue %s", d->queue_name);
  const mm_awsreq_conf_t conf = {
      .log_name = "sqs",
      .target_prefix = MM_DLQ_TARGET_PREFIX,
      .user_agent = USER_AGENT,
      .unknown_subject = "it",
      .max_inflight = inflight,
      .timeout_ms = d->timeout_ms,
      .connect_timeout_ms = MM_DLQ_CONNECT_TIMEOUT_MS,
      .max_response = MM_DLQ_MAX_RESPONSE,
      .check_crc = 0,
      .refuse_resend = 0,
      .quiet_type = NULL,
      .http_status = http_status,
  };
  return mm_awsreq_open(&d->pool, &d->aws, &conf, "the dead-letter queue", err);
}

int mm_dlq_open(mm_dlq_t **out, const char *url, const mm_store_opts_t *opts, mm_err_t *err) {
  *out = NULL;
  if (!url || !*url)
    return mm_err_set(err, MM_EINVAL, "dead-letter queue URL is empty (sqs://QUEUE_URL or "
                                      "file://PATH)");
  mm_dlq_t *d = calloc(1, sizeof *d);
  if (!d) return mm_err_set(err, MM_ENOMEM, "out of memory opening the dead-letter queue");
  d->fd = -1;
  mm_retry_init(&d->retry, 3, 50, 5000, (uint64_t)mm_mono_ms() ^ (uint64_t)(uintptr_t)d);
  int rc = 0;
  if (strncmp(url, "sqs://", 6) == 0) {
    d->kind = SINK_SQS;
    const char *q = url + 6;
    if (strstr(q, "://")) {
      rc = open_sqs(d, q, opts, err);
    } else {
      size_t n = strlen(q) + 9;
      char *full = malloc(n);
      if (!full) {
        rc = mm_err_set(err, MM_ENOMEM, "out of memory opening the dead-letter queue");
        goto fail;
      }
      snprintf(full, n, "https://%s", q);
      rc = open_sqs(d, full, opts, err);
      free(full);
    }
    if (rc) goto fail;
  } else {
    const char *path = url;
    if (strncmp(url, "file://", 7) == 0) path = url + 7;
    else if (strstr(url, "://")) {
      rc = mm_err_set(err, MM_EINVAL,
                      "dead-letter queue URL '%.200s': unknown scheme (sqs://QUEUE_URL, "
                      "file://PATH or a path)", url);
      goto fail;
    }
    if (!*path) {
      rc = mm_err_set(err, MM_EINVAL, "dead-letter queue URL '%.200s' names no file", url);
      goto fail;
    }
    d->kind = SINK_FILE;
    if (!(d->target = dup_n(path, strlen(path)))) {
      rc = mm_err_set(err, MM_ENOMEM, "out of memory opening the dead-letter queue");
      goto fail;
    }
    d->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (d->fd < 0) {
      rc = mm_err_set(err, MM_EINVAL, "dead-letter file %.300s cannot be opened: %s", path,
                      strerror(errno));
      goto fail;
    }
  }
  *out = d;
  return 0;
fail:
  mm_dlq_destroy(d);
  return rc;
}

void mm_dlq_destroy(mm_dlq_t *d) {
  if (!d) return;
  mm_awsreq_close(d->pool);
  free(d->on);
  mm_aws_free(&d->aws);
  if (d->fd >= 0) close(d->fd);
  free(d->target);
  free(d);
}

int mm_dlq_is_sqs(const mm_dlq_t *d) { return d->kind == SINK_SQS; }
const char *mm_dlq_target(const mm_dlq_t *d) { return d->target; }
mm_dlq_stats_t mm_dlq_stats(const mm_dlq_t *d) {
  mm_dlq_stats_t s = d->stats;
  if (d->pool) s.requests = mm_awsreq_stats(d->pool).requests;
  return s;
}

/* ------------------------------------------------------------------ */
/* SQS transfers                                                       */
/* ------------------------------------------------------------------ */

/* Prepares r for operation op: empty buffers, the runner's view of them
 * and of the queue named in messages. */
static void req_init(mm_dlq_t *d, req_t *r, const char *op, int write) {
  memset(r, 0, sizeof *r);
  r->a.op = op;
  r->a.on = d->on;
  r->a.write = write;
  r->a.body = &r->body;
  r->a.resp = &r->resp;
}

static void req_free(req_t *r) {
  mm_buf_free(&r->body);
  mm_buf_free(&r->resp);
}

/* Runs reqs[0..n) concurrently through the runner, each to a status.
 * Returns 0, or MM_ENOMEM / MM_EIO when the runner itself failed (every
 * unfinished request then has a status). */
static int run(mm_dlq_t *d, mm_awsreq_t *const *reqs, size_t n, int64_t deadline_ms) {
  return mm_awsreq_run(d->pool, reqs, n, deadline_ms, NULL, NULL);
}

/* Starts the request body: {"QueueUrl":"<url>" */
static void body_open(mm_dlq_t *d, mm_buf_t *b) {
  mm_buf_adds(b, "{\"QueueUrl\":");
  mm_buf_json_str(b, d->target, strlen(d->target));
}

/* Reads the Successful / Failed lists of a *Batch answer: calls fn for
 * every entry whose Id is prefix + a decimal index, with status 0 or, for
 * a Failed entry, MM_EPERM (SenderFault true) / MM_ERETRY and a message.
 * Returns 0, or MM_EINVAL when the answer is not such an object. */
static int read_batch_answer(const req_t *r, char prefix,
                             void (*fn)(void *ud, size_t idx, int st, const char *msg),
                             void *ud) {
  mm_json_doc_t doc;
  mm_err_t jerr;
  memset(&doc, 0, sizeof doc);
  if (!r->resp.len || mm_json_parse(&doc, r->resp.data, r->resp.len, 16, &jerr) ||
      mm_json_type(&doc, 0) != MM_JSON_OBJ) {
    mm_json_free(&doc);
    return MM_EINVAL;
  }
  static const char *const lists[2] = {"Successful", "Failed"};
  for (int l = 0; l < 2; l++) {
    uint32_t a = mm_json_get(&doc, 0, lists[l], strlen(lists[l]));
    if (!a || mm_json_type(&doc, a) != MM_JSON_ARR) continue;
    uint32_t e = mm_json_first(&doc, a);
    for (uint32_t i = 0; i < mm_json_len(&doc, a); i++, e = mm_json_next(&doc, e)) {
      if (mm_json_type(&doc, e) != MM_JSON_OBJ) continue;
      uint32_t id = mm_json_get(&doc, e, "Id", 2);
      if (!id || mm_json_type(&doc, id) != MM_JSON_STR) continue;
      const char *raw = mm_json_raw(&doc, id);
      size_t len = mm_json_len(&doc, id);
      if (len < 2 || len > 20 || raw[0] != prefix) continue;
      size_t idx = 0;
      int ok = 1;
      for (size_t k = 1; k < len; k++) {
        if (raw[k] < '0' || raw[k] > '9') ok = 0;
        else idx = idx * 10 + (size_t)(raw[k] - '0');
      }
      if (!ok) continue;
      if (l == 0) {
        fn(ud, idx, 0, NULL);
        continue;
      }
      uint32_t sf = mm_json_get(&doc, e, "SenderFault", 11);
      int sender = sf && mm_json_type(&doc, sf) == MM_JSON_TRUE;
      char code[96] = "", msg[300] = "";
      uint32_t c = mm_json_get(&doc, e, "Code", 4);
      uint32_t m = mm_json_get(&doc, e, "Message", 7);
      if (c && mm_json_type(&doc, c) == MM_JSON_STR)
        mm_aws_printable(code, sizeof code, mm_json_raw(&doc, c), mm_json_len(&doc, c));
      if (m && mm_json_type(&doc, m) == MM_JSON_STR)
        mm_aws_printable(msg, sizeof msg, mm_json_raw(&doc, m), mm_json_len(&doc, m));
      char text[420];
      snprintf(text, sizeof text, "%s%s%s%s", code[0] ? code : "entry failed",
               msg[0] ? ": " : "", msg, sender ? " (sender fault)" : "");
      fn(ud, idx, sender ? MM_EPERM : MM_ERETRY, text);
    }
  }
  mm_json_free(&doc);
  return 0;
}

/* ------------------------------------------------------------------ */
/* Sending                                                             */
/* ------------------------------------------------------------------ */

/* One message, ready to go into a batch. */
typedef struct prep {
  mm_buf_t entry;   /* the entry's members after "Id" */
  size_t bytes;     /* its size as SQS counts it */
  int ready;
} prep_t;

/* Builds message m's entry members: body, attributes, FIFO ids. */
static int prepare(mm_dlq_t *d, const mm_dlq_msg_t *m, prep_t *p) {
  mm_buf_t body = MM_BUF_INIT;
  size_t abytes = mm_dlq_attr_bytes(m);
  size_t room = abytes < MM_DLQ_MAX_MESSAGE ? MM_DLQ_MAX_MESSAGE - abytes : 1;
  int trunc = 0;
  if (mm_dlq_body(&body, m, room, &trunc)) {
    mm_buf_free(&body);
    return MM_ENOMEM;
  }
  mm_buf_t *e = &p->entry;
  mm_buf_adds(e, ",\"MessageBody\":");
  mm_buf_json_str(e, body.data, body.len);
  const char *names[4], *vals[4];
  attrs_of(m, names, vals);
  int first = 1;
  for (int i = 0; i < 4; i++) {
    if (!vals[i] || !*vals[i]) continue;
    mm_buf_adds(e, first ? ",\"MessageAttributes\":{\"" : ",\"");
    first = 0;
    mm_buf_adds(e, names[i]);
    mm_buf_adds(e, "\":{\"DataType\":\"String\",\"StringValue\":");
    mm_buf_t t = MM_BUF_INIT;
    sanitize_text(&t, vals[i], strlen(vals[i]));
    mm_buf_json_str(e, t.data, t.len);
    if (t.failed) e->failed = 1;
    mm_buf_free(&t);
    mm_buf_addc(e, '}');
  }
  if (!first) mm_buf_addc(e, '}');
  if (d->fifo) {
    char group[FIFO_ID_MAX + 1], dedup[FIFO_ID_MAX + 1];
    fifo_id(group, m->pipeline && *m->pipeline ? m->pipeline : "murmur");
    if (m->event_id && *m->event_id) fifo_id(dedup, m->event_id);
    else snprintf(dedup, sizeof dedup, "body-%016llx",
                  (unsigned long long)mm_fnv1a(body.data ? body.data : "", body.len));
    if (!group[0]) snprintf(group, sizeof group, "murmur");
    mm_buf_adds(e, ",\"MessageGroupId\":");
    mm_buf_json_str(e, group, strlen(group));
    mm_buf_adds(e, ",\"MessageDeduplicationId\":");
    mm_buf_json_str(e, dedup, strlen(dedup));
  }
  p->bytes = body.len + abytes;
  mm_buf_free(&body);
  if (mm_buf_failed(e)) return MM_ENOMEM;
  p->ready = 1;
  return 0;
}

/* What one send round needs while reading answers. */
typedef struct round {
  mm_dlq_t *d;
  mm_dlq_msg_t *msgs;
  size_t n;
  const req_t *req;      /* the request being read */
  const size_t *todo;    /* message indices of this round */
} round_t;

/* Records one entry of a SendMessageBatch answer (read_batch_answer). */
static void on_sent(void *ud, size_t idx, int st, const char *msg) {
  round_t *rd = ud;
  /* The Id must name a message this request carried. */
  int mine = 0;
  for (size_t k = rd->req->first; k < rd->req->first + rd->req->count; k++)
    if (rd->todo[k] == idx) mine = 1;
  if (!mine || idx >= rd->n) return;
  mm_dlq_msg_t *m = &rd->msgs[idx];
  if (st == 0) {
    m->status = 0;
    mm_err_clear(&m->err);
  } else {
    m->status = mm_err_set(&m->err, st, "SendMessageBatch on queue %s: %s", rd->d->queue_name,
                           msg);
  }
}

/* The file sink: one line per message, written with one write(2). */
static int send_file(mm_dlq_t *d, mm_dlq_msg_t *msgs, size_t n, int64_t deadline_ms) {
  mm_buf_t line = MM_BUF_INIT;
  for (size_t i = 0; i < n; i++) {
    mm_dlq_msg_t *m = &msgs[i];
    mm_err_clear(&m->err);
    if (deadline_ms > 0 && mm_now_ms() >= deadline_ms) {
      m->status = mm_err_set(&m->err, MM_EDEADLINE,
                             "dead-letter file %s: deadline reached before the line was written",
                             d->target);
      d->stats.failed++;
      continue;
    }
    mm_buf_reset(&line); /* also clears an earlier failure */
    if (mm_dlq_body(&line, m, 0, NULL) || mm_buf_addc(&line, '\n')) {
      m->status = mm_err_set(&m->err, MM_ERETRY, "dead-letter file %s: out of memory", d->target);
      d->stats.failed++;
      continue;
    }
    off_t end = lseek(d->fd, 0, SEEK_END); /* where the line starts (O_APPEND) */
    size_t off = 0;
    int werr = 0;
    while (off < line.len) {
      ssize_t w = write(d->fd, line.data + off, line.len - off);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        werr = w < 0 ? errno : ENOSPC;
        break;
      }
      off += (size_t)w;
    }
    if (off < line.len) {
      /* A partial line would glue itself to the next message's line and
       * make that one unreadable for replay: cut it off again. */
      if (off > 0 && end >= 0 && ftruncate(d->fd, end) != 0)
        mm_log(MM_LOG_WARN, m->event_id,
               "dead-letter file %s: could not remove a partly written line: %s", d->target,
               strerror(errno));
      m->status = mm_err_set(&m->err, MM_EPERM, "dead-letter file %s: write failed: %s",
                             d->target, strerror(werr));
      d->stats.failed++;
    } else {
      m->status = 0;
      d->stats.parked++;
    }
  }
  mm_buf_free(&line);
  return 0;
}

/*
 * The SQS sink: rounds of SendMessageBatch. Each round packs the messages
 * still to send into batches (<= MM_DLQ_BATCH entries, <= MM_DLQ_MAX_MESSAGE
 * bytes), runs them together, and keeps for the next round only the
 * messages whose failure may pass, after a full-jitter wait that must end
 * before the deadline.
 */
int mm_dlq_send(mm_dlq_t *d, mm_dlq_msg_t *msgs, size_t n, int64_t deadline_ms,
                int max_attempts, int base_ms, int max_ms) {
  if (n == 0) return 0;
  if (d->kind == SINK_FILE) return send_file(d, msgs, n, deadline_ms);
  d->retry.max_attempts = max_attempts >= 1 ? max_attempts : 1;
  d->retry.base_ms = base_ms > 0 ? base_ms : 1;
  d->retry.max_ms = max_ms > 0 ? max_ms : 1;
  int rc = 0;
  prep_t *prep = calloc(n, sizeof *prep);
  size_t *todo = malloc(n * sizeof *todo);
  req_t *reqs = calloc(n, sizeof *reqs);
  mm_awsreq_t **rp = malloc(n * sizeof *rp);
  if (!prep || !todo || !reqs || !rp) {
    for (size_t i = 0; i < n; i++)
      msgs[i].status = mm_err_set(&msgs[i].err, MM_ERETRY,
                                  "dead-letter queue: out of memory sending %zu messages", n);
    d->stats.failed += n;
    rc = MM_ENOMEM;
    goto out;
  }
  size_t nt = 0;
  for (size_t i = 0; i < n; i++) {
    mm_err_clear(&msgs[i].err);
    msgs[i].status = 0;
    if (prepare(d, &msgs[i], &prep[i])) {
      msgs[i].status = mm_err_set(&msgs[i].err, MM_ERETRY,
                                  "dead-letter queue: out of memory building a message");
      continue;
    }
    todo[nt++] = i;
  }
  for (int attempt = 1; nt > 0; attempt++) {
    /* Pack this round's batches, in order. */
    size_t nreq = 0;
    for (size_t k = 0; k < nt;) {
      req_t *r = &reqs[nreq];
      req_init(d, r, "SendMessageBatch", 1);
      r->first = k;
      body_open(d, &r->body);
      mm_buf_adds(&r->body, ",\"Entries\":[");
      size_t bytes = 0;
      while (k < nt && r->count < MM_DLQ_BATCH &&
             (r->count == 0 || bytes + prep[todo[k]].bytes <= MM_DLQ_MAX_MESSAGE)) {
        size_t i = todo[k];
        mm_buf_printf(&r->body, "%s{\"Id\":\"m%zu\"", r->count ? "," : "", i);
        mm_buf_add(&r->body, prep[i].entry.data, prep[i].entry.len);
        mm_buf_addc(&r->body, '}');
        bytes += prep[i].bytes;
        r->count++;
        k++;
      }
      mm_buf_adds(&r->body, "]}");
      rp[nreq] = &r->a;
      nreq++;
    }
    int rr = run(d, rp, nreq, deadline_ms);
    if (rr) rc = rr;
    round_t rd = {.d = d, .msgs = msgs, .n = n, .todo = todo};
    for (size_t q = 0; q < nreq; q++) {
      req_t *r = &reqs[q];
      for (size_t k = r->first; k < r->first + r->count; k++) {
        mm_dlq_msg_t *m = &msgs[todo[k]];
        if (r->a.status) {
          m->status = r->a.status;
          m->err = r->a.err;
        } else {
          m->status = mm_err_set(&m->err, MM_EUNKNOWN,
                                 "SendMessageBatch on queue %s: the answer did not mention the "
                                 "message", d->queue_name);
        }
      }
      if (r->a.status == 0) {
        rd.req = r;
        if (read_batch_answer(r, 'm', on_sent, &rd))
          for (size_t k = r->first; k < r->first + r->count; k++)
            msgs[todo[k]].status =
                mm_err_set(&msgs[todo[k]].err, MM_EUNKNOWN,
                           "SendMessageBatch on queue %s: the answer is not a batch result",
                           d->queue_name);
      }
    }
    for (size_t q = 0; q < nreq; q++) req_free(&reqs[q]);
    size_t again = 0;
    for (size_t k = 0; k < nt; k++) {
      int st = msgs[todo[k]].status;
      if ((st == MM_ERETRY || st == MM_EUNKNOWN) && attempt < d->retry.max_attempts)
        todo[again++] = todo[k];
    }
    if (!again) break;
    int64_t wait = mm_retry_delay_ms(&d->retry, attempt);
    if (deadline_ms > 0 && mm_now_ms() + wait >= deadline_ms) {
      for (size_t k = 0; k < again; k++) {
        mm_dlq_msg_t *m = &msgs[todo[k]];
        char last[MM_ERR_MAX];
        snprintf(last, sizeof last, "%s", m->err.msg);
        m->status = mm_err_set(&m->err, MM_EDEADLINE,
                               "dead-letter queue: deadline reached before attempt %d; "
                               "last attempt: %s", attempt + 1, last);
      }
      break;
    }
    d->stats.retries += again;
    mm_sleep_ms(wait);
    nt = again;
  }
  for (size_t i = 0; i < n; i++) {
    if (msgs[i].status) {
      d->stats.failed++;
      mm_log(MM_LOG_DEBUG, msgs[i].event_id, "dead-letter send failed: %s", msgs[i].err.msg);
    } else {
      d->stats.parked++;
    }
  }
out:
  for (size_t i = 0; prep && i < n; i++) mm_buf_free(&prep[i].entry);
  free(prep);
  free(todo);
  free(reqs);
  free(rp);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Receiving and deleting (replay)                                     */
/* ------------------------------------------------------------------ */

/* Runs one request with up to max_attempts attempts on transient
 * failures. Returns its final status. */
static int call_retry(mm_dlq_t *d, req_t *r, int max_attempts) {
  for (int attempt = 1;; attempt++) {
    mm_awsreq_t *one[1] = {&r->a};
    int rc = run(d, one, 1, 0);
    if (rc && !r->a.status) r->a.status = rc;
    if (r->a.status == 0) return 0;
    if ((r->a.status != MM_ERETRY && r->a.status != MM_EUNKNOWN) || attempt >= max_attempts)
      return r->a.status;
    mm_sleep_ms(mm_retry_delay_ms(&d->retry, attempt));
  }
}

void mm_dlq_parked_free(mm_dlq_parked_t *m) {
  if (!m) return;
  free(m->body);
  free(m->receipt);
  free(m->message_id);
  memset(m, 0, sizeof *m);
}

/* A string member of object obj, malloc'd, or NULL. */
static char *member_str(const mm_json_doc_t *doc, uint32_t obj, const char *key, size_t *len) {
  uint32_t v = mm_json_get(doc, obj, key, strlen(key));
  if (!v || mm_json_type(doc, v) != MM_JSON_STR) return NULL;
  return mm_json_strdup(doc, v, len);
}

int mm_dlq_receive(mm_dlq_t *d, size_t max, int wait_s, int visibility_s, int max_attempts,
                   mm_dlq_parked_t *out, size_t *n, mm_err_t *err) {
  *n = 0;
  if (d->kind != SINK_SQS)
    return mm_err_set(err, MM_EINVAL, "%s is a file, not a queue", d->target);
  if (max < 1) max = 1;
  if (max > MM_DLQ_BATCH) max = MM_DLQ_BATCH;
  if (wait_s < 0) wait_s = 0;
  if (wait_s > 20) wait_s = 20;
  if (visibility_s < 0) visibility_s = 0;
  req_t r;
  req_init(d, &r, "ReceiveMessage", 0);
  r.a.timeout_ms = (int64_t)wait_s * 1000 + d->timeout_ms;
  body_open(d, &r.body);
  mm_buf_printf(&r.body,
                ",\"MaxNumberOfMessages\":%zu,\"WaitTimeSeconds\":%d,\"VisibilityTimeout\":%d,"
                "\"MessageAttributeNames\":[\"All\"]}",
                max, wait_s, visibility_s);
  int rc = call_retry(d, &r, max_attempts);
  if (rc) {
    mm_err_set(err, rc, "%s", r.a.err.msg);
    goto out;
  }
  mm_json_doc_t doc;
  mm_err_t jerr;
  memset(&doc, 0, sizeof doc);
  if (!r.resp.len || mm_json_parse(&doc, r.resp.data, r.resp.len, 32, &jerr) ||
      mm_json_type(&doc, 0) != MM_JSON_OBJ) {
    rc = mm_err_set(err, MM_EPERM, "ReceiveMessage on queue %s: the answer is not JSON",
                    d->queue_name);
    mm_json_free(&doc);
    goto out;
  }
  uint32_t a = mm_json_get(&doc, 0, "Messages", 8);
  if (a && mm_json_type(&doc, a) == MM_JSON_ARR) {
    uint32_t e = mm_json_first(&doc, a);
    for (uint32_t i = 0; i < mm_json_len(&doc, a) && *n < max; i++, e = mm_json_next(&doc, e)) {
      if (mm_json_type(&doc, e) != MM_JSON_OBJ) continue;
      mm_dlq_parked_t *p = &out[*n];
      memset(p, 0, sizeof *p);
      p->body = member_str(&doc, e, "Body", &p->len);
      p->receipt = member_str(&doc, e, "ReceiptHandle", NULL);
      p->message_id = member_str(&doc, e, "MessageId", NULL);
      if (!p->body || !p->receipt) {
        /* Without a body or receipt it can neither be replayed nor
         * deleted; it becomes visible again after the timeout. */
        mm_log(MM_LOG_WARN, NULL,
               "ReceiveMessage on queue %s: message %s has no %s: left in the queue",
               d->queue_name, p->message_id ? p->message_id : "?",
               !p->body ? "Body" : "ReceiptHandle");
        mm_dlq_parked_free(p);
        continue;
      }
      (*n)++;
    }
  }
  mm_json_free(&doc);
out:
  req_free(&r);
  return rc;
}

/* Records one entry of a DeleteMessageBatch answer. */
typedef struct del_round {
  int *status;
  size_t first, count;
  mm_err_t *err;
  const char *queue;
} del_round_t;

static void on_deleted(void *ud, size_t idx, int st, const char *msg) {
  del_round_t *dr = ud;
  if (idx < dr->first || idx >= dr->first + dr->count) return;
  dr->status[idx] = st;
  if (st && dr->err && !dr->err->code)
    mm_err_set(dr->err, st, "DeleteMessageBatch on queue %s: %s", dr->queue, msg);
}

/* Deletes by MM_DLQ_BATCH, one batch at a time, re-sending a batch's
 * transiently failed entries (deletion is idempotent). */
int mm_dlq_delete(mm_dlq_t *d, const mm_dlq_parked_t *msgs, size_t n, int max_attempts,
                  int *status, mm_err_t *err) {
  if (d->kind != SINK_SQS)
    return mm_err_set(err, MM_EINVAL, "%s is a file, not a queue", d->target);
  int first_rc = 0;
  mm_err_clear(err);
  for (size_t i = 0; i < n; i++) status[i] = MM_EUNKNOWN;
  for (size_t b = 0; b < n; b += MM_DLQ_BATCH) {
    size_t cnt = n - b < MM_DLQ_BATCH ? n - b : MM_DLQ_BATCH;
    for (int attempt = 1; attempt <= (max_attempts >= 1 ? max_attempts : 1); attempt++) {
      req_t r;
      req_init(d, &r, "DeleteMessageBatch", 0);
      body_open(d, &r.body);
      mm_buf_adds(&r.body, ",\"Entries\":[");
      int any = 0;
      for (size_t i = b; i < b + cnt; i++) {
        if (status[i] == 0 || status[i] == MM_EPERM) continue;
        mm_buf_printf(&r.body, "%s{\"Id\":\"d%zu\",\"ReceiptHandle\":", any ? "," : "", i);
        mm_buf_json_str(&r.body, msgs[i].receipt, strlen(msgs[i].receipt));
        mm_buf_addc(&r.body, '}');
        status[i] = MM_EUNKNOWN; /* until the answer names it */
        any = 1;
      }
      mm_buf_adds(&r.body, "]}");
      if (!any) {
        req_free(&r);
        break;
      }
      mm_awsreq_t *one[1] = {&r.a};
      run(d, one, 1, 0);
      if (r.a.status) {
        for (size_t i = b; i < b + cnt; i++)
          if (status[i] != 0 && status[i] != MM_EPERM) status[i] = r.a.status;
        if (!err->code) mm_err_set(err, r.a.status, "%s", r.a.err.msg);
      } else {
        del_round_t dr = {status, b, cnt, err, d->queue_name};
        if (read_batch_answer(&r, 'd', on_deleted, &dr) && !err->code)
          mm_err_set(err, MM_EUNKNOWN, "DeleteMessageBatch on queue %s: the answer is not a "
                                       "batch result", d->queue_name);
      }
      req_free(&r);
      int retry = 0;
      for (size_t i = b; i < b + cnt; i++)
        if (status[i] == MM_ERETRY || status[i] == MM_EUNKNOWN) retry = 1;
      if (!retry || attempt >= max_attempts) break;
      mm_sleep_ms(mm_retry_delay_ms(&d->retry, attempt));
    }
  }
  for (size_t i = 0; i < n; i++)
    if (status[i] && !first_rc) first_rc = status[i];
  if (first_rc && !err->code) mm_err_set(err, first_rc, "DeleteMessageBatch failed");
  if (!first_rc) mm_err_clear(err);
  return first_rc;
}

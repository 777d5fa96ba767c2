/*
 * check_dlq.c - the dead-letter queue (runtime/dlq.c) and murmur-ddb replay
 * (runtime/replay.c).
 *
 * main() starts tests/servers-sqs/sqs.mjs (fauxqs, an SQS-compatible server
 * speaking the JSON 1.0 protocol, installed by scripts/test with `npm ci`)
 * on 127.0.0.1 before any test runs and stops it after the last. The
 * server checks every request's SigV4 signature with the AWS SDK's signer,
 * so every test that reaches it also proves the signing. When Node or the
 * packages are missing every server test fails with a message saying to
 * run scripts/test: the suite never passes without its server.
 *
 * Queues are created and inspected independently of the code under test:
 * CreateQueue through libcurl's own SigV4 here, and the server's
 * /_mm/messages route, which lists what the queue holds without consuming
 * it. Expected store values are computed here from the records the tests
 * generate.
 */
#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "buf.h"
#include "dlq.h"
#include "event.h"
#include "json.h"
#include "replay.h"
#include "retry.h"
#include "store.h"
#include "testutil.h"

#define SERVERS MM_TEST_DIR "/servers-sqs"
#define KEY_ID "AKIDMURMURDLQ"
#define SECRET "dlqSecret/abc+DEF0123456789"
#define TOKEN_KEY_ID "ASIAMURMURDLQ"
#define TOKEN_SECRET "tokenSecret/dlq"
#define TOKEN "IQoJb3JpZ2luX2VjEDLQ//////////wEaCXVzLWVhc3QtMSJGMEQCIH+test=="

/* ------------------------------------------------------------------ */
/* The server                                                          */
/* ------------------------------------------------------------------ */

static pid_t g_pid = -1;
static int g_port, g_in_fd = -1;
static char g_setup_err[2048];

/* Starts `node sqs.mjs CREDS` and waits (bounded) for its "PORT n" line. */
static int start_server(void) {
  int out[2], in[2];
  if (pipe(out) || pipe(in)) {
    snprintf(g_setup_err, sizeof g_setup_err, "pipe: %s", strerror(errno));
    return -1;
  }
  pid_t pid = fork();
  if (pid < 0) {
    snprintf(g_setup_err, sizeof g_setup_err, "fork: %s", strerror(errno));
    return -1;
  }
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(in[0], 0);
    close(out[0]);
    close(out[1]);
    close(in[0]);
    close(in[1]);
    const char *creds = "[{\"id\":\"" KEY_ID "\",\"secret\":\"" SECRET "\"},"
                        "{\"id\":\"" TOKEN_KEY_ID "\",\"secret\":\"" TOKEN_SECRET "\"}]";
    const char *argv[] = {"node", SERVERS "/sqs.mjs", creds, NULL};
    execvp("node", (char *const *)argv);
    _exit(127);
  }
  close(out[1]);
  close(in[0]);
  g_pid = pid;
  g_in_fd = in[1];
  char line[128];
  size_t n = 0;
  int64_t until = mm_mono_ms() + 20000;
  while (n < sizeof line - 1 && mm_mono_ms() < until) {
    struct pollfd p = {out[0], POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    ssize_t r = read(out[0], line + n, 1);
    if (r <= 0) break;
    if (line[n] == '\n') break;
    n++;
  }
  line[n] = '\0';
  close(out[0]);
  if (sscanf(line, "PORT %d", &g_port) != 1 || g_port <= 0) {
    snprintf(g_setup_err, sizeof g_setup_err,
             "node %s/sqs.mjs did not start (got \"%s\"): are Node and the test server "
             "installed? Run scripts/test (it runs npm ci in tests/servers-sqs)",
             SERVERS, line);
    return -1;
  }
  return 0;
}

static void stop_server(void) {
  if (g_pid <= 0) return;
  if (g_in_fd >= 0) close(g_in_fd);
  kill(g_pid, SIGTERM);
  for (int i = 0; i < 100; i++) {
    if (waitpid(g_pid, NULL, WNOHANG) == g_pid) return;
    mm_sleep_ms(20);
  }
  kill(g_pid, SIGKILL);
  waitpid(g_pid, NULL, 0);
}

static void need_server(void) { ck_assert_msg(g_setup_err[0] == '\0', "%s", g_setup_err); }

/* The AWS settings of this (forked) test: the server's credentials, no
 * endpoint override (the queue URL leads to the server). */
static void use_server(void) {
  setenv("AWS_REGION", "us-east-1", 1);
  setenv("AWS_ACCESS_KEY_ID", KEY_ID, 1);
  setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
  unsetenv("AWS_SESSION_TOKEN");
  unsetenv("AWS_ENDPOINT_URL");
  unsetenv("AWS_ENDPOINT_URL_SQS");
  unsetenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");
  unsetenv("MURMUR_DLQ");
}

static size_t on_data(char *p, size_t s, size_t n, void *ud) {
  return mm_buf_add(ud, p, s * n) ? 0 : s * n;
}

/* One HTTP request to the server; signed for SQS when op is set (the
 * target "AmazonSQS.<op>"). Returns the HTTP status (0: no answer). */
static long http(const char *method, const char *path, const char *op, const char *body,
                 mm_buf_t *resp) {
  CURL *h = curl_easy_init();
  ck_assert_ptr_nonnull(h);
  char url[512], target[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%d%s", g_port, path);
  struct curl_slist *hdrs = NULL;
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_PROXY, "");
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
  if (op) {
    snprintf(target, sizeof target, "X-Amz-Target: AmazonSQS.%s", op);
    hdrs = curl_slist_append(hdrs, "Content-Type: application/x-amz-json-1.0");
    hdrs = curl_slist_append(hdrs, target);
    curl_easy_setopt(h, CURLOPT_AWS_SIGV4, "aws:amz:us-east-1:sqs");
    curl_easy_setopt(h, CURLOPT_USERNAME, KEY_ID);
    curl_easy_setopt(h, CURLOPT_PASSWORD, SECRET);
  } else if (body) {
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
  }
  if (hdrs) curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  if (body) curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
  long code = 0;
  if (curl_easy_perform(h) == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(h);
  return code;
}

/* Creates queue `name` and returns its URL in url. */
static void create_queue(const char *name, char *url, size_t cap) {
  mm_buf_t resp = MM_BUF_INIT;
  char body[256];
  snprintf(body, sizeof body, "{\"QueueName\":\"%s\"}", name);
  long code = http("POST", "/", "CreateQueue", body, &resp);
  ck_assert_msg(code == 200, "CreateQueue %s: HTTP %ld %s", name, code,
                resp.data ? resp.data : "");
  mm_json_doc_t doc;
  mm_err_t e;
  ck_assert_int_eq(mm_json_parse(&doc, resp.data, resp.len, 0, &e), 0);
  uint32_t u = mm_json_get(&doc, 0, "QueueUrl", 8);
  ck_assert_uint_ne(u, 0);
  char *s = mm_json_strdup(&doc, u, NULL);
  snprintf(url, cap, "%s", s);
  free(s);
  mm_json_free(&doc);
  mm_buf_free(&resp);
}

static void reset_server(void) {
  mm_buf_t r = MM_BUF_INIT;
  ck_assert_int_eq(http("POST", "/_mm/reset", NULL, "{}", &r), 200);
  mm_buf_free(&r);
}

static void fault(const char *json) {
  mm_buf_t r = MM_BUF_INIT;
  ck_assert_int_eq(http("POST", "/_mm/fault", NULL, json, &r), 200);
  mm_buf_free(&r);
}

/* A JSON document fetched from the server (caller frees both). */
typedef struct fetched {
  mm_buf_t text;
  mm_json_doc_t doc;
} fetched_t;

static void fetch(fetched_t *f, const char *path) {
  memset(f, 0, sizeof *f);
  long code = http("GET", path, NULL, NULL, &f->text);
  ck_assert_msg(code == 200, "GET %s: HTTP %ld", path, code);
  mm_err_t e;
  ck_assert_int_eq(mm_json_parse(&f->doc, f->text.data, f->text.len, 0, &e), 0);
}

static void fetched_free(fetched_t *f) {
  mm_json_free(&f->doc);
  mm_buf_free(&f->text);
}

/* A member of object obj as a number (-1 when absent). */
static double num_of(const mm_json_doc_t *d, uint32_t obj, const char *key) {
  uint32_t v = mm_json_get(d, obj, key, strlen(key));
  double x = -1;
  if (v) mm_json_double(d, v, &x);
  return x;
}

/* A member as a malloc'd string (NULL when absent or not a string). */
static char *str_of(const mm_json_doc_t *d, uint32_t obj, const char *key) {
  uint32_t v = mm_json_get(d, obj, key, strlen(key));
  if (!v || mm_json_type(d, v) != MM_JSON_STR) return NULL;
  return mm_json_strdup(d, v, NULL);
}

/* SendMessageBatch calls the server saw since the last reset. */
static int send_calls(void) {
  fetched_t f;
  fetch(&f, "/_mm/stats");
  uint32_t calls = mm_json_get(&f.doc, 0, "calls", 5);
  double n = calls ? num_of(&f.doc, calls, "SendMessageBatch") : -1;
  fetched_free(&f);
  return n < 0 ? 0 : (int)n;
}

/* ------------------------------------------------------------------ */
/* Records                                                             */
/* ------------------------------------------------------------------ */

/* A stream record for order i of customer `cust` worth `total`. */
static void make_record(mm_buf_t *b, int i, const char *cust, int total, const char *pad) {
  mm_buf_printf(b,
                "{\"eventID\":\"ev-%04d\",\"eventName\":\"INSERT\",\"eventVersion\":\"1.1\","
                "\"eventSource\":\"aws:dynamodb\",\"awsRegion\":\"us-east-1\",\"dynamodb\":{"
                "\"ApproximateCreationDateTime\":1700000000,\"Keys\":{\"id\":{\"S\":\"o%d\"}},"
                "\"NewImage\":{\"id\":{\"S\":\"o%d\"},\"customer\":{\"S\":\"%s\"},"
                "\"total\":{\"N\":\"%d\"},\"note\":{\"S\":\"%s\"}},"
                "\"SequenceNumber\":\"%021d\",\"SizeBytes\":26,"
                "\"StreamViewType\":\"NEW_AND_OLD_IMAGES\"},"
                "\"eventSourceARN\":\"arn:aws:dynamodb:us-east-1:123456789012:table/orders/"
                "stream/2020-01-01T00:00:00.000\"}",
                i, i, i, cust, total, pad ? pad : "", 1000 + i);
}

/* Fills m for record text rec (borrowed) of order i. */
static void make_msg(mm_dlq_msg_t *m, const char *pipeline, const mm_buf_t *rec, char *id,
                     char *seq, int i) {
  memset(m, 0, sizeof *m);
  snprintf(id, 16, "ev-%04d", i);
  snprintf(seq, 32, "%021d", 1000 + i);
  m->pipeline = pipeline;
  m->error = "decode.lua:7: order without customer\nstack traceback:\n\t[C]: in ?";
  m->request_id = "req-1";
  m->record_json = rec->data;
  m->record_len = rec->len;
  m->event_id = id;
  m->seq = seq;
  m->event_name = "INSERT";
}

/* ------------------------------------------------------------------ */
/* Bodies                                                              */
/* ------------------------------------------------------------------ */

START_TEST(body_carries_every_field) {
  /* A real record with every attribute type (the Go fixture). */
  size_t len;
  char *ev_text = tu_fixture("go-dynamodb-event.json", &len);
  mm_event_t ev;
  const char *etype;
  mm_err_t e;
  ck_assert_int_eq(mm_event_parse(&ev, ev_text, len, &etype, &e), 0);
  mm_buf_t rec = MM_BUF_INIT;
  ck_assert_int_eq(mm_dlq_record_json(&rec, &ev.doc, mm_json_first(&ev.doc, ev.records)), 0);
  mm_dlq_msg_t m = {.pipeline = "order_totals",
                    .error = "decode.lua:12: no customer\nstack traceback: ...",
                    .request_id = "8476a536-e9f4-11e8-9739-2dfe598c3fcd",
                    .record_json = rec.data, .record_len = rec.len,
                    .event_id = "f07f8ca4b0b26cb9c4e5e77e69f274ee",
                    .seq = "12345", .event_name = "INSERT"};
  mm_buf_t b = MM_BUF_INIT;
  int trunc = -1;
  int64_t t0 = mm_now_ms();
  ck_assert_int_eq(mm_dlq_body(&b, &m, 0, &trunc), 0);
  ck_assert_int_eq(trunc, 0);
  ck_assert_ptr_null(memchr(b.data, '\n', b.len));
  mm_json_doc_t d;
  ck_assert_int_eq(mm_json_parse(&d, b.data, b.len, 0, &e), 0);
  ck_assert_double_eq(num_of(&d, 0, "version"), 1);
  char *s;
  ck_assert_str_eq(s = str_of(&d, 0, "pipeline"), "order_totals"); free(s);
  ck_assert_str_eq(s = str_of(&d, 0, "error"), m.error); free(s);
  ck_assert_str_eq(s = str_of(&d, 0, "errorLocation"), "decode.lua:12"); free(s);
  ck_assert_str_eq(s = str_of(&d, 0, "requestId"), m.request_id); free(s);
  ck_assert_str_eq(s = str_of(&d, 0, "eventID"), m.event_id); free(s);
  ck_assert_str_eq(s = str_of(&d, 0, "sequenceNumber"), "12345"); free(s);
  ck_assert_str_eq(s = str_of(&d, 0, "eventName"), "INSERT"); free(s);
  double at = num_of(&d, 0, "parkedAt");
  ck_assert(at >= (double)t0 && at <= (double)mm_now_ms());
  ck_assert_double_eq(num_of(&d, 0, "recordBytes"), (double)rec.len);
  uint32_t tr = mm_json_get(&d, 0, "truncated", 9);
  ck_assert_int_eq(mm_json_type(&d, tr), MM_JSON_FALSE);
  /* The record is the original one, compacted: re-emitting it from the
   * body gives the same text, and it is not the pretty-printed input. */
  uint32_t r = mm_json_get(&d, 0, "record", 6);
  ck_assert_int_eq(mm_json_type(&d, r), MM_JSON_OBJ);
  mm_buf_t again = MM_BUF_INIT;
  mm_dlq_record_json(&again, &d, r);
  ck_assert_uint_eq(again.len, rec.len);
  ck_assert_int_eq(memcmp(again.data, rec.data, rec.len), 0);
  ck_assert_ptr_nonnull(strstr(rec.data, "\"B\":\"AAEqQQ==\""));
  ck_assert_ptr_null(memchr(rec.data, '\n', rec.len));
  mm_buf_free(&again);
  mm_json_free(&d);
  mm_buf_free(&b);

  /* Unknown fields are null, and an error without file:line has no
   * location. */
  mm_dlq_msg_t bare = {.error = "malformed record: no eventID"};
  ck_assert_int_eq(mm_dlq_body(&b, &bare, 0, NULL), 0);
  ck_assert_int_eq(mm_json_parse(&d, b.data, b.len, 0, &e), 0);
  static const char *const nulls[] = {"pipeline", "errorLocation", "requestId", "eventID",
                                      "sequenceNumber", "eventName", "record"};
  for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++) {
    uint32_t v = mm_json_get(&d, 0, nulls[i], strlen(nulls[i]));
    ck_assert_msg(v && mm_json_type(&d, v) == MM_JSON_NULL, "%s should be null", nulls[i]);
  }
  mm_json_free(&d);
  mm_buf_free(&b);
  mm_buf_free(&rec);
  mm_event_free(&ev);
  free(ev_text);
}
END_TEST

START_TEST(body_truncates_an_oversized_record) {
  /* 600 KB of text with quotes and a 4-byte character: the prefix must be
   * measured after escaping and cut between characters. */
  size_t big = 600 * 1024;
  char *pad = malloc(big + 1);
  for (size_t i = 0; i < big; i++) pad[i] = "ab\"\xF0\x9F\xA6\x8A"[i % 7];
  pad[big - big % 7] = '\0';
  /* the pad is a JSON string: escape its quotes */
  mm_buf_t esc = MM_BUF_INIT;
  mm_buf_json_str(&esc, pad, strlen(pad));
  esc.data[esc.len - 1] = '\0'; /* drop the closing quote */
  mm_buf_t rec = MM_BUF_INIT;
  make_record(&rec, 1, "c1", 5, esc.data + 1);
  char id[16], seq[32];
  mm_dlq_msg_t m;
  make_msg(&m, "orders", &rec, id, seq, 1);
  for (size_t limit = 0; limit <= 1000; limit += 1000) { /* the default, then 1000 */
    mm_buf_t b = MM_BUF_INIT;
    int trunc = 0;
    ck_assert_int_eq(mm_dlq_body(&b, &m, limit, &trunc), 0);
    size_t max = limit ? limit : MM_DLQ_MAX_MESSAGE - mm_dlq_attr_bytes(&m);
    ck_assert_int_eq(trunc, 1);
    ck_assert_uint_le(b.len, max);
    ck_assert_uint_ge(b.len, max - 8); /* filled up to the limit */
    mm_json_doc_t d;
    mm_err_t e;
    ck_assert_int_eq(mm_json_parse(&d, b.data, b.len, 0, &e), 0); /* valid UTF-8 */
    ck_assert_int_eq(mm_json_type(&d, mm_json_get(&d, 0, "truncated", 9)), MM_JSON_TRUE);
    ck_assert_uint_eq(mm_json_get(&d, 0, "record", 6), 0);
    ck_assert_double_eq(num_of(&d, 0, "recordBytes"), (double)rec.len);
    size_t plen;
    char *prefix = mm_json_strdup(&d, mm_json_get(&d, 0, "recordPrefix", 12), &plen);
    ck_assert_uint_gt(plen, 0);
    ck_assert_uint_lt(plen, rec.len);
    ck_assert_int_eq(memcmp(prefix, rec.data, plen), 0);
    free(prefix);
    mm_json_free(&d);
    mm_buf_free(&b);
  }
  mm_buf_free(&rec);
  mm_buf_free(&esc);
  free(pad);
}
END_TEST

START_TEST(body_is_a_valid_sqs_message) {
  /* U+FFFE and U+FFFF are valid JSON but refused by SQS; control
   * characters must be escaped; a record that is not JSON is a string. */
  const char *rec = "{\"eventID\":\"x\",\"note\":\"a\xEF\xBF\xBF" "b\",\n  \"n\": 1}";
  mm_dlq_msg_t m = {.pipeline = "p\xEF\xBF\xBE", .error = "bad\x01\xEF\xBF\xBEthing",
                    .record_json = rec, .record_len = strlen(rec)};
  mm_buf_t b = MM_BUF_INIT;
  ck_assert_int_eq(mm_dlq_body(&b, &m, 0, NULL), 0);
  for (size_t i = 0; i + 2 < b.len; i++)
    ck_assert_msg(!((unsigned char)b.data[i] == 0xEF && (unsigned char)b.data[i + 1] == 0xBF &&
                    ((unsigned char)b.data[i + 2] & 0xFE) == 0xBE),
                  "raw U+FFFE/U+FFFF at %zu", i);
  for (size_t i = 0; i < b.len; i++) ck_assert_uint_ge((unsigned char)b.data[i], 0x20);
  mm_json_doc_t d;
  mm_err_t e;
  ck_assert_int_eq(mm_json_parse(&d, b.data, b.len, 0, &e), 0);
  char *s = str_of(&d, 0, "error");
  ck_assert_str_eq(s, "bad\x01\xEF\xBF\xBEthing"); /* the same text once decoded */
  free(s);
  uint32_t r = mm_json_get(&d, 0, "record", 6);
  s = str_of(&d, r, "note");
  ck_assert_str_eq(s, "a\xEF\xBF\xBF" "b");
  free(s);
  mm_json_free(&d);
  mm_buf_free(&b);

  m.record_json = "not json {";
  m.record_len = strlen(m.record_json);
  ck_assert_int_eq(mm_dlq_body(&b, &m, 0, NULL), 0);
  ck_assert_int_eq(mm_json_parse(&d, b.data, b.len, 0, &e), 0);
  s = str_of(&d, 0, "record");
  ck_assert_str_eq(s, "not json {");
  free(s);
  mm_json_free(&d);
  mm_buf_free(&b);
}
END_TEST

START_TEST(open_refuses_bad_urls) {
  use_server();
  static const char *const bad[] = {
      "", "ftp://host/q", "sqs://", "sqs://http://127.0.0.1:9/", "sqs://http:///000/q",
      "sqs://http://user@host/000/q", "sqs://http://host/0 0/q", "file://"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    mm_dlq_t *d = (mm_dlq_t *)1;
    mm_err_t e;
    mm_err_clear(&e);
    ck_assert_msg(mm_dlq_open(&d, bad[i], NULL, &e) == MM_EINVAL, "'%s' accepted", bad[i]);
    ck_assert_ptr_null(d);
    ck_assert_str_ne(e.msg, "");
  }
  /* No credentials: refused naming the variables. */
  unsetenv("AWS_ACCESS_KEY_ID");
  mm_dlq_t *d = NULL;
  mm_err_t e;
  ck_assert_int_eq(mm_dlq_open(&d, "sqs://https://sqs.eu-west-1.amazonaws.com/1/q", NULL, &e),
                   MM_EINVAL);
  ck_assert_ptr_nonnull(strstr(e.msg, "AWS_ACCESS_KEY_ID"));
  /* A bare URL is https, and the region comes from the host. */
  use_server();
  setenv("AWS_REGION", "us-west-2", 1);
  ck_assert_int_eq(mm_dlq_open(&d, "sqs://sqs.eu-west-1.amazonaws.com/1/q.fifo", NULL, &e), 0);
  ck_assert_int_eq(mm_dlq_is_sqs(d), 1);
  ck_assert_str_eq(mm_dlq_target(d), "https://sqs.eu-west-1.amazonaws.com/1/q.fifo");
  mm_dlq_destroy(d);
  /* Without AWS_REGION a queue URL naming its region is enough; one that
   * names none is refused naming the variable. */
  unsetenv("AWS_REGION");
  unsetenv("AWS_DEFAULT_REGION");
  ck_assert_msg(mm_dlq_open(&d, "sqs://https://sqs.eu-west-1.amazonaws.com/1/q", NULL, &e) == 0,
                "%s", e.msg);
  mm_dlq_destroy(d);
  d = NULL;
  ck_assert_int_eq(mm_dlq_open(&d, "sqs://https://queue.example.com/1/q", NULL, &e), MM_EINVAL);
  ck_assert_ptr_nonnull(strstr(e.msg, "AWS_REGION"));
  ck_assert_ptr_null(d);
}
END_TEST

START_TEST(file_sink_writes_json_lines) {
  char *dir = tu_temp_dir();
  char path[600], url[620];
  snprintf(path, sizeof path, "%s/dlq.jsonl", dir);
  snprintf(url, sizeof url, "file://%s", path);
  mm_dlq_t *d = NULL;
  mm_err_t e;
  ck_assert_int_eq(mm_dlq_open(&d, url, NULL, &e), 0);
  ck_assert_int_eq(mm_dlq_is_sqs(d), 0);
  mm_buf_t recs[3] = {MM_BUF_INIT, MM_BUF_INIT, MM_BUF_INIT};
  mm_dlq_msg_t m[3];
  char ids[3][16], seqs[3][32];
  for (int i = 0; i < 3; i++) {
    make_record(&recs[i], i, "c1", i, "line\\nbreak");
    make_msg(&m[i], "orders", &recs[i], ids[i], seqs[i], i);
  }
  ck_assert_int_eq(mm_dlq_send(d, m, 3, 0, 3, 1, 1), 0);
  for (int i = 0; i < 3; i++) ck_assert_int_eq(m[i].status, 0);
  /* Past the deadline nothing is written. */
  ck_assert_int_eq(mm_dlq_send(d, m, 1, mm_now_ms() - 1, 3, 1, 1), 0);
  ck_assert_int_eq(m[0].status, MM_EDEADLINE);
  ck_assert_uint_eq(mm_dlq_stats(d).parked, 3);
  ck_assert_uint_eq(mm_dlq_stats(d).failed, 1);
  mm_dlq_destroy(d);
  size_t len;
  char *text = tu_read_file(path, &len);
  int lines = 0;
  for (char *p = text, *nl; (nl = memchr(p, '\n', (size_t)(text + len - p))); p = nl + 1) {
    mm_json_doc_t doc;
    ck_assert_int_eq(mm_json_parse(&doc, p, (size_t)(nl - p), 0, &e), 0);
    char *s = str_of(&doc, 0, "eventID");
    ck_assert_str_eq(s, ids[lines]);
    free(s);
    uint32_t r = mm_json_get(&doc, 0, "record", 6);
    s = str_of(&doc, mm_json_get(&doc, mm_json_get(&doc, r, "dynamodb", 8), "NewImage", 8),
               "customer");
    ck_assert_ptr_null(s); /* NewImage.customer is an AttributeValue object */
    mm_json_free(&doc);
    lines++;
  }
  ck_assert_int_eq(lines, 3);
  ck_assert_int_eq(text[len - 1], '\n');
  free(text);
  for (int i = 0; i < 3; i++) mm_buf_free(&recs[i]);
  free(dir);
}
END_TEST

/* ------------------------------------------------------------------ */
/* SQS                                                                 */
/* ------------------------------------------------------------------ */

/* Opens a sink on queue_url (sqs:// prepended). */
static mm_dlq_t *open_queue(const char *queue_url) {
  char url[700];
  snprintf(url, sizeof url, "sqs://%s", queue_url);
  mm_dlq_t *d = NULL;
  mm_err_t e;
  mm_err_clear(&e);
  mm_store_opts_t so = {.max_inflight = 8, .request_timeout_ms = 3000};
  ck_assert_msg(mm_dlq_open(&d, url, &so, &e) == 0, "%s", e.msg);
  return d;
}

/* n messages of orders 0..n-1 (records in recs, ids/seqs alongside). */
typedef struct batch {
  size_t n;
  mm_buf_t *recs;
  mm_dlq_msg_t *m;
  char (*ids)[16];
  char (*seqs)[32];
} batch_t;

static void batch_make(batch_t *b, size_t n, const char *pipeline, size_t pad) {
  b->n = n;
  b->recs = calloc(n, sizeof *b->recs);
  b->m = calloc(n, sizeof *b->m);
  b->ids = calloc(n, sizeof *b->ids);
  b->seqs = calloc(n, sizeof *b->seqs);
  char *p = NULL;
  if (pad) {
    p = malloc(pad + 1);
    memset(p, 'x', pad);
    p[pad] = '\0';
  }
  for (size_t i = 0; i < n; i++) {
    char cust[16];
    snprintf(cust, sizeof cust, "c%zu", i % 3);
    make_record(&b->recs[i], (int)i, cust, (int)i + 1, p);
    make_msg(&b->m[i], pipeline, &b->recs[i], b->ids[i], b->seqs[i], (int)i);
  }
  free(p);
}

static void batch_free(batch_t *b) {
  for (size_t i = 0; i < b->n; i++) mm_buf_free(&b->recs[i]);
  free(b->recs);
  free(b->m);
  free(b->ids);
  free(b->seqs);
}

/* The queue's messages (the server's inspection route). */
static void queue_contents(fetched_t *f, const char *name) {
  char path[256];
  snprintf(path, sizeof path, "/_mm/messages/%s", name);
  fetch(f, path);
  ck_assert_int_eq(mm_json_type(&f->doc, 0), MM_JSON_ARR);
}

START_TEST(sqs_messages_land_with_body_and_attributes) {
  need_server();
  use_server();
  reset_server();
  char qurl[512];
  create_queue("land", qurl, sizeof qurl);
  mm_dlq_t *d = open_queue(qurl);
  batch_t b;
  batch_make(&b, 3, "orders", 0);
  b.m[2].event_name = ""; /* absent attribute */
  ck_assert_int_eq(mm_dlq_send(d, b.m, b.n, mm_now_ms() + 10000, 3, 10, 100), 0);
  for (size_t i = 0; i < b.n; i++) ck_assert_msg(b.m[i].status == 0, "%s", b.m[i].err.msg);
  ck_assert_uint_eq(mm_dlq_stats(d).parked, 3);
  ck_assert_int_eq(send_calls(), 1);

  fetched_t f;
  queue_contents(&f, "land");
  ck_assert_uint_eq(mm_json_len(&f.doc, 0), 3);
  int seen[3] = {0, 0, 0};
  uint32_t it = mm_json_first(&f.doc, 0);
  for (uint32_t k = 0; k < 3; k++, it = mm_json_next(&f.doc, it)) {
    size_t blen;
    char *body = mm_json_strdup(&f.doc, mm_json_get(&f.doc, it, "body", 4), &blen);
    mm_json_doc_t d2;
    mm_err_t e;
    ck_assert_int_eq(mm_json_parse(&d2, body, blen, 0, &e), 0);
    char *eid = str_of(&d2, 0, "eventID");
    int i = atoi(eid + 3);
    ck_assert(i >= 0 && i < 3 && !seen[i]);
    seen[i] = 1;
    /* the body is exactly what mm_dlq_body builds, but for parkedAt */
    char *s;
    ck_assert_str_eq(s = str_of(&d2, 0, "pipeline"), "orders"); free(s);
    ck_assert_str_eq(s = str_of(&d2, 0, "error"), b.m[i].error); free(s);
    ck_assert_str_eq(s = str_of(&d2, 0, "sequenceNumber"), b.seqs[i]); free(s);
    mm_buf_t rec = MM_BUF_INIT;
    mm_dlq_record_json(&rec, &d2, mm_json_get(&d2, 0, "record", 6));
    ck_assert_uint_eq(rec.len, b.recs[i].len);
    ck_assert_int_eq(memcmp(rec.data, b.recs[i].data, rec.len), 0);
    mm_buf_free(&rec);
    /* attributes */
    uint32_t at = mm_json_get(&f.doc, it, "attributes", 10);
    ck_assert_str_eq(s = str_of(&f.doc, at, "eventID"), b.ids[i]); free(s);
    ck_assert_str_eq(s = str_of(&f.doc, at, "SequenceNumber"), b.seqs[i]); free(s);
    ck_assert_str_eq(s = str_of(&f.doc, at, "pipeline"), "orders"); free(s);
    s = str_of(&f.doc, at, "eventName");
    if (i == 2) ck_assert_ptr_null(s);
    else ck_assert_str_eq(s, "INSERT");
    free(s);
    ck_assert_int_eq(mm_json_type(&f.doc, mm_json_get(&f.doc, it, "groupId", 7)), MM_JSON_NULL);
    free(eid);
    free(body);
    mm_json_free(&d2);
  }
  fetched_free(&f);
  batch_free(&b);
  mm_dlq_destroy(d);
}
END_TEST

START_TEST(sqs_batches_above_ten) {
  need_server();
  use_server();
  reset_server();
  char qurl[512];
  create_queue("many", qurl, sizeof qurl);
  mm_dlq_t *d = open_queue(qurl);
  batch_t b;
  batch_make(&b, 25, "orders", 0);
  ck_assert_int_eq(mm_dlq_send(d, b.m, b.n, 0, 3, 10, 100), 0);
  for (size_t i = 0; i < b.n; i++) ck_assert_msg(b.m[i].status == 0, "%s", b.m[i].err.msg);
  fetched_t st;
  fetch(&st, "/_mm/stats");
  uint32_t ent = mm_json_get(&st.doc, 0, "entries", 7);
  ck_assert_uint_eq(mm_json_len(&st.doc, ent), 3); /* 10 + 10 + 5 */
  double total = 0;
  uint32_t x = mm_json_first(&st.doc, ent);
  for (uint32_t k = 0; k < 3; k++, x = mm_json_next(&st.doc, x)) {
    double v;
    mm_json_double(&st.doc, x, &v);
    ck_assert_double_le(v, 10);
    total += v;
  }
  ck_assert_double_eq(total, 25);
  fetched_free(&st);
  fetched_t f;
  queue_contents(&f, "many");
  ck_assert_uint_eq(mm_json_len(&f.doc, 0), 25);
  fetched_free(&f);
  batch_free(&b);
  mm_dlq_destroy(d);
}
END_TEST

START_TEST(sqs_batches_respect_the_size_limit) {
  need_server();
  use_server();
  reset_server();
  char qurl[512];
  create_queue("sized", qurl, sizeof qurl);
  mm_dlq_t *d = open_queue(qurl);
  batch_t b;
  batch_make(&b, 7, "orders", 100 * 1024); /* ~100 KB each: 2 per batch */
  ck_assert_int_eq(mm_dlq_send(d, b.m, b.n, 0, 3, 10, 100), 0);
  for (size_t i = 0; i < b.n; i++) ck_assert_msg(b.m[i].status == 0, "%s", b.m[i].err.msg);
  fetched_t st;
  fetch(&st, "/_mm/stats");
  uint32_t bytes = mm_json_get(&st.doc, 0, "bytes", 5);
  ck_assert_uint_eq(mm_json_len(&st.doc, bytes), 4);
  uint32_t x = mm_json_first(&st.doc, bytes);
  for (uint32_t k = 0; k < mm_json_len(&st.doc, bytes); k++, x = mm_json_next(&st.doc, x)) {
    double v;
    mm_json_double(&st.doc, x, &v);
    ck_assert_double_le(v, MM_DLQ_MAX_MESSAGE);
  }
  fetched_free(&st);
  fetched_t f;
  queue_contents(&f, "sized");
  ck_assert_uint_eq(mm_json_len(&f.doc, 0), 7);
  fetched_free(&f);
  batch_free(&b);
  mm_dlq_destroy(d);
}
END_TEST

START_TEST(sqs_oversized_record_is_parked_truncated) {
  need_server();
  use_server();
  reset_server();
  char qurl[512];
  create_queue("oversized", qurl, sizeof qurl);
  /* A 256 KiB queue, as SQS queues are by default. */
  mm_buf_t r = MM_BUF_INIT;
  char body[700];
  snprintf(body, sizeof body,
           "{\"QueueUrl\":\"%s\",\"Attributes\":{\"MaximumMessageSize\":\"262144\"}}", qurl);
  ck_assert_int_eq(http("POST", "/", "SetQueueAttributes", body, &r), 200);
  mm_buf_free(&r);
  mm_dlq_t *d = open_queue(qurl);
  batch_t b;
  batch_make(&b, 2, "orders", 600 * 1024);
  ck_assert_int_eq(mm_dlq_send(d, b.m, b.n, 0, 3, 10, 100), 0);
  for (size_t i = 0; i < b.n; i++) ck_assert_msg(b.m[i].status == 0, "%s", b.m[i].err.msg);
  fetched_t f;
  queue_contents(&f, "oversized");
  ck_assert_uint_eq(mm_json_len(&f.doc, 0), 2);
  uint32_t it = mm_json_first(&f.doc, 0);
  for (int k = 0; k < 2; k++, it = mm_json_next(&f.doc, it)) {
    size_t blen;
    char *bt = mm_json_strdup(&f.doc, mm_json_get(&f.doc, it, "body", 4), &blen);
    ck_assert_uint_le(blen, MM_DLQ_MAX_MESSAGE);
    mm_json_doc_t d2;
    mm_err_t e;
    ck_assert_int_eq(mm_json_parse(&d2, bt, blen, 0, &e), 0);
    ck_assert_int_eq(mm_json_type(&d2, mm_json_get(&d2, 0, "truncated", 9)), MM_JSON_TRUE);
    ck_assert_double_eq(num_of(&d2, 0, "recordBytes"), (double)b.recs[0].len);
    mm_json_free(&d2);
    free(bt);
  }
  fetched_free(&f);
  batch_free(&b);
  mm_dlq_destroy(d);
}
END_TEST

START_TEST(sqs_queue_down_fails_every_message) {
  use_server();
  /* A port nothing listens on. */
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  ck_assert_int_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0);
  socklen_t al = sizeof a;
  getsockname(s, (struct sockaddr *)&a, &al);
  close(s);
  char qurl[128];
  snprintf(qurl, sizeof qurl, "http://127.0.0.1:%d/000000000000/down", ntohs(a.sin_port));
  mm_dlq_t *d = open_queue(qurl);
  batch_t b;
  batch_make(&b, 12, "orders", 0);
  int64_t t0 = mm_mono_ms();
  ck_assert_int_eq(mm_dlq_send(d, b.m, b.n, mm_now_ms() + 10000, 3, 10, 50), 0);
  for (size_t i = 0; i < b.n; i++) {
    ck_assert_int_eq(b.m[i].status, MM_ERETRY);
    ck_assert_ptr_nonnull(strstr(b.m[i].err.msg, "network error"));
  }
  ck_assert_int_lt(mm_mono_ms() - t0, 2000);
  mm_dlq_stats_t st = mm_dlq_stats(d);
  ck_assert_uint_eq(st.parked, 0);
  ck_assert_uint_eq(st.failed, 12);
  ck_assert_uint_eq(st.retries, 24); /* 12 messages x 2 more attempts */
  ck_assert_uint_eq(st.requests, 6);  /* 2 batches x 3 attempts */
  batch_free(&b);
  mm_dlq_destroy(d);
}
END_TEST

START_TEST(sqs_transient_errors_are_retried) {
  need_server();
  use_server();
  reset_server();
  char qurl[512];
  create_queue("transient", qurl, sizeof qurl);
  mm_dlq_t *d = open_queue(qurl);
  batch_t b;
  batch_make(&b, 3, "orders", 0);
  fault("{\"op\":\"SendMessageBatch\",\"mode\":\"status\",\"status\":500,"
        "\"type\":\"InternalError\",\"count\":1}");
  fault("{\"op\":\"SendMessageBatch\",\"mode\":\"entries\",\"senderFault\":false,\"count\":1}");
  ck_assert_int_eq(mm_dlq_send(d, b.m, b.n, 0, 3, 5, 20), 0);
  for (size_t i = 0; i < b.n; i++) ck_assert_msg(b.m[i].status == 0, "%s", b.m[i].err.msg);
  ck_assert_int_eq(send_calls(), 3);
  ck_assert_uint_eq(mm_dlq_stats(d).retries, 6);
  fetched_t f;
  queue_contents(&f, "transient");
  ck_assert_uint_eq(mm_json_len(&f.doc, 0), 3); /* the failed tries parked nothing */
  fetched_free(&f);

  /* Throttling beyond the budget: MM_ERETRY after max_attempts. */
  reset_server();
  fault("{\"op\":\"SendMessageBatch\",\"mode\":\"status\",\"status\":400,"
        "\"type\":\"RequestThrottled\",\"count\":5}");
  ck_assert_int_eq(mm_dlq_send(d, b.m, 1, 0, 2, 5, 20), 0);
  ck_assert_int_eq(b.m[0].status, MM_ERETRY);
  ck_assert_ptr_nonnull(strstr(b.m[0].err.msg, "RequestThrottled"));
  ck_assert_int_eq(send_calls(), 2);
  batch_free(&b);
  mm_dlq_destroy(d);
}
END_TEST

START_TEST(sqs_permanent_errors_are_not_retried) {
  need_server();
  use_server();
  reset_server();
  char qurl[512];
  create_queue("perm", qurl, sizeof qurl);
  mm_dlq_t *d = open_queue(qurl);
  batch_t b;
  batch_make(&b, 2, "orders", 0);
  fault("{\"op\":\"SendMessageBatch\",\"mode\":\"entries\",\"senderFault\":true,\"count\":1}");
  ck_assert_int_eq(mm_dlq_send(d, b.m, b.n, 0, 3, 5, 20), 0);
  for (size_t i = 0; i < b.n; i++) {
    ck_assert_int_eq(b.m[i].status, MM_EPERM);
    ck_assert_ptr_nonnull(strstr(b.m[i].err.msg, "sender fault"));
  }
  ck_assert_int_eq(send_calls(), 1);
  mm_dlq_destroy(d);

  /* A queue that does not exist. */
  reset_server();
  char missing[600];
  snprintf(missing, sizeof missing, "http://127.0.0.1:%d/000000000000/no-such-queue", g_port);
  d = open_queue(missing);
  ck_assert_int_eq(mm_dlq_send(d, b.m, b.n, 0, 3, 5, 20), 0);
  for (size_t i = 0; i < b.n; i++) {
    ck_assert_int_eq(b.m[i].status, MM_EPERM);
    ck_assert_ptr_nonnull(strstr(b.m[i].err.msg, "QueueDoesNotExist"));
  }
  ck_assert_int_eq(send_calls(), 1);
  batch_free(&b);
  mm_dlq_destroy(d);
}
END_TEST

START_TEST(sqs_slow_queue_never_passes_the_deadline) {
  need_server();
  use_server();
  reset_server();
  char qurl[512];
  create_queue("slow", qurl, sizeof qurl);
  mm_dlq_t *d = open_queue(qurl);
  batch_t b;
  batch_make(&b, 15, "orders", 0);
  fault("{\"op\":\"SendMessageBatch\",\"mode\":\"delay\",\"ms\":3000,\"count\":10}");
  int64_t t0 = mm_mono_ms();
  ck_assert_int_eq(mm_dlq_send(d, b.m, b.n, mm_now_ms() + 400, 3, 10, 100), 0);
  int64_t took = mm_mono_ms() - t0;
  ck_assert_msg(took < 700, "send took %lld ms past a 400 ms deadline", (long long)took);
  for (size_t i = 0; i < b.n; i++) {
    ck_assert_int_ne(b.m[i].status, 0);
    ck_assert_msg(b.m[i].status == MM_EDEADLINE || b.m[i].status == MM_EUNKNOWN, "%s",
                  b.m[i].err.msg);
  }
  /* Already past: nothing is even started. */
  reset_server();
  ck_assert_int_eq(mm_dlq_send(d, b.m, 3, mm_now_ms() - 1, 3, 10, 100), 0);
  for (size_t i = 0; i < 3; i++) ck_assert_int_eq(b.m[i].status, MM_EDEADLINE);
  ck_assert_int_eq(send_calls(), 0);
  batch_free(&b);
  mm_dlq_destroy(d);
}
END_TEST

START_TEST(sqs_fifo_group_and_dedup) {
  need_server();
  use_server();
  reset_server();
  char qurl[512];
  create_queue("parked.fifo", qurl, sizeof qurl);
  mm_dlq_t *d = open_queue(qurl);
  batch_t b;
  batch_make(&b, 3, "order totals", 0);
  ck_assert_int_eq(mm_dlq_send(d, b.m, b.n, 0, 3, 10, 100), 0);
  for (size_t i = 0; i < b.n; i++) ck_assert_msg(b.m[i].status == 0, "%s", b.m[i].err.msg);
  /* The same records parked again (a redelivered batch): deduplicated. */
  ck_assert_int_eq(mm_dlq_send(d, b.m, b.n, 0, 3, 10, 100), 0);
  for (size_t i = 0; i < b.n; i++) ck_assert_msg(b.m[i].status == 0, "%s", b.m[i].err.msg);
  fetched_t f;
  queue_contents(&f, "parked.fifo");
  ck_assert_uint_eq(mm_json_len(&f.doc, 0), 3);
  uint32_t it = mm_json_first(&f.doc, 0);
  for (int k = 0; k < 3; k++, it = mm_json_next(&f.doc, it)) {
    char *g = str_of(&f.doc, it, "groupId"), *dd = str_of(&f.doc, it, "dedupId");
    ck_assert_str_eq(g, "order_totals"); /* printable ASCII only */
    ck_assert_int_eq(strncmp(dd, "ev-000", 6), 0);
    free(g);
    free(dd);
  }
  fetched_free(&f);
  batch_free(&b);
  mm_dlq_destroy(d);
}
END_TEST

START_TEST(sqs_signing) {
  need_server();
  use_server();
  reset_server();
  char qurl[512];
  create_queue("signed", qurl, sizeof qurl);
  batch_t b;
  batch_make(&b, 1, "orders", 0);
  /* Temporary credentials: the token header is sent and signed. */
  setenv("AWS_ACCESS_KEY_ID", TOKEN_KEY_ID, 1);
  setenv("AWS_SECRET_ACCESS_KEY", TOKEN_SECRET, 1);
  setenv("AWS_SESSION_TOKEN", TOKEN, 1);
  mm_dlq_t *d = open_queue(qurl);
  ck_assert_int_eq(mm_dlq_send(d, b.m, 1, 0, 1, 10, 100), 0);
  ck_assert_msg(b.m[0].status == 0, "%s", b.m[0].err.msg);
  mm_dlq_destroy(d);
  /* A wrong secret is refused, not retried. */
  use_server();
  setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret", 1);
  d = open_queue(qurl);
  ck_assert_int_eq(mm_dlq_send(d, b.m, 1, 0, 3, 10, 100), 0);
  ck_assert_int_eq(b.m[0].status, MM_EPERM);
  ck_assert_ptr_nonnull(strstr(b.m[0].err.msg, "SignatureDoesNotMatch"));
  mm_dlq_destroy(d);
  fetched_t st;
  fetch(&st, "/_mm/stats");
  ck_assert_double_eq(num_of(&st.doc, 0, "badSignatures"), 1);
  fetched_free(&st);
  /* An endpoint override with a real queue URL: requests go to the
   * override, signed for the queue's region. */
  use_server();
  char ep[64];
  snprintf(ep, sizeof ep, "http://127.0.0.1:%d", g_port);
  setenv("AWS_ENDPOINT_URL_SQS", ep, 1);
  d = open_queue("https://sqs.eu-west-1.amazonaws.com/000000000000/signed");
  ck_assert_int_eq(mm_dlq_send(d, b.m, 1, 0, 1, 10, 100), 0);
  ck_assert_msg(b.m[0].status == 0, "%s", b.m[0].err.msg);
  fetch(&st, "/_mm/stats");
  char *scope = str_of(&st.doc, 0, "lastScope");
  ck_assert_str_eq(scope, "eu-west-1/sqs");
  free(scope);
  fetched_free(&st);
  mm_dlq_destroy(d);
  fetched_t f;
  queue_contents(&f, "signed");
  ck_assert_uint_eq(mm_json_len(&f.doc, 0), 2);
  fetched_free(&f);
  batch_free(&b);
}
END_TEST

START_TEST(sqs_receive_and_delete) {
  need_server();
  use_server();
  reset_server();
  char qurl[512];
  create_queue("readback", qurl, sizeof qurl);
  mm_dlq_t *d = open_queue(qurl);
  batch_t b;
  batch_make(&b, 13, "orders", 0);
  ck_assert_int_eq(mm_dlq_send(d, b.m, b.n, 0, 3, 10, 100), 0);
  mm_dlq_parked_t got[26];
  size_t total = 0, n = 0;
  mm_err_t e;
  for (int round = 0; round < 5; round++) {
    ck_assert_int_eq(mm_dlq_receive(d, 10, 0, 30, 3, got + total, &n, &e), 0);
    ck_assert_uint_le(n, 10);
    total += n;
    if (!n) break;
  }
  ck_assert_uint_eq(total, 13);
  for (size_t i = 0; i < total; i++) {
    ck_assert_ptr_nonnull(got[i].receipt);
    ck_assert_ptr_nonnull(strstr(got[i].body, "\"version\":1"));
  }
  int st[26];
  ck_assert_int_eq(mm_dlq_delete(d, got, 11, 3, st, &e), 0);
  for (size_t i = 0; i < 11; i++) ck_assert_int_eq(st[i], 0);
  /* Entries refused for the sender's fault are not retried; the others
   * are, until deleted. */
  fault("{\"op\":\"DeleteMessageBatch\",\"mode\":\"entries\",\"senderFault\":true}");
  ck_assert_int_eq(mm_dlq_delete(d, got + 11, 2, 3, st, &e), MM_EPERM);
  ck_assert_int_eq(st[0], MM_EPERM);
  ck_assert_int_eq(st[1], MM_EPERM);
  ck_assert_ptr_nonnull(strstr(e.msg, "sender fault"));
  fetched_t f;
  queue_contents(&f, "readback");
  ck_assert_uint_eq(mm_json_len(&f.doc, 0), 2);
  fetched_free(&f);
  fault("{\"op\":\"DeleteMessageBatch\",\"mode\":\"entries\",\"senderFault\":false}");
  ck_assert_int_eq(mm_dlq_delete(d, got + 11, 2, 3, st, &e), 0);
  ck_assert_int_eq(st[0], 0);
  ck_assert_int_eq(st[1], 0);
  queue_contents(&f, "readback");
  ck_assert_uint_eq(mm_json_len(&f.doc, 0), 0);
  fetched_free(&f);
  for (size_t i = 0; i < total; i++) mm_dlq_parked_free(&got[i]);
  batch_free(&b);
  mm_dlq_destroy(d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Replay                                                              */
/* ------------------------------------------------------------------ */

/* The fixed decoder: sum of totals per customer; customer "c-bad" still
 * fails. */
static const char *FIXED_LUA =
    "return {\n"
    "  name = 'orders',\n"
    "  aggregate = 'sum',\n"
    "  decode = function(rec)\n"
    "    local o = rec.dynamodb.NewImage\n"
    "    if not o then return nil end\n"
    "    if o.customer == 'c-bad' then error('still broken') end\n"
    "    return o\n"
    "  end,\n"
    "  key = function(o) return 'customer#' .. o.customer end,\n"
    "  value = function(o) return o.total end,\n"
    "}\n";

/* Runs mm_replay_main with argv (NULL-terminated, after "replay"),
 * capturing its summary line into summary. Returns the exit status. */
static int run_replay(const char *const *args, char *summary, size_t cap) {
  const char *argv[32] = {"replay"};
  int argc = 1;
  for (size_t i = 0; args[i] && argc < 31; i++) argv[argc++] = args[i];
  argv[argc] = NULL;
  char *dir = tu_temp_dir();
  char out[600];
  snprintf(out, sizeof out, "%s/summary.json", dir);
  fflush(stdout);
  int saved = dup(1);
  int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  dup2(fd, 1);
  close(fd);
  int rc = mm_replay_main(argc, (char **)argv);
  fflush(stdout);
  dup2(saved, 1);
  close(saved);
  size_t len;
  char *text = tu_read_file(out, &len);
  snprintf(summary, cap, "%s", text ? text : "");
  free(text);
  unlink(out);
  rmdir(dir);
  free(dir);
  return rc;
}

/* A summary counter. */
static double summary_num(const char *summary, const char *key) {
  mm_json_doc_t d;
  mm_err_t e;
  ck_assert_msg(mm_json_parse(&d, summary, strlen(summary), 0, &e) == 0, "summary: %s",
                summary);
  double v = num_of(&d, 0, key);
  mm_json_free(&d);
  return v;
}

/* The stored value of key in store url, as text ("" when no row). */
static void stored(const char *url, const char *key, char *out, size_t cap);
static int copy_row(void *ud, const mm_row_t *row) {
  snprintf(((char **)ud)[0], (size_t)(uintptr_t)((char **)ud)[1], "%s", row->value_json);
  return 0;
}
static void stored(const char *url, const char *key, char *out, size_t cap) {
  mm_store_t *s = NULL;
  mm_err_t e;
  mm_store_opts_t so = {0};
  ck_assert_msg(mm_store_open(&s, url, &so, &e) == 0, "%s", e.msg);
  out[0] = '\0';
  char *ud[2] = {out, (char *)(uintptr_t)cap};
  ck_assert_int_eq(mm_store_query(s, key, NULL, copy_row, ud, &e), 0);
  mm_store_destroy(s);
}

/* Parks records of orders 0..n-1 (customers c0..c2, totals i+1; the ones
 * listed in bad get customer c-bad) with mm_dlq_send on sink d. */
static void park(mm_dlq_t *d, const char *pipeline, int n, int bad_from) {
  batch_t b;
  batch_make(&b, (size_t)n, pipeline, 0);
  for (int i = bad_from; i < n; i++) {
    mm_buf_reset(&b.recs[i]);
    make_record(&b.recs[i], i, "c-bad", i + 1, NULL);
    b.m[i].record_json = b.recs[i].data;
    b.m[i].record_len = b.recs[i].len;
  }
  ck_assert_int_eq(mm_dlq_send(d, b.m, b.n, 0, 3, 10, 100), 0);
  for (int i = 0; i < n; i++) ck_assert_msg(b.m[i].status == 0, "%s", b.m[i].err.msg);
  batch_free(&b);
}

/* Sum of totals i+1 of customer c (i % 3) among orders 0..n-1. */
static int expected_sum(int n, int c) {
  int s = 0;
  for (int i = 0; i < n; i++)
    if (i % 3 == c) s += i + 1;
  return s;
}

START_TEST(replay_from_sqs_merges_once_and_deletes_only_successes) {
  need_server();
  use_server();
  reset_server();
  char qurl[512], from[600];
  create_queue("replay", qurl, sizeof qurl);
  snprintf(from, sizeof from, "sqs://%s", qurl);
  mm_dlq_t *d = open_queue(qurl);
  /* 20 good records and 3 that still fail, a duplicate park of the first
   * 5, one truncated record, and one record of another pipeline. */
  park(d, "orders", 23, 20);
  park(d, "orders", 5, 5);
  batch_t big;
  batch_make(&big, 1, "orders", 300 * 1024);
  ck_assert_int_eq(mm_dlq_send(d, big.m, 1, 0, 3, 10, 100), 0);
  ck_assert_int_eq(big.m[0].status, 0);
  batch_free(&big);
  park(d, "other", 1, 1);
  mm_dlq_destroy(d);

  char *dir = tu_temp_dir();
  char script[600], store[600], dedup[600], summary[1024], v[256];
  snprintf(script, sizeof script, "%s/decode.lua", dir);
  FILE *f = fopen(script, "w");
  fputs(FIXED_LUA, f);
  fclose(f);
  snprintf(store, sizeof store, "sqlite://%s/store.db", dir);
  snprintf(dedup, sizeof dedup, "sqlite://%s/dedup.db", dir);
  const char *args[] = {"--from", from, "--script", script, "--store", store, "--dedup", dedup,
                        "--wait", "0", "--batch", "7", NULL};
  int rc = run_replay(args, summary, sizeof summary);
  ck_assert_msg(rc == MM_REPLAY_EXIT_KEPT, "exit %d: %s", rc, summary);
  ck_assert_double_eq(summary_num(summary, "read"), 30);
  ck_assert_double_eq(summary_num(summary, "removed"), 25); /* 20 + 5 copies */
  ck_assert_double_eq(summary_num(summary, "stillPoison"), 3);
  ck_assert_double_eq(summary_num(summary, "truncated"), 1);
  ck_assert_double_eq(summary_num(summary, "skippedOther"), 1);
  ck_assert_double_eq(summary_num(summary, "kept"), 5);
  for (int c = 0; c < 3; c++) {
    char key[32], want[32];
    snprintf(key, sizeof key, "customer#c%d", c);
    snprintf(want, sizeof want, "%d", expected_sum(20, c));
    stored(store, key, v, sizeof v);
    ck_assert_msg(strcmp(v, want) == 0, "%s = %s, want %s", key, v, want);
  }
  fetched_t q;
  queue_contents(&q, "replay");
  ck_assert_uint_eq(mm_json_len(&q.doc, 0), 5); /* 3 poison, truncated, other */
  fetched_free(&q);

  /* The same records parked again (Lambda redelivered a batch) and
   * replayed in a later run: dedup keeps the sums. */
  d = open_queue(qurl);
  park(d, "orders", 20, 20);
  mm_dlq_destroy(d);
  const char *args2[] = {"--from", from, "--script", script, "--store", store, "--dedup", dedup,
                         "--wait", "0", "--visibility", "30", NULL};
  rc = run_replay(args2, summary, sizeof summary);
  ck_assert_msg(rc == 0, "exit %d: %s", rc, summary); /* the kept ones are still hidden */
  ck_assert_double_eq(summary_num(summary, "removed"), 20);
  for (int c = 0; c < 3; c++) {
    char key[32], want[32];
    snprintf(key, sizeof key, "customer#c%d", c);
    snprintf(want, sizeof want, "%d", expected_sum(20, c));
    stored(store, key, v, sizeof v);
    ck_assert_msg(strcmp(v, want) == 0, "after a second replay %s = %s, want %s", key, v, want);
  }
  stored(store, "customer#c-bad", v, sizeof v);
  ck_assert_str_eq(v, "");
  free(dir);
}
END_TEST

START_TEST(replay_keeps_records_whose_merge_fails) {
  need_server();
  use_server();
  reset_server();
  char qurl[512], from[600];
  create_queue("storedown", qurl, sizeof qurl);
  snprintf(from, sizeof from, "sqs://%s", qurl);
  mm_dlq_t *d = open_queue(qurl);
  park(d, "orders", 4, 4);
  mm_dlq_destroy(d);
  /* A DynamoDB store nobody answers for. */
  setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9", 1);
  setenv("MURMUR_MAX_ATTEMPTS", "1", 1);
  char *dir = tu_temp_dir();
  char script[600], summary[1024];
  snprintf(script, sizeof script, "%s/decode.lua", dir);
  FILE *f = fopen(script, "w");
  fputs(FIXED_LUA, f);
  fclose(f);
  const char *args[] = {"--from", from, "--script", script, "--store", "dynamodb://mm_store",
                        "--dedup", "off", "--wait", "0", NULL};
  int rc = run_replay(args, summary, sizeof summary);
  ck_assert_msg(rc == MM_REPLAY_EXIT_KEPT, "exit %d: %s", rc, summary);
  ck_assert_double_eq(summary_num(summary, "failed"), 4);
  ck_assert_double_eq(summary_num(summary, "removed"), 0);
  fetched_t q;
  queue_contents(&q, "storedown");
  ck_assert_uint_eq(mm_json_len(&q.doc, 0), 4);
  fetched_free(&q);
  free(dir);
}
END_TEST

START_TEST(replay_from_a_file_writes_what_remains) {
  use_server();
  char *dir = tu_temp_dir();
  char path[600], url[620], rem[620], script[600], store[600], summary[1024], v[256];
  snprintf(path, sizeof path, "%s/parked.jsonl", dir);
  snprintf(url, sizeof url, "file://%s", path);
  snprintf(rem, sizeof rem, "%s.remaining", path);
  snprintf(script, sizeof script, "%s/decode.lua", dir);
  snprintf(store, sizeof store, "sqlite://%s/store.db", dir);
  mm_dlq_t *d = NULL;
  mm_err_t e;
  ck_assert_int_eq(mm_dlq_open(&d, url, NULL, &e), 0);
  park(d, "orders", 8, 6); /* orders 6 and 7 still fail */
  mm_dlq_destroy(d);
  /* A line that is not a message, and a blank line. */
  FILE *f = fopen(path, "a");
  fputs("this is not json\n\n", f);
  fclose(f);
  f = fopen(script, "w");
  fputs(FIXED_LUA, f);
  fclose(f);
  const char *args[] = {"--from", path, "--script", script, "--store", store, "--dedup", "off",
                        NULL};
  int rc = run_replay(args, summary, sizeof summary);
  ck_assert_msg(rc == MM_REPLAY_EXIT_KEPT, "exit %d: %s", rc, summary);
  ck_assert_double_eq(summary_num(summary, "read"), 9);
  ck_assert_double_eq(summary_num(summary, "removed"), 6);
  ck_assert_double_eq(summary_num(summary, "kept"), 3);
  size_t len;
  char *text = tu_read_file(rem, &len);
  ck_assert_ptr_nonnull(text);
  int lines = 0;
  for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
  ck_assert_int_eq(lines, 3);
  ck_assert_ptr_nonnull(strstr(text, "\"eventID\":\"ev-0006\""));
  ck_assert_ptr_nonnull(strstr(text, "\"eventID\":\"ev-0007\""));
  ck_assert_ptr_nonnull(strstr(text, "this is not json\n"));
  free(text);
  for (int c = 0; c < 3; c++) {
    char key[32], want[32];
    snprintf(key, sizeof key, "customer#c%d", c);
    snprintf(want, sizeof want, "%d", expected_sum(6, c));
    stored(store, key, v, sizeof v);
    ck_assert_msg(strcmp(v, want) == 0, "%s = %s, want %s", key, v, want);
  }
  /* The input file is never changed. */
  text = tu_read_file(path, &len);
  lines = 0;
  for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
  ck_assert_int_eq(lines, 10);
  free(text);
  /* A script that no longer fails on c-bad: the rest goes; the non-JSON
   * line stays. */
  f = fopen(script, "w");
  fputs("return { name = 'orders', aggregate = 'count',\n"
        "  decode = function(rec) return rec.dynamodb.NewImage end,\n"
        "  key = function(o) return 'n#' .. o.customer end }\n",
        f);
  fclose(f);
  const char *args2[] = {"--from", rem, "--script", script, "--store", store, "--dedup", "off",
                         NULL};
  rc = run_replay(args2, summary, sizeof summary);
  ck_assert_int_eq(rc, MM_REPLAY_EXIT_KEPT);
  ck_assert_double_eq(summary_num(summary, "removed"), 2);
  stored(store, "n#c-bad", v, sizeof v);
  ck_assert_str_eq(v, "2");
  char rem2[700];
  snprintf(rem2, sizeof rem2, "%s.remaining", rem);
  text = tu_read_file(rem2, &len);
  ck_assert_str_eq(text, "this is not json\n");
  free(text);
  free(dir);
}
END_TEST

START_TEST(replay_usage) {
  char summary[256];
  const char *none[] = {NULL};
  ck_assert_int_eq(run_replay(none, summary, sizeof summary), 2);
  const char *bad[] = {"--from", "x", "--script", "y", "--batch", "0", NULL};
  ck_assert_int_eq(run_replay(bad, summary, sizeof summary), 2);
  const char *missing[] = {"--from", "/nonexistent/parked.jsonl", "--script",
                           MM_TEST_DIR "/no-such.lua", NULL};
  ck_assert_int_eq(run_replay(missing, summary, sizeof summary), 1);
}
END_TEST

/* A line the file system takes only part of (here: the file-size limit)
 * is cut off again, so the next parked message starts on a line of its own
 * and stays readable for replay. */
START_TEST(file_sink_removes_a_partial_line) {
  char *dir = tu_temp_dir();
  char path[600], url[620];
  snprintf(path, sizeof path, "%s/dlq.jsonl", dir);
  snprintf(url, sizeof url, "file://%s", path);
  mm_dlq_t *d = NULL;
  mm_err_t e;
  ck_assert_int_eq(mm_dlq_open(&d, url, NULL, &e), 0);
  mm_buf_t recs[3] = {MM_BUF_INIT, MM_BUF_INIT, MM_BUF_INIT};
  mm_dlq_msg_t m[3];
  char ids[3][16], seqs[3][32];
  for (int i = 0; i < 3; i++) {
    make_record(&recs[i], i, "c1", i, "x");
    make_msg(&m[i], "orders", &recs[i], ids[i], seqs[i], i);
  }
  ck_assert_int_eq(mm_dlq_send(d, &m[0], 1, 0, 1, 1, 1), 0);
  ck_assert_int_eq(m[0].status, 0);
  struct stat st;
  ck_assert_int_eq(stat(path, &st), 0);
  struct rlimit old, lim;
  ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
  lim = old;
  lim.rlim_cur = (rlim_t)st.st_size + 40; /* a line is far longer */
  void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
  ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
  ck_assert_int_eq(mm_dlq_send(d, &m[1], 1, 0, 1, 1, 1), 0);
  ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
  signal(SIGXFSZ, prev);
  ck_assert_int_eq(m[1].status, MM_EPERM);
  ck_assert_ptr_nonnull(strstr(m[1].err.msg, "write failed"));
  ck_assert_int_eq(mm_dlq_send(d, &m[2], 1, 0, 1, 1, 1), 0);
  ck_assert_int_eq(m[2].status, 0);
  mm_dlq_destroy(d);
  size_t len;
  char *text = tu_read_file(path, &len);
  const int want[2] = {0, 2};
  int lines = 0;
  for (char *p = text, *nl; (nl = memchr(p, '\n', (size_t)(text + len - p))); p = nl + 1) {
    ck_assert_int_lt(lines, 2);
    mm_json_doc_t doc;
    ck_assert_msg(mm_json_parse(&doc, p, (size_t)(nl - p), 0, &e) == 0, "line %d: %s",
                  lines + 1, e.msg);
    char *s = str_of(&doc, 0, "eventID");
    ck_assert_str_eq(s, ids[want[lines]]);
    free(s);
    mm_json_free(&doc);
    lines++;
  }
  ck_assert_int_eq(lines, 2);
  free(text);
  for (int i = 0; i < 3; i++) mm_buf_free(&recs[i]);
  free(dir);
}
END_TEST

static Suite *dlq_suite(void) {
  Suite *s = suite_create("dlq");
  TCase *body = tcase_create("body");
  tcase_add_test(body, body_carries_every_field);
  tcase_add_test(body, body_truncates_an_oversized_record);
  tcase_add_test(body, body_is_a_valid_sqs_message);
  tcase_add_test(body, open_refuses_bad_urls);
  tcase_add_test(body, file_sink_writes_json_lines);
  tcase_add_test(body, file_sink_removes_a_partial_line);
  suite_add_tcase(s, body);
  TCase *sqs = tcase_create("sqs");
  tcase_add_test(sqs, sqs_messages_land_with_body_and_attributes);
  tcase_add_test(sqs, sqs_batches_above_ten);
  tcase_add_test(sqs, sqs_batches_respect_the_size_limit);
  tcase_add_test(sqs, sqs_oversized_record_is_parked_truncated);
  tcase_add_test(sqs, sqs_queue_down_fails_every_message);
  tcase_add_test(sqs, sqs_transient_errors_are_retried);
  tcase_add_test(sqs, sqs_permanent_errors_are_not_retried);
  tcase_add_test(sqs, sqs_slow_queue_never_passes_the_deadline);
  tcase_add_test(sqs, sqs_fifo_group_and_dedup);
  tcase_add_test(sqs, sqs_signing);
  tcase_add_test(sqs, sqs_receive_and_delete);
  suite_add_tcase(s, sqs);
  TCase *rp = tcase_create("replay");
  tcase_add_test(rp, replay_from_sqs_merges_once_and_deletes_only_successes);
  tcase_add_test(rp, replay_keeps_records_whose_merge_fails);
  tcase_add_test(rp, replay_from_a_file_writes_what_remains);
  tcase_add_test(rp, replay_usage);
  suite_add_tcase(s, rp);
  return s;
}

int main(void) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  signal(SIGPIPE, SIG_IGN);
  start_server();
  int rc = tu_run_suite(dlq_suite());
  stop_server();
  curl_global_cleanup();
  return rc;
}

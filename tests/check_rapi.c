/*
 * check_rapi.c - the Runtime API client against the emulator
 * (tests/emulator/runtime-api.js), over real HTTP on 127.0.0.1.
 *
 * Each test starts its own emulator (`node`) with a scenario, reads its port
 * from the first stdout line, drives mm_rapi_* and checks both the client's
 * results and what the emulator saw (GET /control/transcript). The emulator
 * dies with the test process (PR_SET_PDEATHSIG) and has its own timeout.
 */
#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "rapi.h"
#include "testutil.h"

#define EMULATOR MM_TEST_DIR "/emulator/runtime-api.js"

/* ------------------------------------------------------------------ */
/* Emulator process                                                    */
/* ------------------------------------------------------------------ */

typedef struct emu {
  pid_t pid;
  int port;
  char hostport[64];
} emu_t;

static long long mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Starts the emulator on a scenario (JSON text) and waits (bounded) for
 * its {"port":N} line. */
static void emu_start(emu_t *e, const char *scenario) {
  const char *spath = tu_write_temp(".json", scenario);
  int fds[2];
  ck_assert_int_eq(pipe(fds), 0);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    execlp("node", "node", EMULATOR, spath, "--linger", "200", "--timeout",
           "30000", (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  e->pid = pid;
  char line[128];
  size_t n = 0;
  long long until = mono_ms() + 15000;
  while (n + 1 < sizeof line && (n == 0 || line[n - 1] != '\n')) {
    struct pollfd p = {fds[0], POLLIN, 0};
    int left = (int)(until - mono_ms());
    ck_assert_msg(left > 0, "emulator did not print its port");
    if (poll(&p, 1, left) <= 0) continue;
    ssize_t r = read(fds[0], line + n, 1);
    ck_assert_msg(r == 1, "emulator exited before printing its port");
    n++;
  }
  line[n] = '\0';
  close(fds[0]);
  ck_assert_msg(sscanf(line, "{\"port\":%d}", &e->port) == 1, "bad line %s",
                line);
  snprintf(e->hostport, sizeof e->hostport, "127.0.0.1:%d", e->port);
}

/* SIGTERM, then a bounded wait; SIGKILL as a last resort. */
static void emu_stop(emu_t *e) {
  if (e->pid <= 0) return;
  kill(e->pid, SIGTERM);
  for (int i = 0; i < 500; i++) {
    if (waitpid(e->pid, NULL, WNOHANG) == e->pid) {
      e->pid = 0;
      return;
    }
    usleep(10000);
  }
  kill(e->pid, SIGKILL);
  waitpid(e->pid, NULL, 0);
  e->pid = 0;
}

static size_t collect(char *p, size_t size, size_t n, void *ud) {
  mm_buf_add(ud, p, size * n);
  return size * n;
}

/* The emulator's transcript so far (malloc'd JSON text). */
static char *emu_transcript(emu_t *e) {
  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/control/transcript", e->port);
  CURL *c = curl_easy_init();
  mm_buf_t b = MM_BUF_INIT;
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_PROXY, "");
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
  CURLcode rc = curl_easy_perform(c);
  curl_easy_cleanup(c);
  ck_assert_msg(rc == CURLE_OK, "transcript: %s", curl_easy_strerror(rc));
  return mm_buf_take(&b, NULL);
}

#define ck_has(hay, needle) \
  ck_assert_msg(strstr((hay), (needle)) != NULL, "missing %s in %s", (needle), (hay))
#define ck_hasnt(hay, needle) \
  ck_assert_msg(strstr((hay), (needle)) == NULL, "unexpected %s in %s", (needle), (hay))

/* Counts occurrences of needle in hay. */
static int count_of(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) n++;
  return n;
}

/* A file of n bytes of 'a' (path in a static slot, like tu_write_temp). */
static const char *big_file(size_t n) {
  static char path[4][64];
  static int slot;
  char *p = path[slot++ % 4];
  snprintf(p, 64, "/tmp/mmrapibigXXXXXX");
  int fd = mkstemp(p);
  ck_assert_int_ge(fd, 0);
  char chunk[65536];
  memset(chunk, 'a', sizeof chunk);
  while (n) {
    size_t k = n < sizeof chunk ? n : sizeof chunk;
    ck_assert(write(fd, chunk, k) == (ssize_t)k);
    n -= k;
  }
  close(fd);
  return p;
}

/* ------------------------------------------------------------------ */
/* next                                                                */
/* ------------------------------------------------------------------ */

START_TEST(next_copies_headers_and_body) {
  emu_t e;
  emu_start(&e,
            "{\"invocations\":[{\"event\":{\"hello\":\"world\"},"
            "\"requestId\":\"req-1\",\"deadlineInMs\":5000,"
            "\"traceId\":\"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1\","
            "\"functionArn\":\"arn:aws:lambda:eu-west-1:1:function:f\"}]}");
  mm_rapi_t *r;
  mm_err_t err;
  ck_assert_int_eq(mm_rapi_create(&r, e.hostport, &err), 0);
  mm_invocation_t inv;
  long long before = wall_ms();
  ck_assert_int_eq(mm_rapi_next(r, &inv, &err), 0);
  long long after = wall_ms();
  ck_assert_int_eq(mm_rapi_last_status(r), 200);
  ck_assert_str_eq(inv.request_id, "req-1");
  ck_assert_str_eq(inv.trace_id,
                   "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1");
  ck_assert_str_eq(inv.function_arn, "arn:aws:lambda:eu-west-1:1:function:f");
  ck_assert_int_ge(inv.deadline_ms, before + 5000);
  ck_assert_int_le(inv.deadline_ms, after + 5000);
  ck_assert_uint_eq(inv.body_len, strlen("{\"hello\":\"world\"}"));
  ck_assert_str_eq(inv.body, "{\"hello\":\"world\"}");

  const char *resp = "{\"batchItemFailures\":[]}";
  ck_assert_int_eq(mm_rapi_respond(r, inv.request_id, resp, strlen(resp), &err), 0);
  ck_assert_int_eq(mm_rapi_last_status(r), 202);
  mm_invocation_free(&inv);
  ck_assert_ptr_null(inv.body);

  char *t = emu_transcript(&e);
  ck_has(t, "\"outcome\":\"response\"");
  ck_has(t, "\"body\":{\"batchItemFailures\":[]}");
  ck_has(t, "\"userAgent\":\"murmur-ddb/0.1\"");
  ck_has(t, "\"contentType\":\"application/json\"");
  ck_hasnt(t, "\"userAgent\":\"curl");
  free(t);
  mm_rapi_destroy(r);
  emu_stop(&e);
}
END_TEST

/* Header names are matched case-insensitively; an absent trace id and
 * deadline read as "" and 0; an empty event is "" (not NULL). */
START_TEST(next_header_names_any_case) {
  emu_t e;
  emu_start(&e,
            "{\"headerCase\":\"lower\",\"invocations\":["
            "{\"event\":[1,2],\"requestId\":\"low-1\",\"traceId\":\"Root=1-a\"},"
            "{\"eventRaw\":\"\",\"requestId\":\"low-2\",\"traceId\":null,"
            "\"headers\":{\"Lambda-Runtime-Deadline-Ms\":null}}]}");
  mm_rapi_t *r;
  mm_err_t err;
  ck_assert_int_eq(mm_rapi_create(&r, e.hostport, &err), 0);
  mm_invocation_t inv;
  ck_assert_int_eq(mm_rapi_next(r, &inv, &err), 0);
  ck_assert_str_eq(inv.request_id, "low-1");
  ck_assert_str_eq(inv.trace_id, "Root=1-a");
  ck_assert_int_gt(inv.deadline_ms, 0);
  ck_assert_str_eq(inv.function_arn,
                   "arn:aws:lambda:us-east-1:123456789012:function:test_function");
  ck_assert_int_eq(mm_rapi_respond(r, "low-1", "{}", 2, &err), 0);
  mm_invocation_free(&inv);

  ck_assert_int_eq(mm_rapi_next(r, &inv, &err), 0);
  ck_assert_str_eq(inv.request_id, "low-2");
  ck_assert_str_eq(inv.trace_id, "");
  ck_assert_int_eq(inv.deadline_ms, 0);
  ck_assert_ptr_nonnull(inv.body);
  ck_assert_uint_eq(inv.body_len, 0);
  ck_assert_str_eq(inv.body, "");
  ck_assert_int_eq(mm_rapi_respond(r, "low-2", NULL, 0, &err), 0);
  mm_invocation_free(&inv);
  mm_rapi_destroy(r);
  emu_stop(&e);
}
END_TEST

START_TEST(next_without_request_id_fails) {
  emu_t e;
  emu_start(&e, "{\"invocations\":[{\"event\":{},"
                "\"headers\":{\"Lambda-Runtime-Aws-Request-Id\":null}}]}");
  mm_rapi_t *r;
  mm_err_t err;
  ck_assert_int_eq(mm_rapi_create(&r, e.hostport, &err), 0);
  mm_invocation_t inv;
  ck_assert_int_eq(mm_rapi_next(r, &inv, &err), MM_EINVAL);
  ck_has(err.msg, "Lambda-Runtime-Aws-Request-Id");
  ck_assert_ptr_null(inv.body);
  ck_assert_str_eq(inv.request_id, "");
  mm_invocation_free(&inv); /* harmless after a failure */
  mm_rapi_destroy(r);
  emu_stop(&e);
}
END_TEST

/* A body over MM_RAPI_MAX_BODY fails cleanly, announced by Content-Length
 * or not (chunked), and keeps the request id so the event can be answered;
 * exactly MM_RAPI_MAX_BODY is accepted. */
START_TEST(next_body_over_limit_fails) {
  char scen[1024];
  const char *big = big_file(MM_RAPI_MAX_BODY + 1);
  const char *exact = big_file(MM_RAPI_MAX_BODY);
  snprintf(scen, sizeof scen,
           "{\"invocations\":["
           "{\"event\":\"%s\",\"requestId\":\"big-1\"},"
           "{\"event\":\"%s\",\"requestId\":\"big-2\",\"chunked\":true},"
           "{\"event\":\"%s\",\"requestId\":\"exact-3\"}]}",
           big, big, exact);
  emu_t e;
  emu_start(&e, scen);
  mm_rapi_t *r;
  mm_err_t err;
  ck_assert_int_eq(mm_rapi_create(&r, e.hostport, &err), 0);
  mm_invocation_t inv;
  ck_assert_int_eq(mm_rapi_next(r, &inv, &err), MM_EINVAL);
  ck_has(err.msg, "larger than");
  ck_assert_ptr_null(inv.body);
  ck_assert_str_eq(inv.request_id, "big-1");
  ck_assert_int_eq(mm_rapi_error(r, inv.request_id, "Runtime.EventTooLarge",
                                 "event too large", &err), 0);

  ck_assert_int_eq(mm_rapi_next(r, &inv, &err), MM_EINVAL);
  ck_has(err.msg, "larger than");
  ck_assert_str_eq(inv.request_id, "big-2");
  ck_assert_int_eq(mm_rapi_error(r, "big-2", "Runtime.EventTooLarge", "x", &err), 0);

  ck_assert_int_eq(mm_rapi_next(r, &inv, &err), 0);
  ck_assert_str_eq(inv.request_id, "exact-3");
  ck_assert_uint_eq(inv.body_len, MM_RAPI_MAX_BODY);
  ck_assert_int_eq(inv.body[0], 'a');
  ck_assert_int_eq(inv.body[inv.body_len - 1], 'a');
  ck_assert_int_eq(inv.body[inv.body_len], '\0');
  mm_invocation_free(&inv);
  ck_assert_int_eq(mm_rapi_respond(r, "exact-3", "{}", 2, &err), 0);

  char *t = emu_transcript(&e);
  ck_assert_int_eq(count_of(t, "\"outcome\":\"error\""), 2);
  ck_assert_int_eq(count_of(t, "\"outcome\":\"response\""), 1);
  ck_has(t, "\"requestId\":\"big-1\",\"round\":null,\"deliveredAt\"");
  ck_has(t, "\"requestId\":\"exact-3\"");
  free(t);
  mm_rapi_destroy(r);
  emu_stop(&e);
}
END_TEST

/* GET next has no total timeout: an event held back 1.5 s (longer than the
 * 1 s connect timeout) still arrives. */
START_TEST(next_waits_without_timeout) {
  emu_t e;
  emu_start(&e, "{\"invocations\":[{\"event\":{},\"requestId\":\"slow\","
                "\"delayMs\":1500}]}");
  mm_rapi_t *r;
  mm_err_t err;
  ck_assert_int_eq(mm_rapi_create(&r, e.hostport, &err), 0);
  mm_invocation_t inv;
  long long t0 = mono_ms();
  ck_assert_int_eq(mm_rapi_next(r, &inv, &err), 0);
  ck_assert_int_ge(mono_ms() - t0, 1400);
  ck_assert_str_eq(inv.request_id, "slow");
  mm_invocation_free(&inv);
  mm_rapi_destroy(r);
  emu_stop(&e);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Connections                                                         */
/* ------------------------------------------------------------------ */

/* The API listens late: next retries with backoff and then succeeds. */
START_TEST(connect_retried_until_listening) {
  emu_t e;
  emu_start(&e, "{\"refuseFirstMs\":300,\"invocations\":[{\"event\":{},"
                "\"requestId\":\"late\"}]}");
  mm_rapi_t *r;
  mm_err_t err;
  ck_assert_int_eq(mm_rapi_create(&r, e.hostport, &err), 0);
  mm_invocation_t inv;
  long long t0 = mono_ms();
  ck_assert_int_eq(mm_rapi_next(r, &inv, &err), 0);
  long long took = mono_ms() - t0;
  ck_assert_int_ge(took, 250);
  ck_assert_int_lt(took, 5000);
  ck_assert_str_eq(inv.request_id, "late");
  mm_invocation_free(&inv);
  mm_rapi_destroy(r);
  emu_stop(&e);
}
END_TEST

/* Nobody listens: MM_EIO after every attempt and its backoff, status 0. */
START_TEST(connect_refused_gives_eio) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof a;
  ck_assert_int_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0);
  ck_assert_int_eq(getsockname(s, (struct sockaddr *)&a, &al), 0);
  close(s); /* bound, never listened, closed: connects are refused */
  char hp[64];
  snprintf(hp, sizeof hp, "127.0.0.1:%d", ntohs(a.sin_port));
  mm_rapi_t *r;
  mm_err_t err;
  ck_assert_int_eq(mm_rapi_create(&r, hp, &err), 0);
  mm_invocation_t inv;
  long long t0 = mono_ms();
  ck_assert_int_eq(mm_rapi_next(r, &inv, &err), MM_EIO);
  long long took = mono_ms() - t0;
  long total = 0, b = MM_RAPI_CONNECT_BACKOFF_MS;
  for (int i = 1; i < MM_RAPI_CONNECT_ATTEMPTS; i++, b *= 2) total += b;
  ck_assert_int_ge(took, total - 20);
  ck_assert_int_lt(took, total + 3000);
  ck_assert_int_eq(mm_rapi_last_status(r), 0);
  ck_has(err.msg, "attempts");
  ck_assert_ptr_null(inv.body);
  /* Posts go through the same retries (each call takes the full backoff,
   * so only one is tried here). */
  ck_assert_int_eq(mm_rapi_init_error(r, "Runtime.InitError", "m", &err), MM_EIO);
  ck_assert_int_eq(mm_rapi_last_status(r), 0);
  mm_rapi_destroy(r);
}
END_TEST

START_TEST(create_rejects_bad_address) {
  mm_rapi_t *r = (mm_rapi_t *)1;
  mm_err_t err;
  ck_assert_int_eq(mm_rapi_create(&r, NULL, &err), MM_EINVAL);
  ck_assert_ptr_null(r);
  ck_has(err.msg, "AWS_LAMBDA_RUNTIME_API");
  ck_assert_int_eq(mm_rapi_create(&r, "", &err), MM_EINVAL);
  ck_assert_int_eq(mm_rapi_create(&r, "127.0.0.1:1/x", &err), MM_EINVAL);
  ck_assert_int_eq(mm_rapi_create(&r, "127.0.0.1: 1", &err), MM_EINVAL);
  mm_rapi_destroy(NULL);
}
END_TEST

/* One kept-alive connection serves a run of invocations; posts carry a
 * Content-Length, never "Expect:" or chunked encoding. */
START_TEST(one_connection_reused) {
  emu_t e;
  emu_start(&e, "{\"invocations\":[{\"event\":{}},{\"event\":{}},{\"event\":{}}]}");
  mm_rapi_t *r;
  mm_err_t err;
  ck_assert_int_eq(mm_rapi_create(&r, e.hostport, &err), 0);
  for (int i = 0; i < 3; i++) {
    mm_invocation_t inv;
    ck_assert_int_eq(mm_rapi_next(r, &inv, &err), 0);
    if (i == 1)
      ck_assert_int_eq(mm_rapi_error(r, inv.request_id, "Function.X", "m", &err), 0);
    else
      ck_assert_int_eq(mm_rapi_respond(r, inv.request_id, "{}", 2, &err), 0);
    mm_invocation_free(&inv);
  }
  char *t = emu_transcript(&e);
  ck_assert_int_eq(count_of(t, "\"connection\":1,"), 6);
  ck_hasnt(t, "\"connection\":2,");
  ck_assert_int_eq(count_of(t, "\"transferEncoding\":null"), 6);
  ck_assert_int_eq(count_of(t, "\"expect\":null"), 6);
  ck_assert_int_eq(count_of(t, "\"contentLength\":2,"), 2);
  free(t);
  mm_rapi_destroy(r);
  emu_stop(&e);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Posts                                                               */
/* ------------------------------------------------------------------ */

START_TEST(double_respond_is_einval) {
  emu_t e;
  emu_start(&e, "{\"invocations\":[{\"event\":{},\"requestId\":\"twice\"}]}");
  mm_rapi_t *r;
  mm_err_t err;
  ck_assert_int_eq(mm_rapi_create(&r, e.hostport, &err), 0);
  mm_invocation_t inv;
  ck_assert_int_eq(mm_rapi_next(r, &inv, &err), 0);
  ck_assert_int_eq(mm_rapi_respond(r, "twice", "{}", 2, &err), 0);
  ck_assert_int_eq(mm_rapi_respond(r, "twice", "{}", 2, &err), MM_EINVAL);
  ck_assert_int_eq(mm_rapi_last_status(r), 403);
  ck_has(err.msg, "403");
  ck_has(err.msg, "InvalidStateTransition");
  ck_assert_int_eq(mm_rapi_error(r, "twice", "Function.X", "m", &err), MM_EINVAL);
  ck_assert_int_eq(mm_rapi_last_status(r), 403);
  /* Not the current invocation: 400. */
  ck_assert_int_eq(mm_rapi_respond(r, "other", "{}", 2, &err), MM_EINVAL);
  ck_assert_int_eq(mm_rapi_last_status(r), 400);
  ck_has(err.msg, "InvalidRequestID");
  ck_assert_int_eq(mm_rapi_respond(r, "", "{}", 2, &err), MM_EINVAL);
  mm_invocation_free(&inv);
  char *t = emu_transcript(&e);
  ck_assert_int_eq(count_of(t, "\"status\":403"), 4); /* log + posts */
  ck_has(t, "\"rejected\":[{\"kind\":\"response\",\"requestId\":\"other\",\"status\":400");
  free(t);
  mm_rapi_destroy(r);
  emu_stop(&e);
}
END_TEST

/* The RIE's limit is 6 MiB + 100 bytes: one byte more is 413 (MM_ELIMIT),
 * the limit itself is accepted. */
START_TEST(oversized_response_is_elimit) {
  emu_t e;
  emu_start(&e, "{\"invocations\":[{\"event\":{},\"requestId\":\"big\"},"
                "{\"event\":{},\"requestId\":\"fits\"}]}");
  const size_t limit = 6u * 1024 * 1024 + 100;
  char *body = malloc(limit + 1);
  ck_assert_ptr_nonnull(body);
  memset(body, ' ', limit + 1);
  body[0] = '{';
  body[limit] = '}'; /* valid JSON, limit + 1 bytes */
  mm_rapi_t *r;
  mm_err_t err;
  ck_assert_int_eq(mm_rapi_create(&r, e.hostport, &err), 0);
  mm_invocation_t inv;
  ck_assert_int_eq(mm_rapi_next(r, &inv, &err), 0);
  ck_assert_int_eq(mm_rapi_respond(r, "big", body, limit + 1, &err), MM_ELIMIT);
  ck_assert_int_eq(mm_rapi_last_status(r), 413);
  ck_has(err.msg, "RequestEntityTooLarge");
  /* As in the RIE, the invocation is over: a follow-up error post is 403. */
  ck_assert_int_eq(mm_rapi_error(r, "big", "Function.ResponseSizeTooLarge", "m", &err),
                   MM_EINVAL);
  mm_invocation_free(&inv);

  ck_assert_int_eq(mm_rapi_next(r, &inv, &err), 0);
  body[limit - 1] = '}';
  ck_assert_int_eq(mm_rapi_respond(r, "fits", body, limit, &err), 0);
  mm_invocation_free(&inv);
  free(body);

  char *t = emu_transcript(&e);
  ck_has(t, "\"contentLength\":6291557,\"transferEncoding\":null,\"expect\":null");
  ck_has(t, "\"contentLength\":6291556,\"transferEncoding\":null,\"expect\":null");
  ck_has(t, "\"errorType\":\"Function.ResponseSizeTooLarge\",\"status\":413");
  free(t);
  mm_rapi_destroy(r);
  emu_stop(&e);
}
END_TEST

/* The error body is {"errorMessage","errorType","stackTrace":[]} with the
 * message escaped, the type in Lambda-Runtime-Function-Error-Type; the
 * emulator normalises the type as the RIE does. */
START_TEST(error_post_and_type_normalisation) {
  static const struct {
    const char *sent, *raw, *normalised;
  } cases[] = {
      {"Unhandled", "Unhandled", "Runtime.Unknown"},
      {"Function.oops", "Function.oops", "Function.Unknown"},
      {"Runtime.InitError", "Runtime.InitError", "Runtime.InitError"},
      {"Function.InvalidEvent", "Function.InvalidEvent", "Function.InvalidEvent"},
      {"xRuntime.NotAnchored", "xRuntime.NotAnchored", "xRuntime.NotAnchored"},
      {NULL, "Runtime.Unknown", "Runtime.Unknown"},
      {"Bad\r\nX-Injected: 1", "Bad__X-Injected:_1", "Runtime.Unknown"},
  };
  const int n = (int)(sizeof cases / sizeof cases[0]);
  mm_buf_t scen = MM_BUF_INIT;
  mm_buf_adds(&scen, "{\"invocations\":[");
  for (int i = 0; i < n; i++)
    mm_buf_printf(&scen, "%s{\"event\":{},\"requestId\":\"e%d\"}", i ? "," : "", i);
  mm_buf_adds(&scen, "]}");
  emu_t e;
  emu_start(&e, scen.data);
  mm_buf_free(&scen);
  mm_rapi_t *r;
  mm_err_t err;
  ck_assert_int_eq(mm_rapi_create(&r, e.hostport, &err), 0);
  for (int i = 0; i < n; i++) {
    mm_invocation_t inv;
    ck_assert_int_eq(mm_rapi_next(r, &inv, &err), 0);
    const char *msg = i == 0 ? "say \"hi\"\nline2\x01 \xff end" : "m";
    ck_assert_int_eq(mm_rapi_error(r, inv.request_id, cases[i].sent, msg, &err), 0);
    ck_assert_int_eq(mm_rapi_last_status(r), 202);
    mm_invocation_free(&inv);
  }
  char *t = emu_transcript(&e);
  ck_hasnt(t, "X-Injected\":");
  for (int i = 0; i < n; i++) {
    char want[256];
    snprintf(want, sizeof want,
             "\"requestId\":\"e%d\",", i);
    const char *at = strstr(t, want);
    ck_assert_msg(at != NULL, "no invocation e%d", i);
    const char *posts = strstr(at, "\"posts\":");
    ck_assert_ptr_nonnull(posts);
    snprintf(want, sizeof want, "\"rawErrorType\":\"%s\",\"errorType\":\"%s\"",
             cases[i].raw, cases[i].normalised);
    const char *hit = strstr(at, want);
    ck_assert_msg(hit && hit < posts, "e%d: missing %s", i, want);
    snprintf(want, sizeof want, "\"errorType\":\"%s\",\"stackTrace\":[]}",
             cases[i].raw);
    hit = strstr(at, want);
    ck_assert_msg(hit && hit < posts, "e%d: body missing %s", i, want);
  }
  /* Control characters escaped, the invalid byte replaced by U+FFFD. */
  ck_has(t, "\"body\":{\"errorMessage\":\"say \\\"hi\\\"\\nline2\\u0001 \xEF\xBF\xBD end\"");
  /* Each accepted error is in the invocation's "error" and in its posts. */
  ck_assert_int_eq(count_of(t, "\"contentType\":\"application/json\",\"rawErrorType\""), 2 * n);
  free(t);
  mm_rapi_destroy(r);
  emu_stop(&e);
}
END_TEST

START_TEST(init_error_posted) {
  emu_t e;
  emu_start(&e, "{\"invocations\":[{\"event\":{}}]}");
  mm_rapi_t *r;
  mm_err_t err;
  ck_assert_int_eq(mm_rapi_create(&r, e.hostport, &err), 0);
  ck_assert_int_eq(mm_rapi_init_error(r, "Runtime.InitError",
                                      "decode.lua:3: unexpected symbol near '}'",
                                      &err), 0);
  ck_assert_int_eq(mm_rapi_last_status(r), 202);
  /* Init failed: no second init error, no invocation. */
  ck_assert_int_eq(mm_rapi_init_error(r, "Runtime.InitError", "again", &err), MM_EINVAL);
  ck_assert_int_eq(mm_rapi_last_status(r), 403);
  mm_invocation_t inv;
  ck_assert_int_eq(mm_rapi_next(r, &inv, &err), MM_EINVAL);
  ck_assert_int_eq(mm_rapi_last_status(r), 403);
  char *t = emu_transcript(&e);
  ck_has(t, "\"ended\":\"initError\"");
  ck_has(t, "\"initError\":{\"kind\":\"initError\",\"status\":202");
  ck_has(t, "\"rawErrorType\":\"Runtime.InitError\",\"errorType\":\"Runtime.InitError\"");
  ck_has(t, "\"body\":{\"errorMessage\":\"decode.lua:3: unexpected symbol near '}'\","
            "\"errorType\":\"Runtime.InitError\",\"stackTrace\":[]}");
  ck_has(t, "\"invocations\":[]");
  free(t);
  mm_rapi_destroy(r);
  emu_stop(&e);
}
END_TEST

/* A 500 from next or from a post means "exit": MM_EIO with status 500. */
START_TEST(status_500_is_eio) {
  emu_t e;
  emu_start(&e, "{\"failNextWith500AfterInvocations\":2,\"invocations\":["
                "{\"event\":{},\"requestId\":\"ok\"},"
                "{\"event\":{},\"requestId\":\"p500\",\"postStatus\":500},"
                "{\"event\":{}}]}");
  mm_rapi_t *r;
  mm_err_t err;
  ck_assert_int_eq(mm_rapi_create(&r, e.hostport, &err), 0);
  mm_invocation_t inv;
  ck_assert_int_eq(mm_rapi_next(r, &inv, &err), 0);
  ck_assert_int_eq(mm_rapi_respond(r, "ok", "{}", 2, &err), 0);
  mm_invocation_free(&inv);
  ck_assert_int_eq(mm_rapi_next(r, &inv, &err), 0);
  ck_assert_str_eq(inv.request_id, "p500");
  ck_assert_int_eq(mm_rapi_respond(r, "p500", "{}", 2, &err), MM_EIO);
  ck_assert_int_eq(mm_rapi_last_status(r), 500);
  ck_assert_int_eq(mm_rapi_error(r, "p500", "Function.X", "m", &err), MM_EIO);
  mm_invocation_free(&inv);
  /* The emulator still counts p500 as running: its next is refused with
   * 403; the scenario's 500 comes for the runtime that answered. */
  char *t = emu_transcript(&e);
  ck_assert_int_eq(count_of(t, "\"status\":500"), 4);
  free(t);
  mm_rapi_destroy(r);
  emu_stop(&e);

  emu_start(&e, "{\"failNextWith500AfterInvocations\":1,\"invocations\":["
                "{\"event\":{},\"requestId\":\"one\"},{\"event\":{}}]}");
  ck_assert_int_eq(mm_rapi_create(&r, e.hostport, &err), 0);
  ck_assert_int_eq(mm_rapi_next(r, &inv, &err), 0);
  ck_assert_int_eq(mm_rapi_respond(r, "one", "{}", 2, &err), 0);
  mm_invocation_free(&inv);
  ck_assert_int_eq(mm_rapi_next(r, &inv, &err), MM_EIO);
  ck_assert_int_eq(mm_rapi_last_status(r), 500);
  ck_has(err.msg, "InternalServerError");
  ck_assert_ptr_null(inv.body);
  t = emu_transcript(&e);
  ck_has(t, "\"ended\":\"500\"");
  free(t);
  mm_rapi_destroy(r);
  emu_stop(&e);
}
END_TEST

static Suite *rapi_suite(void) {
  Suite *s = suite_create("rapi");
  TCase *next = tcase_create("next");
  tcase_set_timeout(next, 60);
  tcase_add_test(next, next_copies_headers_and_body);
  tcase_add_test(next, next_header_names_any_case);
  tcase_add_test(next, next_without_request_id_fails);
  tcase_add_test(next, next_body_over_limit_fails);
  tcase_add_test(next, next_waits_without_timeout);
  suite_add_tcase(s, next);
  TCase *conn = tcase_create("connections");
  tcase_set_timeout(conn, 60);
  tcase_add_test(conn, connect_retried_until_listening);
  tcase_add_test(conn, connect_refused_gives_eio);
  tcase_add_test(conn, create_rejects_bad_address);
  tcase_add_test(conn, one_connection_reused);
  suite_add_tcase(s, conn);
  TCase *posts = tcase_create("posts");
  tcase_set_timeout(posts, 60);
  tcase_add_test(posts, double_respond_is_einval);
  tcase_add_test(posts, oversized_response_is_elimit);
  tcase_add_test(posts, error_post_and_type_normalisation);
  tcase_add_test(posts, init_error_posted);
  tcase_add_test(posts, status_500_is_eio);
  suite_add_tcase(s, posts);
  return s;
}

int main(void) {
  return tu_run_suite(rapi_suite());
}

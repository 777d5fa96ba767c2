/*
 * check_ddb.c - the DynamoDB client, store and dedup against real servers.
 *
 * main() starts two Node servers from tests/servers (installed by
 * scripts/test with `npm ci`) on 127.0.0.1 before any test runs and stops
 * them after the last:
 *   dynalite.js        an in-memory DynamoDB-compatible server (dynalite),
 *                      holding the store table mm_store (pk S, sk N) and the
 *                      dedup table mm_dedup (pk S), created through our own
 *                      client;
 *   sigv4-capture.js   records each request and re-signs it with the AWS
 *                      SDK's signer (@smithy/signature-v4), for the SigV4
 *                      proof; it also serves canned error answers.
 * When Node or the packages are missing every test fails with a message
 * saying to run scripts/test: the suite never passes without its servers.
 *
 * Expected values are computed here from the inputs (integer cents for
 * sums, a plain comparison for min/max, a scan for first/last, sorting for
 * sets, the true distinct count and the in-process memory store for
 * sketches), never copied from the code under test.
 */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agg.h"
#include "aws.h"
#include "ddb.h"
#include "dedup.h"
#include "json.h"
#include "log.h"
#include "pipeline.h"
#include "script.h"
#include "retry.h"
#include "store.h"
#include "store_dynamodb.h"
#include "testutil.h"

#define SERVERS MM_TEST_DIR "/servers"
#define STORE_TABLE "mm_store"
#define DEDUP_TABLE "mm_dedup"
/* Credentials the tests sign with (the capture server knows them). */
#define KEY_ID "AKIDMURMURTEST"
#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYTESTKEY"
#define TOKEN_KEY_ID "ASIAMURMURTEST"
#define TOKEN_SECRET "tokenSecret/abc+def"
#define TOKEN "IQoJb3JpZ2luX2VjEMurmur//////////wEaCXVzLWVhc3QtMSJGMEQCIH+test=="
#define WRONG_KEY_ID "AKIDWRONGSECRET"

/* ------------------------------------------------------------------ */
/* Servers                                                             */
/* ------------------------------------------------------------------ */

typedef struct server {
  pid_t pid;
  int port;
  int in_fd; /* the child's stdin: closing it stops the server */
} server_t;

static server_t g_ddb = {-1, 0, -1}, g_cap = {-1, 0, -1};
static char g_setup_err[2048];
static char g_cap_file[512];

/* Starts `node SCRIPT args...` (args NULL-terminated, may be NULL) and
 * waits (bounded) for its "PORT n" line. */
static int start_node(server_t *s, const char *script, const char *const *args) {
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
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", SERVERS, script);
    const char *argv[16] = {"node", path};
    int k = 2;
    for (size_t i = 0; args && args[i] && k < 15; i++) argv[k++] = args[i];
    argv[k] = NULL;
    execvp("node", (char *const *)argv);
    _exit(127);
  }
  close(out[1]);
  close(in[0]);
  s->pid = pid;
  s->in_fd = in[1];
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
  if (sscanf(line, "PORT %d", &s->port) != 1 || s->port <= 0) {
    snprintf(g_setup_err, sizeof g_setup_err,
             "node %s/%s did not start (got \"%s\"): are Node and the test servers "
             "installed? Run scripts/test (it runs npm ci in tests/servers)",
             SERVERS, script, line);
    return -1;
  }
  return 0;
}

static void stop_node(server_t *s) {
  if (s->pid <= 0) return;
  if (s->in_fd >= 0) close(s->in_fd);
  kill(s->pid, SIGTERM);
  for (int i = 0; i < 100; i++) {
    if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
      s->pid = -1;
      return;
    }
    mm_sleep_ms(20);
  }
  kill(s->pid, SIGKILL);
  waitpid(s->pid, NULL, 0);
  s->pid = -1;
}

/* Points the AWS settings of this (forked) test at dynalite. */
static void use_dynalite(void) {
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d", g_ddb.port);
  setenv("AWS_ENDPOINT_URL_DYNAMODB", url, 1);
  unsetenv("AWS_ENDPOINT_URL");
  setenv("AWS_REGION", "us-east-1", 1);
  setenv("AWS_ACCESS_KEY_ID", KEY_ID, 1);
  setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
  unsetenv("AWS_SESSION_TOKEN");
}

static void use_capture(void) {
  use_dynalite();
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d", g_cap.port);
  setenv("AWS_ENDPOINT_URL_DYNAMODB", url, 1);
}

static void need_servers(void) {
  ck_assert_msg(g_setup_err[0] == '\0', "%s", g_setup_err);
}

/* Creates a table through our own client and waits until it is ACTIVE. */
static int create_table(mm_ddb_t *c, const char *name, int with_sort) {
  mm_ddb_req_t r;
  mm_ddb_req_init(&r, "CreateTable", name, 0);
  mm_buf_printf(&r.body,
                "{\"TableName\":\"%s\",\"BillingMode\":\"PAY_PER_REQUEST\","
                "\"AttributeDefinitions\":[{\"AttributeName\":\"pk\",\"AttributeType\":\"S\"}%s],"
                "\"KeySchema\":[{\"AttributeName\":\"pk\",\"KeyType\":\"HASH\"}%s]}",
                name, with_sort ? ",{\"AttributeName\":\"sk\",\"AttributeType\":\"N\"}" : "",
                with_sort ? ",{\"AttributeName\":\"sk\",\"KeyType\":\"RANGE\"}" : "");
  int rc = mm_ddb_call(c, &r, 0);
  if (rc) {
    snprintf(g_setup_err, sizeof g_setup_err, "CreateTable %s: %s", name, r.err.msg);
    mm_ddb_req_free(&r);
    return rc;
  }
  for (int i = 0; i < 100; i++) {
    mm_ddb_req_free(&r);
    mm_ddb_req_init(&r, "DescribeTable", name, 0);
    mm_buf_printf(&r.body, "{\"TableName\":\"%s\"}", name);
    if (mm_ddb_call(c, &r, 0) == 0 && r.resp.data && strstr(r.resp.data, "\"ACTIVE\"")) {
      mm_ddb_req_free(&r);
      return 0;
    }
    mm_sleep_ms(20);
  }
  snprintf(g_setup_err, sizeof g_setup_err, "table %s never became ACTIVE", name);
  mm_ddb_req_free(&r);
  return -1;
}

static void start_servers(void) {
  char probe[512];
  snprintf(probe, sizeof probe, "%s/node_modules/dynalite/package.json", SERVERS);
  if (access(probe, R_OK) != 0) {
    snprintf(g_setup_err, sizeof g_setup_err,
             "dynalite is not installed (%s missing): run scripts/test, which runs "
             "`npm ci` in tests/servers", probe);
    return;
  }
  snprintf(probe, sizeof probe, "%s/node_modules/@smithy/signature-v4/package.json", SERVERS);
  if (access(probe, R_OK) != 0) {
    snprintf(g_setup_err, sizeof g_setup_err,
             "@smithy/signature-v4 is not installed (%s missing): run scripts/test", probe);
    return;
  }
  if (start_node(&g_ddb, "dynalite.js", NULL)) return;
  snprintf(g_cap_file, sizeof g_cap_file, "/tmp/mm-sigv4-%d.jsonl", (int)getpid());
  unlink(g_cap_file);
  char creds[1024];
  snprintf(creds, sizeof creds,
           "[{\"id\":\"%s\",\"secret\":\"%s\",\"token\":null},"
           "{\"id\":\"%s\",\"secret\":\"%s\",\"token\":\"%s\"},"
           "{\"id\":\"%s\",\"secret\":\"not-the-secret-the-client-uses\",\"token\":null}]",
           KEY_ID, SECRET, TOKEN_KEY_ID, TOKEN_SECRET, TOKEN, WRONG_KEY_ID);
  const char *cap_args[] = {g_cap_file, creds, NULL};
  if (start_node(&g_cap, "sigv4-capture.js", cap_args)) return;
  /* Tables, through the client under test. */
  use_dynalite();
  mm_ddb_t *c = NULL;
  mm_err_t err;
  if (mm_ddb_open(&c, 4, 5000, &err)) {
    snprintf(g_setup_err, sizeof g_setup_err, "mm_ddb_open: %s", err.msg);
    return;
  }
  if (!create_table(c, STORE_TABLE, 1)) create_table(c, DEDUP_TABLE, 0);
  /* Closed before the tests fork: no connection is shared with them. */
  mm_ddb_destroy(c);
}

/* ------------------------------------------------------------------ */
/* Deltas, stores, queries                                             */
/* ------------------------------------------------------------------ */

static void num_delta(mm_delta_t *d, mm_agg_t agg, const char *text) {
  memset(d, 0, sizeof *d);
  d->agg = agg;
  d->weight = 1;
  d->v.is_num = 1;
  mm_err_t e;
  ck_assert_msg(mm_dec_parse(&d->v.num, text, strlen(text), &e) == 0, "%s: %s", text, e.msg);
}

static void str_delta(mm_delta_t *d, mm_agg_t agg, const char *s) {
  memset(d, 0, sizeof *d);
  d->agg = agg;
  d->weight = 1;
  d->v.str = strdup(s);
  d->v.len = strlen(s);
}

/* A delta from "n:TEXT" (number) or "s:TEXT" (string). */
static void spec_delta(mm_delta_t *d, mm_agg_t agg, const char *spec) {
  if (spec[0] == 'n') num_delta(d, agg, spec + 2);
  else str_delta(d, agg, spec + 2);
}

static mm_store_t *open_store(const char *table, int inflight, int64_t timeout_ms) {
  mm_store_t *s = NULL;
  mm_err_t err;
  mm_store_opts_t o = {inflight, timeout_ms};
  int rc = mm_store_dynamodb_open(&s, table, &o, &err);
  ck_assert_msg(rc == 0, "open store: %s", err.msg);
  return s;
}

/* Merges one delta into (key, bucket) and returns the status. */
static int merge1(mm_store_t *s, const char *key, int64_t bucket, int64_t ttl,
                  const mm_delta_t *d, mm_err_t *err_out) {
  mm_merge_t op = {.key = key, .key_len = strlen(key), .bucket = bucket, .ttl = ttl, .delta = d};
  mm_store_merge(s, &op, 1, 0);
  if (err_out) *err_out = op.err;
  return op.status;
}

#define MAX_ROWS 64
typedef struct rows {
  int n;
  int64_t bucket[MAX_ROWS];
  int64_t ttl[MAX_ROWS];
  char *value[MAX_ROWS];
  char *key[MAX_ROWS];
} rows_t;

static int collect(void *ud, const mm_row_t *r) {
  rows_t *rows = ud;
  if (rows->n >= MAX_ROWS) return 1;
  rows->bucket[rows->n] = r->bucket;
  rows->ttl[rows->n] = r->ttl;
  rows->value[rows->n] = strdup(r->value_json);
  rows->key[rows->n] = strdup(r->key);
  rows->n++;
  return 0;
}

static void rows_free(rows_t *r) {
  for (int i = 0; i < r->n; i++) {
    free(r->value[i]);
    free(r->key[i]);
  }
  r->n = 0;
}

static void query(mm_store_t *s, const char *key, const int64_t *bucket, rows_t *rows) {
  memset(rows, 0, sizeof *rows);
  mm_err_t err;
  int rc = mm_store_query(s, key, bucket, collect, rows, &err);
  ck_assert_msg(rc == 0, "query %s: %s", key, err.msg);
}

/* The value JSON of (key, bucket); NULL when there is no row (caller frees). */
static char *value_of(mm_store_t *s, const char *key, int64_t bucket) {
  rows_t rows;
  query(s, key, &bucket, &rows);
  ck_assert_int_le(rows.n, 1);
  char *v = rows.n ? strdup(rows.value[0]) : NULL;
  rows_free(&rows);
  return v;
}

#define ASSERT_VALUE(s, key, bucket, expected)                                  \
  do {                                                                          \
    char *v_ = value_of((s), (key), (bucket));                                  \
    ck_assert_msg(v_ != NULL, "no row for %s", (key));                          \
    ck_assert_msg(strcmp(v_, (expected)) == 0, "%s: got %s, expected %s", (key), \
                  v_, (expected));                                              \
    free(v_);                                                                   \
  } while (0)

/* Integer cents as canonical decimal text ("12.5", "-0.05", "3"). */
static void cents_text(long long c, char *out, size_t cap) {
  long long a = c < 0 ? -c : c;
  char frac[3];
  snprintf(frac, sizeof frac, "%02lld", a % 100);
  if (frac[1] == '0') frac[1] = '\0';
  if (frac[0] == '0' && frac[1] == '\0') frac[0] = '\0';
  snprintf(out, cap, "%s%lld%s%s", c < 0 ? "-" : "", a / 100, frac[0] ? "." : "", frac);
}

/* A tiny deterministic generator (xorshift) for test inputs. */
static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

/* ------------------------------------------------------------------ */
/* Aggregates                                                          */
/* ------------------------------------------------------------------ */

START_TEST(sum_is_exact_decimal) {
  need_servers();
  use_dynalite();
  mm_store_t *s = open_store(STORE_TABLE, 0, 0);
  mm_delta_t a, b;
  num_delta(&a, MM_AGG_SUM, "0.1");
  num_delta(&b, MM_AGG_SUM, "0.2");
  ck_assert_int_eq(merge1(s, "sum#exact", 0, 0, &a, NULL), 0);
  ck_assert_int_eq(merge1(s, "sum#exact", 0, 0, &b, NULL), 0);
  ASSERT_VALUE(s, "sum#exact", 0, "0.3");

  /* 38 nines + 1 = 1E+38 (still one significant digit). */
  char nines[40], big[64];
  memset(nines, '9', 38);
  nines[38] = '\0';
  num_delta(&a, MM_AGG_SUM, nines);
  num_delta(&b, MM_AGG_SUM, "1");
  ck_assert_int_eq(merge1(s, "sum#38", 0, 0, &a, NULL), 0);
  ck_assert_int_eq(merge1(s, "sum#38", 0, 0, &b, NULL), 0);
  big[0] = '1';
  memset(big + 1, '0', 38);
  big[39] = '\0';
  ASSERT_VALUE(s, "sum#38", 0, big);

  /* A batch of signed cents, all into one row concurrently. */
  enum { N = 60 };
  mm_delta_t d[N];
  mm_merge_t ops[N];
  long long total = 0;
  for (int i = 0; i < N; i++) {
    long long c = (long long)(rnd() % 200001) - 100000; /* -1000.00 .. 1000.00 */
    char t[64];
    cents_text(c, t, sizeof t);
    total += c;
    num_delta(&d[i], MM_AGG_SUM, t);
    ops[i] = (mm_merge_t){.key = "sum#batch", .bucket = 0, .delta = &d[i]};
  }
  ck_assert_int_eq(mm_store_merge(s, ops, N, 0), 0);
  for (int i = 0; i < N; i++) ck_assert_msg(ops[i].status == 0, "op %d: %s", i, ops[i].err.msg);
  char expect[64];
  cents_text(total, expect, sizeof expect);
  ASSERT_VALUE(s, "sum#batch", 0, expect);
  mm_store_destroy(s);
}
END_TEST

START_TEST(count_counts) {
  need_servers();
  use_dynalite();
  mm_store_t *s = open_store(STORE_TABLE, 0, 0);
  enum { N = 25 };
  mm_delta_t d[N];
  mm_merge_t ops[N];
  int expected = 0;
  for (int i = 0; i < N; i++) {
    char t[16];
    int w = 1 + i % 3; /* coalesced counts arrive as n > 1 */
    snprintf(t, sizeof t, "%d", w);
    expected += w;
    num_delta(&d[i], MM_AGG_COUNT, t);
    ops[i] = (mm_merge_t){.key = "count#1", .delta = &d[i]};
  }
  mm_store_merge(s, ops, N, 0);
  for (int i = 0; i < N; i++) ck_assert_msg(ops[i].status == 0, "op %d: %s", i, ops[i].err.msg);
  char e[16];
  snprintf(e, sizeof e, "%d", expected);
  ASSERT_VALUE(s, "count#1", 0, e);
  mm_store_destroy(s);
}
END_TEST

/* agg.h order: numbers (by value) before strings (bytewise). */
static int spec_cmp(const char *a, const char *b) {
  if (a[0] != b[0]) return a[0] == 'n' ? -1 : 1;
  if (a[0] == 'n') {
    double x = strtod(a + 2, NULL), y = strtod(b + 2, NULL);
    return (x > y) - (x < y);
  }
  return strcmp(a + 2, b + 2);
}

/* The JSON a spec renders as (numbers here are already canonical). */
static void spec_json(const char *spec, char *out, size_t cap) {
  if (spec[0] == 'n') snprintf(out, cap, "%s", spec + 2);
  else snprintf(out, cap, "\"%s\"", spec + 2);
}

static void check_extreme(mm_store_t *s, mm_agg_t agg, const char *key, const char *const *specs,
                          int n, int concurrent) {
  mm_delta_t d[16];
  mm_merge_t ops[16];
  const char *best = NULL;
  for (int i = 0; i < n; i++) {
    spec_delta(&d[i], agg, specs[i]);
    ops[i] = (mm_merge_t){.key = key, .delta = &d[i]};
    int c = best ? spec_cmp(specs[i], best) : 0;
    if (!best || (agg == MM_AGG_MIN ? c < 0 : c > 0)) best = specs[i];
  }
  if (concurrent) {
    mm_store_merge(s, ops, (size_t)n, 0);
  } else {
    for (int i = 0; i < n; i++) mm_store_merge(s, &ops[i], 1, 0);
  }
  for (int i = 0; i < n; i++) ck_assert_msg(ops[i].status == 0, "%s op %d: %s", key, i, ops[i].err.msg);
  char e[128];
  spec_json(best, e, sizeof e);
  ASSERT_VALUE(s, key, 0, e);
  for (int i = 0; i < n; i++) mm_delta_free(&d[i]);
}

START_TEST(min_max_numbers_and_strings) {
  need_servers();
  use_dynalite();
  mm_store_t *s = open_store(STORE_TABLE, 0, 0);
  const char *mixed[] = {"s:pear", "n:42", "s:apple", "n:-7", "s:zebra", "n:100"};
  const char *strs[] = {"s:kiwi", "s:Apple", "s:apple", "s:\xc3\xa9t\xc3\xa9", "s:b"};
  /* 1E+3 is canonical as 1000. */
  const char *nums_canon[] = {"n:5", "n:-2.5", "n:17", "n:3.25", "n:-2.5", "n:1000", "n:0.001"};
  for (int conc = 0; conc < 2; conc++) {
    char k[64];
    snprintf(k, sizeof k, "min#num#%d", conc);
    check_extreme(s, MM_AGG_MIN, k, nums_canon, 7, conc);
    snprintf(k, sizeof k, "max#num#%d", conc);
    check_extreme(s, MM_AGG_MAX, k, nums_canon, 7, conc);
    snprintf(k, sizeof k, "min#mixed#%d", conc);
    check_extreme(s, MM_AGG_MIN, k, mixed, 6, conc);
    snprintf(k, sizeof k, "max#mixed#%d", conc);
    check_extreme(s, MM_AGG_MAX, k, mixed, 6, conc);
    snprintf(k, sizeof k, "min#str#%d", conc);
    check_extreme(s, MM_AGG_MIN, k, strs, 5, conc);
    snprintf(k, sizeof k, "max#str#%d", conc);
    check_extreme(s, MM_AGG_MAX, k, strs, 5, conc);
  }
  /* The wire form of a non-canonical number is the canonical one. */
  mm_delta_t d;
  num_delta(&d, MM_AGG_MAX, "1E+3");
  ck_assert_int_eq(merge1(s, "max#canon", 0, 0, &d, NULL), 0);
  ASSERT_VALUE(s, "max#canon", 0, "1000");
  mm_store_destroy(s);
}
END_TEST

START_TEST(first_last_follow_event_time) {
  need_servers();
  use_dynalite();
  mm_store_t *s = open_store(STORE_TABLE, 0, 0);
  /* (time, value) in arrival order, with ties. */
  struct { double t; const char *v; } ev[] = {
      {1700000100.5, "n:1"}, {1700000050, "s:early"}, {1700000200, "n:2"},
      {1700000050, "s:early-tie"}, {1700000200, "s:late-tie"}, {1700000150, "n:3"}};
  int n = 6;
  int fi = 0, li = 0;
  for (int i = 1; i < n; i++) {
    if (ev[i].t < ev[fi].t) fi = i;  /* a tie keeps the stored value */
    if (ev[i].t >= ev[li].t) li = i; /* a tie takes the newer write */
  }
  mm_delta_t d;
  for (int i = 0; i < n; i++) {
    spec_delta(&d, MM_AGG_FIRST, ev[i].v);
    d.time = ev[i].t;
    ck_assert_int_eq(merge1(s, "first#1", 0, 0, &d, NULL), 0);
    mm_delta_free(&d);
    spec_delta(&d, MM_AGG_LAST, ev[i].v);
    d.time = ev[i].t;
    ck_assert_int_eq(merge1(s, "last#1", 0, 0, &d, NULL), 0);
    mm_delta_free(&d);
  }
  char e[64];
  spec_json(ev[fi].v, e, sizeof e);
  ASSERT_VALUE(s, "first#1", 0, e);
  spec_json(ev[li].v, e, sizeof e);
  ASSERT_VALUE(s, "last#1", 0, e);

  /* Concurrently (distinct times): the same winners. */
  mm_delta_t dd[6];
  mm_merge_t ops[6];
  for (int i = 0; i < 5; i++) {
    char v[32];
    snprintf(v, sizeof v, "n:%d", i);
    spec_delta(&dd[i], MM_AGG_FIRST, v);
    dd[i].time = 1000.25 + (i * 37) % 5; /* 1000.25, 1002.25, 1004.25, 1001.25, 1003.25 */
    ops[i] = (mm_merge_t){.key = "first#conc", .delta = &dd[i]};
  }
  mm_store_merge(s, ops, 5, 0);
  for (int i = 0; i < 5; i++) ck_assert_int_eq(ops[i].status, 0);
  ASSERT_VALUE(s, "first#conc", 0, "0");
  for (int i = 0; i < 5; i++) mm_delta_free(&dd[i]);
  mm_store_destroy(s);
}
END_TEST

static int cmp_cstr(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

START_TEST(set_strings_numbers_and_mixing) {
  need_servers();
  use_dynalite();
  mm_store_t *s = open_store(STORE_TABLE, 0, 0);
  /* Strings, with duplicates within and across deltas. */
  const char *m1[] = {"pear", "apple", "pear", "\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87"};
  const char *m2[] = {"fig", "apple"};
  const char *all[] = {"pear", "apple", "\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87", "fig"};
  mm_delta_t d;
  memset(&d, 0, sizeof d);
  d.agg = MM_AGG_SET;
  d.members = calloc(4, sizeof *d.members);
  for (int i = 0; i < 4; i++) {
    d.members[i].str = strdup(m1[i]);
    d.members[i].len = strlen(m1[i]);
  }
  d.nmembers = 4;
  ck_assert_int_eq(merge1(s, "set#str", 0, 0, &d, NULL), 0);
  mm_delta_free(&d);
  memset(&d, 0, sizeof d);
  d.agg = MM_AGG_SET;
  d.members = calloc(2, sizeof *d.members);
  for (int i = 0; i < 2; i++) {
    d.members[i].str = strdup(m2[i]);
    d.members[i].len = strlen(m2[i]);
  }
  d.nmembers = 2;
  ck_assert_int_eq(merge1(s, "set#str", 0, 0, &d, NULL), 0);
  mm_delta_free(&d);
  const char *sorted[4];
  memcpy(sorted, all, sizeof sorted);
  qsort(sorted, 4, sizeof *sorted, cmp_cstr);
  char e[256] = "[";
  for (int i = 0; i < 4; i++) {
    strcat(e, i ? ",\"" : "\"");
    strcat(e, sorted[i]);
    strcat(e, "\"");
  }
  strcat(e, "]");
  ASSERT_VALUE(s, "set#str", 0, e);

  /* Numbers: a number set; 1.50 and 1.5 are one member. */
  const char *nm[] = {"10", "2", "1.50", "1.5", "-3"};
  memset(&d, 0, sizeof d);
  d.agg = MM_AGG_SET;
  d.members = calloc(5, sizeof *d.members);
  for (int i = 0; i < 5; i++) {
    d.members[i].is_num = 1;
    ck_assert_int_eq(mm_dec_parse(&d.members[i].num, nm[i], strlen(nm[i]), NULL), 0);
  }
  d.nmembers = 5;
  ck_assert_int_eq(merge1(s, "set#num", 0, 0, &d, NULL), 0);
  /* Members render in agg.h's stored order: canonical texts, bytewise. */
  const char *canon[] = {"10", "2", "1.5", "-3"};
  qsort(canon, 4, sizeof *canon, cmp_cstr);
  char en[128] = "[";
  for (int i = 0; i < 4; i++) {
    if (i) strcat(en, ",");
    strcat(en, canon[i]);
  }
  strcat(en, "]");
  ASSERT_VALUE(s, "set#num", 0, en);
  mm_delta_free(&d);

  /* A delta mixing numbers and strings: permanent, clear message. */
  memset(&d, 0, sizeof d);
  d.agg = MM_AGG_SET;
  d.members = calloc(2, sizeof *d.members);
  d.members[0].str = strdup("x");
  d.members[0].len = 1;
  d.members[1].is_num = 1;
  mm_dec_from_int(&d.members[1].num, 7);
  d.nmembers = 2;
  mm_err_t err;
  ck_assert_int_eq(merge1(s, "set#mixed", 0, 0, &d, &err), MM_EPERM);
  ck_assert_msg(strstr(err.msg, "mixing numbers and strings"), "%s", err.msg);
  mm_delta_free(&d);
  ck_assert_ptr_null(value_of(s, "set#mixed", 0));

  /* A string into the number set: DynamoDB's ValidationException. */
  memset(&d, 0, sizeof d);
  d.agg = MM_AGG_SET;
  d.members = calloc(1, sizeof *d.members);
  d.members[0].str = strdup("x");
  d.members[0].len = 1;
  d.nmembers = 1;
  ck_assert_int_eq(merge1(s, "set#num", 0, 0, &d, &err), MM_EPERM);
  ck_assert_msg(strstr(err.msg, "ValidationException"), "%s", err.msg);
  mm_delta_free(&d);
  ASSERT_VALUE(s, "set#num", 0, en);

  /* An empty delta writes nothing. */
  memset(&d, 0, sizeof d);
  d.agg = MM_AGG_SET;
  ck_assert_int_eq(merge1(s, "set#empty", 0, 0, &d, NULL), 0);
  ck_assert_ptr_null(value_of(s, "set#empty", 0));
  mm_store_destroy(s);
}
END_TEST

/* Runs the same ops through the memory store and returns the rendered
 * value of (key, 0) there (caller frees). */
static char *memory_value(mm_merge_t *ops, size_t n, const char *key) {
  mm_store_t *m = NULL;
  mm_err_t err;
  ck_assert_int_eq(mm_store_memory_open(&m, &err), 0);
  mm_merge_t *copy = calloc(n, sizeof *copy);
  for (size_t i = 0; i < n; i++) {
    copy[i] = ops[i];
    copy[i].key_len = strlen(copy[i].key);
  }
  for (size_t i = 0; i < n; i++) {
    mm_store_merge(m, &copy[i], 1, 0);
    ck_assert_int_eq(copy[i].status, 0);
  }
  free(copy);
  char *v = value_of(m, key, 0);
  mm_store_destroy(m);
  return v;
}

START_TEST(hll_and_topk_sketches) {
  need_servers();
  use_dynalite();
  mm_store_t *s = open_store(STORE_TABLE, 0, 0);
  /* hll: 300 distinct items, each twice, in one batch (one row). */
  enum { D = 300, N = 2 * D };
  mm_delta_t *d = calloc(N, sizeof *d);
  mm_merge_t *ops = calloc(N, sizeof *ops);
  for (int i = 0; i < N; i++) {
    char item[32];
    snprintf(item, sizeof item, "user-%d", i % D);
    str_delta(&d[i], MM_AGG_HLL, item);
    ops[i] = (mm_merge_t){.key = "hll#1", .delta = &d[i]};
  }
  mm_store_merge(s, ops, N, 0);
  for (int i = 0; i < N; i++) ck_assert_msg(ops[i].status == 0, "hll op %d: %s", i, ops[i].err.msg);
  char *v = value_of(s, "hll#1", 0);
  ck_assert_ptr_nonnull(v);
  double est = strtod(v, NULL);
  ck_assert_msg(fabs(est - D) <= D * 0.03, "estimate %s for %d distinct", v, D);
  char *mv = memory_value(ops, N, "hll#1");
  ck_assert_str_eq(v, mv); /* same sketch bytes as the in-process store */
  free(v);
  free(mv);
  /* Re-adding known items changes nothing and needs no write. */
  mm_store_merge(s, ops, 10, 0);
  for (int i = 0; i < 10; i++) ck_assert_int_eq(ops[i].status, 0);
  for (int i = 0; i < N; i++) mm_delta_free(&d[i]);

  /* topk: 12 items with known weights, spread over the batch. */
  int nt = 0;
  long long weight[12];
  for (int k = 0; k < 12; k++) weight[k] = 0;
  for (int k = 0; k < 12; k++)
    for (int rep = 0; rep < 3; rep++) {
      char item[16];
      snprintf(item, sizeof item, "item%02d", k);
      str_delta(&d[nt], MM_AGG_TOPK, item);
      d[nt].weight = 1 + (k * 7 + rep) % 13;
      weight[k] += d[nt].weight;
      ops[nt] = (mm_merge_t){.key = "topk#1", .delta = &d[nt]};
      nt++;
    }
  mm_store_merge(s, ops, (size_t)nt, 0);
  for (int i = 0; i < nt; i++) ck_assert_msg(ops[i].status == 0, "topk op %d: %s", i, ops[i].err.msg);
  /* Expected: exact counts (fewer items than counters), count desc then
   * item asc, top 10. */
  int order[12];
  for (int k = 0; k < 12; k++) order[k] = k;
  for (int a = 0; a < 12; a++)
    for (int b = a + 1; b < 12; b++)
      if (weight[order[b]] > weight[order[a]] ||
          (weight[order[b]] == weight[order[a]] && order[b] < order[a])) {
        int t = order[a];
        order[a] = order[b];
        order[b] = t;
      }
  char e[512] = "[";
  for (int i = 0; i < 10; i++) {
    char one[64];
    snprintf(one, sizeof one, "%s[\"item%02d\",%lld]", i ? "," : "", order[i], weight[order[i]]);
    strcat(e, one);
  }
  strcat(e, "]");
  ASSERT_VALUE(s, "topk#1", 0, e);
  mv = memory_value(ops, (size_t)nt, "topk#1");
  ck_assert_str_eq(mv, e);
  free(mv);
  for (int i = 0; i < nt; i++) mm_delta_free(&d[i]);
  free(d);
  free(ops);
  mm_store_destroy(s);
}
END_TEST

/* Two processes merge into one hll row at once: the version guard makes
 * every update land (the final sketch is the union, whatever the order). */
START_TEST(hll_concurrent_writers) {
  need_servers();
  use_dynalite();
  enum { PER = 150, ROUNDS = 15 };
  pid_t kids[2];
  for (int w = 0; w < 2; w++) {
    kids[w] = fork();
    ck_assert_int_ge(kids[w], 0);
    if (kids[w] == 0) {
      mm_store_t *s = NULL;
      mm_err_t err;
      if (mm_store_dynamodb_open(&s, STORE_TABLE, NULL, &err)) _exit(2);
      int bad = 0;
      for (int r = 0; r < ROUNDS; r++) {
        mm_delta_t d[PER / ROUNDS];
        mm_merge_t ops[PER / ROUNDS];
        for (int i = 0; i < PER / ROUNDS; i++) {
          char item[32];
          snprintf(item, sizeof item, "w%d-%d", w, r * (PER / ROUNDS) + i);
          memset(&d[i], 0, sizeof d[i]);
          d[i].agg = MM_AGG_HLL;
          d[i].weight = 1;
          d[i].v.str = strdup(item);
          d[i].v.len = strlen(item);
          ops[i] = (mm_merge_t){.key = "hll#race", .key_len = 8, .delta = &d[i]};
        }
        mm_store_merge(s, ops, PER / ROUNDS, 0);
        for (int i = 0; i < PER / ROUNDS; i++) {
          if (ops[i].status) {
            bad++;
            fprintf(stderr, "writer %d: %s\n", w, ops[i].err.msg);
          }
          mm_delta_free(&d[i]);
        }
      }
      mm_store_destroy(s);
      _exit(bad ? 1 : 0);
    }
  }
  for (int w = 0; w < 2; w++) {
    int st = 0;
    waitpid(kids[w], &st, 0);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "writer %d failed (status %d)", w, st);
  }
  /* The same items through the memory store give the same estimate. */
  mm_delta_t *d = calloc(2 * PER, sizeof *d);
  mm_merge_t *ops = calloc(2 * PER, sizeof *ops);
  for (int w = 0, k = 0; w < 2; w++)
    for (int i = 0; i < PER; i++, k++) {
      char item[32];
      snprintf(item, sizeof item, "w%d-%d", w, i);
      str_delta(&d[k], MM_AGG_HLL, item);
      ops[k] = (mm_merge_t){.key = "hll#race", .delta = &d[k]};
    }
  char *mv = memory_value(ops, 2 * PER, "hll#race");
  mm_store_t *s = open_store(STORE_TABLE, 0, 0);
  ASSERT_VALUE(s, "hll#race", 0, mv);
  free(mv);
  for (int k = 0; k < 2 * PER; k++) mm_delta_free(&d[k]);
  free(d);
  free(ops);
  mm_store_destroy(s);
}
END_TEST

/* Raw request helper: one call against the store table. */
static int raw_call(const char *op, const char *body, mm_ddb_req_t *r, int write) {
  mm_ddb_t *c = NULL;
  mm_err_t err;
  ck_assert_int_eq(mm_ddb_open(&c, 0, 0, &err), 0);
  mm_ddb_req_init(r, op, STORE_TABLE, write);
  mm_buf_adds(&r->body, body);
  int rc = mm_ddb_call(c, r, 0);
  mm_ddb_destroy(c);
  return rc;
}

START_TEST(corrupt_sketch_is_never_overwritten) {
  need_servers();
  use_dynalite();
  mm_ddb_req_t r;
  /* "garbage!" in base64, with a version. */
  ck_assert_int_eq(raw_call("PutItem",
                            "{\"TableName\":\"" STORE_TABLE "\",\"Item\":{\"pk\":{\"S\":\"hll#bad\"},"
                            "\"sk\":{\"N\":\"0\"},\"v\":{\"B\":\"Z2FyYmFnZSE=\"},\"ver\":{\"N\":\"4\"}}}",
                            &r, 1),
                   0);
  mm_ddb_req_free(&r);
  mm_store_t *s = open_store(STORE_TABLE, 0, 0);
  mm_delta_t d;
  str_delta(&d, MM_AGG_HLL, "x");
  mm_err_t err;
  ck_assert_int_eq(merge1(s, "hll#bad", 0, 0, &d, &err), MM_EPERM);
  ck_assert_msg(strstr(err.msg, "hll sketch"), "%s", err.msg);
  ck_assert_int_eq(raw_call("GetItem",
                            "{\"TableName\":\"" STORE_TABLE "\",\"ConsistentRead\":true,"
                            "\"Key\":{\"pk\":{\"S\":\"hll#bad\"},\"sk\":{\"N\":\"0\"}}}",
                            &r, 0),
                   0);
  ck_assert_msg(strstr(r.resp.data, "Z2FyYmFnZSE=") && strstr(r.resp.data, "\"4\""), "%s",
                r.resp.data);
  mm_ddb_req_free(&r);
  /* A row of another aggregate (a number) is not a sketch either. */
  mm_delta_t n;
  num_delta(&n, MM_AGG_SUM, "3");
  ck_assert_int_eq(merge1(s, "hll#num", 0, 0, &n, NULL), 0);
  ck_assert_int_eq(merge1(s, "hll#num", 0, 0, &d, &err), MM_EPERM);
  ASSERT_VALUE(s, "hll#num", 0, "3");
  /* And a sum into a string row is DynamoDB's ValidationException. */
  mm_delta_t m;
  str_delta(&m, MM_AGG_MAX, "word");
  ck_assert_int_eq(merge1(s, "sum#onstr", 0, 0, &m, NULL), 0);
  ck_assert_int_eq(merge1(s, "sum#onstr", 0, 0, &n, &err), MM_EPERM);
  ck_assert_msg(strstr(err.msg, "ValidationException"), "%s", err.msg);
  mm_delta_free(&d);
  mm_delta_free(&m);
  mm_store_destroy(s);
}
END_TEST

START_TEST(windowed_rows_carry_ttl) {
  need_servers();
  use_dynalite();
  mm_store_t *s = open_store(STORE_TABLE, 0, 0);
  const int64_t ttl = 1900000000, bucket = 472222;
  mm_delta_t d[5];
  num_delta(&d[0], MM_AGG_SUM, "2.5");
  num_delta(&d[1], MM_AGG_MIN, "4");
  str_delta(&d[2], MM_AGG_HLL, "u1");
  str_delta(&d[3], MM_AGG_LAST, "v");
  d[3].time = 5;
  memset(&d[4], 0, sizeof d[4]);
  d[4].agg = MM_AGG_SET;
  d[4].members = calloc(1, sizeof *d[4].members);
  d[4].members[0].str = strdup("m");
  d[4].members[0].len = 1;
  d[4].nmembers = 1;
  const char *keys[] = {"ttl#sum", "ttl#min", "ttl#hll", "ttl#last", "ttl#set"};
  mm_merge_t ops[5];
  for (int i = 0; i < 5; i++)
    ops[i] = (mm_merge_t){.key = keys[i], .bucket = bucket, .ttl = ttl, .delta = &d[i]};
  mm_store_merge(s, ops, 5, 0);
  for (int i = 0; i < 5; i++) {
    ck_assert_msg(ops[i].status == 0, "%s: %s", keys[i], ops[i].err.msg);
    rows_t rows;
    query(s, keys[i], NULL, &rows);
    ck_assert_int_eq(rows.n, 1);
    ck_assert_int_eq(rows.bucket[0], bucket);
    ck_assert_msg(rows.ttl[0] == ttl, "%s ttl %lld", keys[i], (long long)rows.ttl[0]);
    rows_free(&rows);
  }
  /* Not windowed: no ttl. */
  ck_assert_int_eq(merge1(s, "ttl#none", 0, 0, &d[0], NULL), 0);
  rows_t rows;
  query(s, "ttl#none", NULL, &rows);
  ck_assert_int_eq(rows.n, 1);
  ck_assert_int_eq(rows.ttl[0], 0);
  rows_free(&rows);
  for (int i = 0; i < 5; i++) mm_delta_free(&d[i]);
  mm_store_destroy(s);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Batch, query, connections                                           */
/* ------------------------------------------------------------------ */

START_TEST(batch_1000_ops_500_keys) {
  need_servers();
  use_dynalite();
  enum { OPS = 1000, KEYS = 500 };
  mm_store_t *s = open_store(STORE_TABLE, 32, 5000);
  mm_delta_t *d = calloc(OPS, sizeof *d);
  mm_merge_t *ops = calloc(OPS, sizeof *ops);
  char (*keys)[32] = calloc(KEYS, sizeof *keys);
  long long *expect = calloc(KEYS, sizeof *expect);
  for (int k = 0; k < KEYS; k++) snprintf(keys[k], sizeof keys[k], "batch#%03d", k);
  for (int i = 0; i < OPS; i++) {
    int k = (int)(rnd() % KEYS);
    long long c = (long long)(rnd() % 10000); /* cents */
    char t[32];
    cents_text(c, t, sizeof t);
    expect[k] += c;
    num_delta(&d[i], MM_AGG_SUM, t);
    ops[i] = (mm_merge_t){.key = keys[k], .delta = &d[i]};
  }
  int64_t t0 = mm_mono_ms();
  ck_assert_int_eq(mm_store_merge(s, ops, OPS, 0), 0);
  int64_t ms = mm_mono_ms() - t0;
  fprintf(stderr, "check_ddb: %d merges over %d keys against dynalite: %lld ms (%.0f merges/s)\n",
          OPS, KEYS, (long long)ms, ms > 0 ? OPS * 1000.0 / (double)ms : 0.0);
  for (int i = 0; i < OPS; i++) ck_assert_msg(ops[i].status == 0, "op %d: %s", i, ops[i].err.msg);
  for (int k = 0; k < KEYS; k++) {
    char *v = value_of(s, keys[k], 0);
    if (!expect[k] && !v) continue; /* a key that got no op */
    char e[32];
    cents_text(expect[k], e, sizeof e);
    ck_assert_msg(v && strcmp(v, e) == 0, "%s: got %s, expected %s", keys[k], v ? v : "(none)", e);
    free(v);
  }
  free(d);
  free(ops);
  free(keys);
  free(expect);
  mm_store_destroy(s);
}
END_TEST

START_TEST(query_buckets_in_order) {
  need_servers();
  use_dynalite();
  mm_store_t *s = open_store(STORE_TABLE, 0, 0);
  int64_t buckets[] = {3, 1, 10, 2, -4};
  for (int i = 0; i < 5; i++) {
    mm_delta_t d;
    char t[16];
    snprintf(t, sizeof t, "%lld", (long long)buckets[i] * 10);
    num_delta(&d, MM_AGG_SUM, t);
    ck_assert_int_eq(merge1(s, "q#1", buckets[i], 0, &d, NULL), 0);
  }
  rows_t rows;
  query(s, "q#1", NULL, &rows);
  ck_assert_int_eq(rows.n, 5);
  int64_t sorted[] = {-4, 1, 2, 3, 10};
  for (int i = 0; i < 5; i++) {
    ck_assert_int_eq(rows.bucket[i], sorted[i]);
    char e[16];
    snprintf(e, sizeof e, "%lld", (long long)sorted[i] * 10);
    ck_assert_str_eq(rows.value[i], e);
    ck_assert_str_eq(rows.key[i], "q#1");
  }
  rows_free(&rows);
  int64_t b = 2;
  query(s, "q#1", &b, &rows);
  ck_assert_int_eq(rows.n, 1);
  ck_assert_int_eq(rows.bucket[0], 2);
  ck_assert_str_eq(rows.value[0], "20");
  rows_free(&rows);
  b = 7;
  query(s, "q#1", &b, &rows);
  ck_assert_int_eq(rows.n, 0);
  query(s, "q#missing", NULL, &rows);
  ck_assert_int_eq(rows.n, 0);
  mm_store_destroy(s);
}
END_TEST

/* Rows bigger than one Query page (1 MB): the query follows the pages. */
START_TEST(query_follows_pages) {
  need_servers();
  use_dynalite();
  mm_store_t *s = open_store(STORE_TABLE, 0, 0);
  enum { ROWS = 4, MEMBERS = 300, LEN = 1000 };
  char *big = malloc(LEN + 1);
  for (int b = 0; b < ROWS; b++) {
    mm_delta_t d;
    memset(&d, 0, sizeof d);
    d.agg = MM_AGG_SET;
    d.members = calloc(MEMBERS, sizeof *d.members);
    for (int i = 0; i < MEMBERS; i++) {
      memset(big, 'a' + b, LEN);
      snprintf(big, 12, "%05d-%04d", b, i);
      big[10] = 'x';
      big[LEN] = '\0';
      d.members[i].str = strdup(big);
      d.members[i].len = LEN;
    }
    d.nmembers = MEMBERS;
    mm_err_t err;
    ck_assert_msg(merge1(s, "q#pages", b, 0, &d, &err) == 0, "%s", err.msg);
    mm_delta_free(&d);
  }
  free(big);
  /* One raw page really is partial... */
  mm_ddb_req_t r;
  ck_assert_int_eq(raw_call("Query",
                            "{\"TableName\":\"" STORE_TABLE "\",\"KeyConditionExpression\":"
                            "\"pk = :k\",\"ExpressionAttributeValues\":{\":k\":{\"S\":\"q#pages\"}}}",
                            &r, 0),
                   0);
  ck_assert_msg(strstr(r.resp.data, "LastEvaluatedKey"), "expected a partial first page");
  mm_ddb_req_free(&r);
  /* ...and the store's query still sees every row, in order. */
  rows_t rows;
  query(s, "q#pages", NULL, &rows);
  ck_assert_int_eq(rows.n, ROWS);
  for (int b = 0; b < ROWS; b++) ck_assert_int_eq(rows.bucket[b], b);
  rows_free(&rows);
  mm_store_destroy(s);
}
END_TEST

START_TEST(connections_are_reused) {
  need_servers();
  use_dynalite();
  mm_ddb_t *c = NULL;
  mm_err_t err;
  ck_assert_int_eq(mm_ddb_open(&c, 8, 5000, &err), 0);
  enum { N = 120 };
  mm_ddb_req_t *r = calloc(N, sizeof *r);
  mm_ddb_req_t **list = calloc(N, sizeof *list);
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < N; i++) {
      mm_ddb_req_init(&r[i], "GetItem", STORE_TABLE, 0);
      mm_buf_printf(&r[i].body,
                    "{\"TableName\":\"" STORE_TABLE "\",\"Key\":{\"pk\":{\"S\":\"conn#%d\"},"
                    "\"sk\":{\"N\":\"0\"}}}", i);
      list[i] = &r[i];
    }
    ck_assert_int_eq(mm_ddb_run(c, list, N, 0, NULL, NULL), 0);
    for (int i = 0; i < N; i++) {
      ck_assert_msg(r[i].status == 0, "%s", r[i].err.msg);
      mm_ddb_req_free(&r[i]);
    }
  }
  mm_ddb_stats_t st = mm_ddb_stats(c);
  ck_assert_int_eq(st.requests, 3 * N);
  ck_assert_msg(st.connects >= 1 && st.connects <= 8,
                "%llu connections for %llu requests (in-flight limit 8)",
                (unsigned long long)st.connects, (unsigned long long)st.requests);
  free(r);
  free(list);
  mm_ddb_destroy(c);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Dedup                                                               */
/* ------------------------------------------------------------------ */

static mm_dedup_t *open_dedup(void) {
  mm_dedup_t *d = NULL;
  mm_err_t err;
  ck_assert_msg(mm_dedup_dynamodb_open(&d, DEDUP_TABLE, NULL, &err) == 0, "%s", err.msg);
  return d;
}

START_TEST(dedup_new_partial_done) {
  need_servers();
  use_dynalite();
  mm_dedup_t *dd = open_dedup();
  const char *id = "orders#ev-\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87-1";
  mm_claim_t c = {.id = id, .id_len = strlen(id), .ttl = 1900000000};
  ck_assert_int_eq(mm_dedup_begin(dd, &c, 1, 0), 0);
  ck_assert_msg(c.status == 0, "%s", c.err.msg);
  ck_assert_int_eq(c.state, MM_CLAIM_NEW);
  /* A failed attempt applied two of three merges. */
  const char *applied[] = {"0:b", "0:a", "0:a"};
  c.applied = applied;
  c.napplied = 3;
  c.done = 0;
  ck_assert_int_eq(mm_dedup_finish(dd, &c, 1, 0), 0);
  ck_assert_msg(c.status == 0, "%s", c.err.msg);
  mm_claim_reset(&c);
  ck_assert_int_eq(mm_dedup_begin(dd, &c, 1, 0), 0);
  ck_assert_int_eq(c.status, 0);
  ck_assert_int_eq(c.state, MM_CLAIM_PARTIAL);
  ck_assert_int_eq(c.nmerged, 2);
  const char *got[2] = {c.merged[0], c.merged[1]};
  qsort(got, 2, sizeof *got, cmp_cstr);
  ck_assert_str_eq(got[0], "0:a");
  ck_assert_str_eq(got[1], "0:b");
  /* The redelivery applies the rest and completes. */
  const char *rest[] = {"0:c"};
  c.applied = rest;
  c.napplied = 1;
  c.done = 1;
  ck_assert_int_eq(mm_dedup_finish(dd, &c, 1, 0), 0);
  ck_assert_int_eq(c.status, 0);
  mm_claim_reset(&c);
  ck_assert_int_eq(mm_dedup_begin(dd, &c, 1, 0), 0);
  ck_assert_int_eq(c.state, MM_CLAIM_DONE);
  mm_claim_reset(&c);
  /* Another pipeline's claim on the same eventID is separate. */
  mm_claim_t o = {.id = "other#ev-\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87-1", .ttl = 1900000000};
  ck_assert_int_eq(mm_dedup_begin(dd, &o, 1, 0), 0);
  ck_assert_int_eq(o.state, MM_CLAIM_NEW);
  mm_claim_reset(&o);
  /* The claim row carries its ttl. */
  mm_ddb_req_t r;
  mm_ddb_t *cl = NULL;
  mm_err_t err;
  ck_assert_int_eq(mm_ddb_open(&cl, 0, 0, &err), 0);
  mm_ddb_req_init(&r, "GetItem", DEDUP_TABLE, 0);
  mm_buf_adds(&r.body, "{\"TableName\":\"" DEDUP_TABLE "\",\"ConsistentRead\":true,\"Key\":{\"pk\":{\"S\":");
  mm_buf_json_str(&r.body, id, strlen(id));
  mm_buf_adds(&r.body, "}}}");
  ck_assert_int_eq(mm_ddb_call(cl, &r, 0), 0);
  ck_assert_msg(strstr(r.resp.data, "\"ttl\":{\"N\":\"1900000000\"}"), "%s", r.resp.data);
  mm_ddb_req_free(&r);
  mm_ddb_destroy(cl);
  mm_dedup_destroy(dd);
}
END_TEST

START_TEST(dedup_batch_of_claims) {
  need_servers();
  use_dynalite();
  mm_dedup_t *dd = open_dedup();
  enum { N = 100 };
  mm_claim_t c[N];
  char ids[N][32];
  const char *one[] = {"0:k"};
  for (int i = 0; i < N; i++) {
    snprintf(ids[i], sizeof ids[i], "batch#ev-%d", i);
    c[i] = (mm_claim_t){.id = ids[i], .ttl = 1900000000};
  }
  ck_assert_int_eq(mm_dedup_begin(dd, c, N, 0), 0);
  for (int i = 0; i < N; i++) {
    ck_assert_msg(c[i].status == 0, "%s", c[i].err.msg);
    ck_assert_int_eq(c[i].state, MM_CLAIM_NEW);
    c[i].applied = one;
    c[i].napplied = 1;
    c[i].done = i % 2; /* odd ones complete */
  }
  ck_assert_int_eq(mm_dedup_finish(dd, c, N, 0), 0);
  for (int i = 0; i < N; i++) ck_assert_int_eq(c[i].status, 0);
  ck_assert_int_eq(mm_dedup_begin(dd, c, N, 0), 0);
  for (int i = 0; i < N; i++) {
    ck_assert_int_eq(c[i].status, 0);
    ck_assert_int_eq(c[i].state, i % 2 ? MM_CLAIM_DONE : MM_CLAIM_PARTIAL);
    mm_claim_reset(&c[i]);
  }
  mm_dedup_destroy(dd);
}
END_TEST

/* The claim item `id` as a direct, consistent GetItem reads it (the answer
 * body, caller frees; independent of the dedup backend's reads). */
static char *claim_item(const char *id) {
  mm_ddb_t *cl = NULL;
  mm_err_t err;
  mm_ddb_req_t r;
  ck_assert_int_eq(mm_ddb_open(&cl, 0, 0, &err), 0);
  mm_ddb_req_init(&r, "GetItem", DEDUP_TABLE, 0);
  mm_buf_adds(&r.body, "{\"TableName\":\"" DEDUP_TABLE "\",\"ConsistentRead\":true,\"Key\":{\"pk\":{\"S\":");
  mm_buf_json_str(&r.body, id, strlen(id));
  mm_buf_adds(&r.body, "}}}");
  ck_assert_msg(mm_ddb_call(cl, &r, 0) == 0, "%s", r.err.msg);
  char *out = strdup(r.resp.data ? r.resp.data : "");
  mm_ddb_req_free(&r);
  mm_ddb_destroy(cl);
  return out;
}

/* Sorted copy check: the claim's merged ids are exactly want[0..n). */
static void assert_merged(const mm_claim_t *c, const char *const *want, size_t n) {
  ck_assert_int_eq(c->state, MM_CLAIM_PARTIAL);
  ck_assert_uint_eq(c->nmerged, n);
  const char **got = malloc(n * sizeof *got);
  const char **exp = malloc(n * sizeof *exp);
  memcpy(got, c->merged, n * sizeof *got);
  memcpy(exp, want, n * sizeof *exp);
  qsort(got, n, sizeof *got, cmp_cstr);
  qsort(exp, n, sizeof *exp, cmp_cstr);
  for (size_t i = 0; i < n; i++) ck_assert_str_eq(got[i], exp[i]);
  free(got);
  free(exp);
}

/*
 * More claims than one BatchGetItem takes (several chunks), ids repeated
 * within one call, UTF-8 ids, PARTIAL -> DONE, and more done claims than
 * one BatchWriteItem takes. The expected state of every id is set up here
 * and read back independently with GetItem.
 */
enum { MANY_IDS = 230, MANY_CLAIMS = 260 };

/* Id i of the many-claims test (every 7th carries UTF-8). */
static void many_id(char *out, size_t cap, int i) {
  snprintf(out, cap, "many#ev-%s%d", i % 7 ? "" : "\xc3\xa9v\xc3\xa9nement-\xf0\x9f\xa6\x8a-", i);
}

/* Before the call: i % 3 == 0 is DONE, i % 3 == 1 PARTIAL, else NEW. */
static mm_claim_state_t many_state(int i) {
  return i % 3 == 0 ? MM_CLAIM_DONE : i % 3 == 1 ? MM_CLAIM_PARTIAL : MM_CLAIM_NEW;
}

START_TEST(dedup_many_claims_and_duplicates) {
  need_servers();
  use_dynalite();
  mm_dedup_t *dd = open_dedup();
  static char ids[MANY_IDS][64];
  static mm_claim_t c[MANY_CLAIMS];
  const char *two[] = {"7:x", "7:y\xc3\xa9"};
  /* Set-up: DONE ones finish done, PARTIAL ones record two merges. */
  for (int i = 0; i < MANY_IDS; i++) {
    many_id(ids[i], sizeof ids[i], i);
    c[i] = (mm_claim_t){.id = ids[i], .ttl = 1900000000};
    c[i].done = many_state(i) == MM_CLAIM_DONE;
    if (many_state(i) == MM_CLAIM_PARTIAL) {
      c[i].applied = two;
      c[i].napplied = 2;
    }
  }
  ck_assert_int_eq(mm_dedup_finish(dd, c, MANY_IDS, 0), 0);
  for (int i = 0; i < MANY_IDS; i++) ck_assert_msg(c[i].status == 0, "%d: %s", i, c[i].err.msg);
  /* One begin of 260 claims: every id, then 30 repeats. */
  for (int i = 0; i < MANY_CLAIMS; i++) {
    int k = i < MANY_IDS ? i : (i - MANY_IDS) * 7 % MANY_IDS;
    c[i] = (mm_claim_t){.id = ids[k], .ttl = 1900000000};
  }
  ck_assert_int_eq(mm_dedup_begin(dd, c, MANY_CLAIMS, 0), 0);
  for (int i = 0; i < MANY_CLAIMS; i++) {
    int k = i < MANY_IDS ? i : (i - MANY_IDS) * 7 % MANY_IDS;
    ck_assert_msg(c[i].status == 0, "%d: %s", i, c[i].err.msg);
    ck_assert_msg(c[i].state == many_state(k), "claim %d (%s): state %d, want %d", i, ids[k],
                  c[i].state, many_state(k));
    if (many_state(k) == MM_CLAIM_PARTIAL) assert_merged(&c[i], two, 2);
    else ck_assert_uint_eq(c[i].nmerged, 0);
  }
  /* Repeated ids own separate lists (each is freed by its claim). */
  for (int i = MANY_IDS; i < MANY_CLAIMS; i++) {
    int k = (i - MANY_IDS) * 7 % MANY_IDS;
    if (many_state(k) == MM_CLAIM_PARTIAL) ck_assert_ptr_ne(c[i].merged, c[k].merged);
  }
  /* Finish: every claim completes (PARTIAL -> DONE and NEW -> DONE; the
   * repeats too), more than one BatchWriteItem's worth. */
  const char *rest[] = {"7:z"};
  for (int i = 0; i < MANY_CLAIMS; i++) {
    c[i].done = 1;
    c[i].applied = rest;
    c[i].napplied = 1;
    c[i].ttl = 1900000100;
  }
  ck_assert_int_eq(mm_dedup_finish(dd, c, MANY_CLAIMS, 0), 0);
  for (int i = 0; i < MANY_CLAIMS; i++) {
    ck_assert_msg(c[i].status == 0, "%d: %s", i, c[i].err.msg);
    mm_claim_reset(&c[i]);
  }
  ck_assert_int_eq(mm_dedup_begin(dd, c, MANY_CLAIMS, 0), 0);
  for (int i = 0; i < MANY_CLAIMS; i++) {
    ck_assert_msg(c[i].status == 0, "%d: %s", i, c[i].err.msg);
    ck_assert_int_eq(c[i].state, MM_CLAIM_DONE);
    mm_claim_reset(&c[i]);
  }
  /* Read back directly: a done claim is {pk, ttl, done: true}. */
  for (int i = 0; i < MANY_IDS; i++) {
    char *item = claim_item(ids[i]);
    ck_assert_msg(strstr(item, "\"done\":{\"BOOL\":true}") &&
                      strstr(item, "\"ttl\":{\"N\":\"1900000100\"}") && !strstr(item, "merged"),
                  "%s: %s", ids[i], item);
    free(item);
  }
  mm_dedup_destroy(dd);
}
END_TEST

/*
 * A not-done finish is a set union that keeps the first ttl; a not-done
 * claim without merges writes nothing; a claim id DynamoDB would refuse
 * (too long, not UTF-8, empty) fails alone and does not fail its batch.
 */
START_TEST(dedup_partial_union_and_bad_ids) {
  need_servers();
  use_dynalite();
  mm_dedup_t *dd = open_dedup();
  char *longid = malloc(MM_DDB_DEDUP_ID_MAX + 2);
  memset(longid, 'x', MM_DDB_DEDUP_ID_MAX + 1);
  longid[MM_DDB_DEDUP_ID_MAX + 1] = '\0';
  const char *a[] = {"0:a"}, *b[] = {"0:b", "0:a"};
  mm_claim_t c[5] = {
      {.id = "union#1", .ttl = 1900000000, .applied = a, .napplied = 1},
      {.id = longid, .ttl = 1900000000, .done = 1},
      {.id = "union#bad\xff", .ttl = 1900000000, .done = 1},
      {.id = "union#2", .ttl = 1900000000, .done = 1},
      {.id = "union#3", .ttl = 1900000000}, /* nothing to record */
  };
  ck_assert_int_eq(mm_dedup_finish(dd, c, 5, 0), 0);
  ck_assert_msg(c[0].status == 0, "%s", c[0].err.msg);
  ck_assert_int_eq(c[1].status, MM_EPERM);
  ck_assert_msg(strstr(c[1].err.msg, "2048"), "%s", c[1].err.msg);
  ck_assert_int_eq(c[2].status, MM_EPERM);
  ck_assert_msg(strstr(c[2].err.msg, "UTF-8"), "%s", c[2].err.msg);
  ck_assert_msg(c[3].status == 0, "%s", c[3].err.msg);
  ck_assert_int_eq(c[4].status, 0);
  char *item = claim_item("union#3");
  ck_assert_msg(!strstr(item, "Item"), "nothing written for union#3: %s", item);
  free(item);
  /* A second union with another ttl: ids merge, the first ttl stays. */
  c[0].applied = b;
  c[0].napplied = 2;
  c[0].ttl = 1900000500;
  ck_assert_int_eq(mm_dedup_finish(dd, c, 1, 0), 0);
  ck_assert_int_eq(c[0].status, 0);
  item = claim_item("union#1");
  ck_assert_msg(strstr(item, "\"ttl\":{\"N\":\"1900000000\"}") && !strstr(item, "done"), "%s", item);
  free(item);
  /* begin: the bad ids fail alone, next to good ones in the same batch. */
  mm_claim_t g[6] = {{.id = "union#1"}, {.id = longid}, {.id = "union#2"},
                     {.id = "union#bad\xff"}, {.id = ""}, {.id = "union#3"}};
  ck_assert_int_eq(mm_dedup_begin(dd, g, 6, 0), 0);
  const char *ab[] = {"0:a", "0:b"};
  ck_assert_msg(g[0].status == 0, "%s", g[0].err.msg);
  assert_merged(&g[0], ab, 2);
  ck_assert_int_eq(g[1].status, MM_EPERM);
  ck_assert_int_eq(g[2].status, 0);
  ck_assert_int_eq(g[2].state, MM_CLAIM_DONE);
  ck_assert_int_eq(g[3].status, MM_EPERM);
  ck_assert_int_eq(g[4].status, MM_EPERM);
  ck_assert_int_eq(g[5].status, 0);
  ck_assert_int_eq(g[5].state, MM_CLAIM_NEW);
  for (int i = 0; i < 6; i++) mm_claim_reset(&g[i]);
  free(longid);
  mm_dedup_destroy(dd);
}
END_TEST

enum { BIG_CLAIMS = 100, BIG_IDS = 200 };

/*
 * dynalite itself hands keys back: a BatchGetItem answer stops at about
 * 1.4 MB of items (DynamoDB's own limit is 16 MB) and lists the rest in
 * UnprocessedKeys. 100 claims of about 20 KB of merge ids each are 2 MB:
 * the test first shows, with a raw BatchGetItem, that dynalite does hand
 * keys back for them, then that begin still reads every claim right.
 */
START_TEST(dedup_unprocessed_keys_from_dynalite) {
  need_servers();
  use_dynalite();
  mm_dedup_t *dd = open_dedup();
  static char ids[BIG_CLAIMS][32];
  static char merge[BIG_IDS][112];
  const char *mp[BIG_IDS];
  for (int k = 0; k < BIG_IDS; k++) {
    snprintf(merge[k], sizeof merge[k], "%d:%0100d", k, k);
    mp[k] = merge[k];
  }
  mm_claim_t c[BIG_CLAIMS];
  for (int i = 0; i < BIG_CLAIMS; i++) {
    snprintf(ids[i], sizeof ids[i], "big#ev-%d", i);
    c[i] = (mm_claim_t){.id = ids[i], .ttl = 1900000000, .applied = mp, .napplied = BIG_IDS};
  }
  ck_assert_int_eq(mm_dedup_finish(dd, c, BIG_CLAIMS, 0), 0);
  for (int i = 0; i < BIG_CLAIMS; i++) ck_assert_msg(c[i].status == 0, "%s", c[i].err.msg);
  /* The precondition, shown with a raw request. */
  mm_buf_t body = MM_BUF_INIT;
  mm_buf_adds(&body, "{\"RequestItems\":{\"" DEDUP_TABLE "\":{\"ConsistentRead\":true,\"Keys\":[");
  for (int i = 0; i < BIG_CLAIMS; i++) mm_buf_printf(&body, "%s{\"pk\":{\"S\":\"%s\"}}", i ? "," : "", ids[i]);
  mm_buf_adds(&body, "]}}}");
  mm_ddb_t *cl = NULL;
  mm_err_t err;
  mm_ddb_req_t r;
  ck_assert_int_eq(mm_ddb_open(&cl, 0, 0, &err), 0);
  mm_ddb_req_init(&r, "BatchGetItem", DEDUP_TABLE, 0);
  mm_buf_add(&r.body, body.data, body.len);
  ck_assert_msg(mm_ddb_call(cl, &r, 0) == 0, "%s", r.err.msg);
  ck_assert_msg(strstr(r.resp.data, "\"UnprocessedKeys\":{\"" DEDUP_TABLE "\""),
                "dynalite handed no key back; the test proves nothing");
  mm_ddb_req_free(&r);
  mm_ddb_destroy(cl);
  mm_buf_free(&body);
  /* begin resends the handed-back keys: every claim PARTIAL, complete. */
  for (int i = 0; i < BIG_CLAIMS; i++) c[i] = (mm_claim_t){.id = ids[i], .ttl = 1900000000};
  ck_assert_int_eq(mm_dedup_begin(dd, c, BIG_CLAIMS, 0), 0);
  for (int i = 0; i < BIG_CLAIMS; i++) {
    ck_assert_msg(c[i].status == 0, "%d: %s", i, c[i].err.msg);
    assert_merged(&c[i], mp, BIG_IDS);
    mm_claim_reset(&c[i]);
  }
  mm_dedup_destroy(dd);
}
END_TEST

/* Starts fault-proxy.js in front of dynalite for the batch operations only
 * and points this test's endpoint at it. */
static void start_batch_proxy(server_t *px, const char *rates, const char *log) {
  char port[16];
  snprintf(port, sizeof port, "%d", g_ddb.port);
  unlink(log);
  const char *args[] = {port, "7", rates, log, "BatchGetItem,BatchWriteItem", NULL};
  ck_assert_msg(start_node(px, "fault-proxy.js", args) == 0, "%s", g_setup_err);
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d", px->port);
  setenv("AWS_ENDPOINT_URL_DYNAMODB", url, 1);
}

/* Lines of the proxy's log equal to `line`. */
static int log_count(const char *log, const char *line) {
  size_t n;
  char *text = tu_read_file(log, &n);
  int k = 0;
  size_t l = strlen(line);
  for (char *p = text; p && (p = strstr(p, line)); p += l)
    if ((p == text || p[-1] == '\n') && p[l] == '\n') k++;
  free(text);
  return k;
}

/*
 * Keys handed back by the proxy, as DynamoDB does under throttling (the
 * proxy really does not write handed-back items): with every second batch
 * request cut in half, begin and finish still settle every claim right;
 * with every request cut, a key is given up after
 * MM_DDB_DEDUP_UNPROCESSED_ROUNDS resends as MM_ERETRY, and an unwritten
 * done claim stays unwritten.
 */
START_TEST(dedup_unprocessed_resent_and_bounded) {
  need_servers();
  use_dynalite();
  char log[256];
  snprintf(log, sizeof log, "/tmp/mm-unproc-%d.log", (int)getpid());
  server_t px = {-1, 0, -1};
  start_batch_proxy(&px, "{\"every\":{\"unprocessed\":2}}", log);
  mm_dedup_t *dd = open_dedup();
  enum { N = 140 };
  static char ids[N][32];
  mm_claim_t c[N];
  const char *one[] = {"1:k"};
  for (int i = 0; i < N; i++) {
    snprintf(ids[i], sizeof ids[i], "unproc#ev-%d", i);
    c[i] = (mm_claim_t){.id = ids[i], .ttl = 1900000000, .done = i % 2, .applied = one,
                        .napplied = 1};
  }
  /* 70 done (3 BatchWriteItems, each cut at least once) + 70 unions. */
  ck_assert_int_eq(mm_dedup_finish(dd, c, N, 0), 0);
  for (int i = 0; i < N; i++) ck_assert_msg(c[i].status == 0, "%d: %s", i, c[i].err.msg);
  /* 2 BatchGetItems, cut in turn. */
  ck_assert_int_eq(mm_dedup_begin(dd, c, N, 0), 0);
  for (int i = 0; i < N; i++) {
    ck_assert_msg(c[i].status == 0, "%d: %s", i, c[i].err.msg);
    if (i % 2) ck_assert_int_eq(c[i].state, MM_CLAIM_DONE);
    else assert_merged(&c[i], one, 1);
    mm_claim_reset(&c[i]);
  }
  mm_dedup_destroy(dd);
  stop_node(&px);
  ck_assert_int_gt(log_count(log, "unprocessed BatchWriteItem"), 0);
  ck_assert_int_gt(log_count(log, "unprocessed BatchGetItem"), 0);
  use_dynalite();
  for (int i = 1; i < N; i += 2) {
    char *item = claim_item(ids[i]);
    ck_assert_msg(strstr(item, "\"done\":{\"BOOL\":true}"), "%s: %s", ids[i], item);
    free(item);
  }

  /* Every request cut: one key never gets through. */
  start_batch_proxy(&px, "{\"every\":{\"unprocessed\":1}}", log);
  dd = open_dedup();
  mm_claim_t b = {.id = "unproc#ev-0", .ttl = 1900000000};
  int64_t t0 = mm_mono_ms();
  ck_assert_int_eq(mm_dedup_begin(dd, &b, 1, 0), 0);
  ck_assert_int_eq(b.status, MM_ERETRY);
  ck_assert_msg(strstr(b.err.msg, "unprocessed"), "%s", b.err.msg);
  ck_assert_int_eq(log_count(log, "unprocessed BatchGetItem"), MM_DDB_DEDUP_UNPROCESSED_ROUNDS + 1);
  mm_claim_reset(&b);
  mm_claim_t w = {.id = "unproc#never", .ttl = 1900000000, .done = 1};
  ck_assert_int_eq(mm_dedup_finish(dd, &w, 1, 0), 0);
  ck_assert_int_eq(w.status, MM_ERETRY);
  ck_assert_int_eq(log_count(log, "unprocessed BatchWriteItem"), MM_DDB_DEDUP_UNPROCESSED_ROUNDS + 1);
  /* Backoff is bounded: 8 waits of at most 10..500 ms each, twice. */
  ck_assert_int_lt(mm_mono_ms() - t0, 5000);
  mm_dedup_destroy(dd);
  stop_node(&px);
  unlink(log);
  use_dynalite();
  char *item = claim_item("unproc#never");
  ck_assert_msg(!strstr(item, "Item"), "a handed-back Put was not written: %s", item);
  free(item);
}
END_TEST


/* ------------------------------------------------------------------ */
/* Through the pipeline: the same event, memory vs dynamodb            */
/* ------------------------------------------------------------------ */

#define EXAMPLE MM_SOURCE_LUA_DIR "/examples/order_totals"

static const char *const PIPE_SCRIPTS[] = {
    NULL, /* lua/examples/order_totals/decode.lua (sum, keys customer#...) */
    "return { name = 'p_hll', aggregate = 'hll',\n"
    "  window = { granularity = '1h', retention = '1d' },\n"
    "  decode = function(rec) local i = rec.dynamodb.NewImage or rec.dynamodb.OldImage\n"
    "    if not i or not i.customer_id then return nil end return i end,\n"
    "  key = function(o) return 'hll#' .. o.customer_id end,\n"
    "  value = function(o) return o.order_id end }\n",
    "return { name = 'p_max', aggregate = 'max',\n"
    "  window = { granularity = '15m', retention = '7d' },\n"
    "  decode = function(rec) local i = rec.dynamodb.NewImage\n"
    "    if not i or not i.customer_id or not i.total then return nil end return i end,\n"
    "  keys = function(o) return { 'max#' .. o.customer_id, 'max#all' } end,\n"
    "  value = function(o) return o.total end }\n",
    "return { name = 'p_last', aggregate = 'last',\n"
    "  decode = function(rec) local i = rec.dynamodb.NewImage or rec.dynamodb.OldImage\n"
    "    if not i or not i.customer_id then return nil end return i end,\n"
    "  key = function(o) return 'last#' .. o.customer_id end,\n"
    "  value = function(o) return o.status or 'none' end }\n",
    "return { name = 'p_count', aggregate = 'count',\n"
    "  decode = function(rec) return rec.dynamodb.Keys end,\n"
    "  key = function(o) return 'count#' .. o.order_id end }\n",
};
static const char *const PIPE_KEYS[] = {
    "customer#c-42", "customer#c-7", "customer#c-99", "hll#c-42", "hll#c-7", "hll#c-99",
    "max#c-42", "max#c-7", "max#c-99", "max#all", "last#c-42", "last#c-7", "last#c-99",
    "count#o-1001", "count#o-1002", "count#o-1003", "count#o-1004"};

static mm_pipeline_t *make_pipeline(int script, mm_store_t *st, mm_dedup_t *dd) {
  mm_err_t err;
  mm_config_t cfg;
  mm_config_defaults(&cfg);
  cfg.retry_base_ms = 1;
  cfg.retry_max_ms = 5;
  const char *path =
      PIPE_SCRIPTS[script] ? tu_write_temp(".lua", PIPE_SCRIPTS[script]) : EXAMPLE "/decode.lua";
  mm_script_opts_t so = {.budget = 1000000, .mem_limit = 16u << 20,
                         .lua_dir = MM_SOURCE_LUA_DIR, .max_depth = 64};
  mm_script_t *sc = NULL;
  ck_assert_msg(mm_script_load(&sc, path, &so, &err) == 0, "script %d: %s", script, err.msg);
  mm_pipeline_t *pl = NULL;
  ck_assert_msg(mm_pipeline_create(&pl, sc, st, dd, &cfg, &err) == 0, "%s", err.msg);
  mm_pipeline_set_metrics_out(pl, NULL);
  return pl;
}

/* Runs the example event; returns the response (caller frees). */
static char *run_event(mm_pipeline_t *pl, const char *event) {
  mm_result_t res;
  mm_invoke_t inv = {.event = event, .len = strlen(event), .request_id = "t"};
  int rc = mm_pipeline_run(pl, &inv, &res);
  ck_assert_msg(rc == 0, "run: %s", res.err.msg);
  char *out = strdup(res.response);
  mm_result_free(&res);
  return out;
}

/* Every row of key as "bucket ttl value" lines (caller frees). */
static char *rows_text(mm_store_t *s, const char *key) {
  rows_t rows;
  query(s, key, NULL, &rows);
  mm_buf_t b = MM_BUF_INIT;
  for (int i = 0; i < rows.n; i++)
    mm_buf_printf(&b, "%lld %lld %s\n", (long long)rows.bucket[i], (long long)rows.ttl[i],
                  rows.value[i]);
  rows_free(&rows);
  mm_buf_adds(&b, "");
  return mm_buf_take(&b, NULL);
}

START_TEST(pipeline_matches_memory_store) {
  need_servers();
  use_dynalite();
  mm_log_init(stderr);
  mm_log_set_level(MM_LOG_FATAL);
  size_t elen;
  char path[512];
  snprintf(path, sizeof path, "%s/event.json", EXAMPLE);
  char *event = tu_read_file(path, &elen);
  ck_assert_ptr_nonnull(event);
  const int nscripts = (int)(sizeof PIPE_SCRIPTS / sizeof PIPE_SCRIPTS[0]);
  mm_err_t err;
  mm_pipeline_t *mp[8], *dp[8];
  for (int k = 0; k < nscripts; k++) {
    mm_store_t *d = open_store(STORE_TABLE, 0, 0);
    mm_dedup_t *dd = open_dedup();
    /* A pipeline owns its store: each memory pipeline gets its own. */
    mm_store_t *m = NULL;
    ck_assert_int_eq(mm_store_memory_open(&m, &err), 0);
    mp[k] = make_pipeline(k, m, NULL);
    dp[k] = make_pipeline(k, d, dd);
    char *r1 = run_event(mp[k], event), *r2 = run_event(dp[k], event);
    ck_assert_str_eq(r2, r1);
    ck_assert_str_eq(r2, "{\"batchItemFailures\":[]}");
    free(r1);
    free(r2);
  }
  /* Every key: same rows, buckets, ttls and values on both backends. */
  int compared = 0;
  static const char *const prefix[] = {"customer#", "hll#", "max#", "last#", "count#"};
  for (size_t i = 0; i < sizeof PIPE_KEYS / sizeof PIPE_KEYS[0]; i++) {
    int k = 0; /* the script writing this key (the table is shared) */
    while (strncmp(PIPE_KEYS[i], prefix[k], strlen(prefix[k])) != 0) k++;
    char *a = rows_text(mm_pipeline_store(mp[k]), PIPE_KEYS[i]);
    char *b = rows_text(mm_pipeline_store(dp[k]), PIPE_KEYS[i]);
    ck_assert_msg(strcmp(a, b) == 0, "%s: memory\n%s\ndynamodb\n%s", PIPE_KEYS[i], a, b);
    compared += a[0] != '\0';
    free(a);
    free(b);
  }
  ck_assert_int_ge(compared, 12); /* most keys have rows */
  /* The example's documented values. */
  char *t = rows_text(mm_pipeline_store(dp[0]), "customer#c-99");
  ck_assert_str_eq(t, "0 0 0.3\n");
  free(t);
  /* Redelivery with dedup on: every record is a duplicate, nothing moves. */
  char *before = rows_text(mm_pipeline_store(dp[0]), "customer#c-42");
  char *r = run_event(dp[0], event);
  ck_assert_str_eq(r, "{\"batchItemFailures\":[]}");
  free(r);
  const mm_metrics_t *m = mm_pipeline_metrics(dp[0]);
  ck_assert_msg(m->dedup_skips > 0 && m->merges == 0, "dedup skips %llu, merges %llu",
                (unsigned long long)m->dedup_skips, (unsigned long long)m->merges);
  char *after = rows_text(mm_pipeline_store(dp[0]), "customer#c-42");
  ck_assert_str_eq(after, before);
  free(before);
  free(after);
  for (int k = 0; k < nscripts; k++) {
    mm_pipeline_destroy(mp[k]);
    mm_pipeline_destroy(dp[k]);
  }
  free(event);
}
END_TEST


/* ------------------------------------------------------------------ */
/* Faults: nothing lost, nothing counted twice but unknown outcomes    */
/* ------------------------------------------------------------------ */

enum { FAULT_RECORDS = 160 };

/* Records [first, FAULT_RECORDS) of a generated stream, with increasing
 * SequenceNumbers. */
static char *fault_event(int first, const char *run) {
  mm_buf_t b = MM_BUF_INIT;
  mm_buf_adds(&b, "{\"Records\":[");
  for (int i = first; i < FAULT_RECORDS; i++) {
    mm_buf_printf(&b,
                  "%s{\"eventID\":\"%s-%d\",\"eventName\":\"INSERT\",\"eventVersion\":\"1.1\","
                  "\"eventSource\":\"aws:dynamodb\",\"awsRegion\":\"eu-west-1\","
                  "\"eventSourceARN\":\"arn:aws:dynamodb:eu-west-1:123456789012:table/t/stream/"
                  "2026-01-01T00:00:00.000\",\"dynamodb\":{\"ApproximateCreationDateTime\":"
                  "1764072001,\"Keys\":{\"id\":{\"S\":\"%d\"}},\"NewImage\":{\"id\":{\"S\":\"%d\"}},"
                  "\"SequenceNumber\":\"4%021d\",\"SizeBytes\":40,"
                  "\"StreamViewType\":\"NEW_IMAGE\"}}",
                  i > first ? "," : "", run, i, i, i, i);
  }
  mm_buf_adds(&b, "]}");
  return mm_buf_take(&b, NULL);
}

/* Decoded string member `name` of object node obj (caller frees). */
static char *json_field_at(mm_json_doc_t *d, uint32_t obj, const char *name) {
  uint32_t v = mm_json_get(d, obj, name, strlen(name));
  if (!v || mm_json_type(d, v) != MM_JSON_STR) return NULL;
  return mm_json_strdup(d, v, NULL);
}

/* Lowest failed SequenceNumber's record index in a response, or -1. */
static int lowest_failure(const char *resp) {
  mm_json_doc_t d;
  mm_err_t err;
  ck_assert_int_eq(mm_json_parse(&d, resp, strlen(resp), 0, &err), 0);
  uint32_t arr = mm_json_get(&d, 0, "batchItemFailures", 17);
  int low = -1;
  if (arr && mm_json_type(&d, arr) == MM_JSON_ARR) {
    uint32_t e = mm_json_first(&d, arr);
    for (uint32_t i = 0; i < mm_json_len(&d, arr); i++, e = mm_json_next(&d, e)) {
      char *seq = json_field_at(&d, e, "itemIdentifier");
      ck_assert_ptr_nonnull(seq);
      int idx = atoi(seq + 1); /* "4" + 21 digits of the index */
      if (low < 0 || idx < low) low = idx;
      free(seq);
    }
  }
  mm_json_free(&d);
  return low;
}

/*
 * A count pipeline with dedup, store and dedup both behind fault-proxy.js
 * (throttling, 500s, connections closed before and after dynalite applied
 * the request, dedup batches partly handed back unprocessed). The stream is redelivered from the lowest reported
 * SequenceNumber, as Lambda does, until a delivery reports no failure.
 * Then every count must be at least the true count (nothing lost), and the
 * excess at most what the unknown-outcome metric admits.
 */
START_TEST(faults_lose_nothing_and_double_count_only_unknowns) {
  need_servers();
  use_dynalite();
  mm_log_init(stderr);
  mm_log_set_level(MM_LOG_FATAL);
  char log[256], port[16], seed[16];
  snprintf(log, sizeof log, "/tmp/mm-faults-%d.log", (int)getpid());
  unlink(log);
  snprintf(port, sizeof port, "%d", g_ddb.port);
  snprintf(seed, sizeof seed, "%d", 12345);
  const char *args[] = {port, seed,
                        "{\"throttle\":0.08,\"error500\":0.05,\"drop_before\":0.05,"
                        "\"drop_after\":0.12,\"unprocessed\":0.15,"
                        "\"every\":{\"unprocessed:BatchGetItem\":7,"
                        "\"unprocessed:BatchWriteItem\":7}}",
                        log, NULL};
  server_t px = {-1, 0, -1};
  ck_assert_msg(start_node(&px, "fault-proxy.js", args) == 0, "%s", g_setup_err);
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d", px.port);
  setenv("AWS_ENDPOINT_URL_DYNAMODB", url, 1);
  const char *script =
      "return { name = 'faults', aggregate = 'count',\n"
      "  decode = function(rec) return rec.dynamodb.NewImage end,\n"
      "  keys = function(o) return { 'fault#' .. o.id .. '#a', 'fault#' .. o.id .. '#b' } end }\n";
  mm_err_t err;
  mm_config_t cfg;
  mm_config_defaults(&cfg);
  cfg.retry_base_ms = 1;
  cfg.retry_max_ms = 4;
  cfg.max_attempts = 2; /* let failures reach Lambda's redelivery too */
  mm_script_opts_t so = {.budget = 1000000, .mem_limit = 16u << 20,
                         .lua_dir = MM_SOURCE_LUA_DIR, .max_depth = 64};
  mm_script_t *sc = NULL;
  ck_assert_msg(mm_script_load(&sc, tu_write_temp(".lua", script), &so, &err) == 0, "%s",
                err.msg);
  mm_store_t *st = open_store(STORE_TABLE, 0, 2000);
  mm_dedup_t *dd = NULL;
  mm_store_opts_t o = {0, 2000};
  ck_assert_int_eq(mm_dedup_dynamodb_open(&dd, DEDUP_TABLE, &o, &err), 0);
  mm_pipeline_t *pl = NULL;
  ck_assert_msg(mm_pipeline_create(&pl, sc, st, dd, &cfg, &err) == 0, "%s", err.msg);
  mm_pipeline_set_metrics_out(pl, NULL);
  uint64_t unknown = 0, deliveries = 0;
  int first = 0;
  while (first >= 0 && deliveries < 80) {
    char *ev = fault_event(first, "fault");
    char *resp = run_event(pl, ev);
    unknown += mm_pipeline_metrics(pl)->unknown_outcomes;
    deliveries++;
    int low = lowest_failure(resp);
    ck_assert_msg(low < 0 || low >= first, "failure %d outside the delivery from %d", low, first);
    first = low;
    free(ev);
    free(resp);
  }
  ck_assert_msg(first < 0, "still failing after %llu deliveries", (unsigned long long)deliveries);
  mm_pipeline_destroy(pl);
  stop_node(&px);

  /* Faults really happened, of every kind. */
  size_t n;
  char *text = tu_read_file(log, &n);
  ck_assert_ptr_nonnull(text);
  const char *kinds[] = {"throttle ", "error500 ", "drop_before ", "drop_after UpdateItem",
                         "unprocessed BatchGetItem", "unprocessed BatchWriteItem"};
  for (int k = 0; k < 6; k++) ck_assert_msg(strstr(text, kinds[k]), "no %s fault", kinds[k]);
  /* The dedup's batch requests get the other faults too. */
  int batch_faults = 0;
  for (char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
    if (strncmp(line, "unprocessed ", 12) != 0 && strncmp(strchr(line, ' '), " Batch", 6) == 0)
      batch_faults++;
  ck_assert_msg(batch_faults > 0, "no fault but unprocessed hit a dedup batch request");
  free(text);
  unlink(log);

  /* Read back directly from dynalite. */
  use_dynalite();
  mm_store_t *s = open_store(STORE_TABLE, 0, 0);
  long long excess = 0;
  for (int i = 0; i < FAULT_RECORDS; i++)
    for (int half = 0; half < 2; half++) {
      /* Every key belongs to one record: one contribution per merge. */
      char key[32];
      snprintf(key, sizeof key, "fault#%d#%c", i, half ? 'b' : 'a');
      char *v = value_of(s, key, 0);
      ck_assert_msg(v != NULL, "%s: the record's merge was lost", key);
      long long got = atoll(v);
      free(v);
      ck_assert_msg(got >= 1, "%s: count %lld: a merge was lost", key, got);
      excess += got - 1;
    }
  fprintf(stderr,
          "check_ddb: faults: %llu deliveries, %llu unknown outcomes, %lld extra counts\n",
          (unsigned long long)deliveries, (unsigned long long)unknown, excess);
  /* Each unknown outcome can re-apply at most one merge (one contribution:
   * every key here belongs to one record), or both keys of a record whose
   * claim could not record them (metered once per claim). */
  ck_assert_msg(excess <= 2 * (long long)unknown, "%lld extra counts, %llu unknown outcomes",
                excess, (unsigned long long)unknown);
  mm_store_destroy(s);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

START_TEST(missing_table_is_permanent) {
  need_servers();
  use_dynalite();
  mm_store_t *s = open_store("no_such_table", 0, 0);
  mm_delta_t d;
  num_delta(&d, MM_AGG_SUM, "1");
  mm_err_t err;
  ck_assert_int_eq(merge1(s, "k", 0, 0, &d, &err), MM_EPERM);
  ck_assert_msg(strstr(err.msg, "ResourceNotFoundException") && strstr(err.msg, "UpdateItem") &&
                    strstr(err.msg, "no_such_table"),
                "%s", err.msg);
  ck_assert_msg(!strstr(err.msg, SECRET) && !strstr(err.msg, KEY_ID), "%s", err.msg);
  rows_t rows;
  ck_assert_int_eq(mm_store_query(s, "k", NULL, collect, &rows, &err), MM_EPERM);
  ck_assert_msg(strstr(err.msg, "ResourceNotFoundException"), "%s", err.msg);
  mm_store_destroy(s);
  mm_dedup_t *dd = NULL;
  ck_assert_int_eq(mm_dedup_dynamodb_open(&dd, "no_such_dedup", NULL, &err), 0);
  mm_claim_t c = {.id = "p#e", .ttl = 1900000000};
  mm_dedup_begin(dd, &c, 1, 0);
  ck_assert_int_eq(c.status, MM_EPERM);
  mm_dedup_destroy(dd);
}
END_TEST

/* A port nobody listens on. */
static int closed_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  socklen_t l = sizeof a;
  getsockname(fd, (struct sockaddr *)&a, &l);
  close(fd);
  return ntohs(a.sin_port);
}

START_TEST(no_server_is_transient) {
  need_servers();
  use_dynalite();
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d", closed_port());
  setenv("AWS_ENDPOINT_URL_DYNAMODB", url, 1);
  mm_store_t *s = open_store(STORE_TABLE, 0, 1000);
  mm_delta_t d;
  num_delta(&d, MM_AGG_SUM, "1");
  mm_err_t err;
  ck_assert_int_eq(merge1(s, "k", 0, 0, &d, &err), MM_ERETRY);
  ck_assert_msg(strstr(err.msg, "network error"), "%s", err.msg);
  mm_store_destroy(s);
}
END_TEST

/* A server that accepts connections (the kernel's backlog does) but never
 * answers: the write was sent, its outcome is unknown; a read is just
 * retried. */
START_TEST(lost_answer_is_unknown_for_writes) {
  need_servers();
  use_dynalite();
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  ck_assert_int_eq(listen(fd, 16), 0);
  socklen_t l = sizeof a;
  getsockname(fd, (struct sockaddr *)&a, &l);
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d", ntohs(a.sin_port));
  setenv("AWS_ENDPOINT_URL_DYNAMODB", url, 1);
  mm_store_t *s = open_store(STORE_TABLE, 0, 300);
  mm_delta_t d;
  num_delta(&d, MM_AGG_SUM, "1");
  mm_err_t err;
  int64_t t0 = mm_mono_ms();
  ck_assert_int_eq(merge1(s, "k", 0, 0, &d, &err), MM_EUNKNOWN);
  ck_assert_int_lt(mm_mono_ms() - t0, 2000);
  ck_assert_msg(strstr(err.msg, "may have been applied"), "%s", err.msg);
  /* The deadline cuts a request's own timeout (3 s here) short. */
  mm_store_destroy(s);
  s = open_store(STORE_TABLE, 0, 3000);
  mm_merge_t op = {.key = "k", .delta = &d};
  t0 = mm_mono_ms();
  mm_store_merge(s, &op, 1, mm_now_ms() + 250);
  ck_assert_int_eq(op.status, MM_EUNKNOWN);
  ck_assert_int_lt(mm_mono_ms() - t0, 1500);
  /* A sketch merge starts with a read: retryable. */
  mm_delta_t h;
  str_delta(&h, MM_AGG_HLL, "x");
  ck_assert_int_eq(merge1(s, "k", 0, 0, &h, &err), MM_ERETRY);
  mm_delta_free(&h);
  mm_store_destroy(s);
  /* Dedup requests are idempotent: retryable too. */
  mm_dedup_t *dd = NULL;
  mm_store_opts_t o = {0, 300};
  ck_assert_int_eq(mm_dedup_dynamodb_open(&dd, DEDUP_TABLE, &o, &err), 0);
  mm_claim_t c = {.id = "p#e", .ttl = 1900000000};
  mm_dedup_begin(dd, &c, 1, 0);
  ck_assert_int_eq(c.status, MM_ERETRY);
  mm_dedup_destroy(dd);
  close(fd);
}
END_TEST

START_TEST(deadline_stops_new_requests) {
  need_servers();
  use_dynalite();
  mm_store_t *s = open_store(STORE_TABLE, 0, 0);
  mm_delta_t d;
  num_delta(&d, MM_AGG_SUM, "1");
  mm_merge_t op = {.key = "deadline#1", .delta = &d};
  mm_store_merge(s, &op, 1, mm_now_ms() - 1);
  ck_assert_int_eq(op.status, MM_EDEADLINE);
  ck_assert_ptr_null(value_of(s, "deadline#1", 0));
  mm_store_destroy(s);
}
END_TEST

START_TEST(bad_keys_are_refused) {
  need_servers();
  use_dynalite();
  mm_store_t *s = open_store(STORE_TABLE, 0, 0);
  mm_delta_t d;
  num_delta(&d, MM_AGG_SUM, "1");
  mm_err_t err;
  ck_assert_int_eq(merge1(s, "bad\xff", 0, 0, &d, &err), MM_EPERM);
  ck_assert_msg(strstr(err.msg, "UTF-8"), "%s", err.msg);
  mm_merge_t op = {.key = "", .delta = &d};
  mm_store_merge(s, &op, 1, 0);
  ck_assert_int_eq(op.status, MM_EPERM);
  mm_store_destroy(s);
  ck_assert_int_eq(mm_store_dynamodb_open(&s, "a b", NULL, &err), MM_EINVAL);
  ck_assert_int_eq(mm_store_dynamodb_open(&s, "ab", NULL, &err), MM_EINVAL);
}
END_TEST

/* Lines the capture server appended since offset. */
static char *capture_since(size_t off, size_t *len) {
  size_t n = 0;
  char *all = tu_read_file(g_cap_file, &n);
  ck_assert_ptr_nonnull(all);
  ck_assert_uint_ge(n, off);
  char *out = strdup(all + off);
  *len = n - off;
  free(all);
  return out;
}

static size_t capture_size(void) {
  struct stat st;
  return stat(g_cap_file, &st) == 0 ? (size_t)st.st_size : 0;
}

START_TEST(errors_are_classified_by_type) {
  need_servers();
  use_capture();
  mm_ddb_t *c = NULL;
  mm_err_t err;
  ck_assert_int_eq(mm_ddb_open(&c, 0, 0, &err), 0);
  struct {
    const char *table;
    int write;
    int status;
    int cond;
  } cases[] = {
      {"canned-400-ProvisionedThroughputExceededException", 1, MM_ERETRY, 0},
      {"canned-400-ThrottlingException", 1, MM_ERETRY, 0},
      {"canned-400-RequestLimitExceeded", 1, MM_ERETRY, 0},
      {"canned-400-LimitExceededException", 1, MM_ERETRY, 0},
      {"canned-500-InternalServerError", 1, MM_ERETRY, 0},
      {"canned-503-ServiceUnavailable", 1, MM_ERETRY, 0},
      {"canned-502-Whatever", 1, MM_ERETRY, 0},
      {"canned-400-ValidationException", 1, MM_EPERM, 0},
      {"canned-400-ResourceNotFoundException", 0, MM_EPERM, 0},
      {"canned-400-AccessDeniedException", 1, MM_EPERM, 0},
      {"canned-403-UnknownOperationException", 1, MM_EPERM, 0},
      {"canned-400-ConditionalCheckFailedException", 1, MM_EPERM, 1},
      {"canned-badcrc", 1, MM_EUNKNOWN, 0},
      {"canned-badcrc", 0, MM_ERETRY, 0},
      {"plain", 1, 0, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    mm_ddb_req_t r;
    mm_ddb_req_init(&r, "UpdateItem", cases[i].table, cases[i].write);
    mm_buf_printf(&r.body, "{\"TableName\":\"%s\"}", cases[i].table);
    mm_ddb_call(c, &r, 0);
    ck_assert_msg(r.status == cases[i].status, "%s: status %d (%s)", cases[i].table, r.status,
                  r.err.msg);
    ck_assert_int_eq(r.cond_failed, cases[i].cond);
    if (r.status && strncmp(cases[i].table, "canned-", 7) == 0 &&
        strcmp(cases[i].table, "canned-badcrc") != 0) {
      const char *type = strrchr(cases[i].table, '-') + 1;
      ck_assert_str_eq(r.type, type);
      ck_assert_msg(strstr(r.err.msg, "UpdateItem") && strstr(r.err.msg, cases[i].table) &&
                        strstr(r.err.msg, "canned") && strstr(r.err.msg, "request id"),
                    "%s", r.err.msg);
    }
    ck_assert_msg(!strstr(r.err.msg, SECRET), "%s", r.err.msg);
    mm_ddb_req_free(&r);
  }
  mm_ddb_destroy(c);
}
END_TEST

/* ------------------------------------------------------------------ */
/* SigV4 against the AWS SDK's signer                                  */
/* ------------------------------------------------------------------ */

typedef struct captured {
  char *received, *expected, *token, *error, *target, *body;
  size_t body_len;
} captured_t;

static void captured_free(captured_t *c) {
  free(c->received);
  free(c->expected);
  free(c->token);
  free(c->error);
  free(c->target);
  free(c->body);
  memset(c, 0, sizeof *c);
}

static char *json_field(mm_json_doc_t *d, const char *name) {
  uint32_t v = mm_json_get(d, 0, name, strlen(name));
  if (!v || mm_json_type(d, v) != MM_JSON_STR) return NULL;
  return mm_json_strdup(d, v, NULL);
}

/* Decodes base64 with a table (independent of the code under test). */
static char *unb64(const char *s, size_t *n) {
  static const char *A = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t len = strlen(s);
  char *o = malloc(len + 1);
  size_t j = 0;
  unsigned v = 0;
  int bits = 0;
  for (size_t i = 0; i < len && s[i] != '='; i++) {
    const char *p = strchr(A, s[i]);
    ck_assert_ptr_nonnull(p);
    v = (v << 6) | (unsigned)(p - A);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      o[j++] = (char)((v >> bits) & 0xff);
    }
  }
  o[j] = '\0';
  *n = j;
  return o;
}

/* Reads the single request captured since off. */
static void capture_one(size_t off, captured_t *c) {
  size_t n;
  char *text = capture_since(off, &n);
  char *nl = strchr(text, '\n');
  ck_assert_msg(nl && nl[1] == '\0', "expected exactly one captured request, got: %s", text);
  mm_json_doc_t d;
  mm_err_t err;
  ck_assert_int_eq(mm_json_parse(&d, text, (size_t)(nl - text), 0, &err), 0);
  memset(c, 0, sizeof *c);
  c->received = json_field(&d, "received");
  c->expected = json_field(&d, "expected");
  c->token = json_field(&d, "token");
  c->error = json_field(&d, "error");
  c->target = json_field(&d, "target");
  char *b = json_field(&d, "body_b64");
  ck_assert_ptr_nonnull(b);
  c->body = unb64(b, &c->body_len);
  free(b);
  mm_json_free(&d);
  free(text);
}

/* Signature=... of an Authorization header (static buffer per call). */
static const char *part(const char *auth, const char *name, char *out, size_t cap) {
  const char *p = strstr(auth, name);
  ck_assert_msg(p != NULL, "%s not in %s", name, auth);
  p += strlen(name);
  size_t k = strcspn(p, ", ");
  ck_assert_uint_lt(k, cap);
  memcpy(out, p, k);
  out[k] = '\0';
  return out;
}

static void assert_signed_like_sdk(const captured_t *c, int with_token) {
  ck_assert_msg(c->error == NULL, "capture server: %s", c->error ? c->error : "");
  ck_assert_ptr_nonnull(c->received);
  ck_assert_ptr_nonnull(c->expected);
  char a[256], b[256];
  ck_assert_str_eq(part(c->received, "Signature=", a, sizeof a),
                   part(c->expected, "Signature=", b, sizeof b));
  ck_assert_str_eq(part(c->received, "Credential=", a, sizeof a),
                   part(c->expected, "Credential=", b, sizeof b));
  ck_assert_str_eq(part(c->received, "SignedHeaders=", a, sizeof a),
                   part(c->expected, "SignedHeaders=", b, sizeof b));
  ck_assert_uint_eq(strlen(part(c->received, "Signature=", a, sizeof a)), 64);
  /* What AWS requires signed, and the DynamoDB request headers. */
  part(c->received, "SignedHeaders=", a, sizeof a);
  ck_assert_str_eq(a, with_token ? "content-type;host;x-amz-date;x-amz-security-token;x-amz-target"
                                 : "content-type;host;x-amz-date;x-amz-target");
  if (with_token) {
    ck_assert_ptr_nonnull(c->token);
    ck_assert_str_eq(c->token, TOKEN);
  } else {
    ck_assert_ptr_null(c->token);
  }
}

START_TEST(sigv4_matches_sdk_signer) {
  need_servers();
  use_capture();
  /* 1. No session token; a UTF-8 key, through the store. */
  mm_store_t *s = open_store(STORE_TABLE, 0, 0);
  mm_delta_t d;
  num_delta(&d, MM_AGG_SUM, "0.1");
  const char *key = "\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87\xf0\x9f\xa6\x8a"; /* ключ🦊 */
  size_t off = capture_size();
  ck_assert_int_eq(merge1(s, key, 0, 0, &d, NULL), 0);
  mm_store_destroy(s);
  captured_t c;
  capture_one(off, &c);
  assert_signed_like_sdk(&c, 0);
  ck_assert_str_eq(c.target, "DynamoDB_20120810.UpdateItem");
  ck_assert_msg(memmem(c.body, c.body_len, key, strlen(key)) != NULL,
                "the body carries the key as raw UTF-8: %s", c.body);
  ck_assert_msg(strstr(c.received, "Credential=" KEY_ID "/") &&
                    strstr(c.received, "/us-east-1/dynamodb/aws4_request"),
                "%s", c.received);
  captured_free(&c);

  /* 2. With a session token, another region, a UTF-8 body via dedup. */
  setenv("AWS_ACCESS_KEY_ID", TOKEN_KEY_ID, 1);
  setenv("AWS_SECRET_ACCESS_KEY", TOKEN_SECRET, 1);
  setenv("AWS_SESSION_TOKEN", TOKEN, 1);
  setenv("AWS_REGION", "eu-central-1", 1);
  mm_dedup_t *dd = open_dedup();
  mm_claim_t cl = {.id = "p#\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87\xf0\x9f\xa6\x8a", .ttl = 1900000000};
  off = capture_size();
  mm_dedup_begin(dd, &cl, 1, 0);
  /* The capture server answers {}: a BatchGetItem answer without
   * Responses is not taken to mean "no claim". */
  ck_assert_int_eq(cl.status, MM_ERETRY);
  ck_assert_msg(strstr(cl.err.msg, "Responses"), "%s", cl.err.msg);
  mm_dedup_destroy(dd);
  capture_one(off, &c);
  assert_signed_like_sdk(&c, 1);
  ck_assert_str_eq(c.target, "DynamoDB_20120810.BatchGetItem");
  ck_assert_msg(strstr(c.received, "/eu-central-1/dynamodb/aws4_request"), "%s", c.received);
  captured_free(&c);

  /* 3. Negative control: the SDK, told another secret, disagrees. */
  unsetenv("AWS_SESSION_TOKEN");
  setenv("AWS_ACCESS_KEY_ID", WRONG_KEY_ID, 1);
  setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
  s = open_store(STORE_TABLE, 0, 0);
  off = capture_size();
  ck_assert_int_eq(merge1(s, key, 0, 0, &d, NULL), 0);
  mm_store_destroy(s);
  capture_one(off, &c);
  char a[256], b[256];
  ck_assert_ptr_nonnull(c.expected);
  ck_assert_str_ne(part(c.received, "Signature=", a, sizeof a),
                   part(c.expected, "Signature=", b, sizeof b));
  captured_free(&c);
}
END_TEST


/* TLS is verified against the bundle of SSL_CERT_FILE: dynalite over HTTPS
 * with a certificate from tests/servers/tls is accepted with that CA and
 * refused (before anything is sent) with another. */
START_TEST(tls_is_verified_with_the_bundle) {
  need_servers();
  use_dynalite();
  server_t tls = {-1, 0, -1};
  const char *args[] = {"--tls", SERVERS "/tls", NULL};
  ck_assert_msg(start_node(&tls, "dynalite.js", args) == 0, "%s", g_setup_err);
  char url[64];
  snprintf(url, sizeof url, "https://127.0.0.1:%d", tls.port);
  setenv("AWS_ENDPOINT_URL_DYNAMODB", url, 1);
  const char *bundles[2] = {SERVERS "/tls/ca.crt", SERVERS "/node_modules/dynalite/ssl/ca-crt.pem"};
  for (int i = 0; i < 2; i++) {
    setenv("SSL_CERT_FILE", bundles[i], 1);
    mm_ddb_t *c = NULL;
    mm_err_t err;
    ck_assert_int_eq(mm_ddb_open(&c, 0, 3000, &err), 0);
    mm_ddb_req_t r;
    mm_ddb_req_init(&r, "ListTables", "-", 1);
    mm_buf_adds(&r.body, "{}");
    int rc = mm_ddb_call(c, &r, 0);
    if (i == 0) {
      ck_assert_msg(rc == 0, "trusted CA: %s", r.err.msg);
      ck_assert_msg(r.resp.data && strstr(r.resp.data, "TableNames"), "%s", r.resp.data);
    } else {
      /* Refused at the handshake: nothing was sent, so even a write is
       * simply retryable. */
      ck_assert_msg(rc == MM_ERETRY, "untrusted CA: status %d (%s)", rc, r.err.msg);
      ck_assert_msg(strstr(r.err.msg, "certificate") || strstr(r.err.msg, "SSL"), "%s", r.err.msg);
    }
    mm_ddb_req_free(&r);
    mm_ddb_destroy(c);
  }
  stop_node(&tls);
}
END_TEST

/* ------------------------------------------------------------------ */
/* AWS settings from the environment                                   */
/* ------------------------------------------------------------------ */

START_TEST(aws_settings_from_env) {
  mm_aws_t a;
  mm_err_t err;
  unsetenv("AWS_ENDPOINT_URL_DYNAMODB");
  unsetenv("AWS_ENDPOINT_URL");
  unsetenv("AWS_DEFAULT_REGION");
  unsetenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");
  unsetenv("AWS_SESSION_TOKEN");
  setenv("AWS_REGION", "eu-west-1", 1);
  setenv("AWS_ACCESS_KEY_ID", "AKID", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
  ck_assert_int_eq(mm_aws_init(&a, "dynamodb", &err), 0);
  ck_assert_str_eq(a.endpoint, "https://dynamodb.eu-west-1.amazonaws.com/");
  ck_assert_str_eq(a.sigv4, "aws:amz:eu-west-1:dynamodb");
  ck_assert_ptr_null(a.session_token);
  mm_aws_free(&a);
  setenv("AWS_REGION", "cn-north-1", 1);
  ck_assert_int_eq(mm_aws_init(&a, "dynamodb", &err), 0);
  ck_assert_str_eq(a.endpoint, "https://dynamodb.cn-north-1.amazonaws.com.cn/");
  mm_aws_free(&a);
  /* Overrides: the service variable wins over the general one. */
  setenv("AWS_ENDPOINT_URL", "http://general:1", 1);
  ck_assert_int_eq(mm_aws_init(&a, "dynamodb", &err), 0);
  ck_assert_str_eq(a.endpoint, "http://general:1/");
  mm_aws_free(&a);
  setenv("AWS_ENDPOINT_URL_DYNAMODB", "https://ddb.local:8443/prefix", 1);
  ck_assert_int_eq(mm_aws_init(&a, "dynamodb", &err), 0);
  ck_assert_str_eq(a.endpoint, "https://ddb.local:8443/prefix");
  mm_aws_free(&a);
  setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true", 1);
  ck_assert_int_eq(mm_aws_init(&a, "dynamodb", &err), 0);
  ck_assert_str_eq(a.endpoint, "https://dynamodb.cn-north-1.amazonaws.com.cn/");
  mm_aws_free(&a);
  unsetenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");
  setenv("AWS_ENDPOINT_URL_DYNAMODB", "ftp://x", 1);
  ck_assert_int_eq(mm_aws_init(&a, "dynamodb", &err), MM_EINVAL);
  ck_assert_msg(strstr(err.msg, "AWS_ENDPOINT_URL_DYNAMODB"), "%s", err.msg);
  /* No region: required for AWS, defaulted for a local endpoint. */
  unsetenv("AWS_REGION");
  ck_assert_int_eq(mm_aws_init(&a, "dynamodb", &err), MM_EINVAL);
  setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:1", 1);
  ck_assert_int_eq(mm_aws_init(&a, "dynamodb", &err), 0);
  ck_assert_str_eq(a.region, "us-east-1");
  mm_aws_free(&a);
  unsetenv("AWS_ENDPOINT_URL_DYNAMODB");
  unsetenv("AWS_ENDPOINT_URL");
  ck_assert_int_eq(mm_aws_init(&a, "dynamodb", &err), MM_EINVAL);
  ck_assert_msg(strstr(err.msg, "AWS_REGION"), "%s", err.msg);
  setenv("AWS_DEFAULT_REGION", "ap-south-1", 1);
  ck_assert_int_eq(mm_aws_init(&a, "dynamodb", &err), 0);
  ck_assert_str_eq(a.region, "ap-south-1");
  mm_aws_free(&a);
  /* Credentials: missing is an error that quotes no value. */
  unsetenv("AWS_SECRET_ACCESS_KEY");
  ck_assert_int_eq(mm_aws_init(&a, "dynamodb", &err), MM_EINVAL);
  ck_assert_msg(strstr(err.msg, "AWS_SECRET_ACCESS_KEY") && !strstr(err.msg, "AKID"), "%s",
                err.msg);
  setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
  setenv("AWS_SESSION_TOKEN", "tok", 1);
  ck_assert_int_eq(mm_aws_init(&a, "dynamodb", &err), 0);
  ck_assert_str_eq(a.session_token, "tok");
  mm_aws_free(&a);
  /* CA bundle: SSL_CERT_FILE first, else a host bundle that exists. */
  setenv("SSL_CERT_FILE", "/nonexistent/bundle.pem", 1);
  ck_assert_int_eq(mm_aws_init(&a, "dynamodb", &err), 0);
  ck_assert_str_eq(a.ca_file, "/nonexistent/bundle.pem");
  mm_aws_free(&a);
  unsetenv("SSL_CERT_FILE");
  ck_assert_int_eq(mm_aws_init(&a, "dynamodb", &err), 0);
  const char *bundles[] = MM_AWS_CA_BUNDLES;
  const char *want = access(bundles[0], R_OK) == 0 ? bundles[0]
                     : access(bundles[1], R_OK) == 0 ? bundles[1] : NULL;
  if (want) ck_assert_str_eq(a.ca_file, want);
  else ck_assert_ptr_null(a.ca_file);
  mm_aws_free(&a);
}
END_TEST

/* The shared decoder (buf.h) and DynamoDB's validity check built on it:
 * each boundary of RFC 3629 on both sides. */
START_TEST(utf8_boundaries) {
  uint32_t cp = 0;
  ck_assert_uint_eq(mm_utf8_next("A", 1, &cp), 1);
  ck_assert_uint_eq(cp, 0x41);
  ck_assert_uint_eq(mm_utf8_next("\xC2\x80", 2, &cp), 2);
  ck_assert_uint_eq(cp, 0x80);
  ck_assert_uint_eq(mm_utf8_next("\xEF\xBF\xBF", 3, &cp), 3);
  ck_assert_uint_eq(cp, 0xFFFF);
  ck_assert_uint_eq(mm_utf8_next("\xF4\x8F\xBF\xBF", 4, &cp), 4);
  ck_assert_uint_eq(cp, 0x10FFFF);
  ck_assert_uint_eq(mm_utf8_next("\xC1\xBF", 2, NULL), 0);         /* overlong */
  ck_assert_uint_eq(mm_utf8_next("\xE0\x9F\xBF", 3, NULL), 0);     /* overlong */
  ck_assert_uint_eq(mm_utf8_next("\xF0\x8F\xBF\xBF", 4, NULL), 0); /* overlong */
  ck_assert_uint_eq(mm_utf8_next("\xED\xA0\x80", 3, NULL), 0);     /* surrogate */
  ck_assert_uint_eq(mm_utf8_next("\xF4\x90\x80\x80", 4, NULL), 0); /* > U+10FFFF */
  ck_assert_uint_eq(mm_utf8_next("\xE2\x82", 2, NULL), 0);         /* cut short */
  ck_assert_uint_eq(mm_utf8_next("\x80", 1, NULL), 0);             /* lone continuation */
  ck_assert_uint_eq(mm_utf8_next("", 0, NULL), 0);
  ck_assert_int_eq(mm_ddb_utf8_valid("caf\xC3\xA9 \xF0\x9F\x98\x80", 10), 1);
  ck_assert_int_eq(mm_ddb_utf8_valid("ok\xED\xBF\xBF", 5), 0);
  ck_assert_int_eq(mm_ddb_utf8_valid("ok\xC3", 3), 0);
  ck_assert_int_eq(mm_ddb_utf8_valid("", 0), 1);
}
END_TEST

/* ------------------------------------------------------------------ */

static Suite *ddb_suite(void) {
  Suite *s = suite_create("ddb");
  TCase *t = tcase_create("aggregates");
  tcase_set_timeout(t, 60);
  tcase_add_test(t, sum_is_exact_decimal);
  tcase_add_test(t, count_counts);
  tcase_add_test(t, min_max_numbers_and_strings);
  tcase_add_test(t, first_last_follow_event_time);
  tcase_add_test(t, set_strings_numbers_and_mixing);
  tcase_add_test(t, hll_and_topk_sketches);
  tcase_add_test(t, hll_concurrent_writers);
  tcase_add_test(t, corrupt_sketch_is_never_overwritten);
  tcase_add_test(t, windowed_rows_carry_ttl);
  suite_add_tcase(s, t);
  t = tcase_create("batch_query");
  tcase_set_timeout(t, 60);
  tcase_add_test(t, batch_1000_ops_500_keys);
  tcase_add_test(t, query_buckets_in_order);
  tcase_add_test(t, query_follows_pages);
  tcase_add_test(t, connections_are_reused);
  suite_add_tcase(s, t);
  t = tcase_create("dedup");
  tcase_set_timeout(t, 60);
  tcase_add_test(t, dedup_new_partial_done);
  tcase_add_test(t, dedup_batch_of_claims);
  tcase_add_test(t, dedup_many_claims_and_duplicates);
  tcase_add_test(t, dedup_partial_union_and_bad_ids);
  tcase_add_test(t, dedup_unprocessed_keys_from_dynalite);
  tcase_add_test(t, dedup_unprocessed_resent_and_bounded);
  suite_add_tcase(s, t);
  t = tcase_create("pipeline");
  tcase_set_timeout(t, 60);
  tcase_add_test(t, pipeline_matches_memory_store);
  tcase_add_test(t, faults_lose_nothing_and_double_count_only_unknowns);
  suite_add_tcase(s, t);
  t = tcase_create("errors");
  tcase_set_timeout(t, 60);
  tcase_add_test(t, missing_table_is_permanent);
  tcase_add_test(t, no_server_is_transient);
  tcase_add_test(t, lost_answer_is_unknown_for_writes);
  tcase_add_test(t, deadline_stops_new_requests);
  tcase_add_test(t, bad_keys_are_refused);
  tcase_add_test(t, utf8_boundaries);
  tcase_add_test(t, errors_are_classified_by_type);
  suite_add_tcase(s, t);
  t = tcase_create("signing");
  tcase_set_timeout(t, 60);
  tcase_add_test(t, sigv4_matches_sdk_signer);
  tcase_add_test(t, aws_settings_from_env);
  tcase_add_test(t, tls_is_verified_with_the_bundle);
  suite_add_tcase(s, t);
  return s;
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  start_servers();
  int rc = tu_run_suite(ddb_suite());
  stop_node(&g_ddb);
  stop_node(&g_cap);
  if (g_cap_file[0]) unlink(g_cap_file);
  return rc;
}

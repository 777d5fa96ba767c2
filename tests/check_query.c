/*
 * check_query.c - query.h: plain rows, one bucket, and --last windows over
 * the in-process stores (memory://, sqlite://) and over a stand-in store
 * whose rows do not name their aggregate, as dynamodb:// rows do not. The
 * dynamodb:// path itself is covered end to end by tests/e2e/ddb.test.js.
 *
 * Expected values are computed here from the inputs (integer cents for
 * sums, plain comparisons, sorted unions, counted top-k weights, and the
 * union property of HyperLogLog: the combination of per-bucket sketches
 * equals one sketch of every item), never taken from the code under test.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agg.h"
#include "buf.h"
#include "decimal.h"
#include "query.h"
#include "store.h"
#include "testutil.h"

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

/* A delta from a spec: "n:TEXT" number, "s:TEXT" string, for first/last
 * "T@n:TEXT" (event time T), for sets members joined by '|'. */
static mm_delta_t delta_of(mm_agg_t agg, const char *spec) {
  mm_delta_t d;
  memset(&d, 0, sizeof d);
  d.agg = agg;
  d.weight = 1;
  mm_err_t e;
  const char *at = strchr(spec, '@');
  if (at && (agg == MM_AGG_FIRST || agg == MM_AGG_LAST)) {
    d.time = atof(spec);
    spec = at + 1;
  }
  if (agg == MM_AGG_SET) {
    char *copy = strdup(spec), *save = NULL;
    d.members = calloc(16, sizeof *d.members);
    for (char *m = strtok_r(copy, "|", &save); m; m = strtok_r(NULL, "|", &save)) {
      mm_scalar_t *s = &d.members[d.nmembers++];
      if (m[0] == 'n') {
        s->is_num = 1;
        ck_assert_int_eq(mm_dec_parse(&s->num, m + 2, strlen(m + 2), &e), 0);
      } else {
        s->str = strdup(m + 2);
        s->len = strlen(m + 2);
      }
    }
    free(copy);
    return d;
  }
  if (spec[0] == 'n') {
    d.v.is_num = 1;
    ck_assert_msg(mm_dec_parse(&d.v.num, spec + 2, strlen(spec + 2), &e) == 0, "%s", spec);
  } else {
    d.v.str = strdup(spec + 2);
    d.v.len = strlen(spec + 2);
  }
  return d;
}

/* Merges one delta into (key, bucket) with a ttl; asserts success. */
static void put(mm_store_t *s, const char *key, int64_t bucket, int64_t ttl, mm_agg_t agg,
                const char *spec) {
  mm_delta_t d = delta_of(agg, spec);
  mm_merge_t op = {.key = key, .key_len = strlen(key), .bucket = bucket, .ttl = ttl, .delta = &d};
  mm_store_merge(s, &op, 1, 0);
  ck_assert_msg(op.status == 0, "merge %s/%lld %s: %s", key, (long long)bucket, spec, op.err.msg);
  mm_delta_free(&d);
}

/* Runs q on s; returns what it printed (caller frees) and its status.
 * (noinline: GCC's dangling-pointer analysis misreads open_memstream.) */
__attribute__((noinline)) static char *run(mm_store_t *s, const mm_query_t *q, int *rc, mm_err_t *err) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  ck_assert_ptr_nonnull(f);
  *rc = mm_query_run(s, q, f, err);
  fclose(f);
  return text;
}

/* Runs q and asserts success and the exact output. */
static void expect(mm_store_t *s, const mm_query_t *q, const char *want) {
  mm_err_t err;
  int rc;
  char *got = run(s, q, &rc, &err);
  ck_assert_msg(rc == 0, "query %s: %s", q->key, err.msg);
  ck_assert_msg(strcmp(got, want) == 0, "query %s:\n want %s\n got  %s", q->key, want, got);
  free(got);
}

/* Runs q and asserts failure with code and a message containing part;
 * nothing may be printed for a --last query. */
static void expect_fail(mm_store_t *s, const mm_query_t *q, int code, const char *part) {
  mm_err_t err;
  mm_err_clear(&err);
  int rc;
  char *got = run(s, q, &rc, &err);
  ck_assert_msg(rc == code, "query %s: rc %d (%s), want %d", q->key, rc, err.msg, code);
  ck_assert_msg(strstr(err.msg, part), "message '%s' lacks '%s'", err.msg, part);
  if (q->last) ck_assert_str_eq(got, "");
  free(got);
}

static mm_store_t *memory_store(void) {
  mm_store_t *s = NULL;
  mm_err_t err;
  ck_assert_int_eq(mm_store_open(&s, "memory://", NULL, &err), 0);
  return s;
}

/* Backends the fold tests run on: 0 memory, 1 sqlite (a fresh file). */
static mm_store_t *backend(int which) {
  if (which == 0) return memory_store();
  char *dir = tu_temp_dir();
  char url[512];
  snprintf(url, sizeof url, "sqlite://%s/q.db", dir);
  free(dir);
  mm_store_t *s = NULL;
  mm_err_t err;
  ck_assert_msg(mm_store_open(&s, url, NULL, &err) == 0, "%s", err.msg);
  return s;
}

/* Integer cents as decimal text ("12.5", "-0.05", "3"). */
static void cents_text(long long c, char *out, size_t cap) {
  long long a = c < 0 ? -c : c;
  if (a % 100 == 0) snprintf(out, cap, "%s%lld", c < 0 ? "-" : "", a / 100);
  else if (a % 10 == 0) snprintf(out, cap, "%s%lld.%lld", c < 0 ? "-" : "", a / 100, (a % 100) / 10);
  else snprintf(out, cap, "%s%lld.%02lld", c < 0 ? "-" : "", a / 100, a % 100);
}

enum { G = 3600, NOW_BUCKET = 480000 };
#define NOW ((int64_t)NOW_BUCKET * G + 1234)

/* ------------------------------------------------------------------ */
/* The window rule                                                     */
/* ------------------------------------------------------------------ */

START_TEST(window_rule) {
  int64_t from, to;
  mm_err_t err;
  /* 7 days of hours: the current bucket and the 167 before it. */
  ck_assert_int_eq(mm_query_window("7d", 3600, NOW, &from, &to, &err), 0);
  ck_assert_int_eq(to, NOW_BUCKET);
  ck_assert_int_eq(from, NOW_BUCKET - 167);
  /* On a bucket boundary the new bucket is already the current one. */
  ck_assert_int_eq(mm_query_window("1h", 3600, 7200, &from, &to, &err), 0);
  ck_assert_int_eq(from, 2);
  ck_assert_int_eq(to, 2);
  ck_assert_int_eq(mm_query_window("1h", 3600, 7199, &from, &to, &err), 0);
  ck_assert_int_eq(to, 1);
  /* 15-minute buckets, a day: 96 of them. */
  ck_assert_int_eq(mm_query_window("1d", 900, 86400 * 3 + 5, &from, &to, &err), 0);
  ck_assert_int_eq(to - from + 1, 96);
  ck_assert_int_eq(to, 288);
  /* Before the epoch the bucket is floored, as the pipeline floors it. */
  ck_assert_int_eq(mm_query_window("2h", 3600, -1, &from, &to, &err), 0);
  ck_assert_int_eq(to, -1);
  ck_assert_int_eq(from, -2);
  /* Not a whole number of buckets, no granularity, bad durations. */
  ck_assert_int_eq(mm_query_window("90m", 3600, NOW, &from, &to, &err), MM_EINVAL);
  ck_assert_msg(strstr(err.msg, "whole number"), "%s", err.msg);
  ck_assert_int_eq(mm_query_window("30m", 3600, NOW, &from, &to, &err), MM_EINVAL);
  ck_assert_int_eq(mm_query_window("7d", 0, NOW, &from, &to, &err), MM_EINVAL);
  ck_assert_msg(strstr(err.msg, "granularity"), "%s", err.msg);
  ck_assert_int_eq(mm_query_window("7x", 3600, NOW, &from, &to, &err), MM_EINVAL);
  ck_assert_msg(strstr(err.msg, "--last"), "%s", err.msg);
  ck_assert_int_eq(mm_query_window("", 3600, NOW, &from, &to, &err), MM_EINVAL);
  ck_assert_int_eq(mm_query_window(NULL, 3600, NOW, &from, &to, &err), MM_EINVAL);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Plain rows                                                          */
/* ------------------------------------------------------------------ */

START_TEST(rows_in_bucket_order_and_one_bucket) {
  mm_store_t *s = backend(_i);
  put(s, "k\"1", 7, 0, MM_AGG_SUM, "n:1.5");
  put(s, "k\"1", 3, 0, MM_AGG_SUM, "n:-2");
  put(s, "k\"1", 5, 0, MM_AGG_SUM, "n:1E+2");
  put(s, "other", 5, 0, MM_AGG_SUM, "n:9");
  mm_query_t q = {.key = "k\"1"};
  expect(s, &q,
         "{\"key\":\"k\\\"1\",\"bucket\":3,\"value\":-2}\n"
         "{\"key\":\"k\\\"1\",\"bucket\":5,\"value\":100}\n"
         "{\"key\":\"k\\\"1\",\"bucket\":7,\"value\":1.5}\n");
  int64_t b = 5;
  q.bucket = &b;
  expect(s, &q, "{\"key\":\"k\\\"1\",\"bucket\":5,\"value\":100}\n");
  b = 4;
  expect(s, &q, "");
  mm_query_t none = {.key = "nobody"};
  expect(s, &none, "");
  mm_store_destroy(s);
}
END_TEST

START_TEST(bad_requests) {
  mm_store_t *s = memory_store();
  put(s, "k", 1, 0, MM_AGG_SUM, "n:1");
  int64_t b = 1;
  mm_query_t q = {.key = "k", .bucket = &b, .last = "1d", .granularity_s = G, .now_s = NOW};
  expect_fail(s, &q, MM_EINVAL, "--bucket and --last");
  mm_query_t q2 = {.key = "k", .last = "1d", .now_s = NOW};
  expect_fail(s, &q2, MM_EINVAL, "granularity");
  mm_query_t q3 = {.key = "k", .last = "90m", .granularity_s = G, .now_s = NOW};
  expect_fail(s, &q3, MM_EINVAL, "whole number");
  mm_query_t q4 = {.key = NULL};
  expect_fail(s, &q4, MM_EINVAL, "key");
  mm_store_destroy(s);
}
END_TEST

/* ------------------------------------------------------------------ */
/* --last                                                              */
/* ------------------------------------------------------------------ */

/*
 * Sums over many buckets, some outside the window on either side and one
 * expired: the result is the exact decimal sum of the rows inside, with
 * the window and row count printed.
 */
START_TEST(last_sums_the_window_exactly) {
  mm_store_t *s = backend(_i);
  long long want = 0;
  int rows = 0;
  uint64_t x = 0x9E3779B97F4A7C15ull;
  /* buckets NOW_BUCKET-30 .. NOW_BUCKET+2; window of 1d = 24 buckets */
  for (int64_t bk = NOW_BUCKET - 30; bk <= NOW_BUCKET + 2; bk++) {
    for (int j = 0; j < 3; j++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      long long c = (long long)(x % 200001) - 100000; /* -1000.00 .. 1000.00 */
      char text[64] = "n:";
      cents_text(c, text + 2, sizeof text - 2);
      /* One old bucket inside the window has already expired. */
      int64_t ttl = bk == NOW_BUCKET - 20 ? NOW - 1 : (bk + 1) * G + 30 * 86400;
      put(s, "cust", bk, ttl, MM_AGG_SUM, text);
      if (bk >= NOW_BUCKET - 23 && bk <= NOW_BUCKET && bk != NOW_BUCKET - 20) {
        want += c;
        if (j == 0) rows++;
      }
    }
  }
  char v[64], line[256];
  cents_text(want, v, sizeof v);
  snprintf(line, sizeof line,
           "{\"key\":\"cust\",\"last\":\"1d\",\"from\":%d,\"to\":%d,\"rows\":%d,\"value\":%s}\n",
           NOW_BUCKET - 23, NOW_BUCKET, rows, v);
  mm_query_t q = {.key = "cust", .last = "1d", .granularity_s = G, .has_agg = 1,
                  .agg = MM_AGG_SUM, .now_s = NOW};
  expect(s, &q, line);
  /* The rows name their aggregate: no hint is needed. */
  q.has_agg = 0;
  expect(s, &q, line);
  /* A window with no row prints nothing. */
  mm_query_t later = q;
  later.now_s = NOW + 10 * 86400;
  expect(s, &later, "");
  mm_store_destroy(s);
}
END_TEST

/* One scalar aggregate over three buckets in the window (and one outside),
 * checked against a value worked out by hand from the specs. */
typedef struct fold_case {
  mm_agg_t agg;
  const char *specs[4]; /* buckets NOW-2, NOW-1, NOW, and NOW-5 (outside 3h) */
  const char *want;
} fold_case_t;

static const fold_case_t FOLDS[] = {
    {MM_AGG_COUNT, {"n:3", "n:4", "n:1", "n:100"}, "8"},
    {MM_AGG_MIN, {"n:3.5", "n:-2.25", "n:7", "n:-100"}, "-2.25"},
    {MM_AGG_MIN, {"s:pear", "n:40", "s:apple", "n:-1"}, "40"},
    {MM_AGG_MAX, {"n:3.5", "n:12", "n:7", "n:100"}, "12"},
    {MM_AGG_MAX, {"s:pear", "n:40", "s:zoo", "s:zzz"}, "\"zoo\""},
    {MM_AGG_FIRST, {"1727999990@s:early", "1728003600@s:mid", "1728007300@n:9",
                    "1727980000@s:outside"}, "\"early\""},
    {MM_AGG_LAST, {"1727999990@s:early", "1728003600@s:mid", "1728007300@n:9",
                   "1727980000@s:outside"}, "9"},
    {MM_AGG_SET, {"s:b|s:a", "s:c", "s:a|s:d", "s:outside"}, "[\"a\",\"b\",\"c\",\"d\"]"},
    /* agg.h: members in stored order, bytewise by their canonical text */
    {MM_AGG_SET, {"n:3|n:1", "n:2", "n:1E+1", "n:99"}, "[1,10,2,3]"},
};

START_TEST(last_folds_each_aggregate) {
  for (int which = 0; which < 2; which++) {
    mm_store_t *s = backend(which);
    for (size_t c = 0; c < sizeof FOLDS / sizeof FOLDS[0]; c++) {
      const fold_case_t *fc = &FOLDS[c];
      char key[32];
      snprintf(key, sizeof key, "case%zu", c);
      const int64_t at[4] = {NOW_BUCKET - 2, NOW_BUCKET - 1, NOW_BUCKET, NOW_BUCKET - 5};
      for (int j = 0; j < 4; j++) put(s, key, at[j], 0, fc->agg, fc->specs[j]);
      char line[256];
      snprintf(line, sizeof line,
               "{\"key\":\"%s\",\"last\":\"3h\",\"from\":%d,\"to\":%d,\"rows\":3,\"value\":%s}\n",
               key, NOW_BUCKET - 2, NOW_BUCKET, fc->want);
      mm_query_t q = {.key = key, .last = "3h", .granularity_s = G, .has_agg = 1,
                      .agg = fc->agg, .now_s = NOW};
      expect(s, &q, line);
    }
    mm_store_destroy(s);
  }
}
END_TEST

/*
 * hll: the combination of per-bucket sketches is the sketch of the union,
 * so it renders exactly as one row that saw every item of the window;
 * topk: fewer distinct items than counters, so the counts are exact.
 */
START_TEST(last_merges_sketches) {
  mm_store_t *s = backend(_i);
  char item[32];
  for (int i = 0; i < 3000; i++) {
    int64_t bk = NOW_BUCKET - (i % 5); /* buckets NOW-4 .. NOW; window 3h: NOW-2 .. NOW */
    snprintf(item, sizeof item, "s:user%d", (i * 7919) % 2200);
    put(s, "uniq", bk, 0, MM_AGG_HLL, item);
    if (i % 5 <= 2) put(s, "uniq_union", 0, 0, MM_AGG_HLL, item);
  }
  mm_query_t one = {.key = "uniq_union"};
  mm_err_t err;
  int rc;
  char *u = run(s, &one, &rc, &err);
  ck_assert_int_eq(rc, 0);
  const char *v = strstr(u, "\"value\":");
  ck_assert_ptr_nonnull(v);
  char line[256];
  snprintf(line, sizeof line, "{\"key\":\"uniq\",\"last\":\"3h\",\"from\":%d,\"to\":%d,\"rows\":3,%s",
           NOW_BUCKET - 2, NOW_BUCKET, v);
  mm_query_t q = {.key = "uniq", .last = "3h", .granularity_s = G, .now_s = NOW};
  expect(s, &q, line);
  free(u);

  /* topk: item i gets weight i in bucket NOW, 2i in NOW-1, and 1000 in
   * NOW-9 (outside): the window's top 10 are items 20..11 with 3i. */
  for (int i = 1; i <= 20; i++) {
    snprintf(item, sizeof item, "s:i%02d", i);
    for (int w = 0; w < i; w++) put(s, "top", NOW_BUCKET, 0, MM_AGG_TOPK, item);
    for (int w = 0; w < 2 * i; w++) put(s, "top", NOW_BUCKET - 1, 0, MM_AGG_TOPK, item);
  }
  put(s, "top", NOW_BUCKET - 9, 0, MM_AGG_TOPK, "s:i01");
  mm_buf_t want = MM_BUF_INIT;
  mm_buf_printf(&want, "{\"key\":\"top\",\"last\":\"3h\",\"from\":%d,\"to\":%d,\"rows\":2,\"value\":[",
                NOW_BUCKET - 2, NOW_BUCKET);
  for (int i = 20; i > 10; i--) mm_buf_printf(&want, "%s[\"i%02d\",%d]", i < 20 ? "," : "", i, 3 * i);
  mm_buf_adds(&want, "]}\n");
  mm_query_t t = {.key = "top", .last = "3h", .granularity_s = G, .has_agg = 1,
                  .agg = MM_AGG_TOPK, .now_s = NOW};
  expect(s, &t, want.data);
  mm_buf_free(&want);
  mm_store_destroy(s);
}
END_TEST

/* Rows of another aggregate than the pipeline's, or of two aggregates
 * under one key, cannot be combined. */
START_TEST(last_refuses_mixed_aggregates) {
  mm_store_t *s = backend(_i);
  put(s, "k", NOW_BUCKET - 1, 0, MM_AGG_SUM, "n:1");
  put(s, "k", NOW_BUCKET, 0, MM_AGG_COUNT, "n:1");
  mm_query_t q = {.key = "k", .last = "1d", .granularity_s = G, .now_s = NOW};
  expect_fail(s, &q, MM_EPERM, "holds count, not a sum aggregate");
  q.has_agg = 1;
  q.agg = MM_AGG_MAX;
  expect_fail(s, &q, MM_EPERM, "holds sum, not a max aggregate");
  mm_store_destroy(s);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Rows that do not name their aggregate (as dynamodb:// rows)         */
/* ------------------------------------------------------------------ */

/* A stand-in store serving fixed rows with agg_exact = 0. */
typedef struct fake_row {
  int64_t bucket;
  mm_agg_t family;
  const char *stored;
  const char *json;
} fake_row_t;

typedef struct fake_store {
  mm_store_t base;
  const fake_row_t *rows;
  size_t n;
} fake_store_t;

static int fake_merge(mm_store_t *s, mm_merge_t *ops, size_t n, int64_t deadline_ms) {
  (void)s, (void)ops, (void)n, (void)deadline_ms;
  return 0;
}

static int fake_query(mm_store_t *base, const char *key, const int64_t *bucket, mm_row_fn fn,
                      void *ud, mm_err_t *err) {
  (void)bucket, (void)err;
  fake_store_t *s = (fake_store_t *)base;
  for (size_t i = 0; i < s->n; i++) {
    const fake_row_t *r = &s->rows[i];
    mm_row_t row = {.key = key, .bucket = r->bucket, .value_json = r->json, .agg = r->family,
                    .agg_exact = r->family == MM_AGG_SET, .stored = r->stored,
                    .stored_len = strlen(r->stored)};
    if (fn(ud, &row)) break;
  }
  return 0;
}

static void fake_destroy(mm_store_t *s) { (void)s; }

static const mm_store_vt_t FAKE_VT = {"fake", fake_merge, fake_query, fake_destroy};

START_TEST(last_reads_rows_by_the_pipelines_aggregate) {
  const fake_row_t nums[] = {{NOW_BUCKET - 1, MM_AGG_SUM, "5", "5"},
                             {NOW_BUCKET, MM_AGG_SUM, "12.5", "12.5"}};
  fake_store_t fs = {{&FAKE_VT}, nums, 2};
  mm_store_t *s = &fs.base;
  mm_query_t q = {.key = "k", .last = "2h", .granularity_s = G, .now_s = NOW, .has_agg = 1};
  char line[256];
#define WANT(v)                                                                            \
  snprintf(line, sizeof line,                                                              \
           "{\"key\":\"k\",\"last\":\"2h\",\"from\":%d,\"to\":%d,\"rows\":2,\"value\":%s}\n", \
           NOW_BUCKET - 1, NOW_BUCKET, v)
  q.agg = MM_AGG_SUM;
  WANT("17.5");
  expect(s, &q, line);
  q.agg = MM_AGG_COUNT;
  expect(s, &q, line);
  q.agg = MM_AGG_MAX;
  WANT("12.5");
  expect(s, &q, line);
  q.agg = MM_AGG_MIN;
  WANT("5");
  expect(s, &q, line);
  q.agg = MM_AGG_SET;
  expect_fail(s, &q, MM_EPERM, "holds a number (sum, count, min or max), not a set");
  q.has_agg = 0;
  expect_fail(s, &q, MM_EINVAL, "--aggregate");
  /* Plain printing needs no aggregate. */
  mm_query_t plain = {.key = "k"};
  expect(s, &plain,
         "{\"key\":\"k\",\"bucket\":479999,\"value\":5}\n{\"key\":\"k\",\"bucket\":480000,\"value\":12.5}\n");

  const fake_row_t strs[] = {{NOW_BUCKET - 1, MM_AGG_MIN, "spear", "\"pear\""},
                             {NOW_BUCKET, MM_AGG_MIN, "sapple", "\"apple\""}};
  fs.rows = strs;
  q.has_agg = 1;
  q.agg = MM_AGG_MAX;
  WANT("\"pear\"");
  expect(s, &q, line);
  q.agg = MM_AGG_SUM;
  expect_fail(s, &q, MM_EPERM, "holds a string (min or max), not a sum");

  const fake_row_t timed[] = {{NOW_BUCKET - 1, MM_AGG_FIRST, "1727999990|sa", "\"a\""},
                              {NOW_BUCKET, MM_AGG_FIRST, "1728003600|n7", "7"}};
  fs.rows = timed;
  q.agg = MM_AGG_LAST;
  WANT("7");
  expect(s, &q, line);
  q.agg = MM_AGG_FIRST;
  WANT("\"a\"");
  expect(s, &q, line);
#undef WANT
}
END_TEST

/* A failed write of the output is reported. */
START_TEST(output_failure_is_eio) {
  mm_store_t *s = memory_store();
  put(s, "k", NOW_BUCKET, 0, MM_AGG_SUM, "n:1");
  FILE *ro = fopen("/dev/null", "r");
  ck_assert_ptr_nonnull(ro);
  mm_err_t err;
  mm_query_t q = {.key = "k", .last = "1h", .granularity_s = G, .now_s = NOW};
  ck_assert_int_eq(mm_query_run(s, &q, ro, &err), MM_EIO);
  mm_query_t p = {.key = "k"};
  ck_assert_int_eq(mm_query_run(s, &p, ro, &err), MM_EIO);
  fclose(ro);
  mm_store_destroy(s);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("query");
  TCase *tc = tcase_create("query");
  tcase_add_test(tc, window_rule);
  tcase_add_loop_test(tc, rows_in_bucket_order_and_one_bucket, 0, 2);
  tcase_add_test(tc, bad_requests);
  tcase_add_loop_test(tc, last_sums_the_window_exactly, 0, 2);
  tcase_add_test(tc, last_folds_each_aggregate);
  tcase_add_loop_test(tc, last_merges_sketches, 0, 2);
  tcase_add_loop_test(tc, last_refuses_mixed_aggregates, 0, 2);
  tcase_add_test(tc, last_reads_rows_by_the_pipelines_aggregate);
  tcase_add_test(tc, output_failure_is_eio);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return tu_run_suite(suite());
}

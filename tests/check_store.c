/*
 * check_store.c - the store interface against both in-process backends.
 *
 * Most cases are loop tests run once per backend (index % 2: 0 memory://,
 * 1 sqlite:// on a fresh file), so both answer the same table of cases
 * identically. Backend-specific behaviour (memory failure injection, SQLite
 * garbage rows, persistence, a locked file) has its own cases.
 */
#include <check.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agg.h"
#include "retry.h"
#include "store.h"
#include "testutil.h"

/* ------------------------------------------------------------------ */
/* Fixture: a temporary directory holding the SQLite file              */
/* ------------------------------------------------------------------ */

static char *tmpdir;
static char dbpath[512];
static char dburl[600];

static void setup(void) {
  tmpdir = tu_temp_dir();
  snprintf(dbpath, sizeof dbpath, "%s/state.db", tmpdir);
  snprintf(dburl, sizeof dburl, "sqlite://%s", dbpath);
}

static void teardown(void) {
  const char *sfx[] = {"", "-wal", "-shm", "-journal"};
  char p[600];
  for (size_t i = 0; i < 4; i++) {
    snprintf(p, sizeof p, "%s%s", dbpath, sfx[i]);
    unlink(p);
  }
  rmdir(tmpdir);
  free(tmpdir);
}

static const char *backend_name(int b) { return b ? "sqlite" : "memory"; }

static mm_store_t *open_backend(int b) {
  mm_store_t *s = NULL;
  mm_err_t err;
  int rc = mm_store_open(&s, b ? dburl : "memory://", NULL, &err);
  ck_assert_msg(rc == 0, "open %s: %s", backend_name(b), err.msg);
  ck_assert_ptr_nonnull(s);
  return s;
}

/* ------------------------------------------------------------------ */
/* Deltas from short specs                                             */
/* ------------------------------------------------------------------ */

/* A scalar spec: "'text" is a string, anything else a number. */
static void scalar_of(mm_scalar_t *s, const char *spec, size_t n) {
  memset(s, 0, sizeof *s);
  if (n && spec[0] == '\'') {
    s->str = strndup(spec + 1, n - 1);
    ck_assert_ptr_nonnull(s->str);
    s->len = n - 1;
    return;
  }
  mm_err_t err;
  s->is_num = 1;
  ck_assert_msg(mm_dec_parse(&s->num, spec, n, &err) == 0, "bad number %.*s: %s", (int)n,
                spec, err.msg);
}

/*
 * The delta a spec describes, per aggregate:
 *   sum, count, min, max, hll: a scalar            "12.5", "'abc"
 *   first, last:  TIME@scalar                      "100@'x"
 *   set:          scalars separated by '|'         "'a|'b|3"
 *   topk:         scalar, optionally *WEIGHT       "'x*3"
 */
static mm_delta_t delta_of(mm_agg_t agg, const char *spec) {
  mm_delta_t d;
  memset(&d, 0, sizeof d);
  d.agg = agg;
  d.weight = 1;
  const char *at, *star;
  switch (agg) {
  case MM_AGG_FIRST:
  case MM_AGG_LAST:
    at = strchr(spec, '@');
    ck_assert_ptr_nonnull(at);
    d.time = strtod(spec, NULL);
    scalar_of(&d.v, at + 1, strlen(at + 1));
    break;
  case MM_AGG_SET: {
    size_t n = 1;
    for (const char *p = spec; *p; p++) n += *p == '|';
    d.members = calloc(n, sizeof *d.members);
    ck_assert_ptr_nonnull(d.members);
    const char *p = spec;
    for (size_t i = 0; i < n; i++) {
      const char *bar = strchr(p, '|');
      size_t len = bar ? (size_t)(bar - p) : strlen(p);
      scalar_of(&d.members[i], p, len);
      p += len + 1;
    }
    d.nmembers = n;
    break;
  }
  case MM_AGG_TOPK:
    star = strchr(spec, '*');
    scalar_of(&d.v, spec, star ? (size_t)(star - spec) : strlen(spec));
    if (star) d.weight = atoll(star + 1);
    break;
  default:
    scalar_of(&d.v, spec, strlen(spec));
    break;
  }
  return d;
}

/* Merges one delta into (key, bucket) and returns the op status. */
static int merge1(mm_store_t *s, const char *key, int64_t bucket, int64_t ttl,
                  mm_agg_t agg, const char *spec, mm_err_t *err_out) {
  mm_delta_t d = delta_of(agg, spec);
  mm_merge_t op = {.key = key, .key_len = strlen(key), .bucket = bucket, .ttl = ttl,
                   .delta = &d};
  ck_assert_int_eq(mm_store_merge(s, &op, 1, 0), 0);
  if (err_out) *err_out = op.err;
  mm_delta_free(&d);
  return op.status;
}

/* ------------------------------------------------------------------ */
/* Collecting query rows                                               */
/* ------------------------------------------------------------------ */

typedef struct rows {
  size_t n;
  int stop_after;       /* stop the iteration after this many (0 = never) */
  char *key[16];
  int64_t bucket[16];
  char *json[16];
  int64_t ttl[16];
} rows_t;

static int collect(void *ud, const mm_row_t *r) {
  rows_t *rs = ud;
  ck_assert_uint_lt(rs->n, 16);
  rs->key[rs->n] = strdup(r->key);
  rs->bucket[rs->n] = r->bucket;
  rs->json[rs->n] = strdup(r->value_json);
  rs->ttl[rs->n] = r->ttl;
  rs->n++;
  return rs->stop_after && rs->n >= (size_t)rs->stop_after;
}

static void rows_free(rows_t *rs) {
  for (size_t i = 0; i < rs->n; i++) {
    free(rs->key[i]);
    free(rs->json[i]);
  }
  memset(rs, 0, sizeof *rs);
}

/* Queries key (one bucket when bucket != NULL) into rs; asserts success. */
static void query(mm_store_t *s, const char *key, const int64_t *bucket, rows_t *rs) {
  mm_err_t err;
  int rc = mm_store_query(s, key, bucket, collect, rs, &err);
  ck_assert_msg(rc == 0, "query %s: %s", key, err.msg);
}

/* The one row of (key, bucket) rendered, or NULL when absent (caller
 * frees). */
static char *value_of(mm_store_t *s, const char *key, int64_t bucket) {
  rows_t rs = {0};
  query(s, key, &bucket, &rs);
  ck_assert_uint_le(rs.n, 1);
  char *v = rs.n ? strdup(rs.json[0]) : NULL;
  rows_free(&rs);
  return v;
}

#define ck_assert_value(s, key, bucket, want)                                   \
  do {                                                                           \
    char *got_ = value_of((s), (key), (bucket));                                 \
    ck_assert_msg(got_ && strcmp(got_, (want)) == 0, "%s/%lld: want %s, got %s", \
                  (key), (long long)(bucket), (want), got_ ? got_ : "(no row)"); \
    free(got_);                                                                  \
  } while (0)

/* ------------------------------------------------------------------ */
/* Every aggregate through each backend (table-driven)                 */
/* ------------------------------------------------------------------ */

typedef struct agg_case {
  const char *rule;
  mm_agg_t agg;
  const char *deltas[8]; /* NULL-terminated */
  const char *want;      /* the query's rendered value */
} agg_case_t;

static const agg_case_t AGG_CASES[] = {
    {"sum_is_exact_decimal", MM_AGG_SUM, {"0.1", "0.2"}, "0.3"},
    {"sum_mixes_exponents_and_signs", MM_AGG_SUM, {"1E+2", "-0.5", "12"}, "111.5"},
    {"sum_of_one_delta", MM_AGG_SUM, {"-7"}, "-7"},
    {"count_adds_ones", MM_AGG_COUNT, {"1", "1", "1"}, "3"},
    {"min_of_numbers", MM_AGG_MIN, {"5", "3", "4"}, "3"},
    {"min_of_strings_bytewise", MM_AGG_MIN, {"'pear", "'apple", "'zoo"}, "\"apple\""},
    {"min_numbers_before_strings", MM_AGG_MIN, {"'a", "7"}, "7"},
    {"max_of_numbers", MM_AGG_MAX, {"5", "30", "-4"}, "30"},
    {"max_of_strings", MM_AGG_MAX, {"'b", "'c", "'a"}, "\"c\""},
    {"max_strings_after_numbers", MM_AGG_MAX, {"'a", "99"}, "\"a\""},
    {"first_keeps_earliest_time", MM_AGG_FIRST, {"200@'late", "100@'early", "300@'later"},
     "\"early\""},
    {"last_keeps_latest_time", MM_AGG_LAST, {"200@5", "300@6", "100@7"}, "6"},
    {"set_unions_strings", MM_AGG_SET, {"'b|'a", "'c|'a"}, "[\"a\",\"b\",\"c\"]"},
    {"set_of_numbers", MM_AGG_SET, {"3|1", "2", "1"}, "[1,2,3]"},
    {"hll_counts_distinct", MM_AGG_HLL, {"'a", "'b", "'c", "'a", "'b"}, "3"},
    {"topk_orders_by_weight", MM_AGG_TOPK, {"'x*3", "'y", "'x", "'z*2"},
     "[[\"x\",4],[\"z\",2],[\"y\",1]]"},
};
#define NAGG_CASES (sizeof AGG_CASES / sizeof AGG_CASES[0])

/* Case _i/2 on backend _i%2: the first delta alone, the rest as one batch
 * into the same row (in-process batches run in order). */
START_TEST(test_agg_cases) {
  const agg_case_t *c = &AGG_CASES[_i / 2];
  int b = _i % 2;
  mm_store_t *s = open_backend(b);
  mm_delta_t d[8];
  mm_merge_t ops[8];
  size_t n = 0;
  while (n < 8 && c->deltas[n]) n++;
  for (size_t i = 0; i < n; i++) {
    d[i] = delta_of(c->agg, c->deltas[i]);
    ops[i] = (mm_merge_t){.key = c->rule, .key_len = strlen(c->rule), .bucket = 0,
                          .delta = &d[i]};
  }
  ck_assert_int_eq(mm_store_merge(s, ops, 1, 0), 0);
  ck_assert_int_eq(mm_store_merge(s, ops + 1, n - 1, 0), 0);
  for (size_t i = 0; i < n; i++)
    ck_assert_msg(ops[i].status == 0, "%s on %s: op %zu: %s", c->rule, backend_name(b), i,
                  ops[i].err.msg);
  char *got = value_of(s, c->rule, 0);
  ck_assert_msg(got && strcmp(got, c->want) == 0, "%s on %s: want %s, got %s", c->rule,
                backend_name(b), c->want, got ? got : "(no row)");
  free(got);
  for (size_t i = 0; i < n; i++) mm_delta_free(&d[i]);
  mm_store_destroy(s);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Queries, ttl, kinds, expiry, deadline, batches (both backends)       */
/* ------------------------------------------------------------------ */

START_TEST(test_query_ascending_buckets) {
  mm_store_t *s = open_backend(_i);
  int64_t order[] = {5, 1, 3, -2};
  for (size_t i = 0; i < 4; i++)
    ck_assert_int_eq(merge1(s, "k", order[i], 0, MM_AGG_SUM, "1", NULL), 0);
  ck_assert_int_eq(merge1(s, "k", 3, 0, MM_AGG_SUM, "1", NULL), 0);
  ck_assert_int_eq(merge1(s, "k2", 2, 0, MM_AGG_SUM, "10", NULL), 0);
  ck_assert_int_eq(merge1(s, "kk", 4, 0, MM_AGG_SUM, "10", NULL), 0);
  rows_t rs = {0};
  query(s, "k", NULL, &rs);
  ck_assert_uint_eq(rs.n, 4);
  int64_t want[] = {-2, 1, 3, 5};
  for (size_t i = 0; i < 4; i++) {
    ck_assert_int_eq(rs.bucket[i], want[i]);
    ck_assert_str_eq(rs.key[i], "k");
    ck_assert_str_eq(rs.json[i], want[i] == 3 ? "2" : "1");
  }
  rows_free(&rs);
  /* A callback returning non-zero stops the iteration. */
  rs.stop_after = 2;
  query(s, "k", NULL, &rs);
  ck_assert_uint_eq(rs.n, 2);
  ck_assert_int_eq(rs.bucket[1], 1);
  rows_free(&rs);
  mm_store_destroy(s);
}
END_TEST

START_TEST(test_query_single_bucket) {
  mm_store_t *s = open_backend(_i);
  for (int64_t b = 1; b <= 3; b++)
    ck_assert_int_eq(merge1(s, "k", b, 0, MM_AGG_MAX, b == 2 ? "'two" : "1", NULL), 0);
  rows_t rs = {0};
  int64_t b2 = 2, b9 = 9;
  query(s, "k", &b2, &rs);
  ck_assert_uint_eq(rs.n, 1);
  ck_assert_int_eq(rs.bucket[0], 2);
  ck_assert_str_eq(rs.json[0], "\"two\"");
  rows_free(&rs);
  query(s, "k", &b9, &rs);
  ck_assert_uint_eq(rs.n, 0);
  query(s, "absent", NULL, &rs);
  ck_assert_uint_eq(rs.n, 0);
  query(s, "absent", &b2, &rs);
  ck_assert_uint_eq(rs.n, 0);
  mm_store_destroy(s);
}
END_TEST

START_TEST(test_ttl_stored) {
  mm_store_t *s = open_backend(_i);
  const int64_t ttl = 4102444800; /* 2100-01-01 */
  ck_assert_int_eq(merge1(s, "w", 7, ttl, MM_AGG_SUM, "1", NULL), 0);
  ck_assert_int_eq(merge1(s, "w", 0, 0, MM_AGG_SUM, "1", NULL), 0);
  rows_t rs = {0};
  query(s, "w", NULL, &rs);
  ck_assert_uint_eq(rs.n, 2);
  ck_assert_int_eq(rs.bucket[0], 0);
  ck_assert_int_eq(rs.ttl[0], 0);
  ck_assert_int_eq(rs.bucket[1], 7);
  ck_assert_int_eq(rs.ttl[1], ttl);
  rows_free(&rs);
  /* A merge that leaves the value alone writes nothing, ttl included (as
   * DynamoDB's failed min/max condition). */
  ck_assert_int_eq(merge1(s, "m", 1, ttl, MM_AGG_MIN, "3", NULL), 0);
  ck_assert_int_eq(merge1(s, "m", 1, ttl + 60, MM_AGG_MIN, "5", NULL), 0);
  query(s, "m", NULL, &rs);
  ck_assert_uint_eq(rs.n, 1);
  ck_assert_int_eq(rs.ttl[0], ttl);
  rows_free(&rs);
  ck_assert_int_eq(merge1(s, "m", 1, ttl + 60, MM_AGG_MIN, "2", NULL), 0);
  query(s, "m", NULL, &rs);
  ck_assert_int_eq(rs.ttl[0], ttl + 60);
  ck_assert_str_eq(rs.json[0], "2");
  rows_free(&rs);
  mm_store_destroy(s);
}
END_TEST

/* A row holds one aggregate for life: another kind is EPERM, and the row
 * is left as it was. */
START_TEST(test_other_aggregate_rejected) {
  mm_store_t *s = open_backend(_i);
  mm_err_t err;
  ck_assert_int_eq(merge1(s, "customer#1", 0, 0, MM_AGG_SUM, "5", NULL), 0);
  ck_assert_int_eq(merge1(s, "customer#1", 0, 0, MM_AGG_MAX, "9", &err), MM_EPERM);
  ck_assert_msg(strstr(err.msg, "row customer#1/0 holds a sum, not a max"), "%s", err.msg);
  ck_assert_msg(strstr(err.msg, "use distinct keys or another store"), "%s", err.msg);
  ck_assert_int_eq(err.code, MM_EPERM);
  ck_assert_value(s, "customer#1", 0, "5");
  /* Another bucket of the same key is another row. */
  ck_assert_int_eq(merge1(s, "customer#1", 1, 0, MM_AGG_MAX, "9", NULL), 0);
  ck_assert_value(s, "customer#1", 1, "9");
  mm_store_destroy(s);
}
END_TEST

/* A row whose ttl has passed is still merged into, as DynamoDB does until
 * its background deletion: local replays of old events agree with it. */
START_TEST(test_expired_row_still_merges) {
  mm_store_t *s = open_backend(_i);
  const int64_t past = 1000;
  ck_assert_int_eq(merge1(s, "e", 1, past, MM_AGG_SUM, "5", NULL), 0);
  ck_assert_value(s, "e", 1, "5");
  ck_assert_int_eq(merge1(s, "e", 1, past, MM_AGG_SUM, "3", NULL), 0);
  ck_assert_value(s, "e", 1, "8");
  /* its aggregate kind still holds */
  ck_assert_int_eq(merge1(s, "e", 1, past, MM_AGG_MAX, "'z", NULL), MM_EPERM);
  mm_store_destroy(s);
}
END_TEST

START_TEST(test_deadline) {
  mm_store_t *s = open_backend(_i);
  mm_delta_t d = delta_of(MM_AGG_SUM, "1");
  mm_merge_t ops[3];
  for (int i = 0; i < 3; i++)
    ops[i] = (mm_merge_t){.key = "d", .key_len = 1, .bucket = i, .delta = &d};
  /* Passed: nothing starts, nothing is written. */
  ck_assert_int_eq(mm_store_merge(s, ops, 3, mm_now_ms() - 1), 0);
  for (int i = 0; i < 3; i++) {
    ck_assert_int_eq(ops[i].status, MM_EDEADLINE);
    ck_assert_int_eq(ops[i].err.code, MM_EDEADLINE);
  }
  rows_t rs = {0};
  query(s, "d", NULL, &rs);
  ck_assert_uint_eq(rs.n, 0);
  /* Ahead, and none. */
  ck_assert_int_eq(mm_store_merge(s, ops, 3, mm_now_ms() + 60000), 0);
  for (int i = 0; i < 3; i++) ck_assert_int_eq(ops[i].status, 0);
  ck_assert_int_eq(mm_store_merge(s, ops, 3, 0), 0);
  for (int i = 0; i < 3; i++) ck_assert_int_eq(ops[i].status, 0);
  query(s, "d", NULL, &rs);
  ck_assert_uint_eq(rs.n, 3);
  for (int i = 0; i < 3; i++) ck_assert_str_eq(rs.json[i], "2");
  rows_free(&rs);
  mm_delta_free(&d);
  mm_store_destroy(s);
}
END_TEST

/* The deadline passing during a batch: the ops started before it are
 * applied, none starts after it, and the row holds exactly the applied
 * ones. (Where the cut falls depends on the machine; that there is one,
 * with the batch far longer than the 2 ms window, does not.) */
START_TEST(test_deadline_mid_batch) {
  mm_store_t *s = open_backend(_i);
  enum { N = 60000 };
  mm_delta_t d = delta_of(MM_AGG_COUNT, "1");
  mm_merge_t *ops = calloc(N, sizeof *ops);
  ck_assert_ptr_nonnull(ops);
  for (int i = 0; i < N; i++) ops[i] = (mm_merge_t){.key = "c", .key_len = 1, .delta = &d};
  ck_assert_int_eq(mm_store_merge(s, ops, N, mm_now_ms() + 2), 0);
  int ok = 0;
  while (ok < N && ops[ok].status == 0) ok++;
  ck_assert_msg(ok < N, "the whole batch ran within 2 ms");
  for (int i = ok; i < N; i++) ck_assert_int_eq(ops[i].status, MM_EDEADLINE);
  if (ok > 0) {
    char want[32];
    snprintf(want, sizeof want, "%d", ok);
    ck_assert_value(s, "c", 0, want);
  } else {
    ck_assert_ptr_null(value_of(s, "c", 0));
  }
  free(ops);
  mm_delta_free(&d);
  mm_store_destroy(s);
}
END_TEST

/* One batch: each op succeeds or fails on its own, statuses reset. */
START_TEST(test_batch_ops_independent) {
  mm_store_t *s = open_backend(_i);
  ck_assert_int_eq(merge1(s, "b2", 0, 0, MM_AGG_SUM, "1", NULL), 0);
  mm_delta_t sum = delta_of(MM_AGG_SUM, "2.5"), max = delta_of(MM_AGG_MAX, "1");
  mm_merge_t ops[] = {
      {.key = "b1", .key_len = 2, .delta = &sum},
      {.key = "b2", .key_len = 2, .delta = &max}, /* holds a sum */
      {.key = "b3", .key_len = 0, .delta = &sum}, /* key_len 0: strlen */
      {.key = "", .key_len = 0, .delta = &sum},   /* empty key */
      {.key = "b4", .key_len = 2, .delta = NULL},
      {.key = "b1", .key_len = 2, .delta = &sum},
  };
  ops[0].status = MM_EPERM; /* stale outputs are cleared */
  ck_assert_int_eq(mm_store_merge(s, ops, 6, 0), 0);
  int want[] = {0, MM_EPERM, 0, MM_EPERM, MM_EPERM, 0};
  for (int i = 0; i < 6; i++)
    ck_assert_msg(ops[i].status == want[i], "op %d: status %s (%s)", i,
                  mm_err_name(ops[i].status), ops[i].err.msg);
  ck_assert_value(s, "b1", 0, "5");
  ck_assert_value(s, "b2", 0, "1");
  ck_assert_value(s, "b3", 0, "2.5");
  char *none = value_of(s, "b4", 0);
  ck_assert_ptr_null(none);
  mm_delta_free(&sum);
  mm_delta_free(&max);
  mm_store_destroy(s);
}
END_TEST

/* Keys are byte strings: a key with a NUL and one without are two rows,
 * and keys that only share a prefix do not mix. */
START_TEST(test_keys_are_bytes) {
  mm_store_t *s = open_backend(_i);
  mm_delta_t d = delta_of(MM_AGG_SUM, "1");
  mm_merge_t ops[] = {
      {.key = "ab\0c", .key_len = 4, .delta = &d},
      {.key = "ab", .key_len = 2, .delta = &d},
      {.key = "ab", .key_len = 2, .delta = &d},
      {.key = "a", .key_len = 1, .delta = &d},
      {.key = "caf\xc3\xa9\n", .key_len = 6, .delta = &d},
  };
  ck_assert_int_eq(mm_store_merge(s, ops, 5, 0), 0);
  for (int i = 0; i < 5; i++) ck_assert_int_eq(ops[i].status, 0);
  ck_assert_value(s, "ab", 0, "2");
  ck_assert_value(s, "a", 0, "1");
  ck_assert_value(s, "caf\xc3\xa9\n", 0, "1");
  mm_delta_free(&d);
  mm_store_destroy(s);
}
END_TEST

/* A row's value grows and shrinks across merges (the memory store copies
 * a new value into the row's buffer while it fits, and takes a larger one
 * when not): every intermediate value reads back exactly. */
START_TEST(test_values_grow_and_shrink) {
  int b = _i;
  mm_store_t *s = open_backend(b);
  char want[256], spec[256];
  /* a sum gaining a digit now and then, then losing them all */
  const char *adds[] = {"1", "9", "90", "900", "9000", "0.00001", "-0.00001", "-9999", "-1"};
  const char *sums[] = {"1", "10", "100", "1000", "10000", "10000.00001", "10000", "1", "0"};
  for (size_t i = 0; i < sizeof adds / sizeof adds[0]; i++) {
    ck_assert_int_eq(merge1(s, "sum", 0, 0, MM_AGG_SUM, adds[i], NULL), 0);
    ck_assert_value(s, "sum", 0, sums[i]);
  }
  /* last: strings of 1..200 bytes and back down to 1 */
  for (int i = 0; i < 400; i++) {
    int len = i < 200 ? i + 1 : 400 - i;
    double t = 100 + i;
    int n = snprintf(spec, sizeof spec, "%g@'", t);
    memset(spec + n, 'a' + i % 26, (size_t)len);
    spec[n + len] = '\0';
    ck_assert_int_eq(merge1(s, "last", 0, 0, MM_AGG_LAST, spec, NULL), 0);
    want[0] = '"';
    memset(want + 1, 'a' + i % 26, (size_t)len);
    memcpy(want + 1 + len, "\"", 2);
    ck_assert_value(s, "last", 0, want);
  }
  mm_store_destroy(s);
}
END_TEST

/* Many keys and buckets (grows the memory table; one SQLite batch). */
START_TEST(test_many_rows) {
  mm_store_t *s = open_backend(_i);
  enum { N = 2000 };
  mm_delta_t d = delta_of(MM_AGG_COUNT, "1");
  mm_merge_t *ops = calloc(N, sizeof *ops);
  char(*keys)[16] = calloc(N, 16);
  ck_assert(ops && keys);
  for (int i = 0; i < N; i++) {
    snprintf(keys[i], 16, "key%d", i % 500);
    ops[i] = (mm_merge_t){.key = keys[i], .key_len = strlen(keys[i]),
                          .bucket = (i / 500) * 10, .delta = &d};
  }
  ck_assert_int_eq(mm_store_merge(s, ops, N, 0), 0);
  ck_assert_int_eq(mm_store_merge(s, ops, N, 0), 0);
  for (int i = 0; i < N; i++) ck_assert_int_eq(ops[i].status, 0);
  rows_t rs = {0};
  query(s, "key123", NULL, &rs);
  ck_assert_uint_eq(rs.n, 4);
  for (int i = 0; i < 4; i++) {
    ck_assert_int_eq(rs.bucket[i], i * 10);
    ck_assert_str_eq(rs.json[i], "2");
  }
  rows_free(&rs);
  free(ops);
  free(keys);
  mm_delta_free(&d);
  mm_store_destroy(s);
}
END_TEST

/* ------------------------------------------------------------------ */
/* URL dispatch                                                        */
/* ------------------------------------------------------------------ */

static int open_rc(const char *url, mm_err_t *err) {
  mm_store_t *s = NULL;
  int rc = mm_store_open(&s, url, NULL, err);
  if (rc) ck_assert_ptr_null(s);
  mm_store_destroy(s);
  return rc;
}

START_TEST(test_open_urls) {
  mm_err_t err;
  ck_assert_int_eq(open_rc("memory://", &err), 0);
  ck_assert_int_eq(open_rc(dburl, &err), 0);
  ck_assert_int_eq(access(dbpath, F_OK), 0);
  ck_assert_int_eq(open_rc("memory://x", &err), MM_EINVAL);
  ck_assert_int_eq(open_rc("sqlite://", &err), MM_EINVAL);
  ck_assert_ptr_nonnull(strstr(err.msg, "sqlite://"));
  /* dynamodb:// reaches its backend, which rejects a malformed name */
  ck_assert_int_eq(open_rc("dynamodb://bad name!", &err), MM_EINVAL);
  ck_assert_msg(strstr(err.msg, "dynamodb://bad name!"), "%s", err.msg);
  ck_assert_int_eq(open_rc("dynamodb://", &err), MM_EINVAL);
  ck_assert_int_eq(open_rc("redis://x", &err), MM_EINVAL);
  ck_assert_msg(strstr(err.msg, "redis://x"), "%s", err.msg);
  ck_assert_int_eq(open_rc(NULL, &err), MM_EINVAL);
  /* An unusable location names the URL. */
  ck_assert_int_eq(open_rc("sqlite:///nonexistent-dir-mm/x.db", &err), MM_EINVAL);
  ck_assert_msg(strstr(err.msg, "sqlite:///nonexistent-dir-mm/x.db"), "%s", err.msg);
  const char *notdb = tu_write_temp(".db", "this is not an SQLite database, just text.\n");
  char url[300];
  snprintf(url, sizeof url, "sqlite://%s", notdb);
  ck_assert_int_eq(open_rc(url, &err), MM_EINVAL);
  ck_assert_msg(strstr(err.msg, notdb), "%s", err.msg);
  unlink(notdb);
}
END_TEST

/* sqlite://PATH takes PATH as written: relative to the working directory. */
START_TEST(test_open_relative_path) {
  char cwd[512];
  ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
  ck_assert_int_eq(chdir(tmpdir), 0);
  mm_err_t err;
  ck_assert_int_eq(open_rc("sqlite://state.db", &err), 0);
  ck_assert_int_eq(access(dbpath, F_OK), 0);
  ck_assert_int_eq(chdir(cwd), 0);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Memory backend: injected failures                                   */
/* ------------------------------------------------------------------ */

START_TEST(test_memory_inject) {
  mm_store_t *s = open_backend(0);
  mm_err_t err;
  mm_store_memory_inject(s, "k", 2, MM_ERETRY);
  /* Other keys are not affected, even in the same batch. */
  mm_delta_t d = delta_of(MM_AGG_SUM, "1");
  mm_merge_t ops[] = {{.key = "k", .key_len = 1, .bucket = 1, .delta = &d},
                      {.key = "other", .key_len = 5, .delta = &d},
                      {.key = "k", .key_len = 1, .bucket = 2, .delta = &d}};
  ck_assert_int_eq(mm_store_merge(s, ops, 3, 0), 0);
  ck_assert_int_eq(ops[0].status, MM_ERETRY);
  ck_assert_int_eq(ops[1].status, 0);
  ck_assert_int_eq(ops[2].status, MM_ERETRY); /* any bucket counts */
  rows_t rs = {0};
  query(s, "k", NULL, &rs);
  ck_assert_uint_eq(rs.n, 0); /* failures are not applied */
  ck_assert_int_eq(merge1(s, "k", 1, 0, MM_AGG_SUM, "1", NULL), 0);
  ck_assert_value(s, "k", 1, "1");
  /* EUNKNOWN: applied, but reported unknown. */
  mm_store_memory_inject(s, "k", 1, MM_EUNKNOWN);
  ck_assert_int_eq(merge1(s, "k", 1, 0, MM_AGG_SUM, "1", &err), MM_EUNKNOWN);
  ck_assert_int_eq(err.code, MM_EUNKNOWN);
  ck_assert_value(s, "k", 1, "2");
  /* EPERM, then cancelled by count 0. */
  mm_store_memory_inject(s, "k", 5, MM_EPERM);
  ck_assert_int_eq(merge1(s, "k", 1, 0, MM_AGG_SUM, "1", NULL), MM_EPERM);
  mm_store_memory_inject(s, "k", 0, MM_EPERM);
  ck_assert_int_eq(merge1(s, "k", 1, 0, MM_AGG_SUM, "1", NULL), 0);
  ck_assert_value(s, "k", 1, "3");
  /* A deadline-blocked op does not use up an injection. */
  mm_store_memory_inject(s, "k", 1, MM_ERETRY);
  ck_assert_int_eq(mm_store_merge(s, ops, 1, 1), 0);
  ck_assert_int_eq(ops[0].status, MM_EDEADLINE);
  ck_assert_int_eq(merge1(s, "k", 1, 0, MM_AGG_SUM, "1", NULL), MM_ERETRY);
  ck_assert_int_eq(merge1(s, "k", 1, 0, MM_AGG_SUM, "1", NULL), 0);
  ck_assert_value(s, "k", 1, "4");
  mm_delta_free(&d);
  mm_store_destroy(s);
}
END_TEST

/* The hook is the memory backend's alone; other stores ignore it. */
START_TEST(test_inject_ignored_elsewhere) {
  mm_store_t *s = open_backend(1);
  mm_store_memory_inject(s, "k", 3, MM_ERETRY);
  mm_store_memory_inject(NULL, "k", 3, MM_ERETRY);
  ck_assert_int_eq(merge1(s, "k", 0, 0, MM_AGG_SUM, "1", NULL), 0);
  mm_store_destroy(s);
}
END_TEST

/* ------------------------------------------------------------------ */
/* SQLite backend                                                      */
/* ------------------------------------------------------------------ */

/* Runs one SQL statement on the file through a separate connection. */
static void raw_sql(const char *sql) {
  sqlite3 *db = NULL;
  ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 2000);
  char *emsg = NULL;
  int rc = sqlite3_exec(db, sql, NULL, NULL, &emsg);
  ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, emsg ? emsg : "?");
  sqlite3_close(db);
}

/* The stored bytes of a row read straight from the file (caller frees). */
static char *raw_value(const char *pk, int64_t sk, size_t *len) {
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  char *out = NULL;
  ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
  ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT v FROM murmur_state WHERE pk=?1 AND sk=?2",
                                      -1, &st, NULL),
                   SQLITE_OK);
  sqlite3_bind_text(st, 1, pk, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, sk);
  if (sqlite3_step(st) == SQLITE_ROW) {
    *len = (size_t)sqlite3_column_bytes(st, 0);
    out = malloc(*len + 1);
    memcpy(out, sqlite3_column_blob(st, 0), *len);
    out[*len] = '\0';
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

/* An unmergeable stored value fails its op alone with EPERM, stays as it
 * was, and the other ops of the batch commit. */
START_TEST(test_sqlite_garbage_row) {
  mm_store_t *s = open_backend(1);
  ck_assert_int_eq(merge1(s, "g1", 0, 0, MM_AGG_SUM, "5", NULL), 0);
  ck_assert_int_eq(merge1(s, "g2", 0, 0, MM_AGG_SUM, "7", NULL), 0);
  ck_assert_int_eq(merge1(s, "g3", 0, 0, MM_AGG_HLL, "'x", NULL), 0);
  raw_sql("UPDATE murmur_state SET v = 'garbage' WHERE pk = 'g1';"
          "UPDATE murmur_state SET v = X'48010c0099' WHERE pk = 'g3'");
  mm_delta_t sum = delta_of(MM_AGG_SUM, "1"), hll = delta_of(MM_AGG_HLL, "'y");
  mm_merge_t ops[] = {{.key = "g1", .key_len = 2, .delta = &sum},
                      {.key = "g2", .key_len = 2, .delta = &sum},
                      {.key = "g3", .key_len = 2, .delta = &hll},
                      {.key = "g4", .key_len = 2, .delta = &hll}};
  ck_assert_int_eq(mm_store_merge(s, ops, 4, 0), 0);
  ck_assert_int_eq(ops[0].status, MM_EPERM);
  ck_assert_msg(strstr(ops[0].err.msg, "g1/0"), "%s", ops[0].err.msg);
  ck_assert_int_eq(ops[1].status, 0);
  ck_assert_int_eq(ops[2].status, MM_EPERM);
  ck_assert_int_eq(ops[3].status, 0);
  size_t len = 0;
  char *raw = raw_value("g1", 0, &len);
  ck_assert_ptr_nonnull(raw);
  ck_assert_str_eq(raw, "garbage");
  free(raw);
  raw = raw_value("g3", 0, &len);
  ck_assert_uint_eq(len, 5);
  ck_assert_int_eq(memcmp(raw, "\x48\x01\x0c\x00\x99", 5), 0);
  free(raw);
  ck_assert_value(s, "g2", 0, "8");
  ck_assert_value(s, "g4", 0, "1");
  /* Query reports the bad row instead of printing it. */
  mm_err_t err;
  rows_t rs = {0};
  ck_assert_int_eq(mm_store_query(s, "g1", NULL, collect, &rs, &err), MM_EPERM);
  ck_assert_msg(strstr(err.msg, "g1/0"), "%s", err.msg);
  ck_assert_uint_eq(rs.n, 0);
  /* An unknown aggregate name in the row is EPERM too. */
  raw_sql("UPDATE murmur_state SET agg = 'median' WHERE pk = 'g2'");
  mm_err_t e2;
  ck_assert_int_eq(merge1(s, "g2", 0, 0, MM_AGG_SUM, "1", &e2), MM_EPERM);
  ck_assert_msg(strstr(e2.msg, "median"), "%s", e2.msg);
  mm_delta_free(&sum);
  mm_delta_free(&hll);
  mm_store_destroy(s);
}
END_TEST

/* Rows outlive the store: reopen the file and read them back. */
START_TEST(test_sqlite_persistence) {
  mm_store_t *s = open_backend(1);
  ck_assert_int_eq(merge1(s, "p", 0, 0, MM_AGG_SUM, "0.1", NULL), 0);
  ck_assert_int_eq(merge1(s, "p", 0, 0, MM_AGG_SUM, "0.2", NULL), 0);
  ck_assert_int_eq(merge1(s, "p", 9, 4102444800, MM_AGG_SUM, "4", NULL), 0);
  ck_assert_int_eq(merge1(s, "q", 0, 0, MM_AGG_SET, "'a|'b", NULL), 0);
  ck_assert_int_eq(merge1(s, "t", 0, 0, MM_AGG_TOPK, "'x*2", NULL), 0);
  mm_store_destroy(s);
  s = open_backend(1);
  rows_t rs = {0};
  query(s, "p", NULL, &rs);
  ck_assert_uint_eq(rs.n, 2);
  ck_assert_str_eq(rs.json[0], "0.3");
  ck_assert_int_eq(rs.bucket[1], 9);
  ck_assert_str_eq(rs.json[1], "4");
  ck_assert_int_eq(rs.ttl[1], 4102444800);
  rows_free(&rs);
  ck_assert_value(s, "q", 0, "[\"a\",\"b\"]");
  /* Merging after reopening continues from the stored value. */
  ck_assert_int_eq(merge1(s, "t", 0, 0, MM_AGG_TOPK, "'x", NULL), 0);
  ck_assert_value(s, "t", 0, "[[\"x\",3]]");
  mm_store_destroy(s);
  /* The layout is the documented one, in WAL mode. */
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
  ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT agg, typeof(v), ttl FROM murmur_state "
                                          "WHERE pk = 'p' ORDER BY sk",
                                      -1, &st, NULL),
                   SQLITE_OK);
  ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
  ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "sum");
  ck_assert_str_eq((const char *)sqlite3_column_text(st, 1), "blob");
  ck_assert_int_eq(sqlite3_column_type(st, 2), SQLITE_NULL);
  sqlite3_finalize(st);
  ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
  ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
  ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "wal");
  sqlite3_finalize(st);
  sqlite3_close(db);
}
END_TEST

/* Another writer holding the file: the batch cannot begin, every op is
 * MM_ERETRY (after the busy timeout), and nothing is written. */
START_TEST(test_sqlite_locked_is_retry) {
  mm_store_t *s = open_backend(1);
  sqlite3 *db = NULL;
  ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
  ck_assert_int_eq(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
  mm_delta_t d = delta_of(MM_AGG_SUM, "1");
  mm_merge_t ops[] = {{.key = "l1", .key_len = 2, .delta = &d},
                      {.key = "l2", .key_len = 2, .delta = &d}};
  int rc = mm_store_merge(s, ops, 2, 0);
  ck_assert_int_eq(rc, MM_ERETRY);
  ck_assert_int_eq(ops[0].status, MM_ERETRY);
  ck_assert_int_eq(ops[1].status, MM_ERETRY);
  ck_assert_msg(strstr(ops[0].err.msg, "locked"), "%s", ops[0].err.msg);
  ck_assert_int_eq(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  /* Once released, the same batch goes through. */
  ck_assert_int_eq(mm_store_merge(s, ops, 2, 0), 0);
  ck_assert_int_eq(ops[0].status, 0);
  ck_assert_value(s, "l2", 0, "1");
  mm_delta_free(&d);
  mm_store_destroy(s);
}
END_TEST

/* ------------------------------------------------------------------ */

static Suite *store_suite(void) {
  Suite *su = suite_create("store");
  TCase *tc = tcase_create("aggregates");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_loop_test(tc, test_agg_cases, 0, (int)NAGG_CASES * 2);
  suite_add_tcase(su, tc);

  tc = tcase_create("rows");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_loop_test(tc, test_query_ascending_buckets, 0, 2);
  tcase_add_loop_test(tc, test_query_single_bucket, 0, 2);
  tcase_add_loop_test(tc, test_ttl_stored, 0, 2);
  tcase_add_loop_test(tc, test_other_aggregate_rejected, 0, 2);
  tcase_add_loop_test(tc, test_expired_row_still_merges, 0, 2);
  tcase_add_loop_test(tc, test_deadline, 0, 2);
  tcase_add_loop_test(tc, test_deadline_mid_batch, 0, 2);
  tcase_add_loop_test(tc, test_batch_ops_independent, 0, 2);
  tcase_add_loop_test(tc, test_keys_are_bytes, 0, 2);
  tcase_add_loop_test(tc, test_many_rows, 0, 2);
  tcase_add_loop_test(tc, test_values_grow_and_shrink, 0, 2);
  suite_add_tcase(su, tc);

  tc = tcase_create("urls");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_open_urls);
  tcase_add_test(tc, test_open_relative_path);
  suite_add_tcase(su, tc);

  tc = tcase_create("memory");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_memory_inject);
  tcase_add_test(tc, test_inject_ignored_elsewhere);
  suite_add_tcase(su, tc);

  tc = tcase_create("sqlite");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_sqlite_garbage_row);
  tcase_add_test(tc, test_sqlite_persistence);
  tcase_add_test(tc, test_sqlite_locked_is_retry);
  suite_add_tcase(su, tc);
  return su;
}

int main(void) {
  return tu_run_suite(store_suite());
}

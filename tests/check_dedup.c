/*
 * check_dedup.c - the dedup protocol (dedup.h) against both in-process
 * backends.
 *
 * Loop tests run once per backend (_i: 0 memory://, 1 sqlite:// on a fresh
 * file). The protocol cases walk claims through NEW -> PARTIAL -> DONE the
 * way the pipeline does; the last case replays a failed delivery against a
 * memory store to show the "no loss, no double count" outcome end to end.
 */
#include <check.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agg.h"
#include "dedup.h"
#include "retry.h"
#include "store.h"
#include "testutil.h"

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

static mm_dedup_t *open_backend(int b) {
  mm_dedup_t *d = NULL;
  mm_err_t err;
  int rc = mm_dedup_open(&d, b ? dburl : "memory://", NULL, &err);
  ck_assert_msg(rc == 0, "open %s: %s", b ? "sqlite" : "memory", err.msg);
  ck_assert_ptr_nonnull(d);
  return d;
}

/* Far enough ahead never to expire during a test; and long expired. */
#define LIVE 4102444800LL
#define EXPIRED 1000LL

/* begin for one claim; the caller checks and resets *c. */
static void begin1(mm_dedup_t *d, mm_claim_t *c, const char *id, int64_t ttl) {
  memset(c, 0, sizeof *c);
  c->id = id;
  c->id_len = strlen(id);
  c->ttl = ttl;
  ck_assert_int_eq(mm_dedup_begin(d, c, 1, 0), 0);
}

/* finish for one claim; returns its status. */
static int finish1(mm_dedup_t *d, const char *id, int64_t ttl, int done,
                   const char *const *applied, size_t napplied) {
  mm_claim_t c;
  memset(&c, 0, sizeof c);
  c.id = id;
  c.id_len = strlen(id);
  c.ttl = ttl;
  c.done = done;
  c.applied = applied;
  c.napplied = napplied;
  ck_assert_int_eq(mm_dedup_finish(d, &c, 1, 0), 0);
  return c.status;
}

/* Asserts a begin answer: status 0, state, and exactly the ids listed
 * (as a set: order is the backend's). */
static void expect_claim(const mm_claim_t *c, mm_claim_state_t state, const char *const *ids,
                         size_t n) {
  ck_assert_msg(c->status == 0, "claim %s: %s", c->id, c->err.msg);
  ck_assert_int_eq(c->state, state);
  ck_assert_uint_eq(c->nmerged, n);
  for (size_t i = 0; i < n; i++) {
    int found = 0;
    for (size_t j = 0; j < c->nmerged; j++) found += strcmp(c->merged[j], ids[i]) == 0;
    ck_assert_msg(found == 1, "claim %s: id '%s' found %d times", c->id, ids[i], found);
  }
}

/* ------------------------------------------------------------------ */
/* The protocol                                                        */
/* ------------------------------------------------------------------ */

START_TEST(test_new_partial_done) {
  mm_dedup_t *d = open_backend(_i);
  mm_claim_t c;
  begin1(d, &c, "orders#e1", LIVE);
  expect_claim(&c, MM_CLAIM_NEW, NULL, 0);
  mm_claim_reset(&c);
  /* An attempt that never finished: the claim exists, but is not done. */
  begin1(d, &c, "orders#e1", LIVE);
  expect_claim(&c, MM_CLAIM_PARTIAL, NULL, 0);
  mm_claim_reset(&c);
  /* One merge applied, another failed: PARTIAL with what was applied. */
  const char *a1[] = {"0:customer#1"};
  ck_assert_int_eq(finish1(d, "orders#e1", LIVE, 0, a1, 1), 0);
  begin1(d, &c, "orders#e1", LIVE);
  expect_claim(&c, MM_CLAIM_PARTIAL, a1, 1);
  mm_claim_reset(&c);
  /* The redelivery merges the rest: DONE, a later delivery is a duplicate. */
  const char *a2[] = {"0:region#eu"};
  ck_assert_int_eq(finish1(d, "orders#e1", LIVE, 1, a2, 1), 0);
  begin1(d, &c, "orders#e1", LIVE);
  const char *all[] = {"0:customer#1", "0:region#eu"};
  expect_claim(&c, MM_CLAIM_DONE, all, 2);
  mm_claim_reset(&c);
  ck_assert_ptr_null(c.merged);
  ck_assert_uint_eq(c.nmerged, 0);
  mm_dedup_destroy(d);
}
END_TEST

START_TEST(test_finish_ids_once) {
  mm_dedup_t *d = open_backend(_i);
  mm_claim_t c;
  const char *a1[] = {"1:x", "1:x", "2:y", NULL};
  ck_assert_int_eq(finish1(d, "p#e", LIVE, 0, a1, 4), 0);
  const char *a2[] = {"2:y", "3:z", "1:x"};
  ck_assert_int_eq(finish1(d, "p#e", LIVE, 0, a2, 3), 0);
  begin1(d, &c, "p#e", LIVE);
  const char *want[] = {"1:x", "2:y", "3:z"};
  expect_claim(&c, MM_CLAIM_PARTIAL, want, 3);
  mm_claim_reset(&c);
  /* finish with nothing applied and not done changes nothing. */
  ck_assert_int_eq(finish1(d, "p#e", LIVE, 0, NULL, 0), 0);
  begin1(d, &c, "p#e", LIVE);
  expect_claim(&c, MM_CLAIM_PARTIAL, want, 3);
  mm_claim_reset(&c);
  mm_dedup_destroy(d);
}
END_TEST

/* finish without a begin (claim lost or expired meanwhile) records the
 * ids anyway; done never goes back. */
START_TEST(test_finish_creates_and_done_sticks) {
  mm_dedup_t *d = open_backend(_i);
  mm_claim_t c;
  const char *a[] = {"0:k"};
  ck_assert_int_eq(finish1(d, "p#fresh", LIVE, 1, a, 1), 0);
  begin1(d, &c, "p#fresh", LIVE);
  expect_claim(&c, MM_CLAIM_DONE, a, 1);
  mm_claim_reset(&c);
  const char *b[] = {"0:j"};
  ck_assert_int_eq(finish1(d, "p#fresh", LIVE, 0, b, 1), 0);
  begin1(d, &c, "p#fresh", LIVE);
  const char *ab[] = {"0:k", "0:j"};
  expect_claim(&c, MM_CLAIM_DONE, ab, 2);
  mm_claim_reset(&c);
  mm_dedup_destroy(d);
}
END_TEST

/* An expired claim counts as absent: begin starts it over (NEW), finish
 * starts a fresh id list. */
START_TEST(test_expired_claims) {
  mm_dedup_t *d = open_backend(_i);
  mm_claim_t c;
  const char *a[] = {"0:old"};
  ck_assert_int_eq(finish1(d, "p#x", EXPIRED, 1, a, 1), 0);
  begin1(d, &c, "p#x", LIVE);
  expect_claim(&c, MM_CLAIM_NEW, NULL, 0);
  mm_claim_reset(&c);
  /* begin renewed it with the live ttl: it is now an ordinary claim. */
  begin1(d, &c, "p#x", LIVE);
  expect_claim(&c, MM_CLAIM_PARTIAL, NULL, 0);
  mm_claim_reset(&c);
  /* finish into an expired claim forgets the old ids. */
  ck_assert_int_eq(finish1(d, "p#y", EXPIRED, 0, a, 1), 0);
  const char *b[] = {"0:new"};
  ck_assert_int_eq(finish1(d, "p#y", LIVE, 1, b, 1), 0);
  begin1(d, &c, "p#y", LIVE);
  expect_claim(&c, MM_CLAIM_DONE, b, 1);
  mm_claim_reset(&c);
  /* A claim without a ttl never expires. */
  ck_assert_int_eq(finish1(d, "p#z", 0, 1, a, 1), 0);
  begin1(d, &c, "p#z", 0);
  expect_claim(&c, MM_CLAIM_DONE, a, 1);
  mm_claim_reset(&c);
  mm_dedup_destroy(d);
}
END_TEST

/* Claim ids are namespaced by the pipeline: the same eventID in two
 * pipelines, or ids sharing a prefix, are different claims. */
START_TEST(test_namespaced_ids) {
  mm_dedup_t *d = open_backend(_i);
  mm_claim_t c;
  const char *a[] = {"0:k"};
  ck_assert_int_eq(finish1(d, "orders#e1", LIVE, 1, a, 1), 0);
  const char *others[] = {"totals#e1", "orders#e10", "orders#e", "orders", "orders#e1 "};
  for (size_t i = 0; i < 5; i++) {
    begin1(d, &c, others[i], LIVE);
    expect_claim(&c, MM_CLAIM_NEW, NULL, 0);
    mm_claim_reset(&c);
  }
  begin1(d, &c, "orders#e1", LIVE);
  expect_claim(&c, MM_CLAIM_DONE, a, 1);
  mm_claim_reset(&c);
  mm_dedup_destroy(d);
}
END_TEST

/* Several claims per call, each answered on its own; ids with any byte
 * but NUL come back intact. */
START_TEST(test_batch_and_odd_ids) {
  mm_dedup_t *d = open_backend(_i);
  const char *odd[] = {"0:line\nbreak", "-5:caf\xc3\xa9", "7:\xff\xfe", "0:a|b,c\"d"};
  ck_assert_int_eq(finish1(d, "p#2", LIVE, 0, odd, 4), 0);
  ck_assert_int_eq(finish1(d, "p#3", LIVE, 1, odd, 1), 0);
  mm_claim_t cs[4];
  memset(cs, 0, sizeof cs);
  const char *ids[] = {"p#1", "p#2", "p#3", "p#1"};
  for (int i = 0; i < 4; i++) {
    cs[i].id = ids[i];
    cs[i].id_len = 0; /* 0: the wrappers take strlen */
    cs[i].ttl = LIVE;
  }
  cs[1].status = MM_EPERM; /* stale outputs are cleared */
  ck_assert_int_eq(mm_dedup_begin(d, cs, 4, 0), 0);
  expect_claim(&cs[0], MM_CLAIM_NEW, NULL, 0);
  expect_claim(&cs[1], MM_CLAIM_PARTIAL, odd, 4);
  expect_claim(&cs[2], MM_CLAIM_DONE, odd, 1);
  expect_claim(&cs[3], MM_CLAIM_PARTIAL, NULL, 0); /* created just before */
  for (int i = 0; i < 4; i++) mm_claim_reset(&cs[i]);
  /* A claim without an id fails alone. */
  mm_claim_t bad[2];
  memset(bad, 0, sizeof bad);
  bad[0].id = NULL;
  bad[1].id = "p#ok";
  ck_assert_int_eq(mm_dedup_begin(d, bad, 2, 0), 0);
  ck_assert_int_eq(bad[0].status, MM_EPERM);
  ck_assert_int_eq(bad[1].status, 0);
  mm_claim_reset(&bad[0]);
  mm_claim_reset(&bad[1]);
  mm_claim_reset(NULL);
  mm_dedup_destroy(d);
}
END_TEST

/* Past the deadline nothing starts: no claim is created or updated. */
START_TEST(test_deadline) {
  mm_dedup_t *d = open_backend(_i);
  mm_claim_t c;
  memset(&c, 0, sizeof c);
  c.id = "p#late";
  c.id_len = 6;
  c.ttl = LIVE;
  ck_assert_int_eq(mm_dedup_begin(d, &c, 1, mm_now_ms() - 1), 0);
  ck_assert_int_eq(c.status, MM_EDEADLINE);
  ck_assert_int_eq(c.err.code, MM_EDEADLINE);
  mm_claim_reset(&c);
  c.done = 1;
  ck_assert_int_eq(mm_dedup_finish(d, &c, 1, mm_now_ms() - 1), 0);
  ck_assert_int_eq(c.status, MM_EDEADLINE);
  begin1(d, &c, "p#late", LIVE);
  expect_claim(&c, MM_CLAIM_NEW, NULL, 0); /* neither call left a trace */
  mm_claim_reset(&c);
  memset(&c, 0, sizeof c);
  c.id = "p#late";
  c.ttl = LIVE;
  ck_assert_int_eq(mm_dedup_begin(d, &c, 1, mm_now_ms() + 60000), 0);
  expect_claim(&c, MM_CLAIM_PARTIAL, NULL, 0);
  mm_claim_reset(&c);
  mm_dedup_destroy(d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* URLs, memory injection, SQLite file                                 */
/* ------------------------------------------------------------------ */

static int open_rc(const char *url, mm_err_t *err) {
  mm_dedup_t *d = NULL;
  int rc = mm_dedup_open(&d, url, NULL, err);
  if (rc) ck_assert_ptr_null(d);
  mm_dedup_destroy(d);
  return rc;
}

START_TEST(test_open_urls) {
  mm_err_t err;
  ck_assert_int_eq(open_rc("memory://", &err), 0);
  ck_assert_int_eq(open_rc(dburl, &err), 0);
  ck_assert_int_eq(open_rc("sqlite://", &err), MM_EINVAL);
  ck_assert_int_eq(open_rc("memory://x", &err), MM_EINVAL);
  /* dynamodb:// reaches its backend, which rejects a malformed name */
  ck_assert_int_eq(open_rc("dynamodb://bad name!", &err), MM_EINVAL);
  ck_assert_msg(strstr(err.msg, "dynamodb://bad name!"), "%s", err.msg);
  ck_assert_int_eq(open_rc("file:///x", &err), MM_EINVAL);
  ck_assert_int_eq(open_rc(NULL, &err), MM_EINVAL);
  ck_assert_int_eq(open_rc("sqlite:///nonexistent-dir-mm/d.db", &err), MM_EINVAL);
  ck_assert_msg(strstr(err.msg, "nonexistent-dir-mm"), "%s", err.msg);
  /* A missing dedup fails every claim. */
  mm_claim_t c;
  memset(&c, 0, sizeof c);
  c.id = "p#e";
  ck_assert_int_eq(mm_dedup_begin(NULL, &c, 1, 0), MM_EINVAL);
  ck_assert_int_eq(c.status, MM_EINVAL);
}
END_TEST

START_TEST(test_memory_inject) {
  mm_dedup_t *d = open_backend(0);
  mm_claim_t c;
  /* A failed begin creates nothing. */
  mm_dedup_memory_inject(d, "p#e", 1, MM_ERETRY);
  begin1(d, &c, "p#e", LIVE);
  ck_assert_int_eq(c.status, MM_ERETRY);
  mm_claim_reset(&c);
  begin1(d, &c, "p#e", LIVE);
  expect_claim(&c, MM_CLAIM_NEW, NULL, 0);
  mm_claim_reset(&c);
  /* An unknown begin outcome did create the claim. */
  mm_dedup_memory_inject(d, "p#u", 1, MM_EUNKNOWN);
  begin1(d, &c, "p#u", LIVE);
  ck_assert_int_eq(c.status, MM_EUNKNOWN);
  ck_assert_ptr_null(c.merged);
  mm_claim_reset(&c);
  begin1(d, &c, "p#u", LIVE);
  expect_claim(&c, MM_CLAIM_PARTIAL, NULL, 0);
  mm_claim_reset(&c);
  /* A failed finish records nothing; an unknown one did record. */
  const char *a[] = {"0:k"};
  mm_dedup_memory_inject(d, "p#e", 1, MM_EPERM);
  ck_assert_int_eq(finish1(d, "p#e", LIVE, 1, a, 1), MM_EPERM);
  begin1(d, &c, "p#e", LIVE);
  expect_claim(&c, MM_CLAIM_PARTIAL, NULL, 0);
  mm_claim_reset(&c);
  mm_dedup_memory_inject(d, "p#e", 1, MM_EUNKNOWN);
  ck_assert_int_eq(finish1(d, "p#e", LIVE, 1, a, 1), MM_EUNKNOWN);
  begin1(d, &c, "p#e", LIVE);
  expect_claim(&c, MM_CLAIM_DONE, a, 1);
  mm_claim_reset(&c);
  /* count 0 cancels; other ids and other backends are not affected. */
  mm_dedup_memory_inject(d, "p#v", 3, MM_ERETRY);
  mm_dedup_memory_inject(d, "p#v", 0, MM_ERETRY);
  begin1(d, &c, "p#v", LIVE);
  expect_claim(&c, MM_CLAIM_NEW, NULL, 0);
  mm_claim_reset(&c);
  mm_dedup_destroy(d);
  d = open_backend(1);
  mm_dedup_memory_inject(d, "p#e", 1, MM_ERETRY);
  begin1(d, &c, "p#e", LIVE);
  expect_claim(&c, MM_CLAIM_NEW, NULL, 0);
  mm_claim_reset(&c);
  mm_dedup_destroy(d);
}
END_TEST

/* Claims outlive the handle, and the store and the dedup can share one
 * file (two tables, two connections). */
START_TEST(test_sqlite_persistence_shared_file) {
  mm_dedup_t *d = open_backend(1);
  mm_store_t *s = NULL;
  mm_err_t err;
  ck_assert_int_eq(mm_store_open(&s, dburl, NULL, &err), 0);
  const char *a[] = {"0:k", "3:j"};
  ck_assert_int_eq(finish1(d, "p#e", LIVE, 1, a, 2), 0);
  mm_delta_t delta = {.agg = MM_AGG_COUNT, .weight = 1};
  delta.v.is_num = 1;
  mm_dec_from_int(&delta.v.num, 1);
  mm_merge_t op = {.key = "k", .key_len = 1, .delta = &delta};
  ck_assert_int_eq(mm_store_merge(s, &op, 1, 0), 0);
  ck_assert_int_eq(op.status, 0);
  const char *b[] = {"0:k"};
  ck_assert_int_eq(finish1(d, "p#f", LIVE, 0, b, 1), 0);
  /* A finish without a ttl keeps the stored one. */
  ck_assert_int_eq(finish1(d, "p#e", 0, 0, NULL, 0), 0);
  mm_dedup_destroy(d);
  mm_store_destroy(s);
  d = open_backend(1);
  mm_claim_t c;
  begin1(d, &c, "p#e", LIVE);
  expect_claim(&c, MM_CLAIM_DONE, a, 2);
  mm_claim_reset(&c);
  begin1(d, &c, "p#f", LIVE);
  expect_claim(&c, MM_CLAIM_PARTIAL, b, 1);
  mm_claim_reset(&c);
  mm_dedup_destroy(d);
  /* The documented table. */
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
  ck_assert_int_eq(sqlite3_prepare_v2(db,
                                      "SELECT done, length(merged), ttl FROM murmur_dedup "
                                      "WHERE pk = 'p#e'",
                                      -1, &st, NULL),
                   SQLITE_OK);
  ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
  ck_assert_int_eq(sqlite3_column_int(st, 0), 1);
  ck_assert_int_eq(sqlite3_column_int(st, 1), 8); /* "0:k\0" "3:j\0" */
  ck_assert_int_eq(sqlite3_column_int64(st, 2), LIVE);
  sqlite3_finalize(st);
  sqlite3_close(db);
}
END_TEST

/* A locked file: every claim of the call is MM_ERETRY. */
START_TEST(test_sqlite_locked_is_retry) {
  mm_dedup_t *d = open_backend(1);
  sqlite3 *db = NULL;
  ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
  ck_assert_int_eq(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
  mm_claim_t cs[2];
  memset(cs, 0, sizeof cs);
  cs[0].id = "p#1";
  cs[1].id = "p#2";
  ck_assert_int_eq(mm_dedup_begin(d, cs, 2, 0), MM_ERETRY);
  ck_assert_int_eq(cs[0].status, MM_ERETRY);
  ck_assert_int_eq(cs[1].status, MM_ERETRY);
  ck_assert_int_eq(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  ck_assert_int_eq(mm_dedup_begin(d, cs, 2, 0), 0);
  expect_claim(&cs[0], MM_CLAIM_NEW, NULL, 0);
  mm_dedup_destroy(d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* End to end: a failed delivery, then its redelivery                  */
/* ------------------------------------------------------------------ */

/* What the pipeline does for one record with keys k[]: begin, merge the
 * keys the claim does not list, finish. Returns the number of keys whose
 * merge failed; *dup is set for a duplicate. */
static int deliver(mm_dedup_t *d, mm_store_t *s, const char *eid, const char *const *keys,
                   size_t n, int *dup) {
  mm_claim_t c;
  begin1(d, &c, eid, LIVE);
  ck_assert_int_eq(c.status, 0);
  *dup = c.state == MM_CLAIM_DONE;
  int failed = 0;
  if (*dup) {
    mm_claim_reset(&c);
    return 0;
  }
  mm_delta_t delta = {.agg = MM_AGG_SUM, .weight = 1};
  delta.v.is_num = 1;
  mm_dec_from_int(&delta.v.num, 10);
  const char *applied[8];
  size_t na = 0;
  for (size_t i = 0; i < n; i++) {
    char id[64];
    snprintf(id, sizeof id, "0:%s", keys[i]);
    int seen = 0;
    for (size_t j = 0; j < c.nmerged; j++) seen |= strcmp(c.merged[j], id) == 0;
    if (seen) continue;
    mm_merge_t op = {.key = keys[i], .key_len = strlen(keys[i]), .delta = &delta};
    ck_assert_int_eq(mm_store_merge(s, &op, 1, 0), 0);
    if (op.status) {
      failed++;
      continue;
    }
    applied[na++] = strdup(id);
  }
  ck_assert_int_eq(finish1(d, eid, LIVE, failed == 0, applied, na), 0);
  for (size_t i = 0; i < na; i++) free((char *)applied[i]);
  mm_claim_reset(&c);
  return failed;
}

typedef struct value {
  char v[64];
  int n;
} value_t;

static int grab(void *ud, const mm_row_t *r) {
  value_t *got = ud;
  snprintf(got->v, sizeof got->v, "%s", r->value_json);
  got->n++;
  return 0;
}

START_TEST(test_redelivery_counts_once) {
  mm_dedup_t *d = open_backend(_i);
  mm_store_t *s = NULL;
  mm_err_t err;
  ck_assert_int_eq(mm_store_open(&s, "memory://", NULL, &err), 0);
  const char *keys[] = {"a", "b", "c"};
  int dup;
  mm_store_memory_inject(s, "b", 1, MM_ERETRY);
  ck_assert_int_eq(deliver(d, s, "p#e1", keys, 3, &dup), 1); /* b failed */
  ck_assert(!dup);
  ck_assert_int_eq(deliver(d, s, "p#e1", keys, 3, &dup), 0); /* redelivered */
  ck_assert(!dup);
  ck_assert_int_eq(deliver(d, s, "p#e1", keys, 3, &dup), 0); /* duplicate */
  ck_assert(dup);
  /* Every key counted exactly once: nothing lost, nothing twice. */
  for (size_t i = 0; i < 3; i++) {
    value_t got = {{0}, 0};
    ck_assert_int_eq(mm_store_query(s, keys[i], NULL, grab, &got, &err), 0);
    ck_assert_int_eq(got.n, 1);
    ck_assert_str_eq(got.v, "10");
  }
  mm_store_destroy(s);
  mm_dedup_destroy(d);
}
END_TEST

static Suite *dedup_suite(void) {
  Suite *su = suite_create("dedup");
  TCase *tc = tcase_create("protocol");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_loop_test(tc, test_new_partial_done, 0, 2);
  tcase_add_loop_test(tc, test_finish_ids_once, 0, 2);
  tcase_add_loop_test(tc, test_finish_creates_and_done_sticks, 0, 2);
  tcase_add_loop_test(tc, test_expired_claims, 0, 2);
  tcase_add_loop_test(tc, test_namespaced_ids, 0, 2);
  tcase_add_loop_test(tc, test_batch_and_odd_ids, 0, 2);
  tcase_add_loop_test(tc, test_deadline, 0, 2);
  tcase_add_loop_test(tc, test_redelivery_counts_once, 0, 2);
  suite_add_tcase(su, tc);

  tc = tcase_create("backends");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_open_urls);
  tcase_add_test(tc, test_memory_inject);
  tcase_add_test(tc, test_sqlite_persistence_shared_file);
  tcase_add_test(tc, test_sqlite_locked_is_retry);
  suite_add_tcase(su, tc);
  return su;
}

int main(void) {
  return tu_run_suite(dedup_suite());
}

/*
 * check_pipeline.c - DESIGN section 3, steps 1-6, on the memory store.
 *
 * Each test builds a pipeline from an inline script, runs events through it
 * and reads the store back; failures are injected with the memory store's
 * and memory dedup's hooks.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "dedup.h"
#include "dlq.h"
#include "log.h"
#include "pipeline.h"
#include "retry.h"
#include "store.h"
#include "testutil.h"

/* The fixture of one test: a pipeline and handles into its parts. */
static mm_pipeline_t *pl;
static mm_store_t *st;
static mm_dedup_t *dd;
static mm_script_t *sc;
static mm_config_t cfg;
static long test_budget;

static void setup(void) {
  mm_log_init(stderr);
  mm_log_set_level(MM_LOG_FATAL);
  mm_config_defaults(&cfg);
  cfg.retry_base_ms = 1;
  cfg.retry_max_ms = 2;
  test_budget = 1000000;
  pl = NULL;
  st = NULL;
  dd = NULL;
  sc = NULL;
}

static void teardown(void) {
  mm_pipeline_destroy(pl);
  pl = NULL;
}

/* Creates the pipeline from script text; dedup on when with_dedup. */
static void make(const char *script, int with_dedup) {
  mm_err_t err;
  mm_err_clear(&err);
  const char *path = tu_write_temp(".lua", script);
  mm_script_opts_t so = {.budget = test_budget, .mem_limit = 16u << 20,
                         .lua_dir = MM_SOURCE_LUA_DIR, .max_depth = 64};
  ck_assert_msg(mm_script_load(&sc, path, &so, &err) == 0, "script: %s", err.msg);
  ck_assert_msg(mm_store_memory_open(&st, &err) == 0, "%s", err.msg);
  if (with_dedup) ck_assert_msg(mm_dedup_memory_open(&dd, &err) == 0, "%s", err.msg);
  ck_assert_msg(mm_pipeline_create(&pl, sc, st, dd, &cfg, &err) == 0, "%s", err.msg);
  mm_pipeline_set_metrics_out(pl, NULL);
}

/* Runs event text; returns the response (static copy). */
static const char *run_deadline(const char *event, int64_t deadline_ms) {
  static char resp[65536];
  mm_result_t res;
  mm_invoke_t inv = {.event = event, .len = strlen(event), .deadline_ms = deadline_ms,
                     .request_id = "test"};
  int rc = mm_pipeline_run(pl, &inv, &res);
  ck_assert_msg(rc == 0, "run failed: %s (%s)", res.err.msg,
                res.error_type ? res.error_type : "");
  ck_assert(res.len < sizeof resp);
  memcpy(resp, res.response, res.len + 1);
  mm_result_free(&res);
  return resp;
}
static const char *run(const char *event) { return run_deadline(event, 0); }

/* Rows of key as "bucket=value;..." */
static int collect(void *ud, const mm_row_t *row) {
  mm_buf_t *b = ud;
  mm_buf_printf(b, "%lld=%s;", (long long)row->bucket, row->value_json);
  return 0;
}
static const char *rows(const char *key) {
  static char out[4096];
  mm_buf_t b = MM_BUF_INIT;
  mm_err_t err;
  mm_buf_adds(&b, "");
  ck_assert_msg(mm_store_query(st, key, NULL, collect, &b, &err) == 0, "%s", err.msg);
  snprintf(out, sizeof out, "%s", b.data);
  mm_buf_free(&b);
  return out;
}

/* One stream record: INSERT of {id, cust, total(N)} at time t (t < 0: no
 * ApproximateCreationDateTime). */
static void add_rec(mm_buf_t *b, int i, const char *cust, const char *total, double t) {
  if (b->data[b->len - 1] != '[') mm_buf_addc(b, ',');
  mm_buf_printf(b,
                "{\"eventID\":\"ev%d\",\"eventName\":\"INSERT\",\"eventSource\":\"aws:dynamodb\","
                "\"dynamodb\":{",
                i);
  if (t >= 0) mm_buf_printf(b, "\"ApproximateCreationDateTime\":%.17g,", t);
  mm_buf_printf(b,
                "\"Keys\":{\"id\":{\"S\":\"o%d\"}},\"NewImage\":{\"id\":{\"S\":\"o%d\"},"
                "\"cust\":{\"S\":\"%s\"},\"total\":{\"N\":\"%s\"}},"
                "\"SequenceNumber\":\"%021d\",\"StreamViewType\":\"NEW_IMAGE\"}}",
                i, i, cust, total, 100 + i);
}

/* An event under construction: add_rec each record, then event_of. */
static mm_buf_t event_begin(void) {
  mm_buf_t b = MM_BUF_INIT;
  mm_buf_adds(&b, "{\"Records\":[");
  return b;
}

static char *event_of(mm_buf_t *b) {
  mm_buf_adds(b, "]}");
  return b->data;
}

static const char *SUM_SCRIPT =
    "return { name='t', aggregate='sum',\n"
    "  decode=function(r) local o=r.dynamodb.NewImage\n"
    "    if o.cust=='skip' then return nil end\n"
    "    if o.cust=='bad' then error('bad order') end\n"
    "    return o end,\n"
    "  key=function(o) return 'c#'..o.cust end,\n"
    "  value=function(o) return o.total end }\n";

/* ------------------------------------------------------------------ */

START_TEST(example_pipeline_on_sample_event) {
  char *script = tu_read_file(MM_SOURCE_LUA_DIR "/examples/order_totals/decode.lua", NULL);
  char *event = tu_read_file(MM_SOURCE_LUA_DIR "/examples/order_totals/event.json", NULL);
  ck_assert(script && event);
  make(script, 1);
  ck_assert_str_eq(run(event), "{\"batchItemFailures\":[]}");
  ck_assert_str_eq(rows("customer#c-42"), "0=19.99;");
  ck_assert_str_eq(rows("customer#c-7"), "0=7.35;");
  ck_assert_str_eq(rows("customer#c-99"), "0=0.3;");
  const mm_metrics_t *m = mm_pipeline_metrics(pl);
  ck_assert_uint_eq(m->records, 8);
  ck_assert_uint_eq(m->decode_errors, 1);
  ck_assert_uint_eq(m->failures, 0);
  free(script);
  free(event);
}
END_TEST

START_TEST(skip_is_counted_never_failed) {
  make(SUM_SCRIPT, 0);
  mm_buf_t b = event_begin();
  add_rec(&b, 1, "skip", "1", 100);
  add_rec(&b, 2, "a", "2", 100);
  ck_assert_str_eq(run(event_of(&b)), "{\"batchItemFailures\":[]}");
  ck_assert_uint_eq(mm_pipeline_metrics(pl)->skipped, 1);
  ck_assert_uint_eq(mm_pipeline_metrics(pl)->applied, 1);
  ck_assert_str_eq(rows("c#a"), "0=2;");
  mm_buf_free(&b);
}
END_TEST

START_TEST(poison_pill_counted_and_handed_to_callback) {
  make("local seen = {}\n"
       "return { name='t', aggregate='count',\n"
       "  decode=function(r) local o=r.dynamodb.NewImage\n"
       "    if o.cust=='bad' then error('bad order') end return o end,\n"
       "  key=function(o) return o.cust end,\n"
       "  on_decode_error=function(rec, err)\n"
       "    seen[#seen+1] = rec.eventID .. '|' .. err\n"
       "    _G.SEEN = seen end }\n",
       0);
  mm_buf_t b = event_begin();
  add_rec(&b, 1, "bad", "1", 100);
  add_rec(&b, 2, "a", "2", 100);
  ck_assert_str_eq(run(event_of(&b)), "{\"batchItemFailures\":[]}");
  ck_assert_uint_eq(mm_pipeline_metrics(pl)->decode_errors, 1);
  ck_assert_str_eq(rows("a"), "0=1;");
  lua_State *L = mm_script_state(sc);
  lua_getglobal(L, "SEEN");
  ck_assert(lua_istable(L, -1));
  lua_rawgeti(L, -1, 1);
  const char *s = lua_tostring(L, -1);
  ck_assert_ptr_nonnull(s);
  ck_assert_msg(strstr(s, "ev1|") == s, "got %s", s);
  ck_assert_msg(strstr(s, ".lua:4:") != NULL, "no file:line in %s", s);
  ck_assert_msg(strstr(s, "bad order") != NULL, "got %s", s);
  lua_pop(L, 2);
  mm_buf_free(&b);
}
END_TEST

START_TEST(key_fanout_duplicate_keys_merged_once) {
  make("return { aggregate='count',\n"
       "  decode=function(r) return r.dynamodb.NewImage end,\n"
       "  keys=function(o) return {'all', 'c#'..o.cust, 'all', 'c#'..o.cust} end }\n",
       0);
  mm_buf_t b = event_begin();
  add_rec(&b, 1, "a", "1", 100);
  add_rec(&b, 2, "b", "1", 100);
  add_rec(&b, 3, "a", "1", 100);
  run(event_of(&b));
  ck_assert_str_eq(rows("all"), "0=3;");
  ck_assert_str_eq(rows("c#a"), "0=2;");
  ck_assert_str_eq(rows("c#b"), "0=1;");
  mm_buf_free(&b);
}
END_TEST

/* Rows with their ttl, for the window test. */
static int collect_ttl(void *ud, const mm_row_t *row) {
  mm_buf_t *b = ud;
  mm_buf_printf(b, "%lld=%s@%lld;", (long long)row->bucket, row->value_json,
                (long long)row->ttl);
  return 0;
}

START_TEST(windowed_buckets_and_ttl) {
  make("return { aggregate='sum', window={granularity='1h', retention='1d'},\n"
       "  decode=function(r) return r.dynamodb.NewImage end,\n"
       "  key=function(o) return o.cust end, value=function(o) return o.total end }\n",
       0);
  mm_buf_t b = event_begin();
  add_rec(&b, 1, "a", "1.5", 7200);        /* bucket 2 */
  add_rec(&b, 2, "a", "2", 10799.9);       /* bucket 2 */
  add_rec(&b, 3, "a", "4", 10800);         /* bucket 3 */
  add_rec(&b, 4, "a", "8", 1764072000000.0); /* ms: 1764072000 s -> bucket 490020 */
  run(event_of(&b));
  mm_buf_t out = MM_BUF_INIT;
  mm_err_t err;
  mm_buf_adds(&out, "");
  ck_assert(mm_store_query(st, "a", NULL, collect_ttl, &out, &err) == 0);
  /* ttl = bucket end + retention */
  ck_assert_str_eq(out.data, "2=3.5@97200;3=4@100800;490020=8@1764162000;");
  mm_buf_free(&out);
  mm_buf_free(&b);
}
END_TEST

START_TEST(murmur_now_pins_the_clock_for_records_without_time) {
  cfg.has_now = 1;
  cfg.now = 86400 * 3 + 5;
  make("return { aggregate='count', window={granularity='1d'},\n"
       "  decode=function(r) return r.dynamodb.NewImage end,\n"
       "  key=function(o) return o.cust end }\n",
       0);
  mm_buf_t b = event_begin();
  add_rec(&b, 1, "a", "1", -1);
  run(event_of(&b));
  ck_assert_str_eq(rows("a"), "3=1;");
  mm_buf_free(&b);
}
END_TEST

START_TEST(dedup_second_delivery_is_skipped) {
  make(SUM_SCRIPT, 1);
  mm_buf_t b = event_begin();
  add_rec(&b, 1, "a", "0.1", 100);
  add_rec(&b, 2, "a", "0.2", 100);
  char *ev = event_of(&b);
  run(ev);
  ck_assert_str_eq(rows("c#a"), "0=0.3;");
  ck_assert_str_eq(run(ev), "{\"batchItemFailures\":[]}");
  ck_assert_uint_eq(mm_pipeline_metrics(pl)->dedup_skips, 2);
  ck_assert_uint_eq(mm_pipeline_metrics(pl)->merges, 0);
  ck_assert_str_eq(rows("c#a"), "0=0.3;");
  mm_buf_free(&b);
}
END_TEST

START_TEST(dedup_namespaced_by_pipeline_name) {
  /* Same eventIDs, another pipeline name sharing the dedup store would be
   * a different namespace: checked through the claim ids it writes. */
  make(SUM_SCRIPT, 1);
  mm_buf_t b = event_begin();
  add_rec(&b, 7, "a", "1", 100);
  run(event_of(&b));
  mm_claim_t c = {.id = "t#ev7", .id_len = 5, .ttl = 4000000000};
  mm_dedup_begin(dd, &c, 1, 0);
  ck_assert_int_eq(c.status, 0);
  ck_assert_int_eq(c.state, MM_CLAIM_DONE);
  mm_claim_reset(&c);
  mm_claim_t other = {.id = "other#ev7", .id_len = 9, .ttl = 4000000000};
  mm_dedup_begin(dd, &other, 1, 0);
  ck_assert_int_eq(other.state, MM_CLAIM_NEW);
  mm_claim_reset(&other);
  mm_buf_free(&b);
}
END_TEST

START_TEST(failed_merge_is_reported_then_redelivery_applies_once) {
  cfg.max_attempts = 2;
  make(SUM_SCRIPT, 1);
  mm_buf_t b = event_begin();
  add_rec(&b, 1, "a", "1", 100);
  add_rec(&b, 2, "b", "10", 100);
  add_rec(&b, 3, "a", "100", 100);
  char *ev = event_of(&b);
  mm_store_memory_inject(st, "c#b", 2, MM_ERETRY);
  const char *resp = run(ev);
  ck_assert_str_eq(resp, "{\"batchItemFailures\":[{\"itemIdentifier\":\"000000000000000000102\"}]}");
  ck_assert_uint_eq(mm_pipeline_metrics(pl)->failures, 1);
  ck_assert_uint_eq(mm_pipeline_metrics(pl)->retries, 1);
  ck_assert_str_eq(rows("c#a"), "0=101;");
  ck_assert_str_eq(rows("c#b"), "");
  /* Lambda redelivers from the failed record: the claim of the failed
   * record must not make it a duplicate; the others are duplicates. */
  ck_assert_str_eq(run(ev), "{\"batchItemFailures\":[]}");
  ck_assert_str_eq(rows("c#a"), "0=101;");
  ck_assert_str_eq(rows("c#b"), "0=10;");
  ck_assert_uint_eq(mm_pipeline_metrics(pl)->dedup_skips, 2);
  mm_buf_free(&b);
}
END_TEST

START_TEST(partial_record_redelivery_merges_only_missing_keys) {
  cfg.max_attempts = 1;
  make("return { aggregate='sum',\n"
       "  decode=function(r) return r.dynamodb.NewImage end,\n"
       "  keys=function(o) return {'k1','k2','k3'} end,\n"
       "  value=function(o) return o.total end }\n",
       1);
  mm_buf_t b = event_begin();
  add_rec(&b, 1, "a", "5", 100);
  char *ev = event_of(&b);
  mm_store_memory_inject(st, "k2", 1, MM_EPERM);
  ck_assert_str_eq(run(ev), "{\"batchItemFailures\":[{\"itemIdentifier\":\"000000000000000000101\"}]}");
  ck_assert_str_eq(rows("k1"), "0=5;");
  ck_assert_str_eq(rows("k2"), "");
  ck_assert_str_eq(run(ev), "{\"batchItemFailures\":[]}");
  ck_assert_str_eq(rows("k1"), "0=5;");
  ck_assert_str_eq(rows("k2"), "0=5;");
  ck_assert_str_eq(rows("k3"), "0=5;");
  ck_assert_uint_eq(mm_pipeline_metrics(pl)->merges, 1);
  /* and now it is done */
  run(ev);
  ck_assert_uint_eq(mm_pipeline_metrics(pl)->dedup_skips, 1);
  mm_buf_free(&b);
}
END_TEST

START_TEST(failed_dedup_claim_reports_the_record) {
  cfg.max_attempts = 2;
  make(SUM_SCRIPT, 1);
  mm_buf_t b = event_begin();
  add_rec(&b, 1, "a", "1", 100);
  char *ev = event_of(&b);
  mm_dedup_memory_inject(dd, "t#ev1", 2, MM_ERETRY);
  ck_assert_str_eq(run(ev), "{\"batchItemFailures\":[{\"itemIdentifier\":\"000000000000000000101\"}]}");
  ck_assert_str_eq(rows("c#a"), "");
  ck_assert_str_eq(run(ev), "{\"batchItemFailures\":[]}");
  ck_assert_str_eq(rows("c#a"), "0=1;");
  mm_buf_free(&b);
}
END_TEST

START_TEST(transient_failures_are_retried) {
  cfg.max_attempts = 3;
  make(SUM_SCRIPT, 0);
  mm_buf_t b = event_begin();
  add_rec(&b, 1, "a", "1", 100);
  mm_store_memory_inject(st, "c#a", 2, MM_ERETRY);
  ck_assert_str_eq(run(event_of(&b)), "{\"batchItemFailures\":[]}");
  ck_assert_uint_eq(mm_pipeline_metrics(pl)->retries, 2);
  ck_assert_uint_eq(mm_pipeline_metrics(pl)->merges, 3);
  ck_assert_str_eq(rows("c#a"), "0=1;");
  mm_buf_free(&b);
}
END_TEST

START_TEST(permanent_failures_are_not_retried) {
  cfg.max_attempts = 5;
  make(SUM_SCRIPT, 0);
  mm_buf_t b = event_begin();
  add_rec(&b, 1, "a", "1", 100);
  mm_store_memory_inject(st, "c#a", 1, MM_EPERM);
  ck_assert_str_eq(run(event_of(&b)),
                   "{\"batchItemFailures\":[{\"itemIdentifier\":\"000000000000000000101\"}]}");
  ck_assert_uint_eq(mm_pipeline_metrics(pl)->retries, 0);
  ck_assert_uint_eq(mm_pipeline_metrics(pl)->merges, 1);
  mm_buf_free(&b);
}
END_TEST

START_TEST(unknown_outcome_is_metered_and_retried) {
  cfg.max_attempts = 3;
  make(SUM_SCRIPT, 0);
  mm_buf_t b = event_begin();
  add_rec(&b, 1, "a", "1", 100);
  mm_store_memory_inject(st, "c#a", 1, MM_EUNKNOWN);
  ck_assert_str_eq(run(event_of(&b)), "{\"batchItemFailures\":[]}");
  ck_assert_uint_eq(mm_pipeline_metrics(pl)->unknown_outcomes, 1);
  /* the lost answer's write was applied, and so was the retry */
  ck_assert_str_eq(rows("c#a"), "0=2;");
  mm_buf_free(&b);
}
END_TEST

START_TEST(additive_deltas_coalesced) {
  make(SUM_SCRIPT, 0);
  mm_buf_t b = event_begin();
  for (int i = 0; i < 200; i++) add_rec(&b, i, i % 2 ? "odd" : "even", "0.01", 100);
  ck_assert_str_eq(run(event_of(&b)), "{\"batchItemFailures\":[]}");
  ck_assert_uint_eq(mm_pipeline_metrics(pl)->merges, 2);
  ck_assert_str_eq(rows("c#odd"), "0=1;");
  ck_assert_str_eq(rows("c#even"), "0=1;");
  mm_buf_free(&b);
}
END_TEST

/* A batch above MM_JSON_PREFETCH_MIN, where the decode loop prefetches
 * each next record: every record is still decoded once and in order -
 * poison pills, skips and sums come out as in a small batch - and the
 * last record (whose next is past the Records array) is no exception. */
START_TEST(big_batch_prefetching_decodes_every_record) {
  make(SUM_SCRIPT, 0);
  mm_buf_t b = event_begin();
  int n = 0;
  while (b.len < MM_JSON_PREFETCH_MIN + 4096) {
    const char *cust = n % 97 == 5 ? "bad" : n % 89 == 7 ? "skip" : n % 3 ? "c1" : "c0";
    add_rec(&b, n, cust, n == 0 ? "0.5" : "1", 100);
    n++;
  }
  add_rec(&b, n, "last", "7.25", 100); /* the final record gets no prefetch */
  n++;
  const char *resp = run(event_of(&b));
  long bad = 0, c0 = 0, c1 = 0, skip = 0;
  for (int i = 0; i < n - 1; i++) {
    if (i % 97 == 5) bad++;
    else if (i % 89 == 7) skip++;
    else if (i % 3) c1++;
    else c0++;
  }
  ck_assert_msg(strstr(resp, "\"batchItemFailures\":[]") != NULL, "%s", resp);
  ck_assert_uint_eq(mm_pipeline_metrics(pl)->records, (uint64_t)n);
  ck_assert_uint_eq(mm_pipeline_metrics(pl)->decode_errors, (uint64_t)bad);
  ck_assert_uint_eq(mm_pipeline_metrics(pl)->skipped, (uint64_t)skip);
  char want[64];
  snprintf(want, sizeof want, "0=%ld.5;", c0 - 1); /* record 0 adds 0.5 */
  ck_assert_str_eq(rows("c#c0"), want);
  snprintf(want, sizeof want, "0=%ld;", c1);
  ck_assert_str_eq(rows("c#c1"), want);
  ck_assert_str_eq(rows("c#last"), "0=7.25;");
  mm_buf_free(&b);
}
END_TEST

/* Keys of every length from 1 to 37 bytes (each of the batch hash's read
 * paths: under 4, under 8, whole and partial 8-byte blocks), nine or so
 * contributions each: one merge per key, each with every contribution. */
START_TEST(coalescing_keys_of_every_length) {
  make("return { aggregate='sum',\n"
       "  decode=function(r) return r.dynamodb.NewImage end,\n"
       "  key=function(o) return string.rep('k', #o.cust) end,\n"
       "  value=function(o) return o.total end }\n",
       0);
  mm_buf_t b = event_begin();
  int count[38] = {0};
  for (int i = 0; i < 333; i++) {
    int len = 1 + i % 37;
    char cust[40];
    memset(cust, 'c', (size_t)len);
    cust[len] = '\0';
    add_rec(&b, i, cust, "0.1", 100);
    count[len]++;
  }
  ck_assert_str_eq(run(event_of(&b)), "{\"batchItemFailures\":[]}");
  ck_assert_uint_eq(mm_pipeline_metrics(pl)->merges, 37);
  for (int len = 1; len <= 37; len++) {
    char key[40], want[32];
    memset(key, 'k', (size_t)len);
    key[len] = '\0';
    snprintf(want, sizeof want, "0=%d.%d;", count[len] / 10, count[len] % 10);
    if (count[len] % 10 == 0) snprintf(want, sizeof want, "0=%d;", count[len] / 10);
    ck_assert_str_eq(rows(key), want);
  }
  mm_buf_free(&b);
}
END_TEST

/* Coalesced sums stay exact past 64 bits (18-digit deltas), and a
 * contribution that would take a coalesced sum out of DynamoDB's range is
 * kept apart: its own merge then fails and only its record is reported. */
START_TEST(coalescing_limits) {
  cfg.max_attempts = 1;
  make(SUM_SCRIPT, 0);
  mm_buf_t b = event_begin();
  add_rec(&b, 1, "big", "999999999999999999", 100);
  add_rec(&b, 2, "edge", "9E+125", 100);
  add_rec(&b, 3, "big", "999999999999999999", 100);
  add_rec(&b, 4, "edge", "9E+125", 100);
  add_rec(&b, 5, "big", "0.000000000000000001", 100);
  add_rec(&b, 6, "edge", "1E+125", 100);
  add_rec(&b, 7, "edge", "-2E+125", 100);
  ck_assert_str_eq(run(event_of(&b)),
                   "{\"batchItemFailures\":[{\"itemIdentifier\":\"000000000000000000104\"}]}");
  /* big: one op. edge: 2 and 7 coalesced (6 came between: 9E+125 + 1E+125
   * is out of range), 4 and 6 each apart; 6 then fits the row, 4 never */
  ck_assert_uint_eq(mm_pipeline_metrics(pl)->merges, 4);
  ck_assert_str_eq(rows("c#big"), "0=1999999999999999998.000000000000000001;");
  ck_assert_str_eq(rows("c#edge"), "0=8E+125;");
  mm_buf_free(&b);
}
END_TEST

START_TEST(coalesced_failure_reports_every_contributor) {
  cfg.max_attempts = 1;
  make(SUM_SCRIPT, 0);
  mm_buf_t b = event_begin();
  add_rec(&b, 1, "x", "1", 100);
  add_rec(&b, 2, "y", "1", 100);
  add_rec(&b, 3, "x", "1", 100);
  mm_store_memory_inject(st, "c#x", 1, MM_ERETRY);
  ck_assert_str_eq(run(event_of(&b)),
                   "{\"batchItemFailures\":[{\"itemIdentifier\":\"000000000000000000101\"},"
                   "{\"itemIdentifier\":\"000000000000000000103\"}]}");
  mm_buf_free(&b);
}
END_TEST

START_TEST(deadline_margin_reports_unstarted_records) {
  cfg.deadline_margin_ms = 200;
  make(SUM_SCRIPT, 0);
  mm_buf_t b = event_begin();
  add_rec(&b, 1, "a", "1", 100);
  add_rec(&b, 2, "a", "1", 100);
  /* 100 ms left, margin 200: nothing may start */
  const char *resp = run_deadline(event_of(&b), mm_now_ms() + 100);
  ck_assert_str_eq(resp, "{\"batchItemFailures\":[{\"itemIdentifier\":\"000000000000000000101\"},"
                         "{\"itemIdentifier\":\"000000000000000000102\"}]}");
  ck_assert_uint_eq(mm_pipeline_metrics(pl)->deadline_skips, 2);
  ck_assert_str_eq(rows("c#a"), "");
  mm_buf_free(&b);
}
END_TEST

START_TEST(deadline_stops_retries) {
  cfg.max_attempts = 100;
  cfg.retry_base_ms = 50;
  cfg.retry_max_ms = 50;
  cfg.deadline_margin_ms = 100;
  make(SUM_SCRIPT, 0);
  mm_buf_t b = event_begin();
  add_rec(&b, 1, "a", "1", 100);
  mm_store_memory_inject(st, "c#a", 1000, MM_ERETRY);
  int64_t deadline = mm_now_ms() + 600;
  const char *resp = run_deadline(event_of(&b), deadline);
  ck_assert_msg(mm_now_ms() < deadline, "ran past the deadline");
  ck_assert_str_eq(resp, "{\"batchItemFailures\":[{\"itemIdentifier\":\"000000000000000000101\"}]}");
  mm_buf_free(&b);
}
END_TEST

extern long mm_script_fail_countdown; /* script.c's allocation-failure knob */

/* Lua out of memory while making the batch's records readable: none of them
 * is at fault, so the invocation fails (Lambda retries the whole batch)
 * instead of every record becoming a poison pill; the next batch runs. */
START_TEST(document_switch_out_of_memory_fails_the_invocation) {
  make(SUM_SCRIPT, 0);
  mm_buf_t b = event_begin();
  add_rec(&b, 1, "a", "5", 1000);
  mm_buf_adds(&b, "]}");
  mm_result_t res;
  mm_invoke_t inv = {.event = b.data, .len = b.len, .request_id = "oom"};
  mm_script_fail_countdown = 1;
  int rc = mm_pipeline_run(pl, &inv, &res);
  int reached = mm_script_fail_countdown < 0;
  mm_script_fail_countdown = 0;
  ck_assert(reached);
  ck_assert_int_ne(rc, 0);
  ck_assert_str_eq(res.error_type, "Runtime.OutOfMemory");
  ck_assert_int_eq(mm_pipeline_metrics(pl)->decode_errors, 0);
  mm_result_free(&res);
  ck_assert_str_eq(run(b.data), "{\"batchItemFailures\":[]}");
  ck_assert_str_eq(rows("c#a"), "0=5;");
  mm_buf_free(&b);
}
END_TEST

extern long mm_arena_fail_countdown; /* arena.c's allocation-failure knob */

/* The batch arena running out of memory at every point of a run (records,
 * ids, key copies, merge plan, store batch): a record is either applied or
 * reported, never lost, and the next run works. Every record adds 2^i to
 * one 2,000-byte key, so the row says exactly which were applied. */
START_TEST(batch_arena_out_of_memory_loses_nothing) {
  const char *script = "return { aggregate='sum',\n"
                       "  decode=function(r) return r.dynamodb.NewImage end,\n"
                       "  key=function(o) return string.rep('k', 2000) end,\n"
                       "  value=function(o) return o.total end }\n";
  make(script, 0);
  char key[2001];
  memset(key, 'k', 2000);
  key[2000] = '\0';
  mm_buf_t b = event_begin();
  for (int i = 0; i < 20; i++) {
    char total[16];
    snprintf(total, sizeof total, "%d", 1 << i);
    add_rec(&b, i, "a", total, 100);
  }
  event_of(&b);
  int failed_runs = 0, reached = 1;
  for (int fail_at = 1; reached; fail_at++) {
    mm_pipeline_destroy(pl); /* a fresh arena: its first chunks are counted */
    pl = NULL;
    make(script, 0);
    mm_result_t res;
    mm_invoke_t inv = {.event = b.data, .len = b.len, .request_id = "oom"};
    mm_arena_fail_countdown = fail_at;
    int rc = mm_pipeline_run(pl, &inv, &res);
    reached = mm_arena_fail_countdown < 0;
    mm_arena_fail_countdown = 0;
    failed_runs += reached;
    long long want = 0;
    if (rc != 0) {
      /* out of memory before any record could be kept: the whole batch */
      ck_assert_str_eq(res.error_type, "Runtime.OutOfMemory");
      ck_assert_str_eq(rows(key), "");
    } else {
      for (int i = 0; i < 20; i++) {
        char seq[32];
        snprintf(seq, sizeof seq, "\"%021d\"", 100 + i);
        if (!strstr(res.response, seq)) want += 1LL << i; /* not reported: applied */
      }
      char row[64];
      snprintf(row, sizeof row, want ? "0=%lld;" : "", want);
      ck_assert_msg(strcmp(rows(key), row) == 0, "fail_at %d: row %s, unreported %s",
                    fail_at, rows(key), row);
    }
    mm_result_free(&res);
    /* and the pipeline goes on */
    ck_assert_str_eq(run(b.data), "{\"batchItemFailures\":[]}");
    char row[64];
    snprintf(row, sizeof row, "0=%lld;", want + (1LL << 20) - 1);
    ck_assert_str_eq(rows(key), row);
  }
  /* the records, their ids and keys, and the merge plan each ran out */
  ck_assert_int_ge(failed_runs, 3);
  mm_buf_free(&b);
}
END_TEST

START_TEST(not_json_is_an_invocation_error) {
  make(SUM_SCRIPT, 0);
  const char *bad[] = {"not json", "{\"Records\":[", "[1,2]", "{\"foo\":1}",
                       "{\"Records\":[{\"eventSource\":\"aws:sqs\"}]}"};
  const char *types[] = {"Runtime.InvalidJSON", "Runtime.InvalidJSON", "Runtime.UnsupportedEvent",
                         "Runtime.UnsupportedEvent", "Runtime.UnsupportedEvent"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    mm_result_t res;
    mm_invoke_t inv = {.event = bad[i], .len = strlen(bad[i])};
    ck_assert_int_eq(mm_pipeline_run(pl, &inv, &res), MM_EINVAL);
    ck_assert_str_eq(res.error_type, types[i]);
    ck_assert(res.err.msg[0] != '\0');
    mm_result_free(&res);
  }
  /* and the pipeline goes on */
  mm_buf_t b = event_begin();
  add_rec(&b, 1, "a", "1", 100);
  ck_assert_str_eq(run(event_of(&b)), "{\"batchItemFailures\":[]}");
  mm_buf_free(&b);
}
END_TEST

START_TEST(record_without_ids_is_a_poison_pill) {
  make(SUM_SCRIPT, 1);
  const char *ev =
      "{\"Records\":[{\"eventName\":\"INSERT\",\"dynamodb\":{\"SequenceNumber\":\"000000000000000000001\","
      "\"NewImage\":{\"cust\":{\"S\":\"a\"},\"total\":{\"N\":\"1\"}}}},"
      "{\"eventID\":\"e2\",\"eventName\":\"INSERT\",\"dynamodb\":{"
      "\"NewImage\":{\"cust\":{\"S\":\"a\"},\"total\":{\"N\":\"1\"}}}}]}";
  ck_assert_str_eq(run(ev), "{\"batchItemFailures\":[]}");
  ck_assert_uint_eq(mm_pipeline_metrics(pl)->decode_errors, 2);
  ck_assert_str_eq(rows("c#a"), "");
}
END_TEST

START_TEST(tumbling_window_state_is_returned) {
  make("return { aggregate='count', decode=function(r) return r end,\n"
       "  key=function(r) return r.eventName end }\n",
       0);
  char *ev = tu_fixture("go-dynamodb-time-window-event.json", NULL);
  const char *resp = run(ev);
  ck_assert_str_eq(resp, "{\"batchItemFailures\":[],\"state\":{\"1\":\"state1\"}}");
  free(ev);
  ev = tu_fixture("dotnet-dynamodb-timewindow-event.json", NULL);
  resp = run(ev);
  ck_assert_msg(strstr(resp, "\"state\":") != NULL, "no state in %s", resp);
  free(ev);
}
END_TEST

START_TEST(duplicate_event_ids_in_one_batch_apply_once_with_dedup) {
  make("return { aggregate='count', decode=function(r) return r end,\n"
       "  key=function(r) return 'all' end }\n",
       1);
  char *ev = tu_fixture("pt-java-dynamo-event-big.json", NULL);
  ck_assert_str_eq(run(ev), "{\"batchItemFailures\":[]}");
  const mm_metrics_t *m = mm_pipeline_metrics(pl);
  ck_assert_uint_eq(m->records, 12);
  /* distinct eventIDs in the fixture */
  ck_assert_uint_eq(m->records - m->dedup_skips, 3);
  ck_assert_str_eq(rows("all"), "0=3;");
  free(ev);
}
END_TEST

START_TEST(every_fixture_runs) {
  make("return { aggregate='count', decode=function(r)\n"
       "  local cjson = require 'cjson'\n"
       "  return cjson.encode(r) end,\n"
       "  key=function(s) return 'n' end }\n",
       0);
  const char *files[] = {"go-dynamodb-event.json", "dotnet-dynamodb-event.json",
                         "dotnet-dynamodb-with-ms-event.json", "java-libs-dynamo-event.json",
                         "pt-java-dynamo-event-big.json", "pt-python-dynamoStreamEvent.json",
                         "pt-python-getting-started-dynamodb-event.json",
                         "pt-ts-parser-dynamodb-base.json", "ankcorn-keys-only-remove.json",
                         "ankcorn-new-and-old-images-modify.json", "ankcorn-new-image-remove.json",
                         "ankcorn-old-image-insert.json", "go-dynamodb-time-window-event.json",
                         "dotnet-dynamodb-timewindow-event.json"};
  uint64_t total = 0;
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    char *ev = tu_fixture(files[i], NULL);
    const char *resp = run(ev);
    ck_assert_msg(strncmp(resp, "{\"batchItemFailures\":[]", 23) == 0, "%s: %s", files[i], resp);
    const mm_metrics_t *m = mm_pipeline_metrics(pl);
    /* go-dynamodb-event has an invalid base64 attribute? then it is poison;
     * every other record must be counted */
    total += m->applied;
    ck_assert_uint_eq(m->applied + m->decode_errors, m->records);
    free(ev);
  }
  ck_assert_uint_gt(total, 30);
}
END_TEST


START_TEST(poison_pills_parked_in_a_file_dlq) {
  make(SUM_SCRIPT, 0);
  char *dir = tu_temp_dir();
  char path[512];
  snprintf(path, sizeof path, "%s/dlq.jsonl", dir);
  mm_dlq_t *dlq = NULL;
  mm_err_t err;
  mm_store_opts_t so = {0};
  ck_assert_msg(mm_dlq_open(&dlq, path, &so, &err) == 0, "%s", err.msg);
  mm_pipeline_set_dlq(pl, dlq);
  mm_buf_t b = event_begin();
  add_rec(&b, 1, "bad", "1", 100);
  add_rec(&b, 2, "a", "2", 100);
  add_rec(&b, 3, "bad", "3", 100);
  ck_assert_str_eq(run(event_of(&b)), "{\"batchItemFailures\":[]}");
  ck_assert_uint_eq(mm_pipeline_metrics(pl)->parked, 2);
  size_t len;
  char *lines = tu_read_file(path, &len);
  ck_assert_ptr_nonnull(lines);
  /* one line per pill, each with the error's file:line and its record */
  int nl = 0;
  for (size_t i = 0; i < len; i++) nl += lines[i] == '\n';
  ck_assert_int_eq(nl, 2);
  ck_assert_msg(strstr(lines, "bad order") && strstr(lines, ".lua:4:"), "%s", lines);
  ck_assert_msg(strstr(lines, "\"eventID\":\"ev1\"") && strstr(lines, "\"eventID\":\"ev3\""),
                "%s", lines);
  ck_assert_msg(strstr(lines, "000000000000000000103"), "%s", lines);
  free(lines);
  unlink(path);
  rmdir(dir);
  free(dir);
  mm_buf_free(&b);
}
END_TEST

START_TEST(unparkable_poison_pills_are_reported) {
  cfg.max_attempts = 2;
  make(SUM_SCRIPT, 0);
  setenv("AWS_REGION", "eu-west-1", 1);
  setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
  mm_dlq_t *dlq = NULL;
  mm_err_t err;
  mm_store_opts_t so = {0};
  /* nothing listens on port 1 */
  ck_assert_msg(mm_dlq_open(&dlq, "sqs://http://127.0.0.1:1/123456789012/dlq", &so, &err) == 0,
                "%s", err.msg);
  mm_pipeline_set_dlq(pl, dlq);
  mm_buf_t b = event_begin();
  add_rec(&b, 1, "a", "1", 100);
  add_rec(&b, 2, "bad", "2", 100);
  ck_assert_str_eq(run(event_of(&b)),
                   "{\"batchItemFailures\":[{\"itemIdentifier\":\"000000000000000000102\"}]}");
  ck_assert_uint_eq(mm_pipeline_metrics(pl)->park_failures, 1);
  ck_assert_uint_eq(mm_pipeline_metrics(pl)->failures, 1);
  ck_assert_str_eq(rows("c#a"), "0=1;");
  mm_buf_free(&b);
}
END_TEST

START_TEST(slow_decode_stopped_at_the_deadline_margin) {
  cfg.deadline_margin_ms = 200;
  test_budget = 50000000000L;
  make("return { aggregate='count',\n"
       "  decode=function(r) local o=r.dynamodb.NewImage\n"
       "    if o.cust=='slow' then local t=os.clock() while os.clock()-t < 10 do end end\n"
       "    return o end,\n"
       "  key=function(o) return o.cust end }\n",
       0);
  mm_buf_t b = event_begin();
  add_rec(&b, 1, "a", "1", 100);
  add_rec(&b, 2, "slow", "1", 100);
  add_rec(&b, 3, "a", "1", 100);
  int64_t deadline = mm_now_ms() + 700;
  const char *resp = run_deadline(event_of(&b), deadline);
  /* stopped by the margin, not by the 10 s loop. The slow record and the
   * one after it never finished decoding; the first did, but no store
   * request may start past the margin, so it is reported too. */
  ck_assert_msg(mm_now_ms() < deadline, "ran past the deadline");
  ck_assert_str_eq(resp, "{\"batchItemFailures\":[{\"itemIdentifier\":\"000000000000000000101\"},"
                         "{\"itemIdentifier\":\"000000000000000000102\"},"
                         "{\"itemIdentifier\":\"000000000000000000103\"}]}");
  ck_assert_uint_eq(mm_pipeline_metrics(pl)->deadline_skips, 2);
  ck_assert_uint_eq(mm_pipeline_metrics(pl)->decode_errors, 0);
  ck_assert_str_eq(rows("a"), "");
  /* the next invocation, with time, runs normally */
  mm_buf_t c = event_begin();
  add_rec(&c, 4, "a", "1", 100);
  ck_assert_str_eq(run(event_of(&c)), "{\"batchItemFailures\":[]}");
  ck_assert_str_eq(rows("a"), "0=1;");
  mm_buf_free(&b);
  mm_buf_free(&c);
}
END_TEST

START_TEST(runaway_decode_is_poison_under_the_watchdog) {
  /* the default budget: the decode phase runs watched (script.h), so the
   * loop is counted only once it outlives a CPU-time tick, and stopped */
  test_budget = MM_DEF_LUA_BUDGET;
  make("return { aggregate='count',\n"
       "  decode=function(r) local o=r.dynamodb.NewImage\n"
       "    if o.cust=='loop' then while true do end end\n"
       "    return o end,\n"
       "  key=function(o) return o.cust end }\n",
       0);
  mm_buf_t b = event_begin();
  add_rec(&b, 1, "a", "1", 100);
  add_rec(&b, 2, "loop", "1", 100);
  add_rec(&b, 3, "a", "1", 100);
  ck_assert_str_eq(run(event_of(&b)), "{\"batchItemFailures\":[]}");
  ck_assert_uint_eq(mm_pipeline_metrics(pl)->decode_errors, 1);
  ck_assert_str_eq(rows("a"), "0=2;");
  ck_assert_int_eq(mm_script_watched_calls(sc), 1);
  mm_buf_free(&b);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("pipeline");
  TCase *tc = tcase_create("semantics");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, example_pipeline_on_sample_event);
  tcase_add_test(tc, skip_is_counted_never_failed);
  tcase_add_test(tc, poison_pill_counted_and_handed_to_callback);
  tcase_add_test(tc, key_fanout_duplicate_keys_merged_once);
  tcase_add_test(tc, windowed_buckets_and_ttl);
  tcase_add_test(tc, murmur_now_pins_the_clock_for_records_without_time);
  tcase_add_test(tc, dedup_second_delivery_is_skipped);
  tcase_add_test(tc, dedup_namespaced_by_pipeline_name);
  tcase_add_test(tc, failed_merge_is_reported_then_redelivery_applies_once);
  tcase_add_test(tc, partial_record_redelivery_merges_only_missing_keys);
  tcase_add_test(tc, failed_dedup_claim_reports_the_record);
  tcase_add_test(tc, transient_failures_are_retried);
  tcase_add_test(tc, permanent_failures_are_not_retried);
  tcase_add_test(tc, unknown_outcome_is_metered_and_retried);
  tcase_add_test(tc, additive_deltas_coalesced);
  tcase_add_test(tc, big_batch_prefetching_decodes_every_record);
  tcase_add_test(tc, coalescing_keys_of_every_length);
  tcase_add_test(tc, coalescing_limits);
  tcase_add_test(tc, coalesced_failure_reports_every_contributor);
  tcase_add_test(tc, deadline_margin_reports_unstarted_records);
  tcase_add_test(tc, deadline_stops_retries);
  tcase_add_test(tc, slow_decode_stopped_at_the_deadline_margin);
  tcase_add_test(tc, runaway_decode_is_poison_under_the_watchdog);
  tcase_add_test(tc, not_json_is_an_invocation_error);
  tcase_add_test(tc, document_switch_out_of_memory_fails_the_invocation);
  tcase_add_test(tc, batch_arena_out_of_memory_loses_nothing);
  tcase_add_test(tc, record_without_ids_is_a_poison_pill);
  tcase_add_test(tc, tumbling_window_state_is_returned);
  tcase_add_test(tc, duplicate_event_ids_in_one_batch_apply_once_with_dedup);
  tcase_add_test(tc, every_fixture_runs);
  tcase_add_test(tc, poison_pills_parked_in_a_file_dlq);
  tcase_add_test(tc, unparkable_poison_pills_are_reported);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return tu_run_suite(suite());
}

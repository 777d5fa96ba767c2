/*
 * check_metrics.c - the EMF line: valid JSON on one line, every referenced
 * name on the root, counters and latencies, dimensions, bounded values.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "retry.h"
#include "util_luajson.h"
#include "testutil.h"

/* Lua: the EMF rules of the specification (runtime-contract section 4),
 * then the expectations passed as a JSON object in the second argument:
 * ns, ts (optional), dims (exact list), root (members and values), nlat
 * (MergeLatency value count, 0 = absent). */
static const char *emf_check =
    "local line, expect = ...\n"
    "local t = cjson.decode(line)\n"
    "local e = cjson.decode(expect)\n"
    "local aws = t._aws\n"
    "if type(aws) ~= 'table' then return 'no _aws object' end\n"
    "if type(aws.Timestamp) ~= 'number' or aws.Timestamp % 1 ~= 0 then return 'Timestamp' end\n"
    "local cwm = aws.CloudWatchMetrics\n"
    "if type(cwm) ~= 'table' or #cwm ~= 1 then return 'want one directive' end\n"
    "local d = cwm[1]\n"
    "if type(d.Namespace) ~= 'string' or #d.Namespace == 0 then return 'Namespace' end\n"
    "if type(d.Dimensions) ~= 'table' or #d.Dimensions ~= 1 then return 'one dimension set' end\n"
    "for _, set in ipairs(d.Dimensions) do\n"
    "  if #set == 0 or #set > 30 then return 'dimension set size '..#set end\n"
    "  for _, name in ipairs(set) do\n"
    "    local v = t[name]\n"
    "    if type(v) ~= 'string' then return 'dimension '..name..' is not a string on the root' end\n"
    "    if #v == 0 or #v > 1024 then return 'dimension '..name..' length '..#v end\n"
    "  end\n"
    "end\n"
    "if type(d.Metrics) ~= 'table' or #d.Metrics == 0 or #d.Metrics > 100 then\n"
    "  return 'Metrics' end\n"
    "local units = {}\n"
    "for _, m in ipairs(d.Metrics) do\n"
    "  local v = t[m.Name]\n"
    "  if type(v) == 'table' then\n"
    "    if #v == 0 or #v > 100 then return m.Name..' has '..#v..' values' end\n"
    "    for _, x in ipairs(v) do if type(x) ~= 'number' then return m.Name..' value' end end\n"
    "  elseif type(v) ~= 'number' then return 'metric '..m.Name..' missing on the root' end\n"
    "  units[m.Name] = m.Unit\n"
    "end\n"
    "-- expectations\n"
    "if d.Namespace ~= e.ns then return 'Namespace '..d.Namespace end\n"
    "if e.ts and aws.Timestamp ~= e.ts then return 'Timestamp '..aws.Timestamp end\n"
    "local set = d.Dimensions[1]\n"
    "if #set ~= #e.dims then return 'dimensions '..table.concat(set, ',') end\n"
    "for i, n in ipairs(e.dims) do\n"
    "  if set[i] ~= n then return 'dimensions '..table.concat(set, ',') end end\n"
    "for k, v in pairs(e.root) do\n"
    "  if t[k] ~= v then return 'root '..k..' = '..tostring(t[k])..', want '..tostring(v) end end\n"
    "local counters = {'Records','Applied','Skipped','DecodeErrors','Retries','DedupSkips',\n"
    "  'DeadLetters','DeadlineSkips','UnknownOutcomes','Merges','Parked','ParkFailures'}\n"
    "for _, c in ipairs(counters) do\n"
    "  if units[c] ~= 'Count' then return c..' unit '..tostring(units[c]) end end\n"
    "local nmetrics = #counters\n"
    "if e.nlat > 0 then\n"
    "  nmetrics = nmetrics + 1\n"
    "  if units.MergeLatency ~= 'Milliseconds' then return 'MergeLatency unit' end\n"
    "  if type(t.MergeLatency) ~= 'table' or #t.MergeLatency ~= e.nlat then\n"
    "    return 'MergeLatency count' end\n"
    "elseif t.MergeLatency ~= nil or units.MergeLatency ~= nil then\n"
    "  return 'MergeLatency present without values' end\n"
    "if #d.Metrics ~= nmetrics then return 'metric count '..#d.Metrics end\n";

/* Emits m into memory and returns the line (caller frees). */
static char *emit(const mm_metrics_t *m, const char *ns, const char *dims_list,
                  const mm_metrics_dims_t *dims, int64_t now) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  ck_assert_ptr_nonnull(f);
  ck_assert_int_eq(mm_metrics_emit(m, f, ns, dims_list, dims, now), 0);
  fclose(f);
  char why[512];
  ck_assert_msg(uj_strict(buf, len, why, sizeof why) == 0, "%s: %s", why, buf);
  return buf;
}

/* Runs emf_check on line with the expectation JSON. */
static void assert_emf(const char *line, const char *expect) {
  const char *args[] = {line, expect};
  char *err = uj_lua(emf_check, args, 2);
  ck_assert_msg(err == NULL, "%s\nline: %s", err, line);
}

static const mm_metrics_dims_t dims3 = {"order_totals", "fn-1", "sum"};

static void setup(void) {
  unsetenv("AWS_LAMBDA_FUNCTION_NAME");
  mm_log_init(stderr);
}

/* ---- the line ------------------------------------------------------------ */

START_TEST(counters_and_latencies) {
  mm_metrics_t m = {0};
  m.records = 10;
  m.applied = 6;
  m.skipped = 1;
  m.decode_errors = 1;
  m.retries = 4;
  m.dedup_skips = 2;
  m.failures = 3;
  m.deadline_skips = 5;
  m.unknown_outcomes = 7;
  m.merges = 12;
  mm_metrics_latency(&m, 1.5);
  mm_metrics_latency(&m, 2);
  mm_metrics_latency(&m, 0.125);
  char *line = emit(&m, NULL, NULL, &dims3, 1764075600123);
  assert_emf(line,
             "{\"ns\":\"murmur\",\"ts\":1764075600123,\"dims\":[\"pipeline\"],\"nlat\":3,"
             "\"root\":{\"pipeline\":\"order_totals\",\"Records\":10,\"Applied\":6,"
             "\"Skipped\":1,\"DecodeErrors\":1,\"Retries\":4,\"DedupSkips\":2,"
             "\"DeadLetters\":3,\"DeadlineSkips\":5,\"UnknownOutcomes\":7,\"Merges\":12}}");
  /* compact, values in recording order, only the configured dimension */
  ck_assert_int_eq(strncmp(line, "{\"_aws\":{\"Timestamp\":1764075600123,", 35), 0);
  ck_assert_ptr_nonnull(strstr(line, ",\"MergeLatency\":[1.5,2,0.125]}\n"));
  ck_assert_ptr_null(strstr(line, "\"function\""));
  ck_assert_ptr_null(strstr(line, ": "));
  free(line);
  mm_metrics_free(&m);
}
END_TEST

START_TEST(no_latency_leaves_the_metric_out) {
  mm_metrics_t m = {0};
  m.records = 1;
  char *line = emit(&m, "ns1", NULL, &dims3, 5);
  assert_emf(line, "{\"ns\":\"ns1\",\"ts\":5,\"dims\":[\"pipeline\"],\"nlat\":0,"
                   "\"root\":{\"Records\":1,\"Merges\":0}}");
  ck_assert_ptr_null(strstr(line, "MergeLatency"));
  free(line);
}
END_TEST

START_TEST(counters_are_exact_integers) {
  mm_metrics_t m = {0};
  m.records = UINT64_MAX;
  m.merges = 9007199254740993ULL; /* 2^53 + 1: not a double */
  char *line = emit(&m, NULL, NULL, NULL, 1);
  ck_assert_ptr_nonnull(strstr(line, "\"Records\":18446744073709551615,"));
  ck_assert_ptr_nonnull(strstr(line, "\"Merges\":9007199254740993"));
  free(line);
}
END_TEST

START_TEST(timestamp_defaults_to_now) {
  mm_metrics_t m = {0};
  int64_t t0 = mm_now_ms();
  char *line = emit(&m, "", NULL, NULL, 0);
  int64_t t1 = mm_now_ms();
  long long ts = 0;
  ck_assert_int_eq(sscanf(line, "{\"_aws\":{\"Timestamp\":%lld,", &ts), 1);
  ck_assert(ts >= t0 && ts <= t1);
  ck_assert_ptr_nonnull(strstr(line, "\"Namespace\":\"murmur\""));
  free(line);
}
END_TEST

START_TEST(one_write_per_line_and_flushed) {
  /* A pipe: the line must be readable without closing the stream. */
  int fds[2];
  ck_assert_int_eq(pipe(fds), 0);
  FILE *w = fdopen(fds[1], "w");
  mm_metrics_t m = {0};
  m.records = 3;
  ck_assert_int_eq(mm_metrics_emit(&m, w, NULL, NULL, &dims3, 9), 0);
  char buf[4096];
  ssize_t r = read(fds[0], buf, sizeof buf);
  ck_assert_int_gt(r, 0);
  char why[256];
  ck_assert_msg(uj_strict(buf, (size_t)r, why, sizeof why) == 0, "%s", why);
  fclose(w);
  close(fds[0]);
}
END_TEST

/* ---- dimensions -------------------------------------------------------------- */

START_TEST(dimensions_as_listed) {
  mm_metrics_t m = {0};
  static const struct { const char *list, *dims, *root; } cases[] = {
      {"pipeline,function,aggregate", "[\"pipeline\",\"function\",\"aggregate\"]",
       "{\"pipeline\":\"order_totals\",\"function\":\"fn-1\",\"aggregate\":\"sum\"}"},
      {"function", "[\"function\"]", "{\"function\":\"fn-1\"}"},
      {" Aggregate , PIPELINE ", "[\"aggregate\",\"pipeline\"]",
       "{\"aggregate\":\"sum\",\"pipeline\":\"order_totals\"}"},
      {"function,function,,pipeline,", "[\"function\",\"pipeline\"]", "{\"function\":\"fn-1\"}"},
      {"", "[\"pipeline\"]", "{\"pipeline\":\"order_totals\"}"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *line = emit(&m, NULL, cases[i].list, &dims3, 1);
    char expect[512];
    snprintf(expect, sizeof expect, "{\"ns\":\"murmur\",\"dims\":%s,\"nlat\":0,\"root\":%s}",
             cases[i].dims, cases[i].root);
    assert_emf(line, expect);
    free(line);
  }
}
END_TEST

START_TEST(unknown_dimensions_ignored_with_one_warning) {
  char *logbuf = NULL;
  size_t loglen = 0;
  FILE *lf = open_memstream(&logbuf, &loglen);
  mm_log_init(lf);
  mm_metrics_t m = {0};
  for (int i = 0; i < 3; i++) { /* same setting three times: one warning */
    char *line = emit(&m, NULL, "function,region,pipeline,Shard", &dims3, 1);
    assert_emf(line, "{\"ns\":\"murmur\",\"dims\":[\"function\",\"pipeline\"],\"nlat\":0,"
                     "\"root\":{\"function\":\"fn-1\",\"pipeline\":\"order_totals\"}}");
    ck_assert_ptr_null(strstr(line, "region"));
    free(line);
  }
  /* nothing usable: the default set */
  char *line = emit(&m, NULL, "table", &dims3, 1);
  assert_emf(line, "{\"ns\":\"murmur\",\"dims\":[\"pipeline\"],\"nlat\":0,"
                   "\"root\":{\"pipeline\":\"order_totals\"}}");
  free(line);
  fflush(lf);
  int warnings = 0;
  for (const char *p = logbuf; (p = strstr(p, "\tWARN\t")) != NULL; p++) warnings++;
  ck_assert_int_eq(warnings, 2);
  ck_assert_ptr_nonnull(strstr(logbuf, "MURMUR_METRICS_DIMENSIONS: ignoring unknown dimension "
                                       "\"region\", \"Shard\" (known: pipeline, function, "
                                       "aggregate)"));
  ck_assert_ptr_nonnull(strstr(logbuf, "unknown dimension \"table\""));
  mm_log_init(stderr);
  fclose(lf);
  free(logbuf);
}
END_TEST

START_TEST(missing_dimension_values) {
  mm_metrics_t m = {0};
  mm_metrics_dims_t none = {NULL, "", NULL};
  char *line = emit(&m, NULL, "pipeline,function,aggregate", &none, 1);
  assert_emf(line, "{\"ns\":\"murmur\",\"dims\":[\"pipeline\",\"function\",\"aggregate\"],"
                   "\"nlat\":0,\"root\":{\"pipeline\":\"unknown\",\"function\":\"local\","
                   "\"aggregate\":\"unknown\"}}");
  free(line);
  setenv("AWS_LAMBDA_FUNCTION_NAME", "orders-agg", 1);
  line = emit(&m, NULL, "function", NULL, 1);
  assert_emf(line, "{\"ns\":\"murmur\",\"dims\":[\"function\"],\"nlat\":0,"
                   "\"root\":{\"function\":\"orders-agg\"}}");
  free(line);
}
END_TEST

START_TEST(dimension_values_escaped_and_cut) {
  mm_metrics_t m = {0};
  char big[1100];
  memset(big, 'a', 1023);
  memcpy(big + 1023, "\xc3\xa9zzz", 6); /* é straddles byte 1024 */
  mm_metrics_dims_t d = {"q\"uote\\\n", big, "sum"};
  char *line = emit(&m, "x", "pipeline,function", &d, 1);
  assert_emf(line, "{\"ns\":\"x\",\"dims\":[\"pipeline\",\"function\"],\"nlat\":0,"
                   "\"root\":{\"pipeline\":\"q\\\"uote\\\\\\n\"}}");
  big[1023] = '\0'; /* cut before the two-byte character */
  char want[1200];
  snprintf(want, sizeof want, "\"function\":\"%s\",", big);
  ck_assert_ptr_nonnull(strstr(line, want));
  free(line);
}
END_TEST

/* ---- latency sampling ---------------------------------------------------------- */

START_TEST(exactly_one_hundred_kept_verbatim) {
  mm_metrics_t m = {0};
  for (int i = 0; i < 100; i++) mm_metrics_latency(&m, i * 0.5);
  ck_assert_uint_eq(m.nlatency, 100);
  char *line = emit(&m, NULL, NULL, NULL, 1);
  assert_emf(line, "{\"ns\":\"murmur\",\"dims\":[\"pipeline\"],\"nlat\":100,\"root\":{}}");
  ck_assert_ptr_nonnull(strstr(line, "\"MergeLatency\":[0,0.5,1,1.5,"));
  ck_assert_ptr_nonnull(strstr(line, ",49,49.5]}"));
  free(line);
  mm_metrics_free(&m);
}
END_TEST

START_TEST(many_latencies_bounded_sample_with_exact_extremes) {
  mm_metrics_t m = {0};
  const int n = 20000;
  /* values i + 0.25 in a scrambled order, so position and value differ */
  for (int k = 0; k < n; k++) {
    int i = (int)(((long long)k * 7919) % n);
    mm_metrics_latency(&m, i + 0.25);
  }
  ck_assert_uint_eq(m.nlatency, MM_METRICS_MAX_VALUES);
  ck_assert_uint_le(m.caplatency, MM_METRICS_MAX_VALUES);
  ck_assert_uint_eq(m.nlatency_seen, (uint64_t)n);
  char *line = emit(&m, NULL, NULL, NULL, 1);
  assert_emf(line, "{\"ns\":\"murmur\",\"dims\":[\"pipeline\"],\"nlat\":100,\"root\":{}}");
  /* every value is one recorded, the exact min and max are among them, and
   * the sample spreads over the range (uniform: mean near n/2) */
  const char *check =
      "local t = cjson.decode((...))\n"
      "local n = tonumber((select(2, ...)))\n"
      "local v, sum, lo, hi, seen = t.MergeLatency, 0, math.huge, -math.huge, {}\n"
      "for _, x in ipairs(v) do\n"
      "  if (x - 0.25) % 1 ~= 0 or x < 0 or x >= n then return 'not recorded: '..x end\n"
      "  if seen[x] then return 'duplicate '..x end\n"
      "  seen[x] = true\n"
      "  sum = sum + x; lo = math.min(lo, x); hi = math.max(hi, x)\n"
      "end\n"
      "if lo ~= 0.25 then return 'min '..lo end\n"
      "if hi ~= n - 0.75 then return 'max '..hi end\n"
      "local mean = sum / #v\n"
      "if mean < n * 0.4 or mean > n * 0.6 then return 'mean '..mean end\n"
      "local low, high = 0, 0\n"
      "for _, x in ipairs(v) do\n"
      "  if x < n / 4 then low = low + 1 elseif x >= n * 3 / 4 then high = high + 1 end end\n"
      "if low < 12 or high < 12 then return 'quartiles '..low..' '..high end\n";
  char nbuf[16];
  snprintf(nbuf, sizeof nbuf, "%d", n);
  const char *args[] = {line, nbuf};
  char *err = uj_lua(check, args, 2);
  ck_assert_msg(err == NULL, "%s", err);
  free(line);

  /* reset keeps the buffer, clears the counts */
  double *buf = m.latency_ms;
  m.records = 4;
  mm_metrics_reset(&m);
  ck_assert_ptr_eq(m.latency_ms, buf);
  ck_assert_uint_eq(m.nlatency, 0);
  ck_assert_uint_eq(m.nlatency_seen, 0);
  ck_assert_uint_eq(m.records, 0);
  mm_metrics_latency(&m, 3);
  line = emit(&m, NULL, NULL, NULL, 1);
  ck_assert_ptr_nonnull(strstr(line, "\"MergeLatency\":[3]}"));
  free(line);
  mm_metrics_free(&m);
  ck_assert_ptr_null(m.latency_ms);
  mm_metrics_free(NULL);
}
END_TEST

START_TEST(sampling_tracks_a_shifted_distribution) {
  /* 100 fast rounds then 900 slow ones: about 90% of the sample is slow,
   * the fast minimum stays in. */
  mm_metrics_t m = {0};
  for (int i = 0; i < 100; i++) mm_metrics_latency(&m, 1 + i * 0.001);
  for (int i = 0; i < 900; i++) mm_metrics_latency(&m, 100 + i * 0.01);
  int slow = 0, has_min = 0;
  char *line = emit(&m, NULL, NULL, NULL, 1);
  const char *p = strstr(line, "\"MergeLatency\":[") + 16;
  for (int i = 0; i < 100; i++) {
    char *end;
    double v = strtod(p, &end);
    ck_assert(end != p);
    slow += v >= 100;
    has_min |= v == 1.0;
    p = end + 1;
  }
  ck_assert_msg(slow >= 80 && slow <= 98, "slow %d", slow);
  ck_assert(has_min);
  free(line);
  mm_metrics_free(&m);
}
END_TEST

START_TEST(bad_latencies_ignored) {
  mm_metrics_t m = {0};
  mm_metrics_latency(&m, -1);
  mm_metrics_latency(&m, NAN);
  mm_metrics_latency(&m, INFINITY);
  ck_assert_uint_eq(m.nlatency, 0);
  ck_assert_uint_eq(m.nlatency_seen, 0);
  mm_metrics_latency(&m, 0);
  ck_assert_uint_eq(m.nlatency, 1);
  mm_metrics_free(&m);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("metrics");
  TCase *tc = tcase_create("line");
  tcase_add_checked_fixture(tc, setup, NULL);
  tcase_add_test(tc, counters_and_latencies);
  tcase_add_test(tc, no_latency_leaves_the_metric_out);
  tcase_add_test(tc, counters_are_exact_integers);
  tcase_add_test(tc, timestamp_defaults_to_now);
  tcase_add_test(tc, one_write_per_line_and_flushed);
  suite_add_tcase(s, tc);
  tc = tcase_create("dimensions");
  tcase_add_checked_fixture(tc, setup, NULL);
  tcase_add_test(tc, dimensions_as_listed);
  tcase_add_test(tc, unknown_dimensions_ignored_with_one_warning);
  tcase_add_test(tc, missing_dimension_values);
  tcase_add_test(tc, dimension_values_escaped_and_cut);
  suite_add_tcase(s, tc);
  tc = tcase_create("latency");
  tcase_add_checked_fixture(tc, setup, NULL);
  tcase_add_test(tc, exactly_one_hundred_kept_verbatim);
  tcase_add_test(tc, many_latencies_bounded_sample_with_exact_extremes);
  tcase_add_test(tc, sampling_tracks_a_shifted_distribution);
  tcase_add_test(tc, bad_latencies_ignored);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return tu_run_suite(suite());
}

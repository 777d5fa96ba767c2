/*
 * check_config.c - settings from the environment: defaults, every variable,
 * and the messages for bad values.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "testutil.h"

/* Every variable mm_config_from_env reads. */
static const char *const vars[] = {
    "MURMUR_STORE",         "MURMUR_DEDUP",         "MURMUR_MAX_ATTEMPTS",
    "MURMUR_RETRY_BASE_MS", "MURMUR_RETRY_MAX_MS",  "MURMUR_NOW",
    "MURMUR_LUA_BUDGET",    "MURMUR_LUA_MEMORY_MB", "MURMUR_DEADLINE_MARGIN_MS",
    "MURMUR_DEDUP_TTL",     "MURMUR_MAX_INFLIGHT",  "MURMUR_MAX_DEPTH",
    "MURMUR_METRICS_NAMESPACE", "MURMUR_METRICS_DIMENSIONS",
};

static void clear_env(void) {
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) unsetenv(vars[i]);
}

/* Loads the config and asserts success. */
static mm_config_t load_ok(void) {
  mm_config_t c;
  mm_err_t e;
  mm_err_clear(&e);
  int rc = mm_config_from_env(&c, &e);
  ck_assert_msg(rc == 0, "unexpected error: %s", e.msg);
  return c;
}

/* Loads the config, asserts MM_EINVAL and that the message contains want. */
static void load_bad(const char *want) {
  mm_config_t c;
  mm_err_t e;
  mm_err_clear(&e);
  int rc = mm_config_from_env(&c, &e);
  ck_assert_int_eq(rc, MM_EINVAL);
  ck_assert_int_eq(e.code, MM_EINVAL);
  ck_assert_msg(strstr(e.msg, want) != NULL, "message \"%s\" lacks \"%s\"", e.msg, want);
}

static void assert_defaults(const mm_config_t *c) {
  ck_assert_ptr_null(c->store_url);
  ck_assert_ptr_null(c->dedup_url);
  ck_assert_int_eq(c->max_attempts, 3);
  ck_assert_int_eq(c->retry_base_ms, 50);
  ck_assert_int_eq(c->retry_max_ms, 5000);
  ck_assert_int_eq(c->has_now, 0);
  ck_assert_int_eq(c->lua_budget, 50000000L);
  ck_assert_int_eq(c->lua_memory_mb, 64);
  ck_assert_int_eq(c->deadline_margin_ms, 200);
  ck_assert_int_eq(c->dedup_ttl_s, 86400);
  ck_assert_int_eq(c->max_inflight, 32);
  ck_assert_int_eq(c->max_depth, 64);
  ck_assert_str_eq(c->metrics_namespace, "murmur");
  ck_assert_ptr_null(c->metrics_dimensions);
}

/* ---- defaults ------------------------------------------------------------ */

START_TEST(defaults_without_environment) {
  mm_config_t d;
  mm_config_defaults(&d);
  assert_defaults(&d);
  mm_config_t c = load_ok();
  assert_defaults(&c);
}
END_TEST

START_TEST(empty_values_mean_default) {
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) setenv(vars[i], "", 1);
  mm_config_t c = load_ok();
  assert_defaults(&c);
}
END_TEST

/* ---- every variable ---------------------------------------------------------- */

START_TEST(every_variable_is_read) {
  setenv("MURMUR_STORE", "sqlite:///tmp/agg.db", 1);
  setenv("MURMUR_DEDUP", "memory://", 1);
  setenv("MURMUR_MAX_ATTEMPTS", "7", 1);
  setenv("MURMUR_RETRY_BASE_MS", "25", 1);
  setenv("MURMUR_RETRY_MAX_MS", "2000", 1);
  setenv("MURMUR_NOW", "1764075600.25", 1);
  setenv("MURMUR_LUA_BUDGET", "1000000", 1);
  setenv("MURMUR_LUA_MEMORY_MB", "128", 1);
  setenv("MURMUR_DEADLINE_MARGIN_MS", "500", 1);
  setenv("MURMUR_DEDUP_TTL", "3600", 1);
  setenv("MURMUR_MAX_INFLIGHT", "8", 1);
  setenv("MURMUR_MAX_DEPTH", "40", 1);
  setenv("MURMUR_METRICS_NAMESPACE", "acme/orders", 1);
  setenv("MURMUR_METRICS_DIMENSIONS", "pipeline,function", 1);
  mm_config_t c = load_ok();
  ck_assert_str_eq(c.store_url, "sqlite:///tmp/agg.db");
  ck_assert_str_eq(c.dedup_url, "memory://");
  ck_assert_int_eq(c.max_attempts, 7);
  ck_assert_int_eq(c.retry_base_ms, 25);
  ck_assert_int_eq(c.retry_max_ms, 2000);
  ck_assert_int_eq(c.has_now, 1);
  ck_assert_double_eq(c.now, 1764075600.25);
  ck_assert_int_eq(c.lua_budget, 1000000L);
  ck_assert_int_eq(c.lua_memory_mb, 128);
  ck_assert_int_eq(c.deadline_margin_ms, 500);
  ck_assert_int_eq(c.dedup_ttl_s, 3600);
  ck_assert_int_eq(c.max_inflight, 8);
  ck_assert_int_eq(c.max_depth, 40);
  ck_assert_str_eq(c.metrics_namespace, "acme/orders");
  ck_assert_str_eq(c.metrics_dimensions, "pipeline,function");
}
END_TEST

START_TEST(range_limits_are_inclusive) {
  setenv("MURMUR_MAX_ATTEMPTS", "1", 1);
  setenv("MURMUR_RETRY_BASE_MS", "0", 1);
  setenv("MURMUR_RETRY_MAX_MS", "900000", 1);
  setenv("MURMUR_LUA_BUDGET", "1000000000000", 1);
  setenv("MURMUR_LUA_MEMORY_MB", "10240", 1);
  setenv("MURMUR_DEADLINE_MARGIN_MS", "0", 1);
  setenv("MURMUR_MAX_INFLIGHT", "512", 1);
  setenv("MURMUR_MAX_DEPTH", "1", 1);
  setenv("MURMUR_NOW", "0", 1);
  mm_config_t c = load_ok();
  ck_assert_int_eq(c.max_attempts, 1);
  ck_assert_int_eq(c.retry_base_ms, 0);
  ck_assert_int_eq(c.retry_max_ms, 900000);
  ck_assert_int_eq(c.lua_budget, 1000000000000L);
  ck_assert_int_eq(c.lua_memory_mb, 10240);
  ck_assert_int_eq(c.deadline_margin_ms, 0);
  ck_assert_int_eq(c.max_inflight, 512);
  ck_assert_int_eq(c.max_depth, 1);
  ck_assert_int_eq(c.has_now, 1);
  ck_assert_double_eq(c.now, 0.0);
  setenv("MURMUR_MAX_ATTEMPTS", "100", 1);
  c = load_ok();
  ck_assert_int_eq(c.max_attempts, 100);
}
END_TEST

START_TEST(surrounding_blanks_are_tolerated) {
  setenv("MURMUR_MAX_ATTEMPTS", " 5\t", 1);
  setenv("MURMUR_DEDUP_TTL", " 2h ", 1);
  setenv("MURMUR_NOW", "\t1700000000\n", 1);
  mm_config_t c = load_ok();
  ck_assert_int_eq(c.max_attempts, 5);
  ck_assert_int_eq(c.dedup_ttl_s, 7200);
  ck_assert_double_eq(c.now, 1700000000.0);
}
END_TEST

START_TEST(dedup_ttl_seconds_or_duration) {
  static const struct { const char *in; int64_t s; } cases[] = {
      {"1", 1},       {"86400", 86400}, {"30s", 30},      {"15m", 900},
      {"1h", 3600},   {"1d", 86400},    {"7d", 604800},   {"366d", 366LL * 86400},
      {"31622400", 31622400},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    setenv("MURMUR_DEDUP_TTL", cases[i].in, 1);
    mm_config_t c = load_ok();
    ck_assert_msg(c.dedup_ttl_s == cases[i].s, "%s -> %lld", cases[i].in,
                  (long long)c.dedup_ttl_s);
  }
}
END_TEST

START_TEST(now_forms) {
  static const struct { const char *in; double v; } cases[] = {
      {"1700000000", 1700000000.0}, {"1700000000.5", 1700000000.5},
      {"1700000000.", 1700000000.0}, {".5", 0.5},
      {"1.7E9", 1.7e9},             {"1.7e+9", 1.7e9},
      {"253402300799", 253402300799.0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    setenv("MURMUR_NOW", cases[i].in, 1);
    mm_config_t c = load_ok();
    ck_assert_int_eq(c.has_now, 1);
    ck_assert_msg(fabs(c.now - cases[i].v) < 1e-6, "%s -> %f", cases[i].in, c.now);
  }
}
END_TEST

START_TEST(namespace_forms) {
  static const char *const good[] = {"murmur", "Acme/Orders-1.2", "a_b#c:d e", "x"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    setenv("MURMUR_METRICS_NAMESPACE", good[i], 1);
    mm_config_t c = load_ok();
    ck_assert_str_eq(c.metrics_namespace, good[i]);
  }
  char longest[256];
  memset(longest, 'n', 255);
  longest[255] = '\0';
  setenv("MURMUR_METRICS_NAMESPACE", longest, 1);
  mm_config_t c = load_ok();
  ck_assert_uint_eq(strlen(c.metrics_namespace), 255);
}
END_TEST

START_TEST(dimensions_are_passed_through) {
  /* Unknown names are metrics.c's business (ignored with a warning). */
  setenv("MURMUR_METRICS_DIMENSIONS", "function, region", 1);
  mm_config_t c = load_ok();
  ck_assert_str_eq(c.metrics_dimensions, "function, region");
}
END_TEST

/* ---- bad values ---------------------------------------------------------------- */

START_TEST(bad_integer_names_variable_and_value) {
  setenv("MURMUR_MAX_ATTEMPTS", "abc", 1);
  load_bad("MURMUR_MAX_ATTEMPTS: expected an integer from 1 to 100, got \"abc\"");
}
END_TEST

START_TEST(bad_integers_are_rejected) {
  static const struct { const char *var, *val, *want; } cases[] = {
      {"MURMUR_MAX_ATTEMPTS", "0", "from 1 to 100, got \"0\""},
      {"MURMUR_MAX_ATTEMPTS", "101", "from 1 to 100, got \"101\""},
      {"MURMUR_MAX_ATTEMPTS", "-1", "got \"-1\""},
      {"MURMUR_MAX_ATTEMPTS", "+3", "got \"+3\""},
      {"MURMUR_MAX_ATTEMPTS", "3.0", "got \"3.0\""},
      {"MURMUR_MAX_ATTEMPTS", "0x3", "got \"0x3\""},
      {"MURMUR_MAX_ATTEMPTS", "3 4", "got \"3 4\""},
      {"MURMUR_MAX_ATTEMPTS", "1e1", "got \"1e1\""},
      {"MURMUR_MAX_ATTEMPTS", "   ", "got \"   \""},
      {"MURMUR_MAX_ATTEMPTS", "99999999999999999999999", "got \"99999999999999999999999\""},
      {"MURMUR_RETRY_BASE_MS", "-5", "MURMUR_RETRY_BASE_MS: expected an integer from 0 to 900000"},
      {"MURMUR_RETRY_MAX_MS", "900001", "MURMUR_RETRY_MAX_MS: expected an integer from 0 to 900000"},
      {"MURMUR_LUA_BUDGET", "999", "MURMUR_LUA_BUDGET: expected an integer from 1000 to 1000000000000"},
      {"MURMUR_LUA_BUDGET", "50M", "got \"50M\""},
      {"MURMUR_LUA_MEMORY_MB", "0", "MURMUR_LUA_MEMORY_MB: expected an integer from 1 to 10240"},
      {"MURMUR_LUA_MEMORY_MB", "64MB", "got \"64MB\""},
      {"MURMUR_DEADLINE_MARGIN_MS", "60001", "MURMUR_DEADLINE_MARGIN_MS: expected an integer from 0 to 60000"},
      {"MURMUR_MAX_INFLIGHT", "0", "MURMUR_MAX_INFLIGHT: expected an integer from 1 to 512"},
      {"MURMUR_MAX_DEPTH", "201", "MURMUR_MAX_DEPTH: expected an integer from 1 to 200"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    clear_env();
    setenv(cases[i].var, cases[i].val, 1);
    load_bad(cases[i].want);
  }
}
END_TEST

START_TEST(bad_dedup_ttl) {
  static const char *const bad[] = {"0", "0s", "1w", "1H", "h", "1.5h", "-1", "367d",
                                    "31622401", "1h30m", "s1", "99999999999999999999d"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    setenv("MURMUR_DEDUP_TTL", bad[i], 1);
    char want[128];
    snprintf(want, sizeof want, "got \"%s\"", bad[i]);
    load_bad("MURMUR_DEDUP_TTL: expected seconds or a duration");
    load_bad(want);
  }
}
END_TEST

START_TEST(bad_now) {
  static const char *const bad[] = {"now", "-1", "inf", "nan", "0x10", "1,5", "1e",
                                    "1700000000000", "253402300800", "1.7e12", "."};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    setenv("MURMUR_NOW", bad[i], 1);
    char want[128];
    snprintf(want, sizeof want, "MURMUR_NOW: expected epoch seconds (a number from 0 to "
                                "253402300799, may be fractional; not milliseconds), got \"%s\"",
             bad[i]);
    load_bad(want);
  }
}
END_TEST

START_TEST(bad_namespace) {
  static const char *const bad[] = {"AWS/Lambda", ":x", "has\"quote", "tab\there", "   ",
                                    "caf\xc3\xa9", "a,b"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    setenv("MURMUR_METRICS_NAMESPACE", bad[i], 1);
    load_bad("MURMUR_METRICS_NAMESPACE: expected a CloudWatch namespace");
  }
  char toolong[257];
  memset(toolong, 'n', 256);
  toolong[256] = '\0';
  setenv("MURMUR_METRICS_NAMESPACE", toolong, 1);
  load_bad("MURMUR_METRICS_NAMESPACE");
}
END_TEST

START_TEST(control_bytes_and_long_values_are_quoted_safely) {
  setenv("MURMUR_MAX_DEPTH", "1\x01\"\\", 1);
  load_bad("got \"1\\x01\\\"\\\\\"");
  char big[300];
  memset(big, '9', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  setenv("MURMUR_MAX_DEPTH", big, 1);
  load_bad("...\"");
}
END_TEST

START_TEST(every_bad_variable_is_reported) {
  setenv("MURMUR_MAX_ATTEMPTS", "x", 1);
  setenv("MURMUR_NOW", "y", 1);
  setenv("MURMUR_RETRY_BASE_MS", "25", 1); /* a good one in between */
  mm_config_t c;
  mm_err_t e;
  mm_err_clear(&e);
  ck_assert_int_eq(mm_config_from_env(&c, &e), MM_EINVAL);
  ck_assert_ptr_nonnull(strstr(e.msg, "MURMUR_MAX_ATTEMPTS: expected an integer from 1 to 100, got \"x\""));
  ck_assert_ptr_nonnull(strstr(e.msg, "; MURMUR_NOW: expected epoch seconds"));
  /* the good value is kept, the bad ones keep their defaults */
  ck_assert_int_eq(c.retry_base_ms, 25);
  ck_assert_int_eq(c.max_attempts, 3);
  ck_assert_int_eq(c.has_now, 0);
  /* a NULL error struct is allowed */
  ck_assert_int_eq(mm_config_from_env(&c, NULL), MM_EINVAL);
}
END_TEST

/* ---- durations --------------------------------------------------------------- */

START_TEST(durations) {
  static const struct { const char *in; int64_t s; } good[] = {
      {"30s", 30}, {"15m", 900}, {"1h", 3600}, {"1d", 86400}, {"7d", 604800},
      {"90m", 5400}, {"001h", 3600}, {"106751991167300d", 106751991167300LL * 86400},
  };
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    int64_t s = -1;
    mm_err_t e;
    mm_err_clear(&e);
    ck_assert_msg(mm_config_duration(good[i].in, &s, &e) == 0, "%s: %s", good[i].in, e.msg);
    ck_assert_int_eq(s, good[i].s);
  }
  static const char *const bad[] = {"", "s", "0s", "30", "30S", "1w", " 1h", "1h ", "1.5h",
                                    "-1h", "+1h", "1hh", "h1", "106751991167301d",
                                    "99999999999999999999s"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int64_t s = -1;
    mm_err_t e;
    mm_err_clear(&e);
    ck_assert_msg(mm_config_duration(bad[i], &s, &e) == MM_EINVAL, "%s accepted", bad[i]);
    ck_assert_int_eq(s, -1);
    ck_assert_ptr_nonnull(strstr(e.msg, "expected a duration such as 30s, 15m, 1h, 1d or 7d"));
  }
  int64_t s;
  ck_assert_int_eq(mm_config_duration(NULL, &s, NULL), MM_EINVAL);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("config");
  TCase *tc = tcase_create("defaults");
  tcase_add_checked_fixture(tc, clear_env, clear_env);
  tcase_add_test(tc, defaults_without_environment);
  tcase_add_test(tc, empty_values_mean_default);
  suite_add_tcase(s, tc);
  tc = tcase_create("variables");
  tcase_add_checked_fixture(tc, clear_env, clear_env);
  tcase_add_test(tc, every_variable_is_read);
  tcase_add_test(tc, range_limits_are_inclusive);
  tcase_add_test(tc, surrounding_blanks_are_tolerated);
  tcase_add_test(tc, dedup_ttl_seconds_or_duration);
  tcase_add_test(tc, now_forms);
  tcase_add_test(tc, namespace_forms);
  tcase_add_test(tc, dimensions_are_passed_through);
  suite_add_tcase(s, tc);
  tc = tcase_create("bad values");
  tcase_add_checked_fixture(tc, clear_env, clear_env);
  tcase_add_test(tc, bad_integer_names_variable_and_value);
  tcase_add_test(tc, bad_integers_are_rejected);
  tcase_add_test(tc, bad_dedup_ttl);
  tcase_add_test(tc, bad_now);
  tcase_add_test(tc, bad_namespace);
  tcase_add_test(tc, control_bytes_and_long_values_are_quoted_safely);
  tcase_add_test(tc, every_bad_variable_is_reported);
  suite_add_tcase(s, tc);
  tc = tcase_create("durations");
  tcase_add_test(tc, durations);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return tu_run_suite(suite());
}

/*
 * check_log.c - log lines: level filter, text and JSON layouts, escaping,
 * one write per line.
 */
#define _GNU_SOURCE /* fopencookie */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "retry.h"
#include "util_luajson.h"
#include "testutil.h"

/* ---- capture helpers ---------------------------------------------------- */

static char *cap_buf;
static size_t cap_len;
static FILE *cap;

/* Starts capturing into memory; mm_log_init reads the environment now. */
static void cap_start(void) {
  cap_buf = NULL;
  cap_len = 0;
  cap = open_memstream(&cap_buf, &cap_len);
  ck_assert_ptr_nonnull(cap);
  mm_log_init(cap);
}

/* Ends the capture; returns the text (owned by the capture, freed by
 * teardown or the next cap_start). */
static const char *cap_end(void) {
  fclose(cap);
  cap = NULL;
  return cap_buf;
}

static void setup(void) {
  unsetenv("AWS_LAMBDA_LOG_LEVEL");
  unsetenv("AWS_LAMBDA_LOG_FORMAT");
  mm_log_set_request(NULL);
  cap_buf = NULL;
}

static void teardown(void) {
  if (cap) fclose(cap);
  cap = NULL;
  free(cap_buf);
  cap_buf = NULL;
  mm_log_init(stderr);
  mm_log_set_request(NULL);
}

static int count_lines(const char *s) {
  int n = 0;
  for (; *s; s++) n += *s == '\n';
  return n;
}

/* Logs one line at every level. */
static void log_each_level(void) {
  for (int lv = MM_LOG_TRACE; lv <= MM_LOG_FATAL; lv++)
    mm_log((mm_log_level_t)lv, NULL, "level %d", lv);
}

/* ---- level filter ------------------------------------------------------ */

START_TEST(default_level_is_info) {
  cap_start();
  log_each_level();
  const char *out = cap_end();
  ck_assert_int_eq(count_lines(out), 4);
  ck_assert_ptr_null(strstr(out, "level 0"));
  ck_assert_ptr_null(strstr(out, "level 1"));
  ck_assert_ptr_nonnull(strstr(out, "\tINFO\tlevel 2\n"));
  ck_assert_ptr_nonnull(strstr(out, "\tFATAL\tlevel 5\n"));
}
END_TEST

START_TEST(level_from_environment_any_case) {
  static const struct { const char *env; int lines; } cases[] = {
      {"TRACE", 6}, {"debug", 5}, {"Info", 4}, {"WARN", 3},   {"warning", 3},
      {"error", 2}, {"FATAL", 1}, {"verbose", 4}, {"", 4},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    setenv("AWS_LAMBDA_LOG_LEVEL", cases[i].env, 1);
    free(cap_buf);
    cap_start();
    log_each_level();
    const char *out = cap_end();
    ck_assert_msg(count_lines(out) == cases[i].lines, "%s: %d lines", cases[i].env,
                  count_lines(out));
  }
}
END_TEST

START_TEST(enabled_and_set_level) {
  setenv("AWS_LAMBDA_LOG_LEVEL", "ERROR", 1);
  cap_start();
  ck_assert(!mm_log_enabled(MM_LOG_WARN));
  ck_assert(mm_log_enabled(MM_LOG_ERROR));
  mm_log_set_level(MM_LOG_DEBUG);
  ck_assert(mm_log_enabled(MM_LOG_DEBUG));
  ck_assert(!mm_log_enabled(MM_LOG_TRACE));
  MM_DEBUG("now visible");
  mm_log(MM_LOG_TRACE, NULL, "still hidden");
  const char *out = cap_end();
  ck_assert_int_eq(count_lines(out), 1);
  ck_assert_ptr_nonnull(strstr(out, "\tDEBUG\tnow visible\n"));
}
END_TEST

/* ---- text layout ---------------------------------------------------------- */

/* Checks "YYYY-MM-DDTHH:MM:SS.mmmZ" at s and that it lies within
 * [lo_ms, hi_ms]. */
static void check_timestamp(const char *s, int64_t lo_ms, int64_t hi_ms) {
  int Y, M, D, h, m, sec, ms, used = 0;
  ck_assert_msg(sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ%n", &Y, &M, &D, &h, &m, &sec, &ms,
                       &used) == 7 && used == 24,
                "bad timestamp: %.30s", s);
  for (int i = 0; i < 24; i++) {
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    if (shape[i] == 'd') ck_assert(s[i] >= '0' && s[i] <= '9');
    else ck_assert_int_eq(s[i], shape[i]);
  }
  struct tm tm = {0};
  tm.tm_year = Y - 1900;
  tm.tm_mon = M - 1;
  tm.tm_mday = D;
  tm.tm_hour = h;
  tm.tm_min = m;
  tm.tm_sec = sec;
  int64_t t = (int64_t)timegm(&tm) * 1000 + ms;
  ck_assert_msg(t >= lo_ms && t <= hi_ms, "timestamp %lld outside [%lld, %lld]",
                (long long)t, (long long)lo_ms, (long long)hi_ms);
}

START_TEST(text_layout_with_and_without_request_id) {
  cap_start();
  int64_t t0 = mm_now_ms();
  MM_INFO("init done in %d ms", 12);
  mm_log_set_request("8476a536-e9f4-11e8-9739-2dfe598c3fcd");
  MM_WARN("slow merge");
  mm_log(MM_LOG_ERROR, "c4ca4238a0b923820dcc509a6f75849b", "decode failed: %s", "boom");
  mm_log_set_request(NULL);
  MM_ERROR("after");
  int64_t t1 = mm_now_ms();
  const char *out = cap_end();
  ck_assert_int_eq(count_lines(out), 4);

  const char *l = out;
  check_timestamp(l, t0, t1);
  ck_assert_int_eq(strncmp(l + 24, "\tINFO\tinit done in 12 ms\n", 25), 0);
  l = strchr(l, '\n') + 1;
  check_timestamp(l, t0, t1);
  ck_assert_int_eq(
      strncmp(l + 24, "\tWARN\t8476a536-e9f4-11e8-9739-2dfe598c3fcd\tslow merge\n", 54), 0);
  l = strchr(l, '\n') + 1;
  const char *want =
      "\tERROR\t8476a536-e9f4-11e8-9739-2dfe598c3fcd\t[eventID=c4ca4238a0b923820dcc509a6f75849b]"
      " decode failed: boom\n";
  ck_assert_int_eq(strncmp(l + 24, want, strlen(want)), 0);
  l = strchr(l, '\n') + 1;
  ck_assert_int_eq(strcmp(l + 24, "\tERROR\tafter\n"), 0);
}
END_TEST

START_TEST(text_escapes_control_characters) {
  cap_start();
  mm_log(MM_LOG_INFO, "id\nx", "a\nb\tc\x01" "d\"e\\f\x7fg\rh");
  const char *out = cap_end();
  ck_assert_int_eq(count_lines(out), 1);
  ck_assert_str_eq(out + 24, "\tINFO\t[eventID=id\\nx] a\\nb\\tc\\u0001d\"e\\f\\u007fg\\rh\n");
}
END_TEST

START_TEST(format_any_case_and_text_otherwise) {
  static const struct { const char *env; int json; } cases[] = {
      {"JSON", 1}, {"json", 1}, {"Text", 0}, {"xml", 0}, {"", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    setenv("AWS_LAMBDA_LOG_FORMAT", cases[i].env, 1);
    free(cap_buf);
    cap_start();
    MM_INFO("x");
    const char *out = cap_end();
    ck_assert_msg((out[0] == '{') == cases[i].json, "%s: %s", cases[i].env, out);
  }
  /* the override */
  free(cap_buf);
  cap_start();
  mm_log_set_json(1);
  MM_INFO("x");
  ck_assert_int_eq(cap_end()[0], '{');
}
END_TEST

/* ---- JSON layout ----------------------------------------------------------- */

/* Lua: decodes the line, checks the member set and values. Arguments:
 * line, level, message, requestId or "", eventID or "". */
static const char *json_check =
    "local line, level, msg, rid, eid = ...\n"
    "local t = cjson.decode(line)\n"
    "if type(t) ~= 'table' then return 'not an object' end\n"
    "local want = {timestamp=true, level=true, message=true}\n"
    "if rid ~= '' then want.requestId = true end\n"
    "if eid ~= '' then want.eventID = true end\n"
    "for k in pairs(t) do if not want[k] then return 'unexpected member '..k end end\n"
    "for k in pairs(want) do if t[k] == nil then return 'missing member '..k end end\n"
    "for k, v in pairs(t) do if type(v) ~= 'string' then return k..' not a string' end end\n"
    "if t.level ~= level then return 'level '..t.level end\n"
    "if t.message ~= msg then return 'message '..string.format('%q', t.message) end\n"
    "if rid ~= '' and t.requestId ~= rid then return 'requestId '..t.requestId end\n"
    "if eid ~= '' and t.eventID ~= eid then return 'eventID '..t.eventID end\n"
    "if not t.timestamp:match('^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$') then\n"
    "  return 'timestamp '..t.timestamp end\n";

/* Splits out line i (0-based) of s into a malloc'd string with its "\n". */
static char *line_at(const char *s, int i) {
  for (; i > 0; i--) s = strchr(s, '\n') + 1;
  const char *e = strchr(s, '\n');
  ck_assert_ptr_nonnull(e);
  return strndup(s, (size_t)(e - s + 1));
}

static void assert_json_line(const char *line, const char *level, const char *msg,
                             const char *rid, const char *eid) {
  char why[512];
  ck_assert_msg(uj_strict(line, strlen(line), why, sizeof why) == 0, "%s: %s", why, line);
  const char *args[] = {line, level, msg, rid, eid};
  char *err = uj_lua(json_check, args, 5);
  ck_assert_msg(err == NULL, "%s in %s", err, line);
}

START_TEST(json_layout_and_members) {
  setenv("AWS_LAMBDA_LOG_FORMAT", "JSON", 1);
  cap_start();
  int64_t t0 = mm_now_ms();
  MM_INFO("started %s", "ok");
  mm_log_set_request("req-1");
  mm_log(MM_LOG_ERROR, "ev-9", "bad record");
  mm_log_set_request(NULL);
  MM_WARN("done");
  int64_t t1 = mm_now_ms();
  const char *out = cap_end();
  ck_assert_int_eq(count_lines(out), 3);
  char *l0 = line_at(out, 0), *l1 = line_at(out, 1), *l2 = line_at(out, 2);
  assert_json_line(l0, "INFO", "started ok", "", "");
  assert_json_line(l1, "ERROR", "bad record", "req-1", "ev-9");
  assert_json_line(l2, "WARN", "done", "", "");
  /* the timestamp is the first member; its value is the current time */
  ck_assert_int_eq(strncmp(l0, "{\"timestamp\":\"", 14), 0);
  check_timestamp(l0 + 14, t0, t1);
  free(l0);
  free(l1);
  free(l2);
}
END_TEST

START_TEST(json_escapes_quotes_controls_and_bad_utf8) {
  setenv("AWS_LAMBDA_LOG_FORMAT", "JSON", 1);
  cap_start();
  mm_log_set_request("r\"1");
  mm_log(MM_LOG_INFO, "e\\2", "q\"b\\n\nt\tc\x01\x1f del\x7f caf\xc3\xa9 bad\xff end");
  const char *out = cap_end();
  ck_assert_int_eq(count_lines(out), 1);
  /* raw control characters never reach the line */
  for (const char *p = out; *p != '\n'; p++) ck_assert((unsigned char)*p >= 0x20);
  ck_assert_ptr_nonnull(strstr(out, "\\u0001"));
  ck_assert_ptr_nonnull(strstr(out, "\\u001f"));
  assert_json_line(out, "INFO",
                   "q\"b\\n\nt\tc\x01\x1f del\x7f caf\xc3\xa9 bad\xef\xbf\xbd end", "r\"1",
                   "e\\2");
}
END_TEST

START_TEST(long_messages_are_cut_with_a_mark) {
  size_t n = MM_LOG_MAX_MESSAGE + 5000;
  char *big = malloc(n + 1);
  memset(big, 'x', n);
  big[n] = '\0';
  setenv("AWS_LAMBDA_LOG_FORMAT", "JSON", 1);
  cap_start();
  MM_INFO("%s", big);
  MM_INFO("%.600s", big); /* above the 512-byte stack buffer, below the cut */
  const char *out = cap_end();
  ck_assert_int_eq(count_lines(out), 2);
  char *l0 = line_at(out, 0), *l1 = line_at(out, 1);
  big[MM_LOG_MAX_MESSAGE - 3] = '\0';
  char *want = malloc(MM_LOG_MAX_MESSAGE + 1);
  snprintf(want, MM_LOG_MAX_MESSAGE + 1, "%s...", big);
  assert_json_line(l0, "INFO", want, "", "");
  big[600] = '\0';
  assert_json_line(l1, "INFO", big, "", "");
  free(want);
  free(l0);
  free(l1);
  free(big);
}
END_TEST

START_TEST(long_request_id_is_truncated) {
  char rid[400];
  memset(rid, 'r', sizeof rid - 1);
  rid[sizeof rid - 1] = '\0';
  cap_start();
  mm_log_set_request(rid);
  MM_INFO("m");
  const char *out = cap_end();
  const char *f = out + 24 + strlen("\tINFO\t");
  ck_assert_int_eq((int)(strchr(f, '\t') - f), MM_LOG_MAX_REQUEST_ID - 1);
}
END_TEST

/* ---- one write per line ----------------------------------------------------------- */

static int writes;
static char wrote[1 << 18];
static size_t nwrote;

/* Cookie write function: counts calls and checks each carries whole lines. */
static ssize_t count_write(void *c, const char *buf, size_t size) {
  (void)c;
  writes++;
  if (nwrote + size < sizeof wrote) {
    memcpy(wrote + nwrote, buf, size);
    nwrote += size;
  }
  return (ssize_t)size;
}

START_TEST(one_write_per_line_unbuffered_stream) {
  /* like stderr: an unbuffered stream without a usable descriptor */
  cookie_io_functions_t io = {NULL, count_write, NULL, NULL};
  FILE *f = fopencookie(NULL, "w", io);
  ck_assert_ptr_nonnull(f);
  setvbuf(f, NULL, _IONBF, 0);
  writes = 0;
  nwrote = 0;
  mm_log_init(f);
  char mid[20000];
  memset(mid, 'm', sizeof mid - 1);
  mid[sizeof mid - 1] = '\0';
  for (int json = 0; json < 2; json++) {
    mm_log_set_json(json);
    MM_INFO("short");
    MM_WARN("%s", mid);
    mm_log(MM_LOG_ERROR, "e", "x\ny");
  }
  ck_assert_int_eq(writes, 6);
  wrote[nwrote] = '\0';
  ck_assert_int_eq(count_lines(wrote), 6);
  mm_log_init(stderr);
  fclose(f);
}
END_TEST

START_TEST(one_write_per_line_on_a_descriptor) {
  /* A SOCK_SEQPACKET pair keeps write boundaries: each recv is one write.
   * The stream is fully buffered, so stdio alone would split long lines. */
  int sv[2];
  ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
  FILE *f = fdopen(sv[0], "w");
  ck_assert_ptr_nonnull(f);
  mm_log_init(f);
  mm_log_set_json(1);
  char mid[30000];
  memset(mid, 'm', sizeof mid - 1);
  mid[sizeof mid - 1] = '\0';
  MM_INFO("one");
  MM_INFO("%s", mid);
  MM_INFO("three");
  mm_log_init(stderr);
  fclose(f);
  static char pkt[65536];
  size_t sizes[3];
  for (int i = 0; i < 3; i++) {
    ssize_t r = recv(sv[1], pkt, sizeof pkt, 0);
    ck_assert_int_gt(r, 0);
    sizes[i] = (size_t)r;
    ck_assert_int_eq(pkt[r - 1], '\n');
    char why[256];
    ck_assert_msg(uj_strict(pkt, (size_t)r, why, sizeof why) == 0, "%s", why);
  }
  ck_assert_uint_gt(sizes[1], sizeof mid);
  ck_assert_int_eq(recv(sv[1], pkt, sizeof pkt, MSG_DONTWAIT), 0); /* peer closed */
  close(sv[1]);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("log");
  TCase *tc = tcase_create("levels");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, default_level_is_info);
  tcase_add_test(tc, level_from_environment_any_case);
  tcase_add_test(tc, enabled_and_set_level);
  suite_add_tcase(s, tc);
  tc = tcase_create("text");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, text_layout_with_and_without_request_id);
  tcase_add_test(tc, text_escapes_control_characters);
  tcase_add_test(tc, format_any_case_and_text_otherwise);
  tcase_add_test(tc, long_request_id_is_truncated);
  suite_add_tcase(s, tc);
  tc = tcase_create("json");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, json_layout_and_members);
  tcase_add_test(tc, json_escapes_quotes_controls_and_bad_utf8);
  tcase_add_test(tc, long_messages_are_cut_with_a_mark);
  suite_add_tcase(s, tc);
  tc = tcase_create("writes");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, one_write_per_line_unbuffered_stream);
  tcase_add_test(tc, one_write_per_line_on_a_descriptor);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return tu_run_suite(suite());
}

/*
 * check_script.c - the Lua host (runtime/script.c): loading and validating
 * decode.lua, the sandbox, the instruction budget and heap ceiling, and the
 * conversion of decode/keys/value results into outcomes.
 *
 * Every test writes its decode.lua into a fresh directory (so messages read
 * "decode.lua:LINE: ..."), builds its records from a small inline event
 * parsed with mm_json_parse, and asserts that each public call leaves the
 * Lua stack as it found it.
 */
#include <check.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "json.h"
#include "log.h"
#include "retry.h"
#include "script.h"
#include "testutil.h"

/* ------------------------------------------------------------------ */
/* Fixture                                                              */
/* ------------------------------------------------------------------ */

#define MAX_RECS 16

static char *dir;               /* this test's script directory */
static char path[1024];         /* dir/decode.lua */
static mm_script_t *S;
static char *ev_text;
static mm_json_doc_t ev_doc;
static uint32_t recs[MAX_RECS];
static int nrecs;
static FILE *logf_;             /* captured log lines */

static void setup(void) {
  dir = tu_temp_dir();
  snprintf(path, sizeof path, "%s/decode.lua", dir);
  S = NULL;
  ev_text = NULL;
  memset(&ev_doc, 0, sizeof ev_doc);
  nrecs = 0;
  logf_ = tmpfile();
  ck_assert(logf_ != NULL);
  mm_log_init(logf_);
  mm_log_set_level(MM_LOG_DEBUG);
}

static void teardown(void) {
  if (S) {
    mm_script_set_doc(S, NULL);
    mm_script_destroy(S);
  }
  mm_json_free(&ev_doc);
  free(ev_text);
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  ck_assert_int_eq(system(cmd), 0);
  free(dir);
  mm_log_init(NULL);
  fclose(logf_);
}

/* Everything logged so far (static buffer). */
static const char *logged(void) {
  static char buf[65536];
  fflush(logf_);
  long n = ftell(logf_);
  if (n < 0) n = 0;
  if (n > (long)sizeof buf - 1) n = (long)sizeof buf - 1;
  rewind(logf_);
  size_t r = fread(buf, 1, (size_t)n, logf_);
  buf[r] = '\0';
  fseek(logf_, 0, SEEK_END);
  return buf;
}

static void write_file(const char *name, const char *text) {
  char p[1200];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "w");
  ck_assert(f != NULL);
  fputs(text, f);
  fclose(f);
}

static mm_script_opts_t opts(void) {
  mm_script_opts_t o = {.budget = 200000,
                        .mem_limit = (size_t)MM_DEF_LUA_MEMORY_MB * 1024 * 1024,
                        .lua_dir = MM_SOURCE_LUA_DIR,
                        .max_depth = MM_DEF_MAX_DEPTH};
  return o;
}

/* Writes decode.lua and loads it with o; returns load's code. */
static int load_with(const char *src, const mm_script_opts_t *o, mm_err_t *err) {
  write_file("decode.lua", src);
  mm_err_clear(err);
  int rc = mm_script_load(&S, path, o, err);
  if (rc) ck_assert_ptr_null(S);
  return rc;
}

/* Loads src and asserts it worked. */
static void load_ok_with(const char *src, const mm_script_opts_t *o) {
  mm_err_t err;
  int rc = load_with(src, o, &err);
  ck_assert_msg(rc == 0, "load failed: %s", err.msg);
  ck_assert_int_eq(lua_gettop(mm_script_state(S)), 0);
}

static void load_ok(const char *src) {
  mm_script_opts_t o = opts();
  load_ok_with(src, &o);
}

/* Loads src expecting failure; returns the code, message in err. */
static int load_fail(const char *src, mm_err_t *err) {
  mm_script_opts_t o = opts();
  int rc = load_with(src, &o, err);
  ck_assert_msg(rc != 0, "load of a bad script succeeded");
  return rc;
}

/* Appends one record (eventName, NewImage members as AttributeValue JSON)
 * to buf, comma-separated. */
static void add_record(char *buf, size_t cap, const char *name, const char *image) {
  size_t n = strlen(buf);
  snprintf(buf + n, cap - n,
           "%s{\"eventID\":\"id%d\",\"eventName\":\"%s\",\"eventSource\":\"aws:dynamodb\","
           "\"dynamodb\":{\"ApproximateCreationDateTime\":1700000000,"
           "\"Keys\":{\"id\":{\"S\":\"k%d\"}},\"NewImage\":{%s},"
           "\"SequenceNumber\":\"1000000000000000000%02d\",\"SizeBytes\":10,"
           "\"StreamViewType\":\"NEW_IMAGE\"}}",
           n ? "," : "", nrecs, name, nrecs, image, nrecs);
  nrecs++;
}

/* Parses {"Records":[records]} and makes it S's document. */
static void use_event(const char *records) {
  size_t cap = strlen(records) + 32;
  ev_text = malloc(cap);
  ck_assert(ev_text != NULL);
  snprintf(ev_text, cap, "{\"Records\":[%s]}", records);
  mm_err_t err;
  ck_assert_msg(mm_json_parse(&ev_doc, ev_text, strlen(ev_text), 0, &err) == 0, "%s",
                err.msg);
  uint32_t arr = mm_json_get(&ev_doc, 0, "Records", 7);
  ck_assert_uint_ne(arr, 0);
  uint32_t c = mm_json_first(&ev_doc, arr);
  for (uint32_t i = 0; i < mm_json_len(&ev_doc, arr) && i < MAX_RECS; i++) {
    recs[i] = c;
    c = mm_json_next(&ev_doc, c);
  }
  lua_State *L = mm_script_state(S);
  int top = lua_gettop(L);
  mm_script_set_doc(S, &ev_doc);
  ck_assert_int_eq(lua_gettop(L), top);
}

/* An event of records named by `names` (comma separated), all with the
 * same NewImage. */
static void event(const char *names, const char *image) {
  static char buf[16384];
  char copy[512];
  buf[0] = '\0';
  nrecs = 0;
  snprintf(copy, sizeof copy, "%s", names);
  for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ","))
    add_record(buf, sizeof buf, tok, image);
  use_event(buf);
}

/* Runs record i, asserting the stack is unchanged. */
static void run(int i, mm_outcome_t *out) {
  lua_State *L = mm_script_state(S);
  int top = lua_gettop(L);
  int rc = mm_script_run_record(S, recs[i], 1700000000.5, out);
  ck_assert_int_eq(rc, 0);
  ck_assert_int_eq(lua_gettop(L), top);
}

/* Runs record i and asserts a poison outcome whose message contains want. */
static void run_poison(int i, const char *want, mm_outcome_t *out) {
  run(i, out);
  ck_assert_msg(out->kind == MM_OUT_POISON, "expected poison (%s), got kind %d", want,
                out->kind);
  ck_assert_msg(strstr(out->err.msg, want) != NULL, "message \"%s\" lacks \"%s\"",
                out->err.msg, want);
}

/* Runs record i and asserts a value outcome. */
static void run_value(int i, mm_outcome_t *out) {
  run(i, out);
  ck_assert_msg(out->kind == MM_OUT_VALUE, "expected a value, got kind %d: %s", out->kind,
                out->err.msg);
}

/* Runs records 0..n-1, asserting a value outcome for each. */
static void run_values(int n) {
  mm_outcome_t out;
  for (int i = 0; i < n; i++) {
    run_value(i, &out);
    mm_outcome_free(&out);
  }
}

/* Evaluates Lua code inside the script's state (test code, not sandboxed
 * itself, but it sees the sandbox's globals); returns the first result as
 * a boolean. */
static int eval(const char *code) {
  lua_State *L = mm_script_state(S);
  int top = lua_gettop(L);
  ck_assert_int_eq(luaL_loadstring(L, code), LUA_OK);
  int st = lua_pcall(L, 0, 1, 0);
  ck_assert_msg(st == LUA_OK, "eval failed: %s", lua_tostring(L, -1));
  int r = lua_toboolean(L, -1);
  lua_settop(L, top);
  return r;
}

/* Text of a delta's number. */
static const char *num_text(const mm_dec_t *d) {
  static char buf[MM_DEC_TEXT_MAX];
  mm_dec_format(d, buf);
  return buf;
}

/* A plain pipeline around a decode body and key/value lines. */
#define PIPE(agg, decode_body, rest)                                           \
  "return {\n"                                                                 \
  "  aggregate = \"" agg "\",\n"                                               \
  "  decode = function(rec)\n" decode_body "\n  end,\n" rest "\n}\n"

/* ------------------------------------------------------------------ */
/* Loading                                                              */
/* ------------------------------------------------------------------ */

START_TEST(load_minimal_defines_pipeline) {
  load_ok("return { aggregate = 'count', decode = function(r) return r end,\n"
          "  key = function(v) return 'k' end }\n");
  const mm_def_t *d = mm_script_def(S);
  ck_assert_str_eq(d->name, "decode");
  ck_assert_int_eq(d->agg, MM_AGG_COUNT);
  ck_assert_int_eq(d->has_keys, 0);
  ck_assert_int_eq(d->has_value, 0);
  ck_assert_int_eq(d->windowed, 0);
  ck_assert_int_eq(d->has_on_decode_error, 0);
}
END_TEST

START_TEST(load_full_definition) {
  load_ok("return { name = 'orders.v2-x', aggregate = 'max',\n"
          "  window = { granularity = '1h', retention = '30d' },\n"
          "  decode = function(r) return r end,\n"
          "  keys = function(v) return {'a'} end,\n"
          "  value = function(v) return 1 end,\n"
          "  on_decode_error = function(r, e) end }\n");
  const mm_def_t *d = mm_script_def(S);
  ck_assert_str_eq(d->name, "orders.v2-x");
  ck_assert_int_eq(d->agg, MM_AGG_MAX);
  ck_assert_int_eq(d->has_keys, 1);
  ck_assert_int_eq(d->has_value, 1);
  ck_assert_int_eq(d->windowed, 1);
  ck_assert_int_eq(d->granularity_s, 3600);
  ck_assert_int_eq(d->retention_s, 30 * 86400);
  ck_assert_int_eq(d->has_on_decode_error, 1);
}
END_TEST

START_TEST(load_window_retention_defaults_to_granularity) {
  load_ok("return { aggregate = 'count', window = { granularity = '15m' },\n"
          "  decode = function(r) return r end, key = function(v) return 'k' end }\n");
  ck_assert_int_eq(mm_script_def(S)->granularity_s, 900);
  ck_assert_int_eq(mm_script_def(S)->retention_s, 900);
}
END_TEST

START_TEST(load_syntax_error_has_line) {
  mm_err_t err;
  int rc = load_fail("return {\n  decode = function(r)\n    retrun r\n  end }\n", &err);
  ck_assert_int_eq(rc, MM_ELUA);
  ck_assert_msg(strncmp(err.msg, "decode.lua:3:", 13) == 0, "%s", err.msg);
  ck_assert_str_eq(err.chunk, "decode.lua");
  ck_assert_int_eq(err.line, 3);
}
END_TEST

START_TEST(load_missing_file) {
  mm_err_t err;
  mm_script_opts_t o = opts();
  char p[1200];
  snprintf(p, sizeof p, "%s/nope.lua", dir);
  int rc = mm_script_load(&S, p, &o, &err);
  ck_assert_int_eq(rc, MM_EIO);
  ck_assert_ptr_null(S);
  ck_assert_msg(strstr(err.msg, p) != NULL, "%s", err.msg);
}
END_TEST

START_TEST(load_chunk_not_returning_table) {
  mm_err_t err;
  int rc = load_fail("local x = 1\nreturn 42\n", &err);
  ck_assert_int_eq(rc, MM_EINVAL);
  ck_assert_msg(strstr(err.msg, "decode.lua: the script must return the pipeline table") &&
                    strstr(err.msg, "got number"),
                "%s", err.msg);
}
END_TEST

START_TEST(load_empty_file_is_no_table) {
  mm_err_t err;
  int rc = load_fail("", &err);
  ck_assert_int_eq(rc, MM_EINVAL);
  ck_assert_msg(strstr(err.msg, "the script must return the pipeline table") &&
                    strstr(err.msg, "got nil"),
                "%s", err.msg);
}
END_TEST

START_TEST(load_file_larger_than_a_read_chunk) {
  /* the reader grows its buffer: a script of ~40 KB (comments first)
   * loads whole, so its last line's pipeline table is seen */
  static char text[48 * 1024];
  size_t n = 0;
  while (n < 40 * 1024) n += (size_t)snprintf(text + n, sizeof text - n, "-- padding %zu\n", n);
  snprintf(text + n, sizeof text - n,
           "return { name = 'big', aggregate = 'count', decode = function(r) return r end,\n"
           "  key = function(v) return 'k' end }\n");
  load_ok(text);
  ck_assert_str_eq(mm_script_def(S)->name, "big");
}
END_TEST

START_TEST(load_top_level_error_has_line) {
  mm_err_t err;
  int rc = load_fail("local x = 1\nerror('no config')\n", &err);
  ck_assert_int_eq(rc, MM_ELUA);
  ck_assert_msg(strncmp(err.msg, "decode.lua:2: no config", 23) == 0, "%s", err.msg);
  ck_assert_int_eq(err.line, 2);
}
END_TEST

START_TEST(load_top_level_budget) {
  mm_err_t err;
  int rc = load_fail("while true do end\n", &err);
  ck_assert_int_eq(rc, MM_ELIMIT);
  ck_assert_msg(strstr(err.msg, "instruction budget of 200000 exceeded"), "%s", err.msg);
}
END_TEST

START_TEST(load_missing_decode) {
  mm_err_t err;
  ck_assert_int_eq(load_fail("return { aggregate = 'count', key = function(v) return 1 end }",
                             &err),
                   MM_EINVAL);
  ck_assert_msg(strstr(err.msg, "decode.lua: pipeline field 'decode' is missing"), "%s",
                err.msg);
}
END_TEST

START_TEST(load_decode_not_function) {
  mm_err_t err;
  load_fail("return { aggregate = 'count', decode = 'x', key = function(v) return 1 end }",
            &err);
  ck_assert_msg(strstr(err.msg, "pipeline field 'decode' must be a function, got string"),
                "%s", err.msg);
}
END_TEST

START_TEST(load_missing_key_and_keys) {
  mm_err_t err;
  load_fail("return { aggregate = 'count', decode = function(r) end }", &err);
  ck_assert_msg(strstr(err.msg, "pipeline field 'key' or 'keys' is missing"), "%s", err.msg);
}
END_TEST

START_TEST(load_key_and_keys_both) {
  mm_err_t err;
  load_fail("return { aggregate = 'count', decode = function(r) end,\n"
            "  key = function(v) end, keys = function(v) end }",
            &err);
  ck_assert_msg(strstr(err.msg, "'key' and 'keys' are both defined"), "%s", err.msg);
}
END_TEST

START_TEST(load_key_not_function) {
  mm_err_t err;
  load_fail("return { aggregate = 'count', decode = function(r) end, keys = {'a'} }", &err);
  ck_assert_msg(strstr(err.msg, "pipeline field 'keys' must be a function, got table"), "%s",
                err.msg);
}
END_TEST

START_TEST(load_aggregate_unknown) {
  mm_err_t err;
  load_fail("return { aggregate = 'avg', decode = function(r) end,\n"
            "  key = function(v) end, value = function(v) end }",
            &err);
  ck_assert_str_eq(err.msg, "decode.lua: pipeline field 'aggregate' must be one of sum, "
                            "count, min, max, first, last, set, hll, topk (got \"avg\")");
}
END_TEST

START_TEST(load_aggregate_missing) {
  mm_err_t err;
  load_fail("return { decode = function(r) end, key = function(v) end }", &err);
  ck_assert_msg(strstr(err.msg, "pipeline field 'aggregate' is missing"), "%s", err.msg);
}
END_TEST

START_TEST(load_aggregate_not_string) {
  mm_err_t err;
  load_fail("return { aggregate = 3, decode = function(r) end, key = function(v) end }",
            &err);
  ck_assert_msg(strstr(err.msg, "pipeline field 'aggregate' must be one of") &&
                    strstr(err.msg, "number"),
                "%s", err.msg);
}
END_TEST

START_TEST(load_value_missing_for_sum) {
  mm_err_t err;
  load_fail("return { aggregate = 'sum', decode = function(r) end, key = function(v) end }",
            &err);
  ck_assert_msg(strstr(err.msg, "pipeline field 'value' is missing (aggregate 'sum'"), "%s",
                err.msg);
}
END_TEST

START_TEST(load_value_not_function) {
  mm_err_t err;
  load_fail("return { aggregate = 'min', decode = function(r) end, key = function(v) end,\n"
            "  value = 3 }",
            &err);
  ck_assert_msg(strstr(err.msg, "pipeline field 'value' must be a function, got number"),
                "%s", err.msg);
}
END_TEST

START_TEST(load_window_bad_duration) {
  mm_err_t err;
  load_fail("return { aggregate = 'count', decode = function(r) end, key = function(v) end,\n"
            "  window = { granularity = '1 hour' } }",
            &err);
  ck_assert_msg(strstr(err.msg, "pipeline field 'window.granularity' is not a duration"),
                "%s", err.msg);
}
END_TEST

START_TEST(load_window_bad_retention) {
  mm_err_t err;
  load_fail("return { aggregate = 'count', decode = function(r) end, key = function(v) end,\n"
            "  window = { granularity = '1h', retention = 30 } }",
            &err);
  ck_assert_msg(strstr(err.msg, "pipeline field 'window.retention' must be a duration"),
                "%s", err.msg);
}
END_TEST

START_TEST(load_window_without_granularity) {
  mm_err_t err;
  load_fail("return { aggregate = 'count', decode = function(r) end, key = function(v) end,\n"
            "  window = { retention = '1d' } }",
            &err);
  ck_assert_msg(strstr(err.msg, "pipeline field 'window.granularity' is missing"), "%s",
                err.msg);
}
END_TEST

START_TEST(load_window_not_table) {
  mm_err_t err;
  load_fail("return { aggregate = 'count', decode = function(r) end, key = function(v) end,\n"
            "  window = '1h' }",
            &err);
  ck_assert_msg(strstr(err.msg, "pipeline field 'window' must be a table"), "%s", err.msg);
}
END_TEST

START_TEST(load_bad_name) {
  mm_err_t err;
  load_fail("return { name = 'my pipeline!', aggregate = 'count',\n"
            "  decode = function(r) end, key = function(v) end }",
            &err);
  ck_assert_msg(strstr(err.msg, "pipeline field 'name' must be 1 to 100 characters"), "%s",
                err.msg);
}
END_TEST

START_TEST(load_unknown_field_warns) {
  load_ok("return { aggregate = 'count', decode = function(r) end,\n"
          "  key = function(v) end, agregate = 'sum' }");
  ck_assert_msg(strstr(logged(), "unknown pipeline field 'agregate'"), "%s", logged());
}
END_TEST

START_TEST(load_reports_every_problem_at_once) {
  mm_err_t err;
  load_fail("return { aggregate = 'avg', window = { granularity = 'x' } }", &err);
  ck_assert_msg(strstr(err.msg, "'decode'") && strstr(err.msg, "'key' or 'keys'") &&
                    strstr(err.msg, "'aggregate'") && strstr(err.msg, "'window.granularity'"),
                "%s", err.msg);
}
END_TEST

/* mm_script_check's report callback collects lines here. */
static char problems[16][MM_ERR_MAX + 64];
static int nproblems;
static void collect(void *ud, const char *p) {
  ck_assert_ptr_eq(ud, problems);
  ck_assert_int_lt(nproblems, 16);
  snprintf(problems[nproblems++], sizeof problems[0], "%s", p);
}

START_TEST(check_lists_several_problems) {
  write_file("decode.lua", "return { aggregate = 'avg', decode = 7,\n"
                           "  key = function(v) end, keys = function(v) end,\n"
                           "  window = { granularity = 'soon' } }\n");
  mm_script_opts_t o = opts();
  nproblems = 0;
  int n = mm_script_check(path, &o, collect, problems);
  ck_assert_int_eq(n, 4);
  ck_assert_int_eq(nproblems, 4);
  const char *want[] = {"'decode' must be a function", "'key' and 'keys' are both",
                        "'aggregate' must be one of", "'window.granularity'"};
  for (int w = 0; w < 4; w++) {
    int found = 0;
    for (int i = 0; i < n; i++) {
      found |= strstr(problems[i], want[w]) != NULL;
      ck_assert_msg(strncmp(problems[i], "decode.lua:", 11) == 0, "%s", problems[i]);
    }
    ck_assert_msg(found, "no problem mentions %s", want[w]);
  }
}
END_TEST

START_TEST(check_clean_script_has_no_problems) {
  write_file("decode.lua", "return { aggregate = 'count', decode = function(r) end,\n"
                           "  key = function(v) end }\n");
  mm_script_opts_t o = opts();
  nproblems = 0;
  ck_assert_int_eq(mm_script_check(path, &o, collect, problems), 0);
  ck_assert_int_eq(nproblems, 0);
}
END_TEST

START_TEST(check_syntax_error_is_one_problem) {
  write_file("decode.lua", "return {\n\n  decode = = 1 }\n");
  mm_script_opts_t o = opts();
  nproblems = 0;
  ck_assert_int_eq(mm_script_check(path, &o, collect, problems), 1);
  ck_assert_msg(strncmp(problems[0], "decode.lua:3:", 13) == 0, "%s", problems[0]);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Records: skip, poison, keys                                          */
/* ------------------------------------------------------------------ */

START_TEST(record_skip_on_nil) {
  load_ok(PIPE("count", "    if rec.eventName == 'REMOVE' then return nil end\n"
                        "    return rec",
               "  key = function(v) return 'k' end,"));
  event("REMOVE,INSERT", "\"n\":{\"N\":\"1\"}");
  mm_outcome_t out;
  run(0, &out);
  ck_assert_int_eq(out.kind, MM_OUT_SKIP);
  ck_assert_int_eq(out.nkeys, 0);
  mm_outcome_free(&out);
  run_value(1, &out);
  ck_assert_int_eq(out.nkeys, 1);
  mm_outcome_free(&out);
}
END_TEST

START_TEST(record_value_reads_image) {
  load_ok(PIPE("sum", "    return rec.dynamodb.NewImage",
               "  key = function(o) return 'customer#' .. o.customer end,\n"
               "  value = function(o) return o.total end,"));
  event("INSERT", "\"customer\":{\"S\":\"c-1\"},\"total\":{\"N\":\"19.99\"}");
  mm_outcome_t out;
  run_value(0, &out);
  ck_assert_int_eq(out.nkeys, 1);
  ck_assert_str_eq(out.keys[0], "customer#c-1");
  ck_assert_int_eq(out.key_lens[0], 12);
  ck_assert_int_eq(out.delta.agg, MM_AGG_SUM);
  ck_assert(out.delta.v.is_num);
  ck_assert_str_eq(num_text(&out.delta.v.num), "19.99");
  ck_assert(out.delta.time == 1700000000.5);
  ck_assert_int_eq(out.delta.weight, 1);
  mm_outcome_free(&out);
}
END_TEST

/* The allocator tells conv of freed tables (mm_conv_freed): a plain
 * table that gets the memory of a collected converted one is not taken
 * for it, so murmur.decimal gives the number's own text. */
START_TEST(record_decimal_at_reused_address) {
  load_ok(PIPE("count",
               "    local murmur = require 'murmur'\n"
               "    local o = rec.dynamodb.NewImage\n"
               "    local l = o.l\n"
               "    for i = 1, #l do\n"
               "      assert(l[i].t == 1.5 and murmur.decimal(l[i], 't') == '1.50')\n"
               "    end\n"
               "    o.l, l = nil, nil\n"
               "    collectgarbage(); collectgarbage()\n"
               "    for i = 1, 2000 do\n"
               "      local t = {t = 1.5}\n"
               "      local d = murmur.decimal(t, 't')\n"
               "      if d ~= '1.5' then error('plain table ' .. i .. ': ' .. d) end\n"
               "    end\n"
               "    return 1",
               "  key = function(v) return 'k' end,"));
  static char img[8000];
  tu_list_member(img, sizeof img, "l", 250, "{\"M\":{\"t\":{\"N\":\"1.50\"}}}");
  event("INSERT", img);
  mm_outcome_t out;
  run_value(0, &out);
  mm_outcome_free(&out);
}
END_TEST

START_TEST(record_poison_has_line_and_traceback) {
  load_ok(PIPE("count", "    local o = rec.dynamodb.NewImage\n"
                        "    if not o.customer then error('order without customer') end\n"
                        "    return o",
               "  key = function(v) return 'k' end,"));
  event("INSERT", "\"x\":{\"S\":\"y\"}");
  mm_outcome_t out;
  run_poison(0, "decode.lua:5: order without customer", &out);
  ck_assert_msg(strstr(out.err.msg, "stack traceback") &&
                    strstr(out.err.msg, "\n\tdecode.lua:5: in "),
                "%s", out.err.msg);
  ck_assert_msg(!strstr(out.err.msg, "[C]: in ?"), "%s", out.err.msg);  /* our entry */
  ck_assert_int_eq(out.err.code, MM_ELUA);
  ck_assert_str_eq(out.err.chunk, "decode.lua");
  ck_assert_int_eq(out.err.line, 5);
  ck_assert_int_eq(out.nkeys, 0);
  mm_outcome_free(&out);
}
END_TEST

START_TEST(record_poison_without_position_uses_stack) {
  load_ok(PIPE("count", "    error({code = 1})",
               "  key = function(v) return 'k' end,"));
  event("INSERT", "\"x\":{\"S\":\"y\"}");
  mm_outcome_t out;
  run_poison(0, "(error object is a table value)", &out);
  ck_assert_str_eq(out.err.chunk, "decode.lua");
  ck_assert_int_eq(out.err.line, 4);
  mm_outcome_free(&out);
}
END_TEST

START_TEST(record_error_in_key_function) {
  load_ok(PIPE("count", "    return rec",
               "  key = function(v)\n    return v.nothing.here\n  end,"));
  event("INSERT", "\"x\":{\"S\":\"y\"}");
  mm_outcome_t out;
  run_poison(0, "decode.lua:7:", &out);
  ck_assert_int_eq(out.err.line, 7);
  mm_outcome_free(&out);
}
END_TEST

START_TEST(keys_non_table_is_poison) {
  load_ok("return { aggregate = 'count', decode = function(r) return r end,\n"
          "  keys = function(v) return 42 end }\n");
  event("INSERT", "\"x\":{\"S\":\"y\"}");
  mm_outcome_t out;
  run_poison(0, "keys() must return a table of strings, got number", &out);
  ck_assert_int_eq(out.err.line, 2);  /* where keys is defined */
  mm_outcome_free(&out);
}
END_TEST

START_TEST(keys_duplicates_merged_in_order) {
  load_ok("return { aggregate = 'count', decode = function(r) return r end,\n"
          "  keys = function(v) return {'b', 'a', 'b', 7, '7', 'a', 'c'} end }\n");
  event("INSERT", "\"x\":{\"S\":\"y\"}");
  mm_outcome_t out;
  run_value(0, &out);
  ck_assert_int_eq(out.nkeys, 4);
  ck_assert_str_eq(out.keys[0], "b");
  ck_assert_str_eq(out.keys[1], "a");
  ck_assert_str_eq(out.keys[2], "7");
  ck_assert_str_eq(out.keys[3], "c");
  mm_outcome_free(&out);
}
END_TEST

START_TEST(keys_many_distinct) {
  load_ok("return { aggregate = 'count', decode = function(r) return r end,\n"
          "  keys = function(v) local t = {} for i = 1, 500 do t[#t+1] = 'k' .. (i % 300) end\n"
          "    return t end }\n");
  event("INSERT", "\"x\":{\"S\":\"y\"}");
  mm_outcome_t out;
  run_value(0, &out);
  ck_assert_int_eq(out.nkeys, 300);
  ck_assert_str_eq(out.keys[0], "k1");
  ck_assert_str_eq(out.keys[298], "k299");
  ck_assert_str_eq(out.keys[299], "k0");
  mm_outcome_free(&out);
}
END_TEST

START_TEST(keys_float_element_is_poison) {
  load_ok("return { aggregate = 'count', decode = function(r) return r end,\n"
          "  keys = function(v) return {'a', 1.5} end }\n");
  event("INSERT", "\"x\":{\"S\":\"y\"}");
  mm_outcome_t out;
  run_poison(0, "keys() element [2] must be a string or an integer, got float 1.5", &out);
  mm_outcome_free(&out);
}
END_TEST

START_TEST(keys_boolean_element_is_poison) {
  load_ok("return { aggregate = 'count', decode = function(r) return r end,\n"
          "  keys = function(v) return {true} end }\n");
  event("INSERT", "\"x\":{\"S\":\"y\"}");
  mm_outcome_t out;
  run_poison(0, "keys() element [1] must be a string or an integer, got boolean", &out);
  mm_outcome_free(&out);
}
END_TEST

START_TEST(keys_not_a_sequence_is_poison) {
  load_ok("return { aggregate = 'count', decode = function(r) return r end,\n"
          "  keys = function(v) return {'a', x = 'b'} end }\n");
  event("INSERT", "\"x\":{\"S\":\"y\"}");
  mm_outcome_t out;
  run_poison(0, "found the field \"x\"", &out);
  mm_outcome_free(&out);
}
END_TEST

START_TEST(keys_empty_table_is_zero_keys) {
  load_ok("return { aggregate = 'sum', decode = function(r) return r end,\n"
          "  keys = function(v) return {} end,\n"
          "  value = function(v) error('value must not run without keys') end }\n");
  event("INSERT", "\"x\":{\"S\":\"y\"}");
  mm_outcome_t out;
  run_value(0, &out);
  ck_assert_int_eq(out.nkeys, 0);
  mm_outcome_free(&out);
}
END_TEST

START_TEST(key_nil_is_zero_keys) {
  load_ok("return { aggregate = 'count', decode = function(r) return r end,\n"
          "  key = function(v) return nil end }\n");
  event("INSERT", "\"x\":{\"S\":\"y\"}");
  mm_outcome_t out;
  run_value(0, &out);
  ck_assert_int_eq(out.nkeys, 0);
  mm_outcome_free(&out);
}
END_TEST

START_TEST(key_integer_is_decimal_text) {
  load_ok("return { aggregate = 'count', decode = function(r) return r end,\n"
          "  key = function(v) return -9007199254740993 end }\n");
  event("INSERT", "\"x\":{\"S\":\"y\"}");
  mm_outcome_t out;
  run_value(0, &out);
  ck_assert_int_eq(out.nkeys, 1);
  ck_assert_str_eq(out.keys[0], "-9007199254740993");
  ck_assert(out.delta.v.is_num);
  ck_assert_str_eq(num_text(&out.delta.v.num), "1");  /* count adds 1 */
  mm_outcome_free(&out);
}
END_TEST

START_TEST(key_table_is_poison) {
  load_ok("return { aggregate = 'count', decode = function(r) return r end,\n"
          "  key = function(v) return {'a'} end }\n");
  event("INSERT", "\"x\":{\"S\":\"y\"}");
  mm_outcome_t out;
  run_poison(0, "key() must return a string or an integer, got table", &out);
  mm_outcome_free(&out);
}
END_TEST

START_TEST(key_empty_and_invalid_utf8_are_poison) {
  load_ok("return { aggregate = 'count', decode = function(r) return r.eventName end,\n"
          "  key = function(v) if v == 'A' then return '' end return '\\xff' end }\n");
  event("A,B", "\"x\":{\"S\":\"y\"}");
  mm_outcome_t out;
  run_poison(0, "key() returned an empty string", &out);
  mm_outcome_free(&out);
  run_poison(1, "key() returned a string that is not valid UTF-8", &out);
  mm_outcome_free(&out);
}
END_TEST

START_TEST(key_surrogate_and_overlong_are_poison) {
  /* an encoded surrogate (U+D800) and an overlong '/' are not UTF-8 either */
  load_ok("return { aggregate = 'count', decode = function(r) return r.eventName end,\n"
          "  key = function(v) if v == 'A' then return 'k\\xED\\xA0\\x80' end\n"
          "    return 'k\\xC0\\xAF' end }\n");
  event("A,B", "\"x\":{\"S\":\"y\"}");
  mm_outcome_t out;
  run_poison(0, "key() returned a string that is not valid UTF-8", &out);
  mm_outcome_free(&out);
  run_poison(1, "key() returned a string that is not valid UTF-8", &out);
  mm_outcome_free(&out);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Values by aggregate                                                  */
/* ------------------------------------------------------------------ */

/* A pipeline whose value() returns the Lua expression `expr` (v is the
 * record's eventName). */
static void value_pipeline(const char *agg, const char *expr) {
  char src[1024];
  snprintf(src, sizeof src,
           "return { aggregate = '%s', decode = function(r) return r.eventName end,\n"
           "  key = function(v) return 'k' end,\n"
           "  value = function(v) return %s end }\n",
           agg, expr);
  load_ok(src);
  event("INSERT", "\"x\":{\"S\":\"y\"}");
}

START_TEST(value_nan_is_poison) {
  value_pipeline("sum", "0/0");
  mm_outcome_t out;
  run_poison(0, "value() returned NaN", &out);
  ck_assert_int_eq(out.err.line, 3);
  mm_outcome_free(&out);
}
END_TEST

START_TEST(value_inf_is_poison) {
  value_pipeline("max", "-math.huge");
  mm_outcome_t out;
  run_poison(0, "value() returned -inf", &out);
  mm_outcome_free(&out);
}
END_TEST

START_TEST(value_float_shortest_text) {
  value_pipeline("sum", "0.1 + 0.2");
  mm_outcome_t out;
  run_value(0, &out);
  ck_assert_str_eq(num_text(&out.delta.v.num), "0.30000000000000004");
  mm_outcome_free(&out);
}
END_TEST

START_TEST(value_decimal_string_for_sum) {
  value_pipeline("sum", "'12345678901234567890.123456789'");
  mm_outcome_t out;
  run_value(0, &out);
  ck_assert(out.delta.v.is_num);
  ck_assert_str_eq(num_text(&out.delta.v.num), "12345678901234567890.123456789");
  mm_outcome_free(&out);
}
END_TEST

START_TEST(value_bad_string_for_sum_is_poison) {
  value_pipeline("sum", "'12 apples'");
  mm_outcome_t out;
  run_poison(0, "value() returned \"12 apples\", which is not a decimal number", &out);
  mm_outcome_free(&out);
}
END_TEST

START_TEST(value_wrong_type_for_sum_is_poison) {
  value_pipeline("sum", "true");
  mm_outcome_t out;
  run_poison(0, "value() must return a number or a decimal string for aggregate 'sum', "
                "got boolean",
             &out);
  mm_outcome_free(&out);
}
END_TEST

START_TEST(value_nil_is_poison) {
  value_pipeline("min", "nil");
  mm_outcome_t out;
  run_poison(0, "value() returned nil", &out);
  mm_outcome_free(&out);
}
END_TEST

START_TEST(value_string_for_min_stays_string) {
  value_pipeline("min", "'12'");
  mm_outcome_t out;
  run_value(0, &out);
  ck_assert(!out.delta.v.is_num);
  ck_assert_str_eq(out.delta.v.str, "12");
  ck_assert_int_eq(out.delta.v.len, 2);
  mm_outcome_free(&out);
}
END_TEST

START_TEST(value_first_keeps_time) {
  value_pipeline("first", "42");
  mm_outcome_t out;
  run_value(0, &out);
  ck_assert_int_eq(out.delta.agg, MM_AGG_FIRST);
  ck_assert_str_eq(num_text(&out.delta.v.num), "42");
  ck_assert(out.delta.time == 1700000000.5);
  mm_outcome_free(&out);
}
END_TEST

START_TEST(value_set_sequence_dedups) {
  value_pipeline("set", "{'b', 'a', 'b', 'c'}");
  mm_outcome_t out;
  run_value(0, &out);
  ck_assert_int_eq(out.delta.nmembers, 3);
  ck_assert_str_eq(out.delta.members[0].str, "a");
  ck_assert_str_eq(out.delta.members[1].str, "b");
  ck_assert_str_eq(out.delta.members[2].str, "c");
  mm_outcome_free(&out);
}
END_TEST

START_TEST(value_set_numbers) {
  value_pipeline("set", "{3, 1.5, 3.0}");
  mm_outcome_t out;
  run_value(0, &out);
  ck_assert_int_eq(out.delta.nmembers, 2);
  ck_assert(out.delta.members[0].is_num && out.delta.members[1].is_num);
  ck_assert_str_eq(num_text(&out.delta.members[0].num), "1.5");
  ck_assert_str_eq(num_text(&out.delta.members[1].num), "3");
  mm_outcome_free(&out);
}
END_TEST

START_TEST(value_set_scalar_is_one_member) {
  value_pipeline("set", "'only'");
  mm_outcome_t out;
  run_value(0, &out);
  ck_assert_int_eq(out.delta.nmembers, 1);
  ck_assert_str_eq(out.delta.members[0].str, "only");
  mm_outcome_free(&out);
}
END_TEST

START_TEST(value_set_mixed_is_poison) {
  value_pipeline("set", "{'a', 2}");
  mm_outcome_t out;
  run_poison(0, "set members must be all strings or all numbers", &out);
  mm_outcome_free(&out);
}
END_TEST

START_TEST(value_set_bad_member_is_poison) {
  value_pipeline("set", "{'a', {}}");
  mm_outcome_t out;
  run_poison(0, "value() set member [2] must be a number or a string for aggregate 'set', "
                "got table",
             &out);
  mm_outcome_free(&out);
}
END_TEST

START_TEST(value_set_empty_means_no_keys) {
  value_pipeline("set", "{}");
  mm_outcome_t out;
  run_value(0, &out);
  ck_assert_int_eq(out.nkeys, 0);
  ck_assert_int_eq(out.delta.nmembers, 0);
  mm_outcome_free(&out);
}
END_TEST

START_TEST(value_topk_weight) {
  value_pipeline("topk", "'sku-1', 3");
  mm_outcome_t out;
  run_value(0, &out);
  ck_assert_str_eq(out.delta.v.str, "sku-1");
  ck_assert_int_eq(out.delta.weight, 3);
  mm_outcome_free(&out);
}
END_TEST

START_TEST(value_topk_default_weight) {
  value_pipeline("topk", "17");
  mm_outcome_t out;
  run_value(0, &out);
  ck_assert(out.delta.v.is_num);
  ck_assert_str_eq(num_text(&out.delta.v.num), "17");
  ck_assert_int_eq(out.delta.weight, 1);
  mm_outcome_free(&out);
}
END_TEST

START_TEST(value_topk_bad_weight_is_poison) {
  value_pipeline("topk", "'sku-1', 0");
  mm_outcome_t out;
  run_poison(0, "weight) must be a positive integer, got integer 0", &out);
  mm_outcome_free(&out);
  mm_script_destroy(S);
  S = NULL;
  mm_json_free(&ev_doc);
  free(ev_text);
  ev_text = NULL;
  value_pipeline("topk", "'sku-1', 1.5");
  run_poison(0, "got float 1.5", &out);
  mm_outcome_free(&out);
}
END_TEST

START_TEST(value_hll_item) {
  value_pipeline("hll", "'user-7'");
  mm_outcome_t out;
  run_value(0, &out);
  ck_assert_int_eq(out.delta.agg, MM_AGG_HLL);
  ck_assert_str_eq(out.delta.v.str, "user-7");
  mm_outcome_free(&out);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Limits                                                               */
/* ------------------------------------------------------------------ */

/* decode loops on record "LOOP" using `how`, returns the record otherwise. */
static void loop_pipeline(const char *how) {
  char src[1024];
  snprintf(src, sizeof src,
           "return { aggregate = 'count',\n"
           "  decode = function(rec)\n"
           "    if rec.eventName == 'LOOP' then %s end\n"
           "    return rec.eventName\n"
           "  end,\n"
           "  key = function(v) return v end }\n",
           how);
  load_ok(src);
  event("LOOP,INSERT,LOOP,MODIFY", "\"x\":{\"S\":\"y\"}");
}

/* Record 1 (after an abort) runs normally. */
static void next_record_works(int i, const char *name) {
  mm_outcome_t out;
  run_value(i, &out);
  ck_assert_int_eq(out.nkeys, 1);
  ck_assert_str_eq(out.keys[0], name);
  mm_outcome_free(&out);
}

START_TEST(budget_infinite_loop) {
  loop_pipeline("while true do end");
  mm_outcome_t out;
  run_poison(0, "decode.lua:3: instruction budget of 200000 exceeded", &out);
  ck_assert_int_eq(out.err.code, MM_ELIMIT);
  ck_assert_int_eq(out.err.line, 3);
  ck_assert_msg(strstr(out.err.msg, "stack traceback"), "%s", out.err.msg);
  mm_outcome_free(&out);
  next_record_works(1, "INSERT");
  run_poison(2, "instruction budget of 200000 exceeded", &out);  /* again */
  mm_outcome_free(&out);
  next_record_works(3, "MODIFY");
}
END_TEST

START_TEST(budget_not_swallowed_by_pcall) {
  loop_pipeline("pcall(function() while true do end end)\n"
                "    pcall(function() while true do end end)\n"
                "    return 'escaped'");
  mm_outcome_t out;
  run_poison(0, "instruction budget of 200000 exceeded", &out);
  ck_assert_int_eq(out.err.code, MM_ELIMIT);
  mm_outcome_free(&out);
  next_record_works(1, "INSERT");
}
END_TEST

START_TEST(budget_not_swallowed_by_coroutine) {
  loop_pipeline("local co = coroutine.wrap(function() while true do end end)\n"
                "    pcall(co)\n"
                "    return 'escaped'");
  mm_outcome_t out;
  run_poison(0, "instruction budget of 200000 exceeded", &out);
  mm_outcome_free(&out);
  next_record_works(1, "INSERT");
}
END_TEST

START_TEST(budget_not_swallowed_by_error_handler) {
  loop_pipeline("xpcall(function() while true do end end, function(e) return e end)\n"
                "    return 'escaped'");
  mm_outcome_t out;
  run_poison(0, "instruction budget of 200000 exceeded", &out);
  mm_outcome_free(&out);
  next_record_works(1, "INSERT");
}
END_TEST

START_TEST(budget_is_per_call) {
  /* each record uses ~60% of the budget: fine one at a time */
  loop_pipeline("local n = 0 for i = 1, 40000 do n = n + i end return 'x'");
  mm_outcome_t out;
  for (int i = 0; i < 3; i++) {
    run_value(0, &out);
    mm_outcome_free(&out);
  }
}
END_TEST

static const char *const heap_loop =
    "local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1000) .. i end";

START_TEST(heap_unbounded_allocation) {
  mm_script_opts_t o = opts();
  o.budget = MM_DEF_LUA_BUDGET;
  o.mem_limit = 8 * 1024 * 1024;  /* the default 64 MB works alike, 8x slower */
  char src[1024];
  snprintf(src, sizeof src,
           "return { aggregate = 'count',\n"
           "  decode = function(rec)\n"
           "    if rec.eventName == 'LOOP' then %s end\n"
           "    return rec.eventName\n"
           "  end,\n"
           "  key = function(v) return v .. string.rep('!', 3) end }\n",
           heap_loop);
  load_ok_with(src, &o);
  event("LOOP,INSERT", "\"x\":{\"S\":\"y\"}");
  mm_outcome_t out;
  run_poison(0, "Lua heap ceiling of 8 MB exceeded (in decode)", &out);
  ck_assert_int_eq(out.err.code, MM_ELIMIT);
  mm_outcome_free(&out);
  next_record_works(1, "INSERT!!!");
  /* the heap is back to its size before the abort */
  ck_assert_int_lt(lua_gc(mm_script_state(S), LUA_GCCOUNT, 0), 4 * 1024);
}
END_TEST

/* A decoder whose LOOP record allocates without bound inside its own
 * pcall: the record is poison all the same, and the next one runs. With
 * `watched`, under the watchdog (the hook's GC comes from l_alloc). */
static void heap_ceiling_in_pcall(int watched) {
  mm_script_opts_t o = opts();
  o.budget = MM_DEF_LUA_BUDGET;
  o.mem_limit = 8 * 1024 * 1024;
  char src[1024];
  snprintf(src, sizeof src,
           "return { aggregate = 'count',\n"
           "  decode = function(rec)\n"
           "    if rec.eventName == 'LOOP' then\n"
           "      local ok = pcall(function() %s end)\n"
           "      return 'caught'\n"
           "    end\n"
           "    return rec.eventName\n"
           "  end,\n"
           "  key = function(v) return v end }\n",
           heap_loop);
  load_ok_with(src, &o);
  event("LOOP,INSERT", "\"x\":{\"S\":\"y\"}");
  if (watched) ck_assert_int_eq(mm_script_watch_begin(S), 1);
  mm_outcome_t out;
  run_poison(0, "Lua heap ceiling of 8 MB exceeded", &out);
  mm_outcome_free(&out);
  next_record_works(1, "INSERT");
  if (watched) mm_script_watch_end(S);
}

START_TEST(heap_abort_not_swallowed_by_pcall) { heap_ceiling_in_pcall(0); }
END_TEST

START_TEST(heap_single_huge_string) {
  mm_script_opts_t o = opts();  /* the default ceiling, 64 MB */
  load_ok_with("return { aggregate = 'count',\n"
               "  decode = function(rec)\n"
               "    if rec.eventName == 'LOOP' then return string.rep('x', 1e8) end\n"
               "    return rec.eventName\n"
               "  end,\n"
               "  key = function(v) return v end }\n",
               &o);
  event("LOOP,INSERT", "\"x\":{\"S\":\"y\"}");
  mm_outcome_t out;
  run_poison(0, "decode.lua: Lua heap ceiling of 64 MB exceeded (in decode)", &out);
  ck_assert_int_eq(out.err.code, MM_ELIMIT);
  mm_outcome_free(&out);
  next_record_works(1, "INSERT");
}
END_TEST

/* Loads a decoder whose live data is at 60% of an 8 MB ceiling plus
 * short-lived garbage made by string.rep, whose buffer gets no emergency
 * GC from Lua: Lua's own collector would let the heap reach twice the
 * live data, the ceiling. Nothing is really out of memory, so no record
 * may fail. */
static void load_garbage_near_ceiling(void) {
  mm_script_opts_t o = opts();
  o.budget = MM_DEF_LUA_BUDGET;
  o.mem_limit = 8 * 1024 * 1024;
  load_ok_with("local keep = {}\n"
               "return { aggregate = 'count',\n"
               "  decode = function(rec)\n"
               "    for i = 1, 1250 do keep[i] = string.rep('k', 4000) .. i end\n"
               "    for i = 1, 2000 do local s = string.rep('y', 4000) .. i end\n"
               "    return rec.eventName\n"
               "  end,\n"
               "  key = function(v) return v end }\n",
               &o);
  event("INSERT,MODIFY,REMOVE", "\"x\":{\"S\":\"y\"}");
}

START_TEST(heap_garbage_near_ceiling_is_not_poison) {
  load_garbage_near_ceiling();
  run_values(3);
}
END_TEST

/* ------------------------------------------------------------------ */
/* The watchdog (mm_script_watch_begin): calls run without a hook until  */
/* one outlives a CPU-time tick; the budget still stops every runaway.   */
/* ------------------------------------------------------------------ */

#define WATCH_BUDGET 10000000L /* the smallest budget that is watched */

/* loop_pipeline with a watched budget; asserts that watching started. */
static void watched_loop_pipeline(const char *how, long budget) {
  mm_script_opts_t o = opts();
  o.budget = budget;
  char src[1024];
  snprintf(src, sizeof src,
           "local co_at_load = coroutine.create(function() while true do end end)\n"
           "return { aggregate = 'count',\n"
           "  decode = function(rec)\n"
           "    if rec.eventName == 'LOOP' then %s end\n"
           "    return rec.eventName\n"
           "  end,\n"
           "  key = function(v) return v end }\n",
           how);
  load_ok_with(src, &o);
  event("LOOP,INSERT,LOOP,MODIFY", "\"x\":{\"S\":\"y\"}");
  ck_assert_int_eq(mm_script_watch_begin(S), 1);
}

/* A watched runaway: poison with the budget's message, the next record
 * fine, and (when `again`) the same once more. */
static void watched_runaway(const char *how, const char *want, int again) {
  watched_loop_pipeline(how, WATCH_BUDGET);
  mm_outcome_t out;
  run_poison(0, want, &out);
  ck_assert_int_eq(out.err.code, MM_ELIMIT);
  mm_outcome_free(&out);
  next_record_works(1, "INSERT");
  if (again) {
    run_poison(2, want, &out);
    mm_outcome_free(&out);
  }
  next_record_works(3, "MODIFY");
  mm_script_watch_end(S);
  ck_assert_int_eq(lua_gettop(mm_script_state(S)), 0);
}

START_TEST(watch_infinite_loop) {
  watched_runaway("while true do end", "decode.lua:4: instruction budget of 10000000 exceeded",
                  1);
  /* the main thread's loops were counted once the watchdog saw them */
  ck_assert_int_eq(mm_script_watched_calls(S), 2);
}
END_TEST

START_TEST(watch_not_swallowed_by_pcall) {
  watched_runaway("pcall(function() while true do end end)\n"
                  "    pcall(function() while true do end end)\n"
                  "    return 'escaped'",
                  "instruction budget of 10000000 exceeded", 1);
}
END_TEST

START_TEST(watch_coroutine_made_in_the_call) {
  /* made while the main thread has no hook: l_co_new lends it one */
  watched_runaway("local co = coroutine.wrap(function() while true do end end)\n"
                  "    pcall(co)\n"
                  "    return 'escaped'",
                  "instruction budget of 10000000 exceeded", 1);
}
END_TEST

START_TEST(watch_coroutine_made_at_load) {
  /* made by the top level (counted exactly then), resumed in a watched
   * call that never outlives a tick on the main thread */
  watched_runaway("coroutine.resume(co_at_load)\n    return 'escaped'",
                  "instruction budget of 10000000 exceeded", 0); /* then it is dead */
}
END_TEST

START_TEST(watch_long_call_under_budget) {
  /* ~4 M instructions, several ms: watched, counted, not stopped */
  watched_loop_pipeline("local n = 0 for i = 1, 2000000 do n = n + i end", WATCH_BUDGET);
  run_values(4);
  mm_script_watch_end(S);
}
END_TEST

START_TEST(watch_small_budget_is_exact) {
  mm_script_opts_t o = opts(); /* 200,000: counted from the first instruction */
  load_ok_with("return { aggregate = 'count', decode = function(r) return r.eventName end,\n"
               "  key = function(v) return v end }\n",
               &o);
  ck_assert_int_eq(mm_script_watch_begin(S), 0);
  mm_script_watch_end(S); /* harmless */
}
END_TEST

START_TEST(watch_deadline_stops_a_call) {
  /* no budget at all: only the deadline can stop the loop */
  watched_loop_pipeline("while true do end", 0);
  mm_script_set_deadline(S, mm_now_ms() + 50);
  mm_outcome_t out;
  run(0, &out);
  ck_assert_int_eq(out.kind, MM_OUT_DEADLINE);
  mm_outcome_free(&out);
  mm_script_set_deadline(S, 0);
  next_record_works(1, "INSERT");
  mm_script_watch_end(S);
}
END_TEST

START_TEST(watch_heap_garbage_near_ceiling_is_not_poison) {
  /* heap_garbage_near_ceiling_is_not_poison, watched: the collection at
   * gc_mark comes from l_alloc arming the hook for one instruction */
  load_garbage_near_ceiling();
  ck_assert_int_eq(mm_script_watch_begin(S), 1);
  run_values(3);
  mm_script_watch_end(S);
}
END_TEST

START_TEST(watch_heap_ceiling) { heap_ceiling_in_pcall(1); }
END_TEST

/* ------------------------------------------------------------------ */
/* Sandbox                                                              */
/* ------------------------------------------------------------------ */

static void sandbox_script(void) {
  load_ok("return { aggregate = 'count', decode = function(r) return r end,\n"
          "  key = function(v) return 'k' end }\n");
}

START_TEST(sandbox_no_os_exit) {
  sandbox_script();
  ck_assert(eval("return os.exit == nil"));
}
END_TEST

START_TEST(sandbox_no_os_execute) {
  sandbox_script();
  ck_assert(eval("return os.execute == nil and os.remove == nil and os.rename == nil"));
  ck_assert(eval("return type(os.time()) == 'number' and type(os.clock()) == 'number'"));
  ck_assert(eval("return os.date('!%Y', 0) == '1970'"));
}
END_TEST

START_TEST(sandbox_type_is_the_base_librarys) {
  /* the sandbox's own type() (fixed names) answers as the base library's */
  sandbox_script();
  ck_assert(eval("return type(nil) == 'nil' and type(true) == 'boolean' and type(1) == 'number'"
                 " and type(1.5) == 'number' and type('s') == 'string' and type({}) == 'table'"
                 " and type(print) == 'function' and type(coroutine.create(print)) == 'thread'"
                 " and type(require('cjson').null) == 'userdata'"));
  ck_assert(eval("local ok, e = pcall(type)\n"
                 "return not ok and e:find(\"bad argument #1 to 'type' %(value expected%)\") ~= nil"));
  ck_assert(eval("return select('#', type(1, 2)) == 1"));
}
END_TEST

START_TEST(sandbox_no_io_popen) {
  sandbox_script();
  ck_assert(eval("return io.popen == nil"));
}
END_TEST

START_TEST(sandbox_no_io_open) {
  sandbox_script();
  ck_assert(eval("return io.open == nil and io.read == nil and io.lines == nil"));
  ck_assert(eval("return type(io.write) == 'function'"));
}
END_TEST

START_TEST(sandbox_no_loadlib) {
  sandbox_script();
  ck_assert(eval("return package.loadlib == nil and package.cpath == ''"));
}
END_TEST

START_TEST(sandbox_no_dofile) {
  sandbox_script();
  ck_assert(eval("return dofile == nil"));
}
END_TEST

START_TEST(sandbox_no_loadfile) {
  sandbox_script();
  ck_assert(eval("return loadfile == nil"));
}
END_TEST

START_TEST(sandbox_load_refuses_bytecode) {
  sandbox_script();
  ck_assert(eval("local f, e = load(string.dump(function() return 1 end))\n"
                 "return f == nil and e:find('binary') ~= nil"));
  ck_assert(eval("local f, e = load(string.dump(function() return 1 end), 'x', 'b')\n"
                 "return f == nil"));
  ck_assert(eval("return load('return 6*7')() == 42"));
  ck_assert(eval("local env = {y = 5} return load('return y', 'c', 't', env)() == 5"));
}
END_TEST

START_TEST(sandbox_require_c_module_fails) {
  write_file("cmod.so", "not a library");
  write_file("cmod2.so", "not a library");
  sandbox_script();
  ck_assert(eval("local ok, e = pcall(require, 'cmod')\n"
                 "return not ok and e:find(\"module 'cmod' not found\") ~= nil"));
  ck_assert(eval("return not pcall(require, 'io') or require('io').open == nil"));
  ck_assert(eval("return not pcall(require, 'debug')"));
  ck_assert(eval("return debug == nil"));
}
END_TEST

START_TEST(sandbox_require_path_escape_refused) {
  write_file("helper.lua", "return { x = 1 }");
  sandbox_script();
  ck_assert(eval("return not pcall(require, '..helper') and not pcall(require, '/etc/passwd')"));
  ck_assert(eval("package.path = '/etc/?' return not pcall(require, 'passwd')"));
}
END_TEST

START_TEST(sandbox_require_script_dir) {
  write_file("helper.lua", "return { answer = 42 }");
  sandbox_script();
  ck_assert(eval("return require('helper').answer == 42"));
}
END_TEST

START_TEST(sandbox_require_cjson) {
  sandbox_script();
  ck_assert(eval("local cjson = require 'cjson'\n"
                 "return cjson.encode({a = 1}) == '{\"a\":1}' and cjson.decode('[1]')[1] == 1"));
  ck_assert(eval("return require('cjson.safe').decode('{') == nil"));
}
END_TEST

START_TEST(sandbox_require_murmur) {
  sandbox_script();
  ck_assert(eval("local m = require 'murmur'\n"
                 "return type(m) == 'table' and m.null == require('cjson').null"));
}
END_TEST

START_TEST(sandbox_getenv_hides_credentials) {
  setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
  setenv("MM_TEST_VISIBLE", "yes", 1);
  sandbox_script();
  ck_assert(eval("return os.getenv('AWS_SECRET_ACCESS_KEY') == nil"));
  ck_assert(eval("return os.getenv('MM_TEST_VISIBLE') == 'yes'"));
}
END_TEST

START_TEST(sandbox_collectgarbage_limited) {
  sandbox_script();
  ck_assert(eval("return type(collectgarbage('count')) == 'number'"));
  ck_assert(eval("return not pcall(collectgarbage, 'stop')"));
  ck_assert(eval("return collectgarbage('isrunning')"));
}
END_TEST

START_TEST(sandbox_no_finalizers) {
  sandbox_script();
  ck_assert(eval("local ok, e = pcall(setmetatable, {}, {__gc = function() end})\n"
                 "return not ok and e:find('__gc') ~= nil"));
  ck_assert(eval("local t = setmetatable({}, {__index = function() return 7 end})\n"
                 "return t.x == 7"));
}
END_TEST

START_TEST(sandbox_print_logs) {
  load_ok("print('hello from', 'top level', 42)\n"
          "return { aggregate = 'count', decode = function(r) return r end,\n"
          "  key = function(v) return 'k' end }\n");
  ck_assert_msg(strstr(logged(), "hello from\ttop level\t42") ||
                    strstr(logged(), "hello from\\ttop level\\t42"),
                "%s", logged());
}
END_TEST

START_TEST(cjson_encode_materializes_record) {
  load_ok("local cjson = require 'cjson'\n"
          "return { aggregate = 'count',\n"
          "  decode = function(rec) return cjson.encode(rec.dynamodb.Keys) end,\n"
          "  key = function(v) return v end }\n");
  event("INSERT", "\"x\":{\"S\":\"y\"}");
  mm_outcome_t out;
  run_value(0, &out);
  ck_assert_int_eq(out.nkeys, 1);
  ck_assert_str_eq(out.keys[0], "{\"id\":\"k0\"}");
  mm_outcome_free(&out);
}
END_TEST

START_TEST(keys_from_lazy_list) {
  load_ok("return { aggregate = 'set',\n"
          "  decode = function(rec) return rec.dynamodb.NewImage end,\n"
          "  keys = function(o) return o.tags end,\n"
          "  value = function(o) return o.skus end }\n");
  event("INSERT", "\"tags\":{\"L\":[{\"S\":\"a\"},{\"S\":\"b\"},{\"S\":\"a\"}]},"
                  "\"skus\":{\"SS\":[\"s2\",\"s1\"]}");
  mm_outcome_t out;
  run_value(0, &out);
  ck_assert_int_eq(out.nkeys, 2);
  ck_assert_str_eq(out.keys[0], "a");
  ck_assert_str_eq(out.keys[1], "b");
  ck_assert_int_eq(out.delta.nmembers, 2);
  ck_assert_str_eq(out.delta.members[0].str, "s1");
  mm_outcome_free(&out);
}
END_TEST

/* ------------------------------------------------------------------ */
/* on_decode_error, documents                                          */
/* ------------------------------------------------------------------ */

START_TEST(on_decode_error_called) {
  load_ok("seen = {}\n"
          "return { aggregate = 'count', decode = function(r) error('bad') end,\n"
          "  key = function(v) return 'k' end,\n"
          "  on_decode_error = function(rec, msg) seen[#seen+1] = rec.eventID .. '|' .. msg end }\n");
  event("INSERT", "\"x\":{\"S\":\"y\"}");
  mm_outcome_t out;
  run_poison(0, "decode.lua:2: bad", &out);
  lua_State *L = mm_script_state(S);
  int top = lua_gettop(L);
  mm_script_on_decode_error(S, recs[0], out.err.msg);
  ck_assert_int_eq(lua_gettop(L), top);
  ck_assert(eval("return #seen == 1 and seen[1]:find('^id0|decode.lua:2: bad') ~= nil"));
  mm_outcome_free(&out);
}
END_TEST

START_TEST(on_decode_error_failure_is_logged) {
  load_ok("return { aggregate = 'count', decode = function(r) return r end,\n"
          "  key = function(v) return 'k' end,\n"
          "  on_decode_error = function(rec, msg) error('handler broke') end }\n");
  event("INSERT", "\"x\":{\"S\":\"y\"}");
  lua_State *L = mm_script_state(S);
  int top = lua_gettop(L);
  mm_script_on_decode_error(S, recs[0], "some failure");
  ck_assert_int_eq(lua_gettop(L), top);
  ck_assert_msg(strstr(logged(), "handler broke"), "%s", logged());
}
END_TEST

START_TEST(on_decode_error_budget) {
  load_ok("return { aggregate = 'count', decode = function(r) return r end,\n"
          "  key = function(v) return 'k' end,\n"
          "  on_decode_error = function(rec, msg) while true do end end }\n");
  event("INSERT", "\"x\":{\"S\":\"y\"}");
  mm_script_on_decode_error(S, recs[0], "x");
  ck_assert_msg(strstr(logged(), "instruction budget of 200000 exceeded"), "%s", logged());
  mm_outcome_t out;
  run_value(0, &out);
  mm_outcome_free(&out);
}
END_TEST

START_TEST(record_without_document_is_poison) {
  sandbox_script();
  mm_outcome_t out;
  lua_State *L = mm_script_state(S);
  ck_assert_int_eq(mm_script_run_record(S, 1, 0, &out), 0);
  ck_assert_int_eq(lua_gettop(L), 0);
  ck_assert_int_eq(out.kind, MM_OUT_POISON);
  mm_outcome_free(&out);
}
END_TEST

/* ------------------------------------------------------------------ */
/* The example pipeline                                                 */
/* ------------------------------------------------------------------ */

START_TEST(example_order_totals) {
  mm_script_opts_t o = opts();
  o.budget = MM_DEF_LUA_BUDGET;
  mm_err_t err;
  int rc = mm_script_load(&S, MM_SOURCE_LUA_DIR "/examples/order_totals/decode.lua", &o,
                          &err);
  ck_assert_msg(rc == 0, "%s", err.msg);
  ck_assert_str_eq(mm_script_def(S)->name, "order_totals");
  size_t len;
  ev_text = tu_read_file(MM_SOURCE_LUA_DIR "/examples/order_totals/event.json", &len);
  ck_assert(ev_text != NULL);
  ck_assert_int_eq(mm_json_parse(&ev_doc, ev_text, len, 0, &err), 0);
  mm_script_set_doc(S, &ev_doc);
  uint32_t arr = mm_json_get(&ev_doc, 0, "Records", 7);
  uint32_t c = mm_json_first(&ev_doc, arr);
  int values = 0;
  for (uint32_t i = 0; i < mm_json_len(&ev_doc, arr); i++) {
    mm_outcome_t out;
    ck_assert_int_eq(mm_script_run_record(S, c, 0, &out), 0);
    if (out.kind == MM_OUT_VALUE) {
      values++;
      ck_assert_int_eq(out.nkeys, 1);
      ck_assert_msg(strncmp(out.keys[0], "customer#", 9) == 0, "%s", out.keys[0]);
    }
    mm_outcome_free(&out);
    c = mm_json_next(&ev_doc, c);
  }
  ck_assert_int_gt(values, 0);

  /* cost of one record through decode/key/value (CPU time: the wall
   * clock of a shared CI machine says little) */
  c = mm_json_first(&ev_doc, arr);
  const int n = 5000;
  clock_t t0 = clock();
  for (int i = 0; i < n; i++) {
    mm_outcome_t out;
    mm_script_run_record(S, c, 0, &out);
    mm_outcome_free(&out);
  }
  double us = (double)(clock() - t0) / CLOCKS_PER_SEC * 1e6 / n;
  fprintf(stderr, "check_script: order_totals INSERT record: %.2f us CPU per record\n", us);
  ck_assert_int_eq(lua_gettop(mm_script_state(S)), 0);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Allocation failures                                                  */
/* ------------------------------------------------------------------ */

extern long mm_script_fail_countdown;  /* script.c's injection knob */

static const char *const alloc_script =
    "local murmur = require 'murmur'\n"
    "local cjson = require 'cjson'\n"
    "return { name = 'alloc', aggregate = 'set', window = { granularity = '1h' },\n"
    "  decode = function(rec) return rec.dynamodb.NewImage end,\n"
    "  keys = function(o) return { 'a#' .. o.x, 'b#' .. cjson.encode(o) } end,\n"
    "  value = function(o) return { o.x, 'y', o.x } end }\n";

START_TEST(alloc_failure_during_load_is_an_error) {
  /* fail from the k-th allocation on, for every k until loading no longer
   * reaches the failure: each attempt fails cleanly (no panic, no leak
   * under the sanitizers) */
  write_file("decode.lua", alloc_script);
  mm_script_opts_t o = opts();
  int failures = 0;
  for (long k = 1;; k++) {
    mm_err_t err;
    mm_err_clear(&err);
    mm_script_fail_countdown = k;
    int rc = mm_script_load(&S, path, &o, &err);
    int reached = mm_script_fail_countdown < 0;
    mm_script_fail_countdown = 0;
    if (!reached) {
      ck_assert_msg(rc == 0, "k=%ld: %s", k, err.msg);
      break;
    }
    if (rc == 0) {  /* a failure Lua recovered from, or one after the load */
      mm_script_destroy(S);
      S = NULL;
      continue;
    }
    failures++;
    ck_assert_ptr_null(S);
    ck_assert_msg(err.msg[0] != '\0', "k=%ld: empty message", k);
    ck_assert_int_lt(k, 100000);
  }
  fprintf(stderr, "alloc load: %d failing attempts\n", failures);
  ck_assert_int_gt(failures, 50);
  ck_assert_ptr_nonnull(S);
  ck_assert_str_eq(mm_script_def(S)->name, "alloc");
}
END_TEST

START_TEST(alloc_failure_during_record_is_poison) {
  load_ok(alloc_script);
  event("INSERT,MODIFY", "\"x\":{\"S\":\"v\"}");
  lua_State *L = mm_script_state(S);
  int poisoned = 0;
  for (long k = 1;; k++) {
    mm_outcome_t out;
    mm_script_fail_countdown = k;
    int rc = mm_script_run_record(S, recs[0], 1.0, &out);
    int reached = mm_script_fail_countdown < 0;
    mm_script_fail_countdown = 0;
    ck_assert_int_eq(lua_gettop(L), 0);
    if (!reached) {
      ck_assert_int_eq(rc, 0);
      ck_assert_int_eq(out.kind, MM_OUT_VALUE);
      mm_outcome_free(&out);
      break;
    }
    ck_assert(rc == 0 || rc == MM_ENOMEM);
    if (out.kind == MM_OUT_POISON) poisoned++;
    mm_outcome_free(&out);
    /* the next record is unaffected */
    run_value(1, &out);
    ck_assert_int_eq(out.nkeys, 2);
    ck_assert_int_eq(out.delta.nmembers, 2);
    mm_outcome_free(&out);
    ck_assert_int_lt(k, 100000);
  }
  fprintf(stderr, "alloc record: %d poisoned attempts\n", poisoned);
  ck_assert_int_gt(poisoned, 5);
}
END_TEST

START_TEST(alloc_failure_switching_document_is_named) {
  /* mm_script_set_doc cannot make the document current: every record is
   * poison with a message that says so (not "no document is set"), and
   * the next successful switch runs records again */
  load_ok(alloc_script);
  event("INSERT", "\"x\":{\"S\":\"v\"}");
  mm_outcome_t out;
  mm_script_fail_countdown = 1;
  int set_rc = mm_script_set_doc(S, &ev_doc);
  int reached = mm_script_fail_countdown < 0;
  mm_script_fail_countdown = 0;
  ck_assert(reached);
  ck_assert_int_eq(set_rc, MM_ENOMEM);
  run_poison(0, "out of memory making this invocation's records readable", &out);
  ck_assert_int_eq(out.err.code, MM_ENOMEM);
  mm_outcome_free(&out);
  mm_script_set_doc(S, &ev_doc);
  run_value(0, &out);
  mm_outcome_free(&out);
}
END_TEST

/* ------------------------------------------------------------------ */

static Suite *script_suite(void) {
  Suite *s = suite_create("script");
  TCase *tc;

  tc = tcase_create("load");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, load_minimal_defines_pipeline);
  tcase_add_test(tc, load_full_definition);
  tcase_add_test(tc, load_window_retention_defaults_to_granularity);
  tcase_add_test(tc, load_syntax_error_has_line);
  tcase_add_test(tc, load_missing_file);
  tcase_add_test(tc, load_chunk_not_returning_table);
  tcase_add_test(tc, load_empty_file_is_no_table);
  tcase_add_test(tc, load_file_larger_than_a_read_chunk);
  tcase_add_test(tc, load_top_level_error_has_line);
  tcase_add_test(tc, load_top_level_budget);
  tcase_add_test(tc, load_missing_decode);
  tcase_add_test(tc, load_decode_not_function);
  tcase_add_test(tc, load_missing_key_and_keys);
  tcase_add_test(tc, load_key_and_keys_both);
  tcase_add_test(tc, load_key_not_function);
  tcase_add_test(tc, load_aggregate_unknown);
  tcase_add_test(tc, load_aggregate_missing);
  tcase_add_test(tc, load_aggregate_not_string);
  tcase_add_test(tc, load_value_missing_for_sum);
  tcase_add_test(tc, load_value_not_function);
  tcase_add_test(tc, load_window_bad_duration);
  tcase_add_test(tc, load_window_bad_retention);
  tcase_add_test(tc, load_window_without_granularity);
  tcase_add_test(tc, load_window_not_table);
  tcase_add_test(tc, load_bad_name);
  tcase_add_test(tc, load_unknown_field_warns);
  tcase_add_test(tc, load_reports_every_problem_at_once);
  tcase_add_test(tc, check_lists_several_problems);
  tcase_add_test(tc, check_clean_script_has_no_problems);
  tcase_add_test(tc, check_syntax_error_is_one_problem);
  suite_add_tcase(s, tc);

  tc = tcase_create("record");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, record_skip_on_nil);
  tcase_add_test(tc, record_value_reads_image);
  tcase_add_test(tc, record_decimal_at_reused_address);
  tcase_add_test(tc, record_poison_has_line_and_traceback);
  tcase_add_test(tc, record_poison_without_position_uses_stack);
  tcase_add_test(tc, record_error_in_key_function);
  tcase_add_test(tc, keys_non_table_is_poison);
  tcase_add_test(tc, keys_duplicates_merged_in_order);
  tcase_add_test(tc, keys_many_distinct);
  tcase_add_test(tc, keys_float_element_is_poison);
  tcase_add_test(tc, keys_boolean_element_is_poison);
  tcase_add_test(tc, keys_not_a_sequence_is_poison);
  tcase_add_test(tc, keys_empty_table_is_zero_keys);
  tcase_add_test(tc, key_nil_is_zero_keys);
  tcase_add_test(tc, key_integer_is_decimal_text);
  tcase_add_test(tc, key_table_is_poison);
  tcase_add_test(tc, key_empty_and_invalid_utf8_are_poison);
  tcase_add_test(tc, key_surrogate_and_overlong_are_poison);
  tcase_add_test(tc, keys_from_lazy_list);
  tcase_add_test(tc, cjson_encode_materializes_record);
  tcase_add_test(tc, record_without_document_is_poison);
  tcase_add_test(tc, on_decode_error_called);
  tcase_add_test(tc, on_decode_error_failure_is_logged);
  tcase_add_test(tc, on_decode_error_budget);
  tcase_add_test(tc, example_order_totals);
  suite_add_tcase(s, tc);

  tc = tcase_create("value");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, value_nan_is_poison);
  tcase_add_test(tc, value_inf_is_poison);
  tcase_add_test(tc, value_float_shortest_text);
  tcase_add_test(tc, value_decimal_string_for_sum);
  tcase_add_test(tc, value_bad_string_for_sum_is_poison);
  tcase_add_test(tc, value_wrong_type_for_sum_is_poison);
  tcase_add_test(tc, value_nil_is_poison);
  tcase_add_test(tc, value_string_for_min_stays_string);
  tcase_add_test(tc, value_first_keeps_time);
  tcase_add_test(tc, value_set_sequence_dedups);
  tcase_add_test(tc, value_set_numbers);
  tcase_add_test(tc, value_set_scalar_is_one_member);
  tcase_add_test(tc, value_set_mixed_is_poison);
  tcase_add_test(tc, value_set_bad_member_is_poison);
  tcase_add_test(tc, value_set_empty_means_no_keys);
  tcase_add_test(tc, value_topk_weight);
  tcase_add_test(tc, value_topk_default_weight);
  tcase_add_test(tc, value_topk_bad_weight_is_poison);
  tcase_add_test(tc, value_hll_item);
  suite_add_tcase(s, tc);

  tc = tcase_create("limits");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, budget_infinite_loop);
  tcase_add_test(tc, budget_not_swallowed_by_pcall);
  tcase_add_test(tc, budget_not_swallowed_by_coroutine);
  tcase_add_test(tc, budget_not_swallowed_by_error_handler);
  tcase_add_test(tc, budget_is_per_call);
  tcase_add_test(tc, heap_unbounded_allocation);
  tcase_add_test(tc, heap_abort_not_swallowed_by_pcall);
  tcase_add_test(tc, heap_single_huge_string);
  tcase_add_test(tc, heap_garbage_near_ceiling_is_not_poison);
  suite_add_tcase(s, tc);

  tc = tcase_create("watch");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, watch_infinite_loop);
  tcase_add_test(tc, watch_not_swallowed_by_pcall);
  tcase_add_test(tc, watch_coroutine_made_in_the_call);
  tcase_add_test(tc, watch_coroutine_made_at_load);
  tcase_add_test(tc, watch_long_call_under_budget);
  tcase_add_test(tc, watch_small_budget_is_exact);
  tcase_add_test(tc, watch_deadline_stops_a_call);
  tcase_add_test(tc, watch_heap_garbage_near_ceiling_is_not_poison);
  tcase_add_test(tc, watch_heap_ceiling);
  suite_add_tcase(s, tc);

  tc = tcase_create("alloc");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, alloc_failure_during_load_is_an_error);
  tcase_add_test(tc, alloc_failure_during_record_is_poison);
  tcase_add_test(tc, alloc_failure_switching_document_is_named);
  suite_add_tcase(s, tc);

  tc = tcase_create("sandbox");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, sandbox_no_os_exit);
  tcase_add_test(tc, sandbox_no_os_execute);
  tcase_add_test(tc, sandbox_no_io_popen);
  tcase_add_test(tc, sandbox_type_is_the_base_librarys);
  tcase_add_test(tc, sandbox_no_io_open);
  tcase_add_test(tc, sandbox_no_loadlib);
  tcase_add_test(tc, sandbox_no_dofile);
  tcase_add_test(tc, sandbox_no_loadfile);
  tcase_add_test(tc, sandbox_load_refuses_bytecode);
  tcase_add_test(tc, sandbox_require_c_module_fails);
  tcase_add_test(tc, sandbox_require_path_escape_refused);
  tcase_add_test(tc, sandbox_require_script_dir);
  tcase_add_test(tc, sandbox_require_cjson);
  tcase_add_test(tc, sandbox_require_murmur);
  tcase_add_test(tc, sandbox_getenv_hides_credentials);
  tcase_add_test(tc, sandbox_collectgarbage_limited);
  tcase_add_test(tc, sandbox_no_finalizers);
  tcase_add_test(tc, sandbox_print_logs);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tu_run_suite(script_suite()); }

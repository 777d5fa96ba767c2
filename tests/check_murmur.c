/*
 * check_murmur.c - the murmur Lua module: murmur.core (runtime/murmur_lua.c)
 * and lua/murmur.lua.
 *
 * Each case builds a one-record event from small images, converts it the
 * way the runtime does (mm_json_parse, mm_conv_set_doc,
 * mm_conv_push_record), and runs Lua assertions with globals rec, murmur
 * (require "murmur" from the source lua/ directory) and core
 * (require "murmur.core").
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "conv.h"
#include "json.h"
#include "murmur_lua.h"
#include "testutil.h"

extern int luaopen_cjson(lua_State *L);

/* Opens the libraries, cjson (global), murmur.core (preloaded), the
 * source lua/ directory on package.path, conv, and the globals murmur and
 * core. Runs under lua_pcall. */
static int setup_state(lua_State *L) {
  luaL_openlibs(L);
  luaL_requiref(L, "cjson", luaopen_cjson, 1);
  lua_pop(L, 1);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, mm_luaopen_murmur_core);
  lua_setfield(L, -2, "murmur.core");
  lua_pop(L, 1);
  lua_getglobal(L, "package");
  lua_pushstring(L, MM_SOURCE_LUA_DIR "/?.lua");
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  mm_conv_open(L);
  if (luaL_dostring(L, "murmur = require 'murmur'; core = require 'murmur.core'") != LUA_OK)
    lua_error(L);
  return 0;
}

static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  ck_assert_ptr_nonnull(L);
  lua_pushcfunction(L, setup_state);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) ck_abort_msg("setup: %s", lua_tostring(L, -1));
  return L;
}

/* Protected: pushes record 0 of Records into global rec. */
static int push_body(lua_State *L) {
  const mm_json_doc_t *doc = lua_touserdata(L, 1);
  uint32_t recs = mm_json_get(doc, 0, "Records", 7);
  mm_conv_push_record(L, recs + 1);
  lua_setglobal(L, "rec");
  return 0;
}

/* One event: eventName plus images as JSON maps (NULL = absent). */
typedef struct mcase {
  const char *name;
  const char *event;
  const char *keys, *newi, *oldi;
  const char *lua; /* assertions; may use rec, murmur, core, cjson */
} mcase_t;

/* Converts the case's event and runs its Lua; returns NULL or a malloc'd
 * error. */
static char *run_case(lua_State *L, const mcase_t *c) {
  char json[8192];
  int n = snprintf(json, sizeof json,
                   "{\"Records\":[{\"eventID\":\"1\",\"eventName\":\"%s\","
                   "\"eventSource\":\"aws:dynamodb\",\"dynamodb\":{"
                   "\"ApproximateCreationDateTime\":1700000000,"
                   "\"Keys\":%s,\"SequenceNumber\":\"111111111111111111111\","
                   "\"SizeBytes\":100",
                   c->event, c->keys ? c->keys : "{\"id\":{\"S\":\"k\"}}");
  if (c->newi) n += snprintf(json + n, sizeof json - (size_t)n, ",\"NewImage\":%s", c->newi);
  if (c->oldi) n += snprintf(json + n, sizeof json - (size_t)n, ",\"OldImage\":%s", c->oldi);
  n += snprintf(json + n, sizeof json - (size_t)n, "}}]}");
  ck_assert((size_t)n < sizeof json);

  mm_json_doc_t doc;
  mm_err_t err;
  if (mm_json_parse(&doc, json, strlen(json), 0, &err) != 0)
    ck_abort_msg("[%s] bad JSON: %s\n%s", c->name, err.msg, json);
  mm_conv_set_doc(L, &doc, 64);
  int top = lua_gettop(L);
  char *msg = NULL;
  lua_pushcfunction(L, push_body);
  lua_pushlightuserdata(L, &doc);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK ||
      luaL_loadbuffer(L, c->lua, strlen(c->lua), c->name) != LUA_OK ||
      lua_pcall(L, 0, 0, 0) != LUA_OK)
    msg = strdup(lua_tostring(L, -1));
  lua_settop(L, top);
  mm_conv_set_doc(L, NULL, 0);
  mm_json_free(&doc);
  return msg;
}

static void run_cases(const mcase_t *cases, size_t n) {
  lua_State *L = new_state();
  for (size_t i = 0; i < n; i++) {
    char *e = run_case(L, &cases[i]);
    ck_assert_msg(e == NULL, "[%s] %s", cases[i].name, e);
  }
  ck_assert_int_eq(lua_gettop(L), 0);
  lua_close(L);
}

/* A map attribute list -> {"k":AV,...} */
#define IMG(...) "{" __VA_ARGS__ "}"
#define N(k, v) "\"" k "\":{\"N\":\"" v "\"}"
#define S(k, v) "\"" k "\":{\"S\":\"" v "\"}"

/* ------------------------------------------------------------------ */
/* murmur.core                                                          */
/* ------------------------------------------------------------------ */

static const mcase_t CORE_CASES[] = {
    {"null and version", "INSERT", NULL, IMG(S("a", "x")), NULL,
     "assert(core.null == cjson.null and murmur.null == cjson.null)\n"
     "assert(type(murmur.version) == 'string' and murmur.version:match('^%d+%.%d+%.%d+$'))\n"},
    {"dec_add / dec_sub exact", "INSERT", NULL, IMG(S("a", "x")), NULL,
     "assert(core.dec_add('0.1', '0.2') == '0.3')\n"
     "assert(core.dec_sub('0.3', '0.1') == '0.2')\n"
     "assert(core.dec_add(0.1, 0.2) == '0.3')       -- floats by shortest text\n"
     "assert(core.dec_add(1, 2) == '3' and core.dec_sub(1, '3') == '-2')\n"
     "assert(core.dec_add('1E+2', '0') == '100')\n"
     "assert(core.dec_sub('12345678901234567890123456789012345678', '1') ==\n"
     "       '12345678901234567890123456789012345677')\n"
     "assert(core.dec_add(math.mininteger, 0) == '-9223372036854775808')\n"},
    {"dec_* errors", "INSERT", NULL, IMG(S("a", "x")), NULL,
     "local ok, e = pcall(core.dec_add, '9.9999999999999999999999999999999999999E+125',\n"
     "                    '9.9999999999999999999999999999999999999E+125')\n"
     "assert(not ok and type(e) == 'string', 'overflow must raise')\n"
     "ok, e = pcall(core.dec_add, 'abc', 1)\n"
     "assert(not ok and e:find('bad argument #1 to') and e:find(\"dec_add'\"), e)\n"
     "ok, e = pcall(core.dec_sub, 1, {})\n"
     "assert(not ok and e:find('bad argument #2') and e:find('decimal text or number'), e)\n"
     "ok, e = pcall(core.dec_cmp, 0/0, 1)\n"
     "assert(not ok and e:find('bad argument #1'), e)\n"
     "ok, e = pcall(core.dec_add, '1' .. string.rep('0', 40) .. '1', 0)\n"
     "assert(not ok, '39 significant digits must be refused')\n"},
    {"dec_cmp", "INSERT", NULL, IMG(S("a", "x")), NULL,
     "assert(core.dec_cmp('1.0', '1') == 0 and core.dec_cmp('-1', '1') == -1)\n"
     "assert(core.dec_cmp('1E+2', 99) == 1 and core.dec_cmp('-0', 0) == 0)\n"
     "assert(core.dec_cmp('12345678901234567890123456789012345678',\n"
     "                    '12345678901234567890123456789012345677') == 1)\n"},
    {"tonumber", "INSERT", NULL, IMG(S("a", "x")), NULL,
     "assert(math.type(core.tonumber('1E+2')) == 'integer' and core.tonumber('1E+2') == 100)\n"
     "assert(math.type(core.tonumber('0.2')) == 'float' and core.tonumber('0.2') == 0.2)\n"
     "assert(core.tonumber('x') == nil and core.tonumber('') == nil)\n"
     "assert(core.tonumber(5) == 5 and core.tonumber(2.5) == 2.5)\n"
     "assert(math.type(core.tonumber('9223372036854775808')) == 'float')\n"
     "assert(math.type(core.tonumber('-0')) == 'integer')\n"
     "assert(not pcall(core.tonumber, {}))\n"},
    {"decimal of numbers", "INSERT", NULL, IMG(S("a", "x")), NULL,
     "assert(core.decimal(5) == '5' and core.decimal(-7) == '-7')\n"
     "assert(core.decimal(0.1) == '0.1' and core.decimal(1/3) == '0.3333333333333333')\n"
     "assert(core.decimal(1e300) == '1e+300')     -- outside DynamoDB's range\n"
     "assert(core.decimal(2^63) == '9223372036854776000')\n"
     "assert(core.decimal(-0.0) == '0')\n"
     "assert(core.decimal(0/0) == nil and core.decimal(1/0) == nil)\n"
     "assert(core.decimal(math.maxinteger) == '9223372036854775807')\n"},
    {"decimal from the event", "INSERT", NULL,
     IMG(N("big", "12345678901234567890123456789012345678") "," N("t", "19.99") ","
         S("s", "1") ",\"l\":{\"L\":[{\"N\":\"0.10\"}]},\"ns\":{\"NS\":[\"7.50\"]}"),
     NULL,
     "local o = rec.dynamodb.NewImage\n"
     "assert(murmur.decimal(o, 'big') == '12345678901234567890123456789012345678')\n"
     "assert(murmur.decimal(o, 't') == '19.99' and murmur.decimal(o, 's') == nil)\n"
     "assert(murmur.decimal(o, 'nope') == nil)\n"
     "assert(murmur.decimal(o.l, 1) == '0.10' and murmur.decimal(o.ns, 1) == '7.50')\n"
     "o.t = 2.5\n"
     "assert(murmur.decimal(o, 't') == '2.5')        -- the script's value now\n"
     "assert(murmur.decimal(rec.dynamodb, 'SizeBytes') == '100')\n"
     "assert(murmur.decimal({x = 3}, 'x') == '3' and murmur.decimal({x = 's'}, 'x') == nil)\n"
     "local ok, e = pcall(murmur.decimal, o)\n"
     "assert(not ok and e:find('bad argument #2'), e)\n"
     "ok, e = pcall(murmur.decimal, 'o', 'k')\n"
     "assert(not ok and e:find('bad argument #1'), e)\n"},
    {"decimal does not need the table filled", "INSERT", NULL, IMG(N("t", "1.50")), NULL,
     "local o = rawget(rec.dynamodb, 'NewImage')\n"
     "assert(next(o) == nil)                         -- still lazy\n"
     "assert(murmur.decimal(o, 't') == '1.50')\n"
     "assert(next(o) == nil)\n"},
    {"kind and materialize", "INSERT", NULL,
     IMG("\"m\":{\"M\":{\"x\":{\"L\":[]}}},\"ss\":{\"SS\":[\"a\"]}"), NULL,
     "local o = rec.dynamodb.NewImage\n"
     "assert(core.kind(o) == 'M' and core.kind(o.m) == 'M' and core.kind(o.ss) == 'SS')\n"
     "assert(core.kind(o.m.x) == 'L' and core.kind({}) == nil and core.kind(1) == nil)\n"
     "local old = rawget(rec.dynamodb, 'Keys')\n"
     "assert(next(old) == nil)\n"
     "assert(core.materialize(rec) == rec)\n"
     "assert(next(old) ~= nil and cjson.encode(old) == '{\"id\":\"k\"}')\n"},
};

START_TEST(test_core) {
  run_cases(CORE_CASES, sizeof CORE_CASES / sizeof CORE_CASES[0]);
}
END_TEST

/* ------------------------------------------------------------------ */
/* murmur.changed                                                       */
/* ------------------------------------------------------------------ */

static const mcase_t CHANGED_CASES[] = {
    {"INSERT: present", "INSERT", NULL, IMG(N("total", "5")), NULL,
     "assert(murmur.changed(rec, 'total') == true)\n"
     "assert(murmur.changed(rec, 'other') == false)\n"},
    {"REMOVE: present in OldImage", "REMOVE", NULL, NULL, IMG(N("total", "5")),
     "assert(murmur.changed(rec, 'total') == true)\n"
     "assert(murmur.changed(rec, 'other') == false)\n"},
    {"MODIFY: same, different, added, removed", "MODIFY", NULL,
     IMG(N("same", "1") "," N("diff", "2") "," S("added", "x") ","
         "\"f\":{\"BOOL\":false},\"n\":{\"NULL\":true}"),
     IMG(N("same", "1") "," N("diff", "3") "," S("removed", "y") ","
         "\"f\":{\"BOOL\":false},\"n\":{\"NULL\":true}"),
     "assert(murmur.changed(rec, 'same') == false)\n"
     "assert(murmur.changed(rec, 'diff') == true)\n"
     "assert(murmur.changed(rec, 'added') == true)\n"
     "assert(murmur.changed(rec, 'removed') == true)\n"
     "assert(murmur.changed(rec, 'absent') == false)\n"
     "assert(murmur.changed(rec, 'f') == false and murmur.changed(rec, 'n') == false)\n"},
    {"MODIFY: false to true and type change", "MODIFY", NULL,
     IMG("\"f\":{\"BOOL\":true}," S("t", "1")), IMG("\"f\":{\"BOOL\":false}," N("t", "1")),
     "assert(murmur.changed(rec, 'f') == true and murmur.changed(rec, 't') == true)\n"},
    {"MODIFY: numbers compared exactly", "MODIFY", NULL,
     IMG(N("big", "12345678901234567890123456789012345678") "," N("eq", "1.50")),
     IMG(N("big", "12345678901234567890123456789012345677") "," N("eq", "1.5")),
     "local o = rec.dynamodb\n"
     "assert(o.NewImage.big == o.OldImage.big)       -- the same float\n"
     "assert(murmur.changed(rec, 'big') == true)\n"
     "assert(murmur.changed(rec, 'eq') == false)\n"},
    {"MODIFY: deep M and L", "MODIFY", NULL,
     IMG("\"m\":{\"M\":{\"a\":{\"L\":[{\"N\":\"1\"},{\"M\":{\"z\":{\"S\":\"q\"}}}]}}},"
         "\"m2\":{\"M\":{\"a\":{\"L\":[{\"N\":\"1\"},{\"N\":\"2\"}]}}},"
         "\"m3\":{\"M\":{\"a\":{\"S\":\"x\"}}},"
         "\"e\":{\"L\":[]}"),
     IMG("\"m\":{\"M\":{\"a\":{\"L\":[{\"N\":\"1\"},{\"M\":{\"z\":{\"S\":\"q\"}}}]}}},"
         "\"m2\":{\"M\":{\"a\":{\"L\":[{\"N\":\"1\"},{\"N\":\"3\"}]}}},"
         "\"m3\":{\"M\":{\"a\":{\"S\":\"x\"},\"b\":{\"S\":\"y\"}}},"
         "\"e\":{\"M\":{}}"),
     "assert(murmur.changed(rec, 'm') == false)\n"
     "assert(murmur.changed(rec, 'm2') == true)\n"
     "assert(murmur.changed(rec, 'm3') == true)      -- a key only in the old\n"
     "assert(murmur.changed(rec, 'e') == true)       -- empty L vs empty M\n"},
    {"MODIFY: sets are unordered", "MODIFY", NULL,
     IMG("\"s\":{\"SS\":[\"a\",\"b\"]},\"n\":{\"NS\":[\"1\",\"2\"]},"
         "\"b\":{\"BS\":[\"AA==\",\"AQ==\"]},\"s2\":{\"SS\":[\"a\"]},"
         "\"n2\":{\"NS\":[\"12345678901234567890123456789012345678\"]}"),
     IMG("\"s\":{\"SS\":[\"b\",\"a\"]},\"n\":{\"NS\":[\"2.0\",\"1\"]},"
         "\"b\":{\"BS\":[\"AQ==\",\"AA==\"]},\"s2\":{\"SS\":[\"a\",\"b\"]},"
         "\"n2\":{\"NS\":[\"12345678901234567890123456789012345677\"]}"),
     "assert(murmur.changed(rec, 's') == false)\n"
     "assert(murmur.changed(rec, 'n') == false)\n"
     "assert(murmur.changed(rec, 'b') == false)\n"
     "assert(murmur.changed(rec, 's2') == true)\n"
     "assert(murmur.changed(rec, 'n2') == true)\n"},
    {"KEYS_ONLY: Keys stand in", "INSERT", IMG(S("pk", "a") "," N("sk", "1")), NULL, NULL,
     "assert(murmur.changed(rec, 'pk') == true and murmur.changed(rec, 'total') == false)\n"},
    {"KEYS_ONLY MODIFY: nothing to compare", "MODIFY", IMG(S("pk", "a")), NULL, NULL,
     "assert(murmur.changed(rec, 'pk') == false and murmur.changed(rec, 'total') == false)\n"},
    {"NEW_IMAGE MODIFY: the old side is the Keys", "MODIFY", IMG(S("id", "k")),
     IMG(S("id", "k") "," N("total", "5")), NULL,
     "assert(murmur.changed(rec, 'total') == true and murmur.changed(rec, 'id') == false)\n"},
    {"bad arguments", "INSERT", NULL, IMG(N("total", "5")), NULL,
     "local ok, e = pcall(murmur.changed, nil, 'x')\n"
     "assert(not ok and e:find(\"bad argument #1 to 'changed'\"), e)\n"
     "ok, e = pcall(murmur.changed, rec)\n"
     "assert(not ok and e:find('bad argument #2'), e)\n"
     "assert(murmur.changed({}, 'x') == false)     -- no dynamodb: nothing\n"},
    {"script-made values compare too", "MODIFY", NULL, IMG(N("t", "1")), IMG(N("t", "1")),
     "rec.dynamodb.NewImage.t = 1.0\n"
     "assert(murmur.changed(rec, 't') == false)\n"
     "rec.dynamodb.NewImage.t = 1e300\n"
     "assert(murmur.changed(rec, 't') == true)\n"
     "rec.dynamodb.OldImage.t = 1e300\n"
     "assert(murmur.changed(rec, 't') == false)\n"},
};

START_TEST(test_changed) {
  run_cases(CHANGED_CASES, sizeof CHANGED_CASES / sizeof CHANGED_CASES[0]);
}
END_TEST

/* ------------------------------------------------------------------ */
/* murmur.delta                                                         */
/* ------------------------------------------------------------------ */

static const mcase_t DELTA_CASES[] = {
    {"INSERT: new", "INSERT", NULL, IMG(N("total", "19.99")), NULL,
     "assert(murmur.delta(rec, 'total') == 19.99)\n"},
    {"REMOVE: -old", "REMOVE", NULL, NULL, IMG(N("total", "9.99")),
     "assert(murmur.delta(rec, 'total') == -9.99)\n"},
    {"MODIFY: exact 0.3 - 0.1", "MODIFY", NULL, IMG(N("total", "0.3")), IMG(N("total", "0.1")),
     "assert(0.3 - 0.1 ~= 0.2)                        -- floats would be off\n"
     "assert(murmur.delta(rec, 'total') == 0.2)\n"},
    {"MODIFY: unchanged is integer 0", "MODIFY", NULL, IMG(N("total", "19.99")),
     IMG(N("total", "19.99")),
     "local d = murmur.delta(rec, 'total')\n"
     "assert(d == 0 and math.type(d) == 'integer')\n"},
    {"MODIFY: integers stay integers", "MODIFY", NULL, IMG(N("n", "5")), IMG(N("n", "3")),
     "local d = murmur.delta(rec, 'n')\n"
     "assert(d == 2 and math.type(d) == 'integer')\n"},
    {"MODIFY: 38 digits", "MODIFY", NULL,
     IMG(N("n", "12345678901234567890123456789012345678")),
     IMG(N("n", "12345678901234567890123456789012345677")),
     "assert(rec.dynamodb.NewImage.n - rec.dynamodb.OldImage.n == 0)\n"
     "assert(murmur.delta(rec, 'n') == 1)\n"},
    {"MODIFY: a missing side counts as 0", "MODIFY", NULL,
     IMG(N("a", "4") "," S("s", "x")), IMG(N("b", "1.5") "," N("s2", "1")),
     "assert(murmur.delta(rec, 'a') == 4 and murmur.delta(rec, 'b') == -1.5)\n"
     "assert(murmur.delta(rec, 'none') == nil)\n"},
    {"not a number: nil", "MODIFY", NULL,
     IMG(S("s", "1") "," N("m", "2") ",\"l\":{\"L\":[]}"),
     IMG(S("s", "0") "," S("m", "1")),
     "assert(murmur.delta(rec, 's') == nil and murmur.delta(rec, 'm') == nil)\n"
     "assert(murmur.delta(rec, 'l') == nil)\n"},
    {"outside DynamoDB's range: float fallback", "MODIFY", NULL,
     IMG(N("n", "9.9999999999999999999999999999999999999E+125")),
     IMG(N("n", "-9.9999999999999999999999999999999999999E+125")),
     "assert(murmur.delta(rec, 'n') == 2e126)\n"},
    {"script-modified value", "MODIFY", NULL, IMG(N("t", "10")), IMG(N("t", "0.1")),
     "rec.dynamodb.NewImage.t = 0.3\n"
     "assert(murmur.delta(rec, 't') == 0.2)\n"
     "rec.dynamodb.NewImage.t = 0/0\n"
     "local d = murmur.delta(rec, 't')\n"
     "assert(d ~= d)                                 -- NaN in, NaN out\n"},
    {"KEYS_ONLY REMOVE", "REMOVE", IMG(N("id", "7")), NULL, NULL,
     "assert(murmur.delta(rec, 'id') == -7 and murmur.delta(rec, 'total') == nil)\n"},
    {"bad arguments", "INSERT", NULL, IMG(N("total", "5")), NULL,
     "local ok, e = pcall(murmur.delta, 'rec', 'x')\n"
     "assert(not ok and e:find(\"bad argument #1 to 'delta'\"), e)\n"
     "ok, e = pcall(murmur.delta, rec, nil)\n"
     "assert(not ok and e:find('bad argument #2'), e)\n"},
};

START_TEST(test_delta) {
  run_cases(DELTA_CASES, sizeof DELTA_CASES / sizeof DELTA_CASES[0]);
}
END_TEST

/* Protected: pushes record `i` (argument 2) into global rec. */
static int push_nth(lua_State *L) {
  const mm_json_doc_t *doc = lua_touserdata(L, 1);
  lua_Integer want = lua_tointeger(L, 2);
  uint32_t recs = mm_json_get(doc, 0, "Records", 7), e = recs + 1;
  for (lua_Integer i = 1; i < want; i++) e = mm_json_next(doc, e);
  mm_conv_push_record(L, e);
  lua_setglobal(L, "rec");
  return 0;
}

/* Every record of fixtures covering INSERT/MODIFY/REMOVE and every view
 * type: changed/delta over every attribute name never raise, changed is a
 * boolean, delta a number or nil. */
START_TEST(test_fixture_records) {
  static const char *const FILES[] = {
      "java-libs-dynamo-event.json", "ankcorn-new-and-old-images-modify.json",
      "ankcorn-keys-only-remove.json", "ankcorn-old-image-insert.json",
      "go-dynamodb-event.json", "dotnet-dynamodb-event.json",
      "pt-java-dynamo-event-big.json",
  };
  static const char *const CODE =
      "local function names(t, acc) if t then for k in pairs(t) do acc[k] = true end end end\n"
      "local d = rec.dynamodb\n"
      "local acc, n = {}, 0\n"
      "names(d.Keys, acc); names(d.NewImage, acc); names(d.OldImage, acc)\n"
      "for k in pairs(acc) do\n"
      "  n = n + 1\n"
      "  assert(type(murmur.changed(rec, k)) == 'boolean')\n"
      "  local x = murmur.delta(rec, k)\n"
      "  assert(x == nil or type(x) == 'number')\n"
      "end\n"
      "assert(n > 0)\n";
  lua_State *L = new_state();
  int seen = 0;
  for (size_t f = 0; f < sizeof FILES / sizeof FILES[0]; f++) {
    size_t len;
    char *text = tu_fixture(FILES[f], &len);
    mm_json_doc_t doc;
    mm_err_t err;
    ck_assert_int_eq(mm_json_parse(&doc, text, len, 0, &err), 0);
    mm_conv_set_doc(L, &doc, 64);
    uint32_t n = mm_json_len(&doc, mm_json_get(&doc, 0, "Records", 7));
    for (uint32_t i = 1; i <= n; i++) {
      lua_pushcfunction(L, push_nth);
      lua_pushlightuserdata(L, &doc);
      lua_pushinteger(L, i);
      ck_assert_int_eq(lua_pcall(L, 2, 0, 0), LUA_OK);
      if (luaL_dostring(L, CODE) != LUA_OK)
        ck_abort_msg("%s record %u: %s", FILES[f], (unsigned)i, lua_tostring(L, -1));
      seen++;
    }
    mm_conv_set_doc(L, NULL, 0);
    mm_json_free(&doc);
    free(text);
  }
  ck_assert_int_ge(seen, 20);
  lua_close(L);
}
END_TEST

/* The java-libs console sample: INSERT, MODIFY, REMOVE of one item. */
START_TEST(test_console_sample) {
  lua_State *L = new_state();
  size_t len;
  char *text = tu_fixture("java-libs-dynamo-event.json", &len);
  mm_json_doc_t doc;
  mm_err_t err;
  ck_assert_int_eq(mm_json_parse(&doc, text, len, 0, &err), 0);
  mm_conv_set_doc(L, &doc, 64);
  static const char *const CHECKS[] = {
      "assert(rec.eventName == 'INSERT' and murmur.changed(rec, 'Message'))\n"
      "assert(murmur.delta(rec, 'Id') == 101 and murmur.delta(rec, 'Message') == nil)\n",
      "assert(rec.eventName == 'MODIFY' and murmur.changed(rec, 'Message'))\n"
      "assert(not murmur.changed(rec, 'Id') and murmur.delta(rec, 'Id') == 0)\n",
      "assert(rec.eventName == 'REMOVE' and murmur.changed(rec, 'Message'))\n"
      "assert(murmur.delta(rec, 'Id') == -101)\n",
  };
  for (int i = 0; i < 3; i++) {
    lua_pushcfunction(L, push_nth);
    lua_pushlightuserdata(L, &doc);
    lua_pushinteger(L, i + 1);
    ck_assert_int_eq(lua_pcall(L, 2, 0, 0), LUA_OK);
    if (luaL_dostring(L, CHECKS[i]) != LUA_OK)
      ck_abort_msg("record %d: %s", i + 1, lua_tostring(L, -1));
  }
  mm_conv_set_doc(L, NULL, 0);
  mm_json_free(&doc);
  free(text);
  lua_close(L);
}
END_TEST

static Suite *murmur_suite(void) {
  Suite *s = suite_create("murmur");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_core);
  suite_add_tcase(s, tc);
  tc = tcase_create("helpers");
  tcase_add_test(tc, test_changed);
  tcase_add_test(tc, test_delta);
  tcase_add_test(tc, test_fixture_records);
  tcase_add_test(tc, test_console_sample);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(murmur_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

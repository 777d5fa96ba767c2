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
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "conv.h"
#include "decimal.h"
#include "json.h"
#include "murmur_lua.h"
#include "script.h"
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
  mm_conv_open(L, NULL);
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
     "local o = rec.dynamodb.NewImage\n"
     "assert(next(o) == nil)                         -- still lazy\n"
     "assert(murmur.decimal(o, 't') == '1.50')\n"
     "assert(next(o) == nil)\n"},
    {"kind and materialize", "INSERT", NULL,
     IMG("\"m\":{\"M\":{\"x\":{\"L\":[]}}},\"ss\":{\"SS\":[\"a\"]}"), NULL,
     "local o = rec.dynamodb.NewImage\n"
     "assert(core.kind(o) == 'M' and core.kind(o.m) == 'M' and core.kind(o.ss) == 'SS')\n"
     "assert(core.kind(o.m.x) == 'L' and core.kind({}) == nil and core.kind(1) == nil)\n"
     "local old = rec.dynamodb.Keys\n"
     "assert(next(old) == nil)\n"
     "assert(murmur.materialize == core.materialize)\n"
     "assert(rawget(rec, 'eventID') == nil)          -- not read yet\n"
     "assert(core.materialize(rec) == rec and rawget(rec, 'eventID') == '1')\n"
     "assert(next(old) ~= nil and cjson.encode(old) == '{\"id\":\"k\"}')\n"},
};

START_TEST(test_core) {
  run_cases(CORE_CASES, sizeof CORE_CASES / sizeof CORE_CASES[0]);
}
END_TEST

/* murmur.decimal of a plain table that got the memory of a collected
 * converted one is the number's own text, not the event's. */
START_TEST(test_decimal_reused_address) {
  static char img[8000];
  img[0] = '{';
  size_t n = 1 + tu_list_member(img + 1, sizeof img - 2, "l", 250,
                                "{\"M\":{\"t\":{\"N\":\"1.50\"}}}");
  img[n++] = '}';
  img[n] = '\0';
  const mcase_t c = {
      "decimal at a reused address", "INSERT", NULL, img, NULL,
      "local o = rec.dynamodb.NewImage\n"
      "local l = o.l\n"
      "for i = 1, #l do\n"
      "  assert(murmur.decimal(l[i], 't') == '1.50' and l[i].t == 1.5)\n"
      "  assert(murmur.decimal(l[i], 't') == '1.50' and core.kind(l[i]) == 'M')\n"
      "end\n"
      "o.l, l = nil, nil\n"
      "collectgarbage(); collectgarbage()\n"
      "for i = 1, 2000 do\n"
      "  local t = {t = 1.5}\n"
      "  assert(murmur.decimal(t, 't') == '1.5' and core.kind(t) == nil, i)\n"
      "end\n"};
  run_cases(&c, 1);
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
    {"read from the event, image left unconverted", "MODIFY", NULL,
     IMG(N("t", "812.36") "," S("c", "x")), IMG(N("t", "800.1")),
     "local n, o = rec.dynamodb.NewImage, rec.dynamodb.OldImage\n"
     "assert(murmur.delta(rec, 't') == 12.26)\n"
     "assert(next(n) == nil and next(o) == nil)      -- nothing converted\n"
     "assert(n.t == 812.36 and murmur.delta(rec, 't') == 12.26)  -- converted: same\n"
     "assert(murmur.delta(rec, 'c') == nil and n.c == 'x')\n"},
    {"deleted or written before any read", "MODIFY", NULL, IMG(N("t", "5") "," N("u", "1")),
     IMG(N("t", "2") "," N("u", "1")),
     "rec.dynamodb.OldImage.t = nil\n"
     "assert(murmur.delta(rec, 't') == 5)            -- old side now absent\n"
     "rec.dynamodb.NewImage.u = 4\n"
     "assert(murmur.delta(rec, 'u') == 3)\n"
     "rec.dynamodb.NewImage.u = 'x'\n"
     "assert(murmur.delta(rec, 'u') == nil)\n"},
    {"images replaced by the script", "MODIFY", NULL, IMG(N("t", "5")), IMG(N("t", "2")),
     "rec.dynamodb.NewImage = {t = 10}\n"
     "assert(murmur.delta(rec, 't') == 8)\n"
     "rec.dynamodb.NewImage = false                  -- 'new or keys'\n"
     "assert(murmur.delta(rec, 't') == -2)\n"
     "rec.eventName = 'OTHER'                        -- old, new as they are\n"
     "local ok, e = pcall(murmur.delta, rec, 't')\n"
     "assert(not ok and e:find('index a boolean'), e)\n"
     "rec.dynamodb = 5\n"
     "assert(murmur.delta(rec, 't') == nil)\n"},
    {"conversion errors surface", "MODIFY", NULL,
     IMG("\"t\":{\"N\":\"1x\"},\"b\":{\"N\":\"1\",\"S\":\"2\"}"), IMG(N("t", "1")),
     "local ok, e = pcall(murmur.delta, rec, 't')\n"
     "assert(not ok and e:find('NewImage.t: invalid number in N'), e)\n"
     "ok, e = pcall(murmur.delta, rec, 'b')\n"
     "assert(not ok and e:find('more than one type'), e)\n"},
    {"escaped and exponent texts", "MODIFY", NULL,
     IMG("\"t\":{\"N\":\"\\u0031.5\"}," N("e", "1.5E+3") "," N("z", "-0.000")),
     IMG(N("t", "0.25") "," N("e", "25e-1") "," N("z", "0")),
     "local d = murmur.delta(rec, 't')\n"
     "assert(d == 1.25 and math.type(d) == 'float')\n"
     "d = murmur.delta(rec, 'e')\n"
     "assert(d == 1497.5)\n"
     "d = murmur.delta(rec, 'z')\n"
     "assert(d == 0 and math.type(d) == 'integer')\n"},
    {"KEYS_ONLY REMOVE", "REMOVE", IMG(N("id", "7")), NULL, NULL,
     "assert(murmur.delta(rec, 'id') == -7 and murmur.delta(rec, 'total') == nil)\n"},
    /* read through a view (nothing converted): the script's writes and
     * deletions must win over the event, exactly as in Lua */
    {"view: nothing converted", "MODIFY", NULL, IMG(N("t", "812.36")), IMG(N("t", "800.1")),
     "local d = rawget(rec, 'dynamodb')\n"
     "local n = rawget(d, 'NewImage')\n"
     "assert(murmur.delta(rec, 't') == 12.26)\n"
     "assert(next(n) == nil and rawget(d, 'OldImage') == nil)  -- images untouched\n"
     "assert(rawget(rec, 'eventName') == nil)        -- read from the event\n"
     "assert(murmur.delta(rec, 't') == 12.26 and next(n) == nil)\n"},
    {"view: eventName written", "INSERT", NULL, IMG(N("t", "5")), IMG(N("t", "2")),
     "assert(murmur.delta(rec, 't') == 5)\n"
     "rec.eventName = 'REMOVE'\n"
     "assert(murmur.delta(rec, 't') == -2)\n"
     "rec.eventName = 'MODIFY'\n"
     "assert(murmur.delta(rec, 't') == 3)\n"
     "rec.eventName = nil                            -- old, new as they are\n"
     "assert(murmur.delta(rec, 't') == 3)\n"
     "rawset(rec, 'eventName', 'INSERT')\n"
     "assert(murmur.delta(rec, 't') == 5)\n"},
    {"view: eventName raw-set before any read", "MODIFY", NULL, IMG(N("t", "5")), IMG(N("t", "2")),
     "rawset(rec, 'eventName', 'REMOVE')\n"
     "assert(murmur.delta(rec, 't') == -2)\n"},
    {"view: image deleted before any read", "MODIFY", IMG(N("t", "1")), IMG(N("t", "5")),
     IMG(N("t", "2")),
     "rec.dynamodb.OldImage = nil                   -- old or keys\n"
     "assert(murmur.delta(rec, 't') == 4)\n"
     "rec.dynamodb.NewImage = nil\n"
     "assert(murmur.delta(rec, 't') == 0)\n"
     "rec.dynamodb.Keys = nil\n"
     "assert(murmur.delta(rec, 't') == nil)\n"},
    {"view: field written in an unread image", "MODIFY", NULL, IMG(N("t", "5") "," N("u", "1")),
     IMG(N("t", "2") "," N("u", "1")),
     "local n = rec.dynamodb.NewImage\n"
     "n.t = 7\n"
     "assert(murmur.delta(rec, 't') == 5)\n"
     "n.t = nil\n"
     "assert(murmur.delta(rec, 't') == -2)\n"
     "rawset(n, 'u', 11)\n"
     "assert(murmur.delta(rec, 'u') == 10)\n"
     "rawset(n, 'u', 'x')\n"
     "assert(murmur.delta(rec, 'u') == nil)\n"},
    {"view: dynamodb replaced", "MODIFY", NULL, IMG(N("t", "5")), IMG(N("t", "2")),
     "rec.dynamodb = {NewImage = {t = 1.5}, OldImage = {t = 1}}\n"
     "assert(murmur.delta(rec, 't') == 0.5)\n"
     "rec.dynamodb = {Keys = {t = 9}}\n"
     "assert(murmur.delta(rec, 't') == 0)\n"
     "rec.dynamodb = nil\n"
     "assert(murmur.delta(rec, 't') == nil)\n"},
    {"view: metatables run as in Lua", "MODIFY", NULL, IMG(N("t", "5")), IMG(N("t", "2")),
     "local calls = 0\n"
     "local r = setmetatable({}, {__index = function(_, k) calls = calls + 1; return rec[k] end})\n"
     "assert(murmur.delta(r, 't') == 3 and calls == 2)  -- dynamodb, eventName\n"
     "local img = setmetatable({}, {__index = function() calls = calls + 1; return 40 end})\n"
     "rec.dynamodb.NewImage = img\n"
     "assert(murmur.delta(rec, 't') == 38 and calls == 3)\n"},
    {"view: null and absent images", "MODIFY", IMG(N("t", "3")), "null", IMG(N("t", "2")),
     "assert(murmur.delta(rec, 't') == 1)             -- new or keys\n"
     "assert(rec.dynamodb.NewImage == nil and murmur.delta(rec, 't') == 1)\n"},
    {"view: escaped eventName and keys", "\\u0052EMOVE", NULL, NULL,
     "{\"\\u0074\":{\"N\":\"4\"}}",
     "assert(murmur.delta(rec, 't') == -4)\n"},
    {"view: other types and odd texts", "MODIFY", NULL,
     IMG(S("s", "1") ",\"m\":{\"M\":{}}," N("big", "12345678901234567890123456789012345678")
         ",\"j\":{\"N\":5},\"x\":{\"N\":\"1e400\"}"),
     IMG(N("s", "0") "," N("m", "1") "," N("big", "-1") "," N("j", "2") "," N("x", "1")),
     "assert(murmur.delta(rec, 's') == nil and murmur.delta(rec, 'm') == nil)\n"
     "local d = murmur.delta(rec, 'big')\n"
     "assert(math.type(d) == 'float' and d == 1.2345678901234567890123456789012345679e37)\n"
     "assert(murmur.delta(rec, 'j') == 3)\n"
     "local ok, e = pcall(murmur.delta, rec, 'x')  -- what converting it gives\n"
     "local ok2, e2 = pcall(function() return rec.dynamodb.NewImage.x end)\n"
     "assert(ok == ok2, tostring(e))\n"},
    {"view: record of an earlier invocation", "INSERT", NULL, IMG(N("t", "5")), NULL,
     "assert(murmur.delta(rec, 't') == 5)\n"
     "old_rec = rec                                  -- checked by the next case\n"},
    {"view: stale record raises", "INSERT", NULL, IMG(N("t", "6")), NULL,
     "local ok, e = pcall(murmur.delta, old_rec, 't')\n"
     "assert(not ok and e:find('earlier invocation'), e)\n"
     "assert(murmur.delta(rec, 't') == 6)\n"},
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

/* The Lua implementation murmur.delta had before core.delta: the
 * reference the C version must agree with, result for result. */
static const char *REF_DELTA =
    "local function sides(rec)\n"
    "  local ddb = rec.dynamodb\n"
    "  if type(ddb) ~= 'table' then return nil, nil end\n"
    "  local ev = rec.eventName\n"
    "  local new, old, keys = ddb.NewImage, ddb.OldImage, ddb.Keys\n"
    "  if ev == 'INSERT' then return nil, new or keys end\n"
    "  if ev == 'REMOVE' then return old or keys, nil end\n"
    "  if ev == 'MODIFY' then return old or keys, new or keys end\n"
    "  return old, new\n"
    "end\n"
    "function ref_delta(rec, field)\n"
    "  local old, new = sides(rec)\n"
    "  local ov, nv = old and old[field], new and new[field]\n"
    "  if ov == nil and nv == nil then return nil end\n"
    "  if (ov ~= nil and type(ov) ~= 'number') or (nv ~= nil and type(nv) ~= 'number') then\n"
    "    return nil\n"
    "  end\n"
    "  local a = nv == nil and '0' or core.decimal(new, field)\n"
    "  local b = ov == nil and '0' or core.decimal(old, field)\n"
    "  if a and b then\n"
    "    local ok, d = pcall(core.dec_sub, a, b)\n"
    "    if ok then return core.tonumber(d) end\n"
    "  end\n"
    "  return (nv or 0) - (ov or 0)\n"
    "end\n"
    "function same(x, y)\n"
    "  if x ~= x then return y ~= y end\n"
    "  return x == y and math.type(x) == math.type(y)\n"
    "end\n";

/* A small deterministic generator (xorshift64*). */
static uint64_t rng_state = 88172645463325252ull;
static uint64_t rng(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ull;
}

/* Writes a random N text of one of many shapes into buf. */
static void random_n(char *buf, size_t cap) {
  char digits[64];
  int nd = 1 + (int)(rng() % (rng() % 4 == 0 ? 38 : 12));
  for (int i = 0; i < nd; i++) digits[i] = (char)('0' + rng() % 10);
  if (rng() % 3) digits[0] = (char)('1' + rng() % 9); /* mostly no leading zero */
  digits[nd] = '\0';
  const char *sign = rng() % 4 == 0 ? "-" : "";
  int point = rng() % 3 ? (int)(rng() % (unsigned)(nd + 1)) : nd; /* digits before '.' */
  if (point == 0) point = 1;
  char body[80];
  if (point < nd)
    snprintf(body, sizeof body, "%.*s.%s", point, digits, digits + point);
  else
    snprintf(body, sizeof body, "%s", digits);
  switch (rng() % 8) {
  case 0: snprintf(buf, cap, "%s%sE%+d", sign, body, (int)(rng() % 40) - 20); break;
  case 1: snprintf(buf, cap, "%s%se%d", sign, body, (int)(rng() % 5)); break;
  case 2: snprintf(buf, cap, "%s0.%s", sign, digits); break;
  case 3: snprintf(buf, cap, "%s%s000", sign, body); break;
  default: snprintf(buf, cap, "%s%s", sign, body); break;
  }
}

/* Protected: pushes every record of the document (argument 1) twice, into
 * globals a and b (independent tables of the same records). */
static int push_all_twice(lua_State *L) {
  const mm_json_doc_t *doc = lua_touserdata(L, 1);
  uint32_t recs = mm_json_get(doc, 0, "Records", 7);
  for (int pass = 0; pass < 2; pass++) {
    uint32_t e = recs + 1;
    lua_createtable(L, (int)mm_json_len(doc, recs), 0);
    for (uint32_t i = 0; i < mm_json_len(doc, recs); i++) {
      mm_conv_push_record(L, e);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
      e = mm_json_next(doc, e);
    }
    lua_setglobal(L, pass ? "b" : "a");
  }
  return 0;
}

/* core.delta agrees with the former Lua implementation on random decimal
 * texts (short ones take the int64 path, long ones and exponents the
 * exact one, some only the float fallback), on untouched images, on
 * converted ones and on missing sides. */
START_TEST(test_delta_matches_reference) {
  static const char *const EVENTS[] = {"INSERT", "MODIFY", "REMOVE", "MODIFY"};
  enum { NREC = 400 };
  size_t cap = NREC * 400 + 64, n = 0;
  char *json = malloc(cap);
  ck_assert_ptr_nonnull(json);
  n += (size_t)snprintf(json + n, cap - n, "{\"Records\":[");
  for (int i = 0; i < NREC; i++) {
    char x[96], y[96];
    random_n(x, sizeof x);
    random_n(y, sizeof y);
    int shape = (int)(rng() % 10);
    n += (size_t)snprintf(json + n, cap - n,
                          "%s{\"eventName\":\"%s\",\"dynamodb\":{\"Keys\":{\"k\":{\"N\":\"1\"}}",
                          i ? "," : "", EVENTS[i % 4]);
    if (shape != 1)
      n += (size_t)snprintf(json + n, cap - n, ",\"NewImage\":{\"x\":{\"N\":\"%s\"}}", x);
    if (shape != 2)
      n += (size_t)snprintf(json + n, cap - n,
                            ",\"OldImage\":{\"x\":{\"N\":\"%s\"},\"s\":{\"S\":\"t\"}}", y);
    n += (size_t)snprintf(json + n, cap - n, "}}");
  }
  n += (size_t)snprintf(json + n, cap - n, "]}");
  ck_assert(n < cap);

  lua_State *L = new_state();
  ck_assert_int_eq(luaL_dostring(L, REF_DELTA), LUA_OK);
  mm_json_doc_t doc;
  mm_err_t err;
  ck_assert_int_eq(mm_json_parse(&doc, json, n, 0, &err), 0);
  mm_conv_set_doc(L, &doc, 64);
  lua_pushcfunction(L, push_all_twice);
  lua_pushlightuserdata(L, &doc);
  ck_assert_int_eq(lua_pcall(L, 1, 0, 0), LUA_OK);
  static const char *const CODE =
      "local paths = {0, 0}\n"
      "for i = 1, #a do\n"
      "  for _, f in ipairs({'x', 's', 'k', 'none'}) do\n"
      "    local want = ref_delta(b[i], f)\n"
      "    local got = core.delta(a[i], f)       -- images untouched\n"
      "    assert(same(got, want), ('record %d %s: %s vs %s'):format(i, f, tostring(got), tostring(want)))\n"
      "    core.materialize(a[i])\n"
      "    got = core.delta(a[i], f)             -- images converted\n"
      "    assert(same(got, want), ('record %d %s (converted): %s vs %s'):format(i, f, tostring(got), tostring(want)))\n"
      "    if f == 'x' and want then\n"
      "      local j = math.type(want) == 'integer' and 1 or 2\n"
      "      paths[j] = paths[j] + 1\n"
      "    end\n"
      "  end\n"
      "end\n"
      "return paths[1], paths[2]\n";
  if (luaL_dostring(L, CODE) != LUA_OK) ck_abort_msg("%s", lua_tostring(L, -1));
  ck_assert_int_gt(lua_tointeger(L, -2), 20); /* integer results seen */
  ck_assert_int_gt(lua_tointeger(L, -1), 20); /* float results seen */
  mm_conv_set_doc(L, NULL, 0);
  mm_json_free(&doc);
  free(json);
  lua_close(L);
}
END_TEST

/* Scripts' touches before murmur.delta: reads, writes, deletions and raw
 * writes of the record's members, the images and the field, applied alike
 * to two conversions of the same records; core.delta (which reads what it
 * can through a view) must agree with the Lua reference, errors
 * included. Each is `function(r)`. */
static const char *const TOUCHES[] = {
    "",
    "local _ = r.eventName",
    "r.eventName = 'REMOVE'",
    "r.eventName = 'INSERT'",
    "r.eventName = 'MODIFY'",
    "r.eventName = 'OTHER'",
    "r.eventName = nil",
    "rawset(r, 'eventName', 'REMOVE')",
    "local _ = r.dynamodb",
    "local _ = r.dynamodb.NewImage",
    "local _ = r.dynamodb.OldImage and r.dynamodb.OldImage.x",
    "r.dynamodb.NewImage = nil",
    "r.dynamodb.OldImage = nil",
    "r.dynamodb.OldImage = false",
    "r.dynamodb.Keys = nil",
    "r.dynamodb.Keys = {x = 2}",
    "rawset(r.dynamodb, 'NewImage', {x = '1.5'})",
    "if r.dynamodb.NewImage then r.dynamodb.NewImage.x = 0.1 end",
    "if r.dynamodb.OldImage then r.dynamodb.OldImage.x = nil end",
    "if r.dynamodb.OldImage then rawset(r.dynamodb.OldImage, 'x', 3) end",
    "if r.dynamodb.NewImage then r.dynamodb.NewImage.x = 's' end",
    "if r.dynamodb.NewImage then local _ = r.dynamodb.NewImage.x end",
    "r.dynamodb = {NewImage = {x = 4}, OldImage = {x = 1}}",
    "r.dynamodb = 'x'",
    "murmur.materialize(r)",
    "setmetatable(r.dynamodb, {__index = function() return 1 end})",
};

/* Protected: runs touch i (argument 1, 0-based) on rec a[j] and b[j]
 * (argument 2). */
static int apply_touch(lua_State *L) {
  int i = (int)lua_tointeger(L, 1);
  char code[512];
  snprintf(code, sizeof code, "return function(r) %s end", TOUCHES[i]);
  for (int pass = 0; pass < 2; pass++) {
    if (luaL_loadstring(L, code) != LUA_OK) lua_error(L);
    lua_call(L, 0, 1);
    lua_getglobal(L, pass ? "b" : "a");
    lua_rawgeti(L, -1, lua_tointeger(L, 2));
    lua_remove(L, -2);
    lua_call(L, 1, 0);
  }
  return 0;
}

/* The body of test_delta_after_touches; odd: the records also come with
 * names the event escapes or repeats (eventName, dynamodb, OldImage, the
 * field; an earlier dynamodb object, a null or stale OldImage before the
 * one that counts), which push_record_fast and the view must read as Lua
 * does. */
static void delta_after_touches(int odd) {
  static const char *const EVENTS[] = {"INSERT", "MODIFY", "REMOVE", "MODIFY", "OTHER"};
  /* own seed, and the generator left as it was for the tests after this
   * one (CK_FORK=no runs them in one process) */
  uint64_t saved = rng_state;
  rng_state = 0x9E3779B97F4A7C15ull;
  enum { NT = sizeof TOUCHES / sizeof TOUCHES[0], PER = 10, NREC = NT * PER };
  size_t cap = NREC * 900 + 64, n = 0;
  char *json = malloc(cap);
  ck_assert_ptr_nonnull(json);
  /* every third record and its dynamodb object carry more members than
   * conv prefills for, so their images stay on the tape for the view */
  char filler[400];
  size_t fl = 0;
  for (int j = 0; j < 23; j++) fl += (size_t)snprintf(filler + fl, sizeof filler - fl, "\"f%d\":%d,", j, j);
  n += (size_t)snprintf(json + n, cap - n, "{\"Records\":[");
  for (int i = 0; i < NREC; i++) {
    char x[96], y[96];
    random_n(x, sizeof x);
    random_n(y, sizeof y);
    int shape = (int)(rng() % 6);
    int odd_shape = odd ? (int)(rng() % 8) : 0;
    const char *fill = (i / NT) % 3 == 0 ? filler : "";
    n += (size_t)snprintf(json + n, cap - n,
                          "%s{%s\"eventID\":\"%d\",%s\"%s\":\"%s\",%s\"%s\":{%s"
                          "\"Keys\":{\"x\":{\"N\":\"1\"}}",
                          i ? "," : "", fill, i,
                          odd_shape == 2 ? "\"eventName\":\"INSERT\"," : "",
                          odd_shape == 1 ? "event\\u004eame" : "eventName", EVENTS[rng() % 5],
                          odd_shape == 7 ? "\"dynamodb\":{\"NewImage\":{\"x\":{\"N\":\"5\"}}}," : "",
                          odd_shape == 5 ? "dynamo\\u0064b" : "dynamodb", fill);
    if (shape != 1)
      n += (size_t)snprintf(json + n, cap - n, ",\"NewImage\":%s%s%s%s",
                            shape == 3 ? "null" : "{",
                            shape != 3 && odd_shape == 6 ? "\"x\":{\"N\":\"777\"},\"\\u0078\":{\"N\":\"" :
                            shape == 3 ? "" : "\"x\":{\"N\":\"",
                            shape == 3 ? "" : x, shape == 3 ? "" : "\"}}");
    if (odd_shape == 4)
      n += (size_t)snprintf(json + n, cap - n, ",\"OldImage\":%s",
                            i % 2 ? "null" : "{\"x\":{\"N\":\"999\"}}");
    if (shape != 2)
      n += (size_t)snprintf(json + n, cap - n, ",\"%s\":{\"x\":{%s\"%s\"}}",
                            odd_shape == 3 ? "Old\\u0049mage" : "OldImage",
                            shape == 4 ? "\"S\":" : "\"N\":", y);
    n += (size_t)snprintf(json + n, cap - n, "}}");
  }
  n += (size_t)snprintf(json + n, cap - n, "]}");
  ck_assert(n < cap);

  lua_State *L = new_state();
  /* the reference, except that an image that is neither nil nor a table
   * is indexed (an error), as core.delta has always done */
  const char *ref = luaL_gsub(L, REF_DELTA, "old and old[field], new and new[field]",
                              "old ~= nil and old[field] or nil, new ~= nil and new[field] or nil");
  ck_assert_ptr_nonnull(strstr(ref, "old ~= nil and old[field]"));
  ck_assert_int_eq(luaL_dostring(L, ref), LUA_OK);
  lua_pop(L, 1);
  mm_json_doc_t doc;
  mm_err_t err;
  ck_assert_int_eq(mm_json_parse(&doc, json, n, 0, &err), 0);
  mm_conv_set_doc(L, &doc, 64);
  lua_pushcfunction(L, push_all_twice);
  lua_pushlightuserdata(L, &doc);
  ck_assert_int_eq(lua_pcall(L, 1, 0, 0), LUA_OK);
  for (int i = 0; i < NREC; i++) {
    lua_pushcfunction(L, apply_touch);
    lua_pushinteger(L, i % NT);
    lua_pushinteger(L, i + 1);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK)
      ck_abort_msg("touch %d: %s", i % NT, lua_tostring(L, -1));
  }
  static const char *const CODE =
      "local function strip(e) return (tostring(e):gsub('^[^:]*:%d+: ', '')) end\n"
      "local agree = 0\n"
      "for i = 1, #a do\n"
      "  for _, f in ipairs({'x', 'k'}) do\n"
      "    local ok1, want = pcall(ref_delta, b[i], f)\n"
      "    local ok2, got = pcall(core.delta, a[i], f)\n"
      "    local what = ('record %d %s: %s %s vs %s %s'):format(i, f, tostring(ok2), tostring(got),\n"
      "                                                   tostring(ok1), tostring(want))\n"
      "    assert(ok1 == ok2, what)\n"
      "    if ok1 then assert(same(got, want), what) else assert(strip(got):sub(1, 30) == strip(want):sub(1, 30), what) end\n"
      "    if ok1 and want ~= nil then agree = agree + 1 end\n"
      "  end\n"
      "end\n"
      "return agree\n";
  if (luaL_dostring(L, CODE) != LUA_OK) ck_abort_msg("%s", lua_tostring(L, -1));
  ck_assert_int_gt(lua_tointeger(L, -1), NREC / 2);
  mm_conv_set_doc(L, NULL, 0);
  mm_json_free(&doc);
  free(json);
  lua_close(L);
  rng_state = saved;
}

START_TEST(test_delta_after_touches) {
  delta_after_touches(0);
}
END_TEST

START_TEST(test_delta_after_touches_odd_names) {
  delta_after_touches(1);
}
END_TEST

/* A value() float of a sum becomes the same exact decimal as
 * mm_dec_from_double gives, for amounts (where script.c takes a short
 * path) and for doubles of every kind. */
START_TEST(test_float_value_decimal) {
  enum { NV = 3000 };
  double *v = malloc(NV * sizeof *v);
  ck_assert_ptr_nonnull(v);
  for (int i = 0; i < NV; i++) {
    uint64_t r = rng();
    double x;
    switch (i % 5) {
    case 0: /* amounts: cents and friends */
      x = (double)(r % 100000000) / (double)(1 + 99 * (i % 2));
      break;
    case 1: { /* m / 10^k over the whole short range */
      uint64_t m = r % 1000000000000000ull;
      x = (double)m / pow(10, (double)(rng() % 23));
      break;
    }
    case 2: { /* any finite double in DynamoDB's range */
      do {
        uint64_t bits = rng();
        memcpy(&x, &bits, sizeof x);
      } while (!isfinite(x) || fabs(x) > 1e120 || (x != 0 && fabs(x) < 1e-120));
      break;
    }
    case 3: /* near the short path's edges */
      x = (r % 2 ? 1e15 : 1e-7) * (1 + ((double)(rng() % 2001) - 1000) * 1e-16);
      break;
    default: /* sums of short decimals (0.1 + 0.2) */
      x = (double)(r % 1000) / 10 + (double)(rng() % 1000) / 100;
      break;
    }
    v[i] = r % 3 == 0 ? -x : x;
  }
  /* decode.lua: value i is V[eventID] */
  size_t cap = NV * 32 + 512, n = 0;
  char *src = malloc(cap);
  ck_assert_ptr_nonnull(src);
  n += (size_t)snprintf(src + n, cap - n, "local V = {");
  /* every value a Lua float: an integral "%.17g" text would read back as
   * an integer and take the integer path instead */
  for (int i = 0; i < NV; i++) {
    char t[40];
    snprintf(t, sizeof t, "%.17g", v[i]);
    n += (size_t)snprintf(src + n, cap - n, "%s%s,", t, strpbrk(t, ".eEni") ? "" : ".0");
  }
  n += (size_t)snprintf(src + n, cap - n,
                        "}\nreturn {name = 'f', aggregate = 'sum',\n"
                        "  decode = function(rec) return V[tonumber(rec.eventID)] end,\n"
                        "  key = function() return 'k' end,\n"
                        "  value = function(x) return x end}\n");
  ck_assert(n < cap);
  const char *path = tu_write_temp(".lua", src);
  mm_script_opts_t o = {0, 0, NULL, 0};
  mm_script_t *s = NULL;
  mm_err_t err;
  ck_assert_msg(mm_script_load(&s, path, &o, &err) == 0, "%s", err.msg);
  char *ev = malloc(NV * 24 + 32);
  ck_assert_ptr_nonnull(ev);
  size_t en = (size_t)sprintf(ev, "{\"Records\":[");
  for (int i = 0; i < NV; i++) en += (size_t)sprintf(ev + en, "%s{\"eventID\":\"%d\"}", i ? "," : "", i + 1);
  en += (size_t)sprintf(ev + en, "]}");
  mm_json_doc_t doc;
  ck_assert_int_eq(mm_json_parse(&doc, ev, en, 0, &err), 0);
  mm_script_set_doc(s, &doc);
  uint32_t e = mm_json_get(&doc, 0, "Records", 7) + 1;
  int compared = 0;
  for (int i = 0; i < NV; i++) {
    mm_outcome_t out;
    mm_dec_t want;
    ck_assert_int_eq(mm_script_run_record(s, e, 0, &out), 0);
    if (mm_dec_from_double(&want, v[i], NULL) != 0) {
      ck_assert_int_eq(out.kind, MM_OUT_POISON);
    } else if (out.kind == MM_OUT_VALUE) {
      const mm_dec_t *got = &out.delta.v.num;
      ck_assert_msg(got->neg == want.neg && got->exp == want.exp && got->ndig == want.ndig &&
                        memcmp(got->dig, want.dig, (size_t)want.ndig) == 0,
                    "value %.17g: decimals differ", v[i]);
      compared++;
    } else {
      /* outside DynamoDB's range mm_dec_from_double already refused */
      ck_abort_msg("value %.17g: %s", v[i], out.err.msg);
    }
    mm_outcome_free(&out);
    e = mm_json_next(&doc, e);
  }
  ck_assert_int_gt(compared, NV * 9 / 10);
  mm_script_set_doc(s, NULL);
  mm_json_free(&doc);
  mm_script_destroy(s);
  unlink(path);
  free(ev);
  free(src);
  free(v);
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
  tcase_add_test(tc, test_decimal_reused_address);
  suite_add_tcase(s, tc);
  tc = tcase_create("helpers");
  tcase_add_test(tc, test_changed);
  tcase_add_test(tc, test_delta);
  tcase_add_test(tc, test_delta_matches_reference);
  tcase_add_test(tc, test_delta_after_touches);
  tcase_add_test(tc, test_delta_after_touches_odd_names);
  tcase_add_test(tc, test_float_value_decimal);
  tcase_add_test(tc, test_fixture_records);
  tcase_add_test(tc, test_console_sample);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return tu_run_suite(murmur_suite());
}

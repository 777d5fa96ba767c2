/*
 * check_conv.c - AttributeValue -> Lua (runtime/conv.c).
 *
 * Conversion cases are a table: AttributeValue JSON in, the canonical
 * rendering of the Lua value out (render() below: integers bare, floats
 * with a point or exponent, strings quoted with \xNN for bytes outside
 * printable ASCII, sequences [..], other tables {k=v} with sorted keys,
 * null for cjson.null). Each case runs twice: eagerly (mm_conv_push_av)
 * and lazily inside a record's NewImage (mm_conv_push_record, then
 * materialised); both must give the same rendering or error.
 *
 * Then: every fixture converts fully and agrees with a reference
 * unmarshaller written in Lua on top of cjson.decode; laziness; stale
 * tables; decimals; nesting limits; stack balance; allocation failure at
 * every allocation of a conversion (a counting allocator).
 */
#include <check.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "conv.h"
#include "json.h"
#include "testutil.h"

extern int luaopen_cjson(lua_State *L);

/* ------------------------------------------------------------------ */
/* Harness                                                              */
/* ------------------------------------------------------------------ */

/* An allocator that can fail every allocation from the fail_after-th on
 * (growth only: Lua assumes shrinking never fails) and counts bytes in
 * use, so a test can see that lua_close returned everything; with frees
 * set it reports freed blocks to conv itself (mm_conv_freed). */
typedef struct alloc_ctl {
  long fail_after; /* -1: never fail */
  long count;
  long failures;
  size_t in_use;
  mm_conv_frees_t *frees;
} alloc_ctl_t;

static void *test_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  alloc_ctl_t *a = ud;
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    if (a->frees) mm_conv_freed(a->frees, ptr, old);
    free(ptr);
    a->in_use -= old;
    return NULL;
  }
  if (nsize > old && a->fail_after >= 0) {
    if (a->count >= a->fail_after) {
      a->failures++;
      return NULL;
    }
    a->count++;
  }
  void *p = realloc(ptr, nsize);
  if (!p) return NULL;
  a->in_use = a->in_use - old + nsize;
  return p;
}

/* The renderer and a reference unmarshaller (used for the fixtures), in
 * Lua. render uses raw access only, so an unfilled lazy table shows as
 * {} - which is what the laziness tests rely on. */
static const char *HELPERS_LUA =
    "local cjson = cjson\n"
    "local function numstr(v)\n"
    "  if math.type(v) == 'integer' then return string.format('%d', v) end\n"
    "  if v ~= v then return 'nan' end\n"
    "  if v == math.huge then return 'inf' elseif v == -math.huge then return '-inf' end\n"
    "  local s\n"
    "  for p = 1, 17 do s = string.format('%.' .. p .. 'g', v)\n"
    "    if tonumber(s) == v then break end end\n"
    "  if not s:find('[%.eEn]') then s = s .. '.0' end\n"
    "  return s\n"
    "end\n"
    "local function strq(s)\n"
    "  return '\"' .. s:gsub('[\\\\\"]', '\\\\%0'):gsub('[^ -~]', function(c)\n"
    "    return string.format('\\\\x%02x', c:byte()) end) .. '\"'\n"
    "end\n"
    "function render(v)\n"
    "  local t = type(v)\n"
    "  if t == 'nil' then return 'nil' end\n"
    "  if t == 'boolean' then return tostring(v) end\n"
    "  if t == 'number' then return numstr(v) end\n"
    "  if t == 'string' then return strq(v) end\n"
    "  if v == cjson.null then return 'null' end\n"
    "  if t ~= 'table' then return '<' .. t .. '>' end\n"
    "  local n, count = rawlen(v), 0\n"
    "  for _ in next, v do count = count + 1 end\n"
    "  if n > 0 and count == n then\n"
    "    local out = {}\n"
    "    for i = 1, n do out[i] = render(rawget(v, i)) end\n"
    "    return '[' .. table.concat(out, ',') .. ']'\n"
    "  end\n"
    "  local out = {}\n"
    "  for k, x in next, v do out[#out + 1] = render(k) .. '=' .. render(x) end\n"
    "  table.sort(out)\n"
    "  return '{' .. table.concat(out, ',') .. '}'\n"
    "end\n"
    /* reference unmarshaller: cjson.decode output -> expected Lua value */
    "local B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'\n"
    "local function b64(s)\n"
    "  local out, bits, nb = {}, 0, 0\n"
    "  for c in s:gmatch('[^=]') do\n"
    "    bits = (bits << 6) | (B64:find(c, 1, true) - 1); nb = nb + 6\n"
    "    if nb >= 8 then nb = nb - 8; out[#out + 1] = string.char((bits >> nb) & 255) end\n"
    "  end\n"
    "  return table.concat(out)\n"
    "end\n"
    "local function num(x) local v = tonumber(x); return math.tointeger(v) or v end\n"
    "local av\n"
    "local function map(m) local r = {} for k, x in pairs(m) do r[k] = av(x) end return r end\n"
    "av = function(x)\n"
    "  local ty, val\n"
    "  for k, v in pairs(x) do\n"
    "    if v ~= cjson.null and not (k == 'NULL' and v == false) then ty, val = k, v end\n"
    "  end\n"
    "  if ty == 'S' or ty == 'BOOL' then return val end\n"
    "  if ty == 'N' then return num(val) end\n"
    "  if ty == 'B' then return b64(val) end\n"
    "  if ty == 'NULL' then return cjson.null end\n"
    "  if ty == 'M' then return map(val) end\n"
    "  local r = {}\n"
    "  for i, e in ipairs(val) do\n"
    "    if ty == 'L' then r[i] = av(e) elseif ty == 'NS' then r[i] = num(e)\n"
    "    elseif ty == 'BS' then r[i] = b64(e) else r[i] = e end\n"
    "  end\n"
    "  return r\n"
    "end\n"
    "local function plain(x)\n"
    "  if type(x) == 'number' then return math.tointeger(x) or x end\n"
    "  if type(x) ~= 'table' then return x end\n"
    "  local r = {} for k, v in pairs(x) do r[k] = plain(v) end return r\n"
    "end\n"
    "function reference(rec)\n"
    "  local r = {}\n"
    "  for k, v in pairs(rec) do\n"
    "    if k == 'dynamodb' and type(v) == 'table' then\n"
    "      local d = {}\n"
    "      for dk, dv in pairs(v) do\n"
    "        if dk == 'Keys' or dk == 'NewImage' or dk == 'OldImage' then\n"
    "          if dv ~= cjson.null then d[dk] = map(dv) end\n"
    "        else d[dk] = plain(dv) end\n"
    "      end\n"
    "      r[k] = d\n"
    "    else r[k] = plain(v) end\n"
    "  end\n"
    "  return r\n"
    "end\n";

/* Opens the libraries, cjson (global), conv and the helpers. Runs under
 * lua_pcall. */
static int setup_state(lua_State *L) {
  luaL_openlibs(L);
  luaL_requiref(L, "cjson", luaopen_cjson, 1);
  lua_pop(L, 1);
  mm_conv_open(L, NULL);
  if (luaL_dostring(L, HELPERS_LUA) != LUA_OK) lua_error(L);
  return 0;
}

static lua_State *new_state(alloc_ctl_t *ctl) {
  lua_State *L = ctl ? lua_newstate(test_alloc, ctl) : luaL_newstate();
  ck_assert_ptr_nonnull(L);
  lua_pushcfunction(L, setup_state);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK)
    ck_abort_msg("setup failed: %s", lua_tostring(L, -1));
  return L;
}

/* Parses text into *doc (aborting the test on failure). */
static void parse(mm_json_doc_t *doc, const char *text, size_t len) {
  mm_err_t err;
  memset(doc, 0, sizeof *doc);
  if (mm_json_parse(doc, text, len, 0, &err) != 0)
    ck_abort_msg("bad test JSON: %s\n%s", err.msg, text);
}

/* Calls the global `render` on the value at the top (popping it) and
 * returns the rendering (pushed, borrowed from the stack). */
static const char *render_top(lua_State *L) {
  lua_getglobal(L, "render");
  lua_insert(L, -2);
  lua_call(L, 1, 1);
  return lua_tostring(L, -1);
}

/* Runs a string of Lua with global `rec` set; returns NULL on success or a
 * malloc'd error message. */
static char *run_lua(lua_State *L, const char *code) {
  int top = lua_gettop(L);
  char *msg = NULL;
  if (luaL_loadstring(L, code) != LUA_OK || lua_pcall(L, 0, 0, 0) != LUA_OK)
    msg = strdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "(non-string)");
  lua_settop(L, top);
  return msg;
}

#define LUA_OK_(L, code)                                       \
  do {                                                         \
    char *e_ = run_lua(L, code);                               \
    ck_assert_msg(e_ == NULL, "lua failed: %s\n--\n%s", e_, code); \
  } while (0)

/* ------------------------------------------------------------------ */
/* Case table                                                           */
/* ------------------------------------------------------------------ */

typedef struct conv_case {
  const char *name;
  const char *av;     /* AttributeValue JSON */
  const char *expect; /* rendering, or "error:<substring>" */
} conv_case_t;

#define ALLNULL_PREFIX "\"B\":null,\"BOOL\":null,\"BS\":null,\"L\":null,\"M\":null,"
/* {"B":null,...,"<key>":<value>,...,"SS":null}: the every-type-key shape. */
#define ALL_S(v) "{" ALLNULL_PREFIX "\"N\":null,\"NS\":null,\"NULL\":null,\"S\":" v ",\"SS\":null}"
#define ALL_N(v) "{" ALLNULL_PREFIX "\"N\":" v ",\"NS\":null,\"NULL\":null,\"S\":null,\"SS\":null}"

static const conv_case_t CASES[] = {
    /* S */
    {"S plain", "{\"S\":\"hello\"}", "\"hello\""},
    {"S empty", "{\"S\":\"\"}", "\"\""},
    {"S escapes are decoded",
     "{\"S\":\"a\\\"b\\\\c\\u00e9\\ud83d\\ude00\\n\\/\"}",
     "\"a\\\"b\\\\c\\xc3\\xa9\\xf0\\x9f\\x98\\x80\\x0a/\""},
    {"S raw UTF-8 kept", "{\"S\":\"\xc3\xa9t\xc3\xa9\"}", "\"\\xc3\\xa9t\\xc3\\xa9\""},
    {"S not a string", "{\"S\":5}", "error:v: expected a string in S"},
    /* N: integers */
    {"N integer", "{\"N\":\"42\"}", "42"},
    {"N negative", "{\"N\":\"-17\"}", "-17"},
    {"N 1E+2 is integer 100", "{\"N\":\"1E+2\"}", "100"},
    {"N -0 is integer 0", "{\"N\":\"-0\"}", "0"},
    {"N 0.000 is 0", "{\"N\":\"0.000\"}", "0"},
    {"N 1.0 is integral", "{\"N\":\"1.0\"}", "1"},
    {"N 100E-2 is integral", "{\"N\":\"100E-2\"}", "1"},
    {"N 1.5E1 is integral", "{\"N\":\"1.5E1\"}", "15"},
    {"N 18 digits (fast path)", "{\"N\":\"123456789012345678\"}", "123456789012345678"},
    {"N 19 digits", "{\"N\":\"1234567890123456789\"}", "1234567890123456789"},
    {"N int64 max", "{\"N\":\"9223372036854775807\"}", "9223372036854775807"},
    {"N int64 min", "{\"N\":\"-9223372036854775808\"}", "-9223372036854775808"},
    {"N int64 max + 1 is float", "{\"N\":\"9223372036854775808\"}",
     "9.223372036854776e+18"},
    {"N 1E+18 integer", "{\"N\":\"1E+18\"}", "1000000000000000000"},
    {"N 1E+19 float", "{\"N\":\"1E+19\"}", "1e+19"},
    {"N leading zeros", "{\"N\":\"007\"}", "7"},
    /* N: floats */
    {"N fraction", "{\"N\":\"1.5\"}", "1.5"},
    {"N 0.1", "{\"N\":\"0.1\"}", "0.1"},
    {"N 12.50", "{\"N\":\"12.50\"}", "12.5"},
    {"N 38 digits", "{\"N\":\"12345678901234567890123456789012345678\"}",
     "1.2345678901234568e+37"},
    {"N 38 digits with point", "{\"N\":\"1.2345678901234567890123456789012345678\"}",
     "1.2345678901234567"},
    {"N smallest", "{\"N\":\"1E-130\"}", "1e-130"},
    {"N smallest negative", "{\"N\":\"-1E-130\"}", "-1e-130"},
    {"N largest", "{\"N\":\"9.9999999999999999999999999999999999999E+125\"}", "1e+126"},
    {"N as a JSON number", "{\"N\":7}", "7"},
    {"N as a JSON float", "{\"N\":2.5}", "2.5"},
    /* N: errors */
    {"N not a number", "{\"N\":\"abc\"}", "error:v: invalid number in N"},
    {"N empty", "{\"N\":\"\"}", "error:v: invalid number in N"},
    {"N dangling exponent", "{\"N\":\"1e\"}", "error:invalid number in N"},
    {"N two points", "{\"N\":\"1.2.3\"}", "error:invalid number in N"},
    {"N space", "{\"N\":\" 1\"}", "error:invalid number in N"},
    {"N hex", "{\"N\":\"0x10\"}", "error:invalid number in N"},
    {"N inf", "{\"N\":\"inf\"}", "error:invalid number in N"},
    {"N nan", "{\"N\":\"NaN\"}", "error:invalid number in N"},
    {"N sign only", "{\"N\":\"-\"}", "error:invalid number in N"},
    {"N boolean", "{\"N\":true}", "error:v: expected a string in N"},
    /* B */
    {"B padded ==", "{\"B\":\"dGVzdA==\"}", "\"test\""},
    {"B padded =", "{\"B\":\"dGVzdDE=\"}", "\"test1\""},
    {"B no padding needed", "{\"B\":\"dGVzdDEy\"}", "\"test12\""},
    {"B 'test' is 3 bytes", "{\"B\":\"test\"}", "\"\\xb5\\xeb-\""},
    {"B binary", "{\"B\":\"AAEqQQ==\"}", "\"\\x00\\x01*A\""},
    {"B empty", "{\"B\":\"\"}", "\"\""},
    {"B escaped slash", "{\"B\":\"AA\\/A\"}", "\"\\x00\\x0f\\xc0\""},
    {"B non-zero pad bits tolerated", "{\"B\":\"dG==\"}", "\"t\""},
    {"B missing padding", "{\"B\":\"dGVzdA\"}", "error:v: invalid base64 in B"},
    {"B short padding", "{\"B\":\"dGVzdA=\"}", "error:v: invalid base64 in B"},
    {"B inner space", "{\"B\":\"dGVz dA==\"}", "error:v: invalid base64 in B"},
    {"B '=' inside a quantum", "{\"B\":\"dG=a\"}", "error:v: invalid base64 in B"},
    {"B padding then data", "{\"B\":\"dA==dGVz\"}", "error:v: invalid base64 in B"},
    {"B only padding", "{\"B\":\"====\"}", "error:v: invalid base64 in B"},
    {"B url alphabet", "{\"B\":\"-_-_\"}", "error:v: invalid base64 in B"},
    {"B not a string", "{\"B\":[]}", "error:v: expected a string in B"},
    /* BOOL, NULL */
    {"BOOL true", "{\"BOOL\":true}", "true"},
    {"BOOL false", "{\"BOOL\":false}", "false"},
    {"BOOL as text", "{\"BOOL\":\"true\"}", "error:v: expected a boolean in BOOL"},
    {"NULL", "{\"NULL\":true}", "null"},
    {"NULL false alone has no type", "{\"NULL\":false}", "error:v: AttributeValue has no type"},
    {"NULL not a boolean", "{\"NULL\":1}", "error:v: expected true in NULL"},
    /* M, L */
    {"M", "{\"M\":{\"a\":{\"S\":\"x\"},\"b\":{\"N\":\"2\"}}}", "{\"a\"=\"x\",\"b\"=2}"},
    {"M nested", "{\"M\":{\"m\":{\"M\":{\"z\":{\"BOOL\":true}}},\"l\":{\"L\":[{\"N\":\"1\"},{\"S\":\"two\"}]}}}",
     "{\"l\"=[1,\"two\"],\"m\"={\"z\"=true}}"},
    {"M empty", "{\"M\":{}}", "{}"},
    {"M duplicate key: last wins", "{\"M\":{\"a\":{\"N\":\"1\"},\"a\":{\"N\":\"2\"}}}", "{\"a\"=2}"},
    {"M escaped key", "{\"M\":{\"k\\u00e9y\":{\"N\":\"1\"}}}", "{\"k\\xc3\\xa9y\"=1}"},
    {"M names the name cache must tell apart",
     "{\"M\":{\"abcdefghijklmnopq\":{\"N\":\"1\"},\"abcdefghXjklmnopq\":{\"N\":\"2\"},"
     "\"abcdefgh12345678\":{\"N\":\"3\"},\"abcdefgh12345679\":{\"N\":\"4\"},"
     "\"aba\":{\"N\":\"5\"},\"abb\":{\"N\":\"6\"},\"a\":{\"N\":\"7\"},\"\":{\"N\":\"8\"},"
     "\"abcd\":{\"N\":\"9\"},\"abce\":{\"N\":\"10\"},\"a\\u0062\":{\"N\":\"11\"},"
     "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\":{\"N\":\"12\"},"
     "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\":{\"N\":\"13\"},"
     "\"xxxxxxxxxxxxxxxxxxxxxxxxyxxxxxxxxxxxxxxx\":{\"N\":\"14\"}}}",
     "{\"\"=8,\"a\"=7,\"ab\"=11,\"aba\"=5,\"abb\"=6,\"abcd\"=9,\"abcdefgh12345678\"=3,"
     "\"abcdefgh12345679\"=4,\"abcdefghXjklmnopq\"=2,\"abcdefghijklmnopq\"=1,\"abce\"=10,"
     "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"=13,\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"=12,"
     "\"xxxxxxxxxxxxxxxxxxxxxxxxyxxxxxxxxxxxxxxx\"=14}"},
    {"M not an object", "{\"M\":[]}", "error:v: expected an object in M"},
    {"L", "{\"L\":[{\"S\":\"a\"},{\"N\":\"1.5\"},{\"NULL\":true},{\"BOOL\":false}]}",
     "[\"a\",1.5,null,false]"},
    {"L empty", "{\"L\":[]}", "{}"},
    {"L of L", "{\"L\":[{\"L\":[{\"L\":[{\"N\":\"3\"}]}]}]}", "[[[3]]]"},
    {"L not an array", "{\"L\":{}}", "error:v: expected an array in L"},
    /* sets */
    {"SS keeps event order", "{\"SS\":[\"b\",\"a\",\"c\"]}", "[\"b\",\"a\",\"c\"]"},
    {"NS", "{\"NS\":[\"1\",\"2.5\",\"1E+2\",\"12345678901234567890123456789012345678\"]}",
     "[1,2.5,100,1.2345678901234568e+37]"},
    {"BS", "{\"BS\":[\"AAEqQQ==\",\"QSoBAA==\"]}", "[\"\\x00\\x01*A\",\"A*\\x01\\x00\"]"},
    {"BS duplicate member kept", "{\"BS\":[\"AA==\",\"AA==\"]}", "[\"\\x00\",\"\\x00\"]"},
    {"SS empty", "{\"SS\":[]}", "{}"},
    {"NS empty", "{\"NS\":[]}", "{}"},
    {"BS empty", "{\"BS\":[]}", "{}"},
    {"SS member not a string", "{\"SS\":[\"a\",1]}", "error:v[2]: expected a string in SS"},
    {"NS member not a number", "{\"NS\":[\"1\",\"x\"]}", "error:v[2]: invalid number in NS"},
    {"NS member not a string", "{\"NS\":[\"1\",{}]}", "error:v[2]: expected a string in NS"},
    {"BS member invalid", "{\"BS\":[\"AA==\",\"!\"]}", "error:v[2]: invalid base64 in BS"},
    {"SS not an array", "{\"SS\":\"a\"}", "error:v: expected an array in SS"},
    /* shape errors */
    {"not an object", "\"x\"", "error:v: AttributeValue is not an object"},
    {"no type", "{}", "error:v: AttributeValue has no type"},
    {"unknown type", "{\"X\":\"1\"}", "error:v: unknown AttributeValue type \"X\""},
    {"unknown type key, even null", "{\"S\":\"a\",\"Q\":null}",
     "error:v: unknown AttributeValue type \"Q\""},
    {"lower-case type", "{\"s\":\"a\"}", "error:v: unknown AttributeValue type \"s\""},
    {"unknown two-letter type", "{\"XS\":[\"a\"]}", "error:v: unknown AttributeValue type \"XS\""},
    {"one type, null", "{\"S\":null}", "error:v: AttributeValue has no type"},
    {"one set type, null", "{\"NS\":null}", "error:v: AttributeValue has no type"},
    {"two types", "{\"S\":\"a\",\"N\":\"1\"}",
     "error:v: AttributeValue has more than one type (S and N)"},
    {"escaped type key", "{\"\\u0053\":\"x\"}", "\"x\""},
    /* the every-type-key shape */
    {"all keys: N", ALL_N("\"1\""), "1"},
    {"all keys: S", ALL_S("\"data\""), "\"data\""},
    {"all keys: BOOL false",
     "{\"B\":null,\"BOOL\":false,\"BS\":null,\"L\":null,\"M\":null,\"N\":null,"
     "\"NS\":null,\"NULL\":null,\"S\":null,\"SS\":null}", "false"},
    {"all keys: NULL true",
     "{\"B\":null,\"BOOL\":null,\"BS\":null,\"L\":null,\"M\":null,\"N\":null,"
     "\"NS\":null,\"NULL\":true,\"S\":null,\"SS\":null}", "null"},
    {"all keys: NULL false counts as absent",
     "{\"B\":null,\"BOOL\":null,\"BS\":null,\"L\":null,\"M\":null,\"N\":null,"
     "\"NS\":null,\"NULL\":false,\"S\":\"x\",\"SS\":null}", "\"x\""},
    {"all keys: nested M and L",
     "{\"B\":null,\"BOOL\":null,\"BS\":null,\"L\":null,\"M\":{\"a\":" ALL_S("\"x\"")
     ",\"l\":{\"B\":null,\"BOOL\":null,\"BS\":null,\"L\":[" ALL_N("\"2\"") "," ALL_N("\"2.5\"")
     "],\"M\":null,\"N\":null,\"NS\":null,\"NULL\":null,\"S\":null,\"SS\":null}},"
     "\"N\":null,\"NS\":null,\"NULL\":null,\"S\":null,\"SS\":null}",
     "{\"a\"=\"x\",\"l\"=[2,2.5]}"},
    {"all keys: SS",
     "{\"B\":null,\"BOOL\":null,\"BS\":null,\"L\":null,\"M\":null,\"N\":null,"
     "\"NS\":null,\"NULL\":null,\"S\":null,\"SS\":[\"a\",\"b\"]}", "[\"a\",\"b\"]"},
    {"all keys: every one null",
     "{\"B\":null,\"BOOL\":null,\"BS\":null,\"L\":null,\"M\":null,\"N\":null,"
     "\"NS\":null,\"NULL\":null,\"S\":null,\"SS\":null}",
     "error:v: AttributeValue has no type"},
    {"all keys: two non-null",
     "{\"B\":null,\"BOOL\":null,\"BS\":null,\"L\":null,\"M\":null,\"N\":\"1\","
     "\"NS\":null,\"NULL\":null,\"S\":\"x\",\"SS\":null}",
     "error:v: AttributeValue has more than one type (N and S)"},
    /* error paths */
    {"path through M and L",
     "{\"M\":{\"a\":{\"L\":[{\"S\":\"x\"},{\"M\":{\"sig\":{\"B\":\"!!\"}}}]}}}",
     "error:v.a[2].sig: invalid base64 in B"},
    {"path with an escaped key", "{\"M\":{\"k\\u00e9y\":{\"N\":\"x\"}}}",
     "error:v.k\xc3\xa9y: invalid number in N"},
    {"path into a set", "{\"M\":{\"tags\":{\"NS\":[\"1\",\"2\",\"z\"]}}}",
     "error:v.tags[3]: invalid number in NS"},
    {"path in all-keys shape",
     "{\"B\":null,\"BOOL\":null,\"BS\":null,\"L\":null,\"M\":{\"a\":{\"Z\":1}},"
     "\"N\":null,\"NS\":null,\"NULL\":null,\"S\":null,\"SS\":null}",
     "error:v.a: unknown AttributeValue type \"Z\""},
};

/* Protected body of one case: upvalue-free, arguments (mode, path). */
static int case_body(lua_State *L) {
  int lazy = (int)lua_tointeger(L, 1);
  int top = lua_gettop(L);
  if (!lazy) {
    mm_conv_push_av(L, 0, "v");
    ck_assert_int_eq(lua_gettop(L), top + 1);
  } else {
    mm_conv_push_record(L, 0);
    ck_assert_int_eq(lua_gettop(L), top + 1);
    mm_conv_materialize(L, -1);
    ck_assert_int_eq(lua_gettop(L), top + 1);
    lua_getfield(L, -1, "dynamodb");
    lua_getfield(L, -1, "NewImage");
    lua_getfield(L, -1, "v");
  }
  render_top(L);
  return 1;
}

/* Runs one case; returns the rendering or "error:<message>" (static). */
static const char *run_case(lua_State *L, const char *av, int lazy) {
  static char out[4096];
  char json[8192];
  mm_json_doc_t doc;
  if (lazy)
    snprintf(json, sizeof json,
             "{\"eventName\":\"INSERT\",\"dynamodb\":{\"NewImage\":{\"v\":%s}}}", av);
  else
    snprintf(json, sizeof json, "%s", av);
  parse(&doc, json, strlen(json));
  mm_conv_set_doc(L, &doc, 64);
  int top = lua_gettop(L);
  lua_pushcfunction(L, case_body);
  lua_pushinteger(L, lazy);
  if (lua_pcall(L, 1, 1, 0) == LUA_OK)
    snprintf(out, sizeof out, "%s", lua_tostring(L, -1));
  else
    snprintf(out, sizeof out, "error:%s", lua_tostring(L, -1));
  lua_pop(L, 1);
  ck_assert_int_eq(lua_gettop(L), top);
  mm_conv_set_doc(L, NULL, 0);
  mm_json_free(&doc);
  return out;
}

static void check_case(lua_State *L, const conv_case_t *c, int lazy) {
  const char *got = run_case(L, c->av, lazy);
  const char *mode = lazy ? "lazy" : "eager";
  if (strncmp(c->expect, "error:", 6) == 0) {
    ck_assert_msg(strncmp(got, "error:", 6) == 0 && strstr(got, c->expect + 6),
                  "[%s, %s] expected %s, got %s", c->name, mode, c->expect, got);
    if (lazy) /* the path starts at the image */
      ck_assert_msg(strstr(got, "NewImage.v"), "[%s] lazy path: %s", c->name, got);
  } else {
    ck_assert_msg(strcmp(got, c->expect) == 0, "[%s, %s] expected %s, got %s",
                  c->name, mode, c->expect, got);
  }
}

START_TEST(test_case_table) {
  lua_State *L = new_state(NULL);
  for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
    check_case(L, &CASES[i], 0);
    check_case(L, &CASES[i], 1);
  }
  lua_close(L);
}
END_TEST

/* Pushes the document's root record, lazily. [-0, +1, e] */
static int push_record_raw(lua_State *L) {
  mm_conv_push_record(L, 0);
  return 1;
}

/* Pushes the document's root AttributeValue, eagerly. [-0, +1, e] */
static int push_av_raw(lua_State *L) {
  mm_conv_push_av(L, 0, "v");
  return 1;
}

/* Converts {"B":"<b64>"} eagerly: 1 and the bytes in out/outlen, or 0
 * when the conversion raised (message in err). */
static int convert_b64(lua_State *L, const char *b64, char *out, size_t *outlen, char *err,
                       size_t errsz) {
  char json[3000];
  mm_json_doc_t doc;
  snprintf(json, sizeof json, "{\"B\":\"%s\"}", b64);
  parse(&doc, json, strlen(json));
  mm_conv_set_doc(L, &doc, 64);
  int ok = 0;
  lua_settop(L, 0);
  lua_pushcfunction(L, push_av_raw);
  if (lua_pcall(L, 0, 1, 0) == LUA_OK) {
    size_t n;
    const char *b = lua_tolstring(L, -1, &n);
    memcpy(out, b, n);
    *outlen = n;
    ok = 1;
  } else {
    snprintf(err, errsz, "%s", lua_tostring(L, -1));
  }
  lua_settop(L, 0);
  mm_conv_set_doc(L, NULL, 0);
  mm_json_free(&doc);
  return ok;
}

/* Protected: pushes the document's root AttributeValue, then its M's one
 * member name and that member's S. */
static int push_member_name(lua_State *L) {
  mm_conv_push_av(L, 0, "v");
  lua_pushnil(L);
  ck_assert(lua_next(L, -2));
  return 2;
}

/* Escaped strings, values and member names, of every raw length around
 * the size conv decodes without a Lua buffer (256 bytes) and beyond. */
START_TEST(test_escaped_lengths) {
  static const size_t TARGET[] = {250, 251, 252, 253, 254, 255, 256, 257, 258, 259, 260, 261, 262, 300, 1000};
  lua_State *L = new_state(NULL);
  for (size_t ti = 0; ti < sizeof TARGET / sizeof TARGET[0]; ti++) {
    for (int shift = 0; shift < 3; shift++) {
      char raw[1100], want[1100], json[2400];
      size_t n = 0, w = 0;
      for (unsigned u = (unsigned)shift; n < TARGET[ti]; u++) {
        switch (u % 3) { /* 1, 2 and 6 bytes of text for 1, 1 and 2 bytes */
        case 0: raw[n++] = 'a'; want[w++] = 'a'; break;
        case 1: memcpy(raw + n, "\\n", 2); n += 2; want[w++] = '\n'; break;
        default: memcpy(raw + n, "\\u00e9", 6); n += 6; want[w++] = '\xc3'; want[w++] = '\xa9'; break;
        }
      }
      raw[n] = '\0';
      for (int as_name = 0; as_name < 2; as_name++) {
        if (as_name)
          snprintf(json, sizeof json, "{\"M\":{\"%s\":{\"S\":\"x\"}}}", raw);
        else
          snprintf(json, sizeof json, "{\"S\":\"%s\"}", raw);
        mm_json_doc_t doc;
        parse(&doc, json, strlen(json));
        mm_conv_set_doc(L, &doc, 64);
        lua_settop(L, 0);
        lua_pushcfunction(L, as_name ? push_member_name : push_av_raw);
        ck_assert_msg(lua_pcall(L, 0, as_name ? 2 : 1, 0) == LUA_OK, "%s", lua_tostring(L, -1));
        size_t got;
        const char *s = lua_tolstring(L, 1, &got);
        ck_assert_msg(got == w && memcmp(s, want, w) == 0, "raw length %zu (%s): got %zu want %zu: %.40s", n,
                      as_name ? "name" : "value", got, w, s);
        lua_settop(L, 0);
        mm_conv_set_doc(L, NULL, 0);
        mm_json_free(&doc);
      }
    }
  }
  lua_close(L);
}
END_TEST

/* B: every length from 0 to 64 bytes round-trips through base64, and a
 * byte outside the alphabet (or a '=' before the padding) anywhere in a
 * quantum, last or not, is refused; so do longer values around the size
 * conv decodes without a Lua buffer (255 bytes) and well beyond it, with
 * corruptions at their first, middle and last positions. */
START_TEST(test_b64_round_trip) {
  static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  lua_State *L = new_state(NULL);
  uint32_t seed = 12345;
  char err[256];
  static const size_t LONG[] = {250, 251, 252, 253, 254, 255, 256, 257, 258, 700, 2000};
  for (size_t li = 0; li < 65 + sizeof LONG / sizeof LONG[0]; li++) {
    size_t len = li <= 64 ? li : LONG[li - 65];
    unsigned char raw[2000];
    for (size_t i = 0; i < len; i++) {
      seed = seed * 1103515245u + 12345u;
      raw[i] = (unsigned char)(seed >> 16);
    }
    char enc[2800];
    size_t e = 0;
    for (size_t i = 0; i < len; i += 3) {
      uint32_t q = (uint32_t)raw[i] << 16 | (i + 1 < len ? (uint32_t)raw[i + 1] << 8 : 0) |
                   (i + 2 < len ? raw[i + 2] : 0);
      enc[e++] = A[q >> 18 & 63];
      enc[e++] = A[q >> 12 & 63];
      enc[e++] = i + 1 < len ? A[q >> 6 & 63] : '=';
      enc[e++] = i + 2 < len ? A[q & 63] : '=';
    }
    enc[e] = '\0';
    char out[2000];
    size_t n = 0;
    ck_assert_msg(convert_b64(L, enc, out, &n, err, sizeof err), "len %zu: %s", len, err);
    ck_assert_uint_eq(n, len);
    ck_assert(memcmp(out, raw, len) == 0);
    /* corrupt each position (of a long value: the first, middle and last) */
    static const char bad[] = "!-_.~ =";
    for (size_t pos = 0; pos < e; pos++) {
      if (len > 64 && pos > 0 && pos != e / 2 && pos + 1 < e) continue;
      for (const char *b = bad; *b; b++) {
        if (*b == '=' && (enc[pos] == '=' || (pos + 1 == e && enc[pos - 1] != '=') ||
                          (pos + 2 == e && enc[pos + 1] == '=')))
          continue; /* a padding that is still valid */
        char c2[2800];
        memcpy(c2, enc, e + 1);
        c2[pos] = *b;
        ck_assert_msg(!convert_b64(L, c2, out, &n, err, sizeof err), "%s accepted", c2);
        ck_assert_msg(strstr(err, "invalid base64 in B"), "%s: %s", c2, err);
      }
    }
  }
  lua_close(L);
}
END_TEST

/* The global pairs conv installs: a lazy table is filled and iterated;
 * plain tables, other metatables (a __pairs that yields from a coroutine
 * included), strings and a missing argument behave as the base library's
 * pairs. */
START_TEST(test_pairs_wrapper) {
  lua_State *L = new_state(NULL);
  static const char ev[] = "{\"eventName\":\"INSERT\",\"dynamodb\":{\"NewImage\":"
                           "{\"a\":{\"N\":\"1\"},\"b\":{\"S\":\"x\"},\"m\":{\"M\":{\"c\":{\"BOOL\":true}}}}}}";
  mm_json_doc_t doc;
  parse(&doc, ev, strlen(ev));
  mm_conv_set_doc(L, &doc, 64);
  lua_pushcfunction(L, push_record_raw);
  ck_assert_int_eq(lua_pcall(L, 0, 1, 0), LUA_OK);
  lua_setglobal(L, "rec");
  static const char code[] =
      "local img = rec.dynamodb.NewImage\n"
      "local n, seen = 0, {}\n"
      "for k, v in pairs(img) do n = n + 1 seen[k] = v end\n"
      "assert(n == 3 and seen.a == 1 and seen.b == 'x' and type(seen.m) == 'table')\n"
      "assert(rawget(img, 'a') == 1 and getmetatable(img) == nil)\n"
      "local m = 0 for k, v in pairs(seen.m) do m = m + 1 assert(k == 'c' and v == true) end\n"
      "assert(m == 1)\n"
      "local t, c = {1, 2, 3}, 0 for _ in pairs(t) do c = c + 1 end assert(c == 3)\n"
      "local mt = {__pairs = function(t) return function(_, k) if not k then return 1, 'one' end end, t, nil end}\n"
      "local u = setmetatable({}, mt) local got for k, v in pairs(u) do got = v end\n"
      "assert(got == 'one')\n"
      "local y = setmetatable({}, {__pairs = function(t)\n"
      "  coroutine.yield('in __pairs') return next, {z = 26}, nil end})\n"
      "local co = coroutine.wrap(function() local r for k, v in pairs(y) do r = v end return r end)\n"
      "assert(co() == 'in __pairs' and co() == 26)\n"
      "local ok, e = pcall(pairs)\n"
      "assert(not ok and e:find(\"bad argument #1 to 'pairs' %(value expected%)\"), e)\n"
      "ok, e = pcall(function() for _ in pairs('s') do end end)\n"
      "assert(not ok and e:find('table expected, got string'), e)\n"
      "return true\n";
  ck_assert_int_eq(luaL_loadstring(L, code), LUA_OK);
  int st = lua_pcall(L, 0, 1, 0);
  ck_assert_msg(st == LUA_OK, "%s", lua_tostring(L, -1));
  lua_settop(L, 0);
  mm_conv_set_doc(L, NULL, 0);
  mm_json_free(&doc);
  lua_close(L);
}
END_TEST

/* mm_conv_push_number directly: the rule core.tonumber shares. */
START_TEST(test_push_number) {
  static const struct { const char *in; const char *out; } C[] = {
      {"0", "0"}, {"+5", "5"}, {"-0.0E+7", "0"}, {"2E-0", "2"},
      {"1e400", "inf"}, {"1e-400", "0.0"}, {"5.", "5"}, {".5", "0.5"},
      {"123456789012345678901234567890", "1.2345678901234568e+29"},
      {"-9223372036854775809", "-9.223372036854776e+18"},
      {"00000000000000000000000000000001", "1"},
      {"1", "1"}, {"", NULL}, {"e5", NULL}, {"1e+", NULL}, {"--1", NULL},
      {"1 ", NULL}, {"1_000", NULL}, {"0x1p3", NULL}, {"Infinity", NULL},
  };
  lua_State *L = new_state(NULL);
  for (size_t i = 0; i < sizeof C / sizeof C[0]; i++) {
    int top = lua_gettop(L);
    int rc = mm_conv_push_number(L, C[i].in, strlen(C[i].in));
    if (!C[i].out) {
      ck_assert_msg(rc == -1, "'%s' should not be a number", C[i].in);
      ck_assert_int_eq(lua_gettop(L), top);
      continue;
    }
    ck_assert_msg(rc == 0, "'%s' should be a number", C[i].in);
    ck_assert_int_eq(lua_gettop(L), top + 1);
    const char *r = render_top(L);
    ck_assert_msg(strcmp(r, C[i].out) == 0, "'%s': expected %s got %s", C[i].in,
                  C[i].out, r);
    lua_pop(L, 1);
  }
  /* a long text goes through the heap path of strtod */
  char longnum[700];
  memset(longnum, '0', sizeof longnum - 1);
  longnum[0] = '1';
  longnum[1] = '.';
  longnum[sizeof longnum - 2] = '5';
  ck_assert_int_eq(mm_conv_push_number(L, longnum, sizeof longnum - 1), 0);
  ck_assert(lua_isnumber(L, -1) && !lua_isinteger(L, -1));
  ck_assert(lua_tonumber(L, -1) == 1.0);
  lua_close(L);
}
END_TEST

/* The N rule, written out plainly: integral values within int64 are
 * integers (exact, via 128-bit arithmetic), anything else strtod's
 * double. s is a valid number text. Returns 1 for an integer (*i). */
static int ref_number(const char *s, lua_Integer *i, double *f) {
  const char *p = s;
  int neg = *p == '-';
  if (*p == '-' || *p == '+') p++;
  char dig[128];
  size_t nd = 0, nf = 0;
  for (; *p >= '0' && *p <= '9'; p++) dig[nd++] = *p;
  if (*p == '.')
    for (p++; *p >= '0' && *p <= '9'; p++, nf++) dig[nd++] = *p;
  long exp = *p == 'e' || *p == 'E' ? strtol(p + 1, NULL, 10) : 0;
  long scale = exp - (long)nf; /* value = dig * 10^scale */
  size_t first = 0;
  while (first < nd && dig[first] == '0') first++;
  if (first == nd) {
    *i = 0;
    return 1;
  }
  while (dig[nd - 1] == '0') { /* trailing zeros into the scale */
    nd--;
    scale++;
  }
  if (scale >= 0 && (long)(nd - first) + scale <= 19) {
    unsigned __int128 u = 0;
    for (size_t j = first; j < nd; j++) u = u * 10 + (unsigned)(dig[j] - '0');
    for (long j = 0; j < scale; j++) u *= 10;
    if (!neg && u <= (unsigned __int128)INT64_MAX) {
      *i = (lua_Integer)u;
      return 1;
    }
    if (neg && u <= (unsigned __int128)INT64_MAX + 1) {
      *i = (lua_Integer)(-(__int128)u);
      return 1;
    }
  }
  *f = strtod(s, NULL);
  return 0;
}

/* mm_conv_push_number against ref_number on random number texts of the
 * shapes events carry and around them: signs, leading and trailing
 * zeros, fractions of 0 to 24 digits, exponents. */
static uint64_t num_state = 0x9E3779B97F4A7C15ull;
static unsigned num_rand(unsigned k) {
  num_state ^= num_state << 13;
  num_state ^= num_state >> 7;
  num_state ^= num_state << 17;
  return (unsigned)(num_state % k);
}

START_TEST(test_push_number_random) {
  lua_State *L = new_state(NULL);
  char s[160];
  for (int round = 0; round < 200000; round++) {
    size_t n = 0;
#define RND(k) num_rand(k)
    unsigned r = RND(8);
    if (r == 0) s[n++] = '-';
    if (r == 1) s[n++] = '+';
    unsigned ni = RND(4) == 0 ? RND(25) : RND(8), nf = RND(3) == 0 ? 0 : RND(4) == 0 ? RND(25) : RND(6);
    int dot = nf > 0 || RND(8) == 0;
    if (ni == 0 && nf == 0) ni = 1;
    for (unsigned j = 0; j < ni; j++) s[n++] = (char)('0' + (RND(3) == 0 ? 0 : RND(10)));
    if (dot) s[n++] = '.';
    for (unsigned j = 0; j < nf; j++) s[n++] = (char)('0' + (RND(3) == 0 ? 0 : RND(10)));
    if (RND(6) == 0)
      n += (size_t)snprintf(s + n, sizeof s - n, "%s%s%u", RND(2) ? "e" : "E",
                            RND(3) == 0 ? "-" : RND(2) ? "+" : "", RND(30));
#undef RND
    s[n] = '\0';
    lua_Integer ri = 0;
    double rf = 0;
    int isint = ref_number(s, &ri, &rf);
    ck_assert_msg(mm_conv_push_number(L, s, n) == 0, "'%s' should be a number", s);
    if (isint) {
      ck_assert_msg(lua_isinteger(L, -1) && lua_tointeger(L, -1) == ri, "'%s': integer %lld",
                    s, (long long)ri);
    } else {
      double got = (double)lua_tonumber(L, -1);
      ck_assert_msg(!lua_isinteger(L, -1) && memcmp(&got, &rf, sizeof got) == 0,
                    "'%s': float %.17g, got %.17g", s, rf, got);
    }
    lua_pop(L, 1);
  }
  lua_close(L);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Fixtures                                                             */
/* ------------------------------------------------------------------ */

/* Protected: converts every record of the document, checks it against
 * the reference unmarshaller applied to cjson.decode of the same file,
 * and that cjson.encode of the materialised record works. Argument 1:
 * the file text (BOM stripped); the current document is set. */
static int fixture_body(lua_State *L) {
  const mm_json_doc_t *doc = lua_touserdata(L, 2);
  uint32_t records = mm_json_get(doc, 0, "Records", 7), first, n;
  if (records) {
    ck_assert_int_eq(mm_json_type(doc, records), MM_JSON_ARR);
    n = mm_json_len(doc, records);
    first = records + 1;
  } else { /* a bare record */
    n = 1;
    first = 0;
  }
  lua_settop(L, 2);
  lua_getglobal(L, "cjson");
  lua_getfield(L, -1, "decode");
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1); /* text doc cjson decoded */
  int decoded = lua_gettop(L);
  uint32_t rec = first;
  for (uint32_t i = 0; i < n; i++) {
    int top = lua_gettop(L);
    mm_conv_push_record(L, rec);
    ck_assert_int_eq(lua_gettop(L), top + 1);
    int r = lua_gettop(L);
    /* images start lazy (unless empty) */
    uint32_t ddb = mm_json_get(doc, rec, "dynamodb", 8);
    lua_getfield(L, r, "dynamodb");
    for (int j = 0; ddb && j < 3; j++) {
      static const char *const IMG[] = {"Keys", "NewImage", "OldImage"};
      uint32_t img = mm_json_get(doc, ddb, IMG[j], strlen(IMG[j]));
      lua_getfield(L, -1, IMG[j]); /* converts that member alone */
      if (img && mm_json_type(doc, img) == MM_JSON_OBJ)
        ck_assert_msg(mm_conv_is_lazy(L, -1) == (mm_json_len(doc, img) > 0),
                      "%s should start lazy", IMG[j]);
      else
        ck_assert(lua_isnil(L, -1));
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    mm_conv_materialize(L, r);
    ck_assert_int_eq(lua_gettop(L), r);
    /* cjson.encode sees everything once materialised */
    lua_getglobal(L, "cjson");
    lua_getfield(L, -1, "encode");
    lua_pushvalue(L, r);
    lua_call(L, 1, 1);
    ck_assert(lua_isstring(L, -1));
    lua_pop(L, 2);
    /* same rendering as the reference */
    lua_pushvalue(L, r);
    const char *mine = render_top(L);
    lua_getglobal(L, "reference");
    if (records) {
      lua_getfield(L, decoded, "Records");
      lua_rawgeti(L, -1, (lua_Integer)i + 1);
      lua_remove(L, -2);
    } else {
      lua_pushvalue(L, decoded);
    }
    lua_call(L, 1, 1);
    const char *ref = render_top(L);
    ck_assert_msg(strcmp(mine, ref) == 0, "record %u differs:\nconv: %s\nref:  %s",
                  (unsigned)i, mine, ref);
    lua_settop(L, top);
    rec = mm_json_next(doc, rec);
  }
  return 0;
}

/* Runs fixture_body over one file; returns the number of records seen. */
static void check_fixture(lua_State *L, const char *path) {
  size_t len;
  char *text = tu_read_file(path, &len);
  ck_assert_msg(text != NULL, "cannot read %s", path);
  mm_json_doc_t doc;
  parse(&doc, text, len);
  mm_conv_set_doc(L, &doc, 64);
  const char *body = text;
  if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) body += 3; /* cjson */
  lua_pushcfunction(L, fixture_body);
  lua_pushstring(L, body);
  lua_pushlightuserdata(L, &doc);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK)
    ck_abort_msg("%s: %s", path, lua_tostring(L, -1));
  mm_conv_set_doc(L, NULL, 0);
  mm_json_free(&doc);
  free(text);
}

START_TEST(test_fixtures) {
  lua_State *L = new_state(NULL);
  DIR *dir = opendir(MM_FIXTURES);
  ck_assert_ptr_nonnull(dir);
  int files = 0;
  struct dirent *de;
  while ((de = readdir(dir)) != NULL) {
    size_t n = strlen(de->d_name);
    if (n < 6 || strcmp(de->d_name + n - 5, ".json") != 0) continue;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", MM_FIXTURES, de->d_name);
    check_fixture(L, path);
    files++;
  }
  closedir(dir);
  ck_assert_int_ge(files, 13);
  /* the bare record (Kinesis-style, userIdentity null) */
  check_fixture(L, MM_FIXTURES
                "/non-event/rust-example-dynamodb-event-record-with-optional-fields.json");
  lua_close(L);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Lua-driven tests on small events                                     */
/* ------------------------------------------------------------------ */

/* An event kept alive while Lua code reads its records. */
typedef struct loaded {
  mm_json_doc_t doc;
  char *text;
} loaded_t;

/* Protected: pushes every record of the current document into global
 * `recs` and the first into `rec`. Argument 1: the document. */
static int load_body(lua_State *L) {
  const mm_json_doc_t *doc = lua_touserdata(L, 1);
  uint32_t recs = mm_json_get(doc, 0, "Records", 7);
  uint32_t n = recs ? mm_json_len(doc, recs) : 1, e = recs ? recs + 1 : 0;
  lua_createtable(L, (int)n, 0);
  for (uint32_t i = 0; i < n; i++) {
    mm_conv_push_record(L, e);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
    e = mm_json_next(doc, e);
  }
  lua_rawgeti(L, -1, 1);
  lua_setglobal(L, "rec");
  lua_setglobal(L, "recs");
  return 0;
}

/* Parses text (copied) and makes its records the globals rec/recs. */
static void load_event(lua_State *L, loaded_t *ld, const char *text) {
  ld->text = strdup(text);
  ck_assert_ptr_nonnull(ld->text);
  parse(&ld->doc, ld->text, strlen(ld->text));
  mm_conv_set_doc(L, &ld->doc, 64);
  lua_pushcfunction(L, load_body);
  lua_pushlightuserdata(L, &ld->doc);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) ck_abort_msg("load: %s", lua_tostring(L, -1));
}

static void load_fixture(lua_State *L, loaded_t *ld, const char *name) {
  size_t len;
  char *t = tu_fixture(name, &len);
  load_event(L, ld, t);
  free(t);
}

static void unload(lua_State *L, loaded_t *ld) {
  mm_conv_set_doc(L, NULL, 0);
  mm_json_free(&ld->doc);
  free(ld->text);
}

/* Loading the event text fails (a record cannot be pushed) with a
 * message containing want. */
static void load_fails(lua_State *L, const char *text, const char *want) {
  mm_json_doc_t doc;
  parse(&doc, text, strlen(text));
  mm_conv_set_doc(L, &doc, 64);
  lua_pushcfunction(L, load_body);
  lua_pushlightuserdata(L, &doc);
  ck_assert_int_ne(lua_pcall(L, 1, 0, 0), LUA_OK);
  ck_assert_msg(strstr(lua_tostring(L, -1), want), "%s", lua_tostring(L, -1));
  lua_pop(L, 1);
  mm_conv_set_doc(L, NULL, 0);
  mm_json_free(&doc);
}

/* Sets global `lazy` (is_lazy) and `kind` for Lua code. */
static int l_is_lazy(lua_State *L) {
  lua_pushboolean(L, mm_conv_is_lazy(L, 1));
  return 1;
}
static int l_kind(lua_State *L) {
  const char *k = mm_conv_kind(L, 1);
  if (k) lua_pushstring(L, k); else lua_pushnil(L);
  return 1;
}
static int l_materialize(lua_State *L) {
  lua_settop(L, 1);
  int top = lua_gettop(L);
  mm_conv_materialize(L, 1);
  ck_assert_int_eq(lua_gettop(L), top);
  return 1;
}
static int l_decimal(lua_State *L) {
  lua_settop(L, 2);
  mm_conv_push_decimal(L, 1, 2);
  ck_assert_int_eq(lua_gettop(L), 3);
  return 1;
}
static void add_test_globals(lua_State *L) {
  lua_register(L, "is_lazy", l_is_lazy);
  lua_register(L, "kind", l_kind);
  lua_register(L, "materialize", l_materialize);
  lua_register(L, "decimal", l_decimal);
}

/* Pushes a fresh record table for the first record of the current
 * document (global fresh() for the origin map tests). */
static int l_fresh(lua_State *L) {
  const mm_json_doc_t *doc = lua_touserdata(L, lua_upvalueindex(1));
  mm_conv_push_record(L, mm_json_get(doc, 0, "Records", 7) + 1);
  return 1;
}

/* Makes global fresh() push the first record of ld's event anew. */
static void set_fresh(lua_State *L, loaded_t *ld) {
  lua_pushlightuserdata(L, &ld->doc);
  lua_pushcclosure(L, l_fresh, 1);
  lua_setglobal(L, "fresh");
}

static const char *ORDER_EVENT =
    "{\"Records\":[{\"eventID\":\"e1\",\"eventName\":\"MODIFY\",\"eventVersion\":\"1.1\","
    "\"eventSource\":\"aws:dynamodb\",\"awsRegion\":\"eu-west-1\","
    "\"dynamodb\":{\"ApproximateCreationDateTime\":1700000000,"
    "\"Keys\":{\"id\":{\"S\":\"o-1\"}},"
    "\"NewImage\":{\"id\":{\"S\":\"o-1\"},\"customer_id\":{\"S\":\"c-42\"},"
    "\"total\":{\"N\":\"19.99\"},"
    "\"items\":{\"L\":[{\"M\":{\"sku\":{\"S\":\"a\"},\"qty\":{\"N\":\"2\"}}},"
    "{\"M\":{\"sku\":{\"S\":\"b\"},\"qty\":{\"N\":\"1\"}}}]},"
    "\"address\":{\"M\":{\"city\":{\"S\":\"Oslo\"},\"geo\":{\"L\":[{\"N\":\"59.9\"},{\"N\":\"10.7\"}]}}},"
    "\"tags\":{\"SS\":[\"x\",\"y\"]},"
    "\"big\":{\"N\":\"12345678901234567890123456789012345678\"},"
    "\"nums\":{\"NS\":[\"1.10\",\"2\"]},\"empty\":{\"M\":{}}},"
    "\"OldImage\":{\"id\":{\"S\":\"o-1\"},\"total\":{\"N\":\"9.99\"}},"
    "\"SequenceNumber\":\"111111111111111111111\",\"SizeBytes\":100,"
    "\"StreamViewType\":\"NEW_AND_OLD_IMAGES\"}}]}";

START_TEST(test_fixture_values) {
  lua_State *L = new_state(NULL);
  add_test_globals(L);
  loaded_t ld;
  load_fixture(L, &ld, "go-dynamodb-event.json");
  LUA_OK_(L,
          "local r1, r2 = recs[1], recs[2]\n"
          "assert(r1.userIdentity.type == 'Service')\n"
          "assert(r2.userIdentity == nil)\n"
          "local d = r2.dynamodb\n"
          "assert(math.type(d.ApproximateCreationDateTime) == 'integer')\n"
          "assert(d.ApproximateCreationDateTime == 1480642020 and d.SizeBytes == 54)\n"
          "assert(d.SequenceNumber == '1405400000000002063282832')\n"
          "local o = d.NewImage\n"
          "assert(o.b2 == '\\xb5\\xeb\\x2d')\n"
          "assert(#o.asdf2 == 3 and o.asdf2[1] == o.asdf2[3])\n"
          "assert(o.Null == cjson.null and o.Boolean == true)\n"
          "assert(o.List[3] == 3.14159 and o.List[1] == 'Cookies')\n"
          "assert(o.Map.Age == 35 and math.type(o.Map.Age) == 'integer')\n"
          "assert(o.NumberSet[1] == 1234 and o.NumberSet[2] == 567.8)\n"
          "assert(o.FloatNumber == 123.45 and o.IntegerNumber == 123)\n"
          "assert(next(o.EmptyStringSet) == nil)\n"
          "assert(d.OldImage == nil)\n");
  unload(L, &ld);
  load_fixture(L, &ld, "java-libs-dynamo-event.json");
  LUA_OK_(L,
          "local t = recs[2].dynamodb.ApproximateCreationDateTime\n"
          "assert(math.type(t) == 'float' and t == 1.635734407123456789E9)\n");
  unload(L, &ld);
  load_fixture(L, &ld, "pt-python-dynamoStreamEvent.json");
  LUA_OK_(L,
          "local t = recs[1].dynamodb.ApproximateCreationDateTime\n"
          "assert(math.type(t) == 'integer' and t == 1693997155)\n"
          "assert(recs[2].dynamodb.ApproximateCreationDateTime == nil)\n");
  unload(L, &ld);
  load_fixture(L, &ld, "ankcorn-new-image-remove.json");
  LUA_OK_(L,
          "local d = rec.dynamodb\n"
          "assert(rec.eventName == 'REMOVE' and d.NewImage == nil and d.OldImage == nil)\n"
          "assert(d.Keys.pk ~= nil)\n");
  unload(L, &ld);
  load_fixture(L, &ld, "non-event/rust-example-dynamodb-event-record-with-optional-fields.json");
  LUA_OK_(L, "assert(rec.userIdentity == cjson.null)\n");
  unload(L, &ld);
  lua_close(L);
}
END_TEST

/* Maps convert one member per read; lists whole; nothing else is
 * converted along the way. */
START_TEST(test_lazy_per_member) {
  lua_State *L = new_state(NULL);
  add_test_globals(L);
  loaded_t ld;
  load_event(L, &ld, ORDER_EVENT);
  LUA_OK_(L,
          /* dynamodb and its NewImage are there from the start (prefill),
           * as lazy tables with nothing converted in them */
          "local d = rawget(rec, 'dynamodb')\n"
          "assert(is_lazy(rec) and is_lazy(d) and rec.dynamodb == d)\n"
          "local k1, v1 = next(rec)\n"
          "assert(k1 == 'dynamodb' and v1 == d and next(rec, k1) == nil)\n"
          "assert(rawget(rec, 'eventID') == nil and rec.eventID == 'e1')\n"
          "assert(rawget(rec, 'eventID') == 'e1')     -- stored: next read is raw\n"
          "local n = d.NewImage\n"
          /* the documented difference: raw access sees what is converted */
          "assert(is_lazy(n) and next(n) == nil and rawlen(n) == 0)\n"
          "assert(rawget(d, 'NewImage') == n and rawget(d, 'OldImage') == nil)\n"
          "assert(rawget(d, 'Keys') == nil and rawget(d, 'SizeBytes') == nil)\n"
          "assert(getmetatable(n) == false)\n"
          "assert(n.customer_id == 'c-42')\n"
          "assert(is_lazy(n) and rawget(n, 'customer_id') == 'c-42')\n"
          "assert(rawget(n, 'total') == nil and rawget(n, 'items') == nil)\n"
          "assert(n.missing == nil and n[1] == nil and rawget(n, 'missing') == nil)\n"
          "local items, addr = n.items, n.address\n"
          "assert(is_lazy(items) and is_lazy(addr))\n"
          "assert(not is_lazy(n.tags))        -- sets are converted whole\n"
          "assert(not is_lazy(n.empty))       -- nothing to defer\n"
          "assert(addr.city == 'Oslo' and rawget(addr, 'geo') == nil)\n"
          "local geo = addr.geo\n"
          "assert(is_lazy(geo) and not is_lazy(addr))  -- both members read\n"
          "assert(items[2].sku == 'b' and not is_lazy(items))   -- a list: whole\n"
          "assert(is_lazy(items[1]) and rawget(items, 1) ~= nil)\n"
          "for _, k in ipairs({'id', 'total', 'big'}) do local _ = n[k] end\n"
          "assert(is_lazy(n))\n"
          "assert(n.nums[2] == 2)\n"
          "assert(not is_lazy(n) and getmetatable(n) == nil)  -- every member read\n"
          "assert(is_lazy(d.OldImage))        -- untouched image\n"
          "assert(d.SizeBytes == 100 and d.Keys.id == 'o-1')\n"
          "assert(d.StreamViewType == 'NEW_AND_OLD_IMAGES' and d.SequenceNumber)\n"
          "assert(is_lazy(d) and d.ApproximateCreationDateTime == 1700000000)\n"
          "assert(not is_lazy(d))\n");
  unload(L, &ld);
  lua_close(L);
}
END_TEST

/* Deleting or writing a member of a lazy map sticks: the event's value
 * never comes back, through reads, pairs or materialising. */
START_TEST(test_lazy_member_writes) {
  lua_State *L = new_state(NULL);
  add_test_globals(L);
  loaded_t ld;
  load_event(L, &ld, ORDER_EVENT);
  LUA_OK_(L,
          "local o = rec.dynamodb.OldImage\n"
          "assert(o.total == 9.99)\n"
          "o.total = nil                       -- delete a converted member\n"
          "assert(o.total == nil and is_lazy(o))\n"
          "local seen = {}\n"
          "for k in pairs(o) do seen[#seen + 1] = k end\n"
          "assert(#seen == 1 and seen[1] == 'id' and not is_lazy(o))\n"
          "local n = rec.dynamodb.NewImage\n"
          "n.id = nil                          -- delete before any read\n"
          "n.total = 5                         -- overwrite before any read\n"
          "n.extra = 'x'                       -- a new member\n"
          "assert(is_lazy(n) and n.id == nil and n.total == 5 and n.extra == 'x')\n"
          "assert(decimal(n, 'total') == nil and decimal(n, 'big') ~= nil)\n"
          "materialize(n)\n"
          "assert(not is_lazy(n) and n.id == nil and n.total == 5 and n.extra == 'x')\n"
          "assert(n.customer_id == 'c-42' and n.items[1].sku == 'a')\n"
          "local count = 0\n"
          "for _ in pairs(n) do count = count + 1 end\n"
          "assert(count == 9)                  -- 9 members - id + extra\n"
          "local d = rec.dynamodb\n"
          "d.Keys = nil\n"
          "assert(d.Keys == nil)\n"
          "rec.eventName = 'X'\n"
          "assert(rec.eventName == 'X' and rec.eventID == 'e1')\n"
          "assert(cjson.decode(cjson.encode(rec)).eventName == 'X')\n"
          "assert(cjson.decode(cjson.encode(rec)).dynamodb.Keys == nil)\n");
  unload(L, &ld);
  lua_close(L);
}
END_TEST

/* Duplicate names: the last one wins (as in JSON.parse and as when maps
 * were converted whole), for reads, pairs and deletes; a null image does
 * not hide an earlier one. */
START_TEST(test_lazy_duplicates) {
  lua_State *L = new_state(NULL);
  add_test_globals(L);
  loaded_t ld;
  load_event(L, &ld,
             "{\"Records\":[{\"eventName\":\"A\",\"eventName\":\"B\",\"dynamodb\":{"
             "\"NewImage\":{\"a\":{\"N\":\"1\"},\"b\":{\"S\":\"x\"},\"a\":{\"N\":\"2\"}},"
             "\"NewImage\":null,\"OldImage\":null}},"
             "{\"dynamodb\":{\"NewImage\":{\"a\":{\"N\":\"1\"},\"a\":{\"N\":\"2\"}}}}]}");
  LUA_OK_(L,
          "assert(rec.eventName == 'B')\n"
          "local d = rec.dynamodb\n"
          "assert(d.OldImage == nil)\n"
          "local n = d.NewImage\n"
          "assert(n.a == 2 and decimal(n, 'a') == '2')\n"
          "n.a = nil\n"
          "assert(n.a == nil)\n"
          "local seen = {}\n"
          "for k, v in pairs(n) do seen[#seen + 1] = k .. '=' .. tostring(v) end\n"
          "assert(#seen == 1 and seen[1] == 'b=x', table.concat(seen, ','))\n"
          "local keys = {}\n"
          "for k in pairs(d) do keys[#keys + 1] = k end\n"
          "assert(#keys == 1 and keys[1] == 'NewImage')\n"
          "local n2 = recs[2].dynamodb.NewImage\n"
          "assert(decimal(n2, 'a') == '2')\n"
          "local c = 0\n"
          "for k, v in pairs(n2) do c = c + 1; assert(k == 'a' and v == 2) end\n"
          "assert(c == 1)\n");
  unload(L, &ld);
  lua_close(L);
}
END_TEST

/* Member lookups compare names by length, then by two words (the first
 * and last 8 or 4 bytes, or each byte of shorter names): names of every
 * length up to 20 that differ from each other in one byte anywhere, some
 * of them escaped in the event, are told apart by reads, decimal and
 * writes. */
START_TEST(test_member_names) {
  static char ev[1 << 16];
  size_t n = 0;
  n += (size_t)snprintf(ev + n, sizeof ev - n, "{\"Records\":[{\"dynamodb\":{\"NewImage\":{");
  for (int len = 1; len <= 20; len++) {
    for (int pos = -1; pos < len; pos++) { /* -1: all 'a' */
      n += (size_t)snprintf(ev + n, sizeof ev - n, "%s\"", len == 1 && pos == -1 ? "" : ",");
      for (int i = 0; i < len; i++) {
        char ch = i == pos ? 'b' : 'a';
        if ((len + pos + i) % 7 == 0) /* some bytes escaped */
          n += (size_t)snprintf(ev + n, sizeof ev - n, "\\u00%02x", ch);
        else
          ev[n++] = ch;
      }
      n += (size_t)snprintf(ev + n, sizeof ev - n, "\":{\"N\":\"%d.%d\"}", len, pos + 1);
    }
  }
  n += (size_t)snprintf(ev + n, sizeof ev - n, "}}}]}");
  ck_assert(n < sizeof ev);
  lua_State *L = new_state(NULL);
  add_test_globals(L);
  loaded_t ld;
  load_event(L, &ld, ev);
  LUA_OK_(L,
          "local n = rec.dynamodb.NewImage\n"
          "local function name(len, pos, ch)\n"
          "  local t = {}\n"
          "  for i = 1, len do t[i] = i == pos and ch or 'a' end\n"
          "  return table.concat(t)\n"
          "end\n"
          "for len = 1, 20 do\n"
          "  for pos = 0, len do\n"
          "    local k, want = name(len, pos, 'b'), ('%d.%d'):format(len, pos)\n"
          "    assert(decimal(n, k) == want, k)\n"
          "    if pos > 0 then assert(n[name(len, pos, 'c')] == nil) end  -- no such member\n"
          "    if (len + pos) % 2 == 0 then\n"
          "      assert(n[k] == tonumber(want), k)\n"
          "    else\n"
          "      n[k] = 'w'                                -- written before read\n"
          "      assert(n[k] == 'w' and decimal(n, k) == nil, k)\n"
          "    end\n"
          "  end\n"
          "end\n"
          "local c = 0\n"
          "for k, v in pairs(n) do c = c + 1 end\n"
          "assert(c == 20 * 21 / 2 + 20)\n");
  unload(L, &ld);
  lua_close(L);
}
END_TEST

/* Protected: mm_conv_peek_n(t, k) for the table and key on the stack;
 * returns outcome and text (or nil). */
static int l_peek(lua_State *L) {
  const char *text = NULL;
  size_t len = 0;
  lua_settop(L, 2);
  int r = mm_conv_peek_n(L, 1, 2, &text, &len);
  ck_assert_int_eq(lua_gettop(L), 2);
  lua_pushinteger(L, r);
  if (r == MM_CONV_PEEK_N)
    lua_pushlstring(L, text, len);
  else
    lua_pushnil(L);
  return 2;
}

/* mm_conv_peek_n reads unread numbers and absences without converting,
 * and sends everything else to an ordinary read. */
START_TEST(test_peek) {
  lua_State *L = new_state(NULL);
  add_test_globals(L);
  lua_register(L, "peek", l_peek);
  lua_pushinteger(L, MM_CONV_PEEK_UNKNOWN);
  lua_setglobal(L, "UNKNOWN");
  lua_pushinteger(L, MM_CONV_PEEK_ABSENT);
  lua_setglobal(L, "ABSENT");
  lua_pushinteger(L, MM_CONV_PEEK_N);
  lua_setglobal(L, "N");
  loaded_t ld;
  load_event(L, &ld,
             "{\"Records\":[{\"dynamodb\":{\"NewImage\":{\"t\":{\"N\":\"19.99\"},"
             "\"j\":{\"N\":12},\"e\":{\"N\":\"\\u0031\"},\"s\":{\"S\":\"x\"},"
             "\"u\":{\"N\":\"5\"},\"l\":{\"L\":[{\"N\":\"1\"}]}}}}]}");
  LUA_OK_(L,
          "local n = rec.dynamodb.NewImage\n"
          "local r, t = peek(n, 't')\n"
          "assert(r == N and t == '19.99')\n"
          "r, t = peek(n, 'j')                 -- a JSON number in N\n"
          "assert(r == N and t == '12')\n"
          "assert(peek(n, 'e') == UNKNOWN)     -- escapes: read it\n"
          "assert(peek(n, 's') == UNKNOWN)     -- not an N\n"
          "assert(peek(n, 'l') == UNKNOWN)\n"
          "assert(peek(n, 'nope') == ABSENT)\n"
          "assert(peek(n, 1) == UNKNOWN)\n"
          "assert(next(n) == nil)               -- nothing converted\n"
          "assert(n.t == 19.99 and peek(n, 't') == UNKNOWN)  -- converted: read it\n"
          "n.t = nil\n"
          "assert(peek(n, 't') == ABSENT)      -- deleted\n"
          "n.u = 7\n"
          "assert(peek(n, 'u') == UNKNOWN)     -- written\n"
          "assert(peek({t = 1}, 't') == UNKNOWN and peek(rec.dynamodb, 'x') == UNKNOWN)\n"
          "materialize(n)\n"
          "assert(peek(n, 'j') == UNKNOWN)     -- not lazy any more\n");
  unload(L, &ld);
  lua_close(L);
}
END_TEST

/* view(t, k1, k2, ...) walks t[k1][k2]... through a view (conv.h) and
 * returns "fail", "nil", "lua" and the value, or "tape", its truthiness
 * and its N text (nil when it is no N); view_is(t, k, s) whether t[k] is
 * the string s through a view. Both check that the stack is left alone. */
static int l_view(lua_State *L) {
  int nargs = lua_gettop(L);
  mm_conv_view_t v;
  mm_conv_ref_t r = {MM_CONV_REF_LUA, 1, 0, 0}, out;
  if (!mm_conv_view_begin(L, &v)) {
    lua_pushliteral(L, "closed");
    return 1;
  }
  for (int i = 2; i <= nargs && r.where != MM_CONV_REF_NIL; i++) {
    int top = lua_gettop(L);
    if (mm_conv_view_get(L, &v, &r, i, &out) != 0) {
      ck_assert_int_eq(lua_gettop(L), top);
      lua_pushliteral(L, "fail");
      return 1;
    }
    ck_assert_int_eq(lua_gettop(L), top + (out.where == MM_CONV_REF_LUA));
    r = out;
  }
  const char *text;
  size_t len;
  switch (r.where) {
  case MM_CONV_REF_NIL:
    ck_assert_int_eq(mm_conv_view_truthy(L, &v, &r), 0);
    lua_pushliteral(L, "nil");
    return 1;
  case MM_CONV_REF_LUA:
    ck_assert_int_eq(mm_conv_view_truthy(L, &v, &r), lua_toboolean(L, r.idx));
    lua_pushliteral(L, "lua");
    lua_pushvalue(L, r.idx);
    return 2;
  default:
    lua_pushliteral(L, "tape");
    lua_pushinteger(L, mm_conv_view_truthy(L, &v, &r));
    if (mm_conv_view_n(&v, &r, &text, &len) == MM_CONV_PEEK_N)
      lua_pushlstring(L, text, len);
    else
      lua_pushnil(L);
    return 3;
  }
}
static int l_view_is(lua_State *L) {
  mm_conv_view_t v;
  mm_conv_ref_t t = {MM_CONV_REF_LUA, 1, 0, 0}, r;
  const char *s = luaL_checkstring(L, 3);
  if (!mm_conv_view_begin(L, &v) || mm_conv_view_get(L, &v, &t, 2, &r) != 0) return 0;
  lua_pushboolean(L, mm_conv_view_streq(L, &v, &r, s, strlen(s)));
  return 1;
}

/* Views give what Lua would read, members not converted yet from the
 * tape, and refuse whatever they cannot tell without converting or
 * calling something. */
START_TEST(test_view) {
  lua_State *L = new_state(NULL);
  add_test_globals(L);
  lua_register(L, "view", l_view);
  lua_register(L, "view_is", l_view_is);
  loaded_t ld;
  load_event(L, &ld,
             "{\"Records\":[{\"eventName\":\"\\u0049NSERT\",\"eventID\":\"e\",\"n\":null,"
             "\"f\":false,\"dynamodb\":{\"Keys\":{\"id\":{\"N\":\"1\"}},\"OldImage\":null,"
             "\"NewImage\":{\"t\":{\"N\":\"19.99\"},\"j\":{\"N\":12},\"s\":{\"S\":\"x\"},"
             "\"e\":{\"N\":\"\\u0031\"},\"l\":{\"L\":[{\"N\":\"1\"}]},\"u\":{\"N\":\"2\"}}}}]}");
  LUA_OK_(L,
          "local w, a, b = view(rec, 'dynamodb', 'NewImage', 't')\n"
          "assert(w == 'tape' and a == -1 and b == '19.99')   -- an AttributeValue: cannot tell\n"
          "w, a, b = view(rec, 'dynamodb', 'NewImage', 'j')\n"
          "assert(w == 'tape' and b == '12')\n"
          "w, a, b = view(rec, 'dynamodb', 'NewImage', 'e')   -- escapes: no text\n"
          "assert(w == 'tape' and b == nil)\n"
          "assert(select(3, view(rec, 'dynamodb', 'NewImage', 's')) == nil)\n"
          "assert(view(rec, 'dynamodb', 'NewImage', 'nope') == 'nil')\n"
          "assert(view(rec, 'dynamodb', 'OldImage') == 'nil')   -- null image: left out\n"
          "assert(view(rec, 'dynamodb', 'OldImage', 'x') == 'nil')\n"
          "assert(view(rec, 'nope', 'x') == 'nil')\n"
          "assert(view(rec, 'eventID', 'x') == 'fail')          -- not a container\n"
          "w, a = view(rec, 'n'); assert(w == 'tape' and a == 1)  -- cjson.null is true\n"
          "w, a = view(rec, 'f'); assert(w == 'tape' and a == 0)\n"
          "assert(view_is(rec, 'eventName', 'INSERT') and not view_is(rec, 'eventName', 'INSERTX'))\n"
          "assert(not view_is(rec, 'dynamodb', 'INSERT') and not view_is(rec, 'nope', 'INSERT'))\n"
          "assert(next(rec) == 'dynamodb' and next(rec, 'dynamodb') == nil)  -- prefilled only\n"
          "local d = rec.dynamodb\n"
          "w, a = view(rec, 'dynamodb'); assert(w == 'lua' and a == d)\n"
          "assert(view(rec, 'dynamodb', 'NewImage', 't') == 'tape' and next(d.NewImage) == nil)\n"
          "local n = d.NewImage\n"
          "assert(n.t == 19.99 and select(2, view(n, 't')) == 19.99)\n"
          "n.t = nil\n"
          "assert(view(n, 't') == 'nil')                         -- deleted\n"
          "n.u = 'w'\n"
          "assert(select(2, view(n, 'u')) == 'w')                 -- written\n"
          "rawset(n, 'j', 3)\n"
          "assert(select(2, view(n, 'j')) == 3)                   -- raw-set\n"
          "rawset(rec, 'eventName', 'REMOVE')\n"
          "assert(view_is(rec, 'eventName', 'REMOVE'))\n"
          "assert(view(n.l, 1) == 'fail' and view(n, 'l', 'x') == 'fail')  -- a list\n"
          "assert(view(setmetatable({}, {}), 'x') == 'fail')      -- a metatable of its own\n"
          "local full = setmetatable(n, {__index = function() return 'dflt' end})\n"
          "assert(not is_lazy(full) and kind(full) == 'M')\n"
          "assert(view(full, 'nope') == 'fail')                   -- converted, then given one\n"
          "w, a = view({x = 5}, 'x'); assert(w == 'lua' and a == 5)\n"
          "assert(view({}, 'x') == 'nil' and view('s', 'x') == 'fail' and view({}, 1) == 'fail')\n"
          "keep = d.Keys\n");
  unload(L, &ld);
  load_event(L, &ld, "{\"Records\":[{\"eventName\":\"INSERT\"}]}");
  LUA_OK_(L,
          "assert(view(keep, 'id') == 'fail')                    -- an earlier invocation\n"
          "assert(view_is(rec, 'eventName', 'INSERT'))\n");
  unload(L, &ld);
  /* a large map (its done members in a bitmap once one is read) */
  char big[2048];
  size_t bn = (size_t)snprintf(big, sizeof big, "{\"Records\":[{\"dynamodb\":{\"NewImage\":{");
  for (int i = 1; i <= 30; i++)
    bn += (size_t)snprintf(big + bn, sizeof big - bn, "%s\"k%d\":{\"N\":\"%d.5\"}", i > 1 ? "," : "", i, i);
  snprintf(big + bn, sizeof big - bn, "}}}]}");
  load_event(L, &ld, big);
  LUA_OK_(L,
          "local n = rec.dynamodb.NewImage\n"
          "assert(select(3, view(n, 'k3')) == '3.5')\n"
          "assert(n.k3 == 3.5 and select(2, view(n, 'k3')) == 3.5)\n"
          "assert(select(3, view(n, 'k4')) == '4.5')\n"
          "n.k5 = nil; n.k6 = 'x'\n"
          "assert(view(n, 'k5') == 'nil' and select(2, view(n, 'k6')) == 'x')\n"
          "assert(view(n, 'k31') == 'nil' and is_lazy(n))\n");
  unload(L, &ld);
  LUA_OK_(L, "assert(view({}, 'x') == 'closed')\n");
  lua_close(L);
}
END_TEST

/* Writes a random AttributeValue map (names from a small pool, so some
 * repeat; sometimes more members than the inline mask holds) into buf. */
static unsigned long diff_seed = 12345;
static unsigned diff_rand(unsigned n) {
  diff_seed = diff_seed * 6364136223846793005ul + 1442695040888963407ul;
  return (unsigned)(diff_seed >> 33) % n;
}
static size_t random_image(char *buf, size_t cap, int depth) {
  size_t n = 0;
  unsigned members = diff_rand(10) == 0 ? 20 + diff_rand(40) : diff_rand(9);
  n += (size_t)snprintf(buf + n, cap - n, "{");
  for (unsigned i = 0; i < members; i++) {
    char name[16];
    if (members > 12)
      snprintf(name, sizeof name, "k%u", diff_rand(members + 5));
    else
      snprintf(name, sizeof name, "%c", 'a' + diff_rand(10));
    n += (size_t)snprintf(buf + n, cap - n, "%s\"%s\":", i ? "," : "", name);
    switch (diff_rand(depth > 2 ? 5 : 7)) {
    case 0: n += (size_t)snprintf(buf + n, cap - n, "{\"S\":\"s%u\"}", diff_rand(100)); break;
    case 1: n += (size_t)snprintf(buf + n, cap - n, "{\"N\":\"%u.%u\"}", diff_rand(1000), diff_rand(100)); break;
    case 2: n += (size_t)snprintf(buf + n, cap - n, "{\"N\":\"%u\"}", diff_rand(1000)); break;
    case 3: n += (size_t)snprintf(buf + n, cap - n, "{\"BOOL\":%s}", diff_rand(2) ? "true" : "false"); break;
    case 4: n += (size_t)snprintf(buf + n, cap - n, "{\"NULL\":true}"); break;
    case 5:
      n += (size_t)snprintf(buf + n, cap - n, "{\"M\":");
      n += random_image(buf + n, cap - n, depth + 1);
      n += (size_t)snprintf(buf + n, cap - n, "}");
      break;
    default:
      n += (size_t)snprintf(buf + n, cap - n, "{\"L\":[{\"N\":\"1\"},{\"S\":\"x\"},{\"M\":");
      n += random_image(buf + n, cap - n, depth + 1);
      n += (size_t)snprintf(buf + n, cap - n, "}]}");
      break;
    }
  }
  n += (size_t)snprintf(buf + n, cap - n, "}");
  ck_assert(n < cap);
  return n;
}

/* Protected: global `ref` = the eager conversion of node Ref (argument 1:
 * the document). */
static int push_ref(lua_State *L) {
  const mm_json_doc_t *doc = lua_touserdata(L, 1);
  mm_conv_push_av(L, mm_json_get(doc, 0, "Ref", 3), "ref");
  lua_setglobal(L, "ref");
  return 0;
}

/* Random reads, writes, deletes, pairs, # and decimal on a lazy image give
 * exactly what they give on the same image converted eagerly. */
START_TEST(test_lazy_differential) {
  static const char *const CODE =
      "local function deep(v, seen)\n"
      "  if type(v) ~= 'table' then return render(v) end\n"
      "  local out = {}\n"
      "  for k, x in pairs(v) do out[#out + 1] = render(k) .. '=' .. deep(x) end\n"
      "  table.sort(out)\n"
      "  return '{' .. table.concat(out, ',') .. '}'\n"
      "end\n"
      "local lazy = rec.dynamodb.NewImage\n"
      "local names = {'zz', 'k1', 'a', 1}    -- some absent\n"
      "for k in pairs(ref) do names[#names + 1] = k end\n"
      "for step = 1, 30 do\n"
      "  local op, k = math.random(20), names[math.random(#names)]\n"
      "  if op <= 9 then\n"
      "    assert(deep(lazy[k]) == deep(ref[k]), 'read ' .. tostring(k))\n"
      "  elseif op <= 15 then\n"
      "    local v = ({false, 7, 'w', 2.5})[math.random(4)]\n"
      "    if op <= 12 then v = nil end\n"
      "    lazy[k], ref[k] = v, v\n"
      "  elseif op <= 17 then\n"
      "    assert(decimal(lazy, k) == decimal(ref, k), 'decimal ' .. tostring(k))\n"
      "  elseif op == 18 then\n"
      "    assert(deep(lazy) == deep(ref), 'pairs')\n"
      "  else\n"
      "    assert(#lazy == #ref, '#')\n"
      "  end\n"
      "end\n"
      "materialize(lazy)\n"
      "assert(not is_lazy(lazy) and deep(lazy) == deep(ref), 'final')\n";
  static char img[65536], ev[140000];
  lua_State *L = new_state(NULL);
  add_test_globals(L);
  for (int round = 0; round < 300; round++) {
    random_image(img, sizeof img, 0);
    int n = snprintf(ev, sizeof ev,
                     "{\"Records\":[{\"dynamodb\":{\"NewImage\":%s}}],\"Ref\":{\"M\":%s}}", img,
                     img);
    ck_assert((size_t)n < sizeof ev);
    loaded_t ld;
    load_event(L, &ld, ev);
    lua_pushcfunction(L, push_ref);
    lua_pushlightuserdata(L, &ld.doc);
    ck_assert_int_eq(lua_pcall(L, 1, 0, 0), LUA_OK);
    char seed[64];
    snprintf(seed, sizeof seed, "math.randomseed(%d)", round);
    LUA_OK_(L, seed);
    char *e = run_lua(L, CODE);
    ck_assert_msg(e == NULL, "round %d: %s\nimage: %.300s", round, e, img);
    unload(L, &ld);
  }
  lua_close(L);
}
END_TEST

/* ------------------------------------------------------------------ */
/* The record's fast path against the general one                       */
/* ------------------------------------------------------------------ */

/* conv.c's test hook: nonzero sends records down the general path. */
extern int mm_conv_fast_off;

/* xorshift64* for the record shapes below. */
static uint64_t shape_state = 0x2545F4914F6CDD1Dull;
static unsigned shape_rand(unsigned n) {
  shape_state ^= shape_state >> 12;
  shape_state ^= shape_state << 25;
  shape_state ^= shape_state >> 27;
  return (unsigned)((shape_state * 2685821657736338717ull) >> 33) % n;
}

/* Appends fmt to buf at *n. */
static void put(char *buf, size_t cap, size_t *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void put(char *buf, size_t cap, size_t *n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int w = vsnprintf(buf + *n, cap - *n, fmt, ap);
  va_end(ap);
  ck_assert(w >= 0 && (size_t)w < cap - *n);
  *n += (size_t)w;
}

/* A small image, sometimes empty, sometimes with a duplicate name. */
static void shape_image(char *buf, size_t cap, size_t *n) {
  static const char *const NAMES[] = {"a", "b", "total", "t\\u006ftal", "customer_id"};
  unsigned m = shape_rand(5);
  put(buf, cap, n, "{");
  for (unsigned i = 0; i < m; i++) {
    const char *name = NAMES[shape_rand(5)];
    switch (shape_rand(4)) {
    case 0: put(buf, cap, n, "%s\"%s\":{\"S\":\"s%u\"}", i ? "," : "", name, shape_rand(9)); break;
    case 1: put(buf, cap, n, "%s\"%s\":{\"M\":{\"x\":{\"N\":\"1\"}}}", i ? "," : "", name); break;
    default: put(buf, cap, n, "%s\"%s\":{\"N\":\"%u.5\"}", i ? "," : "", name, shape_rand(99)); break;
    }
  }
  put(buf, cap, n, "}");
}

/* An image member's value: mostly an object, sometimes null, rarely not
 * an object at all (the record then fails to push). */
static void shape_image_value(char *buf, size_t cap, size_t *n) {
  unsigned r = shape_rand(40);
  if (r == 0)
    put(buf, cap, n, "[1]");
  else if (r < 8)
    put(buf, cap, n, "null");
  else
    shape_image(buf, cap, n);
}

/* The dynamodb object: the usual members in a random order and subset,
 * images duplicated, escaped, null or empty, and sometimes more members
 * than the inline mask holds. */
static void shape_ddb(char *buf, size_t cap, size_t *n) {
  static const char *const NAMES[] = {"Keys", "NewImage", "OldImage", "New\\u0049mage",
                                      "SizeBytes", "ApproximateCreationDateTime"};
  unsigned m = shape_rand(7), fill = shape_rand(8) == 0 ? 20 + shape_rand(6) : shape_rand(3);
  put(buf, cap, n, "{");
  size_t start = *n;
  for (unsigned i = 0; i < m; i++) {
    unsigned which = shape_rand(6);
    put(buf, cap, n, "%s\"%s\":", *n > start ? "," : "", NAMES[which]);
    if (which >= 4)
      put(buf, cap, n, "%u", shape_rand(1000));
    else
      shape_image_value(buf, cap, n);
  }
  for (unsigned i = 0; i < fill; i++) put(buf, cap, n, "%s\"g%u\":%u", *n > start ? "," : "", i, i);
  put(buf, cap, n, "}");
}

/* One record: a few plain members around zero, one or two dynamodb
 * members (of any type, the name sometimes escaped), sometimes more
 * members than the inline mask holds. */
static void shape_record(char *buf, size_t cap, size_t *n, unsigned id) {
  unsigned fill = shape_rand(8) == 0 ? 20 + shape_rand(6) : shape_rand(3);
  unsigned nddb = shape_rand(6) == 0 ? 0 : shape_rand(8) == 0 ? 2 : 1;
  put(buf, cap, n, "{\"eventID\":\"e%u\"", id);
  if (shape_rand(2)) put(buf, cap, n, ",\"eventName\":\"MODIFY\"");
  for (unsigned i = 0; i < fill; i++) put(buf, cap, n, ",\"f%u\":%u", i, i);
  for (unsigned i = 0; i < nddb; i++) {
    put(buf, cap, n, ",\"%s\":", shape_rand(5) == 0 ? "dynamo\\u0064b" : "dynamodb");
    switch (shape_rand(10)) {
    case 0: put(buf, cap, n, "null"); break;
    case 1: put(buf, cap, n, "\"x\""); break;
    case 2: put(buf, cap, n, "{}"); break;
    default: shape_ddb(buf, cap, n); break;
    }
  }
  if (shape_rand(3) == 0) put(buf, cap, n, ",\"awsRegion\":\"r\"");
  put(buf, cap, n, "}");
}

/* Protected: every record of the document (argument 1) pushed twice,
 * with the fast path and without it, into globals `fast` and `slow`: the
 * record, or the message of the error pushing it raised. */
static int push_one(lua_State *L) {
  mm_conv_push_record(L, (uint32_t)lua_tointeger(L, 1));
  return 1;
}
static int push_both_ways(lua_State *L) {
  const mm_json_doc_t *doc = lua_touserdata(L, 1);
  uint32_t recs = mm_json_get(doc, 0, "Records", 7);
  for (int off = 0; off < 2; off++) {
    uint32_t e = recs + 1;
    mm_conv_fast_off = off;
    lua_createtable(L, (int)mm_json_len(doc, recs), 0);
    for (uint32_t i = 0; i < mm_json_len(doc, recs); i++) {
      lua_pushcfunction(L, push_one);
      lua_pushinteger(L, e);
      lua_pcall(L, 1, 1, 0); /* the record or the error message */
      lua_rawseti(L, -2, (lua_Integer)i + 1);
      e = mm_json_next(doc, e);
    }
    lua_setglobal(L, off ? "slow" : "fast");
  }
  mm_conv_fast_off = 0;
  return 0;
}

/* One round of the comparisons below: a document of 100 records of
 * random shapes (shape_record; the text in a static buffer) parsed into
 * doc and made current, its records pushed both ways (push_both_ways),
 * math.randomseed(round), then code run, its nres results left on the
 * stack (a failure aborts, naming the round). shape_round_end after. */
static void shape_round(lua_State *L, mm_json_doc_t *doc, int round, const char *code,
                        int nres) {
  static char ev[1 << 20];
  size_t n = 0;
  put(ev, sizeof ev, &n, "{\"Records\":[");
  for (unsigned i = 0; i < 100; i++) {
    if (i) put(ev, sizeof ev, &n, ",");
    shape_record(ev, sizeof ev, &n, i);
  }
  put(ev, sizeof ev, &n, "]}");
  parse(doc, ev, n);
  mm_conv_set_doc(L, doc, 64);
  lua_pushcfunction(L, push_both_ways);
  lua_pushlightuserdata(L, doc);
  ck_assert_int_eq(lua_pcall(L, 1, 0, 0), LUA_OK);
  char seed[64];
  snprintf(seed, sizeof seed, "math.randomseed(%d)", round);
  LUA_OK_(L, seed);
  ck_assert_int_eq(luaL_loadstring(L, code), LUA_OK);
  if (lua_pcall(L, 0, nres, 0) != LUA_OK)
    ck_abort_msg("round %d: %s\n%.2000s", round, lua_tostring(L, -1), ev);
}

static void shape_round_end(lua_State *L, mm_json_doc_t *doc) {
  mm_conv_set_doc(L, NULL, 0);
  mm_json_free(doc);
}

/* The same reads, writes, deletions, pairs, decimal and materialise on
 * records pushed the fast way and the general way give the same results,
 * and leave the same raw contents, laziness and origins behind at every
 * step; a record that cannot be pushed fails with the same message. */
START_TEST(test_record_fast_path) {
  static const char *const CODE =
      "local function snap(v, depth)\n"
      "  if type(v) ~= 'table' then return render(v) end\n"
      "  local out = {}\n"
      "  for k, x in next, v do\n"
      "    out[#out + 1] = render(k) .. '=' .. (depth < 3 and snap(x, depth + 1) or type(x))\n"
      "  end\n"
      "  table.sort(out)\n"
      "  return (is_lazy(v) and 'lazy' or '') .. (kind(v) or '') .. '{' .. table.concat(out, ',') .. '}'\n"
      "end\n"
      "local RN = {'eventID', 'eventName', 'dynamodb', 'awsRegion', 'f1', 'nope'}\n"
      "local DN = {'Keys', 'NewImage', 'OldImage', 'SizeBytes', 'g1', 'nope'}\n"
      "local IN = {'a', 'b', 'total', 'customer_id', 'nope'}\n"
      "local VALS = {false, 7, 'w', 2.5, 'table'}\n"
      "local function tables(r)\n"
      "  local d = r.dynamodb\n"
      "  if type(d) ~= 'table' then return r end\n"
      "  local img = d[DN[math.random(3)]]\n"
      "  return r, d, type(img) == 'table' and img or nil\n"
      "end\n"
      "local pushed = 0\n"
      "for i = 1, #fast do\n"
      "  local a, b = fast[i], slow[i]\n"
      "  assert(type(a) == type(b), i)\n"
      "  if type(a) == 'string' then\n"
      "    assert(a == b, a .. ' vs ' .. b)\n"
      "  else\n"
      "    pushed = pushed + 1\n"
      "    assert(snap(a, 0) == snap(b, 0), i .. ': ' .. snap(a, 0) .. ' vs ' .. snap(b, 0))\n"
      "    for step = 1, 12 do\n"
      "      local seed = math.random(1 << 30)\n"
      "      local res = {}\n"
      "      for side, r in ipairs({a, b}) do\n"
      "        math.randomseed(seed)\n"
      "        local t = select(math.random(3), tables(r)) or r\n"
      "        local names = t == r and RN or t == r.dynamodb and DN or IN\n"
      "        local k, op = names[math.random(#names)], math.random(10)\n"
      "        local out\n"
      "        if op <= 4 then out = snap(t[k], 0)\n"
      "        elseif op <= 6 then\n"
      "          local v = VALS[math.random(#VALS)]\n"
      "          if v == 'table' then v = {1} end           -- a fresh one per side\n"
      "          t[k] = v; out = 'w'\n"
      "        elseif op == 7 then t[k] = nil; out = 'd'\n"
      "        elseif op == 8 then out = tostring(decimal(t, k))\n"
      "        elseif op == 9 then\n"
      "          local ks = {}\n"
      "          for key in pairs(t) do ks[#ks + 1] = render(key) end\n"
      "          table.sort(ks)\n"
      "          out = table.concat(ks, ',')\n"
      "        else out = tostring(#t) end\n"
      "        res[side] = out .. '|' .. snap(r, 0)\n"
      "      end\n"
      "      assert(res[1] == res[2], i .. ' step ' .. step .. ': ' .. res[1] .. ' vs ' .. res[2])\n"
      "    end\n"
      "    materialize(a); materialize(b)\n"
      "    assert(render(a) == render(b) and not is_lazy(a), i)\n"
      "  end\n"
      "end\n"
      "return pushed\n";
  lua_State *L = new_state(NULL);
  add_test_globals(L);
  int pushed = 0;
  for (int round = 0; round < 20; round++) {
    mm_json_doc_t doc;
    shape_round(L, &doc, round, CODE, 1);
    pushed += (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    shape_round_end(L, &doc);
  }
  ck_assert_int_gt(pushed, 1500); /* most records push; some fail alike */
  ck_assert_int_eq(lua_gettop(L), 0);
  lua_close(L);
}
END_TEST

/* Records of unusual shapes through the fast path: escaped names, a
 * duplicate dynamodb whose first copy holds a malformed image, a null
 * NewImage before an object one, a record (and a dynamodb object) whose
 * prefilled member is its only one. */
START_TEST(test_record_fast_shapes) {
  lua_State *L = new_state(NULL);
  add_test_globals(L);
  loaded_t ld;
  load_event(L, &ld,
             "{\"Records\":["
             "{\"eventName\":\"A\",\"dynamo\\u0064b\":{\"New\\u0049mage\":{\"x\":{\"N\":\"1\"}}}},"
             "{\"dynamodb\":{\"NewImage\":null,\"OldImage\":null,\"NewImage\":{\"x\":{\"N\":\"2\"}},"
             "\"Keys\":{}}},"
             "{\"dynamodb\":{\"NewImage\":{\"x\":{\"N\":\"3\"}}}},"
             "{\"dynamodb\":{\"NewImage\":{\"x\":{\"N\":\"4\"}},\"NewImage\":{\"x\":{\"N\":\"5\"}},"
             "\"z\":1}}]}");
  LUA_OK_(L,
          "local r = recs[1]\n"
          "local d = rawget(r, 'dynamodb')\n"
          "assert(is_lazy(r) and d and rawget(d, 'NewImage') and not is_lazy(d))\n"
          "assert(decimal(rawget(d, 'NewImage'), 'x') == '1' and r.eventName == 'A')\n"
          "d = rawget(recs[2], 'dynamodb')\n"
          "local n = rawget(d, 'NewImage')\n"
          "assert(is_lazy(d) and n.x == 2 and d.OldImage == nil and next(d.Keys) == nil)\n"
          "assert(not is_lazy(d) and kind(d.Keys) == 'M')\n"
          "r = recs[3]\n"
          "assert(not is_lazy(r) and not is_lazy(r.dynamodb) and r.dynamodb.NewImage.x == 3)\n"
          "d = recs[4].dynamodb\n"
          "assert(d.NewImage.x == 5 and d.z == 1 and not is_lazy(d))\n"
          "local c = 0\n"
          "for k in pairs(d) do c = c + 1 end\n"
          "assert(c == 2)\n");
  unload(L, &ld);
  /* the first of two dynamodb objects holds a malformed image: pushing
   * fails, as it always did */
  load_fails(L, "{\"Records\":[{\"dynamodb\":{\"Keys\":5},\"dynamodb\":{\"NewImage\":{}}}]}",
             "Keys: image is not an object");
  lua_close(L);
}
END_TEST

/* Describes view reference r for viewcmp (pushed). */
static void push_ref_desc(lua_State *L, const mm_conv_view_t *v, const mm_conv_ref_t *r) {
  const char *text;
  size_t len;
  switch (r->where) {
  case MM_CONV_REF_NIL: lua_pushliteral(L, "nil"); return;
  case MM_CONV_REF_LUA:
    if (lua_istable(L, r->idx))
      lua_pushliteral(L, "table");
    else
      lua_pushfstring(L, "lua:%s", luaL_tolstring(L, r->idx, NULL)), lua_remove(L, -2);
    return;
  default:
    if (mm_conv_view_n(v, r, &text, &len) == MM_CONV_PEEK_N)
      lua_pushfstring(L, "N:%s", lua_pushlstring(L, text, len)), lua_remove(L, -2);
    else if (mm_conv_view_truthy(L, v, r) == 1 && r->kind != 3 /* R_AV */)
      lua_pushliteral(L, "tape");
    else
      lua_pushfstring(L, "tape%d", mm_conv_view_truthy(L, v, r));
  }
}

/* viewcmp(t, via, k1, ..., kn): reads t[via] through a view when via is
 * not false (the table the names are read from: a Lua table or still on
 * the tape), then the names k1..kn from it with mm_conv_view_getn and one
 * by one with mm_conv_view_get, and raises when they differ in outcome,
 * where the values are, tape nodes or Lua values, or leave the stack
 * other than they say. Returns getn's outcome (0, -1; -2 when t[via]
 * cannot be viewed, -3 when it is nil) and a table of descriptions of
 * the values ("nil", "table", "lua:<tostring>", "N:<text>" for an N on
 * the tape, "tape" for a table or a true plain value on the tape,
 * "tape-1" for another AttributeValue, "tape0" for false). */
static int l_viewcmp(lua_State *L) {
  int nargs = lua_gettop(L), n = nargs - 2;
  mm_conv_view_t v;
  mm_conv_ref_t t = {MM_CONV_REF_LUA, 1, 0, 0}, got[MM_CONV_VIEW_MAX], one;
  mm_conv_names_t names;
  int k[MM_CONV_VIEW_MAX];
  ck_assert(n >= 1 && n <= MM_CONV_VIEW_MAX);
  if (!mm_conv_view_begin(L, &v)) return luaL_error(L, "no view");
  if (lua_toboolean(L, 2)) {
    int top = lua_gettop(L);
    mm_conv_ref_t rec = t;
    if (mm_conv_view_get(L, &v, &rec, 2, &t) != 0) {
      ck_assert_int_eq(lua_gettop(L), top);
      lua_pushinteger(L, -2); /* cannot even get there */
      return 1;
    }
    if (t.where == MM_CONV_REF_NIL) {
      lua_pushinteger(L, -3);
      return 1;
    }
  }
  for (int i = 0; i < n; i++) k[i] = 3 + i;
  ck_assert_int_eq(mm_conv_view_names(L, k, n, &names), 0);
  int base = lua_gettop(L);
  int rc = mm_conv_view_getn(L, &v, &t, &names, got);
  int pushed = lua_gettop(L) - base, lua_refs = 0;
  if (rc != 0) ck_assert_int_eq(pushed, 0);
  int any_fail = 0;
  for (int i = 0; i < n; i++) {
    int top = lua_gettop(L);
    int r1 = mm_conv_view_get(L, &v, &t, k[i], &one);
    if (r1 != 0) {
      ck_assert_int_eq(lua_gettop(L), top);
      any_fail = 1;
      continue;
    }
    ck_assert_int_eq(lua_gettop(L), top + (one.where == MM_CONV_REF_LUA));
    if (rc != 0) continue;
    if (got[i].where != one.where)
      return luaL_error(L, "name %d: getn where %d, get where %d", i + 1, got[i].where, one.where);
    if (one.where == MM_CONV_REF_TAPE && (got[i].kind != one.kind || got[i].node != one.node))
      return luaL_error(L, "name %d: tape refs differ", i + 1);
    if (one.where == MM_CONV_REF_LUA) {
      lua_refs++;
      if (got[i].idx != base + lua_refs || !lua_rawequal(L, got[i].idx, one.idx))
        return luaL_error(L, "name %d: Lua values differ", i + 1);
    }
    lua_settop(L, top);
  }
  if (rc == 0 && pushed != lua_refs) return luaL_error(L, "getn pushed %d, %d Lua values", pushed, lua_refs);
  if ((rc != 0) != any_fail) return luaL_error(L, "getn %d, one by one %s", rc, any_fail ? "failed" : "ok");
  lua_pushinteger(L, rc);
  lua_createtable(L, n, 0);
  for (int i = 0; rc == 0 && i < n; i++) {
    push_ref_desc(L, &v, &got[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 2;
}

/* mm_conv_view_getn reads what Lua reads: on random records (duplicate,
 * escaped, null and malformed images and dynamodb objects; maps bigger
 * than the inline mask) after random reads, writes, deletions and raw
 * sets, names read through getn from the record, from its dynamodb object
 * (a table or still on the tape) and from an image are what Lua reads
 * from a twin record that had the same done to it (the N text on the
 * tape: the twin's decimal), and what mm_conv_view_get reads name by
 * name; getn fails whenever one of them does. */
START_TEST(test_view_getn) {
  static const char *const CODE =
      "local RN = {'dynamodb', 'eventName', 'eventID', 'dynamo\\x64b', 'f1', 'nope'}\n"
      "local DN = {'NewImage', 'OldImage', 'Keys', 'SizeBytes', 'g1', 'nope'}\n"
      "local IN = {'a', 'b', 'total', 'customer_id', 'nope'}\n"
      "local function pick(list, n)\n"
      "  local out = {}\n"
      "  for i = 1, n do out[i] = list[math.random(#list)] end\n"
      "  return out\n"
      "end\n"
      "local function touch(r)\n"
      "  local op = math.random(12)\n"
      "  local d = r.dynamodb                -- not raw: the twins differ in what is converted\n"
      "  local img = type(d) == 'table' and d[DN[math.random(3)]] or nil\n"
      "  local rk, dk, ik = RN[math.random(#RN)], DN[math.random(#DN)], IN[math.random(#IN)]\n"
      "  local maybe = math.random(2) == 1 and 'x' or nil\n"
      "  if op == 1 then local _ = r[rk]\n"
      "  elseif op == 2 then r[rk] = maybe\n"
      "  elseif op == 3 then rawset(r, rk, 'raw')\n"
      "  elseif op == 4 and type(d) == 'table' then local _ = d[dk]\n"
      "  elseif op == 5 and type(d) == 'table' then d[dk] = nil\n"
      "  elseif op == 6 and type(img) == 'table' then local _ = img[ik]\n"
      "  elseif op == 7 and type(img) == 'table' then img[ik] = 7\n"
      "  elseif op == 8 and type(img) == 'table' then img[ik] = nil\n"
      "  end\n"
      "end\n"
      /* what Lua reads of t[k], described as viewcmp describes a view */
      "local function lua_desc(t, k, view)\n"
      "  local y = t[k]\n"
      "  if y == nil then return view == 'nil' end\n"
      "  if view == 'nil' then return false end\n"
      "  if view:sub(1, 2) == 'N:' then return math.type(y) ~= nil and decimal(t, k) == view:sub(3) end\n"
      "  if view == 'table' then return type(y) == 'table' end\n"
      "  if view:sub(1, 4) == 'lua:' then return tostring(y) == view:sub(5) end\n"
      "  if view == 'tape' then return y ~= false end\n"
      "  if view == 'tape0' then return y == false end\n"
      "  return view == 'tape-1'\n"
      "end\n"
      "local seen = {[0] = 0, [-1] = 0, [-2] = 0, [-3] = 0}\n"
      "local function check(a, b, via, names)\n"
      "  local rc, descs = viewcmp(a, via, table.unpack(names))\n"
      "  seen[rc] = seen[rc] + 1\n"
      "  if rc ~= 0 then return end\n"
      "  local t = b\n"
      "  if via then t = b[via] end\n"
      "  for i, k in ipairs(names) do\n"
      "    assert(lua_desc(t, k, descs[i]), ('%s.%s: view %s, Lua %s'):format(tostring(via), k,\n"
      "           descs[i], tostring(t[k])))\n"
      "  end\n"
      "  t = a                                -- the same reads, so the twins stay twins\n"
      "  if via then t = a[via] end\n"
      "  for _, k in ipairs(names) do local _ = t[k] end\n"
      "end\n"
      "for i = 1, #fast do\n"
      "  local a, b = fast[i], slow[i]\n"
      "  if type(a) == 'table' then\n"
      "    for step = 1, 8 do\n"
      "      local seed = math.random(1 << 30)\n"
      "      math.randomseed(seed); touch(a)\n"
      "      math.randomseed(seed); touch(b)\n"
      "      local n = math.random(4)\n"
      "      check(a, b, false, pick(RN, n))\n"
      "      check(a, b, 'dynamodb', pick(DN, n))\n"
      "      local d, e = rawget(a, 'dynamodb'), rawget(b, 'dynamodb')\n"
      "      if type(d) == 'table' and type(e) == 'table' then\n"
      "        for _, name in ipairs({'NewImage', 'OldImage', 'Keys'}) do check(d, e, name, pick(IN, n)) end\n"
      "      end\n"
      "    end\n"
      "  end\n"
      "end\n"
      "return seen[0], seen[-1]\n";
  lua_State *L = new_state(NULL);
  add_test_globals(L);
  lua_register(L, "viewcmp", l_viewcmp);
  long ok = 0, failed = 0;
  for (int round = 0; round < 10; round++) {
    mm_json_doc_t doc;
    shape_round(L, &doc, round, CODE, 2);
    ok += lua_tointeger(L, -2);
    failed += lua_tointeger(L, -1);
    lua_pop(L, 2);
    /* a record still lazy, its eventID not read: of the previous
     * document, stale for getn as for get */
    LUA_OK_(L, round ? "assert(viewcmp(old, false, 'eventID', 'dynamodb') == -1)\n"
                     : "for i = 1, #fast do\n"
                       "  local r = fast[i]\n"
                       "  if type(r) == 'table' and is_lazy(r) and rawget(r, 'eventID') == nil then\n"
                       "    old = r\n"
                       "    break\n"
                       "  end\n"
                       "end\n"
                       "assert(old and viewcmp(old, false, 'eventID') == 0)\n");
    shape_round_end(L, &doc);
  }
  ck_assert_int_gt(ok, 5000);
  ck_assert_int_gt(failed, 10); /* views of strings, malformed images */
  lua_close(L);
}
END_TEST

/* A map of more members than fit the origin's inline mask keeps a bitmap:
 * the same per-member behaviour. */
START_TEST(test_lazy_big_map) {
  lua_State *L = new_state(NULL);
  add_test_globals(L);
  loaded_t ld;
  static char ev[8192];
  size_t n = (size_t)snprintf(ev, sizeof ev, "{\"Records\":[{\"dynamodb\":{\"NewImage\":{");
  for (int i = 1; i <= 70; i++)
    n += (size_t)snprintf(ev + n, sizeof ev - n, "%s\"k%d\":{\"N\":\"%d.5\"}", i > 1 ? "," : "",
                          i, i);
  n += (size_t)snprintf(ev + n, sizeof ev - n, "}}}]}");
  ck_assert(n < sizeof ev);
  load_event(L, &ld, ev);
  LUA_OK_(L,
          "local m = rec.dynamodb.NewImage\n"
          "assert(m.k65 == 65.5 and m.k3 == 3.5 and is_lazy(m))\n"
          "assert(rawget(m, 'k4') == nil and decimal(m, 'k4') == '4.5')\n"
          "assert(decimal(m, 'k65') == '65.5' and kind(m) == 'M')\n"
          "m.k3 = nil\n"
          "m.k70 = 'w'\n"
          "assert(m.k3 == nil and m.k70 == 'w' and m.k71 == nil)\n"
          "assert(decimal(m, 'k3') == nil and decimal(m, 'k70') == nil)\n"
          "for i = 1, 69 do local _ = m['k' .. i] end\n"
          "assert(not is_lazy(m))             -- every member done\n"
          "assert(m.k3 == nil and m.k70 == 'w' and m.k69 == 69.5)\n"
          "assert(decimal(m, 'k4') == '4.5' and decimal(m, 'k3') == nil and kind(m) == 'M')\n"
          "local c = 0\n"
          "for _ in pairs(m) do c = c + 1 end\n"
          "assert(c == 69)\n"
          "local m2 = rec.dynamodb.OldImage\n"
          "assert(m2 == nil)\n");
  unload(L, &ld);
  load_event(L, &ld, ev);
  LUA_OK_(L,
          "local m = rec.dynamodb.NewImage\n"
          "assert(m.k30 == 30.5)\n"
          "m.k31 = nil\n"
          "local c = 0\n"
          "for _ in pairs(m) do c = c + 1 end\n"
          "assert(c == 69 and not is_lazy(m) and m.k31 == nil and m.k1 == 1.5)\n");
  /* many of them, partly converted or complete, then collected: tables
   * that get their memory are not taken for them */
  set_fresh(L, &ld);
  LUA_OK_(L,
          "local keep = {}\n"
          "for i = 1, 300 do\n"
          "  local m = fresh().dynamodb.NewImage\n"
          "  assert(m.k5 == 5.5)\n"
          "  if i % 2 == 0 then m.k6 = nil; for _ in pairs(m) do end end\n"
          "  keep[i] = m\n"
          "end\n"
          "for i = 1, 300 do\n"
          "  local m = keep[i]\n"
          "  assert(decimal(m, 'k7') == '7.5' and kind(m) == 'M' and is_lazy(m) == (i % 2 == 1))\n"
          "  assert(decimal(m, 'k6') == (i % 2 == 1 and '6.5' or nil))\n"
          "end\n"
          "keep = nil\n"
          "collectgarbage(); collectgarbage()\n"
          "for i = 1, 3000 do\n"
          "  local t = {k7 = 7.5, k5 = 5.5}\n"
          "  assert(kind(t) == nil and decimal(t, 'k7') == nil and decimal(t, 'k5') == nil)\n"
          "end\n");
  unload(L, &ld);
  lua_close(L);
}
END_TEST

/* pairs, ipairs, #, materialize + cjson.encode all give full content. */
START_TEST(test_lazy_full_views) {
  lua_State *L = new_state(NULL);
  add_test_globals(L);
  loaded_t ld;
  load_event(L, &ld, ORDER_EVENT);
  LUA_OK_(L,
          "local n = rec.dynamodb.NewImage\n"
          "local keys = {}\n"
          "for k in pairs(n) do keys[#keys + 1] = k end\n"
          "table.sort(keys)\n"
          "assert(table.concat(keys, ',') == "
          "'address,big,customer_id,empty,id,items,nums,tags,total', table.concat(keys, ','))\n"
          "local f = pairs(rec.dynamodb.Keys)              -- the iterator checks its arguments\n"
          "assert(not pcall(f, 5) and not pcall(f) and f(rec.dynamodb.Keys) == 'id')\n"
          "assert(f(rec.dynamodb.Keys, nil, 'extra') == 'id' and f(rec.dynamodb.Keys, 'id') == nil)\n"
          "local items = n.items\n"
          "assert(is_lazy(items))\n"
          "assert(#items == 2 and not is_lazy(items))\n"
          "local addr = n.address\n"
          "local geo = addr.geo\n"
          "local seen = {}\n"
          "for i, v in ipairs(geo) do seen[i] = v end\n"
          "assert(#seen == 2 and seen[1] == 59.9 and seen[2] == 10.7)\n"
          "local skus = {}\n"
          "for i, it in ipairs(items) do skus[i] = it.sku .. it.qty end\n"
          "assert(table.concat(skus, ',') == 'a2,b1')\n"
          "assert(table.concat(rec.dynamodb.NewImage.tags, ',') == 'x,y')\n"
          "assert(rec.dynamodb.Keys.id == 'o-1')\n");
  /* cjson.encode reads raw: before materialising a lazy table is {} */
  LUA_OK_(L,
          "local o = rec.dynamodb.OldImage\n"
          "assert(is_lazy(o))\n"
          "assert(cjson.encode(o) == '{}')\n"
          "materialize(rec)\n"
          "assert(not is_lazy(o))\n"
          "local back = cjson.decode(cjson.encode(rec))\n"
          "assert(back.dynamodb.OldImage.total == 9.99)\n"
          "assert(back.dynamodb.NewImage.items[2].sku == 'b')\n"
          "assert(back.dynamodb.NewImage.address.geo[1] == 59.9)\n"
          "assert(back.dynamodb.Keys.id == 'o-1')\n"
          "assert(back.eventID == 'e1')\n");
  /* a fresh record: table.concat / unpack / table.sort / # work lazily */
  mm_conv_set_doc(L, &ld.doc, 64);
  lua_pushcfunction(L, load_body);
  lua_pushlightuserdata(L, &ld.doc);
  ck_assert_int_eq(lua_pcall(L, 1, 0, 0), LUA_OK);
  LUA_OK_(L,
          "local n = rec.dynamodb.NewImage\n"
          "local geo = n.address.geo\n"
          "assert(is_lazy(geo))\n"
          "local a, b = table.unpack(geo)\n"
          "assert(a == 59.9 and b == 10.7)\n"
          "local it = n.items\n"
          "table.sort(it, function(x, y) return x.sku > y.sku end)\n"
          "assert(it[1].sku == 'b')\n");
  unload(L, &ld);
  lua_close(L);
}
END_TEST

/* Writes reach lazy tables; setmetatable works on a lazy table. */
START_TEST(test_lazy_writes) {
  lua_State *L = new_state(NULL);
  add_test_globals(L);
  loaded_t ld;
  load_event(L, &ld, ORDER_EVENT);
  LUA_OK_(L,
          "local n = rec.dynamodb.NewImage\n"
          "n.extra = 1\n"
          "assert(n.extra == 1 and n.customer_id == 'c-42')\n"
          "local o = rec.dynamodb.OldImage\n"
          "o.total = 5               -- overwrite an existing member\n"
          "assert(o.total == 5 and o.id == 'o-1')\n"
          "local geo = n.address.geo\n"
          "table.insert(geo, 1.5)\n"
          "assert(#geo == 3 and geo[1] == 59.9 and geo[3] == 1.5)\n"
          "local items = n.items\n"
          "local mt = {__index = function(t, k) return 'dflt' end}\n"
          "assert(setmetatable(items, mt) == items)\n"
          "assert(getmetatable(items) == mt and #items == 2 and items.nope == 'dflt')\n"
          "local ok, err = pcall(setmetatable, items, 5)\n"
          "assert(not ok and err:find('nil or table'))\n"
          "assert(is_lazy(n) and setmetatable(n, mt) == n and not is_lazy(n))\n"
          "assert(n.total == 19.99 and n.extra == 1 and n.nope == 'dflt')\n");
  unload(L, &ld);
  lua_close(L);
}
END_TEST

/* Many lazy tables alive at once (the origin map grows several times)
 * and tables collected and their addresses reused: every table keeps its
 * own done members, deletions and writes. */
START_TEST(test_lazy_many_tables) {
  lua_State *L = new_state(NULL);
  add_test_globals(L);
  loaded_t ld;
  load_event(L, &ld, ORDER_EVENT);
  set_fresh(L, &ld);
  LUA_OK_(L,
          "for round = 1, 3 do\n"
          "  local keep = {}\n"
          "  for i = 1, 3000 do\n"
          "    local n = fresh().dynamodb.NewImage\n"
          "    if i % 3 == 0 then assert(n.total == 19.99); n.total = nil\n"
          "    elseif i % 3 == 1 then n.customer_id = 'w' .. i\n"
          "    else assert(n.id == 'o-1') end\n"
          "    keep[i] = n\n"
          "    if i % 500 == 0 then collectgarbage() end\n"
          "  end\n"
          "  for i = 1, 3000 do\n"
          "    local n = keep[i]\n"
          "    assert(is_lazy(n))\n"
          "    if i % 3 == 0 then\n"
          "      assert(n.total == nil and n.customer_id == 'c-42')\n"
          "      assert(decimal(n, 'total') == nil and decimal(n, 'big') ~= nil)\n"
          "    elseif i % 3 == 1 then\n"
          "      assert(n.customer_id == 'w' .. i and n.total == 19.99)\n"
          "    else\n"
          "      assert(n.id == 'o-1' and n.total == 19.99 and decimal(n, 'total') == '19.99')\n"
          "    end\n"
          "    local c = 0\n"
          "    for _ in pairs(n) do c = c + 1 end\n"
          "    assert(c == (i % 3 == 0 and 8 or 9) and not is_lazy(n))\n"
          "  end\n"
          "  keep = nil\n"
          "  collectgarbage()\n"
          "end\n");
  unload(L, &ld);
  lua_close(L);
}
END_TEST

/* A document with more lazy tables than the origin map keeps between
 * documents (it grows, then shrinks at the next document): the next
 * document's tables work, the old ones are stale, and it grows again. */
START_TEST(test_origin_map_shrinks) {
  lua_State *L = new_state(NULL);
  add_test_globals(L);
  static const char *const FILL =
      "keep = {}\n"
      "for i = 1, 40000 do\n"
      "  local r = fresh()\n"
      "  if i % 1000 == 0 then assert(r.eventID == 'e1'); r.eventName = i end\n"
      "  keep[i] = r\n"
      "end\n"
      "for i = 1000, 40000, 1000 do\n"
      "  assert(keep[i].eventName == i and keep[i].eventID == 'e1' and is_lazy(keep[i]))\n"
      "end\n"
      "assert(keep[7].dynamodb.NewImage.total == 19.99 and keep[7].eventName == 'MODIFY')\n";
  for (int round = 0; round < 2; round++) {
    loaded_t ld;
    load_event(L, &ld, ORDER_EVENT);
    set_fresh(L, &ld);
    if (round == 1)
      LUA_OK_(L,
              "local ok, e = pcall(function() return old.eventVersion end)\n"
              "assert(not ok and e:find('earlier invocation'), e)\n"
              "assert(old.eventName == 2000)            -- written: an ordinary read\n");
    LUA_OK_(L, FILL);
    LUA_OK_(L, "old = keep[2000]; keep = nil; collectgarbage()\n");
    unload(L, &ld);
  }
  lua_close(L);
}
END_TEST

/* Origins are exact: a converted table that is collected takes its
 * origin with it, so a table that later gets its memory (the allocator
 * hands freed blocks out again at once) is not taken for it. Each round
 * converts lazy and complete containers of every kind, drops them, and
 * then plain tables holding the event's numbers must be unknown to conv;
 * so must a converted one of the other document, and new converted ones
 * must have their own origins. */
START_TEST(test_reused_addresses) {
  lua_State *L = new_state(NULL);
  add_test_globals(L);
  loaded_t ld;
  load_event(L, &ld, ORDER_EVENT);
  set_fresh(L, &ld);
  static const char *const ROUND =
      "local keep = {}\n"
      "for i = 1, 500 do\n"
      "  local r = fresh()\n"
      "  local n = r.dynamodb.NewImage\n"
      "  local items, addr = n.items, n.address\n"
      "  keep[#keep + 1] = r\n"
      "  keep[#keep + 1] = items[1]\n"
      "  keep[#keep + 1] = addr.geo\n"
      "  if i % 2 == 0 then materialize(r) end  -- complete, or left lazy\n"
      "end\n"
      "keep = nil\n"
      "collectgarbage(); collectgarbage()\n"
      "local plain = {}\n"
      "for i = 1, 20000 do\n"
      "  local t = {total = 19.99, qty = 2, 1.1, 59.9}\n"
      "  if kind(t) ~= nil or decimal(t, 'total') ~= nil or decimal(t, 'qty') ~= nil\n"
      "     or decimal(t, 1) ~= nil or decimal(t, 2) ~= nil then\n"
      "    error('plain table ' .. i .. ' taken for ' .. tostring(kind(t)))\n"
      "  end\n"
      "  plain[i] = t\n"
      "end\n"
      "plain = nil\n"
      "collectgarbage()\n"
      "for i = 1, 200 do\n"
      "  local n = fresh().dynamodb.NewImage\n"
      "  assert(kind(n) == 'M' and decimal(n, 'total') == '19.99')\n"
      "  assert(kind(n.nums) == 'NS' and decimal(n.nums, 1) == '1.10')\n"
      "  assert(kind(n.address.geo) == 'L' and decimal(n.address.geo, 1) == '59.9')\n"
      "  assert(decimal(n.items[2], 'qty') == '1' and kind(n.tags) == 'SS')\n"
      "end\n";
  for (int round = 0; round < 3; round++) LUA_OK_(L, ROUND);
  unload(L, &ld);
  lua_close(L);
}
END_TEST

/* Within one document the origin map holds the tables alive, not every
 * table ever converted: converting and dropping many containers keeps the
 * heap (which holds the map) small. */
START_TEST(test_origin_map_bounded) {
  lua_State *L = new_state(NULL);
  add_test_globals(L);
  loaded_t ld;
  load_event(L, &ld, ORDER_EVENT);
  set_fresh(L, &ld);
  LUA_OK_(L,
          "collectgarbage()\n"
          "local base = collectgarbage('count')\n"
          "for i = 1, 8000 do\n"
          "  materialize(fresh())                    -- 13 converted tables\n"
          "  if i % 500 == 0 then collectgarbage() end\n"
          "end\n"
          "collectgarbage()\n"
          "local grown = collectgarbage('count') - base\n"
          "assert(grown < 1024, string.format('heap grew by %.0f KB', grown))\n");
  unload(L, &ld);
  lua_close(L);
}
END_TEST

/* Lazy tables of an earlier document raise a clear error; filled ones
 * stay readable. */
START_TEST(test_stale) {
  lua_State *L = new_state(NULL);
  add_test_globals(L);
  loaded_t ld, ld2;
  load_event(L, &ld, ORDER_EVENT);
  LUA_OK_(L,
          "keep_new = rec.dynamodb.NewImage\n"
          "for _ in pairs(keep_new) do end      -- complete\n"
          "keep_items = keep_new.items          -- still lazy\n"
          "keep_old = rec.dynamodb.OldImage\n"
          "keep_rec = rec\n"
          "assert(keep_old.id == 'o-1')          -- converted, kept\n"
          "assert(is_lazy(keep_items) and is_lazy(keep_old))\n");
  unload(L, &ld); /* sets doc NULL and frees the tape */
  const char *stale_tests[] = {
      "return keep_old.total", "return #keep_items", "for _ in pairs(keep_old) do end",
      "keep_old.x = 1", "return keep_items[1]", "return materialize(keep_old)",
      "return keep_old.nope", "return keep_rec.eventID", "return keep_rec.dynamodb.SizeBytes",
      "setmetatable(keep_items, {})",
  };
  for (size_t i = 0; i < sizeof stale_tests / sizeof stale_tests[0]; i++) {
    char *e = run_lua(L, stale_tests[i]);
    ck_assert_msg(e && strstr(e, "record data from an earlier invocation is no longer "
                                 "available"),
                  "%s: %s", stale_tests[i], e ? e : "(no error)");
    ck_assert_msg(strstr(e, "[string"), "error names the Lua line: %s", e);
    free(e);
  }
  /* with a new document current, old lazies are still stale */
  load_event(L, &ld2, ORDER_EVENT);
  char *e = run_lua(L, "return keep_old.total");
  ck_assert(e && strstr(e, "no longer available"));
  free(e);
  LUA_OK_(L,
          "assert(keep_new.customer_id == 'c-42' and keep_new.total == 19.99)\n"
          "assert(keep_old.id == 'o-1' and keep_rec.dynamodb.OldImage == keep_old)\n"
          "assert(decimal(keep_new, 'total') == nil)  -- its text is gone\n"
          "assert(rec.dynamodb.OldImage.total == 9.99)  -- the new record works\n");
  unload(L, &ld2);
  lua_close(L);
}
END_TEST

/* mm_conv_push_decimal: exact text, without filling, only while the value
 * is unchanged. */
START_TEST(test_decimal) {
  lua_State *L = new_state(NULL);
  add_test_globals(L);
  loaded_t ld;
  load_event(L, &ld, ORDER_EVENT);
  LUA_OK_(L,
          "local n = rec.dynamodb.NewImage\n"
          "assert(is_lazy(n))\n"
          "assert(decimal(n, 'big') == '12345678901234567890123456789012345678')\n"
          "assert(is_lazy(n))                        -- not filled by decimal\n"
          "assert(decimal(n, 'total') == '19.99')\n"
          "assert(n.big == 1.2345678901234568e37)\n"
          "assert(decimal(n, 'big') == '12345678901234567890123456789012345678')\n"
          "assert(decimal(n, 'id') == nil)           -- an S\n"
          "assert(decimal(n, 'missing') == nil)\n"
          "assert(decimal(n, 1) == nil)\n"
          "assert(decimal(n.nums, 1) == '1.10' and decimal(n.nums, 2) == '2')\n"
          "assert(decimal(n.nums, 3) == nil and decimal(n.nums, 0) == nil)\n"
          "assert(decimal(n.nums, 1.0) == '1.10')\n"
          "assert(decimal(n.tags, 1) == nil)         -- an SS\n"
          "local geo = n.address.geo\n"
          "assert(decimal(geo, 2) == '10.7' and decimal(geo, '2') == nil)\n"
          "assert(decimal(n.items[1], 'qty') == '2')\n"
          "n.total = 20\n"
          "assert(decimal(n, 'total') == nil)        -- changed by the script\n"
          "n.total = 19.99\n"
          "assert(decimal(n, 'total') == '19.99')    -- same number again\n"
          "assert(decimal(rec.dynamodb, 'SizeBytes') == nil)  -- not an N\n"
          "assert(decimal({total = 1}, 'total') == nil)\n"
          "assert(decimal('x', 'y') == nil)\n");
  unload(L, &ld);
  lua_close(L);
}
END_TEST

START_TEST(test_kind) {
  lua_State *L = new_state(NULL);
  add_test_globals(L);
  loaded_t ld;
  load_fixture(L, &ld, "go-dynamodb-event.json");
  LUA_OK_(L,
          "local o = recs[2].dynamodb.NewImage\n"
          "assert(kind(o) == 'M' and kind(o.Map) == 'M' and kind(o.List) == 'L')\n"
          "assert(kind(o.StringSet) == 'SS' and kind(o.NumberSet) == 'NS')\n"
          "assert(kind(o.BinarySet) == 'BS' and kind(o.EmptyStringSet) == 'SS')\n"
          "assert(kind(recs[2].dynamodb) == nil and kind({}) == nil and kind(1) == nil)\n");
  unload(L, &ld);
  lua_close(L);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Limits and shapes                                                    */
/* ------------------------------------------------------------------ */

/* Writes an AttributeValue of `levels` nested M levels (innermost holds an
 * S) into buf. */
static void nested_m(char *buf, size_t cap, int levels) {
  size_t n = 0;
  for (int i = 0; i < levels; i++) n += (size_t)snprintf(buf + n, cap - n, "{\"M\":{\"a\":");
  n += (size_t)snprintf(buf + n, cap - n, "{\"S\":\"leaf\"}");
  for (int i = 0; i < levels; i++) n += (size_t)snprintf(buf + n, cap - n, "}}");
  ck_assert(n < cap);
}

/* Protected: eager push of node 0, then render. */
static int eager_body(lua_State *L) {
  mm_conv_push_av(L, 0, "v");
  render_top(L);
  return 1;
}

static char *eager(lua_State *L, const char *json, int max_depth) {
  mm_json_doc_t doc;
  parse(&doc, json, strlen(json));
  mm_conv_set_doc(L, &doc, max_depth);
  lua_pushcfunction(L, eager_body);
  int rc = lua_pcall(L, 0, 1, 0);
  char *r = strdup(lua_tostring(L, -1));
  if (rc != LUA_OK) {
    char *e = malloc(strlen(r) + 8);
    sprintf(e, "error:%s", r);
    free(r);
    r = e;
  }
  lua_pop(L, 1);
  mm_conv_set_doc(L, NULL, 0);
  mm_json_free(&doc);
  return r;
}

START_TEST(test_depth) {
  lua_State *L = new_state(NULL);
  add_test_globals(L);
  static char buf[64 * 1024];
  char *r;
  /* eager: the value itself is level 1 */
  nested_m(buf, sizeof buf, 64);
  r = eager(L, buf, 64);
  ck_assert_msg(strncmp(r, "error:", 6) != 0, "64 levels: %s", r);
  free(r);
  nested_m(buf, sizeof buf, 65);
  r = eager(L, buf, 64);
  ck_assert_msg(strstr(r, "error:v.a.a.a") && strstr(r, ": nesting deeper than 64 levels"),
                "%s", r);
  free(r);
  nested_m(buf, sizeof buf, 3);
  r = eager(L, buf, 2);
  ck_assert_str_eq(r, "error:v.a.a: nesting deeper than 2 levels");
  free(r);
  /* 0 means the default; a huge limit is clamped (200 levels still fail
   * at 200 > 64 only when asked for 64) */
  nested_m(buf, sizeof buf, 65);
  r = eager(L, buf, 0);
  ck_assert(strstr(r, "nesting deeper than 64 levels") != NULL);
  free(r);
  nested_m(buf, sizeof buf, 200);
  r = eager(L, buf, 1000000);
  ck_assert_msg(strncmp(r, "error:", 6) != 0, "200 levels under a clamped limit: %.80s", r);
  free(r);
  /* a path longer than the message buffer is cut with "..." */
  nested_m(buf, sizeof buf, 250);
  r = eager(L, buf, 240);
  ck_assert_msg(strstr(r, "...: nesting deeper than 240 levels"), "%s", r);
  free(r);

  /* lazily: the image is level 1, so a value of 63 M levels is the limit */
  loaded_t ld;
  static char ev[80 * 1024];
  nested_m(buf, sizeof buf, 63);
  snprintf(ev, sizeof ev, "{\"Records\":[{\"dynamodb\":{\"NewImage\":{\"x\":%s}}}]}", buf);
  load_event(L, &ld, ev);
  LUA_OK_(L, "materialize(rec)\n"
             "local t, n = rec.dynamodb.NewImage.x, 0\n"
             "while type(t) == 'table' do t, n = t.a, n + 1 end\n"
             "assert(n == 63 and t == 'leaf')\n");
  unload(L, &ld);
  nested_m(buf, sizeof buf, 64);
  snprintf(ev, sizeof ev, "{\"Records\":[{\"dynamodb\":{\"NewImage\":{\"x\":%s}}}]}", buf);
  load_event(L, &ld, ev);
  char *e = run_lua(L, "local t = rec.dynamodb.NewImage.x\n"
                       "for i = 1, 70 do t = t.a end\n");
  ck_assert_msg(e && strstr(e, ": NewImage.x.a.a.a.a") &&
                    strstr(e, "a: nesting deeper than 64 levels") &&
                    strstr(e, "[string"),
                "%s", e ? e : "(no error)");
  free(e);
  e = run_lua(L, "materialize(rec)");
  ck_assert(e && strstr(e, "nesting deeper than 64 levels"));
  free(e);
  unload(L, &ld);
  lua_close(L);
}
END_TEST

static int push0_body(lua_State *L) {
  mm_conv_push_record(L, 0);
  return 1;
}

/* Record fields other than the images, and malformed images. */
START_TEST(test_record_shape) {
  lua_State *L = new_state(NULL);
  add_test_globals(L);
  loaded_t ld;
  load_event(L, &ld,
             "{\"Records\":[{\"eventID\":\"x\",\"custom\":{\"a\":[1,2.5,null,true,\"s\"],"
             "\"b\":{}},\"dynamodb\":{\"NewImage\":null,\"Keys\":{},\"SizeBytes\":1.0,"
             "\"Extra\":[\"e\\u00e9\"]}},"
             "{\"dynamodb\":null},{\"eventName\":\"X\"}]}");
  LUA_OK_(L,
          "local r = recs[1]\n"
          "assert(r.eventID == 'x')\n"
          "assert(render(r.custom) == '{\"a\"=[1,2.5,null,true,\"s\"],\"b\"={}}', render(r.custom))\n"
          "local d = r.dynamodb\n"
          "assert(rawget(d, 'NewImage') == nil and not is_lazy(d.Keys) and next(d.Keys) == nil)\n"
          "assert(math.type(d.SizeBytes) == 'integer' and d.Extra[1] == 'e\\xc3\\xa9')\n"
          "assert(recs[2].dynamodb == cjson.null)\n"
          "assert(recs[3].eventName == 'X' and recs[3].dynamodb == nil)\n");
  unload(L, &ld);
  /* an image that is not an object fails when the record is pushed */
  load_fails(L, "{\"dynamodb\":{\"OldImage\":[1]}}", "OldImage: image is not an object");
  /* no current document */
  lua_pushcfunction(L, push0_body);
  ck_assert_int_ne(lua_pcall(L, 0, 1, 0), LUA_OK);
  ck_assert_str_eq(lua_tostring(L, -1), "no event document is current");
  lua_pop(L, 1);
  ck_assert_int_eq(lua_gettop(L), 0);
  lua_close(L);
}
END_TEST

/* materialize visits each table once, also through user tables and
 * cycles, and leaves the stack as it was. */
START_TEST(test_materialize_cycles) {
  lua_State *L = new_state(NULL);
  add_test_globals(L);
  loaded_t ld;
  load_event(L, &ld, ORDER_EVENT);
  LUA_OK_(L,
          "local t = {}\n"
          "t.self, t.img, t.list = t, rec.dynamodb.NewImage, {rec.dynamodb.OldImage, t}\n"
          "t[t] = rec.dynamodb.Keys   -- a table key is not walked\n"
          "materialize(t)\n"
          "assert(not is_lazy(rawget(rec.dynamodb, 'NewImage')))\n"
          "assert(not is_lazy(rawget(rec.dynamodb, 'OldImage')))\n"
          "assert(not is_lazy(rawget(rawget(rec.dynamodb, 'NewImage'), 'items')))\n"
          "assert(not is_lazy(rawget(rec.dynamodb.NewImage.items, 2)))\n"
          "assert(materialize(5) == 5 and materialize(nil) == nil)\n"
          /* a chain deeper than the walk limit is not an error */
          "local deep = {}\n"
          "local c = deep\n"
          "for i = 1, 3000 do c.next = {}; c = c.next end\n"
          "materialize(deep)\n");
  unload(L, &ld);
  lua_close(L);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Allocation failure                                                   */
/* ------------------------------------------------------------------ */

/* Protected: everything a decode may cause: push every record, touch
 * lazies from Lua (pairs/ipairs/#/index), materialize, cjson.encode. */
static int alloc_body(lua_State *L) {
  const mm_json_doc_t *doc = lua_touserdata(L, 1);
  mm_conv_set_doc(L, doc, 64);
  lua_pushvalue(L, 2); /* the Lua toucher, loaded before failures start */
  uint32_t recs = mm_json_get(doc, 0, "Records", 7);
  uint32_t e = recs + 1;
  for (uint32_t i = 0; i < mm_json_len(doc, recs); i++) {
    int top = lua_gettop(L);
    lua_pushvalue(L, 2);
    mm_conv_push_record(L, e);
    lua_call(L, 1, 0);
    mm_conv_push_record(L, e);
    mm_conv_materialize(L, -1);
    lua_getglobal(L, "cjson");
    lua_getfield(L, -1, "encode");
    lua_pushvalue(L, -3);
    lua_call(L, 1, 1);
    lua_settop(L, top);
    e = mm_json_next(doc, e);
  }
  return 0;
}

static const char *TOUCHER =
    "return function(rec)\n"
    "  local _ = rec.eventName, rec.nope\n"
    "  local d = rec.dynamodb\n"
    "  local _ = d.SequenceNumber, d.OldImage and d.OldImage.Message, d.NewImage and d.NewImage.Id\n"
    "  for _, img in ipairs({d.Keys or {}, d.NewImage or {}, d.OldImage or {}}) do\n"
    "    for k, v in pairs(img) do\n"
    "      if type(v) == 'table' then local _ = #v; for _ in ipairs(v) do end end\n"
    "    end\n"
    "  end\n"
    "end\n";

static void alloc_run(const char *fixture) {
  size_t len;
  char *text = tu_fixture(fixture, &len);
  mm_json_doc_t doc;
  parse(&doc, text, len);
  long n;
  int succeeded = 0;
  for (n = 0; n < 20000 && !succeeded; n++) {
    alloc_ctl_t ctl = {-1, 0, 0, 0, NULL};
    lua_State *L = new_state(&ctl);
    ck_assert_int_eq(luaL_loadstring(L, TOUCHER), LUA_OK);
    lua_call(L, 0, 1); /* toucher */
    int top = lua_gettop(L);
    ctl.fail_after = n; /* from here on, the n-th allocation fails */
    ctl.count = 0;
    lua_pushcfunction(L, alloc_body);
    lua_pushlightuserdata(L, &doc);
    lua_pushvalue(L, top);
    int rc = lua_pcall(L, 2, 0, 0);
    if (rc == LUA_OK) {
      succeeded = 1;
      ck_assert_int_eq(ctl.failures, 0);
    } else {
      ck_assert_msg(ctl.failures > 0, "failed without an allocation failure: %s",
                    lua_tostring(L, -1));
      ck_assert_int_eq(lua_gettop(L), top + 1);
    }
    ctl.fail_after = -1;
    lua_close(L);
    ck_assert_msg(ctl.in_use == 0, "%zu bytes leaked at n=%ld", ctl.in_use, n);
  }
  ck_assert_msg(succeeded, "never succeeded");
  ck_assert_int_gt(n, 50); /* the loop did walk through many failure points */
  mm_json_free(&doc);
  free(text);
}

/* Protected: mm_conv_open(L, frees at argument 1 or NULL). */
static int open_body(lua_State *L) {
  mm_conv_open(L, (mm_conv_frees_t *)lua_touserdata(L, 1));
  return 0;
}

/* mm_conv_open failing at each of its allocations, then called again on
 * the same state (after a full collection, which runs the failed state's
 * __gc, or at once): the second one works, origins are exact (freed
 * tables are heard of, through conv's allocator or one that reports),
 * and lua_close returns every byte. */
START_TEST(test_open_failure) {
  for (int reporting = 0; reporting < 2; reporting++) {
    int failures = 0, done = 0;
    for (long n = 0; n < 1000 && !done; n++) {
      mm_conv_frees_t frees = {0, NULL};
      alloc_ctl_t ctl = {-1, 0, 0, 0, reporting ? &frees : NULL};
      lua_State *L = lua_newstate(test_alloc, &ctl);
      ck_assert_ptr_nonnull(L);
      luaL_openlibs(L);
      ctl.fail_after = n;
      ctl.count = 0;
      lua_pushcfunction(L, open_body);
      lua_pushlightuserdata(L, reporting ? &frees : NULL);
      int rc = lua_pcall(L, 1, 0, 0);
      ctl.fail_after = -1;
      if (rc == LUA_OK) {
        done = 1;
      } else {
        failures++;
        lua_pop(L, 1);
        if (n % 2 == 0) lua_gc(L, LUA_GCCOLLECT);
        lua_pushcfunction(L, open_body);
        lua_pushlightuserdata(L, reporting ? &frees : NULL);
        ck_assert_int_eq(lua_pcall(L, 1, 0, 0), LUA_OK);
        lua_gc(L, LUA_GCCOLLECT);
      }
      add_test_globals(L);
      loaded_t ld;
      load_event(L, &ld, ORDER_EVENT);
      set_fresh(L, &ld);
      LUA_OK_(L,
              "local keep = {}\n"
              "for i = 1, 50 do keep[i] = fresh().dynamodb.NewImage.nums end\n"
              "keep = nil\n"
              "collectgarbage(); collectgarbage()\n"
              "for i = 1, 200 do\n"
              "  local t = {1.1}\n"
              "  assert(kind(t) == nil and decimal(t, 1) == nil)\n"
              "end\n"
              "assert(decimal(fresh().dynamodb.NewImage.nums, 1) == '1.10')\n");
      unload(L, &ld);
      lua_close(L);
      ck_assert_msg(ctl.in_use == 0, "%zu bytes leaked at n=%ld", ctl.in_use, n);
      ck_assert_ptr_null(frees.st);
    }
    ck_assert(done);
    ck_assert_int_gt(failures, 10);
  }
}
END_TEST

START_TEST(test_alloc_failure) {
  alloc_run("go-dynamodb-event.json");
  alloc_run("dotnet-dynamodb-event.json");
}
END_TEST
/* ------------------------------------------------------------------ */
/* Main                                                                 */
/* ------------------------------------------------------------------ */

static Suite *conv_suite(void) {
  Suite *s = suite_create("conv");
  TCase *tc = tcase_create("rules");
  tcase_add_test(tc, test_case_table);
  tcase_add_test(tc, test_b64_round_trip);
  tcase_add_test(tc, test_escaped_lengths);
  tcase_add_test(tc, test_pairs_wrapper);
  tcase_add_test(tc, test_push_number);
  tcase_add_test(tc, test_push_number_random);
  suite_add_tcase(s, tc);
  tc = tcase_create("fixtures");
  tcase_add_test(tc, test_fixtures);
  tcase_add_test(tc, test_fixture_values);
  suite_add_tcase(s, tc);
  tc = tcase_create("laziness");
  /* the 2,000-record differential of the record fast path takes seconds
   * under ASan or valgrind: more than Check's default 4 s */
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_lazy_per_member);
  tcase_add_test(tc, test_lazy_member_writes);
  tcase_add_test(tc, test_lazy_duplicates);
  tcase_add_test(tc, test_member_names);
  tcase_add_test(tc, test_record_fast_path);
  tcase_add_test(tc, test_record_fast_shapes);
  tcase_add_test(tc, test_lazy_big_map);
  tcase_add_test(tc, test_peek);
  tcase_add_test(tc, test_view);
  tcase_add_test(tc, test_view_getn);
  tcase_add_test(tc, test_lazy_differential);
  tcase_add_test(tc, test_lazy_full_views);
  tcase_add_test(tc, test_lazy_writes);
  tcase_add_test(tc, test_stale);
  tcase_add_test(tc, test_lazy_many_tables);
  tcase_add_test(tc, test_origin_map_shrinks);
  tcase_add_test(tc, test_reused_addresses);
  tcase_add_test(tc, test_origin_map_bounded);
  tcase_add_test(tc, test_decimal);
  tcase_add_test(tc, test_kind);
  suite_add_tcase(s, tc);
  tc = tcase_create("limits");
  tcase_add_test(tc, test_depth);
  tcase_add_test(tc, test_record_shape);
  tcase_add_test(tc, test_materialize_cycles);
  tcase_add_test(tc, test_alloc_failure);
  tcase_add_test(tc, test_open_failure);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tu_run_suite(conv_suite()); }

/*
 * murmur_lua.c - the murmur.core Lua module (see murmur_lua.h).
 *
 * Thin bindings: conv.c knows where a table came from and what "decimal
 * text -> Lua number" means; decimal.c does the exact arithmetic. Every
 * function raises with luaL_argerror/luaL_error, so messages carry the
 * caller's chunk:line and read like the standard library's.
 */
#include "murmur_lua.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "conv.h"
#include "decimal.h"
#include "err.h"

/* Reads argument i (decimal text, integer or float) as a decimal; raises
 * an argument error naming what is wrong (e.g. more than 38 digits).
 * [-0, +0, v] */
static void check_dec(lua_State *L, int i, mm_dec_t *out) {
  mm_err_t err;
  int rc = 0;
  mm_err_clear(&err);
  switch (lua_type(L, i)) {
  case LUA_TNUMBER:
    if (lua_isinteger(L, i))
      mm_dec_from_int(out, (int64_t)lua_tointeger(L, i));
    else
      rc = mm_dec_from_double(out, (double)lua_tonumber(L, i), &err);
    break;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, i, &n);
    rc = mm_dec_parse(out, s, n, &err);
    break;
  }
  default:
    luaL_typeerror(L, i, "decimal text or number");
    return;
  }
  if (rc != 0) luaL_argerror(L, i, err.msg);
}

/* Pushes the canonical text of d. [-0, +1, m] */
static void push_dec(lua_State *L, const mm_dec_t *d) {
  char buf[MM_DEC_TEXT_MAX];
  size_t n = mm_dec_format(d, buf);
  lua_pushlstring(L, buf, n);
}

/* Pushes the text of the number at index i: an integer's digits, a float's
 * shortest round-trip text (canonical decimal form inside DynamoDB's range,
 * "%.17g" style outside it); nil for NaN and the infinities. [-0, +1, m] */
static void push_number_text(lua_State *L, int i) {
  if (lua_isinteger(L, i)) {
    lua_pushfstring(L, "%I", (LUAI_UACINT)lua_tointeger(L, i));
    return;
  }
  double v = (double)lua_tonumber(L, i);
  mm_dec_t d;
  if (!isfinite(v)) {
    lua_pushnil(L);
  } else if (mm_dec_from_double(&d, v, NULL) == 0) {
    push_dec(L, &d);
  } else {
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) {
      snprintf(tmp, sizeof tmp, "%.*g", prec, v);
      if (strtod(tmp, NULL) == v) break;
    }
    lua_pushstring(L, tmp);
  }
}

/* core.decimal(t, k) -> the exact N text of t[k] when it came from the
 * event; else, for a number, its text (see push_number_text); nil for
 * anything else. core.decimal(x) with a number x gives x's text. */
static int core_decimal(lua_State *L) {
  if (lua_type(L, 1) == LUA_TNUMBER && lua_isnoneornil(L, 2)) {
    push_number_text(L, 1);
    return 1;
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkany(L, 2);
  lua_settop(L, 2);
  mm_conv_push_decimal(L, 1, 2); /* t k text|nil */
  if (!lua_isnil(L, 3)) return 1;
  lua_pop(L, 1);
  lua_gettable(L, 1); /* t v (fills a lazy t) */
  if (lua_type(L, 2) == LUA_TNUMBER)
    push_number_text(L, 2);
  else
    lua_pushnil(L);
  return 1;
}

/* core.dec_add(a, b) -> exact a + b as text. */
static int core_dec_add(lua_State *L) {
  mm_dec_t a, b, r;
  mm_err_t err;
  check_dec(L, 1, &a);
  check_dec(L, 2, &b);
  mm_err_clear(&err);
  if (mm_dec_add(&r, &a, &b, &err) != 0) return luaL_error(L, "%s", err.msg);
  push_dec(L, &r);
  return 1;
}

/* core.dec_sub(a, b) -> exact a - b as text. */
static int core_dec_sub(lua_State *L) {
  mm_dec_t a, b, r;
  mm_err_t err;
  check_dec(L, 1, &a);
  check_dec(L, 2, &b);
  mm_err_clear(&err);
  if (mm_dec_sub(&r, &a, &b, &err) != 0) return luaL_error(L, "%s", err.msg);
  push_dec(L, &r);
  return 1;
}

/* core.dec_cmp(a, b) -> -1, 0 or 1. */
static int core_dec_cmp(lua_State *L) {
  mm_dec_t a, b;
  check_dec(L, 1, &a);
  check_dec(L, 2, &b);
  lua_pushinteger(L, mm_dec_cmp(&a, &b));
  return 1;
}

/* core.tonumber(text) -> integer when integral and in int64, else float
 * (the rule N values follow); a number is returned as is; nil for text
 * that is not a number, like Lua's tonumber. */
static int core_tonumber(lua_State *L) {
  size_t n;
  if (lua_type(L, 1) == LUA_TNUMBER) {
    lua_settop(L, 1);
    return 1;
  }
  const char *s = luaL_checklstring(L, 1, &n);
  if (mm_conv_push_number(L, s, n) != 0) lua_pushnil(L);
  return 1;
}

/* core.materialize(v) -> v, with every lazy table under it filled. */
static int core_materialize(lua_State *L) {
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  mm_conv_materialize(L, 1);
  return 1;
}

/* core.kind(t) -> "M", "L", "SS", "NS", "BS" for a container converted
 * from the current event, else nil. */
static int core_kind(lua_State *L) {
  const char *k = mm_conv_kind(L, 1);
  if (k)
    lua_pushstring(L, k);
  else
    lua_pushnil(L);
  return 1;
}

int mm_luaopen_murmur_core(lua_State *L) {
  static const luaL_Reg FUNCS[] = {
    {"decimal", core_decimal},     {"dec_add", core_dec_add},
    {"dec_sub", core_dec_sub},     {"dec_cmp", core_dec_cmp},
    {"tonumber", core_tonumber},   {"materialize", core_materialize},
    {"kind", core_kind},           {NULL, NULL},
  };
  luaL_newlib(L, FUNCS);
  lua_pushlightuserdata(L, NULL); /* the cjson.null sentinel */
  lua_setfield(L, -2, "null");
  return 1;
}

/*
 * util_luajson.c - JSON checks shared by check_log and check_metrics
 * (see util_luajson.h).
 */
#include "util_luajson.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "json.h"

/* lua-cjson's entry point (no header ships with the static library). */
int luaopen_cjson(lua_State *L);

int uj_strict(const char *line, size_t n, char *why, size_t whylen) {
  if (n == 0 || line[n - 1] != '\n') {
    snprintf(why, whylen, "line does not end with a newline");
    return -1;
  }
  if (memchr(line, '\n', n - 1)) {
    snprintf(why, whylen, "more than one line");
    return -1;
  }
  mm_json_doc_t doc = {0};
  mm_err_t err;
  mm_err_clear(&err);
  int rc = mm_json_parse(&doc, line, n - 1, 0, &err);
  if (rc == 0 && mm_json_type(&doc, 0) != MM_JSON_OBJ) {
    snprintf(err.msg, sizeof err.msg, "root is not an object");
    rc = -1;
  }
  mm_json_free(&doc);
  if (rc != 0) {
    snprintf(why, whylen, "invalid JSON: %s", err.msg);
    return -1;
  }
  return 0;
}

char *uj_lua(const char *src, const char *const *args, int nargs) {
  char *res = NULL;
  lua_State *L = luaL_newstate();
  if (!L) return strdup("luaL_newstate failed");
  luaL_openlibs(L);
  luaL_requiref(L, "cjson", luaopen_cjson, 1); /* cjson */
  lua_pop(L, 1);                                /* */
  if (luaL_loadstring(L, src) != LUA_OK) {      /* err */
    res = strdup(lua_tostring(L, -1));
    goto done;
  }
  for (int i = 0; i < nargs; i++) lua_pushstring(L, args[i]); /* f args... */
  if (lua_pcall(L, nargs, 1, 0) != LUA_OK || lua_type(L, -1) == LUA_TSTRING) {
    res = strdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "non-string error");
  } else if (!lua_isnil(L, -1)) {
    res = strdup("check chunk returned a non-string value");
  }
done:
  lua_close(L);
  return res;
}

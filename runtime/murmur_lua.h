/*
 * murmur_lua.h - the C side of the `murmur` Lua module.
 *
 * Provides: luaopen for "murmur.core", which lua/murmur.lua (shipped in the
 * layer's lua/ directory) builds the public `murmur` module on:
 *   core.null                 the cjson.null sentinel (lightuserdata NULL)
 *   core.decimal(t, k)        exact decimal text of t[k] when it came from an
 *                             N in the event, else (for a number) its
 *                             shortest round-trip text; nil for non-numbers
 *   core.dec_sub(a, b)        exact a - b of decimal texts/numbers, as text
 *   core.dec_add(a, b)        exact a + b, as text
 *   core.dec_cmp(a, b)        -1/0/1
 *   core.tonumber(text)       decimal text -> Lua integer when integral and
 *                             in int64, else float
 *   core.materialize(v)       fills every lazy table under v (conv.h)
 *   core.delta(rec, field)    murmur.delta (lua/murmur.lua documents it)
 *   core.kind(t)              "M", "L", "SS", "NS" or "BS" for a container
 *                             converted from the current event, else nil
 *                             (murmur.changed compares sets as sets)
 * core.decimal(x) with a number x alone gives x's text. Floats outside
 * DynamoDB's range get a "%.17g"-style shortest text; NaN and the
 * infinities have none (nil). core.tonumber returns nil for text that is
 * not a number, like Lua's tonumber; dec_* raise on bad arguments and on
 * results DynamoDB could not store (more than 38 digits, out of range).
 * Relies on conv.h and decimal.h. Errors are raised with luaL_error /
 * luaL_argerror, so they carry the caller's chunk:line.
 */
#ifndef MM_MURMUR_LUA_H
#define MM_MURMUR_LUA_H

#include <lua.h>

/* [-0, +1, m] */
int mm_luaopen_murmur_core(lua_State *L);

#endif

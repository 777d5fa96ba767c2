/*
 * conv.h - stream records as Lua tables (AttributeValue -> Lua).
 *
 * Provides: the table decode(rec) receives. The record's own fields are
 * plain values; dynamodb.Keys, NewImage and OldImage are unmarshalled
 * AttributeValues (DESIGN section 2 table). Maps and lists are converted
 * lazily, one level at a time: a container is an empty table with a
 * metatable until first touched (index, newindex, pairs, #, ipairs), when it
 * is filled with its members (nested containers again lazy) and its
 * metatable is removed - from then on it is an ordinary table. cjson.encode
 * (through the wrapped cjson the sandbox gives) materialises first. So a
 * record never sits in Lua memory whole unless the script walks it.
 *
 * Every converted container remembers where it came from (a weak table), so
 * murmur.decimal(t, k) can return the exact N text of t[k]. Lazy tables are
 * tied to the current document: touching one after its invocation raises
 * "record data from an earlier invocation is no longer available".
 *
 * Errors in the data (unknown type, invalid base64, nesting deeper than
 * max_depth, a set member of the wrong type) are raised as Lua errors naming
 * the attribute path, e.g. "NewImage.items[2].sku: invalid base64 in B", so
 * they become poison pills of the record whose decode touched them.
 *
 * Relies on json.h and lua-cjson's null (cjson.null, a lightuserdata NULL).
 */
#ifndef MM_CONV_H
#define MM_CONV_H

#include <stdint.h>
#include <lua.h>
#include "json.h"

/* Installs the metatables and weak tables in L's registry. Call once per
 * state, in protected mode. [-0, +0, m] */
void mm_conv_open(lua_State *L);

/* Makes doc the document that following pushes read (borrowed until the
 * next call), and invalidates lazy tables of earlier documents. doc NULL
 * just invalidates. max_depth limits AttributeValue nesting. [-0, +0, m] */
void mm_conv_set_doc(lua_State *L, const mm_json_doc_t *doc, int max_depth);

/* Pushes the record at tape node `node` as decode's argument.
 * [-0, +1, e] (raises on allocation failure: call under lua_pcall) */
void mm_conv_push_record(lua_State *L, uint32_t node);

/* Pushes the AttributeValue at tape node `av` (e.g. one image) converted
 * eagerly and completely. `path` names it in errors. [-0, +1, e] */
void mm_conv_push_av(lua_State *L, uint32_t av, const char *path);

/* Pushes the exact decimal text of t[k] (t at index t, key at index k) when
 * t was converted from the event and t[k] came from an N (or an NS
 * member); pushes nil otherwise. [-0, +1, e] */
void mm_conv_push_decimal(lua_State *L, int t, int k);

/* Materialises every lazy table reachable from the value at idx.
 * [-0, +0, e] */
void mm_conv_materialize(lua_State *L, int idx);

/* 1 if the value at idx is a lazy table not yet filled. [-0, +0, -] */
int mm_conv_is_lazy(lua_State *L, int idx);

#endif

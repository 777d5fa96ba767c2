/*
 * conv.h - stream records as Lua tables (AttributeValue -> Lua).
 *
 * Provides: the table decode(rec) receives. The record's own fields are
 * plain values; dynamodb.Keys, NewImage and OldImage are unmarshalled
 * AttributeValues (DESIGN section 2 table). Everything is converted
 * lazily, on first touch:
 *   - maps (the record, its "dynamodb" object, each image and each M) one
 *     member at a time: reading t.k converts member k alone (nested
 *     containers again lazy) and stores it in t, so the next read is an
 *     ordinary table read; a name the event lacks reads nil without
 *     converting anything. Writing t.k stores the script's value, and the
 *     event's member k is never read after that (t.k = nil deletes it for
 *     good). pairs, #, setmetatable and materialising convert the members
 *     still missing. A map keeps a metatable until every member is there,
 *     then it is an ordinary table;
 *   - lists (L) whole on first touch (index, newindex, pairs, #, ipairs),
 *     then they drop the metatable.
 * Except: the record's "dynamodb" object and that object's NewImage (when
 * they are objects) are in place from the start, as lazy tables with
 * nothing in them converted (nearly every decoder reads them; only raw
 * access can tell).
 * cjson.encode (through the wrapped cjson the sandbox gives) materialises
 * first. So a record never sits in Lua memory whole unless the script
 * walks it.
 *
 * The one visible difference from a plain table: until complete, a lazy
 * table shows the raw functions (rawget, rawlen, next, and C code using
 * lua_next/lua_rawget such as an unwrapped cjson.encode) only the members
 * converted so far (none before its first touch), and getmetatable
 * returns false (the metatable is protected). mm_conv_open replaces the
 * global setmetatable with one that fills a lazy table first, so
 * setmetatable(rec.dynamodb.NewImage, mt) works, and the global pairs with
 * one that fills and iterates a lazy table itself instead of having the
 * base library look its __pairs up by name (anything else goes to the
 * base library's pairs); open the base library before calling it, and
 * build any sandbox environment from _G after it.
 *
 * A malformed image (neither an object nor null) is an error when the
 * record is pushed.
 *
 * Conversion rules: S string (unescaped); N integer when the value is
 * integral and within int64 ("1E+2" -> 100, "-0" -> 0, "1.0" -> 1), else a
 * float (strtod of the text); B the decoded bytes (RFC 4648 base64 with
 * padding; non-zero pad bits are tolerated); BOOL boolean; NULL the
 * lightuserdata NULL (cjson.null); M table; L sequence; SS/NS/BS sequences
 * in the event's order (empty sets are accepted). An AttributeValue may
 * also carry every type key with all but one null (aws-sdk-go v1's
 * encoding/json shape); "NULL": false counts as absent there. A set is
 * converted whole when its member of the parent is.
 *
 * Nesting levels: the outermost container (an image, or the value given to
 * mm_conv_push_av) is level 1; a container deeper than max_depth is an
 * error, raised when its member of the parent is converted.
 *
 * Every converted container remembers where it came from, so
 * murmur.decimal(t, k) can return the exact N text of t[k]: an origin map
 * in C keyed by the table's address, lazy and complete tables alike. It
 * is exact because conv hears of every table Lua frees (from L's
 * allocator, or from an allocator mm_conv_open puts in front of it; see
 * mm_conv_frees_t): a collected table's entry goes with it, so a table
 * that later gets its memory is not taken for it. Lazy tables are tied to
 * the current document: reading a member not converted yet (or any name
 * it lacks), writing, pairs or # after its invocation raises "record
 * data from an earlier invocation is no longer available". (Each
 * mm_conv_set_doc starts a new generation of the map, so older
 * containers are simply not found; complete tables stay ordinary,
 * readable tables, and so do the members a lazy one already holds.) That
 * includes the record table: a script that keeps records beyond their
 * invocation should materialise them (murmur.materialize) first.
 *
 * Errors in the data (unknown type, invalid base64, nesting deeper than
 * max_depth, a set member of the wrong type) are raised as Lua errors naming
 * the attribute path, e.g. "NewImage.items[2].sku: invalid base64 in B", so
 * they become poison pills of the record whose decode touched them. List and
 * set indices in paths are 1-based, as in Lua. The message is prefixed with
 * the chunk:line of the nearest Lua function on the call stack.
 *
 * Relies on json.h and lua-cjson's null (cjson.null, a lightuserdata NULL).
 * Everything it creates lives in the Lua state (the origin map is a
 * userdata, so it counts against whatever limit L's allocator enforces);
 * no C memory is held across a call that can raise.
 */
#ifndef MM_CONV_H
#define MM_CONV_H

#include <stddef.h>
#include <stdint.h>
#include <lua.h>
#include "json.h"

/* max_depth used when mm_conv_set_doc gets 0 or less. */
#define MM_CONV_DEFAULT_DEPTH 64
/* Largest max_depth honoured (C recursion of eager conversion is bounded by
 * it). */
#define MM_CONV_MAX_DEPTH 512
/* Longest attribute path written into an error message. */
#define MM_CONV_PATH_MAX 384

/*
 * Freed tables. The origin map must hear of every table Lua frees: by
 * the lua_Alloc contract Lua allocates a table with osize LUA_TTABLE and
 * frees it with the size it got, which mm_conv_open learns once. An
 * allocator can report frees itself: its owner keeps an mm_conv_frees_t
 * (zeroed; only conv writes it; valid until lua_close returns), passes
 * it to mm_conv_open, and the allocator calls mm_conv_freed for every
 * block it frees (nsize 0), with the osize Lua gave. Otherwise conv puts
 * an allocator of its own in front of L's, which costs one more call per
 * allocation.
 */
typedef struct mm_conv_frees {
  size_t tsize; /* private: the size of a table's block */
  void *st;     /* private: conv's state while L is open, else NULL */
} mm_conv_frees_t;

/* Called by an allocator that reports frees (see above); a block of a
 * table's size makes conv drop that address's origin (other objects of
 * that size cost one failed lookup). [-0, +0, -]: no Lua calls. */
void mm_conv_forget(void *st, const void *ptr);
static inline void mm_conv_freed(const mm_conv_frees_t *f, const void *ptr, size_t osize) {
  if (osize == f->tsize && f->st) mm_conv_forget(f->st, ptr);
}

/* Installs conv's state, metatable and origin map in L's registry and
 * wraps the global setmetatable and pairs (see above). Freed tables: with frees
 * NULL, puts conv's allocator in front of L's (lua_setallocf: every
 * request goes on to L's allocator unchanged; conv only looks at frees);
 * else L's allocator reports them to frees (see mm_conv_frees_t). Change
 * L's allocator no more after this; lua_close hands the original back
 * (or detaches frees) before it frees any object, through a __gc of
 * conv's state. Call once per state, in protected mode. [-0, +0, m] */
void mm_conv_open(lua_State *L, mm_conv_frees_t *frees);

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
 * member) and still holds that number (or, in a lazy t, has not been
 * converted or written yet); pushes nil otherwise. Converts nothing.
 * [-0, +1, e] */
void mm_conv_push_decimal(lua_State *L, int t, int k);

/* Outcomes of mm_conv_peek_n. */
#define MM_CONV_PEEK_UNKNOWN 0 /* read t[k] the ordinary way */
#define MM_CONV_PEEK_ABSENT 1  /* t[k] is nil */
#define MM_CONV_PEEK_N 2       /* t[k] would be the number in *text */

/* Looks at t[k] without converting anything, for helpers that only need
 * a number's text (murmur.delta): when t (at index t) is a lazy map of
 * the current document and k a name not converted yet, says whether the
 * event lacks it (ABSENT; also for a member the script deleted) or holds
 * an N there (N: text and len give the N text as in the event, borrowed
 * until the next mm_conv_set_doc). Anything else is UNKNOWN: a converted
 * or written member, another type, a table that is not lazy, an N text
 * with escapes. The text is not checked: a caller that cannot read it
 * must read t[k] the ordinary way, which raises the conversion error.
 * [-0, +0, -] */
int mm_conv_peek_n(lua_State *L, int t, int k, const char **text, size_t *len);

/*
 * Views: reading a record the way Lua would, without converting anything
 * and without calling any metamethod, for helpers that only look at a
 * few members (murmur.delta). A reference is a Lua value on the stack, a
 * member not converted yet (it stays on the tape), or nil. A view never
 * raises and has no effect a script can see; whenever it cannot say what
 * a read in Lua would give without converting or calling something (a
 * table with a metatable of its own, a lazy table of an earlier
 * invocation, a malformed image, a value that is not a plain
 * string/number/table), it fails, and the caller must do the whole job
 * the ordinary way (whose reads then raise what they raise today).
 */
#define MM_CONV_REF_NIL 0  /* the value is nil */
#define MM_CONV_REF_LUA 1  /* the value is at stack index idx */
#define MM_CONV_REF_TAPE 2 /* not converted: still on the tape */

typedef struct mm_conv_ref {
  int where;      /* MM_CONV_REF_* */
  int idx;        /* MM_CONV_REF_LUA: absolute stack index */
  int kind;       /* MM_CONV_REF_TAPE: private to conv.c */
  uint32_t node;  /* MM_CONV_REF_TAPE: private to conv.c */
} mm_conv_ref_t;

typedef struct mm_conv_view {
  void *st;       /* private: conv's state */
} mm_conv_view_t;

/* Starts a view of the current document. Returns 0 when conv is not open
 * or no document is current. A view once started stays usable while L
 * is open: it reads whatever document is current then (with none, every
 * read fails), so a caller may keep one, e.g. in an upvalue, and start it
 * once. [-0, +0, -] */
int mm_conv_view_begin(lua_State *L, mm_conv_view_t *v);

/* *out = t[k], k a string at index k (pseudo-indices allowed): pushes the
 * value when it is a Lua value (LUA; a raw read, equal to what t[k] gives
 * in Lua), or leaves it on the tape (TAPE), or gives NIL. Returns 0, or
 * -1 (nothing pushed) when the view cannot tell. [-0, +(0|1), -] */
int mm_conv_view_get(lua_State *L, const mm_conv_view_t *v, const mm_conv_ref_t *t, int k,
                     mm_conv_ref_t *out);

/* Most names mm_conv_view_getn reads at once. */
#define MM_CONV_VIEW_MAX 4

/* Names for mm_conv_view_getn, looked at once: the stack indices of n
 * strings and their bytes, which stay valid while those strings stay
 * where they are (e.g. upvalues of the calling C function, read from that
 * function). */
typedef struct mm_conv_names {
  int n;
  int idx[MM_CONV_VIEW_MAX];
  const char *s[MM_CONV_VIEW_MAX];
  size_t len[MM_CONV_VIEW_MAX];
} mm_conv_names_t;

/* Fills names with the n (1 <= n <= MM_CONV_VIEW_MAX) strings at indices
 * k[0..n) (pseudo-indices allowed). Returns 0, or -1 when one of them is
 * not a string. [-0, +0, -] */
int mm_conv_view_names(lua_State *L, const int *k, int n, mm_conv_names_t *names);

/* out[i] = t[name i] for each of the names, exactly as that many calls
 * of mm_conv_view_get would give them, with one look at t and one pass
 * over its members on the tape. Pushes the LUA values, in order. Returns
 * 0, or -1 (nothing pushed) when the view cannot tell any of them.
 * [-0, +(0..n), -] */
int mm_conv_view_getn(lua_State *L, const mm_conv_view_t *v, const mm_conv_ref_t *t,
                      const mm_conv_names_t *names, mm_conv_ref_t *out);

/* 1 when r's value is the string s[0..n), else 0. [-0, +0, -] */
int mm_conv_view_streq(lua_State *L, const mm_conv_view_t *v, const mm_conv_ref_t *r,
                       const char *s, size_t n);

/* r's value as a condition: 1 (neither nil nor false), 0, or -1 when the
 * view cannot tell. [-0, +0, -] */
int mm_conv_view_truthy(lua_State *L, const mm_conv_view_t *v, const mm_conv_ref_t *r);

/* For a TAPE reference to an image member: MM_CONV_PEEK_N with its N
 * text as in mm_conv_peek_n (borrowed, unchecked: a text
 * mm_conv_push_number refuses would raise when converted), else
 * MM_CONV_PEEK_UNKNOWN. [-0, +0, -] */
int mm_conv_view_n(const mm_conv_view_t *v, const mm_conv_ref_t *r, const char **text,
                   size_t *len);

/* Materialises every lazy table reachable from the value at idx (through
 * any tables, raw, each visited once; at most 1000 levels deep).
 * [-0, +0, e] */
void mm_conv_materialize(lua_State *L, int idx);

/* 1 if the value at idx is a lazy table not yet complete. [-0, +0, -] */
int mm_conv_is_lazy(lua_State *L, int idx);

/* The DynamoDB type ("M", "L", "SS", "NS" or "BS") of the converted
 * container at idx, NULL for anything else (images are "M"; containers of
 * an earlier document are not known). [-0, +0, -] */
const char *mm_conv_kind(lua_State *L, int idx);

/* Pushes the number the decimal text s[0..n) denotes, by the N rule above
 * (optional sign, digits, fraction, exponent; no spaces, hex, inf or nan).
 * Returns 0, or -1 and pushes nothing when s is not such a number.
 * [-0, +(0|1), m] */
int mm_conv_push_number(lua_State *L, const char *s, size_t n);

#endif

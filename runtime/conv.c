/*
 * conv.c - AttributeValue -> Lua, lazily (see conv.h).
 *
 * Registry entries (keys are addresses of the statics below):
 *   STATE_KEY  a userdata holding the current document, max_depth and the
 *              origin map's bookkeeping; its user value 1 is the
 *              weak-keyed table holding the bitmaps of large lazy maps
 *              (see "Origins"), replaced by every mm_conv_set_doc, 2 the
 *              metatable below, 3 and 4 the strings "dynamodb" and
 *              "NewImage" (see prefill), 5 and on the names of the name
 *              cache (see push_key). Its metatable's __gc hands the
 *              state's allocator back (see "The origin map");
 *   MT_KEY     the one metatable every lazy table shares (__index,
 *              __newindex, __pairs, __len, __metatable = false);
 *   MAP_KEY    the memory of the origin map, where every converted
 *              container keeps its origin (see "The origin map").
 *
 * Lazy maps (an image or an M, the record, its "dynamodb" object) are
 * converted member by member: __index(t, k) finds member k on the tape,
 * converts it alone and stores it raw, so the next read is an ordinary
 * table read. The origin remembers which members are done, so a member
 * the script deleted (t.k = nil after reading it) stays deleted, and the
 * table drops its metatable once every member is done. pairs, #,
 * setmetatable and materialise convert the rest first. Lists are
 * converted whole on first touch (finding element i on the tape means
 * walking i - 1 siblings).
 *
 * A conversion carries a ctx_t: the document, the stack indices of the
 * state userdata and (in lazy mode) the metatable, and where error paths
 * start. Error paths are not tracked while converting (that would cost on
 * every member); when something fails, the path is rebuilt by walking the
 * tape from the image (or the value given to mm_conv_push_av) down to the
 * failing node, which is cheap because every node knows where its subtree
 * ends.
 *
 * C recursion: eager conversion recurses once per container level, bounded
 * by max_depth (at most MM_CONV_MAX_DEPTH); plain JSON record fields by
 * MM_JSON_MAX_DEPTH. Lazy filling does not recurse. Materialising is an
 * explicit loop over the Lua stack.
 */
#include "conv.h"
#include "decimal.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

/* Registry keys: only their addresses matter (not const, so that the
 * compiler cannot merge them). */
static char STATE_KEY;
static char MT_KEY;
static char MAP_KEY;

/* User values of the state userdata. */
enum { UV_REG = 1, UV_MT, UV_DYNAMODB, UV_NEWIMAGE, UV_NAME0 };

/* Stack slots a conversion step may use on top of what it already holds. */
#define STACK_NEED 12
/* Longest N text converted through a stack buffer (longer is invalid: a
 * DynamoDB number has at most 38 digits plus sign, point and exponent, so
 * this leaves plenty of room for leading or trailing zeros). */
#define NUM_TEXT_MAX 512
/* Materialisation stops descending below this many levels (cjson's own
 * encode limit is 1000 as well). */
#define MATERIALIZE_MAX_DEPTH 1000
/* Stack frames searched for a Lua function to name in error messages. */
#define WHERE_LEVELS 16
/* Maps with at most this many members keep their done-members mask inside
 * the packed origin integer; larger ones get a bitmap userdata on their
 * first member conversion. */
#define MASK_BITS 22
/* Smallest size of the origin map (a power of two); mm_conv_set_doc
 * shrinks a map grown beyond OMAP_KEEP entries back to it. */
#define OMAP_MIN 1024
#define OMAP_KEEP 65536
/* packed value of an origin map entry whose origin is a bitmap userdata
 * in the weak table (a large map partly converted) */
#define OMAP_BIG ((lua_Integer)-1)

/* One origin map entry: the packed origin (mask included) of the table
 * at address t, valid while gen is the state's; lazy while the table has
 * the lazy metatable (which only this file sets and removes, together
 * with this flag). */
typedef struct omap_ent {
  const void *t;
  lua_Integer packed;
  uint32_t gen;
  uint32_t lazy;
} omap_ent_t;

/* Slots of the name cache (a power of two; see push_key), and the longest
 * name it holds (Lua's short strings). */
#define NAME_SLOTS 256
#define NAME_LEN_MAX 40
/* User values of the state userdata. */
#define UV_COUNT (UV_NAME0 + NAME_SLOTS - 1)

/* One name cache slot: the name in user value UV_NAME0 + slot of the
 * state userdata (which keeps it alive): its bytes, its length (0: an
 * empty slot), and the words name_words made of it. */
typedef struct name_ent {
  const char *s;
  size_t len;
  uint64_t a, b;
} name_ent_t;

typedef struct conv_state {
  const mm_json_doc_t *doc; /* borrowed; NULL between invocations */
  int max_depth;
  uint32_t gen;             /* bumped by mm_conv_set_doc; never 0 */
  omap_ent_t *map;          /* the origin map: a userdata in the registry */
  uint32_t cap, used;       /* its slots; entries of this gen */
  uint32_t moves;           /* bumped whenever entries may move (see omap_moved) */
  const void *mtp;          /* the lazy metatable (anchored in the registry) */
  size_t tsize;             /* the size Lua allocates a table with */
  lua_Alloc f;              /* the allocator conv_alloc wraps, and its ud */
  void *fud;
  mm_conv_frees_t *frees;   /* or L's allocator reports frees there */
  name_ent_t names[NAME_SLOTS]; /* the name cache */
} conv_state_t;

/* AttributeValue types; indices into TYPE_NAMES. */
enum {
  T_NONE = 0, T_S, T_N, T_B, T_BOOL, T_NULL, T_M, T_L, T_SS, T_NS, T_BS,
  T_UNKNOWN
};
static const char *const TYPE_NAMES[] = {
  "", "S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS", "?"
};

/* Container kinds recorded in the origin map: the DynamoDB ones, then the
 * record object and its "dynamodb" object (plain JSON members, except the
 * record's dynamodb and the images in it). */
enum { K_MAP = 1, K_LIST, K_SS, K_NS, K_BS, K_REC, K_DDB };

/* Where an error path starts: a name-to-AttributeValue map (an image) or
 * one AttributeValue. */
enum { BASE_MAP = 0, BASE_AV };

typedef struct ctx {
  lua_State *L;
  conv_state_t *st;
  const mm_json_doc_t *doc;
  int mt;                /* absolute index of the lazy metatable; 0: eager */
  int max_depth;
  const char *base_name; /* NULL: find the image holding the failing node */
  uint32_t base;
  int base_kind;
  int sti;               /* index of the state userdata (user values: see top) */
} ctx_t;

/* ------------------------------------------------------------------ */
/* Origins                                                              */
/* ------------------------------------------------------------------ */

/*
 * The origin map (below) maps a converted container to its origin, packed
 * into one Lua integer: kind in bits 0-2, nesting level in bits 3-12,
 * tape node in bits 13-40 (a tape has fewer than 2^28 nodes: the input is
 * below 2^28 bytes), and, for a lazy map of at most MASK_BITS members,
 * which members are done in bits 41-62. A larger map that is partly
 * converted has OMAP_BIG there instead, and the weak table maps it to a
 * bigmask_t userdata (the packed origin plus a bitmap), which dies with
 * it.
 */
#define MASK_SHIFT 41

typedef struct bigmask {
  lua_Integer packed;  /* mask bits clear */
  uint32_t cnt, ndone;
  uint64_t bits[];     /* (cnt + 63) / 64 words */
} bigmask_t;

typedef struct origin {
  lua_Integer packed;  /* kind, level, node (mask bits clear) */
  int kind, level;
  uint32_t node;
  uint64_t mask;       /* done members of a small map */
  bigmask_t *big;      /* a partly converted large map, else NULL */
} origin_t;

static lua_Integer pack(int kind, int level, uint32_t node) {
  return (lua_Integer)((uint64_t)kind | ((uint64_t)level << 3) |
                       ((uint64_t)node << 13));
}

/* Unpacks p (mask bits included) into o. */
static void unpack(lua_Integer p, origin_t *o) {
  uint64_t u = (uint64_t)p;
  o->kind = (int)(u & 7);
  o->level = (int)((u >> 3) & 1023);
  o->node = (uint32_t)((u >> 13) & 0xFFFFFFFu);
  o->mask = u >> MASK_SHIFT;
  o->packed = (lua_Integer)(u & ((UINT64_C(1) << MASK_SHIFT) - 1));
  o->big = NULL;
}

/* Reads the bitmap of the partly converted large map at absolute index t
 * from the weak table. Returns 0 when t has none. Needs 3 free stack
 * slots. [-0, +0, -] */
static __attribute__((noinline)) int origin_get_big(lua_State *L, int t, origin_t *o) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &STATE_KEY);
  lua_getiuservalue(L, -1, UV_REG);
  lua_pushvalue(L, t);
  int found = lua_rawget(L, -2) == LUA_TUSERDATA;
  if (found) {
    bigmask_t *b = (bigmask_t *)lua_touserdata(L, -1);
    unpack(b->packed, o);
    o->big = b; /* stays alive: the weak table holds it while t lives */
  }
  lua_pop(L, 3);
  return found;
}

/*
 * The origin map: an open-addressing hash table in C (linear probing, at
 * most half full, backward-shift deletion) from a converted container's
 * address to its packed origin, for lazy and complete tables alike.
 *
 * Entries are exact: conv_alloc, which mm_conv_open puts in front of the
 * state's allocator (or the allocator itself, through mm_conv_freed),
 * sees every block Lua frees, and a freed block of a table's size (Lua
 * frees a table with osize sizeof(Table), learned by probe_alloc) drops
 * that address's entry. So an address in the map is always that of the
 * live table recorded there, never of a table that merely reuses a
 * collected one's memory. Other blocks of that size (strings, closures)
 * have no entry and cost one failed lookup.
 *
 * mm_conv_set_doc starts a new generation: older entries count as free
 * slots, so containers of an earlier document are not found (lazy ones
 * are stale). The map grows with the tables of the current document that
 * are alive (or garbage not yet freed), and mm_conv_set_doc gives a map
 * grown beyond OMAP_KEEP slots back. lua_close runs conv_gc, which hands
 * the allocator back (or detaches the frees the allocator reports to)
 * before any object is freed (nothing is collected while finalizers run
 * at close), so nothing touches a freed map.
 *
 * An entry can move when another is deleted, and any allocation can
 * collect (and so delete): a pointer to an entry is only good until the
 * next allocation - unless st->moves, bumped by every deletion, growth
 * and new generation, is still what it was when the entry was found
 * (omap_moved), which spares a conversion step looking its table up
 * twice. Exactness also means that a table conv has just made has no
 * entry yet, so it is entered without a lookup (omap_add; debug builds
 * check).
 */
static inline uint32_t omap_hash(const void *t, uint32_t cap) {
  uint64_t a = (uint64_t)(uintptr_t)t;
  a ^= a >> 29;
  a *= UINT64_C(0xbf58476d1ce4e5b9);
  return (uint32_t)(a >> 32) & (cap - 1);
}

/* The entry of t in this generation, or NULL. */
static inline omap_ent_t *omap_find(const conv_state_t *st, const void *t) {
  uint32_t i = omap_hash(t, st->cap);
  for (;;) {
    omap_ent_t *e = &st->map[i];
    if (e->gen != st->gen) return NULL;
    if (e->t == t) return e;
    i = (i + 1) & (st->cap - 1);
  }
}

/* Drops the entry of t, if any: later entries of its probe run that
 * would no longer be found move back into the hole. Called from the
 * allocator: no Lua calls. */
static void omap_forget(conv_state_t *st, const void *t) {
  omap_ent_t *m = st->map;
  uint32_t mask = st->cap - 1, i = omap_hash(t, st->cap);
  for (;;) {
    if (m[i].gen != st->gen) return;
    if (m[i].t == t) break;
    i = (i + 1) & mask;
  }
  for (uint32_t j = (i + 1) & mask; m[j].gen == st->gen; j = (j + 1) & mask) {
    /* m[j] moves to the hole when the hole lies on its probe path, i.e.
     * between its home slot h and j (cyclically) */
    uint32_t h = omap_hash(m[j].t, st->cap);
    if (((j - h) & mask) >= ((j - i) & mask)) {
      m[i] = m[j];
      i = j;
    }
  }
  m[i].gen = 0; /* a free slot: no generation is 0 */
  st->used--;
  st->moves++;
}

void mm_conv_forget(void *st_, const void *ptr) {
  conv_state_t *st = (conv_state_t *)st_;
  if (st->used > 0) omap_forget(st, ptr);
}

/* The allocator conv puts in front of the state's own (see above): a
 * freed block of a table's size loses its origin map entry. */
static void *conv_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  conv_state_t *st = (conv_state_t *)ud;
  if (nsize == 0 && osize == st->tsize && st->used > 0) omap_forget(st, ptr);
  return st->f(st->fud, ptr, osize, nsize);
}

/* The allocator during mm_conv_open's probe: learns the size of a table
 * (Lua allocates one with ptr NULL and osize LUA_TTABLE). */
static void *probe_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  conv_state_t *st = (conv_state_t *)ud;
  if (!ptr && osize == LUA_TTABLE && nsize > 0) st->tsize = nsize;
  return st->f(st->fud, ptr, osize, nsize);
}

/* Allocates a cleared map of cap slots (a userdata stored in the registry,
 * replacing the old one) and, when move is set, moves this generation's
 * entries into it. [-0, +0, m] */
static void omap_alloc(lua_State *L, conv_state_t *st, uint32_t cap, int move) {
  omap_ent_t *m = (omap_ent_t *)lua_newuserdatauv(L, (size_t)cap * sizeof *m, 0);
  memset(m, 0, (size_t)cap * sizeof *m);
  omap_ent_t *old = move ? st->map : NULL;
  uint32_t ocap = st->cap;
  st->map = m;
  st->cap = cap;
  st->moves++;
  for (uint32_t j = 0; old && j < ocap; j++) {
    if (old[j].gen != st->gen) continue;
    uint32_t i = omap_hash(old[j].t, cap);
    while (m[i].gen == st->gen) i = (i + 1) & (cap - 1);
    m[i] = old[j];
  }
  lua_rawsetp(L, LUA_REGISTRYINDEX, &MAP_KEY); /* the old one is garbage now */
}

/* Records packed origin p of table t, lazy or not, which has no entry:
 * a table conv has just made (the entry of an earlier table at its
 * address went when that table was freed). [-0, +0, m] */
static void omap_add(lua_State *L, conv_state_t *st, const void *t, lua_Integer p, int lazy) {
  assert(!omap_find(st, t)); /* else the map would not be exact */
  if ((st->used + 1) * 2 > st->cap) omap_alloc(L, st, st->cap * 2, 1);
  uint32_t i = omap_hash(t, st->cap);
  while (st->map[i].gen == st->gen) i = (i + 1) & (st->cap - 1);
  omap_ent_t *e = &st->map[i];
  e->t = t;
  e->gen = st->gen;
  e->packed = p;
  e->lazy = (uint32_t)lazy;
  st->used++;
}

/* Entry e of table t, found when st->moves was `moves`, after calls that
 * may have allocated: e itself while no entry has moved since (entries
 * only move when one is dropped or the map grows), else found again. */
static inline omap_ent_t *omap_moved(const conv_state_t *st, omap_ent_t *e, uint32_t moves,
                                     const void *t) {
  return e && st->moves == moves ? e : omap_find(st, t);
}

/* Reads the origin in entry e of table t (absolute index). [-0, +0, -] */
static inline int origin_entry(lua_State *L, const omap_ent_t *e, int t, origin_t *o) {
  if (e->packed == OMAP_BIG) return origin_get_big(L, t, o);
  unpack(e->packed, o);
  return 1;
}

/* Reads the origin of table t (absolute index) from the origin map (a
 * bitmap: from the weak table). Returns 0 when t was not converted from
 * the current document. Needs 3 free stack slots. [-0, +0, -] */
static inline int origin_find(lua_State *L, const conv_state_t *st, int t, origin_t *o) {
  const omap_ent_t *e = omap_find(st, lua_topointer(L, t));
  if (!e) return 0;
  return origin_entry(L, e, t, o);
}

static int member_done(const origin_t *o, uint32_t j) {
  if (o->big) return (int)((o->big->bits[j >> 6] >> (j & 63)) & 1u);
  return j < MASK_BITS && ((o->mask >> j) & 1u);
}

static void member_mark(origin_t *o, uint32_t j) {
  if (o->big) {
    uint64_t bit = UINT64_C(1) << (j & 63);
    if (!(o->big->bits[j >> 6] & bit)) {
      o->big->bits[j >> 6] |= bit;
      o->big->ndone++;
    }
  } else if (j < MASK_BITS) {
    o->mask |= UINT64_C(1) << j;
  }
}

/* 1 when all cnt members are done. */
static int all_done(const origin_t *o, uint32_t cnt) {
  if (o->big) return o->big->ndone >= cnt;
  return cnt <= MASK_BITS && o->mask == (UINT64_C(1) << cnt) - 1;
}
/* Pushes "chunk:line: " of the nearest Lua function on the call stack (the
 * decoder line that touched the data), or "" when there is none.
 * [-0, +1, m] */
static void push_where(lua_State *L) {
  lua_Debug ar;
  for (int lvl = 0; lvl < WHERE_LEVELS && lua_getstack(L, lvl, &ar); lvl++) {
    if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
      lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
      return;
    }
  }
  lua_pushliteral(L, "");
}

/* A bounded string for error paths: once full it ends in "...". */
typedef struct pathbuf {
  char *p;
  size_t len, cap;
  int full;
} pathbuf_t;

static void pb_put(pathbuf_t *b, const char *s, size_t n) {
  if (b->full) return;
  if (b->len + n + 4 > b->cap) {
    memcpy(b->p + b->len, "...", 4);
    b->len += 3;
    b->full = 1;
    return;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

/* Appends ".key" (or "key" at the start), the key decoded when short. */
static void pb_key(pathbuf_t *b, const mm_json_doc_t *d, uint32_t k) {
  char tmp[256];
  const char *s = mm_json_raw(d, k);
  size_t n = mm_json_len(d, k);
  if (mm_json_has_escapes(d, k) && n <= sizeof tmp) {
    n = mm_json_unescape(s, n, tmp);
    s = tmp;
  }
  if (b->len > 0) pb_put(b, ".", 1);
  pb_put(b, s, n);
}

static void pb_index(pathbuf_t *b, uint32_t i) {
  char tmp[16];
  int n = snprintf(tmp, sizeof tmp, "[%u]", (unsigned)i);
  pb_put(b, tmp, (size_t)n);
}

/* Type of the type key at STR node k (T_UNKNOWN for anything else). */
static int type_of_key(const mm_json_doc_t *d, uint32_t k) {
  char tmp[24];
  const char *s = mm_json_raw(d, k);
  size_t n = mm_json_len(d, k);
  if (mm_json_has_escapes(d, k)) {
    if (n > sizeof tmp) return T_UNKNOWN;
    n = mm_json_unescape(s, n, tmp);
    s = tmp;
  }
  switch (n) {
  case 1:
    switch (s[0]) {
    case 'S': return T_S;
    case 'N': return T_N;
    case 'B': return T_B;
    case 'M': return T_M;
    case 'L': return T_L;
    }
    break;
  case 2:
    if (s[1] != 'S') break;
    switch (s[0]) {
    case 'S': return T_SS;
    case 'N': return T_NS;
    case 'B': return T_BS;
    }
    break;
  case 4:
    if (memcmp(s, "BOOL", 4) == 0) return T_BOOL;
    if (memcmp(s, "NULL", 4) == 0) return T_NULL;
    break;
  }
  return T_UNKNOWN;
}

/* Appends the attribute path from node n (a map when kind is BASE_MAP,
 * else an AttributeValue) down to target. Walks by subtree ranges: the
 * child whose [index, next) holds target is the next step. Stops quietly
 * if the tape does not have the expected shape. */
static void av_path(const mm_json_doc_t *d, uint32_t n, int kind,
                    uint32_t target, pathbuf_t *b) {
  enum { P_MAP, P_AV, P_LIST, P_SET, P_LEAF } mode =
      kind == BASE_MAP ? P_MAP : P_AV;
  while (n != target && mode != P_LEAF) {
    mm_json_type_t jt = mm_json_type(d, n);
    uint32_t cnt = mm_json_len(d, n);
    int found = 0;
    if (mode == P_MAP || mode == P_AV) {
      if (jt != MM_JSON_OBJ) return;
      uint32_t k = n + 1;
      for (uint32_t i = 0; i < cnt && !found; i++) {
        uint32_t v = k + 1, nx = mm_json_next(d, v);
        if (target >= v && target < nx) {
          found = 1;
          if (mode == P_MAP) {
            pb_key(b, d, k);
            mode = P_AV;
          } else {
            int t = type_of_key(d, k);
            mode = t == T_M ? P_MAP : t == T_L ? P_LIST
                 : (t == T_SS || t == T_NS || t == T_BS) ? P_SET : P_LEAF;
          }
          n = v;
        }
        k = nx;
      }
    } else {
      if (jt != MM_JSON_ARR) return;
      uint32_t e = n + 1;
      for (uint32_t i = 0; i < cnt && !found; i++) {
        uint32_t nx = mm_json_next(d, e);
        if (target >= e && target < nx) {
          found = 1;
          pb_index(b, i + 1);
          mode = mode == P_LIST ? P_AV : P_LEAF;
          n = e;
        }
        e = nx;
      }
    }
    if (!found) return;
  }
}

/* Finds the image (a Keys/NewImage/OldImage member of a "dynamodb" object)
 * holding target by descending from the root. Returns 1 and sets *img and
 * *name, or 0. */
static int find_image(const mm_json_doc_t *d, uint32_t target, uint32_t *img,
                      const char **name) {
  static const char *const IMAGES[] = {"NewImage", "OldImage", "Keys"};
  uint32_t n = 0;
  int in_dynamodb = 0;
  if (target >= d->count) return 0;
  for (;;) {
    mm_json_type_t jt = mm_json_type(d, n);
    uint32_t cnt = mm_json_len(d, n);
    int found = 0;
    if (jt == MM_JSON_OBJ) {
      uint32_t k = n + 1;
      for (uint32_t i = 0; i < cnt && !found; i++) {
        uint32_t v = k + 1, nx = mm_json_next(d, v);
        if (target >= v && target < nx) {
          found = 1;
          if (in_dynamodb) {
            for (size_t j = 0; j < 3; j++) {
              if (mm_json_str_eq(d, k, IMAGES[j], strlen(IMAGES[j]))) {
                *img = v;
                *name = IMAGES[j];
                return 1;
              }
            }
          }
          in_dynamodb = mm_json_str_eq(d, k, "dynamodb", 8);
          n = v;
        }
        k = nx;
      }
    } else if (jt == MM_JSON_ARR) {
      uint32_t e = n + 1;
      for (uint32_t i = 0; i < cnt && !found; i++) {
        uint32_t nx = mm_json_next(d, e);
        if (target >= e && target < nx) {
          found = 1;
          in_dynamodb = 0;
          n = e;
        }
        e = nx;
      }
    }
    if (!found) return 0;
  }
}

/* Raises "<chunk:line: ><path>: <message>" for a problem at tape node
 * `node`. Never returns. [-0, +1, v] */
static void raise_at(ctx_t *c, uint32_t node, const char *fmt, ...) {
  lua_State *L = c->L;
  char path[MM_CONV_PATH_MAX];
  pathbuf_t b = {path, 0, sizeof path, 0};
  uint32_t base = c->base;
  const char *name = c->base_name;
  int kind = c->base_kind;
  va_list ap;

  path[0] = '\0';
  if (!name) {
    kind = BASE_MAP;
    if (!find_image(c->doc, node, &base, &name)) name = NULL;
  }
  if (name) {
    pb_put(&b, name, strlen(name));
    av_path(c->doc, base, kind, node, &b);
  }
  luaL_checkstack(L, 4, NULL);
  push_where(L);
  if (path[0])
    lua_pushfstring(L, "%s: ", path);
  else
    lua_pushliteral(L, "");
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_concat(L, 3);
  lua_error(L);
}

/* ------------------------------------------------------------------ */
/* Scalars                                                              */
/* ------------------------------------------------------------------ */

static int is_digit(char ch) { return (unsigned char)(ch - '0') < 10; }

/* Digit i of the concatenation of int part ip[0..ni) and fraction fp. */
static int digit_at(const char *ip, size_t ni, const char *fp, size_t i) {
  return (i < ni ? ip[i] : fp[i - ni]) - '0';
}

/* Number text to Lua: integer when the value is integral and fits int64,
 * else the correctly rounded double (strtod). The common case, a plain
 * integer of at most 18 digits, takes the first loop only. */
int mm_conv_push_number(lua_State *L, const char *s, size_t n) {
  const char *p = s, *end = s + n;
  int neg = 0;
  if (p < end && (*p == '-' || *p == '+')) neg = *p++ == '-';

  /* Integer part (the fast path when that is all there is). */
  const char *ip = p;
  uint64_t fast = 0;
  while (p < end && is_digit(*p)) {
    if (p - ip < 18) fast = fast * 10 + (uint64_t)(*p - '0');
    p++;
  }
  size_t ni = (size_t)(p - ip);
  if (p == end && ni > 0 && ni <= 18) {
    lua_pushinteger(L, neg ? -(lua_Integer)fast : (lua_Integer)fast);
    return 0;
  }
  /* The next most common case, a fraction without exponent ("812.36")
   * of at most 19 digits: what the general path below gives, in one pass
   * (leading zeros do not change the coefficient; trailing ones of the
   * fraction go as there). Anything else goes on below, from p. */
  if (p < end && *p == '.' && ni <= 18) {
    const char *fp = p + 1, *q = fp, *lim = fp + (19 - ni);
    uint64_t u = fast;
    while (q < end && q < lim && is_digit(*q)) u = u * 10 + (uint64_t)(*q++ - '0');
    if (q == end && q > fp) {
      size_t nf = (size_t)(q - fp);
      while (nf > 0 && u % 10 == 0) {
        u /= 10;
        nf--;
      }
      if (nf == 0) { /* integral, below 10^18 */
        lua_pushinteger(L, neg ? -(lua_Integer)u : (lua_Integer)u);
        return 0;
      }
      if (u <= (UINT64_C(1) << 53)) { /* Clinger's fast path, as below */
        double v = (double)u / MM_POW10[nf];
        lua_pushnumber(L, (lua_Number)(neg ? -v : v));
        return 0;
      }
    }
  }

  /* Fraction and exponent. */
  const char *fp = p;
  size_t nf = 0;
  if (p < end && *p == '.') {
    fp = ++p;
    while (p < end && is_digit(*p)) p++;
    nf = (size_t)(p - fp);
  }
  if (ni + nf == 0) return -1;
  long exp = 0;
  if (p < end && (*p == 'e' || *p == 'E')) {
    int eneg = 0;
    p++;
    if (p < end && (*p == '+' || *p == '-')) eneg = *p++ == '-';
    if (p >= end || !is_digit(*p)) return -1;
    while (p < end && is_digit(*p)) {
      if (exp < 1000000) exp = exp * 10 + (*p - '0');
      p++;
    }
    if (eneg) exp = -exp;
  }
  if (p != end) return -1;

  /* value = digits[first..last] * 10^scale */
  size_t total = ni + nf, first = 0, last;
  while (first < total && digit_at(ip, ni, fp, first) == 0) first++;
  if (first == total) { /* zero, any sign or exponent */
    lua_pushinteger(L, 0);
    return 0;
  }
  last = total - 1;
  while (digit_at(ip, ni, fp, last) == 0) last--;
  long scale = exp + ((long)ni - 1 - (long)last);
  long ndig = (long)(last - first + 1);
  if (scale >= 0 && ndig + scale <= 19) {
    uint64_t u = 0;
    for (size_t i = first; i <= last; i++)
      u = u * 10 + (uint64_t)digit_at(ip, ni, fp, i);
    for (long i = 0; i < scale; i++) u *= 10;
    /* 19 digits are below 1e19 < 2^64: no wrap above. */
    if (!neg && u <= (uint64_t)LUA_MAXINTEGER) {
      lua_pushinteger(L, (lua_Integer)u);
      return 0;
    }
    if (neg && u <= (uint64_t)LUA_MAXINTEGER + 1) {
      lua_pushinteger(L, u == (uint64_t)LUA_MAXINTEGER + 1
                             ? LUA_MININTEGER : -(lua_Integer)u);
      return 0;
    }
  }

  /* Clinger's fast path: a coefficient of at most 2^53 and a power of
   * ten exact as a double (10^22 at most) give the correctly rounded value
   * in one IEEE operation, the very double strtod returns. */
  if (ndig <= 19 && scale >= -22 && scale <= 22) {
    uint64_t u = 0;
    for (size_t i = first; i <= last; i++)
      u = u * 10 + (uint64_t)digit_at(ip, ni, fp, i);
    if (u <= (UINT64_C(1) << 53)) {
      double v = scale >= 0 ? (double)u * MM_POW10[scale] : (double)u / MM_POW10[-scale];
      lua_pushnumber(L, (lua_Number)(neg ? -v : v));
      return 0;
    }
  }

  /* A float: strtod needs a NUL-terminated copy. */
  char small[96];
  if (n < sizeof small) {
    memcpy(small, s, n);
    small[n] = '\0';
    lua_pushnumber(L, (lua_Number)strtod(small, NULL));
  } else {
    const char *z = lua_pushlstring(L, s, n);
    double v = strtod(z, NULL);
    lua_pop(L, 1);
    lua_pushnumber(L, (lua_Number)v);
  }
  return 0;
}

/* Pushes STR node i's text, unescaped. [-0, +1, m] */
static void push_str(lua_State *L, const mm_json_doc_t *d, uint32_t i) {
  const char *s = mm_json_raw(d, i);
  size_t n = mm_json_len(d, i);
  if (!mm_json_has_escapes(d, i)) {
    lua_pushlstring(L, s, n);
    return;
  }
  char small[256]; /* decoding never grows a string */
  if (n <= sizeof small) {
    lua_pushlstring(L, small, mm_json_unescape(s, n, small));
    return;
  }
  luaL_Buffer b;
  char *p = luaL_buffinitsize(L, &b, n);
  luaL_pushresultsize(&b, mm_json_unescape(s, n, p));
}

/*
 * The name cache. Member names repeat in every record, and interning one
 * (lua_pushlstring) hashes all its bytes and looks the string up in Lua's
 * string table. push_key keeps the names it pushed in NAME_SLOTS slots,
 * direct-mapped by a hash of two words made of the name: a name seen
 * before is recognised by its length and those words (and its bytes, when
 * longer than 16) and pushed from its user value of the state userdata.
 * Values are not cached: they mostly differ from record to record and
 * would only evict the names.
 */

/* Two words that, with the length, tell names of up to 16 bytes apart:
 * the first and last 8 (or 4) bytes, or the bytes themselves. */
static inline void name_words(const char *s, size_t n, uint64_t *a, uint64_t *b) {
  if (n >= 8) {
    memcpy(a, s, 8);
    memcpy(b, s + n - 8, 8);
  } else if (n >= 4) {
    uint32_t x, y;
    memcpy(&x, s, 4);
    memcpy(&y, s + n - 4, 4);
    *a = x;
    *b = y;
  } else {
    *a = (unsigned char)s[0] | (uint64_t)(unsigned char)s[n / 2] << 8 |
         (uint64_t)(unsigned char)s[n - 1] << 16;
    *b = 0;
  }
}

/* push_key for a name not in its slot: interns it and puts it there.
 * [-0, +1, m] */
static __attribute__((noinline)) void push_key_new(ctx_t *c, const char *s, size_t n,
                                                    uint32_t slot, uint64_t a, uint64_t b) {
  name_ent_t *e = &c->st->names[slot];
  const char *z = lua_pushlstring(c->L, s, n);
  lua_pushvalue(c->L, -1);
  lua_setiuservalue(c->L, c->sti, UV_NAME0 + (int)slot);
  e->s = z;
  e->len = n;
  e->a = a;
  e->b = b;
}

/* Pushes member name k (a STR node) as push_str does, through the name
 * cache. [-0, +1, m] */
static inline void push_key(ctx_t *c, uint32_t k) {
  const mm_json_doc_t *d = c->doc;
  size_t n = mm_json_len(d, k);
  if (n == 0 || n > NAME_LEN_MAX || mm_json_has_escapes(d, k)) {
    push_str(c->L, d, k);
    return;
  }
  const char *s = mm_json_raw(d, k);
  uint64_t a, b;
  name_words(s, n, &a, &b);
  uint64_t h = (a ^ (b * UINT64_C(0x9e3779b97f4a7c15)) ^ n) * UINT64_C(0xbf58476d1ce4e5b9);
  uint32_t slot = (uint32_t)(h >> 32) & (NAME_SLOTS - 1);
  const name_ent_t *e = &c->st->names[slot];
  if (e->len == n && e->a == a && e->b == b && (n <= 16 || memcmp(e->s, s, n) == 0))
    lua_getiuservalue(c->L, c->sti, UV_NAME0 + (int)slot);
  else
    push_key_new(c, s, n, slot, a, b);
}

/* Pushes the number in STR or NUM node i. Returns 0, or -1 (nothing
 * pushed) when it is not a number. [-0, +(0|1), m] */
static int push_num_node(lua_State *L, const mm_json_doc_t *d, uint32_t i) {
  const char *s = mm_json_raw(d, i);
  size_t n = mm_json_len(d, i);
  char tmp[NUM_TEXT_MAX];
  if (mm_json_type(d, i) == MM_JSON_STR && mm_json_has_escapes(d, i)) {
    if (n > sizeof tmp) return -1;
    n = mm_json_unescape(s, n, tmp);
    s = tmp;
  }
  return mm_conv_push_number(L, s, n);
}

/* Pushes the bytes of base64 STR node i; raises "<path of errnode>:
 * invalid base64 in <type>". [-0, +1, e] */
static void push_b64(ctx_t *c, uint32_t i, uint32_t errnode, int type) {
  lua_State *L = c->L;
  const char *s = mm_json_raw(c->doc, i);
  size_t n = mm_json_len(c->doc, i);
  int unescaped = 0;
  if (mm_json_has_escapes(c->doc, i)) { /* e.g. "\/" from some encoders */
    push_str(L, c->doc, i);
    s = lua_tolstring(L, -1, &n);
    unescaped = 1;
  }
  char small[256]; /* the usual short value: no buffer on the stack */
  if (n / 4 * 3 + 1 <= sizeof small) {
    long len = mm_b64_decode(s, n, small);
    if (len < 0) raise_at(c, errnode, "invalid base64 in %s", TYPE_NAMES[type]);
    lua_pushlstring(L, small, (size_t)len);
  } else {
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, n / 4 * 3 + 1);
    long len = mm_b64_decode(s, n, out);
    if (len < 0) raise_at(c, errnode, "invalid base64 in %s", TYPE_NAMES[type]);
    luaL_pushresultsize(&b, (size_t)len);
  }
  if (unescaped) lua_remove(L, -2);
}

/* ------------------------------------------------------------------ */
/* AttributeValues                                                      */
/* ------------------------------------------------------------------ */

/* Outcome of classifying an AttributeValue object. */
enum { AV_OK = 0, AV_NOTOBJ, AV_UNKNOWN, AV_NOTYPE, AV_TWO };

typedef struct avinfo {
  int type, type2;  /* the type; the second non-null one for AV_TWO */
  uint32_t payload; /* the type's value node */
  uint32_t bad;     /* the unknown key for AV_UNKNOWN */
} avinfo_t;

/* Finds the one non-null member of AttributeValue av (compact or
 * every-type-key shape). Never raises. */
static int av_classify(const mm_json_doc_t *d, uint32_t av, avinfo_t *ai) {
  ai->type = ai->type2 = T_NONE;
  ai->payload = ai->bad = 0;
  if (mm_json_type(d, av) != MM_JSON_OBJ) return AV_NOTOBJ;
  uint32_t cnt = mm_json_len(d, av), k = av + 1;
  for (uint32_t i = 0; i < cnt; i++) {
    uint32_t v = k + 1;
    int t = type_of_key(d, k);
    mm_json_type_t jt = mm_json_type(d, v);
    if (t == T_UNKNOWN) {
      ai->bad = k;
      return AV_UNKNOWN;
    }
    k = mm_json_next(d, v);
    if (jt == MM_JSON_NULL || (t == T_NULL && jt == MM_JSON_FALSE)) continue;
    if (ai->type != T_NONE) {
      ai->type2 = t;
      return AV_TWO;
    }
    ai->type = t;
    ai->payload = v;
  }
  return ai->type == T_NONE ? AV_NOTYPE : AV_OK;
}

/* Like av_classify, raising on anything but AV_OK. Returns the type. */
static __attribute__((noinline)) int av_resolve_slow(ctx_t *c, uint32_t av, uint32_t *payload) {
  avinfo_t ai;
  switch (av_classify(c->doc, av, &ai)) {
  case AV_OK:
    *payload = ai.payload;
    return ai.type;
  case AV_NOTOBJ:
    raise_at(c, av, "AttributeValue is not an object");
    break;
  case AV_UNKNOWN: {
    char name[48];
    size_t n = mm_json_len(c->doc, ai.bad);
    const char *s = mm_json_raw(c->doc, ai.bad);
    if (mm_json_has_escapes(c->doc, ai.bad) && n < sizeof name) {
      n = mm_json_unescape(s, n, name);
    } else {
      if (n > 40) n = 40;
      memcpy(name, s, n);
    }
    name[n] = '\0';
    raise_at(c, av, "unknown AttributeValue type \"%s\"", name);
    break;
  }
  case AV_NOTYPE:
    raise_at(c, av, "AttributeValue has no type");
    break;
  default:
    raise_at(c, av, "AttributeValue has more than one type (%s and %s)",
             TYPE_NAMES[ai.type], TYPE_NAMES[ai.type2]);
  }
  return T_NONE; /* not reached */
}

/* av_resolve_slow, with the usual shape inline: an object of one member
 * whose name is a type without escapes and whose value is not null (nor
 * false for NULL): nearly every AttributeValue of nearly every event.
 * Anything else takes the whole classification. [-0, +0, v] */
static inline int av_resolve(ctx_t *c, uint32_t av, uint32_t *payload) {
  const mm_json_doc_t *d = c->doc;
  uint32_t k = av + 1, v = av + 2; /* the first member's name and value */
  if (mm_json_type(d, av) == MM_JSON_OBJ && mm_json_len(d, av) == 1 &&
      !mm_json_has_escapes(d, k) && mm_json_type(d, v) != MM_JSON_NULL) {
    const char *s = mm_json_raw(d, k);
    int t = T_NONE;
    if (mm_json_len(d, k) == 1) {
      switch (s[0]) {
      case 'S': t = T_S; break;
      case 'N': t = T_N; break;
      case 'B': t = T_B; break;
      case 'M': t = T_M; break;
      case 'L': t = T_L; break;
      }
    } else if (mm_json_len(d, k) == 2 && s[1] == 'S') {
      switch (s[0]) {
      case 'S': t = T_SS; break;
      case 'N': t = T_NS; break;
      case 'B': t = T_BS; break;
      }
    } else if (mm_json_len(d, k) == 4) {
      if (memcmp(s, "BOOL", 4) == 0)
        t = T_BOOL;
      else if (memcmp(s, "NULL", 4) == 0 && mm_json_type(d, v) != MM_JSON_FALSE)
        t = T_NULL; /* "NULL": false is no type */
    }
    if (t != T_NONE) {
      *payload = v;
      return t;
    }
  }
  return av_resolve_slow(c, av, payload);
}

/* Records the origin of new complete container t. [-0, +0, m] */
static void remember(ctx_t *c, int t, int kind, int level, uint32_t node) {
  omap_add(c->L, c->st, lua_topointer(c->L, t), pack(kind, level, node), 0);
}

static inline void push_value(ctx_t *c, uint32_t av, int level);

/* Fills table t with the members of container node (kind K_MAP: an object
 * of name -> AttributeValue; K_LIST: an array of AttributeValues) at
 * nesting level `level`. Nested containers come out lazy in lazy mode and
 * filled (recursively) in eager mode. [-0, +0, e] */
static void fill(ctx_t *c, int t, int kind, uint32_t node, int level) {
  lua_State *L = c->L;
  const mm_json_doc_t *d = c->doc;
  uint32_t cnt = mm_json_len(d, node);
  luaL_checkstack(L, STACK_NEED, "AttributeValue nesting");
  if (kind == K_MAP) {
    uint32_t k = node + 1;
    for (uint32_t i = 0; i < cnt; i++) {
      uint32_t v = k + 1;
      push_key(c, k);        /* t ... key */
      push_value(c, v, level); /* t ... key value */
      lua_rawset(L, t);
      k = mm_json_next(d, v);
    }
  } else {
    uint32_t e = node + 1;
    for (uint32_t i = 0; i < cnt; i++) {
      push_value(c, e, level);
      lua_rawseti(L, t, (lua_Integer)i + 1);
      e = mm_json_next(d, e);
    }
  }
}

/* Pushes a new table for container node at nesting `level`: lazy (empty,
 * with the shared metatable) in lazy mode unless it has no members, else
 * filled. `av` is the AttributeValue holding it (for error paths).
 * [-0, +1, e] */
static void new_container(ctx_t *c, int kind, uint32_t node, int level,
                          uint32_t av) {
  lua_State *L = c->L;
  uint32_t cnt = mm_json_len(c->doc, node);
  int n = (int)(cnt < INT32_MAX ? cnt : 0);
  if (level > c->max_depth)
    raise_at(c, av, "nesting deeper than %d levels", c->max_depth);
  if (c->mt && cnt > 0) { /* lazy: callers leave room for a table and the metatable */
    if (kind == K_MAP)
      lua_createtable(L, 0, n);
    else
      lua_createtable(L, n, 0);
    omap_add(L, c->st, lua_topointer(L, -1), pack(kind, level, node), 1);
    lua_pushvalue(L, c->mt);
    lua_setmetatable(L, -2);
    return;
  }
  luaL_checkstack(L, STACK_NEED, "AttributeValue nesting");
  if (kind == K_MAP)
    lua_createtable(L, 0, n);
  else
    lua_createtable(L, n, 0);
  int t = lua_gettop(L);
  remember(c, t, kind, level, node);
  if (cnt > 0) fill(c, t, kind, node, level);
}

/* Pushes the sequence for set `arr` of type SS, NS or BS (always
 * converted at once: its members are scalars). [-0, +1, e] */
static void push_set(ctx_t *c, int type, uint32_t arr) {
  lua_State *L = c->L;
  const mm_json_doc_t *d = c->doc;
  uint32_t cnt = mm_json_len(d, arr), e = arr + 1;
  luaL_checkstack(L, STACK_NEED, "AttributeValue nesting");
  lua_createtable(L, (int)(cnt < INT32_MAX ? cnt : 0), 0);
  int t = lua_gettop(L);
  remember(c, t, type == T_SS ? K_SS : type == T_NS ? K_NS : K_BS, 0, arr);
  for (uint32_t i = 0; i < cnt; i++) {
    mm_json_type_t jt = mm_json_type(d, e);
    if (type == T_NS) {
      if (jt != MM_JSON_STR && jt != MM_JSON_NUM)
        raise_at(c, e, "expected a string in NS");
      if (push_num_node(L, d, e) != 0) raise_at(c, e, "invalid number in NS");
    } else {
      if (jt != MM_JSON_STR)
        raise_at(c, e, "expected a string in %s", TYPE_NAMES[type]);
      if (type == T_SS)
        push_str(L, d, e);
      else
        push_b64(c, e, e, type);
    }
    lua_rawseti(L, t, (lua_Integer)i + 1);
    e = mm_json_next(d, e);
  }
}

/* push_value for anything but the usual S and N. [-0, +1, e] */
static __attribute__((noinline)) void push_value_rest(ctx_t *c, uint32_t av, int level) {
  lua_State *L = c->L;
  const mm_json_doc_t *d = c->doc;
  uint32_t p = 0;
  int type = av_resolve(c, av, &p);
  mm_json_type_t jt = mm_json_type(d, p);
  switch (type) {
  case T_S:
    if (jt != MM_JSON_STR) raise_at(c, av, "expected a string in S");
    push_str(L, d, p);
    break;
  case T_N:
    if (jt != MM_JSON_STR && jt != MM_JSON_NUM)
      raise_at(c, av, "expected a string in N");
    if (push_num_node(L, d, p) != 0) raise_at(c, av, "invalid number in N");
    break;
  case T_B:
    if (jt != MM_JSON_STR) raise_at(c, av, "expected a string in B");
    push_b64(c, p, av, T_B);
    break;
  case T_BOOL:
    if (jt != MM_JSON_TRUE && jt != MM_JSON_FALSE)
      raise_at(c, av, "expected a boolean in BOOL");
    lua_pushboolean(L, jt == MM_JSON_TRUE);
    break;
  case T_NULL:
    if (jt != MM_JSON_TRUE) raise_at(c, av, "expected true in NULL");
    lua_pushlightuserdata(L, NULL); /* cjson.null */
    break;
  case T_M:
    if (jt != MM_JSON_OBJ) raise_at(c, av, "expected an object in M");
    new_container(c, K_MAP, p, level + 1, av);
    break;
  case T_L:
    if (jt != MM_JSON_ARR) raise_at(c, av, "expected an array in L");
    new_container(c, K_LIST, p, level + 1, av);
    break;
  default: /* SS, NS, BS */
    if (jt != MM_JSON_ARR)
      raise_at(c, av, "expected an array in %s", TYPE_NAMES[type]);
    push_set(c, type, p);
    break;
  }
}

/* Pushes AttributeValue av held by a container at nesting `level`. The
 * commonest values - {"S":"text"} without escapes, {"N":...} that
 * converts - inline; the rest (and every error) in push_value_rest.
 * [-0, +1, e] */
static inline void push_value(ctx_t *c, uint32_t av, int level) {
  const mm_json_doc_t *d = c->doc;
  const mm_json_node_t *nd = &d->nodes[av]; /* av, its type key, the payload */
  if ((nd[0].tag & 7u) == MM_JSON_OBJ && nd[0].len == 1 && (nd[1].tag & 8u) == 0 &&
      nd[1].len == 1) {
    char t = d->src[nd[1].tag >> 4];
    uint32_t jt = nd[2].tag & 7u;
    if (t == 'S' && jt == MM_JSON_STR && (nd[2].tag & 8u) == 0) {
      lua_pushlstring(c->L, d->src + (nd[2].tag >> 4), nd[2].len);
      return;
    }
    if (t == 'N' && (jt == MM_JSON_NUM || (jt == MM_JSON_STR && (nd[2].tag & 8u) == 0)) &&
        mm_conv_push_number(c->L, d->src + (nd[2].tag >> 4), nd[2].len) == 0)
      return;
  }
  push_value_rest(c, av, level);
}

/* ------------------------------------------------------------------ */
/* Plain JSON and the record                                            */
/* ------------------------------------------------------------------ */

/* Pushes plain JSON node i: objects as tables, arrays as sequences, null
 * as cjson.null, numbers by the N rule. [-0, +1, e] */
static void push_json(ctx_t *c, uint32_t i, int depth) {
  lua_State *L = c->L;
  const mm_json_doc_t *d = c->doc;
  uint32_t cnt = mm_json_len(d, i);
  switch (mm_json_type(d, i)) {
  case MM_JSON_NULL: lua_pushlightuserdata(L, NULL); break;
  case MM_JSON_FALSE: lua_pushboolean(L, 0); break;
  case MM_JSON_TRUE: lua_pushboolean(L, 1); break;
  case MM_JSON_NUM:
    if (push_num_node(L, d, i) != 0) lua_pushnumber(L, 0); /* not reached */
    break;
  case MM_JSON_STR: push_str(L, d, i); break;
  case MM_JSON_ARR: {
    if (depth > MM_JSON_MAX_DEPTH)
      luaL_error(L, "record nesting deeper than %d levels", MM_JSON_MAX_DEPTH);
    luaL_checkstack(L, STACK_NEED, "record nesting");
    lua_createtable(L, (int)(cnt < INT32_MAX ? cnt : 0), 0);
    uint32_t e = i + 1;
    for (uint32_t j = 0; j < cnt; j++) {
      push_json(c, e, depth + 1);
      lua_rawseti(L, -2, (lua_Integer)j + 1);
      e = mm_json_next(d, e);
    }
    break;
  }
  case MM_JSON_OBJ: {
    if (depth > MM_JSON_MAX_DEPTH)
      luaL_error(L, "record nesting deeper than %d levels", MM_JSON_MAX_DEPTH);
    luaL_checkstack(L, STACK_NEED, "record nesting");
    lua_createtable(L, 0, (int)(cnt < INT32_MAX ? cnt : 0));
    uint32_t k = i + 1;
    for (uint32_t j = 0; j < cnt; j++) {
      uint32_t v = k + 1;
      push_key(c, k);
      push_json(c, v, depth + 1);
      lua_rawset(L, -3);
      k = mm_json_next(d, v);
    }
    break;
  }
  }
}

/* Name of the image that key node k names, or NULL. */
static const char *image_name(const mm_json_doc_t *d, uint32_t k) {
  if (!mm_json_has_escapes(d, k) && mm_json_len(d, k) != 8 && mm_json_len(d, k) != 4)
    return NULL;
  if (mm_json_key_eq(d, k, "NewImage", 8)) return "NewImage";
  if (mm_json_key_eq(d, k, "OldImage", 8)) return "OldImage";
  if (mm_json_key_eq(d, k, "Keys", 4)) return "Keys";
  return NULL;
}

/* 1 when member (k, v) of a container of `kind` is not there for Lua: a
 * null image in the dynamodb object (left out, like an absent one). */
static int member_skipped(const mm_json_doc_t *d, int kind, uint32_t k, uint32_t v) {
  return kind == K_DDB && mm_json_type(d, v) == MM_JSON_NULL && image_name(d, k);
}

/* Raises "<where>NAME: image is not an object". [-0, +1, v] */
static void raise_image(lua_State *L, const char *img) {
  push_where(L);
  lua_pushfstring(L, "%s: image is not an object", img);
  lua_concat(L, 2);
  lua_error(L);
}

static void prefill(ctx_t *c, int t);

/* Pushes a lazy table for the object `obj` of a record (K_REC, level 1:
 * the nesting of its plain JSON members) or its "dynamodb" object (K_DDB,
 * level 2); an empty object becomes a plain empty table. The containers
 * nearly every decoder reads are there from the start (prefill).
 * [-0, +1, e] */
static void new_record_table(ctx_t *c, int kind, uint32_t obj) {
  lua_State *L = c->L;
  const mm_json_doc_t *d = c->doc;
  uint32_t cnt = mm_json_len(d, obj);
  lua_createtable(L, 0, (int)(cnt < INT32_MAX ? cnt : 0));
  if (cnt == 0) return;
  int t = lua_gettop(L);
  uint64_t mask = 0;
  if (kind == K_DDB && cnt <= MASK_BITS) { /* null images are done already */
    uint32_t k = obj + 1;
    for (uint32_t i = 0; i < cnt; i++) {
      uint32_t v = k + 1;
      if (member_skipped(d, kind, k, v)) mask |= UINT64_C(1) << i;
      k = mm_json_next(d, v);
    }
  }
  omap_add(L, c->st, lua_topointer(L, t),
           pack(kind, kind == K_REC ? 1 : 2, obj) | (lua_Integer)(mask << MASK_SHIFT), 1);
  lua_pushvalue(L, c->mt);
  lua_setmetatable(L, t);
  prefill(c, t);
}

/* Pushes the Lua value of member (k, v) of a lazy container of `kind` at
 * `level`. [-0, +1, e] */
static void push_member(ctx_t *c, int kind, int level, uint32_t k, uint32_t v) {
  const mm_json_doc_t *d = c->doc;
  if (kind == K_MAP) {
    push_value(c, v, level);
  } else if (kind == K_REC) {
    if (mm_json_type(d, v) == MM_JSON_OBJ && mm_json_key_eq(d, k, "dynamodb", 8))
      new_record_table(c, K_DDB, v);
    else
      push_json(c, v, 1);
  } else {
    const char *img = image_name(d, k);
    if (!img) {
      push_json(c, v, 2);
    } else if (mm_json_type(d, v) == MM_JSON_OBJ) {
      new_container(c, K_MAP, v, 1, v);
    } else {
      raise_image(c->L, img); /* checked when the record was pushed */
    }
  }
}

/* Checks that every image of record `rec` is an object or null, so that a
 * malformed one fails when the record is pushed, as it did when records
 * were converted eagerly. [-0, +0, v] */
static void check_images(ctx_t *c, uint32_t rec) {
  const mm_json_doc_t *d = c->doc;
  uint32_t cnt = mm_json_len(d, rec), k = rec + 1;
  for (uint32_t i = 0; i < cnt; i++) {
    uint32_t v = k + 1;
    if (mm_json_type(d, v) == MM_JSON_OBJ && mm_json_key_eq(d, k, "dynamodb", 8)) {
      uint32_t n = mm_json_len(d, v), dk = v + 1;
      for (uint32_t j = 0; j < n; j++) {
        uint32_t dv = dk + 1;
        mm_json_type_t jt = mm_json_type(d, dv);
        if (jt != MM_JSON_OBJ && jt != MM_JSON_NULL) {
          const char *img = image_name(d, dk);
          if (img) raise_image(c->L, img);
        }
        dk = mm_json_next(d, dv);
      }
    }
    k = mm_json_next(d, v);
  }
}

/* ------------------------------------------------------------------ */
/* Lazy tables                                                          */
/* ------------------------------------------------------------------ */

static conv_state_t *get_state(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &STATE_KEY);
  conv_state_t *st = (conv_state_t *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return st;
}

static void ctx_fill(ctx_t *c, lua_State *L, conv_state_t *st) {
  c->L = L;
  c->st = st;
  c->doc = st->doc;
  c->max_depth = st->max_depth;
  c->base_name = NULL;
  c->base = 0;
  c->base_kind = BASE_MAP;
}

/* Starts a conversion: pushes the state and the metatable and fills c
 * (lazy: nested containers come out lazy). [-0, +2, e] */
static void ctx_begin(lua_State *L, ctx_t *c, int lazy) {
  luaL_checkstack(L, STACK_NEED, NULL);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &STATE_KEY);
  conv_state_t *st = (conv_state_t *)lua_touserdata(L, -1);
  if (!st) luaL_error(L, "murmur: mm_conv_open was not called");
  ctx_fill(c, L, st);
  c->sti = lua_gettop(L);
  lua_getiuservalue(L, c->sti, UV_MT);  /* st mt */
  c->mt = lazy ? lua_gettop(L) : 0;
}

/* ctx_begin for the metamethods and setmetatable, whose upvalues are the
 * state (1) and the metatable (2), both used in place. Lua calls a C
 * function with LUA_MINSTACK free slots, which is room for what they
 * hold (at most 3 arguments and a value) and a conversion step.
 * [-0, +0, -] */
_Static_assert(STACK_NEED + 4 <= LUA_MINSTACK, "room on a C function's stack");
static void ctx_meta(lua_State *L, ctx_t *c) {
  conv_state_t *st = (conv_state_t *)lua_touserdata(L, lua_upvalueindex(1));
  ctx_fill(c, L, st);
  c->sti = lua_upvalueindex(1);
  c->mt = lua_upvalueindex(2); /* pseudo-indices: nothing pushed */
}

/* Raises the stale-data error. [-0, +1, v] */
static __attribute__((noinline, noreturn)) void raise_stale(lua_State *L) {
  push_where(L);
  lua_pushliteral(L, "record data from an earlier invocation is no longer available");
  lua_concat(L, 2);
  lua_error(L);
  abort(); /* not reached */
}

/* A lazy table being worked on: its address, its origin map entry and the
 * map's moves when that was found (see omap_moved). */
typedef struct lazy_ref {
  const void *p;
  omap_ent_t *e;
  uint32_t moves;
} lazy_ref_t;

/* Looks table t (index) up in st's origin map into r: its entry, or NULL
 * when t has none. [-0, +0, -] */
static inline omap_ent_t *lazy_ref_find(lua_State *L, const conv_state_t *st, int t,
                                        lazy_ref_t *r) {
  r->p = lua_topointer(L, t);
  r->e = omap_find(st, r->p);
  r->moves = st->moves;
  return r->e;
}

/* Reads the origin of lazy table t (absolute index) and fills r; raises
 * the stale-data error when t is not of the current document.
 * [-0, +0, v] */
static void origin_at(ctx_t *c, int t, origin_t *o, lazy_ref_t *r) {
  if (!c->doc || !lazy_ref_find(c->L, c->st, t, r) || !origin_entry(c->L, r->e, t, o) ||
      o->node >= c->doc->count)
    raise_stale(c->L);
}

/* Writes a small map's mask back (a bitmap is updated in place) into
 * the entry of the lazy table r. [-0, +0, -]: no allocation. */
static void origin_store(ctx_t *c, const lazy_ref_t *r, const origin_t *o) {
  if (o->big) return;
  omap_ent_t *e = omap_moved(c->st, r->e, r->moves, r->p);
  if (e) e->packed = o->packed | (lua_Integer)(o->mask << MASK_SHIFT);
}

/* Sets the weak table's entry for table t (absolute index) to the value
 * on top, popping it. [-1, +0, m] */
static void weak_set(ctx_t *c, int t) {
  lua_State *L = c->L;
  lua_getiuservalue(L, c->sti, UV_REG); /* v reg */
  lua_pushvalue(L, t);                  /* v reg t */
  lua_rotate(L, -3, -1);                /* reg t v */
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* Gives a map of more than MASK_BITS members its bitmap before a first
 * member is marked. [-0, +0, m] */
static void origin_make_big(ctx_t *c, int t, origin_t *o, uint32_t cnt) {
  lua_State *L = c->L;
  if (o->big || cnt <= MASK_BITS) return;
  size_t words = ((size_t)cnt + 63) / 64;
  bigmask_t *b = (bigmask_t *)lua_newuserdatauv(L, sizeof *b + words * sizeof b->bits[0], 0);
  b->packed = o->packed;
  b->cnt = cnt;
  b->ndone = 0;
  memset(b->bits, 0, words * sizeof b->bits[0]);
  weak_set(c, t);
  omap_ent_t *e = omap_find(c->st, lua_topointer(L, t));
  if (e) e->packed = OMAP_BIG;
  o->big = b;
}

/* Makes lazy table t (r: its entry) ordinary: its entry keeps the plain
 * origin (a bitmap is dropped), then its metatable goes. [-0, +0, -]: the
 * entry is there, and removing a key allocates nothing. */
static void set_complete(ctx_t *c, int t, const lazy_ref_t *r, const origin_t *o) {
  lua_State *L = c->L;
  omap_ent_t *e = omap_moved(c->st, r->e, r->moves, r->p);
  if (e) {
    e->packed = o->packed;
    e->lazy = 0;
  }
  if (o->big) {
    lua_pushnil(L);
    weak_set(c, t);
  }
  lua_pushnil(L);
  lua_setmetatable(L, t);
}

/* Converts what lazy table t (absolute index, r: its entry, origin o)
 * still lacks - a list whole, a map's members not done yet - and makes
 * it ordinary. [-0, +0, e] */
static void finish(ctx_t *c, int t, const lazy_ref_t *r, origin_t *o) {
  lua_State *L = c->L;
  const mm_json_doc_t *d = c->doc;
  c->base_name = NULL; /* lazy data lives in an image: paths start there */
  if (o->kind == K_LIST) {
    fill(c, t, K_LIST, o->node, o->level);
  } else {
    const mm_json_node_t *nodes = d->nodes;
    uint32_t cnt = nodes[o->node].len, k = o->node + 1;
    luaL_checkstack(L, STACK_NEED, "AttributeValue nesting");
    if (o->kind == K_MAP && !o->big && o->mask == 0) { /* nothing done yet */
      for (uint32_t i = 0; i < cnt; i++) {
        push_key(c, k);
        push_value(c, k + 1, o->level);
        lua_rawset(L, t);
        k = nodes[k + 1].next;
      }
    } else {
      for (uint32_t i = 0; i < cnt; i++) {
        uint32_t v = k + 1;
        if (!member_done(o, i) && !member_skipped(d, o->kind, k, v)) {
          push_key(c, k);
          push_member(c, o->kind, o->level, k, v);
          lua_rawset(L, t);
        }
        k = nodes[v].next;
      }
    }
  }
  set_complete(c, t, r, o);
}

/* Fills the lazy table at absolute index t completely (see finish);
 * raises the stale-data error when it is not of the current document.
 * [-0, +0, e] */
static void fill_lazy(ctx_t *c, int t) {
  origin_t o;
  lazy_ref_t r;
  origin_at(c, t, &o, &r);
  finish(c, t, &r, &o);
}

/* Where member `key` of a lazy map is on the tape. */
typedef struct match {
  uint32_t idx, k, v;     /* the member Lua sees: the last of that name */
  uint32_t first, kfirst; /* the first member of that name (index, key) */
  uint32_t count;         /* members of that name */
} match_t;

/* A member name looked for on the tape: its bytes and, for the 1 to 16
 * bytes long names nearly every event has, the two words name_words
 * makes of them, so that a member is compared in two loads. */
typedef struct name {
  const char *s;
  size_t n;
  uint64_t a, b;
} name_t;

static inline void name_init(name_t *nm, const char *s, size_t n) {
  nm->s = s;
  nm->n = n;
  nm->a = nm->b = 0;
  if (n > 0 && n <= 16) name_words(s, n, &nm->a, &nm->b);
}

/* 1 when member name k (a STR node) of length nm->n without escapes is
 * nm. */
static inline int name_bytes_are(const mm_json_doc_t *d, uint32_t k, const name_t *nm) {
  const char *raw = d->src + (d->nodes[k].tag >> 4);
  if (nm->n > 16) return memcmp(raw, nm->s, nm->n) == 0;
  if (nm->n == 0) return 1;
  uint64_t a, b;
  name_words(raw, nm->n, &a, &b); /* the same words for the same bytes */
  return a == nm->a && b == nm->b;
}

/* 1 when member name k (a STR node) is nm, by its decoded text. */
static inline int name_is(const mm_json_doc_t *d, uint32_t k, const name_t *nm) {
  const mm_json_node_t *nd = &d->nodes[k];
  if (__builtin_expect((nd->tag & 8u) != 0, 0)) return mm_json_str_eq(d, k, nm->s, nm->n);
  return nd->len == nm->n && name_bytes_are(d, k, nm);
}

/* Finds member nm of the map-like object obj (kind K_MAP, K_REC or
 * K_DDB). Duplicates: the last one wins, as in JSON.parse; members left
 * out (member_skipped) do not count. Returns 0 when absent. A member
 * whose name has neither nm's length nor escapes costs two loads. */
static int find_member(const mm_json_doc_t *d, int kind, uint32_t obj, const name_t *nm,
                       match_t *m) {
  const mm_json_node_t *nodes = d->nodes;
  uint32_t cnt = nodes[obj].len, k = obj + 1;
  const size_t n = nm->n;
  m->count = m->idx = m->k = m->v = m->first = m->kfirst = 0;
  for (uint32_t i = 0; i < cnt; i++) {
    const mm_json_node_t *kn = &nodes[k];
    if (__builtin_expect((kn->len == n) | ((kn->tag >> 3) & 1u), 0) && name_is(d, k, nm) &&
        !member_skipped(d, kind, k, k + 1)) {
      if (m->count++ == 0) {
        m->first = i;
        m->kfirst = k;
      }
      m->idx = i;
      m->k = k;
      m->v = k + 1;
    }
    k = kn[1].next; /* past the value */
  }
  return m->count > 0;
}

/* Marks every member named nm (from the first match on) done. */
static void mark_matches(const mm_json_doc_t *d, origin_t *o, uint32_t obj,
                         const match_t *m, const name_t *nm) {
  if (m->count == 1) {
    member_mark(o, m->idx);
    return;
  }
  uint32_t cnt = mm_json_len(d, obj), k = m->kfirst;
  for (uint32_t i = m->first; i < cnt; i++) {
    uint32_t v = k + 1;
    if (i == m->idx || name_is(d, k, nm)) member_mark(o, i);
    k = mm_json_next(d, v);
  }
}

/* Converts member key[0..klen) of the new lazy record table t (origin o,
 * a small mask) now, as __index would on first read, when it is an
 * object. User value uv of the state holds the key as a Lua string.
 * [-0, +0, e] */
static void prefill_member(ctx_t *c, int t, origin_t *o, const char *key, size_t klen,
                           int uv) {
  lua_State *L = c->L;
  match_t m;
  name_t nm;
  name_init(&nm, key, klen);
  if (!find_member(c->doc, o->kind, o->node, &nm, &m) || member_done(o, m.idx) ||
      mm_json_type(c->doc, m.v) != MM_JSON_OBJ)
    return;
  lua_getiuservalue(L, c->sti, uv); /* the key, interned once */
  push_member(c, o->kind, o->level, m.k, m.v);
  lua_rawset(L, t);
  mark_matches(c->doc, o, o->node, &m, &nm);
}

/*
 * The record's "dynamodb" object and its NewImage (when they are objects)
 * are converted when the record table is made - still lazy tables, with
 * nothing in them converted - because nearly every decoder reads them and
 * a member read through __index costs a metamethod call. Keys and
 * OldImage stay unconverted until read: making them costs more than it
 * saves (measured on the example pipeline: a MODIFY's decoder rarely
 * reads OldImage, and KEYS_ONLY decoders are the ones that read Keys).
 * Nothing a script reads changes: the same tables come out, only
 * earlier; raw access sees them from the start. Objects of more than
 * MASK_BITS members are left alone. (push_record_fast makes the same
 * tables for the usual record without prefill.) [-0, +0, e]
 */
static void prefill(ctx_t *c, int t) {
  origin_t o;
  lazy_ref_t r;
  if (!lazy_ref_find(c->L, c->st, t, &r) || r.e->packed == OMAP_BIG) return;
  unpack(r.e->packed, &o);
  uint32_t cnt = mm_json_len(c->doc, o.node);
  if (cnt > MASK_BITS) return;
  luaL_checkstack(c->L, STACK_NEED, "record");
  if (o.kind == K_REC) {
    prefill_member(c, t, &o, "dynamodb", 8, UV_DYNAMODB);
  } else {
    prefill_member(c, t, &o, "NewImage", 8, UV_NEWIMAGE);
  }
  if (all_done(&o, cnt))
    set_complete(c, t, &r, &o);
  else
    origin_store(c, &r, &o);
}

/* Test hook, in the manner of script.c's mm_script_fail_countdown (only
 * the Check suite declares it): nonzero sends every record down the
 * general path (check_images, new_record_table), so that a test can
 * compare push_record_fast with it. */
int mm_conv_fast_off;

/* Records the origin of the new lazy map-like table t (absolute index;
 * packed origin p, done members mask, cnt members) and gives it the lazy
 * metatable - or, when every member is done already, leaves it an
 * ordinary table, as set_complete would. [-0, +0, m] */
static void make_lazy(ctx_t *c, int t, lua_Integer p, uint64_t mask, uint32_t cnt) {
  lua_State *L = c->L;
  if (mask == (UINT64_C(1) << cnt) - 1) { /* cnt <= MASK_BITS */
    omap_add(L, c->st, lua_topointer(L, t), p, 0);
    return;
  }
  omap_add(L, c->st, lua_topointer(L, t), p | (lua_Integer)(mask << MASK_SHIFT), 1);
  lua_pushvalue(L, c->mt);
  lua_setmetatable(L, t);
}

/*
 * mm_conv_push_record's usual case: a record of 1 to MASK_BITS members,
 * one of them named "dynamodb" (or none), that one an object of 1 to
 * MASK_BITS members. One pass over the record's members finds it, one
 * over its members checks the images (check_images), finds the null ones
 * (done from the start) and NewImage (the last of that name not null);
 * then the record, its dynamodb and that NewImage are made directly -
 * the very tables, origins and done masks new_record_table and prefill
 * give, without looking anything up twice. Returns 0, with nothing
 * pushed, for any other record: the general path does those. [-0, +(0|1), e]
 */
static int push_record_fast(ctx_t *c, uint32_t rec) {
  if (mm_conv_fast_off) return 0;
  lua_State *L = c->L;
  const mm_json_doc_t *d = c->doc;
  name_t n_ddb, n_new;
  uint32_t cnt = mm_json_len(d, rec), k = rec + 1, ddb = 0, nddb = 0, ddb_i = 0;
  if (cnt == 0 || cnt > MASK_BITS) return 0;
  name_init(&n_ddb, "dynamodb", 8);
  name_init(&n_new, "NewImage", 8);
  for (uint32_t i = 0; i < cnt; i++) {
    uint32_t v = k + 1;
    if (name_is(d, k, &n_ddb)) {
      nddb++;
      ddb = v;
      ddb_i = i;
    }
    k = mm_json_next(d, v);
  }
  if (nddb > 1) return 0;
  uint32_t dcnt = 0, img = 0;
  uint64_t dmask = 0;
  if (ddb && mm_json_type(d, ddb) == MM_JSON_OBJ) {
    dcnt = mm_json_len(d, ddb);
    if (dcnt == 0 || dcnt > MASK_BITS) return 0;
    k = ddb + 1;
    for (uint32_t j = 0; j < dcnt; j++) {
      uint32_t v = k + 1;
      mm_json_type_t jt = mm_json_type(d, v);
      if (jt == MM_JSON_OBJ) {
        if (name_is(d, k, &n_new)) {
          img = v; /* the last one wins */
          dmask |= UINT64_C(1) << j;
        }
      } else if ((mm_json_len(d, k) & ~12u) == 0 || mm_json_has_escapes(d, k)) {
        /* 4 or 8 bytes, or escaped: maybe an image's name (image_name) */
        const char *name = image_name(d, k);
        if (name && jt != MM_JSON_NULL) raise_image(L, name);
        if (name) dmask |= UINT64_C(1) << j; /* a null image: left out */
      }
      k = mm_json_next(d, v);
    }
  } else {
    ddb = 0; /* not an object: converted when read */
  }

  lua_createtable(L, 0, (int)cnt);
  int t = lua_gettop(L); /* rec */
  if (ddb) {
    lua_getiuservalue(L, c->sti, UV_DYNAMODB);
    lua_createtable(L, 0, (int)dcnt); /* rec "dynamodb" ddb */
    if (img) {
      uint32_t icnt = mm_json_len(d, img);
      lua_getiuservalue(L, c->sti, UV_NEWIMAGE);
      lua_createtable(L, 0, (int)(icnt < INT32_MAX ? icnt : 0)); /* ... "NewImage" img */
      omap_add(L, c->st, lua_topointer(L, t + 4), pack(K_MAP, 1, img), icnt > 0);
      if (icnt > 0) {
        lua_pushvalue(L, c->mt);
        lua_setmetatable(L, t + 4);
      }
      lua_rawset(L, t + 2);
    }
    make_lazy(c, t + 2, pack(K_DDB, 2, ddb), dmask, dcnt);
    lua_rawset(L, t);
  }
  make_lazy(c, t, pack(K_REC, 1, rec), ddb ? UINT64_C(1) << ddb_i : 0, cnt);
  return 1;
}

/* __index(t, k): a list is converted whole; a map converts member k alone
 * and stores it raw. A member converted before and since deleted by the
 * script reads nil. [-0, +1, e] */
static int lazy_index(lua_State *L) {
  ctx_t c;
  origin_t o;
  lazy_ref_t r;
  match_t m;
  size_t klen;
  if (lua_gettop(L) != 2) lua_settop(L, 2); /* the VM passes two */
  ctx_meta(L, &c); /* t k */
  origin_at(&c, 1, &o, &r);
  if (o.kind == K_LIST) {
    finish(&c, 1, &r, &o);
    lua_settop(L, 2);
    lua_rawget(L, 1);
    return 1;
  }
  if (lua_type(L, 2) != LUA_TSTRING) { /* the members' names are strings */
    lua_pushnil(L);
    return 1;
  }
  const char *key = lua_tolstring(L, 2, &klen);
  name_t nm;
  name_init(&nm, key, klen);
  if (!find_member(c.doc, o.kind, o.node, &nm, &m)) {
    lua_pushnil(L);
    return 1;
  }
  uint32_t cnt = mm_json_len(c.doc, o.node);
  if (cnt > MASK_BITS) origin_make_big(&c, 1, &o, cnt);
  if (member_done(&o, m.idx)) { /* converted, then deleted */
    lua_pushnil(L);
    return 1;
  }
  push_member(&c, o.kind, o.level, m.k, m.v); /* t k v */
  lua_pushvalue(L, 2);
  lua_pushvalue(L, -2);
  lua_rawset(L, 1);
  mark_matches(c.doc, &o, o.node, &m, &nm);
  if (all_done(&o, cnt))
    set_complete(&c, 1, &r, &o);
  else
    origin_store(&c, &r, &o);
  return 1;
}

/* __newindex(t, k, v): a list is converted whole first; in a map, member
 * k (if the event has it) counts as done from now on, so the tape never
 * overrides the script's value. Then a raw write. [-0, +0, e] */
static int lazy_newindex(lua_State *L) {
  ctx_t c;
  origin_t o;
  lazy_ref_t r;
  match_t m;
  size_t klen;
  lua_settop(L, 3);
  ctx_meta(L, &c); /* t k v */
  origin_at(&c, 1, &o, &r);
  if (o.kind == K_LIST || lua_type(L, 2) != LUA_TSTRING) {
    if (o.kind == K_LIST) finish(&c, 1, &r, &o);
    lua_settop(L, 3);
    lua_rawset(L, 1);
    return 0;
  }
  const char *key = lua_tolstring(L, 2, &klen);
  name_t nm;
  name_init(&nm, key, klen);
  int found = find_member(c.doc, o.kind, o.node, &nm, &m);
  uint32_t cnt = mm_json_len(c.doc, o.node);
  if (found) {
    origin_make_big(&c, 1, &o, cnt);
    mark_matches(c.doc, &o, o.node, &m, &nm);
  }
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_rawset(L, 1);
  if (found) {
    if (all_done(&o, cnt))
      set_complete(&c, 1, &r, &o);
    else
      origin_store(&c, &r, &o);
  }
  return 0;
}

static void touch_arg1(lua_State *L);

/* touch_arg1 for a table at index 1 whose entry r (lazy_ref_find) is
 * lazy. [-0, +0, e] */
static void finish_arg1(lua_State *L, lazy_ref_t *r) {
  ctx_t c;
  origin_t o;
  ctx_meta(L, &c);
  if (c.doc && origin_entry(L, r->e, 1, &o) && o.node < c.doc->count)
    finish(&c, 1, r, &o);
  else
    fill_lazy(&c, 1); /* raises */
}

/* For __pairs, __len and setmetatable: converts the rest of the value at
 * index 1 when it is a lazy table. A table of this document is known from
 * its origin map entry (lazy or not: only this file sets and removes the
 * lazy metatable, together with the entry's flag); anything else is lazy
 * when it has the lazy metatable (of an earlier invocation: fill_lazy
 * raises). [-0, +0, e] */
static void touch_arg1(lua_State *L) {
  ctx_t c;
  if (lua_type(L, 1) == LUA_TTABLE) {
    const conv_state_t *st = (const conv_state_t *)lua_touserdata(L, lua_upvalueindex(1));
    lazy_ref_t r;
    if (lazy_ref_find(L, st, 1, &r)) {
      if (r.e->lazy) finish_arg1(L, &r);
      return;
    }
  }
  if (!lua_getmetatable(L, 1)) return;
  int lazy = lua_rawequal(L, -1, lua_upvalueindex(2));
  lua_pop(L, 1);
  if (!lazy) return;
  ctx_meta(L, &c);
  fill_lazy(&c, 1);
}

/* The iterator __pairs returns: a raw next (checking its arguments only
 * when they are not the usual two). */
static int raw_next(lua_State *L) {
  if (lua_gettop(L) != 2 || lua_type(L, 1) != LUA_TTABLE) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
  }
  if (lua_next(L, 1)) return 2;
  lua_pushnil(L);
  return 1;
}

/* __pairs(t): fill, then next, t, nil. */
static int lazy_pairs(lua_State *L) {
  touch_arg1(L);
  lua_pushcfunction(L, raw_next);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

/* Continuation of conv_pairs' call of the base library's pairs. */
static int pairs_k(lua_State *L, int status, lua_KContext ctx) {
  (void)L;
  (void)status;
  (void)ctx;
  return 3;
}

/* pairs(t) as in the base library, except that a lazy table is filled and
 * iterated here, as its __pairs would do, without the base library
 * looking the metamethod up by name and calling it (a decoder walking a
 * record calls pairs on every container of it). Upvalues: the state, the
 * lazy metatable, the base library's next and pairs. [-0, +3, e] */
static int conv_pairs(lua_State *L) {
  if (lua_type(L, 1) == LUA_TTABLE) { /* a lazy table of this document: at once */
    const conv_state_t *st = (const conv_state_t *)lua_touserdata(L, lua_upvalueindex(1));
    lazy_ref_t r;
    if (lazy_ref_find(L, st, 1, &r) && r.e->lazy) {
      lua_settop(L, 1);
      finish_arg1(L, &r);
      lua_pushcfunction(L, raw_next);
      lua_pushvalue(L, 1);
      lua_pushnil(L);
      return 3;
    }
  }
  luaL_checkany(L, 1);
  if (!lua_getmetatable(L, 1)) { /* no metatable, no __pairs */
    lua_pushvalue(L, lua_upvalueindex(3));
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
  }
  int lazy = lua_rawequal(L, -1, lua_upvalueindex(2));
  lua_pop(L, 1);
  if (lazy) {
    lua_settop(L, 1);
    return lazy_pairs(L);
  }
  /* another metatable: the base library's pairs and its __pairs */
  lua_pushvalue(L, lua_upvalueindex(4));
  lua_insert(L, 1);
  lua_callk(L, lua_gettop(L) - 1, 3, 0, pairs_k);
  return 3;
}

/* __len(t): fill, then the raw length. */
static int lazy_len(lua_State *L) {
  touch_arg1(L);
  lua_pushinteger(L, (lua_Integer)lua_rawlen(L, 1));
  return 1;
}

/* setmetatable(t, mt) as in the base library, except that a lazy t is
 * filled first (so its own metatable is gone and the new one applies). */
static int conv_setmetatable(lua_State *L) {
  int t = lua_type(L, 2);
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
  touch_arg1(L);
  if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
    return luaL_error(L, "cannot change a protected metatable");
  lua_settop(L, 2);
  lua_setmetatable(L, 1);
  return 1;
}

/* ------------------------------------------------------------------ */
/* Public functions                                                     */
/* ------------------------------------------------------------------ */

/* Starts a new generation of the origin map: every entry is older. */
static void omap_next_gen(conv_state_t *st) {
  st->used = 0;
  st->moves++;
  if (++st->gen == 0) { /* every entry is older now: start afresh */
    if (st->map) memset(st->map, 0, (size_t)st->cap * sizeof *st->map);
    st->gen = 1;
  }
}

/* __gc of the state userdata, run by lua_close before any object is freed
 * (or once an mm_conv_open that failed half-way left it unreachable):
 * hands the allocator back (when L's allocator is still conv's, for this
 * state) and forgets every origin, which the allocator no longer keeps
 * exact. */
static int conv_gc(lua_State *L) {
  conv_state_t *st = (conv_state_t *)lua_touserdata(L, 1);
  void *ud;
  lua_Alloc f = lua_getallocf(L, &ud);
  if (st && ud == st && (f == conv_alloc || f == probe_alloc)) lua_setallocf(L, st->f, st->fud);
  if (st && st->frees && st->frees->st == st) st->frees->st = NULL;
  if (st) {
    st->doc = NULL;
    omap_next_gen(st);
  }
  return 0;
}

/* Makes the origin map hear of freed tables (see "The origin map"): once
 * probe_alloc has learned the size of a table, puts conv_alloc in front
 * of L's allocator, or (frees not NULL) has L's allocator report to
 * frees. st must have conv_gc already, and no map yet (an mm_conv_open
 * that failed half-way may have left its own reporting in place: it is
 * undone first, while its map is still anchored). [-0, +0, m] */
static void hear_frees(lua_State *L, conv_state_t *st, mm_conv_frees_t *frees) {
  void *fud;
  if (frees) frees->st = NULL;
  lua_Alloc f = lua_getallocf(L, &fud);
  if (f == conv_alloc || f == probe_alloc) {
    conv_state_t *old = (conv_state_t *)fud;
    f = old->f;
    fud = old->fud; /* old's conv_gc leaves the allocator alone: not its own */
  }
  st->f = f;
  st->fud = fud;
  lua_setallocf(L, probe_alloc, st); /* from here on conv_gc gives f back */
  lua_createtable(L, 0, 0);
  lua_pop(L, 1);
  if (!frees) {
    lua_setallocf(L, conv_alloc, st);
    return;
  }
  lua_setallocf(L, f, fud);
  st->frees = frees;
  frees->tsize = st->tsize;
  frees->st = st;
}

/* Pushes a new weak-keyed table. [-0, +1, m] */
static void push_weak_table(lua_State *L) {
  lua_createtable(L, 0, 0);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
}

void mm_conv_open(lua_State *L, mm_conv_frees_t *frees) {
  static const struct { const char *name; lua_CFunction fn; } MM[] = {
    {"__index", lazy_index}, {"__newindex", lazy_newindex},
    {"__pairs", lazy_pairs}, {"__len", lazy_len},
  };
  luaL_checkstack(L, STACK_NEED, NULL);
  if (get_state(L)) return; /* already open */
  conv_state_t *st = (conv_state_t *)lua_newuserdatauv(L, sizeof *st, UV_COUNT);
  memset(st, 0, sizeof *st);
  st->doc = NULL;
  st->max_depth = MM_CONV_DEFAULT_DEPTH;
  st->gen = 1;
  int sti = lua_gettop(L);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, conv_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, sti);
  hear_frees(L, st, frees);
  omap_alloc(L, st, OMAP_MIN, 0);
  push_weak_table(L);
  lua_setiuservalue(L, sti, 1);
  lua_createtable(L, 0, 5); /* st mt */
  int mti = lua_gettop(L);
  for (size_t i = 0; i < sizeof MM / sizeof MM[0]; i++) {
    lua_pushvalue(L, sti);
    lua_pushvalue(L, mti);
    lua_pushcclosure(L, MM[i].fn, 2);
    lua_setfield(L, mti, MM[i].name);
  }
  lua_pushboolean(L, 0);
  lua_setfield(L, mti, "__metatable");
  st->mtp = lua_topointer(L, mti);
  lua_pushvalue(L, mti);
  lua_setiuservalue(L, sti, UV_MT); /* for ctx_begin: cheaper than the registry */
  lua_pushliteral(L, "dynamodb");
  lua_setiuservalue(L, sti, UV_DYNAMODB);
  lua_pushliteral(L, "NewImage");
  lua_setiuservalue(L, sti, UV_NEWIMAGE);

  /* setmetatable that fills a lazy table first */
  lua_pushglobaltable(L);
  if (lua_getfield(L, -1, "setmetatable") == LUA_TFUNCTION) {
    lua_pushvalue(L, sti);
    lua_pushvalue(L, mti);
    lua_pushcclosure(L, conv_setmetatable, 2);
    lua_setfield(L, -3, "setmetatable");
  }
  lua_pop(L, 1);
  /* pairs that iterates a lazy table without its metamethod's lookup */
  lua_pushvalue(L, sti);
  lua_pushvalue(L, mti);
  int tn = lua_getfield(L, -3, "next"), tp = lua_getfield(L, -4, "pairs");
  if (tn == LUA_TFUNCTION && tp == LUA_TFUNCTION) { /* G st mt next pairs */
    lua_pushcclosure(L, conv_pairs, 4);
    lua_setfield(L, -2, "pairs");
  } else {
    lua_pop(L, 4);
  }
  lua_pop(L, 1); /* st mt */

  lua_rawsetp(L, LUA_REGISTRYINDEX, &MT_KEY);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &STATE_KEY);
}

void mm_conv_set_doc(lua_State *L, const mm_json_doc_t *doc, int max_depth) {
  luaL_checkstack(L, 3, NULL);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &STATE_KEY);
  conv_state_t *st = (conv_state_t *)lua_touserdata(L, -1);
  if (!st) {
    lua_pop(L, 1);
    return;
  }
  if (max_depth <= 0) max_depth = MM_CONV_DEFAULT_DEPTH;
  if (max_depth > MM_CONV_MAX_DEPTH) max_depth = MM_CONV_MAX_DEPTH;
  /* The new weak table first: if it cannot be made, the old document
   * stays current (no dangling pointer to a freed tape). */
  push_weak_table(L);
  if (st->cap > OMAP_KEEP) { /* a big event grew it: give the memory back */
    omap_alloc(L, st, OMAP_MIN, 0);
  }
  lua_setiuservalue(L, -2, 1);
  lua_pop(L, 1);
  st->doc = doc;
  st->max_depth = max_depth;
  omap_next_gen(st);
}

void mm_conv_push_record(lua_State *L, uint32_t node) {
  ctx_t c;
  int top = lua_gettop(L);
  ctx_begin(L, &c, 1); /* st mt */
  if (!c.doc) luaL_error(L, "no event document is current");
  if (node >= c.doc->count || mm_json_type(c.doc, node) != MM_JSON_OBJ)
    luaL_error(L, "record is not an object");
  if (!push_record_fast(&c, node)) {
    check_images(&c, node);
    new_record_table(&c, K_REC, node); /* st mt rec */
  }
  lua_replace(L, top + 1);
  lua_settop(L, top + 1);
}

void mm_conv_push_av(lua_State *L, uint32_t av, const char *path) {
  ctx_t c;
  int top = lua_gettop(L);
  ctx_begin(L, &c, 0); /* st mt */
  if (!c.doc) luaL_error(L, "no event document is current");
  if (av >= c.doc->count) luaL_error(L, "no such tape node");
  c.base_name = path ? path : "";
  c.base = av;
  c.base_kind = BASE_AV;
  push_value(&c, av, 0); /* st mt value */
  lua_replace(L, top + 1);
  lua_settop(L, top + 1);
}

/*
 * The N text node of t[k] on the tape, when t (origin o, of the current
 * document) is a map whose member k is an N, a list whose element k is
 * one, or an NS; else 0. *done is set when that map member counts as done
 * (converted, or written by the script). [-0, +0, -]
 */
static uint32_t decimal_node(lua_State *L, const mm_json_doc_t *d, int k,
                             const origin_t *o, int *done) {
  uint32_t text = 0;
  avinfo_t ai;
  *done = 0;
  if (o->kind == K_MAP) {
    size_t klen;
    match_t m;
    if (lua_type(L, k) != LUA_TSTRING) return 0;
    name_t nm;
    const char *key = lua_tolstring(L, k, &klen);
    name_init(&nm, key, klen);
    if (!find_member(d, K_MAP, o->node, &nm, &m)) return 0;
    *done = member_done(o, m.idx);
    if (av_classify(d, m.v, &ai) == AV_OK && ai.type == T_N) text = ai.payload;
  } else if (o->kind == K_LIST || o->kind == K_NS) {
    int isint = 0;
    lua_Integer i = lua_tointegerx(L, k, &isint);
    if (!isint || lua_type(L, k) != LUA_TNUMBER || i < 1 ||
        (uint64_t)i > mm_json_len(d, o->node))
      return 0;
    uint32_t e = o->node + 1;
    for (lua_Integer j = 1; j < i; j++) e = mm_json_next(d, e);
    if (o->kind == K_NS)
      text = e;
    else if (av_classify(d, e, &ai) == AV_OK && ai.type == T_N)
      text = ai.payload;
  }
  if (text && mm_json_type(d, text) != MM_JSON_STR && mm_json_type(d, text) != MM_JSON_NUM)
    text = 0;
  return text;
}

void mm_conv_push_decimal(lua_State *L, int t, int k) {
  origin_t o;
  int done = 0;
  t = lua_absindex(L, t);
  k = lua_absindex(L, k);
  luaL_checkstack(L, STACK_NEED, NULL);
  int top = lua_gettop(L);
  if (!lua_istable(L, t)) goto none;
  const conv_state_t *st = get_state(L);
  if (!st || !st->doc) goto none;
  const mm_json_doc_t *d = st->doc;
  if (!origin_find(L, st, t, &o) || o.node >= d->count) goto none;
  uint32_t text = decimal_node(L, d, k, &o, &done);
  if (!text) goto none;
  if (mm_json_type(d, text) == MM_JSON_STR)
    push_str(L, d, text);
  else
    lua_pushlstring(L, mm_json_raw(d, text), mm_json_len(d, text));

  /* The text only counts while t[k] still holds the number it denotes:
   * when t[k] is raw nil that is when t is lazy and k not converted yet
   * (a script's write marks the member done); else it must be equal. */
  lua_pushvalue(L, k);
  if (lua_rawget(L, t) == LUA_TNIL) { /* text nil */
    if (!mm_conv_is_lazy(L, t) || done) goto none;
  } else {
    size_t n;
    const char *s = lua_tolstring(L, top + 1, &n);
    if (lua_type(L, -1) != LUA_TNUMBER || mm_conv_push_number(L, s, n) != 0 ||
        !lua_rawequal(L, -1, -2))
      goto none;
  }
  lua_settop(L, top + 1);
  return;
none:
  lua_settop(L, top);
  lua_pushnil(L);
}

/* MM_CONV_PEEK_N with the N text of AttributeValue av as in the event
 * (borrowed, unchecked) when av is an N whose text has no escapes, else
 * MM_CONV_PEEK_UNKNOWN. Shared by mm_conv_peek_n and mm_conv_view_n. */
static int peek_av_n(const mm_json_doc_t *d, uint32_t av, const char **text, size_t *len) {
  avinfo_t ai;
  uint32_t n;
  if (mm_json_type(d, av) == MM_JSON_OBJ && mm_json_len(d, av) == 1 &&
      !mm_json_has_escapes(d, av + 1) && mm_json_len(d, av + 1) == 1 &&
      mm_json_raw(d, av + 1)[0] == 'N') {
    n = av + 2; /* the usual shape, {"N":...}; a null there is no text either */
  } else {
    if (av_classify(d, av, &ai) != AV_OK || ai.type != T_N) return MM_CONV_PEEK_UNKNOWN;
    n = ai.payload;
  }
  mm_json_type_t jt = mm_json_type(d, n);
  if (jt != MM_JSON_NUM && (jt != MM_JSON_STR || mm_json_has_escapes(d, n)))
    return MM_CONV_PEEK_UNKNOWN;
  *text = mm_json_raw(d, n);
  *len = mm_json_len(d, n);
  return MM_CONV_PEEK_N;
}

int mm_conv_peek_n(lua_State *L, int t, int k, const char **text, size_t *len) {
  origin_t o;
  int r = MM_CONV_PEEK_UNKNOWN;
  t = lua_absindex(L, t);
  k = lua_absindex(L, k);
  if (!lua_checkstack(L, 4) || lua_type(L, k) != LUA_TSTRING || !mm_conv_is_lazy(L, t))
    return r;
  int top = lua_gettop(L);
  const conv_state_t *st = get_state(L);
  if (!st || !st->doc) goto out;
  const mm_json_doc_t *d = st->doc;
  if (!origin_find(L, st, t, &o)) goto out;
  if (o.node >= d->count || o.kind != K_MAP) goto out;
  lua_pushvalue(L, k);
  if (lua_rawget(L, t) != LUA_TNIL) goto out; /* converted: read it */
  size_t klen;
  match_t m;
  name_t nm;
  const char *key = lua_tolstring(L, k, &klen);
  name_init(&nm, key, klen);
  if (!find_member(d, K_MAP, o.node, &nm, &m)) {
    r = MM_CONV_PEEK_ABSENT;
    goto out;
  }
  if (member_done(&o, m.idx)) { /* converted, then deleted */
    r = MM_CONV_PEEK_ABSENT;
    goto out;
  }
  r = peek_av_n(d, m.v, text, len);
out:
  lua_settop(L, top);
  return r;
}

void mm_conv_materialize(lua_State *L, int idx) {
  ctx_t c;
  idx = lua_absindex(L, idx);
  if (!lua_istable(L, idx)) return;
  int top = lua_gettop(L);
  ctx_begin(L, &c, 1); /* st mt */
  lua_createtable(L, 0, 0); /* st mt visited */
  int visited = lua_gettop(L);

  /* Stack from here: pairs (table, key) per level; lua_next replaces the
   * key, a table value not yet visited becomes the next level. */
  lua_pushvalue(L, idx);
  if (mm_conv_is_lazy(L, -1)) fill_lazy(&c, lua_gettop(L));
  lua_pushvalue(L, -1);
  lua_pushboolean(L, 1);
  lua_rawset(L, visited);
  lua_pushnil(L);
  int depth = 1;
  while (depth > 0) {
    int t = lua_gettop(L) - 1;
    if (!lua_next(L, t)) { /* ... t */
      lua_pop(L, 1);
      depth--;
      continue;
    }
    /* ... t k v */
    if (lua_istable(L, -1) && depth < MATERIALIZE_MAX_DEPTH) {
      lua_pushvalue(L, -1);
      if (lua_rawget(L, visited) == LUA_TNIL) {
        lua_pop(L, 1);
        luaL_checkstack(L, STACK_NEED, "materialize");
        if (mm_conv_is_lazy(L, -1)) fill_lazy(&c, lua_gettop(L));
        lua_pushvalue(L, -1);
        lua_pushboolean(L, 1);
        lua_rawset(L, visited);
        lua_pushnil(L); /* ... t k v nil */
        depth++;
        continue;
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1); /* ... t k */
  }
  lua_settop(L, top);
}

int mm_conv_is_lazy(lua_State *L, int idx) {
  if (!lua_istable(L, idx) || !lua_checkstack(L, 2)) return 0;
  if (!lua_getmetatable(L, idx)) return 0;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &MT_KEY);
  int r = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return r;
}

const char *mm_conv_kind(lua_State *L, int idx) {
  static const char *const KINDS[] = {NULL, "M", "L", "SS", "NS", "BS"};
  origin_t o;
  idx = lua_absindex(L, idx);
  if (!lua_istable(L, idx) || !lua_checkstack(L, 3)) return NULL;
  const conv_state_t *st = get_state(L);
  if (!st || !origin_find(L, st, idx, &o)) return NULL;
  return o.kind >= K_MAP && o.kind <= K_BS ? KINDS[o.kind] : NULL;
}

/* ------------------------------------------------------------------ */
/* Views                                                                */
/* ------------------------------------------------------------------ */

/* What a TAPE reference holds: the dynamodb object of a record, an image,
 * one AttributeValue, or a plain JSON value of the record. */
enum { R_DDB = 1, R_IMAGE, R_AV, R_JSON };

int mm_conv_view_begin(lua_State *L, mm_conv_view_t *v) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &STATE_KEY);
  conv_state_t *st = (conv_state_t *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!st || !st->doc) return 0;
  v->st = st;
  return 1;
}

/* *out for member (k, v) of a map-like container of `kind` (K_REC, K_DDB
 * or K_MAP): what push_member would convert it to, left on the tape.
 * Returns -1 for a malformed image (converting it raises). */
static int view_child(const mm_json_doc_t *d, int kind, uint32_t k, uint32_t val,
                      mm_conv_ref_t *out) {
  out->where = MM_CONV_REF_TAPE;
  out->idx = 0;
  out->node = val;
  if (kind == K_MAP) {
    out->kind = R_AV;
  } else if (kind == K_REC) {
    out->kind = mm_json_type(d, val) == MM_JSON_OBJ && mm_json_key_eq(d, k, "dynamodb", 8)
                    ? R_DDB
                    : R_JSON;
  } else if (!image_name(d, k)) {
    out->kind = R_JSON;
  } else {
    if (mm_json_type(d, val) != MM_JSON_OBJ) return -1;
    out->kind = R_IMAGE;
  }
  return 0;
}

/*
 * t[k] for a view: a table without a metatable is read raw; a lazy map
 * of the current document raw too, and when that gives nil, the member
 * on the tape exactly as __index would find it (absent or done: nil). A
 * TAPE dynamodb object or image has no Lua table yet, so its members are
 * all on the tape (a null image is left out, as in push_record).
 * mm_conv_view_getn does that for several names with one look at t (its
 * origin) and one pass over its members: each member is compared with
 * the names still wanted, by length first.
 */
int mm_conv_view_names(lua_State *L, const int *k, int n, mm_conv_names_t *names) {
  if (n < 1 || n > MM_CONV_VIEW_MAX) return -1;
  for (int i = 0; i < n; i++) {
    if (lua_type(L, k[i]) != LUA_TSTRING) return -1;
    names->idx[i] = k[i];
    names->s[i] = lua_tolstring(L, k[i], &names->len[i]);
  }
  names->n = n;
  return 0;
}

int mm_conv_view_getn(lua_State *L, const mm_conv_view_t *v, const mm_conv_ref_t *t,
                      const mm_conv_names_t *names, mm_conv_ref_t *out) {
  const conv_state_t *st = (const conv_state_t *)v->st;
  const mm_json_doc_t *d = st->doc;
  const int n = names->n;
  uint32_t mi[MM_CONV_VIEW_MAX], mk[MM_CONV_VIEW_MAX];
  origin_t o;
  unsigned want = 0, found = 0;
  int kind, base = -1, top = 0; /* base: the top before the Lua values pushed, if any */
  if (!d || n < 1 || n > MM_CONV_VIEW_MAX || !lua_checkstack(L, n + 3)) return -1;
  for (int i = 0; i < n; i++) {
    out[i].where = MM_CONV_REF_NIL;
    out[i].idx = out[i].kind = 0;
    out[i].node = mi[i] = mk[i] = 0;
  }
  if (t->where == MM_CONV_REF_TAPE) {
    kind = t->kind == R_DDB ? K_DDB : t->kind == R_IMAGE ? K_MAP : 0;
    if (!kind || t->node >= d->count) return -1;
    o.node = t->node; /* no Lua table yet: nothing is done */
    o.mask = 0;
    o.big = NULL;
    want = (1u << n) - 1;
  } else {
    int ti = t->idx;
    if (t->where != MM_CONV_REF_LUA || !lua_istable(L, ti)) return -1;
    const omap_ent_t *e = omap_find(st, lua_topointer(L, ti));
    if (e && e->lazy) { /* a lazy table of this document */
      if (!origin_entry(L, e, ti, &o) || o.node >= d->count || o.kind == K_LIST) return -1;
      kind = o.kind;
    } else if (lua_getmetatable(L, ti)) {
      lua_pop(L, 1); /* the script's, or a lazy table of an earlier invocation */
      return -1;
    } else {
      kind = 0; /* an ordinary table */
    }
    base = top = lua_gettop(L);
    for (int i = 0; i < n; i++) {
      lua_pushvalue(L, names->idx[i]);
      if (lua_rawget(L, ti) != LUA_TNIL) {
        out[i].where = MM_CONV_REF_LUA;
        out[i].idx = ++top;
      } else {
        lua_settop(L, top);
        want |= 1u << i;
      }
    }
    if (!kind) return 0;
  }
  if (want) { /* one pass over the members: the last match of each wins */
    const mm_json_node_t *nodes = d->nodes;
    uint64_t lens = 0; /* the lengths wanted, modulo 64 */
    for (int i = 0; i < n; i++)
      if ((want >> i) & 1u) lens |= UINT64_C(1) << (names->len[i] & 63);
    uint32_t cnt = nodes[o.node].len, key = o.node + 1;
    for (uint32_t j = 0; j < cnt; j++) {
      const mm_json_node_t *kn = &nodes[key];
      /* a wanted length (modulo 64), or escapes (tag bit 3) */
      if (__builtin_expect(((lens >> (kn->len & 63)) | (kn->tag >> 3)) & 1u, 0)) {
        for (int i = 0; i < n; i++) {
          if ((want >> i) & 1u && mm_json_key_eq(d, key, names->s[i], names->len[i]) &&
              !member_skipped(d, kind, key, key + 1)) {
            found |= 1u << i;
            mi[i] = j;
            mk[i] = key;
          }
        }
      }
      key = kn[1].next; /* past the value */
    }
  }
  for (int i = 0; found; i++, found >>= 1) {
    if (!(found & 1u) || member_done(&o, mi[i])) continue; /* done: nil */
    if (view_child(d, kind, mk[i], mk[i] + 1, &out[i]) != 0) {
      if (base >= 0) lua_settop(L, base);
      return -1;
    }
  }
  return 0;
}

int mm_conv_view_get(lua_State *L, const mm_conv_view_t *v, const mm_conv_ref_t *t, int k,
                     mm_conv_ref_t *out) {
  mm_conv_names_t names;
  if (mm_conv_view_names(L, &k, 1, &names) != 0) {
    out->where = MM_CONV_REF_NIL;
    out->idx = out->kind = 0;
    out->node = 0;
    return -1;
  }
  return mm_conv_view_getn(L, v, t, &names, out);
}

int mm_conv_view_streq(lua_State *L, const mm_conv_view_t *v, const mm_conv_ref_t *r,
                       const char *s, size_t n) {
  const mm_json_doc_t *d = ((conv_state_t *)v->st)->doc;
  if (r->where == MM_CONV_REF_LUA) {
    size_t len;
    if (lua_type(L, r->idx) != LUA_TSTRING) return 0;
    const char *x = lua_tolstring(L, r->idx, &len);
    return len == n && memcmp(x, s, n) == 0;
  }
  if (r->where != MM_CONV_REF_TAPE || r->kind != R_JSON || !d || r->node >= d->count ||
      mm_json_type(d, r->node) != MM_JSON_STR)
    return 0;
  return mm_json_key_eq(d, r->node, s, n);
}

int mm_conv_view_truthy(lua_State *L, const mm_conv_view_t *v, const mm_conv_ref_t *r) {
  const mm_json_doc_t *d = ((conv_state_t *)v->st)->doc;
  switch (r->where) {
  case MM_CONV_REF_NIL: return 0;
  case MM_CONV_REF_LUA: return lua_toboolean(L, r->idx);
  default: break;
  }
  if (r->kind == R_DDB || r->kind == R_IMAGE) return 1; /* tables */
  if (r->kind == R_JSON && d && r->node < d->count)
    return mm_json_type(d, r->node) != MM_JSON_FALSE; /* null: cjson.null */
  return -1;
}

int mm_conv_view_n(const mm_conv_view_t *v, const mm_conv_ref_t *r, const char **text,
                   size_t *len) {
  const mm_json_doc_t *d = ((conv_state_t *)v->st)->doc;
  if (r->where != MM_CONV_REF_TAPE || r->kind != R_AV || !d || r->node >= d->count)
    return MM_CONV_PEEK_UNKNOWN;
  return peek_av_n(d, r->node, text, len);
}

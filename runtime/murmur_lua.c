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

/* Pushes op(arg 1, arg 2) as text (op: mm_dec_add or mm_dec_sub); raises
 * what op reports. [-0, +1, v] */
static int dec_binop(lua_State *L, int (*op)(mm_dec_t *, const mm_dec_t *,
                                             const mm_dec_t *, mm_err_t *)) {
  mm_dec_t a, b, r;
  mm_err_t err;
  check_dec(L, 1, &a);
  check_dec(L, 2, &b);
  mm_err_clear(&err);
  if (op(&r, &a, &b, &err) != 0) return luaL_error(L, "%s", err.msg);
  push_dec(L, &r);
  return 1;
}

/* core.dec_add(a, b) -> exact a + b as text. */
static int core_dec_add(lua_State *L) { return dec_binop(L, mm_dec_add); }

/* core.dec_sub(a, b) -> exact a - b as text. */
static int core_dec_sub(lua_State *L) { return dec_binop(L, mm_dec_sub); }

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

/* ------------------------------------------------------------------ */
/* murmur.delta                                                         */
/* ------------------------------------------------------------------ */

/* Digits an int64 coefficient of a short decimal may have. */
#define SMALL_DIGITS 18

/* A short decimal: m * 10^-scale, |m| < 10^18, 0 <= scale <= 18. */
typedef struct small_dec {
  int64_t m;
  int scale;
} small_dec_t;

/*
 * Parses the common N text shapes ("812.36", "-5", "1.5E+3") into a short
 * decimal: optional '-', digits, optional '.' and digits, optional
 * exponent; at most SMALL_DIGITS significant digits and a scale in
 * 0..SMALL_DIGITS. Returns 0 for anything else (the exact path in
 * decimal.c takes those). Every text accepted here is also a valid N for
 * conv.c and mm_dec_parse, denoting the same value.
 */
static int small_parse(const char *s, size_t n, small_dec_t *out) {
  const char *p = s, *end = s + n;
  int neg = 0, ndig = 0, nfrac = 0;
  uint64_t m = 0;
  if (p < end && *p == '-') {
    neg = 1;
    p++;
  }
  const char *ip = p;
  for (; p < end && *p >= '0' && *p <= '9'; p++) {
    if (m == 0 && *p == '0') continue; /* leading zeros */
    if (++ndig > SMALL_DIGITS) return 0;
    m = m * 10 + (uint64_t)(*p - '0');
  }
  if (p == ip) return 0;
  if (p < end && *p == '.') {
    const char *fp = ++p;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
      nfrac++;
      if (m == 0 && *p == '0') continue;
      if (++ndig > SMALL_DIGITS) return 0;
      m = m * 10 + (uint64_t)(*p - '0');
    }
    if (p == fp) return 0;
  }
  int exp = 0;
  if (p < end && (*p == 'e' || *p == 'E')) {
    int eneg = 0;
    p++;
    if (p < end && (*p == '+' || *p == '-')) eneg = *p++ == '-';
    const char *ep = p;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
      if (exp > 1000) return 0;
      exp = exp * 10 + (*p - '0');
    }
    if (p == ep) return 0;
    if (eneg) exp = -exp;
  }
  if (p != end) return 0;
  int scale = nfrac - exp;
  if (m == 0) scale = 0;
  while (scale < 0) { /* 5E+2: scale the coefficient up */
    if (++ndig > SMALL_DIGITS) return 0;
    m *= 10;
    scale++;
  }
  if (scale > SMALL_DIGITS) return 0;
  out->m = neg ? -(int64_t)m : (int64_t)m;
  out->scale = scale;
  return 1;
}

/*
 * Pushes a - b by the rule N values follow (integer when integral, else
 * the correctly rounded double - what core.tonumber(core.dec_sub(a, b))
 * gives). Returns 0 when the short path cannot do it exactly (an
 * overflow, or a float result too long for one IEEE division); nothing is
 * pushed then. [-0, +(0|1), -]
 */
static int small_sub_push(lua_State *L, const small_dec_t *a, const small_dec_t *b) {
  int64_t x = a->m, y = b->m, r;
  int scale = a->scale > b->scale ? a->scale : b->scale;
  for (int i = a->scale; i < scale; i++)
    if (__builtin_mul_overflow(x, 10, &x)) return 0;
  for (int i = b->scale; i < scale; i++)
    if (__builtin_mul_overflow(y, 10, &y)) return 0;
  if (__builtin_sub_overflow(x, y, &r)) return 0;
  while (scale > 0 && r % 10 == 0) {
    r /= 10;
    scale--;
  }
  if (scale == 0) {
    lua_pushinteger(L, (lua_Integer)r);
    return 1;
  }
  uint64_t u = r < 0 ? (uint64_t)0 - (uint64_t)r : (uint64_t)r;
  if (u > (UINT64_C(1) << 53)) return 0;
  /* both operands exact: one division rounds correctly, as strtod does */
  double v = (double)u / MM_POW10[scale];
  lua_pushnumber(L, (lua_Number)(r < 0 ? -v : v));
  return 1;
}

/* One side of murmur.delta: the image's field. */
enum { SIDE_ABSENT = 0, SIDE_NUMBER, SIDE_OTHER };
typedef struct side {
  int state;
  int img;           /* stack index of the image (a Lua value), 0: none */
  int val;           /* stack index of the Lua value, 0 when not read */
  const char *text;  /* its exact decimal text; NULL when it has none */
  size_t len;
  int small;         /* dec holds the text */
  small_dec_t dec;
} side_t;

/*
 * Reads img[field] (img, field: stack indices) as murmur.delta sees it.
 * A lazy image's unread N member is taken from the event text without
 * converting it; anything else is read the ordinary way (which raises
 * what reading it in Lua would raise). [-0, +(0|1), e]
 */
static void read_side(lua_State *L, int img, int field, side_t *s) {
  s->state = SIDE_ABSENT;
  s->img = img;
  s->val = 0;
  s->text = NULL;
  s->small = 0;
  if (lua_isnil(L, img)) return;
  switch (mm_conv_peek_n(L, img, field, &s->text, &s->len)) {
  case MM_CONV_PEEK_ABSENT:
    return;
  case MM_CONV_PEEK_N:
    if (small_parse(s->text, s->len, &s->dec)) {
      s->state = SIDE_NUMBER;
      s->small = 1;
      return;
    }
    s->text = NULL;
    break;
  default:
    break;
  }
  lua_pushvalue(L, field);
  lua_gettable(L, img);
  s->val = lua_gettop(L);
  if (lua_isnil(L, -1)) return;
  s->state = lua_type(L, -1) == LUA_TNUMBER ? SIDE_NUMBER : SIDE_OTHER;
}

/* Sets s->text for a number read the ordinary way: core.decimal(img,
 * field), i.e. the exact N text while the value is the event's, else the
 * number's own text (none for NaN and the infinities). Leaves the text on
 * the stack. [-0, +1, e] */
static void side_text(lua_State *L, int field, side_t *s) {
  mm_conv_push_decimal(L, s->img, field);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    push_number_text(L, s->val);
  }
  s->text = lua_tolstring(L, -1, &s->len);
  s->small = s->text && small_parse(s->text, s->len, &s->dec);
}

/* Pushes side s's Lua value (its number, or 0 when absent). [-0, +1, -] */
static void push_side_value(lua_State *L, const side_t *s) {
  if (s->val)
    lua_pushvalue(L, s->val);
  else if (s->state == SIDE_ABSENT || mm_conv_push_number(L, s->text, s->len) != 0)
    lua_pushinteger(L, 0); /* a peeked text always converts */
}

/* Compares the string at idx with the literal lit. */
static int str_is(lua_State *L, int idx, const char *lit) {
  size_t n;
  if (lua_type(L, idx) != LUA_TSTRING) return 0;
  const char *s = lua_tolstring(L, idx, &n);
  return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

/* Upvalues of core.delta: the names it reads. */
enum { UV_DYNAMODB = 1, UV_EVENTNAME, UV_NEWIMAGE, UV_OLDIMAGE, UV_KEYS, UV_VIEW, UV_COUNT = UV_VIEW };
static const char *const DELTA_NAMES[] = {"dynamodb", "eventName", "NewImage", "OldImage", "Keys"};

/* Upvalue UV_VIEW of core.delta: its view of the records and the names
 * it reads, made on the first call that finds conv open with a document
 * (conv.h: a view stays usable while the state is open; the names are
 * core.delta's own upvalues). */
typedef struct delta_view {
  int started;
  mm_conv_view_t v;
  mm_conv_names_t rec;  /* dynamodb, eventName */
  mm_conv_names_t ddb;  /* NewImage, OldImage */
} delta_view_t;

/*
 * One side of murmur.delta through a view (conv.h): img[field] when img is
 * a Lua table read raw, when it is still on the tape (or the member is),
 * the N text from the event. Returns 0 when the view cannot tell or the
 * member is anything but an N or a Lua value (the ordinary path decides
 * those, raising what conversion raises). [-0, +(0|1), -]
 */
static int view_side(lua_State *L, const mm_conv_view_t *v, const mm_conv_ref_t *img,
                     side_t *s) {
  mm_conv_ref_t f;
  s->state = SIDE_ABSENT;
  s->img = img->where == MM_CONV_REF_LUA ? img->idx : 0;
  s->val = 0;
  s->text = NULL;
  s->small = 0;
  if (img->where == MM_CONV_REF_NIL) return 1;
  if (mm_conv_view_get(L, v, img, 2, &f) != 0) return 0;
  switch (f.where) {
  case MM_CONV_REF_NIL:
    return 1;
  case MM_CONV_REF_LUA:
    s->val = f.idx;
    s->state = lua_type(L, f.idx) == LUA_TNUMBER ? SIDE_NUMBER : SIDE_OTHER;
    return 1;
  default:
    break;
  }
  if (mm_conv_view_n(v, &f, &s->text, &s->len) != MM_CONV_PEEK_N) return 0;
  s->state = SIDE_NUMBER;
  if (small_parse(s->text, s->len, &s->dec)) {
    s->small = 1;
    return 1;
  }
  /* a long text: only one conversion would accept */
  if (!lua_checkstack(L, 1) || mm_conv_push_number(L, s->text, s->len) != 0) return 0;
  lua_pop(L, 1);
  return 1;
}

/*
 * Both sides of murmur.delta (field a string at 2) through a view, with
 * nothing converted and no metamethod called; the images Lua would pick
 * (see core_delta) are chosen from rec.eventName and the images as they
 * read in Lua, still on the tape where nothing converted them. Returns 0
 * with the stack back at 2 values when the view cannot tell: the caller
 * then does it all the ordinary way, which is equivalent because nothing
 * happened here. [-0, +?, -]
 */
static int delta_view(lua_State *L, side_t *o, side_t *n) {
  delta_view_t *dv = (delta_view_t *)lua_touserdata(L, lua_upvalueindex(UV_VIEW));
  mm_conv_ref_t rec = {MM_CONV_REF_LUA, 1, 0, 0}, nil = {MM_CONV_REF_NIL, 0, 0, 0};
  mm_conv_ref_t r[2], img[2], keys = nil;
  if (lua_type(L, 2) != LUA_TSTRING) return 0;
  if (!dv->started) {
    static const int RN[2] = {lua_upvalueindex(UV_DYNAMODB), lua_upvalueindex(UV_EVENTNAME)};
    static const int IN[2] = {lua_upvalueindex(UV_NEWIMAGE), lua_upvalueindex(UV_OLDIMAGE)};
    if (!mm_conv_view_begin(L, &dv->v) || mm_conv_view_names(L, RN, 2, &dv->rec) != 0 ||
        mm_conv_view_names(L, IN, 2, &dv->ddb) != 0)
      return 0;
    dv->started = 1;
  }
  const mm_conv_view_t *v = &dv->v;
  /* rec.dynamodb and rec.eventName at once (the latter unused unless
   * dynamodb is a table; reading it has no effect) */
  if (mm_conv_view_getn(L, v, &rec, &dv->rec, r) != 0) goto fail;
  const mm_conv_ref_t *ddb = &r[0], *ev = &r[1], *os = &nil, *ns = &nil;
  if (ddb->where == MM_CONV_REF_TAPE || (ddb->where == MM_CONV_REF_LUA && lua_istable(L, ddb->idx))) {
    if (mm_conv_view_getn(L, v, ddb, &dv->ddb, img) != 0) goto fail;
    const mm_conv_ref_t *ni = &img[0], *oi = &img[1];
    int ins = mm_conv_view_streq(L, v, ev, "INSERT", 6);
    int rem = !ins && mm_conv_view_streq(L, v, ev, "REMOVE", 6);
    int mod = !ins && !rem && mm_conv_view_streq(L, v, ev, "MODIFY", 6);
    int has_old = mm_conv_view_truthy(L, v, oi), has_new = mm_conv_view_truthy(L, v, ni);
    if (has_old < 0 || has_new < 0) goto fail;
    int old_keys = (rem || mod) && !has_old, new_keys = (ins || mod) && !has_new;
    if ((old_keys || new_keys) &&
        mm_conv_view_get(L, v, ddb, lua_upvalueindex(UV_KEYS), &keys) != 0)
      goto fail;
    if (!ins) os = old_keys ? &keys : oi;
    if (!rem) ns = new_keys ? &keys : ni;
  }
  if (view_side(L, v, os, o) && view_side(L, v, ns, n)) return 1;
fail:
  lua_settop(L, 2);
  return 0;
}

/*
 * core.delta(rec, field) -> new - old of a numeric attribute (murmur.delta;
 * lua/murmur.lua documents which images count). The exact difference of
 * the decimal texts, as a number by the N rule; a missing side counts as
 * 0; nil when both sides lack the field or one holds a non-number; when
 * a side has no exact text (NaN or inf put there by the script) or the
 * difference is beyond DynamoDB's numbers, the float difference.
 *
 * Usually everything is read through a view (delta_view): members not
 * converted yet - rec.eventName, an image, the field's N - come straight
 * from the event text, and short decimals are subtracted in int64
 * arithmetic. Otherwise the ordinary way: the record's members read as in
 * Lua, unread members of lazy images from the event text
 * (mm_conv_peek_n). Both give exactly what the general path (reading the
 * members, core.decimal, core.dec_sub, core.tonumber) gives.
 */
static int core_delta(lua_State *L) {
  side_t o, n;
  lua_settop(L, 2);
  if (!lua_istable(L, 1))
    return luaL_error(L, "bad argument #1 to 'delta' (record expected, got %s)",
                      luaL_typename(L, 1));
  luaL_checkstack(L, 16, NULL);
  if (!delta_view(L, &o, &n)) {
    lua_getfield(L, 1, "dynamodb"); /* rec f ddb */
    lua_pushnil(L);                 /* rec f ddb old */
    lua_pushnil(L);                 /* rec f ddb old new */
    if (lua_istable(L, 3)) {
      lua_getfield(L, 1, "eventName"); /* 6 */
      lua_getfield(L, 3, "NewImage");  /* 7 */
      lua_getfield(L, 3, "OldImage");  /* 8 */
      int ins = str_is(L, 6, "INSERT"), rem = str_is(L, 6, "REMOVE");
      int mod = str_is(L, 6, "MODIFY");
      /* INSERT: nothing, new or keys; REMOVE: old or keys, nothing;
       * MODIFY: old or keys, new or keys; else old, new as they are */
      int use_old = !ins, use_new = !rem;
      int old_keys = (rem || mod) && !lua_toboolean(L, 8);
      int new_keys = (ins || mod) && !lua_toboolean(L, 7);
      if (old_keys || new_keys) lua_getfield(L, 3, "Keys"); /* 9 */
      if (use_old) lua_copy(L, old_keys ? 9 : 8, 4);
      if (use_new) lua_copy(L, new_keys ? 9 : 7, 5);
      lua_settop(L, 5);
    }
    if (lua_isnil(L, 2)) return luaL_error(L, "bad argument #2 to 'delta' (field expected)");
    read_side(L, 4, 2, &o);
    read_side(L, 5, 2, &n);
  }
  if (o.state == SIDE_ABSENT && n.state == SIDE_ABSENT) return 0;
  if (o.state == SIDE_OTHER || n.state == SIDE_OTHER) return 0;
  if (n.state == SIDE_NUMBER && !n.small && !n.text) side_text(L, 2, &n);
  if (o.state == SIDE_NUMBER && !o.small && !o.text) side_text(L, 2, &o);
  static const small_dec_t ZERO = {0, 0};
  const small_dec_t *a = n.state == SIDE_ABSENT ? &ZERO : n.small ? &n.dec : NULL;
  const small_dec_t *b = o.state == SIDE_ABSENT ? &ZERO : o.small ? &o.dec : NULL;
  if (a && b && small_sub_push(L, a, b)) return 1;

  /* The general path: exact decimals of at most 38 digits. */
  mm_dec_t da, db, r;
  int ok = 1;
  if (n.state == SIDE_ABSENT)
    mm_dec_from_int(&da, 0);
  else
    ok = n.text && mm_dec_parse(&da, n.text, n.len, NULL) == 0;
  if (ok && o.state == SIDE_ABSENT)
    mm_dec_from_int(&db, 0);
  else if (ok)
    ok = o.text && mm_dec_parse(&db, o.text, o.len, NULL) == 0;
  if (ok && mm_dec_sub(&r, &da, &db, NULL) == 0) {
    char buf[MM_DEC_TEXT_MAX];
    size_t len = mm_dec_format(&r, buf);
    if (mm_conv_push_number(L, buf, len) == 0) return 1;
  }
  /* NaN/inf put there by the script, or a result DynamoDB could not hold */
  push_side_value(L, &n);
  push_side_value(L, &o);
  lua_arith(L, LUA_OPSUB);
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
  for (int i = 0; i < UV_KEYS; i++) lua_pushstring(L, DELTA_NAMES[i]);
  delta_view_t *dv = (delta_view_t *)lua_newuserdatauv(L, sizeof *dv, 0);
  dv->started = 0;
  lua_pushcclosure(L, core_delta, UV_COUNT);
  lua_setfield(L, -2, "delta");
  lua_pushlightuserdata(L, NULL); /* the cjson.null sentinel */
  lua_setfield(L, -2, "null");
  return 1;
}

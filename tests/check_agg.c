/*
 * check_agg.c - aggregate kinds, deltas, stored encodings (agg.h).
 *
 * One test case per aggregate rule: what a merge stores, when it reports
 * the row unchanged, how the value renders as JSON, how two stored values
 * combine, and that an unparsable stored value is refused (MM_EPERM, no
 * output) rather than overwritten.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agg.h"
#include "buf.h"
#include "sketch.h"
#include "testutil.h"

/* ---- helpers ---- */

static mm_scalar_t num(const char *text) {
  mm_scalar_t s;
  mm_err_t e;
  memset(&s, 0, sizeof s);
  s.is_num = 1;
  ck_assert_msg(mm_dec_parse(&s.num, text, strlen(text), &e) == 0, "%s: %s", text, e.msg);
  return s;
}

/* A string scalar (owned copy of n bytes). */
static mm_scalar_t strn(const char *p, size_t n) {
  mm_scalar_t s;
  memset(&s, 0, sizeof s);
  s.str = malloc(n + 1);
  ck_assert_ptr_nonnull(s.str);
  memcpy(s.str, p, n);
  s.str[n] = '\0';
  s.len = n;
  return s;
}

static mm_scalar_t str(const char *p) { return strn(p, strlen(p)); }

static mm_delta_t delta(mm_agg_t agg, mm_scalar_t v) {
  mm_delta_t d;
  memset(&d, 0, sizeof d);
  d.agg = agg;
  d.v = v;
  d.weight = 1;
  return d;
}

/* Holds the last merge's output for the assertions that follow. */
typedef struct {
  char *out;
  size_t len;
  int changed;
} res_t;

static void res_free(res_t *r) {
  free(r->out);
  memset(r, 0, sizeof *r);
}

/* One buffer every merge of a test process also goes through with
 * mm_agg_merge_buf, as a store's scratch buffer is: reused, never freed
 * between merges of any aggregate and size. */
static mm_buf_t shared_buf = MM_BUF_INIT;

/* Merges d into old (NULL = new row), asserting success; mm_agg_merge_buf
 * into the shared buffer must give the same bytes and *changed. */
static res_t merge_ok(const mm_delta_t *d, const char *old, size_t old_len) {
  res_t r;
  mm_err_t e;
  mm_err_clear(&e);
  int rc = mm_agg_merge(d, old, old_len, &r.out, &r.len, &r.changed, &e);
  ck_assert_msg(rc == 0, "merge failed: %s", e.msg);
  ck_assert_ptr_nonnull(r.out);
  int changed = -1;
  ck_assert_int_eq(mm_agg_merge_buf(d, old, old_len, &shared_buf, &changed, &e), 0);
  ck_assert_ptr_nonnull(shared_buf.data);
  ck_assert_uint_eq(shared_buf.len, r.len);
  ck_assert(memcmp(shared_buf.data, r.out, r.len) == 0);
  ck_assert_int_eq(shared_buf.data[r.len], '\0');
  ck_assert_int_eq(changed, r.changed);
  return r;
}

static res_t merge_s(const mm_delta_t *d, const char *old) {
  return merge_ok(d, old, old ? strlen(old) : 0);
}

/* Renders and compares with want. */
static void render_is(mm_agg_t agg, const char *v, size_t len, const char *want) {
  char *json = NULL;
  mm_err_t e;
  mm_err_clear(&e);
  ck_assert_msg(mm_agg_render(agg, v, len, &json, &e) == 0, "render failed: %s", e.msg);
  ck_assert_msg(strcmp(json, want) == 0, "rendered %s, want %s", json, want);
  free(json);
}

/* Merge into an unparsable stored value: MM_EPERM, a message, no output. */
static void merge_refused(const mm_delta_t *d, const char *old, size_t old_len,
                          const char *want) {
  char *out = (char *)"sentinel";
  size_t len = 99;
  int changed = 7;
  mm_err_t e;
  mm_err_clear(&e);
  ck_assert_int_eq(mm_agg_merge(d, old, old_len, &out, &len, &changed, &e), MM_EPERM);
  ck_assert_int_eq(e.code, MM_EPERM);
  ck_assert_ptr_null(out);
  ck_assert_uint_eq(len, 0);
  ck_assert_int_eq(changed, 0);
  ck_assert_msg(strstr(e.msg, want) != NULL, "want \"%s\" in: %s", want, e.msg);
  /* also without an error struct */
  out = (char *)"sentinel";
  ck_assert_int_eq(mm_agg_merge(d, old, old_len, &out, &len, &changed, NULL), MM_EPERM);
  ck_assert_ptr_null(out);
  /* and into a buffer: the same failure and message */
  mm_err_t e2;
  mm_err_clear(&e2);
  ck_assert_int_eq(mm_agg_merge_buf(d, old, old_len, &shared_buf, &changed, &e2), MM_EPERM);
  ck_assert_str_eq(e2.msg, e.msg);
  ck_assert_int_eq(changed, 0);
}

static void render_refused(mm_agg_t agg, const char *v, size_t len, const char *want) {
  char *json = (char *)"sentinel";
  mm_err_t e;
  mm_err_clear(&e);
  ck_assert_int_eq(mm_agg_render(agg, v, len, &json, &e), MM_EPERM);
  ck_assert_ptr_null(json);
  ck_assert_msg(strstr(e.msg, want) != NULL, "want \"%s\" in: %s", want, e.msg);
}

static res_t combine_ok(mm_agg_t agg, const char *a, size_t alen, const char *b, size_t blen) {
  res_t r;
  mm_err_t e;
  mm_err_clear(&e);
  r.changed = 0;
  int rc = mm_agg_combine(agg, a, alen, b, blen, &r.out, &r.len, &e);
  ck_assert_msg(rc == 0, "combine failed: %s", e.msg);
  return r;
}

static res_t combine_s(mm_agg_t agg, const char *a, const char *b) {
  return combine_ok(agg, a, a ? strlen(a) : 0, b, b ? strlen(b) : 0);
}

/* JSON number grammar (RFC 8259 section 6). */
static int is_json_number(const char *s) {
  const char *p = s;
  if (*p == '-') p++;
  if (*p == '0') p++;
  else if (*p >= '1' && *p <= '9') while (*p >= '0' && *p <= '9') p++;
  else return 0;
  if (*p == '.') {
    p++;
    if (!(*p >= '0' && *p <= '9')) return 0;
    while (*p >= '0' && *p <= '9') p++;
  }
  if (*p == 'e' || *p == 'E') {
    p++;
    if (*p == '+' || *p == '-') p++;
    if (!(*p >= '0' && *p <= '9')) return 0;
    while (*p >= '0' && *p <= '9') p++;
  }
  return *p == '\0';
}

/* ---- kinds ---- */

START_TEST(test_kinds) {
  static const char *names[] = {"sum", "count", "min", "max", "first",
                                "last", "set", "hll", "topk"};
  for (int i = 0; i < 9; i++) {
    mm_agg_t a;
    ck_assert_int_eq(mm_agg_parse(names[i], &a), 0);
    ck_assert_int_eq((int)a, i);
    ck_assert_str_eq(mm_agg_name(a), names[i]);
    ck_assert_int_eq(mm_agg_needs_value(a), a != MM_AGG_COUNT);
    ck_assert_int_eq(mm_agg_is_additive(a), a == MM_AGG_SUM || a == MM_AGG_COUNT);
  }
  mm_agg_t a = MM_AGG_MAX;
  ck_assert_int_eq(mm_agg_parse("avg", &a), MM_EINVAL);
  ck_assert_int_eq(mm_agg_parse("SUM", &a), MM_EINVAL);
  ck_assert_int_eq(mm_agg_parse("", &a), MM_EINVAL);
  ck_assert_int_eq(mm_agg_parse(NULL, &a), MM_EINVAL);
  ck_assert_int_eq((int)a, MM_AGG_MAX);
  ck_assert_str_eq(mm_agg_name((mm_agg_t)42), "unknown");
  /* the list messages print is the names in order */
  char list[128] = "";
  for (int i = 0; i < 9; i++)
    snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
             mm_agg_name((mm_agg_t)i));
  ck_assert_str_eq(list, MM_AGG_NAMES);
}
END_TEST

/* ---- scalars and deltas ---- */

START_TEST(test_scalar_order) {
  mm_scalar_t n9 = num("9"), n10 = num("10"), n10b = num("1E+1"), sa = str("a"),
              sab = str("ab"), sb = str("b"), s10 = str("10"), nz = strn("a\0", 2);
  /* numbers exactly, not by text */
  ck_assert_int_eq(mm_scalar_cmp(&n9, &n10), -1);
  ck_assert_int_eq(mm_scalar_cmp(&n10, &n10b), 0);
  /* numbers before strings, whatever the text */
  ck_assert_int_eq(mm_scalar_cmp(&n10, &s10), -1);
  ck_assert_int_eq(mm_scalar_cmp(&sa, &n9), 1);
  /* strings bytewise, a prefix first, bytes after a NUL count */
  ck_assert_int_eq(mm_scalar_cmp(&sa, &sab), -1);
  ck_assert_int_eq(mm_scalar_cmp(&sab, &sb), -1);
  ck_assert_int_eq(mm_scalar_cmp(&sa, &nz), -1);
  ck_assert_int_eq(mm_scalar_cmp(&sb, &sb), 0);
  mm_scalar_t hi = str("\xff"), lo = str("\x01");
  ck_assert_int_eq(mm_scalar_cmp(&lo, &hi), -1); /* unsigned bytes */
  mm_scalar_t *all[] = {&n9, &n10, &n10b, &sa, &sab, &sb, &s10, &nz, &hi, &lo};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) mm_scalar_free(all[i]);
  mm_scalar_free(&sa); /* twice is safe */
  /* a NULL string (len ignored) is the empty string */
  mm_scalar_t nul = {0}, empty = str(""), cp;
  mm_err_t e;
  nul.len = 5;
  ck_assert_int_eq(mm_scalar_cmp(&nul, &empty), 0);
  ck_assert_int_eq(mm_scalar_copy(&cp, &nul, &e), 0);
  ck_assert_uint_eq(cp.len, 0);
  ck_assert_str_eq(cp.str, "");
  mm_scalar_free(&cp);
  mm_scalar_free(&empty);
}
END_TEST

START_TEST(test_scalar_copy) {
  mm_scalar_t s = strn("x\0y", 3), c, n = num("-1.25"), cn;
  mm_err_t e;
  ck_assert_int_eq(mm_scalar_copy(&c, &s, &e), 0);
  ck_assert_ptr_ne(c.str, s.str);
  ck_assert_uint_eq(c.len, 3);
  ck_assert(memcmp(c.str, "x\0y", 4) == 0);
  ck_assert_int_eq(mm_scalar_cmp(&c, &s), 0);
  ck_assert_int_eq(mm_scalar_copy(&cn, &n, &e), 0);
  ck_assert_ptr_null(cn.str);
  ck_assert_int_eq(mm_scalar_cmp(&cn, &n), 0);
  mm_scalar_free(&s);
  mm_scalar_free(&c);
  mm_scalar_free(&cn);
}
END_TEST

START_TEST(test_delta_free) {
  /* a set delta owns its members; the others own a string or nothing */
  mm_delta_t a = delta(MM_AGG_SUM, num("0.1")), s = delta(MM_AGG_SUM, str("x"));
  mm_delta_t set = delta(MM_AGG_SET, str("unused"));
  set.members = calloc(2, sizeof *set.members);
  set.members[0] = str("a");
  set.members[1] = num("1");
  set.nmembers = 2;
  mm_delta_t *all[] = {&a, &s, &set};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) mm_delta_free(all[i]);
  ck_assert_ptr_null(set.members);
  ck_assert_uint_eq(set.nmembers, 0);
  mm_delta_free(&set); /* twice is safe */
}
END_TEST

/* ---- sum and count ---- */

START_TEST(test_sum) {
  mm_delta_t d = delta(MM_AGG_SUM, num("0.1"));
  res_t r = merge_s(&d, NULL);
  ck_assert_str_eq(r.out, "0.1");
  ck_assert_int_eq(r.changed, 1);
  mm_delta_free(&d);
  d = delta(MM_AGG_SUM, num("0.2"));
  res_t r2 = merge_ok(&d, r.out, r.len);
  ck_assert_str_eq(r2.out, "0.3");
  ck_assert_uint_eq(r2.len, 3);
  ck_assert_int_eq(r2.changed, 1);
  render_is(MM_AGG_SUM, r2.out, r2.len, "0.3");
  res_free(&r);
  res_free(&r2);
  /* adding zero leaves the row as it was */
  mm_delta_t z = delta(MM_AGG_SUM, num("0"));
  r = merge_s(&z, "12.5");
  ck_assert_str_eq(r.out, "12.5");
  ck_assert_int_eq(r.changed, 0);
  res_free(&r);
  /* old_len 0 is a new row too */
  r = merge_ok(&d, "ignored", 0);
  ck_assert_str_eq(r.out, "0.2");
  ck_assert_int_eq(r.changed, 1);
  res_free(&r);
  /* negative deltas (REMOVE as a negative delta) and sign changes */
  mm_delta_t neg = delta(MM_AGG_SUM, num("-20"));
  r = merge_s(&neg, "12.5");
  ck_assert_str_eq(r.out, "-7.5");
  res_free(&r);
  mm_delta_free(&d);
  mm_delta_free(&z);
  mm_delta_free(&neg);
}
END_TEST

START_TEST(test_sum_thousand_cents) {
  mm_delta_t d = delta(MM_AGG_SUM, num("0.01"));
  char *cur = NULL;
  size_t len = 0;
  for (int i = 0; i < 1000; i++) {
    res_t r = merge_ok(&d, cur, len);
    free(cur);
    cur = r.out;
    len = r.len;
  }
  ck_assert_str_eq(cur, "10");
  render_is(MM_AGG_SUM, cur, len, "10");
  free(cur);
  mm_delta_free(&d);
}
END_TEST

START_TEST(test_sum_limits_and_refusals) {
  mm_delta_t one = delta(MM_AGG_SUM, num("1"));
  merge_refused(&one, "1E+38", 5, "sum needs more than 38 significant digits");
  merge_refused(&one, "abc", 3, "stored value: invalid number \"abc\"");
  merge_refused(&one, "1.5x", 4, "invalid number");
  merge_refused(&one, "n1", 2, "invalid number");
  merge_refused(&one, "123456789012345678901234567890123456789", 39, "39 significant digits");
  mm_delta_t s = delta(MM_AGG_SUM, str("3"));
  merge_refused(&s, NULL, 0, "sum delta is not a number");
  mm_delta_t c = delta(MM_AGG_COUNT, str("3"));
  merge_refused(&c, "1", 1, "count delta is not a number");
  mm_delta_free(&one);
  mm_delta_free(&s);
  mm_delta_free(&c);
}
END_TEST

START_TEST(test_count) {
  mm_delta_t d = delta(MM_AGG_COUNT, num("1"));
  res_t r = merge_s(&d, NULL);
  ck_assert_str_eq(r.out, "1");
  res_t r2 = merge_ok(&d, r.out, r.len);
  ck_assert_str_eq(r2.out, "2");
  render_is(MM_AGG_COUNT, r2.out, r2.len, "2");
  /* a coalesced batch delta */
  mm_delta_t five = delta(MM_AGG_COUNT, num("5"));
  res_t r3 = merge_ok(&five, r2.out, r2.len);
  ck_assert_str_eq(r3.out, "7");
  res_free(&r);
  res_free(&r2);
  res_free(&r3);
  mm_delta_free(&d);
  mm_delta_free(&five);
}
END_TEST

/* ---- min and max ---- */

START_TEST(test_min) {
  mm_delta_t d = delta(MM_AGG_MIN, num("5"));
  res_t r = merge_s(&d, NULL);
  ck_assert_str_eq(r.out, "n5");
  ck_assert_int_eq(r.changed, 1);
  res_free(&r);
  /* lower replaces; canonical text is stored */
  mm_delta_free(&d);
  d = delta(MM_AGG_MIN, num("1.50"));
  r = merge_s(&d, "n5");
  ck_assert_str_eq(r.out, "n1.5");
  ck_assert_int_eq(r.changed, 1);
  res_free(&r);
  /* not lower: unchanged, old bytes returned (even non-canonical ones) */
  r = merge_s(&d, "n1.500");
  ck_assert_str_eq(r.out, "n1.500");
  ck_assert_int_eq(r.changed, 0);
  res_free(&r);
  r = merge_s(&d, "n-3");
  ck_assert_str_eq(r.out, "n-3");
  ck_assert_int_eq(r.changed, 0);
  res_free(&r);
  /* numbers sort before strings: a number replaces a stored string */
  r = merge_s(&d, "sabc");
  ck_assert_str_eq(r.out, "n1.5");
  ck_assert_int_eq(r.changed, 1);
  res_free(&r);
  mm_delta_free(&d);
  /* strings bytewise */
  d = delta(MM_AGG_MIN, str("apple"));
  r = merge_s(&d, "sbanana");
  ck_assert_str_eq(r.out, "sapple");
  res_free(&r);
  r = merge_s(&d, "sapp");
  ck_assert_str_eq(r.out, "sapp");
  ck_assert_int_eq(r.changed, 0);
  res_free(&r);
  r = merge_s(&d, "n100");
  ck_assert_str_eq(r.out, "n100");
  ck_assert_int_eq(r.changed, 0);
  res_free(&r);
  render_is(MM_AGG_MIN, "n-1.5E+60", 9, "-1.5E+60");
  render_is(MM_AGG_MIN, "sapple", 6, "\"apple\"");
  render_is(MM_AGG_MIN, "s", 1, "\"\"");
  merge_refused(&d, "x12", 3, "unknown scalar tag");
  merge_refused(&d, "nabc", 4, "invalid number");
  render_refused(MM_AGG_MIN, "", 0, "empty scalar");
  mm_delta_free(&d);
}
END_TEST

START_TEST(test_max) {
  mm_delta_t d = delta(MM_AGG_MAX, num("10"));
  res_t r = merge_s(&d, "n9");
  ck_assert_str_eq(r.out, "n10"); /* numerically, though "10" < "9" as text */
  ck_assert_int_eq(r.changed, 1);
  res_free(&r);
  r = merge_s(&d, "n10.0");
  ck_assert_int_eq(r.changed, 0);
  res_free(&r);
  r = merge_s(&d, "s");
  ck_assert_str_eq(r.out, "s"); /* any string is above every number */
  ck_assert_int_eq(r.changed, 0);
  res_free(&r);
  mm_delta_free(&d);
  d = delta(MM_AGG_MAX, strn("z\0z", 3));
  r = merge_s(&d, "sz");
  ck_assert_uint_eq(r.len, 4);
  ck_assert(memcmp(r.out, "sz\0z", 4) == 0);
  render_is(MM_AGG_MAX, r.out, r.len, "\"z\\u0000z\"");
  res_free(&r);
  mm_delta_free(&d);
}
END_TEST

/* ---- first and last ---- */

START_TEST(test_first) {
  mm_delta_t d = delta(MM_AGG_FIRST, num("3"));
  d.time = 1700000000;
  res_t r = merge_s(&d, NULL);
  ck_assert_str_eq(r.out, "1700000000|n3");
  ck_assert_int_eq(r.changed, 1);
  render_is(MM_AGG_FIRST, r.out, r.len, "3");
  res_free(&r);
  /* later: keeps the stored one */
  d.time = 1700000001;
  r = merge_s(&d, "1700000000|sold");
  ck_assert_str_eq(r.out, "1700000000|sold");
  ck_assert_int_eq(r.changed, 0);
  res_free(&r);
  /* tie: keeps the existing */
  d.time = 1700000000;
  r = merge_s(&d, "1700000000|sold");
  ck_assert_int_eq(r.changed, 0);
  res_free(&r);
  /* earlier: replaces; fractional times keep 17 digits */
  d.time = 1699999999.25;
  r = merge_s(&d, "1700000000|sold");
  ck_assert_str_eq(r.out, "1699999999.25|n3");
  ck_assert_int_eq(r.changed, 1);
  res_free(&r);
  d.time = 0.1;
  r = merge_s(&d, NULL);
  ck_assert_str_eq(r.out, "0.10000000000000001|n3");
  ck_assert(strtod(r.out, NULL) == 0.1);
  res_free(&r);
  mm_delta_free(&d);
}
END_TEST

START_TEST(test_last) {
  mm_delta_t d = delta(MM_AGG_LAST, str("a|b"));
  d.time = 100;
  res_t r = merge_s(&d, NULL);
  ck_assert_str_eq(r.out, "100|sa|b");
  render_is(MM_AGG_LAST, r.out, r.len, "\"a|b\"");
  res_free(&r);
  /* later wins */
  r = merge_s(&d, "99|n1");
  ck_assert_str_eq(r.out, "100|sa|b");
  ck_assert_int_eq(r.changed, 1);
  res_free(&r);
  /* tie: the later write (this delta) wins */
  r = merge_s(&d, "100|n1");
  ck_assert_str_eq(r.out, "100|sa|b");
  ck_assert_int_eq(r.changed, 1);
  res_free(&r);
  /* tie with the same value: nothing changes */
  r = merge_s(&d, "100|sa|b");
  ck_assert_int_eq(r.changed, 0);
  res_free(&r);
  /* earlier: keeps the stored one */
  r = merge_s(&d, "101|n1");
  ck_assert_str_eq(r.out, "101|n1");
  ck_assert_int_eq(r.changed, 0);
  res_free(&r);
  merge_refused(&d, "abc|n1", 6, "not a finite number");
  merge_refused(&d, "100", 3, "no '|'");
  merge_refused(&d, "|n1", 3, "event time");
  merge_refused(&d, "inf|n1", 6, "not a finite number");
  merge_refused(&d, "100|q1", 6, "unknown scalar tag");
  render_refused(MM_AGG_LAST, "100|nx", 6, "invalid number");
  d.time = NAN;
  merge_refused(&d, NULL, 0, "no finite event time");
  mm_delta_free(&d);
}
END_TEST

/* ---- set ---- */

START_TEST(test_set) {
  mm_delta_t d = delta(MM_AGG_SET, num("0"));
  d.members = calloc(4, sizeof *d.members);
  d.members[0] = str("b");
  d.members[1] = num("1.50");
  d.members[2] = str("a");
  d.members[3] = str("b");
  d.nmembers = 4;
  res_t r = merge_s(&d, NULL);
  /* sorted bytewise, unique, numbers canonical */
  ck_assert_uint_eq(r.len, 10);
  ck_assert(memcmp(r.out, "n1.5\0sa\0sb", 10) == 0);
  ck_assert_int_eq(r.changed, 1);
  render_is(MM_AGG_SET, r.out, r.len, "[1.5,\"a\",\"b\"]");
  /* re-adding members already there: unchanged */
  res_t r2 = merge_ok(&d, r.out, r.len);
  ck_assert_int_eq(r2.changed, 0);
  ck_assert_uint_eq(r2.len, r.len);
  res_free(&r2);
  mm_delta_free(&d);
  /* a new member joins in order; an equal number in other text does not */
  d = delta(MM_AGG_SET, num("0"));
  d.members = calloc(3, sizeof *d.members);
  d.members[0] = num("10");
  d.members[1] = num("1.5000");
  d.members[2] = str("");
  d.nmembers = 3;
  r2 = merge_ok(&d, r.out, r.len);
  ck_assert_uint_eq(r2.len, 16);
  ck_assert(memcmp(r2.out, "n1.5\0n10\0s\0sa\0sb", 16) == 0);
  render_is(MM_AGG_SET, r2.out, r2.len, "[1.5,10,\"\",\"a\",\"b\"]");
  res_free(&r2);
  res_free(&r);
  mm_delta_free(&d);
  /* the empty set */
  render_is(MM_AGG_SET, "", 0, "[]");
  render_is(MM_AGG_SET, NULL, 0, "[]");
  d = delta(MM_AGG_SET, num("0"));
  r = merge_s(&d, NULL);
  ck_assert_uint_eq(r.len, 0);
  res_free(&r);
  /* refusals: NUL in a member, corrupt stored members */
  d.members = calloc(1, sizeof *d.members);
  d.members[0] = strn("a\0b", 3);
  d.nmembers = 1;
  merge_refused(&d, NULL, 0, "contains a NUL byte");
  mm_delta_free(&d);
  d = delta(MM_AGG_SET, num("0"));
  d.members = calloc(1, sizeof *d.members);
  d.members[0] = str("x");
  d.nmembers = 1;
  merge_refused(&d, "sa\0\0sb", 6, "set member 1 is empty");
  merge_refused(&d, "sa\0", 3, "set member 1 is empty");
  merge_refused(&d, "sa\0n1x", 6, "set member 1: invalid number");
  merge_refused(&d, "a", 1, "set member 0: unknown scalar tag");
  render_refused(MM_AGG_SET, "\0sa", 3, "set member 0 is empty");
  mm_delta_free(&d);
}
END_TEST

/* ---- hll and topk ---- */

START_TEST(test_hll) {
  char *cur = NULL;
  size_t len = 0;
  char name[32];
  for (int i = 0; i < 2000; i++) {
    int n = snprintf(name, sizeof name, "visitor-%d", i % 500);
    mm_delta_t d = delta(MM_AGG_HLL, strn(name, (size_t)n));
    res_t r = merge_ok(&d, cur, len);
    /* only the first 500 adds can change the sketch */
    if (i >= 500) ck_assert_int_eq(r.changed, 0);
    free(cur);
    cur = r.out;
    len = r.len;
    mm_delta_free(&d);
  }
  ck_assert_uint_eq((uint8_t)cur[0], MM_HLL_MAGIC);
  char *json;
  mm_err_t e;
  ck_assert_int_eq(mm_agg_render(MM_AGG_HLL, cur, len, &json, &e), 0);
  long est = strtol(json, NULL, 10);
  /* linear-counting regime: sd = sqrt(m (e^t - t - 1)) = 5.6 for n = 500 */
  ck_assert_msg(est >= 482 && est <= 518, "estimate %s", json);
  ck_assert_msg(strspn(json, "0123456789") == strlen(json), "not an integer: %s", json);
  free(json);
  /* numbers go in by their canonical text: 1.50 and 1.5 are one item */
  mm_delta_t a = delta(MM_AGG_HLL, num("1.50")), b = delta(MM_AGG_HLL, num("1.5")),
             c = delta(MM_AGG_HLL, str("1.5"));
  res_t ra = merge_s(&a, NULL);
  res_t rb = merge_ok(&b, ra.out, ra.len);
  res_t rc = merge_ok(&c, rb.out, rb.len);
  ck_assert_int_eq(rb.changed, 0);
  ck_assert_int_eq(rc.changed, 0);
  render_is(MM_AGG_HLL, rc.out, rc.len, "1");
  res_free(&ra);
  res_free(&rb);
  res_free(&rc);
  /* a corrupt stored sketch is refused */
  cur[0] = 'T';
  merge_refused(&a, cur, len, "hll sketch: wrong magic");
  render_refused(MM_AGG_HLL, cur, len, "wrong magic");
  merge_refused(&a, "n5", 2, "hll sketch");
  free(cur);
  mm_delta_free(&a);
  mm_delta_free(&b);
  mm_delta_free(&c);
}
END_TEST

START_TEST(test_topk) {
  char *cur = NULL;
  size_t len = 0;
  char name[32];
  /* item k (0..19) added (20 - k) times with weight 1, then "big" once
   * with weight 50 and the number 7.0 once with weight 16 */
  for (int k = 0; k < 20; k++)
    for (int j = 0; j < 20 - k; j++) {
      int n = snprintf(name, sizeof name, "item-%02d", k);
      mm_delta_t d = delta(MM_AGG_TOPK, strn(name, (size_t)n));
      res_t r = merge_ok(&d, cur, len);
      ck_assert_int_eq(r.changed, 1);
      free(cur);
      cur = r.out;
      len = r.len;
      mm_delta_free(&d);
    }
  mm_delta_t big = delta(MM_AGG_TOPK, str("big \"one\""));
  big.weight = 50;
  res_t r = merge_ok(&big, cur, len);
  free(cur);
  cur = r.out;
  len = r.len;
  mm_delta_t n7 = delta(MM_AGG_TOPK, num("7.0"));
  n7.weight = 16;
  r = merge_ok(&n7, cur, len);
  free(cur);
  cur = r.out;
  len = r.len;
  render_is(MM_AGG_TOPK, cur, len,
            "[[\"big \\\"one\\\"\",50],[\"item-00\",20],[\"item-01\",19],[\"item-02\",18],"
            "[\"item-03\",17],[\"7\",16],[\"item-04\",16],[\"item-05\",15],[\"item-06\",14],"
            "[\"item-07\",13]]");
  /* a zero weight is refused */
  n7.weight = 0;
  merge_refused(&n7, cur, len, "weight 0");
  /* corrupt stored counts are refused */
  char *bad = malloc(len);
  memcpy(bad, cur, len);
  bad[13] ^= 1; /* total's low byte */
  merge_refused(&big, bad, len, "topk sketch: corrupt counts");
  render_refused(MM_AGG_TOPK, bad, len, "corrupt counts");
  free(bad);
  free(cur);
  mm_delta_free(&big);
  mm_delta_free(&n7);
  render_is(MM_AGG_TOPK, "T\1\0\100\0\0\0\0\0\0\0\0\0\0", 14, "[]");
}
END_TEST

/* ---- render ---- */

/* Every decimal renders as a valid JSON number with its canonical text. */
START_TEST(test_render_numbers_are_json) {
  static const char *v[] = {"0.3", "-0", "1E-130", "-1E-130", "1.5E+60", "1E+125",
                            "12345678901234567890123456789012345678",
                            "-0.00000000000000000000000000000000000001", "1E-39",
                            "9.9999999999999999999999999999999999999E+125", "100", "0.5"};
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    mm_dec_t d;
    mm_err_t e;
    char canon[MM_DEC_TEXT_MAX], *json;
    ck_assert_int_eq(mm_dec_parse(&d, v[i], strlen(v[i]), &e), 0);
    mm_dec_format(&d, canon);
    ck_assert_int_eq(mm_agg_render(MM_AGG_SUM, v[i], strlen(v[i]), &json, &e), 0);
    ck_assert_str_eq(json, canon);
    ck_assert_msg(is_json_number(json), "%s", json);
    ck_assert(strtod(json, NULL) == mm_dec_to_double(&d));
    free(json);
  }
  render_is(MM_AGG_SUM, "1E+2", 4, "100");
  render_is(MM_AGG_SUM, "+5", 2, "5");
  render_refused(MM_AGG_SUM, "", 0, "stored sum value: invalid number");
  render_refused(MM_AGG_COUNT, "1 ", 2, "invalid number");
  char *json = (char *)"x";
  mm_err_t e;
  ck_assert_int_eq(mm_agg_render((mm_agg_t)99, "1", 1, &json, &e), MM_EPERM);
  ck_assert_ptr_null(json);
}
END_TEST

START_TEST(test_render_strings_escaped) {
  render_is(MM_AGG_MAX, "sa\"b\\c\n\t\x01", 9, "\"a\\\"b\\\\c\\n\\t\\u0001\"");
  render_is(MM_AGG_MAX, "s\xc3\xa9", 3, "\"\xc3\xa9\"");      /* valid UTF-8 kept */
  render_is(MM_AGG_MAX, "s\xff", 2, "\"\xef\xbf\xbd\"");       /* invalid -> U+FFFD */
  render_is(MM_AGG_SET, "n-2\0sx\"y", 8, "[-2,\"x\\\"y\"]");
}
END_TEST

/* ---- combine ---- */

START_TEST(test_combine) {
  res_t r = combine_s(MM_AGG_SUM, "0.1", "0.2");
  ck_assert_str_eq(r.out, "0.3");
  res_free(&r);
  r = combine_s(MM_AGG_COUNT, NULL, "4");
  ck_assert_str_eq(r.out, "4");
  res_free(&r);
  r = combine_s(MM_AGG_MIN, "n3", "n-1");
  ck_assert_str_eq(r.out, "n-1");
  res_free(&r);
  r = combine_s(MM_AGG_MIN, "n3", "sa");
  ck_assert_str_eq(r.out, "n3");
  res_free(&r);
  r = combine_s(MM_AGG_MAX, "n3", "sa");
  ck_assert_str_eq(r.out, "sa");
  res_free(&r);
  r = combine_s(MM_AGG_MAX, "n3.0", NULL);
  ck_assert_str_eq(r.out, "n3");
  res_free(&r);
  /* first/last by time; a is the older row: ties keep a (first), take b (last) */
  r = combine_s(MM_AGG_FIRST, "20|sa", "10|sb");
  ck_assert_str_eq(r.out, "10|sb");
  res_free(&r);
  r = combine_s(MM_AGG_FIRST, "10|sa", "10|sb");
  ck_assert_str_eq(r.out, "10|sa");
  res_free(&r);
  r = combine_s(MM_AGG_LAST, "20|sa", "10|sb");
  ck_assert_str_eq(r.out, "20|sa");
  res_free(&r);
  r = combine_s(MM_AGG_LAST, "10|sa", "10|sb");
  ck_assert_str_eq(r.out, "10|sb");
  res_free(&r);
  /* set union */
  r = combine_ok(MM_AGG_SET, "n1\0sb", 5, "n1\0sa", 5);
  ck_assert_uint_eq(r.len, 8);
  ck_assert(memcmp(r.out, "n1\0sa\0sb", 8) == 0);
  res_free(&r);
  r = combine_ok(MM_AGG_SET, "", 0, "sa", 2);
  ck_assert_str_eq(r.out, "sa");
  res_free(&r);
  /* refusals */
  char *out = (char *)"x";
  size_t len = 5;
  mm_err_t e;
  ck_assert_int_eq(mm_agg_combine(MM_AGG_SUM, "1", 1, "zz", 2, &out, &len, &e), MM_EPERM);
  ck_assert_ptr_null(out);
  ck_assert(strstr(e.msg, "invalid number"));
  ck_assert_int_eq(mm_agg_combine(MM_AGG_SUM, "1E+38", 5, "1", 1, &out, &len, &e), MM_EPERM);
  ck_assert(strstr(e.msg, "38 significant digits"));
  ck_assert_int_eq(mm_agg_combine(MM_AGG_LAST, "1|n1", 4, "x|n1", 4, &out, &len, &e),
                   MM_EPERM);
  ck_assert_int_eq(mm_agg_combine(MM_AGG_SUM, NULL, 0, NULL, 0, &out, &len, &e), MM_EINVAL);
}
END_TEST

/* Builds a stored sketch by merging items [from, to) of prefix. */
static res_t sketch_of(mm_agg_t agg, const char *prefix, int from, int to) {
  res_t acc = {NULL, 0, 0};
  char name[32];
  for (int i = from; i < to; i++) {
    int n = snprintf(name, sizeof name, "%s%d", prefix, i);
    mm_delta_t d = delta(agg, strn(name, (size_t)n));
    res_t r = merge_ok(&d, acc.out, acc.len);
    res_free(&acc);
    acc = r;
    mm_delta_free(&d);
  }
  return acc;
}

START_TEST(test_combine_sketches) {
  res_t a = sketch_of(MM_AGG_HLL, "u", 0, 3000), b = sketch_of(MM_AGG_HLL, "u", 2000, 5000),
        all = sketch_of(MM_AGG_HLL, "u", 0, 5000);
  res_t c = combine_ok(MM_AGG_HLL, a.out, a.len, b.out, b.len);
  ck_assert_uint_eq(c.len, all.len);
  ck_assert(memcmp(c.out, all.out, c.len) == 0);
  res_free(&c);
  c = combine_ok(MM_AGG_HLL, NULL, 0, a.out, a.len);
  ck_assert_uint_eq(c.len, a.len);
  ck_assert(memcmp(c.out, a.out, c.len) == 0);
  res_free(&c);
  res_free(&a);
  res_free(&b);
  res_free(&all);
  /* top-k: counts of an item present in both add up */
  a = sketch_of(MM_AGG_TOPK, "k", 0, 3);
  b = sketch_of(MM_AGG_TOPK, "k", 1, 2);
  c = combine_ok(MM_AGG_TOPK, a.out, a.len, b.out, b.len);
  render_is(MM_AGG_TOPK, c.out, c.len, "[[\"k1\",2],[\"k0\",1],[\"k2\",1]]");
  res_free(&c);
  char *out;
  size_t len;
  mm_err_t e;
  ck_assert_int_eq(mm_agg_combine(MM_AGG_TOPK, a.out, a.len, "T", 1, &out, &len, &e),
                   MM_EPERM);
  ck_assert(strstr(e.msg, "topk sketch"));
  ck_assert_int_eq(mm_agg_combine(MM_AGG_HLL, a.out, a.len, NULL, 0, &out, &len, &e),
                   MM_EPERM);
  ck_assert(strstr(e.msg, "hll sketch: wrong magic"));
  res_free(&a);
  res_free(&b);
}
END_TEST

START_TEST(test_unknown_aggregate) {
  mm_delta_t d = delta((mm_agg_t)77, num("1"));
  merge_refused(&d, NULL, 0, "unknown aggregate");
  mm_delta_free(&d);
}
END_TEST

Suite *agg_suite(void) {
  Suite *s = suite_create("agg");
  TCase *tc = tcase_create("kinds_scalars_deltas");
  tcase_add_test(tc, test_kinds);
  tcase_add_test(tc, test_scalar_order);
  tcase_add_test(tc, test_scalar_copy);
  tcase_add_test(tc, test_delta_free);
  suite_add_tcase(s, tc);
  tc = tcase_create("merge");
  tcase_add_test(tc, test_sum);
  tcase_add_test(tc, test_sum_thousand_cents);
  tcase_add_test(tc, test_sum_limits_and_refusals);
  tcase_add_test(tc, test_count);
  tcase_add_test(tc, test_min);
  tcase_add_test(tc, test_max);
  tcase_add_test(tc, test_first);
  tcase_add_test(tc, test_last);
  tcase_add_test(tc, test_set);
  tcase_add_test(tc, test_hll);
  tcase_add_test(tc, test_topk);
  tcase_add_test(tc, test_unknown_aggregate);
  suite_add_tcase(s, tc);
  tc = tcase_create("render");
  tcase_add_test(tc, test_render_numbers_are_json);
  tcase_add_test(tc, test_render_strings_escaped);
  suite_add_tcase(s, tc);
  tc = tcase_create("combine");
  tcase_add_test(tc, test_combine);
  tcase_add_test(tc, test_combine_sketches);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return tu_run_suite(agg_suite());
}

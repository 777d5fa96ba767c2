/*
 * check_decimal.c - exact decimals with DynamoDB's limits (decimal.h).
 *
 * Table-driven parse/format cases, the arithmetic facts DynamoDB's ADD
 * guarantees (0.1 + 0.2 = 0.3), the 38-digit and range limits, shortest
 * round-trip from doubles, and property tests against integer arithmetic
 * (__int128) with a fixed-seed generator and bounded loops.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decimal.h"
#include "testutil.h"

/* ---- helpers ---- */

static mm_dec_t P(const char *s) {
  mm_dec_t d;
  mm_err_t e;
  mm_err_clear(&e);
  int rc = mm_dec_parse(&d, s, strlen(s), &e);
  ck_assert_msg(rc == 0, "parse \"%s\" failed: %s", s, e.msg);
  return d;
}

static const char *F(const mm_dec_t *d) {
  static char buf[4][MM_DEC_TEXT_MAX];
  static int slot;
  char *b = buf[slot++ % 4];
  size_t n = mm_dec_format(d, b);
  ck_assert_uint_eq(n, strlen(b));
  return b;
}

/* The canonical text of parsed s. */
static const char *F2(const char *s) {
  mm_dec_t d = P(s);
  return F(&d);
}

/* Deterministic generator (SplitMix64), so failures reproduce. */
static uint64_t rng_state;
static uint64_t rnd(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* Independent oracle: the canonical text of v * 10^-k (v an integer,
 * k >= 0), built with plain string handling, for values whose plain form
 * is at most 40 characters. */
static void oracle_text(__int128 v, int k, char *out) {
  char digs[64];
  int n = 0, neg = v < 0;
  unsigned __int128 m = neg ? (unsigned __int128)0 - (unsigned __int128)v : (unsigned __int128)v;
  if (m == 0) {
    strcpy(out, "0");
    return;
  }
  while (m) {
    digs[n++] = (char)('0' + (int)(m % 10));
    m /= 10;
  }
  /* digs holds the digits least significant first; pad to k+1 digits so
   * there is an integer part */
  while (n < k + 1) digs[n++] = '0';
  char tmp[96];
  int t = 0;
  if (neg) tmp[t++] = '-';
  for (int i = n - 1; i >= k; i--) tmp[t++] = digs[i];
  if (k > 0) {
    tmp[t++] = '.';
    for (int i = k - 1; i >= 0; i--) tmp[t++] = digs[i];
    while (tmp[t - 1] == '0') t--;
    if (tmp[t - 1] == '.') t--;
  }
  tmp[t] = '\0';
  strcpy(out, tmp);
}

static __int128 pow10_128(int k) {
  __int128 p = 1;
  while (k-- > 0) p *= 10;
  return p;
}

/* ---- parse and format ---- */

static const struct {
  const char *in, *canon;
} canon_cases[] = {
    {"0", "0"},
    {"-0", "0"},
    {"+0", "0"},
    {"0.000", "0"},
    {"-0.000E+5", "0"},
    {"0E+999999999999", "0"},
    {"1E+2", "100"},
    {"1e2", "100"},
    {"1E-2", "0.01"},
    {"1.50", "1.5"},
    {"+7", "7"},
    {"-12", "-12"},
    {"007.100", "7.1"},
    {"100", "100"},
    {"0.3", "0.3"},
    {"123.456e1", "1234.56"},
    {"12345678901234567890123456789012345678", "12345678901234567890123456789012345678"},
    {"-1234567890123456789012345678901234567.8", "-1234567890123456789012345678901234567.8"},
    {"0.00000000000000000000000000000000000001", "0.00000000000000000000000000000000000001"},
    {"1E-39", "1E-39"},
    {"1E+39", "1000000000000000000000000000000000000000"},
    {"1E+40", "1E+40"},
    {"-1E+39", "-1E+39"},
    {"1.5e60", "1.5E+60"},
    {"-2E-45", "-2E-45"},
    {"1E-130", "1E-130"},
    {"1E+125", "1E+125"},
    {"9.9999999999999999999999999999999999999E+125",
     "9.9999999999999999999999999999999999999E+125"},
    {"12345678901234567890123456789012345678E-167",
     "1.2345678901234567890123456789012345678E-130"},
    {"1000000000000000000000000000000000000000000", "1E+42"},
    {"0.00000000000000000000000000000000000000000000000001234", "1.234E-50"},
};

START_TEST(test_parse_canonical) {
  for (size_t i = 0; i < sizeof canon_cases / sizeof canon_cases[0]; i++) {
    mm_dec_t d = P(canon_cases[i].in);
    ck_assert_msg(strcmp(F(&d), canon_cases[i].canon) == 0, "%s -> %s, expected %s",
                  canon_cases[i].in, F(&d), canon_cases[i].canon);
    /* the canonical text parses back to the same value and text */
    mm_dec_t back = P(F(&d));
    ck_assert_int_eq(mm_dec_cmp(&d, &back), 0);
    ck_assert_str_eq(F(&back), canon_cases[i].canon);
  }
}
END_TEST

START_TEST(test_parse_struct) {
  mm_dec_t d = P("-1.50E+3");
  ck_assert_int_eq(d.neg, 1);
  ck_assert_int_eq(d.ndig, 2);
  ck_assert_int_eq(d.dig[0], 1);
  ck_assert_int_eq(d.dig[1], 5);
  ck_assert_int_eq(d.exp, 2);
  d = P("-0");
  ck_assert(mm_dec_is_zero(&d));
  ck_assert_int_eq(d.neg, 0);
  /* a length shorter than the string: only the prefix is read */
  mm_err_t e;
  ck_assert_int_eq(mm_dec_parse(&d, "12345", 3, &e), 0);
  ck_assert_str_eq(F(&d), "123");
}
END_TEST

START_TEST(test_parse_garbage) {
  static const char *bad[] = {"",     "-",    "+",    ".5",   "5.",  "1e",   "1e+",
                              "1E-",  "abc",  "1.2.3", " 1",  "1 ",  "0x10", "inf",
                              "nan",  "--1",  "+-1",  "1e5x", "1,5", "1..5", "e5",
                              "-.5",  "1.e5", "١"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    mm_dec_t d;
    mm_err_t e;
    mm_err_clear(&e);
    int rc = mm_dec_parse(&d, bad[i], strlen(bad[i]), &e);
    ck_assert_msg(rc == MM_EINVAL, "\"%s\" accepted", bad[i]);
    ck_assert_int_eq(e.code, MM_EINVAL);
    ck_assert_msg(strstr(e.msg, "invalid number") != NULL, "message: %s", e.msg);
  }
  /* an embedded NUL ends nothing: the whole length must be a number */
  mm_dec_t d;
  mm_err_t e;
  ck_assert_int_eq(mm_dec_parse(&d, "1\0002", 3, &e), MM_EINVAL);
}
END_TEST

/* Plain text of up to 19 digits takes a 64-bit fast path; the same text
 * with "E0" appended takes the general one. Both must give the same
 * struct, for every sign, leading and trailing zeros, and digit count
 * around the fast path's limit (18-21), and the fast path must leave the
 * errors to the general path. */
START_TEST(test_parse_fast_path_vs_general) {
  rng_state = 4242;
  for (int i = 0; i < 50000; i++) {
    char t[64], g[70];
    size_t n = 0;
    int r = (int)(rnd() % 8);
    if (r == 0) t[n++] = '-';
    if (r == 1) t[n++] = '+';
    int nint = 1 + (int)(rnd() % 21), nfrac = rnd() % 3 ? (int)(rnd() % 21) : 0;
    for (int k = 0; k < nint; k++) t[n++] = (char)('0' + (rnd() % 4 ? rnd() % 10 : 0));
    if (nfrac) {
      t[n++] = '.';
      for (int k = 0; k < nfrac; k++) t[n++] = (char)('0' + (rnd() % 4 ? rnd() % 10 : 0));
    }
    t[n] = '\0';
    snprintf(g, sizeof g, "%sE0", t);
    mm_dec_t a, b;
    mm_err_t ea, eb;
    int ra = mm_dec_parse(&a, t, n, &ea), rb = mm_dec_parse(&b, g, strlen(g), &eb);
    ck_assert_int_eq(ra, rb);
    if (ra) continue; /* > 38 significant digits: both refuse */
    ck_assert_msg(memcmp(&a, &b, sizeof a) == 0, "%s parses unlike %s", t, g);
    ck_assert_msg(strcmp(F(&a), F(&b)) == 0, "%s", t);
  }
  /* text the fast path does not take keeps the general path's messages */
  const char *bad[] = {"", "-", "+", ".5", "5.", "1.2.3", " 1", "1 ", "1e", "--1", "0x10",
                       "12345678901234567890.", "1.", "-.", "1a"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    mm_dec_t d;
    mm_err_t e;
    mm_err_clear(&e);
    ck_assert_msg(mm_dec_parse(&d, bad[i], strlen(bad[i]), &e) == MM_EINVAL, "'%s'", bad[i]);
    ck_assert_msg(strstr(e.msg, "invalid number"), "'%s': %s", bad[i], e.msg);
    ck_assert(mm_dec_is_zero(&d));
  }
  /* the fast path's edges */
  ck_assert_str_eq(F2("9999999999999999999"), "9999999999999999999");   /* 19 digits */
  ck_assert_str_eq(F2("99999999999999999999"), "99999999999999999999"); /* 20: general */
  ck_assert_str_eq(F2("-0.0000000000000000001"), "-0.0000000000000000001");
  ck_assert_str_eq(F2("-000.000"), "0");
  ck_assert_str_eq(F2("+1000"), "1000");
}
END_TEST

START_TEST(test_parse_digit_limit) {
  mm_dec_t d;
  mm_err_t e;
  /* 38 significant digits: fine, wherever the point is */
  P("99999999999999999999999999999999999999");
  P("9.9999999999999999999999999999999999999");
  P("0.0000099999999999999999999999999999999999999");
  /* trailing and leading zeros are not significant */
  P("123456789012345678901234567890123456780000");
  P("0000000000123456789012345678901234567890123456780");
  /* 39 significant digits: rejected with a message saying so */
  const char *s39 = "123456789012345678901234567890123456789";
  ck_assert_int_eq(mm_dec_parse(&d, s39, strlen(s39), &e), MM_EINVAL);
  ck_assert_msg(strstr(e.msg, "39 significant digits") && strstr(e.msg, "at most 38"), "%s",
                e.msg);
  const char *s39b = "1.00000000000000000000000000000000000001E+5";
  ck_assert_int_eq(mm_dec_parse(&d, s39b, strlen(s39b), &e), MM_EINVAL);
  ck_assert_msg(strstr(e.msg, "39 significant digits"), "%s", e.msg);
  /* a very long one: the message quotes only a prefix */
  char longnum[400];
  memset(longnum, '7', sizeof longnum - 1);
  longnum[sizeof longnum - 1] = '\0';
  ck_assert_int_eq(mm_dec_parse(&d, longnum, strlen(longnum), &e), MM_EINVAL);
  ck_assert_msg(strstr(e.msg, "399 significant digits") && strstr(e.msg, "..."), "%s", e.msg);
  ck_assert_uint_lt(strlen(e.msg), 200);
}
END_TEST

START_TEST(test_parse_range) {
  static const char *bad[] = {"1E+126", "-1E+126", "10E+125", "1E-131",
                              "0.9E-130", "-1E-131", "1E+999999999999999", "1E-999999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    mm_dec_t d;
    mm_err_t e;
    ck_assert_msg(mm_dec_parse(&d, bad[i], strlen(bad[i]), &e) == MM_EINVAL, "%s accepted",
                  bad[i]);
    ck_assert_msg(strstr(e.msg, "out of range") != NULL, "%s: %s", bad[i], e.msg);
  }
  P("1E-130");
  P("-1E-130");
  P("9.9E+125");
  P("0.1E-129");
}
END_TEST

START_TEST(test_format_plain_vs_scientific) {
  /* 40 characters is the last plain length (sign and point included) */
  mm_dec_t d = P("-1E+38");
  ck_assert_uint_eq(strlen(F(&d)), 40);
  ck_assert_str_eq(F(&d), "-100000000000000000000000000000000000000");
  d = P("-1E+39");
  ck_assert_str_eq(F(&d), "-1E+39");
  d = P("-0.0000000000000000000000000000000000001");
  ck_assert_uint_eq(strlen(F(&d)), 40);
  d = P("-0.00000000000000000000000000000000000001");
  ck_assert_str_eq(F(&d), "-1E-38");
  d = P("1.2345E+100");
  ck_assert_str_eq(F(&d), "1.2345E+100");
  d = P("1E-130");
  ck_assert_str_eq(F(&d), "1E-130");
  mm_dec_t z;
  memset(&z, 0, sizeof z);
  z.neg = 1; /* a hand-built -0 still formats as 0 */
  ck_assert_str_eq(F(&z), "0");
}
END_TEST

/* ---- arithmetic ---- */

START_TEST(test_add_point_one_point_two) {
  mm_dec_t a = P("0.1"), b = P("0.2"), r;
  mm_err_t e;
  ck_assert_int_eq(mm_dec_add(&r, &a, &b, &e), 0);
  ck_assert_str_eq(F(&r), "0.3");
  ck_assert_int_eq(mm_dec_cmp(&r, &(mm_dec_t){0}), 1);
  mm_dec_t three = P("0.30");
  ck_assert_int_eq(mm_dec_cmp(&r, &three), 0);
}
END_TEST

START_TEST(test_add_thousand_cents) {
  mm_dec_t acc, cent = P("0.01");
  mm_err_t e;
  mm_dec_from_int(&acc, 0);
  for (int i = 0; i < 1000; i++) ck_assert_int_eq(mm_dec_add(&acc, &acc, &cent, &e), 0);
  ck_assert_str_eq(F(&acc), "10");
  for (int i = 0; i < 1000; i++) ck_assert_int_eq(mm_dec_sub(&acc, &acc, &cent, &e), 0);
  ck_assert(mm_dec_is_zero(&acc));
  ck_assert_str_eq(F(&acc), "0");
}
END_TEST

static const struct {
  const char *a, *b, *sum, *diff;
} arith_cases[] = {
    {"1", "2", "3", "-1"},
    {"-1", "1", "0", "-2"},
    {"1.5", "-1.5", "0", "3"},
    {"0", "-7.25", "-7.25", "7.25"},
    {"-0", "0", "0", "0"},
    {"1E+2", "1", "101", "99"},
    {"1.5E+60", "2.5E+60", "4E+60", "-1E+60"},
    {"1E-130", "1E-130", "2E-130", "0"},
    {"99999999999999999999999999999999999999", "1", "100000000000000000000000000000000000000",
     "99999999999999999999999999999999999998"},
    {"12345678901234567890123456789012345678", "87654321098765432109876543210987654321",
     "99999999999999999999999999999999999999", "-75308642197530864219753086421975308643"},
    {"0.1234567890123456789012345678901234567", "1E-38",
     "0.12345678901234567890123456789012345671", "0.12345678901234567890123456789012345669"},
    {"-5E+125", "-4.9E+125", "-9.9E+125", "-1E+124"},
    {"9.99", "0.01", "10", "9.98"},
};

START_TEST(test_add_sub_table) {
  for (size_t i = 0; i < sizeof arith_cases / sizeof arith_cases[0]; i++) {
    mm_dec_t a = P(arith_cases[i].a), b = P(arith_cases[i].b), r;
    mm_err_t e;
    ck_assert_msg(mm_dec_add(&r, &a, &b, &e) == 0, "%s + %s: %s", arith_cases[i].a,
                  arith_cases[i].b, e.msg);
    ck_assert_msg(strcmp(F(&r), arith_cases[i].sum) == 0, "%s + %s = %s", arith_cases[i].a,
                  arith_cases[i].b, F(&r));
    ck_assert_msg(mm_dec_sub(&r, &a, &b, &e) == 0, "%s - %s: %s", arith_cases[i].a,
                  arith_cases[i].b, e.msg);
    ck_assert_msg(strcmp(F(&r), arith_cases[i].diff) == 0, "%s - %s = %s", arith_cases[i].a,
                  arith_cases[i].b, F(&r));
    /* addition commutes */
    ck_assert_int_eq(mm_dec_add(&r, &b, &a, &e), 0);
    ck_assert_str_eq(F(&r), arith_cases[i].sum);
  }
}
END_TEST

START_TEST(test_add_limits) {
  mm_dec_t a, b, r;
  mm_err_t e;
  /* 1E+38 has one significant digit; adding 1 needs 39 */
  a = P("1E+38");
  b = P("1");
  ck_assert_int_eq(mm_dec_add(&r, &a, &b, &e), MM_EINVAL);
  ck_assert_str_eq(e.msg, "sum needs more than 38 significant digits");
  mm_dec_t minus1 = P("-1");
  ck_assert_int_eq(mm_dec_sub(&r, &a, &minus1, &e), MM_EINVAL);
  ck_assert_str_eq(e.msg, "difference needs more than 38 significant digits");
  /* while 1E+38 - 1 is 38 nines: fine */
  ck_assert_int_eq(mm_dec_sub(&r, &a, &b, &e), 0);
  ck_assert_str_eq(F(&r), "99999999999999999999999999999999999999");
  /* exponents far apart: exact alignment would need hundreds of digits */
  a = P("1E+125");
  b = P("1E-130");
  ck_assert_int_eq(mm_dec_add(&r, &a, &b, &e), MM_EINVAL);
  ck_assert(strstr(e.msg, "38 significant digits"));
  /* overflow past the largest number */
  a = P("9.9999999999999999999999999999999999999E+125");
  b = P("1E+88");
  ck_assert_int_eq(mm_dec_add(&r, &a, &b, &e), MM_EINVAL);
  ck_assert_msg(strstr(e.msg, "out of range"), "%s", e.msg);
  /* underflow below 1E-130 */
  a = P("1.5E-130");
  b = P("1.4E-130");
  ck_assert_int_eq(mm_dec_sub(&r, &a, &b, &e), MM_EINVAL);
  ck_assert_msg(strstr(e.msg, "out of range"), "%s", e.msg);
  /* a failed operation leaves out untouched */
  mm_dec_t keep = P("42"), big = P("1E+100");
  ck_assert_int_eq(mm_dec_add(&keep, &a, &big, &e), MM_EINVAL);
  ck_assert_str_eq(F(&keep), "42");
  /* an invalid hand-built struct is refused, not read out of bounds */
  mm_dec_t junk;
  memset(&junk, 0, sizeof junk);
  junk.ndig = 3;
  junk.dig[0] = 1;
  junk.dig[1] = 12;
  junk.dig[2] = 1;
  ck_assert_int_eq(mm_dec_add(&r, &junk, &b, &e), MM_EINVAL);
  /* the same against a small operand (the 64-bit path reads the digits
   * itself), on either side, and a bad leading or trailing digit */
  mm_dec_t one = P("1");
  ck_assert_int_eq(mm_dec_add(&r, &junk, &one, &e), MM_EINVAL);
  ck_assert_msg(strstr(e.msg, "invalid decimal"), "%s", e.msg);
  ck_assert_int_eq(mm_dec_sub(&r, &one, &junk, &e), MM_EINVAL);
  junk.dig[1] = 1;
  junk.dig[0] = 10;
  ck_assert_int_eq(mm_dec_add(&r, &one, &junk, &e), MM_EINVAL);
  junk.dig[0] = 1;
  junk.dig[2] = 255;
  ck_assert_int_eq(mm_dec_add(&r, &junk, &one, &e), MM_EINVAL);
}
END_TEST

START_TEST(test_add_aliasing) {
  mm_dec_t a = P("1.25"), r;
  mm_err_t e;
  ck_assert_int_eq(mm_dec_add(&a, &a, &a, &e), 0);
  ck_assert_str_eq(F(&a), "2.5");
  ck_assert_int_eq(mm_dec_sub(&a, &a, &a, &e), 0);
  ck_assert_str_eq(F(&a), "0");
  a = P("3");
  r = P("0.5");
  ck_assert_int_eq(mm_dec_sub(&r, &a, &r, &e), 0);
  ck_assert_str_eq(F(&r), "2.5");
}
END_TEST

START_TEST(test_cmp) {
  static const struct {
    const char *a, *b;
    int want;
  } c[] = {
      {"0", "-0", 0},       {"1", "2", -1},         {"-1", "-2", 1},
      {"10", "9", 1},       {"0.3", "0.30", 0},     {"1E+2", "100", 0},
      {"-0.001", "0", -1},  {"0", "1E-130", -1},    {"1E+125", "9.9E+124", 1},
      {"1.5", "1.49", 1},   {"1.49", "1.5", -1},    {"-1.5", "-1.49", -1},
      {"12345678901234567890123456789012345678", "12345678901234567890123456789012345679", -1},
  };
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
    mm_dec_t a = P(c[i].a), b = P(c[i].b);
    ck_assert_msg(mm_dec_cmp(&a, &b) == c[i].want, "cmp(%s, %s)", c[i].a, c[i].b);
    ck_assert_int_eq(mm_dec_cmp(&b, &a), -c[i].want);
  }
}
END_TEST

/* ---- conversions ---- */

START_TEST(test_from_double) {
  static const struct {
    double v;
    const char *text;
  } c[] = {
      {0.1, "0.1"},
      {0.1 + 0.2, "0.30000000000000004"},
      {1.0 / 3.0, "0.3333333333333333"},
      {-0.0, "0"},
      {0.0, "0"},
      {100.0, "100"},
      {1e21, "1000000000000000000000"},
      {123.456, "123.456"},
      {9007199254740993.0, "9007199254740992"},
      {-2.5e-7, "-0.00000025"},
      {1e-130, "1E-130"},
      {1.5e125, "1.5E+125"},
  };
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
    mm_dec_t d;
    mm_err_t e;
    ck_assert_msg(mm_dec_from_double(&d, c[i].v, &e) == 0, "%.17g: %s", c[i].v, e.msg);
    ck_assert_msg(strcmp(F(&d), c[i].text) == 0, "%.17g -> %s", c[i].v, F(&d));
    ck_assert(mm_dec_to_double(&d) == c[i].v);
  }
  double bad[] = {NAN, INFINITY, -INFINITY, 1e300, -1e200, 5e-324, 1e-131, 1e126};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    mm_dec_t d;
    mm_err_t e;
    ck_assert_msg(mm_dec_from_double(&d, bad[i], &e) == MM_EINVAL, "%g accepted", bad[i]);
  }
  mm_dec_t d;
  mm_err_t e;
  mm_dec_from_double(&d, NAN, &e);
  ck_assert_msg(strstr(e.msg, "NaN"), "%s", e.msg);
}
END_TEST

/* Random doubles across the range: the text is the shortest that reads
 * back (no shorter %g precision does) and it round-trips. */
START_TEST(test_from_double_shortest_property) {
  rng_state = 12345;
  int checked = 0;
  for (int i = 0; i < 20000; i++) {
    uint64_t bits = rnd();
    double v;
    memcpy(&v, &bits, sizeof v);
    if (!isfinite(v) || v == 0 || fabs(v) < 1e-130 || fabs(v) >= 1e125) continue;
    mm_dec_t d;
    mm_err_t e;
    ck_assert_int_eq(mm_dec_from_double(&d, v, &e), 0);
    ck_assert(mm_dec_to_double(&d) == v);
    ck_assert_int_le(d.ndig, 17);
    if (d.ndig > 1) {
      char shorter[400];
      snprintf(shorter, sizeof shorter, "%.*g", d.ndig - 1, v);
      ck_assert_msg(strtod(shorter, NULL) != v, "%.17g: %s reads back too", v, shorter);
    }
    checked++;
  }
  ck_assert_int_gt(checked, 1000);
}
END_TEST

START_TEST(test_from_int_and_to_int64) {
  static const int64_t v[] = {0, 1, -1, 10, -100, 1234567890123LL, INT64_MAX, INT64_MIN,
                              1000000000000000000LL};
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    mm_dec_t d;
    char want[32];
    mm_dec_from_int(&d, v[i]);
    snprintf(want, sizeof want, "%lld", (long long)v[i]);
    ck_assert_str_eq(F(&d), want);
    int64_t back = 7;
    ck_assert(mm_dec_to_int64(&d, &back));
    ck_assert(back == v[i]);
    mm_dec_t p = P(want);
    ck_assert_int_eq(mm_dec_cmp(&p, &d), 0);
  }
  int64_t out;
  mm_dec_t d = P("9223372036854775808");
  ck_assert(!mm_dec_to_int64(&d, &out));
  d = P("-9223372036854775809");
  ck_assert(!mm_dec_to_int64(&d, &out));
  d = P("1.5");
  ck_assert(!mm_dec_to_int64(&d, &out));
  d = P("1E+19");
  ck_assert(!mm_dec_to_int64(&d, &out));
  d = P("1E+18");
  ck_assert(mm_dec_to_int64(&d, &out));
  ck_assert(out == 1000000000000000000LL);
  d = P("-0");
  ck_assert(mm_dec_to_int64(&d, &out));
  ck_assert(out == 0);
  d = P("1E+100");
  ck_assert(!mm_dec_to_int64(&d, &out));
}
END_TEST

static double D(const char *s) {
  mm_dec_t d = P(s);
  return mm_dec_to_double(&d);
}

START_TEST(test_to_double) {
  ck_assert(D("0.1") == 0.1);
  ck_assert(D("-1.5E+60") == -1.5e60);
  ck_assert(D("1E-130") == 1e-130);
  ck_assert(D("0") == 0.0);
  /* correctly rounded: 38 digits to the nearest double */
  /* the midpoint between 0.3 and the next double is
   * 0.3000000000000000166533453693773481063544750213623046875 */
  ck_assert(D("0.3000000000000000166533453693773481") == 0.3);
  ck_assert(D("0.3000000000000000166533453693773482") == 0.1 + 0.2);
  ck_assert(D("9007199254740993") == 9007199254740992.0);
}
END_TEST

/* ---- properties against integer arithmetic ---- */

/* a = A * 10^-ka, b = B * 10^-kb with |A|, |B| < 2^50 and k <= 20: sums,
 * differences and comparisons match __int128 arithmetic after alignment,
 * and every text reads back as the same value. */
START_TEST(test_property_vs_int128) {
  rng_state = 20240601;
  for (int i = 0; i < 20000; i++) {
    int64_t A = (int64_t)(rnd() >> 14) - ((int64_t)1 << 49);
    int64_t B = (int64_t)(rnd() >> 14) - ((int64_t)1 << 49);
    if (i % 7 == 0) B = -A; /* exact cancellation */
    if (i % 11 == 0) B = 0;
    int ka = (int)(rnd() % 21), kb = (int)(rnd() % 21);
    char ta[96], tb[96], want[96];
    oracle_text(A, ka, ta);
    oracle_text(B, kb, tb);
    mm_dec_t a = P(ta), b = P(tb), r;
    ck_assert_str_eq(F(&a), ta);
    ck_assert_str_eq(F(&b), tb);
    int k = ka > kb ? ka : kb;
    __int128 xa = (__int128)A * pow10_128(k - ka), xb = (__int128)B * pow10_128(k - kb);
    mm_err_t e;
    ck_assert_int_eq(mm_dec_add(&r, &a, &b, &e), 0);
    oracle_text(xa + xb, k, want);
    ck_assert_msg(strcmp(F(&r), want) == 0, "%s + %s = %s, want %s", ta, tb, F(&r), want);
    ck_assert_int_eq(mm_dec_sub(&r, &a, &b, &e), 0);
    oracle_text(xa - xb, k, want);
    ck_assert_msg(strcmp(F(&r), want) == 0, "%s - %s = %s, want %s", ta, tb, F(&r), want);
    int c = xa < xb ? -1 : xa > xb;
    ck_assert_msg(mm_dec_cmp(&a, &b) == c, "cmp(%s, %s)", ta, tb);
  }
}
END_TEST

/* A random decimal for the running-sum test: money, long coefficients
 * around the 18-digit limit of the 64-bit form, 38 digits, exponents near
 * both ends of the range, and zero. */
static mm_dec_t acc_operand(void) {
  char t[128];
  int kind = (int)(rnd() % 8);
  int nd = kind == 0 ? 1 + (int)(rnd() % 6)
         : kind <= 2 ? 15 + (int)(rnd() % 6)  /* 15..20 */
         : kind == 3 ? 38
                     : 1 + (int)(rnd() % 12);
  int exp = kind <= 3 ? -(int)(rnd() % 4)
          : kind == 4 ? -130 - (int)(rnd() % 8) + (int)(rnd() % 4) /* the low end */
          : kind == 5 ? 125 - nd + 1 - (int)(rnd() % 3)            /* the high end */
          : kind == 6 ? (int)(rnd() % 41) - 20
                      : -2;
  size_t n = 0;
  if (rnd() % 3 == 0) t[n++] = '-';
  t[n++] = (char)('1' + rnd() % 9);
  for (int k = 1; k < nd; k++) t[n++] = (char)('0' + rnd() % 10);
  if (rnd() % 16 == 0) n = 1, t[0] = '0';
  snprintf(t + n, sizeof t - n, "E%d", exp);
  mm_dec_t d;
  mm_err_t e;
  if (mm_dec_parse(&d, t, strlen(t), &e)) mm_dec_from_int(&d, 7); /* out of range */
  return d;
}

/* mm_dec_acc_t against mm_dec_add step by step: the same sum, the same
 * failures with the same messages, a failed step changing nothing. */
START_TEST(test_running_sum_matches_add) {
  rng_state = 99;
  int fails = 0, small_steps = 0;
  for (int seq = 0; seq < 4000; seq++) {
    mm_dec_t ref = acc_operand();
    mm_dec_acc_t acc;
    mm_dec_acc_init(&acc, &ref);
    int len = 1 + (int)(rnd() % 40);
    for (int i = 0; i < len; i++) {
      mm_dec_t x = acc_operand(), want, got;
      if (seq % 5 == 0) { /* cancellation and 18-digit carries */
        x = ref;
        x.neg = !x.neg;
        if (rnd() % 2) x = acc_operand();
      }
      mm_err_t ea, eb;
      mm_err_clear(&ea);
      mm_err_clear(&eb);
      int was_small = acc.small;
      int ra = mm_dec_acc_add(&acc, &x, &ea), rb = mm_dec_add(&want, &ref, &x, &eb);
      ck_assert_int_eq(ra, rb);
      if (rb) {
        ck_assert_str_eq(ea.msg, eb.msg);
        fails++;
      } else {
        ref = want;
        small_steps += was_small && acc.small;
      }
      mm_dec_acc_get(&acc, &got);
      ck_assert_msg(memcmp(&got, &ref, sizeof got) == 0, "seq %d step %d: %s, want %s", seq, i,
                    F(&got), F(&ref));
    }
  }
  ck_assert_int_gt(fails, 100);       /* the limits were reached */
  ck_assert_int_gt(small_steps, 1000); /* and the 64-bit form used */
  /* cents summed 100,000 times stay in the 64-bit form, exactly */
  mm_dec_t c = P("0.01"), sum;
  mm_dec_acc_t acc;
  mm_dec_acc_init(&acc, &c);
  mm_err_t e;
  for (int i = 1; i < 100000; i++) ck_assert_int_eq(mm_dec_acc_add(&acc, &c, &e), 0);
  ck_assert(acc.small);
  mm_dec_acc_get(&acc, &sum);
  ck_assert_str_eq(F(&sum), "1000");
  /* an invalid hand-built addend is refused like mm_dec_add refuses it */
  mm_dec_t junk = P("123");
  junk.dig[1] = 12;
  ck_assert_int_eq(mm_dec_acc_add(&acc, &junk, &e), MM_EINVAL);
  ck_assert_msg(strstr(e.msg, "invalid decimal"), "%s", e.msg);
  mm_dec_acc_get(&acc, &sum);
  ck_assert_str_eq(F(&sum), "1000");
}
END_TEST

/* mm_dec_add_text against parse + mm_dec_add + format: whenever the fast
 * path answers, the same text; it must answer for the usual stored sums. */
START_TEST(test_add_text_matches_general) {
  rng_state = 31337;
  int fast = 0;
  for (int i = 0; i < 200000; i++) {
    char t[64];
    size_t n = 0;
    int r = (int)(rnd() % 10);
    if (r == 0) t[n++] = '-';
    if (r == 1) t[n++] = '+';
    int nint = 1 + (int)(rnd() % 12), nfrac = rnd() % 2 ? (int)(rnd() % 9) : 0;
    if (rnd() % 8 == 0) nint = 1 + (int)(rnd() % 20); /* around the 18-digit edge */
    for (int k = 0; k < nint; k++) t[n++] = (char)('0' + (rnd() % 3 ? rnd() % 10 : 0));
    if (nfrac) {
      t[n++] = '.';
      for (int k = 0; k < nfrac; k++) t[n++] = (char)('0' + (rnd() % 3 ? rnd() % 10 : 0));
    }
    if (rnd() % 50 == 0) n += (size_t)snprintf(t + n, sizeof t - n, "E%d", (int)(rnd() % 9) - 4);
    t[n] = '\0';
    mm_dec_t d = rnd() % 4 ? acc_operand() : P(t); /* also x + x, x - x */
    if (rnd() % 8 == 0) d.neg = !d.neg && d.ndig;
    char got[MM_DEC_TEXT_MAX];
    size_t gn = mm_dec_add_text(t, n, &d, got);
    if (!gn) continue;
    fast++;
    mm_dec_t o, sum;
    mm_err_t e;
    ck_assert_int_eq(mm_dec_parse(&o, t, n, &e), 0);
    ck_assert_msg(mm_dec_add(&sum, &o, &d, &e) == 0, "%s + %s: fast %s, general %s", t, F(&d),
                  got, e.msg);
    ck_assert_msg(strcmp(got, F(&sum)) == 0, "%s + %s: fast %s, general %s", t, F(&d), got,
                  F(&sum));
    ck_assert_uint_eq(gn, strlen(got));
  }
  ck_assert_int_gt(fast, 50000);
  /* the benchmark's case, and what the fast path leaves to the general one */
  char b[MM_DEC_TEXT_MAX];
  mm_dec_t c = P("812.36");
  ck_assert_uint_eq(mm_dec_add_text("12345.6", 7, &c, b), 8);
  ck_assert_str_eq(b, "13157.96");
  c = P("-12345.6");
  ck_assert_uint_eq(mm_dec_add_text("12345.6", 7, &c, b), 1);
  ck_assert_str_eq(b, "0");
  ck_assert_uint_eq(mm_dec_add_text("1E+3", 4, &c, b), 0);                  /* exponent */
  ck_assert_uint_eq(mm_dec_add_text("1234567890123456789", 19, &c, b), 0);  /* 19 digits */
  ck_assert_uint_eq(mm_dec_add_text("5.", 2, &c, b), 0);                    /* malformed */
  ck_assert_uint_eq(mm_dec_add_text("", 0, &c, b), 0);
  c = P("1E-40");
  ck_assert_uint_eq(mm_dec_add_text("0", 1, &c, b), 0); /* exponents 40 apart */
}
END_TEST

/* Random integers of up to 38 digits (below 5E+37 so sums stay within 38
 * digits), shifted by a shared random exponent: exact sums. */
START_TEST(test_property_38_digits) {
  rng_state = 77;
  const unsigned __int128 lim = (unsigned __int128)pow10_128(37) * 5;
  int checked = 0;
  for (int i = 0; i < 5000; i++) {
    unsigned __int128 x = ((unsigned __int128)rnd() << 64 | rnd()) % lim;
    unsigned __int128 y = ((unsigned __int128)rnd() << 64 | rnd()) % lim;
    int shift = (int)(rnd() % 219) - 130; /* exponent applied to both */
    char tx[96], ty[96], tsum[96], sx[128], sy[128], ssum[128];
    oracle_text((__int128)x, 0, tx);
    oracle_text((__int128)y, 0, ty);
    oracle_text((__int128)(x + y), 0, tsum);
    snprintf(sx, sizeof sx, "%sE%d", tx, shift);
    snprintf(sy, sizeof sy, "%sE%d", ty, shift);
    snprintf(ssum, sizeof ssum, "%sE%d", tsum, shift);
    mm_dec_t a, b, r;
    mm_err_t e;
    if (mm_dec_parse(&a, sx, strlen(sx), &e) || mm_dec_parse(&b, sy, strlen(sy), &e))
      continue; /* out of range after the shift (tiny x or y) */
    mm_dec_t want = P(ssum);
    ck_assert_int_eq(mm_dec_add(&r, &a, &b, &e), 0);
    ck_assert_msg(mm_dec_cmp(&r, &want) == 0, "%s + %s = %s", sx, sy, F(&r));
    ck_assert_str_eq(F(&r), F(&want));
    ck_assert_int_eq(mm_dec_sub(&r, &r, &b, &e), 0);
    ck_assert_msg(mm_dec_cmp(&r, &a) == 0, "(%s + %s) - %s = %s", sx, sy, sy, F(&r));
    checked++;
  }
  ck_assert_int_gt(checked, 4000);
}
END_TEST

/* mm_dec_from_double's fast path (amounts, m / 10^k) gives exactly what the
 * general path gives: the shortest "%.Ng" text that reads back, parsed.
 * The reference is that loop, written out here. */
START_TEST(test_from_double_fast_path_vs_shortest) {
  rng_state = 77;
  int compared = 0;
  for (int i = 0; i < 20000; i++) {
    uint64_t r = rnd();
    double x;
    switch (i % 4) {
    case 0: x = (double)(r % 100000000) / (i % 8 ? 100.0 : 1.0); break;
    case 1: x = (double)(r % 1000000000000000ull) / pow(10, (double)(rnd() % 23)); break;
    case 2: x = (r % 2 ? 1e15 : 1e-7) * (1 + ((double)(rnd() % 2001) - 1000) * 1e-16); break;
    default: x = (double)(r % 1000) / 10 + (double)(rnd() % 1000) / 100; break;
    }
    if (r % 3 == 0) x = -x;
    char tmp[40];
    for (int prec = 15; prec <= 17; prec++) {
      snprintf(tmp, sizeof tmp, "%.*g", prec, x);
      if (strtod(tmp, NULL) == x) break;
    }
    mm_dec_t want, got;
    ck_assert_int_eq(mm_dec_parse(&want, tmp, strlen(tmp), NULL), 0);
    ck_assert_int_eq(mm_dec_from_double(&got, x, NULL), 0);
    ck_assert_msg(got.neg == want.neg && got.exp == want.exp && got.ndig == want.ndig &&
                      memcmp(got.dig, want.dig, (size_t)want.ndig) == 0,
                  "%.17g: fast path differs from \"%s\"", x, tmp);
    compared++;
  }
  ck_assert_int_eq(compared, 20000);
}
END_TEST

Suite *decimal_suite(void) {
  Suite *s = suite_create("decimal");
  TCase *tc = tcase_create("parse_format");
  tcase_add_test(tc, test_parse_canonical);
  tcase_add_test(tc, test_parse_struct);
  tcase_add_test(tc, test_parse_garbage);
  tcase_add_test(tc, test_parse_fast_path_vs_general);
  tcase_add_test(tc, test_parse_digit_limit);
  tcase_add_test(tc, test_parse_range);
  tcase_add_test(tc, test_format_plain_vs_scientific);
  suite_add_tcase(s, tc);
  tc = tcase_create("arithmetic");
  tcase_add_test(tc, test_add_point_one_point_two);
  tcase_add_test(tc, test_add_thousand_cents);
  tcase_add_test(tc, test_add_sub_table);
  tcase_add_test(tc, test_add_limits);
  tcase_add_test(tc, test_add_aliasing);
  tcase_add_test(tc, test_cmp);
  suite_add_tcase(s, tc);
  tc = tcase_create("conversions");
  tcase_add_test(tc, test_from_double_fast_path_vs_shortest);
  tcase_add_test(tc, test_from_double);
  tcase_add_test(tc, test_from_double_shortest_property);
  tcase_add_test(tc, test_from_int_and_to_int64);
  tcase_add_test(tc, test_to_double);
  suite_add_tcase(s, tc);
  tc = tcase_create("properties");
  tcase_add_test(tc, test_property_vs_int128);
  tcase_add_test(tc, test_property_38_digits);
  tcase_add_test(tc, test_running_sum_matches_add);
  tcase_add_test(tc, test_add_text_matches_general);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return tu_run_suite(decimal_suite());
}

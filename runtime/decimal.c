/*
 * decimal.c - exact decimals with DynamoDB's limits (see decimal.h).
 *
 * A value is a sign, up to 38 coefficient digits without leading or
 * trailing zeros, and a power-of-ten exponent. Because DynamoDB bounds both
 * the digits (38) and the magnitude (1E-130 .. <1E+126), every digit of a
 * valid value sits at a decimal position between 10^-167 and 10^125. The
 * arithmetic therefore works on a fixed positional digit array covering
 * that span (plus one for a carry): exact, and no bignum code is needed.
 */
#include "decimal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

/* Lowest decimal position a valid digit can occupy: a 38-digit number whose
 * leading digit is at 10^-130. */
#define POS_LO (MM_DEC_MIN_EXP - (MM_DEC_DIGITS - 1))
/* Highest position a sum can reach: the carry above 10^125. */
#define POS_HI (MM_DEC_MAX_EXP + 1)
#define POS_WIDTH (POS_HI - POS_LO + 1)
/* Longest plain-notation text before switching to scientific. */
#define PLAIN_MAX 40
/* Input shown in error messages is cut to this many bytes. */
#define QUOTE_MAX 48

/* ------------------------------------------------------------------ */
/* helpers                                                              */
/* ------------------------------------------------------------------ */

/* Copies at most QUOTE_MAX bytes of s into out (printable ASCII kept, other
 * bytes as '?'), adding "..." when cut, so messages stay short and clean. */
static void quote(char out[QUOTE_MAX + 4], const char *s, size_t len) {
  size_t n = len < QUOTE_MAX ? len : QUOTE_MAX;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    out[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
  }
  if (len > QUOTE_MAX) {
    memcpy(out + n, "...", 3);
    n += 3;
  }
  out[n] = '\0';
}

/* Exponent of the leading digit (a nonzero value lies in
 * [10^adj, 10^(adj+1))). */
static long adjusted(const mm_dec_t *a) { return (long)a->exp + a->ndig - 1; }

/* The constant-time part of dec_valid: digit count, no leading or
 * trailing zero digit, range. */
static int dec_shape_ok(const mm_dec_t *a) {
  if (a->ndig == 0) return 1;
  if (a->ndig < 0 || a->ndig > MM_DEC_DIGITS) return 0;
  if (a->dig[0] == 0 || a->dig[a->ndig - 1] == 0) return 0;
  long adj = adjusted(a);
  return adj >= MM_DEC_MIN_EXP && adj <= MM_DEC_MAX_EXP;
}

/* 1 when a respects the mm_dec_t invariants and DynamoDB's limits. Guards
 * the arithmetic against structs built by hand. */
static int dec_valid(const mm_dec_t *a) {
  if (!dec_shape_ok(a)) return 0;
  for (int i = 0; i < a->ndig; i++)
    if (a->dig[i] > 9) return 0;
  return 1;
}

/* Compares |a| and |b| (both nonzero): -1, 0, 1. */
static int cmp_mag(const mm_dec_t *a, const mm_dec_t *b) {
  long ea = adjusted(a), eb = adjusted(b);
  if (ea != eb) return ea < eb ? -1 : 1;
  int n = a->ndig < b->ndig ? a->ndig : b->ndig;
  for (int i = 0; i < n; i++)
    if (a->dig[i] != b->dig[i]) return a->dig[i] < b->dig[i] ? -1 : 1;
  if (a->ndig != b->ndig) return a->ndig < b->ndig ? -1 : 1;
  return 0;
}

static void set_zero(mm_dec_t *out) {
  memset(out, 0, sizeof *out);
}

/* 10^0 .. 10^19: every power of ten a uint64_t holds. */
static const uint64_t U64_POW10[20] = {
  1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull, 10000000ull,
  100000000ull, 1000000000ull, 10000000000ull, 100000000000ull, 1000000000000ull,
  10000000000000ull, 100000000000000ull, 1000000000000000ull,
  10000000000000000ull, 100000000000000000ull, 1000000000000000000ull,
  10000000000000000000ull
};

/* "00".."99": two digits per division when writing a coefficient out. */
static const uint8_t DIGIT_PAIRS[200] = {
#define P10(t) t,0, t,1, t,2, t,3, t,4, t,5, t,6, t,7, t,8, t,9
  P10(0), P10(1), P10(2), P10(3), P10(4), P10(5), P10(6), P10(7), P10(8), P10(9)
#undef P10
};

/*
 * out = (neg ? -1 : 1) * m * 10^exp, normalised: trailing zeros of m move
 * into the exponent, digits are written most significant first straight
 * into place (two per division). Range is the caller's to check. The
 * digits of every integer, sum and short double pass through here.
 */
static void set_from_u64(mm_dec_t *out, int neg, uint64_t m, int exp) {
  set_zero(out);
  if (m == 0) return;
  while (m % 10 == 0) {
    m /= 10;
    exp++;
  }
  /* digits: t = bits * log10(2) (1233/4096) is the count or one more
   * than floor(log10(m)); one comparison decides (Bit Twiddling Hacks) */
  int t = (64 - __builtin_clzll(m)) * 1233 >> 12; /* 0..19 */
  int n = t + (m >= U64_POW10[t]);
  out->neg = neg;
  out->exp = exp;
  out->ndig = n;
  int i = n;
  while (m >= 100) {
    unsigned pair = (unsigned)(m % 100) * 2;
    m /= 100;
    out->dig[--i] = DIGIT_PAIRS[pair + 1];
    out->dig[--i] = DIGIT_PAIRS[pair];
  }
  if (m >= 10) {
    out->dig[--i] = (uint8_t)(m % 10);
    m /= 10;
  }
  out->dig[--i] = (uint8_t)m;
}

/* ------------------------------------------------------------------ */
/* parsing                                                              */
/* ------------------------------------------------------------------ */

/* Reads plain text "[+-]digits[.digits]" of at most max_digits digits
 * (max_digits <= 19, so they fit a uint64_t) into *neg, *m and *nfrac
 * (digits after the point). Returns 0 for anything else. */
static int scan_plain(const char *s, size_t len, size_t max_digits, int *neg, uint64_t *m,
                      size_t *nfrac) {
  size_t i = 0;
  *neg = 0;
  if (i < len && (s[i] == '+' || s[i] == '-')) *neg = s[i++] == '-';
  size_t start = i;
  uint64_t v = 0;
  while (i < len && (unsigned)(s[i] - '0') <= 9) v = v * 10 + (uint64_t)(s[i++] - '0');
  size_t nint = i - start, nf = 0;
  if (nint == 0) return 0;
  if (i < len && s[i] == '.') {
    size_t fs = ++i;
    while (i < len && (unsigned)(s[i] - '0') <= 9) v = v * 10 + (uint64_t)(s[i++] - '0');
    nf = i - fs;
    if (nf == 0) return 0;
  }
  if (i != len || nint + nf > max_digits) return 0;
  *m = v;
  *nfrac = nf;
  return 1;
}

/*
 * mm_dec_parse's fast path: plain text ([+-]digits[.digits], no exponent)
 * of at most 19 digits, what the stores keep and most numbers are, read
 * straight into a uint64_t. Such a value always has at most 19
 * significant digits and a magnitude between 1E-19 and 1E+19, so no limit
 * can be hit. Returns 0 for anything else (an exponent, more digits, or
 * text that does not parse), which takes the general path and its
 * messages.
 */
static int parse_fast(mm_dec_t *out, const char *s, size_t len) {
  int neg;
  uint64_t m;
  size_t nfrac;
  if (!scan_plain(s, len, 19, &neg, &m, &nfrac)) return 0;
  set_from_u64(out, neg, m, -(int)nfrac);
  return 1;
}

/*
 * Grammar: [+-] digits [ '.' digits ] [ (e|E) [+-] digits ]. Leading zeros
 * are accepted ("007"); ".5" and "5." are not. Significant digits are
 * counted after dropping leading and trailing zeros, so "1000" has one and
 * "1.50" is 1.5. Zero ("-0", "0.000", "0E+999") is always in range and has
 * no sign.
 */
int mm_dec_parse(mm_dec_t *out, const char *s, size_t len, mm_err_t *err) {
  if (s && parse_fast(out, s, len)) return 0;
  char q[QUOTE_MAX + 4];
  const char *why = NULL;
  size_t i = 0;
  int neg = 0;
  set_zero(out);
  if (!s) len = 0;
  if (i < len && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
  size_t int_start = i;
  while (i < len && s[i] >= '0' && s[i] <= '9') i++;
  size_t int_end = i;
  if (int_end == int_start) {
    why = i < len && s[i] == '.' ? "a digit is needed before '.'" : "expected a digit";
    goto bad;
  }
  size_t frac_start = i, frac_end = i;
  if (i < len && s[i] == '.') {
    frac_start = ++i;
    while (i < len && s[i] >= '0' && s[i] <= '9') i++;
    frac_end = i;
    if (frac_end == frac_start) {
      why = "expected a digit after '.'";
      goto bad;
    }
  }
  long long e = 0; /* written exponent, clamped: it only matters in range */
  if (i < len && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    int eneg = 0;
    if (i < len && (s[i] == '+' || s[i] == '-')) eneg = s[i++] == '-';
    size_t exp_start = i;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
      if (e < 1000000000LL) e = e * 10 + (s[i] - '0');
      i++;
    }
    if (i == exp_start) {
      why = "expected a digit in the exponent";
      goto bad;
    }
    if (eneg) e = -e;
  }
  if (i != len) {
    why = "unexpected character";
    goto bad;
  }

  /* The digits are int digits then frac digits; value = D * 10^(e - nfrac). */
  size_t nint = int_end - int_start, nfrac = frac_end - frac_start;
  size_t total = nint + nfrac;
#define DIGIT_AT(k) ((k) < nint ? s[int_start + (k)] : s[frac_start + (k) - nint])
  size_t first = 0;
  while (first < total && DIGIT_AT(first) == '0') first++;
  if (first == total) return 0; /* zero: no sign, no range */
  size_t last = total - 1;
  while (DIGIT_AT(last) == '0') last--;
  size_t nsig = last - first + 1;
  if (nsig > MM_DEC_DIGITS) {
    quote(q, s, len);
    return mm_err_set(err, MM_EINVAL,
                      "number \"%s\" has %zu significant digits; DynamoDB numbers "
                      "keep at most %d",
                      q, nsig, MM_DEC_DIGITS);
  }
  /* exponent of the last significant digit */
  long long exp = e - (long long)nfrac + (long long)(total - 1 - last);
  long long adj = exp + (long long)nsig - 1;
  if (adj < MM_DEC_MIN_EXP || adj > MM_DEC_MAX_EXP) {
    quote(q, s, len);
    return mm_err_set(err, MM_EINVAL,
                      "number \"%s\" is out of range: DynamoDB numbers have a "
                      "magnitude between 1E-130 and "
                      "9.9999999999999999999999999999999999999E+125",
                      q);
  }
  out->neg = neg;
  out->exp = (int)exp;
  out->ndig = (int)nsig;
  for (size_t k = 0; k < nsig; k++) out->dig[k] = (uint8_t)(DIGIT_AT(first + k) - '0');
#undef DIGIT_AT
  return 0;
bad:
  quote(q, s ? s : "", len);
  set_zero(out);
  return mm_err_set(err, MM_EINVAL, "invalid number \"%s\": %s at offset %zu", q, why, i);
}

/* The powers of ten a double holds exactly (decimal.h). */
const double MM_POW10[23] = {
  1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
  1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22
};

/*
 * mm_dec_from_double's fast path: its result, found without printf/strtod,
 * for the values sums see most (amounts like 812.36): returns 1 when v, nonzero, has a
 * decimal of at most 15 significant digits and at most 22 fraction digits
 * that reads back as v. Such a decimal is the only one of at most 15
 * digits that does (two of them differ by more than v's rounding), so it
 * is exactly what the general path's "%.15g" finds. The smallest k
 * whose m = round(|v| * 10^k) reads back (m / 10^k: both exact, one
 * correctly rounded division, as strtod rounds) gives it. Returns 0 for
 * everything else, which takes the general path.
 */
static int dec_from_double_fast(mm_dec_t *out, double v) {
  double a = fabs(v);
  if (!(a >= 1e-7 && a < 1e15)) return 0; /* also zero, NaN, inf */
  for (int k = 0; k <= 22; k++) {
    double x = a * MM_POW10[k];
    if (x >= 1e15) return 0; /* 16 or more digits: not ours */
    /* nearbyint(x) for 0 <= x < 2^52: adding 2^52 leaves no fraction
     * bits, so the sum is rounded to an integer in the current rounding
     * mode, exactly as nearbyint rounds, without the libm call. */
    double r = (x + 0x1p52) - 0x1p52;
    if (r / MM_POW10[k] != a) continue;
    set_from_u64(out, v < 0, (uint64_t)r, -k);
    return 1;
  }
  return 0;
}

/*
 * The shortest "%.Ng" (N <= 17) that strtod reads back as v is the
 * shortest round-trip text; 17 digits always suffice for a double. That
 * text is then parsed, so a double outside DynamoDB's range is rejected
 * with the parser's message.
 */
int mm_dec_from_double(mm_dec_t *out, double v, mm_err_t *err) {
  char tmp[40];
  set_zero(out);
  if (!isfinite(v))
    return mm_err_set(err, MM_EINVAL, "number %s cannot be stored: DynamoDB numbers "
                                      "are finite",
                      isnan(v) ? "NaN" : (v > 0 ? "inf" : "-inf"));
  /* %g drops trailing zeros, so when any text of at most 15 significant
   * digits reads back as v, "%.15g" prints exactly that text: v lies within
   * 2^-53 |v| of it, less than half a unit of the 15th digit. Only values
   * that need more digits (0.1 + 0.2) try 16, then 17. */
  if (dec_from_double_fast(out, v)) return 0;
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*g", prec, v);
    if (strtod(tmp, NULL) == v) break;
  }
  return mm_dec_parse(out, tmp, strlen(tmp), err);
}

/* Digits of |v| (in unsigned arithmetic, so INT64_MIN works), trailing
 * zeros moved into the exponent. Any int64 fits 38 digits. */
void mm_dec_from_int(mm_dec_t *out, int64_t v) {
  /* magnitude in unsigned arithmetic so INT64_MIN works */
  uint64_t m = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  set_from_u64(out, v < 0, m, 0);
}

/* ------------------------------------------------------------------ */
/* arithmetic                                                           */
/* ------------------------------------------------------------------ */

/* Spreads a's digits over the positional array p (p[0] is 10^POS_LO). */
static void spread(uint8_t p[POS_WIDTH], const mm_dec_t *a) {
  int top = a->exp + a->ndig - 1 - POS_LO;
  for (int k = 0; k < a->ndig; k++) p[top - k] = a->dig[k];
}

/* a's coefficient (at most 18 digits), or UINT64_MAX when a digit is not
 * 0-9 (a struct built by hand: the general path rejects it). Checking
 * here spares the small path dec_valid's own pass over the digits. */
static uint64_t coef_small(const mm_dec_t *a) {
  uint64_t c = 0;
  unsigned bad = 0;
  for (int k = 0; k < a->ndig; k++) {
    unsigned d = a->dig[k];
    bad |= d > 9;
    c = c * 10 + d;
  }
  return bad ? UINT64_MAX : c;
}

/* x's coefficient when x is well formed with at most 18 digits (0-9
 * each), else UINT64_MAX: the operands the 64-bit paths take. */
static uint64_t coef18(const mm_dec_t *x) {
  if (x->ndig > 18 || !dec_shape_ok(x)) return UINT64_MAX;
  return coef_small(x);
}

/* The magnitude of (aneg ? -a : a) + (bneg ? -b : b), its sign in *neg,
 * for a, b below 10^18 (no overflow): the larger minus the smaller when
 * the signs differ. */
static uint64_t add_signed(int aneg, uint64_t a, int bneg, uint64_t b, int *neg) {
  if (aneg == bneg) {
    *neg = aneg;
    return a + b;
  }
  *neg = a >= b ? aneg : bneg;
  return a >= b ? a - b : b - a;
}

/*
 * The common case in 64-bit integers: both coefficients, aligned to the
 * smaller exponent, fit 18 digits (money, counts), so the exact result
 * fits an int64. Returns 1 when it computed out, 0 to take the general
 * path (which also produces the range errors).
 */
static int addsub_small(mm_dec_t *out, const mm_dec_t *a, const mm_dec_t *b, int bneg) {
  int e = a->exp < b->exp ? a->exp : b->exp;
  int sa = a->exp - e, sb = b->exp - e;
  if (a->ndig + sa > 18 || b->ndig + sb > 18) return 0;
  uint64_t ca = coef_small(a), cb = coef_small(b);
  if (ca == UINT64_MAX || cb == UINT64_MAX) return 0;
  ca *= U64_POW10[sa]; /* both < 10^18 now */
  cb *= U64_POW10[sb];
  int neg;
  uint64_t m = add_signed(a->neg, ca, bneg, cb, &neg); /* |a + b| < 2e18 */
  mm_dec_t t;
  set_from_u64(&t, neg, m, e); /* zero has no sign */
  if (t.ndig && (adjusted(&t) > MM_DEC_MAX_EXP || adjusted(&t) < MM_DEC_MIN_EXP)) return 0;
  *out = t;
  return 1;
}

/*
 * out = a + (negate_b ? -b : b). Signs decide between adding and
 * subtracting magnitudes (the larger minus the smaller); the result is
 * then trimmed and checked against the 38 digits and the range. `what`
 * names the operation in messages ("sum", "difference").
 */
static int addsub(mm_dec_t *out, const mm_dec_t *a, const mm_dec_t *b, int negate_b,
                  const char *what, mm_err_t *err) {
  if (!dec_shape_ok(a) || !dec_shape_ok(b))
    return mm_err_set(err, MM_EINVAL, "%s of an invalid decimal", what);
  int bneg = b->neg ^ negate_b;
  if (addsub_small(out, a, b, bneg)) return 0;
  if (!dec_valid(a) || !dec_valid(b))
    return mm_err_set(err, MM_EINVAL, "%s of an invalid decimal", what);
  mm_dec_t r;
  if (mm_dec_is_zero(b)) {
    r = *a;
  } else if (mm_dec_is_zero(a)) {
    r = *b;
    r.neg = bneg;
  } else {
    uint8_t x[POS_WIDTH], y[POS_WIDTH], z[POS_WIDTH];
    memset(x, 0, sizeof x);
    memset(y, 0, sizeof y);
    int neg;
    if (a->neg == bneg) {
      spread(x, a);
      spread(y, b);
      neg = a->neg;
      int carry = 0;
      for (int k = 0; k < POS_WIDTH; k++) {
        int d = x[k] + y[k] + carry;
        z[k] = (uint8_t)(d % 10);
        carry = d / 10;
      }
    } else {
      int c = cmp_mag(a, b);
      if (c == 0) {
        set_zero(out);
        return 0;
      }
      /* x = larger magnitude, y = smaller; the sign is the larger's */
      spread(x, c > 0 ? a : b);
      spread(y, c > 0 ? b : a);
      neg = c > 0 ? a->neg : bneg;
      int borrow = 0;
      for (int k = 0; k < POS_WIDTH; k++) {
        int d = x[k] - y[k] - borrow;
        borrow = d < 0;
        z[k] = (uint8_t)(d < 0 ? d + 10 : d);
      }
    }
    int hi = POS_WIDTH - 1, lo = 0;
    while (z[hi] == 0) hi--;
    while (z[lo] == 0) lo++;
    if (hi - lo + 1 > MM_DEC_DIGITS)
      return mm_err_set(err, MM_EINVAL, "%s needs more than %d significant digits",
                        what, MM_DEC_DIGITS);
    int adj = hi + POS_LO;
    if (adj > MM_DEC_MAX_EXP)
      return mm_err_set(err, MM_EINVAL, "%s is out of range: magnitude reaches 1E+126",
                        what);
    if (adj < MM_DEC_MIN_EXP)
      return mm_err_set(err, MM_EINVAL, "%s is out of range: magnitude below 1E-130",
                        what);
    set_zero(&r);
    r.neg = neg;
    r.exp = lo + POS_LO;
    r.ndig = hi - lo + 1;
    for (int k = 0; k < r.ndig; k++) r.dig[k] = z[hi - k];
  }
  if (r.ndig == 0) r.neg = 0;
  *out = r; /* out may alias a or b: written last */
  return 0;
}

int mm_dec_add(mm_dec_t *out, const mm_dec_t *a, const mm_dec_t *b, mm_err_t *err) {
  return addsub(out, a, b, 0, "sum", err);
}

int mm_dec_sub(mm_dec_t *out, const mm_dec_t *a, const mm_dec_t *b, mm_err_t *err) {
  return addsub(out, a, b, 1, "difference", err);
}

/* ------------------------------------------------------------------ */
/* running sums                                                         */
/* ------------------------------------------------------------------ */

/*
 * The small form keeps the sum as coef * 10^exp with |coef| < 10^18 and
 * exp the smallest exponent seen so far (trailing zeros are not removed:
 * only mm_dec_acc_get normalises). A step stays small when x's
 * coefficient, scaled to the common exponent, and the result both fit 18
 * digits; then the result has at most 18 significant digits, and only its
 * range can fail, which is checked when the sum's digits could reach a
 * limit. Anything else turns the sum into an mm_dec_t for good and takes
 * mm_dec_add, which is what defines every result.
 */
#define ACC_LIM 1000000000000000000LL /* 10^18 */

/* x as c * 10^x->exp with |c| < 10^18 (0 when it has more digits or a
 * digit is not 0-9: not for the small form). */
static int acc_coef(const mm_dec_t *x, int64_t *c) {
  uint64_t m = coef18(x);
  if (m == UINT64_MAX) return 0;
  *c = x->neg ? -(int64_t)m : (int64_t)m;
  return 1;
}

void mm_dec_acc_init(mm_dec_acc_t *acc, const mm_dec_t *first) {
  int64_t c;
  acc->big = *first;
  acc->small = acc_coef(first, &c);
  acc->coef = acc->small ? c : 0;
  acc->exp = acc->small ? first->exp : 0;
}

/* 1 when a small-form sum c * 10^e (c != 0) lies in DynamoDB's range. */
static int acc_in_range(int64_t c, int e) {
  /* |c| < 10^18, so the leading digit sits at e .. e + 17 */
  if (e >= MM_DEC_MIN_EXP && e + 17 <= MM_DEC_MAX_EXP) return 1;
  uint64_t m = c < 0 ? (uint64_t)0 - (uint64_t)c : (uint64_t)c;
  int t = (64 - __builtin_clzll(m)) * 1233 >> 12;
  long adj = (long)e + t + (m >= U64_POW10[t]) - 1;
  return adj >= MM_DEC_MIN_EXP && adj <= MM_DEC_MAX_EXP;
}

int mm_dec_acc_add(mm_dec_acc_t *acc, const mm_dec_t *x, mm_err_t *err) {
  int64_t c;
  if (acc->small && acc_coef(x, &c)) {
    int64_t a = acc->coef;
    int e = acc->exp;
    /* align to the smaller exponent; each side must stay below 10^18 */
    if (x->exp < e) {
      int d = e - x->exp;
      if (d <= 18 && (a == 0 || (a < 0 ? -a : a) < ACC_LIM / (int64_t)U64_POW10[d])) {
        a *= (int64_t)U64_POW10[d];
        e = x->exp;
      } else {
        goto big;
      }
    } else if (x->exp > e) {
      int d = x->exp - e;
      if (d <= 18 && (c < 0 ? -c : c) < ACC_LIM / (int64_t)U64_POW10[d]) c *= (int64_t)U64_POW10[d];
      else goto big;
    }
    int64_t r = a + c; /* |r| < 2 * 10^18: no overflow */
    if (r <= -ACC_LIM || r >= ACC_LIM) goto big;
    if (r != 0 && !acc_in_range(r, e)) goto big; /* mm_dec_add words the failure */
    acc->coef = r;
    acc->exp = e;
    return 0;
  }
big:
  if (acc->small) {
    /* leave the small form: the sum so far as a decimal */
    mm_dec_t cur;
    mm_dec_acc_get(acc, &cur);
    mm_dec_t r;
    int rc = mm_dec_add(&r, &cur, x, err);
    if (rc) return rc; /* unchanged: still small */
    acc->big = r;
    acc->small = 0;
    return 0;
  }
  return mm_dec_add(&acc->big, &acc->big, x, err);
}

void mm_dec_acc_get(const mm_dec_acc_t *acc, mm_dec_t *out) {
  if (!acc->small) {
    *out = acc->big;
    return;
  }
  uint64_t m = acc->coef < 0 ? (uint64_t)0 - (uint64_t)acc->coef : (uint64_t)acc->coef;
  set_from_u64(out, acc->coef < 0, m, acc->exp);
}

/* ------------------------------------------------------------------ */
/* stored text + delta                                                  */
/* ------------------------------------------------------------------ */

/*
 * Every step mirrors the general path: the text is read as parse_fast
 * reads it, the sum is exact (both sides below 10^18 after alignment), its
 * trailing zeros move into the exponent, and it is written in
 * mm_dec_format's plain notation, refusing what would be scientific. The
 * range needs no check: a plain sum of at most 19 digits with the
 * exponents seen here lies far inside it, and a zero has none. The writer
 * repeats mm_dec_format's plain branch on purpose: set_from_u64 +
 * mm_dec_format instead cost the pipeline benchmark ~250 K instructions
 * (of ~195 M), one digit array per merge.
 */
size_t mm_dec_add_text(const char *s, size_t len, const mm_dec_t *d, char *buf) {
  /* the stored text */
  int aneg;
  uint64_t a;
  size_t nfrac;
  if (!scan_plain(s, len, 18, &aneg, &a, &nfrac)) return 0;
  int ea = -(int)nfrac;
  /* the delta */
  uint64_t b = coef18(d);
  if (b == UINT64_MAX) return 0;
  int eb = b ? d->exp : ea; /* zero: any exponent */
  /* align to the smaller exponent, each side below 10^18 */
  int e = ea < eb ? ea : eb;
  int sa = ea - e, sb = eb - e;
  if (sa > 18 || sb > 18) return 0;
  if (sa && a >= U64_POW10[18 - sa]) return 0;
  if (sb && b >= U64_POW10[18 - sb]) return 0;
  int neg;
  uint64_t m = add_signed(aneg, a * U64_POW10[sa], d->neg, b * U64_POW10[sb], &neg);
  if (m == 0) {
    memcpy(buf, "0", 2);
    return 1;
  }
  while (m % 10 == 0) {
    m /= 10;
    e++;
  }
  /* digit count as in set_from_u64 */
  int t = (64 - __builtin_clzll(m)) * 1233 >> 12;
  int nd = t + (m >= U64_POW10[t]);
  long plain = neg + (e >= 0 ? nd + e : (nd > -e ? nd + 1 : 2 - e));
  if (plain > PLAIN_MAX) return 0;
  /* The layout first, then the digits right to left straight into place:
   * copying them from a scratch array made variable-length memcpys that
   * GCC (with a profile) expands into rep movsb, slow to start for the
   * few bytes a sum has. */
  size_t n = 0, at;     /* at: where the digits start */
  size_t point = 0;     /* digits before the '.', 0 for none inside */
  if (neg) buf[n++] = '-';
  if (e >= 0) {
    at = n;
    n += (size_t)nd;
    for (int z = 0; z < e; z++) buf[n++] = '0';
  } else if (nd > -e) {
    at = n;
    point = (size_t)(nd + e);
    n += (size_t)nd + 1;
  } else {
    buf[n++] = '0';
    buf[n++] = '.';
    for (int z = 0; z < -e - nd; z++) buf[n++] = '0';
    at = n;
    n += (size_t)nd;
  }
  char *q = buf + at + (size_t)nd + (point ? 1 : 0); /* past the last digit */
  for (int i = nd; i > 0; i--) {
    if (point && (size_t)i == point) *--q = '.';
    *--q = (char)('0' + m % 10);
    m /= 10;
  }
  buf[n] = '\0';
  return n;
}

/* Zero (either sign) first, then signs, then magnitudes; a negative
 * pair compares reversed. */
int mm_dec_cmp(const mm_dec_t *a, const mm_dec_t *b) {
  int za = mm_dec_is_zero(a), zb = mm_dec_is_zero(b);
  if (za && zb) return 0;
  if (za) return b->neg ? 1 : -1;
  if (zb) return a->neg ? -1 : 1;
  if (a->neg != b->neg) return a->neg ? -1 : 1;
  int m = cmp_mag(a, b);
  return a->neg ? -m : m;
}

/* ------------------------------------------------------------------ */
/* output                                                               */
/* ------------------------------------------------------------------ */

/*
 * Plain notation when it fits in 40 characters ("0.3", "-12", "100",
 * "0.00001"), otherwise scientific with a signed exponent ("1.5E+60",
 * "-2E-45"), the way DynamoDB-style canonical text reads. Both are valid
 * JSON numbers.
 */
size_t mm_dec_format(const mm_dec_t *a, char *buf) {
  if (a->ndig <= 0 || a->ndig > MM_DEC_DIGITS) {
    memcpy(buf, "0", 2);
    return 1;
  }
  size_t n = 0;
  long exp = a->exp, nd = a->ndig;
  long plain = a->neg + (exp >= 0 ? nd + exp : (nd > -exp ? nd + 1 : 2 - exp));
  if (a->neg) buf[n++] = '-';
  if (plain <= PLAIN_MAX) {
    if (exp >= 0) {
      for (long k = 0; k < nd; k++) buf[n++] = (char)('0' + a->dig[k]);
      for (long k = 0; k < exp; k++) buf[n++] = '0';
    } else if (nd > -exp) {
      long point = nd + exp; /* digits before the point */
      for (long k = 0; k < nd; k++) {
        if (k == point) buf[n++] = '.';
        buf[n++] = (char)('0' + a->dig[k]);
      }
    } else {
      buf[n++] = '0';
      buf[n++] = '.';
      for (long k = 0; k < -exp - nd; k++) buf[n++] = '0';
      for (long k = 0; k < nd; k++) buf[n++] = (char)('0' + a->dig[k]);
    }
  } else {
    buf[n++] = (char)('0' + a->dig[0]);
    if (nd > 1) {
      buf[n++] = '.';
      for (long k = 1; k < nd; k++) buf[n++] = (char)('0' + a->dig[k]);
    }
    long adj = adjusted(a);
    n += (size_t)snprintf(buf + n, MM_DEC_TEXT_MAX - n, "E%c%ld", adj < 0 ? '-' : '+',
                          adj < 0 ? -adj : adj);
  }
  buf[n] = '\0';
  return n;
}

/* Integral means exp >= 0 (no trailing zeros are kept, so a negative
 * exponent always leaves a fraction). The magnitude is accumulated in
 * uint64 with an overflow check, which also admits INT64_MIN. */
int mm_dec_to_int64(const mm_dec_t *a, int64_t *out) {
  if (mm_dec_is_zero(a)) {
    *out = 0;
    return 1;
  }
  if (a->exp < 0 || a->ndig + a->exp > 19) return 0; /* fractional or too big */
  uint64_t m = 0;
  for (int k = 0; k < a->ndig + a->exp; k++) {
    unsigned d = k < a->ndig ? a->dig[k] : 0;
    if (m > (UINT64_MAX - d) / 10) return 0;
    m = m * 10 + d;
  }
  if (a->neg) {
    if (m > (uint64_t)INT64_MAX + 1) return 0;
    *out = m == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)m;
  } else {
    if (m > (uint64_t)INT64_MAX) return 0;
    *out = (int64_t)m;
  }
  return 1;
}

/* glibc strtod rounds correctly, so going through the canonical text
 * gives the nearest double without any arithmetic here. */
double mm_dec_to_double(const mm_dec_t *a) {
  char buf[MM_DEC_TEXT_MAX];
  mm_dec_format(a, buf);
  return strtod(buf, NULL);
}

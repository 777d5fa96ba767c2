/*
 * decimal.h - exact decimal numbers with DynamoDB's limits.
 *
 * Provides: parsing of DynamoDB N text ("-0", "1E+2", 38 digits), exact
 * addition, subtraction and comparison, shortest round-trip text for a
 * double, and canonical formatting. The local stores and the Lua helpers
 * use it so that sums agree with DynamoDB's exact ADD (0.1 + 0.2 = 0.3).
 * Relies on nothing but libc. Values are plain structs (no ownership).
 */
#ifndef MM_DECIMAL_H
#define MM_DECIMAL_H

#include <stddef.h>
#include <stdint.h>
#include "err.h"

/* Significant digits DynamoDB keeps. */
#define MM_DEC_DIGITS 38
/* Exponent range of DynamoDB numbers: 1E-130 <= |x| < 1E+126. */
#define MM_DEC_MIN_EXP (-130)
#define MM_DEC_MAX_EXP 125
/* Buffer size that holds any formatted decimal. */
#define MM_DEC_TEXT_MAX 192

/* value = (neg ? -1 : 1) * coefficient * 10^exp, where coefficient is the
 * ndig digits dig[0..ndig) (most significant first, no leading zeros, no
 * trailing zeros; ndig == 0 means zero). */
typedef struct mm_dec {
  int neg;
  int exp;
  int ndig;
  uint8_t dig[MM_DEC_DIGITS + 2];
} mm_dec_t;

/* Parses JSON-number-like text (also accepts a leading '+', "1E+2",
 * ".5" is rejected). More than 38 significant digits or an exponent out of
 * range is MM_EINVAL with a message saying which. */
int mm_dec_parse(mm_dec_t *out, const char *s, size_t len, mm_err_t *err);

/* The shortest decimal that reads back (strtod) as exactly v. NaN and the
 * infinities are MM_EINVAL. */
int mm_dec_from_double(mm_dec_t *out, double v, mm_err_t *err);

/* 10^0 .. 10^22: the powers of ten a double holds exactly. */
extern const double MM_POW10[23];

void mm_dec_from_int(mm_dec_t *out, int64_t v);

/* out = a + b, exactly. A result needing more than 38 digits or out of
 * range is MM_EINVAL (DynamoDB rejects it too). out may alias a or b. */
int mm_dec_add(mm_dec_t *out, const mm_dec_t *a, const mm_dec_t *b, mm_err_t *err);
int mm_dec_sub(mm_dec_t *out, const mm_dec_t *a, const mm_dec_t *b, mm_err_t *err);

/* A running exact sum of many decimals (a batch's deltas for one key).
 * While the sum and each addend fit 18 digits at a common exponent the sum
 * is a 64-bit coefficient, so an addition costs no digit array; past that
 * it is an mm_dec_t summed with mm_dec_add. Each step succeeds or fails
 * exactly as mm_dec_add on the sum so far would (more than 38 digits, out
 * of range), and a failed step leaves the sum as it was. A plain struct,
 * nothing to free. */
typedef struct mm_dec_acc {
  int small;         /* 1: the sum is coef * 10^exp */
  int exp;
  int64_t coef;      /* |coef| < 10^18 */
  mm_dec_t big;      /* the sum when !small */
} mm_dec_acc_t;

/* Starts the sum at first (a valid decimal, e.g. from mm_dec_parse). */
void mm_dec_acc_init(mm_dec_acc_t *acc, const mm_dec_t *first);
/* acc += x. MM_EINVAL as mm_dec_add; acc is then unchanged. */
int mm_dec_acc_add(mm_dec_acc_t *acc, const mm_dec_t *x, mm_err_t *err);
/* The sum so far. */
void mm_dec_acc_get(const mm_dec_acc_t *acc, mm_dec_t *out);

/* The text of text + d, for a stored sum and a delta: what
 * mm_dec_format writes for mm_dec_add(mm_dec_parse(text), d), found
 * without digit arrays when the text is plain ([+-]digits[.digits]) with at
 * most 18 digits, d has at most 18, both fit 18 digits at their common
 * exponent and the sum's text is plain. Returns its length (buf holds
 * MM_DEC_TEXT_MAX bytes, NUL-terminated), or 0 when any of that does not
 * hold (or text does not parse): then take the general path, which also
 * words every error. */
size_t mm_dec_add_text(const char *text, size_t len, const mm_dec_t *d, char *buf);

/* -1, 0, 1 (exact; -0 == 0). */
int mm_dec_cmp(const mm_dec_t *a, const mm_dec_t *b);

static inline int mm_dec_is_zero(const mm_dec_t *a) { return a->ndig == 0; }

/* Canonical text: plain notation ("0.3", "-12", "100") while it is at most
 * 40 characters long, else scientific ("1.5E+60", "-2E-45"). Returns the
 * length; buf must hold MM_DEC_TEXT_MAX bytes. */
size_t mm_dec_format(const mm_dec_t *a, char *buf);

/* 1 when a is integral and fits int64 (then *out is set). */
int mm_dec_to_int64(const mm_dec_t *a, int64_t *out);

/* Nearest double (correctly rounded via strtod of the canonical text). */
double mm_dec_to_double(const mm_dec_t *a);

#endif

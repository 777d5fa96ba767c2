/*
 * json.c - the validating single-pass JSON parser (see json.h).
 *
 * One loop over the input, driven by gotos between a few states (a value
 * is expected, a member name is being read, a container closed, an element
 * just ended). There is no recursion and no separate stack: while a
 * container is open its tape node's `next` field holds the index of the
 * enclosing container (the parent link), and its `len` counts its elements
 * as they end; `next` gets its real value when the container closes. So
 * nesting costs nothing but the depth counter, and a 100000-deep input
 * fails at the limit without touching the C stack.
 *
 * Hot paths: string ends come from a 64-byte block's mask of the bytes a
 * string body cannot skip ('"', '\\', control characters, non-ASCII),
 * computed once per block (SSE2 on x86-64, a SWAR word test elsewhere), so
 * finding a string's end is a shift and a count of trailing zeros; only
 * non-ASCII bytes go through the UTF-8 checks (out of line, with escapes
 * and errors, 16 or 8 bytes at a time between them). The shapes of a
 * stream event have paths of their own without the general dispatch: a
 * member name and its ':' and the value's first byte (one 2-byte test), a
 * string or object member value, an attribute value {"S":"..."} or
 * {"BOOL":true} read straight through (a one-letter type tag without a
 * string scan), and ',"' between members. Each leaves for the general
 * states at the same byte with the same tape, so what is accepted and
 * every error message stay those of the general path, which
 * tests/fuzz/json_diff.sh checks against an earlier version of this file.
 * The tape is usually allocated once at the most nodes the input can need,
 * so pushes check no capacity.
 *
 * Error codes: MM_EINVAL for malformed input, MM_ELIMIT for the nesting
 * limit and oversized input, MM_ENOMEM when the tape cannot grow. Messages
 * start with "byte N: " where N is the 0-based offset into the buffer as
 * given (a BOM counts).
 */
#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

typedef unsigned char uchar;

/* Parent link of the root container: "no enclosing container". */
#define NO_PARENT UINT32_MAX
/* Tag bit marking a string that contains backslash escapes. */
#define TAG_ESC 8u

/* ------------------------------------------------------------------ */
/* Character classes                                                    */
/* ------------------------------------------------------------------ */

/* Value of a hex digit, or -1. */
static const signed char hexval[256] = {
    ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6,
    ['6'] = 7, ['7'] = 8, ['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12,
    ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16, ['A'] = 11, ['B'] = 12,
    ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
}; /* stored +1 so that the zero default means "not hex" */

/* Reads 4 hex digits at p (bounds checked by the caller); -1 if any is
 * not a hex digit. */
static inline long hex4(const uchar *p) {
  int a = hexval[p[0]], b = hexval[p[1]], c = hexval[p[2]], d = hexval[p[3]];
  if (!a || !b || !c || !d) return -1;
  return ((long)(a - 1) << 12) | ((b - 1) << 8) | ((c - 1) << 4) | (d - 1);
}

/* JSON white space: ' ', '\t', '\n', '\r' (one compare for the usual
 * non-space byte, then a bit test). */
static inline int is_ws(uchar c) {
  return c <= ' ' &&
         ((1ULL << c) & ((1ULL << ' ') | (1ULL << '\t') | (1ULL << '\n') |
                         (1ULL << '\r')));
}

static inline int is_digit(uchar c) { return (uchar)(c - '0') < 10; }

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && \
    (defined(__GNUC__) || defined(__clang__))
#define MM_SWAR 1
#define ONES 0x0101010101010101ULL
#define HIGH 0x8080808080808080ULL

/* High bit set in each byte of x that needs a look inside a string: '"',
 * '\\', below 0x20, or 0x80 and above. Borrows can only flag bytes above
 * the first real hit, so the lowest set bit is exact. */
static inline uint64_t str_special(uint64_t x) {
  uint64_t q = x ^ (ONES * '"');
  uint64_t b = x ^ (ONES * '\\');
  uint64_t m = ((q - ONES) & ~q) | ((b - ONES) & ~b) |
               ((x - ONES * 0x20) & ~x) | x;
  return m & HIGH;
}
#endif

/* ------------------------------------------------------------------ */
/* Errors                                                               */
/* ------------------------------------------------------------------ */

/* "byte N: expected X, found 'c'" (or "... but the input ended"). */
static int fail_expect(mm_err_t *err, const uchar *base, const uchar *p,
                       const uchar *end, const char *what) {
  size_t off = (size_t)(p - base);
  if (p >= end)
    return mm_err_set(err, MM_EINVAL,
                      "byte %zu: expected %s but the input ended", off, what);
  if (*p >= 0x21 && *p < 0x7f)
    return mm_err_set(err, MM_EINVAL, "byte %zu: expected %s, found '%c'",
                      off, what, *p);
  return mm_err_set(err, MM_EINVAL, "byte %zu: expected %s, found byte 0x%02X",
                    off, what, *p);
}

/* "byte N: why" for errors that are not a simple "expected". */
static int fail_at(mm_err_t *err, const uchar *base, const uchar *p,
                   const char *why) {
  return mm_err_set(err, MM_EINVAL, "byte %zu: %s", (size_t)(p - base), why);
}

/* ------------------------------------------------------------------ */
/* Strings                                                              */
/* ------------------------------------------------------------------ */

/* Checks one UTF-8 sequence starting at lead byte p[0] >= 0x80 (Unicode
 * table 3-7: no overlongs, no surrogates, nothing above U+10FFFF). Returns
 * its length, or 0 with *why set. */
static inline int utf8_len(const uchar *p, const uchar *end, const char **why) {
  uchar c = p[0];
  size_t avail = (size_t)(end - p);
  int n;
  uchar lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
  if (c < 0xC0) {
    *why = "invalid UTF-8 in string (unexpected continuation byte)";
    return 0;
  }
  if (c < 0xC2) {
    *why = "invalid UTF-8 in string (overlong encoding)";
    return 0;
  }
  if (c < 0xE0) {
    n = 2;
  } else if (c < 0xF0) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    else if (c == 0xED) hi = 0x9F;
  } else if (c < 0xF5) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    else if (c == 0xF4) hi = 0x8F;
  } else {
    *why = c < 0xF8 ? "invalid UTF-8 in string (above U+10FFFF)"
                    : "invalid UTF-8 in string (byte never valid in UTF-8)";
    return 0;
  }
  if (avail < 2 || (p[1] & 0xC0) != 0x80) {
    *why = "invalid UTF-8 in string (truncated sequence)";
    return 0;
  }
  if (p[1] < lo || p[1] > hi) {
    if (c == 0xED) *why = "invalid UTF-8 in string (encoded surrogate)";
    else if (c == 0xF4) *why = "invalid UTF-8 in string (above U+10FFFF)";
    else *why = "invalid UTF-8 in string (overlong encoding)";
    return 0;
  }
  for (int k = 2; k < n; k++) {
    if ((size_t)k >= avail || (p[k] & 0xC0) != 0x80) {
      *why = "invalid UTF-8 in string (truncated sequence)";
      return 0;
    }
  }
  return n;
}

/* Checks the escape at p[0] == '\\' (the rare path, kept out of the
 * string loop). Returns the byte after it, or NULL with *why set. */
static const uchar *scan_escape(const uchar *p, const uchar *end,
                                const char **why) {
  if (end - p < 2) {
    *why = NULL; /* the input ended inside the string */
    return NULL;
  }
  switch (p[1]) {
  case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r':
  case 't':
    return p + 2;
  case 'u': break;
  default:
    *why = "invalid escape (expected one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t "
           "\\uXXXX)";
    return NULL;
  }
  long cp = end - p >= 6 ? hex4(p + 2) : -1;
  if (cp < 0) {
    *why = "invalid \\u escape (expected 4 hex digits)";
    return NULL;
  }
  if (cp >= 0xDC00 && cp <= 0xDFFF) {
    *why = "invalid \\u escape (low surrogate without a high surrogate "
           "before it)";
    return NULL;
  }
  if (cp < 0xD800 || cp > 0xDBFF) return p + 6;
  long lo = -1;
  if (end - p >= 12 && p[6] == '\\' && p[7] == 'u') lo = hex4(p + 8);
  if (lo < 0xDC00 || lo > 0xDFFF) {
    *why = "invalid \\u escape (high surrogate not followed by a low "
           "surrogate escape)";
    return NULL;
  }
  return p + 12;
}

/* Skips white space. Compact JSON has none, so the first test leaves at
 * once; pretty-printed indentation is skipped a word of spaces at a time. */
static inline const uchar *skip_ws(const uchar *p, const uchar *end) {
  while (p < end && is_ws(*p)) {
    p++;
#ifdef MM_SWAR
    while (end - p >= 8) {
      uint64_t x;
      memcpy(&x, p, 8);
      if (x != ONES * ' ') break;
      p += 8;
    }
#endif
  }
  return p;
}

/* Skips white space where compact JSON has none (after '{', ':' and ','
 * in objects): out of line and cold, so that the hot paths around it do
 * not set up skip_ws's constants on the way past. */
static __attribute__((noinline, cold)) const uchar *
skip_ws_cold(const uchar *p, const uchar *end) {
  return skip_ws(p, end);
}

/* Skips ASCII digits, 8 at a time with a SWAR test (epoch times are 10
 * digits): a byte is a digit when its high nibble is 3 and its low nibble
 * plus 6 stays below 16; neither sum carries out of its byte, so the
 * first flagged byte is exact. */
static inline const uchar *skip_digits(const uchar *p, const uchar *end) {
#ifdef MM_SWAR
  while (end - p >= 8) {
    uint64_t x;
    memcpy(&x, p, 8);
    uint64_t bad = ((x & (ONES * 0xF0)) ^ (ONES * 0x30)) |
                   (((x & (ONES * 0x0F)) + ONES * 6) & (ONES * 0x10));
    uint64_t m = (((bad & (ONES * 0x7F)) + ONES * 0x7F) | bad) & HIGH;
    if (m) return p + ((unsigned)__builtin_ctzll(m) >> 3);
    p += 8;
  }
#endif
  while (p < end && is_digit(*p)) p++;
  return p;
}

/* ------------------------------------------------------------------ */
/* String bodies                                                        */
/* ------------------------------------------------------------------ */

/* 1 for the bytes a string body cannot simply skip: '"', '\\', control
 * characters (below 0x20) and every byte of 0x80 and above (UTF-8 is
 * checked one sequence at a time). */
static inline int str_stop(uchar c) {
  return (uchar)(c - 0x20) >= 0x60 || c == '"' || c == '\\';
}

#if defined(MM_SWAR) && defined(__SSE2__)
#define MM_SSE2 1
/* The three byte vectors the SSE2 scan uses. */
typedef struct {
  __m128i two, lim, bslash;
} stop_vec_t;
#define STOP_VEC_INIT                                                       \
  {_mm_set1_epi8(2), _mm_set1_epi8(0x20), _mm_set1_epi8('\\')}
#endif

/* First byte in [p, end) that str_stop flags, or end. 16 bytes at a time
 * with SSE2 while p <= lim16 (end - 16, or 0 when the input is shorter),
 * then 8 at a time with SWAR, then bytewise; no read goes past end. In
 * the SSE2 test, x ^ 2 maps '"' to 0x20 and control characters onto
 * 0x00-0x1F, and leaves every other byte above 0x20 unless it is 0x80 or
 * more, so one signed "above 0x20" passes every byte but '"', control
 * characters and non-ASCII bytes; '\\' gets its own compare, and the
 * result is the mask of the bytes a string body takes as they are (with
 * SSE2's two-operand forms that order needs no register copies), whose
 * complement is the stop mask. Its one caller,
 * string_rest, sets the vectors and lim16 up once per string it finishes
 * (the parser's own string ends come from the block masks below). */
static inline __attribute__((always_inline)) const uchar *
find_stop(const uchar *p, const uchar *end
#ifdef MM_SSE2
                                     , uintptr_t lim16, stop_vec_t v
#endif
) {
#ifdef MM_SSE2
  while ((uintptr_t)p <= lim16) {
    __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i ok = _mm_andnot_si128(
        _mm_cmpeq_epi8(x, v.bslash),
        _mm_cmpgt_epi8(_mm_xor_si128(x, v.two), v.lim));
    unsigned mask = (unsigned)_mm_movemask_epi8(ok) ^ 0xFFFFu;
    if (mask) return p + (unsigned)__builtin_ctz(mask);
    p += 16;
  }
#endif
#ifdef MM_SWAR
  while (end - p >= 8) {
    uint64_t x;
    memcpy(&x, p, 8);
    uint64_t m = str_special(x);
    if (m) return p + ((unsigned)__builtin_ctzll(m) >> 3);
    p += 8;
  }
#endif
  while (p < end && !str_stop(*p)) p++;
  return p;
}

#ifdef MM_SSE2
#define FIND_STOP(p_, end_) find_stop(p_, end_, lim16, sv)
#else
#define FIND_STOP(p_, end_) find_stop(p_, end_)
#endif

#ifdef MM_SWAR
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define LIKELY(x) __builtin_expect(!!(x), 1)
#else
#define UNLIKELY(x) (x)
#define LIKELY(x) (x)
#endif

/* ------------------------------------------------------------------ */
/* Block stop masks                                                     */
/* ------------------------------------------------------------------ */

/*
 * Where a string ends is the one thing the parser cannot guess: every
 * token after a string waits for it. Scanning each string with its own
 * 16-byte loads put load, compare, movemask and tzcnt (some 15 cycles) on
 * that path once per string, and a compact event has a string every 11
 * bytes. Instead the input is cut into 64-byte blocks (at offsets from the
 * buffer's start that are multiples of 64) and the parser keeps one
 * block's stop mask: bit i set when byte i is one str_stop flags. A
 * string's first stop is then a shift and a tzcnt of a register; the next
 * block's mask is loaded from an address known long before (the block
 * after the current one), so the out-of-order core computes it off that
 * path. The last, partial block is copied into a zero-padded buffer: the
 * padding reads as control characters, so the bits from `end` on are set
 * and a scan always stops at `end` at the latest.
 */
#define BLOCK 64

typedef struct {
  const uchar *at; /* the block's first byte: buffer start + 64 k */
  uint64_t stop;   /* bit i: at[i] is a stop byte, or at + i >= end */
} block_t;

#if defined(MM_SWAR) && !defined(MM_SSE2)
/* High bit set in each byte of x that str_stop flags, exactly (unlike
 * str_special no borrow crosses a byte: each test adds at most 0x7F to a
 * 7-bit value). (y & 0x7F) + 0x7F has its high bit clear only for a zero
 * byte of y; (x & 0x7F) + 0x60 has it set from 0x20 up. */
static inline uint64_t str_stop_bytes(uint64_t x) {
  const uint64_t low7 = ONES * 0x7F;
  uint64_t q = x ^ (ONES * '"'), b = x ^ (ONES * '\\');
  uint64_t not_q = ((q & low7) + low7) | q;
  uint64_t not_b = ((b & low7) + low7) | b;
  uint64_t ge_20 = (x & low7) + ONES * 0x60;
  return (x | ~(not_q & not_b & ge_20)) & HIGH;
}
#endif

/* The stop mask of the 64 bytes at p (all readable). */
static inline __attribute__((always_inline)) uint64_t stop_mask64(const uchar *p
#ifdef MM_SSE2
                                   , stop_vec_t v
#endif
) {
  uint64_t m = 0;
#if defined(MM_SSE2)
  /* written out: GCC keeps a 4-step loop and its mask in memory */
#define STOP16(k)                                                           \
  do {                                                                      \
    __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(p + 16 * k)); \
    __m128i ok = _mm_andnot_si128(                                          \
        _mm_cmpeq_epi8(x, v.bslash),                                        \
        _mm_cmpgt_epi8(_mm_xor_si128(x, v.two), v.lim));                    \
    m |= (uint64_t)(unsigned)_mm_movemask_epi8(ok) << (16 * k);             \
  } while (0)
  STOP16(0); /* m: the bytes find_stop passes */
  STOP16(1);
  STOP16(2);
  STOP16(3);
#undef STOP16
  m = ~m;
#elif defined(MM_SWAR)
  for (int k = 0; k < 8; k++) {
    uint64_t x;
    memcpy(&x, p + 8 * k, 8);
    /* gather the 8 high bits into one byte: the products of distinct
     * bits land on distinct bit positions, so nothing carries */
    uint64_t h = str_stop_bytes(x) >> 7;
    m |= ((h * 0x0102040810204080ULL) >> 56) << (8 * k);
  }
#else
  for (int k = 0; k < BLOCK; k++) m |= (uint64_t)str_stop(p[k]) << k;
#endif
  return m;
}

/* The stop mask of the last block, at..end (fewer than 64 bytes). */
static __attribute__((noinline)) uint64_t stop_mask_tail(const uchar *at,
                                                         const uchar *end) {
  uchar pad[BLOCK] = {0};
  memcpy(pad, at, (size_t)(end - at));
#ifdef MM_SSE2
  const stop_vec_t sv = STOP_VEC_INIT;
  return stop_mask64(pad, sv);
#else
  return stop_mask64(pad);
#endif
}

#ifdef MM_SSE2
#define STOP_MASK64(p_) stop_mask64(p_, sv)
#else
#define STOP_MASK64(p_) stop_mask64(p_)
#endif

/* Moves block b forward to the first block at or after t's that holds a
 * stop byte at or after t (t at most end): the slow part of BLOCK_FIND,
 * taken about once per block, out of line so that the parser's registers
 * stay put. */
static __attribute__((noinline)) block_t block_seek(const uchar *t, block_t b,
                                                    const uchar *base,
                                                    const uchar *end) {
#ifdef MM_SSE2
  const stop_vec_t sv = STOP_VEC_INIT;
#endif
  for (;;) {
    size_t o = (size_t)(t - b.at);
    if (o < BLOCK) {
      if (b.stop >> o) return b;
      t = b.at + BLOCK; /* the string goes on in the next block */
      b.at = t;
    } else if (o < 2 * BLOCK) {
      b.at += BLOCK;
    } else {
      b.at = base + ((size_t)(t - base) & ~(size_t)(BLOCK - 1));
    }
    b.stop = end - b.at >= BLOCK ? STOP_MASK64(b.at) : stop_mask_tail(b.at, end);
  }
}

/* The first stop byte at or after s_in (at or after blk.at, at most end)
 * into q_out. The usual case, a string that ends in the current block, is
 * a shift and a tzcnt; a string that starts in or runs into the next
 * block loads that block's mask here (its address is known early);
 * anything else goes through block_seek. */
#define BLOCK_FIND(s_in, q_out)                                             \
  do {                                                                      \
    const uchar *t_ = (s_in);                                               \
    size_t o_ = (size_t)(t_ - blk.at);                                      \
    uint64_t m_;                                                            \
    if (UNLIKELY(o_ >= BLOCK) || UNLIKELY((m_ = blk.stop >> o_) == 0)) {    \
      if (o_ < 2 * BLOCK && end - blk.at >= 2 * BLOCK) {                    \
        blk.at += BLOCK;                                                    \
        blk.stop = STOP_MASK64(blk.at);                                     \
        o_ = o_ >= BLOCK ? o_ - BLOCK : 0;                                  \
        t_ = blk.at + o_;                                                   \
        m_ = blk.stop >> o_;                                                \
      } else {                                                              \
        m_ = 0;                                                             \
      }                                                                     \
      if (UNLIKELY(m_ == 0)) {                                              \
        blk = block_seek(t_, blk, base, end);                               \
        if (t_ < blk.at) t_ = blk.at;                                       \
        m_ = blk.stop >> (t_ - blk.at);                                     \
      }                                                                     \
    }                                                                       \
    (q_out) = t_ + (unsigned)__builtin_ctzll(m_);                           \
  } while (0)

/* Result of the slow string path: the closing quote (NULL after an error,
 * already written to err) and TAG_ESC when the body holds escapes. */
typedef struct {
  const uchar *q;
  uint32_t esc;
} str_end_t;

/* Finishes a string body from p, the first stop byte (BLOCK_FIND) that
 * is not the closing quote (or end): checks escapes, UTF-8 sequences and
 * control characters in order, so the first bad byte is the one named.
 * Kept out of line: compact events rarely get here. */
static str_end_t string_rest(const uchar *p, const uchar *end,
                             const uchar *base, mm_err_t *err) {
  str_end_t r = {NULL, 0};
  const char *why = NULL;
#ifdef MM_SSE2
  const stop_vec_t sv = STOP_VEC_INIT;
  const uintptr_t lim16 = end - base >= 16 ? (uintptr_t)(end - 16) : 0;
#endif
  for (;;) {
    if (p >= end) {
      fail_at(err, base, end, "unterminated string");
      return r;
    }
    if (*p == '"') {
      r.q = p;
      return r;
    }
    if (*p == '\\') {
      const uchar *q = scan_escape(p, end, &why);
      if (!q) {
        if (!why) fail_at(err, base, end, "unterminated string");
        else fail_at(err, base, p, why);
        return r;
      }
      r.esc = TAG_ESC;
      p = q;
    } else if (*p < 0x20) {
      fail_at(err, base, p, "control character in string (must be escaped)");
      return r;
    } else if (*p >= 0x80) {
      int n = utf8_len(p, end, &why);
      if (!n) {
        fail_at(err, base, p, why);
        return r;
      }
      p += n;
    } else {
      p++; /* not reached: the scans stop only on flagged bytes */
    }
    p = FIND_STOP(p, end);
  }
}

/* ------------------------------------------------------------------ */
/* The parser                                                           */
/* ------------------------------------------------------------------ */

/* A tape and its capacity in nodes. */
typedef struct {
  mm_json_node_t *nodes;
  uint32_t cap;
} tape_t;

/* Grows tape t: doubles it, never beyond `most` (the most any input of
 * this length can need, see mm_json_parse) but always by at least one.
 * Returns the new tape, or nodes NULL after freeing the old array. Out of
 * line and by value, so that the parser keeps both in registers. */
static __attribute__((noinline)) tape_t grow_tape(tape_t t, uint32_t most) {
  size_t ncap = (size_t)t.cap * 2;
  if (ncap > most) ncap = most;
  if (ncap <= t.cap) ncap = (size_t)t.cap + 1;
  mm_json_node_t *nn = realloc(t.nodes, ncap * sizeof *nn);
  if (!nn) free(t.nodes);
  t.nodes = nn;
  t.cap = (uint32_t)ncap;
  return t;
}

/* The 4 bytes at p as a word; LIT_* are the literals' words (loaded the
 * same way, so byte order does not matter; the compiler folds them). */
static inline uint32_t load32(const uchar *p) {
  uint32_t x;
  memcpy(&x, p, 4);
  return x;
}
static inline uint32_t load16(const uchar *p) {
  uint16_t x;
  memcpy(&x, p, 2);
  return x;
}
#define LIT_TRUE load32((const uchar *)"true")
#define LIT_ALSE load32((const uchar *)"alse")
#define LIT_NULL load32((const uchar *)"null")

/* 1 when k holds '"', one byte a string body takes as it is, '"' and ':'
 * (k + 4 readable): a one-letter member name such as DynamoDB's type tags
 * S, N, B, M and L, read without a string scan. */
static inline int short_key(const uchar *k) {
  static const uchar mask[4] = {0xFF, 0, 0xFF, 0xFF};
  static const uchar want[4] = {'"', 0, '"', ':'};
  /* '#' to 0x7F but '\\': fewer tests than str_stop, and ' ' and '!',
   * which it leaves to the general path, are no type tags */
  return (load32(k) & load32(mask)) == load32(want) &&
         (uchar)(k[1] - '#') <= 0x7F - '#' && k[1] != '\\';
}

/* Bytes a fast path may read from p when p is below `safe`. */
#define SAFE_READ 8

/* The parent link a container opened now gets: the index of `cur`, or
 * NO_PARENT. */
#define LINK() (cur ? (uint32_t)(cur - nodes) : NO_PARENT)

/* Moves the tape's pointers to a grown tape (nodes NULL: out of memory). */
#define GROW()                                                              \
  do {                                                                      \
    size_t c_ = cur ? (size_t)(cur - nodes) : 0;                            \
    tape_t t_ = grow_tape((tape_t){nodes, cap}, most);                      \
    nodes = t_.nodes;                                                       \
    cap = t_.cap;                                                           \
    if (!nodes) goto nomem;                                                 \
    np = nodes + count;                                                     \
    if (cur) cur = nodes + c_;                                              \
  } while (0)

/* Appends a node for the value whose first byte is at `at`, its `next`
 * left for the caller (PUSH, PUSH_LEAF) or for later (PUSH_OBJ). */
#define PUSH_NODE(type_tag, at, ln)                                         \
  do {                                                                      \
    if (!fixed && UNLIKELY(count == cap)) GROW();                           \
    mm_json_node_t *n_ = np++;                                              \
    n_->tag = (uint32_t)(type_tag) | ((uint32_t)((at) - base) << 4);        \
    n_->len = (uint32_t)(ln);                                               \
    count++;                                                                \
  } while (0)

/* PUSH_NODE with `next` nxt: provisional for containers (fixed when they
 * close). */
#define PUSH(type_tag, at, ln, nxt)                                         \
  do {                                                                      \
    PUSH_NODE(type_tag, at, ln);                                            \
    np[-1].next = (uint32_t)(nxt);                                          \
  } while (0)

/* PUSH_NODE for an object that may turn out to have one member
 * (OPEN_OBJ): `next` is set when it closes or becomes `cur`. */
#define PUSH_OBJ(at, ln) PUSH_NODE(MM_JSON_OBJ, at, ln)

/* PUSH for a scalar, whose `next` is the index after it. */
#define PUSH_LEAF(type_tag, at, ln)                                         \
  do {                                                                      \
    PUSH_NODE(type_tag, at, ln);                                            \
    np[-1].next = (uint32_t)count;                                          \
  } while (0)

/* Scans the string whose opening quote is at p, pushes its STR node and
 * leaves p after the closing quote. Plain bodies stay inline; anything
 * else (escapes, UTF-8, errors) goes through string_rest. */
#define STRING_NODE()                                                       \
  do {                                                                      \
    const uchar *s_ = p + 1, *q_;                                           \
    BLOCK_FIND(s_, q_);                                                     \
    if (q_ < end && *q_ == '"') {                                           \
      PUSH_LEAF(MM_JSON_STR, s_, q_ - s_);                                  \
    } else {                                                                \
      str_end_t r_ = string_rest(q_, end, base, err);                       \
      if (!r_.q) goto fail_inval;                                           \
      q_ = r_.q;                                                            \
      PUSH_LEAF(MM_JSON_STR | r_.esc, s_, q_ - s_);                         \
    }                                                                       \
    p = q_ + 1;                                                             \
  } while (0)

#define SKIP_WS() p = skip_ws(p, end)

/*
 * The parser is a set of states joined by gotos: `value` (a value is
 * expected, white space allowed), `key` (p is at a member name's quote),
 * `open_obj` and `member_obj` (an object, in a value or as a member's
 * value), `close` (container `cur` just ended), `after` (a scalar just
 * ended), `member_end` (a member's value just ended) and
 * `obj_next`/`arr_next` (a container's element just ended). `cur` points
 * at the innermost open container's node (NULL at the root; moved along
 * when the tape grows). While a container is open its node's `next` holds
 * the parent link (an index) and its `len` its element count so far
 * (bumped in memory as each element ends: a register for it made GCC
 * spill the block mask instead); `next` is put right when it closes, so
 * nesting costs no memory beyond the tape. Pushes go through `np`, the
 * next free node, kept beside `count`.
 *
 * Tape size: a node is pushed once its first byte is read, and every node
 * but the root was preceded by a byte of its own (',' or ':'), except a
 * container's first child, which follows the container's own '[' or '{';
 * a container that has closed then has a closing byte no node uses. So n
 * nodes written from b bytes with k non-empty containers still open
 * satisfy 2n - 1 - k <= b, k is at most the depth limit and at most b,
 * and (len + 1 + min(max_depth, len)) / 2 + 1 nodes always suffice, for
 * a bad input too: the tape never grows beyond that. Up to inputs of
 * about 5 MB it is allocated at that size at once (untouched pages cost
 * address space only) and pushes check no capacity; above, a bound-sized
 * tape would come from a fresh mmap on every parse (see
 * MM_JSON_TAPE_FIXED_MAX), so it starts at a quarter node per input byte
 * (events need about one per 7 bytes) and grows as needed.
 */
/* Largest tape allocated at its bound up front: glibc serves bigger
 * blocks with a fresh mmap on every call (its dynamic threshold stops at
 * 32 MB), whose page faults would cost more than the capacity checks. */
#ifndef MM_JSON_TAPE_FIXED_MAX /* tests may set 0 to force growth */
#define MM_JSON_TAPE_FIXED_MAX ((size_t)32 << 20)
#endif
/* Nodes of a tape that may grow, to start with (tests may set 1, so that
 * small inputs grow it at every other push too). */
#ifndef MM_JSON_TAPE_START
#define MM_JSON_TAPE_START(len) ((len) / 4 + 16)
#endif

/* The parser proper, for buf[0..len) with BOM, limits and the first tape
 * (cap nodes, at most `most`) already settled by mm_json_parse. `fixed`
 * is a constant at each call: 1 when cap == most, so pushes need no
 * capacity check, 0 when the tape may have to grow. */
static inline __attribute__((always_inline)) int
parse_tape(mm_json_doc_t *doc, const char *buf, size_t len, const uchar *p,
           unsigned max_depth, mm_err_t *err, mm_json_node_t *nodes,
           uint32_t cap, uint32_t most, const int fixed) {
  const uchar *base = (const uchar *)buf, *end = base + len;
  size_t count = 0;         /* nodes written */
  mm_json_node_t *np = nodes; /* nodes + count, where the next push goes */
  mm_json_node_t *cur = NULL; /* innermost open container, NULL at the root */
  /* below it, at least SAFE_READ bytes are left from p: the fast paths
   * test several bytes at once without a bound check for each */
  const uintptr_t safe =
      len >= SAFE_READ ? (uintptr_t)end - (SAFE_READ - 1) : (uintptr_t)base;
  unsigned depth_left = max_depth; /* containers that may still open */
  int rc = MM_OK;
#ifdef MM_SSE2
  stop_vec_t sv = STOP_VEC_INIT;
  /* hide the constants from the compiler, which would otherwise reload
   * them from memory before every block */
  __asm__("" : "+x"(sv.two), "+x"(sv.lim), "+x"(sv.bslash));
#endif
  block_t blk = {base, 0}; /* the block holding the next string's body */
  blk.stop = len >= BLOCK ? STOP_MASK64(base) : stop_mask_tail(base, end);

value: /* white space allowed before it */
  if (p >= end) {
    rc = fail_expect(err, base, p, end, "a value");
    goto fail;
  }
  /* strings and objects (string sets' and lists' elements in stream
   * events) before the jump table of the rest */
  if (LIKELY(*p == '"')) {
    STRING_NODE();
    goto after;
  }
  if (*p == '{') goto open_obj;
  /* (the switch's '"' and '{' cases are not reached: without them GCC
   * makes slower code for the rest) */
  switch (*p) {
  case ' ': case '\t': case '\n': case '\r':
    SKIP_WS();
    goto value;
  case '"':
    STRING_NODE();
    goto after;
  case '{':
    goto open_obj;
  case '[':
    if (depth_left == 0) goto too_deep;
    depth_left--;
    PUSH(MM_JSON_ARR, p, 0, LINK());
    cur = np - 1;
    p++;
    SKIP_WS();
    if (p < end && *p == ']') {
      p++;
      goto close;
    }
    goto value;
  case 't':
    if (end - p < 4 || memcmp(p, "true", 4) != 0) {
      rc = fail_at(err, base, p, "invalid literal (expected true)");
      goto fail;
    }
    PUSH_LEAF(MM_JSON_TRUE, p, 0);
    p += 4;
    goto after;
  case 'f':
    if (end - p < 5 || memcmp(p, "false", 5) != 0) {
      rc = fail_at(err, base, p, "invalid literal (expected false)");
      goto fail;
    }
    PUSH_LEAF(MM_JSON_FALSE, p, 0);
    p += 5;
    goto after;
  case 'n':
    if (end - p < 4 || memcmp(p, "null", 4) != 0) {
      rc = fail_at(err, base, p, "invalid literal (expected null)");
      goto fail;
    }
    PUSH_LEAF(MM_JSON_NULL, p, 0);
    p += 4;
    goto after;
  case '-': case '0': case '1': case '2': case '3': case '4': case '5':
  case '6': case '7': case '8': case '9': {
    const uchar *s = p;
    if (*p == '-') p++;
    if (p < end && *p == '0') {
      p++;
      if (p < end && is_digit(*p)) {
        rc = fail_at(err, base, p - 1, "leading zero in number");
        goto fail;
      }
    } else if (p < end && is_digit(*p)) {
      p = skip_digits(p + 1, end);
    } else {
      rc = fail_expect(err, base, p, end, "a digit after '-'");
      goto fail;
    }
    if (p < end && *p == '.') {
      p++;
      if (p >= end || !is_digit(*p)) {
        rc = fail_expect(err, base, p, end, "a digit after '.'");
        goto fail;
      }
      p = skip_digits(p, end);
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
      p++;
      if (p < end && (*p == '+' || *p == '-')) p++;
      if (p >= end || !is_digit(*p)) {
        rc = fail_expect(err, base, p, end, "a digit in the exponent");
        goto fail;
      }
      p = skip_digits(p, end);
    }
    PUSH_LEAF(MM_JSON_NUM, s, p - s);
    goto after;
  }
  default:
    rc = fail_expect(err, base, p, end, "a value");
    goto fail;
  }

/*
 * Most objects of an event are attribute values, {"S":"..."}, {"N":"..."}
 * or {"BOOL":true}: one member with a string or literal value. They are
 * read straight through, without making the object `cur` and then closing
 * it (parent link, depth counter, the close path's loads). The object is
 * pushed with len 1 and no parent link, which only the ways out that leave
 * it open write. A one-letter name (the type tags S, N, B, M, L) is
 * recognised from the 4 bytes after '{' while `safe` says they are there,
 * without a string scan. Anything else joins the general states at the
 * same byte with the same tape, so what is accepted and every error
 * message stay the same. There are two copies: an object that is a
 * member's value (the usual case) goes on at `member_end`, which knows
 * that `cur` is an object; any other at `after`.
 */
#define OPEN_OBJ(closed_)                                                   \
  do {                                                                      \
    if (depth_left == 0) goto too_deep;                                     \
    /* len 1 as if the object had one member: the other ways set it right */\
    PUSH_OBJ(p, 1);                                                         \
    if (LIKELY((uintptr_t)p < safe) && LIKELY(short_key(p + 1))) {          \
      PUSH_LEAF(MM_JSON_STR, p + 2, 1);                                     \
      p += 5;                                                               \
    } else {                                                                \
      p++;                                                                  \
      if (UNLIKELY(p >= end) || UNLIKELY(*p != '"')) goto open_obj_rest;    \
      STRING_NODE();                                                        \
      if (UNLIKELY(end - p < 2) || UNLIKELY(p[0] != ':'))                   \
        goto open_obj_key;                                                  \
      p++;                                                                  \
    }                                                                       \
    /* p is after the ':' of the first member, and before end */            \
    if (LIKELY(*p == '"')) {                                                \
      STRING_NODE();                                                        \
    } else if (*p == 't' && end - p >= 4 && load32(p) == LIT_TRUE) {        \
      PUSH_LEAF(MM_JSON_TRUE, p, 0);                                        \
      p += 4;                                                               \
    } else if (*p == 'f' && end - p >= 5 && load32(p + 1) == LIT_ALSE) {    \
      PUSH_LEAF(MM_JSON_FALSE, p, 0);                                       \
      p += 5;                                                               \
    } else if (*p == 'n' && end - p >= 4 && load32(p) == LIT_NULL) {        \
      PUSH_LEAF(MM_JSON_NULL, p, 0);                                        \
      p += 4;                                                               \
    } else { /* another value, or a bad literal: the general path says */   \
      p--;                                                                  \
      goto open_obj_key;                                                    \
    }                                                                       \
    if (LIKELY(p < end) && LIKELY(*p == '}')) {                             \
      np[-3].next = (uint32_t)count; /* `cur`, the depth never changed */   \
      p++;                                                                  \
      goto closed_;                                                         \
    }                                                                       \
    np[-3].next = LINK(); /* more members: the object is open after all */  \
    cur = np - 3;                                                           \
    depth_left--;                                                           \
    goto obj_next;                                                          \
  } while (0)

open_obj: /* p is at '{' of a value that is not a member's */
  OPEN_OBJ(after);
open_obj_key: /* the first member's value is not a string (or literal) */
  np[-2].len = 0;
  np[-2].next = LINK();
  cur = np - 2;
  depth_left--;
  goto key_colon;
open_obj_rest: /* p is just after '{' and not at '"' */
  np[-1].len = 0;
  np[-1].next = LINK();
  cur = np - 1;
  depth_left--;
  p = skip_ws_cold(p, end);
  if (p < end && *p == '}') {
    p++;
    goto close;
  }
  if (p >= end || *p != '"') {
    rc = fail_expect(err, base, p, end, "a string key or '}'");
    goto fail;
  }
  /* fall through */

key: /* p is at the opening quote of a member name */
  {
    STRING_NODE();
  key_colon: /* p is after the member name */
    if (LIKELY((uintptr_t)p < safe)) { /* ':' and the value's first byte */
      uint32_t w = load16(p);
      p++;
      if (LIKELY(w == load16((const uchar *)":\""))) goto member_str;
      if (LIKELY(w == load16((const uchar *)":{"))) goto member_obj;
      p--;
    }
    if (LIKELY(p < end) && LIKELY(*p == ':')) {
      p++;
    } else {
      p = skip_ws_cold(p, end);
      if (p >= end || *p != ':') {
        rc = fail_expect(err, base, p, end, "':'");
        goto fail;
      }
      p++;
    }
    /* the member's value: strings and objects (an attribute value and
     * its type tag's value) without the dispatch */
    if (p < end) {
      if (*p == '"') {
      member_str:
        STRING_NODE();
        cur->len++;
        goto obj_next;
      }
      if (*p == '{') {
      member_obj:
        OPEN_OBJ(member_end);
      }
    }
    goto value;
  }

member_end: /* a member's value just ended at p (not in the value states) */
  cur->len++;
  goto obj_next;

close: /* the container `cur` just ended at p */
  {
    uint32_t link = cur->next;
    cur->next = (uint32_t)count;
    depth_left++;
    if (link == NO_PARENT) goto done;
    cur = nodes + link;
    cur->len++;
    if ((cur->tag & 7u) == MM_JSON_OBJ) goto obj_next;
    goto arr_next;
  }

after: /* a scalar (or a container closed in open_obj) just ended at p */
  if (!cur) goto done;
  cur->len++;
  if ((cur->tag & 7u) != MM_JSON_OBJ) goto arr_next;
  /* fall through */

obj_next: /* a member of object `cur` just ended at p */
  if (LIKELY((uintptr_t)p < safe) &&
      LIKELY(load16(p) == load16((const uchar *)",\""))) {
    p++;
    goto key;
  }
  if (p < end) {
    if (*p == ',') goto obj_comma;
    if (*p == '}') {
      p++;
      goto close;
    }
    if (is_ws(*p)) {
      SKIP_WS();
      goto obj_next;
    }
  }
  rc = fail_expect(err, base, p, end, "',' or '}'");
  goto fail;
obj_comma:
  p++;
  if (LIKELY(p < end) && LIKELY(*p == '"')) goto key;
  p = skip_ws_cold(p, end);
  if (p >= end || *p != '"') {
    rc = fail_expect(err, base, p, end, "a string key");
    goto fail;
  }
  goto key;

arr_next: /* an element of array `cur` just ended at p */
  if (p < end) {
    if (*p == ',') {
      p++;
      goto value;
    }
    if (*p == ']') {
      p++;
      goto close;
    }
    if (is_ws(*p)) {
      SKIP_WS();
      goto arr_next;
    }
  }
  rc = fail_expect(err, base, p, end, "',' or ']'");
  goto fail;

done:
  SKIP_WS();
  if (p != end) {
    rc = fail_expect(err, base, p, end, "end of input after the value");
    goto fail;
  }
  doc->src = buf;
  doc->src_len = len;
  doc->nodes = nodes;
  doc->count = (uint32_t)count;
  doc->cap = cap;
  return MM_OK;

fail_inval: /* the message is already in err */
  rc = MM_EINVAL;
  goto fail;
too_deep:
  rc = mm_err_set(err, MM_ELIMIT, "byte %zu: nesting deeper than %u levels",
                  (size_t)(p - base), max_depth);
  goto fail;
nomem:
  rc = mm_err_set(err, MM_ENOMEM, "out of memory for the JSON tape (%zu bytes "
                  "of input)", len);
fail:
  free(nodes);
  return rc;
}

int mm_json_parse(mm_json_doc_t *doc, const char *buf, size_t len,
                  unsigned max_depth, mm_err_t *err) {
  if (!buf) buf = "", len = 0; /* no arithmetic on a null pointer */
  const uchar *base = (const uchar *)buf;
  memset(doc, 0, sizeof *doc);
  if (max_depth == 0) max_depth = MM_JSON_MAX_DEPTH;
  if (len > MM_JSON_MAX_INPUT) {
    return mm_err_set(err, MM_ELIMIT,
                      "byte 0: input of %zu bytes is larger than the limit "
                      "of %zu bytes",
                      len, MM_JSON_MAX_INPUT);
  }
  uint32_t most =
      (uint32_t)((len + 1 + (max_depth < len ? max_depth : len)) / 2 + 1);
  int fixed = (size_t)most * sizeof(mm_json_node_t) <= MM_JSON_TAPE_FIXED_MAX;
  uint32_t cap = most;
  if (!fixed && cap > MM_JSON_TAPE_START(len))
    cap = (uint32_t)MM_JSON_TAPE_START(len);
  mm_json_node_t *nodes = malloc((size_t)cap * sizeof *nodes);
  if (!nodes) {
    return mm_err_set(err, MM_ENOMEM, "out of memory for the JSON tape "
                      "(%zu bytes of input)", len);
  }
  const uchar *p = base;
  if (len >= 3 && base[0] == 0xEF && base[1] == 0xBB && base[2] == 0xBF)
    p += 3;
  if (fixed)
    return parse_tape(doc, buf, len, p, max_depth, err, nodes, cap, most, 1);
  return parse_tape(doc, buf, len, p, max_depth, err, nodes, cap, most, 0);
}

void mm_json_free(mm_json_doc_t *doc) {
  if (!doc) return;
  free(doc->nodes);
  memset(doc, 0, sizeof *doc);
}

/* ------------------------------------------------------------------ */
/* Reading strings and numbers                                          */
/* ------------------------------------------------------------------ */

/* Encodes code point cp (valid, not a surrogate) as UTF-8 into d. */
static inline size_t put_utf8(char *d, unsigned long cp) {
  if (cp < 0x80) {
    d[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    d[0] = (char)(0xC0 | (cp >> 6));
    d[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    d[0] = (char)(0xE0 | (cp >> 12));
    d[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    d[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  d[0] = (char)(0xF0 | (cp >> 18));
  d[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  d[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  d[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Decodes the escape at s[0] == '\\' of a validated string into d.
 * Returns the bytes written; *used gets the input bytes consumed. */
static inline size_t decode_escape(const uchar *s, char *d, size_t *used) {
  switch (s[1]) {
  case 'b': *d = '\b'; break;
  case 'f': *d = '\f'; break;
  case 'n': *d = '\n'; break;
  case 'r': *d = '\r'; break;
  case 't': *d = '\t'; break;
  case 'u': {
    unsigned long cp = (unsigned long)hex4(s + 2);
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      unsigned long lo = (unsigned long)hex4(s + 8);
      *used = 12;
      return put_utf8(d, 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00));
    }
    *used = 6;
    return put_utf8(d, cp);
  }
  default: *d = (char)s[1]; break; /* '"', '\\', '/' */
  }
  *used = 2;
  return 1;
}

size_t mm_json_unescape(const char *raw, size_t len, char *dst) {
  const uchar *s = (const uchar *)raw, *end = s + len;
  char *d = dst;
  while (s < end) {
    const uchar *bs = memchr(s, '\\', (size_t)(end - s));
    if (!bs) {
      memcpy(d, s, (size_t)(end - s));
      d += end - s;
      break;
    }
    memcpy(d, s, (size_t)(bs - s));
    d += bs - s;
    size_t used;
    d += decode_escape(bs, d, &used);
    s = bs + used;
  }
  return (size_t)(d - dst);
}

/* Compares the escaped slice raw[0..len) with s[0..n) by decoded text,
 * without allocating. */
static int escaped_eq(const uchar *raw, size_t len, const uchar *s, size_t n) {
  const uchar *r = raw, *rend = raw + len, *t = s, *tend = s + n;
  while (r < rend) {
    if (*r != '\\') {
      if (t >= tend || *t != *r) return 0;
      r++, t++;
      continue;
    }
    char tmp[4];
    size_t used, k = decode_escape(r, tmp, &used);
    if ((size_t)(tend - t) < k || memcmp(t, tmp, k) != 0) return 0;
    t += k;
    r += used;
  }
  return t == tend;
}

int mm_json_str_eq(const mm_json_doc_t *d, uint32_t i, const char *s,
                   size_t n) {
  const mm_json_node_t *nd = &d->nodes[i];
  const char *raw = d->src + (nd->tag >> 4);
  if (!(nd->tag & TAG_ESC)) return nd->len == n && memcmp(raw, s, n) == 0;
  if (n > nd->len) return 0; /* decoding never grows a string */
  return escaped_eq((const uchar *)raw, nd->len, (const uchar *)s, n);
}

uint32_t mm_json_get(const mm_json_doc_t *d, uint32_t obj, const char *key,
                     size_t klen) {
  const mm_json_node_t *nodes = d->nodes;
  if ((nodes[obj].tag & 7u) != MM_JSON_OBJ) return 0;
  uint32_t found = 0, k = obj + 1, end = nodes[obj].next;
  while (k < end) {
    if (mm_json_key_eq(d, k, key, klen)) found = k + 1;
    k = nodes[k + 1].next;
  }
  return found;
}

char *mm_json_strdup(const mm_json_doc_t *d, uint32_t i, size_t *len_out) {
  const mm_json_node_t *nd = &d->nodes[i];
  char *s = malloc((size_t)nd->len + 1);
  if (!s) return NULL;
  size_t n;
  if (nd->tag & TAG_ESC) {
    n = mm_json_unescape(d->src + (nd->tag >> 4), nd->len, s);
  } else {
    n = nd->len;
    memcpy(s, d->src + (nd->tag >> 4), n);
  }
  s[n] = '\0';
  if (len_out) *len_out = n;
  return s;
}

/* 1 when s[0..n) is exactly a JSON number (RFC 8259 section 6). */
static int is_json_number(const char *s, size_t n) {
  const uchar *p = (const uchar *)s, *end = p + n;
  if (p < end && *p == '-') p++;
  if (p >= end) return 0;
  if (*p == '0') {
    p++;
  } else if (is_digit(*p)) {
    while (p < end && is_digit(*p)) p++;
  } else {
    return 0;
  }
  if (p < end && *p == '.') {
    p++;
    if (p >= end || !is_digit(*p)) return 0;
    while (p < end && is_digit(*p)) p++;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < end && (*p == '+' || *p == '-')) p++;
    if (p >= end || !is_digit(*p)) return 0;
    while (p < end && is_digit(*p)) p++;
  }
  return p == end;
}

int mm_json_double(const mm_json_doc_t *d, uint32_t i, double *out) {
  const mm_json_node_t *nd = &d->nodes[i];
  mm_json_type_t t = (mm_json_type_t)(nd->tag & 7u);
  char small[128];
  char *copy = small;
  int rc = MM_OK;
  size_t n = nd->len;

  if (t != MM_JSON_NUM && t != MM_JSON_STR) return MM_EINVAL;
  if (!(nd->tag & TAG_ESC) && n > 0 && n <= 15) {
    /* the usual epoch time: an integer of at most 15 digits is exact as a
     * double, which is what strtod would return */
    const char *p = d->src + (nd->tag >> 4), *e = p + n;
    int neg = *p == '-';
    p += neg;
    if (p < e && (*p != '0' || e - p == 1)) {
      int64_t v = 0;
      while (p < e && is_digit((uchar)*p)) v = v * 10 + (*p++ - '0');
      if (p == e) {
        *out = neg ? -(double)v : (double)v;
        return MM_OK;
      }
    }
  }
  if (n + 1 > sizeof small) {
    copy = malloc(n + 1);
    if (!copy) return MM_ENOMEM;
  }
  if (t == MM_JSON_STR && (nd->tag & TAG_ESC))
    n = mm_json_unescape(d->src + (nd->tag >> 4), n, copy);
  else
    memcpy(copy, d->src + (nd->tag >> 4), n);
  copy[n] = '\0';
  /* A NUM node is already valid; a string must hold exactly a number (no
   * white space, hex, "inf" or "nan", which strtod would take). */
  if (t == MM_JSON_STR && !is_json_number(copy, n)) {
    rc = MM_EINVAL;
    goto done;
  }
  *out = strtod(copy, NULL);
done:
  if (copy != small) free(copy);
  return rc;
}

void mm_json_emit(mm_buf_t *b, const mm_json_doc_t *d, uint32_t n, mm_json_str_fn str_fn) {
  const char *raw = mm_json_raw(d, n);
  switch (mm_json_type(d, n)) {
  case MM_JSON_NULL: mm_buf_adds(b, "null"); return;
  case MM_JSON_TRUE: mm_buf_adds(b, "true"); return;
  case MM_JSON_FALSE: mm_buf_adds(b, "false"); return;
  case MM_JSON_NUM: mm_buf_add(b, raw, mm_json_len(d, n)); return;
  case MM_JSON_STR:
    mm_buf_addc(b, '"');
    if (str_fn) str_fn(b, raw, mm_json_len(d, n));
    else mm_buf_add(b, raw, mm_json_len(d, n));
    mm_buf_addc(b, '"');
    return;
  case MM_JSON_ARR:
  case MM_JSON_OBJ: break;
  }
  int obj = mm_json_type(d, n) == MM_JSON_OBJ;
  mm_buf_addc(b, obj ? '{' : '[');
  uint32_t c = mm_json_first(d, n);
  for (uint32_t i = 0; i < mm_json_len(d, n); i++) {
    if (i) mm_buf_addc(b, ',');
    if (obj) {
      mm_json_emit(b, d, c, str_fn);
      mm_buf_addc(b, ':');
      c = mm_json_next(d, c);
    }
    mm_json_emit(b, d, c, str_fn);
    c = mm_json_next(d, c);
  }
  mm_buf_addc(b, obj ? '}' : ']');
}

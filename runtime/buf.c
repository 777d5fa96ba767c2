/*
 * buf.c - growable buffer and JSON output (see buf.h).
 */
#include "buf.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

int mm_buf_reserve(mm_buf_t *b, size_t extra) {
  if (b->failed) return MM_ENOMEM;
  if (extra > SIZE_MAX / 2 - b->len) goto fail;
  size_t need = b->len + extra + 1; /* room for the NUL */
  if (need <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need) cap *= 2;
  char *p = realloc(b->data, cap);
  if (!p) goto fail;
  b->data = p;
  b->cap = cap;
  return 0;
fail:
  b->failed = 1;
  return MM_ENOMEM;
}

int mm_buf_add(mm_buf_t *b, const void *p, size_t n) {
  if (mm_buf_reserve(b, n)) return MM_ENOMEM;
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

int mm_buf_adds(mm_buf_t *b, const char *s) { return mm_buf_add(b, s, strlen(s)); }

int mm_buf_addc(mm_buf_t *b, char c) { return mm_buf_add(b, &c, 1); }

int mm_buf_printf(mm_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) {
    b->failed = 1;
    return MM_ENOMEM;
  }
  if (mm_buf_reserve(b, (size_t)n)) return MM_ENOMEM;
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return 0;
}

/* The well-formed UTF-8 character at s (see buf.h). */
size_t mm_utf8_next(const char *str, size_t n, uint32_t *cpo) {
  const unsigned char *s = (const unsigned char *)str;
  if (n == 0) return 0;
  unsigned c = s[0];
  if (c < 0x80) {
    if (cpo) *cpo = c;
    return 1;
  }
  size_t len;
  uint32_t min;
  if (c >= 0xC2 && c <= 0xDF) { len = 2; min = 0x80; }
  else if (c >= 0xE0 && c <= 0xEF) { len = 3; min = 0x800; }
  else if (c >= 0xF0 && c <= 0xF4) { len = 4; min = 0x10000; }
  else return 0;
  if (n < len) return 0;
  uint32_t cp = c & (0x3Fu >> (len - 1));
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3Fu);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  if (cpo) *cpo = cp;
  return len;
}

int mm_buf_json_str(mm_buf_t *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *p = (const unsigned char *)s;
  if (mm_buf_reserve(b, n + 2)) return MM_ENOMEM;
  mm_buf_addc(b, '"');
  size_t i = 0, run = 0; /* run: start of bytes copied verbatim */
  while (i < n) {
    unsigned c = p[i];
    if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
      i++;
      continue;
    }
    size_t l = c >= 0x80 ? mm_utf8_next(s + i, n - i, NULL) : 0;
    if (l) {
      i += l;
      continue;
    }
    mm_buf_add(b, p + run, i - run);
    char esc[7];
    switch (c) {
    case '"': mm_buf_add(b, "\\\"", 2); break;
    case '\\': mm_buf_add(b, "\\\\", 2); break;
    case '\n': mm_buf_add(b, "\\n", 2); break;
    case '\r': mm_buf_add(b, "\\r", 2); break;
    case '\t': mm_buf_add(b, "\\t", 2); break;
    default:
      if (c < 0x20) {
        memcpy(esc, "\\u00", 4);
        esc[4] = hex[c >> 4];
        esc[5] = hex[c & 15];
        mm_buf_add(b, esc, 6);
      } else {
        mm_buf_add(b, "\xEF\xBF\xBD", 3); /* U+FFFD for an invalid byte */
      }
    }
    i++;
    run = i;
  }
  mm_buf_add(b, p + run, n - run);
  return mm_buf_addc(b, '"');
}

int mm_buf_json_double(mm_buf_t *b, double v) {
  if (!isfinite(v)) return mm_buf_adds(b, "null");
  char tmp[32];
  /* The shortest %.*g that reads back as exactly v. */
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*g", prec, v);
    if (strtod(tmp, NULL) == v) break;
  }
  return mm_buf_adds(b, tmp);
}

void mm_buf_reset(mm_buf_t *b) {
  b->len = 0;
  b->failed = 0;
  if (b->data) b->data[0] = '\0';
}

void mm_buf_free(mm_buf_t *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
  b->failed = 0;
}

char *mm_buf_take(mm_buf_t *b, size_t *len) {
  if (mm_buf_reserve(b, 0)) return NULL;
  char *d = b->data;
  if (len) *len = b->len;
  b->data = NULL;
  b->len = b->cap = 0;
  return d;
}

int mm_buf_read_file(const char *path, char **out, size_t *len, mm_err_t *err) {
  FILE *f = fopen(path, "rb");
  if (!f) return mm_err_set(err, MM_EIO, "cannot open %s: %s", path, strerror(errno));
  mm_buf_t b = MM_BUF_INIT;
  char chunk[65536];
  size_t r;
  while ((r = fread(chunk, 1, sizeof chunk, f)) > 0 && mm_buf_add(&b, chunk, r) == 0) {
  }
  if (!b.data) mm_buf_adds(&b, ""); /* an empty file */
  int rc = 0;
  if (mm_buf_failed(&b))
    rc = mm_err_set(err, MM_ENOMEM, "cannot read %s: out of memory", path);
  else if (ferror(f))
    rc = mm_err_set(err, MM_EIO, "cannot read %s: %s", path, strerror(errno));
  fclose(f);
  if (rc) {
    mm_buf_free(&b);
    return rc;
  }
  *out = mm_buf_take(&b, len);
  return 0;
}

uint64_t mm_fnv1a(const void *p, size_t n) {
  const unsigned char *b = p;
  uint64_t h = 14695981039346656037ULL;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ULL;
  return h;
}

/* Value + 1 of each base64 character (RFC 4648 standard alphabet); 0 for
 * every other byte, '=' included. */
static const unsigned char b64val[256] = {
    ['A'] = 1, ['B'] = 2, ['C'] = 3, ['D'] = 4, ['E'] = 5, ['F'] = 6, ['G'] = 7,
    ['H'] = 8, ['I'] = 9, ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14,
    ['O'] = 15, ['P'] = 16, ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21,
    ['V'] = 22, ['W'] = 23, ['X'] = 24, ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28,
    ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32, ['g'] = 33, ['h'] = 34, ['i'] = 35,
    ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40, ['o'] = 41, ['p'] = 42,
    ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48, ['w'] = 49,
    ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
    ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63,
    ['/'] = 64,
};

/* mm_b64_decode: every quad but the last is four table reads and one
 * test; the last one handles the padding. */
long mm_b64_decode(const char *s, size_t n, char *out) {
  const unsigned char *u = (const unsigned char *)s;
  size_t o = 0, i = 0;
  if (n % 4) return -1;
  if (n == 0) return 0;
  for (; i + 4 < n; i += 4) {
    unsigned a = b64val[u[i]], b = b64val[u[i + 1]], c = b64val[u[i + 2]],
             d = b64val[u[i + 3]];
    if (!a || !b || !c || !d) return -1;
    uint32_t q = (a - 1) << 18 | (b - 1) << 12 | (c - 1) << 6 | (d - 1);
    out[o++] = (char)(q >> 16);
    out[o++] = (char)(q >> 8);
    out[o++] = (char)q;
  }
  /* the last quad: "xxxx", "xxx=" or "xx==" */
  unsigned a = b64val[u[i]], b = b64val[u[i + 1]];
  if (!a || !b) return -1;
  out[o++] = (char)((a - 1) << 2 | (b - 1) >> 4);
  if (u[i + 2] == '=') return u[i + 3] == '=' ? (long)o : -1;
  unsigned c = b64val[u[i + 2]];
  if (!c) return -1;
  out[o++] = (char)(((b - 1) & 15) << 4 | (c - 1) >> 2);
  if (u[i + 3] == '=') return (long)o;
  unsigned d = b64val[u[i + 3]];
  if (!d) return -1;
  out[o++] = (char)(((c - 1) & 3) << 6 | (d - 1));
  return (long)o;
}

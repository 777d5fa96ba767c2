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

/*
 * buf.h - a growable byte buffer and JSON text output.
 *
 * Provides: mm_buf_t (append bytes, formatted text, JSON string literals
 * and numbers), mm_utf8_next, the one UTF-8 decoder the runtime's
 * writers share, and mm_b64_decode, its one base64 decoder. Every append returns 0 or MM_ENOMEM; after a failure the
 * buffer keeps what it had and remembers the failure (mm_buf_failed), so a
 * writer may append a whole document and check once. The data is owned by
 * the buffer (mm_buf_free) until taken with mm_buf_take.
 */
#ifndef MM_BUF_H
#define MM_BUF_H

#include <stddef.h>
#include <stdint.h>
#include "err.h"

typedef struct mm_buf {
  char *data;    /* NUL-terminated when len > 0 or after any append */
  size_t len;
  size_t cap;
  int failed;
} mm_buf_t;

#define MM_BUF_INIT {NULL, 0, 0, 0}

int mm_buf_reserve(mm_buf_t *b, size_t extra);
int mm_buf_add(mm_buf_t *b, const void *p, size_t n);
int mm_buf_adds(mm_buf_t *b, const char *s);
int mm_buf_addc(mm_buf_t *b, char c);
int mm_buf_printf(mm_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* s as a JSON string literal: quotes, escapes, control characters as
 * \u00XX; invalid UTF-8 bytes become U+FFFD so the output is always valid. */
int mm_buf_json_str(mm_buf_t *b, const char *s, size_t n);
/* A double as the shortest JSON number that reads back the same;
 * NaN/inf as null. */
int mm_buf_json_double(mm_buf_t *b, double v);
/* Length of the well-formed UTF-8 character at s (n bytes left; RFC 3629:
 * no overlongs, surrogates or values above U+10FFFF), its code point in
 * *cp (cp may be NULL); 0 when the bytes are not one (or n is 0). */
size_t mm_utf8_next(const char *s, size_t n, uint32_t *cp);
static inline int mm_buf_failed(const mm_buf_t *b) { return b->failed; }
void mm_buf_reset(mm_buf_t *b);          /* len = 0, keeps memory */
void mm_buf_free(mm_buf_t *b);
/* Hands the data to the caller (free()); the buffer becomes empty. */
char *mm_buf_take(mm_buf_t *b, size_t *len);

/* Reads the whole file at path into *out (NUL-terminated, owned by the
 * caller: free()), its length in *len. Returns 0, MM_EIO (cannot open or
 * read, naming the path and the reason) or MM_ENOMEM. */
int mm_buf_read_file(const char *path, char **out, size_t *len, mm_err_t *err);

/* 64-bit FNV-1a of p[0..n): the hash of the in-process hash tables and the
 * base of sketch.h's item hash (so its values are stored: never change it). */
uint64_t mm_fnv1a(const void *p, size_t n);

/* Decodes RFC 4648 base64 (standard alphabet, padded to a multiple of 4,
 * '=' only in the last quantum's last one or two places; non-zero pad bits
 * are tolerated) into out, which must hold n / 4 * 3 bytes. Returns the
 * decoded length, or -1 for malformed text. The one decoder of the
 * runtime: AttributeValues of type B (conv.c) and stored sketches
 * (store_dynamodb.c). */
long mm_b64_decode(const char *s, size_t n, char *out);

#endif

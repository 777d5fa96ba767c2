/*
 * json.h - a validating, single-pass JSON parser producing a flat tape.
 *
 * Provides: mm_json_parse, which checks the whole input (RFC 8259 grammar,
 * UTF-8 well-formedness including overlongs and surrogates, \u escapes with
 * paired surrogates, a nesting limit) in one pass with an explicit stack (no
 * recursion, so no input can overflow the C stack), and records every value
 * as a 12-byte node on a tape. Nothing is unescaped or converted up front:
 * strings and numbers are slices of the input, read on demand.
 *
 * Ownership: the document borrows the input buffer (it must outlive the
 * document) and owns the tape (mm_json_free). Node indices are uint32_t;
 * index 0 is the root value.
 *
 * Tape layout: a container node is followed by its children in order; an
 * object's children alternate key (a STR node) and value. Every node records
 * the index just past its subtree (mm_json_next), so siblings are found by
 * skipping, not by walking.
 */
#ifndef MM_JSON_H
#define MM_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "buf.h"
#include "err.h"

/* Default nesting limit (arrays and objects) for a whole document. */
#define MM_JSON_MAX_DEPTH 512
/* Largest input accepted (offsets are 28 bits). */
#define MM_JSON_MAX_INPUT ((size_t)1 << 28)

typedef enum {
  MM_JSON_NULL = 0,
  MM_JSON_FALSE,
  MM_JSON_TRUE,
  MM_JSON_NUM,
  MM_JSON_STR,
  MM_JSON_ARR,
  MM_JSON_OBJ
} mm_json_type_t;

/* One tape node. tag: bits 0-2 type, bit 3 "string has escapes",
 * bits 4-31 byte offset of the value's first byte (for STR: the byte after
 * the opening quote). len: STR/NUM raw byte length (STR without quotes);
 * ARR element count; OBJ member count. next: index past the subtree. */
typedef struct mm_json_node {
  uint32_t tag;
  uint32_t len;
  uint32_t next;
} mm_json_node_t;

typedef struct mm_json_doc {
  const char *src;        /* borrowed input */
  size_t src_len;
  mm_json_node_t *nodes;  /* owned */
  uint32_t count;         /* nodes used */
  uint32_t cap;
} mm_json_doc_t;

/* Parses buf[0..len) into doc. A leading UTF-8 BOM and surrounding white
 * space are accepted; anything after the root value is an error. max_depth
 * 0 means MM_JSON_MAX_DEPTH. On error the message names the byte offset and
 * what was expected; doc is left empty (safe to mm_json_free). */
int mm_json_parse(mm_json_doc_t *doc, const char *buf, size_t len,
                  unsigned max_depth, mm_err_t *err);

/* Releases the tape (doc may be NULL or empty). */
void mm_json_free(mm_json_doc_t *doc);

static inline mm_json_type_t mm_json_type(const mm_json_doc_t *d, uint32_t i) {
  return (mm_json_type_t)(d->nodes[i].tag & 7u);
}
static inline uint32_t mm_json_next(const mm_json_doc_t *d, uint32_t i) {
  return d->nodes[i].next;
}
static inline uint32_t mm_json_len(const mm_json_doc_t *d, uint32_t i) {
  return d->nodes[i].len;
}
/* Raw bytes of a STR (escapes not decoded) or NUM node. Borrowed from src. */
static inline const char *mm_json_raw(const mm_json_doc_t *d, uint32_t i) {
  return d->src + (d->nodes[i].tag >> 4);
}
static inline int mm_json_has_escapes(const mm_json_doc_t *d, uint32_t i) {
  return (d->nodes[i].tag >> 3) & 1u;
}

/* Index of the first child of container i (only valid when len > 0). */
static inline uint32_t mm_json_first(const mm_json_doc_t *d, uint32_t i) {
  (void)d;
  return i + 1;
}

/* Documents whose input is at least this large are read back from memory
 * rather than from the caches once parsed (the tape takes about 1.6 bytes
 * per input byte): their readers prefetch (mm_json_prefetch) what they
 * read next. Below it the data is still cached and prefetching only costs. */
#define MM_JSON_PREFETCH_MIN ((size_t)512 << 10)

/* Asks the caches for the subtree of node i - its tape nodes and its text,
 * at most `most` bytes of each - while the caller works on something else,
 * so that a later walk of it does not wait on memory one cache line after
 * another. Only a hint: nothing is read. (The empty asm keeps each loop:
 * GCC at -O3 deletes a loop that does nothing but prefetch.) */
static inline void mm_json_prefetch(const mm_json_doc_t *d, uint32_t i, size_t most) {
  if (i >= d->count) return;
  uint32_t end = d->nodes[i].next;
  const char *t = (const char *)&d->nodes[i];
  const char *t_end = (const char *)&d->nodes[end < d->count ? end : d->count];
  const char *s = d->src + (d->nodes[i].tag >> 4);
  const char *s_end = end < d->count ? d->src + (d->nodes[end].tag >> 4) : d->src + d->src_len;
  if ((size_t)(t_end - t) > most) t_end = t + most;
  if (s_end < s) s_end = s;
  if ((size_t)(s_end - s) > most) s_end = s + most;
  for (; t < t_end; t += 64) {
    __builtin_prefetch(t);
    __asm__ volatile("" : : "r"(t));
  }
  for (; s < s_end; s += 64) {
    __builtin_prefetch(s);
    __asm__ volatile("" : : "r"(s));
  }
}

/* Decodes the escapes of a validated STR slice into dst, which must hold at
 * least len bytes (decoding never grows a string). Returns the decoded
 * length. */
size_t mm_json_unescape(const char *raw, size_t len, char *dst);

/* Value node of member `key` (klen bytes, unescaped) in object obj, or 0
 * when absent (0 is the root, never a member). Keys with escapes compare by
 * their decoded text. The last duplicate wins, as in JSON.parse. */
uint32_t mm_json_get(const mm_json_doc_t *d, uint32_t obj, const char *key,
                     size_t klen);

/* Compares STR node i's decoded text with s: 1 when equal. */
int mm_json_str_eq(const mm_json_doc_t *d, uint32_t i, const char *s, size_t n);

/* mm_json_str_eq with the unescaped case inline (no call, short names
 * compared bytewise): member lookups run it for every member they pass. */
static inline int mm_json_key_eq(const mm_json_doc_t *d, uint32_t i, const char *s,
                                 size_t n) {
  const mm_json_node_t *nd = &d->nodes[i];
  if (nd->tag & 8u) return mm_json_str_eq(d, i, s, n); /* escapes */
  if (nd->len != n) return 0;
  const char *raw = d->src + (nd->tag >> 4);
  if (n > 16) return memcmp(raw, s, n) == 0;
  for (size_t j = 0; j < n; j++)
    if (raw[j] != s[j]) return 0;
  return 1;
}

/* Copies STR node i's decoded text into a malloc'd NUL-terminated string
 * (caller frees). NULL on allocation failure. */
char *mm_json_strdup(const mm_json_doc_t *d, uint32_t i, size_t *len_out);

/* Writes string contents (raw, escapes kept) into b; see mm_json_emit. */
typedef void (*mm_json_str_fn)(mm_buf_t *b, const char *raw, size_t len);

/* Appends the value at node to b as compact JSON: white space dropped,
 * numbers and literals copied as they arrived (the parser validated them),
 * string contents copied raw, or through str_fn when it is not NULL (the
 * quotes are written here). Recursion is bounded by the parse's depth
 * limit. Check mm_buf_failed(b) afterwards. */
void mm_json_emit(mm_buf_t *b, const mm_json_doc_t *d, uint32_t node, mm_json_str_fn str_fn);

/* Number node i (or a STR holding a number) as a double. Returns 0, or
 * MM_EINVAL when the text is not a number. */
int mm_json_double(const mm_json_doc_t *d, uint32_t i, double *out);

#endif

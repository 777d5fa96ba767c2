/*
 * agg.h - aggregates: kinds, deltas, and the merge rules every store shares.
 *
 * Provides: the aggregate kinds of DESIGN section 4, the delta a record
 * contributes (mm_delta_t), delta coalescing within a batch, and, for the
 * in-process stores, the stored encoding of a row's value with the merge and
 * JSON rendering of that encoding. Relies on decimal.h and sketch.h.
 *
 * Stored encoding (in-process stores; one byte string per row):
 *   sum, count       decimal text                         "12.5"
 *   min, max         tag byte 'n' or 's' then the text     "n12.5" / "sabc"
 *   first, last      the event time as 17 significant digits, '|', then
 *                    the min/max scalar encoding            "1700000000|n3"
 *   set              members, each as a min/max scalar, sorted bytewise,
 *                    separated by '\0'
 *   hll, topk        the sketch bytes of sketch.h
 */
#ifndef MM_AGG_H
#define MM_AGG_H

#include <stddef.h>
#include <stdint.h>
#include "err.h"
#include "decimal.h"

typedef enum {
  MM_AGG_SUM = 0,
  MM_AGG_COUNT,
  MM_AGG_MIN,
  MM_AGG_MAX,
  MM_AGG_FIRST,
  MM_AGG_LAST,
  MM_AGG_SET,
  MM_AGG_HLL,
  MM_AGG_TOPK
} mm_agg_t;

/* Every aggregate's name, in the enum's order, for messages that list
 * them (mm_agg_name gives one; check_agg holds the two together). */
#define MM_AGG_NAMES "sum, count, min, max, first, last, set, hll, topk"

/* A scalar value from the script: a number (exact decimal) or a string. */
typedef struct mm_scalar {
  int is_num;
  mm_dec_t num;   /* when is_num */
  char *str;      /* when !is_num: owned, NUL-terminated */
  size_t len;
} mm_scalar_t;

/* What one record adds to one key (owned by whoever created it; release
 * with mm_delta_free). */
typedef struct mm_delta {
  mm_agg_t agg;
  mm_scalar_t v;          /* sum/count: number; min..last: scalar;
                             hll/topk: the item (string or number) */
  int64_t weight;         /* topk: weight (>= 1); 1 otherwise */
  double time;            /* first/last: event time, epoch seconds */
  mm_scalar_t *members;   /* set: owned array */
  size_t nmembers;
} mm_delta_t;

/* Name <-> kind. mm_agg_parse returns MM_EINVAL for an unknown name. */
int mm_agg_parse(const char *name, mm_agg_t *out);
const char *mm_agg_name(mm_agg_t agg);
/* 1 when the pipeline must define value() for this aggregate. */
int mm_agg_needs_value(mm_agg_t agg);
/* 1 for sum and count, whose deltas may be added together before writing. */
int mm_agg_is_additive(mm_agg_t agg);

void mm_scalar_free(mm_scalar_t *s);
int mm_scalar_copy(mm_scalar_t *dst, const mm_scalar_t *src, mm_err_t *err);
/* Numbers before strings; numbers exactly, strings bytewise. */
int mm_scalar_cmp(const mm_scalar_t *a, const mm_scalar_t *b);

void mm_delta_free(mm_delta_t *d);

/* Merges delta d into a stored value (old may be NULL/0 for a new row) and
 * returns the new stored value as a malloc'd buffer in *out and *out_len
 * (caller frees). *changed is 0 when the row is unchanged (a min that is not
 * lower, a first that is not earlier). A stored value that cannot be parsed
 * is MM_EPERM, never overwritten.
 * Details (agg.c): *changed is exactly "the new bytes differ from old" (1
 * for a new row); ties keep the stored value for min/max/first and take
 * the delta for last. Every failure other than MM_ENOMEM is MM_EPERM with a
 * message (also a delta of the wrong type or a sum needing > 38 digits);
 * *out is then NULL. */
int mm_agg_merge(const mm_delta_t *d, const void *old, size_t old_len,
                 char **out, size_t *out_len, int *changed, mm_err_t *err);

/* mm_agg_merge into a buffer the caller keeps (buf.h): out is reset, then
 * holds the new stored value (data non-NULL and NUL-terminated after it,
 * also when the value is empty), so a store merging many rows allocates
 * nothing per row once out has grown. Same results and failures; after a
 * failure out's content is unspecified. old must not point into out. */
struct mm_buf;
int mm_agg_merge_buf(const mm_delta_t *d, const void *old, size_t old_len,
                     struct mm_buf *out, int *changed, mm_err_t *err);

/* Renders a stored value as the JSON `value` of a query row (DESIGN 5):
 * a number as a JSON number with its decimal text, a set as an array, hll
 * as its estimate, topk as [[item, count], ...]. Returns a malloc'd string.
 * (hll: the estimate rounded to an integer; topk: the MM_TOPK_RENDER
 * largest counters of sketch.h, count descending then item; set: members
 * in stored order. An unparsable value is MM_EPERM.) */
int mm_agg_render(mm_agg_t agg, const void *v, size_t len, char **json,
                  mm_err_t *err);

/* Combines two stored values of the same aggregate (query --last: sum/count
 * add, min/max compare, first/last by time, set union, sketch merge).
 * (a is the older row: a time tie keeps a for first and takes b for last.
 * Either pointer may be NULL for "no value", not both (MM_EINVAL); other
 * failures are MM_EPERM as for mm_agg_merge.) */
int mm_agg_combine(mm_agg_t agg, const void *a, size_t alen, const void *b,
                   size_t blen, char **out, size_t *out_len, mm_err_t *err);

#endif

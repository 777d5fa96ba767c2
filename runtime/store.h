/*
 * store.h - where aggregates live: the interface every backend implements.
 *
 * Provides: mm_store_open (by URL: "memory://", "sqlite://PATH",
 * "dynamodb://TABLE"), a batch merge that starts every merge of a batch
 * together and completes them together (in-process backends simply loop;
 * the DynamoDB backend runs them concurrently), and row queries.
 *
 * Ownership: a store is owned by its opener (mm_store_destroy). Merge ops
 * and their strings are borrowed for the duration of one mm_store_merge.
 *
 * Table layout (all backends, DESIGN section 4): one row per (key, bucket):
 * pk = key, sk = bucket (0 when not windowed), v = value, ttl = expiry
 * (epoch seconds, windowed only).
 */
#ifndef MM_STORE_H
#define MM_STORE_H

#include <stddef.h>
#include <stdint.h>
#include "agg.h"
#include "err.h"

/* One merge of one delta into one row. */
typedef struct mm_merge {
  /* in */
  const char *key;       /* borrowed */
  size_t key_len;
  int64_t bucket;        /* 0 when not windowed */
  int64_t ttl;           /* epoch seconds; 0 = no ttl */
  const mm_delta_t *delta; /* borrowed */
  /* out: 0, MM_ERETRY (transient: throttled, 5xx, network), MM_EPERM
   * (validation, missing table, unparsable stored sketch), MM_EUNKNOWN
   * (sent but no answer), MM_EDEADLINE (not started: deadline) */
  int status;
  mm_err_t err;
} mm_merge_t;

/* One row read back. Borrowed for the callback's duration (every pointer,
 * stored included). */
typedef struct mm_row {
  const char *key;
  int64_t bucket;
  const char *value_json;  /* rendered as agg.h mm_agg_render does */
  int64_t ttl;             /* 0 when none */
  /* The value in agg.h's stored encoding, for mm_agg_combine (query
   * --last). agg is the row's aggregate when agg_exact = 1: memory:// and
   * sqlite:// keep it per row, and dynamodb:// knows set, hll and topk from
   * the attribute types. With agg_exact = 0 (dynamodb:// scalars, whose
   * items do not name their aggregate) agg names the family, and stored is
   * encoded for that family:
   *   MM_AGG_SUM    a number without t: sum, count, min or max; stored is
   *                 the sum/count text ("12.5"; min/max store "n12.5")
   *   MM_AGG_MIN    a string without t: min or max ("sabc")
   *   MM_AGG_FIRST  a value with an event time t: first or last
   * query.h turns such a row into the caller's aggregate. */
  mm_agg_t agg;
  int agg_exact;
  const void *stored;
  size_t stored_len;
} mm_row_t;

/* Return non-zero to stop the iteration. */
typedef int (*mm_row_fn)(void *ud, const mm_row_t *row);

typedef struct mm_store mm_store_t;

typedef struct mm_store_vt {
  const char *scheme;
  int (*merge)(mm_store_t *s, mm_merge_t *ops, size_t n, int64_t deadline_ms);
  int (*query)(mm_store_t *s, const char *key, const int64_t *bucket,
               mm_row_fn fn, void *ud, mm_err_t *err);
  void (*destroy)(mm_store_t *s);
} mm_store_vt_t;

/* Every backend struct starts with this. */
struct mm_store {
  const mm_store_vt_t *vt;
};

/* Options a backend may use. */
typedef struct mm_store_opts {
  int max_inflight;        /* concurrent requests (DynamoDB), default 32 */
  int64_t request_timeout_ms; /* per request (DynamoDB), default 3000 */
} mm_store_opts_t;

/* Opens the backend named by url. Unknown scheme or unusable location is
 * MM_EINVAL naming the URL. */
int mm_store_open(mm_store_t **out, const char *url, const mm_store_opts_t *opts,
                  mm_err_t *err);

/* Runs every op; each op's status/err is set. deadline_ms is an absolute
 * epoch-ms time after which no request starts (0 = none). Returns 0 unless
 * the call itself could not run (then every op is failed too). */
int mm_store_merge(mm_store_t *s, mm_merge_t *ops, size_t n, int64_t deadline_ms);

/* Calls fn for each row of key (one bucket when bucket != NULL), in
 * ascending bucket order. */
int mm_store_query(mm_store_t *s, const char *key, const int64_t *bucket,
                   mm_row_fn fn, void *ud, mm_err_t *err);

void mm_store_destroy(mm_store_t *s);

/* Backend constructors (used by mm_store_open). */
int mm_store_memory_open(mm_store_t **out, mm_err_t *err);
int mm_store_sqlite_open(mm_store_t **out, const char *path, mm_err_t *err);

/* Test hook of the memory backend: the next `count` merges of `key` (any
 * bucket) fail with `status` (MM_ERETRY, MM_EPERM or MM_EUNKNOWN; for
 * MM_EUNKNOWN the merge IS applied, as when an answer is lost). */
void mm_store_memory_inject(mm_store_t *s, const char *key, int count, int status);

#endif

/*
 * query.h - reading aggregates back: `murmur-ddb query` (DESIGN section 5).
 *
 * Provides: mm_query_run, which prints a key's rows, one bucket, or the
 * combination of a window's buckets (--last), and mm_query_window, the
 * window rule on its own. Relies on store.h (rows with their stored
 * encoding), agg.h (mm_agg_combine, mm_agg_render) and config.h (window
 * durations).
 *
 * Output (one JSON object per line, on `out`):
 *   rows     {"key":K,"bucket":B,"value":V} per row, ascending bucket
 *            (every row of K, or bucket N only with --bucket N); V is
 *            rendered as agg.h mm_agg_render does.
 *   --last   one object {"key":K,"last":"7d","from":F,"to":T,"rows":R,
 *            "value":V}: V combines the R rows whose bucket is in [F, T]
 *            with mm_agg_combine, oldest first (sum/count add, min/max
 *            compare, first/last by event time, set union, hll/topk merge).
 * A key without a row (or without a row in the window) prints nothing, and
 * is not an error.
 *
 * The window rule (--last D with granularity G, now = the caller's clock):
 *   D must be a whole number of buckets: n = D / G (else MM_EINVAL). The
 *   window is the n buckets ending with the current one:
 *       T = floor(now / G),  F = T - n + 1.
 *   The current bucket T is partial (it holds what has arrived by now) and
 *   IS included, so the result covers at least (n - 1) * G and less than
 *   n * G seconds of event time, always ending now; rows of buckets after
 *   T (events stamped in the future) are left out. A row whose ttl has
 *   passed (ttl != 0 and ttl < now, the rule the in-process stores use) is
 *   left out although DynamoDB may still list it until its TTL process
 *   deletes it, so a window longer than the retention sees exactly the
 *   retained buckets, not whatever deletion has not reached yet.
 *
 * Which aggregate: combining needs the row's aggregate. memory:// and
 * sqlite:// rows carry it; dynamodb:// items do not name it (store.h
 * mm_row_t: a number may be sum, count, min or max; a string min or max; a
 * timed value first or last). The caller therefore passes the pipeline's
 * aggregate (has_agg/agg) and granularity: the CLI takes both from
 * `--script FILE` (the pipeline table: aggregate and window.granularity),
 * or from `--aggregate NAME` and `--granularity 1h`. A row of another
 * aggregate than the one passed is MM_EPERM naming the row. Without an
 * aggregate, --last still works on rows that name theirs (memory://,
 * sqlite://, and dynamodb:// set/hll/topk rows); an ambiguous DynamoDB row
 * is MM_EINVAL asking for --script or --aggregate.
 *
 * Errors: MM_EINVAL (bad request: --bucket with --last, --last without a
 * granularity, a malformed duration or one that is not a whole number of
 * buckets), the store's errors, MM_EPERM (a row that cannot be combined),
 * MM_EIO (out could not be written). Nothing is printed for a --last query
 * that fails; rows printed before a failing row stay printed.
 */
#ifndef MM_QUERY_H
#define MM_QUERY_H

#include <stdint.h>
#include <stdio.h>
#include "agg.h"
#include "err.h"
#include "store.h"

typedef struct mm_query {
  const char *key;         /* required (borrowed) */
  const int64_t *bucket;   /* one bucket, or NULL */
  const char *last;        /* window duration ("7d"), or NULL */
  int64_t granularity_s;   /* bucket width in seconds; required with last */
  int has_agg;             /* 1: agg is the pipeline's aggregate */
  mm_agg_t agg;
  int64_t now_s;           /* the clock for last (epoch seconds): the CLI
                              passes MURMUR_NOW when set, else the time */
} mm_query_t;

/* Prints q's rows or window on out (see above). */
int mm_query_run(mm_store_t *s, const mm_query_t *q, FILE *out, mm_err_t *err);

/* The window rule alone: the buckets [*from, *to] of --last `last` at
 * now_s with buckets of granularity_s seconds. */
int mm_query_window(const char *last, int64_t granularity_s, int64_t now_s,
                    int64_t *from, int64_t *to, mm_err_t *err);

#endif

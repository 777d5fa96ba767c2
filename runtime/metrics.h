/*
 * metrics.h - one CloudWatch Embedded Metric Format line per invocation.
 *
 * Provides: counters for an invocation and mm_metrics_emit, which writes
 * one compact JSON object on one line (spec: runtime-contract section 4):
 * namespace MURMUR_METRICS_NAMESPACE (default "murmur"), one dimension set
 * (default ["pipeline"]; MURMUR_METRICS_DIMENSIONS lists others from
 * {pipeline, function, aggregate}), every counter as a Count metric and
 * the merge latencies (at most 100 values, as the spec allows) in
 * Milliseconds. Owns its latency array (mm_metrics_free).
 *
 * Latencies beyond the first 100 of an invocation: memory stays bounded at
 * 100 values; the kept values are a uniform random sample (reservoir
 * sampling, deterministic generator) of every latency recorded, with the
 * exact minimum and maximum substituted in at emit time, so CloudWatch's
 * min/max are exact and its percentiles/average are sample estimates (its
 * SampleCount is then 100, not the true count: use Merges for volume).
 * No latency recorded: MergeLatency is left out (EMF wants a number or a
 * non-empty array). Dimensions: names outside {pipeline, function,
 * aggregate} are ignored, with one WARN log line per distinct setting per
 * process; duplicates are dropped; if none is left the default ["pipeline"]
 * is used. A NULL/empty dimension value is written as "unknown" (function:
 * AWS_LAMBDA_FUNCTION_NAME, else "local"); values are cut to 1024 bytes.
 */
#ifndef MM_METRICS_H
#define MM_METRICS_H

#include <stdint.h>
#include <stdio.h>
#include <stddef.h>

typedef struct mm_metrics {
  uint64_t records;          /* records in the batch */
  uint64_t applied;          /* records whose every merge succeeded */
  uint64_t skipped;          /* decode returned nil, or no keys */
  uint64_t decode_errors;    /* poison pills */
  uint64_t retries;          /* store attempts beyond the first */
  uint64_t dedup_skips;      /* duplicates skipped */
  uint64_t failures;         /* records reported in batchItemFailures */
  uint64_t deadline_skips;   /* records not started: deadline margin */
  uint64_t unknown_outcomes; /* record contributions carried by writes sent
                                without an answer (may be applied twice) */
  uint64_t merges;           /* store merge operations issued */
  uint64_t parked;           /* poison pills parked in the DLQ */
  uint64_t park_failures;    /* poison pills the DLQ refused: reported */
  double *latency_ms;        /* owned: each store round's latency */
  size_t nlatency, caplatency;
  /* Latencies recorded this invocation (may exceed nlatency), exact
   * extremes. Zero-initialising the struct is a valid empty state. */
  uint64_t nlatency_seen;
  double latency_min, latency_max;
} mm_metrics_t;

/* Most values one EMF metric may carry (the spec's limit). */
#define MM_METRICS_MAX_VALUES 100

void mm_metrics_reset(mm_metrics_t *m);  /* zero counters, keep buffer */
void mm_metrics_free(mm_metrics_t *m);
void mm_metrics_latency(mm_metrics_t *m, double ms);

/* Dimension values for one line. */
typedef struct mm_metrics_dims {
  const char *pipeline;
  const char *function;      /* AWS_LAMBDA_FUNCTION_NAME or "local" */
  const char *aggregate;
} mm_metrics_dims_t;

/* Writes the EMF line (with newline) in one write and flushes.
 * namespace/dimensions as in mm_config_t (NULL = defaults); out NULL =
 * stdout; now_ms <= 0 = the current time. Returns 0, MM_ENOMEM or MM_EIO. */
int mm_metrics_emit(const mm_metrics_t *m, FILE *out, const char *ns,
                    const char *dimensions, const mm_metrics_dims_t *dims,
                    int64_t now_ms);

#endif

/*
 * metrics.c - one CloudWatch EMF line per invocation (see metrics.h).
 *
 * The line (compact, one line, "\n"-terminated):
 *   {"_aws":{"Timestamp":<epoch ms>,"CloudWatchMetrics":[{"Namespace":"murmur",
 *     "Dimensions":[["pipeline"]],"Metrics":[{"Name":"Records","Unit":"Count"},
 *     ...,{"Name":"MergeLatency","Unit":"Milliseconds"}]}]},
 *    "pipeline":"order_totals","Records":10,...,"MergeLatency":[1.5,2]}
 * Every name the directive references (dimensions and metrics) is a member
 * of the root object, as the specification requires.
 */
#include "metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "err.h"
#include "log.h"
#include "retry.h"

/* Longest dimension value CloudWatch accepts. */
#define METRICS_DIM_VALUE_MAX 1024
/* Known dimension names, in the order they are written when listed. */
static const char *const dim_names[] = {"pipeline", "function", "aggregate"};
#define NDIMS 3

void mm_metrics_reset(mm_metrics_t *m) {
  double *keep = m->latency_ms;
  size_t cap = m->caplatency;
  memset(m, 0, sizeof *m);
  m->latency_ms = keep;
  m->caplatency = cap;
}

void mm_metrics_free(mm_metrics_t *m) {
  if (!m) return;
  free(m->latency_ms);
  memset(m, 0, sizeof *m);
}

/* A well-spread 64-bit hash (splitmix64), the reservoir's random source:
 * deterministic, so a test sees the same sample every run. */
static uint64_t hash64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

/*
 * Records one latency. The first MM_METRICS_MAX_VALUES are kept as they
 * come; after that, reservoir sampling (Vitter's algorithm R): the k-th
 * value (k > 100) replaces a random slot with probability 100/k, which
 * keeps every recorded value equally likely to be in the sample. Negative,
 * NaN and infinite inputs are ignored; an allocation failure drops the
 * value (metrics must never fail an invocation).
 */
void mm_metrics_latency(mm_metrics_t *m, double ms) {
  if (!isfinite(ms) || ms < 0) return;
  if (m->nlatency_seen == 0 || ms < m->latency_min) m->latency_min = ms;
  if (m->nlatency_seen == 0 || ms > m->latency_max) m->latency_max = ms;
  uint64_t k = ++m->nlatency_seen; /* 1-based index of this value */
  if (m->nlatency < MM_METRICS_MAX_VALUES) {
    if (m->nlatency == m->caplatency) {
      size_t cap = m->caplatency ? m->caplatency * 2 : 16;
      if (cap > MM_METRICS_MAX_VALUES) cap = MM_METRICS_MAX_VALUES;
      double *p = realloc(m->latency_ms, cap * sizeof *p);
      if (!p) return;
      m->latency_ms = p;
      m->caplatency = cap;
    }
    m->latency_ms[m->nlatency++] = ms;
    return;
  }
  /* The slot draw hashes the position with the value's bits: repeatable
   * for the same inputs, yet not the same positions every invocation. The
   * modulo bias is below k / 2^64. */
  uint64_t bits;
  memcpy(&bits, &ms, sizeof bits);
  uint64_t j = hash64(k ^ hash64(bits)) % k;
  if (j < MM_METRICS_MAX_VALUES) m->latency_ms[j] = ms;
}

/* ---------------------------------------------------------------------
 * Dimensions
 * --------------------------------------------------------------------- */

/* Last MURMUR_METRICS_DIMENSIONS value warned about (one warning each). */
static char warned_for[256];

/*
 * Parses a comma-separated list of dimension names into order[] (indices
 * into dim_names). Blanks around names are ignored, names match in any
 * case, duplicates and empty items are dropped, unknown names are dropped
 * with one WARN line per distinct list. Returns the count (the default
 * {pipeline} when nothing usable is left).
 */
static int parse_dims(const char *list, int order[NDIMS]) {
  int n = 0;
  if (list) {
    char unknown[512] = "";
    const char *p = list;
    while (*p) {
      while (*p == ' ' || *p == '\t') p++;
      const char *start = p;
      while (*p && *p != ',') p++;
      const char *end = p;
      while (end > start && (end[-1] == ' ' || end[-1] == '\t')) end--;
      size_t len = (size_t)(end - start);
      if (len > 0) {
        int found = -1;
        for (int i = 0; i < NDIMS; i++)
          if (strlen(dim_names[i]) == len && strncasecmp(start, dim_names[i], len) == 0)
            found = i;
        int dup = 0;
        for (int i = 0; i < n; i++) dup |= order[i] == found;
        if (found < 0) {
          size_t u = strlen(unknown);
          snprintf(unknown + u, sizeof unknown - u, "%s\"%.*s\"", u ? ", " : "",
                   (int)(len > 64 ? 64 : len), start);
        } else if (!dup) {
          order[n++] = found;
        }
      }
      if (*p == ',') p++;
    }
    if (unknown[0] && strncmp(warned_for, list, sizeof warned_for - 1) != 0) {
      snprintf(warned_for, sizeof warned_for, "%s", list);
      mm_log(MM_LOG_WARN, NULL,
             "MURMUR_METRICS_DIMENSIONS: ignoring unknown dimension %s (known: pipeline, "
             "function, aggregate)",
             unknown);
    }
  }
  if (n == 0) order[n++] = 0;
  return n;
}

/* The value written for dimension i. */
static const char *dim_value(const mm_metrics_dims_t *dims, int i) {
  const char *v = NULL;
  if (dims) v = i == 0 ? dims->pipeline : i == 1 ? dims->function : dims->aggregate;
  if (v && *v) return v;
  if (i == 1) {
    const char *f = getenv("AWS_LAMBDA_FUNCTION_NAME");
    return f && *f ? f : "local";
  }
  return "unknown";
}

/* Appends v as a JSON string cut to METRICS_DIM_VALUE_MAX bytes, at a
 * UTF-8 character boundary. */
static void add_dim_value(mm_buf_t *b, const char *v) {
  size_t n = strlen(v);
  if (n > METRICS_DIM_VALUE_MAX) {
    n = METRICS_DIM_VALUE_MAX;
    while (n > 0 && ((unsigned char)v[n] & 0xC0) == 0x80) n--; /* not mid-char */
  }
  mm_buf_json_str(b, v, n);
}

/* ---------------------------------------------------------------------
 * The line
 * --------------------------------------------------------------------- */

/* Counter metrics, in the order written. */
typedef struct {
  const char *name;
  size_t off;
} counter_t;

static const counter_t counters[] = {
    {"Records", offsetof(mm_metrics_t, records)},
    {"Applied", offsetof(mm_metrics_t, applied)},
    {"Skipped", offsetof(mm_metrics_t, skipped)},
    {"DecodeErrors", offsetof(mm_metrics_t, decode_errors)},
    {"Retries", offsetof(mm_metrics_t, retries)},
    {"DedupSkips", offsetof(mm_metrics_t, dedup_skips)},
    {"DeadLetters", offsetof(mm_metrics_t, failures)},
    {"DeadlineSkips", offsetof(mm_metrics_t, deadline_skips)},
    {"UnknownOutcomes", offsetof(mm_metrics_t, unknown_outcomes)},
    {"Merges", offsetof(mm_metrics_t, merges)},
    {"Parked", offsetof(mm_metrics_t, parked)},
    {"ParkFailures", offsetof(mm_metrics_t, park_failures)},
};
#define NCOUNTERS (sizeof counters / sizeof counters[0])

/*
 * The latency values to write: the kept sample, and when values were
 * sampled away, the exact minimum and maximum put in place of the sample's
 * own extremes. Returns the count (<= MM_METRICS_MAX_VALUES).
 */
static size_t latency_values(const mm_metrics_t *m, double out[MM_METRICS_MAX_VALUES]) {
  size_t n = m->nlatency < MM_METRICS_MAX_VALUES ? m->nlatency : MM_METRICS_MAX_VALUES;
  if (n == 0 || !m->latency_ms) return 0;
  memcpy(out, m->latency_ms, n * sizeof *out);
  if (m->nlatency_seen > n && n >= 2) {
    size_t lo = 0, hi = 0;
    for (size_t i = 1; i < n; i++) {
      if (out[i] < out[lo]) lo = i;
      if (out[i] > out[hi]) hi = i;
    }
    if (lo == hi) hi = lo == 0 ? 1 : 0; /* all equal: any other slot */
    out[lo] = m->latency_min;
    out[hi] = m->latency_max;
  }
  return n;
}

/*
 * Writes the EMF line. Builds it in memory and hands it to mm_log_write,
 * so it reaches the log in one write and never interleaves with a log line.
 */
int mm_metrics_emit(const mm_metrics_t *m, FILE *out, const char *ns,
                    const char *dimensions, const mm_metrics_dims_t *dims,
                    int64_t now_ms) {
  int order[NDIMS];
  int ndims = parse_dims(dimensions, order);
  double lat[MM_METRICS_MAX_VALUES];
  size_t nlat = latency_values(m, lat);
  if (!ns || !*ns) ns = "murmur";
  if (now_ms <= 0) now_ms = mm_now_ms();
  if (!out) out = stdout;

  mm_buf_t b = MM_BUF_INIT;
  mm_buf_printf(&b, "{\"_aws\":{\"Timestamp\":%lld,\"CloudWatchMetrics\":[{\"Namespace\":",
                (long long)now_ms);
  mm_buf_json_str(&b, ns, strlen(ns));
  mm_buf_adds(&b, ",\"Dimensions\":[[");
  for (int i = 0; i < ndims; i++) {
    if (i) mm_buf_addc(&b, ',');
    mm_buf_printf(&b, "\"%s\"", dim_names[order[i]]);
  }
  mm_buf_adds(&b, "]],\"Metrics\":[");
  for (size_t i = 0; i < NCOUNTERS; i++)
    mm_buf_printf(&b, "%s{\"Name\":\"%s\",\"Unit\":\"Count\"}", i ? "," : "",
                  counters[i].name);
  if (nlat) mm_buf_adds(&b, ",{\"Name\":\"MergeLatency\",\"Unit\":\"Milliseconds\"}");
  mm_buf_adds(&b, "]}]}");

  for (int i = 0; i < ndims; i++) {
    mm_buf_printf(&b, ",\"%s\":", dim_names[order[i]]);
    add_dim_value(&b, dim_value(dims, order[i]));
  }
  for (size_t i = 0; i < NCOUNTERS; i++) {
    uint64_t v;
    memcpy(&v, (const char *)m + counters[i].off, sizeof v);
    mm_buf_printf(&b, ",\"%s\":%llu", counters[i].name, (unsigned long long)v);
  }
  if (nlat) {
    mm_buf_adds(&b, ",\"MergeLatency\":[");
    for (size_t i = 0; i < nlat; i++) {
      if (i) mm_buf_addc(&b, ',');
      mm_buf_json_double(&b, lat[i]);
    }
    mm_buf_addc(&b, ']');
  }
  mm_buf_adds(&b, "}\n");

  int rc = MM_ENOMEM;
  if (!mm_buf_failed(&b)) rc = mm_log_write(out, b.data, b.len);
  mm_buf_free(&b);
  return rc;
}

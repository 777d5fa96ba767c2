/*
 * ddb_bench.c - wall-clock time of one batch against a DynamoDB endpoint
 * (scripts/bench runs it against dynalite; not a test).
 *
 *   ddb_bench SCRIPT EVENT MODE ITER [WARMUP]
 *
 * The store, dedup and endpoint come from the environment as in Lambda
 * (MURMUR_STORE=dynamodb://T, MURMUR_DEDUP unset = dedup off,
 * AWS_ENDPOINT_URL_DYNAMODB, AWS_REGION, AWS_ACCESS_KEY_ID, ...). MODE:
 *
 *   concurrent   the runtime as shipped: one mm_pipeline_run per batch
 *                (claims, merges and finishes each started together, up to
 *                MURMUR_MAX_INFLIGHT at once, additive deltas coalesced).
 *   sequential   strictly one record after another and one request at a
 *                time, as a plain loop of per-record UpdateItem calls
 *                works: each record is run as its own one-record batch
 *                (so nothing is coalesced) with an in-flight limit of 1:
 *                with dedup on, claim, merge and finish of a record are
 *                three sequential requests.
 *
 * Every iteration gives the records fresh eventIDs (so dedup never skips
 * them) and requires an empty batchItemFailures. Prints one JSON object:
 * {"mode","dedup","records","merges_per_batch","wall_ms_per_batch" (mean),
 *  "wall_ms_min","wall_ms_max","cpu_ms_per_batch" (this process's CPU time,
 *  mean),"iterations"}.
 */
#define _GNU_SOURCE /* memmem */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "json.h"
#include "log.h"
#include "pipeline.h"

static double mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* CPU time of this process (what a Lambda function is billed and bounded
 * by when the store is not the bottleneck). */
static double cpu_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Reads a whole file (exits on failure: a benchmark driver). */
static char *slurp(const char *path, size_t *len) {
  char *data = NULL;
  mm_err_t err;
  if (mm_buf_read_file(path, &data, len, &err) != 0) {
    fprintf(stderr, "ddb_bench: %s\n", err.msg);
    exit(2);
  }
  return data;
}

/*
 * Gives every eventID a fresh 8-hex-digit prefix (same length, so the
 * bytes stay valid JSON): the run tag and the iteration.
 */
static void retag(char *ev, size_t len, unsigned tag) {
  static const char pat[] = "\"eventID\":\"";
  char hex[9];
  snprintf(hex, sizeof hex, "%08x", tag);
  for (char *p = ev; (p = memmem(p, len - (size_t)(p - ev), pat, sizeof pat - 1)); ) {
    p += sizeof pat - 1;
    size_t n = 0;
    while (n < 8 && p + n < ev + len && p[n] != '"') n++;
    memcpy(p, hex, n);
  }
}

/* The records of a batch as one-record events (for sequential). */
typedef struct singles {
  char **ev;
  size_t *len;
  size_t n;
} singles_t;

static void split(const char *ev, size_t len, singles_t *out) {
  mm_json_doc_t d;
  mm_err_t err;
  if (mm_json_parse(&d, ev, len, 0, &err)) {
    fprintf(stderr, "ddb_bench: %s\n", err.msg);
    exit(2);
  }
  uint32_t recs = mm_json_get(&d, 0, "Records", 7);
  out->n = recs ? mm_json_len(&d, recs) : 0;
  out->ev = calloc(out->n ? out->n : 1, sizeof *out->ev);
  out->len = calloc(out->n ? out->n : 1, sizeof *out->len);
  uint32_t r = out->n ? mm_json_first(&d, recs) : 0;
  for (size_t i = 0; i < out->n; i++, r = mm_json_next(&d, r)) {
    mm_buf_t b = MM_BUF_INIT;
    mm_buf_adds(&b, "{\"Records\":[");
    mm_json_emit(&b, &d, r, NULL);
    mm_buf_adds(&b, "]}");
    if (mm_buf_failed(&b)) exit(2);
    out->ev[i] = mm_buf_take(&b, &out->len[i]);
  }
  mm_json_free(&d);
}

/* One invocation; exits unless every record was applied. */
static uint64_t invoke(mm_pipeline_t *p, const char *ev, size_t len) {
  mm_invoke_t inv = {.event = ev, .len = len, .request_id = "bench"};
  mm_result_t res;
  if (mm_pipeline_run(p, &inv, &res)) {
    fprintf(stderr, "ddb_bench: invocation error: %s\n", res.err.msg);
    exit(1);
  }
  if (strcmp(res.response, "{\"batchItemFailures\":[]}") != 0) {
    fprintf(stderr, "ddb_bench: records failed: %.300s\n", res.response);
    exit(1);
  }
  mm_result_free(&res);
  return mm_pipeline_metrics(p)->merges;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fputs("usage: ddb_bench SCRIPT EVENT concurrent|sequential ITER [WARMUP]\n", stderr);
    return 2;
  }
  const char *mode = argv[3];
  int seq = strcmp(mode, "sequential") == 0;
  if (!seq && strcmp(mode, "concurrent") != 0) {
    fprintf(stderr, "ddb_bench: unknown mode %s\n", mode);
    return 2;
  }
  int iter = atoi(argv[4]), warm = argc > 5 ? atoi(argv[5]) : 1;
  if (iter < 1 || warm < 0) return 2;
  mm_log_init(stderr);
  mm_log_set_level(MM_LOG_ERROR);
  mm_config_t cfg;
  mm_err_t err;
  if (mm_config_from_env(&cfg, &err)) {
    fprintf(stderr, "ddb_bench: %s\n", err.msg);
    return 2;
  }
  if (seq) cfg.max_inflight = 1;
  mm_pipeline_t *p = NULL;
  if (mm_pipeline_open(&p, argv[1], MM_SOURCE_LUA_DIR, &cfg, NULL, &err)) {
    fprintf(stderr, "ddb_bench: %s\n", err.msg);
    return 1;
  }
  mm_pipeline_set_metrics_out(p, NULL);
  size_t len;
  char *ev = slurp(argv[2], &len);
  unsigned tag = (unsigned)time(NULL) * 2654435761u ^ (unsigned)getpid() << 16;
  double sum = 0, cpu = 0, lo = 1e300, hi = 0;
  uint64_t merges = 0, records = 0;
  for (int i = -warm; i < iter; i++) {
    retag(ev, len, tag++);
    singles_t one = {0};
    if (seq) split(ev, len, &one);
    double t0 = mono_ms(), c0 = cpu_ms();
    uint64_t m = 0;
    if (seq) {
      for (size_t r = 0; r < one.n; r++) m += invoke(p, one.ev[r], one.len[r]);
      records = one.n;
    } else {
      m = invoke(p, ev, len);
      records = mm_pipeline_metrics(p)->records;
    }
    double dt = mono_ms() - t0, dc = cpu_ms() - c0;
    for (size_t r = 0; r < one.n; r++) free(one.ev[r]);
    free(one.ev);
    free(one.len);
    if (i < 0) continue;
    sum += dt;
    cpu += dc;
    if (dt < lo) lo = dt;
    if (dt > hi) hi = dt;
    merges = m;
  }
  printf("{\"mode\":\"%s\",\"dedup\":%d,\"records\":%llu,\"merges_per_batch\":%llu,"
         "\"wall_ms_per_batch\":%.1f,\"wall_ms_min\":%.1f,\"wall_ms_max\":%.1f,"
         "\"cpu_ms_per_batch\":%.1f,\"iterations\":%d}\n",
         mode, cfg.dedup_url != NULL, (unsigned long long)records, (unsigned long long)merges,
         sum / iter, lo, hi, cpu / iter, iter);
  mm_pipeline_destroy(p);
  free(ev);
  return 0;
}

/*
 * pipeline.h - one invocation, DESIGN section 3 steps 1-6.
 *
 * Provides: mm_pipeline_run, which parses the event, runs every record
 * through the script, claims eventIDs (dedup), merges keys into the store
 * (all of a round's merges together, additive deltas for the same key and
 * bucket coalesced), retries transient failures with backoff, stops
 * starting work at deadline - margin, and builds Lambda's response:
 * {"batchItemFailures":[{"itemIdentifier":"<SequenceNumber>"}...]} plus
 * "state" for tumbling-window events. Counts everything in mm_metrics_t.
 *
 * Ownership: the pipeline owns the script, store and dedup it is given
 * (mm_pipeline_destroy); a result owns its response (mm_result_free).
 */
#ifndef MM_PIPELINE_H
#define MM_PIPELINE_H

#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "dedup.h"
#include "err.h"
#include "metrics.h"
#include "script.h"
#include "store.h"

/* With dedup on, a batch's store work (claim, merge, finish) runs in
 * waves of records in order, the first of MM_PIPELINE_WAVE_FIRST records,
 * each next one MM_PIPELINE_WAVE_GROWTH times larger up to
 * MM_PIPELINE_WAVE_MAX, so the earliest records complete even against a
 * slow store near the deadline, in few waves (each costs round trips). */
#define MM_PIPELINE_WAVE_FIRST 16
#define MM_PIPELINE_WAVE_GROWTH 4
#define MM_PIPELINE_WAVE_MAX 1024

typedef struct mm_pipeline mm_pipeline_t;

typedef struct mm_invoke {
  const char *event;       /* borrowed payload */
  size_t len;
  int64_t deadline_ms;     /* absolute epoch ms, 0 = none */
  const char *request_id;  /* may be NULL */
} mm_invoke_t;

typedef struct mm_result {
  char *response;          /* owned JSON (NULL on invocation error) */
  size_t len;
  const char *error_type;  /* static, on invocation error */
  mm_err_t err;
} mm_result_t;

/* Takes ownership of script, store and dedup (dedup may be NULL: off),
 * also on failure. cfg is copied. */
int mm_pipeline_create(mm_pipeline_t **out, mm_script_t *script,
                       mm_store_t *store, mm_dedup_t *dedup,
                       const mm_config_t *cfg, mm_err_t *err);

/* Loads script_path and opens cfg's store and dedup (store_url NULL ->
 * default_store). */
int mm_pipeline_open(mm_pipeline_t **out, const char *script_path,
                     const char *lua_dir, const mm_config_t *cfg,
                     const char *default_store, mm_err_t *err);

void mm_pipeline_destroy(mm_pipeline_t *p);

/* Runs one invocation. 0: res->response is Lambda's answer (posted as the
 * invocation response, even when records failed). MM_EINVAL: the payload
 * is not a stream event, or memory ran out before an answer could be built
 * (error_type "Runtime.OutOfMemory"): post an invocation error of
 * res->error_type, so Lambda delivers the whole batch again. */
int mm_pipeline_run(mm_pipeline_t *p, const mm_invoke_t *inv, mm_result_t *res);
void mm_result_free(mm_result_t *res);

/* The last invocation's counters. */
const mm_metrics_t *mm_pipeline_metrics(const mm_pipeline_t *p);
const mm_def_t *mm_pipeline_def(const mm_pipeline_t *p);
mm_store_t *mm_pipeline_store(mm_pipeline_t *p);

/* Gives the pipeline a dead-letter queue for poison pills (takes
 * ownership; NULL = pills are only logged). mm_pipeline_open does this
 * from cfg->dlq_url (MURMUR_DLQ). */
struct mm_dlq;
void mm_pipeline_set_dlq(mm_pipeline_t *p, struct mm_dlq *dlq);

/* Where metrics lines go (default stdout); NULL disables them. */
void mm_pipeline_set_metrics_out(mm_pipeline_t *p, FILE *out);

/* What became of one record (replay deletes a parked record only when it
 * now succeeds). */
enum {
  MM_RECORD_OK = 1,     /* every merge applied, or nothing to merge */
  MM_RECORD_SKIP,       /* decode returned nil, or no keys */
  MM_RECORD_POISON,     /* decode failed: a poison pill */
  MM_RECORD_DUP,        /* dedup: applied by an earlier delivery */
  MM_RECORD_FAILED,     /* reported in batchItemFailures */
  MM_RECORD_NOTSTARTED  /* deadline margin reached first: reported */
};

/* Called once per record of a run, in order, with its index in Records
 * and its MM_RECORD_* outcome, after the last phase and before the
 * response is built (not at all when the payload is not a stream event). */
typedef void (*mm_record_cb)(void *ud, size_t index, int outcome);

/* Sets the per-record callback of the following runs (NULL: none). */
void mm_pipeline_set_record_cb(mm_pipeline_t *p, mm_record_cb cb, void *ud);

#endif

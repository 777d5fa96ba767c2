/*
 * dedup.h - remembering which records were already applied.
 *
 * A claim is keyed by "<pipeline>#<eventID>". Protocol, per record:
 *   1. begin: read the claim (the in-process backends create it; the
 *      DynamoDB one only reads, with BatchGetItem). DONE means every merge of an
 *      earlier delivery completed: the record is a duplicate. NEW and
 *      PARTIAL mean "merge", and PARTIAL lists the merges ("<bucket>:<key>"
 *      ids) an earlier, failed delivery already applied, which must not be
 *      applied again.
 *   2. the pipeline merges the remaining keys.
 *   3. finish: records the ids merged by this attempt, and marks the claim
 *      DONE only when all of the record's merges are applied.
 * A claim therefore never outlives a failed merge as a "done" record, and a
 * claim whose write outcome is unknown never makes the record a duplicate
 * (it is at worst PARTIAL with fewer ids than were applied; those are the
 * metered unknown-outcome writes).
 *
 * Ownership: the dedup handle is owned by its opener (mm_dedup_destroy);
 * claim inputs are borrowed during a call; begin's outputs (merged ids) are
 * owned by the claim and released by mm_claim_reset.
 */
#ifndef MM_DEDUP_H
#define MM_DEDUP_H

#include <stddef.h>
#include <stdint.h>
#include "err.h"
#include "store.h"

typedef enum { MM_CLAIM_NEW = 0, MM_CLAIM_PARTIAL, MM_CLAIM_DONE } mm_claim_state_t;

typedef struct mm_claim {
  /* in */
  const char *id;           /* "<pipeline>#<eventID>", borrowed */
  size_t id_len;
  int64_t ttl;              /* epoch seconds when the claim may expire */
  /* out of begin */
  mm_claim_state_t state;
  char **merged;            /* owned: ids applied by earlier attempts */
  size_t nmerged;
  /* in to finish */
  int done;                 /* 1: all merges applied */
  const char *const *applied; /* borrowed: ids applied by this attempt */
  size_t napplied;
  /* out of each call: 0, MM_ERETRY, MM_EPERM, MM_EUNKNOWN, MM_EDEADLINE */
  int status;
  mm_err_t err;
} mm_claim_t;

typedef struct mm_dedup mm_dedup_t;

typedef struct mm_dedup_vt {
  int (*begin)(mm_dedup_t *d, mm_claim_t *c, size_t n, int64_t deadline_ms);
  int (*finish)(mm_dedup_t *d, mm_claim_t *c, size_t n, int64_t deadline_ms);
  void (*destroy)(mm_dedup_t *d);
} mm_dedup_vt_t;

struct mm_dedup {
  const mm_dedup_vt_t *vt;
};

/* Same URL forms as mm_store_open. */
int mm_dedup_open(mm_dedup_t **out, const char *url, const mm_store_opts_t *opts,
                  mm_err_t *err);
int mm_dedup_begin(mm_dedup_t *d, mm_claim_t *c, size_t n, int64_t deadline_ms);
int mm_dedup_finish(mm_dedup_t *d, mm_claim_t *c, size_t n, int64_t deadline_ms);
void mm_dedup_destroy(mm_dedup_t *d);
/* Frees begin's outputs and clears status (c may be NULL). */
void mm_claim_reset(mm_claim_t *c);

/* In-process backends. */
int mm_dedup_memory_open(mm_dedup_t **out, mm_err_t *err);
int mm_dedup_sqlite_open(mm_dedup_t **out, const char *path, mm_err_t *err);

/* Test hook of the memory backend: the next `count` begin or finish calls
 * on claim `id` (a NUL-terminated "<pipeline>#<eventID>") fail with `status`
 * (MM_ERETRY, MM_EPERM or MM_EUNKNOWN; for MM_EUNKNOWN the call IS applied,
 * the claim created or updated, as when an answer is lost). count <= 0
 * cancels pending failures; other backends ignore the call. */
void mm_dedup_memory_inject(mm_dedup_t *d, const char *id, int count, int status);

#endif

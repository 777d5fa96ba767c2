/*
 * pipeline.c - one invocation, DESIGN section 3 (see pipeline.h).
 *
 * An invocation runs in four phases, so that a batch's store requests are
 * started together rather than one blocking call per key:
 *
 *   1. decode   every record, in order, through the script (skip / poison /
 *               keys + delta), stopping at deadline - margin;
 *   2. claim    (dedup on) every eventID in one dedup round; duplicates are
 *               skipped, PARTIAL claims drop the merges already applied;
 *   3. merge    every remaining (key, bucket) in rounds: additive deltas for
 *               the same (key, bucket) are coalesced into one op, failures
 *               that may succeed are retried with full-jitter backoff, each
 *               op's outcome is mapped back to every record it carries;
 *   4. finish   (dedup on) record what each attempt applied, and mark the
 *               claims whose merges all completed as done.
 *
 * A record whose effect did not reach the store is reported in
 * batchItemFailures by SequenceNumber; a poison pill is logged, counted and
 * handed to on_decode_error, never reported (the same bytes would fail
 * again).
 */
#include "pipeline.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "buf.h"
#include "dlq.h"
#include "event.h"
#include "log.h"
#include "retry.h"

/* Record states: the public MM_RECORD_* outcomes, plus "pending". */
enum {
  REC_PENDING = 0,                     /* has merges to do */
  REC_OK = MM_RECORD_OK,               /* every merge applied (or none to do) */
  REC_SKIP = MM_RECORD_SKIP,           /* decode returned nil / no keys */
  REC_POISON = MM_RECORD_POISON,       /* decode failed: logged, parked */
  REC_DUP = MM_RECORD_DUP,             /* dedup: applied by an earlier delivery */
  REC_FAILED = MM_RECORD_FAILED,       /* reported in batchItemFailures */
  REC_NOTSTARTED = MM_RECORD_NOTSTARTED /* deadline margin reached first */
};

/* Per-key states within a record. */
enum { KEY_TODO = 0, KEY_PREV, KEY_APPLIED, KEY_FAILED };

/* One key of a record. Everything here lives in the batch arena. */
typedef struct rkey {
  const char *key;         /* NUL-terminated copy of the outcome's key */
  size_t len;
  const char *id;          /* "<bucket>:<key>" merge id (dedup only), else NULL */
  uint8_t state;           /* KEY_* */
} rkey_t;

typedef struct rec {
  int state;
  uint32_t node;
  const char *seq, *id;    /* SequenceNumber and eventID, in the batch arena */
  int has_seq;
  rkey_t *keys;            /* batch arena */
  size_t nkeys;
  mm_delta_t delta;        /* owned (taken from the outcome) */
  int64_t bucket, ttl;
  long claim;              /* index into claims, -1 when none */
  long same_as;            /* earlier record with the same eventID, or -1 */
  char *poison;            /* owned: why decode failed (REC_POISON) */
} rec_t;

/* A coalesced op's delta: the first contribution's, its number summed
 * in acc (64-bit while it fits) and written back once the plan is built. */
typedef struct coal {
  mm_delta_t d;
  mm_dec_acc_t acc;
} coal_t;

/* One store op and the (record, key) pairs it carries. */
typedef struct op {
  const mm_delta_t *delta; /* the first contribution's, or &sum->d once coalesced */
  coal_t *sum;             /* batch arena: the coalesced sum, NULL until then */
  size_t first_ref, nrefs; /* into the refs array */
  int final;               /* 0 pending, 1 applied, else failure status - 1 */
} op_t;

typedef struct ref {
  size_t rec, key;
} ref_t;

struct mm_pipeline {
  mm_script_t *script;
  mm_store_t *store;
  mm_dedup_t *dedup;
  mm_dlq_t *dlq;           /* poison pills go here; NULL = only logged */
  mm_config_t cfg;
  mm_metrics_t metrics;
  mm_retry_t retry;
  FILE *metrics_out;
  const char *function_name;
  /* Everything that lives exactly as long as one invocation: the records'
   * ids and keys, the merge plans and the store batches. Reset when a run
   * starts; nothing in it is freed one by one. */
  mm_arena_t batch;
  int ids_failed;          /* an id could not be kept: the run fails */
  mm_record_cb record_cb;  /* per-record outcomes (replay), may be NULL */
  void *record_ud;
};

/* ------------------------------------------------------------------ */
/* Creation                                                            */
/* ------------------------------------------------------------------ */

int mm_pipeline_create(mm_pipeline_t **out, mm_script_t *script,
                       mm_store_t *store, mm_dedup_t *dedup,
                       const mm_config_t *cfg, mm_err_t *err) {
  *out = NULL;
  mm_pipeline_t *p = calloc(1, sizeof *p);
  if (!p) {
    mm_script_destroy(script);
    mm_store_destroy(store);
    if (dedup) mm_dedup_destroy(dedup);
    return mm_err_set(err, MM_ENOMEM, "out of memory creating the pipeline");
  }
  p->script = script;
  p->store = store;
  p->dedup = dedup;
  p->cfg = *cfg;
  p->metrics_out = stdout;
  p->function_name = getenv("AWS_LAMBDA_FUNCTION_NAME");
  if (!p->function_name || !*p->function_name) p->function_name = "local";
  mm_retry_init(&p->retry, cfg->max_attempts, cfg->retry_base_ms,
                cfg->retry_max_ms, (uint64_t)mm_mono_ms() ^ 0x9E3779B97F4A7C15ull);
  *out = p;
  return 0;
}

int mm_pipeline_open(mm_pipeline_t **out, const char *script_path,
                     const char *lua_dir, const mm_config_t *cfg,
                     const char *default_store, mm_err_t *err) {
  mm_script_t *script = NULL;
  mm_store_t *store = NULL;
  mm_dedup_t *dedup = NULL;
  *out = NULL;
  mm_script_opts_t so = {
      .budget = cfg->lua_budget,
      .mem_limit = (size_t)cfg->lua_memory_mb * 1024u * 1024u,
      .lua_dir = lua_dir,
      .max_depth = cfg->max_depth,
  };
  int rc = mm_script_load(&script, script_path, &so, err);
  if (rc) return rc;
  const char *surl = cfg->store_url ? cfg->store_url : default_store;
  if (!surl) {
    mm_script_destroy(script);
    return mm_err_set(err, MM_EINVAL, "MURMUR_STORE is not set (dynamodb://TABLE, sqlite://PATH or memory://)");
  }
  mm_store_opts_t sto = {.max_inflight = cfg->max_inflight, .request_timeout_ms = 0};
  if ((rc = mm_store_open(&store, surl, &sto, err))) {
    mm_script_destroy(script);
    return rc;
  }
  if (cfg->dedup_url && (rc = mm_dedup_open(&dedup, cfg->dedup_url, &sto, err))) {
    mm_script_destroy(script);
    mm_store_destroy(store);
    return rc;
  }
  mm_dlq_t *dlq = NULL;
  if (cfg->dlq_url && (rc = mm_dlq_open(&dlq, cfg->dlq_url, &sto, err))) {
    mm_script_destroy(script);
    mm_store_destroy(store);
    if (dedup) mm_dedup_destroy(dedup);
    return rc;
  }
  if ((rc = mm_pipeline_create(out, script, store, dedup, cfg, err))) {
    mm_dlq_destroy(dlq);
    return rc;
  }
  (*out)->dlq = dlq;
  return 0;
}

void mm_pipeline_set_dlq(mm_pipeline_t *p, mm_dlq_t *dlq) {
  mm_dlq_destroy(p->dlq);
  p->dlq = dlq;
}

void mm_pipeline_destroy(mm_pipeline_t *p) {
  if (!p) return;
  mm_script_destroy(p->script);
  mm_store_destroy(p->store);
  if (p->dedup) mm_dedup_destroy(p->dedup);
  mm_dlq_destroy(p->dlq);
  mm_metrics_free(&p->metrics);
  mm_arena_free(&p->batch);
  free(p);
}

const mm_metrics_t *mm_pipeline_metrics(const mm_pipeline_t *p) { return &p->metrics; }
const mm_def_t *mm_pipeline_def(const mm_pipeline_t *p) { return mm_script_def(p->script); }
mm_store_t *mm_pipeline_store(mm_pipeline_t *p) { return p->store; }
void mm_pipeline_set_metrics_out(mm_pipeline_t *p, FILE *out) { p->metrics_out = out; }
void mm_pipeline_set_record_cb(mm_pipeline_t *p, mm_record_cb cb, void *ud) {
  p->record_cb = cb;
  p->record_ud = ud;
}

void mm_result_free(mm_result_t *res) {
  if (!res) return;
  free(res->response);
  res->response = NULL;
  res->len = 0;
}

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

/* What a record owns outside the batch arena. */
static void rec_free(rec_t *r) {
  free(r->poison);
  mm_delta_free(&r->delta);
}

/* A copy of s in the batch arena; "" (and the run fails, see ids_failed)
 * when memory ran out, so logs and the response never see NULL. */
static const char *keep_id(mm_pipeline_t *p, const char *s) {
  const char *c = mm_arena_strndup(&p->batch, s, strlen(s));
  if (c) return c;
  p->ids_failed = 1;
  return "";
}

/* Absolute time after which no work starts (0 = no deadline). */
static int64_t stop_time(const mm_pipeline_t *p, int64_t deadline_ms) {
  return deadline_ms > 0 ? deadline_ms - p->cfg.deadline_margin_ms : 0;
}

/* Loads 8 / 4 bytes as an integer (memcpy: any alignment). */
static uint64_t load64(const char *p) {
  uint64_t w;
  memcpy(&w, p, 8);
  return w;
}
static uint64_t load32(const char *p) {
  uint32_t w;
  memcpy(&w, p, 4);
  return w;
}

/* A key mixed with a bucket, for the batch's own hash tables (never
 * stored, so free to change): 8 bytes at a time, each block multiplied
 * in, the last (partial) block read as the key's last 8 bytes, then
 * MurmurHash3's 64-bit finalizer so the low bits the tables use depend on
 * every byte. The byte-at-a-time FNV-1a it replaces cost ~7 instructions
 * a byte. */
static uint64_t hash_kb(const char *k, size_t n, int64_t b) {
  const uint64_t m = 0xFF51AFD7ED558CCDull;
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)b ^ ((uint64_t)n * 0xC2B2AE3D27D4EB4Full);
  if (n >= 8) {
    const char *end = k + n;
    for (; end - k > 8; k += 8) {
      h = (h ^ load64(k)) * m;
      h ^= h >> 32;
    }
    h = (h ^ load64(end - 8)) * m; /* overlaps the last block: same key, same hash */
  } else if (n >= 4) {
    h = (h ^ (load32(k) | load32(k + n - 4) << 32)) * m;
  } else if (n) {
    uint64_t w = (unsigned char)k[0] | (uint64_t)(unsigned char)k[n / 2] << 8 |
                 (uint64_t)(unsigned char)k[n - 1] << 16;
    h = (h ^ w) * m;
  }
  h ^= h >> 33;
  h *= m;
  h ^= h >> 33;
  h *= 0xC4CEB9FE1A85EC53ull;
  h ^= h >> 33;
  return h;
}

static int past(int64_t stop_at) { return stop_at > 0 && mm_now_ms() >= stop_at; }

/* ------------------------------------------------------------------ */
/* Phase 1: decode                                                     */
/* ------------------------------------------------------------------ */

/* Reads record r's facts and keeps its eventID and SequenceNumber in the
 * batch's arena, even when the record is malformed: logs and the response
 * need them. Returns mm_event_record's result. */
static int read_ids(mm_pipeline_t *p, const mm_event_t *ev, rec_t *r,
                    mm_record_info_t *info, mm_err_t *err) {
  int rc = mm_event_record(ev, r->node, info, err);
  r->has_seq = info->seq[0] != '\0';
  r->seq = keep_id(p, info->seq);
  r->id = keep_id(p, info->event_id);
  return rc;
}

/* A record whose own fields are malformed (no eventID or SequenceNumber,
 * a bad time): a poison pill, logged, counted and kept for the DLQ. */
static void poison_malformed(mm_pipeline_t *p, rec_t *r, const mm_record_info_t *info,
                             const mm_err_t *err) {
  r->state = REC_POISON;
  r->poison = strdup(err->msg);
  p->metrics.decode_errors++;
  mm_log(MM_LOG_ERROR, info->event_id[0] ? info->event_id : NULL,
         "malformed record (poison pill, not retried): %s", err->msg);
}

/* Runs record r through the script and fills it. */
static void decode_one(mm_pipeline_t *p, const mm_event_t *ev, rec_t *r,
                       mm_outcome_t *out) {
  const mm_def_t *def = mm_script_def(p->script);
  mm_record_info_t info;
  mm_err_t err;
  mm_err_clear(&err);
  int rc = read_ids(p, ev, r, &info, &err);
  if (rc) {
    poison_malformed(p, r, &info, &err);
    mm_script_on_decode_error(p->script, r->node, err.msg);
    return;
  }
  double t = info.has_time ? info.time : p->cfg.has_now ? p->cfg.now
                                                        : (double)mm_now_ms() / 1000.0;
  rc = mm_script_run_record(p->script, r->node, t, out);
  if (rc) {
    /* The outcome could not even be built: a store-independent failure
     * that a redelivery may not repeat, so report the record. */
    r->state = REC_FAILED;
    mm_log(MM_LOG_ERROR, info.event_id, "record could not be processed: out of memory");
    return;
  }
  switch (out->kind) {
  case MM_OUT_SKIP:
    r->state = REC_SKIP;
    p->metrics.skipped++;
    return;
  case MM_OUT_POISON:
    r->state = REC_POISON;
    r->poison = strdup(out->err.msg);
    p->metrics.decode_errors++;
    mm_log(MM_LOG_ERROR, info.event_id, "decode error (poison pill, not retried): %s",
           out->err.msg);
    mm_script_on_decode_error(p->script, r->node, out->err.msg);
    return;
  case MM_OUT_DEADLINE:
    /* Not the record's fault: report it so Lambda delivers it again
     * (it has a SequenceNumber: mm_event_record accepted it). */
    r->state = REC_NOTSTARTED;
    p->metrics.deadline_skips++;
    mm_log(MM_LOG_WARN, info.event_id, "%s: reported for redelivery", out->err.msg);
    return;
  case MM_OUT_VALUE:
    break;
  }
  if (out->nkeys == 0) {
    r->state = REC_SKIP;
    p->metrics.skipped++;
    return;
  }
  /* Take the delta; copy the keys into the batch arena, so the outcome's
   * own blocks are freed right after this record and reused by the next
   * one instead of all piling up until the batch ends. */
  r->delta = out->delta;
  memset(&out->delta, 0, sizeof out->delta);
  if (def->windowed) {
    int64_t g = def->granularity_s;
    r->bucket = (int64_t)floor(t / (double)g);
    r->ttl = (r->bucket + 1) * g + def->retention_s;
  }
  if (out->nkeys > SIZE_MAX / sizeof *r->keys) goto nomem;
  rkey_t *keys = mm_arena_alloc(&p->batch, out->nkeys * sizeof *keys);
  if (!keys) goto nomem;
  char bucket[24];
  size_t blen = 0;
  if (p->dedup) blen = (size_t)snprintf(bucket, sizeof bucket, "%lld:", (long long)r->bucket);
  for (size_t k = 0; k < out->nkeys; k++) {
    size_t n = out->key_lens[k];
    rkey_t *rk = &keys[k];
    rk->len = n;
    rk->state = KEY_TODO;
    rk->id = NULL;
    if (!(rk->key = mm_arena_strndup(&p->batch, out->keys[k], n))) goto nomem;
    if (!p->dedup) continue;
    /* Merge ids name what a claim records as applied (dedup only). The
     * key goes in as the C string it always was (a NUL in a key ends it
     * there), so the ids of claims written before read the same. */
    const char *z = memchr(rk->key, '\0', n);
    size_t idn = z ? (size_t)(z - rk->key) : n;
    char *id = mm_arena_alloc(&p->batch, blen + idn + 1);
    if (!id) goto nomem;
    memcpy(id, bucket, blen);
    memcpy(id + blen, rk->key, idn);
    id[blen + idn] = '\0';
    rk->id = id;
  }
  r->keys = keys;
  r->nkeys = out->nkeys;
  r->state = REC_PENDING;
  return;
nomem:
  r->state = REC_FAILED;
  mm_log(MM_LOG_ERROR, info.event_id, "record could not be processed: out of memory");
}

/* ------------------------------------------------------------------ */
/* Phase 2 and 4: dedup                                                */
/* ------------------------------------------------------------------ */

/* Runs fn over the claims in rounds until none is transiently failing,
 * with the merge retry budget and backoff. Returns after the last round;
 * each claim's status is final. */
static void dedup_rounds(mm_pipeline_t *p, mm_claim_t *claims, size_t n,
                         int (*fn)(mm_dedup_t *, mm_claim_t *, size_t, int64_t),
                         int64_t stop_at) {
  size_t *todo = malloc(n * sizeof *todo);
  mm_claim_t *batch = malloc(n * sizeof *batch);
  if (!todo || !batch) {
    for (size_t i = 0; i < n; i++)
      mm_err_set(&claims[i].err, claims[i].status = MM_ENOMEM, "out of memory");
    free(todo);
    free(batch);
    return;
  }
  size_t nt = n;
  for (size_t i = 0; i < n; i++) todo[i] = i;
  for (int attempt = 1; nt > 0; attempt++) {
    /* Work on copies so a round only touches the claims it retries. */
    for (size_t i = 0; i < nt; i++) {
      batch[i] = claims[todo[i]];
      batch[i].status = 0;
      mm_err_clear(&batch[i].err);
    }
    int64_t t0 = mm_mono_ms();
    fn(p->dedup, batch, nt, stop_at);
    mm_metrics_latency(&p->metrics, (double)(mm_mono_ms() - t0));
    size_t again = 0;
    for (size_t i = 0; i < nt; i++) {
      claims[todo[i]] = batch[i];
      int st = batch[i].status;
      if (st == MM_EUNKNOWN) p->metrics.unknown_outcomes++;
      if ((st == MM_ERETRY || st == MM_EUNKNOWN) && attempt < p->retry.max_attempts)
        todo[again++] = todo[i];
    }
    if (!again) break;
    int64_t wait = mm_retry_delay_ms(&p->retry, attempt);
    if (stop_at > 0 && mm_now_ms() + wait >= stop_at) {
      for (size_t i = 0; i < again; i++)
        mm_err_set(&claims[todo[i]].err, claims[todo[i]].status = MM_EDEADLINE,
                   "deadline margin reached before the dedup claim could be retried");
      break;
    }
    p->metrics.retries += again;
    mm_sleep_ms(wait);
    nt = again;
  }
  free(todo);
  free(batch);
}

/* Returns 1 when id is in the claim's earlier-merged list. */
static int was_merged(const mm_claim_t *c, const char *id) {
  for (size_t i = 0; i < c->nmerged; i++)
    if (strcmp(c->merged[i], id) == 0) return 1;
  return 0;
}

/* Phase 2: claims every pending record's eventID. */
static int claim_all(mm_pipeline_t *p, rec_t *recs, size_t n, mm_claim_t **claims_out,
                     size_t *nclaims_out, int64_t stop_at) {
  const mm_def_t *def = mm_script_def(p->script);
  size_t nc = 0;
  for (size_t i = 0; i < n; i++)
    if (recs[i].state == REC_PENDING) nc++;
  *claims_out = NULL;
  *nclaims_out = 0;
  if (!nc) return 0;
  mm_claim_t *claims = calloc(nc, sizeof *claims);
  size_t cap = 16;
  while (cap < nc * 2) cap *= 2;
  /* eventID -> record index + 1 */
  size_t *seen = mm_arena_zalloc(&p->batch, cap * sizeof *seen);
  if (!claims || !seen) {
    free(claims);
    return MM_ENOMEM;
  }
  int64_t ttl = mm_now_ms() / 1000 + p->cfg.dedup_ttl_s;
  size_t c = 0;
  for (size_t i = 0; i < n; i++) {
    rec_t *r = &recs[i];
    if (r->state != REC_PENDING) continue;
    /* The same eventID twice in one batch is the same change delivered
     * twice: the later copy follows the first one's fate. */
    const char *eid = r->id;
    size_t h = hash_kb(eid, strlen(eid), 0) & (cap - 1);
    while (seen[h] && strcmp(recs[seen[h] - 1].id, eid) != 0) h = (h + 1) & (cap - 1);
    if (seen[h]) {
      r->same_as = (long)(seen[h] - 1);
      continue;
    }
    seen[h] = i + 1;
    size_t len = strlen(def->name) + 1 + strlen(r->id) + 1;
    char *cid = mm_arena_alloc(&p->batch, len);
    if (!cid) {
      *claims_out = claims;
      *nclaims_out = c;
      return MM_ENOMEM;
    }
    snprintf(cid, len, "%s#%s", def->name, r->id);
    claims[c].id = cid;
    claims[c].id_len = len - 1;
    claims[c].ttl = ttl;
    r->claim = (long)c;
    c++;
  }
  *claims_out = claims;
  *nclaims_out = c;
  dedup_rounds(p, claims, c, mm_dedup_begin, stop_at);
  for (size_t i = 0; i < n; i++) {
    rec_t *r = &recs[i];
    if (r->state != REC_PENDING || r->claim < 0) continue;
    mm_claim_t *cl = &claims[r->claim];
    if (cl->status) {
      r->state = REC_FAILED;
      mm_log(MM_LOG_ERROR, r->id, "dedup claim failed: %s", cl->err.msg);
      continue;
    }
    if (cl->state == MM_CLAIM_DONE) {
      r->state = REC_DUP;
      p->metrics.dedup_skips++;
      continue;
    }
    for (size_t k = 0; k < r->nkeys; k++)
      if (cl->state == MM_CLAIM_PARTIAL && was_merged(cl, r->keys[k].id))
        r->keys[k].state = KEY_PREV;
  }
  return 0;
}

/* Phase 4: tells the dedup store what each claimed record applied. */
static void finish_all(mm_pipeline_t *p, rec_t *recs, size_t n, mm_claim_t *claims,
                       size_t nclaims, int64_t stop_at) {
  if (!nclaims) return;
  /* Per claim: the ids this attempt applied (borrowed from the records). */
  size_t total = 0;
  for (size_t i = 0; i < n; i++)
    if (recs[i].claim >= 0) total += recs[i].nkeys;
  const char **applied = calloc(total ? total : 1, sizeof *applied);
  size_t used = 0;
  mm_claim_t *todo = calloc(nclaims, sizeof *todo);
  size_t *owner = calloc(nclaims, sizeof *owner);
  size_t nt = 0;
  if (!applied || !todo || !owner) {
    /* The merges reached the store but cannot be recorded: as when a
     * finish fails, meter what a redelivery may apply again, and say so. */
    for (size_t i = 0; i < n; i++)
      for (size_t k = 0; recs[i].claim >= 0 && k < recs[i].nkeys; k++)
        if (recs[i].keys[k].state == KEY_APPLIED) p->metrics.unknown_outcomes++;
    mm_log(MM_LOG_ERROR, NULL,
           "out of memory finishing dedup claims: applied merges not recorded "
           "(a redelivery may apply them again)");
    goto done;
  }
  for (size_t i = 0; i < n; i++) {
    rec_t *r = &recs[i];
    if (r->claim < 0) continue;
    mm_claim_t *cl = &claims[r->claim];
    if (cl->status) continue; /* never claimed: nothing to record */
    if (r->state == REC_DUP) continue;
    const char **mine = applied + used;
    size_t na = 0;
    for (size_t k = 0; k < r->nkeys; k++)
      if (r->keys[k].state == KEY_APPLIED) mine[na++] = r->keys[k].id;
    used += na;
    int done = r->state == REC_OK;
    if (!na && !done) continue; /* nothing new to say */
    todo[nt] = *cl;
    todo[nt].merged = NULL; /* begin's outputs stay with the original */
    todo[nt].nmerged = 0;
    todo[nt].applied = mine;
    todo[nt].napplied = na;
    todo[nt].done = done;
    owner[nt] = i;
    nt++;
  }
  dedup_rounds(p, todo, nt, mm_dedup_finish, stop_at);
  for (size_t t = 0; t < nt; t++) {
    if (!todo[t].status) continue;
    rec_t *r = &recs[owner[t]];
    /* The merges reached the store; only the bookkeeping is missing. A
     * redelivery would re-merge what this attempt applied: meter each
     * of those contributions. */
    p->metrics.unknown_outcomes += todo[t].napplied;
    mm_log(MM_LOG_WARN, r->id,
           "dedup claim could not record applied merges (a redelivery may apply them again): %s",
           todo[t].err.msg);
  }
done:
  free(applied);
  free(todo);
  free(owner);
}

/* ------------------------------------------------------------------ */
/* Phase 3: merge                                                      */
/* ------------------------------------------------------------------ */

/* A wave's merge plan; every array lives in the batch arena. */
typedef struct merge_plan {
  op_t *ops;
  size_t nops;
  ref_t *refs;
  size_t nrefs;
} merge_plan_t;

/* Starts op oi with the single contribution of ref ri. */
static void op_start(merge_plan_t *pl, size_t *last_ref, size_t oi, size_t ri,
                     const mm_delta_t *d) {
  op_t *o = &pl->ops[oi];
  o->delta = d; /* borrowed from the record until coalesced */
  o->sum = NULL;
  o->first_ref = ri;
  o->nrefs = 1;
  o->final = 0;
  last_ref[oi] = ri;
}

/* Builds the ops: one per (record, key) still to merge, except that
 * additive deltas for the same (key, bucket) share one op. */
static int plan_build(mm_pipeline_t *p, rec_t *recs, size_t n, merge_plan_t *pl) {
  const mm_def_t *def = mm_script_def(p->script);
  int additive = mm_agg_is_additive(def->agg);
  size_t total = 0;
  for (size_t i = 0; i < n; i++)
    if (recs[i].state == REC_PENDING && recs[i].same_as < 0) total += recs[i].nkeys;
  memset(pl, 0, sizeof *pl);
  if (!total) return 0;
  if (total > SIZE_MAX / 4 / sizeof *pl->ops) return MM_ENOMEM;
  mm_arena_t *a = &p->batch;
  size_t cap = 16;
  while (cap < total * 2) cap *= 2;
  /* Nothing is zeroed but the hash table: every op and ref is written
   * before it is read. */
  pl->ops = mm_arena_alloc(a, total * sizeof *pl->ops);
  ref_t *refs = mm_arena_alloc(a, total * sizeof *refs);
  size_t *tab = additive ? mm_arena_zalloc(a, cap * sizeof *tab) : NULL; /* op + 1; 0 = empty */
  size_t *next_ref = mm_arena_alloc(a, total * sizeof *next_ref); /* chain refs of an op */
  size_t *last_ref = mm_arena_alloc(a, total * sizeof *last_ref);
  if (!pl->ops || !refs || (additive && !tab) || !next_ref || !last_ref) return MM_ENOMEM;
  /* First pass: assign refs to ops, chaining the refs of each op. */
  for (size_t i = 0; i < n; i++) {
    rec_t *r = &recs[i];
    if (r->state != REC_PENDING || r->same_as >= 0) continue;
    for (size_t k = 0; k < r->nkeys; k++) {
      const rkey_t *rk = &r->keys[k];
      if (rk->state != KEY_TODO) continue;
      size_t ri = pl->nrefs++;
      refs[ri] = (ref_t){i, k};
      next_ref[ri] = (size_t)-1;
      size_t oi = (size_t)-1;
      if (additive) {
        size_t h = hash_kb(rk->key, rk->len, r->bucket) & (cap - 1);
        while (tab[h]) {
          const ref_t *f = &refs[pl->ops[tab[h] - 1].first_ref];
          const rec_t *fr = &recs[f->rec];
          const rkey_t *fk = &fr->keys[f->key];
          if (fr->bucket == r->bucket && fk->len == rk->len &&
              memcmp(fk->key, rk->key, rk->len) == 0) {
            oi = tab[h] - 1;
            break;
          }
          h = (h + 1) & (cap - 1);
        }
        if (oi == (size_t)-1) tab[h] = pl->nops + 1;
      }
      if (oi == (size_t)-1) {
        op_start(pl, last_ref, pl->nops++, ri, &r->delta);
        continue;
      }
      /* Coalescing: both deltas of this additive aggregate must be
       * numbers, summed exactly with each step's limits (a running sum,
       * mm_dec_acc_t, fails where mm_dec_add would); anything else is
       * kept apart as an op of its own. */
      op_t *o = &pl->ops[oi];
      mm_err_t e;
      int apart = !o->delta->v.is_num || !r->delta.v.is_num;
      if (!apart && !o->sum) {
        /* The op's own sum, from its first (numeric: nothing to own)
         * contribution. */
        if (!(o->sum = mm_arena_alloc(a, sizeof *o->sum))) return MM_ENOMEM;
        o->sum->d = *o->delta;
        o->sum->d.v.str = NULL;
        o->sum->d.members = NULL;
        o->sum->d.nmembers = 0;
        mm_dec_acc_init(&o->sum->acc, &o->delta->v.num);
        o->delta = &o->sum->d;
      }
      if (apart || mm_dec_acc_add(&o->sum->acc, &r->delta.v.num, &e)) {
        /* e.g. a sum beyond 38 digits: keep this contribution apart */
        op_start(pl, last_ref, pl->nops++, ri, &r->delta);
        continue;
      }
      next_ref[last_ref[oi]] = ri;
      last_ref[oi] = ri;
      o->nrefs++;
    }
  }
  /* Second pass: lay each op's refs out contiguously, and write each
   * coalesced sum into its delta. */
  pl->refs = mm_arena_alloc(a, pl->nrefs * sizeof *pl->refs);
  if (!pl->refs) return MM_ENOMEM;
  size_t pos = 0;
  for (size_t o = 0; o < pl->nops; o++) {
    coal_t *sum = pl->ops[o].sum;
    if (sum) mm_dec_acc_get(&sum->acc, &sum->d.v.num);
    size_t start = pos;
    for (size_t ri = pl->ops[o].first_ref; ri != (size_t)-1; ri = next_ref[ri])
      pl->refs[pos++] = refs[ri];
    pl->ops[o].first_ref = start;
  }
  return 0;
}

/* Runs the ops in rounds with retries; sets every ref's key state. */
static void merge_all(mm_pipeline_t *p, rec_t *recs, merge_plan_t *pl, int64_t stop_at) {
  size_t n = pl->nops;
  if (!n) return;
  mm_merge_t *batch = mm_arena_alloc(&p->batch, n * sizeof *batch);
  size_t *idx = mm_arena_alloc(&p->batch, n * sizeof *idx);
  if (!batch || !idx) {
    for (size_t o = 0; o < n; o++) pl->ops[o].final = MM_ENOMEM - 1;
    mm_log(MM_LOG_ERROR, NULL, "out of memory starting %zu merges: records reported", n);
    goto map;
  }
  size_t nt = n;
  for (size_t o = 0; o < n; o++) idx[o] = o;
  for (int attempt = 1; nt > 0; attempt++) {
    for (size_t i = 0; i < nt; i++) {
      op_t *o = &pl->ops[idx[i]];
      const ref_t *f = &pl->refs[o->first_ref];
      const rec_t *r = &recs[f->rec];
      /* Field by field: a compound literal would also zero each op's
       * 1 KB error message, which only a failure writes. */
      mm_merge_t *m = &batch[i];
      m->key = r->keys[f->key].key;
      m->key_len = r->keys[f->key].len;
      m->bucket = r->bucket;
      m->ttl = r->ttl;
      m->delta = o->delta;
      m->status = 0;
      mm_err_clear(&m->err);
    }
    p->metrics.merges += nt;
    int64_t t0 = mm_mono_ms();
    mm_store_merge(p->store, batch, nt, stop_at);
    mm_metrics_latency(&p->metrics, (double)(mm_mono_ms() - t0));
    size_t again = 0, first_again = 0;
    for (size_t i = 0; i < nt; i++) {
      op_t *o = &pl->ops[idx[i]];
      int st = batch[i].status;
      /* A lost answer may have applied every contribution the (coalesced)
       * op carries, and each may be applied again: meter contributions. */
      if (st == MM_EUNKNOWN) p->metrics.unknown_outcomes += o->nrefs;
      if (st == 0) {
        o->final = 1;
      } else if ((st == MM_ERETRY || st == MM_EUNKNOWN) && attempt < p->retry.max_attempts) {
        if (!again) first_again = i;
        idx[again++] = idx[i];
      } else {
        o->final = st - 1;
        mm_log(MM_LOG_ERROR, recs[pl->refs[o->first_ref].rec].id,
               "merge of '%s' failed (%s, attempt %d of %d): %s", batch[i].key,
               mm_err_name(st), attempt, p->retry.max_attempts, batch[i].err.msg);
      }
    }
    if (!again) break;
    /* One line a round, not one per op: a throttled table fails many. */
    mm_log(MM_LOG_WARN, NULL,
           "%zu merges failed (attempt %d of %d, will retry), the first '%s': %s", again,
           attempt, p->retry.max_attempts, batch[first_again].key,
           batch[first_again].err.msg);
    int64_t wait = mm_retry_delay_ms(&p->retry, attempt);
    if (stop_at > 0 && mm_now_ms() + wait >= stop_at) {
      for (size_t i = 0; i < again; i++) pl->ops[idx[i]].final = MM_EDEADLINE - 1;
      mm_log(MM_LOG_WARN, NULL,
             "deadline margin reached: %zu merges not retried (their records are "
             "reported for redelivery)", again);
      break;
    }
    p->metrics.retries += again;
    mm_sleep_ms(wait);
    nt = again;
  }
map:
  /* Map every op's outcome back to each (record, key) it carried. */
  for (size_t o = 0; o < n; o++) {
    op_t *op = &pl->ops[o];
    for (size_t j = 0; j < op->nrefs; j++) {
      ref_t *rf = &pl->refs[op->first_ref + j];
      recs[rf->rec].keys[rf->key].state = op->final == 1 ? KEY_APPLIED : KEY_FAILED;
    }
  }
}

/* ------------------------------------------------------------------ */
/* The invocation                                                      */
/* ------------------------------------------------------------------ */

/* Parks every poison pill of the batch in the DLQ, after the merges so a
 * slow queue only uses the time left; no request starts past the margin.
 * A pill the queue did not take becomes a reported failure, so Lambda
 * delivers it again and nothing is dropped. */
static void park_poison(mm_pipeline_t *p, const mm_event_t *ev, rec_t *recs, size_t n,
                        const char *request_id, int64_t stop_at) {
  size_t np = 0;
  for (size_t i = 0; i < n; i++)
    if (recs[i].state == REC_POISON) np++;
  if (!p->dlq || !np) return;
  const mm_def_t *def = mm_script_def(p->script);
  mm_dlq_msg_t *msgs = calloc(np, sizeof *msgs);
  size_t *owner = calloc(np, sizeof *owner);
  mm_buf_t texts = MM_BUF_INIT;     /* records' JSON, then eventNames */
  size_t *offs = calloc(np * 3, sizeof *offs);
  if (!msgs || !owner || !offs) goto fail;
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    if (recs[i].state != REC_POISON) continue;
    const mm_json_doc_t *d = &ev->doc;
    offs[3 * m] = texts.len;
    mm_dlq_record_json(&texts, d, recs[i].node);
    offs[3 * m + 1] = texts.len;
    mm_buf_addc(&texts, '\0');
    uint32_t en = mm_json_type(d, recs[i].node) == MM_JSON_OBJ
                      ? mm_json_get(d, recs[i].node, "eventName", 9) : 0;
    offs[3 * m + 2] = texts.len;
    if (en && mm_json_type(d, en) == MM_JSON_STR) {
      char *name = mm_json_strdup(d, en, NULL);
      if (name) mm_buf_adds(&texts, name);
      free(name);
    }
    mm_buf_addc(&texts, '\0');
    owner[m++] = i;
  }
  if (mm_buf_failed(&texts)) goto fail;
  for (size_t k = 0; k < np; k++) {
    rec_t *r = &recs[owner[k]];
    msgs[k] = (mm_dlq_msg_t){.pipeline = def->name,
                             .error = r->poison ? r->poison : "decode failed",
                             .request_id = request_id,
                             .record_json = texts.data + offs[3 * k],
                             .record_len = offs[3 * k + 1] - offs[3 * k],
                             .event_id = r->id,
                             .seq = r->seq,
                             .event_name = texts.data + offs[3 * k + 2]};
  }
  mm_dlq_send(p->dlq, msgs, np, stop_at, p->cfg.max_attempts, p->cfg.retry_base_ms,
              p->cfg.retry_max_ms);
  for (size_t k = 0; k < np; k++) {
    rec_t *r = &recs[owner[k]];
    if (msgs[k].status == 0) {
      p->metrics.parked++;
      continue;
    }
    p->metrics.park_failures++;
    if (r->has_seq) r->state = REC_FAILED;
    mm_log(MM_LOG_ERROR, r->id, "poison pill could not be parked in %s (%s): %s",
           mm_dlq_target(p->dlq), r->has_seq ? "reported for redelivery"
                                             : "no SequenceNumber to report it by",
           msgs[k].err.msg);
  }
  goto done;
fail:
  /* Out of memory: report what can be reported rather than lose it. */
  for (size_t i = 0; i < n; i++) {
    if (recs[i].state != REC_POISON) continue;
    p->metrics.park_failures++;
    if (recs[i].has_seq) recs[i].state = REC_FAILED;
  }
  mm_log(MM_LOG_ERROR, NULL, "out of memory parking poison pills: reported for redelivery");
done:
  free(msgs);
  free(owner);
  free(offs);
  mm_buf_free(&texts);
}

/* Builds Lambda's answer: the failures by SequenceNumber, and the window
 * state echoed back for tumbling-window events. */
static int build_response(const mm_event_t *ev, rec_t *recs, size_t n,
                          mm_result_t *res) {
  mm_buf_t b = MM_BUF_INIT;
  mm_buf_adds(&b, "{\"batchItemFailures\":[");
  int first = 1;
  for (size_t i = 0; i < n; i++) {
    rec_t *r = &recs[i];
    if (r->state != REC_FAILED && r->state != REC_NOTSTARTED) continue;
    if (!r->has_seq) continue; /* cannot happen: such records are poison */
    if (!first) mm_buf_addc(&b, ',');
    first = 0;
    mm_buf_adds(&b, "{\"itemIdentifier\":");
    const char *s = r->seq;
    mm_buf_json_str(&b, s, strlen(s));
    mm_buf_addc(&b, '}');
  }
  mm_buf_addc(&b, ']');
  if (ev->is_window) {
    mm_buf_adds(&b, ",\"state\":");
    mm_json_emit(&b, &ev->doc, ev->state, NULL);
  }
  mm_buf_addc(&b, '}');
  if (mm_buf_failed(&b)) {
    mm_buf_free(&b);
    return MM_ENOMEM;
  }
  res->response = mm_buf_take(&b, &res->len);
  return 0;
}

/*
 * Phases 2-4 for the records recs[0..n): claim (dedup on), merge, settle
 * each record's state, finish the claims. With dedup on the pipeline calls
 * it in waves of growing size, in record order, so that the earliest
 * records complete even when a slow store cannot take the whole batch
 * before the deadline (Lambda restarts from the lowest reported record:
 * without waves, claims for the whole batch could use up the time and no
 * record would ever complete).
 */
static void store_wave(mm_pipeline_t *p, rec_t *recs, size_t n, int64_t stop_at) {
  mm_claim_t *claims = NULL;
  size_t nclaims = 0;
  merge_plan_t plan = {0};

  /* Phase 2: claim. */
  if (p->dedup && claim_all(p, recs, n, &claims, &nclaims, stop_at)) {
    for (size_t i = 0; i < n; i++)
      if (recs[i].state == REC_PENDING) recs[i].state = REC_FAILED;
    mm_log(MM_LOG_ERROR, NULL, "out of memory preparing dedup claims: records reported");
  }

  /* Phase 3: merge. */
  if (plan_build(p, recs, n, &plan)) {
    for (size_t i = 0; i < n; i++)
      if (recs[i].state == REC_PENDING && recs[i].same_as < 0) recs[i].state = REC_FAILED;
    mm_log(MM_LOG_ERROR, NULL, "out of memory planning merges: records reported");
  } else {
    merge_all(p, recs, &plan, stop_at);
  }
  for (size_t i = 0; i < n; i++) {
    rec_t *r = &recs[i];
    if (r->state != REC_PENDING || r->same_as >= 0) continue;
    int ok = 1;
    for (size_t k = 0; k < r->nkeys; k++)
      if (r->keys[k].state == KEY_FAILED || r->keys[k].state == KEY_TODO) ok = 0;
    r->state = ok ? REC_OK : REC_FAILED;
  }
  /* Copies of an eventID already in this batch follow the first copy. */
  for (size_t i = 0; i < n; i++) {
    rec_t *r = &recs[i];
    if (r->state != REC_PENDING || r->same_as < 0) continue;
    int st = recs[r->same_as].state;
    if (st == REC_OK || st == REC_DUP) {
      r->state = REC_DUP;
      p->metrics.dedup_skips++;
    } else {
      r->state = REC_FAILED;
    }
  }

  /* Phase 4: finish claims. Like every store request, none starts past
   * the margin; a claim left unfinished stays PARTIAL, which is safe. */
  if (p->dedup) finish_all(p, recs, n, claims, nclaims, stop_at);
  for (size_t c = 0; c < nclaims; c++) mm_claim_reset(&claims[c]);
  free(claims);
}

int mm_pipeline_run(mm_pipeline_t *p, const mm_invoke_t *inv, mm_result_t *res) {
  memset(res, 0, sizeof *res);
  mm_metrics_reset(&p->metrics);
  mm_arena_reset(&p->batch);
  p->ids_failed = 0;
  mm_event_t ev;
  memset(&ev, 0, sizeof ev);
  const char *etype = NULL;
  int rc = mm_event_parse(&ev, inv->event, inv->len, &etype, &res->err);
  if (rc) {
    res->error_type = etype ? etype : MM_ETYPE_INVALID_JSON;
    mm_log(MM_LOG_ERROR, NULL, "invocation rejected (%s): %s", res->error_type, res->err.msg);
    mm_event_free(&ev);
    return MM_EINVAL;
  }
  int64_t stop_at = stop_time(p, inv->deadline_ms);
  size_t n = ev.nrecords;
  size_t ninit = 0; /* records initialised so far (rec_free covers those) */
  /* In the batch arena, each initialised as the decode loop reaches it:
   * a zeroed ~200 KB per 1,000 records was a fresh calloc every batch. */
  rec_t *recs = n <= SIZE_MAX / sizeof *recs ? mm_arena_alloc(&p->batch, n * sizeof *recs) : NULL;
  mm_outcome_t out;
  memset(&out, 0, sizeof out);
  if (!recs) {
    rc = mm_err_set(&res->err, MM_ENOMEM, "out of memory for %zu records", n);
    res->error_type = "Runtime.OutOfMemory";
    goto done;
  }
  p->metrics.records = n;
  if (mm_script_set_doc(p->script, &ev.doc) != 0) {
    /* every record would be poison though none is at fault: the whole
     * batch comes back instead */
    rc = mm_err_set(&res->err, MM_ENOMEM, "out of memory making the records readable from Lua");
    res->error_type = "Runtime.OutOfMemory";
    goto done;
  }
  mm_script_set_deadline(p->script, stop_at);

  /* Phase 1: decode, in order, while time allows. No I/O but log lines,
   * so the script's CPU-time watchdog can stand in for counting every
   * instruction (script.h). */
  mm_script_watch_begin(p->script);
  uint32_t node = n ? mm_json_first(&ev.doc, ev.records) : 0;
  const int prefetch = ev.doc.src_len >= MM_JSON_PREFETCH_MIN;
  for (size_t i = 0; i < n; i++, node = mm_json_next(&ev.doc, node)) {
    rec_t *r = &recs[i];
    *r = (rec_t){.node = node, .state = REC_PENDING, .claim = -1, .same_as = -1};
    ninit = i + 1;
    if (past(stop_at)) {
      mm_record_info_t info;
      mm_err_t e;
      mm_err_clear(&e);
      if (read_ids(p, &ev, r, &info, &e)) {
        /* malformed: poison whatever the time (no Lua past the margin) */
        poison_malformed(p, r, &info, &e);
        continue;
      }
      r->state = REC_NOTSTARTED;
      p->metrics.deadline_skips++;
      continue;
    }
    /* the next record comes to the caches while this one runs */
    if (prefetch && i + 1 < n) mm_json_prefetch(&ev.doc, mm_json_next(&ev.doc, node), 4096);
    decode_one(p, &ev, r, &out);
    mm_outcome_free(&out);
  }
  mm_script_watch_end(p->script);
  if (p->ids_failed) {
    rc = mm_err_set(&res->err, MM_ENOMEM, "out of memory for record identifiers");
    res->error_type = "Runtime.OutOfMemory";
    goto done;
  }

  /* Phases 2-4: everything at once without dedup (merges start in record
   * order, so the earliest complete first); with dedup, in waves. */
  if (!p->dedup) {
    store_wave(p, recs, n, stop_at);
  } else {
    size_t lo = 0, wave = MM_PIPELINE_WAVE_FIRST;
    while (lo < n) {
      size_t hi = n - lo < wave ? n : lo + wave;
      if (past(stop_at)) {
        for (size_t i = lo; i < n; i++) {
          if (recs[i].state != REC_PENDING) continue;
          recs[i].state = REC_NOTSTARTED;
          p->metrics.deadline_skips++;
        }
        mm_log(MM_LOG_WARN, NULL, "deadline margin reached: records from #%zu on not started", lo);
        break;
      }
      store_wave(p, recs + lo, hi - lo, stop_at);
      lo = hi;
      if (wave < MM_PIPELINE_WAVE_MAX) wave *= MM_PIPELINE_WAVE_GROWTH;
    }
  }
  park_poison(p, &ev, recs, n, inv->request_id, stop_at);

  if (p->record_cb)
    for (size_t i = 0; i < n; i++) p->record_cb(p->record_ud, i, recs[i].state);
  for (size_t i = 0; i < n; i++) {
    if (recs[i].state == REC_OK) p->metrics.applied++;
    if (recs[i].state == REC_FAILED || recs[i].state == REC_NOTSTARTED) p->metrics.failures++;
  }
  rc = build_response(&ev, recs, n, res);
  if (rc) {
    mm_err_set(&res->err, rc, "out of memory building the response");
    res->error_type = "Runtime.OutOfMemory";
  }

done:
  mm_script_set_doc(p->script, NULL);
  mm_script_set_deadline(p->script, 0);
  if (p->metrics_out) {
    const mm_def_t *def = mm_script_def(p->script);
    mm_metrics_dims_t dims = {.pipeline = def->name, .function = p->function_name,
                              .aggregate = mm_agg_name(def->agg)};
    mm_metrics_emit(&p->metrics, p->metrics_out, p->cfg.metrics_namespace,
                    p->cfg.metrics_dimensions, &dims, mm_now_ms());
  }
  for (size_t i = 0; i < ninit; i++) rec_free(&recs[i]);
  mm_event_free(&ev);
  return rc ? MM_EINVAL : 0;
}

/*
 * dedup_memory.c - the memory:// dedup: claims in a chained hash table on
 * the claim id, for as long as the process lives.
 *
 * Each claim keeps done, its merged ids (owned strings, sorted, each once)
 * and its ttl. Test hook: mm_dedup_memory_inject (dedup.h). Not
 * thread-safe.
 */
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "dedup.h"
#include "retry.h"
#include "store_local.h"

/* Initial number of hash chains (a power of two); doubled when the claims
 * outnumber the chains. */
#define MEMD_INITIAL_CHAINS 64

typedef struct mclaim {
  struct mclaim *next;
  uint64_t hash;
  char *id;          /* owned */
  size_t len;
  int done;
  char **merged;     /* owned */
  size_t nmerged;
  int64_t ttl;
} mclaim_t;

typedef struct mem_dedup {
  mm_dedup_t base;
  mclaim_t **chains;
  size_t nchains, nclaims;
  mm_local_inject_t *inject;
} mem_dedup_t;

static const mm_dedup_vt_t memd_vt;

static mclaim_t *find_claim(mem_dedup_t *d, const char *id, size_t n, uint64_t h) {
  for (mclaim_t *e = d->chains[h & (d->nchains - 1)]; e; e = e->next)
    if (e->hash == h && e->len == n && memcmp(e->id, id, n) == 0) return e;
  return NULL;
}

/* Doubles the chains; on allocation failure the table stays denser. */
static void grow_chains(mem_dedup_t *d) {
  size_t nn = d->nchains * 2;
  mclaim_t **nc = calloc(nn, sizeof *nc);
  if (!nc) return;
  for (size_t i = 0; i < d->nchains; i++) {
    mclaim_t *e = d->chains[i];
    while (e) {
      mclaim_t *next = e->next;
      e->next = nc[e->hash & (nn - 1)];
      nc[e->hash & (nn - 1)] = e;
      e = next;
    }
  }
  free(d->chains);
  d->chains = nc;
  d->nchains = nn;
}

/* Adds an empty claim (not done, no ids); NULL when out of memory. */
static mclaim_t *add_claim(mem_dedup_t *d, const char *id, size_t n, uint64_t h,
                           int64_t ttl) {
  mclaim_t *e = calloc(1, sizeof *e);
  if (!e || !(e->id = malloc(n + 1))) {
    free(e);
    return NULL;
  }
  memcpy(e->id, id, n);
  e->id[n] = '\0';
  e->len = n;
  e->hash = h;
  e->ttl = ttl;
  if (d->nclaims >= d->nchains) grow_chains(d);
  size_t c = h & (d->nchains - 1);
  e->next = d->chains[c];
  d->chains[c] = e;
  d->nclaims++;
  return e;
}

/* Empties an expired claim in place: it now reads as a fresh one. */
static void renew_claim(mclaim_t *e, int64_t ttl) {
  mm_local_ids_free(e->merged, e->nmerged);
  e->merged = NULL;
  e->nmerged = 0;
  e->done = 0;
  e->ttl = ttl;
}

/*
 * Runs the start checks and takes an injection. Returns 1 when the claim
 * must not be applied (status set), 0 to apply it; *lost is set when the
 * answer must be reported as MM_EUNKNOWN after applying.
 */
static int claim_prologue(mem_dedup_t *d, mm_claim_t *c, int64_t deadline_ms,
                          int *lost) {
  *lost = 0;
  if (mm_local_claim_start(c, deadline_ms)) return 1;
  int inj = mm_local_inject_take(d->inject, c->id, c->id_len);
  if (inj == MM_EUNKNOWN) {
    *lost = 1;
  } else if (inj) {
    c->status = mm_err_set(&c->err, inj, "injected %s failure", mm_err_name(inj));
    return 1;
  }
  return 0;
}

/* Marks an applied claim call whose answer was "lost" by injection. */
static void report_lost(mm_claim_t *c) {
  mm_local_ids_free(c->merged, c->nmerged);
  c->merged = NULL;
  c->nmerged = 0;
  c->state = MM_CLAIM_NEW;
  c->status = mm_err_set(&c->err, MM_EUNKNOWN,
                         "injected EUNKNOWN (claim call applied, answer lost)");
}

/*
 * begin: an absent or expired claim is created (NEW); a present one
 * answers DONE or PARTIAL with a copy of its merged ids.
 */
static int memd_begin(mm_dedup_t *base, mm_claim_t *cs, size_t n, int64_t deadline_ms) {
  mem_dedup_t *d = (mem_dedup_t *)base;
  int64_t now_s = mm_now_ms() / 1000;
  for (size_t i = 0; i < n; i++) {
    mm_claim_t *c = &cs[i];
    int lost;
    if (claim_prologue(d, c, deadline_ms, &lost)) continue;
    uint64_t h = mm_fnv1a(c->id, c->id_len);
    mclaim_t *e = find_claim(d, c->id, c->id_len, h);
    if (e && mm_local_expired(e->ttl, now_s)) {
      renew_claim(e, c->ttl);
      c->state = MM_CLAIM_NEW;
    } else if (!e) {
      if (!add_claim(d, c->id, c->id_len, h, c->ttl)) {
        c->status = mm_err_set(&c->err, MM_ERETRY, "out of memory creating a claim");
        continue;
      }
      c->state = MM_CLAIM_NEW;
    } else {
      c->state = e->done ? MM_CLAIM_DONE : MM_CLAIM_PARTIAL;
      c->status = mm_local_ids_copy(e->merged, e->nmerged, &c->merged, &c->err);
      if (!c->status) c->nmerged = e->nmerged;
    }
    if (lost) report_lost(c);
  }
  return 0;
}

/*
 * finish: adds this attempt's ids to the claim (created if it is absent or
 * expired) and marks it done when c->done. done never goes back to 0. A
 * non-zero c->ttl becomes the claim's ttl.
 */
static int memd_finish(mm_dedup_t *base, mm_claim_t *cs, size_t n, int64_t deadline_ms) {
  mem_dedup_t *d = (mem_dedup_t *)base;
  int64_t now_s = mm_now_ms() / 1000;
  for (size_t i = 0; i < n; i++) {
    mm_claim_t *c = &cs[i];
    int lost;
    if (claim_prologue(d, c, deadline_ms, &lost)) continue;
    uint64_t h = mm_fnv1a(c->id, c->id_len);
    mclaim_t *e = find_claim(d, c->id, c->id_len, h);
    if (e && mm_local_expired(e->ttl, now_s)) renew_claim(e, c->ttl);
    if (!e && !(e = add_claim(d, c->id, c->id_len, h, c->ttl))) {
      c->status = mm_err_set(&c->err, MM_ERETRY, "out of memory creating a claim");
      continue;
    }
    char **ids = NULL;
    size_t nids = 0;
    c->status = mm_local_ids_union(e->merged, e->nmerged, c->applied,
                                   c->applied ? c->napplied : 0, &ids, &nids, &c->err);
    if (c->status) continue;
    mm_local_ids_free(e->merged, e->nmerged);
    e->merged = ids;
    e->nmerged = nids;
    if (c->done) e->done = 1;
    if (c->ttl) e->ttl = c->ttl;
    if (lost)
      c->status = mm_err_set(&c->err, MM_EUNKNOWN,
                             "injected EUNKNOWN (claim call applied, answer lost)");
  }
  return 0;
}

static void memd_destroy(mm_dedup_t *base) {
  mem_dedup_t *d = (mem_dedup_t *)base;
  for (size_t i = 0; d->chains && i < d->nchains; i++) {
    mclaim_t *e = d->chains[i];
    while (e) {
      mclaim_t *next = e->next;
      mm_local_ids_free(e->merged, e->nmerged);
      free(e->id);
      free(e);
      e = next;
    }
  }
  mm_local_inject_free(&d->inject);
  free(d->chains);
  free(d);
}

static const mm_dedup_vt_t memd_vt = {memd_begin, memd_finish, memd_destroy};

int mm_dedup_memory_open(mm_dedup_t **out, mm_err_t *err) {
  *out = NULL;
  mem_dedup_t *d = calloc(1, sizeof *d);
  if (!d) return mm_err_set(err, MM_ENOMEM, "out of memory opening memory:// dedup");
  d->base.vt = &memd_vt;
  d->nchains = MEMD_INITIAL_CHAINS;
  d->chains = calloc(d->nchains, sizeof *d->chains);
  if (!d->chains) {
    memd_destroy(&d->base);
    return mm_err_set(err, MM_ENOMEM, "out of memory opening memory:// dedup");
  }
  *out = &d->base;
  return 0;
}

/* Queues failures for a claim id (dedup.h); replaces pending ones. */
void mm_dedup_memory_inject(mm_dedup_t *base, const char *id, int count, int status) {
  if (!base || base->vt != &memd_vt || !id) return;
  mm_local_inject_set(&((mem_dedup_t *)base)->inject, id, count, status);
}

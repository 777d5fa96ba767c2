/*
 * dedup.c - dedup URL dispatch, the call wrappers, mm_claim_reset, and the
 * claim-id list helpers the in-process backends share (see dedup.h and
 * store_local.h).
 */
#include "dedup.h"

#include <stdlib.h>
#include <string.h>

#include "retry.h"
#include "store_dynamodb.h"
#include "store_local.h"

/* ------------------------------------------------------------------ */
/* URL dispatch and wrappers                                           */
/* ------------------------------------------------------------------ */

/* Same URL forms as mm_store_open; the tables differ (murmur_dedup). */
int mm_dedup_open(mm_dedup_t **out, const char *url, const mm_store_opts_t *opts,
                  mm_err_t *err) {
  *out = NULL;
  int kind = 0;
  const char *loc = NULL;
  int rc = mm_local_url(url, "dedup", &kind, &loc, err);
  if (rc) return rc;
  if (kind == MM_URL_MEMORY) return mm_dedup_memory_open(out, err);
  rc = kind == MM_URL_SQLITE ? mm_dedup_sqlite_open(out, loc, err)
                             : mm_dedup_dynamodb_open(out, loc, opts, err);
  if (rc) mm_err_prefix(err, "dedup URL '%s'", url);
  return rc;
}

/* Fails every claim with code (the call could not run). */
static int fail_all(mm_claim_t *c, size_t n, int code, const char *why) {
  for (size_t i = 0; i < n; i++) c[i].status = mm_err_set(&c[i].err, code, "%s", why);
  return code;
}

/*
 * Clears the outputs of begin, then lets the backend run the claims. The
 * merged list is set to empty, not freed: outputs of an earlier begin are
 * the caller's to release with mm_claim_reset first.
 */
int mm_dedup_begin(mm_dedup_t *d, mm_claim_t *c, size_t n, int64_t deadline_ms) {
  for (size_t i = 0; i < n; i++) {
    c[i].state = MM_CLAIM_NEW;
    c[i].merged = NULL;
    c[i].nmerged = 0;
    c[i].status = 0;
    mm_err_clear(&c[i].err);
  }
  if (n == 0) return 0;
  if (!d) return fail_all(c, n, MM_EINVAL, "no dedup");
  return d->vt->begin(d, c, n, deadline_ms);
}

int mm_dedup_finish(mm_dedup_t *d, mm_claim_t *c, size_t n, int64_t deadline_ms) {
  for (size_t i = 0; i < n; i++) {
    c[i].status = 0;
    mm_err_clear(&c[i].err);
  }
  if (n == 0) return 0;
  if (!d) return fail_all(c, n, MM_EINVAL, "no dedup");
  return d->vt->finish(d, c, n, deadline_ms);
}

void mm_dedup_destroy(mm_dedup_t *d) {
  if (d) d->vt->destroy(d);
}

void mm_claim_reset(mm_claim_t *c) {
  if (!c) return;
  mm_local_ids_free(c->merged, c->nmerged);
  c->merged = NULL;
  c->nmerged = 0;
  c->state = MM_CLAIM_NEW;
  c->status = 0;
  mm_err_clear(&c->err);
}

/* ------------------------------------------------------------------ */
/* Shared by the in-process backends (store_local.h)                   */
/* ------------------------------------------------------------------ */

/* Deadline and id checks before a claim touches state. */
int mm_local_claim_start(mm_claim_t *c, int64_t deadline_ms) {
  if (deadline_ms > 0 && mm_now_ms() >= deadline_ms)
    return c->status = mm_err_set(&c->err, MM_EDEADLINE,
                                  "deadline reached before the claim started");
  if (c->id && c->id_len == 0) c->id_len = strlen(c->id);
  if (!c->id || c->id_len == 0)
    return c->status = mm_err_set(&c->err, MM_EPERM, "claim without an id");
  return 0;
}

void mm_local_ids_free(char **ids, size_t n) {
  if (!ids) return;
  for (size_t i = 0; i < n; i++) free(ids[i]);
  free(ids);
}

int mm_local_ids_copy(char *const *ids, size_t n, char ***out, mm_err_t *err) {
  *out = NULL;
  if (n == 0) return 0;
  char **a = calloc(n, sizeof *a);
  if (!a) goto nomem;
  for (size_t i = 0; i < n; i++)
    if (!(a[i] = strdup(ids[i]))) {
      mm_local_ids_free(a, i);
      goto nomem;
    }
  *out = a;
  return 0;
nomem:
  return mm_err_set(err, MM_ERETRY, "out of memory copying claim ids");
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * old + add, sorted, each id once. Sorting keeps the stored list
 * canonical (the same ids always encode the same way) and makes the
 * duplicate check O(n log n) for records with many keys.
 */
int mm_local_ids_union(char *const *old, size_t nold, const char *const *add,
                       size_t nadd, char ***out, size_t *nout, mm_err_t *err) {
  *out = NULL;
  *nout = 0;
  if (nold + nadd == 0) return 0;
  const char **all = malloc((nold + nadd) * sizeof *all);
  if (!all) return mm_err_set(err, MM_ERETRY, "out of memory merging claim ids");
  size_t n = 0;
  for (size_t i = 0; i < nold; i++) all[n++] = old[i];
  for (size_t i = 0; i < nadd; i++)
    if (add[i]) all[n++] = add[i];
  qsort(all, n, sizeof *all, cmp_str);
  size_t u = 0;
  for (size_t i = 0; i < n; i++)
    if (u == 0 || strcmp(all[u - 1], all[i]) != 0) all[u++] = all[i];
  int rc = mm_local_ids_copy((char *const *)all, u, out, err);
  if (!rc) *nout = u;
  free(all);
  return rc;
}

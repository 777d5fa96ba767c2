/*
 * store.c - store URL dispatch, the call wrappers, and the merge rules the
 * in-process backends share (see store.h and store_local.h).
 */
#include "store.h"

#include <stdlib.h>
#include <string.h>

#include "retry.h"
#include "store_dynamodb.h"
#include "store_local.h"

/* Longest part of a key quoted in an error message. */
#define KEY_QUOTE_MAX 200

/* ------------------------------------------------------------------ */
/* URL dispatch                                                        */
/* ------------------------------------------------------------------ */

/*
 * Splits a store or dedup URL (`what` names which, for messages). The
 * scheme decides the backend; the rest is the location: nothing for
 * memory://, a file path for sqlite:// (as written after the scheme, so
 * "sqlite://state.db" is relative and "sqlite:///tmp/state.db" absolute), a
 * table name for dynamodb://.
 */
int mm_local_url(const char *url, const char *what, int *kind, const char **loc,
                 mm_err_t *err) {
  static const struct {
    const char *scheme;
    int kind;
    const char *needs; /* what a location must be, NULL = none allowed */
  } schemes[] = {
      {"memory://", MM_URL_MEMORY, NULL},
      {"sqlite://", MM_URL_SQLITE, "a file path (sqlite://state.db or sqlite:///abs/state.db)"},
      {"dynamodb://", MM_URL_DYNAMODB, "a table name"},
  };
  if (!url) return mm_err_set(err, MM_EINVAL, "no %s URL given", what);
  for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
    size_t n = strlen(schemes[i].scheme);
    if (strncmp(url, schemes[i].scheme, n) != 0) continue;
    const char *rest = url + n;
    if (!schemes[i].needs && *rest)
      return mm_err_set(err, MM_EINVAL, "%s URL '%s': %s takes no location", what, url,
                        schemes[i].scheme);
    if (schemes[i].needs && !*rest)
      return mm_err_set(err, MM_EINVAL, "%s URL '%s': %s needs %s", what, url,
                        schemes[i].scheme, schemes[i].needs);
    *kind = schemes[i].kind;
    *loc = rest;
    return 0;
  }
  return mm_err_set(err, MM_EINVAL,
                    "unknown %s URL '%s' (expected memory://, "
                    "sqlite://PATH or dynamodb://TABLE)", what, url);
}

/* Opens the backend a URL names (mm_local_url). */
int mm_store_open(mm_store_t **out, const char *url, const mm_store_opts_t *opts,
                  mm_err_t *err) {
  *out = NULL;
  int kind = 0;
  const char *loc = NULL;
  int rc = mm_local_url(url, "store", &kind, &loc, err);
  if (rc) return rc;
  if (kind == MM_URL_MEMORY) return mm_store_memory_open(out, err);
  rc = kind == MM_URL_SQLITE ? mm_store_sqlite_open(out, loc, err)
                             : mm_store_dynamodb_open(out, loc, opts, err);
  if (rc) mm_err_prefix(err, "store URL '%s'", url);
  return rc;
}

/*
 * Clears every op's outputs, then lets the backend run them. A missing
 * store fails every op (the call could not run).
 */
int mm_store_merge(mm_store_t *s, mm_merge_t *ops, size_t n, int64_t deadline_ms) {
  for (size_t i = 0; i < n; i++) {
    ops[i].status = 0;
    mm_err_clear(&ops[i].err);
  }
  if (n == 0) return 0;
  if (!s) {
    for (size_t i = 0; i < n; i++)
      ops[i].status = mm_err_set(&ops[i].err, MM_EINVAL, "no store");
    return MM_EINVAL;
  }
  return s->vt->merge(s, ops, n, deadline_ms);
}

int mm_store_query(mm_store_t *s, const char *key, const int64_t *bucket,
                   mm_row_fn fn, void *ud, mm_err_t *err) {
  if (!s || !key || !fn)
    return mm_err_set(err, MM_EINVAL, "query needs a store, a key and a callback");
  return s->vt->query(s, key, bucket, fn, ud, err);
}

void mm_store_destroy(mm_store_t *s) {
  if (s) s->vt->destroy(s);
}

/* ------------------------------------------------------------------ */
/* Rules shared by the in-process backends                             */
/* ------------------------------------------------------------------ */

int mm_local_expired(int64_t ttl, int64_t now_s) { return ttl != 0 && ttl < now_s; }


/* Replaces key's queued failures, or queues a new entry (store_local.h). */
void mm_local_inject_set(mm_local_inject_t **list, const char *key, int count, int status) {
  size_t n = strlen(key);
  for (mm_local_inject_t *j = *list; j; j = j->next)
    if (j->len == n && memcmp(j->key, key, n) == 0) {
      j->count = count;
      j->status = status;
      return;
    }
  if (count <= 0) return;
  mm_local_inject_t *j = calloc(1, sizeof *j);
  if (!j || !(j->key = strdup(key))) {
    free(j);
    return;
  }
  j->len = n;
  j->count = count;
  j->status = status;
  j->next = *list;
  *list = j;
}

/* First entry for key with calls left: one is used up. */
int mm_local_inject_take(mm_local_inject_t *list, const char *key, size_t n) {
  for (mm_local_inject_t *j = list; j; j = j->next)
    if (j->len == n && memcmp(j->key, key, n) == 0 && j->count > 0) {
      j->count--;
      return j->status;
    }
  return 0;
}

void mm_local_inject_free(mm_local_inject_t **list) {
  while (*list) {
    mm_local_inject_t *next = (*list)->next;
    free((*list)->key);
    free(*list);
    *list = next;
  }
}

/*
 * The checks every in-process op runs before touching state: the deadline
 * (an op not started by then is MM_EDEADLINE, never half-done), a delta, and
 * a non-empty key (DynamoDB rejects empty key attributes, so the local
 * stores do too rather than accept what production would refuse).
 */
int mm_local_op_start(mm_merge_t *op, int64_t deadline_ms) {
  if (deadline_ms > 0 && mm_now_ms() >= deadline_ms)
    return op->status = mm_err_set(&op->err, MM_EDEADLINE,
                                   "deadline reached before the merge started");
  if (!op->delta)
    return op->status = mm_err_set(&op->err, MM_EPERM, "merge without a delta");
  if (op->key && op->key_len == 0) op->key_len = strlen(op->key);
  if (!op->key || op->key_len == 0)
    return op->status = mm_err_set(&op->err, MM_EPERM,
                                   "empty key: DynamoDB rejects empty key attributes");
  return 0;
}

/*
 * One delta into one row. The aggregate kind is checked here (a row holds
 * one kind for life); everything about the value itself is mm_agg_merge's.
 *
 * Expired rows: DynamoDB deletes a row some time after its ttl passes
 * (typically within days), and until then UpdateItem merges into it as if
 * it were live. The in-process stores never delete, so they behave like
 * DynamoDB before the deletion: ttl is stored and shown, never used to
 * discard a value. This keeps local replays of old events (fixtures,
 * saved batches) equal to what DynamoDB computes for them.
 */
int mm_local_merge_row(const mm_merge_t *op, int have, mm_agg_t old_agg,
                       const void *old, size_t old_len, mm_buf_t *out, int *write,
                       mm_err_t *err) {
  *write = 0;
  const mm_delta_t *d = op->delta;
  if (have && old_agg != d->agg) {
    size_t kl = op->key_len > KEY_QUOTE_MAX ? KEY_QUOTE_MAX : op->key_len;
    return mm_err_set(err, MM_EPERM,
                      "row %.*s%s/%lld holds a %s, not a %s (a row keeps the aggregate "
                      "that created it: another pipeline writes the same keys to this "
                      "store, or this pipeline's aggregate changed; use distinct keys "
                      "or another store)",
                      (int)kl, op->key, kl < op->key_len ? "..." : "",
                      (long long)op->bucket, mm_agg_name(old_agg),
                      mm_agg_name(d->agg));
  }
  int changed = 0;
  int rc = mm_agg_merge_buf(d, have ? old : NULL, have ? old_len : 0, out, &changed, err);
  if (rc) {
    /* The op statuses are store outcomes: a value the aggregate rejects
     * (a sum past 38 digits, a bad stored sketch) is what DynamoDB answers
     * with a ValidationException, a permanent failure. */
    size_t kl = op->key_len > KEY_QUOTE_MAX ? KEY_QUOTE_MAX : op->key_len;
    mm_err_prefix(err, "row %.*s/%lld", (int)kl, op->key, (long long)op->bucket);
    rc = rc == MM_ENOMEM ? MM_ERETRY : MM_EPERM;
    if (err) err->code = rc;
    return rc;
  }
  /* A new row is always written, an existing one only when its value
   * changed (as DynamoDB's conditional min/max/first/last writes). */
  *write = !have || changed;
  return 0;
}

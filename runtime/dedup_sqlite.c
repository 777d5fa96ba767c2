/*
 * dedup_sqlite.c - the sqlite://PATH dedup: claims in one table of a local
 * file (the same file as the store's may be used; WAL lets them share it).
 *
 *   murmur_dedup(pk TEXT PRIMARY KEY, done INTEGER, merged TEXT, ttl INTEGER)
 *
 * merged holds the claim's merged ids, sorted, each followed by a NUL byte,
 * bound as a BLOB: ids are "<bucket>:<key>" and a key may hold any byte but
 * NUL (including newlines and invalid UTF-8, which a text encoding such as
 * JSON would have to alter). ttl is NULL when the claim has none.
 *
 * A begin or finish call over n claims is ONE transaction, each claim
 * read-then-write, with the same failure rules as the store
 * (store_sqlite.c): a claim's failure is its own unless SQLite abandons the
 * transaction or COMMIT fails, and then every claim of the call fails.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dedup.h"
#include "retry.h"
#include "store_local.h"

typedef struct sql_dedup {
  mm_dedup_t base;
  sqlite3 *db;
  /* Prepared once, kept for the dedup's life. */
  sqlite3_stmt *begin, *commit, *rollback, *get, *put;
} sql_dedup_t;

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS murmur_dedup("
    "pk TEXT PRIMARY KEY NOT NULL, done INTEGER NOT NULL, merged TEXT, ttl INTEGER)";

/* What a claim row holds (ids owned). */
typedef struct crow {
  int have;          /* row present and not expired */
  int done;
  int64_t ttl;
  char **ids;
  size_t nids;
} crow_t;

/* Splits the stored list (id NUL id NUL ...) into owned strings. A final
 * id without its NUL is taken as it is. */
static int decode_ids(const char *p, size_t n, char ***out, size_t *nout, mm_err_t *err) {
  size_t count = 0;
  *out = NULL;
  *nout = 0;
  for (size_t i = 0; i < n; i++)
    if (p[i] == '\0' || i + 1 == n) count++;
  if (count == 0) return 0;
  char **ids = calloc(count, sizeof *ids);
  if (!ids) return mm_err_set(err, MM_ERETRY, "out of memory reading a claim");
  size_t k = 0, start = 0;
  for (size_t i = 0; i < n; i++) {
    if (p[i] != '\0' && i + 1 != n) continue;
    size_t len = (p[i] == '\0' ? i : i + 1) - start;
    if (!(ids[k] = malloc(len + 1))) {
      mm_local_ids_free(ids, k);
      return mm_err_set(err, MM_ERETRY, "out of memory reading a claim");
    }
    memcpy(ids[k], p + start, len);
    ids[k][len] = '\0';
    k++;
    start = i + 1;
  }
  *out = ids;
  *nout = k;
  return 0;
}

/* Reads claim c's row; an expired row reads as absent (have = 0). */
static int read_claim(sql_dedup_t *d, const mm_claim_t *c, int64_t now_s, crow_t *row,
                      mm_err_t *err) {
  memset(row, 0, sizeof *row);
  int code = 0;
  sqlite3_bind_text(d->get, 1, c->id, (int)c->id_len, SQLITE_STATIC);
  int rc = sqlite3_step(d->get);
  if (rc == SQLITE_ROW) {
    int64_t ttl = sqlite3_column_int64(d->get, 2);
    if (!mm_local_expired(ttl, now_s)) {
      row->have = 1;
      row->done = sqlite3_column_int(d->get, 0) != 0;
      row->ttl = ttl;
      const char *p = sqlite3_column_blob(d->get, 1);
      size_t n = (size_t)sqlite3_column_bytes(d->get, 1);
      code = decode_ids(p, n, &row->ids, &row->nids, err);
    }
  } else if (rc != SQLITE_DONE) {
    code = mm_local_sqlite_fail(d->db, rc, "reading a claim", err);
  }
  sqlite3_reset(d->get);
  return code;
}

/* Writes claim c's row: done, the ids (encoded) and ttl. */
static int write_claim(sql_dedup_t *d, const mm_claim_t *c, int done, char *const *ids,
                       size_t nids, int64_t ttl, mm_err_t *err) {
  size_t total = 0;
  for (size_t i = 0; i < nids; i++) total += strlen(ids[i]) + 1;
  if (total > INT_MAX) return mm_err_set(err, MM_EPERM, "claim id list too large");
  char *blob = malloc(total ? total : 1);
  if (!blob) return mm_err_set(err, MM_ERETRY, "out of memory writing a claim");
  size_t at = 0;
  for (size_t i = 0; i < nids; i++) {
    size_t len = strlen(ids[i]) + 1;
    memcpy(blob + at, ids[i], len);
    at += len;
  }
  sqlite3_bind_text(d->put, 1, c->id, (int)c->id_len, SQLITE_STATIC);
  sqlite3_bind_int(d->put, 2, done);
  sqlite3_bind_blob(d->put, 3, blob, (int)total, SQLITE_STATIC);
  if (ttl) sqlite3_bind_int64(d->put, 4, ttl);
  else sqlite3_bind_null(d->put, 4);
  int code = mm_local_sqlite_exec(d->db, d->put, "writing a claim", err);
  free(blob);
  return code;
}

/* begin for one claim: present -> DONE/PARTIAL with its ids; absent or
 * expired -> a new empty claim (NEW). */
static void begin_one(sql_dedup_t *d, mm_claim_t *c, int64_t now_s) {
  crow_t row;
  c->status = read_claim(d, c, now_s, &row, &c->err);
  if (c->status) return;
  if (row.have) {
    c->state = row.done ? MM_CLAIM_DONE : MM_CLAIM_PARTIAL;
    c->merged = row.ids; /* ownership passes to the claim */
    c->nmerged = row.nids;
    return;
  }
  c->state = MM_CLAIM_NEW;
  c->status = write_claim(d, c, 0, NULL, 0, c->ttl, &c->err);
}

/* finish for one claim: the union of stored and applied ids; done is
 * sticky; a non-zero c->ttl replaces the stored one. */
static void finish_one(sql_dedup_t *d, mm_claim_t *c, int64_t now_s) {
  crow_t row;
  char **ids = NULL;
  size_t nids = 0;
  c->status = read_claim(d, c, now_s, &row, &c->err);
  if (c->status) return;
  int64_t ttl = c->ttl ? c->ttl : row.ttl;
  c->status = mm_local_ids_union(row.ids, row.nids, c->applied,
                                 c->applied ? c->napplied : 0, &ids, &nids, &c->err);
  if (!c->status)
    c->status = write_claim(d, c, (row.have && row.done) || c->done, ids, nids, ttl,
                            &c->err);
  mm_local_ids_free(ids, nids);
  mm_local_ids_free(row.ids, row.nids);
}

/* Fails every claim that looked applied (its transaction did not commit)
 * and drops the outputs it was given. */
static void fail_applied(mm_claim_t *cs, size_t n, int code, const char *why) {
  for (size_t i = 0; i < n; i++)
    if (cs[i].status == 0) {
      mm_local_ids_free(cs[i].merged, cs[i].nmerged);
      cs[i].merged = NULL;
      cs[i].nmerged = 0;
      cs[i].state = MM_CLAIM_NEW;
      cs[i].status = mm_err_set(&cs[i].err, code, "%s", why);
    }
}

/* One call (begin or finish) over n claims in one transaction. */
static int run_batch(sql_dedup_t *d, mm_claim_t *cs, size_t n, int64_t deadline_ms,
                     void (*one)(sql_dedup_t *, mm_claim_t *, int64_t)) {
  mm_err_t e;
  int64_t now_ms = mm_now_ms();
  if (deadline_ms > 0 && now_ms >= deadline_ms) {
    for (size_t i = 0; i < n; i++) mm_local_claim_start(&cs[i], deadline_ms);
    return 0;
  }
  int rc = mm_local_sqlite_exec(d->db, d->begin, "beginning a claim batch", &e);
  if (rc) {
    fail_applied(cs, n, rc, e.msg);
    return rc;
  }
  for (size_t i = 0; i < n; i++) {
    mm_claim_t *c = &cs[i];
    if (mm_local_claim_start(c, deadline_ms)) continue;
    if (c->id_len > INT_MAX) {
      c->status = mm_err_set(&c->err, MM_EPERM, "claim id too long");
      continue;
    }
    one(d, c, now_ms / 1000);
    if (c->status && sqlite3_get_autocommit(d->db)) {
      char why[MM_ERR_MAX + 64];
      snprintf(why, sizeof why, "claim batch rolled back: %s", c->err.msg);
      fail_applied(cs, n, c->status, why);
      return 0;
    }
  }
  rc = mm_local_sqlite_exec(d->db, d->commit, "committing a claim batch", &e);
  if (rc) {
    mm_local_sqlite_exec(d->db, d->rollback, "rolling back", NULL);
    fail_applied(cs, n, rc, e.msg);
  }
  return 0;
}

static int sqld_begin(mm_dedup_t *base, mm_claim_t *c, size_t n, int64_t deadline_ms) {
  return run_batch((sql_dedup_t *)base, c, n, deadline_ms, begin_one);
}

static int sqld_finish(mm_dedup_t *base, mm_claim_t *c, size_t n, int64_t deadline_ms) {
  return run_batch((sql_dedup_t *)base, c, n, deadline_ms, finish_one);
}

static void sqld_destroy(mm_dedup_t *base) {
  sql_dedup_t *d = (sql_dedup_t *)base;
  sqlite3_stmt *all[] = {d->begin, d->commit, d->rollback, d->get, d->put};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) sqlite3_finalize(all[i]);
  sqlite3_close(d->db);
  free(d);
}

static const mm_dedup_vt_t sqld_vt = {sqld_begin, sqld_finish, sqld_destroy};

int mm_dedup_sqlite_open(mm_dedup_t **out, const char *path, mm_err_t *err) {
  *out = NULL;
  if (!path || !*path) return mm_err_set(err, MM_EINVAL, "sqlite dedup needs a file path");
  sql_dedup_t *d = calloc(1, sizeof *d);
  if (!d) return mm_err_set(err, MM_ENOMEM, "out of memory opening sqlite dedup");
  d->base.vt = &sqld_vt;
  int rc = mm_local_sqlite_open(&d->db, path, SCHEMA, err);
  if (!rc) rc = mm_local_sqlite_prepare(d->db, &d->begin, "BEGIN IMMEDIATE", err);
  if (!rc) rc = mm_local_sqlite_prepare(d->db, &d->commit, "COMMIT", err);
  if (!rc) rc = mm_local_sqlite_prepare(d->db, &d->rollback, "ROLLBACK", err);
  if (!rc)
    rc = mm_local_sqlite_prepare(
        d->db, &d->get, "SELECT done, merged, ttl FROM murmur_dedup WHERE pk = ?1", err);
  if (!rc)
    rc = mm_local_sqlite_prepare(d->db, &d->put,
                                 "INSERT OR REPLACE INTO murmur_dedup(pk, done, merged, ttl) "
                                 "VALUES (?1, ?2, ?3, ?4)",
                                 err);
  if (rc) {
    sqld_destroy(&d->base);
    return rc;
  }
  *out = &d->base;
  return 0;
}

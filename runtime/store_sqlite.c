/*
 * store_sqlite.c - the sqlite://PATH store: one local file, the layout of
 * DESIGN section 4 as a table.
 *
 *   murmur_state(pk TEXT, sk INTEGER, agg TEXT, v BLOB, ttl INTEGER,
 *                PRIMARY KEY(pk, sk))
 *
 * agg is the aggregate's name (agg.h mm_agg_name), v the stored bytes of
 * agg.h (produced and read only by mm_agg_merge / mm_agg_render), ttl NULL
 * when the row has none. The file is in WAL mode with a busy timeout, so a
 * dedup connection (or a `murmur-ddb query`) can share it.
 *
 * A merge batch is ONE transaction (BEGIN IMMEDIATE ... COMMIT): one fsync
 * per batch instead of one per op. Each op is read-merge-write (SELECT,
 * mm_agg_merge in C, INSERT OR REPLACE), so an op that fails (another
 * aggregate in the row, an unmergeable stored value) writes nothing and the
 * others go on; a failed statement is undone by SQLite alone. Only if SQLite
 * abandons the whole transaction (I/O error, disk full) or COMMIT fails do
 * the ops that looked applied become failures too, so no op is ever
 * reported done without being durable.
 *
 * Also holds the SQLite plumbing store_local.h declares for dedup_sqlite.c.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "retry.h"
#include "store.h"
#include "store_local.h"

typedef struct sql_store {
  mm_store_t base;
  sqlite3 *db;
  /* Prepared once, kept for the store's life (reset after each use). */
  sqlite3_stmt *begin, *commit, *rollback, *get, *put, *q_all, *q_one;
  mm_buf_t scratch; /* each merge's new value (mm_local_merge_row) */
} sql_store_t;

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS murmur_state("
    "pk TEXT NOT NULL, sk INTEGER NOT NULL, agg TEXT NOT NULL, v BLOB, "
    "ttl INTEGER, PRIMARY KEY(pk, sk))";

/* ------------------------------------------------------------------ */
/* SQLite plumbing (store_local.h)                                     */
/* ------------------------------------------------------------------ */

int mm_local_sqlite_fail(sqlite3 *db, int rc, const char *what, mm_err_t *err) {
  int prim = rc & 0xff;
  int code = (prim == SQLITE_BUSY || prim == SQLITE_LOCKED) ? MM_ERETRY : MM_EPERM;
  return mm_err_set(err, code, "%s: %s", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

int mm_local_sqlite_exec(sqlite3 *db, sqlite3_stmt *st, const char *what,
                         mm_err_t *err) {
  int rc = sqlite3_step(st);
  int out = 0;
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) out = mm_local_sqlite_fail(db, rc, what, err);
  sqlite3_reset(st);
  return out;
}

int mm_local_sqlite_prepare(sqlite3 *db, sqlite3_stmt **st, const char *sql,
                            mm_err_t *err) {
  int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);
  if (rc != SQLITE_OK) return mm_local_sqlite_fail(db, rc, "preparing a statement", err);
  return 0;
}

/*
 * Opens the file with the settings both local tables need: WAL (readers do
 * not block the writer, so query and dedup can share the file), a busy
 * timeout (a second writer waits a little, then the op is MM_ERETRY) and
 * synchronous=NORMAL (in WAL mode a commit survives a process crash, which
 * is what a local store is for; only an OS crash may lose the last ones).
 */
int mm_local_sqlite_open(sqlite3 **out, const char *path, const char *schema,
                         mm_err_t *err) {
  sqlite3 *db = NULL;
  char *emsg = NULL;
  int code = 0;
  *out = NULL;
  int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
  if (rc != SQLITE_OK) {
    code = mm_err_set(err, MM_EINVAL, "cannot open sqlite file '%s': %s", path,
                      db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    goto done;
  }
  sqlite3_busy_timeout(db, MM_SQLITE_BUSY_MS);
  rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL", NULL,
                    NULL, &emsg);
  if (rc == SQLITE_OK) rc = sqlite3_exec(db, schema, NULL, NULL, &emsg);
  if (rc != SQLITE_OK) {
    code = mm_err_set(err, (rc & 0xff) == SQLITE_BUSY ? MM_ERETRY : MM_EINVAL,
                      "cannot use sqlite file '%s': %s", path,
                      emsg ? emsg : sqlite3_errstr(rc));
    goto done;
  }
  *out = db;
  db = NULL;
done:
  sqlite3_free(emsg);
  sqlite3_close(db);
  return code;
}

/* ------------------------------------------------------------------ */
/* Merge                                                               */
/* ------------------------------------------------------------------ */

/* Quotes a row for messages: "key/bucket" (key cut to 200 bytes). */
#define ROW_FMT "%.*s/%lld"
#define ROW_ARGS(k, n, b) (int)((n) > 200 ? 200 : (n)), (k), (long long)(b)

/*
 * Reads, merges and writes one op inside the batch's transaction; sets
 * op->status. The stored bytes SELECT returns are only valid until the
 * statement is reset, so the merge happens before the reset.
 */
static void run_op(sql_store_t *s, mm_merge_t *op) {
  mm_buf_t *nv = &s->scratch;
  int write = 0, rc;
  if (op->key_len > INT_MAX) {
    op->status = mm_err_set(&op->err, MM_EPERM, "key too long");
    return;
  }
  sqlite3_bind_text(s->get, 1, op->key, (int)op->key_len, SQLITE_STATIC);
  sqlite3_bind_int64(s->get, 2, op->bucket);
  rc = sqlite3_step(s->get);
  if (rc == SQLITE_ROW) {
    const char *name = (const char *)sqlite3_column_text(s->get, 0);
    mm_agg_t agg = MM_AGG_SUM;
    if (mm_agg_parse(name ? name : "", &agg) != 0) {
      op->status = mm_err_set(&op->err, MM_EPERM,
                              "row " ROW_FMT " holds an unknown aggregate '%s'",
                              ROW_ARGS(op->key, op->key_len, op->bucket),
                              name ? name : "");
    } else {
      const void *v = sqlite3_column_blob(s->get, 1);
      size_t vlen = (size_t)sqlite3_column_bytes(s->get, 1);
      op->status = mm_local_merge_row(op, 1, agg, v, vlen, nv, &write, &op->err);
    }
  } else if (rc == SQLITE_DONE) {
    op->status = mm_local_merge_row(op, 0, MM_AGG_SUM, NULL, 0, nv, &write, &op->err);
  } else {
    op->status = mm_local_sqlite_fail(s->db, rc, "reading a row", &op->err);
  }
  sqlite3_reset(s->get);
  if (op->status || !write) return;
  if (nv->len > INT_MAX) {
    op->status = mm_err_set(&op->err, MM_EPERM, "stored value too large");
    return;
  }
  sqlite3_bind_text(s->put, 1, op->key, (int)op->key_len, SQLITE_STATIC);
  sqlite3_bind_int64(s->put, 2, op->bucket);
  sqlite3_bind_text(s->put, 3, mm_agg_name(op->delta->agg), -1, SQLITE_STATIC);
  sqlite3_bind_blob(s->put, 4, nv->data, (int)nv->len, SQLITE_STATIC);
  if (op->ttl) sqlite3_bind_int64(s->put, 5, op->ttl);
  else sqlite3_bind_null(s->put, 5);
  op->status = mm_local_sqlite_exec(s->db, s->put, "writing a row", &op->err);
}

/* Turns every op that looked applied into failure `code` (the transaction
 * that held it did not commit). */
static void fail_applied(mm_merge_t *ops, size_t n, int code, const char *why) {
  for (size_t i = 0; i < n; i++)
    if (ops[i].status == 0)
      ops[i].status = mm_err_set(&ops[i].err, code, "%s", why);
}

/*
 * The batch: BEGIN IMMEDIATE, each op (those not started by the deadline
 * are MM_EDEADLINE), COMMIT. Returns non-zero only when the transaction
 * could not begin (every op failed with that code).
 */
static int sql_merge(mm_store_t *base, mm_merge_t *ops, size_t n, int64_t deadline_ms) {
  sql_store_t *s = (sql_store_t *)base;
  mm_err_t e;
  if (deadline_ms > 0 && mm_now_ms() >= deadline_ms) {
    for (size_t i = 0; i < n; i++) mm_local_op_start(&ops[i], deadline_ms);
    return 0;
  }
  int rc = mm_local_sqlite_exec(s->db, s->begin, "beginning a merge batch", &e);
  if (rc) {
    fail_applied(ops, n, rc, e.msg);
    return rc;
  }
  for (size_t i = 0; i < n; i++) {
    mm_merge_t *op = &ops[i];
    if (mm_local_op_start(op, deadline_ms)) continue;
    run_op(s, op);
    if (op->status && sqlite3_get_autocommit(s->db)) {
      /* SQLite rolled the whole transaction back (I/O error, disk full):
       * the earlier ops are gone and the later ones cannot run in it. */
      char why[MM_ERR_MAX + 64];
      int code = op->status;
      snprintf(why, sizeof why, "merge batch rolled back: %s", op->err.msg);
      fail_applied(ops, n, code, why);
      return 0;
    }
  }
  rc = mm_local_sqlite_exec(s->db, s->commit, "committing a merge batch", &e);
  if (rc) {
    mm_local_sqlite_exec(s->db, s->rollback, "rolling back", NULL);
    fail_applied(ops, n, rc, e.msg);
  }
  return 0;
}

/* ------------------------------------------------------------------ */
/* Query                                                               */
/* ------------------------------------------------------------------ */

/*
 * Rows of key in bucket order (the primary key's order). Expired rows are
 * listed, as a DynamoDB Query lists rows its TTL process has not deleted
 * yet. fn must not call back into this store.
 */
static int sql_query(mm_store_t *base, const char *key, const int64_t *bucket,
                     mm_row_fn fn, void *ud, mm_err_t *err) {
  sql_store_t *s = (sql_store_t *)base;
  sqlite3_stmt *st = bucket ? s->q_one : s->q_all;
  int code = 0, rc;
  sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
  if (bucket) sqlite3_bind_int64(st, 2, *bucket);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    int64_t sk = sqlite3_column_int64(st, 0);
    const char *name = (const char *)sqlite3_column_text(st, 1);
    mm_agg_t agg;
    if (mm_agg_parse(name ? name : "", &agg) != 0) {
      code = mm_err_set(err, MM_EPERM, "row %s/%lld holds an unknown aggregate '%s'",
                        key, (long long)sk, name ? name : "");
      goto done;
    }
    const void *v = sqlite3_column_blob(st, 2);
    size_t vlen = (size_t)sqlite3_column_bytes(st, 2);
    char *json = NULL;
    code = mm_agg_render(agg, v, vlen, &json, err);
    if (code) {
      free(json);
      mm_err_prefix(err, "row %s/%lld", key, (long long)sk);
      goto done;
    }
    mm_row_t row = {.key = key, .bucket = sk, .value_json = json,
                    .ttl = sqlite3_column_int64(st, 3), .agg = agg, .agg_exact = 1,
                    .stored = v, .stored_len = vlen};
    int stop = fn(ud, &row);
    free(json);
    if (stop) goto done;
  }
  if (rc != SQLITE_DONE) code = mm_local_sqlite_fail(s->db, rc, "querying rows", err);
done:
  sqlite3_reset(st);
  return code;
}

/* ------------------------------------------------------------------ */
/* Open / destroy                                                      */
/* ------------------------------------------------------------------ */

static void sql_destroy(mm_store_t *base) {
  sql_store_t *s = (sql_store_t *)base;
  sqlite3_stmt *all[] = {s->begin, s->commit, s->rollback, s->get,
                         s->put,   s->q_all,  s->q_one};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) sqlite3_finalize(all[i]);
  sqlite3_close(s->db);
  mm_buf_free(&s->scratch);
  free(s);
}

static const mm_store_vt_t sql_vt = {"sqlite", sql_merge, sql_query, sql_destroy};

int mm_store_sqlite_open(mm_store_t **out, const char *path, mm_err_t *err) {
  *out = NULL;
  if (!path || !*path) return mm_err_set(err, MM_EINVAL, "sqlite store needs a file path");
  sql_store_t *s = calloc(1, sizeof *s);
  if (!s) return mm_err_set(err, MM_ENOMEM, "out of memory opening sqlite store");
  s->base.vt = &sql_vt;
  int rc = mm_local_sqlite_open(&s->db, path, SCHEMA, err);
  if (!rc) rc = mm_local_sqlite_prepare(s->db, &s->begin, "BEGIN IMMEDIATE", err);
  if (!rc) rc = mm_local_sqlite_prepare(s->db, &s->commit, "COMMIT", err);
  if (!rc) rc = mm_local_sqlite_prepare(s->db, &s->rollback, "ROLLBACK", err);
  if (!rc)
    rc = mm_local_sqlite_prepare(
        s->db, &s->get, "SELECT agg, v FROM murmur_state WHERE pk = ?1 AND sk = ?2",
        err);
  if (!rc)
    rc = mm_local_sqlite_prepare(s->db, &s->put,
                                 "INSERT OR REPLACE INTO murmur_state(pk, sk, agg, v, ttl) "
                                 "VALUES (?1, ?2, ?3, ?4, ?5)",
                                 err);
  if (!rc)
    rc = mm_local_sqlite_prepare(
        s->db, &s->q_all,
        "SELECT sk, agg, v, ttl FROM murmur_state WHERE pk = ?1 ORDER BY sk", err);
  if (!rc)
    rc = mm_local_sqlite_prepare(
        s->db, &s->q_one,
        "SELECT sk, agg, v, ttl FROM murmur_state WHERE pk = ?1 AND sk = ?2", err);
  if (rc) {
    sql_destroy(&s->base);
    return rc;
  }
  *out = &s->base;
  return 0;
}

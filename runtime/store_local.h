/*
 * store_local.h - rules shared by the in-process stores and dedups
 * (store_memory.c, store_sqlite.c, dedup_memory.c, dedup_sqlite.c).
 *
 * Provides: the URL split mm_store_open and mm_dedup_open share, the op
 * prologue every backend runs (deadline, key check), the
 * merge of one delta into one stored row (aggregate check, then
 * agg.h mm_agg_merge: the stores never interpret stored bytes themselves),
 * the union of claim id lists, and the memory backends' key hash and test
 * failure queues. Internal: not part of the store or dedup
 * contract; callers outside runtime/store*.c and runtime/dedup*.c should not
 * include it. Relies on agg.h and retry.h (mm_now_ms).
 */
#ifndef MM_STORE_LOCAL_H
#define MM_STORE_LOCAL_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>
#include "agg.h"
#include "buf.h"
#include "dedup.h"
#include "err.h"
#include "store.h"

/* Milliseconds an SQLite connection waits for another writer before the op
 * fails with MM_ERETRY (sqlite3_busy_timeout, in ms). */
#define MM_SQLITE_BUSY_MS 2000

/* Backends a store or dedup URL can name. */
enum { MM_URL_MEMORY = 1, MM_URL_SQLITE, MM_URL_DYNAMODB };

/* Splits url into its backend (*kind, MM_URL_*) and location (*loc, inside
 * url: "" for memory://, the path or table otherwise). A missing URL, an
 * unknown scheme, a location memory:// does not take or one sqlite:// /
 * dynamodb:// lack is MM_EINVAL with a message naming `what` ("store" or
 * "dedup") and the URL. */
int mm_local_url(const char *url, const char *what, int *kind, const char **loc,
                 mm_err_t *err);


/* A memory backend's queued test failures (mm_store_memory_inject,
 * mm_dedup_memory_inject): per key, `count` more calls fail with status. */
typedef struct mm_local_inject {
  struct mm_local_inject *next;
  char *key;          /* owned */
  size_t len;
  int count;          /* calls still to fail */
  int status;
} mm_local_inject_t;

/* Queues count failures for key, replacing any pending for it (count <= 0
 * removes them). An allocation failure queues nothing (the test then sees
 * no failure and says so). */
void mm_local_inject_set(mm_local_inject_t **list, const char *key, int count, int status);

/* Takes one queued failure for key: its status, or 0 when none is pending. */
int mm_local_inject_take(mm_local_inject_t *list, const char *key, size_t n);

void mm_local_inject_free(mm_local_inject_t **list);

/* 1 when a row or claim with this ttl (epoch seconds, 0 = none) has
 * expired at now_s. Expired rows and claims count as absent. */
int mm_local_expired(int64_t ttl, int64_t now_s);

/* Checks that op may start: returns 0, or sets op->status/err to
 * MM_EDEADLINE (deadline_ms != 0 and reached) or MM_EPERM (no delta, empty
 * key) and returns that code. Normalises op->key_len (0 -> strlen(key)). */
int mm_local_op_start(mm_merge_t *op, int64_t deadline_ms);

/* Merges op's delta into a stored row. have = 0 when there is no row;
 * otherwise old_agg/old/old_len describe it. An expired row merges like a
 * live one (see store.c). On success out (the backend's scratch buffer,
 * reused from op to op: mm_agg_merge_buf) holds the new stored value and
 * *write is 1 when the row must be written (0: the value is unchanged and
 * the row exists, nothing to do). A row of another aggregate or an
 * unmergeable stored value is MM_EPERM (the row is left alone). */
int mm_local_merge_row(const mm_merge_t *op, int have, mm_agg_t old_agg,
                       const void *old, size_t old_len, mm_buf_t *out, int *write,
                       mm_err_t *err);

/* Checks that claim c may start (deadline; an id is required). Returns 0 or
 * the status it set. Normalises c->id_len (0 -> strlen(id)). */
int mm_local_claim_start(mm_claim_t *c, int64_t deadline_ms);

/* The union of a claim's merged ids and the ids of one finish: *out is a
 * malloc'd array of malloc'd strings, sorted bytewise, without duplicates
 * (free with mm_local_ids_free). old may be NULL when nold == 0. */
int mm_local_ids_union(char *const *old, size_t nold, const char *const *add,
                       size_t nadd, char ***out, size_t *nout, mm_err_t *err);

/* Copies n ids into a new owned array (as begin returns them). */
int mm_local_ids_copy(char *const *ids, size_t n, char ***out, mm_err_t *err);

void mm_local_ids_free(char **ids, size_t n);

/* ---- SQLite plumbing shared by store_sqlite.c and dedup_sqlite.c ---- */

/* Opens (creating) the file at path in WAL mode with a busy timeout and
 * runs schema (CREATE TABLE IF NOT EXISTS ...). A file that cannot be
 * opened or is not a database is MM_EINVAL naming path. *db is owned by the
 * caller (sqlite3_close) and NULL on failure. */
int mm_local_sqlite_open(sqlite3 **db, const char *path, const char *schema,
                         mm_err_t *err);

/* Prepares one statement kept for the connection's life. */
int mm_local_sqlite_prepare(sqlite3 *db, sqlite3_stmt **st, const char *sql,
                            mm_err_t *err);

/* Maps a failed sqlite result: SQLITE_BUSY/LOCKED are MM_ERETRY (another
 * writer holds the file), everything else MM_EPERM; the message is
 * "what: <sqlite's message>". Returns the code. */
int mm_local_sqlite_fail(sqlite3 *db, int rc, const char *what, mm_err_t *err);

/* Steps a statement that returns no rows and resets it: 0 or the mapped
 * failure. */
int mm_local_sqlite_exec(sqlite3 *db, sqlite3_stmt *st, const char *what,
                         mm_err_t *err);

#endif

/*
 * store_dynamodb.h - the dynamodb://TABLE store and dedup backends.
 *
 * Provides: constructors for store.h's and dedup.h's interfaces over the
 * DynamoDB JSON API (ddb.h). mm_store_open / mm_dedup_open call them for
 * "dynamodb://TABLE" with the part after the scheme as `table`. Settings
 * (endpoint, region, credentials, CA bundle) come from the environment as
 * aws.h describes; opts gives the in-flight limit and request timeout.
 *
 * Store table (DESIGN 4): hash key pk (S, the aggregation key), range key
 * sk (N, the bucket, 0 when not windowed). Attributes written:
 *
 *   aggregate  attributes          one merge is
 *   sum,count  v N                 UpdateItem ADD v :d (exact in DynamoDB)
 *   min,max    v N or S            UpdateItem SET v = :d, condition
 *                                  attribute_not_exists(v) OR v > :d (min) /
 *                                  v < :d (max); a failed condition is success.
 *                                  Numbers order before strings, as in agg.h:
 *                                  the condition also tests attribute_type.
 *   first,last v N or S, t N       UpdateItem SET v = :d, t = :t, condition
 *                                  attribute_not_exists(t) OR t > :t (first: a
 *                                  tie keeps the stored value) / t <= :t
 *                                  (last: a tie takes the newer write).
 *   set        v NS or SS          UpdateItem ADD v :s. Numbers are stored as
 *                                  NS, strings as SS; one row holds one set
 *                                  type, so a delta mixing numbers and
 *                                  strings is MM_EPERM, and so is a string
 *                                  delta into a number set (DynamoDB's
 *                                  ValidationException). An empty delta
 *                                  writes nothing (DynamoDB has no empty set).
 *   hll,topk   v B, ver N          GetItem (ConsistentRead), then agg.h
 *                                  mm_agg_merge on the stored bytes (the
 *                                  sketch bytes of sketch.h), then UpdateItem
 *                                  SET v, ver = :old + 1 on condition
 *                                  attribute_not_exists(v) (new row) or
 *                                  ver = :old (the ops of one row in one
 *                                  batch share one such chain); a lost race
 *                                  re-reads after a jittered wait, at most
 *                                  MM_DDB_SKETCH_ATTEMPTS times, then the op is
 *                                  MM_ERETRY. A stored value that is not a
 *                                  sketch of that kind, or a sketch row
 *                                  without ver, is MM_EPERM and never
 *                                  overwritten.
 *   windowed   ttl N               every write also SETs ttl = op->ttl.
 *
 * Numbers are sent as decimal.h mm_dec_format text (the shortest that reads
 * back the same; exact decimals). Keys and strings must be valid UTF-8
 * (MM_EPERM otherwise: a repaired key would name another row). All names go
 * through ExpressionAttributeNames (ttl is a reserved word).
 * Queries read rows with Query (ConsistentRead, ascending sk, every page)
 * and render each value with agg.h mm_agg_render after rebuilding agg.h's
 * stored encoding from the attribute types (N/S without t: a number or
 * string; with t: first/last; NS/SS: set; B: hll or topk by the sketch's
 * magic byte), so every backend prints the same JSON.
 *
 * Dedup table: hash key pk (S) = the claim id "<pipeline>#<eventID>",
 * attributes ttl N, done BOOL, merged SS (the "<bucket>:<key>" merge ids).
 * A claim only moves forward: absent (NEW) -> merged ids (PARTIAL, a set
 * that only grows) -> done = true (DONE, terminal).
 *   begin   BatchGetItem, ConsistentRead, projecting pk, done and merged,
 *           up to MM_DDB_DEDUP_GET_MAX distinct ids a request (an id named
 *           by several claims of one call is asked once and its answer
 *           given to each). done -> DONE; a non-empty merged set ->
 *           PARTIAL with those ids; an item without either, or no item,
 *           -> NEW. Nothing is written: a NEW record leaves no trace until
 *           its finish. An answer without Responses is not read as "no
 *           claims" (MM_ERETRY).
 *   finish  done claims: BatchWriteItem PutRequest {pk, ttl, done: true},
 *           up to MM_DDB_DEDUP_PUT_MAX distinct ids a request. The Put
 *           replaces the item: the merged set it drops no longer matters
 *           once the claim is DONE. Claims not done that applied merges:
 *           one UpdateItem each, ADD merged :ids, SET ttl =
 *           if_not_exists(ttl, :ttl). Not done and nothing applied: no
 *           request.
 * Keys an answer hands back (UnprocessedKeys / UnprocessedItems: throttling
 * or the 16 MB answer limit) are sent again, alone, after a full-jitter
 * wait (MM_DDB_DEDUP_BACKOFF_MS, at most MM_DDB_DEDUP_BACKOFF_MAX_MS); a key
 * handed back more than MM_DDB_DEDUP_UNPROCESSED_ROUNDS times is MM_ERETRY
 * for its claims. An answer too large for the client (ddb.h's
 * MM_DDB_MAX_RESPONSE) is asked again for half the keys. A failed request
 * gives its status and message to every claim still waiting on it.
 * Every request is idempotent (a read, a Put of constants, a set union),
 * so one whose answer was lost is simply retried (MM_ERETRY, never
 * MM_EUNKNOWN), and no transactions are needed. Nor are conditions: Lambda
 * runs one delivery of a shard at a time, so no two writers race on one
 * claim in normal operation, and even if they did, every write only moves
 * the claim forward: a union never removes an id, a Put of done = true is
 * terminal and the same whoever writes it, and a union landing after that
 * Put leaves done = true in place. A claim id that DynamoDB would refuse
 * (empty, not UTF-8, longer than MM_DDB_DEDUP_ID_MAX bytes) fails alone
 * (MM_EPERM) before anything is sent, so it cannot fail a whole batch.
 * Guarantee: a record is skipped as a duplicate only when a finish with
 * done = true was written, i.e. after every merge of the record succeeded;
 * a merge id is recorded only after its merge succeeded. A claim whose ttl
 * has passed but that DynamoDB has not deleted yet is still honoured
 * (deletion is lazy; honouring it can only prevent a double count).
 * The one exception: a store merge whose outcome is unknown (MM_EUNKNOWN:
 * the UpdateItem was sent and no answer came, so it may have been applied)
 * is not recorded as merged, and a redelivery applies it again. The
 * pipeline counts these writes in its unknown-outcome metric.
 *
 * Ownership: the returned handles are owned by the caller (mm_store_destroy
 * / mm_dedup_destroy); table is copied.
 */
#ifndef MM_STORE_DYNAMODB_H
#define MM_STORE_DYNAMODB_H

#include "dedup.h"
#include "err.h"
#include "store.h"

/* Read-merge-conditional-write rounds of one hll/topk merge before it
 * gives up with MM_ERETRY (each lost round means another writer won). */
#define MM_DDB_SKETCH_ATTEMPTS 8
/* Wait before re-reading after a lost race: uniform in [0, min(max, base *
 * 2^(round-1))] ms (retry.h's full jitter). */
#define MM_DDB_SKETCH_BACKOFF_MS 10
#define MM_DDB_SKETCH_BACKOFF_MAX_MS 200

/* Distinct claim ids one dedup BatchGetItem reads (DynamoDB's limit). */
#define MM_DDB_DEDUP_GET_MAX 100
/* Distinct claims one dedup BatchWriteItem puts (DynamoDB's limit). */
#define MM_DDB_DEDUP_PUT_MAX 25
/* Times a dedup key handed back unprocessed is sent again before its
 * claims are MM_ERETRY. */
#define MM_DDB_DEDUP_UNPROCESSED_ROUNDS 8
/* Wait before resending unprocessed keys: uniform in [0, min(max, base *
 * 2^(round-1))] ms (retry.h's full jitter). */
#define MM_DDB_DEDUP_BACKOFF_MS 10
#define MM_DDB_DEDUP_BACKOFF_MAX_MS 500
/* Longest claim id in bytes (DynamoDB's partition key limit). */
#define MM_DDB_DEDUP_ID_MAX 2048

/* Opens the store on table `table` (a table name or ARN). A malformed name
 * or missing AWS settings is MM_EINVAL; no request is sent. */
int mm_store_dynamodb_open(mm_store_t **out, const char *table,
                           const mm_store_opts_t *opts, mm_err_t *err);

/* Opens the dedup backend on table `table`. Same errors. */
int mm_dedup_dynamodb_open(mm_dedup_t **out, const char *table,
                           const mm_store_opts_t *opts, mm_err_t *err);

/* 1 when s is a usable table name (3-255 of [A-Za-z0-9_.-]) or table ARN. */
int mm_ddb_table_name_ok(const char *s);

#endif

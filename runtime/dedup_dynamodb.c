/*
 * dedup_dynamodb.c - dedup claims in a DynamoDB table (dynamodb://TABLE).
 *
 * begin reads the claims with BatchGetItem (ConsistentRead, up to
 * MM_DDB_DEDUP_GET_MAX distinct ids a request) and writes nothing; finish
 * writes the completed claims with BatchWriteItem Puts of {pk, ttl, done}
 * (up to MM_DDB_DEDUP_PUT_MAX distinct ids a request) and records the merges
 * of incomplete ones with one UpdateItem (a set union) per claim. All the
 * requests of a call run concurrently through ddb.c; keys an answer hands
 * back unprocessed are sent again from ddb.c's done callback after a
 * jittered wait, a bounded number of times. The protocol, its guarantee and
 * why no condition is needed are in store_dynamodb.h.
 *
 * Claims naming the same id in one call are one key in the batch requests
 * (DynamoDB refuses a batch repeating a key) and all get its answer.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "ddb.h"
#include "json.h"
#include "retry.h"
#include "store_dynamodb.h"

typedef struct ddb_dedup {
  mm_dedup_t base;
  mm_ddb_t *c;
  char *table;          /* owned */
  mm_retry_t backoff;   /* jittered waits before resending unprocessed keys */
} ddb_dedup_t;

/* One distinct claim id of a call, and what the store said about it. */
typedef struct group {
  mm_claim_t **member;  /* borrowed: the claims with this id (in `sorted`) */
  size_t nmember;
  int pending;          /* 1 until the group has its outcome */
  int sent;             /* in the request now in flight */
  int unprocessed;      /* times an answer handed it back unprocessed */
  /* outcome */
  int status;
  mm_err_t err;
  mm_claim_state_t state;
  char **merged;        /* owned until handed to the claims */
  size_t nmerged;
} group_t;

typedef enum { KIND_GET, KIND_PUT } kind_t;

/* One batch request over the groups [lo, hi) of its call. */
typedef struct batch {
  struct call *x;
  kind_t kind;
  size_t lo, hi;
  size_t limit;         /* most keys one request carries */
  mm_ddb_req_t *req;
} batch_t;

/* Everything one begin or finish call works on. */
typedef struct call {
  ddb_dedup_t *d;
  mm_claim_t **sorted;  /* the claims to send, ordered by id */
  group_t *g;           /* distinct ids, in id order */
  size_t ng;
} call_t;

/* ------------------------------------------------------------------ */
/* Claims and groups                                                   */
/* ------------------------------------------------------------------ */

/* The ttl a claim is written with: the caller's, or the default from now
 * when the caller gave none (a claim must always be able to expire). */
static int64_t claim_ttl(const mm_claim_t *c) {
  return c->ttl > 0 ? c->ttl : mm_now_ms() / 1000 + MM_DEF_DEDUP_TTL_S;
}

/* Orders ids bytewise, a shorter prefix first. */
static int id_cmp(const char *a, size_t na, const char *b, size_t nb) {
  int r = memcmp(a, b, na < nb ? na : nb);
  if (r) return r;
  return na < nb ? -1 : na > nb;
}

static int claim_ptr_cmp(const void *a, const void *b) {
  const mm_claim_t *x = *(mm_claim_t *const *)a, *y = *(mm_claim_t *const *)b;
  return id_cmp(x->id, x->id_len, y->id, y->id_len);
}

/* A claim status dedup.h allows: anything else (the runner's MM_ENOMEM or
 * MM_EIO) is transient. */
static int claim_status(int st) {
  switch (st) {
  case 0: case MM_ERETRY: case MM_EPERM: case MM_EUNKNOWN: case MM_EDEADLINE:
    return st;
  default:
    return MM_ERETRY;
  }
}

/*
 * Checks a claim's id before it joins a batch: a bad one would make
 * DynamoDB refuse the whole request, failing every claim in it, so it
 * fails alone here. Returns 1 when the claim may be sent.
 */
static int claim_ok(mm_claim_t *c) {
  if (c->id && c->id_len == 0) c->id_len = strlen(c->id);
  if (!c->id || c->id_len == 0) {
    c->status = mm_err_set(&c->err, MM_EPERM, "claim without an id");
    return 0;
  }
  if (c->id_len > MM_DDB_DEDUP_ID_MAX) {
    c->status = mm_err_set(&c->err, MM_EPERM,
                           "claim id of %zu bytes is longer than DynamoDB's %d-byte "
                           "partition key limit", c->id_len, MM_DDB_DEDUP_ID_MAX);
    return 0;
  }
  if (!mm_ddb_utf8_valid(c->id, c->id_len)) {
    c->status = mm_err_set(&c->err, MM_EPERM,
                           "claim id: string is not valid UTF-8 (DynamoDB strings must be)");
    return 0;
  }
  return 1;
}

/*
 * Sorts the n claims of sorted[] by id and makes one group per distinct id
 * (x->g, x->ng). Returns 0 or MM_ENOMEM.
 */
static int make_groups(call_t *x, mm_claim_t **sorted, size_t n) {
  x->sorted = sorted;
  x->ng = 0;
  if (!n) return 0;
  qsort(sorted, n, sizeof *sorted, claim_ptr_cmp);
  if (!(x->g = calloc(n, sizeof *x->g))) return MM_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    if (i && claim_ptr_cmp(&sorted[i - 1], &sorted[i]) == 0) {
      x->g[x->ng - 1].nmember++;
      continue;
    }
    group_t *g = &x->g[x->ng++];
    g->member = &sorted[i];
    g->nmember = 1;
    g->pending = 1;
  }
  return 0;
}

static const mm_claim_t *group_claim(const group_t *g) { return g->member[0]; }

/* Gives group g its outcome (st 0 or a failure with *e) unless it has one. */
static void group_done(group_t *g, int st, const mm_err_t *e) {
  if (!g->pending) return;
  g->pending = 0;
  g->sent = 0;
  g->status = claim_status(st);
  if (g->status && e) {
    g->err = *e;
    g->err.code = g->status;
  }
}

/* Fails every group of b still pending with st and e. */
static void batch_fail(batch_t *b, int st, const mm_err_t *e) {
  for (size_t i = b->lo; i < b->hi; i++) group_done(&b->x->g[i], st, e);
}

/* The group of b whose id is s[0..n), or NULL (binary search: groups are
 * in id order). */
static group_t *batch_find(batch_t *b, const char *s, size_t n) {
  size_t lo = b->lo, hi = b->hi;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const mm_claim_t *c = group_claim(&b->x->g[mid]);
    int r = id_cmp(s, n, c->id, c->id_len);
    if (r == 0) return &b->x->g[mid];
    if (r < 0) hi = mid;
    else lo = mid + 1;
  }
  return NULL;
}

/* ------------------------------------------------------------------ */
/* Requests                                                            */
/* ------------------------------------------------------------------ */

/* {"pk":{"S":id}} (ids were checked by claim_ok, so this cannot fail
 * but for memory, which mm_buf_failed reports). */
static void add_key(mm_buf_t *b, const mm_claim_t *c) {
  mm_buf_adds(b, "{\"pk\":{\"S\":");
  mm_buf_json_str(b, c->id, c->id_len);
  mm_buf_adds(b, "}}");
}

/*
 * (Re)writes b's request body with the next b->limit pending groups, which
 * are marked sent. Returns how many it took (0: nothing pending).
 *
 * BatchGetItem: {"RequestItems":{T:{"Keys":[...],"ConsistentRead":true,
 *   "ProjectionExpression":"#pk, #done, #merged",...}}}
 * BatchWriteItem: {"RequestItems":{T:[{"PutRequest":{"Item":{pk, ttl,
 *   done: true}}},...]}}
 * Bodies stay small: at most 100 keys of at most MM_DDB_DEDUP_ID_MAX bytes
 * (6 bytes each when escaped) for a read, 25 items of such a key and two
 * short attributes for a write: far below the 16 MB request limit.
 */
static size_t build_batch(batch_t *b) {
  mm_buf_t *body = &b->req->body;
  mm_buf_reset(body);
  body->failed = 0;
  size_t k = 0;
  for (size_t i = b->lo; i < b->hi; i++) b->x->g[i].sent = 0;
  mm_buf_adds(body, "{\"RequestItems\":{");
  mm_buf_json_str(body, b->x->d->table, strlen(b->x->d->table));
  mm_buf_adds(body, b->kind == KIND_GET ? ":{\"Keys\":[" : ":[");
  for (size_t i = b->lo; i < b->hi && k < b->limit; i++) {
    group_t *g = &b->x->g[i];
    if (!g->pending) continue;
    g->sent = 1;
    if (k++) mm_buf_addc(body, ',');
    if (b->kind == KIND_GET) {
      add_key(body, group_claim(g));
      continue;
    }
    mm_buf_adds(body, "{\"PutRequest\":{\"Item\":{\"pk\":{\"S\":");
    mm_buf_json_str(body, group_claim(g)->id, group_claim(g)->id_len);
    mm_buf_printf(body, "},\"ttl\":{\"N\":\"%lld\"},\"done\":{\"BOOL\":true}}}}",
                  (long long)claim_ttl(group_claim(g)));
  }
  if (b->kind == KIND_GET)
    mm_buf_adds(body, "],\"ConsistentRead\":true,"
                      "\"ProjectionExpression\":\"#pk, #done, #merged\","
                      "\"ExpressionAttributeNames\":{\"#pk\":\"pk\",\"#done\":\"done\","
                      "\"#merged\":\"merged\"}}}}");
  else
    mm_buf_adds(body, "]}}");
  return k;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* finish of a claim with merges but not done: add this attempt's merge ids
 * (a set union), keeping an existing ttl. */
static int build_update(mm_buf_t *b, const ddb_dedup_t *d, const mm_claim_t *c,
                        mm_err_t *err) {
  size_t n = 0;
  int rc = 0;
  const char **ids = malloc(c->napplied * sizeof *ids);
  if (!ids) return mm_err_set(err, MM_ENOMEM, "out of memory building a claim");
  for (size_t i = 0; i < c->napplied; i++)
    if (c->applied[i]) ids[n++] = c->applied[i];
  qsort(ids, n, sizeof *ids, cmp_str);
  mm_buf_adds(b, "{\"TableName\":");
  mm_buf_json_str(b, d->table, strlen(d->table));
  mm_buf_adds(b, ",\"Key\":");
  add_key(b, c);
  mm_buf_printf(b, ",\"UpdateExpression\":\"SET #ttl = if_not_exists(#ttl, :ttl) ADD #merged :ids\","
                   "\"ExpressionAttributeNames\":{\"#ttl\":\"ttl\",\"#merged\":\"merged\"},"
                   "\"ExpressionAttributeValues\":{\":ttl\":{\"N\":\"%lld\"},\":ids\":{\"SS\":[",
                (long long)claim_ttl(c));
  for (size_t i = 0, k = 0; i < n; i++) {
    if (i && strcmp(ids[i], ids[i - 1]) == 0) continue; /* a set repeats nothing */
    if (k++) mm_buf_addc(b, ',');
    if ((rc = mm_ddb_json_str(b, ids[i], strlen(ids[i]), err))) {
      mm_err_prefix(err, "merge id");
      goto out;
    }
  }
  mm_buf_adds(b, "]}}}");
out:
  free(ids);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Answers                                                             */
/* ------------------------------------------------------------------ */

/* The decoded "pk" S of an item or key object (malloc'd), or NULL. */
static char *item_pk(const mm_json_doc_t *doc, uint32_t item, size_t *len) {
  if (!item || mm_json_type(doc, item) != MM_JSON_OBJ) return NULL;
  uint32_t pk = mm_json_get(doc, item, "pk", 2);
  if (!pk || mm_json_type(doc, pk) != MM_JSON_OBJ) return NULL;
  uint32_t s = mm_json_get(doc, pk, "S", 1);
  if (!s || mm_json_type(doc, s) != MM_JSON_STR) return NULL;
  return mm_json_strdup(doc, s, len);
}

/*
 * The one table entry of a batch answer's map `name` (Responses,
 * UnprocessedKeys, UnprocessedItems): its value node, or 0 when the map is
 * absent or empty. The table is not looked up by name: the request named
 * it as given (a name or an ARN) and there is one table per request.
 * Returns -1 when the map is malformed or names several tables.
 */
static int64_t table_entry(const mm_json_doc_t *doc, const char *name) {
  uint32_t m = mm_json_get(doc, 0, name, strlen(name));
  if (!m) return 0;
  if (mm_json_type(doc, m) != MM_JSON_OBJ || mm_json_len(doc, m) > 1) return -1;
  if (mm_json_len(doc, m) == 0) return 0;
  return mm_json_next(doc, mm_json_first(doc, m)); /* the value after the key */
}

/*
 * Reads one BatchGetItem item into its group: done = true is DONE; a
 * non-empty merged set is PARTIAL with those ids; anything else is NEW.
 * Returns 0, or MM_ERETRY when the ids cannot be read.
 */
static int read_item(group_t *g, const mm_json_doc_t *doc, uint32_t item) {
  uint32_t done = 0, merged = 0;
  uint32_t av = mm_json_get(doc, item, "done", 4);
  if (av && mm_json_type(doc, av) == MM_JSON_OBJ) done = mm_json_get(doc, av, "BOOL", 4);
  av = mm_json_get(doc, item, "merged", 6);
  if (av && mm_json_type(doc, av) == MM_JSON_OBJ) merged = mm_json_get(doc, av, "SS", 2);
  if (done && mm_json_type(doc, done) == MM_JSON_TRUE) {
    g->state = MM_CLAIM_DONE;
    return 0;
  }
  if (!merged || mm_json_type(doc, merged) != MM_JSON_ARR || mm_json_len(doc, merged) == 0) {
    g->state = MM_CLAIM_NEW;
    return 0;
  }
  size_t n = mm_json_len(doc, merged);
  char **ids = calloc(n, sizeof *ids);
  if (!ids) return MM_ERETRY;
  uint32_t e = mm_json_first(doc, merged);
  for (size_t i = 0; i < n; i++, e = mm_json_next(doc, e)) {
    if (mm_json_type(doc, e) != MM_JSON_STR || !(ids[i] = mm_json_strdup(doc, e, NULL))) {
      for (size_t k = 0; k < i; k++) free(ids[k]);
      free(ids);
      return MM_ERETRY;
    }
  }
  g->merged = ids;
  g->nmerged = n;
  g->state = MM_CLAIM_PARTIAL;
  return 0;
}

/*
 * Marks the groups an answer handed back: `list` is an array of key
 * objects (UnprocessedKeys' Keys) or of {"PutRequest":{"Item":...}}
 * (UnprocessedItems). Returns 0, or -1 when an entry is unreadable.
 */
static int mark_unprocessed(batch_t *b, const mm_json_doc_t *doc, uint32_t list) {
  if (mm_json_type(doc, list) != MM_JSON_ARR) return -1;
  uint32_t e = mm_json_first(doc, list);
  for (uint32_t i = 0; i < mm_json_len(doc, list); i++, e = mm_json_next(doc, e)) {
    uint32_t key = e;
    if (b->kind == KIND_PUT) {
      uint32_t put = mm_json_type(doc, e) == MM_JSON_OBJ ? mm_json_get(doc, e, "PutRequest", 10) : 0;
      key = put && mm_json_type(doc, put) == MM_JSON_OBJ ? mm_json_get(doc, put, "Item", 4) : 0;
    }
    size_t len;
    char *pk = item_pk(doc, key, &len);
    if (!pk) return -1;
    group_t *g = batch_find(b, pk, len);
    free(pk);
    /* Only a key this request sent and the answer did not settle. */
    if (g && g->pending && g->sent) g->unprocessed++, g->sent = 2;
  }
  return 0;
}

/*
 * Reads a 2xx batch answer: BatchGetItem items settle their groups, the
 * other keys sent are NEW (absent) unless handed back unprocessed;
 * BatchWriteItem settles every item sent but the unprocessed ones. Groups
 * handed back stay pending (sent == 2 marks them). Returns 0 or -1 (an
 * unreadable answer; e says why).
 */
static int read_answer(batch_t *b, mm_err_t *e) {
  const char *table = b->x->d->table;
  mm_ddb_req_t *r = b->req;
  mm_json_doc_t doc = {0};
  mm_err_t jerr;
  int rc = -1;
  if (mm_json_parse(&doc, r->resp.data ? r->resp.data : "", r->resp.len, 64, &jerr) ||
      mm_json_type(&doc, 0) != MM_JSON_OBJ) {
    mm_err_set(e, MM_ERETRY, "%s on table %s: unreadable answer", r->op, table);
    goto out;
  }
  if (b->kind == KIND_GET) {
    /* Every answer has Responses; one without is not trusted to mean
     * "no claim" (that would re-apply every merge of a DONE record). */
    uint32_t resp = mm_json_get(&doc, 0, "Responses", 9);
    int64_t items = table_entry(&doc, "Responses");
    if (!resp || items < 0 || (items && mm_json_type(&doc, (uint32_t)items) != MM_JSON_ARR)) {
      mm_err_set(e, MM_ERETRY, "BatchGetItem on table %s: answer without a readable Responses",
                 table);
      goto out;
    }
    int64_t un = table_entry(&doc, "UnprocessedKeys");
    uint32_t keys = un > 0 && mm_json_type(&doc, (uint32_t)un) == MM_JSON_OBJ
                        ? mm_json_get(&doc, (uint32_t)un, "Keys", 4) : 0;
    if (un < 0 || (un > 0 && !keys) || (keys && mark_unprocessed(b, &doc, keys))) {
      mm_err_set(e, MM_ERETRY, "BatchGetItem on table %s: unreadable UnprocessedKeys", table);
      goto out;
    }
    uint32_t it = items ? mm_json_first(&doc, (uint32_t)items) : 0;
    for (uint32_t i = 0; items && i < mm_json_len(&doc, (uint32_t)items);
         i++, it = mm_json_next(&doc, it)) {
      size_t len;
      char *pk = item_pk(&doc, it, &len);
      if (!pk) {
        mm_err_set(e, MM_ERETRY, "BatchGetItem on table %s: an item without its pk", table);
        goto out;
      }
      group_t *g = batch_find(b, pk, len);
      free(pk);
      if (!g || !g->pending || !g->sent) continue; /* not asked for: ignored */
      mm_err_t ge;
      if (read_item(g, &doc, it)) {
        group_done(g, mm_err_set(&ge, MM_ERETRY, "unreadable merged ids in claim"), &ge);
        continue;
      }
      group_done(g, 0, NULL);
    }
  } else {
    int64_t un = table_entry(&doc, "UnprocessedItems");
    if (un < 0 || (un > 0 && mark_unprocessed(b, &doc, (uint32_t)un))) {
      mm_err_set(e, MM_ERETRY, "BatchWriteItem on table %s: unreadable UnprocessedItems",
                 table);
      goto out;
    }
  }
  /* Sent and neither answered nor handed back: absent (NEW) or written. */
  for (size_t i = b->lo; i < b->hi; i++) {
    group_t *g = &b->x->g[i];
    if (g->pending && g->sent == 1) {
      g->state = MM_CLAIM_NEW;
      group_done(g, 0, NULL);
    }
  }
  rc = 0;
out:
  mm_json_free(&doc);
  return rc;
}

/*
 * ddb.c's done callback for every request of a call (ud unused; r->ud is
 * the request's batch, NULL for an UpdateItem, which settles after the
 * run). A batch answer settles what it can (read_answer); keys
 * handed back unprocessed are sent again after a jittered wait until one
 * has come back MM_DDB_DEDUP_UNPROCESSED_ROUNDS times, then it is
 * MM_ERETRY. An answer too big for the client (MM_EPERM without an HTTP
 * answer: awsreq.h's "body larger than max_response") is asked again for
 * half as many keys. Any other failure fails every group still pending.
 * Returns 1 to resend r (body rewritten), 0 when r is done.
 */
static int on_done(void *ud, mm_ddb_req_t *r) {
  batch_t *b = r->ud;
  (void)ud;
  if (!b) return 0; /* an UpdateItem: settled after the run */
  call_t *x = b->x;
  size_t sent = 0;
  for (size_t i = b->lo; i < b->hi; i++) sent += x->g[i].sent != 0;
  if (r->status == MM_EPERM && r->http_status == 0 && sent > 1) {
    b->limit = sent / 2;
    return build_batch(b) > 0 && !mm_buf_failed(&r->body);
  }
  if (r->status) {
    batch_fail(b, r->status, &r->err);
    return 0;
  }
  mm_err_t e;
  if (read_answer(b, &e)) {
    batch_fail(b, MM_ERETRY, &e);
    return 0;
  }
  int worst = 0;
  for (size_t i = b->lo; i < b->hi; i++) {
    group_t *g = &x->g[i];
    if (!g->pending || g->sent != 2) continue;
    if (g->unprocessed > MM_DDB_DEDUP_UNPROCESSED_ROUNDS) {
      mm_err_set(&e, MM_ERETRY,
                 "%s on table %s: the claim was still unprocessed after %d resends "
                 "(throttled?)", r->op, x->d->table, MM_DDB_DEDUP_UNPROCESSED_ROUNDS);
      group_done(g, MM_ERETRY, &e);
    } else if (g->unprocessed > worst) {
      worst = g->unprocessed;
    }
  }
  if (!build_batch(b)) return 0;
  if (mm_buf_failed(&r->body)) {
    batch_fail(b, mm_err_set(&e, MM_ERETRY, "out of memory building a claim batch"), &e);
    return 0;
  }
  /* Full jitter (retry.h) before sending handed-back keys again. */
  r->not_before = worst ? mm_mono_ms() + mm_retry_delay_ms(&x->d->backoff, worst) : 0;
  return 1;
}

/* ------------------------------------------------------------------ */
/* begin / finish                                                      */
/* ------------------------------------------------------------------ */

/* Fails the claims that were to be sent (the call could not run). */
static void fail_sorted(mm_claim_t **sorted, size_t n, const char *why) {
  for (size_t i = 0; i < n; i++) sorted[i]->status = mm_err_set(&sorted[i]->err, MM_ERETRY, "%s", why);
}

/*
 * Hands each group's outcome to its claims. For begin, the first claim of
 * a PARTIAL group takes the merged ids and the others get copies (each
 * claim owns its list).
 */
static void settle(call_t *x, int is_begin) {
  for (size_t i = 0; i < x->ng; i++) {
    group_t *g = &x->g[i];
    for (size_t m = 0; m < g->nmember; m++) {
      mm_claim_t *c = g->member[m];
      c->status = g->status;
      if (g->status) {
        c->err = g->err;
        continue;
      }
      if (!is_begin) continue;
      c->state = g->state;
      if (g->state != MM_CLAIM_PARTIAL) continue;
      if (m == 0) {
        c->merged = g->merged;
        c->nmerged = g->nmerged;
        continue;
      }
      char **ids = calloc(g->nmerged, sizeof *ids);
      size_t k = 0;
      while (ids && k < g->nmerged && (ids[k] = strdup(g->merged[k]))) k++;
      if (!ids || k < g->nmerged) {
        while (ids && k > 0) free(ids[--k]);
        free(ids);
        c->state = MM_CLAIM_NEW;
        c->status = mm_err_set(&c->err, MM_ERETRY, "out of memory copying claim ids");
        continue;
      }
      c->merged = ids;
      c->nmerged = g->nmerged;
    }
    if (!g->nmember || g->status || g->state != MM_CLAIM_PARTIAL) {
      for (size_t k = 0; k < g->nmerged; k++) free(g->merged[k]);
      free(g->merged);
    }
    g->merged = NULL;
    g->nmerged = 0;
  }
}

/*
 * One begin (is_begin) or finish call. The claims to batch (all valid
 * claims for begin; the done ones for finish) are grouped by id and cut
 * into batches of per_req groups; finish adds one UpdateItem per claim
 * with merges but not done. Everything runs in one mm_ddb_run.
 */
static int run_call(ddb_dedup_t *d, mm_claim_t *c, size_t n, int64_t deadline_ms,
                    int is_begin) {
  call_t x = {.d = d};
  const size_t per_req = is_begin ? MM_DDB_DEDUP_GET_MAX : MM_DDB_DEDUP_PUT_MAX;
  mm_claim_t **sorted = calloc(n, sizeof *sorted);
  mm_claim_t **update = calloc(n, sizeof *update);
  size_t ns = 0, nu = 0, nb = 0, nr = 0;
  batch_t *batch = NULL;
  mm_ddb_req_t *req = NULL;
  mm_ddb_req_t **list = NULL;
  int rc = 0;
  if (!sorted || !update) {
    for (size_t i = 0; i < n; i++)
      c[i].status = mm_err_set(&c[i].err, MM_ERETRY, "out of memory running claims");
    rc = MM_ENOMEM;
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    mm_claim_t *cl = &c[i];
    if (!claim_ok(cl)) continue;
    if (is_begin || cl->done) {
      sorted[ns++] = cl;
      continue;
    }
    for (size_t k = 0; k < cl->napplied; k++)
      if (cl->applied[k]) {
        update[nu++] = cl; /* not done, with merges to record */
        break;
      }
    /* not done and nothing applied: nothing to record */
  }
  if (make_groups(&x, sorted, ns)) goto nomem;
  nb = (x.ng + per_req - 1) / per_req;
  batch = calloc(nb ? nb : 1, sizeof *batch);
  req = calloc(nb + nu ? nb + nu : 1, sizeof *req);
  list = calloc(nb + nu ? nb + nu : 1, sizeof *list);
  if (!batch || !req || !list) goto nomem;
  /* Idempotent requests: a lost answer is retried, not unknown. */
  for (size_t k = 0; k < nb; k++) {
    batch_t *b = &batch[k];
    *b = (batch_t){.x = &x, .kind = is_begin ? KIND_GET : KIND_PUT, .lo = k * per_req,
                   .limit = per_req, .req = &req[nr]};
    b->hi = b->lo + per_req < x.ng ? b->lo + per_req : x.ng;
    mm_ddb_req_init(b->req, is_begin ? "BatchGetItem" : "BatchWriteItem", d->table, 0);
    b->req->ud = b;
    build_batch(b);
    if (mm_buf_failed(&b->req->body)) goto nomem;
    list[nr++] = b->req;
  }
  /* Updates: update[j] becomes the claim of list[nb + j] (ud NULL). */
  size_t nuok = 0;
  for (size_t k = 0; k < nu; k++) {
    mm_claim_t *cl = update[k];
    mm_ddb_req_t *r = &req[nr];
    mm_ddb_req_init(r, "UpdateItem", d->table, 0);
    int brc = build_update(&r->body, d, cl, &cl->err);
    if (!brc && mm_buf_failed(&r->body))
      brc = mm_err_set(&cl->err, MM_ENOMEM, "out of memory building a claim");
    if (brc) {
      cl->status = brc == MM_ENOMEM ? MM_ERETRY : MM_EPERM;
      cl->err.code = cl->status;
      mm_ddb_req_free(r);
      continue;
    }
    update[nuok++] = cl;
    list[nr++] = r;
  }
  rc = mm_ddb_run(d->c, list, nr, deadline_ms, on_done, NULL);
  for (size_t k = 0; k < nb; k++) {
    /* Groups the callback never settled (the runner itself failed). */
    mm_ddb_req_t *r = batch[k].req;
    mm_err_t e;
    if (r->status) batch_fail(&batch[k], r->status, &r->err);
    else batch_fail(&batch[k], mm_err_set(&e, MM_ERETRY, "%s on table %s: no answer read",
                                          r->op, d->table), &e);
  }
  for (size_t k = nb; k < nr; k++) {
    mm_claim_t *cl = update[k - nb];
    if ((cl->status = claim_status(list[k]->status))) {
      cl->err = list[k]->err;
      cl->err.code = cl->status;
    }
  }
  settle(&x, is_begin);
  goto out;
nomem:
  /* Only reached before any update was built. */
  fail_sorted(sorted, ns, "out of memory running claims");
  for (size_t k = 0; k < nu; k++)
    update[k]->status = mm_err_set(&update[k]->err, MM_ERETRY, "out of memory running claims");
  rc = MM_ENOMEM;
out:
  for (size_t k = 0; req && k < nb + nu; k++) mm_ddb_req_free(&req[k]);
  free(req);
  free(list);
  free(batch);
  free(x.g);
  free(sorted);
  free(update);
  return rc;
}

static int ddb_begin(mm_dedup_t *base, mm_claim_t *c, size_t n, int64_t deadline_ms) {
  return run_call((ddb_dedup_t *)base, c, n, deadline_ms, 1);
}

static int ddb_finish(mm_dedup_t *base, mm_claim_t *c, size_t n, int64_t deadline_ms) {
  return run_call((ddb_dedup_t *)base, c, n, deadline_ms, 0);
}

static void ddb_dedup_destroy(mm_dedup_t *base) {
  ddb_dedup_t *d = (ddb_dedup_t *)base;
  if (!d) return;
  mm_ddb_destroy(d->c);
  free(d->table);
  free(d);
}

static const mm_dedup_vt_t ddb_dedup_vt = {ddb_begin, ddb_finish, ddb_dedup_destroy};

int mm_dedup_dynamodb_open(mm_dedup_t **out, const char *table, const mm_store_opts_t *opts,
                           mm_err_t *err) {
  *out = NULL;
  if (!mm_ddb_table_name_ok(table))
    return mm_err_set(err, MM_EINVAL,
                      "'%.200s' is not a DynamoDB table name (3-255 of A-Z a-z 0-9 _ - .) "
                      "or table ARN", table ? table : "");
  ddb_dedup_t *d = calloc(1, sizeof *d);
  int rc;
  if (!d || !(d->table = strdup(table))) {
    free(d);
    return mm_err_set(err, MM_ENOMEM, "out of memory opening the DynamoDB dedup");
  }
  d->base.vt = &ddb_dedup_vt;
  mm_retry_init(&d->backoff, MM_DDB_DEDUP_UNPROCESSED_ROUNDS + 1, MM_DDB_DEDUP_BACKOFF_MS,
                MM_DDB_DEDUP_BACKOFF_MAX_MS,
                (uint64_t)mm_now_ms() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)d);
  if ((rc = mm_ddb_open(&d->c, opts ? opts->max_inflight : 0,
                        opts ? opts->request_timeout_ms : 0, err))) {
    ddb_dedup_destroy(&d->base);
    return rc;
  }
  *out = &d->base;
  return 0;
}

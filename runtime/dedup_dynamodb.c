/*
 * dedup_dynamodb.c - dedup claims in a DynamoDB table (dynamodb://TABLE):
 * one idempotent single-item UpdateItem per claim for begin and for finish,
 * run concurrently through ddb.c. The protocol and its guarantee are in
 * store_dynamodb.h.
 */
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "config.h"
#include "ddb.h"
#include "json.h"
#include "retry.h"
#include "store_dynamodb.h"

typedef struct ddb_dedup {
  mm_dedup_t base;
  mm_ddb_t *c;
  char *table;  /* owned */
} ddb_dedup_t;

/* ------------------------------------------------------------------ */
/* Requests                                                            */
/* ------------------------------------------------------------------ */

/* The ttl a claim is written with: the caller's, or the default from now
 * when the caller gave none (a claim must always be able to expire). */
static int64_t claim_ttl(const mm_claim_t *c) {
  return c->ttl > 0 ? c->ttl : mm_now_ms() / 1000 + MM_DEF_DEDUP_TTL_S;
}

/* {"TableName":T,"Key":{"pk":{"S":id}} (no closing brace). */
static int add_table_key(mm_buf_t *b, const ddb_dedup_t *d, const mm_claim_t *c,
                         mm_err_t *err) {
  mm_buf_adds(b, "{\"TableName\":");
  mm_buf_json_str(b, d->table, strlen(d->table));
  mm_buf_adds(b, ",\"Key\":{\"pk\":{\"S\":");
  if (mm_ddb_json_str(b, c->id, c->id_len, err)) return mm_err_prefix(err, "claim id");
  mm_buf_adds(b, "}}");
  return 0;
}

/* begin: create the claim if absent (keeping an existing ttl) and return
 * the whole item as it is after the update. */
static int build_begin(mm_buf_t *b, const ddb_dedup_t *d, const mm_claim_t *c,
                       mm_err_t *err) {
  int rc = add_table_key(b, d, c, err);
  if (rc) return rc;
  mm_buf_printf(b, ",\"UpdateExpression\":\"SET #ttl = if_not_exists(#ttl, :ttl)\","
                   "\"ExpressionAttributeNames\":{\"#ttl\":\"ttl\"},"
                   "\"ExpressionAttributeValues\":{\":ttl\":{\"N\":\"%lld\"}},"
                   "\"ReturnValues\":\"ALL_NEW\"}",
                (long long)claim_ttl(c));
  return 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* finish: add this attempt's merge ids (a set union) and mark the claim
 * done when every merge is applied. *skip = 1 when there is nothing to
 * record. */
static int build_finish(mm_buf_t *b, const ddb_dedup_t *d, const mm_claim_t *c, int *skip,
                        mm_err_t *err) {
  size_t n = 0;
  const char **ids = NULL;
  int rc = 0;
  *skip = 0;
  if (c->napplied) {
    if (!(ids = malloc(c->napplied * sizeof *ids)))
      return mm_err_set(err, MM_ENOMEM, "out of memory building a claim");
    for (size_t i = 0; i < c->napplied; i++)
      if (c->applied[i]) ids[n++] = c->applied[i];
    qsort(ids, n, sizeof *ids, cmp_str);
  }
  if (!n && !c->done) {
    *skip = 1;
    goto out;
  }
  if ((rc = add_table_key(b, d, c, err))) goto out;
  mm_buf_printf(b, ",\"UpdateExpression\":\"SET #ttl = if_not_exists(#ttl, :ttl)%s%s\"",
                c->done ? ", #done = :true" : "", n ? " ADD #merged :ids" : "");
  mm_buf_printf(b, ",\"ExpressionAttributeNames\":{\"#ttl\":\"ttl\"%s%s}",
                c->done ? ",\"#done\":\"done\"" : "", n ? ",\"#merged\":\"merged\"" : "");
  mm_buf_printf(b, ",\"ExpressionAttributeValues\":{\":ttl\":{\"N\":\"%lld\"}%s",
                (long long)claim_ttl(c), c->done ? ",\":true\":{\"BOOL\":true}" : "");
  if (n) {
    mm_buf_adds(b, ",\":ids\":{\"SS\":[");
    for (size_t i = 0, k = 0; i < n; i++) {
      if (i && strcmp(ids[i], ids[i - 1]) == 0) continue; /* a set repeats nothing */
      if (k++) mm_buf_addc(b, ',');
      if ((rc = mm_ddb_json_str(b, ids[i], strlen(ids[i]), err))) {
        mm_err_prefix(err, "merge id");
        goto out;
      }
    }
    mm_buf_adds(b, "]}");
  }
  mm_buf_adds(b, "}}");
out:
  free(ids);
  return rc;
}

/*
 * Reads begin's ALL_NEW answer into the claim: done = true is DONE; a
 * non-empty merged set is PARTIAL with those ids (owned by the claim);
 * anything else is NEW.
 */
static int read_begin(mm_claim_t *c, const mm_ddb_req_t *r, const char *table) {
  mm_json_doc_t doc = {0};
  mm_err_t jerr;
  int rc = 0;
  if (mm_json_parse(&doc, r->resp.data ? r->resp.data : "", r->resp.len, 64, &jerr) ||
      mm_json_type(&doc, 0) != MM_JSON_OBJ) {
    rc = mm_err_set(&c->err, MM_ERETRY, "UpdateItem on table %s: unreadable answer", table);
    goto out;
  }
  uint32_t attrs = mm_json_get(&doc, 0, "Attributes", 10);
  uint32_t done = 0, merged = 0;
  if (attrs && mm_json_type(&doc, attrs) == MM_JSON_OBJ) {
    uint32_t av = mm_json_get(&doc, attrs, "done", 4);
    if (av && mm_json_type(&doc, av) == MM_JSON_OBJ) done = mm_json_get(&doc, av, "BOOL", 4);
    av = mm_json_get(&doc, attrs, "merged", 6);
    if (av && mm_json_type(&doc, av) == MM_JSON_OBJ) merged = mm_json_get(&doc, av, "SS", 2);
  }
  if (done && mm_json_type(&doc, done) == MM_JSON_TRUE) {
    c->state = MM_CLAIM_DONE;
    goto out;
  }
  if (merged && mm_json_type(&doc, merged) == MM_JSON_ARR && mm_json_len(&doc, merged) > 0) {
    size_t n = mm_json_len(&doc, merged);
    char **ids = calloc(n, sizeof *ids);
    if (!ids) {
      rc = mm_err_set(&c->err, MM_ERETRY, "out of memory reading a claim");
      goto out;
    }
    uint32_t e = mm_json_first(&doc, merged);
    for (size_t i = 0; i < n; i++, e = mm_json_next(&doc, e)) {
      size_t len;
      if (mm_json_type(&doc, e) != MM_JSON_STR || !(ids[i] = mm_json_strdup(&doc, e, &len))) {
        for (size_t k = 0; k < i; k++) free(ids[k]);
        free(ids);
        rc = mm_err_set(&c->err, MM_ERETRY, "unreadable merged ids in claim");
        goto out;
      }
    }
    c->merged = ids;
    c->nmerged = n;
    c->state = MM_CLAIM_PARTIAL;
    goto out;
  }
  c->state = MM_CLAIM_NEW;
out:
  mm_json_free(&doc);
  return rc;
}

/* ------------------------------------------------------------------ */
/* begin / finish                                                      */
/* ------------------------------------------------------------------ */

/*
 * Builds one request per claim with `build`, runs them all concurrently,
 * and copies each outcome into its claim (reading begin's answers when
 * is_begin). A claim that cannot be built fails at once.
 */
static int run_claims(ddb_dedup_t *d, mm_claim_t *c, size_t n, int64_t deadline_ms,
                      int is_begin) {
  mm_ddb_req_t *req = calloc(n, sizeof *req);
  mm_ddb_req_t **list = calloc(n, sizeof *list);
  size_t *owner = calloc(n, sizeof *owner);
  size_t nr = 0;
  int rc = 0;
  if (!req || !list || !owner) {
    for (size_t i = 0; i < n; i++)
      c[i].status = mm_err_set(&c[i].err, MM_ERETRY, "out of memory running claims");
    rc = MM_ENOMEM;
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    mm_claim_t *cl = &c[i];
    if (cl->id && cl->id_len == 0) cl->id_len = strlen(cl->id);
    if (!cl->id || cl->id_len == 0) {
      cl->status = mm_err_set(&cl->err, MM_EPERM, "claim without an id");
      continue;
    }
    /* Both requests are idempotent: a lost answer is retried, not unknown. */
    mm_ddb_req_init(&req[i], "UpdateItem", d->table, 0);
    int skip = 0;
    int brc = is_begin ? build_begin(&req[i].body, d, cl, &cl->err)
                       : build_finish(&req[i].body, d, cl, &skip, &cl->err);
    if (!brc && mm_buf_failed(&req[i].body))
      brc = mm_err_set(&cl->err, MM_ENOMEM, "out of memory building a claim");
    if (brc) {
      cl->status = brc == MM_ENOMEM ? MM_ERETRY : MM_EPERM;
      cl->err.code = cl->status;
      continue;
    }
    if (skip) continue;
    owner[nr] = i;
    list[nr++] = &req[i];
  }
  rc = mm_ddb_run(d->c, list, nr, deadline_ms, NULL, NULL);
  for (size_t k = 0; k < nr; k++) {
    mm_claim_t *cl = &c[owner[k]];
    mm_ddb_req_t *r = list[k];
    if (r->status) {
      cl->status = r->status;
      cl->err = r->err;
    } else if (is_begin) {
      cl->status = read_begin(cl, r, d->table);
    }
  }
out:
  for (size_t i = 0; req && i < n; i++) mm_ddb_req_free(&req[i]);
  free(req);
  free(list);
  free(owner);
  return rc;
}

static int ddb_begin(mm_dedup_t *base, mm_claim_t *c, size_t n, int64_t deadline_ms) {
  return run_claims((ddb_dedup_t *)base, c, n, deadline_ms, 1);
}

static int ddb_finish(mm_dedup_t *base, mm_claim_t *c, size_t n, int64_t deadline_ms) {
  return run_claims((ddb_dedup_t *)base, c, n, deadline_ms, 0);
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
  if ((rc = mm_ddb_open(&d->c, opts ? opts->max_inflight : 0,
                        opts ? opts->request_timeout_ms : 0, err))) {
    ddb_dedup_destroy(&d->base);
    return rc;
  }
  *out = &d->base;
  return 0;
}

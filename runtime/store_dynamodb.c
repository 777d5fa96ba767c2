/*
 * store_dynamodb.c - the dynamodb://TABLE store: one UpdateItem per merge
 * (two requests per round for hll/topk), run concurrently through ddb.c;
 * queries through Query (see store_dynamodb.h for the table layout).
 */
#include "store_dynamodb.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "ddb.h"
#include "json.h"
#include "retry.h"
#include "sketch.h"

/* Longest table name or ARN accepted. */
#define TABLE_MAX 1024

typedef struct ddb_store {
  mm_store_t base;
  mm_ddb_t *c;
  char *table;   /* owned */
  mm_retry_t backoff; /* jittered waits between lost sketch races */
} ddb_store_t;

/* What one merge op is doing. */
typedef enum { PH_UPDATE = 0, PH_GET, PH_PUT } phase_t;

typedef struct op_ctx {
  mm_merge_t *op;
  ddb_store_t *s;
  mm_ddb_req_t req;
  phase_t phase;
  int rounds;          /* hll/topk read-merge-write rounds started */
  int final;           /* the op's status is set */
  struct op_ctx *next; /* hll/topk: the next op of the same row */
  int bad;             /* hll/topk: this op's own delta was rejected */
  mm_err_t bad_err;    /* ...and why */
} op_ctx_t;

static const mm_store_vt_t ddb_store_vt;

/* ------------------------------------------------------------------ */
/* Shared helpers (also used by dedup_dynamodb.c through this file's   */
/* non-static prototypes in store_dynamodb.h)                          */
/* ------------------------------------------------------------------ */

int mm_ddb_table_name_ok(const char *s) {
  size_t n = s ? strlen(s) : 0;
  if (n >= 4 && strncmp(s, "arn:", 4) == 0) {
    if (n > TABLE_MAX) return 0;
    for (size_t i = 0; i < n; i++)
      if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f || s[i] == '"' ||
          s[i] == '\\')
        return 0;
    return 1;
  }
  if (n < 3 || n > 255) return 0;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
          ch == '_' || ch == '-' || ch == '.'))
      return 0;
  }
  return 1;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Appends p[0..n) in base64 (RFC 4648, padded): DynamoDB's B encoding. */
static void b64_encode(mm_buf_t *b, const unsigned char *p, size_t n) {
  char q[4];
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16;
    if (i + 1 < n) v |= (uint32_t)p[i + 1] << 8;
    if (i + 2 < n) v |= p[i + 2];
    q[0] = B64[(v >> 18) & 63];
    q[1] = B64[(v >> 12) & 63];
    q[2] = i + 1 < n ? B64[(v >> 6) & 63] : '=';
    q[3] = i + 2 < n ? B64[v & 63] : '=';
    mm_buf_add(b, q, 4);
  }
}

/* Decodes padded base64 into a malloc'd buffer. Returns 0, MM_EINVAL for
 * malformed text, MM_ENOMEM. */
static int b64_decode(const char *s, size_t n, unsigned char **out, size_t *out_len) {
  *out = NULL;
  *out_len = 0;
  unsigned char *d = malloc(n / 4 * 3 + 1);
  if (!d) return MM_ENOMEM;
  long len = mm_b64_decode(s, n, (char *)d);
  if (len < 0) {
    free(d);
    return MM_EINVAL;
  }
  *out = d;
  *out_len = (size_t)len;
  return 0;
}

/* The AttributeValue object of attribute `name` in item object `item`:
 * returns the value node of its single type key, and that key's name in
 * type (e.g. "N"); 0 when absent or not an AttributeValue. */
static uint32_t av_get(const mm_json_doc_t *d, uint32_t item, const char *name,
                       char type[8]) {
  type[0] = '\0';
  if (!item || mm_json_type(d, item) != MM_JSON_OBJ) return 0;
  uint32_t av = mm_json_get(d, item, name, strlen(name));
  if (!av || mm_json_type(d, av) != MM_JSON_OBJ || mm_json_len(d, av) < 1) return 0;
  /* The first member whose value is not null (SDK-style AVs carry every
   * type key, all null but one). */
  uint32_t k = mm_json_first(d, av);
  for (uint32_t m = 0; m < mm_json_len(d, av); m++) {
    uint32_t v = mm_json_next(d, k);
    if (mm_json_type(d, v) != MM_JSON_NULL) {
      size_t kl = mm_json_len(d, k);
      if (kl >= 8 || mm_json_has_escapes(d, k)) return 0;
      memcpy(type, mm_json_raw(d, k), kl);
      type[kl] = '\0';
      return v;
    }
    k = mm_json_next(d, v);
  }
  return 0;
}

/* Decoded text of STR node i as a malloc'd string (NULL on failure or when
 * i is not a string). */
static char *str_of(const mm_json_doc_t *d, uint32_t i, size_t *len) {
  if (!i || mm_json_type(d, i) != MM_JSON_STR) return NULL;
  return mm_json_strdup(d, i, len);
}

/* An N value (a string holding a number) as an int64; 0 on success. */
static int n_to_int64(const mm_json_doc_t *d, uint32_t i, int64_t *out) {
  size_t n;
  char *s = str_of(d, i, &n);
  if (!s) return MM_EINVAL;
  mm_dec_t x;
  int rc = mm_dec_parse(&x, s, n, NULL) || !mm_dec_to_int64(&x, out) ? MM_EINVAL : 0;
  free(s);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Request bodies                                                      */
/* ------------------------------------------------------------------ */

/* "TableName":T,"Key":{"pk":{"S":key},"sk":{"N":"bucket"}} */
static int add_table_key(mm_buf_t *b, const ddb_store_t *s, const mm_merge_t *op,
                         mm_err_t *err) {
  mm_buf_adds(b, "{\"TableName\":");
  mm_buf_json_str(b, s->table, strlen(s->table));
  mm_buf_adds(b, ",\"Key\":{\"pk\":{\"S\":");
  if (mm_ddb_json_str(b, op->key, op->key_len, err))
    return mm_err_prefix(err, "key");
  mm_buf_printf(b, "},\"sk\":{\"N\":\"%lld\"}}", (long long)op->bucket);
  return 0;
}

/* {"N":"text"} or {"S":"..."} for a scalar. */
static int add_scalar_av(mm_buf_t *b, const mm_scalar_t *v, mm_err_t *err) {
  if (v->is_num) {
    char t[MM_DEC_TEXT_MAX];
    size_t n = mm_dec_format(&v->num, t);
    mm_buf_adds(b, "{\"N\":\"");
    mm_buf_add(b, t, n);
    mm_buf_adds(b, "\"}");
    return 0;
  }
  mm_buf_adds(b, "{\"S\":");
  if (mm_ddb_json_str(b, v->str ? v->str : "", v->str ? v->len : 0, err))
    return mm_err_prefix(err, "value");
  mm_buf_addc(b, '}');
  return 0;
}

/* qsort comparator over (pointer, length) string views, bytewise. */
typedef struct sv {
  const char *p;
  size_t n;
} sv_t;

static int sv_cmp(const void *a, const void *b) {
  const sv_t *x = a, *y = b;
  size_t n = x->n < y->n ? x->n : y->n;
  int c = memcmp(x->p, y->p, n);
  return c ? c : (x->n > y->n) - (x->n < y->n);
}

/*
 * {"NS":[...]} or {"SS":[...]} for a set delta: members deduplicated (a
 * DynamoDB set must not repeat a member; numbers compare by canonical text,
 * which is equality of value). *empty = 1 when there is nothing to add.
 */
static int add_set_av(mm_buf_t *b, const mm_delta_t *d, int *empty, mm_err_t *err) {
  size_t n = d->nmembers, nums = 0;
  *empty = n == 0;
  if (!n) return 0;
  for (size_t i = 0; i < n; i++) nums += d->members[i].is_num != 0;
  if (nums && nums != n)
    return mm_err_set(err, MM_EPERM,
                      "a set delta mixing numbers and strings cannot be stored in "
                      "DynamoDB (one row holds one set type: NS for numbers, SS for "
                      "strings)");
  sv_t *v = calloc(n, sizeof *v);
  char *txt = nums ? malloc(n * MM_DEC_TEXT_MAX) : NULL;
  if (!v || (nums && !txt)) {
    free(v);
    free(txt);
    return mm_err_set(err, MM_ENOMEM, "out of memory building a set");
  }
  for (size_t i = 0; i < n; i++) {
    const mm_scalar_t *m = &d->members[i];
    if (nums) {
      v[i].p = txt + i * MM_DEC_TEXT_MAX;
      v[i].n = mm_dec_format(&m->num, txt + i * MM_DEC_TEXT_MAX);
    } else {
      v[i].p = m->str ? m->str : "";
      v[i].n = m->str ? m->len : 0;
    }
  }
  qsort(v, n, sizeof *v, sv_cmp);
  int rc = 0;
  mm_buf_adds(b, nums ? "{\"NS\":[" : "{\"SS\":[");
  for (size_t i = 0, k = 0; i < n; i++) {
    if (i && sv_cmp(&v[i], &v[i - 1]) == 0) continue;
    if (k++) mm_buf_addc(b, ',');
    if ((rc = mm_ddb_json_str(b, v[i].p, v[i].n, err))) {
      mm_err_prefix(err, "set member");
      break;
    }
  }
  mm_buf_adds(b, "]}");
  free(v);
  free(txt);
  return rc;
}

/* ,":ttl":{"N":"..."} when windowed. */
static void add_ttl_value(mm_buf_t *b, const mm_merge_t *op) {
  if (op->ttl) mm_buf_printf(b, ",\":ttl\":{\"N\":\"%lld\"}", (long long)op->ttl);
}

/*
 * The one UpdateItem of a sum/count/min/max/first/last/set merge (the
 * table in store_dynamodb.h). *skip = 1 when the op needs no request (an
 * empty set delta).
 */
static int build_update(mm_buf_t *b, const ddb_store_t *s, const mm_merge_t *op, int *skip,
                        mm_err_t *err) {
  const mm_delta_t *d = op->delta;
  const char *ttl_set = op->ttl ? ", #ttl = :ttl" : "";
  const char *ttl_name = op->ttl ? ",\"#ttl\":\"ttl\"" : "";
  int rc;
  *skip = 0;
  switch (d->agg) {
  case MM_AGG_SUM:
  case MM_AGG_COUNT:
    if (!d->v.is_num)
      return mm_err_set(err, MM_EPERM, "%s delta is not a number", mm_agg_name(d->agg));
    if ((rc = add_table_key(b, s, op, err))) return rc;
    mm_buf_printf(b, ",\"UpdateExpression\":\"ADD #v :d%s\"", op->ttl ? " SET #ttl = :ttl" : "");
    mm_buf_printf(b, ",\"ExpressionAttributeNames\":{\"#v\":\"v\"%s}", ttl_name);
    mm_buf_adds(b, ",\"ExpressionAttributeValues\":{\":d\":");
    if ((rc = add_scalar_av(b, &d->v, err))) return rc;
    add_ttl_value(b, op);
    mm_buf_adds(b, "}}");
    return 0;
  case MM_AGG_MIN:
  case MM_AGG_MAX: {
    /* Numbers order before strings (agg.h), so a number beats a stored
     * string for min and a string beats a stored number for max. */
    int min = d->agg == MM_AGG_MIN, num = d->v.is_num != 0;
    const char *op_s = min ? ">" : "<";
    const char *cond;
    char cbuf[200];
    if (num == min) /* min of a number / max of a string: wins over the other type */
      snprintf(cbuf, sizeof cbuf,
               "attribute_not_exists(#v) OR attribute_type(#v, :other) OR #v %s :d", op_s);
    else
      snprintf(cbuf, sizeof cbuf,
               "attribute_not_exists(#v) OR (attribute_type(#v, :same) AND #v %s :d)", op_s);
    cond = cbuf;
    if ((rc = add_table_key(b, s, op, err))) return rc;
    mm_buf_printf(b, ",\"UpdateExpression\":\"SET #v = :d%s\"", ttl_set);
    mm_buf_printf(b, ",\"ConditionExpression\":\"%s\"", cond);
    mm_buf_printf(b, ",\"ExpressionAttributeNames\":{\"#v\":\"v\"%s}", ttl_name);
    mm_buf_adds(b, ",\"ExpressionAttributeValues\":{\":d\":");
    if ((rc = add_scalar_av(b, &d->v, err))) return rc;
    if (num == min)
      mm_buf_printf(b, ",\":other\":{\"S\":\"%s\"}", num ? "S" : "N");
    else
      mm_buf_printf(b, ",\":same\":{\"S\":\"%s\"}", num ? "N" : "S");
    add_ttl_value(b, op);
    mm_buf_adds(b, "}}");
    return 0;
  }
  case MM_AGG_FIRST:
  case MM_AGG_LAST: {
    mm_dec_t t;
    char tt[MM_DEC_TEXT_MAX];
    if (!isfinite(d->time) || mm_dec_from_double(&t, d->time, NULL))
      return mm_err_set(err, MM_EPERM, "%s delta has no finite event time", mm_agg_name(d->agg));
    mm_dec_format(&t, tt);
    if ((rc = add_table_key(b, s, op, err))) return rc;
    mm_buf_printf(b, ",\"UpdateExpression\":\"SET #v = :d, #t = :t%s\"", ttl_set);
    mm_buf_printf(b, ",\"ConditionExpression\":\"attribute_not_exists(#t) OR #t %s :t\"",
                  d->agg == MM_AGG_FIRST ? ">" : "<=");
    mm_buf_printf(b, ",\"ExpressionAttributeNames\":{\"#v\":\"v\",\"#t\":\"t\"%s}", ttl_name);
    mm_buf_adds(b, ",\"ExpressionAttributeValues\":{\":d\":");
    if ((rc = add_scalar_av(b, &d->v, err))) return rc;
    mm_buf_printf(b, ",\":t\":{\"N\":\"%s\"}", tt);
    add_ttl_value(b, op);
    mm_buf_adds(b, "}}");
    return 0;
  }
  case MM_AGG_SET: {
    mm_buf_t set = MM_BUF_INIT;
    int empty;
    if ((rc = add_set_av(&set, d, &empty, err)) || empty) {
      mm_buf_free(&set);
      *skip = !rc;
      return rc;
    }
    if ((rc = add_table_key(b, s, op, err))) {
      mm_buf_free(&set);
      return rc;
    }
    mm_buf_printf(b, ",\"UpdateExpression\":\"ADD #v :s%s\"", op->ttl ? " SET #ttl = :ttl" : "");
    mm_buf_printf(b, ",\"ExpressionAttributeNames\":{\"#v\":\"v\"%s}", ttl_name);
    mm_buf_adds(b, ",\"ExpressionAttributeValues\":{\":s\":");
    mm_buf_add(b, set.data, set.len);
    add_ttl_value(b, op);
    mm_buf_adds(b, "}}");
    rc = mm_buf_failed(&set) ? mm_err_set(err, MM_ENOMEM, "out of memory building a set") : 0;
    mm_buf_free(&set);
    return rc;
  }
  default:
    return mm_err_set(err, MM_EPERM, "aggregate %s has no single-update form",
                      mm_agg_name(d->agg));
  }
}

/* GetItem of the row's sketch and version (hll/topk, step 1). */
static int build_get(mm_buf_t *b, const ddb_store_t *s, const mm_merge_t *op, mm_err_t *err) {
  int rc = add_table_key(b, s, op, err);
  if (rc) return rc;
  mm_buf_adds(b, ",\"ConsistentRead\":true,\"ProjectionExpression\":\"#v, #ver\","
                 "\"ExpressionAttributeNames\":{\"#v\":\"v\",\"#ver\":\"ver\"}}");
  if (mm_buf_failed(b))
    return mm_err_set(err, MM_ENOMEM, "GetItem on table %s: out of memory building the request",
                      s->table);
  return 0;
}

/*
 * hll/topk step 2: reads the GetItem answer, merges the deltas of every op
 * of the row's group into the stored sketch one after the other, and
 * writes the conditional UpdateItem into the leader's request. A delta the
 * aggregate rejects fails its own op (x->bad) and is left out; a stored
 * value that is not a sketch fails the whole group and is never
 * overwritten. Returns 0 with *finished = 1 when nothing needs writing (no
 * op left, or the sketch did not change), 0 with *finished = 0 when the
 * write is ready, or a status for the whole group.
 */
static int sketch_step(op_ctx_t *lead, int *finished, mm_err_t *err) {
  mm_ddb_req_t *r = &lead->req;
  mm_json_doc_t doc = {0};
  unsigned char *old = NULL;
  char *cur = NULL;
  size_t old_len = 0, cur_len = 0;
  int64_t ver = 0, ttl = 0;
  int have = 0, rc = 0, changed_any = 0, alive = 0;
  const mm_merge_t *op = lead->op;
  *finished = 0;
  if (mm_json_parse(&doc, r->resp.data ? r->resp.data : "", r->resp.len, 64, err) ||
      mm_json_type(&doc, 0) != MM_JSON_OBJ) {
    rc = mm_err_set(err, MM_ERETRY, "GetItem on table %s: unreadable answer", lead->s->table);
    goto done;
  }
  uint32_t item = mm_json_get(&doc, 0, "Item", 4);
  char tv[8], tver[8];
  uint32_t v = av_get(&doc, item, "v", tv);
  uint32_t vn = av_get(&doc, item, "ver", tver);
  if (v) {
    size_t n;
    char *b64 = NULL;
    if (strcmp(tv, "B") != 0) {
      rc = mm_err_set(err, MM_EPERM, "row holds a %s value, not a %s sketch (B)", tv,
                      mm_agg_name(op->delta->agg));
      goto done;
    }
    if (!vn || strcmp(tver, "N") != 0 || n_to_int64(&doc, vn, &ver) || ver < 0) {
      rc = mm_err_set(err, MM_EPERM, "sketch row without a valid version attribute 'ver'");
      goto done;
    }
    if (!(b64 = str_of(&doc, v, &n))) {
      rc = mm_err_set(err, MM_ERETRY, "out of memory reading a sketch");
      goto done;
    }
    int brc = b64_decode(b64, n, &old, &old_len);
    free(b64);
    if (brc) {
      rc = mm_err_set(err, brc == MM_ENOMEM ? MM_ERETRY : MM_EPERM,
                      "stored sketch is not valid base64");
      goto done;
    }
    have = 1;
  }
  /* Every delta of the group, in op order, into the running sketch. */
  for (op_ctx_t *m = lead; m; m = m->next) {
    char *out = NULL;
    size_t out_len = 0;
    int changed = 0;
    m->bad = 0;
    mm_err_clear(&m->bad_err);
    const void *base = cur ? (const void *)cur : (have ? (const void *)old : NULL);
    size_t base_len = cur ? cur_len : (have ? old_len : 0);
    int mrc = mm_agg_merge(m->op->delta, base, base_len, &out, &out_len, &changed, &m->bad_err);
    if (mrc) {
      free(out);
      if (!cur && have) {
        /* Is it the stored sketch that does not parse? Then the whole
         * group fails, and the row is left as it is. */
        mm_err_t probe;
        char *o2 = NULL;
        size_t l2;
        int c2;
        int prc = mm_agg_merge(m->op->delta, NULL, 0, &o2, &l2, &c2, &probe);
        free(o2);
        if (!prc) {
          *err = m->bad_err;
          rc = mrc == MM_ENOMEM ? MM_ERETRY : MM_EPERM;
          err->code = rc;
          goto done;
        }
      }
      m->bad = mrc == MM_ENOMEM ? MM_ERETRY : MM_EPERM;
      m->bad_err.code = m->bad;
      continue;
    }
    alive++;
    if (m->op->ttl > ttl) ttl = m->op->ttl;
    changed_any |= changed;
    free(cur);
    cur = out;
    cur_len = out_len;
  }
  if (!alive || (have && !changed_any)) {
    *finished = 1;
    goto done;
  }
  mm_buf_t *b = &r->body;
  mm_buf_reset(b);
  b->failed = 0;
  if ((rc = add_table_key(b, lead->s, op, err))) goto done;
  mm_buf_printf(b, ",\"UpdateExpression\":\"SET #v = :v, #ver = :nv%s\"",
                ttl ? ", #ttl = :ttl" : "");
  if (have)
    mm_buf_adds(b, ",\"ConditionExpression\":\"#ver = :ov\"");
  else
    mm_buf_adds(b, ",\"ConditionExpression\":\"attribute_not_exists(#v)\"");
  mm_buf_printf(b, ",\"ExpressionAttributeNames\":{\"#v\":\"v\",\"#ver\":\"ver\"%s}",
                ttl ? ",\"#ttl\":\"ttl\"" : "");
  mm_buf_adds(b, ",\"ExpressionAttributeValues\":{\":v\":{\"B\":\"");
  b64_encode(b, (const unsigned char *)cur, cur_len);
  mm_buf_printf(b, "\"},\":nv\":{\"N\":\"%lld\"}", (long long)(ver + 1));
  if (have) mm_buf_printf(b, ",\":ov\":{\"N\":\"%lld\"}", (long long)ver);
  if (ttl) mm_buf_printf(b, ",\":ttl\":{\"N\":\"%lld\"}", (long long)ttl);
  mm_buf_adds(b, "}}");
done:
  free(cur);
  free(old);
  mm_json_free(&doc);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Merge                                                               */
/* ------------------------------------------------------------------ */

static int is_sketch(mm_agg_t a) { return a == MM_AGG_HLL || a == MM_AGG_TOPK; }

/* Sets the final outcome of x and of every op of its group: a member whose
 * own delta was rejected keeps that error. */
static void op_finish(op_ctx_t *x, int status, const mm_err_t *e) {
  for (op_ctx_t *m = x; m; m = m->next) {
    m->final = 1;
    if (m->bad && status == 0) {
      m->op->status = m->bad;
      m->op->err = m->bad_err;
      continue;
    }
    m->op->status = status;
    if (status && e) m->op->err = *e;
  }
}

/*
 * Called by the runner after each request of a merge; moves the op to its
 * next step. Returns 1 when the request must be sent again.
 */
static int on_done(void *ud, mm_ddb_req_t *r) {
  (void)ud;
  op_ctx_t *x = r->ud;
  mm_merge_t *op = x->op;
  mm_agg_t agg = op->delta->agg;
  switch (x->phase) {
  case PH_UPDATE:
    if (r->status && r->cond_failed && agg >= MM_AGG_MIN && agg <= MM_AGG_LAST) {
      op_finish(x, 0, NULL); /* the stored value already wins */
      return 0;
    }
    op_finish(x, r->status, &r->err);
    return 0;
  case PH_GET: {
    if (r->status) {
      op_finish(x, r->status, &r->err);
      return 0;
    }
    int finished = 0;
    mm_err_t e;
    mm_err_clear(&e);
    int rc = sketch_step(x, &finished, &e);
    if (rc || finished) {
      op_finish(x, rc, &e);
      return 0;
    }
    x->phase = PH_PUT;
    r->op = "UpdateItem";
    r->write = 1; /* a lost answer may hide an applied write */
    return 1;
  }
  case PH_PUT:
    if (r->status && r->cond_failed) {
      /* Another writer changed the row since our read: read again. */
      if (x->rounds >= MM_DDB_SKETCH_ATTEMPTS) {
        mm_err_t e;
        mm_err_set(&e, MM_ERETRY,
                   "%s on table %s: the row kept changing under %d read-merge-write rounds",
                   mm_agg_name(agg), x->s->table, x->rounds);
        op_finish(x, MM_ERETRY, &e);
        return 0;
      }
      mm_buf_reset(&r->body);
      r->body.failed = 0;
      mm_err_t e;
      mm_err_clear(&e);
      if (build_get(&r->body, x->s, op, &e)) {
        op_finish(x, MM_ERETRY, &e);
        return 0;
      }
      /* Full jitter, so racing writers stop meeting in lockstep. */
      r->not_before = mm_mono_ms() + mm_retry_delay_ms(&x->s->backoff, x->rounds);
      x->rounds++;
      x->phase = PH_GET;
      r->op = "GetItem";
      r->write = 0;
      return 1;
    }
    op_finish(x, r->status, &r->err);
    return 0;
  }
  return 0;
}

/* Orders sketch ops by row (aggregate, bucket, key) so each row's ops are
 * adjacent; ties keep op order (index), so deltas apply in batch order.
 * qsort has no user pointer in C11: sort_base carries the context array
 * (the runtime is single-threaded; it is set right before each sort). */
static const op_ctx_t *sort_base;
static int row_cmp(const void *a, const void *b) {
  const op_ctx_t *x = &sort_base[*(const size_t *)a], *y = &sort_base[*(const size_t *)b];
  const mm_merge_t *p = x->op, *q = y->op;
  if (p->delta->agg != q->delta->agg) return p->delta->agg < q->delta->agg ? -1 : 1;
  if (p->bucket != q->bucket) return p->bucket < q->bucket ? -1 : 1;
  size_t n = p->key_len < q->key_len ? p->key_len : q->key_len;
  int c = memcmp(p->key, q->key, n);
  if (c) return c;
  if (p->key_len != q->key_len) return p->key_len < q->key_len ? -1 : 1;
  return (*(const size_t *)a > *(const size_t *)b) - (*(const size_t *)a < *(const size_t *)b);
}

/*
 * Prepares every op's first request, runs them all concurrently, and lets
 * on_done carry hll/topk ops through their read-merge-write rounds. The
 * hll/topk ops of one row form a group that shares one read-merge-write
 * chain (one writer per row per batch instead of a race among them). An
 * op that fails before sending (bad key, bad delta) gets its status at
 * once.
 */
static int ddb_merge(mm_store_t *base, mm_merge_t *ops, size_t n, int64_t deadline_ms) {
  ddb_store_t *s = (ddb_store_t *)base;
  op_ctx_t *ctx = calloc(n, sizeof *ctx);
  mm_ddb_req_t **reqs = calloc(n, sizeof *reqs);
  size_t *sk_idx = calloc(n, sizeof *sk_idx);
  size_t nr = 0, nsk = 0;
  int rc = 0;
  if (!ctx || !reqs || !sk_idx) {
    for (size_t i = 0; i < n; i++)
      ops[i].status = mm_err_set(&ops[i].err, MM_ERETRY, "out of memory starting merges");
    rc = MM_ENOMEM;
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    mm_merge_t *op = &ops[i];
    op_ctx_t *x = &ctx[i];
    x->op = op;
    x->s = s;
    if (op->key && op->key_len == 0) op->key_len = strlen(op->key);
    if (!op->delta) {
      op->status = mm_err_set(&op->err, MM_EPERM, "merge without a delta");
      continue;
    }
    if (!op->key || op->key_len == 0) {
      op->status = mm_err_set(&op->err, MM_EPERM,
                              "empty key: DynamoDB rejects empty key attributes");
      continue;
    }
    if (!mm_ddb_utf8_valid(op->key, op->key_len)) {
      op->status = mm_err_set(&op->err, MM_EPERM,
                              "key is not valid UTF-8 (DynamoDB strings must be)");
      continue;
    }
    if (is_sketch(op->delta->agg)) {
      sk_idx[nsk++] = i;
      continue;
    }
    int skip = 0;
    mm_ddb_req_init(&x->req, "UpdateItem", s->table, 1);
    x->req.ud = x;
    x->phase = PH_UPDATE;
    int brc = build_update(&x->req.body, s, op, &skip, &op->err);
    if (!brc && mm_buf_failed(&x->req.body))
      brc = mm_err_set(&op->err, MM_ENOMEM, "out of memory building a request");
    if (brc) {
      /* Bad input is permanent; only a lack of memory may pass. */
      op->status = brc == MM_ENOMEM ? MM_ERETRY : MM_EPERM;
      op->err.code = op->status;
      continue;
    }
    if (skip) {
      op->status = 0;
      continue;
    }
    reqs[nr++] = &x->req;
  }
  /* hll/topk: one GetItem per row group, led by its first op. */
  sort_base = ctx;
  qsort(sk_idx, nsk, sizeof *sk_idx, row_cmp);
  for (size_t k = 0; k < nsk;) {
    op_ctx_t *lead = &ctx[sk_idx[k]];
    size_t e = k + 1;
    op_ctx_t *tail = lead;
    while (e < nsk) {
      op_ctx_t *y = &ctx[sk_idx[e]];
      const mm_merge_t *p = lead->op, *q = y->op;
      if (p->delta->agg != q->delta->agg || p->bucket != q->bucket || p->key_len != q->key_len ||
          memcmp(p->key, q->key, p->key_len) != 0)
        break;
      tail->next = y;
      tail = y;
      e++;
    }
    k = e;
    mm_ddb_req_init(&lead->req, "GetItem", s->table, 0);
    lead->req.ud = lead;
    lead->phase = PH_GET;
    lead->rounds = 1;
    mm_err_t berr;
    mm_err_clear(&berr);
    if (build_get(&lead->req.body, s, lead->op, &berr)) {
      op_finish(lead, berr.code == MM_EPERM ? MM_EPERM : MM_ERETRY, &berr);
      continue;
    }
    reqs[nr++] = &lead->req;
  }
  rc = mm_ddb_run(s->c, reqs, nr, deadline_ms, on_done, s);
  /* A runner failure leaves requests that on_done never saw. */
  for (size_t i = 0; i < nr; i++) {
    op_ctx_t *x = reqs[i]->ud;
    if (x->final) continue;
    mm_err_t e = x->req.err;
    int st = x->req.status;
    if (!st) st = mm_err_set(&e, MM_ERETRY, "request abandoned: the transfer loop failed");
    op_finish(x, st, &e);
  }
out:
  for (size_t i = 0; ctx && i < n; i++) mm_ddb_req_free(&ctx[i].req);
  free(ctx);
  free(reqs);
  free(sk_idx);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Query                                                               */
/* ------------------------------------------------------------------ */

/* Text of an N/S AttributeValue as agg.h's scalar encoding ('n'/'s'). */
static int scalar_enc(mm_buf_t *b, const mm_json_doc_t *d, uint32_t v, const char *type) {
  size_t n;
  char *s = str_of(d, v, &n);
  if (!s) return MM_EINVAL;
  mm_buf_addc(b, type[0] == 'N' ? 'n' : 's');
  mm_buf_add(b, s, n);
  free(s);
  return 0;
}

/*
 * Rebuilds agg.h's stored encoding of one item's value from its attribute
 * types (store_dynamodb.h) into *enc (the caller frees it), sets *agg and
 * *exact as store.h's mm_row_t describes, then renders it with
 * mm_agg_render, so every backend prints the same JSON for the same state.
 */
static int render_item(const mm_json_doc_t *d, uint32_t item, char **json, mm_buf_t *enc_out,
                       mm_agg_t *agg_out, int *exact, mm_err_t *err) {
  char tv[8], tt[8];
  uint32_t v = av_get(d, item, "v", tv);
  uint32_t t = av_get(d, item, "t", tt);
  mm_buf_t enc = MM_BUF_INIT;
  mm_agg_t agg;
  int rc = 0;
  *json = NULL;
  if (!v) return mm_err_set(err, MM_EPERM, "row has no value attribute 'v'");
  if ((!strcmp(tv, "N") || !strcmp(tv, "S")) && t && !strcmp(tt, "N")) {
    /* first/last: "TIME|scalar" */
    size_t n;
    char *ts = str_of(d, t, &n);
    double tm;
    if (!ts || mm_json_double(d, t, &tm)) {
      free(ts);
      return mm_err_set(err, MM_EPERM, "row has an unreadable event time 't'");
    }
    free(ts);
    mm_buf_printf(&enc, "%.17g|", tm);
    rc = scalar_enc(&enc, d, v, tv);
    agg = MM_AGG_FIRST;
  } else if (!strcmp(tv, "N")) {
    size_t n;
    char *s = str_of(d, v, &n);
    if (!s) return mm_err_set(err, MM_EPERM, "row has an unreadable number");
    mm_buf_add(&enc, s, n);
    free(s);
    agg = MM_AGG_SUM;
  } else if (!strcmp(tv, "S")) {
    rc = scalar_enc(&enc, d, v, tv);
    agg = MM_AGG_MIN;
  } else if (!strcmp(tv, "NS") || !strcmp(tv, "SS")) {
    if (mm_json_type(d, v) != MM_JSON_ARR) return mm_err_set(err, MM_EPERM, "malformed set");
    size_t m = mm_json_len(d, v);
    char **mem = calloc(m ? m : 1, sizeof *mem);
    sv_t *views = calloc(m ? m : 1, sizeof *views);
    if (!mem || !views) rc = MM_ENOMEM;
    uint32_t e = mm_json_first(d, v);
    for (size_t i = 0; !rc && i < m; i++, e = mm_json_next(d, e)) {
      mm_buf_t one = MM_BUF_INIT;
      if (scalar_enc(&one, d, e, tv) || mm_buf_failed(&one)) rc = MM_EPERM;
      views[i].n = one.len;
      views[i].p = mem[i] = mm_buf_take(&one, NULL);
      if (!mem[i]) rc = MM_ENOMEM;
    }
    if (!rc) {
      qsort(views, m, sizeof *views, sv_cmp);
      for (size_t i = 0; i < m; i++) {
        if (i) mm_buf_addc(&enc, '\0');
        mm_buf_add(&enc, views[i].p, views[i].n);
      }
    }
    for (size_t i = 0; mem && i < m; i++) free(mem[i]);
    free(mem);
    free(views);
    if (rc) {
      mm_buf_free(&enc);
      return mm_err_set(err, rc, "unreadable set value");
    }
    agg = MM_AGG_SET;
  } else if (!strcmp(tv, "B")) {
    size_t n;
    char *s = str_of(d, v, &n);
    unsigned char *raw = NULL;
    size_t rl = 0;
    int brc = s ? b64_decode(s, n, &raw, &rl) : MM_ENOMEM;
    free(s);
    if (brc) return mm_err_set(err, MM_EPERM, "row holds unreadable binary");
    agg = rl && raw[0] == MM_TOPK_MAGIC ? MM_AGG_TOPK : MM_AGG_HLL;
    mm_buf_add(&enc, raw, rl);
    free(raw);
  } else {
    return mm_err_set(err, MM_EPERM, "row holds a %s value, which no aggregate writes", tv);
  }
  if (rc || mm_buf_failed(&enc)) {
    mm_buf_free(&enc);
    return mm_err_set(err, rc == MM_ENOMEM ? MM_ENOMEM : MM_EPERM, "unreadable row value");
  }
  rc = mm_agg_render(agg, enc.data ? enc.data : "", enc.len, json, err);
  *agg_out = agg;
  *exact = agg == MM_AGG_SET || agg == MM_AGG_HLL || agg == MM_AGG_TOPK;
  mm_buf_free(enc_out);
  *enc_out = enc;
  return rc;
}

/*
 * Query on pk (and sk for one bucket), every page in ascending sk order;
 * each row is rendered and handed to fn. A later page must start after
 * the previous one's last bucket, which bounds the loop.
 */
static int ddb_query(mm_store_t *base, const char *key, const int64_t *bucket, mm_row_fn fn,
                     void *ud, mm_err_t *err) {
  ddb_store_t *s = (ddb_store_t *)base;
  mm_ddb_req_t r;
  mm_json_doc_t doc = {0};
  int rc = 0, have_start = 0, stop = 0;
  int64_t start_sk = 0;
  char *json = NULL, *pk = NULL;
  mm_buf_t enc = MM_BUF_INIT; /* the current row's stored encoding */
  mm_ddb_req_init(&r, "Query", s->table, 0);
  while (!stop) {
    mm_buf_t *b = &r.body;
    mm_buf_reset(b);
    mm_buf_adds(b, "{\"TableName\":");
    mm_buf_json_str(b, s->table, strlen(s->table));
    mm_buf_printf(b, ",\"ConsistentRead\":true,\"ScanIndexForward\":true,"
                     "\"KeyConditionExpression\":\"#pk = :k%s\","
                     "\"ExpressionAttributeNames\":{\"#pk\":\"pk\"%s},"
                     "\"ExpressionAttributeValues\":{\":k\":{\"S\":",
                  bucket ? " AND #sk = :b" : "", bucket ? ",\"#sk\":\"sk\"" : "");
    if (mm_ddb_json_str(b, key, strlen(key), err)) {
      rc = MM_EINVAL;
      mm_err_prefix(err, "query key");
      goto out;
    }
    mm_buf_adds(b, "}");
    if (bucket) mm_buf_printf(b, ",\":b\":{\"N\":\"%lld\"}", (long long)*bucket);
    mm_buf_adds(b, "}");
    if (have_start) {
      mm_buf_adds(b, ",\"ExclusiveStartKey\":{\"pk\":{\"S\":");
      mm_buf_json_str(b, key, strlen(key));
      mm_buf_printf(b, "},\"sk\":{\"N\":\"%lld\"}}", (long long)start_sk);
    }
    mm_buf_adds(b, "}");
    if ((rc = mm_ddb_call(s->c, &r, 0))) {
      if (err) *err = r.err;
      goto out;
    }
    mm_json_free(&doc);
    if (mm_json_parse(&doc, r.resp.data ? r.resp.data : "", r.resp.len, 64, err) ||
        mm_json_type(&doc, 0) != MM_JSON_OBJ) {
      rc = mm_err_set(err, MM_ERETRY, "Query on table %s: unreadable answer", s->table);
      goto out;
    }
    uint32_t items = mm_json_get(&doc, 0, "Items", 5);
    if (items && mm_json_type(&doc, items) == MM_JSON_ARR) {
      uint32_t it = mm_json_first(&doc, items);
      for (uint32_t k = 0; k < mm_json_len(&doc, items) && !stop; k++, it = mm_json_next(&doc, it)) {
        char t1[8], t2[8], t3[8];
        uint32_t pkv = av_get(&doc, it, "pk", t1), skv = av_get(&doc, it, "sk", t2);
        uint32_t ttv = av_get(&doc, it, "ttl", t3);
        int64_t sk = 0, ttl = 0;
        size_t pl;
        free(pk);
        pk = pkv && !strcmp(t1, "S") ? str_of(&doc, pkv, &pl) : NULL;
        if (!pk || !skv || strcmp(t2, "N") || n_to_int64(&doc, skv, &sk)) {
          rc = mm_err_set(err, MM_EPERM, "Query on table %s: a row without pk (S) and sk (N)",
                          s->table);
          goto out;
        }
        if (ttv && (strcmp(t3, "N") || n_to_int64(&doc, ttv, &ttl))) ttl = 0;
        free(json);
        json = NULL;
        mm_agg_t agg = MM_AGG_SUM;
        int exact = 0;
        if ((rc = render_item(&doc, it, &json, &enc, &agg, &exact, err))) {
          mm_err_prefix(err, "row %.200s/%lld", key, (long long)sk);
          goto out;
        }
        mm_row_t row = {.key = pk, .bucket = sk, .value_json = json, .ttl = ttl,
                        .agg = agg, .agg_exact = exact,
                        .stored = enc.data ? enc.data : "", .stored_len = enc.len};
        if (fn(ud, &row)) stop = 1;
      }
    }
    uint32_t last = mm_json_get(&doc, 0, "LastEvaluatedKey", 16);
    if (!last || mm_json_type(&doc, last) != MM_JSON_OBJ || stop) break;
    char tl[8];
    int64_t next_sk;
    uint32_t lsk = av_get(&doc, last, "sk", tl);
    if (!lsk || n_to_int64(&doc, lsk, &next_sk) || (have_start && next_sk <= start_sk)) {
      rc = mm_err_set(err, MM_EPERM, "Query on table %s: pagination did not advance", s->table);
      goto out;
    }
    start_sk = next_sk;
    have_start = 1;
  }
out:
  free(json);
  free(pk);
  mm_buf_free(&enc);
  mm_json_free(&doc);
  mm_ddb_req_free(&r);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Open / destroy                                                      */
/* ------------------------------------------------------------------ */

static void ddb_destroy(mm_store_t *base) {
  ddb_store_t *s = (ddb_store_t *)base;
  if (!s) return;
  mm_ddb_destroy(s->c);
  free(s->table);
  free(s);
}

static const mm_store_vt_t ddb_store_vt = {"dynamodb", ddb_merge, ddb_query, ddb_destroy};

int mm_store_dynamodb_open(mm_store_t **out, const char *table, const mm_store_opts_t *opts,
                           mm_err_t *err) {
  *out = NULL;
  if (!mm_ddb_table_name_ok(table))
    return mm_err_set(err, MM_EINVAL,
                      "'%.200s' is not a DynamoDB table name (3-255 of A-Z a-z 0-9 _ - .) "
                      "or table ARN", table ? table : "");
  ddb_store_t *s = calloc(1, sizeof *s);
  int rc;
  if (!s || !(s->table = strdup(table))) {
    free(s);
    return mm_err_set(err, MM_ENOMEM, "out of memory opening the DynamoDB store");
  }
  s->base.vt = &ddb_store_vt;
  mm_retry_init(&s->backoff, MM_DDB_SKETCH_ATTEMPTS, MM_DDB_SKETCH_BACKOFF_MS,
                MM_DDB_SKETCH_BACKOFF_MAX_MS,
                (uint64_t)mm_now_ms() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)s);
  if ((rc = mm_ddb_open(&s->c, opts ? opts->max_inflight : 0,
                        opts ? opts->request_timeout_ms : 0, err))) {
    ddb_destroy(&s->base);
    return rc;
  }
  *out = &s->base;
  return 0;
}

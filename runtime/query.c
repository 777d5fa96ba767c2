/*
 * query.c - reading aggregates back (see query.h).
 *
 * Plain queries print each row as the store rendered it. A --last query
 * walks the key's rows in ascending bucket order, keeps those in the
 * window, brings each to the caller's aggregate (a DynamoDB scalar row is
 * stored in its family's encoding, store.h) and folds them with
 * mm_agg_combine, oldest first; the result is rendered once at the end.
 */
#include "query.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "config.h"

/* State of one --last fold (the row callback's user data). */
typedef struct fold {
  const mm_query_t *q;
  int64_t from, to;
  int have_kind;       /* kind is settled (given, or from the first row) */
  mm_agg_t kind;
  char *acc;           /* owned: the combination so far (NULL = none) */
  size_t acc_len;
  uint64_t rows;
  int rc;              /* first failure, 0 while all is well */
  mm_err_t *err;
} fold_t;

/* State of a plain query. */
typedef struct plain {
  FILE *out;
  int rc;
  mm_err_t *err;
} plain_t;

/* floor(a / b) for b > 0, also for negative a. */
static int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

int mm_query_window(const char *last, int64_t granularity_s, int64_t now_s,
                    int64_t *from, int64_t *to, mm_err_t *err) {
  int64_t d;
  if (granularity_s <= 0)
    return mm_err_set(err, MM_EINVAL,
                      "--last needs the pipeline's window granularity (a windowed "
                      "pipeline's --script, or --granularity 1h)");
  if (!last) return mm_err_set(err, MM_EINVAL, "--last needs a duration (30s, 15m, 1h, 1d, 7d)");
  if (mm_config_duration(last, &d, err)) {
    mm_err_prefix(err, "--last");
    return MM_EINVAL;
  }
  if (d % granularity_s != 0)
    return mm_err_set(err, MM_EINVAL,
                      "--last %s is not a whole number of %lld-second buckets", last,
                      (long long)granularity_s);
  int64_t n = d / granularity_s;
  *to = floor_div(now_s, granularity_s);
  *from = *to - n + 1;
  return 0;
}

/* 1 when a row of inferred family `fam` (store.h, agg_exact = 0) may hold
 * aggregate `want`. */
static int family_has(mm_agg_t fam, mm_agg_t want) {
  switch (fam) {
  case MM_AGG_SUM:
    return want == MM_AGG_SUM || want == MM_AGG_COUNT || want == MM_AGG_MIN ||
           want == MM_AGG_MAX;
  case MM_AGG_MIN: return want == MM_AGG_MIN || want == MM_AGG_MAX;
  case MM_AGG_FIRST: return want == MM_AGG_FIRST || want == MM_AGG_LAST;
  default: return fam == want;
  }
}

/* What a row of family `fam` reads as, for the message. */
static const char *family_text(mm_agg_t fam) {
  switch (fam) {
  case MM_AGG_SUM: return "a number (sum, count, min or max)";
  case MM_AGG_MIN: return "a string (min or max)";
  case MM_AGG_FIRST: return "a timed value (first or last)";
  default: return mm_agg_name(fam);
  }
}

/*
 * Brings one row to the fold's aggregate: settles the kind on the first
 * row when none was given, checks the row may hold it, and re-encodes a
 * DynamoDB number read as a sum when the aggregate is min/max ('n' tag).
 * *enc is the bytes to combine: the row's own or *tmp (caller frees).
 */
static int row_bytes(fold_t *f, const mm_row_t *row, const void **enc, size_t *len,
                     char **tmp) {
  *tmp = NULL;
  if (!f->have_kind) {
    if (!row->agg_exact)
      return mm_err_set(f->err, MM_EINVAL,
                        "row %.200s/%lld holds %s and does not say which: pass the "
                        "pipeline (--script) or --aggregate to combine buckets",
                        row->key, (long long)row->bucket, family_text(row->agg));
    f->kind = row->agg;
    f->have_kind = 1;
  }
  if (row->agg_exact ? row->agg != f->kind : !family_has(row->agg, f->kind))
    return mm_err_set(f->err, MM_EPERM, "row %.200s/%lld holds %s, not a %s aggregate",
                      row->key, (long long)row->bucket,
                      row->agg_exact ? mm_agg_name(row->agg) : family_text(row->agg),
                      mm_agg_name(f->kind));
  *enc = row->stored;
  *len = row->stored_len;
  if (!row->agg_exact && row->agg == MM_AGG_SUM &&
      (f->kind == MM_AGG_MIN || f->kind == MM_AGG_MAX)) {
    *tmp = malloc(row->stored_len + 1);
    if (!*tmp) return mm_err_set(f->err, MM_ENOMEM, "out of memory combining rows");
    (*tmp)[0] = 'n';
    memcpy(*tmp + 1, row->stored, row->stored_len);
    *enc = *tmp;
    *len = row->stored_len + 1;
  }
  return 0;
}

/* Row callback of a --last query: folds rows of the window, stops past it. */
static int fold_row(void *ud, const mm_row_t *row) {
  fold_t *f = ud;
  if (row->bucket > f->to) return 1; /* ascending: nothing later is in the window */
  if (row->bucket < f->from || (row->ttl != 0 && row->ttl < f->q->now_s)) return 0;
  const void *enc = NULL;
  size_t len = 0;
  char *tmp = NULL, *next = NULL;
  size_t next_len = 0;
  int rc = row_bytes(f, row, &enc, &len, &tmp);
  if (!rc) {
    rc = mm_agg_combine(f->kind, f->acc, f->acc_len, enc, len, &next, &next_len, f->err);
    if (rc) mm_err_prefix(f->err, "row %.200s/%lld", row->key, (long long)row->bucket);
  }
  free(tmp);
  if (rc) {
    f->rc = rc;
    return 1;
  }
  free(f->acc);
  f->acc = next;
  f->acc_len = next_len;
  f->rows++;
  return 0;
}

/* Row callback of a plain query: prints the row. */
static int print_row(void *ud, const mm_row_t *row) {
  plain_t *p = ud;
  mm_buf_t b = MM_BUF_INIT;
  mm_buf_adds(&b, "{\"key\":");
  mm_buf_json_str(&b, row->key, strlen(row->key));
  mm_buf_printf(&b, ",\"bucket\":%lld,\"value\":%s}\n", (long long)row->bucket,
                row->value_json);
  if (mm_buf_failed(&b)) p->rc = mm_err_set(p->err, MM_ENOMEM, "out of memory printing a row");
  else if (fwrite(b.data, 1, b.len, p->out) != b.len)
    p->rc = mm_err_set(p->err, MM_EIO, "cannot write the query's output");
  mm_buf_free(&b);
  return p->rc != 0;
}

/* Runs a --last query: fold, then print the one combined object. */
static int run_last(mm_store_t *s, const mm_query_t *q, FILE *out, mm_err_t *err) {
  fold_t f = {.q = q, .have_kind = q->has_agg, .kind = q->agg, .err = err};
  int rc = mm_query_window(q->last, q->granularity_s, q->now_s, &f.from, &f.to, err);
  if (rc) return rc;
  rc = mm_store_query(s, q->key, NULL, fold_row, &f, err);
  if (!rc) rc = f.rc;
  char *json = NULL;
  mm_buf_t b = MM_BUF_INIT;
  if (rc || f.rows == 0) goto done;
  if ((rc = mm_agg_render(f.kind, f.acc, f.acc_len, &json, err))) {
    mm_err_prefix(err, "combined value of %.200s", q->key);
    goto done;
  }
  mm_buf_adds(&b, "{\"key\":");
  mm_buf_json_str(&b, q->key, strlen(q->key));
  mm_buf_adds(&b, ",\"last\":");
  mm_buf_json_str(&b, q->last, strlen(q->last));
  mm_buf_printf(&b, ",\"from\":%lld,\"to\":%lld,\"rows\":%llu,\"value\":%s}\n",
                (long long)f.from, (long long)f.to, (unsigned long long)f.rows, json);
  if (mm_buf_failed(&b)) rc = mm_err_set(err, MM_ENOMEM, "out of memory printing the window");
  else if (fwrite(b.data, 1, b.len, out) != b.len || fflush(out) != 0)
    rc = mm_err_set(err, MM_EIO, "cannot write the query's output");
done:
  mm_buf_free(&b);
  free(json);
  free(f.acc);
  return rc;
}

int mm_query_run(mm_store_t *s, const mm_query_t *q, FILE *out, mm_err_t *err) {
  if (!q->key) return mm_err_set(err, MM_EINVAL, "query needs a key");
  if (q->last && q->bucket)
    return mm_err_set(err, MM_EINVAL, "--bucket and --last cannot be combined");
  if (q->last) return run_last(s, q, out, err);
  plain_t p = {.out = out, .err = err};
  int rc = mm_store_query(s, q->key, q->bucket, print_row, &p, err);
  if (!rc) rc = p.rc;
  if (!rc && fflush(out) != 0) rc = mm_err_set(err, MM_EIO, "cannot write the query's output");
  return rc;
}

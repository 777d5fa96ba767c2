/*
 * store_memory.c - the memory:// store: state that lives as long as the
 * process (tests, `murmur-ddb invoke` without a file).
 *
 * Layout: a chained hash table on the key; each key holds its rows sorted by
 * bucket, so (key, bucket) is one hash probe plus a binary search and a
 * query walks the rows in bucket order without sorting. Each row keeps its
 * aggregate kind, the stored bytes of agg.h and its ttl. The stored bytes
 * are produced and read only by mm_agg_merge / mm_agg_render.
 *
 * Test hook: mm_store_memory_inject queues failures per key (store.h).
 * Not thread-safe (one pipeline per process uses it).
 */
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "retry.h"
#include "store.h"
#include "store_local.h"

/* Initial number of hash chains (a power of two); doubled when the keys
 * outnumber the chains. */
#define MEM_INITIAL_CHAINS 64

typedef struct mrow {
  int64_t bucket;
  mm_agg_t agg;
  char *v;          /* owned stored bytes */
  size_t vlen;
  size_t vcap;      /* bytes allocated at v: a new value that fits is copied in */
  int64_t ttl;
} mrow_t;

typedef struct mkey {
  struct mkey *next;
  uint64_t hash;
  char *key;        /* owned, NUL-terminated copy */
  size_t len;
  mrow_t *rows;     /* owned, ascending bucket */
  size_t nrows, cap;
} mkey_t;

typedef struct mem_store {
  mm_store_t base;
  mkey_t **chains;
  size_t nchains;
  size_t nkeys;
  mm_local_inject_t *inject;
  mm_buf_t scratch; /* each merge's new value, before it is copied into its row */
} mem_store_t;

static const mm_store_vt_t mem_vt;

static mkey_t *find_key(mem_store_t *s, const char *k, size_t n, uint64_t h) {
  for (mkey_t *e = s->chains[h & (s->nchains - 1)]; e; e = e->next)
    if (e->hash == h && e->len == n && memcmp(e->key, k, n) == 0) return e;
  return NULL;
}

/* Doubles the chain array; on allocation failure the table simply stays
 * denser (still correct). */
static void grow_chains(mem_store_t *s) {
  size_t nn = s->nchains * 2;
  mkey_t **nc = calloc(nn, sizeof *nc);
  if (!nc) return;
  for (size_t i = 0; i < s->nchains; i++) {
    mkey_t *e = s->chains[i];
    while (e) {
      mkey_t *next = e->next;
      e->next = nc[e->hash & (nn - 1)];
      nc[e->hash & (nn - 1)] = e;
      e = next;
    }
  }
  free(s->chains);
  s->chains = nc;
  s->nchains = nn;
}

/* Adds an empty key entry (NULL when out of memory). */
static mkey_t *add_key(mem_store_t *s, const char *k, size_t n, uint64_t h) {
  mkey_t *e = calloc(1, sizeof *e);
  if (!e) return NULL;
  e->key = malloc(n + 1);
  if (!e->key) {
    free(e);
    return NULL;
  }
  memcpy(e->key, k, n);
  e->key[n] = '\0';
  e->len = n;
  e->hash = h;
  if (s->nkeys >= s->nchains) grow_chains(s);
  size_t c = h & (s->nchains - 1);
  e->next = s->chains[c];
  s->chains[c] = e;
  s->nkeys++;
  return e;
}

/* Index of bucket in e's rows, or of where it would go (*found = 0). */
static size_t find_row(const mkey_t *e, int64_t bucket, int *found) {
  size_t lo = 0, hi = e ? e->nrows : 0;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (e->rows[mid].bucket < bucket) lo = mid + 1;
    else hi = mid;
  }
  *found = e && lo < e->nrows && e->rows[lo].bucket == bucket;
  return lo;
}

/*
 * Applies one op: finds the row, lets the shared rule merge the delta into
 * the store's scratch buffer, and copies the result into the row, whose
 * buffer is reused while the value fits (a sum grows a digit now and then:
 * no malloc/free per merge). Every allocation comes before the row is
 * touched, and the key entry is created only when a row is written, so a
 * failed merge leaves no trace.
 */
static void apply_op(mem_store_t *s, mm_merge_t *op) {
  uint64_t h = mm_fnv1a(op->key, op->key_len);
  mkey_t *e = find_key(s, op->key, op->key_len, h);
  int found = 0;
  size_t at = find_row(e, op->bucket, &found);
  mrow_t *r = found ? &e->rows[at] : NULL;
  mm_buf_t *nv = &s->scratch;
  int write = 0;
  int rc = mm_local_merge_row(op, found, r ? r->agg : MM_AGG_SUM, r ? r->v : NULL,
                              r ? r->vlen : 0, nv, &write, &op->err);
  if (rc) {
    op->status = rc;
    return;
  }
  if (!write) return;
  size_t nlen = nv->len;
  char *fresh = NULL; /* a new value buffer, when the row's is too small */
  size_t cap = (nlen + 16) & ~(size_t)15; /* room to grow by a digit or more */
  if ((!r || r->vcap < nlen) && !(fresh = malloc(cap))) goto nomem;
  if (!r) {
    if (!e && !(e = add_key(s, op->key, op->key_len, h))) goto nomem;
    if (e->nrows == e->cap) {
      size_t cap = e->cap ? e->cap * 2 : 4;
      mrow_t *nr = realloc(e->rows, cap * sizeof *nr);
      if (!nr) goto nomem;
      e->rows = nr;
      e->cap = cap;
    }
    memmove(&e->rows[at + 1], &e->rows[at], (e->nrows - at) * sizeof *e->rows);
    e->nrows++;
    r = &e->rows[at];
    r->bucket = op->bucket;
    r->v = NULL;
    r->vcap = 0;
  }
  if (fresh) {
    free(r->v);
    r->v = fresh;
    r->vcap = cap;
  }
  memcpy(r->v, nv->data, nlen);
  r->vlen = nlen;
  r->agg = op->delta->agg;
  r->ttl = op->ttl;
  return;
nomem:
  free(fresh);
  op->status = mm_err_set(&op->err, MM_ERETRY, "out of memory storing a row");
}

/* Runs a batch in order; each op is independent of the others' outcome. */
static int mem_merge(mm_store_t *base, mm_merge_t *ops, size_t n, int64_t deadline_ms) {
  mem_store_t *s = (mem_store_t *)base;
  for (size_t i = 0; i < n; i++) {
    mm_merge_t *op = &ops[i];
    if (mm_local_op_start(op, deadline_ms)) continue;
    int inj = mm_local_inject_take(s->inject, op->key, op->key_len);
    if (inj && inj != MM_EUNKNOWN) {
      op->status = mm_err_set(&op->err, inj, "injected %s failure", mm_err_name(inj));
      continue;
    }
    apply_op(s, op);
    /* A lost answer: whatever happened, the caller only learns "unknown". */
    if (inj == MM_EUNKNOWN)
      op->status = mm_err_set(&op->err, MM_EUNKNOWN,
                              "injected EUNKNOWN (merge applied, answer lost)");
  }
  return 0;
}

/* Renders one row and hands it to fn; returns fn's answer via *stop. */
static int emit_row(const mkey_t *e, const mrow_t *r, mm_row_fn fn, void *ud,
                    int *stop, mm_err_t *err) {
  char *json = NULL;
  int rc = mm_agg_render(r->agg, r->v, r->vlen, &json, err);
  if (rc) {
    free(json);
    mm_err_prefix(err, "row %s/%lld", e->key, (long long)r->bucket);
    return rc;
  }
  mm_row_t row = {.key = e->key, .bucket = r->bucket, .value_json = json, .ttl = r->ttl,
                  .agg = r->agg, .agg_exact = 1, .stored = r->v, .stored_len = r->vlen};
  *stop = fn(ud, &row);
  free(json);
  return 0;
}

/*
 * Rows of key in bucket order (they are kept sorted). Expired rows are
 * listed like any other, as a DynamoDB Query lists rows its TTL process has
 * not deleted yet. fn must not merge into this store.
 */
static int mem_query(mm_store_t *base, const char *key, const int64_t *bucket,
                     mm_row_fn fn, void *ud, mm_err_t *err) {
  mem_store_t *s = (mem_store_t *)base;
  size_t n = strlen(key);
  mkey_t *e = find_key(s, key, n, mm_fnv1a(key, n));
  if (!e) return 0;
  int stop = 0;
  if (bucket) {
    int found;
    size_t at = find_row(e, *bucket, &found);
    return found ? emit_row(e, &e->rows[at], fn, ud, &stop, err) : 0;
  }
  for (size_t i = 0; i < e->nrows && !stop; i++) {
    int rc = emit_row(e, &e->rows[i], fn, ud, &stop, err);
    if (rc) return rc;
  }
  return 0;
}

static void mem_destroy(mm_store_t *base) {
  mem_store_t *s = (mem_store_t *)base;
  for (size_t i = 0; s->chains && i < s->nchains; i++) {
    mkey_t *e = s->chains[i];
    while (e) {
      mkey_t *next = e->next;
      for (size_t j = 0; j < e->nrows; j++) free(e->rows[j].v);
      free(e->rows);
      free(e->key);
      free(e);
      e = next;
    }
  }
  mm_local_inject_free(&s->inject);
  mm_buf_free(&s->scratch);
  free(s->chains);
  free(s);
}

static const mm_store_vt_t mem_vt = {"memory", mem_merge, mem_query, mem_destroy};

int mm_store_memory_open(mm_store_t **out, mm_err_t *err) {
  *out = NULL;
  mem_store_t *s = calloc(1, sizeof *s);
  if (!s) return mm_err_set(err, MM_ENOMEM, "out of memory opening memory://");
  s->base.vt = &mem_vt;
  s->nchains = MEM_INITIAL_CHAINS;
  s->chains = calloc(s->nchains, sizeof *s->chains);
  if (!s->chains) {
    mem_destroy(&s->base);
    return mm_err_set(err, MM_ENOMEM, "out of memory opening memory://");
  }
  *out = &s->base;
  return 0;
}

/*
 * Queues `count` failures for key (replacing any pending for it; count <= 0
 * removes them). A store that is not memory:// ignores the call, as does an
 * allocation failure (the test then sees no failure and says so).
 */
void mm_store_memory_inject(mm_store_t *base, const char *key, int count, int status) {
  if (!base || base->vt != &mem_vt || !key) return;
  mm_local_inject_set(&((mem_store_t *)base)->inject, key, count, status);
}

/*
 * sketch.c - HyperLogLog and Space-Saving top-k (see sketch.h for the
 * parameters and the byte formats).
 */
#include "sketch.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

/* Size of the dense register area: 6 bits per register. */
#define HLL_DENSE_BYTES (MM_HLL_REGISTERS * 6 / 8)
#define HLL_HEAD 4
/* Top-k: header and per-counter fixed part. */
#define TOPK_HEAD 14
#define TOPK_ENTRY 18

/* ------------------------------------------------------------------ */
/* byte helpers                                                         */
/* ------------------------------------------------------------------ */

static void put_u16(uint8_t *p, unsigned v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

static void put_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static unsigned get_u16(const uint8_t *p) { return (unsigned)p[0] << 8 | p[1]; }

static uint64_t get_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | p[i];
  return v;
}

/* ------------------------------------------------------------------ */
/* hash                                                                 */
/* ------------------------------------------------------------------ */

/*
 * FNV-1a (64-bit offset basis and prime) gives a fast byte-serial hash;
 * its low avalanche quality is fixed by the MurmurHash3 fmix64 finalizer,
 * whose multiply/xor-shift rounds make every output bit depend on every
 * input bit. HLL needs exactly that: uniform leading bits and leading zeros.
 */
uint64_t mm_sketch_hash(const void *item, size_t len) {
  uint64_t h = mm_fnv1a(item, len);
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

/* ------------------------------------------------------------------ */
/* HyperLogLog                                                          */
/* ------------------------------------------------------------------ */

void mm_hll_init(mm_hll_t *h) { memset(h->reg, 0, sizeof h->reg); }

/* The top MM_HLL_P hash bits choose the register; the rank is the
 * position of the first 1 bit in the rest (53 when they are all 0). A
 * register only ever grows, so re-adding an item changes nothing. */
void mm_hll_add(mm_hll_t *h, const void *item, size_t len) {
  uint64_t x = mm_sketch_hash(item, len);
  unsigned idx = (unsigned)(x >> (64 - MM_HLL_P));
  uint64_t w = x << MM_HLL_P; /* the remaining 52 bits, left-aligned */
  unsigned rank = w ? (unsigned)__builtin_clzll(w) + 1 : MM_HLL_MAX_RANK;
  if (rank > h->reg[idx]) h->reg[idx] = (uint8_t)rank;
}

void mm_hll_merge(mm_hll_t *dst, const mm_hll_t *src) {
  for (unsigned i = 0; i < MM_HLL_REGISTERS; i++)
    if (src->reg[i] > dst->reg[i]) dst->reg[i] = src->reg[i];
}

/* Ertl's sigma(x) = x + sum_{k>=1} x^(2^k) 2^(k-1), for the empty registers. */
static double hll_sigma(double x) {
  if (x == 1.0) return INFINITY;
  double y = 1.0, z = x, prev;
  do {
    x *= x;
    prev = z;
    z += x * y;
    y += y;
  } while (z != prev);
  return z;
}

/* Ertl's tau(x) = (1 - x - sum_{k>=1} (1 - x^(2^-k))^2 2^-k) / 3, for the
 * saturated registers. */
static double hll_tau(double x) {
  if (x == 0.0 || x == 1.0) return 0.0;
  double y = 1.0, z = 1.0 - x, prev;
  do {
    x = sqrt(x);
    prev = z;
    y *= 0.5;
    z -= (1.0 - x) * (1.0 - x) * y;
  } while (z != prev);
  return z / 3.0;
}

/*
 * Ertl's improved raw estimator works on the histogram C[k] of register
 * values: z = m tau(1 - C[q+1]/m), then halve-and-add C[q] .. C[1], plus
 * m sigma(C[0]/m); the estimate is alpha_inf m^2 / z with
 * alpha_inf = 1 / (2 ln 2). It needs no empirical bias correction and
 * no switch to linear counting.
 */
double mm_hll_estimate(const mm_hll_t *h) {
  const int q = 64 - MM_HLL_P;
  double m = MM_HLL_REGISTERS;
  unsigned hist[MM_HLL_MAX_RANK + 1];
  memset(hist, 0, sizeof hist);
  for (unsigned i = 0; i < MM_HLL_REGISTERS; i++) {
    unsigned r = h->reg[i] > MM_HLL_MAX_RANK ? MM_HLL_MAX_RANK : h->reg[i];
    hist[r]++;
  }
  if (hist[0] == MM_HLL_REGISTERS) return 0.0;
  double z = m * hll_tau(1.0 - hist[q + 1] / m);
  for (int k = q; k >= 1; k--) z = 0.5 * (z + hist[k]);
  z += m * hll_sigma(hist[0] / m);
  double e = m * m / (2.0 * log(2.0)) / z;
  /* every register saturated (z = 0): more than the hash can tell apart */
  return isfinite(e) && e < 0x1p64 ? e : 0x1p64;
}

/* Sparse (index, rank) triples while few registers are set, else the
 * packed dense form; the choice depends only on the registers, so equal
 * sketches give equal bytes. */
int mm_hll_serialize(const mm_hll_t *h, mm_buf_t *out) {
  unsigned nz = 0;
  for (unsigned i = 0; i < MM_HLL_REGISTERS; i++) nz += h->reg[i] != 0;
  uint8_t head[HLL_HEAD + 2] = {MM_HLL_MAGIC, MM_SKETCH_VERSION, MM_HLL_P, 0, 0, 0};
  if (nz <= MM_HLL_SPARSE_MAX) {
    put_u16(head + HLL_HEAD, nz);
    if (mm_buf_reserve(out, sizeof head + 3 * (size_t)nz)) return MM_ENOMEM;
    mm_buf_add(out, head, sizeof head);
    for (unsigned i = 0; i < MM_HLL_REGISTERS; i++) {
      if (!h->reg[i]) continue;
      uint8_t e[3] = {(uint8_t)(i >> 8), (uint8_t)i, h->reg[i]};
      mm_buf_add(out, e, 3);
    }
    return mm_buf_failed(out) ? MM_ENOMEM : 0;
  }
  head[3] = 1;
  uint8_t dense[HLL_DENSE_BYTES];
  for (unsigned i = 0; i < MM_HLL_REGISTERS; i += 4) {
    /* four 6-bit ranks -> 24 bits -> 3 bytes */
    uint32_t v = (uint32_t)(h->reg[i] & 63) << 18 | (uint32_t)(h->reg[i + 1] & 63) << 12 |
                 (uint32_t)(h->reg[i + 2] & 63) << 6 | (uint32_t)(h->reg[i + 3] & 63);
    uint8_t *d = dense + i / 4 * 3;
    d[0] = (uint8_t)(v >> 16);
    d[1] = (uint8_t)(v >> 8);
    d[2] = (uint8_t)v;
  }
  if (mm_buf_reserve(out, HLL_HEAD + sizeof dense)) return MM_ENOMEM;
  mm_buf_add(out, head, HLL_HEAD);
  return mm_buf_add(out, dense, sizeof dense);
}

/*
 * Checks the header, then the encoding's exact length, then every
 * register: index order and bounds (sparse), rank <= 53 (both).
 */
int mm_hll_parse(mm_hll_t *h, const void *bytes, size_t len, mm_err_t *err) {
  const uint8_t *p = bytes;
  mm_hll_init(h);
  if (len < HLL_HEAD)
    return mm_err_set(err, MM_EINVAL, "hll sketch: %zu bytes is too short for a header",
                      len);
  if (p[0] != MM_HLL_MAGIC)
    return mm_err_set(err, MM_EINVAL,
                      "hll sketch: wrong magic byte 0x%02x (expected 0x%02x)", p[0],
                      MM_HLL_MAGIC);
  if (p[1] != MM_SKETCH_VERSION)
    return mm_err_set(err, MM_EINVAL, "hll sketch: unsupported version %u", p[1]);
  if (p[2] != MM_HLL_P)
    return mm_err_set(err, MM_EINVAL, "hll sketch: precision %u (expected %u)", p[2],
                      MM_HLL_P);
  if (p[3] == 0) {
    if (len < HLL_HEAD + 2)
      return mm_err_set(err, MM_EINVAL, "hll sketch: sparse header truncated");
    unsigned n = get_u16(p + HLL_HEAD);
    size_t want = HLL_HEAD + 2 + 3 * (size_t)n;
    if (n > MM_HLL_REGISTERS || len != want)
      return mm_err_set(err, MM_EINVAL,
                        "hll sketch: wrong length %zu for %u sparse entries "
                        "(expected %zu)",
                        len, n, want);
    const uint8_t *e = p + HLL_HEAD + 2;
    long prev = -1;
    for (unsigned k = 0; k < n; k++, e += 3) {
      unsigned idx = get_u16(e), rank = e[2];
      if (idx >= MM_HLL_REGISTERS || (long)idx <= prev) {
        mm_hll_init(h);
        return mm_err_set(err, MM_EINVAL,
                          "hll sketch: sparse entry %u has register %u (out of "
                          "range or not ascending)",
                          k, idx);
      }
      if (rank < 1 || rank > MM_HLL_MAX_RANK) {
        mm_hll_init(h);
        return mm_err_set(err, MM_EINVAL,
                          "hll sketch: register %u has rank %u (expected 1..%u)", idx,
                          rank, MM_HLL_MAX_RANK);
      }
      h->reg[idx] = (uint8_t)rank;
      prev = idx;
    }
    return 0;
  }
  if (p[3] != 1)
    return mm_err_set(err, MM_EINVAL, "hll sketch: unknown encoding %u", p[3]);
  if (len != HLL_HEAD + HLL_DENSE_BYTES)
    return mm_err_set(err, MM_EINVAL,
                      "hll sketch: wrong length %zu for the dense encoding "
                      "(expected %d)",
                      len, HLL_HEAD + HLL_DENSE_BYTES);
  const uint8_t *d = p + HLL_HEAD;
  for (unsigned i = 0; i < MM_HLL_REGISTERS; i += 4, d += 3) {
    uint32_t v = (uint32_t)d[0] << 16 | (uint32_t)d[1] << 8 | d[2];
    for (unsigned j = 0; j < 4; j++) {
      unsigned rank = (v >> (18 - 6 * j)) & 63;
      if (rank > MM_HLL_MAX_RANK) {
        mm_hll_init(h);
        return mm_err_set(err, MM_EINVAL,
                          "hll sketch: register %u has rank %u (expected 0..%u)",
                          i + j, rank, MM_HLL_MAX_RANK);
      }
      h->reg[i + j] = (uint8_t)rank;
    }
  }
  return 0;
}

/* ------------------------------------------------------------------ */
/* top-k                                                                */
/* ------------------------------------------------------------------ */

/* Bytewise order of items: memcmp on the common prefix, then shorter first. */
static int item_cmp(const char *a, size_t alen, const char *b, size_t blen) {
  size_t n = alen < blen ? alen : blen;
  int c = n ? memcmp(a, b, n) : 0;
  if (c) return c < 0 ? -1 : 1;
  return alen < blen ? -1 : alen > blen;
}

/* The counter order: count descending, then item ascending. */
static int counter_cmp(const mm_topk_counter_t *a, const mm_topk_counter_t *b) {
  if (a->count != b->count) return a->count > b->count ? -1 : 1;
  return item_cmp(a->item, a->len, b->item, b->len);
}

static int counter_qsort(const void *a, const void *b) { return counter_cmp(a, b); }

/* NUL-terminated heap copy of len bytes, or NULL. */
static char *dup_bytes(const void *p, size_t len) {
  char *s = malloc(len + 1);
  if (!s) return NULL;
  if (len) memcpy(s, p, len);
  s[len] = '\0';
  return s;
}

void mm_topk_init(mm_topk_t *t) { memset(t, 0, sizeof *t); }

void mm_topk_free(mm_topk_t *t) {
  for (size_t i = 0; i < t->n && i < MM_TOPK_CAPACITY; i++) free(t->c[i].item);
  mm_topk_init(t);
}

/* Moves counter i towards the front until the order holds again (its
 * count only ever grows). */
static void bubble_up(mm_topk_t *t, size_t i) {
  while (i > 0 && counter_cmp(&t->c[i], &t->c[i - 1]) < 0) {
    mm_topk_counter_t tmp = t->c[i];
    t->c[i] = t->c[i - 1];
    t->c[i - 1] = tmp;
    i--;
  }
}

size_t mm_topk_top(const mm_topk_t *t, size_t k) { return k < t->n ? k : t->n; }

/*
 * Space-Saving update: an item with a counter gains weight; otherwise it
 * takes a free counter, or replaces the last (smallest) counter and
 * inherits its count as both floor and error bound.
 */
int mm_topk_add(mm_topk_t *t, const void *item, size_t len, uint64_t weight,
                mm_err_t *err) {
  if (len > MM_TOPK_ITEM_MAX)
    return mm_err_set(err, MM_EINVAL, "topk item of %zu bytes is longer than %d", len,
                      MM_TOPK_ITEM_MAX);
  if (weight == 0) return mm_err_set(err, MM_EINVAL, "topk weight must be at least 1");
  if (t->total > UINT64_MAX - weight)
    return mm_err_set(err, MM_EINVAL, "topk total weight overflows 64 bits");
  for (size_t i = 0; i < t->n; i++) {
    if (item_cmp(t->c[i].item, t->c[i].len, item, len) != 0) continue;
    t->c[i].count += weight; /* count <= total, so this cannot overflow */
    t->total += weight;
    bubble_up(t, i);
    return 0;
  }
  char *copy = dup_bytes(item, len);
  if (!copy) return mm_err_set(err, MM_ENOMEM, "out of memory adding a topk item");
  size_t i;
  if (t->n < MM_TOPK_CAPACITY) {
    i = t->n++;
    t->c[i].count = weight;
    t->c[i].err = 0;
  } else {
    i = t->n - 1;
    free(t->c[i].item);
    t->c[i].err = t->c[i].count;
    t->c[i].count += weight;
  }
  t->c[i].item = copy;
  t->c[i].len = len;
  t->total += weight;
  bubble_up(t, i);
  return 0;
}

/*
 * Mergeable Space-Saving: every item of either sketch gets count
 * cA + cB and err eA + eB, where a sketch that does not hold the item
 * contributes its minimum count as both (0 unless it is full, since a
 * non-full sketch has seen every item it was given). The result keeps the
 * MM_TOPK_CAPACITY largest counters in the usual order.
 */
int mm_topk_merge(mm_topk_t *dst, const mm_topk_t *src, mm_err_t *err) {
  const size_t cap = MM_TOPK_CAPACITY;
  uint64_t min_d = dst->n == cap ? dst->c[cap - 1].count : 0;
  uint64_t min_s = src->n == cap ? src->c[cap - 1].count : 0;
  mm_topk_counter_t all[2 * MM_TOPK_CAPACITY];
  size_t n = 0;
  int rc = 0;
  if (dst->total > UINT64_MAX - src->total)
    return mm_err_set(err, MM_EINVAL, "topk total weight overflows 64 bits");
  for (size_t i = 0; i < dst->n; i++) {
    all[n] = dst->c[i];
    all[n].item = NULL;
    uint64_t c = min_s, e = min_s;
    for (size_t j = 0; j < src->n; j++)
      if (item_cmp(dst->c[i].item, dst->c[i].len, src->c[j].item, src->c[j].len) == 0) {
        c = src->c[j].count;
        e = src->c[j].err;
        break;
      }
    all[n].count += c;
    all[n].err += e;
    all[n].item = dup_bytes(dst->c[i].item, dst->c[i].len);
    if (!all[n++].item) goto nomem;
  }
  for (size_t j = 0; j < src->n; j++) {
    int found = 0;
    for (size_t i = 0; i < dst->n && !found; i++)
      found = item_cmp(dst->c[i].item, dst->c[i].len, src->c[j].item, src->c[j].len) == 0;
    if (found) continue;
    all[n] = src->c[j];
    all[n].count += min_d;
    all[n].err += min_d;
    all[n].item = dup_bytes(src->c[j].item, src->c[j].len);
    if (!all[n++].item) goto nomem;
  }
  qsort(all, n, sizeof all[0], counter_qsort);
  uint64_t total = dst->total + src->total;
  mm_topk_free(dst);
  dst->total = total;
  dst->n = n < cap ? n : cap;
  memcpy(dst->c, all, dst->n * sizeof all[0]);
  for (size_t i = dst->n; i < n; i++) free(all[i].item);
  return 0;
nomem:
  for (size_t i = 0; i < n; i++) free(all[i].item);
  rc = mm_err_set(err, MM_ENOMEM, "out of memory merging topk sketches");
  return rc;
}

/* Header, then the counters in their sorted order (sketch.h, version 1).
 * Reserves the exact size first so the appends cannot fail half-way. */
int mm_topk_serialize(const mm_topk_t *t, mm_buf_t *out) {
  uint8_t head[TOPK_HEAD] = {MM_TOPK_MAGIC, MM_SKETCH_VERSION};
  put_u16(head + 2, MM_TOPK_CAPACITY);
  put_u16(head + 4, (unsigned)t->n);
  put_u64(head + 6, t->total);
  size_t need = sizeof head;
  for (size_t i = 0; i < t->n; i++) need += TOPK_ENTRY + t->c[i].len;
  if (mm_buf_reserve(out, need)) return MM_ENOMEM;
  mm_buf_add(out, head, sizeof head);
  for (size_t i = 0; i < t->n; i++) {
    uint8_t e[TOPK_ENTRY];
    put_u64(e, t->c[i].count);
    put_u64(e + 8, t->c[i].err);
    put_u16(e + 16, (unsigned)t->c[i].len);
    mm_buf_add(out, e, sizeof e);
    mm_buf_add(out, t->c[i].item, t->c[i].len);
  }
  return mm_buf_failed(out) ? MM_ENOMEM : 0;
}

/*
 * Reads every counter, checking lengths as it goes, then the invariants
 * that any sketch this code writes satisfies (see sketch.h); a violation
 * means the bytes were damaged or written by something else.
 */
int mm_topk_parse(mm_topk_t *t, const void *bytes, size_t len, mm_err_t *err) {
  const uint8_t *p = bytes;
  int rc = 0;
  mm_topk_init(t);
  if (len < TOPK_HEAD)
    return mm_err_set(err, MM_EINVAL, "topk sketch: %zu bytes is too short for a header",
                      len);
  if (p[0] != MM_TOPK_MAGIC)
    return mm_err_set(err, MM_EINVAL,
                      "topk sketch: wrong magic byte 0x%02x (expected 0x%02x)", p[0],
                      MM_TOPK_MAGIC);
  if (p[1] != MM_SKETCH_VERSION)
    return mm_err_set(err, MM_EINVAL, "topk sketch: unsupported version %u", p[1]);
  unsigned cap = get_u16(p + 2), n = get_u16(p + 4);
  if (cap != MM_TOPK_CAPACITY)
    return mm_err_set(err, MM_EINVAL, "topk sketch: capacity %u (expected %d)", cap,
                      MM_TOPK_CAPACITY);
  if (n > cap)
    return mm_err_set(err, MM_EINVAL, "topk sketch: %u counters exceed capacity %u", n,
                      cap);
  uint64_t total = get_u64(p + 6), sum = 0;
  int sum_overflow = 0;
  size_t off = TOPK_HEAD;
  t->total = total;
  for (unsigned i = 0; i < n; i++) {
    if (len - off < TOPK_ENTRY) {
      rc = mm_err_set(err, MM_EINVAL, "topk sketch: wrong length %zu (counter %u truncated)",
                      len, i);
      goto fail;
    }
    mm_topk_counter_t *c = &t->c[i];
    c->count = get_u64(p + off);
    c->err = get_u64(p + off + 8);
    c->len = get_u16(p + off + 16);
    off += TOPK_ENTRY;
    if (c->len > MM_TOPK_ITEM_MAX || len - off < c->len) {
      rc = mm_err_set(err, MM_EINVAL,
                      "topk sketch: wrong length %zu (item %u of %zu bytes truncated or "
                      "too long)",
                      len, i, c->len);
      goto fail;
    }
    c->item = dup_bytes(p + off, c->len);
    if (!c->item) {
      rc = mm_err_set(err, MM_ENOMEM, "out of memory reading a topk sketch");
      goto fail;
    }
    t->n = i + 1;
    off += c->len;
    if (c->count == 0 || c->count > total || c->err >= c->count) {
      rc = mm_err_set(err, MM_EINVAL,
                      "topk sketch: corrupt counts in counter %u (count %llu, err %llu, "
                      "total %llu)",
                      i, (unsigned long long)c->count, (unsigned long long)c->err,
                      (unsigned long long)total);
      goto fail;
    }
    if (i > 0 && counter_cmp(&t->c[i - 1], c) >= 0) {
      rc = mm_err_set(err, MM_EINVAL, "topk sketch: counter %u is out of order", i);
      goto fail;
    }
    for (unsigned j = 0; j < i; j++)
      if (item_cmp(t->c[j].item, t->c[j].len, c->item, c->len) == 0) {
        rc = mm_err_set(err, MM_EINVAL, "topk sketch: counters %u and %u hold the same item",
                        j, i);
        goto fail;
      }
    if (sum > UINT64_MAX - c->count) sum_overflow = 1;
    sum += c->count;
  }
  if (off != len) {
    rc = mm_err_set(err, MM_EINVAL, "topk sketch: wrong length %zu (%zu bytes of counters)",
                    len, off);
    goto fail;
  }
  if (n < cap && (sum_overflow || sum != total)) {
    rc = mm_err_set(err, MM_EINVAL,
                    "topk sketch: corrupt counts (a sketch with free counters must count "
                    "exactly its total %llu)",
                    (unsigned long long)total);
    goto fail;
  }
  return 0;
fail:
  mm_topk_free(t);
  return rc;
}

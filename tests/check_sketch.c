/*
 * check_sketch.c - HyperLogLog and Space-Saving top-k (sketch.h).
 *
 * Accuracy is checked against the documented standard error on
 * deterministic item sets; merge against the sketch of the union;
 * Space-Saving against exact counts of a skewed stream (its bounds
 * count - err <= true <= count must hold for every counter); the byte
 * formats by round trips and by corrupting every field.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "sketch.h"
#include "testutil.h"

/* Deterministic generator (SplitMix64). */
static uint64_t rng_state;
static uint64_t rnd(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static size_t item_name(char *buf, const char *prefix, unsigned long i) {
  return (size_t)snprintf(buf, 64, "%s-%lu", prefix, i);
}

static void hll_add_range(mm_hll_t *h, const char *prefix, unsigned long from,
                          unsigned long to) {
  char buf[64];
  for (unsigned long i = from; i < to; i++) mm_hll_add(h, buf, item_name(buf, prefix, i));
}

/* Serialises into a fresh buffer the caller frees. */
static mm_buf_t hll_bytes(const mm_hll_t *h) {
  mm_buf_t b = MM_BUF_INIT;
  ck_assert_int_eq(mm_hll_serialize(h, &b), 0);
  return b;
}

static mm_buf_t topk_bytes(const mm_topk_t *t) {
  mm_buf_t b = MM_BUF_INIT;
  ck_assert_int_eq(mm_topk_serialize(t, &b), 0);
  return b;
}

/* ---- hash ---- */

/* Known answers, computed independently (FNV-1a 64 then fmix64): pin the
 * hash because stored sketches depend on it. */
START_TEST(test_hash_known_answers) {
  ck_assert(mm_sketch_hash("", 0) == 0xefd01f60ba992926ULL);
  ck_assert(mm_sketch_hash("a", 1) == 0x82a2a958a9bece5bULL);
  ck_assert(mm_sketch_hash("murmur", 6) == 0x145a6b05a7cbf857ULL);
  ck_assert(mm_sketch_hash("1.5", 3) == 0xfe4e65760b332d12ULL);
  /* bytes after a NUL count */
  ck_assert(mm_sketch_hash("a\0b", 3) != mm_sketch_hash("a\0c", 3));
}
END_TEST

/* The top 12 bits (register choice) are spread evenly over sequential
 * keys: no register gets more than 3x its share. */
START_TEST(test_hash_spread) {
  static unsigned hits[MM_HLL_REGISTERS];
  char buf[64];
  memset(hits, 0, sizeof hits);
  const unsigned long n = 40960;
  for (unsigned long i = 0; i < n; i++)
    hits[mm_sketch_hash(buf, item_name(buf, "k", i)) >> (64 - MM_HLL_P)]++;
  unsigned max = 0, empty = 0;
  for (unsigned i = 0; i < MM_HLL_REGISTERS; i++) {
    if (hits[i] > max) max = hits[i];
    empty += hits[i] == 0;
  }
  ck_assert_uint_le(max, 30); /* share is 10 */
  ck_assert_uint_lt(empty, 10); /* Poisson(10): P(0) = 4.5e-5 */
}
END_TEST

/* ---- HyperLogLog ---- */

static void check_estimate(unsigned long n, const char *prefix) {
  mm_hll_t h;
  mm_hll_init(&h);
  hll_add_range(&h, prefix, 0, n);
  double est = mm_hll_estimate(&h);
  double se = 1.04 / sqrt((double)MM_HLL_REGISTERS);
  double rel = fabs(est - (double)n) / (double)n;
  ck_assert_msg(rel <= 3 * se, "n=%lu estimate %.1f (error %.2f%%, 3 SE = %.2f%%)", n, est,
                100 * rel, 300 * se);
}

START_TEST(test_hll_empty) {
  mm_hll_t h;
  mm_hll_init(&h);
  ck_assert(mm_hll_estimate(&h) == 0.0);
  mm_hll_add(&h, "x", 1);
  double e = mm_hll_estimate(&h);
  ck_assert_msg(e > 0.9 && e < 1.1, "one item: %f", e);
}
END_TEST

START_TEST(test_hll_small_counts_exactish) {
  /* below a few hundred items the estimator behaves like linear counting,
   * whose standard deviation is sqrt(m (e^t - t - 1)) for t = n/m: within
   * 3 of those, plus one */
  static const unsigned long ns[] = {1, 2, 10, 50, 100, 300};
  for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
    mm_hll_t h;
    mm_hll_init(&h);
    hll_add_range(&h, "small", 0, ns[i]);
    double e = mm_hll_estimate(&h);
    double m = MM_HLL_REGISTERS, t = (double)ns[i] / m;
    double sd = sqrt(m * (exp(t) - t - 1.0));
    ck_assert_msg(fabs(e - (double)ns[i]) <= 3 * sd + 1.0, "n=%lu est %f (sd %f)", ns[i], e,
                  sd);
  }
}
END_TEST

START_TEST(test_hll_1k) { check_estimate(1000, "user"); }
END_TEST

START_TEST(test_hll_10k_transition) { check_estimate(10000, "order"); }
END_TEST

START_TEST(test_hll_100k) { check_estimate(100000, "session"); }
END_TEST

START_TEST(test_hll_readding_is_idempotent) {
  mm_hll_t h;
  mm_hll_init(&h);
  hll_add_range(&h, "id", 0, 1000);
  mm_buf_t once = hll_bytes(&h);
  double e1 = mm_hll_estimate(&h);
  hll_add_range(&h, "id", 0, 1000);
  hll_add_range(&h, "id", 500, 700);
  mm_buf_t twice = hll_bytes(&h);
  ck_assert_uint_eq(once.len, twice.len);
  ck_assert(memcmp(once.data, twice.data, once.len) == 0);
  ck_assert(mm_hll_estimate(&h) == e1);
  mm_buf_free(&once);
  mm_buf_free(&twice);
}
END_TEST

START_TEST(test_hll_merge_is_union) {
  mm_hll_t a, b, all;
  mm_hll_init(&a);
  mm_hll_init(&b);
  mm_hll_init(&all);
  hll_add_range(&a, "m", 0, 60000);
  hll_add_range(&b, "m", 40000, 100000);
  hll_add_range(&all, "m", 0, 100000);
  mm_hll_merge(&a, &b);
  ck_assert(memcmp(a.reg, all.reg, sizeof a.reg) == 0);
  mm_buf_t x = hll_bytes(&a), y = hll_bytes(&all);
  ck_assert_uint_eq(x.len, y.len);
  ck_assert(memcmp(x.data, y.data, x.len) == 0);
  /* merging is idempotent and commutative */
  mm_hll_merge(&a, &b);
  ck_assert(memcmp(a.reg, all.reg, sizeof a.reg) == 0);
  mm_hll_t c;
  mm_hll_init(&c);
  hll_add_range(&c, "m", 40000, 100000);
  mm_hll_t d;
  mm_hll_init(&d);
  hll_add_range(&d, "m", 0, 60000);
  mm_hll_merge(&c, &d);
  ck_assert(memcmp(c.reg, all.reg, sizeof c.reg) == 0);
  double e = mm_hll_estimate(&a);
  ck_assert_msg(fabs(e - 100000) / 100000 <= 3 * 1.04 / 64, "union estimate %f", e);
  mm_buf_free(&x);
  mm_buf_free(&y);
}
END_TEST

START_TEST(test_hll_roundtrip_sparse_and_dense) {
  static const unsigned long ns[] = {0, 1, 100, 1200, 1500, 50000};
  int saw_sparse = 0, saw_dense = 0;
  for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
    mm_hll_t h, back;
    mm_hll_init(&h);
    hll_add_range(&h, "rt", 0, ns[i]);
    mm_buf_t b = hll_bytes(&h);
    const uint8_t *p = (const uint8_t *)b.data;
    ck_assert_uint_eq(p[0], 'H');
    ck_assert_uint_eq(p[1], 1);
    ck_assert_uint_eq(p[2], 12);
    unsigned nz = 0;
    for (unsigned r = 0; r < MM_HLL_REGISTERS; r++) nz += h.reg[r] != 0;
    if (p[3] == 0) {
      saw_sparse = 1;
      ck_assert_uint_le(nz, MM_HLL_SPARSE_MAX);
      ck_assert_uint_eq(b.len, 6 + 3 * (size_t)nz);
    } else {
      saw_dense = 1;
      ck_assert_uint_gt(nz, MM_HLL_SPARSE_MAX);
      ck_assert_uint_eq(b.len, 4 + 3072);
    }
    mm_err_t e;
    ck_assert_int_eq(mm_hll_parse(&back, b.data, b.len, &e), 0);
    ck_assert(memcmp(back.reg, h.reg, sizeof h.reg) == 0);
    mm_buf_free(&b);
  }
  ck_assert(saw_sparse && saw_dense);
}
END_TEST

/* A dense encoding of a sketch with few registers (written by another
 * writer) is accepted and re-serialises in the canonical sparse form. */
START_TEST(test_hll_parse_dense_of_small_sketch) {
  uint8_t buf[4 + 3072];
  memset(buf, 0, sizeof buf);
  buf[0] = 'H';
  buf[1] = 1;
  buf[2] = 12;
  buf[3] = 1;
  /* register 0 = 5, register 3 = 53: first 3-byte group */
  uint32_t v = 5u << 18 | 53u;
  buf[4] = (uint8_t)(v >> 16);
  buf[5] = (uint8_t)(v >> 8);
  buf[6] = (uint8_t)v;
  mm_hll_t h;
  mm_err_t e;
  ck_assert_int_eq(mm_hll_parse(&h, buf, sizeof buf, &e), 0);
  ck_assert_uint_eq(h.reg[0], 5);
  ck_assert_uint_eq(h.reg[1], 0);
  ck_assert_uint_eq(h.reg[3], 53);
  mm_buf_t b = hll_bytes(&h);
  ck_assert_uint_eq(b.len, 6 + 2 * 3);
  ck_assert_uint_eq((uint8_t)b.data[3], 0);
  mm_buf_free(&b);
}
END_TEST

/* Every register at the largest rank (only a crafted sketch gets there):
 * the estimate stays finite. */
START_TEST(test_hll_saturated_is_finite) {
  mm_hll_t h;
  memset(h.reg, MM_HLL_MAX_RANK, sizeof h.reg);
  double e = mm_hll_estimate(&h);
  ck_assert(isfinite(e));
  ck_assert(e == 0x1p64);
  mm_buf_t b = hll_bytes(&h);
  mm_hll_t back;
  mm_err_t err;
  ck_assert_int_eq(mm_hll_parse(&back, b.data, b.len, &err), 0);
  ck_assert(mm_hll_estimate(&back) == e);
  mm_buf_free(&b);
}
END_TEST

static void expect_hll_reject(const void *p, size_t n, const char *want) {
  mm_hll_t h;
  mm_err_t e;
  mm_err_clear(&e);
  ck_assert_int_eq(mm_hll_parse(&h, p, n, &e), MM_EINVAL);
  ck_assert_msg(strncmp(e.msg, "hll sketch: ", 12) == 0, "%s", e.msg);
  ck_assert_msg(strstr(e.msg, want) != NULL, "want \"%s\" in: %s", want, e.msg);
  /* a rejected parse leaves an empty sketch, never half of one */
  for (unsigned i = 0; i < MM_HLL_REGISTERS; i++) ck_assert_uint_eq(h.reg[i], 0);
}

START_TEST(test_hll_rejects_corruption) {
  mm_hll_t h;
  mm_hll_init(&h);
  hll_add_range(&h, "c", 0, 20);
  mm_buf_t sp = hll_bytes(&h);
  hll_add_range(&h, "c", 0, 20000);
  mm_buf_t de = hll_bytes(&h);
  uint8_t *s = (uint8_t *)sp.data, *d = (uint8_t *)de.data;
  uint8_t tmp[4 + 3072 + 8];

  expect_hll_reject(s, 0, "too short");
  expect_hll_reject(s, 3, "too short");
  memcpy(tmp, s, sp.len);
  tmp[0] = 'T';
  expect_hll_reject(tmp, sp.len, "wrong magic byte 0x54");
  memcpy(tmp, s, sp.len);
  tmp[1] = 2;
  expect_hll_reject(tmp, sp.len, "unsupported version 2");
  memcpy(tmp, s, sp.len);
  tmp[2] = 14;
  expect_hll_reject(tmp, sp.len, "precision 14");
  memcpy(tmp, s, sp.len);
  tmp[3] = 7;
  expect_hll_reject(tmp, sp.len, "unknown encoding 7");
  /* sparse: truncated, extra byte, wrong count */
  expect_hll_reject(s, sp.len - 1, "wrong length");
  memcpy(tmp, s, sp.len);
  tmp[sp.len] = 0;
  expect_hll_reject(tmp, sp.len + 1, "wrong length");
  memcpy(tmp, s, sp.len);
  tmp[5]++;
  expect_hll_reject(tmp, sp.len, "wrong length");
  /* sparse: entries out of order, index out of range, bad rank */
  memcpy(tmp, s, sp.len);
  memcpy(tmp + 9, s + 6, 3); /* entry 1 := entry 0: not ascending */
  expect_hll_reject(tmp, sp.len, "not ascending");
  memcpy(tmp, s, sp.len);
  tmp[6] = 0x10; /* index 4096+ */
  expect_hll_reject(tmp, sp.len, "out of range");
  memcpy(tmp, s, sp.len);
  tmp[8] = 54;
  expect_hll_reject(tmp, sp.len, "rank 54");
  memcpy(tmp, s, sp.len);
  tmp[8] = 0;
  expect_hll_reject(tmp, sp.len, "rank 0");
  /* dense: wrong length, rank > 53 */
  ck_assert_uint_eq((uint8_t)d[3], 1);
  expect_hll_reject(d, de.len - 1, "dense");
  memcpy(tmp, d, de.len);
  tmp[de.len] = 0;
  expect_hll_reject(tmp, de.len + 1, "dense");
  memcpy(tmp, d, de.len);
  tmp[4] = 0xFF; /* register 0 = 63 */
  expect_hll_reject(tmp, de.len, "rank 63");
  /* the untouched bytes still parse */
  mm_err_t e;
  ck_assert_int_eq(mm_hll_parse(&h, s, sp.len, &e), 0);
  ck_assert_int_eq(mm_hll_parse(&h, d, de.len, &e), 0);
  mm_buf_free(&sp);
  mm_buf_free(&de);
}
END_TEST

/* ---- top-k ---- */

/* A skewed stream: heavy item i (i < NHEAVY) appears heavy_count(i)
 * times, interleaved with NLIGHT distinct items appearing once or twice. */
#define NHEAVY 8
#define NLIGHT 6000
static unsigned heavy_count(int i) { return 1200 - 120 * (unsigned)i; }

typedef struct {
  char name[32];
  size_t len;
  uint64_t truth;
} truth_t;

static truth_t truths[NHEAVY + NLIGHT];

/* Builds the stream order deterministically; returns its length. Each
 * element is an index into truths. */
static size_t make_stream(unsigned *order, size_t cap) {
  size_t n = 0;
  for (int i = 0; i < NHEAVY; i++) {
    truths[i].len = (size_t)snprintf(truths[i].name, sizeof truths[i].name, "heavy-%d", i);
    truths[i].truth = 0;
    for (unsigned k = 0; k < heavy_count(i); k++) order[n++] = (unsigned)i;
  }
  for (int j = 0; j < NLIGHT; j++) {
    truth_t *t = &truths[NHEAVY + j];
    t->len = (size_t)snprintf(t->name, sizeof t->name, "light-%d", j);
    t->truth = 0;
    order[n++] = (unsigned)(NHEAVY + j);
    if (j % 3 == 0) order[n++] = (unsigned)(NHEAVY + j);
  }
  ck_assert_uint_le(n, cap);
  rng_state = 99;
  for (size_t i = n - 1; i > 0; i--) { /* Fisher-Yates shuffle */
    size_t j = (size_t)(rnd() % (i + 1));
    unsigned x = order[i];
    order[i] = order[j];
    order[j] = x;
  }
  return n;
}

static uint64_t truth_of(const char *item, size_t len) {
  for (size_t i = 0; i < NHEAVY + NLIGHT; i++)
    if (truths[i].len == len && memcmp(truths[i].name, item, len) == 0) return truths[i].truth;
  return 0;
}

/* Every counter bounds its item's true weight, the order holds, and the
 * counts sum to at least the total. */
static void check_bounds(const mm_topk_t *t) {
  for (size_t i = 0; i < t->n; i++) {
    uint64_t tr = truth_of(t->c[i].item, t->c[i].len);
    ck_assert_msg(t->c[i].count >= tr && t->c[i].count - t->c[i].err <= tr,
                  "%s: count %llu err %llu truth %llu", t->c[i].item,
                  (unsigned long long)t->c[i].count, (unsigned long long)t->c[i].err,
                  (unsigned long long)tr);
    if (i)
      ck_assert(t->c[i - 1].count > t->c[i].count ||
                (t->c[i - 1].count == t->c[i].count &&
                 strcmp(t->c[i - 1].item, t->c[i].item) < 0));
  }
}

/* The top NHEAVY are the heavy items, in order of their true weight. */
static void check_heavy_found(const mm_topk_t *t) {
  ck_assert_uint_eq(mm_topk_top(t, NHEAVY), NHEAVY);
  for (int i = 0; i < NHEAVY; i++) {
    ck_assert_msg(strcmp(t->c[i].item, truths[i].name) == 0, "rank %d is %s, want %s", i,
                  t->c[i].item, truths[i].name);
  }
}

static unsigned stream[NHEAVY * 1200 + 2 * NLIGHT];

START_TEST(test_topk_heavy_hitters) {
  size_t n = make_stream(stream, sizeof stream / sizeof stream[0]);
  mm_topk_t t;
  mm_err_t e;
  mm_topk_init(&t);
  for (size_t i = 0; i < n; i++) {
    truth_t *x = &truths[stream[i]];
    x->truth++;
    ck_assert_int_eq(mm_topk_add(&t, x->name, x->len, 1, &e), 0);
  }
  ck_assert_uint_eq(t.total, n);
  ck_assert_uint_eq(t.n, MM_TOPK_CAPACITY);
  check_bounds(&t);
  check_heavy_found(&t);
  /* heavy counts are close: error bounded by total / capacity */
  for (int i = 0; i < NHEAVY; i++)
    ck_assert_uint_le(t.c[i].count - heavy_count(i), n / MM_TOPK_CAPACITY);
  /* determinism: the same stream gives the same bytes */
  mm_topk_t u;
  mm_topk_init(&u);
  for (size_t i = 0; i < n; i++)
    ck_assert_int_eq(mm_topk_add(&u, truths[stream[i]].name, truths[stream[i]].len, 1, &e), 0);
  mm_buf_t x = topk_bytes(&t), y = topk_bytes(&u);
  ck_assert_uint_eq(x.len, y.len);
  ck_assert(memcmp(x.data, y.data, x.len) == 0);
  mm_buf_free(&x);
  mm_buf_free(&y);
  mm_topk_free(&u);
  mm_topk_free(&t);
}
END_TEST

START_TEST(test_topk_merge_halves) {
  size_t n = make_stream(stream, sizeof stream / sizeof stream[0]);
  mm_topk_t a, b;
  mm_err_t e;
  mm_topk_init(&a);
  mm_topk_init(&b);
  for (size_t i = 0; i < n; i++) {
    truth_t *x = &truths[stream[i]];
    x->truth++;
    ck_assert_int_eq(mm_topk_add(i % 2 ? &b : &a, x->name, x->len, 1, &e), 0);
  }
  ck_assert_int_eq(mm_topk_merge(&a, &b, &e), 0);
  ck_assert_uint_eq(a.total, n);
  ck_assert_uint_eq(a.n, MM_TOPK_CAPACITY);
  check_bounds(&a);
  check_heavy_found(&a);
  /* the merged sketch survives its byte format */
  mm_buf_t bytes = topk_bytes(&a);
  mm_topk_t back;
  ck_assert_int_eq(mm_topk_parse(&back, bytes.data, bytes.len, &e), 0);
  mm_buf_t again = topk_bytes(&back);
  ck_assert_uint_eq(bytes.len, again.len);
  ck_assert(memcmp(bytes.data, again.data, bytes.len) == 0);
  mm_buf_free(&bytes);
  mm_buf_free(&again);
  mm_topk_free(&back);
  mm_topk_free(&a);
  mm_topk_free(&b);
}
END_TEST

/* Two sketches that never evicted merge exactly. */
START_TEST(test_topk_merge_exact_when_not_full) {
  mm_topk_t a, b;
  mm_err_t e;
  mm_topk_init(&a);
  mm_topk_init(&b);
  ck_assert_int_eq(mm_topk_add(&a, "x", 1, 5, &e), 0);
  ck_assert_int_eq(mm_topk_add(&a, "y", 1, 2, &e), 0);
  ck_assert_int_eq(mm_topk_add(&b, "y", 1, 7, &e), 0);
  ck_assert_int_eq(mm_topk_add(&b, "z", 1, 1, &e), 0);
  ck_assert_int_eq(mm_topk_merge(&a, &b, &e), 0);
  ck_assert_uint_eq(a.n, 3);
  ck_assert_uint_eq(a.total, 15);
  ck_assert_str_eq(a.c[0].item, "y");
  ck_assert_uint_eq(a.c[0].count, 9);
  ck_assert_str_eq(a.c[1].item, "x");
  ck_assert_uint_eq(a.c[1].count, 5);
  ck_assert_str_eq(a.c[2].item, "z");
  ck_assert_uint_eq(a.c[2].count, 1);
  for (int i = 0; i < 3; i++) ck_assert_uint_eq(a.c[i].err, 0);
  /* merging an empty sketch changes nothing */
  mm_topk_t empty;
  mm_topk_init(&empty);
  mm_buf_t before = topk_bytes(&a);
  ck_assert_int_eq(mm_topk_merge(&a, &empty, &e), 0);
  mm_buf_t after = topk_bytes(&a);
  ck_assert_uint_eq(before.len, after.len);
  ck_assert(memcmp(before.data, after.data, before.len) == 0);
  mm_buf_free(&before);
  mm_buf_free(&after);
  mm_topk_free(&a);
  mm_topk_free(&b);
}
END_TEST

START_TEST(test_topk_weights_and_ties) {
  mm_topk_t t;
  mm_err_t e;
  mm_topk_init(&t);
  ck_assert_int_eq(mm_topk_add(&t, "b", 1, 3, &e), 0);
  ck_assert_int_eq(mm_topk_add(&t, "a", 1, 3, &e), 0);
  ck_assert_int_eq(mm_topk_add(&t, "c", 1, 10, &e), 0);
  ck_assert_str_eq(t.c[0].item, "c");
  ck_assert_str_eq(t.c[1].item, "a"); /* tie: bytewise order */
  ck_assert_str_eq(t.c[2].item, "b");
  ck_assert_uint_eq(mm_topk_top(&t, 2), 2);
  ck_assert_uint_eq(mm_topk_top(&t, 10), 3);
  /* items are bytes: an embedded NUL and the empty item are items */
  ck_assert_int_eq(mm_topk_add(&t, "a\0b", 3, 1, &e), 0);
  ck_assert_int_eq(mm_topk_add(&t, "", 0, 1, &e), 0);
  ck_assert_uint_eq(t.n, 5);
  ck_assert_uint_eq(t.total, 18);
  /* rejected adds leave the sketch unchanged */
  ck_assert_int_eq(mm_topk_add(&t, "z", 1, 0, &e), MM_EINVAL);
  ck_assert(strstr(e.msg, "weight"));
  char big[MM_TOPK_ITEM_MAX + 1];
  memset(big, 'q', sizeof big);
  ck_assert_int_eq(mm_topk_add(&t, big, sizeof big, 1, &e), MM_EINVAL);
  ck_assert(strstr(e.msg, "longer than"));
  ck_assert_int_eq(mm_topk_add(&t, big, MM_TOPK_ITEM_MAX, 1, &e), 0);
  ck_assert_int_eq(mm_topk_add(&t, "c", 1, UINT64_MAX - 5, &e), MM_EINVAL);
  ck_assert(strstr(e.msg, "overflow"));
  ck_assert_uint_eq(t.total, 19);
  mm_buf_t b = topk_bytes(&t);
  mm_topk_t back;
  ck_assert_int_eq(mm_topk_parse(&back, b.data, b.len, &e), 0);
  ck_assert_uint_eq(back.n, 6);
  mm_buf_free(&b);
  mm_topk_free(&back);
  mm_topk_free(&t);
  mm_topk_free(&t); /* safe twice */
}
END_TEST

/* Eviction: the smallest counter (ties: greatest item) is replaced and
 * its count becomes the newcomer's error. */
START_TEST(test_topk_eviction_rule) {
  mm_topk_t t;
  mm_err_t e;
  char name[16];
  mm_topk_init(&t);
  for (int i = 0; i < MM_TOPK_CAPACITY; i++) {
    int n = snprintf(name, sizeof name, "i%02d", i);
    ck_assert_int_eq(mm_topk_add(&t, name, (size_t)n, i < 10 ? 5 : 2, &e), 0);
  }
  ck_assert_str_eq(t.c[MM_TOPK_CAPACITY - 1].item, "i63");
  ck_assert_int_eq(mm_topk_add(&t, "new", 3, 1, &e), 0);
  ck_assert_uint_eq(t.n, MM_TOPK_CAPACITY);
  int found = 0;
  for (size_t i = 0; i < t.n; i++) {
    ck_assert_str_ne(t.c[i].item, "i63");
    if (strcmp(t.c[i].item, "new") == 0) {
      found = 1;
      ck_assert_uint_eq(t.c[i].count, 3);
      ck_assert_uint_eq(t.c[i].err, 2);
      ck_assert_uint_eq(i, 10); /* below the ten 5s, above the 2s */
    }
  }
  ck_assert(found);
  mm_topk_free(&t);
}
END_TEST

/* Builds a small valid sketch's bytes for corruption tests. */
static mm_buf_t small_topk(void) {
  mm_topk_t t;
  mm_err_t e;
  mm_topk_init(&t);
  ck_assert_int_eq(mm_topk_add(&t, "aa", 2, 5, &e), 0);
  ck_assert_int_eq(mm_topk_add(&t, "b", 1, 3, &e), 0);
  ck_assert_int_eq(mm_topk_add(&t, "c", 1, 1, &e), 0);
  mm_buf_t b = topk_bytes(&t);
  mm_topk_free(&t);
  return b;
}

static void expect_topk_reject(const void *p, size_t n, const char *want) {
  mm_topk_t t;
  mm_err_t e;
  mm_err_clear(&e);
  ck_assert_int_eq(mm_topk_parse(&t, p, n, &e), MM_EINVAL);
  ck_assert_msg(strncmp(e.msg, "topk sketch: ", 13) == 0, "%s", e.msg);
  ck_assert_msg(strstr(e.msg, want) != NULL, "want \"%s\" in: %s", want, e.msg);
  ck_assert_uint_eq(t.n, 0);
  mm_topk_free(&t);
}

START_TEST(test_topk_rejects_corruption) {
  mm_buf_t b = small_topk();
  /* layout: head 14 bytes; counter 0 at 14 (aa, 5), 1 at 34 (b, 3), 2 at 53 (c, 1) */
  ck_assert_uint_eq(b.len, 14 + 18 + 2 + 18 + 1 + 18 + 1);
  uint8_t t[128];
  const uint8_t *p = (const uint8_t *)b.data;
#define FRESH() memcpy(t, p, b.len)
  expect_topk_reject(p, 5, "too short");
  FRESH();
  t[0] = 'H';
  expect_topk_reject(t, b.len, "wrong magic byte 0x48");
  FRESH();
  t[1] = 9;
  expect_topk_reject(t, b.len, "unsupported version 9");
  FRESH();
  t[3] = 32;
  expect_topk_reject(t, b.len, "capacity 32");
  FRESH();
  t[5] = 65;
  expect_topk_reject(t, b.len, "exceed capacity");
  FRESH();
  t[5] = 4;
  expect_topk_reject(t, b.len, "truncated");
  FRESH();
  t[5] = 2;
  expect_topk_reject(t, b.len, "wrong length");
  expect_topk_reject(p, b.len - 1, "truncated");
  FRESH();
  t[b.len] = 'x';
  expect_topk_reject(t, b.len + 1, "wrong length");
  /* counts: zero, above the total, error not below count */
  FRESH();
  t[14 + 7] = 0;
  expect_topk_reject(t, b.len, "corrupt counts");
  FRESH();
  t[14 + 7] = 200;
  expect_topk_reject(t, b.len, "corrupt counts");
  FRESH();
  t[14 + 15] = 5;
  expect_topk_reject(t, b.len, "corrupt counts");
  /* counts that no longer sum to the total of a non-full sketch */
  FRESH();
  t[13] = 10;
  expect_topk_reject(t, b.len, "corrupt counts");
  /* order: counter 1 raised above counter 0 */
  FRESH();
  t[34 + 7] = 6;
  t[13] = 12;
  expect_topk_reject(t, b.len, "out of order");
  /* duplicate item: "c" renamed "b" with an equal count */
  FRESH();
  t[34 + 7] = 1;
  t[13] = 7;
  t[b.len - 1] = 'b';
  expect_topk_reject(t, b.len, "out of order");
  /* item length beyond the limit */
  FRESH();
  t[14 + 16] = 0xff;
  expect_topk_reject(t, b.len, "too long");
  /* the original parses */
  mm_topk_t ok;
  mm_err_t e;
  ck_assert_int_eq(mm_topk_parse(&ok, p, b.len, &e), 0);
  ck_assert_uint_eq(ok.n, 3);
  ck_assert_uint_eq(ok.total, 9);
  mm_topk_free(&ok);
  mm_buf_free(&b);
#undef FRESH
}
END_TEST

/* Distinct items with equal counts but not adjacent are still duplicates. */
START_TEST(test_topk_rejects_duplicate_items) {
  mm_topk_t t;
  mm_err_t e;
  mm_topk_init(&t);
  ck_assert_int_eq(mm_topk_add(&t, "a", 1, 5, &e), 0);
  ck_assert_int_eq(mm_topk_add(&t, "b", 1, 4, &e), 0);
  ck_assert_int_eq(mm_topk_add(&t, "c", 1, 3, &e), 0);
  mm_buf_t b = topk_bytes(&t);
  uint8_t *p = (uint8_t *)b.data;
  p[b.len - 1] = 'a'; /* counter 2 ("c", 3) becomes ("a", 3) */
  expect_topk_reject(p, b.len, "same item");
  mm_buf_free(&b);
  mm_topk_free(&t);
}
END_TEST

Suite *sketch_suite(void) {
  Suite *s = suite_create("sketch");
  TCase *tc = tcase_create("hash");
  tcase_add_test(tc, test_hash_known_answers);
  tcase_add_test(tc, test_hash_spread);
  suite_add_tcase(s, tc);
  tc = tcase_create("hll");
  tcase_add_test(tc, test_hll_empty);
  tcase_add_test(tc, test_hll_small_counts_exactish);
  tcase_add_test(tc, test_hll_1k);
  tcase_add_test(tc, test_hll_10k_transition);
  tcase_add_test(tc, test_hll_100k);
  tcase_add_test(tc, test_hll_readding_is_idempotent);
  tcase_add_test(tc, test_hll_merge_is_union);
  tcase_add_test(tc, test_hll_roundtrip_sparse_and_dense);
  tcase_add_test(tc, test_hll_parse_dense_of_small_sketch);
  tcase_add_test(tc, test_hll_saturated_is_finite);
  tcase_add_test(tc, test_hll_rejects_corruption);
  suite_add_tcase(s, tc);
  tc = tcase_create("topk");
  tcase_add_test(tc, test_topk_heavy_hitters);
  tcase_add_test(tc, test_topk_merge_halves);
  tcase_add_test(tc, test_topk_merge_exact_when_not_full);
  tcase_add_test(tc, test_topk_weights_and_ties);
  tcase_add_test(tc, test_topk_eviction_rule);
  tcase_add_test(tc, test_topk_rejects_corruption);
  tcase_add_test(tc, test_topk_rejects_duplicate_items);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return tu_run_suite(sketch_suite());
}

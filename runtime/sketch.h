/*
 * sketch.h - HyperLogLog and top-k sketches, and their stored bytes.
 *
 * Provides: a HyperLogLog distinct-count sketch (mm_hll_t) and a
 * Space-Saving heavy-hitter sketch (mm_topk_t), each with add, merge,
 * estimate/top list, and a versioned byte format that every store keeps
 * (SQLite blob, memory, DynamoDB binary attribute). Parsing checks the bytes
 * completely and rejects anything malformed with a message, so a corrupt
 * stored value is never merged into. Items are byte strings; callers add a
 * number by its canonical decimal text (decimal.h mm_dec_format).
 * Relies on err.h and buf.h.
 *
 * Ownership: mm_hll_t is a plain value (no heap). mm_topk_t owns its item
 * copies: initialise with mm_topk_init, release with mm_topk_free (which
 * accepts a half-built or already freed sketch).
 *
 * Hash (both sketches use it only for HLL registers): 64-bit FNV-1a over
 * the item bytes, then the MurmurHash3 fmix64 finalizer (both public
 * domain), so every bit of the result depends on every input bit. The bytes
 * of stored sketches depend on this function: never change it without a
 * new format version.
 *
 * HyperLogLog: precision p = 12, m = 4096 registers, 6-bit ranks. The top
 * 12 hash bits pick the register; the rank is 1 + the number of leading
 * zeros of the remaining 52 bits (53 when all are zero). Standard error
 * 1.04/sqrt(4096) = 1.6%. The estimate is Ertl's improved raw estimator
 * ("New cardinality estimation algorithms for HyperLogLog sketches",
 * 2017), which covers small cardinalities (where it behaves like linear
 * counting) and the small/large transition without bias tables.
 *
 * HLL byte format, version 1 (big-endian integers):
 *   byte 0  'H' (0x48)         magic/type
 *   byte 1  1                  version
 *   byte 2  12                 precision p
 *   byte 3  0 sparse | 1 dense encoding
 *   sparse: bytes 4-5  n, the number of nonzero registers (u16);
 *           then n entries of 3 bytes: register index (u16, < 4096,
 *           strictly ascending), rank (1..53). Length 6 + 3n.
 *   dense:  3072 bytes: the 4096 ranks packed 6 bits each, most
 *           significant bit first (4 registers in 3 bytes). Length 3076.
 * Written sparse while n <= MM_HLL_SPARSE_MAX (the sparse form is then
 * smaller), dense otherwise; the choice depends only on the registers, so
 * equal sketches serialise to equal bytes (re-adding an item changes
 * nothing). Either form is accepted when parsing.
 *
 * Top-k: Space-Saving (Metwally, Agrawal, El Abbadi 2005) with
 * MM_TOPK_CAPACITY counters. Each counter holds an item, count (an upper
 * bound of the item's true weight) and err (count - err is a lower bound).
 * Any item whose weight exceeds total/MM_TOPK_CAPACITY is guaranteed to
 * hold a counter. A new item when all counters are taken replaces the
 * smallest counter (ties: the bytewise-greatest item), inheriting its count
 * as err. Merge is the mergeable-summaries rule: an item missing from a
 * full sketch is assumed to have that sketch's minimum count; counts and
 * errors add; the MM_TOPK_CAPACITY largest are kept. Counters are kept
 * sorted by count descending, then item bytewise ascending, so the first K
 * counters are the top K.
 *
 * Top-k byte format, version 1 (big-endian integers):
 *   byte 0    'T' (0x54)        magic/type
 *   byte 1    1                 version
 *   bytes 2-3 capacity (u16, must be MM_TOPK_CAPACITY)
 *   bytes 4-5 n, counters in use (u16, <= capacity)
 *   bytes 6-13 total weight added (u64)
 *   then n counters: count (u64), err (u64), item length (u16,
 *   <= MM_TOPK_ITEM_MAX), item bytes.
 * Parsing requires: exact length, 1 <= count <= total, err < count,
 * counters in the sorted order above, items distinct, and n == capacity or
 * the counts summing to exactly total (a sketch that never evicted).
 */
#ifndef MM_SKETCH_H
#define MM_SKETCH_H

#include <stddef.h>
#include <stdint.h>
#include "buf.h"
#include "err.h"

/* Magic bytes and the format version written. */
#define MM_HLL_MAGIC 0x48
#define MM_TOPK_MAGIC 0x54
#define MM_SKETCH_VERSION 1

/* HyperLogLog precision (registers = 2^p): fixed by the byte format. */
#define MM_HLL_P 12
#define MM_HLL_REGISTERS (1u << MM_HLL_P)
/* Largest rank: 64 - p hash bits left, plus one. */
#define MM_HLL_MAX_RANK (64 - MM_HLL_P + 1)
/* Nonzero registers up to which the sparse encoding is written. */
#define MM_HLL_SPARSE_MAX 1000

/* Space-Saving counters per top-k sketch. */
#define MM_TOPK_CAPACITY 64
/* Longest item (bytes) a top-k sketch keeps; longer items are rejected. */
#define MM_TOPK_ITEM_MAX 1024
/* Entries a query renders (the top K of the MM_TOPK_CAPACITY counters). */
#define MM_TOPK_RENDER 10

/* The 64-bit item hash described above. */
uint64_t mm_sketch_hash(const void *item, size_t len);

/* ---- HyperLogLog ---- */

typedef struct mm_hll {
  uint8_t reg[MM_HLL_REGISTERS];   /* rank per register, 0 = empty */
} mm_hll_t;

void mm_hll_init(mm_hll_t *h);
/* Reads the byte format into h. Malformed bytes are MM_EINVAL with a
 * message starting "hll sketch: ". */
int mm_hll_parse(mm_hll_t *h, const void *bytes, size_t len, mm_err_t *err);
/* Appends h's bytes to out: 0 or MM_ENOMEM. */
int mm_hll_serialize(const mm_hll_t *h, mm_buf_t *out);
void mm_hll_add(mm_hll_t *h, const void *item, size_t len);
/* dst = the sketch of the union of both inputs (register-wise max). */
void mm_hll_merge(mm_hll_t *dst, const mm_hll_t *src);
/* Estimated number of distinct items added: 0 for an empty sketch, at
 * most 2^64 (a sketch with every register saturated). */
double mm_hll_estimate(const mm_hll_t *h);

/* ---- top-k (Space-Saving) ---- */

typedef struct mm_topk_counter {
  char *item;       /* owned by the sketch; NUL-terminated copy of len bytes */
  size_t len;
  uint64_t count;   /* upper bound of the item's weight */
  uint64_t err;     /* overestimation bound: count - err <= true weight */
} mm_topk_counter_t;

typedef struct mm_topk {
  uint64_t total;                        /* weight of everything added */
  size_t n;                              /* counters in use */
  mm_topk_counter_t c[MM_TOPK_CAPACITY]; /* sorted: count desc, item asc */
} mm_topk_t;

void mm_topk_init(mm_topk_t *t);
/* Releases the item copies and empties t (safe to call twice). */
void mm_topk_free(mm_topk_t *t);
/* Reads the byte format into t (initialised by this call; on failure t is
 * left empty). Malformed bytes are MM_EINVAL with a message starting
 * "topk sketch: ". */
int mm_topk_parse(mm_topk_t *t, const void *bytes, size_t len, mm_err_t *err);
/* Appends t's bytes to out: 0 or MM_ENOMEM. */
int mm_topk_serialize(const mm_topk_t *t, mm_buf_t *out);
/* Adds weight (>= 1) of item. An item longer than MM_TOPK_ITEM_MAX, a zero
 * weight, or a total that would overflow is MM_EINVAL; MM_ENOMEM leaves t
 * unchanged. */
int mm_topk_add(mm_topk_t *t, const void *item, size_t len, uint64_t weight,
                mm_err_t *err);
/* dst = merge of dst and src (see above). On failure dst is unchanged. */
int mm_topk_merge(mm_topk_t *dst, const mm_topk_t *src, mm_err_t *err);
/* The first min(k, n) counters are the top k: returns that number. */
size_t mm_topk_top(const mm_topk_t *t, size_t k);

#endif

/*
 * check_arena.c - the batch bump allocator (arena.h): alignment, growth
 * across chunks, blocks that never move, large blocks in chunks of their
 * own, what a reset keeps, and the out-of-memory path through
 * mm_arena_fail_countdown.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "testutil.h"

extern long mm_arena_fail_countdown; /* arena.c's allocation-failure knob */

#define AL (_Alignof(max_align_t))

START_TEST(blocks_are_aligned_and_distinct) {
  mm_arena_t a = MM_ARENA_INIT;
  char *prev = NULL;
  for (size_t n = 0; n < 100; n++) {
    char *p = mm_arena_alloc(&a, n);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq((uintptr_t)p % AL, 0);
    if (prev && n > 1) ck_assert_ptr_ne(p, prev);
    memset(p, 0xA5, n); /* writable; ASan/valgrind see any overrun */
    prev = p;
  }
  mm_arena_free(&a);
  ck_assert_ptr_null(a.head);
  ck_assert_uint_eq(mm_arena_held(&a), 0);
}
END_TEST

START_TEST(growth_keeps_earlier_blocks_in_place) {
  mm_arena_t a = MM_ARENA_INIT;
  enum { N = 20000 };
  char **ps = malloc(N * sizeof *ps);
  ck_assert_ptr_nonnull(ps);
  static const char *abc = "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdef";
  /* 20,000 strings of 2-64 bytes: several chunks (16 KiB, 32 KiB, ...) */
  for (int i = 0; i < N; i++) {
    char txt[80];
    size_t n = (size_t)snprintf(txt, sizeof txt, "%d-%.*s", i, i % 58, abc);
    ps[i] = mm_arena_strndup(&a, txt, n);
    ck_assert_ptr_nonnull(ps[i]);
  }
  ck_assert_ptr_nonnull(a.head);
  ck_assert_uint_gt(mm_arena_held(&a), MM_ARENA_MIN_CHUNK);
  for (int i = 0; i < N; i++) {
    char txt[80];
    snprintf(txt, sizeof txt, "%d-%.*s", i, i % 58, abc);
    ck_assert_str_eq(ps[i], txt);
  }
  free(ps);
  mm_arena_free(&a);
}
END_TEST

START_TEST(strndup_copies_embedded_nuls_and_terminates) {
  mm_arena_t a = MM_ARENA_INIT;
  char *p = mm_arena_strndup(&a, "a\0b", 3);
  ck_assert_ptr_nonnull(p);
  ck_assert_int_eq(memcmp(p, "a\0b\0", 4), 0);
  char *e = mm_arena_strndup(&a, NULL, 0);
  ck_assert_ptr_nonnull(e);
  ck_assert_int_eq(e[0], '\0');
  unsigned char *z = mm_arena_zalloc(&a, 1000);
  ck_assert_ptr_nonnull(z);
  for (int i = 0; i < 1000; i++) ck_assert_int_eq(z[i], 0);
  mm_arena_free(&a);
}
END_TEST

/* A block larger than half a chunk gets a chunk of its own behind the
 * head: the head's free space still serves the small blocks after it. */
START_TEST(large_block_gets_its_own_chunk) {
  mm_arena_t a = MM_ARENA_INIT;
  char *small = mm_arena_alloc(&a, 32);
  ck_assert_ptr_nonnull(small);
  void *head = a.head;
  char *ptr = a.ptr;
  size_t big = 4 * MM_ARENA_MIN_CHUNK;
  char *b = mm_arena_alloc(&a, big);
  ck_assert_ptr_nonnull(b);
  memset(b, 1, big);
  ck_assert_ptr_eq(a.head, head); /* still the head */
  ck_assert_ptr_eq(a.ptr, ptr);   /* its free space untouched */
  char *after = mm_arena_alloc(&a, 32);
  ck_assert_ptr_eq(after, ptr);
  ck_assert_uint_ge(mm_arena_held(&a), MM_ARENA_MIN_CHUNK + big);
  mm_arena_free(&a);
}
END_TEST

/* After a use that took several chunks, a reset leaves one chunk of their
 * total size, and the same use again allocates nothing new. */
START_TEST(reset_keeps_one_chunk_for_the_next_batch) {
  mm_arena_t a = MM_ARENA_INIT;
  size_t kept = 0;
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < 5000; i++) ck_assert_ptr_nonnull(mm_arena_alloc(&a, 24));
    ck_assert_ptr_nonnull(mm_arena_alloc(&a, 3 * MM_ARENA_MIN_CHUNK));
    size_t held = mm_arena_held(&a);
    /* rounds after the first are served from the chunk the reset kept */
    if (round > 0) ck_assert_uint_eq(held, kept);
    mm_arena_reset(&a);
    ck_assert_ptr_nonnull(a.head);
    kept = mm_arena_held(&a);
    ck_assert_uint_le(kept, held);
    /* one chunk, all of it free, as large as the round took */
    ck_assert_uint_ge((size_t)(a.end - a.ptr), 5000 * 32 + 3 * MM_ARENA_MIN_CHUNK);
    ck_assert_uint_lt(kept - (size_t)(a.end - a.ptr), 64);
  }
  mm_arena_free(&a);
}
END_TEST

/* A chunk above MM_ARENA_KEEP_MAX goes back to malloc at the reset. */
START_TEST(reset_releases_a_huge_use) {
  mm_arena_t a = MM_ARENA_INIT;
  ck_assert_ptr_nonnull(mm_arena_alloc(&a, MM_ARENA_KEEP_MAX + 1));
  mm_arena_reset(&a);
  ck_assert_ptr_null(a.head);
  ck_assert_uint_eq(mm_arena_held(&a), 0);
  ck_assert_ptr_nonnull(mm_arena_alloc(&a, 10)); /* and it works on */
  mm_arena_free(&a);
}
END_TEST

/* Out of memory: NULL, the arena unchanged and usable once memory is back;
 * a failure inside a reset only means the next use grows again. */
START_TEST(out_of_memory_returns_null_and_recovers) {
  mm_arena_t a = MM_ARENA_INIT;
  mm_arena_fail_countdown = 1; /* the very first chunk fails */
  ck_assert_ptr_null(mm_arena_alloc(&a, 8));
  ck_assert_ptr_null(mm_arena_strndup(&a, "x", 1));
  ck_assert_ptr_null(mm_arena_zalloc(&a, 8));
  ck_assert_ptr_null(a.head);
  mm_arena_fail_countdown = 0;
  char *p = mm_arena_strndup(&a, "kept", 4);
  ck_assert_ptr_nonnull(p);
  /* fill the first chunk, then let the second fail */
  mm_arena_fail_countdown = 1;
  void *q;
  size_t got = 0;
  while ((q = mm_arena_alloc(&a, 64)) != NULL) got++;
  ck_assert_uint_gt(got, 0);
  size_t held = mm_arena_held(&a);
  ck_assert_ptr_null(mm_arena_alloc(&a, 4 * MM_ARENA_MIN_CHUNK)); /* large path too */
  ck_assert_str_eq(p, "kept");
  ck_assert_uint_eq(mm_arena_held(&a), held); /* nothing was added */
  /* a reset that cannot take its combined chunk leaves the arena empty */
  mm_arena_fail_countdown = 0;
  ck_assert_ptr_nonnull(mm_arena_alloc(&a, 64)); /* a second chunk */
  ck_assert_uint_gt(mm_arena_held(&a), held);
  mm_arena_fail_countdown = 1;
  mm_arena_reset(&a);
  mm_arena_fail_countdown = 0;
  ck_assert_ptr_null(a.head);
  ck_assert_ptr_nonnull(mm_arena_alloc(&a, 64));
  mm_arena_free(&a);
}
END_TEST

START_TEST(absurd_sizes_fail_cleanly) {
  mm_arena_t a = MM_ARENA_INIT;
  ck_assert_ptr_null(mm_arena_alloc(&a, SIZE_MAX));
  ck_assert_ptr_null(mm_arena_alloc(&a, SIZE_MAX - 8));
  ck_assert_ptr_null(mm_arena_strndup(&a, "", SIZE_MAX));
  ck_assert_ptr_nonnull(mm_arena_alloc(&a, 1));
  mm_arena_free(&a);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("arena");
  TCase *tc = tcase_create("arena");
  tcase_add_test(tc, blocks_are_aligned_and_distinct);
  tcase_add_test(tc, growth_keeps_earlier_blocks_in_place);
  tcase_add_test(tc, strndup_copies_embedded_nuls_and_terminates);
  tcase_add_test(tc, large_block_gets_its_own_chunk);
  tcase_add_test(tc, reset_keeps_one_chunk_for_the_next_batch);
  tcase_add_test(tc, reset_releases_a_huge_use);
  tcase_add_test(tc, out_of_memory_returns_null_and_recovers);
  tcase_add_test(tc, absurd_sizes_fail_cleanly);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return tu_run_suite(suite());
}

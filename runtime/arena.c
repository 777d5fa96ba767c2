/*
 * arena.c - the batch bump allocator (see arena.h).
 *
 * Chunks come from malloc and are linked newest first. Small blocks are
 * cut from the head chunk; when it is full a chunk twice its size becomes
 * the head. A block larger than half of that (a batch-sized array) gets a
 * chunk of its own, linked behind the head, so the head's free space is not
 * abandoned for it. A reset with several chunks frees them all and takes
 * one chunk of their total size (up to MM_ARENA_KEEP_MAX), so the next
 * batch of the same size is served from a single chunk without malloc.
 */
#include "arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct mm_arena_chunk {
  struct mm_arena_chunk *prev;
  size_t size;          /* bytes of data */
  max_align_t data[];   /* the blocks; max_align_t aligns the first */
};

#define ALIGN (_Alignof(max_align_t))

/* Allocation-failure injection for the tests (as script.c's
 * mm_script_fail_countdown). 0: off. Positive: counts chunk allocations
 * down, and from the one that reaches zero on (it becomes -1) every chunk
 * allocation fails, until the test sets it again. Only the tests declare
 * it. */
long mm_arena_fail_countdown;

static struct mm_arena_chunk *chunk_new(size_t size) {
  if (mm_arena_fail_countdown > 0 && --mm_arena_fail_countdown == 0)
    mm_arena_fail_countdown = -1;
  if (mm_arena_fail_countdown < 0) return NULL;
  if (size > SIZE_MAX - sizeof(struct mm_arena_chunk)) return NULL;
  struct mm_arena_chunk *c = malloc(sizeof *c + size);
  if (!c) return NULL;
  c->prev = NULL;
  c->size = size;
  return c;
}

/* Makes c the head chunk; its free space is what remains after `taken`. */
static void push_head(mm_arena_t *a, struct mm_arena_chunk *c, size_t taken) {
  c->prev = a->head;
  a->head = c;
  a->ptr = (char *)c->data + taken;
  a->end = (char *)c->data + c->size;
}

/* The slow path of mm_arena_alloc: need (aligned) does not fit the head. */
static void *alloc_chunk(mm_arena_t *a, size_t need) {
  size_t grow = MM_ARENA_MIN_CHUNK;
  if (a->head) grow = a->head->size <= SIZE_MAX / 2 ? a->head->size * 2 : a->head->size;
  if (a->head && need > grow / 2) {
    /* A chunk of its own, behind the head: the head keeps its free space. */
    struct mm_arena_chunk *c = chunk_new(need);
    if (!c) return NULL;
    c->prev = a->head->prev;
    a->head->prev = c;
    return c->data;
  }
  struct mm_arena_chunk *c = chunk_new(need > grow ? need : grow);
  if (!c) return NULL;
  push_head(a, c, need);
  return c->data;
}

void *mm_arena_alloc(mm_arena_t *a, size_t n) {
  if (n > SIZE_MAX - ALIGN) return NULL;
  size_t need = (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
  if (a->ptr && need <= (size_t)(a->end - a->ptr)) {
    void *p = a->ptr;
    a->ptr += need;
    return p;
  }
  return alloc_chunk(a, need);
}

void *mm_arena_zalloc(mm_arena_t *a, size_t n) {
  void *p = mm_arena_alloc(a, n);
  if (p && n) memset(p, 0, n);
  return p;
}

char *mm_arena_strndup(mm_arena_t *a, const char *s, size_t n) {
  if (n == SIZE_MAX) return NULL;
  char *p = mm_arena_alloc(a, n + 1);
  if (!p) return NULL;
  if (n) memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

/* Frees every chunk and returns their total data size. */
static size_t free_chunks(mm_arena_t *a) {
  size_t total = 0;
  struct mm_arena_chunk *c = a->head;
  while (c) {
    struct mm_arena_chunk *prev = c->prev;
    total = total <= SIZE_MAX - c->size ? total + c->size : SIZE_MAX;
    free(c);
    c = prev;
  }
  a->head = NULL;
  a->ptr = a->end = NULL;
  return total;
}

void mm_arena_reset(mm_arena_t *a) {
  if (!a->head) return;
  if (!a->head->prev && a->head->size <= MM_ARENA_KEEP_MAX) {
    a->ptr = (char *)a->head->data;
    return;
  }
  /* Several chunks (or one too large to keep): one chunk of their total
   * size serves the next batch like this one. A failure here only means
   * the next use grows again. */
  size_t total = free_chunks(a);
  if (total > MM_ARENA_KEEP_MAX) return;
  struct mm_arena_chunk *c = chunk_new(total);
  if (c) push_head(a, c, 0);
}

void mm_arena_free(mm_arena_t *a) { free_chunks(a); }

size_t mm_arena_held(const mm_arena_t *a) {
  size_t n = 0;
  for (const struct mm_arena_chunk *c = a->head; c; c = c->prev)
    n += sizeof *c + c->size;
  return n;
}

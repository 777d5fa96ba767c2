/*
 * arena.h - a bump allocator for what lives exactly as long as one batch.
 *
 * Provides: mm_arena_t, which hands out aligned blocks from large chunks
 * and frees nothing one by one: mm_arena_reset gives every block back at
 * once. A reset keeps one chunk as large as everything the last use took
 * (up to MM_ARENA_KEEP_MAX), so a stream of similar batches allocates
 * nothing after the first. Blocks never move: a pointer stays valid until
 * the next reset or mm_arena_free. Relies on libc only.
 *
 * Why: the pipeline made and freed a handful of small blocks per record
 * (keys, their lengths and states, merge ids) and a few large arrays per
 * batch; glibc's malloc/free of those cost more than the work they held.
 *
 * Ownership: the arena owns its chunks (mm_arena_free); blocks are
 * borrowed from it until mm_arena_reset. Not thread-safe.
 *
 * Test hook: mm_arena_fail_countdown (arena.c) makes chunk allocations
 * fail, so the callers' out-of-memory paths can be exercised.
 */
#ifndef MM_ARENA_H
#define MM_ARENA_H

#include <stddef.h>

/* Smallest chunk taken from malloc. */
#define MM_ARENA_MIN_CHUNK ((size_t)16 * 1024)
/* Largest chunk a reset keeps for the next use; above it the memory goes
 * back to malloc, so one huge batch does not pin it for the process's life. */
#define MM_ARENA_KEEP_MAX ((size_t)8 * 1024 * 1024)

struct mm_arena_chunk;

typedef struct mm_arena {
  struct mm_arena_chunk *head; /* newest chunk, linked to the older ones */
  char *ptr, *end;             /* free space of head */
} mm_arena_t;

#define MM_ARENA_INIT {NULL, NULL, NULL}

/* n bytes aligned for any type (n = 0 gives a valid, distinct-or-not
 * pointer), uninitialised; NULL when out of memory (the arena is then
 * unchanged and still usable). */
void *mm_arena_alloc(mm_arena_t *a, size_t n);

/* n zeroed bytes, as mm_arena_alloc. */
void *mm_arena_zalloc(mm_arena_t *a, size_t n);

/* A NUL-terminated copy of s[0..n) (s may hold NULs), or NULL. */
char *mm_arena_strndup(mm_arena_t *a, const char *s, size_t n);

/* Gives every block back (their pointers become invalid), keeping memory
 * for the next use as described above. */
void mm_arena_reset(mm_arena_t *a);

/* Releases every chunk; the arena is then empty and may be used again. */
void mm_arena_free(mm_arena_t *a);

/* Bytes the arena holds from malloc (chunks and their headers). */
size_t mm_arena_held(const mm_arena_t *a);

#endif

/*
 * retry.h - the retry schedule: exponential backoff with full jitter.
 *
 * delay(attempt) = uniform[0, min(max_ms, base_ms * 2^(attempt-1))] for the
 * wait after failed attempt number `attempt` (1-based), as AWS's
 * "Exponential Backoff And Jitter" (full jitter) describes. Plain struct,
 * no ownership; the generator is a per-struct xorshift seeded explicitly so
 * tests are repeatable.
 */
#ifndef MM_RETRY_H
#define MM_RETRY_H

#include <stdint.h>

typedef struct mm_retry {
  int max_attempts;   /* total attempts, >= 1 (MURMUR_MAX_ATTEMPTS, 3) */
  int base_ms;        /* MURMUR_RETRY_BASE_MS, 50 */
  int max_ms;         /* MURMUR_RETRY_MAX_MS, 5000 */
  uint64_t rng;       /* generator state, never 0 */
} mm_retry_t;

void mm_retry_init(mm_retry_t *r, int max_attempts, int base_ms, int max_ms,
                   uint64_t seed);
/* Upper bound of the wait after failed attempt `attempt` (>= 1). */
int64_t mm_retry_cap_ms(const mm_retry_t *r, int attempt);
/* A uniformly drawn wait in [0, cap]. */
int64_t mm_retry_delay_ms(mm_retry_t *r, int attempt);

/* Milliseconds since the epoch (CLOCK_REALTIME) and monotonic ms. */
int64_t mm_now_ms(void);
int64_t mm_mono_ms(void);
/* Sleeps ms milliseconds (restarts after signals). */
void mm_sleep_ms(int64_t ms);

#endif

/*
 * retry.c - backoff schedule with full jitter, and the clocks (see retry.h).
 *
 * The generator is xorshift64* (Vigna), seeded through splitmix64 so that
 * nearby seeds (0, 1, 2, a pid, a time) give unrelated sequences. Draws are
 * unbiased: a 64-bit output is rejected when it falls in the short last
 * interval of the range (a bounded number of times; the probability of a
 * single rejection is below 2^-32 for any cap an int can hold).
 */
#include "retry.h"

#include <errno.h>
#include <time.h>

/* Substitute state when a seed mixes to 0 (xorshift's fixed point). */
#define RETRY_NONZERO_STATE 0x9E3779B97F4A7C15ULL
/* Rejections tried before falling back to a (negligibly biased) modulo. */
#define RETRY_MAX_REJECTS 16

/* splitmix64 finaliser: spreads any 64-bit seed over the whole state. */
static uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

/* One xorshift64* step; the state never becomes 0 once it is non-zero. */
static uint64_t next_u64(mm_retry_t *r) {
  uint64_t x = r->rng ? r->rng : RETRY_NONZERO_STATE;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  r->rng = x;
  return x * 0x2545F4914F6CDD1DULL;
}

/*
 * Fills r. Out-of-range arguments are clamped rather than rejected (config.c
 * validates what users type; this keeps the arithmetic safe for any caller):
 * max_attempts >= 1, base_ms >= 0, max_ms >= 0.
 */
void mm_retry_init(mm_retry_t *r, int max_attempts, int base_ms, int max_ms,
                   uint64_t seed) {
  r->max_attempts = max_attempts < 1 ? 1 : max_attempts;
  r->base_ms = base_ms < 0 ? 0 : base_ms;
  r->max_ms = max_ms < 0 ? 0 : max_ms;
  r->rng = mix64(seed);
  if (r->rng == 0) r->rng = RETRY_NONZERO_STATE;
}

/*
 * min(max_ms, base_ms * 2^(attempt-1)), computed by doubling only while
 * below the cap, so any attempt number (up to INT_MAX) is safe: the loop
 * runs at most ~32 times because base and max are ints. attempt < 1 is
 * treated as 1.
 */
int64_t mm_retry_cap_ms(const mm_retry_t *r, int attempt) {
  int64_t base = r->base_ms, max = r->max_ms;
  if (base <= 0 || max <= 0) return 0;
  if (attempt < 1) attempt = 1;
  int64_t cap = base;
  for (int k = 1; k < attempt && cap < max; k++) cap *= 2; /* cap < 2^32 */
  return cap < max ? cap : max;
}

/* A uniform draw from [0, cap] inclusive (full jitter). */
int64_t mm_retry_delay_ms(mm_retry_t *r, int attempt) {
  int64_t cap = mm_retry_cap_ms(r, attempt);
  if (cap <= 0) return 0;
  uint64_t range = (uint64_t)cap + 1;
  /* Largest multiple of range that fits: values at or above it are biased. */
  uint64_t limit = UINT64_MAX - (UINT64_MAX % range);
  uint64_t x = next_u64(r);
  for (int i = 0; i < RETRY_MAX_REJECTS && x >= limit; i++) x = next_u64(r);
  return (int64_t)(x % range);
}

/* Reads a clock as milliseconds; a failing clock_gettime reads as 0. */
static int64_t clock_ms(clockid_t id) {
  struct timespec ts;
  if (clock_gettime(id, &ts) != 0) return 0;
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t mm_now_ms(void) { return clock_ms(CLOCK_REALTIME); }

int64_t mm_mono_ms(void) { return clock_ms(CLOCK_MONOTONIC); }

/*
 * Sleeps ms milliseconds. nanosleep reports the time left when a signal
 * interrupts it; we sleep again for exactly that remainder, so the total is
 * the full request. The loop ends because the remainder strictly shrinks
 * (or nanosleep fails for another reason, which ends it at once).
 */
void mm_sleep_ms(int64_t ms) {
  if (ms <= 0) return;
  struct timespec req = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  struct timespec rem;
  while (nanosleep(&req, &rem) != 0) {
    if (errno != EINTR) break;
    req = rem;
  }
}

/*
 * check_retry.c - the backoff schedule (full jitter) and the clocks.
 */
#include <check.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "retry.h"
#include "testutil.h"

/* ---- schedule caps ---------------------------------------------------- */

START_TEST(caps_double_from_base_until_max) {
  mm_retry_t r;
  mm_retry_init(&r, 3, 50, 5000, 1);
  static const int64_t want[] = {50, 100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000};
  for (int a = 1; a <= 10; a++)
    ck_assert_int_eq(mm_retry_cap_ms(&r, a), want[a - 1]);
}
END_TEST

START_TEST(caps_when_max_is_not_a_power_of_two_multiple) {
  mm_retry_t r;
  mm_retry_init(&r, 5, 30, 100, 1);
  ck_assert_int_eq(mm_retry_cap_ms(&r, 1), 30);
  ck_assert_int_eq(mm_retry_cap_ms(&r, 2), 60);
  ck_assert_int_eq(mm_retry_cap_ms(&r, 3), 100); /* 120 capped */
  /* max below base: max wins from the start */
  mm_retry_init(&r, 5, 500, 100, 1);
  ck_assert_int_eq(mm_retry_cap_ms(&r, 1), 100);
}
END_TEST

START_TEST(zero_base_or_max_means_no_wait) {
  mm_retry_t r;
  mm_retry_init(&r, 3, 0, 5000, 7);
  for (int a = 1; a < 40; a++) {
    ck_assert_int_eq(mm_retry_cap_ms(&r, a), 0);
    ck_assert_int_eq(mm_retry_delay_ms(&r, a), 0);
  }
  mm_retry_init(&r, 3, 50, 0, 7);
  ck_assert_int_eq(mm_retry_delay_ms(&r, 3), 0);
}
END_TEST

START_TEST(large_attempt_numbers_do_not_overflow) {
  /* Under -fsanitize=undefined an overflowing shift or multiply aborts. */
  mm_retry_t r;
  mm_retry_init(&r, 100, INT_MAX, INT_MAX, 3);
  static const int attempts[] = {31, 32, 33, 63, 64, 65, 1000, INT_MAX - 1, INT_MAX};
  for (size_t i = 0; i < sizeof attempts / sizeof attempts[0]; i++) {
    ck_assert_int_eq(mm_retry_cap_ms(&r, attempts[i]), INT_MAX);
    int64_t d = mm_retry_delay_ms(&r, attempts[i]);
    ck_assert(d >= 0 && d <= INT_MAX);
  }
  mm_retry_init(&r, 3, 1, 5000, 3);
  ck_assert_int_eq(mm_retry_cap_ms(&r, INT_MAX), 5000);
  ck_assert_int_eq(mm_retry_cap_ms(&r, 13), 4096);
  ck_assert_int_eq(mm_retry_cap_ms(&r, 14), 5000);
}
END_TEST

START_TEST(nonpositive_attempt_is_the_first) {
  mm_retry_t r;
  mm_retry_init(&r, 3, 50, 5000, 1);
  ck_assert_int_eq(mm_retry_cap_ms(&r, 0), 50);
  ck_assert_int_eq(mm_retry_cap_ms(&r, -5), 50);
  ck_assert_int_eq(mm_retry_cap_ms(&r, INT_MIN), 50);
}
END_TEST

START_TEST(init_clamps_nonsense) {
  mm_retry_t r;
  mm_retry_init(&r, 0, -5, -1, 0);
  ck_assert_int_eq(r.max_attempts, 1);
  ck_assert_int_eq(r.base_ms, 0);
  ck_assert_int_eq(r.max_ms, 0);
  ck_assert(r.rng != 0);
}
END_TEST

/* ---- the distribution --------------------------------------------------- */

START_TEST(draws_stay_within_zero_and_cap_and_cover_it) {
  mm_retry_t r;
  mm_retry_init(&r, 3, 50, 5000, 42);
  for (int a = 1; a <= 12; a++) {
    int64_t cap = mm_retry_cap_ms(&r, a);
    int64_t lo = INT64_MAX, hi = -1;
    double sum = 0;
    const int n = 8000;
    for (int i = 0; i < n; i++) {
      int64_t d = mm_retry_delay_ms(&r, a);
      ck_assert_msg(d >= 0 && d <= cap, "attempt %d: %lld outside [0,%lld]", a,
                    (long long)d, (long long)cap);
      if (d < lo) lo = d;
      if (d > hi) hi = d;
      sum += (double)d;
    }
    /* full jitter: both ends reached (within 1%), mean near cap/2 */
    ck_assert_msg(lo <= cap / 100, "attempt %d: min %lld", a, (long long)lo);
    ck_assert_msg(hi >= cap - cap / 100, "attempt %d: max %lld", a, (long long)hi);
    double mean = sum / n;
    ck_assert_msg(mean > cap * 0.47 && mean < cap * 0.53, "attempt %d: mean %.1f cap %lld",
                  a, mean, (long long)cap);
  }
}
END_TEST

START_TEST(small_cap_is_uniform_over_every_value) {
  /* cap 3 -> values 0..3, each about a quarter of the draws */
  mm_retry_t r;
  mm_retry_init(&r, 3, 3, 3, 9);
  int count[4] = {0};
  const int n = 40000;
  for (int i = 0; i < n; i++) {
    int64_t d = mm_retry_delay_ms(&r, 1);
    ck_assert(d >= 0 && d <= 3);
    count[d]++;
  }
  for (int v = 0; v < 4; v++)
    ck_assert_msg(count[v] > n / 4 * 0.95 && count[v] < n / 4 * 1.05, "value %d: %d", v,
                  count[v]);
}
END_TEST

START_TEST(same_seed_same_sequence_other_seed_differs) {
  mm_retry_t a, b, c;
  mm_retry_init(&a, 3, 50, 5000, 12345);
  mm_retry_init(&b, 3, 50, 5000, 12345);
  mm_retry_init(&c, 3, 50, 5000, 12346);
  int differ = 0;
  for (int i = 0; i < 200; i++) {
    int attempt = 1 + i % 8;
    int64_t x = mm_retry_delay_ms(&a, attempt);
    ck_assert_int_eq(x, mm_retry_delay_ms(&b, attempt));
    differ += x != mm_retry_delay_ms(&c, attempt);
  }
  ck_assert_int_gt(differ, 150);
}
END_TEST

START_TEST(seed_zero_works) {
  mm_retry_t r;
  mm_retry_init(&r, 3, 50, 5000, 0);
  ck_assert(r.rng != 0);
  int nonzero = 0;
  for (int i = 0; i < 100; i++) nonzero += mm_retry_delay_ms(&r, 8) != 0;
  ck_assert_int_gt(nonzero, 90);
}
END_TEST

/* ---- clocks --------------------------------------------------------------- */

START_TEST(now_is_wall_clock_milliseconds) {
  int64_t before = (int64_t)time(NULL) * 1000;
  int64_t now = mm_now_ms();
  int64_t after = ((int64_t)time(NULL) + 1) * 1000;
  ck_assert(now >= before && now <= after);
}
END_TEST

START_TEST(mono_never_goes_back) {
  int64_t prev = mm_mono_ms();
  for (int i = 0; i < 1000; i++) {
    int64_t t = mm_mono_ms();
    ck_assert(t >= prev);
    prev = t;
  }
}
END_TEST

START_TEST(sleep_waits_at_least_the_request) {
  int64_t t0 = mm_mono_ms();
  mm_sleep_ms(30);
  int64_t dt = mm_mono_ms() - t0;
  ck_assert_msg(dt >= 30 && dt < 1000, "slept %lld ms", (long long)dt);
  t0 = mm_mono_ms();
  mm_sleep_ms(0);
  mm_sleep_ms(-10);
  ck_assert(mm_mono_ms() - t0 < 20);
}
END_TEST

static volatile sig_atomic_t alarms;
static void on_alarm(int sig) {
  (void)sig;
  alarms++;
}

START_TEST(sleep_restarts_after_a_signal) {
  /* SIGALRM every 5 ms without SA_RESTART: nanosleep returns EINTR each
   * time; the total must still be the full 80 ms. */
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;
  ck_assert_int_eq(sigaction(SIGALRM, &sa, &old), 0);
  struct itimerval it = {{0, 5000}, {0, 5000}}, off = {{0, 0}, {0, 0}};
  alarms = 0;
  ck_assert_int_eq(setitimer(ITIMER_REAL, &it, NULL), 0);
  int64_t t0 = mm_mono_ms();
  mm_sleep_ms(80);
  int64_t dt = mm_mono_ms() - t0;
  setitimer(ITIMER_REAL, &off, NULL);
  sigaction(SIGALRM, &old, NULL);
  ck_assert_msg(alarms >= 3, "only %d signals arrived", (int)alarms);
  ck_assert_msg(dt >= 80, "slept only %lld ms of 80", (long long)dt);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("retry");
  TCase *tc = tcase_create("schedule");
  tcase_add_test(tc, caps_double_from_base_until_max);
  tcase_add_test(tc, caps_when_max_is_not_a_power_of_two_multiple);
  tcase_add_test(tc, zero_base_or_max_means_no_wait);
  tcase_add_test(tc, large_attempt_numbers_do_not_overflow);
  tcase_add_test(tc, nonpositive_attempt_is_the_first);
  tcase_add_test(tc, init_clamps_nonsense);
  suite_add_tcase(s, tc);
  tc = tcase_create("jitter");
  tcase_add_test(tc, draws_stay_within_zero_and_cap_and_cover_it);
  tcase_add_test(tc, small_cap_is_uniform_over_every_value);
  tcase_add_test(tc, same_seed_same_sequence_other_seed_differs);
  tcase_add_test(tc, seed_zero_works);
  suite_add_tcase(s, tc);
  tc = tcase_create("clocks");
  tcase_add_test(tc, now_is_wall_clock_milliseconds);
  tcase_add_test(tc, mono_never_goes_back);
  tcase_add_test(tc, sleep_waits_at_least_the_request);
  tcase_add_test(tc, sleep_restarts_after_a_signal);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return tu_run_suite(suite());
}

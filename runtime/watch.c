/*
 * watch.c - a CPU-time tick for the calling thread (see watch.h).
 */
#include "watch.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define WATCH_SIGNAL SIGVTALRM

/* The running watch's callback (one per process). Written only outside
 * the handler, read by it. */
static void (*volatile g_tick)(void *);
static void *volatile g_ud;

static void on_signal(int sig) {
  (void)sig;
  int saved = errno;
  void (*tick)(void *) = g_tick;
  if (tick) tick(g_ud);
  errno = saved;
}

/* Installs the handler once per process. */
static int install(mm_err_t *err) {
  static int installed;
  if (installed) return 0;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (sigaction(WATCH_SIGNAL, &sa, NULL) != 0)
    return mm_err_set(err, MM_EIO, "cannot install the CPU-time watchdog: sigaction: %s",
                      strerror(errno));
  installed = 1;
  return 0;
}

int mm_watch_start(mm_watch_t *w, long period_us, void (*tick)(void *ud), void *ud,
                   mm_err_t *err) {
  if (g_tick) return mm_err_set(err, MM_EINVAL, "another CPU-time watchdog is running");
  if (install(err) != 0) return MM_EIO;
  if (!w->created) {
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_THREAD_ID; /* this thread only, not any thread */
    ev.sigev_signo = WATCH_SIGNAL;
#ifdef sigev_notify_thread_id
    ev.sigev_notify_thread_id = (pid_t)syscall(SYS_gettid);
#else /* glibc before 2.35 names the field only in its union */
    ev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
#endif
    if (timer_create(CLOCK_THREAD_CPUTIME_ID, &ev, &w->timer) != 0)
      return mm_err_set(err, MM_EIO, "cannot create the CPU-time watchdog: timer_create: %s",
                        strerror(errno));
    w->created = 1;
  }
  g_ud = ud;
  g_tick = tick;
  struct itimerspec its;
  memset(&its, 0, sizeof its);
  its.it_value.tv_sec = period_us / 1000000;
  its.it_value.tv_nsec = (period_us % 1000000) * 1000;
  its.it_interval = its.it_value;
  if (timer_settime(w->timer, 0, &its, NULL) != 0) {
    g_tick = NULL;
    return mm_err_set(err, MM_EIO, "cannot arm the CPU-time watchdog: timer_settime: %s",
                      strerror(errno));
  }
  w->armed = 1;
  return 0;
}

void mm_watch_stop(mm_watch_t *w) {
  if (!w->armed) return;
  g_tick = NULL; /* a tick still pending when the timer stops does nothing */
  struct itimerspec its;
  memset(&its, 0, sizeof its);
  timer_settime(w->timer, 0, &its, NULL);
  g_ud = NULL;
  w->armed = 0;
}

void mm_watch_free(mm_watch_t *w) {
  mm_watch_stop(w);
  if (w->created) timer_delete(w->timer);
  w->created = 0;
}

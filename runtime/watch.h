/*
 * watch.h - a CPU-time tick for the calling thread.
 *
 * Provides: mm_watch_start, which calls tick(ud) from a signal handler
 * each time the calling thread has used `period_us` more microseconds of
 * CPU time (a POSIX per-thread CPU-time timer delivering SIGVTALRM to that
 * thread alone), until mm_watch_stop. Used by the script host to notice a
 * Lua call that runs long without paying for an instruction hook on every
 * call (script.c, "the watchdog").
 *
 * The kernel checks CPU-time timers on its scheduler tick, so the real
 * period is at least one tick (1-4 ms on usual kernels), whatever is asked.
 * While the timer is armed, slow system calls of this thread can see the
 * signal: it is installed with SA_RESTART, so read/write/waits restart, but
 * calls that never restart (poll, nanosleep, ...) return EINTR; arm it only
 * around CPU work (the pipeline's decode phase does no I/O but log writes).
 *
 * tick runs in signal context: it may only do async-signal-safe work
 * (setting flags, lua_sethook, which Lua allows from a signal handler). At
 * most one watch runs per process at a time.
 *
 * Ownership: the caller owns the mm_watch_t (usually inside a larger
 * struct); mm_watch_free releases the timer.
 */
#ifndef MM_WATCH_H
#define MM_WATCH_H

#include <time.h>
#include "err.h"

typedef struct mm_watch {
  timer_t timer;
  int created;  /* timer exists */
  int armed;    /* between mm_watch_start and mm_watch_stop */
} mm_watch_t;

/* Arms the tick (creating the timer on first use). Returns 0, or MM_EIO
 * with a message when the timer cannot be created or armed (the caller
 * then works without it), or MM_EINVAL when another watch is running. */
int mm_watch_start(mm_watch_t *w, long period_us, void (*tick)(void *ud), void *ud,
                   mm_err_t *err);

/* Disarms the tick; no tick(ud) runs after it returns. Safe when not
 * armed. */
void mm_watch_stop(mm_watch_t *w);

/* Stops and deletes the timer. Safe on a zeroed or freed watch. */
void mm_watch_free(mm_watch_t *w);

#endif

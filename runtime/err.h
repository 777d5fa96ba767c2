/*
 * err.h - the error struct every fallible function fills.
 *
 * Provides: mm_err_t (a caller-owned message buffer plus, when the error
 * came from Lua, the chunk name and line), error codes, and mm_err_set.
 * Convention: functions that can fail return int, 0 on success and a
 * negative MM_E* code on failure, and write the message once, where the
 * failure is understood. Callers add context with mm_err_prefix; they do not
 * reformat.
 */
#ifndef MM_ERR_H
#define MM_ERR_H

#include <stddef.h>

/* Longest error message kept (longer ones are truncated with "..."). */
#define MM_ERR_MAX 1024

/* Error codes: all negative. */
#define MM_OK        0
#define MM_EINVAL   -1  /* bad input: malformed event, bad value, bad config */
#define MM_ENOMEM   -2  /* allocation failed */
#define MM_ELUA     -3  /* a Lua error (chunk/line filled when known) */
#define MM_EIO      -4  /* file or socket I/O */
#define MM_ERETRY   -5  /* transient store failure: retry may succeed */
#define MM_EPERM    -6  /* permanent store failure: do not retry */
#define MM_EUNKNOWN -7  /* a write whose outcome is unknown (sent, no answer) */
#define MM_ELIMIT   -8  /* a configured limit was hit (budget, heap, depth) */
#define MM_EDEADLINE -9 /* not started/finished before the deadline margin */

typedef struct mm_err {
  int code;               /* last MM_E* code written, 0 when clear */
  int line;               /* Lua line, 0 when not from Lua */
  char chunk[128];        /* Lua chunk name ("decode.lua"), "" when none */
  char msg[MM_ERR_MAX];   /* NUL-terminated message */
} mm_err_t;

/* Clears e (e may be NULL). */
void mm_err_clear(mm_err_t *e);

/* Formats the message into e (e may be NULL) and returns code. */
int mm_err_set(mm_err_t *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends "context: " to e's message, keeping code. Returns e->code. */
int mm_err_prefix(mm_err_t *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Static name of a code ("EINVAL", ...). */
const char *mm_err_name(int code);

#endif

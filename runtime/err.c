/*
 * err.c - the error struct (see err.h).
 */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void mm_err_clear(mm_err_t *e) {
  if (!e) return;
  e->code = 0;
  e->line = 0;
  e->chunk[0] = '\0';
  e->msg[0] = '\0';
}

/* Marks a truncated message with "..." so a reader knows it was cut. */
static void mark_truncated(mm_err_t *e, int n) {
  if (n >= (int)sizeof e->msg) memcpy(e->msg + sizeof e->msg - 4, "...", 4);
}

int mm_err_set(mm_err_t *e, int code, const char *fmt, ...) {
  if (!e) return code;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
  if (n < 0) e->msg[0] = '\0';
  mark_truncated(e, n);
  e->code = code;
  return code;
}

int mm_err_prefix(mm_err_t *e, const char *fmt, ...) {
  if (!e) return 0;
  char head[256];
  va_list ap;
  va_start(ap, fmt);
  int h = vsnprintf(head, sizeof head, fmt, ap);
  va_end(ap);
  if (h < 0) return e->code;
  char old[MM_ERR_MAX];
  memcpy(old, e->msg, sizeof old);
  int n = snprintf(e->msg, sizeof e->msg, "%s: %s", head, old);
  mark_truncated(e, n);
  return e->code;
}

const char *mm_err_name(int code) {
  switch (code) {
  case MM_OK: return "OK";
  case MM_EINVAL: return "EINVAL";
  case MM_ENOMEM: return "ENOMEM";
  case MM_ELUA: return "ELUA";
  case MM_EIO: return "EIO";
  case MM_ERETRY: return "ERETRY";
  case MM_EPERM: return "EPERM";
  case MM_EUNKNOWN: return "EUNKNOWN";
  case MM_ELIMIT: return "ELIMIT";
  case MM_EDEADLINE: return "EDEADLINE";
  default: return "E?";
  }
}

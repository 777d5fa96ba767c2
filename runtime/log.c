/*
 * log.c - text/JSON log lines (see log.h).
 *
 * Line formats (one line per call, newline-terminated):
 *   text: 2026-11-25T13:00:00.000Z<TAB>INFO<TAB>[requestId<TAB>][eventID=ID] message
 *         (the request-id field is present only while one is set; control
 *         characters in the message are escaped as \n, \r, \t, \u00XX so a
 *         message can never split into two CloudWatch events)
 *   JSON: {"timestamp":"2026-11-25T13:00:00.000Z","level":"INFO",
 *          "message":"...","requestId":"...","eventID":"..."}
 *         (requestId / eventID only when known; strings escaped by
 *         mm_buf_json_str, so the line is always valid JSON)
 * The timestamp is UTC with milliseconds (RFC 3339, as Lambda's JSON log
 * filtering requires). Each line is handed to the OS in one write: directly
 * with write(2) when the stream has a file descriptor (after flushing what
 * stdio holds), else one fwrite + fflush (one write on an unbuffered stream).
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "err.h"
#include "retry.h"

/* Global logger state (single-threaded runtime). */
static struct {
  FILE *out;            /* NULL = stderr */
  mm_log_level_t level;
  int json;
  char request_id[MM_LOG_MAX_REQUEST_ID];
} g = {NULL, MM_LOG_INFO, 0, ""};

static const char *const level_names[] = {"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"};

/* The level named by s (case-insensitive; "WARNING" too), or -1. */
static int parse_level(const char *s) {
  if (!s) return -1;
  for (int i = 0; i <= MM_LOG_FATAL; i++)
    if (strcasecmp(s, level_names[i]) == 0) return i;
  if (strcasecmp(s, "WARNING") == 0) return MM_LOG_WARN;
  return -1;
}

/*
 * Reads the Lambda advanced-logging variables. As Lambda documents, a
 * missing or unknown level means INFO; the format is JSON only when
 * AWS_LAMBDA_LOG_FORMAT says JSON (any case), text otherwise.
 */
void mm_log_init(FILE *out) {
  g.out = out;
  int lv = parse_level(getenv("AWS_LAMBDA_LOG_LEVEL"));
  g.level = lv < 0 ? MM_LOG_INFO : (mm_log_level_t)lv;
  const char *fmt = getenv("AWS_LAMBDA_LOG_FORMAT");
  g.json = fmt && strcasecmp(fmt, "JSON") == 0;
}

void mm_log_set_level(mm_log_level_t level) {
  if (level < MM_LOG_TRACE) level = MM_LOG_TRACE;
  if (level > MM_LOG_FATAL) level = MM_LOG_FATAL;
  g.level = level;
}

void mm_log_set_json(int json) { g.json = json != 0; }

void mm_log_set_request(const char *request_id) {
  if (!request_id) {
    g.request_id[0] = '\0';
    return;
  }
  snprintf(g.request_id, sizeof g.request_id, "%s", request_id);
}

int mm_log_enabled(mm_log_level_t level) {
  return level >= g.level && level >= MM_LOG_TRACE && level <= MM_LOG_FATAL;
}

/* Appends the current UTC time as 2026-11-25T13:00:00.000Z. */
static void add_timestamp(mm_buf_t *b) {
  int64_t ms = mm_now_ms();
  time_t secs = (time_t)(ms / 1000);
  struct tm tm;
  if (!gmtime_r(&secs, &tm)) memset(&tm, 0, sizeof tm);
  mm_buf_printf(b, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                (int)(ms % 1000));
}

/* Appends s with control characters escaped (text format). */
static void add_text(mm_buf_t *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != 0x7f) continue;
    mm_buf_add(b, s + run, i - run);
    run = i + 1;
    switch (c) {
    case '\n': mm_buf_add(b, "\\n", 2); break;
    case '\r': mm_buf_add(b, "\\r", 2); break;
    case '\t': mm_buf_add(b, "\\t", 2); break;
    default: {
      char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      mm_buf_add(b, esc, 6);
    }
    }
  }
  mm_buf_add(b, s + run, n - run);
}

/*
 * Hands one finished line to the OS in a single write where possible. A
 * short write (a full pipe, a signal) continues with the rest; the loop is
 * bounded by the line's length (each round writes at least one byte) and
 * stops at the first error.
 */
int mm_log_write(FILE *out, const char *p, size_t n) {
  if (!out) out = stderr;
  int fd = fileno(out);
  if (fd < 0) {
    size_t w = fwrite(p, 1, n, out);
    return (fflush(out) == 0 && w == n) ? 0 : MM_EIO;
  }
  if (fflush(out) != 0) return MM_EIO; /* stdio's bytes go first: order */
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return MM_EIO;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/*
 * Formats and writes one line (see the file comment for the layout).
 * The message is cut at MM_LOG_MAX_MESSAGE bytes (marked "...") so one line
 * stays far inside CloudWatch's 256 KB event limit.
 */
void mm_log(mm_log_level_t level, const char *event_id, const char *fmt, ...) {
  if (!mm_log_enabled(level)) return;
  FILE *out = g.out ? g.out : stderr;
  char small[512];
  char *msg = small;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0) {
    n = 0;
    small[0] = '\0';
  } else if ((size_t)n >= sizeof small) {
    size_t keep = (size_t)n > MM_LOG_MAX_MESSAGE ? MM_LOG_MAX_MESSAGE : (size_t)n;
    char *big = malloc((size_t)n + 1);
    if (big) {
      va_start(ap, fmt);
      vsnprintf(big, (size_t)n + 1, fmt, ap);
      va_end(ap);
      msg = big;
    } else {
      keep = sizeof small - 1; /* out of memory: what fitted */
    }
    if (keep < (size_t)n) memcpy(msg + keep - 3, "...", 3);
    n = (int)keep;
  }

  mm_buf_t b = MM_BUF_INIT;
  const char *lname = level_names[level];
  if (g.json) {
    mm_buf_adds(&b, "{\"timestamp\":\"");
    add_timestamp(&b);
    mm_buf_adds(&b, "\",\"level\":\"");
    mm_buf_adds(&b, lname);
    mm_buf_adds(&b, "\",\"message\":");
    mm_buf_json_str(&b, msg, (size_t)n);
    if (g.request_id[0]) {
      mm_buf_adds(&b, ",\"requestId\":");
      mm_buf_json_str(&b, g.request_id, strlen(g.request_id));
    }
    if (event_id) {
      mm_buf_adds(&b, ",\"eventID\":");
      mm_buf_json_str(&b, event_id, strlen(event_id));
    }
    mm_buf_adds(&b, "}\n");
  } else {
    add_timestamp(&b);
    mm_buf_addc(&b, '\t');
    mm_buf_adds(&b, lname);
    mm_buf_addc(&b, '\t');
    if (g.request_id[0]) {
      add_text(&b, g.request_id, strlen(g.request_id));
      mm_buf_addc(&b, '\t');
    }
    if (event_id) {
      mm_buf_adds(&b, "[eventID=");
      add_text(&b, event_id, strlen(event_id));
      mm_buf_adds(&b, "] ");
    }
    add_text(&b, msg, (size_t)n);
    mm_buf_addc(&b, '\n');
  }

  if (!mm_buf_failed(&b)) {
    mm_log_write(out, b.data, b.len);
  } else {
    static const char oom_text[] = "ERROR\tlog line dropped: out of memory\n";
    static const char oom_json[] =
        "{\"level\":\"ERROR\",\"message\":\"log line dropped: out of memory\"}\n";
    if (g.json) mm_log_write(out, oom_json, sizeof oom_json - 1);
    else mm_log_write(out, oom_text, sizeof oom_text - 1);
  }
  mm_buf_free(&b);
  if (msg != small) free(msg);
}

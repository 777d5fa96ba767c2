/*
 * log.h - log lines for CloudWatch Logs.
 *
 * Text by default ("TIMESTAMP<TAB>LEVEL<TAB>[REQUESTID<TAB>]message", the
 * request id only while one is set, control characters escaped), one JSON
 * object per line when AWS_LAMBDA_LOG_FORMAT=JSON ({"timestamp","level",
 * "message", "requestId" and "eventID" when known}). The timestamp is UTC
 * with milliseconds, 2026-11-25T13:00:00.000Z. One write per line.
 * Filtered by AWS_LAMBDA_LOG_LEVEL (TRACE, DEBUG, INFO, WARN, ERROR, FATAL,
 * any case; missing or unknown = INFO). Written to stderr
 * (Lambda captures it; stdout is kept for EMF and the CLI's response).
 * Payloads and credentials are only ever passed at DEBUG or below.
 * Global state: configured once by mm_log_init; not thread-safe (the runtime
 * is single-threaded).
 */
#ifndef MM_LOG_H
#define MM_LOG_H

#include <stddef.h>
#include <stdio.h>

/* Longest message kept in one line (longer ones end in "..."); far below
 * CloudWatch's 256 KB event limit. */
#define MM_LOG_MAX_MESSAGE 65536
/* Longest request id kept (Lambda's are 36-character UUIDs). */
#define MM_LOG_MAX_REQUEST_ID 256

typedef enum {
  MM_LOG_TRACE = 0,
  MM_LOG_DEBUG,
  MM_LOG_INFO,
  MM_LOG_WARN,
  MM_LOG_ERROR,
  MM_LOG_FATAL
} mm_log_level_t;

/* Reads AWS_LAMBDA_LOG_FORMAT and AWS_LAMBDA_LOG_LEVEL; out NULL = stderr. */
void mm_log_init(FILE *out);
/* Overrides (tests, CLI flags). */
void mm_log_set_level(mm_log_level_t level);
void mm_log_set_json(int json);
/* The request id stamped on following lines (copied; NULL clears). */
void mm_log_set_request(const char *request_id);
int mm_log_enabled(mm_log_level_t level);

/* One log line. event_id may be NULL; when set it becomes a field
 * ("eventID" in JSON, "[eventID=...]" in text). */
void mm_log(mm_log_level_t level, const char *event_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes n bytes (a finished line) to out (NULL = stderr) in one write(2)
 * when out has a file descriptor (stdio's pending bytes are flushed first),
 * else one fwrite + fflush. Returns 0, or MM_EIO when the write failed.
 * Shared with metrics.c, whose EMF lines need the same atomicity. */
int mm_log_write(FILE *out, const char *p, size_t n);

#define MM_DEBUG(...) mm_log(MM_LOG_DEBUG, NULL, __VA_ARGS__)
#define MM_INFO(...) mm_log(MM_LOG_INFO, NULL, __VA_ARGS__)
#define MM_WARN(...) mm_log(MM_LOG_WARN, NULL, __VA_ARGS__)
#define MM_ERROR(...) mm_log(MM_LOG_ERROR, NULL, __VA_ARGS__)

#endif

/*
 * log.h - log lines for CloudWatch Logs.
 *
 * Text by default ("LEVEL message" with the request id), one JSON object per
 * line when AWS_LAMBDA_LOG_FORMAT=JSON ({"timestamp","level","message",
 * "requestId", and extra fields}). Filtered by AWS_LAMBDA_LOG_LEVEL
 * (TRACE, DEBUG, INFO, WARN, ERROR, FATAL; default INFO). Written to stderr
 * (Lambda captures it; stdout is kept for EMF and the CLI's response).
 * Payloads and credentials are only ever passed at DEBUG or below.
 * Global state: configured once by mm_log_init; not thread-safe (the runtime
 * is single-threaded).
 */
#ifndef MM_LOG_H
#define MM_LOG_H

#include <stdio.h>

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

#define MM_DEBUG(...) mm_log(MM_LOG_DEBUG, NULL, __VA_ARGS__)
#define MM_INFO(...) mm_log(MM_LOG_INFO, NULL, __VA_ARGS__)
#define MM_WARN(...) mm_log(MM_LOG_WARN, NULL, __VA_ARGS__)
#define MM_ERROR(...) mm_log(MM_LOG_ERROR, NULL, __VA_ARGS__)

#endif

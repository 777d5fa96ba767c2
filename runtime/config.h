/*
 * config.h - deploy-time settings from the environment (DESIGN section 5).
 *
 * Provides: mm_config_t with every tunable, its default, and the variable
 * that sets it; mm_config_from_env validates each (a malformed number is an
 * error naming the variable and what it holds). Strings are borrowed from
 * the environment (valid while it is not modified) unless noted.
 */
#ifndef MM_CONFIG_H
#define MM_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include "err.h"

/* Defaults. */
#define MM_DEF_MAX_ATTEMPTS 3
#define MM_DEF_RETRY_BASE_MS 50
#define MM_DEF_RETRY_MAX_MS 5000
#define MM_DEF_LUA_BUDGET 50000000L
#define MM_DEF_LUA_MEMORY_MB 64
#define MM_DEF_DEADLINE_MARGIN_MS 200
#define MM_DEF_DEDUP_TTL_S (24 * 3600)
#define MM_DEF_MAX_INFLIGHT 32
#define MM_DEF_MAX_DEPTH 64
#define MM_DEF_NAMESPACE "murmur"

typedef struct mm_config {
  const char *store_url;      /* MURMUR_STORE (NULL = none given) */
  const char *dedup_url;      /* MURMUR_DEDUP (NULL = dedup off) */
  const char *dlq_url;        /* MURMUR_DLQ: sqs://QUEUE_URL or a file (NULL = off) */
  int max_attempts;           /* MURMUR_MAX_ATTEMPTS */
  int retry_base_ms;          /* MURMUR_RETRY_BASE_MS */
  int retry_max_ms;           /* MURMUR_RETRY_MAX_MS */
  int has_now;                /* MURMUR_NOW set */
  double now;                 /* MURMUR_NOW (epoch seconds) */
  long lua_budget;            /* MURMUR_LUA_BUDGET, instructions per call */
  long lua_memory_mb;         /* MURMUR_LUA_MEMORY_MB */
  int deadline_margin_ms;     /* MURMUR_DEADLINE_MARGIN_MS */
  int64_t dedup_ttl_s;        /* MURMUR_DEDUP_TTL (seconds or 30s/15m/1h/1d) */
  int max_inflight;           /* MURMUR_MAX_INFLIGHT */
  int max_depth;              /* MURMUR_MAX_DEPTH, AttributeValue nesting */
  const char *metrics_namespace;  /* MURMUR_METRICS_NAMESPACE */
  const char *metrics_dimensions; /* MURMUR_METRICS_DIMENSIONS: "pipeline,function" */
} mm_config_t;

/* Fills cfg with the defaults. */
void mm_config_defaults(mm_config_t *cfg);
/* Defaults, then every variable that is set. */
int mm_config_from_env(mm_config_t *cfg, mm_err_t *err);

/* Parses a window duration: "30s", "15m", "1h", "1d", "7d" (a positive
 * integer and one unit). */
int mm_config_duration(const char *s, int64_t *seconds, mm_err_t *err);

/* The layer's lua/ directory (holding murmur.lua), found relative to the
 * running executable so the layer works wherever it is mounted (DESIGN
 * section 5): <exe dir>/lua (bootstrap at the layer's root), else
 * <exe dir>/../lua (murmur-ddb in bin/), else the source tree's lua/
 * compiled in (builds run in place). Writes a NUL-terminated path. */
void mm_config_lua_dir(char *out, size_t cap);

#endif

/*
 * config.c - deploy-time settings from the environment (see config.h).
 *
 * Rules applied to every variable:
 *  - unset or empty (the Lambda console lets a value be blanked) means the
 *    default;
 *  - numbers and durations may carry surrounding blanks (a pasted "3 " is
 *    accepted), nothing else: no sign, no hex, no exponent for integers;
 *  - a malformed or out-of-range value is MM_EINVAL with a message naming
 *    the variable, what it accepts and what it holds, e.g.
 *    MURMUR_MAX_ATTEMPTS: expected an integer from 1 to 100, got "abc"
 *    Every bad variable is reported (joined with "; "), not just the first,
 *    so one failed deploy shows every mistake.
 * Ranges are the CFG_* macros below.
 */
#include "config.h"

#include <limits.h>
#include <unistd.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Accepted ranges (inclusive). */
#define CFG_MAX_ATTEMPTS_MAX 100
/* Retry delays: up to Lambda's longest timeout (900 s). */
#define CFG_RETRY_MS_MAX 900000
/* Instructions per Lua call. */
#define CFG_LUA_BUDGET_MIN 1000L
#define CFG_LUA_BUDGET_MAX 1000000000000L
/* Lua heap ceiling: Lambda's largest memory size. */
#define CFG_LUA_MEMORY_MB_MAX 10240L
#define CFG_DEADLINE_MARGIN_MS_MAX 60000
/* Dedup claim lifetime: 1 s to 366 days. */
#define CFG_DEDUP_TTL_MAX (366LL * 86400)
/* Concurrent store requests: Lambda allows 1,024 file descriptors. */
#define CFG_MAX_INFLIGHT_MAX 512
/* AttributeValue nesting (DynamoDB itself allows 32). */
#define CFG_MAX_DEPTH_MAX 200
/* MURMUR_NOW: 9999-12-31T23:59:59Z, so a millisecond value is refused. */
#define CFG_NOW_MAX 253402300799.0
/* CloudWatch namespace length. */
#define CFG_NAMESPACE_MAX 255
/* Characters of a bad value quoted back in a message. */
#define CFG_QUOTE_MAX 64

void mm_config_defaults(mm_config_t *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->store_url = NULL;
  cfg->dedup_url = NULL;
  cfg->dlq_url = NULL;
  cfg->max_attempts = MM_DEF_MAX_ATTEMPTS;
  cfg->retry_base_ms = MM_DEF_RETRY_BASE_MS;
  cfg->retry_max_ms = MM_DEF_RETRY_MAX_MS;
  cfg->has_now = 0;
  cfg->now = 0.0;
  cfg->lua_budget = MM_DEF_LUA_BUDGET;
  cfg->lua_memory_mb = MM_DEF_LUA_MEMORY_MB;
  cfg->deadline_margin_ms = MM_DEF_DEADLINE_MARGIN_MS;
  cfg->dedup_ttl_s = MM_DEF_DEDUP_TTL_S;
  cfg->max_inflight = MM_DEF_MAX_INFLIGHT;
  cfg->max_depth = MM_DEF_MAX_DEPTH;
  cfg->metrics_namespace = MM_DEF_NAMESPACE;
  cfg->metrics_dimensions = NULL;
}

/* ---------------------------------------------------------------------
 * Small text helpers
 * --------------------------------------------------------------------- */

static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* The value of name, or NULL when unset or empty. */
static const char *env(const char *name) {
  const char *v = getenv(name);
  return v && *v ? v : NULL;
}

/* Copies s without surrounding blanks into dst (size n). Returns 0, or -1
 * when it does not fit (no real number or duration is that long). */
static int trimmed(const char *s, char *dst, size_t n) {
  while (is_blank(*s)) s++;
  size_t len = strlen(s);
  while (len > 0 && is_blank(s[len - 1])) len--;
  if (len >= n) return -1;
  memcpy(dst, s, len);
  dst[len] = '\0';
  return 0;
}

/*
 * Writes s as a quoted, printable excerpt into dst (size n >= 8): control
 * bytes, quotes and backslashes escaped, cut after CFG_QUOTE_MAX bytes with
 * "...". Used only to echo a bad value back in an error message.
 */
static void quote(const char *s, char *dst, size_t n) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0, i = 0;
  dst[o++] = '"';
  for (; s[i] && i < CFG_QUOTE_MAX && o + 8 < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f) {
      dst[o++] = '\\';
      dst[o++] = 'x';
      dst[o++] = hex[c >> 4];
      dst[o++] = hex[c & 15];
    } else if (c == '"' || c == '\\') {
      dst[o++] = '\\';
      dst[o++] = (char)c;
    } else {
      dst[o++] = (char)c;
    }
  }
  if (s[i]) {
    memcpy(dst + o, "...", 3);
    o += 3;
  }
  dst[o++] = '"';
  dst[o] = '\0';
}

/* Parses an unsigned decimal integer (digits only). Returns 0, -1 when
 * malformed, -2 when it exceeds max. */
static int parse_digits(const char *s, long long max, long long *out) {
  if (!is_digit(*s)) return -1;
  long long v = 0;
  int over = 0;
  for (; *s; s++) {
    if (!is_digit(*s)) return -1;
    int d = *s - '0';
    if (!over && v > (max - d) / 10) over = 1;
    if (!over) v = v * 10 + d;
  }
  if (over) return -2;
  *out = v;
  return 0;
}

/* ---------------------------------------------------------------------
 * Per-kind parsers: each writes its message into e, naming the variable
 * --------------------------------------------------------------------- */

/* An integer in [lo, hi]. */
static int get_int(const char *name, long long lo, long long hi, long long *out,
                   mm_err_t *e) {
  const char *raw = env(name);
  if (!raw) return 0;
  char t[64], q[CFG_QUOTE_MAX * 4 + 8];
  long long v = 0;
  if (trimmed(raw, t, sizeof t) != 0 || parse_digits(t, hi, &v) != 0 || v < lo) {
    quote(raw, q, sizeof q);
    return mm_err_set(e, MM_EINVAL, "%s: expected an integer from %lld to %lld, got %s",
                      name, lo, hi, q);
  }
  *out = v;
  return 0;
}

/*
 * Seconds as a plain integer or a duration ("90", "90s", "15m", "1d"),
 * in [1, hi].
 */
static int get_seconds(const char *name, int64_t hi, int64_t *out, mm_err_t *e) {
  const char *raw = env(name);
  if (!raw) return 0;
  char t[64], q[CFG_QUOTE_MAX * 4 + 8];
  long long v = 0;
  int rc = -1;
  if (trimmed(raw, t, sizeof t) == 0) {
    int64_t d = 0;
    if (parse_digits(t, hi, &v) == 0) rc = 0;
    else if (mm_config_duration(t, &d, NULL) == 0) { v = d; rc = 0; }
  }
  if (rc != 0 || v < 1 || v > hi) {
    quote(raw, q, sizeof q);
    return mm_err_set(e, MM_EINVAL,
                      "%s: expected seconds or a duration such as 30s, 15m, 1h, 1d "
                      "(from 1s to %lldd), got %s",
                      name, (long long)(hi / 86400), q);
  }
  *out = v;
  return 0;
}

/*
 * Epoch seconds: digits, an optional fraction, an optional exponent
 * ("1700000000", "1700000000.25", "1.7E9"), finite, from 0 to CFG_NOW_MAX.
 * strtod alone would also take "inf", "nan", hex and a sign, so the shape is
 * checked first.
 */
static int get_epoch(const char *name, int *has, double *out, mm_err_t *e) {
  const char *raw = env(name);
  if (!raw) return 0;
  char t[64], q[CFG_QUOTE_MAX * 4 + 8];
  int ok = trimmed(raw, t, sizeof t) == 0;
  const char *p = t;
  if (ok) {
    int digits = 0;
    while (is_digit(*p)) { p++; digits++; }
    if (*p == '.') {
      p++;
      while (is_digit(*p)) { p++; digits++; }
    }
    if (digits && (*p == 'e' || *p == 'E')) {
      p++;
      if (*p == '+' || *p == '-') p++;
      if (!is_digit(*p)) ok = 0;
      while (is_digit(*p)) p++;
    }
    if (!digits || *p) ok = 0;
  }
  double v = ok ? strtod(t, NULL) : 0.0;
  if (!ok || !isfinite(v) || v < 0.0 || v > CFG_NOW_MAX) {
    quote(raw, q, sizeof q);
    return mm_err_set(e, MM_EINVAL,
                      "%s: expected epoch seconds (a number from 0 to %.0f, may be "
                      "fractional; not milliseconds), got %s",
                      name, CFG_NOW_MAX, q);
  }
  *has = 1;
  *out = v;
  return 0;
}

/*
 * A CloudWatch namespace: 1-255 ASCII characters from [0-9A-Za-z._/#: -],
 * at least one not a space, not starting with "AWS/" (reserved) or ':'.
 * CloudWatch drops EMF lines with a bad namespace silently, so this is
 * checked at init where the user sees it.
 */
static int get_namespace(const char *name, const char **out, mm_err_t *e) {
  const char *v = env(name);
  if (!v) return 0;
  size_t n = strlen(v);
  int ok = n <= CFG_NAMESPACE_MAX && strncmp(v, "AWS/", 4) != 0 && v[0] != ':';
  int nonspace = 0;
  for (size_t i = 0; ok && i < n; i++) {
    char c = v[i];
    if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
          strchr("._/#: -", c)))
      ok = 0;
    if (c != ' ') nonspace = 1;
  }
  if (!ok || !nonspace) {
    char q[CFG_QUOTE_MAX * 4 + 8];
    quote(v, q, sizeof q);
    return mm_err_set(e, MM_EINVAL,
                      "%s: expected a CloudWatch namespace (1 to %d characters from "
                      "A-Z a-z 0-9 . - _ / # : and space, not starting with AWS/), got %s",
                      name, CFG_NAMESPACE_MAX, q);
  }
  *out = v;
  return 0;
}

/* Appends one variable's message to the combined error ("; " between). */
static void collect(mm_err_t *all, int *nbad, const mm_err_t *one) {
  if (!all) { (*nbad)++; return; }
  if ((*nbad)++ == 0) {
    mm_err_set(all, MM_EINVAL, "%s", one->msg);
  } else {
    char prev[MM_ERR_MAX];
    memcpy(prev, all->msg, sizeof prev);
    mm_err_set(all, MM_EINVAL, "%s; %s", prev, one->msg);
  }
}

/*
 * Defaults, then every variable that is set. On MM_EINVAL cfg still holds
 * the valid values and the defaults for the bad ones; the caller should
 * report the error (init error) rather than run with it.
 */
int mm_config_from_env(mm_config_t *cfg, mm_err_t *err) {
  mm_config_defaults(cfg);
  mm_err_t one;
  int nbad = 0;
  long long v;

  cfg->store_url = env("MURMUR_STORE");
  cfg->dedup_url = env("MURMUR_DEDUP");
  cfg->dlq_url = env("MURMUR_DLQ");
  cfg->metrics_dimensions = env("MURMUR_METRICS_DIMENSIONS");

#define INT_VAR(NAME, FIELD, LO, HI, TYPE)                  \
  mm_err_clear(&one);                                       \
  v = cfg->FIELD;                                           \
  if (get_int(NAME, LO, HI, &v, &one) != 0)                 \
    collect(err, &nbad, &one);                              \
  else                                                      \
    cfg->FIELD = (TYPE)v;

  INT_VAR("MURMUR_MAX_ATTEMPTS", max_attempts, 1, CFG_MAX_ATTEMPTS_MAX, int)
  INT_VAR("MURMUR_RETRY_BASE_MS", retry_base_ms, 0, CFG_RETRY_MS_MAX, int)
  INT_VAR("MURMUR_RETRY_MAX_MS", retry_max_ms, 0, CFG_RETRY_MS_MAX, int)
  INT_VAR("MURMUR_LUA_BUDGET", lua_budget, CFG_LUA_BUDGET_MIN, CFG_LUA_BUDGET_MAX, long)
  INT_VAR("MURMUR_LUA_MEMORY_MB", lua_memory_mb, 1, CFG_LUA_MEMORY_MB_MAX, long)
  INT_VAR("MURMUR_DEADLINE_MARGIN_MS", deadline_margin_ms, 0, CFG_DEADLINE_MARGIN_MS_MAX, int)
  INT_VAR("MURMUR_MAX_INFLIGHT", max_inflight, 1, CFG_MAX_INFLIGHT_MAX, int)
  INT_VAR("MURMUR_MAX_DEPTH", max_depth, 1, CFG_MAX_DEPTH_MAX, int)
#undef INT_VAR

  mm_err_clear(&one);
  if (get_seconds("MURMUR_DEDUP_TTL", CFG_DEDUP_TTL_MAX, &cfg->dedup_ttl_s, &one) != 0)
    collect(err, &nbad, &one);
  mm_err_clear(&one);
  if (get_epoch("MURMUR_NOW", &cfg->has_now, &cfg->now, &one) != 0)
    collect(err, &nbad, &one);
  mm_err_clear(&one);
  if (get_namespace("MURMUR_METRICS_NAMESPACE", &cfg->metrics_namespace, &one) != 0)
    collect(err, &nbad, &one);

  return nbad ? MM_EINVAL : 0;
}

/*
 * "30s", "15m", "1h", "1d", "7d": a positive decimal integer and exactly one
 * lower-case unit (s, m, h, d), nothing else (no blanks: callers trim). The
 * result must fit in int64 seconds.
 */
int mm_config_duration(const char *s, int64_t *seconds, mm_err_t *err) {
  size_t n = s ? strlen(s) : 0;
  long long mult = 0, v = 0;
  if (n >= 2) {
    switch (s[n - 1]) {
    case 's': mult = 1; break;
    case 'm': mult = 60; break;
    case 'h': mult = 3600; break;
    case 'd': mult = 86400; break;
    default: break;
    }
  }
  char num[32];
  int ok = mult && n - 1 < sizeof num;
  if (ok) {
    memcpy(num, s, n - 1);
    num[n - 1] = '\0';
    ok = parse_digits(num, INT64_MAX / mult, &v) == 0 && v > 0;
  }
  if (!ok) {
    char q[CFG_QUOTE_MAX * 4 + 8];
    quote(s ? s : "", q, sizeof q);
    return mm_err_set(err, MM_EINVAL,
                      "expected a duration such as 30s, 15m, 1h, 1d or 7d (a positive "
                      "integer and one unit of s, m, h, d), got %s",
                      q);
  }
  *seconds = (int64_t)(v * mult);
  return 0;
}

/* Whether path/murmur.lua is readable: the mark of a lua/ directory. */
static int is_lua_dir(const char *path) {
  char probe[PATH_MAX + 16];
  int n = snprintf(probe, sizeof probe, "%s/murmur.lua", path);
  return n > 0 && (size_t)n < sizeof probe && access(probe, R_OK) == 0;
}

void mm_config_lua_dir(char *out, size_t cap) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) {
      *slash = '\0';
      static const char *const rel[] = {"%s/lua", "%s/../lua"};
      for (int i = 0; i < 2; i++) {
        int k = snprintf(out, cap, rel[i], exe);
        if (k > 0 && (size_t)k < cap && is_lua_dir(out)) return;
      }
    }
  }
  snprintf(out, cap, "%s", MM_SOURCE_LUA_DIR);
}

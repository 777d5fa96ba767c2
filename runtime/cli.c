/*
 * cli.c - the `murmur-ddb` command: the runtime's core, run locally.
 *
 *   murmur-ddb invoke --script F --event F [--store URL] [--dedup URL|off]
 *                     [--deadline-ms N]
 *       runs one batch as Lambda would and prints Lambda's response JSON on
 *       stdout (metrics and logs on stderr). --store and --dedup default to
 *       sqlite://murmur.db in the working directory (MURMUR_STORE and
 *       MURMUR_DEDUP override the defaults; flags override both).
 *   murmur-ddb query --store URL KEY [--bucket N]
 *       prints one JSON object per row, ordered by bucket.
 *   murmur-ddb check SCRIPT
 *       loads and validates a script; prints each problem; exit 1 if any.
 *
 * Exit codes: 0 success, 1 a problem with the input (bad script, event that
 * is not a stream event), 2 usage.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "log.h"
#include "pipeline.h"
#include "retry.h"
#include "store.h"

#define DEFAULT_LOCAL_DB "sqlite://murmur.db"

static void usage(FILE *f) {
  fputs("usage:\n"
        "  murmur-ddb invoke --script FILE --event FILE [--store URL] [--dedup URL|off]\n"
        "                    [--deadline-ms N]\n"
        "  murmur-ddb query --store URL KEY [--bucket N]\n"
        "  murmur-ddb check SCRIPT\n"
        "store URLs: sqlite://PATH (default sqlite://murmur.db), memory://, dynamodb://TABLE\n",
        f);
}

/* Reads a whole file into a malloc'd buffer. */
static char *slurp(const char *path, size_t *len, mm_err_t *err) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    mm_err_set(err, MM_EIO, "cannot open %s: %s", path, strerror(errno));
    return NULL;
  }
  mm_buf_t b = MM_BUF_INIT;
  char chunk[65536];
  size_t r;
  while ((r = fread(chunk, 1, sizeof chunk, f)) > 0) mm_buf_add(&b, chunk, r);
  int bad = ferror(f);
  fclose(f);
  if (bad || mm_buf_failed(&b)) {
    mm_buf_free(&b);
    mm_err_set(err, MM_EIO, "cannot read %s", path);
    return NULL;
  }
  if (!b.data) mm_buf_adds(&b, "");
  return mm_buf_take(&b, len);
}

/* mm_config_lua_dir into a caller buffer, returned for convenience. */
static const char *find_lua_dir(char *buf, size_t cap) {
  mm_config_lua_dir(buf, cap);
  return buf;
}

static int print_row(void *ud, const mm_row_t *row) {
  (void)ud;
  mm_buf_t b = MM_BUF_INIT;
  mm_buf_adds(&b, "{\"key\":");
  mm_buf_json_str(&b, row->key, strlen(row->key));
  mm_buf_printf(&b, ",\"bucket\":%lld,\"value\":%s}\n", (long long)row->bucket,
                row->value_json);
  if (!mm_buf_failed(&b)) fwrite(b.data, 1, b.len, stdout);
  mm_buf_free(&b);
  return 0;
}

static int parse_i64(const char *s, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end) return -1;
  *out = v;
  return 0;
}

static int cmd_invoke(int argc, char **argv, mm_config_t *cfg) {
  const char *script = NULL, *event = NULL;
  int64_t deadline_in = 0;
  int dedup_given = 0;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--script") && v) script = argv[++i];
    else if (!strcmp(a, "--event") && v) event = argv[++i];
    else if (!strcmp(a, "--store") && v) cfg->store_url = argv[++i];
    else if (!strcmp(a, "--dedup") && v) {
      cfg->dedup_url = strcmp(v, "off") ? v : NULL;
      dedup_given = 1;
      i++;
    } else if (!strcmp(a, "--deadline-ms") && v) {
      if (parse_i64(argv[++i], &deadline_in) || deadline_in <= 0) {
        fprintf(stderr, "murmur-ddb: --deadline-ms needs a positive integer\n");
        return 2;
      }
    } else {
      fprintf(stderr, "murmur-ddb invoke: unexpected argument '%s'\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (!script || !event) {
    usage(stderr);
    return 2;
  }
  if (!cfg->store_url) cfg->store_url = DEFAULT_LOCAL_DB;
  if (!dedup_given && !cfg->dedup_url) cfg->dedup_url = DEFAULT_LOCAL_DB;
  char luabuf[PATH_MAX];
  mm_err_t err;
  mm_err_clear(&err);
  size_t len = 0;
  char *body = slurp(event, &len, &err);
  if (!body) {
    fprintf(stderr, "murmur-ddb: %s\n", err.msg);
    return 1;
  }
  mm_pipeline_t *p = NULL;
  if (mm_pipeline_open(&p, script, find_lua_dir(luabuf, sizeof luabuf), cfg, NULL, &err)) {
    fprintf(stderr, "murmur-ddb: init error: %s\n", err.msg);
    free(body);
    return 1;
  }
  mm_pipeline_set_metrics_out(p, stderr);
  mm_invoke_t inv = {.event = body, .len = len, .request_id = "local",
                     .deadline_ms = deadline_in ? mm_now_ms() + deadline_in : 0};
  mm_log_set_request("local");
  mm_result_t res;
  int rc = mm_pipeline_run(p, &inv, &res);
  int status = 0;
  if (rc) {
    mm_buf_t b = MM_BUF_INIT;
    mm_buf_adds(&b, "{\"errorMessage\":");
    mm_buf_json_str(&b, res.err.msg, strlen(res.err.msg));
    mm_buf_adds(&b, ",\"errorType\":");
    mm_buf_json_str(&b, res.error_type, strlen(res.error_type));
    mm_buf_adds(&b, "}\n");
    if (!mm_buf_failed(&b)) fwrite(b.data, 1, b.len, stdout);
    mm_buf_free(&b);
    status = 1;
  } else {
    fwrite(res.response, 1, res.len, stdout);
    fputc('\n', stdout);
  }
  mm_result_free(&res);
  mm_pipeline_destroy(p);
  free(body);
  return status;
}

static int cmd_query(int argc, char **argv, mm_config_t *cfg) {
  const char *key = NULL;
  int64_t bucket = 0;
  int has_bucket = 0;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--store") && i + 1 < argc) cfg->store_url = argv[++i];
    else if (!strcmp(a, "--bucket") && i + 1 < argc) {
      if (parse_i64(argv[++i], &bucket)) {
        fprintf(stderr, "murmur-ddb: --bucket needs an integer\n");
        return 2;
      }
      has_bucket = 1;
    } else if (a[0] != '-' && !key) key = a;
    else {
      fprintf(stderr, "murmur-ddb query: unexpected argument '%s'\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (!key) {
    usage(stderr);
    return 2;
  }
  mm_err_t err;
  mm_err_clear(&err);
  mm_store_t *s = NULL;
  mm_store_opts_t so = {.max_inflight = cfg->max_inflight};
  if (mm_store_open(&s, cfg->store_url ? cfg->store_url : DEFAULT_LOCAL_DB, &so, &err)) {
    fprintf(stderr, "murmur-ddb: %s\n", err.msg);
    return 1;
  }
  int rc = mm_store_query(s, key, has_bucket ? &bucket : NULL, print_row, NULL, &err);
  if (rc) fprintf(stderr, "murmur-ddb: query failed: %s\n", err.msg);
  mm_store_destroy(s);
  return rc ? 1 : 0;
}

static void report_problem(void *ud, const char *problem) {
  (*(int *)ud)++;
  printf("%s\n", problem);
}

static int cmd_check(int argc, char **argv, mm_config_t *cfg) {
  if (argc != 1) {
    usage(stderr);
    return 2;
  }
  char luabuf[PATH_MAX];
  mm_script_opts_t so = {.budget = cfg->lua_budget,
                         .mem_limit = (size_t)cfg->lua_memory_mb << 20,
                         .lua_dir = find_lua_dir(luabuf, sizeof luabuf),
                         .max_depth = cfg->max_depth};
  int count = 0;
  int problems = mm_script_check(argv[0], &so, report_problem, &count);
  if (problems == 0) printf("%s: ok\n", argv[0]);
  return problems ? 1 : 0;
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  mm_log_init(stderr);
  mm_config_t cfg;
  mm_err_t err;
  mm_err_clear(&err);
  if (mm_config_from_env(&cfg, &err)) {
    fprintf(stderr, "murmur-ddb: %s\n", err.msg);
    return 2;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "invoke")) return cmd_invoke(argc - 2, argv + 2, &cfg);
  if (!strcmp(cmd, "query")) return cmd_query(argc - 2, argv + 2, &cfg);
  if (!strcmp(cmd, "check")) return cmd_check(argc - 2, argv + 2, &cfg);
  fprintf(stderr, "murmur-ddb: unknown command '%s'\n", cmd);
  usage(stderr);
  return 2;
}

/*
 * query_tool.c - a test driver for query.h: what `murmur-ddb query` does,
 * with every input explicit, so tests/e2e can read rows (and --last
 * windows) back from a store the real bootstrap wrote.
 *
 *   mm_query_tool --store URL KEY [--bucket N] [--last D --granularity D]
 *                 [--aggregate NAME] [--now EPOCH_S]
 *
 * Prints what mm_query_run prints; exit 0, 1 (the query failed: message on
 * stderr), 2 (usage).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agg.h"
#include "config.h"
#include "query.h"
#include "retry.h"
#include "store.h"

static int usage(void) {
  fputs("usage: mm_query_tool --store URL KEY [--bucket N] [--last D --granularity D]\n"
        "                     [--aggregate NAME] [--now EPOCH_S]\n",
        stderr);
  return 2;
}

static int parse_i64(const char *s, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end) return -1;
  *out = v;
  return 0;
}

int main(int argc, char **argv) {
  const char *url = NULL;
  int64_t bucket = 0;
  mm_query_t q = {.now_s = mm_now_ms() / 1000};
  mm_err_t err;
  mm_err_clear(&err);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--store") && v) url = argv[++i];
    else if (!strcmp(a, "--bucket") && v) {
      if (parse_i64(argv[++i], &bucket)) return usage();
      q.bucket = &bucket;
    } else if (!strcmp(a, "--last") && v) q.last = argv[++i];
    else if (!strcmp(a, "--granularity") && v) {
      if (mm_config_duration(argv[++i], &q.granularity_s, &err)) {
        fprintf(stderr, "mm_query_tool: --granularity: %s\n", err.msg);
        return 2;
      }
    } else if (!strcmp(a, "--aggregate") && v) {
      if (mm_agg_parse(argv[++i], &q.agg)) return usage();
      q.has_agg = 1;
    } else if (!strcmp(a, "--now") && v) {
      if (parse_i64(argv[++i], &q.now_s)) return usage();
    } else if (a[0] != '-' && !q.key) q.key = a;
    else return usage();
  }
  if (!url || !q.key) return usage();
  mm_store_t *s = NULL;
  if (mm_store_open(&s, url, NULL, &err)) {
    fprintf(stderr, "mm_query_tool: %s\n", err.msg);
    return 1;
  }
  int rc = mm_query_run(s, &q, stdout, &err);
  if (rc) fprintf(stderr, "mm_query_tool: %s\n", err.msg);
  mm_store_destroy(s);
  return rc ? 1 : 0;
}

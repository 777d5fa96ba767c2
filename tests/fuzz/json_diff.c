/*
 * json_diff.c - the differential test of json_diff.h as a program, for
 * long runs and for the parser's builds that CTest does not make (see
 * json_diff.sh, which builds and runs them all).
 *
 *   json_diff [-n COUNT] [-t SECONDS] [-s SEED] PATH...
 *
 * Every file named (or found in a named directory, two levels down) is a
 * seed: each is checked as it is, then COUNT mutated inputs (default
 * 1000000) are checked, or as many as SECONDS allow (default 60; 0 means
 * no time limit). Exits 0 when every input parsed identically with both
 * parsers; a difference aborts with the input and what differed.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "json_diff.h"

static unsigned char **seeds;
static size_t *lens, nseeds, capseeds;

static void add_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "json_diff: cannot open %s\n", path);
    exit(2);
  }
  size_t cap = 1 << 16, n = 0, r;
  unsigned char *buf = malloc(cap);
  while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
    n += r;
    if (n == cap) buf = realloc(buf, cap *= 2);
  }
  fclose(f);
  if (!buf) abort();
  if (nseeds == capseeds) {
    capseeds = capseeds ? 2 * capseeds : 64;
    seeds = realloc(seeds, capseeds * sizeof *seeds);
    lens = realloc(lens, capseeds * sizeof *lens);
    if (!seeds || !lens) abort();
  }
  /* exact size, like the mutated inputs */
  unsigned char *exact = malloc(n ? n : 1);
  if (!exact) abort();
  memcpy(exact, buf, n);
  free(buf);
  seeds[nseeds] = exact;
  lens[nseeds++] = n;
}

static void add_path(const char *path, int levels) {
  struct stat st;
  if (stat(path, &st) != 0) {
    fprintf(stderr, "json_diff: no such path %s\n", path);
    exit(2);
  }
  if (!S_ISDIR(st.st_mode)) {
    add_file(path);
    return;
  }
  if (levels == 0) return;
  DIR *dp = opendir(path);
  if (!dp) abort();
  struct dirent *de;
  while ((de = readdir(dp))) {
    if (de->d_name[0] == '.') continue;
    char sub[4096];
    int n = snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
    if (n <= 0 || (size_t)n >= sizeof sub) abort();
    add_path(sub, levels - 1);
  }
  closedir(dp);
}

int main(int argc, char **argv) {
  unsigned long count = 1000000;
  double seconds = 60;
  uint64_t seed = 1;
  int i = 1;
  for (; i + 1 < argc && argv[i][0] == '-'; i += 2) {
    if (!strcmp(argv[i], "-n")) count = strtoul(argv[i + 1], NULL, 10);
    else if (!strcmp(argv[i], "-t")) seconds = strtod(argv[i + 1], NULL);
    else if (!strcmp(argv[i], "-s")) seed = strtoull(argv[i + 1], NULL, 10);
    else break;
  }
  for (; i < argc; i++) add_path(argv[i], 2);
  if (!nseeds) {
    fprintf(stderr, "usage: json_diff [-n COUNT] [-t SECONDS] [-s SEED] PATH...\n");
    return 2;
  }
  unsigned long done = json_diff_run(seeds, lens, nseeds, count, seconds, seed);
  printf("json_diff: %zu seeds, %lu mutated inputs, %lu parses compared "
         "(%lu accepted), no difference\n",
         nseeds, done, jd_checked, jd_accepted);
  for (size_t k = 0; k < nseeds; k++) free(seeds[k]);
  free(seeds);
  free(lens);
  return 0;
}

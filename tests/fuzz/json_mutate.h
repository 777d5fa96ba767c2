/*
 * json_mutate.h - bounded random mutations of JSON inputs, for checking
 * the JSON parser beyond its seeds.
 *
 * jd_run feeds a check function bounded random mutations of seed inputs:
 * byte flips, truncations, deletions, duplicated ranges and insertions of
 * what the parser treats specially (quotes, backslashes and escapes,
 * UTF-8 lead and continuation bytes, control characters, white space,
 * structural characters, number parts, literals), often at 64-byte block
 * edges (the parser's string ends come from per-block masks), each
 * mutated input in an exact-size buffer so that a sanitizer build sees
 * any read past the end. Depth limits vary too. jd_exhaustive checks
 * every input one byte away from a few short inputs in the shapes the
 * parser has fast paths for.
 *
 * jd_seeds_add reads seed files and directories for both programs.
 *
 * Used by fuzz_json.c (its CTest replay runs the fuzz target's oracle and
 * invariants on a short mutation pass) and by json_diff.c (the parser
 * against an earlier version of itself, byte for byte; see json_diff.sh).
 */
#ifndef MM_JSON_MUTATE_H
#define MM_JSON_MUTATE_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* Checks one input at depth limit `depth` (0: the default); aborts on a
 * failure. */
typedef void (*jd_check_fn)(const unsigned char *s, size_t n, unsigned depth);

/* The helpers below are not all used by every includer. */
#define JD_UNUSED __attribute__((unused))

/* ------------------------------------------------------------------ */
/* Seeds                                                                */
/* ------------------------------------------------------------------ */

/* Seed inputs read from files, each in an exact-size buffer (a sanitizer
 * build then sees any read past the end). */
typedef struct {
  unsigned char **s;
  size_t *len;
  size_t n, cap;
} jd_seeds_t;

/* Reads file `path` into sd; any failure to read it exits 2, naming prog
 * (these are test programs: a seed that cannot be read is a broken run). */
static JD_UNUSED void jd_seeds_add_file(jd_seeds_t *sd, const char *path, const char *prog) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "%s: cannot open %s\n", prog, path);
    exit(2);
  }
  size_t cap = 1 << 16, n = 0, r;
  unsigned char *buf = malloc(cap);
  while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
    n += r;
    if (n == cap) {
      unsigned char *nb = realloc(buf, cap *= 2);
      if (!nb) free(buf);
      buf = nb;
    }
  }
  fclose(f);
  if (sd->n == sd->cap) {
    sd->cap = sd->cap ? 2 * sd->cap : 64;
    sd->s = realloc(sd->s, sd->cap * sizeof *sd->s);
    sd->len = realloc(sd->len, sd->cap * sizeof *sd->len);
  }
  unsigned char *exact = malloc(n ? n : 1);
  if (!buf || !sd->s || !sd->len || !exact) {
    fprintf(stderr, "%s: out of memory reading %s\n", prog, path);
    exit(2);
  }
  memcpy(exact, buf, n);
  free(buf);
  sd->s[sd->n] = exact;
  sd->len[sd->n++] = n;
}

/* Reads path into sd: a file, or every file of a directory tree `levels`
 * deep (two takes the fixtures' non-event/ and invalid/ along); names
 * starting with '.' are skipped. Returns the number of files read. */
static JD_UNUSED size_t jd_seeds_add(jd_seeds_t *sd, const char *path, int levels,
                                     const char *prog) {
  struct stat st;
  if (stat(path, &st) != 0) {
    fprintf(stderr, "%s: no such path %s\n", prog, path);
    exit(2);
  }
  if (!S_ISDIR(st.st_mode)) {
    jd_seeds_add_file(sd, path, prog);
    return 1;
  }
  if (levels == 0) return 0;
  DIR *dp = opendir(path);
  if (!dp) {
    fprintf(stderr, "%s: cannot read the directory %s\n", prog, path);
    exit(2);
  }
  size_t seen = 0;
  struct dirent *de;
  while ((de = readdir(dp))) {
    if (de->d_name[0] == '.') continue;
    char sub[4096];
    int n = snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
    if (n <= 0 || (size_t)n >= sizeof sub) {
      fprintf(stderr, "%s: path too long under %s\n", prog, path);
      exit(2);
    }
    seen += jd_seeds_add(sd, sub, levels - 1, prog);
  }
  closedir(dp);
  return seen;
}

static JD_UNUSED void jd_seeds_free(jd_seeds_t *sd) {
  for (size_t k = 0; k < sd->n; k++) free(sd->s[k]);
  free(sd->s);
  free(sd->len);
  memset(sd, 0, sizeof *sd);
}

/* ------------------------------------------------------------------ */
/* Mutations                                                            */
/* ------------------------------------------------------------------ */

/* xorshift64*: fixed seeds give the same inputs on every machine. */
static JD_UNUSED uint64_t jd_rand(uint64_t *st) {
  uint64_t x = *st;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *st = x;
  return x * 0x2545F4914F6CDD1DULL;
}

static JD_UNUSED size_t jd_below(uint64_t *st, size_t n) {
  return n ? (size_t)(jd_rand(st) % n) : 0;
}

/* What insertions insert: the bytes and short sequences the parser treats
 * specially. */
static const char *const jd_tokens[] = {
    "\"", "\\", "\\\"", "\\\\", "\\u", "\\u00e9", "\\uD83D\\uDE00", "\\uD800",
    "\\uDC00", "\\uD800\\u0041", "\\x", "\\n", "\\/", "\xC3\xA9", "\xE2\x82\xAC",
    "\xF0\x9F\x98\x80", "\x80", "\xBF", "\xC0\x80", "\xC1\xBF", "\xC2", "\xDF",
    "\xE0\x80\x80", "\xE0\xA0", "\xED\xA0\x80", "\xED\x9F\xBF", "\xEF\xBF\xBF",
    "\xF0\x80\x80\x80", "\xF4\x90\x80\x80", "\xF4\x8F\xBF\xBF", "\xF5", "\xF8",
    "\xFF", "\x01", "\x1F", "\x7F", " ", "\n", "\t", "\r", "  \n  ", "{", "}",
    "[", "]", ":", ",", "{\"S\":\"x\"}", "{\"N\":\"1\"}", "{\"BOOL\":true}",
    "{\"NULL\":true}", "{\"M\":{}}", "{\"L\":[]}", "{\"a\":", "\"k\":", "0",
    "-", ".", "e", "E+", "1.5e-3", "00", "-0", "true", "false", "null", "tru",
    "nul", "\xEF\xBB\xBF"};

/* Insertions that keep a string body valid (most positions are inside
 * one), so that many mutated inputs still parse and their tapes are
 * compared too. */
static const char *const jd_string_safe[] = {
    "x", "\\\"", "\\\\", "\\/", "\\n", "\\u00e9", "\\u20AC", "\\uD83D\\uDE00",
    "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80", "\xEF\xBF\xBF", "\xF4\x8F\xBF\xBF",
    "\xED\x9F\xBF", "\xC2\x80", " ", "~", "abcdefghijklmnopqrstuvwxyz0123456789"};

/* A position in [0, n], biased towards 64-byte block edges and the ends,
 * where the parser changes paths. */
static JD_UNUSED size_t jd_pos(uint64_t *st, size_t n) {
  size_t r = jd_below(st, 8);
  if (r < 3 && n >= 64) {
    size_t edge = 64 * (1 + jd_below(st, n / 64));
    size_t p = edge + jd_below(st, 7) - 3;
    return p > n ? n : p;
  }
  if (r == 3) {
    size_t back = jd_below(st, 20);
    return back > n ? 0 : n - back;
  }
  return jd_below(st, n + 1);
}

/* Writes one to four mutations of src[0..n) into dst (room for cap bytes)
 * and returns the new length. */
static JD_UNUSED size_t jd_mutate(uint64_t *st, const unsigned char *src, size_t n,
                        unsigned char *dst, size_t cap) {
  memcpy(dst, src, n);
  size_t r = jd_below(st, 20);
  int k = r < 12 ? 1 : r < 17 ? 2 : 3 + (int)(r & 1);
  while (k--) {
    size_t at = jd_pos(st, n);
    switch (jd_below(st, 12)) {
    case 0: case 1: /* flip a byte: a random value or one bit */
      if (at < n) {
        if (jd_below(st, 2)) dst[at] = (unsigned char)jd_rand(st);
        else dst[at] ^= (unsigned char)(1u << jd_below(st, 8));
      }
      break;
    case 2: /* truncate */
      n = at;
      break;
    case 3: { /* delete a short range */
      size_t len = 1 + jd_below(st, 8);
      if (at + len > n) len = n - at;
      memmove(dst + at, dst + at + len, n - at - len);
      n -= len;
      break;
    }
    case 4: { /* duplicate a short range (nesting, repeated members) */
      size_t len = 1 + jd_below(st, 40);
      if (at + len > n) len = n - at;
      if (n + len > cap) break;
      memmove(dst + at + len, dst + at, n - at);
      n += len;
      break;
    }
    default: { /* insert a token */
      const char *t =
          jd_below(st, 2)
              ? jd_tokens[jd_below(st, sizeof jd_tokens / sizeof *jd_tokens)]
              : jd_string_safe[jd_below(st, sizeof jd_string_safe /
                                                sizeof *jd_string_safe)];
      size_t len = strlen(t);
      if (n + len > cap) break;
      memmove(dst + at + len, dst + at, n - at);
      memcpy(dst + at, t, len);
      n += len;
      break;
    }
    }
  }
  return n;
}

/* A depth limit for one parse: mostly the default, sometimes small enough
 * for events and the corpus to reach it. */
static JD_UNUSED unsigned jd_depth(uint64_t *st) {
  size_t r = jd_below(st, 8);
  return r < 5 ? 0 : (unsigned)(1 + jd_below(st, 8));
}

static JD_UNUSED double jd_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Short inputs in the shapes the parser has fast paths for (attribute
 * values of one member, short names, literals, nested M and L), which
 * jd_exhaustive varies byte by byte. */
static const char *const jd_shapes[] = {
    "{\"k\":{\"S\":\"v\"},\"n\":{\"N\":\"12\"},\"b\":{\"BOOL\":false},"
    "\"z\":{\"NULL\":true},\"t\":{\"BOOL\":true}}",
    "[{\"M\":{\"x\":{\"L\":[{\"S\":\"y\"},{\"N\":\"-1.5e3\"}]},\"e\":{}}},"
    "{\"SS\":[\"a\",\"b\"]},{\"B\":\"AA==\"},{\"S\":\"\"}]",
    "{\"a\":{\"S\":\"v\",\"x\":1},\"b\":{\"S\":1},\"c\":{\"S\" : \"v\" }}",
    "{\"Keys\":{\"id\":{\"S\":\"\\u00e9\xC3\xA9\"}},\"n\":null,\"f\":false}"};

/* Every input one byte away from each of jd_shapes: each byte replaced
 * by each of the 256 values, each byte deleted, each value inserted at
 * each position; at the default depth limit and at a limit of 2. Returns
 * the number of inputs checked. */
static JD_UNUSED unsigned long jd_exhaustive(jd_check_fn check) {
  unsigned long done = 0;
  unsigned char buf[512];
  for (size_t t = 0; t < sizeof jd_shapes / sizeof *jd_shapes; t++) {
    const unsigned char *src = (const unsigned char *)jd_shapes[t];
    size_t n = strlen(jd_shapes[t]);
    for (size_t at = 0; at <= n; at++) {
      for (int op = 0; op < 3; op++) { /* replace, delete, insert */
        if (op < 2 && at == n) continue;
        for (unsigned v = 0; v < (op == 1 ? 1u : 256u); v++) {
          size_t m = at, rest = op == 2 ? at : at + 1;
          memcpy(buf, src, at);
          if (op != 1) buf[m++] = (unsigned char)v;
          memcpy(buf + m, src + rest, n - rest);
          m += n - rest;
          unsigned char *exact = malloc(m ? m : 1);
          if (!exact) abort();
          memcpy(exact, buf, m);
          check(exact, m, 0);
          check(exact, m, 2);
          free(exact);
          done++;
        }
      }
    }
  }
  return done;
}

/* Checks (with `check`) each of the nseeds inputs as it is, then
 * mutations of them in turn, until `count` mutated inputs were checked or `seconds` (when > 0)
 * have passed. Returns the number of mutated inputs checked. */
static JD_UNUSED unsigned long jd_run(jd_check_fn check, unsigned char *const *seeds,
                                      const size_t *lens, size_t nseeds,
                                      unsigned long count, double seconds, uint64_t seed) {
  uint64_t st = seed ? seed : 0x9E3779B97F4A7C15ULL;
  size_t most = 0;
  for (size_t i = 0; i < nseeds; i++) {
    check(seeds[i], lens[i], 0);
    check(seeds[i], lens[i], jd_depth(&st));
    if (lens[i] > most) most = lens[i];
  }
  jd_exhaustive(check);
  if (!nseeds) return 0;
  size_t cap = most + 1024;
  unsigned char *work = malloc(cap);
  if (!work) abort();
  double t0 = jd_now();
  unsigned long done = 0;
  while (done < count) {
    if ((done & 255) == 0 && seconds > 0 && jd_now() - t0 > seconds) break;
    size_t i = done % nseeds;
    size_t n = jd_mutate(&st, seeds[i], lens[i], work, cap);
    /* an exact-size copy: sanitizers see reads past the end */
    unsigned char *exact = malloc(n ? n : 1);
    if (!exact) abort();
    memcpy(exact, work, n);
    check(exact, n, jd_depth(&st));
    free(exact);
    done++;
  }
  free(work);
  return done;
}

#endif

/*
 * json_diff.h - differential test of the JSON parser against a reference
 * copy of an earlier version of it (tests/fuzz/json_ref.c).
 *
 * json_ref.c is runtime/json.c as it was before the parser's fast paths
 * were reworked (main at ca27cf9), kept byte for byte and compiled here
 * under renamed symbols (ref_json_*). A rework of the parser must not
 * change what it accepts, any node of the tape, the error code or any
 * byte of an error message; json_diff_check parses one input with both and
 * aborts on the first difference, naming it.
 *
 * json_diff_run feeds json_diff_check bounded random mutations of seed
 * inputs: byte flips, truncations, deletions, duplicated ranges and
 * insertions of what the parser treats specially (quotes, backslashes and
 * escapes, UTF-8 lead and continuation bytes, control characters, white
 * space, structural characters, number parts, literals), often at 64-byte
 * block edges (the parser's string ends come from per-block masks), each
 * mutated input in an exact-size buffer so that a sanitizer build sees
 * any read past the end. Depth limits vary too.
 *
 * json_diff_exhaustive also checks every input one byte away from a few
 * short inputs in the shapes the parser has fast paths for.
 *
 * Included by fuzz_json.c (the libFuzzer target and its CTest replay,
 * which also runs a short mutation pass) and by json_diff.c (a standalone
 * program for long runs and for the parser's other builds: SWAR without
 * SSE2, a tape that grows; see json_diff.sh). One translation unit may
 * include this once: json_ref.c's static names are file scope.
 */
#ifndef MM_JSON_DIFF_H
#define MM_JSON_DIFF_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err.h"
#include "json.h"

/* The reference parser, every external name renamed (json.h is already
 * included, so its prototypes keep the real names). */
#define mm_json_parse ref_json_parse
#define mm_json_free ref_json_free
#define mm_json_unescape ref_json_unescape
#define mm_json_get ref_json_get
#define mm_json_str_eq ref_json_str_eq
#define mm_json_strdup ref_json_strdup
#define mm_json_double ref_json_double
#define mm_json_emit ref_json_emit
int ref_json_parse(mm_json_doc_t *doc, const char *buf, size_t len,
                   unsigned max_depth, mm_err_t *err);
void ref_json_free(mm_json_doc_t *doc);
size_t ref_json_unescape(const char *raw, size_t len, char *dst);
uint32_t ref_json_get(const mm_json_doc_t *d, uint32_t obj, const char *key,
                      size_t klen);
int ref_json_str_eq(const mm_json_doc_t *d, uint32_t i, const char *s,
                    size_t n);
char *ref_json_strdup(const mm_json_doc_t *d, uint32_t i, size_t *len_out);
int ref_json_double(const mm_json_doc_t *d, uint32_t i, double *out);
void ref_json_emit(mm_buf_t *b, const mm_json_doc_t *d, uint32_t node,
                   mm_json_str_fn str_fn);
#include "json_ref.c"
#undef mm_json_parse
#undef mm_json_free
#undef mm_json_unescape
#undef mm_json_get
#undef mm_json_str_eq
#undef mm_json_strdup
#undef mm_json_double
#undef mm_json_emit

/* The helpers below are not all used by every includer. */
#define JD_UNUSED __attribute__((unused))

/* Counters of json_diff_check, for the runners' summaries. */
static JD_UNUSED unsigned long jd_checked, jd_accepted;

/* Prints the input (escaped, at most 2000 bytes) and the difference, and
 * aborts, which libFuzzer reports as a crash. */
static JD_UNUSED void jd_fail(const unsigned char *s, size_t n, unsigned depth,
                    const char *what) {
  fprintf(stderr, "json_diff: %s (%zu bytes, max_depth %u)\ninput: \"", what,
          n, depth);
  for (size_t i = 0; i < n && i < 2000; i++) {
    if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\')
      fputc(s[i], stderr);
    else
      fprintf(stderr, "\\x%02X", s[i]);
  }
  fprintf(stderr, "\"%s\n", n > 2000 ? "..." : "");
  abort();
}

/* Parses s[0..n) with the parser under test and the reference at the
 * same depth limit; aborts unless return code, error code, message and
 * the whole document (every node's tag, len and next) are identical. */
static JD_UNUSED void json_diff_check(const unsigned char *s, size_t n, unsigned depth) {
  mm_json_doc_t a, b;
  mm_err_t ea, eb;
  char what[2 * MM_ERR_MAX + 128];
  mm_err_clear(&ea);
  mm_err_clear(&eb);
  int ra = mm_json_parse(&a, (const char *)s, n, depth, &ea);
  int rb = ref_json_parse(&b, (const char *)s, n, depth, &eb);
  jd_checked++;
  if (ra != rb || ea.code != eb.code || strcmp(ea.msg, eb.msg) != 0) {
    snprintf(what, sizeof what, "rc %d vs reference %d: \"%s\" vs \"%s\"", ra,
             rb, ea.msg, eb.msg);
    jd_fail(s, n, depth, what);
  }
  if (a.src != b.src || a.src_len != b.src_len || a.count != b.count ||
      (ra != 0 && (a.nodes || b.nodes || a.cap || b.cap))) {
    snprintf(what, sizeof what, "document: count %u vs %u, src_len %zu vs %zu",
             a.count, b.count, a.src_len, b.src_len);
    jd_fail(s, n, depth, what);
  }
  for (uint32_t i = 0; i < a.count; i++) {
    const mm_json_node_t *x = &a.nodes[i], *y = &b.nodes[i];
    if (x->tag != y->tag || x->len != y->len || x->next != y->next) {
      snprintf(what, sizeof what,
               "node %u: tag %08X len %u next %u vs reference tag %08X len "
               "%u next %u",
               i, x->tag, x->len, x->next, y->tag, y->len, y->next);
      jd_fail(s, n, depth, what);
    }
  }
  if (ra == 0) jd_accepted++;
  mm_json_free(&a);
  ref_json_free(&b);
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
 * json_diff_exhaustive varies byte by byte. */
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
static JD_UNUSED unsigned long json_diff_exhaustive(void) {
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
          json_diff_check(exact, m, 0);
          json_diff_check(exact, m, 2);
          free(exact);
          done++;
        }
      }
    }
  }
  return done;
}

/* Checks each of the nseeds inputs as it is, then mutations of them in
 * turn, until `count` mutated inputs were checked or `seconds` (when > 0)
 * have passed. Returns the number of mutated inputs checked. */
static JD_UNUSED unsigned long json_diff_run(unsigned char *const *seeds,
                                   const size_t *lens, size_t nseeds,
                                   unsigned long count, double seconds,
                                   uint64_t seed) {
  uint64_t st = seed ? seed : 0x9E3779B97F4A7C15ULL;
  size_t most = 0;
  for (size_t i = 0; i < nseeds; i++) {
    json_diff_check(seeds[i], lens[i], 0);
    json_diff_check(seeds[i], lens[i], jd_depth(&st));
    if (lens[i] > most) most = lens[i];
  }
  json_diff_exhaustive();
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
    json_diff_check(exact, n, jd_depth(&st));
    free(exact);
    done++;
  }
  free(work);
  return done;
}

#endif

/*
 * json_diff.c - the JSON parser against an earlier version of itself.
 *
 *   json_diff [-n COUNT] [-t SECONDS] [-s SEED] PATH...
 *
 * Built by json_diff.sh, which puts runtime/json.c as it was at a given
 * commit (git show REV:runtime/json.c) beside it as json_ref.c; that copy
 * is compiled in here under renamed symbols (ref_json_*). A rework of the
 * parser that means to keep its behaviour must not change what it
 * accepts, any node of the tape, the error code or any byte of an error
 * message: every file named (or found in a named directory, two levels
 * down) is a seed, checked as it is and then through COUNT mutated inputs
 * (json_mutate.h; default 1000000) or as many as SECONDS allow (default
 * 60; 0 means no time limit). Exits 0 when every input parsed identically
 * with both parsers; a difference aborts with the input and what differed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "json.h"
#include "json_mutate.h"


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

/* Counters of json_diff_check, for the summary. */
static unsigned long jd_checked, jd_accepted;

/* Prints the input (escaped, at most 2000 bytes) and the difference, and
 * aborts, which libFuzzer reports as a crash. */
static void jd_fail(const unsigned char *s, size_t n, unsigned depth,
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
static void json_diff_check(const unsigned char *s, size_t n, unsigned depth) {
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
  jd_seeds_t sd = {0};
  for (; i < argc; i++) jd_seeds_add(&sd, argv[i], 2, "json_diff");
  if (!sd.n) {
    fprintf(stderr, "usage: json_diff [-n COUNT] [-t SECONDS] [-s SEED] PATH...\n");
    return 2;
  }
  unsigned long done = jd_run(json_diff_check, sd.s, sd.len, sd.n, count, seconds, seed);
  printf("json_diff: %zu seeds, %lu mutated inputs, %lu parses compared "
         "(%lu accepted), no difference\n",
         sd.n, done, jd_checked, jd_accepted);
  jd_seeds_free(&sd);
  return 0;
}

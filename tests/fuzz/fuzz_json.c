/*
 * fuzz_json.c - libFuzzer target for the JSON parser and the event checks.
 *
 * Each input is parsed with a small depth limit and then:
 *  - compared with a deliberately simple recursive reference parser (the
 *    oracle): both must accept or both reject, with the same node count;
 *  - on failure, the message must name a byte offset inside the input;
 *  - on success, the whole tape is walked: next indices and element counts
 *    consistent, slices inside the input, every string unescaped (decoded
 *    text valid UTF-8, never longer than the raw text, equal through
 *    mm_json_str_eq and mm_json_strdup), every member found by mm_json_get
 *    (last duplicate wins), every number readable by mm_json_double;
 *  - the default depth limit gives the identical tape;
 *  - mm_event_parse and mm_event_record run on it without breaking their
 *    own promises.
 * An invariant failure aborts, which libFuzzer reports as a crash.
 *
 * Built two ways (cmake/10-json.cmake): with -fsanitize=fuzzer as the
 * fuzz_json target (MM_FUZZ=ON, clang), and with MM_FUZZ_REPLAY as a
 * plain program whose main() runs every file (or every file in every
 * directory) named on the command line, so CTest replays the seed corpus
 * and the fixtures in every normal test run; the replay then runs the
 * target on a bounded number of mutations of those inputs (json_mutate.h:
 * REPLAY_MUTATIONS or REPLAY_SECONDS, whichever ends first). Comparing the
 * parser byte for byte with an earlier version of itself is
 * json_diff.sh's job.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "json.h"
#include "json_mutate.h"

/* Depth limit used for fuzzing: small, so deep inputs hit it often. */
#define FUZZ_DEPTH 16

#define FZ_CHECK(cond)                                                       \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "fuzz_json: invariant failed: %s (%s:%d)\n", #cond,    \
              __FILE__, __LINE__);                                           \
      abort();                                                               \
    }                                                                        \
  } while (0)

typedef unsigned char uchar;

/* ------------------------------------------------------------------ */
/* Reference: a recursive-descent validator written for clarity only.   */
/* ------------------------------------------------------------------ */

typedef struct {
  const uchar *s;
  size_t n, i;
  unsigned depth, max_depth;
  size_t nodes;
} ref_t;

/* Decodes one UTF-8 character at s[*i] by computing its code point and
 * checking it against the shortest form, the surrogate range and U+10FFFF. */
static int ref_utf8_char(const uchar *s, size_t n, size_t *i) {
  uchar c = s[*i];
  int len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
  if (len == 0 || c > 0xF7) return 0;
  if (*i + (size_t)len > n) return 0;
  uint32_t cp = c & (0x7Fu >> len);
  for (int k = 1; k < len; k++) {
    if ((s[*i + k] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (s[*i + k] & 0x3Fu);
  }
  static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  *i += (size_t)len;
  return 1;
}

/* 1 when s[0..n) is entirely valid UTF-8. */
static int ref_utf8_ok(const uchar *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (s[i] < 0x80) i++;
    else if (!ref_utf8_char(s, n, &i)) return 0;
  }
  return 1;
}

static void ref_ws(ref_t *r) {
  while (r->i < r->n && (r->s[r->i] == ' ' || r->s[r->i] == '\t' ||
                         r->s[r->i] == '\n' || r->s[r->i] == '\r'))
    r->i++;
}

static int ref_hex4(ref_t *r, uint32_t *out) {
  if (r->i + 4 > r->n) return 0;
  uint32_t v = 0;
  for (int k = 0; k < 4; k++) {
    uchar c = r->s[r->i + k];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10u;
    else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10u;
    else return 0;
  }
  r->i += 4;
  *out = v;
  return 1;
}

static int ref_string(ref_t *r) {
  if (r->i >= r->n || r->s[r->i] != '"') return 0;
  r->i++;
  r->nodes++;
  for (;;) {
    if (r->i >= r->n) return 0;
    uchar c = r->s[r->i];
    if (c == '"') {
      r->i++;
      return 1;
    }
    if (c < 0x20) return 0;
    if (c >= 0x80) {
      if (!ref_utf8_char(r->s, r->n, &r->i)) return 0;
      continue;
    }
    if (c != '\\') {
      r->i++;
      continue;
    }
    r->i++;
    if (r->i >= r->n) return 0;
    c = r->s[r->i++];
    if (strchr("\"\\/bfnrt", c) && c) continue;
    if (c != 'u') return 0;
    uint32_t cp, lo;
    if (!ref_hex4(r, &cp)) return 0;
    if (cp >= 0xDC00 && cp <= 0xDFFF) return 0;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      if (r->i + 2 > r->n || r->s[r->i] != '\\' || r->s[r->i + 1] != 'u')
        return 0;
      r->i += 2;
      if (!ref_hex4(r, &lo) || lo < 0xDC00 || lo > 0xDFFF) return 0;
    }
  }
}

static int ref_digits(ref_t *r) {
  size_t start = r->i;
  while (r->i < r->n && r->s[r->i] >= '0' && r->s[r->i] <= '9') r->i++;
  return r->i > start;
}

static int ref_number(ref_t *r) {
  r->nodes++;
  if (r->s[r->i] == '-') r->i++;
  if (r->i >= r->n) return 0;
  if (r->s[r->i] == '0') r->i++;
  else if (!ref_digits(r)) return 0;
  if (r->i < r->n && r->s[r->i] == '.') {
    r->i++;
    if (!ref_digits(r)) return 0;
  }
  if (r->i < r->n && (r->s[r->i] == 'e' || r->s[r->i] == 'E')) {
    r->i++;
    if (r->i < r->n && (r->s[r->i] == '+' || r->s[r->i] == '-')) r->i++;
    if (!ref_digits(r)) return 0;
  }
  return 1;
}

static int ref_value(ref_t *r);

static int ref_container(ref_t *r, uchar close, int object) {
  if (++r->depth > r->max_depth) return 0;
  r->nodes++;
  r->i++;
  ref_ws(r);
  if (r->i < r->n && r->s[r->i] == close) {
    r->i++;
    r->depth--;
    return 1;
  }
  for (;;) {
    if (object) {
      ref_ws(r);
      if (!ref_string(r)) return 0;
      ref_ws(r);
      if (r->i >= r->n || r->s[r->i] != ':') return 0;
      r->i++;
    }
    if (!ref_value(r)) return 0;
    ref_ws(r);
    if (r->i >= r->n) return 0;
    if (r->s[r->i] == ',') {
      r->i++;
      continue;
    }
    if (r->s[r->i] != close) return 0;
    r->i++;
    r->depth--;
    return 1;
  }
}

static int ref_value(ref_t *r) {
  ref_ws(r);
  if (r->i >= r->n) return 0;
  uchar c = r->s[r->i];
  static const char *lits[] = {"true", "false", "null"};
  switch (c) {
  case '{': return ref_container(r, '}', 1);
  case '[': return ref_container(r, ']', 0);
  case '"': return ref_string(r);
  case 't': case 'f': case 'n': {
    const char *l = lits[c == 't' ? 0 : c == 'f' ? 1 : 2];
    size_t ln = strlen(l);
    if (r->n - r->i < ln || memcmp(r->s + r->i, l, ln) != 0) return 0;
    r->i += ln;
    r->nodes++;
    return 1;
  }
  default:
    if (c == '-' || (c >= '0' && c <= '9')) return ref_number(r);
    return 0;
  }
}

/* The reference verdict; *nodes gets the node count when accepted. */
static int ref_parse(const uchar *s, size_t n, unsigned max_depth,
                     size_t *nodes) {
  ref_t r = {s, n, 0, 0, max_depth, 0};
  if (n >= 3 && s[0] == 0xEF && s[1] == 0xBB && s[2] == 0xBF) r.i = 3;
  if (!ref_value(&r)) return 0;
  ref_ws(&r);
  if (r.i != n) return 0;
  *nodes = r.nodes;
  return 1;
}

/* ------------------------------------------------------------------ */
/* Tape walk                                                            */
/* ------------------------------------------------------------------ */

/* Checks string node i: decoding, comparison, copy. Returns the decoded
 * text (malloc'd) for member lookups; *dn gets its length. */
static char *check_string(const mm_json_doc_t *d, uint32_t i, size_t *dn) {
  const char *raw = mm_json_raw(d, i);
  size_t len = mm_json_len(d, i);
  int has_bs = memchr(raw, '\\', len) != NULL;
  FZ_CHECK(mm_json_has_escapes(d, i) == has_bs);
  char *dst = malloc(len + 1);
  FZ_CHECK(dst != NULL);
  size_t n = mm_json_unescape(raw, len, dst);
  FZ_CHECK(n <= len);
  FZ_CHECK(has_bs ? n < len : n == len);
  if (!has_bs) FZ_CHECK(memcmp(dst, raw, len) == 0);
  FZ_CHECK(ref_utf8_ok((const uchar *)dst, n));
  FZ_CHECK(mm_json_str_eq(d, i, dst, n));
  if (n > 0) FZ_CHECK(!mm_json_str_eq(d, i, dst, n - 1));
  size_t sn = 0;
  char *dup = mm_json_strdup(d, i, &sn);
  FZ_CHECK(dup != NULL && sn == n && memcmp(dup, dst, n) == 0 && !dup[n]);
  free(dup);
  *dn = n;
  return dst;
}

/* Walks the whole tape of a parsed document. */
static void walk(const mm_json_doc_t *d) {
  FZ_CHECK(d->count >= 1 && d->count <= d->cap);
  FZ_CHECK(mm_json_next(d, 0) == d->count);
  for (uint32_t i = 0; i < d->count; i++) {
    uint32_t nx = mm_json_next(d, i);
    uint32_t off = d->nodes[i].tag >> 4;
    mm_json_type_t t = mm_json_type(d, i);
    FZ_CHECK(nx > i && nx <= d->count);
    FZ_CHECK(off < d->src_len);
    FZ_CHECK(t <= MM_JSON_OBJ);
    switch (t) {
    case MM_JSON_NULL: case MM_JSON_TRUE: case MM_JSON_FALSE: {
      static const char *lit[] = {"null", "false", "true"};
      size_t ln = strlen(lit[t]);
      FZ_CHECK(nx == i + 1 && mm_json_len(d, i) == 0);
      FZ_CHECK(off + ln <= d->src_len && !memcmp(d->src + off, lit[t], ln));
      break;
    }
    case MM_JSON_NUM: {
      double v;
      FZ_CHECK(nx == i + 1);
      FZ_CHECK(mm_json_len(d, i) > 0 && off + mm_json_len(d, i) <= d->src_len);
      FZ_CHECK(mm_json_double(d, i, &v) == 0 && !isnan(v));
      break;
    }
    case MM_JSON_STR: {
      size_t dn;
      FZ_CHECK(nx == i + 1);
      FZ_CHECK(off >= 1 && off + mm_json_len(d, i) < d->src_len);
      FZ_CHECK(d->src[off - 1] == '"' && d->src[off + mm_json_len(d, i)] == '"');
      free(check_string(d, i, &dn));
      break;
    }
    case MM_JSON_ARR: case MM_JSON_OBJ: {
      int obj = t == MM_JSON_OBJ;
      uint32_t c = i + 1, n = 0;
      FZ_CHECK(d->src[off] == (obj ? '{' : '['));
      while (c < nx) {
        if (obj && n % 2 == 0) FZ_CHECK(mm_json_type(d, c) == MM_JSON_STR);
        c = mm_json_next(d, c);
        n++;
      }
      FZ_CHECK(c == nx);
      FZ_CHECK(n == mm_json_len(d, i) * (obj ? 2u : 1u));
      if (!obj) break;
      /* every key finds the value of its last duplicate (bounded work) */
      uint32_t k = i + 1;
      for (uint32_t m = 0; m < mm_json_len(d, i) && m < 64; m++) {
        size_t kn;
        char *key = check_string(d, k, &kn);
        uint32_t want = 0, k2 = i + 1;
        for (uint32_t m2 = 0; m2 < mm_json_len(d, i); m2++) {
          if (mm_json_str_eq(d, k2, key, kn)) want = k2 + 1;
          k2 = mm_json_next(d, k2 + 1);
        }
        FZ_CHECK(want != 0 && mm_json_get(d, i, key, kn) == want);
        free(key);
        k = mm_json_next(d, k + 1);
      }
      break;
    }
    }
  }
}

/* The event layer on a parsed input: its promises, whatever the shape. */
static void check_event(const uint8_t *data, size_t size) {
  mm_event_t ev;
  mm_err_t e;
  const char *etype = NULL;
  mm_err_clear(&e);
  int rc = mm_event_parse(&ev, (const char *)data, size, &etype, &e);
  if (rc != 0) {
    FZ_CHECK(rc == MM_EINVAL && etype && e.msg[0]);
    FZ_CHECK(!strcmp(etype, MM_ETYPE_NOT_STREAM) ||
             !strcmp(etype, MM_ETYPE_INVALID_JSON));
    FZ_CHECK(ev.doc.nodes == NULL);
    return;
  }
  FZ_CHECK(mm_json_type(&ev.doc, ev.records) == MM_JSON_ARR);
  FZ_CHECK(ev.nrecords == mm_json_len(&ev.doc, ev.records));
  FZ_CHECK(!ev.is_window || ev.state != 0);
  uint32_t r = mm_json_first(&ev.doc, ev.records);
  char prev[MM_EVENT_ID_MAX] = "";
  for (uint32_t k = 0; k < ev.nrecords; k++, r = mm_json_next(&ev.doc, r)) {
    mm_record_info_t info;
    mm_err_clear(&e);
    rc = mm_event_record(&ev, r, &info, &e);
    FZ_CHECK(rc == 0 || (rc == MM_EINVAL && e.msg[0]));
    FZ_CHECK(strlen(info.seq) < MM_EVENT_ID_MAX);
    FZ_CHECK(strlen(info.event_id) < MM_EVENT_ID_MAX);
    if (rc == 0) FZ_CHECK(info.seq[0] && info.event_id[0]);
    if (info.has_time) FZ_CHECK(isfinite(info.time) && info.time >= 0);
    int c1 = mm_seq_cmp(info.seq, prev), c2 = mm_seq_cmp(prev, info.seq);
    FZ_CHECK((c1 > 0) == (c2 < 0) && (c1 == 0) == (c2 == 0));
    memcpy(prev, info.seq, sizeof prev);
  }
  mm_event_free(&ev);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  mm_json_doc_t d;
  mm_err_t e;
  size_t ref_nodes = 0;
  mm_err_clear(&e);
  int rc = mm_json_parse(&d, (const char *)data, size, FUZZ_DEPTH, &e);
  int ref_ok = ref_parse(data, size, FUZZ_DEPTH, &ref_nodes);
  if (rc != 0) {
    size_t at = (size_t)-1;
    FZ_CHECK(!ref_ok);
    FZ_CHECK(rc == MM_EINVAL || rc == MM_ELIMIT);
    FZ_CHECK(e.code == rc);
    FZ_CHECK(sscanf(e.msg, "byte %zu: ", &at) == 1 && at <= size);
    FZ_CHECK(d.nodes == NULL && d.count == 0);
    mm_json_free(&d);
    if (rc == MM_ELIMIT) check_event(data, size); /* deeper limit there */
    return 0;
  }
  FZ_CHECK(ref_ok);
  FZ_CHECK(d.count == ref_nodes);
  FZ_CHECK(d.src == (const char *)data && d.src_len == size);
  walk(&d);

  /* the default limit is larger: same tape */
  mm_json_doc_t d2;
  FZ_CHECK(mm_json_parse(&d2, (const char *)data, size, 0, &e) == 0);
  FZ_CHECK(d2.count == d.count);
  FZ_CHECK(memcmp(d2.nodes, d.nodes, d.count * sizeof *d.nodes) == 0);
  mm_json_free(&d2);
  mm_json_free(&d);

  check_event(data, size);
  return 0;
}

#ifdef MM_FUZZ_REPLAY
/* The mutation pass after the replay: enough for a few seconds at most
 * (about half a second in a normal build, a few under sanitizers). */
#define REPLAY_MUTATIONS 200000
#define REPLAY_SECONDS 3.0

/* The mutation pass's check: the target itself (its depth limit is its
 * own). */
static void check_mutated(const unsigned char *s, size_t n, unsigned depth) {
  (void)depth;
  LLVMFuzzerTestOneInput(s, n);
}

int main(int argc, char **argv) {
  /* every file named, or in a named directory tree (two levels, so the
   * fixtures' non-event/ and invalid/ come along), as it is; then the
   * same inputs as the mutation pass's seeds */
  jd_seeds_t sd = {0};
  for (int i = 1; i < argc; i++) jd_seeds_add(&sd, argv[i], 2, "fuzz_json_replay");
  for (size_t k = 0; k < sd.n; k++) LLVMFuzzerTestOneInput(sd.s[k], sd.len[k]);
  printf("fuzz_json_replay: %zu inputs replayed\n", sd.n);
  unsigned long m = jd_run(check_mutated, sd.s, sd.len, sd.n, REPLAY_MUTATIONS,
                           REPLAY_SECONDS, 1);
  printf("fuzz_json_replay: %lu mutated inputs checked\n", m);
  int ok = sd.n > 0; /* an empty corpus is a broken test */
  jd_seeds_free(&sd);
  return ok ? 0 : 1;
}
#endif

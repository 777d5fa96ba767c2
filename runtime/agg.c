/*
 * agg.c - aggregate kinds, deltas, stored encodings, merge, render and
 * combine (see agg.h for the stored encodings).
 *
 * Error policy of mm_agg_merge and mm_agg_combine: every failure other
 * than MM_ENOMEM is MM_EPERM (a stored value that does not parse, a delta
 * of the wrong type, a sum that needs more than 38 digits): retrying cannot
 * fix any of them, which is what a store reports as a permanent failure,
 * and what DynamoDB's ValidationException means for the same inputs.
 */
#include "agg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "sketch.h"

/* Longest event-time text accepted in a first/last value. */
#define TIME_TEXT_MAX 40

static const char *const agg_names[] = {"sum",  "count", "min", "max", "first",
                                        "last", "set",   "hll", "topk"};
#define NAGG (sizeof agg_names / sizeof agg_names[0])

/* ------------------------------------------------------------------ */
/* kinds                                                                */
/* ------------------------------------------------------------------ */

int mm_agg_parse(const char *name, mm_agg_t *out) {
  for (size_t i = 0; name && i < NAGG; i++)
    if (strcmp(name, agg_names[i]) == 0) {
      *out = (mm_agg_t)i;
      return 0;
    }
  return MM_EINVAL;
}

const char *mm_agg_name(mm_agg_t agg) {
  return (unsigned)agg < NAGG ? agg_names[agg] : "unknown";
}

int mm_agg_needs_value(mm_agg_t agg) { return agg != MM_AGG_COUNT; }

int mm_agg_is_additive(mm_agg_t agg) { return agg == MM_AGG_SUM || agg == MM_AGG_COUNT; }

/* ------------------------------------------------------------------ */
/* scalars and deltas                                                   */
/* ------------------------------------------------------------------ */

void mm_scalar_free(mm_scalar_t *s) {
  if (!s) return;
  free(s->str);
  memset(s, 0, sizeof *s);
}

int mm_scalar_copy(mm_scalar_t *dst, const mm_scalar_t *src, mm_err_t *err) {
  size_t len = src->str ? src->len : 0; /* a NULL string is the empty one */
  *dst = *src;
  dst->str = NULL;
  if (src->is_num) return 0;
  dst->len = len;
  dst->str = malloc(len + 1);
  if (!dst->str) {
    dst->len = 0;
    return mm_err_set(err, MM_ENOMEM, "out of memory copying a string value");
  }
  if (len) memcpy(dst->str, src->str, len);
  dst->str[len] = '\0';
  return 0;
}

/* Bytewise comparison: memcmp on the common prefix, then shorter first. */
static int bytes_cmp(const char *a, size_t alen, const char *b, size_t blen) {
  size_t n = alen < blen ? alen : blen;
  int c = n ? memcmp(a, b, n) : 0;
  if (c) return c < 0 ? -1 : 1;
  return alen < blen ? -1 : alen > blen;
}


void mm_delta_free(mm_delta_t *d) {
  if (!d) return;
  mm_scalar_free(&d->v);
  for (size_t i = 0; d->members && i < d->nmembers; i++) mm_scalar_free(&d->members[i]);
  free(d->members);
  d->members = NULL;
  d->nmembers = 0;
}

/* ------------------------------------------------------------------ */
/* stored encodings                                                     */
/* ------------------------------------------------------------------ */

/* A scalar borrowed from a stored value or a delta: nothing to free. */
typedef struct sview {
  int is_num;
  mm_dec_t num;
  const char *str;
  size_t len;
} sview_t;

static void view_of(sview_t *v, const mm_scalar_t *s) {
  v->is_num = s->is_num;
  v->num = s->num;
  v->str = s->is_num ? NULL : (s->str ? s->str : "");
  v->len = s->is_num || !s->str ? 0 : s->len; /* a NULL string is empty */
}

static int view_cmp(const sview_t *a, const sview_t *b) {
  if (a->is_num != b->is_num) return a->is_num ? -1 : 1;
  if (a->is_num) return mm_dec_cmp(&a->num, &b->num);
  return bytes_cmp(a->str, a->len, b->str, b->len);
}

int mm_scalar_cmp(const mm_scalar_t *a, const mm_scalar_t *b) {
  sview_t x, y;
  view_of(&x, a);
  view_of(&y, b);
  return view_cmp(&x, &y);
}

/* Turns any failure but MM_ENOMEM into MM_EPERM, keeping the message. */
static int permanent(mm_err_t *err, int rc) {
  if (rc == 0 || rc == MM_ENOMEM) return rc;
  if (err) err->code = MM_EPERM;
  return MM_EPERM;
}

/* A stored value did not parse: says so in err and returns MM_EPERM
 * (err may be NULL). */
static int stored_fail(mm_err_t *err) {
  if (!err) return MM_EPERM;
  mm_err_prefix(err, "stored value");
  err->code = MM_EPERM;
  return MM_EPERM;
}

/* Member k of a stored set did not parse. */
static int member_fail(mm_err_t *err, size_t k) {
  if (!err) return MM_EPERM;
  mm_err_prefix(err, "set member %zu", k);
  err->code = MM_EPERM;
  return MM_EPERM;
}

/* Parses the min/max scalar encoding ('n' + decimal text, 's' + bytes). */
static int view_parse(sview_t *v, const char *p, size_t n, mm_err_t *err) {
  memset(v, 0, sizeof *v);
  if (n == 0) return mm_err_set(err, MM_EPERM, "empty scalar (no 'n'/'s' tag)");
  if (p[0] == 's') {
    v->str = p + 1;
    v->len = n - 1;
    return 0;
  }
  if (p[0] != 'n')
    return mm_err_set(err, MM_EPERM, "unknown scalar tag 0x%02x (expected 'n' or 's')",
                      (unsigned char)p[0]);
  v->is_num = 1;
  return permanent(err, mm_dec_parse(&v->num, p + 1, n - 1, err));
}

/* Appends the min/max scalar encoding of v. */
static void view_encode(mm_buf_t *b, const sview_t *v) {
  if (v->is_num) {
    char t[MM_DEC_TEXT_MAX];
    size_t n = mm_dec_format(&v->num, t);
    mm_buf_addc(b, 'n');
    mm_buf_add(b, t, n);
  } else {
    mm_buf_addc(b, 's');
    mm_buf_add(b, v->str, v->len);
  }
}

/* Appends v as JSON: a number with its canonical decimal text, or a
 * string literal. */
static void view_json(mm_buf_t *b, const sview_t *v) {
  if (v->is_num) {
    char t[MM_DEC_TEXT_MAX];
    size_t n = mm_dec_format(&v->num, t);
    mm_buf_add(b, t, n);
  } else {
    mm_buf_json_str(b, v->str, v->len);
  }
}

/* Parses "TIME|scalar" (first/last). The scalar may itself contain '|',
 * so the first '|' ends the time. */
static int timed_parse(double *t, sview_t *v, const char *p, size_t n, mm_err_t *err) {
  const char *bar = n ? memchr(p, '|', n) : NULL;
  if (!bar) return mm_err_set(err, MM_EPERM, "no '|' after the event time");
  size_t tl = (size_t)(bar - p);
  char tmp[TIME_TEXT_MAX + 1];
  if (tl == 0 || tl > TIME_TEXT_MAX)
    return mm_err_set(err, MM_EPERM, "event time of %zu characters", tl);
  memcpy(tmp, p, tl);
  tmp[tl] = '\0';
  char *end = NULL;
  *t = strtod(tmp, &end);
  if (end != tmp + tl || !isfinite(*t))
    return mm_err_set(err, MM_EPERM, "event time \"%s\" is not a finite number", tmp);
  return view_parse(v, bar + 1, n - tl - 1, err);
}

/* Appends "TIME|scalar", the time with 17 significant digits so it reads
 * back as the same double. */
static void timed_encode(mm_buf_t *b, double t, const sview_t *v) {
  mm_buf_printf(b, "%.17g|", t);
  view_encode(b, v);
}

/* The bytes a sketch adds for a scalar: a string's bytes, a number's
 * canonical decimal text (written into tmp). */
static void item_bytes(const mm_scalar_t *s, char tmp[MM_DEC_TEXT_MAX], const char **p,
                       size_t *n) {
  if (s->is_num) {
    *n = mm_dec_format(&s->num, tmp);
    *p = tmp;
  } else {
    *p = s->str ? s->str : "";
    *n = s->str ? s->len : 0;
  }
}

/* ------------------------------------------------------------------ */
/* sets                                                                 */
/* ------------------------------------------------------------------ */

/* One encoded member: an offset into the scratch buffer while building,
 * then a pointer once the buffer no longer moves. */
typedef struct piece {
  size_t off;
  size_t len;
  const char *p;
} piece_t;

static int piece_cmp(const void *a, const void *b) {
  const piece_t *x = a, *y = b;
  return bytes_cmp(x->p, x->len, y->p, y->len);
}

/* A growable list of pieces. */
typedef struct pieces {
  piece_t *v;
  size_t n, cap;
} pieces_t;

static int pieces_push(pieces_t *ps, size_t off, size_t len, mm_err_t *err) {
  if (ps->n == ps->cap) {
    size_t cap = ps->cap ? ps->cap * 2 : 16;
    piece_t *nv = realloc(ps->v, cap * sizeof *nv);
    if (!nv) return mm_err_set(err, MM_ENOMEM, "out of memory building a set");
    ps->v = nv;
    ps->cap = cap;
  }
  ps->v[ps->n].off = off;
  ps->v[ps->n].len = len;
  ps->n++;
  return 0;
}

/* Encodes v into scratch (canonical form) and records it. */
static int pieces_add_view(pieces_t *ps, mm_buf_t *scratch, const sview_t *v,
                           mm_err_t *err) {
  size_t off = scratch->len;
  view_encode(scratch, v);
  if (mm_buf_failed(scratch)) return mm_err_set(err, MM_ENOMEM, "out of memory building a set");
  return pieces_push(ps, off, scratch->len - off, err);
}

/*
 * Splits a stored set on '\0', validating each member, and adds the
 * members in canonical form. "" is the empty set. An empty member (two
 * separators in a row, or one at either end) is corrupt.
 */
static int pieces_add_stored(pieces_t *ps, mm_buf_t *scratch, const char *p, size_t n,
                             mm_err_t *err) {
  size_t start = 0, k = 0;
  while (n && start <= n) {
    const char *z = memchr(p + start, '\0', n - start);
    size_t end = z ? (size_t)(z - p) : n;
    sview_t v;
    if (end == start)
      return mm_err_set(err, MM_EPERM, "set member %zu is empty", k);
    int rc = view_parse(&v, p + start, end - start, err);
    if (rc) return member_fail(err, k);
    if ((rc = pieces_add_view(ps, scratch, &v, err))) return rc;
    start = end + 1;
    k++;
  }
  return 0;
}

/* Adds a delta's members; a string member with a NUL byte cannot be stored
 * between NUL separators. */
static int pieces_add_members(pieces_t *ps, mm_buf_t *scratch, const mm_scalar_t *m,
                              size_t n, mm_err_t *err) {
  for (size_t i = 0; i < n; i++) {
    sview_t v;
    view_of(&v, &m[i]);
    if (!v.is_num && v.len && memchr(v.str, '\0', v.len))
      return mm_err_set(err, MM_EPERM, "set member %zu contains a NUL byte", i);
    int rc = pieces_add_view(ps, scratch, &v, err);
    if (rc) return rc;
  }
  return 0;
}

/* Sorts the pieces bytewise, drops duplicates, and writes them to out
 * separated by '\0'. */
static int pieces_write(pieces_t *ps, mm_buf_t *scratch, mm_buf_t *out, mm_err_t *err) {
  for (size_t i = 0; i < ps->n; i++) ps->v[i].p = scratch->data + ps->v[i].off;
  if (ps->n) qsort(ps->v, ps->n, sizeof ps->v[0], piece_cmp);
  size_t written = 0;
  for (size_t i = 0; i < ps->n; i++) {
    if (i > 0 && piece_cmp(&ps->v[i - 1], &ps->v[i]) == 0) continue;
    if (written++) mm_buf_addc(out, '\0');
    mm_buf_add(out, ps->v[i].p, ps->v[i].len);
  }
  if (mm_buf_failed(out)) return mm_err_set(err, MM_ENOMEM, "out of memory writing a set");
  return 0;
}

/* out = union of up to two stored sets and the delta members. */
static int set_union(const char *a, size_t alen, const char *b, size_t blen,
                     const mm_scalar_t *m, size_t nm, mm_buf_t *out, mm_err_t *err) {
  pieces_t ps = {NULL, 0, 0};
  mm_buf_t scratch = MM_BUF_INIT;
  int rc = 0;
  if (a && (rc = pieces_add_stored(&ps, &scratch, a, alen, err))) goto done;
  if (b && (rc = pieces_add_stored(&ps, &scratch, b, blen, err))) goto done;
  if (m && (rc = pieces_add_members(&ps, &scratch, m, nm, err))) goto done;
  rc = pieces_write(&ps, &scratch, out, err);
done:
  free(ps.v);
  mm_buf_free(&scratch);
  return rc;
}

/* ------------------------------------------------------------------ */
/* merge                                                                */
/* ------------------------------------------------------------------ */

/* sum/count: stored decimal + delta. */
static int merge_sum(const mm_delta_t *d, const char *old, size_t old_len, mm_buf_t *out,
                     mm_err_t *err) {
  if (!d->v.is_num)
    return mm_err_set(err, MM_EPERM, "%s delta is not a number", mm_agg_name(d->agg));
  char t[MM_DEC_TEXT_MAX];
  if (old) { /* the usual sum: text to text in 64 bits */
    size_t n = mm_dec_add_text(old, old_len, &d->v.num, t);
    if (n) return mm_buf_add(out, t, n);
  }
  mm_dec_t acc = d->v.num;
  if (old) {
    mm_dec_t o;
    if (mm_dec_parse(&o, old, old_len, err)) return stored_fail(err);
    if (mm_dec_add(&acc, &o, &acc, err)) return MM_EPERM;
  }
  return mm_buf_add(out, t, mm_dec_format(&acc, t));
}

/* min/max: the delta replaces the stored scalar only when strictly lower
 * (min) / higher (max). */
static int merge_minmax(const mm_delta_t *d, const char *old, size_t old_len,
                        mm_buf_t *out, mm_err_t *err) {
  sview_t nv, ov;
  view_of(&nv, &d->v);
  if (old) {
    if (view_parse(&ov, old, old_len, err)) return stored_fail(err);
    int c = view_cmp(&nv, &ov);
    int keep = d->agg == MM_AGG_MIN ? c >= 0 : c <= 0;
    if (keep) return mm_buf_add(out, old, old_len);
  }
  view_encode(out, &nv);
  return 0;
}

/* first/last: first keeps the earliest time (a tie keeps the stored one);
 * last takes the latest (a tie goes to the newer write, the delta). */
static int merge_timed(const mm_delta_t *d, const char *old, size_t old_len,
                       mm_buf_t *out, mm_err_t *err) {
  if (!isfinite(d->time))
    return mm_err_set(err, MM_EPERM, "%s delta has no finite event time",
                      mm_agg_name(d->agg));
  sview_t nv, ov;
  view_of(&nv, &d->v);
  if (old) {
    double ot;
    if (timed_parse(&ot, &ov, old, old_len, err)) return stored_fail(err);
    int keep = d->agg == MM_AGG_FIRST ? d->time >= ot : d->time < ot;
    if (keep) return mm_buf_add(out, old, old_len);
  }
  timed_encode(out, d->time, &nv);
  return 0;
}

/* hll/topk: parse the stored sketch (or start an empty one), add the item,
 * write the sketch back. */
static int merge_sketch(const mm_delta_t *d, const char *old, size_t old_len,
                        mm_buf_t *out, mm_err_t *err) {
  char tmp[MM_DEC_TEXT_MAX];
  const char *item;
  size_t n;
  int rc = 0;
  item_bytes(&d->v, tmp, &item, &n);
  if (d->agg == MM_AGG_HLL) {
    mm_hll_t h;
    if (!old) mm_hll_init(&h);
    else if (mm_hll_parse(&h, old, old_len, err)) return stored_fail(err);
    mm_hll_add(&h, item, n);
    return mm_hll_serialize(&h, out);
  }
  mm_topk_t t;
  mm_topk_init(&t);
  if (d->weight < 1) {
    rc = mm_err_set(err, MM_EPERM, "topk weight %lld is not at least 1",
                    (long long)d->weight);
    goto done;
  }
  if (old && (rc = mm_topk_parse(&t, old, old_len, err))) {
    mm_err_prefix(err, "stored value");
    goto done;
  }
  if ((rc = mm_topk_add(&t, item, n, (uint64_t)d->weight, err))) goto done;
  rc = mm_topk_serialize(&t, out);
done:
  mm_topk_free(&t);
  return rc;
}

/*
 * Dispatches on the delta's aggregate, writing the new stored value to a
 * buffer; *changed compares it with the old bytes, so a min that is not
 * lower, a first that is not earlier, a set member already present or an
 * item re-added to an hll all report 0.
 */
int mm_agg_merge_buf(const mm_delta_t *d, const void *old, size_t old_len, mm_buf_t *b,
                     int *changed, mm_err_t *err) {
  const char *o = old && old_len ? old : NULL;
  int rc;
  mm_buf_reset(b);
  *changed = 0;
  switch (d->agg) {
  case MM_AGG_SUM:
  case MM_AGG_COUNT: rc = merge_sum(d, o, old_len, b, err); break;
  case MM_AGG_MIN:
  case MM_AGG_MAX: rc = merge_minmax(d, o, old_len, b, err); break;
  case MM_AGG_FIRST:
  case MM_AGG_LAST: rc = merge_timed(d, o, old_len, b, err); break;
  case MM_AGG_SET: rc = set_union(o, old_len, NULL, 0, d->members, d->nmembers, b, err); break;
  case MM_AGG_HLL:
  case MM_AGG_TOPK: rc = merge_sketch(d, o, old_len, b, err); break;
  default: rc = mm_err_set(err, MM_EPERM, "unknown aggregate %d", (int)d->agg); break;
  }
  /* reserve(0): data is non-NULL and terminated even for an empty value */
  if (!rc && (mm_buf_failed(b) || mm_buf_reserve(b, 0))) rc = MM_ENOMEM;
  if (rc == MM_ENOMEM) mm_err_set(err, MM_ENOMEM, "out of memory merging a %s value",
                                  mm_agg_name(d->agg));
  if (rc) return permanent(err, rc);
  *changed = !o || b->len != old_len || memcmp(b->data, o, old_len) != 0;
  return 0;
}

int mm_agg_merge(const mm_delta_t *d, const void *old, size_t old_len, char **out,
                 size_t *out_len, int *changed, mm_err_t *err) {
  mm_buf_t b = MM_BUF_INIT;
  *out = NULL;
  *out_len = 0;
  int rc = mm_agg_merge_buf(d, old, old_len, &b, changed, err); /* *changed 0 on failure */
  if (rc) {
    mm_buf_free(&b);
    return rc;
  }
  *out = mm_buf_take(&b, out_len);
  if (!*out) return mm_err_set(err, MM_ENOMEM, "out of memory merging a value");
  return 0;
}

/* ------------------------------------------------------------------ */
/* render                                                               */
/* ------------------------------------------------------------------ */

/* A stored set as a JSON array, members in stored (bytewise) order. */
static int render_set(mm_buf_t *b, const char *p, size_t n, mm_err_t *err) {
  size_t start = 0, k = 0;
  mm_buf_addc(b, '[');
  while (n && start <= n) {
    const char *z = memchr(p + start, '\0', n - start);
    size_t end = z ? (size_t)(z - p) : n;
    sview_t v;
    if (end == start) return mm_err_set(err, MM_EPERM, "set member %zu is empty", k);
    if (view_parse(&v, p + start, end - start, err))
      return member_fail(err, k);
    if (k++) mm_buf_addc(b, ',');
    view_json(b, &v);
    start = end + 1;
  }
  mm_buf_addc(b, ']');
  return 0;
}

/* [[item, count], ...] for the top MM_TOPK_RENDER counters. */
static int render_topk(mm_buf_t *b, const char *p, size_t n, mm_err_t *err) {
  mm_topk_t t;
  int rc = mm_topk_parse(&t, p, n, err);
  if (rc) return rc;
  size_t k = mm_topk_top(&t, MM_TOPK_RENDER);
  mm_buf_addc(b, '[');
  for (size_t i = 0; i < k; i++) {
    if (i) mm_buf_addc(b, ',');
    mm_buf_addc(b, '[');
    mm_buf_json_str(b, t.c[i].item, t.c[i].len);
    mm_buf_printf(b, ",%llu]", (unsigned long long)t.c[i].count);
  }
  mm_buf_addc(b, ']');
  mm_topk_free(&t);
  return 0;
}

/* Parses the stored value the way a merge would and writes its JSON;
 * numbers are re-formatted from the parsed decimal, so the output is
 * always a valid JSON number even if the stored text was not canonical. */
int mm_agg_render(mm_agg_t agg, const void *v, size_t len, char **json, mm_err_t *err) {
  mm_buf_t b = MM_BUF_INIT;
  const char *p = v ? v : "";
  int rc = 0;
  sview_t sv;
  double t;
  *json = NULL;
  if (!v) len = 0;
  switch (agg) {
  case MM_AGG_SUM:
  case MM_AGG_COUNT: {
    mm_dec_t d;
    char txt[MM_DEC_TEXT_MAX];
    if (!(rc = mm_dec_parse(&d, p, len, err))) mm_buf_add(&b, txt, mm_dec_format(&d, txt));
    break;
  }
  case MM_AGG_MIN:
  case MM_AGG_MAX:
    if (!(rc = view_parse(&sv, p, len, err))) view_json(&b, &sv);
    break;
  case MM_AGG_FIRST:
  case MM_AGG_LAST:
    if (!(rc = timed_parse(&t, &sv, p, len, err))) view_json(&b, &sv);
    break;
  case MM_AGG_SET: rc = render_set(&b, p, len, err); break;
  case MM_AGG_HLL: {
    mm_hll_t h;
    if (!(rc = mm_hll_parse(&h, p, len, err)))
      mm_buf_printf(&b, "%.0f", floor(mm_hll_estimate(&h) + 0.5));
    break;
  }
  case MM_AGG_TOPK: rc = render_topk(&b, p, len, err); break;
  default: rc = mm_err_set(err, MM_EPERM, "unknown aggregate %d", (int)agg); break;
  }
  if (rc == MM_ENOMEM || (!rc && mm_buf_failed(&b)))
    rc = mm_err_set(err, MM_ENOMEM, "out of memory rendering a %s value", mm_agg_name(agg));
  if (!rc && !(*json = mm_buf_take(&b, NULL)))
    rc = mm_err_set(err, MM_ENOMEM, "out of memory rendering a %s value", mm_agg_name(agg));
  if (rc && rc != MM_ENOMEM) {
    mm_err_prefix(err, "stored %s value", mm_agg_name(agg));
    rc = permanent(err, rc);
  }
  mm_buf_free(&b);
  return rc;
}

/* ------------------------------------------------------------------ */
/* combine                                                              */
/* ------------------------------------------------------------------ */

/* sum/count of two stored decimals (either may be absent). */
static int combine_sum(const char *a, size_t alen, const char *b, size_t blen,
                       mm_buf_t *out, mm_err_t *err) {
  mm_dec_t acc, x;
  mm_dec_from_int(&acc, 0);
  const char *in[2] = {a, b};
  size_t n[2] = {alen, blen};
  for (int i = 0; i < 2; i++) {
    if (!in[i]) continue;
    if (mm_dec_parse(&x, in[i], n[i], err)) return stored_fail(err);
    if (mm_dec_add(&acc, &acc, &x, err)) return MM_EPERM;
  }
  char t[MM_DEC_TEXT_MAX];
  return mm_buf_add(out, t, mm_dec_format(&acc, t));
}

/* min/max/first/last: picks one of the two stored values (either may be
 * absent) and writes it in canonical form. a is the older row: a tie
 * keeps a for first/min/max and takes b for last. */
static int combine_pick(mm_agg_t agg, const char *a, size_t alen, const char *b,
                        size_t blen, mm_buf_t *out, mm_err_t *err) {
  int timed = agg == MM_AGG_FIRST || agg == MM_AGG_LAST;
  sview_t va, vb;
  double ta = 0, tb = 0;
  if (a && (timed ? timed_parse(&ta, &va, a, alen, err) : view_parse(&va, a, alen, err)))
    return stored_fail(err);
  if (b && (timed ? timed_parse(&tb, &vb, b, blen, err) : view_parse(&vb, b, blen, err)))
    return stored_fail(err);
  int take_b;
  if (!a) take_b = 1;
  else if (!b) take_b = 0;
  else if (agg == MM_AGG_MIN) take_b = view_cmp(&vb, &va) < 0;
  else if (agg == MM_AGG_MAX) take_b = view_cmp(&vb, &va) > 0;
  else if (agg == MM_AGG_FIRST) take_b = tb < ta;
  else take_b = tb >= ta;
  if (timed) timed_encode(out, take_b ? tb : ta, take_b ? &vb : &va);
  else view_encode(out, take_b ? &vb : &va);
  return 0;
}

/* hll/topk: the merge of the two stored sketches (either may be absent). */
static int combine_sketch(mm_agg_t agg, const char *a, size_t alen, const char *b,
                          size_t blen, mm_buf_t *out, mm_err_t *err) {
  const char *in[2] = {a, b};
  size_t n[2] = {alen, blen};
  int rc = 0;
  if (agg == MM_AGG_HLL) {
    mm_hll_t acc, x;
    mm_hll_init(&acc);
    for (int i = 0; i < 2; i++) {
      if (!in[i]) continue;
      if (mm_hll_parse(&x, in[i], n[i], err)) return stored_fail(err);
      mm_hll_merge(&acc, &x);
    }
    return mm_hll_serialize(&acc, out);
  }
  mm_topk_t acc, x;
  mm_topk_init(&acc);
  mm_topk_init(&x);
  for (int i = 0; i < 2; i++) {
    if (!in[i]) continue;
    if ((rc = mm_topk_parse(&x, in[i], n[i], err))) {
      mm_err_prefix(err, "stored value");
      goto done;
    }
    if ((rc = mm_topk_merge(&acc, &x, err))) goto done;
    mm_topk_free(&x);
  }
  rc = mm_topk_serialize(&acc, out);
done:
  mm_topk_free(&x);
  mm_topk_free(&acc);
  return rc;
}

/* Dispatches on the aggregate; a NULL side is "no row" (query --last over
 * windows where some buckets are missing). The output is canonical. */
int mm_agg_combine(mm_agg_t agg, const void *a, size_t alen, const void *b, size_t blen,
                   char **out, size_t *out_len, mm_err_t *err) {
  mm_buf_t o = MM_BUF_INIT;
  int rc;
  *out = NULL;
  *out_len = 0;
  if (!a && !b) return mm_err_set(err, MM_EINVAL, "combine needs at least one value");
  switch (agg) {
  case MM_AGG_SUM:
  case MM_AGG_COUNT: rc = combine_sum(a, alen, b, blen, &o, err); break;
  case MM_AGG_MIN:
  case MM_AGG_MAX:
  case MM_AGG_FIRST:
  case MM_AGG_LAST: rc = combine_pick(agg, a, alen, b, blen, &o, err); break;
  case MM_AGG_SET: rc = set_union(a, alen, b, blen, NULL, 0, &o, err); break;
  case MM_AGG_HLL:
  case MM_AGG_TOPK: rc = combine_sketch(agg, a, alen, b, blen, &o, err); break;
  default: rc = mm_err_set(err, MM_EPERM, "unknown aggregate %d", (int)agg); break;
  }
  if (!rc && mm_buf_failed(&o)) rc = MM_ENOMEM;
  if (rc == MM_ENOMEM)
    mm_err_set(err, MM_ENOMEM, "out of memory combining %s values", mm_agg_name(agg));
  if (rc) {
    mm_buf_free(&o);
    return permanent(err, rc);
  }
  *out = mm_buf_take(&o, out_len);
  if (!*out) return mm_err_set(err, MM_ENOMEM, "out of memory combining values");
  return 0;
}

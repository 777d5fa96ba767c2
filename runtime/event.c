/*
 * event.c - the DynamoDB Streams invocation payload (see event.h).
 *
 * mm_event_parse validates the JSON once (json.c) and checks the shape that
 * makes it a stream event: an object with a "Records" array whose records,
 * when they name an eventSource, name "aws:dynamodb". Everything else about
 * a record (eventID, SequenceNumber, time) is read per record by
 * mm_event_record, so one bad record fails alone, not the batch.
 */
#include "event.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prefix of every "not a stream event" message. */
#define NOT_STREAM "event is not a DynamoDB Streams event: "
/* Longest piece of a JSON string quoted in a message. */
#define QUOTE_MAX 64
/* Largest plausible event time in seconds (year 5138); beyond it a value
 * is garbage, and keeping it would overflow bucket arithmetic later. */
#define TIME_MAX_SECS 1e11

/* Name of a JSON type for messages ("a string", "null"). */
static const char *type_name(mm_json_type_t t) {
  switch (t) {
  case MM_JSON_NULL: return "null";
  case MM_JSON_FALSE: return "false";
  case MM_JSON_TRUE: return "true";
  case MM_JSON_NUM: return "a number";
  case MM_JSON_STR: return "a string";
  case MM_JSON_ARR: return "an array";
  case MM_JSON_OBJ: return "an object";
  }
  return "?";
}

/* Writes STR node i as it appears in the JSON text, quoted, cut at
 * QUOTE_MAX bytes on a character boundary, into out (>= QUOTE_MAX + 8). A
 * non-string node is described by its type instead. The raw text is valid
 * JSON string content, so it needs no further escaping for a message. */
static void describe(const mm_json_doc_t *d, uint32_t i, char *out,
                     size_t outsz) {
  if (mm_json_type(d, i) != MM_JSON_STR) {
    snprintf(out, outsz, "%s", type_name(mm_json_type(d, i)));
    return;
  }
  const char *raw = mm_json_raw(d, i);
  size_t n = mm_json_len(d, i), cut = n;
  if (cut > QUOTE_MAX) {
    cut = QUOTE_MAX;
    /* never cut an escape in half ... */
    for (size_t k = 0; k < cut;) {
      if (raw[k] != '\\') {
        k++;
        continue;
      }
      size_t el = raw[k + 1] == 'u' ? 6 : 2;
      if (k + el > cut) {
        cut = k;
        break;
      }
      k += el;
    }
    /* ... nor a UTF-8 character */
    while (cut > 0 && ((unsigned char)raw[cut] & 0xC0) == 0x80) cut--;
  }
  snprintf(out, outsz, "\"%.*s\"%s", (int)cut, raw, cut < n ? "..." : "");
}

int mm_event_parse(mm_event_t *ev, const char *buf, size_t len,
                   const char **etype, mm_err_t *err) {
  mm_json_doc_t *d = &ev->doc;
  char what[QUOTE_MAX + 16];
  int rc;

  memset(ev, 0, sizeof *ev);
  rc = mm_json_parse(d, buf, len, 0, err);
  if (rc == MM_ENOMEM) {
    *etype = MM_ETYPE_NO_MEMORY;
    return rc;
  }
  if (rc != MM_OK) {
    /* a depth or size limit is as fatal to this payload as bad syntax */
    if (err) err->code = MM_EINVAL;
    mm_err_prefix(err, "event is not valid JSON");
    *etype = MM_ETYPE_INVALID_JSON;
    return MM_EINVAL;
  }
  if (mm_json_type(d, 0) != MM_JSON_OBJ) {
    rc = mm_err_set(err, MM_EINVAL, NOT_STREAM "the payload is %s, not an "
                    "object with \"Records\"", type_name(mm_json_type(d, 0)));
    goto not_stream;
  }
  ev->records = mm_json_get(d, 0, "Records", 7);
  if (!ev->records) {
    rc = mm_err_set(err, MM_EINVAL, NOT_STREAM "it has no \"Records\" array");
    goto not_stream;
  }
  if (mm_json_type(d, ev->records) != MM_JSON_ARR) {
    rc = mm_err_set(err, MM_EINVAL, NOT_STREAM "\"Records\" is %s, not an "
                    "array", type_name(mm_json_type(d, ev->records)));
    goto not_stream;
  }
  ev->nrecords = mm_json_len(d, ev->records);

  /* Every record that names its source must name DynamoDB. */
  uint32_t r = mm_json_first(d, ev->records);
  for (uint32_t k = 0; k < ev->nrecords; k++, r = mm_json_next(d, r)) {
    if (mm_json_type(d, r) != MM_JSON_OBJ) continue; /* per record */
    uint32_t src = mm_json_get(d, r, "eventSource", 11);
    if (src && !(mm_json_type(d, src) == MM_JSON_STR &&
                 mm_json_str_eq(d, src, "aws:dynamodb", 12))) {
      describe(d, src, what, sizeof what);
      rc = mm_err_set(err, MM_EINVAL,
                      NOT_STREAM "Records[%u].eventSource is %s", k, what);
      goto not_stream;
    }
  }

  {
    uint32_t win = mm_json_get(d, 0, "window", 6);
    uint32_t st = mm_json_get(d, 0, "state", 5);
    if (win && st) {
      ev->is_window = 1;
      ev->state = st;
    }
  }
  return MM_OK;

not_stream:
  *etype = MM_ETYPE_NOT_STREAM;
  mm_event_free(ev);
  return rc;
}

void mm_event_free(mm_event_t *ev) {
  if (!ev) return;
  mm_json_free(&ev->doc);
  memset(ev, 0, sizeof *ev);
}

/* The value nodes of members k1 and k2 (n1, n2 bytes) of object obj in one
 * pass, 0 when absent; the last duplicate wins, as in mm_json_get. */
static void get2(const mm_json_doc_t *d, uint32_t obj, const char *k1, size_t n1,
                 uint32_t *v1, const char *k2, size_t n2, uint32_t *v2) {
  uint32_t cnt = mm_json_len(d, obj), k = obj + 1;
  *v1 = *v2 = 0;
  for (uint32_t i = 0; i < cnt; i++) {
    if (mm_json_key_eq(d, k, k1, n1)) *v1 = k + 1;
    else if (mm_json_key_eq(d, k, k2, n2)) *v2 = k + 1;
    k = mm_json_next(d, k + 1);
  }
}

/* Copies string member v (the value node of member `name`, 0 when absent)
 * into out (MM_EVENT_ID_MAX). `name` is the field's path for messages.
 * Returns 0, or MM_EINVAL when it is absent, not a string, empty, too
 * long, or holds a NUL (these strings are echoed to Lambda and used as C
 * strings). */
static int read_id(const mm_json_doc_t *d, uint32_t v, const char *name, char *out,
                   mm_err_t *err) {
  if (!v) return mm_err_set(err, MM_EINVAL, "record has no %s", name);
  if (mm_json_type(d, v) != MM_JSON_STR)
    return mm_err_set(err, MM_EINVAL, "record %s is %s, not a string", name,
                      type_name(mm_json_type(d, v)));
  uint32_t n = mm_json_len(d, v);
  if (n == 0) return mm_err_set(err, MM_EINVAL, "record %s is empty", name);
  char tmp[MM_EVENT_ID_MAX];
  size_t dn;
  if (mm_json_has_escapes(d, v)) {
    /* the decoded text is never longer than the raw one */
    char *s = mm_json_strdup(d, v, &dn);
    if (!s) return mm_err_set(err, MM_ENOMEM, "out of memory reading %s", name);
    if (dn < MM_EVENT_ID_MAX) memcpy(tmp, s, dn);
    free(s);
  } else {
    dn = n;
    if (dn < MM_EVENT_ID_MAX) memcpy(tmp, mm_json_raw(d, v), dn);
  }
  if (dn >= MM_EVENT_ID_MAX)
    return mm_err_set(err, MM_EINVAL, "record %s is %zu bytes, longer than "
                      "the limit of %d", name, dn, MM_EVENT_ID_MAX - 1);
  if (memchr(tmp, '\0', dn))
    return mm_err_set(err, MM_EINVAL, "record %s contains a NUL character",
                      name);
  memcpy(out, tmp, dn);
  out[dn] = '\0';
  return MM_OK;
}

/* mm_event_time with the field's name for messages. */
static int read_time(const mm_json_doc_t *d, uint32_t node, const char *name,
                     double *secs, mm_err_t *err) {
  char what[QUOTE_MAX + 16];
  mm_json_type_t t = mm_json_type(d, node);
  double v;
  int rc;

  if (t != MM_JSON_NUM && t != MM_JSON_STR)
    return mm_err_set(err, MM_EINVAL, "%s is %s, not a number or a numeric "
                      "string", name, type_name(t));
  rc = mm_json_double(d, node, &v);
  if (rc == MM_ENOMEM)
    return mm_err_set(err, rc, "out of memory reading %s", name);
  if (rc != MM_OK) {
    describe(d, node, what, sizeof what);
    return mm_err_set(err, MM_EINVAL, "%s %s is not a number", name, what);
  }
  if (v > 1e11) v /= 1000; /* milliseconds */
  if (isnan(v) || isinf(v) || v < 0 || v > TIME_MAX_SECS) {
    if (t == MM_JSON_STR) describe(d, node, what, sizeof what);
    else snprintf(what, sizeof what, "%.*s", (int)(mm_json_len(d, node) > 40 ?
                  40 : mm_json_len(d, node)), mm_json_raw(d, node));
    return mm_err_set(err, MM_EINVAL, "%s %s is %s", name, what,
                      v < 0 ? "negative" : "out of range");
  }
  *secs = v;
  return MM_OK;
}

int mm_event_time(const mm_json_doc_t *doc, uint32_t node, double *secs,
                  mm_err_t *err) {
  return read_time(doc, node, "ApproximateCreationDateTime", secs, err);
}

int mm_event_record(const mm_event_t *ev, uint32_t node, mm_record_info_t *info,
                    mm_err_t *err) {
  const mm_json_doc_t *d = &ev->doc;
  mm_err_t e2;  /* later errors, kept only when no earlier one */
  int rc = MM_OK, r;

  mm_err_clear(&e2);
  /* field by field: the two id buffers are 512 bytes, and this runs for
   * every record */
  info->node = node;
  info->dynamodb = 0;
  info->event_id[0] = info->seq[0] = '\0';
  info->has_time = 0;
  info->time = 0;
  if (mm_json_type(d, node) != MM_JSON_OBJ)
    return mm_err_set(err, MM_EINVAL, "record is %s, not an object",
                      type_name(mm_json_type(d, node)));

  /* Read every field even after a failure: the pipeline reports a bad
   * record by its SequenceNumber, so that must be filled when readable. */
  uint32_t id, dyn;
  get2(d, node, "eventID", 7, &id, "dynamodb", 8, &dyn);
  rc = read_id(d, id, "eventID", info->event_id, err);

  if (!dyn) {
    r = mm_err_set(&e2, MM_EINVAL, "record has no dynamodb");
  } else if (mm_json_type(d, dyn) != MM_JSON_OBJ) {
    r = mm_err_set(&e2, MM_EINVAL, "record dynamodb is %s, not an object",
                   type_name(mm_json_type(d, dyn)));
  } else {
    uint32_t sq, t;
    info->dynamodb = dyn;
    get2(d, dyn, "SequenceNumber", 14, &sq, "ApproximateCreationDateTime", 27, &t);
    r = read_id(d, sq, "dynamodb.SequenceNumber", info->seq, &e2);
    if (r == MM_OK) {
      /* absent or null: no time, the pipeline uses its clock */
      if (t && mm_json_type(d, t) != MM_JSON_NULL) {
        r = read_time(d, t, "record dynamodb.ApproximateCreationDateTime",
                      &info->time, &e2);
        if (r == MM_OK) info->has_time = 1;
      }
    } else {
      /* still read the time, but report the SequenceNumber problem */
      if (t && mm_json_type(d, t) != MM_JSON_NULL &&
          read_time(d, t, "", &info->time, NULL) == MM_OK)
        info->has_time = 1;
    }
  }
  if (rc == MM_OK && r != MM_OK) {
    rc = r;
    if (err) *err = e2;
  }
  return rc;
}

int mm_seq_cmp(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la != lb) return la < lb ? -1 : 1;
  int c = memcmp(a, b, la);
  return (c > 0) - (c < 0);
}

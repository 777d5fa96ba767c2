/*
 * check_event.c - the stream event (runtime/event.c): shape check against
 * the fixtures, per-record facts, event time normalisation, SequenceNumber
 * order. Cases are tables named after the rule they pin down.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "testutil.h"

/* Parses fixture `name` as an event; returns the buffer (caller frees). */
static char *load_event(const char *name, mm_event_t *ev) {
  size_t len;
  char *buf = tu_fixture(name, &len);
  const char *etype = NULL;
  mm_err_t e;
  mm_err_clear(&e);
  int rc = mm_event_parse(ev, buf, len, &etype, &e);
  ck_assert_msg(rc == 0, "%s: %s (%s)", name, e.msg, etype ? etype : "");
  return buf;
}

/* Node of record k of ev. */
static uint32_t record_node(const mm_event_t *ev, uint32_t k) {
  ck_assert_uint_lt(k, ev->nrecords);
  uint32_t r = mm_json_first(&ev->doc, ev->records);
  while (k--) r = mm_json_next(&ev->doc, r);
  return r;
}

/* ------------------------------------------------------------------ */
/* Fixtures                                                             */
/* ------------------------------------------------------------------ */

static const struct {
  const char *file;
  uint32_t nrecords;
  int is_window;
  const char *first_seq, *last_seq;
} stream_fixtures[] = {
    {"ankcorn-keys-only-remove.json", 1, 0, "600000000008367682943", "600000000008367682943"},
    {"ankcorn-new-and-old-images-modify.json", 1, 0, "200000000027074221525", "200000000027074221525"},
    {"ankcorn-new-image-remove.json", 1, 0, "300000000061894318607", "300000000061894318607"},
    {"ankcorn-old-image-insert.json", 1, 0, "100000000009040647000", "100000000009040647000"},
    {"dotnet-dynamodb-event.json", 2, 0, "1405400000000002063282832", "1405400000000002063282832"},
    {"dotnet-dynamodb-timewindow-event.json", 3, 1, "111", "333"},
    {"dotnet-dynamodb-with-ms-event.json", 2, 0, "1405400000000002063282832", "1405400000000002063282832"},
    {"go-dynamodb-event.json", 2, 0, "1405400000000002063282832", "1405400000000002063282832"},
    {"go-dynamodb-time-window-event.json", 3, 1, "111", "333"},
    {"java-libs-dynamo-event.json", 3, 0, "4421584500000000017450439091", "4421584500000000017450439093"},
    {"pt-java-dynamo-event-big.json", 12, 0, "4421584500000000017450439001", NULL},
    {"pt-python-dynamoStreamEvent.json", 2, 0, "111", "222"},
    {"pt-python-getting-started-dynamodb-event.json", 2, 0, "3275880929", "8640712661"},
    {"pt-ts-parser-dynamodb-base.json", 2, 0, "111", "222"},
};

/* Each top-level fixture is a stream event with the right record count,
 * and every record yields its eventID and SequenceNumber. */
START_TEST(fixture_is_stream_event) {
  mm_event_t ev;
  char *buf = load_event(stream_fixtures[_i].file, &ev);
  ck_assert_uint_eq(ev.nrecords, stream_fixtures[_i].nrecords);
  ck_assert_int_eq(mm_json_type(&ev.doc, ev.records), MM_JSON_ARR);
  ck_assert_int_eq(ev.is_window, stream_fixtures[_i].is_window);
  if (ev.is_window)
    ck_assert_int_eq(mm_json_type(&ev.doc, ev.state), MM_JSON_OBJ);
  else
    ck_assert_uint_eq(ev.state, 0);
  for (uint32_t k = 0; k < ev.nrecords; k++) {
    mm_record_info_t info;
    mm_err_t e;
    uint32_t r = record_node(&ev, k);
    ck_assert_msg(mm_event_record(&ev, r, &info, &e) == 0, "%s[%u]: %s",
                  stream_fixtures[_i].file, k, e.msg);
    ck_assert_uint_eq(info.node, r);
    ck_assert_int_eq(mm_json_type(&ev.doc, info.dynamodb), MM_JSON_OBJ);
    ck_assert_uint_gt(strlen(info.event_id), 0);
    if (k == 0) ck_assert_str_eq(info.seq, stream_fixtures[_i].first_seq);
    if (k + 1 == ev.nrecords && stream_fixtures[_i].last_seq)
      ck_assert_str_eq(info.seq, stream_fixtures[_i].last_seq);
    if (info.has_time) ck_assert(info.time > 1e9 && info.time < 2e9);
  }
  mm_event_free(&ev);
  mm_event_free(&ev); /* twice is harmless */
  free(buf);
}
END_TEST

static const struct {
  const char *file, *msg;
} non_event_fixtures[] = {
    {"non-event/pt-python-dynamoStreamLambdaInvocationEvent.json",
     "event is not a DynamoDB Streams event: it has no \"Records\" array"},
    {"non-event/pt-ts-sampleDynamoDBStreamsResponse.json",
     "event is not a DynamoDB Streams event: it has no \"Records\" array"},
    {"non-event/rust-example-dynamodb-event-record-with-optional-fields.json",
     "event is not a DynamoDB Streams event: it has no \"Records\" array"},
};

START_TEST(non_event_rejected) {
  size_t len;
  char *buf = tu_fixture(non_event_fixtures[_i].file, &len);
  mm_event_t ev;
  mm_err_t e;
  const char *etype = NULL;
  int rc = mm_event_parse(&ev, buf, len, &etype, &e);
  ck_assert_int_eq(rc, MM_EINVAL);
  ck_assert_str_eq(etype, MM_ETYPE_NOT_STREAM);
  ck_assert_str_eq(e.msg, non_event_fixtures[_i].msg);
  ck_assert_ptr_null(ev.doc.nodes);
  mm_event_free(&ev);
  free(buf);
}
END_TEST

START_TEST(invalid_fixture_is_invalid_json) {
  size_t len;
  char *buf = tu_fixture("invalid/go-dynamodb-event-malformed.2.json", &len);
  mm_event_t ev;
  mm_err_t e;
  const char *etype = NULL;
  int rc = mm_event_parse(&ev, buf, len, &etype, &e);
  ck_assert_int_eq(rc, MM_EINVAL);
  ck_assert_str_eq(etype, "Runtime.InvalidJSON");
  char want[128];
  snprintf(want, sizeof want,
           "event is not valid JSON: byte %zu: expected ',' or ']' but the "
           "input ended", len);
  ck_assert_str_eq(e.msg, want);
  ck_assert_int_eq(ev.nrecords, 0);
  mm_event_free(&ev);
  free(buf);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Shape                                                                */
/* ------------------------------------------------------------------ */

static const struct {
  const char *rule, *json, *etype, *msg; /* etype NULL: accepted */
  uint32_t nrecords;
  int is_window;
} shape_cases[] = {
    {"empty Records is a stream event", "{\"Records\":[]}", NULL, NULL, 0, 0},
    {"eventSource may be absent", "{\"Records\":[{\"eventID\":\"1\"}]}", NULL, NULL, 1, 0},
    {"non-object record is left to mm_event_record", "{\"Records\":[1,\"x\"]}",
     NULL, NULL, 2, 0},
    {"escaped eventSource still matches",
     "{\"Records\":[{\"eventSource\":\"aws:\\u0064ynamodb\"}]}", NULL, NULL, 1, 0},
    {"window and state make a window event",
     "{\"Records\":[],\"window\":{\"start\":\"a\",\"end\":\"b\"},\"state\":{}}",
     NULL, NULL, 0, 1},
    {"window without state is not a window event",
     "{\"Records\":[],\"window\":{}}", NULL, NULL, 0, 0},
    {"state without window is not a window event",
     "{\"Records\":[],\"state\":{}}", NULL, NULL, 0, 0},
    {"last duplicate Records wins", "{\"Records\":3,\"Records\":[{},{}]}", NULL,
     NULL, 2, 0},
    {"array payload", "[{\"Records\":[]}]", MM_ETYPE_NOT_STREAM,
     "event is not a DynamoDB Streams event: the payload is an array, not an "
     "object with \"Records\"", 0, 0},
    {"string payload", "\"Records\"", MM_ETYPE_NOT_STREAM,
     "event is not a DynamoDB Streams event: the payload is a string, not an "
     "object with \"Records\"", 0, 0},
    {"null payload", "null", MM_ETYPE_NOT_STREAM,
     "event is not a DynamoDB Streams event: the payload is null, not an "
     "object with \"Records\"", 0, 0},
    {"empty object", "{}", MM_ETYPE_NOT_STREAM,
     "event is not a DynamoDB Streams event: it has no \"Records\" array", 0, 0},
    {"lower-case records", "{\"records\":[]}", MM_ETYPE_NOT_STREAM,
     "event is not a DynamoDB Streams event: it has no \"Records\" array", 0, 0},
    {"Records an object", "{\"Records\":{}}", MM_ETYPE_NOT_STREAM,
     "event is not a DynamoDB Streams event: \"Records\" is an object, not an "
     "array", 0, 0},
    {"Records null", "{\"Records\":null}", MM_ETYPE_NOT_STREAM,
     "event is not a DynamoDB Streams event: \"Records\" is null, not an array",
     0, 0},
    {"SQS event", "{\"Records\":[{\"eventSource\":\"aws:sqs\"}]}",
     MM_ETYPE_NOT_STREAM,
     "event is not a DynamoDB Streams event: Records[0].eventSource is "
     "\"aws:sqs\"", 0, 0},
    {"Kinesis record after a DynamoDB one",
     "{\"Records\":[{\"eventSource\":\"aws:dynamodb\"},{\"eventSource\":\"aws:kinesis\"}]}",
     MM_ETYPE_NOT_STREAM,
     "event is not a DynamoDB Streams event: Records[1].eventSource is "
     "\"aws:kinesis\"", 0, 0},
    {"eventSource null", "{\"Records\":[{\"eventSource\":null}]}",
     MM_ETYPE_NOT_STREAM,
     "event is not a DynamoDB Streams event: Records[0].eventSource is null",
     0, 0},
    {"eventSource case matters", "{\"Records\":[{\"eventSource\":\"AWS:DYNAMODB\"}]}",
     MM_ETYPE_NOT_STREAM,
     "event is not a DynamoDB Streams event: Records[0].eventSource is "
     "\"AWS:DYNAMODB\"", 0, 0},
    {"long eventSource is cut",
     "{\"Records\":[{\"eventSource\":\"aws:0123456789012345678901234567890123"
     "456789012345678901234567890123456789\"}]}",
     MM_ETYPE_NOT_STREAM,
     "event is not a DynamoDB Streams event: Records[0].eventSource is "
     "\"aws:012345678901234567890123456789012345678901234567890123456789\"...",
     0, 0},
    {"long eventSource is cut after a whole escape",
     "{\"Records\":[{\"eventSource\":\"aws:0123456789012345678901234567890123456789012345678901234567"
     "\\\\\\u0041\"}]}",
     MM_ETYPE_NOT_STREAM,
     "event is not a DynamoDB Streams event: Records[0].eventSource is "
     "\"aws:0123456789012345678901234567890123456789012345678901234567\\\\\"...",
     0, 0},
    {"long eventSource is cut before a split escape",
     "{\"Records\":[{\"eventSource\":\"aws:0123456789012345678901234567890123456789012345678901234567"
     "x\\u0041\"}]}",
     MM_ETYPE_NOT_STREAM,
     "event is not a DynamoDB Streams event: Records[0].eventSource is "
     "\"aws:0123456789012345678901234567890123456789012345678901234567x\"...",
     0, 0},
    {"long eventSource is cut before a split UTF-8 character",
     "{\"Records\":[{\"eventSource\":\"aws:0123456789012345678901234567890123456789012345678901234567"
     "\xF0\x9F\xA6\x8A\"}]}",
     MM_ETYPE_NOT_STREAM,
     "event is not a DynamoDB Streams event: Records[0].eventSource is "
     "\"aws:0123456789012345678901234567890123456789012345678901234567\"...",
     0, 0},
    {"not JSON", "{\"Records\":[}", MM_ETYPE_INVALID_JSON,
     "event is not valid JSON: byte 12: expected a value, found '}'", 0, 0},
    {"empty payload", "", MM_ETYPE_INVALID_JSON,
     "event is not valid JSON: byte 0: expected a value but the input ended", 0, 0},
};

START_TEST(event_shape) {
  const char *in = shape_cases[_i].json;
  mm_event_t ev;
  mm_err_t e;
  const char *etype = NULL;
  mm_err_clear(&e);
  int rc = mm_event_parse(&ev, in, strlen(in), &etype, &e);
  if (!shape_cases[_i].etype) {
    ck_assert_msg(rc == 0, "%s: %s", shape_cases[_i].rule, e.msg);
    ck_assert_uint_eq(ev.nrecords, shape_cases[_i].nrecords);
    ck_assert_int_eq(ev.is_window, shape_cases[_i].is_window);
    ck_assert_int_eq(ev.state != 0, shape_cases[_i].is_window);
  } else {
    ck_assert_int_eq(rc, MM_EINVAL);
    ck_assert_msg(etype && strcmp(etype, shape_cases[_i].etype) == 0, "%s: %s",
                  shape_cases[_i].rule, etype ? etype : "(null)");
    ck_assert_msg(strcmp(e.msg, shape_cases[_i].msg) == 0, "%s: got %s",
                  shape_cases[_i].rule, e.msg);
    ck_assert_ptr_null(ev.doc.nodes);
  }
  mm_event_free(&ev);
}
END_TEST

/* A too-deep payload is an invalid payload, not a crash or another error. */
START_TEST(deep_payload_is_invalid_json) {
  size_t n = 100000;
  char *s = malloc(n);
  memset(s, '[', n);
  mm_event_t ev;
  mm_err_t e;
  const char *etype = NULL;
  ck_assert_int_eq(mm_event_parse(&ev, s, n, &etype, &e), MM_EINVAL);
  ck_assert_str_eq(etype, MM_ETYPE_INVALID_JSON);
  ck_assert_int_eq(e.code, MM_EINVAL);
  ck_assert_str_eq(e.msg, "event is not valid JSON: byte 512: nesting deeper "
                          "than 512 levels");
  free(s);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Records                                                              */
/* ------------------------------------------------------------------ */

static const struct {
  const char *rule, *record; /* one record object */
  const char *msg;           /* NULL: accepted */
  const char *event_id, *seq;
  int has_time;
  double time;
} record_cases[] = {
    {"complete record",
     "{\"eventID\":\"e1\",\"dynamodb\":{\"SequenceNumber\":\"111\","
     "\"ApproximateCreationDateTime\":1480642020}}",
     NULL, "e1", "111", 1, 1480642020},
    {"time absent", "{\"eventID\":\"e1\",\"dynamodb\":{\"SequenceNumber\":\"1\"}}",
     NULL, "e1", "1", 0, 0},
    {"time null is absent",
     "{\"eventID\":\"e1\",\"dynamodb\":{\"SequenceNumber\":\"1\","
     "\"ApproximateCreationDateTime\":null}}",
     NULL, "e1", "1", 0, 0},
    {"escaped ids are decoded",
     "{\"eventID\":\"a\\u002Fb\",\"dynamodb\":{\"SequenceNumber\":\"\\u0031\\u0032\"}}",
     NULL, "a/b", "12", 0, 0},
    {"255-byte SequenceNumber fits",
     "{\"eventID\":\"e\",\"dynamodb\":{\"SequenceNumber\":\"%255\"}}", NULL, "e",
     "%255", 0, 0},
    {"missing eventID", "{\"dynamodb\":{\"SequenceNumber\":\"42\"}}",
     "record has no eventID", "", "42", 0, 0},
    {"eventID null", "{\"eventID\":null,\"dynamodb\":{\"SequenceNumber\":\"42\"}}",
     "record eventID is null, not a string", "", "42", 0, 0},
    {"eventID number", "{\"eventID\":7,\"dynamodb\":{\"SequenceNumber\":\"42\"}}",
     "record eventID is a number, not a string", "", "42", 0, 0},
    {"eventID empty", "{\"eventID\":\"\",\"dynamodb\":{\"SequenceNumber\":\"42\"}}",
     "record eventID is empty", "", "42", 0, 0},
    {"missing dynamodb", "{\"eventID\":\"e1\"}", "record has no dynamodb", "e1",
     "", 0, 0},
    {"dynamodb not an object", "{\"eventID\":\"e1\",\"dynamodb\":[]}",
     "record dynamodb is an array, not an object", "e1", "", 0, 0},
    {"missing SequenceNumber",
     "{\"eventID\":\"e1\",\"dynamodb\":{\"ApproximateCreationDateTime\":5}}",
     "record has no dynamodb.SequenceNumber", "e1", "", 1, 5},
    {"SequenceNumber number",
     "{\"eventID\":\"e1\",\"dynamodb\":{\"SequenceNumber\":111}}",
     "record dynamodb.SequenceNumber is a number, not a string", "e1", "", 0, 0},
    {"SequenceNumber empty",
     "{\"eventID\":\"e1\",\"dynamodb\":{\"SequenceNumber\":\"\"}}",
     "record dynamodb.SequenceNumber is empty", "e1", "", 0, 0},
    {"256-byte SequenceNumber is too long",
     "{\"eventID\":\"e\",\"dynamodb\":{\"SequenceNumber\":\"%256\"}}",
     "record dynamodb.SequenceNumber is 256 bytes, longer than the limit of 255",
     "e", "", 0, 0},
    {"SequenceNumber with NUL",
     "{\"eventID\":\"e\",\"dynamodb\":{\"SequenceNumber\":\"1\\u00002\"}}",
     "record dynamodb.SequenceNumber contains a NUL character", "e", "", 0, 0},
    {"malformed time",
     "{\"eventID\":\"e1\",\"dynamodb\":{\"SequenceNumber\":\"9\","
     "\"ApproximateCreationDateTime\":\"yesterday\"}}",
     "record dynamodb.ApproximateCreationDateTime \"yesterday\" is not a number",
     "e1", "9", 0, 0},
    {"negative time",
     "{\"eventID\":\"e1\",\"dynamodb\":{\"SequenceNumber\":\"9\","
     "\"ApproximateCreationDateTime\":-1}}",
     "record dynamodb.ApproximateCreationDateTime -1 is negative", "e1", "9", 0, 0},
    {"time of wrong type",
     "{\"eventID\":\"e1\",\"dynamodb\":{\"SequenceNumber\":\"9\","
     "\"ApproximateCreationDateTime\":{}}}",
     "record dynamodb.ApproximateCreationDateTime is an object, not a number or "
     "a numeric string", "e1", "9", 0, 0},
    {"first error wins, other fields still read",
     "{\"dynamodb\":{\"SequenceNumber\":\"77\",\"ApproximateCreationDateTime\":\"x\"}}",
     "record has no eventID", "", "77", 0, 0},
    {"record not an object", "[\"eventID\"]", "record is an array, not an object",
     "", "", 0, 0},
    {"record null", "null", "record is null, not an object", "", "", 0, 0},
};

/* Expands "%NNN" in s into NNN digits ('1'..'9' cycling). */
static void expand(const char *s, char *out, size_t cap) {
  size_t n = 0;
  while (*s && n + 1 < cap) {
    if (*s == '%') {
      int k = atoi(s + 1);
      for (int j = 0; j < k && n + 1 < cap; j++) out[n++] = (char)('1' + j % 9);
      s++;
      while (*s >= '0' && *s <= '9') s++;
    } else {
      out[n++] = *s++;
    }
  }
  out[n] = '\0';
}

START_TEST(record_facts) {
  char rec[1024], in[1200], eid[300], seq[300];
  expand(record_cases[_i].record, rec, sizeof rec);
  expand(record_cases[_i].event_id, eid, sizeof eid);
  expand(record_cases[_i].seq, seq, sizeof seq);
  snprintf(in, sizeof in, "{\"Records\":[%s]}", rec);
  mm_event_t ev;
  mm_err_t e;
  const char *etype;
  ck_assert_int_eq(mm_event_parse(&ev, in, strlen(in), &etype, &e), 0);
  ck_assert_uint_eq(ev.nrecords, 1);
  mm_record_info_t info;
  memset(&info, 0x55, sizeof info); /* must be overwritten */
  mm_err_clear(&e);
  int rc = mm_event_record(&ev, record_node(&ev, 0), &info, &e);
  if (!record_cases[_i].msg) {
    ck_assert_msg(rc == 0, "%s: %s", record_cases[_i].rule, e.msg);
  } else {
    ck_assert_int_eq(rc, MM_EINVAL);
    ck_assert_int_eq(e.code, MM_EINVAL);
    ck_assert_msg(strcmp(e.msg, record_cases[_i].msg) == 0, "%s: got \"%s\"",
                  record_cases[_i].rule, e.msg);
  }
  ck_assert_str_eq(info.event_id, eid);
  ck_assert_str_eq(info.seq, seq);
  ck_assert_int_eq(info.has_time, record_cases[_i].has_time);
  if (info.has_time) ck_assert_double_eq(info.time, record_cases[_i].time);
  mm_event_free(&ev);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Event time                                                           */
/* ------------------------------------------------------------------ */

static const struct {
  const char *rule, *json; /* the value, inside [...] */
  int rc;
  double secs;
  const char *msg;
} time_cases[] = {
    {"integer seconds", "1480642020", 0, 1480642020, NULL},
    {"milliseconds", "1480642020000", 0, 1480642020, NULL},
    {"milliseconds with fraction", "1480642020123", 0, 1480642020.123, NULL},
    {"float seconds", "1693997155.0", 0, 1693997155, NULL},
    {"scientific", "1.635734407123456789E9", 0, 1635734407.123456789, NULL},
    {"scientific milliseconds", "1.480642020e12", 0, 1480642020, NULL},
    {"numeric string", "\"1480642020\"", 0, 1480642020, NULL},
    {"numeric string ms", "\"1480642020000\"", 0, 1480642020, NULL},
    {"numeric string scientific", "\"1.635734407E9\"", 0, 1635734407, NULL},
    {"zero", "0", 0, 0, NULL},
    {"1e11 is still seconds", "100000000000", 0, 1e11, NULL},
    {"just above 1e11 is milliseconds", "100000000001", 0, 100000000.001, NULL},
    {"negative", "-1", MM_EINVAL, 0, "ApproximateCreationDateTime -1 is negative"},
    {"negative string", "\"-5.5\"", MM_EINVAL, 0,
     "ApproximateCreationDateTime \"-5.5\" is negative"},
    {"overflow to inf", "1e400", MM_EINVAL, 0,
     "ApproximateCreationDateTime 1e400 is out of range"},
    {"beyond year 5000 even as ms", "1e15", MM_EINVAL, 0,
     "ApproximateCreationDateTime 1e15 is out of range"},
    {"NaN string", "\"NaN\"", MM_EINVAL, 0,
     "ApproximateCreationDateTime \"NaN\" is not a number"},
    {"Infinity string", "\"Infinity\"", MM_EINVAL, 0,
     "ApproximateCreationDateTime \"Infinity\" is not a number"},
    {"ISO date string", "\"2016-12-02T01:27:00Z\"", MM_EINVAL, 0,
     "ApproximateCreationDateTime \"2016-12-02T01:27:00Z\" is not a number"},
    {"empty string", "\"\"", MM_EINVAL, 0,
     "ApproximateCreationDateTime \"\" is not a number"},
    {"padded string", "\" 1480642020\"", MM_EINVAL, 0,
     "ApproximateCreationDateTime \" 1480642020\" is not a number"},
    {"boolean", "true", MM_EINVAL, 0,
     "ApproximateCreationDateTime is true, not a number or a numeric string"},
    {"array", "[1]", MM_EINVAL, 0,
     "ApproximateCreationDateTime is an array, not a number or a numeric string"},
};

START_TEST(time_normalised) {
  char in[128];
  snprintf(in, sizeof in, "[%s]", time_cases[_i].json);
  mm_json_doc_t d;
  mm_err_t e;
  ck_assert_int_eq(mm_json_parse(&d, in, strlen(in), 0, &e), 0);
  double v = -42;
  mm_err_clear(&e);
  int rc = mm_event_time(&d, 1, &v, &e);
  ck_assert_msg(rc == time_cases[_i].rc, "%s: rc %d %s", time_cases[_i].rule,
                rc, e.msg);
  if (rc == 0) {
    ck_assert_double_eq_tol(v, time_cases[_i].secs, 1e-6);
  } else {
    ck_assert_double_eq(v, -42);
    ck_assert_msg(strcmp(e.msg, time_cases[_i].msg) == 0, "%s: got \"%s\"",
                  time_cases[_i].rule, e.msg);
  }
  mm_json_free(&d);
}
END_TEST

/* Record info of record k of fixture `file`. */
static mm_record_info_t fixture_record(const char *file, uint32_t k) {
  mm_event_t ev;
  char *buf = load_event(file, &ev);
  mm_record_info_t info;
  mm_err_t e;
  ck_assert_msg(mm_event_record(&ev, record_node(&ev, k), &info, &e) == 0,
                "%s", e.msg);
  mm_event_free(&ev);
  free(buf);
  return info;
}

/* Record 1 is in milliseconds, record 2 in seconds: same instant. */
START_TEST(fixture_time_ms_and_seconds) {
  mm_record_info_t a = fixture_record("dotnet-dynamodb-with-ms-event.json", 0);
  mm_record_info_t b = fixture_record("dotnet-dynamodb-with-ms-event.json", 1);
  ck_assert(a.has_time && b.has_time);
  ck_assert_double_eq(a.time, 1480642020.0);
  ck_assert_double_eq(b.time, 1480642020.0);
}
END_TEST

START_TEST(fixture_time_scientific) {
  mm_record_info_t a = fixture_record("java-libs-dynamo-event.json", 1);
  ck_assert(a.has_time);
  ck_assert_double_eq_tol(a.time, 1635734407.123456789, 1e-6);
  mm_record_info_t b = fixture_record("java-libs-dynamo-event.json", 0);
  ck_assert_double_eq(b.time, 1428537600.0);
}
END_TEST

START_TEST(fixture_time_float_and_absent) {
  mm_record_info_t a = fixture_record("pt-python-dynamoStreamEvent.json", 0);
  mm_record_info_t b = fixture_record("pt-python-dynamoStreamEvent.json", 1);
  ck_assert(a.has_time);
  ck_assert_double_eq(a.time, 1693997155.0);
  ck_assert_int_eq(b.has_time, 0);
  ck_assert_str_eq(b.seq, "222");
  mm_record_info_t c = fixture_record("dotnet-dynamodb-timewindow-event.json", 2);
  ck_assert_int_eq(c.has_time, 0);
}
END_TEST

/* ------------------------------------------------------------------ */
/* SequenceNumber order                                                 */
/* ------------------------------------------------------------------ */

static const struct {
  const char *rule, *a, *b;
  int sign;
} seq_cases[] = {
    {"equal", "4421584500000000017450439091", "4421584500000000017450439091", 0},
    {"shorter is lower (21 vs 40 digits)", "999999999999999999999",
     "1000000000000000000000000000000000000000", -1},
    {"longer is higher (40 vs 21 digits)",
     "1000000000000000000000000000000000000000", "999999999999999999999", 1},
    {"same length, bytewise", "4421584500000000017450439001",
     "4421584500000000017450439092", -1},
    {"same length, last digit", "600000000008367682944", "600000000008367682943", 1},
    {"same length, first digit", "200000000027074221525", "100000000009040647000", 1},
    {"beyond uint64", "18446744073709551616", "18446744073709551615", 1},
    {"short fixture numbers", "111", "222", -1},
    {"empty sorts first", "", "1", -1},
};

START_TEST(seq_order) {
  int c = mm_seq_cmp(seq_cases[_i].a, seq_cases[_i].b);
  int sign = (c > 0) - (c < 0);
  ck_assert_msg(sign == seq_cases[_i].sign, "%s: %d", seq_cases[_i].rule, c);
  int r = mm_seq_cmp(seq_cases[_i].b, seq_cases[_i].a);
  ck_assert_int_eq((r > 0) - (r < 0), -seq_cases[_i].sign);
}
END_TEST

/* The lowest SequenceNumber of the big fixture (duplicates, out of order). */
START_TEST(seq_lowest_in_fixture) {
  mm_event_t ev;
  char *buf = load_event("pt-java-dynamo-event-big.json", &ev);
  char low[MM_EVENT_ID_MAX] = "", high[MM_EVENT_ID_MAX] = "";
  for (uint32_t k = 0; k < ev.nrecords; k++) {
    mm_record_info_t info;
    mm_err_t e;
    ck_assert_int_eq(mm_event_record(&ev, record_node(&ev, k), &info, &e), 0);
    if (!low[0] || mm_seq_cmp(info.seq, low) < 0) strcpy(low, info.seq);
    if (!high[0] || mm_seq_cmp(info.seq, high) > 0) strcpy(high, info.seq);
  }
  ck_assert_str_eq(low, "4421584500000000017450439001");
  ck_assert_str_eq(high, "4421584500000000017450439093");
  mm_event_free(&ev);
  free(buf);
}
END_TEST

static Suite *event_suite(void) {
  Suite *s = suite_create("event");
  TCase *tc = tcase_create("fixtures");
  tcase_add_loop_test(tc, fixture_is_stream_event, 0,
                      sizeof stream_fixtures / sizeof *stream_fixtures);
  tcase_add_loop_test(tc, non_event_rejected, 0,
                      sizeof non_event_fixtures / sizeof *non_event_fixtures);
  tcase_add_test(tc, invalid_fixture_is_invalid_json);
  suite_add_tcase(s, tc);

  tc = tcase_create("shape");
  tcase_add_loop_test(tc, event_shape, 0, sizeof shape_cases / sizeof *shape_cases);
  tcase_add_test(tc, deep_payload_is_invalid_json);
  suite_add_tcase(s, tc);

  tc = tcase_create("records");
  tcase_add_loop_test(tc, record_facts, 0,
                      sizeof record_cases / sizeof *record_cases);
  suite_add_tcase(s, tc);

  tc = tcase_create("time");
  tcase_add_loop_test(tc, time_normalised, 0, sizeof time_cases / sizeof *time_cases);
  tcase_add_test(tc, fixture_time_ms_and_seconds);
  tcase_add_test(tc, fixture_time_scientific);
  tcase_add_test(tc, fixture_time_float_and_absent);
  suite_add_tcase(s, tc);

  tc = tcase_create("sequence");
  tcase_add_loop_test(tc, seq_order, 0, sizeof seq_cases / sizeof *seq_cases);
  tcase_add_test(tc, seq_lowest_in_fixture);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  return tu_run_suite(event_suite());
}

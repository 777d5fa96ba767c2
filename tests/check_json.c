/*
 * check_json.c - the JSON parser (runtime/json.c): grammar, UTF-8, escapes,
 * depth limit, tape layout, lookups, numbers, big inputs and the fixtures.
 *
 * Most cases are tables named after the rule they pin down. Valid inputs
 * are checked by rendering the tape back to compact JSON (which only comes
 * out right when types, slices, len and next are all right) and by a
 * separate walk that asserts the tape invariants.
 */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "testutil.h"

/* ------------------------------------------------------------------ */
/* Helpers                                                              */
/* ------------------------------------------------------------------ */

/* Asserts the tape invariants of doc: every subtree ends where `next`
 * says, scalars span one node, containers hold exactly len elements (2*len
 * nodes' worth for objects, keys being strings), and slices stay inside the
 * input. Iterative, so it works on very deep tapes. */
static void check_tape(const mm_json_doc_t *d) {
  /* plain tests, not ck_assert: Check marks a point per assertion, which is
   * far too slow for million-node tapes */
#define TAPE_OK(cond)                                                        \
  do {                                                                       \
    if (!(cond)) ck_abort_msg("tape invariant failed at node %u: %s", i,     \
                              #cond);                                        \
  } while (0)
  uint32_t i = 0;
  TAPE_OK(d->count >= 1 && d->count <= d->cap);
  TAPE_OK(mm_json_next(d, 0) == d->count);
  for (i = 0; i < d->count; i++) {
    uint32_t nx = mm_json_next(d, i);
    uint32_t off = d->nodes[i].tag >> 4;
    TAPE_OK(nx > i && nx <= d->count);
    TAPE_OK(off < d->src_len);
    mm_json_type_t t = mm_json_type(d, i);
    TAPE_OK(t <= MM_JSON_OBJ);
    if (t == MM_JSON_ARR || t == MM_JSON_OBJ) {
      uint32_t want = mm_json_len(d, i) * (t == MM_JSON_OBJ ? 2 : 1);
      uint32_t c = i + 1, n = 0;
      while (c < nx) {
        TAPE_OK(t != MM_JSON_OBJ || n % 2 || mm_json_type(d, c) == MM_JSON_STR);
        c = mm_json_next(d, c);
        n++;
      }
      TAPE_OK(c == nx);
      TAPE_OK(n == want);
    } else {
      TAPE_OK(nx == i + 1);
      if (t == MM_JSON_STR) {
        TAPE_OK(off >= 1 && (size_t)off + mm_json_len(d, i) < d->src_len);
        TAPE_OK(d->src[off - 1] == '"');
        TAPE_OK(d->src[off + mm_json_len(d, i)] == '"');
      } else if (t == MM_JSON_NUM) {
        TAPE_OK((size_t)off + mm_json_len(d, i) <= d->src_len);
      } else {
        TAPE_OK(mm_json_len(d, i) == 0);
      }
    }
  }
#undef TAPE_OK
}

/* Renders subtree i as compact JSON (raw string slices, raw numbers). */
static uint32_t render(const mm_json_doc_t *d, uint32_t i, char *out,
                       size_t *pos, size_t cap) {
#define PUT(s, n)                                                            \
  do {                                                                       \
    ck_assert_uint_le(*pos + (n), cap);                                      \
    memcpy(out + *pos, (s), (n));                                            \
    *pos += (n);                                                             \
  } while (0)
  switch (mm_json_type(d, i)) {
  case MM_JSON_NULL: PUT("null", 4); break;
  case MM_JSON_TRUE: PUT("true", 4); break;
  case MM_JSON_FALSE: PUT("false", 5); break;
  case MM_JSON_NUM: PUT(mm_json_raw(d, i), mm_json_len(d, i)); break;
  case MM_JSON_STR:
    PUT("\"", 1);
    PUT(mm_json_raw(d, i), mm_json_len(d, i));
    PUT("\"", 1);
    break;
  case MM_JSON_ARR:
  case MM_JSON_OBJ: {
    int obj = mm_json_type(d, i) == MM_JSON_OBJ;
    PUT(obj ? "{" : "[", 1);
    uint32_t c = mm_json_first(d, i);
    for (uint32_t k = 0; k < mm_json_len(d, i); k++) {
      if (k) PUT(",", 1);
      if (obj) {
        c = render(d, c, out, pos, cap);
        PUT(":", 1);
      }
      c = render(d, c, out, pos, cap);
    }
    break;
  }
  }
  if (mm_json_type(d, i) == MM_JSON_ARR) PUT("]", 1);
  if (mm_json_type(d, i) == MM_JSON_OBJ) PUT("}", 1);
  return mm_json_next(d, i);
#undef PUT
}

/* Parses s (n bytes, or strlen when n is 0) expecting failure; returns the
 * message in a static buffer. */
static const char *parse_fail(const char *s, size_t n, unsigned depth,
                              int *code) {
  static mm_err_t e;
  mm_json_doc_t d;
  mm_err_clear(&e);
  int rc = mm_json_parse(&d, s, n ? n : strlen(s), depth, &e);
  ck_assert_msg(rc != 0, "accepted invalid input [%s]", s);
  ck_assert_ptr_null(d.nodes);
  ck_assert_uint_eq(d.count, 0);
  ck_assert_int_eq(e.code, rc);
  mm_json_free(&d);
  if (code) *code = rc;
  return e.msg;
}

/* Parses s (n bytes) into d expecting success; `what` names the input in
 * the failure message. */
static void parse_ok(mm_json_doc_t *d, const char *s, size_t n, const char *what) {
  mm_err_t e;
  mm_err_clear(&e);
  ck_assert_msg(mm_json_parse(d, s, n, 0, &e) == 0, "%s: %s", what, e.msg);
}

/* Parses s (n bytes, or strlen when n is 0) with nesting limit `depth`
 * expecting failure with error code `code` and a message starting with
 * `want`; `rule` names the case in the failure message. */
static void expect_fail(const char *rule, const char *s, size_t n, unsigned depth, int code,
                        const char *want) {
  int got;
  const char *msg = parse_fail(s, n, depth, &got);
  ck_assert_int_eq(got, code);
  ck_assert_msg(strncmp(msg, want, strlen(want)) == 0, "%s: got \"%s\", want \"%s\"", rule,
                msg, want);
}

/* ------------------------------------------------------------------ */
/* Grammar                                                              */
/* ------------------------------------------------------------------ */

static const struct {
  const char *rule, *in, *compact;
} valid_cases[] = {
    {"scalar true", "true", "true"},
    {"scalar false", "false", "false"},
    {"scalar null", "null", "null"},
    {"zero", "0", "0"},
    {"negative zero", "-0", "-0"},
    {"integer", "1234567890", "1234567890"},
    {"negative float", "-12.50", "-12.50"},
    {"exponent forms", "[1e5,1E5,1e+5,1e-5,0.5e-0,-0E0]",
     "[1e5,1E5,1e+5,1e-5,0.5e-0,-0E0]"},
    {"38 digits stay text", "99999999999999999999999999999999999999",
     "99999999999999999999999999999999999999"},
    {"empty string", "\"\"", "\"\""},
    {"string kept raw", "\"a\\nb\"", "\"a\\nb\""},
    {"empty array", "[]", "[]"},
    {"empty object", "{}", "{}"},
    {"nested empties", "[[],{},[[]],{\"a\":{}}]", "[[],{},[[]],{\"a\":{}}]"},
    {"white space everywhere", " \t\r\n{ \"a\" :\n[ 1 ,\t2 ] , \"b\" : null }\n ",
     "{\"a\":[1,2],\"b\":null}"},
    {"object members in order", "{\"z\":1,\"a\":2,\"m\":[true,false]}",
     "{\"z\":1,\"a\":2,\"m\":[true,false]}"},
    {"DEL is not a control character", "\"\x7f\"", "\"\x7f\""},
    {"number then bracket", "[0]", "[0]"},
    {"number at end of input", "[1,-2.5e10]", "[1,-2.5e10]"},
    {"BOM then value", "\xEF\xBB\xBF{\"a\":1}", "{\"a\":1}"},
    {"BOM then white space", "\xEF\xBB\xBF \n [1]", "[1]"},
    {"every escape", "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041\"",
     "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041\""},
    {"long array of mixed values",
     "[1,\"two\",3.0,{\"four\":[4]},null,true,false,[],\"\",-0.0e1]",
     "[1,\"two\",3.0,{\"four\":[4]},null,true,false,[],\"\",-0.0e1]"},
    /* objects of one member with a string value are read straight
     * through (json.c open_obj); every way out of that path gives the
     * same tape as the general one */
    {"attribute value", "{\"S\":\"x\"}", "{\"S\":\"x\"}"},
    {"attribute value: nested attribute values", "{\"a\":{\"S\":\"x\"},\"b\":{\"N\":\"1\"}}",
     "{\"a\":{\"S\":\"x\"},\"b\":{\"N\":\"1\"}}"},
    {"attribute value: in an array", "[{\"S\":\"\"},{\"S\":\"y\"}]", "[{\"S\":\"\"},{\"S\":\"y\"}]"},
    {"attribute value: second member", "{\"S\":\"x\",\"T\":1}", "{\"S\":\"x\",\"T\":1}"},
    {"attribute value: second string member", "{\"a\":{\"S\":\"x\",\"T\":\"y\"}}",
     "{\"a\":{\"S\":\"x\",\"T\":\"y\"}}"},
    {"attribute value: white space before the brace", "{\"S\":\"x\" }", "{\"S\":\"x\"}"},
    {"attribute value: white space before the colon", "{\"S\" :\"x\"}", "{\"S\":\"x\"}"},
    {"attribute value: white space after the colon", "{\"S\": \"x\"}", "{\"S\":\"x\"}"},
    {"attribute value: non-string value", "{\"BOOL\":true}", "{\"BOOL\":true}"},
    {"attribute value: object value", "{\"M\":{\"a\":{\"S\":\"b\"}}}", "{\"M\":{\"a\":{\"S\":\"b\"}}}"},
    {"attribute value: escapes in both", "{\"\\u0053\":\"\\n\"}", "{\"\\u0053\":\"\\n\"}"},
    /* literal values, one-letter names (read without a string scan) and
     * one-member objects as member values (json.c OPEN_OBJ) */
    {"attribute value: false", "{\"BOOL\":false}", "{\"BOOL\":false}"},
    {"attribute value: null", "{\"NULL\":true}", "{\"NULL\":true}"},
    {"attribute value: literal values in an array",
     "[{\"BOOL\":false},{\"NULL\":null},{\"S\":true}]",
     "[{\"BOOL\":false},{\"NULL\":null},{\"S\":true}]"},
    {"attribute value: literal values as members",
     "{\"a\":{\"BOOL\":true},\"b\":{\"NULL\":true},\"c\":{\"S\":\"x\"}}",
     "{\"a\":{\"BOOL\":true},\"b\":{\"NULL\":true},\"c\":{\"S\":\"x\"}}"},
    {"attribute value: literal then more members", "{\"a\":{\"BOOL\":true,\"x\":[1]}}",
     "{\"a\":{\"BOOL\":true,\"x\":[1]}}"},
    {"attribute value: number value", "{\"a\":{\"N\":12}}", "{\"a\":{\"N\":12}}"},
    {"attribute value: one-letter names of any kind",
     "[{\"#\":1},{\"~\":\"x\"},{\"\x7f\":true},{\" \":\"x\"},{\"!\":null},{\"\xC3\xA9\":1}]",
     "[{\"#\":1},{\"~\":\"x\"},{\"\x7f\":true},{\" \":\"x\"},{\"!\":null},{\"\xC3\xA9\":1}]"},
    {"attribute value: escaped one-letter name", "{\"a\":{\"\\n\":\"x\"}}",
     "{\"a\":{\"\\n\":\"x\"}}"},
    {"attribute value: empty name", "{\"a\":{\"\":\"x\"}}", "{\"a\":{\"\":\"x\"}}"},
    {"attribute value: lists and maps", "{\"L\":[{\"M\":{\"a\":{\"SS\":[\"x\",\"y\"]}}},{\"L\":[]}]}",
     "{\"L\":[{\"M\":{\"a\":{\"SS\":[\"x\",\"y\"]}}},{\"L\":[]}]}"},
    {"attribute value: white space after the brace", "{\"a\":{ \"S\":\"x\"}}",
     "{\"a\":{\"S\":\"x\"}}"},
    {"attribute value: white space after the member name", "{\"a\" :{\"S\":\"x\"} ,\"b\":1}",
     "{\"a\":{\"S\":\"x\"},\"b\":1}"},
};

START_TEST(valid_grammar) {
  const char *in = valid_cases[_i].in;
  mm_json_doc_t d;
  mm_err_t e;
  mm_err_clear(&e);
  int rc = mm_json_parse(&d, in, strlen(in), 0, &e);
  ck_assert_msg(rc == 0, "%s: rejected: %s", valid_cases[_i].rule, e.msg);
  check_tape(&d);
  char out[512];
  size_t pos = 0;
  render(&d, 0, out, &pos, sizeof out);
  out[pos] = '\0';
  ck_assert_msg(strcmp(out, valid_cases[_i].compact) == 0, "%s: got %s",
                valid_cases[_i].rule, out);
  mm_json_free(&d);
  mm_json_free(&d); /* twice is harmless */
}
END_TEST

static const struct {
  const char *rule, *in, *msg;
} invalid_cases[] = {
    {"empty input", "", "byte 0: expected a value but the input ended"},
    {"only white space", "  \n", "byte 3: expected a value but the input ended"},
    {"only a BOM", "\xEF\xBB\xBF", "byte 3: expected a value but the input ended"},
    {"partial BOM", "\xEF\xBB[]", "byte 0: expected a value, found byte 0xEF"},
    {"BOM after white space", " \xEF\xBB\xBF[]",
     "byte 1: expected a value, found byte 0xEF"},
    {"two BOMs", "\xEF\xBB\xBF\xEF\xBB\xBF[]",
     "byte 3: expected a value, found byte 0xEF"},
    {"trailing comma in array", "[1,2,]", "byte 5: expected a value, found ']'"},
    {"trailing comma in object", "{\"a\":1,}",
     "byte 7: expected a string key, found '}'"},
    {"leading comma", "[,1]", "byte 1: expected a value, found ','"},
    {"double comma", "[1,,2]", "byte 3: expected a value, found ','"},
    {"missing comma in array", "[1 2]", "byte 3: expected ',' or ']', found '2'"},
    {"missing comma in object", "{\"a\":1 \"b\":2}",
     "byte 7: expected ',' or '}', found '\"'"},
    {"missing colon", "{\"a\" 1}", "byte 5: expected ':', found '1'"},
    {"unquoted key", "{a:1}", "byte 1: expected a string key or '}', found 'a'"},
    {"number key", "{1:1}", "byte 1: expected a string key or '}', found '1'"},
    {"single quotes", "['a']", "byte 1: expected a value, found '''"},
    {"mismatched bracket", "[1}", "byte 2: expected ',' or ']', found '}'"},
    {"mismatched brace", "{\"a\":1]", "byte 6: expected ',' or '}', found ']'"},
    {"close without open", "]", "byte 0: expected a value, found ']'"},
    {"unclosed array", "[1", "byte 2: expected ',' or ']' but the input ended"},
    {"unclosed object", "{\"a\":", "byte 5: expected a value but the input ended"},
    {"unclosed object after value", "{\"a\":1",
     "byte 6: expected ',' or '}' but the input ended"},
    {"unterminated string", "\"abc", "byte 4: unterminated string"},
    {"unterminated long string", "\"abcdefghijklmnopqrstuvwxyz",
     "byte 27: unterminated string"},
    {"unterminated after backslash", "\"ab\\", "byte 4: unterminated string"},
    {"leading zero", "01", "byte 0: leading zero in number"},
    {"negative leading zero", "[-012]", "byte 2: leading zero in number"},
    {"leading plus", "+1", "byte 0: expected a value, found '+'"},
    {"bare minus", "-", "byte 1: expected a digit after '-' but the input ended"},
    {"minus letter", "-a", "byte 1: expected a digit after '-', found 'a'"},
    {"leading dot", ".5", "byte 0: expected a value, found '.'"},
    {"trailing dot", "1.", "byte 2: expected a digit after '.' but the input ended"},
    {"dot before exponent", "1.e5", "byte 2: expected a digit after '.', found 'e'"},
    {"empty exponent", "1e", "byte 2: expected a digit in the exponent but the input ended"},
    {"sign-only exponent", "[1e+]", "byte 4: expected a digit in the exponent, found ']'"},
    {"hex number", "0x10", "byte 1: expected end of input after the value, found 'x'"},
    {"NaN", "NaN", "byte 0: expected a value, found 'N'"},
    {"Infinity", "Infinity", "byte 0: expected a value, found 'I'"},
    {"minus Infinity", "-Infinity", "byte 1: expected a digit after '-', found 'I'"},
    {"capital True", "True", "byte 0: expected a value, found 'T'"},
    {"truncated true", "tru", "byte 0: invalid literal (expected true)"},
    {"misspelt false", "[fals]", "byte 1: invalid literal (expected false)"},
    {"truncated null", "nul", "byte 0: invalid literal (expected null)"},
    {"literal glued to garbage", "nullx",
     "byte 4: expected end of input after the value, found 'x'"},
    {"line comment", "[1]//c", "byte 3: expected end of input after the value, found '/'"},
    {"block comment", "/*c*/[1]", "byte 0: expected a value, found '/'"},
    {"two values", "1 2", "byte 2: expected end of input after the value, found '2'"},
    {"trailing garbage", "{} x", "byte 3: expected end of input after the value, found 'x'"},
    {"NUL after value", "[]\0", "byte 2: expected end of input after the value, found byte 0x00"},
    {"tab in string", "\"a\tb\"", "byte 2: control character in string"},
    {"newline in string", "[\"a\nb\"]", "byte 3: control character in string"},
    {"NUL in string", "\"a\0b\"", "byte 2: control character in string"},
    {"control char in long string", "\"abcdefghijklmnop\x1fq\"",
     "byte 17: control character in string"},
    {"unknown escape", "\"\\x41\"", "byte 1: invalid escape"},
    {"escaped single quote", "\"\\'\"", "byte 1: invalid escape"},
    {"short \\u", "\"\\u12\"", "byte 1: invalid \\u escape (expected 4 hex digits)"},
    {"\\u at end", "\"\\u00", "byte 1: invalid \\u escape (expected 4 hex digits)"},
    {"non-hex \\u", "\"\\u12G4\"", "byte 1: invalid \\u escape (expected 4 hex digits)"},
    {"non-ASCII outside a string", "[\xC3\xA9]", "byte 1: expected a value, found byte 0xC3"},
    {"white space U+00A0 outside a string", "[1,\xC2\xA0 2]",
     "byte 3: expected a value, found byte 0xC2"},
    {"vertical tab is not white space", "[\v1]", "byte 1: expected a value, found byte 0x0B"},
    {"attribute value: unclosed after the value", "{\"S\":\"x\"", "byte 8: expected ',' or '}' but the input ended"},
    {"attribute value: bracket after the value", "{\"S\":\"x\"]", "byte 8: expected ',' or '}', found ']'"},
    {"attribute value: colon then the end", "{\"S\":", "byte 5: expected a value but the input ended"},
    {"attribute value: no colon", "{\"S\"\"x\"}", "byte 4: expected ':', found '\"'"},
    {"attribute value: unterminated value", "{\"S\":\"x", "byte 7: unterminated string"},
    {"attribute value: control character in the value", "{\"S\":\"\x01\"}", "byte 6: control character"},
    {"attribute value: bad escape in the key", "{\"\\q\":\"x\"}", "byte 2: invalid escape"},
    {"attribute value: trailing comma", "{\"S\":\"x\",}", "byte 9: expected a string key, found '}'"},
    {"attribute value: truncated true", "{\"S\":tru}", "byte 5: invalid literal (expected true)"},
    {"attribute value: misspelt false", "{\"BOOL\":fals}", "byte 8: invalid literal (expected false)"},
    {"attribute value: truncated null", "{\"S\":nul}", "byte 5: invalid literal (expected null)"},
    {"attribute value: literal glued to garbage", "{\"a\":{\"BOOL\":truex}}",
     "byte 17: expected ',' or '}', found 'x'"},
    {"attribute value: bracket after a literal", "{\"S\":true]", "byte 9: expected ',' or '}', found ']'"},
    {"attribute value: literal at the end", "{\"S\":t", "byte 5: invalid literal (expected true)"},
    {"attribute value: backslash name", "{\"\\\":1}", "byte 7: unterminated string"},
    {"attribute value: quote name", "{\"\"\":1}", "byte 3: expected ':', found '\"'"},
    {"attribute value: control character name", "{\"a\":{\"\x01\":\"x\"}}",
     "byte 7: control character in string (must be escaped)"},
    {"attribute value: truncated UTF-8 name", "{\"a\":{\"\xC3\":\"x\"}}",
     "byte 7: invalid UTF-8 in string (truncated sequence)"},
    {"attribute value: name then the end", "{\"S\"", "byte 4: expected ':' but the input ended"},
    {"attribute value: bracket in a member", "{\"a\":{\"S\":\"x\"]}", "byte 13: expected ',' or '}', found ']'"},
    {"attribute value: member name without a value", "{\"a\":{\"S\":\"x\"},\"b\"}",
     "byte 18: expected ':', found '}'"},
    {"attribute value: trailing comma after a literal", "[{\"NULL\":null,}]",
     "byte 14: expected a string key, found '}'"},
};

START_TEST(invalid_grammar) {
  const char *in = invalid_cases[_i].in;
  size_t n = strlen(in);
  if (strcmp(invalid_cases[_i].rule, "NUL after value") == 0) n = 3;
  if (strcmp(invalid_cases[_i].rule, "NUL in string") == 0) n = 5;
  expect_fail(invalid_cases[_i].rule, in, n, 0, MM_EINVAL, invalid_cases[_i].msg);
}
END_TEST

/* Every strict prefix of a fixture is invalid, and the error points inside
 * the prefix (at its end when the input simply stopped). */
START_TEST(every_prefix_fails) {
  size_t len;
  char *buf = tu_fixture("go-dynamodb-event.json", &len);
  for (size_t n = 0; n < len; n++) {
    mm_json_doc_t d;
    mm_err_t e;
    mm_err_clear(&e);
    int rc = mm_json_parse(&d, buf, n, 0, &e);
    /* the document is an object: only the full text (plus trailing white
     * space) can be valid */
    if (rc == 0) {
      ck_assert_msg(strspn(buf + n, " \t\r\n") == len - n, "prefix %zu ok", n);
      mm_json_free(&d);
      continue;
    }
    size_t at;
    ck_assert_msg(sscanf(e.msg, "byte %zu:", &at) == 1, "%s", e.msg);
    ck_assert_uint_le(at, n);
  }
  free(buf);
}
END_TEST

/* ------------------------------------------------------------------ */
/* UTF-8                                                                */
/* ------------------------------------------------------------------ */

static const struct {
  const char *rule, *bytes;
} utf8_valid[] = {
    {"U+0080 smallest 2-byte", "\xC2\x80"},
    {"U+07FF largest 2-byte", "\xDF\xBF"},
    {"U+0800 smallest 3-byte", "\xE0\xA0\x80"},
    {"U+D7FF just below surrogates", "\xED\x9F\xBF"},
    {"U+E000 just above surrogates", "\xEE\x80\x80"},
    {"U+FFFD replacement char", "\xEF\xBF\xBD"},
    {"U+FFFF largest 3-byte", "\xEF\xBF\xBF"},
    {"U+10000 smallest 4-byte", "\xF0\x90\x80\x80"},
    {"U+1F98A fox", "\xF0\x9F\xA6\x8A"},
    {"U+10FFFF largest", "\xF4\x8F\xBF\xBF"},
    {"mixed text", "gr\xC3\xBC\xC3\x9F" "e \xE2\x82\xAC \xF0\x9F\x98\x80!"},
};

START_TEST(utf8_accepted) {
  /* each sequence alone, after a word-length ASCII run (the fast path),
   * and straddling the end of a word */
  static const char *pads[] = {"", "abcdefghijklmnopqrstu", "abcdef"};
  for (size_t k = 0; k < sizeof pads / sizeof *pads; k++) {
    char in[128];
    int n = snprintf(in, sizeof in, "[\"%s%s\",\"%s\"]", pads[k],
                     utf8_valid[_i].bytes, utf8_valid[_i].bytes);
    mm_json_doc_t d;
    mm_err_t e;
    int rc = mm_json_parse(&d, in, (size_t)n, 0, &e);
    ck_assert_msg(rc == 0, "%s: %s", utf8_valid[_i].rule, e.msg);
    check_tape(&d);
    ck_assert_uint_eq(mm_json_len(&d, 1),
                      strlen(pads[k]) + strlen(utf8_valid[_i].bytes));
    ck_assert(!mm_json_has_escapes(&d, 1));
    mm_json_free(&d);
  }
}
END_TEST

static const struct {
  const char *rule, *bytes, *why;
  int bad_at; /* offset of the reported byte within `bytes` */
} utf8_invalid[] = {
    {"lone continuation byte", "\x80", "unexpected continuation byte", 0},
    {"continuation after ASCII", "a\xBF", "unexpected continuation byte", 1},
    {"extra continuation", "\xC3\xA9\xA9", "unexpected continuation byte", 2},
    {"overlong C0", "\xC0\x80", "overlong encoding", 0},
    {"overlong C1", "\xC1\xBF", "overlong encoding", 0},
    {"overlong 3-byte NUL", "\xE0\x80\x80", "overlong encoding", 0},
    {"overlong 3-byte U+07FF", "\xE0\x9F\xBF", "overlong encoding", 0},
    {"overlong 4-byte", "\xF0\x80\x80\x80", "overlong encoding", 0},
    {"overlong 4-byte U+FFFF", "\xF0\x8F\xBF\xBF", "overlong encoding", 0},
    {"surrogate D800", "\xED\xA0\x80", "encoded surrogate", 0},
    {"surrogate DFFF", "\xED\xBF\xBF", "encoded surrogate", 0},
    {"surrogate pair as CESU-8", "\xED\xA0\xBD\xED\xB8\x80", "encoded surrogate", 0},
    {"U+110000", "\xF4\x90\x80\x80", "above U+10FFFF", 0},
    {"F5 lead", "\xF5\x80\x80\x80", "above U+10FFFF", 0},
    {"F7 lead", "\xF7\xBF\xBF\xBF", "above U+10FFFF", 0},
    {"F8 5-byte form", "\xF8\x88\x80\x80\x80", "never valid", 0},
    {"FE", "\xFE", "never valid", 0},
    {"FF", "\xFF", "never valid", 0},
    {"2-byte cut by quote", "\xC3", "truncated sequence", 0},
    {"3-byte cut by quote", "\xE2\x82", "truncated sequence", 0},
    {"4-byte cut by quote", "\xF0\x9F\x98", "truncated sequence", 0},
    {"2-byte then ASCII", "\xC3" "A", "truncated sequence", 0},
    {"3-byte with ASCII third", "\xE2\x82" "A", "truncated sequence", 0},
    {"4-byte with new lead", "\xF0\x9F\x98\xF0\x9F\x98\x80", "truncated sequence", 0},
};

START_TEST(utf8_rejected) {
  static const char *pads[] = {"", "abcdefghijklmnopqrstu", "abcdef"};
  for (size_t k = 0; k < sizeof pads / sizeof *pads; k++) {
    char in[128], want[160];
    int n = snprintf(in, sizeof in, "[\"%s%s\"]", pads[k],
                     utf8_invalid[_i].bytes);
    size_t at = 2 + strlen(pads[k]) + (size_t)utf8_invalid[_i].bad_at;
    snprintf(want, sizeof want, "byte %zu: invalid UTF-8 in string (", at);
    const char *msg = parse_fail(in, (size_t)n, 0, NULL);
    ck_assert_msg(strncmp(msg, want, strlen(want)) == 0 &&
                      strstr(msg, utf8_invalid[_i].why),
                  "%s (pad %zu): got \"%s\"", utf8_invalid[_i].rule, k, msg);
  }
  /* the same bytes cut by the end of input are truncated, not read past */
  if (strstr(utf8_invalid[_i].why, "truncated") && utf8_invalid[_i].bad_at == 0) {
    char in[64];
    int n = snprintf(in, sizeof in, "\"%s", utf8_invalid[_i].bytes);
    size_t len = (size_t)n;
    if (strcmp(utf8_invalid[_i].rule, "2-byte then ASCII") == 0 ||
        strcmp(utf8_invalid[_i].rule, "3-byte with ASCII third") == 0)
      len--; /* drop the ASCII byte: the sequence ends the buffer */
    char *heap = malloc(len); /* exact size so ASan sees any overread */
    memcpy(heap, in, len);
    const char *msg = parse_fail(heap, len, 0, NULL);
    ck_assert_msg(strstr(msg, "truncated sequence") || strstr(msg, "unterminated"),
                  "%s at end: %s", utf8_invalid[_i].rule, msg);
    free(heap);
  }
}
END_TEST

/* ------------------------------------------------------------------ */
/* Escapes                                                              */
/* ------------------------------------------------------------------ */

static const struct {
  const char *rule, *json; /* string body as written in JSON */
  const char *text;
  size_t text_len;
} escape_cases[] = {
    {"quote", "\\\"", "\"", 1},
    {"backslash", "\\\\", "\\", 1},
    {"solidus", "\\/", "/", 1},
    {"control escapes", "\\b\\f\\n\\r\\t", "\b\f\n\r\t", 5},
    {"\\u ASCII", "\\u0041", "A", 1},
    {"\\u NUL keeps length", "a\\u0000b", "a\0b", 3},
    {"\\u lower-case hex", "\\u00e9", "\xC3\xA9", 2},
    {"\\u upper-case hex", "\\u00E9", "\xC3\xA9", 2},
    {"\\u 2-byte max", "\\u07FF", "\xDF\xBF", 2},
    {"\\u 3-byte euro", "\\u20AC", "\xE2\x82\xAC", 3},
    {"\\u below surrogates", "\\uD7FF", "\xED\x9F\xBF", 3},
    {"\\u above surrogates", "\\uE000", "\xEE\x80\x80", 3},
    {"\\u FFFF", "\\uFFFF", "\xEF\xBF\xBF", 3},
    {"surrogate pair U+1F600", "\\uD83D\\uDE00", "\xF0\x9F\x98\x80", 4},
    {"surrogate pair U+10000", "\\uD800\\uDC00", "\xF0\x90\x80\x80", 4},
    {"surrogate pair U+10FFFF", "\\udbff\\udfff", "\xF4\x8F\xBF\xBF", 4},
    {"escapes between text", "ab\\ncd\\u0041ef\\\\", "ab\ncdAef\\", 9},
    {"escape after a long run", "abcdefghijklmnopqrstuvwxyz\\t!",
     "abcdefghijklmnopqrstuvwxyz\t!", 28},
    {"raw UTF-8 next to escapes", "\xC3\xA9\\u00e9\xC3\xA9", "\xC3\xA9\xC3\xA9\xC3\xA9", 6},
};

START_TEST(escapes_decode) {
  char in[128];
  int n = snprintf(in, sizeof in, "{\"%s\":\"%s\"}", escape_cases[_i].json,
                   escape_cases[_i].json);
  mm_json_doc_t d;
  mm_err_t e;
  int rc = mm_json_parse(&d, in, (size_t)n, 0, &e);
  ck_assert_msg(rc == 0, "%s: %s", escape_cases[_i].rule, e.msg);
  check_tape(&d);
  const char *want = escape_cases[_i].text;
  size_t wn = escape_cases[_i].text_len;
  for (uint32_t i = 1; i <= 2; i++) {
    ck_assert(mm_json_has_escapes(&d, i));
    ck_assert_uint_eq(mm_json_len(&d, i), strlen(escape_cases[_i].json));
    char dst[128];
    size_t dn = mm_json_unescape(mm_json_raw(&d, i), mm_json_len(&d, i), dst);
    ck_assert_uint_eq(dn, wn);
    ck_assert(memcmp(dst, want, wn) == 0);
    size_t sn = 99;
    char *s = mm_json_strdup(&d, i, &sn);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(sn, wn);
    ck_assert(memcmp(s, want, wn) == 0 && s[wn] == '\0');
    free(s);
    ck_assert(mm_json_str_eq(&d, i, want, wn));
    /* one byte short, one byte long, and the raw text all differ */
    ck_assert(!mm_json_str_eq(&d, i, want, wn - 1));
    ck_assert(!mm_json_str_eq(&d, i, "\xF4\x8F\xBF\xBFzzzzzzzzzzzz", wn + 1));
    ck_assert(!mm_json_str_eq(&d, i, escape_cases[_i].json,
                              strlen(escape_cases[_i].json)));
  }
  /* the escaped key is found by its decoded text */
  ck_assert_uint_eq(mm_json_get(&d, 0, want, wn), 2);
  mm_json_free(&d);
}
END_TEST

static const struct {
  const char *rule, *json, *msg;
} escape_invalid[] = {
    {"lone high surrogate", "\"\\uD83D\"", "byte 1: invalid \\u escape (high surrogate not followed"},
    {"high surrogate then text", "\"\\uD83Dxxxxxx\"", "byte 1: invalid \\u escape (high surrogate"},
    {"high surrogate then BMP escape", "\"\\uD83D\\u0041\"", "byte 1: invalid \\u escape (high surrogate"},
    {"two high surrogates", "\"\\uD83D\\uD83D\"", "byte 1: invalid \\u escape (high surrogate"},
    {"high surrogate then other escape", "\"\\uD83D\\n\"", "byte 1: invalid \\u escape (high surrogate"},
    {"high surrogate at end of input", "\"\\uD83D", "byte 1: invalid \\u escape (high surrogate"},
    {"high surrogate then short \\u", "\"\\uD83D\\uDE0\"", "byte 1: invalid \\u escape (high surrogate"},
    {"lone low surrogate", "\"ab\\uDE00\"", "byte 3: invalid \\u escape (low surrogate without"},
    {"low then high", "\"\\uDC00\\uD800\"", "byte 1: invalid \\u escape (low surrogate"},
    {"pair in wrong order after text", "[\"x\",\"\\uDFFF\\uDBFF\"]", "byte 6: invalid \\u escape (low"},
};

START_TEST(escapes_rejected) {
  const char *msg = parse_fail(escape_invalid[_i].json, 0, 0, NULL);
  ck_assert_msg(strncmp(msg, escape_invalid[_i].msg,
                        strlen(escape_invalid[_i].msg)) == 0,
                "%s: got \"%s\"", escape_invalid[_i].rule, msg);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Depth                                                                */
/* ------------------------------------------------------------------ */

/* Builds `depth` nested arrays (or objects {"a":...}) around 1. */
static char *nest(unsigned depth, int objects, int closed, size_t *len) {
  size_t cap = (size_t)depth * 6 + 8, n = 0;
  char *s = malloc(cap);
  ck_assert_ptr_nonnull(s);
  for (unsigned k = 0; k < depth; k++) {
    if (objects) memcpy(s + n, "{\"a\":", 5), n += 5;
    else s[n++] = '[';
  }
  s[n++] = '1';
  if (closed)
    for (unsigned k = 0; k < depth; k++) s[n++] = objects ? '}' : ']';
  *len = n;
  return s;
}

START_TEST(depth_limit_boundary) {
  static const unsigned limits[] = {1, 2, 16, 100, 0 /* default */};
  for (size_t k = 0; k < sizeof limits / sizeof *limits; k++) {
    unsigned lim = limits[k] ? limits[k] : MM_JSON_MAX_DEPTH;
    for (int obj = 0; obj <= 1; obj++) {
      size_t len;
      char *s = nest(lim, obj, 1, &len);
      mm_json_doc_t d;
      mm_err_t e;
      int rc = mm_json_parse(&d, s, len, limits[k], &e);
      ck_assert_msg(rc == 0, "depth %u at limit: %s", lim, e.msg);
      check_tape(&d);
      ck_assert_uint_eq(d.count, obj ? 2 * lim + 1 : lim + 1);
      mm_json_free(&d);
      free(s);

      s = nest(lim + 1, obj, 1, &len);
      int code;
      const char *msg = parse_fail(s, len, limits[k], &code);
      char want[64];
      snprintf(want, sizeof want, "byte %zu: nesting deeper than %u levels",
               (size_t)lim * (obj ? 5 : 1), lim);
      ck_assert_int_eq(code, MM_ELIMIT);
      ck_assert_msg(strcmp(msg, want) == 0, "got %s want %s", msg, want);
      free(s);
    }
  }
}
END_TEST

/* 100000 unclosed '[' must fail at the limit, not overflow anything. */
START_TEST(depth_100000_fails_cleanly) {
  size_t len;
  char *s = nest(100000, 0, 0, &len);
  int code;
  const char *msg = parse_fail(s, len, 0, &code);
  ck_assert_int_eq(code, MM_ELIMIT);
  ck_assert_str_eq(msg, "byte 512: nesting deeper than 512 levels");
  /* with the limit raised the parser still needs no stack: it parses the
   * closed form, and the unclosed form fails at the end of input */
  free(s);
  s = nest(100000, 0, 1, &len);
  mm_json_doc_t d;
  mm_err_t e;
  ck_assert_int_eq(mm_json_parse(&d, s, len, 100000, &e), 0);
  ck_assert_uint_eq(d.count, 100001);
  check_tape(&d);
  for (uint32_t i = 0; i < 100000; i++)
    if (mm_json_len(&d, i) != 1 || mm_json_next(&d, i) != 100001)
      ck_abort_msg("node %u: len %u next %u", i, mm_json_len(&d, i),
                   mm_json_next(&d, i));
  mm_json_free(&d);
  free(s);
  s = nest(100000, 0, 0, &len);
  msg = parse_fail(s, len, 100000, &code);
  ck_assert_int_eq(code, MM_EINVAL);
  ck_assert_str_eq(msg, "byte 100001: expected ',' or ']' but the input ended");
  free(s);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Tape layout, lookups, numbers                                        */
/* ------------------------------------------------------------------ */

START_TEST(tape_layout) {
  const char *in = "\xEF\xBB\xBF {\"k\":[10,\"s\",{}],\"n\":null,\"e\":\"a\\tb\"}";
  mm_json_doc_t d;
  mm_err_t e;
  ck_assert_int_eq(mm_json_parse(&d, in, strlen(in), 0, &e), 0);
  /* 0 obj, 1 "k", 2 arr, 3 10, 4 "s", 5 {}, 6 "n", 7 null, 8 "e", 9 "a\tb" */
  static const struct {
    mm_json_type_t t;
    uint32_t len, next, off;
  } want[] = {
      {MM_JSON_OBJ, 3, 10, 4},  {MM_JSON_STR, 1, 2, 6},
      {MM_JSON_ARR, 3, 6, 9},   {MM_JSON_NUM, 2, 4, 10},
      {MM_JSON_STR, 1, 5, 14},  {MM_JSON_OBJ, 0, 6, 17},
      {MM_JSON_STR, 1, 7, 22},  {MM_JSON_NULL, 0, 8, 25},
      {MM_JSON_STR, 1, 9, 31},  {MM_JSON_STR, 4, 10, 35},
  };
  ck_assert_uint_eq(d.count, 10);
  ck_assert_ptr_eq(d.src, in);
  ck_assert_uint_eq(d.src_len, strlen(in));
  ck_assert_uint_eq(sizeof(mm_json_node_t), 12);
  for (uint32_t i = 0; i < 10; i++) {
    ck_assert_int_eq(mm_json_type(&d, i), want[i].t);
    ck_assert_uint_eq(mm_json_len(&d, i), want[i].len);
    ck_assert_uint_eq(mm_json_next(&d, i), want[i].next);
    ck_assert_uint_eq(d.nodes[i].tag >> 4, want[i].off);
    ck_assert_int_eq(mm_json_has_escapes(&d, i), i == 9);
  }
  ck_assert_uint_eq(mm_json_first(&d, 2), 3);
  ck_assert(memcmp(mm_json_raw(&d, 3), "10", 2) == 0);
  ck_assert(memcmp(mm_json_raw(&d, 9), "a\\tb", 4) == 0);
  ck_assert_uint_eq(mm_json_get(&d, 0, "k", 1), 2);
  ck_assert_uint_eq(mm_json_get(&d, 0, "n", 1), 7);
  ck_assert_uint_eq(mm_json_get(&d, 0, "e", 1), 9);
  ck_assert_uint_eq(mm_json_get(&d, 0, "x", 1), 0);
  ck_assert_uint_eq(mm_json_get(&d, 0, "", 0), 0);
  ck_assert_uint_eq(mm_json_get(&d, 0, "kk", 2), 0);
  ck_assert_uint_eq(mm_json_get(&d, 2, "k", 1), 0); /* not an object */
  ck_assert_uint_eq(mm_json_get(&d, 5, "k", 1), 0); /* empty object */
  /* a value that equals a key is not a key */
  ck_assert_uint_eq(mm_json_get(&d, 0, "s", 1), 0);
  ck_assert(mm_json_str_eq(&d, 9, "a\tb", 3));
  ck_assert(!mm_json_str_eq(&d, 9, "a\\tb", 4));
  mm_json_free(&d);
}
END_TEST

static const struct {
  const char *rule, *in, *key;
  size_t klen;
  uint32_t node; /* expected value node, 0 = absent */
} lookup_cases[] = {
    {"last duplicate wins", "{\"a\":1,\"a\":2}", "a", 1, 4},
    {"last of three duplicates", "{\"a\":1,\"b\":0,\"a\":[3],\"a\":4}", "a", 1, 9},
    {"escaped duplicate after plain", "{\"a\":1,\"\\u0061\":2}", "a", 1, 4},
    {"plain duplicate after escaped", "{\"\\u0061\":1,\"a\":2}", "a", 1, 4},
    {"key with NUL", "{\"a\\u0000b\":1,\"a\":2}", "a\0b", 3, 2},
    {"prefix is not a match", "{\"ab\":1}", "a", 1, 0},
    {"longer key is not a match", "{\"a\":1}", "ab", 2, 0},
    {"case matters", "{\"A\":1}", "a", 1, 0},
    {"skips nested members", "{\"x\":{\"a\":1},\"a\":2}", "a", 1, 6},
    {"nested not searched", "{\"x\":{\"a\":1}}", "a", 1, 0},
    {"empty key", "{\"\":5}", "", 0, 2},
    {"non-ASCII key", "{\"\xC3\xA9t\xC3\xA9\":1,\"\\u00e9t\\u00E9\":2}",
     "\xC3\xA9t\xC3\xA9", 5, 4},
    {"surrogate-pair key", "{\"\\uD83E\\uDD8A\":1}", "\xF0\x9F\xA6\x8A", 4, 2},
};

START_TEST(member_lookup) {
  mm_json_doc_t d;
  mm_err_t e;
  const char *in = lookup_cases[_i].in;
  ck_assert_int_eq(mm_json_parse(&d, in, strlen(in), 0, &e), 0);
  ck_assert_uint_eq(mm_json_get(&d, 0, lookup_cases[_i].key,
                                lookup_cases[_i].klen),
                    lookup_cases[_i].node);
  mm_json_free(&d);
}
END_TEST

#define TEN_ZEROS "0000000000"
static const struct {
  const char *rule, *in;
  int rc;
  double v;
} double_cases[] = {
    {"integer", "[1480642020]", 0, 1480642020.0},
    {"float", "[1693997155.0]", 0, 1693997155.0},
    {"scientific", "[1.635734407123456789E9]", 0, 1635734407.123456789},
    {"negative exponent", "[-2.5e-3]", 0, -0.0025},
    {"string integer", "[\"42\"]", 0, 42.0},
    {"string scientific", "[\"1e3\"]", 0, 1000.0},
    {"string with escape", "[\"\\u0031\\u0032\"]", 0, 12.0},
    {"long number uses heap copy",
     "[1" TEN_ZEROS TEN_ZEROS TEN_ZEROS TEN_ZEROS TEN_ZEROS TEN_ZEROS TEN_ZEROS
     TEN_ZEROS TEN_ZEROS TEN_ZEROS TEN_ZEROS TEN_ZEROS TEN_ZEROS TEN_ZEROS
     TEN_ZEROS ".5]", 0, 1e150},
    {"zero", "[0]", 0, 0.0},
    {"negative integer", "[-42]", 0, -42.0},
    {"15 digits (exact fast path)", "[999999999999999]", 0, 999999999999999.0},
    {"16 digits (strtod)", "[1234567890123457]", 0, 1234567890123457.0},
    {"string negative zero", "[\"-0\"]", 0, 0.0},
    {"string minus alone", "[\"-\"]", MM_EINVAL, 0},
    {"string double zero", "[\"00\"]", MM_EINVAL, 0},
    {"string negative leading zero", "[\"-01\"]", MM_EINVAL, 0},
    {"string digits then dot", "[\"12.\"]", MM_EINVAL, 0},
    {"string not a number", "[\"abc\"]", MM_EINVAL, 0},
    {"empty string", "[\"\"]", MM_EINVAL, 0},
    {"string with space", "[\" 1\"]", MM_EINVAL, 0},
    {"string trailing text", "[\"1s\"]", MM_EINVAL, 0},
    {"string hex", "[\"0x10\"]", MM_EINVAL, 0},
    {"string inf", "[\"inf\"]", MM_EINVAL, 0},
    {"string nan", "[\"NaN\"]", MM_EINVAL, 0},
    {"string leading zero", "[\"01\"]", MM_EINVAL, 0},
    {"string plus sign", "[\"+1\"]", MM_EINVAL, 0},
    {"true", "[true]", MM_EINVAL, 0},
    {"null", "[null]", MM_EINVAL, 0},
    {"array", "[[1]]", MM_EINVAL, 0},
};

START_TEST(double_values) {
  mm_json_doc_t d;
  mm_err_t e;
  const char *in = double_cases[_i].in;
  ck_assert_int_eq(mm_json_parse(&d, in, strlen(in), 0, &e), 0);
  double v = -123;
  int rc = mm_json_double(&d, 1, &v);
  ck_assert_msg(rc == double_cases[_i].rc, "%s: rc %d", double_cases[_i].rule, rc);
  if (rc == 0)
    ck_assert_double_eq_tol(v, double_cases[_i].v, 1e-9 * (1 + (v < 0 ? -v : v)));
  else
    ck_assert_double_eq(v, -123); /* untouched */
  mm_json_free(&d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Big inputs                                                           */
/* ------------------------------------------------------------------ */

/* A 5 MB string of mixed ASCII, UTF-8 and escapes, then the same with a
 * bad byte near its end. */
START_TEST(huge_string) {
  size_t body = 5u << 20, n = 0;
  char *s = malloc(body + 64);
  ck_assert_ptr_nonnull(s);
  s[n++] = '"';
  size_t decoded = 0;
  while (n < body) {
    static const char *parts[] = {"plain ascii text ", "\xC3\xA9\xE2\x82\xAC",
                                  "\\n", "\\uD83D\\uDE00", "\xF0\x9F\xA6\x8A"};
    static const size_t dlen[] = {17, 5, 1, 4, 4};
    size_t k = (n / 7) % 5;
    memcpy(s + n, parts[k], strlen(parts[k]));
    n += strlen(parts[k]);
    decoded += dlen[k];
  }
  memcpy(s + n, "0123456789abcdef", 16); /* an ASCII tail to damage below */
  n += 16;
  decoded += 16;
  s[n++] = '"';
  mm_json_doc_t d;
  mm_err_t e;
  int rc = mm_json_parse(&d, s, n, 0, &e);
  ck_assert_msg(rc == 0, "%s", e.msg);
  ck_assert_uint_eq(d.count, 1);
  ck_assert_uint_eq(mm_json_len(&d, 0), n - 2);
  size_t out;
  char *t = mm_json_strdup(&d, 0, &out);
  ck_assert_ptr_nonnull(t);
  ck_assert_uint_eq(out, decoded);
  free(t);
  mm_json_free(&d);

  /* an overlong in the middle of the last ASCII part */
  size_t bad = n - 9;
  s[bad] = (char)0xC0;
  s[bad + 1] = (char)0x80;
  const char *msg = parse_fail(s, n, 0, NULL);
  char want[80];
  snprintf(want, sizeof want, "byte %zu: invalid UTF-8 in string (overlong", bad);
  ck_assert_msg(strncmp(msg, want, strlen(want)) == 0, "%s", msg);
  free(s);
}
END_TEST

/* An array of about `size` bytes cycling through the `np` elements of
 * `parts`, whose tapes take nodes[k] nodes each; *n gets its length,
 * *elems its element count, *want the nodes of its tape. */
static char *cycle_array(const char *const *parts, const uint32_t *nodes, size_t np,
                         size_t size, size_t *n, size_t *elems, uint32_t *want) {
  size_t len = 0, k = 0, most = 0;
  for (size_t i = 0; i < np; i++)
    if (strlen(parts[i]) > most) most = strlen(parts[i]);
  char *s = malloc(size + most + 2);
  ck_assert_ptr_nonnull(s);
  *want = 1;
  s[len++] = '[';
  while (len < size) {
    size_t pl = strlen(parts[k % np]);
    memcpy(s + len, parts[k % np], pl);
    len += pl;
    s[len++] = ',';
    *want += nodes[k % np];
    k++;
  }
  s[len - 1] = ']';
  *n = len;
  *elems = k;
  return s;
}

/* Many small nodes: three million one-digit elements, the densest tape an
 * input can need, and large enough (6 MB) that the tape starts small and
 * grows instead of being allocated at its bound. */
START_TEST(tape_grows) {
  static const char *const digits[] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
  static const uint32_t ones[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  size_t n, nelem;
  uint32_t want;
  char *s = cycle_array(digits, ones, 10, 6u << 20, &n, &nelem, &want);
  ck_assert_uint_eq(nelem, 3u << 20);
  mm_json_doc_t d;
  parse_ok(&d, s, n, "3M digits");
  ck_assert_uint_eq(d.count, want); /* nelem + 1 */
  ck_assert_uint_eq(mm_json_len(&d, 0), nelem);
  ck_assert_uint_le(d.cap, n + 1);
  for (uint32_t i = 1; i <= nelem; i += 4099)
    ck_assert_int_eq(*mm_json_raw(&d, i), '0' + (i - 1) % 10);
  check_tape(&d);
  mm_json_free(&d);
  free(s);
}
END_TEST

/* The same growth through open_obj's one-member path and its ways out:
 * a 6 MB array of attribute objects, where the tape is reallocated
 * between the pushes of one object's nodes. */
START_TEST(tape_grows_objects) {
  static const char *const parts[] = {"{\"S\":\"x\"}", "{\"a\":{\"N\":\"1\"},\"b\":\"c\"}",
                                      "{\"S\":\"\"}", "{\"BOOL\":true}", "{}"};
  static const uint32_t nodes[] = {3, 7, 3, 3, 1};
  size_t n, k;
  uint32_t want;
  char *s = cycle_array(parts, nodes, 5, 6u << 20, &n, &k, &want);
  mm_json_doc_t d;
  parse_ok(&d, s, n, "6 MB of attribute objects");
  ck_assert_uint_eq(d.count, want);
  ck_assert_uint_eq(mm_json_len(&d, 0), k);
  ck_assert_uint_gt(d.count, n / 4 + 16); /* more than the first tape held */
  check_tape(&d);
  mm_json_free(&d);
  free(s);
}
END_TEST

/* String bodies are scanned 16, 8 and 1 byte at a time depending on how
 * much input is left: a stop byte (control character, bad UTF-8 lead,
 * bad escape) at every position of bodies up to 36 bytes, with 0 to 17
 * bytes after the string, is reported at its own offset, and the same
 * bodies with a valid 2-byte character there parse with the right length. */
START_TEST(string_scan_boundaries) {
  static const char *const bad[] = {"\x01", "\xC0\x80", "\\x"};
  static const char *const why[] = {"control character", "invalid UTF-8",
                                    "invalid escape"};
  char s[128], want[160];
  for (size_t body = 1; body <= 36; body++) {
    for (size_t at = 0; at < body; at++) {
      static const size_t tails[] = {0, 1, 2, 7, 8, 9, 15, 16, 17};
      for (size_t ti = 0; ti < sizeof tails / sizeof *tails; ti++) {
        size_t tail = tails[ti];
        for (size_t b = 0; b < 3; b++) {
          size_t n = 0, blen = strlen(bad[b]);
          s[n++] = '"';
          for (size_t k = 0; k < body; k++) s[n++] = (char)('a' + k % 26);
          memcpy(s + 1 + at, bad[b], blen); /* may run past the body */
          if (1 + at + blen > n) n = 1 + at + blen;
          s[n++] = '"';
          memset(s + n, ' ', tail);
          n += tail;
          const char *msg = parse_fail(s, n, 0, NULL);
          snprintf(want, sizeof want, "byte %zu: %s", 1 + at, why[b]);
          ck_assert_msg(strncmp(msg, want, strlen(want)) == 0,
                        "body %zu at %zu tail %zu: %s", body, at, tail, msg);
        }
        /* the same position holding U+00E9 */
        size_t n = 0;
        s[n++] = '"';
        for (size_t k = 0; k <= body; k++)
          s[n++] = k == at ? (char)0xC3 : k == at + 1 ? (char)0xA9
                                                      : (char)('a' + k % 26);
        s[n++] = '"';
        memset(s + n, ' ', tail);
        n += tail;
        mm_json_doc_t d;
        mm_err_t e;
        ck_assert_msg(mm_json_parse(&d, s, n, 0, &e) == 0, "%s", e.msg);
        ck_assert_uint_eq(mm_json_type(&d, 0), MM_JSON_STR);
        ck_assert_uint_eq(mm_json_len(&d, 0), body + 1);
        mm_json_free(&d);
        /* and cut short: the input ends inside the body */
        const char *msg = parse_fail(s, 1 + at, 0, NULL);
        snprintf(want, sizeof want, "byte %zu: unterminated string", 1 + at);
        ck_assert_str_eq(msg, want);
      }
    }
  }
}
END_TEST

/* String ends come from 64-byte block masks: strings of 0 to 70 bytes
 * starting at every offset from 0 to 140 (so crossing one or two block
 * boundaries, and ending at or near the end of the buffer), in an
 * exact-size heap copy so ASan sees any read past the end; then the same
 * with a control character at every position of the string, and with the
 * input cut inside the string. */
START_TEST(string_block_boundaries) {
  char s[256], want[96], where[48];
  for (size_t pad = 0; pad <= 140; pad++) {
    for (size_t body = 0; body <= 70; body++) {
      size_t n = 0;
      s[n++] = '[';
      /* pad bytes before the string: white space keeps the tape small */
      memset(s + n, ' ', pad);
      n += pad;
      size_t q = n;
      s[n++] = '"';
      for (size_t k = 0; k < body; k++) s[n++] = (char)('a' + k % 26);
      s[n++] = '"';
      s[n++] = ']';
      char *heap = malloc(n);
      memcpy(heap, s, n);
      snprintf(where, sizeof where, "pad %zu body %zu", pad, body);
      mm_json_doc_t d;
      parse_ok(&d, heap, n, where);
      ck_assert_uint_eq(d.count, 2);
      ck_assert_uint_eq(mm_json_len(&d, 1), body);
      ck_assert_uint_eq(d.nodes[1].tag >> 4, q + 1);
      mm_json_free(&d);
      if (body > 0 && pad % 7 == 0) {
        for (size_t at = 0; at < body; at++) {
          heap[q + 1 + at] = '\x1f';
          snprintf(want, sizeof want, "byte %zu: control character", q + 1 + at);
          const char *msg = parse_fail(heap, n, 0, NULL);
          ck_assert_msg(strncmp(msg, want, strlen(want)) == 0, "%s: %s", where, msg);
          heap[q + 1 + at] = (char)('a' + at % 26);
        }
      }
      /* cut inside the string (or right after its opening quote) */
      snprintf(want, sizeof want, "byte %zu: unterminated string", q + 1 + body / 2);
      ck_assert_str_eq(parse_fail(heap, q + 1 + body / 2, 0, NULL), want);
      free(heap);
    }
  }
}
END_TEST

/* s (n bytes; `what` names it) parses, and its node i is a number of nl
 * bytes. */
static void expect_number(const char *s, size_t n, uint32_t i, uint32_t nl, const char *what) {
  mm_json_doc_t d;
  parse_ok(&d, s, n, what);
  ck_assert_uint_eq(mm_json_type(&d, i), MM_JSON_NUM);
  ck_assert_uint_eq(mm_json_len(&d, i), nl);
  mm_json_free(&d);
}

/* Number digits are skipped 8 at a time: integer, fraction and exponent
 * parts of 1 to 20 digits, followed by every kind of byte that ends them
 * (or by the end of the input), keep their exact length and errors. */
START_TEST(number_digit_runs) {
  static const char *const forms[] = {"%s", "-%s", "1.%s", "%s.5", "1e%s",
                                      "1E-%s", "0.%se+%s"};
  static const char enders[] = {',', ']', ' ', ':', '/', '.', 'e', 'x', '\x80',
                                (char)0xC3, '\x01'};
  char digits[24], num[80], in[96];
  for (size_t nd = 1; nd <= 20; nd++) {
    for (size_t k = 0; k < nd; k++) digits[k] = (char)('1' + (k * 7) % 9);
    digits[nd] = '\0';
    for (size_t f = 0; f < sizeof forms / sizeof *forms; f++) {
      int nl = snprintf(num, sizeof num, forms[f], digits, digits);
      /* in an array, then alone at the end of an exact-size buffer */
      int n = snprintf(in, sizeof in, "[%s]", num);
      expect_number(in, (size_t)n, 1, (uint32_t)nl, in);
      char *heap = malloc((size_t)nl);
      memcpy(heap, num, (size_t)nl);
      expect_number(heap, (size_t)nl, 0, (uint32_t)nl, num);
      free(heap);
      mm_json_doc_t d;
      mm_err_t e;
      /* followed by a byte that is not part of it, then ']' */
      for (size_t x = 0; x < sizeof enders; x++) {
        n = snprintf(in, sizeof in, "[%s%c]", num, enders[x]);
        if (mm_json_parse(&d, in, (size_t)n, 0, &e) == 0) {
          ck_assert_msg(enders[x] == ' ', "%s accepted", in);
          ck_assert_uint_eq(mm_json_len(&d, 1), (uint32_t)nl);
          mm_json_free(&d);
          continue;
        }
        size_t at;
        ck_assert_msg(sscanf(e.msg, "byte %zu:", &at) == 1, "%s", e.msg);
        /* the error is at the byte after the number, or at the ']' when
         * that byte was a ',', a '.' or an 'e' waiting for more */
        ck_assert_msg(at == 1 + (size_t)nl || at == 2 + (size_t)nl, "%s: %s", num, e.msg);
      }
    }
  }
}
END_TEST

/* Objects of one member with a string value (json.c open_obj) at the
 * nesting limit: the straight path counts the depth as the general one. */
static const struct {
  const char *rule, *in, *msg;
  unsigned depth;
} depth_cases[] = {
    {"attribute value: at the depth limit", "[{\"S\":\"x\"}]",
     "byte 1: nesting deeper than 1 levels", 1},
    {"attribute value: inside an attribute at the limit", "{\"a\":{\"S\":\"x\"}}",
     "byte 5: nesting deeper than 1 levels", 1},
};

START_TEST(depth_limit_cases) {
  expect_fail(depth_cases[_i].rule, depth_cases[_i].in, 0, depth_cases[_i].depth, MM_ELIMIT,
              depth_cases[_i].msg);
}
END_TEST

START_TEST(input_size_limit) {
  /* the length is checked before any byte is read */
  static const char one[] = "1";
  mm_json_doc_t d;
  mm_err_t e;
  int rc = mm_json_parse(&d, one, MM_JSON_MAX_INPUT + 1, 0, &e);
  ck_assert_int_eq(rc, MM_ELIMIT);
  ck_assert_ptr_null(d.nodes);
  ck_assert_msg(strstr(e.msg, "larger than the limit"), "%s", e.msg);
  /* no buffer at all is an empty input */
  rc = mm_json_parse(&d, NULL, 0, 0, &e);
  ck_assert_int_eq(rc, MM_EINVAL);
  ck_assert_str_eq(e.msg, "byte 0: expected a value but the input ended");
}
END_TEST

/* ------------------------------------------------------------------ */
/* Fixtures                                                             */
/* ------------------------------------------------------------------ */

/* Parses every .json file in MM_FIXTURES/sub; `valid` says whether they
 * must parse. Returns how many files were seen. */
static int parse_dir(const char *sub, int valid) {
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/%s", MM_FIXTURES, sub);
  DIR *dp = opendir(dir);
  ck_assert_msg(dp != NULL, "cannot open %s", dir);
  struct dirent *de;
  int seen = 0;
  while ((de = readdir(dp))) {
    size_t nl = strlen(de->d_name);
    if (nl < 5 || strcmp(de->d_name + nl - 5, ".json") != 0) continue;
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
    size_t len;
    char *raw = tu_read_file(path, &len);
    ck_assert_ptr_nonnull(raw);
    /* an exact-size copy, so ASan catches any read past the end */
    char *buf = malloc(len ? len : 1);
    memcpy(buf, raw, len);
    free(raw);
    mm_json_doc_t d;
    mm_err_t e;
    mm_err_clear(&e);
    int rc = mm_json_parse(&d, buf, len, 0, &e);
    if (valid) {
      ck_assert_msg(rc == 0, "%s: %s", de->d_name, e.msg);
      check_tape(&d);
      ck_assert_int_eq(mm_json_type(&d, 0), MM_JSON_OBJ);
    } else {
      size_t at;
      ck_assert_msg(rc == MM_EINVAL, "%s parsed", de->d_name);
      ck_assert_msg(sscanf(e.msg, "byte %zu:", &at) == 1 &&
                        strstr(e.msg, ": expected"), "%s", e.msg);
      ck_assert_uint_le(at, len);
      ck_assert_ptr_null(d.nodes);
    }
    mm_json_free(&d);
    free(buf);
    seen++;
  }
  closedir(dp);
  return seen;
}

START_TEST(fixtures_parse) {
  ck_assert_int_ge(parse_dir(".", 1), 14);
  ck_assert_int_ge(parse_dir("non-event", 1), 3);
  ck_assert_int_ge(parse_dir("invalid", 0), 1);
}
END_TEST

/* The truncated fixture fails where it ends, naming what was expected. */
START_TEST(fixture_truncated_message) {
  size_t len;
  char *buf = tu_fixture("invalid/go-dynamodb-event-malformed.2.json", &len);
  char want[64];
  snprintf(want, sizeof want, "byte %zu: expected ',' or ']' but the input ended",
           len);
  ck_assert_str_eq(parse_fail(buf, len, 0, NULL), want);
  free(buf);
}
END_TEST

/* The fast paths test several bytes at once only while 8 bytes are left
 * (json.c `safe`): each shape, followed by 0 to 12 spaces, so that the
 * bound falls at every byte of it, gives the same tape, and each of its
 * strict prefixes the same error as without the fast paths (the general
 * path's message, pinned in invalid_cases for a few). */
START_TEST(fast_paths_near_end) {
  static const char *const shapes[] = {
      "{\"S\":\"x\"}", "{\"BOOL\":false}", "{\"a\":{\"N\":\"1\"}}", "[{\"S\":true},{\"L\":[]}]",
      "{\"a\":{\"S\":\"x\"},\"b\":{\"NULL\":true}}", "{\"ab\":\"c\",\"d\":{\"M\":{}}}"};
  char buf[128], out[128];
  for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
    size_t n = strlen(shapes[k]);
    for (size_t pad = 0; pad <= 12; pad++) {
      memcpy(buf, shapes[k], n);
      memset(buf + n, ' ', pad);
      mm_json_doc_t d;
      parse_ok(&d, buf, n + pad, shapes[k]);
      check_tape(&d);
      size_t pos = 0;
      render(&d, 0, out, &pos, sizeof out);
      ck_assert_msg(pos == n && memcmp(out, shapes[k], n) == 0, "%s + %zu spaces",
                    shapes[k], pad);
      mm_json_free(&d);
    }
    for (size_t m = 1; m < n; m++) { /* (parse_fail takes 0 as strlen) */
      const char *msg = parse_fail(shapes[k], m, 0, NULL);
      size_t at = (size_t)-1;
      ck_assert_msg(sscanf(msg, "byte %zu: ", &at) == 1 && at <= m, "%s[%zu]: %s",
                    shapes[k], m, msg);
    }
  }
}
END_TEST

static Suite *json_suite(void) {
  Suite *s = suite_create("json");
  TCase *tc = tcase_create("grammar");
  tcase_add_loop_test(tc, valid_grammar, 0,
                      sizeof valid_cases / sizeof *valid_cases);
  tcase_add_loop_test(tc, invalid_grammar, 0,
                      sizeof invalid_cases / sizeof *invalid_cases);
  tcase_add_test(tc, every_prefix_fails);
  tcase_add_test(tc, fast_paths_near_end);
  suite_add_tcase(s, tc);

  tc = tcase_create("utf8");
  tcase_add_loop_test(tc, utf8_accepted, 0, sizeof utf8_valid / sizeof *utf8_valid);
  tcase_add_loop_test(tc, utf8_rejected, 0,
                      sizeof utf8_invalid / sizeof *utf8_invalid);
  suite_add_tcase(s, tc);

  tc = tcase_create("escapes");
  tcase_add_loop_test(tc, escapes_decode, 0,
                      sizeof escape_cases / sizeof *escape_cases);
  tcase_add_loop_test(tc, escapes_rejected, 0,
                      sizeof escape_invalid / sizeof *escape_invalid);
  suite_add_tcase(s, tc);

  tc = tcase_create("depth");
  tcase_add_test(tc, depth_limit_boundary);
  tcase_add_test(tc, depth_100000_fails_cleanly);
  suite_add_tcase(s, tc);

  tc = tcase_create("tape");
  tcase_add_test(tc, tape_layout);
  tcase_add_loop_test(tc, depth_limit_cases, 0, sizeof depth_cases / sizeof *depth_cases);
  tcase_add_loop_test(tc, member_lookup, 0,
                      sizeof lookup_cases / sizeof *lookup_cases);
  tcase_add_loop_test(tc, double_values, 0,
                      sizeof double_cases / sizeof *double_cases);
  suite_add_tcase(s, tc);

  tc = tcase_create("big");
  tcase_add_test(tc, huge_string);
  tcase_add_test(tc, tape_grows);
  tcase_add_test(tc, tape_grows_objects);
  tcase_add_test(tc, string_scan_boundaries);
  tcase_add_test(tc, input_size_limit);
  tcase_add_test(tc, string_block_boundaries);
  tcase_add_test(tc, number_digit_runs);
  suite_add_tcase(s, tc);

  tc = tcase_create("fixtures");
  tcase_add_test(tc, fixtures_parse);
  tcase_add_test(tc, fixture_truncated_message);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tu_run_suite(json_suite()); }

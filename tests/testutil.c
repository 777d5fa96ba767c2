/*
 * testutil.c - helpers shared by the Check suites (see testutil.h).
 */
#include "testutil.h"

#include "buf.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *tu_read_file(const char *path, size_t *len) {
  char *data = NULL;
  size_t n;
  mm_err_t err;
  if (mm_buf_read_file(path, &data, &n, &err) != 0) return NULL;
  if (len) *len = n;
  return data;
}

char *tu_fixture(const char *name, size_t *len) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", MM_FIXTURES, name);
  char *b = tu_read_file(path, len);
  ck_assert_msg(b != NULL, "cannot read fixture %s", path);
  return b;
}

const char *tu_write_temp(const char *suffix, const char *text) {
  static char paths[64][256];
  static int next;
  char *path = paths[next++ % 64];
  snprintf(path, 256, "/tmp/mmtestXXXXXX%s", suffix ? suffix : "");
  int fd = mkstemps(path, suffix ? (int)strlen(suffix) : 0);
  ck_assert_msg(fd >= 0, "mkstemps failed");
  size_t n = strlen(text);
  ck_assert(write(fd, text, n) == (ssize_t)n);
  close(fd);
  return path;
}

char *tu_temp_dir(void) {
  char *p = strdup("/tmp/mmtestdirXXXXXX");
  ck_assert(p && mkdtemp(p));
  return p;
}

int tu_run_suite(Suite *s) {
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

size_t tu_list_member(char *buf, size_t cap, const char *name, int count, const char *elem) {
  size_t n = (size_t)snprintf(buf, cap, "\"%s\":{\"L\":[", name);
  for (int i = 0; i < count && n < cap; i++)
    n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? "," : "", elem);
  if (n < cap) n += (size_t)snprintf(buf + n, cap - n, "]}");
  ck_assert_msg(n < cap, "tu_list_member: %d elements do not fit in %zu bytes", count, cap);
  return n;
}

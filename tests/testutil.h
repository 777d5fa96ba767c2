/*
 * testutil.h - helpers shared by the Check suites.
 *
 * Paths: MM_FIXTURES (../shared/fixtures/ddb-streams), MM_TEST_DIR (tests/),
 * MM_BUILD_DIR are compile-time definitions from CMake.
 */
#ifndef MM_TESTUTIL_H
#define MM_TESTUTIL_H

#include <stddef.h>

/* Reads a whole file; returns a malloc'd NUL-terminated buffer (caller
 * frees) or NULL. */
char *tu_read_file(const char *path, size_t *len);
/* Reads MM_FIXTURES/name (aborts the test with ck_abort on failure). */
char *tu_fixture(const char *name, size_t *len);
/* Writes text to a new temporary file and returns its path (static buffer
 * per call slot, valid until the process ends; caller may unlink). */
const char *tu_write_temp(const char *suffix, const char *text);
/* Makes a fresh temporary directory; returns its path (malloc'd). */
char *tu_temp_dir(void);
/* Runs suite s (Check's normal output, CK_FORK as the environment says)
 * and frees the runner: EXIT_SUCCESS when every test passed, else
 * EXIT_FAILURE. The body of every suite's main. */
struct Suite;
int tu_run_suite(struct Suite *s);

/* Writes the image member `"name":{"L":[elem,elem,...]}` (count copies of
 * elem) NUL-terminated into buf (cap bytes); returns its length. Fails
 * the test when it does not fit. */
size_t tu_list_member(char *buf, size_t cap, const char *name, int count, const char *elem);

#endif

/*
 * util_luajson.h - JSON checks shared by check_log and check_metrics.
 *
 * Provides: uj_strict, a strict RFC 8259 validity check of one line (the
 * project's json.c parser, which rejects raw control characters, NaN and
 * trailing data, where lua-cjson would accept some of them), and uj_lua,
 * which runs a Lua chunk with lua-cjson loaded (global `cjson`) so a test
 * can state structural expectations about a decoded document in a few lines.
 */
#ifndef MM_UTIL_LUAJSON_H
#define MM_UTIL_LUAJSON_H

#include <stddef.h>

/* 0 when line[0..n) is exactly one valid JSON object followed by a single
 * "\n" and no other newline; otherwise -1 with a reason in why (size
 * whylen). */
int uj_strict(const char *line, size_t n, char *why, size_t whylen);

/* Runs chunk src with the arguments args[0..nargs) (strings, as `...`).
 * The chunk returns nil on success or a message. Returns NULL on success,
 * else a malloc'd message (the chunk's, or its error) for the caller to
 * free. */
char *uj_lua(const char *src, const char *const *args, int nargs);

#endif

/*
 * mm_bench.c - measurements behind scripts/bench (not a test).
 *
 *   mm_bench pipeline SCRIPT EVENT ITER   CPU ms per batch: parse + convert
 *                                         + decode + aggregate (memory store)
 *   mm_bench cjson EVENT ITER             CPU ms per batch of a bare
 *                                         cjson.decode of the same bytes
 *   mm_bench json EVENT ITER              CPU ms per mm_json_parse of the
 *                                         event alone (the parser's own
 *                                         figure, without Lua or the store)
 *   mm_bench coldstart BOOTSTRAP TASKROOT ITER
 *                                         ms from exec to the first GET next
 *   mm_bench rss PROGRAM ARGS...          peak RSS (KiB) of one run
 *
 * Each prints one JSON object on stdout. CPU time is process CPU time
 * (CLOCK_PROCESS_CPUTIME_ID) over ITER warm iterations after 3 warm-ups, so
 * other load on the machine changes it little.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "json.h"
#include "log.h"
#include "pipeline.h"

int luaopen_cjson(lua_State *L);

static double cpu_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static char *slurp(const char *path, size_t *len) {
  char *data = NULL;
  mm_err_t err;
  if (mm_buf_read_file(path, &data, len, &err) != 0) {
    fprintf(stderr, "mm_bench: %s\n", err.msg);
    exit(2);
  }
  return data;
}

static int bench_pipeline(const char *script, const char *event, int iter) {
  size_t len;
  char *body = slurp(event, &len);
  mm_config_t cfg;
  mm_err_t err;
  mm_config_defaults(&cfg);
  cfg.store_url = "memory://";
  mm_log_init(stderr);
  mm_log_set_level(MM_LOG_ERROR);
  mm_pipeline_t *p = NULL;
  if (mm_pipeline_open(&p, script, MM_SOURCE_LUA_DIR, &cfg, NULL, &err)) {
    fprintf(stderr, "mm_bench: %s\n", err.msg);
    return 1;
  }
  mm_pipeline_set_metrics_out(p, NULL);
  mm_invoke_t inv = {.event = body, .len = len, .request_id = "bench"};
  double t0 = 0;
  uint64_t records = 0;
  for (int i = -3; i < iter; i++) {
    if (i == 0) t0 = cpu_ms();
    mm_result_t res;
    if (mm_pipeline_run(p, &inv, &res)) {
      fprintf(stderr, "mm_bench: invocation error: %s\n", res.err.msg);
      return 1;
    }
    if (strcmp(res.response, "{\"batchItemFailures\":[]}") != 0) {
      fprintf(stderr, "mm_bench: unexpected response %s\n", res.response);
      return 1;
    }
    mm_result_free(&res);
    records = mm_pipeline_metrics(p)->records;
  }
  double per = (cpu_ms() - t0) / iter;
  printf("{\"mode\":\"murmur\",\"records\":%llu,\"bytes\":%zu,\"cpu_ms_per_batch\":%.4f}\n",
         (unsigned long long)records, len, per);
  mm_pipeline_destroy(p);
  free(body);
  return 0;
}

static int bench_cjson(const char *event, int iter) {
  size_t len;
  char *body = slurp(event, &len);
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "cjson", luaopen_cjson, 0);
  lua_getfield(L, -1, "decode"); /* cjson decode */
  int decode = lua_gettop(L);
  double t0 = 0;
  for (int i = -3; i < iter; i++) {
    if (i == 0) t0 = cpu_ms();
    lua_pushvalue(L, decode);
    lua_pushlstring(L, body, len);
    if (lua_pcall(L, 1, 1, 0)) {
      fprintf(stderr, "mm_bench: cjson: %s\n", lua_tostring(L, -1));
      return 1;
    }
    lua_pop(L, 1);
    lua_gc(L, LUA_GCCOLLECT, 0);
  }
  double per = (cpu_ms() - t0) / iter;
  printf("{\"mode\":\"cjson.decode\",\"bytes\":%zu,\"cpu_ms_per_batch\":%.4f}\n", len, per);
  lua_close(L);
  free(body);
  return 0;
}

static int bench_json(const char *event, int iter) {
  size_t len;
  char *body = slurp(event, &len);
  double t0 = 0;
  uint32_t nodes = 0;
  for (int i = -3; i < iter; i++) {
    if (i == 0) t0 = cpu_ms();
    mm_json_doc_t d;
    mm_err_t err;
    if (mm_json_parse(&d, body, len, 0, &err)) {
      fprintf(stderr, "mm_bench: %s\n", err.msg);
      return 1;
    }
    nodes = d.count;
    mm_json_free(&d);
  }
  double per = (cpu_ms() - t0) / iter;
  printf("{\"mode\":\"mm_json_parse\",\"bytes\":%zu,\"nodes\":%u,\"cpu_ms_per_parse\":%.4f,"
         "\"mb_per_s\":%.1f}\n", len, nodes, per, len / 1e3 / per);
  free(body);
  return 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* exec -> the first request line on a listening socket, ITER times. */
static int bench_coldstart(const char *bootstrap, const char *task_root, int iter) {
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 4) ||
      getsockname(ls, (struct sockaddr *)&a, &al)) {
    perror("mm_bench: listen");
    return 1;
  }
  char api[64];
  snprintf(api, sizeof api, "127.0.0.1:%d", ntohs(a.sin_port));
  setenv("AWS_LAMBDA_RUNTIME_API", api, 1);
  setenv("LAMBDA_TASK_ROOT", task_root, 1);
  setenv("_HANDLER", "decode", 1);
  setenv("MURMUR_STORE", "memory://", 1);
  unsetenv("MURMUR_DEDUP");
  setenv("AWS_LAMBDA_LOG_LEVEL", "ERROR", 1);
  double *ms = calloc((size_t)iter, sizeof *ms);
  for (int i = 0; i < iter; i++) {
    double t0 = mono_ms();
    pid_t pid = fork();
    if (pid == 0) {
      execl(bootstrap, bootstrap, (char *)NULL);
      _exit(127);
    }
    struct timeval tv = {5, 0};
    setsockopt(ls, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int c = accept(ls, NULL, NULL);
    if (c < 0) {
      fprintf(stderr, "mm_bench: bootstrap never connected\n");
      kill(pid, SIGKILL);
      waitpid(pid, NULL, 0);
      return 1;
    }
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[4096];
    size_t got = 0;
    while (got < sizeof buf - 1) {
      ssize_t r = read(c, buf + got, sizeof buf - 1 - got);
      if (r <= 0) break;
      got += (size_t)r;
      buf[got] = '\0';
      if (strstr(buf, "\r\n")) break;
    }
    ms[i] = mono_ms() - t0;
    if (strncmp(buf, "GET /2018-06-01/runtime/invocation/next", 39) != 0) {
      fprintf(stderr, "mm_bench: unexpected first request: %.80s\n", buf);
      kill(pid, SIGKILL);
      waitpid(pid, NULL, 0);
      return 1;
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(c);
  }
  qsort(ms, (size_t)iter, sizeof *ms, cmp_double);
  printf("{\"mode\":\"coldstart\",\"runs\":%d,\"median_ms\":%.3f,\"min_ms\":%.3f,\"max_ms\":%.3f}\n",
         iter, ms[iter / 2], ms[0], ms[iter - 1]);
  free(ms);
  close(ls);
  return 0;
}

static int bench_rss(char **argv) {
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) {
      dup2(devnull, 1);
      dup2(devnull, 2);
    }
    execv(argv[0], argv);
    _exit(127);
  }
  int status;
  struct rusage ru;
  if (wait4(pid, &status, 0, &ru) < 0) {
    perror("mm_bench: wait4");
    return 1;
  }
  printf("{\"mode\":\"rss\",\"exit\":%d,\"peak_rss_kib\":%ld}\n",
         WIFEXITED(status) ? WEXITSTATUS(status) : -1, ru.ru_maxrss);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc >= 5 && !strcmp(argv[1], "pipeline")) return bench_pipeline(argv[2], argv[3], atoi(argv[4]));
  if (argc >= 4 && !strcmp(argv[1], "cjson")) return bench_cjson(argv[2], atoi(argv[3]));
  if (argc >= 4 && !strcmp(argv[1], "json")) return bench_json(argv[2], atoi(argv[3]));
  if (argc >= 5 && !strcmp(argv[1], "coldstart"))
    return bench_coldstart(argv[2], argv[3], atoi(argv[4]));
  if (argc >= 3 && !strcmp(argv[1], "rss")) return bench_rss(argv + 2);
  fprintf(stderr, "usage: mm_bench pipeline SCRIPT EVENT ITER | cjson EVENT ITER |"
                  " json EVENT ITER |"
                  " coldstart BOOTSTRAP TASKROOT ITER | rss PROGRAM ARGS...\n");
  return 2;
}

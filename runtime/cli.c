/*
 * cli.c - the `murmur-ddb` command: the runtime's core, run locally.
 *
 *   murmur-ddb invoke --script F --event F [--store URL] [--dedup URL|off]
 *                     [--deadline-ms N]
 *       runs one batch as Lambda would and prints Lambda's response JSON on
 *       stdout (metrics and logs on stderr). --store and --dedup default to
 *       sqlite://murmur.db in the working directory (MURMUR_STORE and
 *       MURMUR_DEDUP override the defaults; flags override both).
 *   murmur-ddb invoke --watch [--watch-max N] [--watch-interval-ms N] ...
 *       runs the batch, then again whenever the script or the event file
 *       changes (polling their size, mtime and inode every interval, default
 *       200 ms): the script is reloaded, the store and dedup reopened
 *       (default memory:// for both, so each run starts fresh; a given URL
 *       is used as it is; a --dlq gets each run's poison pills), and stdout
 *       gets, per run:
 *         -- run N: start | decode.lua changed | event.json changed | ...
 *         <the response, or the init/invocation error as JSON>
 *         <each row that differs from what the previous successful run
 *          left, as `query` prints it; a row that is gone has "value":null>
 *         -- K rows changed
 *       A run that fails at init (syntax error, validation) or whose event
 *       is refused (not JSON, not a stream event) changes nothing and is not
 *       the reference for the next one. Ends after N runs
 *       (--watch-max), or at SIGINT/SIGTERM, with status 0.
 *   murmur-ddb query --store URL KEY [--bucket N]
 *       prints one JSON object per row, ordered by bucket.
 *   murmur-ddb check SCRIPT
 *       loads and validates a script; prints each problem; exit 1 if any.
 *
 * Exit codes: 0 success, 1 a problem with the input (bad script, event that
 * is not a stream event), 2 usage.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "dlq.h"
#include "log.h"
#include "pipeline.h"
#include "retry.h"
#include "query.h"
#include "replay.h"
#include "store.h"

#define DEFAULT_LOCAL_DB "sqlite://murmur.db"
/* --watch: store and dedup when none is given (fresh for every run). */
#define WATCH_DEFAULT_URL "memory://"
/* --watch: polling interval, default and accepted range (ms). */
#define WATCH_INTERVAL_MS 200
#define WATCH_INTERVAL_MIN_MS 10
#define WATCH_INTERVAL_MAX_MS 60000
/* --watch: polls a change must stay still for before it runs (an editor
 * may write a file in several steps), at most this many polls. */
#define WATCH_SETTLE_POLLS 20
/* Init error types, as bootstrap.c posts them. */
#define ETYPE_BAD_SCRIPT "Function.InvalidScript"
#define ETYPE_INIT "Runtime.InitError"

static void usage(FILE *f) {
  fputs("usage:\n"
        "  murmur-ddb invoke --script FILE --event FILE [--store URL] [--dedup URL|off]\n"
        "                    [--deadline-ms N]\n"
        "                    [--dlq FILE|sqs://QUEUE_URL] [--watch [--watch-max N] [--watch-interval-ms N]]\n"
        "  murmur-ddb query --store URL KEY [--bucket N | --last DURATION]\n"
        "                   [--script FILE | --aggregate NAME --granularity DURATION]\n"
        "  murmur-ddb check SCRIPT\n"
        "  murmur-ddb replay --from sqs://QUEUE_URL|FILE --script FILE [--store URL] [--dedup URL|off]\n"
        "                    [--max N] [--batch N] [--wait S] [--visibility S]\n"
        "store URLs: sqlite://PATH (default sqlite://murmur.db), memory://, dynamodb://TABLE\n",
        f);
}

/* Reads a whole file (mm_buf_read_file), NULL on error. */
static char *slurp(const char *path, size_t *len, mm_err_t *err) {
  char *data = NULL;
  return mm_buf_read_file(path, &data, len, err) == 0 ? data : NULL;
}

/* mm_config_lua_dir into a caller buffer, returned for convenience. */
static const char *find_lua_dir(char *buf, size_t cap) {
  mm_config_lua_dir(buf, cap);
  return buf;
}

static int print_row(void *ud, const mm_row_t *row) {
  (void)ud;
  mm_buf_t b = MM_BUF_INIT;
  mm_buf_adds(&b, "{\"key\":");
  mm_buf_json_str(&b, row->key, strlen(row->key));
  mm_buf_printf(&b, ",\"bucket\":%lld,\"value\":%s}\n", (long long)row->bucket,
                row->value_json);
  if (!mm_buf_failed(&b)) fwrite(b.data, 1, b.len, stdout);
  mm_buf_free(&b);
  return 0;
}

static int parse_i64(const char *s, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end) return -1;
  *out = v;
  return 0;
}

/* Prints an error as Lambda's error body: {"errorMessage":..,"errorType":..}. */
static void print_error_json(FILE *out, const char *type, const char *msg) {
  mm_buf_t b = MM_BUF_INIT;
  mm_buf_adds(&b, "{\"errorMessage\":");
  mm_buf_json_str(&b, msg, strlen(msg));
  mm_buf_adds(&b, ",\"errorType\":");
  mm_buf_json_str(&b, type, strlen(type));
  mm_buf_adds(&b, "}\n");
  if (!mm_buf_failed(&b)) fwrite(b.data, 1, b.len, out);
  mm_buf_free(&b);
}

/*
 * Runs the event in body through p as one invocation and prints Lambda's
 * response (or the invocation error) on stdout. deadline_in: ms from now,
 * 0 = none. Returns 0, or 1 when the event was refused.
 */
static int run_batch(mm_pipeline_t *p, const char *body, size_t len, int64_t deadline_in) {
  mm_invoke_t inv = {.event = body, .len = len, .request_id = "local",
                     .deadline_ms = deadline_in ? mm_now_ms() + deadline_in : 0};
  mm_log_set_request("local");
  mm_result_t res;
  int rc = mm_pipeline_run(p, &inv, &res);
  int status = 0;
  if (rc) {
    print_error_json(stdout, res.error_type ? res.error_type : "Runtime.Unknown", res.err.msg);
    status = 1;
  } else {
    fwrite(res.response, 1, res.len, stdout);
    fputc('\n', stdout);
  }
  mm_result_free(&res);
  mm_log_set_request(NULL);
  return status;
}

/* What `invoke` was asked to do. */
typedef struct invoke_args {
  const char *script, *event;
  int64_t deadline_in;     /* --deadline-ms, 0 = none */
  int watch;               /* --watch */
  long watch_max;          /* --watch-max, 0 = until a signal */
  long watch_interval_ms;  /* --watch-interval-ms */
} invoke_args_t;

static int cmd_watch(const invoke_args_t *a, mm_config_t *cfg);

static int cmd_invoke(int argc, char **argv, mm_config_t *cfg) {
  invoke_args_t a = {.watch_interval_ms = WATCH_INTERVAL_MS};
  int dedup_given = 0, watch_opt = 0;
  for (int i = 0; i < argc; i++) {
    const char *o = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    int64_t n = 0;
    if (!strcmp(o, "--script") && v) a.script = argv[++i];
    else if (!strcmp(o, "--event") && v) a.event = argv[++i];
    else if (!strcmp(o, "--store") && v) cfg->store_url = argv[++i];
    else if (!strcmp(o, "--dedup") && v) {
      cfg->dedup_url = strcmp(v, "off") ? v : NULL;
      dedup_given = 1;
      i++;
    } else if (!strcmp(o, "--dlq") && v) {
      cfg->dlq_url = argv[++i]; /* parked poison pills: JSON lines or SQS */
    } else if (!strcmp(o, "--deadline-ms") && v) {
      if (parse_i64(argv[++i], &a.deadline_in) || a.deadline_in <= 0) {
        fprintf(stderr, "murmur-ddb: --deadline-ms needs a positive integer\n");
        return 2;
      }
    } else if (!strcmp(o, "--watch")) {
      a.watch = 1;
    } else if (!strcmp(o, "--watch-max") && v) {
      if (parse_i64(argv[++i], &n) || n < 1 || n > LONG_MAX) {
        fprintf(stderr, "murmur-ddb: --watch-max needs a positive integer\n");
        return 2;
      }
      a.watch_max = (long)n;
      watch_opt = 1;
    } else if (!strcmp(o, "--watch-interval-ms") && v) {
      if (parse_i64(argv[++i], &n) || n < WATCH_INTERVAL_MIN_MS || n > WATCH_INTERVAL_MAX_MS) {
        fprintf(stderr, "murmur-ddb: --watch-interval-ms needs an integer from %d to %d\n",
                WATCH_INTERVAL_MIN_MS, WATCH_INTERVAL_MAX_MS);
        return 2;
      }
      a.watch_interval_ms = (long)n;
      watch_opt = 1;
    } else {
      fprintf(stderr, "murmur-ddb invoke: unexpected argument '%s'\n", o);
      usage(stderr);
      return 2;
    }
  }
  if (!a.script || !a.event) {
    usage(stderr);
    return 2;
  }
  if (watch_opt && !a.watch) {
    fprintf(stderr, "murmur-ddb: --watch-max and --watch-interval-ms need --watch\n");
    return 2;
  }
  if (a.watch) {
    if (!cfg->store_url) cfg->store_url = WATCH_DEFAULT_URL;
    if (!dedup_given && !cfg->dedup_url) cfg->dedup_url = WATCH_DEFAULT_URL;
    return cmd_watch(&a, cfg);
  }
  if (!cfg->store_url) cfg->store_url = DEFAULT_LOCAL_DB;
  if (!dedup_given && !cfg->dedup_url) cfg->dedup_url = DEFAULT_LOCAL_DB;
  char luabuf[PATH_MAX];
  mm_err_t err;
  mm_err_clear(&err);
  size_t len = 0;
  char *body = slurp(a.event, &len, &err);
  if (!body) {
    fprintf(stderr, "murmur-ddb: %s\n", err.msg);
    return 1;
  }
  mm_pipeline_t *p = NULL;
  if (mm_pipeline_open(&p, a.script, find_lua_dir(luabuf, sizeof luabuf), cfg, NULL, &err)) {
    fprintf(stderr, "murmur-ddb: init error: %s\n", err.msg);
    free(body);
    return 1;
  }
  mm_pipeline_set_metrics_out(p, stderr);
  int status = run_batch(p, body, len, a.deadline_in);
  mm_pipeline_destroy(p);
  free(body);
  return status;
}

/* ------------------------------------------------------------------ */
/* invoke --watch                                                      */
/* ------------------------------------------------------------------ */

/* A growable list of owned strings. */
typedef struct strlist {
  char **v;
  size_t n, cap;
  int failed;              /* an append ran out of memory */
} strlist_t;

/* Appends a copy of s[0..len); on failure marks the list incomplete. */
static void strlist_add(strlist_t *l, const char *s, size_t len) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 64;
    char **v = realloc(l->v, cap * sizeof *v);
    if (!v) {
      l->failed = 1;
      return;
    }
    l->v = v;
    l->cap = cap;
  }
  char *c = malloc(len + 1);
  if (!c) {
    l->failed = 1;
    return;
  }
  memcpy(c, s, len);
  c[len] = '\0';
  l->v[l->n++] = c;
}

static void strlist_free(strlist_t *l) {
  for (size_t i = 0; i < l->n; i++) free(l->v[i]);
  free(l->v);
  memset(l, 0, sizeof *l);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts l and drops duplicates. */
static void strlist_unique(strlist_t *l) {
  if (l->n < 2) return;
  qsort(l->v, l->n, sizeof *l->v, cmp_str);
  size_t j = 1;
  for (size_t i = 1; i < l->n; i++) {
    if (strcmp(l->v[i], l->v[j - 1]) == 0) free(l->v[i]);
    else l->v[j++] = l->v[i];
  }
  l->n = j;
}

/*
 * The recording store: forwards everything to the store it wraps and
 * remembers the key of every merge it was given, so a watch run knows
 * which rows it may have changed without listing the whole store.
 */
typedef struct rec_store {
  mm_store_t base;
  mm_store_t *inner;       /* owned */
  strlist_t *keys;         /* borrowed: the watcher's */
} rec_store_t;

/* Runs the merges on the wrapped store, then notes every op's key (a
 * failed merge too: the rows read afterwards say what really changed). */
static int rec_merge(mm_store_t *s, mm_merge_t *ops, size_t n, int64_t deadline_ms) {
  rec_store_t *r = (rec_store_t *)s;
  int rc = mm_store_merge(r->inner, ops, n, deadline_ms);
  for (size_t i = 0; i < n; i++)
    if (ops[i].key)
      strlist_add(r->keys, ops[i].key, ops[i].key_len ? ops[i].key_len : strlen(ops[i].key));
  return rc;
}

static int rec_query(mm_store_t *s, const char *key, const int64_t *bucket, mm_row_fn fn,
                     void *ud, mm_err_t *err) {
  return mm_store_query(((rec_store_t *)s)->inner, key, bucket, fn, ud, err);
}

static void rec_destroy(mm_store_t *s) {
  rec_store_t *r = (rec_store_t *)s;
  mm_store_destroy(r->inner);
  free(r);
}

static const mm_store_vt_t rec_vt = {"watch", rec_merge, rec_query, rec_destroy};

/* One row of a snapshot: a key's row as `query` renders it. */
typedef struct snap_row {
  char *key;
  int64_t bucket;
  char *value;             /* rendered JSON */
} snap_row_t;

/* Rows sorted by key, then bucket. */
typedef struct snap {
  snap_row_t *rows;
  size_t n, cap;
  int failed;              /* incomplete: memory or a failed query */
} snap_t;

static void snap_free(snap_t *s) {
  for (size_t i = 0; i < s->n; i++) {
    free(s->rows[i].key);
    free(s->rows[i].value);
  }
  free(s->rows);
  memset(s, 0, sizeof *s);
}

/* mm_row_fn: appends a copy of the row to the snapshot in ud. */
static int snap_add(void *ud, const mm_row_t *row) {
  snap_t *s = ud;
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 64;
    snap_row_t *rows = realloc(s->rows, cap * sizeof *rows);
    if (!rows) {
      s->failed = 1;
      return 1;
    }
    s->rows = rows;
    s->cap = cap;
  }
  snap_row_t *r = &s->rows[s->n];
  r->key = strdup(row->key);
  r->value = strdup(row->value_json);
  r->bucket = row->bucket;
  if (!r->key || !r->value) {
    free(r->key);
    free(r->value);
    s->failed = 1;
    return 1;
  }
  s->n++;
  return 0;
}

/* A file's identity and version, as far as polling can tell. */
typedef struct stamp {
  int ok;                  /* stat succeeded */
  dev_t dev;
  ino_t ino;
  off_t size;
  struct timespec mtime;
} stamp_t;

/* The stamp of path now; ok = 0 when it cannot be stat'ed (an editor may
 * be replacing it). */
static stamp_t stamp_of(const char *path) {
  stamp_t t;
  memset(&t, 0, sizeof t);
  struct stat st;
  if (stat(path, &st) == 0) {
    t.ok = 1;
    t.dev = st.st_dev;
    t.ino = st.st_ino;
    t.size = st.st_size;
    t.mtime = st.st_mtim;
  }
  return t;
}

static int stamp_same(const stamp_t *a, const stamp_t *b) {
  return a->ok == b->ok && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
         a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* The watcher's state across runs. */
typedef struct watcher {
  const invoke_args_t *args;
  const mm_config_t *cfg;
  char lua_dir[PATH_MAX];
  strlist_t touched;       /* keys merged by the current run */
  snap_t prev;             /* rows the last successful run left */
  long runs;
} watcher_t;

static volatile sig_atomic_t watch_stop = 0;

static void on_stop_signal(int sig) {
  (void)sig;
  watch_stop = 1;
}

/* The last path component, for messages. */
static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

/*
 * Opens a pipeline for one run as mm_pipeline_open does, with the store
 * wrapped in a recording store. On failure *etype names the init error
 * type (as bootstrap.c chooses it) and err says why.
 */
static int watch_open(watcher_t *w, mm_pipeline_t **out, const char **etype, mm_err_t *err) {
  const mm_config_t *cfg = w->cfg;
  mm_script_t *script = NULL;
  mm_store_t *inner = NULL;
  rec_store_t *rs = NULL;
  mm_dedup_t *dedup = NULL;
  *out = NULL;
  *etype = ETYPE_INIT;
  mm_script_opts_t so = {.budget = cfg->lua_budget,
                         .mem_limit = (size_t)cfg->lua_memory_mb << 20,
                         .lua_dir = w->lua_dir,
                         .max_depth = cfg->max_depth};
  int rc = mm_script_load(&script, w->args->script, &so, err);
  if (rc) {
    if (err->chunk[0] || rc == MM_ELUA || rc == MM_EINVAL) *etype = ETYPE_BAD_SCRIPT;
    goto fail;
  }
  mm_store_opts_t sto = {.max_inflight = cfg->max_inflight, .request_timeout_ms = 0};
  if ((rc = mm_store_open(&inner, cfg->store_url, &sto, err))) goto fail;
  if (!(rs = calloc(1, sizeof *rs))) {
    rc = mm_err_set(err, MM_ENOMEM, "out of memory opening the store");
    goto fail;
  }
  rs->base.vt = &rec_vt;
  rs->inner = inner;
  rs->keys = &w->touched;
  inner = NULL;
  if (cfg->dedup_url && (rc = mm_dedup_open(&dedup, cfg->dedup_url, &sto, err))) goto fail;
  /* Takes ownership of all three, also on failure. */
  rc = mm_pipeline_create(out, script, &rs->base, dedup, cfg, err);
  if (rc || !cfg->dlq_url) return rc;
  /* --dlq / MURMUR_DLQ: every run parks its poison pills there. */
  mm_dlq_t *dlq = NULL;
  if ((rc = mm_dlq_open(&dlq, cfg->dlq_url, &sto, err))) {
    mm_pipeline_destroy(*out);
    *out = NULL;
    return rc;
  }
  mm_pipeline_set_dlq(*out, dlq);
  return 0;

fail:
  mm_script_destroy(script);
  mm_store_destroy(inner);
  if (rs) rec_destroy(&rs->base);
  return rc;
}

/*
 * Prints the rows of cur that differ from prev (both sorted by key, then
 * bucket): new or changed rows as `query` prints them, rows gone with
 * "value":null. Returns how many it printed.
 */
static size_t print_changes(const snap_t *prev, const snap_t *cur) {
  size_t i = 0, j = 0, changed = 0;
  while (i < prev->n || j < cur->n) {
    int c;
    if (i == prev->n) c = 1;
    else if (j == cur->n) c = -1;
    else {
      c = strcmp(prev->rows[i].key, cur->rows[j].key);
      if (c == 0)
        c = prev->rows[i].bucket < cur->rows[j].bucket ? -1
            : prev->rows[i].bucket > cur->rows[j].bucket ? 1 : 0;
    }
    mm_row_t row;
    if (c < 0) {           /* gone */
      row = (mm_row_t){.key = prev->rows[i].key, .bucket = prev->rows[i].bucket, .value_json = "null"};
      i++;
    } else if (c > 0) {    /* new */
      row = (mm_row_t){.key = cur->rows[j].key, .bucket = cur->rows[j].bucket,
                       .value_json = cur->rows[j].value};
      j++;
    } else {
      int same = strcmp(prev->rows[i].value, cur->rows[j].value) == 0;
      row = (mm_row_t){.key = cur->rows[j].key, .bucket = cur->rows[j].bucket,
                       .value_json = cur->rows[j].value};
      i++;
      j++;
      if (same) continue;
    }
    print_row(NULL, &row);
    changed++;
  }
  return changed;
}

/*
 * One watch run: reload the script, reopen the store and dedup, run the
 * event, print the response and the rows that changed since the last
 * successful run (which this run then becomes).
 */
static void watch_run(watcher_t *w, const char *reason) {
  mm_err_t err;
  mm_err_clear(&err);
  mm_pipeline_t *p = NULL;
  char *body = NULL;
  size_t len = 0, changed = 0;
  snap_t cur = {0};
  strlist_t keys = {0};
  w->runs++;
  printf("-- run %ld: %s\n", w->runs, reason);
  fflush(stdout);
  strlist_free(&w->touched);

  const char *etype = NULL;
  if (watch_open(w, &p, &etype, &err)) {
    print_error_json(stdout, etype, err.msg);
    goto done;
  }
  mm_pipeline_set_metrics_out(p, stderr);
  if (!(body = slurp(w->args->event, &len, &err))) {
    print_error_json(stdout, "Runtime.InvalidEvent", err.msg);
    goto done;
  }
  if (run_batch(p, body, len, w->args->deadline_in)) goto done;  /* refused: nothing ran */

  /* Keys to look at: this run's and those the previous run left rows in. */
  for (size_t i = 0; i < w->touched.n; i++)
    strlist_add(&keys, w->touched.v[i], strlen(w->touched.v[i]));
  for (size_t i = 0; i < w->prev.n; i++)
    strlist_add(&keys, w->prev.rows[i].key, strlen(w->prev.rows[i].key));
  strlist_unique(&keys);
  cur.failed = keys.failed || w->touched.failed;
  for (size_t i = 0; i < keys.n && !cur.failed; i++) {
    if (mm_store_query(mm_pipeline_store(p), keys.v[i], NULL, snap_add, &cur, &err)) {
      fprintf(stderr, "murmur-ddb: query %s failed: %s\n", keys.v[i], err.msg);
      cur.failed = 1;
    }
  }
  if (cur.failed) {
    fprintf(stderr, "murmur-ddb: the changed rows of run %ld could not all be read\n", w->runs);
  } else {
    changed = print_changes(&w->prev, &cur);
    snap_free(&w->prev);
    w->prev = cur;
    memset(&cur, 0, sizeof cur);
  }

done:
  printf("-- %zu row%s changed\n", changed, changed == 1 ? "" : "s");
  fflush(stdout);
  snap_free(&cur);
  strlist_free(&keys);
  strlist_free(&w->touched);
  mm_pipeline_destroy(p);
  free(body);
}

/* Sleeps ms unless a stop signal arrives first. */
static void watch_sleep(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  if (!watch_stop) nanosleep(&ts, NULL);  /* EINTR: a signal, checked by the caller */
}

/*
 * invoke --watch: a run now, then one per change of the script or the
 * event file, until --watch-max runs or a stop signal. A change runs only
 * once both files have been still for one poll (bounded by
 * WATCH_SETTLE_POLLS), and a missing file (an editor replacing it) is
 * waited for.
 */
static int cmd_watch(const invoke_args_t *a, mm_config_t *cfg) {
  watcher_t w;
  memset(&w, 0, sizeof w);
  w.args = a;
  w.cfg = cfg;
  find_lua_dir(w.lua_dir, sizeof w.lua_dir);

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);   /* no SA_RESTART: a sleep ends at once */
  sigaction(SIGTERM, &sa, NULL);

  fprintf(stderr, "murmur-ddb: watching %s and %s (store %s, dedup %s); Ctrl-C stops\n",
          a->script, a->event, cfg->store_url, cfg->dedup_url ? cfg->dedup_url : "off");
  stamp_t ss = stamp_of(a->script), se = stamp_of(a->event);
  watch_run(&w, "start");
  while (!watch_stop && (a->watch_max == 0 || w.runs < a->watch_max)) {
    watch_sleep(a->watch_interval_ms);
    stamp_t ns = stamp_of(a->script), ne = stamp_of(a->event);
    if (stamp_same(&ns, &ss) && stamp_same(&ne, &se)) continue;
    /* Let the files settle (both present, unchanged for one poll). */
    for (int k = 0; k < WATCH_SETTLE_POLLS && !watch_stop; k++) {
      watch_sleep(a->watch_interval_ms);
      stamp_t ms = stamp_of(a->script), me = stamp_of(a->event);
      int still = stamp_same(&ms, &ns) && stamp_same(&me, &ne);
      ns = ms;
      ne = me;
      if (still && ns.ok && ne.ok) break;
    }
    if (watch_stop) break;
    if (!ns.ok || !ne.ok) continue;  /* still missing: wait for it */
    char reason[2 * PATH_MAX + 32];
    int sc = !stamp_same(&ns, &ss), ec = !stamp_same(&ne, &se);
    snprintf(reason, sizeof reason, "%s%s%s changed", sc ? base_name(a->script) : "",
             sc && ec ? " and " : "", ec ? base_name(a->event) : "");
    ss = ns;
    se = ne;
    watch_run(&w, reason);
  }
  snap_free(&w.prev);
  strlist_free(&w.touched);
  return 0;
}

static int cmd_query(int argc, char **argv, mm_config_t *cfg) {
  mm_query_t q = {0};
  int64_t bucket = 0;
  const char *script = NULL, *granularity = NULL, *aggregate = NULL;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--store") && v) cfg->store_url = argv[++i];
    else if (!strcmp(a, "--bucket") && v) {
      if (parse_i64(argv[++i], &bucket)) {
        fprintf(stderr, "murmur-ddb: --bucket needs an integer\n");
        return 2;
      }
      q.bucket = &bucket;
    } else if (!strcmp(a, "--last") && v) q.last = argv[++i];
    else if (!strcmp(a, "--granularity") && v) granularity = argv[++i];
    else if (!strcmp(a, "--aggregate") && v) aggregate = argv[++i];
    else if (!strcmp(a, "--script") && v) script = argv[++i];
    else if (a[0] != '-' && !q.key) q.key = a;
    else {
      fprintf(stderr, "murmur-ddb query: unexpected argument '%s'\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (!q.key) {
    usage(stderr);
    return 2;
  }
  mm_err_t err;
  mm_err_clear(&err);
  /* The aggregate and bucket width come from the pipeline (--script), or
   * from --aggregate / --granularity, which win over it. */
  if (script) {
    char luabuf[PATH_MAX];
    mm_script_opts_t so = {.budget = cfg->lua_budget,
                           .mem_limit = (size_t)cfg->lua_memory_mb << 20,
                           .lua_dir = find_lua_dir(luabuf, sizeof luabuf),
                           .max_depth = cfg->max_depth};
    mm_script_t *sc = NULL;
    if (mm_script_load(&sc, script, &so, &err)) {
      fprintf(stderr, "murmur-ddb: %s\n", err.msg);
      return 1;
    }
    const mm_def_t *def = mm_script_def(sc);
    q.has_agg = 1;
    q.agg = def->agg;
    if (def->windowed) q.granularity_s = def->granularity_s;
    mm_script_destroy(sc);
  }
  if (aggregate) {
    if (mm_agg_parse(aggregate, &q.agg)) {
      fprintf(stderr, "murmur-ddb: --aggregate: unknown aggregate '%s'\n", aggregate);
      return 2;
    }
    q.has_agg = 1;
  }
  if (granularity && mm_config_duration(granularity, &q.granularity_s, &err)) {
    fprintf(stderr, "murmur-ddb: --granularity: %s\n", err.msg);
    return 2;
  }
  q.now_s = cfg->has_now ? (int64_t)cfg->now : mm_now_ms() / 1000;
  mm_store_t *s = NULL;
  mm_store_opts_t so = {.max_inflight = cfg->max_inflight};
  if (mm_store_open(&s, cfg->store_url ? cfg->store_url : DEFAULT_LOCAL_DB, &so, &err)) {
    fprintf(stderr, "murmur-ddb: %s\n", err.msg);
    return 1;
  }
  int rc = mm_query_run(s, &q, stdout, &err);
  if (rc) fprintf(stderr, "murmur-ddb: query failed: %s\n", err.msg);
  mm_store_destroy(s);
  return rc ? 1 : 0;
}

static void report_problem(void *ud, const char *problem) {
  (*(int *)ud)++;
  printf("%s\n", problem);
}

static int cmd_check(int argc, char **argv, mm_config_t *cfg) {
  if (argc != 1) {
    usage(stderr);
    return 2;
  }
  char luabuf[PATH_MAX];
  mm_script_opts_t so = {.budget = cfg->lua_budget,
                         .mem_limit = (size_t)cfg->lua_memory_mb << 20,
                         .lua_dir = find_lua_dir(luabuf, sizeof luabuf),
                         .max_depth = cfg->max_depth};
  int count = 0;
  int problems = mm_script_check(argv[0], &so, report_problem, &count);
  if (problems == 0) printf("%s: ok\n", argv[0]);
  return problems ? 1 : 0;
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  /* Before replay too: its log lines follow AWS_LAMBDA_LOG_LEVEL/FORMAT. */
  mm_log_init(stderr);
  /* replay reads its own settings (and ignores MURMUR_DLQ) */
  if (!strcmp(argv[1], "replay")) return mm_replay_main(argc - 1, argv + 1);
  mm_config_t cfg;
  mm_err_t err;
  mm_err_clear(&err);
  if (mm_config_from_env(&cfg, &err)) {
    fprintf(stderr, "murmur-ddb: %s\n", err.msg);
    return 2;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "invoke")) return cmd_invoke(argc - 2, argv + 2, &cfg);
  if (!strcmp(cmd, "query")) return cmd_query(argc - 2, argv + 2, &cfg);
  if (!strcmp(cmd, "check")) return cmd_check(argc - 2, argv + 2, &cfg);
  fprintf(stderr, "murmur-ddb: unknown command '%s'\n", cmd);
  usage(stderr);
  return 2;
}

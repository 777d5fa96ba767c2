/*
 * replay.c - `murmur-ddb replay`: parked records run again through a fixed
 * script, removed from the queue or file only when they now succeed (see
 * replay.h).
 */
#include "replay.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "dlq.h"
#include "event.h"
#include "json.h"
#include "log.h"
#include "pipeline.h"
#include "retry.h"

/* Default store (and dedup) of the local commands, as in cli.c. */
#define DEFAULT_LOCAL_DB "sqlite://murmur.db"
/* Defaults of the options. */
#define DEF_BATCH 100
#define DEF_MAX 10000
#define DEF_WAIT_S 1
#define DEF_VISIBILITY_S 60
/* Largest --batch and --max accepted. */
#define MAX_BATCH 10000
#define MAX_MAX 10000000

/* What replay does with one message. */
enum {
  IT_RUN = 0,  /* its record goes into the next event */
  IT_KEEP,     /* kept, with a reason */
  IT_REMOVE,   /* removed from the source */
  IT_FOLLOW    /* same eventID as an earlier message of the batch: its fate */
};

typedef struct item {
  char *body;              /* owned: the message body (file: the line) */
  size_t len;
  char *receipt;           /* owned (SQS) */
  char *message_id;        /* owned (SQS) */
  size_t line;             /* file: 1-based line number */
  mm_buf_t rec;            /* the record's compact text */
  char event_id[MM_EVENT_ID_MAX];
  int state;
  long follows;            /* IT_FOLLOW: index of the first copy */
  int outcome;             /* MM_RECORD_* after the run, 0 when not run */
  char why[400];           /* why it is kept */
} item_t;

/* A set of strings (open addressing, FNV-1a), for MessageIds seen and
 * eventIDs replayed. */
typedef struct strset {
  char **slot;
  size_t cap, count;
} strset_t;

typedef struct ctx {
  mm_pipeline_t *p;
  mm_dlq_t *q;             /* SQS source, NULL for a file */
  FILE *in;                /* file source */
  FILE *remaining;         /* file source: FILE.remaining (temporary name) */
  size_t line_no;
  const char *pipeline;    /* the script's name */
  int max_attempts;
  strset_t seen_ids;       /* SQS MessageIds read this run */
  strset_t done_events;    /* eventIDs replayed (removed) this run */
  int *outcomes;           /* per record of the current event */
  size_t noutcomes;
  /* counters for the summary */
  size_t read, replayed, removed, kept, still_poison, failed, truncated, other,
      duplicates, delete_failures;
  int io_error;
} ctx_t;

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

static uint64_t fnv(const char *s) { return mm_fnv1a(s, strlen(s)); }

/* Adds s to the set; returns 1 when it was already there, 0 when added,
 * -1 when out of memory. */
static int strset_add(strset_t *t, const char *s) {
  if ((t->count + 1) * 2 > t->cap) {
    size_t ncap = t->cap ? t->cap * 2 : 64;
    char **ns = calloc(ncap, sizeof *ns);
    if (!ns) return -1;
    for (size_t i = 0; i < t->cap; i++) {
      if (!t->slot[i]) continue;
      size_t h = fnv(t->slot[i]) & (ncap - 1);
      while (ns[h]) h = (h + 1) & (ncap - 1);
      ns[h] = t->slot[i];
    }
    free(t->slot);
    t->slot = ns;
    t->cap = ncap;
  }
  size_t h = fnv(s) & (t->cap - 1);
  while (t->slot[h]) {
    if (strcmp(t->slot[h], s) == 0) return 1;
    h = (h + 1) & (t->cap - 1);
  }
  size_t n = strlen(s);
  if (!(t->slot[h] = malloc(n + 1))) return -1;
  memcpy(t->slot[h], s, n + 1);
  t->count++;
  return 0;
}

static int strset_has(const strset_t *t, const char *s) {
  if (!t->cap) return 0;
  size_t h = fnv(s) & (t->cap - 1);
  while (t->slot[h]) {
    if (strcmp(t->slot[h], s) == 0) return 1;
    h = (h + 1) & (t->cap - 1);
  }
  return 0;
}

static void strset_free(strset_t *t) {
  for (size_t i = 0; i < t->cap; i++) free(t->slot[i]);
  free(t->slot);
  memset(t, 0, sizeof *t);
}

static void item_free(item_t *it) {
  free(it->body);
  free(it->receipt);
  free(it->message_id);
  mm_buf_free(&it->rec);
  memset(it, 0, sizeof *it);
}

static void keep(item_t *it, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void keep(item_t *it, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(it->why, sizeof it->why, fmt, ap);
  va_end(ap);
  it->state = IT_KEEP;
}

/* Where a message came from, for log lines. */
static void where(const ctx_t *c, const item_t *it, char *out, size_t cap) {
  if (c->q) snprintf(out, cap, "message %s", it->message_id ? it->message_id : "?");
  else snprintf(out, cap, "line %zu", it->line);
}

/* The per-record callback: outcomes of the current event, by index. */
static void on_record(void *ud, size_t index, int outcome) {
  ctx_t *c = ud;
  if (index < c->noutcomes) c->outcomes[index] = outcome;
}

/* ------------------------------------------------------------------ */
/* Reading                                                             */
/* ------------------------------------------------------------------ */

/* Reads up to max messages from the queue into items. Returns the number
 * read, or -1 on a failure that ends the run. Sets *end when the source is
 * exhausted (an empty receive, or only messages already seen). */
static long read_sqs(ctx_t *c, item_t *items, size_t max, int wait_s, int visibility_s,
                     int *end) {
  size_t n = 0;
  while (n < max && !*end) {
    mm_dlq_parked_t got[MM_DLQ_BATCH];
    size_t k = 0, want = max - n < MM_DLQ_BATCH ? max - n : MM_DLQ_BATCH;
    mm_err_t err;
    mm_err_clear(&err);
    if (mm_dlq_receive(c->q, want, wait_s, visibility_s, c->max_attempts, got, &k, &err)) {
      mm_log(MM_LOG_ERROR, NULL, "replay: cannot receive from %s: %s", mm_dlq_target(c->q),
             err.msg);
      return n ? (long)n : -1;
    }
    if (k == 0) {
      *end = 1;
      break;
    }
    size_t fresh = 0;
    for (size_t i = 0; i < k; i++) {
      int dup = got[i].message_id ? strset_add(&c->seen_ids, got[i].message_id) : 0;
      if (dup < 0) { /* not lost: it reappears after the visibility timeout */
        mm_log(MM_LOG_WARN, NULL,
               "replay: out of memory: message %s left in the queue for a later run",
               got[i].message_id);
        mm_dlq_parked_free(&got[i]);
        continue;
      }
      if (dup == 1) { /* seen earlier this run: it reappeared */
        mm_dlq_parked_free(&got[i]);
        continue;
      }
      item_t *it = &items[n++];
      memset(it, 0, sizeof *it);
      it->body = got[i].body;
      it->len = got[i].len;
      it->receipt = got[i].receipt;
      it->message_id = got[i].message_id;
      it->follows = -1;
      fresh++;
    }
    if (!fresh) *end = 1;
  }
  return (long)n;
}

/* Reads up to max non-empty lines of the file. */
static long read_file(ctx_t *c, item_t *items, size_t max, int *end) {
  size_t n = 0;
  char *line = NULL;
  size_t cap = 0;
  while (n < max) {
    errno = 0;
    ssize_t got = getline(&line, &cap, c->in);
    if (got < 0) {
      if (ferror(c->in)) {
        mm_log(MM_LOG_ERROR, NULL, "replay: read error: %s", strerror(errno));
        free(line);
        return -1;
      }
      *end = 1;
      break;
    }
    c->line_no++;
    size_t len = (size_t)got;
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
    size_t sp = 0;
    while (sp < len && (line[sp] == ' ' || line[sp] == '\t')) sp++;
    if (sp == len) continue; /* blank */
    item_t *it = &items[n];
    memset(it, 0, sizeof *it);
    it->line = c->line_no;
    it->follows = -1;
    if (!(it->body = malloc(len + 1))) {
      mm_log(MM_LOG_ERROR, NULL, "replay: out of memory reading line %zu", c->line_no);
      free(line);
      return -1;
    }
    memcpy(it->body, line, len);
    it->body[len] = '\0';
    it->len = len;
    n++;
  }
  free(line);
  return (long)n;
}

/* ------------------------------------------------------------------ */
/* One batch                                                           */
/* ------------------------------------------------------------------ */

/*
 * Reads message it: a version 1 body of this pipeline holding a whole
 * stream record. Leaves it IT_RUN with its compact record, or IT_KEEP with
 * the reason.
 */
static void examine(ctx_t *c, item_t *it) {
  mm_json_doc_t doc;
  mm_err_t e;
  memset(&doc, 0, sizeof doc);
  it->state = IT_RUN;
  if (mm_json_parse(&doc, it->body, it->len, 0, &e) || mm_json_type(&doc, 0) != MM_JSON_OBJ) {
    keep(it, "not a dead-letter message (the body is not a JSON object)");
    goto out;
  }
  uint32_t v = mm_json_get(&doc, 0, "version", 7);
  double ver = 0;
  if (!v || mm_json_type(&doc, v) != MM_JSON_NUM || mm_json_double(&doc, v, &ver) ||
      ver != MM_DLQ_BODY_VERSION) {
    keep(it, "not a version %d dead-letter message", MM_DLQ_BODY_VERSION);
    goto out;
  }
  uint32_t pl = mm_json_get(&doc, 0, "pipeline", 8);
  if (pl && mm_json_type(&doc, pl) == MM_JSON_STR &&
      !mm_json_str_eq(&doc, pl, c->pipeline, strlen(c->pipeline))) {
    char *name = mm_json_strdup(&doc, pl, NULL);
    keep(it, "parked by pipeline '%.100s', not '%.100s'", name ? name : "?", c->pipeline);
    free(name);
    c->other++;
    goto out;
  }
  uint32_t id = mm_json_get(&doc, 0, "eventID", 7);
  if (id && mm_json_type(&doc, id) == MM_JSON_STR && mm_json_len(&doc, id) < MM_EVENT_ID_MAX) {
    char *s = mm_json_strdup(&doc, id, NULL);
    if (s) snprintf(it->event_id, sizeof it->event_id, "%s", s);
    free(s);
  }
  uint32_t tr = mm_json_get(&doc, 0, "truncated", 9);
  if (tr && mm_json_type(&doc, tr) == MM_JSON_TRUE) {
    keep(it, "the record was truncated when parked (too large for one message): it cannot "
             "be replayed");
    c->truncated++;
    goto out;
  }
  uint32_t rec = mm_json_get(&doc, 0, "record", 6);
  if (!rec || mm_json_type(&doc, rec) != MM_JSON_OBJ) {
    keep(it, "the message holds no stream record object");
    goto out;
  }
  if (mm_dlq_record_json(&it->rec, &doc, rec)) {
    keep(it, "out of memory");
    goto out;
  }
  /* The record alone must make a stream event, or it would sink the
   * whole batch's event. */
  {
    mm_buf_t one = MM_BUF_INIT;
    mm_buf_adds(&one, "{\"Records\":[");
    mm_buf_add(&one, it->rec.data, it->rec.len);
    mm_buf_adds(&one, "]}");
    mm_event_t ev;
    const char *etype = NULL;
    memset(&ev, 0, sizeof ev);
    if (mm_buf_failed(&one)) keep(it, "out of memory");
    else if (mm_event_parse(&ev, one.data, one.len, &etype, &e)) keep(it, "%s", e.msg);
    mm_event_free(&ev);
    mm_buf_free(&one);
  }
out:
  mm_json_free(&doc);
}

/* Runs the IT_RUN items' records as one event and sets their outcomes. */
static int run_event(ctx_t *c, item_t *items, size_t n) {
  size_t nrun = 0;
  for (size_t i = 0; i < n; i++)
    if (items[i].state == IT_RUN) nrun++;
  if (!nrun) return 0;
  size_t *map = malloc(nrun * sizeof *map);
  int *outs = calloc(nrun, sizeof *outs);
  mm_buf_t ev = MM_BUF_INIT;
  int rc = 0;
  if (!map || !outs) {
    rc = MM_ENOMEM;
    goto out;
  }
  mm_buf_adds(&ev, "{\"Records\":[");
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (items[i].state != IT_RUN) continue;
    if (k) mm_buf_addc(&ev, ',');
    mm_buf_add(&ev, items[i].rec.data, items[i].rec.len);
    map[k++] = i;
  }
  mm_buf_adds(&ev, "]}");
  if (mm_buf_failed(&ev)) {
    rc = MM_ENOMEM;
    goto out;
  }
  c->outcomes = outs;
  c->noutcomes = nrun;
  mm_invoke_t inv = {.event = ev.data, .len = ev.len, .deadline_ms = 0, .request_id = "replay"};
  mm_result_t res;
  int prc = mm_pipeline_run(c->p, &inv, &res);
  c->outcomes = NULL;
  c->noutcomes = 0;
  if (prc) {
    for (size_t j = 0; j < nrun; j++)
      keep(&items[map[j]], "the rebuilt event was refused: %s", res.err.msg);
  } else {
    c->replayed += nrun;
    for (size_t j = 0; j < nrun; j++) items[map[j]].outcome = outs[j];
  }
  mm_result_free(&res);
out:
  if (rc)
    for (size_t i = 0; i < n; i++)
      if (items[i].state == IT_RUN) keep(&items[i], "out of memory building the event");
  mm_buf_free(&ev);
  free(map);
  free(outs);
  return rc;
}

/* Decides each item's fate from its outcome (or its first copy's). */
static void decide(ctx_t *c, item_t *items, size_t n) {
  for (size_t i = 0; i < n; i++) {
    item_t *it = &items[i];
    if (it->state == IT_RUN) {
      switch (it->outcome) {
      case MM_RECORD_OK:
      case MM_RECORD_SKIP:
      case MM_RECORD_DUP:
        it->state = IT_REMOVE;
        if (it->event_id[0]) strset_add(&c->done_events, it->event_id);
        break;
      case MM_RECORD_POISON:
        keep(it, "the record still fails to decode (see the decode error above)");
        c->still_poison++;
        break;
      case MM_RECORD_FAILED:
      case MM_RECORD_NOTSTARTED:
        keep(it, "the record's merge failed (see the store error above)");
        c->failed++;
        break;
      default:
        if (it->state == IT_RUN) keep(it, "the record was not run");
        break;
      }
    }
  }
  for (size_t i = 0; i < n; i++) {
    item_t *it = &items[i];
    if (it->state != IT_FOLLOW) continue;
    if (items[it->follows].state == IT_REMOVE) {
      it->state = IT_REMOVE;
      c->duplicates++;
    } else {
      keep(it, "a copy of a record (eventID %s) that was kept", it->event_id);
    }
  }
}

/* Removes the IT_REMOVE messages from the queue, or writes the kept lines
 * to FILE.remaining; logs every kept message with its reason. */
static void dispose(ctx_t *c, item_t *items, size_t n) {
  char w[128];
  if (c->q) {
    mm_dlq_parked_t *del = calloc(n ? n : 1, sizeof *del);
    int *st = calloc(n ? n : 1, sizeof *st);
    size_t *idx = calloc(n ? n : 1, sizeof *idx);
    size_t nd = 0;
    if (!del || !st || !idx) {
      for (size_t i = 0; i < n; i++)
        if (items[i].state == IT_REMOVE) keep(&items[i], "replayed, but out of memory deleting");
    } else {
      for (size_t i = 0; i < n; i++) {
        if (items[i].state != IT_REMOVE) continue;
        del[nd].receipt = items[i].receipt; /* borrowed: not freed here */
        del[nd].message_id = items[i].message_id;
        idx[nd++] = i;
      }
      mm_err_t err;
      mm_err_clear(&err);
      if (nd) mm_dlq_delete(c->q, del, nd, c->max_attempts, st, &err);
      for (size_t j = 0; j < nd; j++) {
        if (st[j] == 0) {
          c->removed++;
          continue;
        }
        c->delete_failures++;
        item_t *it = &items[idx[j]];
        where(c, it, w, sizeof w);
        mm_log(MM_LOG_WARN, it->event_id[0] ? it->event_id : NULL,
               "replay: %s was replayed but could not be deleted (a later replay %s): %s", w,
               "merges it again unless dedup is on", err.msg);
      }
    }
    free(del);
    free(st);
    free(idx);
  } else {
    for (size_t i = 0; i < n; i++) {
      if (items[i].state == IT_REMOVE) {
        c->removed++;
      } else if (fwrite(items[i].body, 1, items[i].len, c->remaining) != items[i].len ||
                 fputc('\n', c->remaining) == EOF) {
        c->io_error = 1;
      }
    }
  }
  for (size_t i = 0; i < n; i++) {
    if (items[i].state != IT_KEEP) continue;
    c->kept++;
    where(c, &items[i], w, sizeof w);
    mm_log(MM_LOG_WARN, items[i].event_id[0] ? items[i].event_id : NULL, "replay: %s kept: %s",
           w, items[i].why);
  }
}

/* Examines, runs and disposes of one batch of messages. */
static void process(ctx_t *c, item_t *items, size_t n) {
  c->read += n;
  for (size_t i = 0; i < n; i++) {
    item_t *it = &items[i];
    examine(c, it);
    if (it->state != IT_RUN || !it->event_id[0]) continue;
    if (strset_has(&c->done_events, it->event_id)) {
      it->state = IT_REMOVE; /* replayed earlier in this run */
      c->duplicates++;
      continue;
    }
    for (size_t j = 0; j < i; j++)
      if (items[j].state == IT_RUN && strcmp(items[j].event_id, it->event_id) == 0) {
        it->state = IT_FOLLOW;
        it->follows = (long)j;
        break;
      }
  }
  run_event(c, items, n);
  decide(c, items, n);
  dispose(c, items, n);
}

/* ------------------------------------------------------------------ */
/* The command                                                         */
/* ------------------------------------------------------------------ */

static void usage(FILE *f) {
  fputs("usage: murmur-ddb replay --from sqs://QUEUE_URL|FILE --script FILE\n"
        "                         [--store URL] [--dedup URL|off] [--max N] [--batch N]\n"
        "                         [--wait S] [--visibility S]\n",
        f);
}

static int parse_int(const char *s, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

int mm_replay_main(int argc, char **argv) {
  const char *from = NULL, *script = NULL, *store = NULL, *dedup = NULL;
  int dedup_given = 0;
  long batch = DEF_BATCH, max = DEF_MAX, wait_s = DEF_WAIT_S, vis = DEF_VISIBILITY_S;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    long *num = NULL;
    long lo = 0, hi = 0;
    if (!strcmp(a, "--from") && v) from = argv[++i];
    else if (!strcmp(a, "--script") && v) script = argv[++i];
    else if (!strcmp(a, "--store") && v) store = argv[++i];
    else if (!strcmp(a, "--dedup") && v) {
      dedup = strcmp(v, "off") ? v : NULL;
      dedup_given = 1;
      i++;
    } else if (!strcmp(a, "--batch") && v) num = &batch, lo = 1, hi = MAX_BATCH;
    else if (!strcmp(a, "--max") && v) num = &max, lo = 1, hi = MAX_MAX;
    else if (!strcmp(a, "--wait") && v) num = &wait_s, lo = 0, hi = 20;
    else if (!strcmp(a, "--visibility") && v) num = &vis, lo = 0, hi = 43200;
    else {
      fprintf(stderr, "murmur-ddb replay: unexpected argument '%s'\n", a);
      usage(stderr);
      return 2;
    }
    if (num && parse_int(argv[++i], lo, hi, num)) {
      fprintf(stderr, "murmur-ddb replay: %s needs an integer from %ld to %ld\n", a, lo, hi);
      return 2;
    }
  }
  if (!from || !script) {
    usage(stderr);
    return 2;
  }

  /* Replay never parks: a record that still fails stays where it is. */
  unsetenv("MURMUR_DLQ");
  mm_config_t cfg;
  mm_err_t err;
  mm_err_clear(&err);
  if (mm_config_from_env(&cfg, &err)) {
    fprintf(stderr, "murmur-ddb: %s\n", err.msg);
    return 2;
  }
  if (store) cfg.store_url = store;
  if (dedup_given) cfg.dedup_url = dedup;
  if (!cfg.store_url) cfg.store_url = DEFAULT_LOCAL_DB;
  if (!dedup_given && !cfg.dedup_url) {
    if (!strcmp(cfg.store_url, DEFAULT_LOCAL_DB)) cfg.dedup_url = DEFAULT_LOCAL_DB;
    else
      mm_log(MM_LOG_WARN, NULL,
             "replay: dedup is off (no --dedup, MURMUR_DEDUP unset): a record replayed "
             "again in a later run merges again");
  }

  ctx_t c;
  memset(&c, 0, sizeof c);
  c.max_attempts = cfg.max_attempts;
  item_t *items = calloc((size_t)batch, sizeof *items);
  char *rem_path = NULL, *rem_tmp = NULL;
  int status = 1;
  char luabuf[PATH_MAX];
  mm_config_lua_dir(luabuf, sizeof luabuf);
  if (!items) {
    fprintf(stderr, "murmur-ddb replay: out of memory\n");
    goto out;
  }
  if (mm_pipeline_open(&c.p, script, luabuf, &cfg, NULL, &err)) {
    fprintf(stderr, "murmur-ddb replay: init error: %s\n", err.msg);
    goto out;
  }
  mm_pipeline_set_metrics_out(c.p, NULL);
  mm_pipeline_set_record_cb(c.p, on_record, &c);
  c.pipeline = mm_pipeline_def(c.p)->name;
  mm_log_set_request("replay");

  if (!strncmp(from, "sqs://", 6)) {
    mm_store_opts_t so = {.max_inflight = cfg.max_inflight};
    if (mm_dlq_open(&c.q, from, &so, &err)) {
      fprintf(stderr, "murmur-ddb replay: %s\n", err.msg);
      goto out;
    }
  } else {
    const char *path = strncmp(from, "file://", 7) ? from : from + 7;
    if (!(c.in = fopen(path, "rb"))) {
      fprintf(stderr, "murmur-ddb replay: cannot open %s: %s\n", path, strerror(errno));
      goto out;
    }
    size_t n = strlen(path) + 32;
    rem_path = malloc(n);
    rem_tmp = malloc(n);
    if (!rem_path || !rem_tmp) goto out;
    snprintf(rem_path, n, "%s.remaining", path);
    snprintf(rem_tmp, n, "%s.remaining.%ld", path, (long)getpid());
    if (!(c.remaining = fopen(rem_tmp, "wb"))) {
      fprintf(stderr, "murmur-ddb replay: cannot write %s: %s\n", rem_tmp, strerror(errno));
      goto out;
    }
  }

  int end = 0, broken = 0;
  while (!end && c.read < (size_t)max) {
    size_t want = (size_t)batch;
    if ((size_t)max - c.read < want) want = (size_t)max - c.read;
    long got = c.q ? read_sqs(&c, items, want, (int)wait_s, (int)vis, &end)
                   : read_file(&c, items, want, &end);
    if (got < 0) {
      broken = 1;
      break;
    }
    if (got > 0) process(&c, items, (size_t)got);
    for (long i = 0; i < got; i++) item_free(&items[i]);
  }
  if (c.remaining) {
    /* Lines never read (--max reached) are kept too. */
    char buf[65536];
    size_t r;
    if (!end)
      while ((r = fread(buf, 1, sizeof buf, c.in)) > 0)
        if (fwrite(buf, 1, r, c.remaining) != r) c.io_error = 1;
    if (fclose(c.remaining) != 0) c.io_error = 1;
    c.remaining = NULL;
    if (broken) {
      unlink(rem_tmp); /* FILE was not read to its end: no partial .remaining */
    } else if (c.io_error || rename(rem_tmp, rem_path) != 0) {
      fprintf(stderr, "murmur-ddb replay: cannot write %s: %s\n", rem_path, strerror(errno));
      unlink(rem_tmp);
      broken = 1;
    }
  }
  printf("{\"read\":%zu,\"replayed\":%zu,\"removed\":%zu,\"kept\":%zu,\"stillPoison\":%zu,"
         "\"failed\":%zu,\"truncated\":%zu,\"skippedOther\":%zu,\"duplicates\":%zu,"
         "\"deleteFailures\":%zu}\n",
         c.read, c.replayed, c.removed, c.kept, c.still_poison, c.failed, c.truncated, c.other,
         c.duplicates, c.delete_failures);
  fflush(stdout);
  if (broken) status = 1;
  else status = c.kept || c.delete_failures ? MM_REPLAY_EXIT_KEPT : 0;
out:
  if (c.remaining) {
    fclose(c.remaining);
    unlink(rem_tmp);
  }
  if (c.in) fclose(c.in);
  mm_dlq_destroy(c.q);
  mm_pipeline_destroy(c.p);
  strset_free(&c.seen_ids);
  strset_free(&c.done_events);
  free(items);
  free(rem_path);
  free(rem_tmp);
  mm_log_set_request(NULL);
  return status;
}

/*
 * script.c - the Lua host: state, sandbox, limits, pipeline table, records.
 *
 * See script.h for the contract. Layout of this file:
 *   1. the allocator with a heap ceiling
 *   2. the instruction budget hook and the traceback message handler
 *   3. the sandbox (base/string/table/math/utf8/coroutine, trimmed os, a
 *      stderr-only io, require over two directories, preloaded cjson and
 *      murmur.core)
 *   4. loading and validating decode.lua
 *   5. running a record: decode -> keys/key -> value, then conversion of the
 *      results to C outside protected mode (no C memory spans a raise)
 *
 * Sandbox decisions (also in README):
 *   - base: no dofile/loadfile; load only compiles text (mode forced to
 *     "t"); print writes one INFO log line; collectgarbage only accepts
 *     "collect", "count", "step" and "isrunning" (a script cannot stop the
 *     collector or change its mode for the records after it); setmetatable
 *     refuses a metatable with __gc (finalizers run with hooks off, so the
 *     budget could not stop them).
 *   - os: clock, time, date, difftime, getenv (getenv hides the AWS
 *     credentials: a script has no network, so they could only leak).
 *   - io: only io.write and io.stderr:write, both to stderr (stdout carries
 *     metrics and the CLI's response); no files, no io.read, no popen.
 *   - no debug library (debug.sethook would remove the budget).
 *   - require: package.preload ("cjson", "cjson.safe", "murmur.core"), then
 *     NAME.lua and NAME/init.lua under the script's directory, then under
 *     opts->lua_dir, loaded as text only. No C modules (cpath is empty,
 *     loadlib and searchpath are gone); package.path only describes the
 *     search, changing it has no effect.
 *
 * Limits: the instruction budget counts one record (decode + keys/key +
 * value) or one on_decode_error call or the script's top level; between
 * mm_script_watch_begin and _end only calls that outlive a CPU-time tick
 * are counted (section 2, "the watchdog"). The heap
 * ceiling counts the whole Lua heap, including the ~20 KB the libraries
 * take at setup; it is enforced once setup is done. Neither limit can
 * interrupt a single C function: a pathological string pattern
 * (string.find with many ".-") runs until it finishes or Lambda's timeout.
 */
#include "script.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#if defined(__SANITIZE_ADDRESS__)
#define MM_POOL_OFF 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MM_POOL_OFF 1
#endif
#endif

#include "buf.h"
#include "config.h"
#include "conv.h"
#include "ddb.h"
#include "log.h"
#include "murmur_lua.h"
#include "retry.h"
#include "watch.h"

/* lua-cjson's entry points (static library, no usable header). */
int luaopen_cjson(lua_State *L);
int luaopen_cjson_safe(lua_State *L);

/* Instructions between two budget checks. */
#define HOOK_EVERY 1000
/* The watchdog (mm_script_watch_begin): its CPU-time period, and the
 * smallest budget it serves (smaller ones are counted exactly). */
#define WATCH_PERIOD_US 1000
#define WATCH_MIN_BUDGET 10000000L
/* Longest partition key DynamoDB accepts, in bytes. */
#define MAX_KEY_BYTES 2048
/* Longest pipeline name. */
#define MAX_NAME 100
/* Longest module name require accepts. */
#define MAX_MODULE 200

/* The small-block pool of the Lua allocator: blocks of up to POOL_MAX
 * bytes in size classes POOL_GRAIN apart, carved from POOL_CHUNK-byte
 * chunks and recycled through one free list per class. */
#define POOL_GRAIN 16
#define POOL_MAX 512
#define POOL_CLASSES (POOL_MAX / POOL_GRAIN)
#define POOL_CHUNK (64 * 1024)

typedef struct pool_chunk {
  struct pool_chunk *next;
  /* blocks follow, 16-byte aligned */
} pool_chunk_t;

typedef struct pool {
  int on;                         /* 0: every block comes from malloc */
  void *free[POOL_CLASSES];       /* free lists, linked through the blocks */
  char *bump, *bump_end;          /* the unused rest of the newest chunk */
  pool_chunk_t *chunks;           /* every chunk, for mm_script_destroy */
} pool_t;

struct mm_script {
  lua_State *L;
  pool_t pool;              /* the allocator's small blocks */
  mm_conv_frees_t frees;    /* l_alloc reports freed blocks to conv there */
  mm_def_t def;
  char chunk[128];          /* base name of the script: "decode.lua" */
  char *dir;                /* the script's directory (owned) */
  char *lua_dir;            /* opts->lua_dir copy or NULL (owned) */
  int max_depth;

  /* heap */
  size_t used;              /* bytes the Lua heap holds now */
  size_t peak;              /* highest `used` seen */
  size_t limit;             /* enforced ceiling, 0 = none */
  size_t limit_cfg;         /* opts->mem_limit */
  int pending;              /* a refused request not yet retried */
  const void *pend_ptr;
  size_t pend_osize, pend_nsize;
  int ceiling_hit;          /* a refusal stood during the current call */
  long refusals;            /* requests refused during the current call */
  const char *hit_phase;    /* phase the ceiling was hit in */
  size_t gc_mark;           /* the hook runs a full GC once `used` passes it */

  /* budget */
  long budget;              /* 0 = unlimited */
  long counted;             /* instructions counted in the current call */
  int budget_hit;
  int hook_every;
  int64_t stop_at;          /* epoch ms after which calls stop; 0 = none */
  int deadline_hit;         /* the current call ran into stop_at */

  /* the watchdog (section 2): between mm_script_watch_begin and _end,
   * the main thread runs without a hook until a call outlives a tick.
   * The fields the signal handler reads or writes are volatile. */
  mm_watch_t watch;
  int watch_ok;             /* the budget allows watching (0 or large) */
  int watching;             /* between watch_begin and watch_end */
  volatile sig_atomic_t in_call;   /* a watched call is running */
  volatile sig_atomic_t call_seq;  /* bumped by every watched call */
  volatile sig_atomic_t tick_seq;  /* call_seq at the previous tick */
  volatile sig_atomic_t counting;  /* the main thread's hook counts this call */
  volatile sig_atomic_t in_hook;   /* our own lua_sethook is under way */
  int gc_armed;             /* l_alloc armed the hook for a GC */
  long watched_calls;       /* watched calls that outlived a tick */

  /* the current call */
  const char *phase;        /* "decode", "keys", ... for messages */
  char pos_chunk[LUA_IDSIZE];  /* position the message handler found */
  int pos_line;

  /* registry refs of the pipeline's functions */
  int ref_decode, ref_key, ref_value, ref_on_err;
  int line_decode, line_key, line_value;   /* where each is defined */

  const mm_json_doc_t *doc;
  int doc_failed;           /* mm_conv_set_doc raised: records cannot run */

  /* problems found while loading (owned strings) */
  char **problems;
  size_t nproblems, cap_problems;
  int problems_oom;
  mm_err_t first;           /* the first problem, with its code and line */
};

/* ------------------------------------------------------------------ */
/* 1. The allocator                                                    */
/* ------------------------------------------------------------------ */

static mm_script_t *script_of(lua_State *L) {
  return *(mm_script_t **)lua_getextraspace(L);
}

/* Notes that a refusal stood: Lua raised a memory error. */
static void ceiling_hit(mm_script_t *s) {
  if (!s->ceiling_hit) s->hit_phase = s->phase;
  s->ceiling_hit = 1;
}

/* Where the hook collects next: halfway between the heap now and the
 * ceiling. */
static void set_gc_mark(mm_script_t *s) {
  s->gc_mark = s->used < s->limit ? s->used + (s->limit - s->used) / 2 : s->limit;
}

static void budget_hook(lua_State *L, lua_Debug *ar);

/* 1 when calls need budget_hook at all: a budget, a heap ceiling (its GC
 * mark) or a deadline to check. */
static int needs_hook(const mm_script_t *s) { return s->budget > 0 || s->limit || s->stop_at; }

/* Sets the main thread's hook while the watchdog's handler keeps off it
 * (a tick landing inside lua_sethook could mix the two settings). */
static void set_main_hook(mm_script_t *s, lua_Hook f, int count) {
  s->in_hook = 1;
  if (f)
    lua_sethook(s->L, f, LUA_MASKCOUNT, count);
  else
    lua_sethook(s->L, NULL, 0, 0);
  s->in_hook = 0;
}

/* Allocation-failure injection for the Check suite (the idea of ltests.c's
 * failnext). 0: off. Positive: counts growth requests down, and from the
 * one that reaches zero on (it becomes -1) every growth request fails,
 * until the test sets it again. Only the tests declare it. */
long mm_script_fail_countdown;

/* Size class of a pool block of n bytes (1 <= n <= POOL_MAX). */
static inline unsigned pool_class(size_t n) { return (unsigned)((n - 1) / POOL_GRAIN); }

/* A block of class c from pool p, or NULL when no memory is left. */
static void *pool_get(pool_t *p, unsigned c) {
  void *b = p->free[c];
  if (b) {
    p->free[c] = *(void **)b;
    return b;
  }
  size_t sz = ((size_t)c + 1) * POOL_GRAIN;
  if ((size_t)(p->bump_end - p->bump) < sz) {
    pool_chunk_t *ch = malloc(POOL_CHUNK);
    if (!ch) return NULL;
    ch->next = p->chunks;
    p->chunks = ch;
    /* the rest of the old chunk is dropped: at most POOL_MAX bytes */
    p->bump = (char *)ch + POOL_GRAIN;
    p->bump_end = (char *)ch + POOL_CHUNK;
  }
  b = p->bump;
  p->bump += sz;
  return b;
}

static inline void pool_put(pool_t *p, void *b, size_t n) {
  unsigned c = pool_class(n);
  *(void **)b = p->free[c];
  p->free[c] = b;
}

/* Returns every chunk to malloc (the Lua state is closed). */
static void pool_release(pool_t *p) {
  while (p->chunks) {
    pool_chunk_t *next = p->chunks->next;
    free(p->chunks);
    p->chunks = next;
  }
  memset(p, 0, sizeof *p);
}

/*
 * The raw block operations behind l_alloc: ptr (Lua's size old, 0 for a
 * new block) becomes a block of nsize > 0 bytes, or NULL when memory is
 * out (ptr then stays valid). With the pool on, a block of at most
 * POOL_MAX bytes is a pool block, anything larger a malloc block; a block
 * that stays in its size class stays where it is. The pool is off under
 * AddressSanitizer, which then sees every block (a C use of a collected
 * Lua string is caught there).
 */
static void *block_resize(pool_t *p, void *ptr, size_t old, size_t nsize) {
  if (!p->on) return realloc(ptr, nsize);
  int small_old = ptr && old <= POOL_MAX, small_new = nsize <= POOL_MAX;
  if (small_old && small_new && pool_class(old) == pool_class(nsize)) return ptr;
  if (!small_old && !small_new) return realloc(ptr, nsize);
  void *nb = small_new ? pool_get(p, pool_class(nsize)) : malloc(nsize);
  if (!nb) return NULL;
  if (ptr) {
    memcpy(nb, ptr, old < nsize ? old : nsize);
    if (small_old)
      pool_put(p, ptr, old);
    else
      free(ptr);
  }
  return nb;
}

/* Frees block ptr of Lua's size old. */
static void block_free(pool_t *p, void *ptr, size_t old) {
  if (!ptr) return;
  if (p->on && old <= POOL_MAX)
    pool_put(p, ptr, old);
  else
    free(ptr);
}

/*
 * Heap accounting and the ceiling. Frees and shrinks always succeed (a
 * failed shrink keeps the larger block; should that be a malloc block
 * Lua now sizes as a pool block, it is recycled through the pool and only
 * returned to malloc with the process - true out-of-memory only). A
 * growth past the
 * ceiling is refused. Lua answers a refusal with an emergency full GC and
 * the identical request; if that retry succeeds the refusal did no harm,
 * otherwise (refused again, or no retry came) Lua raised a memory error,
 * and ceiling_hit records it so that a script's own pcall cannot hide it.
 * Every free is reported to conv (mm_conv_freed: its origin map forgets a
 * collected table), which spares conv wrapping this allocator.
 */
static void *l_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  mm_script_t *s = ud;
  size_t old = ptr ? osize : 0;   /* for new objects osize is a type tag */
  if (nsize == 0) {
    mm_conv_freed(&s->frees, ptr, old);
    block_free(&s->pool, ptr, old);
    s->used -= old;
    return NULL;
  }
  if (nsize <= old) {
    void *p = block_resize(&s->pool, ptr, old, nsize);
    if (!p) return ptr; /* keeps the larger block; see the shrink note */
    s->used -= old - nsize;
    return p;
  }
  if (mm_script_fail_countdown > 0 && --mm_script_fail_countdown == 0)
    mm_script_fail_countdown = -1;
  if (mm_script_fail_countdown < 0) return NULL;
  int retry = s->pending && s->pend_ptr == ptr && s->pend_osize == osize &&
              s->pend_nsize == nsize;
  if (s->pending && !retry) ceiling_hit(s);  /* that one was final */
  s->pending = 0;
  if (s->limit && (s->used > s->limit || nsize - old > s->limit - s->used)) {
    s->refusals++;
    if (retry) {
      ceiling_hit(s);
    } else {
      s->pending = 1;
      s->pend_ptr = ptr;
      s->pend_osize = osize;
      s->pend_nsize = nsize;
    }
    return NULL;
  }
  void *p = block_resize(&s->pool, ptr, old, nsize);
  if (!p) return NULL;
  s->used += nsize - old;
  if (s->used > s->peak) s->peak = s->used;
  if (s->in_call && s->limit && s->used > s->gc_mark && !s->gc_armed) {
    /* watched call without a counting hook: the hook's GC (see
     * budget_hook) must still run, on the next instruction */
    s->gc_armed = 1;
    set_main_hook(s, budget_hook, 1);
  }
  return p;
}

/* Logs instead of aborting silently; every call into Lua here is
 * protected, so reaching this is a bug. */
static int l_panic(lua_State *L) {
  const char *m = lua_tostring(L, -1);
  mm_log(MM_LOG_FATAL, NULL, "unprotected Lua error: %s", m ? m : "?");
  return 0;
}

/* ------------------------------------------------------------------ */
/* 2. Budget hook, message handler, call bracketing                    */
/* ------------------------------------------------------------------ */

/*
 * Count hook, every hook_every instructions.
 *
 * Heap: once the heap passes gc_mark (halfway to the ceiling) it runs a
 * full GC. Lua's own collector lets garbage grow to twice the live data
 * before collecting, and the auxiliary library's buffers (string.rep,
 * table.concat, string.format...) allocate without Lua's emergency GC, so
 * without this a script whose live data is past half the ceiling would
 * see memory errors caused by its garbage.
 *
 * Budget: counts toward the budget of the current call; once it is spent,
 * re-arms itself on this thread and the main thread to fire on every
 * instruction and raises each time, so no pcall inside the script can
 * absorb the abort: the first instruction after the pcall raises again,
 * until control is back in C.
 *
 * Under the watchdog (below) the main thread has this hook only once a
 * call has outlived a tick (counting), or for one instruction when l_alloc
 * passed gc_mark; after such a one-shot it takes itself off again. Other
 * threads (coroutines) always count. [-0, +1, v]
 */
static void budget_hook(lua_State *L, lua_Debug *ar) {
  mm_script_t *s = script_of(L);
  int every = lua_gethookcount(L);
  int main = L == s->L;
  if (s->limit && s->used > s->gc_mark && !s->ceiling_hit) {
    lua_gc(L, LUA_GCCOLLECT);
    set_gc_mark(s);
  }
  s->gc_armed = 0;
  if (s->stop_at && !s->deadline_hit && !s->budget_hit && mm_now_ms() >= s->stop_at) {
    s->deadline_hit = 1;
    mm_log(MM_LOG_WARN, NULL, "%s: deadline margin reached in %s: record stopped", s->chunk,
           s->phase ? s->phase : "script");
  }
  if (s->deadline_hit) goto abort;
  if (s->budget > 0 && !s->budget_hit && (!s->watching || !main || s->counting)) {
    s->counted += every;
    if (s->counted >= s->budget) {
      s->budget_hit = 1;
      mm_log(MM_LOG_WARN, NULL, "%s: Lua instruction budget of %ld exceeded in %s",
             s->chunk, s->budget, s->phase ? s->phase : "script");
    }
  }
  if (s->budget_hit) goto abort;
  if (main && s->watching && !s->counting) {
    set_main_hook(s, NULL, 0); /* a one-shot for the GC: done */
  } else if (every != s->hook_every) {
    /* back to the normal period: after a one-shot, or a coroutine re-armed
     * by an earlier abort */
    if (main)
      set_main_hook(s, budget_hook, s->hook_every);
    else
      lua_sethook(L, budget_hook, LUA_MASKCOUNT, s->hook_every);
  }
  return;
abort:
  if (every != 1) lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
  if (!main) set_main_hook(s, budget_hook, 1);
  if (s->deadline_hit) {
    lua_pushliteral(L, "deadline margin reached");
    lua_error(L);
  }
  if (lua_getinfo(L, "Sl", ar) && ar->currentline > 0)
    lua_pushfstring(L, "%s:%d: instruction budget of %I exceeded", ar->short_src,
                    ar->currentline, (lua_Integer)s->budget);
  else
    lua_pushfstring(L, "instruction budget of %I exceeded", (lua_Integer)s->budget);
  lua_error(L);
}

/*
 * The watchdog. Counting every instruction costs a decoder 15-20% of its
 * time (Lua 5.4 runs luaG_traceexec on every VM instruction once a count
 * hook is set, whatever the count), while nearly every call ends after a
 * few hundred instructions. So between mm_script_watch_begin and _end
 * (the pipeline's decode phase) the main thread runs without a hook, and
 * a per-thread CPU-time timer (watch.h) ticks every WATCH_PERIOD_US of
 * CPU: a tick that finds the same call running as the tick before sets
 * the counting hook, and the budget is counted from there. So no call
 * under its budget is stopped, and a call over it is stopped at the
 * latest after its budget plus about two ticks of CPU (a few ms; the
 * kernel's CPU timers have the scheduler tick's granularity). The
 * deadline check and the heap's GC ride on the same hook (l_alloc arms it
 * for one instruction when the heap passes gc_mark). Budgets under
 * WATCH_MIN_BUDGET, where those ms would matter, are counted exactly from
 * the first instruction, as outside the watched phase.
 *
 * Runs in a signal handler: flags and lua_sethook only.
 */
static void watch_tick(void *ud) {
  mm_script_t *s = ud;
  if (!s->in_call || s->in_hook || s->counting || s->budget_hit || s->deadline_hit) return;
  if (s->call_seq != s->tick_seq) {
    s->tick_seq = s->call_seq; /* a new call since the last tick */
    return;
  }
  s->counting = 1;
  lua_sethook(s->L, budget_hook, LUA_MASKCOUNT, s->hook_every);
}

int mm_script_watch_begin(mm_script_t *s) {
  if (!s->L || !s->watch_ok || s->watching) return 0;
  mm_err_t e;
  if (mm_watch_start(&s->watch, WATCH_PERIOD_US, watch_tick, s, &e) != 0) {
    mm_log(MM_LOG_WARN, NULL, "%s: %s; the instruction budget is counted exactly", s->chunk,
           e.msg);
    s->watch_ok = 0; /* do not try again every invocation */
    return 0;
  }
  s->watching = 1;
  s->in_call = 0;
  set_main_hook(s, NULL, 0);
  return 1;
}

void mm_script_watch_end(mm_script_t *s) {
  if (!s->watching) return;
  s->in_call = 0;
  mm_watch_stop(&s->watch);
  s->watching = 0;
  s->counting = 0;
  if (needs_hook(s)) set_main_hook(s, budget_hook, s->hook_every);
}

long mm_script_watched_calls(const mm_script_t *s) { return s->watched_calls; }

/*
 * Message handler of every call into the script: records the innermost
 * Lua position (for err->chunk/line when the message has none) and appends
 * a traceback. Calls __tostring only while the budget is intact (it would
 * raise again otherwise). [-0, +1, m]
 */
static int msgh(lua_State *L) {
  mm_script_t *s = script_of(L);
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (!s->budget_hit && luaL_callmeta(L, 1, "__tostring") &&
        lua_type(L, -1) == LUA_TSTRING)
      msg = lua_tostring(L, -1);
    else
      msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  lua_Debug ar;
  for (int level = 1; lua_getstack(L, level, &ar); level++) {
    if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
      snprintf(s->pos_chunk, sizeof s->pos_chunk, "%s", ar.short_src);
      s->pos_line = ar.currentline;
      break;
    }
  }
  luaL_traceback(L, L, msg, 1);
  /* the last frame is this file's C entry (pl_run): noise to a reader */
  size_t n;
  const char *tb = lua_tolstring(L, -1, &n);
  static const char tail[] = "\n\t[C]: in ?";
  if (n >= sizeof tail - 1 && memcmp(tb + n - (sizeof tail - 1), tail, sizeof tail - 1) == 0)
    lua_pushlstring(L, tb, n - (sizeof tail - 1));
  return 1;
}

/* Starts a call into the script: full budget, clean flags. A watched
 * call starts without a hook (end_call took it off). */
static void begin_call(mm_script_t *s, const char *phase) {
  s->counted = 0;
  s->budget_hit = 0;
  s->deadline_hit = 0;
  s->ceiling_hit = 0;
  s->refusals = 0;
  s->pending = 0;
  s->phase = phase;
  s->hit_phase = NULL;
  s->pos_chunk[0] = '\0';
  s->pos_line = 0;
  if (s->watching) {
    s->counting = 0;
    s->gc_armed = 0;
    s->call_seq++;
    s->in_call = 1; /* last: the tick looks at nothing before it */
  }
}

/*
 * Ends a call: settles a refusal that was never retried, puts the hook
 * back to its normal period, and after a ceiling abort runs a full GC so
 * the next call starts with the heap the script really holds.
 */
static void end_call(mm_script_t *s) {
  if (s->pending) ceiling_hit(s);
  s->pending = 0;
  if (s->watching) {
    s->in_call = 0; /* first: no tick touches the hook after this */
    if (s->counting) s->watched_calls++;
    s->counting = 0;
    if (lua_gethook(s->L)) set_main_hook(s, NULL, 0);
  } else if (needs_hook(s)) {
    lua_sethook(s->L, budget_hook, LUA_MASKCOUNT, s->hook_every);
  }
  if (s->ceiling_hit) {
    size_t before = s->used;
    lua_gc(s->L, LUA_GCCOLLECT);
    mm_log(MM_LOG_WARN, NULL,
           "%s: Lua heap ceiling of %zu bytes hit in %s; full GC: %zu -> %zu bytes",
           s->chunk, s->limit, s->hit_phase ? s->hit_phase : "script", before, s->used);
  } else if (s->refusals) {
    mm_log(MM_LOG_DEBUG, NULL,
           "%s: %ld allocations past the heap ceiling recovered by emergency collections "
           "(in %s)",
           s->chunk, s->refusals, s->phase ? s->phase : "script");
  }
  set_gc_mark(s);
}

/* Parses "chunk:LINE: ..." at the start of msg into e->chunk/e->line. */
static int parse_position(const char *msg, mm_err_t *e) {
  const char *colon = strchr(msg, ':');
  if (!colon || colon == msg || (size_t)(colon - msg) >= sizeof e->chunk) return 0;
  for (const char *p = msg; p < colon; p++)
    if (*p == '\n' || *p == ' ' || *p == '\t') return 0;
  const char *d = colon + 1;
  long line = 0;
  if (*d < '0' || *d > '9') return 0;
  while (*d >= '0' && *d <= '9' && line < 100000000) line = line * 10 + (*d++ - '0');
  if (*d != ':') return 0;
  memcpy(e->chunk, msg, (size_t)(colon - msg));
  e->chunk[colon - msg] = '\0';
  e->line = (int)line;
  return 1;
}

/* Heap ceiling in words: "64 MB" when a whole number of MB. */
static void format_limit(size_t limit, char *buf, size_t n) {
  if (limit % (1024 * 1024) == 0)
    snprintf(buf, n, "%zu MB", limit / (1024 * 1024));
  else
    snprintf(buf, n, "%zu bytes", limit);
}

/*
 * Turns the end of a failed (or ceiling-tainted) call into err: the limit
 * that was hit, else the message the handler built (error text plus
 * traceback). status is lua_pcall's; the message is at the top of the
 * stack when status != LUA_OK. Returns the code written.
 */
static int call_error(mm_script_t *s, int status, mm_err_t *err) {
  const char *msg = NULL;
  if (status != LUA_OK && lua_type(s->L, -1) == LUA_TSTRING) msg = lua_tostring(s->L, -1);
  mm_err_clear(err);
  /* a memory error after a refusal is the ceiling's doing, however the
   * refusal was classified */
  if (!s->ceiling_hit && s->refusals > 0 &&
      (status == LUA_ERRMEM || (msg && strstr(msg, "not enough memory")))) {
    s->ceiling_hit = 1;
    if (!s->hit_phase) s->hit_phase = s->phase;
  }
  if (s->ceiling_hit) {
    char lim[64];
    format_limit(s->limit, lim, sizeof lim);
    mm_err_set(err, MM_ELIMIT, "%s: Lua heap ceiling of %s exceeded (in %s)", s->chunk,
               lim, s->hit_phase ? s->hit_phase : "script");
    snprintf(err->chunk, sizeof err->chunk, "%s", s->chunk);
    return MM_ELIMIT;
  }
  int code = MM_ELUA;
  if (s->budget_hit) {
    code = MM_ELIMIT;
    if (!msg || !strstr(msg, "instruction budget of")) {
      mm_err_set(err, code, "%s: instruction budget of %ld exceeded (in %s)", s->chunk,
                 s->budget, s->phase ? s->phase : "script");
      snprintf(err->chunk, sizeof err->chunk, "%s", s->chunk);
      return code;
    }
  } else if (status == LUA_ERRMEM) {
    code = MM_ENOMEM;
  }
  mm_err_set(err, code, "%s", msg ? msg : "(error object is not a string)");
  if (!parse_position(err->msg, err) && s->pos_line > 0) {
    snprintf(err->chunk, sizeof err->chunk, "%s", s->pos_chunk);
    err->line = s->pos_line;
  }
  return code;
}

/* ------------------------------------------------------------------ */
/* 3. The sandbox                                                      */
/* ------------------------------------------------------------------ */

/* print(...): one INFO log line, arguments tab-separated. [-0, +0, e] */
static int l_print(lua_State *L) {
  int n = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; i++) {
    if (i > 1) luaL_addchar(&b, '\t');
    luaL_tolstring(L, i, NULL);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  mm_log(MM_LOG_INFO, NULL, "%s", lua_tostring(L, -1));
  return 0;
}

/* Writes the string/number arguments from `first` on to stderr.
 * [-0, +0, v] */
static void write_args(lua_State *L, int first) {
  int n = lua_gettop(L);
  for (int i = first; i <= n; i++) {
    size_t len;
    const char *p = luaL_checklstring(L, i, &len);
    fwrite(p, 1, len, stderr);
  }
  fflush(stderr);
}

/* io.write(...): to stderr. Returns io. [-0, +1, e] */
static int l_io_write(lua_State *L) {
  write_args(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  return 1;
}

/* io.stderr:write(...): returns the handle for chaining. [-0, +1, e] */
static int l_stderr_write(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  write_args(L, 2);
  lua_settop(L, 1);
  return 1;
}

/* load(chunk [, name [, mode [, env]]]) with the mode forced to "t": the
 * original load is upvalue 1. Binary chunks are refused because a crafted
 * one can break the VM. [-0, +2, e] */
static int l_load(lua_State *L) {
  int n = lua_gettop(L);
  lua_settop(L, n < 3 ? 3 : (n > 4 ? 4 : n));      /* keep env's presence */
  lua_pushliteral(L, "t");
  lua_replace(L, 3);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

/* collectgarbage with the options that cannot change how the collector
 * runs for later records. The original is upvalue 1. [-0, +1, e] */
static int l_collectgarbage(lua_State *L) {
  static const char *const ok[] = {"collect", "count", "step", "isrunning", NULL};
  const char *opt = luaL_optstring(L, 1, "collect");
  int allowed = 0;
  for (int i = 0; ok[i]; i++) allowed |= strcmp(opt, ok[i]) == 0;
  if (!allowed)
    return luaL_error(L, "collectgarbage('%s') is not allowed in the sandbox", opt);
  int n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, n, LUA_MULTRET);
  return lua_gettop(L);
}

/* type(v) as in the base library, but pushing the type names from its
 * upvalues: the base library's lua_pushstring looks each name up in Lua's
 * string cache (a strcmp) on every call, and decoders that walk a record
 * call type() on every value. Upvalue t + 1 holds the name of type t.
 * [-0, +1, v] */
static int l_type(lua_State *L) {
  int t = lua_type(L, 1);
  luaL_argcheck(L, t != LUA_TNONE, 1, "value expected");
  lua_pushvalue(L, lua_upvalueindex(t + 1));
  return 1;
}

/* setmetatable refusing a metatable with __gc: finalizers run with hooks
 * off, so the instruction budget could not stop one that loops. The
 * setmetatable it wraps (conv's, which fills lazy tables first) is upvalue
 * 1. [-0, +1, e] */
static int l_setmetatable(lua_State *L) {
  if (lua_type(L, 2) == LUA_TTABLE) {
    lua_pushliteral(L, "__gc");
    if (lua_rawget(L, 2) != LUA_TNIL)
      return luaL_error(L, "setmetatable: __gc metamethods are not allowed in the sandbox "
                           "(finalizers run outside the instruction budget)");
    lua_pop(L, 1);
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

/* coroutine.create and coroutine.wrap: a new thread inherits its
 * creator's hook, and under the watchdog the main thread usually has
 * none, so the creation runs with the counting hook set (coroutines are
 * always counted; see budget_hook). The original is upvalue 1.
 * [-0, +1, e] */
static int l_co_new(lua_State *L) {
  mm_script_t *s = script_of(L);
  int lend = L == s->L && !lua_gethook(L) && needs_hook(s);
  if (lend) set_main_hook(s, budget_hook, s->hook_every);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  if (lend) set_main_hook(s, NULL, 0);
  return lua_gettop(L);
}

/* os.getenv without the AWS credentials. The original is upvalue 1.
 * [-0, +1, e] */
static int l_getenv(lua_State *L) {
  static const char *const hidden[] = {"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                                       "AWS_ACCESS_KEY_ID", NULL};
  const char *name = luaL_checkstring(L, 1);
  for (int i = 0; hidden[i]; i++) {
    if (strcmp(name, hidden[i]) == 0) {
      lua_pushnil(L);
      return 1;
    }
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  return 1;
}

/* cjson's encode after materialising lazy record tables, so encoding any
 * part of a record gives its full content. Upvalue 1: the real encode.
 * [-0, +1, e] */
static int l_cjson_encode(lua_State *L) {
  if (lua_gettop(L) >= 1) mm_conv_materialize(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

static void wrap_cjson(lua_State *L, int t);

/* cjson.new() whose instances get the wrapped encode too. Upvalue 1: the
 * real new. [-0, +1, e] */
static int l_cjson_new(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_call(L, 0, 1);
  wrap_cjson(L, lua_gettop(L));
  return 1;
}

/* Replaces the cjson module table at t with a copy whose encode (and new)
 * are wrapped. [-1, +1, e] */
static void wrap_cjson(lua_State *L, int t) {
  t = lua_absindex(L, t);
  luaL_checktype(L, t, LUA_TTABLE);
  lua_newtable(L);                                   /* t w */
  int w = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, t)) {                           /* t w k v */
    lua_pushvalue(L, -2);                            /* t w k v k */
    lua_insert(L, -2);                               /* t w k k v */
    lua_rawset(L, w);                                /* t w k */
  }
  if (lua_getfield(L, t, "encode") == LUA_TFUNCTION) {  /* t w enc */
    lua_pushcclosure(L, l_cjson_encode, 1);
    lua_setfield(L, w, "encode");
  } else {
    lua_pop(L, 1);
  }
  if (lua_getfield(L, t, "new") == LUA_TFUNCTION) {  /* t w new */
    lua_pushcclosure(L, l_cjson_new, 1);
    lua_setfield(L, w, "new");
  } else {
    lua_pop(L, 1);
  }
  lua_replace(L, t);                                 /* w */
}

/* package.preload["cjson"] and ["cjson.safe"]. [-0, +1, e] */
static int open_cjson(lua_State *L) {
  luaopen_cjson(L);
  wrap_cjson(L, -1);
  return 1;
}
static int open_cjson_safe(lua_State *L) {
  luaopen_cjson_safe(L);
  wrap_cjson(L, -1);
  return 1;
}

/* 1 when a module name is safe to turn into a path: [A-Za-z0-9_-] words
 * separated by single dots. */
static int module_name_ok(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > MAX_MODULE || name[0] == '.' || name[n - 1] == '.') return 0;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    int word = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-';
    if (!word && !(c == '.' && name[i + 1] != '.')) return 0;
  }
  return 1;
}

/*
 * The only file searcher: NAME.lua, then NAME/init.lua, under the
 * script's directory and then the layer's lua/ directory, compiled as text.
 * Returns the loader and the file name, or a "no file" explanation.
 * [-1, +1|+2, e]
 */
static int l_searcher(lua_State *L) {
  mm_script_t *s = script_of(L);
  const char *name = luaL_checkstring(L, 1);
  if (!module_name_ok(name)) {
    lua_pushfstring(L, "module name '%s' is not allowed in the sandbox", name);
    return 1;
  }
  char rel[MAX_MODULE + 1];
  snprintf(rel, sizeof rel, "%s", name);
  for (char *p = rel; *p; p++)
    if (*p == '.') *p = '/';
  const char *dirs[2] = {s->dir, s->lua_dir};
  static const char *const pats[2] = {"%s/%s.lua", "%s/%s/init.lua"};
  luaL_Buffer miss;
  luaL_buffinit(L, &miss);
  int first = 1;
  for (int d = 0; d < 2; d++) {
    if (!dirs[d]) continue;
    for (int p = 0; p < 2; p++) {
      lua_pushfstring(L, pats[p], dirs[d], rel);      /* ... path */
      const char *path = lua_tostring(L, -1);
      FILE *f = fopen(path, "r");
      if (f) {
        fclose(f);
        if (luaL_loadfilex(L, path, "t") != LUA_OK)
          return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s", name,
                            path, lua_tostring(L, -1));
        lua_insert(L, -2);                            /* ... loader path */
        return 2;
      }
      lua_pushfstring(L, first ? "no file '%s'" : "\n\tno file '%s'", path);
      lua_remove(L, -2);                              /* ... note */
      luaL_addvalue(&miss);
      first = 0;
    }
  }
  luaL_pushresult(&miss);
  return 1;
}

/* Sets package.loaded[name] = the value at the top, and the global. [-1, +0, e] */
static void set_module(lua_State *L, const char *name) {
  lua_pushvalue(L, -1);
  lua_setglobal(L, name);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_insert(L, -2);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
}

/* Copies the listed fields of the table at the top into a new table that
 * replaces it. [-1, +1, e] */
static void keep_fields(lua_State *L, const char *const *names) {
  int t = lua_gettop(L);
  lua_newtable(L);
  for (int i = 0; names[i]; i++) {
    lua_getfield(L, t, names[i]);
    lua_setfield(L, -2, names[i]);
  }
  lua_replace(L, t);
}

/*
 * Opens the sandboxed libraries into a fresh state. Runs under lua_pcall
 * (an allocation failure is an init error). [-0, +0, e]
 */
static int open_sandbox(lua_State *L) {
  mm_script_t *s = script_of(L);
  static const luaL_Reg libs[] = {
      {LUA_GNAME, luaopen_base},          {LUA_LOADLIBNAME, luaopen_package},
      {LUA_COLIBNAME, luaopen_coroutine}, {LUA_TABLIBNAME, luaopen_table},
      {LUA_STRLIBNAME, luaopen_string},   {LUA_MATHLIBNAME, luaopen_math},
      {LUA_UTF8LIBNAME, luaopen_utf8},    {NULL, NULL}};
  for (const luaL_Reg *l = libs; l->func; l++) {
    luaL_requiref(L, l->name, l->func, 1);
    lua_pop(L, 1);
  }

  /* base */
  lua_pushnil(L);
  lua_setglobal(L, "dofile");
  lua_pushnil(L);
  lua_setglobal(L, "loadfile");
  lua_getglobal(L, "load");
  lua_pushcclosure(L, l_load, 1);
  lua_setglobal(L, "load");
  lua_getglobal(L, "collectgarbage");
  lua_pushcclosure(L, l_collectgarbage, 1);
  lua_setglobal(L, "collectgarbage");
  lua_pushcfunction(L, l_print);
  lua_setglobal(L, "print");
  for (int t = LUA_TNIL; t < LUA_NUMTYPES; t++) lua_pushstring(L, lua_typename(L, t));
  lua_pushcclosure(L, l_type, LUA_NUMTYPES);
  lua_setglobal(L, "type");

  /* coroutine: new threads get the budget hook (l_co_new) */
  lua_getglobal(L, LUA_COLIBNAME);
  static const char *const co_new[] = {"create", "wrap", NULL};
  for (int i = 0; co_new[i]; i++) {
    lua_getfield(L, -1, co_new[i]);
    lua_pushcclosure(L, l_co_new, 1);
    lua_setfield(L, -2, co_new[i]);
  }
  lua_pop(L, 1);

  /* os: time functions and getenv only */
  static const char *const os_keep[] = {"clock", "time", "date", "difftime", NULL};
  luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 0);  /* os */
  lua_getfield(L, -1, "getenv");                   /* os getenv */
  lua_pushcclosure(L, l_getenv, 1);                /* os getenv' */
  lua_insert(L, -2);                               /* getenv' os */
  keep_fields(L, os_keep);                         /* getenv' os' */
  lua_insert(L, -2);                               /* os' getenv' */
  lua_setfield(L, -2, "getenv");                   /* os' */
  set_module(L, LUA_OSLIBNAME);

  /* io: stderr writes only */
  lua_newtable(L);                                 /* io */
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, l_io_write, 1);
  lua_setfield(L, -2, "write");
  lua_newtable(L);                                 /* io stderr */
  lua_pushcfunction(L, l_stderr_write);
  lua_setfield(L, -2, "write");
  lua_setfield(L, -2, "stderr");                   /* io */
  set_module(L, LUA_IOLIBNAME);

  /* package: preload + our searcher, no C loading */
  lua_getglobal(L, LUA_LOADLIBNAME);               /* pkg */
  int pkg = lua_gettop(L);
  lua_pushnil(L);
  lua_setfield(L, pkg, "loadlib");
  lua_pushnil(L);
  lua_setfield(L, pkg, "searchpath");
  lua_pushliteral(L, "");
  lua_setfield(L, pkg, "cpath");
  if (s->lua_dir)
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s/?.lua;%s/?/init.lua", s->dir, s->dir,
                    s->lua_dir, s->lua_dir);
  else
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua", s->dir, s->dir);
  lua_setfield(L, pkg, "path");
  lua_getfield(L, pkg, "searchers");               /* pkg old */
  lua_createtable(L, 2, 0);                        /* pkg old new */
  lua_rawgeti(L, -2, 1);                           /* the preload searcher */
  lua_rawseti(L, -2, 1);
  lua_pushcfunction(L, l_searcher);
  lua_rawseti(L, -2, 2);
  lua_setfield(L, pkg, "searchers");               /* pkg old */
  lua_pop(L, 1);                                   /* pkg */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);  /* pkg preload */
  lua_pushcfunction(L, open_cjson);
  lua_setfield(L, -2, "cjson");
  lua_pushcfunction(L, open_cjson_safe);
  lua_setfield(L, -2, "cjson.safe");
  lua_pushcfunction(L, mm_luaopen_murmur_core);
  lua_setfield(L, -2, "murmur.core");
  lua_pop(L, 2);

  mm_conv_open(L, &s->frees);  /* after base: it wraps the global setmetatable */
  lua_getglobal(L, "setmetatable");
  lua_pushcclosure(L, l_setmetatable, 1);
  lua_setglobal(L, "setmetatable");
  return 0;
}

/* ------------------------------------------------------------------ */
/* 4. Loading and validation                                           */
/* ------------------------------------------------------------------ */

/* Appends a copy of text to the problem list (a failed allocation is
 * remembered in problems_oom and reported as such). */
static void push_problem(mm_script_t *s, const char *text) {
  if (s->nproblems == s->cap_problems) {
    size_t cap = s->cap_problems ? s->cap_problems * 2 : 8;
    char **np = realloc(s->problems, cap * sizeof *np);
    if (!np) {
      s->problems_oom = 1;
      return;
    }
    s->problems = np;
    s->cap_problems = cap;
  }
  char *copy = strdup(text);
  if (!copy) {
    s->problems_oom = 1;
    return;
  }
  s->problems[s->nproblems++] = copy;
}

/* Records one load problem "chunk[:line]: message" (the first also in
 * s->first with its code). */
static void add_problem(mm_script_t *s, int code, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void add_problem(mm_script_t *s, int code, int line, const char *fmt, ...) {
  char body[MM_ERR_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(body, sizeof body, fmt, ap);
  va_end(ap);
  char text[MM_ERR_MAX + 160];
  if (line > 0)
    snprintf(text, sizeof text, "%s:%d: %s", s->chunk, line, body);
  else
    snprintf(text, sizeof text, "%s: %s", s->chunk, body);
  if (s->nproblems == 0) {
    mm_err_set(&s->first, code, "%s", text);
    snprintf(s->first.chunk, sizeof s->first.chunk, "%s", s->chunk);
    s->first.line = line;
  }
  push_problem(s, text);
}

/* Records a problem whose text is already complete (a Lua message with
 * its own "chunk:line:" prefix). */
static void add_raw_problem(mm_script_t *s, const mm_err_t *e) {
  if (s->nproblems == 0) s->first = *e;
  push_problem(s, e->msg);
}

/* Pushes t[name] (raw) and returns its type. [-0, +1, m] */
static int raw_field(lua_State *L, int t, const char *name) {
  lua_pushstring(L, name);
  return lua_rawget(L, t);
}

/* Line where the function at idx is defined (0 for C functions).
 * [-0, +0, m] */
static int def_line(lua_State *L, int idx) {
  lua_Debug ar;
  lua_pushvalue(L, idx);
  if (!lua_getinfo(L, ">S", &ar)) return 0;
  return ar.linedefined > 0 ? ar.linedefined : 0;
}

/* Optional function field: problem when present and not a function.
 * Returns a registry ref (LUA_NOREF when absent). [-0, +0, e] */
static int function_field(lua_State *L, mm_script_t *s, int t, const char *name,
                          int *line) {
  int ty = raw_field(L, t, name);
  if (ty == LUA_TNIL) {
    lua_pop(L, 1);
    return LUA_NOREF;
  }
  if (ty != LUA_TFUNCTION) {
    add_problem(s, MM_EINVAL, 0, "pipeline field '%s' must be a function, got %s", name,
                lua_typename(L, ty));
    lua_pop(L, 1);
    return LUA_NOREF;
  }
  if (line) *line = def_line(L, -1);
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* 1 when name matches [A-Za-z0-9_.-]{1,100}. */
static int pipeline_name_ok(const char *p, size_t n) {
  if (n == 0 || n > MAX_NAME) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = p[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
          c == '_' || c == '.' || c == '-'))
      return 0;
  }
  return 1;
}

/* window.<name> as seconds into *out: 0 when valid, 1 when absent, -1
 * after recording a problem. [-0, +0, m] */
static int window_duration(lua_State *L, mm_script_t *s, int w, const char *name,
                           int64_t *out) {
  int ty = raw_field(L, w, name);
  int rc = 0;
  if (ty == LUA_TNIL) {
    rc = 1;  /* absent */
  } else if (ty != LUA_TSTRING) {
    add_problem(s, MM_EINVAL, 0,
                "pipeline field 'window.%s' must be a duration string like \"1h\", got %s",
                name, lua_typename(L, ty));
    rc = -1;
  } else {
    mm_err_t e;
    mm_err_clear(&e);
    const char *v = lua_tostring(L, -1);
    if (mm_config_duration(v, out, &e) != 0) {
      add_problem(s, MM_EINVAL, 0, "pipeline field 'window.%s' is not a duration: %s",
                  name, e.msg);
      rc = -1;
    }
  }
  lua_pop(L, 1);
  return rc;
}

/*
 * Validates the pipeline table (argument 1) into s->def and the function
 * refs, recording every problem. Runs under lua_pcall. [-0, +0, e]
 */
static int validate(lua_State *L) {
  mm_script_t *s = script_of(L);
  const int t = 1;
  mm_def_t *d = &s->def;
  int ty;

  /* unknown fields: warnings */
  static const char *const known[] = {"name", "aggregate", "window", "decode", "key",
                                      "keys", "value", "on_decode_error", NULL};
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) {
      mm_log(MM_LOG_WARN, NULL, "%s: pipeline table has a %s key (ignored)", s->chunk,
             luaL_typename(L, -1));
      continue;
    }
    const char *k = lua_tostring(L, -1);
    int found = 0;
    for (int i = 0; known[i]; i++) found |= strcmp(k, known[i]) == 0;
    if (!found)
      mm_log(MM_LOG_WARN, NULL, "%s: unknown pipeline field '%s' (ignored)", s->chunk, k);
  }

  /* decode */
  ty = raw_field(L, t, "decode");
  lua_pop(L, 1);
  if (ty == LUA_TNIL)
    add_problem(s, MM_EINVAL, 0,
                "pipeline field 'decode' is missing (a function decode(rec) is required)");
  s->ref_decode = function_field(L, s, t, "decode", &s->line_decode);

  /* key / keys */
  int tk = raw_field(L, t, "key");
  int tks = raw_field(L, t, "keys");
  lua_pop(L, 2);
  if (tk == LUA_TNIL && tks == LUA_TNIL) {
    add_problem(s, MM_EINVAL, 0,
                "pipeline field 'key' or 'keys' is missing (define exactly one: "
                "key(v) returns one key, keys(v) a table of keys)");
  } else if (tk != LUA_TNIL && tks != LUA_TNIL) {
    add_problem(s, MM_EINVAL, 0,
                "pipeline fields 'key' and 'keys' are both defined (define exactly one)");
  } else {
    d->has_keys = tks != LUA_TNIL;
    s->ref_key = function_field(L, s, t, d->has_keys ? "keys" : "key", &s->line_key);
  }

  /* aggregate */
  int agg_ok = 0;
  ty = raw_field(L, t, "aggregate");
  if (ty == LUA_TNIL) {
    add_problem(s, MM_EINVAL, 0, "pipeline field 'aggregate' is missing (one of %s)",
                MM_AGG_NAMES);
  } else if (ty != LUA_TSTRING) {
    add_problem(s, MM_EINVAL, 0,
                "pipeline field 'aggregate' must be one of %s (got a %s)", MM_AGG_NAMES,
                lua_typename(L, ty));
  } else if (mm_agg_parse(lua_tostring(L, -1), &d->agg) != 0) {
    add_problem(s, MM_EINVAL, 0, "pipeline field 'aggregate' must be one of %s (got \"%s\")",
                MM_AGG_NAMES, lua_tostring(L, -1));
  } else {
    agg_ok = 1;
  }
  lua_pop(L, 1);

  /* value */
  ty = raw_field(L, t, "value");
  lua_pop(L, 1);
  if (agg_ok && mm_agg_needs_value(d->agg)) {
    if (ty == LUA_TNIL)
      add_problem(s, MM_EINVAL, 0,
                  "pipeline field 'value' is missing (aggregate '%s' needs a function "
                  "value(v))",
                  mm_agg_name(d->agg));
    s->ref_value = function_field(L, s, t, "value", &s->line_value);
    d->has_value = s->ref_value != LUA_NOREF;
  } else if (ty != LUA_TNIL) {
    if (agg_ok)
      mm_log(MM_LOG_WARN, NULL, "%s: pipeline field 'value' is ignored by aggregate '%s'",
             s->chunk, mm_agg_name(d->agg));
    s->ref_value = function_field(L, s, t, "value", &s->line_value);
    d->has_value = 0;
  }

  /* on_decode_error */
  s->ref_on_err = function_field(L, s, t, "on_decode_error", NULL);
  d->has_on_decode_error = s->ref_on_err != LUA_NOREF;

  /* name */
  ty = raw_field(L, t, "name");
  if (ty == LUA_TSTRING) {
    size_t n;
    const char *p = lua_tolstring(L, -1, &n);
    if (pipeline_name_ok(p, n))
      memcpy(d->name, p, n + 1);
    else
      add_problem(s, MM_EINVAL, 0,
                  "pipeline field 'name' must be 1 to %d characters of A-Z a-z 0-9 _ . - "
                  "(got \"%s\")",
                  MAX_NAME, p);
  } else if (ty != LUA_TNIL) {
    add_problem(s, MM_EINVAL, 0, "pipeline field 'name' must be a string, got %s",
                lua_typename(L, ty));
  }
  lua_pop(L, 1);

  /* window */
  ty = raw_field(L, t, "window");
  if (ty == LUA_TTABLE) {
    int w = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, w)) {
      lua_pop(L, 1);
      if (lua_type(L, -1) != LUA_TSTRING)
        mm_log(MM_LOG_WARN, NULL, "%s: pipeline field 'window' has a %s key (ignored)",
               s->chunk, luaL_typename(L, -1));
      else if (strcmp(lua_tostring(L, -1), "granularity") != 0 &&
               strcmp(lua_tostring(L, -1), "retention") != 0)
        mm_log(MM_LOG_WARN, NULL, "%s: unknown pipeline field 'window.%s' (ignored)",
               s->chunk, lua_tostring(L, -1));
    }
    int g = window_duration(L, s, w, "granularity", &d->granularity_s);
    int r = window_duration(L, s, w, "retention", &d->retention_s);
    if (g == 1)
      add_problem(s, MM_EINVAL, 0,
                  "pipeline field 'window.granularity' is missing (a duration such as "
                  "\"1h\")");
    if (g == 0) {
      d->windowed = 1;
      if (r == 1) d->retention_s = d->granularity_s;
    }
  } else if (ty != LUA_TNIL) {
    add_problem(s, MM_EINVAL, 0,
                "pipeline field 'window' must be a table {granularity = \"1h\", "
                "retention = \"30d\"}, got %s",
                lua_typename(L, ty));
  }
  lua_pop(L, 1);
  return 0;
}

/* Fills chunk (base name), dir (directory, "." when none) and the default
 * pipeline name (base name without .lua, limited to the name alphabet). */
static int split_path(mm_script_t *s, const char *path) {
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  snprintf(s->chunk, sizeof s->chunk, "%s", base);
  if (slash == path)
    s->dir = strdup("/");
  else if (slash)
    s->dir = strndup(path, (size_t)(slash - path));
  else
    s->dir = strdup(".");
  if (!s->dir) return MM_ENOMEM;
  size_t n = strlen(base);
  if (n > 4 && strcmp(base + n - 4, ".lua") == 0) n -= 4;
  if (n > MAX_NAME) n = MAX_NAME;
  size_t j = 0;
  for (size_t i = 0; i < n; i++) {
    char c = base[i];
    int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
             c == '_' || c == '.' || c == '-';
    s->def.name[j++] = ok ? c : '_';
  }
  if (j == 0) memcpy(s->def.name, "decode", (j = 6));
  s->def.name[j] = '\0';
  return 0;
}

/*
 * Everything mm_script_load and mm_script_check share: builds the state,
 * runs the script's top level and validates the table. Problems are
 * collected in s (s->first is the first); returns the state even then, so
 * the caller can report and destroy it. NULL only when s itself cannot be
 * allocated.
 */
static mm_script_t *script_open(const char *path, const mm_script_opts_t *opts) {
  mm_script_t *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->ref_decode = s->ref_key = s->ref_value = s->ref_on_err = LUA_NOREF;
  mm_err_clear(&s->first);
  char *src = NULL;
  size_t src_len = 0;
  mm_err_t e;
  mm_err_clear(&e);

  mm_script_opts_t o = {0, 0, NULL, 0};
  if (opts) o = *opts;
  s->budget = o.budget > 0 ? o.budget : 0;
  s->hook_every = s->budget > 0 && s->budget < HOOK_EVERY ? (int)s->budget : HOOK_EVERY;
  s->watch_ok = s->budget == 0 || s->budget >= WATCH_MIN_BUDGET;
  s->limit_cfg = o.mem_limit;
  s->max_depth = o.max_depth > 0 ? o.max_depth : MM_DEF_MAX_DEPTH;
  if (split_path(s, path) != 0 || (o.lua_dir && !(s->lua_dir = strdup(o.lua_dir)))) {
    add_problem(s, MM_ENOMEM, 0, "out of memory");
    goto done;
  }

  if (mm_buf_read_file(path, &src, &src_len, &e) != 0) {
    add_raw_problem(s, &e);
    goto done;
  }

#ifdef MM_POOL_OFF
  s->pool.on = 0;
#else
  s->pool.on = 1;
#endif
  s->L = lua_newstate(l_alloc, s);
  if (!s->L) {
    add_problem(s, MM_ENOMEM, 0, "cannot create the Lua state: out of memory");
    goto done;
  }
  lua_State *L = s->L;
  *(mm_script_t **)lua_getextraspace(L) = s;
  lua_atpanic(L, l_panic);

  lua_pushcfunction(L, open_sandbox);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    add_problem(s, MM_ENOMEM, 0, "cannot set up the Lua sandbox: %s",
                lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
    lua_pop(L, 1);
    goto done;
  }
  /* Generational collection: nearly everything a record makes dies with
   * the record, which a young collection frees cheaply. */
  lua_gc(L, LUA_GCGEN, 0, 0);
  s->limit = s->limit_cfg;  /* the ceiling starts with the script's own code */
  set_gc_mark(s);
  if (needs_hook(s)) lua_sethook(L, budget_hook, LUA_MASKCOUNT, s->hook_every);

  /* compile */
  char chunkname[sizeof s->chunk + 1];
  snprintf(chunkname, sizeof chunkname, "@%s", s->chunk);
  int st = luaL_loadbufferx(L, src, src_len, chunkname, "t");
  if (st != LUA_OK) {
    mm_err_set(&e, st == LUA_ERRMEM ? MM_ENOMEM : MM_ELUA, "%s",
               lua_tostring(L, -1) ? lua_tostring(L, -1) : "cannot compile");
    parse_position(e.msg, &e);
    add_raw_problem(s, &e);
    lua_pop(L, 1);
    goto done;
  }

  /* run the top level */
  lua_pushcfunction(L, msgh);                      /* f h */
  lua_insert(L, -2);                               /* h f */
  begin_call(s, "the script's top level");
  st = lua_pcall(L, 0, 1, -2);                     /* h result */
  end_call(s);
  if (st != LUA_OK || s->ceiling_hit || s->budget_hit) {
    call_error(s, st, &e);
    add_raw_problem(s, &e);
    lua_pop(L, 2);
    goto done;
  }
  if (!lua_istable(L, -1)) {
    add_problem(s, MM_EINVAL, 0,
                "the script must return the pipeline table "
                "(return { decode = ..., key = ..., aggregate = ... }), got %s",
                luaL_typename(L, -1));
    lua_pop(L, 2);
    goto done;
  }

  /* validate */
  lua_pushcfunction(L, validate);                  /* h t validate */
  lua_insert(L, -2);                               /* h validate t */
  begin_call(s, "validation");
  st = lua_pcall(L, 1, 0, -3);                     /* h */
  end_call(s);
  if (st != LUA_OK) {
    call_error(s, st, &e);
    add_raw_problem(s, &e);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);

done:
  free(src);
  return s;
}

/* Closes the state (with the ceiling lifted: closing must not fail) and
 * frees what the loader owns. Accepts NULL and half-built scripts. */
void mm_script_destroy(mm_script_t *s) {
  if (!s) return;
  if (s->L) {
    mm_log(MM_LOG_DEBUG, NULL, "%s: Lua heap peak %zu bytes", s->chunk, s->peak);
    s->limit = 0;
    mm_script_watch_end(s);
    lua_close(s->L);
  }
  mm_watch_free(&s->watch);
  pool_release(&s->pool);
  for (size_t i = 0; i < s->nproblems; i++) free(s->problems[i]);
  free(s->problems);
  free(s->dir);
  free(s->lua_dir);
  free(s);
}

/* script_open, then either the script or one error holding every problem
 * ("; "-separated, the first one's code, chunk and line). */
int mm_script_load(mm_script_t **out, const char *path, const mm_script_opts_t *opts,
                   mm_err_t *err) {
  *out = NULL;
  mm_script_t *s = script_open(path, opts);
  if (!s) return mm_err_set(err, MM_ENOMEM, "cannot load %s: out of memory", path);
  if (s->nproblems == 0 && !s->problems_oom) {
    *out = s;
    return 0;
  }
  int code = s->first.code ? s->first.code : MM_ENOMEM;
  if (err) {
    *err = s->first;
    err->code = code;
    /* all the problems in one message: the init error shows them together */
    for (size_t i = 1; i < s->nproblems; i++) {
      size_t used = strlen(err->msg);
      int n = snprintf(err->msg + used, sizeof err->msg - used, "; %s", s->problems[i]);
      if (n < 0 || (size_t)n >= sizeof err->msg - used) {
        memcpy(err->msg + sizeof err->msg - 4, "...", 4);
        break;
      }
    }
  }
  mm_script_destroy(s);
  return code;
}

/* script_open, then one report per problem. */
int mm_script_check(const char *path, const mm_script_opts_t *opts,
                    void (*report)(void *ud, const char *problem), void *ud) {
  mm_script_t *s = script_open(path, opts);
  if (!s) {
    if (report) report(ud, "out of memory");
    return 1;
  }
  int n = (int)s->nproblems;
  for (size_t i = 0; i < s->nproblems; i++)
    if (report) report(ud, s->problems[i]);
  if (s->problems_oom) {
    if (report) report(ud, "out of memory (some problems were not recorded)");
    n++;
  }
  mm_script_destroy(s);
  return n;
}

const mm_def_t *mm_script_def(const mm_script_t *s) { return &s->def; }

lua_State *mm_script_state(mm_script_t *s) { return s->L; }

/* mm_conv_set_doc under protection. Argument 1: the doc (lightuserdata).
 * [-1, +0, m] */
static int pl_set_doc(lua_State *L) {
  mm_script_t *s = script_of(L);
  mm_conv_set_doc(L, (const mm_json_doc_t *)lua_touserdata(L, 1), s->max_depth);
  return 0;
}

/* Switches conv to doc under lua_pcall. A failure (only a real
 * out-of-memory: the ceiling is lifted meanwhile) is logged and makes every
 * record of this document poison instead of reading a stale one. */
int mm_script_set_doc(mm_script_t *s, const mm_json_doc_t *doc) {
  lua_State *L = s->L;
  int top = lua_gettop(L);
  size_t limit = s->limit;
  s->limit = 0;  /* our bookkeeping is not charged to the script */
  s->doc = doc;
  s->doc_failed = 0;
  lua_pushcfunction(L, pl_set_doc);
  lua_pushlightuserdata(L, (void *)doc);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    mm_log(MM_LOG_ERROR, NULL, "%s: cannot switch the record document: %s", s->chunk,
           lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
    s->doc_failed = 1;
  }
  s->limit = limit;
  lua_settop(L, top);
  return s->doc_failed ? MM_ENOMEM : 0;
}

/* ------------------------------------------------------------------ */
/* 5. Running a record                                                 */
/* ------------------------------------------------------------------ */

/*
 * The Lua half of a record, under lua_pcall. Argument 1: the record's node.
 * Returns nothing when decode returned nil (skip), else three values: the
 * keys result, value()'s two results (nil when not called). Lazy tables
 * among the results are materialised here, so the C half can read them
 * with raw access and no Lua calls. [-1, +0|+3, e]
 */
static int pl_run(lua_State *L) {
  mm_script_t *s = script_of(L);
  uint32_t node = (uint32_t)lua_tointeger(L, 1);
  lua_settop(L, 0);
  s->phase = "decode";
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_decode);  /* decode */
  mm_conv_push_record(L, node);                      /* decode rec */
  lua_call(L, 1, 1);                                 /* v */
  if (lua_isnil(L, 1)) return 0;

  s->phase = s->def.has_keys ? "keys" : "key";
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_key);     /* v keyfn */
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);                                 /* v K */
  int any = 1;
  if (lua_type(L, 2) == LUA_TTABLE && s->def.has_keys) {
    mm_conv_materialize(L, 2);
    lua_pushnil(L);
    if (lua_next(L, 2))
      lua_pop(L, 2);
    else
      any = 0;
  } else if (lua_isnil(L, 2)) {
    any = 0;
  }
  if (any && s->def.has_value) {
    s->phase = "value";
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_value); /* v K valuefn */
    lua_pushvalue(L, 1);
    lua_call(L, 1, 2);                               /* v K x w */
    if (lua_type(L, 3) == LUA_TTABLE) mm_conv_materialize(L, 3);
  }
  lua_settop(L, 4);
  return 3;
}

/* Marks the outcome poison with a message at the chunk's `line`. */
static void poison(mm_script_t *s, mm_outcome_t *out, int code, int line, const char *fmt,
                   ...) __attribute__((format(printf, 5, 6)));
static void poison(mm_script_t *s, mm_outcome_t *out, int code, int line, const char *fmt,
                   ...) {
  char body[MM_ERR_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(body, sizeof body, fmt, ap);
  va_end(ap);
  out->kind = MM_OUT_POISON;
  if (line > 0)
    mm_err_set(&out->err, code, "%s:%d: %s", s->chunk, line, body);
  else
    mm_err_set(&out->err, code, "%s: %s", s->chunk, body);
  snprintf(out->err.chunk, sizeof out->err.chunk, "%s", s->chunk);
  out->err.line = line;
}

/* Describes the value at idx for messages without calling Lua.
 * [-0, +0, -] */
static void describe(lua_State *L, int idx, char *buf, size_t n) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    if (lua_isinteger(L, idx))
      snprintf(buf, n, "integer %lld", (long long)lua_tointeger(L, idx));
    else
      snprintf(buf, n, "float %.17g", (double)lua_tonumber(L, idx));
  } else {
    snprintf(buf, n, "%s", luaL_typename(L, idx));
  }
}


/* Appends a key (copied) unless already present. set/cap: open-addressing
 * table of index+1 (rebuilt as it fills); a NULL set (key()'s single key)
 * skips the check. Returns 0 or MM_ENOMEM. */
typedef struct {
  size_t *slot;
  size_t cap;
} keyset_t;

static int keyset_grow(keyset_t *ks, const mm_outcome_t *o) {
  size_t cap = ks->cap ? ks->cap * 2 : 16;
  size_t *slot = calloc(cap, sizeof *slot);
  if (!slot) return MM_ENOMEM;
  for (size_t i = 0; i < o->nkeys; i++) {
    size_t h = (size_t)mm_fnv1a(o->keys[i], o->key_lens[i]) & (cap - 1);
    while (slot[h]) h = (h + 1) & (cap - 1);
    slot[h] = i + 1;
  }
  free(ks->slot);
  ks->slot = slot;
  ks->cap = cap;
  return 0;
}

static int add_key(mm_outcome_t *o, keyset_t *ks, size_t *cap, const char *p, size_t n) {
  size_t h = 0;
  if (ks) { /* NULL: key()'s one key, nothing to compare with */
    if ((o->nkeys + 1) * 2 > ks->cap && keyset_grow(ks, o) != 0) return MM_ENOMEM;
    h = (size_t)mm_fnv1a(p, n) & (ks->cap - 1);
    while (ks->slot[h]) {
      size_t i = ks->slot[h] - 1;
      if (o->key_lens[i] == n && memcmp(o->keys[i], p, n) == 0) return 0;  /* seen */
      h = (h + 1) & (ks->cap - 1);
    }
  }
  if (o->nkeys == *cap) {
    size_t nc = *cap ? *cap * 2 : 4;
    char **nk = realloc(o->keys, nc * sizeof *nk);
    if (!nk) return MM_ENOMEM;
    o->keys = nk;
    size_t *nl = realloc(o->key_lens, nc * sizeof *nl);
    if (!nl) return MM_ENOMEM;
    o->key_lens = nl;
    *cap = nc;
  }
  char *copy = malloc(n + 1);
  if (!copy) return MM_ENOMEM;
  memcpy(copy, p, n);
  copy[n] = '\0';
  o->keys[o->nkeys] = copy;
  o->key_lens[o->nkeys] = n;
  o->nkeys++;
  if (ks) ks->slot[h] = o->nkeys;
  return 0;
}

/*
 * Checks one key at idx (string or integer) and adds it. `elem` is 0 for
 * key()'s result, else the element's index in keys()'s table (messages
 * name it). Returns 0, 1 when the outcome became poison, or MM_ENOMEM.
 * [-0, +0, -]
 */
static int take_key(mm_script_t *s, lua_State *L, int idx, lua_Integer elem, int line,
                    mm_outcome_t *o, keyset_t *ks, size_t *cap) {
  char buf[64], who[64];
  const char *p;
  size_t n;
  if (lua_type(L, idx) == LUA_TSTRING) {
    p = lua_tolstring(L, idx, &n);
    if (n > 0 && n <= MAX_KEY_BYTES && mm_ddb_utf8_valid(p, n))
      return add_key(o, ks, cap, p, n); /* the usual case */
  }
  if (elem)
    snprintf(who, sizeof who, "keys() element [%lld] is", (long long)elem);
  else
    snprintf(who, sizeof who, "key() returned");
  if (lua_type(L, idx) == LUA_TSTRING) {
    p = lua_tolstring(L, idx, &n);
    if (n == 0) {
      poison(s, o, MM_EINVAL, line, "%s an empty string (DynamoDB keys cannot be empty)",
             who);
      return 1;
    }
    if (n > MAX_KEY_BYTES) {
      poison(s, o, MM_EINVAL, line,
             "%s a string of %zu bytes (DynamoDB keys hold at most %d)", who, n,
             MAX_KEY_BYTES);
      return 1;
    }
    if (!mm_ddb_utf8_valid(p, n)) {
      poison(s, o, MM_EINVAL, line, "%s a string that is not valid UTF-8", who);
      return 1;
    }
  } else if (lua_type(L, idx) == LUA_TNUMBER && lua_isinteger(L, idx)) {
    n = (size_t)snprintf(buf, sizeof buf, "%lld", (long long)lua_tointeger(L, idx));
    p = buf;
  } else {
    char d[64];
    describe(L, idx, d, sizeof d);
    if (elem)
      poison(s, o, MM_EINVAL, line,
             "keys() element [%lld] must be a string or an integer, got %s",
             (long long)elem, d);
    else
      poison(s, o, MM_EINVAL, line, "key() must return a string or an integer, got %s", d);
    return 1;
  }
  return add_key(o, ks, cap, p, n);
}

/* Converts the keys result at idx into o->keys. Returns 0, 1 (poison) or
 * MM_ENOMEM. Only raw, non-raising API calls: the table is plain (pl_run
 * materialised it). [-0, +0, -] */
static int take_keys(mm_script_t *s, lua_State *L, int idx, mm_outcome_t *o) {
  keyset_t ks = {NULL, 0};
  size_t cap = 0;
  int rc = 0;
  int line = s->line_key;
  if (!s->def.has_keys) {
    if (!lua_isnil(L, idx)) rc = take_key(s, L, idx, 0, line, o, NULL, &cap);
    goto done;
  }
  if (lua_type(L, idx) != LUA_TTABLE) {
    poison(s, o, MM_EINVAL, line, "keys() must return a table of strings, got %s",
           luaL_typename(L, idx));
    rc = 1;
    goto done;
  }
  /* a sequence: every key an integer in 1..count */
  lua_Integer count = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    count++;
    lua_Integer k = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
    if (k < 1) {
      char d[64];
      if (lua_type(L, -1) == LUA_TSTRING) {
        snprintf(d, sizeof d, "\"%.40s\"", lua_tostring(L, -1));
      } else {
        describe(L, -1, d, sizeof d);
      }
      lua_pop(L, 1);
      poison(s, o, MM_EINVAL, line,
             "keys() must return a sequence {k1, k2, ...}; found the field %s", d);
      rc = 1;
      goto done;
    }
  }
  for (lua_Integer i = 1; i <= count && rc == 0; i++) {
    if (lua_rawgeti(L, idx, i) == LUA_TNIL) {
      poison(s, o, MM_EINVAL, line,
             "keys() must return a sequence {k1, k2, ...}; element [%lld] is missing",
             (long long)i);
      rc = 1;
    } else {
      rc = take_key(s, L, lua_gettop(L), i, line, o, &ks, &cap);
    }
    lua_pop(L, 1);
  }
done:
  free(ks.slot);
  return rc;
}

/* "value()" (member 0) or "value() set member [i]" for messages. */
static const char *scalar_what(size_t member, char *buf, size_t n) {
  if (!member) return "value()";
  snprintf(buf, n, "value() set member [%zu]", member);
  return buf;
}

/*
 * Converts the value at idx to a scalar. Numbers: integers exactly,
 * floats by shortest round trip (NaN/inf refused); strings are kept as
 * strings unless `num_only` (sum), where they must be exact decimals.
 * `member` is 0 for value()'s result, else the set member's index; messages
 * name it (the name is only formatted on an error: this runs for every
 * value and every set member). Returns 0, 1 (poison) or MM_ENOMEM.
 * [-0, +0, -]
 */
static int take_scalar(mm_script_t *s, lua_State *L, int idx, int num_only,
                       int need_utf8, size_t member, mm_outcome_t *o,
                       mm_scalar_t *out) {
  int line = s->line_value;
  const char *was = member ? "is" : "returned";
  char wbuf[48];
#define WHAT() scalar_what(member, wbuf, sizeof wbuf)
  memset(out, 0, sizeof *out);
  int ty = lua_type(L, idx);
  if (ty == LUA_TNUMBER) {
    out->is_num = 1;
    if (lua_isinteger(L, idx)) {
      mm_dec_from_int(&out->num, (int64_t)lua_tointeger(L, idx));
      return 0;
    }
    double v = (double)lua_tonumber(L, idx);
    if (isnan(v) || isinf(v)) {
      poison(s, o, MM_EINVAL, line, "%s %s %s", WHAT(), was,
             isnan(v) ? "NaN" : (v > 0 ? "inf" : "-inf"));
      return 1;
    }
    mm_err_t e;
    mm_err_clear(&e);
    if (mm_dec_from_double(&out->num, v, &e) != 0) {
      poison(s, o, MM_EINVAL, line, "%s %s %.17g: %s", WHAT(), was, v, e.msg);
      return 1;
    }
    return 0;
  }
  if (ty == LUA_TSTRING) {
    size_t n;
    const char *p = lua_tolstring(L, idx, &n);
    if (num_only) {
      mm_err_t e;
      mm_err_clear(&e);
      out->is_num = 1;
      if (mm_dec_parse(&out->num, p, n, &e) != 0) {
        poison(s, o, MM_EINVAL, line,
               "%s %s \"%.60s\", which is not a decimal number (%s)", WHAT(), was, p,
               e.msg);
        return 1;
      }
      return 0;
    }
    if (need_utf8 && !mm_ddb_utf8_valid(p, n)) {
      poison(s, o, MM_EINVAL, line, "%s %s a string that is not valid UTF-8", WHAT(), was);
      return 1;
    }
    out->str = malloc(n + 1);
    if (!out->str) return MM_ENOMEM;
    memcpy(out->str, p, n);
    out->str[n] = '\0';
    out->len = n;
    return 0;
  }
  poison(s, o, MM_EINVAL, line, "%s must %s %s for aggregate '%s', got %s", WHAT(),
         member ? "be" : "return",
         num_only ? "a number or a decimal string" : "a number or a string",
         mm_agg_name(s->def.agg), luaL_typename(L, idx));
  return 1;
#undef WHAT
}

/* qsort comparator over scalars. */
static int scalar_qcmp(const void *a, const void *b) {
  return mm_scalar_cmp((const mm_scalar_t *)a, (const mm_scalar_t *)b);
}

/* The set aggregate: one scalar or a sequence of scalars, all strings or
 * all numbers (a DynamoDB set has one type), duplicates dropped. [-0, +0, -] */
static int take_set(mm_script_t *s, lua_State *L, int idx, mm_outcome_t *o) {
  mm_delta_t *d = &o->delta;
  int line = s->line_value;
  if (lua_type(L, idx) != LUA_TTABLE) {
    d->members = calloc(1, sizeof *d->members);
    if (!d->members) return MM_ENOMEM;
    int rc = take_scalar(s, L, idx, 0, 1, 0, o, &d->members[0]);
    if (rc == 0) d->nmembers = 1;
    return rc;
  }
  size_t count = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    count++;
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
      lua_pop(L, 1);
      poison(s, o, MM_EINVAL, line,
             "value() must return a scalar or a sequence of scalars for aggregate 'set'");
      return 1;
    }
  }
  if (count == 0) return 0;
  d->members = calloc(count, sizeof *d->members);
  if (!d->members) return MM_ENOMEM;
  for (size_t i = 1; i <= count; i++) {
    int rc;
    if (lua_rawgeti(L, idx, (lua_Integer)i) == LUA_TNIL) {
      poison(s, o, MM_EINVAL, line, "value() set member [%zu] is missing (not a sequence)",
             i);
      rc = 1;
    } else {
      rc = take_scalar(s, L, lua_gettop(L), 0, 1, i, o, &d->members[d->nmembers]);
      if (rc == 0) d->nmembers++;
    }
    lua_pop(L, 1);
    if (rc) return rc;
    if (d->members[d->nmembers - 1].is_num != d->members[0].is_num) {
      poison(s, o, MM_EINVAL, line,
             "value() set members must be all strings or all numbers (member [1] is a %s, "
             "member [%zu] a %s)",
             d->members[0].is_num ? "number" : "string", i,
             d->members[0].is_num ? "string" : "number");
      return 1;
    }
  }
  qsort(d->members, d->nmembers, sizeof *d->members, scalar_qcmp);
  size_t j = 0;
  for (size_t i = 0; i < d->nmembers; i++) {
    if (j > 0 && mm_scalar_cmp(&d->members[j - 1], &d->members[i]) == 0) {
      mm_scalar_free(&d->members[i]);
      continue;
    }
    d->members[j++] = d->members[i];
  }
  d->nmembers = j;
  return 0;
}

/* Converts value()'s results at idx, idx+1 into o->delta. Returns 0, 1
 * (poison) or MM_ENOMEM. [-0, +0, -] */
static int take_value(mm_script_t *s, lua_State *L, int idx, mm_outcome_t *o) {
  mm_delta_t *d = &o->delta;
  int line = s->line_value;
  switch (s->def.agg) {
  case MM_AGG_COUNT:
    d->v.is_num = 1;
    mm_dec_from_int(&d->v.num, 1);
    return 0;
  case MM_AGG_SET:
    if (lua_isnil(L, idx)) break;
    return take_set(s, L, idx, o);
  case MM_AGG_TOPK:
    if (!lua_isnil(L, idx + 1)) {
      lua_Integer w = 0;
      if (lua_type(L, idx + 1) == LUA_TNUMBER) {
        int isint = 0;
        w = lua_tointegerx(L, idx + 1, &isint);
        if (!isint) w = 0;
      }
      if (w < 1) {
        char desc[64];
        describe(L, idx + 1, desc, sizeof desc);
        poison(s, o, MM_EINVAL, line,
               "value()'s second result (the weight) must be a positive integer, got %s",
               desc);
        return 1;
      }
      d->weight = (int64_t)w;
    }
    /* fall through */
  default:
    if (lua_isnil(L, idx)) break;
    return take_scalar(s, L, idx, s->def.agg == MM_AGG_SUM,
                       s->def.agg != MM_AGG_HLL && s->def.agg != MM_AGG_TOPK, 0,
                       o, &d->v);
  }
  poison(s, o, MM_EINVAL, line, "value() returned nil (aggregate '%s' needs %s)",
         mm_agg_name(s->def.agg),
         s->def.agg == MM_AGG_SUM ? "a number" : "a number or a string");
  return 1;
}

/* Frees the keys and the delta; o can be reused or freed again. */
void mm_outcome_free(mm_outcome_t *o) {
  if (!o) return;
  for (size_t i = 0; i < o->nkeys; i++) free(o->keys[i]);
  free(o->keys);
  free(o->key_lens);
  mm_delta_free(&o->delta);
  o->keys = NULL;
  o->key_lens = NULL;
  o->nkeys = 0;
  memset(&o->delta, 0, sizeof o->delta);
}

/* Frees what a failed conversion built, keeping kind and err. */
static void drop_results(mm_outcome_t *o) {
  mm_outcome_kind_t kind = o->kind;
  mm_err_t e = o->err;
  mm_outcome_free(o);
  o->kind = kind;
  o->err = e;
}

/*
 * One record: pl_run under lua_pcall with the traceback handler and fresh
 * limits, then (back in C, nothing can raise) the results become keys and
 * a delta. A limit hit during the call makes the record poison even when
 * the script caught the error.
 */
int mm_script_run_record(mm_script_t *s, uint32_t node, double event_time,
                         mm_outcome_t *out) {
  lua_State *L = s->L;
  int top = lua_gettop(L);
  /* field by field: a memset would clear the 1 KB message on every record */
  out->keys = NULL;
  out->key_lens = NULL;
  out->nkeys = 0;
  memset(&out->delta, 0, sizeof out->delta);
  mm_err_clear(&out->err);
  out->kind = MM_OUT_VALUE;
  out->delta.agg = s->def.agg;
  out->delta.weight = 1;
  out->delta.time = event_time;

  if (s->doc_failed) {
    poison(s, out, MM_ENOMEM, 0,
           "out of memory making this invocation's records readable from Lua "
           "(see the \"cannot switch the record document\" log line)");
    return 0;
  }
  if (!s->doc) {
    poison(s, out, MM_EINVAL, 0, "no record document is set (mm_script_set_doc)");
    return 0;
  }
  if (!lua_checkstack(L, 10)) {
    poison(s, out, MM_ENOMEM, 0, "cannot grow the Lua stack");
    return 0;
  }
  lua_pushcfunction(L, msgh);                        /* h */
  lua_pushcfunction(L, pl_run);                      /* h run */
  lua_pushinteger(L, (lua_Integer)node);             /* h run node */
  begin_call(s, "decode");
  int st = lua_pcall(L, 1, LUA_MULTRET, top + 1);    /* h [K x w] */
  end_call(s);
  int rc = 0;
  if (s->deadline_hit) {
    out->kind = MM_OUT_DEADLINE;
    mm_err_set(&out->err, MM_EDEADLINE, "%s: deadline margin reached while the record ran",
               s->chunk);
    goto done;
  }
  if (st != LUA_OK || s->ceiling_hit || s->budget_hit) {
    out->kind = MM_OUT_POISON;
    call_error(s, st, &out->err);
    goto done;
  }
  if (lua_gettop(L) == top + 1) {
    out->kind = MM_OUT_SKIP;
    goto done;
  }
  /* h K x w */
  rc = take_keys(s, L, top + 2, out);
  if (rc == 0 && out->nkeys > 0) rc = take_value(s, L, top + 3, out);
  if (rc == 0 && s->def.agg == MM_AGG_SET && out->delta.nmembers == 0 && out->nkeys > 0) {
    /* an empty set adds nothing (and DynamoDB refuses empty sets) */
    for (size_t i = 0; i < out->nkeys; i++) free(out->keys[i]);
    out->nkeys = 0;
  }
  if (rc == MM_ENOMEM) {
    drop_results(out);
    out->kind = MM_OUT_POISON;
    mm_err_set(&out->err, MM_ENOMEM, "out of memory converting the results");
  } else if (rc != 0) {
    drop_results(out);
    rc = 0;
  }
done:
  lua_settop(L, top);
  return rc;
}

/* on_decode_error(rec, msg) under lua_pcall. Arguments: node, and the
 * message as a lightuserdata C string (turned into a Lua string here,
 * where an allocation failure is caught). [-2, +0, e] */
static int pl_on_error(lua_State *L) {
  mm_script_t *s = script_of(L);
  uint32_t node = (uint32_t)lua_tointeger(L, 1);
  const char *msg = (const char *)lua_touserdata(L, 2);
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref_on_err);  /* f */
  mm_conv_push_record(L, node);                      /* f rec */
  lua_pushstring(L, msg ? msg : "");                 /* f rec msg */
  lua_call(L, 2, 0);
  return 0;
}

/* on_decode_error(rec, msg) like a record: protected, fresh limits; a
 * failure is only logged. */
void mm_script_on_decode_error(mm_script_t *s, uint32_t node, const char *msg) {
  if (!s->def.has_on_decode_error || !s->doc || s->doc_failed) return;
  lua_State *L = s->L;
  int top = lua_gettop(L);
  if (!lua_checkstack(L, 6)) return;
  lua_pushcfunction(L, msgh);                        /* h */
  lua_pushcfunction(L, pl_on_error);                 /* h f */
  lua_pushinteger(L, (lua_Integer)node);             /* h f node */
  lua_pushlightuserdata(L, (void *)msg);             /* h f node msg */
  begin_call(s, "on_decode_error");
  int st = lua_pcall(L, 2, 0, top + 1);              /* h [err] */
  end_call(s);
  if (st != LUA_OK || s->ceiling_hit || s->budget_hit) {
    mm_err_t e;
    call_error(s, st, &e);
    mm_log(MM_LOG_ERROR, NULL, "%s: on_decode_error failed: %s", s->chunk, e.msg);
  }
  lua_settop(L, top);
}

void mm_script_set_deadline(mm_script_t *s, int64_t stop_at_ms) {
  s->stop_at = stop_at_ms;
  /* the hook must run to see the clock, whatever the budget (a watched
   * call gets it from the watchdog's tick) */
  if (!s->watching) set_main_hook(s, budget_hook, s->hook_every);
}

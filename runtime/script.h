/*
 * script.h - the Lua host: loads decode.lua, sandboxes it, runs it safely.
 *
 * Provides: a Lua 5.4 state with a sandboxed standard library (no
 * os.exit/os.execute/io.popen/package.loadlib/io.open/dofile/loadfile of
 * arbitrary paths; require searches only the script's directory
 * ($LAMBDA_TASK_ROOT) and the layer's lua/ directory, plus the preloaded
 * "cjson" and "murmur.core"), the validated pipeline definition, and
 * mm_script_run_record, which runs decode -> keys/key -> value for one record
 * under lua_pcall with a traceback handler, an instruction budget per call
 * and a heap ceiling, and turns the results into C keys and a delta.
 *
 * Limits: the budget is enforced by a count hook; once exceeded the hook
 * re-arms itself every instruction, so a script's own pcall cannot swallow
 * the abort. Between mm_script_watch_begin and mm_script_watch_end the
 * hook is set only on calls that outlive a tick of a CPU-time watchdog
 * (watch.h): such a call is counted from that tick, so it is stopped at the
 * latest a few ms of CPU after its budget ran out, and no call is slowed
 * by counting every instruction (budgets below 10,000,000 are always
 * counted exactly). The heap ceiling is an allocator limit applied after setup;
 * the abort is an ordinary memory error that the record's call sees, and
 * the next record runs with a full budget after a full GC.
 *
 * Ownership: mm_script_t is owned by its loader (mm_script_destroy); an
 * outcome owns its keys and delta (mm_outcome_free).
 */
#ifndef MM_SCRIPT_H
#define MM_SCRIPT_H

#include <stddef.h>
#include <stdint.h>
#include <lua.h>
#include "agg.h"
#include "err.h"
#include "json.h"

typedef struct mm_script_opts {
  long budget;            /* instructions per call, 0 = unlimited */
  size_t mem_limit;       /* Lua heap bytes after setup, 0 = unlimited */
  const char *lua_dir;    /* the layer's lua/ directory (may be NULL) */
  int max_depth;          /* AttributeValue nesting limit */
} mm_script_opts_t;

/* The pipeline table, validated. */
typedef struct mm_def {
  char name[128];          /* "name", default: the script's base name */
  mm_agg_t agg;
  int windowed;
  int64_t granularity_s;   /* window.granularity */
  int64_t retention_s;     /* window.retention (0 = granularity) */
  int has_keys;            /* keys() instead of key() */
  int has_value;
  int has_on_decode_error;
} mm_def_t;

typedef struct mm_script mm_script_t;

/* Loads path. A syntax error is MM_ELUA with "decode.lua:LINE: ..." (chunk
 * and line in err); a missing file MM_EIO naming it; a pipeline table with
 * a missing or wrong-typed field MM_EINVAL naming the field. */
int mm_script_load(mm_script_t **out, const char *path,
                   const mm_script_opts_t *opts, mm_err_t *err);
void mm_script_destroy(mm_script_t *s);

const mm_def_t *mm_script_def(const mm_script_t *s);
lua_State *mm_script_state(mm_script_t *s);

/* Loads and validates path like mm_script_load, reporting every problem
 * found (not just the first) through report(ud, "file:line: message").
 * Returns the number of problems. */
int mm_script_check(const char *path, const mm_script_opts_t *opts,
                    void (*report)(void *ud, const char *problem), void *ud);

/* Sets the document whose records the following runs read (borrowed until
 * the next call; NULL at the end of an invocation). Returns 0, or MM_ENOMEM
 * when Lua ran out of memory switching (logged): then every record of this
 * document is poison if run anyway, so the caller should fail the whole
 * invocation instead (its records are not at fault and must come back). */
int mm_script_set_doc(mm_script_t *s, const mm_json_doc_t *doc);

typedef enum {
  MM_OUT_VALUE = 0,  /* keys and delta are set (nkeys may be 0) */
  MM_OUT_SKIP,       /* decode returned nil */
  MM_OUT_POISON,     /* err says why: decode raised, a limit was hit,
                        keys/value returned something unusable */
  MM_OUT_DEADLINE    /* stopped: the deadline set by mm_script_set_deadline
                        came while the record ran (not the record's fault;
                        the pipeline reports it for redelivery) */
} mm_outcome_kind_t;

/* mm_script_run_record sets each field itself (no memset of the 1 KB
 * message per record), so a new field is set there. */
typedef struct mm_outcome {
  mm_outcome_kind_t kind;
  char **keys;        /* owned: distinct keys in first-seen order */
  size_t *key_lens;
  size_t nkeys;
  mm_delta_t delta;   /* owned; delta.time = event_time */
  mm_err_t err;       /* POISON: message with file:line and traceback */
} mm_outcome_t;

/* Absolute epoch-ms time after which a running record is stopped (the
 * instruction hook checks the clock every few thousand instructions, so a
 * slow decode cannot carry the batch past Lambda's deadline); 0 = none. */
void mm_script_set_deadline(mm_script_t *s, int64_t stop_at_ms);

/* Starts watching (see Limits above) for a run of calls with no I/O
 * between them beyond log lines: arms a CPU-time timer whose signal
 * (SIGVTALRM, SA_RESTART) this thread receives until mm_script_watch_end.
 * Returns 1 when watching, 0 when the calls are counted exactly instead
 * (a small budget, or no timer: logged once). One script watches at a
 * time per process. */
int mm_script_watch_begin(mm_script_t *s);
void mm_script_watch_end(mm_script_t *s);

/* Watched calls so far that outlived a tick and were counted. */
long mm_script_watched_calls(const mm_script_t *s);

/* Runs the pipeline on record `node` of the current document. Never
 * raises; returns 0 (the outcome says what happened) or MM_ENOMEM when the
 * outcome itself cannot be built. One budget covers decode + keys/key +
 * value. value() is not called when there are no keys; a set value that
 * is empty ({}) yields nkeys 0 (nothing to add; DynamoDB refuses empty
 * sets). Set members come sorted and distinct, all strings or all
 * numbers. Keys are non-empty valid UTF-8 of at most 2048 bytes (integers
 * become their decimal text). */
int mm_script_run_record(mm_script_t *s, uint32_t node, double event_time,
                         mm_outcome_t *out);
void mm_outcome_free(mm_outcome_t *o);

/* Calls on_decode_error(rec, message) when defined, protected and under
 * the same limits; its own failure is logged, never raised. */
void mm_script_on_decode_error(mm_script_t *s, uint32_t node, const char *msg);

#endif

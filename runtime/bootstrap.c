/*
 * bootstrap.c - the Lambda entry point (the layer's /opt/bootstrap).
 *
 * Init: settings from the environment (config.h), logging (log.h), the
 * user's script $LAMBDA_TASK_ROOT/<_HANDLER>[.lua], the layer's lua/
 * directory found beside this executable, the store (MURMUR_STORE,
 * required) and dedup (MURMUR_DEDUP). Then the invocation loop over the
 * Runtime API (rapi.h): next, set _X_AMZN_TRACE_ID, run the pipeline
 * (pipeline.h) with the invocation's deadline, post the response or an
 * invocation error, repeat.
 *
 * Init failures are posted to /runtime/init/error and the process exits 1
 * (only main returns; nothing else exits). Their errorType values, each
 * kept by the Runtime API because it matches (Runtime|Function)\.[A-Z][a-zA-Z]+:
 *   Runtime.NoSuchHandler   _HANDLER unset, not a plain file name (contains
 *                           '/' or ".."), or the script cannot be read
 *   Function.InvalidScript  the script failed to load: Lua syntax error,
 *                           error while running its top level, or a pipeline
 *                           table that does not validate (the message
 *                           carries "decode.lua:LINE: ...")
 *   Runtime.InvalidConfig   a MURMUR_* variable is malformed, or
 *                           MURMUR_STORE is not set
 *   Runtime.InitError       anything else (opening the store or dedup,
 *                           memory)
 * Invocation errors: the pipeline's error type (Runtime.InvalidJSON,
 * Runtime.UnsupportedEvent, Runtime.OutOfMemory, ...), plus
 * Runtime.EventTooLarge for an event above MM_RAPI_MAX_BODY and
 * Function.ResponseSizeTooLarge after the API refused a response with 413
 * (the RIE already counts the invocation as failed with that type and
 * answers the follow-up post with 403; the post is kept for services that
 * accept it, and its refusal is only logged).
 *
 * Exit: 0 when the Runtime API answers 500 (it asks the runtime to exit),
 * 1 when it cannot be reached, after init errors, and after 3 consecutive
 * failed /next requests that carried no invocation (as aws-lambda-cpp).
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "err.h"
#include "event.h"
#include "log.h"
#include "pipeline.h"
#include "rapi.h"
#include "retry.h"

/* Consecutive /next failures without an invocation before giving up. */
#define NEXT_FAILURES_MAX 3

/* Init error types (see the file comment). */
#define ETYPE_NO_HANDLER "Runtime.NoSuchHandler"
#define ETYPE_BAD_SCRIPT "Function.InvalidScript"
#define ETYPE_BAD_CONFIG "Runtime.InvalidConfig"
#define ETYPE_INIT "Runtime.InitError"
/* Invocation error types added here (the pipeline has its own). */
#define ETYPE_EVENT_TOO_LARGE "Runtime.EventTooLarge"
#define ETYPE_RESPONSE_TOO_LARGE "Function.ResponseSizeTooLarge"
#define ETYPE_UNKNOWN "Runtime.Unknown"

/* What init produced, or why it failed. */
typedef struct init_state {
  mm_config_t cfg;
  mm_pipeline_t *pipeline;
  const char *etype;             /* set on failure */
  char script[PATH_MAX];
  char lua_dir[PATH_MAX];
} init_state_t;

/* ------------------------------------------------------------------ */
/* Init                                                                */
/* ------------------------------------------------------------------ */

/*
 * The script named by _HANDLER: "decode" or "decode.lua" ->
 * $LAMBDA_TASK_ROOT/decode.lua. A handler is a plain file name; '/' or ".."
 * could reach outside the function's package, so they are refused. Without
 * LAMBDA_TASK_ROOT (never the case in Lambda) the working directory is
 * used, which in Lambda is the task root anyway.
 */
static int script_path(char *out, size_t cap, mm_err_t *err) {
  const char *h = getenv("_HANDLER");
  if (!h || !*h)
    return mm_err_set(err, MM_EINVAL,
                      "_HANDLER is not set (name the Lua file, e.g. \"decode\")");
  if (strchr(h, '/') || strstr(h, ".."))
    return mm_err_set(err, MM_EINVAL,
                      "_HANDLER \"%.200s\" must be a file name in LAMBDA_TASK_ROOT "
                      "(no '/' or \"..\")", h);
  const char *root = getenv("LAMBDA_TASK_ROOT");
  if (!root || !*root) root = ".";
  size_t hl = strlen(h);
  int has_ext = hl > 4 && strcmp(h + hl - 4, ".lua") == 0;
  int n = snprintf(out, cap, "%s/%s%s", root, h, has_ext ? "" : ".lua");
  if (n < 0 || (size_t)n >= cap)
    return mm_err_set(err, MM_EINVAL, "script path for _HANDLER \"%.100s\" is too long", h);
  if (access(out, R_OK) != 0)
    return mm_err_set(err, MM_EIO, "cannot read %s (_HANDLER=%.200s): %s", out, h,
                      strerror(errno));
  return 0;
}

/*
 * Everything before the first /next. On failure st->etype names the error
 * type to post and err says what is wrong.
 */
static int init(init_state_t *st, mm_err_t *err) {
  int rc = mm_config_from_env(&st->cfg, err);
  if (rc) {
    st->etype = ETYPE_BAD_CONFIG;
    return rc;
  }
  if ((rc = script_path(st->script, sizeof st->script, err))) {
    st->etype = ETYPE_NO_HANDLER;
    return rc;
  }
  if (!st->cfg.store_url || !*st->cfg.store_url) {
    st->etype = ETYPE_BAD_CONFIG;
    return mm_err_set(err, MM_EINVAL,
                      "MURMUR_STORE is not set (dynamodb://TABLE, sqlite://PATH or memory://)");
  }
  mm_config_lua_dir(st->lua_dir, sizeof st->lua_dir);
  mm_err_clear(err);
  rc = mm_pipeline_open(&st->pipeline, st->script, st->lua_dir, &st->cfg, NULL, err);
  if (rc) {
    /* Script problems carry the chunk name ("decode.lua"); the rest are
     * the store's or dedup's. */
    st->etype = err->chunk[0] || rc == MM_ELUA ? ETYPE_BAD_SCRIPT : ETYPE_INIT;
    return rc;
  }
  return 0;
}

/* ------------------------------------------------------------------ */
/* Invocations                                                         */
/* ------------------------------------------------------------------ */

/* The exit status after the Runtime API failed with MM_EIO: 0 when it
 * answered 5xx (it asks the runtime to exit), 1 when it was unreachable. */
static int api_gone(const mm_rapi_t *rapi, const mm_err_t *err) {
  int status = mm_rapi_last_status(rapi);
  if (status >= 500) {
    MM_INFO("Runtime API answered %d: exiting (%s)", status, err->msg);
    return 0;
  }
  MM_ERROR("Runtime API unreachable: exiting (%s)", err->msg);
  return 1;
}

/* Sets _X_AMZN_TRACE_ID for this invocation (removed when it has none),
 * as the Runtime API documents for custom runtimes. */
static void set_trace(const char *trace_id) {
  if (trace_id && *trace_id) setenv("_X_AMZN_TRACE_ID", trace_id, 1);
  else unsetenv("_X_AMZN_TRACE_ID");
}

/*
 * Runs one invocation and posts its outcome. Returns 0 to go on, or
 * MM_EIO when the Runtime API failed (the caller exits; err says why).
 */
static int handle(mm_rapi_t *rapi, mm_pipeline_t *p, const mm_invocation_t *inv,
                  mm_err_t *perr) {
  mm_invoke_t in = {inv->body, inv->body_len, inv->deadline_ms, inv->request_id};
  mm_result_t res;
  mm_err_t err;
  mm_err_clear(&err);
  int rc = mm_pipeline_run(p, &in, &res);
  int prc;
  if (rc == 0 && res.response) {
    prc = mm_rapi_respond(rapi, inv->request_id, res.response, res.len, &err);
    if (prc == MM_ELIMIT) {
      char msg[160];
      snprintf(msg, sizeof msg,
               "response of %zu bytes is larger than the Runtime API accepts", res.len);
      MM_ERROR("%s", msg);
      prc = mm_rapi_error(rapi, inv->request_id, ETYPE_RESPONSE_TOO_LARGE, msg, &err);
      if (prc == MM_EINVAL) {
        MM_DEBUG("error post after 413 refused (the invocation is already failed): %s",
                 err.msg);
        prc = 0;
      }
    }
  } else {
    const char *type = res.error_type ? res.error_type : ETYPE_UNKNOWN;
    const char *msg = res.err.msg[0] ? res.err.msg : mm_err_name(rc ? rc : MM_EINVAL);
    MM_WARN("invocation error %s: %s", type, msg);
    prc = mm_rapi_error(rapi, inv->request_id, type, msg, &err);
  }
  mm_result_free(&res);
  if (prc == MM_EIO) {
    *perr = err;
    return MM_EIO;
  }
  if (prc) MM_WARN("posting the outcome failed: %s", err.msg);
  return 0;
}

/*
 * The invocation loop. Returns the process exit status. /next failures
 * that carry a request id (an event over MM_RAPI_MAX_BODY) are answered
 * with an invocation error; those without one count towards
 * NEXT_FAILURES_MAX consecutive failures.
 */
static int serve(mm_rapi_t *rapi, mm_pipeline_t *p) {
  int failures = 0;
  for (;;) {
    mm_invocation_t inv;
    mm_err_t err;
    mm_err_clear(&err);
    int rc = mm_rapi_next(rapi, &inv, &err);
    if (rc == MM_EIO) return api_gone(rapi, &err);
    if (rc) {
      if (inv.request_id[0] && mm_rapi_last_status(rapi) == 200) {
        failures = 0;
        mm_log_set_request(inv.request_id);
        const char *type = rc == MM_ENOMEM ? MM_ETYPE_NO_MEMORY : ETYPE_EVENT_TOO_LARGE;
        MM_ERROR("invocation error %s: %s", type, err.msg);
        char msg[MM_ERR_MAX];
        snprintf(msg, sizeof msg, "%s", err.msg);
        rc = mm_rapi_error(rapi, inv.request_id, type, msg, &err);
        mm_log_set_request(NULL);
        if (rc == MM_EIO) return api_gone(rapi, &err);
        continue;
      }
      MM_ERROR("GET next failed: %s", err.msg);
      if (++failures >= NEXT_FAILURES_MAX) {
        MM_ERROR("%d consecutive failures of GET next: exiting", failures);
        return 1;
      }
      continue;
    }
    failures = 0;
    mm_log_set_request(inv.request_id);
    set_trace(inv.trace_id);
    rc = handle(rapi, p, &inv, &err);
    mm_invocation_free(&inv);
    mm_log_set_request(NULL);
    if (rc == MM_EIO) return api_gone(rapi, &err);
  }
}

/* ------------------------------------------------------------------ */
/* main                                                                */
/* ------------------------------------------------------------------ */

int main(void) {
  int64_t t0 = mm_mono_ms();
  mm_log_init(NULL);
  /* A closed pipe must be an error return, never a signal. */
  signal(SIGPIPE, SIG_IGN);
  /* EMF metric lines go to stdout: one line, one CloudWatch event. */
  setvbuf(stdout, NULL, _IOLBF, 0);

  mm_rapi_t *rapi = NULL;
  init_state_t *st = calloc(1, sizeof *st);
  mm_err_t err;
  mm_err_clear(&err);
  int status = 1;
  if (!st) {
    MM_ERROR("out of memory at start");
    goto done;
  }
  if (mm_rapi_create(&rapi, getenv("AWS_LAMBDA_RUNTIME_API"), &err)) {
    MM_ERROR("cannot reach the Runtime API: %s", err.msg);
    goto done;
  }
  if (init(st, &err)) {
    MM_ERROR("init failed (%s): %s", st->etype, err.msg);
    mm_err_t perr;
    mm_err_clear(&perr);
    if (mm_rapi_init_error(rapi, st->etype, err.msg, &perr))
      MM_ERROR("posting the init error failed: %s", perr.msg);
    goto done;
  }
  MM_INFO("ready in %lld ms: script %s, lua %s, store %s%s%s", (long long)(mm_mono_ms() - t0),
          st->script, st->lua_dir, st->cfg.store_url, st->cfg.dedup_url ? ", dedup " : "",
          st->cfg.dedup_url ? st->cfg.dedup_url : "");
  status = serve(rapi, st->pipeline);

done:
  if (st) mm_pipeline_destroy(st->pipeline);
  free(st);
  mm_rapi_destroy(rapi);
  return status;
}

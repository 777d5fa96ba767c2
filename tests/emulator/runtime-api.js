#!/usr/bin/env node
'use strict';
/*
 * runtime-api.js - a Lambda Runtime API emulator for the tests (Node 20,
 * standard library only).
 *
 * It speaks real HTTP/1.1 under /2018-06-01 with the status codes and error
 * bodies of the AWS Runtime Interface Emulator (RIE, see
 * ../../../shared/runtime-contract.md section 1):
 *   GET  /runtime/invocation/next            200 + event and Lambda-Runtime-* headers
 *   POST /runtime/invocation/{id}/response   202 {"status":"OK"}; 400 InvalidRequestID
 *        (id empty or not the current invocation); 403 InvalidStateTransition
 *        (second post); 413 RequestEntityTooLarge above 6*1024*1024+100 bytes
 *        (the invocation then counts as failed with Function.ResponseSizeTooLarge
 *        and, as in the RIE, a later post for it gets 403)
 *   POST /runtime/invocation/{id}/error      202; 400; 403. The error type header is
 *        normalised as the RIE does: kept when it matches the unanchored regex
 *        (Runtime|Function)\.[A-Z][a-zA-Z]+, else Function.Unknown when it starts
 *        with "Function.", else Runtime.Unknown.
 *   POST /runtime/init/error                 202 before the first /next, else 403
 *   GET  /ping                               "pong" (legacy RIE endpoint)
 * and, outside the API, GET /control/transcript (the transcript so far).
 *
 * Deliberate difference from the RIE: a /next while the current invocation
 * has no response yet gets 403 InvalidStateTransition at once (the RIE would
 * hang), so a runtime that skips a response fails visibly and quickly.
 *
 * Usage:
 *   node runtime-api.js SCENARIO.json [--transcript PATH] [--linger MS]
 *        [--timeout MS] [--grace MS] [--verbose]
 * The first stdout line is {"port":N} (127.0.0.1, a free port).
 *
 * Scenario (JSON object, every field optional):
 *   invocations: [{ event: <inline JSON value> | "<file path, relative to the
 *                    scenario file>", eventRaw: "<verbatim body>",
 *                   deadlineInMs: 30000 (from delivery), requestId, traceId
 *                   (null = no header), functionArn, delayMs (hold /next this
 *                   long before delivering), chunked: true (no
 *                   Content-Length: chunked encoding), postStatus: 500 (answer every
 *                   post for this invocation with a 500),
 *                   headers: {Name: value | null (null removes a default)} }]
 *   redelivery: { stream: [records] | "<event file with Records>",
 *                 batchSize: 100, maxRounds: 10, deadlineInMs, extra: {fields
 *                 added to each event} }  (runs after `invocations`)
 *   refuseFirstMs: N     do not listen for the first N ms (connect retries)
 *   failNextWith500AfterInvocations: k   the /next after k deliveries gets a 500
 *   headerCase: "canonical" | "lower" | "upper"   spelling of response headers
 *
 * Redelivery driver (Lambda's checkpoint rule for stream sources): deliver
 * a batch; a response without batchItemFailures (or an empty list, or a
 * null/empty response) advances past the batch; a list whose identifiers
 * are all SequenceNumbers of the batch restarts at the lowest of them
 * (compared by length, then bytewise); any other list (empty or null
 * identifier, missing key, an identifier not in the batch) or a response
 * that is not JSON or not an object, an invocation error, a 413 or a
 * timeout redelivers the whole batch. At most maxRounds deliveries.
 *
 * End of scenario: when a /next finds no more work (that /next is held
 * open), after an init error, after the injected 500, when an invocation
 * is not answered within its deadline + grace, or at --timeout. The
 * transcript is then written to --transcript, and the emulator exits after
 * --linger ms (so a runtime under test stays blocked in /next until the
 * harness kills it). SIGTERM/SIGINT write the transcript and exit at once.
 *
 * Transcript (JSON; also served live by GET /control/transcript):
 *   {startedAt, ended: "complete"|"initError"|"500"|"timeout"|"closed", endedAt,
 *    initError: {status, errorType (normalised), rawErrorType, contentType
 *                (as the RIE labels it), requestContentType, body|bodyText, ...}|null,
 *    invocations: [{index, requestId, round (redelivery round or null),
 *                   deliveredAt, deadlineMs (epoch ms), eventBytes,
 *                   outcome: "response"|"error"|"timeout"|"none",
 *                   response: <accepted post>|null, error: <accepted error
 *                   post, or {errorType:"Function.ResponseSizeTooLarge",status:413}>|null,
 *                   posts: [{kind, status, at, msBeforeDeadline (deadline - post
 *                            time; negative = late), contentType, rawErrorType,
 *                            errorType, bodyBytes, body (parsed JSON) | bodyText}]}],
 *    rejected: [posts with an unknown request id (400)],
 *    requests: [{n, method, path, status, at, connection (1-based socket
 *                number: keep-alive shows as one number), userAgent,
 *                contentLength, transferEncoding, expect, contentType}],
 *    connections, redelivery: {records, batchSize, maxRounds, position,
 *                completed, rounds: [{round, start, sequenceNumbers, outcome:
 *                "success"|"partial"|"failure", reason, failures, restartAt,
 *                nextPosition}]} | null}
 */

const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');

/* interop.MaxPayloadSize in the RIE. */
const MAX_PAYLOAD = 6 * 1024 * 1024 + 100;
/* Bytes of a request body kept; the rest is counted and dropped. */
const READ_CAP = 16 * 1024 * 1024;
/* A body is stored parsed in the transcript up to this size. */
const TRANSCRIPT_BODY_MAX = 1024 * 1024;
/* Request log entries kept. */
const REQUEST_LOG_MAX = 10000;
const ERROR_TYPE_RE = /(Runtime|Function)\.[A-Z][a-zA-Z]+/;
const DEFAULT_ARN = 'arn:aws:lambda:us-east-1:123456789012:function:test_function';
const API = '/2018-06-01';

/* The RIE's fatalerror.GetValidRuntimeOrFunctionErrorType. */
function normaliseErrorType(value) {
  const v = value == null ? '' : String(value);
  if (ERROR_TYPE_RE.test(v)) return v;
  if (v.startsWith('Function.')) return 'Function.Unknown';
  return 'Runtime.Unknown';
}

/* Orders SequenceNumbers: by length, then bytewise (they overflow uint64). */
function compareSeq(a, b) {
  if (a.length !== b.length) return a.length < b.length ? -1 : 1;
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

function seqOf(record) {
  return record && record.dynamodb ? record.dynamodb.SequenceNumber : undefined;
}

/*
 * Lambda's reading of a stream invocation's outcome. outcome is
 * {error: true} or {body: <string>}. Returns {kind: 'success'} (advance past
 * the batch), {kind: 'partial', index, sequenceNumber, failures} (restart at
 * batch[index]) or {kind: 'failure', reason} (redeliver the whole batch).
 */
function checkpoint(batch, outcome) {
  if (outcome.error) return { kind: 'failure', reason: 'invocation error' };
  const text = outcome.body == null ? '' : String(outcome.body);
  if (text.trim() === '') return { kind: 'success' };
  let resp;
  try {
    resp = JSON.parse(text);
  } catch (e) {
    return { kind: 'failure', reason: 'response is not JSON' };
  }
  if (resp === null) return { kind: 'success' };
  if (typeof resp !== 'object' || Array.isArray(resp)) {
    return { kind: 'failure', reason: 'response is not an object' };
  }
  const list = resp.batchItemFailures;
  if (list == null || (Array.isArray(list) && list.length === 0)) return { kind: 'success' };
  if (!Array.isArray(list)) return { kind: 'failure', reason: 'batchItemFailures is not a list' };
  let best = -1;
  const failures = [];
  for (const item of list) {
    if (item === null || typeof item !== 'object' || Array.isArray(item)) {
      return { kind: 'failure', reason: 'a batchItemFailures entry is not an object' };
    }
    const id = item.itemIdentifier;
    if (typeof id !== 'string' || id === '') {
      return { kind: 'failure', reason: 'itemIdentifier missing, null or empty' };
    }
    const idx = batch.findIndex((r) => seqOf(r) === id);
    if (idx < 0) return { kind: 'failure', reason: `itemIdentifier ${id} is not in the batch` };
    failures.push(id);
    if (best < 0 || compareSeq(id, seqOf(batch[best])) < 0) best = idx;
  }
  return { kind: 'partial', index: best, sequenceNumber: seqOf(batch[best]), failures };
}

/* Loads an event given inline, as a file path, or verbatim. */
function eventBytes(spec, baseDir) {
  if (typeof spec.eventRaw === 'string') return Buffer.from(spec.eventRaw);
  if (typeof spec.event === 'string') return fs.readFileSync(path.resolve(baseDir, spec.event));
  if (spec.event === undefined) return Buffer.from('{}');
  return Buffer.from(JSON.stringify(spec.event));
}

/*
 * The redelivery driver: hands out one batch at a time and moves its
 * position by the checkpoint rule once the batch's outcome is known.
 */
class Redelivery {
  constructor(spec, baseDir) {
    let stream = spec.stream;
    if (typeof stream === 'string') {
      const text = fs.readFileSync(path.resolve(baseDir, stream), 'utf8').replace(/^\uFEFF/, '');
      stream = JSON.parse(text).Records;
    }
    if (!Array.isArray(stream)) throw new Error('redelivery.stream must be a list or an event file');
    this.records = stream;
    this.batchSize = Math.max(1, spec.batchSize || 100);
    this.maxRounds = Math.max(0, spec.maxRounds == null ? 10 : spec.maxRounds);
    this.deadlineInMs = spec.deadlineInMs;
    this.extra = spec.extra || {};
    this.position = 0;
    this.rounds = [];
  }

  /* The next invocation spec, or null when the stream is done or the
   * rounds are used up. */
  next() {
    if (this.position >= this.records.length || this.rounds.length >= this.maxRounds) return null;
    const batch = this.records.slice(this.position, this.position + this.batchSize);
    const round = {
      round: this.rounds.length + 1,
      start: this.position,
      sequenceNumbers: batch.map(seqOf),
      outcome: null,
      reason: null,
      failures: [],
      restartAt: null,
      nextPosition: null,
    };
    this.rounds.push(round);
    return {
      spec: { event: Object.assign({}, this.extra, { Records: batch }), deadlineInMs: this.deadlineInMs },
      round,
      batch,
    };
  }

  /* Applies the outcome of a round's invocation. */
  settle(round, batch, outcome) {
    const cp = checkpoint(batch, outcome);
    round.outcome = cp.kind;
    if (cp.kind === 'success') {
      this.position = round.start + batch.length;
    } else if (cp.kind === 'partial') {
      round.failures = cp.failures;
      round.restartAt = cp.sequenceNumber;
      this.position = round.start + cp.index;
    } else {
      round.reason = cp.reason;
      this.position = round.start;
    }
    round.nextPosition = this.position;
  }

  summary() {
    return {
      records: this.records.length,
      batchSize: this.batchSize,
      maxRounds: this.maxRounds,
      position: this.position,
      completed: this.position >= this.records.length,
      rounds: this.rounds,
    };
  }
}

/* Spells a header name as the scenario asks. */
function spell(name, headerCase) {
  if (headerCase === 'lower') return name.toLowerCase();
  if (headerCase === 'upper') return name.toUpperCase();
  return name;
}

/* A transcript entry for a posted body. */
function describeBody(buf, total) {
  const out = { bodyBytes: total };
  if (total <= TRANSCRIPT_BODY_MAX) {
    const text = buf.toString('utf8');
    try {
      out.body = JSON.parse(text);
    } catch (e) {
      out.bodyText = text.length > 4096 ? text.slice(0, 4096) : text;
    }
  } else {
    out.bodyText = buf.subarray(0, 200).toString('utf8');
  }
  return out;
}

/*
 * Starts an emulator for a scenario object. opts: {baseDir, transcript,
 * linger, timeout, grace, verbose, onExit(code)}. Resolves to
 * {port, transcript(), ended (Promise of the end reason), close()}.
 */
async function startEmulator(scenario, opts = {}) {
  const baseDir = opts.baseDir || process.cwd();
  const linger = opts.linger == null ? 500 : opts.linger;
  const grace = opts.grace == null ? 2000 : opts.grace;
  const globalTimeout = opts.timeout == null ? 60000 : opts.timeout;
  const headerCase = scenario.headerCase || 'canonical';
  const log = opts.verbose ? (...a) => process.stderr.write(`[rapi-emulator] ${a.join(' ')}\n`) : () => {};

  const queue = (scenario.invocations || []).slice();
  const driver = scenario.redelivery ? new Redelivery(scenario.redelivery, baseDir) : null;
  const fail500After = scenario.failNextWith500AfterInvocations;

  const t = {
    startedAt: Date.now(),
    ended: null,
    endedAt: null,
    initError: null,
    invocations: [],
    rejected: [],
    requests: [],
    connections: 0,
    redelivery: null,
  };
  const st = { state: 'Started', currentId: '', current: null, held: [], exited: false };
  const timers = new Set();
  let endResolve;
  const ended = new Promise((r) => { endResolve = r; });
  const conns = new WeakMap();
  const sockets = new Set();

  function later(ms, fn) {
    const h = setTimeout(() => { timers.delete(h); fn(); }, ms);
    timers.add(h);
    return h;
  }

  function snapshot() {
    if (driver) t.redelivery = driver.summary();
    return t;
  }

  function writeTranscript() {
    if (!opts.transcript) return;
    const tmp = `${opts.transcript}.tmp${process.pid}`;
    fs.writeFileSync(tmp, JSON.stringify(snapshot()));
    fs.renameSync(tmp, opts.transcript);
  }

  function endScenario(reason) {
    if (t.ended) return;
    t.ended = reason;
    t.endedAt = Date.now();
    log('scenario ended:', reason);
    try { writeTranscript(); } catch (e) { process.stderr.write(`transcript: ${e.message}\n`); }
    endResolve(reason);
    if (opts.lingerExit !== false) later(linger, () => close(0));
  }

  function close(code) {
    if (st.exited) return Promise.resolve();
    st.exited = true;
    for (const h of timers) clearTimeout(h);
    timers.clear();
    if (!t.ended) { t.ended = 'closed'; t.endedAt = Date.now(); endResolve('closed'); }
    try { writeTranscript(); } catch (e) { process.stderr.write(`transcript: ${e.message}\n`); }
    return new Promise((resolve) => {
      server.close(() => resolve());
      for (const s of sockets) s.destroy();
    }).then(() => { if (opts.onExit) opts.onExit(code); });
  }

  function send(res, status, obj, extraHeaders) {
    const body = Buffer.from(typeof obj === 'string' ? obj : JSON.stringify(obj));
    const h = Object.assign({ 'Content-Type': typeof obj === 'string' ? 'text/plain' : 'application/json',
      'Content-Length': body.length }, extraHeaders || {});
    res.writeHead(status, h);
    res.end(body);
  }

  const forbidden = (res, from, to, why) => send(res, 403, {
    errorType: 'InvalidStateTransition',
    errorMessage: `State transition from ${from} to ${to} failed for runtime. Error: ${why}`,
  });
  const invalidId = (res) => send(res, 400, { errorMessage: 'Invalid request ID', errorType: 'InvalidRequestID' });
  const internal = (res) => send(res, 500, { errorMessage: 'Internal Server Error', errorType: 'InternalServerError' });

  /* Picks the next invocation: the scripted list, then the driver. */
  function nextWork() {
    if (queue.length) return { spec: queue.shift(), round: null, batch: null };
    if (driver) return driver.next();
    return null;
  }

  /* Records what Lambda concluded about the current invocation. */
  function settle(inv, outcome) {
    if (inv.timer) { clearTimeout(inv.timer); timers.delete(inv.timer); inv.timer = null; }
    inv.outcome = outcome.error ? 'error' : 'response';
    if (inv._round) driver.settle(inv._round, inv._batch, outcome);
  }

  function deliver(res, work) {
    const spec = work.spec || {};
    const body = eventBytes(spec, baseDir);
    const now = Date.now();
    const deadlineIn = spec.deadlineInMs == null ? 30000 : spec.deadlineInMs;
    const id = spec.requestId || crypto.randomUUID();
    const trace = spec.traceId === undefined
      ? `Root=1-${Math.floor(now / 1000).toString(16)}-${crypto.randomBytes(12).toString('hex')};Parent=${crypto.randomBytes(8).toString('hex')};Sampled=1`
      : spec.traceId;
    const inv = {
      index: t.invocations.length,
      requestId: id,
      round: work.round ? work.round.round : null,
      deliveredAt: now,
      deadlineMs: now + deadlineIn,
      eventBytes: body.length,
      outcome: 'none',
      response: null,
      error: null,
      posts: [],
    };
    Object.defineProperty(inv, '_round', { value: work.round, enumerable: false });
    Object.defineProperty(inv, '_batch', { value: work.batch, enumerable: false });
    Object.defineProperty(inv, 'timer', { value: null, enumerable: false, writable: true });
    Object.defineProperty(inv, '_spec', { value: spec, enumerable: false });
    t.invocations.push(inv);
    st.state = 'Running';
    st.currentId = id;
    st.current = inv;

    const headers = {};
    const put = (name, value) => { if (value !== undefined && value !== null && value !== '') headers[name] = String(value); };
    put('Content-Type', 'application/json');
    put('Lambda-Runtime-Aws-Request-Id', id);
    put('Lambda-Runtime-Deadline-Ms', inv.deadlineMs);
    put('Lambda-Runtime-Invoked-Function-Arn', spec.functionArn || scenario.functionArn || DEFAULT_ARN);
    put('Lambda-Runtime-Trace-Id', trace);
    for (const [k, v] of Object.entries(spec.headers || {})) {
      for (const existing of Object.keys(headers)) {
        if (existing.toLowerCase() === k.toLowerCase()) delete headers[existing];
      }
      put(k, v);
    }
    const wire = {};
    for (const [k, v] of Object.entries(headers)) wire[spell(k, headerCase)] = v;
    if (!spec.chunked) wire[spell('Content-Length', headerCase)] = body.length;
    res.writeHead(200, wire);
    res.end(body);
    log('delivered', id, `${body.length} bytes`);
    inv.timer = later(deadlineIn + grace, () => {
      if (st.current === inv && st.state === 'Running') {
        inv.outcome = 'timeout';
        if (inv._round) driver.settle(inv._round, inv._batch, { error: true });
        endScenario('timeout');
      }
    });
  }

  function onNext(req, res, entry) {
    if (st.state === 'InitError') {
      entry.status = 403;
      return forbidden(res, 'InitError', 'Ready', 'State transition is not allowed');
    }
    if (t.ended) { entry.status = 'held'; st.held.push(res); return; }
    if (st.state === 'Running') {
      entry.status = 403;
      return forbidden(res, 'Running', 'Ready', `invocation ${st.currentId} has no response yet`);
    }
    if (fail500After != null && t.invocations.length >= fail500After) {
      entry.status = 500;
      internal(res);
      endScenario('500');
      return;
    }
    const work = nextWork();
    if (!work) {
      entry.status = 'held';
      st.held.push(res);
      endScenario('complete');
      return;
    }
    st.state = 'Ready';
    const delay = (work.spec && work.spec.delayMs) || 0;
    entry.status = 200;
    if (delay > 0) later(delay, () => deliver(res, work));
    else deliver(res, work);
  }

  function postRecord(req, kind, body, total, status) {
    const at = Date.now();
    const rec = { kind, status, at };
    if (st.current) rec.msBeforeDeadline = st.current.deadlineMs - at;
    rec.contentType = req.headers['content-type'] || null;
    if (kind === 'error') {
      const raw = req.headersDistinct['lambda-runtime-function-error-type'];
      rec.rawErrorType = raw ? raw[0] : null;
      rec.errorType = normaliseErrorType(rec.rawErrorType);
    }
    return Object.assign(rec, describeBody(body, total));
  }

  function onPost(req, res, entry, kind, id, body, total) {
    if (id === '' || id !== st.currentId) {
      entry.status = 400;
      t.rejected.push({ kind, requestId: id, status: 400, at: Date.now() });
      return invalidId(res);
    }
    const inv = st.current;
    const to = kind === 'response' ? 'InvocationResponse' : 'InvocationErrorResponse';
    if (st.state !== 'Running') {
      const from = st.state === 'ResponseSent' ? 'RuntimeResponseSentState' : st.state;
      entry.status = 403;
      inv.posts.push(postRecord(req, kind, body, total, 403));
      return forbidden(res, from, to, 'State transition is not allowed');
    }
    if (inv._spec.postStatus === 500) {
      entry.status = 500;
      inv.posts.push(postRecord(req, kind, body, total, 500));
      return internal(res);
    }
    if (kind === 'response' && total > MAX_PAYLOAD) {
      entry.status = 413;
      const rec = postRecord(req, kind, body, total, 413);
      inv.posts.push(rec);
      inv.error = { errorType: 'Function.ResponseSizeTooLarge', status: 413, at: rec.at, msBeforeDeadline: rec.msBeforeDeadline };
      st.state = 'ResponseSent';
      settle(inv, { error: true });
      return send(res, 413, {
        errorMessage: `Exceeded maximum allowed payload size (${MAX_PAYLOAD} bytes).`,
        errorType: 'RequestEntityTooLarge',
      });
    }
    entry.status = 202;
    const rec = postRecord(req, kind, body, total, 202);
    inv.posts.push(rec);
    if (kind === 'response') inv.response = rec;
    else inv.error = rec;
    st.state = 'ResponseSent';
    settle(inv, kind === 'response' ? { body: body.toString('utf8') } : { error: true });
    return send(res, 202, { status: 'OK' });
  }

  function onInitError(req, res, entry, body, total) {
    if (st.state !== 'Started') {
      entry.status = 403;
      const from = st.state === 'ResponseSent' ? 'RuntimeResponseSentState' : st.state;
      return forbidden(res, from, 'InitError', 'State transition is not allowed');
    }
    entry.status = 202;
    const rec = postRecord(req, 'initError', body, total, 202);
    delete rec.msBeforeDeadline;
    rec.contentType = (() => { try { JSON.parse(body.toString('utf8')); return 'application/json'; } catch (e) { return 'application/octet-stream'; } })();
    rec.requestContentType = req.headers['content-type'] || null;
    const raw = req.headersDistinct['lambda-runtime-function-error-type'];
    rec.rawErrorType = raw ? raw[0] : null;
    rec.errorType = normaliseErrorType(rec.rawErrorType);
    t.initError = rec;
    st.state = 'InitError';
    send(res, 202, { status: 'OK' });
    endScenario('initError');
  }

  const server = http.createServer((req, res) => {
    const entry = {
      n: t.requests.length + 1,
      method: req.method,
      path: req.url,
      status: null,
      at: Date.now(),
      connection: conns.get(req.socket),
      userAgent: req.headers['user-agent'] || null,
      contentLength: req.headers['content-length'] == null ? null : Number(req.headers['content-length']),
      transferEncoding: req.headers['transfer-encoding'] || null,
      expect: req.headers.expect || null,
      contentType: req.headers['content-type'] || null,
    };
    /* The control endpoint is not part of what the runtime did. */
    const control = req.url.startsWith('/control/');
    if (!control && t.requests.length < REQUEST_LOG_MAX) t.requests.push(entry);
    const chunks = [];
    let kept = 0;
    let total = 0;
    req.on('data', (c) => {
      total += c.length;
      if (kept < READ_CAP) {
        const part = c.subarray(0, READ_CAP - kept);
        chunks.push(part);
        kept += part.length;
      }
    });
    req.on('error', () => {});
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const url = new URL(req.url, 'http://localhost');
      const p = url.pathname;
      log(req.method, p);
      if (req.method === 'GET' && p === '/control/transcript') {
        entry.status = 200;
        return send(res, 200, snapshot());
      }
      if (req.method === 'GET' && (p === `${API}/ping` || p === '/ping')) {
        entry.status = 200;
        return send(res, 200, 'pong');
      }
      if (req.method === 'GET' && p === `${API}/runtime/invocation/next`) return onNext(req, res, entry);
      if (req.method === 'POST' && p === `${API}/runtime/init/error`) return onInitError(req, res, entry, body, total);
      const m = /^\/2018-06-01\/runtime\/invocation\/([^/]*)\/(response|error)$/.exec(p);
      if (req.method === 'POST' && m) {
        let id;
        try { id = decodeURIComponent(m[1]); } catch (e) { id = m[1]; }
        return onPost(req, res, entry, m[2], id, body, total);
      }
      entry.status = 404;
      return send(res, 404, { errorMessage: 'Not found', errorType: 'NotFound' });
    });
  });
  server.keepAliveTimeout = 60000;
  server.headersTimeout = 65000;
  server.requestTimeout = 0;
  server.on('connection', (sock) => {
    t.connections += 1;
    conns.set(sock, t.connections);
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
  });

  /* Pick the port now; with refuseFirstMs, listen on it only later. */
  let port = opts.port || 0;
  if (!port) {
    port = await new Promise((resolve, reject) => {
      const probe = http.createServer();
      probe.once('error', reject);
      probe.listen(0, '127.0.0.1', () => {
        const p = probe.address().port;
        probe.close(() => resolve(p));
      });
    });
  }
  const listen = () => new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const refuse = scenario.refuseFirstMs || 0;
  let listening;
  if (refuse > 0) {
    listening = new Promise((resolve, reject) => later(refuse, () => listen().then(resolve, reject)));
  } else {
    await listen();
    listening = Promise.resolve();
  }
  later(globalTimeout, () => endScenario('timeout'));

  return {
    port,
    listening,
    ended,
    transcript: snapshot,
    close: () => close(0),
  };
}

/* Command line entry point. */
async function main(argv) {
  const args = { linger: 500, timeout: 60000, grace: 2000 };
  let scenarioPath = null;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--transcript') args.transcript = path.resolve(val());
    else if (a === '--linger') args.linger = Number(val());
    else if (a === '--timeout') args.timeout = Number(val());
    else if (a === '--grace') args.grace = Number(val());
    else if (a === '--verbose') args.verbose = true;
    else if (!scenarioPath) scenarioPath = a;
    else throw new Error(`unexpected argument ${a}`);
  }
  let scenario = {};
  let baseDir = process.cwd();
  if (scenarioPath) {
    scenario = JSON.parse(fs.readFileSync(scenarioPath, 'utf8'));
    baseDir = path.dirname(path.resolve(scenarioPath));
  }
  const emu = await startEmulator(scenario, Object.assign({ baseDir, onExit: (code) => process.exit(code) }, args));
  const stop = () => emu.close();
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdout.write(`${JSON.stringify({ port: emu.port })}\n`);
  emu.listening.catch((e) => {
    process.stderr.write(`runtime-api emulator: cannot listen: ${e.message}\n`);
    process.exit(2);
  });
}

module.exports = { normaliseErrorType, compareSeq, checkpoint, Redelivery, startEmulator, MAX_PAYLOAD };

if (require.main === module) {
  main(process.argv.slice(2)).catch((e) => {
    process.stderr.write(`runtime-api emulator: ${e.message}\n`);
    process.exit(2);
  });
}

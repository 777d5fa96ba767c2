'use strict';
/*
 * bootstrap.test.js - the `bootstrap` executable end to end against the
 * Runtime API emulator (node --test; MM_BOOTSTRAP names the binary, CTest
 * sets it). Each run: a task directory with a decode.lua, an emulator with
 * a scenario, the bootstrap with a Lambda-like environment and the
 * in-memory store; then the transcript, exit status and logs are checked.
 */
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { runBootstrap } = require('./run-bootstrap.js');

const BOOTSTRAP = process.env.MM_BOOTSTRAP;
const ROOT = path.resolve(__dirname, '../..');
const EXAMPLE = path.join(ROOT, 'lua/examples/order_totals');
const FIXTURES = path.resolve(ROOT, '../shared/fixtures/ddb-streams');
const skip = BOOTSTRAP ? false : 'MM_BOOTSTRAP is not set';

/* Runs the bootstrap against a scenario. files: {name: text} for the task
 * directory; env: extra/removed (null) variables. Resolves to {code,
 * signal, killed, stdout, stderr, t (transcript)}. Bounded: the emulator
 * ends by itself (linger, --timeout); the bootstrap is killed shortly
 * after the emulator exits if it is still blocked. */
function run({ scenario, files = {}, env = {}, handler = 'decode' }) {
  return runBootstrap({
    scenario,
    files,
    command: [BOOTSTRAP, []],
    env: (port, task) => {
      const benv = {
        PATH: process.env.PATH,
        AWS_LAMBDA_RUNTIME_API: `127.0.0.1:${port}`,
        _HANDLER: handler,
        LAMBDA_TASK_ROOT: task,
        MURMUR_STORE: 'memory://',
        AWS_LAMBDA_FUNCTION_NAME: 'test_function',
      };
      for (const [k, v] of Object.entries(env)) {
        if (v === null) delete benv[k];
        else benv[k] = v;
      }
      return benv;
    },
  });
}

const decode = fs.readFileSync(path.join(EXAMPLE, 'decode.lua'), 'utf8');
const exampleEvent = path.join(EXAMPLE, 'event.json');

test('serves invocations, answers bad events with errors, exits 0 on a 500', { skip }, async () => {
  const r = await run({
    handler: 'decode.lua',
    files: { 'decode.lua': decode },
    scenario: {
      failNextWith500AfterInvocations: 4,
      invocations: [
        { event: exampleEvent, requestId: 'ok-1', deadlineInMs: 10000 },
        { eventRaw: 'not json', requestId: 'bad-1' },
        { event: { hello: 1 }, requestId: 'bad-2' },
        { event: path.join(FIXTURES, 'java-libs-dynamo-event.json'), requestId: 'ok-2' },
      ],
    },
  });
  assert.equal(r.t.ended, '500');
  assert.equal(r.killed, false, r.stderr);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /answered 500/);
  const byId = Object.fromEntries(r.t.invocations.map((i) => [i.requestId, i]));
  assert.equal(byId['ok-1'].outcome, 'response');
  assert.ok(Array.isArray(byId['ok-1'].response.body.batchItemFailures));
  assert.ok(byId['ok-1'].response.msBeforeDeadline > 0);
  assert.equal(byId['bad-1'].outcome, 'error');
  assert.equal(byId['bad-1'].error.errorType, 'Runtime.InvalidJSON');
  assert.equal(byId['bad-1'].error.rawErrorType, 'Runtime.InvalidJSON');
  assert.deepEqual(Object.keys(byId['bad-1'].error.body), ['errorMessage', 'errorType', 'stackTrace']);
  assert.equal(byId['bad-2'].error.errorType, 'Runtime.UnsupportedEvent');
  assert.equal(byId['ok-2'].outcome, 'response');
  // One kept-alive connection; every request identifies the runtime.
  const api = r.t.requests;
  assert.ok(api.length >= 9);
  assert.ok(api.every((q) => q.connection === 1), JSON.stringify(api.map((q) => q.connection)));
  assert.ok(api.every((q) => q.userAgent === 'murmur-ddb/0.1'));
  // stdout carries only single-line JSON (EMF).
  for (const line of r.stdout.split('\n').filter(Boolean)) JSON.parse(line);
});

test('sets _X_AMZN_TRACE_ID per invocation and removes it when absent', { skip }, async () => {
  const script = `
    return {
      aggregate = "count",
      decode = function(rec) error("trace=" .. tostring(os.getenv("_X_AMZN_TRACE_ID"))) end,
      key = function(o) return "k" end,
    }`;
  const event = { Records: [{ eventID: 'e1', eventName: 'INSERT', eventSource: 'aws:dynamodb',
    dynamodb: { Keys: { pk: { S: 'a' } }, SequenceNumber: '100000000000000000001', SizeBytes: 1, StreamViewType: 'KEYS_ONLY' } }] };
  const r = await run({
    files: { 'decode.lua': script },
    scenario: { invocations: [
      { event, requestId: 't-1', traceId: 'Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1' },
      { event, requestId: 't-2', traceId: null },
      { event, requestId: 't-3', traceId: 'Root=1-third' },
    ] },
  });
  assert.equal(r.t.ended, 'complete');
  const a = r.stderr.indexOf('trace=Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1');
  const b = r.stderr.indexOf('trace=nil');
  const c = r.stderr.indexOf('trace=Root=1-third');
  assert.ok(a >= 0 && b > a && c > b, r.stderr);
  assert.ok(r.t.invocations.every((i) => i.outcome === 'response'));
});

test('init errors are posted with their type and the bootstrap exits 1', { skip }, async () => {
  const cases = [
    { name: 'syntax error', files: { 'decode.lua': 'local x = 1\nreturn {\n  decode = function(r) end,,\n}\n' },
      type: 'Function.InvalidScript', message: /decode\.lua:3:/ },
    { name: 'pipeline table without decode', files: { 'decode.lua': 'return { aggregate = "count", key = function(o) return "k" end }\n' },
      type: 'Function.InvalidScript', message: /decode/ },
    { name: 'no MURMUR_STORE', files: { 'decode.lua': decode }, env: { MURMUR_STORE: null },
      type: 'Runtime.InvalidConfig', message: /^MURMUR_STORE is not set/ },
    { name: 'malformed setting', files: { 'decode.lua': decode }, env: { MURMUR_MAX_ATTEMPTS: 'lots' },
      type: 'Runtime.InvalidConfig', message: /MURMUR_MAX_ATTEMPTS/ },
    { name: 'handler with ..', files: { 'decode.lua': decode }, handler: '../decode',
      type: 'Runtime.NoSuchHandler', message: /_HANDLER/ },
    { name: 'handler with /', files: { 'decode.lua': decode }, handler: 'sub/decode',
      type: 'Runtime.NoSuchHandler', message: /_HANDLER/ },
    { name: 'missing script', files: {}, handler: 'missing',
      type: 'Runtime.NoSuchHandler', message: /missing\.lua/ },
    { name: 'no _HANDLER', files: { 'decode.lua': decode }, env: { _HANDLER: null },
      type: 'Runtime.NoSuchHandler', message: /_HANDLER is not set/ },
  ];
  const results = await Promise.all(cases.map((c) => run({
    files: c.files, env: c.env || {}, handler: c.handler || 'decode',
    scenario: { invocations: [{ event: exampleEvent }] },
  })));
  cases.forEach((c, i) => {
    const r = results[i];
    assert.equal(r.t.ended, 'initError', `${c.name}: ${r.stderr}`);
    assert.equal(r.code, 1, `${c.name}: exit ${r.code} ${r.signal}`);
    assert.equal(r.killed, false, c.name);
    assert.equal(r.t.initError.rawErrorType, c.type, c.name);
    assert.equal(r.t.initError.errorType, c.type, `${c.name}: kept by the RIE rule`);
    assert.equal(r.t.initError.body.errorType, c.type, c.name);
    assert.match(r.t.initError.body.errorMessage, c.message, c.name);
    assert.deepEqual(r.t.initError.body.stackTrace, [], c.name);
    assert.equal(r.t.invocations.length, 0, c.name);
  });
});

test('an event over 8 MiB and a response over 6 MB are answered with errors; the loop goes on', { skip }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mm-boot-ev-'));
  try {
    const huge = path.join(dir, 'huge.json');
    fs.writeFileSync(huge, `{"Records":[],"pad":"${'x'.repeat(8 * 1024 * 1024)}"}`);
    // A tumbling-window event's state is echoed in the response: 6.5 MB of it.
    const windowed = path.join(dir, 'window.json');
    fs.writeFileSync(windowed, JSON.stringify({
      Records: [], window: { start: '2020-01-01T00:00:00Z', end: '2020-01-01T00:15:00Z' },
      state: { big: 'y'.repeat(6.5 * 1024 * 1024) }, shardId: 's', eventSourceARN: 'arn', isFinalInvokeForWindow: false,
      isWindowTerminatedEarly: false,
    }));
    const r = await run({
      files: { 'decode.lua': decode },
      scenario: { invocations: [
        { event: huge, requestId: 'huge' },
        { event: windowed, requestId: 'window' },
        { event: exampleEvent, requestId: 'after' },
      ] },
    });
    assert.equal(r.t.ended, 'complete', r.stderr);
    const [a, b, c] = r.t.invocations;
    assert.equal(a.outcome, 'error');
    assert.equal(a.error.errorType, 'Runtime.EventTooLarge');
    assert.match(a.error.body.errorMessage, /larger than/);
    assert.equal(b.outcome, 'error');
    assert.equal(b.error.errorType, 'Function.ResponseSizeTooLarge');
    assert.deepEqual(b.posts.map((p) => p.status), [413, 403]);
    assert.equal(b.posts[1].rawErrorType, 'Function.ResponseSizeTooLarge');
    assert.equal(c.outcome, 'response');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('starts before the Runtime API listens (connect retries)', { skip }, async () => {
  const r = await run({
    files: { 'decode.lua': decode },
    scenario: { refuseFirstMs: 400, invocations: [{ event: exampleEvent, requestId: 'late' }] },
  });
  assert.equal(r.t.ended, 'complete', r.stderr);
  assert.equal(r.t.invocations[0].outcome, 'response');
});

'use strict';
/*
 * emulator.test.js - the Runtime API emulator's own rules (node --test).
 *
 * Pure rules (error type normalisation, SequenceNumber order, the
 * checkpoint rule) are tested as functions; the HTTP behaviour (status
 * codes and bodies, the 413 limit, state transitions, redelivery order, the
 * command line contract) over real HTTP on 127.0.0.1.
 */
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');

const emu = require('./runtime-api.js');

const FIXTURES = path.resolve(__dirname, '../../../shared/fixtures/ddb-streams');
const API = '/2018-06-01';

/* One HTTP request; resolves to {status, headers, text, json}. */
function call(port, method, p, body, headers = {}, agent = undefined) {
  return new Promise((resolve, reject) => {
    const data = body == null ? null : Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    const h = Object.assign({}, headers);
    if (data) h['Content-Length'] = data.length;
    const req = http.request({ host: '127.0.0.1', port, method, path: p, headers: h, agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try { json = JSON.parse(text); } catch (e) { json = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
    });
    req.setTimeout(10000, () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

const next = (port) => call(port, 'GET', `${API}/runtime/invocation/next`);
const respond = (port, id, body) => call(port, 'POST', `${API}/runtime/invocation/${encodeURIComponent(id)}/response`, body);
const postError = (port, id, type, body = { errorMessage: 'm', errorType: type, stackTrace: [] }) =>
  call(port, 'POST', `${API}/runtime/invocation/${encodeURIComponent(id)}/error`, body,
    type == null ? {} : { 'Lambda-Runtime-Function-Error-Type': type });

async function withEmulator(scenario, fn, opts = {}) {
  const e = await emu.startEmulator(scenario, Object.assign({ linger: 50, timeout: 20000, lingerExit: false }, opts));
  await e.listening;
  try {
    return await fn(e);
  } finally {
    await e.close();
  }
}

const rec = (seq) => ({ eventID: `id-${seq}`, eventName: 'INSERT', dynamodb: { SequenceNumber: seq, SizeBytes: 1 } });

/* ------------------------------------------------------------------ */

test('errorType normalisation follows the RIE regex, unanchored', () => {
  const cases = [
    ['Runtime.NoSuchHandler', 'Runtime.NoSuchHandler'],
    ['Function.ResponseSizeTooLarge', 'Function.ResponseSizeTooLarge'],
    ['Runtime.Ab', 'Runtime.Ab'],
    ['Runtime.A', 'Runtime.Unknown'],           // [A-Z][a-zA-Z]+ needs two letters
    ['Function.X', 'Function.Unknown'],
    ['Function.oops', 'Function.Unknown'],
    ['Function.', 'Function.Unknown'],
    ['Unhandled', 'Runtime.Unknown'],           // the docs' own example
    ['runtime.Lower', 'Runtime.Unknown'],
    ['Runtime.1bad', 'Runtime.Unknown'],
    ['prefix Runtime.NotAnchored suffix', 'prefix Runtime.NotAnchored suffix'],
    ['Function.Bad-Dash', 'Function.Bad-Dash'],  // the match is a prefix only
    ['', 'Runtime.Unknown'],
    [null, 'Runtime.Unknown'],
    [undefined, 'Runtime.Unknown'],
  ];
  for (const [input, want] of cases) assert.equal(emu.normaliseErrorType(input), want, String(input));
});

test('SequenceNumbers order by length, then bytes', () => {
  assert.ok(emu.compareSeq('9', '10') < 0);
  assert.ok(emu.compareSeq('111', '222') < 0);
  assert.equal(emu.compareSeq('4421584500000000017450439091', '4421584500000000017450439091'), 0);
  // 40 digits: beyond uint64 and beyond double precision.
  const a = '9999999999999999999999999999999999999998';
  const b = '9999999999999999999999999999999999999999';
  assert.ok(emu.compareSeq(a, b) < 0 && emu.compareSeq(b, a) > 0);
  assert.ok(emu.compareSeq('99999999999999999999', '100000000000000000000') < 0);
  const sorted = ['333', '1000', '222', '9'].sort(emu.compareSeq);
  assert.deepEqual(sorted, ['9', '222', '333', '1000']);
});

test('checkpoint: success, partial at the lowest sequence number, whole-batch failure', () => {
  const batch = ['99999999999999999999', '100000000000000000005', '100000000000000000006'].map(rec);
  for (const body of ['', '   ', 'null', '{}', '{"batchItemFailures":[]}', '{"batchItemFailures":null}', '{"other":1}']) {
    assert.equal(emu.checkpoint(batch, { body }).kind, 'success', body);
  }
  // Bytewise, "100..." sorts before "999..."; by number (length first) it does not.
  let cp = emu.checkpoint(batch, { body: JSON.stringify({ batchItemFailures: [
    { itemIdentifier: '100000000000000000006' }, { itemIdentifier: '99999999999999999999' }] }) });
  assert.equal(cp.kind, 'partial');
  assert.equal(cp.index, 0);
  assert.equal(cp.sequenceNumber, '99999999999999999999');
  assert.deepEqual(cp.failures, ['100000000000000000006', '99999999999999999999']);
  cp = emu.checkpoint(batch, { body: '{"batchItemFailures":[{"itemIdentifier":"100000000000000000006"},{"itemIdentifier":"100000000000000000005"}]}' });
  assert.equal(cp.index, 1);
  const failures = [
    '{"batchItemFailures":[{"itemIdentifier":""}]}',
    '{"batchItemFailures":[{"itemIdentifier":null}]}',
    '{"batchItemFailures":[{"itemId":"100000000000000000005"}]}',   // bad key name
    '{"batchItemFailures":[{"itemIdentifier":"id-100000000000000000005"}]}', // eventID
    '{"batchItemFailures":[{"itemIdentifier":"100000000000000000005"},{"itemIdentifier":"7"}]}',
    '{"batchItemFailures":[null]}',
    '{"batchItemFailures":"100000000000000000005"}',
    'not json',
    '[1]',
    '42',
  ];
  for (const body of failures) assert.equal(emu.checkpoint(batch, { body }).kind, 'failure', body);
  assert.equal(emu.checkpoint(batch, { error: true }).kind, 'failure');
});

test('next delivers the event with the Lambda headers', async () => {
  await withEmulator({ invocations: [{ event: { a: 1 }, requestId: 'r-1', deadlineInMs: 4000, traceId: 'Root=1-x', headers: { 'X-Extra': 'y' } }] }, async (e) => {
    const before = Date.now();
    const r = await next(e.port);
    assert.equal(r.status, 200);
    assert.equal(r.text, '{"a":1}');
    assert.equal(r.headers['lambda-runtime-aws-request-id'], 'r-1');
    assert.equal(r.headers['lambda-runtime-trace-id'], 'Root=1-x');
    assert.equal(r.headers['x-extra'], 'y');
    assert.match(r.headers['lambda-runtime-invoked-function-arn'], /^arn:aws:lambda:/);
    const deadline = Number(r.headers['lambda-runtime-deadline-ms']);
    assert.ok(deadline >= before + 4000 && deadline <= Date.now() + 4000);
    assert.equal(r.headers['content-type'], 'application/json');
  });
});

test('status codes and bodies: 202, 400 InvalidRequestID, 403 double post', async () => {
  await withEmulator({ invocations: [{ requestId: 'a' }, { requestId: 'b' }] }, async (e) => {
    // No invocation yet: any id is invalid.
    let r = await respond(e.port, 'a', {});
    assert.equal(r.status, 400);
    assert.deepEqual(r.json, { errorMessage: 'Invalid request ID', errorType: 'InvalidRequestID' });
    await next(e.port);
    r = await respond(e.port, 'zzz', {});
    assert.equal(r.status, 400);
    r = await respond(e.port, '', {});
    assert.equal(r.status, 400); // empty id
    r = await respond(e.port, 'a', { ok: 1 });
    assert.equal(r.status, 202);
    assert.deepEqual(r.json, { status: 'OK' });
    r = await respond(e.port, 'a', { ok: 2 });
    assert.equal(r.status, 403);
    assert.equal(r.json.errorType, 'InvalidStateTransition');
    assert.match(r.json.errorMessage, /^State transition from RuntimeResponseSentState to InvocationResponse failed/);
    r = await postError(e.port, 'a', 'Function.X');
    assert.equal(r.status, 403);
    // Init error after the first /next: 403.
    r = await call(e.port, 'POST', `${API}/runtime/init/error`, { errorMessage: 'late' });
    assert.equal(r.status, 403);
    assert.match(r.json.errorMessage, /to InitError failed/);
    // The next invocation; a /next before its answer is refused.
    r = await next(e.port);
    assert.equal(r.headers['lambda-runtime-aws-request-id'], 'b');
    r = await next(e.port);
    assert.equal(r.status, 403);
    r = await respond(e.port, 'a', {});
    assert.equal(r.status, 400); // no longer the current invocation
    const t = e.transcript();
    assert.equal(t.invocations[0].outcome, 'response');
    assert.deepEqual(t.invocations[0].response.body, { ok: 1 });
    assert.deepEqual(t.invocations[0].posts.map((p) => p.status), [202, 403, 403]);
    assert.equal(t.invocations[1].outcome, 'none');
  });
});

test('413 above 6 MiB + 100 bytes; the limit itself is accepted', async () => {
  await withEmulator({ invocations: [{ requestId: 'big' }, { requestId: 'fits' }] }, async (e) => {
    await next(e.port);
    let r = await respond(e.port, 'big', Buffer.alloc(emu.MAX_PAYLOAD + 1, 0x20));
    assert.equal(r.status, 413);
    assert.deepEqual(r.json, { errorMessage: 'Exceeded maximum allowed payload size (6291556 bytes).', errorType: 'RequestEntityTooLarge' });
    // As in the RIE, the invocation is finished: an error post is refused.
    r = await postError(e.port, 'big', 'Function.ResponseSizeTooLarge');
    assert.equal(r.status, 403);
    await next(e.port);
    r = await respond(e.port, 'fits', Buffer.alloc(emu.MAX_PAYLOAD, 0x20));
    assert.equal(r.status, 202);
    const t = e.transcript();
    assert.equal(t.invocations[0].outcome, 'error');
    assert.equal(t.invocations[0].error.errorType, 'Function.ResponseSizeTooLarge');
    assert.equal(t.invocations[0].posts[0].bodyBytes, emu.MAX_PAYLOAD + 1);
    assert.equal(t.invocations[1].outcome, 'response');
    assert.equal(t.invocations[1].response.bodyBytes, emu.MAX_PAYLOAD);
  });
});

test('error posts: type normalised in the transcript, body kept verbatim', async () => {
  await withEmulator({ invocations: [{ requestId: 'e1' }, { requestId: 'e2' }, { requestId: 'e3' }] }, async (e) => {
    await next(e.port);
    assert.equal((await postError(e.port, 'e1', 'Unhandled')).status, 202);
    await next(e.port);
    assert.equal((await postError(e.port, 'e2', null, 'raw text')).status, 202);
    await next(e.port);
    assert.equal((await postError(e.port, 'e3', 'Function.InvalidEvent')).status, 202);
    const t = e.transcript();
    assert.equal(t.invocations[0].error.rawErrorType, 'Unhandled');
    assert.equal(t.invocations[0].error.errorType, 'Runtime.Unknown');
    assert.deepEqual(t.invocations[0].error.body, { errorMessage: 'm', errorType: 'Unhandled', stackTrace: [] });
    assert.equal(t.invocations[1].error.rawErrorType, null);
    assert.equal(t.invocations[1].error.errorType, 'Runtime.Unknown');
    assert.equal(t.invocations[1].error.bodyText, 'raw text');
    assert.equal(t.invocations[2].error.errorType, 'Function.InvalidEvent');
    assert.ok(t.invocations[2].error.msBeforeDeadline > 0);
  });
});

test('init error: 202 before the first /next, then /next is 403 and the scenario ends', async () => {
  await withEmulator({ invocations: [{ requestId: 'never' }] }, async (e) => {
    let r = await call(e.port, 'POST', `${API}/runtime/init/error`, { errorMessage: 'decode.lua:3: x', errorType: 'Runtime.InitError', stackTrace: [] },
      { 'Lambda-Runtime-Function-Error-Type': 'Runtime.InitError' });
    assert.equal(r.status, 202);
    assert.equal(await e.ended, 'initError');
    r = await next(e.port);
    assert.equal(r.status, 403);
    assert.match(r.json.errorMessage, /^State transition from InitError to Ready failed/);
    const t = e.transcript();
    assert.equal(t.initError.errorType, 'Runtime.InitError');
    assert.equal(t.initError.contentType, 'application/json');
    assert.equal(t.invocations.length, 0);
  });
  await withEmulator({}, async (e) => {
    const r = await call(e.port, 'POST', `${API}/runtime/init/error`, 'not json');
    assert.equal(r.status, 202);
    const t = e.transcript();
    assert.equal(t.initError.contentType, 'application/octet-stream');
    assert.equal(t.initError.errorType, 'Runtime.Unknown');
  });
});

test('failNextWith500AfterInvocations answers /next with 500 InternalServerError', async () => {
  await withEmulator({ failNextWith500AfterInvocations: 1, invocations: [{ requestId: 'x' }, { requestId: 'y' }] }, async (e) => {
    await next(e.port);
    await respond(e.port, 'x', {});
    const r = await next(e.port);
    assert.equal(r.status, 500);
    assert.deepEqual(r.json, { errorMessage: 'Internal Server Error', errorType: 'InternalServerError' });
    assert.equal(await e.ended, '500');
  });
});

test('redelivery follows the checkpoint rule', async () => {
  const seqs = ['100000000000000000001', '100000000000000000002', '100000000000000000003',
    '100000000000000000004', '100000000000000000005'];
  const scenario = { redelivery: { stream: seqs.map(rec), batchSize: 3, maxRounds: 10 } };
  await withEmulator(scenario, async (e) => {
    const delivered = [];
    const take = async () => {
      const r = await next(e.port);
      assert.equal(r.status, 200);
      delivered.push(r.json.Records.map((x) => x.dynamodb.SequenceNumber));
      return r.headers['lambda-runtime-aws-request-id'];
    };
    // Round 1: records 1-3; failures at 3 and 2: restart at 2.
    let id = await take();
    await respond(e.port, id, { batchItemFailures: [{ itemIdentifier: seqs[2] }, { itemIdentifier: seqs[1] }] });
    // Round 2: records 2-4; success: advance past the batch.
    id = await take();
    await respond(e.port, id, { batchItemFailures: [] });
    // Round 3: record 5; an invocation error redelivers it.
    id = await take();
    await postError(e.port, id, 'Function.Boom');
    // Round 4: record 5 again; an eventID instead of a SequenceNumber is a whole-batch failure.
    id = await take();
    await respond(e.port, id, { batchItemFailures: [{ itemIdentifier: 'id-x' }] });
    // Round 5: record 5; a null response is success.
    id = await take();
    await respond(e.port, id, 'null');
    // The stream is done: /next is held and the scenario ends.
    const held = next(e.port).catch(() => null);
    assert.equal(await e.ended, 'complete');
    assert.deepEqual(delivered, [
      seqs.slice(0, 3), seqs.slice(1, 4), [seqs[4]], [seqs[4]], [seqs[4]],
    ]);
    const t = e.transcript();
    assert.equal(t.redelivery.completed, true);
    assert.deepEqual(t.redelivery.rounds.map((r) => r.outcome), ['partial', 'success', 'failure', 'failure', 'success']);
    assert.equal(t.redelivery.rounds[0].restartAt, seqs[1]);
    assert.deepEqual(t.redelivery.rounds.map((r) => r.nextPosition), [1, 4, 4, 4, 5]);
    assert.deepEqual(t.invocations.map((i) => i.round), [1, 2, 3, 4, 5]);
    await e.close();
    await held;
  });
});

test('redelivery is bounded by maxRounds and reads fixture files', async () => {
  const scenario = { redelivery: { stream: path.join(FIXTURES, 'java-libs-dynamo-event.json'), batchSize: 2, maxRounds: 3 } };
  await withEmulator(scenario, async (e) => {
    for (let i = 0; i < 3; i++) {
      const r = await next(e.port);
      assert.equal(r.json.Records.length, 2);
      assert.equal(r.json.Records[0].dynamodb.SequenceNumber, '4421584500000000017450439091');
      await postError(e.port, r.headers['lambda-runtime-aws-request-id'], 'Function.Boom');
    }
    const held = next(e.port).catch(() => null);
    assert.equal(await e.ended, 'complete');
    const t = e.transcript();
    assert.equal(t.redelivery.completed, false);
    assert.equal(t.redelivery.rounds.length, 3);
    assert.equal(t.redelivery.position, 0);
    await e.close();
    await held;
  });
});

test('an unanswered invocation ends the scenario at deadline + grace', async () => {
  await withEmulator({ invocations: [{ requestId: 'slow', deadlineInMs: 50 }] }, async (e) => {
    await next(e.port);
    assert.equal(await e.ended, 'timeout');
    assert.equal(e.transcript().invocations[0].outcome, 'timeout');
  }, { grace: 50 });
});

/* Starts the command line emulator; resolves to {child, port, exited}. */
function spawnCli(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(__dirname, 'runtime-api.js'), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise((r) => child.on('exit', (code, signal) => r({ code, signal })));
    let buf = '';
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error('no port line')); }, 10000);
    child.stdout.on('data', (c) => {
      buf += c;
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        resolve({ child, port: JSON.parse(buf.slice(0, nl)).port, exited });
      }
    });
    child.on('error', reject);
  });
}

test('command line: port line, refuseFirstMs, transcript file, exit after linger', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rapi-emu-'));
  fs.writeFileSync(path.join(dir, 'event.json'), '{"from":"file"}');
  fs.writeFileSync(path.join(dir, 'scenario.json'), JSON.stringify({
    refuseFirstMs: 300,
    invocations: [{ event: 'event.json', requestId: 'cli-1' }],
  }));
  const transcript = path.join(dir, 'transcript.json');
  const { child, port, exited } = await spawnCli([path.join(dir, 'scenario.json'), '--transcript', transcript, '--linger', '200', '--timeout', '10000']);
  try {
    await assert.rejects(next(port), /ECONNREFUSED/);
    let r;
    for (let i = 0; i < 50 && !r; i++) {
      r = await next(port).catch(() => new Promise((res) => setTimeout(() => res(undefined), 50)));
    }
    assert.ok(r, 'never started listening');
    assert.equal(r.text, '{"from":"file"}');
    assert.equal((await respond(port, 'cli-1', { done: true })).status, 202);
    const held = next(port).catch((e) => e);
    const started = Date.now();
    const { code } = await exited;
    assert.equal(code, 0);
    assert.ok(Date.now() - started >= 150, 'exited before the linger');
    assert.ok((await held) instanceof Error, 'the held /next is cut when the emulator exits');
    const t = JSON.parse(fs.readFileSync(transcript, 'utf8'));
    assert.equal(t.ended, 'complete');
    assert.deepEqual(t.invocations[0].response.body, { done: true });
    assert.equal(t.requests[t.requests.length - 1].status, 'held');
  } finally {
    child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('command line: SIGTERM writes the transcript and exits', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rapi-emu-'));
  const transcript = path.join(dir, 't.json');
  fs.writeFileSync(path.join(dir, 's.json'), '{"invocations":[{"requestId":"s1"}]}');
  const { child, port, exited } = await spawnCli([path.join(dir, 's.json'), '--transcript', transcript]);
  try {
    await next(port);
    child.kill('SIGTERM');
    const { code } = await exited;
    assert.equal(code, 0);
    const t = JSON.parse(fs.readFileSync(transcript, 'utf8'));
    assert.equal(t.ended, 'closed');
    assert.equal(t.invocations[0].requestId, 's1');
    assert.equal(t.invocations[0].outcome, 'none');
  } finally {
    child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

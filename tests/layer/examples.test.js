'use strict';
/*
 * examples.test.js - the example pipelines of lua/examples/ and
 * `murmur-ddb invoke --watch`, through the real murmur-ddb binary (node
 * --test; CTest sets MM_CLI).
 *
 * Each example directory holds decode.lua, event.json and expected.txt:
 * Lambda's response on the first line, then every row the event produces,
 * as `murmur-ddb query` prints them, ordered by key and bucket. The test
 * checks the script, invokes it on an SQLite store and queries every key of
 * expected.txt; invokes it again (dedup on: nothing counted twice); and
 * runs it once under --watch, whose first run lists every row the event
 * changed, so a row missing from expected.txt is caught too.
 */
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');

const CLI = process.env.MM_CLI;
const ROOT = path.resolve(__dirname, '../..');
const EXAMPLES = path.join(ROOT, 'lua/examples');
const skip = CLI ? false : 'MM_CLI is not set';

/* Runs murmur-ddb synchronously; returns {status, stdout, stderr}. */
function cli(args, opts = {}) {
  const r = spawnSync(CLI, args, { encoding: 'utf8', timeout: 30000, ...opts });
  if (r.error) throw r.error;
  return r;
}

function lines(text) {
  return text.split('\n').filter((l) => l !== '');
}

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'mm-examples-'));
test.after(() => fs.rmSync(scratch, { recursive: true, force: true }));

const examples = fs.readdirSync(EXAMPLES).filter((d) => fs.existsSync(path.join(EXAMPLES, d, 'decode.lua'))).sort();

test('the three example pipelines are there', () => {
  for (const name of ['order_totals', 'daily_customers', 'top_products']) {
    assert.ok(examples.includes(name), name);
    for (const f of ['decode.lua', 'event.json', 'expected.txt'])
      assert.ok(fs.existsSync(path.join(EXAMPLES, name, f)), `${name}/${f}`);
  }
});

for (const name of examples) {
  const dir = path.join(EXAMPLES, name);
  const script = path.join(dir, 'decode.lua');
  const event = path.join(dir, 'event.json');

  test(`example ${name}: invoke and query give expected.txt`, { skip }, () => {
    const expected = lines(fs.readFileSync(path.join(dir, 'expected.txt'), 'utf8'));
    assert.ok(expected.length >= 2, 'expected.txt holds a response and at least one row');
    const check = cli(['check', script]);
    assert.equal(check.status, 0, check.stdout + check.stderr);
    assert.match(check.stdout, /: ok$/m);

    const db = path.join(scratch, `${name}.db`);
    const store = ['--store', `sqlite://${db}`, '--dedup', `sqlite://${db}`];
    const keys = [...new Set(expected.slice(1).map((l) => JSON.parse(l).key))];
    const query = () => keys.flatMap((k) => {
      const q = cli(['query', '--store', `sqlite://${db}`, k]);
      assert.equal(q.status, 0, q.stderr);
      return lines(q.stdout);
    });
    const first = cli(['invoke', '--script', script, '--event', event, ...store]);
    assert.equal(first.status, 0, first.stderr);
    assert.deepEqual([...lines(first.stdout), ...query()], expected);
    // The same batch again, as Lambda redelivers it: dedup skips every
    // record already merged, so the rows stay as they are.
    const again = cli(['invoke', '--script', script, '--event', event, ...store]);
    assert.equal(again.status, 0, again.stderr);
    assert.deepEqual([...lines(again.stdout), ...query()], expected);
    assert.match(again.stderr, /"DedupSkips":[1-9]/);
  });

  test(`example ${name}: the event changes exactly the rows of expected.txt`, { skip }, () => {
    const expected = lines(fs.readFileSync(path.join(dir, 'expected.txt'), 'utf8'));
    const r = cli(['invoke', '--script', script, '--event', event, '--watch', '--watch-max', '1']);
    assert.equal(r.status, 0, r.stderr);
    const n = expected.length - 1;
    assert.deepEqual(lines(r.stdout),
      ['-- run 1: start', ...expected, `-- ${n} row${n === 1 ? '' : 's'} changed`]);
  });
}

/*
 * Starts `murmur-ddb invoke --watch ...` and returns a handle whose
 * run(n) resolves to the stdout lines of the n-th run (header to trailer)
 * once its trailer has arrived, and exit() to {code, signal}. Bounded: a
 * run that does not arrive within 10 s rejects, and the process is killed.
 */
function watch(args, cwd) {
  const child = spawn(CLI, ['invoke', ...args, '--watch'], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const waiters = [];
  const exited = new Promise((r) => child.on('exit', (code, signal) => r({ code, signal })));
  const runs = () => {
    const all = lines(out);
    const res = [];
    let cur = null;
    for (const l of all) {
      if (/^-- run \d+: /.test(l)) { cur = [l]; continue; }
      if (!cur) continue;
      cur.push(l);
      if (/^-- \d+ rows? changed$/.test(l)) { res.push(cur); cur = null; }
    }
    return res;
  };
  const poke = () => {
    const done = runs();
    for (const w of waiters.splice(0)) {
      if (done.length >= w.n) { clearTimeout(w.timer); w.resolve(done[w.n - 1]); } else waiters.push(w);
    }
  };
  child.stdout.on('data', (c) => { out += c; poke(); });
  child.stderr.on('data', (c) => { err += c; });
  return {
    run(n) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          child.kill('SIGKILL');
          reject(new Error(`run ${n} did not arrive; stdout:\n${out}\nstderr:\n${err}`));
        }, 10000);
        waiters.push({ n, resolve, timer });
        poke();
      });
    },
    exit: () => exited,
    stderr: () => err,
    term: () => child.kill('SIGTERM'),
    kill: () => child.kill('SIGKILL'),
  };
}

/* Rewrites a file so that polling sees it changed (size or mtime). */
function rewrite(file, text) {
  fs.writeFileSync(file, text);
  const t = new Date(Date.now() + 2000);
  fs.utimesSync(file, t, t);
}

test('invoke --watch re-runs on every script change and prints the rows that changed', { skip }, async () => {
  const dir = fs.mkdtempSync(path.join(scratch, 'watch-'));
  const src = fs.readFileSync(path.join(EXAMPLES, 'order_totals/decode.lua'), 'utf8');
  fs.copyFileSync(path.join(EXAMPLES, 'order_totals/event.json'), path.join(dir, 'event.json'));
  const script = path.join(dir, 'decode.lua');
  fs.writeFileSync(script, src);
  const w = watch(['--script', 'decode.lua', '--event', 'event.json', '--watch-max', '4',
    '--watch-interval-ms', '20'], dir);
  try {
    const expected = lines(fs.readFileSync(path.join(EXAMPLES, 'order_totals/expected.txt'), 'utf8'));
    assert.deepEqual(await w.run(1), ['-- run 1: start', ...expected, '-- 3 rows changed']);

    // Every amount doubled: every row changed.
    const doubled = src.replace('amount = d }', 'amount = d * 2 }');
    assert.notEqual(doubled, src);
    rewrite(script, doubled);
    assert.deepEqual(await w.run(2), [
      '-- run 2: decode.lua changed',
      '{"batchItemFailures":[]}',
      '{"key":"customer#c-42","bucket":0,"value":39.98}',
      '{"key":"customer#c-7","bucket":0,"value":14.7}',
      '{"key":"customer#c-99","bucket":0,"value":0.6}',
      '-- 3 rows changed',
    ]);

    // A syntax error: an init error naming decode.lua:LINE; nothing changes.
    rewrite(script, doubled.replace('return {', 'return {,'));
    const r3 = await w.run(3);
    assert.equal(r3.length, 3, r3.join('\n'));
    assert.equal(r3[0], '-- run 3: decode.lua changed');
    const e = JSON.parse(r3[1]);
    assert.equal(e.errorType, 'Function.InvalidScript');
    assert.match(e.errorMessage, /^decode\.lua:\d+: /);
    assert.equal(r3[2], '-- 0 rows changed');

    // Fixed, and customer c-99 skipped: compared with run 2 (the last run
    // that worked), only c-99's row changed: it is gone.
    rewrite(script, doubled.replace('if d == nil or d == 0 then return nil end',
      'if d == nil or d == 0 or img.customer_id == "c-99" then return nil end'));
    assert.deepEqual(await w.run(4), [
      '-- run 4: decode.lua changed',
      '{"batchItemFailures":[]}',
      '{"key":"customer#c-99","bucket":0,"value":null}',
      '-- 1 row changed',
    ]);
    assert.deepEqual(await w.exit(), { code: 0, signal: null }, w.stderr());
  } finally {
    w.kill();
  }
});

test('invoke --watch re-runs on an event change; a given store and dedup are used as they are; a refused event changes nothing', { skip }, async () => {
  const dir = fs.mkdtempSync(path.join(scratch, 'watch-ev-'));
  const ev = JSON.parse(fs.readFileSync(path.join(EXAMPLES, 'order_totals/event.json'), 'utf8'));
  const eventFile = path.join(dir, 'event.json');
  fs.writeFileSync(eventFile, JSON.stringify(ev));
  const db = `sqlite://${path.join(dir, 'state.db')}`;
  const w = watch(['--script', path.join(EXAMPLES, 'order_totals/decode.lua'), '--event', 'event.json',
    '--store', db, '--dedup', db, '--watch-max', '3', '--watch-interval-ms', '20'], dir);
  try {
    const r1 = await w.run(1);
    assert.equal(r1.at(-1), '-- 3 rows changed');
    // One more order: the records already merged are duplicates (the
    // dedup table persists), so only the new customer's row changes.
    const extra = JSON.parse(JSON.stringify(ev.Records[0]));
    extra.eventID = 'feedfacefeedfacefeedfacefeedface';
    extra.dynamodb.SequenceNumber = '4000000000000000000900';
    extra.dynamodb.NewImage.customer_id = { S: 'c-1' };
    extra.dynamodb.NewImage.total = { N: '2.5' };
    ev.Records.push(extra);
    rewrite(eventFile, JSON.stringify(ev));
    assert.deepEqual(await w.run(2), [
      '-- run 2: event.json changed',
      '{"batchItemFailures":[]}',
      '{"key":"customer#c-1","bucket":0,"value":2.5}',
      '-- 1 row changed',
    ]);
    // An event that is not JSON: the invocation error, nothing changed.
    rewrite(eventFile, '{"Records": [');
    const r3 = await w.run(3);
    assert.equal(r3[0], '-- run 3: event.json changed');
    assert.equal(JSON.parse(r3[1]).errorType, 'Runtime.InvalidJSON');
    assert.deepEqual(r3.slice(2), ['-- 0 rows changed']);
    assert.deepEqual(await w.exit(), { code: 0, signal: null });
  } finally {
    w.kill();
  }
  // The store kept everything: the old rows and the new one.
  const q = cli(['query', '--store', db, 'customer#c-42']);
  assert.equal(q.stdout.trim(), '{"key":"customer#c-42","bucket":0,"value":19.99}');
});

test('invoke --watch --dlq parks each run\'s poison pills', { skip }, () => {
  const dir = fs.mkdtempSync(path.join(scratch, 'watch-dlq-'));
  const ex = path.join(EXAMPLES, 'order_totals');
  const dlq = path.join(dir, 'dlq.jsonl');
  const r = cli(['invoke', '--script', path.join(ex, 'decode.lua'), '--event', path.join(ex, 'event.json'),
    '--watch', '--watch-max', '1', '--dlq', dlq]);
  assert.equal(r.status, 0, r.stderr);
  const parked = lines(fs.readFileSync(dlq, 'utf8')).map((l) => JSON.parse(l));
  assert.equal(parked.length, 1);
  assert.equal(parked[0].eventID, '000000000000000000000000c0ffee05');
  assert.match(parked[0].error, /^decode\.lua:16: order o-1004 has no customer_id/);
});

test('invoke --watch stops at SIGTERM with status 0', { skip }, async () => {
  const ex = path.join(EXAMPLES, 'order_totals');
  const w = watch(['--script', path.join(ex, 'decode.lua'), '--event', path.join(ex, 'event.json'),
    '--watch-interval-ms', '20'], scratch);
  try {
    await w.run(1);
    const t0 = Date.now();
    const exit = w.exit();
    w.term();
    assert.deepEqual(await exit, { code: 0, signal: null });
    assert.ok(Date.now() - t0 < 2000);
  } finally {
    w.kill();
  }
});

test('--watch options need --watch and valid values', { skip }, () => {
  const ex = path.join(EXAMPLES, 'order_totals');
  const base = ['invoke', '--script', path.join(ex, 'decode.lua'), '--event', path.join(ex, 'event.json')];
  for (const extra of [['--watch-max', '2'], ['--watch', '--watch-max', '0'], ['--watch', '--watch-interval-ms', '5'],
    ['--watch', '--watch-max', 'x']]) {
    const r = cli([...base, ...extra], { cwd: scratch });
    assert.equal(r.status, 2, `${extra.join(' ')}: ${r.stderr}`);
  }
});

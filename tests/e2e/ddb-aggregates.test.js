'use strict';
/*
 * ddb-aggregates.test.js - every aggregate end to end: the real `bootstrap`
 * under the Runtime API emulator's redelivery driver writes to dynalite;
 * the table is then read back twice, with a plain Scan signed by the AWS
 * SDK's signer (independent of the C client) and through query.h (the
 * query driver), and compared with tables computed here from the generated
 * stream: BigInt cents for sums, plain comparisons for min/max/first/last,
 * sorted unions for sets, counted weights for top-k (decoded from the
 * stored sketch bytes too), the true distinct count for hll. Windowed
 * pipelines check every (key, bucket), each row's ttl, and --last windows.
 */
const test = require('node:test');
const assert = require('node:assert/strict');
const L = require('./lib.js');

const skip = L.BOOTSTRAP && L.QUERY_TOOL ? false : 'MM_BOOTSTRAP / MM_QUERY_TOOL are not set';
const N = L.QUICK ? 300 : 600;
const T0 = 1764072000; /* 2025-11-25T12:00:00Z, an hour boundary */
const STEP = 37; /* seconds between records: N records span several hours */
const HOUR = 3600;
const RETENTION = 86400;

let dyn;
let ddb;
test.before(async () => {
  if (skip) return;
  const { startServer, DdbClient } = L.servers();
  dyn = await startServer('dynalite.js');
  ddb = new DdbClient({ port: dyn.port });
});
test.after(async () => {
  if (ddb) ddb.close();
  if (dyn) await dyn.stop();
});

const { records, facts } = L.ordersStream({ run: 'agg', n: N, seed: 20251125, t0: T0, step: STEP });
const counted = facts.filter((f) => f.counted);

/* Groups the counted facts by fn(f) -> key. */
function group(fn) {
  const m = new Map();
  for (const f of counted) {
    const k = fn(f);
    if (!m.has(k)) m.set(k, []);
    m.get(k).push(f);
  }
  return m;
}

const PIPELINES = {
  sum: `aggregate = "sum", key = function(o) return "sum#" .. o.customer end,
        value = function(o) return murmur.decimal(o, "amount") end,`,
  count: `aggregate = "count", key = function(o) return "count#" .. o.customer end,`,
  min: `aggregate = "min", key = function(o) return "min#" .. o.customer end,
        value = function(o) return o.price end,`,
  max: `aggregate = "max", key = function(o) return "max#" .. o.customer end,
        value = function(o) return o.item end,`,
  first: `aggregate = "first", key = function(o) return "first#" .. o.customer end,
          value = function(o) return o.item end,`,
  last: `aggregate = "last", key = function(o) return "last#" .. o.customer end,
         value = function(o) return o.item end,`,
  set: `aggregate = "set", key = function(o) return "set#" .. o.customer end,
        value = function(o) return o.item end,`,
  hll: `aggregate = "hll", keys = function(o) return { "hll#all", "hll#" .. o.customer } end,
        value = function(o) return o.user end,`,
  topk: `aggregate = "topk", key = function(o) return "topk#all" end,
         value = function(o) return o.item end,`,
  wsum: `aggregate = "sum", window = { granularity = "1h", retention = "1d" },
         key = function(o) return "wsum#" .. o.customer end,
         value = function(o) return murmur.decimal(o, "amount") end,`,
  wmin: `aggregate = "min", window = { granularity = "1h", retention = "1d" },
         key = function(o) return "wmin#" .. o.customer end,
         value = function(o) return o.price end,`,
  whll: `aggregate = "hll", window = { granularity = "1h", retention = "1d" },
         key = function(o) return "whll#all" end,
         value = function(o) return o.user end,`,
};

function scriptOf(name) {
  return `local murmur = require "murmur"\nreturn { name = "${name}",\n${L.ORDERS_DECODE}\n${PIPELINES[name]}\n}\n`;
}

const TABLE = 'e2e_aggs';
let table; /* byKey of the scan, after every pipeline ran */
let env;

test('every aggregate through bootstrap, the emulator and dynalite', { skip, timeout: 240000 }, async (t) => {
  await ddb.createTable(TABLE);
  env = L.lambdaEnv({ port: dyn.port, table: TABLE });
  const names = Object.keys(PIPELINES);
  /* Two pipelines at a time: dynalite is one Node process. */
  const runs = {};
  for (let i = 0; i < names.length; i += 2) {
    const part = names.slice(i, i + 2);
    const res = await Promise.all(part.map((name) => L.runBootstrap({
      script: scriptOf(name), env, records, batchSize: 100, maxRounds: 20,
    })));
    part.forEach((name, j) => { runs[name] = res[j]; });
  }
  for (const name of names) {
    const r = runs[name];
    const rd = r.t.redelivery;
    assert.equal(r.ended, 'complete', `${name}: ${r.stderr}`);
    assert.ok(rd.completed, `${name}: stream not completed: ${JSON.stringify(rd.rounds.map((x) => x.outcome))}\n${r.stderr}`);
    assert.equal(rd.rounds.length, Math.ceil(N / 100), `${name}: every batch succeeds the first time`);
    assert.ok(rd.rounds.every((x) => x.outcome === 'success'), name);
    /* Metrics: every record seen once, REMOVEs skipped, poison counted. */
    assert.equal(L.metricSum(r.emf, 'Records'), N, name);
    assert.equal(L.metricSum(r.emf, 'DecodeErrors'), facts.filter((f) => f.eventName !== 'REMOVE' && !f.customer).length, name);
    assert.equal(L.metricSum(r.emf, 'DeadLetters'), 0, name);
    assert.match(r.stderr, /has no customer/, `${name}: poison pills are logged`);
  }
  table = L.byKey(await ddb.scanAll(TABLE));
  t.diagnostic(`${table.size} keys in ${TABLE}`);
});

/* Rows of one pipeline's prefix, as {pk: rows}. */
function rowsOf(prefix) {
  const out = new Map();
  for (const [pk, rows] of table) if (pk.startsWith(`${prefix}#`)) out.set(pk, rows);
  return out;
}

/* Asserts that the prefix's keys are exactly the expected ones, each with
 * one unwindowed row, and returns {pk: item}. */
function singleRows(prefix, expectedKeys) {
  const got = rowsOf(prefix);
  assert.deepEqual([...got.keys()].sort(), [...expectedKeys].sort(), `${prefix}: keys`);
  const out = new Map();
  for (const [pk, rows] of got) {
    assert.equal(rows.length, 1, `${pk}: one row`);
    assert.equal(rows[0].sk, 0, `${pk}: bucket 0 when not windowed`);
    assert.equal(rows[0].item.ttl, undefined, `${pk}: no ttl when not windowed`);
    out.set(pk, rows[0].item);
  }
  return out;
}

function needTable() {
  assert.ok(table, 'the pipelines did not run');
}

test('sum and count: exact decimals, beyond a double', { skip }, async () => {
  needTable();
  const sums = group((f) => `sum#${f.customer}`);
  const items = singleRows('sum', sums.keys());
  let wide = 0;
  for (const [pk, fs] of sums) {
    const want = fs.reduce((s, f) => s + f.amount, 0n);
    if (want > 10n ** 17n || want < -(10n ** 17n)) wide++;
    assert.equal(L.dec(items.get(pk).v.N), want, pk);
  }
  assert.ok(wide > 0, 'some sums need more digits than a double holds');
  const counts = group((f) => `count#${f.customer}`);
  const citems = singleRows('count', counts.keys());
  for (const [pk, fs] of counts) assert.equal(citems.get(pk).v.N, String(fs.length), pk);
  /* The same values through query.h. */
  for (const pk of [...sums.keys()].slice(0, 4)) {
    const rows = await L.query(['--store', `dynamodb://${TABLE}`, pk], env);
    assert.equal(rows.length, 1);
    assert.equal(rows[0].bucket, 0);
    assert.equal(L.dec(rows[0].valueText), sums.get(pk).reduce((s, f) => s + f.amount, 0n), pk);
  }
});

test('min, max, first, last', { skip }, async () => {
  needTable();
  const mins = group((f) => `min#${f.customer}`);
  const items = singleRows('min', mins.keys());
  for (const [pk, fs] of mins) {
    const want = fs.reduce((m, f) => (f.price < m ? f.price : m), fs[0].price);
    assert.equal(L.dec(items.get(pk).v.N), want, pk);
  }
  const maxs = group((f) => `max#${f.customer}`);
  const mitems = singleRows('max', maxs.keys());
  for (const [pk, fs] of maxs) {
    const want = fs.reduce((m, f) => (Buffer.compare(Buffer.from(f.item), Buffer.from(m)) > 0 ? f.item : m), fs[0].item);
    assert.equal(mitems.get(pk).v.S, want, pk);
  }
  for (const which of ['first', 'last']) {
    const g = group((f) => `${which}#${f.customer}`);
    const its = singleRows(which, g.keys());
    for (const [pk, fs] of g) {
      const pickF = fs.reduce((m, f) => ((which === 'first' ? f.time < m.time : f.time > m.time) ? f : m), fs[0]);
      assert.equal(its.get(pk).v.S, pickF.item, pk);
      assert.equal(Number(its.get(pk).t.N), pickF.time, `${pk}: event time kept`);
    }
  }
  const pk = [...maxs.keys()][0];
  const rows = await L.query(['--store', `dynamodb://${TABLE}`, pk], env);
  assert.equal(rows[0].valueText, JSON.stringify(mitems.get(pk).v.S));
});

test('set: the union of members', { skip }, async () => {
  needTable();
  const sets = group((f) => `set#${f.customer}`);
  const items = singleRows('set', sets.keys());
  for (const [pk, fs] of sets) {
    const want = [...new Set(fs.map((f) => f.item))].sort();
    assert.deepEqual([...items.get(pk).v.SS].sort(), want, pk);
    const rows = await L.query(['--store', `dynamodb://${TABLE}`, pk], env);
    assert.deepEqual(JSON.parse(rows[0].valueText), want, `${pk} through query`);
  }
});

test('hll: distinct counts within the sketch error', { skip }, async () => {
  needTable();
  const g = group((f) => `hll#${f.customer}`);
  g.set('hll#all', counted);
  const items = singleRows('hll', g.keys());
  for (const [pk, fs] of g) {
    const raw = Buffer.from(items.get(pk).v.B, 'base64');
    assert.equal(raw[0], 0x48, `${pk}: an hll sketch`);
    assert.ok(Number(items.get(pk).ver.N) >= 1, `${pk}: version attribute`);
    const truth = new Set(fs.map((f) => f.user)).size;
    const rows = await L.query(['--store', `dynamodb://${TABLE}`, pk], env);
    const est = Number(rows[0].valueText);
    /* p = 12: 1.6% standard error; small counts are near exact. */
    assert.ok(Math.abs(est - truth) <= Math.max(1, 0.05 * truth), `${pk}: estimate ${est}, truth ${truth}`);
  }
});

test('topk: exact counts below the sketch capacity', { skip }, async () => {
  needTable();
  const items = singleRows('topk', ['topk#all']);
  const counts = new Map();
  for (const f of counted) counts.set(f.item, (counts.get(f.item) || 0) + 1);
  const sk = L.decodeTopk(Buffer.from(items.get('topk#all').v.B, 'base64'));
  assert.equal(sk.total, BigInt(counted.length));
  assert.equal(sk.counters.length, counts.size);
  for (const c of sk.counters) {
    assert.equal(c.count, BigInt(counts.get(c.item)), c.item);
    assert.equal(c.err, 0n, c.item);
  }
  const want = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, 10);
  const rows = await L.query(['--store', `dynamodb://${TABLE}`, 'topk#all'], env);
  assert.deepEqual(JSON.parse(rows[0].valueText), want);
});

test('windowed: every bucket and ttl, and --last windows', { skip }, async () => {
  needTable();
  const bucketOf = (f) => Math.floor(f.time / HOUR);
  const wsum = group((f) => `wsum#${f.customer}`);
  const got = rowsOf('wsum');
  assert.deepEqual([...got.keys()].sort(), [...wsum.keys()].sort());
  for (const [pk, fs] of wsum) {
    const want = new Map();
    for (const f of fs) want.set(bucketOf(f), (want.get(bucketOf(f)) || 0n) + f.amount);
    const rows = got.get(pk);
    assert.deepEqual(rows.map((r) => r.sk), [...want.keys()].sort((a, b) => a - b), `${pk}: buckets`);
    for (const r of rows) {
      assert.equal(L.dec(r.item.v.N), want.get(r.sk), `${pk}/${r.sk}`);
      assert.equal(Number(r.item.ttl.N), (r.sk + 1) * HOUR + RETENTION, `${pk}/${r.sk}: ttl`);
    }
  }
  const buckets = [...new Set(counted.map(bucketOf))].sort((a, b) => a - b);
  assert.ok(buckets.length >= 4, `the stream spans ${buckets.length} hours`);
  /* now: 30 minutes into the third-last bucket; --last 2h = that bucket
   * (partial) and the one before. */
  const nowBucket = buckets[buckets.length - 3];
  const now = nowBucket * HOUR + 1800;
  const inWin = (f) => bucketOf(f) >= nowBucket - 1 && bucketOf(f) <= nowBucket;
  const base = ['--store', `dynamodb://${TABLE}`, '--last', '2h', '--granularity', '1h', '--now', String(now)];
  for (const pk of [...wsum.keys()].slice(0, 6)) {
    const fs = wsum.get(pk).filter(inWin);
    const rows = await L.query([...base, '--aggregate', 'sum', pk], env);
    if (!fs.length) {
      assert.equal(rows.length, 0, `${pk}: nothing in the window prints nothing`);
      continue;
    }
    assert.equal(rows.length, 1, pk);
    assert.equal(rows[0].from, nowBucket - 1);
    assert.equal(rows[0].to, nowBucket);
    assert.equal(rows[0].rows, new Set(fs.map(bucketOf)).size);
    assert.equal(L.dec(rows[0].valueText), fs.reduce((s, f) => s + f.amount, 0n), pk);
  }
  /* A DynamoDB number row does not say whether it is a sum or a min: the
   * aggregate decides how rows combine. */
  const wmin = group((f) => `wmin#${f.customer}`);
  let checked = 0;
  for (const [pk, all] of wmin) {
    const fs = all.filter(inWin);
    if (!fs.length) continue;
    const rows = await L.query([...base, '--aggregate', 'min', pk], env);
    const want = fs.reduce((m, f) => (f.price < m ? f.price : m), fs[0].price);
    assert.equal(L.dec(rows[0].valueText), want, pk);
    checked++;
    if (checked === 4) {
      await assert.rejects(L.query([...base, pk], env), /--aggregate/);
      await assert.rejects(L.query([...base, '--aggregate', 'set', pk], env), /not a set aggregate/);
      break;
    }
  }
  assert.ok(checked >= 1);
  /* hll rows name their aggregate; the window merges the sketches. */
  const users = new Set(counted.filter(inWin).map((f) => f.user)).size;
  const rows = await L.query([...base, 'whll#all'], env);
  assert.equal(rows[0].rows, 2);
  const est = Number(rows[0].valueText);
  assert.ok(Math.abs(est - users) <= Math.max(1, 0.05 * users), `window estimate ${est}, truth ${users}`);
  /* One bucket. */
  const one = await L.query(['--store', `dynamodb://${TABLE}`, '--bucket', String(nowBucket), 'whll#all'], env);
  assert.equal(one.length, 1);
  assert.equal(one[0].bucket, nowBucket);
});

'use strict';
/*
 * lib.js - shared by the DynamoDB end-to-end tests (tests/e2e/*.test.js):
 * exact decimals, a deterministic stream generator, running the real
 * `bootstrap` against the Runtime API emulator's redelivery driver, the
 * EMF lines it prints, and the query driver.
 *
 * Environment (CTest sets it, cmake/82-ddb-e2e.cmake): MM_BOOTSTRAP (the
 * bootstrap binary), MM_QUERY_TOOL (tests/e2e/query_tool.c), MM_E2E_QUICK=1
 * for fewer records and batches (sanitizer builds).
 */
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, execFile } = require('node:child_process');

const ROOT = path.resolve(__dirname, '../..');
const SERVERS = path.join(ROOT, 'tests/servers');
const { startEmulator, compareSeq } = require('../emulator/runtime-api.js');

const BOOTSTRAP = process.env.MM_BOOTSTRAP;
const QUERY_TOOL = process.env.MM_QUERY_TOOL;
const QUICK = process.env.MM_E2E_QUICK === '1';

/* Loads tests/servers/ddb-client.js, or explains how to install it: the
 * tests fail (never skip) without their servers. */
function servers() {
  const probe = path.join(SERVERS, 'node_modules/dynalite/package.json');
  if (!fs.existsSync(probe)) {
    throw new Error(`dynalite is not installed (${probe} missing): run scripts/test, which runs npm ci in tests/servers`);
  }
  return require(path.join(SERVERS, 'ddb-client.js'));
}

/* ---- exact decimals ------------------------------------------------ */

/* Decimal text (sign, digits, fraction, exponent: what DynamoDB and the
 * runtime print) as a BigInt count of 10^-scale units; throws when the
 * value has more decimals than scale. */
function dec(text, scale = 2) {
  const m = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(String(text).trim());
  if (!m || (m[2] === '' && (m[3] || '') === '')) throw new Error(`not a decimal: ${text}`);
  const frac = m[3] || '';
  let v = BigInt((m[2] || '') + frac || '0');
  const exp = (m[4] ? Number(m[4]) : 0) - frac.length + scale;
  if (exp >= 0) v *= 10n ** BigInt(exp);
  else {
    const d = 10n ** BigInt(-exp);
    if (v % d !== 0n) throw new Error(`${text} has more than ${scale} decimals`);
    v /= d;
  }
  return m[1] === '-' ? -v : v;
}

/* A BigInt of cents as DynamoDB prints it: no trailing zeros ("12.5"). */
function centsText(c) {
  const neg = c < 0n;
  const a = neg ? -c : c;
  let s = (a / 100n).toString();
  const f = (a % 100n).toString().padStart(2, '0').replace(/0+$/, '');
  if (f) s += `.${f}`;
  return (neg ? '-' : '') + s;
}

/* ---- deterministic input ------------------------------------------ */

/* mulberry32: same seed, same sequence. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/* A stream record with increasing SequenceNumber n and the given images. */
function streamRecord({ run, n, eventName = 'INSERT', time, id, newImage, oldImage }) {
  const d = {
    ApproximateCreationDateTime: time,
    Keys: { id: { S: id } },
    SequenceNumber: `4${String(n).padStart(24, '0')}`,
    SizeBytes: 120,
    StreamViewType: 'NEW_AND_OLD_IMAGES',
  };
  if (newImage) d.NewImage = newImage;
  if (oldImage) d.OldImage = oldImage;
  return {
    eventID: `${run}-${n}`,
    eventName,
    eventVersion: '1.1',
    eventSource: 'aws:dynamodb',
    awsRegion: 'us-east-1',
    eventSourceARN: 'arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2026-01-01T00:00:00.000',
    dynamodb: d,
  };
}

/*
 * An orders stream of n records and, beside it, what each record means
 * (the facts the expected tables are computed from). 85% INSERT, 10%
 * MODIFY, 5% REMOVE; 1% of the images lack a customer (a poison pill);
 * event times are strictly increasing from t0 (step seconds apart).
 * amount: cents, one in eight a 22-digit value (beyond a double);
 * price: cents up to 999,999.99; item: 30 names, skewed; user: 400 ids.
 */
function ordersStream({ run, n, seed, t0, step, customers = 20 }) {
  const r = rng(seed);
  const pick = (k) => Math.floor(r() * k);
  const records = [];
  const facts = [];
  for (let i = 0; i < n; i++) {
    const x = r();
    const eventName = x < 0.85 ? 'INSERT' : x < 0.95 ? 'MODIFY' : 'REMOVE';
    let amount;
    if (pick(8) === 0) amount = BigInt(`${1 + pick(9)}${String(pick(1e9)).padStart(9, '0')}${String(pick(1e9)).padStart(9, '0')}${String(pick(1e5)).padStart(5, '0')}`);
    else amount = BigInt(pick(220001) - 20000);
    const price = BigInt(1 + pick(99999999));
    const item = `item${String(Math.floor(30 * r() * r())).padStart(2, '0')}`;
    const user = `u${pick(400)}`;
    const customer = pick(100) === 0 ? null : `c${String(pick(customers)).padStart(2, '0')}`;
    const id = `o${run}-${i}`;
    const time = t0 + i * step;
    const image = {
      id: { S: id },
      amount: { N: centsText(amount) },
      price: { N: centsText(price) },
      item: { S: item },
      user: { S: user },
    };
    if (customer) image.customer = { S: customer };
    const old = { id: { S: id }, amount: { N: '1' }, item: { S: 'old' }, customer: { S: 'c-old' } };
    records.push(streamRecord({
      run, n: i + 1, eventName, time, id,
      newImage: eventName === 'REMOVE' ? undefined : image,
      oldImage: eventName === 'INSERT' ? undefined : (eventName === 'REMOVE' ? image : old),
    }));
    facts.push({ eventName, customer, amount, price, item, user, time, counted: eventName !== 'REMOVE' && customer !== null });
  }
  return { records, facts };
}

/* The Lua decode shared by the orders pipelines: REMOVE is skipped, an
 * image without a customer is a poison pill. */
const ORDERS_DECODE = `
  decode = function(rec)
    if rec.eventName == "REMOVE" then return nil end
    local o = rec.dynamodb.NewImage
    if o.customer == nil then error("order " .. o.id .. " has no customer") end
    return o
  end,`;

/* ---- running the bootstrap ---------------------------------------- */

/* Environment of a bootstrap talking to a DynamoDB endpoint. */
function lambdaEnv({ port, table, dedupTable, extra = {} }) {
  const { TEST_CREDENTIALS } = servers();
  const env = {
    PATH: process.env.PATH,
    _HANDLER: 'decode',
    AWS_LAMBDA_FUNCTION_NAME: 'e2e',
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey,
    AWS_ENDPOINT_URL_DYNAMODB: `http://127.0.0.1:${port}`,
    MURMUR_STORE: `dynamodb://${table}`,
  };
  if (dedupTable) env.MURMUR_DEDUP = `dynamodb://${dedupTable}`;
  for (const k of ['ASAN_OPTIONS', 'UBSAN_OPTIONS', 'LSAN_OPTIONS']) if (process.env[k]) env[k] = process.env[k];
  for (const [k, v] of Object.entries(extra)) {
    if (v === null) delete env[k];
    else env[k] = String(v);
  }
  return env;
}

/*
 * Runs the real bootstrap on `script` (decode.lua) against the emulator's
 * redelivery driver over `records` (Lambda's checkpoint rule). Resolves to
 * {t (transcript), emf (parsed metric lines), stdout, stderr, code,
 * signal}. Bounded: the emulator ends by itself at timeoutMs; the
 * bootstrap, then blocked in /next, is terminated.
 */
async function runBootstrap({ script, env, records, batchSize = 100, maxRounds = 50,
  deadlineInMs = 30000, timeoutMs = 120000 }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mm-e2e-'));
  try {
    fs.writeFileSync(path.join(dir, 'decode.lua'), script);
    const emu = await startEmulator(
      { redelivery: { stream: records, batchSize, maxRounds, deadlineInMs } },
      { linger: 0, timeout: timeoutMs, grace: 5000, lingerExit: false, baseDir: dir },
    );
    const boot = spawn(BOOTSTRAP, [], {
      env: Object.assign({}, env, { AWS_LAMBDA_RUNTIME_API: `127.0.0.1:${emu.port}`, LAMBDA_TASK_ROOT: dir }),
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    boot.stdout.on('data', (c) => { stdout += c; });
    boot.stderr.on('data', (c) => { stderr += c; });
    const exited = new Promise((resolve) => boot.on('close', (code, signal) => resolve({ code, signal })));
    const ended = await Promise.race([emu.ended, exited.then(() => 'bootstrap exited')]);
    const t = JSON.parse(JSON.stringify(emu.transcript()));
    boot.kill('SIGTERM');
    const hard = setTimeout(() => boot.kill('SIGKILL'), 3000);
    const { code, signal } = await exited;
    clearTimeout(hard);
    await emu.close();
    const emf = stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l))
      .filter((o) => o._aws);
    return { t, ended, emf, stdout, stderr, code, signal };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/* Sum of one EMF metric over every invocation. */
function metricSum(emf, name) {
  return emf.reduce((s, o) => s + (Number(o[name]) || 0), 0);
}

/* ---- reading back -------------------------------------------------- */

/* Items of a scan grouped by pk: {pk: [{sk, item}] sorted by sk}. */
function byKey(items) {
  const out = new Map();
  for (const it of items) {
    const pk = it.pk.S;
    if (!out.has(pk)) out.set(pk, []);
    out.get(pk).push({ sk: it.sk ? Number(it.sk.N) : 0, item: it });
  }
  for (const rows of out.values()) rows.sort((a, b) => a.sk - b.sk);
  return out;
}

/* Runs the query driver with env (lambdaEnv's AWS settings); resolves to
 * [{key, bucket | from/to/rows, line, valueText (the raw JSON value)}]. */
function query(args, env) {
  return new Promise((resolve, reject) => {
    execFile(QUERY_TOOL, args, { env, timeout: 30000 },
      (err, stdout, stderr) => {
        if (err) {
          err.stderr = stderr;
          err.message += `\n${stderr}`;
          return reject(err);
        }
        resolve(stdout.split('\n').filter(Boolean).map((line) => {
          const at = line.indexOf('"value":');
          if (at < 0 || !line.endsWith('}')) throw new Error(`query line without value: ${line}`);
          const head = JSON.parse(`${line.slice(0, at - 1)}}`);
          return Object.assign(head, { line, valueText: line.slice(at + 8, -1) });
        }));
      });
  });
}

/* Decodes the top-k sketch bytes of runtime/sketch.h (format version 1). */
function decodeTopk(buf) {
  if (buf[0] !== 0x54 || buf[1] !== 1) throw new Error('not a top-k sketch');
  const n = buf.readUInt16BE(4);
  const total = buf.readBigUInt64BE(6);
  const counters = [];
  let at = 14;
  for (let i = 0; i < n; i++) {
    const count = buf.readBigUInt64BE(at);
    const err = buf.readBigUInt64BE(at + 8);
    const len = buf.readUInt16BE(at + 16);
    counters.push({ item: buf.subarray(at + 18, at + 18 + len).toString('utf8'), count, err });
    at += 18 + len;
  }
  if (at !== buf.length) throw new Error('top-k sketch has trailing bytes');
  return { capacity: buf.readUInt16BE(2), total, counters };
}

/* The records a round hands back to the stream (Lambda's rule): from the
 * restart point for a partial answer, the whole batch for a failure. */
function redelivered(records, round) {
  const batch = records.slice(round.start, round.start + round.sequenceNumbers.length);
  if (round.outcome === 'success') return [];
  if (round.outcome === 'partial') return records.slice(round.nextPosition, round.start + batch.length);
  return batch;
}

module.exports = {
  ROOT, SERVERS, BOOTSTRAP, QUERY_TOOL, QUICK, servers, dec, centsText, rng, streamRecord,
  ordersStream, ORDERS_DECODE, lambdaEnv, runBootstrap, metricSum, byKey, query, decodeTopk,
  redelivered, compareSeq,
};

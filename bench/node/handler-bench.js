#!/usr/bin/env node
// handler-bench.js - the Node.js baseline for the murmur-ddb benchmark.
//
// Runs the handler AWS documents for DynamoDB Streams in Node.js
// (Powertools for AWS Lambda: BatchProcessor(EventType.DynamoDBStreams) +
// processPartialResponse, a record handler using @aws-sdk/util-dynamodb's
// unmarshall) over one saved event, and reports CPU time per batch.
//
// Usage:
//   node bench/node/handler-bench.js EVENT.json [--mode M] [--iterations N] [--warmup W]
// Modes:
//   documented  unmarshall NewImage, sum `total` per "customer#"+customer_id,
//               skip REMOVE (the benchmark's default handler)
//   delta       the logic of lua/examples/order_totals/decode.lua: NewImage or
//               OldImage, amount = new total - old total (INSERT +total,
//               REMOVE -total), skip a zero change, key "customer#"+customer_id
//   all-fields  as documented, but unmarshalls both images and reads every
//               attribute (every string, number, set member, list element, map
//               value), as a handler needing the whole item would
// Each iteration is one invocation as the Lambda Node.js runtime performs it:
// JSON.parse of the raw event bytes, then the handler (a fresh in-memory
// aggregate per batch). CPU time is process.cpuUsage (user + system, all
// threads, so GC helper threads count) around each iteration; the first
// --warmup iterations are discarded (JIT warm-up), the next --iterations are
// measured. Output: one JSON line on stdout,
//   {"mode":..., "records":..., "cpu_ms_per_batch":..., ...extras}
// where cpu_ms_per_batch is the mean; the extras give the median, min, the
// part spent in JSON.parse, wall time, failures and a checksum of the aggregate (so no work is optimised
// away, and runs can be compared).
'use strict';

const fs = require('node:fs');
const {
  BatchProcessor,
  EventType,
  processPartialResponse,
} = require('@aws-lambda-powertools/batch');
const { unmarshall } = require('@aws-sdk/util-dynamodb');

function usage(msg) {
  if (msg) process.stderr.write(`handler-bench: ${msg}\n`);
  process.stderr.write(
    'usage: node handler-bench.js EVENT.json [--mode documented|delta|all-fields] ' +
      '[--iterations N] [--warmup W]\n'
  );
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { event: null, mode: 'documented', iterations: 30, warmup: 10 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    const count = (min) => {
      const v = val();
      if (!/^\d+$/.test(v) || Number(v) < min) usage(`${a} needs an integer >= ${min}`);
      return Number(v);
    };
    if (a === '--mode') opts.mode = val();
    else if (a === '--iterations') opts.iterations = count(1);
    else if (a === '--warmup') opts.warmup = count(0);
    else if (a === '--event') opts.event = val();
    else if (a === '-h' || a === '--help') usage();
    else if (!a.startsWith('--') && opts.event === null) opts.event = a;
    else usage(`unknown argument ${a}`);
  }
  if (!opts.event) usage('no event file');
  if (!['documented', 'delta', 'all-fields'].includes(opts.mode)) usage(`unknown mode ${opts.mode}`);
  return opts;
}

// ---- the handlers (what a user would deploy) -----------------------------

// The per-invocation aggregate: key -> running sum. Recreated per batch.
let totals = new Map();

function add(key, amount) {
  totals.set(key, (totals.get(key) || 0) + amount);
}

// documented: the Powertools DynamoDB Streams example shape.
const documentedRecord = async (record) => {
  if (record.eventName === 'REMOVE') return;
  if (!record.dynamodb?.NewImage) return;
  const order = unmarshall(record.dynamodb.NewImage);
  if (order.customer_id === undefined) throw new Error(`order ${order.order_id} without customer`);
  add(`customer#${order.customer_id}`, Number(order.total));
};

// delta: the same decisions as lua/examples/order_totals/decode.lua.
const deltaRecord = async (record) => {
  const d = record.dynamodb || {};
  const nu = d.NewImage ? unmarshall(d.NewImage) : undefined;
  const old = d.OldImage ? unmarshall(d.OldImage) : undefined;
  const img = nu || old;
  if (img === undefined) return;
  if (img.customer_id === undefined) throw new Error(`order ${img.order_id} has no customer_id`);
  const nt = nu ? nu.total : undefined;
  const ot = old ? old.total : undefined;
  if (nt === undefined && ot === undefined) return; // no total: nothing to add
  const amount = (nt === undefined ? 0 : Number(nt)) - (ot === undefined ? 0 : Number(ot));
  if (amount === 0) return; // unchanged total
  add(`customer#${img.customer_id}`, amount);
};

// Reads every part of an unmarshalled value; returns a number that depends
// on all of it (string lengths, numbers, booleans, set members, bytes).
function touch(v) {
  if (v === null || v === undefined) return 1;
  switch (typeof v) {
    case 'string':
      return v.length;
    case 'number':
      return v;
    case 'boolean':
      return v ? 3 : 2;
    case 'bigint':
      return Number(v);
    default:
      break;
  }
  let acc = 0;
  if (v instanceof Set || Array.isArray(v)) {
    for (const x of v) acc += touch(x);
  } else if (ArrayBuffer.isView(v)) {
    for (let i = 0; i < v.length; i++) acc += v[i];
  } else {
    for (const k of Object.keys(v)) acc += k.length + touch(v[k]);
  }
  return acc;
}

let touched = 0;

// all-fields: both images, every attribute read.
const allFieldsRecord = async (record) => {
  const d = record.dynamodb || {};
  const nu = d.NewImage ? unmarshall(d.NewImage) : undefined;
  const old = d.OldImage ? unmarshall(d.OldImage) : undefined;
  touched += touch(nu) + touch(old) + touch(d.Keys ? unmarshall(d.Keys) : undefined);
  if (record.eventName === 'REMOVE' || nu === undefined) return;
  if (nu.customer_id === undefined) throw new Error(`order ${nu.order_id} without customer`);
  add(`customer#${nu.customer_id}`, Number(nu.total));
};

const RECORD_HANDLERS = {
  documented: documentedRecord,
  delta: deltaRecord,
  'all-fields': allFieldsRecord,
};

// A Lambda context with what Powertools may read.
const context = {
  functionName: 'bench',
  functionVersion: '$LATEST',
  invokedFunctionArn: 'arn:aws:lambda:eu-west-1:123456789012:function:bench',
  memoryLimitInMB: '1024',
  awsRequestId: '00000000-0000-0000-0000-000000000000',
  logGroupName: '/aws/lambda/bench',
  logStreamName: 'bench',
  callbackWaitsForEmptyEventLoop: true,
  getRemainingTimeInMillis: () => 60000,
  done() {},
  fail() {},
  succeed() {},
};

function makeHandler(mode) {
  const processor = new BatchProcessor(EventType.DynamoDBStreams);
  const recordHandler = RECORD_HANDLERS[mode];
  return async (event, ctx) => processPartialResponse(event, recordHandler, processor, { context: ctx });
}

// ---- measurement ------------------------------------------------------------

function checksum(map) {
  let s = 0;
  for (const [k, v] of map) s += k.length + v;
  return Math.round(s * 100) / 100;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const raw = fs.readFileSync(opts.event); // the bytes the runtime receives
  const handler = makeHandler(opts.mode);

  let records = 0;
  let failures = 0;
  let customers = 0;
  let sum = 0;
  const cpu = [];
  const parseCpu = [];
  const wall = [];
  for (let i = 0; i < opts.warmup + opts.iterations; i++) {
    totals = new Map();
    touched = 0;
    const t0 = process.cpuUsage();
    const w0 = process.hrtime.bigint();
    const event = JSON.parse(raw); // Buffer -> string -> objects, as the runtime does
    const dp = process.cpuUsage(t0);
    const res = await handler(event, context);
    const w1 = process.hrtime.bigint();
    const dt = process.cpuUsage(t0);
    records = event.Records.length;
    failures = res.batchItemFailures.length;
    customers = totals.size;
    sum = checksum(totals) + touched;
    if (i >= opts.warmup) {
      cpu.push((dt.user + dt.system) / 1000);
      parseCpu.push((dp.user + dp.system) / 1000);
      wall.push(Number(w1 - w0) / 1e6);
    }
  }
  const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
  const median = (a) => {
    const s = [...a].sort((x, y) => x - y);
    const m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
  };
  const r3 = (x) => Math.round(x * 1000) / 1000;
  const out = {
    mode: opts.mode,
    records,
    cpu_ms_per_batch: r3(mean(cpu)),
    cpu_ms_median: r3(median(cpu)),
    cpu_ms_min: r3(Math.min(...cpu)),
    parse_cpu_ms_per_batch: r3(mean(parseCpu)),
    wall_ms_per_batch: r3(mean(wall)),
    cpu_us_per_record: records ? r3((mean(cpu) * 1000) / records) : null,
    event_bytes: raw.length,
    iterations: opts.iterations,
    warmup: opts.warmup,
    failures,
    customers,
    checksum: r3(sum),
    node: process.version,
  };
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
  process.stderr.write(`handler-bench: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});

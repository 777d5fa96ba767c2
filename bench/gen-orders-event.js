#!/usr/bin/env node
// gen-orders-event.js - a deterministic DynamoDB Streams event from an
// "orders" table, for benchmarks (Node.js standard library only).
//
// Usage:
//   node bench/gen-orders-event.js --records 1000 > ev.json
//   node bench/gen-orders-event.js --bytes 6000000 > ev-6mb.json
// Options:
//   --records N   number of records (default 100; with --bytes, an upper bound)
//   --bytes B     largest event size in bytes: records are added while the
//                 whole event stays <= B (Lambda's synchronous payload limit
//                 is 6 MB, so --bytes 6000000 makes a "full" batch)
//   --seed S      generator seed (default 1); same seed, same bytes
//   --pretty      indent the JSON (default compact, as Lambda delivers it)
//
// Shape: every record is NEW_AND_OLD_IMAGES with eventName drawn from
// INSERT 80% / MODIFY 15% / REMOVE 5% (INSERT: NewImage; MODIFY: both;
// REMOVE: OldImage, as DynamoDB Streams does). Images carry order_id (S),
// customer_id (S, 500 distinct), city (S), total (N, 2 decimals, trailing
// zeros trimmed as DynamoDB returns them), items (L of M {sku S, qty N,
// price N}), tags (SS), flags (M of BOOL), note (S, or NULL for ~30%),
// sig (B, base64), line_qty (NS). ApproximateCreationDateTime is integer
// epoch seconds; SequenceNumbers are increasing 26-digit strings; eventIDs
// are 32 hex characters.
'use strict';

function usage(msg) {
  if (msg) process.stderr.write(`gen-orders-event: ${msg}\n`);
  process.stderr.write(
    'usage: node bench/gen-orders-event.js [--records N] [--bytes B] [--seed S] [--pretty]\n'
  );
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { records: null, bytes: null, seed: 1, pretty: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = (name) => {
      const v = argv[++i];
      if (v === undefined || !/^\d+$/.test(v)) usage(`${name} needs a non-negative integer`);
      return Number(v);
    };
    if (a === '--records') opts.records = num(a);
    else if (a === '--bytes') opts.bytes = num(a);
    else if (a === '--seed') opts.seed = num(a);
    else if (a === '--pretty') opts.pretty = true;
    else if (a === '-h' || a === '--help') usage();
    else usage(`unknown argument ${a}`);
  }
  if (opts.records === null) opts.records = opts.bytes === null ? 100 : Infinity;
  return opts;
}

// mulberry32: a small, fast, well-mixed 32-bit generator; deterministic.
function rng(seed) {
  let a = seed >>> 0;
  return function next() {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const CITIES = [
  'Amsterdam', 'Berlin', 'Dublin', 'Lisbon', 'London', 'Madrid', 'Milan', 'Paris',
  'Prague', 'Stockholm', 'Vienna', 'Warsaw', 'Zurich', 'Oslo', 'Helsinki', 'Athens',
];
const TAGS = ['gift', 'express', 'bulk', 'promo', 'b2b', 'fragile', 'eco', 'vip'];
const STATUSES = ['PLACED', 'PAID', 'SHIPPED', 'DELIVERED'];
const NOTES = [
  'leave at the door', 'call before delivery', 'ring twice', 'fragile, handle with care',
  'deliver after 6 pm', 'side entrance',
];
const REGION = 'eu-west-1';
const ARN = `arn:aws:dynamodb:${REGION}:123456789012:table/orders/stream/2026-11-25T12:00:00.000`;
const T0 = 1764072000; // 2026-11-25T12:00:00Z

// Cents as DynamoDB prints a number: no trailing zeros, no trailing dot.
function money(cents) {
  const s = (cents / 100).toFixed(2);
  return s.replace(/\.?0+$/, '') || '0';
}

function hex(r, n) {
  let s = '';
  for (let i = 0; i < n; i++) s += Math.floor(r() * 16).toString(16);
  return s;
}

function pick(r, list) {
  return list[Math.floor(r() * list.length)];
}

// One order image: returns the AttributeValue map and its total in cents.
function orderImage(r, orderId, customer, status) {
  const nItems = 1 + Math.floor(r() * 5);
  const items = [];
  const qtys = new Set();
  let cents = 0;
  for (let i = 0; i < nItems; i++) {
    const qty = 1 + Math.floor(r() * 4);
    const price = 100 + Math.floor(r() * 19900);
    cents += qty * price;
    qtys.add(String(qty));
    items.push({
      M: {
        sku: { S: `sku-${String(Math.floor(r() * 5000)).padStart(5, '0')}` },
        qty: { N: String(qty) },
        price: { N: money(price) },
      },
    });
  }
  const tags = new Set();
  const nTags = 1 + Math.floor(r() * 3);
  while (tags.size < nTags) tags.add(pick(r, TAGS));
  const sig = Buffer.alloc(16 + Math.floor(r() * 17));
  for (let i = 0; i < sig.length; i++) sig[i] = Math.floor(r() * 256);
  const img = {
    order_id: { S: orderId },
    customer_id: { S: customer },
    city: { S: pick(r, CITIES) },
    status: { S: status },
    total: { N: money(cents) },
    items: { L: items },
    tags: { SS: [...tags] },
    flags: { M: { gift: { BOOL: r() < 0.2 }, express: { BOOL: r() < 0.3 }, paid: { BOOL: r() < 0.8 } } },
    note: r() < 0.3 ? { NULL: true } : { S: pick(r, NOTES) },
    sig: { B: sig.toString('base64') },
    line_qty: { NS: [...qtys] },
  };
  return img;
}

function makeRecord(r, i, seq) {
  const x = r();
  const eventName = x < 0.8 ? 'INSERT' : x < 0.95 ? 'MODIFY' : 'REMOVE';
  const orderId = `o-${String(10000000 + Math.floor(r() * 89999999))}`;
  const customer = `c-${String(1 + Math.floor(r() * 500)).padStart(4, '0')}`;
  const dynamodb = {
    ApproximateCreationDateTime: T0 + Math.floor(i / 10),
    Keys: { order_id: { S: orderId } },
  };
  if (eventName !== 'REMOVE') {
    const status = eventName === 'INSERT' ? 'PLACED' : pick(r, STATUSES.slice(1));
    dynamodb.NewImage = orderImage(r, orderId, customer, status);
  }
  if (eventName !== 'INSERT') {
    dynamodb.OldImage = orderImage(r, orderId, customer, 'PLACED');
  }
  dynamodb.SequenceNumber = seq.toString();
  const images = JSON.stringify([dynamodb.Keys, dynamodb.NewImage, dynamodb.OldImage]);
  dynamodb.SizeBytes = Math.max(1, Math.round(images.length * 0.6));
  dynamodb.StreamViewType = 'NEW_AND_OLD_IMAGES';
  return {
    eventID: hex(r, 32),
    eventName,
    eventVersion: '1.1',
    eventSource: 'aws:dynamodb',
    awsRegion: REGION,
    dynamodb,
    eventSourceARN: ARN,
  };
}

function main() {
  // A reader that stops early (head, cmp) is not an error.
  process.stdout.on('error', (e) => process.exit(e.code === 'EPIPE' ? 0 : 1));
  const opts = parseArgs(process.argv.slice(2));
  const r = rng(opts.seed);
  let seq = 44215845000000000174504390n + BigInt(opts.seed) * 1000000000n;
  const parts = [];
  const head = opts.pretty ? '{\n  "Records": [\n' : '{"Records":[';
  const tail = opts.pretty ? '\n  ]\n}\n' : ']}\n';
  const sep = opts.pretty ? ',\n' : ',';
  let size = Buffer.byteLength(head) + Buffer.byteLength(tail);
  for (let i = 0; i < opts.records; i++) {
    seq += BigInt(1 + Math.floor(r() * 1000));
    const rec = makeRecord(r, i, seq);
    let text = JSON.stringify(rec, null, opts.pretty ? 2 : 0);
    if (opts.pretty) text = text.replace(/^/gm, '    ');
    const add = Buffer.byteLength(text) + (parts.length ? Buffer.byteLength(sep) : 0);
    if (opts.bytes !== null && size + add > opts.bytes) break;
    parts.push(text);
    size += add;
  }
  if (parts.length === 0) usage('--bytes is too small for a single record');
  process.stdout.write(head + parts.join(sep) + tail);
}

main();

#!/usr/bin/env node
// ddb-bench.js - the DynamoDB step of scripts/bench (not a test).
//
// Starts dynalite (tests/servers, in memory, 127.0.0.1), creates the
// tables, and for orders batches of 1,000 and 10,000 records over exactly
// 500 customers (bench/gen-orders-event.js, then customer_id reassigned
// round-robin so both batches have 500 distinct keys) measures wall-clock
// milliseconds per batch of:
//   murmur concurrent   the runtime as shipped (bench/ddb_bench.c
//                       concurrent: one invocation, requests together,
//                       additive deltas coalesced)
//   murmur sequential   one record at a time, one request at a time, no
//                       coalescing (ddb_bench sequential)
//   Node                Powertools BatchProcessor + @aws-sdk/client-dynamodb
//                       UpdateItem per record, in parallel (the default),
//                       with makeIdempotent for dedup
//                       (bench/node/ddb-handler-bench.js)
// each with dedup off and on, with the example pipeline
// lua/examples/order_totals (the Node handler has the same logic). Prints
// a Markdown table and appends JSON lines to OUT/ddb-results.jsonl.
//
// dynalite answers on 127.0.0.1 in well under a millisecond but serves one
// request at a time, the opposite of DynamoDB (a few milliseconds away,
// highly parallel). --latency-ms N makes dynalite hold every request N ms
// before handling it (tests/servers/dynalite.js --latency-ms), to model the
// network round trip; the table says which setting it shows.
//
// Usage: node bench/ddb-bench.js BUILD_DIR OUT_DIR [--quick]
//        [--sizes 1000,10000] [--latency-ms N]
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { execFile } = require('node:child_process');

const ROOT = path.resolve(__dirname, '..');
const { startServer, DdbClient, TEST_CREDENTIALS } = require(path.join(ROOT, 'tests/servers/ddb-client.js'));

const [build, out] = process.argv.slice(2);
const quick = process.argv.includes('--quick');
function opt(name, def) {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}
const latencyMs = Math.max(0, Number(opt('--latency-ms', '0')) || 0);
const sizes = opt('--sizes', quick ? '1000' : '1000,10000').split(',').map(Number);
if (!build || !out) {
  process.stderr.write('usage: node bench/ddb-bench.js BUILD_DIR OUT_DIR [--quick]\n');
  process.exit(2);
}
const SCRIPT = path.join(ROOT, 'lua/examples/order_totals/decode.lua');
const KEYS = 500;

function run(cmd, args, env) {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { env, maxBuffer: 1 << 20, timeout: 30 * 60 * 1000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`${path.basename(cmd)} ${args.join(' ')}: ${err.message}\n${stderr}`));
      resolve(JSON.parse(stdout.trim().split('\n').pop()));
    });
  });
}

/* An orders event of n records whose customers are exactly KEYS ids. */
function event(n) {
  const file = path.join(out, `ddb-orders-${n}.json`);
  if (fs.existsSync(file)) return file;
  const gen = require('node:child_process').execFileSync(process.execPath,
    [path.join(ROOT, 'bench/gen-orders-event.js'), '--records', String(n)], { maxBuffer: 64 << 20 });
  const ev = JSON.parse(gen);
  ev.Records.forEach((r, i) => {
    const c = `c-${String(1 + (i % KEYS)).padStart(4, '0')}`;
    for (const img of [r.dynamodb.NewImage, r.dynamodb.OldImage]) if (img) img.customer_id = { S: c };
  });
  fs.writeFileSync(file, JSON.stringify(ev));
  return file;
}

async function main() {
  fs.mkdirSync(out, { recursive: true });
  const dyn = await startServer('dynalite.js', latencyMs > 0 ? ['--latency-ms', latencyMs] : []);
  const ddb = new DdbClient({ port: dyn.port });
  const endpoint = `http://127.0.0.1:${dyn.port}`;
  const results = [];
  try {
    for (const t of ['bench_store', 'node_store']) await ddb.createTable(t);
    for (const t of ['bench_dedup', 'node_dedup']) await ddb.createTable(t, { sortKey: false });
    const base = {
      PATH: process.env.PATH,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey,
      AWS_ENDPOINT_URL_DYNAMODB: endpoint,
      MURMUR_STORE: 'dynamodb://bench_store',
    };
    /* dynalite is a Node process: its JIT is cold at first, which would
     * slow whichever configuration runs first. Warm every request kind up
     * (UpdateItem with and without ReturnValues, GetItem, PutItem) with
     * throwaway runs of 1,000 records. */
    process.stderr.write('==> warming dynalite up\n');
    const warm = event(1000);
    await run(path.join(build, 'ddb_bench'), [SCRIPT, warm, 'concurrent', '3', '0'],
      Object.assign({}, base, { MURMUR_DEDUP: 'dynamodb://bench_dedup' }));
    await run(process.execPath, [path.join(ROOT, 'bench/node/ddb-handler-bench.js'), warm, '--endpoint', endpoint,
      '--table', 'node_store', '--iterations', '1', '--warmup', '0', '--dedup', 'node_dedup'], base);
    for (const n of sizes) {
      const ev = event(n);
      const it = n >= 10000 ? 2 : 3;
      for (const dedup of [0, 1]) {
        const env = Object.assign({}, base, dedup ? { MURMUR_DEDUP: 'dynamodb://bench_dedup' } : {});
        process.stderr.write(`==> DynamoDB ${n} records, dedup ${dedup ? 'on' : 'off'}, +${latencyMs} ms per request\n`);
        const row = { n, dedup, keys: KEYS, latency_ms: latencyMs };
        row.concurrent = await run(path.join(build, 'ddb_bench'), [SCRIPT, ev, 'concurrent', String(it), '1'], env);
        row.sequential = await run(path.join(build, 'ddb_bench'), [SCRIPT, ev, 'sequential', '1', '0'], env);
        const nodeArgs = [path.join(ROOT, 'bench/node/ddb-handler-bench.js'), ev, '--endpoint', endpoint,
          '--table', 'node_store', '--iterations', String(it), '--warmup', '1'];
        if (dedup) nodeArgs.push('--dedup', 'node_dedup');
        row.node = await run(process.execPath, nodeArgs, base);
        results.push(row);
        fs.appendFileSync(path.join(out, 'ddb-results.jsonl'), `${JSON.stringify(row)}\n`);
      }
    }
  } finally {
    ddb.close();
    await dyn.stop();
  }
  const f = (x) => x.toFixed(0);
  console.log(`\nDynamoDB (dynalite, in memory, 127.0.0.1${latencyMs ? `, every answer held ${latencyMs} ms` : ''}): ` +
    'wall-clock ms per batch, 500 distinct keys');
  console.log('| records | dedup | murmur concurrent (ms) | murmur sequential (ms) | Node Powertools (ms) | sequential / murmur | Node / murmur | client CPU ms: murmur / sequential / Node |');
  console.log('|---:|:---:|---:|---:|---:|---:|---:|---:|');
  for (const r of results) {
    const c = r.concurrent.wall_ms_per_batch;
    const s = r.sequential.wall_ms_per_batch;
    const nd = r.node.wall_ms_per_batch;
    const nf = r.node.failed_records ? ` (${r.node.failed_records} records failed)` : '';
    const cpu = `${f(r.concurrent.cpu_ms_per_batch)} / ${f(r.sequential.cpu_ms_per_batch)} / ${f(r.node.cpu_ms_per_batch)}`;
    console.log(`| ${r.n} | ${r.dedup ? 'on' : 'off'} | ${f(c)} | ${f(s)} | ${f(nd)}${nf} | ${(s / c).toFixed(1)}x | ${(nd / c).toFixed(1)}x | ${cpu} |`);
  }
  for (const r of results) {
    if (r.node.failed_records) console.log(`Node ${r.n}/dedup ${r.dedup}: ${r.node.failure_reasons.join(' | ')}`);
  }
}

main().catch((e) => {
  process.stderr.write(`ddb-bench: ${e.stack || e}\n`);
  process.exit(1);
});

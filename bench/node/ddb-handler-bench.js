#!/usr/bin/env node
// ddb-handler-bench.js - the Node.js baseline of the DynamoDB benchmark:
// the handler AWS documents for DynamoDB Streams, writing to DynamoDB.
//
// Powertools for AWS Lambda's BatchProcessor(EventType.DynamoDBStreams) +
// processPartialResponse in its default mode (records processed in
// parallel, Promise.all), a record handler that unmarshalls the images
// (@aws-sdk/util-dynamodb) and sends one UpdateItem `ADD v :d` per record
// (@aws-sdk/client-dynamodb, default client settings) with the logic of
// lua/examples/order_totals/decode.lua (new total - old total per
// "customer#<id>", zero changes skipped). With --dedup TABLE the record
// handler is wrapped, as the Powertools documentation shows for batch
// processing, with makeIdempotent (@aws-lambda-powertools/idempotency,
// DynamoDBPersistenceLayer on TABLE, key = the record's eventID).
//
// Usage:
//   node bench/node/ddb-handler-bench.js EVENT.json --endpoint URL --table T
//        [--dedup TABLE] [--iterations N] [--warmup W]
// Credentials and region come from the environment (AWS_ACCESS_KEY_ID, ...).
// Each iteration is one invocation as the Lambda runtime performs it:
// JSON.parse of the event bytes, then the handler; wall-clock time and the
// process's CPU time (all threads) are taken around both. Every iteration gives the records fresh eventIDs (so the
// idempotency layer never short-cuts them). Records the handler reports as
// failed (warm-up included) are counted with their reasons, not hidden.
// Output: one JSON line {"mode":"node","dedup":0|1,"records",
// "wall_ms_per_batch" (mean),"wall_ms_min","wall_ms_max","cpu_ms_per_batch","iterations",
// "failed_records","failure_reasons",...}.
'use strict';

const fs = require('node:fs');
const { BatchProcessor, EventType, processPartialResponse } = require('@aws-lambda-powertools/batch');
const { DynamoDBClient, UpdateItemCommand } = require('@aws-sdk/client-dynamodb');
const { unmarshall } = require('@aws-sdk/util-dynamodb');
const { makeIdempotent, IdempotencyConfig } = require('@aws-lambda-powertools/idempotency');
const { DynamoDBPersistenceLayer } = require('@aws-lambda-powertools/idempotency/dynamodb');

function usage(msg) {
  if (msg) process.stderr.write(`ddb-handler-bench: ${msg}\n`);
  process.stderr.write('usage: node ddb-handler-bench.js EVENT.json --endpoint URL --table T [--dedup TABLE] [--iterations N] [--warmup W]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const o = { event: null, endpoint: null, table: null, dedup: null, iterations: 3, warmup: 1 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => (i + 1 < argv.length ? argv[++i] : usage(`${a} needs a value`));
    if (a === '--endpoint') o.endpoint = val();
    else if (a === '--table') o.table = val();
    else if (a === '--dedup') o.dedup = val();
    else if (a === '--iterations') o.iterations = Math.max(1, Number(val()) | 0);
    else if (a === '--warmup') o.warmup = Math.max(0, Number(val()) | 0);
    else if (!a.startsWith('--') && !o.event) o.event = a;
    else usage(`unknown argument ${a}`);
  }
  if (!o.event || !o.endpoint || !o.table) usage('EVENT, --endpoint and --table are required');
  return o;
}

const opts = parseArgs(process.argv.slice(2));
const client = new DynamoDBClient({ endpoint: opts.endpoint, region: process.env.AWS_REGION || 'us-east-1' });

// The record handler: what a user would deploy.
const recordHandler = async (record) => {
  const d = record.dynamodb || {};
  const nu = d.NewImage ? unmarshall(d.NewImage) : undefined;
  const old = d.OldImage ? unmarshall(d.OldImage) : undefined;
  const img = nu || old;
  if (img === undefined) return;
  if (img.customer_id === undefined) throw new Error(`order ${img.order_id} has no customer_id`);
  const nt = nu ? nu.total : undefined;
  const ot = old ? old.total : undefined;
  if (nt === undefined && ot === undefined) return;
  const amount = (nt === undefined ? 0 : Number(nt)) - (ot === undefined ? 0 : Number(ot));
  if (amount === 0) return;
  await client.send(new UpdateItemCommand({
    TableName: opts.table,
    Key: { pk: { S: `customer#${img.customer_id}` }, sk: { N: '0' } },
    UpdateExpression: 'ADD #v :d',
    ExpressionAttributeNames: { '#v': 'v' },
    ExpressionAttributeValues: { ':d': { N: String(amount) } },
  }));
};

const context = {
  functionName: 'bench',
  functionVersion: '$LATEST',
  invokedFunctionArn: 'arn:aws:lambda:us-east-1:123456789012:function:bench',
  memoryLimitInMB: '1024',
  awsRequestId: '00000000-0000-0000-0000-000000000000',
  logGroupName: '/aws/lambda/bench',
  logStreamName: 'bench',
  callbackWaitsForEmptyEventLoop: true,
  getRemainingTimeInMillis: () => 900000,
  done() {},
  fail() {},
  succeed() {},
};

const processor = new BatchProcessor(EventType.DynamoDBStreams);

function makeHandler() {
  if (!opts.dedup) {
    return async (event, ctx) => processPartialResponse(event, recordHandler, processor, { context: ctx });
  }
  const persistenceStore = new DynamoDBPersistenceLayer({ tableName: opts.dedup, keyAttr: 'pk', awsSdkV3Client: client });
  const config = new IdempotencyConfig({ eventKeyJmesPath: 'eventID' });
  const idempotent = makeIdempotent(recordHandler, { persistenceStore, config });
  return async (event, ctx) => {
    config.registerLambdaContext(ctx);
    return processPartialResponse(event, idempotent, processor, { context: ctx });
  };
}

async function main() {
  const raw = fs.readFileSync(opts.event, 'utf8');
  const handler = makeHandler();
  const tag = Date.now().toString(16);
  const wall = [];
  const cpu = [];
  let records = 0;
  let failed = 0; /* records the handler reported (a baseline under load may fail some) */
  const reasons = new Set();
  for (let i = 0; i < opts.warmup + opts.iterations; i++) {
    const bytes = raw.split('"eventID":"').join(`"eventID":"${tag}-${i}-`);
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    const event = JSON.parse(bytes);
    const res = await handler(event, context);
    const t1 = process.hrtime.bigint();
    const dc = process.cpuUsage(c0);
    records = event.Records.length;
    if (res.batchItemFailures.length) {
      failed += res.batchItemFailures.length;
      for (const e of processor.errors) reasons.add(`${e.name}: ${e.message}`.slice(0, 200));
    }
    if (i >= opts.warmup) {
      wall.push(Number(t1 - t0) / 1e6);
      cpu.push((dc.user + dc.system) / 1000);
    }
  }
  const r1 = (x) => Math.round(x * 10) / 10;
  process.stdout.write(`${JSON.stringify({
    mode: 'node',
    dedup: opts.dedup ? 1 : 0,
    records,
    wall_ms_per_batch: r1(wall.reduce((a, b) => a + b, 0) / wall.length),
    wall_ms_min: r1(Math.min(...wall)),
    wall_ms_max: r1(Math.max(...wall)),
    cpu_ms_per_batch: r1(cpu.reduce((a, b) => a + b, 0) / cpu.length),
    iterations: opts.iterations,
    failed_records: failed,
    failure_reasons: [...reasons].slice(0, 5),
    node: process.version,
  })}\n`);
  client.destroy();
}

main().catch((e) => {
  process.stderr.write(`ddb-handler-bench: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});

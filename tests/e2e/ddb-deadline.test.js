'use strict';
/*
 * ddb-deadline.test.js - a slow store and a near deadline: the real
 * `bootstrap` writes to dynalite through tests/servers/fault-proxy.js with
 * every answer held back (delay_ms; the writes themselves are applied at
 * once), at most 8 requests in flight, and invocations whose deadline
 * allows only a few rounds of requests. The response must be posted before
 * the deadline and list the unfinished records; every record it does not
 * list must be in the table; redelivered from the lowest listed
 * SequenceNumber (the emulator's driver, Lambda's rule), the stream then
 * completes without losing anything.
 */
const test = require('node:test');
const assert = require('node:assert/strict');
const L = require('./lib.js');

const skip = L.BOOTSTRAP ? false : 'MM_BOOTSTRAP is not set';
const N = L.QUICK ? 48 : 96;
const DELAY_MS = 300;
const DEADLINE_MS = 1500; /* margin 200 ms: about 4 rounds of 8 requests */

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

const SCRIPT = `
return {
  name = "deadline",
  aggregate = "count",
  decode = function(rec) return rec.dynamodb.NewImage end,
  key = function(o) return "d#" .. o.id end,
}
`;

/* One slow-store run (see the file comment); table names by dedup. */
async function slowStore(t, { dedup }) {
  const { startServer } = L.servers();
  const table = dedup ? 'deadline_dedup_store' : 'deadline';
  const dedupTable = dedup ? 'deadline_dedup' : null;
  await ddb.createTable(table);
  if (dedupTable) await ddb.createTable(dedupTable, { sortKey: false });
  const records = [];
  for (let i = 0; i < N; i++) {
    const id = String(i);
    records.push(L.streamRecord({ run: 'dl', n: i + 1, time: 1764072000 + i, id, newImage: { id: { S: id } } }));
  }
  const proxy = await startServer('fault-proxy.js', [dyn.port, 1, JSON.stringify({ delay_ms: DELAY_MS }), '']);
  const env = L.lambdaEnv({ port: proxy.port, table, dedupTable, extra: { MURMUR_MAX_INFLIGHT: 8 } });
  let first;
  let rest;
  try {
    /* One delivery first, to look at the table right after it. */
    first = await L.runBootstrap({ script: SCRIPT, env, records, batchSize: N, maxRounds: 1, deadlineInMs: DEADLINE_MS });
    const inv = first.t.invocations[0];
    assert.equal(inv.outcome, 'response', first.stderr);
    const post = inv.posts[0];
    assert.equal(post.status, 202);
    assert.ok(post.msBeforeDeadline > 0, `posted ${-post.msBeforeDeadline} ms after the deadline`);
    const failures = inv.response.body.batchItemFailures.map((f) => f.itemIdentifier);
    assert.ok(failures.length > 0, 'a slow store cannot finish in time: records are listed');
    assert.ok(failures.length < N, 'some records finished');
    assert.ok(failures.includes(records[N - 1].dynamodb.SequenceNumber), 'the last record is listed');
    assert.equal(L.metricSum(first.emf, 'DeadLetters'), failures.length);
    const listed = new Set(failures);
    const after1 = new Set((await ddb.scanAll(table)).map((it) => it.pk.S));
    for (const rec of records) {
      if (!listed.has(rec.dynamodb.SequenceNumber)) {
        assert.ok(after1.has(`d#${rec.dynamodb.NewImage.id.S}`), `record ${rec.eventID} not listed but not applied`);
      }
    }
    const round1 = first.t.redelivery.rounds[0];
    assert.equal(round1.outcome, 'partial');
    t.diagnostic(`first delivery: ${N - failures.length} done, ${failures.length} listed, posted ${post.msBeforeDeadline} ms before the deadline, UnknownOutcomes ${L.metricSum(first.emf, 'UnknownOutcomes')}`);

    /* Lambda restarts at the lowest listed record. */
    const remaining = records.slice(round1.nextPosition);
    rest = await L.runBootstrap({ script: SCRIPT, env, records: remaining, batchSize: N, maxRounds: 30, deadlineInMs: DEADLINE_MS });
    assert.ok(rest.t.redelivery.completed, `not completed in ${rest.t.redelivery.rounds.length} deliveries`);
    for (const inv2 of rest.t.invocations) {
      assert.equal(inv2.outcome, 'response');
      assert.ok(inv2.posts[0].msBeforeDeadline > 0);
    }
    let handedBack = L.redelivered(records, round1).length;
    for (const r of rest.t.redelivery.rounds) handedBack += L.redelivered(remaining, r).length;
    const unknown = L.metricSum(first.emf, 'UnknownOutcomes') + L.metricSum(rest.emf, 'UnknownOutcomes');
    const got = new Map((await ddb.scanAll(table)).map((it) => [it.pk.S, Number(it.v.N)]));
    let excess = 0;
    for (const rec of records) {
      const have = got.get(`d#${rec.dynamodb.NewImage.id.S}`) || 0;
      assert.ok(have >= 1, `record ${rec.eventID} was lost`);
      excess += have - 1;
    }
    assert.equal(got.size, N);
    assert.ok(excess <= unknown + handedBack, `excess ${excess} > ${unknown} unknown + ${handedBack} redelivered`);
    if (dedup) assert.ok(excess <= unknown, `dedup on: excess ${excess} > ${unknown} unknown`);
    t.diagnostic(`then ${rest.t.redelivery.rounds.length} deliveries; excess ${excess}, unknown ${unknown}`);
  } finally {
    await proxy.stop();
  }
}

test('a slow store near the deadline: answered in time, unfinished records listed, nothing lost', { skip, timeout: 180000 },
  (t) => slowStore(t, { dedup: false }));

/*
 * The same with dedup on: the pipeline claims, merges and finishes in
 * waves of records in order (MM_PIPELINE_WAVE_FIRST, doubling), so the
 * earliest records complete before the deadline and every delivery makes
 * progress even when claims for the whole batch would not fit.
 */
test('a slow store near the deadline with dedup on: every delivery makes progress', {
  skip, timeout: 180000,
}, (t) => slowStore(t, { dedup: true }));

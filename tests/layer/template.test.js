'use strict';
/*
 * template.test.js - layer/template.yaml (AWS SAM) says what the runtime
 * needs (node --test). The YAML is read by python3's yaml module (with the
 * CloudFormation tags kept as {"!Tag": value}); without it the test skips.
 *
 * Checked: the layer and function (provided.al2023, Handler decode, the
 * layer, the one-file package, matching architectures); the state table
 * (pk S, sk N) and dedup table (pk S) with TTL on ttl; the stream event
 * source (ReportBatchItemFailures, batch size, retries, on-failure
 * destination); MURMUR_STORE/MURMUR_DEDUP naming the two tables and
 * MURMUR_DLQ the poison queue; and IAM:
 * the DynamoDB actions granted on each table are exactly the operations the
 * runtime's sources issue against it (so a new operation in the runtime
 * fails here until the template grants it), the stream actions only on the
 * source stream, no wildcard action or resource.
 */
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const ROOT = path.resolve(__dirname, '../..');
const TEMPLATE = path.join(ROOT, 'layer/template.yaml');

const LOADER = `
import json, sys, yaml
class L(yaml.SafeLoader): pass
def tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode): v = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode): v = loader.construct_sequence(node, deep=True)
    else: v = loader.construct_mapping(node, deep=True)
    return {"!" + suffix: v}
L.add_multi_constructor("!", tag)
print(json.dumps(yaml.load(open(sys.argv[1]), Loader=L)))
`;

function loadTemplate() {
  const r = spawnSync('python3', ['-c', LOADER, TEMPLATE], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return { skip: `python3 with yaml is not available: ${r.error || r.stderr.trim()}` };
  return { t: JSON.parse(r.stdout) };
}

const { t: tpl, skip } = loadTemplate();

/* DynamoDB API operations a source file names as string literals. */
const DDB_OPS = ['GetItem', 'PutItem', 'UpdateItem', 'DeleteItem', 'Query', 'Scan', 'BatchGetItem',
  'BatchWriteItem', 'TransactGetItems', 'TransactWriteItems', 'DescribeTable', 'ExecuteStatement',
  'BatchExecuteStatement', 'ConditionCheckItem'];
function opsIn(file) {
  const src = fs.readFileSync(path.join(ROOT, file), 'utf8');
  return DDB_OPS.filter((op) => src.includes(`"${op}"`)).sort();
}

/* SQS API operations a source file names as string literals. */
const SQS_OPS = ['SendMessage', 'SendMessageBatch', 'ReceiveMessage', 'DeleteMessage', 'DeleteMessageBatch',
  'ChangeMessageVisibility', 'ChangeMessageVisibilityBatch', 'GetQueueAttributes', 'GetQueueUrl', 'PurgeQueue'];
function sqsOpsIn(file) {
  const src = fs.readFileSync(path.join(ROOT, file), 'utf8');
  return SQS_OPS.filter((op) => src.includes(`"${op}"`)).sort();
}

const resource = (name) => tpl.Resources[name];
const ref = (name) => ({ '!Ref': name });

test('the layer and the function', { skip }, () => {
  const layer = resource('MurmurLayer');
  assert.equal(layer.Type, 'AWS::Serverless::LayerVersion');
  assert.deepEqual(layer.Properties.CompatibleRuntimes, ['provided.al2023']);
  const fn = resource('DecodeFunction');
  assert.equal(fn.Type, 'AWS::Serverless::Function');
  const p = fn.Properties;
  assert.equal(p.Runtime, 'provided.al2023');
  assert.equal(p.Handler, 'decode');
  assert.deepEqual(p.Layers, [ref('MurmurLayer')]);
  assert.deepEqual(p.Architectures, layer.Properties.CompatibleArchitectures);
  const arch = p.Architectures[0];
  // The paths layer/build writes, relative to the template.
  assert.equal(path.resolve(path.dirname(TEMPLATE), layer.Properties.ContentUri),
    path.join(ROOT, `dist/murmur-ddb-layer-${arch}.zip`));
  assert.equal(path.resolve(path.dirname(TEMPLATE), p.CodeUri), path.join(ROOT, 'dist/function.zip'));
  assert.deepEqual(p.Environment.Variables.MURMUR_STORE, { '!Sub': 'dynamodb://${StateTable}' });
  assert.deepEqual(p.Environment.Variables.MURMUR_DEDUP, { '!Sub': 'dynamodb://${DedupTable}' });
  assert.deepEqual(p.Environment.Variables.MURMUR_DLQ, { '!Sub': 'sqs://${PoisonQueue}' });
});

test('the state table (pk S, sk N) and the dedup table (pk S), both with TTL on ttl', { skip }, () => {
  const key = (props) => props.KeySchema.map((k) => {
    const def = props.AttributeDefinitions.find((d) => d.AttributeName === k.AttributeName);
    return `${k.AttributeName}:${def.AttributeType}:${k.KeyType}`;
  });
  const state = resource('StateTable').Properties;
  assert.deepEqual(key(state), ['pk:S:HASH', 'sk:N:RANGE']);
  assert.deepEqual(state.TimeToLiveSpecification, { AttributeName: 'ttl', Enabled: true });
  const dedup = resource('DedupTable').Properties;
  assert.deepEqual(key(dedup), ['pk:S:HASH']);
  assert.deepEqual(dedup.TimeToLiveSpecification, { AttributeName: 'ttl', Enabled: true });
});

test('the stream event source reports item failures, retries, and has an on-failure destination', { skip }, () => {
  const events = Object.values(resource('DecodeFunction').Properties.Events);
  assert.equal(events.length, 1);
  const [ev] = events;
  assert.equal(ev.Type, 'DynamoDB');
  const p = ev.Properties;
  assert.deepEqual(p.FunctionResponseTypes, ['ReportBatchItemFailures']);
  assert.ok(p.BatchSize !== undefined);
  assert.ok(p.MaximumRetryAttempts !== undefined);
  assert.deepEqual(p.DestinationConfig.OnFailure.Destination, { '!GetAtt': 'FailureQueue.Arn' });
  assert.ok(['TRIM_HORIZON', 'LATEST'].includes(p.StartingPosition));
});

test('IAM: exactly the actions the runtime uses, on those resources only', { skip }, () => {
  const fn = resource('DecodeFunction').Properties;
  assert.deepEqual(fn.Role, { '!GetAtt': 'FunctionRole.Arn' }, 'an explicit role (SAM adds nothing)');
  assert.equal(fn.Policies, undefined);
  const statements = resource('FunctionRole').Properties.Policies.flatMap((p) => p.PolicyDocument.Statement);
  const granted = new Map();
  for (const s of statements) {
    assert.equal(s.Effect, 'Allow');
    const actions = [].concat(s.Action);
    for (const a of actions) assert.ok(!a.includes('*'), `wildcard action ${a}`);
    assert.notEqual(s.Resource, '*');
    granted.set(JSON.stringify(s.Resource), [...(granted.get(JSON.stringify(s.Resource)) || []), ...actions]);
  }
  const on = (res) => (granted.get(JSON.stringify(res)) || []).slice().sort();
  const ddb = (ops) => ops.map((o) => `dynamodb:${o}`).sort();
  // The state table: every operation of the store backend except Query,
  // which only `murmur-ddb query` (run with the user's own credentials)
  // issues.
  const storeOps = opsIn('runtime/store_dynamodb.c').filter((o) => o !== 'Query');
  assert.ok(storeOps.includes('UpdateItem'));
  assert.deepEqual(on({ '!GetAtt': 'StateTable.Arn' }), ddb(storeOps));
  assert.deepEqual(on({ '!GetAtt': 'DedupTable.Arn' }), ddb(opsIn('runtime/dedup_dynamodb.c')));
  const stream = { '!If': ['CreateSource', { '!GetAtt': 'OrdersTable.StreamArn' }, { '!Ref': 'SourceStreamArn' }] };
  assert.deepEqual(on(stream), ['dynamodb:DescribeStream', 'dynamodb:GetRecords', 'dynamodb:GetShardIterator',
    'dynamodb:ListStreams']);
  assert.deepEqual(resource('DecodeFunction').Properties.Events.Stream.Properties.Stream, stream);
  assert.deepEqual(on({ '!GetAtt': 'FailureQueue.Arn' }), ['sqs:SendMessage']);
  // The poison queue: the runtime parks with SendMessageBatch, which IAM
  // authorises as sqs:SendMessage; ReceiveMessage/DeleteMessageBatch are
  // `murmur-ddb replay`'s, run with the user's own credentials.
  assert.deepEqual(sqsOpsIn('runtime/dlq.c'), ['DeleteMessageBatch', 'ReceiveMessage', 'SendMessageBatch']);
  assert.deepEqual(on({ '!GetAtt': 'PoisonQueue.Arn' }), ['sqs:SendMessage']);
  assert.deepEqual(on({ '!GetAtt': 'FunctionLogGroup.Arn' }), ['logs:CreateLogStream', 'logs:PutLogEvents']);
  assert.equal(granted.size, 6, [...granted.keys()].join(' '));
  // The log group is the one Lambda writes to.
  assert.deepEqual(resource('FunctionLogGroup').Properties.LogGroupName, { '!Sub': '/aws/lambda/${AWS::StackName}-decode' });
  assert.deepEqual(fn.FunctionName, { '!Sub': '${AWS::StackName}-decode' });
});

#!/usr/bin/env node
// tests/servers-sqs/sqs.mjs - an SQS-compatible server for tests/check_dlq.c.
//
// fauxqs (in memory, the SQS JSON 1.0 protocol: POST / with
// X-Amz-Target: AmazonSQS.<Op> and Content-Type application/x-amz-json-1.0)
// wrapped with what the tests need around it:
//
//   * it listens on 127.0.0.1 only, at a port the kernel picks, prints
//     "PORT <n>" on stdout once it listens, and exits when stdin closes (so
//     it never outlives the test that started it) or on SIGTERM;
//   * queue URLs are http://127.0.0.1:<port>/000000000000/<name>, so a
//     queue URL alone leads a client back here;
//   * every SQS request's SigV4 signature is checked with the AWS SDK's own
//     signer (@smithy/signature-v4) against CREDS (a JSON array of
//     {"id","secret"}), given the request exactly as received: a request
//     that does not verify, or whose credential scope is not ".../sqs/
//     aws4_request", gets 403 SignatureDoesNotMatch and is not executed;
//   * a QueueUrl that names no local queue is looked up by its last path
//     segment (so a real AWS queue URL reached through an endpoint override
//     finds the local queue of that name);
//   * control routes (not SQS):
//       POST /_mm/fault  {"op": "SendMessageBatch" (any op when absent),
//                         "count": n (how many requests it applies to),
//                         "mode": "status" (answer "status" with __type
//                                 "type", nothing executed)
//                               | "delay"  (wait "ms", then execute)
//                               | "drop"   (close the connection, nothing
//                                 executed, no answer)
//                               | "entries" (a *Batch op answered 200 with
//                                 every entry in Failed, "senderFault"
//                                 true|false, nothing executed)}
//                        faults queue up; each applies to "count" requests
//       GET  /_mm/stats  {"calls": {op: n}, "entries": [entries per
//                         SendMessageBatch], "bytes": [message bytes per
//                         SendMessageBatch, as SQS counts them],
//                         "badSignatures": n, "signed": n, "lastScope":
//                         "<region>/<service>" of the last signed request}
//       POST /_mm/reset  clears stats and faults
//       GET  /_mm/messages/<queue name>  every message in the queue (ready,
//                         in flight or delayed) as {"body", "attributes":
//                         {name: value}, "groupId", "dedupId"}
// Usage: node sqs.mjs CREDS
import { createHash, createHmac } from 'node:crypto'
import { buildApp } from 'fauxqs'
import { SqsStore } from './node_modules/fauxqs/dist/sqs/sqsStore.js'
import { SignatureV4 } from '@smithy/signature-v4'

const creds = JSON.parse(process.argv[2] || '[]')

// The checksum constructor @smithy/signature-v4 wants: a hash, or an HMAC
// when given a secret.
class Sha256 {
  constructor (secret) {
    this.h = secret ? createHmac('sha256', secret) : createHash('sha256')
  }

  update (d) { this.h.update(typeof d === 'string' ? Buffer.from(d, 'utf8') : d) }
  async digest () { return new Uint8Array(this.h.digest()) }
}

function amzDate (s) {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s || '')
  if (!m) return null
  return new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]))
}

// Returns null when the request's signature verifies, else why not.
async function badSignature (req, body) {
  const auth = req.headers.authorization || ''
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]+)$/.exec(auth)
  if (!m) return 'Authorization header not in SigV4 form'
  const [, id, , region, service, signed] = m
  if (service !== 'sqs') return `credential scope names service ${service}, not sqs`
  const c = creds.find((x) => x.id === id)
  if (!c) return `unknown access key ${id}`
  const date = amzDate(req.headers['x-amz-date'])
  if (!date) return 'no valid X-Amz-Date'
  const names = signed.split(';')
  const headers = {}
  for (const n of names) if (n !== 'x-amz-date' && n !== 'x-amz-security-token') headers[n] = req.headers[n]
  const signer = new SignatureV4({
    credentials: { accessKeyId: c.id, secretAccessKey: c.secret, sessionToken: req.headers['x-amz-security-token'] || undefined },
    region,
    service,
    sha256: Sha256,
    applyChecksum: false,
    uriEscapePath: true
  })
  const [host, port] = (req.headers.host || '').split(':')
  const out = await signer.sign({
    method: req.method,
    protocol: 'http:',
    hostname: host,
    port: port ? +port : undefined,
    path: req.url,
    query: {},
    headers,
    body
  }, { signingDate: date, signableHeaders: new Set(names) })
  return out.headers.authorization === auth ? null : 'signature does not match'
}

// SQS's size of one message: body plus attribute names, types and values.
function messageBytes (e) {
  let n = Buffer.byteLength(e.MessageBody || '', 'utf8')
  for (const [k, a] of Object.entries(e.MessageAttributes || {})) {
    n += Buffer.byteLength(k, 'utf8') + Buffer.byteLength(a.DataType || '', 'utf8')
    if (a.StringValue !== undefined) n += Buffer.byteLength(a.StringValue, 'utf8')
    if (a.BinaryValue !== undefined) n += Buffer.byteLength(a.BinaryValue, 'utf8')
  }
  return n
}

let stats, faults
function reset () {
  stats = { calls: {}, entries: [], bytes: [], badSignatures: 0, signed: 0 }
  faults = []
}
reset()

const sqsStore = new SqsStore()
sqsStore.host = undefined // queue URLs name the request's Host: 127.0.0.1:<port>
const app = buildApp({ logger: false, stores: { sqsStore } })

// Keep the raw body: the signature covers its exact bytes.
app.removeContentTypeParser('application/x-amz-json-1.0')
app.addContentTypeParser('application/x-amz-json-1.0', { parseAs: 'buffer' }, (req, body, done) => {
  req.rawBody = body
  try {
    done(null, JSON.parse(body.toString('utf8')))
  } catch (err) {
    err.statusCode = 400
    done(err)
  }
})

app.addHook('preHandler', async (req, reply) => {
  if (req.method !== 'POST' || req.url !== '/' || !req.rawBody) return
  const op = String(req.headers['x-amz-target'] || '').replace('AmazonSQS.', '')
  const why = await badSignature(req, req.rawBody)
  if (why) {
    stats.badSignatures++
    reply.code(403).header('content-type', 'application/x-amz-json-1.0')
    return reply.send({ __type: 'com.amazonaws.sqs#SignatureDoesNotMatch', message: why })
  }
  stats.signed++
  stats.calls[op] = (stats.calls[op] || 0) + 1
  const scope = /Credential=[^/]+\/\d{8}\/([^/]+)\/([^/]+)\//.exec(req.headers.authorization)
  stats.lastScope = scope ? `${scope[1]}/${scope[2]}` : null
  // A queue URL naming another host (a real AWS URL, reached through an
  // endpoint override) finds the local queue of the same name.
  if (req.body && typeof req.body.QueueUrl === 'string' && !sqsStore.getQueue(req.body.QueueUrl)) {
    const q = sqsStore.getQueueByName(req.body.QueueUrl.split('/').pop())
    if (q) req.body.QueueUrl = q.url
  }
  if (op === 'SendMessageBatch') {
    const es = req.body.Entries || []
    stats.entries.push(es.length)
    stats.bytes.push(es.reduce((s, e) => s + messageBytes(e), 0))
  }
  const f = faults.find((x) => x.count > 0 && (!x.op || x.op === op))
  if (!f) return
  f.count--
  if (f.mode === 'delay') {
    await new Promise((resolve) => setTimeout(resolve, f.ms || 1000))
    return
  }
  if (f.mode === 'drop') {
    reply.hijack()
    req.raw.socket.destroy()
    return reply
  }
  if (f.mode === 'entries' && op.endsWith('Batch')) {
    reply.header('content-type', 'application/x-amz-json-1.0')
    return reply.send({
      Successful: [],
      Failed: (req.body.Entries || []).map((e) => ({
        Id: e.Id, SenderFault: !!f.senderFault, Code: f.senderFault ? 'InvalidParameterValue' : 'InternalError', Message: 'injected'
      }))
    })
  }
  reply.code(f.status || 500).header('content-type', 'application/x-amz-json-1.0')
  return reply.send({ __type: `com.amazonaws.sqs#${f.type || 'InternalError'}`, message: 'injected' })
})

app.post('/_mm/fault', async (req) => {
  const f = Buffer.isBuffer(req.body) ? JSON.parse(req.body.toString('utf8')) : req.body
  faults.push({ count: 1, ...f })
  return { ok: true }
})
app.post('/_mm/reset', async () => { reset(); return { ok: true } })
app.get('/_mm/stats', async () => stats)
app.get('/_mm/messages/:name', async (req, reply) => {
  const q = sqsStore.getQueueByName(req.params.name)
  if (!q) { reply.code(404); return { error: 'no such queue' } }
  const { ready, delayed, inflight } = q.inspectMessages()
  const all = [...ready, ...delayed, ...inflight.map((x) => x.message)]
  return all.map((m) => ({
    body: m.body,
    attributes: Object.fromEntries(Object.entries(m.messageAttributes || {}).map(([k, a]) => [k, a.StringValue ?? a.BinaryValue])),
    groupId: m.messageGroupId ?? null,
    dedupId: m.messageDeduplicationId ?? null
  }))
})

await app.listen({ port: 0, host: '127.0.0.1' })
process.stdout.write(`PORT ${app.server.address().port}\n`)
process.stdin.on('end', () => process.exit(0))
process.stdin.on('error', () => process.exit(0))
process.stdin.resume()
process.on('SIGTERM', () => process.exit(0))

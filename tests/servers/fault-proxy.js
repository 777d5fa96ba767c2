#!/usr/bin/env node
// tests/servers/fault-proxy.js - a fault-injecting proxy in front of dynalite.
//
// Listens on 127.0.0.1 (kernel-chosen port, printed as "PORT <n>") and
// forwards every request to 127.0.0.1:TARGET, except that a seeded
// generator picks, per request of an operation in OPS, one fault:
//   throttle     answer 400 ProvisionedThroughputExceededException, not forwarded
//   error500     answer 500 InternalServerError, not forwarded
//   drop_before  close the connection without forwarding (the request was
//                sent, so the client cannot know it was not applied)
//   drop_after   forward, let dynalite apply it, then close the connection
//                without answering (an applied write whose answer is lost)
//   hang_after   forward, let dynalite apply it, then never answer and keep
//                the connection open (the client's timeout, or its
//                deadline, ends the request: an applied write, no answer)
//   unprocessed  (BatchGetItem and BatchWriteItem only; ignored for other
//                operations) the last half (rounded up) of the request's keys
//                or items is handed back as DynamoDB does when it throttles
//                part of a batch: for BatchGetItem the request is forwarded
//                and those keys' items are moved out of Responses into
//                UnprocessedKeys; for BatchWriteItem only the first half is
//                forwarded (so the rest is really not written) and the rest
//                is returned in UnprocessedItems
// RATES is a JSON object of those names to probabilities, plus optionally
// "every": {name: k}: every k-th request of an operation in OPS gets that
// fault whatever the draw (so a short run sees each kind it names); a name
// written "name:Operation" counts only that operation's requests, so e.g.
// "unprocessed:BatchWriteItem" is certain to hit a BatchWriteItem; and
// "delay_ms": every request that is forwarded is answered only that many
// milliseconds after dynalite answered (a slow store; its writes are
// applied at once, so a client giving up early leaves them applied). Each
// injected fault is appended to LOG as one line "<fault> <operation>", so a
// test can prove faults really happened.
// Usage: node fault-proxy.js TARGET SEED RATES LOG [OPS, default
//        UpdateItem,GetItem,BatchGetItem,BatchWriteItem]
'use strict'
const http = require('http')
const fs = require('fs')
const { crc32 } = require('./crc32')

const target = +process.argv[2]
let seed = (+process.argv[3] >>> 0) || 1
const rates = JSON.parse(process.argv[4] || '{}')
const log = process.argv[5]
const ops = new Set((process.argv[6] || 'UpdateItem,GetItem,BatchGetItem,BatchWriteItem').split(','))
const BATCH_OPS = new Set(['BatchGetItem', 'BatchWriteItem'])
const delayMs = Math.max(0, Number(rates.delay_ms) || 0)

// xorshift32: the same seed gives the same fault sequence.
function rnd () {
  seed ^= seed << 13; seed >>>= 0
  seed ^= seed >>> 17
  seed ^= seed << 5; seed >>>= 0
  return seed / 4294967296
}

const every = rates.every || {}
let counted = 0
const countedFor = {} // "name:Operation" -> requests of that operation

function pick (op) {
  if (!ops.has(op)) return null
  counted++
  for (const [key, k] of Object.entries(every)) {
    const [name, only] = key.split(':')
    if (only !== undefined && only !== op) continue
    const c = only === undefined ? counted : (countedFor[key] = (countedFor[key] || 0) + 1)
    if (k > 0 && c % k === 0) return applies(name, op)
  }
  let x = rnd()
  for (const name of ['throttle', 'error500', 'drop_before', 'drop_after', 'hang_after', 'unprocessed']) {
    const p = rates[name] || 0
    if (x < p) return applies(name, op)
    x -= p
  }
  return null
}

// A fault that makes no sense for op (unprocessed outside batches) is none.
function applies (name, op) {
  return name === 'unprocessed' && !BATCH_OPS.has(op) ? null : name
}

// The unprocessed fault's plan for a batch request body: the table, the
// body to forward (null: nothing), and what to hand back. null when the
// body has no table entry to split.
function splitBatch (op, body) {
  let req
  try { req = JSON.parse(body.toString('utf8')) } catch (e) { return null }
  const items = req.RequestItems || {}
  const table = Object.keys(items)[0]
  if (table === undefined) return null
  const list = op === 'BatchGetItem' ? (items[table].Keys || []) : items[table]
  if (!Array.isArray(list) || list.length === 0) return null
  const keep = list.slice(0, list.length - Math.ceil(list.length / 2))
  const back = list.slice(keep.length)
  if (op === 'BatchGetItem') return { table, forward: body, back, spec: items[table] }
  if (keep.length === 0) return { table, forward: null, back }
  req.RequestItems[table] = keep
  return { table, forward: Buffer.from(JSON.stringify(req)), back }
}

// Rewrites dynalite's 200 answer to a split batch (see 'unprocessed').
function handBack (op, plan, answer) {
  const a = answer.length ? JSON.parse(answer.toString('utf8')) : {}
  if (op === 'BatchGetItem') {
    const same = (item, key) => Object.keys(key).every((k) => JSON.stringify(item[k]) === JSON.stringify(key[k]))
    a.Responses = a.Responses || {}
    a.Responses[plan.table] = (a.Responses[plan.table] || []).filter((it) => !plan.back.some((k) => same(it, k)))
    a.UnprocessedKeys = a.UnprocessedKeys || {}
    const spec = Object.assign({}, plan.spec, { Keys: plan.back })
    const prev = a.UnprocessedKeys[plan.table]
    if (prev) spec.Keys = prev.Keys.concat(plan.back)
    a.UnprocessedKeys[plan.table] = spec
  } else {
    a.UnprocessedItems = a.UnprocessedItems || {}
    a.UnprocessedItems[plan.table] = (a.UnprocessedItems[plan.table] || []).concat(plan.back)
  }
  return Buffer.from(JSON.stringify(a))
}

function answer (res, status, type) {
  const body = JSON.stringify({ __type: `com.amazonaws.dynamodb.v20120810#${type}`, message: 'injected by fault-proxy' })
  res.writeHead(status, { 'Content-Type': 'application/x-amz-json-1.0', 'Content-Length': Buffer.byteLength(body) })
  res.end(body)
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 })
const server = http.createServer((req, res) => {
  const chunks = []
  req.on('data', (d) => chunks.push(d))
  req.on('end', () => {
    const body = Buffer.concat(chunks)
    const op = String(req.headers['x-amz-target'] || '').split('.').pop()
    let fault = pick(op)
    const plan = fault === 'unprocessed' ? splitBatch(op, body) : null
    if (fault === 'unprocessed' && !plan) fault = null
    if (fault && log) fs.appendFileSync(log, `${fault} ${op}\n`)
    if (fault === 'throttle') return answer(res, 400, 'ProvisionedThroughputExceededException')
    if (fault === 'error500') return answer(res, 500, 'InternalServerError')
    if (fault === 'drop_before') return req.socket.destroy()
    const deliver = (status, headers, data) => {
      const send = () => {
        if (req.socket.destroyed) return
        res.writeHead(status, headers)
        res.end(data)
      }
      if (delayMs > 0) setTimeout(send, delayMs)
      else send()
    }
    // Unprocessed with nothing left to write: answered here.
    if (plan && plan.forward === null) {
      const data = handBack(op, plan, Buffer.alloc(0))
      return deliver(200, { 'Content-Type': 'application/x-amz-json-1.0', 'Content-Length': data.length, 'x-amz-crc32': String(crc32(data)) }, data)
    }
    const sendBody = plan ? plan.forward : body
    const headers = plan ? Object.assign({}, req.headers, { 'content-length': sendBody.length }) : req.headers
    const up = http.request({ host: '127.0.0.1', port: target, method: req.method, path: req.url, headers, agent }, (ur) => {
      const rc = []
      ur.on('data', (d) => rc.push(d))
      ur.on('end', () => {
        if (fault === 'drop_after') return req.socket.destroy()
        if (fault === 'hang_after') return // the client gives up and closes
        let data = Buffer.concat(rc)
        const h = Object.assign({}, ur.headers)
        if (plan && ur.statusCode === 200) {
          data = handBack(op, plan, data)
          h['content-length'] = data.length
          h['x-amz-crc32'] = String(crc32(data))
        }
        deliver(ur.statusCode, h, data)
      })
    })
    up.on('error', () => req.socket.destroy())
    up.end(sendBody)
  })
})
server.keepAliveTimeout = 60000
server.listen(0, '127.0.0.1', () => process.stdout.write(`PORT ${server.address().port}\n`))
process.stdin.on('end', () => process.exit(0))
process.stdin.on('error', () => process.exit(0))
process.stdin.resume()
process.on('SIGTERM', () => process.exit(0))

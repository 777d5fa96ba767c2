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
// RATES is a JSON object of those names to probabilities, plus optionally
// "every": {name: k}: every k-th request of an operation in OPS gets that
// fault whatever the draw (so a short run sees each kind it names), and
// "delay_ms": every request that is forwarded is answered only that many
// milliseconds after dynalite answered (a slow store; its writes are
// applied at once, so a client giving up early leaves them applied). Each
// injected fault is appended to LOG as one line "<fault> <operation>", so a
// test can prove faults really happened.
// Usage: node fault-proxy.js TARGET SEED RATES LOG [OPS, default
//        UpdateItem,GetItem]
'use strict'
const http = require('http')
const fs = require('fs')

const target = +process.argv[2]
let seed = (+process.argv[3] >>> 0) || 1
const rates = JSON.parse(process.argv[4] || '{}')
const log = process.argv[5]
const ops = new Set((process.argv[6] || 'UpdateItem,GetItem').split(','))
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

function pick (op) {
  if (!ops.has(op)) return null
  counted++
  for (const [name, k] of Object.entries(every)) if (k > 0 && counted % k === 0) return name
  let x = rnd()
  for (const name of ['throttle', 'error500', 'drop_before', 'drop_after', 'hang_after']) {
    const p = rates[name] || 0
    if (x < p) return name
    x -= p
  }
  return null
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
    const fault = pick(op)
    if (fault && log) fs.appendFileSync(log, `${fault} ${op}\n`)
    if (fault === 'throttle') return answer(res, 400, 'ProvisionedThroughputExceededException')
    if (fault === 'error500') return answer(res, 500, 'InternalServerError')
    if (fault === 'drop_before') return req.socket.destroy()
    const up = http.request({ host: '127.0.0.1', port: target, method: req.method, path: req.url, headers: req.headers, agent }, (ur) => {
      const rc = []
      ur.on('data', (d) => rc.push(d))
      ur.on('end', () => {
        if (fault === 'drop_after') return req.socket.destroy()
        if (fault === 'hang_after') return // the client gives up and closes
        const send = () => {
          if (req.socket.destroyed) return
          res.writeHead(ur.statusCode, ur.headers)
          res.end(Buffer.concat(rc))
        }
        if (delayMs > 0) setTimeout(send, delayMs)
        else send()
      })
    })
    up.on('error', () => req.socket.destroy())
    up.end(body)
  })
})
server.keepAliveTimeout = 60000
server.listen(0, '127.0.0.1', () => process.stdout.write(`PORT ${server.address().port}\n`))
process.stdin.on('end', () => process.exit(0))
process.stdin.on('error', () => process.exit(0))
process.stdin.resume()
process.on('SIGTERM', () => process.exit(0))

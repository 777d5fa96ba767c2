#!/usr/bin/env node
// tests/servers/sigv4-capture.js - the independent half of the SigV4 proof.
//
// An HTTP server on 127.0.0.1 (kernel-chosen port, printed as "PORT <n>")
// that records every request it gets and re-signs it with the AWS SDK's own
// signer (@smithy/signature-v4 with @aws-crypto/sha256-js), then appends one
// JSON line per request to OUT:
//   {"target", "body_b64", "received": <Authorization header as sent>,
//    "expected": <Authorization computed by the SDK signer>,
//    "token": <X-Amz-Security-Token as sent or null>}
// The SDK signer is given the request exactly as received: method, path,
// body bytes, the region and service of the credential scope, the date of
// X-Amz-Date, and the headers the request says it signed (SignedHeaders),
// which is what AWS itself does to verify a request. The C test compares
// "received" with "expected" and checks the header list.
//
// CREDS is a JSON array of {"id","secret","token"}: the server's idea of
// each access key's secret (a wrong one makes the negative control).
//
// Canned answers for the client's error classification: a request whose
// TableName is "canned-<status>-<Type>" gets that HTTP status and the body
// {"__type":"com.amazonaws.dynamodb.v20120810#<Type>","message":"canned"};
// "canned-badcrc" gets 200 {} with a wrong x-amz-crc32. Everything else
// gets 200 {}.
// Usage: node sigv4-capture.js OUT CREDS
'use strict'
const http = require('http')
const fs = require('fs')
const { crc32 } = require('./crc32')
const { SignatureV4 } = require('@smithy/signature-v4')
const { Sha256 } = require('@aws-crypto/sha256-js')

const out = process.argv[2]
const creds = JSON.parse(process.argv[3] || '[]')

// "20240102T030405Z" -> Date
function amzDate (s) {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s || '')
  if (!m) return null
  return new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]))
}

async function expectedAuth (req, body) {
  const auth = req.headers.authorization || ''
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]+)$/.exec(auth)
  if (!m) return { error: 'Authorization header not in SigV4 form' }
  const [, id, , region, service, signed] = m
  const c = creds.find((x) => x.id === id)
  if (!c) return { error: `unknown access key ${id}` }
  const date = amzDate(req.headers['x-amz-date'])
  if (!date) return { error: 'no valid X-Amz-Date' }
  const names = signed.split(';')
  const headers = {}
  // node joins repeated headers with ", "; SigV4 joins with ","; none repeat here.
  for (const n of names) if (n !== 'x-amz-date' && n !== 'x-amz-security-token') headers[n] = req.headers[n]
  const signer = new SignatureV4({
    credentials: { accessKeyId: c.id, secretAccessKey: c.secret, sessionToken: c.token || undefined },
    region,
    service,
    sha256: Sha256,
    applyChecksum: false,
    uriEscapePath: true
  })
  const [host, port] = (req.headers.host || '').split(':')
  const signedReq = await signer.sign({
    method: req.method,
    protocol: 'http:',
    hostname: host,
    port: port ? +port : undefined,
    path: req.url,
    query: {},
    headers,
    body
  }, { signingDate: date, signableHeaders: new Set(names) })
  return { expected: signedReq.headers.authorization }
}

const server = http.createServer((req, res) => {
  const chunks = []
  req.on('data', (d) => chunks.push(d))
  req.on('end', async () => {
    const body = Buffer.concat(chunks)
    let table = ''
    try { table = JSON.parse(body.toString('utf8')).TableName || '' } catch (e) { }
    let verdict
    try { verdict = await expectedAuth(req, body) } catch (e) { verdict = { error: String(e) } }
    const line = {
      target: req.headers['x-amz-target'] || null,
      table,
      body_b64: body.toString('base64'),
      received: req.headers.authorization || null,
      token: req.headers['x-amz-security-token'] || null,
      ...verdict
    }
    fs.appendFileSync(out, JSON.stringify(line) + '\n')
    let status = 200
    let reply = Buffer.from('{}')
    let crc = crc32(reply)
    const canned = /^canned-(\d{3})-([A-Za-z]+)$/.exec(table)
    if (canned) {
      status = +canned[1]
      reply = Buffer.from(JSON.stringify({ __type: `com.amazonaws.dynamodb.v20120810#${canned[2]}`, message: 'canned' }))
      crc = crc32(reply)
    } else if (table === 'canned-badcrc') {
      crc = (crc + 1) >>> 0
    }
    res.writeHead(status, {
      'Content-Type': 'application/x-amz-json-1.0',
      'x-amzn-RequestId': 'capture-' + Date.now(),
      'x-amz-crc32': String(crc),
      'Content-Length': reply.length
    })
    res.end(reply)
  })
})
server.listen(0, '127.0.0.1', () => process.stdout.write(`PORT ${server.address().port}\n`))
process.stdin.on('end', () => process.exit(0))
process.stdin.on('error', () => process.exit(0))
process.stdin.resume()
process.on('SIGTERM', () => process.exit(0))

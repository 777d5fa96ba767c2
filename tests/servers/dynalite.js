#!/usr/bin/env node
// tests/servers/dynalite.js - starts dynalite (in memory) for tests/check_ddb.c.
//
// Listens on 127.0.0.1 at a port the kernel picks (dynalite's own CLI maps
// --port 0 to its default 4567), prints "PORT <n>" on stdout once it
// listens, and exits when stdin closes (so it never outlives the test that
// started it) or on SIGTERM.
// --latency-ms N holds every request N ms before dynalite handles it: a
// network round trip modelled inside the server process (bench/ddb-bench.js
// --latency-ms), so that no extra proxy hop competes for the CPU.
// Usage: node dynalite.js [--tls DIR] [--latency-ms N]
//        (DIR holds server.key and server.crt)
'use strict'
const fs = require('fs')
const path = require('path')
const dynalite = require('dynalite')

const opts = { createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 }
const i = process.argv.indexOf('--tls')
if (i > 0) {
  const dir = process.argv[i + 1]
  opts.ssl = true
  opts.key = fs.readFileSync(path.join(dir, 'server.key'))
  opts.cert = fs.readFileSync(path.join(dir, 'server.crt'))
  opts.ca = fs.readFileSync(path.join(dir, 'ca.crt'))
}
const server = dynalite(opts)
const l = process.argv.indexOf('--latency-ms')
const latencyMs = l > 0 ? Math.max(0, Number(process.argv[l + 1]) || 0) : 0
if (latencyMs > 0) {
  const handlers = server.listeners('request')
  server.removeAllListeners('request')
  server.on('request', (req, res) => {
    setTimeout(() => { for (const h of handlers) h.call(server, req, res) }, latencyMs)
  })
}
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`PORT ${server.address().port}\n`)
})
process.stdin.on('end', () => process.exit(0))
process.stdin.on('error', () => process.exit(0))
process.stdin.resume()
process.on('SIGTERM', () => process.exit(0))

// tests/servers/ddb-client.js - helpers for Node tests and benchmarks that
// talk to the servers of this directory:
//
//   startServer(script, args)  spawns `node <this dir>/<script> args...`,
//                              waits for its "PORT <n>" line and resolves to
//                              {port, child, stop()}; the server exits when
//                              the parent does (its stdin closes).
//   new DdbClient({port})      a small DynamoDB JSON API client, signed with
//                              SigV4 by the AWS SDK's own signer
//                              (@smithy/signature-v4), independent of the C
//                              client under test: call(op, body),
//                              createTable(name, {sortKey}), scanAll(name),
//                              deleteTable(name).
//   TEST_CREDENTIALS           the key pair the tests sign with.
//
// Every request has a timeout; every loop is bounded.
'use strict'
const http = require('http')
const path = require('path')
const { spawn } = require('child_process')
const { SignatureV4 } = require('@smithy/signature-v4')
const { Sha256 } = require('@aws-crypto/sha256-js')

const TEST_CREDENTIALS = {
  accessKeyId: 'AKIDMURMURTEST',
  secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYTESTKEY'
}
const REGION = 'us-east-1'

/* Spawns a server script of this directory and waits for its port. */
function startServer (script, args = [], { timeoutMs = 15000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(__dirname, script), ...args.map(String)], {
      stdio: ['pipe', 'pipe', 'inherit']
    })
    let buf = ''
    let done = false
    const timer = setTimeout(() => finish(new Error(`${script} printed no port within ${timeoutMs} ms`)), timeoutMs)
    function finish (err, port) {
      if (done) return
      done = true
      clearTimeout(timer)
      if (err) {
        child.kill('SIGKILL')
        return reject(err)
      }
      const exited = new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) resolve()
        else child.once('exit', resolve)
      })
      resolve({
        port,
        child,
        stop: async () => {
          child.stdin.end()
          child.kill('SIGTERM')
          await exited
        }
      })
    }
    child.on('error', (e) => finish(e))
    child.on('exit', (code) => finish(new Error(`${script} exited (${code}) before printing its port`)))
    child.stdout.on('data', (c) => {
      buf += c
      const m = /PORT (\d+)\n/.exec(buf)
      if (m) finish(null, Number(m[1]))
    })
  })
}

class DdbError extends Error {
  constructor (op, status, type, message) {
    super(`${op}: ${status} ${type}: ${message}`)
    this.status = status
    this.type = type
  }
}

class DdbClient {
  constructor ({ port, host = '127.0.0.1', timeoutMs = 10000, credentials = TEST_CREDENTIALS }) {
    this.port = port
    this.host = host
    this.timeoutMs = timeoutMs
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 8 })
    this.signer = new SignatureV4({ credentials, region: REGION, service: 'dynamodb', sha256: Sha256 })
  }

  /* One API call; resolves to the parsed answer, rejects with DdbError. */
  async call (op, body) {
    const payload = JSON.stringify(body)
    const req = await this.signer.sign({
      method: 'POST',
      protocol: 'http:',
      hostname: this.host,
      port: this.port,
      path: '/',
      query: {},
      headers: {
        host: `${this.host}:${this.port}`,
        'content-type': 'application/x-amz-json-1.0',
        'x-amz-target': `DynamoDB_20120810.${op}`
      },
      body: payload
    })
    return new Promise((resolve, reject) => {
      const r = http.request({
        host: this.host,
        port: this.port,
        method: 'POST',
        path: '/',
        headers: { ...req.headers, 'content-length': Buffer.byteLength(payload) },
        agent: this.agent,
        timeout: this.timeoutMs
      }, (res) => {
        const chunks = []
        res.on('data', (d) => chunks.push(d))
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          let json = {}
          try { json = text ? JSON.parse(text) : {} } catch (e) { return reject(new DdbError(op, res.statusCode, 'BadJSON', text.slice(0, 200))) }
          if (res.statusCode !== 200) {
            const type = String(json.__type || '').split('#').pop()
            return reject(new DdbError(op, res.statusCode, type, json.message || json.Message || ''))
          }
          resolve(json)
        })
      })
      r.on('timeout', () => r.destroy(new Error(`${op}: no answer within ${this.timeoutMs} ms`)))
      r.on('error', reject)
      r.end(payload)
    })
  }

  /* Creates a table (pk S, plus sk N when sortKey) and waits until ACTIVE. */
  async createTable (name, { sortKey = true } = {}) {
    const attrs = [{ AttributeName: 'pk', AttributeType: 'S' }]
    const keys = [{ AttributeName: 'pk', KeyType: 'HASH' }]
    if (sortKey) {
      attrs.push({ AttributeName: 'sk', AttributeType: 'N' })
      keys.push({ AttributeName: 'sk', KeyType: 'RANGE' })
    }
    await this.call('CreateTable', {
      TableName: name,
      AttributeDefinitions: attrs,
      KeySchema: keys,
      BillingMode: 'PAY_PER_REQUEST'
    })
    for (let i = 0; i < 200; i++) {
      const d = await this.call('DescribeTable', { TableName: name })
      if (d.Table.TableStatus === 'ACTIVE') return
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
    throw new Error(`table ${name} never became ACTIVE`)
  }

  async deleteTable (name) {
    await this.call('DeleteTable', { TableName: name })
  }

  /* Every item of a table (consistent reads, every page; at most 10,000 pages). */
  async scanAll (name) {
    const items = []
    let start
    for (let page = 0; page < 10000; page++) {
      const body = { TableName: name, ConsistentRead: true }
      if (start) body.ExclusiveStartKey = start
      const r = await this.call('Scan', body)
      items.push(...(r.Items || []))
      if (!r.LastEvaluatedKey) return items
      start = r.LastEvaluatedKey
    }
    throw new Error(`scan of ${name} did not end`)
  }

  close () {
    this.agent.destroy()
  }
}

module.exports = { startServer, DdbClient, DdbError, TEST_CREDENTIALS, REGION }

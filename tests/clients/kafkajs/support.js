// Shared start-up for the kafkajs tests: `broker serve` on ephemeral loopback ports, stopped with
// SIGTERM. Not a test file (node --test runs only *.test.js here). The broker binary is
// $LOGLAB_BROKER (default: target/release/broker).
'use strict'

const { spawn } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const readline = require('node:readline')

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1'
const { Kafka, logLevel } = require('kafkajs')

const ROOT = path.resolve(__dirname, '..', '..', '..')
const BROKER = process.env.LOGLAB_BROKER || path.join(ROOT, 'target', 'release', 'broker')
const START_TIMEOUT_MS = 30000
const STOP_TIMEOUT_MS = 30000

/**
 * Starts `broker serve` with `extra` flags; resolves with `{ proc, dir, addr, admin }` once it
 * prints its listening line (`admin` is the admin URL when `--admin-listen` was given).
 */
function startBroker (extra = []) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loglab-kafkajs-'))
  const log = fs.openSync(path.join(dir, 'broker.log'), 'a')
  const args = ['serve', '--listen', '127.0.0.1:0', '--data-dir', path.join(dir, 'data'), ...extra]
  const proc = spawn(BROKER, args, { stdio: ['ignore', 'pipe', log] })
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error('broker did not start in time')) }, START_TIMEOUT_MS)
    const b = { proc, dir, admin: null, addr: null }
    readline.createInterface({ input: proc.stdout }).on('line', (line) => {
      const admin = line.match(/admin on (http:\/\/\S+)/)
      if (admin) b.admin = admin[1]
      const m = line.match(/listening on (\S+)/)
      if (m) { b.addr = m[1]; clearTimeout(timer); resolve(b) }
    })
    proc.on('exit', (code) => { clearTimeout(timer); if (!b.addr) reject(new Error(`broker exited (${code}); see ${dir}/broker.log`)) })
  })
}

/** SIGTERM, SIGKILL after 30 s, then the data directory is removed. */
async function stopBroker (b) {
  const exited = new Promise((resolve) => b.proc.once('exit', resolve))
  b.proc.kill('SIGTERM')
  const timer = setTimeout(() => b.proc.kill('SIGKILL'), STOP_TIMEOUT_MS)
  await exited
  clearTimeout(timer)
  fs.rmSync(b.dir, { recursive: true, force: true })
}

/** A kafkajs client of one broker, quiet, with `retries` quick retries. */
function kafka (addr, clientId, retries = 5) {
  return new Kafka({ clientId, brokers: [addr], logLevel: logLevel.NOTHING, retry: { initialRetryTime: 100, retries } })
}

module.exports = { BROKER, startBroker, stopBroker, kafka }

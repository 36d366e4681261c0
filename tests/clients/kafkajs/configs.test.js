// kafkajs admin: describeConfigs and alterConfigs against `broker serve` (issue 15).
// Run: `node --test` in this folder (scripts/test.sh does). The broker binary is $LOGLAB_BROKER
// (default: target/release/broker).
'use strict'

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const readline = require('node:readline')

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1'
const { Kafka, logLevel, ConfigResourceTypes } = require('kafkajs')

const ROOT = path.resolve(__dirname, '..', '..', '..')
const BROKER = process.env.LOGLAB_BROKER || path.join(ROOT, 'target', 'release', 'broker')

function startBroker () {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loglab-kafkajs-'))
  const log = fs.openSync(path.join(dir, 'broker.log'), 'a')
  const args = ['serve', '--listen', '127.0.0.1:0', '--data-dir', path.join(dir, 'data')]
  const proc = spawn(BROKER, args, { stdio: ['ignore', 'pipe', log] })
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error('broker did not start in time')) }, 30000)
    const b = { proc, dir, addr: null }
    readline.createInterface({ input: proc.stdout }).on('line', (line) => {
      const m = line.match(/listening on (\S+)/)
      if (m) { b.addr = m[1]; clearTimeout(timer); resolve(b) }
    })
    proc.on('exit', (code) => { clearTimeout(timer); if (!b.addr) reject(new Error(`broker exited (${code}); see ${dir}/broker.log`)) })
  })
}

async function stopBroker (b) {
  const exited = new Promise((resolve) => b.proc.once('exit', resolve))
  b.proc.kill('SIGTERM')
  const timer = setTimeout(() => b.proc.kill('SIGKILL'), 30000)
  await exited
  clearTimeout(timer)
  fs.rmSync(b.dir, { recursive: true, force: true })
}

async function describe (admin, topic) {
  const r = await admin.describeConfigs({
    includeSynonyms: false,
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }]
  })
  const out = {}
  for (const e of r.resources[0].configEntries) out[e.configName] = e
  return out
}

test('describeConfigs and alterConfigs on a topic', async () => {
  const b = await startBroker()
  try {
    const k = new Kafka({ clientId: 'kafkajs-configs', brokers: [b.addr], logLevel: logLevel.NOTHING })
    const admin = k.admin()
    await admin.connect()
    await admin.createTopics({
      topics: [{ topic: 'js-cfg', numPartitions: 1, configEntries: [{ name: 'retention.ms', value: '123456' }] }],
      waitForLeaders: true
    })
    let configs = await describe(admin, 'js-cfg')
    assert.equal(configs['retention.ms'].configValue, '123456')
    assert.equal(configs['retention.ms'].isDefault, false)
    assert.equal(configs['segment.bytes'].isDefault, true)
    assert.equal(configs['min.insync.replicas'].configValue, '1')
    await admin.alterConfigs({
      validateOnly: false,
      resources: [{ type: ConfigResourceTypes.TOPIC, name: 'js-cfg', configEntries: [{ name: 'cleanup.policy', value: 'compact' }] }]
    })
    configs = await describe(admin, 'js-cfg')
    assert.equal(configs['cleanup.policy'].configValue, 'compact')
    assert.equal(configs['retention.ms'].isDefault, true, 'AlterConfigs replaces the whole set')
    await assert.rejects(admin.alterConfigs({
      resources: [{ type: ConfigResourceTypes.TOPIC, name: 'js-cfg', configEntries: [{ name: 'no.such.config', value: '1' }] }]
    }))
    await admin.disconnect()
  } finally {
    await stopBroker(b)
  }
})

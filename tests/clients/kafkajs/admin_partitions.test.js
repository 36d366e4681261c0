// kafkajs's admin against the partition, record and group APIs of issue 15: createPartitions,
// deleteTopicRecords, deleteGroups (only an empty group goes).
// Run: `node --test` in this folder (scripts/test.sh does, after `npm ci`). The broker binary is
// $LOGLAB_BROKER (default: target/release/broker), as for the Python client tests.
'use strict'

const { test } = require('node:test')
const assert = require('node:assert/strict')
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

function startBroker () {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loglab-kafkajs-admin-'))
  const log = fs.openSync(path.join(dir, 'broker.log'), 'a')
  const args = ['serve', '--listen', '127.0.0.1:0', '--data-dir', path.join(dir, 'data'),
    '--override', 'group.initial.rebalance.delay.ms=0']
  const proc = spawn(BROKER, args, { stdio: ['ignore', 'pipe', log] })
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error('broker did not start in time')) }, START_TIMEOUT_MS)
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

function kafka (addr) {
  return new Kafka({ clientId: 'kafkajs-admin', brokers: [addr], logLevel: logLevel.NOTHING, retry: { initialRetryTime: 100, retries: 5 } })
}

test('createPartitions grows a topic, deleteTopicRecords moves its low watermark', async () => {
  const b = await startBroker()
  try {
    const k = kafka(b.addr)
    const admin = k.admin()
    await admin.connect()
    await admin.createTopics({ topics: [{ topic: 'grow', numPartitions: 1 }], waitForLeaders: true })
    const producer = k.producer()
    await producer.connect()
    await producer.send({ topic: 'grow', acks: -1, messages: [1, 2, 3, 4, 5].map((i) => ({ value: `v${i}`, partition: 0 })) })
    await admin.createPartitions({ topicPartitions: [{ topic: 'grow', count: 3 }] })
    const md = await admin.fetchTopicMetadata({ topics: ['grow'] })
    assert.equal(md.topics[0].partitions.length, 3)
    await producer.send({ topic: 'grow', acks: -1, messages: [{ value: 'new', partition: 2 }] })
    await producer.disconnect()
    await assert.rejects(admin.createPartitions({ topicPartitions: [{ topic: 'grow', count: 2 }] }),
      (e) => JSON.stringify(e).includes('INVALID_PARTITIONS') || /partitions/i.test(e.message))
    await admin.deleteTopicRecords({ topic: 'grow', partitions: [{ partition: 0, offset: '3' }] })
    const offsets = await admin.fetchTopicOffsets('grow')
    const p0 = offsets.find((o) => o.partition === 0)
    assert.deepEqual([p0.low, p0.high], ['3', '5'])
    await admin.disconnect()
  } finally {
    await stopBroker(b)
  }
})

test('deleteGroups deletes a group only once it is empty', async () => {
  const b = await startBroker()
  try {
    const k = kafka(b.addr)
    const admin = k.admin()
    await admin.connect()
    await admin.createTopics({ topics: [{ topic: 'gt', numPartitions: 1 }], waitForLeaders: true })
    const producer = k.producer()
    await producer.connect()
    await producer.send({ topic: 'gt', acks: -1, messages: [{ value: 'x' }] })
    await producer.disconnect()
    const consumer = k.consumer({ groupId: 'js-group', sessionTimeout: 6000, heartbeatInterval: 500 })
    await consumer.connect()
    await consumer.subscribe({ topic: 'gt', fromBeginning: true })
    let seen
    const got = new Promise((resolve) => { seen = resolve })
    await consumer.run({ eachMessage: async () => seen() })
    await got
    await assert.rejects(admin.deleteGroups(['js-group']), (e) => JSON.stringify(e.groups || e).includes('NON_EMPTY_GROUP'))
    await consumer.disconnect()
    const deleted = await admin.deleteGroups(['js-group'])
    assert.deepEqual(deleted.map((g) => [g.groupId, g.errorCode]), [['js-group', 0]])
    await assert.rejects(admin.deleteGroups(['js-group']), (e) => JSON.stringify(e.groups || e).includes('GROUP_ID_NOT_FOUND'))
    await admin.disconnect()
  } finally {
    await stopBroker(b)
  }
})

// kafkajs against `broker serve --admin-listen` (issue 19): rules pushed with `broker faults push`,
// counted with `broker faults list`; the admin API refuses a request without its token.
// Run: `node --test` in this folder (scripts/test.sh does, after `npm ci`). The broker binary is
// $LOGLAB_BROKER (default: target/release/broker), as for the Python client tests.
'use strict'

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const support = require('./support')
const { BROKER, stopBroker } = support

/** `broker serve` with its admin endpoint on an ephemeral port, and `extra` flags. */
const startBroker = (extra = []) => support.startBroker(['--admin-listen', '127.0.0.1:0', ...extra])

/** `broker faults ...`: the exit code, stdout and stderr. */
function faults (args, env = {}) {
  const r = spawnSync(BROKER, ['faults', ...args], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 30000 })
  return { code: r.status, out: r.stdout, err: r.stderr }
}

const kafka = (addr) => support.kafka(addr, 'kafkajs-faults', 8)

test('NOT_LEADER_OR_FOLLOWER x3 on Produce is retried and delivered once', async () => {
  const b = await startBroker()
  try {
    const k = kafka(b.addr)
    const admin = k.admin()
    await admin.connect()
    await admin.createTopics({ topics: [{ topic: 'nl', numPartitions: 1 }], waitForLeaders: true })
    const push = faults(['push', '--admin', b.admin, '--api', 'Produce', '--topic', 'nl', '--error', 'NOT_LEADER_OR_FOLLOWER', '--times', '3'])
    assert.equal(push.code, 0, push.err)
    assert.deepEqual(JSON.parse(push.out), { ids: [1] })

    const producer = k.producer({ idempotent: true, maxInFlightRequests: 1 })
    await producer.connect()
    const sent = await producer.send({ topic: 'nl', acks: -1, messages: [{ value: 'once' }] })
    await producer.disconnect()
    assert.equal(sent[0].errorCode, 0)
    const offsets = await admin.fetchTopicOffsets('nl')
    await admin.disconnect()
    assert.equal(offsets[0].high, '1', 'one record in the log: delivered once')

    const list = faults(['list', '--admin', b.admin])
    assert.equal(list.code, 0, list.err)
    const rules = JSON.parse(list.out)
    assert.equal(rules[0].fired, 3, 'the rule fired on the first three Produce requests')
  } finally {
    await stopBroker(b)
  }
})

test('the admin API refuses a request without the token', async () => {
  const b = await startBroker(['--override', 'loglab.admin.token=s3cret'])
  try {
    const res = await fetch(`${b.admin}/faults`, { method: 'POST', body: '{"api": "Produce", "delay_ms": 1}' })
    assert.equal(res.status, 401)
    const refused = faults(['list', '--admin', b.admin], { LOGLAB_ADMIN_TOKEN: '' })
    assert.notEqual(refused.code, 0)
    assert.match(refused.err, /401/)
    const wrong = faults(['push', '--admin', b.admin, '--token', 'nope', '--api', 'Produce', '--delay-ms', '1'])
    assert.notEqual(wrong.code, 0)
    const ok = faults(['list', '--admin', b.admin], { LOGLAB_ADMIN_TOKEN: 's3cret' })
    assert.equal(ok.code, 0, ok.err)
    assert.deepEqual(JSON.parse(ok.out), [], 'nothing was installed by the refused requests')
  } finally {
    await stopBroker(b)
  }
})

/** Sends one record to `topic` with a REQUEST_TIMED_OUT-after-handling rule; the log's length. */
async function sendThroughTimeout (b, topic, idempotent) {
  const k = kafka(b.addr)
  const admin = k.admin()
  await admin.connect()
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true })
  const push = faults(['push', '--admin', b.admin, '--api', 'Produce', '--topic', topic,
    '--error', 'REQUEST_TIMED_OUT', '--after-handling', '--once'])
  assert.equal(push.code, 0, push.err)
  const producer = k.producer(idempotent ? { idempotent: true, maxInFlightRequests: 1 } : {})
  await producer.connect()
  const sent = await producer.send({ topic, acks: -1, messages: [{ value: 'dup?' }] })
  await producer.disconnect()
  assert.equal(sent[0].errorCode, 0, 'the retry was acknowledged')
  const offsets = await admin.fetchTopicOffsets(topic)
  await admin.disconnect()
  return Number(offsets[0].high)
}

test('an after-handling REQUEST_TIMED_OUT duplicates without idempotence, not with it', async () => {
  const b = await startBroker()
  try {
    assert.equal(await sendThroughTimeout(b, 'dup-off', false), 2, 'written, then written again by the retry')
    assert.equal(await sendThroughTimeout(b, 'dup-on', true), 1, 'the retry is recognised by its sequence')
    const rules = JSON.parse(faults(['list', '--admin', b.admin]).out)
    assert.deepEqual(rules.map((r) => r.fired), [1, 1])
  } finally {
    await stopBroker(b)
  }
})

/** Milliseconds from a consumer's start until it has joined `group` (kafkajs's GROUP_JOIN). */
async function joinTime (b, group) {
  const k = kafka(b.addr)
  const consumer = k.consumer({ groupId: group, sessionTimeout: 30000, rebalanceTimeout: 60000 })
  const joined = new Promise((resolve) => consumer.on(consumer.events.GROUP_JOIN, resolve))
  await consumer.connect()
  await consumer.subscribe({ topic: 'jg', fromBeginning: true })
  const start = Date.now()
  await consumer.run({ eachMessage: async () => {} })
  await joined
  const ms = Date.now() - start
  await consumer.disconnect()
  return ms
}

test('a delayed JoinGroup shows in the consumer rebalance time', async () => {
  const b = await startBroker(['--override', 'group.initial.rebalance.delay.ms=0'])
  try {
    const admin = kafka(b.addr).admin()
    await admin.connect()
    await admin.createTopics({ topics: [{ topic: 'jg', numPartitions: 1 }], waitForLeaders: true })
    await admin.disconnect()
    const plain = await joinTime(b, 'g-plain')
    const push = faults(['push', '--admin', b.admin, '--api', 'JoinGroup', '--group', 'g-slow', '--delay-ms', '3000'])
    assert.equal(push.code, 0, push.err)
    const delayed = await joinTime(b, 'g-slow')
    assert.ok(delayed >= 3000, `joined in ${delayed} ms with a 3000 ms JoinGroup delay`)
    assert.ok(plain < delayed - 2000, `without the rule ${plain} ms, with it ${delayed} ms`)
    const rules = JSON.parse(faults(['list', '--admin', b.admin]).out)
    assert.ok(rules[0].fired >= 1, 'the rule fired on the slow group\'s JoinGroup')
  } finally {
    await stopBroker(b)
  }
})

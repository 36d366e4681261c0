// kafkajs's admin against the partition, record and group APIs of issue 15: createPartitions,
// deleteTopicRecords, deleteGroups (only an empty group goes).
// Run: `node --test` in this folder (scripts/test.sh does, after `npm ci`). The broker binary is
// $LOGLAB_BROKER (default: target/release/broker), as for the Python client tests.
'use strict'

const { test } = require('node:test')
const assert = require('node:assert/strict')
const support = require('./support')
const { stopBroker } = support

const startBroker = () => support.startBroker(['--override', 'group.initial.rebalance.delay.ms=0'])
const kafka = (addr) => support.kafka(addr, 'kafkajs-admin')

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

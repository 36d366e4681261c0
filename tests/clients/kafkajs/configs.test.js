// kafkajs admin: describeConfigs and alterConfigs against `broker serve` (issue 15).
// Run: `node --test` in this folder (scripts/test.sh does). The broker binary is $LOGLAB_BROKER
// (default: target/release/broker).
'use strict'

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { startBroker, stopBroker, kafka } = require('./support')
const { ConfigResourceTypes } = require('kafkajs')

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
    const k = kafka(b.addr, 'kafkajs-configs')
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

// A dynamic broker config (log.retention.ms of broker 0): a topic without its own retention.ms
// takes it, the broker resource describes it as writable, and a non-dynamic broker key is
// refused. (kafkajs, like both Python clients, refuses the empty name of the cluster-wide
// default; broker/tests/configs_sim.rs sends that one.)
test('alterConfigs on a broker resource', async () => {
  const b = await startBroker()
  try {
    const k = kafka(b.addr, 'kafkajs-dyn')
    const admin = k.admin()
    await admin.connect()
    await admin.createTopics({ topics: [{ topic: 'js-dyn', numPartitions: 1 }], waitForLeaders: true })
    const broker = (entries) => ({ type: ConfigResourceTypes.BROKER, name: '0', configEntries: entries })
    await admin.alterConfigs({ resources: [broker([{ name: 'log.retention.ms', value: '654321' }])] })
    const configs = await describe(admin, 'js-dyn')
    assert.equal(configs['retention.ms'].configValue, '654321')
    assert.equal(configs['retention.ms'].isDefault, false)
    const r = await admin.describeConfigs({ includeSynonyms: false, resources: [{ type: ConfigResourceTypes.BROKER, name: '0' }] })
    const d = Object.fromEntries(r.resources[0].configEntries.map(e => [e.configName, e]))
    assert.equal(d['log.retention.ms'].configValue, '654321')
    assert.equal(d['log.retention.ms'].readOnly, false)
    assert.equal(d['num.partitions'].readOnly, true)
    await assert.rejects(admin.alterConfigs({ resources: [broker([{ name: 'num.partitions', value: '3' }])] }))
    await admin.disconnect()
  } finally {
    await stopBroker(b)
  }
})

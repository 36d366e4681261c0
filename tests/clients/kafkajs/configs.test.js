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

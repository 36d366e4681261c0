//! What every client shares: the transport, connections per broker address (negotiated, reused,
//! replaced when broken), and the cluster metadata (brokers, topics, partition leaders).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use net_model::Network;

use crate::conn::{Conn, ConnConfig, ConnError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    pub partition: i32,
    pub error_code: i16,
    /// -1 when there is no leader.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    pub name: String,
    pub error_code: i16,
    pub is_internal: bool,
    /// Sorted by partition id.
    pub partitions: Vec<PartitionMetadata>,
}

impl TopicMetadata {
    pub fn leader(&self, partition: i32) -> Option<i32> {
        // Brokers list a topic's partitions in order, so partition `i` is usually at index `i`:
        // O(1) for the consumer that asks for each of thousands of partitions every fetch.
        let at = usize::try_from(partition).ok().and_then(|i| self.partitions.get(i));
        at.filter(|p| p.partition == partition)
            .or_else(|| self.partitions.iter().find(|p| p.partition == partition))
            .map(|p| p.leader)
            .filter(|&l| l >= 0)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// Node id → `host:port`.
    pub brokers: BTreeMap<i32, String>,
    pub controller_id: i32,
    pub cluster_id: Option<String>,
    pub topics: BTreeMap<String, TopicMetadata>,
}

impl Metadata {
    pub fn topic(&self, name: &str) -> Option<&TopicMetadata> {
        self.topics.get(name)
    }

    pub fn leader_addr(&self, topic: &str, partition: i32) -> Option<(i32, &str)> {
        let leader = self.topics.get(topic)?.leader(partition)?;
        self.brokers.get(&leader).map(|a| (leader, a.as_str()))
    }
}

/// Connections and metadata shared by a producer, a consumer or an admin client.
pub struct Cluster {
    net: Arc<dyn Network>,
    cfg: ConnConfig,
    bootstrap: Vec<String>,
    conns: tokio::sync::Mutex<BTreeMap<String, Arc<Conn>>>,
    meta: Mutex<Metadata>,
    /// Bumped after every change to `meta` ([`Cluster::metadata_generation`]).
    meta_generation: AtomicU64,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("bootstrap", &self.bootstrap).finish()
    }
}

impl Cluster {
    pub fn new(net: Arc<dyn Network>, bootstrap: Vec<String>, cfg: ConnConfig) -> Self {
        Self {
            net,
            cfg,
            bootstrap,
            conns: tokio::sync::Mutex::new(BTreeMap::new()),
            meta: Mutex::new(Metadata::default()),
            meta_generation: AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> &ConnConfig {
        &self.cfg
    }

    /// A snapshot of the cached metadata.
    pub fn metadata(&self) -> Metadata {
        self.meta.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Counts the metadata's changes: an answer read from [`with_metadata`](Self::with_metadata)
    /// stays true while this is what it was read before it (a caller may keep one per send).
    pub fn metadata_generation(&self) -> u64 {
        self.meta_generation.load(Ordering::Acquire)
    }

    /// Reads the cache under its lock.
    pub fn with_metadata<T>(&self, f: impl FnOnce(&Metadata) -> T) -> T {
        f(&self.meta.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// An open connection to `addr`, reusing one when it is still open.
    pub async fn conn(&self, addr: &str) -> Result<Arc<Conn>, ConnError> {
        let mut conns = self.conns.lock().await;
        if let Some(c) = conns.get(addr) {
            if c.is_open() {
                return Ok(Arc::clone(c));
            }
        }
        let c = Conn::connect(self.net.as_ref(), addr, self.cfg.clone()).await?;
        conns.insert(addr.to_string(), Arc::clone(&c));
        Ok(c)
    }

    /// A connection to broker `node` (its address from metadata).
    pub async fn node_conn(&self, node: i32) -> Result<Arc<Conn>, ConnError> {
        let addr = self.with_metadata(|m| m.brokers.get(&node).cloned());
        let addr = addr.ok_or_else(|| ConnError::Connect {
            addr: format!("node {node}"),
            reason: "unknown broker id".into(),
        })?;
        self.conn(&addr).await
    }

    /// A connection to any broker: known brokers first, then the bootstrap list.
    pub async fn any_conn(&self) -> Result<Arc<Conn>, ConnError> {
        let mut addrs: Vec<String> = self.with_metadata(|m| m.brokers.values().cloned().collect());
        for b in &self.bootstrap {
            if !addrs.contains(b) {
                addrs.push(b.clone());
            }
        }
        let mut last =
            ConnError::Connect { addr: String::new(), reason: "bootstrap.servers is empty".into() };
        for a in addrs {
            match self.conn(&a).await {
                Ok(c) => return Ok(c),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Fetches metadata for `topics` (`None` = all topics) and merges it into the cache.
    pub async fn refresh_metadata(
        &self,
        topics: Option<&[String]>,
        allow_auto_create: bool,
    ) -> Result<Metadata, ConnError> {
        let conn = self.any_conn().await?;
        let req = MetadataRequest::default()
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|t| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(allow_auto_create);
        let resp = conn.request(&req).await?;
        let mut fresh = Metadata {
            controller_id: resp.controller_id.0,
            cluster_id: resp.cluster_id.map(|s| s.to_string()),
            ..Metadata::default()
        };
        for b in &resp.brokers {
            fresh.brokers.insert(b.node_id.0, format!("{}:{}", b.host.as_str(), b.port));
        }
        for t in &resp.topics {
            let Some(name) = &t.name else { continue };
            let mut partitions: Vec<PartitionMetadata> = t
                .partitions
                .iter()
                .map(|p| PartitionMetadata {
                    partition: p.partition_index,
                    error_code: p.error_code,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            fresh.topics.insert(
                name.to_string(),
                TopicMetadata {
                    name: name.to_string(),
                    error_code: t.error_code,
                    is_internal: t.is_internal,
                    partitions,
                },
            );
        }
        let mut m = self.meta.lock().unwrap_or_else(|e| e.into_inner());
        if !fresh.brokers.is_empty() {
            m.brokers = fresh.brokers.clone();
        }
        m.controller_id = fresh.controller_id;
        m.cluster_id = fresh.cluster_id.clone();
        if topics.is_none() {
            m.topics.clear();
        }
        for (name, t) in &fresh.topics {
            if t.error_code == kafka_types::ErrorCode::NONE {
                m.topics.insert(name.clone(), t.clone());
            } else {
                m.topics.remove(name);
            }
        }
        // Under the lock, after the change: a generation read before a read of the metadata
        // is never newer than what that read sees.
        self.meta_generation.fetch_add(1, Ordering::Release);
        drop(m);
        Ok(fresh)
    }

    /// Closes every connection.
    pub async fn close(&self) {
        let conns = std::mem::take(&mut *self.conns.lock().await);
        for (_, c) in conns {
            c.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(ids: &[(i32, i32)]) -> TopicMetadata {
        let partitions = ids
            .iter()
            .map(|&(partition, leader)| PartitionMetadata {
                partition,
                error_code: 0,
                leader,
                leader_epoch: 0,
                replicas: vec![],
                isr: vec![],
            })
            .collect();
        TopicMetadata { name: "t".into(), error_code: 0, is_internal: false, partitions }
    }

    /// Partition `i` at index `i` (what brokers send) is found by position; a list with gaps
    /// (a partition the broker left out) is searched; no leader is `None` either way.
    #[test]
    fn a_partitions_leader_by_position_or_search() {
        let dense = topic(&[(0, 10), (1, 11), (2, -1), (3, 13)]);
        let found: Vec<_> = (-1..5).map(|p| dense.leader(p)).collect();
        assert_eq!(found, [None, Some(10), Some(11), None, Some(13), None]);
        let gaps = topic(&[(1, 21), (4, 24), (7, 27)]);
        let found: Vec<_> = (0..9).map(|p| gaps.leader(p)).collect();
        let want = [None, Some(21), None, None, Some(24), None, None, Some(27), None];
        assert_eq!(found, want);
    }
}

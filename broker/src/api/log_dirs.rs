//! DescribeLogDirs v1-4: each of this broker's log dirs (`log.dirs`, in order) with the size of
//! each of its partitions' logs; no reassignment between dirs, so offset lag 0 and no future
//! replicas. Total and usable bytes are unknown (-1).

use kafka_protocol::messages::describe_log_dirs_request::DescribeLogDirsRequest;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResponse, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{ApiKey, TopicName};

use crate::broker::{Broker, Outcome};
use crate::log::TopicPartition;
use crate::protocol::{self, decode_body, error_code, Request, RequestError};

use super::sb;

impl Broker {
    pub(crate) async fn describe_log_dirs(&self, req: &Request) -> Result<Outcome, RequestError> {
        let r: DescribeLogDirsRequest = decode_body(req)?;
        let v = req.api_version;
        // The partitions asked for (None: every one here), in name order.
        let wanted: Option<std::collections::BTreeSet<TopicPartition>> =
            r.topics.as_ref().map(|ts| {
                ts.iter()
                    .flat_map(|t| {
                        t.partitions.iter().map(|p| TopicPartition::new(t.topic.0.as_str(), *p))
                    })
                    .collect()
            });
        let mut parts: Vec<_> = self.partitions.all();
        parts.sort_by(|a, b| a.tp.cmp(&b.tp));
        let labels = self.log_dir_labels();
        let mut dirs: Vec<Vec<DescribeLogDirsTopic>> = vec![Vec::new(); labels.len()];
        for p in parts {
            if wanted.as_ref().is_some_and(|w| !w.contains(&p.tp)) {
                continue;
            }
            let Some(data) = p.data().await else { continue };
            let mut dp = DescribeLogDirsPartition::default();
            dp.partition_index = p.tp.partition;
            dp.partition_size = i64::try_from(data.log.size_bytes()).unwrap_or(i64::MAX);
            dp.offset_lag = 0;
            dp.is_future_key = false;
            let i = self.dir_index_of(data.log.dir());
            drop(data);
            let topics = &mut dirs[i];
            match topics.last_mut() {
                Some(t) if t.name.0.as_str() == p.tp.topic() => t.partitions.push(dp),
                _ => {
                    let mut t = DescribeLogDirsTopic::default();
                    t.name = TopicName(sb(p.tp.topic()));
                    t.partitions.push(dp);
                    topics.push(t);
                }
            }
        }
        let mut resp = DescribeLogDirsResponse::default();
        for (label, topics) in labels.iter().zip(dirs) {
            let mut dir = DescribeLogDirsResult::default();
            dir.error_code = error_code::NONE;
            dir.log_dir = sb(label);
            dir.topics = topics;
            dir.total_bytes = -1;
            dir.usable_bytes = -1;
            resp.results.push(dir);
        }
        let frame =
            protocol::encode_response(ApiKey::DescribeLogDirs, v, req.correlation_id, &resp)
                .map_err(|why| RequestError::BadBody { api: "DescribeLogDirs", version: v, why })?;
        Ok(Outcome::frame(frame))
    }
}

impl Broker {
    /// Names the data directories for DescribeLogDirs, in `log.dirs` order (once; `broker
    /// serve` passes their paths). Ignored unless there is one label per directory.
    pub fn set_log_dir_labels(&self, labels: Vec<String>) {
        if labels.len() == self.roots.len() {
            let _ = self.log_dir_labels.set(labels);
        }
    }

    /// The data directories' names: the labels set, else their paths inside the storage.
    pub(crate) fn log_dir_labels(&self) -> Vec<String> {
        if let Some(l) = self.log_dir_labels.get() {
            return l.clone();
        }
        let name = |r: &std::path::PathBuf| match r.as_os_str().is_empty() {
            true => "/".to_string(),
            false => r.display().to_string(),
        };
        self.roots.iter().map(name).collect()
    }
}

//! DescribeLogDirs v1-4: this broker's one log dir (`log.dirs` has one entry here) with the size
//! of each of its partitions' logs; no reassignment between dirs, so offset lag 0 and no future
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
        let mut topics: Vec<DescribeLogDirsTopic> = Vec::new();
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
            drop(data);
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
        let mut dir = DescribeLogDirsResult::default();
        dir.error_code = error_code::NONE;
        dir.log_dir = sb(&self.log_dir_label());
        dir.topics = topics;
        dir.total_bytes = -1;
        dir.usable_bytes = -1;
        let mut resp = DescribeLogDirsResponse::default();
        resp.results.push(dir);
        let frame =
            protocol::encode_response(ApiKey::DescribeLogDirs, v, req.correlation_id, &resp)
                .map_err(|why| RequestError::BadBody { api: "DescribeLogDirs", version: v, why })?;
        Ok(Outcome::frame(frame))
    }
}

impl Broker {
    /// Names the data directory for DescribeLogDirs (once; `broker serve` passes its path).
    pub fn set_log_dir_label(&self, label: &str) {
        let _ = self.log_dir_label.set(label.to_string());
    }

    /// The data directory's name: the label set, else its path inside the storage.
    pub(crate) fn log_dir_label(&self) -> String {
        match self.log_dir_label.get() {
            Some(l) => l.clone(),
            None if self.root.as_os_str().is_empty() => "/".to_string(),
            None => self.root.display().to_string(),
        }
    }
}

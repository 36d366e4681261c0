//! IncrementalAlterConfigs v0-1 (SET / DELETE / APPEND / SUBTRACT) and AlterConfigs v0-2 (the
//! legacy form: the given keys become the resource's whole set of overrides). Both resolve to
//! the topic's new override map here, checked key by key (`LogConfig::check_topic_config`), then
//! go through the controller as config records (combined mode) or into the registry (a single
//! node), and reach the live logs (see `api/configs.rs`).

use std::collections::{BTreeMap, BTreeSet};

use cluster::metadata::{ConfigChange, ConfigResource};
use kafka_protocol::messages::alter_configs_request::AlterConfigsRequest;
use kafka_protocol::messages::alter_configs_response::{
    AlterConfigsResourceResponse, AlterConfigsResponse,
};
use kafka_protocol::messages::incremental_alter_configs_request::IncrementalAlterConfigsRequest;
use kafka_protocol::messages::incremental_alter_configs_response as inc;
use kafka_protocol::messages::ApiKey;

use super::configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::sb;
use crate::broker::{Broker, Outcome};
use crate::log::LogConfig;
use crate::protocol::{self, decode_body, error_code, Request, RequestError};

/// Resources in one request, and operations on one resource.
const RESOURCES_PER_REQUEST_MAX: usize = 1_000;
const OPS_PER_RESOURCE_MAX: usize = 1_000;

/// One operation on a config (Kafka's `AlterConfigOp.OpType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Set,
    Delete,
    Append,
    Subtract,
}

impl Op {
    fn from_code(code: i8) -> Option<Op> {
        Some(match code {
            0 => Op::Set,
            1 => Op::Delete,
            2 => Op::Append,
            3 => Op::Subtract,
            _ => return None,
        })
    }
}

type Outcome1 = Result<(), (i16, String)>;

/// The overrides of a topic after `ops` (`replace`: starting from none, AlterConfigs' meaning).
/// `effective` is the topic's config now (APPEND and SUBTRACT start from its list).
pub(super) fn topic_after(
    current: &BTreeMap<String, String>,
    effective: &LogConfig,
    ops: &[(String, Op, Option<String>)],
    replace: bool,
) -> Result<BTreeMap<String, String>, (i16, String)> {
    let mut next = if replace { BTreeMap::new() } else { current.clone() };
    let mut seen = BTreeSet::new();
    for (key, op, value) in ops {
        if !seen.insert(key.as_str()) {
            return Err((error_code::INVALID_REQUEST, format!("config {key} appears twice")));
        }
        let value = value.as_deref();
        match op {
            Op::Set => {
                let v =
                    value.ok_or((error_code::INVALID_REQUEST, format!("null value for {key}")))?;
                next.insert(key.clone(), v.to_string());
            }
            Op::Delete => {
                next.remove(key);
            }
            Op::Append | Op::Subtract => {
                if key != "cleanup.policy" {
                    let msg = format!("config {key} is not a list: APPEND/SUBTRACT do not apply");
                    return Err((error_code::INVALID_CONFIG, msg));
                }
                let now = next.get(key).cloned().or_else(|| effective.get(key)).unwrap_or_default();
                let mut items: Vec<String> = now
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                for item in
                    value.unwrap_or_default().split(',').map(str::trim).filter(|s| !s.is_empty())
                {
                    match op {
                        Op::Append if !items.iter().any(|i| i == item) => {
                            items.push(item.to_string())
                        }
                        Op::Subtract => items.retain(|i| i != item),
                        _ => {}
                    }
                }
                next.insert(key.clone(), items.join(","));
            }
        }
    }
    for (k, v) in &next {
        LogConfig::check_topic_config(k, v)
            .map_err(|e| (error_code::INVALID_CONFIG, e.to_string()))?;
    }
    Ok(next)
}

impl Broker {
    pub(crate) async fn incremental_alter_configs(
        &self,
        req: &Request,
    ) -> Result<Outcome, RequestError> {
        let r: IncrementalAlterConfigsRequest = decode_body(req)?;
        let v = req.api_version;
        let mut resp = inc::IncrementalAlterConfigsResponse::default();
        for res in r.resources.iter().take(RESOURCES_PER_REQUEST_MAX) {
            let mut ops = Vec::with_capacity(res.configs.len().min(OPS_PER_RESOURCE_MAX));
            let mut bad = None;
            for c in res.configs.iter().take(OPS_PER_RESOURCE_MAX) {
                match Op::from_code(c.config_operation) {
                    Some(op) => {
                        ops.push((c.name.to_string(), op, c.value.as_ref().map(|s| s.to_string())))
                    }
                    None => bad = Some(c.config_operation),
                }
            }
            let name = res.resource_name.as_str();
            let outcome = match bad {
                Some(op) => {
                    Err((error_code::INVALID_REQUEST, format!("unknown config operation {op}")))
                }
                None => {
                    self.alter_resource(res.resource_type, name, &ops, false, r.validate_only).await
                }
            };
            let mut out = inc::AlterConfigsResourceResponse::default();
            out.resource_type = res.resource_type;
            out.resource_name = res.resource_name.clone();
            if let Err((code, msg)) = outcome {
                tracing::info!(resource = name, code, %msg, "IncrementalAlterConfigs refused");
                out.error_code = code;
                out.error_message = Some(sb(&msg));
            }
            resp.responses.push(out);
        }
        let frame = protocol::encode_response(
            ApiKey::IncrementalAlterConfigs,
            v,
            req.correlation_id,
            &resp,
        )
        .map_err(|why| RequestError::BadBody {
            api: "IncrementalAlterConfigs",
            version: v,
            why,
        })?;
        Ok(Outcome::frame(frame))
    }

    pub(crate) async fn alter_configs(&self, req: &Request) -> Result<Outcome, RequestError> {
        let r: AlterConfigsRequest = decode_body(req)?;
        let v = req.api_version;
        let mut resp = AlterConfigsResponse::default();
        for res in r.resources.iter().take(RESOURCES_PER_REQUEST_MAX) {
            let ops: Vec<(String, Op, Option<String>)> = res
                .configs
                .iter()
                .take(OPS_PER_RESOURCE_MAX)
                .map(|c| (c.name.to_string(), Op::Set, c.value.as_ref().map(|s| s.to_string())))
                .collect();
            let name = res.resource_name.as_str();
            let outcome =
                self.alter_resource(res.resource_type, name, &ops, true, r.validate_only).await;
            let mut out = AlterConfigsResourceResponse::default();
            out.resource_type = res.resource_type;
            out.resource_name = res.resource_name.clone();
            if let Err((code, msg)) = outcome {
                tracing::info!(resource = name, code, %msg, "AlterConfigs refused");
                out.error_code = code;
                out.error_message = Some(sb(&msg));
            }
            resp.responses.push(out);
        }
        let frame =
            protocol::encode_response(ApiKey::AlterConfigs, v, req.correlation_id, &resp)
                .map_err(|why| RequestError::BadBody { api: "AlterConfigs", version: v, why })?;
        Ok(Outcome::frame(frame))
    }

    async fn alter_resource(
        &self,
        resource_type: i8,
        name: &str,
        ops: &[(String, Op, Option<String>)],
        replace: bool,
        validate_only: bool,
    ) -> Outcome1 {
        match resource_type {
            RESOURCE_TOPIC => self.alter_topic(name, ops, replace, validate_only).await,
            RESOURCE_BROKER => self.alter_broker(name, ops, replace, validate_only).await,
            t => Err((error_code::INVALID_REQUEST, format!("resource type {t} is not supported"))),
        }
    }

    async fn alter_topic(
        &self,
        name: &str,
        ops: &[(String, Op, Option<String>)],
        replace: bool,
        validate_only: bool,
    ) -> Outcome1 {
        if name == crate::group::OFFSETS_TOPIC {
            return Err((error_code::INVALID_REQUEST, format!("{name}'s configs are fixed")));
        }
        let Some((current, _)) = self.topic_overrides(name).await else {
            return Err((error_code::UNKNOWN_TOPIC_OR_PARTITION, format!("no topic {name}")));
        };
        let mut effective = self.log_defaults().await;
        for (k, v) in &current {
            let _ = effective.set(k, v);
        }
        let next = topic_after(&current, &effective, ops, replace)?;
        if validate_only || next == current {
            return Ok(());
        }
        let Some(link) = self.controller_link().cloned() else {
            return self.apply_topic_configs(name, next, false).await;
        };
        let resource = ConfigResource::Topic(name.to_string());
        self.commit_configs(link.as_ref(), resource, &current, &next).await
    }

    /// Combined mode: commits the change from `current` to `next` of `resource` through the
    /// controller (config records, all or nothing), then applies the image to the live logs here
    /// at once rather than at the next image pass.
    pub(super) async fn commit_configs(
        &self,
        link: &dyn crate::controller::link::ControllerLink,
        resource: ConfigResource,
        current: &BTreeMap<String, String>,
        next: &BTreeMap<String, String>,
    ) -> Outcome1 {
        let keys: BTreeSet<&String> = current.keys().chain(next.keys()).collect();
        let changes: Vec<ConfigChange> = keys
            .into_iter()
            .filter(|k| current.get(*k) != next.get(*k))
            .map(|k| ConfigChange {
                resource: resource.clone(),
                name: k.clone(),
                value: next.get(k).cloned(),
            })
            .collect();
        link.alter_configs(changes)
            .await
            .map_err(|e| crate::controller::local::link_error_code(&e))?;
        let img = link.metadata().borrow().clone();
        self.sync_topic_configs(&img).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(k: &str, op: Op, v: Option<&str>) -> (String, Op, Option<String>) {
        (k.to_string(), op, v.map(str::to_string))
    }

    #[test]
    fn incremental_operations_as_kafka() {
        let cur = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
        let eff = LogConfig::default();
        let next = topic_after(
            &cur,
            &eff,
            &[
                op("retention.ms", Op::Delete, None),
                op("cleanup.policy", Op::Append, Some("compact")),
            ],
            false,
        )
        .unwrap();
        assert_eq!(next, BTreeMap::from([("cleanup.policy".into(), "delete,compact".into())]));
        let next =
            topic_after(&next, &eff, &[op("cleanup.policy", Op::Subtract, Some("delete"))], false)
                .unwrap();
        assert_eq!(next["cleanup.policy"], "compact");
        // AlterConfigs replaces: keys not given are gone.
        let next = topic_after(&cur, &eff, &[op("segment.ms", Op::Set, Some("5"))], true).unwrap();
        assert_eq!(next, BTreeMap::from([("segment.ms".into(), "5".into())]));
        for (bad, code) in [
            (vec![op("retention.ms", Op::Append, Some("1"))], error_code::INVALID_CONFIG),
            (vec![op("no.such.key", Op::Set, Some("1"))], error_code::INVALID_CONFIG),
            (vec![op("log.retention.ms", Op::Set, Some("1"))], error_code::INVALID_CONFIG),
            (vec![op("min.insync.replicas", Op::Set, Some("0"))], error_code::INVALID_CONFIG),
            (vec![op("compression.type", Op::Set, Some("brotli"))], error_code::INVALID_CONFIG),
            (vec![op("retention.ms", Op::Set, None)], error_code::INVALID_REQUEST),
            (
                vec![op("segment.ms", Op::Set, Some("5")), op("segment.ms", Op::Delete, None)],
                error_code::INVALID_REQUEST,
            ),
        ] {
            assert_eq!(topic_after(&cur, &eff, &bad, false).map_err(|e| e.0), Err(code), "{bad:?}");
        }
    }
}

//! CreateTopics v2-7, DeleteTopics v1-6, InitProducerId v0-4.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_topics_request::CreateTopicsRequest;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicResult, CreateTopicsResponse,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicsRequest;
use kafka_protocol::messages::delete_topics_response::{
    DeletableTopicResult, DeleteTopicsResponse,
};
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::find_coordinator_response::{Coordinator, FindCoordinatorResponse};
use kafka_protocol::messages::init_producer_id_request::InitProducerIdRequest;
use kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;
use kafka_protocol::messages::{ApiKey, BrokerId, ProducerId, TopicName};

use crate::broker::{Broker, Outcome};
use crate::controller::link::ControllerLink;
use crate::protocol::{self, decode_body, error_code, Request, RequestError};

use super::sb;

/// `loglab.partitions.per.request.max`: the partitions one CreateTopics request may still ask
/// for. Topics are charged in request order; one that would go over gets INVALID_PARTITIONS.
struct RequestBudget {
    max: i32,
    taken: i64,
}

impl RequestBudget {
    fn new(max: i32) -> Self {
        Self { max, taken: 0 }
    }

    fn take(&mut self, partitions: i32) -> Result<(), (i16, String)> {
        let total = self.taken + i64::from(partitions.max(0));
        if total > i64::from(self.max) {
            return Err((
                error_code::INVALID_PARTITIONS,
                format!(
                    "{partitions} partitions would make {total} in this request, over loglab.partitions.per.request.max={}",
                    self.max
                ),
            ));
        }
        self.taken = total;
        Ok(())
    }
}

impl Broker {
    pub(crate) async fn create_topics(&self, req: &Request) -> Result<Outcome, RequestError> {
        let r: CreateTopicsRequest = decode_body(req)?;
        if let Some(link) = self.controller_link().cloned() {
            return self.create_topics_cluster(req, r, link).await;
        }
        let v = req.api_version;
        let mut resp = CreateTopicsResponse::default();
        let mut budget = RequestBudget::new(self.config.limits.partitions_per_request_max);
        for t in &r.topics {
            let name = t.name.0.as_str().to_string();
            let mut res = CreatableTopicResult::default();
            res.name = t.name.clone();
            let partitions =
                if t.num_partitions == -1 { self.config.num_partitions } else { t.num_partitions };
            let rf = if t.replication_factor == -1 {
                self.config.default_replication_factor
            } else {
                t.replication_factor
            };
            let assigned = super::assignments::parse(t);
            let (partitions, rf) = assigned_shape(&assigned, partitions, rf);
            let mut configs = BTreeMap::new();
            for c in &t.configs {
                if let Some(val) = &c.value {
                    configs.insert(c.name.as_str().to_string(), val.as_str().to_string());
                }
            }
            let outcome = if name == crate::group::OFFSETS_TOPIC {
                // Internal: created by the group coordinator with its own settings.
                Err((
                    error_code::INVALID_REQUEST,
                    format!("creation of internal topic {name} is prohibited"),
                ))
            } else if let Err(e) = assigned.as_ref().map_err(Clone::clone).and_then(|a| {
                a.as_ref()
                    .map_or(Ok(()), |a| super::assignments::check_single(a, self.config.node_id))
            }) {
                Err(e)
            } else if rf != 1 {
                Err((
                    error_code::INVALID_REPLICATION_FACTOR,
                    format!("replication factor {rf} is larger than the 1 available broker"),
                ))
            } else if let Err(e) = budget.take(partitions) {
                Err(e)
            } else if r.validate_only {
                let registry = self.registry.lock().await;
                match crate::topics::validate_topic_name(&name) {
                    Err(e) => Err((error_code::INVALID_TOPIC_EXCEPTION, e)),
                    Ok(()) if registry.topics.contains_key(&name) => Err((
                        error_code::TOPIC_ALREADY_EXISTS,
                        format!("topic {name} already exists"),
                    )),
                    Ok(()) => self.check_broker_partitions(&registry, partitions).map(|()| None),
                }
            } else {
                self.create_topic(&name, partitions, configs).await.map(Some)
            };
            let outcome = outcome.map(|meta| meta.map(|m| uuid::Uuid::from_bytes(m.uuid())));
            resp.topics.push(creatable_result(res, partitions, 1, outcome));
        }
        let frame =
            protocol::encode_response(ApiKey::CreateTopics, v, req.correlation_id, &resp)
                .map_err(|why| RequestError::BadBody { api: "CreateTopics", version: v, why })?;
        Ok(Outcome::frame(frame))
    }

    /// Combined mode: each topic is created by the controller (replication factor honoured,
    /// replicas round-robin over live brokers, or a manual assignment) with its topic configs
    /// (config records in the same decision); local logs follow from the committed image.
    async fn create_topics_cluster(
        &self,
        req: &Request,
        r: CreateTopicsRequest,
        link: Arc<dyn ControllerLink>,
    ) -> Result<Outcome, RequestError> {
        let v = req.api_version;
        let mut resp = CreateTopicsResponse::default();
        let mut budget = RequestBudget::new(self.config.limits.partitions_per_request_max);
        for t in &r.topics {
            let name = t.name.0.as_str().to_string();
            let mut res = CreatableTopicResult::default();
            res.name = t.name.clone();
            let partitions =
                if t.num_partitions == -1 { self.config.num_partitions } else { t.num_partitions };
            let rf = if t.replication_factor == -1 {
                self.config.default_replication_factor
            } else {
                t.replication_factor
            };
            let configs = topic_configs_of(t);
            let assigned = super::assignments::parse(t);
            let (partitions, rf) = assigned_shape(&assigned, partitions, rf);
            let outcome: Result<Option<cluster::metadata::TopicId>, (i16, String)> =
                if name == crate::group::OFFSETS_TOPIC {
                    Err((
                        error_code::INVALID_REQUEST,
                        format!("creation of internal topic {name} is prohibited"),
                    ))
                } else if let Err(e) = &assigned {
                    Err(e.clone())
                } else if let Err(e) = check_topic_configs(&configs) {
                    Err(e)
                } else if partitions < 1 {
                    Err((
                        error_code::INVALID_PARTITIONS,
                        format!("{partitions} partitions is not valid"),
                    ))
                } else if rf < 1 {
                    Err((
                        error_code::INVALID_REPLICATION_FACTOR,
                        format!("replication factor {rf} is not valid"),
                    ))
                } else if let Err(e) = budget.take(partitions) {
                    Err(e)
                } else if let Err(e) = self.check_broker_partitions_now(partitions).await {
                    // Every broker keeps a log of every partition here (see `reconcile_topics`).
                    Err(e)
                } else if r.validate_only {
                    let img = link.metadata().borrow().clone();
                    match crate::topics::validate_topic_name(&name) {
                        Err(e) => Err((error_code::INVALID_TOPIC_EXCEPTION, e)),
                        Ok(()) if img.topic_ids.contains_key(&name) => Err((
                            error_code::TOPIC_ALREADY_EXISTS,
                            format!("topic {name} already exists"),
                        )),
                        Ok(()) if rf as usize > img.live_brokers().len() => Err((
                            error_code::INVALID_REPLICATION_FACTOR,
                            format!(
                                "replication factor {rf} is larger than {} live brokers",
                                img.live_brokers().len()
                            ),
                        )),
                        Ok(()) => Ok(None),
                    }
                } else {
                    let created = match assigned.ok().flatten() {
                        Some(a) => link.create_topic_assigned(&name, a, configs).await,
                        None => {
                            let (p, rf) = (partitions as u32, rf as u16);
                            link.create_topic_with_configs(&name, p, rf, configs).await
                        }
                    };
                    match created {
                        Ok(id) => {
                            // Local logs now, so a produce right after the answer finds them.
                            let img = link.metadata().borrow().clone();
                            self.reconcile_topics(&img).await;
                            Ok(Some(id))
                        }
                        Err(e) => Err(crate::controller::local::link_error_code(&e)),
                    }
                };
            let outcome = outcome.map(|id| id.map(|id| uuid::Uuid::from_bytes(id.0)));
            resp.topics.push(creatable_result(res, partitions, rf, outcome));
        }
        let frame =
            protocol::encode_response(ApiKey::CreateTopics, v, req.correlation_id, &resp)
                .map_err(|why| RequestError::BadBody { api: "CreateTopics", version: v, why })?;
        Ok(Outcome::frame(frame))
    }

    /// Combined mode: the controller deletes the topic from the metadata. Local logs stay until
    /// replication handles deletion (see `controller/local.rs`).
    async fn delete_topics_cluster(
        &self,
        req: &Request,
        r: DeleteTopicsRequest,
        link: Arc<dyn ControllerLink>,
    ) -> Result<Outcome, RequestError> {
        let v = req.api_version;
        let mut resp = DeleteTopicsResponse::default();
        let mut targets: Vec<(Option<String>, uuid::Uuid)> = r
            .topic_names
            .iter()
            .map(|n| (Some(n.0.as_str().to_string()), uuid::Uuid::nil()))
            .collect();
        for t in &r.topics {
            targets.push((t.name.as_ref().map(|n| n.0.as_str().to_string()), t.topic_id));
        }
        for (name, id) in targets {
            let img = link.metadata().borrow().clone();
            let name = name.or_else(|| {
                img.topics.get(&cluster::metadata::TopicId(id.into_bytes())).map(|t| t.name.clone())
            });
            let mut res = DeletableTopicResult::default();
            res.name = name.as_deref().map(|n| TopicName(sb(n)));
            res.topic_id = id;
            match name {
                None => res.error_code = error_code::UNKNOWN_TOPIC_ID,
                Some(n) => match link.delete_topic(&n).await {
                    Ok(id) => {
                        res.topic_id = uuid::Uuid::from_bytes(id.0);
                        tracing::info!(topic = %n, "topic deleted by the controller");
                    }
                    Err(e) => {
                        let (code, msg) = crate::controller::local::link_error_code(&e);
                        res.error_code = code;
                        res.error_message = Some(sb(&msg));
                    }
                },
            }
            resp.responses.push(res);
        }
        let frame =
            protocol::encode_response(ApiKey::DeleteTopics, v, req.correlation_id, &resp)
                .map_err(|why| RequestError::BadBody { api: "DeleteTopics", version: v, why })?;
        Ok(Outcome::frame(frame))
    }

    pub(crate) async fn delete_topics(&self, req: &Request) -> Result<Outcome, RequestError> {
        let r: DeleteTopicsRequest = decode_body(req)?;
        if let Some(link) = self.controller_link().cloned() {
            return self.delete_topics_cluster(req, r, link).await;
        }
        let v = req.api_version;
        let mut resp = DeleteTopicsResponse::default();
        // Partition files are deleted under `topic_admin` only; the registry is held briefly.
        let admin = self.topic_admin.lock().await;
        let mut deleted = Vec::new();
        let mut targets: Vec<(Option<String>, uuid::Uuid)> = r
            .topic_names
            .iter()
            .map(|n| (Some(n.0.as_str().to_string()), uuid::Uuid::nil()))
            .collect();
        for t in &r.topics {
            targets.push((t.name.as_ref().map(|n| n.0.as_str().to_string()), t.topic_id));
        }
        for (name, id) in targets {
            let registry = self.registry.lock().await;
            let name = name.or_else(|| {
                let idb = id.into_bytes();
                registry.topics.iter().find(|(_, m)| m.uuid() == idb).map(|(n, _)| n.clone())
            });
            let mut res = DeletableTopicResult::default();
            res.name = name.as_deref().map(|n| TopicName(sb(n)));
            res.topic_id = id;
            match name
                .as_ref()
                .and_then(|n| registry.topics.get(n).cloned().map(|m| (n.clone(), m)))
            {
                None => {
                    res.error_code = if name.is_none() {
                        error_code::UNKNOWN_TOPIC_ID
                    } else {
                        error_code::UNKNOWN_TOPIC_OR_PARTITION
                    }
                }
                Some((n, meta)) => {
                    res.topic_id = uuid::Uuid::from_bytes(meta.uuid());
                    drop(registry);
                    // Out of the registry, partition directories retired (`…-delete`).
                    if let Err(msg) = self.retire_topic_admin_held(&n, &meta).await {
                        res.error_code = error_code::KAFKA_STORAGE_ERROR;
                        res.error_message = Some(sb(&msg));
                    } else {
                        tracing::info!(topic = %n, "deleted topic");
                        deleted.push(n);
                    }
                }
            }
            resp.responses.push(res);
        }
        // Committed offsets go too; their tombstones may create the offsets topic, which takes
        // `topic_admin`.
        drop(admin);
        for n in &deleted {
            self.groups.forget_topic(self, n).await;
        }
        let frame =
            protocol::encode_response(ApiKey::DeleteTopics, v, req.correlation_id, &resp)
                .map_err(|why| RequestError::BadBody { api: "DeleteTopics", version: v, why })?;
        Ok(Outcome::frame(frame))
    }

    /// A new producer id, unique in the cluster: a single node counts up from 1000; in combined
    /// mode every broker hands out ids from its own range, `node.id << 32 | counter`, so two
    /// brokers never give two producers the same id (Kafka asks the controller for blocks).
    fn allocate_producer_id(&self, registry: &mut crate::topics::Registry) -> i64 {
        let n = registry.next_producer_id;
        registry.next_producer_id += 1;
        if self.controller_link().is_some() {
            (i64::from(self.config.node_id.max(0)) << 32) | (n & 0xffff_ffff)
        } else {
            n
        }
    }

    pub(crate) async fn init_producer_id(&self, req: &Request) -> Result<Outcome, RequestError> {
        let r: InitProducerIdRequest = decode_body(req)?;
        let v = req.api_version;
        let mut resp = InitProducerIdResponse::default();
        if let Some(t) = r.transactional_id.as_ref().filter(|t| !t.0.is_empty()) {
            // No transaction coordinator: a fatal error for the client, at once.
            tracing::warn!(transactional_id = %t.0.as_str(), "InitProducerId: {TRANSACTIONS_UNSUPPORTED}");
            resp.error_code = error_code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
            resp.producer_id = ProducerId(-1);
            resp.producer_epoch = -1;
        } else if r.producer_id.0 >= 0 && r.producer_epoch >= 0 {
            // KIP-360: an idempotent producer bumping its epoch keeps its id.
            if r.producer_epoch == i16::MAX - 1 {
                let mut registry = self.registry.lock().await;
                resp.producer_id = ProducerId(self.allocate_producer_id(&mut registry));
                let _ = registry.store(self.storage.as_ref(), &self.root).await;
                resp.producer_epoch = 0;
            } else {
                resp.producer_id = r.producer_id;
                resp.producer_epoch = r.producer_epoch + 1;
            }
        } else {
            let mut registry = self.registry.lock().await;
            let id = self.allocate_producer_id(&mut registry);
            if let Err(e) = registry.store(self.storage.as_ref(), &self.root).await {
                tracing::warn!(error = %e, "could not persist the producer id counter");
                resp.error_code = error_code::KAFKA_STORAGE_ERROR;
            }
            resp.producer_id = ProducerId(id);
            resp.producer_epoch = 0;
        }
        let frame = protocol::encode_response(ApiKey::InitProducerId, v, req.correlation_id, &resp)
            .map_err(|why| RequestError::BadBody { api: "InitProducerId", version: v, why })?;
        Ok(Outcome::frame(frame))
    }
}

impl Broker {
    /// FindCoordinator v0-4: one broker coordinates every group. Transaction coordinators do not
    /// exist yet.
    /// Combined mode: a group's coordinator is the leader of its offsets partition in the
    /// controller's image. The offsets topic is created through the controller at the first
    /// FindCoordinator (clients retry COORDINATOR_NOT_AVAILABLE meanwhile).
    async fn coordinator_in_cluster(&self, group: &str) -> (i16, i32, String, i32) {
        let unavailable = (error_code::COORDINATOR_NOT_AVAILABLE, -1, String::new(), -1);
        let Some(img) = self.cluster_image() else { return unavailable };
        let Some(link) = self.controller_link() else { return unavailable };
        let topic =
            img.topic_ids.get(crate::group::OFFSETS_TOPIC).and_then(|id| img.topics.get(id));
        let Some(topic) = topic else {
            let rf = self.config.offsets_topic_replication_factor.max(1);
            let live = img.live_brokers().len();
            if live < rf as usize {
                tracing::info!(
                    live,
                    rf,
                    "not creating {} yet: fewer live brokers than offsets.topic.replication.factor",
                    crate::group::OFFSETS_TOPIC
                );
                return unavailable;
            }
            let n = u32::try_from(self.config.offsets_topic_num_partitions.max(1)).unwrap_or(1);
            match link.create_topic(crate::group::OFFSETS_TOPIC, n, rf as u16).await {
                Ok(_) => {
                    tracing::info!(partitions = n, rf, "created {}", crate::group::OFFSETS_TOPIC)
                }
                Err(e) => tracing::info!(error = %e, "creating {}", crate::group::OFFSETS_TOPIC),
            }
            return unavailable;
        };
        let n = i32::try_from(topic.partitions.len()).unwrap_or(1).max(1);
        let p = crate::group::offsets_topic::partition_for(group, n);
        let Some(state) = topic.partitions.get(p as usize) else { return unavailable };
        match img.brokers.get(&state.leader).filter(|b| !b.fenced) {
            Some(b) => {
                (error_code::NONE, b.broker_id, b.endpoint.host.clone(), i32::from(b.endpoint.port))
            }
            None => unavailable,
        }
    }

    pub(crate) async fn find_coordinator(&self, req: &Request) -> Result<Outcome, RequestError> {
        let r: FindCoordinatorRequest = decode_body(req)?;
        let v = req.api_version;
        let (host, port) = self.advertised();
        let node = BrokerId(self.config.node_id);
        // A group's coordinator is the leader of its `__consumer_offsets` partition: this broker
        // while it owns that partition. Transaction coordinators do not exist yet.
        let keys: Vec<&str> = if v >= 4 {
            r.coordinator_keys.iter().map(|k| k.as_str()).collect()
        } else {
            vec![r.key.as_str()]
        };
        // (error, node, host, port) per key.
        let mut answers = Vec::new();
        let refused = refused_key_type(r.key_type);
        if let Some((_, why)) = refused {
            tracing::warn!(key_type = r.key_type, keys = ?keys, "FindCoordinator: {why}");
        }
        for key in keys {
            if let Some((error, _)) = refused {
                answers.push((error, -1, String::new(), -1));
            } else if self.controller_link().is_some() {
                answers.push(self.coordinator_in_cluster(key).await);
            } else if self.groups.partition_of(key).await.is_ok() {
                answers.push((error_code::NONE, node.0, host.clone(), port));
            } else {
                answers.push((error_code::COORDINATOR_NOT_AVAILABLE, -1, String::new(), -1));
            }
        }
        let error = answers.first().map_or(error_code::NONE, |a| a.0);
        let mut resp = FindCoordinatorResponse::default();
        if v >= 4 {
            for (key, (error, node, host, port)) in
                r.coordinator_keys.iter().zip(answers.iter().cloned())
            {
                let mut c = Coordinator::default();
                c.key = key.clone();
                c.error_code = error;
                c.error_message = refused.map(|(_, why)| sb(why));
                if error == error_code::NONE {
                    c.node_id = BrokerId(node);
                    c.host = sb(&host);
                    c.port = port;
                } else {
                    c.node_id = BrokerId(-1);
                    c.port = -1;
                }
                resp.coordinators.push(c);
            }
        } else {
            resp.error_code = error;
            if v >= 1 {
                resp.error_message = refused.map(|(_, why)| sb(why));
            }
            if let Some((error_code::NONE, node, host, port)) = answers.first().cloned() {
                resp.node_id = BrokerId(node);
                resp.host = sb(&host);
                resp.port = port;
            } else {
                resp.node_id = BrokerId(-1);
                resp.port = -1;
            }
        }
        let frame =
            protocol::encode_response(ApiKey::FindCoordinator, v, req.correlation_id, &resp)
                .map_err(|why| RequestError::BadBody { api: "FindCoordinator", version: v, why })?;
        Ok(Outcome::frame(frame))
    }
}

/// Why transactional producers are refused (the error message clients show).
const TRANSACTIONS_UNSUPPORTED: &str = "transactions are not supported by this broker (Loglab)";

/// FindCoordinator key types other than a group's (0), answered at once with an error and why.
/// A transaction coordinator (1) gets TRANSACTIONAL_ID_AUTHORIZATION_FAILED: librdkafka, the
/// Java client and kafkajs treat it as fatal (COORDINATOR_NOT_AVAILABLE is retried until the
/// client's timeout); any other type is Kafka's INVALID_REQUEST.
fn refused_key_type(key_type: i8) -> Option<(i16, &'static str)> {
    match key_type {
        0 => None,
        1 => Some((error_code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED, TRANSACTIONS_UNSUPPORTED)),
        _ => Some((error_code::INVALID_REQUEST, "unknown coordinator key type")),
    }
}

/// A CreateTopics topic's configs (null values are left out, as on a single node).
fn topic_configs_of(
    t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
) -> BTreeMap<String, String> {
    t.configs
        .iter()
        .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
        .collect()
}

/// Each config a topic config with a valid value (INVALID_CONFIG naming the first that is not).
fn check_topic_configs(configs: &BTreeMap<String, String>) -> Result<(), (i16, String)> {
    for (k, v) in configs {
        crate::log::LogConfig::check_topic_config(k, v)
            .map_err(|e| (error_code::INVALID_CONFIG, e.to_string()))?;
    }
    Ok(())
}

/// The partition count and replication factor a manual assignment implies (else the given ones).
fn assigned_shape(
    assigned: &Result<Option<super::assignments::Assignment>, (i16, String)>,
    partitions: i32,
    rf: i16,
) -> (i32, i16) {
    match assigned {
        Ok(Some(a)) => (
            i32::try_from(a.len()).unwrap_or(i32::MAX),
            i16::try_from(a[0].len()).unwrap_or(i16::MAX),
        ),
        _ => (partitions, rf),
    }
}

/// A CreateTopics result from an outcome (the topic id when one was made; `None` for
/// `validate_only`), shared by the single-node and the combined-mode paths.
fn creatable_result(
    mut res: CreatableTopicResult,
    partitions: i32,
    replication_factor: i16,
    outcome: Result<Option<uuid::Uuid>, (i16, String)>,
) -> CreatableTopicResult {
    match outcome {
        Ok(id) => {
            res.num_partitions = partitions;
            res.replication_factor = replication_factor;
            if let Some(id) = id {
                res.topic_id = id;
            }
        }
        Err((code, msg)) => {
            res.error_code = code;
            res.error_message = Some(sb(&msg));
            res.num_partitions = -1;
            res.replication_factor = -1;
        }
    }
    res
}

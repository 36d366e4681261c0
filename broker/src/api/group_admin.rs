//! DeleteGroups v0-2 and OffsetDelete v0: only Empty groups are deleted (NON_EMPTY_GROUP
//! otherwise, GROUP_ID_NOT_FOUND for unknown ones); a consumer group's offsets of topics its
//! members subscribe to stay (GROUP_SUBSCRIBED_TO_TOPIC). The rules are the state machine's
//! (`group/state.rs`); each group is answered by its coordinator (NOT_COORDINATOR elsewhere).

use kafka_protocol::messages::delete_groups_request::DeleteGroupsRequest;
use kafka_protocol::messages::delete_groups_response::{
    DeletableGroupResult, DeleteGroupsResponse,
};
use kafka_protocol::messages::offset_delete_request::OffsetDeleteRequest;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponse, OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::ApiKey;

use crate::broker::{Broker, Outcome};
use crate::protocol::{self, decode_body, error_code, Request, RequestError};

impl Broker {
    pub(crate) async fn delete_groups(&self, req: &Request) -> Result<Outcome, RequestError> {
        let r: DeleteGroupsRequest = decode_body(req)?;
        let v = req.api_version;
        let mut resp = DeleteGroupsResponse::default();
        for g in &r.groups_names {
            let mut res = DeletableGroupResult::default();
            res.group_id = g.clone();
            res.error_code = self.groups.delete_group(self, g.0.as_str()).await;
            resp.results.push(res);
        }
        let frame =
            protocol::encode_response(ApiKey::DeleteGroups, v, req.correlation_id, &resp)
                .map_err(|why| RequestError::BadBody { api: "DeleteGroups", version: v, why })?;
        Ok(Outcome::frame(frame))
    }

    pub(crate) async fn offset_delete(&self, req: &Request) -> Result<Outcome, RequestError> {
        let r: OffsetDeleteRequest = decode_body(req)?;
        let v = req.api_version;
        let wanted: Vec<(String, i32)> = r
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| (t.name.0.as_str().to_string(), p.partition_index))
            })
            .collect();
        let mut resp = OffsetDeleteResponse::default();
        match self.groups.delete_offsets(self, r.group_id.0.as_str(), &wanted).await {
            Err(code) => resp.error_code = code,
            Ok(codes) => {
                let mut codes = codes.into_iter();
                for t in &r.topics {
                    let mut tr = OffsetDeleteResponseTopic::default();
                    tr.name = t.name.clone();
                    for p in &t.partitions {
                        let mut pr = OffsetDeleteResponsePartition::default();
                        pr.partition_index = p.partition_index;
                        pr.error_code = codes.next().unwrap_or(error_code::UNKNOWN_SERVER_ERROR);
                        tr.partitions.push(pr);
                    }
                    resp.topics.push(tr);
                }
            }
        }
        let frame =
            protocol::encode_response(ApiKey::OffsetDelete, v, req.correlation_id, &resp)
                .map_err(|why| RequestError::BadBody { api: "OffsetDelete", version: v, why })?;
        Ok(Outcome::frame(frame))
    }
}

use kafka_protocol::messages::*;

use super::*;

/// Encodes `T::default()` with throttle 0 and with 777 at every served version; where the
/// field exists, patching the first gives the second byte for byte, and below [`since`] the
/// field is absent (both encode the same).
macro_rules! check {
    ($key:expr, $t:ty) => {{
        let (_, lo, hi) = *protocol::SUPPORTED.iter().find(|(k, _, _)| *k == $key).unwrap();
        let from = since($key).expect("every served API has the field");
        for v in lo..=hi {
            let mut m = <$t>::default();
            let Ok(plain) = protocol::encode_response($key, v, 42, &m) else { continue };
            m.throttle_time_ms = 777;
            let want = protocol::encode_response($key, v, 42, &m).unwrap();
            if v < from {
                assert_eq!(plain, want, "{:?} v{v} has no throttle_time_ms", $key);
                continue;
            }
            assert_ne!(plain, want, "{:?} v{v} has throttle_time_ms", $key);
            let mut chunks = [Chunk::Bytes(plain)];
            apply($key, v, &mut chunks, 777).unwrap();
            let [Chunk::Bytes(got)] = &chunks else { unreachable!() };
            assert_eq!(got, &want, "{:?} v{v}", $key);
        }
    }};
}

#[test]
fn throttle_is_set_in_every_served_version_that_has_it() {
    check!(ApiKey::Produce, ProduceResponse);
    check!(ApiKey::Fetch, FetchResponse);
    check!(ApiKey::ListOffsets, ListOffsetsResponse);
    check!(ApiKey::Metadata, MetadataResponse);
    check!(ApiKey::ApiVersions, ApiVersionsResponse);
    check!(ApiKey::CreateTopics, CreateTopicsResponse);
    check!(ApiKey::DeleteTopics, DeleteTopicsResponse);
    check!(ApiKey::InitProducerId, InitProducerIdResponse);
    check!(ApiKey::FindCoordinator, FindCoordinatorResponse);
    check!(ApiKey::JoinGroup, JoinGroupResponse);
    check!(ApiKey::SyncGroup, SyncGroupResponse);
    check!(ApiKey::Heartbeat, HeartbeatResponse);
    check!(ApiKey::LeaveGroup, LeaveGroupResponse);
    check!(ApiKey::OffsetCommit, OffsetCommitResponse);
    check!(ApiKey::OffsetFetch, OffsetFetchResponse);
    check!(ApiKey::ListGroups, ListGroupsResponse);
    check!(ApiKey::DescribeGroups, DescribeGroupsResponse);
    check!(ApiKey::OffsetForLeaderEpoch, OffsetForLeaderEpochResponse);
    check!(ApiKey::DescribeConfigs, DescribeConfigsResponse);
    check!(ApiKey::AlterConfigs, AlterConfigsResponse);
    check!(ApiKey::IncrementalAlterConfigs, IncrementalAlterConfigsResponse);
    check!(ApiKey::CreatePartitions, CreatePartitionsResponse);
    check!(ApiKey::DeleteRecords, DeleteRecordsResponse);
    check!(ApiKey::DeleteGroups, DeleteGroupsResponse);
    check!(ApiKey::OffsetDelete, OffsetDeleteResponse);
    check!(ApiKey::DescribeLogDirs, DescribeLogDirsResponse);
    check!(ApiKey::ElectLeaders, ElectLeadersResponse);
    assert_eq!(protocol::SUPPORTED.len(), 27, "a new API: add it here and to `since`");
}

#[test]
fn rules_are_narrowed_to_the_versions_with_the_field() {
    assert_eq!(narrow("Metadata", None), Ok([3, 12]));
    assert_eq!(narrow("Metadata", Some([4, 9])), Ok([4, 9]));
    let e = narrow("Metadata", Some([1, 9])).unwrap_err().to_string();
    assert!(e.starts_with("`versions`") && e.contains("v3"), "{e}");
}

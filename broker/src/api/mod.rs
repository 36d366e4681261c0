//! Request handlers, one file per API family (each an `impl Broker` block).

mod admin;
mod alter_configs;
mod assignments;
mod configs;
pub(crate) mod dynamic_configs;
mod elect;
mod fetch;
mod group;
mod group_admin;
mod list_offsets;
mod log_dirs;
mod metadata;
mod offset_for_leader_epoch;
mod partitions;
mod produce;
mod records;

use kafka_protocol::protocol::StrBytes;

pub(crate) fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

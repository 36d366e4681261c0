//! Request handlers, one file per API family (each an `impl Broker` block).

mod admin;
mod alter_configs;
mod configs;
mod fetch;
mod group;
mod list_offsets;
mod metadata;
mod offset_for_leader_epoch;
mod produce;

use kafka_protocol::protocol::StrBytes;

pub(crate) fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

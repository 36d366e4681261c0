//! The trace's JSON of the models' two commonest events, written by hand: byte for byte what
//! `serde_json::to_writer` writes (the trace hash is over that text), without serde's
//! per-field string escaping. A `bench-100k-cluster` second traces ~2,400 fabric `Segment`s and
//! ~2,000 disk `Op`s; through serde each cost ~3,600 instructions, most of it escaping the
//! field names. Every other event, and an `Op` whose path or error would need escaping, goes
//! through serde as before. The tests compare both writers on every variant.

use disk_model::sim::{DiskEvent, OpKind};
use net_model::sim::NetEvent;

/// Appends `ev` as serde_json's compact JSON.
pub fn net(out: &mut Vec<u8>, ev: &NetEvent) {
    match ev {
        NetEvent::Segment { stream, bytes, depart_ns, ready_ns, retransmits } => {
            out.extend_from_slice(b"{\"Segment\":{\"stream\":");
            int(out, *stream);
            out.extend_from_slice(b",\"bytes\":");
            int(out, *bytes);
            out.extend_from_slice(b",\"depart_ns\":");
            int(out, *depart_ns);
            out.extend_from_slice(b",\"ready_ns\":");
            int(out, *ready_ns);
            out.extend_from_slice(b",\"retransmits\":");
            int(out, u64::from(*retransmits));
            out.extend_from_slice(b"}}");
        }
        other => serde(out, other),
    }
}

/// Appends `ev` as serde_json's compact JSON.
pub fn disk(out: &mut Vec<u8>, ev: &DiskEvent) {
    match ev {
        DiskEvent::Op { op, path, pos, len, at_ns, done_ns, error: None } if plain(path) => {
            out.extend_from_slice(b"{\"Op\":{\"op\":\"");
            out.extend_from_slice(op_name(*op).as_bytes());
            out.extend_from_slice(b"\",\"path\":\"");
            out.extend_from_slice(path.as_bytes());
            out.extend_from_slice(b"\",\"pos\":");
            int(out, *pos);
            out.extend_from_slice(b",\"len\":");
            int(out, *len);
            out.extend_from_slice(b",\"at_ns\":");
            int(out, *at_ns);
            out.extend_from_slice(b",\"done_ns\":");
            int(out, *done_ns);
            out.extend_from_slice(b",\"error\":null}}");
        }
        other => serde(out, other),
    }
}

fn serde(out: &mut Vec<u8>, ev: &impl serde::Serialize) {
    let start = out.len();
    if let Err(e) = serde_json::to_writer(&mut *out, ev) {
        out.truncate(start);
        out.extend_from_slice(format!("unserializable: {e}").as_bytes());
    }
}

fn int(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Whether serde_json writes `s` between quotes unchanged: no control byte, quote or backslash.
fn plain(s: &str) -> bool {
    s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\')
}

/// The name serde gives the unit variant.
fn op_name(op: OpKind) -> &'static str {
    match op {
        OpKind::Open => "Open",
        OpKind::CreateDirAll => "CreateDirAll",
        OpKind::ListDir => "ListDir",
        OpKind::Exists => "Exists",
        OpKind::Rename => "Rename",
        OpKind::RemoveFile => "RemoveFile",
        OpKind::RemoveDirAll => "RemoveDirAll",
        OpKind::SyncDir => "SyncDir",
        OpKind::Append => "Append",
        OpKind::Read => "Read",
        OpKind::Sync => "Sync",
        OpKind::Truncate => "Truncate",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OPS: [OpKind; 12] = [
        OpKind::Open,
        OpKind::CreateDirAll,
        OpKind::ListDir,
        OpKind::Exists,
        OpKind::Rename,
        OpKind::RemoveFile,
        OpKind::RemoveDirAll,
        OpKind::SyncDir,
        OpKind::Append,
        OpKind::Read,
        OpKind::Sync,
        OpKind::Truncate,
    ];

    fn by_hand(ev: &DiskEvent) -> Vec<u8> {
        let mut out = b"prefix ".to_vec();
        disk(&mut out, ev);
        out
    }

    fn by_serde(ev: &impl serde::Serialize) -> Vec<u8> {
        let mut out = b"prefix ".to_vec();
        out.extend_from_slice(&serde_json::to_vec(ev).expect("serializable"));
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Every op kind, paths with and without bytes serde escapes, errors or none, and
        /// numbers of every width: the hand-written text is serde's.
        #[test]
        fn an_op_is_written_as_serde_writes_it(
            op in 0usize..OPS.len(),
            path in "[a-z/._\"\\\\\n\t\u{1}é-]{0,40}",
            error in proptest::option::of("[a-z \"]{0,12}"),
            nums in proptest::array::uniform4(any::<u64>()),
        ) {
            let ev = DiskEvent::Op {
                op: OPS[op], path, pos: nums[0], len: nums[1], at_ns: nums[2], done_ns: nums[3],
                error,
            };
            prop_assert_eq!(by_hand(&ev), by_serde(&ev));
        }

        #[test]
        fn a_segment_is_written_as_serde_writes_it(
            nums in proptest::array::uniform4(any::<u64>()),
            retransmits in any::<u32>(),
        ) {
            let ev = NetEvent::Segment {
                stream: nums[0], bytes: nums[1], depart_ns: nums[2], ready_ns: nums[3], retransmits,
            };
            let mut out = b"x".to_vec();
            net(&mut out, &ev);
            prop_assert_eq!(out[1..].to_vec(), serde_json::to_vec(&ev).expect("serializable"));
        }
    }

    #[test]
    fn the_other_events_go_through_serde() {
        let net_events = [
            NetEvent::Fin { stream: 3, at_ns: 1, ready_ns: 2 },
            NetEvent::Segment { stream: 0, bytes: 0, depart_ns: 0, ready_ns: 0, retransmits: 0 },
        ];
        for ev in &net_events {
            let mut out = Vec::new();
            net(&mut out, ev);
            assert_eq!(out, serde_json::to_vec(ev).expect("serializable"));
        }
        let ev = DiskEvent::Evict { inode: 7, first_page: 1, pages: 2, at_ns: 3 };
        assert_eq!(by_hand(&ev), by_serde(&ev));
        // The one path the fast writer takes, pinned as text.
        let ev = DiskEvent::Op {
            op: OpKind::Append,
            path: "kafka-logs/events-0/00000000000000000000.log".into(),
            pos: 4096,
            len: 9000,
            at_ns: 5,
            done_ns: 6,
            error: None,
        };
        let text = String::from_utf8(by_hand(&ev)).expect("utf-8");
        assert_eq!(
            text,
            "prefix {\"Op\":{\"op\":\"Append\",\"path\":\"kafka-logs/events-0/00000000000000000000.log\",\
             \"pos\":4096,\"len\":9000,\"at_ns\":5,\"done_ns\":6,\"error\":null}}"
        );
    }
}

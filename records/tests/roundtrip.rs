//! Batches we build decode to what went in — by our decoder and by `kafka-protocol`'s, the external
//! judge of the format — and batches `kafka-protocol` builds decode by ours. Decoding arbitrary
//! bytes never panics.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records as kp;
use proptest::prelude::*;
use records::compression::{compress, decompress};
use records::{
    decode_all, decode_batch, decode_batch_unverified_crc, BatchBuilder, BatchHeader, Compression,
    DecodeError, Header, Record, BATCH_HEADER_LEN,
};

const ALL: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

#[derive(Debug, Clone)]
struct In {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

fn bytes_opt() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        1 => Just(None),
        4 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Some),
        1 => proptest::collection::vec(any::<u8>(), 200..3000).prop_map(Some),
    ]
}

fn record_in() -> impl Strategy<Value = In> {
    (
        prop_oneof![
            Just(0i64),
            Just(-1i64),
            1_600_000_000_000i64..1_700_000_000_000,
            0..i64::MAX / 4
        ],
        bytes_opt(),
        bytes_opt(),
        // Unique header keys: kafka-protocol keeps headers in a map.
        proptest::collection::btree_map("[a-z]{1,8}", bytes_opt(), 0..4)
            .prop_map(|m| m.into_iter().collect::<Vec<_>>()),
    )
        .prop_map(|(timestamp, key, value, headers)| In { timestamp, key, value, headers })
}

fn codec() -> impl Strategy<Value = Compression> {
    proptest::sample::select(ALL.to_vec())
}

fn headers_of(r: &In) -> Vec<Header> {
    r.headers
        .iter()
        .map(|(k, v)| Header::new(Bytes::copy_from_slice(k.as_bytes()), v.clone().map(Bytes::from)))
        .collect()
}

fn build(records: &[In], codec: Compression, pid: i64, epoch: i16, seq: i32) -> Bytes {
    let mut b = BatchBuilder::new(BytesMut::new(), codec, usize::MAX);
    for r in records {
        b.append(r.timestamp, r.key.as_deref(), r.value.as_deref(), &headers_of(r)).unwrap();
    }
    b.set_producer_state(pid, epoch, seq);
    b.finish().unwrap().freeze()
}

/// Timestamps must keep their deltas representable the way Kafka computes them (wrapping).
fn expected_ts(records: &[In], i: usize) -> i64 {
    records[0].timestamp.wrapping_add(records[i].timestamp.wrapping_sub(records[0].timestamp))
}

fn our_codec(buf: &mut Bytes, c: kp::Compression) -> anyhow::Result<Bytes> {
    let codec = match c {
        kp::Compression::None => Compression::None,
        kp::Compression::Gzip => Compression::Gzip,
        kp::Compression::Snappy => Compression::Snappy,
        kp::Compression::Lz4 => Compression::Lz4,
        kp::Compression::Zstd => Compression::Zstd,
    };
    Ok(Bytes::from(decompress(codec, buf, 64 << 20)?))
}

fn kp_decode(batch: &Bytes) -> anyhow::Result<kp::RecordSet> {
    let mut buf = batch.clone();
    let set = kp::RecordBatchDecoder::decode_with_custom_compression(&mut buf, Some(our_codec))?;
    anyhow::ensure!(buf.is_empty(), "kafka-protocol left {} bytes", buf.len());
    Ok(set)
}

fn check_ours(records: &[In], out: &[Record], base_offset: i64) -> Result<(), TestCaseError> {
    prop_assert_eq!(out.len(), records.len());
    for (i, (a, b)) in records.iter().zip(out).enumerate() {
        prop_assert_eq!(b.offset, base_offset + i as i64);
        prop_assert_eq!(b.timestamp, expected_ts(records, i));
        prop_assert_eq!(b.key.as_deref(), a.key.as_deref());
        prop_assert_eq!(b.value.as_deref(), a.value.as_deref());
        prop_assert_eq!(b.headers.clone(), headers_of(a));
    }
    Ok(())
}

proptest! {
    // PROPTEST_CASES raises the count for deep runs (scripts/test.sh's deep property step); the
    // default keeps the workspace run quick.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn encode_decode_roundtrip(
        records in proptest::collection::vec(record_in(), 1..20),
        codec in codec(),
        base_offset in 0i64..1 << 40,
    ) {
        let batch = build(&records, codec, 77, 3, 1000);
        let mut owned = BytesMut::from(&batch[..]);
        BatchHeader::set_base_offset(&mut owned, base_offset);
        let h = BatchHeader::validate(&owned, usize::MAX).unwrap();
        prop_assert_eq!(h.compression().unwrap(), codec);
        prop_assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (77, 3, 1000));
        prop_assert_eq!(h.record_count as usize, records.len());
        let out = decode_all(owned.freeze(), 64 << 20).unwrap();
        check_ours(&records, &out, base_offset)?;
    }

    /// kafka-protocol decodes our batches (through our decompressors) to the same records.
    #[test]
    fn kafka_protocol_decodes_our_batches(
        records in proptest::collection::vec(record_in(), 1..20),
        codec in codec(),
    ) {
        let batch = build(&records, codec, 4242, 7, 55);
        let set = kp_decode(&batch).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(set.version, 2);
        prop_assert_eq!(set.compression as i16, codec.id());
        prop_assert_eq!(set.records.len(), records.len());
        for (i, (a, b)) in records.iter().zip(&set.records).enumerate() {
            prop_assert_eq!(b.offset, i as i64);
            prop_assert_eq!(b.sequence, 55 + i as i32);
            prop_assert_eq!(b.producer_id, 4242);
            prop_assert_eq!(b.producer_epoch, 7);
            prop_assert_eq!(b.timestamp_type, kp::TimestampType::Creation);
            prop_assert_eq!(b.timestamp, expected_ts(&records, i));
            prop_assert_eq!(b.key.as_deref(), a.key.as_deref());
            prop_assert_eq!(b.value.as_deref(), a.value.as_deref());
            prop_assert_eq!(b.headers.len(), a.headers.len());
            for (k, v) in &a.headers {
                let got = b.headers.get(k.as_bytes());
                prop_assert_eq!(got.map(|g| g.as_deref()), Some(v.as_deref()));
            }
        }
    }

    /// Batches kafka-protocol encodes (compressed by our codecs) decode identically by ours.
    #[test]
    fn we_decode_kafka_protocol_batches(
        records in proptest::collection::vec(record_in(), 1..20),
        codec in codec(),
    ) {
        let kp_codec = match codec {
            Compression::None => kp::Compression::None,
            Compression::Gzip => kp::Compression::Gzip,
            Compression::Snappy => kp::Compression::Snappy,
            Compression::Lz4 => kp::Compression::Lz4,
            Compression::Zstd => kp::Compression::Zstd,
        };
        let base_ts = records[0].timestamp;
        let kp_records: Vec<kp::Record> = records.iter().enumerate().map(|(i, r)| kp::Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: 9,
            producer_epoch: 1,
            timestamp_type: kp::TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32,
            timestamp: base_ts.wrapping_add(r.timestamp.wrapping_sub(base_ts)),
            key: r.key.clone().map(Bytes::from),
            value: r.value.clone().map(Bytes::from),
            headers: r.headers.iter().map(|(k, v)| {
                (kafka_protocol::protocol::StrBytes::from_string(k.clone()), v.clone().map(Bytes::from))
            }).collect(),
        }).collect();
        let mut buf = BytesMut::new();
        let opts = kp::RecordEncodeOptions { version: 2, compression: kp_codec };
        kp::RecordBatchEncoder::encode_with_custom_compression(
            &mut buf,
            kp_records.iter(),
            &opts,
            Some(|input: &mut BytesMut, out: &mut BytesMut, _c: kp::Compression| -> anyhow::Result<()> {
                let mut v = Vec::new();
                compress(codec, input, &mut v)?;
                out.extend_from_slice(&v);
                Ok(())
            }),
        ).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let out = decode_all(buf.freeze(), 64 << 20).unwrap();
        check_ours(&records, &out, 0)?;
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode_batch(Bytes::from(bytes.clone()), 1 << 16).map(|it| it.count());
        let _ = decode_batch_unverified_crc(Bytes::from(bytes), 1 << 16).map(|it| it.count());
    }

    /// A valid header (right length, magic, CRC) over arbitrary record bytes, so the fuzzing reaches
    /// the record parser and the decompressors.
    #[test]
    fn arbitrary_bodies_under_valid_headers_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..400),
        count in prop_oneof![1i32..5, Just(i32::MAX), Just(1 << 30)],
        codec in codec(),
        ts_type in any::<bool>(),
    ) {
        let batch = forged(&body, count, codec.id() | if ts_type { 0x08 } else { 0 });
        if let Ok(it) = decode_batch(batch, 1 << 16) {
            let _ = it.count();
        }
    }

    /// Flipping bytes of a real batch's records section (CRC fixed up) errors or decodes, never panics.
    #[test]
    fn mutated_records_never_panic(
        records in proptest::collection::vec(record_in(), 1..6),
        codec in codec(),
        flips in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let batch = build(&records, codec, -1, -1, -1);
        let mut b = batch.to_vec();
        let body_len = b.len() - BATCH_HEADER_LEN;
        for (i, x) in flips {
            b[BATCH_HEADER_LEN + i.index(body_len)] ^= x | 1;
        }
        BatchHeader::update_crc(&mut b);
        if let Ok(it) = decode_batch(Bytes::from(b), 1 << 20) {
            let _ = it.count();
        }
    }
}

/// A batch with a valid header and CRC around `body`.
fn forged(body: &[u8], count: i32, attributes: i16) -> Bytes {
    let mut b = vec![0u8; BATCH_HEADER_LEN + body.len()];
    let h = BatchHeader {
        base_offset: 0,
        batch_length: (b.len() - 12) as i32,
        partition_leader_epoch: -1,
        magic: 2,
        crc: 0,
        attributes,
        last_offset_delta: count.saturating_sub(1),
        base_timestamp: 0,
        max_timestamp: 0,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        record_count: count,
    };
    h.write_to(&mut b);
    b[BATCH_HEADER_LEN..].copy_from_slice(body);
    BatchHeader::update_crc(&mut b);
    Bytes::from(b)
}

#[test]
fn a_billion_declared_records_in_a_tiny_batch_is_an_error() {
    // One real record, then the count claims 2^30.
    let one = build(
        &[In { timestamp: 5, key: None, value: Some(b"x".to_vec()), headers: vec![] }],
        Compression::None,
        -1,
        -1,
        -1,
    );
    let batch = forged(&one[BATCH_HEADER_LEN..], 1 << 30, 0);
    let mut it = decode_batch(batch, 1 << 20).unwrap();
    assert!(it.next().unwrap().is_ok());
    assert!(matches!(
        it.next(),
        Some(Err(DecodeError::RecordCountMismatch { declared: 0x4000_0000, found: 1 }))
    ));
    assert!(it.next().is_none());
}

#[test]
fn huge_varint_lengths_are_errors() {
    // record length i32::MAX
    let batch = forged(&[0xfe, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0], 1, 0);
    assert!(matches!(
        decode_all(batch, 1 << 20),
        Err(DecodeError::BadLength { field: "record", .. })
    ));
    // a sane record length, then a key length of i32::MAX
    let batch = forged(&[16, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff, 0x0f], 1, 0);
    assert!(matches!(decode_all(batch, 1 << 20), Err(DecodeError::BadLength { field: "key", .. })));
    // a header count of i32::MAX
    let batch = forged(&[20, 0, 0, 0, 1, 1, 0xfe, 0xff, 0xff, 0xff, 0x0f], 1, 0);
    assert!(matches!(
        decode_all(batch, 1 << 20),
        Err(DecodeError::BadLength { field: "header count", .. })
    ));
}

#[test]
fn trailing_bytes_and_short_records_are_errors() {
    let one = build(
        &[In { timestamp: 5, key: None, value: Some(b"x".to_vec()), headers: vec![] }],
        Compression::None,
        -1,
        -1,
        -1,
    );
    let mut body = one[BATCH_HEADER_LEN..].to_vec();
    body.push(0);
    assert!(matches!(
        decode_all(forged(&body, 1, 0), 1 << 20),
        Err(DecodeError::TrailingBytes { bytes: 1 })
    ));
    assert!(matches!(
        decode_all(forged(&one[BATCH_HEADER_LEN..], 2, 0), 1 << 20),
        Err(DecodeError::RecordCountMismatch { declared: 2, found: 1 })
    ));
}

#[test]
fn extreme_timestamps_roundtrip_like_java_longs() {
    // Deltas wrap as Java's long arithmetic does, and decode back to the exact timestamps.
    let recs: Vec<In> = [i64::MIN, i64::MAX, -1, 0, i64::MIN + 1]
        .iter()
        .map(|&t| In { timestamp: t, key: None, value: None, headers: vec![] })
        .collect();
    let out = decode_all(build(&recs, Compression::None, -1, -1, -1), 1 << 20).unwrap();
    let got: Vec<i64> = out.iter().map(|r| r.timestamp).collect();
    assert_eq!(got, vec![i64::MIN, i64::MAX, -1, 0, i64::MIN + 1]);
}

#[test]
fn log_append_time_uses_max_timestamp() {
    let recs: Vec<In> = (0..3)
        .map(|i| In { timestamp: 100 + i, key: None, value: Some(vec![i as u8]), headers: vec![] })
        .collect();
    let batch = build(&recs, Compression::None, -1, -1, -1);
    let mut b = batch.to_vec();
    b[21..23].copy_from_slice(&0x08i16.to_be_bytes());
    b[35..43].copy_from_slice(&999i64.to_be_bytes());
    BatchHeader::update_crc(&mut b);
    let out = decode_all(Bytes::from(b), 1 << 20).unwrap();
    assert!(out.iter().all(|r| r.timestamp == 999));
}

#[test]
fn compressed_batches_are_bounded_by_the_caller() {
    let recs: Vec<In> = (0..100)
        .map(|i| In { timestamp: i, key: None, value: Some(vec![0; 10_000]), headers: vec![] })
        .collect();
    for codec in ALL {
        let batch = build(&recs, codec, -1, -1, -1);
        assert!(decode_all(batch.clone(), 1_010_000).is_ok(), "{codec:?}");
        assert!(
            matches!(decode_all(batch, 500_000), Err(DecodeError::Compression(_))),
            "{codec:?}"
        );
    }
}

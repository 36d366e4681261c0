//! Each bad batch issue 17 lists, built byte by byte, and the good batches that must pass.

use std::io::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

use super::*;
use crate::header::{BatchHeader, Compression, BATCH_HEADER_LEN, LENGTH_FIELD_END};
use crate::varint::{put_varint, put_varlong};

const LIMITS: ValidateLimits =
    ValidateLimits { max_uncompressed_bytes: 1 << 20, require_keys: false };

/// One record in Kafka's format with the given offset delta and key; fields as written.
fn record(offset_delta: i32, key: Option<&[u8]>, value: &[u8]) -> Vec<u8> {
    let mut body = BytesMut::new();
    body.put_u8(0);
    put_varlong(&mut body, 0);
    put_varint(&mut body, offset_delta);
    match key {
        None => put_varint(&mut body, -1),
        Some(k) => {
            put_varint(&mut body, k.len() as i32);
            body.put_slice(k);
        }
    }
    put_varint(&mut body, value.len() as i32);
    body.put_slice(value);
    put_varint(&mut body, 0);
    let mut out = BytesMut::new();
    put_varint(&mut out, body.len() as i32);
    out.put_slice(&body);
    out.to_vec()
}

/// A batch around a records section (already compressed when `codec` says so), CRC computed.
fn batch(codec: Compression, count: i32, last_offset_delta: i32, section: &[u8]) -> Bytes {
    let mut buf = vec![0u8; BATCH_HEADER_LEN];
    buf.extend_from_slice(section);
    let h = BatchHeader {
        base_offset: 0,
        batch_length: (buf.len() - LENGTH_FIELD_END) as i32,
        partition_leader_epoch: 0,
        magic: 2,
        crc: 0,
        attributes: codec.id(),
        last_offset_delta,
        base_timestamp: 1_000,
        max_timestamp: 1_000,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        record_count: count,
    };
    h.write_to(&mut buf);
    BatchHeader::update_crc(&mut buf);
    Bytes::from(buf)
}

fn records(n: i32) -> Vec<u8> {
    (0..n).flat_map(|i| record(i, Some(b"k"), b"value")).collect()
}

fn compressed(codec: Compression, raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    crate::compression::compress(codec, raw, &mut out).unwrap();
    out
}

fn code(b: &Bytes) -> i16 {
    validate_produced_batch(b, LIMITS).unwrap_err().kafka_code()
}

#[test]
fn good_batches_pass_with_their_counts() {
    for codec in [Compression::None, Compression::Gzip, Compression::Lz4, Compression::Zstd] {
        let raw = records(3);
        let section =
            if codec == Compression::None { raw.clone() } else { compressed(codec, &raw) };
        let v = validate_produced_batch(&batch(codec, 3, 2, &section), LIMITS).unwrap();
        assert_eq!(v.records, 3, "{codec:?}");
        assert_eq!(v.uncompressed_bytes, raw.len());
    }
}

#[test]
fn gzip_batch_holding_more_records_than_its_header_says() {
    let section = compressed(Compression::Gzip, &records(3));
    assert_eq!(code(&batch(Compression::Gzip, 1, 0, &section)), INVALID_RECORD);
}

#[test]
fn offset_range_that_does_not_match_the_count() {
    assert_eq!(code(&batch(Compression::None, 3, 100, &records(3))), INVALID_RECORD);
    // A count of 0 fails the header check already (a header that cannot hold a record).
    assert_eq!(code(&batch(Compression::None, 0, -1, &[])), CORRUPT_MESSAGE);
}

#[test]
fn random_bytes_as_a_gzip_payload() {
    let junk: Vec<u8> = (0..200u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    assert_eq!(code(&batch(Compression::Gzip, 1, 0, &junk)), CORRUPT_MESSAGE);
}

#[test]
fn record_length_past_the_end() {
    // Length varint 1000 with 10 bytes left.
    let mut section = BytesMut::new();
    put_varint(&mut section, 1000);
    section.put_slice(&[0u8; 10]);
    assert_eq!(code(&batch(Compression::None, 1, 0, &section)), CORRUPT_MESSAGE);
}

#[test]
fn negative_key_length() {
    let mut body = BytesMut::new();
    body.put_u8(0);
    put_varlong(&mut body, 0);
    put_varint(&mut body, 0);
    put_varint(&mut body, -5); // key length
    put_varint(&mut body, 1);
    body.put_u8(b'v');
    put_varint(&mut body, 0);
    let mut section = BytesMut::new();
    put_varint(&mut section, body.len() as i32);
    section.put_slice(&body);
    assert_eq!(code(&batch(Compression::None, 1, 0, &section)), CORRUPT_MESSAGE);
}

#[test]
fn header_count_of_two_to_the_thirty() {
    let mut body = BytesMut::new();
    body.put_u8(0);
    put_varlong(&mut body, 0);
    put_varint(&mut body, 0);
    put_varint(&mut body, -1);
    put_varint(&mut body, 1);
    body.put_u8(b'v');
    put_varint(&mut body, 1 << 30);
    let mut section = BytesMut::new();
    put_varint(&mut section, body.len() as i32);
    section.put_slice(&body);
    assert_eq!(code(&batch(Compression::None, 1, 0, &section)), CORRUPT_MESSAGE);
}

#[test]
fn zstd_bomb_is_refused_within_the_bound() {
    // 256 MiB of zeros compress to a few KiB; the bound is 1 MiB.
    let mut enc = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        enc.write_all(&zeros).unwrap();
    }
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 64 << 10, "a bomb is small: {} bytes", bomb.len());
    assert_eq!(code(&batch(Compression::Zstd, 1, 0, &bomb)), CORRUPT_MESSAGE);
}

#[test]
fn inner_offsets_out_of_order() {
    let section: Vec<u8> =
        [record(0, None, b"a"), record(2, None, b"b"), record(1, None, b"c")].concat();
    assert_eq!(code(&batch(Compression::None, 3, 2, &section)), INVALID_RECORD);
}

#[test]
fn compacted_topics_need_keys() {
    let section = [record(0, Some(b"k"), b"a"), record(1, None, b"b")].concat();
    let b = batch(Compression::None, 2, 1, &section);
    assert!(validate_produced_batch(&b, LIMITS).is_ok(), "keys are optional elsewhere");
    let compacted = ValidateLimits { require_keys: true, ..LIMITS };
    assert_eq!(validate_produced_batch(&b, compacted).unwrap_err().kafka_code(), INVALID_RECORD);
}

#[test]
fn control_batches_from_clients_are_refused() {
    let mut b = batch(Compression::None, 1, 0, &record(0, None, b"x")).to_vec();
    b[22] |= 0x20; // attributes bit 5: control
    BatchHeader::update_crc(&mut b);
    assert_eq!(code(&Bytes::from(b)), INVALID_RECORD);
}

#[test]
fn a_flipped_bit_is_a_crc_failure() {
    let mut b = batch(Compression::None, 1, 0, &record(0, None, b"x")).to_vec();
    let last = b.len() - 2;
    b[last] ^= 1;
    assert_eq!(code(&Bytes::from(b)), CORRUPT_MESSAGE);
}

/// The batches above that only record-level validation catches: the header check alone (what the
/// broker did before) accepts every one of them, so the tests above examine the new checks.
#[test]
fn header_check_alone_lets_these_through() {
    let junk: Vec<u8> = (0..200u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let mut long = BytesMut::new();
    put_varint(&mut long, 1000);
    long.put_slice(&[0u8; 10]);
    let out_of_order: Vec<u8> =
        [record(0, None, b"a"), record(2, None, b"b"), record(1, None, b"c")].concat();
    let cases = [
        batch(Compression::Gzip, 1, 0, &compressed(Compression::Gzip, &records(3))),
        batch(Compression::None, 3, 100, &records(3)),
        batch(Compression::Gzip, 1, 0, &junk),
        batch(Compression::None, 1, 0, &long),
        batch(Compression::None, 3, 2, &out_of_order),
    ];
    for (i, b) in cases.iter().enumerate() {
        assert!(BatchHeader::validate(b, usize::MAX).is_ok(), "case {i}: the header check passes");
        assert!(validate_produced_batch(b, LIMITS).is_err(), "case {i}: validation refuses");
    }
}

/// The validator's in-place walk (`next_meta`) sees what the decoding iterator sees: the same
/// offsets, timestamps and keys for good records, the same error at the same record for bad ones.
#[test]
fn the_in_place_walk_agrees_with_the_iterator() {
    let mut long = BytesMut::new();
    put_varint(&mut long, 1000);
    long.put_slice(&[0u8; 10]);
    let keyed = [record(0, Some(b"k"), b"a"), record(1, None, b"b"), records(2)].concat();
    let cases = [
        batch(Compression::None, 4, 3, &keyed),
        batch(Compression::None, 1, 0, &long),
        batch(Compression::None, 5, 4, &keyed),
        batch(Compression::Gzip, 1, 0, &compressed(Compression::Gzip, &records(3))),
    ];
    for (i, b) in cases.iter().enumerate() {
        let decoded: Vec<_> = crate::decode_batch(b.clone(), 1 << 20)
            .unwrap()
            .map(|r| r.map(|r| (r.offset, r.timestamp, r.key.is_some(), r.value)))
            .collect();
        let mut walk = crate::decode_batch(b.clone(), 1 << 20).unwrap();
        let mut walked = Vec::new();
        while let Some(m) = walk.next_meta() {
            let body = walk.uncompressed_records();
            walked.push(
                m.map(|m| (m.offset, m.timestamp, m.has_key, m.value.map(|v| body.slice(v)))),
            );
        }
        assert_eq!(walked, decoded, "case {i}");
    }
    let good = crate::decode_batch(cases[0].clone(), 1 << 20).unwrap();
    let keys: Vec<bool> = good.map(|r| r.unwrap().key.is_some()).collect();
    assert_eq!(keys, [true, false, true, true], "the cases hold what they claim");
}

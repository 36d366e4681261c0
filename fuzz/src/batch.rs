//! Target `batch`: record-batch validation, the check every produced batch passes before the log.
//!
//! Input: one flag byte, then a batch. When the flag's low bit is set the batch's CRC32C is made
//! right first, so the fuzzer gets past the CRC to the header rules, decompression and the record
//! walk (a random CRC almost never matches).
//!
//! Oracle: whenever validation accepts a batch, the independent decoder (`decode_all`, which
//! builds every record) decodes it too, to exactly as many records as validation counted, at
//! consecutive offsets; the uncompressed size validation reports is within the limit.

use bytes::Bytes;
use records::{decode_all, validate_produced_batch, ValidateLimits};

/// The bound validation gets (the broker passes `max.message.bytes` plus a margin).
pub const UNCOMPRESSED_BYTES_MAX: usize = 1 << 20;
/// A v2 batch header: CRC32C over everything from the attributes field (byte 21) on.
const CRC_OFFSET: usize = 17;
const CRC_START: usize = 21;

pub fn check(data: &[u8]) {
    let Some((&flag, rest)) = data.split_first() else { return };
    let mut batch = rest.to_vec();
    if flag & 1 == 1 && batch.len() > CRC_START {
        let crc = crc32c::crc32c(&batch[CRC_START..]);
        batch[CRC_OFFSET..CRC_START].copy_from_slice(&crc.to_be_bytes());
    }
    let batch = Bytes::from(batch);
    let require_keys = flag & 2 == 2;
    let limits = ValidateLimits { max_uncompressed_bytes: UNCOMPRESSED_BYTES_MAX, require_keys };
    let Ok(validated) = validate_produced_batch(&batch, limits) else { return };
    assert!(validated.uncompressed_bytes <= UNCOMPRESSED_BYTES_MAX);
    let decoded = decode_all(batch.clone(), UNCOMPRESSED_BYTES_MAX)
        .expect("a batch validation accepts must decode");
    assert_eq!(decoded.len(), validated.records as usize, "validation and decoding disagree");
    let base = decoded.first().map(|r| r.offset).unwrap_or(0);
    for (i, r) in decoded.iter().enumerate() {
        assert_eq!(r.offset, base + i as i64, "offsets of an accepted batch are consecutive");
        if require_keys {
            assert!(r.key.is_some(), "a compacted topic's batch was accepted with a null key");
        }
    }
}

//! The four codecs Kafka applies to a batch's records section, in the framings Kafka's Java client
//! writes and reads:
//!
//! - **gzip**: an RFC 1952 stream (flate2 on its default pure-Rust miniz_oxide backend). Decoding
//!   accepts concatenated members, like Java's `GZIPInputStream`. Level 6 (Java's `Deflater` default).
//! - **snappy**: Java writes xerial framing: the magic `\x82SNAPPY\0`, version and compatible
//!   version as big-endian int32 (both 1), then blocks of `int32 compressed length` + a raw snappy
//!   block holding at most 32 KiB of input. We encode exactly that and decode both xerial-framed and
//!   raw (unframed) snappy, which some non-Java clients write.
//! - **lz4**: the LZ4 *frame* format with the correct header checksum (KIP-57; Kafka's pre-0.10
//!   broken checksum only ever applied to magic v0/v1), 64 KiB independent blocks, no content
//!   checksum — the frame Kafka's `Lz4BlockOutputStream` writes.
//! - **zstd**: a standard zstd frame, level 3 (zstd-jni's and Kafka's default). We use the
//!   reference C library through the `zstd` crate rather than pure-Rust `ruzstd`: ruzstd's encoder
//!   only offers its "fastest" level with a noticeably worse ratio than level 3 and its decoder is
//!   several times slower, while calibrating the throughput model needs the same compression ratio
//!   and per-byte cost that real Kafka clients (zstd-jni, librdkafka: both libzstd) produce.
//!
//! Every decompression takes `max_output_bytes`. Output beyond it is an error, and the output
//! buffer never grows past it (nor does the zstd window, see [`decompress`]): a small compressed
//! batch can not make us allocate gigabytes.

use std::io::{Read, Write};

use thiserror::Error;

use crate::Compression;

/// Why compressing or decompressing failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CompressionError {
    #[error("{codec}: decompressed data exceeds the limit of {limit} bytes")]
    TooLarge { codec: &'static str, limit: usize },
    #[error("{codec}: corrupt input: {reason}")]
    Corrupt { codec: &'static str, reason: String },
    #[error("{codec}: compression failed: {reason}")]
    Encode { codec: &'static str, reason: String },
}

/// Default compression levels, as Kafka's Java producer uses them.
pub const GZIP_DEFAULT_LEVEL: u32 = 6;
pub const ZSTD_DEFAULT_LEVEL: i32 = 3;

/// xerial snappy-java stream header magic.
pub const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_LEN: usize = 16;
/// xerial's `SnappyOutputStream` default block size.
const XERIAL_BLOCK_SIZE: usize = 32 * 1024;
/// Read granularity for streaming decoders.
const CHUNK: usize = 32 * 1024;

fn corrupt(codec: &'static str, e: impl std::fmt::Display) -> CompressionError {
    CompressionError::Corrupt { codec, reason: e.to_string() }
}

fn encode_err(codec: &'static str, e: impl std::fmt::Display) -> CompressionError {
    CompressionError::Encode { codec, reason: e.to_string() }
}

/// Compresses `input` with `codec` (default level), appending the result to `out`.
/// `Compression::None` appends `input` unchanged.
pub fn compress(
    codec: Compression,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    compress_with_level(codec, None, input, out)
}

/// Like [`compress`], with an explicit level for gzip (0-9) and zstd (1-22); ignored otherwise.
pub fn compress_with_level(
    codec: Compression,
    level: Option<i32>,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    match codec {
        Compression::None => {
            out.extend_from_slice(input);
            Ok(())
        }
        Compression::Gzip => {
            let level = level.map_or(GZIP_DEFAULT_LEVEL, |l| l.clamp(0, 9) as u32);
            let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::new(level));
            enc.write_all(input).map_err(|e| encode_err("gzip", e))?;
            enc.finish().map_err(|e| encode_err("gzip", e))?;
            Ok(())
        }
        Compression::Snappy => compress_xerial_snappy(input, out),
        Compression::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent)
                .block_checksums(false)
                .content_checksum(false);
            let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, out);
            enc.write_all(input).map_err(|e| encode_err("lz4", e))?;
            enc.finish().map_err(|e| encode_err("lz4", e))?;
            Ok(())
        }
        Compression::Zstd => {
            let level = level.unwrap_or(ZSTD_DEFAULT_LEVEL);
            let mut enc =
                zstd::stream::write::Encoder::new(out, level).map_err(|e| encode_err("zstd", e))?;
            enc.write_all(input).map_err(|e| encode_err("zstd", e))?;
            enc.finish().map_err(|e| encode_err("zstd", e))?;
            Ok(())
        }
    }
}

fn compress_xerial_snappy(input: &[u8], out: &mut Vec<u8>) -> Result<(), CompressionError> {
    out.extend_from_slice(&XERIAL_MAGIC);
    out.extend_from_slice(&1i32.to_be_bytes()); // version
    out.extend_from_slice(&1i32.to_be_bytes()); // minimum compatible version
    let mut encoder = snap::raw::Encoder::new();
    for block in input.chunks(XERIAL_BLOCK_SIZE) {
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let data_at = out.len();
        out.resize(data_at + snap::raw::max_compress_len(block.len()), 0);
        let n =
            encoder.compress(block, &mut out[data_at..]).map_err(|e| encode_err("snappy", e))?;
        out.truncate(data_at + n);
        let n = i32::try_from(n).map_err(|e| encode_err("snappy", e))?;
        out[len_at..data_at].copy_from_slice(&n.to_be_bytes());
    }
    Ok(())
}

/// Decompresses `input`, failing with [`CompressionError::TooLarge`] as soon as the output would
/// exceed `max_output_bytes`. The returned buffer's capacity never exceeds `max_output_bytes`.
///
/// zstd: the decoder's window is capped at `max(4 MiB, next power of two >= max_output_bytes)`
/// (and at most 128 MiB, libzstd's default), so a frame declaring a huge window is refused rather
/// than allocated. Streaming encoders without a pledged size (zstd-jni) declare 2 MiB windows at
/// Kafka's level 3, which stay accepted.
pub fn decompress(
    codec: Compression,
    input: &[u8],
    max_output_bytes: usize,
) -> Result<Vec<u8>, CompressionError> {
    match codec {
        Compression::None => {
            if input.len() > max_output_bytes {
                return Err(CompressionError::TooLarge { codec: "none", limit: max_output_bytes });
            }
            Ok(input.to_vec())
        }
        Compression::Gzip => {
            read_bounded("gzip", flate2::read::MultiGzDecoder::new(input), max_output_bytes)
        }
        Compression::Snappy => decompress_snappy(input, max_output_bytes),
        Compression::Lz4 => {
            read_bounded("lz4", lz4_flex::frame::FrameDecoder::new(input), max_output_bytes)
        }
        Compression::Zstd => {
            let mut dec =
                zstd::stream::read::Decoder::new(input).map_err(|e| corrupt("zstd", e))?;
            let needed = usize::BITS - max_output_bytes.saturating_sub(1).leading_zeros();
            let window_log = needed.clamp(22, 27);
            dec.window_log_max(window_log).map_err(|e| corrupt("zstd", e))?;
            read_bounded("zstd", dec, max_output_bytes)
        }
    }
}

/// Reads `r` to its end into a buffer whose length and capacity never exceed `max`.
fn read_bounded<R: Read>(
    codec: &'static str,
    mut r: R,
    max: usize,
) -> Result<Vec<u8>, CompressionError> {
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = [0u8; CHUNK];
    loop {
        let n = match r.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(corrupt(codec, e)),
        };
        let new_len = out.len() + n;
        if new_len > max {
            return Err(CompressionError::TooLarge { codec, limit: max });
        }
        if new_len > out.capacity() {
            let target = out.capacity().saturating_mul(2).max(new_len).max(CHUNK.min(max)).min(max);
            out.reserve_exact(target - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

fn decompress_snappy(input: &[u8], max: usize) -> Result<Vec<u8>, CompressionError> {
    if input.len() >= XERIAL_HEADER_LEN && input[..8] == XERIAL_MAGIC {
        decompress_xerial(input, max)
    } else {
        let mut out = Vec::new();
        raw_snappy_into(input, max, &mut out)?;
        Ok(out)
    }
}

/// Decompresses one raw snappy block, appending to `out`, keeping `out.len() <= max`.
fn raw_snappy_into(block: &[u8], max: usize, out: &mut Vec<u8>) -> Result<(), CompressionError> {
    let len = snap::raw::decompress_len(block).map_err(|e| corrupt("snappy", e))?;
    if len > max - out.len() {
        return Err(CompressionError::TooLarge { codec: "snappy", limit: max });
    }
    let at = out.len();
    out.try_reserve_exact(len).map_err(|e| corrupt("snappy", e))?;
    out.resize(at + len, 0);
    let n = snap::raw::Decoder::new()
        .decompress(block, &mut out[at..])
        .map_err(|e| corrupt("snappy", e))?;
    out.truncate(at + n);
    Ok(())
}

fn decompress_xerial(input: &[u8], max: usize) -> Result<Vec<u8>, CompressionError> {
    let mut out = Vec::new();
    let mut pos = XERIAL_HEADER_LEN;
    while pos < input.len() {
        // xerial's reader tolerates a concatenated stream's header between blocks.
        if input.len() - pos >= XERIAL_HEADER_LEN && input[pos..pos + 8] == XERIAL_MAGIC {
            pos += XERIAL_HEADER_LEN;
            continue;
        }
        let Some(len_bytes) = input.get(pos..pos + 4) else {
            return Err(corrupt("snappy", "truncated xerial block length"));
        };
        let len = i32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        pos += 4;
        let len =
            usize::try_from(len).map_err(|_| corrupt("snappy", "negative xerial block length"))?;
        let Some(block) = input.get(pos..pos.saturating_add(len)) else {
            return Err(corrupt("snappy", "xerial block extends past the input"));
        };
        pos += len;
        raw_snappy_into(block, max, &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn sample(n: usize) -> Vec<u8> {
        (0..n).map(|i| ((i * 7) % 251) as u8 ^ (i / 1000) as u8).collect()
    }

    #[test]
    fn roundtrip_every_codec() {
        for codec in ALL {
            for n in [0usize, 1, 100, 32 * 1024, 32 * 1024 + 1, 200_000] {
                let data = sample(n);
                let mut c = Vec::new();
                compress(codec, &data, &mut c).unwrap();
                let d = decompress(codec, &c, n).unwrap();
                assert_eq!(d, data, "{codec:?} n={n}");
                if n > 0 {
                    assert!(matches!(
                        decompress(codec, &c, n - 1),
                        Err(CompressionError::TooLarge { .. })
                    ));
                }
            }
        }
    }

    #[test]
    fn snappy_is_xerial_framed_and_raw_decodes_too() {
        let data = sample(70_000);
        let mut c = Vec::new();
        compress(Compression::Snappy, &data, &mut c).unwrap();
        assert_eq!(&c[..8], &XERIAL_MAGIC);
        assert_eq!(&c[8..16], &[0, 0, 0, 1, 0, 0, 0, 1]);
        // three blocks of at most 32 KiB input
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(decompress(Compression::Snappy, &raw, data.len()).unwrap(), data);
        // two concatenated xerial streams
        let mut twice = c.clone();
        twice.extend_from_slice(&c);
        let mut both = data.clone();
        both.extend_from_slice(&data);
        assert_eq!(decompress(Compression::Snappy, &twice, both.len()).unwrap(), both);
    }

    #[test]
    fn lz4_frame_header_is_kafka_compatible() {
        let mut c = Vec::new();
        compress(Compression::Lz4, b"hello hello hello", &mut c).unwrap();
        assert_eq!(&c[..4], &[0x04, 0x22, 0x4d, 0x18]); // LZ4 frame magic
        let flg = c[4];
        assert_eq!(flg >> 6, 0b01, "version 01");
        assert_ne!(flg & 0x20, 0, "independent blocks");
        assert_eq!(flg & 0x1c, 0, "no block checksum, content size or content checksum");
        assert_eq!(c[5], 0x40, "64 KiB blocks");
    }

    #[test]
    fn bombs_are_refused_with_bounded_memory() {
        let zeros = vec![0u8; 8 << 20];
        for codec in ALL {
            let mut c = Vec::new();
            compress(codec, &zeros, &mut c).unwrap();
            match decompress(codec, &c, 1 << 20) {
                Err(CompressionError::TooLarge { limit, .. }) => assert_eq!(limit, 1 << 20),
                other => panic!("{codec:?}: {other:?}"),
            }
        }
        // A raw snappy block that declares 4 GiB of output in a few bytes.
        let bomb = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        assert!(decompress(Compression::Snappy, &bomb, 1 << 20).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            assert!(
                decompress(codec, b"definitely not compressed data", 1 << 20).is_err(),
                "{codec:?}"
            );
            let mut c = Vec::new();
            compress(codec, &sample(5000), &mut c).unwrap();
            c.truncate(c.len() / 2);
            assert!(decompress(codec, &c, 1 << 20).is_err(), "{codec:?} truncated");
        }
    }

    proptest::proptest! {
        #[test]
        fn decompress_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300), prefix in 0usize..4) {
            // Start some inputs with each codec's magic so decoders get past their first check.
            let mut input = match prefix {
                0 => vec![0x1f, 0x8b, 8, 0],
                1 => XERIAL_MAGIC.iter().copied().chain([0, 0, 0, 1, 0, 0, 0, 1]).collect(),
                2 => vec![0x04, 0x22, 0x4d, 0x18],
                _ => vec![0x28, 0xb5, 0x2f, 0xfd],
            };
            input.extend_from_slice(&bytes);
            for codec in ALL {
                let _ = decompress(codec, &input, 1 << 16);
                let _ = decompress(codec, &bytes, 1 << 16);
            }
        }

        #[test]
        fn roundtrip_random(data in proptest::collection::vec(proptest::num::u8::ANY, 0..5000)) {
            for codec in ALL {
                let mut c = Vec::new();
                compress(codec, &data, &mut c).unwrap();
                proptest::prop_assert_eq!(decompress(codec, &c, data.len()).unwrap(), data.clone());
            }
        }
    }
}

//! Kafka's zig-zag varints (`ByteUtils.writeVarint` / `writeVarlong`), as used inside v2 records.
//!
//! Decoding is bounds-checked and rejects over-long encodings (more than 5 bytes for a 32-bit
//! varint, 10 for a 64-bit varlong), so a hostile input can neither panic nor loop.

use bytes::BufMut;

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarintError {
    /// The input ended inside the varint.
    Truncated,
    /// More continuation bytes than the type allows.
    TooLong,
}

#[inline]
pub fn zigzag32(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

#[inline]
pub fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Bytes that `put_varint(v)` writes.
#[inline]
pub fn varint_size(v: i32) -> usize {
    varuint_size(zigzag32(v) as u64)
}

/// Bytes that `put_varlong(v)` writes.
#[inline]
pub fn varlong_size(v: i64) -> usize {
    varuint_size(zigzag64(v))
}

#[inline]
fn varuint_size(mut u: u64) -> usize {
    let mut n = 1;
    while u >= 0x80 {
        u >>= 7;
        n += 1;
    }
    n
}

/// Writes an unsigned varint (7 bits a byte, low first; Kafka's `writeUnsignedVarlong`).
#[inline]
pub fn put_varulong<B: BufMut + ?Sized>(out: &mut B, u: u64) {
    put_varuint(out, u);
}

#[inline]
fn put_varuint<B: BufMut + ?Sized>(out: &mut B, mut u: u64) {
    while u >= 0x80 {
        out.put_u8((u as u8 & 0x7f) | 0x80);
        u >>= 7;
    }
    out.put_u8(u as u8);
}

#[inline]
pub fn put_varint<B: BufMut + ?Sized>(out: &mut B, v: i32) {
    put_varuint(out, zigzag32(v) as u64);
}

#[inline]
pub fn put_varlong<B: BufMut + ?Sized>(out: &mut B, v: i64) {
    put_varuint(out, zigzag64(v));
}

#[inline]
fn get_varuint(input: &[u8], pos: &mut usize, max_bytes: usize) -> Result<u64, VarintError> {
    let mut value = 0u64;
    for i in 0..max_bytes {
        let Some(&b) = input.get(*pos) else {
            return Err(VarintError::Truncated);
        };
        *pos += 1;
        value |= ((b & 0x7f) as u64) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(VarintError::TooLong)
}

/// An unsigned varint of one or two bytes (below 2¹⁴: most of a record's lengths and deltas)
/// at `*pos`, advancing past it, without the loop; `None`, with `*pos` unchanged, for anything
/// else (longer, truncated or past the end), which the `get_*` functions then read.
#[inline(always)]
pub(crate) fn get_short_varuint(input: &[u8], pos: &mut usize) -> Option<u64> {
    // Byte by byte, not a slice pattern on `input[*pos..]`: making that slice (with its empty
    // case) was half of each read's instructions.
    let lo = *input.get(*pos)?;
    if lo < 0x80 {
        *pos += 1;
        return Some(u64::from(lo));
    }
    let hi = *input.get(*pos + 1)?;
    if hi < 0x80 {
        *pos += 2;
        return Some(u64::from(lo & 0x7f) | u64::from(hi) << 7);
    }
    None
}

/// The zig-zag decoding of a 32-bit varint's bits.
#[inline]
pub(crate) fn unzigzag32(u: u32) -> i32 {
    ((u >> 1) as i32) ^ -((u & 1) as i32)
}

/// The zig-zag decoding of a 64-bit varint's bits.
#[inline]
pub(crate) fn unzigzag64(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Reads a zig-zag varint (at most 5 bytes) at `*pos`, advancing it.
pub fn get_varint(input: &[u8], pos: &mut usize) -> Result<i32, VarintError> {
    let u = get_varuint(input, pos, 5)?;
    // Like Java, bits beyond 32 in the fifth byte are dropped.
    Ok(unzigzag32(u as u32))
}

/// Reads an unsigned varint (at most 10 bytes) at `*pos`, advancing it.
#[inline]
pub fn get_varulong(input: &[u8], pos: &mut usize) -> Result<u64, VarintError> {
    get_varuint(input, pos, 10)
}

/// Reads a zig-zag varlong (at most 10 bytes) at `*pos`, advancing it.
#[inline]
pub fn get_varlong(input: &[u8], pos: &mut usize) -> Result<i64, VarintError> {
    let u = get_varuint(input, pos, 10)?;
    Ok(unzigzag64(u))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The short path reads what `get_varulong` reads below 2¹⁴ and leaves everything else
    /// (longer values, cut input) to it, position untouched.
    #[test]
    fn short_varuints_are_read_as_the_loop_reads_them() {
        for u in [0u64, 1, 127, 128, 300, (1 << 14) - 1, 1 << 14, 1 << 20, u64::MAX] {
            let mut enc = vec![9u8];
            put_varulong(&mut enc, u);
            let (mut short_pos, mut loop_pos) = (1, 1);
            let short = get_short_varuint(&enc, &mut short_pos);
            assert_eq!(get_varulong(&enc, &mut loop_pos), Ok(u));
            if u < 1 << 14 {
                assert_eq!((short, short_pos), (Some(u), loop_pos), "{u}");
            } else {
                assert_eq!((short, short_pos), (None, 1), "{u}");
            }
            let mut cut_pos = 1;
            assert_eq!(get_short_varuint(&enc[..enc.len() - 1], &mut cut_pos), None, "cut {u}");
            assert_eq!(cut_pos, 1);
        }
        assert_eq!(get_short_varuint(&[], &mut 0), None);
    }

    #[test]
    fn known_encodings() {
        // Kafka's ByteUtilsTest: 0 -> 00, -1 -> 01, 1 -> 02, 63 -> 7e, -64 -> 7f, 64 -> 80 01.
        for (v, enc) in [
            (0i32, &[0x00u8][..]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (i32::MAX, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
            (i32::MIN, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out, enc, "{v}");
            assert_eq!(varint_size(v), enc.len());
            let mut pos = 0;
            assert_eq!(get_varint(&out, &mut pos), Ok(v));
            assert_eq!(pos, enc.len());
        }
    }

    #[test]
    fn overlong_and_truncated() {
        let mut pos = 0;
        assert_eq!(
            get_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01], &mut pos),
            Err(VarintError::TooLong)
        );
        let mut pos = 0;
        assert_eq!(get_varint(&[0x80, 0x80], &mut pos), Err(VarintError::Truncated));
        let mut pos = 0;
        assert_eq!(get_varlong(&[0xff; 11], &mut pos), Err(VarintError::TooLong));
    }

    proptest::proptest! {
        #[test]
        fn roundtrip(a in proptest::num::i32::ANY, b in proptest::num::i64::ANY, c in proptest::num::u64::ANY) {
            let mut out = Vec::new();
            put_varint(&mut out, a);
            put_varlong(&mut out, b);
            put_varulong(&mut out, c);
            proptest::prop_assert_eq!(out.len(), varint_size(a) + varlong_size(b) + varuint_size(c));
            let mut pos = 0;
            proptest::prop_assert_eq!(get_varint(&out, &mut pos), Ok(a));
            proptest::prop_assert_eq!(get_varlong(&out, &mut pos), Ok(b));
            proptest::prop_assert_eq!(get_varulong(&out, &mut pos), Ok(c));
            proptest::prop_assert_eq!(pos, out.len());
        }
    }
}

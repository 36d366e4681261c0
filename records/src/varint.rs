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

/// A record's varint fields gathered on the stack and written to the buffer in one `put_slice`:
/// `BufMut::put_u8` on a `BytesMut` checks capacity and calls `memcpy` for each byte, and a
/// record has about eight such bytes (`BatchBuilder::append` of a 100-byte record: 710 → 410
/// instructions). Not for a `Vec<u8>`, whose `put_u8` is already a plain push: there the
/// zeroed stack buffer cost more than it saved (the simulator's send history, measured).
#[derive(Debug)]
pub struct Scratch {
    bytes: [u8; Scratch::CAPACITY],
    len: usize,
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Scratch {
    /// Room for a record's fixed fields (length 5, attributes 1, timestamp delta 10, offset
    /// delta 5, key length 5) and then some; a write past it is a broken invariant.
    pub const CAPACITY: usize = 40;

    pub fn new() -> Self {
        Scratch { bytes: [0; Self::CAPACITY], len: 0 }
    }

    #[inline]
    pub fn byte(&mut self, b: u8) {
        assert!(self.len < Self::CAPACITY, "scratch full");
        self.bytes[self.len] = b;
        self.len += 1;
    }

    /// As [`put_varulong`].
    #[inline]
    pub fn varulong(&mut self, mut u: u64) {
        while u >= 0x80 {
            self.byte((u as u8 & 0x7f) | 0x80);
            u >>= 7;
        }
        self.byte(u as u8);
    }

    /// As [`put_varint`].
    #[inline]
    pub fn varint(&mut self, v: i32) {
        self.varulong(zigzag32(v) as u64);
    }

    /// As [`put_varlong`].
    #[inline]
    pub fn varlong(&mut self, v: i64) {
        self.varulong(zigzag64(v));
    }

    /// Writes what was gathered to `out` and starts over.
    #[inline]
    pub fn flush_to<B: BufMut + ?Sized>(&mut self, out: &mut B) {
        out.put_slice(&self.bytes[..self.len]);
        self.len = 0;
    }
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

/// Reads a zig-zag varint (at most 5 bytes) at `*pos`, advancing it.
pub fn get_varint(input: &[u8], pos: &mut usize) -> Result<i32, VarintError> {
    let u = get_varuint(input, pos, 5)?;
    // Like Java, bits beyond 32 in the fifth byte are dropped.
    let u = u as u32;
    Ok(((u >> 1) as i32) ^ -((u & 1) as i32))
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
    Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scratch writes the bytes `put_varint`/`put_varlong` write, for values of every length.
    #[test]
    fn scratch_writes_what_put_writes() {
        let ints = [0, -1, 1, 63, -64, 64, 8191, -8192, 8192, i32::MAX, i32::MIN];
        let longs = [0i64, -1, 300, -300, 1 << 40, i64::MAX, i64::MIN];
        for (&i, &l) in ints.iter().zip(longs.iter().cycle()) {
            let mut put = Vec::new();
            put_varint(&mut put, i);
            put_varlong(&mut put, l);
            put_varulong(&mut put, l as u64);
            put.push(7);
            let mut s = Scratch::new();
            s.varint(i);
            s.varlong(l);
            s.varulong(l as u64);
            s.byte(7);
            let mut out = vec![1u8];
            s.flush_to(&mut out);
            assert_eq!(out[1..], put[..], "{i} {l}");
            s.flush_to(&mut out);
            assert_eq!(out.len(), put.len() + 1, "a flush starts over");
        }
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

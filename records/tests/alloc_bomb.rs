//! Hostile batches must not make us allocate: a counting allocator records the largest single
//! allocation while tiny batches claim a billion records, huge lengths, and decompression bombs.
//! (Its own test binary, so the allocator watches nothing else.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use records::compression::compress;
use records::{decode_all, BatchHeader, Compression, BATCH_HEADER_LEN};

struct Counting;
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn forged(body: &[u8], count: i32, attributes: i16) -> Bytes {
    let mut b = vec![0u8; BATCH_HEADER_LEN + body.len()];
    BatchHeader {
        base_offset: 0,
        batch_length: (b.len() - 12) as i32,
        partition_leader_epoch: -1,
        magic: 2,
        crc: 0,
        attributes,
        last_offset_delta: count - 1,
        base_timestamp: 0,
        max_timestamp: 0,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        record_count: count,
    }
    .write_to(&mut b);
    b[BATCH_HEADER_LEN..].copy_from_slice(body);
    BatchHeader::update_crc(&mut b);
    Bytes::from(b)
}

#[test]
fn hostile_batches_allocate_nothing_big() {
    // Build the compressed bomb inputs first; then measure only decoding.
    let zeros = vec![0u8; 64 << 20];
    let mut bombs = Vec::new();
    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let mut c = Vec::new();
        compress(codec, &zeros, &mut c).unwrap();
        bombs.push(forged(&c, 1 << 30, codec.id()));
    }
    drop(zeros);
    let tiny = [
        // a billion records declared, one byte of body
        forged(&[0], 1 << 30, 0),
        // record length varint = i32::MAX
        forged(&[0xfe, 0xff, 0xff, 0xff, 0x0f, 0], 1 << 30, 0),
        // key length i32::MAX, header count i32::MAX
        forged(&[16, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff, 0x0f], 1 << 30, 0),
        forged(&[20, 0, 0, 0, 1, 1, 0xfe, 0xff, 0xff, 0xff, 0x0f], 1 << 30, 0),
        // a raw snappy block declaring 4 GiB
        forged(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0x00], 1 << 30, Compression::Snappy.id()),
    ];
    LARGEST.store(0, Ordering::Relaxed);
    for b in tiny.iter().chain(&bombs) {
        assert!(decode_all(b.clone(), 1 << 20).is_err());
    }
    let largest = LARGEST.load(Ordering::Relaxed);
    // The 1 MiB output cap, plus codec state (zstd's window is capped at 4 MiB plus block buffers).
    assert!(largest <= 5 << 20, "largest single allocation was {largest} bytes");
}

//! What one record costs to encode and to decode, counted under callgrind (issue 13): builds
//! batches of 400 records shaped like the speed benchmark's (no key, a 100-byte value, no
//! headers) with `BatchBuilder::try_append`, or decodes such a batch with `RecordIter::next_meta`,
//! ROUNDS times. Instructions a record = (count at 2·N rounds − count at N rounds) / (400·N).
//! The figures are this binary's: what the compiler inlines differs between instantiations of
//! the generic builder (2026-12-07: one change took the client's `append_if` from 434 to 359
//! instructions a record in the simulator and this encode, batch finish and CRC included, from
//! 410 to 436; the next, one gathering mechanism for every record, took this one to 298 and the
//! client's up by ~10), so compare builds of this example with each other and confirm in the
//! simulator (`scripts/cost-ab.sh`). Run it with the `GLIBC_TUNABLES` that script sets, so a
//! copy of more than ~2 KiB counts as the vector loop it would be, not one instruction a byte
//! (glibc's `rep movsb`, which callgrind steps byte by byte; this example copies nothing that
//! large today: 298 and 235 instructions a record either way).
//!
//! ```text
//! cargo build --release -p records --example record_cost
//! export GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=1073741824:glibc.cpu.x86_rep_stosb_threshold=1073741824
//! for n in 100 200; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/record_cost encode $n 2>&1 | grep Collected
//! done
//! ```
use bytes::{Bytes, BytesMut};
use records::{decode_batch_unverified_crc, BatchBuilder, Compression};

const RECORDS: i64 = 400;
const VALUE_BYTES: usize = 100;

fn batch(value: &[u8]) -> Bytes {
    let mut b = BatchBuilder::new(BytesMut::with_capacity(65536), Compression::None, 65536);
    for i in 0..RECORDS {
        let appended = b.try_append(1_700_000_000_000 + i / 100, None, Some(value), &[]);
        assert!(matches!(appended, Ok(Some(_))), "the batch holds {RECORDS} records");
    }
    b.finish().expect("a batch of records").freeze()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let value = vec![b'x'; VALUE_BYTES];
    let mut sum = 0i64;
    match mode.as_str() {
        "encode" => {
            for _ in 0..rounds {
                sum += batch(&value).len() as i64;
            }
        }
        "decode" => {
            let batch = batch(&value);
            for _ in 0..rounds {
                let mut it = decode_batch_unverified_crc(batch.clone(), usize::MAX)
                    .expect("the batch just built");
                while let Some(r) = it.next_meta() {
                    let r = r.expect("a valid record");
                    sum ^= r.offset ^ r.timestamp ^ r.value.map_or(0, |v| v.start as i64);
                }
            }
        }
        _ => {
            eprintln!("usage: record_cost encode|decode [ROUNDS]");
            std::process::exit(64);
        }
    }
    println!("{sum}");
}

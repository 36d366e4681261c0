//! `compression.type` as Kafka's LogValidator applies it: a topic with a codec of its own stores
//! every batch in that codec, so a batch produced with another one is decompressed (bounded, as
//! the cleaner does) and compressed again; `producer` (the default) keeps batches as produced.
//! Control batches are left alone. The header (producer id, sequence, timestamps, count) is kept;
//! only the codec bits, the length and the CRC change.

use bytes::Bytes;
use records::compression::compress;
use records::{BatchHeader, BatchIter, Compression, BATCH_HEADER_LEN, LENGTH_FIELD_END};

/// `records` with every batch in `target`'s codec, or `None` when nothing needs to change.
pub fn to_topic_codec(
    records: &[u8],
    target: Option<Compression>,
) -> Result<Option<Vec<u8>>, String> {
    let Some(codec) = target else { return Ok(None) };
    let needs = |h: &BatchHeader| !h.is_control() && h.compression().ok() != Some(codec);
    if !BatchIter::new(records).any(|(_, h)| needs(&h)) {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(records.len());
    let mut end = 0;
    for (pos, h) in BatchIter::new(records) {
        let batch = &records[pos..pos + h.size()];
        if needs(&h) {
            out.extend_from_slice(&recompress(batch, &h, codec)?);
        } else {
            out.extend_from_slice(batch);
        }
        end = pos + h.size();
    }
    if end != records.len() {
        return Err(format!("trailing bytes after batch ending at {end}"));
    }
    Ok(Some(out))
}

fn recompress(batch: &[u8], h: &BatchHeader, codec: Compression) -> Result<Vec<u8>, String> {
    let body = super::cleaner::records_body(&Bytes::copy_from_slice(batch), h)?;
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + body.len());
    out.resize(BATCH_HEADER_LEN, 0);
    compress(codec, &body, &mut out).map_err(|e| e.to_string())?;
    let mut nh = *h;
    nh.attributes = (h.attributes & !0x07) | codec.id();
    nh.batch_length =
        i32::try_from(out.len() - LENGTH_FIELD_END).map_err(|_| "batch too large".to_string())?;
    nh.write_to(&mut out);
    BatchHeader::update_crc(&mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(codec: Compression) -> Vec<u8> {
        let mut b = records::BatchBuilder::new(Vec::new(), codec, usize::MAX);
        for i in 0..20u8 {
            b.append(1_000 + i as i64, Some(&[i]), Some(&[i; 100]), &[]).unwrap();
        }
        b.finish().unwrap()
    }

    #[test]
    fn batches_take_the_topics_codec_and_keep_their_records() {
        let mut two = batch(Compression::None);
        two.extend_from_slice(&batch(Compression::Gzip));
        assert_eq!(to_topic_codec(&two, None).unwrap(), None, "producer: as produced");
        let out = to_topic_codec(&two, Some(Compression::Lz4)).unwrap().expect("rewritten");
        let mut n = 0;
        for (pos, h) in BatchIter::new(&out) {
            let b = &out[pos..pos + h.size()];
            BatchHeader::validate(b, usize::MAX).expect("a valid CRC");
            assert_eq!(h.compression().unwrap(), Compression::Lz4);
            assert_eq!((h.record_count, h.base_timestamp), (20, 1_000));
            let body = crate::log::cleaner::records_body(&Bytes::copy_from_slice(b), &h).unwrap();
            let plain = batch(Compression::None);
            assert_eq!(&body[..], &plain[BATCH_HEADER_LEN..], "the same records");
            n += 1;
        }
        assert_eq!(n, 2);
        let lz4 = batch(Compression::Lz4);
        assert_eq!(to_topic_codec(&lz4, Some(Compression::Lz4)).unwrap(), None);
    }
}

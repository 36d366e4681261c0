//! Framing for the controller listener: a 4-byte big-endian length, then that many bytes of
//! serde_json. The length is checked against a bound before anything is allocated, so a bad or
//! hostile peer costs at most `frame_bytes_max` of memory and gets its connection closed.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt};

use net_model::{Chunk, ChunkWriter};

/// Default bound on one frame (a whole metadata image travels in one frame).
pub const FRAME_BYTES_MAX: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {len} bytes exceeds {max}")]
    TooLarge { len: usize, max: usize },
    #[error("undecodable frame: {0}")]
    Decode(String),
    #[error("unencodable message: {0}")]
    Encode(String),
}

/// The frame for `msg`: length prefix and body.
pub fn encode<T: Serialize>(msg: &T, max: usize) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_vec(msg).map_err(|e| FrameError::Encode(e.to_string()))?;
    if body.len() > max {
        return Err(FrameError::TooLarge { len: body.len(), max });
    }
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes one frame from the front of `buf`: `Ok(None)` if more bytes are needed, else the
/// message and the bytes it used. Pure, so it is property-tested without a runtime.
pub fn decode<T: DeserializeOwned>(
    buf: &[u8],
    max: usize,
) -> Result<Option<(T, usize)>, FrameError> {
    let Some(head) = buf.get(..4) else { return Ok(None) };
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let Some(body) = buf.get(4..4 + len) else { return Ok(None) };
    let msg = serde_json::from_slice(body).map_err(|e| FrameError::Decode(e.to_string()))?;
    Ok(Some((msg, 4 + len)))
}

pub async fn write<T: Serialize>(
    w: &mut dyn ChunkWriter,
    msg: &T,
    max: usize,
) -> Result<(), FrameError> {
    let frame = encode(msg, max)?;
    w.write_chunks(&[Chunk::Bytes(frame.into())]).await?;
    Ok(())
}

/// Reads one frame; `Ok(None)` on a clean end of stream between frames.
pub async fn read<T: DeserializeOwned, R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    max: usize,
) -> Result<Option<T>, FrameError> {
    let mut head = [0u8; 4];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(head) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let Some(body) = net_model::read_frame_body(r, len).await? else {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
    };
    serde_json::from_slice(&body).map(Some).map_err(|e| FrameError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster::raft::{Entry, Message, MessageBody};
    use proptest::prelude::*;

    fn msg(term: u64, data: Vec<u8>) -> Message {
        Message {
            from: 1,
            to: 2,
            term,
            body: MessageBody::AppendEntries {
                prev_log_index: 0,
                prev_log_term: 0,
                entries: vec![Entry { term, index: 1, data }],
                leader_commit: 0,
            },
        }
    }

    proptest! {
        /// Any split of a stream of frames decodes to the same messages; no prefix decodes wrongly.
        #[test]
        fn round_trip_any_prefix(terms in proptest::collection::vec((0u64..1000, proptest::collection::vec(any::<u8>(), 0..64)), 1..5)) {
            let msgs: Vec<Message> = terms.into_iter().map(|(t, d)| msg(t, d)).collect();
            let mut stream = Vec::new();
            for m in &msgs {
                stream.extend(encode(m, FRAME_BYTES_MAX).unwrap());
            }
            let mut pos = 0;
            for m in &msgs {
                let (got, used): (Message, usize) = decode(&stream[pos..], FRAME_BYTES_MAX).unwrap().unwrap();
                prop_assert_eq!(&got, m);
                for cut in 0..used {
                    prop_assert!(decode::<Message>(&stream[pos..pos + cut], FRAME_BYTES_MAX).unwrap().is_none());
                }
                pos += used;
            }
            prop_assert_eq!(pos, stream.len());
        }

        /// Garbage never panics: it is an error, or a request for more bytes.
        #[test]
        fn garbage_is_an_error_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = decode::<Message>(&bytes, 64);
        }
    }

    #[test]
    fn oversized_frames_are_refused_before_allocation() {
        let f = encode(&msg(1, vec![0; 100]), FRAME_BYTES_MAX).unwrap();
        assert!(matches!(decode::<Message>(&f, 10), Err(FrameError::TooLarge { max: 10, .. })));
        assert!(matches!(encode(&msg(1, vec![0; 100]), 10), Err(FrameError::TooLarge { .. })));
        // A length of 4 GiB is refused from the header alone.
        assert!(matches!(
            decode::<Message>(&[0xff, 0xff, 0xff, 0xff], FRAME_BYTES_MAX),
            Err(FrameError::TooLarge { .. })
        ));
    }
}

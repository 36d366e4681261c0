//! The network seen by the broker.
//!
//! - The transport interface: [`Network`] (bind, connect), [`Listener`] (accept) and a connection
//!   split into a reader (any `tokio::io::AsyncRead`, which is real tokio's trait in both worlds)
//!   and a [`ChunkWriter`] that writes a response given as [`Chunk`]s — bytes, or file regions sent
//!   without a user-space copy (`sendfile(2)` for real, a page-cache read in the model).
//! - [`process`] (real world only): process-wide allocator settings of the real binaries.
//! - [`tcp`] (real world only): tokio TCP with `TCP_NODELAY`, one write per frame, `sendfile(2)`.
//! - The simulated transport (NIC, link, partitions) implements the same traits in a later step.
//!
//! Every trait is object-safe so the broker holds `Arc<dyn Network>` and never knows the world.

use std::fmt;
use std::io;

use async_trait::async_trait;
use bytes::Bytes;
use disk_model::FileRegion;

pub mod cpu;
#[cfg(not(madsim))]
pub mod process;
pub mod profile;
pub mod sim;
#[cfg(not(madsim))]
pub mod tcp;

pub use cpu::{Codec, CostHook, CpuProfile, PartyCpu, RealCpu, SimCpu, Threads, Work};
pub use sim::{SimNet, SimNetwork};

/// One piece of an outgoing message.
#[derive(Clone, Debug)]
pub enum Chunk {
    Bytes(Bytes),
    /// A byte range of a file, sent zero-copy where the transport can.
    File(FileRegion),
}

impl Chunk {
    pub fn len(&self) -> u64 {
        match self {
            Chunk::Bytes(b) => b.len() as u64,
            Chunk::File(r) => r.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Total length of a list of chunks.
pub fn chunks_len(chunks: &[Chunk]) -> u64 {
    chunks.iter().map(Chunk::len).sum()
}

/// The read half of a connection.
pub type Reader = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

/// Largest step a frame's buffer grows by while its bytes arrive ([`read_frame_body`]).
pub const FRAME_GROWTH_BYTES_MAX: usize = 1 << 20;

/// What a frame's first buffer holds beyond [`FRAME_GROWTH_BYTES_MAX`]: room for the headers
/// around a 1 MiB payload (a Fetch answering 1 MiB of one partition, Kafka's default
/// `max.partition.fetch.bytes` and `replica.fetch.max.bytes`), so that frame is read into one
/// buffer. Without it, its last few hundred bytes grew the buffer to 2 MiB and copied the first
/// MiB (4 % of a 10 s bench cut's instructions: the run's end reads every replica's log so).
pub const FRAME_HEADROOM_BYTES: usize = 64 << 10;

/// Reads the `len` bytes of a frame's body into a buffer of their own, never zero-filled first:
/// bytes go into the buffer's spare capacity, which grows as they arrive (the first buffer holds
/// at most [`FRAME_GROWTH_BYTES_MAX`] + [`FRAME_HEADROOM_BYTES`], each later step at most
/// [`FRAME_GROWTH_BYTES_MAX`]), so a peer that announces a large frame and then trickles costs
/// memory only for what it sent; nothing past the frame's end is read (the next frame stays in
/// the stream). `Ok(None)`: the stream ended inside the frame.
pub async fn read_frame_body<R>(reader: &mut R, len: usize) -> io::Result<Option<bytes::BytesMut>>
where
    R: tokio::io::AsyncRead + Unpin + ?Sized,
{
    use tokio::io::AsyncReadExt;
    let mut frame =
        bytes::BytesMut::with_capacity(len.min(FRAME_GROWTH_BYTES_MAX + FRAME_HEADROOM_BYTES));
    while frame.len() < len {
        let want = len - frame.len();
        frame.reserve(want.min(FRAME_GROWTH_BYTES_MAX));
        if (&mut *reader).take(want as u64).read_buf(&mut frame).await? == 0 {
            return Ok(None);
        }
    }
    assert_eq!(frame.len(), len, "read past the frame's end");
    Ok(Some(frame))
}

/// The write half of a connection: whole messages, as chunks.
#[async_trait]
pub trait ChunkWriter: Send {
    /// Writes every chunk in order; returns when all are handed to the transport.
    async fn write_chunks(&mut self, chunks: &[Chunk]) -> io::Result<()>;
    /// Closes the write direction (FIN); later writes fail.
    async fn shutdown(&mut self) -> io::Result<()>;
}

/// An accepted or connected stream, split.
pub struct Connection {
    pub reader: Reader,
    pub writer: Box<dyn ChunkWriter>,
    /// The peer's address, for log lines.
    pub peer: String,
    /// The local address.
    pub local: String,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection").field("peer", &self.peer).field("local", &self.local).finish()
    }
}

#[async_trait]
pub trait Listener: Send + Sync {
    async fn accept(&self) -> io::Result<Connection>;
    /// The bound address (`host:port`), with the real port when bound to port 0.
    fn local_addr(&self) -> io::Result<String>;
}

#[async_trait]
pub trait Network: Send + Sync + fmt::Debug {
    /// Listens on `addr` (`host:port`).
    async fn bind(&self, addr: &str) -> io::Result<Box<dyn Listener>>;
    async fn connect(&self, addr: &str) -> io::Result<Connection>;
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::read_frame_body;

    #[tokio::test]
    async fn a_frame_body_is_read_to_its_end_and_no_further() {
        let stream = [b"hello".as_slice(), b"world!".as_slice()].concat();
        let mut r = stream.as_slice();
        let first = read_frame_body(&mut r, 5).await.unwrap().unwrap();
        assert_eq!(&first[..], b"hello");
        assert_eq!(r, b"world!", "the next frame stays in the stream");
        // Past several growth steps, whose reserves may leave capacity beyond the frame's end.
        let len = (3 << 20) + 100;
        let big = [vec![7u8; len], b"next".to_vec()].concat();
        let mut r = big.as_slice();
        let all = read_frame_body(&mut r, len).await.unwrap().unwrap();
        assert_eq!(all.len(), len);
        assert!(all.iter().all(|&b| b == 7));
        assert_eq!(r, b"next", "the next frame stays in the stream");
        // A 1 MiB payload and its headers: one buffer, never grown (growing copies).
        let len = (1 << 20) + 900;
        let one = [vec![5u8; len], b"next".to_vec()].concat();
        let mut r = one.as_slice();
        let all = read_frame_body(&mut r, len).await.unwrap().unwrap();
        assert_eq!((all.len(), all.capacity()), (len, len), "read into its first buffer");
        assert_eq!(r, b"next");
        let mut short = b"abc".as_slice();
        assert!(read_frame_body(&mut short, 4).await.unwrap().is_none(), "ended inside it");
        assert!(read_frame_body(&mut b"".as_slice(), 0).await.unwrap().unwrap().is_empty());
    }
}

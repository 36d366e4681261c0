//! The real transport: tokio TCP, `TCP_NODELAY`, one write per frame, file regions by `sendfile(2)`.
//!
//! A message's byte chunks that precede a file region are coalesced into one buffer and written
//! with one `write`, so a response without file regions is a single write. File regions go from
//! the page cache straight to the socket with `sendfile(2)` on the socket's fd; partial sends are
//! resumed and `EAGAIN` waits for the socket's writable readiness. With `zero_copy` off (or a file
//! without an OS descriptor) regions are read into memory and written — the copy path, kept for
//! comparison.

use std::io;
use std::os::unix::io::AsRawFd;

use async_trait::async_trait;
use bytes::BytesMut;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};

use crate::{Chunk, ChunkWriter, Connection, Listener, Network};
use disk_model::FileRegion;

/// Largest single `sendfile` call (Linux caps a call at 0x7ffff000 bytes anyway).
const SENDFILE_MAX: u64 = 0x7fff_f000;

#[derive(Debug, Clone)]
pub struct TcpNetwork {
    /// Send file regions with `sendfile(2)` (true) or read + write (false).
    pub zero_copy: bool,
}

impl Default for TcpNetwork {
    fn default() -> Self {
        Self { zero_copy: true }
    }
}

impl TcpNetwork {
    pub fn new(zero_copy: bool) -> Self {
        Self { zero_copy }
    }

    fn wrap(&self, stream: TcpStream) -> io::Result<Connection> {
        stream.set_nodelay(true)?;
        let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
        let local = stream.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
        let (r, w) = stream.into_split();
        Ok(Connection {
            reader: Box::new(r),
            writer: Box::new(TcpWriter {
                half: w,
                zero_copy: self.zero_copy,
                buf: BytesMut::new(),
            }),
            peer,
            local,
        })
    }
}

#[async_trait]
impl Network for TcpNetwork {
    async fn bind(&self, addr: &str) -> io::Result<Box<dyn Listener>> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Box::new(TcpListen { listener, net: self.clone() }))
    }

    async fn connect(&self, addr: &str) -> io::Result<Connection> {
        let stream = TcpStream::connect(addr).await?;
        self.wrap(stream)
    }
}

struct TcpListen {
    listener: TcpListener,
    net: TcpNetwork,
}

#[async_trait]
impl Listener for TcpListen {
    async fn accept(&self) -> io::Result<Connection> {
        let (stream, _) = self.listener.accept().await?;
        self.net.wrap(stream)
    }

    fn local_addr(&self) -> io::Result<String> {
        Ok(self.listener.local_addr()?.to_string())
    }
}

struct TcpWriter {
    half: OwnedWriteHalf,
    zero_copy: bool,
    /// Coalescing buffer for byte chunks, kept between messages to reuse its allocation.
    buf: BytesMut,
}

impl TcpWriter {
    async fn flush_buf(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.half.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Writes the coalescing buffer with `send(MSG_MORE)`: more data of this frame follows.
    async fn flush_buf_more(&mut self) -> io::Result<()> {
        let stream: &TcpStream = self.half.as_ref();
        let fd = stream.as_raw_fd();
        let mut done = 0;
        while done < self.buf.len() {
            stream.writable().await?;
            let rest = &self.buf[done..];
            let r = stream.try_io(Interest::WRITABLE, || {
                // SAFETY: `rest` is a valid slice for the duration of the call; `fd` is open.
                let n = unsafe {
                    libc::send(
                        fd,
                        rest.as_ptr().cast(),
                        rest.len(),
                        libc::MSG_MORE | libc::MSG_NOSIGNAL,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match r {
                Ok(n) => done += n,
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.buf.clear();
        Ok(())
    }

    async fn send_region(&mut self, region: &FileRegion) -> io::Result<()> {
        let file_fd = match region.file.raw_fd() {
            Some(fd) if self.zero_copy => fd,
            _ => {
                let bytes = region.read().await?;
                return self.half.write_all(&bytes).await;
            }
        };
        let stream: &TcpStream = self.half.as_ref();
        let sock_fd = stream.as_raw_fd();
        let mut offset = libc::off_t::try_from(region.pos)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset too large"))?;
        let mut remaining = region.len;
        while remaining > 0 {
            stream.writable().await?;
            let want = remaining.min(SENDFILE_MAX) as usize;
            let r = stream.try_io(Interest::WRITABLE, || {
                // SAFETY: both fds are open for the duration of the call (the file is kept alive by
                // `region`, the socket by `self`); `offset` is a valid pointer to an off_t.
                let n = unsafe { libc::sendfile(sock_fd, file_fd, &mut offset, want) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as u64)
                }
            });
            match r {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("sendfile: file ended {remaining} bytes before the region's end"),
                    ))
                }
                Ok(n) => remaining -= n.min(remaining),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ChunkWriter for TcpWriter {
    async fn write_chunks(&mut self, chunks: &[Chunk]) -> io::Result<()> {
        for chunk in chunks {
            match chunk {
                Chunk::Bytes(b) => self.buf.extend_from_slice(b),
                Chunk::File(region) => {
                    if region.len == 0 {
                        continue;
                    }
                    if !self.zero_copy || region.file.raw_fd().is_none() {
                        // Copy path: the region joins the one buffer, one write per frame.
                        let bytes = region.read().await?;
                        self.buf.extend_from_slice(&bytes);
                        continue;
                    }
                    // The bytes before the region leave with MSG_MORE, so the kernel packs them
                    // with the region's first bytes instead of sending a short segment.
                    self.flush_buf_more().await?;
                    self.send_region(region).await?;
                }
            }
        }
        self.flush_buf().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.half.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use disk_model::{OpenMode, OsStorage, Storage};
    use std::path::Path;
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;

    async fn round_trip(zero_copy: bool) {
        let dir = tempfile::tempdir().unwrap();
        let storage = OsStorage::new(dir.path()).unwrap();
        let file = storage.open(Path::new("f"), OpenMode::OpenOrCreate).await.unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        file.append(&data).await.unwrap();
        let net = TcpNetwork::new(zero_copy);
        let listener = net.bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut c = TcpNetwork::default().connect(&addr).await.unwrap();
            let mut got = Vec::new();
            c.reader.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut conn = listener.accept().await.unwrap();
        let region = FileRegion { file: Arc::clone(&file), pos: 10, len: 2_999_000 };
        let chunks = [
            Chunk::Bytes(bytes::Bytes::from_static(b"head")),
            Chunk::File(region),
            Chunk::Bytes(bytes::Bytes::from_static(b"tail")),
        ];
        conn.writer.write_chunks(&chunks).await.unwrap();
        conn.writer.shutdown().await.unwrap();
        drop(conn);
        let got = client.await.unwrap();
        let mut want = b"head".to_vec();
        want.extend_from_slice(&data[10..10 + 2_999_000]);
        want.extend_from_slice(b"tail");
        assert_eq!(got.len(), want.len());
        assert!(got == want);
    }

    #[tokio::test]
    async fn sendfile_round_trip() {
        round_trip(true).await;
    }

    #[tokio::test]
    async fn copy_path_round_trip() {
        round_trip(false).await;
    }
}

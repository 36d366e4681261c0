//! A tiny HTTP responder for Prometheus scrapes (`GET /metrics`, any path answers), over the
//! transport interface. One request per connection, then close.

use std::sync::Arc;

use bytes::Bytes;
use net_model::{Chunk, Listener};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use crate::broker::Broker;

pub async fn run(
    broker: Arc<Broker>,
    listener: Box<dyn Listener>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            a = listener.accept() => a,
        };
        let Ok(mut conn) = accepted else { continue };
        let b = broker.clone();
        tokio::spawn(async move {
            // Read the request head (bounded), ignore it: everything is /metrics.
            let mut buf = vec![0u8; 8192];
            let mut got = 0;
            while got < buf.len() {
                match conn.reader.read(&mut buf[got..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        got += n;
                        if buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                }
            }
            let (parts, bytes) = b.log_stats().await;
            let mut body = b.metrics.render(parts, bytes);
            body.push_str(&b.metrics.render_cluster(&b.cluster_gauges()));
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn
                .writer
                .write_chunks(&[Chunk::Bytes(Bytes::from(head)), Chunk::Bytes(Bytes::from(body))])
                .await;
            let _ = conn.writer.shutdown().await;
        });
    }
}

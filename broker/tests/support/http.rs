//! One HTTP/1.1 request on a fresh connection (real world only), for the admin and metrics
//! endpoints.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::client::TIMEOUT;

/// `method path` with `headers` (each `Name: value`), `body` and its length, `Connection: close`:
/// (status, body).
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[String],
    body: &str,
) -> (u16, String) {
    let mut sock = TcpStream::connect(addr).await.expect("connects");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    head.push_str("Connection: close\r\n\r\n");
    sock.write_all(head.as_bytes()).await.expect("writes");
    sock.write_all(body.as_bytes()).await.expect("writes");
    let mut raw = Vec::new();
    tokio::time::timeout(TIMEOUT, sock.read_to_end(&mut raw))
        .await
        .expect("an answer in time")
        .expect("reads");
    let text = String::from_utf8(raw).expect("UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head.split(' ').nth(1).expect("a status").parse().expect("a number");
    (status, body.to_string())
}

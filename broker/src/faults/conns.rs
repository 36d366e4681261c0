//! Connection faults (the admin API's Toxiproxy-like half): a registry of the live client
//! connections, each of which can be reset (closed now, or after lingering silent for a while: a
//! slow close) or held half-open (still open, neither read nor answered, for a while).
//!
//! Cost when unused: one relaxed atomic load per request (the hold check) and one per connection
//! for the client id, learned from its first request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

/// A hold or a linger, at most (10 minutes).
pub const HOLD_MS_MAX: u64 = 600_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ms() -> u64 {
    crate::now_ms().max(0) as u64
}

#[derive(Debug)]
struct Shared {
    peer: String,
    client_id: OnceLock<Option<String>>,
    /// No request is read or answered before this time (ms since the epoch); 0: none.
    hold_until_ms: AtomicU64,
    /// `Some(linger_ms)`: close, after staying silent that long.
    kill: watch::Sender<Option<u64>>,
}

/// One live connection, as listed by the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnInfo {
    pub id: u64,
    pub peer: String,
    pub client_id: Option<String>,
}

/// The live client connections.
#[derive(Debug, Default)]
pub struct Connections {
    next_id: AtomicU64,
    live: Mutex<BTreeMap<u64, Arc<Shared>>>,
}

/// Which connections an order applies to: all, or those of one client id.
fn selected(s: &Shared, client_id: Option<&str>) -> bool {
    client_id.is_none_or(|want| s.client_id.get().and_then(|c| c.as_deref()) == Some(want))
}

impl Connections {
    /// Registers a connection; it leaves the registry when the handle drops.
    pub fn register(self: &Arc<Self>, peer: &str) -> ConnHandle {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (kill, killed) = watch::channel(None);
        let shared = Arc::new(Shared {
            peer: peer.to_string(),
            client_id: OnceLock::new(),
            hold_until_ms: AtomicU64::new(0),
            kill,
        });
        lock(&self.live).insert(id, shared.clone());
        ConnHandle { id, shared, killed, registry: self.clone() }
    }

    /// The live connections, oldest first.
    pub fn list(&self) -> Vec<ConnInfo> {
        lock(&self.live)
            .iter()
            .map(|(id, s)| ConnInfo {
                id: *id,
                peer: s.peer.clone(),
                client_id: s.client_id.get().cloned().flatten(),
            })
            .collect()
    }

    /// Closes the selected connections, each after `linger_ms` of silence; returns how many.
    pub fn reset(&self, client_id: Option<&str>, linger_ms: u64) -> usize {
        let live = lock(&self.live);
        let chosen: Vec<_> = live.values().filter(|s| selected(s, client_id)).collect();
        for s in &chosen {
            s.kill.send_replace(Some(linger_ms.min(HOLD_MS_MAX)));
        }
        chosen.len()
    }

    /// Holds the selected connections half-open for `ms`: open, but nothing read or answered.
    pub fn hold(&self, client_id: Option<&str>, ms: u64) -> usize {
        let until = now_ms() + ms.min(HOLD_MS_MAX);
        let live = lock(&self.live);
        let chosen: Vec<_> = live.values().filter(|s| selected(s, client_id)).collect();
        for s in &chosen {
            s.hold_until_ms.store(until, Ordering::Relaxed);
        }
        chosen.len()
    }
}

/// A connection's end of the registry.
#[derive(Debug)]
pub struct ConnHandle {
    id: u64,
    shared: Arc<Shared>,
    killed: watch::Receiver<Option<u64>>,
    registry: Arc<Connections>,
}

/// The admin API closed the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reset;

impl ConnHandle {
    /// Resolves when the connection is ordered to close (then [`ConnHandle::linger`]).
    pub async fn killed(&mut self) {
        if self.killed.wait_for(Option::is_some).await.is_err() {
            std::future::pending::<()>().await; // the registry is gone: no order will come
        }
    }

    /// Stays silent for the close order's linger.
    pub async fn linger(&self) {
        let linger_ms = self.killed.borrow().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(linger_ms)).await;
    }

    /// Before handling or answering: learns the client id from the connection's first request,
    /// waits out a hold; `Err` when the connection is to close.
    pub async fn gate(&mut self, frame: Option<&[u8]>) -> Result<(), Reset> {
        if let Some(f) = frame {
            if self.shared.client_id.get().is_none() {
                let _ = self.shared.client_id.set(client_id(f));
            }
        }
        loop {
            if self.killed.borrow().is_some() {
                self.linger().await;
                return Err(Reset);
            }
            let until = self.shared.hold_until_ms.load(Ordering::Relaxed);
            let now = now_ms();
            if until <= now {
                return Ok(());
            }
            tokio::select! {
                biased;
                _ = self.killed.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(until - now)) => {}
            }
        }
    }
}

impl Drop for ConnHandle {
    fn drop(&mut self) {
        lock(&self.registry.live).remove(&self.id);
    }
}

/// The client id of a request frame (header v1+: api key, version, correlation id, then a
/// nullable int16-length string); `None` when absent or malformed.
pub fn client_id(frame: &[u8]) -> Option<String> {
    let len = i16::from_be_bytes([*frame.get(8)?, *frame.get(9)?]);
    let len = usize::try_from(len).ok()?;
    let bytes = frame.get(10..10 + len)?;
    std::str::from_utf8(bytes).ok().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_id_is_read_from_the_header() {
        let mut f = vec![0, 0, 0, 9, 0, 0, 0, 42, 0, 3];
        f.extend_from_slice(b"app");
        assert_eq!(client_id(&f).as_deref(), Some("app"));
        assert_eq!(client_id(&[0, 0, 0, 9, 0, 0, 0, 42, 0xff, 0xff]), None, "null");
        assert_eq!(client_id(&[0, 0, 0, 9, 0, 0, 0, 42, 0, 9, b'a']), None, "short");
    }

    #[test]
    fn reset_selects_by_client_id_and_handles_leave_the_registry() {
        let reg = Arc::new(Connections::default());
        let a = reg.register("p1");
        let _ = a.shared.client_id.set(Some("a".into()));
        let b = reg.register("p2");
        let _ = b.shared.client_id.set(Some("b".into()));
        assert_eq!(reg.reset(Some("a"), 0), 1);
        assert!(a.killed.borrow().is_some());
        assert!(b.killed.borrow().is_none(), "another client's connection is untouched");
        assert_eq!(reg.hold(None, 10), 2);
        drop(a);
        assert_eq!(reg.list().iter().map(|c| c.id).collect::<Vec<_>>(), [1]);
    }
}

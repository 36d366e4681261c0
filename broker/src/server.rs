//! The listener: accepts connections and runs one task per connection until shutdown. At most
//! `max.connections` are served at once: one over the limit is closed as soon as it is accepted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use net_model::Listener;
use tokio::sync::watch;

use crate::broker::Broker;
use crate::connection;
use crate::metrics::Metrics;

/// Accepts until `shutdown` turns true; then waits for the connection tasks to finish.
pub async fn run(
    broker: Arc<Broker>,
    listener: Box<dyn Listener>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tasks = Vec::new();
    let live = Arc::new(AtomicUsize::new(0));
    let mut refused: u64 = 0;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let accepted = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok(mut conn)
                if live.load(Ordering::Acquire) >= broker.config.limits.max_connections =>
            {
                refused += 1;
                // Logged at 1, 2, 4, 8, ... refusals: a connection flood cannot flood the log.
                if refused.is_power_of_two() {
                    let max = broker.config.limits.max_connections;
                    tracing::warn!(peer = %conn.peer, max, refused, "refusing connection: max.connections reached");
                }
                let _ = conn.writer.shutdown().await;
            }
            Ok(conn) => {
                let slot = LiveSlot::take(&live);
                Metrics::add(&broker.metrics.connections_accepted, 1);
                tracing::debug!(peer = %conn.peer, "accepted connection");
                let b = broker.clone();
                let rx = shutdown.clone();
                tasks.push(tokio::spawn(async move {
                    connection::serve(b, conn, rx).await;
                    drop(slot);
                }));
                tasks.retain(|t| !t.is_finished());
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// One live connection counted against `max.connections` until dropped.
struct LiveSlot(Arc<AtomicUsize>);

impl LiveSlot {
    fn take(live: &Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::AcqRel);
        Self(live.clone())
    }
}

impl Drop for LiveSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

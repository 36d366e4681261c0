//! The listener: accepts connections and runs one task per connection until shutdown.

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
            Ok(conn) => {
                Metrics::add(&broker.metrics.connections_accepted, 1);
                tracing::debug!(peer = %conn.peer, "accepted connection");
                let b = broker.clone();
                let rx = shutdown.clone();
                tasks.push(tokio::spawn(async move {
                    connection::serve(b, conn, rx).await;
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

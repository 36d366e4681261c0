//! Periodic broker work, as Kafka's log manager schedules it: `flush.ms` checks every
//! `log.flush.scheduler.interval.ms`, retention every `log.retention.check.interval.ms`,
//! recovery-point checkpoints every `log.flush.offset.checkpoint.interval.ms`, the log cleaner
//! every `log.cleaner.backoff.ms` (when `log.cleaner.enable`), retired partition directories'
//! removal (`log.segment.delete.delay.ms` after retirement). Runs in either world
//! (tokio time: real or virtual).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::broker::Broker;

/// Runs until `shutdown` turns true.
pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    // The group coordinator spawns its timer task at the first use of a group.
    broker.groups.attach(Arc::downgrade(&broker), shutdown.clone());
    let c = &broker.config;
    let tick = Duration::from_millis(c.flush_scheduler_interval_ms.clamp(10, 60_000) as u64);
    let (mut since_retention, mut since_checkpoint, mut since_cleaner) = (0i64, 0i64, 0i64);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        let ms = tick.as_millis() as i64;
        since_retention += ms;
        since_checkpoint += ms;
        since_cleaner += ms;
        // Retired (`-delete`) partition directories whose delay passed.
        broker.remove_retired_dirs().await;
        if let Err(e) = broker.run_flush().await {
            tracing::error!(error = %e, "flush failed");
        }
        if since_retention >= c.retention_check_interval_ms {
            since_retention = 0;
            match broker.run_retention().await {
                Ok(n) if n > 0 => tracing::info!(segments = n, "retention deleted segments"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "retention failed"),
            }
        }
        if c.cleaner_enable && since_cleaner >= c.cleaner_backoff_ms {
            since_cleaner = 0;
            if let Err(e) = broker.run_cleaner().await {
                tracing::error!(error = %e, "log cleaner failed");
            }
        }
        if since_checkpoint >= c.checkpoint_interval_ms {
            since_checkpoint = 0;
            if let Err(e) = broker.run_checkpoint().await {
                tracing::error!(error = %e, "checkpoint failed");
            }
        }
    }
}

//! The depth and consumers of every worker's queue, read every few seconds for
//! `/api/workers` and `/metrics` (a passive declare each: no management plugin needed).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::broker::{Outbox, QueueStats};
use crate::supervisor::WorkersSnapshot;

/// How often the workers' queue depths are read.
const POLL: Duration = Duration::from_secs(5);

/// Reads the queues of the workers the supervisor reports until `stop`.
pub async fn poll(
    outbox: Arc<Outbox>,
    workers: watch::Receiver<WorkersSnapshot>,
    stats: watch::Sender<BTreeMap<String, QueueStats>>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let queues: Vec<String> = workers.borrow().values().map(|w| w.queue.clone()).collect();
        match outbox.queue_stats(&queues).await {
            Ok(now) => {
                stats.send_replace(now);
            }
            Err(e) => {
                warn!("cannot read queue depths: {e}");
                stats.send_replace(BTreeMap::new());
            }
        }
    }
}

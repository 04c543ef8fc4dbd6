//! Keeps the scheduler on the jobs of the newest configuration: each snapshot the watcher
//! hands out is applied once; when the store cannot take it, again each second until it can.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::config::Snapshot;
use crate::scheduler::Scheduler;

/// How soon a snapshot the store could not take is applied again.
const RETRY: Duration = Duration::from_secs(1);

/// Applies a snapshot's jobs; false when the store could not take them.
pub async fn apply(scheduler: &Arc<Scheduler>, snapshot: &Snapshot) -> bool {
    let jobs = &snapshot.jobs;
    match scheduler.sync(jobs.valid.clone(), &jobs.broken()).await {
        Ok(()) => true,
        Err(e) => {
            error!("cannot record the jobs in the store (retrying): {e}");
            false
        }
    }
}

/// Applies every later snapshot until `stop`; `applied` says whether the current one is in.
pub async fn keep(
    scheduler: Arc<Scheduler>,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    mut applied: bool,
    stop: CancellationToken,
) {
    let mut retry = tokio::time::interval(RETRY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = snapshots.changed() => {
                if changed.is_err() {
                    return;
                }
                applied = false;
            }
            _ = retry.tick(), if !applied => {}
        }
        if !applied {
            let snapshot = snapshots.borrow_and_update().clone();
            applied = apply(&scheduler, &snapshot).await;
        }
    }
}

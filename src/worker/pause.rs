//! Obeying a pause (SPEC 4.5). The pause lives in the store, so that every replica on every
//! host, and one started later, sees it; each replica polls it, which keeps within the
//! 2-second target without a control channel of its own.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::store::Store;

/// How often a replica reads the paused workers: half the 2 seconds SPEC 4.5 allows.
pub const POLL: Duration = Duration::from_secs(1);

/// Whether `worker` is paused now, kept up to date from the store every `POLL` until the
/// receiver is dropped. The first value is read before returning, so a replica started while
/// its worker is paused never consumes. A store that cannot be read keeps the last state (a
/// worker is not resumed, nor paused, by an outage).
pub async fn watch(store: Arc<dyn Store>, worker: String) -> watch::Receiver<bool> {
    let first = read(store.as_ref(), &worker).await.unwrap_or(false);
    let (tx, rx) = watch::channel(first);
    tokio::spawn(poll(store, worker, tx));
    rx
}

async fn poll(store: Arc<dyn Store>, worker: String, tx: watch::Sender<bool>) {
    let mut ticks = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = tx.closed() => return,
        }
        if let Some(paused) = read(store.as_ref(), &worker).await {
            tx.send_if_modified(|state| std::mem::replace(state, paused) != paused);
        }
    }
}

/// The worker's pause as the store has it; None (and a warning) when it cannot be read.
async fn read(store: &dyn Store, worker: &str) -> Option<bool> {
    match store.paused_workers().await {
        Ok(paused) => Some(paused.iter().any(|name| name == worker)),
        Err(e) => {
            warn!("cannot read whether the worker is paused: {e}");
            None
        }
    }
}

/// Logs a change of state, for the operator watching a replica's log.
pub fn announce(paused: bool) {
    match paused {
        true => info!("paused: consumer cancelled, messages in hand finish"),
        false => info!("resumed"),
    }
}

//! Replaying parked messages (SPEC 7): the message goes back to its worker's queue with its
//! attempts reset, and leaves the store only after the broker confirmed the publish, so a
//! failure between the two leaves it parked (at worst it is then replayed twice).

use crate::broker::{BrokerError, Outbox, QueueRefusal};
use crate::message::headers;
use crate::store::{Store, StoreError};

/// Parked messages are replayed in pages of this many.
const PAGE: u32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no parked message {0:?}")]
    NotFound(String),
    /// RabbitMQ refused the queue (it closed the channel with a reply code), and will until
    /// the queue changes.
    #[error(transparent)]
    Refused(QueueRefusal),
    /// The publish failed otherwise: RabbitMQ unreachable, a nack, no confirm.
    #[error("cannot publish to {queue}: {error}")]
    Publish { queue: String, error: BrokerError },
    /// The stored body cannot be turned back into bytes (a corrupt entry).
    #[error("cannot replay {id:?}: {reason}")]
    Body { id: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ReplayError {
    fn publish(queue: &str, error: BrokerError) -> ReplayError {
        match error.refusal_of(queue) {
            Some(refusal) => ReplayError::Refused(refusal),
            None => ReplayError::Publish {
                queue: queue.to_string(),
                error,
            },
        }
    }
}

/// What a bulk replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Replayed {
    pub replayed: u64,
    pub failed: u64,
}

/// Replays one parked message.
pub async fn replay_one(store: &dyn Store, outbox: &Outbox, id: &str) -> Result<(), ReplayError> {
    let parked = store
        .failed(id)
        .await?
        .ok_or_else(|| ReplayError::NotFound(id.to_string()))?;
    let body = parked.body.to_bytes().map_err(|reason| ReplayError::Body {
        id: id.to_string(),
        reason,
    })?;
    // The stages it had passed go with it, so its record is placed where it was parked.
    let mut headers = std::collections::BTreeMap::new();
    if parked.stages_passed > 0 {
        headers.insert(headers::STAGES, parked.stages_passed.to_string());
    }
    outbox
        .publish_with(&parked.queue, body, &headers)
        .await
        .map_err(|e| ReplayError::publish(&parked.queue, e))?;
    store.delete_failed(id, Some(parked.last_failed_at)).await?;
    tracing::info!(id, queue = %parked.queue, executionId = parked.execution_id.as_deref().unwrap_or("-"), "replayed");
    Ok(())
}

/// Replays every parked message of `worker` (or of all workers), calling `progress` with
/// (done, total) after each. Messages that fail to replay stay parked and are counted.
pub async fn replay_all(
    store: &dyn Store,
    outbox: &Outbox,
    worker: Option<&str>,
    mut progress: impl FnMut(u64, u64),
) -> Result<Replayed, ReplayError> {
    let mut done = Replayed::default();
    // Only the messages parked when the replay began: one that fails again at once is
    // parked anew and must not be replayed round and round.
    let mut total = None;
    loop {
        // Replayed messages leave the store: the next page starts after those that failed.
        let page = store.list_failed(worker, PAGE, done.failed).await?;
        let total = *total.get_or_insert(page.total);
        if page.items.is_empty() || done.replayed + done.failed >= total {
            return Ok(done);
        }
        let budget = (total - done.replayed - done.failed) as usize;
        for parked in page.items.into_iter().take(budget) {
            match replay_one(store, outbox, &parked.id).await {
                Ok(()) => done.replayed += 1,
                Err(ReplayError::NotFound(_)) => {} // replayed or deleted by someone else meanwhile
                Err(e) => {
                    tracing::warn!(id = %parked.id, "replay failed: {e}");
                    done.failed += 1;
                }
            }
            progress(done.replayed + done.failed, total);
        }
    }
}

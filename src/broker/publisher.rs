//! Publishing with publisher confirms. amqprs reports confirms through a channel callback;
//! [`Publisher`] turns them back into one awaitable result per message, so many publishes
//! can be in flight at once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use amqprs::channel::{BasicPublishArguments, Channel, ConfirmSelectArguments};
use amqprs::connection::Connection;
use amqprs::BasicProperties;
use tokio::sync::{oneshot, Mutex};

use super::{BrokerError, ChannelEvents, Refusal};

/// How long a publish waits for the broker's confirm before it counts as failed.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// Publishes on a channel in confirm mode and resolves each publish when the broker has
/// confirmed it (or refused it). Cloneable; clones share the channel.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
    pending: Arc<Mutex<Pending>>,
    refusal: Refusal,
    /// Set by [`Publisher::abandon`] once the session saw its connection go.
    abandoned: Arc<AtomicBool>,
}

/// Confirms awaited, by publish sequence number (1, 2, ... in publish order on the channel).
#[derive(Default)]
pub(super) struct Pending {
    next: u64,
    pub(super) waiters: BTreeMap<u64, oneshot::Sender<bool>>,
}

impl Pending {
    pub(super) fn settle(&mut self, tag: u64, multiple: bool, ok: bool) {
        let tags: Vec<u64> = if multiple {
            self.waiters.range(..=tag).map(|(t, _)| *t).collect()
        } else {
            vec![tag]
        };
        for t in tags {
            if let Some(waiter) = self.waiters.remove(&t) {
                let _ = waiter.send(ok);
            }
        }
    }
}

impl Publisher {
    pub async fn open(connection: &Connection) -> Result<Publisher, BrokerError> {
        let channel = connection.open_channel(None).await?;
        let pending = Arc::new(Mutex::new(Pending::default()));
        let refusal = Refusal::default();
        let events = ChannelEvents {
            confirms: Some(pending.clone()),
            ended: None,
            refusal: Some(refusal.clone()),
        };
        channel.register_callback(events).await?;
        channel
            .confirm_select(ConfirmSelectArguments::default())
            .await?;
        Ok(Publisher {
            channel,
            pending,
            refusal,
            abandoned: Arc::default(),
        })
    }

    /// The connection is lost: every publish waiting for its confirm fails now, and every
    /// later one at once. Without it a wait whose confirm went with the connection lasted
    /// `CONFIRM_TIMEOUT`, and its message held its execution's turn in the replica (the
    /// redelivery waits behind it) for that long.
    pub async fn abandon(&self) {
        self.abandoned.store(true, Ordering::Relaxed);
        // Dropping the senders ends the waits (as a closed channel does).
        self.pending.lock().await.waiters.clear();
    }

    pub fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Relaxed)
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Publishes `body` to `queue` (default exchange) and waits for the broker's confirm.
    pub async fn publish(
        &self,
        queue: &str,
        body: Vec<u8>,
        props: BasicProperties,
    ) -> Result<(), BrokerError> {
        let confirmed = {
            // The lock spans sequence assignment and the send so that sequence numbers match
            // the order the broker sees the messages in.
            let mut pending = self.pending.lock().await;
            if self.abandoned() {
                return Err(BrokerError::Lost("the connection to RabbitMQ was lost"));
            }
            pending.next += 1;
            let seq = pending.next;
            let (tx, rx) = oneshot::channel();
            pending.waiters.insert(seq, tx);
            let args = BasicPublishArguments::new("", queue);
            if let Err(e) = self.channel.basic_publish(props, body, args).await {
                pending.waiters.remove(&seq);
                return Err(e.into());
            }
            rx
        };
        match tokio::time::timeout(CONFIRM_TIMEOUT, confirmed).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(BrokerError::Nacked),
            // RabbitMQ closed the channel (a publish it refused, 403 say): its reason when
            // it gave one. Every publish in flight on the channel hears it.
            Ok(Err(_)) => Err(self.refusal.reason().unwrap_or(BrokerError::ChannelClosed)),
            Err(_) => Err(BrokerError::ConfirmTimeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiple_confirms_settle_everything_up_to_the_tag() {
        let mut pending = Pending::default();
        let mut receivers = Vec::new();
        for tag in 1..=4 {
            let (tx, rx) = oneshot::channel();
            pending.waiters.insert(tag, tx);
            receivers.push(rx);
        }
        pending.settle(3, true, true);
        pending.settle(4, false, false);
        let got: Vec<Option<bool>> = receivers
            .into_iter()
            .map(|mut rx| rx.try_recv().ok())
            .collect();
        assert_eq!(got, [Some(true), Some(true), Some(true), Some(false)]);
        assert!(pending.waiters.is_empty());
    }
}

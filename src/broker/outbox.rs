//! The daemon's publisher (scheduler jobs, `POST /api/publish`, replay).

use std::collections::BTreeMap;
use std::sync::RwLock;

use amqprs::connection::Connection;
use tokio::sync::Mutex;

use super::{close, properties, BrokerError, Endpoint, Publisher, Requests};
use crate::config::{AmqpSettings, QueueType, QueueTypes};

/// A publisher for long-lived processes that publish now and then (the daemon's scheduler
/// and API): it connects on first use, declares each queue before publishing to it (of the
/// type its consumer gives it), and after any failure reconnects on the next publish
/// instead of staying broken.
pub struct Outbox {
    endpoint: Endpoint,
    name: String,
    /// The type of each queue, from the newest configuration.
    types: RwLock<QueueTypes>,
    line: Mutex<Option<Line>>,
}

/// An open connection with its publish channel, and a channel of its own for the declares:
/// RabbitMQ closes the channel of a declare it refuses (a queue that exists with other
/// arguments), and on the publish channel that would fail every publish in flight too.
struct Line {
    connection: Connection,
    publisher: Publisher,
    declares: Requests,
}

impl Outbox {
    pub fn new(settings: &AmqpSettings, types: QueueTypes, name: &str) -> Outbox {
        Outbox {
            endpoint: Endpoint::new(settings),
            name: name.to_string(),
            types: RwLock::new(types),
            line: Mutex::new(None),
        }
    }

    /// The queue types of a new configuration (the daemon calls it on each reload).
    pub fn set_queue_types(&self, types: QueueTypes) {
        *self.types.write().unwrap_or_else(|p| p.into_inner()) = types;
    }

    fn type_of(&self, queue: &str) -> QueueType {
        let types = self.types.read().unwrap_or_else(|p| p.into_inner());
        types.of(queue)
    }

    /// Publishes persistently to `queue` (declared durable first) and waits for the confirm.
    /// `Refused` when RabbitMQ closes a channel over it (the declare or the publish): the
    /// connection stays, and the next publish opens the channel again.
    pub async fn publish(&self, queue: &str, body: Vec<u8>) -> Result<(), BrokerError> {
        self.publish_with(queue, body, &BTreeMap::new()).await
    }

    /// [`Outbox::publish`] with dpsd's headers (`message::headers`) on the message.
    pub async fn publish_with(
        &self,
        queue: &str,
        body: Vec<u8>,
        headers: &BTreeMap<&str, String>,
    ) -> Result<(), BrokerError> {
        let publisher = self.publisher_for(queue).await?;
        let result = publisher.publish(queue, body, properties(headers)).await;
        if result
            .as_ref()
            .is_err_and(|e| !matches!(e, BrokerError::Refused { .. }))
        {
            // Whatever else broke, the next publish starts from a fresh connection.
            self.line.lock().await.take();
        }
        result
    }

    /// The broker's nodes as they may be shown: without their passwords.
    pub fn shown(&self) -> String {
        self.endpoint.shown()
    }

    /// Whether the broker can be reached now (connecting if need be); `Err` says why not,
    /// naming the nodes without their passwords.
    pub async fn check(&self) -> Result<(), BrokerError> {
        self.connected().await.map(drop)
    }

    /// The publisher, after declaring `queue` (durable, idempotent). Declared on every
    /// publish rather than once per connection: a queue deleted meanwhile is created again
    /// instead of the message going nowhere. The daemon publishes rarely; it costs little.
    async fn publisher_for(&self, queue: &str) -> Result<Publisher, BrokerError> {
        let mut line = self.connected().await?;
        let Some(open) = line.as_mut() else {
            return Err(BrokerError::Lost("no connection"));
        };
        match open
            .declares
            .declare_queue(queue, self.type_of(queue))
            .await
        {
            Ok(()) => Ok(open.publisher.clone()),
            // Only the declare channel closed; `connected` opens it again.
            Err(e @ BrokerError::Refused { .. }) => Err(e),
            Err(e) => {
                line.take();
                Err(e)
            }
        }
    }

    /// The line, connecting if there is none or its connection closed, and opening again
    /// a channel that RabbitMQ closed (on a refusal) on the connection that stayed open.
    async fn connected(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Line>>, BrokerError> {
        let mut line = self.line.lock().await;
        if let Some(open) = line.as_mut().filter(|l| l.connection.is_open()) {
            match reopen_closed_channels(open).await {
                Ok(()) => return Ok(line),
                Err(e) => {
                    line.take();
                    return Err(e);
                }
            }
        }
        let connection = self.endpoint.connect(&self.name).await?;
        let publisher = Publisher::open(&connection).await?;
        let declares = Requests::open(&connection).await?;
        *line = Some(Line {
            connection,
            publisher,
            declares,
        });
        Ok(line)
    }

    /// Closes the connection, if one is open.
    pub async fn close(&self) {
        if let Some(line) = self.line.lock().await.take() {
            let channels = vec![
                line.publisher.channel().clone(),
                line.declares.channel().clone(),
            ];
            close(channels, line.connection).await;
        }
    }
}

async fn reopen_closed_channels(line: &mut Line) -> Result<(), BrokerError> {
    if !line.publisher.channel().is_open() {
        line.publisher = Publisher::open(&line.connection).await?;
    }
    if !line.declares.channel().is_open() {
        line.declares = Requests::open(&line.connection).await?;
    }
    Ok(())
}

/// A queue as the broker sees it now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    pub messages: u32,
    pub consumers: u32,
}

impl Outbox {
    /// Depth and consumers of each queue that exists (a passive declare each: no management
    /// plugin needed). Queues that do not exist are left out.
    pub async fn queue_stats(
        &self,
        queues: &[String],
    ) -> Result<BTreeMap<String, QueueStats>, BrokerError> {
        let line = self.connected().await?;
        let Some(open) = line.as_ref() else {
            return Err(BrokerError::Lost("no connection"));
        };
        let connection = open.connection.clone();
        drop(line);
        let mut stats = BTreeMap::new();
        let mut channel = None;
        for queue in queues {
            if channel
                .as_ref()
                .is_none_or(|c: &amqprs::channel::Channel| !c.is_open())
            {
                channel = Some(connection.open_channel(None).await?);
            }
            let Some(open) = channel.as_ref() else {
                continue;
            };
            let args = amqprs::channel::QueueDeclareArguments::new(queue)
                .passive(true)
                .finish();
            // A missing queue closes the channel (404); the next queue gets a new one.
            if let Ok(Some((_, messages, consumers))) = open.queue_declare(args).await {
                stats.insert(
                    queue.clone(),
                    QueueStats {
                        messages,
                        consumers,
                    },
                );
            }
        }
        if let Some(channel) = channel.filter(|c| c.is_open()) {
            let _ = channel.close().await;
        }
        Ok(stats)
    }
}

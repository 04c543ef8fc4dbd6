//! The daemon's publisher (scheduler jobs, `POST /api/publish`).

use std::collections::BTreeMap;

use amqprs::connection::Connection;
use tokio::sync::Mutex;

use super::{close, connect, declare_queue, properties, BrokerError, Publisher};

/// A publisher for long-lived processes that publish now and then (the daemon's scheduler
/// and API): it connects on first use, declares each queue once, and after any failure
/// reconnects on the next publish instead of staying broken.
pub struct Outbox {
    url: String,
    name: String,
    line: Mutex<Option<Line>>,
}

/// An open connection with its publish channel and the queues declared on it.
struct Line {
    connection: Connection,
    publisher: Publisher,
    declared: std::collections::HashSet<String>,
}

impl Outbox {
    pub fn new(url: &str, name: &str) -> Outbox {
        Outbox {
            url: url.to_string(),
            name: name.to_string(),
            line: Mutex::new(None),
        }
    }

    /// Publishes persistently to `queue` (declared durable first) and waits for the confirm.
    pub async fn publish(&self, queue: &str, body: Vec<u8>) -> Result<(), BrokerError> {
        let publisher = self.publisher_for(queue).await?;
        let result = publisher
            .publish(queue, body, properties(&BTreeMap::new()))
            .await;
        if result.is_err() {
            // Whatever broke, the next publish starts from a fresh connection.
            self.line.lock().await.take();
        }
        result
    }

    /// Whether the broker can be reached now (connecting if need be).
    pub async fn reachable(&self) -> bool {
        self.connected().await.is_ok()
    }

    async fn publisher_for(&self, queue: &str) -> Result<Publisher, BrokerError> {
        let mut line = self.connected().await?;
        let Some(open) = line.as_mut() else {
            return Err(BrokerError::Lost("no connection"));
        };
        if !open.declared.contains(queue) {
            if let Err(e) = declare_queue(open.publisher.channel(), queue).await {
                line.take();
                return Err(e);
            }
            open.declared.insert(queue.to_string());
        }
        Ok(open.publisher.clone())
    }

    async fn connected(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Line>>, BrokerError> {
        let mut line = self.line.lock().await;
        let healthy = line
            .as_ref()
            .is_some_and(|l| l.connection.is_open() && l.publisher.channel().is_open());
        if !healthy {
            let connection = connect(&self.url, &self.name).await?;
            let publisher = Publisher::open(&connection).await?;
            *line = Some(Line {
                connection,
                publisher,
                declared: Default::default(),
            });
        }
        Ok(line)
    }

    /// Closes the connection, if one is open.
    pub async fn close(&self) {
        if let Some(line) = self.line.lock().await.take() {
            close(vec![line.publisher.channel().clone()], line.connection).await;
        }
    }
}

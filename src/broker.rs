//! RabbitMQ through amqprs: connecting, declaring queues, and publishing with publisher
//! confirms. amqprs reports confirms through a channel callback; [`Publisher`] turns them
//! back into one awaitable result per message, so many publishes can be in flight at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use amqprs::callbacks::{ChannelCallback, DefaultConnectionCallback};
use amqprs::channel::{
    BasicPublishArguments, Channel, ConfirmSelectArguments, QueueDeclareArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{Ack, BasicProperties, Cancel, CloseChannel, FieldTable, FieldValue, Nack, Return};
use async_trait::async_trait;
use percent_encoding::percent_decode_str;
use tokio::sync::{oneshot, Mutex};

use crate::redact::redact_urls;

/// How long a publish waits for the broker's confirm before it counts as failed.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);
/// Heartbeats let a dead TCP connection be noticed in seconds, not minutes.
const HEARTBEAT_SECS: u16 = 10;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("bad amqp.url {url}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot connect to RabbitMQ at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("RabbitMQ: {0}")]
    Amqp(String),
    #[error("{0}")]
    Lost(&'static str),
    #[error("RabbitMQ refused the message (nack)")]
    Nacked,
    #[error("no confirm from RabbitMQ within {}s", CONFIRM_TIMEOUT.as_secs())]
    ConfirmTimeout,
    #[error("the channel closed before RabbitMQ confirmed the message")]
    ChannelClosed,
}

impl From<amqprs::error::Error> for BrokerError {
    fn from(e: amqprs::error::Error) -> Self {
        BrokerError::Amqp(redact_urls(&e.to_string()))
    }
}

/// Opens a connection named for what this process is (it shows in the management UI).
pub async fn connect(url: &str, name: &str) -> Result<Connection, BrokerError> {
    let shown = redact_urls(url);
    let mut args = connection_arguments(url).map_err(|reason| BrokerError::BadUrl {
        url: shown.clone(),
        reason,
    })?;
    args.connection_name(name).heartbeat(HEARTBEAT_SECS);
    let connection = Connection::open(&args)
        .await
        .map_err(|e| BrokerError::Connect {
            url: shown,
            reason: redact_urls(&e.to_string()),
        })?;
    connection
        .register_callback(DefaultConnectionCallback)
        .await?;
    Ok(connection)
}

/// Reads an `amqp://user:password@host:port/vhost` URL the way RabbitMQ documents it: the
/// vhost is percent-decoded (`%2f` is `/`), and an empty path means the default vhost `/`.
fn connection_arguments(url: &str) -> Result<OpenConnectionArguments, String> {
    crate::config::check_amqp_url(url)?;
    let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    let host = parsed.host_str().ok_or("no host")?;
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().to_string();
    let user = match parsed.username() {
        "" => "guest".to_string(),
        user => decode(user),
    };
    let password = parsed
        .password()
        .map(decode)
        .unwrap_or_else(|| "guest".into());
    let vhost = match parsed.path().trim_start_matches('/') {
        "" => "/".to_string(),
        path => decode(path),
    };
    let mut args =
        OpenConnectionArguments::new(host, parsed.port().unwrap_or(5672), &user, &password);
    args.virtual_host(&vhost);
    Ok(args)
}

/// Closes channels, then the connection, and waits for each: a channel left to its drop
/// guard is closed by a detached task that a stopping runtime would cut short.
pub async fn close(channels: Vec<Channel>, connection: Connection) {
    for channel in channels {
        let _ = channel.close().await;
    }
    let _ = connection.close().await;
}

/// Declares a durable queue; idempotent for queues dpsd declared itself.
pub async fn declare_queue(channel: &Channel, queue: &str) -> Result<(), BrokerError> {
    channel
        .queue_declare(QueueDeclareArguments::durable_client_named(queue))
        .await?;
    Ok(())
}

/// Message properties dpsd sets on what it publishes: persistent JSON, plus its headers.
pub fn properties(headers: &BTreeMap<&str, String>) -> BasicProperties {
    let mut props = BasicProperties::default();
    props
        .with_persistence(true)
        .with_content_type("application/json");
    if !headers.is_empty() {
        let mut table = FieldTable::new();
        for (name, value) in headers {
            if let (Ok(name), Ok(value)) =
                ((*name).to_string().try_into(), value.clone().try_into())
            {
                table.insert(name, FieldValue::S(value));
            }
        }
        props.with_headers(table);
    }
    props.finish()
}

/// A header of a received message, as text.
pub fn header(props: &BasicProperties, name: &str) -> Option<String> {
    let key = name.to_string().try_into().ok()?;
    match props.headers()?.get(&key)? {
        FieldValue::S(s) => Some(s.to_string()),
        FieldValue::l(n) => Some(n.to_string()),
        FieldValue::I(n) => Some(n.to_string()),
        FieldValue::t(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Publishes on a channel in confirm mode and resolves each publish when the broker has
/// confirmed it (or refused it). Cloneable; clones share the channel.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
    pending: Arc<Mutex<Pending>>,
}

/// Confirms awaited, by publish sequence number (1, 2, ... in publish order on the channel).
#[derive(Default)]
struct Pending {
    next: u64,
    waiters: BTreeMap<u64, oneshot::Sender<bool>>,
}

impl Pending {
    fn settle(&mut self, tag: u64, multiple: bool, ok: bool) {
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
        channel
            .register_callback(ConfirmCallback {
                pending: pending.clone(),
            })
            .await?;
        channel
            .confirm_select(ConfirmSelectArguments::default())
            .await?;
        Ok(Publisher { channel, pending })
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
            Ok(Err(_)) => Err(BrokerError::ChannelClosed),
            Err(_) => Err(BrokerError::ConfirmTimeout),
        }
    }
}

struct ConfirmCallback {
    pending: Arc<Mutex<Pending>>,
}

#[async_trait]
impl ChannelCallback for ConfirmCallback {
    async fn close(
        &mut self,
        _channel: &Channel,
        close: CloseChannel,
    ) -> Result<(), amqprs::error::Error> {
        tracing::warn!("publish channel closed by RabbitMQ: {close}");
        // Dropping the waiters tells every publisher its confirm will not come.
        self.pending.lock().await.waiters.clear();
        Ok(())
    }
    async fn cancel(
        &mut self,
        _channel: &Channel,
        _cancel: Cancel,
    ) -> Result<(), amqprs::error::Error> {
        Ok(())
    }
    async fn flow(
        &mut self,
        _channel: &Channel,
        active: bool,
    ) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }
    async fn publish_ack(&mut self, _channel: &Channel, ack: Ack) {
        self.pending
            .lock()
            .await
            .settle(ack.delivery_tag(), ack.mutiple(), true);
    }
    async fn publish_nack(&mut self, _channel: &Channel, nack: Nack) {
        self.pending
            .lock()
            .await
            .settle(nack.delivery_tag(), nack.multiple(), false);
    }
    async fn publish_return(
        &mut self,
        _channel: &Channel,
        _ret: Return,
        _props: BasicProperties,
        _content: Vec<u8>,
    ) {
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_decode_the_vhost() {
        let args = connection_arguments("amqp://u:p%40ss@h:5673/%2f").expect("valid");
        assert_eq!(
            (args.get_host(), args.get_port(), args.get_virtual_host()),
            ("h", 5673, "/")
        );
        let args = connection_arguments("amqp://h").expect("valid");
        assert_eq!((args.get_port(), args.get_virtual_host()), (5672, "/"));
        assert_eq!(
            connection_arguments("amqp://h/prod")
                .expect("valid")
                .get_virtual_host(),
            "prod"
        );
        assert!(connection_arguments("http://h").is_err());
        assert!(connection_arguments("nonsense").is_err());
    }

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

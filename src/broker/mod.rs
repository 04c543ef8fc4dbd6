//! RabbitMQ through amqprs: where the nodes are and how to reach them (`endpoint`, `tls`),
//! what is declared (`topology`), publishing with confirms (`publisher`), the daemon's
//! reconnecting publisher (`outbox`); here, errors, message properties and channel events.

mod endpoint;
mod outbox;
mod publisher;
mod tls;
mod topology;

pub use endpoint::{connection_arguments, Endpoint};
pub use outbox::{Outbox, QueueStats};
pub use publisher::Publisher;
pub use topology::{declare_delay_queue, declare_queue, BROKER_DELIVERY_LIMIT};

use std::collections::BTreeMap;

use std::sync::Arc;

use amqprs::callbacks::ChannelCallback;
use amqprs::channel::Channel;
use amqprs::connection::Connection;
use amqprs::{Ack, BasicProperties, Cancel, CloseChannel, FieldTable, FieldValue, Nack, Return};
use async_trait::async_trait;
use tokio::sync::Notify;

use crate::config::QueueType;
use crate::redact::redact_urls;
use publisher::CONFIRM_TIMEOUT;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
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
    /// RabbitMQ closed the channel over what was asked of it: `code` is its reply code
    /// (406 PRECONDITION_FAILED, 403 ACCESS_REFUSED, 405 RESOURCE_LOCKED, ...) and `text`
    /// its reason, which begins with the code's name. The connection is unharmed.
    #[error("RabbitMQ refused: {text}")]
    Refused { code: u16, text: String },
}

impl BrokerError {
    /// For a refusal of something asked about `queue`, that refusal with the queue's name;
    /// None for other errors.
    pub fn refusal_of(&self, queue: &str) -> Option<QueueRefusal> {
        let BrokerError::Refused { code, text } = self else {
            return None;
        };
        Some(QueueRefusal {
            queue: queue.to_string(),
            code: *code,
            text: text.clone(),
        })
    }
}

/// RabbitMQ refused what was asked about a queue (a declare with other arguments, a queue
/// locked or not accessible), and will until the queue or the request changes: bad input,
/// not an outage. Worded in one place: `queue "q" exists with other arguments:
/// PRECONDITION_FAILED - inequivalent arg ...`, what it objects to, then its own reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("queue {queue:?} {}: {text}", self.objection())]
pub struct QueueRefusal {
    pub queue: String,
    /// The reply code: 406 PRECONDITION_FAILED, 403 ACCESS_REFUSED, 405 RESOURCE_LOCKED...
    pub code: u16,
    /// The broker's reason, beginning with the code's name.
    pub text: String,
}

impl QueueRefusal {
    fn objection(&self) -> String {
        if let Some((existing, declared)) = self.type_clash() {
            return format!(
                "exists as a {existing} queue, and this configuration declares it {declared} \
                 (docs/topology.md says how to move a queue to another type)"
            );
        }
        let what = match self.code {
            406 if self.text.contains("inequivalent arg") => "exists with other arguments",
            405 => "is locked (exclusive to another connection)",
            403 => "is not accessible",
            _ => "was refused by RabbitMQ",
        };
        what.to_string()
    }

    /// The queue's type as it exists and as it was declared, when the refusal is about its
    /// type: RabbitMQ says `inequivalent arg 'x-queue-type' ... received the value 'quorum'
    /// of type 'longstr' but current is none` (none: a classic queue, declared without it).
    pub fn type_clash(&self) -> Option<(String, String)> {
        let (_, clash) = self.text.split_once("inequivalent arg 'x-queue-type'")?;
        let (received, current) = clash.split_once(" but current is ")?;
        let type_of = |said: &str| match said.split_once("the value '") {
            Some((_, value)) => value.split('\'').next().unwrap_or(value).to_string(),
            None => "classic".to_string(),
        };
        Some((type_of(current), type_of(received)))
    }
}

impl From<amqprs::error::Error> for BrokerError {
    fn from(e: amqprs::error::Error) -> Self {
        BrokerError::Amqp(redact_urls(&e.to_string()))
    }
}

/// Closes channels, then the connection, and waits for each: a channel left to its drop
/// guard is closed by a detached task that a stopping runtime would cut short.
pub async fn close(channels: Vec<Channel>, connection: Connection) {
    for channel in channels {
        let _ = channel.close().await;
    }
    let _ = connection.close().await;
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

/// Why RabbitMQ last closed a channel, as its callback heard it. amqprs fails the call that
/// was waiting with only "channel closed"; its callback runs before that call returns, so
/// the caller finds the reason here.
#[derive(Clone, Default)]
pub(crate) struct Refusal(Arc<std::sync::Mutex<Option<(u16, String)>>>);

impl Refusal {
    fn set(&self, close: &CloseChannel) {
        let reason = (close.reply_code(), close.reply_text().clone());
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }

    /// The broker's reason as an error, if it closed the channel. A channel closes once:
    /// whatever was waiting on it when it did hears the same reason.
    pub(crate) fn reason(&self) -> Option<BrokerError> {
        let reason = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        reason.map(|(code, text)| BrokerError::Refused { code, text })
    }
}

/// A channel for synchronous requests (declares) whose refusal by RabbitMQ is reported as
/// [`BrokerError::Refused`], with the broker's reply code and reason.
pub(crate) struct Requests {
    channel: Channel,
    refusal: Refusal,
}

impl Requests {
    pub(crate) async fn open(connection: &Connection) -> Result<Requests, BrokerError> {
        let channel = connection.open_channel(None).await?;
        let refusal = Refusal::default();
        let events = ChannelEvents {
            confirms: None,
            ended: None,
            refusal: Some(refusal.clone()),
        };
        channel.register_callback(events).await?;
        Ok(Requests { channel, refusal })
    }

    pub(crate) fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Declares a durable queue of its type (as [`declare_queue`]); `Refused` when RabbitMQ will not,
    /// for example a queue that exists with other arguments (406).
    pub(crate) async fn declare_queue(
        &self,
        queue: &str,
        queue_type: QueueType,
    ) -> Result<(), BrokerError> {
        declare_queue(&self.channel, queue, queue_type)
            .await
            .map_err(|e| self.refusal.reason().unwrap_or(e))
    }
}

/// What a consuming channel's callback heard: see [`watch_channel`].
pub struct ChannelWatch {
    ended: Arc<Notify>,
    refusal: Refusal,
}

impl ChannelWatch {
    /// Returns when the broker cancels the consumers of the channel (its queue was deleted)
    /// or closes the channel: either way the consumer must start over, or it would sit idle.
    pub async fn ended(&self) {
        self.ended.notified().await
    }

    /// `error`, from a call on the watched channel, as RabbitMQ's reason
    /// ([`BrokerError::Refused`]) when it closed the channel over it: amqprs itself says
    /// only "channel closed".
    pub fn explain(&self, error: BrokerError) -> BrokerError {
        self.refusal.reason().unwrap_or(error)
    }
}

/// Watches a consuming channel. Registered before the channel's first request (its
/// declares), so that a refusal is explained by [`ChannelWatch::explain`].
pub async fn watch_channel(channel: &Channel) -> Result<ChannelWatch, BrokerError> {
    let ended = Arc::new(Notify::new());
    let refusal = Refusal::default();
    let events = ChannelEvents {
        confirms: None,
        ended: Some(ended.clone()),
        refusal: Some(refusal.clone()),
    };
    channel.register_callback(events).await?;
    Ok(ChannelWatch { ended, refusal })
}

/// What dpsd hears from the broker about a channel: publisher confirms (for a publishing
/// channel), the end of its consumers (for a consuming one), and why RabbitMQ closed it.
pub(crate) struct ChannelEvents {
    confirms: Option<Arc<tokio::sync::Mutex<publisher::Pending>>>,
    ended: Option<Arc<Notify>>,
    refusal: Option<Refusal>,
}

impl ChannelEvents {
    async fn settle(&self, tag: u64, multiple: bool, ok: bool) {
        if let Some(confirms) = &self.confirms {
            confirms.lock().await.settle(tag, multiple, ok);
        }
    }

    fn end(&self) {
        if let Some(ended) = &self.ended {
            ended.notify_one();
        }
    }
}

#[async_trait]
impl ChannelCallback for ChannelEvents {
    async fn close(
        &mut self,
        _channel: &Channel,
        close: CloseChannel,
    ) -> Result<(), amqprs::error::Error> {
        tracing::warn!("channel closed by RabbitMQ: {close}");
        // Kept before the waiters hear of the close, so they find the reason.
        if let Some(refusal) = &self.refusal {
            refusal.set(&close);
        }
        if let Some(confirms) = &self.confirms {
            // Dropping the waiters tells every publisher its confirm will not come.
            confirms.lock().await.waiters.clear();
        }
        self.end();
        Ok(())
    }
    async fn cancel(
        &mut self,
        _channel: &Channel,
        _cancel: Cancel,
    ) -> Result<(), amqprs::error::Error> {
        self.end();
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
        self.settle(ack.delivery_tag(), ack.mutiple(), true).await;
    }
    async fn publish_nack(&mut self, _channel: &Channel, nack: Nack) {
        self.settle(nack.delivery_tag(), nack.multiple(), false)
            .await;
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
    fn a_refusal_names_the_queue_what_rabbitmq_objects_to_and_its_reason() {
        let refused = |code, text: &str| BrokerError::Refused {
            code,
            text: text.into(),
        };
        let clash = refused(406, "PRECONDITION_FAILED - inequivalent arg 'x-max-length'");
        assert_eq!(
            clash.refusal_of("q").map(|r| r.to_string()).as_deref(),
            Some("queue \"q\" exists with other arguments: PRECONDITION_FAILED - inequivalent arg 'x-max-length'")
        );
        let locked = refused(405, "RESOURCE_LOCKED - cannot obtain exclusive access");
        assert!(locked
            .refusal_of("q")
            .is_some_and(|r| r.to_string().starts_with("queue \"q\" is locked")));
        assert_eq!(BrokerError::Nacked.refusal_of("q"), None);
    }

    #[test]
    fn a_type_clash_names_both_types() {
        let refusal = |text: &str| BrokerError::Refused {
            code: 406,
            text: text.into(),
        };
        // As RabbitMQ 3.10 words them (checked against the test broker).
        let to_quorum = refusal("PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'q' in vhost '/': received the value 'quorum' of type 'longstr' but current is none");
        let to_classic = refusal("PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'q' in vhost '/': received none but current is the value 'quorum' of type 'longstr'");
        let clash = |e: &BrokerError| e.refusal_of("q").and_then(|r| r.type_clash());
        assert_eq!(clash(&to_quorum), Some(("classic".into(), "quorum".into())));
        assert_eq!(
            clash(&to_classic),
            Some(("quorum".into(), "classic".into()))
        );
        let shown = to_quorum
            .refusal_of("q")
            .map(|r| r.to_string())
            .unwrap_or_default();
        assert!(
            shown.starts_with(
                "queue \"q\" exists as a classic queue, and this configuration declares it quorum"
            ),
            "{shown}"
        );
    }

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
}

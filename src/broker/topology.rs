//! The queues dpsd declares (SPEC 3.3, docs/topology.md): a worker's own queue and follow
//! queue, durable; and the delay queues of its retries, each holding messages for one delay
//! and dead-lettering them back to the worker's queue when it expires.

use std::time::Duration;

use amqprs::channel::{Channel, QueueDeclareArguments};
use amqprs::{FieldTable, FieldValue};

use super::BrokerError;
use crate::config::delay_queue;

/// Declares a durable queue; idempotent for queues dpsd declared itself.
pub async fn declare_queue(channel: &Channel, queue: &str) -> Result<(), BrokerError> {
    channel
        .queue_declare(QueueDeclareArguments::durable_client_named(queue))
        .await?;
    Ok(())
}

/// Declares the delay queue (idempotent): messages expire after `delay` and go back to
/// `queue` through the default exchange.
pub async fn declare_delay_queue(
    channel: &Channel,
    queue: &str,
    delay: Duration,
) -> Result<String, BrokerError> {
    let name = delay_queue(queue, delay);
    let mut arguments = FieldTable::new();
    let ttl = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    arguments.insert(key("x-message-ttl")?, FieldValue::l(ttl));
    arguments.insert(key("x-dead-letter-exchange")?, FieldValue::S(text("")?));
    arguments.insert(
        key("x-dead-letter-routing-key")?,
        FieldValue::S(text(queue)?),
    );
    let mut args = QueueDeclareArguments::durable_client_named(&name);
    args.arguments(arguments);
    channel.queue_declare(args).await?;
    Ok(name)
}

fn key(name: &str) -> Result<amqprs::FieldName, BrokerError> {
    name.to_string()
        .try_into()
        .map_err(|_| BrokerError::Amqp(format!("bad argument name {name}")))
}

fn text(value: &str) -> Result<amqprs::LongStr, BrokerError> {
    value
        .to_string()
        .try_into()
        .map_err(|_| BrokerError::Amqp(format!("bad argument value {value}")))
}

//! The queues dpsd declares (SPEC 3.3, docs/topology.md): a worker's own queue and follow
//! queue, durable; and the delay queues of its retries, each holding messages for one delay
//! and dead-lettering them back to the worker's queue when it expires. A queue is classic or
//! quorum as `config::QueueTypes` says; a quorum queue gets a delivery limit set by dpsd
//! rather than the broker's default (RabbitMQ 4's is 20, then it drops the message), and
//! quorum delay queues dead-letter at least once.

use std::time::Duration;

use amqprs::channel::{Channel, QueueDeclareArguments};
use amqprs::{FieldTable, FieldValue};

use super::BrokerError;
use crate::config::{delay_queue, QueueType};

/// RabbitMQ's own delivery limit on the quorum queues dpsd declares. A worker parks a
/// message itself at `amqp.delivery_limit` (at most [`crate::config::MAX_DELIVERY_LIMIT`]),
/// well below this: a park that fails still leaves room before the broker would drop it. It
/// is a constant, not the setting, because RabbitMQ refuses to declare an existing queue
/// again with another limit: a changed setting must not make the queues undeclarable.
pub const BROKER_DELIVERY_LIMIT: u32 = 1000;

/// Declares a durable queue of its type; idempotent for queues dpsd declared itself.
/// Classic queues get no argument at all, as dpsd always declared them.
pub async fn declare_queue(
    channel: &Channel,
    queue: &str,
    queue_type: QueueType,
) -> Result<(), BrokerError> {
    let mut arguments = FieldTable::new();
    if queue_type == QueueType::Quorum {
        let limit = i64::from(BROKER_DELIVERY_LIMIT);
        put(&mut arguments, "x-queue-type", text("quorum")?)?;
        put(&mut arguments, "x-delivery-limit", FieldValue::l(limit))?;
    }
    declare(channel, queue, arguments).await
}

/// Declares the delay queue of `queue` for `delay` (idempotent): messages expire after
/// `delay` and go back to `queue` through the default exchange. Quorum delay queues
/// dead-letter at least once (the message leaves only once `queue` has it), which RabbitMQ
/// allows only with `x-overflow: reject-publish`.
pub async fn declare_delay_queue(
    channel: &Channel,
    queue: &str,
    delay: Duration,
    queue_type: QueueType,
) -> Result<String, BrokerError> {
    let name = delay_queue(queue, delay);
    let mut arguments = FieldTable::new();
    let ttl = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    put(&mut arguments, "x-message-ttl", FieldValue::l(ttl))?;
    put(&mut arguments, "x-dead-letter-exchange", text("")?)?;
    put(&mut arguments, "x-dead-letter-routing-key", text(queue)?)?;
    if queue_type == QueueType::Quorum {
        put(&mut arguments, "x-queue-type", text("quorum")?)?;
        put(
            &mut arguments,
            "x-dead-letter-strategy",
            text("at-least-once")?,
        )?;
        put(&mut arguments, "x-overflow", text("reject-publish")?)?;
    }
    declare(channel, &name, arguments).await?;
    Ok(name)
}

async fn declare(channel: &Channel, queue: &str, arguments: FieldTable) -> Result<(), BrokerError> {
    let mut args = QueueDeclareArguments::durable_client_named(queue);
    args.arguments(arguments);
    channel.queue_declare(args).await?;
    Ok(())
}

fn put(table: &mut FieldTable, name: &str, value: FieldValue) -> Result<(), BrokerError> {
    let key = name
        .to_string()
        .try_into()
        .map_err(|_| BrokerError::Amqp(format!("bad argument name {name}")))?;
    table.insert(key, value);
    Ok(())
}

fn text(value: &str) -> Result<FieldValue, BrokerError> {
    let long = value
        .to_string()
        .try_into()
        .map_err(|_| BrokerError::Amqp(format!("bad argument value {value}")))?;
    Ok(FieldValue::S(long))
}

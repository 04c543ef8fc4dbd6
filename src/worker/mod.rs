//! The generic worker: one replica consuming one queue. This file owns the broker side —
//! connecting, consuming, settling deliveries, reconnecting after a lost connection and
//! draining on stop; `handler` decides what happens to each message.

pub mod cancel;
mod counters;
#[cfg(test)]
mod fake;
mod handler;
mod in_hand;
pub mod pause;
mod rate;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use amqprs::channel::ConsumerMessage;
use amqprs::channel::{
    BasicAckArguments, BasicCancelArguments, BasicConsumeArguments, BasicNackArguments,
    BasicQosArguments, Channel,
};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn, Instrument};

pub use counters::{report, report_once, Counters, Histogram, Totals, BUCKETS};
pub use handler::{Delivery, Forward, Handler, Headers, Verdict};
pub use in_hand::InHand;

use crate::backoff::Backoff;
use crate::broker::{self, BrokerError, Endpoint, Publisher, QueueRefusal};
use crate::config::{delay_queue, RetryPolicy};
use crate::message::headers;
use crate::shutdown::Shutdown;

/// Reconnects wait from a fifth of a second up to half a minute.
const RECONNECT: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
/// A session that lasted this long was healthy: the next reconnect starts fast again.
const HEALTHY_SESSION: Duration = Duration::from_secs(30);

/// One replica of a worker.
pub struct Worker {
    pub handler: Arc<Handler>,
    /// The nodes of the cluster, tried in turn.
    pub endpoint: Endpoint,
    pub replica: u32,
    /// True while a session consumes the queue (what the replica's `/readyz` reports).
    pub consuming: Arc<AtomicBool>,
    /// Whether the worker is paused (SPEC 4.5), as `pause::watch` keeps it from the store.
    pub paused: tokio::sync::watch::Receiver<bool>,
}

/// Holds `consuming` true for as long as it lives: every way out of a session clears it.
struct Consuming<'a>(&'a AtomicBool);

impl<'a> Consuming<'a> {
    fn mark(flag: &'a AtomicBool) -> Self {
        flag.store(true, Ordering::Relaxed);
        Consuming(flag)
    }
}

impl Drop for Consuming<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

impl Worker {
    /// Consumes until a graceful stop, reconnecting whenever the connection is lost.
    pub async fn run(&self, shutdown: &Shutdown) {
        let mut retries = RECONNECT.retries();
        loop {
            let began = Instant::now();
            let failed = match self.session(shutdown).await {
                Ok(()) => return,
                Err(e) => e,
            };
            if began.elapsed() > HEALTHY_SESSION {
                retries.reset();
            }
            let delay = retries.next_delay();
            warn!(
                "{failed}; reconnecting in {}",
                humantime::format_duration(delay)
            );
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.graceful.cancelled() => return,
            }
        }
    }

    /// One connection's life. Returns Ok after a graceful stop, Err when the connection failed.
    async fn session(&self, shutdown: &Shutdown) -> Result<(), SessionError> {
        let def = &self.handler.def;
        let name = format!("dpsd worker {} #{}", def.name, self.replica);
        let connection = self.endpoint.connect(&name).await?;
        let channel = connection.open_channel(None).await?;
        // Watched before the declares: RabbitMQ closes the channel of a declare it refuses
        // (a queue that exists with other arguments), and only the callback hears why.
        let watch = broker::watch_channel(&channel).await?;
        self.declare_all(&channel, &watch).await?;
        channel
            .basic_qos(BasicQosArguments::new(0, rate::prefetch(def), false))
            .await
            .map_err(|e| watch.explain(e.into()))?;
        let publisher = Publisher::open(&connection).await?;
        let mut paused = self.paused.clone();
        let turns = rate::Turns::new(&self.handler, &self.paused, &shutdown.graceful);
        let mut in_flight = JoinSet::new();
        loop {
            if let Some(stop) = self
                .wait_resumed(&mut paused, &connection, &channel, &mut in_flight, shutdown)
                .await
            {
                return self
                    .end(
                        stop, None, in_flight, connection, channel, publisher, shutdown,
                    )
                    .await;
            }
            let args = BasicConsumeArguments::new(&def.queue, "")
                .manual_ack(true)
                .finish();
            let (consumer_tag, mut deliveries) = channel
                .basic_consume_rx(args)
                .await
                .map_err(|e| SessionError::refused(&def.queue, watch.explain(e.into())))?;
            info!(queue = %def.queue, prefetch = rate::prefetch(def), "consuming");
            let consuming = Consuming::mark(&self.consuming);
            let mut health = tokio::time::interval(Duration::from_secs(1));
            let stop = loop {
                tokio::select! {
                    _ = shutdown.graceful.cancelled() => break Stop::Shutdown,
                    delivery = deliveries.recv() => match delivery {
                        Some(delivery) => self.dispatch(delivery, &channel, &publisher, turns.as_ref(), &mut in_flight),
                        None => break Stop::Lost("the broker closed the consumer"),
                    },
                    Some(done) = in_flight.join_next() => report_panic(done),
                    _ = watch.ended() => break Stop::Lost("RabbitMQ cancelled the consumer (was the queue deleted?)"),
                    _ = health.tick() => if !connection.is_open() || !channel.is_open() {
                        break Stop::Lost("the connection to RabbitMQ was lost");
                    },
                    Ok(()) = paused.changed() => if *paused.borrow_and_update() {
                        break Stop::Paused;
                    },
                }
            };
            drop(consuming);
            if let Stop::Paused = stop {
                pause::announce(true);
                hand_back(&channel, &consumer_tag, deliveries).await;
                continue;
            }
            return self
                .end(
                    stop,
                    Some(&consumer_tag),
                    in_flight,
                    connection,
                    channel,
                    publisher,
                    shutdown,
                )
                .await;
        }
    }

    /// While the worker is paused: messages in hand go on finishing (and are acked), the
    /// connection is watched. None once it is resumed (or was never paused), else why the
    /// session stops.
    async fn wait_resumed(
        &self,
        paused: &mut tokio::sync::watch::Receiver<bool>,
        connection: &amqprs::connection::Connection,
        channel: &Channel,
        in_flight: &mut JoinSet<()>,
        shutdown: &Shutdown,
    ) -> Option<Stop> {
        if !*paused.borrow_and_update() {
            return None;
        }
        let mut health = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.graceful.cancelled() => return Some(Stop::Shutdown),
                changed = paused.changed() => if changed.is_err() || !*paused.borrow_and_update() {
                    pause::announce(false);
                    return None;
                },
                Some(done) = in_flight.join_next() => report_panic(done),
                _ = health.tick() => if !connection.is_open() || !channel.is_open() {
                    return Some(Stop::Lost("the connection to RabbitMQ was lost"));
                },
            }
        }
    }

    /// Ends a session: after a graceful stop drains and closes (Ok). After a lost
    /// connection the broker hands the messages in hand out again, as their acks cannot
    /// reach it any more; they are left to finish without it: one whose services ran still
    /// records its stage, so that its redelivery finds it done and does not run them again
    /// (its turn in `in_hand` makes a redelivery to this replica wait for it); one whose
    /// services had not started gives up (`Forward::connected`); confirm waits fail at once.
    #[allow(clippy::too_many_arguments)]
    async fn end(
        &self,
        stop: Stop,
        consumer_tag: Option<&str>,
        mut in_flight: JoinSet<()>,
        connection: amqprs::connection::Connection,
        channel: Channel,
        publisher: Publisher,
        shutdown: &Shutdown,
    ) -> Result<(), SessionError> {
        if let Stop::Lost(reason) = stop {
            publisher.abandon().await;
            if !in_flight.is_empty() {
                info!(
                    in_hand = in_flight.len(),
                    "connection lost: the messages in hand finish their records"
                );
            }
            in_flight.detach_all();
            return Err(BrokerError::Lost(reason).into());
        }
        self.drain(&channel, consumer_tag, in_flight, shutdown)
            .await;
        broker::close(vec![channel, publisher.channel().clone()], connection).await;
        Ok(())
    }

    /// Declares the worker's queue, its follow queue and its delay queues, each of its type.
    async fn declare_all(
        &self,
        channel: &Channel,
        watch: &broker::ChannelWatch,
    ) -> Result<(), SessionError> {
        let def = &self.handler.def;
        let refused = |queue: &str, e: BrokerError| SessionError::refused(queue, watch.explain(e));
        broker::declare_queue(channel, &def.queue, def.queue_type)
            .await
            .map_err(|e| refused(&def.queue, e))?;
        if let Some(follow) = &def.follow_queue {
            broker::declare_queue(channel, follow, def.follow_queue_type)
                .await
                .map_err(|e| refused(follow, e))?;
        }
        for delay in def.retry.iter().flat_map(RetryPolicy::delays) {
            broker::declare_delay_queue(channel, &def.queue, delay, def.queue_type)
                .await
                .map_err(|e| refused(&delay_queue(&def.queue, delay), e))?;
        }
        Ok(())
    }

    fn dispatch(
        &self,
        message: ConsumerMessage,
        channel: &Channel,
        publisher: &Publisher,
        turns: Option<&rate::Turns>,
        in_flight: &mut JoinSet<()>,
    ) {
        let (Some(deliver), Some(props), Some(body)) =
            (message.deliver, message.basic_properties, message.content)
        else {
            warn!("incomplete delivery from the broker ignored");
            return;
        };
        let delivery = Delivery {
            body,
            redelivered: deliver.redelivered(),
            reforwarded: broker::header(&props, headers::REFORWARD).is_some(),
            attempt: broker::header(&props, headers::ATTEMPT)
                .and_then(|a| a.parse().ok())
                .filter(|a| *a >= 1)
                .unwrap_or(1),
            stages_passed: broker::header(&props, headers::STAGES)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            returned: broker::header(&props, headers::DELIVERY_COUNT)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
        };
        let tag = deliver.delivery_tag();
        let handler = self.handler.clone();
        let channel = channel.clone();
        let publisher = publisher.clone();
        let turns = turns.cloned();
        // In the worker's span, so every message line names the worker and the replica.
        in_flight.spawn(
            async move {
                // A rate-limited worker's message waits its turn first (SPEC 4.5).
                let handed_back = match &turns {
                    Some(turns) => turns.wait(&delivery, &publisher).await,
                    None => None,
                };
                if let Some(verdict) = handed_back {
                    return settle(&channel, tag, verdict).await;
                }
                let verdict = handler.handle(&delivery, &publisher).await;
                settle(&channel, tag, verdict).await;
            }
            .in_current_span(),
        );
    }

    /// Stops consuming and lets the messages in hand finish (until a hard stop).
    async fn drain(
        &self,
        channel: &Channel,
        consumer_tag: Option<&str>,
        mut in_flight: JoinSet<()>,
        shutdown: &Shutdown,
    ) {
        if let Some(tag) = consumer_tag {
            cancel(channel, tag).await;
        }
        info!(in_flight = in_flight.len(), "draining");
        loop {
            tokio::select! {
                next = in_flight.join_next() => match next {
                    Some(done) => report_panic(done),
                    None => break,
                },
                _ = shutdown.hard.cancelled() => {
                    warn!(abandoned = in_flight.len(), "hard stop: unfinished messages go back to the queue");
                    in_flight.abort_all();
                    break;
                }
            }
        }
    }
}

/// Why consuming stopped.
enum Stop {
    Shutdown,
    Paused,
    Lost(&'static str),
}

async fn cancel(channel: &Channel, consumer_tag: &str) {
    if let Err(e) = channel
        .basic_cancel(BasicCancelArguments::new(consumer_tag))
        .await
    {
        warn!("could not cancel the consumer: {e}");
    }
}

/// Cancels the consumer and hands the prefetched messages not yet started back to the
/// queue at once (SPEC 4.5). RabbitMQ keeps a cancelled consumer's unacked deliveries on the
/// channel until they are settled or the channel closes, and the channel stays open for the
/// messages in progress, so each one still waiting in `deliveries` is requeued by hand.
async fn hand_back(
    channel: &Channel,
    consumer_tag: &str,
    mut deliveries: tokio::sync::mpsc::UnboundedReceiver<ConsumerMessage>,
) {
    cancel(channel, consumer_tag).await;
    // After the cancel-ok, nothing more comes: what is buffered is all there is.
    while let Ok(message) = deliveries.try_recv() {
        if let Some(deliver) = message.deliver {
            settle(channel, deliver.delivery_tag(), Verdict::Requeue).await;
        }
    }
}

/// Why a session ended: the broker failed, or refused one of the worker's queues.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Refused(QueueRefusal),
}

impl From<amqprs::error::Error> for SessionError {
    fn from(e: amqprs::error::Error) -> Self {
        SessionError::Broker(e.into())
    }
}

impl SessionError {
    /// `error`, from a request about `queue`, naming the queue when RabbitMQ refused it.
    fn refused(queue: &str, error: BrokerError) -> SessionError {
        match error.refusal_of(queue) {
            Some(refusal) => SessionError::Refused(refusal),
            None => SessionError::Broker(error),
        }
    }
}

async fn settle(channel: &Channel, tag: u64, verdict: Verdict) {
    let result = match verdict {
        Verdict::Ack => channel.basic_ack(BasicAckArguments::new(tag, false)).await,
        Verdict::Requeue => {
            channel
                .basic_nack(BasicNackArguments::new(tag, false, true))
                .await
        }
    };
    match result {
        Ok(()) => {}
        // A message that finished after its connection went (`end`): said once there.
        Err(e) if !channel.is_open() => {
            debug!("delivery {tag} not settled, its channel is gone: {e}")
        }
        Err(e) => warn!(
            "could not settle delivery {tag} ({verdict:?}): {e}; the broker will redeliver it"
        ),
    }
}

fn report_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            error!("a message handler panicked: {e}; the message will be redelivered");
        }
    }
}

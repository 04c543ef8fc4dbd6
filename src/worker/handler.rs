//! What a worker does with one delivery (SPEC 4.2): parse, call the services in order,
//! record the stage, forward, and only then say "ack". The broker side (consuming, acking)
//! is the session's job; this file decides.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::Value;
use tracing::{debug, error, info, warn, Instrument};

use super::counters::{Counters, Outcome};
use crate::broker::{self, BrokerError, Publisher};
use crate::config::{delay_queue, WorkerDef};
use crate::message::{Malformed, Message, EXECUTION_ID};
use crate::services::{CallContext, Caller, ServiceError};
use crate::store::{ParkedBody, ParkedMessage, Stage, Status, Store, StoreError};

/// Marks a message forwarded again after a redelivery: the next worker checks the store
/// before running it, as it would for a redelivery of its own.
pub const REFORWARD_HEADER: &str = "x-dpsd-reforward";
/// The attempt a message is on (1 when absent); it travels through the delay queues.
pub const ATTEMPT_HEADER: &str = "x-dpsd-attempt";

/// What the session should tell the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Done with it: processed, deduplicated or parked.
    Ack,
    /// Not done (forward failed, or stopping): the broker delivers it again.
    Requeue,
}

/// A received message, as far as the handler cares.
pub struct Delivery {
    pub body: Vec<u8>,
    pub redelivered: bool,
    pub reforwarded: bool,
    /// 1 for a first delivery, N for the Nth attempt after retries.
    pub attempt: u32,
}

/// A service that failed, and which one.
struct Failure {
    service: String,
    error: ServiceError,
}

/// Handles deliveries for one worker replica. Shared by all in-flight messages.
pub struct Handler {
    pub def: WorkerDef,
    pub store: Arc<dyn Store>,
    pub caller: Caller,
    /// Fired when waiting for the store must give up (hard stop).
    pub hard_stop: tokio_util::sync::CancellationToken,
    pub counters: Arc<Counters>,
}

impl Handler {
    pub async fn handle(&self, delivery: &Delivery, publisher: &Publisher) -> Verdict {
        self.counters.started();
        let verdict = match Message::parse(&delivery.body) {
            Ok(message) => {
                let span = tracing::info_span!("message", executionId = %message.execution_id());
                self.process(message, delivery, publisher)
                    .instrument(span)
                    .await
            }
            Err(reason) => self.park_malformed(delivery, reason).await,
        };
        self.counters.finished();
        verdict
    }

    async fn process(
        &self,
        mut message: Message,
        delivery: &Delivery,
        publisher: &Publisher,
    ) -> Verdict {
        if delivery.redelivered || delivery.reforwarded {
            match self.completed_result(message.execution_id()).await {
                Ok(Some(result)) => return self.forward_again(message, result, publisher).await,
                Ok(None) => {}
                Err(verdict) => return verdict,
            }
        }
        let started_at = Utc::now();
        let clock = Instant::now();
        let outcome = if message.simulate() {
            Ok(message.last().cloned())
        } else {
            self.run_services(&mut message, delivery.attempt).await
        };
        let stage = |status, error, result| Stage {
            worker: self.def.name.clone(),
            state: self.def.job_state,
            status,
            attempts: delivery.attempt,
            started_at,
            finished_at: Utc::now(),
            duration_ms: clock.elapsed().as_millis() as i64,
            error,
            result,
        };
        match outcome {
            Ok(result) => {
                let stage = stage(Status::Done, None, result);
                self.complete(message, stage, publisher, clock).await
            }
            Err(failure) => {
                let error = format!("service {}: {}", failure.service, failure.error);
                let retry = self
                    .def
                    .retry
                    .as_ref()
                    .and_then(|p| p.delay_before(delivery.attempt + 1));
                match retry {
                    Some(delay) => {
                        let stage = stage(Status::Retrying, Some(error.clone()), None);
                        self.retry_later(&message, delivery, stage, delay, publisher)
                            .await
                    }
                    None => {
                        let stage = stage(Status::Parked, Some(error.clone()), None);
                        self.park_failed(&message, delivery, stage, error).await
                    }
                }
            }
        }
    }

    /// Calls each service in turn; from the second on, `_last` is the previous result.
    /// On success `_last` holds the last result (or is untouched when there are no services).
    async fn run_services(
        &self,
        message: &mut Message,
        attempt: u32,
    ) -> Result<Option<Value>, Failure> {
        let mut last = None;
        for service in &self.def.services {
            if let Some(previous) = last.take() {
                message.set_last(previous);
            }
            let ctx = CallContext {
                execution_id: message.execution_id(),
                worker: &self.def.name,
                service: &service.id,
                attempt,
            };
            let started = Instant::now();
            let result = self.caller.call(&service.def, message.body(), ctx).await;
            self.counters.service_call(&service.id, started.elapsed());
            debug!(service = %service.id, elapsed_ms = started.elapsed().as_millis() as u64, ok = result.is_ok(), "service called");
            last = Some(result.map_err(|error| Failure {
                service: service.id.clone(),
                error,
            })?);
        }
        if let Some(result) = &last {
            message.set_last(result.clone());
        }
        Ok(last.or_else(|| message.last().cloned()))
    }

    /// Records the done stage, forwards, and acks — in that order, so a crash at any point
    /// leaves the message unacked and it comes back.
    async fn complete(
        &self,
        message: Message,
        stage: Stage,
        publisher: &Publisher,
        clock: Instant,
    ) -> Verdict {
        let services_ms = clock.elapsed().as_millis() as u64;
        let record = self.persist(|| self.store.record_stage(message.execution_id(), &stage));
        if let Err(verdict) = record.await {
            return verdict;
        }
        let store_ms = clock.elapsed().as_millis() as u64 - services_ms;
        if let Err(e) = self.forward(&message, publisher, false).await {
            warn!("forward failed, message goes back to the queue: {e}");
            return Verdict::Requeue;
        }
        let elapsed_ms = clock.elapsed().as_millis() as u64;
        info!(elapsed_ms, services_ms, store_ms, "done");
        self.counted(Outcome::Processed)
    }

    /// The result this worker recorded for the execution, if it already completed it.
    async fn completed_result(&self, execution_id: &str) -> Result<Option<Option<Value>>, Verdict> {
        let execution = self.persist(|| self.store.execution(execution_id)).await?;
        Ok(execution.and_then(|e| e.done_by(&self.def.name).map(|s| s.result.clone())))
    }

    /// A redelivery of a message this worker completed: no service is called again. It is
    /// forwarded again because the replica that completed it may have died between recording
    /// and forwarding; the header makes the next worker skip it if it already has it.
    async fn forward_again(
        &self,
        mut message: Message,
        result: Option<Value>,
        publisher: &Publisher,
    ) -> Verdict {
        if let Some(result) = result {
            message.set_last(result);
        }
        match self.forward(&message, publisher, true).await {
            Ok(()) => {
                info!("already done by this worker: not run again");
                Verdict::Ack
            }
            Err(e) => {
                warn!("forward failed, message goes back to the queue: {e}");
                Verdict::Requeue
            }
        }
    }

    async fn forward(
        &self,
        message: &Message,
        publisher: &Publisher,
        again: bool,
    ) -> Result<(), BrokerError> {
        let Some(queue) = &self.def.follow_queue else {
            return Ok(());
        };
        let mut headers = std::collections::BTreeMap::new();
        if again {
            headers.insert(REFORWARD_HEADER, "1".to_string());
        }
        publisher
            .publish(queue, message.to_bytes(), broker::properties(&headers))
            .await
    }

    /// Records the failed attempt and puts the message, as received, in the delay queue for
    /// `delay`, from which RabbitMQ returns it to this worker's queue; then it is acked. A
    /// crash before the ack means a redelivery now instead of later, never a loss.
    async fn retry_later(
        &self,
        message: &Message,
        delivery: &Delivery,
        stage: Stage,
        delay: Duration,
        publisher: &Publisher,
    ) -> Verdict {
        let next = delivery.attempt + 1;
        warn!(
            attempt = delivery.attempt,
            "failed, attempt {next} in {}: {}",
            humantime::format_duration(delay),
            stage.error.as_deref().unwrap_or_default()
        );
        let record = self.persist(|| self.store.record_stage(message.execution_id(), &stage));
        if let Err(verdict) = record.await {
            return verdict;
        }
        let mut headers = std::collections::BTreeMap::new();
        headers.insert(ATTEMPT_HEADER, next.to_string());
        let body = received_bytes(delivery, message.execution_id());
        let queue = delay_queue(&self.def.queue, delay);
        match publisher
            .publish(&queue, body, broker::properties(&headers))
            .await
        {
            Ok(()) => self.counted(Outcome::Retried),
            Err(e) => {
                warn!("could not schedule the retry, message goes back to the queue: {e}");
                Verdict::Requeue
            }
        }
    }

    async fn park_failed(
        &self,
        message: &Message,
        delivery: &Delivery,
        stage: Stage,
        error: String,
    ) -> Verdict {
        warn!("parked: {error}");
        let now = Utc::now();
        let parked = ParkedMessage {
            id: format!("{}:{}", self.def.name, message.execution_id()),
            body: as_received(delivery, message.execution_id()),
            worker: self.def.name.clone(),
            queue: self.def.queue.clone(),
            execution_id: Some(message.execution_id().to_string()),
            attempts: stage.attempts,
            error,
            first_failed_at: now,
            last_failed_at: now,
        };
        if let Err(verdict) = self.persist(|| self.store.park(&parked)).await {
            return verdict;
        }
        match self
            .persist(|| self.store.record_stage(message.execution_id(), &stage))
            .await
        {
            Ok(()) => self.counted(Outcome::Parked),
            Err(verdict) => verdict,
        }
    }

    async fn park_malformed(&self, delivery: &Delivery, reason: Malformed) -> Verdict {
        warn!("malformed message parked: {reason}");
        let now = Utc::now();
        let parked = ParkedMessage {
            id: uuid::Uuid::new_v4().to_string(),
            body: ParkedBody::from_bytes(&delivery.body),
            worker: self.def.name.clone(),
            queue: self.def.queue.clone(),
            execution_id: None,
            attempts: 1,
            error: reason.to_string(),
            first_failed_at: now,
            last_failed_at: now,
        };
        match self.persist(|| self.store.park(&parked)).await {
            Ok(()) => self.counted(Outcome::Parked),
            Err(verdict) => verdict,
        }
    }

    /// Counts the outcome of a message about to be acked.
    fn counted(&self, outcome: Outcome) -> Verdict {
        self.counters.outcome(outcome);
        Verdict::Ack
    }

    /// Runs a store operation until it succeeds: an unavailable store is waited for (with
    /// back-off), since acking without the write would lose the guarantee. Gives up only on a
    /// hard stop (the message is then redelivered) or when the store rejects the data.
    async fn persist<T, F, Fut>(&self, op: F) -> Result<T, Verdict>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut delay = Duration::from_millis(100);
        loop {
            match op().await {
                Ok(value) => return Ok(value),
                Err(StoreError::Invalid(reason)) => {
                    error!("the store rejected a write, message goes back to the queue: {reason}");
                    return Err(Verdict::Requeue);
                }
                Err(StoreError::Unavailable(reason)) => {
                    warn!(
                        "store unavailable, retrying in {}: {reason}",
                        humantime::format_duration(delay)
                    );
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.hard_stop.cancelled() => return Err(Verdict::Requeue),
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}

/// The body as it arrived (not as the services left it), with the executionId it was
/// given: a retry or a replay then continues the same execution.
fn with_execution_id(delivery: &Delivery, execution_id: &str) -> Option<Value> {
    match serde_json::from_slice::<Value>(&delivery.body) {
        Ok(Value::Object(mut body)) => {
            body.insert(EXECUTION_ID.into(), Value::String(execution_id.into()));
            Some(Value::Object(body))
        }
        _ => None,
    }
}

fn as_received(delivery: &Delivery, execution_id: &str) -> ParkedBody {
    with_execution_id(delivery, execution_id)
        .map_or_else(|| ParkedBody::from_bytes(&delivery.body), ParkedBody::Json)
}

fn received_bytes(delivery: &Delivery, execution_id: &str) -> Vec<u8> {
    with_execution_id(delivery, execution_id)
        .and_then(|body| serde_json::to_vec(&body).ok())
        .unwrap_or_else(|| delivery.body.clone())
}

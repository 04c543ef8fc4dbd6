//! The ways a message leaves a worker without going on (SPEC 4.2, configuration.md 8): a
//! retry through a delay queue, or parking (a failure with no attempts left, a body that is
//! not a message). Each records what happened before the message is acked.

use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use tracing::{error, warn};

use super::{Delivery, Forward, Handler, Headers, Unsaved, Verdict};
use crate::config::delay_queue;
use crate::message::{headers, Malformed, Message, EXECUTION_ID};
use crate::store::{ParkedBody, ParkedMessage, Stage, Status};
use crate::worker::counters::Outcome;

impl Handler {
    /// Records the failed attempt and puts the message, as received, in the delay queue for
    /// `delay`, from which RabbitMQ returns it to this worker's queue; then it is acked. A
    /// crash before the ack means a redelivery now instead of later, never a loss.
    pub(super) async fn retry_later(
        &self,
        message: &Message,
        delivery: &Delivery,
        stage: Stage,
        delay: Duration,
        forward: &dyn Forward,
    ) -> Verdict {
        let next = delivery.attempt + 1;
        warn!(
            attempt = delivery.attempt,
            "failed, attempt {next} in {}: {}",
            humantime::format_duration(delay),
            stage.error.as_deref().unwrap_or_default()
        );
        let record = self.persist(|| self.store.record_stage(message.execution_id(), &stage));
        match record.await {
            Ok(()) => {}
            Err(Unsaved::Stopped) => return Verdict::Requeue,
            Err(Unsaved::Invalid(reason)) => {
                let error = format!("the store refused the record of this stage: {reason}");
                let parked = Stage {
                    status: Status::Parked,
                    error: Some(error.clone()),
                    ..stage
                };
                return self.park_failed(message, delivery, parked, error).await;
            }
        }
        let headers = Headers::from([
            (headers::ATTEMPT, next.to_string()),
            (headers::STAGES, delivery.stages_passed.to_string()),
        ]);
        let body = || received_bytes(delivery, message.execution_id());
        let queue = delay_queue(&self.def.queue, delay);
        match self
            .publish_until_taken(&queue, body, &headers, forward)
            .await
        {
            Ok(()) => self.counted(Outcome::Retried),
            Err(e) => {
                warn!("could not schedule the retry, message goes back to the queue: {e}");
                Verdict::Requeue
            }
        }
    }

    pub(super) async fn park_failed(
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
            stages_passed: stage.stages_passed,
            error,
            first_failed_at: now,
            last_failed_at: now,
        };
        // The stage first: whoever sees the parked copy (an operator, a replay) finds the
        // execution already marked parked. A crash between the two redelivers the message,
        // which fails and parks again. A parked stage the store refuses (the record that
        // brought the message here may have been refused already) does not keep it from
        // being parked: requeueing would only come back here.
        let record = self.persist(|| self.store.record_stage(message.execution_id(), &stage));
        match record.await {
            Ok(()) => {}
            Err(Unsaved::Stopped) => return Verdict::Requeue,
            Err(Unsaved::Invalid(reason)) => {
                error!("the store refused the parked stage, parking the message anyway: {reason}");
            }
        }
        match self.persist(|| self.store.park(&parked)).await {
            Ok(()) => self.counted(Outcome::Parked),
            Err(unsaved) => unsaved.requeue("parked entry"),
        }
    }

    pub(super) async fn park_malformed(&self, delivery: &Delivery, reason: Malformed) -> Verdict {
        warn!("malformed message parked: {reason}");
        let now = Utc::now();
        let parked = ParkedMessage {
            id: crate::message::new_id(),
            body: ParkedBody::from_bytes(&delivery.body),
            worker: self.def.name.clone(),
            queue: self.def.queue.clone(),
            execution_id: None,
            attempts: 1,
            stages_passed: delivery.stages_passed,
            error: reason.to_string(),
            first_failed_at: now,
            last_failed_at: now,
        };
        match self.persist(|| self.store.park(&parked)).await {
            Ok(()) => self.counted(Outcome::Parked),
            Err(unsaved) => unsaved.requeue("parked entry"),
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

//! What a worker does with one delivery (SPEC 4.2): parse, call the services in order,
//! record the stage, forward, and only then say "ack". The broker side (consuming, acking)
//! is the session's job; this module decides. A retry and parking are in `failure`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use serde_json::Value;
use tracing::{debug, error, info, warn, Instrument};

mod failure;

use super::cancel::{Cancelled, Cancels};
use super::counters::{Counters, Outcome};
use super::in_hand::InHand;
use crate::backoff::Backoff;
use crate::broker::{self, BrokerError, Publisher};
use crate::config::WorkerDef;
use crate::message::{headers, Message};
use crate::services::{CallContext, Caller, ServiceError};
use crate::store::{Stage, Status, Store, StoreError};

/// How long a write waits for an unavailable store: from a tenth of a second up to five.
const STORE_RETRY: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
/// How long a forward RabbitMQ refused (a nack) waits before it is sent again: the same.
const NACK_RETRY: Backoff = STORE_RETRY;

/// Headers dpsd sets on a message it sends on, by name.
pub type Headers = BTreeMap<&'static str, String>;

/// Where the handler sends a message on: the follow queue, a delay queue. The session gives
/// it its confirming [`Publisher`]; the handler's own tests give it a fake that records.
#[async_trait]
pub trait Forward: Send + Sync {
    /// Publishes `body` persistently to `queue` and returns once RabbitMQ confirmed it.
    async fn publish(
        &self,
        queue: &str,
        body: Vec<u8>,
        headers: &Headers,
    ) -> Result<(), BrokerError>;

    /// Whether the connection the message came in on is still there. After it is lost the
    /// broker hands the message out again (perhaps to another replica), so a message whose
    /// services have not started gives up rather than run them beside its redelivery.
    fn connected(&self) -> bool {
        true
    }
}

#[async_trait]
impl Forward for Publisher {
    async fn publish(
        &self,
        queue: &str,
        body: Vec<u8>,
        headers: &Headers,
    ) -> Result<(), BrokerError> {
        Publisher::publish(self, queue, body, broker::properties(headers)).await
    }

    fn connected(&self) -> bool {
        !self.abandoned()
    }
}

/// What this worker did with an execution before, as the store tells it on a redelivery.
enum Prior {
    /// Not completed by this worker: run the services.
    NotDone,
    /// Completed: `result` is what went on as `_last`.
    Done { result: Option<Value> },
}

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
    /// The stages of the chain the message passed before this worker (its `x-dpsd-stages`).
    pub stages_passed: u32,
    /// How many times the broker handed this message out before without a settlement (a
    /// quorum queue's `x-delivery-count`; 0 for classic queues, which do not count).
    pub returned: u32,
}

/// When and how often this worker tried a message: what its stage records.
struct Attempt {
    number: u32,
    stages_passed: u32,
    started_at: chrono::DateTime<Utc>,
    clock: Instant,
}

impl Attempt {
    fn begin(delivery: &Delivery) -> Attempt {
        Attempt {
            number: delivery.attempt,
            stages_passed: delivery.stages_passed,
            started_at: Utc::now(),
            clock: Instant::now(),
        }
    }

    /// The stage this attempt ends with, now.
    fn stage(
        &self,
        def: &WorkerDef,
        status: Status,
        error: Option<String>,
        result: Option<Value>,
    ) -> Stage {
        Stage {
            worker: def.name.clone(),
            state: def.job_state,
            status,
            attempts: self.number,
            stages_passed: self.stages_passed,
            started_at: self.started_at,
            finished_at: Utc::now(),
            duration_ms: self.clock.elapsed().as_millis() as i64,
            error,
            result,
        }
    }
}

/// Why a store operation did not happen.
enum Unsaved {
    /// A hard stop came while waiting for an unavailable store.
    Stopped,
    /// The store refused the data: no retry can help.
    Invalid(String),
}

impl Unsaved {
    /// Sends the message back: for what cannot be parked (the parked entry itself, or a read).
    fn requeue(self, what: &str) -> Verdict {
        if let Unsaved::Invalid(reason) = self {
            error!("the store refused the {what}, message goes back to the queue: {reason}");
        }
        Verdict::Requeue
    }
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
    /// For a quorum queue, `amqp.delivery_limit`: a message handed out that often without a
    /// settlement is parked. None for a classic queue (it does not count deliveries).
    pub park_after: Option<u32>,
    /// The executions cancelled (SPEC 4.5), as `cancel::watch` keeps them from the store.
    pub cancels: Arc<Cancels>,
    /// The executions in hand, so that two copies of one do not run at once here.
    pub in_hand: InHand,
}

impl Handler {
    pub async fn handle(&self, delivery: &Delivery, forward: &dyn Forward) -> Verdict {
        self.counters.started();
        let verdict = match Message::parse(&delivery.body) {
            Ok(message) => {
                let span = tracing::info_span!("message", executionId = %message.execution_id());
                self.in_turn(message, delivery, forward)
                    .instrument(span)
                    .await
            }
            Err(reason) => self.park_malformed(delivery, reason).await,
        };
        self.counters.finished();
        verdict
    }

    /// Processes the message once no other copy of its execution is in hand here (a hard
    /// stop while waiting sends it back).
    async fn in_turn(
        &self,
        message: Message,
        delivery: &Delivery,
        forward: &dyn Forward,
    ) -> Verdict {
        let _held = tokio::select! {
            held = self.in_hand.hold(message.execution_id()) => held,
            () = self.hard_stop.cancelled() => return Verdict::Requeue,
        };
        self.process(message, delivery, forward).await
    }

    async fn process(
        &self,
        mut message: Message,
        delivery: &Delivery,
        forward: &dyn Forward,
    ) -> Verdict {
        let attempt = Attempt::begin(delivery);
        if self.cancels.contains(message.execution_id()) {
            return self.cancelled(&message, &attempt, Cancelled::Before).await;
        }
        if let Some(error) = self.handed_out_too_often(delivery) {
            let stage = attempt.stage(&self.def, Status::Parked, Some(error.clone()), None);
            return self.park_failed(&message, delivery, stage, error).await;
        }
        if delivery.redelivered || delivery.reforwarded {
            match self.prior(message.execution_id()).await {
                Ok(Prior::Done { result }) => {
                    return self.forward_again(message, delivery, result, forward).await
                }
                Ok(Prior::NotDone) => {}
                Err(verdict) => return verdict,
            }
        }
        if !forward.connected() {
            debug!("the connection to RabbitMQ was lost before the services ran: left to the redelivery");
            return Verdict::Requeue;
        }
        let outcome = if message.simulate() {
            Ok(message.last().cloned())
        } else {
            // A cancel while the services run drops their calls: an exec service's group is
            // killed, an HTTP request aborted.
            let id = message.execution_id().to_string();
            tokio::select! {
                outcome = self.run_services(&mut message, delivery.attempt) => outcome,
                () = self.cancels.cancelled(&id) => {
                    return self.cancelled(&message, &attempt, Cancelled::Stopped).await
                }
            }
        };
        // Cancelled while the last service finished: its outcome goes nowhere.
        if self.cancels.contains(message.execution_id()) {
            return self.cancelled(&message, &attempt, Cancelled::After).await;
        }
        let failure = match outcome {
            Ok(result) => {
                let stage = attempt.stage(&self.def, Status::Done, None, result);
                return self
                    .complete(message, delivery, stage, forward, attempt.clock)
                    .await;
            }
            Err(failure) => format!("service {}: {}", failure.service, failure.error),
        };
        let retry = self.def.retry.as_ref();
        match retry.and_then(|p| p.delay_before(delivery.attempt + 1)) {
            Some(delay) => {
                let stage = attempt.stage(&self.def, Status::Retrying, Some(failure), None);
                self.retry_later(&message, delivery, stage, delay, forward)
                    .await
            }
            None => {
                let stage = attempt.stage(&self.def, Status::Parked, Some(failure.clone()), None);
                self.park_failed(&message, delivery, stage, failure).await
            }
        }
    }

    /// A quorum queue's message that RabbitMQ handed out `park_after` times before, each
    /// time without a settlement (the replica or its connection died holding it): likely a
    /// message that kills its replica. It is parked rather than taken once more; the broker's
    /// own limit, a little higher, would drop it.
    fn handed_out_too_often(&self, delivery: &Delivery) -> Option<String> {
        let limit = self.park_after?;
        (delivery.returned >= limit).then(|| {
            format!(
                "delivered {} times without being settled (amqp.delivery_limit is {limit}): \
                 each time the replica holding it, or its connection, went away",
                delivery.returned + 1
            )
        })
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

    /// Records the done stage and forwards side by side (SPEC 4.2: neither waits for the
    /// other), and acks only when both are in: a crash at any point leaves the message
    /// unacked and it comes back. The next worker may record its stage before this one's
    /// record lands; the store keeps job state moving forward only. A record the store
    /// refuses parks the message, whatever became of the forward.
    async fn complete(
        &self,
        message: Message,
        delivery: &Delivery,
        stage: Stage,
        forward: &dyn Forward,
        clock: Instant,
    ) -> Verdict {
        let services_ms = clock.elapsed().as_millis() as u64;
        let record =
            timed(self.persist(|| self.store.record_stage(message.execution_id(), &stage)));
        let sent = timed(self.forward(&message, delivery, forward));
        let ((recorded, store_ms), (sent, confirm_ms)) = tokio::join!(record, sent);
        match (recorded, sent) {
            (Ok(()), Ok(())) => {
                let elapsed_ms = clock.elapsed().as_millis() as u64;
                info!(elapsed_ms, services_ms, store_ms, confirm_ms, "done");
                self.counted(Outcome::Processed)
            }
            (Err(Unsaved::Invalid(reason)), sent) => {
                let forwarded = match (&self.def.follow_queue, sent) {
                    (None, _) => String::new(),
                    (Some(queue), Ok(())) => format!(" (the forward to {queue} was confirmed)"),
                    (Some(queue), Err(_)) => format!(" (nothing went on to {queue})"),
                };
                let error =
                    format!("the store refused the record of this stage: {reason}{forwarded}");
                let parked = Stage {
                    status: Status::Parked,
                    error: Some(error.clone()),
                    result: None,
                    ..stage
                };
                self.park_failed(&message, delivery, parked, error).await
            }
            (Err(Unsaved::Stopped), _) => Verdict::Requeue,
            (Ok(()), Err(e)) => {
                warn!("forward failed, message goes back to the queue: {e}");
                Verdict::Requeue
            }
        }
    }

    /// Whether this worker completed the execution already, and with what result.
    async fn prior(&self, execution_id: &str) -> Result<Prior, Verdict> {
        let execution = self
            .persist(|| self.store.execution(execution_id))
            .await
            .map_err(|unsaved| unsaved.requeue("read"))?;
        let done = execution.as_ref().and_then(|e| e.done_by(&self.def.name));
        Ok(done.map_or(Prior::NotDone, |stage| Prior::Done {
            result: stage.result.clone(),
        }))
    }

    /// A redelivery of a message this worker completed: no service is called again. It is
    /// forwarded again because the replica that completed it may have died between recording
    /// and forwarding; the header makes the next worker skip it if it already has it.
    async fn forward_again(
        &self,
        mut message: Message,
        delivery: &Delivery,
        result: Option<Value>,
        forward: &dyn Forward,
    ) -> Verdict {
        if let Some(result) = result {
            message.set_last(result);
        }
        match self.forward(&message, delivery, forward).await {
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

    /// Sends the message on to the follow queue, one stage further along. While handling a
    /// redelivery (ours or a copy marked by the worker before) another copy may have gone on
    /// already, so the forward carries the mark that makes the next worker check.
    async fn forward(
        &self,
        message: &Message,
        delivery: &Delivery,
        forward: &dyn Forward,
    ) -> Result<(), BrokerError> {
        let Some(queue) = &self.def.follow_queue else {
            return Ok(());
        };
        let passed = delivery.stages_passed.saturating_add(1);
        let mut headers = Headers::from([(headers::STAGES, passed.to_string())]);
        if delivery.redelivered || delivery.reforwarded {
            headers.insert(headers::REFORWARD, "1".to_string());
        }
        self.publish_until_taken(queue, || message.to_bytes(), &headers, forward)
            .await
    }

    /// Publishes `body()` until RabbitMQ takes it: every message the handler sends on (the
    /// forward, a retry to its delay queue) goes through here. A nack (a quorum queue
    /// electing a leader after a node died, a full queue that rejects publishes) is sent
    /// again with back-off, the delivery still in hand: sent back to the queue at once, a
    /// redelivery met the same nack, went back again, and used up `amqp.delivery_limit`
    /// within the election (reliability.md). Other errors end it: with the channel gone the
    /// delivery comes back anyway. A hard stop ends the wait with the nack. `body` is made
    /// again for each try, so the first costs no copy.
    async fn publish_until_taken(
        &self,
        queue: &str,
        body: impl Fn() -> Vec<u8>,
        headers: &Headers,
        forward: &dyn Forward,
    ) -> Result<(), BrokerError> {
        let mut retries = NACK_RETRY.retries();
        loop {
            match forward.publish(queue, body(), headers).await {
                Err(BrokerError::Nacked) => {
                    let delay = retries.next_delay();
                    warn!(
                        "RabbitMQ refused the message for {queue} (nack), sending it again in {}",
                        humantime::format_duration(delay)
                    );
                    if !self.before_retry(delay).await {
                        return Err(BrokerError::Nacked);
                    }
                }
                outcome => return outcome,
            }
        }
    }

    /// A delivery of a cancelled execution (SPEC 4.5): its stage says `cancelled`, nothing
    /// goes on (no forward, no retry), and it is acked. The stage is worth a wait for an
    /// unavailable store (it is how the operator sees the cancel reached this worker), not a
    /// requeue when the store refuses it.
    async fn cancelled(&self, message: &Message, attempt: &Attempt, when: Cancelled) -> Verdict {
        info!("{}", when.reason());
        let error = Some(when.reason().to_string());
        let stage = attempt.stage(&self.def, Status::Cancelled, error, None);
        match self
            .persist(|| self.store.record_stage(message.execution_id(), &stage))
            .await
        {
            Ok(()) => {}
            Err(Unsaved::Stopped) => return Verdict::Requeue,
            Err(Unsaved::Invalid(reason)) => {
                error!("the store refused the cancelled stage, acking anyway: {reason}");
            }
        }
        self.counted(Outcome::Cancelled)
    }

    /// Counts the outcome of a message about to be acked.
    fn counted(&self, outcome: Outcome) -> Verdict {
        self.counters.outcome(outcome);
        Verdict::Ack
    }

    /// Runs a store operation until it succeeds: an unavailable store is waited for (with
    /// back-off), since acking without the write would lose the guarantee. Gives up only on a
    /// hard stop (the message is then redelivered) or when the store rejects the data.
    async fn persist<T, F, Fut>(&self, op: F) -> Result<T, Unsaved>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut retries = STORE_RETRY.retries();
        loop {
            match op().await {
                Ok(value) => return Ok(value),
                Err(StoreError::Invalid(reason)) => return Err(Unsaved::Invalid(reason)),
                Err(StoreError::Unavailable(reason)) => {
                    let delay = retries.next_delay();
                    warn!(
                        "store unavailable, retrying in {}: {reason}",
                        humantime::format_duration(delay)
                    );
                    if !self.before_retry(delay).await {
                        return Err(Unsaved::Stopped);
                    }
                }
            }
        }
    }

    /// Waits `delay` before another try; false when a hard stop came first.
    async fn before_retry(&self, delay: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = self.hard_stop.cancelled() => false,
        }
    }
}

/// Runs `work` and says how long it took, in milliseconds.
async fn timed<T>(work: impl std::future::Future<Output = T>) -> (T, u64) {
    let started = Instant::now();
    let outcome = work.await;
    (outcome, started.elapsed().as_millis() as u64)
}

#[cfg(test)]
mod tests {
    //! The decisions of SPEC 4.2, each against the embedded store and a fake broker.

    use serde_json::json;

    use super::*;
    use crate::config::{Builtin, NamedService, RetryPolicy, ServiceDef, StateSync};
    use crate::store::{EmbeddedStore, ParkedBody, ParkedMessage};
    use crate::worker::fake::FakeBroker;

    /// A handler for worker `w` (queue `in`, follow queue `out`, state 1) running
    /// `services`, on an embedded store in a folder of its own.
    struct World {
        handler: Handler,
        _dir: tempfile::TempDir,
    }

    fn world(services: Vec<Builtin>, retry: Option<RetryPolicy>) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path(), StateSync::Normal).expect("store");
        let services = services
            .into_iter()
            .enumerate()
            .map(|(i, builtin)| NamedService {
                id: format!("s{i}"),
                def: Arc::new(ServiceDef::Builtin(builtin)),
            })
            .collect();
        let def = WorkerDef {
            follow_queue: Some("out".into()),
            services,
            retry,
            ..WorkerDef::example("w", "in")
        };
        let handler = Handler {
            def,
            store: Arc::new(store),
            caller: Caller::default(),
            hard_stop: tokio_util::sync::CancellationToken::new(),
            counters: Arc::new(Counters::default()),
            park_after: Some(5),
            cancels: Arc::new(Cancels::default()),
            in_hand: InHand::default(),
        };
        World { handler, _dir: dir }
    }

    fn three_attempts() -> Option<RetryPolicy> {
        Some(RetryPolicy {
            max_attempts: 3,
            delay: Duration::from_secs(1),
            backoff: 2.0,
            max_delay: Duration::from_secs(60),
        })
    }

    fn delivery(body: Value) -> Delivery {
        Delivery {
            body: serde_json::to_vec(&body).expect("JSON"),
            redelivered: false,
            reforwarded: false,
            attempt: 1,
            stages_passed: 0,
            returned: 0,
        }
    }

    fn failing() -> Builtin {
        Builtin::Fail("boom".into())
    }

    impl World {
        /// Handles a first delivery of `body`.
        async fn handle(&self, body: Value, broker: &FakeBroker) -> Verdict {
            self.handler.handle(&delivery(body), broker).await
        }

        async fn stages(&self, id: &str) -> Vec<(Status, u32)> {
            let execution = self.handler.store.execution(id).await.expect("read");
            let stages = execution.map(|e| e.stages).unwrap_or_default();
            stages.iter().map(|s| (s.status, s.attempts)).collect()
        }

        async fn parked(&self) -> Vec<ParkedMessage> {
            let page = self.handler.store.list_failed(None, 10, 0).await;
            page.expect("list parked").items
        }
    }

    #[tokio::test]
    async fn a_completed_message_is_recorded_forwarded_with_the_result_and_acked() {
        let world = world(vec![Builtin::Constant(json!("test1"))], None);
        let broker = FakeBroker::default();
        let verdict = world
            .handle(json!({"executionId": "e1", "a": 1}), &broker)
            .await;
        assert_eq!(verdict, Verdict::Ack);
        assert_eq!(world.stages("e1").await, [(Status::Done, 1)]);
        let sent = broker.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, "out");
        assert_eq!(
            sent[0].1,
            json!({"executionId": "e1", "a": 1, "_last": "test1"})
        );
        assert_eq!(
            sent[0].2,
            Headers::from([(headers::STAGES, "1".to_string())]),
            "a first forward carries no mark, and one stage passed"
        );
    }

    /// RabbitMQ refusing the forward twice (a follow queue without a leader for a moment):
    /// the message stays in hand and is sent again, not returned to the queue, where each
    /// return counts towards the delivery limit.
    #[tokio::test]
    async fn a_nacked_forward_is_sent_again_and_the_message_acked() {
        let world = world(vec![Builtin::Constant(json!("test1"))], None);
        let broker = FakeBroker::nacking(2);
        let verdict = world.handle(json!({"executionId": "e9"}), &broker).await;
        assert_eq!(verdict, Verdict::Ack);
        assert_eq!(broker.sent().len(), 1, "confirmed once, after two nacks");
        assert_eq!(broker.nacked(), 2);
        assert_eq!(world.stages("e9").await, [(Status::Done, 1)]);
    }

    /// A message still waiting when its connection went: the broker hands it out again,
    /// perhaps to another replica, so this copy runs nothing and records nothing.
    #[tokio::test]
    async fn a_message_whose_connection_went_before_its_services_ran_is_left_alone() {
        let world = world(vec![Builtin::Constant(json!("test1"))], None);
        let broker = FakeBroker::disconnected();
        let verdict = world.handle(json!({"executionId": "e10"}), &broker).await;
        assert_eq!(verdict, Verdict::Requeue);
        assert_eq!(world.stages("e10").await, []);
        assert!(broker.sent().is_empty());
    }

    #[tokio::test]
    async fn a_redelivery_of_a_completed_message_is_forwarded_again_with_the_mark_not_run() {
        let world = world(vec![Builtin::Constant(json!("test1"))], None);
        let broker = FakeBroker::default();
        let body = json!({"executionId": "e2"});
        world.handle(body.clone(), &broker).await;
        let mut again = delivery(body);
        again.redelivered = true;
        let verdict = world.handler.handle(&again, &broker).await;
        assert_eq!(verdict, Verdict::Ack);
        assert_eq!(
            world.stages("e2").await,
            [(Status::Done, 1)],
            "the services ran once: no second stage"
        );
        let sent = broker.sent();
        assert_eq!(sent.len(), 2);
        assert_eq!(
            sent[1].1["_last"],
            json!("test1"),
            "the stored result goes on"
        );
        assert_eq!(
            sent[1].2.get(headers::REFORWARD).map(String::as_str),
            Some("1")
        );
    }

    /// A broker restart's three copies of one execution at once: the one in hand, its
    /// redelivery and the previous worker's marked forward. The later two wait for the
    /// first, find its stage done and are not run: the services ran once.
    #[tokio::test]
    async fn copies_of_an_execution_in_hand_wait_for_it_and_are_not_run_again() {
        let slow = vec![
            Builtin::Sleep(Duration::from_millis(100)),
            Builtin::Constant(json!("test1")),
        ];
        let world = world(slow, None);
        let broker = FakeBroker::default();
        let body = json!({"executionId": "e16"});
        let first = delivery(body.clone());
        let mut redelivered = delivery(body.clone());
        redelivered.redelivered = true;
        let mut marked = delivery(body);
        marked.reforwarded = true;
        let verdicts = tokio::join!(
            world.handler.handle(&first, &broker),
            world.handler.handle(&redelivered, &broker),
            world.handler.handle(&marked, &broker),
        );
        assert_eq!(verdicts, (Verdict::Ack, Verdict::Ack, Verdict::Ack));
        assert_eq!(
            world.stages("e16").await,
            [(Status::Done, 1)],
            "one stage recorded: the services ran once"
        );
        let marks: Vec<_> = broker
            .sent()
            .iter()
            .map(|s| s.2.get(headers::REFORWARD).cloned())
            .collect();
        assert_eq!(
            marks,
            [None, Some("1".into()), Some("1".into())],
            "forwarded again, marked"
        );
    }

    #[tokio::test]
    async fn a_redelivery_of_a_message_not_completed_runs_the_services_and_marks_the_forward() {
        let world = world(vec![Builtin::Constant(json!("test1"))], None);
        let broker = FakeBroker::default();
        let mut first = delivery(json!({"executionId": "e3"}));
        first.reforwarded = true;
        assert_eq!(world.handler.handle(&first, &broker).await, Verdict::Ack);
        assert_eq!(world.stages("e3").await, [(Status::Done, 1)]);
        let mark = broker.sent()[0].2.get(headers::REFORWARD).cloned();
        assert_eq!(
            mark.as_deref(),
            Some("1"),
            "another copy may have gone on before"
        );
    }

    #[tokio::test]
    async fn the_count_of_stages_passed_travels_through_forwards_retries_and_parking() {
        let failing_world = world(vec![failing()], three_attempts());
        let echo_world = world(vec![Builtin::Echo], None);
        let (world, broker) = (&failing_world, FakeBroker::default());
        let mut second_stage = delivery(json!({"executionId": "e15"}));
        second_stage.stages_passed = 2;
        world.handler.handle(&second_stage, &broker).await;
        let stages =
            |broker: &FakeBroker, i: usize| broker.sent()[i].2.get(headers::STAGES).cloned();
        assert_eq!(
            stages(&broker, 0).as_deref(),
            Some("2"),
            "a retry stays at its stage"
        );
        second_stage.attempt = 3;
        world.handler.handle(&second_stage, &broker).await;
        assert_eq!(world.parked().await[0].stages_passed, 2);
        let execution = world.handler.store.execution("e15").await.expect("read");
        let passed: Vec<u32> = execution
            .expect("recorded")
            .stages
            .iter()
            .map(|s| s.stages_passed)
            .collect();
        assert_eq!(passed, [2, 2]);

        echo_world.handler.handle(&second_stage, &broker).await;
        assert_eq!(
            stages(&broker, 1).as_deref(),
            Some("3"),
            "one stage further on"
        );
    }

    /// The race of side by side: the next worker's record lands before this one's. The
    /// execution still ends in the next worker's state.
    #[tokio::test]
    async fn a_record_landing_after_the_next_stage_does_not_move_the_state_back() {
        let world = world(vec![Builtin::Echo], None);
        let next = Stage {
            worker: "w2".into(),
            state: 2,
            status: Status::Done,
            attempts: 1,
            stages_passed: 1,
            started_at: Utc::now(),
            finished_at: Utc::now(),
            duration_ms: 0,
            error: None,
            result: None,
        };
        let store = &world.handler.store;
        store.record_stage("e16", &next).await.expect("record");
        let broker = FakeBroker::default();
        assert_eq!(
            world.handle(json!({"executionId": "e16"}), &broker).await,
            Verdict::Ack
        );
        let execution = store
            .execution("e16")
            .await
            .expect("read")
            .expect("recorded");
        assert_eq!(
            (execution.state, execution.status, execution.worker.as_str()),
            (Some(2), Status::Done, "w2")
        );
        assert_eq!(execution.stages.len(), 2, "the late stage is kept");
    }

    #[tokio::test]
    async fn a_failure_with_attempts_left_goes_to_the_delay_queue_as_received() {
        let world = world(vec![failing()], three_attempts());
        let broker = FakeBroker::default();
        let body = json!({"executionId": "e4", "a": 1});
        let verdict = world.handle(body.clone(), &broker).await;
        assert_eq!(verdict, Verdict::Ack);
        assert_eq!(world.stages("e4").await, [(Status::Retrying, 1)]);
        let sent = broker.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, "in.retry.1000ms");
        assert_eq!(sent[0].1, body, "the body as it came, without _last");
        assert_eq!(
            sent[0].2.get(headers::ATTEMPT).map(String::as_str),
            Some("2")
        );
        assert!(world.parked().await.is_empty());
    }

    /// The delay queue refusing the retry once: it is sent again, not returned to the queue
    /// (from where its services would run again).
    #[tokio::test]
    async fn a_nacked_retry_is_sent_again_to_the_delay_queue() {
        let world = world(vec![failing()], three_attempts());
        let broker = FakeBroker::nacking(1);
        let verdict = world.handle(json!({"executionId": "e10"}), &broker).await;
        assert_eq!(verdict, Verdict::Ack);
        assert_eq!(broker.nacked(), 1);
        let queues: Vec<String> = broker.sent().into_iter().map(|(q, ..)| q).collect();
        assert_eq!(queues, ["in.retry.1000ms"]);
    }

    #[tokio::test]
    async fn the_second_retry_waits_twice_as_long() {
        let world = world(vec![failing()], three_attempts());
        let broker = FakeBroker::default();
        let mut second = delivery(json!({"executionId": "e5"}));
        second.attempt = 2;
        world.handler.handle(&second, &broker).await;
        assert_eq!(broker.sent()[0].0, "in.retry.2000ms");
        assert_eq!(
            broker.sent()[0].2.get(headers::ATTEMPT).map(String::as_str),
            Some("3")
        );
    }

    #[tokio::test]
    async fn the_last_attempt_parks_the_message_and_sends_nothing() {
        let world = world(vec![failing()], three_attempts());
        let broker = FakeBroker::default();
        let mut last = delivery(json!({"executionId": "e6"}));
        last.attempt = 3;
        assert_eq!(world.handler.handle(&last, &broker).await, Verdict::Ack);
        assert!(broker.sent().is_empty());
        assert_eq!(world.stages("e6").await, [(Status::Parked, 3)]);
        let parked = world.parked().await;
        assert_eq!(parked.len(), 1);
        assert_eq!(parked[0].id, "w:e6");
        assert_eq!(parked[0].attempts, 3);
        assert!(
            parked[0].error.contains("service s0: boom"),
            "{:?}",
            parked[0]
        );
    }

    #[tokio::test]
    async fn without_retries_a_failure_is_parked_at_once() {
        let world = world(vec![failing()], None);
        let broker = FakeBroker::default();
        let verdict = world.handle(json!({"executionId": "e7"}), &broker).await;
        assert_eq!(verdict, Verdict::Ack);
        assert_eq!(world.stages("e7").await, [(Status::Parked, 1)]);
        assert_eq!(world.parked().await.len(), 1);
    }

    #[tokio::test]
    async fn a_message_handed_out_too_often_without_a_settlement_is_parked_not_run() {
        let world = world(vec![Builtin::Echo], None);
        let broker = FakeBroker::default();
        let mut worn = delivery(json!({"executionId": "e13"}));
        worn.redelivered = true;
        worn.returned = 4;
        assert_eq!(world.handler.handle(&worn, &broker).await, Verdict::Ack);
        assert_eq!(broker.sent().len(), 1, "under the limit it runs");
        worn.returned = 5;
        let mut second = delivery(json!({"executionId": "e14"}));
        second.returned = 5;
        assert_eq!(world.handler.handle(&second, &broker).await, Verdict::Ack);
        assert_eq!(broker.sent().len(), 1, "at the limit nothing goes on");
        assert_eq!(world.stages("e14").await, [(Status::Parked, 1)]);
        let parked = world.parked().await;
        assert!(
            parked[0].error.starts_with("delivered 6 times"),
            "{:?}",
            parked[0]
        );
    }

    #[tokio::test]
    async fn a_malformed_body_is_parked_with_its_reason_and_acked() {
        let world = world(vec![Builtin::Echo], None);
        let broker = FakeBroker::default();
        let garbage = Delivery {
            body: b"{not json".to_vec(),
            ..delivery(json!({}))
        };
        assert_eq!(world.handler.handle(&garbage, &broker).await, Verdict::Ack);
        assert!(broker.sent().is_empty());
        let parked = world.parked().await;
        assert_eq!(parked.len(), 1);
        assert_eq!(parked[0].body, ParkedBody::Text("{not json".into()));
        assert!(
            parked[0].error.starts_with("body is not JSON"),
            "{:?}",
            parked[0]
        );
        assert_eq!(parked[0].execution_id, None);
    }

    /// A trigger makes SQLite refuse every done record (a constraint error, which no wait
    /// can mend), as MongoDB refuses a document too large.
    fn refuse_done_records(world: &World) {
        let file = world._dir.path().join(crate::store::EMBEDDED_FILE);
        let sqlite = rusqlite::Connection::open(file).expect("open the file");
        sqlite
            .execute_batch(
                "CREATE TRIGGER refuse_new BEFORE INSERT ON job_state WHEN NEW.status = 'done'
                   BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;
                 CREATE TRIGGER refuse_update BEFORE UPDATE ON job_state WHEN NEW.status = 'done'
                   BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
            )
            .expect("triggers");
    }

    #[tokio::test]
    async fn a_record_the_store_refuses_parks_the_message_saying_the_forward_went_on() {
        let world = world(vec![Builtin::Echo], None);
        refuse_done_records(&world);
        let broker = FakeBroker::default();
        let verdict = world.handle(json!({"executionId": "e8"}), &broker).await;
        assert_eq!(verdict, Verdict::Ack, "parked, not requeued for ever");
        assert_eq!(broker.sent().len(), 1, "the forward went beside the record");
        let parked = world.parked().await;
        assert_eq!(parked.len(), 1);
        assert!(
            parked[0]
                .error
                .starts_with("the store refused the record of this stage: ")
                && parked[0]
                    .error
                    .ends_with("(the forward to out was confirmed)"),
            "{:?}",
            parked[0].error
        );
        assert_eq!(world.stages("e8").await, [(Status::Parked, 1)]);
    }

    #[tokio::test]
    async fn a_record_the_store_refuses_with_the_forward_failed_too_parks_it_unsent() {
        let world = world(vec![Builtin::Echo], None);
        refuse_done_records(&world);
        let verdict = world
            .handle(json!({"executionId": "e17"}), &FakeBroker::down())
            .await;
        assert_eq!(verdict, Verdict::Ack);
        let parked = world.parked().await;
        assert!(
            parked[0].error.ends_with("(nothing went on to out)"),
            "{:?}",
            parked[0].error
        );
    }

    #[tokio::test]
    async fn a_forward_that_fails_sends_the_message_back() {
        let world = world(vec![Builtin::Echo], None);
        let broker = FakeBroker::down();
        let verdict = world.handle(json!({"executionId": "e9"}), &broker).await;
        assert_eq!(verdict, Verdict::Requeue);
        assert_eq!(world.stages("e9").await, [(Status::Done, 1)]);
    }

    #[tokio::test]
    async fn a_retry_that_cannot_be_scheduled_sends_the_message_back() {
        let world = world(vec![failing()], three_attempts());
        let broker = FakeBroker::down();
        let verdict = world.handle(json!({"executionId": "e10"}), &broker).await;
        assert_eq!(verdict, Verdict::Requeue);
    }

    #[tokio::test]
    async fn simulate_records_and_forwards_without_calling_services() {
        let world = world(vec![failing()], None);
        let broker = FakeBroker::default();
        let body = json!({"executionId": "e11", "simulate": true});
        let verdict = world.handle(body.clone(), &broker).await;
        assert_eq!(verdict, Verdict::Ack);
        assert_eq!(world.stages("e11").await, [(Status::Done, 1)]);
        assert_eq!(broker.sent()[0].1, body, "simulate kept, no _last added");
    }

    #[tokio::test]
    async fn a_message_without_an_execution_id_gets_one_that_travels_on() {
        let world = world(vec![Builtin::Echo], None);
        let broker = FakeBroker::default();
        world.handle(json!({"a": 1}), &broker).await;
        let sent = broker.sent();
        let id = sent[0].1["executionId"]
            .as_str()
            .expect("an id")
            .to_string();
        assert_eq!(world.stages(&id).await, [(Status::Done, 1)]);
    }

    fn cancel(world: &World, id: &str) {
        let mark = crate::store::Cancellation {
            execution_id: id.into(),
            cancelled_at: Utc::now(),
        };
        world.handler.cancels.add(&[mark]);
    }

    /// SPEC 4.5: every delivery of a cancelled execution, whatever brought it, is acked with
    /// a cancelled stage, no service called (the failing one would retry or park) and
    /// nothing sent on.
    #[tokio::test]
    async fn every_delivery_of_a_cancelled_execution_is_acked_without_services_or_forward() {
        let world = world(vec![failing()], three_attempts());
        cancel(&world, "c1");
        let broker = FakeBroker::default();
        let first = delivery(json!({"executionId": "c1"}));
        let retry = Delivery {
            attempt: 2,
            ..delivery(json!({"executionId": "c1"}))
        };
        let redelivery = Delivery {
            redelivered: true,
            ..delivery(json!({"executionId": "c1"}))
        };
        let later_stage = Delivery {
            stages_passed: 1,
            ..delivery(json!({"executionId": "c1"}))
        };
        let simulated = delivery(json!({"executionId": "c1", "simulate": true}));
        for delivery in [first, retry, redelivery, later_stage, simulated] {
            assert_eq!(world.handler.handle(&delivery, &broker).await, Verdict::Ack);
        }
        assert!(broker.sent().is_empty(), "{:?}", broker.sent());
        let stages = world.stages("c1").await;
        assert_eq!(stages.len(), 5);
        assert!(
            stages
                .iter()
                .all(|(status, _)| *status == Status::Cancelled),
            "{stages:?}"
        );
        let totals = world.handler.counters.totals();
        assert_eq!(
            (totals.cancelled, totals.failed, totals.processed),
            (5, 0, 0)
        );
        assert!(world.parked().await.is_empty());
        let other = world.handle(json!({"executionId": "c2"}), &broker).await;
        assert_eq!(other, Verdict::Ack);
        assert_eq!(
            world.stages("c2").await,
            [(Status::Retrying, 1)],
            "others still run"
        );
    }

    #[tokio::test]
    async fn a_cancel_while_a_service_runs_stops_it_records_cancelled_and_sends_nothing() {
        let world = world(vec![Builtin::Sleep(Duration::from_secs(30))], None);
        let broker = FakeBroker::default();
        let body = json!({"executionId": "c3"});
        let handling = world.handle(body, &broker);
        let cancelling = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            cancel(&world, "c3");
            Instant::now()
        };
        let (verdict, cancelled_at) = tokio::join!(handling, cancelling);
        assert_eq!(verdict, Verdict::Ack);
        assert!(
            cancelled_at.elapsed() < Duration::from_secs(1),
            "stopped at once"
        );
        assert!(broker.sent().is_empty());
        let execution = world.handler.store.execution("c3").await.expect("read");
        let stage = &execution.expect("recorded").stages[0];
        assert_eq!(stage.status, Status::Cancelled);
        assert_eq!(stage.error.as_deref(), Some(Cancelled::Stopped.reason()));
    }

    /// An HTTP service that never answers: the cancel closes its connection (the server
    /// reads the end of the stream), the request is not left running.
    #[tokio::test]
    async fn a_cancel_aborts_a_running_http_call() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/", server.local_addr().expect("addr"));
        let (closed, closing) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::Read;
            let (mut connection, _) = server.accept().expect("accept");
            let mut buf = [0u8; 4096];
            while connection.read(&mut buf).is_ok_and(|n| n > 0) {}
            let _ = closed.send(Instant::now());
        });
        let mut world = world(Vec::new(), None);
        world.handler.def.services = vec![NamedService {
            id: "hangs".into(),
            def: Arc::new(ServiceDef::Http(crate::config::HttpSpec {
                url: url.parse().expect("url"),
                method: reqwest::Method::POST,
                timeout: Duration::from_secs(60),
                headers: BTreeMap::new(),
            })),
        }];
        let broker = FakeBroker::default();
        let handling = world.handle(json!({"executionId": "c4"}), &broker);
        let cancelling = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            cancel(&world, "c4");
            Instant::now()
        };
        let (verdict, cancelled_at) = tokio::join!(handling, cancelling);
        assert_eq!(verdict, Verdict::Ack);
        let closed_at = tokio::task::spawn_blocking(move || {
            closing
                .recv_timeout(Duration::from_secs(2))
                .expect("the connection was closed")
        })
        .await
        .expect("joins");
        assert!(closed_at.duration_since(cancelled_at) < Duration::from_secs(1));
        assert_eq!(world.stages("c4").await, [(Status::Cancelled, 1)]);
        assert!(broker.sent().is_empty());
    }

    #[tokio::test]
    async fn counts_follow_the_outcomes() {
        let world = world(vec![failing()], three_attempts());
        let broker = FakeBroker::default();
        world.handle(json!({"executionId": "e12"}), &broker).await;
        let mut last = delivery(json!({"executionId": "e12"}));
        last.attempt = 3;
        world.handler.handle(&last, &broker).await;
        let totals = world.handler.counters.totals();
        assert_eq!(
            (
                totals.processed,
                totals.retried,
                totals.parked,
                totals.failed,
                totals.in_flight
            ),
            (0, 1, 1, 2, 0)
        );
    }
}

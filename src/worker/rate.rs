//! Waiting for a rate limit (SPEC 4.5) before a message's services start. The store keeps a
//! sliding log of the worker's starts, shared by every replica on every host
//! (`Store::take_rate_slot`); a replica asks it before each start and, while the window is
//! full, sleeps until the oldest start leaves it. A wait is not an attempt: nothing is
//! recorded, the message's attempt number is untouched.
//!
//! No delivery is held anywhere near RabbitMQ's `consumer_timeout` (30 minutes by default):
//! the prefetch is bounded to about a minute of the rate ([`prefetch`]), and a message that
//! still waited [`WAIT_AT_MOST`] goes back to the queue as a fresh copy ([`Turns::wait`]).
//! Workers without `rate_limit` have no `Turns` and pay nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{watch, Mutex};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::counters::Counters;
use super::handler::{Delivery, Forward, Handler, Headers, Verdict};
use crate::backoff::Backoff;
use crate::config::{RateLimit, WorkerDef};
use crate::message::headers;
use crate::store::{RateSlot, Store};

/// The longest a message waits in a replica for its turn before it is handed back: far
/// below `consumer_timeout`, and long enough that a message goes round the queue at most a
/// few times an hour.
pub const WAIT_AT_MOST: Duration = Duration::from_secs(300);

/// A rate-limited replica prefetches about this much of its share of the rate.
const PREFETCHED_FOR: Duration = Duration::from_secs(60);

/// Replicas woken by the same start leaving the window spread their asks over this much.
const JITTER: Duration = Duration::from_millis(20);

/// The window a replica asks the store about is longer than `per` by this share of it (at
/// most [`GUARD_AT_MOST`]). A start is logged at the time it was asked for, and begins when the
/// answer is back: when the answers of one window's starts come back later than those of the
/// next (the store busier then), the starts themselves would be closer than `per`. The guard
/// absorbs that much difference, for a rate that much lower.
const GUARD_SHARE: u32 = 20;
const GUARD_AT_MOST: Duration = Duration::from_millis(50);

/// How long a replica waits for a store it cannot reach before asking again.
const STORE_RETRY: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

/// The prefetch a session asks RabbitMQ for: the worker's, or for a rate-limited worker at
/// most what this replica's share of the rate (the rate over the worker's replicas on one
/// host) starts in [`PREFETCHED_FOR`], and at least 1. More would only wait in the replica.
pub fn prefetch(def: &WorkerDef) -> u16 {
    let Some(limit) = def.rate_limit else {
        return def.prefetch;
    };
    let starts = f64::from(limit.max) * PREFETCHED_FOR.as_secs_f64() / limit.per.as_secs_f64();
    let share = (starts / f64::from(def.replicas.max(1))).ceil();
    share.clamp(1.0, f64::from(def.prefetch)) as u16
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// The start is logged: the services may start.
    Start,
    /// The worker was paused, or the replica is stopping: the message goes back at once,
    /// as prefetched messages do (SPEC 4.5).
    Interrupted,
    /// [`WAIT_AT_MOST`] passed without a turn.
    TooLong,
}

/// One replica's side of its worker's rate limit, for one session: what a message waits on
/// and what interrupts a wait. Cloned into each message's task.
#[derive(Clone)]
pub struct Turns {
    gate: Arc<Gate>,
    paused: watch::Receiver<bool>,
    stopping: CancellationToken,
}

struct Gate {
    store: Arc<dyn Store>,
    worker: String,
    queue: String,
    limit: RateLimit,
    counters: Arc<Counters>,
    /// [`WAIT_AT_MOST`], shorter in tests.
    wait_at_most: Duration,
    /// The replica's messages ask the store one at a time, in the order they came: the
    /// others wait here, not in a poll of the store each.
    asking: Mutex<()>,
}

impl Turns {
    /// None for a worker without `rate_limit`.
    pub fn new(
        handler: &Handler,
        paused: &watch::Receiver<bool>,
        stopping: &CancellationToken,
    ) -> Option<Turns> {
        let limit = guarded(handler.def.rate_limit?);
        let gate = Gate {
            store: handler.store.clone(),
            worker: handler.def.name.clone(),
            queue: handler.def.queue.clone(),
            limit,
            counters: handler.counters.clone(),
            wait_at_most: WAIT_AT_MOST,
            asking: Mutex::new(()),
        };
        Some(Turns {
            gate: Arc::new(gate),
            paused: paused.clone(),
            stopping: stopping.clone(),
        })
    }

    /// Waits for the message's turn. None: its services may start. Some: what to tell the
    /// broker instead, the message having gone back to the queue — requeued when the worker
    /// is paused or the replica stops, or after [`WAIT_AT_MOST`] republished as a copy and
    /// acked: a requeue would count as a delivery of a quorum queue's message and, repeated,
    /// park it for being handed out too often (`amqp.delivery_limit`).
    pub async fn wait(&self, delivery: &Delivery, forward: &dyn Forward) -> Option<Verdict> {
        let began = Instant::now();
        let turn = tokio::select! {
            turn = self.gate.take(began + self.gate.wait_at_most) => turn,
            () = paused(self.paused.clone()) => Turn::Interrupted,
            () = self.stopping.cancelled() => Turn::Interrupted,
        };
        self.gate.counters.rate_waited(began.elapsed());
        match turn {
            Turn::Start => None,
            Turn::Interrupted => Some(Verdict::Requeue),
            Turn::TooLong => Some(self.gate.hand_back(delivery, forward).await),
        }
    }
}

impl Gate {
    /// Asks the store until it logs a start, or `deadline` comes.
    async fn take(&self, deadline: Instant) -> Turn {
        let Ok(_asking) = tokio::time::timeout_at(deadline.into(), self.asking.lock()).await else {
            return Turn::TooLong;
        };
        let mut unavailable = STORE_RETRY.retries();
        loop {
            let now = Utc::now();
            let pause = match self
                .store
                .take_rate_slot(&self.worker, &self.limit, now)
                .await
            {
                Ok(RateSlot::Taken) => return Turn::Start,
                Ok(RateSlot::Full { until }) => {
                    unavailable.reset();
                    (until - now).to_std().unwrap_or_default() + jitter()
                }
                Err(e) => {
                    warn!("cannot take a turn of the rate limit, asking again: {e}");
                    unavailable.next_delay()
                }
            };
            let wake = Instant::now() + pause;
            if wake >= deadline {
                // Waiting out the bound, not handing back at once: else a message whose
                // turn is far off would circle through the queue without a pause.
                tokio::time::sleep_until(deadline.into()).await;
                return Turn::TooLong;
            }
            tokio::time::sleep_until(wake.into()).await;
        }
    }

    /// Publishes a copy of the message to the worker's queue, its headers kept (a copy of a
    /// redelivery carries the reforward mark, so that it is checked against the store as
    /// the redelivery would have been), then acks the original. Requeued when the copy
    /// cannot be published.
    async fn hand_back(&self, delivery: &Delivery, forward: &dyn Forward) -> Verdict {
        let mut marks = Headers::from([(headers::STAGES, delivery.stages_passed.to_string())]);
        if delivery.attempt > 1 {
            marks.insert(headers::ATTEMPT, delivery.attempt.to_string());
        }
        if delivery.redelivered || delivery.reforwarded {
            marks.insert(headers::REFORWARD, "1".to_string());
        }
        match forward
            .publish(&self.queue, delivery.body.clone(), &marks)
            .await
        {
            Ok(()) => {
                info!(
                    waited_s = self.wait_at_most.as_secs(),
                    "no turn of the rate limit: message handed back to the queue"
                );
                Verdict::Ack
            }
            Err(e) => {
                warn!("cannot hand the message back as a copy ({e}): requeued");
                Verdict::Requeue
            }
        }
    }
}

/// The limit with its window lengthened by the guard.
fn guarded(limit: RateLimit) -> RateLimit {
    let guard = (limit.per / GUARD_SHARE).min(GUARD_AT_MOST);
    RateLimit {
        per: limit.per + guard,
        ..limit
    }
}

/// Resolves once the worker is paused (never, when the pause can no longer be watched).
async fn paused(mut paused: watch::Receiver<bool>) {
    if paused.wait_for(|paused| *paused).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A fraction of [`JITTER`], different for each ask.
fn jitter() -> Duration {
    let random = uuid::Uuid::new_v4().as_u128() as u64;
    Duration::from_micros(random % JITTER.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EmbeddedStore;
    use crate::worker::fake::FakeBroker;

    /// Turns of worker `w` (queue `q`) at `max` per `per` on an embedded store of its own,
    /// giving up after `wait_at_most`; and the sender of its pause.
    struct World {
        turns: Turns,
        pause: watch::Sender<bool>,
        _dir: tempfile::TempDir,
    }

    fn world(max: u32, per: Duration, wait_at_most: Duration) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path(), Default::default()).expect("store");
        let (pause, paused) = watch::channel(false);
        let gate = Gate {
            store: Arc::new(store),
            worker: "w".into(),
            queue: "q".into(),
            limit: RateLimit { max, per },
            counters: Arc::new(Counters::default()),
            wait_at_most,
            asking: Mutex::new(()),
        };
        let turns = Turns {
            gate: Arc::new(gate),
            paused,
            stopping: CancellationToken::new(),
        };
        World {
            turns,
            pause,
            _dir: dir,
        }
    }

    fn delivery() -> Delivery {
        Delivery {
            body: br#"{"executionId": "e1"}"#.to_vec(),
            redelivered: true,
            reforwarded: false,
            attempt: 3,
            stages_passed: 2,
            returned: 0,
        }
    }

    #[tokio::test]
    async fn turns_come_within_the_limit_and_the_wait_is_counted() {
        let world = world(2, Duration::from_millis(300), WAIT_AT_MOST);
        let recorder = FakeBroker::default();
        let began = Instant::now();
        let message = delivery();
        let waits = (0..4).map(|_| world.turns.wait(&message, &recorder));
        let verdicts = futures::future::join_all(waits).await;
        assert_eq!(
            verdicts,
            [None, None, None, None],
            "all start, none handed back"
        );
        // The third needs the first start out of its window.
        assert!(
            began.elapsed() >= Duration::from_millis(300),
            "{:?}",
            began.elapsed()
        );
        let waited = world.turns.gate.counters.totals().rate_limit_wait_seconds;
        assert!(waited >= 0.3, "waited {waited} s");
        assert!(recorder.sent().is_empty());
    }

    #[tokio::test]
    async fn a_message_without_a_turn_goes_back_as_a_copy_with_its_marks() {
        let world = world(1, Duration::from_secs(3600), Duration::from_millis(200));
        let recorder = FakeBroker::default();
        let message = delivery();
        assert_eq!(world.turns.wait(&message, &recorder).await, None);
        let began = Instant::now();
        assert_eq!(
            world.turns.wait(&message, &recorder).await,
            Some(Verdict::Ack),
            "the copy is confirmed: the delivery is done with"
        );
        assert!(
            began.elapsed() >= Duration::from_millis(200),
            "waited out the bound"
        );
        let sent = recorder.sent();
        assert_eq!(sent.len(), 1);
        let (queue, body, marks) = &sent[0];
        let received: serde_json::Value = serde_json::from_slice(&message.body).expect("JSON");
        assert_eq!((queue.as_str(), body), ("q", &received));
        let mark = |name| marks.get(name).map(String::as_str);
        assert_eq!(
            (
                mark(headers::ATTEMPT),
                mark(headers::STAGES),
                mark(headers::REFORWARD)
            ),
            (Some("3"), Some("2"), Some("1"))
        );
        let refusing = FakeBroker::down();
        assert_eq!(
            world.turns.wait(&message, &refusing).await,
            Some(Verdict::Requeue),
            "no copy, so the delivery itself goes back"
        );
    }

    #[tokio::test]
    async fn a_pause_sends_a_waiting_message_back_at_once() {
        let world = world(1, Duration::from_secs(3600), WAIT_AT_MOST);
        let recorder = FakeBroker::default();
        let message = delivery();
        assert_eq!(world.turns.wait(&message, &recorder).await, None);
        let pause = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            world.pause.send_replace(true);
        };
        let began = Instant::now();
        let (verdict, ()) = tokio::join!(world.turns.wait(&message, &recorder), pause);
        assert_eq!(verdict, Some(Verdict::Requeue));
        assert!(
            began.elapsed() < Duration::from_secs(2),
            "{:?}",
            began.elapsed()
        );
        assert!(recorder.sent().is_empty());
    }

    fn limited(max: u32, per: Duration, replicas: u32, prefetch: u16) -> WorkerDef {
        WorkerDef {
            rate_limit: Some(RateLimit { max, per }),
            replicas,
            prefetch,
            ..WorkerDef::example("w", "q")
        }
    }

    #[test]
    fn the_prefetch_holds_about_a_minute_of_a_replicas_share() {
        let minute = Duration::from_secs(60);
        assert_eq!(prefetch(&WorkerDef::example("w", "q")), 10, "no limit");
        // 100 a minute over 4 replicas: 25 each, more than the worker's 10.
        assert_eq!(prefetch(&limited(100, minute, 4, 10)), 10);
        // 5 a second over 2 replicas: 150 each, capped by the worker's.
        assert_eq!(prefetch(&limited(5, Duration::from_secs(1), 2, 50)), 50);
        // 10 an hour over 3 replicas: a fraction of one, so one.
        assert_eq!(prefetch(&limited(10, minute * 60, 3, 10)), 1);
        // 6 a minute over 4: 1.5, rounded up.
        assert_eq!(prefetch(&limited(6, minute, 4, 10)), 2);
    }

    #[test]
    fn the_window_asked_about_is_a_little_longer() {
        let per = |ms| {
            guarded(RateLimit {
                max: 5,
                per: Duration::from_millis(ms),
            })
            .per
        };
        assert_eq!(per(1000), Duration::from_millis(1050));
        assert_eq!(per(100), Duration::from_millis(105));
        assert_eq!(per(60_000), Duration::from_millis(60_050));
    }

    #[test]
    fn jitter_stays_within_its_bound() {
        assert!((0..100).map(|_| jitter()).all(|j| j < JITTER));
    }
}

//! What a replica counts (messages processed, failed, retried, parked, cancelled, in flight; service
//! call durations) and how it tells the supervisor: one JSON line a second on its stdout,
//! which the supervisor reads through a pipe. Counts are cumulative since the replica
//! started; the supervisor adds up replicas and keeps the counts of those that exited.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Upper bounds (seconds) of the service-duration histogram buckets.
pub const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default)]
pub struct Counters {
    processed: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    parked: AtomicU64,
    cancelled: AtomicU64,
    in_flight: AtomicU64,
    /// Microseconds messages waited for a rate limit's turn (SPEC 4.5).
    rate_waited: AtomicU64,
    services: Mutex<BTreeMap<String, Histogram>>,
}

/// Service call durations: counts per bucket (cumulative, as Prometheus has them), the
/// count and the sum.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Histogram {
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn observe(&mut self, seconds: f64) {
        if self.buckets.len() != BUCKETS.len() {
            self.buckets = vec![0; BUCKETS.len()];
        }
        for (bucket, bound) in self.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum_seconds += seconds;
    }

    pub fn add(&mut self, other: &Histogram) {
        if self.buckets.len() != other.buckets.len() {
            self.buckets = vec![0; other.buckets.len()];
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum_seconds += other.sum_seconds;
    }
}

/// One report line: the replica's counts so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub processed: u64,
    pub failed: u64,
    pub retried: u64,
    pub parked: u64,
    /// Deliveries of cancelled executions acked without (finishing) their services.
    #[serde(default)]
    pub cancelled: u64,
    pub in_flight: u64,
    pub services: BTreeMap<String, Histogram>,
    /// Time messages waited for a turn of the worker's rate limit, summed over messages.
    #[serde(default)]
    pub rate_limit_wait_seconds: f64,
}

impl Totals {
    /// Adds `other`'s counts; `in_flight` too (callers zero it for exited replicas).
    pub fn add(&mut self, other: &Totals) {
        self.processed += other.processed;
        self.failed += other.failed;
        self.retried += other.retried;
        self.parked += other.parked;
        self.cancelled += other.cancelled;
        self.in_flight += other.in_flight;
        self.rate_limit_wait_seconds += other.rate_limit_wait_seconds;
        for (service, histogram) in &other.services {
            self.services
                .entry(service.clone())
                .or_default()
                .add(histogram);
        }
    }
}

/// What happened to a message, for counting.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Processed,
    Retried,
    Parked,
    /// The execution was cancelled (SPEC 4.5): not a failure.
    Cancelled,
}

impl Counters {
    pub fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub fn finished(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// A message's outcome; retried and parked ones also count as failed.
    pub fn outcome(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Processed => &self.processed,
            Outcome::Retried => &self.retried,
            Outcome::Parked => &self.parked,
            Outcome::Cancelled => &self.cancelled,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if matches!(outcome, Outcome::Retried | Outcome::Parked) {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn service_call(&self, service: &str, took: Duration) {
        let mut services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        services
            .entry(service.to_string())
            .or_default()
            .observe(took.as_secs_f64());
    }

    /// A message's wait for its turn of the rate limit, counted when it ends.
    pub fn rate_waited(&self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.rate_waited.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn totals(&self) -> Totals {
        Totals {
            processed: self.processed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            parked: self.parked.load(Ordering::Relaxed),
            cancelled: self.cancelled.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            rate_limit_wait_seconds: self.rate_waited.load(Ordering::Relaxed) as f64 / 1e6,
            services: self
                .services
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// Writes the counts to stdout each second they changed (a supervised replica's stdout is a
/// pipe to the supervisor).
pub async fn report(counters: std::sync::Arc<Counters>) {
    let mut last = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let totals = counters.totals();
        if last.as_ref() == Some(&totals) {
            continue;
        }
        if !report_once(&totals) {
            return; // the supervisor is gone (the replica will be too)
        }
        last = Some(totals);
    }
}

/// One report line on stdout; false when none could be written.
pub fn report_once(totals: &Totals) -> bool {
    let Ok(line) = serde_json::to_string(totals) else {
        return false;
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_add_up() {
        let mut h = Histogram::default();
        h.observe(0.003);
        h.observe(0.2);
        assert_eq!(h.buckets[..7], [0, 1, 1, 1, 1, 1, 2]);
        assert_eq!(h.count, 2);
        let mut total = Histogram::default();
        total.add(&h);
        total.add(&h);
        assert_eq!((total.count, total.buckets[11]), (4, 4));
    }

    #[test]
    fn failures_count_as_failed_too() {
        let c = Counters::default();
        c.outcome(Outcome::Processed);
        c.outcome(Outcome::Retried);
        c.outcome(Outcome::Parked);
        c.outcome(Outcome::Cancelled);
        c.started();
        let t = c.totals();
        assert_eq!(
            (
                t.processed,
                t.failed,
                t.retried,
                t.parked,
                t.cancelled,
                t.in_flight
            ),
            (1, 2, 1, 1, 1, 1),
            "a cancel is not a failure"
        );
    }
}

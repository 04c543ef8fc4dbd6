//! The recent past of each worker, for the dashboard's charts (SPEC 9): every `INTERVAL` the
//! daemon samples what `/metrics` shows (the supervisor's counts, added up over replicas, and
//! the queues' depths) and keeps, per worker, one point of what happened in that interval:
//! messages processed, failed, retried and parked, the queue's depth, and percentiles of the
//! service calls' durations from the histogram buckets' growth. Each worker's points are a
//! ring of `CAPACITY` (one hour), allocated once: memory is bounded by the number of workers,
//! whatever the traffic (about 62 KiB a worker, see `tests`). A worker gone from the
//! configuration takes its ring with it. Kept in memory only: a restarted daemon starts
//! with an empty history.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::broker::QueueStats;
use crate::supervisor::{WorkerReport, WorkersSnapshot};
use crate::worker::{Histogram, BUCKETS};

/// How often a point is taken.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// Points kept per worker: an hour of them.
pub const CAPACITY: usize = 3600 / INTERVAL.as_secs() as usize;

/// What one worker did in the interval that ended at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Point {
    pub at: DateTime<Utc>,
    pub processed: u64,
    /// Failed attempts (each retry and each parking counts, as on `/metrics`).
    pub failed: u64,
    pub retried: u64,
    pub parked: u64,
    /// Messages ready in the worker's queue at `at`; None while RabbitMQ is not answering.
    pub queue_depth: Option<u32>,
    /// Of the service calls that ended in the interval (all the worker's services); None
    /// when there were none.
    pub service_seconds: Option<Percentiles>,
}

/// Estimated from the histogram's buckets as Prometheus's `histogram_quantile` does: linear
/// within the bucket the rank falls in; beyond the last bound (10 s), that bound.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

/// Counts so far of one worker, to take the next interval's growth from.
#[derive(Debug, Clone, Default, PartialEq)]
struct Cumulative {
    processed: u64,
    failed: u64,
    retried: u64,
    parked: u64,
    calls: Histogram,
}

impl Cumulative {
    fn of(report: &WorkerReport) -> Cumulative {
        let counters = &report.counters;
        let mut calls = Histogram::default();
        for histogram in counters.services.values() {
            calls.add(histogram);
        }
        Cumulative {
            processed: counters.processed,
            failed: counters.failed,
            retried: counters.retried,
            parked: counters.parked,
            calls,
        }
    }
}

#[derive(Debug)]
struct Ring {
    last: Cumulative,
    points: VecDeque<Point>,
}

impl Ring {
    fn new() -> Ring {
        Ring {
            last: Cumulative::default(),
            points: VecDeque::with_capacity(CAPACITY),
        }
    }

    fn push(&mut self, point: Point) {
        if self.points.len() == CAPACITY {
            self.points.pop_front();
        }
        self.points.push_back(point);
    }
}

/// Every worker's points; `record` adds one point to each, `since` reads them.
#[derive(Debug, Default)]
pub struct History {
    workers: BTreeMap<String, Ring>,
}

/// The history as the sampler and the API share it.
pub type Shared = Arc<Mutex<History>>;

/// One worker's points, oldest first, as `GET /api/history` shows them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerHistory {
    pub worker: String,
    pub points: Vec<Point>,
}

impl History {
    /// A point for each worker of `workers`: what its counts grew by since the last one (a
    /// new worker's since zero: the daemon's counts start with it).
    pub fn record(
        &mut self,
        at: DateTime<Utc>,
        workers: &WorkersSnapshot,
        queues: &BTreeMap<String, QueueStats>,
    ) {
        self.workers.retain(|name, _| workers.contains_key(name));
        for (name, report) in workers {
            let ring = self.workers.entry(name.clone()).or_insert_with(Ring::new);
            let now = Cumulative::of(report);
            let point = Point {
                at,
                processed: now.processed.saturating_sub(ring.last.processed),
                failed: now.failed.saturating_sub(ring.last.failed),
                retried: now.retried.saturating_sub(ring.last.retried),
                parked: now.parked.saturating_sub(ring.last.parked),
                queue_depth: queues.get(&report.queue).map(|s| s.messages),
                service_seconds: percentiles(&grown(&now.calls, &ring.last.calls)),
            };
            ring.push(point);
            ring.last = now;
        }
    }

    /// Each worker's points taken after `after`, oldest first.
    pub fn since(&self, after: DateTime<Utc>) -> Vec<WorkerHistory> {
        self.workers
            .iter()
            .map(|(name, ring)| WorkerHistory {
                worker: name.clone(),
                points: ring
                    .points
                    .iter()
                    .filter(|p| p.at > after)
                    .copied()
                    .collect(),
            })
            .collect()
    }
}

/// The calls of the interval: each bucket's growth.
fn grown(now: &Histogram, before: &Histogram) -> Histogram {
    let bucket = |i: usize| before.buckets.get(i).copied().unwrap_or(0);
    Histogram {
        buckets: (now.buckets.iter().enumerate())
            .map(|(i, n)| n.saturating_sub(bucket(i)))
            .collect(),
        count: now.count.saturating_sub(before.count),
        sum_seconds: (now.sum_seconds - before.sum_seconds).max(0.0),
    }
}

fn percentiles(calls: &Histogram) -> Option<Percentiles> {
    // To the microsecond: the estimate is no finer, and 0.0009000000000000001 is noise.
    let at = |q: f64| (quantile(calls, q) * 1e6).round() / 1e6;
    (calls.count > 0).then(|| Percentiles {
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
    })
}

/// `q` of the calls in `calls` (cumulative buckets over `BUCKETS`, `count` with those
/// beyond the last bound).
fn quantile(calls: &Histogram, q: f64) -> f64 {
    let rank = q * calls.count as f64;
    let mut below = (0.0, 0u64); // (lower bound, calls under it)
    for (bound, cumulative) in BUCKETS.iter().zip(&calls.buckets) {
        if *cumulative as f64 >= rank {
            let (lower, under) = below;
            let within = (*cumulative - under) as f64;
            if within == 0.0 {
                return *bound;
            }
            return lower + (bound - lower) * (rank - under as f64) / within;
        }
        below = (*bound, *cumulative);
    }
    BUCKETS[BUCKETS.len() - 1]
}

/// Takes a point every `INTERVAL` until `stop`.
pub async fn keep(
    history: Shared,
    workers: watch::Receiver<WorkersSnapshot>,
    queues: watch::Receiver<BTreeMap<String, QueueStats>>,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + INTERVAL, INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let snapshot = workers.borrow().clone();
        let depths = queues.borrow().clone();
        // Milliseconds, as every other time the API shows.
        let now = Utc::now();
        let now = now
            .duration_trunc(chrono::Duration::milliseconds(1))
            .unwrap_or(now);
        history
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .record(now, &snapshot, &depths);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::Totals;

    fn report(processed: u64, parked: u64, calls: &[f64]) -> WorkerReport {
        let mut histogram = Histogram::default();
        for seconds in calls {
            histogram.observe(*seconds);
        }
        WorkerReport {
            queue: "q".into(),
            counters: Totals {
                processed,
                failed: parked,
                parked,
                services: BTreeMap::from([("s".to_string(), histogram)]),
                ..Totals::default()
            },
            ..WorkerReport::default()
        }
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_796_000_000 + seconds, 0).expect("a time")
    }

    #[test]
    fn a_point_holds_what_the_interval_added() {
        let mut history = History::default();
        let queues = BTreeMap::from([(
            "q".to_string(),
            QueueStats {
                messages: 7,
                consumers: 1,
            },
        )]);
        let workers = |r: WorkerReport| BTreeMap::from([("w".to_string(), r)]);
        history.record(at(5), &workers(report(3, 1, &[0.002; 4])), &queues);
        history.record(
            at(10),
            &workers(report(3, 1, &[0.002; 4])),
            &BTreeMap::new(),
        );
        let calls: Vec<f64> = [[0.002; 4].as_slice(), &[0.3; 10]].concat();
        history.record(at(15), &workers(report(13, 2, &calls)), &queues);
        let points = &history.since(at(0))[0].points;
        let counts: Vec<(u64, u64, u64, Option<u32>)> = points
            .iter()
            .map(|p| (p.processed, p.failed, p.parked, p.queue_depth))
            .collect();
        assert_eq!(
            counts,
            [(3, 1, 1, Some(7)), (0, 0, 0, None), (10, 1, 1, Some(7))]
        );
        // The first four calls (1-5 ms) only; none in the second interval; in the third the
        // ten of 300 ms, all in the bucket 250-500 ms.
        let first = points[0].service_seconds.expect("calls");
        assert!(first.p50 > 0.001 && first.p99 <= 0.005, "{first:?}");
        assert_eq!(points[1].service_seconds, None);
        let third = points[2].service_seconds.expect("calls");
        assert!(third.p50 > 0.25 && third.p99 <= 0.5, "{third:?}");
        assert_eq!(history.since(at(10))[0].points.len(), 1);
    }

    #[test]
    fn quantiles_follow_the_buckets_and_stop_at_the_last_bound() {
        let mut calls = Histogram::default();
        for _ in 0..50 {
            calls.observe(0.0005);
        }
        for _ in 0..50 {
            calls.observe(60.0);
        }
        let p = percentiles(&calls).expect("calls");
        assert!(p.p50 <= 0.001, "{p:?}");
        assert_eq!((p.p90, p.p99), (10.0, 10.0));
        assert_eq!(percentiles(&Histogram::default()), None);
    }

    /// The ring never grows past an hour, and a removed worker's goes.
    #[test]
    fn memory_is_bounded_by_the_workers_not_the_time() {
        let mut history = History::default();
        let mut workers = BTreeMap::from([
            ("a".to_string(), report(0, 0, &[])),
            ("b".to_string(), report(0, 0, &[])),
        ]);
        for n in 0..(CAPACITY as i64 + 100) {
            history.record(at(5 * n), &workers, &BTreeMap::new());
        }
        for ring in history.workers.values() {
            assert_eq!(ring.points.len(), CAPACITY);
            assert_eq!(ring.points.capacity(), CAPACITY);
        }
        workers.remove("b");
        history.record(at(0), &workers, &BTreeMap::new());
        assert_eq!(history.since(at(-1)).len(), 1);
    }

    /// The figure docs/architecture.md gives: a point's size times an hour of them, plus the
    /// ring's own and the last counts: 63,560 bytes (about 62 KiB) a worker, 6.1 MiB for 100.
    #[test]
    fn an_hour_of_one_worker_is_about_62_kib() {
        let point = std::mem::size_of::<Point>();
        assert_eq!(point, 88);
        let ring = std::mem::size_of::<Ring>() + CAPACITY * point + BUCKETS.len() * 8;
        assert_eq!(ring, 63_560);
    }
}

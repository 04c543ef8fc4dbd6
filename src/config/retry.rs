//! Delayed retries (SPEC 4.1): how long before attempt N, and the name of the delay queue
//! the message waits in. The wait happens in RabbitMQ, in one delay queue per distinct
//! delay (see `broker::topology`), so a pending retry survives restarts of dpsd and a long
//! delay never holds up a short one.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A worker's `retry:` section, validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Before the second attempt.
    pub delay: Duration,
    /// Each further delay is multiplied by this.
    pub backoff: f64,
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// The wait before `attempt` (2 for the first retry), or None when `attempt` is past
    /// `max_attempts` (the message is parked then).
    pub fn delay_before(&self, attempt: u32) -> Option<Duration> {
        if attempt < 2 || attempt > self.max_attempts {
            return None;
        }
        let factor = self.backoff.powi(attempt as i32 - 2);
        let delay = self.delay.as_secs_f64() * factor;
        let capped = delay.min(self.max_delay.as_secs_f64());
        // Whole milliseconds: the delay names its queue, so it must be exact.
        Some(Duration::from_millis((capped * 1000.0).round() as u64))
    }
}

impl RetryPolicy {
    /// Every distinct delay, each of which has its delay queue.
    pub fn delays(&self) -> Vec<Duration> {
        let mut delays: Vec<Duration> = (2..=self.max_attempts)
            .filter_map(|a| self.delay_before(a))
            .collect();
        delays.dedup();
        delays
    }
}

/// The delay queue holding messages of `queue` for `delay`.
pub fn delay_queue(queue: &str, delay: Duration) -> String {
    format!("{queue}.retry.{}ms", delay.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: u32, delay_ms: u64, backoff: f64, max_ms: u64) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            delay: Duration::from_millis(delay_ms),
            backoff,
            max_delay: Duration::from_millis(max_ms),
        }
    }

    #[test]
    fn delays_grow_by_the_backoff_up_to_the_maximum() {
        let p = policy(6, 10_000, 2.0, 45_000);
        let delays: Vec<Option<u64>> = (1..=7)
            .map(|a| p.delay_before(a).map(|d| d.as_millis() as u64))
            .collect();
        assert_eq!(
            delays,
            [
                None,
                Some(10_000),
                Some(20_000),
                Some(40_000),
                Some(45_000),
                Some(45_000),
                None
            ]
        );
    }

    #[test]
    fn fractional_backoff_rounds_to_whole_milliseconds() {
        let p = policy(4, 1000, 1.5, 60_000);
        assert_eq!(p.delay_before(3), Some(Duration::from_millis(1500)));
        assert_eq!(p.delay_before(4), Some(Duration::from_millis(2250)));
    }

    #[test]
    fn one_attempt_means_no_retry() {
        assert_eq!(policy(1, 1000, 2.0, 1000).delay_before(2), None);
        assert!(policy(1, 1000, 2.0, 1000).delays().is_empty());
    }

    #[test]
    fn each_distinct_delay_once() {
        let delays: Vec<u128> = policy(6, 10_000, 2.0, 45_000)
            .delays()
            .iter()
            .map(Duration::as_millis)
            .collect();
        assert_eq!(delays, [10_000, 20_000, 40_000, 45_000]);
    }

    #[test]
    fn delay_queues_are_named_by_their_delay() {
        assert_eq!(
            delay_queue("stage1", Duration::from_secs(10)),
            "stage1.retry.10000ms"
        );
    }
}

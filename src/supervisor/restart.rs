//! When to restart a replica that exited (SPEC 10): after `restart_backoff`, doubling with
//! each failure in a row, from the start again after a healthy minute. Pure, so the policy
//! is tested without processes or clocks.

use std::time::Duration;

use crate::backoff::Backoff;

/// A replica that ran this long was healthy: its next failure starts the back-off afresh.
pub const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Delay before restarting a replica, given how many times in a row it failed before this
/// exit and how long this run lasted. Returns the delay and the new count of failures.
pub fn delay(backoff: Backoff, failures_in_row: u32, ran_for: Duration) -> (Duration, u32) {
    let failures = if ran_for >= HEALTHY_RUN {
        0
    } else {
        failures_in_row
    };
    (backoff.delay(failures), failures.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(60))
    }

    #[test]
    fn doubles_up_to_the_maximum() {
        let quick = Duration::from_secs(2);
        let mut failures = 0;
        let mut delays = Vec::new();
        for _ in 0..9 {
            let (delay, next) = delay(backoff(), failures, quick);
            delays.push(delay.as_secs());
            failures = next;
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn a_healthy_minute_resets_the_back_off() {
        let (delay, failures) = delay(backoff(), 6, Duration::from_secs(61));
        assert_eq!((delay.as_secs(), failures), (1, 1));
    }

    #[test]
    fn huge_failure_counts_do_not_overflow() {
        let (delay, failures) = delay(backoff(), u32::MAX, Duration::ZERO);
        assert_eq!((delay.as_secs(), failures), (60, u32::MAX));
    }
}

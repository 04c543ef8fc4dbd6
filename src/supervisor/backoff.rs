//! When to restart a replica that exited: the restart policy as a pure function, so it can
//! be tested without processes or clocks.

use std::time::Duration;

use crate::config::BackoffSettings;

/// A replica that ran this long was healthy: its next failure starts the back-off afresh.
pub const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Delay before restarting a replica, given how many times in a row it failed before this
/// exit and how long this run lasted. Returns the delay and the new count of failures.
pub fn restart_delay(
    settings: &BackoffSettings,
    failures_in_row: u32,
    ran_for: Duration,
) -> (Duration, u32) {
    let failures = if ran_for >= HEALTHY_RUN {
        0
    } else {
        failures_in_row
    };
    let factor = 2u32.saturating_pow(failures.min(30));
    let delay = settings.initial.saturating_mul(factor).min(settings.max);
    (delay, failures + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BackoffSettings {
        BackoffSettings {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }

    #[test]
    fn doubles_up_to_the_maximum() {
        let quick = Duration::from_secs(2);
        let mut failures = 0;
        let mut delays = Vec::new();
        for _ in 0..9 {
            let (delay, next) = restart_delay(&settings(), failures, quick);
            delays.push(delay.as_secs());
            failures = next;
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn a_healthy_minute_resets_the_back_off() {
        let (delay, failures) = restart_delay(&settings(), 6, Duration::from_secs(61));
        assert_eq!((delay.as_secs(), failures), (1, 1));
    }

    #[test]
    fn huge_failure_counts_do_not_overflow() {
        let (delay, _) = restart_delay(&settings(), u32::MAX - 1, Duration::ZERO);
        assert_eq!(delay.as_secs(), 60);
    }
}

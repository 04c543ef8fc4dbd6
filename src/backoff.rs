//! Exponential back-off, the one policy behind every "try again later" in dpsd: a replica's
//! restart, a worker's reconnect to RabbitMQ, a write waiting for the store. Delays double
//! from `initial` up to `max`; a long healthy run starts them afresh (the caller decides what
//! healthy means and calls [`Retries::reset`]).

use std::time::Duration;

use crate::config::BackoffSettings;

/// Delays doubling from `initial` to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { initial, max }
    }

    /// The wait after `failures` failures in a row before this one (0: `initial`).
    /// Saturates rather than overflowing, however many failures.
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.min(30));
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// A fresh count of failures in a row.
    pub fn retries(self) -> Retries {
        Retries {
            backoff: self,
            failures: 0,
        }
    }
}

impl From<&BackoffSettings> for Backoff {
    fn from(settings: &BackoffSettings) -> Backoff {
        Backoff::new(settings.initial, settings.max)
    }
}

/// Failures in a row under one [`Backoff`]: each [`Retries::next_delay`] is twice the last.
#[derive(Debug, Clone)]
pub struct Retries {
    backoff: Backoff,
    failures: u32,
}

impl Retries {
    /// The wait before the next try; counts one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.backoff.delay(self.failures);
        self.failures = self.failures.saturating_add(1);
        delay
    }

    /// Failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// After a healthy stretch: the next wait is `initial` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn delays_double_up_to_the_maximum() {
        let mut retries = Backoff::new(SECOND, 60 * SECOND).retries();
        let delays: Vec<u64> = (0..9).map(|_| retries.next_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retries.failures(), 9);
    }

    #[test]
    fn a_reset_starts_again_at_the_initial_delay() {
        let mut retries = Backoff::new(Duration::from_millis(200), SECOND).retries();
        retries.next_delay();
        retries.next_delay();
        retries.reset();
        assert_eq!(retries.next_delay(), Duration::from_millis(200));
    }

    #[test]
    fn huge_failure_counts_and_long_delays_do_not_overflow() {
        let backoff = Backoff::new(SECOND, 60 * SECOND);
        assert_eq!(backoff.delay(u32::MAX), 60 * SECOND);
        let huge = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(huge.delay(5), Duration::MAX);
    }
}

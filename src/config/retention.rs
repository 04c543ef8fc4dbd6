//! `retention:` (SPEC 3.2): how long state is kept. Finished executions go first, unfinished
//! ones (stuck, or whose chain was abandoned) much later, and parked messages only when the
//! operator asks, since each is a failure someone has to look at.

use std::time::Duration;

use serde::{Deserialize, Serialize};

const DAY: u64 = 24 * 60 * 60;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Finished executions (done at the end of their chain, or cancelled), by `updatedAt`.
    #[serde(with = "humantime_serde")]
    pub executions: Duration,
    /// Any other execution not updated for this long, unless a parked message of it is kept.
    #[serde(with = "humantime_serde")]
    pub unfinished: Duration,
    /// Parked messages by their last failure; `null` (the default) keeps them until deleted.
    #[serde(with = "humantime_serde")]
    pub failed: Option<Duration>,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            executions: Duration::from_secs(7 * DAY),
            unfinished: Duration::from_secs(30 * DAY),
            failed: None,
        }
    }
}

impl RetentionSettings {
    /// Each retention that is zero, by its key (a negative one does not parse).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        let mut check = |key: &'static str, value: Option<Duration>| {
            if value.is_some_and(|d| d.is_zero()) {
                problems.push((key, format!("retention.{key} must be longer than zero")));
            }
        };
        check("executions", Some(self.executions));
        check("unfinished", Some(self.unfinished));
        check("failed", self.failed);
        problems
    }

    /// How often the daemon prunes: a quarter of the shortest retention, between a second and
    /// a minute, so state is at most a quarter older than asked and every host prunes at
    /// least once a minute.
    pub fn interval(&self) -> Duration {
        let shortest = [Some(self.executions), Some(self.unfinished), self.failed]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(self.executions);
        (shortest / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_a_week_a_month_and_never() {
        let r = RetentionSettings::default();
        assert_eq!(r.executions, Duration::from_secs(7 * DAY));
        assert_eq!(r.unfinished, Duration::from_secs(30 * DAY));
        assert_eq!(r.failed, None);
        assert_eq!(r.interval(), Duration::from_secs(60));
        assert!(r.problems().is_empty());
    }

    #[test]
    fn a_short_retention_prunes_often_and_zero_is_refused() {
        let r = RetentionSettings {
            executions: Duration::from_secs(8),
            unfinished: Duration::ZERO,
            failed: Some(Duration::ZERO),
        };
        assert_eq!(r.interval(), Duration::from_secs(1));
        let keys: Vec<_> = r.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["unfinished", "failed"]);
        let r = RetentionSettings {
            executions: Duration::from_secs(20),
            ..RetentionSettings::default()
        };
        assert_eq!(r.interval(), Duration::from_secs(5));
    }
}

//! `rate_limit: {max: N, per: DURATION}` in a worker file (SPEC 4.5): at most `max` messages
//! start their services in any window of length `per`, across all the worker's replicas on
//! all hosts. Parsed here; the store keeps the starts and the worker waits its turn.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// More starts per window than this would make each start rewrite a long log in the store
/// (the sliding log holds `max` times): such a rate is better written over a shorter `per`.
pub const MAX_RATE: u32 = 10_000;

/// The store keeps start times to the millisecond: a shorter window cannot be told apart.
const SHORTEST_PER: Duration = Duration::from_millis(1);

/// `rate_limit:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RateLimitFile {
    max: u32,
    #[serde(with = "humantime_serde")]
    per: Duration,
}

impl RateLimitFile {
    pub(super) fn validate(&self) -> Result<RateLimit, String> {
        if self.max == 0 {
            return Err("rate_limit.max must be at least 1 (a worker that takes nothing is a paused one: POST /api/workers/NAME/pause)".into());
        }
        if self.max > MAX_RATE {
            return Err(format!(
                "rate_limit.max must be at most {MAX_RATE}: write the same rate over a shorter per"
            ));
        }
        if self.per < SHORTEST_PER {
            return Err("rate_limit.per must be at least 1ms".into());
        }
        Ok(RateLimit {
            max: self.max,
            per: self.per,
        })
    }
}

/// A validated rate limit: `max` starts (1 to [`MAX_RATE`]) in any window of length `per`
/// (at least 1 ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub max: u32,
    pub per: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<RateLimit, String> {
        let file: RateLimitFile = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        file.validate()
    }

    #[test]
    fn a_rate_is_a_count_over_a_duration() {
        assert_eq!(
            parse("{max: 100, per: 1m}"),
            Ok(RateLimit {
                max: 100,
                per: Duration::from_secs(60)
            })
        );
        assert_eq!(
            parse("{max: 1, per: 250ms}").map(|r| r.per),
            Ok(Duration::from_millis(250))
        );
    }

    #[test]
    fn nothing_per_window_or_no_window_is_refused() {
        for bad in [
            "{max: 0, per: 1s}",
            "{max: 5, per: 0s}",
            "{max: 10001, per: 1s}",
            "{max: 5, per: soon}",
            "{max: 5}",
            "{max: -1, per: 1s}",
            "{max: 5, per: 1s, burst: 2}",
        ] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
    }
}

//! Rate-limited workers' starts (SPEC 4.5): a sliding log, one row per start in
//! `rate_starts`, shared by every process on the host through the file. A start is logged
//! only while fewer than `max` rows are newer than `now - per`; the check and the insert are
//! one statement in the writer's IMMEDIATE transaction, so two processes never both take the
//! last place of a window.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

use super::EmbeddedStore;
use crate::config::RateLimit;
use crate::store::{RateSlot, StoreError};

/// Rows older than the window by this much go: a start whose time was read a little before
/// another's but logged after it still finds the rows it must count.
const KEPT_PAST_WINDOW: Duration = Duration::from_secs(1);

pub async fn take(
    store: &EmbeddedStore,
    worker: &str,
    limit: &RateLimit,
    now: DateTime<Utc>,
) -> Result<RateSlot, StoreError> {
    let (at, per) = (now.timestamp_millis(), millis(limit.per));
    let stale = at - per - millis(KEPT_PAST_WINDOW);
    let (name, max) = (worker.to_string(), i64::from(limit.max));
    let logged = store
        .write(move |c| {
            c.prepare_cached("DELETE FROM rate_starts WHERE worker = ?1 AND at <= ?2")?
                .execute(params![name, stale])?;
            c.prepare_cached(
                "INSERT INTO rate_starts (worker, at) SELECT ?1, ?2
                 WHERE (SELECT COUNT(*) FROM rate_starts WHERE worker = ?1 AND at > ?2 - ?3) < ?4",
            )?
            .execute(params![name, at, per, max])
        })
        .await?;
    if logged == 1 {
        return Ok(RateSlot::Taken);
    }
    // The window is full: the max-th newest start leaves it first.
    let (name, skip) = (worker.to_string(), max - 1);
    let filling = store
        .read(move |c| {
            c.prepare_cached(
                "SELECT at FROM rate_starts WHERE worker = ?1 ORDER BY at DESC LIMIT 1 OFFSET ?2",
            )?
            .query_row(params![name, skip], |r| r.get::<_, i64>(0))
            .optional()
        })
        .await?;
    let until = filling
        .and_then(|ms| DateTime::from_timestamp_millis(ms + per))
        .unwrap_or(now);
    Ok(RateSlot::Full { until })
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 4)
}

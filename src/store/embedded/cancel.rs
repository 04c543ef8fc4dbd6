//! Cancelled executions in the embedded store (SPEC 4.5): the row's `status` becomes
//! `cancelled` and `cancelled_at` is set, which puts it in the partial index
//! `job_state_by_cancel` that the replicas poll.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::{parse_ts, ts, EmbeddedStore};
use crate::store::{Cancel, Cancellation, StoreError, CANCELLED_ERROR};

/// What the write did, as the number the writer hands back (a write returns a count).
const FINISHED: usize = 0;
const KNOWN: usize = 1;
const UNKNOWN: usize = 2;
const ALREADY: usize = 3;

/// The read and the write run in the writer's one transaction, so no stage lands between
/// them: the execution is cancelled or finished, not both. Run twice (a group rolled back),
/// the second run reads what the first read, so it answers the same.
pub async fn cancel(
    store: &EmbeddedStore,
    execution_id: &str,
    last_stages: &BTreeSet<String>,
) -> Result<Cancel, StoreError> {
    let id = execution_id.to_string();
    let last_stages = last_stages.clone();
    let done = store
        .write(move |c| mark(c, &id, &last_stages, &ts(Utc::now())))
        .await?;
    Ok(match done {
        FINISHED => Cancel::Finished,
        KNOWN => Cancel::Cancelled { known: true },
        UNKNOWN => Cancel::Cancelled { known: false },
        _ => Cancel::AlreadyCancelled,
    })
}

fn mark(
    c: &Connection,
    id: &str,
    last_stages: &BTreeSet<String>,
    now: &str,
) -> rusqlite::Result<usize> {
    let found: Option<(String, String)> = c
        .prepare_cached("SELECT status, worker FROM job_state WHERE execution_id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((status, worker)) = found else {
        c.prepare_cached(
            "INSERT INTO job_state (execution_id, state, status, worker, attempts, error, created_at, updated_at, cancelled_at, stages_log)
             VALUES (?1, NULL, 'cancelled', '', 0, ?2, ?3, ?3, ?3, '')",
        )?
        .execute(params![id, CANCELLED_ERROR, now])?;
        return Ok(UNKNOWN);
    };
    if status == "cancelled" {
        return Ok(ALREADY);
    }
    if status == "done" && last_stages.contains(&worker) {
        return Ok(FINISHED);
    }
    c.prepare_cached(
        "UPDATE job_state SET status = 'cancelled', error = ?2, updated_at = ?3, cancelled_at = ?3
         WHERE execution_id = ?1",
    )?
    .execute(params![id, CANCELLED_ERROR, now])?;
    Ok(KNOWN)
}

/// By the partial index: `cancelled_at >= ?` implies the index's `IS NOT NULL`.
pub async fn since(
    store: &EmbeddedStore,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<Cancellation>, StoreError> {
    let from = since.map(ts).unwrap_or_default();
    let rows = store
        .read(move |c| {
            let mut query = c.prepare_cached(
                "SELECT execution_id, cancelled_at FROM job_state
                 WHERE cancelled_at >= ?1 ORDER BY cancelled_at",
            )?;
            let rows = query.query_map([from], |r| Ok((r.get(0)?, r.get::<_, String>(1)?)))?;
            rows.collect::<rusqlite::Result<Vec<(String, String)>>>()
        })
        .await?;
    rows.into_iter()
        .map(|(execution_id, at)| {
            Ok(Cancellation {
                execution_id,
                cancelled_at: parse_ts(&at)?,
            })
        })
        .collect()
}

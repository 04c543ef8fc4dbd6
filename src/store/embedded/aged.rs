//! Retention's reads and deletes in the embedded store (SPEC 3.2), each by index: the walk
//! goes down `job_state_by_creation` (`created_at`, `execution_id`), which a stage write
//! leaves alone, and skips the rows updated since the cut-off; `failed_by_execution` finds an
//! execution's parked messages and `failed_by_last_failure` the old ones. A delete repeats
//! the `updated_at` it read, so a stage recorded since keeps its execution.

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::{parse_ts, ts, EmbeddedStore};
use crate::store::{Aged, Cursor, Sizes, Status, StoreError, StoredText};

/// Pages handed back per call (4 KiB each): a few milliseconds of the write lock.
const PAGES_PER_STEP: u32 = 2048;
/// `PRAGMA auto_vacuum`'s value for INCREMENTAL.
const INCREMENTAL: i64 = 2;

pub async fn aged(
    store: &EmbeddedStore,
    after: Option<&Cursor>,
    before: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<Aged>, StoreError> {
    let (from_time, from_id) = match after {
        Some(c) => (ts(c.created_at), c.execution_id.clone()),
        None => (String::new(), String::new()),
    };
    let before = ts(before);
    let rows = store
        .read(move |c| {
            let mut query = c.prepare_cached(
                "SELECT execution_id, status, worker, created_at, updated_at
                 FROM job_state INDEXED BY job_state_by_creation
                 WHERE (created_at, execution_id) > (?1, ?2) AND created_at < ?3 AND updated_at < ?3
                 ORDER BY created_at, execution_id LIMIT ?4",
            )?;
            let rows = query.query_map(params![from_time, from_id, before, limit], |r| {
                Ok(RawAged {
                    execution_id: r.get(0)?,
                    status: r.get(1)?,
                    worker: r.get(2)?,
                    created_at: r.get(3)?,
                    updated_at: r.get(4)?,
                })
            })?;
            rows.collect::<rusqlite::Result<Vec<RawAged>>>()
        })
        .await?;
    rows.into_iter().map(RawAged::parse).collect()
}

/// A row as read, its text parsed off the reading thread.
struct RawAged {
    execution_id: String,
    status: String,
    worker: String,
    created_at: String,
    updated_at: String,
}

impl RawAged {
    fn parse(self) -> Result<Aged, StoreError> {
        Ok(Aged {
            execution_id: self.execution_id,
            status: Status::from_stored(&self.status)?,
            worker: self.worker,
            created_at: parse_ts(&self.created_at)?,
            updated_at: parse_ts(&self.updated_at)?,
        })
    }
}

pub async fn parked_among(
    store: &EmbeddedStore,
    execution_ids: &[String],
) -> Result<Vec<String>, StoreError> {
    let ids = serde_json::to_string(execution_ids)
        .map_err(|e| StoreError::Invalid(format!("execution ids: {e}")))?;
    store
        .read(move |c| {
            let mut query = c.prepare_cached(
                "SELECT DISTINCT execution_id FROM failed_messages
                 WHERE execution_id IN (SELECT value FROM json_each(?1))",
            )?;
            let rows = query.query_map([ids], |r| r.get(0))?;
            rows.collect()
        })
        .await
}

pub async fn delete_executions(store: &EmbeddedStore, aged: &[Aged]) -> Result<u64, StoreError> {
    let doomed: Vec<(String, String)> = aged
        .iter()
        .map(|a| (a.execution_id.clone(), ts(a.updated_at)))
        .collect();
    let deleted = store
        .write(move |c| {
            let mut deleted = 0;
            for (id, updated_at) in &doomed {
                let gone = c
                    .prepare_cached(
                        "DELETE FROM job_state WHERE execution_id = ?1 AND updated_at = ?2",
                    )?
                    .execute([id, updated_at])?;
                if gone == 1 {
                    c.prepare_cached("DELETE FROM stages WHERE execution_id = ?1")?
                        .execute([id])?;
                    deleted += 1;
                }
            }
            Ok(deleted)
        })
        .await?;
    Ok(deleted as u64)
}

pub async fn prune_failed(
    store: &EmbeddedStore,
    before: DateTime<Utc>,
    limit: u32,
) -> Result<u64, StoreError> {
    let before = ts(before);
    let deleted = store
        .write(move |c| {
            c.prepare_cached(
                "DELETE FROM failed_messages WHERE rowid IN (
                   SELECT rowid FROM failed_messages WHERE last_failed_at < ?1
                   ORDER BY last_failed_at LIMIT ?2)",
            )?
            .execute(params![before, limit])
        })
        .await?;
    Ok(deleted as u64)
}

/// `PRAGMA incremental_vacuum` frees one page per step of its statement: stepped to the end.
/// A file made before dpsd set `auto_vacuum` keeps its freed pages for reuse (its size still
/// levels off) but cannot shrink: the first call says so, with the way to convert it.
pub async fn give_space_back(store: &EmbeddedStore) -> Result<(), StoreError> {
    static TOLD: std::sync::Once = std::sync::Once::new();
    let mode: i64 = store
        .read(|c| c.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)))
        .await?;
    if mode != INCREMENTAL {
        TOLD.call_once(|| {
            tracing::warn!(
                "the embedded store {} was made without auto_vacuum: pruned space is reused \
                 but not given back to the file system; docs/operations.md (Retention) says \
                 how to convert it",
                store.path.display()
            )
        });
        return Ok(());
    }
    store
        .write(|c| {
            let mut vacuum =
                c.prepare_cached(&format!("PRAGMA incremental_vacuum({PAGES_PER_STEP})"))?;
            let mut steps = vacuum.raw_query();
            while steps.next()?.is_some() {}
            Ok(0)
        })
        .await
        .map(drop)
}

pub async fn sizes(store: &EmbeddedStore) -> Result<Sizes, StoreError> {
    let (executions, failed) = store
        .read(|c| {
            let count = |table: &str| {
                c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| {
                    r.get::<_, i64>(0)
                })
            };
            Ok((count("job_state")?, count("failed_messages")?))
        })
        .await?;
    let file = |suffix: &str| {
        let mut name = store.path.as_os_str().to_owned();
        name.push(suffix);
        std::fs::metadata(name).map(|m| m.len()).unwrap_or(0)
    };
    Ok(Sizes {
        executions: executions as u64,
        failed: failed as u64,
        file_bytes: Some(file("") + file("-wal")),
    })
}

pub async fn claim(
    store: &EmbeddedStore,
    name: &str,
    holder: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let (name, holder, now, until) = (name.to_string(), holder.to_string(), ts(now), ts(until));
    let changed = store
        .write(move |c| {
            c.prepare_cached(
                "INSERT INTO leases (name, holder, until) VALUES (?1, ?2, ?4)
                 ON CONFLICT (name) DO UPDATE SET holder = ?2, until = ?4
                 WHERE leases.holder = ?2 OR leases.until < ?3",
            )?
            .execute([&name, &holder, &now, &until])
        })
        .await?;
    Ok(changed == 1)
}

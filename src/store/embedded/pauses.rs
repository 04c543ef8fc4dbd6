//! Paused workers (SPEC 4.5): one row per paused worker, so that every process sharing the
//! file sees a pause made through any of them.

use chrono::Utc;
use rusqlite::params;

use super::{ts, EmbeddedStore};
use crate::store::StoreError;

/// Pausing inserts the row (a second pause keeps the first time), resuming deletes it: both
/// are idempotent, as the API promises.
pub async fn set(store: &EmbeddedStore, worker: &str, paused: bool) -> Result<(), StoreError> {
    let worker = worker.to_string();
    store
        .write(move |c| match paused {
            true => c.execute(
                "INSERT OR IGNORE INTO worker_pauses (worker, paused_at) VALUES (?1, ?2)",
                params![worker, ts(Utc::now())],
            ),
            false => c.execute(
                "DELETE FROM worker_pauses WHERE worker = ?1",
                params![worker],
            ),
        })
        .await?;
    Ok(())
}

/// The names of the paused workers, sorted.
pub async fn list(store: &EmbeddedStore) -> Result<Vec<String>, StoreError> {
    store
        .read(|c| {
            let mut query = c.prepare("SELECT worker FROM worker_pauses ORDER BY worker")?;
            let names = query
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(names)
        })
        .await
}

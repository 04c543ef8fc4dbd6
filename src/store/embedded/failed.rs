//! Parked messages in the embedded store (table `failed_messages`, keyed by `id`). Parking
//! the same id again updates its one row and keeps its `first_failed_at`; the body is kept
//! as text beside its `encoding` (`json`, `text` or `base64`), so any bytes round-trip.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Row};

use super::{parse_ts, ts, EmbeddedStore};
use crate::store::{FailedPage, ParkedBody, ParkedMessage, StoreError};

const PARKED_COLUMNS: &str = "SELECT id, encoding, body, worker, queue, execution_id, attempts, error, first_failed_at, last_failed_at, stages_passed FROM failed_messages";

pub async fn park(store: &EmbeddedStore, message: &ParkedMessage) -> Result<(), StoreError> {
    let m = message.clone();
    let (encoding, body) = encode_body(&m.body);
    store.write(move |c| {
        c.execute(
            "INSERT INTO failed_messages (id, encoding, body, worker, queue, execution_id, attempts, error, first_failed_at, last_failed_at, stages_passed)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (id) DO UPDATE SET encoding = ?2, body = ?3, worker = ?4, queue = ?5,
               execution_id = ?6, attempts = ?7, error = ?8, last_failed_at = ?10, stages_passed = ?11",
            params![m.id, encoding, body, m.worker, m.queue, m.execution_id, m.attempts, m.error, ts(m.first_failed_at), ts(m.last_failed_at), m.stages_passed],
        )
    })
    .await
    .map(drop)
}

pub async fn get(store: &EmbeddedStore, id: &str) -> Result<Option<ParkedMessage>, StoreError> {
    let id = id.to_string();
    let row = store
        .read(move |c| {
            c.query_row(
                &format!("{PARKED_COLUMNS} WHERE id = ?1"),
                [&id],
                parked_row,
            )
            .optional()
        })
        .await?;
    row.map(RawParked::into_message).transpose()
}

/// A page and the total, counted in the same read.
pub async fn list(
    store: &EmbeddedStore,
    worker: Option<&str>,
    limit: u32,
    skip: u64,
) -> Result<FailedPage, StoreError> {
    let worker = worker.map(str::to_string);
    let (rows, total) = store
        .read(move |c| {
            let total: u64 = c.query_row(
                "SELECT COUNT(*) FROM failed_messages WHERE ?1 IS NULL OR worker = ?1",
                [&worker],
                |r| r.get(0),
            )?;
            let mut query = c.prepare(&format!(
                "{PARKED_COLUMNS} WHERE ?1 IS NULL OR worker = ?1 ORDER BY first_failed_at, id LIMIT ?2 OFFSET ?3"
            ))?;
            let rows = query.query_map(params![worker, limit, skip], parked_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((rows, total))
        })
        .await?;
    let items = rows
        .into_iter()
        .map(RawParked::into_message)
        .collect::<Result<_, _>>()?;
    Ok(FailedPage::new(items, total, skip))
}

pub async fn delete(
    store: &EmbeddedStore,
    id: &str,
    if_failed_at: Option<DateTime<Utc>>,
) -> Result<bool, StoreError> {
    let (id, at) = (id.to_string(), if_failed_at.map(ts));
    let deleted = store
        .write(move |c| {
            c.execute(
                "DELETE FROM failed_messages WHERE id = ?1 AND (?2 IS NULL OR last_failed_at = ?2)",
                params![id, at],
            )
        })
        .await?;
    Ok(deleted == 1)
}

/// Deletes in steps of `STEP`, each a write of its own: a worker's many thousands of parked
/// messages never hold the file's write lock for long, and the stage writes go on between.
pub async fn delete_of(store: &EmbeddedStore, worker: &str) -> Result<u64, StoreError> {
    const STEP: u32 = 1000;
    let mut deleted = 0;
    loop {
        let worker = worker.to_string();
        let gone = store
            .write(move |c| {
                c.prepare_cached(
                    "DELETE FROM failed_messages WHERE rowid IN (
                       SELECT rowid FROM failed_messages WHERE worker = ?1 LIMIT ?2)",
                )?
                .execute(params![worker, STEP])
            })
            .await?;
        deleted += gone as u64;
        if gone < STEP as usize {
            return Ok(deleted);
        }
    }
}

/// A `failed_messages` row as SQLite returns it.
struct RawParked {
    id: String,
    encoding: String,
    body: String,
    worker: String,
    queue: String,
    execution_id: Option<String>,
    attempts: u32,
    error: String,
    first_failed_at: String,
    last_failed_at: String,
    stages_passed: u32,
}

fn parked_row(r: &Row) -> rusqlite::Result<RawParked> {
    Ok(RawParked {
        id: r.get(0)?,
        encoding: r.get(1)?,
        body: r.get(2)?,
        worker: r.get(3)?,
        queue: r.get(4)?,
        execution_id: r.get(5)?,
        attempts: r.get(6)?,
        error: r.get(7)?,
        first_failed_at: r.get(8)?,
        last_failed_at: r.get(9)?,
        stages_passed: r.get(10)?,
    })
}

fn encode_body(body: &ParkedBody) -> (&'static str, String) {
    match body {
        ParkedBody::Json(value) => ("json", value.to_string()),
        ParkedBody::Text(text) => ("text", text.clone()),
        ParkedBody::Base64(data) => ("base64", data.clone()),
    }
}

impl RawParked {
    fn into_message(self) -> Result<ParkedMessage, StoreError> {
        let body = match self.encoding.as_str() {
            "text" => ParkedBody::Text(self.body),
            "base64" => ParkedBody::Base64(self.body),
            _ => ParkedBody::Json(
                serde_json::from_str(&self.body)
                    .map_err(|e| StoreError::Invalid(format!("stored body: {e}")))?,
            ),
        };
        Ok(ParkedMessage {
            id: self.id,
            body,
            worker: self.worker,
            queue: self.queue,
            execution_id: self.execution_id,
            attempts: self.attempts,
            stages_passed: self.stages_passed,
            error: self.error,
            first_failed_at: parse_ts(&self.first_failed_at)?,
            last_failed_at: parse_ts(&self.last_failed_at)?,
        })
    }
}

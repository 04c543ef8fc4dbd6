//! The embedded store (SPEC 3.1): an SQLite file in `state_dir`, shared by the daemon and
//! every replica on the host. WAL mode lets readers run beside the one writer; a busy
//! timeout makes a process wait for another's transaction rather than fail; writes go
//! through one thread per process in batched transactions (`writer`).

mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::Value;

use super::{
    Execution, FailedPage, JobDefinition, JobRecord, ParkedBody, ParkedMessage, RunOutcome,
    RunStatus, Stage, Status, Store, StoreError, StoredText,
};
use crate::config::{JobKind, StateSync};
use writer::Writer;

/// The file's name in `state_dir`.
pub const FILE: &str = "dpsd.sqlite";
/// How long a process waits for another's write transaction before reporting the store
/// unavailable (the message in hand then waits and tries again; nothing is lost).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a process sleeps between tries for the write lock. SQLite's own busy timeout
/// backs off to sleeps of 100 ms, far longer than a transaction holds the lock here (one
/// group commit, about a millisecond), so replicas sharing the file would mostly sleep.
const BUSY_RETRY: Duration = Duration::from_micros(200);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS job_state (
    execution_id TEXT PRIMARY KEY, state INTEGER, status TEXT NOT NULL, worker TEXT NOT NULL,
    attempts INTEGER NOT NULL, error TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS stages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, execution_id TEXT NOT NULL, worker TEXT NOT NULL,
    state INTEGER NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL, started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL, duration_ms INTEGER NOT NULL, error TEXT, result TEXT);
CREATE INDEX IF NOT EXISTS stages_by_execution ON stages (execution_id, seq);
CREATE TABLE IF NOT EXISTS failed_messages (
    id TEXT PRIMARY KEY, encoding TEXT NOT NULL, body TEXT NOT NULL, worker TEXT NOT NULL,
    queue TEXT NOT NULL, execution_id TEXT, attempts INTEGER NOT NULL, error TEXT NOT NULL,
    first_failed_at TEXT NOT NULL, last_failed_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS failed_by_worker ON failed_messages (worker, first_failed_at);
CREATE INDEX IF NOT EXISTS failed_by_time ON failed_messages (first_failed_at);
CREATE TABLE IF NOT EXISTS jobs (
    name TEXT PRIMARY KEY, schedule TEXT, type TEXT NOT NULL, active INTEGER NOT NULL,
    next_run_at TEXT, last_run_at TEXT, last_finished_at TEXT, last_status TEXT,
    fail_count INTEGER NOT NULL DEFAULT 0, fail_reason TEXT, locked_at TEXT, locked_by TEXT);
";

pub struct EmbeddedStore {
    path: PathBuf,
    writer: Writer,
    reader: Arc<Mutex<Connection>>,
}

impl EmbeddedStore {
    /// Opens (creating when needed) `state_dir/dpsd.sqlite`.
    pub fn open(state_dir: &Path, sync: StateSync) -> anyhow::Result<EmbeddedStore> {
        std::fs::create_dir_all(state_dir)
            .map_err(|e| anyhow::anyhow!("cannot create state_dir {}: {e}", state_dir.display()))?;
        let path = state_dir.join(FILE);
        let writing = connect(&path, sync)?;
        writing
            .execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA} COMMIT;"))
            .map_err(|e| {
                anyhow::anyhow!("cannot prepare the embedded store {}: {e}", path.display())
            })?;
        let reader = Arc::new(Mutex::new(connect(&path, sync)?));
        Ok(EmbeddedStore {
            path,
            writer: Writer::start(writing),
            reader,
        })
    }

    /// Runs a read on the reading connection, off the async threads.
    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let connection = reader
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            query(&connection).map_err(classify)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("store read task failed: {e}")))?
    }

    async fn write(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<usize> + Send + 'static,
    ) -> Result<usize, StoreError> {
        self.writer.write(Box::new(work)).await
    }
}

fn connect(path: &Path, sync: StateSync) -> anyhow::Result<Connection> {
    let open = || -> rusqlite::Result<Connection> {
        let connection = Connection::open(path)?;
        connection.busy_handler(Some(wait_for_lock))?;
        // WAL: readers never wait for the writer.
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", sync.pragma())?;
        Ok(connection)
    };
    // Turning a new file to WAL takes a lock SQLite answers "busy" for at once, without its
    // busy handler, to the other processes opening the file at that moment: the same wait
    // is applied here by hand.
    let mut tries = 0;
    loop {
        match open() {
            Err(e) if is_busy(&e) && wait_for_lock(tries) => tries += 1,
            opened => {
                return opened.map_err(|e| {
                    anyhow::anyhow!("cannot open the embedded store {}: {e}", path.display())
                })
            }
        }
    }
}

fn is_busy(error: &rusqlite::Error) -> bool {
    error.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn record_stage(&self, execution_id: &str, stage: &Stage) -> Result<(), StoreError> {
        let id = execution_id.to_string();
        let stage = stage.clone();
        let result = stage.result.as_ref().map(Value::to_string);
        self.write(move |c| {
            let now = ts(Utc::now());
            let done = stage.status == Status::Done;
            c.prepare_cached(
                "INSERT INTO job_state (execution_id, state, status, worker, attempts, error, created_at, updated_at)
                 VALUES (?1, CASE WHEN ?2 THEN ?3 END, ?4, ?5, ?6, ?7, ?8, ?8)
                 ON CONFLICT (execution_id) DO UPDATE SET
                   state = CASE WHEN ?2 THEN ?3 ELSE job_state.state END, status = ?4, worker = ?5,
                   attempts = ?6, error = ?7, updated_at = ?8",
            )?
            .execute(params![id, done, stage.state, stage.status.as_str(), stage.worker, stage.attempts, stage.error, now])?;
            c.prepare_cached(
                "INSERT INTO stages (execution_id, worker, state, status, attempts, started_at, finished_at, duration_ms, error, result)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                id, stage.worker, stage.state, stage.status.as_str(), stage.attempts,
                ts(stage.started_at), ts(stage.finished_at), stage.duration_ms, stage.error, result
            ])
        })
        .await
        .map(drop)
    }

    async fn execution(&self, execution_id: &str) -> Result<Option<Execution>, StoreError> {
        let id = execution_id.to_string();
        let found = self
            .read(move |c| {
                let head = c
                    .query_row(
                        "SELECT execution_id, state, status, worker, attempts, error, updated_at FROM job_state WHERE execution_id = ?1",
                        [&id],
                        |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?, r.get::<_, u32>(4)?, r.get::<_, Option<String>>(5)?, r.get::<_, String>(6)?)),
                    )
                    .optional()?;
                let Some(head) = head else { return Ok(None) };
                let mut query = c.prepare(
                    "SELECT worker, state, status, attempts, started_at, finished_at, duration_ms, error, result
                     FROM stages WHERE execution_id = ?1 ORDER BY seq",
                )?;
                let stages = query.query_map([&id], stage_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(Some((head, stages)))
            })
            .await?;
        let Some(((execution_id, state, status, worker, attempts, error, updated_at), stages)) =
            found
        else {
            return Ok(None);
        };
        Ok(Some(Execution {
            execution_id,
            state,
            status: Status::from_stored(&status)?,
            worker,
            attempts,
            error,
            updated_at: parse_ts(&updated_at)?,
            stages: stages
                .into_iter()
                .map(RawStage::into_stage)
                .collect::<Result<_, _>>()?,
        }))
    }

    async fn park(&self, message: &ParkedMessage) -> Result<(), StoreError> {
        let m = message.clone();
        let (encoding, body) = encode_body(&m.body);
        self.write(move |c| {
            c.execute(
                "INSERT INTO failed_messages (id, encoding, body, worker, queue, execution_id, attempts, error, first_failed_at, last_failed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (id) DO UPDATE SET encoding = ?2, body = ?3, worker = ?4, queue = ?5,
                   execution_id = ?6, attempts = ?7, error = ?8, last_failed_at = ?10",
                params![m.id, encoding, body, m.worker, m.queue, m.execution_id, m.attempts, m.error, ts(m.first_failed_at), ts(m.last_failed_at)],
            )
        })
        .await
        .map(drop)
    }

    async fn failed(&self, id: &str) -> Result<Option<ParkedMessage>, StoreError> {
        let id = id.to_string();
        let row = self
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

    async fn list_failed(
        &self,
        worker: Option<&str>,
        limit: u32,
        skip: u64,
    ) -> Result<FailedPage, StoreError> {
        let worker = worker.map(str::to_string);
        let (rows, total) = self
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
        Ok(FailedPage { items, total })
    }

    async fn delete_failed(
        &self,
        id: &str,
        if_failed_at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let (id, at) = (id.to_string(), if_failed_at.map(ts));
        let deleted = self
            .write(move |c| {
                c.execute(
                    "DELETE FROM failed_messages WHERE id = ?1 AND (?2 IS NULL OR last_failed_at = ?2)",
                    params![id, at],
                )
            })
            .await?;
        Ok(deleted == 1)
    }

    async fn job(&self, name: &str) -> Result<Option<JobRecord>, StoreError> {
        let name = name.to_string();
        let row = self
            .read(move |c| {
                c.query_row(&format!("{JOB_COLUMNS} WHERE name = ?1"), [&name], job_row)
                    .optional()
            })
            .await?;
        row.map(RawJob::into_record).transpose()
    }

    async fn jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        let rows = self
            .read(|c| {
                let mut query = c.prepare(&format!("{JOB_COLUMNS} ORDER BY name"))?;
                let rows = query
                    .query_map([], job_row)?
                    .collect::<rusqlite::Result<Vec<_>>>();
                rows
            })
            .await?;
        rows.into_iter().map(RawJob::into_record).collect()
    }

    async fn define_job(&self, definition: &JobDefinition) -> Result<(), StoreError> {
        let d = definition.clone();
        let kind = d.kind.as_str();
        self.write(move |c| {
            c.execute(
                "INSERT INTO jobs (name, schedule, type, active, next_run_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (name) DO UPDATE SET schedule = ?2, type = ?3, active = ?4, next_run_at = ?5",
                params![d.name, d.schedule, kind, d.active, d.next_run_at.map(ts)],
            )
        })
        .await
        .map(drop)
    }

    async fn remove_job(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_string();
        self.write(move |c| c.execute("DELETE FROM jobs WHERE name = ?1", [&name]))
            .await
            .map(drop)
    }

    async fn advance_job(
        &self,
        name: &str,
        planned: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let name = name.to_string();
        let changed = self
            .write(move |c| {
                c.execute(
                    "UPDATE jobs SET next_run_at = ?3 WHERE name = ?1 AND next_run_at = ?2",
                    params![name, ts(planned), next.map(ts)],
                )
            })
            .await?;
        Ok(changed == 1)
    }

    async fn lock_job(
        &self,
        name: &str,
        host: &str,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (name, host) = (name.to_string(), host.to_string());
        let changed = self
            .write(move |c| {
                c.execute(
                    "UPDATE jobs SET locked_at = ?3, locked_by = ?2, last_run_at = ?3
                     WHERE name = ?1 AND (locked_at IS NULL OR locked_at < ?4)",
                    params![name, host, ts(now), ts(stale_before)],
                )
            })
            .await?;
        Ok(changed == 1)
    }

    async fn finish_job(
        &self,
        name: &str,
        host: &str,
        outcome: &RunOutcome,
        finished_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (name, host) = (name.to_string(), host.to_string());
        let failure = outcome.failure().map(str::to_string);
        self.write(move |c| {
            c.execute(
                "UPDATE jobs SET locked_at = NULL, locked_by = NULL, last_finished_at = ?3,
                   last_status = CASE WHEN ?4 IS NULL THEN 'ok' ELSE 'failed' END,
                   fail_count = fail_count + CASE WHEN ?4 IS NULL THEN 0 ELSE 1 END,
                   fail_reason = COALESCE(?4, fail_reason)
                 WHERE name = ?1 AND locked_by = ?2",
                params![name, host, ts(finished_at), failure],
            )
        })
        .await
        .map(drop)
    }

    /// Folds the write-ahead log back into the main file, so that `dpsd.sqlite` alone holds
    /// everything once dpsd has stopped (a plain file copy is then a backup). Another process
    /// still using the file may keep part of the log: that is fine, the last one folds it.
    async fn close(&self) {
        let _ = self
            .read(|c| c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)"))
            .await;
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await
    }
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EmbeddedStore({})", self.path.display())
    }
}

/// SQLite's busy handler: `tries` is how many times it has already been called for this
/// lock; false gives up (SQLITE_BUSY, reported as the store being unavailable). The wait is
/// bounded by the clock, not by counting tries: a sleep lasts longer than asked.
fn wait_for_lock(tries: i32) -> bool {
    thread_local! {
        static WAITING_SINCE: std::cell::Cell<Instant> = std::cell::Cell::new(Instant::now());
    }
    let waited = WAITING_SINCE.with(|since| {
        if tries == 0 {
            since.set(Instant::now());
        }
        since.get().elapsed()
    });
    if waited >= BUSY_TIMEOUT {
        return false;
    }
    std::thread::sleep(BUSY_RETRY);
    true
}

/// Times as fixed-width UTC text with milliseconds: they sort and compare as text.
fn ts(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse_ts(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Invalid(format!("stored time {text:?}: {e}")))
}

/// Busy and locked files, and I/O, are worth waiting for; the rest is the data's fault.
fn classify(error: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::{
        CannotOpen, DatabaseBusy, DatabaseLocked, DiskFull, SystemIoFailure,
    };
    match &error {
        rusqlite::Error::SqliteFailure(e, _)
            if matches!(
                e.code,
                DatabaseBusy | DatabaseLocked | SystemIoFailure | CannotOpen | DiskFull
            ) =>
        {
            StoreError::Unavailable(error.to_string())
        }
        _ => StoreError::Invalid(error.to_string()),
    }
}

struct RawStage {
    worker: String,
    state: i64,
    status: String,
    attempts: u32,
    started_at: String,
    finished_at: String,
    duration_ms: i64,
    error: Option<String>,
    result: Option<String>,
}

fn stage_row(r: &Row) -> rusqlite::Result<RawStage> {
    Ok(RawStage {
        worker: r.get(0)?,
        state: r.get(1)?,
        status: r.get(2)?,
        attempts: r.get(3)?,
        started_at: r.get(4)?,
        finished_at: r.get(5)?,
        duration_ms: r.get(6)?,
        error: r.get(7)?,
        result: r.get(8)?,
    })
}

impl RawStage {
    fn into_stage(self) -> Result<Stage, StoreError> {
        let result = self
            .result
            .map(|text| {
                serde_json::from_str(&text)
                    .map_err(|e| StoreError::Invalid(format!("stored result: {e}")))
            })
            .transpose()?;
        Ok(Stage {
            worker: self.worker,
            state: self.state,
            status: Status::from_stored(&self.status)?,
            attempts: self.attempts,
            started_at: parse_ts(&self.started_at)?,
            finished_at: parse_ts(&self.finished_at)?,
            duration_ms: self.duration_ms,
            error: self.error,
            result,
        })
    }
}

const PARKED_COLUMNS: &str = "SELECT id, encoding, body, worker, queue, execution_id, attempts, error, first_failed_at, last_failed_at FROM failed_messages";

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
            error: self.error,
            first_failed_at: parse_ts(&self.first_failed_at)?,
            last_failed_at: parse_ts(&self.last_failed_at)?,
        })
    }
}

const JOB_COLUMNS: &str = "SELECT name, schedule, type, active, next_run_at, last_run_at, last_finished_at, last_status, fail_count, fail_reason, locked_at, locked_by FROM jobs";

struct RawJob {
    name: String,
    schedule: Option<String>,
    kind: String,
    active: bool,
    times: [Option<String>; 3],
    last_status: Option<String>,
    fail_count: u32,
    fail_reason: Option<String>,
    locked_at: Option<String>,
    locked_by: Option<String>,
}

fn job_row(r: &Row) -> rusqlite::Result<RawJob> {
    Ok(RawJob {
        name: r.get(0)?,
        schedule: r.get(1)?,
        kind: r.get(2)?,
        active: r.get(3)?,
        times: [r.get(4)?, r.get(5)?, r.get(6)?],
        last_status: r.get(7)?,
        fail_count: r.get(8)?,
        fail_reason: r.get(9)?,
        locked_at: r.get(10)?,
        locked_by: r.get(11)?,
    })
}

impl RawJob {
    fn into_record(self) -> Result<JobRecord, StoreError> {
        let time = |t: &Option<String>| t.as_deref().map(parse_ts).transpose();
        let [next_run_at, last_run_at, last_finished_at] = &self.times;
        Ok(JobRecord {
            next_run_at: time(next_run_at)?,
            last_run_at: time(last_run_at)?,
            last_finished_at: time(last_finished_at)?,
            locked_at: time(&self.locked_at)?,
            name: self.name,
            schedule: self.schedule,
            kind: JobKind::from_stored(&self.kind)?,
            active: self.active,
            last_status: self
                .last_status
                .as_deref()
                .map(RunStatus::from_stored)
                .transpose()?,
            fail_count: self.fail_count,
            fail_reason: self.fail_reason,
            locked_by: self.locked_by,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `dpsd run` and a `dpsd worker` started together on a fresh state_dir open the file
    /// at once; SQLite answers "busy" to one of them, without waiting, while the other turns
    /// the new file to WAL.
    #[test]
    fn connections_opening_a_fresh_file_at_once_all_succeed() {
        for round in 0..30 {
            let dir = tempfile::tempdir().expect("temp dir");
            let start = Arc::new(std::sync::Barrier::new(6));
            let openers: Vec<_> = (0..6)
                .map(|_| {
                    let (dir, start) = (dir.path().to_path_buf(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        EmbeddedStore::open(&dir, StateSync::Normal).map(drop)
                    })
                })
                .collect();
            for opener in openers {
                let opened = opener.join().expect("opener thread");
                assert!(opened.is_ok(), "round {round}: {opened:?}");
            }
        }
    }
}

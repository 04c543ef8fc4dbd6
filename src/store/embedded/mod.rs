//! The embedded store (SPEC 3.1): an SQLite file in `state_dir`, shared by the daemon and
//! every replica on the host. WAL mode lets readers run beside the one writer; a busy
//! handler makes a process wait for another's transaction rather than fail (`lock`);
//! writes are grouped into transactions, committed on the caller's runtime thread when the
//! file's lock is free and by one thread per process when it is not (`writer`); another
//! thread writes the write-ahead log out and checkpoints it, so that no commit does
//! (`checkpoint`).
//!
//! This file is the store itself and what every kind of record shares: times as text and
//! the reading of SQLite's errors. Each kind of record keeps its SQL and row mapping in a
//! file of its own (`executions`, `failed`, `jobs`), on the tables of `schema`. Every write
//! goes through `write` (the one writing connection, group commit) and every read through
//! `read` (the one reading connection, off the async threads).

mod aged;
mod cancel;
mod checkpoint;
mod executions;
mod failed;
mod jobs;
mod list;
mod lock;
mod pauses;
mod rate;
mod schema;
mod writer;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::Connection;

use super::{
    Aged, Cancel, Cancellation, Cursor, Execution, ExecutionPage, ExecutionQuery, FailedPage,
    JobDefinition, JobRecord, ParkedMessage, RateSlot, RunOutcome, Sizes, Stage, Store, StoreError,
};
use crate::config::{RateLimit, StateSync};
use writer::Writer;

/// The file's name in `state_dir`.
pub const FILE: &str = "dpsd.sqlite";

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
        let writing = lock::connect(&path, sync)?;
        schema::create(&writing).map_err(|e| {
            anyhow::anyhow!("cannot prepare the embedded store {}: {e}", path.display())
        })?;
        let reader = Arc::new(Mutex::new(lock::connect(&path, sync)?));
        let writing = checkpoint::hand_over(writing, &path, sync);
        Ok(EmbeddedStore {
            path,
            // Each commit waits for the disk with `full`: not on the runtime's thread.
            writer: Writer::start(writing, sync == StateSync::Normal),
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

    /// Runs a write in the writer's next transaction; resolves with the rows it changed once
    /// that transaction is committed. It may run twice (see `writer`).
    async fn write(
        &self,
        work: impl Fn(&Connection) -> rusqlite::Result<usize> + Send + 'static,
    ) -> Result<usize, StoreError> {
        self.writer.write(Box::new(work)).await
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn record_stage(&self, execution_id: &str, stage: &Stage) -> Result<(), StoreError> {
        executions::record_stage(self, execution_id, stage).await
    }

    async fn execution(&self, execution_id: &str) -> Result<Option<Execution>, StoreError> {
        executions::get(self, execution_id).await
    }

    async fn list_executions(&self, query: &ExecutionQuery) -> Result<ExecutionPage, StoreError> {
        list::list(self, query).await
    }

    async fn park(&self, message: &ParkedMessage) -> Result<(), StoreError> {
        failed::park(self, message).await
    }

    async fn failed(&self, id: &str) -> Result<Option<ParkedMessage>, StoreError> {
        failed::get(self, id).await
    }

    async fn list_failed(
        &self,
        worker: Option<&str>,
        limit: u32,
        skip: u64,
    ) -> Result<FailedPage, StoreError> {
        failed::list(self, worker, limit, skip).await
    }

    async fn delete_failed(
        &self,
        id: &str,
        if_failed_at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        failed::delete(self, id, if_failed_at).await
    }

    async fn delete_failed_of(&self, worker: &str) -> Result<u64, StoreError> {
        failed::delete_of(self, worker).await
    }

    async fn job(&self, name: &str) -> Result<Option<JobRecord>, StoreError> {
        jobs::job(self, name).await
    }

    async fn jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        jobs::all(self).await
    }

    async fn define_job(&self, definition: &JobDefinition) -> Result<(), StoreError> {
        jobs::define(self, definition).await
    }

    async fn remove_job(&self, name: &str) -> Result<(), StoreError> {
        jobs::remove(self, name).await
    }

    async fn advance_job(
        &self,
        name: &str,
        planned: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        jobs::advance(self, name, planned, next, false).await
    }

    async fn replan_paused_job(
        &self,
        name: &str,
        planned: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        jobs::advance(self, name, planned, next, true).await
    }

    async fn set_job_paused(&self, name: &str, paused: bool) -> Result<bool, StoreError> {
        jobs::set_paused(self, name, paused).await
    }

    async fn lock_job(
        &self,
        name: &str,
        host: &str,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        jobs::lock(self, name, host, now, stale_before).await
    }

    async fn finish_job(
        &self,
        name: &str,
        host: &str,
        outcome: &RunOutcome,
        finished_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        jobs::finish(self, name, host, outcome, finished_at).await
    }

    async fn aged(
        &self,
        after: Option<&Cursor>,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Aged>, StoreError> {
        aged::aged(self, after, before, limit).await
    }

    async fn parked_among(&self, execution_ids: &[String]) -> Result<Vec<String>, StoreError> {
        aged::parked_among(self, execution_ids).await
    }

    async fn delete_executions(&self, doomed: &[Aged]) -> Result<u64, StoreError> {
        aged::delete_executions(self, doomed).await
    }

    async fn prune_failed(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        aged::prune_failed(self, before, limit).await
    }

    async fn give_space_back(&self) -> Result<(), StoreError> {
        aged::give_space_back(self).await
    }

    async fn sizes(&self) -> Result<Sizes, StoreError> {
        aged::sizes(self).await
    }

    async fn claim(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        aged::claim(self, name, holder, now, until).await
    }

    async fn set_worker_paused(&self, worker: &str, paused: bool) -> Result<(), StoreError> {
        pauses::set(self, worker, paused).await
    }

    async fn paused_workers(&self) -> Result<Vec<String>, StoreError> {
        pauses::list(self).await
    }

    async fn cancel(
        &self,
        execution_id: &str,
        last_stages: &BTreeSet<String>,
    ) -> Result<Cancel, StoreError> {
        cancel::cancel(self, execution_id, last_stages).await
    }

    async fn cancelled_since(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<Cancellation>, StoreError> {
        cancel::since(self, since).await
    }

    async fn take_rate_slot(
        &self,
        worker: &str,
        limit: &RateLimit,
        now: DateTime<Utc>,
    ) -> Result<RateSlot, StoreError> {
        rate::take(self, worker, limit, now).await
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

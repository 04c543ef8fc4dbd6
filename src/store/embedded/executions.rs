//! Job state in the embedded store: one `job_state` row per execution, holding its summary
//! (what the API shows at the top level) and its stages, appended as JSON lines to the
//! row's `stages_log` in the order recorded. Recording a stage is one conditional UPSERT of
//! that one row: a stage write touches a page or two, not a row and index entries in a
//! second table. The summary follows the stage furthest along the chain, and `state` the
//! furthest that is done (SPEC 4.2). Files written before keep their earlier stages in the
//! table `stages`, which is still read, before the log.

use chrono::Utc;
use rusqlite::{params, OptionalExtension, Row};

use super::{list, parse_ts, ts, EmbeddedStore};
use crate::store::{in_chain_order, Execution, Stage, Status, StoreError, StoredText};

pub async fn record_stage(
    store: &EmbeddedStore,
    execution_id: &str,
    stage: &Stage,
) -> Result<(), StoreError> {
    let id = execution_id.to_string();
    // The stage's line is made here, on the caller's thread, not on the one writer's.
    let mut line = serde_json::to_string(stage)
        .map_err(|e| StoreError::Invalid(format!("cannot write the stage as JSON: {e}")))?;
    line.push('\n');
    let (done, state, status) = (
        stage.status == Status::Done,
        stage.state,
        stage.status.as_str(),
    );
    let (worker, attempts, error) = (stage.worker.clone(), stage.attempts, stage.error.clone());
    let passed = stage.stages_passed;
    store.write(move |c| {
        let now = ts(Utc::now());
        // ?9 is how far along this record is; the summary takes it only when no record
        // further along is in (ties: this newer one wins), the state only from a done one.
        // A cancelled execution's summary is final (SPEC 4.2): only its stages grow.
        let created_at = c.prepare_cached(
            "INSERT INTO job_state (execution_id, state, status, worker, attempts, error, created_at, updated_at, stages_passed, state_stages_passed, stages_log)
             VALUES (?1, CASE WHEN ?2 THEN ?3 END, ?4, ?5, ?6, ?7, ?8, ?8, ?9, CASE WHEN ?2 THEN ?9 END, ?10)
             ON CONFLICT (execution_id) DO UPDATE SET
               state = CASE WHEN ?2 AND status <> 'cancelled' AND ?9 >= COALESCE(state_stages_passed, -1) THEN ?3 ELSE state END,
               state_stages_passed = CASE WHEN ?2 AND status <> 'cancelled' AND ?9 >= COALESCE(state_stages_passed, -1) THEN ?9 ELSE state_stages_passed END,
               status = CASE WHEN status <> 'cancelled' AND ?9 >= COALESCE(stages_passed, -1) THEN ?4 ELSE status END,
               worker = CASE WHEN status <> 'cancelled' AND ?9 >= COALESCE(stages_passed, -1) THEN ?5 ELSE worker END,
               attempts = CASE WHEN status <> 'cancelled' AND ?9 >= COALESCE(stages_passed, -1) THEN ?6 ELSE attempts END,
               error = CASE WHEN status <> 'cancelled' AND ?9 >= COALESCE(stages_passed, -1) THEN ?7 ELSE error END,
               stages_passed = CASE WHEN status = 'cancelled' THEN stages_passed ELSE MAX(COALESCE(stages_passed, -1), ?9) END,
               stages_log = COALESCE(stages_log, '') || ?10,
               updated_at = ?8
             RETURNING created_at",
        )?
        .query_row(
            params![id, done, state, status, worker, attempts, error, now, passed, line],
            |r| r.get::<_, String>(0),
        )?;
        list::index_stage(c, &id, &worker, &created_at)
    })
    .await
    .map(drop)
}

/// The execution's summary and its stages, read together on the one reading connection.
pub async fn get(
    store: &EmbeddedStore,
    execution_id: &str,
) -> Result<Option<Execution>, StoreError> {
    let id = execution_id.to_string();
    let found = store
        .read(move |c| {
            let head = c
                .query_row(
                    &format!("SELECT {HEAD_COLUMNS} FROM job_state WHERE execution_id = ?1"),
                    [&id],
                    head_row,
                )
                .optional()?;
            let Some(head) = head else { return Ok(None) };
            Ok(Some((head, legacy_stages(c, &id)?)))
        })
        .await?;
    found
        .map(|(head, stages)| head.into_execution(stages))
        .transpose()
}

/// Stages recorded before the log existed (none in a file made since).
pub(super) fn legacy_stages(
    c: &rusqlite::Connection,
    execution_id: &str,
) -> rusqlite::Result<Vec<RawStage>> {
    let mut query = c.prepare_cached(
        "SELECT worker, state, status, attempts, started_at, finished_at, duration_ms, error, result, stages_passed
         FROM stages WHERE execution_id = ?1 ORDER BY seq",
    )?;
    let stages = query.query_map([execution_id], stage_row)?;
    stages.collect()
}

/// The columns `head_row` reads, in its order.
pub(super) const HEAD_COLUMNS: &str =
    "execution_id, state, status, worker, attempts, error, updated_at, stages_log, created_at";

/// A `job_state` row as SQLite returns it, before its text is read as times and statuses.
pub(super) struct RawHead {
    pub(super) execution_id: String,
    state: Option<i64>,
    status: String,
    worker: String,
    attempts: u32,
    error: Option<String>,
    updated_at: String,
    stages_log: Option<String>,
    created_at: String,
}

pub(super) fn head_row(r: &Row) -> rusqlite::Result<RawHead> {
    Ok(RawHead {
        execution_id: r.get(0)?,
        state: r.get(1)?,
        status: r.get(2)?,
        worker: r.get(3)?,
        attempts: r.get(4)?,
        error: r.get(5)?,
        updated_at: r.get(6)?,
        stages_log: r.get(7)?,
        created_at: r.get(8)?,
    })
}

impl RawHead {
    pub(super) fn into_execution(self, legacy: Vec<RawStage>) -> Result<Execution, StoreError> {
        let mut stages = legacy
            .into_iter()
            .map(RawStage::into_stage)
            .collect::<Result<Vec<_>, _>>()?;
        for line in self.stages_log.as_deref().unwrap_or_default().lines() {
            let stage = serde_json::from_str(line)
                .map_err(|e| StoreError::Invalid(format!("stored stage: {e}")))?;
            stages.push(stage);
        }
        Ok(Execution {
            execution_id: self.execution_id,
            state: self.state,
            status: Status::from_stored(&self.status)?,
            worker: self.worker,
            attempts: self.attempts,
            error: self.error,
            created_at: parse_ts(&self.created_at)?,
            updated_at: parse_ts(&self.updated_at)?,
            stages: in_chain_order(stages),
        })
    }
}

/// A row of the legacy `stages` table as SQLite returns it.
pub(super) struct RawStage {
    worker: String,
    state: i64,
    status: String,
    attempts: u32,
    started_at: String,
    finished_at: String,
    duration_ms: i64,
    error: Option<String>,
    result: Option<String>,
    stages_passed: u32,
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
        stages_passed: r.get(9)?,
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
            stages_passed: self.stages_passed,
            started_at: parse_ts(&self.started_at)?,
            finished_at: parse_ts(&self.finished_at)?,
            duration_ms: self.duration_ms,
            error: self.error,
            result,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StateSync;
    use crate::store::Store;

    /// A state_dir written by a version before the log: its execution's stage is in the
    /// table `stages`. Opened now, the file is migrated, the old stage reads back, and a new
    /// stage goes to the log after it and takes the summary.
    #[tokio::test]
    async fn an_execution_of_the_old_layout_reads_back_and_takes_new_stages() {
        let dir = tempfile::tempdir().expect("temp dir");
        let old =
            rusqlite::Connection::open(dir.path().join(crate::store::EMBEDDED_FILE)).expect("open");
        old.execute_batch(&format!(
            "{}
             INSERT INTO job_state VALUES ('old', 1, 'done', 'w1', 1, NULL,
               '2026-11-29T03:11:35.838Z', '2026-11-29T03:11:35.842Z');
             INSERT INTO stages (execution_id, worker, state, status, attempts, started_at,
               finished_at, duration_ms, error, result)
             VALUES ('old', 'w1', 1, 'done', 1, '2026-11-29T03:11:35.838Z',
               '2026-11-29T03:11:35.842Z', 4, NULL, '\"test1\"');",
            super::super::schema::SCHEMA
        ))
        .expect("a file of the first layout");
        drop(old);
        let store = EmbeddedStore::open(dir.path(), StateSync::Normal).expect("migrated");
        let before = store.execution("old").await.expect("read").expect("kept");
        assert_eq!((before.state, before.stages.len()), (Some(1), 1));
        assert_eq!(before.stages[0].result, Some(serde_json::json!("test1")));
        let now = Utc::now();
        let second = Stage {
            worker: "w2".into(),
            state: 2,
            status: Status::Done,
            attempts: 1,
            stages_passed: 1,
            started_at: now,
            finished_at: now,
            duration_ms: 0,
            error: None,
            result: Some(serde_json::json!({"$not": "an operator"})),
        };
        store.record_stage("old", &second).await.expect("write");
        let after = store.execution("old").await.expect("read").expect("kept");
        let workers: Vec<&str> = after.stages.iter().map(|s| s.worker.as_str()).collect();
        assert_eq!(workers, ["w1", "w2"]);
        assert_eq!(after.stages[1], second);
        assert_eq!((after.state, after.worker.as_str()), (Some(2), "w2"));
    }
}

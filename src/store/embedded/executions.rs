//! Job state in the embedded store: one `job_state` row per execution (its summary, what
//! the API shows at the top level) and one `stages` row per worker's handling of it, in the
//! order recorded (`seq`). Recording a stage writes both rows in one write, so a reader
//! never sees a stage without the summary it updated. The summary follows the stage
//! furthest along the chain, and `state` the furthest that is done (SPEC 4.2).

use chrono::Utc;
use rusqlite::{params, OptionalExtension, Row};
use serde_json::Value;

use super::{parse_ts, ts, EmbeddedStore};
use crate::store::{Execution, Stage, Status, StoreError, StoredText};

pub async fn record_stage(
    store: &EmbeddedStore,
    execution_id: &str,
    stage: &Stage,
) -> Result<(), StoreError> {
    let id = execution_id.to_string();
    let stage = stage.clone();
    let result = stage.result.as_ref().map(Value::to_string);
    store.write(move |c| {
        let now = ts(Utc::now());
        let done = stage.status == Status::Done;
        // ?9 is how far along this record is; the summary takes it only when no record
        // further along is in (ties: this newer one wins), the state only from a done one.
        c.prepare_cached(
            "INSERT INTO job_state (execution_id, state, status, worker, attempts, error, created_at, updated_at, stages_passed, state_stages_passed)
             VALUES (?1, CASE WHEN ?2 THEN ?3 END, ?4, ?5, ?6, ?7, ?8, ?8, ?9, CASE WHEN ?2 THEN ?9 END)
             ON CONFLICT (execution_id) DO UPDATE SET
               state = CASE WHEN ?2 AND ?9 >= COALESCE(state_stages_passed, -1) THEN ?3 ELSE state END,
               state_stages_passed = CASE WHEN ?2 AND ?9 >= COALESCE(state_stages_passed, -1) THEN ?9 ELSE state_stages_passed END,
               status = CASE WHEN ?9 >= COALESCE(stages_passed, -1) THEN ?4 ELSE status END,
               worker = CASE WHEN ?9 >= COALESCE(stages_passed, -1) THEN ?5 ELSE worker END,
               attempts = CASE WHEN ?9 >= COALESCE(stages_passed, -1) THEN ?6 ELSE attempts END,
               error = CASE WHEN ?9 >= COALESCE(stages_passed, -1) THEN ?7 ELSE error END,
               stages_passed = MAX(COALESCE(stages_passed, -1), ?9),
               updated_at = ?8",
        )?
        .execute(params![id, done, stage.state, stage.status.as_str(), stage.worker, stage.attempts, stage.error, now, stage.stages_passed])?;
        c.prepare_cached(
            "INSERT INTO stages (execution_id, worker, state, status, attempts, started_at, finished_at, duration_ms, error, result, stages_passed)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?
        .execute(params![
            id, stage.worker, stage.state, stage.status.as_str(), stage.attempts,
            ts(stage.started_at), ts(stage.finished_at), stage.duration_ms, stage.error, result,
            stage.stages_passed
        ])
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
                    "SELECT execution_id, state, status, worker, attempts, error, updated_at FROM job_state WHERE execution_id = ?1",
                    [&id],
                    head_row,
                )
                .optional()?;
            let Some(head) = head else { return Ok(None) };
            let mut query = c.prepare(
                "SELECT worker, state, status, attempts, started_at, finished_at, duration_ms, error, result, stages_passed
                 FROM stages WHERE execution_id = ?1 ORDER BY seq",
            )?;
            let stages = query.query_map([&id], stage_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some((head, stages)))
        })
        .await?;
    found
        .map(|(head, stages)| head.into_execution(stages))
        .transpose()
}

/// A `job_state` row as SQLite returns it, before its text is read as times and statuses.
struct RawHead {
    execution_id: String,
    state: Option<i64>,
    status: String,
    worker: String,
    attempts: u32,
    error: Option<String>,
    updated_at: String,
}

fn head_row(r: &Row) -> rusqlite::Result<RawHead> {
    Ok(RawHead {
        execution_id: r.get(0)?,
        state: r.get(1)?,
        status: r.get(2)?,
        worker: r.get(3)?,
        attempts: r.get(4)?,
        error: r.get(5)?,
        updated_at: r.get(6)?,
    })
}

impl RawHead {
    fn into_execution(self, stages: Vec<RawStage>) -> Result<Execution, StoreError> {
        Ok(Execution {
            execution_id: self.execution_id,
            state: self.state,
            status: Status::from_stored(&self.status)?,
            worker: self.worker,
            attempts: self.attempts,
            error: self.error,
            updated_at: parse_ts(&self.updated_at)?,
            stages: stages
                .into_iter()
                .map(RawStage::into_stage)
                .collect::<Result<_, _>>()?,
        })
    }
}

/// A `stages` row as SQLite returns it.
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

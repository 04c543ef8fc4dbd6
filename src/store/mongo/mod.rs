//! The MongoDB backend: the production store, shared by every dpsd host.
//!
//! Write path: each recorded stage is one upsert on the unique `executionId` index, and the
//! upserts of concurrent messages travel together (see `batch`), so under load a replica
//! needs far fewer than one round trip per message.

mod aged;
mod batch;
mod cancel;
mod failed;
mod jobs;
mod list;
mod pauses;
mod rate;

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mongodb::bson::{self, doc, Bson, Document};
use mongodb::error::{Error as MongoError, ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, IndexModel};
use serde_json::Value;

use super::{
    in_chain_order, Aged, Cancel, Cancellation, Cursor, Execution, ExecutionPage, ExecutionQuery,
    FailedPage, JobDefinition, JobRecord, ParkedMessage, RateSlot, RunOutcome, Sizes, Stage,
    Status, Store, StoreError, StoredText,
};
use crate::config::{MongoSettings, RateLimit};

const DUPLICATE_KEY: i32 = 11000;
/// Server error codes that say the data itself is refused, so that no retry can help:
/// BadValue, FailedToParse, TypeMismatch, BSONObjectTooLarge, and a document that an update
/// would make larger than 16 MB.
const REFUSED_DATA: [i32; 5] = [2, 9, 14, 10334, 17419];

pub struct MongoStore {
    client: Client,
    db: mongodb::Database,
    job_state: Collection<Document>,
    failed: Collection<Document>,
    jobs: Collection<Document>,
    leases: Collection<Document>,
    pauses: Collection<Document>,
    stages: batch::Batcher,
}

impl MongoStore {
    /// Connects and makes sure the indexes exist (idempotent). Fails when the server can't be
    /// reached within a few seconds, so a wrong URI is reported at start-up.
    pub async fn connect(uri: &str, settings: &MongoSettings) -> anyhow::Result<MongoStore> {
        let mut options = ClientOptions::parse(uri)
            .await
            .map_err(|e| anyhow::anyhow!("bad mongodb.uri: {}", clean(&e)))?;
        options.app_name = Some("dpsd".into());
        options.server_selection_timeout = Some(Duration::from_secs(5));
        options.connect_timeout = Some(Duration::from_secs(5));
        let client = Client::with_options(options)?;
        let db = client.database(&settings.database);
        let job_state = db.collection(&settings.job_state_collection);
        let store = MongoStore {
            client: client.clone(),
            db: db.clone(),
            stages: batch::Batcher::start(db.clone(), job_state.clone()),
            job_state,
            failed: db.collection("failed_messages"),
            jobs: db.collection("jobs"),
            leases: db.collection("leases"),
            pauses: db.collection("worker_pauses"),
        };
        store.ensure_indexes().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot prepare MongoDB database {:?}: {e}",
                settings.database
            )
        })?;
        Ok(store)
    }

    async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let unique = IndexOptions::builder().unique(true).build();
        let by_execution = IndexModel::builder()
            .keys(doc! {"executionId": 1})
            .options(unique)
            .build();
        self.job_state
            .create_index(by_execution)
            .await
            .map_err(classify)?;
        let by_worker = IndexModel::builder()
            .keys(doc! {"worker": 1, "firstFailedAt": 1})
            .build();
        self.failed
            .create_index(by_worker)
            .await
            .map_err(classify)?;
        aged::ensure_indexes(&self.job_state, &self.failed).await?;
        cancel::ensure_index(&self.job_state).await?;
        list::ensure_indexes(&self.job_state).await?;
        jobs::ensure_indexes(&self.jobs).await
    }
}

#[async_trait]
impl Store for MongoStore {
    async fn record_stage(&self, execution_id: &str, stage: &Stage) -> Result<(), StoreError> {
        let filter = doc! {"executionId": execution_id};
        self.stages.upsert(filter, stage_update(stage)?).await
    }

    async fn execution(&self, execution_id: &str) -> Result<Option<Execution>, StoreError> {
        let found = self
            .job_state
            .find_one(doc! {"executionId": execution_id})
            .await
            .map_err(classify)?;
        found.map(|d| execution_from(&d)).transpose()
    }

    async fn list_executions(&self, query: &ExecutionQuery) -> Result<ExecutionPage, StoreError> {
        list::list(&self.job_state, query).await
    }

    async fn park(&self, message: &ParkedMessage) -> Result<(), StoreError> {
        failed::park(&self.failed, message).await
    }

    async fn failed(&self, id: &str) -> Result<Option<ParkedMessage>, StoreError> {
        failed::get(&self.failed, id).await
    }

    async fn list_failed(
        &self,
        worker: Option<&str>,
        limit: u32,
        skip: u64,
    ) -> Result<FailedPage, StoreError> {
        failed::list(&self.failed, worker, limit, skip).await
    }

    async fn delete_failed(
        &self,
        id: &str,
        if_failed_at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        failed::delete(&self.failed, id, if_failed_at).await
    }

    async fn delete_failed_of(&self, worker: &str) -> Result<u64, StoreError> {
        failed::delete_of(&self.failed, worker).await
    }

    async fn job(&self, name: &str) -> Result<Option<JobRecord>, StoreError> {
        jobs::job(&self.jobs, name).await
    }

    async fn jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        jobs::all(&self.jobs).await
    }

    async fn define_job(&self, definition: &JobDefinition) -> Result<(), StoreError> {
        jobs::define(&self.jobs, definition).await
    }

    async fn remove_job(&self, name: &str) -> Result<(), StoreError> {
        jobs::remove(&self.jobs, name).await
    }

    async fn advance_job(
        &self,
        name: &str,
        planned: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        jobs::advance(&self.jobs, name, planned, next, false).await
    }

    async fn replan_paused_job(
        &self,
        name: &str,
        planned: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        jobs::advance(&self.jobs, name, planned, next, true).await
    }

    async fn set_job_paused(&self, name: &str, paused: bool) -> Result<bool, StoreError> {
        jobs::set_paused(&self.jobs, name, paused).await
    }

    async fn lock_job(
        &self,
        name: &str,
        host: &str,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        jobs::lock(&self.jobs, name, host, now, stale_before).await
    }

    async fn finish_job(
        &self,
        name: &str,
        host: &str,
        outcome: &RunOutcome,
        finished_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        jobs::finish(&self.jobs, name, host, outcome, finished_at).await
    }

    async fn aged(
        &self,
        after: Option<&Cursor>,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Aged>, StoreError> {
        aged::aged(&self.job_state, after, before, limit).await
    }

    async fn parked_among(&self, execution_ids: &[String]) -> Result<Vec<String>, StoreError> {
        aged::parked_among(&self.failed, execution_ids).await
    }

    async fn delete_executions(&self, doomed: &[Aged]) -> Result<u64, StoreError> {
        aged::delete_executions(&self.job_state, doomed).await
    }

    async fn prune_failed(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        aged::prune_failed(&self.failed, before, limit).await
    }

    async fn sizes(&self) -> Result<Sizes, StoreError> {
        aged::sizes(&self.job_state, &self.failed).await
    }

    async fn claim(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        aged::claim(&self.leases, name, holder, now, until).await
    }

    async fn set_worker_paused(&self, worker: &str, paused: bool) -> Result<(), StoreError> {
        pauses::set(&self.pauses, worker, paused).await
    }

    async fn paused_workers(&self) -> Result<Vec<String>, StoreError> {
        pauses::list(&self.pauses).await
    }

    async fn cancel(
        &self,
        execution_id: &str,
        last_stages: &BTreeSet<String>,
    ) -> Result<Cancel, StoreError> {
        cancel::cancel(&self.job_state, execution_id, last_stages).await
    }

    async fn cancelled_since(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<Cancellation>, StoreError> {
        cancel::since(&self.job_state, since).await
    }

    async fn take_rate_slot(
        &self,
        worker: &str,
        limit: &RateLimit,
        now: DateTime<Utc>,
    ) -> Result<RateSlot, StoreError> {
        let rates = self.db.collection(rate::COLLECTION);
        rate::take(&rates, worker, limit, now).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db
            .run_command(doc! {"ping": 1})
            .await
            .map(drop)
            .map_err(classify)
    }

    async fn close(&self) {
        self.client.clone().shutdown().await;
    }
}

/// The one conditional write of a stage (an update pipeline, so the condition is the
/// document's own `stagesPassed`, read and written in the same step): the stage is appended,
/// and the summary taken from it only when no stage further along is in (at the same
/// `stagesPassed` this newer record wins); `state` likewise from the furthest done stage.
/// Documents written before `stagesPassed` existed count as -1: any new record goes first.
/// Every value is a `$literal`, so text of a user's result is never read as an expression.
/// A cancelled execution's summary is final (SPEC 4.2): only its stages grow.
fn stage_update(stage: &Stage) -> Result<Vec<Document>, StoreError> {
    let now = bson::DateTime::now();
    let passed = i64::from(stage.stages_passed);
    let open = doc! {"$ne": ["$status", Status::Cancelled.as_str()]};
    let not_behind = |field: &str| {
        doc! {"$and": [open.clone(), {"$gte": [passed, {"$ifNull": [field, -1]}]}]}
    };
    let ahead = not_behind("$stagesPassed");
    let pick = |condition: &Document, value: Bson, field: &str| {
        doc! {"$cond": [condition.clone(), {"$literal": value}, field]}
    };
    let mut set = doc! {
        "createdAt": {"$ifNull": ["$createdAt", {"$literal": now}]},
        "updatedAt": {"$literal": now},
        "status": pick(&ahead, stage.status.as_str().into(), "$status"),
        "worker": pick(&ahead, stage.worker.as_str().into(), "$worker"),
        "attempts": pick(&ahead, Bson::Int64(i64::from(stage.attempts)), "$attempts"),
        "error": pick(&ahead, stage.error.as_deref().map_or(Bson::Null, Bson::from), "$error"),
        "stagesPassed": {"$cond": [
            open.clone(),
            {"$max": [passed, {"$ifNull": ["$stagesPassed", -1]}]},
            "$stagesPassed",
        ]},
        "stages": {"$concatArrays": [
            {"$ifNull": ["$stages", []]},
            [{"$literal": stage_document(stage)?}],
        ]},
    };
    if stage.status == Status::Done {
        let furthest_done = not_behind("$stateStagesPassed");
        set.insert("state", pick(&furthest_done, stage.state.into(), "$state"));
        set.insert(
            "stateStagesPassed",
            pick(&furthest_done, passed.into(), "$stateStagesPassed"),
        );
    }
    Ok(vec![doc! {"$set": set}])
}

fn stage_document(stage: &Stage) -> Result<Document, StoreError> {
    Ok(doc! {
        "worker": &stage.worker,
        "state": stage.state,
        "status": stage.status.as_str(),
        "attempts": stage.attempts as i64,
        "stagesPassed": i64::from(stage.stages_passed),
        "startedAt": bson::DateTime::from_chrono(stage.started_at),
        "finishedAt": bson::DateTime::from_chrono(stage.finished_at),
        "durationMs": stage.duration_ms,
        "error": stage.error.as_deref(),
        "result": stage.result.as_ref().map(to_bson).transpose()?,
    })
}

fn to_bson(value: &Value) -> Result<Bson, StoreError> {
    bson::to_bson(value).map_err(|e| StoreError::Invalid(format!("cannot store JSON as BSON: {e}")))
}

pub(super) fn execution_from(d: &Document) -> Result<Execution, StoreError> {
    let stages = match d.get_array("stages") {
        Ok(stages) => stages
            .iter()
            .filter_map(Bson::as_document)
            .map(stage_from)
            .collect::<Result<Vec<_>, _>>()?,
        Err(_) => Vec::new(),
    };
    Ok(Execution {
        execution_id: text(d, "executionId")?,
        state: integer(d, "state"),
        status: status(d)?,
        worker: text(d, "worker")?,
        attempts: integer(d, "attempts").unwrap_or(0) as u32,
        error: d.get_str("error").ok().map(str::to_string),
        created_at: time(d, "createdAt")?,
        updated_at: time(d, "updatedAt")?,
        stages: in_chain_order(stages),
    })
}

fn stage_from(d: &Document) -> Result<Stage, StoreError> {
    Ok(Stage {
        worker: text(d, "worker")?,
        state: integer(d, "state").unwrap_or(0),
        status: status(d)?,
        attempts: integer(d, "attempts").unwrap_or(0) as u32,
        stages_passed: integer(d, "stagesPassed").unwrap_or(0) as u32,
        started_at: time(d, "startedAt")?,
        finished_at: time(d, "finishedAt")?,
        duration_ms: integer(d, "durationMs").unwrap_or(0),
        error: d.get_str("error").ok().map(str::to_string),
        result: d
            .get("result")
            .filter(|b| !matches!(b, Bson::Null))
            .map(|b| b.clone().into_relaxed_extjson()),
    })
}

fn text(d: &Document, key: &str) -> Result<String, StoreError> {
    d.get_str(key)
        .map(str::to_string)
        .map_err(|_| StoreError::Invalid(format!("stored job state lacks {key}")))
}

fn integer(d: &Document, key: &str) -> Option<i64> {
    match d.get(key)? {
        Bson::Int32(n) => Some(*n as i64),
        Bson::Int64(n) => Some(*n),
        Bson::Double(f) => Some(*f as i64),
        _ => None,
    }
}

fn status(d: &Document) -> Result<Status, StoreError> {
    let text = d
        .get_str("status")
        .map_err(|_| StoreError::Invalid("stored job state lacks status".into()))?;
    Status::from_stored(text)
}

fn time(d: &Document, key: &str) -> Result<DateTime<Utc>, StoreError> {
    d.get_datetime(key)
        .map(|t| t.to_chrono())
        .map_err(|_| StoreError::Invalid(format!("stored job state lacks {key}")))
}

fn is_duplicate_key(error: &MongoError) -> bool {
    matches!(&*error.kind, ErrorKind::Write(WriteFailure::WriteError(w)) if w.code == DUPLICATE_KEY)
        || matches!(&*error.kind, ErrorKind::Command(c) if c.code == DUPLICATE_KEY)
}

/// A write error the server gave for the data itself (too large, invalid) is `Invalid`;
/// everything else (network, elections, timeouts) is worth waiting for.
fn classify(error: MongoError) -> StoreError {
    match &*error.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => StoreError::Invalid(w.message.clone()),
        ErrorKind::Command(c) if REFUSED_DATA.contains(&c.code) => {
            StoreError::Invalid(c.message.clone())
        }
        ErrorKind::InvalidArgument { message, .. } => StoreError::Invalid(message.clone()),
        ErrorKind::BsonSerialization(e) => StoreError::Invalid(e.to_string()),
        _ => StoreError::Unavailable(clean(&error)),
    }
}

/// The driver's messages can quote the connection string; keep credentials out of logs.
fn clean(error: &MongoError) -> String {
    crate::redact::redact_urls(&error.to_string())
}

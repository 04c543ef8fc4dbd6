//! Where state lives: job state per executionId (with one stage per worker) and parked
//! messages. A trait, so the MongoDB backend and the embedded one (SPEC 3.1) are
//! interchangeable and held to the same contract.

mod aged;
mod cancel;
mod embedded;
mod list;
mod mongo;

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use aged::{Aged, Cursor, Sizes};
pub use cancel::{Cancel, Cancellation, CANCELLED_ERROR};
pub use embedded::{EmbeddedStore, FILE as EMBEDDED_FILE};
pub use list::{ExecutionPage, ExecutionQuery, Position, STATUSES};
pub use mongo::MongoStore;

use crate::config::{CatchUp, JobKind, RateLimit, StoreSettings};

/// The outcome of one worker's handling of one execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Done,
    Retrying,
    Parked,
    /// Cancelled through the API (SPEC 4.5): final, no later record changes the summary.
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Done => "done",
            Status::Retrying => "retrying",
            Status::Parked => "parked",
            Status::Cancelled => "cancelled",
        }
    }
}

/// One entry of an execution's `stages`: what one worker did with it. The embedded store
/// keeps it as this JSON, the API's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    pub worker: String,
    /// The worker's `job_state`; it becomes the execution's `state` when `status` is done.
    pub state: i64,
    pub status: Status,
    pub attempts: u32,
    /// How many stages the message had passed when this worker took it (0 for the first
    /// worker of a chain): the execution's summary follows the stage furthest along.
    pub stages_passed: u32,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub error: Option<String>,
    /// The last service's result (what went on as `_last`); kept so that a redelivered
    /// message can be forwarded again without calling the services again.
    pub result: Option<Value>,
}

/// The job-state document of one execution.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    pub execution_id: String,
    pub state: Option<i64>,
    pub status: Status,
    pub worker: String,
    pub attempts: u32,
    pub error: Option<String>,
    /// When its first record landed: the order of the API's list.
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// In the chain's order (by `stages_passed`), the records of one stage in the order they
    /// were recorded: side by side (SPEC 4.2), the next stage's record can land first.
    pub stages: Vec<Stage>,
}

/// `stages` as an execution shows them: sorted by how far along the chain each is, stably,
/// so the attempts of one stage keep their order.
fn in_chain_order(mut stages: Vec<Stage>) -> Vec<Stage> {
    stages.sort_by_key(|s| s.stages_passed);
    stages
}

impl Execution {
    /// The stage in which `worker` completed this execution, if it did.
    pub fn done_by(&self, worker: &str) -> Option<&Stage> {
        self.stages
            .iter()
            .rev()
            .find(|s| s.worker == worker && s.status == Status::Done)
    }
}

/// A message that could not be processed, kept for inspection and replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParkedMessage {
    /// `WORKER:EXECUTIONID` when the message parsed (one entry per execution and worker),
    /// a fresh UUID when it did not.
    pub id: String,
    /// The body: the JSON when it parses, else the text, else base64 of the bytes.
    pub body: ParkedBody,
    pub worker: String,
    pub queue: String,
    pub execution_id: Option<String>,
    pub attempts: u32,
    /// The stages the message had passed when it was parked; a replay sends it on with it.
    pub stages_passed: u32,
    pub error: String,
    pub first_failed_at: DateTime<Utc>,
    pub last_failed_at: DateTime<Utc>,
}

/// A page of parked messages and how many there are in all (SPEC 7's `{items, total}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailedPage {
    pub items: Vec<ParkedMessage>,
    pub total: u64,
}

impl FailedPage {
    /// A page counted and read in two steps: a message parked or replayed between them must
    /// not leave a page that holds more than its total says (`counted` is the first step's
    /// count, `skip` where the page starts).
    pub fn new(items: Vec<ParkedMessage>, counted: u64, skip: u64) -> FailedPage {
        let total = match items.len() {
            0 => counted, // a page past the end says nothing of how many there are
            held => counted.max(skip.saturating_add(held as u64)),
        };
        FailedPage { items, total }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "encoding", content = "data")]
pub enum ParkedBody {
    Json(Value),
    Text(String),
    Base64(String),
}

impl ParkedBody {
    /// The bytes to publish when the message is replayed.
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        use base64::Engine;
        match self {
            ParkedBody::Json(value) => serde_json::to_vec(value).map_err(|e| e.to_string()),
            ParkedBody::Text(text) => Ok(text.clone().into_bytes()),
            ParkedBody::Base64(data) => base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|e| format!("stored base64 body does not decode: {e}")),
        }
    }

    pub fn from_bytes(bytes: &[u8]) -> ParkedBody {
        use base64::Engine;
        match std::str::from_utf8(bytes) {
            Ok(text) => match serde_json::from_str(text) {
                Ok(value) => ParkedBody::Json(value),
                Err(_) => ParkedBody::Text(text.to_string()),
            },
            Err(_) => ParkedBody::Base64(base64::engine::general_purpose::STANDARD.encode(bytes)),
        }
    }
}

/// A job as the store keeps it (SPEC 5.2): its definition and the record of its runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRecord {
    pub name: String,
    /// The schedule as written (`90 minutes`, `00 02,10 * * *`), None for manual jobs.
    pub schedule: Option<String>,
    #[serde(rename = "type")]
    pub kind: JobKind,
    /// The IANA zone its cron fields are read in (`UTC` for records older than zones).
    pub timezone: String,
    /// `once` (also for records older than catch-up) or `skip`.
    pub catch_up: CatchUp,
    pub active: bool,
    /// Paused through the API: no host fires it. Kept by definitions (restarts, file edits).
    pub paused: bool,
    pub next_run_at: Option<DateTime<Utc>>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_finished_at: Option<DateTime<Utc>>,
    /// How the last finished run ended; None before the first.
    pub last_status: Option<RunStatus>,
    pub fail_count: u32,
    pub fail_reason: Option<String>,
    pub locked_at: Option<DateTime<Utc>>,
    pub locked_by: Option<String>,
}

/// The definition part of a job record, as the files (or a re-schedule) set it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobDefinition {
    pub name: String,
    pub schedule: Option<String>,
    pub kind: JobKind,
    pub timezone: String,
    pub catch_up: CatchUp,
    pub active: bool,
    /// The planned next run of a new record, and of an existing one unless `keep_planned`.
    pub next_run_at: Option<DateTime<Utc>>,
    /// Leaves an existing record's `nextRunAt` as it is in the store: a host defining a job
    /// whose plan it keeps must not write back a value another host has moved on since (it
    /// would hand out a taken occurrence again).
    pub keep_planned: bool,
}

/// How a job's last run ended, as its record's `lastStatus` (SPEC 5.2): `ok` or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Ok,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Failed => "failed",
        }
    }
}

/// How one run of a job ended, as the scheduler hands it to `finish_job`: a failure carries
/// the reason kept as the job's `failReason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    Ok,
    Failed(String),
}

impl RunOutcome {
    pub fn status(&self) -> RunStatus {
        match self {
            RunOutcome::Ok => RunStatus::Ok,
            RunOutcome::Failed(_) => RunStatus::Failed,
        }
    }

    /// The failure reason, None for a run that succeeded.
    pub fn failure(&self) -> Option<&str> {
        match self {
            RunOutcome::Ok => None,
            RunOutcome::Failed(reason) => Some(reason),
        }
    }
}

/// What an action's code naturally returns: `Err` carries the reason.
impl From<Result<(), String>> for RunOutcome {
    fn from(result: Result<(), String>) -> RunOutcome {
        match result {
            Ok(()) => RunOutcome::Ok,
            Err(reason) => RunOutcome::Failed(reason),
        }
    }
}

/// A value both backends keep as text (`done`, `interval`, `ok`): written as its `as_str`,
/// read back with `from_stored`. Stored data is outside input, so text that names no variant
/// is `Invalid`, quoting it, never a guess or a panic.
trait StoredText: Copy + 'static {
    /// What the text is, for the error ("job type").
    const WHAT: &'static str;
    /// Every variant, so that reading back follows writing (`text`) with no second table.
    const ALL: &'static [Self];

    fn text(self) -> &'static str;

    fn from_stored(text: &str) -> Result<Self, StoreError> {
        Self::ALL
            .iter()
            .copied()
            .find(|value| value.text() == text)
            .ok_or_else(|| StoreError::Invalid(format!("stored {} {text:?}", Self::WHAT)))
    }
}

impl StoredText for Status {
    const WHAT: &'static str = "status";
    const ALL: &'static [Status] = &[
        Status::Done,
        Status::Retrying,
        Status::Parked,
        Status::Cancelled,
    ];

    fn text(self) -> &'static str {
        self.as_str()
    }
}

impl StoredText for JobKind {
    const WHAT: &'static str = "job type";
    const ALL: &'static [JobKind] = &[JobKind::Interval, JobKind::Cron, JobKind::Manual];

    fn text(self) -> &'static str {
        self.as_str()
    }
}

impl StoredText for CatchUp {
    const WHAT: &'static str = "job catch-up";
    const ALL: &'static [CatchUp] = &[CatchUp::Once, CatchUp::Skip];

    fn text(self) -> &'static str {
        self.as_str()
    }
}

impl StoredText for RunStatus {
    const WHAT: &'static str = "job run status";
    const ALL: &'static [RunStatus] = &[RunStatus::Ok, RunStatus::Failed];

    fn text(self) -> &'static str {
        self.as_str()
    }
}

/// The store's answer to a rate-limited worker about to start a message (SPEC 4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateSlot {
    /// The start is logged: the message may start now.
    Taken,
    /// The window is full: no start is possible before `until` (when the oldest start that
    /// fills it leaves it).
    Full { until: DateTime<Utc> },
}

/// Why the store could not do what was asked. Callers retry `Unavailable` (the server will
/// come back) and report `Invalid` (retrying cannot help).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store rejected the data: {0}")]
    Invalid(String),
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Appends `stage` to the execution's stages, creating the document on first sight, and
    /// takes the summary fields (`status`, `worker`, `attempts`, `error`) from it unless the
    /// execution has a stage further along (a higher `stages_passed`; at the same one the
    /// newer record wins); `state` likewise from the furthest stage that is done. One
    /// conditional write, never a read then a write: records of two stages may land in any
    /// order and the summary is the same.
    async fn record_stage(&self, execution_id: &str, stage: &Stage) -> Result<(), StoreError>;

    /// The job-state document, if the execution is known.
    async fn execution(&self, execution_id: &str) -> Result<Option<Execution>, StoreError>;

    /// A page of recent executions, newest first (`list`); by index on both backends.
    async fn list_executions(&self, query: &ExecutionQuery) -> Result<ExecutionPage, StoreError>;

    /// Keeps a message that could not be processed (again: one entry per id).
    async fn park(&self, message: &ParkedMessage) -> Result<(), StoreError>;

    /// One parked message.
    async fn failed(&self, id: &str) -> Result<Option<ParkedMessage>, StoreError>;

    /// Parked messages, of one worker or all, oldest failure first.
    async fn list_failed(
        &self,
        worker: Option<&str>,
        limit: u32,
        skip: u64,
    ) -> Result<FailedPage, StoreError>;

    /// Removes a parked message; false when there was none with that id. With
    /// `if_failed_at`, only if it has not failed again since (a replay must not delete the
    /// entry of a message that came back and was parked anew meanwhile).
    async fn delete_failed(
        &self,
        id: &str,
        if_failed_at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError>;

    /// Removes every parked message of `worker`; returns how many went.
    async fn delete_failed_of(&self, worker: &str) -> Result<u64, StoreError>;

    /// The job record, if the job is defined.
    async fn job(&self, name: &str) -> Result<Option<JobRecord>, StoreError>;

    /// Every job record, by name.
    async fn jobs(&self) -> Result<Vec<JobRecord>, StoreError>;

    /// Creates or updates a job's definition; its run record is kept.
    async fn define_job(&self, definition: &JobDefinition) -> Result<(), StoreError>;

    /// Removes a job whose file was deleted.
    async fn remove_job(&self, name: &str) -> Result<(), StoreError>;

    /// Takes the occurrence planned for `planned` by moving `nextRunAt` on to `next`, if no
    /// one else did and the job is not paused: of all the hosts that share the store, exactly
    /// one gets `true`, and none while the job is paused.
    async fn advance_job(
        &self,
        name: &str,
        planned: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError>;

    /// The same move for a paused job (its plan decided before it is resumed): `true` for
    /// the one host that made it.
    async fn replan_paused_job(
        &self,
        name: &str,
        planned: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError>;

    /// Pauses or resumes a job on every host; `false` when there is no such job. Setting the
    /// state it has already is no change and no error.
    async fn set_job_paused(&self, name: &str, paused: bool) -> Result<bool, StoreError>;

    /// Marks the job running on `host`, unless it already runs (a lock older than
    /// `stale_before` belonged to a host that died and is taken over).
    async fn lock_job(
        &self,
        name: &str,
        host: &str,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Records the end of a run `host` had locked: its status, and for a failure its reason
    /// and one more to the count.
    async fn finish_job(
        &self,
        name: &str,
        host: &str,
        outcome: &RunOutcome,
        finished_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Up to `limit` executions last updated before `before`, after `after` in the order of
    /// (`createdAt`, `executionId`), oldest first (by the creation index: SPEC 3.2).
    async fn aged(
        &self,
        after: Option<&Cursor>,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Aged>, StoreError>;

    /// Which of these executions have a parked message in the store.
    async fn parked_among(&self, execution_ids: &[String]) -> Result<Vec<String>, StoreError>;

    /// Deletes these executions, each only if it was not updated since it was read (a late
    /// stage keeps it); returns how many went.
    async fn delete_executions(&self, aged: &[Aged]) -> Result<u64, StoreError>;

    /// Deletes up to `limit` parked messages whose last failure is before `before`; returns
    /// how many went.
    async fn prune_failed(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError>;

    /// Returns freed space to the file system where the backend keeps it (the embedded
    /// file); a few megabytes per call, so that it never holds the file long.
    async fn give_space_back(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// How much the store holds.
    async fn sizes(&self) -> Result<Sizes, StoreError>;

    /// Takes or renews the lease `name` for `holder` until `until`: true when `holder` has it
    /// (it was free, expired before `now`, or already theirs). Of the hosts sharing a store,
    /// one holds it at a time (the pruner's "once per cluster").
    async fn claim(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Pauses or resumes a worker on every host sharing the store (SPEC 4.5). Setting the
    /// state it has already is no change and no error.
    async fn set_worker_paused(&self, worker: &str, paused: bool) -> Result<(), StoreError>;

    /// The names of the paused workers, sorted: what every replica polls to obey a pause.
    async fn paused_workers(&self) -> Result<Vec<String>, StoreError>;

    /// Marks the execution `cancelled` (SPEC 4.5), creating it when the store has not seen
    /// it yet, unless it is finished: `done` at a worker of `last_stages` (those without a
    /// follow queue). One atomic step, so a cancel and the last stage's record racing end in
    /// one of the two, never a cancelled execution that is also finished.
    async fn cancel(
        &self,
        execution_id: &str,
        last_stages: &BTreeSet<String>,
    ) -> Result<Cancel, StoreError>;

    /// The executions cancelled at or after `since` (all with None), by index, oldest first:
    /// what every replica polls to stop and skip them.
    async fn cancelled_since(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<Cancellation>, StoreError>;

    /// Logs a start of `worker` at `now` if fewer than `limit.max` starts are logged after
    /// `now - limit.per`, by any process on any host sharing the store. Check and log are one
    /// atomic step, so no window of length `per` holds more than `max` logged starts.
    async fn take_rate_slot(
        &self,
        worker: &str,
        limit: &RateLimit,
        now: DateTime<Utc>,
    ) -> Result<RateSlot, StoreError>;

    /// Whether the store answers now (for `/health`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Closes connections before the process exits, so no background task of the driver is
    /// cut off mid-request by the runtime shutting down.
    async fn close(&self) {}
}

/// Opens the configured backend: MongoDB when `mongodb.uri` is set, else the embedded
/// store in `state_dir`.
pub async fn open(settings: &StoreSettings) -> anyhow::Result<Arc<dyn Store>> {
    match settings
        .mongodb
        .as_ref()
        .and_then(|m| m.uri.as_deref().map(|uri| (m, uri)))
    {
        Some((mongo, uri)) => Ok(Arc::new(MongoStore::connect(uri, mongo).await?)),
        None => {
            let (state_dir, sync) = (settings.state_dir.clone(), settings.state_sync);
            let store = tokio::task::spawn_blocking(move || EmbeddedStore::open(&state_dir, sync))
                .await??;
            Ok(Arc::new(store))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_never_holds_more_than_its_total() {
        let parked = |id: &str| ParkedMessage {
            id: id.into(),
            body: ParkedBody::Json(Value::Null),
            worker: "w".into(),
            queue: "q".into(),
            execution_id: None,
            attempts: 1,
            stages_passed: 0,
            error: "e".into(),
            first_failed_at: DateTime::<Utc>::UNIX_EPOCH,
            last_failed_at: DateTime::<Utc>::UNIX_EPOCH,
        };
        // Counted 0, then one was parked before the items were read.
        assert_eq!(FailedPage::new(vec![parked("a")], 0, 0).total, 1);
        assert_eq!(FailedPage::new(vec![parked("a")], 0, 10).total, 11);
        assert_eq!(FailedPage::new(vec![parked("a")], 5, 0).total, 5);
        assert_eq!(FailedPage::new(Vec::new(), 0, u64::MAX).total, 0);
    }

    /// Each variant reads back from the text written for it, and that text is its JSON too.
    fn round_trips<T: StoredText + Serialize + PartialEq + std::fmt::Debug>(texts: &[&str]) {
        let written: Vec<&str> = T::ALL.iter().map(|v| v.text()).collect();
        assert_eq!(written, texts);
        for value in T::ALL {
            assert_eq!(T::from_stored(value.text()).ok(), Some(*value));
            let json = serde_json::to_value(value).expect("serializes");
            assert_eq!(json, Value::String(value.text().into()));
        }
    }

    fn refused<T: StoredText + std::fmt::Debug>(text: &str) -> String {
        match T::from_stored(text) {
            Err(StoreError::Invalid(message)) => message,
            other => panic!("{text:?} read as {other:?}"),
        }
    }

    #[test]
    fn stored_texts_are_those_of_the_spec_and_read_back() {
        round_trips::<Status>(&["done", "retrying", "parked", "cancelled"]);
        round_trips::<JobKind>(&["interval", "cron", "manual"]);
        round_trips::<RunStatus>(&["ok", "failed"]);
    }

    #[test]
    fn unknown_stored_text_is_invalid_and_named() {
        assert_eq!(refused::<JobKind>("weekly"), r#"stored job type "weekly""#);
        assert_eq!(refused::<RunStatus>("OK"), r#"stored job run status "OK""#);
        assert_eq!(refused::<Status>(""), r#"stored status """#);
    }

    #[test]
    fn a_job_record_is_the_same_json_as_before() {
        let at = DateTime::<Utc>::UNIX_EPOCH;
        let record = JobRecord {
            name: "tick".into(),
            schedule: Some("5s".into()),
            kind: JobKind::Interval,
            timezone: "UTC".into(),
            catch_up: CatchUp::Once,
            active: true,
            paused: false,
            next_run_at: Some(at),
            last_run_at: None,
            last_finished_at: Some(at),
            last_status: Some(RunStatus::Failed),
            fail_count: 1,
            fail_reason: Some("exit status 3".into()),
            locked_at: None,
            locked_by: None,
        };
        assert_eq!(
            serde_json::to_string(&record).expect("serializes"),
            concat!(
                r#"{"name":"tick","schedule":"5s","type":"interval","timezone":"UTC","catchUp":"once","active":true,"paused":false,"#,
                r#""nextRunAt":"1970-01-01T00:00:00Z","lastRunAt":null,"#,
                r#""lastFinishedAt":"1970-01-01T00:00:00Z","lastStatus":"failed","failCount":1,"#,
                r#""failReason":"exit status 3","lockedAt":null,"lockedBy":null}"#
            )
        );
    }

    #[test]
    fn a_run_outcome_gives_its_status_and_reason() {
        let failed = RunOutcome::from(Err("exit status 3".to_string()));
        assert_eq!(
            (failed.status(), failed.failure()),
            (RunStatus::Failed, Some("exit status 3"))
        );
        let ok = RunOutcome::from(Ok(()));
        assert_eq!((ok.status(), ok.failure()), (RunStatus::Ok, None));
    }
}

//! Job records in the embedded store (table `jobs`, keyed by `name`). Every change of who
//! runs an occurrence (`advance`, `lock`, `finish`) is one conditional `UPDATE` whose
//! changed-row count is the answer, so the processes sharing the file agree on who runs
//! what without any other coordination. The type and last status are kept as the text of
//! `JobKind` and `RunStatus` (`interval`, `ok`), as in MongoDB.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Row};

use super::{parse_ts, ts, EmbeddedStore};
use crate::config::{CatchUp, JobKind};
use crate::store::{JobDefinition, JobRecord, RunOutcome, RunStatus, StoreError, StoredText};

const JOB_COLUMNS: &str = "SELECT name, schedule, type, active, next_run_at, last_run_at, last_finished_at, last_status, fail_count, fail_reason, locked_at, locked_by, timezone, catch_up, paused FROM jobs";

pub async fn job(store: &EmbeddedStore, name: &str) -> Result<Option<JobRecord>, StoreError> {
    let name = name.to_string();
    let row = store
        .read(move |c| {
            c.query_row(&format!("{JOB_COLUMNS} WHERE name = ?1"), [&name], job_row)
                .optional()
        })
        .await?;
    row.map(RawJob::into_record).transpose()
}

pub async fn all(store: &EmbeddedStore) -> Result<Vec<JobRecord>, StoreError> {
    let rows = store
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

/// Inserts or updates the definition columns only: the run record is kept.
pub async fn define(store: &EmbeddedStore, definition: &JobDefinition) -> Result<(), StoreError> {
    let d = definition.clone();
    let (kind, catch_up) = (d.kind.as_str(), d.catch_up.as_str());
    store.write(move |c| {
        c.execute(
            "INSERT INTO jobs (name, schedule, type, active, next_run_at, timezone, catch_up)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (name) DO UPDATE SET schedule = ?2, type = ?3, active = ?4,
               next_run_at = CASE WHEN ?8 THEN next_run_at ELSE ?5 END, timezone = ?6, catch_up = ?7",
            params![d.name, d.schedule, kind, d.active, d.next_run_at.map(ts), d.timezone, catch_up, d.keep_planned],
        )
    })
    .await
    .map(drop)
}

pub async fn remove(store: &EmbeddedStore, name: &str) -> Result<(), StoreError> {
    let name = name.to_string();
    store
        .write(move |c| c.execute("DELETE FROM jobs WHERE name = ?1", [&name]))
        .await
        .map(drop)
}

/// Moves the plan from `planned` to `next` if it is still `planned` and the job's pause is
/// `paused`.
pub async fn advance(
    store: &EmbeddedStore,
    name: &str,
    planned: DateTime<Utc>,
    next: Option<DateTime<Utc>>,
    paused: bool,
) -> Result<bool, StoreError> {
    let name = name.to_string();
    let changed = store
        .write(move |c| {
            c.execute(
                "UPDATE jobs SET next_run_at = ?3 WHERE name = ?1 AND next_run_at = ?2 AND paused = ?4",
                params![name, ts(planned), next.map(ts), paused],
            )
        })
        .await?;
    Ok(changed == 1)
}

pub async fn set_paused(
    store: &EmbeddedStore,
    name: &str,
    paused: bool,
) -> Result<bool, StoreError> {
    let name = name.to_string();
    let changed = store
        .write(move |c| {
            c.execute(
                "UPDATE jobs SET paused = ?2 WHERE name = ?1",
                params![name, paused],
            )
        })
        .await?;
    Ok(changed == 1)
}

pub async fn lock(
    store: &EmbeddedStore,
    name: &str,
    host: &str,
    now: DateTime<Utc>,
    stale_before: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let (name, host) = (name.to_string(), host.to_string());
    let changed = store
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

/// The status text is chosen in the SQL from whether there is a failure reason; it is the
/// text of `RunStatus` (the module's tests hold the two together).
pub async fn finish(
    store: &EmbeddedStore,
    name: &str,
    host: &str,
    outcome: &RunOutcome,
    finished_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (name, host) = (name.to_string(), host.to_string());
    let failure = outcome.failure().map(str::to_string);
    store
        .write(move |c| {
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

/// A `jobs` row as SQLite returns it, before its text is read as times and enums.
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
    timezone: Option<String>,
    catch_up: Option<String>,
    paused: bool,
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
        timezone: r.get(12)?,
        catch_up: r.get(13)?,
        paused: r.get(14)?,
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
            kind: JobKind::from_stored(&self.kind)?,
            last_status: self
                .last_status
                .as_deref()
                .map(RunStatus::from_stored)
                .transpose()?,
            name: self.name,
            schedule: self.schedule,
            timezone: self.timezone.unwrap_or_else(|| "UTC".into()),
            catch_up: self
                .catch_up
                .as_deref()
                .map_or(Ok(CatchUp::Once), CatchUp::from_stored)?,
            active: self.active,
            paused: self.paused,
            fail_count: self.fail_count,
            fail_reason: self.fail_reason,
            locked_by: self.locked_by,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StateSync;

    fn open() -> (tempfile::TempDir, EmbeddedStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(dir.path(), StateSync::Normal).expect("open");
        (dir, store)
    }

    async fn stored(store: &EmbeddedStore, name: &str) -> (String, Option<String>) {
        let name = name.to_string();
        store
            .read(move |c| {
                c.query_row(
                    "SELECT type, last_status FROM jobs WHERE name = ?1",
                    [&name],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
            })
            .await
            .expect("raw row")
    }

    async fn run_once(store: &EmbeddedStore, outcome: RunOutcome) -> Option<RunStatus> {
        let now = Utc::now();
        assert!(lock(store, "tick", "host", now, now).await.expect("lock"));
        finish(store, "tick", "host", &outcome, now)
            .await
            .expect("finish");
        job(store, "tick")
            .await
            .expect("read")
            .and_then(|r| r.last_status)
    }

    #[tokio::test]
    async fn types_and_statuses_are_stored_as_the_same_text_as_before() {
        let (_dir, store) = open();
        let definition = JobDefinition {
            name: "tick".into(),
            schedule: Some("00 02 * * *".into()),
            kind: JobKind::Cron,
            timezone: "UTC".into(),
            catch_up: CatchUp::Skip,
            active: true,
            next_run_at: None,
            keep_planned: false,
        };
        define(&store, &definition).await.expect("define");
        assert_eq!(stored(&store, "tick").await, ("cron".into(), None));
        let failed = RunOutcome::Failed("exit status 3".into());
        assert_eq!(run_once(&store, failed).await, Some(RunStatus::Failed));
        assert_eq!(stored(&store, "tick").await.1.as_deref(), Some("failed"));
        assert_eq!(run_once(&store, RunOutcome::Ok).await, Some(RunStatus::Ok));
        assert_eq!(stored(&store, "tick").await.1.as_deref(), Some("ok"));
    }

    #[tokio::test]
    async fn an_unknown_stored_type_or_status_is_invalid_not_a_panic() {
        let (_dir, store) = open();
        store
            .write(|c| {
                c.execute_batch(
                    "INSERT INTO jobs (name, type, active) VALUES ('a', 'weekly', 1);
                     INSERT INTO jobs (name, type, active, last_status) VALUES ('b', 'cron', 1, 'maybe');",
                )
                .map(|()| 2)
            })
            .await
            .expect("insert");
        let refused = |read: Result<_, StoreError>| match read {
            Err(StoreError::Invalid(message)) => message,
            other => panic!("read as {other:?}"),
        };
        assert_eq!(
            refused(job(&store, "a").await),
            r#"stored job type "weekly""#
        );
        assert_eq!(
            refused(job(&store, "b").await),
            r#"stored job run status "maybe""#
        );
        assert!(matches!(all(&store).await, Err(StoreError::Invalid(_))));
    }
}

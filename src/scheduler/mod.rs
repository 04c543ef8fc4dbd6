//! The job scheduler (SPEC 5): one timer task per scheduled job, sleeping until the job's
//! `nextRunAt` as the store has it. An occurrence is taken by moving `nextRunAt` on in one
//! conditional update (`advance_job`), so of all hosts sharing the store exactly one runs
//! it; the run itself holds the job's lock, so a job never overlaps itself.

mod action;
mod controls;

pub use controls::{FireTime, Preview};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{error, info, warn, Instrument};

use crate::broker::Outbox;
use crate::config::{CatchUp, JobAction, JobDef, Schedule, Zone};
use crate::process::hostname;
use crate::store::{JobDefinition, JobRecord, RunOutcome, Store, StoreError};

/// A timer re-reads its job at least this often, to see re-schedules made on other hosts.
const REREAD: Duration = Duration::from_secs(30);
/// How long a publish job's lock holds before another host may take it over.
const PUBLISH_LOCK: Duration = Duration::from_secs(600);
/// What an exec job's lock holds beyond its timeout.
const LOCK_MARGIN: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("no active job {0:?}")]
    NotFound(String),
    #[error("job {0:?} is running already")]
    Running(String),
    #[error("{0}")]
    BadSchedule(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A job record with whether a run holds its lock now, as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    #[serde(flatten)]
    pub record: JobRecord,
    pub is_running: bool,
}

pub struct Scheduler {
    store: Arc<dyn Store>,
    outbox: Arc<Outbox>,
    /// `hostname:pid`, recorded as `lockedBy`.
    host: String,
    /// `scheduler.active`: false fires nothing on this host (API start still works).
    fires: bool,
    jobs: Mutex<BTreeMap<String, Entry>>,
    /// Runs by (job, `ok` or `failed`) since the daemon started, for `/metrics`.
    runs: Mutex<BTreeMap<(String, String), u64>>,
}

struct Entry {
    def: JobDef,
    timer: Option<JoinHandle<()>>,
    wake: Arc<Notify>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(timer) = self.timer.take() {
            timer.abort();
        }
    }
}

impl Scheduler {
    pub fn new(store: Arc<dyn Store>, outbox: Arc<Outbox>, fires: bool) -> Arc<Scheduler> {
        let host = format!("{}:{}", hostname(), std::process::id());
        Arc::new(Scheduler {
            store,
            outbox,
            host,
            fires,
            jobs: Mutex::new(BTreeMap::new()),
            runs: Mutex::new(BTreeMap::new()),
        })
    }

    /// Makes the running jobs those of `defs`: the files are the source of truth, so a job
    /// whose file changed gets its file's schedule back, even after a re-schedule by API.
    /// Jobs named in `broken` (their file fails validation) keep their last good definition.
    pub async fn sync(
        self: &Arc<Self>,
        defs: BTreeMap<String, JobDef>,
        broken: &[String],
    ) -> Result<(), StoreError> {
        let current: BTreeMap<String, JobDef> = self
            .entries()
            .iter()
            .map(|(n, e)| (n.clone(), e.def.clone()))
            .collect();
        let gone = current
            .keys()
            .filter(|n| !defs.contains_key(*n) && !broken.contains(n));
        for name in gone {
            info!(job = %name, "job file removed");
            self.store.remove_job(name).await?;
            self.entries().remove(name);
        }
        for (name, def) in defs {
            if current.get(&name) == Some(&def) {
                continue;
            }
            self.define(&def).await?;
            info!(job = %name, schedule = %def.schedule, active = def.active, "job defined");
            let wake = Arc::new(Notify::new());
            let timer = self
                .times(&def)
                .then(|| self.spawn_timer(&name, wake.clone()));
            self.entries().insert(name, Entry { def, timer, wake });
        }
        Ok(())
    }

    /// Whether this host keeps a timer for the job: scheduled, active, and firing enabled.
    fn times(&self, def: &JobDef) -> bool {
        self.fires && def.active
    }

    /// Writes a job's definition. A job whose schedule and zone are the same as stored keeps
    /// its plan (a daemon restart does not shift an interval job); when that plan went by while
    /// no daemon ran it, its `catch_up` decides what comes next (`catch_up`). Any other job is
    /// planned afresh from now.
    async fn define(&self, def: &JobDef) -> Result<(), StoreError> {
        let text = schedule_text(&def.schedule);
        let now = Utc::now();
        let existing = self.store.job(&def.name).await?;
        if let Some(holder) = existing.as_ref().and_then(|r| r.locked_by.as_deref()) {
            self.release_if_dead(&def.name, holder).await?;
        }
        let zone = def.timezone.name();
        let kept = existing
            .filter(|r| r.schedule == text && r.timezone == zone)
            .and_then(|r| r.next_run_at);
        let next_run_at = kept.or_else(|| def.schedule.next(None, now, def.timezone));
        if next_run_at.is_none() && !matches!(def.schedule, Schedule::Manual) {
            warn!(job = %def.name, schedule = %def.schedule, "no next run can be computed: the job will not fire");
        }
        let definition = JobDefinition {
            name: def.name.clone(),
            schedule: text,
            kind: def.schedule.kind(),
            timezone: zone.to_string(),
            catch_up: def.catch_up,
            active: def.active,
            next_run_at,
            keep_planned: kept.is_some(),
        };
        self.store.define_job(&definition).await?;
        match kept {
            // Only a host that fires jobs decides about a missed plan: `dpsd job run` and a host
            // with `scheduler.active: false` leave it to one that does.
            // A paused job's plan is decided when it is resumed (the move fails while paused).
            Some(planned) if planned <= now && self.fires => {
                let schedule = (&def.schedule, def.timezone);
                let moved = self.catch_up(&def.name, def.catch_up, schedule, planned, now, false);
                moved.await.map(drop)
            }
            _ => Ok(()),
        }
    }

    /// An occurrence planned for `planned` went by while no daemon ran the job (or while it
    /// was paused). `once` moves the plan to now, so the timer runs it at once and an interval
    /// counts again from that run; `skip` moves it to the next future occurrence. The move is
    /// the same conditional update that takes an occurrence: of hosts starting together, one
    /// makes it, and the run it plans is then taken by one timer, as any occurrence is.
    /// Returns whether this host made the move.
    async fn catch_up(
        &self,
        name: &str,
        catch_up: CatchUp,
        (schedule, zone): (&Schedule, Zone),
        planned: DateTime<Utc>,
        now: DateTime<Utc>,
        paused: bool,
    ) -> Result<bool, StoreError> {
        let next = match catch_up {
            CatchUp::Once => Some(now),
            CatchUp::Skip => schedule.next(None, now, zone),
        };
        let moved = if paused {
            self.store.replan_paused_job(name, planned, next).await?
        } else {
            self.store.advance_job(name, planned, next).await?
        };
        match catch_up {
            _ if !moved => {}
            CatchUp::Once => {
                info!(
                    job = name,
                    "catching up on the occurrence missed at {planned}: it runs now"
                )
            }
            CatchUp::Skip => {
                info!(
                    job = name,
                    "skipping the occurrence missed at {planned} (catch_up: skip)"
                )
            }
        }
        Ok(moved)
    }

    /// A lock held by an earlier dpsd process of this host that is gone (stopped mid-run)
    /// is released at once rather than left to go stale; its run is recorded as failed.
    async fn release_if_dead(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let Some((host, pid)) = holder.rsplit_once(':') else {
            return Ok(());
        };
        let Ok(pid) = pid.parse::<i32>() else {
            return Ok(());
        };
        let ours = host == hostname() && holder != self.host;
        // Only "no such process" means dead: EPERM is a live process of another user.
        let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            == Err(nix::errno::Errno::ESRCH);
        if ours && gone {
            warn!(
                job = name,
                holder, "releasing the lock of a run whose dpsd process is gone"
            );
            let outcome =
                RunOutcome::Failed("interrupted: the dpsd process running it stopped".into());
            self.store
                .finish_job(name, holder, &outcome, Utc::now())
                .await?;
        }
        Ok(())
    }

    fn spawn_timer(self: &Arc<Self>, name: &str, wake: Arc<Notify>) -> JoinHandle<()> {
        let span = tracing::info_span!("job", job = %name);
        tokio::spawn(self.clone().timer(name.to_string(), wake).instrument(span))
    }

    /// Sleeps until each occurrence, takes it if no other host did, and runs it.
    async fn timer(self: Arc<Self>, name: String, wake: Arc<Notify>) {
        loop {
            let record = match self.store.job(&name).await {
                Ok(Some(record)) => record,
                Ok(None) => return,
                Err(e) => {
                    warn!("cannot read the job: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let Some(planned) = record.next_run_at else {
                wake.notified().await;
                continue;
            };
            if record.paused {
                // Resumed here (a wake) or on another host (seen at the next read).
                tokio::select! {
                    _ = tokio::time::sleep(REREAD) => {}
                    _ = wake.notified() => {}
                }
                continue;
            }
            // Sleep to the occurrence itself when it is near; re-read the record first when
            // woken (a re-schedule) or when it is far (a change made on another host).
            let wait = (planned - Utc::now()).to_std().unwrap_or_default();
            let due = tokio::select! {
                _ = tokio::time::sleep(wait.min(REREAD)) => wait <= REREAD,
                _ = wake.notified() => false,
            };
            if !due {
                continue;
            }
            let woke = Utc::now();
            let schedule = record
                .schedule
                .as_deref()
                .map_or(Ok(Schedule::Manual), Schedule::parse);
            let zone = record_zone(&record);
            let next = schedule
                .ok()
                .and_then(|s| s.next(Some(planned), woke, zone));
            if next.is_none() && record.schedule.is_some() {
                warn!("no next run can be computed after this one: the job will not fire again");
            }
            match self.store.advance_job(&name, planned, next).await {
                Ok(true) => {
                    // How late the timer woke, and how long taking the occurrence took.
                    let lateness_ms = (woke - planned).num_milliseconds();
                    let claim_ms = (Utc::now() - woke).num_milliseconds();
                    info!(lateness_ms, claim_ms, "occurrence due at {planned} taken");
                    let me = self.clone();
                    let job = name.clone();
                    tokio::spawn(async move { me.run(&job).await.map(drop) }.in_current_span());
                }
                Ok(false) => {} // another host took it, or the job was paused meanwhile
                Err(e) => {
                    warn!("cannot take the occurrence: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Runs job `name` now under its lock and returns how the run ended; `Err(Running)` when
    /// a run holds the lock.
    pub async fn run(&self, name: &str) -> Result<RunOutcome, SchedulerError> {
        let def = self.def(name)?;
        let now = Utc::now();
        let stale_before = stale_before(now, lock_lifetime(&def.action));
        if !self
            .store
            .lock_job(name, &self.host, now, stale_before)
            .await?
        {
            info!(job = name, "still running: this run is skipped");
            return Err(SchedulerError::Running(name.to_string()));
        }
        let outcome = action::run(&def.action, &self.outbox).await;
        *self
            .runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((name.to_string(), outcome.status().as_str().into()))
            .or_default() += 1;
        match &outcome {
            RunOutcome::Ok => info!(job = name, "job finished"),
            RunOutcome::Failed(reason) => error!(job = name, "job failed: {reason}"),
        }
        self.store
            .finish_job(name, &self.host, &outcome, Utc::now())
            .await?;
        Ok(outcome)
    }

    /// Starts a run in the background (the API's "start"): fails at once when the job is
    /// unknown, inactive or running.
    pub async fn start(self: &Arc<Self>, name: &str) -> Result<(), SchedulerError> {
        let status = self.status(name).await?;
        if status.is_running {
            return Err(SchedulerError::Running(name.to_string()));
        }
        let me = self.clone();
        let job = name.to_string();
        let span = tracing::info_span!("job", job = %name);
        tokio::spawn(
            async move {
                if let Err(e) = me.run(&job).await {
                    warn!("start: {e}");
                }
            }
            .instrument(span),
        );
        Ok(())
    }

    /// Makes the job's timer read its record again, starting one if the job had none.
    fn wake_timer(self: &Arc<Self>, name: &str, def: &JobDef) {
        let needs_timer = self.times(def);
        let mut entries = self.entries();
        let Some(entry) = entries.get_mut(name) else {
            return;
        };
        match &entry.timer {
            Some(_) => entry.wake.notify_one(),
            None if needs_timer => entry.timer = Some(self.spawn_timer(name, entry.wake.clone())),
            None => {}
        }
    }

    /// The job's record and whether it runs now; NotFound for unknown and inactive jobs.
    pub async fn status(&self, name: &str) -> Result<JobStatus, SchedulerError> {
        self.def(name)?;
        let record = self
            .store
            .job(name)
            .await?
            .ok_or_else(|| SchedulerError::NotFound(name.into()))?;
        Ok(self.with_running(record))
    }

    /// Every job, active or not.
    pub async fn list(&self) -> Result<Vec<JobStatus>, SchedulerError> {
        let records = self.store.jobs().await?;
        Ok(records.into_iter().map(|r| self.with_running(r)).collect())
    }

    /// Runs by (job, status) since this process started.
    pub fn run_counts(&self) -> BTreeMap<(String, String), u64> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn with_running(&self, record: JobRecord) -> JobStatus {
        let lifetime = self
            .entries()
            .get(&record.name)
            .map_or(PUBLISH_LOCK, |e| lock_lifetime(&e.def.action));
        let is_running = record.locked_at.is_some_and(|at| !stale(at, lifetime));
        JobStatus { record, is_running }
    }

    fn def(&self, name: &str) -> Result<JobDef, SchedulerError> {
        match self.entries().get(name) {
            Some(entry) if entry.def.active => Ok(entry.def.clone()),
            _ => Err(SchedulerError::NotFound(name.to_string())),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        // A panic while holding this lock leaves only a map behind: keep using it.
        self.jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The zone a record names. Only dpsd writes it, from a name it parsed; one it does not know
/// (a record written by a dpsd with a newer tz database) is read as UTC, and said so.
fn record_zone(record: &JobRecord) -> Zone {
    record.timezone.parse().unwrap_or_else(|e| {
        warn!(job = %record.name, "{e}: its cron fields are read in UTC");
        Zone::UTC
    })
}

fn schedule_text(schedule: &Schedule) -> Option<String> {
    match schedule {
        Schedule::Manual => None,
        other => Some(other.to_string()),
    }
}

fn lock_lifetime(action: &JobAction) -> Duration {
    match action {
        JobAction::Publish { .. } => PUBLISH_LOCK,
        JobAction::Exec { timeout, .. } => timeout.saturating_add(LOCK_MARGIN),
    }
}

/// Locks taken before this are stale at `now`. A lifetime too long to subtract (an exec
/// timeout of ages) gives the epoch: no lock goes stale.
fn stale_before(now: DateTime<Utc>, lifetime: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(lifetime)
        .ok()
        .and_then(|lifetime| now.checked_sub_signed(lifetime))
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

fn stale(locked_at: DateTime<Utc>, lifetime: Duration) -> bool {
    chrono::Duration::from_std(lifetime).is_ok_and(|l| Utc::now() - locked_at > l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_lifetimes_of_ages_never_panic_and_never_go_stale() {
        let now = Utc::now();
        let hour = Duration::from_secs(3600);
        assert_eq!(stale_before(now, hour), now - chrono::Duration::hours(1));
        for lifetime in [Duration::from_secs(300_000 * 31_557_600), Duration::MAX] {
            assert_eq!(stale_before(now, lifetime), DateTime::<Utc>::UNIX_EPOCH);
        }
        let exec = JobAction::Exec {
            program: "x".into(),
            args: vec![],
            timeout: Duration::MAX,
        };
        assert_eq!(lock_lifetime(&exec), Duration::MAX);
        assert!(!stale(now, Duration::MAX));
    }
}

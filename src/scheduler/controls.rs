//! What an operator does to a job through the API and `dpsd job preview`: re-schedule it,
//! pause and resume it, and preview its next fire times. The timers and runs are in
//! `mod.rs`; these only change the job's record and wake its timer.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::info;

use super::{record_zone, schedule_text, JobStatus, Scheduler, SchedulerError};
use crate::config::{JobDef, Schedule, Zone};
use crate::store::{JobDefinition, JobRecord};

/// The next fire times of a job (`GET /api/job/preview`, `dpsd job preview`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Preview {
    pub name: String,
    pub schedule: Option<String>,
    pub timezone: String,
    pub times: Vec<FireTime>,
}

/// One fire time, as UTC and as the wall-clock time of the job's zone at that instant (so at
/// a spring-forward jump, the time it actually fires, not the skipped one).
#[derive(Debug, Clone, Serialize)]
pub struct FireTime {
    pub utc: DateTime<Utc>,
    pub local: String,
}

impl Preview {
    /// The next `n` fire times of `schedule` read in `zone`: from `first` (the planned next
    /// run) when given, else from now.
    pub fn new(
        name: &str,
        schedule: &Schedule,
        zone: Zone,
        first: Option<DateTime<Utc>>,
        n: usize,
    ) -> Preview {
        let times = schedule.upcoming(first, Utc::now(), zone, n);
        Preview {
            name: name.to_string(),
            schedule: schedule_text(schedule),
            timezone: zone.name().to_string(),
            times: times
                .into_iter()
                .map(|utc| FireTime {
                    utc,
                    local: zone.show(utc),
                })
                .collect(),
        }
    }
}

impl Scheduler {
    /// A new schedule for an active job, until the daemon restarts or its file changes. Its
    /// cron fields are read in `timezone` when given, else in the job's zone as it is now.
    pub async fn reschedule(
        self: &Arc<Self>,
        name: &str,
        text: &str,
        timezone: Option<&str>,
    ) -> Result<JobRecord, SchedulerError> {
        // A bad schedule is reported before an unknown job (api.md 3).
        let schedule = Schedule::parse(text).map_err(SchedulerError::BadSchedule)?;
        let given = timezone
            .map(str::parse::<Zone>)
            .transpose()
            .map_err(SchedulerError::BadSchedule)?;
        let def = self.def(name)?;
        let zone = match given {
            Some(zone) => zone,
            None => self.zone_now(name, &def).await?,
        };
        let next_run_at = schedule.next(None, Utc::now(), zone);
        if next_run_at.is_none() && !matches!(schedule, Schedule::Manual) {
            return Err(SchedulerError::BadSchedule(format!(
                "schedule {:?} has no next run that can be represented",
                text.trim()
            )));
        }
        let definition = JobDefinition {
            name: name.to_string(),
            schedule: schedule_text(&schedule),
            kind: schedule.kind(),
            timezone: zone.name().to_string(),
            catch_up: def.catch_up,
            active: def.active,
            next_run_at,
            keep_planned: false,
        };
        self.store.define_job(&definition).await?;
        self.wake_timer(name, &def);
        info!(job = name, schedule = text, "re-scheduled");
        self.store
            .job(name)
            .await?
            .ok_or_else(|| SchedulerError::NotFound(name.into()))
    }

    /// Pauses an active job on every host: no occurrence of it is taken until it is resumed
    /// (an explicit start still runs it). Idempotent.
    pub async fn pause(self: &Arc<Self>, name: &str) -> Result<JobStatus, SchedulerError> {
        let def = self.def(name)?;
        if !self.store.set_job_paused(name, true).await? {
            return Err(SchedulerError::NotFound(name.into()));
        }
        info!(job = name, "paused");
        self.wake_timer(name, &def);
        self.status(name).await
    }

    /// Resumes a paused job. An occurrence that went by while it was paused is dealt with
    /// by its `catch_up`, decided while it is still paused so that no host's timer takes the
    /// old plan first. Idempotent: resuming a job that is not paused changes nothing.
    pub async fn resume(self: &Arc<Self>, name: &str) -> Result<JobStatus, SchedulerError> {
        let def = self.def(name)?;
        let record = self
            .store
            .job(name)
            .await?
            .ok_or_else(|| SchedulerError::NotFound(name.into()))?;
        if !record.paused {
            return Ok(self.with_running(record));
        }
        let now = Utc::now();
        if let Some(planned) = record.next_run_at.filter(|p| *p <= now) {
            let schedule = record
                .schedule
                .as_deref()
                .map_or(Ok(Schedule::Manual), Schedule::parse)
                .unwrap_or(Schedule::Manual);
            let zone = record_zone(&record);
            self.catch_up(name, record.catch_up, (&schedule, zone), planned, now, true)
                .await?;
        }
        self.store.set_job_paused(name, false).await?;
        info!(job = name, "resumed");
        self.wake_timer(name, &def);
        self.status(name).await
    }

    /// The next `n` fire times of an active job as its record plans them, or of `schedule`
    /// and/or `timezone` given instead (a re-schedule not yet sent: nothing is changed).
    pub async fn preview(
        &self,
        name: &str,
        n: usize,
        schedule: Option<&str>,
        timezone: Option<&str>,
    ) -> Result<Preview, SchedulerError> {
        let given = schedule
            .map(Schedule::parse)
            .transpose()
            .map_err(SchedulerError::BadSchedule)?;
        let zone = timezone
            .map(str::parse::<Zone>)
            .transpose()
            .map_err(SchedulerError::BadSchedule)?;
        self.def(name)?;
        let record = self
            .store
            .job(name)
            .await?
            .ok_or_else(|| SchedulerError::NotFound(name.into()))?;
        let unchanged = given.is_none() && zone.is_none();
        let schedule = match given {
            Some(schedule) => schedule,
            None => record
                .schedule
                .as_deref()
                .map_or(Ok(Schedule::Manual), Schedule::parse)
                .map_err(SchedulerError::BadSchedule)?,
        };
        let zone = zone.unwrap_or_else(|| record_zone(&record));
        let first = record.next_run_at.filter(|_| unchanged);
        Ok(Preview::new(name, &schedule, zone, first, n))
    }

    /// The zone the job's record has now (a re-schedule may have changed it), else its file's.
    async fn zone_now(&self, name: &str, def: &JobDef) -> Result<Zone, SchedulerError> {
        let record = self.store.job(name).await?;
        Ok(record.map_or(def.timezone, |r| record_zone(&r)))
    }
}

//! `dpsd job run NAME`: one run of a job's action in the foreground, as the scheduler would
//! do it (under the job's lock, recorded in the store). `dpsd job preview NAME`: its next
//! fire times, from its file alone.

use std::sync::Arc;

use super::{Failure, Global};
use crate::broker::Outbox;
use crate::config::{Config, JobDef};
use crate::logging;
use crate::scheduler::{Preview, Scheduler, SchedulerError};
use crate::store::{self, RunOutcome};

/// The most fire times one preview lists (as the API's).
const MAX_PREVIEW: u32 = 1000;

/// Job `name` of the configuration's jobs_dir; its file's problem, or a usage error.
fn job_def(config: &Config, name: &str) -> Result<JobDef, Failure> {
    let (jobs, problems) = config.jobs();
    if let Some(def) = jobs.get(name) {
        return Ok(def.clone());
    }
    if let Some(problem) = problems
        .0
        .iter()
        .find(|p| p.file.file_stem().is_some_and(|s| s == name))
    {
        return Err(Failure::Config(problem.clone().into()));
    }
    Err(Failure::Usage(format!(
        "no job {name:?} in {}",
        config.settings.jobs_dir.display()
    )))
}

/// Prints the next `n` fire times of the job's file's schedule from now, each in UTC and in
/// the job's zone: what the daemon plans when it defines the job afresh. Touches no server.
pub fn job_preview(global: &Global, name: &str, n: u32) -> Result<(), Failure> {
    if n == 0 || n > MAX_PREVIEW {
        return Err(Failure::Usage(format!(
            "-n must be between 1 and {MAX_PREVIEW}"
        )));
    }
    let config = global.config()?;
    let def = job_def(&config, name)?;
    let preview = Preview::new(name, &def.schedule, def.timezone, None, n as usize);
    match &preview.schedule {
        None => println!("job {name} has no schedule: it runs only when started"),
        Some(schedule) => println!("job {name}: {schedule} in {}", preview.timezone),
    }
    for time in &preview.times {
        println!("{}  {}", time.utc.format("%Y-%m-%dT%H:%M:%SZ"), time.local);
    }
    Ok(())
}

pub async fn job_run(global: &Global, name: &str) -> Result<(), Failure> {
    let config = global.config()?;
    let def = job_def(&config, name)?;
    let _log = logging::init(&config.settings.log, global.verbose)?;
    let store = store::open(&config.settings.store()).await?;
    let outbox = Arc::new(Outbox::new(
        &config.settings.amqp,
        config.queue_types(),
        "dpsd job run",
    ));
    let scheduler = Scheduler::new(store.clone(), outbox.clone(), false);
    let mut one = std::collections::BTreeMap::new();
    one.insert(name.to_string(), def);
    let ran = async {
        scheduler
            .sync(one, &[])
            .await
            .map_err(SchedulerError::from)?;
        scheduler.run(name).await
    }
    .await;
    outbox.close().await;
    store.close().await;
    match ran {
        Ok(RunOutcome::Ok) => Ok(()),
        Ok(RunOutcome::Failed(reason)) => Err(Failure::Runtime(anyhow::anyhow!(
            "job {name} failed: {reason}"
        ))),
        Err(SchedulerError::NotFound(_)) => Err(Failure::Usage(format!(
            "job {name:?} is inactive (active: false)"
        ))),
        Err(e) => Err(Failure::Runtime(e.into())),
    }
}

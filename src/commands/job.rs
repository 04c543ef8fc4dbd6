//! `dpsd job run NAME`: one run of a job's action in the foreground, as the scheduler would
//! do it (under the job's lock, recorded in the store).

use std::sync::Arc;

use super::{Failure, Global};
use crate::broker::Outbox;
use crate::logging;
use crate::scheduler::{Scheduler, SchedulerError};
use crate::store::{self, RunOutcome};

pub async fn job_run(global: &Global, name: &str) -> Result<(), Failure> {
    let config = global.config()?;
    let (jobs, problems) = config.jobs();
    let Some(def) = jobs.get(name).cloned() else {
        if let Some(problem) = problems
            .0
            .iter()
            .find(|p| p.file.file_stem().is_some_and(|s| s == name))
        {
            return Err(Failure::Config(problem.clone().into()));
        }
        return Err(Failure::Usage(format!(
            "no job {name:?} in {}",
            config.settings.jobs_dir.display()
        )));
    };
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

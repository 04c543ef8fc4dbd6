//! `dpsd check`: validates every configuration file without touching any server.

use super::{Failure, Global};
use crate::config::Config;

/// Prints every problem, one per line as `file:line: message`. Ok when there are none.
pub fn check(global: &Global) -> Result<(), Failure> {
    let config = match Config::load(&global.source) {
        Ok(config) => config,
        Err(problems) => {
            eprintln!("{problems}");
            return Err(Failure::Runtime(anyhow::anyhow!(
                "configuration invalid ({} problem(s))",
                problems.0.len()
            )));
        }
    };
    for warning in &config.warnings {
        eprintln!("warning: {warning}");
    }
    let (workers, mut problems) = config.workers();
    let (jobs, job_problems) = config.jobs();
    problems.0.extend(job_problems.0);
    if !problems.is_empty() {
        eprintln!("{problems}");
        return Err(Failure::Runtime(anyhow::anyhow!(
            "configuration invalid ({} problem(s))",
            problems.0.len()
        )));
    }
    let names = |keys: Vec<&String>| keys.into_iter().cloned().collect::<Vec<_>>().join(", ");
    println!(
        "{}: ok ({} service(s), {} worker(s): {}; {} job(s): {})",
        config.path.display(),
        config.services.len(),
        workers.len(),
        names(workers.keys().collect()),
        jobs.len(),
        names(jobs.keys().collect()),
    );
    Ok(())
}

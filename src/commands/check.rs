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
    let (workers, problems) = config.workers();
    if !problems.is_empty() {
        eprintln!("{problems}");
        return Err(Failure::Runtime(anyhow::anyhow!(
            "configuration invalid ({} problem(s))",
            problems.0.len()
        )));
    }
    println!(
        "{}: ok ({} service(s), {} worker(s): {})",
        config.path.display(),
        config.services.len(),
        workers.len(),
        workers.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

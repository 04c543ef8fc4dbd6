//! `dpsd run` (and bare `dpsd`): the daemon (see `crate::daemon`).

use anyhow::Context;

use super::{Failure, Global};
use crate::config::Snapshot;
use crate::daemon;
use crate::logging;
use crate::shutdown::Shutdown;
use crate::supervisor::Spawner;

/// Serves the API, runs the scheduler and (with `workers`) supervises the replicas of every
/// worker file, until SIGTERM or SIGINT. Without `workers` (`--no-workers`, SPEC 13) each
/// worker runs elsewhere as `dpsd worker NAME`.
pub async fn run(global: &Global, workers: bool) -> Result<(), Failure> {
    let config = global.config()?;
    let _log = logging::init(&config.settings.log, global.verbose)?;
    let timeout = config.settings.supervisor.shutdown_timeout;
    let shutdown = Shutdown::on_signals(timeout).context("install signal handlers")?;
    let config_path = std::fs::canonicalize(&config.path)
        .with_context(|| format!("resolve {}", config.path.display()))?;
    let spawner = Spawner {
        exe: std::env::current_exe().context("find the dpsd executable")?,
        config: config_path.clone(),
        verbose: global.verbose,
    };
    let mut source = global.source.clone();
    source.config = Some(config_path);
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        workers,
        "dpsd daemon starting"
    );
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let spawner = workers.then_some(spawner);
    daemon::run(source, Snapshot::of(config), spawner, shutdown).await?;
    Ok(())
}

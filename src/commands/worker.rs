//! `dpsd worker NAME`: one replica of a worker in the foreground.

use std::sync::Arc;

use tracing::Instrument;

use super::{Failure, Global};
use crate::logging;
use crate::services::Caller;
use crate::shutdown::Shutdown;
use crate::store;
use crate::supervisor::WORKER_YAML;
use crate::worker::{report, report_once, Counters, Handler, Worker};

/// Runs until SIGINT or SIGTERM, then drains the messages in hand and returns.
pub async fn worker(global: &Global, name: &str, replica: u32) -> Result<(), Failure> {
    let config = global.config()?;
    let def = match std::env::var(WORKER_YAML) {
        Ok(text) => config.worker_from_text(name, &text)?,
        Err(_) => config.worker(name)?,
    };
    let _log = logging::init(&config.settings.log, global.verbose)?;
    let span = tracing::info_span!("worker", worker = %def.name, replica);
    async {
        let shutdown = Shutdown::on_signals(config.settings.supervisor.shutdown_timeout)
            .map_err(|e| anyhow::anyhow!("cannot install signal handlers: {e}"))?;
        let store = store::open(&config.settings).await?;
        let handler = Handler {
            def,
            store: store.clone(),
            caller: Caller::default(),
            hard_stop: shutdown.hard.clone(),
            counters: Arc::new(Counters::default()),
        };
        tokio::spawn(report(handler.counters.clone()));
        let worker = Worker {
            handler: Arc::new(handler),
            amqp_url: config.settings.amqp.url.clone(),
            replica,
        };
        worker.run(&shutdown).await;
        // The last counts, with what the drain finished, before stdout closes.
        report_once(&worker.handler.counters.totals());
        store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
    .instrument(span)
    .await
}

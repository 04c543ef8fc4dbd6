//! Stopping in two steps. `graceful`: stop taking new work, finish what is in hand.
//! `hard`: give up on what is in hand (it is not acked, so the broker redelivers it).
//! Every long-running loop selects on one of the two tokens.

use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Default)]
pub struct Shutdown {
    pub graceful: CancellationToken,
    pub hard: CancellationToken,
}

impl Shutdown {
    /// Triggers a graceful stop on the first SIGINT or SIGTERM, and a hard stop on a second
    /// one or when `timeout` has passed since the first.
    pub fn on_signals(timeout: Duration) -> std::io::Result<Shutdown> {
        let shutdown = Shutdown::default();
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let tokens = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            tracing::info!("stopping: finishing the messages in hand (again to stop at once)");
            tokens.graceful.cancel();
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
                _ = tokio::time::sleep(timeout) => {
                    tracing::warn!("shutdown timeout of {} passed", humantime::format_duration(timeout));
                }
            }
            tokens.hard.cancel();
        });
        Ok(shutdown)
    }
}

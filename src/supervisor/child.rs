//! Watching one replica process: its exit (the reaper's part) and the report lines it writes
//! on its stdout, each turned into an [`Event`] for the supervisor's loop. One task per
//! child waits for it, so every exit is reaped and none is left a zombie.

use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, ChildStdout};
use tokio::sync::mpsc;
use tracing::warn;

use super::machine::Event;
use crate::worker::Totals;

/// Where a child's events go, and whose they are.
pub struct Watch {
    pub worker: String,
    pub generation: u64,
    pub events: mpsc::UnboundedSender<Event>,
}

impl Watch {
    /// Starts watching `child`; returns its pid (None when it has none: it is gone).
    pub fn start(self, mut child: Child) -> Option<u32> {
        let pid = child.id()?;
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(self.reports(stdout));
        }
        let (events, generation) = (self.events, self.generation);
        tokio::spawn(async move {
            if let Ok(status) = child.wait().await {
                let _ = events.send(Event::Exited {
                    generation,
                    pid,
                    status,
                });
            }
        });
        Some(pid)
    }

    /// Passes each report line (JSON counts) on; the end of the pipe says the counts are final.
    fn reports(&self, stdout: ChildStdout) -> impl std::future::Future<Output = ()> {
        let worker = self.worker.clone();
        let generation = self.generation;
        let events = self.events.clone();
        async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(totals) = serde_json::from_str::<Totals>(&line) else {
                    warn!(worker = %worker, generation, "replica wrote a line that is not a report: {line}");
                    continue;
                };
                let event = Event::Report {
                    worker: worker.clone(),
                    generation,
                    totals,
                };
                if events.send(event).is_err() {
                    return;
                }
            }
            let _ = events.send(Event::ReportsEnded { generation });
        }
    }
}

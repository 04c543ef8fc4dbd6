//! The supervisor (SPEC 10): keeps `replicas` processes of every worker running, restarts
//! those that exit (with back-off), applies each new configuration the watcher hands it
//! without a restart of the daemon, and stops everything gracefully.
//!
//! Split as Horust splits its supervisor: [`machine`] decides (events in, effects out, no
//! processes and no clocks, so every case is a unit test), [`plan`] and [`restart`] are the
//! pure policies it uses, [`replica`] spawns and signals processes, [`child`] watches one
//! child and turns its exit and its report lines into events. This file is the thin loop
//! that carries the effects out.

mod child;
mod machine;
mod plan;
mod replica;
mod restart;
mod status;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tracing::info;

pub use replica::Spawner;
pub use status::{WorkerReport, WorkersSnapshot};

use crate::config::Snapshot;
use crate::shutdown::Shutdown;
use machine::{Desired, Effect, Event, Machine};

/// How long killed replicas are given to be reaped before the daemon exits.
const REAP: Duration = Duration::from_secs(2);

/// How the supervisor is tied into the daemon.
pub struct Links {
    pub shutdown: Shutdown,
    /// Each new configuration, from the watcher.
    pub config: watch::Receiver<Arc<Snapshot>>,
    /// Where the supervisor publishes its workers' state.
    pub status: watch::Sender<WorkersSnapshot>,
    /// Fired once the replicas of the first configuration are started.
    pub started: oneshot::Sender<()>,
}

/// The loop: owns the machine and carries out its effects.
pub struct Supervisor {
    machine: Machine,
    spawner: Spawner,
    events: mpsc::UnboundedSender<Event>,
    status: watch::Sender<WorkersSnapshot>,
}

impl Supervisor {
    /// Runs until a graceful stop, then stops every replica.
    pub async fn run(spawner: Spawner, links: Links) {
        let Links {
            shutdown,
            mut config,
            status,
            started,
        } = links;
        let (events, mut incoming) = mpsc::unbounded_channel();
        let mut supervisor = Supervisor {
            machine: Machine::default(),
            spawner,
            events,
            status,
        };
        let first = Desired::from(config.borrow_and_update().as_ref());
        supervisor.handle(Event::Apply(Box::new(first)));
        let _ = started.send(());
        loop {
            let event = tokio::select! {
                _ = shutdown.graceful.cancelled() => break,
                Some(event) = incoming.recv() => event,
                Ok(()) = config.changed() => {
                    let desired = Desired::from(config.borrow_and_update().as_ref());
                    Event::Apply(Box::new(desired))
                }
            };
            supervisor.handle(event);
        }
        supervisor.stop(&mut incoming, &shutdown).await;
    }

    /// Hands `event` to the machine, carries out what it asks, and publishes the new state.
    fn handle(&mut self, event: Event) {
        let mut pending = VecDeque::from([event]);
        while let Some(event) = pending.pop_front() {
            for effect in self.machine.handle(event, Instant::now()) {
                pending.extend(self.carry_out(effect));
            }
        }
        self.publish_status();
    }

    /// Does what an effect says; a spawn's outcome comes back at once as the next event.
    fn carry_out(&mut self, effect: Effect) -> Option<Event> {
        match effect {
            Effect::Spawn {
                generation,
                replica,
                spec,
            } => Some(match self.spawner.spawn(&spec, replica) {
                Ok(child) => {
                    let watch = child::Watch {
                        worker: spec.worker.name.clone(),
                        generation,
                        events: self.events.clone(),
                    };
                    match watch.start(child) {
                        Some(pid) => Event::Spawned { generation, pid },
                        None => Event::SpawnFailed {
                            generation,
                            error: "the process exited at once".into(),
                        },
                    }
                }
                Err(e) => Event::SpawnFailed {
                    generation,
                    error: e.to_string(),
                },
            }),
            Effect::Signal { pid, signal } => {
                replica::signal(pid, signal);
                None
            }
            Effect::After { delay, event } => {
                let events = self.events.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = events.send(event);
                });
                None
            }
        }
    }

    fn publish_status(&self) {
        let snapshot = self.machine.snapshot();
        self.status.send_if_modified(|current| {
            let changed = *current != snapshot;
            *current = snapshot;
            changed
        });
    }

    /// SIGTERM to every replica, then wait for them; stragglers are killed after
    /// `shutdown_timeout` (their deadlines) or at once on a second signal.
    async fn stop(&mut self, incoming: &mut mpsc::UnboundedReceiver<Event>, shutdown: &Shutdown) {
        self.handle(Event::Shutdown);
        while !self.machine.stopped() {
            tokio::select! {
                Some(event) = incoming.recv() => self.handle(event),
                _ = shutdown.hard.cancelled() => break,
            }
        }
        self.handle(Event::HardStop);
        // Reap the killed ones, so none is left a zombie for a moment.
        let reaped = tokio::time::sleep(REAP);
        tokio::pin!(reaped);
        while !self.machine.stopped() {
            tokio::select! {
                Some(event) = incoming.recv() => self.handle(event),
                _ = &mut reaped => break,
            }
        }
        info!("stopped");
    }
}

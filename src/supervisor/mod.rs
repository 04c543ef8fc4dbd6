//! The supervisor: keeps `replicas` processes of every worker file running, restarts those
//! that exit (with back-off), applies edits of workers.d without a restart of the daemon,
//! and stops everything gracefully. One task owns all of this state; child exits and timers
//! come back to it as [`Event`]s, so nothing here needs a lock.

mod backoff;
mod plan;
mod replica;
mod status;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

pub use replica::{Spawner, WORKER_YAML};
pub use status::{WorkerReport, WorkersSnapshot};

use crate::config::{Config, FileWatch, Settings, Source, WorkerDef};
use crate::process;
use crate::shutdown::Shutdown;
use crate::worker::Totals;
use plan::Action;

/// How often workers.d and the main file are compared with what is running.
const POLL: Duration = Duration::from_secs(1);

/// What comes back to the supervisor's loop from child watchers and timers.
#[derive(Debug)]
enum Event {
    Exited {
        worker: String,
        replica: u32,
        generation: u64,
        pid: u32,
        status: ExitStatus,
    },
    RestartDue {
        worker: String,
        replica: u32,
        generation: u64,
    },
    /// A retiring process had its `shutdown_timeout`; kill it if it is still there.
    Deadline { pid: u32 },
    /// A replica's counts so far (a line on its stdout).
    Report {
        worker: String,
        generation: u64,
        totals: Totals,
    },
    /// The replica closed its stdout (it exited): its last counts are final.
    ReportsEnded { generation: u64 },
}

/// One worker as the supervisor runs it.
struct WorkerRun {
    def: WorkerDef,
    slots: BTreeMap<u32, Slot>,
    restarts: u64,
    last_exit: Option<String>,
    config_error: Option<String>,
    /// Counts of replicas that exited, so the worker's totals never go down.
    retired: Totals,
}

impl WorkerRun {
    /// The worker's state; `live` are the last counts of its replica processes now alive.
    fn report<'a>(&self, live: impl Iterator<Item = &'a Totals>) -> WorkerReport {
        let pids: Vec<u32> = self.slots.values().filter_map(|s| s.pid).collect();
        let retry = self.def.retry.as_ref().map(|r| {
            serde_json::json!({
                "maxAttempts": r.max_attempts,
                "delaySeconds": r.delay.as_secs_f64(),
                "backoff": r.backoff,
                "maxDelaySeconds": r.max_delay.as_secs_f64(),
            })
        });
        WorkerReport {
            queue: self.def.queue.clone(),
            follow_queue: self.def.follow_queue.clone(),
            job_state: self.def.job_state,
            services: self.def.services.iter().map(|s| s.id.clone()).collect(),
            prefetch: self.def.prefetch,
            retry,
            replicas_wanted: self.def.replicas,
            replicas_running: pids.len() as u32,
            pids,
            restarts: self.restarts,
            last_exit: self.last_exit.clone(),
            config_error: self.config_error.clone(),
            counters: live.fold(self.retired.clone(), |mut sum, totals| {
                sum.add(totals);
                sum
            }),
        }
    }
}

/// One replica position. `generation` tells this run's events from those of a replica that
/// held the position before (retired, or replaced after a config change).
struct Slot {
    generation: u64,
    /// None while waiting for a restart.
    pid: Option<u32>,
    started: Instant,
    failures_in_row: u32,
}

pub struct Supervisor {
    source: Source,
    config: Config,
    spawner: Spawner,
    workers: BTreeMap<String, WorkerRun>,
    /// Processes told to stop, not yet exited.
    retiring: HashMap<u32, String>,
    files: FileWatch,
    generation: u64,
    events: mpsc::UnboundedSender<Event>,
    status: watch::Sender<WorkersSnapshot>,
    /// The last counts of every replica process alive (retiring ones too), by generation.
    counts: HashMap<u64, (String, Totals)>,
}

/// How the supervisor is tied into the daemon.
pub struct Links {
    pub shutdown: Shutdown,
    /// Reload requests (SIGHUP, the API).
    pub reloads: watch::Receiver<u64>,
    /// Where the supervisor publishes its workers' state.
    pub status: watch::Sender<WorkersSnapshot>,
    /// Fired once the replicas of the first configuration are started.
    pub started: oneshot::Sender<()>,
}

impl Supervisor {
    /// Runs until a graceful stop, then stops every replica.
    pub async fn run(source: Source, config: Config, spawner: Spawner, links: Links) {
        let Links {
            shutdown,
            mut reloads,
            status,
            started,
        } = links;
        let (events, mut incoming) = mpsc::unbounded_channel();
        let mut supervisor = Supervisor {
            source,
            config,
            spawner,
            workers: BTreeMap::new(),
            retiring: HashMap::new(),
            files: FileWatch::default(),
            generation: 0,
            events,
            status,
            counts: HashMap::new(),
        };
        supervisor.reload(true);
        let _ = started.send(());
        let mut poll = tokio::time::interval(POLL);
        loop {
            tokio::select! {
                _ = shutdown.graceful.cancelled() => break,
                Some(event) = incoming.recv() => supervisor.on_event(event),
                _ = poll.tick() => supervisor.reload(false),
                Ok(()) = reloads.changed() => supervisor.reload(true),
            }
            supervisor.publish_status();
        }
        supervisor.stop_all(&mut incoming, &shutdown).await;
    }

    fn publish_status(&self) {
        let snapshot: WorkersSnapshot = self
            .workers
            .iter()
            .map(|(name, run)| {
                let live = self
                    .counts
                    .values()
                    .filter(|(w, _)| w == name)
                    .map(|(_, t)| t);
                (name.clone(), run.report(live))
            })
            .collect();
        self.status.send_if_modified(|current| {
            let changed = *current != snapshot;
            *current = snapshot;
            changed
        });
    }

    /// Re-reads the configuration when a file changed (or always, when `force`), and brings
    /// the running workers in line. A file that fails validation changes nothing.
    fn reload(&mut self, force: bool) {
        let paths = self.source.files_with(&self.config.settings.workers_dir);
        if !self.files.changed(paths) && !force {
            return;
        }
        let replicas_changed = match Config::load(&self.source) {
            Ok(config) => {
                let changed = replica_settings_differ(&self.config.settings, &config.settings);
                self.config = config;
                changed
            }
            Err(problems) => {
                error!("configuration invalid, keeping the running one:\n{problems}");
                return;
            }
        };
        let (wanted, problems) = self.config.workers();
        let mut invalid = Vec::new();
        for problem in &problems.0 {
            error!("{problem} (the worker keeps its last good definition)");
            invalid.extend(stem(&problem.file));
        }
        for (name, run) in &mut self.workers {
            let problem = problems
                .0
                .iter()
                .find(|p| stem(&p.file).as_ref() == Some(name));
            run.config_error = problem.map(ToString::to_string);
        }
        let running: BTreeMap<String, WorkerDef> = self
            .workers
            .iter()
            .map(|(name, run)| (name.clone(), run.def.clone()))
            .collect();
        for action in plan::plan(&running, &wanted, &invalid, replicas_changed) {
            self.apply(action);
        }
    }

    fn apply(&mut self, action: Action) {
        match action {
            Action::Start(def) => {
                info!(worker = %def.name, replicas = def.replicas, "starting worker");
                let name = def.name.clone();
                let run = WorkerRun {
                    def,
                    slots: BTreeMap::new(),
                    restarts: 0,
                    last_exit: None,
                    config_error: None,
                    retired: Totals::default(),
                };
                self.workers.insert(name.clone(), run);
                self.scale(&name);
            }
            Action::Stop(name) => {
                info!(worker = %name, "worker file removed: stopping its replicas");
                if let Some(mut run) = self.workers.remove(&name) {
                    let slots = std::mem::take(&mut run.slots);
                    slots
                        .into_values()
                        .for_each(|slot| self.retire(&name, slot));
                }
            }
            Action::Scale(def) => {
                info!(worker = %def.name, replicas = def.replicas, "scaling worker");
                let name = def.name.clone();
                if let Some(run) = self.workers.get_mut(&name) {
                    run.def = def;
                }
                self.scale(&name);
            }
            Action::Restart(def) => {
                info!(worker = %def.name, "worker definition changed: restarting its replicas");
                let name = def.name.clone();
                if let Some(run) = self.workers.get_mut(&name) {
                    run.def = def;
                    let slots = std::mem::take(&mut run.slots);
                    slots
                        .into_values()
                        .for_each(|slot| self.retire(&name, slot));
                }
                self.scale(&name);
            }
        }
    }

    /// Starts missing replica positions and retires those beyond `replicas`.
    fn scale(&mut self, name: &str) {
        let Some(run) = self.workers.get_mut(name) else {
            return;
        };
        let wanted = run.def.replicas;
        let extra: Vec<u32> = run.slots.keys().copied().filter(|i| *i >= wanted).collect();
        let retired: Vec<Slot> = extra.iter().filter_map(|i| run.slots.remove(i)).collect();
        let missing: Vec<u32> = (0..wanted).filter(|i| !run.slots.contains_key(i)).collect();
        retired.into_iter().for_each(|slot| self.retire(name, slot));
        for replica in missing {
            self.start(name, replica, 0);
        }
    }

    fn start(&mut self, name: &str, replica: u32, failures_in_row: u32) {
        self.generation += 1;
        let generation = self.generation;
        let Some(def) = self.workers.get(name).map(|run| &run.def) else {
            return;
        };
        let pid = match self.spawner.spawn(def, replica) {
            Ok(child) => self.watch(name, replica, generation, child),
            Err(e) => {
                error!(worker = %name, replica, "cannot start replica: {e}");
                None
            }
        };
        let slot = Slot {
            generation,
            pid,
            started: Instant::now(),
            failures_in_row,
        };
        let Some(run) = self.workers.get_mut(name) else {
            return;
        };
        run.slots.insert(replica, slot);
        match pid {
            Some(pid) => info!(worker = %name, replica, pid, "replica started"),
            None => self.schedule_restart(name, replica),
        }
    }

    /// Waits for the child in its own task and reports its exit as an event.
    fn watch(
        &self,
        name: &str,
        replica: u32,
        generation: u64,
        mut child: tokio::process::Child,
    ) -> Option<u32> {
        let pid = child.id()?;
        if let Some(stdout) = child.stdout.take() {
            let reports = Reports {
                worker: name.to_string(),
                replica,
                generation,
                events: self.events.clone(),
            };
            tokio::spawn(reports.read(stdout));
        }
        let events = self.events.clone();
        let worker = name.to_string();
        tokio::spawn(async move {
            if let Ok(status) = child.wait().await {
                let _ = events.send(Event::Exited {
                    worker,
                    replica,
                    generation,
                    pid,
                    status,
                });
            }
        });
        Some(pid)
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Exited {
                worker,
                replica,
                generation,
                pid,
                status,
            } => {
                if self.retiring.remove(&pid).is_some() {
                    info!(worker = %worker, replica, pid, "replica stopped ({})", process::describe(status));
                } else {
                    self.on_crash(&worker, replica, generation, status);
                }
            }
            Event::RestartDue {
                worker,
                replica,
                generation,
            } => {
                let due = self
                    .workers
                    .get(&worker)
                    .and_then(|r| r.slots.get(&replica));
                if let Some(slot) = due.filter(|s| s.generation == generation && s.pid.is_none()) {
                    let failures = slot.failures_in_row;
                    self.start(&worker, replica, failures);
                }
            }
            Event::Report {
                worker,
                generation,
                totals,
            } => {
                self.counts.insert(generation, (worker, totals));
            }
            Event::ReportsEnded { generation } => {
                // Reports and their end come down one pipe in order: nothing is counted
                // twice, and a draining replica's last messages are not lost.
                if let Some((worker, totals)) = self.counts.remove(&generation) {
                    if let Some(run) = self.workers.get_mut(&worker) {
                        run.retired.add(&finished(totals));
                    }
                }
            }
            Event::Deadline { pid } => {
                if let Some(worker) = self.retiring.get(&pid) {
                    warn!(worker = %worker, pid, "replica did not stop within shutdown_timeout: killing it");
                    replica::signal(pid, Signal::SIGKILL);
                }
            }
        }
    }

    fn on_crash(&mut self, worker: &str, replica: u32, generation: u64, status: ExitStatus) {
        let Some(run) = self.workers.get_mut(worker) else {
            return;
        };
        let Some(slot) = run
            .slots
            .get_mut(&replica)
            .filter(|s| s.generation == generation)
        else {
            return;
        };
        run.restarts += 1;
        run.last_exit = Some(process::describe(status));
        slot.pid = None;
        warn!(worker = %worker, replica, restarts = run.restarts, "replica exited ({})", process::describe(status));
        self.schedule_restart(worker, replica);
    }

    fn schedule_restart(&mut self, worker: &str, replica: u32) {
        let backoff = self.config.settings.supervisor.restart_backoff.clone();
        let Some(slot) = self
            .workers
            .get_mut(worker)
            .and_then(|r| r.slots.get_mut(&replica))
        else {
            return;
        };
        let (delay, failures) =
            backoff::restart_delay(&backoff, slot.failures_in_row, slot.started.elapsed());
        slot.failures_in_row = failures;
        info!(worker = %worker, replica, "restarting in {}", humantime::format_duration(delay));
        let event = Event::RestartDue {
            worker: worker.to_string(),
            replica,
            generation: slot.generation,
        };
        self.after(delay, event);
    }

    /// Asks a replica to stop (it drains its messages) and kills it if it overstays.
    fn retire(&mut self, worker: &str, slot: Slot) {
        let Some(pid) = slot.pid else { return };
        replica::signal(pid, Signal::SIGTERM);
        self.retiring.insert(pid, worker.to_string());
        self.after(
            self.config.settings.supervisor.shutdown_timeout,
            Event::Deadline { pid },
        );
    }

    fn after(&self, delay: Duration, event: Event) {
        let events = self.events.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = events.send(event);
        });
    }

    /// SIGTERM to every replica, then wait for them; stragglers are killed after
    /// `shutdown_timeout` (or at once on a second signal).
    async fn stop_all(
        &mut self,
        incoming: &mut mpsc::UnboundedReceiver<Event>,
        shutdown: &Shutdown,
    ) {
        let workers = std::mem::take(&mut self.workers);
        for (name, run) in workers {
            run.slots
                .into_values()
                .for_each(|slot| self.retire(&name, slot));
        }
        info!(
            replicas = self.retiring.len(),
            "stopping: waiting for replicas to finish their messages"
        );
        let deadline = tokio::time::sleep(self.config.settings.supervisor.shutdown_timeout);
        tokio::pin!(deadline);
        while !self.retiring.is_empty() {
            tokio::select! {
                Some(event) = incoming.recv() => self.on_event(event),
                _ = &mut deadline => break,
                _ = shutdown.hard.cancelled() => break,
            }
        }
        for (pid, worker) in &self.retiring {
            warn!(worker = %worker, pid, "killing replica that did not stop in time (or on a second signal)");
            replica::signal(*pid, Signal::SIGKILL);
        }
        // Reap the killed ones, so none is left a zombie for a moment.
        let reaped = tokio::time::sleep(Duration::from_secs(2));
        tokio::pin!(reaped);
        while !self.retiring.is_empty() {
            tokio::select! {
                Some(event) = incoming.recv() => self.on_event(event),
                _ = &mut reaped => break,
            }
        }
        info!("stopped");
    }
}

/// A replica's counts as they stay after it exited: nothing is in flight any more.
fn finished(mut totals: Totals) -> Totals {
    totals.in_flight = 0;
    totals
}

/// Reads a replica's report lines (JSON on its stdout) and passes them on as events.
struct Reports {
    worker: String,
    replica: u32,
    generation: u64,
    events: mpsc::UnboundedSender<Event>,
}

impl Reports {
    async fn read(self, stdout: tokio::process::ChildStdout) {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let Ok(totals) = serde_json::from_str::<Totals>(&line) else {
                warn!(worker = %self.worker, replica = self.replica, "replica wrote a line that is not a report: {line}");
                continue;
            };
            let event = Event::Report {
                worker: self.worker.clone(),
                generation: self.generation,
                totals,
            };
            if self.events.send(event).is_err() {
                return;
            }
        }
        let _ = self.events.send(Event::ReportsEnded {
            generation: self.generation,
        });
    }
}

/// Whether a setting that replicas read at start-up changed (a replica must restart to see it).
fn replica_settings_differ(old: &Settings, new: &Settings) -> bool {
    old.amqp != new.amqp
        || old.mongodb != new.mongodb
        || old.state_dir != new.state_dir
        || old.state_sync != new.state_sync
        || old.log != new.log
}

fn stem(path: &Path) -> Option<String> {
    path.file_stem()
        .and_then(|s| s.to_str())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StateSync;

    #[test]
    fn a_changed_store_file_or_sync_restarts_replicas_and_a_changed_api_does_not() {
        let old = Settings::default();
        let mut new = old.clone();
        assert!(!replica_settings_differ(&old, &new));
        new.api.listen = "127.0.0.1:9999".into();
        assert!(
            !replica_settings_differ(&old, &new),
            "replicas do not read api"
        );
        new.state_sync = StateSync::Full;
        assert!(replica_settings_differ(&old, &new));
        let mut moved = old.clone();
        moved.state_dir = "/srv/dpsd".into();
        assert!(replica_settings_differ(&old, &moved));
    }
}

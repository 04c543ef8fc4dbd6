//! The supervisor's state machine: which replicas of which workers should run, which run, and
//! what to do when something happens. Events come in (a new configuration, a replica started
//! or exited, a timer, a report line, a stop), effects go out (spawn, signal, wake me later).
//! Nothing here touches a process or a clock: the loop in `supervisor/mod.rs` carries the
//! effects out and feeds what happens back in, and the tests below drive it with made-up
//! events and times.

use std::collections::{BTreeMap, HashMap};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tracing::{error, info, warn};

use super::plan::{self, Action};
use super::restart;
use super::status::{WorkerReport, WorkersSnapshot};
use crate::backoff::Backoff;
use crate::config::{ReplicaRuntime, ReplicaSpec, Snapshot, WorkerDef};
use crate::process;
use crate::worker::Totals;

/// What the supervisor runs: the workers of a configuration and what every replica reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub workers: BTreeMap<String, WorkerDef>,
    /// Workers whose file is broken, with its problem: they keep their last good definition.
    pub broken: BTreeMap<String, String>,
    pub runtime: ReplicaRuntime,
    pub restart_backoff: Backoff,
    pub shutdown_timeout: Duration,
}

impl From<&Snapshot> for Desired {
    fn from(snapshot: &Snapshot) -> Desired {
        let workers = &snapshot.workers;
        let broken = workers
            .broken()
            .into_iter()
            .filter_map(|name| {
                let problem = workers.problem(&name)?.to_string();
                Some((name, problem))
            })
            .collect();
        let supervisor = &snapshot.config.settings.supervisor;
        Desired {
            workers: workers.valid.clone(),
            broken,
            runtime: snapshot.config.replica_runtime(),
            restart_backoff: Backoff::from(&supervisor.restart_backoff),
            shutdown_timeout: supervisor.shutdown_timeout,
        }
    }
}

/// Something that happened, for the machine to act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The configuration to run from now on.
    Apply(Box<Desired>),
    /// A spawn effect succeeded: the replica of this generation is process `pid`.
    Spawned { generation: u64, pid: u32 },
    /// A spawn effect failed.
    SpawnFailed { generation: u64, error: String },
    Exited {
        generation: u64,
        pid: u32,
        status: ExitStatus,
    },
    /// A replica's back-off is over: start it again if it still waits.
    RestartDue { generation: u64 },
    /// A retiring process had its `shutdown_timeout`: kill it if it is still there.
    Deadline { pid: u32 },
    /// A replica's counts so far (a line on its stdout).
    Report {
        worker: String,
        generation: u64,
        totals: Totals,
    },
    /// The replica closed its stdout (it exited): its last counts are final.
    ReportsEnded { generation: u64 },
    /// Graceful stop: every replica drains and exits; none is started again.
    Shutdown,
    /// Stop now: kill what has not exited.
    HardStop,
}

/// Something for the loop to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Start replica `replica` of `spec.worker`, then report `Spawned` or `SpawnFailed`.
    Spawn {
        generation: u64,
        replica: u32,
        spec: Arc<ReplicaSpec>,
    },
    Signal {
        pid: u32,
        signal: Signal,
    },
    /// Hand `event` back after `delay`.
    After {
        delay: Duration,
        event: Event,
    },
}

/// One worker as the supervisor runs it.
#[derive(Debug)]
struct WorkerRun {
    def: WorkerDef,
    slots: BTreeMap<u32, Slot>,
    restarts: u64,
    last_exit: Option<String>,
    config_error: Option<String>,
    /// Counts of replicas that exited, so the worker's totals never go down.
    retired: Totals,
}

/// One replica position. Its `generation` tells this run's events from those of a process
/// that held the position before (retired, or replaced after a config change).
#[derive(Debug)]
struct Slot {
    generation: u64,
    state: SlotState,
    started: Instant,
    failures_in_row: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    /// Spawn asked for; its outcome not in yet.
    Starting,
    Running {
        pid: u32,
    },
    /// Exited or failed to start: waiting out its back-off.
    Waiting,
}

/// Where a generation runs.
#[derive(Debug, Clone)]
struct Place {
    worker: String,
    replica: u32,
}

/// The supervisor's whole state.
#[derive(Debug, Default)]
pub struct Machine {
    workers: BTreeMap<String, WorkerRun>,
    /// None until the first configuration is applied.
    desired: Option<Desired>,
    generation: u64,
    /// Every generation started and not yet over, with its place.
    places: HashMap<u64, Place>,
    /// Processes told to stop, not yet exited, by pid (with their worker, for the log).
    retiring: HashMap<u32, String>,
    /// The last counts of every replica process alive (retiring ones too), by generation.
    counts: HashMap<u64, (String, Totals)>,
    stopping: bool,
}

impl Machine {
    /// Acts on `event`, which happened at `now`; returns what the loop must do.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        match event {
            Event::Apply(desired) => self.apply(*desired, now, &mut effects),
            Event::Spawned { generation, pid } => self.spawned(generation, pid, &mut effects),
            Event::SpawnFailed { generation, error } => {
                self.spawn_failed(generation, &error, now, &mut effects)
            }
            Event::Exited {
                generation,
                pid,
                status,
            } => self.exited(generation, pid, status, now, &mut effects),
            Event::RestartDue { generation } => self.restart_due(generation, now, &mut effects),
            Event::Deadline { pid } => self.deadline(pid, &mut effects),
            Event::Report {
                worker,
                generation,
                totals,
            } => {
                self.counts.insert(generation, (worker, totals));
            }
            Event::ReportsEnded { generation } => self.reports_ended(generation),
            Event::Shutdown => self.shutdown(&mut effects),
            Event::HardStop => self.kill_retiring(&mut effects),
        }
        effects
    }

    /// Whether a stop is complete: asked for, and every process gone.
    pub fn stopped(&self) -> bool {
        self.stopping && self.retiring.is_empty()
    }

    /// Every worker's state, for the API.
    pub fn snapshot(&self) -> WorkersSnapshot {
        self.workers
            .iter()
            .map(|(name, run)| {
                let live = self.counts.values().filter(|(w, _)| w == name);
                (name.clone(), run.report(live.map(|(_, totals)| totals)))
            })
            .collect()
    }

    fn apply(&mut self, desired: Desired, now: Instant, effects: &mut Vec<Effect>) {
        if self.stopping {
            return;
        }
        let runtime_changed = self
            .desired
            .as_ref()
            .is_some_and(|old| old.runtime != desired.runtime);
        for (name, run) in &mut self.workers {
            run.config_error = desired.broken.get(name).cloned();
        }
        let running: BTreeMap<String, WorkerDef> = self
            .workers
            .iter()
            .map(|(name, run)| (name.clone(), run.def.clone()))
            .collect();
        let broken: Vec<String> = desired.broken.keys().cloned().collect();
        let actions = plan::plan(&running, &desired.workers, &broken, runtime_changed);
        self.desired = Some(desired);
        for action in actions {
            self.act(action, now, effects);
        }
    }

    fn act(&mut self, action: Action, now: Instant, effects: &mut Vec<Effect>) {
        match action {
            Action::Start(def) => {
                info!(worker = %def.name, replicas = def.replicas, "starting worker");
                let run = WorkerRun {
                    def: def.clone(),
                    slots: BTreeMap::new(),
                    restarts: 0,
                    last_exit: None,
                    config_error: None,
                    retired: Totals::default(),
                };
                self.workers.insert(def.name.clone(), run);
                self.scale(&def.name, now, effects);
            }
            Action::Stop(name) => {
                info!(worker = %name, "worker file removed: stopping its replicas");
                if let Some(run) = self.workers.remove(&name) {
                    self.retire_all(&name, run.slots, effects);
                }
            }
            Action::Scale(def) => {
                info!(worker = %def.name, replicas = def.replicas, "scaling worker");
                let name = def.name.clone();
                if let Some(run) = self.workers.get_mut(&name) {
                    run.def = def;
                }
                self.scale(&name, now, effects);
            }
            Action::Restart(def) => {
                info!(worker = %def.name, "worker definition changed: restarting its replicas");
                let name = def.name.clone();
                if let Some(run) = self.workers.get_mut(&name) {
                    run.def = def;
                    let slots = std::mem::take(&mut run.slots);
                    self.retire_all(&name, slots, effects);
                }
                self.scale(&name, now, effects);
            }
        }
    }

    /// Starts missing replica positions and retires those beyond `replicas`.
    fn scale(&mut self, name: &str, now: Instant, effects: &mut Vec<Effect>) {
        let Some(run) = self.workers.get_mut(name) else {
            return;
        };
        let wanted = run.def.replicas;
        let extra: Vec<u32> = run.slots.keys().copied().filter(|i| *i >= wanted).collect();
        let surplus: BTreeMap<u32, Slot> = extra
            .iter()
            .filter_map(|i| Some((*i, run.slots.remove(i)?)))
            .collect();
        let missing: Vec<u32> = (0..wanted).filter(|i| !run.slots.contains_key(i)).collect();
        self.retire_all(name, surplus, effects);
        for replica in missing {
            self.start(name, replica, 0, now, effects);
        }
    }

    fn start(
        &mut self,
        name: &str,
        replica: u32,
        failures_in_row: u32,
        now: Instant,
        effects: &mut Vec<Effect>,
    ) {
        let (Some(run), Some(desired)) = (self.workers.get_mut(name), &self.desired) else {
            return;
        };
        self.generation += 1;
        let generation = self.generation;
        let spec = ReplicaSpec {
            worker: run.def.clone(),
            runtime: desired.runtime.clone(),
            shutdown_timeout: desired.shutdown_timeout,
        };
        let slot = Slot {
            generation,
            state: SlotState::Starting,
            started: now,
            failures_in_row,
        };
        if let Some(before) = run.slots.insert(replica, slot) {
            self.places.remove(&before.generation);
        }
        let place = Place {
            worker: name.to_string(),
            replica,
        };
        self.places.insert(generation, place);
        effects.push(Effect::Spawn {
            generation,
            replica,
            spec: Arc::new(spec),
        });
    }

    fn spawned(&mut self, generation: u64, pid: u32, effects: &mut Vec<Effect>) {
        let Some((place, slot)) = self.slot_of(generation) else {
            // Its position was given up while it started: it must not stay.
            let worker = self.places.get(&generation).map(|p| p.worker.clone());
            self.retire(&worker.unwrap_or_default(), pid, effects);
            return;
        };
        slot.state = SlotState::Running { pid };
        info!(worker = %place.worker, replica = place.replica, pid, "replica started");
    }

    fn spawn_failed(
        &mut self,
        generation: u64,
        error: &str,
        now: Instant,
        effects: &mut Vec<Effect>,
    ) {
        let Some((place, slot)) = self.slot_of(generation) else {
            self.places.remove(&generation);
            return;
        };
        error!(worker = %place.worker, replica = place.replica, "cannot start replica: {error}");
        slot.state = SlotState::Waiting;
        self.schedule_restart(&place, now, effects);
    }

    fn exited(
        &mut self,
        generation: u64,
        pid: u32,
        status: ExitStatus,
        now: Instant,
        effects: &mut Vec<Effect>,
    ) {
        if let Some(worker) = self.retiring.remove(&pid) {
            self.places.remove(&generation);
            info!(worker = %worker, pid, "replica stopped ({})", process::describe(status));
            return;
        }
        let Some(place) = self.places.get(&generation).cloned() else {
            return;
        };
        let Some(run) = self.workers.get_mut(&place.worker) else {
            return;
        };
        let Some(slot) = run
            .slots
            .get_mut(&place.replica)
            .filter(|s| s.generation == generation)
        else {
            return;
        };
        run.restarts += 1;
        run.last_exit = Some(process::describe(status));
        slot.state = SlotState::Waiting;
        warn!(worker = %place.worker, replica = place.replica, restarts = run.restarts, "replica exited ({})", process::describe(status));
        self.schedule_restart(&place, now, effects);
    }

    /// Sets the slot of `place` to wait out its back-off, then be started again.
    fn schedule_restart(&mut self, place: &Place, now: Instant, effects: &mut Vec<Effect>) {
        let Some(desired) = &self.desired else { return };
        let backoff = desired.restart_backoff;
        let Some(slot) = self
            .workers
            .get_mut(&place.worker)
            .and_then(|run| run.slots.get_mut(&place.replica))
        else {
            return;
        };
        let ran_for = now.saturating_duration_since(slot.started);
        let (delay, failures) = restart::delay(backoff, slot.failures_in_row, ran_for);
        slot.failures_in_row = failures;
        info!(worker = %place.worker, replica = place.replica, "restarting in {}", humantime::format_duration(delay));
        let event = Event::RestartDue {
            generation: slot.generation,
        };
        effects.push(Effect::After { delay, event });
    }

    fn restart_due(&mut self, generation: u64, now: Instant, effects: &mut Vec<Effect>) {
        let Some((place, slot)) = self.slot_of(generation) else {
            return;
        };
        if slot.state == SlotState::Waiting {
            let failures = slot.failures_in_row;
            self.start(&place.worker, place.replica, failures, now, effects);
        }
    }

    fn deadline(&mut self, pid: u32, effects: &mut Vec<Effect>) {
        if let Some(worker) = self.retiring.get(&pid) {
            warn!(worker = %worker, pid, "replica did not stop within shutdown_timeout: killing it");
            effects.push(Effect::Signal {
                pid,
                signal: Signal::SIGKILL,
            });
        }
    }

    /// Reports and their end come down one pipe in order: nothing is counted twice, and a
    /// draining replica's last messages are not lost.
    fn reports_ended(&mut self, generation: u64) {
        if let Some((worker, totals)) = self.counts.remove(&generation) {
            if let Some(run) = self.workers.get_mut(&worker) {
                run.retired.add(&finished(totals));
            }
        }
    }

    fn shutdown(&mut self, effects: &mut Vec<Effect>) {
        self.stopping = true;
        for (name, run) in std::mem::take(&mut self.workers) {
            self.retire_all(&name, run.slots, effects);
        }
        info!(
            replicas = self.retiring.len(),
            "stopping: waiting for replicas to finish their messages"
        );
    }

    fn kill_retiring(&mut self, effects: &mut Vec<Effect>) {
        for (pid, worker) in &self.retiring {
            warn!(worker = %worker, pid, "killing replica that did not stop in time (or on a second signal)");
            effects.push(Effect::Signal {
                pid: *pid,
                signal: Signal::SIGKILL,
            });
        }
    }

    fn retire_all(&mut self, name: &str, slots: BTreeMap<u32, Slot>, effects: &mut Vec<Effect>) {
        for slot in slots.into_values() {
            match slot.state {
                SlotState::Running { pid } => self.retire(name, pid, effects),
                // A spawn in progress is retired when it reports its pid (`spawned`).
                SlotState::Starting => {}
                SlotState::Waiting => {
                    self.places.remove(&slot.generation);
                }
            }
        }
    }

    /// Asks a replica to stop (it drains its messages) and kills it if it overstays.
    fn retire(&mut self, worker: &str, pid: u32, effects: &mut Vec<Effect>) {
        let timeout = self
            .desired
            .as_ref()
            .map_or(Duration::ZERO, |d| d.shutdown_timeout);
        self.retiring.insert(pid, worker.to_string());
        effects.push(Effect::Signal {
            pid,
            signal: Signal::SIGTERM,
        });
        effects.push(Effect::After {
            delay: timeout,
            event: Event::Deadline { pid },
        });
    }

    /// The place and slot a generation holds, if it still holds one.
    fn slot_of(&mut self, generation: u64) -> Option<(Place, &mut Slot)> {
        let place = self.places.get(&generation)?.clone();
        let slot = self
            .workers
            .get_mut(&place.worker)?
            .slots
            .get_mut(&place.replica)
            .filter(|s| s.generation == generation)?;
        Some((place, slot))
    }
}

impl WorkerRun {
    /// The worker's state; `live` are the last counts of its replica processes now alive.
    fn report<'a>(&self, live: impl Iterator<Item = &'a Totals>) -> WorkerReport {
        let pids: Vec<u32> = self
            .slots
            .values()
            .filter_map(|s| match s.state {
                SlotState::Running { pid } => Some(pid),
                _ => None,
            })
            .collect();
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

/// A replica's counts as they stay after it exited: nothing is in flight any more.
fn finished(mut totals: Totals) -> Totals {
    totals.in_flight = 0;
    totals
}

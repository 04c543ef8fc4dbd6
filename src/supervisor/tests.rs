//! The supervisor's state machine, driven with made-up events and times: no process is
//! started and no clock is read.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::machine::{Desired, Effect, Event, Machine};
use crate::backoff::Backoff;
use crate::config::{ReplicaRuntime, Settings, StateSync, WorkerDef};
use crate::worker::Totals;

const SHUTDOWN: Duration = Duration::from_secs(10);

fn def(name: &str, replicas: u32) -> WorkerDef {
    WorkerDef {
        replicas,
        ..WorkerDef::example(name, &format!("q_{name}"))
    }
}

fn runtime() -> ReplicaRuntime {
    let settings = Settings::default();
    ReplicaRuntime {
        amqp: settings.amqp.clone(),
        store: settings.store(),
        log: settings.log.clone(),
    }
}

fn desired(workers: &[WorkerDef]) -> Desired {
    Desired {
        workers: workers
            .iter()
            .map(|d| (d.name.clone(), d.clone()))
            .collect(),
        broken: BTreeMap::new(),
        runtime: runtime(),
        restart_backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
        shutdown_timeout: SHUTDOWN,
    }
}

fn killed() -> ExitStatus {
    ExitStatus::from_raw(9) // terminated by SIGKILL
}

fn exit_code(code: i32) -> ExitStatus {
    ExitStatus::from_raw(code << 8)
}

/// A machine, a clock of our own, and the pid each generation was given.
struct Bench {
    machine: Machine,
    now: Instant,
    pids: BTreeMap<u64, u32>,
}

/// A spawn the machine asked for: (worker, replica, generation).
type Spawn = (String, u32, u64);

impl Bench {
    fn new() -> Bench {
        Bench {
            machine: Machine::default(),
            now: Instant::now(),
            pids: BTreeMap::new(),
        }
    }

    /// A bench running `workers`, every replica spawned.
    fn running(workers: &[WorkerDef]) -> Bench {
        let mut bench = Bench::new();
        let effects = bench.event(Event::Apply(Box::new(desired(workers))));
        bench.spawn_all(&effects);
        bench
    }

    fn event(&mut self, event: Event) -> Vec<Effect> {
        self.machine.handle(event, self.now)
    }

    fn apply(&mut self, desired: Desired) -> Vec<Effect> {
        self.event(Event::Apply(Box::new(desired)))
    }

    fn later(&mut self, by: Duration) {
        self.now += by;
    }

    /// Answers every spawn in `effects` with a pid (1000 + generation); returns the spawns.
    fn spawn_all(&mut self, effects: &[Effect]) -> Vec<Spawn> {
        let spawned = spawns(effects);
        for (_, _, generation) in &spawned {
            let pid = 1000 + *generation as u32;
            self.pids.insert(*generation, pid);
            let more = self.event(Event::Spawned {
                generation: *generation,
                pid,
            });
            assert!(more.is_empty(), "a plain spawn asks for nothing more");
        }
        spawned
    }

    /// The pids of the running replicas of `worker`.
    fn replicas(&self, worker: &str) -> Vec<u32> {
        let snapshot = self.machine.snapshot();
        snapshot
            .get(worker)
            .map(|w| w.pids.clone())
            .unwrap_or_default()
    }

    fn pid(&self, generation: u64) -> u32 {
        self.pids[&generation]
    }

    fn exit(&mut self, generation: u64, status: ExitStatus) -> Vec<Effect> {
        let pid = self.pid(generation);
        self.event(Event::Exited {
            generation,
            pid,
            status,
        })
    }
}

fn spawns(effects: &[Effect]) -> Vec<Spawn> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Spawn {
                generation,
                replica,
                spec,
            } => Some((spec.worker.name.clone(), *replica, *generation)),
            _ => None,
        })
        .collect()
}

fn signals(effects: &[Effect]) -> Vec<(u32, Signal)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Signal { pid, signal } => Some((*pid, *signal)),
            _ => None,
        })
        .collect()
}

fn timers(effects: &[Effect]) -> Vec<(Duration, Event)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::After { delay, event } => Some((*delay, event.clone())),
            _ => None,
        })
        .collect()
}

/// The delay of the restart `effects` schedule.
fn restart_delay(effects: &[Effect]) -> Option<Duration> {
    timers(effects)
        .into_iter()
        .find_map(|(delay, event)| matches!(event, Event::RestartDue { .. }).then_some(delay))
}

fn spawn(worker: &str, replica: u32, generation: u64) -> Spawn {
    (worker.to_string(), replica, generation)
}

#[test]
fn the_first_configuration_spawns_every_replica_of_every_worker() {
    let mut bench = Bench::new();
    let effects = bench.apply(desired(&[def("a", 2), def("b", 1)]));
    assert_eq!(
        spawns(&effects),
        [spawn("a", 0, 1), spawn("a", 1, 2), spawn("b", 0, 3)]
    );
    assert_eq!(effects.len(), 3, "nothing else: {effects:?}");
}

#[test]
fn a_spawned_replica_runs_its_worker_on_the_current_runtime() {
    let mut bench = Bench::new();
    let effects = bench.apply(desired(&[def("a", 1)]));
    let Some(Effect::Spawn { spec, .. }) = effects.first() else {
        panic!("a spawn expected: {effects:?}")
    };
    assert_eq!(spec.worker, def("a", 1));
    assert_eq!(spec.runtime, runtime());
    assert_eq!(spec.shutdown_timeout, SHUTDOWN);
}

#[test]
fn started_replicas_show_with_their_pids_and_starting_ones_do_not() {
    let mut bench = Bench::new();
    let effects = bench.apply(desired(&[def("a", 2)]));
    let report = &bench.machine.snapshot()["a"];
    assert_eq!((report.replicas_wanted, report.replicas_running), (2, 0));
    bench.spawn_all(&effects);
    let report = &bench.machine.snapshot()["a"];
    assert_eq!(report.pids, [1001, 1002]);
    assert_eq!(report.replicas_running, 2);
}

#[test]
fn an_exit_counts_a_restart_and_waits_the_initial_back_off() {
    let mut bench = Bench::running(&[def("a", 1)]);
    bench.later(Duration::from_secs(2));
    let effects = bench.exit(1, killed());
    assert_eq!(
        timers(&effects),
        [(Duration::from_secs(1), Event::RestartDue { generation: 1 })]
    );
    let report = &bench.machine.snapshot()["a"];
    assert_eq!(report.restarts, 1);
    assert_eq!(report.last_exit.as_deref(), Some("signal SIGKILL"));
    assert_eq!(report.replicas_running, 0);
}

#[test]
fn a_due_restart_starts_the_position_again_under_a_new_generation() {
    let mut bench = Bench::running(&[def("a", 2)]);
    bench.exit(2, exit_code(3));
    let effects = bench.event(Event::RestartDue { generation: 2 });
    assert_eq!(spawns(&effects), [spawn("a", 1, 3)]);
    bench.spawn_all(&effects);
    assert_eq!(bench.replicas("a"), [1001, 1003]);
    let last_exit = bench.machine.snapshot()["a"].last_exit.clone();
    assert_eq!(last_exit.as_deref(), Some("exit status 3"));
}

#[test]
fn a_crash_loop_doubles_the_delay_up_to_the_maximum() {
    let mut bench = Bench::running(&[def("a", 1)]);
    let mut generation = 1;
    let mut delays = Vec::new();
    for _ in 0..8 {
        bench.later(Duration::from_millis(500));
        let effects = bench.exit(generation, exit_code(1));
        let delay = restart_delay(&effects).expect("a restart");
        delays.push(delay.as_secs());
        bench.later(delay);
        let effects = bench.event(Event::RestartDue { generation });
        generation = bench.spawn_all(&effects)[0].2;
    }
    assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
    assert_eq!(bench.machine.snapshot()["a"].restarts, 8);
}

#[test]
fn how_long_a_replica_ran_decides_its_next_delay() {
    // (how long the run before the exit lasted, the delay its exit gets), after three
    // quick failures in a row.
    let table = [(1, 8), (59, 8), (60, 1), (3600, 1)];
    for (ran_secs, expected) in table {
        let mut bench = Bench::running(&[def("a", 1)]);
        let mut generation = 1;
        for _ in 0..3 {
            bench.exit(generation, exit_code(1));
            let effects = bench.event(Event::RestartDue { generation });
            generation = bench.spawn_all(&effects)[0].2;
        }
        bench.later(Duration::from_secs(ran_secs));
        let delay = restart_delay(&bench.exit(generation, exit_code(1)));
        assert_eq!(
            delay,
            Some(Duration::from_secs(expected)),
            "after a run of {ran_secs}s"
        );
    }
}

#[test]
fn an_exit_of_an_older_generation_changes_nothing() {
    let mut bench = Bench::running(&[def("a", 1)]);
    bench.exit(1, killed());
    let effects = bench.event(Event::RestartDue { generation: 1 });
    bench.spawn_all(&effects);
    // The first process's exit reported a second time.
    let effects = bench.event(Event::Exited {
        generation: 1,
        pid: 1001,
        status: killed(),
    });
    assert!(effects.is_empty(), "{effects:?}");
    assert_eq!(bench.replicas("a"), [1002]);
    assert_eq!(bench.machine.snapshot()["a"].restarts, 1);
}

#[test]
fn a_restart_due_for_a_position_that_runs_or_was_replaced_is_ignored() {
    let mut bench = Bench::running(&[def("a", 1)]);
    assert!(bench.event(Event::RestartDue { generation: 1 }).is_empty());
    bench.exit(1, killed());
    // The worker changes while its replica waits: the waiting position is replaced.
    let mut changed = def("a", 1);
    changed.prefetch = 5;
    let effects = bench.apply(desired(&[changed]));
    assert_eq!(spawns(&effects), [spawn("a", 0, 2)]);
    bench.spawn_all(&effects);
    assert!(bench.event(Event::RestartDue { generation: 1 }).is_empty());
    assert_eq!(bench.replicas("a"), [1002]);
}

#[test]
fn scaling_up_starts_only_the_missing_positions() {
    let mut bench = Bench::running(&[def("a", 1)]);
    let effects = bench.apply(desired(&[def("a", 3)]));
    assert_eq!(spawns(&effects), [spawn("a", 1, 2), spawn("a", 2, 3)]);
    assert!(signals(&effects).is_empty(), "the running one stays");
}

#[test]
fn scaling_down_asks_the_highest_positions_to_drain_within_the_timeout() {
    let mut bench = Bench::running(&[def("a", 3)]);
    let effects = bench.apply(desired(&[def("a", 1)]));
    assert_eq!(
        signals(&effects),
        [(1002, Signal::SIGTERM), (1003, Signal::SIGTERM)]
    );
    assert_eq!(
        timers(&effects),
        [
            (SHUTDOWN, Event::Deadline { pid: 1002 }),
            (SHUTDOWN, Event::Deadline { pid: 1003 })
        ]
    );
    assert!(spawns(&effects).is_empty());
    assert_eq!(bench.replicas("a"), [1001]);
}

#[test]
fn a_draining_replica_that_exits_is_not_restarted() {
    let mut bench = Bench::running(&[def("a", 2)]);
    bench.apply(desired(&[def("a", 1)]));
    let effects = bench.exit(2, exit_code(0));
    assert!(effects.is_empty(), "{effects:?}");
    let report = &bench.machine.snapshot()["a"];
    assert_eq!((report.restarts, report.replicas_running), (0, 1));
}

#[test]
fn scaling_up_while_a_position_drains_starts_a_fresh_process_beside_it() {
    let mut bench = Bench::running(&[def("a", 2)]);
    bench.apply(desired(&[def("a", 1)]));
    let effects = bench.apply(desired(&[def("a", 2)]));
    assert_eq!(spawns(&effects), [spawn("a", 1, 3)]);
    bench.spawn_all(&effects);
    // The old one finishes draining: nothing restarts, the new one stays.
    assert!(bench.exit(2, exit_code(0)).is_empty());
    assert_eq!(bench.replicas("a"), [1001, 1003]);
}

#[test]
fn a_replica_still_draining_at_its_deadline_is_killed() {
    let mut bench = Bench::running(&[def("a", 2)]);
    bench.apply(desired(&[def("a", 1)]));
    let effects = bench.event(Event::Deadline { pid: 1002 });
    assert_eq!(signals(&effects), [(1002, Signal::SIGKILL)]);
}

#[test]
fn a_deadline_after_the_replica_exited_does_nothing() {
    let mut bench = Bench::running(&[def("a", 2)]);
    bench.apply(desired(&[def("a", 1)]));
    bench.exit(2, exit_code(0));
    assert!(bench.event(Event::Deadline { pid: 1002 }).is_empty());
}

#[test]
fn a_changed_definition_restarts_every_replica_of_that_worker_only() {
    let mut bench = Bench::running(&[def("a", 2), def("b", 1)]);
    let mut changed = def("a", 2);
    changed.queue = "elsewhere".into();
    let effects = bench.apply(desired(&[changed, def("b", 1)]));
    assert_eq!(
        signals(&effects),
        [(1001, Signal::SIGTERM), (1002, Signal::SIGTERM)]
    );
    assert_eq!(spawns(&effects), [spawn("a", 0, 4), spawn("a", 1, 5)]);
    let Some(Effect::Spawn { spec, .. }) =
        effects.iter().find(|e| matches!(e, Effect::Spawn { .. }))
    else {
        panic!("a spawn expected")
    };
    assert_eq!(spec.worker.queue, "elsewhere");
}

#[test]
fn a_changed_setting_every_replica_reads_restarts_every_worker() {
    let mut bench = Bench::running(&[def("a", 1), def("b", 1)]);
    let mut moved = desired(&[def("a", 1), def("b", 1)]);
    moved.runtime.store.state_sync = StateSync::Full;
    let effects = bench.apply(moved);
    assert_eq!(
        signals(&effects),
        [(1001, Signal::SIGTERM), (1002, Signal::SIGTERM)]
    );
    assert_eq!(spawns(&effects).len(), 2);
}

#[test]
fn a_changed_restart_back_off_or_shutdown_timeout_restarts_nothing() {
    let mut bench = Bench::running(&[def("a", 1)]);
    let mut calmer = desired(&[def("a", 1)]);
    calmer.restart_backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(60));
    calmer.shutdown_timeout = Duration::from_secs(99);
    assert!(bench.apply(calmer).is_empty());
    // ...but the next restart uses them.
    let delay = restart_delay(&bench.exit(1, killed()));
    assert_eq!(delay, Some(Duration::from_secs(5)));
}

#[test]
fn the_same_configuration_again_changes_nothing() {
    let mut bench = Bench::running(&[def("a", 2)]);
    assert!(bench.apply(desired(&[def("a", 2)])).is_empty());
}

#[test]
fn a_broken_file_keeps_its_worker_running_and_shows_the_problem_until_mended() {
    let mut bench = Bench::running(&[def("a", 2)]);
    let mut broken = desired(&[]);
    broken
        .broken
        .insert("a".into(), "workers.d/a.yaml:3: unknown service id".into());
    assert!(bench.apply(broken).is_empty(), "nothing stops");
    let report = &bench.machine.snapshot()["a"];
    assert_eq!(report.pids, [1001, 1002]);
    assert!(report
        .config_error
        .as_deref()
        .is_some_and(|e| e.contains(":3:")));
    // A replica that dies meanwhile comes back on the last good definition.
    bench.exit(1, killed());
    let effects = bench.event(Event::RestartDue { generation: 1 });
    let [Effect::Spawn { spec, .. }] = effects.as_slice() else {
        panic!("one spawn expected: {effects:?}")
    };
    assert_eq!(spec.worker, def("a", 2));
    bench.spawn_all(&effects);
    bench.apply(desired(&[def("a", 2)]));
    assert_eq!(bench.machine.snapshot()["a"].config_error, None);
}

#[test]
fn a_removed_worker_drains_and_leaves_the_report() {
    let mut bench = Bench::running(&[def("a", 1), def("b", 2)]);
    let effects = bench.apply(desired(&[def("a", 1)]));
    assert_eq!(
        signals(&effects),
        [(1002, Signal::SIGTERM), (1003, Signal::SIGTERM)]
    );
    assert!(!bench.machine.snapshot().contains_key("b"));
    assert!(bench.exit(2, exit_code(0)).is_empty(), "not restarted");
}

#[test]
fn a_spawn_that_fails_waits_its_back_off_without_counting_a_restart() {
    let mut bench = Bench::new();
    bench.apply(desired(&[def("a", 1)]));
    let effects = bench.event(Event::SpawnFailed {
        generation: 1,
        error: "no such file".into(),
    });
    assert_eq!(
        timers(&effects),
        [(Duration::from_secs(1), Event::RestartDue { generation: 1 })]
    );
    assert_eq!(bench.machine.snapshot()["a"].restarts, 0);
    let effects = bench.event(Event::RestartDue { generation: 1 });
    assert_eq!(spawns(&effects), [spawn("a", 0, 2)]);
}

#[test]
fn a_replica_that_starts_after_its_position_was_given_up_is_told_to_stop() {
    let mut bench = Bench::new();
    bench.apply(desired(&[def("a", 1)]));
    bench.apply(desired(&[]));
    let effects = bench.event(Event::Spawned {
        generation: 1,
        pid: 77,
    });
    assert_eq!(signals(&effects), [(77, Signal::SIGTERM)]);
    assert!(!bench.machine.snapshot().contains_key("a"));
}

#[test]
fn counts_add_up_across_replicas_and_stay_when_a_replica_exits() {
    let mut bench = Bench::running(&[def("a", 2)]);
    let totals = |processed, in_flight| Totals {
        processed,
        in_flight,
        ..Totals::default()
    };
    let report = |generation, totals| Event::Report {
        worker: "a".into(),
        generation,
        totals,
    };
    bench.event(report(1, totals(5, 2)));
    bench.event(report(2, totals(3, 1)));
    bench.event(report(1, totals(7, 0)));
    let counters = &bench.machine.snapshot()["a"].counters;
    assert_eq!((counters.processed, counters.in_flight), (10, 1));
    bench.event(report(2, totals(4, 1)));
    bench.exit(2, killed());
    bench.event(Event::ReportsEnded { generation: 2 });
    let counters = &bench.machine.snapshot()["a"].counters;
    assert_eq!(
        (counters.processed, counters.in_flight),
        (11, 0),
        "the exited replica's last count stays, with nothing in flight"
    );
    bench.event(Event::ReportsEnded { generation: 2 });
    assert_eq!(
        bench.machine.snapshot()["a"].counters.processed,
        11,
        "counted once"
    );
}

#[test]
fn a_shutdown_drains_every_replica_and_starts_none_again() {
    let mut bench = Bench::running(&[def("a", 2), def("b", 1)]);
    bench.exit(3, killed()); // b's replica waits for its restart
    let effects = bench.event(Event::Shutdown);
    assert_eq!(
        signals(&effects),
        [(1001, Signal::SIGTERM), (1002, Signal::SIGTERM)]
    );
    assert!(!bench.machine.stopped());
    assert!(bench.event(Event::RestartDue { generation: 3 }).is_empty());
    assert!(
        bench.apply(desired(&[def("c", 1)])).is_empty(),
        "no new work"
    );
    assert!(bench.exit(1, exit_code(0)).is_empty());
    assert!(!bench.machine.stopped());
    assert!(bench.exit(2, exit_code(0)).is_empty());
    assert!(bench.machine.stopped());
}

#[test]
fn a_hard_stop_kills_what_has_not_exited_yet() {
    let mut bench = Bench::running(&[def("a", 2)]);
    bench.event(Event::Shutdown);
    bench.exit(1, exit_code(0));
    let effects = bench.event(Event::HardStop);
    assert_eq!(signals(&effects), [(1002, Signal::SIGKILL)]);
    bench.exit(2, killed());
    assert!(bench.machine.stopped());
}

#[test]
fn a_machine_with_nothing_running_stops_at_once() {
    let mut bench = Bench::new();
    assert!(bench.event(Event::Shutdown).is_empty());
    assert!(bench.machine.stopped());
}

//! Fault runs (SPEC 4.2 at least once, 10 reconnects): the example chain under `dpsd run`,
//! two replicas per worker, messages flowing while one kind of fault strikes again and
//! again, then an audit. Every executionId sent must end in the final state exactly once,
//! none may be missing or parked, the queues must be empty; deliveries that reached a
//! service twice are counted and reported (at least once allows them).
//!
//! Sized by DPSD_CHAOS_MESSAGES (default 200: the short form `make test` runs); `make chaos`
//! runs the long form with thousands and appends each run's figures to DPSD_CHAOS_REPORT.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{
    rabbitmqctl, replicas_of, restartable_broker, tail, wait_for, wait_for_showing, PrivateCluster,
    PrivateMongo, TestEnv,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const REPLICAS: u32 = 2;

fn messages() -> usize {
    std::env::var("DPSD_CHAOS_MESSAGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200)
}

/// The example chain, its service calls logged: each stage's service appends the
/// executionId to `calls-STAGE.log` (one line per call, O_APPEND, so replicas can share it).
struct Chain {
    env: TestEnv,
    first: String,
    second: String,
    daemon: u32,
    faults: Vec<String>,
    started: Instant,
}

impl Chain {
    fn start(env: TestEnv) -> Chain {
        let (first, second) = (env.queue("first"), env.queue("second"));
        let recorder = |stage: &str| {
            let log = env.path(&format!("calls-{stage}.log"));
            format!(
                "{{exec: [/bin/sh, -c, 'cat >/dev/null; echo \"$DPS_EXECUTION_ID\" >> {}; echo \"\\\"{stage}\\\"\"'], timeout: 30s}}",
                log.display()
            )
        };
        env.write_worker(
            "w1",
            &format!(
                "queue: {first}\nfollow_queue: {second}\njob_state: 1\nreplicas: {REPLICAS}\nservices: [{}]\n",
                recorder("w1")
            ),
        );
        env.write_worker(
            "w2",
            &format!(
                "queue: {second}\njob_state: 2\nreplicas: {REPLICAS}\nservices: [{}]\n",
                recorder("w2")
            ),
        );
        let daemon = env.start_daemon();
        let chain = Chain {
            env,
            first,
            second,
            daemon,
            faults: Vec::new(),
            started: Instant::now(),
        };
        chain.wait_replicas();
        chain
    }

    fn wait_replicas(&self) {
        wait_for_showing(
            "all replicas consuming",
            Duration::from_secs(60),
            || self.consumers() >= 2 * REPLICAS as usize,
            || {
                let log = self.env.daemon_log();
                format!(
                    "{} consumers; the daemon's log ends:\n{}",
                    self.consumers(),
                    tail(&log, 6000)
                )
            },
        );
    }

    /// Consumers on the two queues, as RabbitMQ counts them (via the daemon's API).
    fn consumers(&self) -> usize {
        let Ok(body) = reqwest::blocking::get(self.env.api("/api/workers"))
            .and_then(|r| r.json::<serde_json::Value>())
        else {
            return 0;
        };
        body.as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w["queueStats"]["consumers"].as_u64())
            .sum::<u64>() as usize
    }

    /// Sends `n` messages with `dpsd send --count`; returns their executionIds.
    fn send(&self, n: usize) -> Vec<String> {
        self.env.send_count(&self.first, r#"{"mydata": {}}"#, n)
    }

    /// Service calls per executionId at one stage.
    fn calls(&self, stage: &str) -> BTreeMap<String, usize> {
        let text = std::fs::read_to_string(self.env.path(&format!("calls-{stage}.log")))
            .unwrap_or_default();
        let mut calls = BTreeMap::new();
        for id in text.lines().filter(|l| !l.is_empty()) {
            *calls.entry(id.to_string()).or_insert(0) += 1;
        }
        calls
    }

    /// Distinct messages the last stage's service has seen.
    fn through(&self) -> usize {
        self.calls("w2").len()
    }

    /// Runs `fault` each time another `every` messages got through, until all `n` did.
    fn strike_while_running(&mut self, n: usize, every: usize, mut fault: impl FnMut(&mut Chain)) {
        let deadline = Instant::now() + Duration::from_secs(120 + n as u64 / 10);
        let mut next = every;
        while self.through() < n {
            assert!(
                Instant::now() < deadline,
                "the chain stalled at {} of {n} messages after: {:?}\n{}",
                self.through(),
                self.faults,
                self.where_they_are()
            );
            if self.through() >= next {
                fault(self);
                next = self.through() + every;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What a stall report needs: the queues and consumers as the daemon sees them, and
    /// the end of the daemon's log (its replicas log there too).
    fn where_they_are(&self) -> String {
        let workers = reqwest::blocking::get(self.env.api("/api/workers"))
            .and_then(|r| r.text())
            .unwrap_or_else(|e| format!("GET /api/workers: {e}"));
        let log = std::fs::read_to_string(self.env.path("daemon.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!("workers: {workers}\nthe daemon's log, last 40 lines:\n{tail}")
    }

    /// The audit, once the store has caught up with the last service call.
    fn audit(&self, ids: &[String]) -> Audit {
        let mut audit = Audit::default();
        wait_for("the final states written", Duration::from_secs(60), || {
            audit = self.audit_once(ids);
            audit.missing.is_empty() && audit.wrong.is_empty()
        });
        wait_for("both queues empty", Duration::from_secs(30), || {
            self.env.depth(&self.first) + self.env.depth(&self.second) == 0
        });
        audit
    }

    fn audit_once(&self, ids: &[String]) -> Audit {
        let rt = self.env.rt();
        let (first, second) = (self.calls("w1"), self.calls("w2"));
        rt.block_on(async {
            let store = self.env.open_store().await;
            let mut audit = Audit {
                sent: ids.len(),
                ..Audit::default()
            };
            for id in ids {
                match store.execution(id).await.expect("read an execution") {
                    None => audit.missing.push(id.clone()),
                    Some(e) if e.state != Some(2) || e.status != dpsd::store::Status::Done => audit
                        .wrong
                        .push(format!("{id}: state {:?}, {:?}", e.state, e.status)),
                    Some(e) => {
                        let done = |w| e.stages.iter().filter(|s| s.worker == w).count();
                        audit.stages_recorded_twice += done("w1").saturating_sub(1);
                        audit.stages_recorded_twice += done("w2").saturating_sub(1);
                    }
                }
            }
            audit.parked = store.list_failed(None, 10, 0).await.expect("list").total;
            store.close().await;
            let sent: BTreeSet<&String> = ids.iter().collect();
            for (stage, calls) in [&first, &second].into_iter().enumerate() {
                audit.duplicate_calls[stage] += calls.values().map(|c| c - 1).sum::<usize>();
                audit.unknown += calls.keys().filter(|id| !sent.contains(id)).count();
            }
            audit
        })
    }

    /// Checks the audit and reports the run: on stderr and, under `make chaos`, in the report.
    fn conclude(&self, scenario: &str, ids: &[String]) {
        let audit = self.audit(ids);
        let line = format!(
            "| {scenario} | {} | {} | {} | {} (w1 {}, w2 {}) | {} | {:.1} s |",
            audit.sent,
            self.faults.len(),
            audit.missing.len() + audit.wrong.len(),
            audit.duplicate_calls.iter().sum::<usize>(),
            audit.duplicate_calls[0],
            audit.duplicate_calls[1],
            audit.stages_recorded_twice,
            self.started.elapsed().as_secs_f64()
        );
        eprintln!("chaos {line}\n  faults: {}", self.faults.join(", "));
        if let Ok(path) = std::env::var("DPSD_CHAOS_REPORT") {
            if let Ok(mut report) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = writeln!(report, "{line}");
            }
        }
        assert_eq!(audit.parked, 0, "messages were parked");
        assert_eq!(audit.unknown, 0, "services saw executionIds nobody sent");
        assert!(
            !self.faults.is_empty(),
            "no fault struck: the run ended first"
        );
    }

    fn kill_random_replica(&mut self) {
        let mut replicas: Vec<(u32, u32)> = replicas_of(self.daemon, "w1");
        replicas.extend(replicas_of(self.daemon, "w2"));
        if replicas.is_empty() {
            return;
        }
        let (pid, _) = replicas[fastrand_index(replicas.len())];
        if kill(Pid::from_raw(pid as i32), Signal::SIGKILL).is_ok() {
            self.faults.push(format!("SIGKILL replica {pid}"));
        }
    }
}

#[derive(Default, Debug)]
struct Audit {
    sent: usize,
    missing: Vec<String>,
    wrong: Vec<String>,
    parked: u64,
    unknown: usize,
    /// Service calls beyond the first per executionId, at w1 and at w2.
    duplicate_calls: [usize; 2],
    stages_recorded_twice: usize,
}

/// A pseudo-random index below `len` (no dependency for one number).
fn fastrand_index(len: usize) -> usize {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos as usize % len
}

#[test]
fn replicas_killed_at_random_lose_nothing() {
    let mut chain = Chain::start(TestEnv::embedded("chaoskill"));
    let n = messages();
    let ids = chain.send(n);
    chain.strike_while_running(n, (n / 15).max(25), Chain::kill_random_replica);
    chain.conclude("SIGKILL of random replicas", &ids);
}

#[test]
fn the_daemon_killed_and_started_again_loses_nothing() {
    let mut chain = Chain::start(TestEnv::embedded("chaosdaemon"));
    let n = messages();
    let ids = chain.send(n);
    let mut restarts = 0;
    chain.strike_while_running(n, (n / 3).max(10), |chain| {
        kill(Pid::from_raw(chain.daemon as i32), Signal::SIGKILL).expect("kill the daemon");
        let mut dead = chain.env.take_child(chain.daemon);
        let _ = dead.wait();
        // Its replicas die with it (parent-death signal); the new daemon starts its own.
        wait_for("the old replicas gone", Duration::from_secs(10), || {
            common::workers_using(&chain.env.config_path()).is_empty()
        });
        restarts += 1;
        chain.daemon = chain
            .env
            .start_daemon_at(&chain.env.config_path(), &format!("daemon-{restarts}.log"));
        chain
            .faults
            .push("SIGKILL of the daemon, then a new one".into());
        chain.wait_replicas();
    });
    chain.conclude("SIGKILL of the daemon and a fresh start", &ids);
}

#[test]
fn the_broker_restarted_under_load_loses_nothing() {
    let (url, node) = restartable_broker();
    let mut chain = Chain::start(TestEnv::with_servers("chaosbroker", &url, ""));
    let n = messages();
    let ids = chain.send(n);
    chain.strike_while_running(n, (n / 3).max(10), |chain| {
        rabbitmqctl(&node, "stop_app");
        std::thread::sleep(Duration::from_secs(2));
        rabbitmqctl(&node, "start_app");
        chain.faults.push("RabbitMQ stopped 2 s".into());
        chain.wait_replicas();
    });
    chain.conclude("RabbitMQ stopped and started", &ids);
}

#[test]
fn a_cluster_node_killed_under_load_loses_nothing_on_quorum_queues() {
    let cluster = PrivateCluster::start();
    let urls = cluster.urls().to_vec();
    let env = TestEnv::with_servers("chaoscluster", &urls[0], "");
    env.edit_main(
        &format!("  url: {}\n", urls[0]),
        &format!("  url: [{}]\n  queue_type: quorum\n", urls.join(", ")),
    );
    let mut chain = Chain::start(env);
    let n = messages();
    let ids = chain.send(n);
    // Every process starts on the first node of the list, and moves to the next one when
    // its node dies: the node killed each time is the one they are all on.
    let mut on = 0;
    chain.strike_while_running(n, (n / 3).max(10), |chain| {
        let pid = cluster.kill_node(on);
        chain
            .faults
            .push(format!("SIGKILL of node {} (pid {pid})", on + 1));
        chain.wait_replicas();
        cluster.start_node(on);
        on = (on + 1) % urls.len();
    });
    chain.conclude("SIGKILL of the cluster node in use (quorum queues)", &ids);
}

#[test]
fn the_database_restarted_under_load_loses_nothing() {
    let mut mongo = PrivateMongo::start();
    let env = TestEnv::with_servers("chaosdb", &common::amqp_url(), &mongo.uri());
    let mut chain = Chain::start(env);
    // SecantusDB is slow on writes: a tenth of the messages keep the run short.
    let n = (messages() / 4).max(40);
    let ids = chain.send(n);
    chain.strike_while_running(n, (n / 3).max(10), |chain| {
        mongo.stop();
        std::thread::sleep(Duration::from_secs(2));
        mongo.restart();
        chain.faults.push("MongoDB-wire server stopped 2 s".into());
    });
    chain.conclude("MongoDB-wire server stopped and started", &ids);
}

#[test]
fn the_embedded_file_locked_by_another_process_loses_nothing() {
    let mut chain = Chain::start(TestEnv::embedded("chaoslock"));
    let n = messages();
    let ids = chain.send(n);
    // Longer than the 10 s a write waits for the lock under `make chaos`: the store then
    // counts as unavailable and messages wait in the replicas, unacked.
    let hold = if n > 500 { 12 } else { 3 };
    let mut lockers: Vec<Child> = Vec::new();
    chain.strike_while_running(n, (n / 2).max(10), |chain| {
        lockers.push(lock_file(chain.env.path("state/dpsd.sqlite"), hold));
        chain.faults.push(format!("store file locked {hold} s"));
    });
    for mut locker in lockers {
        let status = locker.wait().expect("wait for the locker");
        assert!(status.success(), "the locking process failed");
    }
    chain.conclude("embedded store's file locked by another process", &ids);
    if hold > 10 {
        assert!(
            chain
                .env
                .daemon_log()
                .contains("store unavailable, retrying"),
            "the lock outlasted the busy wait, yet no write was retried"
        );
    }
}

/// Another process holding the SQLite write lock for `seconds`.
fn lock_file(path: PathBuf, seconds: u64) -> Child {
    let script = format!(
        "import sqlite3, time\n\
         c = sqlite3.connect({path:?}, isolation_level=None, timeout=30)\n\
         c.execute('BEGIN IMMEDIATE')\n\
         time.sleep({seconds})\n\
         c.execute('COMMIT')\n",
        path = path.display().to_string()
    );
    Command::new("python3")
        .args(["-c", &script])
        .spawn()
        .expect("start python3 to lock the store's file")
}

//! `dpsd run` as systemd would run it (SPEC 1, 4.1, 10): replicas kept, restarted, rescaled
//! on file edits, orphan-free, and stopped gracefully.

mod common;

use std::time::{Duration, Instant};

use common::{replicas_of, wait_for, wait_for_some, workers_using, TestEnv};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn signal(pid: u32, signal: Signal) {
    kill(Pid::from_raw(pid as i32), signal).expect("signal");
}

fn worker_yaml(env: &TestEnv, replicas: u32) -> String {
    let queue = env.queue("in");
    format!("queue: {queue}\njob_state: 1\nservices: [integration_test_service1]\nreplicas: {replicas}\n")
}

fn wait_replicas(daemon: u32, worker: &str, count: usize) -> Vec<(u32, u32)> {
    wait_for(
        &format!("{count} replicas of {worker}"),
        Duration::from_secs(20),
        || replicas_of(daemon, worker).len() == count,
    );
    replicas_of(daemon, worker)
}

#[test]
fn replicas_are_kept_running_and_restarted_after_sigkill() {
    let env = TestEnv::new("replicas");
    env.write_worker("w", &worker_yaml(&env, 3));
    let daemon = env.start_daemon();
    let replicas = wait_replicas(daemon, "w", 3);
    assert_eq!(
        replicas.iter().map(|(_, r)| *r).collect::<Vec<_>>(),
        [0, 1, 2]
    );

    let (victim, _) = replicas[1];
    signal(victim, Signal::SIGKILL);
    wait_for("a successor of replica 1", Duration::from_secs(20), || {
        let now = replicas_of(daemon, "w");
        now.len() == 3 && !now.iter().any(|(pid, _)| *pid == victim)
    });
    let log = env.daemon_log();
    assert!(
        log.contains("replica exited (signal SIGKILL)") && log.contains("restarts=1"),
        "{log}"
    );
}

#[test]
fn worker_files_added_scaled_and_removed_take_effect_live() {
    let env = TestEnv::new("reload");
    let daemon = env.start_daemon();
    wait_for("the daemon up", Duration::from_secs(20), || {
        env.daemon_log().contains("dpsd daemon starting")
    });

    env.write_worker("w", &worker_yaml(&env, 3));
    let three = wait_replicas(daemon, "w", 3);

    env.write_worker("w", &worker_yaml(&env, 1));
    let one = wait_replicas(daemon, "w", 1);
    assert_eq!(one[0], three[0], "the replica that stays is not touched");

    env.remove_worker("w");
    wait_replicas(daemon, "w", 0);
    assert!(env.daemon_log().contains("worker file removed"));
}

#[test]
fn a_broken_file_keeps_the_last_good_definition() {
    let env = TestEnv::new("broken");
    env.write_worker("w", &worker_yaml(&env, 2));
    let daemon = env.start_daemon();
    let before = wait_replicas(daemon, "w", 2);

    env.write_worker(
        "w",
        "queue: q\njob_state: 1\nservices: [no_such_service]\nreplicas: 5\n",
    );
    wait_for("the problem reported", Duration::from_secs(10), || {
        env.daemon_log()
            .contains("w.yaml:3: unknown service id \"no_such_service\"")
    });
    assert_eq!(
        replicas_of(daemon, "w"),
        before,
        "still the same two replicas"
    );

    // A replica that dies meanwhile comes back on the last good definition.
    let (victim, _) = before[0];
    signal(victim, Signal::SIGKILL);
    wait_for("a successor", Duration::from_secs(20), || {
        let now = replicas_of(daemon, "w");
        now.len() == 2 && !now.iter().any(|(pid, _)| *pid == victim)
    });
    let id = env.send(&env.queue("in"), r#"{"mydata": {}}"#);
    env.wait_done(&[id], 1, Duration::from_secs(20));

    // SIGHUP reloads at once, and a mended file applies.
    env.write_worker("w", &worker_yaml(&env, 1));
    signal(daemon, Signal::SIGHUP);
    wait_replicas(daemon, "w", 1);
}

#[test]
fn a_replica_restarted_while_the_main_file_is_broken_runs_the_last_good_configuration() {
    let env = TestEnv::new("mainbroken");
    env.write_worker("w", &worker_yaml(&env, 1));
    let daemon = env.start_daemon();
    let before = wait_replicas(daemon, "w", 1);

    std::fs::write(env.config_path(), "amqp: {url: [unterminated\n").expect("break the main file");
    wait_for(
        "the broken main file reported",
        Duration::from_secs(10),
        || {
            env.daemon_log()
                .contains("configuration invalid, keeping the running one")
        },
    );
    let (victim, _) = before[0];
    signal(victim, Signal::SIGKILL);
    let (successor, _) = wait_for_some("a successor", Duration::from_secs(20), || {
        let now = replicas_of(daemon, "w");
        now.into_iter().find(|(pid, _)| *pid != victim)
    });

    // The successor consumes and records on the settings it was handed (`dpsd send` would
    // read the broken file: the message goes in directly).
    let id = format!("{}-after", env.id);
    let body = format!(r#"{{"executionId": "{id}", "mydata": {{}}}}"#);
    env.publish_raw(&env.queue("in"), body.as_bytes(), &[]);
    env.wait_done(&[id], 1, Duration::from_secs(20));
    assert_eq!(replicas_of(daemon, "w"), [(successor, 0)], "it stays up");
}

#[test]
fn sigkill_of_the_daemon_leaves_no_worker_behind() {
    let env = TestEnv::new("orphans");
    env.write_worker("w", &worker_yaml(&env, 2));
    let daemon = env.start_daemon();
    wait_replicas(daemon, "w", 2);
    signal(daemon, Signal::SIGKILL);
    let _ = env.take_child(daemon).wait();
    let killed = Instant::now();
    wait_for("no worker process left", Duration::from_secs(5), || {
        workers_using(&env.config_path()).is_empty()
    });
    assert!(killed.elapsed() < Duration::from_secs(5));
}

#[test]
fn sigterm_drains_slow_messages_and_exits_zero() {
    let env = TestEnv::new("sigterm");
    let queue = env.queue("in");
    env.write_worker(
        "w",
        &format!("queue: {queue}\njob_state: 1\nprefetch: 3\nreplicas: 2\nservices: [{{builtin: sleep, duration: 1s}}]\n"),
    );
    let daemon = env.start_daemon();
    wait_replicas(daemon, "w", 2);
    wait_for("both replicas consuming", Duration::from_secs(20), || {
        env.daemon_log().matches("consuming").count() >= 2
    });
    let ids: Vec<String> = (0..20).map(|_| env.send(&queue, "{}")).collect();
    wait_for(
        "the first messages in service",
        Duration::from_secs(20),
        || env.daemon_log().contains("done"),
    );

    let stopping = Instant::now();
    signal(daemon, Signal::SIGTERM);
    let status = env.take_child(daemon).wait().expect("wait");
    assert!(status.success(), "daemon exit: {status}");
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "shutdown_timeout is 10s"
    );

    // Every message is either done or still in the queue: none lost, none left unacked.
    let done = ids.iter().filter(|id| env.execution(id).is_some()).count();
    let queued = env.depth(&queue) as usize;
    assert_eq!(done + queued, ids.len(), "done {done} + queued {queued}");
    assert!(done >= 3, "messages in hand were finished");
}

#[test]
fn a_crash_looping_worker_does_not_hold_the_others_back() {
    let env = TestEnv::new("crashloop");
    env.write_worker("steady", &worker_yaml(&env, 1));
    let other = env.queue("other");
    env.write_worker(
        "flaky",
        &format!("queue: {other}\njob_state: 1\nservices: [integration_test_service1]\n"),
    );
    let daemon = env.start_daemon();
    let steady = wait_replicas(daemon, "steady", 1);
    for round in 1..=3 {
        let (pid, _) = wait_replicas(daemon, "flaky", 1)[0];
        signal(pid, Signal::SIGKILL);
        wait_for(
            &format!("crash {round} seen"),
            Duration::from_secs(20),
            || env.daemon_log().contains(&format!("restarts={round}")),
        );
    }
    let log = env.daemon_log();
    assert!(
        log.contains("restarting in 1s")
            && log.contains("restarting in 2s")
            && log.contains("restarting in 4s"),
        "{log}"
    );
    assert_eq!(
        replicas_of(daemon, "steady"),
        steady,
        "the steady worker was never touched"
    );
    let id = env.send(&env.queue("in"), "{}");
    env.wait_done(&[id], 1, Duration::from_secs(20));
}

#[test]
fn systemd_hears_ready_once_the_replicas_are_started() {
    use std::os::unix::net::UnixDatagram;
    let env = TestEnv::new("notify");
    env.write_worker("w", &worker_yaml(&env, 2));
    let socket_path = env.path("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let log = std::fs::File::create(env.path("daemon.log")).expect("log");
    let mut child = env
        .dpsd()
        .arg("run")
        .env("NOTIFY_SOCKET", &socket_path)
        .stderr(log)
        .spawn()
        .expect("spawn");
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("a notification");
    let message = String::from_utf8_lossy(&buf[..n]).to_string();
    let replicas = replicas_of(child.id(), "w").len();
    signal(child.id(), Signal::SIGTERM);
    let status = child.wait().expect("wait");
    assert!(message.contains("READY=1"), "{message}");
    assert_eq!(replicas, 2, "READY came after the replicas were started");
    assert!(status.success());
    let n = socket.recv(&mut buf).expect("a notification");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
}

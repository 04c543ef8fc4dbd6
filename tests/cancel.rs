//! Cancelling an execution through the API (SPEC 4.5), with the real binary, two replicas
//! per worker, on both stores: a running exec service is stopped within a second with its
//! whole process group and nothing goes on; an executionId cancelled before its message is
//! sent is acked without its services; a finished execution is 409, a cancel twice 200;
//! `dpsd cancel` says the same.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::{wait_for, wait_for_some, TestEnv};
use dpsd::store::Status;
use reqwest::blocking::Client;
use serde_json::Value;

fn cancel(env: &TestEnv, execution_id: &str) -> (u16, Value) {
    let path = format!("/api/executions/{execution_id}/cancel");
    let response = Client::new().post(env.api(&path)).send().expect("POST");
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

/// Starts the daemon and waits until each queue has its two consumers.
fn start(env: &TestEnv, queues: &[&str]) {
    env.start_daemon();
    env.wait_api();
    for queue in queues {
        wait_for("two replicas consuming", Duration::from_secs(30), || {
            env.consumers(queue) == 2
        });
    }
}

/// Whether `pid` still runs: not gone, and not a zombie waiting for its reaper.
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|s| !s.starts_with(" Z"))
    })
}

/// The statuses of the execution's stages recorded by `worker`.
fn stages_by(env: &TestEnv, execution_id: &str, worker: &str) -> Vec<Status> {
    let execution = env.execution(execution_id);
    let stages = execution.map(|e| e.stages).unwrap_or_default();
    stages
        .iter()
        .filter(|s| s.worker == worker)
        .map(|s| s.status)
        .collect()
}

/// `slow` runs a service that, for executionIds starting with `hold`, starts a `sleep 30`
/// in its group, writes the group's two pids to `pids/ID` and waits; others pass at once.
/// It forwards to `next`, which echoes.
fn running_exec_service_is_stopped_within_a_second_and_not_forwarded(env: TestEnv) {
    let (first, second) = (env.queue("slow"), env.queue("next"));
    let pids = env.path("pids");
    std::fs::create_dir_all(&pids).expect("mkdir");
    let script = format!(
        "case $DPS_EXECUTION_ID in hold*) sleep 30 & echo $$ $! > {}/$DPS_EXECUTION_ID; wait;; esac; cat",
        pids.display()
    );
    env.write_worker(
        "slow",
        &format!(
            "queue: {first}\nfollow_queue: {second}\njob_state: 1\nreplicas: 2\n\
             services: [{{exec: [sh, -c, {script:?}], timeout: 60s}}]\n"
        ),
    );
    env.write_worker(
        "next",
        &format!("queue: {second}\njob_state: 2\nreplicas: 2\nservices: [{{builtin: echo}}]\n"),
    );
    start(&env, &[&first, &second]);

    env.send(&first, r#"{"executionId": "hold-1"}"#);
    let pid_file = pids.join("hold-1");
    let written = wait_for_some("the service running", Duration::from_secs(20), || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .filter(|p| p.ends_with('\n'))
    });
    let group: Vec<&str> = written.split_whitespace().collect();
    assert!(group.iter().all(|pid| alive(pid)), "{group:?}");

    assert!(
        env.execution("hold-1").is_none(),
        "the test's store opened before"
    );
    let (asked, asked_at) = (Instant::now(), chrono::Utc::now());
    let (status, body) = cancel(&env, "hold-1");
    assert_eq!(
        (status, &body["cancelled"]),
        (200, &Value::Bool(true)),
        "{body}"
    );
    assert_eq!(
        body["known"], false,
        "nothing is recorded before the first stage's services end"
    );
    wait_for("the cancelled stage", Duration::from_secs(5), || {
        stages_by(&env, "hold-1", "slow") == [Status::Cancelled]
    });
    let seen = asked.elapsed();
    let execution = env.execution("hold-1").expect("recorded");
    // When the replica had stopped the service and ended its stage, by its own clock.
    let stopped = (execution.stages[0].finished_at - asked_at).to_std();
    let stopped = stopped.unwrap_or_default();
    eprintln!("cancel asked to service stopped: {stopped:?}; to the stage seen here: {seen:?}");
    assert!(
        stopped < Duration::from_secs(1),
        "stopped after {stopped:?}"
    );
    assert!(
        group.iter().all(|pid| !alive(pid)),
        "the service's group still runs: {group:?}"
    );

    // A message sent after it goes all the way, so the queue to `next` works: hold-1 was
    // not forwarded, not merely late.
    env.send(&first, r#"{"executionId": "pass-1"}"#);
    wait_for("pass-1 through both", Duration::from_secs(20), || {
        env.is_done_at("pass-1", 2)
    });
    assert_eq!(stages_by(&env, "hold-1", "next"), []);
    assert_eq!((env.depth(&first), env.depth(&second)), (0, 0));
    let execution = env.execution("hold-1").expect("recorded");
    assert_eq!(
        (execution.status, execution.state),
        (Status::Cancelled, None)
    );
    wait_for("the cancel counted", Duration::from_secs(5), || {
        env.metrics()
            .contains(r#"dpsd_messages_cancelled_total{worker="slow"} 1"#)
    });
}

/// `w` appends each executionId its service sees to `seen`. An id cancelled before its
/// message is sent is acked by the replica that gets it with a cancelled stage, and never
/// reaches the service; an id sent beside it does.
fn an_id_cancelled_before_it_is_sent_is_acked_without_services(env: TestEnv) {
    let queue = env.queue("w");
    let seen = env.path("seen");
    let script = format!("echo $DPS_EXECUTION_ID >> {}; cat", seen.display());
    env.write_worker(
        "w",
        &format!(
            "queue: {queue}\njob_state: 1\nreplicas: 2\n\
             services: [{{exec: [sh, -c, {script:?}]}}]\n"
        ),
    );
    start(&env, &[&queue]);

    let (status, body) = cancel(&env, "early-1");
    assert_eq!(
        (status, &body["known"]),
        (200, &Value::Bool(false)),
        "{body}"
    );
    let (status, body) = cancel(&env, "early-1");
    assert_eq!(
        (status, &body["cancelled"], &body["known"]),
        (200, &Value::Bool(true), &Value::Bool(true)),
        "twice: {body}"
    );
    // Both replicas read the mark (each logs what it learnt) before the message exists.
    wait_for("both replicas know", Duration::from_secs(5), || {
        env.daemon_log()
            .matches("cancelled executions learnt from the store")
            .count()
            >= 2
    });

    env.send(&queue, r#"{"executionId": "early-1"}"#);
    env.send(&queue, r#"{"executionId": "other-1"}"#);
    wait_for(
        "early-1 acked as cancelled",
        Duration::from_secs(20),
        || stages_by(&env, "early-1", "w") == [Status::Cancelled],
    );
    wait_for("other-1 done", Duration::from_secs(20), || {
        env.is_done_at("other-1", 1)
    });
    let called = std::fs::read_to_string(&seen).unwrap_or_default();
    assert_eq!(called.lines().collect::<Vec<_>>(), ["other-1"]);
    let execution = env.execution("early-1").expect("recorded");
    assert_eq!(
        (execution.status, execution.state, execution.worker.as_str()),
        (Status::Cancelled, None, ""),
        "the summary stays as the cancel made it"
    );
    assert_eq!(env.depth(&queue), 0);
}

/// `flaky` (a retry 3 s later) and `once` (no retry) run a service that appends the
/// executionId to `calls` and fails. Cancelled while its retry waits in the delay queue, and
/// while its parked copy waits for a replay, an execution is acked cancelled when the retry
/// and the replay come, without a second call.
fn a_retry_and_a_replay_of_a_cancelled_execution_call_no_service(env: TestEnv) {
    let (flaky, once) = (env.queue("flaky"), env.queue("once"));
    let calls = env.path("calls");
    let script = format!("echo $DPS_EXECUTION_ID >> {}; exit 3", calls.display());
    let service = format!("services: [{{exec: [sh, -c, {script:?}]}}]\n");
    env.write_worker(
        "flaky",
        &format!("queue: {flaky}\njob_state: 1\nreplicas: 2\nretry: {{max_attempts: 3, delay: 3s}}\n{service}"),
    );
    env.write_worker(
        "once",
        &format!("queue: {once}\njob_state: 1\nreplicas: 2\n{service}"),
    );
    start(&env, &[&flaky, &once]);

    env.send(&flaky, r#"{"executionId": "retry-1"}"#);
    env.send(&once, r#"{"executionId": "park-1"}"#);
    env.wait_status("retry-1", Status::Retrying);
    let parked = wait_for_some("park-1 parked", Duration::from_secs(20), || {
        env.parked()
            .into_iter()
            .find(|p| p.execution_id.as_deref() == Some("park-1"))
    });
    for id in ["retry-1", "park-1"] {
        let (status, body) = cancel(&env, id);
        assert_eq!(
            (status, &body["known"]),
            (200, &Value::Bool(true)),
            "{body}"
        );
    }
    wait_for("the retry acked cancelled", Duration::from_secs(20), || {
        stages_by(&env, "retry-1", "flaky") == [Status::Retrying, Status::Cancelled]
    });
    let path = format!("/api/failed/{}/replay", parked.id);
    let replayed = Client::new().post(env.api(&path)).send().expect("replay");
    assert_eq!(replayed.status().as_u16(), 200);
    wait_for(
        "the replay acked cancelled",
        Duration::from_secs(20),
        || stages_by(&env, "park-1", "once") == [Status::Parked, Status::Cancelled],
    );
    let called = std::fs::read_to_string(&calls).unwrap_or_default();
    let mut called: Vec<&str> = called.lines().collect();
    called.sort_unstable();
    assert_eq!(
        called,
        ["park-1", "retry-1"],
        "one call each, before the cancel"
    );
    assert_eq!(
        env.parked_count(),
        0,
        "the replayed copy is not parked again"
    );
    let retried = env.execution("retry-1").expect("recorded");
    assert_eq!(retried.stages[1].attempts, 2, "the retry's attempt, acked");
}

fn a_finished_execution_is_409_and_exit_1_and_its_state_kept(env: TestEnv) {
    let (first, last) = (env.queue("first"), env.queue("last"));
    env.write_worker(
        "first",
        &format!("queue: {first}\nfollow_queue: {last}\njob_state: 1\nreplicas: 2\nservices: [integration_test_service1]\n"),
    );
    env.write_worker(
        "last",
        &format!(
            "queue: {last}\njob_state: 2\nreplicas: 2\nservices: [integration_test_service2]\n"
        ),
    );
    start(&env, &[&first, &last]);
    env.send(&first, r#"{"executionId": "finished-1"}"#);
    env.wait_done(&["finished-1".to_string()], 2, Duration::from_secs(30));
    let (status, body) = cancel(&env, "finished-1");
    assert_eq!(status, 409, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("finished"), "{body}");
    let execution = env.execution("finished-1").expect("kept");
    assert_eq!((execution.status, execution.state), (Status::Done, Some(2)));

    // The same from the terminal: exit 1 for the finished one, 0 and a line for another.
    let out = env.run(&["cancel", "finished-1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is finished"), "{stderr}");
    for note in [" (not seen yet", " (it was already)"] {
        let out = env.run(&["cancel", "cli-1"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.starts_with(&format!("cancelled cli-1{note}")),
            "{stdout}"
        );
    }
    let (status, body) = cancel(&env, "cli-1");
    assert_eq!(
        (status, &body["known"]),
        (200, &Value::Bool(true)),
        "{body}"
    );
}

on_both_backends!(
    a_retry_and_a_replay_of_a_cancelled_execution_call_no_service,
    running_exec_service_is_stopped_within_a_second_and_not_forwarded,
    an_id_cancelled_before_it_is_sent_is_acked_without_services,
    a_finished_execution_is_409_and_exit_1_and_its_state_kept,
);

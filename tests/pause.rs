//! Pausing and resuming a worker through the API (SPEC 4.5), with the real binary: the
//! replicas cancel their consumers within 2 seconds, messages wait in the queue, and after
//! the resume every one is processed, none lost.

mod common;

use std::time::{Duration, Instant};

use common::{listed_worker, wait_for, TestEnv};
use reqwest::blocking::Client;
use serde_json::Value;

/// Enough work (200 × 500 ms over 10 in flight: 10 s) that the pause lands mid-run.
const SENT: u64 = 200;

fn post(env: &TestEnv, path: &str) -> (u16, Value) {
    let response = Client::new().post(env.api(path)).send().expect("POST");
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

/// The worker `w` as `/api/workers` shows it.
fn worker(env: &TestEnv) -> Value {
    listed_worker(&env.api("/api/workers"), "w")
}

fn processed(env: &TestEnv) -> u64 {
    worker(env)["counters"]["processed"].as_u64().unwrap_or(0)
}

#[test]
fn a_paused_worker_stops_consuming_everywhere_and_loses_nothing() {
    let env = TestEnv::new("pause");
    let queue = env.queue("q");
    env.write_worker(
        "w",
        &format!("queue: {queue}\njob_state: 1\nprefetch: 5\nreplicas: 2\nservices: [{{builtin: sleep, duration: 500ms}}]\n"),
    );
    env.start_daemon();
    env.wait_api();
    wait_for("both replicas consuming", Duration::from_secs(30), || {
        env.consumers(&queue) == 2
    });
    assert_eq!(post(&env, "/api/workers/nope/pause").0, 404);
    assert_eq!(post(&env, "/api/workers/nope/resume").0, 404);

    let out = env.run(&[
        "send",
        &queue,
        r#"{"mydata": {}}"#,
        "--count",
        &SENT.to_string(),
    ]);
    assert!(out.status.success());
    wait_for("messages flowing", Duration::from_secs(20), || {
        processed(&env) >= 2
    });

    let paused_at = Instant::now();
    let (status, body) = post(&env, "/api/workers/w/pause");
    assert_eq!((status, body["paused"].clone()), (200, Value::Bool(true)));
    wait_for("no consumer within 2 s", Duration::from_secs(3), || {
        env.consumers(&queue) == 0
    });
    assert!(
        paused_at.elapsed() <= Duration::from_millis(2500),
        "took {:?}",
        paused_at.elapsed()
    );
    assert_eq!(post(&env, "/api/workers/w/pause").0, 200, "pausing twice");

    // In-progress messages finish; then nothing moves and the rest waits in the queue.
    // (The replicas report their counts every second: 2 s covers the last report.)
    std::thread::sleep(Duration::from_secs(2));
    let held = processed(&env);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(processed(&env), held, "a paused worker processed messages");
    assert!(held < SENT, "all processed before the pause took effect");
    assert_eq!(
        u64::from(env.depth(&queue)),
        SENT - held,
        "the rest waits in the queue"
    );
    assert_eq!(worker(&env)["paused"], true);
    let metrics = Client::new()
        .get(env.api("/metrics"))
        .send()
        .and_then(|r| r.text())
        .expect("metrics");
    assert!(
        metrics.contains(r#"dpsd_worker_paused{worker="w"} 1"#),
        "{metrics}"
    );

    let (status, body) = post(&env, "/api/workers/w/resume");
    assert_eq!((status, body["paused"].clone()), (200, Value::Bool(false)));
    wait_for("both consume again", Duration::from_secs(5), || {
        env.consumers(&queue) == 2
    });
    wait_for("every message processed", Duration::from_secs(60), || {
        processed(&env) == SENT
    });
    assert_eq!(env.depth(&queue), 0);
    assert_eq!(worker(&env)["paused"], false);
    assert_eq!(post(&env, "/api/workers/w/resume").0, 200, "resuming twice");
}

//! Logs (SPEC 8): JSON lines that carry the worker, the replica and the executionId, and
//! never a password.

mod common;

use std::time::Duration;

use common::{wait_for, TestEnv};
use serde_json::Value;

#[test]
fn json_lines_name_the_worker_replica_and_execution() {
    let env = TestEnv::new("jsonlog");
    env.edit_main("log:\n", "log:\n  format: json\n");
    let queue = env.queue("in");
    env.run_worker(
        "w",
        &format!("queue: {queue}\njob_state: 1\nservices: [integration_test_service1]\n"),
    );
    let id = env.send(&queue, "{}");
    env.wait_done(std::slice::from_ref(&id), 1, Duration::from_secs(20));
    wait_for("the done line", Duration::from_secs(10), || {
        env.worker_log("w").contains(&id)
    });
    let lines: Vec<Value> = env
        .worker_log("w")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let done = lines
        .iter()
        .find(|l| l["message"] == "done")
        .expect("a done line");
    let text = done.to_string();
    assert!(
        text.contains(r#""worker":"w""#) && text.contains(r#""replica":0"#),
        "{text}"
    );
    assert!(text.contains(&format!(r#""executionId":"{id}""#)), "{text}");
}

#[test]
fn passwords_never_reach_the_log() {
    let env = TestEnv::new("redact");
    // A broker that refuses the connection: the error names the URL.
    let port = common::free_port();
    env.edit_main(
        &env.amqp_url,
        &format!("amqp://guest:s3cretpw@127.0.0.1:{port}/%2f"),
    );
    env.write_worker(
        "w",
        "queue: q\njob_state: 1\nservices: [integration_test_service1]\n",
    );
    env.start_worker("w");
    wait_for("a connection error logged", Duration::from_secs(20), || {
        env.worker_log("w").contains("reconnecting")
    });
    let log = env.worker_log("w");
    assert!(log.contains("guest:***@127.0.0.1"), "{log}");
    assert!(!log.contains("s3cretpw"), "{log}");
}

#[test]
fn the_log_file_is_rotated_daily() {
    let env = TestEnv::new("logfile");
    env.edit_main("log:\n", "log:\n  console: false\n  file: logs/dpsd.log\n");
    let queue = env.queue("in");
    env.write_worker(
        "w",
        &format!("queue: {queue}\njob_state: 1\nservices: [integration_test_service1]\n"),
    );
    env.start_worker("w");
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let file = env.path(&format!("logs/dpsd.log.{today}"));
    wait_for("the day's log file", Duration::from_secs(20), || {
        std::fs::read_to_string(&file).is_ok_and(|text| text.contains("consuming"))
    });
    assert!(
        env.worker_log("w").is_empty(),
        "console: false keeps stderr quiet"
    );
}

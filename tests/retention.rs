//! Retention (SPEC 3.2) in a running daemon: finished executions are pruned after
//! `retention.executions`, an unfinished one is kept while its parked message is, and
//! `/metrics` (checked by Prometheus's own promtool) shows what the store holds and what
//! went.

#[macro_use]
mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use common::{wait_for, TestEnv};

on_both_backends!(finished_executions_go_and_a_parked_one_stays_until_its_message_goes);

/// The chain `first → last` and a worker that parks what it gets, with retention in seconds.
fn chain(env: &TestEnv) -> (String, String) {
    env.write_main("retention:\n  executions: 2s\n  unfinished: 3s\n");
    let (first, _) = env.write_two_stage_chain();
    let broken = env.queue("broken");
    env.write_worker(
        "broken",
        &format!("queue: {broken}\njob_state: 1\nservices: [{{builtin: fail, message: down}}]\n"),
    );
    (first, broken)
}

fn finished_executions_go_and_a_parked_one_stays_until_its_message_goes(env: TestEnv) {
    let (first, broken) = chain(&env);
    env.start_daemon();
    env.wait_api();
    let ids = env.send_count(&first, r#"{"mydata": {}}"#, 5);
    let stuck = env.send(&broken, "{}");
    let parked = env.wait_status(&stuck, dpsd::store::Status::Parked);
    env.wait_done(&ids, 2, Duration::from_secs(30));

    wait_for(
        "the finished executions pruned",
        Duration::from_secs(30),
        || ids.iter().all(|id| env.execution(id).is_none()),
    );
    // Past its unfinished retention and two passes more, the parked execution is still
    // there: its parked message holds it.
    let held_until = parked.updated_at + chrono::Duration::seconds(3 + 2);
    while Utc::now() < held_until {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        env.execution(&stuck).is_some(),
        "pruned with its message parked"
    );
    let metrics = env.metrics();
    assert!(
        metrics.contains(r#"dpsd_store_pruned_total{collection="job_state"} 5"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"dpsd_store_documents{collection="failed_messages"} 1"#),
        "{metrics}"
    );
    assert_eq!(
        env.is_embedded(),
        metrics.contains("dpsd_store_file_bytes ")
    );
    promtool_passes(&metrics);

    // Its message deleted, the execution goes by the unfinished rule.
    let id = &env.parked()[0].id;
    let deleted = reqwest::blocking::Client::new()
        .delete(env.api(&format!("/api/failed/{id}")))
        .send()
        .expect("DELETE /api/failed");
    assert!(deleted.status().is_success(), "{deleted:?}");
    wait_for(
        "the unfinished execution pruned",
        Duration::from_secs(20),
        || env.execution(&stuck).is_none(),
    );
    assert!(
        env.daemon_log().contains("pruned 5 executions"),
        "{}",
        env.daemon_log()
    );
}

/// `promtool check metrics` reads the exposition on stdin and exits non-zero on any
/// problem of format or naming.
fn promtool_passes(metrics: &str) {
    let promtool = std::env::var("DPSD_TEST_PROMTOOL")
        .expect("DPSD_TEST_PROMTOOL (scripts/ensure-promtool.sh): run with `make test`");
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("write to promtool");
    let out = check.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

//! Delayed retries, parking, and replay (SPEC 4.1, 4.2, 7), through the worker, the CLI and
//! the API. Every test runs on both stores (`on_mongodb::`, `on_embedded::`), reading state
//! through the trait.

#[macro_use]
mod common;

use std::time::Duration;

use common::{wait_for, TestEnv};
use dpsd::store::Status;
use reqwest::blocking::Client;
use serde_json::{json, Value};

on_both_backends!(
    a_service_failing_twice_then_succeeding_ends_done_after_three_attempts,
    a_service_that_always_fails_is_parked_after_max_attempts,
    a_pending_retry_survives_a_restart_of_dpsd,
    replay_from_the_cli_after_the_service_is_mended,
    a_replayed_message_keeps_the_count_of_stages_it_had_passed,
    the_failed_routes_of_the_api,
);

/// The delay queues a worker on `queue` declares, so that the test deletes them at its end.
fn track_delay_queues(env: &TestEnv, queue: &str, delays_ms: &[u64]) {
    for ms in delays_ms {
        env.queue(&format!("{queue}.retry.{ms}ms"));
    }
}

fn a_service_failing_twice_then_succeeding_ends_done_after_three_attempts(env: TestEnv) {
    let queue = env.queue("in");
    track_delay_queues(&env, "in", &[1000, 2000, 4000, 8000]);
    env.run_worker("w", &format!(
            "queue: {queue}\njob_state: 1\nretry: {{max_attempts: 5, delay: 1s, backoff: 2.0}}\n\
             services: [{{exec: [sh, -c, 'test $DPS_ATTEMPT -ge 3 && echo third time lucky || exit 1']}}]\n"
        ));
    let id = env.send(&queue, r#"{"mydata": {}}"#);
    let state = env.wait_status(&id, Status::Done);
    assert_eq!(state.attempts, 3, "{state:?}");
    let statuses: Vec<Status> = state.stages.iter().map(|s| s.status).collect();
    assert_eq!(statuses, [Status::Retrying, Status::Retrying, Status::Done]);
    let waits: Vec<i64> = state
        .stages
        .windows(2)
        .map(|pair| (pair[1].started_at - pair[0].finished_at).num_milliseconds())
        .collect();
    assert!(
        (1000..3000).contains(&waits[0]),
        "first retry after {} ms",
        waits[0]
    );
    assert!(
        (2000..4000).contains(&waits[1]),
        "second retry after {} ms",
        waits[1]
    );
    assert_eq!(env.parked_count(), 0);
}

fn a_service_that_always_fails_is_parked_after_max_attempts(env: TestEnv) {
    let queue = env.queue("in");
    track_delay_queues(&env, "in", &[200, 400]);
    env.run_worker("w", &format!("queue: {queue}\njob_state: 1\nretry: {{max_attempts: 3, delay: 200ms}}\nservices: [{{builtin: fail, message: broken}}]\n"));
    let id = env.send(&queue, r#"{"mydata": {"k": 1}}"#);
    let state = env.wait_status(&id, Status::Parked);
    assert_eq!(state.attempts, 3);
    assert!(state.error.unwrap_or_default().contains("broken"));
    let parked = env.parked();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].attempts, 3);
    assert_eq!(parked[0].execution_id.as_deref(), Some(id.as_str()));
    assert_eq!(env.depth(&queue), 0);
}

fn a_pending_retry_survives_a_restart_of_dpsd(env: TestEnv) {
    let queue = env.queue("in");
    track_delay_queues(&env, "in", &[3000]);
    env.run_worker(
        "w",
        &format!(
            "queue: {queue}\njob_state: 1\nretry: {{max_attempts: 2, delay: 3s}}\n\
             services: [{{exec: [sh, -c, 'test $DPS_ATTEMPT -ge 2 && echo ok || exit 1']}}]\n"
        ),
    );
    let id = env.send(&queue, "{}");
    env.wait_status(&id, Status::Retrying);
    // The retrying stage is recorded before the copy goes to the delay queue: wait for the
    // copy, or the kill may come between the two (then the message is only requeued).
    let delay_queue = format!("{queue}.retry.3000ms");
    wait_for(
        "the retry in its delay queue",
        Duration::from_secs(10),
        || env.depth(&delay_queue) == 1,
    );
    env.kill_workers();
    // The message waits in RabbitMQ's delay queue meanwhile, and is back in the worker's
    // queue when the delay is over, with no dpsd running. (A kill between the publish to the
    // delay queue and the ack also leaves the first copy requeued: at least one is back.)
    wait_for("the delay over", Duration::from_secs(10), || {
        env.depth(&delay_queue) == 0 && env.depth(&queue) >= 1
    });
    env.start_worker("w");
    let state = env.wait_status(&id, Status::Done);
    assert_eq!(state.attempts, 2);
}

/// A worker whose service fails until the file FLAG exists; no retries.
fn mendable(env: &TestEnv, worker: &str) -> (String, std::path::PathBuf) {
    let queue = env.queue(worker);
    let flag = env.path("mended");
    env.write_worker(
        worker,
        &format!("queue: {queue}\njob_state: 1\nservices: [{{exec: [sh, -c, 'test -f {} && echo mended || exit 7']}}]\n", flag.display()),
    );
    (queue, flag)
}

fn replay_from_the_cli_after_the_service_is_mended(env: TestEnv) {
    let (queue, flag) = mendable(&env, "w");
    env.start_worker("w");
    env.wait_consuming("w", 1);
    let ids: Vec<String> = (0..22)
        .map(|i| env.send(&queue, &format!(r#"{{"n": {i}}}"#)))
        .collect();
    wait_for("22 parked", Duration::from_secs(60), || {
        env.parked_count() == 22
    });

    let out = env.run(&["failed", "list", "--worker", "w", "--limit", "5"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 5);
    assert!(String::from_utf8_lossy(&out.stderr).contains("5 of 22"));

    // One replayed alone, then delete one, then the rest in bulk.
    std::fs::write(&flag, "").expect("mend");
    let first = format!("w:{}", ids[0]);
    let out = env.run(&["failed", "replay", &first]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.wait_done(&ids[..1], 1, Duration::from_secs(30));
    let out = env.run(&["failed", "delete", &format!("w:{}", ids[1])]);
    assert!(out.status.success());
    assert_eq!(
        env.run(&["failed", "delete", "w:nope"]).status.code(),
        Some(1)
    );

    let out = env.run(&["failed", "replay", "--worker", "w"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("replayed 20, failed 0"));
    env.wait_done(&ids[2..], 1, Duration::from_secs(60));
    assert_eq!(env.parked_count(), 0, "replayed messages leave the store");
    let state = env.execution(&ids[5]).expect("state");
    assert_eq!(state.status, Status::Done);
}

/// A message three stages down a chain is parked with that count, and its replay carries it
/// back (`x-dpsd-stages`): the replay's record is the same stage, and the newest wins.
fn a_replayed_message_keeps_the_count_of_stages_it_had_passed(env: TestEnv) {
    let (queue, flag) = mendable(&env, "w");
    env.start_worker("w");
    env.wait_consuming("w", 1);
    let body = br#"{"executionId": "far-along"}"#;
    env.publish_raw(&queue, body, &[("x-dpsd-stages", "3")]);
    let parked = env.wait_status("far-along", Status::Parked);
    assert_eq!(parked.stages[0].stages_passed, 3);
    assert_eq!(env.parked()[0].stages_passed, 3);

    std::fs::write(&flag, "").expect("mend");
    let out = env.run(&["failed", "replay", "w:far-along"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = env.wait_status("far-along", Status::Done);
    let passed: Vec<(Status, u32)> = done
        .stages
        .iter()
        .map(|s| (s.status, s.stages_passed))
        .collect();
    assert_eq!(passed, [(Status::Parked, 3), (Status::Done, 3)]);
    assert_eq!((done.state, done.attempts), (Some(1), 1));
}

fn the_failed_routes_of_the_api(env: TestEnv) {
    let (queue_a, flag) = mendable(&env, "a");
    let queue_b = env.queue("b");
    env.write_worker(
        "b",
        &format!("queue: {queue_b}\njob_state: 1\nservices: [{{builtin: fail, message: nope}}]\n"),
    );
    env.start_daemon();
    env.wait_api();
    wait_for("both consuming", Duration::from_secs(20), || {
        env.daemon_log().matches("consuming").count() >= 2
    });
    let a: Vec<String> = (0..3).map(|_| env.send(&queue_a, "{}")).collect();
    let b = env.send(&queue_b, "{}");
    wait_for("4 parked", Duration::from_secs(30), || {
        env.parked_count() == 4
    });

    let client = Client::new();
    let get = |path: &str| -> (u16, Value) {
        let r = client.get(env.api(path)).send().expect("GET");
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    };
    let post = |path: &str| -> (u16, Value) {
        let r = client.post(env.api(path)).send().expect("POST");
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    };
    let (status, page) = get("/api/failed?worker=a&limit=2");
    assert_eq!(status, 200);
    assert_eq!(page["total"], json!(3));
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(page["items"][0]["worker"], json!("a"));
    assert!(page["items"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .contains("exit status 7"));
    assert_eq!(page["items"][0]["body"]["encoding"], json!("json"));
    let (_, rest) = get("/api/failed?worker=a&limit=2&skip=2");
    assert_eq!(rest["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(get("/api/failed").1["total"], json!(4));
    assert_eq!(get("/api/failed?limit=0").0, 400);
    assert_eq!(get("/api/failed?bogus=1").0, 400);

    std::fs::write(&flag, "").expect("mend");
    assert_eq!(
        post(&format!("/api/failed/a:{}/replay", a[0])),
        (200, json!({"ok": true}))
    );
    assert_eq!(post("/api/failed/nope/replay").0, 404);
    env.wait_done(&a[..1], 1, Duration::from_secs(30));
    assert_eq!(
        post("/api/failed/replay?worker=a"),
        (200, json!({"replayed": 2, "failed": 0}))
    );
    env.wait_done(&a, 1, Duration::from_secs(30));

    let deleted = client
        .delete(env.api(&format!("/api/failed/b:{b}")))
        .send()
        .expect("DELETE");
    assert_eq!(deleted.status().as_u16(), 200);
    let again = client
        .delete(env.api(&format!("/api/failed/b:{b}")))
        .send()
        .expect("DELETE");
    assert_eq!(again.status().as_u16(), 404);
    assert_eq!(get("/api/failed").1["total"], json!(0));
}

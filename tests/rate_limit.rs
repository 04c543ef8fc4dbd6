//! A worker's `rate_limit` (SPEC 4.5) with the real binary: over all its replicas, on one
//! daemon or two sharing a MongoDB database, no window of `per` holds more than `max` starts
//! (one more at an edge tolerated), every message is done on its first attempt, the waits
//! show in `/metrics`; and a pause through one daemon stops the other's replicas too.

#[macro_use]
mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{listed_worker, wait_for, Peer, TestEnv};
use dpsd::store::Status;
use reqwest::blocking::Client;

const MAX: usize = 5;
const PER: Duration = Duration::from_secs(1);
/// Six windows' worth: most messages wait.
const SENT: usize = 30;

/// Worker `w`: two replicas, 5 starts a second, a quick service.
fn write_limited_worker(env: &TestEnv) -> String {
    let queue = env.queue("q");
    env.write_worker(
        "w",
        &format!(
            "queue: {queue}\njob_state: 1\nreplicas: 2\nprefetch: 10\n\
             rate_limit: {{max: {MAX}, per: 1s}}\nservices: [{{builtin: sleep, duration: 20ms}}]\n"
        ),
    );
    queue
}

/// When each execution's stage started (the replica stamps it once its turn came), checking
/// that it is done on its first attempt.
fn starts(env: &TestEnv, ids: &[String]) -> Vec<DateTime<Utc>> {
    let mut starts: Vec<DateTime<Utc>> = ids
        .iter()
        .map(|id| {
            let execution = env.execution(id).expect("recorded");
            assert_eq!(execution.status, Status::Done, "{id}");
            assert_eq!(execution.stages.len(), 1, "{id}: {:?}", execution.stages);
            let stage = &execution.stages[0];
            assert_eq!(stage.attempts, 1, "{id}: waiting is no attempt");
            stage.started_at
        })
        .collect();
    starts.sort();
    starts
}

/// The most starts in any window of length `PER` (each window opening at a start: the
/// fullest one does).
fn fullest_window(starts: &[DateTime<Utc>]) -> usize {
    let per = chrono::Duration::from_std(PER).expect("per");
    starts
        .iter()
        .map(|from| {
            starts
                .iter()
                .filter(|s| **s >= *from && **s < *from + per)
                .count()
        })
        .max()
        .unwrap_or(0)
}

fn assert_rate_held(starts: &[DateTime<Utc>]) {
    let fullest = fullest_window(starts);
    let span = starts.last().zip(starts.first()).map(|(l, f)| *l - *f);
    eprintln!(
        "{} starts over {span:?}, at most {fullest} in a window of {PER:?}",
        starts.len()
    );
    assert!(
        fullest <= MAX + 1,
        "{fullest} starts in one window of {PER:?} (limit {MAX}): {starts:?}"
    );
    // Not vacuous: the messages came together, so the windows were full.
    assert!(fullest >= MAX, "never {MAX} in a window: {starts:?}");
}

/// `dpsd_rate_limit_wait_seconds_total{worker="w"}` from `/metrics` text.
fn waited_seconds(metrics: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"dpsd_rate_limit_wait_seconds_total{worker="w"} "#))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn a_rate_limit_holds_across_replicas_and_uses_no_attempt(env: TestEnv) {
    let queue = write_limited_worker(&env);
    env.start_daemon();
    env.wait_api();
    wait_for("both replicas consuming", Duration::from_secs(30), || {
        env.consumers(&queue) == 2
    });
    let ids = env.send_count(&queue, r#"{"mydata": {}}"#, SENT);
    env.wait_done(&ids, 1, Duration::from_secs(90));
    assert_rate_held(&starts(&env, &ids));
    assert_eq!(env.parked_count(), 0);
    assert_eq!(env.depth(&queue), 0);
    // 30 at 5 a second: the later ones waited seconds each (the replicas report each second).
    wait_for("the waits in /metrics", Duration::from_secs(5), || {
        waited_seconds(&env.metrics()) > 1.0
    });
}

on_both_backends!(a_rate_limit_holds_across_replicas_and_uses_no_attempt);

fn post(url: &str) -> u16 {
    Client::new()
        .post(url)
        .send()
        .expect("POST")
        .status()
        .as_u16()
}

#[test]
fn two_daemons_on_one_database_share_the_rate_limit_and_the_pause() {
    let env = TestEnv::new("ratetwo");
    let queue = write_limited_worker(&env);
    env.start_daemon();
    let peer: Peer = env.start_peer();
    env.wait_api();
    wait_for(
        "four replicas on two daemons",
        Duration::from_secs(40),
        || env.consumers(&queue) == 4,
    );
    let ids = env.send_count(&queue, r#"{"mydata": {}}"#, SENT);
    env.wait_done(&ids, 1, Duration::from_secs(90));
    assert_rate_held(&starts(&env, &ids));
    wait_for(
        "both daemons' replicas took some",
        Duration::from_secs(5),
        || {
            let first =
                listed_worker(&env.api("/api/workers"), "w")["counters"]["processed"].as_u64();
            let second =
                listed_worker(&peer.api("/api/workers"), "w")["counters"]["processed"].as_u64();
            matches!((first, second), (Some(a), Some(b)) if a > 0 && b > 0 && a + b == SENT as u64)
        },
    );

    // Paused through the first daemon: the second daemon's replicas stop too.
    assert_eq!(post(&env.api("/api/workers/w/pause")), 200);
    wait_for(
        "no consumer on either daemon",
        Duration::from_secs(3),
        || env.consumers(&queue) == 0,
    );
    assert_eq!(
        listed_worker(&peer.api("/api/workers"), "w")["paused"],
        true
    );
    let held = env.send_count(&queue, r#"{"mydata": {}}"#, 10);
    // With no consumer anywhere, nothing can take them: they wait in the queue.
    wait_for(
        "the ten waiting in the queue",
        Duration::from_secs(5),
        || env.depth(&queue) == 10,
    );
    assert_eq!(env.consumers(&queue), 0);
    assert_eq!(env.count_done(&held, 1), 0);

    // Resumed through the second daemon: all four consume again and the ten are done.
    assert_eq!(post(&peer.api("/api/workers/w/resume")), 200);
    wait_for("four consumers again", Duration::from_secs(5), || {
        env.consumers(&queue) == 4
    });
    env.wait_done(&held, 1, Duration::from_secs(60));
    assert_eq!(
        listed_worker(&env.api("/api/workers"), "w")["paused"],
        false
    );
}

#[test]
fn a_rate_limit_of_nothing_or_of_no_period_is_a_problem_on_its_line() {
    let env = TestEnv::embedded("ratebad");
    let worker = |max: &str, per: &str| {
        format!("queue: a\njob_state: 1\nservices: [integration_test_service1]\nrate_limit: {{max: {max}, per: {per}}}\n")
    };
    env.write_worker("zero", &worker("0", "1s"));
    env.write_worker("instant", &worker("5", "0s"));
    env.write_worker("vague", &worker("5", "a while"));
    let out = env.run(&["check"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    for (file, says) in [
        ("zero.yaml:4:", "rate_limit.max must be at least 1"),
        ("instant.yaml:4:", "rate_limit.per must be at least 1ms"),
        ("vague.yaml:4:", "rate_limit.per"),
    ] {
        let line = text.lines().find(|l| l.contains(file));
        assert!(
            line.is_some_and(|l| l.contains(says)),
            "{file} {says}: {text}"
        );
    }
}

//! `/metrics` and `/api/workers` after a chain run (SPEC 6, 8): the counters equal the
//! messages sent, and survive a replica's restart.

mod common;

use std::time::Duration;

use common::{listed_worker, replicas_of, wait_for, TestEnv};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use reqwest::blocking::Client;

fn scrape(env: &TestEnv) -> String {
    Client::new()
        .get(env.api("/metrics"))
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default()
}

/// The value of the sample `name{labels}` in a scrape.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn metrics_count_the_messages_of_a_chain_run() {
    let env = TestEnv::new("metrics");
    let (stage1, stage2, broken) = (env.queue("s1"), env.queue("s2"), env.queue("broken"));
    env.write_worker("w1", &format!("queue: {stage1}\nfollow_queue: {stage2}\njob_state: 1\nservices: [integration_test_service1]\n"));
    env.write_worker("w2", &format!("queue: {stage2}\njob_state: 2\nreplicas: 2\nservices: [integration_test_service2, integration_test_service2_1]\n"));
    env.write_worker(
        "bad",
        &format!("queue: {broken}\njob_state: 1\nservices: [{{builtin: fail, message: no}}]\n"),
    );
    let daemon = env.start_daemon();
    env.wait_api();
    wait_for("all replicas consuming", Duration::from_secs(30), || {
        env.daemon_log().matches("consuming").count() >= 4
    });
    let out = env.run(&["send", &stage1, r#"{"mydata": {}}"#, "--count", "10"]);
    assert!(out.status.success());
    env.send(&broken, "{}");
    env.send(&broken, "{}");

    let counted = |text: &str| {
        (
            sample(text, r#"dpsd_messages_processed_total{worker="w1"}"#),
            sample(text, r#"dpsd_messages_processed_total{worker="w2"}"#),
            sample(text, r#"dpsd_messages_parked_total{worker="bad"}"#),
        )
    };
    wait_for(
        "the counters to reach the messages sent",
        Duration::from_secs(30),
        || counted(&scrape(&env)) == (Some(10.0), Some(10.0), Some(2.0)),
    );
    let text = scrape(&env);
    assert_eq!(
        sample(&text, r#"dpsd_messages_failed_total{worker="bad"}"#),
        Some(2.0)
    );
    assert_eq!(
        sample(&text, r#"dpsd_replicas_running{worker="w2"}"#),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"dpsd_service_call_duration_seconds_count{worker="w2",service="integration_test_service2_1"}"#
        ),
        Some(10.0)
    );
    assert!(text.contains("# TYPE dpsd_service_call_duration_seconds histogram"));
    wait_for("queue depths read", Duration::from_secs(20), || {
        sample(
            &scrape(&env),
            &format!(r#"dpsd_queue_consumers{{queue="{stage2}"}}"#),
        ) == Some(2.0)
    });

    // A replica killed: the worker's totals stay, its restart is counted.
    let (victim, _) = replicas_of(daemon, "w1")[0];
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).expect("kill");
    wait_for("the restart counted", Duration::from_secs(20), || {
        sample(&scrape(&env), r#"dpsd_replica_restarts_total{worker="w1"}"#) == Some(1.0)
    });
    assert_eq!(
        sample(
            &scrape(&env),
            r#"dpsd_messages_processed_total{worker="w1"}"#
        ),
        Some(10.0)
    );

    // Scaling down keeps the counts of the replica that stopped.
    env.write_worker("w2", &format!("queue: {stage2}\njob_state: 2\nreplicas: 1\nservices: [integration_test_service2, integration_test_service2_1]\n"));
    wait_for("w2 scaled to one", Duration::from_secs(20), || {
        sample(&scrape(&env), r#"dpsd_replicas_running{worker="w2"}"#) == Some(1.0)
    });
    // Its counts are held until its reports end, then kept as retired: at no moment
    // after it stopped may the total be lower.
    wait_for(
        "w2's extra replica stopped",
        Duration::from_secs(20),
        || {
            env.daemon_log()
                .lines()
                .any(|l| l.contains("replica stopped") && l.contains("worker=w2"))
        },
    );
    assert_eq!(
        sample(
            &scrape(&env),
            r#"dpsd_messages_processed_total{worker="w2"}"#
        ),
        Some(10.0)
    );
    env.write_worker("w2", &format!("queue: {stage2}\njob_state: 2\nreplicas: 2\nservices: [integration_test_service2, integration_test_service2_1]\n"));
    wait_for("w2 back to two", Duration::from_secs(20), || {
        sample(&scrape(&env), r#"dpsd_replicas_running{worker="w2"}"#) == Some(2.0)
    });

    let w2 = listed_worker(&env.api("/api/workers"), "w2");
    assert_eq!(w2["replicasWanted"], 2);
    assert_eq!(w2["pids"].as_array().map(Vec::len), Some(2));
    assert_eq!(w2["counters"]["processed"], 10);
    assert_eq!(
        w2["services"],
        serde_json::json!(["integration_test_service2", "integration_test_service2_1"])
    );
    assert_eq!(w2["queueStats"]["consumers"], 2);
}

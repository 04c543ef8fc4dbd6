//! Quorum queues and node lists (SPEC 3.3) on the test broker: a queue's type is its
//! consumer's and every declarer follows it, delayed retries work through quorum delay
//! queues, a type clash is an error naming both types, a message that kills its replica is
//! parked at the delivery limit, and a list of nodes whose first is down still connects.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, wait_for, TestEnv};
use dpsd::store::Status;

/// The type RabbitMQ reports for `queue` (`rabbitmqctl list_queues` on the test broker).
fn type_of(queue: &str) -> Option<String> {
    let out = Command::new("rabbitmqctl")
        .args(["-q", "list_queues", "name", "type", "--no-table-headers"])
        .output()
        .expect("run rabbitmqctl");
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    listing.lines().find_map(|line| {
        let (name, kind) = line.split_once('\t')?;
        (name == queue).then(|| kind.trim().to_string())
    })
}

/// A worker file: `queue`, optionally forwarding to `follow`, with `extra` lines.
fn worker(queue: &str, follow: Option<&str>, state: u32, extra: &str) -> String {
    let follow = follow.map_or(String::new(), |f| format!("follow_queue: {f}\n"));
    format!("queue: {queue}\n{follow}job_state: {state}\nservices: [integration_test_service1]\n{extra}")
}

#[test]
fn a_queue_takes_its_consumers_type_and_retries_wait_in_quorum_delay_queues() {
    let env = TestEnv::new("quorum_chain");
    let (first, second) = (env.queue("in"), env.queue("out"));
    env.queue("in.retry.1000ms");
    // Classic by default; both workers say quorum in their own files.
    let retry = "queue_type: quorum\nretry: {max_attempts: 3, delay: 1s}\n";
    let flaky = format!(
        "queue: {first}\nfollow_queue: {second}\njob_state: 1\n{retry}\
         services: [{{exec: [sh, -c, 'test $DPS_ATTEMPT -ge 2 && echo ok || exit 1']}}]\n"
    );
    env.write_worker("w1", &flaky);
    env.write_worker("w2", &worker(&second, None, 2, "queue_type: quorum\n"));
    // w1 starts first and declares w2's queue: of w2's type, or w2 could not declare it.
    env.start_worker("w1");
    env.wait_consuming("w1", 1);
    env.start_worker("w2");
    env.wait_consuming("w2", 1);

    let id = env.send(&first, r#"{"mydata": {}}"#);
    env.wait_done(std::slice::from_ref(&id), 2, Duration::from_secs(30));
    let mut execution = env.execution(&id).expect("recorded");
    // In the chain's order: the second worker's record may have landed first.
    execution.stages.sort_by_key(|s| s.stages_passed);
    let stages: Vec<(String, Status, u32)> = execution
        .stages
        .iter()
        .map(|s| (s.worker.clone(), s.status, s.attempts))
        .collect();
    assert_eq!(
        stages,
        [
            ("w1".into(), Status::Retrying, 1),
            ("w1".into(), Status::Done, 2),
            ("w2".into(), Status::Done, 1)
        ]
    );
    for queue in [&first, &second, &format!("{first}.retry.1000ms")] {
        assert_eq!(type_of(queue).as_deref(), Some("quorum"), "{queue}");
    }
}

#[test]
fn amqp_queue_type_is_the_default_and_dpsd_send_declares_by_it() {
    let env = TestEnv::new("quorum_default");
    env.edit_main("  prefetch: 10\n", "  prefetch: 10\n  queue_type: quorum\n");
    let (quorum, classic) = (env.queue("q"), env.queue("c"));
    env.run_worker("wq", &worker(&quorum, None, 1, ""));
    env.run_worker("wc", &worker(&classic, None, 1, "queue_type: classic\n"));
    let unowned = env.queue("nobody");
    env.send(&unowned, "{}");
    assert_eq!(type_of(&quorum).as_deref(), Some("quorum"));
    assert_eq!(type_of(&classic).as_deref(), Some("classic"));
    assert_eq!(
        type_of(&unowned).as_deref(),
        Some("quorum"),
        "amqp.queue_type"
    );
    let id = env.send(&classic, "{}");
    env.wait_done(&[id], 1, Duration::from_secs(20));
}

#[test]
fn a_queue_that_exists_with_another_type_is_refused_naming_both() {
    let env = TestEnv::new("quorum_clash");
    let queue = env.queue("in");
    env.publish_raw(&queue, b"{}", &[]); // declares it classic, as another program might
    env.write_worker("w", &worker(&queue, None, 1, "queue_type: quorum\n"));
    env.start_worker("w");
    let expected = format!(
        "queue {queue:?} exists as a classic queue, and this configuration declares it quorum"
    );
    wait_for(
        &format!("the clash logged: {expected}"),
        Duration::from_secs(20),
        || env.worker_log("w").contains(&expected),
    );
    assert!(!env.worker_log("w").contains("consuming"));
    assert_eq!(
        type_of(&queue).as_deref(),
        Some("classic"),
        "left as it was"
    );
}

#[test]
fn a_message_that_kills_its_replica_is_parked_at_the_delivery_limit() {
    let env = TestEnv::new("quorum_poison");
    env.edit_main("  prefetch: 10\n", "  prefetch: 10\n  delivery_limit: 2\n");
    env.edit_main(
        "supervisor:\n",
        "supervisor:\n  restart_backoff: {initial: 100ms, max: 200ms}\n",
    );
    let queue = env.queue("in");
    // The service kills the replica that runs it, every time.
    let deadly = format!(
        "queue: {queue}\njob_state: 1\nqueue_type: quorum\n\
         services: [{{exec: [sh, -c, 'kill -9 $PPID; sleep 5']}}]\n"
    );
    env.write_worker("w", &deadly);
    env.start_daemon();
    wait_for("the replica consuming", Duration::from_secs(20), || {
        env.daemon_log().contains("consuming")
    });
    let id = env.send(&queue, r#"{"mydata": {}}"#);
    let parked = common::wait_for_some("the message parked", Duration::from_secs(30), || {
        env.parked()
            .into_iter()
            .find(|p| p.execution_id.as_deref() == Some(id.as_str()))
    });
    assert!(
        parked
            .error
            .starts_with("delivered 3 times without being settled"),
        "{parked:?}"
    );
    let execution = env.execution(&id).expect("recorded");
    assert_eq!(execution.status, Status::Parked);
    assert!(
        env.daemon_log()
            .matches("replica exited (signal SIGKILL)")
            .count()
            >= 2
    );
}

#[test]
fn a_node_list_whose_first_node_is_down_connects_to_the_next_at_once() {
    let env = TestEnv::new("nodes");
    let down = format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port());
    env.edit_main(
        &format!("  url: {}\n", env.amqp_url),
        &format!("  url: [{down}, {}]\n", env.amqp_url),
    );
    let queue = env.queue("in");
    let started = Instant::now();
    env.run_worker("w", &worker(&queue, None, 1, ""));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // The same list in DPSD_AMQP__URL, comma-separated, for `dpsd send`.
    env.edit_main(&format!("  url: [{down}, {}]\n", env.amqp_url), "");
    let out = env
        .dpsd()
        .env("DPSD_AMQP__URL", format!("{down},{}", env.amqp_url))
        .args(["send", &queue, "{}"])
        .output()
        .expect("dpsd send");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    env.wait_done(&[id], 1, Duration::from_secs(20));
}

#[test]
fn a_list_of_nodes_that_are_all_down_names_each_without_its_password() {
    let env = TestEnv::new("nodes_down");
    let (a, b) = (free_port(), free_port());
    let list =
        format!("amqp://guest:s3cret@127.0.0.1:{a}/%2f,amqp://guest:s3cret@127.0.0.1:{b}/%2f");
    let out = env
        .dpsd()
        .env("DPSD_AMQP__URL", &list)
        .args(["send", "q", "{}"])
        .output()
        .expect("dpsd send");
    let error = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{error}");
    assert!(
        error.contains(&format!("127.0.0.1:{a}")) && error.contains(&format!("127.0.0.1:{b}")),
        "{error}"
    );
    assert!(!error.contains("s3cret"), "{error}");
}

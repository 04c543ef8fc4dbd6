//! Nothing is lost when a replica dies or the broker restarts (SPEC 4.2, 10).

mod common;

use std::time::Duration;

use common::{
    close_connections_named, rabbitmqctl, restartable_broker, wait_for, PrivateMongo, TestEnv,
};

#[test]
fn a_replica_killed_mid_batch_loses_no_message() {
    let env = TestEnv::new("sigkill");
    let queue = env.queue("in");
    env.write_worker("w", &format!("queue: {queue}\njob_state: 1\nprefetch: 5\nservices: [{{builtin: sleep, duration: 200ms}}]\n"));
    let pid = env.start_worker("w");
    env.wait_consuming("w", 1);
    // All sent at once: 30 processes of `dpsd send` on a busy machine took longer than
    // the worker needed for the messages, and the kill found nothing left to interrupt.
    let ids = env.send_count(&queue, r#"{"n": 1}"#, 30);
    wait_for("some messages done", Duration::from_secs(30), || {
        env.count_done(&ids, 1) >= 5
    });

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    let done_at_kill = env.count_done(&ids, 1);
    assert!(done_at_kill < 30, "the kill came too late to test anything");

    env.start_worker("w");
    env.wait_done(&ids, 1, Duration::from_secs(60));
    assert_eq!(env.depth(&queue), 0);
    assert!(env.parked().is_empty());
}

/// A two-stage chain (the first stage slow) with 20 messages sent and a few through:
/// returns their executionIds and the two queues.
fn slow_chain_under_way(env: &TestEnv) -> (Vec<String>, String, String) {
    let (first, second) = (env.queue("first"), env.queue("second"));
    env.write_worker(
        "w1",
        &format!("queue: {first}\nfollow_queue: {second}\njob_state: 1\nprefetch: 2\nservices: [{{builtin: sleep, duration: 300ms}}]\n"),
    );
    env.write_worker(
        "w2",
        &format!("queue: {second}\njob_state: 2\nservices: [integration_test_service2]\n"),
    );
    env.start_worker("w1");
    env.start_worker("w2");
    env.wait_consuming("w1", 1);
    env.wait_consuming("w2", 1);
    let ids = env.send_count(&first, r#"{"n": 1}"#, 20);
    wait_for("a few messages through", Duration::from_secs(30), || {
        env.count_done(&ids, 2) >= 2
    });
    (ids, first, second)
}

#[test]
fn the_broker_restarted_mid_run_loses_no_message() {
    let (url, node) = restartable_broker();
    let env = TestEnv::with_amqp("brokerrestart", &url);
    let (ids, first, second) = slow_chain_under_way(&env);

    assert!(
        env.count_done(&ids, 2) < 20,
        "the outage came too late to test anything"
    );
    rabbitmqctl(&node, "stop_app");
    std::thread::sleep(Duration::from_secs(2));
    rabbitmqctl(&node, "start_app");

    env.wait_consuming("w1", 2);
    env.wait_consuming("w2", 2);
    env.wait_done(&ids, 2, Duration::from_secs(90));
    assert_eq!(env.depth(&first) + env.depth(&second), 0);
}

/// A message in hand when RabbitMQ closes its replica's connection: its service goes on
/// and its stage is recorded, so the copy the broker hands out again finds it done and the
/// service is called once (it was called twice when the handler was dropped with the
/// connection: the redelivery ran it again).
#[test]
fn a_message_in_hand_when_its_connection_is_closed_calls_its_service_once() {
    let (url, node) = restartable_broker();
    let env = TestEnv::with_servers("lostconn", &url, "");
    let queue = env.queue("in");
    let calls = env.path("calls.log");
    // The service runs until the test has closed the connection (rabbitmqctl alone can take
    // longer than a fixed sleep on a loaded machine).
    let release = env.path("release");
    let worker = env.id.clone();
    env.write_worker(
        &worker,
        &format!(
            "queue: {queue}\njob_state: 1\nprefetch: 1\nservices: [{{exec: [/bin/sh, -c, 'cat >/dev/null; echo called >> {}; while [ ! -e {} ]; do sleep 0.05; done; echo 1'], timeout: 30s}}]\n",
            calls.display(),
            release.display()
        ),
    );
    env.start_worker(&worker);
    env.wait_consuming(&worker, 1);
    let id = env.send(&queue, r#"{"n": 1}"#);
    let called = || {
        std::fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .count()
    };
    wait_for("the service called", Duration::from_secs(20), || {
        called() == 1
    });

    let connection = format!("dpsd worker {worker} #0");
    assert_eq!(
        close_connections_named(&node, &connection),
        1,
        "one connection named {connection}"
    );
    std::fs::write(&release, "").expect("release the service");
    // The copy handed out again waits for the first one, then finds its stage recorded.
    wait_for("the redelivery settled", Duration::from_secs(60), || {
        called() > 1
            || env
                .worker_log(&worker)
                .contains("already done by this worker")
    });
    assert!(env.is_done_at(&id, 1), "the stage recorded");
    assert_eq!(
        called(),
        1,
        "the service called once; log:\n{}",
        env.worker_log(&worker)
    );
    assert_eq!(env.depth(&queue), 0);
}

#[test]
fn the_database_restarted_mid_run_loses_no_message() {
    let mut mongo = PrivateMongo::start();
    let env = TestEnv::with_servers("dbrestart", &common::amqp_url(), &mongo.uri());
    let (ids, first, second) = slow_chain_under_way(&env);

    assert!(
        env.count_done(&ids, 2) < 20,
        "the outage came too late to test anything"
    );
    mongo.stop();
    std::thread::sleep(Duration::from_secs(2));
    mongo.restart();

    env.wait_done(&ids, 2, Duration::from_secs(90));
    assert_eq!(env.depth(&first) + env.depth(&second), 0);
    // The outage was waited out: by the driver (a write that took over a second) or by
    // dpsd's own retries, depending on how long the server was away.
    let log = env.worker_log("w1") + &env.worker_log("w2");
    let waited = log
        .lines()
        .filter_map(|l| {
            l.split("store_ms=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .max();
    assert!(
        log.contains("store unavailable, retrying") || waited.is_some_and(|ms| ms >= 1000),
        "no write waited for the database (longest {waited:?} ms)"
    );
}

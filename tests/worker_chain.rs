//! The generic worker end to end (SPEC 4.2): the example chain, simulate, `_last`, parking
//! of malformed bodies, redelivery dedupe and concurrency, against real servers. Every test
//! runs on both stores (`on_mongodb::`, `on_embedded::`), reading state through the trait.

#[macro_use]
mod common;

use std::time::Duration;

use common::{stage_results, wait_for, TestEnv};
use dpsd::store::{ParkedBody, Status};
use serde_json::json;

on_both_backends!(
    chain_two_stages_records_both_states,
    each_service_sees_the_previous_result_as_last,
    simulate_records_and_forwards_without_calling_services,
    malformed_body_is_parked_and_the_next_message_processed,
    redelivery_of_a_completed_execution_does_not_run_services_again,
    a_slow_service_does_not_serialise_the_replica,
    a_deleted_queue_is_declared_again_and_consumed,
    huge_deeply_nested_and_odd_bodies_are_parked_with_a_reason,
    a_refused_declare_is_logged_with_the_reason,
);

/// How a parked body was kept, as the API names it.
fn encoding(body: &ParkedBody) -> &'static str {
    match body {
        ParkedBody::Json(_) => "json",
        ParkedBody::Text(_) => "text",
        ParkedBody::Base64(_) => "base64",
    }
}

fn example_chain(env: &TestEnv, extra_worker2: &str) -> (String, String) {
    let (stage1, stage2) = (env.queue("stage1_test"), env.queue("stage2_test"));
    env.write_worker(
        "test_worker1",
        &format!("queue: {stage1}\nfollow_queue: {stage2}\njob_state: 1\nservices: [integration_test_service1]\n"),
    );
    env.write_worker(
        "test_worker2",
        &format!("queue: {stage2}\njob_state: 2\nservices: [integration_test_service2, integration_test_service2_1]\n{extra_worker2}"),
    );
    env.start_worker("test_worker1");
    env.start_worker("test_worker2");
    env.wait_consuming("test_worker1", 1);
    env.wait_consuming("test_worker2", 1);
    (stage1, stage2)
}

fn chain_two_stages_records_both_states(env: TestEnv) {
    let sink = env.queue("sink");
    let (stage1, _) = example_chain(&env, &format!("follow_queue: {sink}\n"));
    let ids: Vec<String> = (0..5)
        .map(|i| env.send(&stage1, &format!(r#"{{"mydata": {{"n": {i}}}}}"#)))
        .collect();
    env.wait_done(&ids, 2, Duration::from_secs(30));

    for id in &ids {
        let execution = env.execution(id).expect("job state");
        assert_eq!(execution.worker, "test_worker2");
        assert_eq!(
            stage_results(&execution),
            [
                ("test_worker1".into(), Status::Done, Some(json!("test1"))),
                ("test_worker2".into(), Status::Done, Some(json!("test2_1"))),
            ],
            "{execution:?}"
        );
    }
    // The message leaving the chain carries the last service's result as `_last`.
    let mut forwarded = Vec::new();
    while let Some(message) = env.get(&sink) {
        forwarded.push(message);
    }
    assert_eq!(forwarded.len(), ids.len());
    for message in forwarded {
        assert_eq!(message["_last"], json!("test2_1"));
        assert!(ids.contains(
            &message["executionId"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        ));
        assert!(
            message["mydata"]["n"].is_number(),
            "user data travels untouched: {message}"
        );
    }
}

fn each_service_sees_the_previous_result_as_last(env: TestEnv) {
    let queue = env.queue("in");
    env.run_worker("w", &format!("queue: {queue}\njob_state: 7\nservices:\n  - {{builtin: constant, value: first}}\n  - {{exec: [cat]}}\n"));
    let id = env.send(&queue, r#"{"mydata": {"k": "v"}}"#);
    env.wait_done(std::slice::from_ref(&id), 7, Duration::from_secs(20));
    let execution = env.execution(&id).expect("job state");
    let (_, _, result) = &stage_results(&execution)[0];
    let seen = result
        .as_ref()
        .filter(|r| r.is_object())
        .expect("cat returned its input");
    assert_eq!(seen["_last"], json!("first"));
    assert_eq!(seen["mydata"]["k"], json!("v"));
}

fn simulate_records_and_forwards_without_calling_services(env: TestEnv) {
    let (first, second) = (env.queue("first"), env.queue("second"));
    env.run_worker("w1", &format!("queue: {first}\nfollow_queue: {second}\njob_state: 1\nservices: [{{builtin: fail, message: must not run}}]\n"));
    let id = env.send(&first, r#"{"mydata": {}, "simulate": true}"#);
    env.wait_done(std::slice::from_ref(&id), 1, Duration::from_secs(20));
    let forwarded = env.get(&second).expect("forwarded");
    assert_eq!(forwarded["simulate"], json!(true));
    assert_eq!(forwarded["executionId"], json!(id));
    assert_eq!(env.parked_count(), 0);
}

fn malformed_body_is_parked_and_the_next_message_processed(env: TestEnv) {
    let queue = env.queue("in");
    env.run_worker(
        "w",
        &format!("queue: {queue}\njob_state: 1\nservices: [integration_test_service1]\n"),
    );
    env.publish_raw(&queue, b"this is not json", &[]);
    env.publish_raw(&queue, b"[1, 2, 3]", &[]);
    env.publish_raw(&queue, b"\xff\xfe binary", &[]);
    let id = env.send(&queue, r#"{"mydata": {}}"#);
    env.wait_done(&[id], 1, Duration::from_secs(20));
    wait_for("three parked messages", Duration::from_secs(10), || {
        env.parked_count() == 3
    });
    let mut errors: Vec<(&str, String)> = env
        .parked()
        .into_iter()
        .map(|p| (encoding(&p.body), p.error))
        .collect();
    errors.sort();
    assert_eq!(errors[0], ("base64", "body is not UTF-8".into()));
    assert_eq!(errors[1].0, "json");
    assert!(
        errors[1].1.contains("not an object (it is an array)"),
        "{errors:?}"
    );
    assert_eq!(errors[2].0, "text");
    assert!(errors[2].1.contains("not JSON"), "{errors:?}");
    assert_eq!(env.depth(&queue), 0, "parked messages are acked");
}

fn redelivery_of_a_completed_execution_does_not_run_services_again(env: TestEnv) {
    let (queue, next) = (env.queue("in"), env.queue("next"));
    let calls = env.path("calls");
    env.run_worker("w", &format!(
            "queue: {queue}\nfollow_queue: {next}\njob_state: 1\nservices: [{{exec: [sh, -c, 'echo x >> {}; echo counted']}}]\n",
            calls.display()
        ));
    let id = env.send(&queue, r#"{"mydata": {}}"#);
    env.wait_done(std::slice::from_ref(&id), 1, Duration::from_secs(20));
    assert_eq!(
        env.get(&next).expect("forwarded")["_last"],
        json!("counted")
    );
    // What a redelivery looks like to the worker once the first stage completed.
    let body = format!(r#"{{"executionId": "{id}", "mydata": {{}}}}"#);
    env.publish_raw(&queue, body.as_bytes(), &[("x-dpsd-reforward", "1")]);
    wait_for("the copy forwarded again", Duration::from_secs(20), || {
        env.depth(&next) == 1
    });
    let again = env.get(&next).expect("forwarded again");
    assert_eq!(
        again["_last"],
        json!("counted"),
        "the recorded result goes on"
    );
    let calls = std::fs::read_to_string(calls).expect("calls file");
    assert_eq!(calls.lines().count(), 1, "the service ran once");
}

fn a_slow_service_does_not_serialise_the_replica(env: TestEnv) {
    let queue = env.queue("in");
    env.run_worker("w", &format!("queue: {queue}\njob_state: 1\nprefetch: 8\nservices: [{{builtin: sleep, duration: 1s}}]\n"));
    let ids: Vec<String> = (0..8).map(|_| env.send(&queue, "{}")).collect();
    env.wait_done(&ids, 1, Duration::from_secs(30));
    // Intervals [startedAt, finishedAt] of the eight executions: how many overlap at most.
    let mut edges = Vec::new();
    for id in &ids {
        let execution = env.execution(id).expect("state");
        let stage = &execution.stages[0];
        edges.push((stage.started_at.timestamp_millis(), 1));
        edges.push((stage.finished_at.timestamp_millis(), -1));
    }
    edges.sort();
    let (mut now, mut most) = (0, 0);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    assert!(most >= 4, "at most {most} messages were in service at once");
}

fn a_deleted_queue_is_declared_again_and_consumed(env: TestEnv) {
    let queue = env.queue("in");
    env.run_worker(
        "w",
        &format!("queue: {queue}\njob_state: 1\nservices: [integration_test_service1]\n"),
    );
    env.delete_queue(&queue);
    env.wait_consuming("w", 2);
    let id = env.send(&queue, "{}");
    env.wait_done(std::slice::from_ref(&id), 1, Duration::from_secs(20));
    assert!(
        env.worker_log("w").contains("consumer"),
        "the cancel was seen and handled"
    );
}

fn huge_deeply_nested_and_odd_bodies_are_parked_with_a_reason(env: TestEnv) {
    let queue = env.queue("in");
    env.run_worker(
        "w",
        &format!("queue: {queue}\njob_state: 1\nservices: [integration_test_service1]\n"),
    );
    let huge = format!("{{\"mydata\": \"{}\"", "x".repeat(10 * 1024 * 1024)); // 10 MB, unterminated
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    env.publish_raw(&queue, huge.as_bytes(), &[]);
    env.publish_raw(&queue, nested.as_bytes(), &[]);
    env.publish_raw(&queue, b"", &[]);
    env.publish_raw(&queue, b"null", &[]);
    let id = env.send(&queue, r#"{"mydata": {}}"#);
    env.wait_done(std::slice::from_ref(&id), 1, Duration::from_secs(60));
    wait_for("four parked", Duration::from_secs(60), || {
        env.parked_count() == 4
    });
    let errors: Vec<String> = env.parked().into_iter().map(|p| p.error).collect();
    assert!(
        errors.iter().any(|e| e.contains("EOF while parsing")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("recursion limit")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("not an object (it is null)")),
        "{errors:?}"
    );
    assert_eq!(env.depth(&queue), 0);
}

/// A worker whose queue exists with other arguments (declared by something else, here with
/// `x-max-length`): RabbitMQ refuses its declare (406) and closes the channel. The replica
/// keeps retrying, and its log names the queue and RabbitMQ's reason, not just "channel
/// closed".
fn a_refused_declare_is_logged_with_the_reason(env: TestEnv) {
    let queue = env.queue("capped");
    env.declare_capped(&queue, 5);
    env.write_worker(
        "capped_worker",
        &format!("queue: {queue}\njob_state: 1\nservices: [integration_test_service1]\n"),
    );
    env.start_worker("capped_worker");
    let expected = format!(
        "queue {queue:?} exists with other arguments: PRECONDITION_FAILED - inequivalent arg 'x-max-length'"
    );
    wait_for(
        &format!("the refusal logged: {expected}"),
        Duration::from_secs(20),
        || {
            env.worker_log("capped_worker")
                .lines()
                .any(|line| line.contains(&expected) && line.contains("; reconnecting in"))
        },
    );
    assert!(
        !env.worker_log("capped_worker").contains("consuming"),
        "{}",
        env.worker_log("capped_worker")
    );
}

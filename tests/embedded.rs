//! dpsd on one machine with RabbitMQ alone (SPEC 3.1): the example chain on the embedded
//! store, many replicas writing one SQLite file at once.

mod common;

use std::time::Duration;

use common::{replicas_of, wait_for, TestEnv};
use dpsd::store::Status;

#[test]
fn the_example_chain_on_the_embedded_store_with_eight_replicas() {
    let env = TestEnv::embedded("embedded8");
    let (stage1, stage2) = (env.queue("stage1_test"), env.queue("stage2_test"));
    env.write_worker(
        "test_worker1",
        &format!("queue: {stage1}\nfollow_queue: {stage2}\njob_state: 1\nreplicas: 4\nservices: [integration_test_service1]\n"),
    );
    env.write_worker(
        "test_worker2",
        &format!("queue: {stage2}\njob_state: 2\nreplicas: 4\nservices: [integration_test_service2, integration_test_service2_1]\n"),
    );
    let daemon = env.start_daemon();
    wait_for("eight replicas consuming", Duration::from_secs(30), || {
        replicas_of(daemon, "test_worker1").len() == 4
            && replicas_of(daemon, "test_worker2").len() == 4
            && env.daemon_log().matches("consuming").count() >= 8
    });
    let out = env.run(&["send", &stage1, r#"{"mydata": {}}"#, "--count", "200"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(ids.len(), 200);

    wait_for("all 200 in state 2", Duration::from_secs(120), || {
        env.execution(&ids[ids.len() - 1])
            .is_some_and(|e| e.state == Some(2))
            && ids
                .iter()
                .all(|id| env.execution(id).is_some_and(|e| e.state == Some(2)))
    });
    let sample = env.execution(&ids[17]).expect("execution");
    assert_eq!(sample.status, Status::Done);
    // In the chain's order: the second worker's record may have landed first.
    let mut stages = sample.stages.clone();
    stages.sort_by_key(|s| s.stages_passed);
    let workers: Vec<&str> = stages.iter().map(|s| s.worker.as_str()).collect();
    assert_eq!(workers, ["test_worker1", "test_worker2"]);
    assert_eq!(stages[1].result, Some(serde_json::json!("test2_1")));
    let log = env.daemon_log();
    assert!(
        !log.contains("store unavailable") && !log.contains("locked"),
        "a lock error reached a message"
    );
}

//! The probes and the Kubernetes layout (SPEC 6, 13) against the real binary: `/livez`
//! answers whatever the broker does, `/readyz` (and `/health`) names in `notReady` each
//! thing missing, `dpsd health` exits 0 or 1 only, `dpsd run --no-workers` starts no
//! replica, and `dpsd worker NAME --listen ADDR` serves that replica's probes and metrics.

mod common;

use std::process::Output;
use std::time::Duration;

use common::{free_port, replicas_of, wait_for, wait_for_some, TestEnv};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn get(url: &str) -> Option<(StatusCode, Value)> {
    let response = Client::new().get(url).send().ok()?;
    let status = response.status();
    Some((status, response.json().unwrap_or(Value::Null)))
}

fn not_ready(body: &Value) -> Vec<String> {
    body["notReady"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn dpsd_health(env: &TestEnv, args: &[&str]) -> Output {
    let mut all = vec!["health"];
    all.extend_from_slice(args);
    env.run(&all)
}

fn worker_yaml(env: &TestEnv, replicas: u32) -> String {
    format!(
        "queue: {}\njob_state: 1\nservices: [integration_test_service1]\nreplicas: {replicas}\n",
        env.queue("in")
    )
}

#[test]
fn livez_and_readyz_need_no_credentials_and_health_answers_as_readyz() {
    let env = TestEnv::embedded("probesopen");
    env.write_main_with_auth("{admin: {password: test}}", "");
    env.write_worker("w", &worker_yaml(&env, 1));
    env.start_daemon();
    env.wait_api();
    let ready = wait_for_some("/readyz 200", Duration::from_secs(30), || {
        get(&env.api("/readyz")).filter(|(status, _)| *status == StatusCode::OK)
    });
    assert_eq!(ready.1["status"], json!("ok"), "{}", ready.1);
    assert_eq!(ready.1["notReady"], json!([]), "{}", ready.1);
    let (status, live) = get(&env.api("/livez")).expect("GET /livez");
    assert_eq!((status, live), (StatusCode::OK, json!({"status": "ok"})));
    let (status, health) = get(&env.api("/health")).expect("GET /health");
    assert_eq!(status, StatusCode::OK);
    for field in [
        "status",
        "rabbitmq",
        "store",
        "workersShortOfReplicas",
        "notReady",
    ] {
        assert_eq!(health[field], ready.1[field], "{field}: {health}");
    }
    let (status, _) = get(&env.api("/metrics")).expect("GET /metrics");
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let out = dpsd_health(&env, &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("/livez: 200"));
    let out = dpsd_health(&env, &["--ready"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

/// A broker outage makes dpsd unready, never dead: `/livez` stays 200 (a liveness probe
/// must not restart dpsd because RabbitMQ is down), `/readyz` names the broker by its URL
/// without the password.
#[test]
fn with_rabbitmq_down_readyz_names_the_broker_without_its_password_and_livez_stays_200() {
    let env = TestEnv::embedded("probesbroker");
    let port = free_port();
    env.edit_main(
        &format!("url: {}", env.amqp_url),
        &format!("url: amqp://guest:s3cret@127.0.0.1:{port}/%2f"),
    );
    env.start_daemon();
    env.wait_api();
    let (status, body) = get(&env.api("/readyz")).expect("GET /readyz");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(
        not_ready(&body),
        [format!("rabbitmq amqp://guest:***@127.0.0.1:{port}/%2f")],
        "{body}"
    );
    assert_eq!(body["rabbitmq"], json!(false));
    assert_eq!(body["store"], json!(true));
    assert!(!body.to_string().contains("s3cret"), "{body}");
    let (status, health) = get(&env.api("/health")).expect("GET /health");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(not_ready(&health), not_ready(&body));
    assert_eq!(get(&env.api("/livez")).map(|r| r.0), Some(StatusCode::OK));

    assert_eq!(health_code(&env, &[]), Some(0));
    assert_eq!(health_code(&env, &["--ready"]), Some(1));
}

fn health_code(env: &TestEnv, args: &[&str]) -> Option<i32> {
    dpsd_health(env, args).status.code()
}

/// A replica killed and waiting for its restart leaves its worker short: `/readyz` names it
/// with the count, and answers 200 again once the replica is back.
#[test]
fn readyz_names_a_worker_short_of_replicas() {
    let env = TestEnv::embedded("probesshort");
    env.edit_main(
        "  shutdown_timeout: 10s\n",
        "  shutdown_timeout: 10s\n  restart_backoff: {initial: 3s, max: 3s}\n",
    );
    env.write_worker("w", &worker_yaml(&env, 2));
    let daemon = env.start_daemon();
    env.wait_api();
    wait_for("/readyz 200", Duration::from_secs(30), || {
        get(&env.api("/readyz")).is_some_and(|(s, _)| s == StatusCode::OK)
    });
    let (victim, _) = replicas_of(daemon, "w")[0];
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).expect("kill");
    let body = wait_for_some("/readyz 503", Duration::from_secs(3), || {
        get(&env.api("/readyz"))
            .and_then(|(s, b)| (s == StatusCode::SERVICE_UNAVAILABLE).then_some(b))
    });
    assert_eq!(
        not_ready(&body),
        ["worker w: 1 of 2 replicas running"],
        "{body}"
    );
    assert_eq!(body["workersShortOfReplicas"], json!(["w"]));
    wait_for("/readyz 200 again", Duration::from_secs(30), || {
        get(&env.api("/readyz")).is_some_and(|(s, _)| s == StatusCode::OK)
    });
}

/// `dpsd health` exits 1 (never 2, which Docker reserves) when nothing answers, when the
/// configuration does not load, and for a probe that is not 200.
#[test]
fn health_exits_1_when_nothing_answers_or_the_configuration_is_broken() {
    let env = TestEnv::embedded("probesexit");
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    for ready in [false, true] {
        let mut args = vec!["--url", nowhere.as_str()];
        if ready {
            args.push("--ready");
        }
        let out = dpsd_health(&env, &args);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(&nowhere));
    }
    env.write_main("bogus_key: 1\n");
    let out = dpsd_health(&env, &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

/// The Kubernetes layout: the API and the scheduler in one process with no replica, each
/// worker in a process of its own with its probes and metrics; a message goes through.
#[test]
fn no_workers_daemon_and_a_listening_worker_run_the_chain_between_them() {
    let env = TestEnv::new("probesk8s");
    env.write_worker("w", &worker_yaml(&env, 2));
    let daemon = env.start_daemon_with(&["run", "--no-workers"]);
    env.wait_api();
    let (status, body) = get(&env.api("/readyz")).expect("GET /readyz");
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, workers) = get(&env.api("/api/workers")).expect("GET /api/workers");
    assert_eq!(workers, json!([]));
    assert!(env.daemon_log().contains("--no-workers: no replicas"));
    assert!(
        !env.daemon_log().contains("needs MongoDB"),
        "on MongoDB: no warning"
    );

    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let worker = env.start_worker_with("w", &["--listen", &listen]);
    let probe = |path: &str| get(&format!("http://{listen}{path}"));
    let ready = wait_for_some("the worker's /readyz 200", Duration::from_secs(30), || {
        probe("/readyz").filter(|(s, _)| *s == StatusCode::OK)
    });
    assert_eq!(
        ready.1,
        json!({"status": "ok", "worker": "w", "rabbitmq": true, "store": true, "notReady": []})
    );
    assert_eq!(probe("/livez").map(|r| r.0), Some(StatusCode::OK));
    // The daemon never started a replica of its own.
    assert!(replicas_of(daemon, "w").is_empty());

    let id = env.send(&env.queue("in"), r#"{"mydata": {}}"#);
    let metrics = || {
        Client::new()
            .get(format!("http://{listen}/metrics"))
            .send()
            .ok()?
            .text()
            .ok()
    };
    wait_for(
        "the worker's metrics count it",
        Duration::from_secs(20),
        || metrics().is_some_and(|m| m.contains("dpsd_messages_processed_total{worker=\"w\"} 1")),
    );
    assert!(!metrics()
        .unwrap_or_default()
        .contains("dpsd_replicas_running"));
    let (status, execution) = get(&env.api(&format!("/api/executions/{id}"))).expect("GET");
    assert_eq!(status, StatusCode::OK, "{execution}");

    kill(Pid::from_raw(worker as i32), Signal::SIGTERM).expect("SIGTERM");
    let status = env.take_child(worker).wait().expect("wait");
    assert!(status.success(), "the worker exited with {status}");
}

/// With `api.auth` set, a listening worker's probes stay open and its `/metrics` needs the
/// credentials, as the daemon's does.
#[test]
fn a_listening_worker_guards_its_metrics_with_api_auth_but_not_its_probes() {
    let env = TestEnv::embedded("probesworkerauth");
    env.write_main_with_auth("{admin: {password: test}}", "");
    env.write_worker("w", &worker_yaml(&env, 1));
    let listen = format!("127.0.0.1:{}", free_port());
    env.start_worker_with("w", &["--listen", &listen]);
    let url = |path: &str| format!("http://{listen}{path}");
    wait_for("the worker's /readyz 200", Duration::from_secs(30), || {
        get(&url("/readyz")).is_some_and(|(s, _)| s == StatusCode::OK)
    });
    assert_eq!(get(&url("/livez")).map(|r| r.0), Some(StatusCode::OK));
    let client = Client::new();
    let anonymous = client.get(url("/metrics")).send().expect("GET");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let authed = client
        .get(url("/metrics"))
        .basic_auth("admin", Some("test"))
        .send()
        .expect("GET");
    assert_eq!(authed.status(), StatusCode::OK);
    // The daemon's API is not there.
    let jobs = client
        .get(url("/api/jobs"))
        .basic_auth("admin", Some("test"))
        .send()
        .expect("GET");
    assert_eq!(jobs.status(), StatusCode::NOT_FOUND);
}

/// `--no-workers` on the embedded store warns that the layout needs MongoDB.
#[test]
fn no_workers_on_the_embedded_store_warns_that_the_layout_needs_mongodb() {
    let env = TestEnv::embedded("probesk8sembedded");
    env.start_daemon_with(&["run", "--no-workers"]);
    env.wait_api();
    wait_for("the warning", Duration::from_secs(10), || {
        env.daemon_log()
            .contains("the Kubernetes layout needs MongoDB (mongodb.uri)")
    });
}

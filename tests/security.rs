//! Security checks (SPEC 3 secrets, 4.3 exec, 6.1 auth; issue 9): message content never
//! reaches a shell, secrets never reach the logs, the API or /metrics, and the shipped unit
//! runs dpsd unprivileged. (Every route but /health refusing without credentials is in
//! tests/api.rs.)

mod common;

use std::time::Duration;

use common::{wait_for, wait_for_some, TestEnv};
use serde_json::Value;

/// Shell syntax in the body and in the executionId: an exec service gets the body on stdin
/// and the id in DPS_EXECUTION_ID, as data, so none of it runs.
#[test]
fn message_content_never_reaches_a_shell() {
    let env = TestEnv::embedded("noshell");
    let queue = env.queue("in");
    let marker = env.path("pwned");
    env.run_worker(
        "w",
        &format!("queue: {queue}\njob_state: 1\nservices: [{{exec: [cat]}}, {{exec: [printenv, DPS_EXECUTION_ID]}}]\n"),
    );
    let attack = |how: &str| how.replace("M", &marker.display().to_string());
    let id = attack("$(touch M)`touch M`;touch M|touch M");
    let body = serde_json::json!({
        "executionId": id,
        "mydata": {"cmd": attack("$(touch M)"), "semi": attack("'; touch M; '"), "tick": attack("`touch M`")},
    });
    env.publish_raw(&queue, body.to_string().as_bytes(), &[]);

    let execution = wait_for_some("the message processed", Duration::from_secs(30), || {
        env.execution(&id).filter(|e| e.state == Some(1))
    });
    // The second service printed its environment variable back: the id, byte for byte.
    assert_eq!(execution.stages[0].result, Some(Value::String(id.clone())));
    assert!(!marker.exists(), "a shell ran something from the message");
}

/// A broker password, an API password and a MongoDB-style secret in the configuration;
/// the broker refuses the connection, so errors naming the URL are logged and reported.
/// None of the secrets may appear in the log, in any GET route of the API or in /metrics.
#[test]
fn secrets_reach_neither_logs_nor_api_nor_metrics() {
    let env = TestEnv::embedded("secrets");
    let closed = common::free_port();
    env.write_main_with_auth("{admin: {password: apiS3cret}}", "");
    env.edit_main(
        &env.amqp_url,
        &format!("amqp://guest:brokerS3cret@127.0.0.1:{closed}/%2f"),
    );
    env.write_worker(
        "w",
        &format!(
            "queue: {}\njob_state: 1\nservices: [integration_test_service1]\n",
            env.queue("in")
        ),
    );
    env.start_daemon();
    env.wait_api();
    wait_for("a connection error logged", Duration::from_secs(30), || {
        env.daemon_log().contains("guest:***@")
    });

    let client = reqwest::blocking::Client::new();
    let get = |path: &str| {
        client
            .get(env.api(path))
            .basic_auth("admin", Some("apiS3cret"))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    };
    let document: Value = serde_json::from_str(&get("/api/openapi.json")).expect("OpenAPI JSON");
    let mut seen = vec![get("/metrics"), get("/health"), env.daemon_log()];
    for (path, operations) in document["paths"].as_object().expect("paths") {
        if operations.get("get").is_some() {
            seen.push(get(&path
                .replace("{name}", "w")
                .replace("{executionId}", "x")
                .replace("{id}", "x")));
        }
    }
    assert!(seen.len() > 5, "the document lists the GET routes");
    for text in &seen {
        for secret in ["brokerS3cret", "apiS3cret"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }
}

/// The unit runs dpsd as the `dpsd` system user that the sysusers file creates, with no
/// capabilities and no way to gain privileges.
#[test]
fn the_systemd_unit_runs_dpsd_unprivileged() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("systemd/dpsd.service")).expect("unit");
    let sysusers = std::fs::read_to_string(root.join("systemd/dpsd.sysusers")).expect("sysusers");
    let setting = |key: &str| {
        unit.lines()
            .rev()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::trim)
    };
    assert_eq!(setting("User"), Some("dpsd"));
    assert_eq!(setting("Group"), Some("dpsd"));
    assert_eq!(setting("NoNewPrivileges"), Some("yes"));
    assert_eq!(setting("CapabilityBoundingSet"), Some(""));
    assert_eq!(setting("AmbientCapabilities"), Some(""));
    assert!(
        sysusers
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["u", "dpsd"])),
        "the sysusers file creates the dpsd user: {sysusers}"
    );
}
